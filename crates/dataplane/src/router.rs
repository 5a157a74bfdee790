//! The per-host virtual router: the local ENIs and the packet path between
//! them and the underlay (DESIGN.md, "The packet path").
//!
//! A frame from an instance goes through the gateway layer (ARP, DHCP), then
//! the flow table. On a hit the compiled hop is applied and no rule is
//! evaluated; on a miss the slow path runs security groups, the network ACL,
//! the route table and the mapping lookup, and compiles the result into the
//! entry. A frame from the underlay is decapsulated, checked against the
//! local ENIs of its VNI (isolation is enforced at both ends) and goes
//! through the same table in the ingress direction.
//!
//! Sans-IO: the caller passes frames and the time, and gets back an
//! [`Output`] saying where the frame (rewritten in place) must go.

use core::net::IpAddr;
use hashbrown::HashMap;
use std::sync::Arc;

use openvpc_model::rule::{PacketFields, RuleAction};
use openvpc_packet::ethernet::{self, EthernetHeader, ethertype};
use openvpc_packet::flow::{self, ParsedFlow, entropy_port};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};
use openvpc_packet::{FlowHasher, FlowKey, MacAddr};

use crate::buf::PacketBuf;
use crate::conntrack::{Conn, Direction, Protocol, Verdict};
use crate::drop::{DropCounters, DropReason};
use crate::eni::{EniConfig, EniError};
use crate::flow_table::{FlowEntry, FlowTable, Hop, TableStats};
use crate::flowlog::{FlowLogRecord, LogAction, RejectLog};
use crate::gateway::{self, GatewayConfig};
use crate::mapping::{Lookup, Mapping};
use crate::policy::{SgVerdict, Way, evaluate_groups};
use crate::route::RouteTarget;

/// A local ENI's slot; also its conntrack zone.
pub type EniIndex = u16;

/// Host-wide settings of a router.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// This host's underlay address: mappings that point here are local.
    pub underlay: IpAddr,
    /// The MAC the VPC router answers and routes with.
    pub router_mac: MacAddr,
    /// Most flows tracked at once (over all ENIs).
    pub flow_capacity: usize,
    /// Most distinct rejected flows counted per flow-log interval.
    pub reject_log_capacity: usize,
    /// The MTU instances are told over DHCP: the underlay MTU minus the
    /// encapsulation.
    pub instance_mtu: u16,
}

impl RouterConfig {
    /// Defaults for a host on a 1500-byte underlay.
    pub fn new(underlay: IpAddr) -> Self {
        RouterConfig {
            underlay,
            router_mac: MacAddr([0x02, 0x6f, 0x76, 0x70, 0x63, 0x01]),
            flow_capacity: 1 << 20,
            reject_log_capacity: 1 << 16,
            instance_mtu: 1500 - openvpc_packet::geneve::OVERHEAD_V4 as u16,
        }
    }
}

/// Where a processed frame goes. The frame in the buffer has been rewritten
/// for that destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Send the buffer (Geneve header + inner frame) as one UDP datagram to
    /// this host, port 6081, from this source port.
    Underlay {
        dst: IpAddr,
        src_port: u16,
    },
    /// Write the buffer (an Ethernet frame) to this local ENI's device.
    Instance(EniIndex),
    Drop(DropReason),
    /// The destination is being looked up; hold the frame and retry.
    Pending,
}

/// Packet counters besides drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub fast_path: u64,
    pub slow_path: u64,
    pub gateway_replies: u64,
    pub pending: u64,
}

/// A resolved underlay next hop, shared by every flow that uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct NextHop {
    underlay: IpAddr,
    vni: u32,
    dst_mac: MacAddr,
    src_mac: MacAddr,
}

/// Interned next hops, so a flow entry names its hop in 4 bytes and the
/// Geneve header is built once per hop, not per packet.
#[derive(Debug, Default)]
struct NextHops {
    hops: Vec<(NextHop, [u8; GeneveHeader::LEN])>,
    index: HashMap<NextHop, u32>,
}

/// Most distinct next hops a router keeps.
const MAX_NEXT_HOPS: usize = 1 << 20;

impl NextHops {
    fn intern(&mut self, hop: NextHop) -> Option<u32> {
        if let Some(i) = self.index.get(&hop) {
            return Some(*i);
        }
        if self.hops.len() >= MAX_NEXT_HOPS {
            return None;
        }
        let mut header = [0u8; GeneveHeader::LEN];
        GeneveRepr::ethernet(hop.vni).emit(&mut header).ok()?;
        let i = self.hops.len() as u32;
        self.hops.push((hop, header));
        self.index.insert(hop, i);
        Some(i)
    }
}

struct EniSlot {
    cfg: EniConfig,
    gateway: GatewayConfig,
    epoch: u32,
}

/// The virtual router of one host.
pub struct Router<M> {
    cfg: RouterConfig,
    mapping: M,
    enis: Vec<Option<EniSlot>>,
    by_id: HashMap<String, EniIndex>,
    by_addr: HashMap<(u32, IpAddr), EniIndex>,
    by_mac: HashMap<(u32, MacAddr), EniIndex>,
    /// Local ENIs per VNI: tells an unknown VPC from an unknown address.
    vni_enis: HashMap<u32, usize>,
    flows: FlowTable,
    next_hops: NextHops,
    hasher: FlowHasher,
    drops: DropCounters,
    rejects: RejectLog,
    finished_logs: Vec<FlowLogRecord>,
    stats: RouterStats,
}

