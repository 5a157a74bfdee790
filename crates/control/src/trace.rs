//! Explaining a packet on the server (`openvpc trace`, the Reachability
//! Analyzer): the fleet's compiled state of each ENI, the one its host runs,
//! turned into router configuration by the same conversion the agents use
//! (`openvpc_dataplane::install`) and run through the dataplane's explain
//! mode. It is the production pipeline, not a model of it: nothing is sent,
//! no host is asked, no root is needed.
//!
//! The walk follows the packet as the hosts would: the source's host runs
//! its egress (and, for an ENI of the same machine, that ENI's ingress);
//! a packet encapsulated to another host continues there at the ENI that
//! host's decapsulation picks (in the same VPC or, across a peering, in the
//! peer's). A packet handed to an edge node (an internet gateway's route)
//! goes through the edge's own translation core, fed the region's state for
//! the source, and ends there: translated out of the uplink, or dropped
//! with the edge's reason. A packet handed to a hyperplane node (a NAT
//! gateway's route) goes through the node's own gateway core
//! (`openvpc_hyperplane::serve`), configured with the node's assignments:
//! translated to the gateway's private address, then, for a public gateway,
//! through the edge the node sends it to, which maps that address to the
//! gateway's Elastic IP. The node's core is a fresh one, so the probe is a
//! new flow and the port shown is one the node would allocate for it, not
//! the port of a flow it holds. A packet to a virtual private gateway
//! (its route's target `vgw-…`, sent to an edge) goes through the edge's
//! own VPN gateway core (`openvpc_edge::vgw`), fed the region's tunnels and
//! gateways' tables as the edges get them: the prefix the gateway routes
//! it by, the tunnel that carries it (spec 10.3) and the edge serving that
//! tunnel (handed on there once if another edge took it), or the gateway's
//! drop. A packet the host drops for want of a served route to a gateway
//! (no tunnel up), or of any route while its VPC has a gateway, carries the
//! gateway's tunnels' states as the fleet believes them. A packet to a network load balancer's
//! front address (its host route to `elb-…`) goes through the node's own
//! load balancer core, told the targets' health as the nodes report it:
//! the listener of the port, its target group, the target the flow hash
//! picks for the probe (failing open when none is healthy), then that
//! target's host runs its ENI's ingress (ACL, security groups) on what the
//! node sends. A packet handed to another gateway's node ends the walk
//! there.
//!
//! Account isolation: the source must belong to the asking account; the
//! steps taken at another account's ENI (a peer's instance) are not shown,
//! only that the packet reached it and whether it was let in.
//!
//! It reads the fleet; it must not know the Query protocol.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::HashMap;

use ipnet::Ipv4Net;
use openvpc_dataplane::DropReason;
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::explain::{Evidence, Explanation, Fate, Probe, StepAction, probe_frame};
use openvpc_dataplane::install::{Converter, InstallError};
use openvpc_dataplane::mapping::{Lookup, Mapping, MappingEntry};
use openvpc_dataplane::policy::Way;
use openvpc_dataplane::{Router, RouterConfig};
use openvpc_edge::vgw::{Vgw, VgwDrop, VgwOutput};
use openvpc_edge::{Edge, EdgeDrop, EdgeOutput, PublicMapping};
use openvpc_hyperplane::nat::NatDrop;
use openvpc_hyperplane::nlb::NlbDrop;
use openvpc_hyperplane::serve::balancer::gateway_id as lb_gateway_id;
use openvpc_hyperplane::serve::{Neighbor, NodeDrop, Serve, ServeConfig, Verdict, gateway_mac};
use openvpc_model::edge::{VgwRoute, VpnTunnel};
use openvpc_model::host::{EniState, MappingKey};
use openvpc_model::hyperplane::{LbAssignment, LbProtocol, LbTarget, LbTargetGroup};
use openvpc_model::lifecycle::TargetHealthState;
use openvpc_model::node::{NodeRecord, TargetHealthReport};
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::flow;
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};
use openvpc_packet::ip::protocol as ip_protocol;

use crate::fleet::Fleet;
use crate::fleet::vpn::TunnelView;

/// Why a packet could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The source ENI runs on no host: nothing would send its packets.
    #[error(
        "network interface {0} runs on no host yet, so it sends no packets: start its instance, or wait for a host to take it"
    )]
    NotRunning(String),
    #[error("network interface {eni} cannot be configured: {source}")]
    Config {
        eni: String,
        #[source]
        source: InstallError,
    },
    #[error("network interface {eni} cannot be configured: {source}")]
    Router {
        eni: String,
        #[source]
        source: openvpc_dataplane::eni::EniError,
    },
    #[error("could not build the probe packet: {0}")]
    Probe(openvpc_packet::Error),
}

/// The mapping service as the fleet answers it, read only.
struct FleetMapping<'f> {
    fleet: &'f Fleet,
    region: &'f str,
}

impl FleetMapping<'_> {
    fn find(&self, vni: u32, ip: IpAddr) -> Lookup {
        let answer = self.fleet.lookup(self.region, &[MappingKey { vni, ip }]);
        let Some(record) = answer.into_iter().next().and_then(|a| a.record) else {
            return Lookup::Absent;
        };
        match record.mac.parse::<MacAddr>() {
            Ok(mac) => Lookup::Found(MappingEntry {
                underlay: record.underlay_ip,
                eni: record.eni_id.as_str().into(),
                mac,
            }),
            Err(_) => Lookup::Absent,
        }
    }
}

impl Mapping for FleetMapping<'_> {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        self.find(vni, addr)
    }

    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup {
        self.find(vni, addr)
    }
}

/// A host as the walk runs it: a router with the host's underlay address
/// and every ENI the fleet compiled for it, so a packet between two ENIs of
/// one machine takes the same in-host path as on the machine, and the owner
/// account of each ENI, to keep other accounts' steps out of the answer.
struct Host<'f> {
    router: Router<FleetMapping<'f>>,
    owners: HashMap<String, String>,
}

