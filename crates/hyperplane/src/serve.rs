//! One hyperplane node's gateways, sans-IO: the NAT gateways its
//! assignments give it, the Geneve datagrams that reach it from hosts and
//! edges, and what it says to the other nodes of each shard. Time is an
//! argument (seconds); the shell (`io`) owns the sockets and the clock.
//!
//! - **From a host**: an instance's frame for a gateway (the inner
//!   destination MAC names it; a node serving one gateway of the VPC takes
//!   any). The node learns where the instance lives (its host and MAC, for
//!   the replies), translates, and sends the packet on: to an edge, with
//!   the VPC's VNI, for a public gateway (the edge maps the gateway's
//!   private address to its Elastic IP, as an internet gateway does for an
//!   instance).
//! - **From an edge**: a reply to one of the gateway's private addresses;
//!   translated back and sent to the instance's host.
//! - **To the buddy** (the next live place of the shard): every new flow's
//!   record, acknowledged before the flow's first packet leaves
//!   ([`Verdict::Send::after`]); state changes; the hosts it learned.
//! - **A place dies**: its buddy takes its port slice over (the replicas
//!   it holds become its flows). **A node joins** (restarted, or a new
//!   node in the place): it asks the shard ([`Body::Join`]); the node that
//!   served its slice hands the flows back, and its own buddy sends it its
//!   replicas.
//! - A flow met on the wrong node (hosts or edges still on the old view)
//!   is forwarded once to the node that owns it, never translated twice.
//!
//! Everything refused is a counted drop.

pub mod balancer;
#[cfg(feature = "bench")]
pub mod bench;

use balancer::Balancer;
pub use balancer::BalancerStats;

use core::net::{IpAddr, Ipv4Addr};

use hashbrown::HashMap;
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::flowlog::FlowLogRecord;
use openvpc_model::flow_log::LoggedEni;
use openvpc_model::hyperplane::{NatAssignment, NatConnectivity, ShardMember};
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{self, EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr, ReturnVia};

use crate::nat::{FlowRecord, Nat, NatConfig, NatCounters, NatDrop, NatOutput, ReplicaError};
use crate::wire::{Body, Message, RECORDS_PER_MESSAGE};

/// Seconds a newly placed gateway answers unknown TCP segments with a drop,
/// not a RST: the time its flows take to come back from the buddy.
pub const JOIN_QUIET_SECS: u32 = 3;

/// How a node runs its gateways (test knobs included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    pub node_id: String,
    /// The source MAC of frames the node sends to instances.
    pub router_mac: MacAddr,
    /// Flows per gateway, replicas included.
    pub capacity: usize,
    /// Seconds (AWS: 350); a test shortens it.
    pub idle_timeout: u32,
    /// Translated ports (a test shrinks them to reach
    /// `ErrorPortAllocation`).
    pub ports: core::ops::RangeInclusive<u16>,
}

impl ServeConfig {
    pub fn new(node_id: &str, router_mac: MacAddr) -> ServeConfig {
        ServeConfig {
            node_id: node_id.to_owned(),
            router_mac,
            capacity: 1 << 18,
            idle_timeout: crate::nat::IDLE_TIMEOUT,
            ports: crate::nat::DEFAULT_PORTS,
        }
    }
}

/// Why the node (rather than a gateway's NAT) dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeDrop {
    /// The Geneve or Ethernet headers failed to parse.
    Malformed,
    /// Not IPv4 inside.
    NotIpv4,
    /// For no gateway this node serves.
    UnknownGateway,
    /// A public gateway's VPC has no edge to send to (no internet gateway
    /// attached, or no edge alive).
    NoEdge,
    /// A private gateway's packet to a destination none of its subnet's
    /// routes the node can follow covers.
    NoRoute,
    /// A private gateway's packet to an address the mapping service does
    /// not place (nothing runs there).
    NoMapping,
    /// A reply for an instance whose host the node never learned.
    NoNeighbor,
    /// A peer message that failed to decode, or for a gateway not here.
    PeerMalformed,
    /// A flow record the gateway's table refused (full, or a conflict).
    RecordRefused,
}

impl NodeDrop {
    pub const ALL: [NodeDrop; 9] = [
        NodeDrop::Malformed,
        NodeDrop::NotIpv4,
        NodeDrop::UnknownGateway,
        NodeDrop::NoEdge,
        NodeDrop::NoRoute,
        NodeDrop::NoMapping,
        NodeDrop::NoNeighbor,
        NodeDrop::PeerMalformed,
        NodeDrop::RecordRefused,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NodeDrop::Malformed => "malformed",
            NodeDrop::NotIpv4 => "not_ipv4",
            NodeDrop::UnknownGateway => "unknown_gateway",
            NodeDrop::NoEdge => "no_edge",
            NodeDrop::NoRoute => "no_route",
            NodeDrop::NoMapping => "no_mapping",
            NodeDrop::NoNeighbor => "no_neighbor",
            NodeDrop::PeerMalformed => "peer_malformed",
            NodeDrop::RecordRefused => "record_refused",
        }
    }
}

