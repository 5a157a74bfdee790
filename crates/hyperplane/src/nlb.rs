//! Network load balancer flows (spec 9), one NLB on one node of its shard,
//! sans-IO: bare IPv4 packets in (the shell strips and adds the Geneve),
//! rewritten bytes and where they go out; time is an argument in seconds;
//! no clocks, sockets or threads, and no allocation on the packet path
//! (only [`Nlb::new`] and [`Nlb::set_health`] allocate).
//!
//! - A client's first packet of a flow (a TCP SYN, or any UDP datagram) to a
//!   front address and a listener port picks a target of the listener's
//!   group by the flow hash (spec 9.2: protocol, both addresses and ports,
//!   and for TCP the SYN's sequence number) over the group's healthy
//!   targets of the allowed AZs (spec 9.5: the front address's own AZ
//!   unless cross-zone is on); with none healthy it fails open over all of
//!   them (spec 9.4). Draining and unused targets never get a new flow.
//! - The choice is kept in the [`flows`] table with its [`FlowRecord`] for
//!   the buddy; later packets follow it even if the target's health
//!   changes, and a draining target's flows end at its deadline.
//! - The destination becomes the target; when client IP preservation is
//!   off (spec 9.3), the source becomes the front address and a port of
//!   this node's slice. Replies get the front address and the client back.
//!   Checksums are updated incrementally ([`transform::apply`]).
//!
//! Everything refused is a counted drop with a named reason.

#[cfg(feature = "bench")]
pub mod bench;
pub mod flows;
pub mod replica;

use core::net::{IpAddr, Ipv4Addr};
use core::ops::RangeInclusive;

use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::layer::Rewrite;
use openvpc_dataplane::transform;
use openvpc_packet::ethernet::ethertype;
use openvpc_packet::flow::{ParsedFlow, parse_ip};
use openvpc_packet::ip::protocol;
use openvpc_packet::tcp::flags;

use crate::flow_counts::{Crossing, FlowLogging, Tuple};
use crate::nat::{DEFAULT_PORTS, Slice, owner_of};
pub use flows::{Flow, FlowState, FlowTable, Key, Origin};
pub use replica::{FlowRecord, RecordError, RecordKind};

/// TCP idle timeout (spec 9.6).
pub const TCP_IDLE_TIMEOUT: u32 = 350;
/// UDP idle timeout (spec 9.2, 9.6).
pub const UDP_IDLE_TIMEOUT: u32 = 120;
/// How long a reset flow lingers so late segments still pass. Not
/// documented by AWS [U].
pub const CLOSED_TIMEOUT: u32 = 10;
/// Listeners per NLB (spec 9.1).
pub const MAX_LISTENERS: usize = 50;
/// Most nodes in a shard (the served mask is 64 bits).
pub const MAX_NODES: u8 = 64;

/// A listener's protocol (TLS is refused upstream until certificates exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    TcpUdp,
}

impl Protocol {
    fn carries(self, ip_proto: u8) -> bool {
        matches!(
            (self, ip_proto),
            (Protocol::Tcp | Protocol::TcpUdp, protocol::TCP)
                | (Protocol::Udp | Protocol::TcpUdp, protocol::UDP)
        )
    }
}

/// A target group's `TargetType` (spec 9.1; `alb` is not served).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetType {
    Instance,
    Ip,
}

/// A target's health as the health checks (or deregistration) set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    Initial,
    Healthy,
    Unhealthy,
    /// Deregistered: established flows continue until `until` (seconds).
    Draining {
        until: u64,
    },
    Unused,
}

/// One registered target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub ip: Ipv4Addr,
    pub port: u16,
    pub az: String,
    pub health: Health,
}

/// A target group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub id: String,
    pub target_type: TargetType,
    pub targets: Vec<Target>,
    /// `preserve_client_ip.enabled` when set; `None` takes spec 9.3's default.
    pub preserve_client_ip: Option<bool>,
    /// `load_balancing.cross_zone.enabled`; `None` is
    /// `use_load_balancer_configuration` (spec 9.5).
    pub cross_zone: Option<bool>,
}

impl TargetGroup {
    /// Whether targets see the client's address for flows of a listener of
    /// `protocol` (spec 9.3): always with UDP or TCP_UDP; for TCP, on by
    /// default for instance targets and off for IP targets, as set.
    pub fn preserves_client_ip(&self, protocol: Protocol) -> bool {
        match (protocol, self.target_type) {
            (Protocol::Udp | Protocol::TcpUdp, _) => true,
            (Protocol::Tcp, TargetType::Instance) => self.preserve_client_ip.unwrap_or(true),
            (Protocol::Tcp, TargetType::Ip) => self.preserve_client_ip.unwrap_or(false),
        }
    }

    /// `HealthyHostCount` and `UnHealthyHostCount`.
    pub fn host_counts(&self) -> (u32, u32) {
        self.targets
            .iter()
            .fold((0, 0), |(h, u), t| match t.health {
                Health::Healthy => (h + 1, u),
                Health::Unhealthy => (h, u + 1),
                _ => (h, u),
            })
    }
}

/// A listener: a port and protocol forwarding to one target group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    pub protocol: Protocol,
    /// Index into [`NlbConfig::target_groups`].
    pub target_group: usize,
}

/// One front address of the NLB and its AZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Front {
    pub address: Ipv4Addr,
    pub az: String,
}

/// One NLB on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlbConfig {
    pub fronts: Vec<Front>,
    pub listeners: Vec<Listener>,
    pub target_groups: Vec<TargetGroup>,
    /// The load balancer's `load_balancing.cross_zone.enabled` (default off).
    pub cross_zone: bool,
    /// This node's index in the NLB's shard, and the shard's size.
    pub node: u8,
    pub nodes: u8,
    /// Most flows held, replicas included.
    pub capacity: usize,
    pub tcp_idle_timeout: u32,
    pub udp_idle_timeout: u32,
    /// Source ports when client IP preservation is off, split among the
    /// shard's nodes as the NAT's are.
    pub ports: RangeInclusive<u16>,
}