impl<M> core::fmt::Debug for Router<M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Router")
            .field("underlay", &self.cfg.underlay)
            .field("enis", &self.by_id)
            .field("flows", &self.flows.len())
            .field("drops", &self.drops)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// The packet facts the policy layers look at.
fn fields(pf: &ParsedFlow) -> PacketFields {
    PacketFields {
        protocol: pf.key.protocol,
        dst_port: pf.key.dst_port,
        icmp_type: pf.icmp_type,
        icmp_code: pf.icmp_code,
    }
}

/// The remote end of a packet crossing an ENI `way`.
fn peer(pf: &ParsedFlow, way: Way) -> IpAddr {
    match way {
        Way::Ingress => pf.key.src_ip(),
        Way::Egress => pf.key.dst_ip(),
    }
}

/// Sets the Ethernet addresses of the frame in `buf`.
#[inline]
fn rewrite_macs(buf: &mut PacketBuf, dst: MacAddr, src: Option<MacAddr>) {
    if let Ok((eth, _)) = EthernetHeader::view_mut(buf.data_mut()) {
        eth.dst = dst;
        if let Some(src) = src {
            eth.src = src;
        }
    }
}

impl<M: Mapping> Router<M> {
    pub fn new(cfg: RouterConfig, mapping: M) -> Self {
        let hasher = FlowHasher::new();
        Router {
            flows: FlowTable::new(cfg.flow_capacity, hasher.build_hasher().clone()),
            rejects: RejectLog::new(cfg.reject_log_capacity, hasher.build_hasher().clone()),
            hasher,
            cfg,
            mapping,
            enis: Vec::new(),
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
            by_mac: HashMap::new(),
            vni_enis: HashMap::new(),
            next_hops: NextHops::default(),
            drops: DropCounters::default(),
            finished_logs: Vec::new(),
            stats: RouterStats::default(),
        }
    }

    pub fn config(&self) -> &RouterConfig {
        &self.cfg
    }

    pub fn mapping_mut(&mut self) -> &mut M {
        &mut self.mapping
    }

    pub fn drops(&self) -> &DropCounters {
        &self.drops
    }

    pub fn stats(&self) -> RouterStats {
        self.stats
    }

