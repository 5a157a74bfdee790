//! The ENI actions over the in-memory store: addresses from the subnet's
//! address book, groups, limits, attributes, attachment and deletion, and
//! what an ENI does to its subnet and its security groups.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, all, first};

#[test]
fn create_describe_delete() {
    let e = Env::new();
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={}&Description=web&TagSpecification.1.ResourceType=network-interface&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=a",
        e.subnet
    ));
    let id = first(&xml, "networkInterfaceId");
    assert!(id.starts_with("eni-") && id.len() == 21, "{id}");
    // spec 1.2: the first four addresses are reserved, so .4 is the first free one.
    assert_eq!(first(&xml, "privateIpAddress"), "10.0.1.4");
    assert_eq!(first(&xml, "privateDnsName"), "ip-10-0-1-4.ec2.internal");
    // spec 5.4: source/dest check is on by default.
    assert_eq!(first(&xml, "sourceDestCheck"), "true");
    assert_eq!(first(&xml, "status"), "available");
    assert_eq!(first(&xml, "requesterManaged"), "false");
    assert!(first(&xml, "macAddress").starts_with("02:"));
    // spec 1.6: without groups, the VPC's default group.
    assert_eq!(first(&xml, "groupName"), "default");
    assert_eq!(first(&xml, "value"), "a");
    assert_eq!(e.available(), "250");

    let other = e.eni("");
    let described =
        e.ok("Action=DescribeNetworkInterfaces&Filter.1.Name=tag:Name&Filter.1.Value.1=a");
    assert_eq!(
        all(&described, "networkInterfaceId"),
        std::slice::from_ref(&id)
    );
    for (filter, value) in [
        ("private-ip-address", "10.0.1.4"),
        ("addresses.private-ip-address", "10.0.1.4"),
        ("description", "web"),
        ("subnet-id", e.subnet.as_str()),
        ("vpc-id", e.vpc.as_str()),
        ("status", "available"),
        ("requester-managed", "false"),
        ("source-dest-check", "true"),
        ("availability-zone", "us-east-1a"),
        ("owner-id", "111111111111"),
        ("group-name", "default"),
    ] {
        let xml = e.ok(&format!(
            "Action=DescribeNetworkInterfaces&Filter.1.Name={filter}&Filter.1.Value.1={value}&Filter.2.Name=network-interface-id&Filter.2.Value.1={id}"
        ));
        assert_eq!(
            all(&xml, "networkInterfaceId"),
            std::slice::from_ref(&id),
            "{filter}"
        );
    }
    // spec 12.1: an unknown filter is refused.
    assert_eq!(
        e.err("Action=DescribeNetworkInterfaces&Filter.1.Name=nope&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
    // spec 12.1: MaxResults pages.
    let page = e.ok("Action=DescribeNetworkInterfaces&MaxResults=5");
    assert_eq!(all(&page, "networkInterfaceId").len(), 2);
    assert_eq!(
        e.err("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1=eni-00000000000000000"),
        "InvalidNetworkInterfaceID.NotFound"
    );
    assert_eq!(
        e.err("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1=bogus"),
        "InvalidNetworkInterfaceID.Malformed"
    );

    // spec 1.7: an ENI keeps its subnet; deleting it returns the addresses.
    assert_eq!(
        e.err(&format!("Action=DeleteSubnet&SubnetId={}", e.subnet)),
        "DependencyViolation"
    );
    e.ok(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={id}"
    ));
    e.ok(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={other}"
    ));
    assert_eq!(e.available(), "251");
    assert_eq!(
        e.err(&format!(
            "Action=DeleteNetworkInterface&NetworkInterfaceId={id}"
        )),
        "InvalidNetworkInterfaceID.NotFound"
    );
    e.ok(&format!("Action=DeleteSubnet&SubnetId={}", e.subnet));
}

