//! The instance actions over the in-memory store: RunInstances with its
//! primary ENI, addresses and groups, the Describe shape and filters, the
//! state changes, the attributes that live on the ENI, and what terminating
//! gives back.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, all, first};

#[test]
fn run_describe_terminate() {
    let e = Env::new();
    let sg = e.group("web");
    let run = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=2&MaxCount=2&SubnetId={}&SecurityGroupId.1={sg}&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web&TagSpecification.2.ResourceType=network-interface&TagSpecification.2.Tag.1.Key=role&TagSpecification.2.Tag.1.Value=eth0",
        e.subnet
    ));
    let ids = all(&run, "instanceId");
    assert_eq!(ids.len(), 2);
    assert!(first(&run, "reservationId").starts_with("r-"));
    // The launch answer shows pending; Describe shows running.
    assert_eq!(first(&run, "name"), "pending");
    assert_eq!(first(&run, "instanceType"), "m1.small");
    assert_eq!(first(&run, "imageId"), "ami-12c6146b");
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={}", ids[0]));
    assert_eq!(first(&xml, "name"), "running");
    assert_eq!(first(&xml, "code"), "16");
    assert_eq!(first(&xml, "subnetId"), e.subnet);
    assert_eq!(first(&xml, "vpcId"), e.vpc);
    assert_eq!(first(&xml, "availabilityZone"), "us-east-1a");
    let ip = first(&xml, "privateIpAddress");
    assert_eq!(
        first(&xml, "privateDnsName"),
        format!("ip-{}.ec2.internal", ip.replace('.', "-"))
    );
    assert_eq!(first(&xml, "groupId"), sg);
    assert_eq!(first(&xml, "sourceDestCheck"), "true");
    // The primary ENI: attached at 0, deleted with the instance, tagged.
    let eni = first(&xml, "networkInterfaceId");
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
    ));
    assert_eq!(first(&xml, "deviceIndex"), "0");
    assert_eq!(first(&xml, "deleteOnTermination"), "true");
    assert_eq!(first(&xml, "value"), "eth0");
    assert_eq!(first(&xml, "instanceId"), ids[0]);
    // spec 3.1: the group is in use now.
    assert_eq!(
        e.err(&format!("Action=DeleteSecurityGroup&GroupId={sg}")),
        "DependencyViolation"
    );

    for (filter, value) in [
        ("instance-id", ids[0].as_str()),
        ("private-ip-address", ip.as_str()),
        ("network-interface.network-interface-id", eni.as_str()),
    ] {
        let xml = e.ok(&format!(
            "Action=DescribeInstances&Filter.1.Name={filter}&Filter.1.Value.1={value}"
        ));
        assert_eq!(
            all(&xml, "instanceId"),
            std::slice::from_ref(&ids[0]),
            "{filter}"
        );
    }
    for (filter, value) in [
        ("subnet-id", e.subnet.as_str()),
        ("vpc-id", e.vpc.as_str()),
        ("tag:Name", "w*"),
        ("instance-state-name", "running"),
        ("group-id", sg.as_str()),
        ("image-id", "ami-12c6146b"),
    ] {
        let xml = e.ok(&format!(
            "Action=DescribeInstances&Filter.1.Name={filter}&Filter.1.Value.1={value}"
        ));
        assert_eq!(all(&xml, "instanceId").len(), 2, "{filter}");
        // One reservation holds both.
        assert_eq!(all(&xml, "reservationId").len(), 1, "{filter}");
    }
    assert_eq!(
        e.err("Action=DescribeInstances&Filter.1.Name=bogus&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err("Action=DescribeInstances&InstanceId.1=i-00000000000000000"),
        "InvalidInstanceID.NotFound"
    );

    let before = e.available();
    let xml = e.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        ids[0]
    ));
    assert_eq!(all(&xml, "name"), ["shutting-down", "running"]);
    // Terminated instances stay visible; their ENI and address are gone.
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={}", ids[0]));
    assert_eq!(first(&xml, "name"), "terminated");
    assert!(all(&xml, "networkInterfaceId").is_empty());
    assert_eq!(
        e.err(&format!(
            "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
        )),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(
        e.available().parse::<u32>().unwrap(),
        before.parse::<u32>().unwrap() + 1
    );
    let xml = e.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        ids[0]
    ));
    assert_eq!(all(&xml, "name"), ["terminated", "terminated"]);
    assert_eq!(
        e.err(&format!("Action=StartInstances&InstanceId.1={}", ids[0])),
        "IncorrectInstanceState"
    );
    e.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        ids[1]
    ));
    // Nothing holds the subnet or the group any more.
    e.ok(&format!("Action=DeleteSecurityGroup&GroupId={sg}"));
    e.ok(&format!("Action=DeleteSubnet&SubnetId={}", e.subnet));
}

