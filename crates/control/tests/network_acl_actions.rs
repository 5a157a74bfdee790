//! The network ACL actions over the in-memory store: each VPC's default ACL,
//! custom ACLs, entries (numbers, protocols, ports, CIDRs, quotas),
//! subnet associations, and what ACLs do to subnet and VPC deletion.

#![allow(clippy::unwrap_used)]

mod common;

use common::{all, call, code, first};

use openvpc_control::ApiError;
use openvpc_control::account::Account;
use openvpc_control::actions::Ctx;
use openvpc_control::actions::network_acl::{self, EntryCidr};
use openvpc_control::actions::resource::transact;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::rule::RuleAction;

const REGION: &str = "us-east-1";

fn ctx<'a>(store: &'a dyn Store, account: &'a Account) -> Ctx<'a> {
    Ctx {
        store,
        account,
        region: REGION,
        request_id: "req-test",
        fleet: None,
    }
}

fn err(store: &dyn Store, account: &Account, body: &str) -> ApiError {
    match call(store, account, body) {
        Ok(xml) => panic!("{body} succeeded: {xml}"),
        Err(e) => e,
    }
}

/// The entries of the first ACL in `xml`, each as
/// "number egress protocol action cidr".
fn entries(xml: &str) -> Vec<String> {
    let set = first(xml, "entrySet");
    all(&set, "item")
        .iter()
        .map(|e| {
            let cidr = match first(e, "cidrBlock") {
                c if c.is_empty() => first(e, "ipv6CidrBlock"),
                c => c,
            };
            format!(
                "{} {} {} {} {}",
                first(e, "ruleNumber"),
                first(e, "egress"),
                first(e, "protocol"),
                first(e, "ruleAction"),
                cidr
            )
        })
        .collect()
}

struct World {
    store: MemoryStore,
    a: Account,
    vpc: String,
}

