//! The slow path as layers (STYLE.md, "The packet pipeline"): a port runs
//! an ordered list of layers per direction; each layer is a rule table that
//! returns a typed action together with the rule that decided it.
//!
//! The egress order is AWS's: the gateway (the source/destination check),
//! the security groups, the subnet's network ACL, then routing. Ingress
//! crosses the subnet boundary first: the gateway, the network ACL, then the
//! security groups (DESIGN.md, "The packet path").
//!
//! Evaluation here changes nothing: no flow is inserted, nothing counted,
//! no lookup queued. The router commits the verdict afterwards, in one
//! place; explain mode runs the same layers with a recording [`Sink`] and
//! commits nothing at all. With [`NoSink`] the recording compiles away.
//!
//! ARP and DHCP are answered by the gateway before the flow pipeline (they
//! are not flows); what the pipeline's gateway layer judges is the
//! source/destination check.
//!
//! A new layer (NAT, load balancer, edge) is a new type implementing
//! [`Layer`], placed in the port's list; it returns [`Action::Rewrite`] or
//! [`Action::Encap`] where it changes where a packet goes.

use core::net::IpAddr;

use ipnet::IpNet;
use openvpc_model::rule::{PacketFields, RuleAction};
use openvpc_packet::flow::{FlowHasher, ParsedFlow};
use openvpc_packet::{FlowKey, MacAddr};

use crate::drop::DropReason;
use crate::eni::EniConfig;
use crate::policy::{SgRuleRef, SgVerdict, Way, evaluate_groups};
use crate::route::{GatewayKind, RouteTarget, gateway_mac};

/// The layers a port can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerKind {
    Gateway,
    SecurityGroup,
    NetworkAcl,
    /// Address translation (NAT; the edge and load balancer to come).
    Nat,
    Routing,
}

impl LayerKind {
    /// The name traces print.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Gateway => "gateway",
            LayerKind::SecurityGroup => "security-group",
            LayerKind::NetworkAcl => "network-acl",
            LayerKind::Nat => "nat",
            LayerKind::Routing => "routing",
        }
    }
}

/// What the flow table already knows about a packet's connection: the
/// security groups are stateful, so their layer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// No entry: the packet opens a connection.
    New,
    /// A tracked connection (spec 3.2): the groups are not evaluated again.
    Tracked,
    /// An untracked connection (spec 3.2): judged again by the groups.
    Untracked,
    /// An ICMP error quoting a tracked connection of this ENI (spec 3.2).
    Related,
}

/// The rule behind a decision: small and `Copy`, so the slow path carries it
/// for free; a sink resolves it into IDs from the port's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// The source/destination check (spec 5.4): `enabled` says whether the
    /// ENI has it on.
    SourceDestCheck { enabled: bool },
    /// A security-group rule admitted the packet.
    SgRule(SgRuleRef),
    /// No security-group rule admits the packet.
    SgNoMatch,
    /// A packet of a tracked connection (spec 3.2).
    SgConnection,
    /// An ICMP error about a tracked connection (spec 3.2).
    SgRelated,
    /// A numbered network-ACL entry decided.
    AclEntry { rule_number: u16 },
    /// No entry matched: the final `*` rule denies (spec 4.1).
    AclDefault,
    /// Both ends are in the subnet: network ACLs and route tables do not
    /// apply (spec 2.4, 4.1).
    SameSubnet,
    /// The most specific route covering the destination (spec 2.4).
    Route { destination: IpNet },
    /// No route covers the destination.
    NoRoute,
    /// A translation layer rewrote the packet.
    Translation,
}

/// Where routing sends a packet; borrowed from the port's route table, so
/// the slow path allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward<'a> {
    /// To an address of VPC `vni`, found by the mapping service: the same
    /// VPC (`local` routes, same subnet) or a peered one.
    Mapped { vni: u32 },
    /// To the node that serves a route target (a gateway's node, an
    /// appliance ENI's host) at `underlay`; `mac` is the appliance's, or a
    /// NAT gateway's ([`gateway_mac`]); `None` takes the router's (the
    /// edge's gateways).
    Node {
        target: &'a RouteTarget,
        underlay: IpAddr,
        mac: Option<MacAddr>,
    },
}

/// A header rewrite: the source or destination address and port a layer
/// translates to. Room for NAT, the load balancer and the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rewrite {
    pub src: Option<(IpAddr, u16)>,
    pub dst: Option<(IpAddr, u16)>,
}

