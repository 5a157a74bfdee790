//! The security-group actions over the in-memory store, without HTTP: the
//! default group that comes and goes with its VPC, rules, error codes, quotas
//! and account isolation (spec 1.6, 1.7, 3.1, 3.3).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn group(store: &dyn Store, a: &Account, vpc: &str, name: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=CreateSecurityGroup&VpcId={vpc}&GroupName={name}&GroupDescription=d"),
        )
        .unwrap(),
        "groupId",
    )
}

fn ssh_from(group: &str, cidr: &str) -> String {
    format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp={cidr}"
    )
}

// spec 1.6: a default group with a self-referencing ingress rule and all
// egress to 0.0.0.0/0; it goes away with the VPC.
#[test]
fn default_group_comes_and_goes_with_the_vpc() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let xml = call(
        &store,
        &a,
        "Action=DescribeSecurityGroups&Filter.1.Name=group-name&Filter.1.Value.1=default",
    )
    .unwrap();
    let id = first(&xml, "groupId");
    assert_eq!(first(&xml, "vpcId"), v);
    assert_eq!(
        first(&xml, "groupDescription"),
        "default VPC security group"
    );
    let ingress = first(&xml, "ipPermissions");
    assert!(
        ingress.contains(&format!("<groupId>{id}</groupId>")),
        "{xml}"
    );
    assert!(ingress.contains("<ipProtocol>-1</ipProtocol>"));
    let egress = first(&xml, "ipPermissionsEgress");
    assert!(egress.contains("<cidrIp>0.0.0.0/0</cidrIp>"), "{xml}");
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteSecurityGroup&GroupId={id}")
        ),
        "CannotDelete"
    );
    // Its rules can be changed.
    call(&store, &a, &ssh_from(&id, "203.0.113.1%2F32")).unwrap();
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    let xml = call(&store, &a, "Action=DescribeSecurityGroups").unwrap();
    assert!(all(&xml, "groupId").is_empty(), "{xml}");
    assert!(
        // The account's default DHCP options set outlives its VPCs (spec 1.6).
        store
            .range(b"r/", None, usize::MAX)
            .unwrap()
            .iter()
            .all(|kv| kv.key.windows(6).any(|w| w == b"/dopt/")),
        "nothing of the VPC is left"
    );
}

#[test]
fn failed_create_vpc_leaves_no_group() {
    let store = MemoryStore::new();
    let a = account();
    for i in 0..5 {
        call(
            &store,
            &a,
            &format!("Action=CreateVpc&CidrBlock=10.{i}.0.0%2F16"),
        )
        .unwrap();
    }
    let before = store.revision().unwrap();
    assert_eq!(
        code(&store, &a, "Action=CreateVpc&CidrBlock=10.9.0.0%2F16"),
        "VpcLimitExceeded"
    );
    assert_eq!(store.revision().unwrap(), before);
    let xml = call(&store, &a, "Action=DescribeSecurityGroups").unwrap();
    assert_eq!(all(&xml, "groupName"), ["default"; 5]);
}

// spec 1.7: a VPC with a non-default group cannot be deleted.
#[test]
fn vpc_with_groups_cannot_be_deleted() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = group(&store, &a, &v, "web");
    let e = call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap_err();
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        e.message,
        format!("The vpc '{v}' has dependencies and cannot be deleted.")
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteSecurityGroup&GroupId={g}"),
    )
    .unwrap();
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    assert!(
        // The account's default DHCP options set outlives its VPCs (spec 1.6).
        store
            .range(b"r/", None, usize::MAX)
            .unwrap()
            .iter()
            .all(|kv| kv.key.windows(6).any(|w| w == b"/dopt/")),
        "the VPC left no group records behind"
    );
}

