//! Security groups and network ACLs as small rule tables the slow path
//! evaluates. Group references and prefix lists arrive already expanded to
//! CIDRs by the control plane, so evaluation never leaves this module.

use core::net::IpAddr;

use ipnet::IpNet;
use openvpc_model::rule::{PacketFields, RuleAction, TrafficMatch};

/// One security-group rule: what traffic, to or from which addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgRule {
    /// The rule's `sgr-` ID, for traces; `None` where no one gave one.
    pub id: Option<String>,
    pub traffic: TrafficMatch,
    /// The peer addresses: a CIDR, a referenced group's member addresses, or
    /// a prefix list's entries.
    pub peers: Vec<IpNet>,
}

impl SgRule {
    pub fn new(traffic: TrafficMatch, peers: impl IntoIterator<Item = IpNet>) -> Self {
        SgRule {
            id: None,
            traffic,
            peers: peers.into_iter().collect(),
        }
    }

    /// The same rule, named.
    pub fn with_id(mut self, id: Option<String>) -> Self {
        self.id = id;
        self
    }

    fn matches(&self, peer: IpAddr, fields: &PacketFields) -> bool {
        self.traffic.matches(fields) && self.peers.iter().any(|n| n.contains(&peer))
    }

    /// True if the rule admits every address of `peer`'s family.
    fn covers_all_addresses(&self, peer: IpAddr) -> bool {
        self.peers
            .iter()
            .any(|n| n.prefix_len() == 0 && n.addr().is_ipv4() == peer.is_ipv4())
    }
}

/// A security group's rules (spec 3.1: allow-only, unordered).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityGroup {
    pub id: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
}

impl SecurityGroup {
    /// The rules for one direction.
    pub fn rules(&self, way: Way) -> &[SgRule] {
        match way {
            Way::Ingress => &self.ingress,
            Way::Egress => &self.egress,
        }
    }
}

/// Which way a packet crosses an ENI or a subnet boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// Into the ENI (or subnet).
    Ingress,
    /// Out of the ENI (or subnet).
    Egress,
}

/// The verdict of the security groups for a new flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SgVerdict {
    Deny,
    /// Allowed by `rule`; `tracked` is false for spec 3.2's untracked flows.
    Allow {
        tracked: bool,
        rule: SgRuleRef,
    },
}

/// Which rule of an ENI's groups admitted a flow: the group's position
/// among the ENI's groups and the rule's among that group's rules for the
/// direction. A trace turns it into the group and `sgr-` IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SgRuleRef {
    pub group: u8,
    pub rule: u16,
}

/// Evaluates the union of an ENI's groups (spec 3.1: all rules of all groups
/// combine as a union of allows).
///
/// `peer` is the remote address: the source for ingress, the destination for
/// egress.
pub fn evaluate_groups<'a, I>(groups: I, way: Way, peer: IpAddr, fields: &PacketFields) -> SgVerdict
where
    I: IntoIterator<Item = &'a SecurityGroup>,
    I::IntoIter: Clone,
{
    let groups = groups.into_iter();
    let mut admitting = groups
        .clone()
        .enumerate()
        .flat_map(|(g, group)| {
            group
                .rules(way)
                .iter()
                .enumerate()
                .map(move |(r, rule)| (g, r, rule))
        })
        .filter(|(_, _, r)| r.matches(peer, fields))
        .peekable();
    let Some(&(g, r, _)) = admitting.peek() else {
        return SgVerdict::Deny;
    };
    let rule = SgRuleRef {
        group: u8::try_from(g).unwrap_or(u8::MAX),
        rule: u16::try_from(r).unwrap_or(u16::MAX),
    };
    // spec 3.2: ICMP is always tracked; TCP/UDP are untracked when an
    // admitting rule covers all addresses and the opposite direction has an
    // all-addresses rule for all ports.
    let always_tracked = !matches!(fields.protocol, 6 | 17);
    let opposite = match way {
        Way::Ingress => Way::Egress,
        Way::Egress => Way::Ingress,
    };
    let untracked = !always_tracked
        && admitting.any(|(_, _, r)| r.covers_all_addresses(peer))
        && groups
            .flat_map(|g| g.rules(opposite))
            .any(|r| r.covers_all_addresses(peer) && r.traffic.covers_all_ports());
    SgVerdict::Allow {
        tracked: !untracked,
        rule,
    }
}

/// One numbered network-ACL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NaclEntry {
    /// 1–32766; the API's `*` rule is implicit (see [`NetworkAcl::evaluate`]).
    pub rule_number: u16,
    pub traffic: TrafficMatch,
    pub cidr: IpNet,
    pub action: RuleAction,
}

/// A network ACL: ordered entries per direction (spec 4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkAcl {
    pub id: String,
    ingress: Vec<NaclEntry>,
    egress: Vec<NaclEntry>,
}

/// Which NACL entry decided, for traces and flow logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaclVerdict {
    pub action: RuleAction,
    /// The deciding rule number; `None` is the final `*` deny.
    pub rule_number: Option<u16>,
}

impl NetworkAcl {
    /// Builds an ACL; entries are sorted so the lowest number is tried first.
    pub fn new(
        id: impl Into<String>,
        mut ingress: Vec<NaclEntry>,
        mut egress: Vec<NaclEntry>,
    ) -> Self {
        ingress.sort_by_key(|e| e.rule_number);
        egress.sort_by_key(|e| e.rule_number);
        NetworkAcl {
            id: id.into(),
            ingress,
            egress,
        }
    }

