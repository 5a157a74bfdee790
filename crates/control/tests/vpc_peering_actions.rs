//! VPC peering over the in-memory store with two accounts, without HTTP:
//! the lifecycle of spec 7.1 (with expiry and visibility windows), the rules
//! and quotas of spec 7.2 and 13, cross-account visibility and permissions,
//! per-account tags, routes to a `pcx-` target, and DeleteVpc.

#![allow(clippy::unwrap_used)]

mod common;

use common::{all, call, code, edit_record, first, main_route_table, vpc_with};
use openvpc_control::account::{self, Account};
use openvpc_control::store::{MemoryStore, Store};

/// Two stored accounts: `a` (111111111111) and `b` (222222222222).
fn accounts(store: &dyn Store) -> (Account, Account) {
    let a = Account::generate("a", Some("111111111111"));
    let b = Account::generate("b", Some("222222222222"));
    account::create(store, &a).unwrap();
    account::create(store, &b).unwrap();
    (a, b)
}

fn request(store: &dyn Store, a: &Account, vpc: &str, peer: &str, owner: &Account) -> String {
    call(
        store,
        a,
        &format!(
            "Action=CreateVpcPeeringConnection&VpcId={vpc}&PeerVpcId={peer}&PeerOwnerId={}",
            owner.id
        ),
    )
    .unwrap()
}

/// The status code `who` sees for `pcx`, or `None` if it is not visible.
fn status(store: &dyn Store, who: &Account, pcx: &str) -> Option<String> {
    let xml = call(store, who, "Action=DescribeVpcPeeringConnections").unwrap();
    xml.split("<item>")
        .find(|item| item.contains(&format!("<vpcPeeringConnectionId>{pcx}<")))
        .map(|item| first(item, "code"))
}

fn act(store: &dyn Store, who: &Account, action: &str, pcx: &str) -> Result<String, String> {
    call(
        store,
        who,
        &format!("Action={action}VpcPeeringConnection&VpcPeeringConnectionId={pcx}"),
    )
    .map_err(|e| e.code.into_owned())
}

/// A pending cross-account request from a's 10.0/16 to b's 10.1/16.
fn pending(store: &dyn Store, a: &Account, b: &Account) -> (String, String, String) {
    let va = vpc_with(store, a, "10.0.0.0/16");
    let vb = vpc_with(store, b, "10.1.0.0/16");
    let pcx = first(&request(store, a, &va, &vb, b), "vpcPeeringConnectionId");
    (va, vb, pcx)
}

// spec 7.1, 7.2: a cross-account request is `initiating-request` in its
// first answer, then `pending-acceptance` with an expiry 7 days ahead, seen
// by both accounts.
#[test]
fn cross_account_request_is_seen_by_both() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let va = vpc_with(&store, &a, "10.0.0.0/16");
    let vb = vpc_with(&store, &b, "10.1.0.0/16");
    let xml = request(&store, &a, &va, &vb, &b);
    let pcx = first(&xml, "vpcPeeringConnectionId");
    assert!(pcx.starts_with("pcx-"));
    assert_eq!(first(&xml, "code"), "initiating-request");
    assert_eq!(first(&xml, "message"), "Initiating Request to 222222222222");
    for who in [&a, &b] {
        let d = call(&store, who, "Action=DescribeVpcPeeringConnections").unwrap();
        assert_eq!(all(&d, "vpcPeeringConnectionId"), vec![pcx.clone()]);
        assert_eq!(first(&d, "code"), "pending-acceptance");
        assert!(!first(&d, "expirationTime").is_empty());
        assert_eq!(first(&d, "vpcId"), vb, "accepter info comes first");
        assert_eq!(all(&d, "ownerId"), vec![b.id.clone(), a.id.clone()]);
        assert_eq!(all(&d, "cidrBlock")[0], "10.1.0.0/16");
    }
    // Filters from moto's list.
    let f = |who: &Account, name: &str, value: &str| {
        all(
            &call(
                &store,
                who,
                &format!(
                    "Action=DescribeVpcPeeringConnections&Filter.1.Name={name}&Filter.1.Value.1={value}"
                ),
            )
            .unwrap(),
            "vpcPeeringConnectionId",
        )
        .len()
    };
    assert_eq!(f(&b, "requester-vpc-info.owner-id", &a.id), 1);
    assert_eq!(f(&b, "accepter-vpc-info.vpc-id", &vb), 1);
    assert_eq!(f(&a, "requester-vpc-info.cidr-block", "10.0.0.0%2F16"), 1);
    assert_eq!(f(&a, "status-code", "pending-acceptance"), 1);
    assert_eq!(f(&a, "status-code", "active"), 0);
}