impl NlbConfig {
    pub fn new(
        fronts: Vec<Front>,
        listeners: Vec<Listener>,
        target_groups: Vec<TargetGroup>,
        node: u8,
        nodes: u8,
        capacity: usize,
    ) -> NlbConfig {
        NlbConfig {
            fronts,
            listeners,
            target_groups,
            cross_zone: false,
            node,
            nodes,
            capacity,
            tcp_idle_timeout: TCP_IDLE_TIMEOUT,
            udp_idle_timeout: UDP_IDLE_TIMEOUT,
            ports: DEFAULT_PORTS,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NlbConfigError {
    #[error("an NLB needs at least one front address")]
    NoFronts,
    #[error("an NLB has 1 to {MAX_LISTENERS} listeners, got {0}")]
    Listeners(usize),
    #[error("listener {port} forwards to target group {group}, which is not configured")]
    TargetGroup { port: u16, group: usize },
    #[error("a target group holds at most 65,535 targets and an NLB at most 65,535 groups")]
    TooMany,
    #[error("node {node} is not in a shard of {nodes} (1 to {MAX_NODES} nodes)")]
    Node { node: u8, nodes: u8 },
    #[error("source ports must lie in 1024-65535 and leave this node at least one")]
    Ports,
    #[error("the flow table needs a capacity of at least 1")]
    Capacity,
}

/// Why a packet was dropped; each has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NlbDrop {
    /// The packet failed to parse.
    Malformed,
    /// Not IPv4.
    NotIpv4,
    /// Neither TCP nor UDP (spec 9.1: ICMP is not balanced).
    Unsupported,
    /// A fragment: not reassembled or matched yet.
    Fragment,
    /// To an address that is not a front, or a port and protocol of no
    /// listener (spec 9.1).
    NoListener,
    /// The listener's group has no target the flow may go to.
    NoTarget,
    /// A RST that belongs to no flow (a segment of no connection that is
    /// not a RST gets a RST back: [`NlbOutput::Reset`]).
    NoConnection,
    /// A TCP segment of no known flow while the node has just joined its
    /// place: the flow may be on its way back from the buddy, so no RST.
    Joining,
    /// From a target, for no flow.
    NoFlow,
    /// No source port free towards the target: AWS's
    /// `PortAllocationErrorCount`.
    PortAllocation,
    /// The flow table is full.
    TableFull,
    /// A flow of another node, met by a packet already forwarded once.
    NotOwner,
    /// A flow to a draining target whose deregistration delay is over.
    DrainExpired,
    /// The rewrite could not be applied.
    RewriteFailed,
}

impl NlbDrop {
    pub const ALL: [NlbDrop; 14] = [
        NlbDrop::Malformed,
        NlbDrop::NotIpv4,
        NlbDrop::Unsupported,
        NlbDrop::Fragment,
        NlbDrop::NoListener,
        NlbDrop::NoTarget,
        NlbDrop::NoConnection,
        NlbDrop::Joining,
        NlbDrop::NoFlow,
        NlbDrop::PortAllocation,
        NlbDrop::TableFull,
        NlbDrop::NotOwner,
        NlbDrop::DrainExpired,
        NlbDrop::RewriteFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NlbDrop::Malformed => "malformed",
            NlbDrop::NotIpv4 => "not_ipv4",
            NlbDrop::Unsupported => "unsupported",
            NlbDrop::Fragment => "fragment",
            NlbDrop::NoListener => "no_listener",
            NlbDrop::NoTarget => "no_target",
            NlbDrop::NoConnection => "no_connection",
            NlbDrop::Joining => "joining",
            NlbDrop::NoFlow => "no_flow",
            NlbDrop::PortAllocation => "port_allocation",
            NlbDrop::TableFull => "table_full",
            NlbDrop::NotOwner => "not_owner",
            NlbDrop::DrainExpired => "drain_expired",
            NlbDrop::RewriteFailed => "rewrite_failed",
        }
    }
}

/// Where a packet goes; the buffer holds it, rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlbOutput {
    /// To the chosen target. With a record, the shell sends it to the
    /// buddy first (a new flow, a state change or a refresh). `owner` is
    /// the place whose flow it is: the target's replies go back through it.
    ToTarget {
        target: Ipv4Addr,
        owner: u8,
        record: Option<FlowRecord>,
    },
    /// A reply, back towards the client.
    ToClient {
        client: Ipv4Addr,
        record: Option<FlowRecord>,
    },
    /// The flow is node `place`'s (a replica here): the shell forwards the
    /// untouched packet there.
    Forward {
        place: u8,
    },
    /// A TCP segment to a listener that is neither a new connection nor a
    /// known one (spec 9.1): the buffer now holds the RST that answers it,
    /// for the client.
    Reset,
    Drop(NlbDrop),
}

/// The NLB's CloudWatch metrics (spec 9, issue 17) as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NlbCounters {
    /// `NewFlowCount`.
    pub new_flows: u64,
    /// `ProcessedBytes`: both directions, as forwarded.
    pub processed_bytes: u64,
    /// `TCP_Target_Reset_Count`: RSTs from targets.
    pub tcp_target_resets: u64,
    /// Flows that ended by idling out.
    pub idle_timeouts: u64,
    /// RSTs sent to clients for segments of no connection.
    pub resets_sent: u64,
    /// Older flows that gave their tuple towards a target up to a new
    /// connection of the same client port through another front.
    pub tuples_taken_over: u64,
}