#[test]
fn addresses_and_their_limits() {
    let e = Env::new();
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={}&PrivateIpAddress=10.0.1.50&SecondaryPrivateIpAddressCount=2",
        e.subnet
    ));
    let id = first(&xml, "networkInterfaceId");
    let ips = all(&xml, "privateIpAddress");
    // The primary first (top level and first in the set), then .4 and .5.
    assert_eq!(ips, ["10.0.1.50", "10.0.1.50", "10.0.1.4", "10.0.1.5"]);
    // spec 1.2: a taken address, a reserved one, one outside the subnet.
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&PrivateIpAddress=10.0.1.50",
            e.subnet
        )),
        "InvalidIPAddress.InUse"
    );
    for ip in ["10.0.1.1", "10.0.2.9", "not-an-ip"] {
        assert_eq!(
            e.err(&format!(
                "Action=CreateNetworkInterface&SubnetId={}&PrivateIpAddress={ip}",
                e.subnet
            )),
            "InvalidParameterValue",
            "{ip}"
        );
    }
    // PrivateIpAddresses.N with an explicit primary.
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={}&PrivateIpAddresses.1.PrivateIpAddress=10.0.1.60&PrivateIpAddresses.2.PrivateIpAddress=10.0.1.61&PrivateIpAddresses.2.Primary=true",
        e.subnet
    ));
    assert_eq!(first(&xml, "privateIpAddress"), "10.0.1.61");
    // The per-ENI limit (10, primary included).
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&SecondaryPrivateIpAddressCount=10",
            e.subnet
        )),
        "PrivateIpAddressLimitExceeded"
    );
    let assigned = e.ok(&format!(
        "Action=AssignPrivateIpAddresses&NetworkInterfaceId={id}&PrivateIpAddress.1=10.0.1.70&SecondaryPrivateIpAddressCount=1"
    ));
    assert_eq!(
        all(&assigned, "privateIpAddress"),
        ["10.0.1.70", "10.0.1.6"]
    );
    assert_eq!(
        e.err(&format!("Action=AssignPrivateIpAddresses&NetworkInterfaceId={id}&SecondaryPrivateIpAddressCount=6")),
        "PrivateIpAddressLimitExceeded"
    );
    assert_eq!(
        e.err(&format!(
            "Action=AssignPrivateIpAddresses&NetworkInterfaceId={id}&PrivateIpAddress.1=10.0.1.61"
        )),
        "InvalidIPAddress.InUse"
    );
    assert_eq!(
        e.err(&format!(
            "Action=AssignPrivateIpAddresses&NetworkInterfaceId={id}"
        )),
        "MissingParameter"
    );
    e.ok(&format!(
        "Action=UnassignPrivateIpAddresses&NetworkInterfaceId={id}&PrivateIpAddress.1=10.0.1.70"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={id}"
    ));
    assert!(!all(&xml, "privateIpAddress").contains(&"10.0.1.70".to_owned()));
    // The primary cannot go, nor an address the ENI lacks.
    for ip in ["10.0.1.50", "10.0.1.99"] {
        assert_eq!(
            e.err(&format!(
                "Action=UnassignPrivateIpAddresses&NetworkInterfaceId={id}&PrivateIpAddress.1={ip}"
            )),
            "InvalidParameterValue"
        );
    }
    // The released address is free again.
    e.eni("&PrivateIpAddress=10.0.1.70");
}

