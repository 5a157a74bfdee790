//! EC2 behaviours found missing or wrong by running moto's published VPC
//! tests (issue 4), checked over the in-memory store: each test names the
//! spec rule or the EC2 behaviour it pins, and the moto test that found it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, security_group, subnet, vpc};
use openvpc_control::store::MemoryStore;

// Security groups carry their ARN (`securityGroupArn`), in the create
// answer and in DescribeSecurityGroups.
#[test]
fn security_groups_show_their_arn() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let xml = call(
        &store,
        &a,
        &format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=web&GroupDescription=d"),
    )
    .unwrap();
    let id = first(&xml, "groupId");
    let arn = format!("arn:aws:ec2:us-east-1:111111111111:security-group/{id}");
    assert_eq!(first(&xml, "securityGroupArn"), arn);
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "securityGroupArn"), arn);
}

// spec 3.1: a group needs a description; EC2 takes an empty one as missing.
#[test]
fn an_empty_group_description_is_missing() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateSecurityGroup&VpcId={v}&GroupName=web&GroupDescription="),
        ),
        "MissingParameter"
    );
}

// spec 1.6 (default group) and EC2 for every new group: a VPC with IPv6
// gives new groups an egress rule to ::/0 as well as to 0.0.0.0/0.
#[test]
fn groups_in_an_ipv6_vpc_also_allow_all_ipv6_egress() {
    let store = MemoryStore::new();
    let a = account();
    let v4 = vpc(&store, &a);
    let v6 = first(
        &call(
            &store,
            &a,
            "Action=CreateVpc&CidrBlock=10.1.0.0%2F16&AmazonProvidedIpv6CidrBlock=true",
        )
        .unwrap(),
        "vpcId",
    );
    for (v, ipv6) in [(&v4, false), (&v6, true)] {
        let g = security_group(&store, &a, v, "web");
        let xml = call(
            &store,
            &a,
            &format!("Action=DescribeSecurityGroups&Filter.1.Name=vpc-id&Filter.1.Value.1={v}"),
        )
        .unwrap();
        assert!(xml.contains(&g));
        let egress = all(&xml, "ipPermissionsEgress");
        assert_eq!(egress.len(), 2, "the default group and ours");
        for e in egress {
            assert!(e.contains("<cidrIp>0.0.0.0/0</cidrIp>"), "{e}");
            assert_eq!(e.contains("<cidrIpv6>::/0</cidrIpv6>"), ipv6, "{e}");
        }
    }
}

// spec 3.3: a group at its rule quota refuses another rule with
// RulesPerSecurityGroupLimitExceeded, even one it already has.
#[test]
fn the_rule_quota_is_checked_before_duplicates() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let other = security_group(&store, &a, &v, "db");
    let by_group = format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={g}&IpPermissions.1.IpProtocol=-1&IpPermissions.1.Groups.1.GroupId={other}"
    );
    call(&store, &a, &by_group).unwrap();
    let ranges: String = (0..59)
        .map(|i| format!("&IpPermissions.1.IpRanges.{}.CidrIp={i}.0.0.0%2F8", i + 1))
        .collect();
    call(
        &store,
        &a,
        &format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={g}&IpPermissions.1.IpProtocol=-1{ranges}"
        ),
    )
    .unwrap();
    assert_eq!(
        code(&store, &a, &by_group),
        "RulesPerSecurityGroupLimitExceeded"
    );
}

// EC2: a `group-id` filter of DescribeSecurityGroupRules must name
// well-formed group IDs; a well-formed one that names nothing matches none.
#[test]
fn rule_search_by_a_malformed_group_id_fails() {
    let store = MemoryStore::new();
    let a = account();
    let e = call(
        &store,
        &a,
        "Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1=foobar",
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidGroupId.Malformed");
    assert!(
        e.message
            .contains("The security group ID 'foobar' is malformed")
    );
    let xml = call(
        &store,
        &a,
        "Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1=sg-005216b55886f0fdc",
    )
    .unwrap();
    assert!(all(&xml, "securityGroupRuleId").is_empty());
}

// EC2 matches `egress.ip-permission.group-name` only on rules written with
// the group's name; rules keep IDs, so a filter by name matches none.
#[test]
fn egress_group_name_filter_is_known_and_matches_id_rules_not() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let target = security_group(&store, &a, &v, "db");
    call(
        &store,
        &a,
        &format!(
            "Action=AuthorizeSecurityGroupEgress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.Groups.1.GroupId={target}"
        ),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        "Action=DescribeSecurityGroups&Filter.1.Name=egress.ip-permission.group-name&Filter.1.Value.1=db",
    )
    .unwrap();
    assert!(all(&xml, "groupId").is_empty(), "{xml}");
}

