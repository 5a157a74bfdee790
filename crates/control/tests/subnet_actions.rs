//! The subnet and availability-zone actions over the in-memory store: ranges,
//! conflicts, reserved addresses, attributes, zones, and what a subnet does
//! to its VPC's deletion.

#![allow(clippy::unwrap_used)]

mod common;

use common::{all, call, code, first};

use openvpc_control::ApiError;
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn setup() -> (MemoryStore, Account, String) {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    let xml = call(&store, &a, "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap();
    let vpc = first(&xml, "vpcId");
    (store, a, vpc)
}

fn subnet(store: &dyn Store, a: &Account, vpc: &str, cidr: &str) -> Result<String, ApiError> {
    let cidr = cidr.replace('/', "%2F");
    call(
        store,
        a,
        &format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock={cidr}"),
    )
    .map(|xml| first(&xml, "subnetId"))
}

#[test]
fn create_describe_delete() {
    let (store, a, vpc) = setup();
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.1.9%2F24&AvailabilityZone=us-east-1b&TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web"
        ),
    )
    .unwrap();
    let id = first(&xml, "subnetId");
    assert!(id.starts_with("subnet-") && id.len() == 24, "{id}");
    // spec 1.1: host bits are masked.
    assert_eq!(first(&xml, "cidrBlock"), "10.0.1.0/24");
    // spec 1.2: a /24 offers 256 - 5 addresses; not public by default.
    assert_eq!(first(&xml, "availableIpAddressCount"), "251");
    assert_eq!(first(&xml, "mapPublicIpOnLaunch"), "false");
    assert_eq!(first(&xml, "availabilityZone"), "us-east-1b");
    assert_eq!(first(&xml, "availabilityZoneId"), "use1-az2");
    assert_eq!(
        first(&xml, "subnetArn"),
        format!("arn:aws:ec2:us-east-1:111111111111:subnet/{id}")
    );

    let described = call(
        &store,
        &a,
        "Action=DescribeSubnets&Filter.1.Name=tag:Name&Filter.1.Value.1=w*",
    )
    .unwrap();
    assert_eq!(all(&described, "subnetId"), std::slice::from_ref(&id));
    let none = call(
        &store,
        &a,
        "Action=DescribeSubnets&Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1a",
    )
    .unwrap();
    assert!(all(&none, "subnetId").is_empty());

    // spec 1.7: a VPC with a subnet cannot go.
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteVpc&VpcId={vpc}")),
        "DependencyViolation"
    );
    call(&store, &a, &format!("Action=DeleteSubnet&SubnetId={id}")).unwrap();
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteSubnet&SubnetId={id}")),
        "InvalidSubnetID.NotFound"
    );
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={vpc}")).unwrap();
}

#[test]
fn ranges_and_conflicts() {
    let (store, a, vpc) = setup();
    // spec 1.2: outside the VPC, too big or too small is a range error.
    for cidr in [
        "10.1.0.0/24",
        "10.0.0.0/15",
        "10.0.0.0/29",
        "192.168.0.0/24",
    ] {
        assert_eq!(
            subnet(&store, &a, &vpc, cidr).unwrap_err().code,
            "InvalidSubnet.Range",
            "{cidr}"
        );
    }
    // spec 1.2: a subnet may be the whole VPC; then anything else conflicts.
    let whole = subnet(&store, &a, &vpc, "10.0.0.0/16").unwrap();
    assert_eq!(
        subnet(&store, &a, &vpc, "10.0.3.0/24").unwrap_err().code,
        "InvalidSubnet.Conflict"
    );
    call(&store, &a, &format!("Action=DeleteSubnet&SubnetId={whole}")).unwrap();
    subnet(&store, &a, &vpc, "10.0.3.0/24").unwrap();
    assert_eq!(
        subnet(&store, &a, &vpc, "10.0.3.128/25").unwrap_err().code,
        "InvalidSubnet.Conflict"
    );
    // A /28 has 16 - 5 usable addresses.
    let small = subnet(&store, &a, &vpc, "10.0.4.0/28").unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSubnets&SubnetId.1={small}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "availableIpAddressCount"), "11");
}

#[test]
fn bad_input_gets_aws_codes() {
    let (store, a, vpc) = setup();
    for (body, want) in [
        (
            "Action=CreateSubnet&CidrBlock=10.0.0.0%2F24".to_owned(),
            "MissingParameter",
        ),
        (
            format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=banana"),
            "InvalidParameterValue",
        ),
        (
            "Action=CreateSubnet&VpcId=vpc-nope&CidrBlock=10.0.0.0%2F24".to_owned(),
            "InvalidVpcID.Malformed",
        ),
        (
            "Action=CreateSubnet&VpcId=vpc-0123456789abcdef0&CidrBlock=10.0.0.0%2F24".to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            format!(
                "Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.0.0%2F24&AvailabilityZone=mars-1a"
            ),
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeSubnets&SubnetId.1=subnet-0123456789abcdef0".to_owned(),
            "InvalidSubnetID.NotFound",
        ),
        (
            format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.0.0%2F24&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    let xml = call(&store, &a, "Action=DescribeSubnets").unwrap();
    assert!(all(&xml, "subnetId").is_empty(), "nothing was created");
}

#[test]
fn attributes_one_at_a_time() {
    let (store, a, vpc) = setup();
    let id = subnet(&store, &a, &vpc, "10.0.0.0/24").unwrap();
    call(
        &store,
        &a,
        &format!("Action=ModifySubnetAttribute&SubnetId={id}&MapPublicIpOnLaunch.Value=true"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        "Action=DescribeSubnets&Filter.1.Name=map-public-ip-on-launch&Filter.1.Value.1=true",
    )
    .unwrap();
    assert_eq!(all(&xml, "subnetId"), std::slice::from_ref(&id));
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=ModifySubnetAttribute&SubnetId={id}&MapPublicIpOnLaunch.Value=true&EnableDns64.Value=true"
            )
        ),
        "InvalidParameterCombination"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeSubnets&Filter.1.Name=colour&Filter.1.Value.1=red"
        ),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=ModifySubnetAttribute&SubnetId={id}&MapPublicIpOnLaunch.Value=maybe")
        ),
        "InvalidParameterValue"
    );
}

#[test]
fn zones_of_the_region() {
    let (store, a, _) = setup();
    let xml = call(&store, &a, "Action=DescribeAvailabilityZones").unwrap();
    assert_eq!(
        all(&xml, "zoneName"),
        ["us-east-1a", "us-east-1b", "us-east-1c"]
    );
    let xml = call(
        &store,
        &a,
        "Action=DescribeAvailabilityZones&Filter.1.Name=zone-id&Filter.1.Value.1=use1-az3",
    )
    .unwrap();
    assert_eq!(all(&xml, "zoneName"), ["us-east-1c"]);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeAvailabilityZones&ZoneName.1=us-east-1z"
        ),
        "InvalidParameterValue"
    );
}

// Accounts are isolated: another account neither sees nor uses the subnet.
#[test]
fn another_account_sees_nothing() {
    let (store, a, vpc) = setup();
    let id = subnet(&store, &a, &vpc, "10.0.0.0/24").unwrap();
    let b = Account::generate("b", Some("222222222222"));
    let xml = call(&store, &b, "Action=DescribeSubnets").unwrap();
    assert!(all(&xml, "subnetId").is_empty());
    assert_eq!(
        code(&store, &b, &format!("Action=DeleteSubnet&SubnetId={id}")),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        subnet(&store, &b, &vpc, "10.0.1.0/24").unwrap_err().code,
        "InvalidVpcID.NotFound"
    );
}