/// Why a replication record was not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("the record is of a flow this node decided")]
    OwnFlow,
    #[error("the record's tuple is held by another flow")]
    Conflict,
    #[error("the flow table is full")]
    Full,
    #[error("the record's target is not in its listener's target group here")]
    UnknownTarget,
}

/// The front addresses' AZs, the listeners and the groups as the packet
/// path reads them: flat arrays, and per (group, front) the targets a new
/// flow may pick.
#[derive(Debug)]
struct Compiled {
    fronts: Vec<u32>,
    listeners: Vec<Listener>,
    /// `picks[group][front]`: target indices a new flow may go to.
    picks: Vec<Vec<Vec<u16>>>,
    /// `preserve[listener]`.
    preserve: Vec<bool>,
}

/// One NLB on one node.
#[derive(Debug)]
pub struct Nlb {
    config: NlbConfig,
    compiled: Compiled,
    node: u8,
    nodes: u8,
    slice: Slice,
    port_cursor: u32,
    /// Nodes whose flows this node serves: itself and dead buddies.
    served: u64,
    table: FlowTable,
    sweep_at: u32,
    forwarded: bool,
    /// Until then (seconds, wrapping), a segment of no known flow is
    /// dropped rather than reset: see [`Nlb::quiet_for`].
    quiet_until: u32,
    drops: [u64; NlbDrop::ALL.len()],
    counters: NlbCounters,
    /// While a flow log covers one of its ENIs: what each flow carried.
    flow_counts: FlowLogging,
}

fn secs(now: u64) -> u32 {
    now as u32
}

fn ip_of(octets: &[u8; 16]) -> u32 {
    u32::from_be_bytes([octets[12], octets[13], octets[14], octets[15]])
}

/// A parsed packet's tuple as the flow table keys it.
#[inline]
fn key_of(pf: &ParsedFlow) -> Key {
    Key {
        src: ip_of(&pf.key.src),
        dst: ip_of(&pf.key.dst),
        sport: pf.key.src_port,
        dport: pf.key.dst_port,
        proto: pf.key.protocol,
    }
}

fn v4(bits: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(bits))
}

/// A 64-bit finaliser (MurmurHash3's): the flow hash must be the same on
/// every node, so new flows keep their target choices across a failover.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Spec 9.2's flow hash: protocol, source and destination address and
/// port, and for TCP the SYN's sequence number (0 for UDP).
#[inline]
pub fn flow_hash(proto: u8, src: u32, sport: u16, dst: u32, dport: u16, seq: u32) -> u64 {
    let a = mix(u64::from(src) << 32 | u64::from(dst));
    let b = u64::from(sport) << 48 | u64::from(dport) << 32 | u64::from(seq);
    mix(a ^ mix(b ^ u64::from(proto) << 56))
}

impl Nlb {
    pub fn new(config: NlbConfig) -> Result<Nlb, NlbConfigError> {
        if config.fronts.is_empty() {
            return Err(NlbConfigError::NoFronts);
        }
        let n = config.listeners.len();
        if n == 0 || n > MAX_LISTENERS {
            return Err(NlbConfigError::Listeners(n));
        }
        if let Some(l) = config
            .listeners
            .iter()
            .find(|l| l.target_group >= config.target_groups.len())
        {
            return Err(NlbConfigError::TargetGroup {
                port: l.port,
                group: l.target_group,
            });
        }
        if config.target_groups.len() > usize::from(u16::MAX)
            || config
                .target_groups
                .iter()
                .any(|g| g.targets.len() > usize::from(u16::MAX))
        {
            return Err(NlbConfigError::TooMany);
        }
        if config.nodes == 0 || config.nodes > MAX_NODES || config.node >= config.nodes {
            return Err(NlbConfigError::Node {
                node: config.node,
                nodes: config.nodes,
            });
        }
        let slice = Slice::new(&config.ports, config.node, config.nodes);
        if *config.ports.start() < 1024 || slice.size() == 0 {
            return Err(NlbConfigError::Ports);
        }
        if config.capacity == 0 {
            return Err(NlbConfigError::Capacity);
        }
        let compiled = compile(&config);
        Ok(Nlb {
            node: config.node,
            nodes: config.nodes,
            slice,
            port_cursor: 0,
            served: 1 << config.node,
            table: FlowTable::new(config.capacity),
            sweep_at: 0,
            forwarded: false,
            quiet_until: 0,
            drops: [0; NlbDrop::ALL.len()],
            counters: NlbCounters::default(),
            flow_counts: FlowLogging::default(),
            compiled,
            config,
        })
    }

    pub fn config(&self) -> &NlbConfig {
        &self.config
    }

    /// Its flow counting (on while a flow log covers one of its ENIs); a
    /// flow's front address (`arrives.dst`) names the ENI it crossed.
    pub fn flow_logging(&mut self) -> &mut FlowLogging {
        &mut self.flow_counts
    }

    /// Packets its flow counting could not hold.
    pub fn flow_counts_skipped(&self) -> u64 {
        self.flow_counts.skipped()
    }

    #[inline]
    fn count(
        &mut self,
        slot: u32,
        f: &Flow,
        from_client: bool,
        bytes: u64,
        tcp_flags: u8,
        now: u32,
    ) {
        let crossing = || Crossing {
            proto: f.proto,
            arrives: Tuple {
                src: f.client,
                sport: f.cport,
                dst: f.front,
                dport: f.fport,
            },
            leaves: Tuple {
                src: f.source,
                sport: f.sport,
                dst: f.target,
                dport: f.tport,
            },
        };
        self.flow_counts
            .count(slot, crossing, from_client, bytes, tcp_flags, now);
    }

