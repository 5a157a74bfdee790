//! The VPC attribute and CIDR-block actions over the in-memory store:
//! ModifyVpcAttribute and DescribeVpcAttribute (spec 1.4), and
//! AssociateVpcCidrBlock / DisassociateVpcCidrBlock with the size, overlap,
//! restricted-range and quota rules and Amazon-provided IPv6 (spec 1.1, 13).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc, vpc_with};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn attribute(store: &dyn Store, a: &Account, vpc: &str, name: &str) -> String {
    let xml = call(
        store,
        a,
        &format!("Action=DescribeVpcAttribute&VpcId={vpc}&Attribute={name}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "vpcId"), vpc);
    first(&first(&xml, name), "value")
}

fn associate(vpc: &str, cidr: &str) -> String {
    format!(
        "Action=AssociateVpcCidrBlock&VpcId={vpc}&CidrBlock={}",
        cidr.replace('/', "%2F")
    )
}

fn cidrs(store: &dyn Store, a: &Account, vpc: &str) -> Vec<String> {
    let xml = call(store, a, &format!("Action=DescribeVpcs&VpcId.1={vpc}")).unwrap();
    all(&first(&xml, "cidrBlockAssociationSet"), "cidrBlock")
}

// spec 1.4: defaults (support on, hostnames off), one attribute per call,
// and hostnames only while support is on.
#[test]
fn dns_attributes() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    assert_eq!(attribute(&store, &a, &v, "enableDnsSupport"), "true");
    assert_eq!(attribute(&store, &a, &v, "enableDnsHostnames"), "false");
    assert_eq!(
        attribute(&store, &a, &v, "enableNetworkAddressUsageMetrics"),
        "false"
    );
    let modify = |attr: &str, value: &str| {
        format!("Action=ModifyVpcAttribute&VpcId={v}&{attr}.Value={value}")
    };
    let xml = call(&store, &a, &modify("EnableDnsHostnames", "true")).unwrap();
    assert!(xml.contains("<return>true</return>"));
    assert_eq!(attribute(&store, &a, &v, "enableDnsHostnames"), "true");
    call(&store, &a, &modify("EnableDnsHostnames", "false")).unwrap();
    call(&store, &a, &modify("EnableDnsSupport", "false")).unwrap();
    assert_eq!(attribute(&store, &a, &v, "enableDnsSupport"), "false");
    call(
        &store,
        &a,
        &modify("EnableNetworkAddressUsageMetrics", "true"),
    )
    .unwrap();
    assert_eq!(
        attribute(&store, &a, &v, "enableNetworkAddressUsageMetrics"),
        "true"
    );
    let before = store.revision().unwrap();
    for (body, want) in [
        // spec 1.4: hostnames need DNS support.
        (
            modify("EnableDnsHostnames", "true"),
            "InvalidParameterCombination",
        ),
        // spec 1.4: one attribute per call.
        (
            format!(
                "{}&EnableDnsHostnames.Value=false",
                modify("EnableDnsSupport", "true")
            ),
            "InvalidParameterCombination",
        ),
        (
            format!("Action=ModifyVpcAttribute&VpcId={v}"),
            "MissingParameter",
        ),
        (modify("EnableDnsSupport", "yes"), "InvalidParameterValue"),
        (
            "Action=ModifyVpcAttribute&VpcId=vpc-0123456789abcdef0&EnableDnsSupport.Value=true"
                .to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            "Action=ModifyVpcAttribute&EnableDnsSupport.Value=true".to_owned(),
            "MissingParameter",
        ),
        (
            format!("{}&DryRun=true", modify("EnableDnsSupport", "true")),
            "DryRunOperation",
        ),
        (
            format!("Action=DescribeVpcAttribute&VpcId={v}&Attribute=enableClassicLink"),
            "InvalidParameterValue",
        ),
        (
            format!("Action=DescribeVpcAttribute&VpcId={v}"),
            "MissingParameter",
        ),
        (
            "Action=DescribeVpcAttribute&VpcId=vpc-0123456789abcdef0&Attribute=enableDnsSupport"
                .to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            "Action=DescribeVpcAttribute&VpcId=vpc-x&Attribute=enableDnsSupport".to_owned(),
            "InvalidVpcID.Malformed",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    assert_eq!(store.revision().unwrap(), before, "no failed call wrote");
}

// spec 1.1: a secondary block shows `associating` in the answer and
// `associated` afterwards, with a vpc-cidr-assoc- ID; it can be removed
// and added again; the primary cannot be removed.
#[test]
fn associate_and_disassociate() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc_with(&store, &a, "10.10.42.0/24");
    let xml = call(&store, &a, &associate(&v, "10.10.43.7/24")).unwrap();
    assert_eq!(first(&xml, "vpcId"), v);
    let assoc = first(&xml, "cidrBlockAssociation");
    assert_eq!(
        first(&assoc, "cidrBlock"),
        "10.10.43.0/24",
        "host bits masked"
    );
    assert_eq!(first(&assoc, "state"), "associating");
    let id = first(&assoc, "associationId");
    assert!(
        id.starts_with("vpc-cidr-assoc-") && id.len() == 15 + 17,
        "{id}"
    );
    assert_eq!(cidrs(&store, &a, &v), ["10.10.42.0/24", "10.10.43.0/24"]);
    let described = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={v}")).unwrap();
    assert_eq!(
        all(&described, "state"),
        ["available", "associated", "associated"]
    );
    let by_filter = call(
        &store,
        &a,
        "Action=DescribeVpcs&Filter.1.Name=cidr-block-association.cidr-block&Filter.1.Value.1=10.10.43.0/24",
    )
    .unwrap();
    assert_eq!(all(&by_filter, "vpcId"), [v.as_str()]);

    let xml = call(
        &store,
        &a,
        &format!("Action=DisassociateVpcCidrBlock&AssociationId={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "vpcId"), v);
    assert_eq!(first(&xml, "state"), "disassociating");
    assert_eq!(first(&xml, "associationId"), id);
    assert_eq!(cidrs(&store, &a, &v), ["10.10.42.0/24"]);
    call(&store, &a, &associate(&v, "10.10.43.0/24")).unwrap();

    let primary = first(&described, "associationId");
    let e = call(
        &store,
        &a,
        &format!("Action=DisassociateVpcCidrBlock&AssociationId={primary}"),
    )
    .unwrap_err();
    assert_eq!(e.code, "OperationNotPermitted");
    assert!(
        e.message.contains("primary IPv4 CIDR block"),
        "{}",
        e.message
    );
    for gone in [id.as_str(), "vpc-cidr-assoc-BORING123"] {
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action=DisassociateVpcCidrBlock&AssociationId={gone}")
            ),
            "InvalidVpcCidrBlockAssociationID.NotFound"
        );
    }
    // Another account cannot remove this VPC's blocks.
    let b = Account::generate("b", Some("222222222222"));
    let current = all(
        &first(
            &call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={v}")).unwrap(),
            "cidrBlockAssociationSet",
        ),
        "associationId",
    )
    .pop()
    .unwrap();
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=DisassociateVpcCidrBlock&AssociationId={current}")
        ),
        "InvalidVpcCidrBlockAssociationID.NotFound"
    );
}

