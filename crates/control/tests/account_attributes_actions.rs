//! DescribeAccountAttributes (spec 12.5, issue 12): the six attributes AWS
//! answers, filtered by `AttributeName.N`, with the region's default VPC and
//! the limits the other actions enforce.

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, ensure_default_vpc, first};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

/// `(name, values)` of every attribute answered, in order.
fn attributes(store: &dyn Store, a: &Account, query: &str) -> Vec<(String, Vec<String>)> {
    let xml = call(
        store,
        a,
        &format!("Action=DescribeAccountAttributes{query}"),
    )
    .unwrap();
    xml.split("<attributeName>")
        .skip(1)
        .map(|item| {
            let (name, rest) = item.split_once("</attributeName>").unwrap();
            (name.to_owned(), all(rest, "attributeValue"))
        })
        .collect()
}

fn value(store: &dyn Store, a: &Account, name: &str) -> String {
    let answered = attributes(store, a, &format!("&AttributeName.1={name}"));
    assert_eq!(answered.len(), 1, "{answered:?}");
    answered[0].1.join(",")
}

#[test]
fn every_attribute_in_aws_order() {
    let store = MemoryStore::new();
    let a = account();
    ensure_default_vpc(&store, &a);
    let default = first(
        &call(
            &store,
            &a,
            "Action=DescribeVpcs&Filter.1.Name=is-default&Filter.1.Value.1=true",
        )
        .unwrap(),
        "vpcId",
    );
    let xml = call(&store, &a, "Action=DescribeAccountAttributes").unwrap();
    assert!(
        xml.contains("<accountAttributeSet><item><attributeName>vpc-max-security-groups-per-interface</attributeName><attributeValueSet><item><attributeValue>5</attributeValue></item></attributeValueSet></item>"),
        "{xml}"
    );
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        attributes(&store, &a, ""),
        vec![
            ("vpc-max-security-groups-per-interface".into(), s(&["5"])),
            ("max-instances".into(), s(&["20"])),
            // EC2-Classic is retired: VPC only.
            ("supported-platforms".into(), s(&["VPC"])),
            // spec 1.3: the region's default VPC.
            ("default-vpc".into(), vec![default]),
            ("max-elastic-ips".into(), s(&["5"])),
            ("vpc-max-elastic-ips".into(), s(&["5"])),
        ]
    );
}

#[test]
fn filtered_by_attribute_name() {
    let store = MemoryStore::new();
    let a = account();
    let names = |query: &str| -> Vec<String> {
        attributes(&store, &a, query)
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    assert_eq!(
        names("&AttributeName.1=default-vpc&AttributeName.2=supported-platforms"),
        ["supported-platforms", "default-vpc"],
        "the named ones, in AWS's order"
    );
    assert_eq!(
        names("&AttributeName.1=max-instances&AttributeName.2=max-instances"),
        ["max-instances"],
        "each once"
    );
    // An unknown name refuses the whole call, naming the valid ones.
    let e = call(
        &store,
        &a,
        "Action=DescribeAccountAttributes&AttributeName.1=default-vpc&AttributeName.2=max-vpcs",
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidParameterValue");
    assert!(
        e.message.contains("max-vpcs") && e.message.contains("vpc-max-elastic-ips"),
        "{}",
        e.message
    );
    assert_eq!(
        code(&store, &a, "Action=DescribeAccountAttributes&DryRun=true"),
        "DryRunOperation"
    );
}

#[test]
fn default_vpc_is_none_without_one() {
    // spec 1.3: an account whose default VPC is not there answers `none`.
    let store = MemoryStore::new();
    let a = account();
    assert_eq!(value(&store, &a, "default-vpc"), "none");
    ensure_default_vpc(&store, &a);
    assert!(value(&store, &a, "default-vpc").starts_with("vpc-"));
}

#[test]
fn limits_are_the_ones_enforced() {
    // spec 13: the Elastic IP quota answered is the one AllocateAddress
    // enforces; the groups-per-interface limit the one ENIs enforce.
    let store = MemoryStore::new();
    let a = account();
    let eips: usize = value(&store, &a, "vpc-max-elastic-ips").parse().unwrap();
    assert_eq!(value(&store, &a, "max-elastic-ips"), eips.to_string());
    for _ in 0..eips {
        call(&store, &a, "Action=AllocateAddress&Domain=vpc").unwrap();
    }
    assert_eq!(
        code(&store, &a, "Action=AllocateAddress&Domain=vpc"),
        "AddressLimitExceeded"
    );

    let groups: usize = value(&store, &a, "vpc-max-security-groups-per-interface")
        .parse()
        .unwrap();
    let vpc = common::vpc(&store, &a);
    let subnet = common::subnet(&store, &a, &vpc, "10.0.1.0/24");
    let ids: Vec<String> = (0..=groups)
        .map(|i| common::security_group(&store, &a, &vpc, &format!("g{i}")))
        .collect();
    let with = |n: usize| {
        let mut body = format!("Action=CreateNetworkInterface&SubnetId={subnet}");
        for (i, g) in ids.iter().take(n).enumerate() {
            body.push_str(&format!("&SecurityGroupId.{}={g}", i + 1));
        }
        body
    };
    call(&store, &a, &with(groups)).unwrap();
    assert_eq!(
        code(&store, &a, &with(groups + 1)),
        "SecurityGroupsPerInterfaceLimitExceeded"
    );
}