/// What to do with a datagram the node was handed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the buffer (now a Geneve datagram) to `to`, port 6081; with
    /// `after`, only once the buddy acknowledged that message (or it is
    /// given up on).
    Send { to: IpAddr, after: Option<u32> },
    /// A private gateway's translated packet (a bare IPv4 packet in the
    /// buffer) for `ip` in VNI `vni`, whose host the node does not know
    /// yet: the shell asks the mapping service, then calls
    /// [`Serve::mapped`] and [`Serve::deliver`].
    Resolve {
        vni: u32,
        ip: Ipv4Addr,
        /// A load balancer's packet to a target carries the return-via
        /// option: [`Serve::deliver`] puts it back.
        via: Option<ReturnVia>,
    },
    /// Nothing to send (dropped and counted, or sent to a peer as a
    /// message in the outbox).
    Done,
}

/// How long the node keeps an answer of the mapping service: a placement
/// changes rarely, and an absent address may appear (an instance that
/// starts), so the absence is asked again sooner.
pub const MAPPING_TTL_SECS: u64 = 60;
pub const NO_MAPPING_TTL_SECS: u64 = 2;

/// What a peer message asked of the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerVerdict {
    Done,
    /// The buddy holds the records of message `seq`: packets held for it go.
    Acked(u32),
    /// A forwarded packet, handled: as [`Verdict`].
    Packet(Verdict),
}

/// Node-wide counters (each gateway's NAT keeps its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCounters {
    pub forwarded: u64,
    pub records_sent: u64,
    pub records_received: u64,
    pub handed_back: u64,
    pub adopted: u64,
    pub takeovers: u64,
}

/// One gateway on this node.
#[derive(Debug)]
struct Gateway {
    assignment: NatAssignment,
    nat: Nat,
    place: u8,
    /// Per place: its node's address while it lives.
    alive: Vec<Option<IpAddr>>,
    /// Its packets the node dropped before or after its NAT (no edge, no
    /// route, no host to send to).
    dropped: u64,
}

/// This node's place in `shard`, the shard's size, and each place's node
/// address while it lives; `None` when the node has no place there (or the
/// shard is beyond a byte's count).
fn place_in(shard: &[ShardMember], node_id: &str) -> Option<(u8, u8, Vec<Option<IpAddr>>)> {
    let place = shard.iter().position(|m| m.node_id == node_id)?;
    let (place, k) = (u8::try_from(place).ok()?, u8::try_from(shard.len()).ok()?);
    Some((place, k, shard.iter().map(|m| m.underlay_ip).collect()))
}

/// A flow record that travels between the nodes of a shard.
trait Replicated: Clone {
    /// Records per message.
    const PER_MESSAGE: usize;
    /// The message carrying `records`: a hand-back, or replicas.
    fn body(records: Vec<Self>, hand_back: bool) -> Body;
}

impl Replicated for FlowRecord {
    const PER_MESSAGE: usize = RECORDS_PER_MESSAGE;
    fn body(records: Vec<Self>, hand_back: bool) -> Body {
        if hand_back {
            Body::HandBack { records }
        } else {
            Body::Replicate {
                ack: false,
                records,
            }
        }
    }
}

impl Replicated for crate::nlb::FlowRecord {
    const PER_MESSAGE: usize = crate::wire::LB_RECORDS_PER_MESSAGE;
    fn body(records: Vec<Self>, hand_back: bool) -> Body {
        if hand_back {
            Body::LbHandBack { records }
        } else {
            Body::LbReplicate {
                ack: false,
                records,
            }
        }
    }
}

/// Per place of a shard whose liveness is `alive`, the address of the node
/// that serves it: its own node, or (dead) the next live place's.
fn serving_of(alive: &[Option<IpAddr>], place: u8) -> Option<IpAddr> {
    let k = alive.len();
    (0..k)
        .map(|d| (usize::from(place) + d) % k)
        .find_map(|q| alive.get(q).copied().flatten())
}

/// The buddy of place `place`: the next live place after it.
fn buddy_of(alive: &[Option<IpAddr>], place: u8) -> Option<IpAddr> {
    let k = alive.len();
    (1..k)
        .map(|d| (usize::from(place) + d) % k)
        .find_map(|q| alive.get(q).copied().flatten())
}

impl Gateway {
    fn serving(&self, place: u8) -> Option<IpAddr> {
        serving_of(&self.alive, place)
    }

    fn buddy(&self) -> Option<IpAddr> {
        buddy_of(&self.alive, self.place)
    }
}

/// One gateway's figures on this node: AWS's NAT gateway metrics (spec
/// 6.2) for the flows it translates, and its place in the shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayStats {
    pub gateway_id: String,
    pub vni: u32,
    pub place: u8,
    pub nodes: u8,
    /// The places whose port slices this node translates (its own, and
    /// dead ones it took over).
    pub serves: Vec<u8>,
    pub counters: NatCounters,
    /// Per [`NatDrop`], in [`NatDrop::ALL`] order.
    pub drops: [u64; NatDrop::ALL.len()],
    /// Its packets dropped by the node around the NAT (no edge, no route,
    /// no host), also counted by reason in the node's drops.
    pub node_dropped: u64,
    pub active: u32,
    pub replicas: u32,
    /// Packets its flow logs could not count (too many flows at once).
    pub flow_counts_skipped: u64,
}

impl GatewayStats {
    /// AWS's `PacketsDropCount`: every packet of the gateway dropped.
    pub fn packets_dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.node_dropped
    }

    pub fn drop_count(&self, reason: NatDrop) -> u64 {
        self.drops[reason as usize]
    }
}