    /// For `seconds` from `now`, a TCP segment of no known flow is dropped
    /// (`Joining`), not reset: a node new in its place gets its flows back
    /// from the buddy in that time.
    pub fn quiet_for(&mut self, now: u64, seconds: u32) {
        self.quiet_until = secs(now).wrapping_add(seconds);
    }

    /// Takes a changed configuration (targets registered or deregistered,
    /// listeners, attributes) and keeps the flows: each follows its
    /// listener to its group and finds its target again by address and
    /// port. A flow whose target is no longer in its group is ended (its
    /// target is gone, drained). The node's place and the shard's size
    /// must stay: a change of those is a new [`Nlb`].
    pub fn reconfigure(&mut self, config: NlbConfig) -> Result<(), NlbConfigError> {
        if config.node != self.node || config.nodes != self.nodes {
            return Err(NlbConfigError::Node {
                node: config.node,
                nodes: config.nodes,
            });
        }
        // Validate as a new one would be (the table is not allocated twice:
        // a capacity of 1 stands in).
        Nlb::new(NlbConfig {
            capacity: 1,
            ..config.clone()
        })?;
        let mut moved = Vec::new();
        let mut gone = Vec::new();
        for (i, f) in self.table.iter() {
            let record = FlowRecord::of(RecordKind::Upsert, f);
            match resolve_in(&config, &record) {
                Some(place) => moved.push((i, place)),
                None => gone.push(i),
            }
        }
        for (i, (group, slot)) in moved {
            if let Some(f) = self.table.get_mut(i) {
                f.group = group;
                f.slot = slot;
            }
        }
        for i in gone {
            self.table.remove(i);
        }
        self.compiled = compile(&config);
        self.config = config;
        Ok(())
    }

    /// Sets target `target` of group `group`'s health (a health check's
    /// verdict, or a deregistration's draining); new flows follow it at
    /// once, established ones keep their target. False if there is no such
    /// target.
    pub fn set_health(&mut self, group: usize, target: usize, health: Health) -> bool {
        let Some(t) = self
            .config
            .target_groups
            .get_mut(group)
            .and_then(|g| g.targets.get_mut(target))
        else {
            return false;
        };
        t.health = health;
        self.compiled = compile(&self.config);
        true
    }

    /// `HealthyHostCount` and `UnHealthyHostCount` of group `group`.
    pub fn host_counts(&self, group: usize) -> Option<(u32, u32)> {
        self.config
            .target_groups
            .get(group)
            .map(|g| g.host_counts())
    }

    pub fn counters(&self) -> &NlbCounters {
        &self.counters
    }

    /// The drop counter of `reason`.
    pub fn drops(&self, reason: NlbDrop) -> u64 {
        self.drops[reason as usize]
    }

    /// AWS's `PortAllocationErrorCount`.
    pub fn port_allocation_errors(&self) -> u64 {
        self.drops(NlbDrop::PortAllocation)
    }

    /// `ActiveFlowCount`: the flows this node serves.
    pub fn active_flows(&self) -> u32 {
        self.table.count(Origin::Local) + self.table.count(Origin::TakenOver)
    }

