//! Source NAT for NAT gateways (spec 6.2), one gateway on one node of its
//! shard, sans-IO: bare IPv4 packets in (the shell strips and adds the
//! Geneve), rewritten bytes and where they go out; time is an argument in
//! seconds; no clocks, sockets, threads, and no allocation after
//! [`Nat::new`].
//!
//! - Outbound, an instance's first packet (TCP SYN, UDP, ICMP echo request)
//!   makes a flow: a gateway address and a port of this node's slice
//!   ([`ports`]) unique per (address, destination IP, destination port,
//!   protocol), kept both ways in the [`flows`] table; the source is
//!   rewritten with incremental checksums (the dataplane's
//!   [`transform::apply`]). The flow's [`FlowRecord`] is returned with the
//!   packet: the shell sends it to the buddy before the packet leaves.
//! - Inbound, a reply finds its flow by the translated tuple and gets the
//!   instance's address and port back.
//! - Idle flows expire after 350 s; a later TCP packet of the dead
//!   connection from the instance gets a RST back, never a FIN.
//! - Fragments as AWS (spec 6.2): UDP fragments pass (the first with its
//!   flow, later ones by IP identifier), TCP and ICMP fragments are dropped.
//!
//! Everything refused is a counted drop with a named reason; a full table
//! or an exhausted port range never panics.

#[cfg(feature = "bench")]
pub mod bench;
pub mod flows;
pub mod ports;
pub mod replica;

use core::net::{IpAddr, Ipv4Addr};
use core::ops::RangeInclusive;

use crate::flow_counts::{Crossing, FlowLogging, Tuple};
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::layer::Rewrite;
use openvpc_dataplane::transform;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::ethertype;
use openvpc_packet::flow::{ParsedFlow, parse_ip};
use openvpc_packet::icmpv4;
use openvpc_packet::ip::protocol;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpHeader, TcpRepr, flags};

pub use flows::{Flow, FlowState, FlowTable, Key, Origin};
pub use ports::{DEFAULT_PORTS, PER_DESTINATION, Slice, owner_of};
pub use replica::{FlowRecord, RecordError, RecordKind};

/// AWS's idle timeout (spec 6.2).
pub const IDLE_TIMEOUT: u32 = 350;
/// How long a closed TCP flow (both FINs, or a RST) keeps its port, so
/// late segments of it still translate. Not documented by AWS [U].
pub const CLOSED_TIMEOUT: u32 = 10;
/// Gateway addresses: the primary and up to 8 secondaries (issue 16; spec
/// 6.2 says 8 in all by AWS's quota, which the API enforces).
pub const MAX_ADDRESSES: usize = 9;
/// Most nodes in a shard (the served-slices mask is 64 bits).
pub const MAX_NODES: u8 = 64;
/// Packets whose table lookups run back to back in the batch calls.
pub const LOOKUP_BATCH: usize = 32;
/// Fragmented UDP datagrams in flight whose later fragments can be matched.
const FRAGMENTS: usize = 1024;

/// One gateway on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// The gateway's addresses, primary first.
    pub addresses: Vec<Ipv4Addr>,
    /// This node's index in the gateway's shard, and the shard's size.
    pub node: u8,
    pub nodes: u8,
    /// Most flows held, replicas included.
    pub capacity: usize,
    pub idle_timeout: u32,
    pub closed_timeout: u32,
    /// Translated ports, split among the shard's nodes. A test shrinks it
    /// to reach `ErrorPortAllocation` quickly.
    pub ports: RangeInclusive<u16>,
}