// UpdateSecurityGroupRuleDescriptionsIngress: the rules named by their
// permission get the new description; the others keep theirs.
#[test]
fn rule_descriptions_update_by_permission() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let perm = |action: &str, desc: &str| {
        format!(
            "Action={action}&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32&IpPermissions.1.IpRanges.1.Description={desc}"
        )
    };
    call(&store, &a, &perm("AuthorizeSecurityGroupIngress", "first")).unwrap();
    call(
        &store,
        &a,
        &format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.5%2F32&IpPermissions.1.IpRanges.1.Description=other"
        ),
    )
    .unwrap();
    call(
        &store,
        &a,
        &perm("UpdateSecurityGroupRuleDescriptionsIngress", "second"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroups&GroupId.1={g}"),
    )
    .unwrap();
    let descriptions = all(&first(&xml, "ipPermissions"), "description");
    assert_eq!(descriptions, ["second", "other"]);
    assert_eq!(
        code(
            &store,
            &a,
            &perm("UpdateSecurityGroupRuleDescriptionsEgress", "x")
        ),
        "InvalidPermission.NotFound"
    );
}

// ModifySecurityGroupRules: replaces a rule's protocol, ports, target and
// description in place (same rule ID), with EC2's checks.
#[test]
fn modify_security_group_rules_replaces_a_rule() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={g}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=1.2.3.4%2F32"
        ),
    )
    .unwrap();
    let rule = first(&xml, "securityGroupRuleId");
    let modify = |group: &str, rule: &str, fields: &str| {
        format!(
            "Action=ModifySecurityGroupRules&GroupId={group}&SecurityGroupRule.1.SecurityGroupRuleId={rule}{fields}"
        )
    };
    let good = "&SecurityGroupRule.1.SecurityGroupRule.IpProtocol=udp&SecurityGroupRule.1.SecurityGroupRule.FromPort=26000&SecurityGroupRule.1.SecurityGroupRule.ToPort=26500&SecurityGroupRule.1.SecurityGroupRule.CidrIpv4=2.3.4.5%2F32&SecurityGroupRule.1.SecurityGroupRule.Description=mod";
    assert_eq!(
        code(&store, &a, &modify("sg-00000000", &rule, good)),
        "InvalidGroup.NotFound"
    );
    assert_eq!(
        code(&store, &a, &modify(&g, "sgr-00000000", good)),
        "InvalidSecurityGroupRuleId.NotFound"
    );
    let e = call(
        &store,
        &a,
        &modify(
            &g,
            &rule,
            "&SecurityGroupRule.1.SecurityGroupRule.IpProtocol=udp&SecurityGroupRule.1.SecurityGroupRule.ToPort=1&SecurityGroupRule.1.SecurityGroupRule.CidrIpv4=2.3.4.5%2F32",
        ),
    )
    .unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "InvalidParameterValue",
            "Invalid value for portRange. Must specify both from and to ports with TCP/UDP."
        )
    );
    assert_eq!(
        code(
            &store,
            &a,
            &modify(
                &g,
                &rule,
                "&SecurityGroupRule.1.SecurityGroupRule.IpProtocol=udp&SecurityGroupRule.1.SecurityGroupRule.FromPort=1&SecurityGroupRule.1.SecurityGroupRule.ToPort=1",
            )
        ),
        "MissingParameter"
    );
    call(&store, &a, &modify(&g, &rule, good)).unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "ipProtocol"), "udp");
    assert_eq!(first(&xml, "fromPort"), "26000");
    assert_eq!(first(&xml, "cidrIpv4"), "2.3.4.5/32");
    assert_eq!(first(&xml, "description"), "mod");
}