// spec 7.2: only the accepter account accepts a cross-account request; then
// both sides see it active.
#[test]
fn only_the_accepter_accepts() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    assert_eq!(
        act(&store, &a, "Accept", &pcx).unwrap_err(),
        "OperationNotPermitted"
    );
    let xml = act(&store, &b, "Accept", &pcx).unwrap();
    assert_eq!(first(&xml, "code"), "active");
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("active"));
    assert_eq!(status(&store, &b, &pcx).as_deref(), Some("active"));
    // spec 7.1: an active peering cannot be rejected or accepted again.
    assert_eq!(
        act(&store, &b, "Reject", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    assert_eq!(
        act(&store, &b, "Accept", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    // A third account knows nothing of it.
    let c = Account::generate("c", Some("333333333333"));
    assert_eq!(
        act(&store, &c, "Accept", &pcx).unwrap_err(),
        "InvalidVpcPeeringConnectionID.NotFound"
    );
}

// spec 7.2: overlapping blocks (secondaries included) fail the request,
// which only the requester sees.
#[test]
fn overlapping_cidrs_fail() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let va = vpc_with(&store, &a, "10.0.0.0/16");
    let vb = vpc_with(&store, &b, "10.0.128.0/17");
    let pcx = first(&request(&store, &a, &va, &vb, &b), "vpcPeeringConnectionId");
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("failed"));
    assert_eq!(status(&store, &b, &pcx), None);
    // spec 7.1: a failed request cannot be accepted or deleted.
    assert_eq!(
        act(&store, &a, "Delete", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    // A secondary block counts too.
    let vc = vpc_with(&store, &b, "10.2.0.0/16");
    call(
        &store,
        &a,
        &format!("Action=AssociateVpcCidrBlock&VpcId={va}&CidrBlock=10.2.128.0%2F20"),
    )
    .unwrap();
    let pcx = first(&request(&store, &a, &va, &vc, &b), "vpcPeeringConnectionId");
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("failed"));
}

// spec 7.2: the peer VPC must exist: in the caller's own account a missing
// one is an error; in another account (which AWS does not reveal) the
// request fails.
#[test]
fn peer_vpc_must_exist() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let va = vpc_with(&store, &a, "10.0.0.0/16");
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId=vpc-0123456789abcdef0"
            )
        ),
        "InvalidVpcID.NotFound"
    );
    // b's VPC ID exists only in a: not b's.
    let other_a = vpc_with(&store, &a, "10.5.0.0/16");
    let pcx = first(
        &request(&store, &a, &va, &other_a, &b),
        "vpcPeeringConnectionId",
    );
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("failed"));
    assert_eq!(status(&store, &b, &pcx), None);
    // The requester's VPC must be the caller's.
    let vb = vpc_with(&store, &b, "10.1.0.0/16");
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateVpcPeeringConnection&VpcId={vb}&PeerVpcId={va}")
        ),
        "InvalidVpcID.NotFound"
    );
    // Inter-region peering is refused for now.
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId={vb}&PeerOwnerId={}&PeerRegion=eu-west-1",
                b.id
            )
        ),
        "UnsupportedOperation"
    );
}

// spec 7.2: one peering per VPC pair (either direction).
#[test]
fn one_peering_per_pair() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (va, vb, _) = pending(&store, &a, &b);
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId={vb}&PeerOwnerId={}",
                b.id
            )
        ),
        "VpcPeeringConnectionAlreadyExists"
    );
    assert_eq!(
        code(
            &store,
            &b,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={vb}&PeerVpcId={va}&PeerOwnerId={}",
                a.id
            )
        ),
        "VpcPeeringConnectionAlreadyExists"
    );
}

