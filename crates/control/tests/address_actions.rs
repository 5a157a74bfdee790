//! The Elastic IP actions over the in-memory store: allocation from the
//! region-wide pool, the quota, association with ENIs and instances,
//! reassociation, release, and DescribeAddresses' IDs and filters.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Env, all, call, first};

use openvpc_control::account::Account;

fn setup_instance(e: &Env, extra: &str) -> (String, String) {
    let run = e.ok(&format!(
        "Action=RunInstances&ImageId=ami-12c6146b&SubnetId={}{extra}",
        e.subnet
    ));
    (first(&run, "instanceId"), first(&run, "networkInterfaceId"))
}

#[test]
fn allocate_quota_and_pool() {
    let e = Env::new();
    let b = Account::generate("b", Some("222222222222"));
    let xml = e.ok("Action=AllocateAddress&Domain=vpc&TagSpecification.1.ResourceType=elastic-ip&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web");
    let alloc = first(&xml, "allocationId");
    assert!(alloc.starts_with("eipalloc-"), "{alloc}");
    // The default pool's first usable address.
    assert_eq!(first(&xml, "publicIp"), "198.51.100.1");
    assert_eq!(first(&xml, "domain"), "vpc");
    // The pool is region-wide: another account never gets the same address.
    let other = call(&e.store, &b, "Action=AllocateAddress&Domain=vpc").unwrap();
    assert_eq!(first(&other, "publicIp"), "198.51.100.2");
    for _ in 0..4 {
        e.ok("Action=AllocateAddress");
    }
    // spec 5.3 / 13: five per region.
    assert_eq!(
        e.err("Action=AllocateAddress&Domain=vpc"),
        "AddressLimitExceeded"
    );
    assert_eq!(
        e.err("Action=AllocateAddress&Domain=classic"),
        "InvalidParameterValue"
    );
    let described = e.ok("Action=DescribeAddresses&Filter.1.Name=tag:Name&Filter.1.Value.1=web");
    assert_eq!(
        all(&described, "allocationId"),
        std::slice::from_ref(&alloc)
    );
    // Each account sees only its own addresses.
    let theirs = call(&e.store, &b, "Action=DescribeAddresses").unwrap();
    assert_eq!(all(&theirs, "publicIp"), ["198.51.100.2"]);
    // Released addresses go back to the pool and are handed out again.
    e.ok(&format!("Action=ReleaseAddress&AllocationId={alloc}"));
    assert_eq!(
        e.err(&format!("Action=ReleaseAddress&AllocationId={alloc}")),
        "InvalidAllocationID.NotFound"
    );
    let again = call(&e.store, &b, "Action=AllocateAddress").unwrap();
    assert_eq!(first(&again, "publicIp"), "198.51.100.1");
    assert_eq!(e.err("Action=ReleaseAddress"), "MissingParameter");
    assert_eq!(
        e.err("Action=ReleaseAddress&AllocationId=bogus"),
        "InvalidAllocationID.NotFound"
    );
    assert_eq!(
        e.err("Action=ReleaseAddress&PublicIp=192.0.2.1"),
        "InvalidAddress.NotFound"
    );
    assert_eq!(
        e.err("Action=DescribeAddresses&PublicIp.1=256.256.256.256"),
        "InvalidAddress.NotFound"
    );
    assert_eq!(
        e.err("Action=DescribeAddresses&AllocationId.1=eipalloc-00000000000000000"),
        "InvalidAllocationID.NotFound"
    );
}