/// The 16-bit word `at` bytes into the L4 header of a bare IPv4 packet,
/// read from fixed places (the NAT parses the packet whole); `None` for a
/// later fragment, which has no L4 header, or a short packet.
fn l4_word(packet: &[u8], at: usize) -> Option<u16> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let offset = u16::from_be_bytes([*packet.get(6)?, *packet.get(7)?]) & 0x1fff;
    if offset != 0 {
        return None;
    }
    let i = ihl + at;
    Some(u16::from_be_bytes([*packet.get(i)?, *packet.get(i + 1)?]))
}

/// The place whose slice holds a reply's translated port (TCP/UDP
/// destination port, ICMP echo identifier); `None` when the packet has
/// none (a later fragment) or is too short.
fn reply_place(packet: &[u8], nodes: u8) -> Option<u8> {
    // Echo replies carry the translated identifier where a port would be.
    let at = if *packet.get(9)? == openvpc_packet::ip::protocol::ICMP {
        4
    } else {
        2
    };
    Some(crate::nat::owner_of(l4_word(packet, at)?, nodes))
}

/// A host an instance lives behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor {
    pub host: IpAddr,
    pub mac: MacAddr,
}

/// A node's gateways, neighbours, counters and outbox.
#[derive(Debug)]
pub struct Serve {
    config: ServeConfig,
    gateways: Vec<Gateway>,
    /// (VNI, gateway MAC) → gateway, for frames from hosts.
    by_mac: HashMap<(u32, MacAddr), usize>,
    /// VNI → gateways of that VPC here.
    by_vni: HashMap<u32, Vec<usize>>,
    /// (VNI, gateway private address) → gateway, for replies.
    by_private: HashMap<(u32, Ipv4Addr), usize>,
    /// The network load balancers, by `elb-` ID.
    balancers: Vec<Balancer>,
    /// (VNI, load balancer MAC) and (VNI, front address) → load balancer.
    lb_by_mac: HashMap<(u32, MacAddr), usize>,
    lb_by_front: HashMap<(u32, Ipv4Addr), usize>,
    neighbors: HashMap<(u32, Ipv4Addr), Neighbor>,
    /// The mapping service's answers for private gateways' destinations,
    /// with when they were given (seconds).
    mappings: HashMap<(u32, Ipv4Addr), (Option<Neighbor>, u64)>,
    seq: u32,
    /// The health checks' clock (milliseconds), never going back.
    probe_clock: u64,
    outbox: Vec<(IpAddr, Message)>,
    drops: [u64; NodeDrop::ALL.len()],
    counters: NodeCounters,
}

/// The MAC hosts put on frames for `gateway_id` (the dataplane's choice).
pub fn gateway_mac(gateway_id: &str) -> MacAddr {
    openvpc_dataplane::route::gateway_mac(gateway_id)
}

impl Serve {
    pub fn new(config: ServeConfig) -> Serve {
        Serve {
            config,
            gateways: Vec::new(),
            by_mac: HashMap::new(),
            by_vni: HashMap::new(),
            by_private: HashMap::new(),
            balancers: Vec::new(),
            lb_by_mac: HashMap::new(),
            lb_by_front: HashMap::new(),
            neighbors: HashMap::new(),
            mappings: HashMap::new(),
            seq: 0,
            probe_clock: 0,
            outbox: Vec::new(),
            drops: [0; NodeDrop::ALL.len()],
            counters: NodeCounters::default(),
        }
    }

    pub fn counters(&self) -> &NodeCounters {
        &self.counters
    }