impl NatConfig {
    pub fn new(addresses: Vec<Ipv4Addr>, node: u8, nodes: u8, capacity: usize) -> NatConfig {
        NatConfig {
            addresses,
            node,
            nodes,
            capacity,
            idle_timeout: IDLE_TIMEOUT,
            closed_timeout: CLOSED_TIMEOUT,
            ports: DEFAULT_PORTS,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatConfigError {
    #[error("a NAT gateway has 1 to {MAX_ADDRESSES} addresses, got {0}")]
    Addresses(usize),
    #[error("node {node} is not in a shard of {nodes} (1 to {MAX_NODES} nodes)")]
    Node { node: u8, nodes: u8 },
    #[error("translated ports must lie in 1024-65535 and leave this node at least one")]
    Ports,
    #[error("the flow table needs a capacity of at least 1")]
    Capacity,
}

/// Why a packet was dropped; each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NatDrop {
    /// The packet failed to parse.
    Malformed,
    /// Not IPv4 (NAT64 is not served).
    NotIpv4,
    /// A protocol, or an ICMP type, NAT does not translate.
    Unsupported,
    /// No port free towards the destination on any address: AWS's
    /// `ErrorPortAllocation`.
    ErrorPortAllocation,
    /// The flow table (or its table of destinations) is full.
    TableFull,
    /// From outside, for a translation that does not exist (or expired).
    NoTranslation,
    /// From the instance, a TCP segment of no connection that cannot be
    /// answered with a RST (it is a RST itself).
    NoConnection,
    /// A TCP or ICMP fragment: AWS forwards only UDP fragments.
    Fragment,
    /// A later UDP fragment whose first fragment was not seen.
    FragmentUnknown,
    /// An ICMP error: quoted-packet translation is not done yet.
    IcmpError,
    /// A flow that belongs to another node of the shard (a replica here),
    /// met by a packet that was already forwarded once: a packet is never
    /// forwarded twice.
    NotOwner,
    /// From the instance, a TCP segment of no connection while the node is
    /// joining its shard: its flow may be on the way from the buddy, so it
    /// is dropped (TCP sends it again) rather than answered with a RST.
    Joining,
    /// The translation could not be applied.
    RewriteFailed,
}

impl NatDrop {
    pub const ALL: [NatDrop; 13] = [
        NatDrop::Malformed,
        NatDrop::NotIpv4,
        NatDrop::Unsupported,
        NatDrop::ErrorPortAllocation,
        NatDrop::TableFull,
        NatDrop::NoTranslation,
        NatDrop::NoConnection,
        NatDrop::Fragment,
        NatDrop::FragmentUnknown,
        NatDrop::IcmpError,
        NatDrop::NotOwner,
        NatDrop::Joining,
        NatDrop::RewriteFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NatDrop::Malformed => "malformed",
            NatDrop::NotIpv4 => "not_ipv4",
            NatDrop::Unsupported => "unsupported",
            NatDrop::ErrorPortAllocation => "error_port_allocation",
            NatDrop::TableFull => "table_full",
            NatDrop::NoTranslation => "no_translation",
            NatDrop::NoConnection => "no_connection",
            NatDrop::Fragment => "fragment",
            NatDrop::FragmentUnknown => "fragment_unknown",
            NatDrop::IcmpError => "icmp_error",
            NatDrop::NotOwner => "not_owner",
            NatDrop::Joining => "joining",
            NatDrop::RewriteFailed => "rewrite_failed",
        }
    }
}

/// Where a packet goes; the buffer holds it, rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatOutput {
    /// Translated, towards the destination. With a record, the shell sends
    /// it to the buddy first (a new flow, or a state change or refresh).
    ToDestination(Option<FlowRecord>),
    /// A reply translated back, towards the instance.
    ToSource(Option<FlowRecord>),
    /// The buffer now holds a TCP RST for the instance: its connection is
    /// gone (idle timeout, spec 6.2).
    Reset,
    /// The flow is another place's (a replica here): the shell forwards
    /// the untouched packet to the node serving `place`. A packet that was
    /// forwarded already is translated with [`Nat::outbound_forwarded`] /
    /// [`Nat::inbound_forwarded`], which drop instead.
    Forward {
        place: u8,
    },
    Drop(NatDrop),
}

/// The gateway's CloudWatch metrics (spec 6.2), as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatCounters {
    pub connection_attempts: u64,
    pub connections_established: u64,
    pub idle_timeouts: u64,
    pub resets_sent: u64,
    pub bytes_in_from_source: u64,
    pub packets_in_from_source: u64,
    pub bytes_out_to_destination: u64,
    pub packets_out_to_destination: u64,
    pub bytes_in_from_destination: u64,
    pub packets_in_from_destination: u64,
    pub bytes_out_to_source: u64,
    pub packets_out_to_source: u64,
}

/// Why a replication record was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("the record's port belongs to this node's own slice")]
    OwnSlice,
    #[error("the record's tuple is held by another flow")]
    Conflict,
    #[error("the flow table is full")]
    Full,
    #[error("the record's port belongs to another node's slice")]
    OtherSlice,
}

/// A fragmented datagram whose first fragment was translated.
#[derive(Debug, Clone, Copy, Default)]
struct Fragment {
    /// Outside: 0 for outbound, 1 for inbound; 2 marks an empty slot.
    dir: u8,
    ident: u16,
    src: u32,
    dst: u32,
    flow: u32,
    at: u32,
}

/// One gateway's NAT on one node.
#[derive(Debug)]
pub struct Nat {
    addresses: [u32; MAX_ADDRESSES],
    n_addresses: usize,
    node: u8,
    nodes: u8,
    slice: Slice,
    /// Nodes whose port slices this node serves: itself, and dead buddies.
    served: u64,
    idle_timeout: u32,
    closed_timeout: u32,
    table: FlowTable,
    fragments: Box<[Fragment; FRAGMENTS]>,
    sweep_at: u32,
    /// Until then (seconds), a TCP segment of no connection is dropped, not
    /// reset: the node is joining and its flows may be on their way.
    quiet_until: u32,
    /// The packet being translated was forwarded by another node.
    forwarded: bool,
    drops: [u64; NatDrop::ALL.len()],
    counters: NatCounters,
    /// While a flow log covers the gateway: what each flow carried.
    flow_counts: FlowLogging,
}

fn secs(now: u64) -> u32 {
    now as u32
}

fn ip_of(key_octets: &[u8; 16]) -> u32 {
    u32::from_be_bytes([
        key_octets[12],
        key_octets[13],
        key_octets[14],
        key_octets[15],
    ])
}

impl Nat {
    pub fn new(config: NatConfig) -> Result<Nat, NatConfigError> {
        let n = config.addresses.len();
        if n == 0 || n > MAX_ADDRESSES {
            return Err(NatConfigError::Addresses(n));
        }
        if config.nodes == 0 || config.nodes > MAX_NODES || config.node >= config.nodes {
            return Err(NatConfigError::Node {
                node: config.node,
                nodes: config.nodes,
            });
        }
        let slice = Slice::new(&config.ports, config.node, config.nodes);
        if *config.ports.start() < 1024 || slice.size() == 0 {
            return Err(NatConfigError::Ports);
        }
        if config.capacity == 0 {
            return Err(NatConfigError::Capacity);
        }
        let mut addresses = [0; MAX_ADDRESSES];
        for (a, c) in addresses.iter_mut().zip(&config.addresses) {
            *a = c.to_bits();
        }
        let empty = Fragment {
            dir: 2,
            ..Fragment::default()
        };
        Ok(Nat {
            addresses,
            n_addresses: n,
            node: config.node,
            nodes: config.nodes,
            slice,
            served: 1 << config.node,
            idle_timeout: config.idle_timeout.max(1),
            closed_timeout: config.closed_timeout.max(1),
            table: FlowTable::new(config.capacity),
            fragments: Box::new([empty; FRAGMENTS]),
            sweep_at: 0,
            quiet_until: 0,
            forwarded: false,
            drops: [0; NatDrop::ALL.len()],
            counters: NatCounters::default(),
            flow_counts: FlowLogging::default(),
        })
    }

