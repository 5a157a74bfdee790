//! NAT gateways over the in-memory store, without HTTP: the managed ENI and
//! its Elastic IPs, public and private gateways, the failed state, the
//! ClientToken, the per-AZ quota, deletion and what it frees, route
//! blackholes, and how long ended gateways stay visible (spec 6, 12, 13);
//! the honest lifecycle (issue 16): pending until a hyperplane node of the
//! gateway's shard serves it, failed when none can, deleting while it
//! drains, driven through the fleet's keeper as a server runs it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{
    account, all, attached_igw, call, code, edit_record, eip, first, main_route_table, subnet, vpc,
};
use openvpc_control::account::Account;
use openvpc_control::fleet::nat_lifecycle::{DRAIN_SECS, UNSERVED_SECS};
use openvpc_control::fleet::nodes::{self, Role};
use openvpc_control::fleet::{Fleet, shards};
use openvpc_control::records::region::InternetPolicy;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::node::NodeRegistration;

const REGION: &str = "us-east-1";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One round of what a server's keeper does (shards, then the NAT
/// lifecycle) on what the store holds now.
fn keep(store: &Arc<MemoryStore>) {
    let fleet = Fleet::load(store.clone()).unwrap();
    shards::keep_once(&fleet).unwrap();
}

/// issue 16: a hyperplane node `hp1` registers, is given its gateways by
/// the keeper, programs them and says so in its next heartbeat; the keeper
/// then makes each pending gateway `available`.
fn serve(store: &Arc<MemoryStore>) {
    let beat = |serving: Vec<String>| {
        nodes::register(
            store.as_ref(),
            Role::Hyperplane,
            REGION,
            &NodeRegistration {
                node_id: "hp1".into(),
                underlay_ip: "10.254.1.1".parse().unwrap(),
                serving,
                target_health: Vec::new(),
            },
            now_ms(),
        )
        .unwrap();
    };
    beat(Vec::new());
    let fleet = Fleet::load(store.clone()).unwrap();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    let (delta, _) = fleet.hyperplane_delta(REGION, "hp1", 0);
    beat(
        delta
            .assignments
            .into_iter()
            .map(|a| a.gateway_id)
            .collect(),
    );
    fleet.catch_up().unwrap();
    shards::keep_once(&fleet).unwrap();
}

/// Moves the gateway's current state back `secs` seconds, as time passing
/// would.
fn age(store: &dyn Store, a: &Account, id: &str, secs: u64) {
    edit_record(store, a, "nat", id, |r| {
        let t = r["state_since"].as_u64().unwrap();
        r["state_since"] = (t - secs).into();
    });
}

/// A deleting gateway drains, then the keeper makes it `deleted`.
fn drain(store: &Arc<MemoryStore>, a: &Account, id: &str) {
    age(store.as_ref(), a, id, DRAIN_SECS);
    keep(store);
}

fn state(store: &dyn Store, a: &Account, id: &str) -> String {
    first(
        &describe(store, a, &format!("&NatGatewayId.1={id}")),
        "state",
    )
}

/// A VPC with an attached internet gateway and a /24 subnet.
fn public_subnet(store: &dyn Store, a: &Account) -> (String, String) {
    let v = vpc(store, a);
    attached_igw(store, a, &v);
    let s = subnet(store, a, &v, "10.0.1.0/24");
    (v, s)
}

fn describe(store: &dyn Store, a: &Account, query: &str) -> String {
    call(store, a, &format!("Action=DescribeNatGateways{query}")).unwrap()
}