    /// Replicas held for the buddy.
    pub fn replicas(&self) -> u32 {
        self.table.count(Origin::Replica)
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    fn drop(&mut self, reason: NlbDrop) -> NlbOutput {
        self.drops[reason as usize] += 1;
        NlbOutput::Drop(reason)
    }

    fn idle_timeout(&self, f: &Flow) -> u32 {
        match (f.state, f.proto) {
            (FlowState::Closed, _) => CLOSED_TIMEOUT,
            (_, protocol::UDP) => self.config.udp_idle_timeout.max(1),
            _ => self.config.tcp_idle_timeout.max(1),
        }
    }

    fn expired(&self, f: &Flow, now: u32) -> bool {
        // A replica gets half a timeout more: the owner refreshes it at
        // most every half timeout.
        let grace = if f.origin == Origin::Replica {
            self.idle_timeout(f) / 2
        } else {
            0
        };
        let deadline = f
            .last_seen
            .wrapping_add(self.idle_timeout(f))
            .wrapping_add(grace);
        now.wrapping_sub(deadline) < u32::MAX / 2
    }

    /// Whether flow `f`'s target is draining and past its deadline.
    fn drained(&self, f: &Flow, now: u64) -> bool {
        matches!(
            self.config
                .target_groups
                .get(usize::from(f.group))
                .and_then(|g| g.targets.get(usize::from(f.slot)))
                .map(|t| t.health),
            Some(Health::Draining { until }) if now >= until
        )
    }

    fn expire_one(&mut self, i: u32) {
        if let Some(f) = self.table.remove(i)
            && f.origin != Origin::Replica
            && f.state != FlowState::Closed
        {
            self.counters.idle_timeouts += 1;
        }
    }

    /// Removes up to `budget` slots' worth of expired flows (idle, or to a
    /// drained target), walking on from where the last call stopped;
    /// returns how many went.
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let t = secs(now);
        let mut dead = [0u32; 64];
        let mut removed = 0;
        let mut left = budget;
        while left > 0 {
            let mut n = 0;
            let this = &*self;
            let (next, looked) = self.table.scan(self.sweep_at, left.min(256), |i, f| {
                if this.expired(f, t) || this.drained(f, now) {
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

    /// A client's packet to a front address.
    pub fn from_client(&mut self, buf: &mut PacketBuf, now: u64) -> NlbOutput {
        match self.parse(buf.data()) {
            Ok(pf) => self.client_packet(buf, &pf, &key_of(&pf), now),
            Err(reason) => self.drop(reason),
        }
    }

    /// A packet a node got for this load balancer, either way, parsed once:
    /// a target's when it is not to a front address (the client's address
    /// is kept) or when its tuple is a flow's reply (the source was
    /// translated), a client's otherwise. Also says whether it was a
    /// client's (so the shell learns where the client lives).
    pub fn from_node(
        &mut self,
        buf: &mut PacketBuf,
        now: u64,
        forwarded: bool,
    ) -> (NlbOutput, bool) {
        let pf = match self.parse(buf.data()) {
            Ok(pf) => pf,
            Err(reason) => return (self.drop(reason), false),
        };
        let key = key_of(&pf);
        self.forwarded = forwarded;
        let from_target = !self.compiled.fronts.contains(&key.dst)
            || (self.table.find_forward(&key).is_none() && self.table.find_reverse(&key).is_some());
        let out = if from_target {
            self.target_packet(buf, &pf, &key, now)
        } else {
            self.client_packet(buf, &pf, &key, now)
        };
        self.forwarded = false;
        (out, !from_target)
    }

    fn client_packet(
        &mut self,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        key: &Key,
        now: u64,
    ) -> NlbOutput {
        let (pf, key) = (*pf, *key);
        let t = secs(now);
        let mut record = None;
        let mut found = self.table.find_forward(&key);
        if let Some(i) = found
            && let Some(f) = self.table.get(i)
        {
            if self.expired(f, t) {
                self.expire_one(i);
                found = None;
            } else if f.origin != Origin::Replica && reopens(f, buf.data(), &pf) {
                // The client closed and connects again from the same port:
                // a new connection, which picks its target afresh. (A
                // replica's owner decides that for its own flows.)
                self.table.remove(i);
                found = None;
            }
        }
        let i = match found {
            Some(i) => i,
            None => match self.open(buf.data(), &pf, &key, t) {
                Ok((i, r)) => {
                    record = Some(r);
                    i
                }
                Err(Opened::Reset) => {
                    if crate::nat::build_reset(buf, &pf).is_none() {
                        return self.drop(NlbDrop::Malformed);
                    }
                    self.counters.resets_sent += 1;
                    return NlbOutput::Reset;
                }
                Err(Opened::Drop(reason)) => return self.drop(reason),
            },
        };
        let Some(f) = self.table.get(i).copied() else {
            return self.drop(NlbDrop::NoFlow);
        };
        if let Some(out) = self.not_served(&f) {
            return out;
        }
        if self.drained(&f, now) {
            self.table.remove(i);
            return self.drop(NlbDrop::DrainExpired);
        }
        let before = f.state;
        if let Some(flow) = self.table.get_mut(i) {
            if pf.tcp_flags & flags::RST != 0 {
                flow.state = FlowState::Closed;
            }
            flow.last_seen = t;
        }
        if record.is_none() {
            record = self.refresh(i, before, t);
        }
        let src = (f.source != f.client || f.sport != f.cport).then_some((v4(f.source), f.sport));
        let rewrite = Rewrite {
            src,
            dst: Some((v4(f.target), f.tport)),
        };
        if transform::apply(buf.data_mut(), &pf, &rewrite).is_err() {
            return self.drop(NlbDrop::RewriteFailed);
        }
        self.counters.processed_bytes += buf.len() as u64;
        self.count(i, &f, true, buf.len() as u64, pf.tcp_flags, t);
        NlbOutput::ToTarget {
            target: Ipv4Addr::from_bits(f.target),
            owner: f.owner,
            record,
        }
    }

    /// A target's packet back to the client (or to the front address when
    /// the client's IP is not preserved).
    pub fn from_target(&mut self, buf: &mut PacketBuf, now: u64) -> NlbOutput {
        match self.parse(buf.data()) {
            Ok(pf) => self.target_packet(buf, &pf, &key_of(&pf), now),
            Err(reason) => self.drop(reason),
        }
    }

    fn target_packet(
        &mut self,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        key: &Key,
        now: u64,
    ) -> NlbOutput {
        let (pf, key) = (*pf, *key);
        let t = secs(now);
        let Some(i) = self.table.find_reverse(&key) else {
            return self.drop(NlbDrop::NoFlow);
        };
        let Some(f) = self.table.get(i).copied() else {
            return self.drop(NlbDrop::NoFlow);
        };
        if self.expired(&f, t) {
            self.expire_one(i);
            return self.drop(NlbDrop::NoFlow);
        }
        if let Some(out) = self.not_served(&f) {
            return out;
        }
        if self.drained(&f, now) {
            self.table.remove(i);
            return self.drop(NlbDrop::DrainExpired);
        }
        let rst = pf.key.protocol == protocol::TCP && pf.tcp_flags & flags::RST != 0;
        if rst {
            self.counters.tcp_target_resets += 1;
        }
        if let Some(flow) = self.table.get_mut(i) {
            flow.state = match flow.state {
                _ if rst => FlowState::Closed,
                FlowState::Opened => FlowState::Established,
                s => s,
            };
            flow.last_seen = t;
        }
        let record = self.refresh(i, f.state, t);
        let dst = (f.source != f.client || f.sport != f.cport).then_some((v4(f.client), f.cport));
        let rewrite = Rewrite {
            src: Some((v4(f.front), f.fport)),
            dst,
        };
        if transform::apply(buf.data_mut(), &pf, &rewrite).is_err() {
            return self.drop(NlbDrop::RewriteFailed);
        }
        self.counters.processed_bytes += buf.len() as u64;
        self.count(i, &f, false, buf.len() as u64, pf.tcp_flags, t);
        NlbOutput::ToClient {
            client: Ipv4Addr::from_bits(f.client),
            record,
        }
    }

    /// [`Nlb::from_client`] for a packet another node forwarded: a flow
    /// that is not this node's is dropped, never forwarded again.
    pub fn from_client_forwarded(&mut self, buf: &mut PacketBuf, now: u64) -> NlbOutput {
        self.forwarded = true;
        let out = self.from_client(buf, now);
        self.forwarded = false;
        out
    }

    fn not_served(&mut self, f: &Flow) -> Option<NlbOutput> {
        if f.origin != Origin::Replica {
            return None;
        }
        if self.forwarded {
            return Some(self.drop(NlbDrop::NotOwner));
        }
        Some(NlbOutput::Forward { place: f.owner })
    }

    #[inline(always)]
    fn parse(&self, data: &[u8]) -> Result<ParsedFlow, NlbDrop> {
        if data.first().is_none_or(|b| b >> 4 != 4) {
            return Err(NlbDrop::NotIpv4);
        }
        let fragment = data
            .get(6..8)
            .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0);
        let pf = parse_ip(data, ethertype::IPV4).map_err(|_| {
            if fragment {
                NlbDrop::Fragment
            } else {
                NlbDrop::Malformed
            }
        })?;
        if !matches!(pf.key.protocol, protocol::TCP | protocol::UDP) {
            return Err(NlbDrop::Unsupported);
        }
        if fragment || pf.later_fragment {
            return Err(NlbDrop::Fragment);
        }
        Ok(pf)
    }

    /// A record for the buddy if the flow's state changed, or if the last
    /// one is half a timeout old (so the replica does not expire).
    fn refresh(&mut self, i: u32, before: FlowState, now: u32) -> Option<FlowRecord> {
        let f = *self.table.get(i)?;
        let half = self.idle_timeout(&f) / 2;
        let flow = self.table.get_mut(i)?;
        if flow.state != before || now.wrapping_sub(flow.replicated_at) >= half {
            flow.replicated_at = now;
            return Some(FlowRecord::of(RecordKind::Upsert, flow));
        }
        None
    }

    /// A new flow for the client's packet, or why not.
    fn open(
        &mut self,
        data: &[u8],
        pf: &ParsedFlow,
        key: &Key,
        now: u32,
    ) -> Result<(u32, FlowRecord), Opened> {
        let c = &self.compiled;
        let front = c
            .fronts
            .iter()
            .position(|&a| a == key.dst)
            .ok_or(NlbDrop::NoListener)?;
        let l = c
            .listeners
            .iter()
            .position(|l| l.port == key.dport && l.protocol.carries(key.proto))
            .ok_or(NlbDrop::NoListener)?;
        let mut seq = 0;
        if key.proto == protocol::TCP {
            match pf.tcp_flags & (flags::SYN | flags::ACK | flags::RST) {
                flags::SYN => {}
                f if f & flags::RST != 0 => return Err(NlbDrop::NoConnection.into()),
                _ if now.wrapping_sub(self.quiet_until) > u32::MAX / 2 => {
                    return Err(NlbDrop::Joining.into());
                }
                _ => return Err(Opened::Reset),
            }
            let at = pf.l4_offset + 4;
            let b = data.get(at..at + 4).ok_or(NlbDrop::Malformed)?;
            seq = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        }
        let group = c.listeners.get(l).map_or(0, |l| l.target_group);
        let picks = c
            .picks
            .get(group)
            .and_then(|p| p.get(front))
            .ok_or(NlbDrop::NoTarget)?;
        if picks.is_empty() {
            return Err(NlbDrop::NoTarget.into());
        }
        let h = flow_hash(key.proto, key.src, key.sport, key.dst, key.dport, seq);
        let slot = picks
            .get(((u128::from(h) * picks.len() as u128) >> 64) as usize)
            .copied()
            .ok_or(NlbDrop::NoTarget)?;
        let target = self
            .config
            .target_groups
            .get(group)
            .and_then(|g| g.targets.get(usize::from(slot)))
            .ok_or(NlbDrop::NoTarget)?;
        let (tip, tport) = (target.ip.to_bits(), target.port);
        let preserve = c.preserve.get(l).copied().unwrap_or(true);
        let (source, sport) = if preserve {
            (key.src, key.sport)
        } else {
            (key.dst, self.allocate(key.dst, tip, tport, key.proto)?)
        };
        let flow = Flow {
            client: key.src,
            front: key.dst,
            cport: key.sport,
            fport: key.dport,
            proto: key.proto,
            target: tip,
            tport,
            source,
            sport,
            group: group as u16,
            slot,
            owner: self.node,
            state: FlowState::Opened,
            origin: Origin::Local,
            last_seen: now,
            replicated_at: now,
            syn_seq: seq,
        };
        // The same client through another front address, with its own
        // address and port kept, to the same target: the target knows one
        // connection per tuple, and a new connection's first packet means
        // the client is done with the old one (it reused its port), so
        // the old flow gives the tuple up. Replies then reach the node the
        // new connection came through, not the old one's front.
        if preserve {
            self.take_tuple(&flow, true);
        }
        let i = self.table.insert(flow).map_err(|e| match e {
            flows::InsertError::Full => NlbDrop::TableFull,
            // Another flow holds the translated source tuple towards the
            // target: no port was free for this one.
            flows::InsertError::Duplicate => NlbDrop::PortAllocation,
        })?;
        self.counters.new_flows += 1;
        Ok((i, FlowRecord::of(RecordKind::Upsert, &flow)))
    }

    /// Frees `flow`'s tuple towards its target from an older flow of
    /// another front (the client reused its port through another front
    /// address): the newer connection has it. A flow this node decided
    /// gives way only to one it decides now (`evict_local`), never to a
    /// record, which may be older. True if a flow went.
    fn take_tuple(&mut self, flow: &Flow, evict_local: bool) -> bool {
        let Some(old) = self.table.find_reverse(&flow.reverse()) else {
            return false;
        };
        let yields = self.table.get(old).is_some_and(|o| {
            o.forward() != flow.forward() && (evict_local || o.origin != Origin::Local)
        });
        if yields {
            self.table.remove(old);
            self.counters.tuples_taken_over += 1;
        }
        yields
    }

    /// A port of this node's slice free towards the target from `front`.
    fn allocate(&mut self, front: u32, target: u32, tport: u16, proto: u8) -> Result<u16, NlbDrop> {
        let size = self.slice.size();
        for k in 0..size {
            let slot = (self.port_cursor + k) % size;
            let port = self.slice.port(slot);
            let reply = Key {
                src: target,
                dst: front,
                sport: tport,
                dport: port,
                proto,
            };
            if self.table.find_reverse(&reply).is_none() {
                self.port_cursor = (slot + 1) % size;
                return Ok(port);
            }
        }
        Err(NlbDrop::PortAllocation)
    }

    /// Resolves a record's target group and target index from its listener
    /// and target address here.
    fn resolve(&self, record: &FlowRecord) -> Option<(u16, u16)> {
        resolve_in(&self.config, record)
    }

    /// Installs (or updates, or forgets) a flow of the buddy from its
    /// record, at `now`.
    pub fn replica(&mut self, record: &FlowRecord, now: u64) -> Result<(), ReplicaError> {
        let now = secs(now);
        if record.owner == self.node {
            return Err(ReplicaError::OwnFlow);
        }
        let origin = if record.owner < MAX_NODES && self.served & (1 << record.owner) != 0 {
            Origin::TakenOver
        } else {
            Origin::Replica
        };
        let key = Key {
            src: record.client.to_bits(),
            dst: record.front.to_bits(),
            sport: record.cport,
            dport: record.fport,
            proto: record.proto,
        };
        let found = self.table.find_forward(&key);
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
                if f.origin == Origin::Local {
                    return Err(ReplicaError::Conflict);
                }
                if f.target == record.target.to_bits()
                    && f.tport == record.tport
                    && f.syn_seq == record.syn_seq
                {
                    f.state = record.state;
                    f.last_seen = now;
                    return Ok(());
                }
                // The owner opened a new connection on the tuple (the
                // client reused its port): the record replaces the old one.
                let (group, slot) = self.resolve(record).ok_or(ReplicaError::UnknownTarget)?;
                self.table.remove(i);
                match self.table.insert(record.flow(origin, group, slot, now)) {
                    Ok(_) => Ok(()),
                    Err(flows::InsertError::Full) => Err(ReplicaError::Full),
                    Err(flows::InsertError::Duplicate) => Err(ReplicaError::Conflict),
                }
            }
            (RecordKind::Upsert, None) => {
                let (group, slot) = self.resolve(record).ok_or(ReplicaError::UnknownTarget)?;
                let flow = record.flow(origin, group, slot, now);
                self.take_tuple(&flow, false);
                match self.table.insert(flow) {
                    Ok(_) => Ok(()),
                    Err(flows::InsertError::Full) => Err(ReplicaError::Full),
                    Err(flows::InsertError::Duplicate) => Err(ReplicaError::Conflict),
                }
            }
        }
    }

    /// Takes back one of this node's own flows from the record the node
    /// that served them while this one was away sends (a hand-back): the
    /// flow is this node's again, to the same target.
    pub fn adopt(&mut self, record: &FlowRecord, now: u64) -> Result<(), ReplicaError> {
        if record.owner != self.node {
            return Err(ReplicaError::Conflict);
        }
        if record.kind == RecordKind::Delete {
            return Ok(());
        }
        let key = Key {
            src: record.client.to_bits(),
            dst: record.front.to_bits(),
            sport: record.cport,
            dport: record.fport,
            proto: record.proto,
        };
        if let Some(i) = self.table.find_forward(&key) {
            // Known already (a record sent twice): refresh it.
            let f = self.table.get_mut(i).ok_or(ReplicaError::Conflict)?;
            if f.target != record.target.to_bits() || f.tport != record.tport {
                return Err(ReplicaError::Conflict);
            }
            f.state = record.state;
            f.last_seen = secs(now);
            return Ok(());
        }
        let (group, slot) = self.resolve(record).ok_or(ReplicaError::UnknownTarget)?;
        match self
            .table
            .insert(record.flow(Origin::Local, group, slot, secs(now)))
        {
            Ok(_) => Ok(()),
            Err(flows::InsertError::Full) => Err(ReplicaError::Full),
            Err(flows::InsertError::Duplicate) => Err(ReplicaError::Conflict),
        }
    }

    /// This node now serves the flows of `node`, its dead buddy: its
    /// replicas here are served from now on, each with a full idle timeout
    /// from `now`, to the targets they had.
    pub fn take_over(&mut self, node: u8, now: u64) {
        if node >= self.nodes || node == self.node {
            return;
        }
        self.served |= 1 << node;
        let now = secs(now);
        self.table.retag(
            Origin::Replica,
            Origin::TakenOver,
            |f| f.owner == node,
            |f| f.last_seen = now,
        );
    }

    /// `node` is back: the flows taken over from it go back to being
    /// replicas (the shell sends it [`Nlb::records_of`]).
    pub fn hand_back(&mut self, node: u8) {
        if node >= self.nodes || node == self.node {
            return;
        }
        self.served &= !(1 << node);
        self.table.retag(
            Origin::TakenOver,
            Origin::Replica,
            |f| f.owner == node,
            |_| {},
        );
    }

    /// Records of every flow `node` decided.
    /// Whether this node serves the flows of place `place`: its own, or
    /// a dead buddy's it took over.
    pub fn serves_place(&self, place: u8) -> bool {
        place < MAX_NODES && self.served & (1 << place) != 0
    }

    pub fn records_of(&self, node: u8) -> impl Iterator<Item = FlowRecord> + '_ {
        self.table
            .iter()
            .filter(move |(_, f)| f.owner == node)
            .map(|(_, f)| FlowRecord::of(RecordKind::Upsert, f))
    }

    /// The node of the shard that owns source port `port` when the client's
    /// IP is not preserved (a reply to the front address finds its node by
    /// it alone).
    pub fn owner_of_port(&self, port: u16) -> u8 {
        owner_of(port, self.nodes)
    }
}

/// The packet path's view of a configuration. A target group's picks for
/// a front address: its healthy targets in the allowed AZs (the front's
/// own unless cross-zone is on, spec 9.5); with none, every target there
/// that is neither draining nor unused (fail open, spec 9.4).
/// Why a client's packet opened no flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opened {
    /// A segment of no connection: answered with a RST.
    Reset,
    Drop(NlbDrop),
}