    pub fn table_stats(&self) -> TableStats {
        self.flows.stats
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Bytes the flow table has allocated.
    pub fn flow_table_bytes(&self) -> usize {
        self.flows.allocation_size()
    }

    /// Flow-log rejections not counted because their table was full.
    pub fn reject_log_overflow(&self) -> u64 {
        self.rejects.overflow
    }

    pub fn eni_index(&self, id: &str) -> Option<EniIndex> {
        self.by_id.get(id).copied()
    }

    pub fn eni(&self, index: EniIndex) -> Option<&EniConfig> {
        self.slot(index).map(|s| &s.cfg)
    }

    fn slot(&self, index: EniIndex) -> Option<&EniSlot> {
        self.enis.get(usize::from(index)).and_then(Option::as_ref)
    }

    /// Installs an ENI or replaces its configuration. A replacement bumps the
    /// ENI's epoch: its flows are re-evaluated on their next packet.
    pub fn upsert_eni(&mut self, cfg: EniConfig) -> Result<EniIndex, EniError> {
        cfg.validate()?;
        let (index, epoch) = match self.by_id.get(&cfg.id) {
            Some(&i) => {
                let epoch = self.slot(i).map_or(0, |s| s.epoch.wrapping_add(1));
                self.unindex(i);
                (i, epoch)
            }
            None => {
                let free = self.enis.iter().position(Option::is_none);
                let i = match free {
                    Some(i) => i,
                    None if self.enis.len() < usize::from(u16::MAX) => {
                        self.enis.push(None);
                        self.enis.len() - 1
                    }
                    None => return Err(EniError::TooManyEnis),
                };
                (i as EniIndex, 0)
            }
        };
        for addr in cfg.addresses() {
            self.by_addr.insert((cfg.vni, addr), index);
        }
        self.by_mac.insert((cfg.vni, cfg.mac), index);
        *self.vni_enis.entry(cfg.vni).or_default() += 1;
        self.by_id.insert(cfg.id.clone(), index);
        let gateway = GatewayConfig {
            eni_mac: cfg.mac,
            eni_ip: cfg.ipv4[0],
            subnet: (cfg.subnet.cidr.network(), cfg.subnet.cidr.prefix_len()),
            router_mac: self.cfg.router_mac,
            dns: cfg.dns(),
            mtu: self.cfg.instance_mtu,
            lease_secs: 3600,
            hostname: Some(format!("ip-{}", cfg.ipv4[0].to_string().replace('.', "-"))),
            domain_name: Some(
                cfg.domain_name
                    .clone()
                    .unwrap_or_else(|| "ec2.internal".into()),
            ),
        };
        self.enis[usize::from(index)] = Some(EniSlot {
            cfg,
            gateway,
            epoch,
        });
        Ok(index)
    }

    /// Removes an ENI and every flow it had.
    pub fn remove_eni(&mut self, id: &str) -> bool {
        let Some(index) = self.by_id.get(id).copied() else {
            return false;
        };
        let finished = &mut self.finished_logs;
        let id_owned = id.to_string();
        self.flows.sweep(
            |k, _| k.zone == index,
            |k, e| push_records(finished, id_owned.clone(), &k, &e),
        );
        self.unindex(index);
        self.by_id.remove(id);
        self.enis[usize::from(index)] = None;
        true
    }

    fn unindex(&mut self, index: EniIndex) {
        if let Some(slot) = self.slot(index) {
            let vni = slot.cfg.vni;
            let addrs: Vec<IpAddr> = slot.cfg.addresses().collect();
            let mac = slot.cfg.mac;
            for a in addrs {
                if self.by_addr.get(&(vni, a)) == Some(&index) {
                    self.by_addr.remove(&(vni, a));
                }
            }
            if self.by_mac.get(&(vni, mac)) == Some(&index) {
                self.by_mac.remove(&(vni, mac));
            }
            if let Some(n) = self.vni_enis.get_mut(&vni) {
                *n -= 1;
                if *n == 0 {
                    self.vni_enis.remove(&vni);
                }
            }
        }
    }

    /// Tells the router that mappings changed (an ENI moved or went away):
    /// every cached next hop is re-resolved on its flow's next packet.
    pub fn mappings_changed(&mut self) {
        for slot in self.enis.iter_mut().flatten() {
            slot.epoch = slot.epoch.wrapping_add(1);
        }
    }

    fn drop(&mut self, reason: DropReason) -> Output {
        self.drops.count(reason);
        Output::Drop(reason)
    }

    /// A frame sent by the instance behind ENI `index`.
    pub fn from_instance(&mut self, index: EniIndex, buf: &mut PacketBuf, now: u64) -> Output {
        if self.slot(index).is_none() {
            return self.drop(DropReason::UnknownSource);
        }
        let eth = match ethernet::split(buf.data()) {
            Ok(e) => e,
            Err(_) => return self.drop(DropReason::Malformed),
        };
        match eth.ethertype {
            ethertype::ARP => return self.answer_arp(index, buf),
            ethertype::IPV4 | ethertype::IPV6 => {}
            _ => return self.drop(DropReason::UnsupportedEthertype),
        }
        if buf.data()[0] & 1 == 1 {
            // Group addresses: only DHCP is answered; a VPC has no broadcast.
            if gateway::is_dhcp_request(buf.data()) {
                return self.answer_dhcp(index, buf);
            }
            return self.drop(DropReason::Broadcast);
        }
        if gateway::is_dhcp_request(buf.data()) {
            return self.answer_dhcp(index, buf);
        }
        let pf = match flow::parse_ethernet(buf.data()) {
            Ok(pf) => pf,
            Err(_) => return self.drop(DropReason::Malformed),
        };
        if pf.later_fragment {
            return self.drop(DropReason::Fragment);
        }
        self.process(index, Way::Egress, buf, &pf, now)
    }

    /// Frames sent by the instance behind ENI `index`, processed together:
    /// every frame is parsed and hashed and its flow-table slot prefetched
    /// before any is looked up, so the cache misses of a batch overlap.
    /// `outs[i]` receives the output for `bufs[i]`.
    pub fn from_instance_batch(
        &mut self,
        index: EniIndex,
        bufs: &mut [PacketBuf],
        outs: &mut [Output],
        now: u64,
    ) {
        for (bufs, outs) in bufs.chunks_mut(BATCH).zip(outs.chunks_mut(BATCH)) {
            let mut prepared: [Option<(ParsedFlow, u64)>; BATCH] = [None; BATCH];
            for (slot, buf) in prepared.iter_mut().zip(bufs.iter()) {
                if let Some(pf) = plain_unicast_flow(buf.data()) {
                    let (nkey, _) = pf.key.in_zone(index).normalized();
                    let hash = self.flows.hash(&nkey);
                    self.flows.prefetch(hash);
                    *slot = Some((pf, hash));
                }
            }
            for ((buf, out), prep) in bufs.iter_mut().zip(outs.iter_mut()).zip(prepared) {
                *out = match prep {
                    Some((pf, hash)) if self.slot(index).is_some() => {
                        self.process_hashed(index, Way::Egress, buf, &pf, hash, now)
                    }
                    _ => self.from_instance(index, buf, now),
                };
            }
        }
    }

    /// A Geneve datagram received on the underlay (the UDP payload).
    pub fn from_underlay(&mut self, buf: &mut PacketBuf, now: u64) -> Output {
        match self.classify_underlay(buf) {
            Ok((index, pf)) => self.process(index, Way::Ingress, buf, &pf, now),
            Err(reason) => self.drop(reason),
        }
    }

    /// Geneve datagrams from the underlay, processed together as in
    /// [`Self::from_instance_batch`]. `outs[i]` receives `bufs[i]`'s output.
    pub fn from_underlay_batch(&mut self, bufs: &mut [PacketBuf], outs: &mut [Output], now: u64) {
        for (bufs, outs) in bufs.chunks_mut(BATCH).zip(outs.chunks_mut(BATCH)) {
            let mut prepared: [Option<Classified>; BATCH] = [None; BATCH];
            for (slot, buf) in prepared.iter_mut().zip(bufs.iter_mut()) {
                *slot = Some(self.classify_underlay(buf).map(|(index, pf)| {
                    let (nkey, _) = pf.key.in_zone(index).normalized();
                    let hash = self.flows.hash(&nkey);
                    self.flows.prefetch(hash);
                    (index, pf, hash)
                }));
            }
            for ((buf, out), prep) in bufs.iter_mut().zip(outs.iter_mut()).zip(prepared) {
                *out = match prep {
                    Some(Ok((index, pf, _))) if pf.icmp_error => {
                        self.process(index, Way::Ingress, buf, &pf, now)
                    }
                    Some(Ok((index, pf, hash))) => {
                        self.process_hashed(index, Way::Ingress, buf, &pf, hash, now)
                    }
                    Some(Err(reason)) => self.drop(reason),
                    None => self.drop(DropReason::Malformed),
                };
            }
        }
    }

    /// Decapsulates a datagram and finds the local ENI it is for; isolation
    /// is enforced here: only an ENI of the packet's own VNI can be chosen.
    fn classify_underlay(&self, buf: &mut PacketBuf) -> Result<(EniIndex, ParsedFlow), DropReason> {
        let g = GeneveHeader::view(buf.data()).map_err(|_| DropReason::Malformed)?;
        if g.header.protocol.get() != ethertype::TEB {
            return Err(DropReason::UnsupportedEthertype);
        }
        // No option is understood here, so a critical one must drop the
        // packet (RFC 8926 §3.5).
        if g.options().any(|o| o.critical) {
            return Err(DropReason::CriticalOption);
        }
        let (vni, header_len) = (g.header.vni(), GeneveHeader::LEN + g.options.len());
        buf.pop_front(header_len);
        let pf = flow::parse_ethernet(buf.data()).map_err(|_| DropReason::Malformed)?;
        if pf.later_fragment {
            return Err(DropReason::Fragment);
        }
        if let Some(&i) = self.by_addr.get(&(vni, pf.key.dst_ip())) {
            return Ok((i, pf));
        }
        // Transit traffic to an appliance ENI is addressed to its MAC; it is
        // admitted only where the source/destination check is off.
        let mac = EthernetHeader::view(buf.data()).map(|(h, _)| h.dst);
        match mac.ok().and_then(|m| self.by_mac.get(&(vni, m)).copied()) {
            Some(i) if self.slot(i).is_some_and(|s| !s.cfg.source_dest_check) => Ok((i, pf)),
            Some(_) => Err(DropReason::SourceDestCheck),
            None if self.vni_enis.contains_key(&vni) => Err(DropReason::UnknownEni),
            None => Err(DropReason::UnknownVni),
        }
    }

    fn answer_arp(&mut self, index: EniIndex, buf: &mut PacketBuf) -> Output {
        let Some(slot) = self.enis.get(usize::from(index)).and_then(Option::as_ref) else {
            return self.drop(DropReason::UnknownSource);
        };
        let vni = slot.cfg.vni;
        let mapping = &mut self.mapping;
        let mut pending = false;
        let reply = gateway::answer_arp(&slot.gateway, buf.data(), |ip| {
            match mapping.lookup(vni, IpAddr::V4(ip)) {
                Lookup::Found(e) => Some(e.mac),
                Lookup::Pending => {
                    pending = true;
                    None
                }
                Lookup::Absent => None,
            }
        });
        // An ARP request for a peer being looked up waits like any first
        // packet: dropped, the instance would retry only after its ARP
        // retransmit time (1 s on Linux).
        if pending && matches!(reply, Ok(None)) {
            self.stats.pending += 1;
            return Output::Pending;
        }
        self.gateway_reply(index, buf, reply)
    }

    fn answer_dhcp(&mut self, index: EniIndex, buf: &mut PacketBuf) -> Output {
        let Some(slot) = self.slot(index) else {
            return self.drop(DropReason::UnknownSource);
        };
        let reply = gateway::answer_dhcp(&slot.gateway, buf.data());
        self.gateway_reply(index, buf, reply)
    }

    fn gateway_reply<E>(
        &mut self,
        index: EniIndex,
        buf: &mut PacketBuf,
        reply: Result<Option<Vec<u8>>, E>,
    ) -> Output {
        match reply {
            Ok(Some(frame)) => {
                buf.set(&frame);
                self.stats.gateway_replies += 1;
                Output::Instance(index)
            }
            Ok(None) => self.drop(DropReason::GatewayUnanswered),
            Err(_) => self.drop(DropReason::Malformed),
        }
    }

    /// The flow-table stage, shared by both directions.
    fn process(
        &mut self,
        index: EniIndex,
        way: Way,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        now: u64,
    ) -> Output {
        if pf.icmp_error {
            return self.icmp_error(index, way, buf, pf, now);
        }
        let (nkey, _) = pf.key.in_zone(index).normalized();
        let hash = self.flows.hash(&nkey);
        self.process_hashed(index, way, buf, pf, hash, now)
    }

    /// [`Self::process`] with the normalised key's hash already computed.
    fn process_hashed(
        &mut self,
        index: EniIndex,
        way: Way,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        hash: u64,
        now: u64,
    ) -> Output {
        let key = pf.key.in_zone(index);
        let (nkey, swapped) = key.normalized();
        let Some(slot) = self.slot(index) else {
            return self.drop(DropReason::UnknownSource);
        };
        let epoch = slot.epoch;
        let timeouts = slot.cfg.timeouts;

        // Fast path: a live, current entry.
        let mut stale = None;
        if let Some(entry) = self.flows.get_mut(hash, &nkey) {
            if entry.conn.expired(now, &timeouts) {
                stale = Some(false);
            } else if entry.epoch != epoch {
                stale = Some(true);
            } else {
                let hop = entry.hop(way);
                if hop != Hop::Unknown {
                    let dir = if way == entry.origin() {
                        Direction::Original
                    } else {
                        Direction::Reply
                    };
                    if entry.conn.update(dir, pf.tcp_flags, now) == Verdict::Invalid {
                        if !is_opening_syn(pf) {
                            return self.drop(DropReason::ConntrackInvalid);
                        }
                        // A SYN the old connection refuses reuses its ports:
                        // the old entry goes and the SYN opens a new flow.
                        stale = Some(false);
                    } else if let Hop::Drop(reason) = hop {
                        self.log_reject(reason, key, way, pf, now);
                        return self.drop(reason);
                    }
                    if stale.is_none() {
                        if !entry.count(way, pf.ip_len, pf.tcp_flags, now) {
                            flush_counters(&mut self.finished_logs, &self.enis, &nkey, entry);
                            entry.count(way, pf.ip_len, pf.tcp_flags, now);
                        }
                        self.stats.fast_path += 1;
                        return self.apply(index, hop, buf, pf, hash, now);
                    }
                }
            }
        }
        self.stats.slow_path += 1;
        match stale {
            Some(false) => {
                // Idled out (spec 3.2) or reopened: the packet starts over as a new flow.
                if let Some(old) = self.flows.remove(hash, &nkey) {
                    self.finish_entry(nkey, &old);
                }
            }
            Some(true) => {
                if let Err(reason) = self.revalidate(index, way, pf, hash, &nkey, epoch) {
                    self.log_reject(reason, key, way, pf, now);
                    return self.drop(reason);
                }
            }
            None => {}
        }
        let local_is_src = (way == Way::Egress) != swapped;
        self.slow_path(index, way, buf, pf, key, (nkey, local_is_src), hash, now)
    }

    /// An entry compiled against an older epoch: tracked flows survive a rule
    /// change (spec 3.2) but recompile their hops; untracked flows are judged
    /// again by the rules and cut at once if they no longer pass.
    fn revalidate(
        &mut self,
        index: EniIndex,
        way: Way,
        pf: &ParsedFlow,
        hash: u64,
        nkey: &FlowKey,
        epoch: u32,
    ) -> Result<(), DropReason> {
        let Some(slot) = self.slot(index) else {
            return Err(DropReason::UnknownSource);
        };
        let Some(entry) = self.flows.get(hash, nkey) else {
            return Ok(());
        };
        let sdc_fails =
            way == Way::Egress && slot.cfg.source_dest_check && !slot.cfg.owns(pf.key.src_ip());
        let sg_fails = !entry.tracked()
            && evaluate_groups(
                slot.cfg.security_groups.iter().map(Arc::as_ref),
                way,
                peer(pf, way),
                &fields(pf),
            ) == SgVerdict::Deny;
        if sdc_fails || sg_fails {
            if let Some(old) = self.flows.remove(hash, nkey) {
                self.finish_entry(*nkey, &old);
            }
            return Err(if sdc_fails {
                DropReason::SourceDestCheck
            } else {
                DropReason::SgDeny
            });
        }
        if let Some(entry) = self.flows.get_mut(hash, nkey) {
            entry.epoch = epoch;
            entry.clear_hops();
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn slow_path(
        &mut self,
        index: EniIndex,
        way: Way,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        key: FlowKey,
        (nkey, local_is_src): (FlowKey, bool),
        hash: u64,
        now: u64,
    ) -> Output {
        let existing = self
            .flows
            .get(hash, &nkey)
            .map(|e| (e.origin(), e.tracked()));
        let Some(slot) = self.slot(index) else {
            return self.drop(DropReason::UnknownSource);
        };
        let epoch = slot.epoch;
        let tracked = match existing {
            Some((_, tracked)) => tracked,
            None => {
                if way == Way::Egress
                    && slot.cfg.source_dest_check
                    && !slot.cfg.owns(pf.key.src_ip())
                {
                    return self.drop(DropReason::SourceDestCheck);
                }
                match evaluate_groups(
                    slot.cfg.security_groups.iter().map(Arc::as_ref),
                    way,
                    peer(pf, way),
                    &fields(pf),
                ) {
                    SgVerdict::Deny => {
                        self.log_reject(DropReason::SgDeny, key, way, pf, now);
                        return self.drop(DropReason::SgDeny);
                    }
                    SgVerdict::Allow { tracked } => tracked,
                }
            }
        };
        let hop = match self.compile_hop(index, way, pf) {
            Ok(hop) => hop,
            Err(None) => {
                self.stats.pending += 1;
                return Output::Pending;
            }
            Err(Some(reason)) => Hop::Drop(reason),
        };
        let entry = match existing {
            Some((origin, _)) => {
                let dir = if way == origin {
                    Direction::Original
                } else {
                    Direction::Reply
                };
                let Some(entry) = self.flows.get_mut(hash, &nkey) else {
                    return self.drop(DropReason::UnknownSource);
                };
                if entry.conn.update(dir, pf.tcp_flags, now) == Verdict::Invalid {
                    return self.drop(DropReason::ConntrackInvalid);
                }
                entry.set_hop(way, hop);
                entry
            }
            None => {
                if let Hop::Drop(reason) = hop {
                    // A first packet that is dropped leaves no entry behind.
                    self.log_reject(reason, key, way, pf, now);
                    return self.drop(reason);
                }
                let Some(conn) = Conn::new(Protocol::from_ip(pf.key.protocol), pf.tcp_flags, now)
                else {
                    return self.drop(DropReason::ConntrackInvalid);
                };
                let mut entry = FlowEntry::new(conn, epoch, way, tracked, local_is_src);
                entry.set_hop(way, hop);
                let enis = &self.enis;
                let finished = &mut self.finished_logs;
                let inserted = self.flows.insert(
                    hash,
                    nkey,
                    entry,
                    now,
                    |k, e| {
                        enis.get(usize::from(k.zone))
                            .and_then(Option::as_ref)
                            .is_none_or(|s| {
                                e.conn.is_closed() || e.conn.expired(now, &s.cfg.timeouts)
                            })
                    },
                    |k, e| {
                        if let Some(id) = enis
                            .get(usize::from(k.zone))
                            .and_then(Option::as_ref)
                            .map(|s| s.cfg.id.clone())
                        {
                            push_records(finished, id, &k, &e);
                        }
                    },
                );
                match inserted {
                    Some(e) => e,
                    None => return self.drop(DropReason::TableFull),
                }
            }
        };
        if let Hop::Drop(reason) = hop {
            self.log_reject(reason, key, way, pf, now);
            return self.drop(reason);
        }
        if !entry.count(way, pf.ip_len, pf.tcp_flags, now) {
            flush_counters(&mut self.finished_logs, &self.enis, &nkey, entry);
            entry.count(way, pf.ip_len, pf.tcp_flags, now);
        }
        self.apply(index, hop, buf, pf, hash, now)
    }

    /// Compiles what to do with a packet crossing ENI `index` `way`:
    /// `Err(None)` means the mapping is pending.
    fn compile_hop(
        &mut self,
        index: EniIndex,
        way: Way,
        pf: &ParsedFlow,
    ) -> Result<Hop, Option<DropReason>> {
        let slot = self.slot(index).ok_or(Some(DropReason::UnknownSource))?;
        let subnet = &slot.cfg.subnet;
        let remote = peer(pf, way);
        let inside = subnet.contains(remote);
        // spec 4.1: NACLs apply where traffic leaves or enters the subnet.
        if !inside {
            let verdict = subnet.network_acl.evaluate(way, remote, &fields(pf));
            if verdict.action == RuleAction::Deny {
                return Ok(Hop::Drop(DropReason::NaclDeny));
            }
        }
        if way == Way::Ingress {
            return Ok(Hop::Deliver);
        }
        let vni = slot.cfg.vni;
        let eni_mac = slot.cfg.mac;
        let dst = pf.key.dst_ip();
        // spec 2.4: same-subnet traffic is switched; route tables do not apply.
        let (lookup_vni, target) = if inside {
            (vni, RouteTarget::Local)
        } else {
            match subnet.route_table.lookup(dst) {
                None => return Err(Some(DropReason::NoRoute)),
                Some((_, RouteTarget::Blackhole)) => return Err(Some(DropReason::Blackhole)),
                Some((_, RouteTarget::Peering { peer_vni, .. })) => (*peer_vni, RouteTarget::Local),
                Some((_, t)) => (vni, t.clone()),
            }
        };
        let src_mac = if inside { eni_mac } else { self.cfg.router_mac };
        let (underlay, dst_mac) = match target {
            RouteTarget::Local => match self.mapping.lookup(lookup_vni, dst) {
                Lookup::Found(m) => (m.underlay, m.mac),
                Lookup::Pending => return Err(None),
                Lookup::Absent => return Err(Some(DropReason::NoMapping)),
            },
            RouteTarget::Gateway { underlay, .. } => (underlay, self.cfg.router_mac),
            RouteTarget::Eni { underlay, mac, .. } => (underlay, mac),
            RouteTarget::Peering { .. } | RouteTarget::Blackhole => {
                return Err(Some(DropReason::Blackhole));
            }
        };
        if underlay == self.cfg.underlay {
            let local = self
                .by_addr
                .get(&(lookup_vni, dst))
                .or_else(|| self.by_mac.get(&(lookup_vni, dst_mac)))
                .copied();
            return match local {
                Some(i) => Ok(Hop::SameHost(i)),
                None => Err(Some(DropReason::NoMapping)),
            };
        }
        let hop = NextHop {
            underlay,
            vni: lookup_vni,
            dst_mac,
            src_mac,
        };
        match self.next_hops.intern(hop) {
            Some(i) => Ok(Hop::Underlay(i)),
            None => Err(Some(DropReason::NextHopTableFull)),
        }
    }

    /// Applies a compiled hop to the frame.
    #[inline]
    fn apply(
        &mut self,
        index: EniIndex,
        hop: Hop,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        hash: u64,
        now: u64,
    ) -> Output {
        match hop {
            Hop::Underlay(n) => {
                let Some((nh, header)) = self.next_hops.hops.get(n as usize) else {
                    return self.drop(DropReason::NoMapping);
                };
                rewrite_macs(buf, nh.dst_mac, Some(nh.src_mac));
                if !buf.push_front(header) {
                    return self.drop(DropReason::Malformed);
                }
                Output::Underlay {
                    dst: nh.underlay,
                    src_port: entropy_port(hash),
                }
            }
            Hop::SameHost(dst) => {
                let src_mac = match self.slot(index).zip(self.slot(dst)) {
                    Some((s, d)) if s.cfg.subnet.id == d.cfg.subnet.id => s.cfg.mac,
                    _ => self.cfg.router_mac,
                };
                rewrite_macs(buf, MacAddr::ZERO, Some(src_mac));
                // The destination ENI runs its own ingress policy.
                self.process(dst, Way::Ingress, buf, pf, now)
            }
            Hop::Deliver => {
                let Some(slot) = self.slot(index) else {
                    return self.drop(DropReason::UnknownSource);
                };
                let mac = slot.cfg.mac;
                rewrite_macs(buf, mac, None);
                Output::Instance(index)
            }
            Hop::Drop(reason) => self.drop(reason),
            Hop::Unknown => self.drop(DropReason::UnknownSource),
        }
    }

    /// ICMP errors pass the security groups when they quote a tracked flow
    /// of this ENI (spec 3.2); the NACL and routes still apply. They create
    /// no entry of their own.
    fn icmp_error(
        &mut self,
        index: EniIndex,
        way: Way,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        now: u64,
    ) -> Output {
        let related = flow::quoted_flow(&buf.data()[pf.l4_offset..], pf.key.family)
            .ok()
            .map(|quoted| {
                let (n, _) = quoted.in_zone(index).normalized();
                let h = self.flows.hash(&n);
                self.flows.get(h, &n).is_some()
            })
            .unwrap_or(false);
        let Some(slot) = self.slot(index) else {
            return self.drop(DropReason::UnknownSource);
        };
        if !related
            && evaluate_groups(
                slot.cfg.security_groups.iter().map(Arc::as_ref),
                way,
                peer(pf, way),
                &fields(pf),
            ) == SgVerdict::Deny
        {
            self.log_reject(DropReason::SgDeny, pf.key.in_zone(index), way, pf, now);
            return self.drop(DropReason::SgDeny);
        }
        self.stats.slow_path += 1;
        let hash = self.hasher.hash(&pf.key);
        match self.compile_hop(index, way, pf) {
            Ok(hop) => self.apply(index, hop, buf, pf, hash, now),
            Err(None) => Output::Pending,
            Err(Some(reason)) => self.drop(reason),
        }
    }

    fn log_reject(
        &mut self,
        reason: DropReason,
        key: FlowKey,
        way: Way,
        pf: &ParsedFlow,
        now: u64,
    ) {
        if matches!(reason, DropReason::SgDeny | DropReason::NaclDeny) {
            self.rejects.record(key, way, pf.ip_len, pf.tcp_flags, now);
        }
    }

    /// Keeps the flow-log counts of an entry that is going away.
    fn finish_entry(&mut self, key: FlowKey, entry: &FlowEntry) {
        if let Some(id) = self.slot(key.zone).map(|s| s.cfg.id.clone()) {
            push_records(&mut self.finished_logs, id, &key, entry);
        }
    }

    /// Removes expired and closed flows in one pass over the whole table:
    /// for tests and tools; the worker uses [`Router::expire_step`].
    pub fn expire(&mut self, now: u64) -> usize {
        let enis = &self.enis;
        let finished = &mut self.finished_logs;
        self.flows.sweep(
            |k, e| slot_of(enis, k.zone).is_none_or(|s| e.conn.expired(now, &s.cfg.timeouts)),
            |k, e| {
                if let Some(id) = eni_id(enis, k.zone) {
                    push_records(finished, id, &k, &e);
                }
            },
        )
    }

    /// One bounded step of expiry, for the worker's loop: examines up to
    /// `budget` flow-table slots from where the last step stopped, removes
    /// expired and closed flows, and moves the flow-log counts of the live
    /// flows it passes into the finished records (their counters start
    /// over), so [`Router::take_flow_logs`] needs no scan. A full pass is
    /// [`Router::flow_slots`] slots. Returns how many flows were removed.
    pub fn expire_step(&mut self, now: u64, budget: usize) -> usize {
        let enis = &self.enis;
        let finished = &mut self.finished_logs;
        let mut harvest = Vec::new();
        let removed = self.flows.sweep_step(
            budget,
            |k, e| {
                let slot = slot_of(enis, k.zone);
                let dead = slot.is_none_or(|s| e.conn.expired(now, &s.cfg.timeouts));
                if !dead && let (Some(s), Some(_)) = (slot, e.log_start_ms()) {
                    push_records(&mut harvest, s.cfg.id.clone(), k, e);
                    e.reset_counters();
                }
                dead
            },
            |k, e| {
                if let Some(id) = eni_id(enis, k.zone) {
                    push_records(finished, id, &k, &e);
                }
            },
        );
        finished.append(&mut harvest);
        removed
    }

    /// Flow-table slots: what a full pass of [`Router::expire_step`] visits.
    pub fn flow_slots(&self) -> usize {
        self.flows.slot_count()
    }

    /// The flow-log records gathered since the last call: flows that ended,
    /// counts harvested by [`Router::expire_step`], and rejections. Costs
    /// no scan of the flow table.
    pub fn take_flow_logs(&mut self) -> Vec<FlowLogRecord> {
        let mut out = std::mem::take(&mut self.finished_logs);
        let enis = &self.enis;
        self.rejects.drain(|zone| eni_id(enis, zone), &mut out);
        out
    }

    /// The flow-log records of the interval ending now, accepted and
    /// rejected; counters start over. Scans the whole flow table: for
    /// tests and tools; the worker uses [`Router::expire_step`] and
    /// [`Router::take_flow_logs`].
    pub fn drain_flow_logs(&mut self) -> Vec<FlowLogRecord> {
        let enis = &self.enis;
        for (k, e) in self.flows.iter_mut() {
            if let Some(id) = eni_id(enis, k.zone) {
                push_records(&mut self.finished_logs, id, k, e);
            }
            e.reset_counters();
        }
        self.take_flow_logs()
    }

    /// Looks up the entry of a flow as ENI `eni` sees it, for tests and traces.
    pub fn flow(&self, eni: EniIndex, key: &FlowKey) -> Option<&FlowEntry> {
        let (n, _) = key.in_zone(eni).normalized();
        self.flows.get(self.flows.hash(&n), &n)
    }
}

/// A received datagram after decapsulation: its ENI, flow and flow hash.
type Classified = Result<(EniIndex, ParsedFlow, u64), DropReason>;

/// Frames a batch takes at a time: enough to overlap the cache misses of
/// that many lookups, few enough that their slots stay in L1.
pub const BATCH: usize = 32;

/// The flow of an ordinary unicast IP frame, the kind the batch path takes;
/// `None` for anything the gateway layer or an error path must see (ARP,
/// DHCP, broadcast, fragments, ICMP errors, malformed frames).
#[inline]
fn plain_unicast_flow(frame: &[u8]) -> Option<ParsedFlow> {
    if frame.first().is_none_or(|b| b & 1 == 1) || gateway::is_dhcp_request(frame) {
        return None;
    }
    let pf = flow::parse_ethernet(frame).ok()?;
    (!pf.later_fragment && !pf.icmp_error).then_some(pf)
}

/// A TCP SYN without ACK: the first packet of a new connection.
fn is_opening_syn(pf: &ParsedFlow) -> bool {
    use openvpc_packet::tcp::flags;
    pf.key.protocol == openvpc_packet::ip::protocol::TCP
        && pf.tcp_flags & (flags::SYN | flags::ACK) == flags::SYN
}

/// Appends one record per direction with traffic in the current interval,
/// each keyed the way its packets travel.
fn push_records(out: &mut Vec<FlowLogRecord>, id: String, key: &FlowKey, entry: &FlowEntry) {
    let Some(start_ms) = entry.log_start_ms() else {
        return;
    };
    for way in [Way::Egress, Way::Ingress] {
        let c = entry.counters(way);
        if c.packets == 0 {
            continue;
        }
        // Egress packets have the local end as source.
        let directional = if (way == Way::Egress) == entry.local_is_src() {
            *key
        } else {
            key.reversed()
        };
        out.push(crate::flowlog::record(
            id.clone(),
            &directional,
            way,
            &c,
            start_ms,
            entry.conn.last_seen(),
            LogAction::Accept,
        ));
    }
}

/// The ENI installed in slot `zone`, if any.
fn slot_of(enis: &[Option<EniSlot>], zone: u16) -> Option<&EniSlot> {
    enis.get(usize::from(zone)).and_then(Option::as_ref)
}

/// The ID of the ENI in slot `zone`, for its flow-log records.
fn eni_id(enis: &[Option<EniSlot>], zone: u16) -> Option<String> {
    slot_of(enis, zone).map(|s| s.cfg.id.clone())
}

/// Moves an entry's counters into records before they would wrap.
#[cold]
fn flush_counters(
    out: &mut Vec<FlowLogRecord>,
    enis: &[Option<EniSlot>],
    key: &FlowKey,
    entry: &mut FlowEntry,
) {
    if let Some(id) = eni_id(enis, key.zone) {
        push_records(out, id, key, entry);
    }
    entry.reset_counters();
}
