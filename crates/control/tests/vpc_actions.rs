//! The VPC actions over the in-memory store, without HTTP: results, error
//! codes, account isolation, and the quota under concurrent creates.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::call;
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn vpc_ids(xml: &str) -> Vec<String> {
    xml.split("<vpcId>")
        .skip(1)
        .filter_map(|s| s.split_once("</vpcId>").map(|(id, _)| id.to_owned()))
        .collect()
}

#[test]
fn create_describe_delete() {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    let xml = call(&store, &a, "Action=CreateVpc&CidrBlock=10.0.0.7%2F16").unwrap();
    assert!(xml.starts_with("<?xml"));
    assert!(xml.contains("<CreateVpcResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>req-test</requestId>"));
    assert!(
        xml.contains("<cidrBlock>10.0.0.0/16</cidrBlock>"),
        "spec 1.1: host bits masked: {xml}"
    );
    let id = vpc_ids(&xml).remove(0);
    let described = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={id}")).unwrap();
    assert_eq!(vpc_ids(&described), std::slice::from_ref(&id));
    assert!(described.contains("<state>available</state>"));
    assert!(
        call(&store, &a, &format!("Action=DeleteVpc&VpcId={id}"))
            .unwrap()
            .contains("<return>true</return>")
    );
    let e = call(&store, &a, &format!("Action=DeleteVpc&VpcId={id}")).unwrap_err();
    assert_eq!(e.code, "InvalidVpcID.NotFound");
}

#[test]
fn errors_leave_nothing_behind() {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    for (body, code) in [
        ("Action=CreateVpc", "MissingParameter"),
        (
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F8",
            "InvalidVpc.Range",
        ),
        ("Action=CreateVpc&CidrBlock=banana", "InvalidParameterValue"),
        (
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&InstanceTenancy=host",
            "InvalidParameterValue",
        ),
        (
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&DryRun=true",
            "DryRunOperation",
        ),
        (
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&TagSpecification.1.ResourceType=subnet&TagSpecification.1.Tag.1.Key=a",
            "InvalidParameterValue",
        ),
        ("Action=NoSuchThing", "InvalidAction"),
        ("Version=2016-11-15", "MissingParameter"),
    ] {
        assert_eq!(call(&store, &a, body).unwrap_err().code, code, "{body}");
    }
    assert_eq!(
        store.revision().unwrap(),
        0,
        "no failed call wrote anything"
    );
}

#[test]
fn accounts_do_not_see_each_other() {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    let b = Account::generate("b", Some("222222222222"));
    let id =
        vpc_ids(&call(&store, &a, "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap()).remove(0);
    assert!(vpc_ids(&call(&store, &b, "Action=DescribeVpcs").unwrap()).is_empty());
    let e = call(&store, &b, &format!("Action=DescribeVpcs&VpcId.1={id}")).unwrap_err();
    assert_eq!(e.code, "InvalidVpcID.NotFound");
    assert_eq!(
        call(&store, &b, &format!("Action=DeleteVpc&VpcId={id}"))
            .unwrap_err()
            .code,
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        vpc_ids(&call(&store, &a, "Action=DescribeVpcs").unwrap()),
        [id]
    );
}

#[test]
fn quota_holds_under_concurrent_creates_and_vnis_are_unique() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = Account::generate("a", Some("111111111111"));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let a = a.clone();
            std::thread::spawn(move || {
                call(
                    store.as_ref(),
                    &a,
                    &format!("Action=CreateVpc&CidrBlock=10.{i}.0.0%2F16"),
                )
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        ok, 5,
        "spec 13: 5 VPCs per region, even when created at once"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code == "VpcLimitExceeded")
    );
    let listed = vpc_ids(&call(store.as_ref(), &a, "Action=DescribeVpcs").unwrap());
    assert_eq!(listed.len(), 5);
    let mut vnis: Vec<u64> = store
        .range(b"r/", None, usize::MAX)
        .unwrap()
        .iter()
        .filter(|kv| kv.key.windows(5).any(|w| w == b"/vpc/"))
        .map(|kv| {
            serde_json::from_slice::<serde_json::Value>(&kv.value).unwrap()["vni"]
                .as_u64()
                .unwrap()
        })
        .collect();
    vnis.sort_unstable();
    vnis.dedup();
    assert_eq!(vnis.len(), 5, "every VPC has its own VNI");
}

#[test]
fn pagination() {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    let mut created: Vec<String> = (0..5)
        .map(|i| {
            vpc_ids(
                &call(
                    &store,
                    &a,
                    &format!("Action=CreateVpc&CidrBlock=10.{i}.0.0%2F16"),
                )
                .unwrap(),
            )
            .remove(0)
        })
        .collect();
    created.sort();
    let page = call(&store, &a, "Action=DescribeVpcs&MaxResults=5").unwrap();
    assert_eq!(vpc_ids(&page), created);
    assert!(!page.contains("nextToken"));
    // A filter leaves fewer than a page: no token either.
    let filtered = call(
        &store,
        &a,
        "Action=DescribeVpcs&MaxResults=5&Filter.1.Name=cidr&Filter.1.Value.1=10.1.*",
    )
    .unwrap();
    assert_eq!(vpc_ids(&filtered).len(), 1);
    assert_eq!(
        call(&store, &a, "Action=DescribeVpcs&NextToken=zzz")
            .unwrap_err()
            .code,
        "InvalidNextToken"
    );
}

// CreateVpc API reference: `Ipv6CidrBlock` is a block of an IPv6 pool ("You
// must also specify Ipv6Pool in the request"); without the pool the request
// is refused, not answered with a VPC lacking the block. openvpc runs no
// BYOIP or IPAM pools, so a request naming one is refused too, as
// AssociateVpcCidrBlock refuses it; neither leaves anything behind.
#[test]
fn an_ipv6_block_needs_its_pool_and_pools_are_refused() {
    let store = MemoryStore::new();
    let a = Account::generate("a", Some("111111111111"));
    let block = "Ipv6CidrBlock=2602%3A%3A%2F56";
    for action in ["CreateVpc&CidrBlock=10.0.0.0%2F16", "AssociateVpcCidrBlock"] {
        let vpc = if action == "AssociateVpcCidrBlock" {
            let id =
                vpc_ids(&call(&store, &a, "Action=CreateVpc&CidrBlock=10.9.0.0%2F16").unwrap())
                    .remove(0);
            format!("&VpcId={id}")
        } else {
            String::new()
        };
        let e = call(&store, &a, &format!("Action={action}{vpc}&{block}")).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            (
                "MissingParameter",
                "The request must contain the parameter Ipv6Pool"
            ),
            "{action}"
        );
        for extra in [
            format!("&{block}&Ipv6Pool=ipv6pool-ec2-0123456789abcdef0"),
            "&Ipv6Pool=ipv6pool-ec2-0123456789abcdef0".to_owned(),
            "&Ipv6IpamPoolId=ipam-pool-0123456789abcdef0".to_owned(),
        ] {
            assert_eq!(
                call(&store, &a, &format!("Action={action}{vpc}{extra}"))
                    .unwrap_err()
                    .code,
                "InvalidParameterValue",
                "{action}{extra}"
            );
        }
    }
    let xml = call(&store, &a, "Action=DescribeVpcs").unwrap();
    assert_eq!(vpc_ids(&xml).len(), 1, "only the VPC made to associate to");
    assert!(
        xml.contains("<ipv6CidrBlockAssociationSet></ipv6CidrBlockAssociationSet>"),
        "no IPv6 block was taken: {xml}"
    );
}