    /// The default ACL of a VPC (spec 4.2): rule 100 allows all IPv4 and
    /// rule 101 all IPv6, both ways.
    pub fn allow_all(id: impl Into<String>) -> Self {
        let rules = || {
            [(100, "0.0.0.0/0"), (101, "::/0")]
                .into_iter()
                .filter_map(|(n, c)| {
                    c.parse().ok().map(|cidr| NaclEntry {
                        rule_number: n,
                        traffic: TrafficMatch::ALL,
                        cidr,
                        action: RuleAction::Allow,
                    })
                })
                .collect::<Vec<_>>()
        };
        Self::new(id, rules(), rules())
    }

    pub fn entries(&self, way: Way) -> &[NaclEntry] {
        match way {
            Way::Ingress => &self.ingress,
            Way::Egress => &self.egress,
        }
    }

    /// spec 4.1: lowest number first, first match decides, then `*` denies.
    /// `peer` is the source for ingress and the destination for egress.
    pub fn evaluate(&self, way: Way, peer: IpAddr, fields: &PacketFields) -> NaclVerdict {
        self.entries(way)
            .iter()
            .find(|e| e.cidr.contains(&peer) && e.traffic.matches(fields))
            .map_or(
                NaclVerdict {
                    action: RuleAction::Deny,
                    rule_number: None,
                },
                |e| NaclVerdict {
                    action: e.action,
                    rule_number: Some(e.rule_number),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn tcp(port: u16) -> PacketFields {
        PacketFields {
            protocol: 6,
            dst_port: port,
            ..PacketFields::default()
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    // spec 4.1 acceptance: 100 deny tcp/22 + 200 allow all blocks SSH; swapped, SSH passes.
    #[test]
    fn lowest_nacl_rule_wins() {
        let deny22 = |n| NaclEntry {
            rule_number: n,
            traffic: TrafficMatch::tcp(22, 22),
            cidr: net("0.0.0.0/0"),
            action: RuleAction::Deny,
        };
        let allow = |n| NaclEntry {
            rule_number: n,
            traffic: TrafficMatch::ALL,
            cidr: net("0.0.0.0/0"),
            action: RuleAction::Allow,
        };
        let acl = NetworkAcl::new("acl-1", vec![allow(200), deny22(100)], vec![]);
        let v = acl.evaluate(Way::Ingress, ip("1.2.3.4"), &tcp(22));
        assert_eq!(v.action, RuleAction::Deny);
        assert_eq!(v.rule_number, Some(100));
        let acl = NetworkAcl::new("acl-1", vec![deny22(200), allow(100)], vec![]);
        assert_eq!(
            acl.evaluate(Way::Ingress, ip("1.2.3.4"), &tcp(22)).action,
            RuleAction::Allow
        );
        // The egress list is empty: the final * denies.
        let v = acl.evaluate(Way::Egress, ip("1.2.3.4"), &tcp(22));
        assert_eq!(
            v,
            NaclVerdict {
                action: RuleAction::Deny,
                rule_number: None
            }
        );
    }

    #[test]
    fn default_acl_allows_both_families() {
        let acl = NetworkAcl::allow_all("acl-d");
        for peer in ["10.1.2.3", "2600::1"] {
            assert_eq!(
                acl.evaluate(Way::Egress, ip(peer), &tcp(1)).action,
                RuleAction::Allow
            );
        }
    }

    // spec 3.1: union of allows across groups; no rule, no entry.
    #[test]
    fn groups_are_a_union_of_allows() {
        let web = SecurityGroup {
            id: "sg-web".into(),
            ingress: vec![SgRule::new(TrafficMatch::tcp(80, 80), [net("0.0.0.0/0")])],
            egress: vec![],
        };
        let ssh = SecurityGroup {
            id: "sg-ssh".into(),
            ingress: vec![SgRule::new(
                TrafficMatch::tcp(22, 22),
                [net("203.0.113.1/32")],
            )],
            egress: vec![],
        };
        let groups = [web, ssh];
        assert!(matches!(
            evaluate_groups(&groups[..], Way::Ingress, ip("198.51.100.9"), &tcp(80)),
            SgVerdict::Allow { .. }
        ));
        assert_eq!(
            evaluate_groups(&groups[..], Way::Ingress, ip("198.51.100.9"), &tcp(22)),
            SgVerdict::Deny
        );
        assert!(matches!(
            evaluate_groups(&groups[..], Way::Ingress, ip("203.0.113.1"), &tcp(22)),
            SgVerdict::Allow { tracked: true, .. }
        ));
        assert_eq!(
            evaluate_groups(&groups[..], Way::Egress, ip("203.0.113.1"), &tcp(22)),
            SgVerdict::Deny
        );
    }

    // spec 3.2: 0.0.0.0/0 in, all-ports all-addresses out → untracked; ICMP always tracked.
    #[test]
    fn untracked_flows() {
        let g = SecurityGroup {
            id: "sg-open".into(),
            ingress: vec![
                SgRule::new(TrafficMatch::tcp(22, 22), [net("0.0.0.0/0")]),
                SgRule::new(TrafficMatch::ALL, [net("203.0.113.0/24")]),
            ],
            egress: vec![SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")])],
        };
        let groups = [g];
        assert!(matches!(
            evaluate_groups(&groups[..], Way::Ingress, ip("198.51.100.1"), &tcp(22)),
            SgVerdict::Allow { tracked: false, .. }
        ));
        let icmp = PacketFields {
            protocol: 1,
            icmp_type: 8,
            ..PacketFields::default()
        };
        assert!(matches!(
            evaluate_groups(&groups[..], Way::Ingress, ip("203.0.113.5"), &icmp),
            SgVerdict::Allow { tracked: true, .. }
        ));
    }
}
