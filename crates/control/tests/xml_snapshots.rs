//! Snapshots (insta) of representative EC2 responses and errors, whole: the
//! shapes botocore parses (spec 12.2) must not drift unnoticed. Random IDs,
//! MAC addresses and times are replaced by placeholders before comparing.
//! Review a change with `cargo insta review`, or accept it with
//! `INSTA_UPDATE=always cargo test -p openvpc-control --test xml_snapshots`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, call, first};
use openvpc_control::store::MemoryStore;

/// The response with its random parts named by kind, numbered in order of
/// appearance so that references between resources stay visible.
fn stable(xml: &str) -> String {
    let ids = regex::Regex::new(r"\b([a-z]+(?:-[a-z]+)*)-([0-9a-f]{17})\b").unwrap();
    let mut seen: Vec<String> = Vec::new();
    let out = ids.replace_all(xml, |c: &regex::Captures| {
        let whole = c[0].to_owned();
        let n = match seen.iter().position(|s| *s == whole) {
            Some(n) => n,
            None => {
                seen.push(whole);
                seen.len() - 1
            }
        };
        format!("{}-<{n}>", &c[1])
    });
    let macs = regex::Regex::new(r"\b02(:[0-9a-f]{2}){5}\b").unwrap();
    macs.replace_all(&out, "02:<mac>").into_owned()
}

#[test]
fn responses_and_errors_keep_their_shape() {
    let store = MemoryStore::new();
    let a = account();
    let create_vpc = call(
        &store,
        &a,
        "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=demo",
    )
    .unwrap();
    let vpc = first(&create_vpc, "vpcId");
    let subnet = call(
        &store,
        &a,
        &format!(
            "Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.1.0%2F24&AvailabilityZone=us-east-1a"
        ),
    )
    .unwrap();
    let group = call(
        &store,
        &a,
        &format!("Action=CreateSecurityGroup&VpcId={vpc}&GroupName=web&GroupDescription=web"),
    )
    .unwrap();
    let group = first(&group, "groupId");
    call(
        &store,
        &a,
        &format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0"
        ),
    )
    .unwrap();
    let groups = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={group}"),
    )
    .unwrap();
    let tables = call(
        &store,
        &a,
        &format!("Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
    )
    .unwrap();
    let acls = call(
        &store,
        &a,
        &format!("Action=DescribeNetworkAcls&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
    )
    .unwrap();
    let not_found = call(
        &store,
        &a,
        "Action=DescribeVpcs&VpcId.1=vpc-0123456789abcdef0",
    )
    .unwrap_err()
    .to_xml("req-test");
    let dry_run = call(
        &store,
        &a,
        "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&DryRun=true",
    )
    .unwrap_err();
    insta::assert_snapshot!("create_vpc", stable(&create_vpc));
    insta::assert_snapshot!("create_subnet", stable(&subnet));
    insta::assert_snapshot!("describe_security_groups", stable(&groups));
    insta::assert_snapshot!("describe_route_tables", stable(&tables));
    insta::assert_snapshot!("describe_network_acls", stable(&acls));
    insta::assert_snapshot!("error_not_found", stable(&not_found));
    assert_eq!(dry_run.status, 412);
    insta::assert_snapshot!("error_dry_run", dry_run.to_xml("req-test"));
}