#[test]
fn groups_and_attributes() {
    let e = Env::new();
    let groups: Vec<String> = (0..6).map(|i| e.group(&format!("g{i}"))).collect();
    let five: String = groups[..5]
        .iter()
        .enumerate()
        .map(|(i, g)| format!("&SecurityGroupId.{}={g}", i + 1))
        .collect();
    let id = e.eni(&five);
    // spec 3.3: a sixth group on an ENI is refused.
    let six = format!("{five}&SecurityGroupId.6={}", groups[5]);
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}{six}",
            e.subnet
        )),
        "SecurityGroupsPerInterfaceLimitExceeded"
    );
    assert_eq!(
        e.err(&format!(
            "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}{six}"
        )),
        "SecurityGroupsPerInterfaceLimitExceeded"
    );
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&SecurityGroupId.1=sg-00000000000000000",
            e.subnet
        )),
        "InvalidGroup.NotFound"
    );
    // spec 3.1: a group is tied to one VPC.
    let vpc2 = first(&e.ok("Action=CreateVpc&CidrBlock=10.9.0.0%2F16"), "vpcId");
    let foreign = first(
        &e.ok(&format!(
            "Action=CreateSecurityGroup&GroupName=x&GroupDescription=d&VpcId={vpc2}"
        )),
        "groupId",
    );
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&SecurityGroupId.1={foreign}",
            e.subnet
        )),
        "InvalidParameter"
    );
    // spec 3.1: a group on an ENI cannot be deleted; once off, it can.
    assert_eq!(
        e.err(&format!("Action=DeleteSecurityGroup&GroupId={}", groups[0])),
        "DependencyViolation"
    );
    e.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}&SecurityGroupId.1={}",
        groups[5]
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaceAttribute&NetworkInterfaceId={id}&Attribute=groupSet"
    ));
    assert_eq!(all(&xml, "groupId"), std::slice::from_ref(&groups[5]));
    e.ok(&format!("Action=DeleteSecurityGroup&GroupId={}", groups[0]));

    // spec 5.4: source/dest check can be turned off.
    e.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}&SourceDestCheck.Value=false"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaceAttribute&NetworkInterfaceId={id}&Attribute=sourceDestCheck"
    ));
    assert_eq!(first(&xml, "value"), "false");
    e.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}&Description.Value=new"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaceAttribute&NetworkInterfaceId={id}&Attribute=description"
    ));
    assert_eq!(first(&xml, "value"), "new");
    assert_eq!(
        e.err(&format!(
            "Action=DescribeNetworkInterfaceAttribute&NetworkInterfaceId={id}&Attribute=bogus"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!(
            "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}"
        )),
        "MissingParameter"
    );
}

#[test]
fn connection_tracking_ranges() {
    let e = Env::new();
    // spec 3.2: timeouts within their ranges are kept; the others keep their defaults.
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={}&ConnectionTrackingSpecification.TcpEstablishedTimeout=60",
        e.subnet
    ));
    let id = first(&xml, "networkInterfaceId");
    assert_eq!(first(&xml, "tcpEstablishedTimeout"), "60");
    assert_eq!(first(&xml, "udpStreamTimeout"), "180");
    assert_eq!(first(&xml, "udpTimeout"), "30");
    for bad in [
        "TcpEstablishedTimeout=59",
        "TcpEstablishedTimeout=432001",
        "UdpStreamTimeout=181",
        "UdpStreamTimeout=59",
        "UdpTimeout=29",
        "UdpTimeout=61",
    ] {
        assert_eq!(
            e.err(&format!(
                "Action=CreateNetworkInterface&SubnetId={}&ConnectionTrackingSpecification.{bad}",
                e.subnet
            )),
            "InvalidParameterValue",
            "{bad}"
        );
    }
    e.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={id}&ConnectionTrackingSpecification.UdpTimeout=60"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={id}"
    ));
    assert_eq!(first(&xml, "tcpEstablishedTimeout"), "60");
    assert_eq!(first(&xml, "udpTimeout"), "60");
}

