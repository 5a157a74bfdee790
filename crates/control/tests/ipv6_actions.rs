//! IPv6 on subnets, ENIs and instances over the in-memory store, without
//! HTTP (spec 1.1, 1.2): Associate/DisassociateSubnetCidrBlock with /64s of
//! the VPC's /56, IPv6-only subnets, `AssignIpv6AddressOnCreation`,
//! Assign/UnassignIpv6Addresses, and RunInstances' IPv6 parameters, with
//! every error code on the way. IPv6 is records only so far: what is checked
//! here is what the API stores and shows.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv6Addr;

use common::{Env, all, first};

/// A VPC with an Amazon-provided /56 (and 10.0.0.0/16): the env and the /56.
fn dual_stack() -> (Env, Ipv6Addr) {
    let e = Env::new();
    e.ok(&format!(
        "Action=AssociateVpcCidrBlock&VpcId={}&AmazonProvidedIpv6CidrBlock=true",
        e.vpc
    ));
    let d = e.ok(&format!("Action=DescribeVpcs&VpcId.1={}", e.vpc));
    let block = first(&d, "ipv6CidrBlock");
    assert!(block.ends_with("/56"), "{block}");
    let base: Ipv6Addr = block.trim_end_matches("/56").parse().unwrap();
    (e, base)
}

/// The `n`th /64 of the /56 at `base`, URL-encoded.
fn slash64(base: Ipv6Addr, n: u128) -> String {
    let net = Ipv6Addr::from(u128::from(base) | (n << 64));
    format!("{net}%2F64")
}

/// The `host`th address of the `n`th /64.
fn addr(base: Ipv6Addr, n: u128, host: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(base) | (n << 64) | host)
}

fn associate(e: &Env, subnet: &str, block: &str) -> Result<String, String> {
    common::call(
        &e.store,
        &e.a,
        &format!("Action=AssociateSubnetCidrBlock&SubnetId={subnet}&Ipv6CidrBlock={block}"),
    )
    .map_err(|err| err.code.into_owned())
}

fn subnet_xml(e: &Env, subnet: &str) -> String {
    e.ok(&format!("Action=DescribeSubnets&SubnetId.1={subnet}"))
}

fn eni_xml(e: &Env, eni: &str) -> String {
    e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
    ))
}

/// The IPv6 addresses listed in `ipv6AddressesSet` items.
fn ipv6_set(xml: &str) -> Vec<String> {
    all(xml, "ipv6AddressesSet")
        .iter()
        .flat_map(|set| all(set, "ipv6Address"))
        .collect()
}

/// A dual-stack subnet 10.0.2.0/24 with the /56's `n`th /64.
fn dual_subnet(e: &Env, base: Ipv6Addr, n: u128) -> String {
    first(
        &e.ok(&format!(
            "Action=CreateSubnet&VpcId={}&CidrBlock=10.0.{}.0%2F24&Ipv6CidrBlock={}",
            e.vpc,
            10 + n,
            slash64(base, n)
        )),
        "subnetId",
    )
}