// spec 3.1: a new group has no ingress and one egress rule.
#[test]
fn create_and_describe() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=web&GroupDescription=Web+tier&TagSpecification.1.ResourceType=security-group&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=w"),
    )
    .unwrap();
    let id = first(&xml, "groupId");
    assert!(id.starts_with("sg-") && id.len() == 20);
    assert!(xml.contains("<key>Name</key><value>w</value>"));
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "groupName"), "web");
    assert_eq!(first(&xml, "ownerId"), "111111111111");
    assert_eq!(first(&xml, "ipPermissions"), "");
    assert_eq!(
        first(&xml, "ipPermissionsEgress"),
        "<item><ipProtocol>-1</ipProtocol><groups></groups><ipRanges><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges><ipv6Ranges></ipv6Ranges><prefixListIds></prefixListIds></item>"
    );
    let by_tag = call(
        &store,
        &a,
        "Action=DescribeSecurityGroups&Filter.1.Name=tag:Name&Filter.1.Value.1=w",
    )
    .unwrap();
    assert_eq!(all(&by_tag, "groupId"), std::slice::from_ref(&id));
    let by_name = call(&store, &a, "Action=DescribeSecurityGroups&GroupName.1=web").unwrap();
    assert_eq!(all(&by_name, "groupId"), [id]);
}

#[test]
fn create_errors() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    group(&store, &a, &v, "web");
    let long = "x".repeat(256);
    for (body, want) in [
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=default&GroupDescription=d"),
            "InvalidGroup.Reserved",
        ),
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=web&GroupDescription=d"),
            "InvalidGroup.Duplicate",
        ),
        // spec 3.1: trailing spaces are trimmed, so this is the same name.
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=web+&GroupDescription=d"),
            "InvalidGroup.Duplicate",
        ),
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=sg-x&GroupDescription=d"),
            "InvalidParameterValue",
        ),
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName={long}&GroupDescription=d"),
            "InvalidParameterValue",
        ),
        (
            format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=x"),
            "MissingParameter",
        ),
        (
            // spec 1.3: without a VpcId the default VPC is used; there is none.
            "Action=CreateSecurityGroup&GroupName=x&GroupDescription=d".into(),
            "VPCIdNotSpecified",
        ),
        (
            "Action=CreateSecurityGroup&VpcId=vpc-0123456789abcdef0&GroupName=x&GroupDescription=d"
                .into(),
            "InvalidVpcID.NotFound",
        ),
        (
            "Action=CreateSecurityGroup&VpcId=vpc-zz&GroupName=x&GroupDescription=d".into(),
            "InvalidVpcID.Malformed",
        ),
        (
            format!(
                "Action=CreateSecurityGroup&VpcId={v}&GroupName=x&GroupDescription=d&DryRun=true"
            ),
            "DryRunOperation",
        ),
        (
            "Action=DescribeSecurityGroups&GroupId.1=sg-0123456789abcdef0".into(),
            "InvalidGroup.NotFound",
        ),
        (
            "Action=DescribeSecurityGroups&GroupId.1=sg-nope".into(),
            "InvalidGroupId.Malformed",
        ),
        (
            "Action=DescribeSecurityGroups&Filter.1.Name=bogus&Filter.1.Value.1=x".into(),
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeSecurityGroups&MaxResults=4".into(),
            "InvalidParameterValue",
        ),
        (
            "Action=DeleteSecurityGroup&GroupId=sg-0123456789abcdef0".into(),
            "InvalidGroup.NotFound",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    // The same name in another VPC is fine.
    let other = first(
        &call(&store, &a, "Action=CreateVpc&CidrBlock=10.1.0.0%2F16").unwrap(),
        "vpcId",
    );
    group(&store, &a, &other, "web");
}

