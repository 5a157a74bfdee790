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
    /// A translation layer rewrote the packet.
    Translation,
}

impl core::fmt::Display for Evidence {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Evidence::SourceDestCheck { enabled: true } => {
                f.write_str("source/destination check (on)")
            }
            Evidence::SourceDestCheck { enabled: false } => {
                f.write_str("source/destination check (off)")
            }
            Evidence::SecurityGroupRule {
                group_id,
                rule_id: Some(rule),
            } => write!(f, "security group {group_id}, rule {rule}"),
            Evidence::SecurityGroupRule {
                group_id,
                rule_id: None,
            } => write!(f, "security group {group_id}"),
            Evidence::NoSecurityGroupRule { group_ids } => {
                write!(f, "no rule of {} allows it", group_ids.join(", "))
            }
            Evidence::TrackedConnection => f.write_str("a tracked connection"),
            Evidence::RelatedIcmpError => f.write_str("an ICMP error about a tracked connection"),
            Evidence::AclEntry {
                acl_id,
                rule_number,
                action,
            } => write!(
                f,
                "network ACL {acl_id}, rule {rule_number} ({})",
                match action {
                    RuleAction::Allow => "allow",
                    RuleAction::Deny => "deny",
                }
            ),
            Evidence::AclDefault { acl_id } => write!(f, "network ACL {acl_id}, rule * (deny)"),
            Evidence::SameSubnet { subnet_id } => write!(f, "within subnet {subnet_id}"),
            Evidence::Route {
                route_table_id,
                destination,
                target,
            } => write!(
                f,
                "route table {route_table_id}, route {destination} to {target}"
            ),
            Evidence::NoRoute { route_table_id } => {
                write!(f, "route table {route_table_id} has no route to it")
            }
            Evidence::Translation => f.write_str("address translation"),
        }
    }
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

impl core::fmt::Display for StepAction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StepAction::Allow => f.write_str("allow"),
            StepAction::StatefulAllow { tracked: true } => f.write_str("allow (tracked)"),
            StepAction::StatefulAllow { tracked: false } => f.write_str("allow (untracked)"),
            StepAction::Deny(reason) => write!(f, "drop ({reason})"),
            StepAction::Rewrite(_) => f.write_str("rewrite"),
            StepAction::Forward { vni, target: None } => write!(f, "forward in VNI {vni}"),
            StepAction::Forward {
                vni,
                target: Some(t),
            } => write!(f, "forward to {t} in VNI {vni}"),
        }
    }
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
            RuleRef::Translation => Evidence::Translation,
        }
    }
}

/// A route target as DescribeRouteTables names it.
pub fn target_name(target: &RouteTarget) -> String {
    match target {
        RouteTarget::Local => "local".into(),
        RouteTarget::Gateway { id, .. }
        | RouteTarget::Peering { id, .. }
        | RouteTarget::Eni { id, .. }
        | RouteTarget::Unserved { id } => id.clone(),
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

/// The packet a trace sends: what an instance would put on its NIC to open
/// a connection of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A TCP SYN to this port.
    Tcp { port: u16 },
    /// A UDP datagram to this port.
    Udp { port: u16 },
    /// An ICMP echo request.
    Icmp,
}

/// The source port a probe is sent from: any ephemeral port serves, since
/// no rule a user can write matches on the source port.
pub const PROBE_SOURCE_PORT: u16 = 49_152;

/// The Ethernet frame an instance behind `port` would send for `probe` to
/// `dst`, addressed to the VPC router (`router_mac`), from its primary
/// IPv4 address.
pub fn probe_frame(
    port: &EniConfig,
    dst: core::net::Ipv4Addr,
    probe: Probe,
    router_mac: MacAddr,
) -> Result<Vec<u8>, openvpc_packet::Error> {
    use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
    use openvpc_packet::ethernet::EthernetRepr;
    use openvpc_packet::icmp::IcmpRepr;
    use openvpc_packet::ipv4::Ipv4Repr;
    use openvpc_packet::tcp::{TcpRepr, flags};
    use openvpc_packet::udp::UdpRepr;

    let src = port
        .ipv4
        .first()
        .copied()
        .unwrap_or(core::net::Ipv4Addr::UNSPECIFIED);
    let l4 = match probe {
        Probe::Tcp { port } => L4Repr::Tcp(TcpRepr::new(PROBE_SOURCE_PORT, port, flags::SYN)),
        Probe::Udp { port } => L4Repr::Udp(UdpRepr {
            src_port: PROBE_SOURCE_PORT,
            dst_port: port,
        }),
        Probe::Icmp => L4Repr::Icmpv4(IcmpRepr::echo(8, 1, 1)),
    };
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: router_mac,
            src: port.mac,
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
        l4,
    }
    .build(&[])
}