#[test]
fn launch_errors() {
    let e = Env::new();
    let s = &e.subnet;
    // A default VPC would be needed without a subnet; there is none yet.
    assert_eq!(
        e.err("Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1"),
        "VPCIdNotSpecified"
    );
    assert_eq!(
        e.err(&format!("Action=RunInstances&SubnetId={s}")),
        "MissingParameter"
    );
    assert_eq!(
        e.err(&format!("Action=RunInstances&ImageId=img-1&SubnetId={s}")),
        "InvalidAMIID.Malformed"
    );
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-1&MinCount=3&MaxCount=2&SubnetId={s}"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err("Action=RunInstances&ImageId=ami-1&SubnetId=subnet-00000000000000000"),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-1&SubnetId={s}&Placement.AvailabilityZone=us-east-1b"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-1&SubnetId={s}&SecurityGroup.1=nope"
        )),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-1&SubnetId={s}&SecurityGroupId.1=sg-00000000000000000"
        )),
        "InvalidGroup.NotFound"
    );
    // A fixed address fits one instance; MinCount=2 cannot be met.
    assert_eq!(
        e.err(&format!("Action=RunInstances&ImageId=ami-1&MinCount=2&MaxCount=2&SubnetId={s}&PrivateIpAddress=10.0.1.10")),
        "InvalidIPAddress.InUse"
    );
    // Nothing was left behind by the failed launches.
    assert_eq!(e.available(), "251");
    assert!(all(&e.ok("Action=DescribeInstances"), "instanceId").is_empty());
    // Group names resolve in the subnet's VPC.
    e.group("byname");
    let xml = e.ok(&format!("Action=RunInstances&ImageId=ami-1&SubnetId={s}&SecurityGroup.1=byname&PrivateIpAddress=10.0.1.10"));
    assert!(all(&xml, "groupName").contains(&"byname".to_owned()));
    assert_eq!(first(&xml, "privateIpAddress"), "10.0.1.10");
    // Beyond MinCount, a launch takes what the subnet still has.
    let tiny = first(
        &e.ok(&format!(
            "Action=CreateSubnet&VpcId={}&CidrBlock=10.0.9.0%2F28",
            e.vpc
        )),
        "subnetId",
    );
    let xml = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-1&MinCount=1&MaxCount=20&SubnetId={tiny}"
    ));
    assert_eq!(all(&xml, "instanceId").len(), 11);
}

#[test]
fn state_changes_and_attributes() {
    let e = Env::new();
    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={}&MapPublicIpOnLaunch.Value=true",
        e.subnet
    ));
    let run = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-1&SubnetId={}",
        e.subnet
    ));
    let id = first(&run, "instanceId");
    // A subnet that maps public addresses gives one from the region's pool.
    assert_eq!(first(&run, "ipAddress"), "198.51.100.1");
    let xml =
        e.ok("Action=DescribeInstances&Filter.1.Name=ip-address&Filter.1.Value.1=198.51.100.1");
    assert_eq!(all(&xml, "instanceId"), std::slice::from_ref(&id));
    let xml = e.ok(&format!("Action=StopInstances&InstanceId.1={id}"));
    assert_eq!(all(&xml, "name"), ["stopping", "running"]);
    let xml =
        e.ok("Action=DescribeInstances&Filter.1.Name=instance-state-name&Filter.1.Value.1=stopped");
    assert_eq!(all(&xml, "instanceId"), std::slice::from_ref(&id));
    let xml = e.ok(&format!("Action=StartInstances&InstanceId.1={id}"));
    assert_eq!(all(&xml, "name"), ["pending", "stopped"]);
    assert_eq!(e.err("Action=StopInstances"), "MissingParameter");
    assert_eq!(
        e.err("Action=StopInstances&InstanceId.1=i-00000000000000000"),
        "InvalidInstanceID.NotFound"
    );

    // spec 5.4: SourceDestCheck is the primary ENI's.
    e.ok(&format!(
        "Action=ModifyInstanceAttribute&InstanceId={id}&SourceDestCheck.Value=false"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeInstanceAttribute&InstanceId={id}&Attribute=sourceDestCheck"
    ));
    assert_eq!(first(&xml, "value"), "false");
    let xml = e.ok(&format!("Action=DescribeNetworkInterfaces&Filter.1.Name=attachment.instance-id&Filter.1.Value.1={id}"));
    assert_eq!(first(&xml, "sourceDestCheck"), "false");
    let sg = e.group("other");
    e.ok(&format!(
        "Action=ModifyInstanceAttribute&InstanceId={id}&GroupId.1={sg}"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeInstanceAttribute&InstanceId={id}&Attribute=groupSet"
    ));
    assert_eq!(all(&xml, "groupId"), std::slice::from_ref(&sg));
    let six: String = (0..6)
        .map(|i| format!("&GroupId.{}={}", i + 1, e.group(&format!("g{i}"))))
        .collect();
    assert_eq!(
        e.err(&format!(
            "Action=ModifyInstanceAttribute&InstanceId={id}{six}"
        )),
        "SecurityGroupsPerInterfaceLimitExceeded"
    );
    assert_eq!(
        e.err(&format!("Action=ModifyInstanceAttribute&InstanceId={id}")),
        "MissingParameter"
    );
    assert_eq!(
        e.err(&format!(
            "Action=DescribeInstanceAttribute&InstanceId={id}&Attribute=bogus"
        )),
        "InvalidParameterValue"
    );
    // Terminating gives the public address back to the pool.
    e.ok(&format!("Action=TerminateInstances&InstanceId.1={id}"));
    assert_eq!(
        first(&e.ok("Action=AllocateAddress"), "publicIp"),
        "198.51.100.1"
    );
    assert_eq!(
        e.err(&format!(
            "Action=ModifyInstanceAttribute&InstanceId={id}&SourceDestCheck.Value=true"
        )),
        "IncorrectInstanceState"
    );
}