fn host<'f>(fleet: &'f Fleet, region: &'f str, host_id: &str) -> Result<Host<'f>, TraceError> {
    let underlay = fleet
        .registered_hosts(region)
        .into_iter()
        .find(|h| h.host_id == host_id)
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |h| h.underlay_ip);
    let mut router = Router::new(RouterConfig::new(underlay), FleetMapping { fleet, region });
    let mut converter = Converter::new();
    let mut owners = HashMap::new();
    for state in fleet.delta(region, host_id, 0).upserts {
        let config = converter
            .eni_config(&state)
            .map_err(|source| TraceError::Config {
                eni: state.eni_id.clone(),
                source,
            })?;
        router
            .upsert_eni(config)
            .map_err(|source| TraceError::Router {
                eni: state.eni_id.clone(),
                source,
            })?;
        owners.insert(state.eni_id, state.account_id);
    }
    Ok(Host { router, owners })
}

/// What an edge node does with a packet the walk hands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeHop {
    /// Translated 1:1 and sent out of the edge's uplink from `public_source`.
    Translated {
        edge_id: String,
        public_source: Ipv4Addr,
    },
    /// Dropped by the edge, for the reason its counters use.
    Dropped { edge_id: String, reason: EdgeDrop },
}

/// What a hyperplane node does with a packet the walk hands it (a NAT
/// gateway's route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatHop {
    /// Source-translated by NAT gateway `gateway_id` on node `node_id` to
    /// `private_source`:`port` (for ICMP, the query ID), and sent to `to`
    /// (an edge's underlay address, for a public gateway). The port is one
    /// the node would allocate to the probe as a new flow.
    Translated {
        node_id: String,
        node_underlay: IpAddr,
        gateway_id: String,
        private_source: Ipv4Addr,
        port: u16,
        to: IpAddr,
    },
    /// Dropped by the node, for the reason its counters use (a node
    /// counter, [`NodeDrop::name`], or the gateway's, [`NatDrop::name`]).
    Dropped {
        node_id: String,
        node_underlay: IpAddr,
        gateway_id: Option<String>,
        reason: String,
    },
}

/// What a VPN gateway's edge does with a packet the walk hands it (a route
/// to `vgw-…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpnHop {
    /// Sealed into tunnel `outside_ip` of `vpn_connection_id` by the edge
    /// serving it, `edge_id`: the tunnel the gateway's table picks for
    /// `prefix` (spec 10.3), up as the fleet believes it. `handed_on_by`:
    /// the edge the host sent it to, when that edge does not serve the
    /// tunnel and handed it on.
    Tunnel {
        edge_id: String,
        edge_underlay: IpAddr,
        handed_on_by: Option<String>,
        vpn_gateway_id: String,
        vpn_connection_id: String,
        outside_ip: Ipv4Addr,
        prefix: Ipv4Net,
    },
    /// Dropped by edge `edge_id`, for the reason its counters use
    /// ([`VgwDrop::name`]): `no_route` when the gateway knows no prefix
    /// for the destination (spec 10.3); `tunnel` when the tunnel its table
    /// picks has no IPsec SA up (then `gateway` says which tunnels are).
    Dropped {
        edge_id: String,
        vpn_gateway_id: String,
        reason: VgwDrop,
        gateway: Option<VgwStatus>,
    },
}

/// One tunnel of a gateway's connection, as the fleet believes it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelState {
    pub vpn_connection_id: String,
    pub outside_ip: Ipv4Addr,
    /// The edge serving it; `None` while no edge lives.
    pub edge_id: Option<String>,
    /// The serving edge has reported on it.
    pub reported: bool,
    pub static_routes_only: bool,
    pub ipsec_up: bool,
    pub bgp_up: bool,
    /// `VgwTelemetry.Status`: UP when it carries traffic.
    pub up: bool,
    pub status_message: String,
}

impl TunnelState {
    fn of(vpn: &str, static_routes_only: bool, v: &TunnelView) -> TunnelState {
        TunnelState {
            vpn_connection_id: vpn.to_owned(),
            outside_ip: v.outside_ip,
            edge_id: v.edge.as_ref().map(|(id, _)| id.clone()),
            reported: v.reported,
            static_routes_only,
            ipsec_up: v.ipsec_up,
            bgp_up: v.bgp_up,
            up: v.is_up(static_routes_only),
            status_message: v.status_message.clone(),
        }
    }
}

impl core::fmt::Display for TunnelState {
    /// `tunnel 203.0.113.5 DOWN (IPSEC IS UP, BGP down)`, as telemetry
    /// words it, with why where the edge said.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "tunnel {} {}",
            self.outside_ip,
            if self.up { "UP" } else { "DOWN" }
        )?;
        let why = match (&self.edge_id, self.reported) {
            (None, _) => "no edge node serves it".to_owned(),
            (Some(e), false) => format!("edge {e} has not reported on it"),
            (Some(_), true) if !self.ipsec_up => "IPsec down".to_owned(),
            (Some(_), true) if self.static_routes_only => "IPSEC IS UP".to_owned(),
            (Some(_), true) if self.bgp_up => "IPSEC IS UP, BGP established".to_owned(),
            (Some(_), true) => "IPSEC IS UP, BGP down".to_owned(),
        };
        write!(f, " ({why}")?;
        if !self.status_message.is_empty() {
            write!(f, ": {}", self.status_message)?;
        }
        f.write_str(")")
    }
}

/// A VPN gateway's connections and their tunnels, as the fleet believes
/// them: why a route to it is unserved, or why none is propagated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgwStatus {
    pub vpn_gateway_id: String,
    pub tunnels: Vec<TunnelState>,
}

impl VgwStatus {
    fn of(fleet: &Fleet, region: &str, account: &str, vgw_id: &str) -> VgwStatus {
        let tunnels = fleet
            .vgw_tunnels(region, account, vgw_id)
            .into_iter()
            .flat_map(|(vpn, static_only, views)| {
                views
                    .iter()
                    .map(|v| TunnelState::of(&vpn, static_only, v))
                    .collect::<Vec<_>>()
            })
            .collect();
        VgwStatus {
            vpn_gateway_id: vgw_id.to_owned(),
            tunnels,
        }
    }
}