// spec 1.1: size, overlap, the restricted ranges, link-local, and the
// quota of 5 IPv4 blocks; none of the refusals writes anything.
#[test]
fn cidr_rules() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let before = store.revision().unwrap();
    for (body, want) in [
        (associate(&v, "10.1.0.0/15"), "InvalidVpc.Range"),
        (associate(&v, "10.1.0.0/29"), "InvalidVpc.Range"),
        (associate(&v, "10.0.128.0/17"), "InvalidVpc.Range"),
        (associate(&v, "10.0.0.0/16"), "InvalidVpc.Range"),
        (associate(&v, "192.168.0.0/16"), "InvalidVpc.Range"),
        (associate(&v, "172.16.0.0/16"), "InvalidVpc.Range"),
        (associate(&v, "198.19.0.0/16"), "InvalidVpc.Range"),
        (associate(&v, "169.254.0.0/16"), "InvalidVpc.Range"),
        (associate(&v, "banana"), "InvalidParameterValue"),
        (
            associate("vpc-0123456789abcdef0", "10.1.0.0/16"),
            "InvalidVpcID.NotFound",
        ),
        (
            format!("Action=AssociateVpcCidrBlock&VpcId={v}"),
            "MissingParameter",
        ),
        (
            format!(
                "{}&AmazonProvidedIpv6CidrBlock=true",
                associate(&v, "10.1.0.0/16")
            ),
            "InvalidParameterCombination",
        ),
        // AssociateVpcCidrBlock API reference: an Ipv6CidrBlock needs its
        // Ipv6Pool.
        (
            format!("Action=AssociateVpcCidrBlock&VpcId={v}&Ipv6CidrBlock=2001:db8::%2F56"),
            "MissingParameter",
        ),
        (
            format!("{}&DryRun=true", associate(&v, "10.1.0.0/16")),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    assert_eq!(store.revision().unwrap(), before, "no refusal wrote");
    let e = call(&store, &a, &associate(&v, "192.168.0.0/16")).unwrap_err();
    assert!(e.message.contains("restricted"), "{}", e.message);
    let e = call(&store, &a, &associate(&v, "1000.1.0.0/20")).unwrap_err();
    assert_eq!(
        e.message,
        "Value (1000.1.0.0/20) for parameter cidrBlock is invalid. This is not a valid CIDR block."
    );
    // Permitted: other 10/8 blocks, public blocks and 100.64/10.
    for cidr in [
        "10.1.0.0/16",
        "100.64.0.0/16",
        "203.0.113.0/24",
        "10.2.0.0/16",
    ] {
        call(&store, &a, &associate(&v, cidr)).unwrap();
    }
    // spec 13: five IPv4 blocks per VPC, the primary included.
    let e = call(&store, &a, &associate(&v, "10.3.0.0/16")).unwrap_err();
    assert_eq!(e.code, "CidrLimitExceeded");
    assert_eq!(
        e.message,
        format!("This network {v} has met its maximum number of allowed CIDRs: 5")
    );
    assert_eq!(cidrs(&store, &a, &v).len(), 5);
}

// spec 1.1: Amazon-provided IPv6 /56 blocks, distinct per VPC, at most 5.
#[test]
fn amazon_provided_ipv6() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&AmazonProvidedIpv6CidrBlock=true",
    )
    .unwrap();
    let v = first(&xml, "vpcId");
    let set = first(&xml, "ipv6CidrBlockAssociationSet");
    let block = first(&set, "ipv6CidrBlock");
    assert!(block.ends_with("::/56"), "{block}");
    assert_eq!(first(&set, "state"), "associated");
    assert!(first(&set, "associationId").starts_with("vpc-cidr-assoc-"));
    let other = first(
        &first(
            &call(
                &store,
                &a,
                "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&AmazonProvidedIpv6CidrBlock=true",
            )
            .unwrap(),
            "ipv6CidrBlockAssociationSet",
        ),
        "ipv6CidrBlock",
    );
    assert_ne!(block, other, "every VPC gets its own block");
    let plain = vpc(&store, &a);
    let described = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={plain}")).unwrap();
    assert!(
        described.contains("<ipv6CidrBlockAssociationSet></ipv6CidrBlockAssociationSet>"),
        "{described}"
    );
    let by_block = call(
        &store,
        &a,
        &format!(
            "Action=DescribeVpcs&Filter.1.Name=ipv6-cidr-block-association.ipv6-cidr-block&Filter.1.Value.1={}",
            block.replace('/', "%2F")
        ),
    )
    .unwrap();
    assert_eq!(all(&by_block, "vpcId"), [v.as_str()]);

    let add = format!("Action=AssociateVpcCidrBlock&VpcId={v}&AmazonProvidedIpv6CidrBlock=true");
    let xml = call(&store, &a, &add).unwrap();
    let assoc = first(&xml, "ipv6CidrBlockAssociation");
    assert_eq!(first(&assoc, "state"), "associating");
    let id = first(&assoc, "associationId");
    for _ in 0..3 {
        call(&store, &a, &add).unwrap();
    }
    assert_eq!(code(&store, &a, &add), "CidrLimitExceeded");
    let xml = call(
        &store,
        &a,
        &format!("Action=DisassociateVpcCidrBlock&AssociationId={id}"),
    )
    .unwrap();
    let assoc = first(&xml, "ipv6CidrBlockAssociation");
    assert_eq!(first(&assoc, "state"), "disassociating");
    assert_eq!(first(&assoc, "associationId"), id);
    call(&store, &a, &add).unwrap();
}