    /// The gateway's flow counting (on while a flow log covers its ENI).
    pub fn flow_logging(&mut self) -> &mut FlowLogging {
        &mut self.flow_counts
    }

    /// Packets its flow counting could not hold.
    pub fn flow_counts_skipped(&self) -> u64 {
        self.flow_counts.skipped()
    }

    #[inline]
    fn count(&mut self, slot: u32, flow: &Flow, dir: Dir, bytes: u64, tcp_flags: u8, now: u32) {
        let crossing = || Crossing {
            proto: flow.proto,
            arrives: Tuple {
                src: flow.src,
                sport: flow.sport,
                dst: flow.dst,
                dport: flow.dport,
            },
            leaves: Tuple {
                src: flow.public,
                sport: flow.pport,
                dst: flow.dst,
                dport: flow.dport,
            },
        };
        self.flow_counts
            .count(slot, crossing, dir == Dir::Out, bytes, tcp_flags, now);
    }

    /// Replaces the gateway's addresses (an address associated or
    /// disassociated). Flows on a removed address live until they expire;
    /// new flows use only the new list.
    pub fn set_addresses(&mut self, addresses: &[Ipv4Addr]) -> Result<(), NatConfigError> {
        if addresses.is_empty() || addresses.len() > MAX_ADDRESSES {
            return Err(NatConfigError::Addresses(addresses.len()));
        }
        for (a, c) in self.addresses.iter_mut().zip(addresses) {
            *a = c.to_bits();
        }
        self.n_addresses = addresses.len();
        Ok(())
    }

    /// This node's place in the shard, and the shard's size.
    pub fn place(&self) -> (u8, u8) {
        (self.node, self.nodes)
    }

    /// Whether this node translates the port slice of `place` (its own, or
    /// a dead buddy's it took over).
    pub fn serves_place(&self, place: u8) -> bool {
        place < self.nodes && self.served & (1 << place) != 0
    }

    /// Until `now + secs`, answer a TCP segment of no connection with a
    /// drop instead of a RST: the node is joining its shard, and the flows
    /// it is to serve come from its buddy within milliseconds.
    pub fn quiet_for(&mut self, now: u64, seconds: u32) {
        self.quiet_until = secs(now).wrapping_add(seconds);
    }

    pub fn counters(&self) -> &NatCounters {
        &self.counters
    }