impl World {
    fn new() -> Self {
        let store = MemoryStore::new();
        let a = Account::generate("a", Some("111111111111"));
        let xml = call(&store, &a, "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap();
        let vpc = first(&xml, "vpcId");
        World { store, a, vpc }
    }

    fn ok(&self, body: &str) -> String {
        call(&self.store, &self.a, body).unwrap_or_else(|e| panic!("{body}: {e:?}"))
    }

    fn code(&self, body: &str) -> String {
        code(&self.store, &self.a, body)
    }

    fn describe(&self, query: &str) -> String {
        self.ok(&format!("Action=DescribeNetworkAcls{query}"))
    }

    fn default_acl(&self) -> String {
        let xml = self.describe(&format!(
            "&Filter.1.Name=vpc-id&Filter.1.Value.1={}&Filter.2.Name=default&Filter.2.Value.1=true",
            self.vpc
        ));
        assert_eq!(all(&xml, "networkAclId").len(), 1, "{xml}");
        first(&xml, "networkAclId")
    }

    fn custom_acl(&self) -> String {
        let xml = self.ok(&format!("Action=CreateNetworkAcl&VpcId={}", self.vpc));
        first(&xml, "networkAclId")
    }

    fn subnet(&self, cidr: &str) -> String {
        let xml = self.ok(&format!(
            "Action=CreateSubnet&VpcId={}&CidrBlock={}",
            self.vpc,
            cidr.replace('/', "%2F")
        ));
        first(&xml, "subnetId")
    }

    fn entry(&self, acl: &str, rest: &str) -> Result<String, ApiError> {
        call(
            &self.store,
            &self.a,
            &format!("Action=CreateNetworkAclEntry&NetworkAclId={acl}{rest}"),
        )
    }

    fn show(&self, acl: &str) -> String {
        self.describe(&format!("&NetworkAclId.1={acl}"))
    }

    /// The association ID of a subnet, found with the subnet filter.
    fn association_of(&self, subnet: &str) -> (String, String) {
        let xml = self.describe(&format!(
            "&Filter.1.Name=association.subnet-id&Filter.1.Value.1={subnet}"
        ));
        assert!(!all(&xml, "networkAclId").is_empty(), "{xml}");
        let acl = first(&xml, "networkAclId");
        let assoc = all(&first(&xml, "associationSet"), "item")
            .into_iter()
            .find(|i| first(i, "subnetId") == subnet)
            .map(|i| first(&i, "networkAclAssociationId"))
            .unwrap();
        (acl, assoc)
    }
}

const ALLOW_ALL_IN: &str = "&Protocol=-1&RuleAction=allow&Egress=false&CidrBlock=0.0.0.0%2F0";

// spec 1.6, 4.2 (and 1.7's acceptance test): a new VPC has one default ACL
// with rule 100 allow and the `*` deny (32767) in each direction.
#[test]
fn every_vpc_gets_a_default_acl() {
    let w = World::new();
    let xml = w.describe(&format!("&Filter.1.Name=vpc-id&Filter.1.Value.1={}", w.vpc));
    assert_eq!(all(&xml, "networkAclId").len(), 1, "{xml}");
    let id = first(&xml, "networkAclId");
    assert!(
        id.starts_with("acl-") && id.len() == 21,
        "spec 12.4 ID format: {id}"
    );
    assert_eq!(first(&xml, "default"), "true");
    assert_eq!(first(&xml, "ownerId"), "111111111111");
    assert_eq!(
        entries(&xml),
        [
            "100 true -1 allow 0.0.0.0/0",
            "32767 true -1 deny 0.0.0.0/0",
            "100 false -1 allow 0.0.0.0/0",
            "32767 false -1 deny 0.0.0.0/0",
        ]
    );
    assert!(xml.contains("<associationSet/>") || first(&xml, "associationSet").is_empty());
}

// spec 4.2: a custom ACL has only the `*` rules and no association; it
// carries its TagSpecification tags.
#[test]
fn custom_acl_denies_everything_and_starts_unassociated() {
    let w = World::new();
    let xml = w.ok(&format!(
        "Action=CreateNetworkAcl&VpcId={}&TagSpecification.1.ResourceType=network-acl&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web",
        w.vpc
    ));
    assert_eq!(first(&xml, "default"), "false");
    assert_eq!(first(&xml, "vpcId"), w.vpc);
    assert_eq!(
        entries(&xml),
        [
            "32767 true -1 deny 0.0.0.0/0",
            "32767 false -1 deny 0.0.0.0/0"
        ]
    );
    assert_eq!(first(&xml, "key"), "Name");
    assert_eq!(first(&xml, "value"), "web");
    let id = first(&xml, "networkAclId");
    let shown = w.show(&id);
    assert_eq!(first(&shown, "associationSet"), "");
    assert_eq!(first(&shown, "value"), "web");

    // spec 12.1: tags for another resource type are refused.
    assert_eq!(
        w.code(&format!(
            "Action=CreateNetworkAcl&VpcId={}&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=a",
            w.vpc
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code("Action=CreateNetworkAcl&VpcId=vpc-00000000000000000"),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        w.code("Action=CreateNetworkAcl&VpcId=bogus"),
        "InvalidVpcID.Malformed"
    );
    assert_eq!(w.code("Action=CreateNetworkAcl"), "MissingParameter");
    // spec 12.1: DryRun creates nothing.
    let before = all(&w.describe(""), "networkAclId").len();
    assert_eq!(
        w.code(&format!(
            "Action=CreateNetworkAcl&VpcId={}&DryRun=true",
            w.vpc
        )),
        "DryRunOperation"
    );
    assert_eq!(all(&w.describe(""), "networkAclId").len(), before);
}

// spec 4.4, 13: 200 ACLs per VPC, the default included.
#[test]
fn acls_per_vpc_quota() {
    let w = World::new();
    for _ in 1..network_acl::ACLS_PER_VPC {
        w.custom_acl();
    }
    assert_eq!(
        w.code(&format!("Action=CreateNetworkAcl&VpcId={}", w.vpc)),
        "NetworkAclLimitExceeded"
    );
}

// spec 4.1 acceptance: rule numbers 0 and 32767 are rejected; 1 and 32766 accepted.
#[test]
fn rule_numbers_are_1_to_32766() {
    let w = World::new();
    let acl = w.custom_acl();
    for bad in ["0", "32767", "32768", "-1", "abc", "99999999999"] {
        let e = w.entry(&acl, &format!("&RuleNumber={bad}{ALLOW_ALL_IN}"));
        assert_eq!(e.unwrap_err().code, "InvalidParameterValue", "{bad}");
    }
    for good in ["1", "32766"] {
        w.entry(&acl, &format!("&RuleNumber={good}{ALLOW_ALL_IN}"))
            .unwrap();
    }
    assert_eq!(
        entries(&w.show(&acl)),
        [
            "32767 true -1 deny 0.0.0.0/0",
            "1 false -1 allow 0.0.0.0/0",
            "32766 false -1 allow 0.0.0.0/0",
            "32767 false -1 deny 0.0.0.0/0",
        ]
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateNetworkAclEntry&NetworkAclId={acl}{ALLOW_ALL_IN}"
        )),
        "MissingParameter"
    );
}

// spec 4.1, 4.4: a number is used once per direction; the same number in the
// other direction is a different rule.
#[test]
fn duplicate_rule_numbers() {
    let w = World::new();
    let acl = w.default_acl();
    let e = w
        .entry(&acl, &format!("&RuleNumber=100{ALLOW_ALL_IN}"))
        .unwrap_err();
    assert_eq!(e.code, "NetworkAclEntryAlreadyExists");
    assert_eq!(
        e.message,
        "The network acl entry identified by 100 already exists."
    );
    w.entry(
        &acl,
        "&RuleNumber=200&Protocol=-1&RuleAction=deny&Egress=true&CidrBlock=10.0.0.0%2F8",
    )
    .unwrap();
    w.entry(&acl, &format!("&RuleNumber=200{ALLOW_ALL_IN}"))
        .unwrap();
}

// spec 4.4 acceptance: 19 custom IPv4 inbound rules plus `*` are accepted; the
// next is NetworkAclEntryLimitExceeded. Directions and families count apart.
#[test]
fn rules_per_direction_quota() {
    let w = World::new();
    let acl = w.custom_acl();
    for n in 1..network_acl::RULES_PER_DIRECTION {
        w.entry(&acl, &format!("&RuleNumber={n}{ALLOW_ALL_IN}"))
            .unwrap();
    }
    let e = w
        .entry(&acl, &format!("&RuleNumber=500{ALLOW_ALL_IN}"))
        .unwrap_err();
    assert_eq!(e.code, "NetworkAclEntryLimitExceeded");
    // Outbound and IPv6 inbound still have room.
    w.entry(
        &acl,
        "&RuleNumber=500&Protocol=-1&RuleAction=allow&Egress=true&CidrBlock=0.0.0.0%2F0",
    )
    .unwrap();
    w.entry(
        &acl,
        "&RuleNumber=500&Protocol=-1&RuleAction=allow&Egress=false&Ipv6CidrBlock=%3A%3A%2F0",
    )
    .unwrap();
    // Replacing an IPv6 rule with an IPv4 one would exceed IPv4's quota.
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceNetworkAclEntry&NetworkAclId={acl}&RuleNumber=500{ALLOW_ALL_IN}"
        )),
        "NetworkAclEntryLimitExceeded"
    );
    // The default ACL's rule 100 counts as one of its 19.
    let default = w.default_acl();
    for n in 1..network_acl::RULES_PER_DIRECTION - 1 {
        w.entry(&default, &format!("&RuleNumber={n}{ALLOW_ALL_IN}"))
            .unwrap();
    }
    assert_eq!(
        w.entry(&default, &format!("&RuleNumber=300{ALLOW_ALL_IN}"))
            .unwrap_err()
            .code,
        "NetworkAclEntryLimitExceeded"
    );
}