impl core::fmt::Display for VgwStatus {
    /// `vgw-…: vpn-… tunnel 203.0.113.5 DOWN (…), tunnel 203.0.113.6 …`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}: ", self.vpn_gateway_id)?;
        if self.tunnels.is_empty() {
            return f.write_str("no VPN connection");
        }
        let mut last: Option<&str> = None;
        for (i, t) in self.tunnels.iter().enumerate() {
            if last != Some(t.vpn_connection_id.as_str()) {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{} ", t.vpn_connection_id)?;
                last = Some(&t.vpn_connection_id);
            } else {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// An explanation, with the hyperplane node's part when the packet went to
/// a NAT gateway, and the edge's part when it left for the internet
/// (directly, or after the NAT gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub explanation: Explanation,
    pub nat: Option<NatHop>,
    /// The load balancer's part, when the packet went to one's front.
    pub lb: Option<LbHop>,
    pub edge: Option<EdgeHop>,
    /// The VPN gateway's part, when the packet went to one's edge.
    pub vpn: Option<VpnHop>,
    /// When the host dropped the packet for want of a served route to a
    /// VPN gateway, or of any route while its VPC has one: the gateway's
    /// tunnels, which say why.
    pub vgw: Option<VgwStatus>,
}

/// The underlay address of the host that runs `source` (unspecified while
/// it runs nowhere the region knows).
fn host_underlay(fleet: &Fleet, region: &str, source: &EniState) -> IpAddr {
    fleet
        .host_of(&source.eni_id)
        .and_then(|(_, host_id)| {
            fleet
                .registered_hosts(region)
                .into_iter()
                .find(|h| h.host_id == host_id)
        })
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |h| h.underlay_ip)
}

/// The Geneve datagram a host sends to a gateway's node for the probe
/// `frame`: Geneve with the VPC's VNI, then the frame re-addressed to the
/// node (destination `dst_mac`, source the host's router). `None` if the
/// frame is too short to hold an IP packet.
fn host_datagram(frame: &[u8], vni: u32, dst_mac: MacAddr, router_mac: MacAddr) -> Option<Vec<u8>> {
    let ip = frame.get(EthernetHeader::LEN..)?;
    let mut headers = [0u8; GeneveHeader::LEN + EthernetHeader::LEN];
    let eth = EthernetRepr {
        dst: dst_mac,
        src: router_mac,
        vlan: None,
        ethertype: ethertype::IPV4,
    };
    let written = GeneveRepr::ethernet(vni).emit(&mut headers).and_then(|at| {
        let rest = headers.get_mut(at..).unwrap_or_default();
        eth.emit(rest).map(|n| at + n)
    });
    if written.ok() != Some(headers.len()) {
        return None;
    }
    let mut datagram = headers.to_vec();
    datagram.extend_from_slice(ip);
    Some(datagram)
}

/// The source address of the bare IPv4 packet an edge sent out of its
/// uplink.
fn uplink_source(buf: &PacketBuf) -> Ipv4Addr {
    buf.data()
        .get(12..16)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
}

/// Runs the edge's translation core on the packet `source`'s host sends to
/// edge `edge_id`: the probe's IP packet in the Geneve and Ethernet headers
/// the host puts on it, against what the region holds for the source.
fn edge_hop(
    fleet: &Fleet,
    region: &str,
    edge_id: String,
    source: &EniState,
    frame: &[u8],
    (vni, dst_mac, router_mac): (u32, MacAddr, MacAddr),
) -> EdgeHop {
    let mut edge = Edge::new(router_mac);
    if fleet.attached_vnis(region).contains(&vni) {
        edge.set_attached(vni, true);
    }
    let host = host_underlay(fleet, region, source);
    let mac = source.mac.parse().unwrap_or(MacAddr([0; 6]));
    for p in &source.public_ipv4 {
        edge.upsert(PublicMapping {
            public: p.public,
            vni: source.vni,
            private: p.private,
            host,
            mac,
            nat_nodes: Vec::new(),
        });
    }
    let dropped = |reason| EdgeHop::Dropped {
        edge_id: edge_id.clone(),
        reason,
    };
    // What the host sends: Geneve, then the frame re-addressed to the node.
    let Some(datagram) = host_datagram(frame, vni, dst_mac, router_mac) else {
        return dropped(EdgeDrop::Malformed);
    };
    let mut buf = PacketBuf::from_frame(&datagram);
    match edge.outbound(&mut buf) {
        EdgeOutput::Uplink => EdgeHop::Translated {
            edge_id,
            public_source: uplink_source(&buf),
        },
        EdgeOutput::Drop(reason) => dropped(reason),
        EdgeOutput::Underlay { .. } => dropped(EdgeDrop::Malformed),
    }
}

/// Runs hyperplane node `node`'s core, made fresh and set up by
/// `configure` (given the time), on `datagram` from `source`'s host. The
/// host of an address the node asks the mapping service for, the region
/// answers as it answers the node. The core (for its counters), the packet
/// as the node left it, and what the node does with it.
fn run_node(
    fleet: &Fleet,
    region: &str,
    node: &NodeRecord,
    source: &EniState,
    datagram: &[u8],
    configure: impl FnOnce(&mut Serve, u64),
) -> (Serve, PacketBuf, Verdict) {
    let now = openvpc_model::time::now_secs();
    let node_mac = RouterConfig::new(node.underlay_ip).router_mac;
    let mut serve = Serve::new(ServeConfig::new(&node.node_id, node_mac));
    configure(&mut serve, now);
    let mut buf = PacketBuf::from_frame(datagram);
    let mut verdict = serve.receive(&mut buf, host_underlay(fleet, region, source), now);
    if let Verdict::Resolve { vni, ip, via } = verdict {
        let mapping = FleetMapping { fleet, region };
        verdict = match mapping.find(vni, IpAddr::V4(ip)) {
            Lookup::Found(m) => {
                let to = Neighbor {
                    host: m.underlay,
                    mac: m.mac,
                };
                serve.mapped(vni, ip, Some(to), now);
                serve.deliver(&mut buf, vni, to, via)
            }
            Lookup::Absent | Lookup::Pending => {
                serve.unresolved();
                Verdict::Done
            }
        };
    }
    (serve, buf, verdict)
}

/// The node counter a fresh core's drop went to, if it was the node's.
fn node_drop(serve: &Serve) -> Option<&'static str> {
    first_counted(NodeDrop::ALL, NodeDrop::ALL.map(|d| serve.drops(d))).map(NodeDrop::name)
}