/// A layer's typed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Pass to the next layer.
    Allow,
    /// Pass, and track the connection; `tracked` is false for spec 3.2's
    /// untracked flows.
    StatefulAllow { tracked: bool },
    /// Drop, for this reason.
    Deny(DropReason),
    /// Translate the headers, then go on.
    Rewrite(Rewrite),
    /// Leave the port towards this destination.
    Encap(Forward<'a>),
}

/// One layer's decision and the rule that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'a> {
    pub action: Action<'a>,
    pub rule: RuleRef,
}

impl<'a> Decision<'a> {
    fn new(action: Action<'a>, rule: RuleRef) -> Self {
        Decision { action, rule }
    }
}

/// What a port's layers see of a packet: the frame parsed once, and its
/// key as the layers before have rewritten it.
#[derive(Debug, Clone, Copy)]
pub struct PacketMeta<'p> {
    pub flow: &'p ParsedFlow,
    pub key: FlowKey,
    pub fields: PacketFields,
}

impl<'p> PacketMeta<'p> {
    pub fn new(flow: &'p ParsedFlow) -> Self {
        PacketMeta::with_key(flow, flow.key)
    }

    /// The packet as it will look with `key` (after a translation).
    pub fn with_key(flow: &'p ParsedFlow, key: FlowKey) -> Self {
        PacketMeta {
            flow,
            key,
            fields: PacketFields {
                protocol: key.protocol,
                dst_port: key.dst_port,
                icmp_type: flow.icmp_type,
                icmp_code: flow.icmp_code,
            },
        }
    }

    /// The remote end of a packet crossing the ENI `way`.
    pub fn peer(&self, way: Way) -> IpAddr {
        match way {
            Way::Ingress => self.key.src_ip(),
            Way::Egress => self.key.dst_ip(),
        }
    }
}

/// One layer of a port: a rule table that decides without side effects.
pub trait Layer: Sync + core::fmt::Debug {
    fn kind(&self) -> LayerKind;

    /// The decision for a packet crossing `port` in direction `way`.
    fn decide<'a>(
        &self,
        port: &'a EniConfig,
        way: Way,
        packet: &PacketMeta<'_>,
        flow: FlowState,
    ) -> Decision<'a>;
}

/// Receives each layer's decision as the pipeline runs.
pub trait Sink {
    fn record(&mut self, layer: LayerKind, way: Way, decision: &Decision<'_>);
}

/// The production sink: records nothing, and costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSink;

impl Sink for NoSink {
    #[inline(always)]
    fn record(&mut self, _: LayerKind, _: Way, _: &Decision<'_>) {}
}

/// The gateway's part of the flow pipeline: the source/destination check
/// (spec 5.4). Out of the ENI, the source must be one of its addresses; into
/// it, the destination, unless the check is off (an appliance such as a NAT
/// instance or a firewall).
#[derive(Debug, Clone, Copy)]
pub struct Gateway;

impl Layer for Gateway {
    fn kind(&self) -> LayerKind {
        LayerKind::Gateway
    }

    fn decide<'a>(
        &self,
        port: &'a EniConfig,
        way: Way,
        packet: &PacketMeta<'_>,
        _: FlowState,
    ) -> Decision<'a> {
        let rule = RuleRef::SourceDestCheck {
            enabled: port.source_dest_check,
        };
        let own = match way {
            Way::Egress => packet.key.src_ip(),
            Way::Ingress => packet.key.dst_ip(),
        };
        if port.source_dest_check && !port.owns(own) {
            Decision::new(Action::Deny(DropReason::SourceDestCheck), rule)
        } else {
            Decision::new(Action::Allow, rule)
        }
    }
}

/// The ENI's security groups (spec 3): stateful, allow-only.
#[derive(Debug, Clone, Copy)]
pub struct SecurityGroups;

impl Layer for SecurityGroups {
    fn kind(&self) -> LayerKind {
        LayerKind::SecurityGroup
    }

    fn decide<'a>(
        &self,
        port: &'a EniConfig,
        way: Way,
        packet: &PacketMeta<'_>,
        flow: FlowState,
    ) -> Decision<'a> {
        match flow {
            FlowState::Tracked => {
                return Decision::new(
                    Action::StatefulAllow { tracked: true },
                    RuleRef::SgConnection,
                );
            }
            FlowState::Related => {
                return Decision::new(Action::Allow, RuleRef::SgRelated);
            }
            FlowState::New | FlowState::Untracked => {}
        }
        match evaluate_groups(
            port.security_groups.iter().map(AsRef::as_ref),
            way,
            packet.peer(way),
            &packet.fields,
        ) {
            SgVerdict::Deny => Decision::new(Action::Deny(DropReason::SgDeny), RuleRef::SgNoMatch),
            SgVerdict::Allow { tracked, rule } => {
                Decision::new(Action::StatefulAllow { tracked }, RuleRef::SgRule(rule))
            }
        }
    }
}

