//! Managed prefix lists over the in-memory store, without HTTP: customer
//! lists and their versions, the AWS-managed S3 and DynamoDB lists, lists as
//! security-group rule targets (weighing their max entries against the rule
//! quota) and as route destinations, and every error path (spec 3.1, 11, 13).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, main_route_table, prefix_list, security_group, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn entries(store: &dyn Store, a: &Account, id: &str, extra: &str) -> Vec<String> {
    all(
        &call(
            store,
            a,
            &format!("Action=GetManagedPrefixListEntries&PrefixListId={id}{extra}"),
        )
        .unwrap(),
        "cidr",
    )
}

/// The AWS-managed list of `service` in us-east-1: (ID, CIDRs).
fn aws_list(store: &dyn Store, a: &Account, service: &str) -> (String, Vec<String>) {
    let xml = call(
        store,
        a,
        &format!(
            "Action=DescribePrefixLists&Filter.1.Name=prefix-list-name&Filter.1.Value.1=com.amazonaws.us-east-1.{service}"
        ),
    )
    .unwrap();
    (
        first(&xml, "prefixListId"),
        all(&first(&xml, "cidrSet"), "item"),
    )
}

fn ingress_from_list(group: &str, list: &str) -> String {
    format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443&IpPermissions.1.PrefixListIds.1.PrefixListId={list}&IpPermissions.1.PrefixListIds.1.Description=corp"
    )
}

// spec 13 and 12.4: a new list shows its name, family, size, version 1,
// owner, ARN and tags; its entries come back from GetManagedPrefixListEntries.
#[test]
fn create_describe_and_entries() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateManagedPrefixList&PrefixListName=corp&MaxEntries=3&AddressFamily=IPv4\
         &Entry.1.Cidr=10.1.0.0%2F16&Entry.1.Description=one&Entry.2.Cidr=10.2.0.5%2F16\
         &TagSpecification.1.ResourceType=prefix-list&TagSpecification.1.Tag.1.Key=team&TagSpecification.1.Tag.1.Value=net",
    )
    .unwrap();
    let id = first(&xml, "prefixListId");
    assert!(id.starts_with("pl-") && id.len() == 3 + 17);
    assert_eq!(first(&xml, "state"), "create-complete");
    assert_eq!(first(&xml, "maxEntries"), "3");
    assert_eq!(first(&xml, "version"), "1");
    assert_eq!(first(&xml, "addressFamily"), "IPv4");
    assert_eq!(first(&xml, "ownerId"), a.id);
    assert_eq!(
        first(&xml, "prefixListArn"),
        format!("arn:aws:ec2:us-east-1:{}:prefix-list/{id}", a.id)
    );
    assert!(xml.contains("<key>team</key><value>net</value>"));
    // CIDRs are stored canonical.
    assert_eq!(entries(&store, &a, &id, ""), ["10.1.0.0/16", "10.2.0.0/16"]);
    let page = call(
        &store,
        &a,
        &format!("Action=GetManagedPrefixListEntries&PrefixListId={id}&MaxResults=1"),
    )
    .unwrap();
    assert_eq!(all(&page, "cidr"), ["10.1.0.0/16"]);
    let token = first(&page, "nextToken");
    assert_eq!(
        entries(&store, &a, &id, &format!("&NextToken={token}")),
        ["10.2.0.0/16"]
    );
    // Describe: the account's list and the AWS-managed ones; filters.
    let described = call(&store, &a, "Action=DescribeManagedPrefixLists").unwrap();
    assert_eq!(all(&described, "prefixListId").len(), 3);
    let owners = all(&described, "ownerId");
    assert_eq!(owners.iter().filter(|o| *o == "AWS").count(), 2);
    let by_tag = call(
        &store,
        &a,
        "Action=DescribeManagedPrefixLists&Filter.1.Name=tag:team&Filter.1.Value.1=net",
    )
    .unwrap();
    assert_eq!(all(&by_tag, "prefixListId"), vec![id.clone()]);
    let by_owner = call(
        &store,
        &a,
        "Action=DescribeManagedPrefixLists&Filter.1.Name=owner-id&Filter.1.Value.1=AWS",
    )
    .unwrap();
    assert_eq!(all(&by_owner, "prefixListId").len(), 2);
    // DescribeTags names the kind prefix-list.
    let tags = call(
        &store,
        &a,
        &format!("Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&tags, "resourceType"), "prefix-list");
}

// spec 11: the AWS-managed S3 and DynamoDB lists: owner AWS, fixed IDs,
// fixed CIDRs, named com.amazonaws.REGION.SERVICE, readable, not changeable.
#[test]
fn aws_managed_lists() {
    let store = MemoryStore::new();
    let a = account();
    let (s3, s3_cidrs) = aws_list(&store, &a, "s3");
    let (ddb, _) = aws_list(&store, &a, "dynamodb");
    assert_ne!(s3, ddb);
    assert!(!s3_cidrs.is_empty());
    // The same IDs for another account.
    let b = Account::generate("b", Some("222222222222"));
    assert_eq!(aws_list(&store, &b, "s3").0, s3);
    assert_eq!(entries(&store, &a, &s3, ""), s3_cidrs);
    let all_aws = call(&store, &a, "Action=DescribePrefixLists").unwrap();
    assert_eq!(all(&all_aws, "prefixListId").len(), 2);
    // DescribePrefixLists shows only AWS's lists.
    prefix_list(&store, &a, 2, &[]);
    let again = call(&store, &a, "Action=DescribePrefixLists").unwrap();
    assert_eq!(all(&again, "prefixListId").len(), 2);
    let managed = call(
        &store,
        &a,
        &format!("Action=DescribeManagedPrefixLists&PrefixListId.1={s3}"),
    )
    .unwrap();
    assert_eq!(first(&managed, "ownerId"), "AWS");
    assert!(!managed.contains("<maxEntries>"));
    assert_eq!(
        first(&managed, "prefixListArn"),
        format!("arn:aws:ec2:us-east-1:aws:prefix-list/{s3}")
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteManagedPrefixList&PrefixListId={s3}")
        ),
        "OperationNotPermitted"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=ModifyManagedPrefixList&PrefixListId={s3}&PrefixListName=x")
        ),
        "OperationNotPermitted"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribePrefixLists&PrefixListId.1=pl-0123456789abcdef0"
        ),
        "InvalidPrefixListID.NotFound"
    );
}