    pub fn drops(&self, reason: NodeDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// The gateways served, with their NAT.
    pub fn gateways(&self) -> impl Iterator<Item = (&NatAssignment, &Nat)> {
        self.gateways.iter().map(|g| (&g.assignment, &g.nat))
    }

    /// The IDs of the gateways programmed here: what the heartbeat reports,
    /// and what makes a gateway `available`.
    pub fn serving(&self) -> Vec<String> {
        self.gateways
            .iter()
            .map(|g| g.assignment.gateway_id.clone())
            .chain(self.balancers.iter().map(|b| b.name.clone()))
            .collect()
    }

    pub fn neighbors(&self) -> usize {
        self.neighbors.len()
    }

    /// Peer messages to send, in order, before the packet of the call that
    /// queued them.
    pub fn take_outbox(&mut self) -> Vec<(IpAddr, Message)> {
        core::mem::take(&mut self.outbox)
    }

    /// Whether the outbox holds anything.
    pub fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    fn drop(&mut self, reason: NodeDrop) -> Verdict {
        self.drops[reason as usize] += 1;
        Verdict::Done
    }

    /// A drop of gateway `gi`'s packet for a reason of the node's (no
    /// edge, no route, no host): counted for the node and in the gateway's
    /// `PacketsDropCount`, as AWS counts every packet its gateway drops.
    fn drop_for(&mut self, gi: usize, reason: NodeDrop) -> Verdict {
        if let Some(g) = self.gateways.get_mut(gi) {
            g.dropped += 1;
        }
        self.drop(reason)
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&mut self, to: IpAddr, gateway: &str, body: Body) -> u32 {
        let seq = self.next_seq();
        self.outbox.push((
            to,
            Message {
                seq,
                gateway: gateway.to_owned(),
                body,
            },
        ));
        seq
    }

    /// Queues `records` to `to` in messages of at most
    /// [`Replicated::PER_MESSAGE`]: a hand-back, or replicas.
    fn send_records<R: Replicated>(
        &mut self,
        to: IpAddr,
        gateway: &str,
        records: Vec<R>,
        hand_back: bool,
    ) {
        self.counters.records_sent += records.len() as u64;
        for chunk in records.chunks(R::PER_MESSAGE) {
            self.send(to, gateway, R::body(chunk.to_vec(), hand_back));
        }
    }

    /// Sends `to` the hosts learned in `vni` (as [`Body::Neighbor`]s about
    /// gateway `id`): a node that becomes a buddy can reach them.
    fn send_neighbors(&mut self, to: IpAddr, id: &str, vni: u32) {
        let known: Vec<(Ipv4Addr, Neighbor)> = self
            .neighbors
            .iter()
            .filter(|((v, _), _)| *v == vni)
            .map(|((_, ip), n)| (*ip, *n))
            .collect();
        for (ip, n) in known {
            self.send(
                to,
                id,
                Body::Neighbor {
                    vni,
                    ip,
                    mac: n.mac,
                    host: n.host,
                },
            );
        }
    }

    /// Asks every other live place of a shard for what this node's place
    /// should hold.
    fn join(&mut self, id: &str, alive: &[Option<IpAddr>], place: u8) {
        let peers: Vec<IpAddr> = alive
            .iter()
            .enumerate()
            .filter(|(q, _)| *q != usize::from(place))
            .filter_map(|(_, ip)| *ip)
            .collect();
        for to in peers {
            self.send(to, id, Body::Join { place });
        }
    }

    /// Takes the node's assignments (whole) at `now`: gateways new here
    /// are programmed and announce themselves to their shard, gone ones are
    /// dropped, and places that died or came back are taken over or handed
    /// back.
    pub fn configure(&mut self, assignments: &[NatAssignment], now: u64) {
        let mut old: HashMap<String, Gateway> = self
            .gateways
            .drain(..)
            .map(|g| (g.assignment.gateway_id.clone(), g))
            .collect();
        let mut next = Vec::with_capacity(assignments.len());
        for a in assignments {
            let Some((place, k, alive)) = place_in(&a.shard, &self.config.node_id) else {
                continue;
            };
            let kept = old
                .remove(&a.gateway_id)
                .filter(|g| g.place == place && g.alive.len() == usize::from(k));
            let g = match kept {
                Some(mut g) => {
                    if g.assignment.private_ips != a.private_ips {
                        let _ = g.nat.set_addresses(&a.private_ips);
                    }
                    let old_buddy = g.buddy();
                    g.assignment = a.clone();
                    g.alive = alive;
                    self.follow_places(&mut g, old_buddy, now);
                    g
                }
                None => {
                    let mut config =
                        NatConfig::new(a.private_ips.clone(), place, k, self.config.capacity);
                    config.idle_timeout = self.config.idle_timeout;
                    config.ports = self.config.ports.clone();
                    let Ok(mut nat) = Nat::new(config) else {
                        continue;
                    };
                    nat.quiet_for(now, JOIN_QUIET_SECS);
                    let g = Gateway {
                        assignment: a.clone(),
                        nat,
                        place,
                        alive,
                        dropped: 0,
                    };
                    // Ask the shard for this place's flows and the buddy's
                    // replicas; take over the dead places it serves.
                    self.join(&a.gateway_id, &g.alive, place);
                    let mut g = g;
                    self.take_over_dead(&mut g, now);
                    g
                }
            };
            let mut g = g;
            g.nat.flow_logging().set(a.flow_log.is_some());
            next.push(g);
        }
        next.sort_by(|a, b| a.assignment.gateway_id.cmp(&b.assignment.gateway_id));
        self.gateways = next;
        self.reindex();
    }

    /// Takes over every dead place this node now serves.
    fn take_over_dead(&mut self, g: &mut Gateway, now: u64) {
        let me = g.alive.get(usize::from(g.place)).copied().flatten();
        for q in 0..g.alive.len() as u8 {
            if q != g.place
                && g.alive[usize::from(q)].is_none()
                && g.serving(q) == me
                && !g.nat.serves_place(q)
            {
                g.nat.take_over(q, now);
                self.counters.takeovers += 1;
            }
        }
    }

    /// A kept gateway whose shard's liveness changed.
    fn follow_places(&mut self, g: &mut Gateway, old_buddy: Option<IpAddr>, now: u64) {
        self.take_over_dead(g, now);
        // The buddy changed (it died, or another place came alive before
        // it): the new one gets this node's flows.
        let buddy = g.buddy();
        if buddy != old_buddy
            && let Some(to) = buddy
        {
            let mut records: Vec<FlowRecord> = g.nat.records_of(g.place).collect();
            records.retain(|r| r.kind == crate::nat::RecordKind::Upsert);
            self.send_records(to, &g.assignment.gateway_id, records, false);
        }
    }

    fn reindex(&mut self) {
        self.by_mac.clear();
        self.by_vni.clear();
        self.by_private.clear();
        for (i, g) in self.gateways.iter().enumerate() {
            let a = &g.assignment;
            self.by_mac.insert((a.vni, gateway_mac(&a.gateway_id)), i);
            self.by_vni.entry(a.vni).or_default().push(i);
            for ip in &a.private_ips {
                self.by_private.insert((a.vni, *ip), i);
            }
        }
    }

    fn gateway_index(&self, id: &str) -> Option<usize> {
        self.gateways
            .binary_search_by(|g| g.assignment.gateway_id.as_str().cmp(id))
            .ok()
    }

    /// Expires idle flows of every gateway, `budget` slots each.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        self.gateways
            .iter_mut()
            .map(|g| g.nat.expire(now, budget))
            .sum::<usize>()
            + self.expire_balancers(now, budget)
    }