// spec 7.1 and its acceptance test: reject → rejected; accept and delete of
// a rejected one fail; the accepter sees it 2 h, the requester 2 days.
#[test]
fn reject_and_its_visibility() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    assert_eq!(
        act(&store, &a, "Reject", &pcx).unwrap_err(),
        "OperationNotPermitted"
    );
    act(&store, &b, "Reject", &pcx).unwrap();
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("rejected"));
    assert_eq!(
        act(&store, &b, "Accept", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    assert_eq!(
        act(&store, &a, "Delete", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    for who in [&a, &b] {
        edit_record(&store, who, "pcx", &pcx, |r| {
            let t = r["ended_at"].as_u64().unwrap();
            r["ended_at"] = (t - 3 * 3600).into();
        });
    }
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("rejected"));
    assert_eq!(status(&store, &b, &pcx), None);
}

// spec 7.1: either side deletes an active peering; the deleter sees it 2 h,
// the other side 2 days; the requester alone withdraws a pending one.
#[test]
fn delete_by_either_side() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    assert_eq!(
        act(&store, &b, "Delete", &pcx).unwrap_err(),
        "OperationNotPermitted"
    );
    act(&store, &b, "Accept", &pcx).unwrap();
    act(&store, &b, "Delete", &pcx).unwrap();
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("deleted"));
    assert_eq!(status(&store, &b, &pcx).as_deref(), Some("deleted"));
    assert_eq!(
        act(&store, &a, "Delete", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    for who in [&a, &b] {
        edit_record(&store, who, "pcx", &pcx, |r| {
            let t = r["ended_at"].as_u64().unwrap();
            r["ended_at"] = (t - 3 * 3600).into();
        });
    }
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("deleted"));
    assert_eq!(status(&store, &b, &pcx), None);

    // The requester withdraws a pending request.
    let va2 = vpc_with(&store, &a, "10.7.0.0/16");
    let vb2 = vpc_with(&store, &b, "10.8.0.0/16");
    let p2 = first(
        &request(&store, &a, &va2, &vb2, &b),
        "vpcPeeringConnectionId",
    );
    act(&store, &a, "Delete", &p2).unwrap();
    assert_eq!(status(&store, &b, &p2).as_deref(), Some("deleted"));
    assert_eq!(
        act(&store, &b, "Accept", &p2).unwrap_err(),
        "InvalidStateTransition"
    );
}

// spec 7.1, 7.2: a request not accepted in 168 h expires; no action is
// possible on it; both sides see it 2 days more.
#[test]
fn pending_request_expires() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    for who in [&a, &b] {
        edit_record(&store, who, "pcx", &pcx, |r| {
            let t = r["created_at"].as_u64().unwrap();
            r["created_at"] = (t - 168 * 3600).into();
        });
    }
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("expired"));
    assert_eq!(status(&store, &b, &pcx).as_deref(), Some("expired"));
    assert_eq!(
        act(&store, &b, "Accept", &pcx).unwrap_err(),
        "InvalidStateTransition"
    );
    for who in [&a, &b] {
        edit_record(&store, who, "pcx", &pcx, |r| {
            let t = r["created_at"].as_u64().unwrap();
            r["created_at"] = (t - 2 * 24 * 3600).into();
        });
        assert_eq!(status(&store, who, &pcx), None);
    }
}

// spec 7.2, 13: 25 outstanding requests per account.
#[test]
fn outstanding_quota() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    // 24 more pending requests, as stored copies of the first.
    let key = format!("r/{}/us-east-1/pcx/{pcx}", a.id);
    let raw = store.get(key.as_bytes()).unwrap().unwrap().value;
    for n in 0..24 {
        let mut r: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let id = format!("pcx-{n:017x}");
        r["id"] = id.clone().into();
        r["accepter"]["vpc_id"] = format!("vpc-{n:017x}").into();
        store
            .put(
                format!("r/{}/us-east-1/pcx/{id}", a.id).as_bytes(),
                &serde_json::to_vec(&r).unwrap(),
            )
            .unwrap();
    }
    let va = vpc_with(&store, &a, "10.3.0.0/16");
    let vb = vpc_with(&store, &b, "10.4.0.0/16");
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId={vb}&PeerOwnerId={}",
                b.id
            )
        ),
        "OutstandingVpcPeeringConnectionLimitExceeded"
    );
}

// spec 2.5, 7.2: a route to a peering is a blackhole until it is active, in
// both accounts' tables.
#[test]
fn routes_to_a_peering() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (va, vb, pcx) = pending(&store, &a, &b);
    let ta = main_route_table(&store, &a, &va);
    let tb = main_route_table(&store, &b, &vb);
    for (who, table, dest) in [(&a, &ta, "10.1.0.0%2F16"), (&b, &tb, "10.0.0.0%2F16")] {
        call(
            &store,
            who,
            &format!(
                "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock={dest}&VpcPeeringConnectionId={pcx}"
            ),
        )
        .unwrap();
    }
    let blackholed = |who: &Account, table: &str| {
        !all(
            &call(
                &store,
                who,
                &format!(
                    "Action=DescribeRouteTables&RouteTableId.1={table}&Filter.1.Name=route.state&Filter.1.Value.1=blackhole"
                ),
            )
            .unwrap(),
            "routeTableId",
        )
        .is_empty()
    };
    assert!(blackholed(&a, &ta) && blackholed(&b, &tb));
    act(&store, &b, "Accept", &pcx).unwrap();
    assert!(!blackholed(&a, &ta) && !blackholed(&b, &tb));
    act(&store, &a, "Delete", &pcx).unwrap();
    assert!(blackholed(&a, &ta) && blackholed(&b, &tb));
}