// spec 13 and 12.3: what CreateManagedPrefixList refuses.
#[test]
fn create_errors() {
    let store = MemoryStore::new();
    let a = account();
    let base = "Action=CreateManagedPrefixList&PrefixListName=n&AddressFamily=IPv4";
    for (q, want) in [
        (format!("{base}&MaxEntries=0"), "InvalidParameterValue"),
        (format!("{base}&MaxEntries=1001"), "InvalidParameterValue"),
        (base.to_string(), "MissingParameter"),
        (
            "Action=CreateManagedPrefixList&PrefixListName=n&MaxEntries=2&AddressFamily=%3F".into(),
            "InvalidParameterValue",
        ),
        (
            "Action=CreateManagedPrefixList&PrefixListName=n&MaxEntries=2".into(),
            "MissingParameter",
        ),
        (
            "Action=CreateManagedPrefixList&PrefixListName=com.amazonaws.x&MaxEntries=2&AddressFamily=IPv4".into(),
            "InvalidParameterValue",
        ),
        (
            format!("{base}&MaxEntries=1&Entry.1.Cidr=10.0.0.0%2F8&Entry.2.Cidr=11.0.0.0%2F8"),
            "InvalidParameterValue",
        ),
        (
            format!("{base}&MaxEntries=2&Entry.1.Cidr=10.0.0.0%2F8&Entry.2.Cidr=10.0.0.0%2F8"),
            "InvalidParameterValue",
        ),
        (
            format!("{base}&MaxEntries=2&Entry.1.Cidr=fd00%3A%3A%2F8"),
            "InvalidParameterValue",
        ),
        (
            format!("{base}&MaxEntries=2&Entry.1.Cidr=banana"),
            "InvalidParameterValue",
        ),
        (
            "Action=CreateManagedPrefixList&PrefixListName=n&MaxEntries=2&AddressFamily=IPv6&Entry.1.Cidr=10.0.0.0%2F8".into(),
            "InvalidParameterValue",
        ),
        (format!("{base}&MaxEntries=2&DryRun=true"), "DryRunOperation"),
    ] {
        assert_eq!(code(&store, &a, &q), want, "{q}");
    }
    let described = call(&store, &a, "Action=DescribeManagedPrefixLists").unwrap();
    assert_eq!(all(&described, "prefixListId").len(), 2, "only AWS's lists");
    // An IPv6 list takes IPv6 CIDRs.
    call(
        &store,
        &a,
        "Action=CreateManagedPrefixList&PrefixListName=v6&MaxEntries=2&AddressFamily=IPv6&Entry.1.Cidr=2001%3Adb8%3A%3A%2F32",
    )
    .unwrap();
}