    /// The drop counter of `reason`.
    pub fn drops(&self, reason: NatDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// AWS's `ErrorPortAllocation`.
    pub fn error_port_allocation(&self) -> u64 {
        self.drops(NatDrop::ErrorPortAllocation)
    }

    /// AWS's `PacketsDropCount`: every drop, whatever the reason.
    pub fn packets_dropped(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// AWS's `ActiveConnectionCount`: the flows this node translates.
    pub fn active_connections(&self) -> u32 {
        self.table.count(Origin::Local) + self.table.count(Origin::TakenOver)
    }

    /// Replicas held for the buddy.
    pub fn replicas(&self) -> u32 {
        self.table.count(Origin::Replica)
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// Bytes of state per flow slot (the table preallocated to its bound,
    /// divided by the bound).
    pub fn bytes_per_flow(&self) -> f64 {
        (self.table.memory() + size_of::<[Fragment; FRAGMENTS]>()) as f64
            / self.table.capacity() as f64
    }

    fn drop(&mut self, reason: NatDrop) -> NatOutput {
        self.drops[reason as usize] += 1;
        NatOutput::Drop(reason)
    }

    fn serves(&self, flow: &Flow) -> bool {
        match flow.origin {
            Origin::Local | Origin::TakenOver => true,
            Origin::Replica => false,
        }
    }

    /// When flow `f` dies, in wrapping seconds. A replica gets half a
    /// timeout more: the primary refreshes it at most every half timeout.
    fn deadline(&self, f: &Flow) -> u32 {
        let t = if f.state == FlowState::Closed {
            self.closed_timeout
        } else {
            self.idle_timeout
        };
        let grace = if f.origin == Origin::Replica {
            self.idle_timeout / 2
        } else {
            0
        };
        f.last_seen.wrapping_add(t).wrapping_add(grace)
    }

    fn expired(&self, f: &Flow, now: u32) -> bool {
        // Wrapping: a deadline "behind" now by less than half the clock.
        now.wrapping_sub(self.deadline(f)) < u32::MAX / 2
    }

    fn expire_one(&mut self, i: u32) {
        if let Some(f) = self.table.remove(i)
            && f.origin != Origin::Replica
            && f.state != FlowState::Closed
        {
            self.counters.idle_timeouts += 1;
        }
    }

    /// Removes up to `budget` slots' worth of expired flows, walking the
    /// table from where the last call stopped; returns how many went. The
    /// shell calls it every second or so with a budget that covers the
    /// table within a fraction of the timeout. Expired flows met by a
    /// packet first are removed then.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let now = secs(now);
        let mut dead = [0u32; 64];
        let mut removed = 0;
        let mut left = budget;
        while left > 0 {
            let step = left.min(256);
            let mut n = 0;
            let start = self.sweep_at;
            let nat = &*self;
            let (next, looked) = self.table.scan(start, step, |i, f| {
                if nat.expired(f, now) {
                    dead[n] = i;
                    n += 1;
                }
                n < dead.len()
            });
            self.sweep_at = next;
            for &i in &dead[..n] {
                self.expire_one(i);
            }
            removed += n;
            left -= looked.max(1).min(left);
        }
        removed
    }

    /// An instance's packet (a bare IPv4 packet), for the outside.
    pub fn outbound(&mut self, buf: &mut PacketBuf, now: u64) -> NatOutput {
        match parse(buf.data()) {
            Ok(pf) => {
                let found = self.lookup_outbound(&pf);
                self.outbound_with(buf, &pf, found, now)
            }
            Err(reason) => self.drop(reason),
        }
    }

    /// [`Nat::outbound`] over a batch, `out[i]` for `bufs[i]`: every
    /// packet's parse, then every table lookup back to back (their cache
    /// misses overlap), then every rewrite, as the edge's batches do.
    pub fn outbound_batch(&mut self, bufs: &mut [PacketBuf], out: &mut [NatOutput], now: u64) {
        self.batch(bufs, out, now, Nat::lookup_outbound, Nat::outbound_with);
    }

    /// A packet from the outside, for an instance.
    pub fn inbound(&mut self, buf: &mut PacketBuf, now: u64) -> NatOutput {
        match parse(buf.data()) {
            Ok(pf) => {
                let found = self.lookup_inbound(&pf);
                self.inbound_with(buf, &pf, found, now)
            }
            Err(reason) => self.drop(reason),
        }
    }

    /// [`Nat::outbound`] for a packet another node forwarded: a flow that
    /// is not this node's is dropped ([`NatDrop::NotOwner`]), never
    /// forwarded again.
    pub fn outbound_forwarded(&mut self, buf: &mut PacketBuf, now: u64) -> NatOutput {
        self.forwarded = true;
        let out = self.outbound(buf, now);
        self.forwarded = false;
        out
    }

    /// [`Nat::inbound`] for a packet another node forwarded.
    pub fn inbound_forwarded(&mut self, buf: &mut PacketBuf, now: u64) -> NatOutput {
        self.forwarded = true;
        let out = self.inbound(buf, now);
        self.forwarded = false;
        out
    }

    /// A flow here that is another place's: forwarded to it, or dropped if
    /// it was forwarded here already.
    fn not_mine(&mut self, f: &Flow) -> NatOutput {
        if self.forwarded {
            return self.drop(NatDrop::NotOwner);
        }
        NatOutput::Forward {
            place: owner_of(f.pport, self.nodes),
        }
    }

    /// [`Nat::inbound`] over a batch, as [`Nat::outbound_batch`].
    pub fn inbound_batch(&mut self, bufs: &mut [PacketBuf], out: &mut [NatOutput], now: u64) {
        self.batch(bufs, out, now, Nat::lookup_inbound, Nat::inbound_with);
    }

    fn batch(
        &mut self,
        bufs: &mut [PacketBuf],
        out: &mut [NatOutput],
        now: u64,
        lookup: fn(&Nat, &ParsedFlow) -> Option<u32>,
        translate: fn(&mut Nat, &mut PacketBuf, &ParsedFlow, Option<u32>, u64) -> NatOutput,
    ) {
        for (bufs, out) in bufs
            .chunks_mut(LOOKUP_BATCH)
            .zip(out.chunks_mut(LOOKUP_BATCH))
        {
            let mut parsed: [Option<Result<ParsedFlow, NatDrop>>; LOOKUP_BATCH] =
                [None; LOOKUP_BATCH];
            for (p, buf) in parsed.iter_mut().zip(bufs.iter()) {
                *p = Some(parse(buf.data()));
            }
            let mut found = [None; LOOKUP_BATCH];
            for (f, p) in found.iter_mut().zip(&parsed) {
                if let Some(Ok(pf)) = p {
                    *f = lookup(self, pf);
                }
            }
            for (((buf, o), p), f) in bufs.iter_mut().zip(out.iter_mut()).zip(&parsed).zip(found) {
                *o = match p {
                    Some(Ok(pf)) => translate(self, buf, pf, f, now),
                    Some(Err(reason)) => self.drop(*reason),
                    None => self.drop(NatDrop::Malformed),
                };
            }
        }
    }

    /// The flow of an instance's packet, by its original tuple.
    #[inline]
    fn lookup_outbound(&self, pf: &ParsedFlow) -> Option<u32> {
        if pf.later_fragment {
            return None;
        }
        let key = outbound_key(pf);
        self.table.find_original(&key, self.table.hash(&key))
    }

    /// The flow of a reply, by its translated tuple.
    #[inline]
    fn lookup_inbound(&self, pf: &ParsedFlow) -> Option<u32> {
        if pf.later_fragment {
            return None;
        }
        let key = inbound_key(pf);
        self.table.find_translated(&key, self.table.hash(&key))
    }

    fn outbound_with(
        &mut self,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        found: Option<u32>,
        now: u64,
    ) -> NatOutput {
        let now = secs(now);
        let len = buf.len() as u64;
        self.counters.bytes_in_from_source += len;
        self.counters.packets_in_from_source += 1;
        if let Some(reason) = self.refuse(buf.data(), pf, Dir::Out) {
            return self.drop(reason);
        }
        if pf.later_fragment {
            return self.later_fragment(buf, pf, Dir::Out, now);
        }
        let mut record = None;
        let mut found = found.filter(|&i| self.table.get(i).is_some());
        if let Some(i) = found
            && let Some(f) = self.table.get(i).copied()
            && self.expired(&f, now)
        {
            self.expire_one(i);
            found = None;
        }
        // A miss looks again: an earlier packet of the same batch may have
        // opened the flow since the batch's lookups ran.
        let i = match found.or_else(|| self.lookup_outbound(pf)) {
            Some(i) => i,
            None => match self.open(pf, now) {
                Ok((i, r)) => {
                    record = Some(r);
                    i
                }
                Err(NatOutput::Reset) => {
                    if Nat::build_reset(buf, pf).is_none() {
                        return self.drop(NatDrop::Malformed);
                    }
                    self.counters.resets_sent += 1;
                    return NatOutput::Reset;
                }
                Err(out) => return out,
            },
        };
        let Some(flow) = self.table.get_mut(i) else {
            return self.drop(NatDrop::NoTranslation);
        };
        if flow.origin == Origin::Replica {
            let f = *flow;
            return self.not_mine(&f);
        }
        let before = flow.state;
        if pf.key.protocol == protocol::TCP {
            flow.state = match (flow.state, pf.tcp_flags) {
                (_, f) if f & flags::RST != 0 => FlowState::Closed,
                // The instance reuses the tuple of a closed connection.
                (FlowState::Closed, f) if f & (flags::SYN | flags::ACK) == flags::SYN => {
                    self.counters.connection_attempts += 1;
                    FlowState::Opened
                }
                (FlowState::FinIn, f) if f & flags::FIN != 0 => FlowState::Closed,
                (FlowState::Opened | FlowState::Established, f) if f & flags::FIN != 0 => {
                    FlowState::FinOut
                }
                (s, _) => s,
            };
        }
        flow.last_seen = now;
        let flow = *flow;
        if record.is_none() {
            record = self.refresh(i, before, now);
        }
        let rewrite = Rewrite {
            src: Some((IpAddr::V4(Ipv4Addr::from_bits(flow.public)), flow.pport)),
            dst: None,
        };
        if transform::apply(buf.data_mut(), pf, &rewrite).is_err() {
            return self.drop(NatDrop::RewriteFailed);
        }
        if is_first_fragment(buf.data()) {
            self.remember_fragment(buf.data(), Dir::Out, i, now);
        }
        self.count(i, &flow, Dir::Out, len, pf.tcp_flags, now);
        self.counters.bytes_out_to_destination += len;
        self.counters.packets_out_to_destination += 1;
        NatOutput::ToDestination(record)
    }

    /// A record for the buddy if the flow's state changed, or if the last
    /// one is half a timeout old (so the replica does not expire).
    fn refresh(&mut self, i: u32, before: FlowState, now: u32) -> Option<FlowRecord> {
        let half = self.idle_timeout / 2;
        let f = self.table.get_mut(i)?;
        if f.state != before || now.wrapping_sub(f.replicated_at) >= half {
            f.replicated_at = now;
            return Some(FlowRecord::of(RecordKind::Upsert, f));
        }
        None
    }

    /// A new flow for the instance's packet `pf`, or what to do instead.
    fn open(&mut self, pf: &ParsedFlow, now: u32) -> Result<(u32, FlowRecord), NatOutput> {
        match pf.key.protocol {
            protocol::TCP
                if pf.tcp_flags & (flags::SYN | flags::ACK | flags::RST) == flags::SYN => {}
            protocol::TCP if pf.tcp_flags & flags::RST != 0 => {
                return Err(self.drop(NatDrop::NoConnection));
            }
            // Joining: the connection may be the buddy's, on its way here.
            protocol::TCP if now.wrapping_sub(self.quiet_until) > u32::MAX / 2 => {
                return Err(self.drop(NatDrop::Joining));
            }
            // A segment of a connection that is gone: RST, never a FIN.
            protocol::TCP => return Err(NatOutput::Reset),
            protocol::UDP => {}
            protocol::ICMP if pf.icmp_type == icmpv4::types::ECHO_REQUEST => {}
            _ => return Err(self.drop(NatDrop::Unsupported)),
        }
        self.counters.connection_attempts += 1;
        let key = outbound_key(pf);
        let Some((public, pport)) = self.allocate(&key)? else {
            return Err(self.drop(NatDrop::ErrorPortAllocation));
        };
        let flow = Flow {
            src: key.local,
            dst: key.remote,
            public,
            sport: key.lport,
            dport: key.rport,
            pport,
            proto: key.proto,
            state: FlowState::Opened,
            origin: Origin::Local,
            last_seen: now,
            replicated_at: now,
        };
        match self.table.insert(flow) {
            Ok(i) => Ok((i, FlowRecord::of(RecordKind::Upsert, &flow))),
            Err(_) => {
                self.release(&flow);
                Err(self.drop(NatDrop::TableFull))
            }
        }
    }

    /// A gateway address and a free port of this node's slice towards the
    /// destination of `key`: the addresses are tried from one picked by
    /// the flow's hash (spreading flows over them), the ports from where
    /// the last search towards that destination stopped. `Ok(None)`: every
    /// address is out of ports for it.
    fn allocate(&mut self, key: &Key) -> Result<Option<(u32, u16)>, NatOutput> {
        let h = self.table.hash(key);
        let size = self.slice.size();
        let n = self.n_addresses;
        for a in 0..n {
            let public = self.addresses[(h as usize + a) % n];
            let dest = Key {
                local: public,
                remote: key.remote,
                lport: 0,
                rport: key.rport,
                proto: key.proto,
            };
            let (in_use, cursor) = match self.table.dest(&dest) {
                Some(d) => (d.in_use, d.cursor),
                // A fresh destination starts at a port picked by the hash
                // (RFC 6056: not predictable from outside).
                None => (0, (h >> 32) as u32 % size),
            };
            if in_use >= size {
                continue;
            }
            for k in 0..size {
                let slot = (cursor + k) % size;
                let port = self.slice.port(slot);
                let taken = self.table.translated_in_use(&Key {
                    lport: port,
                    ..dest
                });
                if !taken {
                    if !self.table.take_port(&dest, (slot + 1) % size) {
                        return Err(self.drop(NatDrop::TableFull));
                    }
                    return Ok(Some((public, port)));
                }
            }
        }
        Ok(None)
    }

    /// Gives back the port of a flow that could not be stored.
    fn release(&mut self, flow: &Flow) {
        self.table.release_port(flow);
    }

    fn inbound_with(
        &mut self,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        found: Option<u32>,
        now: u64,
    ) -> NatOutput {
        let now = secs(now);
        let len = buf.len() as u64;
        self.counters.bytes_in_from_destination += len;
        self.counters.packets_in_from_destination += 1;
        if let Some(reason) = self.refuse(buf.data(), pf, Dir::In) {
            return self.drop(reason);
        }
        if pf.later_fragment {
            return self.later_fragment(buf, pf, Dir::In, now);
        }
        let Some(i) = found else {
            return self.drop(NatDrop::NoTranslation);
        };
        let Some(f) = self.table.get(i).copied() else {
            return self.drop(NatDrop::NoTranslation);
        };
        if self.expired(&f, now) {
            self.expire_one(i);
            return self.drop(NatDrop::NoTranslation);
        }
        if !self.serves(&f) {
            return self.not_mine(&f);
        }
        let mut established = false;
        let Some(flow) = self.table.get_mut(i) else {
            return self.drop(NatDrop::NoTranslation);
        };
        let before = flow.state;
        flow.state = if pf.key.protocol == protocol::TCP {
            match (flow.state, pf.tcp_flags) {
                (_, f) if f & flags::RST != 0 => FlowState::Closed,
                (FlowState::Opened, f)
                    if f & (flags::SYN | flags::ACK) == flags::SYN | flags::ACK =>
                {
                    established = true;
                    FlowState::Established
                }
                (FlowState::FinOut, f) if f & flags::FIN != 0 => FlowState::Closed,
                (FlowState::Opened | FlowState::Established, f) if f & flags::FIN != 0 => {
                    FlowState::FinIn
                }
                (s, _) => s,
            }
        } else if flow.state == FlowState::Opened {
            established = true;
            FlowState::Established
        } else {
            flow.state
        };
        flow.last_seen = now;
        let flow = *flow;
        if established {
            self.counters.connections_established += 1;
        }
        let record = self.refresh(i, before, now);
        let rewrite = Rewrite {
            src: None,
            dst: Some((IpAddr::V4(Ipv4Addr::from_bits(flow.src)), flow.sport)),
        };
        if transform::apply(buf.data_mut(), pf, &rewrite).is_err() {
            return self.drop(NatDrop::RewriteFailed);
        }
        if is_first_fragment(buf.data()) {
            self.remember_fragment(buf.data(), Dir::In, i, now);
        }
        self.count(i, &flow, Dir::In, len, pf.tcp_flags, now);
        self.counters.bytes_out_to_source += len;
        self.counters.packets_out_to_source += 1;
        NatOutput::ToSource(record)
    }

    /// What a packet's protocol alone rules out.
    fn refuse(&self, packet: &[u8], pf: &ParsedFlow, dir: Dir) -> Option<NatDrop> {
        let fragment = pf.later_fragment || is_first_fragment(packet);
        match pf.key.protocol {
            protocol::UDP => None,
            // spec 6.2: TCP and ICMP fragments are dropped.
            protocol::TCP | protocol::ICMP if fragment => Some(NatDrop::Fragment),
            protocol::TCP => None,
            protocol::ICMP if pf.icmp_error => Some(NatDrop::IcmpError),
            protocol::ICMP => {
                let want = match dir {
                    Dir::Out => icmpv4::types::ECHO_REQUEST,
                    Dir::In => icmpv4::types::ECHO_REPLY,
                };
                (pf.icmp_type != want).then_some(NatDrop::Unsupported)
            }
            _ => Some(NatDrop::Unsupported),
        }
    }

    fn fragment_slot(&self, src: u32, dst: u32, ident: u16) -> usize {
        let h = self.table.hash(&Key {
            local: src,
            remote: dst,
            lport: ident,
            rport: 0,
            proto: protocol::UDP,
        });
        (h as usize) % FRAGMENTS
    }

    /// Notes the first fragment of a datagram (its addresses as they
    /// arrive) so its later fragments find the flow. `packet` is the
    /// rewritten packet; the key is taken on the side that does not change.
    fn remember_fragment(&mut self, packet: &[u8], dir: Dir, flow: u32, now: u32) {
        let Some((ident, src, dst)) = frag_fields(packet) else {
            return;
        };
        // The arriving later fragments carry the untranslated addresses.
        let Some(f) = self.table.get(flow) else {
            return;
        };
        let (src, dst) = match dir {
            Dir::Out => (f.src, dst),
            Dir::In => (src, f.public),
        };
        let slot = self.fragment_slot(src, dst, ident);
        self.fragments[slot] = Fragment {
            dir: dir as u8,
            ident,
            src,
            dst,
            flow,
            at: now,
        };
    }

    fn later_fragment(
        &mut self,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        dir: Dir,
        now: u32,
    ) -> NatOutput {
        let Some((ident, src, dst)) = frag_fields(buf.data()) else {
            return self.drop(NatDrop::Malformed);
        };
        let slot = self.fragment_slot(src, dst, ident);
        let fr = self.fragments[slot];
        // A datagram's fragments arrive within seconds; older notes are stale.
        let fresh = now.wrapping_sub(fr.at) <= 30;
        if fr.dir != dir as u8 || fr.ident != ident || fr.src != src || fr.dst != dst || !fresh {
            return self.drop(NatDrop::FragmentUnknown);
        }
        let Some(flow) = self.table.get(fr.flow).copied() else {
            return self.drop(NatDrop::FragmentUnknown);
        };
        let (rewrite, ok) = match dir {
            Dir::Out => (
                Rewrite {
                    src: Some((IpAddr::V4(Ipv4Addr::from_bits(flow.public)), 0)),
                    dst: None,
                },
                flow.src == src,
            ),
            Dir::In => (
                Rewrite {
                    src: None,
                    dst: Some((IpAddr::V4(Ipv4Addr::from_bits(flow.src)), 0)),
                },
                flow.public == dst,
            ),
        };
        if !ok || !self.serves(&flow) {
            return self.drop(NatDrop::FragmentUnknown);
        }
        if transform::apply(buf.data_mut(), pf, &rewrite).is_err() {
            return self.drop(NatDrop::RewriteFailed);
        }
        let len = buf.len() as u64;
        self.count(fr.flow, &flow, dir, len, 0, now);
        match dir {
            Dir::Out => {
                self.counters.bytes_out_to_destination += len;
                self.counters.packets_out_to_destination += 1;
                NatOutput::ToDestination(None)
            }
            Dir::In => {
                self.counters.bytes_out_to_source += len;
                self.counters.packets_out_to_source += 1;
                NatOutput::ToSource(None)
            }
        }
    }

    /// Installs (or updates, or forgets) a flow of the buddy from its
    /// record, at `now`.
    pub fn replica(&mut self, record: &FlowRecord, now: u64) -> Result<(), ReplicaError> {
        let now = secs(now);
        let owner = owner_of(record.pport, self.nodes);
        if owner == self.node {
            return Err(ReplicaError::OwnSlice);
        }
        let origin = if self.served & (1 << owner) != 0 {
            Origin::TakenOver
        } else {
            Origin::Replica
        };
        let flow = record.flow(origin, now);
        let key = flow.original();
        let found = self.table.find_original(&key, self.table.hash(&key));
        match (record.kind, found) {
            (RecordKind::Delete, Some(i)) => {
                if self.table.get(i).is_some_and(|f| f.origin == Origin::Local) {
                    return Err(ReplicaError::Conflict);
                }
                self.table.remove(i);
                Ok(())
            }
            (RecordKind::Delete, None) => Ok(()),
            (RecordKind::Upsert, Some(i)) => {
                let Some(f) = self.table.get_mut(i) else {
                    return Err(ReplicaError::Conflict);
                };
                if f.origin == Origin::Local || f.translated() != flow.translated() {
                    return Err(ReplicaError::Conflict);
                }
                f.state = flow.state;
                f.last_seen = now;
                Ok(())
            }
            (RecordKind::Upsert, None) => match self.table.insert(flow) {
                Ok(_) => Ok(()),
                Err(flows::InsertError::Full) => Err(ReplicaError::Full),
                Err(flows::InsertError::Duplicate) => Err(ReplicaError::Conflict),
            },
        }
    }

    /// Makes a flow of this node's own slice from a record the node that
    /// served the slice while this one was away hands back: it is
    /// translated here from now on, its port counted as taken.
    pub fn adopt(&mut self, record: &FlowRecord, now: u64) -> Result<(), ReplicaError> {
        if owner_of(record.pport, self.nodes) != self.node {
            return Err(ReplicaError::OtherSlice);
        }
        if record.kind == RecordKind::Delete {
            return Ok(());
        }
        let flow = record.flow(Origin::Local, secs(now));
        let key = flow.original();
        if let Some(i) = self.table.find_original(&key, self.table.hash(&key)) {
            // Known already (a record sent twice): refresh it.
            let Some(f) = self.table.get_mut(i) else {
                return Err(ReplicaError::Conflict);
            };
            if f.translated() != flow.translated() {
                return Err(ReplicaError::Conflict);
            }
            f.state = flow.state;
            f.last_seen = flow.last_seen;
            return Ok(());
        }
        match self.table.insert(flow) {
            Ok(_) => {}
            Err(flows::InsertError::Full) => return Err(ReplicaError::Full),
            Err(flows::InsertError::Duplicate) => return Err(ReplicaError::Conflict),
        }
        let dest = Key {
            lport: 0,
            ..flow.translated()
        };
        let cursor = self.table.dest(&dest).map_or(0, |d| d.cursor);
        if !self.table.take_port(&dest, cursor) {
            return Err(ReplicaError::Full);
        }
        Ok(())
    }

    /// This node now serves the port slice of `node`, its dead buddy: the
    /// buddy's replicas here are translated from now on, each with a full
    /// idle timeout from `now`.
    pub fn take_over(&mut self, node: u8, now: u64) {
        if node >= self.nodes || node == self.node {
            return;
        }
        self.served |= 1 << node;
        let (now, nodes) = (secs(now), self.nodes);
        self.table.retag(
            Origin::Replica,
            Origin::TakenOver,
            |f| owner_of(f.pport, nodes) == node,
            |f| f.last_seen = now,
        );
    }

    /// `node` is back: its slice is its own again, and the flows taken over
    /// go back to being replicas (the shell sends it [`Nat::records_of`]).
    pub fn hand_back(&mut self, node: u8) {
        if node >= self.nodes || node == self.node {
            return;
        }
        self.served &= !(1 << node);
        let nodes = self.nodes;
        self.table.retag(
            Origin::TakenOver,
            Origin::Replica,
            |f| owner_of(f.pport, nodes) == node,
            |_| {},
        );
    }

    /// Records of every flow whose port belongs to `node`'s slice: what a
    /// rejoining node (or a new buddy) needs.
    pub fn records_of(&self, node: u8) -> impl Iterator<Item = FlowRecord> + '_ {
        self.table
            .iter()
            .filter(move |(_, f)| owner_of(f.pport, self.nodes) == node)
            .map(|(_, f)| FlowRecord::of(RecordKind::Upsert, f))
    }

    /// Builds, in `buf`, the RST that answers the instance's TCP segment
    /// `pf` (RFC 9293 §3.10.7.1: from the segment's destination, with the
    /// sequence number its ACK asks for, or acknowledging it if it had
    /// none).
    fn build_reset(buf: &mut PacketBuf, pf: &ParsedFlow) -> Option<()> {
        build_reset(buf, pf)
    }
}

/// Replaces the TCP segment in `buf` (parsed as `pf`) with the RST that
/// answers it (RFC 9293 3.10.7.1: a segment of no connection), addressed
/// back to its sender; `None` if the segment is too short to answer.
pub(crate) fn build_reset(buf: &mut PacketBuf, pf: &ParsedFlow) -> Option<()> {
    let data = buf.data();
    let seg = TcpHeader::view(data.get(pf.l4_offset..pf.ip_len)?).ok()?;
    let h = seg.header;
    let (src, dst) = (ip_of(&pf.key.src), ip_of(&pf.key.dst));
    let mut tcp = TcpRepr::new(pf.key.dst_port, pf.key.src_port, flags::RST);
    tcp.window = 0;
    if h.flags & flags::ACK != 0 {
        tcp.seq = h.ack.get();
    } else {
        let len = seg.payload.len() as u32
            + u32::from(h.flags & flags::SYN != 0)
            + u32::from(h.flags & flags::FIN != 0);
        tcp.ack = h.seq.get().wrapping_add(len);
        tcp.flags |= flags::ACK;
    }
    let mut out = [0u8; 40];
    let n = PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(
            Ipv4Addr::from_bits(dst),
            Ipv4Addr::from_bits(src),
            protocol::TCP,
            0,
        )),
        l4: L4Repr::Tcp(tcp),
    }
    .emit(&[], &mut out)
    .ok()?;
    buf.set(out.get(..n)?);
    Some(())
}