// spec 1.1: a new block gets a local route in every route table of the VPC,
// loses it with the block, and cannot go while a subnet uses it.
#[test]
fn secondary_blocks_and_local_routes() {
    let store = MemoryStore::new();
    let a = account();
    let vpc = vpc_with(&store, &a, "10.0.0.0%2F16");
    let custom = first(
        &call(&store, &a, &format!("Action=CreateRouteTable&VpcId={vpc}")).unwrap(),
        "routeTableId",
    );
    let xml = call(&store, &a, &associate(&vpc, "10.1.0.0%2F16")).unwrap();
    let assoc = first(&xml, "associationId");
    let locals = |store: &MemoryStore| {
        let xml = call(
            store,
            &a,
            &format!("Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}&Filter.2.Name=route.destination-cidr-block&Filter.2.Value.1=10.1.0.0/16"),
        )
        .unwrap();
        // Association items repeat their table's ID.
        let mut tables = all(&xml, "routeTableId");
        tables.sort();
        tables.dedup();
        tables
    };
    assert_eq!(locals(&store).len(), 2, "the main and the custom table");
    assert!(locals(&store).contains(&custom));
    let subnet = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.1.3.0%2F24"),
        )
        .unwrap(),
        "subnetId",
    );
    let disassociate = format!("Action=DisassociateVpcCidrBlock&AssociationId={assoc}");
    assert_eq!(code(&store, &a, &disassociate), "InvalidCidrBlock.InUse");
    call(
        &store,
        &a,
        &format!("Action=DeleteSubnet&SubnetId={subnet}"),
    )
    .unwrap();
    call(&store, &a, &disassociate).unwrap();
    assert!(locals(&store).is_empty());
}