#[test]
fn attach_detach_and_in_use() {
    let e = Env::new();
    let run = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}",
        e.subnet
    ));
    let instance = first(&run, "instanceId");
    let primary = first(&run, "networkInterfaceId");
    let id = e.eni("");
    let attached = e.ok(&format!(
        "Action=AttachNetworkInterface&NetworkInterfaceId={id}&InstanceId={instance}&DeviceIndex=1"
    ));
    let attachment = first(&attached, "attachmentId");
    assert!(attachment.starts_with("eni-attach-"), "{attachment}");
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&Filter.1.Name=attachment.instance-id&Filter.1.Value.1={instance}"
    ));
    assert_eq!(all(&xml, "networkInterfaceId").len(), 2);
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&Filter.1.Name=attachment.attachment-id&Filter.1.Value.1={attachment}"
    ));
    assert_eq!(all(&xml, "networkInterfaceId"), std::slice::from_ref(&id));
    assert_eq!(first(&xml, "status"), "in-use");
    // An attached ENI cannot be deleted or attached again; a used index is refused.
    assert_eq!(
        e.err(&format!(
            "Action=DeleteNetworkInterface&NetworkInterfaceId={id}"
        )),
        "InvalidNetworkInterface.InUse"
    );
    assert_eq!(
        e.err(&format!("Action=AttachNetworkInterface&NetworkInterfaceId={id}&InstanceId={instance}&DeviceIndex=2")),
        "InvalidNetworkInterface.InUse"
    );
    let third = e.eni("");
    assert_eq!(
        e.err(&format!("Action=AttachNetworkInterface&NetworkInterfaceId={third}&InstanceId={instance}&DeviceIndex=1")),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!("Action=AttachNetworkInterface&NetworkInterfaceId={third}&InstanceId=i-00000000000000000&DeviceIndex=2")),
        "InvalidInstanceID.NotFound"
    );
    // The primary interface never detaches.
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={primary}"
    ));
    assert_eq!(
        e.err(&format!(
            "Action=DetachNetworkInterface&AttachmentId={}",
            first(&xml, "attachmentId")
        )),
        "OperationNotPermitted"
    );
    e.ok(&format!(
        "Action=DetachNetworkInterface&AttachmentId={attachment}"
    ));
    assert_eq!(
        e.err(&format!(
            "Action=DetachNetworkInterface&AttachmentId={attachment}"
        )),
        "InvalidAttachmentID.NotFound"
    );
    e.ok(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={id}"
    ));
    // An ENI in another zone cannot join the instance.
    let other = first(
        &e.ok(&format!(
            "Action=CreateSubnet&VpcId={}&CidrBlock=10.0.2.0%2F24&AvailabilityZone=us-east-1b",
            e.vpc
        )),
        "subnetId",
    );
    let far = first(
        &e.ok(&format!("Action=CreateNetworkInterface&SubnetId={other}")),
        "networkInterfaceId",
    );
    assert_eq!(
        e.err(&format!("Action=AttachNetworkInterface&NetworkInterfaceId={far}&InstanceId={instance}&DeviceIndex=3")),
        "InvalidParameterCombination"
    );
}

// spec 12.1 (Idempotency): CreateNetworkInterface takes a ClientToken
// (botocore fills one in and resends it when it retries): the same token and
// parameters return the first interface and make no second one; the token
// with other parameters is IdempotentParameterMismatch; a call that fails
// keeps no token; a token over 64 ASCII characters is refused.
#[test]
fn create_client_token_idempotency() {
    let e = Env::new();
    let req = format!(
        "Action=CreateNetworkInterface&SubnetId={}&Description=web&ClientToken=tok-1",
        e.subnet
    );
    let one = e.ok(&req);
    let id = first(&one, "networkInterfaceId");
    assert_eq!(first(&one, "clientToken"), "tok-1");
    let two = e.ok(&req);
    assert_eq!(first(&two, "networkInterfaceId"), id);
    assert_eq!(first(&two, "clientToken"), "tok-1");
    assert_eq!(
        all(
            &e.ok("Action=DescribeNetworkInterfaces"),
            "networkInterfaceId"
        ),
        std::slice::from_ref(&id)
    );
    assert_eq!(e.available(), "250", "one address taken, not two");
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&Description=db&ClientToken=tok-1",
            e.subnet
        )),
        "IdempotentParameterMismatch"
    );
    // A failed call (its subnet does not exist) stores no token: the token
    // then serves another request.
    assert_eq!(
        e.err("Action=CreateNetworkInterface&SubnetId=subnet-0123456789abcdef0&ClientToken=tok-2"),
        "InvalidSubnetID.NotFound"
    );
    let other = e.eni("&ClientToken=tok-2");
    assert_ne!(other, id);
    assert_eq!(
        e.err(&format!("{req}{}", "x".repeat(60))),
        "InvalidParameterValue",
        "65 characters"
    );
    e.eni(&format!("&ClientToken={}", "y".repeat(64)));
}