/// Which way a packet crosses the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Dir {
    Out = 0,
    In = 1,
}

/// Parses a bare packet; only IPv4 is translated.
#[inline(always)]
fn parse(data: &[u8]) -> Result<ParsedFlow, NatDrop> {
    if data.first().is_none_or(|b| b >> 4 != 4) {
        return Err(NatDrop::NotIpv4);
    }
    parse_ip(data, ethertype::IPV4).map_err(|_| {
        // A TCP or ICMP fragment too short for its header is still a
        // fragment AWS drops (spec 6.2), whatever else is wrong with it.
        match openvpc_packet::ipv4::Ipv4Header::view(data) {
            Ok(ip) if ip.header.is_fragment() && ip.header.protocol != protocol::UDP => {
                NatDrop::Fragment
            }
            _ => NatDrop::Malformed,
        }
    })
}

/// The original tuple of an instance's packet.
#[inline]
fn outbound_key(pf: &ParsedFlow) -> Key {
    let icmp = pf.key.protocol == protocol::ICMP;
    Key {
        local: ip_of(&pf.key.src),
        remote: ip_of(&pf.key.dst),
        lport: pf.key.src_port,
        rport: if icmp { 0 } else { pf.key.dst_port },
        proto: pf.key.protocol,
    }
}

/// The translated tuple of a reply.
#[inline]
fn inbound_key(pf: &ParsedFlow) -> Key {
    let icmp = pf.key.protocol == protocol::ICMP;
    Key {
        local: ip_of(&pf.key.dst),
        remote: ip_of(&pf.key.src),
        lport: pf.key.dst_port,
        rport: if icmp { 0 } else { pf.key.src_port },
        proto: pf.key.protocol,
    }
}

/// More fragments follow and the offset is 0: the first fragment.
fn is_first_fragment(packet: &[u8]) -> bool {
    packet
        .get(6..8)
        .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff == 0x2000)
}

/// (identifier, source, destination) of an IPv4 packet.
fn frag_fields(packet: &[u8]) -> Option<(u16, u32, u32)> {
    let ident = u16::from_be_bytes(packet.get(4..6)?.try_into().ok()?);
    let src = u32::from_be_bytes(packet.get(12..16)?.try_into().ok()?);
    let dst = u32::from_be_bytes(packet.get(16..20)?.try_into().ok()?);
    Some((ident, src, dst))
}