// spec 6.1: a public gateway gets a requester-managed ENI in its subnet and
// its EIP on that ENI; the first answer is `pending`, later ones `available`.
#[test]
fn create_public_gateway() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let (v, s) = public_subnet(&store, &a);
    let alloc = eip(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}&TagSpecification.1.ResourceType=natgateway&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=out"),
    )
    .unwrap();
    let id = first(&xml, "natGatewayId");
    assert!(id.starts_with("nat-"));
    assert_eq!(first(&xml, "state"), "pending");
    assert_eq!(first(&xml, "connectivityType"), "public");
    let eni = first(&xml, "networkInterfaceId");
    let private_ip = first(&xml, "privateIp");
    assert!(private_ip.starts_with("10.0.1."));

    // issue 16: pending until a node of its shard serves it.
    assert_eq!(state(&store, &a, &id), "pending");
    serve(&store);
    let d = describe(&store, &a, &format!("&NatGatewayId.1={id}"));
    assert_eq!(first(&d, "state"), "available");
    assert_eq!(first(&d, "vpcId"), v);
    assert_eq!(first(&d, "subnetId"), s);
    assert_eq!(first(&d, "allocationId"), alloc);
    assert_eq!(first(&d, "isPrimary"), "true");
    assert_eq!(first(&d, "value"), "out");

    let e = call(
        &store,
        &a,
        &format!("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"),
    )
    .unwrap();
    assert_eq!(first(&e, "interfaceType"), "nat_gateway");
    assert_eq!(first(&e, "requesterManaged"), "true");

    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&addr, "networkInterfaceId"), eni);
    assert_eq!(first(&addr, "privateIpAddress"), private_ip);
    // The managed ENI is deleted with its gateway, never on its own.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteNetworkInterface&NetworkInterfaceId={eni}")
        ),
        "InvalidParameterValue"
    );
}

// spec 6.1: a public gateway in a VPC without an internet gateway fails with
// Gateway.NotAttached and holds no address.
#[test]
fn public_gateway_without_igw_fails() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.1.0/24");
    let alloc = eip(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "state"), "failed");
    assert_eq!(first(&xml, "failureCode"), "Gateway.NotAttached");
    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert!(all(&addr, "associationId").is_empty());
    // Nothing in the subnet, so it can go.
    call(&store, &a, &format!("Action=DeleteSubnet&SubnetId={s}")).unwrap();
}

// spec 6.1: an allocation that does not exist or is in use fails the gateway.
#[test]
fn allocation_problems_fail_the_gateway() {
    let store = MemoryStore::new();
    let a = account();
    let (_, s) = public_subnet(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId=eipalloc-0123456789abcdef0"),
    )
    .unwrap();
    assert_eq!(first(&xml, "failureCode"), "InvalidAllocationID.NotFound");
    let alloc = eip(&store, &a);
    call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "failureCode"), "Resource.AlreadyAssociated");
    // spec 6.1: a public gateway needs an EIP.
    assert_eq!(
        code(&store, &a, &format!("Action=CreateNatGateway&SubnetId={s}")),
        "MissingParameter"
    );
}

// spec 6.1: a private gateway takes no EIP and may have secondary private
// addresses; spec 6.2: at most 8 addresses in all.
#[test]
fn private_gateway_addresses() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.1.0/24");
    let alloc = eip(&store, &a);
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private&AllocationId={alloc}"
            )
        ),
        "InvalidParameterCombination"
    );
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private&PrivateIpAddress=10.0.1.50&SecondaryPrivateIpAddressCount=2"
        ),
    )
    .unwrap();
    assert_eq!(first(&xml, "connectivityType"), "private");
    let ips = all(&xml, "privateIp");
    assert_eq!(ips.len(), 3);
    assert_eq!(ips[0], "10.0.1.50");
    assert!(all(&xml, "publicIp").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private&SecondaryPrivateIpAddressCount=8"
            )
        ),
        "InvalidParameterValue"
    );
}

// spec 6.2: secondary EIPs each sit on a secondary private address.
#[test]
fn secondary_allocations() {
    let store = MemoryStore::new();
    let a = account();
    let (_, s) = public_subnet(&store, &a);
    let (e1, e2) = (eip(&store, &a), eip(&store, &a));
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateNatGateway&SubnetId={s}&AllocationId={e1}&SecondaryAllocationId.1={e2}"
        ),
    )
    .unwrap();
    assert_eq!(all(&xml, "allocationId"), vec![e1.clone(), e2.clone()]);
    assert_eq!(all(&xml, "isPrimary"), vec!["true", "false"]);
    assert_eq!(all(&xml, "privateIp").len(), 2);
    let addr = call(&store, &a, "Action=DescribeAddresses").unwrap();
    assert_eq!(all(&addr, "associationId").len(), 2);
}