// spec 13: 100 customer-managed lists per region.
#[test]
fn quota() {
    let store = MemoryStore::new();
    let a = account();
    for _ in 0..100 {
        prefix_list(&store, &a, 1, &[]);
    }
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateManagedPrefixList&PrefixListName=n&MaxEntries=1&AddressFamily=IPv4"
        ),
        "PrefixListLimitExceeded"
    );
}

// Versions: every change of entries makes a new version, old versions stay
// readable, a stale CurrentVersion is refused, a rename keeps the version.
#[test]
fn modify_and_versions() {
    let store = MemoryStore::new();
    let a = account();
    let id = prefix_list(&store, &a, 3, &["10.0.0.0/24", "10.0.1.0/24"]);
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=ModifyManagedPrefixList&PrefixListId={id}&CurrentVersion=1&AddEntry.1.Cidr=10.0.2.0%2F24&AddEntry.1.Description=new&RemoveEntry.1.Cidr=10.0.1.0%2F24"
        ),
    )
    .unwrap();
    assert_eq!(first(&xml, "version"), "2");
    assert_eq!(first(&xml, "state"), "modify-complete");
    assert_eq!(entries(&store, &a, &id, ""), ["10.0.0.0/24", "10.0.2.0/24"]);
    assert_eq!(
        entries(&store, &a, &id, "&TargetVersion=1"),
        ["10.0.0.0/24", "10.0.1.0/24"]
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=GetManagedPrefixListEntries&PrefixListId={id}&TargetVersion=3")
        ),
        "InvalidParameterValue"
    );
    // A stale version.
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=ModifyManagedPrefixList&PrefixListId={id}&CurrentVersion=1&AddEntry.1.Cidr=10.0.3.0%2F24"
            )
        ),
        "PrefixListVersionMismatch"
    );
    // A rename alone keeps the version.
    let renamed = call(
        &store,
        &a,
        &format!("Action=ModifyManagedPrefixList&PrefixListId={id}&PrefixListName=office"),
    )
    .unwrap();
    assert_eq!(first(&renamed, "version"), "2");
    assert_eq!(first(&renamed, "prefixListName"), "office");
    let modify = |q: &str| {
        code(
            &store,
            &a,
            &format!("Action=ModifyManagedPrefixList&PrefixListId={id}&{q}"),
        )
    };
    // More entries than MaxEntries.
    assert_eq!(
        modify("AddEntry.1.Cidr=10.0.3.0%2F24&AddEntry.2.Cidr=10.0.4.0%2F24"),
        "InvalidParameterValue"
    );
    // Removing what is not there; adding and removing one CIDR.
    assert_eq!(
        modify("RemoveEntry.1.Cidr=10.9.0.0%2F24"),
        "InvalidParameterValue"
    );
    assert_eq!(
        modify("AddEntry.1.Cidr=10.0.0.0%2F24&RemoveEntry.1.Cidr=10.0.0.0%2F24"),
        "InvalidParameterCombination"
    );
    // Size and entries in one call; a size below the entries.
    assert_eq!(
        modify("MaxEntries=5&AddEntry.1.Cidr=10.0.3.0%2F24"),
        "InvalidParameterCombination"
    );
    assert_eq!(modify("MaxEntries=1"), "InvalidParameterValue");
    let resized = call(
        &store,
        &a,
        &format!("Action=ModifyManagedPrefixList&PrefixListId={id}&MaxEntries=10"),
    )
    .unwrap();
    assert_eq!(first(&resized, "maxEntries"), "10");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=ModifyManagedPrefixList&PrefixListId=pl-0123456789abcdef0&PrefixListName=x"
        ),
        "InvalidPrefixListID.NotFound"
    );
}