// spec 1.1: a subnet takes a /64 of its VPC's /56. AWS answers while the
// block is `associating`; DescribeSubnets then shows it `associated`, and
// DisassociateSubnetCidrBlock answers `disassociating` and removes it.
#[test]
fn associate_and_disassociate_a_slash_64() {
    let (e, base) = dual_stack();
    let xml = associate(&e, &e.subnet, &slash64(base, 1)).unwrap();
    assert_eq!(first(&xml, "subnetId"), e.subnet);
    assert_eq!(first(&xml, "state"), "associating");
    let assoc = first(&xml, "associationId");
    assert!(assoc.starts_with("subnet-cidr-assoc-"), "{assoc}");
    let block = format!("{}/64", addr(base, 1, 0));
    assert_eq!(first(&xml, "ipv6CidrBlock"), block);

    let d = subnet_xml(&e, &e.subnet);
    let set = first(&d, "ipv6CidrBlockAssociationSet");
    assert_eq!(first(&set, "associationId"), assoc);
    assert_eq!(first(&set, "ipv6CidrBlock"), block);
    assert_eq!(first(&set, "state"), "associated");
    // The IPv4 side is untouched.
    assert_eq!(first(&d, "cidrBlock"), "10.0.1.0/24");
    assert_eq!(first(&d, "ipv6Native"), "false");
    // DescribeSubnets filters on the association.
    let f = e.ok(&format!(
        "Action=DescribeSubnets&Filter.1.Name=ipv6-cidr-block-association.ipv6-cidr-block&Filter.1.Value.1={}",
        block.replace('/', "%2F")
    ));
    assert_eq!(all(&f, "subnetId"), vec![e.subnet.clone()]);

    let xml = e.ok(&format!(
        "Action=DisassociateSubnetCidrBlock&AssociationId={assoc}"
    ));
    assert_eq!(first(&xml, "state"), "disassociating");
    assert_eq!(first(&xml, "subnetId"), e.subnet);
    let d = subnet_xml(&e, &e.subnet);
    assert_eq!(first(&d, "ipv6CidrBlockAssociationSet"), "");
    // The block is free for another subnet again.
    dual_subnet(&e, base, 1);
}

// spec 1.1, 1.2: the block must lie in one of the VPC's IPv6 blocks and be
// /44 to /64 in steps of four; both wrong answer `InvalidSubnet.Range`.
#[test]
fn block_outside_or_wrong_size_is_refused() {
    let (e, base) = dual_stack();
    // Outside the VPC's /56.
    assert_eq!(
        associate(&e, &e.subnet, "2001:db8::%2F64").unwrap_err(),
        "InvalidSubnet.Range"
    );
    // Inside, but sizes AWS does not take for a subnet.
    for len in [62, 65, 80, 128] {
        let block = format!("{}%2F{len}", addr(base, 1, 0));
        assert_eq!(
            associate(&e, &e.subnet, &block).unwrap_err(),
            "InvalidSubnet.Range",
            "/{len}"
        );
    }
    // Larger than the VPC's block.
    assert_eq!(
        associate(&e, &e.subnet, &format!("{base}%2F52")).unwrap_err(),
        "InvalidSubnet.Range"
    );
    // Not a CIDR at all.
    assert_eq!(
        associate(&e, &e.subnet, "banana").unwrap_err(),
        "InvalidParameterValue"
    );
    // A VPC without IPv6 has no block to carve from.
    let plain = Env::new();
    assert_eq!(
        associate(&plain, &plain.subnet, "2600:1f10::%2F64").unwrap_err(),
        "InvalidSubnet.Range"
    );
    // IPAM pools are not run here; refused clearly.
    assert_eq!(
        e.err(&format!(
            "Action=AssociateSubnetCidrBlock&SubnetId={}&Ipv6IpamPoolId=ipam-pool-0123456789abcdef0",
            e.subnet
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!(
            "Action=AssociateSubnetCidrBlock&SubnetId={}",
            e.subnet
        )),
        "MissingParameter"
    );
    // Nothing was stored by any of them.
    assert_eq!(
        first(&subnet_xml(&e, &e.subnet), "ipv6CidrBlockAssociationSet"),
        ""
    );
}

// spec 1.2: subnet blocks do not overlap; a subnet holds one IPv6 block.
#[test]
fn overlapping_or_second_block_is_refused() {
    let (e, base) = dual_stack();
    let other = dual_subnet(&e, base, 1);
    assert_eq!(
        associate(&e, &e.subnet, &slash64(base, 1)).unwrap_err(),
        "InvalidSubnet.Conflict"
    );
    // A /60 holding another subnet's /64 overlaps it too.
    assert_eq!(
        associate(&e, &e.subnet, &format!("{base}%2F60")).unwrap_err(),
        "InvalidSubnet.Conflict"
    );
    // So does CreateSubnet with it.
    assert_eq!(
        e.err(&format!(
            "Action=CreateSubnet&VpcId={}&CidrBlock=10.0.50.0%2F24&Ipv6CidrBlock={}",
            e.vpc,
            slash64(base, 1)
        )),
        "InvalidSubnet.Conflict"
    );
    associate(&e, &e.subnet, &slash64(base, 2)).unwrap();
    assert_eq!(
        associate(&e, &e.subnet, &slash64(base, 3)).unwrap_err(),
        "InvalidParameterValue"
    );
    assert_eq!(
        associate(&e, &other, &slash64(base, 3)).unwrap_err(),
        "InvalidParameterValue"
    );
}

// AWS: a subnet's IPv6 block stays while the subnet assigns IPv6 addresses
// on creation or ENIs hold addresses from it; the VPC's /56 stays while
// subnets use it. Unknown and malformed association IDs have their codes.
#[test]
fn disassociation_refusals() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    let assoc = first(&subnet_xml(&e, &subnet), "associationId");
    let vpcs = e.ok(&format!("Action=DescribeVpcs&VpcId.1={}", e.vpc));
    let vpc_assoc = first(
        &first(&vpcs, "ipv6CidrBlockAssociationSet"),
        "associationId",
    );
    assert_eq!(
        e.err(&format!(
            "Action=DisassociateVpcCidrBlock&AssociationId={vpc_assoc}"
        )),
        "InvalidCidrBlock.InUse"
    );

    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={subnet}&AssignIpv6AddressOnCreation.Value=true"
    ));
    let disassociate = format!("Action=DisassociateSubnetCidrBlock&AssociationId={assoc}");
    assert_eq!(e.err(&disassociate), "InvalidCidrBlock.InUse");
    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={subnet}&AssignIpv6AddressOnCreation.Value=false"
    ));
    let eni = first(
        &e.ok(&format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6AddressCount=1"
        )),
        "networkInterfaceId",
    );
    assert_eq!(e.err(&disassociate), "InvalidCidrBlock.InUse");
    e.ok(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={eni}"
    ));
    e.ok(&disassociate);
    // Now the VPC's block is free to go.
    e.ok(&format!(
        "Action=DisassociateVpcCidrBlock&AssociationId={vpc_assoc}"
    ));

    assert_eq!(
        e.err(
            "Action=DisassociateSubnetCidrBlock&AssociationId=subnet-cidr-assoc-0123456789abcdef0"
        ),
        "InvalidSubnetCidrBlockAssociationID.NotFound"
    );
    assert_eq!(
        e.err("Action=DisassociateSubnetCidrBlock&AssociationId=nonsense"),
        "InvalidSubnetCidrBlockAssociationID.Malformed"
    );
}