/// The first of `reasons` whose counter (the same place in `counts`) a
/// fresh core moved: the one its drop went to.
fn first_counted<D, const N: usize>(reasons: [D; N], counts: [u64; N]) -> Option<D> {
    reasons
        .into_iter()
        .zip(counts)
        .find(|(_, n)| *n > 0)
        .map(|(d, _)| d)
}

/// Runs hyperplane node `node`'s gateway core on the packet `source`'s
/// host sends it (the probe in the Geneve and Ethernet headers the host
/// puts on it, the inner destination MAC naming the gateway), configured
/// with the node's assignments as the region gives them now. A fresh core:
/// the probe is a new flow, translated to a port the node would allocate.
/// With the hop, the datagram the node sends on when it translated.
fn nat_hop(
    fleet: &Fleet,
    region: &str,
    node: &NodeRecord,
    source: &EniState,
    frame: &[u8],
    (vni, dst_mac, router_mac): (u32, MacAddr, MacAddr),
    route_target: Option<&str>,
) -> (NatHop, Option<PacketBuf>) {
    let (delta, _) = fleet.hyperplane_delta(region, &node.node_id, 0);
    // The gateway the host named; the route's target if the node does not
    // serve it (the node then drops the packet, and says why).
    let gateway_id = delta
        .assignments
        .iter()
        .find(|a| a.vni == vni && gateway_mac(&a.gateway_id) == dst_mac)
        .map(|a| a.gateway_id.clone())
        .or_else(|| route_target.map(str::to_owned));
    let dropped = |reason: &str| NatHop::Dropped {
        node_id: node.node_id.clone(),
        node_underlay: node.underlay_ip,
        gateway_id: gateway_id.clone(),
        reason: reason.to_owned(),
    };
    let Some(datagram) = host_datagram(frame, vni, dst_mac, router_mac) else {
        return (dropped(NodeDrop::Malformed.name()), None);
    };
    // A private gateway's packet, translated, is for an address whose host
    // the node asks the mapping service for.
    let (serve, buf, verdict) = run_node(fleet, region, node, source, &datagram, |serve, now| {
        serve.configure(&delta.assignments, now);
    });
    match verdict {
        Verdict::Send { to, .. } => {
            // The translated packet, as the node sends it: Geneve, Ethernet,
            // IPv4.
            let translated = geneve_inner(&buf)
                .and_then(|(_, inner)| flow::parse_ethernet(inner).ok())
                .and_then(|pf| match pf.key.src_ip() {
                    IpAddr::V4(ip) => Some((ip, pf.key.src_port)),
                    IpAddr::V6(_) => None,
                });
            let Some((private_source, port)) = translated else {
                return (dropped(NodeDrop::Malformed.name()), None);
            };
            let hop = NatHop::Translated {
                node_id: node.node_id.clone(),
                node_underlay: node.underlay_ip,
                gateway_id: gateway_id.clone().unwrap_or_default(),
                private_source,
                port,
                to,
            };
            (hop, Some(buf))
        }
        Verdict::Done => {
            // The counter the drop went to: the node's, or the gateway's.
            let node_reason = node_drop(&serve);
            let nat_reason = || {
                serve
                    .gateway_stats()
                    .iter()
                    .find_map(|g| first_counted(NatDrop::ALL, g.drops).map(NatDrop::name))
            };
            // A fresh core allocates a new flow in its own port slice, so it
            // never hands it to another node; say so if it ever does.
            let reason = node_reason
                .or_else(nat_reason)
                .unwrap_or("handed_to_another_node");
            (dropped(reason), None)
        }
        // Resolved above.
        Verdict::Resolve { .. } => (dropped(NodeDrop::NoMapping.name()), None),
    }
}

/// A load balancer the walk met, as its node is told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbRef {
    /// `elb-` and the ID that ends its ARN (the host route's target).
    pub gateway_id: String,
    pub arn: String,
    pub name: String,
}

/// The listener a packet matched, and the target group it forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbListenerRef {
    pub port: u16,
    pub protocol: LbProtocol,
    pub target_group_id: String,
    pub target_group_arn: String,
}

/// The target a new flow went to, with its health as the load balancer's
/// nodes report it (DescribeTargetHealth's state and reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbTargetRef {
    /// The instance ID or IP address, as registered.
    pub id: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub availability_zone: String,
    pub health: TargetHealthState,
    pub reason: Option<String>,
}

/// What a hyperplane node does with a packet to a network load balancer's
/// front address (the host's `/32` route to `elb-…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbHop {
    pub node_id: String,
    pub node_underlay: IpAddr,
    /// The node's place in the load balancer's shard (`None`: it is not in
    /// the shard, so it does not serve it).
    pub place: Option<u8>,
    pub load_balancer: Option<LbRef>,
    /// The front address the packet was sent to.
    pub front: Ipv4Addr,
    /// The packet's port and protocol (the probe's).
    pub port: u16,
    pub protocol: u8,
    pub listener: Option<LbListenerRef>,
    pub target: Option<LbTargetRef>,
    /// No target the front may send to is healthy: the flow went to one
    /// of all of them (spec 9.4, fail open).
    pub fail_open: bool,
    /// The source address and port the target sees (the client's own
    /// when client IP preservation is on, else the front's).
    pub source: Option<(Ipv4Addr, u16)>,
    /// Why the node dropped it: a node counter ([`NodeDrop::name`]) or the
    /// load balancer's ([`NlbDrop::name`]); `None` when sent to the target.
    pub dropped: Option<String>,
}