/// The subnet's network ACL (spec 4): stateless, ordered, applied where
/// traffic crosses the subnet boundary.
#[derive(Debug, Clone, Copy)]
pub struct NetworkAcl;

impl Layer for NetworkAcl {
    fn kind(&self) -> LayerKind {
        LayerKind::NetworkAcl
    }

    fn decide<'a>(
        &self,
        port: &'a EniConfig,
        way: Way,
        packet: &PacketMeta<'_>,
        _: FlowState,
    ) -> Decision<'a> {
        let remote = packet.peer(way);
        if port.subnet.contains(remote) {
            return Decision::new(Action::Allow, RuleRef::SameSubnet);
        }
        let verdict = port
            .subnet
            .network_acl
            .evaluate(way, remote, &packet.fields);
        let rule = match verdict.rule_number {
            Some(rule_number) => RuleRef::AclEntry { rule_number },
            None => RuleRef::AclDefault,
        };
        match verdict.action {
            RuleAction::Allow => Decision::new(Action::Allow, rule),
            RuleAction::Deny => Decision::new(Action::Deny(DropReason::NaclDeny), rule),
        }
    }
}

/// The subnet's route table (spec 2.4): longest prefix match; traffic inside
/// the subnet is switched without it.
#[derive(Debug, Clone, Copy)]
pub struct Routing;

impl Layer for Routing {
    fn kind(&self) -> LayerKind {
        LayerKind::Routing
    }

    fn decide<'a>(
        &self,
        port: &'a EniConfig,
        _: Way,
        packet: &PacketMeta<'_>,
        _: FlowState,
    ) -> Decision<'a> {
        // Only egress runs routing: arriving packets were routed by their
        // sender's host.
        let dst = packet.key.dst_ip();
        let found = port.subnet.route_table.lookup(dst);
        // A load balancer's address is served by its nodes even inside the
        // subnet: its host route comes before the subnet's own switching.
        let balanced = matches!(
            found,
            Some((
                _,
                RouteTarget::Gateway {
                    kind: GatewayKind::LoadBalancer,
                    ..
                }
            ))
        );
        if port.subnet.contains(dst) && !balanced {
            return Decision::new(
                Action::Encap(Forward::Mapped { vni: port.vni }),
                RuleRef::SameSubnet,
            );
        }
        let Some((destination, target)) = found else {
            return Decision::new(Action::Deny(DropReason::NoRoute), RuleRef::NoRoute);
        };
        let rule = RuleRef::Route { destination };
        let action = match target {
            RouteTarget::Local => Action::Encap(Forward::Mapped { vni: port.vni }),
            RouteTarget::Peering { peer_vni, .. } => {
                Action::Encap(Forward::Mapped { vni: *peer_vni })
            }
            RouteTarget::Blackhole => Action::Deny(DropReason::Blackhole),
            RouteTarget::Unserved { .. } => Action::Deny(DropReason::TargetUnserved),
            RouteTarget::Gateway { kind, id, .. } => {
                // spec 5.1: only an address that holds a public IPv4 leaves
                // through an internet gateway; the edge would drop the rest.
                let src = packet.key.src_ip();
                if *kind == GatewayKind::Internet
                    && !port.public_ipv4.iter().any(|(p, _)| IpAddr::V4(*p) == src)
                {
                    return Decision::new(Action::Deny(DropReason::NoPublicIp), rule);
                }
                // A NAT gateway's, load balancer's or VPN gateway's frames
                // carry its own MAC, so a node that serves several knows
                // which one a frame is for (an edge, whether it is the VPN
                // gateway's or the internet gateway's); the internet
                // gateway's take the router's.
                let mac = kind.named_by_mac().then(|| gateway_mac(id));
                match target.node_for(gateway_hash(&packet.key)) {
                    Some(underlay) => Action::Encap(Forward::Node {
                        target,
                        underlay,
                        mac,
                    }),
                    None => Action::Deny(DropReason::TargetUnserved),
                }
            }
            RouteTarget::Eni { underlay, mac, .. } => Action::Encap(Forward::Node {
                target,
                underlay: *underlay,
                mac: Some(*mac),
            }),
        };
        Decision::new(action, rule)
    }
}

