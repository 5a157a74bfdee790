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
//! the port of a flow it holds. A packet handed to another gateway's node
//! ends the walk there.
//!
//! Account isolation: the source must belong to the asking account; the
//! steps taken at another account's ENI (a peer's instance) are not shown,
//! only that the packet reached it and whether it was let in.
//!
//! It reads the fleet; it must not know the Query protocol.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::HashMap;

use openvpc_dataplane::DropReason;
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::explain::{Explanation, Fate, Probe, StepAction, probe_frame};
use openvpc_dataplane::install::{Converter, InstallError};
use openvpc_dataplane::mapping::{Lookup, Mapping, MappingEntry};
use openvpc_dataplane::policy::Way;
use openvpc_dataplane::{Router, RouterConfig};
use openvpc_edge::{Edge, EdgeDrop, EdgeOutput, PublicMapping};
use openvpc_hyperplane::nat::NatDrop;
use openvpc_hyperplane::serve::{Neighbor, NodeDrop, Serve, ServeConfig, Verdict, gateway_mac};
use openvpc_model::host::{EniState, MappingKey};
use openvpc_model::node::NodeRecord;
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::flow;
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};

use crate::fleet::Fleet;

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

/// An explanation, with the hyperplane node's part when the packet went to
/// a NAT gateway, and the edge's part when it left for the internet
/// (directly, or after the NAT gateway).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub explanation: Explanation,
    pub nat: Option<NatHop>,
    pub edge: Option<EdgeHop>,
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
    let now = openvpc_model::time::now_secs();
    let node_mac = RouterConfig::new(node.underlay_ip).router_mac;
    let mut serve = Serve::new(ServeConfig::new(&node.node_id, node_mac));
    serve.configure(&delta.assignments, now);
    let mut buf = PacketBuf::from_frame(&datagram);
    let mut verdict = serve.receive(&mut buf, host_underlay(fleet, region, source), now);
    // A private gateway's packet, translated, for an address whose host
    // the node asks the mapping service for: the region answers as it
    // answers the node.
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
            let node_reason = NodeDrop::ALL
                .into_iter()
                .find(|d| serve.drops(*d) > 0)
                .map(NodeDrop::name);
            let nat_reason = || {
                serve.gateway_stats().iter().find_map(|g| {
                    NatDrop::ALL
                        .into_iter()
                        .zip(g.drops)
                        .find(|(_, n)| *n > 0)
                        .map(|(d, _)| d.name())
                })
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
        if let Some(node) = to_edge {
            edge = Some(edge_hop(
                fleet,
                region,
                node.node_id,
                source,
                &frame,
                (vni, dst_mac, router_mac),
            ));
        } else if let Some(node) = to_hyperplane() {
            let target = explained.steps.iter().rev().find_map(|s| match &s.action {
                StepAction::Forward {
                    target: Some(t), ..
                } => Some(t.as_str()),
                _ => None,
            });
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
                let to_host = || {
                    fleet
                        .registered_hosts(region)
                        .into_iter()
                        .find(|h| h.underlay_ip == *to)
                };
                if let Some(e) = fleet
                    .edges(region)
                    .into_iter()
                    .find(|e| e.underlay_ip == *to)
                {
                    // A public gateway's packet goes on to an edge.
                    edge = Some(edge_hop_after_nat(fleet, region, e.node_id, &mut buf));
                } else if let Some(record) = to_host()
                    && let Some((vni, inner)) = geneve_inner(&buf)
                {
                    // A private gateway's packet goes on to the host of its
                    // destination (by the gateway subnet's routes), which
                    // runs that ENI's ingress on the translated packet.
                    let there = host(fleet, region, &record.host_id)?;
                    let at = EthernetHeader::view(inner).ok().map(|(eth, _)| eth.dst);
                    let index = at.and_then(|mac| there.router.eni_at(vni, IpAddr::V4(dst), mac));
                    match index {
                        Some(index) => {
                            let more = there.router.explain(index, Way::Ingress, inner);
                            explained.steps.extend(more.steps);
                            explained.fate = more.fate;
                        }
                        None => explained.fate = Fate::Dropped(DropReason::UnknownEni),
                    }
                    owners.extend(there.owners);
                }
            }
            nat = Some(hop);
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
        edge,
    })
}