/// A listener protocol as ELBv2 spells it.
pub fn lb_protocol_name(p: LbProtocol) -> &'static str {
    match p {
        LbProtocol::Tcp => "TCP",
        LbProtocol::Udp => "UDP",
        LbProtocol::TcpUdp => "TCP_UDP",
    }
}

/// Whether a listener of `protocol` carries IP protocol `proto`.
fn carries(protocol: LbProtocol, proto: u8) -> bool {
    matches!(
        (protocol, proto),
        (LbProtocol::Tcp | LbProtocol::TcpUdp, ip_protocol::TCP)
            | (LbProtocol::Udp | LbProtocol::TcpUdp, ip_protocol::UDP)
    )
}

/// The health DescribeTargetHealth shows for target `t` of group `g`:
/// what the assignment decides (draining, an instance that does not run,
/// checks off), else the nodes' report, else `initial`.
fn reported_health(
    g: &LbTargetGroup,
    t: &LbTarget,
    report: Option<&TargetHealthReport>,
) -> (TargetHealthState, Option<String>) {
    if t.draining_until_ms.is_some() {
        return (
            TargetHealthState::Draining,
            Some("Target.DeregistrationInProgress".to_owned()),
        );
    }
    if t.invalid_state {
        return (
            TargetHealthState::Unused,
            Some("Target.InvalidState".to_owned()),
        );
    }
    if !g.health_check.enabled {
        return (
            TargetHealthState::Unavailable,
            Some("Target.HealthCheckDisabled".to_owned()),
        );
    }
    match report {
        Some(r) => (r.state, r.reason.clone()),
        None => (
            TargetHealthState::Initial,
            Some("Elb.RegistrationInProgress".to_owned()),
        ),
    }
}

/// The report on `(group, target)` that counts for `node`: its own (its
/// flow core picks by what its own checks found), else the first place of
/// the shard whose node reported on it, as DescribeTargetHealth reads them.
fn report_for<'n>(
    node: &'n NodeRecord,
    shard: &'n [NodeRecord],
    group_id: &str,
    t: &LbTarget,
) -> Option<&'n TargetHealthReport> {
    let of = |n: &'n NodeRecord| {
        n.target_health
            .iter()
            .find(|r| r.target_group_id == group_id && r.target_id == t.id && r.port == t.port)
    };
    of(node).or_else(|| shard.iter().find_map(of))
}

/// `a` as a fresh node core must take it to pick as node `node` picks
/// for front `front`: a fresh core has run no health check (every target
/// `initial`), so the health the nodes report is put in the assignment.
/// Only healthy against not healthy matters to the choice (spec 9.4):
/// where a target the front may send to is reported healthy, checks are
/// taken as off (targets in use count as healthy) and the others marked
/// not running (no flows); otherwise every target stays `initial`, and the
/// core fails open as the node does. Targets keep their order, so the
/// flow hash picks the same one.
fn as_node_sees(
    a: &LbAssignment,
    front: Ipv4Addr,
    node: &NodeRecord,
    shard: &[NodeRecord],
) -> (LbAssignment, Vec<bool>) {
    let az = a
        .fronts
        .iter()
        .find(|f| f.private_ip == front)
        .map(|f| f.availability_zone.clone())
        .unwrap_or_default();
    let mut tuned = a.clone();
    let mut fail_open = Vec::new();
    for g in &mut tuned.target_groups {
        let cross = g.cross_zone.unwrap_or(a.cross_zone);
        let in_use = |t: &LbTarget| t.draining_until_ms.is_none() && !t.invalid_state;
        let healthy: Vec<bool> = g
            .targets
            .iter()
            .map(|t| {
                in_use(t)
                    && (cross || t.availability_zone == az)
                    && (!g.health_check.enabled
                        || report_for(node, shard, &g.id, t)
                            .is_some_and(|r| r.state == TargetHealthState::Healthy))
            })
            .collect();
        let any = healthy.iter().any(|h| *h);
        fail_open.push(!any);
        if any {
            g.health_check.enabled = false;
            for (t, h) in g.targets.iter_mut().zip(&healthy) {
                if !h && in_use(t) {
                    t.invalid_state = true;
                }
            }
        }
    }
    (tuned, fail_open)
}