// spec 1.1: the whole /56 may be one subnet's block (moto's AWS-verified
// `test_create_ipv6native_subnet` does this), and an IPv6-only subnet has no
// IPv4 block, assigns IPv6 on creation and keeps doing so.
#[test]
fn ipv6_only_subnet() {
    let (e, base) = dual_stack();
    let xml = e.ok(&format!(
        "Action=CreateSubnet&VpcId={}&Ipv6Native=true&Ipv6CidrBlock={base}%2F56",
        e.vpc
    ));
    let subnet = first(&xml, "subnetId");
    assert_eq!(first(&xml, "ipv6Native"), "true");
    assert_eq!(first(&xml, "assignIpv6AddressOnCreation"), "true");
    assert_eq!(first(&xml, "state"), "available");
    assert_eq!(first(&xml, "cidrBlock"), "");
    assert_eq!(first(&xml, "availableIpAddressCount"), "0");
    assert_eq!(first(&xml, "ipv6CidrBlock"), format!("{base}/56"));
    let f = e.ok("Action=DescribeSubnets&Filter.1.Name=ipv6-native&Filter.1.Value.1=true");
    assert_eq!(all(&f, "subnetId"), vec![subnet.clone()]);

    // The rules moto's AWS-verified tests check, with AWS's messages.
    assert_eq!(
        e.err(&format!(
            "Action=CreateSubnet&VpcId={}&Ipv6Native=true",
            e.vpc
        )),
        "MissingParameter"
    );
    assert_eq!(
        e.err(&format!(
            "Action=CreateSubnet&VpcId={}&Ipv6Native=true&CidrBlock=10.0.9.0%2F24&Ipv6CidrBlock={}",
            e.vpc,
            slash64(base, 1)
        )),
        "InvalidParameterCombination"
    );

    assert_eq!(
        e.err(&format!(
            "Action=ModifySubnetAttribute&SubnetId={subnet}&AssignIpv6AddressOnCreation.Value=false"
        )),
        "InvalidParameterValue"
    );

    // An ENI in it has one IPv6 address and no IPv4 at all.
    let xml = e.ok(&format!("Action=CreateNetworkInterface&SubnetId={subnet}"));
    let eni = first(&xml, "networkInterfaceId");
    assert_eq!(first(&xml, "privateIpAddress"), "");
    assert_eq!(first(&xml, "ipv6Native"), "true");
    let v6 = ipv6_set(&xml);
    assert_eq!(v6.len(), 1, "{xml}");
    assert_eq!(first(&xml, "ipv6Address"), v6[0]);
    let ip: Ipv6Addr = v6[0].parse().unwrap();
    assert_eq!(
        u128::from(ip) >> 72,
        u128::from(base) >> 72,
        "{ip} in {base}/56"
    );
    // No IPv4 to hand out, and at least one IPv6 address.
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&PrivateIpAddress=10.0.0.5"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6AddressCount=0"
        )),
        "InvalidParameterValue"
    );
    // Its last address stays.
    assert_eq!(
        e.err(&format!(
            "Action=UnassignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6Addresses.1={ip}"
        )),
        "InvalidParameterValue"
    );
    // The ENI keeps the subnet (spec 1.7); without it the subnet goes.
    assert_eq!(
        e.err(&format!("Action=DeleteSubnet&SubnetId={subnet}")),
        "DependencyViolation"
    );
    e.ok(&format!(
        "Action=DeleteNetworkInterface&NetworkInterfaceId={eni}"
    ));
    e.ok(&format!("Action=DeleteSubnet&SubnetId={subnet}"));
}