impl From<NlbDrop> for Opened {
    fn from(reason: NlbDrop) -> Opened {
        Opened::Drop(reason)
    }
}

/// Whether a client's packet on flow `f` is a TCP SYN opening a new
/// connection on the flow's tuple: a SYN with another sequence number than
/// the one that opened the flow (a retransmitted SYN keeps it).
fn reopens(f: &Flow, data: &[u8], pf: &ParsedFlow) -> bool {
    if f.proto != protocol::TCP
        || f.syn_seq == 0
        || pf.tcp_flags & (flags::SYN | flags::ACK | flags::RST) != flags::SYN
    {
        return false;
    }
    let at = pf.l4_offset + 4;
    data.get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(|b| u32::from_be_bytes(b) != f.syn_seq)
}

/// A record's target group and target index in `config`: its listener's
/// group, and the target with its address and port.
fn resolve_in(config: &NlbConfig, record: &FlowRecord) -> Option<(u16, u16)> {
    let l = config
        .listeners
        .iter()
        .find(|l| l.port == record.fport && l.protocol.carries(record.proto))?;
    let g = config.target_groups.get(l.target_group)?;
    let slot = g
        .targets
        .iter()
        .position(|t| t.ip == record.target && t.port == record.tport)?;
    Some((l.target_group as u16, slot as u16))
}