// spec 4.1: protocol numbers or -1, ports for TCP/UDP, ICMP type and code;
// other protocols (and -1) match all ports whatever was sent.
#[test]
fn protocols_ports_and_icmp() {
    let w = World::new();
    let acl = w.custom_acl();
    let base = "&RuleAction=allow&Egress=false&CidrBlock=0.0.0.0%2F0";
    w.entry(
        &acl,
        &format!("&RuleNumber=10&Protocol=6&PortRange.From=22&PortRange.To=22{base}"),
    )
    .unwrap();
    w.entry(
        &acl,
        &format!("&RuleNumber=20&Protocol=17&PortRange.From=1024&PortRange.To=65535{base}"),
    )
    .unwrap();
    w.entry(
        &acl,
        &format!("&RuleNumber=30&Protocol=1&Icmp.Type=3&Icmp.Code=4{base}"),
    )
    .unwrap();
    w.entry(
        &acl,
        &format!("&RuleNumber=40&Protocol=-1&PortRange.From=22&PortRange.To=22{base}"),
    )
    .unwrap();
    w.entry(
        &acl,
        &format!("&RuleNumber=50&Protocol=47&PortRange.From=1&PortRange.To=2{base}"),
    )
    .unwrap();
    let xml = w.show(&acl);
    let items = all(&first(&xml, "entrySet"), "item");
    let rule = |n: &str| items.iter().find(|i| first(i, "ruleNumber") == n).unwrap();
    assert_eq!(first(rule("10"), "protocol"), "6");
    assert_eq!(first(rule("10"), "portRange"), "<from>22</from><to>22</to>");
    assert_eq!(first(rule("20"), "from"), "1024");
    assert_eq!(first(rule("20"), "to"), "65535");
    assert_eq!(
        first(rule("30"), "icmpTypeCode"),
        "<code>4</code><type>3</type>"
    );
    assert!(!rule("40").contains("portRange"));
    assert_eq!(first(rule("50"), "protocol"), "47");
    assert!(!rule("50").contains("portRange"));

    for (bad, why) in [
        (
            "&Protocol=tcp&PortRange.From=1&PortRange.To=2",
            "names are the CLI's, not the API's",
        ),
        ("&Protocol=256", "not a protocol number"),
        ("&Protocol=6", "tcp needs a port range"),
        ("&Protocol=17&PortRange.From=10", "both ends"),
        ("&Protocol=6&PortRange.From=90&PortRange.To=80", "from > to"),
        (
            "&Protocol=6&PortRange.From=0&PortRange.To=65536",
            "beyond 65535",
        ),
        (
            "&Protocol=1&Icmp.Type=-1&Icmp.Code=4",
            "a code needs a type",
        ),
        ("&Protocol=1&Icmp.Type=300", "type beyond 255"),
    ] {
        let e = w
            .entry(&acl, &format!("&RuleNumber=60{bad}{base}"))
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue", "{why}");
    }
}