// spec 6.2 and 12.1: the same ClientToken and parameters return the same
// gateway; the token with other parameters is IdempotentParameterMismatch.
#[test]
fn client_token_idempotency() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.1.0/24");
    let s2 = subnet(&store, &a, &v, "10.0.2.0/24");
    let req =
        format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private&ClientToken=tok-1");
    let one = first(&call(&store, &a, &req).unwrap(), "natGatewayId");
    let two = call(&store, &a, &req).unwrap();
    assert_eq!(first(&two, "natGatewayId"), one);
    assert_eq!(first(&two, "clientToken"), "tok-1");
    assert_eq!(
        all(&describe(&store, &a, ""), "natGatewayId"),
        vec![one.clone()]
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateNatGateway&SubnetId={s2}&ConnectivityType=private&ClientToken=tok-1"
            )
        ),
        "IdempotentParameterMismatch"
    );
}

// spec 6.2, 13: 5 NAT gateways per availability zone, pending, available
// and deleting ones counted; a deleted one frees its place.
#[test]
fn quota_per_zone() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.1.0/24");
    let create = format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private");
    let ids: Vec<String> = (0..5)
        .map(|_| first(&call(&store, &a, &create).unwrap(), "natGatewayId"))
        .collect();
    assert_eq!(code(&store, &a, &create), "NatGatewayLimitExceeded");
    call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={}", ids[0]),
    )
    .unwrap();
    assert_eq!(state(&store, &a, &ids[0]), "deleting");
    assert_eq!(code(&store, &a, &create), "NatGatewayLimitExceeded");
    drain(&store, &a, &ids[0]);
    assert_eq!(state(&store, &a, &ids[0]), "deleted");
    call(&store, &a, &create).unwrap();
}

// spec 6.2: deleting frees the ENI and disassociates the EIP (still
// allocated); routes to the gateway become blackholes; the subnet is kept
// by the gateway until then (spec 1.7). Issue 16: a route to the gateway is
// active only while it is available; deleting drains (`deleting`, still
// holding its addresses) and only then is it `deleted` and are they freed.
#[test]
fn delete_frees_eni_and_eip() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let (v, s) = public_subnet(&store, &a);
    let alloc = eip(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    let id = first(&xml, "natGatewayId");
    let eni = first(&xml, "networkInterfaceId");
    let rt = main_route_table(&store, &a, &v);
    call(
        &store,
        &a,
        &format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0%2F0&NatGatewayId={id}"
        ),
    )
    .unwrap();
    // spec 2.5: whether the table's route is a blackhole.
    let blackholed = |store: &dyn Store| {
        let t = call(
            store,
            &a,
            &format!("Action=DescribeRouteTables&RouteTableId.1={rt}&Filter.1.Name=route.state&Filter.1.Value.1=blackhole"),
        )
        .unwrap();
        !all(&t, "routeTableId").is_empty()
    };
    assert!(blackholed(&store), "pending: no node serves it yet");
    serve(&store);
    assert!(!blackholed(&store), "available: active");
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteSubnet&SubnetId={s}")),
        "DependencyViolation"
    );
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")),
        "DependencyViolation"
    );

    let d = call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert_eq!(first(&d, "natGatewayId"), id);
    // Draining: the route is a blackhole at once, the addresses are held.
    assert_eq!(state(&store, &a, &id), "deleting");
    assert!(blackholed(&store));
    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&addr, "networkInterfaceId"), eni);
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteSubnet&SubnetId={s}")),
        "DependencyViolation"
    );
    // A delete while it drains answers as the first did.
    call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    keep(&store);
    assert_eq!(state(&store, &a, &id), "deleting", "drain not over");
    drain(&store, &a, &id);
    assert_eq!(state(&store, &a, &id), "deleted");
    assert!(blackholed(&store));
    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert_eq!(all(&addr, "allocationId"), vec![alloc]);
    assert!(all(&addr, "associationId").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}")
        ),
        "InvalidNetworkInterfaceID.NotFound"
    );
    // Issue 12: a repeated delete of the still-visible `deleted` gateway is
    // not an error; AWS names the gateway again and nothing changes.
    let before = describe(&store, &a, &format!("&NatGatewayId.1={id}"));
    let again = call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert_eq!(first(&again, "natGatewayId"), id);
    assert_eq!(
        describe(&store, &a, &format!("&NatGatewayId.1={id}")),
        before,
        "the repeated delete changed nothing (deleteTime included)"
    );
    call(&store, &a, &format!("Action=DeleteSubnet&SubnetId={s}")).unwrap();
}