#[test]
fn authorize_describe_revoke() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let web = group(&store, &a, &v, "web");
    let db = group(&store, &a, &v, "db");
    let xml = call(&store, &a, &ssh_from(&web, "203.0.113.1%2F32")).unwrap();
    assert!(xml.contains("<return>true</return>"));
    let rule = first(&xml, "securityGroupRuleId");
    assert!(rule.starts_with("sgr-"));
    assert!(xml.contains("<isEgress>false</isEgress><ipProtocol>tcp</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><cidrIpv4>203.0.113.1/32</cidrIpv4>"), "{xml}");
    // spec 3.3: a duplicate is refused, whatever its description.
    let e = call(
        &store,
        &a,
        &format!(
            "{}&IpPermissions.1.IpRanges.1.Description=again",
            ssh_from(&web, "203.0.113.1%2F32")
        ),
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidPermission.Duplicate");
    assert!(e.message.contains("already exists"));
    // A group reference, IPv6 and ICMP in one call.
    let xml = call(
        &store,
        &a,
        &format!("Action=AuthorizeSecurityGroupIngress&GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432&IpPermissions.1.UserIdGroupPairs.1.GroupId={web}&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=2001:db8::1%2F64&IpPermissions.2.IpProtocol=icmp&IpPermissions.2.FromPort=8&IpPermissions.2.ToPort=-1&IpPermissions.2.IpRanges.1.CidrIp=10.0.0.0%2F8"),
    )
    .unwrap();
    assert_eq!(all(&xml, "securityGroupRuleId").len(), 3);
    assert!(xml.contains(&format!("<referencedGroupInfo><groupId>{web}</groupId><userId>111111111111</userId></referencedGroupInfo>")));
    // Group rules keep the CIDR as written (only VPC, subnet and ACL blocks
    // are masked, spec 1.1).
    assert!(xml.contains("<cidrIpv6>2001:db8::1/64</cidrIpv6>"), "{xml}");
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={db}"),
    )
    .unwrap();
    assert!(
        xml.contains(&format!(
            "<groups><item><userId>111111111111</userId><groupId>{web}</groupId></item></groups>"
        )),
        "{xml}"
    );
    assert!(xml.contains("<ipProtocol>icmp</ipProtocol><fromPort>8</fromPort><toPort>-1</toPort>"));
    let default = first(
        &call(
            &store,
            &a,
            "Action=DescribeSecurityGroups&GroupName.1=default",
        )
        .unwrap(),
        "groupId",
    );
    for (filter, value, want) in [
        ("ip-permission.from-port", "5432", vec![db.clone()]),
        (
            "ip-permission.protocol",
            "tcp",
            vec![db.clone(), web.clone()],
        ),
        ("ip-permission.cidr", "203.0.113.*", vec![web.clone()]),
        ("ip-permission.to-port", "22", vec![web.clone()]),
        // The default group's egress rule counts too.
        (
            "egress.ip-permission.cidr",
            "0.0.0.0/0",
            vec![db.clone(), web.clone(), default.clone()],
        ),
    ] {
        let xml = call(&store, &a, &format!("Action=DescribeSecurityGroups&Filter.1.Name={filter}&Filter.1.Value.1={value}&Filter.2.Name=vpc-id&Filter.2.Value.1={v}")).unwrap();
        let mut got: Vec<String> = xml
            .split("<item><ownerId>")
            .skip(1)
            .map(|s| first(s, "groupId"))
            .collect();
        let mut want = want;
        want.sort();
        got.sort();
        assert_eq!(got, want, "{filter}={value}");
    }
    // DescribeSecurityGroupRules: by group, by ID.
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1={web}"),
    )
    .unwrap();
    assert_eq!(
        all(&xml, "securityGroupRuleId").len(),
        2,
        "ssh plus the egress rule"
    );
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"),
    )
    .unwrap();
    assert!(xml.contains(&format!("<securityGroupRuleId>{rule}</securityGroupRuleId><groupId>{web}</groupId><groupOwnerId>111111111111</groupOwnerId><isEgress>false</isEgress>")));
    // Revoke by value and by rule ID; a second revoke finds nothing.
    let revoke = ssh_from(&web, "203.0.113.1%2F32").replace("Authorize", "Revoke");
    call(&store, &a, &revoke).unwrap();
    assert_eq!(code(&store, &a, &revoke), "InvalidPermission.NotFound");
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1={db}"),
    )
    .unwrap();
    let icmp_rule = xml
        .split("<item>")
        .find(|s| s.contains("<ipProtocol>icmp</ipProtocol>"))
        .map(|s| first(s, "securityGroupRuleId"))
        .unwrap();
    call(
        &store,
        &a,
        &format!(
            "Action=RevokeSecurityGroupIngress&GroupId={db}&SecurityGroupRuleId.1={icmp_rule}"
        ),
    )
    .unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=RevokeSecurityGroupIngress&GroupId={db}&SecurityGroupRuleId.1={icmp_rule}"
            )
        ),
        "InvalidSecurityGroupRuleId.NotFound"
    );
    // Egress: revoke the default rule, then authorize it back.
    let all_out = format!(
        "Action=RevokeSecurityGroupEgress&GroupId={web}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0"
    );
    call(&store, &a, &all_out).unwrap();
    assert_eq!(code(&store, &a, &all_out), "InvalidPermission.NotFound");
    let xml = call(&store, &a, &all_out.replace("Revoke", "Authorize")).unwrap();
    assert!(xml.contains("<isEgress>true</isEgress>"));
    // The legacy flat form of ingress.
    call(&store, &a, &format!("Action=AuthorizeSecurityGroupIngress&GroupId={web}&IpProtocol=udp&FromPort=53&ToPort=53&CidrIp=10.0.0.0%2F16")).unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=AuthorizeSecurityGroupIngress&GroupId={web}&IpProtocol=udp&FromPort=53&ToPort=53&CidrIp=10.0.0.0%2F16"
            )
        ),
        "InvalidPermission.Duplicate"
    );
}