// spec 4.1: one CIDR per rule, either family, canonicalised; allow or deny;
// the direction is required.
#[test]
fn cidrs_actions_and_direction() {
    let w = World::new();
    let acl = w.custom_acl();
    w.entry(
        &acl,
        "&RuleNumber=1&Protocol=-1&RuleAction=ALLOW&Egress=true&CidrBlock=10.0.0.18%2F16",
    )
    .unwrap();
    w.entry(
        &acl,
        "&RuleNumber=2&Protocol=-1&RuleAction=deny&Egress=true&Ipv6CidrBlock=2001%3Adb8%3A%3A1%2F64",
    )
    .unwrap();
    let shown = entries(&w.show(&acl));
    assert!(
        shown.contains(&"1 true -1 allow 10.0.0.0/16".to_owned()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"2 true -1 deny 2001:db8::/64".to_owned()),
        "{shown:?}"
    );
    for (bad, want) in [
        (
            "&RuleAction=allow&Egress=true&CidrBlock=10.0.0.0%2F33",
            "InvalidParameterValue",
        ),
        (
            "&RuleAction=allow&Egress=true&Ipv6CidrBlock=asdf",
            "InvalidParameterValue",
        ),
        (
            "&RuleAction=allow&Egress=true&CidrBlock=0.0.0.0%2F0&Ipv6CidrBlock=%3A%3A%2F0",
            "InvalidParameterCombination",
        ),
        ("&RuleAction=allow&Egress=true", "MissingParameter"),
        (
            "&RuleAction=maybe&Egress=true&CidrBlock=0.0.0.0%2F0",
            "InvalidParameterValue",
        ),
        ("&Egress=true&CidrBlock=0.0.0.0%2F0", "MissingParameter"),
        (
            "&RuleAction=allow&CidrBlock=0.0.0.0%2F0",
            "MissingParameter",
        ),
        (
            "&RuleAction=allow&Egress=yes&CidrBlock=0.0.0.0%2F0",
            "InvalidParameterValue",
        ),
    ] {
        let e = w
            .entry(&acl, &format!("&RuleNumber=3&Protocol=-1{bad}"))
            .unwrap_err();
        assert_eq!(e.code, want, "{bad}");
    }
    assert_eq!(
        w.entry(
            "acl-00000000000000000",
            &format!("&RuleNumber=3{ALLOW_ALL_IN}")
        )
        .unwrap_err()
        .code,
        "InvalidNetworkAclID.NotFound"
    );
    assert_eq!(
        w.entry("acl-x1", &format!("&RuleNumber=3{ALLOW_ALL_IN}"))
            .unwrap_err()
            .code,
        "InvalidNetworkAclID.Malformed"
    );
}

