//! CreateTags, DeleteTags and DescribeTags over the in-memory store, on
//! resources of several modules: overwrite and limits, the NotFound code of
//! each kind, all-or-nothing writes over several resources, filters,
//! pagination and account isolation (spec 12.1, 12.3, 13).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn tag(ids: &[&str], tags: &[(&str, &str)]) -> String {
    let mut body = "Action=CreateTags".to_owned();
    for (i, id) in ids.iter().enumerate() {
        body += &format!("&ResourceId.{}={id}", i + 1);
    }
    for (i, (k, v)) in tags.iter().enumerate() {
        body += &format!("&Tag.{n}.Key={k}&Tag.{n}.Value={v}", n = i + 1);
    }
    body
}

/// DescribeTags rows as (resource id, resource type, key, value).
fn rows(store: &dyn Store, a: &Account, query: &str) -> Vec<(String, String, String, String)> {
    let xml = call(store, a, &format!("Action=DescribeTags{query}")).unwrap();
    let set = first(&xml, "tagSet");
    set.split("<item>")
        .skip(1)
        .map(|item| {
            (
                first(item, "resourceId"),
                first(item, "resourceType"),
                first(item, "key"),
                first(item, "value"),
            )
        })
        .collect()
}

fn row(id: &str, kind: &str, k: &str, v: &str) -> (String, String, String, String) {
    (id.into(), kind.into(), k.into(), v.into())
}

fn default_group(store: &dyn Store, a: &Account, vpc: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=DescribeSecurityGroups&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
        )
        .unwrap(),
        "groupId",
    )
}

// spec 12.1: tags added later show in the resource's own Describe and in
// DescribeTags with EC2's resource type; a key given again is overwritten.
#[test]
fn create_overwrite_and_describe_across_kinds() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let sg = default_group(&store, &a, &v);
    let igw = first(
        &call(&store, &a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    );
    let eigw = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateEgressOnlyInternetGateway&VpcId={v}"),
        )
        .unwrap(),
        "egressOnlyInternetGatewayId",
    );
    let xml = call(
        &store,
        &a,
        &tag(&[&v, &sg, &igw, &eigw], &[("Name", "one"), ("env", "")]),
    )
    .unwrap();
    assert!(xml.contains("<return>true</return>"));
    call(&store, &a, &tag(&[&v], &[("Name", "two")])).unwrap();
    let described = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={v}")).unwrap();
    assert!(
        described.contains(
            "<tagSet><item><key>Name</key><value>two</value></item><item><key>env</key><value></value></item></tagSet>"
        ),
        "{described}"
    );
    let groups = call(&store, &a, "Action=DescribeSecurityGroups").unwrap();
    assert!(
        groups.contains("<key>Name</key><value>one</value>"),
        "{groups}"
    );
    let mut want = vec![
        row(&v, "vpc", "Name", "two"),
        row(&v, "vpc", "env", ""),
        row(&sg, "security-group", "Name", "one"),
        row(&sg, "security-group", "env", ""),
        row(&igw, "internet-gateway", "Name", "one"),
        row(&igw, "internet-gateway", "env", ""),
        row(&eigw, "egress-only-internet-gateway", "Name", "one"),
        row(&eigw, "egress-only-internet-gateway", "env", ""),
    ];
    want.sort();
    assert_eq!(rows(&store, &a, ""), want);
    // The security group's rules and default-ness are untouched by tagging.
    assert!(groups.contains("<ipPermissionsEgress><item>"), "{groups}");
}

// spec 12.1 and 13: at most 50 tags per resource, counting the ones it has;
// overwriting an existing key does not count.
#[test]
fn tag_limit() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let keys: Vec<String> = (0..49).map(|i| format!("k{i:02}")).collect();
    let tags: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "x")).collect();
    call(&store, &a, &tag(&[&v], &tags)).unwrap();
    call(&store, &a, &tag(&[&v], &[("k00", "y"), ("new", "z")])).unwrap();
    let before = store.revision().unwrap();
    assert_eq!(
        code(&store, &a, &tag(&[&v], &[("another", "z")])),
        "TagLimitExceeded"
    );
    let many: Vec<String> = (0..51).map(|i| format!("m{i}")).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|k| (k.as_str(), "")).collect();
    let fresh = vpc(&store, &a);
    let before_fresh = store.revision().unwrap();
    assert!(before_fresh > before);
    assert_eq!(code(&store, &a, &tag(&[&fresh], &many)), "TagLimitExceeded");
    assert_eq!(store.revision().unwrap(), before_fresh);
    assert_eq!(
        rows(
            &store,
            &a,
            &format!("&Filter.1.Name=resource-id&Filter.1.Value.1={v}")
        )
        .len(),
        50
    );
}

