//! Explain mode: what the layers decided for a packet and the rule behind
//! each decision, in the user's terms (security-group and `sgr-` IDs, ACL
//! rule numbers, routes and their targets), and the packet's fate.
//!
//! It is the production pipeline run with a recording sink (STYLE.md,
//! "Explaining a decision"), never a second model of the network: the
//! [`Recorder`] here is the only thing explain mode adds, and the router's
//! `explain` commits nothing (it takes `&self`).

use core::net::IpAddr;

use ipnet::IpNet;
use openvpc_model::rule::RuleAction;
use openvpc_packet::MacAddr;

use crate::drop::DropReason;
use crate::eni::EniConfig;
use crate::layer::{Action, Decision, Forward, LayerKind, Rewrite, RuleRef, Sink};
use crate::policy::Way;
use crate::route::RouteTarget;

/// The rule behind one decision, named as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The ENI's source/destination check (spec 5.4).
    SourceDestCheck { enabled: bool },
    /// This security-group rule admitted the packet.
    SecurityGroupRule {
        group_id: String,
        rule_id: Option<String>,
    },
    /// None of these groups has a rule that admits the packet.
    NoSecurityGroupRule { group_ids: Vec<String> },
    /// A packet of a tracked connection: no rule is evaluated (spec 3.2).
    TrackedConnection,
    /// An ICMP error about a tracked connection (spec 3.2).
    RelatedIcmpError,
    /// A numbered network-ACL entry decided.
    AclEntry {
        acl_id: String,
        rule_number: u16,
        action: RuleAction,
    },
    /// No entry matched; the `*` rule denies.
    AclDefault { acl_id: String },
    /// Both ends are in this subnet: ACLs and routes do not apply.
    SameSubnet { subnet_id: String },
    /// The route that matched.
    Route {
        route_table_id: String,
        destination: IpNet,
        target: String,
    },
    /// No route covers the destination.
    NoRoute { route_table_id: String },
}

/// What one layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    Allow,
    StatefulAllow {
        tracked: bool,
    },
    Deny(DropReason),
    Rewrite(Rewrite),
    /// Leaves the port: to an address in VPC `vni`, or to a route target.
    Forward {
        vni: u32,
        target: Option<String>,
    },
}

/// One layer's decision at one ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub eni: String,
    pub way: Way,
    pub layer: LayerKind,
    pub action: StepAction,
    pub evidence: Evidence,
}

/// What finally happens to the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to this ENI's instance.
    Delivered { eni: String },
    /// Encapsulated to another host (or a gateway's node): the caller
    /// continues the explanation there.
    Sent {
        underlay: IpAddr,
        vni: u32,
        dst_mac: MacAddr,
    },
    /// Dropped, for the reason the drop counters use.
    Dropped(DropReason),
    /// The mapping of the destination is not known here yet.
    Unresolved,
}

/// A packet's explanation: the steps in order, then its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub steps: Vec<Step>,
    pub fate: Fate,
}

/// The recording sink: resolves each decision's rule against the port it
/// was made at.
#[derive(Debug)]
pub struct Recorder<'c> {
    pub port: &'c EniConfig,
    pub steps: Vec<Step>,
}

impl<'c> Recorder<'c> {
    pub fn new(port: &'c EniConfig) -> Self {
        Recorder {
            port,
            steps: Vec::new(),
        }
    }

    fn evidence(&self, way: Way, rule: RuleRef) -> Evidence {
        let port = self.port;
        let acl_id = || port.subnet.network_acl.id.clone();
        let route_table_id = || port.subnet.route_table.id.clone();
        match rule {
            RuleRef::SourceDestCheck { enabled } => Evidence::SourceDestCheck { enabled },
            RuleRef::SgRule(r) => {
                let group = port.security_groups.get(usize::from(r.group));
                Evidence::SecurityGroupRule {
                    group_id: group.map(|g| g.id.clone()).unwrap_or_default(),
                    rule_id: group
                        .and_then(|g| g.rules(way).get(usize::from(r.rule)))
                        .and_then(|r| r.id.clone()),
                }
            }
            RuleRef::SgNoMatch => Evidence::NoSecurityGroupRule {
                group_ids: port.security_groups.iter().map(|g| g.id.clone()).collect(),
            },
            RuleRef::SgConnection => Evidence::TrackedConnection,
            RuleRef::SgRelated => Evidence::RelatedIcmpError,
            RuleRef::AclEntry { rule_number } => Evidence::AclEntry {
                acl_id: acl_id(),
                rule_number,
                action: port
                    .subnet
                    .network_acl
                    .entries(way)
                    .iter()
                    .find(|e| e.rule_number == rule_number)
                    .map_or(RuleAction::Deny, |e| e.action),
            },
            RuleRef::AclDefault => Evidence::AclDefault { acl_id: acl_id() },
            RuleRef::SameSubnet => Evidence::SameSubnet {
                subnet_id: port.subnet.id.clone(),
            },
            RuleRef::Route { destination } => Evidence::Route {
                route_table_id: route_table_id(),
                destination,
                target: port
                    .subnet
                    .route_table
                    .lookup(destination.addr())
                    .map_or_else(String::new, |(_, t)| target_name(t)),
            },
            RuleRef::NoRoute => Evidence::NoRoute {
                route_table_id: route_table_id(),
            },
        }
    }
}

/// A route target as DescribeRouteTables names it.
pub fn target_name(target: &RouteTarget) -> String {
    match target {
        RouteTarget::Local => "local".into(),
        RouteTarget::Gateway { id, .. }
        | RouteTarget::Peering { id, .. }
        | RouteTarget::Eni { id, .. } => id.clone(),
        RouteTarget::Blackhole => "blackhole".into(),
    }
}

impl Sink for Recorder<'_> {
    fn record(&mut self, layer: LayerKind, way: Way, decision: &Decision<'_>) {
        let action = match decision.action {
            Action::Allow => StepAction::Allow,
            Action::StatefulAllow { tracked } => StepAction::StatefulAllow { tracked },
            Action::Deny(reason) => StepAction::Deny(reason),
            Action::Rewrite(r) => StepAction::Rewrite(r),
            Action::Encap(Forward::Mapped { vni }) => StepAction::Forward { vni, target: None },
            Action::Encap(Forward::Node { target, .. }) => StepAction::Forward {
                vni: self.port.vni,
                target: Some(target_name(target)),
            },
        };
        let evidence = self.evidence(way, decision.rule);
        self.steps.push(Step {
            eni: self.port.id.clone(),
            way,
            layer,
            action,
            evidence,
        });
    }
}