// AssignIpv6AddressOnCreation: DescribeSubnets shows it, and an ENI created
// in the subnet gets one IPv6 address unless the request says otherwise.
#[test]
fn assign_on_creation() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    let xml = e.ok(&format!("Action=CreateNetworkInterface&SubnetId={subnet}"));
    assert!(ipv6_set(&xml).is_empty(), "{xml}");
    assert_eq!(first(&xml, "ipv6Native"), "false");

    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={subnet}&AssignIpv6AddressOnCreation.Value=true"
    ));
    assert_eq!(
        first(&subnet_xml(&e, &subnet), "assignIpv6AddressOnCreation"),
        "true"
    );
    let xml = e.ok(&format!("Action=CreateNetworkInterface&SubnetId={subnet}"));
    assert_eq!(ipv6_set(&xml).len(), 1, "{xml}");
    assert!(!first(&xml, "privateIpAddress").is_empty());
    // An explicit count (even 0) or explicit addresses win.
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6AddressCount=0"
    ));
    assert!(ipv6_set(&xml).is_empty(), "{xml}");
    let wanted = addr(base, 1, 0x42);
    let xml = e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6Addresses.1.Ipv6Address={wanted}"
    ));
    assert_eq!(ipv6_set(&xml), vec![wanted.to_string()]);
    assert_eq!(
        e.err(&format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6Addresses.1.Ipv6Address={}&Ipv6AddressCount=1",
            addr(base, 1, 0x43)
        )),
        "InvalidParameterCombination"
    );
}

