//! The default VPC (spec 1.3): made once per account and region with its
//! subnets, gateway and route; CreateDefaultVpc and CreateDefaultSubnet;
//! and the launches and groups that fall back to it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, ensure_default_vpc, first};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn describe(store: &dyn Store, a: &Account, action: &str, filter: &str, vpc: &str) -> String {
    call(
        store,
        a,
        &format!("Action={action}&Filter.1.Name={filter}&Filter.1.Value.1={vpc}"),
    )
    .unwrap()
}

/// Deletes the default VPC the way a user must: subnets, gateway, VPC.
fn delete_default_vpc(store: &dyn Store, a: &Account, vpc: &str) {
    let subnets = describe(store, a, "DescribeSubnets", "vpc-id", vpc);
    for s in all(&subnets, "subnetId") {
        call(store, a, &format!("Action=DeleteSubnet&SubnetId={s}")).unwrap();
    }
    let igws = describe(
        store,
        a,
        "DescribeInternetGateways",
        "attachment.vpc-id",
        vpc,
    );
    let igw = first(&igws, "internetGatewayId");
    call(
        store,
        a,
        &format!("Action=DetachInternetGateway&InternetGatewayId={igw}&VpcId={vpc}"),
    )
    .unwrap();
    call(
        store,
        a,
        &format!("Action=DeleteInternetGateway&InternetGatewayId={igw}"),
    )
    .unwrap();
    call(store, a, &format!("Action=DeleteVpc&VpcId={vpc}")).unwrap();
}

#[test]
fn made_once_with_everything_aws_gives_it() {
    let store = MemoryStore::new();
    let a = account();
    ensure_default_vpc(&store, &a);
    ensure_default_vpc(&store, &a);
    let xml = call(&store, &a, "Action=DescribeVpcs").unwrap();
    let vpcs = all(&xml, "vpcId");
    assert_eq!(vpcs.len(), 1, "made once: {xml}");
    let vpc = &vpcs[0];
    // spec 1.3: 172.31.0.0/16, default, DNS hostnames on.
    assert_eq!(first(&xml, "cidrBlock"), "172.31.0.0/16");
    assert_eq!(first(&xml, "isDefault"), "true");
    let hostnames = call(
        &store,
        &a,
        &format!("Action=DescribeVpcAttribute&VpcId={vpc}&Attribute=enableDnsHostnames"),
    )
    .unwrap();
    assert!(hostnames.contains("<value>true</value>"), "{hostnames}");
    // One /20 default subnet per zone, mapping public IPs.
    let subnets = describe(&store, &a, "DescribeSubnets", "vpc-id", vpc);
    let mut cidrs = all(&subnets, "cidrBlock");
    cidrs.sort();
    assert_eq!(cidrs, ["172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"]);
    assert_eq!(all(&subnets, "defaultForAz"), ["true"; 3]);
    assert_eq!(all(&subnets, "mapPublicIpOnLaunch"), ["true"; 3]);
    // An attached gateway and the route to it in the main table.
    let igws = describe(
        &store,
        &a,
        "DescribeInternetGateways",
        "attachment.vpc-id",
        vpc,
    );
    let igw = first(&igws, "internetGatewayId");
    let main = describe(&store, &a, "DescribeRouteTables", "vpc-id", vpc);
    assert!(main.contains("<main>true</main>"));
    assert!(
        main.contains(&format!(
            "<destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><gatewayId>{igw}</gatewayId>"
        )),
        "{main}"
    );
    // And what every VPC has: the default ACL (all three subnets on it) and group.
    let acls = describe(&store, &a, "DescribeNetworkAcls", "vpc-id", vpc);
    assert_eq!(all(&acls, "default"), ["true"]);
    assert_eq!(all(&acls, "subnetId").len(), 3);
    let groups = describe(&store, &a, "DescribeSecurityGroups", "vpc-id", vpc);
    assert_eq!(all(&groups, "groupName"), ["default"]);
}

// spec 1.3: a deleted default VPC stays deleted until CreateDefaultVpc, and
// there is at most one.
#[test]
fn deleted_stays_deleted_until_created_again() {
    let store = MemoryStore::new();
    let a = account();
    ensure_default_vpc(&store, &a);
    assert_eq!(
        code(&store, &a, "Action=CreateDefaultVpc"),
        "DefaultVpcAlreadyExists"
    );
    let vpc = first(&call(&store, &a, "Action=DescribeVpcs").unwrap(), "vpcId");
    delete_default_vpc(&store, &a, &vpc);
    ensure_default_vpc(&store, &a);
    let xml = call(&store, &a, "Action=DescribeVpcs").unwrap();
    assert!(all(&xml, "vpcId").is_empty(), "not restored: {xml}");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateDefaultSubnet&AvailabilityZone=us-east-1a"
        ),
        "DefaultVpcDoesNotExist"
    );
    let made = call(&store, &a, "Action=CreateDefaultVpc").unwrap();
    assert_eq!(first(&made, "isDefault"), "true");
    assert_ne!(first(&made, "vpcId"), vpc);
}

// spec 1.3: one default subnet per zone, in the next free /20.
#[test]
fn default_subnets_one_per_zone() {
    let store = MemoryStore::new();
    let a = account();
    ensure_default_vpc(&store, &a);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateDefaultSubnet&AvailabilityZone=us-east-1b"
        ),
        "DefaultSubnetAlreadyExistsInAvailabilityZone"
    );
    let subnets = call(
        &store,
        &a,
        "Action=DescribeSubnets&Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1b",
    )
    .unwrap();
    let b = first(&subnets, "subnetId");
    let freed = first(&subnets, "cidrBlock");
    call(&store, &a, &format!("Action=DeleteSubnet&SubnetId={b}")).unwrap();
    let made = call(
        &store,
        &a,
        "Action=CreateDefaultSubnet&AvailabilityZone=us-east-1b",
    )
    .unwrap();
    assert_eq!(first(&made, "cidrBlock"), freed);
    assert_eq!(first(&made, "defaultForAz"), "true");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateDefaultSubnet&AvailabilityZone=mars-1a"
        ),
        "InvalidParameterValue"
    );
}

// spec 1.3: launches and groups that name no VPC go to the default one, and
// instances there get a public address.
#[test]
fn launches_and_groups_fall_back_to_it() {
    let store = MemoryStore::new();
    let a = account();
    assert_eq!(
        code(
            &store,
            &a,
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1"
        ),
        "VPCIdNotSpecified",
        "no default VPC yet"
    );
    ensure_default_vpc(&store, &a);
    let vpc = first(&call(&store, &a, "Action=DescribeVpcs").unwrap(), "vpcId");
    let run = call(
        &store,
        &a,
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&Placement.AvailabilityZone=us-east-1c",
    )
    .unwrap();
    assert_eq!(first(&run, "vpcId"), vpc);
    assert!(run.contains("<availabilityZone>us-east-1c</availabilityZone>"));
    let instances = call(&store, &a, "Action=DescribeInstances").unwrap();
    assert!(
        first(&instances, "ipAddress").contains('.'),
        "a public IP: {instances}"
    );
    let group = call(
        &store,
        &a,
        "Action=CreateSecurityGroup&GroupName=web&GroupDescription=w",
    )
    .unwrap();
    let id = first(&group, "groupId");
    let shown = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&shown, "vpcId"), vpc);
}