// spec 4.1: ReplaceNetworkAclEntry changes a rule in place (it cannot
// renumber); DeleteNetworkAclEntry removes it; the `*` rules stay.
#[test]
fn replace_and_delete_entries() {
    let w = World::new();
    let acl = w.default_acl();
    w.ok(&format!(
        "Action=ReplaceNetworkAclEntry&NetworkAclId={acl}&RuleNumber=100&Protocol=6&PortRange.From=443&PortRange.To=443&RuleAction=deny&Egress=false&CidrBlock=192.168.0.0%2F16"
    ));
    let shown = entries(&w.show(&acl));
    assert!(
        shown.contains(&"100 false 6 deny 192.168.0.0/16".to_owned()),
        "{shown:?}"
    );
    assert!(
        shown.contains(&"100 true -1 allow 0.0.0.0/0".to_owned()),
        "{shown:?}"
    );
    let e = err(
        &w.store,
        &w.a,
        &format!("Action=ReplaceNetworkAclEntry&NetworkAclId={acl}&RuleNumber=7{ALLOW_ALL_IN}"),
    );
    assert_eq!(e.code, "InvalidNetworkAclEntry.NotFound");

    w.ok(&format!(
        "Action=DeleteNetworkAclEntry&NetworkAclId={acl}&RuleNumber=100&Egress=false"
    ));
    assert_eq!(
        entries(&w.show(&acl)),
        [
            "100 true -1 allow 0.0.0.0/0",
            "32767 true -1 deny 0.0.0.0/0",
            "32767 false -1 deny 0.0.0.0/0",
        ]
    );
    assert_eq!(
        w.code(&format!(
            "Action=DeleteNetworkAclEntry&NetworkAclId={acl}&RuleNumber=100&Egress=false"
        )),
        "InvalidNetworkAclEntry.NotFound"
    );
    // spec 4.1: the `*` rule cannot be removed.
    assert_eq!(
        w.code(&format!(
            "Action=DeleteNetworkAclEntry&NetworkAclId={acl}&RuleNumber=32767&Egress=true"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&format!(
            "Action=DeleteNetworkAclEntry&NetworkAclId={acl}&RuleNumber=100"
        )),
        "MissingParameter"
    );
}

// spec 4.2: every subnet is associated with exactly one ACL, the default
// unless moved; ReplaceNetworkAclAssociation moves it under a new aclassoc-.
#[test]
fn subnet_associations() {
    let w = World::new();
    let default = w.default_acl();
    let s1 = w.subnet("10.0.1.0/24");
    let s2 = w.subnet("10.0.2.0/24");
    let (acl, assoc) = w.association_of(&s1);
    assert_eq!(acl, default);
    assert!(
        assoc.starts_with("aclassoc-") && assoc.len() == 26,
        "spec 12.4: {assoc}"
    );
    let xml = w.show(&default);
    assert_eq!(all(&first(&xml, "associationSet"), "item").len(), 2);
    assert_eq!(
        all(&xml, "networkAclId")
            .iter()
            .filter(|i| **i == default)
            .count(),
        3,
        "each association names its ACL: {xml}"
    );

    let custom = w.custom_acl();
    let xml = w.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={custom}"
    ));
    let moved = first(&xml, "newAssociationId");
    assert!(moved.starts_with("aclassoc-") && moved != assoc);
    assert_eq!(w.association_of(&s1), (custom.clone(), moved.clone()));
    assert_eq!(w.association_of(&s2).0, default);
    // Exactly one ACL answers for the subnet.
    let xml = w.describe(&format!(
        "&Filter.1.Name=association.subnet-id&Filter.1.Value.1={s1}"
    ));
    assert_eq!(all(&xml, "default"), ["false"]);
    // The old association ID is gone.
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={default}"
        )),
        "InvalidAssociationID.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceNetworkAclAssociation&AssociationId=rtbassoc-1&NetworkAclId={default}"
        )),
        "InvalidAssociationID.Malformed"
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceNetworkAclAssociation&AssociationId={moved}&NetworkAclId=acl-00000000000000000"
        )),
        "InvalidNetworkAclID.NotFound"
    );
    // Replacing with the same ACL still hands out a new ID.
    let again = first(
        &w.ok(&format!(
            "Action=ReplaceNetworkAclAssociation&AssociationId={moved}&NetworkAclId={custom}"
        )),
        "newAssociationId",
    );
    assert_ne!(again, moved);
    assert_eq!(w.association_of(&s1), (custom.clone(), again.clone()));

    // An ACL of another VPC cannot take the subnet.
    let other_vpc = first(&w.ok("Action=CreateVpc&CidrBlock=10.1.0.0%2F16"), "vpcId");
    let foreign = first(
        &w.ok(&format!("Action=CreateNetworkAcl&VpcId={other_vpc}")),
        "networkAclId",
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceNetworkAclAssociation&AssociationId={again}&NetworkAclId={foreign}"
        )),
        "InvalidParameterValue"
    );

    // The later compiler's view: the subnet's ACL, rules in evaluation order.
    let c = ctx(&w.store, &w.a);
    let found = transact(&c, |tx| network_acl::acl_for_subnet(tx, &s1))
        .unwrap()
        .unwrap();
    assert_eq!(found.id, custom);

    // DeleteSubnet removes its association.
    w.ok(&format!("Action=DeleteSubnet&SubnetId={s1}"));
    let xml = w.describe(&format!(
        "&Filter.1.Name=association.subnet-id&Filter.1.Value.1={s1}"
    ));
    assert!(all(&xml, "networkAclId").is_empty(), "{xml}");
    assert!(
        transact(&c, |tx| network_acl::acl_for_subnet(tx, &s1))
            .unwrap()
            .is_none()
    );
}