// spec 6.1 (deleted: [U]): a deleted gateway stays visible for an hour, then
// it is gone.
#[test]
fn deleted_gateway_hidden_after_an_hour() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.1.0/24");
    let id = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private"),
        )
        .unwrap(),
        "natGatewayId",
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    drain(&store, &a, &id);
    assert_eq!(
        all(&describe(&store, &a, ""), "natGatewayId"),
        vec![id.clone()]
    );
    edit_record(&store, &a, "nat", &id, |r| {
        let t = r["ended_at"].as_u64().unwrap();
        r["ended_at"] = (t - 3601).into();
    });
    assert!(all(&describe(&store, &a, ""), "natGatewayId").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeNatGateways&NatGatewayId.1={id}")
        ),
        "NatGatewayNotFound"
    );
    // Once it is gone, deleting it is an error again.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteNatGateway&NatGatewayId={id}")
        ),
        "NatGatewayNotFound"
    );
}

// spec 12.1: DescribeNatGateways' filters (moto's names).
#[test]
fn describe_filters() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(&store, &a);
    let s1 = subnet(&store, &a, &v, "10.0.1.0/24");
    let s2 = subnet(&store, &a, &v, "10.0.2.0/24");
    let create = |s: &str| {
        first(
            &call(
                &store,
                &a,
                &format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private"),
            )
            .unwrap(),
            "natGatewayId",
        )
    };
    let (g1, g2) = (create(&s1), create(&s2));
    let f = |name: &str, value: &str| {
        all(
            &describe(
                &store,
                &a,
                &format!("&Filter.1.Name={name}&Filter.1.Value.1={value}"),
            ),
            "natGatewayId",
        )
    };
    assert_eq!(f("subnet-id", &s1), vec![g1.clone()]);
    assert_eq!(f("nat-gateway-id", &g2), vec![g2.clone()]);
    assert_eq!(f("vpc-id", &v).len(), 2);
    assert_eq!(f("state", "pending").len(), 2);
    assert!(f("state", "available").is_empty());
    serve(&store);
    assert_eq!(f("state", "available").len(), 2);
    assert!(f("state", "pending").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeNatGateways&Filter.1.Name=bogus&Filter.1.Value.1=x"
        ),
        "InvalidParameterValue"
    );
    // Another account sees none of them.
    let b = Account::generate("b", Some("222222222222"));
    assert!(all(&describe(&store, &b, ""), "natGatewayId").is_empty());
}

/// (privateIp, allocationId, isPrimary) of each address Describe shows.
fn nat_addresses(store: &dyn Store, a: &Account, id: &str) -> Vec<(String, String, String)> {
    let d = describe(store, a, &format!("&NatGatewayId.1={id}"));
    let set = d
        .split("<natGatewayAddressSet>")
        .nth(1)
        .unwrap()
        .split("</natGatewayAddressSet>")
        .next()
        .unwrap()
        .to_owned();
    set.split("<item>")
        .skip(1)
        .map(|i| {
            (
                first(i, "privateIp"),
                all(i, "allocationId").first().cloned().unwrap_or_default(),
                first(i, "isPrimary"),
            )
        })
        .collect()
}

