//! A security group as stored: the record under `sg/{id}` and its rules.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::security_group`.

use openvpc_model::rule::TrafficMatch;
use serde::{Deserialize, Serialize};

use super::Tags;

/// Where a rule's traffic comes from (ingress) or goes to (egress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// A canonical IPv4 CIDR.
    Ipv4(String),
    /// A canonical IPv6 CIDR.
    Ipv6(String),
    /// The ENIs that carry another group (or this one).
    Group { user_id: String, group_id: String },
    /// The CIDRs of a managed prefix list (spec 3.1).
    PrefixList(String),
}

/// One rule as stored: one protocol/port match and one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub traffic: TrafficMatch,
    pub target: Target,
    pub description: Option<String>,
    pub tags: Tags,
}

/// A security group as stored, with its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: String,
    pub vpc_id: String,
    pub is_default: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    pub tags: Tags,
    /// `arn:aws:ec2:{region}:{owner}:security-group/{id}`, fixed at creation
    /// (the record does not otherwise know its region).
    #[serde(default)]
    pub arn: String,
}

impl SecurityGroup {
    pub fn rules(&self, egress: bool) -> &Vec<Rule> {
        if egress { &self.egress } else { &self.ingress }
    }

    pub fn rules_mut(&mut self, egress: bool) -> &mut Vec<Rule> {
        if egress {
            &mut self.egress
        } else {
            &mut self.ingress
        }
    }

    /// True if one of this group's rules names `group_id`.
    pub fn references(&self, group_id: &str) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .any(|r| matches!(&r.target, Target::Group { group_id: g, .. } if g == group_id))
    }

    /// True if one of this group's rules names the prefix list `id`.
    pub fn references_prefix_list(&self, id: &str) -> bool {
        self.ingress
            .iter()
            .chain(&self.egress)
            .any(|r| matches!(&r.target, Target::PrefixList(p) if p == id))
    }
}