// spec 4.2 acceptance: the default ACL cannot be deleted; an associated ACL
// cannot either (DependencyViolation); an unassociated custom ACL can.
#[test]
fn deleting_acls() {
    let w = World::new();
    let default = w.default_acl();
    assert_eq!(
        w.code(&format!("Action=DeleteNetworkAcl&NetworkAclId={default}")),
        "InvalidParameterValue"
    );
    let s = w.subnet("10.0.1.0/24");
    let (_, assoc) = w.association_of(&s);
    let custom = w.custom_acl();
    w.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={custom}"
    ));
    let e = err(
        &w.store,
        &w.a,
        &format!("Action=DeleteNetworkAcl&NetworkAclId={custom}"),
    );
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        e.message,
        format!("The network ACL '{custom}' has dependencies and cannot be deleted.")
    );
    let (_, assoc) = w.association_of(&s);
    w.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={default}"
    ));
    w.ok(&format!("Action=DeleteNetworkAcl&NetworkAclId={custom}"));
    assert_eq!(
        w.code(&format!("Action=DeleteNetworkAcl&NetworkAclId={custom}")),
        "InvalidNetworkAclID.NotFound"
    );
    assert_eq!(
        w.code("Action=DeleteNetworkAcl&NetworkAclId=sg-00000000000000000"),
        "InvalidNetworkAclID.Malformed"
    );
    assert_eq!(
        w.code(&format!(
            "Action=DescribeNetworkAcls&NetworkAclId.1={custom}"
        )),
        "InvalidNetworkAclID.NotFound"
    );
}

// spec 1.7: custom ACLs keep the VPC; the default ACL goes with it.
#[test]
fn vpc_deletion_and_acls() {
    let w = World::new();
    let default = w.default_acl();
    let custom = w.custom_acl();
    let e = err(&w.store, &w.a, &format!("Action=DeleteVpc&VpcId={}", w.vpc));
    assert_eq!(e.code, "DependencyViolation");
    assert_eq!(
        e.message,
        format!(
            "The vpc '{}' has dependencies and cannot be deleted.",
            w.vpc
        )
    );
    w.ok(&format!("Action=DeleteNetworkAcl&NetworkAclId={custom}"));
    w.ok(&format!("Action=DeleteVpc&VpcId={}", w.vpc));
    assert_eq!(
        w.code(&format!(
            "Action=DescribeNetworkAcls&NetworkAclId.1={default}"
        )),
        "InvalidNetworkAclID.NotFound"
    );
    assert!(all(&w.describe(""), "networkAclId").is_empty());
}