// EC2 still answers DescribeVpcs' filter by its camel-case name `isDefault`.
#[test]
fn vpcs_filter_by_is_default_in_both_spellings() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    for name in ["is-default", "isDefault"] {
        let xml = call(
            &store,
            &a,
            &format!("Action=DescribeVpcs&Filter.1.Name={name}&Filter.1.Value.1=false"),
        )
        .unwrap();
        assert_eq!(all(&xml, "vpcId"), std::slice::from_ref(&v));
    }
}

// ModifyVpcTenancy: dedicated → default only, EC2's code and message
// for anything else.
#[test]
fn vpc_tenancy_moves_to_default_only() {
    let store = MemoryStore::new();
    let a = account();
    let v = first(
        &call(
            &store,
            &a,
            "Action=CreateVpc&CidrBlock=10.0.0.0%2F16&InstanceTenancy=dedicated",
        )
        .unwrap(),
        "vpcId",
    );
    let e = call(
        &store,
        &a,
        &format!("Action=ModifyVpcTenancy&VpcId={v}&InstanceTenancy=unknown"),
    )
    .unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "UnsupportedTenancy",
            "The tenancy value unknown is not supported."
        )
    );
    call(
        &store,
        &a,
        &format!("Action=ModifyVpcTenancy&VpcId={v}&InstanceTenancy=default"),
    )
    .unwrap();
    let xml = call(&store, &a, &format!("Action=DescribeVpcs&VpcId.1={v}")).unwrap();
    assert_eq!(first(&xml, "instanceTenancy"), "default");
}

// EC2 answers a VPC or subnet ID with the right prefix but odd digits as one
// that names nothing (moto's test_vpc_get_by_id, test_subnet_get_by_id,
// test_create_with_unknown_vpc); a wrong prefix stays malformed.
#[test]
fn odd_vpc_and_subnet_ids_name_nothing() {
    let store = MemoryStore::new();
    let a = account();
    assert_eq!(
        code(&store, &a, "Action=DescribeVpcs&VpcId.1=vpc-does_not_exist"),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeSubnets&SubnetId.1=subnet-does_not_exist"
        ),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        code(&store, &a, "Action=DescribeVpcs&VpcId.1=foo-1"),
        "InvalidVpcID.Malformed"
    );
    let e = call(
        &store,
        &a,
        "Action=CreateEgressOnlyInternetGateway&VpcId=vpc-says-what",
    )
    .unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "InvalidVpcID.NotFound",
            "VpcID vpc-says-what does not exist."
        )
    );
}

// spec 1.3: one default VPC per region, refused with EC2's exact message.
#[test]
fn a_second_default_vpc_is_refused_with_ec2s_message() {
    let store = MemoryStore::new();
    let a = account();
    call(&store, &a, "Action=CreateDefaultVpc").unwrap();
    let e = call(&store, &a, "Action=CreateDefaultVpc").unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "DefaultVpcAlreadyExists",
            "A Default VPC already exists for this account in this region."
        )
    );
}