#[test]
fn network_interface_specs_and_pagination() {
    let e = Env::new();
    let spare = e.eni("");
    let xml = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-1&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.SubnetId={}&NetworkInterface.1.AssociatePublicIpAddress=true&NetworkInterface.1.PrivateIpAddress=10.0.1.20&NetworkInterface.2.DeviceIndex=1&NetworkInterface.2.NetworkInterfaceId={spare}",
        e.subnet
    ));
    let id = first(&xml, "instanceId");
    assert_eq!(first(&xml, "privateIpAddress"), "10.0.1.20");
    assert_eq!(first(&xml, "ipAddress"), "198.51.100.1");
    assert_eq!(all(&xml, "deviceIndex"), ["0", "1"]);
    // An existing ENI is detached, not deleted, at termination.
    e.ok(&format!("Action=TerminateInstances&InstanceId.1={id}"));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={spare}"
    ));
    assert_eq!(first(&xml, "status"), "available");
    assert_eq!(
        e.err(&format!("Action=RunInstances&ImageId=ami-1&NetworkInterface.1.DeviceIndex=1&NetworkInterface.1.SubnetId={}", e.subnet)),
        "InvalidParameterValue"
    );
    for _ in 0..6 {
        e.ok(&format!(
            "Action=RunInstances&ImageId=ami-1&SubnetId={}",
            e.subnet
        ));
    }
    // spec 12.1: MaxResults and NextToken page through instances.
    let page = e.ok("Action=DescribeInstances&MaxResults=5");
    assert_eq!(all(&page, "instanceId").len(), 5);
    let token = first(&page, "nextToken");
    let rest = e.ok(&format!(
        "Action=DescribeInstances&MaxResults=5&NextToken={token}"
    ));
    assert_eq!(all(&rest, "instanceId").len(), 2);
    assert!(first(&rest, "nextToken").is_empty());
    assert_eq!(
        e.err("Action=DescribeInstances&NextToken=junk"),
        "InvalidNextToken"
    );
}

// spec 12.1 (Idempotency): RunInstances with the ClientToken of an earlier
// launch (botocore fills one in on every call) answers with that launch's
// reservation, its instances in their state now, and launches nothing; the
// token with other parameters is IdempotentParameterMismatch.
#[test]
fn run_instances_client_token_idempotency() {
    let e = Env::new();
    let req = format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=2&MaxCount=2&SubnetId={}&ClientToken=launch-1",
        e.subnet
    );
    let one = e.ok(&req);
    let ids = all(&one, "instanceId");
    assert_eq!(ids.len(), 2);
    let two = e.ok(&req);
    assert_eq!(first(&two, "reservationId"), first(&one, "reservationId"));
    assert_eq!(all(&two, "instanceId"), ids);
    // The first answer shows pending; the retry the state now.
    assert_eq!(first(&one, "name"), "pending");
    assert_eq!(first(&two, "name"), "running");
    let described = e.ok("Action=DescribeInstances");
    assert_eq!(all(&described, "instanceId").len(), 2, "{described}");
    assert_eq!(first(&described, "clientToken"), "launch-1");
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}&ClientToken=launch-1",
            e.subnet
        )),
        "IdempotentParameterMismatch"
    );
    // Without a token each call launches.
    let plain = format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}",
        e.subnet
    );
    e.ok(&plain);
    e.ok(&plain);
    assert_eq!(
        all(&e.ok("Action=DescribeInstances"), "instanceId").len(),
        4
    );
}