// spec 12.1: every DescribeNetworkAcls filter moto knows (plus AWS's
// port-range and ICMP ones), ANDed across filters, ORed within one.
#[test]
fn describe_filters() {
    let w = World::new();
    let default = w.default_acl();
    let s = w.subnet("10.0.1.0/24");
    let (_, assoc) = w.association_of(&s);
    let custom = first(
        &w.ok(&format!(
            "Action=CreateNetworkAcl&VpcId={}&TagSpecification.1.ResourceType=network-acl&TagSpecification.1.Tag.1.Key=tier&TagSpecification.1.Tag.1.Value=db",
            w.vpc
        )),
        "networkAclId",
    );
    w.entry(
        &custom,
        "&RuleNumber=420&Protocol=6&PortRange.From=80&PortRange.To=88&RuleAction=allow&Egress=false&CidrBlock=0.0.0.0%2F24",
    )
    .unwrap();
    w.entry(
        &custom,
        "&RuleNumber=421&Protocol=1&Icmp.Type=8&Icmp.Code=0&RuleAction=deny&Egress=false&Ipv6CidrBlock=2001%3Adb8%3A%3A%2F32",
    )
    .unwrap();
    let ids = |filters: &str| -> Vec<String> {
        all(&w.describe(filters), "networkAclId")
            .into_iter()
            .filter(|i| i == &default || i == &custom)
            .fold(Vec::new(), |mut v, i| {
                if !v.contains(&i) {
                    v.push(i);
                }
                v
            })
    };
    let one = |id: &str| vec![id.to_owned()];
    let f = |name: &str, value: &str| format!("&Filter.1.Name={name}&Filter.1.Value.1={value}");
    let both = {
        let mut v = vec![default.clone(), custom.clone()];
        v.sort();
        v
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(ids(&f("network-acl-id", &custom)), one(&custom));
    assert_eq!(ids(&f("id", &custom)), one(&custom));
    assert_eq!(sorted(ids(&f("vpc-id", &w.vpc))), both);
    assert_eq!(ids(&f("default", "true")), one(&default));
    assert_eq!(ids(&f("default", "false")), one(&custom));
    assert_eq!(sorted(ids(&f("owner-id", "111111111111"))), both);
    assert_eq!(ids(&f("association.association-id", &assoc)), one(&default));
    assert_eq!(
        ids(&f("association.network-acl-id", &default)),
        one(&default)
    );
    assert!(ids(&f("association.network-acl-id", &custom)).is_empty());
    assert_eq!(ids(&f("association.subnet-id", &s)), one(&default));
    assert_eq!(ids(&f("entry.cidr", "0.0.0.0%2F24")), one(&custom));
    assert_eq!(
        ids(&f("entry.ipv6-cidr", "2001%3Adb8%3A%3A%2F32")),
        one(&custom)
    );
    assert_eq!(ids(&f("entry.protocol", "6")), one(&custom));
    assert_eq!(ids(&f("entry.protocol", "tcp")), one(&custom));
    assert_eq!(sorted(ids(&f("entry.protocol", "-1"))), both);
    assert_eq!(ids(&f("entry.rule-number", "420")), one(&custom));
    assert!(ids(&f("entry.rule-number", "422")).is_empty());
    // The `*` rules are entries too.
    assert_eq!(sorted(ids(&f("entry.rule-number", "32767"))), both);
    assert_eq!(sorted(ids(&f("entry.rule-action", "allow"))), both);
    // Only the custom ACL has an inbound rule that is not the `*` deny and denies.
    assert_eq!(
        ids(
            "&Filter.1.Name=entry.rule-action&Filter.1.Value.1=deny&Filter.2.Name=entry.rule-number&Filter.2.Value.1=421"
        ),
        one(&custom)
    );
    assert_eq!(sorted(ids(&f("entry.egress", "true"))), both);
    assert_eq!(ids(&f("entry.port-range.from", "80")), one(&custom));
    assert_eq!(ids(&f("entry.port-range.to", "88")), one(&custom));
    assert_eq!(ids(&f("entry.icmp.type", "8")), one(&custom));
    assert_eq!(ids(&f("entry.icmp.code", "0")), one(&custom));
    assert_eq!(ids(&f("tag:tier", "d*")), one(&custom));
    assert_eq!(ids(&f("tag-key", "tier")), one(&custom));
    // Filters AND; values OR.
    assert_eq!(
        ids(
            "&Filter.1.Name=default&Filter.1.Value.1=true&Filter.2.Name=entry.rule-number&Filter.2.Value.1=420"
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        sorted(ids(
            "&Filter.1.Name=entry.rule-number&Filter.1.Value.1=420&Filter.1.Value.2=100"
        )),
        both
    );
    assert_eq!(
        w.code("Action=DescribeNetworkAcls&Filter.1.Name=nonsense&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
}

// spec 12.1: MaxResults (5–1000) with NextToken walks every ACL once.
#[test]
fn describe_paginates() {
    let w = World::new();
    let mut made = vec![w.default_acl()];
    for _ in 0..6 {
        made.push(w.custom_acl());
    }
    made.sort();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let query = match &token {
            Some(t) => format!("&MaxResults=5&NextToken={t}"),
            None => "&MaxResults=5".into(),
        };
        let xml = w.describe(&query);
        // No subnets: each ACL names itself once.
        let page = all(&xml, "networkAclId");
        assert!(page.len() <= 5);
        seen.extend(page);
        token = Some(first(&xml, "nextToken")).filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen, made);
    assert_eq!(
        w.code("Action=DescribeNetworkAcls&MaxResults=4"),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code("Action=DescribeNetworkAcls&NextToken=garbage"),
        "InvalidNextToken"
    );
}

// spec 4.1: the compiler's view of one direction: lowest number first, the
// `*` deny last.
#[test]
fn rules_in_evaluation_order() {
    let w = World::new();
    let acl = w.custom_acl();
    for n in ["200", "100", "150"] {
        w.entry(&acl, &format!("&RuleNumber={n}{ALLOW_ALL_IN}"))
            .unwrap();
    }
    let c = ctx(&w.store, &w.a);
    let stored = transact(&c, |tx| tx.load::<network_acl::NetworkAcl>(&acl)).unwrap();
    let numbers: Vec<u32> = stored.rules(false).iter().map(|r| r.rule_number).collect();
    assert_eq!(numbers, [100, 150, 200, network_acl::IPV4_STAR_RULE]);
    let star = stored.rules(true);
    assert_eq!(star.len(), 1);
    assert_eq!(star[0].action, RuleAction::Deny);
}

// spec 4.2: when a VPC gains IPv6, the default ACL gets rule 101 for ::/0
// in each direction not yet customised, and every ACL its 32768 `*` rules.
#[test]
fn ipv6_rules_when_the_vpc_gains_ipv6() {
    let w = World::new();
    let default = w.default_acl();
    let custom = w.custom_acl();
    // Customise the default ACL's inbound direction.
    w.entry(&default, &format!("&RuleNumber=50{ALLOW_ALL_IN}"))
        .unwrap();
    let c = ctx(&w.store, &w.a);
    transact(&c, |tx| network_acl::vpc_ipv6_added(tx, &w.vpc)).unwrap();
    assert_eq!(
        entries(&w.show(&default)),
        [
            "100 true -1 allow 0.0.0.0/0",
            "101 true -1 allow ::/0",
            "32767 true -1 deny 0.0.0.0/0",
            "32768 true -1 deny ::/0",
            "50 false -1 allow 0.0.0.0/0",
            "100 false -1 allow 0.0.0.0/0",
            "32767 false -1 deny 0.0.0.0/0",
            "32768 false -1 deny ::/0",
        ]
    );
    let stored = transact(&c, |tx| tx.load::<network_acl::NetworkAcl>(&custom)).unwrap();
    assert_eq!(
        stored
            .rules(false)
            .last()
            .map(|r| (r.rule_number, r.cidr.clone())),
        Some((network_acl::IPV6_STAR_RULE, EntryCidr::Ipv6("::/0".into())))
    );
    // A custom ACL created afterwards has both `*` rules in each direction.
    let later = w.custom_acl();
    assert_eq!(
        entries(&w.show(&later)),
        [
            "32767 true -1 deny 0.0.0.0/0",
            "32768 true -1 deny ::/0",
            "32767 false -1 deny 0.0.0.0/0",
            "32768 false -1 deny ::/0",
        ]
    );
}

// Accounts are isolated: another account sees none of these ACLs.
#[test]
fn another_account_sees_nothing() {
    let w = World::new();
    let acl = w.custom_acl();
    let b = Account::generate("b", Some("222222222222"));
    assert_eq!(
        code(
            &w.store,
            &b,
            &format!("Action=DescribeNetworkAcls&NetworkAclId.1={acl}")
        ),
        "InvalidNetworkAclID.NotFound"
    );
    assert_eq!(
        code(
            &w.store,
            &b,
            &format!("Action=DeleteNetworkAcl&NetworkAclId={acl}")
        ),
        "InvalidNetworkAclID.NotFound"
    );
}

// spec 12.1 (Idempotency): CreateNetworkAcl with the ClientToken of an
// earlier call returns that ACL and echoes the token; the token with other
// parameters is IdempotentParameterMismatch.
#[test]
fn create_client_token_idempotency() {
    let w = World::new();
    let req = format!("Action=CreateNetworkAcl&VpcId={}&ClientToken=tok-1", w.vpc);
    let one = w.ok(&req);
    let acl = first(&one, "networkAclId");
    assert_eq!(first(&one, "clientToken"), "tok-1");
    let two = w.ok(&req);
    assert_eq!(first(&two, "networkAclId"), acl);
    assert_eq!(first(&two, "clientToken"), "tok-1");
    assert_eq!(
        all(&w.describe(""), "networkAclId").len(),
        2,
        "the default ACL and one custom ACL"
    );
    let other_vpc = first(&w.ok("Action=CreateVpc&CidrBlock=10.1.0.0%2F16"), "vpcId");
    assert_eq!(
        w.code(&format!(
            "Action=CreateNetworkAcl&VpcId={other_vpc}&ClientToken=tok-1"
        )),
        "IdempotentParameterMismatch"
    );
    assert_ne!(w.custom_acl(), acl);
}