// AssignIpv6Addresses / UnassignIpv6Addresses by address and by count, and
// DescribeNetworkInterfaces' Ipv6AddressesSet, Ipv6Address and filter.
#[test]
fn assign_and_unassign_ipv6_addresses() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    let eni = first(
        &e.ok(&format!("Action=CreateNetworkInterface&SubnetId={subnet}")),
        "networkInterfaceId",
    );
    let (a1, a2) = (addr(base, 1, 0x10), addr(base, 1, 0x11));
    let xml = e.ok(&format!(
        "Action=AssignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6Addresses.1={a1}&Ipv6Addresses.2={a2}"
    ));
    assert_eq!(first(&xml, "networkInterfaceId"), eni);
    assert_eq!(
        all(&first(&xml, "assignedIpv6Addresses"), "item"),
        vec![a1.to_string(), a2.to_string()]
    );
    // By count: only the new ones are answered.
    let xml = e.ok(&format!(
        "Action=AssignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6AddressCount=2"
    ));
    let added = all(&first(&xml, "assignedIpv6Addresses"), "item");
    assert_eq!(added.len(), 2);
    for a in &added {
        let ip: Ipv6Addr = a.parse().unwrap();
        assert_eq!(
            u128::from(ip) >> 64,
            u128::from(addr(base, 1, 0)) >> 64,
            "{ip}"
        );
        assert!(a != &a1.to_string() && a != &a2.to_string());
    }
    let d = eni_xml(&e, &eni);
    assert_eq!(ipv6_set(&d).len(), 4, "{d}");
    assert_eq!(first(&d, "ipv6Address"), a1.to_string());
    assert_eq!(first(&d, "isPrimaryIpv6"), "false");
    let f = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&Filter.1.Name=ipv6-addresses.ipv6-address&Filter.1.Value.1={a2}"
    ));
    assert_eq!(all(&f, "networkInterfaceId"), vec![eni.clone()]);

    let xml = e.ok(&format!(
        "Action=UnassignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6Addresses.1={a1}"
    ));
    assert_eq!(
        all(&first(&xml, "unassignedIpv6Addresses"), "item"),
        vec![a1.to_string()]
    );
    let d = eni_xml(&e, &eni);
    assert_eq!(ipv6_set(&d).len(), 3);
    assert!(!ipv6_set(&d).contains(&a1.to_string()));
    // The address is free again: another ENI may take it.
    e.ok(&format!(
        "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6Addresses.1.Ipv6Address={a1}"
    ));
}

