//! Internet gateways and egress-only internet gateways over the in-memory
//! store, without HTTP: attach and detach rules, their error codes, the
//! quota under concurrent creates, DeleteVpc's dependency on them, and
//! account isolation (spec 1.7, 5.1, 5.2, 13).

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{account, all, call, code, first, vpc, vpc_with};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn igw(store: &dyn Store, a: &Account) -> String {
    first(
        &call(store, a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    )
}

fn attach(igw: &str, vpc: &str) -> String {
    format!("Action=AttachInternetGateway&InternetGatewayId={igw}&VpcId={vpc}")
}

fn detach(igw: &str, vpc: &str) -> String {
    format!("Action=DetachInternetGateway&InternetGatewayId={igw}&VpcId={vpc}")
}

fn describe_ids(store: &dyn Store, a: &Account, query: &str) -> Vec<String> {
    all(
        &call(store, a, &format!("Action=DescribeInternetGateways{query}")).unwrap(),
        "internetGatewayId",
    )
}

fn eigw(store: &dyn Store, a: &Account, vpc: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=CreateEgressOnlyInternetGateway&VpcId={vpc}"),
        )
        .unwrap(),
        "egressOnlyInternetGatewayId",
    )
}

// spec 5.1 and 12.4: a new gateway has an igw- ID, its owner, its tags and
// no attachment.
#[test]
fn create_and_describe() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateInternetGateway&TagSpecification.1.ResourceType=internet-gateway&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=edge",
    )
    .unwrap();
    assert!(
        xml.contains("<CreateInternetGatewayResponse xmlns="),
        "{xml}"
    );
    let id = first(&xml, "internetGatewayId");
    assert!(id.starts_with("igw-") && id.len() == 4 + 17, "{id}");
    assert_eq!(first(&xml, "ownerId"), "111111111111");
    assert!(xml.contains("<attachmentSet></attachmentSet>"), "{xml}");
    assert!(
        xml.contains("<tagSet><item><key>Name</key><value>edge</value></item></tagSet>"),
        "{xml}"
    );
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeInternetGateways&InternetGatewayId.1={id}"),
    )
    .unwrap();
    assert!(
        described.contains("<internetGatewaySet><item>"),
        "{described}"
    );
    assert_eq!(all(&described, "internetGatewayId"), [id]);
}

// spec 5.1: attached, a gateway shows its VPC with state `available`.
#[test]
fn attach_detach_delete() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = igw(&store, &a);
    let xml = call(&store, &a, &attach(&g, &v)).unwrap();
    assert!(xml.contains("<return>true</return>"));
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeInternetGateways&InternetGatewayId.1={g}"),
    )
    .unwrap();
    assert!(
        described.contains(&format!(
            "<attachmentSet><item><vpcId>{v}</vpcId><state>available</state></item></attachmentSet>"
        )),
        "{described}"
    );
    // spec 5.1: deleting an attached gateway is a DependencyViolation.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteInternetGateway&InternetGatewayId={g}")
        ),
        "DependencyViolation"
    );
    call(&store, &a, &detach(&g, &v)).unwrap();
    let described = call(&store, &a, "Action=DescribeInternetGateways").unwrap();
    assert!(
        described.contains("<attachmentSet></attachmentSet>"),
        "{described}"
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteInternetGateway&InternetGatewayId={g}"),
    )
    .unwrap();
    assert!(describe_ids(&store, &a, "").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteInternetGateway&InternetGatewayId={g}")
        ),
        "InvalidInternetGatewayID.NotFound"
    );
}