// spec 6.2: a public gateway takes secondary Elastic IPs, each on a new
// private address of its ENI (up to 8 addresses in all), and gives them
// back; the primary stays.
#[test]
fn public_gateway_secondary_addresses() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let (_, s) = public_subnet(&store, &a);
    let primary = eip(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={primary}"),
    )
    .unwrap();
    let id = first(&xml, "natGatewayId");
    let second = eip(&store, &a);
    // [U] issue 16: a gateway that is not up yet cannot change addresses.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={second}")
        ),
        "IncorrectState"
    );
    serve(&store);
    let eni = first(&xml, "networkInterfaceId");
    let primary_assoc = first(&xml, "associationId");
    let xml = call(
        &store,
        &a,
        &format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={second}&PrivateIpAddress.1=10.0.1.50"),
    )
    .unwrap();
    assert_eq!(first(&xml, "status"), "associating");
    assert_eq!(first(&xml, "privateIp"), "10.0.1.50");
    assert_eq!(first(&xml, "isPrimary"), "false");
    let assoc = first(&xml, "associationId");
    let shown = nat_addresses(&store, &a, &id);
    assert_eq!(shown.len(), 2);
    assert_eq!(
        shown[1],
        ("10.0.1.50".to_owned(), second.clone(), "false".to_owned())
    );
    // The EIP is on the gateway's ENI, so it is in use.
    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={second}"),
    )
    .unwrap();
    assert_eq!(first(&addr, "networkInterfaceId"), eni);
    assert_eq!(first(&addr, "privateIpAddress"), "10.0.1.50");
    // Errors: a taken EIP, an unknown one, the private-gateway actions,
    // too many addresses, and the primary's association.
    for (query, want) in [
        (
            format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={second}"),
            "Resource.AlreadyAssociated",
        ),
        (
            format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1=eipalloc-0123456789abcdef0"),
            "InvalidAllocationID.NotFound",
        ),
        (
            format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}"),
            "MissingParameter",
        ),
        (
            format!("Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=1"),
            "InvalidParameterCombination",
        ),
        (
            format!("Action=DisassociateNatGatewayAddress&NatGatewayId={id}&AssociationId.1={primary_assoc}"),
            "InvalidParameterValue",
        ),
        (
            format!("Action=DisassociateNatGatewayAddress&NatGatewayId={id}&AssociationId.1=eipassoc-0123456789abcdef0"),
            "InvalidAssociationID.NotFound",
        ),
        (
            format!("Action=DisassociateNatGatewayAddress&NatGatewayId={id}&AssociationId.1={assoc}&MaxDrainDurationSeconds=5000"),
            "InvalidParameterValue",
        ),
        (
            "Action=AssociateNatGatewayAddress&NatGatewayId=nat-0123456789abcdef0&AllocationId.1=eipalloc-0123456789abcdef0".to_owned(),
            "NatGatewayNotFound",
        ),
    ] {
        assert_eq!(code(&store, &a, &query), want, "{query}");
    }
    // 2 + 7 > 8: refused before the allocations are looked at.
    let many: String = (1..=7)
        .map(|i| format!("&AllocationId.{i}=eipalloc-{i:017x}"))
        .collect();
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}{many}")
        ),
        "InvalidParameterValue"
    );
    // Disassociating frees the EIP (still allocated) and its private address.
    let xml = call(
        &store,
        &a,
        &format!("Action=DisassociateNatGatewayAddress&NatGatewayId={id}&AssociationId.1={assoc}&MaxDrainDurationSeconds=60"),
    )
    .unwrap();
    assert_eq!(first(&xml, "status"), "disassociating");
    assert_eq!(nat_addresses(&store, &a, &id).len(), 1);
    let addr = call(
        &store,
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={second}"),
    )
    .unwrap();
    assert!(all(&addr, "networkInterfaceId").is_empty());
    let e = call(
        &store,
        &a,
        &format!("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"),
    )
    .unwrap();
    assert!(!e.contains("10.0.1.50"));
}

// spec 6.2: a private gateway takes secondary private addresses, named or
// counted, and gives them back; the primary stays.
#[test]
fn private_gateway_secondary_addresses() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.2.0/24");
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private"),
    )
    .unwrap();
    let id = first(&xml, "natGatewayId");
    serve(&store);
    let primary_ip = first(&xml, "privateIp");
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1=10.0.2.40"
        ),
    )
    .unwrap();
    assert_eq!(first(&xml, "status"), "assigning");
    assert_eq!(all(&xml, "privateIp"), ["10.0.2.40"]);
    let xml = call(
        &store,
        &a,
        &format!("Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=2"),
    )
    .unwrap();
    assert_eq!(all(&xml, "privateIp").len(), 2);
    assert_eq!(nat_addresses(&store, &a, &id).len(), 4);
    for (query, want) in [
        (
            format!("Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}"),
            "MissingParameter",
        ),
        (
            format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=8"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=5"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1=10.0.2.40"
            ),
            "InvalidIPAddress.InUse",
        ),
        (
            format!(
                "Action=UnassignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1={primary_ip}"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=UnassignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1=10.0.2.99"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1=eipalloc-0123456789abcdef0"
            ),
            "InvalidParameterCombination",
        ),
        (
            format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=1&DryRun=true"
            ),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &query), want, "{query}");
    }
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=UnassignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1=10.0.2.40"
        ),
    )
    .unwrap();
    assert_eq!(first(&xml, "status"), "unassigning");
    let left = nat_addresses(&store, &a, &id);
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(ip, _, _)| ip != "10.0.2.40"));
    // The freed address can be taken again.
    call(
        &store,
        &a,
        &format!(
            "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddress.1=10.0.2.40"
        ),
    )
    .unwrap();
    // A deleting gateway's addresses cannot change, nor a deleted one's.
    call(
        &store,
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=1"
            )
        ),
        "IncorrectState"
    );
    drain(&store, &a, &id);
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=AssignPrivateNatGatewayAddress&NatGatewayId={id}&PrivateIpAddressCount=1"
            )
        ),
        "NatGatewayNotFound"
    );
}