// Every refusal of AssignIpv6Addresses / UnassignIpv6Addresses, each with
// its code, and none of them stores anything.
#[test]
fn assign_ipv6_refusals() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    let eni = first(
        &e.ok(&format!("Action=CreateNetworkInterface&SubnetId={subnet}")),
        "networkInterfaceId",
    );
    let other = first(
        &e.ok(&format!(
            "Action=CreateNetworkInterface&SubnetId={subnet}&Ipv6Addresses.1.Ipv6Address={}",
            addr(base, 1, 0x99)
        )),
        "networkInterfaceId",
    );
    let assign = |extra: &str| {
        e.err(&format!(
            "Action=AssignIpv6Addresses&NetworkInterfaceId={eni}{extra}"
        ))
    };
    // Outside the subnet's /64 (but inside the VPC's /56).
    assert_eq!(
        assign(&format!("&Ipv6Addresses.1={}", addr(base, 2, 5))),
        "InvalidParameterValue"
    );
    // spec 1.2: the first four and the last address are reserved.
    assert_eq!(
        assign(&format!("&Ipv6Addresses.1={}", addr(base, 1, 3))),
        "InvalidParameterValue"
    );
    assert_eq!(
        assign(&format!(
            "&Ipv6Addresses.1={}",
            addr(base, 1, u128::from(u64::MAX))
        )),
        "InvalidParameterValue"
    );
    // Held by another ENI.
    assert_eq!(
        assign(&format!("&Ipv6Addresses.1={}", addr(base, 1, 0x99))),
        "InvalidIPAddress.InUse"
    );
    // More than the per-interface limit (10).
    assert_eq!(assign("&Ipv6AddressCount=11"), "InvalidParameterValue");
    // Both forms, neither, nonsense, prefixes.
    assert_eq!(
        assign(&format!(
            "&Ipv6Addresses.1={}&Ipv6AddressCount=1",
            addr(base, 1, 0x20)
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(assign(""), "MissingParameter");
    assert_eq!(assign("&Ipv6Addresses.1=10.0.0.1"), "InvalidParameterValue");
    assert_eq!(assign("&Ipv6PrefixCount=1"), "InvalidParameterValue");
    assert_eq!(
        e.err(
            "Action=AssignIpv6Addresses&NetworkInterfaceId=eni-0123456789abcdef0&Ipv6AddressCount=1"
        ),
        "InvalidNetworkInterfaceID.NotFound"
    );
    // A subnet without an IPv6 block has no addresses to give.
    let plain = e.eni("");
    assert_eq!(
        e.err(&format!(
            "Action=AssignIpv6Addresses&NetworkInterfaceId={plain}&Ipv6AddressCount=1"
        )),
        "InvalidParameterValue"
    );
    assert!(ipv6_set(&eni_xml(&e, &eni)).is_empty());

    // Unassign: only what the ENI holds, and something must be named.
    assert_eq!(
        e.err(&format!(
            "Action=UnassignIpv6Addresses&NetworkInterfaceId={eni}&Ipv6Addresses.1={}",
            addr(base, 1, 0x99)
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        e.err(&format!(
            "Action=UnassignIpv6Addresses&NetworkInterfaceId={eni}"
        )),
        "MissingParameter"
    );
    assert_eq!(ipv6_set(&eni_xml(&e, &other)).len(), 1);
}

fn run(e: &Env, extra: &str) -> Result<String, String> {
    common::call(
        &e.store,
        &e.a,
        &format!("Action=RunInstances&ImageId=ami-12345678&MinCount=1&MaxCount=1{extra}"),
    )
    .map_err(|err| err.code.into_owned())
}

// RunInstances' Ipv6AddressCount / Ipv6Address.N / NetworkInterface.N's
// IPv6 parameters: DescribeInstances shows the instance's Ipv6Address and
// the interface's Ipv6AddressesSet; termination gives the addresses back.
#[test]
fn run_instances_with_ipv6() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    let xml = run(
        &e,
        &format!("&InstanceType=t3.micro&SubnetId={subnet}&Ipv6AddressCount=2"),
    )
    .unwrap();
    let id = first(&xml, "instanceId");
    let d = e.ok(&format!("Action=DescribeInstances&InstanceId.1={id}"));
    let v6 = ipv6_set(&d);
    assert_eq!(v6.len(), 2, "{d}");
    assert_eq!(first(&d, "ipv6Address"), v6[0]);
    assert!(!first(&d, "privateIpAddress").is_empty());
    let f = e.ok(&format!(
        "Action=DescribeInstances&Filter.1.Name=ipv6-address&Filter.1.Value.1={}",
        v6[0]
    ));
    assert_eq!(all(&f, "instanceId"), vec![id.clone()]);

    // By address, at the top level and on NetworkInterface.N.
    let wanted = addr(base, 1, 0x77);
    let xml = run(
        &e,
        &format!("&InstanceType=m5.large&SubnetId={subnet}&Ipv6Address.1.Ipv6Address={wanted}"),
    )
    .unwrap();
    assert_eq!(ipv6_set(&xml), vec![wanted.to_string()]);
    let xml = run(
        &e,
        &format!(
            "&InstanceType=t3.micro&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.SubnetId={subnet}&NetworkInterface.1.Ipv6AddressCount=1"
        ),
    )
    .unwrap();
    assert_eq!(ipv6_set(&xml).len(), 1, "{xml}");

    // AWS's combination rules.
    assert_eq!(
        run(
            &e,
            &format!(
                "&InstanceType=t3.micro&SubnetId={subnet}&Ipv6AddressCount=1&Ipv6Address.1.Ipv6Address={}",
                addr(base, 1, 0x78)
            )
        )
        .unwrap_err(),
        "InvalidParameterCombination"
    );
    assert_eq!(
        run(
            &e,
            &format!(
                "&InstanceType=t3.micro&Ipv6AddressCount=1&NetworkInterface.1.DeviceIndex=0&NetworkInterface.1.SubnetId={subnet}"
            )
        )
        .unwrap_err(),
        "InvalidParameterCombination"
    );
    // The address of a running instance is in use.
    assert_eq!(
        run(
            &e,
            &format!("&InstanceType=t3.micro&SubnetId={subnet}&Ipv6Address.1.Ipv6Address={wanted}")
        )
        .unwrap_err(),
        "InvalidIPAddress.InUse"
    );

    // Terminating gives the addresses back: the first instance's address
    // can be named again.
    e.ok(&format!("Action=TerminateInstances&InstanceId.1={id}"));
    run(
        &e,
        &format!(
            "&InstanceType=t3.micro&SubnetId={subnet}&Ipv6Address.1.Ipv6Address={}",
            v6[0]
        ),
    )
    .unwrap();
}

// AWS: old instance types have no IPv6 (UnsupportedOperation), including
// when the subnet assigns it on creation; the refused launch stores nothing.
#[test]
fn instance_types_without_ipv6_are_refused() {
    let (e, base) = dual_stack();
    let subnet = dual_subnet(&e, base, 1);
    assert_eq!(
        run(
            &e,
            &format!("&InstanceType=m1.small&SubnetId={subnet}&Ipv6AddressCount=1")
        )
        .unwrap_err(),
        "UnsupportedOperation"
    );
    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={subnet}&AssignIpv6AddressOnCreation.Value=true"
    ));
    assert_eq!(
        run(&e, &format!("&InstanceType=m3.medium&SubnetId={subnet}")).unwrap_err(),
        "UnsupportedOperation"
    );
    // Without IPv6 (explicit count 0) the old type launches.
    run(
        &e,
        &format!("&InstanceType=m1.small&SubnetId={subnet}&Ipv6AddressCount=0"),
    )
    .unwrap();
    // Nothing of the refused launches was kept.
    let d = e.ok("Action=DescribeInstances");
    assert_eq!(all(&d, "instanceId").len(), 1, "{d}");
    let enis = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&Filter.1.Name=subnet-id&Filter.1.Value.1={subnet}"
    ));
    assert_eq!(all(&enis, "networkInterfaceId").len(), 1);
    assert!(ipv6_set(&enis).is_empty());
}