// spec 3.1: a prefix list is a rule source; it weighs its max entries in
// the group's rule quota, and a list in use is not deleted: the call is
// accepted but the list stays, `delete-failed` (AWS deletes asynchronously).
#[test]
fn security_group_rules_name_lists() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let id = prefix_list(&store, &a, 30, &["10.0.0.0/24"]);
    let out = call(&store, &a, &ingress_from_list(&g, &id)).unwrap();
    assert_eq!(first(&out, "prefixListId"), id);
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={g}"),
    )
    .unwrap();
    assert!(described.contains(&format!(
        "<prefixListIds><item><prefixListId>{id}</prefixListId><description>corp</description></item></prefixListIds>"
    )));
    let filtered = call(
        &store,
        &a,
        &format!(
            "Action=DescribeSecurityGroups&Filter.1.Name=ip-permission.prefix-list-id&Filter.1.Value.1={id}"
        ),
    )
    .unwrap();
    assert_eq!(all(&filtered, "groupId"), vec![g.clone()]);
    // Twice is a duplicate.
    assert_eq!(
        code(&store, &a, &ingress_from_list(&g, &id)),
        "InvalidPermission.Duplicate"
    );
    // 30 + 31 > 60: a second list of 31 entries does not fit.
    let big = prefix_list(&store, &a, 31, &[]);
    assert_eq!(
        code(&store, &a, &ingress_from_list(&g, &big)),
        "RulesPerSecurityGroupLimitExceeded"
    );
    // Growing the referenced list past the quota is refused too.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=ModifyManagedPrefixList&PrefixListId={id}&MaxEntries=61")
        ),
        "RulesPerSecurityGroupLimitExceeded"
    );
    // The AWS-managed S3 list weighs 1.
    let (s3, _) = aws_list(&store, &a, "s3");
    call(&store, &a, &ingress_from_list(&g, &s3)).unwrap();
    // Unknown and malformed lists.
    assert_eq!(
        code(&store, &a, &ingress_from_list(&g, "pl-0123456789abcdef0")),
        "InvalidPrefixListID.NotFound"
    );
    assert_eq!(
        code(&store, &a, &ingress_from_list(&g, "xx-1")),
        "InvalidPrefixListId.Malformed"
    );
    // In use: the delete is accepted, fails, and the list stays until the
    // rule goes.
    assert_delete_fails(&store, &a, &id, "security group rule");
    call(
        &store,
        &a,
        &ingress_from_list(&g, &id).replace("Authorize", "Revoke"),
    )
    .unwrap();
    let deleted = call(
        &store,
        &a,
        &format!("Action=DeleteManagedPrefixList&PrefixListId={id}"),
    )
    .unwrap();
    assert_eq!(first(&deleted, "state"), "delete-complete");
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DescribeManagedPrefixLists&PrefixListId.1={id}")
        ),
        "InvalidPrefixListID.NotFound"
    );
}