// CreateSubnetCidrReservation / GetSubnetCidrReservations /
// DeleteSubnetCidrReservation: inside the subnet, not overlapping, listed
// by family and filterable by type; explicit ones are never auto-assigned.
#[test]
fn subnet_cidr_reservations_set_addresses_aside() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.0.0/24");
    let reserve = |kind: &str, cidr: &str| {
        call(
            &store,
            &a,
            &format!(
                "Action=CreateSubnetCidrReservation&SubnetId={s}&ReservationType={kind}&Cidr={}",
                cidr.replace('/', "%2F")
            ),
        )
    };
    let e = reserve("prefix", "10.1.0.0/31").unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "InvalidParameterValue",
            "Reservation CIDR should be within subnet CIDR block (10.0.0.0/24)"
        )
    );
    let xml = reserve("explicit", "10.0.0.4/30").unwrap();
    let id = first(&xml, "subnetCidrReservationId");
    assert!(id.starts_with("scr-"));
    assert_eq!(first(&xml, "cidr"), "10.0.0.4/30");
    let e = reserve("prefix", "10.0.0.6/31").unwrap_err();
    assert_eq!(
        e.message,
        "Reservation CIDR 10.0.0.6/31 has overlap with existing reserved CIDR block"
    );
    // The first automatic address skips the explicit reservation.
    let eni = call(
        &store,
        &a,
        &format!("Action=CreateNetworkInterface&SubnetId={s}"),
    )
    .unwrap();
    assert_eq!(first(&eni, "privateIpAddress"), "10.0.0.8");
    let get = |filter: &str| {
        call(
            &store,
            &a,
            &format!("Action=GetSubnetCidrReservations&SubnetId={s}{filter}"),
        )
        .unwrap()
    };
    let xml = get("");
    assert_eq!(
        all(
            &first(&xml, "subnetIpv4CidrReservationSet"),
            "subnetCidrReservationId"
        ),
        std::slice::from_ref(&id)
    );
    assert!(
        xml.contains("<subnetIpv6CidrReservationSet/>")
            || xml.contains("<subnetIpv6CidrReservationSet></subnetIpv6CidrReservationSet>"),
        "{xml}"
    );
    let xml = get("&Filter.1.Name=reservationType&Filter.1.Value.1=prefix");
    assert!(all(&xml, "subnetCidrReservationId").is_empty());
    let e = call(
        &store,
        &a,
        "Action=DeleteSubnetCidrReservation&SubnetCidrReservationId=scr-not-exists",
    )
    .unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "InvalidSubnetCidrReservationID.NotFound",
            "The subnet-cidr-reservation ID 'scr-not-exists' does not exist"
        )
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteSubnetCidrReservation&SubnetCidrReservationId={id}"),
    )
    .unwrap();
    assert!(all(&get(""), "subnetCidrReservationId").is_empty());
}

// ModifySubnetAttribute sets the resource-name DNS record options shown in
// privateDnsNameOptionsOnLaunch.
#[test]
fn subnet_resource_name_dns_records_can_be_enabled() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.0.0/24");
    call(
        &store,
        &a,
        &format!(
            "Action=ModifySubnetAttribute&SubnetId={s}&EnableResourceNameDnsARecordOnLaunch.Value=true"
        ),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSubnets&SubnetId.1={s}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "enableResourceNameDnsARecord"), "true");
    assert_eq!(first(&xml, "enableResourceNameDnsAAAARecord"), "false");
}

// CreateSubnet names its CIDR parameter `cidrBlock` in the error, as EC2.
#[test]
fn an_invalid_subnet_cidr_names_cidr_block() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let e = call(
        &store,
        &a,
        &format!("Action=CreateSubnet&VpcId={v}&CidrBlock=1000.1.0.0%2F20"),
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Value (1000.1.0.0/20) for parameter cidrBlock is invalid. This is not a valid CIDR block."
    );
}

// spec 1.3: a second default subnet in a zone is refused, naming the one
// that is already there.
#[test]
fn a_second_default_subnet_names_the_first() {
    let store = MemoryStore::new();
    let a = account();
    call(&store, &a, "Action=CreateDefaultVpc").unwrap();
    let xml = call(
        &store,
        &a,
        "Action=DescribeSubnets&Filter.1.Name=availability-zone&Filter.1.Value.1=us-east-1a",
    )
    .unwrap();
    let existing = first(&xml, "subnetId");
    let e = call(
        &store,
        &a,
        "Action=CreateDefaultSubnet&AvailabilityZone=us-east-1a",
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        format!("'{existing}' is already the default subnet in us-east-1a.")
    );
}

// EC2 makes the first of several listed private addresses the primary when
// none is marked (moto's test_available_ip_addresses_in_subnet_with_enis).
#[test]
fn the_first_listed_private_address_is_the_primary() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let s = subnet(&store, &a, &v, "10.0.0.0/24");
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateNetworkInterface&SubnetId={s}&PrivateIpAddresses.1.PrivateIpAddress=10.0.0.4&PrivateIpAddresses.2.PrivateIpAddress=10.0.0.5"
        ),
    )
    .unwrap();
    assert_eq!(first(&xml, "privateIpAddress"), "10.0.0.4");
    let mut ips = all(&xml, "privateIpAddress");
    ips.sort();
    ips.dedup();
    assert_eq!(ips, ["10.0.0.4", "10.0.0.5"]);
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSubnets&SubnetId.1={s}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "availableIpAddressCount"), "249");
}