// Issue 16: a gateway no hyperplane node can serve (none in the region) is
// pending for UNSERVED_SECS, then `failed` with AWS's InternalError and its
// FailureMessage; it then holds nothing: its ENI is gone and its Elastic IP
// disassociated (still allocated); its route stays a blackhole.
#[test]
fn a_gateway_no_node_serves_fails_with_internal_error() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let (v, s) = public_subnet(store.as_ref(), &a);
    let alloc = eip(store.as_ref(), &a);
    let xml = call(
        store.as_ref(),
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    let id = first(&xml, "natGatewayId");
    let eni = first(&xml, "networkInterfaceId");
    let rt = main_route_table(store.as_ref(), &a, &v);
    call(
        store.as_ref(),
        &a,
        &format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0%2F0&NatGatewayId={id}"
        ),
    )
    .unwrap();
    keep(&store);
    assert_eq!(state(store.as_ref(), &a, &id), "pending", "still waiting");
    age(store.as_ref(), &a, &id, UNSERVED_SECS);
    keep(&store);
    let d = describe(store.as_ref(), &a, &format!("&NatGatewayId.1={id}"));
    assert_eq!(first(&d, "state"), "failed");
    assert_eq!(first(&d, "failureCode"), "InternalError");
    assert!(
        first(&d, "failureMessage").starts_with(&format!(
            "Network interface {eni}, created and used internally by this NAT gateway is in an invalid state. Please try again."
        )),
        "{d}"
    );
    let addr = call(
        store.as_ref(),
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert_eq!(all(&addr, "allocationId"), vec![alloc.clone()]);
    assert!(all(&addr, "associationId").is_empty());
    assert_eq!(
        code(
            store.as_ref(),
            &a,
            &format!("Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}")
        ),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let t = call(
        store.as_ref(),
        &a,
        &format!("Action=DescribeRouteTables&RouteTableId.1={rt}"),
    )
    .unwrap();
    assert!(t.contains("<state>blackhole</state>"), "{t}");
    // A failed gateway has nothing to drain: deleting it is immediate, and
    // its EIP can serve a new gateway.
    call(
        store.as_ref(),
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert_eq!(state(store.as_ref(), &a, &id), "deleted");
    let again = call(
        store.as_ref(),
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&again, "state"), "pending");
}

// Issue 16: the lifecycle's write is a compare-and-swap on the state it
// planned from: a DeleteNatGateway that lands between the plan and the
// write wins, and the gateway is not brought back to `available`.
#[test]
fn a_concurrent_delete_is_never_overwritten() {
    use openvpc_control::api::actions::nat_gateway::settle;
    use openvpc_control::fleet::nat_lifecycle::{Step, Transition};
    use openvpc_model::lifecycle::NatGatewayState;
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let s = subnet(store.as_ref(), &a, &v, "10.0.1.0/24");
    let id = first(
        &call(
            store.as_ref(),
            &a,
            &format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private"),
        )
        .unwrap(),
        "natGatewayId",
    );
    let planned = Step {
        account: a.id.clone(),
        region: REGION.into(),
        gateway_id: id.clone(),
        from: NatGatewayState::Pending,
        to: Transition::Available,
    };
    call(
        store.as_ref(),
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert!(!settle(store.as_ref(), &planned, 1).unwrap());
    assert_eq!(state(store.as_ref(), &a, &id), "deleting");
}

// Under --moto-compat (no hyperplane node runs) a gateway is available at
// once and deleted at once, as moto models it; the first answer still
// shows `pending`.
#[test]
fn under_moto_compat_gateways_are_up_and_gone_at_once() {
    let store = Arc::new(MemoryStore::new());
    nodes::configure_region(store.as_ref(), REGION, None, InternetPolicy::Assumed).unwrap();
    let a = account();
    let (_, s) = public_subnet(store.as_ref(), &a);
    let alloc = eip(store.as_ref(), &a);
    let xml = call(
        store.as_ref(),
        &a,
        &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={alloc}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "state"), "pending");
    let id = first(&xml, "natGatewayId");
    assert_eq!(state(store.as_ref(), &a, &id), "available");
    call(
        store.as_ref(),
        &a,
        &format!("Action=DeleteNatGateway&NatGatewayId={id}"),
    )
    .unwrap();
    assert_eq!(state(store.as_ref(), &a, &id), "deleted");
    let addr = call(
        store.as_ref(),
        &a,
        &format!("Action=DescribeAddresses&AllocationId.1={alloc}"),
    )
    .unwrap();
    assert!(all(&addr, "associationId").is_empty());
}

// spec 6.1, 6.2: AWS's errors of the four actions that CreateNatGateway,
// AssociateNatGatewayAddress, DisassociateNatGatewayAddress and
// DeleteNatGateway answer synchronously.
#[test]
fn request_errors() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let (_, s) = public_subnet(store.as_ref(), &a);
    let e1 = eip(store.as_ref(), &a);
    let nine: String = (1..=8)
        .map(|i| format!("&SecondaryAllocationId.{i}=eipalloc-{i:017x}"))
        .collect();
    let id = first(
        &call(
            store.as_ref(),
            &a,
            &format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={e1}"),
        )
        .unwrap(),
        "natGatewayId",
    );
    serve(&store);
    let assoc = first(
        &call(
            store.as_ref(),
            &a,
            &format!(
                "Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={}",
                eip(store.as_ref(), &a)
            ),
        )
        .unwrap(),
        "associationId",
    );
    for (query, want) in [
        ("Action=CreateNatGateway".to_owned(), "MissingParameter"),
        (
            "Action=CreateNatGateway&SubnetId=subnet-0123456789abcdef0&ConnectivityType=private"
                .to_owned(),
            "InvalidSubnetID.NotFound",
        ),
        (
            format!("Action=CreateNatGateway&SubnetId={s}&ConnectivityType=both"),
            "InvalidParameterValue",
        ),
        (
            format!("Action=CreateNatGateway&SubnetId={s}&AllocationId={e1}{nine}"),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=CreateNatGateway&SubnetId={s}&AllocationId={e1}&SecondaryAllocationId.1={e1}"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=CreateNatGateway&SubnetId={s}&ConnectivityType=private&SecondaryAllocationId.1={e1}"
            ),
            "InvalidParameterCombination",
        ),
        (
            format!("Action=CreateNatGateway&SubnetId={s}&AllocationId=bogus"),
            "InvalidAllocationID.Malformed",
        ),
        (
            format!("Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={e1}"),
            "Resource.AlreadyAssociated",
        ),
        (
            format!(
                "Action=AssociateNatGatewayAddress&NatGatewayId={id}&AllocationId.1={e1}&AllocationId.2={e1}"
            ),
            "InvalidParameterValue",
        ),
        (
            format!(
                "Action=DisassociateNatGatewayAddress&NatGatewayId={id}&AssociationId.1={assoc}&AssociationId.2={assoc}"
            ),
            "InvalidParameterValue",
        ),
        (
            format!("Action=DisassociateNatGatewayAddress&NatGatewayId={id}"),
            "MissingParameter",
        ),
        (
            "Action=DeleteNatGateway&NatGatewayId=nat-0123456789abcdef0".to_owned(),
            "NatGatewayNotFound",
        ),
        ("Action=DeleteNatGateway".to_owned(), "MissingParameter"),
        (
            format!("Action=DeleteNatGateway&NatGatewayId={id}&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(store.as_ref(), &a, &query), want, "{query}");
    }
}