// spec 2.4: a route's prefix-list destination must exist, and a list that
// routes use is not deleted (the delete fails asynchronously, as above).
#[test]
fn routes_name_lists() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let rtb = main_route_table(&store, &a, &v);
    let igw = first(
        &call(&store, &a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    );
    call(
        &store,
        &a,
        &format!("Action=AttachInternetGateway&InternetGatewayId={igw}&VpcId={v}"),
    )
    .unwrap();
    let route = |pl: &str| {
        format!(
            "Action=CreateRoute&RouteTableId={rtb}&DestinationPrefixListId={pl}&GatewayId={igw}"
        )
    };
    assert_eq!(
        code(&store, &a, &route("pl-0123456789abcdef0")),
        "InvalidPrefixListID.NotFound"
    );
    let id = prefix_list(&store, &a, 2, &["10.8.0.0/16"]);
    call(&store, &a, &route(&id)).unwrap();
    let tables = call(
        &store,
        &a,
        &format!("Action=DescribeRouteTables&RouteTableId.1={rtb}"),
    )
    .unwrap();
    assert!(tables.contains(&format!(
        "<destinationPrefixListId>{id}</destinationPrefixListId>"
    )));
    assert_delete_fails(&store, &a, &id, "route");
    call(
        &store,
        &a,
        &format!("Action=DeleteRoute&RouteTableId={rtb}&DestinationPrefixListId={id}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteManagedPrefixList&PrefixListId={id}"),
    )
    .unwrap();
}

/// DeleteManagedPrefixList on a list that `what` still names: answered
/// `delete-in-progress`, then the list is described `delete-failed` with a
/// message naming the reference.
fn assert_delete_fails(store: &MemoryStore, a: &Account, id: &str, what: &str) {
    let answer = call(
        store,
        a,
        &format!("Action=DeleteManagedPrefixList&PrefixListId={id}"),
    )
    .unwrap();
    assert_eq!(first(&answer, "state"), "delete-in-progress");
    let described = call(
        store,
        a,
        &format!("Action=DescribeManagedPrefixLists&PrefixListId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&described, "state"), "delete-failed");
    assert!(
        first(&described, "stateMessage").contains(what),
        "{described}"
    );
}

// Lists belong to their account.
#[test]
fn accounts_are_isolated() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let id = prefix_list(&store, &a, 2, &[]);
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=GetManagedPrefixListEntries&PrefixListId={id}")
        ),
        "InvalidPrefixListID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=DeleteManagedPrefixList&PrefixListId={id}")
        ),
        "InvalidPrefixListID.NotFound"
    );
}

// spec 12.1 (Idempotency): CreateManagedPrefixList with the ClientToken of an
// earlier call returns that list; the token with other parameters is
// IdempotentParameterMismatch; this action's tokens may be 255 characters
// (botocore's model), not 64.
#[test]
fn create_client_token_idempotency() {
    let store = MemoryStore::new();
    let a = account();
    let req = "Action=CreateManagedPrefixList&PrefixListName=office&MaxEntries=5&AddressFamily=IPv4&Entry.1.Cidr=10.1.0.0%2F16&ClientToken=tok-1";
    let id = first(&call(&store, &a, req).unwrap(), "prefixListId");
    assert_eq!(first(&call(&store, &a, req).unwrap(), "prefixListId"), id);
    let own = call(
        &store,
        &a,
        &format!(
            "Action=DescribeManagedPrefixLists&Filter.1.Name=owner-id&Filter.1.Value.1={}",
            a.id
        ),
    )
    .unwrap();
    assert_eq!(
        all(&own, "prefixListId"),
        std::slice::from_ref(&id),
        "{own}"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateManagedPrefixList&PrefixListName=office&MaxEntries=6&AddressFamily=IPv4&ClientToken=tok-1"
        ),
        "IdempotentParameterMismatch"
    );
    let base = "Action=CreateManagedPrefixList&PrefixListName=long&MaxEntries=5&AddressFamily=IPv4";
    call(
        &store,
        &a,
        &format!("{base}&ClientToken={}", "t".repeat(255)),
    )
    .unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!("{base}&ClientToken={}", "u".repeat(256))
        ),
        "InvalidParameterValue"
    );
}