#[test]
fn associate_with_eni_and_instance() {
    let e = Env::new();
    let alloc = first(&e.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    let eni = e.eni("&SecondaryPrivateIpAddressCount=1");
    assert_eq!(
        e.err(&format!("Action=AssociateAddress&AllocationId={alloc}")),
        "MissingParameter"
    );
    assert_eq!(
        e.err(&format!("Action=AssociateAddress&NetworkInterfaceId={eni}")),
        "MissingParameter"
    );
    assert_eq!(
        e.err(&format!("Action=AssociateAddress&NetworkInterfaceId={eni}&AllocationId={alloc}&PrivateIpAddress=10.0.1.99")),
        "InvalidParameterValue"
    );
    // spec 5.1: only a VPC with an internet gateway takes an Elastic IP.
    assert_eq!(
        e.err(&format!(
            "Action=AssociateAddress&NetworkInterfaceId={eni}&AllocationId={alloc}"
        )),
        "Gateway.NotAttached"
    );
    common::attached_igw(&e.store, &e.a, &e.vpc);
    let assoc = first(
        &e.ok(&format!(
            "Action=AssociateAddress&NetworkInterfaceId={eni}&AllocationId={alloc}"
        )),
        "associationId",
    );
    assert!(assoc.starts_with("eipassoc-"), "{assoc}");
    // The same target again is a no-op.
    assert_eq!(
        first(
            &e.ok(&format!(
                "Action=AssociateAddress&NetworkInterfaceId={eni}&AllocationId={alloc}"
            )),
            "associationId"
        ),
        assoc
    );
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
    ));
    assert_eq!(first(&xml, "publicIp"), "198.51.100.1");
    assert_eq!(first(&xml, "allocationId"), alloc);
    for (filter, value) in [
        ("association-id", assoc.as_str()),
        ("network-interface-id", eni.as_str()),
        ("private-ip-address", "10.0.1.4"),
        ("public-ip", "198.51.100.1"),
        ("domain", "vpc"),
        ("allocation-id", alloc.as_str()),
    ] {
        let xml = e.ok(&format!(
            "Action=DescribeAddresses&Filter.1.Name={filter}&Filter.1.Value.1={value}"
        ));
        assert_eq!(
            all(&xml, "allocationId"),
            std::slice::from_ref(&alloc),
            "{filter}"
        );
    }
    // spec 12.3: an associated address cannot be released.
    assert_eq!(
        e.err(&format!("Action=ReleaseAddress&AllocationId={alloc}")),
        "InvalidIPAddress.InUse"
    );
    // spec 5.3: one ENI at a time; moving needs AllowReassociation (as moto).
    let other = e.eni("");
    assert_eq!(
        e.err(&format!(
            "Action=AssociateAddress&NetworkInterfaceId={other}&AllocationId={alloc}"
        )),
        "Resource.AlreadyAssociated"
    );
    e.ok(&format!(
        "Action=AssociateAddress&NetworkInterfaceId={other}&PublicIp=198.51.100.1&AllowReassociation=true"
    ));
    let xml = e.ok(&format!(
        "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
    ));
    assert!(all(&xml, "publicIp").is_empty());

    // With an instance: the primary ENI, and instance-id shows on the address.
    let (instance, primary) = setup_instance(&e, "");
    let assoc = first(
        &e.ok(&format!("Action=AssociateAddress&InstanceId={instance}&AllocationId={alloc}&AllowReassociation=true")),
        "associationId",
    );
    let xml = e.ok(&format!(
        "Action=DescribeAddresses&Filter.1.Name=instance-id&Filter.1.Value.1={instance}"
    ));
    assert_eq!(first(&xml, "networkInterfaceId"), primary);
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    assert_eq!(first(&xml, "ipAddress"), "198.51.100.1");
    assert_eq!(
        e.err("Action=DisassociateAddress&AssociationId=bogus"),
        "InvalidAssociationID.NotFound"
    );
    assert_eq!(e.err("Action=DisassociateAddress"), "MissingParameter");
    e.ok(&format!("Action=DisassociateAddress&AssociationId={assoc}"));
    let xml = e.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}"));
    assert!(all(&xml, "associationId").is_empty());
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    assert!(all(&xml, "ipAddress").is_empty());
    e.ok(&format!("Action=ReleaseAddress&AllocationId={alloc}"));
}

#[test]
fn eip_replaces_the_auto_public_address() {
    let e = Env::new();
    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={}&MapPublicIpOnLaunch.Value=true",
        e.subnet
    ));
    common::attached_igw(&e.store, &e.a, &e.vpc);
    let (instance, _) = setup_instance(&e, "");
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    let auto = first(&xml, "ipAddress");
    assert_eq!(auto, "198.51.100.1");
    let alloc = first(&e.ok("Action=AllocateAddress"), "allocationId");
    let assoc = first(
        &e.ok(&format!(
            "Action=AssociateAddress&InstanceId={instance}&AllocationId={alloc}"
        )),
        "associationId",
    );
    // spec 5.3: the EIP replaces eth0's auto-assigned address ...
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    assert_eq!(first(&xml, "ipAddress"), "198.51.100.2");
    // ... which went back to the pool ...
    let xml = e.ok("Action=AllocateAddress");
    assert_eq!(first(&xml, "publicIp"), "198.51.100.1");
    // ... and disassociating gives a fresh auto-assigned address back.
    e.ok(&format!("Action=DisassociateAddress&AssociationId={assoc}"));
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    assert_eq!(first(&xml, "ipAddress"), "198.51.100.3");
    // Terminating returns the auto address and frees the EIP's association.
    e.ok(&format!(
        "Action=AssociateAddress&InstanceId={instance}&AllocationId={alloc}"
    ));
    e.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={instance}"
    ));
    let xml = e.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}"));
    assert!(all(&xml, "associationId").is_empty());
    e.ok(&format!("Action=ReleaseAddress&AllocationId={alloc}"));
}

// Issue 15: the region's pool is what `server --public-pool` configured;
// when it runs out, allocation and launch-time public addresses fail with
// nothing stored.
#[test]
fn a_configured_pool_is_used_and_runs_out_cleanly() {
    let e = Env::new();
    // A /30 holds two usable addresses.
    openvpc_control::fleet::nodes::configure_region(
        &e.store,
        "us-east-1",
        Some(&["203.0.113.8/30".parse().unwrap()]),
        openvpc_control::records::region::InternetPolicy::Edges,
    )
    .unwrap();
    let first_ip = first(&e.ok("Action=AllocateAddress&Domain=vpc"), "publicIp");
    assert_eq!(first_ip, "203.0.113.9");
    e.ok(&format!(
        "Action=ModifySubnetAttribute&SubnetId={}&MapPublicIpOnLaunch.Value=true",
        e.subnet
    ));
    let (instance, _) = setup_instance(&e, "");
    let xml = e.ok(&format!("Action=DescribeInstances&InstanceId.1={instance}"));
    assert_eq!(first(&xml, "ipAddress"), "203.0.113.10");
    assert_eq!(
        e.err("Action=AllocateAddress&Domain=vpc"),
        "InsufficientAddressCapacity"
    );
    // A launch that needs a public address fails whole.
    let before = all(&e.ok("Action=DescribeInstances"), "instanceId").len();
    assert_eq!(
        e.err(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={}",
            e.subnet
        )),
        "InsufficientAddressCapacity"
    );
    assert_eq!(
        all(&e.ok("Action=DescribeInstances"), "instanceId").len(),
        before
    );
    // An address outside the pool cannot be asked for.
    assert_eq!(
        e.err("Action=AllocateAddress&Domain=vpc&Address=198.51.100.7"),
        "InvalidAddress.NotFound"
    );
}