// spec 12.3: each kind's own NotFound code; malformed or untaggable IDs are
// InvalidID; a failure on one resource leaves every other untouched.
#[test]
fn errors_and_atomicity() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let before = store.revision().unwrap();
    for (body, want) in [
        (
            tag(&["vpc-0123456789abcdef0"], &[("a", "b")]),
            "InvalidVpcID.NotFound",
        ),
        (
            tag(&["subnet-0123456789abcdef0"], &[("a", "b")]),
            "InvalidSubnetID.NotFound",
        ),
        (
            tag(&["sg-0123456789abcdef0"], &[("a", "b")]),
            "InvalidGroup.NotFound",
        ),
        (
            tag(&["igw-0123456789abcdef0"], &[("a", "b")]),
            "InvalidInternetGatewayID.NotFound",
        ),
        (
            tag(&["eigw-0123456789abcdef0"], &[("a", "b")]),
            "InvalidGatewayID.NotFound",
        ),
        (
            tag(&["rtb-0123456789abcdef0"], &[("a", "b")]),
            "InvalidRouteTableID.NotFound",
        ),
        (
            tag(&["eni-0123456789abcdef0"], &[("a", "b")]),
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (
            tag(&["i-0123456789abcdef0"], &[("a", "b")]),
            "InvalidInstanceID.NotFound",
        ),
        // The existing VPC is not tagged when the other resource is missing.
        (
            tag(&[&v, "subnet-0123456789abcdef0"], &[("a", "b")]),
            "InvalidSubnetID.NotFound",
        ),
        (tag(&["vpc-zzz"], &[("a", "b")]), "InvalidID"),
        (tag(&["banana-0123"], &[("a", "b")]), "InvalidID"),
        (
            tag(&["vpc-cidr-assoc-0123456789abcdef0"], &[("a", "b")]),
            "InvalidID",
        ),
        (tag(&[], &[("a", "b")]), "MissingParameter"),
        (tag(&[&v], &[]), "MissingParameter"),
        (tag(&[&v], &[("aws:x", "b")]), "InvalidParameterValue"),
        (
            format!("{}&DryRun=true", tag(&[&v], &[("a", "b")])),
            "DryRunOperation",
        ),
        (
            "Action=DeleteTags&ResourceId.1=vpc-0123456789abcdef0&Tag.1.Key=a".to_owned(),
            "InvalidVpcID.NotFound",
        ),
        (
            "Action=DeleteTags&Tag.1.Key=a".to_owned(),
            "MissingParameter",
        ),
        (
            format!("Action=DeleteTags&ResourceId.1={v}&Tag.1.Value=a"),
            "MissingParameter",
        ),
        (
            format!("Action=DeleteTags&ResourceId.1={v}&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    assert_eq!(store.revision().unwrap(), before, "no failed call wrote");
    assert!(rows(&store, &a, "").is_empty());
}

// DeleteTags: by key; by key and value (only when the value matches, an
// empty value matching only an empty value); with no Tag.N, every tag.
#[test]
fn delete_tags() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    call(
        &store,
        &a,
        &tag(&[&v], &[("a", "1"), ("b", "2"), ("c", ""), ("d", "4")]),
    )
    .unwrap();
    let keys = |store: &MemoryStore| -> Vec<String> {
        rows(store, &a, "").into_iter().map(|r| r.2).collect()
    };
    call(
        &store,
        &a,
        &format!("Action=DeleteTags&ResourceId.1={v}&Tag.1.Key=a"),
    )
    .unwrap();
    assert_eq!(keys(&store), ["b", "c", "d"]);
    call(
        &store,
        &a,
        &format!("Action=DeleteTags&ResourceId.1={v}&Tag.1.Key=b&Tag.1.Value=wrong&Tag.2.Key=d&Tag.2.Value="),
    )
    .unwrap();
    assert_eq!(keys(&store), ["b", "c", "d"], "values did not match");
    call(
        &store,
        &a,
        &format!(
            "Action=DeleteTags&ResourceId.1={v}&Tag.1.Key=b&Tag.1.Value=2&Tag.2.Key=c&Tag.2.Value="
        ),
    )
    .unwrap();
    assert_eq!(keys(&store), ["d"]);
    call(&store, &a, &format!("Action=DeleteTags&ResourceId.1={v}")).unwrap();
    assert!(keys(&store).is_empty());
    // Deleting a key the resource does not have is not an error.
    call(
        &store,
        &a,
        &format!("Action=DeleteTags&ResourceId.1={v}&Tag.1.Key=zzz"),
    )
    .unwrap();
}

// spec 12.1: DescribeTags filters (key, value, resource-id, resource-type,
// tag:<key>, with wildcards), MaxResults/NextToken, and their errors.
#[test]
fn describe_filters_and_pages() {
    let store = MemoryStore::new();
    let a = account();
    let v1 = vpc(&store, &a);
    let v2 = vpc(&store, &a);
    let igw = first(
        &call(&store, &a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    );
    call(
        &store,
        &a,
        &tag(&[&v1], &[("Name", "web"), ("tier", "front")]),
    )
    .unwrap();
    call(
        &store,
        &a,
        &tag(&[&v2], &[("Name", "db"), ("tier", "back")]),
    )
    .unwrap();
    call(&store, &a, &tag(&[&igw], &[("Name", "edge*")])).unwrap();
    let ids = |query: &str| -> Vec<String> {
        let mut ids: Vec<String> = rows(&store, &a, query).into_iter().map(|r| r.0).collect();
        ids.dedup();
        ids
    };
    let f = |n: u32, name: &str, value: &str| {
        format!("&Filter.{n}.Name={name}&Filter.{n}.Value.1={value}")
    };
    assert_eq!(
        ids(&f(1, "resource-type", "internet-gateway")),
        [igw.as_str()]
    );
    assert_eq!(ids(&f(1, "resource-id", &v2)), [v2.as_str()]);
    assert_eq!(rows(&store, &a, &f(1, "key", "tier")).len(), 2);
    assert_eq!(
        rows(&store, &a, &f(1, "value", "edge\\*")),
        [row(&igw, "internet-gateway", "Name", "edge*")]
    );
    assert_eq!(rows(&store, &a, &f(1, "value", "w?b")).len(), 1);
    // tag:<key> selects resources, and then their tags.
    assert_eq!(
        rows(&store, &a, &f(1, "tag:tier", "front")),
        [
            row(&v1, "vpc", "Name", "web"),
            row(&v1, "vpc", "tier", "front")
        ]
    );
    // Filters AND.
    assert_eq!(
        rows(
            &store,
            &a,
            &format!("{}{}", f(1, "resource-type", "vpc"), f(2, "key", "Name"))
        )
        .len(),
        2
    );
    assert!(rows(&store, &a, &f(1, "resource-type", "unknown")).is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeTags{}", f(1, "colour", "x"))
        ),
        "InvalidParameterValue"
    );
    // Exactly one page: no token. One row more: a page of 5, then 1.
    let only = call(&store, &a, "Action=DescribeTags&MaxResults=5").unwrap();
    assert_eq!(all(&only, "key").len(), 5);
    assert!(!only.contains("nextToken"), "{only}");
    call(&store, &a, &tag(&[&igw], &[("extra", "1")])).unwrap();
    let first_page = call(&store, &a, "Action=DescribeTags&MaxResults=5").unwrap();
    assert_eq!(all(&first_page, "key").len(), 5);
    let t = first(&first_page, "nextToken");
    let second = call(
        &store,
        &a,
        &format!("Action=DescribeTags&MaxResults=5&NextToken={t}"),
    )
    .unwrap();
    assert_eq!(all(&second, "key").len(), 1);
    assert!(!second.contains("nextToken"));
    assert_eq!(
        code(&store, &a, "Action=DescribeTags&MaxResults=4"),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(&store, &a, "Action=DescribeTags&NextToken=zzz"),
        "InvalidNextToken"
    );
    assert_eq!(
        code(&store, &a, "Action=DescribeTags&DryRun=true"),
        "DryRunOperation"
    );
}

#[test]
fn accounts_do_not_see_each_others_tags() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let v = vpc(&store, &a);
    call(&store, &a, &tag(&[&v], &[("owner", "a")])).unwrap();
    assert_eq!(
        code(&store, &b, &tag(&[&v], &[("owner", "b")])),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(&store, &b, &format!("Action=DeleteTags&ResourceId.1={v}")),
        "InvalidVpcID.NotFound"
    );
    assert!(rows(&store, &b, "").is_empty());
    assert_eq!(rows(&store, &a, ""), [row(&v, "vpc", "owner", "a")]);
}