/// Runs hyperplane node `node`'s load balancer core on the packet
/// `source`'s host sends it for load balancer `gateway_id` (the route's
/// target), configured with the node's assignment as the region gives it
/// now and the targets' health as the nodes report it. A fresh core: the
/// probe is a new flow, sent to the target the flow hash picks. With the
/// hop, where the node sends the target's datagram, and the datagram.
fn lb_hop(
    fleet: &Fleet,
    region: &str,
    node: &NodeRecord,
    source: &EniState,
    frame: &[u8],
    (vni, dst_mac, router_mac): (u32, MacAddr, MacAddr),
    gateway_id: &str,
) -> (LbHop, Option<(IpAddr, PacketBuf)>) {
    let (delta, _) = fleet.hyperplane_delta(region, &node.node_id, 0);
    let assignment = delta
        .load_balancers
        .iter()
        .find(|a| lb_gateway_id(a) == gateway_id)
        .or_else(|| {
            delta
                .load_balancers
                .iter()
                .find(|a| a.vni == vni && gateway_mac(&lb_gateway_id(a)) == dst_mac)
        });
    let tuple = frame
        .get(EthernetHeader::LEN..)
        .and_then(|ip| flow::parse_ip(ip, ethertype::IPV4).ok())
        .map(|pf| (pf.key.dst_ip(), pf.key.dst_port, pf.key.protocol));
    let (front, port, protocol) = match tuple {
        Some((IpAddr::V4(ip), port, proto)) => (ip, port, proto),
        _ => (Ipv4Addr::UNSPECIFIED, 0, 0),
    };
    let mut hop = LbHop {
        node_id: node.node_id.clone(),
        node_underlay: node.underlay_ip,
        place: None,
        load_balancer: None,
        front,
        port,
        protocol,
        listener: None,
        target: None,
        fail_open: false,
        source: None,
        dropped: None,
    };
    let Some(a) = assignment else {
        hop.dropped = Some(NodeDrop::UnknownGateway.name().to_owned());
        return (hop, None);
    };
    hop.load_balancer = Some(LbRef {
        gateway_id: lb_gateway_id(a),
        arn: a.arn.clone(),
        name: a.name.clone(),
    });
    hop.place = a
        .shard
        .iter()
        .position(|m| m.node_id == node.node_id)
        .and_then(|p| u8::try_from(p).ok());
    // Spec 9.1: only TCP and UDP are balanced (ICMP to a front is not).
    if !matches!(protocol, ip_protocol::TCP | ip_protocol::UDP) {
        hop.dropped = Some(NlbDrop::Unsupported.name().to_owned());
        return (hop, None);
    }
    // The listener of the port and protocol (spec 9.1): without one the
    // node has nothing to send the packet to.
    let Some(listener) = a
        .listeners
        .iter()
        .find(|l| l.port == port && carries(l.protocol, protocol))
    else {
        hop.dropped = Some(NlbDrop::NoListener.name().to_owned());
        return (hop, None);
    };
    let Some((gi, group)) = a
        .target_groups
        .iter()
        .enumerate()
        .find(|(_, g)| g.id == listener.target_group_id)
    else {
        hop.dropped = Some(NlbDrop::NoTarget.name().to_owned());
        return (hop, None);
    };
    hop.listener = Some(LbListenerRef {
        port: listener.port,
        protocol: listener.protocol,
        target_group_id: group.id.clone(),
        target_group_arn: group.arn.clone(),
    });
    let live = fleet.hyperplane_nodes(region);
    let shard: Vec<NodeRecord> = a
        .shard
        .iter()
        .filter_map(|m| live.iter().find(|n| n.node_id == m.node_id).cloned())
        .collect();
    let (tuned, fail_open) = as_node_sees(a, front, node, &shard);
    hop.fail_open = fail_open.get(gi).copied().unwrap_or(false);
    let Some(datagram) = host_datagram(frame, vni, dst_mac, router_mac) else {
        hop.dropped = Some(NodeDrop::Malformed.name().to_owned());
        return (hop, None);
    };
    // The target's host is one the node asks the mapping service for.
    let (serve, buf, verdict) = run_node(fleet, region, node, source, &datagram, |serve, now| {
        serve.configure_balancers(std::slice::from_ref(&tuned), now, now.saturating_mul(1000));
    });
    match verdict {
        Verdict::Send { to, .. } => {
            let sent = geneve_inner(&buf)
                .and_then(|(_, inner)| flow::parse_ethernet(inner).ok())
                .and_then(|pf| match (pf.key.src_ip(), pf.key.dst_ip()) {
                    (IpAddr::V4(src), IpAddr::V4(dst)) => {
                        Some(((src, pf.key.src_port), (dst, pf.key.dst_port)))
                    }
                    _ => None,
                });
            let Some((seen_from, (ip, tport))) = sent else {
                hop.dropped = Some(NodeDrop::Malformed.name().to_owned());
                return (hop, None);
            };
            hop.source = Some(seen_from);
            hop.target = group
                .targets
                .iter()
                .find(|t| t.ip == ip && t.port == tport)
                .map(|t| {
                    let (health, reason) =
                        reported_health(group, t, report_for(node, &shard, &group.id, t));
                    LbTargetRef {
                        id: t.id.clone(),
                        ip: t.ip,
                        port: t.port,
                        availability_zone: t.availability_zone.clone(),
                        health,
                        reason,
                    }
                });
            (hop, Some((to, buf)))
        }
        Verdict::Done | Verdict::Resolve { .. } => {
            // The counter the drop went to: the node's, or the load
            // balancer's.
            let node_reason = node_drop(&serve);
            let lb_reason = || {
                serve
                    .balancer_stats()
                    .iter()
                    .find_map(|b| first_counted(NlbDrop::ALL, b.drops).map(NlbDrop::name))
            };
            let reason = lb_reason()
                .or(node_reason)
                .unwrap_or(NodeDrop::NoMapping.name());
            hop.dropped = Some(reason.to_owned());
            (hop, None)
        }
    }
}

/// The VNI and the Ethernet frame inside the Geneve datagram in `buf`.
fn geneve_inner(buf: &PacketBuf) -> Option<(u32, &[u8])> {
    let g = GeneveHeader::view(buf.data()).ok()?;
    let vni = g.header.vni();
    let at = GeneveHeader::LEN + g.options.len();
    Some((vni, buf.data().get(at..)?))
}

/// Runs edge `edge_id`'s translation core, fed the region's edge table as
/// the edges get it, on the datagram a hyperplane node sent it: a NAT
/// gateway's translated packet, whose private source the edge maps to the
/// gateway's Elastic IP.
fn edge_hop_after_nat(
    fleet: &Fleet,
    region: &str,
    edge_id: String,
    buf: &mut PacketBuf,
) -> EdgeHop {
    let (delta, _) = fleet.edge_delta(region, 0);
    let (update, _) = openvpc_edge::control::table_update(&delta);
    let mut edge = Edge::new(RouterConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).router_mac);
    edge.apply(&update);
    match edge.outbound(buf) {
        EdgeOutput::Uplink => EdgeHop::Translated {
            edge_id,
            public_source: uplink_source(buf),
        },
        EdgeOutput::Drop(reason) => EdgeHop::Dropped { edge_id, reason },
        EdgeOutput::Underlay { .. } => EdgeHop::Dropped {
            edge_id,
            reason: EdgeDrop::Malformed,
        },
    }
}

/// The route of the gateway of VPC `vni` for `dst`, as the edges' table
/// finds it: the longest prefix holding it.
fn vgw_route(routes: &[VgwRoute], vni: u32, dst: Ipv4Addr) -> Option<&VgwRoute> {
    routes
        .iter()
        .filter(|r| r.vni == vni && r.prefix.contains(&dst))
        .max_by_key(|r| r.prefix.prefix_len())
}