#[test]
fn rule_errors() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = group(&store, &a, &v, "web");
    let base = format!("Action=AuthorizeSecurityGroupIngress&GroupId={g}");
    let perm = |rest: &str| format!("{base}&IpPermissions.1.IpProtocol={rest}");
    for (body, want) in [
        (
            perm(
                "tcp&IpPermissions.1.FromPort=23&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=0&IpPermissions.1.ToPort=65536&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=-1&IpPermissions.1.ToPort=-1&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            ),
            "InvalidParameterValue",
        ),
        (
            perm("tcp&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32"),
            "InvalidParameterValue",
        ),
        (
            perm(
                "icmp&IpPermissions.1.FromPort=256&IpPermissions.1.ToPort=-1&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcpp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F33",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.IpRanges.1.CidrIp=banana",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=2001:db8::%2F129",
            ),
            "InvalidParameterValue",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.UserIdGroupPairs.1.GroupId=sg-0123456789abcdef0",
            ),
            "InvalidGroup.NotFound",
        ),
        (
            perm(
                "tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.UserIdGroupPairs.1.GroupId=sg-notahexid",
            ),
            "InvalidGroupId.Malformed",
        ),
        (
            perm("tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2"),
            "InvalidPermission.Malformed",
        ),
        (base.clone(), "MissingParameter"),
        (
            ssh_from("sg-0123456789abcdef0", "1.2.3.4%2F32"),
            "InvalidGroup.NotFound",
        ),
        (
            format!("{}&DryRun=true", ssh_from(&g, "1.2.3.4%2F32")),
            "DryRunOperation",
        ),
        (
            format!(
                "Action=RevokeSecurityGroupIngress&GroupId={g}&SecurityGroupRuleId.1=sgr-0123456789abcdef0"
            ),
            "InvalidSecurityGroupRuleId.NotFound",
        ),
    ] {
        assert_eq!(code(&store, &a, &body), want, "{body}");
    }
    // Nothing was added by the failures.
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={g}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "ipPermissions"), "");
}

// spec 3.3: 60 rules per direction per address family.
#[test]
fn sixty_rules_per_direction_and_family() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = group(&store, &a, &v, "web");
    let ranges: String = (0..59)
        .map(|i| format!("&IpPermissions.1.IpRanges.{}.CidrIp=10.0.{i}.0%2F24", i + 1))
        .collect();
    call(&store, &a, &format!("Action=AuthorizeSecurityGroupEgress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80{ranges}")).unwrap();
    // 59 plus the default egress rule: the egress side is full.
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=AuthorizeSecurityGroupEgress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=81&IpPermissions.1.ToPort=81&IpPermissions.1.IpRanges.1.CidrIp=1.1.1.1%2F32"
            )
        ),
        "RulesPerSecurityGroupLimitExceeded"
    );
    // IPv6 is counted apart.
    call(&store, &a, &format!("Action=AuthorizeSecurityGroupEgress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=81&IpPermissions.1.ToPort=81&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=::%2F0")).unwrap();
    // Ingress is counted apart: 60 fit, the 61st does not.
    for i in 0..60 {
        call(&store, &a, &ssh_from(&g, &format!("10.1.{i}.0%2F24"))).unwrap();
    }
    assert_eq!(
        code(&store, &a, &ssh_from(&g, "10.2.0.0%2F24")),
        "RulesPerSecurityGroupLimitExceeded"
    );
}