/// The hash that picks a flow's gateway node ([`RouteTarget::node_for`]),
/// over the flow's key after the layers' rewrites. Fixed seeds, not the
/// router's random ones: a trace run elsewhere (the control plane's explain)
/// must name the node the host really picks, and a gateway's node can
/// compute which flows are its own.
pub fn gateway_hash(key: &FlowKey) -> u32 {
    const PICK: (u64, u64, u64, u64) = (0x6f70_656e, 0x7670_6320, 0x6564_6765, 0x7069_636b);
    let hasher = FlowHasher::with_seeds(PICK.0, PICK.1, PICK.2, PICK.3);
    (hasher.hash(key) >> 32) as u32
}

/// The layers every port runs out of its ENI, in order.
pub static EGRESS: &[&dyn Layer] = &[&Gateway, &SecurityGroups, &NetworkAcl, &Routing];

/// The layers every port runs into its ENI, in order: the subnet boundary
/// before the ENI's own groups, as AWS evaluates them.
pub static INGRESS: &[&dyn Layer] = &[&Gateway, &NetworkAcl, &SecurityGroups];

/// The layers a port runs: out of its ENI, and into it.
#[derive(Debug, Clone, Copy)]
pub struct PortLayers {
    pub egress: &'static [&'static dyn Layer],
    pub ingress: &'static [&'static dyn Layer],
}

impl PortLayers {
    /// Every ENI's layers, in AWS's order.
    pub const STANDARD: PortLayers = PortLayers {
        egress: EGRESS,
        ingress: INGRESS,
    };

    /// The layers of one direction.
    pub fn of(&self, way: Way) -> &'static [&'static dyn Layer] {
        match way {
            Way::Egress => self.egress,
            Way::Ingress => self.ingress,
        }
    }
}

impl Default for PortLayers {
    fn default() -> Self {
        PortLayers::STANDARD
    }
}

/// What the layers decided for a packet that passed them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'a> {
    /// False for spec 3.2's untracked flows; `None` when no stateful layer
    /// spoke (the flow's earlier packets decided).
    pub tracked: Option<bool>,
    /// The translation to apply, if a layer asked for one (several
    /// layers' rewrites combine, the later winning per field).
    pub rewrite: Option<Rewrite>,
    /// The packet's key after the rewrites: what routing and delivery use.
    pub key: FlowKey,
    /// Where the packet leaves the port to; `None` delivers it to the ENI.
    pub forward: Option<Forward<'a>>,
}

/// A packet that did not pass: the reason the drop counters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    pub layer: LayerKind,
    pub reason: DropReason,
}

/// Runs `layers` of `port` for `way` over a packet, reporting each decision
/// to `sink`. Changes nothing.
#[inline]
pub fn run<'a, S: Sink>(
    port: &'a EniConfig,
    layers: PortLayers,
    way: Way,
    packet: &PacketMeta<'_>,
    flow: FlowState,
    sink: &mut S,
) -> Result<Verdict<'a>, Denied> {
    run_skipping(port, layers, way, packet, flow, sink, None)
}

/// [`run`], leaving out the layer of kind `skip`: the routing of a reply
/// pinned to the node its flow came through, which goes there whatever
/// the routes say (its filters still apply).
#[inline]
pub fn run_skipping<'a, S: Sink>(
    port: &'a EniConfig,
    layers: PortLayers,
    way: Way,
    packet: &PacketMeta<'_>,
    flow: FlowState,
    sink: &mut S,
    skip: Option<LayerKind>,
) -> Result<Verdict<'a>, Denied> {
    let mut packet = *packet;
    let mut verdict = Verdict {
        tracked: None,
        rewrite: None,
        key: packet.key,
        forward: None,
    };
    for layer in layers.of(way) {
        if Some(layer.kind()) == skip {
            continue;
        }
        let decision = layer.decide(port, way, &packet, flow);
        sink.record(layer.kind(), way, &decision);
        match decision.action {
            Action::Allow => {}
            Action::StatefulAllow { tracked } => verdict.tracked = Some(tracked),
            Action::Deny(reason) => {
                return Err(Denied {
                    layer: layer.kind(),
                    reason,
                });
            }
            Action::Rewrite(r) => {
                let mut all = verdict.rewrite.unwrap_or_default();
                all.src = r.src.or(all.src);
                all.dst = r.dst.or(all.dst);
                verdict.rewrite = Some(all);
                packet =
                    PacketMeta::with_key(packet.flow, crate::transform::rewritten(&packet.key, &r));
                verdict.key = packet.key;
            }
            Action::Encap(f) => {
                verdict.forward = Some(f);
                break;
            }
        }
    }
    Ok(verdict)
}