// DescribeAddressesAttribute (domain-name): each address with its IP and
// allocation ID; no reverse-DNS record is ever set here.
#[test]
fn addresses_attribute_lists_the_addresses() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(&store, &a, "Action=AllocateAddress&Domain=vpc").unwrap();
    let id = first(&xml, "allocationId");
    let ip = first(&xml, "publicIp");
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeAddressesAttribute&AllocationId.1={id}&Attribute=domain-name"),
    )
    .unwrap();
    assert_eq!(all(&xml, "allocationId"), [id]);
    assert_eq!(all(&xml, "publicIp"), [ip]);
    assert!(!xml.contains("ptrRecord"));
}

// EC2: an IPv6-only subnet needs an IPv6 block (checked first) and takes no
// IPv4 one (moto's AWS-verified test_create_ipv6native_subnet_* tests).
#[test]
fn ipv6_native_subnets_need_ipv6_and_refuse_ipv4() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    for extra in ["", "&CidrBlock=10.0.0.0%2F24"] {
        let e = call(
            &store,
            &a,
            &format!("Action=CreateSubnet&VpcId={v}&Ipv6Native=true{extra}"),
        )
        .unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.message.as_str()),
            (
                "MissingParameter",
                "Either 'ipv6CidrBlock' or 'ipv6IpamPoolId' should be provided."
            )
        );
    }
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=CreateSubnet&VpcId={v}&Ipv6Native=true&CidrBlock=10.0.0.0%2F24&Ipv6CidrBlock=2001%3Adb8%3A%3A%2F64"
            )
        ),
        "InvalidParameterCombination"
    );
    let xml = call(&store, &a, "Action=DescribeSubnets").unwrap();
    assert!(all(&xml, "subnetId").is_empty(), "nothing was made");
}

// EC2 tags security-group rules (resource type `security-group-rule`): the
// tags show in DescribeSecurityGroupRules and DescribeTags, and go again.
#[test]
fn security_group_rules_take_tags() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let g = security_group(&store, &a, &v, "web");
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&Filter.1.Name=group-id&Filter.1.Value.1={g}"),
    )
    .unwrap();
    let rule = first(&xml, "securityGroupRuleId");
    call(
        &store,
        &a,
        &format!("Action=CreateTags&ResourceId.1={rule}&Tag.1.Key=team&Tag.1.Value=blue"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "key"), "team");
    assert_eq!(first(&xml, "value"), "blue");
    let xml = call(
        &store,
        &a,
        "Action=DescribeTags&Filter.1.Name=resource-type&Filter.1.Value.1=security-group-rule",
    )
    .unwrap();
    assert_eq!(all(&xml, "resourceId"), std::slice::from_ref(&rule));
    call(
        &store,
        &a,
        &format!("Action=DeleteTags&ResourceId.1={rule}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeSecurityGroupRules&SecurityGroupRuleId.1={rule}"),
    )
    .unwrap();
    assert!(all(&xml, "key").is_empty(), "{xml}");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateTags&ResourceId.1=sgr-0123456789abcdef0&Tag.1.Key=k&Tag.1.Value=v"
        ),
        "InvalidSecurityGroupRuleId.NotFound"
    );
}

// AllocateAddress with `Address` recovers that address if it is free in the
// region's pool, and names no address otherwise (EC2 allows recovery or a
// pool of one's own only; it never hands out an arbitrary address).
#[test]
fn a_specific_address_is_allocated_only_from_the_pool() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=AllocateAddress&Domain=vpc&Address=198.51.100.77",
    )
    .unwrap();
    assert_eq!(first(&xml, "publicIp"), "198.51.100.77");
    for taken_or_foreign in ["198.51.100.77", "127.38.43.222", "198.51.100.0"] {
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action=AllocateAddress&Domain=vpc&Address={taken_or_foreign}")
            ),
            "InvalidAddress.NotFound",
            "{taken_or_foreign}"
        );
    }
}