// spec 5.1: one VPC per gateway and one gateway per VPC.
#[test]
fn attachment_rules() {
    let store = MemoryStore::new();
    let a = account();
    let v1 = vpc(&store, &a);
    let v2 = vpc(&store, &a);
    let g1 = igw(&store, &a);
    let g2 = igw(&store, &a);
    call(&store, &a, &attach(&g1, &v1)).unwrap();
    let before = store.revision().unwrap();
    for (body, want) in [
        (attach(&g1, &v1), "Resource.AlreadyAssociated"),
        (attach(&g1, &v2), "Resource.AlreadyAssociated"),
        (attach(&g2, &v1), "Resource.AlreadyAssociated"),
        (
            attach(&g2, "vpc-0123456789abcdef0"),
            "InvalidVpcID.NotFound",
        ),
        (
            attach("igw-0123456789abcdef0", &v2),
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            attach("igw-nope", &v2),
            "InvalidInternetGatewayID.Malformed",
        ),
        (attach(&g2, "vpc-nope"), "InvalidVpcID.Malformed"),
        (
            format!("Action=AttachInternetGateway&InternetGatewayId={g2}"),
            "MissingParameter",
        ),
        (
            format!("{}&DryRun=true", attach(&g2, &v2)),
            "DryRunOperation",
        ),
        // spec 5.1: detaching from a VPC it is not attached to, or when not
        // attached at all, or from a VPC that does not exist.
        (detach(&g1, &v2), "Gateway.NotAttached"),
        (detach(&g2, &v2), "Gateway.NotAttached"),
        (detach(&g1, "vpc-deadbeef"), "Gateway.NotAttached"),
        (
            detach("igw-0123456789abcdef0", &v1),
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            format!("{}&DryRun=true", detach(&g1, &v1)),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    assert_eq!(store.revision().unwrap(), before, "no failed call wrote");
    // The second VPC can still take the second gateway.
    call(&store, &a, &attach(&g2, &v2)).unwrap();
}

// spec 12.1: filters on gateway ID, attachment, owner and tags.
#[test]
fn filters() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g1 = igw(&store, &a);
    let g2 = igw(&store, &a);
    call(&store, &a, &attach(&g1, &v)).unwrap();
    call(
        &store,
        &a,
        &format!("Action=CreateTags&ResourceId.1={g2}&Tag.1.Key=role&Tag.1.Value=spare"),
    )
    .unwrap();
    let f = |name: &str, value: &str| format!("&Filter.1.Name={name}&Filter.1.Value.1={value}");
    assert_eq!(
        describe_ids(&store, &a, &f("attachment.vpc-id", &v)),
        [g1.as_str()]
    );
    assert_eq!(
        describe_ids(&store, &a, &f("attachment.state", "available")),
        [g1.as_str()]
    );
    assert_eq!(
        describe_ids(&store, &a, &f("internet-gateway-id", &g2)),
        [g2.as_str()]
    );
    assert_eq!(
        describe_ids(&store, &a, &f("tag:role", "sp*")),
        [g2.as_str()]
    );
    assert_eq!(
        describe_ids(&store, &a, &f("owner-id", "111111111111")).len(),
        2
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeInternetGateways{}", f("color", "red"))
        ),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeInternetGateways&InternetGatewayId.1=igw-0123456789abcdef0"
        ),
        "InvalidInternetGatewayID.NotFound"
    );
}

// spec 13: five internet gateways per region, even when created at once.
#[test]
fn quota_holds_under_concurrent_creates() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = account();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let a = a.clone();
            std::thread::spawn(move || call(store.as_ref(), &a, "Action=CreateInternetGateway"))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code == "InternetGatewayLimitExceeded")
    );
    assert_eq!(describe_ids(store.as_ref(), &a, "").len(), 5);
}

// spec 5.1: racing attaches of two gateways to one VPC: exactly one wins.
#[test]
fn concurrent_attaches_to_one_vpc() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let gateways: Vec<String> = (0..4).map(|_| igw(store.as_ref(), &a)).collect();
    let threads: Vec<_> = gateways
        .iter()
        .map(|g| {
            let (store, a, body) = (store.clone(), a.clone(), attach(g, &v));
            std::thread::spawn(move || call(store.as_ref(), &a, &body))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert_eq!(
        describe_ids(
            store.as_ref(),
            &a,
            &format!("&Filter.1.Name=attachment.vpc-id&Filter.1.Value.1={v}")
        )
        .len(),
        1
    );
}

// spec 1.7: an attached gateway blocks DeleteVpc; a detached one does not.
#[test]
fn attached_gateway_blocks_delete_vpc() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = igw(&store, &a);
    call(&store, &a, &attach(&g, &v)).unwrap();
    let e = call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap_err();
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        e.message,
        format!("The vpc '{v}' has dependencies and cannot be deleted.")
    );
    call(&store, &a, &detach(&g, &v)).unwrap();
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    // The gateway outlives the VPC, unattached.
    assert_eq!(describe_ids(&store, &a, ""), [g]);
}

#[test]
fn accounts_do_not_see_each_others_gateways() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let va = vpc(&store, &a);
    let ga = igw(&store, &a);
    let gb = igw(&store, &b);
    assert_eq!(describe_ids(&store, &b, ""), [gb.as_str()]);
    assert_eq!(
        code(&store, &b, &attach(&ga, &va)),
        "InvalidInternetGatewayID.NotFound"
    );
    assert_eq!(code(&store, &b, &attach(&gb, &va)), "InvalidVpcID.NotFound");
    let e = eigw(&store, &a, &va);
    assert!(
        call(&store, &b, "Action=DescribeEgressOnlyInternetGateways")
            .map(|x| all(&x, "egressOnlyInternetGatewayId"))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId={e}")
        ),
        "InvalidGatewayID.NotFound"
    );
}