/// Runs edge `edge`'s VPN gateway core, made fresh and fed the region's
/// tunnels and gateways' tables as the edges get them, on `datagram` from
/// underlay address `from`: the core (for its counters), whether it took
/// the datagram, and what it sent.
fn run_vgw(
    edge: &NodeRecord,
    (tunnels, routes): (&[VpnTunnel], &[VgwRoute]),
    datagram: &[u8],
    from: IpAddr,
) -> (Vgw, bool, Vec<VgwOutput>) {
    let now_ms = openvpc_model::time::now_secs().saturating_mul(1000);
    let mut core = Vgw::new(
        &edge.node_id,
        RouterConfig::new(edge.underlay_ip).router_mac,
    );
    core.apply(tunnels, routes, now_ms);
    let mut out = Vec::new();
    let taken = core.from_underlay(datagram, from, &mut out);
    (core, taken, out)
}

/// Runs the VPN gateway core of edge `edge` on the packet `source`'s host
/// sends it for gateway `vgw_id` (the probe in the Geneve and Ethernet
/// headers the host puts on it, the inner destination MAC naming the
/// gateway), fed the region's tunnels and gateways' tables as the edges
/// get them; if the edge hands it on to the edge serving the tunnel, that
/// edge's core runs on it next, as it would receive it.
fn vgw_hop(
    fleet: &Fleet,
    region: &str,
    edge: NodeRecord,
    source: &EniState,
    frame: &[u8],
    (vni, dst_mac, router_mac): (u32, MacAddr, MacAddr),
    (vgw_id, dst): (&str, Ipv4Addr),
) -> VpnHop {
    let (delta, _) = fleet.edge_delta(region, 0);
    let table = (&delta.vpn_tunnels[..], &delta.vgw_routes[..]);
    let dropped = |edge_id: &str, reason, gateway| VpnHop::Dropped {
        edge_id: edge_id.to_owned(),
        vpn_gateway_id: vgw_id.to_owned(),
        reason,
        gateway,
    };
    let Some(datagram) = host_datagram(frame, vni, dst_mac, router_mac) else {
        return dropped(&edge.node_id, VgwDrop::Malformed, None);
    };
    let mut at = edge;
    let mut from = host_underlay(fleet, region, source);
    let mut handed_on_by: Option<String> = None;
    loop {
        let (core, taken, out) = run_vgw(&at, table, &datagram, from);
        if !taken {
            // The edge knows no table and no tunnel of the gateway's VPC:
            // it routes no prefix for it.
            return dropped(&at.node_id, VgwDrop::NoRoute, None);
        }
        if let Some(VgwOutput::Underlay { dst: next, .. }) = out.first() {
            // Handed on (once: an edge never hands on what an edge sent).
            let Some(e) = fleet
                .edges(region)
                .into_iter()
                .find(|e| e.underlay_ip == *next && handed_on_by.is_none())
            else {
                return dropped(&at.node_id, VgwDrop::NotServedHere, None);
            };
            handed_on_by = Some(at.node_id.clone());
            from = at.underlay_ip;
            at = e;
            continue;
        }
        let drop = first_counted(VgwDrop::ALL, VgwDrop::ALL.map(|d| core.drops(d)));
        match drop {
            // Explain mode: a fresh core holds no IPsec SA, so sealing into
            // a tunnel this edge serves always fails (`VgwDrop::Tunnel`).
            // That refusal is the fresh core's, not the edge's: what the
            // edge does is decided by the tunnel the table picks and
            // whether the fleet's view (the serving edge's last report)
            // says its IPsec SA is up.
            None | Some(VgwDrop::Tunnel) => {
                let Some(route) = vgw_route(table.1, vni, dst) else {
                    return dropped(&at.node_id, VgwDrop::NoRoute, None);
                };
                let status = VgwStatus::of(fleet, region, &source.account_id, vgw_id);
                let tunnel = status
                    .tunnels
                    .iter()
                    .find(|t| t.outside_ip == route.outside_ip);
                let Some(tunnel) = tunnel.filter(|t| t.ipsec_up) else {
                    return dropped(&at.node_id, VgwDrop::Tunnel, Some(status));
                };
                return VpnHop::Tunnel {
                    edge_id: at.node_id.clone(),
                    edge_underlay: at.underlay_ip,
                    handed_on_by,
                    vpn_gateway_id: vgw_id.to_owned(),
                    vpn_connection_id: tunnel.vpn_connection_id.clone(),
                    outside_ip: route.outside_ip,
                    prefix: route.prefix,
                };
            }
            Some(reason) => return dropped(&at.node_id, reason, None),
        }
    }
}

/// Continues the walk on the datagram a hyperplane node sent to underlay
/// address `to`: if a host of the region is there, it runs the ingress of
/// the ENI the datagram names (by VNI, address `dst` and MAC) on the inner
/// frame, and its steps and fate become the explanation's.
fn enter_host(
    fleet: &Fleet,
    region: &str,
    (to, dst): (IpAddr, Ipv4Addr),
    buf: &PacketBuf,
    explained: &mut Explanation,
    owners: &mut HashMap<String, String>,
) -> Result<(), TraceError> {
    let record = fleet
        .registered_hosts(region)
        .into_iter()
        .find(|h| h.underlay_ip == to);
    let (Some(record), Some((vni, inner))) = (record, geneve_inner(buf)) else {
        return Ok(());
    };
    let there = host(fleet, region, &record.host_id)?;
    let at = EthernetHeader::view(inner).ok().map(|(eth, _)| eth.dst);
    match at.and_then(|mac| there.router.eni_at(vni, IpAddr::V4(dst), mac)) {
        Some(index) => {
            let more = there.router.explain(index, Way::Ingress, inner);
            explained.steps.extend(more.steps);
            explained.fate = more.fate;
        }
        None => explained.fate = Fate::Dropped(DropReason::UnknownEni),
    }
    owners.extend(there.owners);
    Ok(())
}