    /// A Geneve datagram from `from` (a host or an edge), at `now`.
    pub fn receive(&mut self, buf: &mut PacketBuf, from: IpAddr, now: u64) -> Verdict {
        self.receive_as(buf, from, now, false)
    }

    fn receive_as(
        &mut self,
        buf: &mut PacketBuf,
        from: IpAddr,
        now: u64,
        forwarded: bool,
    ) -> Verdict {
        let Ok(g) = GeneveHeader::view(buf.data()) else {
            return self.drop(NodeDrop::Malformed);
        };
        let (vni, geneve_len) = (g.header.vni(), GeneveHeader::LEN + g.options.len());
        let Some(frame) = buf.data().get(geneve_len..) else {
            return self.drop(NodeDrop::Malformed);
        };
        let Ok((eth, _)) = EthernetHeader::view(frame) else {
            return self.drop(NodeDrop::Malformed);
        };
        let (dst_mac, src_mac) = (eth.dst, eth.src);
        let Ok(split) = ethernet::split(frame) else {
            return self.drop(NodeDrop::Malformed);
        };
        if split.ethertype != ethertype::IPV4 {
            return self.drop(NodeDrop::NotIpv4);
        }
        let ip = geneve_len + split.payload_offset;
        let addr = |at: usize| -> Option<Ipv4Addr> {
            let b: [u8; 4] = buf.data().get(ip + at..ip + at + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        };
        let (Some(src), Some(dst)) = (addr(12), addr(16)) else {
            return self.drop(NodeDrop::Malformed);
        };
        if let Some(bi) = self.balancer_for(vni, dst_mac, dst) {
            return self.balancer_packet(bi, buf, ip, src, (from, src_mac), now, forwarded);
        }
        if let Some(&gi) = self.by_private.get(&(vni, dst)) {
            return self.reply_from_edge(gi, buf, ip, from, now, forwarded);
        }
        let gi = match self.by_mac.get(&(vni, dst_mac)) {
            Some(&gi) => gi,
            // A host that does not name the gateway: fine while this node
            // serves one gateway of the VPC.
            None => match self.by_vni.get(&vni).map(Vec::as_slice) {
                Some([gi]) => *gi,
                _ => return self.drop(NodeDrop::UnknownGateway),
            },
        };
        self.learn(gi, vni, src, src_mac, from, forwarded);
        self.packet_from_host(gi, buf, ip, from, src_mac, now, forwarded)
    }

    /// Notes the host and MAC of instance `ip`; a new or moved one is told
    /// to the buddy too, so it can reach the instance after a failover.
    fn learn(
        &mut self,
        gi: usize,
        vni: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
        host: IpAddr,
        forwarded: bool,
    ) {
        let n = Neighbor { host, mac };
        if self.neighbors.get(&(vni, ip)) == Some(&n) {
            return;
        }
        self.neighbors.insert((vni, ip), n);
        if forwarded {
            return;
        }
        let Some(g) = self.gateways.get(gi) else {
            return;
        };
        if let Some(to) = g.buddy() {
            let id = g.assignment.gateway_id.clone();
            self.send(to, &id, Body::Neighbor { vni, ip, mac, host });
        }
    }

    /// Records to the buddy: a new flow's with an acknowledgement asked
    /// for (its packet waits), the rest without. The sequence number the
    /// packet waits for, if any.
    fn replicate(&mut self, gi: usize, record: Option<FlowRecord>) -> Option<u32> {
        let record = record?;
        let g = self.gateways.get(gi)?;
        let to = g.buddy()?;
        let id = g.assignment.gateway_id.clone();
        let ack = record.state == crate::nat::FlowState::Opened;
        self.counters.records_sent += 1;
        let seq = self.send(
            to,
            &id,
            Body::Replicate {
                ack,
                records: vec![record],
            },
        );
        ack.then_some(seq)
    }

    /// Geneve and Ethernet headers in front of the bare IPv4 packet in
    /// `buf`.
    fn encapsulate(buf: &mut PacketBuf, vni: u32, dst: MacAddr, src: MacAddr) -> bool {
        Serve::encapsulate_via(buf, vni, dst, src, None)
    }

    /// [`Serve::encapsulate`], with the return-via option when given.
    fn encapsulate_via(
        buf: &mut PacketBuf,
        vni: u32,
        dst: MacAddr,
        src: MacAddr,
        via: Option<ReturnVia>,
    ) -> bool {
        const MAX: usize = GeneveHeader::LEN + ReturnVia::LEN + EthernetHeader::LEN;
        let mut headers = [0u8; MAX];
        let eth = EthernetRepr {
            dst,
            src,
            vlan: None,
            ethertype: ethertype::IPV4,
        };
        let Ok(mut at) = GeneveRepr::ethernet(vni).emit(&mut headers) else {
            return false;
        };
        if let Some(via) = via {
            // The option's length in 4-byte words goes in the first byte's
            // low six bits (version 0).
            headers[0] = (ReturnVia::LEN / 4) as u8;
            headers[at..at + ReturnVia::LEN].copy_from_slice(&via.option());
            at += ReturnVia::LEN;
        }
        let emitted = eth.emit(headers.get_mut(at..).unwrap_or_default());
        matches!(emitted, Ok(n) if n == EthernetHeader::LEN)
            && buf.push_front(&headers[..at + EthernetHeader::LEN])
    }

    /// Forwards the datagram (its headers taken back in front of the
    /// untouched packet) to the node serving `place`, once.
    fn forward(
        &mut self,
        gi: usize,
        place: u8,
        headers: usize,
        buf: &mut PacketBuf,
        from: IpAddr,
    ) -> Verdict {
        let Some(g) = self.gateways.get(gi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let me = g.alive.get(usize::from(g.place)).copied().flatten();
        let Some(to) = g.serving(place).filter(|to| Some(*to) != me) else {
            // Nobody else serves it: the NAT counted nothing yet.
            return self.drop(NodeDrop::UnknownGateway);
        };
        let id = g.assignment.gateway_id.clone();
        self.forward_to(to, &id, headers, buf, from)
    }

    /// Sends the datagram (its `headers` taken back in front of the
    /// untouched packet) to the node at `to`, for gateway `id`.
    fn forward_to(
        &mut self,
        to: IpAddr,
        id: &str,
        headers: usize,
        buf: &mut PacketBuf,
        from: IpAddr,
    ) -> Verdict {
        if !buf.unpop_front(headers) {
            return self.drop(NodeDrop::Malformed);
        }
        let datagram = buf.data().to_vec();
        self.counters.forwarded += 1;
        self.send(to, id, Body::Forward { from, datagram });
        Verdict::Done
    }

    /// Takes the Geneve and Ethernet headers (`ip` bytes) off a datagram
    /// for gateway `gi`: the gateway's VNI, or the counted drop.
    fn decapsulate(&mut self, gi: usize, buf: &mut PacketBuf, ip: usize) -> Result<u32, Verdict> {
        if !buf.pop_front(ip) {
            return Err(self.drop(NodeDrop::Malformed));
        }
        match self.gateways.get(gi) {
            Some(g) => Ok(g.assignment.vni),
            None => Err(self.drop(NodeDrop::UnknownGateway)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn packet_from_host(
        &mut self,
        gi: usize,
        buf: &mut PacketBuf,
        ip: usize,
        from: IpAddr,
        src_mac: MacAddr,
        now: u64,
        forwarded: bool,
    ) -> Verdict {
        let vni = match self.decapsulate(gi, buf, ip) {
            Ok(vni) => vni,
            Err(v) => return v,
        };
        let Some(g) = self.gateways.get_mut(gi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let out = if forwarded {
            g.nat.outbound_forwarded(buf, now)
        } else {
            g.nat.outbound(buf, now)
        };
        match out {
            NatOutput::ToDestination(record) => {
                let Some(g) = self.gateways.get(gi) else {
                    return self.drop(NodeDrop::UnknownGateway);
                };
                if g.assignment.connectivity == NatConnectivity::Private {
                    self.replicate(gi, record);
                    return self.route_private(gi, buf, now);
                }
                let edges = &g.assignment.edges;
                if edges.is_empty() {
                    return self.drop_for(gi, NodeDrop::NoEdge);
                }
                // Edges keep no state: the translated source port spreads
                // the gateway's flows over them.
                let port = l4_word(buf.data(), 0).unwrap_or(0);
                let to = edges[usize::from(port) % edges.len()];
                let mac = gateway_mac(&g.assignment.gateway_id);
                let after = self.replicate(gi, record);
                if !Serve::encapsulate(buf, vni, self.config.router_mac, mac) {
                    return self.drop(NodeDrop::Malformed);
                }
                Verdict::Send { to, after }
            }
            NatOutput::Reset => {
                if !Serve::encapsulate(buf, vni, src_mac, self.config.router_mac) {
                    return self.drop(NodeDrop::Malformed);
                }
                Verdict::Send {
                    to: from,
                    after: None,
                }
            }
            NatOutput::Forward { place } => self.forward(gi, place, ip, buf, from),
            NatOutput::ToSource(_) | NatOutput::Drop(_) => Verdict::Done,
        }
    }

    /// A private gateway's translated packet: on by its subnet's routes, to
    /// the host the mapping service names.
    fn route_private(&mut self, gi: usize, buf: &mut PacketBuf, now: u64) -> Verdict {
        let Some(dst) = buf
            .data()
            .get(16..20)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(Ipv4Addr::from)
        else {
            return self.drop(NodeDrop::Malformed);
        };
        let Some(g) = self.gateways.get(gi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let Some(vni) = g
            .assignment
            .routes
            .iter()
            .filter(|r| r.destination.contains(&dst))
            .max_by_key(|r| r.destination.prefix_len())
            .map(|r| r.vni)
        else {
            return self.drop_for(gi, NodeDrop::NoRoute);
        };
        match self.mappings.get(&(vni, dst)) {
            Some((Some(n), at)) if now.saturating_sub(*at) < MAPPING_TTL_SECS => {
                let n = *n;
                self.deliver(buf, vni, n, None)
            }
            Some((None, at)) if now.saturating_sub(*at) < NO_MAPPING_TTL_SECS => {
                self.drop_for(gi, NodeDrop::NoMapping)
            }
            _ => Verdict::Resolve {
                vni,
                ip: dst,
                via: None,
            },
        }
    }

    /// The mapping service's answer for (`vni`, `ip`), at `now`.
    pub fn mapped(&mut self, vni: u32, ip: Ipv4Addr, answer: Option<Neighbor>, now: u64) {
        self.mappings.insert((vni, ip), (answer, now));
    }

    /// The node's current answer for (`vni`, `ip`), if it has one.
    pub fn mapping(&self, vni: u32, ip: Ipv4Addr) -> Option<Option<Neighbor>> {
        self.mappings.get(&(vni, ip)).map(|(n, _)| *n)
    }

    /// Sends a translated bare IPv4 packet in `vni` to `to`'s host (the
    /// packet a [`Verdict::Resolve`] held, once resolved).
    pub fn deliver(
        &mut self,
        buf: &mut PacketBuf,
        vni: u32,
        to: Neighbor,
        via: Option<ReturnVia>,
    ) -> Verdict {
        if !Serve::encapsulate_via(buf, vni, to.mac, self.config.router_mac, via) {
            return self.drop(NodeDrop::Malformed);
        }
        Verdict::Send {
            to: to.host,
            after: None,
        }
    }

    /// Counts a held packet whose destination the mapping service did not
    /// place.
    pub fn unresolved(&mut self) {
        self.drop(NodeDrop::NoMapping);
    }

    #[allow(clippy::too_many_arguments)]
    fn reply_from_edge(
        &mut self,
        gi: usize,
        buf: &mut PacketBuf,
        ip: usize,
        from: IpAddr,
        now: u64,
        forwarded: bool,
    ) -> Verdict {
        let vni = match self.decapsulate(gi, buf, ip) {
            Ok(vni) => vni,
            Err(v) => return v,
        };
        let Some(g) = self.gateways.get_mut(gi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        // A reply whose port is another place's slice (the mapping service
        // names one node for a private gateway's address): to that place.
        if !forwarded
            && let Some(place) = reply_place(buf.data(), g.nat.place().1)
            && !g.nat.serves_place(place)
        {
            return self.forward(gi, place, ip, buf, from);
        }
        let Some(g) = self.gateways.get_mut(gi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let out = if forwarded {
            g.nat.inbound_forwarded(buf, now)
        } else {
            g.nat.inbound(buf, now)
        };
        match out {
            NatOutput::ToSource(record) => {
                let Some(dst) = buf
                    .data()
                    .get(16..20)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(Ipv4Addr::from)
                else {
                    return self.drop(NodeDrop::Malformed);
                };
                let Some(n) = self.neighbors.get(&(vni, dst)).copied() else {
                    return self.drop_for(gi, NodeDrop::NoNeighbor);
                };
                // State changes only: nothing waits for them.
                self.replicate(gi, record);
                let after = None;
                if !Serve::encapsulate(buf, vni, n.mac, self.config.router_mac) {
                    return self.drop(NodeDrop::Malformed);
                }
                Verdict::Send { to: n.host, after }
            }
            NatOutput::Forward { place } => self.forward(gi, place, ip, buf, from),
            NatOutput::ToDestination(_) | NatOutput::Reset | NatOutput::Drop(_) => Verdict::Done,
        }
    }

    /// A message from the node at `from`, at `now`; a forwarded packet is
    /// handled in `buf`.
    pub fn peer(
        &mut self,
        bytes: &[u8],
        from: IpAddr,
        now: u64,
        buf: &mut PacketBuf,
    ) -> PeerVerdict {
        let Ok(m) = Message::decode(bytes) else {
            self.drop(NodeDrop::PeerMalformed);
            return PeerVerdict::Done;
        };
        if let Body::Ack = m.body {
            return PeerVerdict::Acked(m.seq);
        }
        if let Some(bi) = self.balancer_index(&m.gateway) {
            if let Body::Forward {
                from: host,
                datagram,
            } = m.body
            {
                buf.set(&datagram);
                return PeerVerdict::Packet(self.receive_as(buf, host, now, true));
            }
            self.balancer_peer(bi, m.seq, m.gateway, m.body, from, now);
            return PeerVerdict::Done;
        }
        let Some(gi) = self.gateway_index(&m.gateway) else {
            self.drop(NodeDrop::PeerMalformed);
            return PeerVerdict::Done;
        };
        match m.body {
            Body::Ack => PeerVerdict::Acked(m.seq),
            Body::Replicate { ack, records } => {
                self.counters.records_received += records.len() as u64;
                let mut refused = 0;
                if let Some(g) = self.gateways.get_mut(gi) {
                    for r in &records {
                        match g.nat.replica(r, now) {
                            Ok(()) | Err(ReplicaError::OwnSlice) => {}
                            Err(_) => refused += 1,
                        }
                    }
                }
                self.drops[NodeDrop::RecordRefused as usize] += refused;
                if ack {
                    self.outbox.push((
                        from,
                        Message {
                            seq: m.seq,
                            gateway: m.gateway,
                            body: Body::Ack,
                        },
                    ));
                }
                PeerVerdict::Done
            }
            Body::HandBack { records } => {
                let mut refused = 0;
                if let Some(g) = self.gateways.get_mut(gi) {
                    for r in &records {
                        match g.nat.adopt(r, now) {
                            Ok(()) => self.counters.adopted += 1,
                            Err(_) => refused += 1,
                        }
                    }
                }
                self.drops[NodeDrop::RecordRefused as usize] += refused;
                PeerVerdict::Done
            }
            Body::Join { place } => {
                self.joined(gi, place, from);
                PeerVerdict::Done
            }
            Body::Neighbor { vni, ip, mac, host } => {
                self.neighbors.insert((vni, ip), Neighbor { host, mac });
                PeerVerdict::Done
            }
            Body::Forward {
                from: host,
                datagram,
            } => {
                buf.set(&datagram);
                PeerVerdict::Packet(self.receive_as(buf, host, now, true))
            }
            Body::LbReplicate { .. } | Body::LbHandBack { .. } => {
                self.drop(NodeDrop::PeerMalformed);
                PeerVerdict::Done
            }
        }
    }

    /// The node at `from` joined place `place`: the flows of its slice
    /// served here go back to it, and if it is this node's buddy now, it
    /// gets this node's flows and the hosts it learned.
    fn joined(&mut self, gi: usize, place: u8, from: IpAddr) {
        let Some(g) = self.gateways.get_mut(gi) else {
            return;
        };
        if place == g.place || usize::from(place) >= g.alive.len() {
            return;
        }
        let id = g.assignment.gateway_id.clone();
        let vni = g.assignment.vni;
        let mut back = Vec::new();
        if g.nat.serves_place(place) {
            g.nat.hand_back(place);
            back = g.nat.records_of(place).collect();
        }
        if let Some(a) = g.alive.get_mut(usize::from(place)) {
            *a = Some(from);
        }
        let mine: Vec<FlowRecord> = if g.buddy() == Some(from) {
            g.nat.records_of(g.place).collect()
        } else {
            Vec::new()
        };
        let tell_neighbors = g.buddy() == Some(from);
        self.counters.handed_back += back.len() as u64;
        self.send_records(from, &id, back, true);
        self.send_records(from, &id, mine, false);
        if tell_neighbors {
            self.send_neighbors(from, &id, vni);
        }
    }

    /// The flow-log records of what every logged gateway and load
    /// balancer carried since the last call (spec 8.2), with times in
    /// milliseconds of the cores' clock, into `out`.
    pub fn harvest_flow_logs(&mut self, out: &mut Vec<FlowLogRecord>) {
        let ms = |s: u32| u64::from(s) * 1000;
        let mut counts = Vec::new();
        for g in &mut self.gateways {
            let Some(logged) = &g.assignment.flow_log else {
                continue;
            };
            counts.clear();
            g.nat.flow_logging().harvest(&mut counts);
            let eni_id = &logged.log.context.eni_id;
            for c in &counts {
                crate::flow_counts::records(eni_id, c, ms, out);
            }
        }
        for b in &mut self.balancers {
            if b.assignment.flow_logs.is_empty() {
                continue;
            }
            counts.clear();
            b.nlb.flow_logging().harvest(&mut counts);
            for c in &counts {
                // The front address a flow came to names its ENI; a front
                // no flow log covers is not logged.
                let front = IpAddr::V4(Ipv4Addr::from_bits(c.flow.arrives.dst));
                if let Some(logged) = b
                    .assignment
                    .flow_logs
                    .iter()
                    .find(|l| l.log.context.primary_ip == front)
                {
                    crate::flow_counts::records(&logged.log.context.eni_id, c, ms, out);
                }
            }
        }
    }

    /// The gateways' and load balancers' ENIs that flow logs cover.
    pub fn logged_enis(&self) -> Vec<LoggedEni> {
        self.gateways
            .iter()
            .filter_map(|g| g.assignment.flow_log.clone())
            .chain(
                self.balancers
                    .iter()
                    .flat_map(|b| b.assignment.flow_logs.iter().cloned()),
            )
            .collect()
    }

    /// Every gateway's figures now.
    pub fn gateway_stats(&self) -> Vec<GatewayStats> {
        self.gateways
            .iter()
            .map(|g| {
                let (place, nodes) = g.nat.place();
                GatewayStats {
                    gateway_id: g.assignment.gateway_id.clone(),
                    vni: g.assignment.vni,
                    place,
                    nodes,
                    serves: (0..nodes).filter(|q| g.nat.serves_place(*q)).collect(),
                    counters: *g.nat.counters(),
                    drops: NatDrop::ALL.map(|d| g.nat.drops(d)),
                    node_dropped: g.dropped,
                    active: g.nat.active_connections(),
                    replicas: g.nat.replicas(),
                    flow_counts_skipped: g.nat.flow_counts_skipped(),
                }
            })
            .collect()
    }
}