// spec 7.2: tags are each account's own.
#[test]
fn tags_per_account() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let va = vpc_with(&store, &a, "10.0.0.0/16");
    let vb = vpc_with(&store, &b, "10.1.0.0/16");
    let pcx = first(
        &call(
            &store,
            &a,
            &format!(
                "Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId={vb}&PeerOwnerId={}&TagSpecification.1.ResourceType=vpc-peering-connection&TagSpecification.1.Tag.1.Key=side&TagSpecification.1.Tag.1.Value=a",
                b.id
            ),
        )
        .unwrap(),
        "vpcPeeringConnectionId",
    );
    call(
        &store,
        &b,
        &format!("Action=CreateTags&ResourceId.1={pcx}&Tag.1.Key=side&Tag.1.Value=b"),
    )
    .unwrap();
    let tag = |who: &Account| {
        all(
            &call(&store, who, "Action=DescribeVpcPeeringConnections").unwrap(),
            "value",
        )
    };
    assert_eq!(tag(&a), vec!["a"]);
    assert_eq!(tag(&b), vec!["b"]);
    // The accepter's tags survive the requester's changes.
    act(&store, &b, "Accept", &pcx).unwrap();
    assert_eq!(tag(&b), vec!["b"]);
}

// spec 7.2: options are set per side, by that side, once active.
#[test]
fn modify_options() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, _, pcx) = pending(&store, &a, &b);
    let modify = |who: &Account, side: &str| {
        call(
            &store,
            who,
            &format!(
                "Action=ModifyVpcPeeringConnectionOptions&VpcPeeringConnectionId={pcx}&{side}PeeringConnectionOptions.AllowDnsResolutionFromRemoteVpc=true"
            ),
        )
        .map_err(|e| e.code.into_owned())
    };
    assert_eq!(
        modify(&a, "Requester").unwrap_err(),
        "InvalidStateTransition"
    );
    act(&store, &b, "Accept", &pcx).unwrap();
    let xml = modify(&a, "Requester").unwrap();
    assert_eq!(first(&xml, "allowDnsResolutionFromRemoteVpc"), "true");
    assert!(!xml.contains("accepterPeeringConnectionOptions"));
    assert_eq!(modify(&a, "Accepter").unwrap_err(), "OperationNotPermitted");
    modify(&b, "Accepter").unwrap();
    let d = call(&store, &b, "Action=DescribeVpcPeeringConnections").unwrap();
    assert_eq!(
        all(&d, "allowDnsResolutionFromRemoteVpc"),
        vec!["true", "true"]
    );
}

// spec 7.2: deleting a VPC deletes its active peerings; a pending request
// from another account keeps the accepter's VPC.
#[test]
fn delete_vpc_and_peerings() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (va, vb, pcx) = pending(&store, &a, &b);
    assert_eq!(
        code(&store, &b, &format!("Action=DeleteVpc&VpcId={vb}")),
        "DependencyViolation"
    );
    act(&store, &b, "Accept", &pcx).unwrap();
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={va}")).unwrap();
    assert_eq!(status(&store, &b, &pcx).as_deref(), Some("deleted"));
    call(&store, &b, &format!("Action=DeleteVpc&VpcId={vb}")).unwrap();
}

// spec 7.2: a same-account peering is accepted by that account.
#[test]
fn same_account_peering() {
    let store = MemoryStore::new();
    let (a, _) = accounts(&store);
    let va = vpc_with(&store, &a, "10.0.0.0/16");
    let vb = vpc_with(&store, &a, "10.1.0.0/16");
    let pcx = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateVpcPeeringConnection&VpcId={va}&PeerVpcId={vb}"),
        )
        .unwrap(),
        "vpcPeeringConnectionId",
    );
    let d = call(&store, &a, "Action=DescribeVpcPeeringConnections").unwrap();
    assert_eq!(first(&d, "message"), "Pending Acceptance by 111111111111");
    act(&store, &a, "Accept", &pcx).unwrap();
    assert_eq!(status(&store, &a, &pcx).as_deref(), Some("active"));
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeVpcPeeringConnections&VpcPeeringConnectionId.1=pcx-0123456789abcdef0"
        ),
        "InvalidVpcPeeringConnectionID.NotFound"
    );
}