/// Explains `probe` sent from `source` (an ENI of `account`) to `dst`.
pub fn trace(
    fleet: &Fleet,
    region: &str,
    account: &str,
    source: &EniState,
    dst: Ipv4Addr,
    probe: Probe,
) -> Result<Traced, TraceError> {
    let not_running = || TraceError::NotRunning(source.eni_id.clone());
    let (_, host_id) = fleet.host_of(&source.eni_id).ok_or_else(not_running)?;
    let here = host(fleet, region, &host_id)?;
    let index = here
        .router
        .eni_index(&source.eni_id)
        .ok_or_else(not_running)?;
    let frame = probe_frame(
        here.router.eni(index).ok_or_else(not_running)?,
        dst,
        probe,
        here.router.config().router_mac,
    )
    .map_err(TraceError::Probe)?;
    let mut explained = here.router.explain(index, Way::Egress, &frame);
    let router_mac = here.router.config().router_mac;
    let mut owners = here.owners;
    let mut edge = None;
    let mut nat = None;
    let mut lb = None;
    let mut vpn = None;
    // The route target the host sent it to (a gateway's ID), if any.
    let target = explained.steps.iter().rev().find_map(|s| match &s.action {
        StepAction::Forward {
            target: Some(t), ..
        } => Some(t.clone()),
        _ => None,
    });
    if let Fate::Sent {
        underlay,
        vni,
        dst_mac,
    } = explained.fate
    {
        // The host at that underlay address, if it is one (and not a
        // gateway's node: an edge or a hyperplane node is entered through
        // its own core).
        let there = fleet
            .registered_hosts(region)
            .into_iter()
            .find(|h| h.underlay_ip == underlay);
        let to_edge = fleet
            .edges(region)
            .into_iter()
            .find(|e| e.underlay_ip == underlay);
        let to_hyperplane = || {
            fleet
                .hyperplane_nodes(region)
                .into_iter()
                .find(|n| n.underlay_ip == underlay)
        };
        let to_vgw = target.as_deref().filter(|t| t.starts_with("vgw-"));
        if let (Some(node), Some(vgw_id)) = (&to_edge, to_vgw) {
            // A VPN gateway's route: the edge's gateway core takes it.
            vpn = Some(vgw_hop(
                fleet,
                region,
                node.clone(),
                source,
                &frame,
                (vni, dst_mac, router_mac),
                (vgw_id, dst),
            ));
        } else if let Some(node) = to_edge {
            edge = Some(edge_hop(
                fleet,
                region,
                node.node_id,
                source,
                &frame,
                (vni, dst_mac, router_mac),
            ));
        } else if let Some(node) = to_hyperplane() {
            let target = target.as_deref();
            if let Some(gateway_id) = target.filter(|t| t.starts_with("elb-")) {
                // A load balancer's front address: the node picks the
                // target, and its host runs that ENI's ingress.
                let (hop, sent) = lb_hop(
                    fleet,
                    region,
                    &node,
                    source,
                    &frame,
                    (vni, dst_mac, router_mac),
                    gateway_id,
                );
                if let (Some((to, buf)), Some(t)) = (sent, &hop.target) {
                    enter_host(fleet, region, (to, t.ip), &buf, &mut explained, &mut owners)?;
                }
                lb = Some(hop);
            } else {
                let (hop, sent) = nat_hop(
                    fleet,
                    region,
                    &node,
                    source,
                    &frame,
                    (vni, dst_mac, router_mac),
                    target,
                );
                if let (NatHop::Translated { to, .. }, Some(mut buf)) = (&hop, sent) {
                    if let Some(e) = fleet
                        .edges(region)
                        .into_iter()
                        .find(|e| e.underlay_ip == *to)
                    {
                        // A public gateway's packet goes on to an edge.
                        edge = Some(edge_hop_after_nat(fleet, region, e.node_id, &mut buf));
                    } else {
                        // A private gateway's packet goes on to the host of
                        // its destination (by the gateway subnet's routes),
                        // which runs that ENI's ingress on the translated
                        // packet.
                        enter_host(fleet, region, (*to, dst), &buf, &mut explained, &mut owners)?;
                    }
                }
                nat = Some(hop);
            }
        } else if let Some(record) = there {
            let there = host(fleet, region, &record.host_id)?;
            match there.router.eni_at(vni, IpAddr::V4(dst), dst_mac) {
                Some(index) => {
                    let more = there.router.explain(index, Way::Ingress, &frame);
                    explained.steps.extend(more.steps);
                    explained.fate = more.fate;
                }
                None => explained.fate = Fate::Dropped(DropReason::UnknownEni),
            }
            owners.extend(there.owners);
        }
    }
    // Dropped at the source for want of a served route to a VPN gateway
    // (no tunnel up), or of any route while the VPC has a gateway (none is
    // propagated): the gateway's tunnels say why.
    let mut vgw = None;
    if let Fate::Dropped(reason) = explained.fate {
        let denied = explained
            .steps
            .iter()
            .rev()
            .find(|s| matches!(s.action, StepAction::Deny(_)))
            .filter(|s| s.eni == source.eni_id);
        let gateway = match (reason, denied.map(|s| &s.evidence)) {
            (DropReason::TargetUnserved, Some(Evidence::Route { target, .. }))
                if target.starts_with("vgw-") =>
            {
                Some(target.clone())
            }
            (DropReason::NoRoute, Some(_)) => fleet
                .vgws_of_vni(region, &source.account_id, source.vni)
                .into_iter()
                .next(),
            _ => None,
        };
        vgw = gateway.map(|g| VgwStatus::of(fleet, region, &source.account_id, &g));
    }
    // Another account's interface: that the packet reached it, and whether
    // it was let in, but not its rules.
    let foreign = |eni: &str| owners.get(eni).is_some_and(|owner| owner != account);
    explained.steps.retain(|s| !foreign(&s.eni));
    if let Fate::Delivered { eni } = &explained.fate
        && let Some(owner) = owners.get(eni).filter(|o| *o != account)
    {
        explained.fate = Fate::Delivered {
            eni: format!("an interface of account {owner}"),
        };
    }
    Ok(Traced {
        explanation: explained,
        nat,
        lb,
        edge,
        vpn,
        vgw,
    })
}