#[test]
fn referenced_group_cannot_be_deleted() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let web = group(&store, &a, &v, "web");
    let db = group(&store, &a, &v, "db");
    let reference = format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432&IpPermissions.1.UserIdGroupPairs.1.GroupId={web}"
    );
    call(&store, &a, &reference).unwrap();
    let e = call(
        &store,
        &a,
        &format!("Action=DeleteSecurityGroup&GroupId={web}"),
    )
    .unwrap_err();
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(e.message, format!("resource {web} has a dependent object"));
    call(&store, &a, &reference.replace("Authorize", "Revoke")).unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DeleteSecurityGroup&GroupId={web}"),
    )
    .unwrap();
    assert!(xml.contains("<return>true</return>"));
    // A self-reference does not block; deletion by name works.
    let self_ref = format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={db}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.Groups.1.GroupId={db}"
    );
    call(&store, &a, &self_ref).unwrap();
    call(&store, &a, "Action=DeleteSecurityGroup&GroupName=db").unwrap();
    // The name is free again.
    group(&store, &a, &v, "db");
}

#[test]
fn accounts_do_not_see_each_other() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let va = vpc(&store, &a);
    let vb = vpc(&store, &b);
    let ga = group(&store, &a, &va, "web");
    let gb = group(&store, &b, &vb, "web");
    let xml = call(&store, &b, "Action=DescribeSecurityGroups").unwrap();
    assert!(!xml.contains(&ga) && xml.contains(&gb));
    assert!(all(&xml, "ownerId").iter().all(|o| o == "222222222222"));
    for body in [
        format!("Action=DescribeSecurityGroups&GroupId.1={ga}"),
        format!("Action=DeleteSecurityGroup&GroupId={ga}"),
        ssh_from(&ga, "1.2.3.4%2F32"),
        // b cannot reference a's group either.
        format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={gb}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.UserIdGroupPairs.1.GroupId={ga}"
        ),
    ] {
        assert_eq!(code(&store, &b, &body), "InvalidGroup.NotFound", "{body}");
    }
    assert_eq!(
        code(
            &store,
            &b,
            &format!("Action=CreateSecurityGroup&VpcId={va}&GroupName=x&GroupDescription=d")
        ),
        "InvalidVpcID.NotFound"
    );
}

#[test]
fn pagination() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    for i in 0..6 {
        group(&store, &a, &v, &format!("g{i}"));
    }
    let first_page = call(&store, &a, "Action=DescribeSecurityGroups&MaxResults=5").unwrap();
    let mut seen = all(&first_page, "groupName");
    assert_eq!(seen.len(), 5);
    let token = first(&first_page, "nextToken");
    let second = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&MaxResults=5&NextToken={token}"),
    )
    .unwrap();
    assert!(!second.contains("nextToken"));
    seen.extend(all(&second, "groupName"));
    seen.sort();
    assert_eq!(seen, ["default", "g0", "g1", "g2", "g3", "g4", "g5"]);
    assert_eq!(
        code(&store, &a, "Action=DescribeSecurityGroups&NextToken=zzz"),
        "InvalidNextToken"
    );
}

// DescribeSecurityGroupRules lists each group's egress rules before its
// ingress rules (a fresh group's default egress rule comes first), each in
// the order they were authorized, and pages through that order with
// MaxResults and NextToken.
#[test]
fn rules_list_egress_first_and_page_in_order() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = group(&store, &a, &v, "web");
    for i in 1..=6 {
        call(&store, &a, &ssh_from(&g, &format!("203.0.113.{i}%2F32"))).unwrap();
    }
    let by_group =
        format!("Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1={g}");
    let xml = call(&store, &a, &by_group).unwrap();
    let egress = all(&xml, "isEgress");
    assert_eq!(egress.len(), 7);
    assert_eq!(egress[0], "true");
    assert!(egress[1..].iter().all(|e| e == "false"));
    // Ingress rules in the order they were authorized.
    let cidrs = all(&xml, "cidrIpv4");
    let want: Vec<String> = std::iter::once("0.0.0.0/0".to_owned())
        .chain((1..=6).map(|i| format!("203.0.113.{i}/32")))
        .collect();
    assert_eq!(cidrs, want);
    let every = all(&xml, "securityGroupRuleId");

    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let xml = call(&store, &a, &format!("{by_group}&MaxResults=5{token}")).unwrap();
        paged.extend(all(&xml, "securityGroupRuleId"));
        match all(&xml, "nextToken").first() {
            Some(t) => token = format!("&NextToken={t}"),
            None => break,
        }
    }
    assert_eq!(paged, every);
    assert_eq!(
        code(&store, &a, &format!("{by_group}&NextToken=v2.bogus")),
        "InvalidNextToken"
    );
}