fn associate(store: &dyn Store, who: &Account, vpc: &str, cidr: &str) -> Result<String, String> {
    call(
        store,
        who,
        &format!(
            "Action=AssociateVpcCidrBlock&VpcId={vpc}&CidrBlock={}",
            cidr.replace('/', "%2F")
        ),
    )
    .map_err(|e| e.code.into_owned())
}

// spec 1.1: while a request the VPC made is pending-acceptance, no block can
// be added to the requester VPC; once the request is gone, it can.
#[test]
fn pending_request_blocks_requester_cidr() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (va, _, pcx) = pending(&store, &a, &b);
    assert_eq!(
        associate(&store, &a, &va, "10.2.0.0/16").unwrap_err(),
        "OperationNotPermitted"
    );
    // Nothing was half-added.
    let d = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={va}")).unwrap();
    assert!(!d.contains("10.2.0.0/16"), "{d}");
    // Withdrawn by the requester, the request no longer holds the VPC.
    act(&store, &a, "Delete", &pcx).unwrap();
    associate(&store, &a, &va, "10.2.0.0/16").unwrap();
}

// spec 1.1: the accepter may add a block while the request is pending; an
// overlapping one makes the request fail.
#[test]
fn accepter_overlapping_block_fails_the_pending_request() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let (_, vb, pcx) = pending(&store, &a, &b);
    // 10.1/16 (b) and 10.2/16 overlap nothing of a's 10.0/16: the request stays.
    associate(&store, &b, &vb, "10.2.0.0/16").unwrap();
    assert_eq!(
        status(&store, &b, &pcx).as_deref(),
        Some("pending-acceptance")
    );
    // An overlapping block, shown with a second pair in 100.64/10 (a block
    // of the requester's range is free of spec 1.1's restricted table there).
    let vc = vpc_with(&store, &a, "100.64.0.0/16");
    let vd = vpc_with(&store, &b, "100.65.0.0/16");
    let p2 = first(&request(&store, &a, &vc, &vd, &b), "vpcPeeringConnectionId");
    assert_eq!(
        status(&store, &b, &p2).as_deref(),
        Some("pending-acceptance")
    );
    associate(&store, &b, &vd, "100.64.0.0/24").unwrap();
    assert_eq!(status(&store, &a, &p2).as_deref(), Some("failed"));
    assert_eq!(
        act(&store, &b, "Accept", &p2).unwrap_err(),
        "InvalidStateTransition"
    );
}

// spec 1.1: once the peering is active, neither side may add a block that
// overlaps the peer's; a block that overlaps nothing is added and the
// peering shows it.
#[test]
fn active_peering_refuses_overlapping_block() {
    let store = MemoryStore::new();
    let (a, b) = accounts(&store);
    let va = vpc_with(&store, &a, "100.64.0.0/16");
    let vb = vpc_with(&store, &b, "100.65.0.0/16");
    let pcx = first(&request(&store, &a, &va, &vb, &b), "vpcPeeringConnectionId");
    act(&store, &b, "Accept", &pcx).unwrap();
    assert_eq!(
        associate(&store, &a, &va, "100.65.128.0/17").unwrap_err(),
        "InvalidVpc.Range"
    );
    assert_eq!(
        associate(&store, &b, &vb, "100.64.0.0/24").unwrap_err(),
        "InvalidVpc.Range"
    );
    // Refused calls stored nothing.
    let d = call(&store, &b, &format!("Action=DescribeVpcs&VpcId.1={vb}")).unwrap();
    assert_eq!(all(&d, "cidrBlock").len(), 2, "{d}");
    // A block apart from the peer's is fine, and the peering records it.
    associate(&store, &a, &va, "100.66.0.0/16").unwrap();
    let d = call(&store, &b, "Action=DescribeVpcPeeringConnections").unwrap();
    assert!(d.contains("100.66.0.0/16"), "{d}");
    // ... so the peer may not take it either.
    assert_eq!(
        associate(&store, &b, &vb, "100.66.0.0/24").unwrap_err(),
        "InvalidVpc.Range"
    );
}
