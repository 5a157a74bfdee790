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
//! with the edge's reason. A packet handed to another gateway's node ends
//! the walk there.
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
use openvpc_dataplane::explain::{Explanation, Fate, Probe, probe_frame};
use openvpc_dataplane::install::{Converter, InstallError};
use openvpc_dataplane::mapping::{Lookup, Mapping, MappingEntry};
use openvpc_dataplane::policy::Way;
use openvpc_dataplane::{Router, RouterConfig};
use openvpc_edge::{Edge, EdgeDrop, EdgeOutput, PublicMapping};
use openvpc_model::host::{EniState, MappingKey};
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
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

/// An explanation, with the edge's part when the packet left for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traced {
    pub explanation: Explanation,
    pub edge: Option<EdgeHop>,
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
    let host = fleet
        .host_of(&source.eni_id)
        .and_then(|(_, host_id)| {
            fleet
                .registered_hosts(region)
                .into_iter()
                .find(|h| h.host_id == host_id)
        })
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |h| h.underlay_ip);
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
    let Some(ip) = frame.get(EthernetHeader::LEN..) else {
        return dropped(EdgeDrop::Malformed);
    };
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
        return dropped(EdgeDrop::Malformed);
    }
    let mut datagram = headers.to_vec();
    datagram.extend_from_slice(ip);
    let mut buf = PacketBuf::from_frame(&datagram);
    match edge.outbound(&mut buf) {
        EdgeOutput::Uplink => {
            let public_source = buf
                .data()
                .get(12..16)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from);
            EdgeHop::Translated {
                edge_id,
                public_source,
            }
        }
        EdgeOutput::Drop(reason) => dropped(reason),
        EdgeOutput::Underlay { .. } => dropped(EdgeDrop::Malformed),
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
    if let Fate::Sent {
        underlay,
        vni,
        dst_mac,
    } = explained.fate
    {
        // The host at that underlay address, if it is one (and not a
        // gateway's node, which the walk does not enter).
        let there = fleet
            .registered_hosts(region)
            .into_iter()
            .find(|h| h.underlay_ip == underlay);
        let to_edge = fleet
            .edges(region)
            .into_iter()
            .find(|e| e.underlay_ip == underlay);
        if let Some(node) = to_edge {
            edge = Some(edge_hop(
                fleet,
                region,
                node.node_id,
                source,
                &frame,
                (vni, dst_mac, router_mac),
            ));
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
        edge,
    })
}