fn compile(config: &NlbConfig) -> Compiled {
    let picks = config
        .target_groups
        .iter()
        .map(|g| {
            let cross = g.cross_zone.unwrap_or(config.cross_zone);
            config
                .fronts
                .iter()
                .map(|front| {
                    let allowed = |t: &(usize, &Target)| cross || t.1.az == front.az;
                    let healthy: Vec<u16> = g
                        .targets
                        .iter()
                        .enumerate()
                        .filter(|t| allowed(t) && t.1.health == Health::Healthy)
                        .map(|(i, _)| i as u16)
                        .collect();
                    if !healthy.is_empty() {
                        return healthy;
                    }
                    g.targets
                        .iter()
                        .enumerate()
                        .filter(|t| {
                            allowed(t)
                                && matches!(
                                    t.1.health,
                                    Health::Unhealthy | Health::Initial | Health::Healthy
                                )
                        })
                        .map(|(i, _)| i as u16)
                        .collect()
                })
                .collect()
        })
        .collect();
    let preserve = config
        .listeners
        .iter()
        .map(|l| {
            config
                .target_groups
                .get(l.target_group)
                .is_none_or(|g| g.preserves_client_ip(l.protocol))
        })
        .collect();
    Compiled {
        fronts: config.fronts.iter().map(|f| f.address.to_bits()).collect(),
        listeners: config.listeners.clone(),
        picks,
        preserve,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(target_type: TargetType, set: Option<bool>) -> TargetGroup {
        TargetGroup {
            id: "tg".into(),
            target_type,
            targets: Vec::new(),
            preserve_client_ip: set,
            cross_zone: None,
        }
    }

    // spec 9.3's defaults: on for instance targets, on for IP targets with
    // UDP or TCP_UDP (cannot be turned off), off for IP targets with TCP.
    #[test]
    fn client_ip_preservation_follows_spec_9_3() {
        let inst = group(TargetType::Instance, None);
        let ip = group(TargetType::Ip, None);
        assert!(inst.preserves_client_ip(Protocol::Tcp));
        assert!(!ip.preserves_client_ip(Protocol::Tcp));
        assert!(ip.preserves_client_ip(Protocol::Udp));
        assert!(ip.preserves_client_ip(Protocol::TcpUdp));
        assert!(group(TargetType::Ip, Some(true)).preserves_client_ip(Protocol::Tcp));
        assert!(!group(TargetType::Instance, Some(false)).preserves_client_ip(Protocol::Tcp));
        assert!(group(TargetType::Ip, Some(false)).preserves_client_ip(Protocol::Udp));
    }

    // The flow hash is the same on every node (failover keeps choices) and
    // depends on every field of spec 9.2.
    #[test]
    fn the_flow_hash_is_fixed_and_uses_every_field() {
        let h = flow_hash(6, 1, 2, 3, 4, 5);
        assert_eq!(h, flow_hash(6, 1, 2, 3, 4, 5));
        for other in [
            flow_hash(17, 1, 2, 3, 4, 5),
            flow_hash(6, 9, 2, 3, 4, 5),
            flow_hash(6, 1, 9, 3, 4, 5),
            flow_hash(6, 1, 2, 9, 4, 5),
            flow_hash(6, 1, 2, 3, 9, 5),
            flow_hash(6, 1, 2, 3, 4, 9),
        ] {
            assert_ne!(h, other);
        }
    }

    // A record that cannot be read is an error, not a panic.
    #[test]
    fn short_and_unknown_records_are_errors() {
        assert_eq!(FlowRecord::decode(&[1; 3]), Err(RecordError::Short(3)));
        let mut b = [0u8; replica::LEN];
        b[0] = 9;
        assert_eq!(FlowRecord::decode(&b), Err(RecordError::Version(9)));
    }
}
