//! A network ACL as stored: the record under `acl/{id}`, its numbered
//! entries and subnet associations, and the rules in evaluation order.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format) and pure reads of it; it must not know the Query
//! protocol, XML or request parameters, which live in
//! `openvpc_control::api::actions::network_acl`.

use openvpc_model::Ipv4Cidr;
use openvpc_model::rule::{RuleAction, TrafficMatch};
use serde::{Deserialize, Serialize};

use super::Tags;

/// spec 4.1: the numbers the API shows for the IPv4 and IPv6 `*` rules.
pub const IPV4_STAR_RULE: u32 = 32767;
pub const IPV6_STAR_RULE: u32 = 32768;

/// The addresses an entry matches: one canonical block of one family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryCidr {
    Ipv4(Ipv4Cidr),
    /// Canonical text (host bits cleared).
    Ipv6(String),
}

impl EntryCidr {
    pub fn is_ipv6(&self) -> bool {
        matches!(self, EntryCidr::Ipv6(_))
    }
}

/// One numbered rule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub rule_number: u16,
    pub egress: bool,
    pub action: RuleAction,
    pub traffic: TrafficMatch,
    pub cidr: EntryCidr,
}

/// A rule as the API shows it and the dataplane evaluates it: the stored
/// entries plus the `*` rules, whose numbers (32767, 32768) do not fit the
/// stored range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    pub rule_number: u32,
    pub egress: bool,
    pub action: RuleAction,
    pub traffic: TrafficMatch,
    pub cidr: EntryCidr,
}

/// A subnet's association with an ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub id: String,
    pub subnet_id: String,
}

/// A network ACL as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub is_default: bool,
    /// The numbered entries of both directions, sorted by direction and number.
    pub entries: Vec<Entry>,
    pub associations: Vec<Association>,
    /// True once the VPC has IPv6: the ACL then also has the IPv6 `*` rules.
    #[serde(default)]
    pub ipv6: bool,
    pub tags: Tags,
}

impl NetworkAcl {
    /// One direction's rules in evaluation order (spec 4.1: lowest number
    /// first, the first match decides), ending with the `*` deny rules.
    pub fn rules(&self, egress: bool) -> Vec<AclRule> {
        let mut rules: Vec<AclRule> = self
            .entries
            .iter()
            .filter(|e| e.egress == egress)
            .map(|e| AclRule {
                rule_number: u32::from(e.rule_number),
                egress,
                action: e.action,
                traffic: e.traffic,
                cidr: e.cidr.clone(),
            })
            .collect();
        rules.sort_by_key(|r| r.rule_number);
        let star = |rule_number, cidr| AclRule {
            rule_number,
            egress,
            action: RuleAction::Deny,
            traffic: TrafficMatch::ALL,
            cidr,
        };
        rules.push(star(IPV4_STAR_RULE, EntryCidr::Ipv4(Ipv4Cidr::any())));
        if self.ipv6 {
            rules.push(star(IPV6_STAR_RULE, EntryCidr::Ipv6("::/0".into())));
        }
        rules
    }
}

impl NetworkAcl {
    /// Every rule as DescribeNetworkAcls lists it: egress first, as AWS does.
    pub fn shown(&self) -> Vec<AclRule> {
        let mut all = self.rules(true);
        all.extend(self.rules(false));
        all
    }

    pub fn sort_entries(&mut self) {
        self.entries.sort_by_key(|e| (!e.egress, e.rule_number));
    }

    pub fn entry_index(&self, rule_number: u16, egress: bool) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.rule_number == rule_number && e.egress == egress)
    }
}