// AWS: only Nitro instances launch in an IPv6-only subnet; they get IPv6
// addresses only, and no IPv4 at all.
#[test]
fn run_instances_in_ipv6_only_subnet() {
    let (e, base) = dual_stack();
    let subnet = first(
        &e.ok(&format!(
            "Action=CreateSubnet&VpcId={}&Ipv6Native=true&Ipv6CidrBlock={}",
            e.vpc,
            slash64(base, 3)
        )),
        "subnetId",
    );
    for xen in ["t2.micro", "m4.large", "c4.xlarge"] {
        assert_eq!(
            run(&e, &format!("&InstanceType={xen}&SubnetId={subnet}")).unwrap_err(),
            "UnsupportedOperation",
            "{xen}"
        );
    }
    let xml = run(&e, &format!("&InstanceType=t3.micro&SubnetId={subnet}")).unwrap();
    let id = first(&xml, "instanceId");
    let d = e.ok(&format!("Action=DescribeInstances&InstanceId.1={id}"));
    assert_eq!(first(&d, "privateIpAddress"), "", "{d}");
    let v6 = ipv6_set(&d);
    assert_eq!(v6.len(), 1, "{d}");
    assert_eq!(first(&d, "ipv6Address"), v6[0]);
    // i3.metal is Nitro although i3 is not.
    run(&e, &format!("&InstanceType=i3.metal&SubnetId={subnet}")).unwrap();
}