// spec 5.2: created attached to its VPC (`attached`), one per VPC, and
// deleted without detaching.
#[test]
fn egress_only_gateway_lifecycle() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateEgressOnlyInternetGateway&VpcId={v}&ClientToken=tok-1&TagSpecification.1.ResourceType=egress-only-internet-gateway&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v"
        ),
    )
    .unwrap();
    let e = first(&xml, "egressOnlyInternetGatewayId");
    assert!(e.starts_with("eigw-") && e.len() == 5 + 17, "{e}");
    assert_eq!(first(&xml, "clientToken"), "tok-1");
    let item = first(&xml, "egressOnlyInternetGateway");
    assert!(
        item.contains(&format!(
            "<attachmentSet><item><state>attached</state><vpcId>{v}</vpcId></item></attachmentSet>"
        )),
        "{xml}"
    );
    assert!(item.contains("<key>k</key><value>v</value>"), "{xml}");
    // Describe shows the same item as Create.
    let described = call(&store, &a, "Action=DescribeEgressOnlyInternetGateways").unwrap();
    assert!(
        described.contains(&format!(
            "<egressOnlyInternetGatewaySet><item>{item}</item></egressOnlyInternetGatewaySet>"
        )),
        "{described}"
    );
    let v2 = vpc_with(&store, &a, "10.1.0.0/16");
    let e2 = eigw(&store, &a, &v2);
    let by_id = call(
        &store,
        &a,
        &format!("Action=DescribeEgressOnlyInternetGateways&EgressOnlyInternetGatewayId.1={e2}"),
    )
    .unwrap();
    assert_eq!(all(&by_id, "egressOnlyInternetGatewayId"), [e2.as_str()]);
    let before = store.revision().unwrap();
    for (body, want) in [
        (
            format!("Action=CreateEgressOnlyInternetGateway&VpcId={v}"),
            "Resource.AlreadyAssociated",
        ),
        (
            "Action=CreateEgressOnlyInternetGateway".to_owned(),
            "MissingParameter",
        ),
        (
            "Action=CreateEgressOnlyInternetGateway&VpcId=vpc-0123456789abcdef0".to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            // EC2 answers any `vpc-` ID that names nothing as not found.
            "Action=CreateEgressOnlyInternetGateway&VpcId=vpc-says-what".to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            format!(
                "Action=CreateEgressOnlyInternetGateway&VpcId={v2}&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=k"
            ),
            "InvalidParameterValue",
        ),
        (
            format!("Action=CreateEgressOnlyInternetGateway&VpcId={v2}&DryRun=true"),
            "DryRunOperation",
        ),
        (
            "Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId=eigw-0123456789abcdef0"
                .to_owned(),
            "InvalidGatewayID.NotFound",
        ),
        (
            "Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId=igw-0123456789abcdef0"
                .to_owned(),
            "InvalidEgressOnlyInternetGatewayId.Malformed",
        ),
        (
            format!("Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId={e}&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    assert_eq!(store.revision().unwrap(), before, "no failed call wrote");
    // spec 1.7: an egress-only gateway blocks DeleteVpc until it is deleted.
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")),
        "DependencyViolation"
    );
    let xml = call(
        &store,
        &a,
        &format!("Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId={e}"),
    )
    .unwrap();
    assert!(xml.contains("<returnCode>true</returnCode>"), "{xml}");
    // A deleted gateway named in Describe is left out, not an error.
    let gone = call(
        &store,
        &a,
        &format!("Action=DescribeEgressOnlyInternetGateways&EgressOnlyInternetGatewayId.1={e}"),
    )
    .unwrap();
    assert!(
        all(&gone, "egressOnlyInternetGatewayId").is_empty(),
        "{gone}"
    );
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    // The freed slot: a VPC may get a new one once its old one is gone.
    call(
        &store,
        &a,
        &format!("Action=DeleteEgressOnlyInternetGateway&EgressOnlyInternetGatewayId={e2}"),
    )
    .unwrap();
    eigw(&store, &a, &v2);
}

// spec 12.1 (Idempotency): CreateEgressOnlyInternetGateway with the
// ClientToken of an earlier call returns that gateway (not the one-per-VPC
// error); the token with other parameters is IdempotentParameterMismatch.
#[test]
fn egress_only_gateway_client_token_idempotency() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let req = format!("Action=CreateEgressOnlyInternetGateway&VpcId={v}&ClientToken=tok-1");
    let one = call(&store, &a, &req).unwrap();
    let id = first(&one, "egressOnlyInternetGatewayId");
    let two = call(&store, &a, &req).unwrap();
    assert_eq!(first(&two, "egressOnlyInternetGatewayId"), id);
    assert_eq!(first(&two, "clientToken"), "tok-1");
    assert_eq!(
        all(
            &call(&store, &a, "Action=DescribeEgressOnlyInternetGateways").unwrap(),
            "egressOnlyInternetGatewayId"
        ),
        std::slice::from_ref(&id)
    );
    let w = vpc_with(&store, &a, "10.1.0.0/16");
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateEgressOnlyInternetGateway&VpcId={w}&ClientToken=tok-1")
        ),
        "IdempotentParameterMismatch"
    );
}
