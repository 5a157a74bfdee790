//! The per-host virtual router: the local ENIs and the packet path between
//! them and the underlay (DESIGN.md, "The packet path").
//!
//! A frame from an instance is parsed once; the gateway answers ARP and
//! DHCP, the VPC's resolver (one per VPC on the host, `crate::resolver`)
//! takes the DNS queries sent to it before any group or ACL sees them, and
//! everything else goes to the flow table. On a hit the compiled
//! hop is applied and no rule is evaluated; on a miss the slow path runs the
//! port's layers (`crate::layer`), resolves where they send the packet
//! (mapping lookup, next-hop table) and commits the result, in one place,
//! into the entry. A frame from the underlay is decapsulated, checked
//! against the local ENIs of its VNI (isolation is enforced at both ends)
//! and goes through the same table in the ingress direction. `explain`
//! runs the same layers with a recording sink and commits nothing.
//!
//! Sans-IO: the caller passes frames and the time, and gets back an
//! [`Output`] saying where the frame (rewritten in place) must go.

use core::net::IpAddr;
use hashbrown::HashMap;
use std::sync::Arc;

use openvpc_dns::{EniKey, Outcome, VpcDns, VpcResolver};

use openvpc_packet::ethernet::{self, EthernetHeader, ethertype};
use openvpc_packet::flow::{self, ParsedFlow, entropy_port};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr, ReturnVia};
use openvpc_packet::{FlowHasher, FlowKey, MacAddr};

use crate::buf::PacketBuf;
use crate::conntrack::{Conn, Direction, Protocol, Verdict};
use crate::drop::{DropCounters, DropReason};
use crate::eni::{EniConfig, EniError};
use crate::explain::{Explanation, Fate, Recorder, Step};
use crate::flow_table::{FlowEntry, FlowTable, Hop, TableStats};
use crate::flowlog::{FlowLogRecord, LogAction, RejectLog};
use crate::gateway::{self, GatewayConfig, GatewayError};
use crate::layer::{self, FlowState, Forward, LayerKind, NoSink, PacketMeta, PortLayers, Rewrite};
use crate::mapping::{Lookup, Mapping};
use crate::policy::Way;
use crate::resolver::{self, UpstreamQuery};
use crate::route::{GatewayKind, RouteTarget, gateway_mac};
use crate::transform::{self, Transform, Transforms};

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
    /// Most header transforms (translated flow directions) at once.
    pub transform_capacity: usize,
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
            transform_capacity: 1 << 16,
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
    /// A query the host's resolver forwards to the region's upstream
    /// resolver: take it with [`Router::take_upstream_queries`]; nothing
    /// to send now.
    Resolver,
}

/// Packet counters besides drops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterStats {
    pub fast_path: u64,
    pub slow_path: u64,
    pub gateway_replies: u64,
    pub pending: u64,
    /// Queries the VPC resolvers answered, and upstream replies relayed.
    pub dns_answers: u64,
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
    /// The port's layers, in order, per direction.
    layers: PortLayers,
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
    transforms: Transforms,
    /// Transform handles of entries a sweep removed, to give back.
    released: Vec<u32>,
    hasher: FlowHasher,
    drops: DropCounters,
    rejects: RejectLog,
    finished_logs: Vec<FlowLogRecord>,
    stats: RouterStats,
    /// The return-via option of the datagram being processed, if it had
    /// one: a flow it opens sends its replies back that way.
    arrived_via: Option<ReturnVia>,
    /// One resolver per VPC (VNI) with local ENIs, and the configuration
    /// it was last given (spec 1.4).
    resolvers: HashMap<u32, (Arc<VpcDns>, VpcResolver)>,
    /// Queries the resolvers forward, for the caller to send upstream.
    upstream: Vec<UpstreamQuery>,
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
        let cfg_transform_capacity = cfg.transform_capacity;
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
            transforms: Transforms::new(cfg_transform_capacity),
            released: Vec::new(),
            drops: DropCounters::default(),
            finished_logs: Vec::new(),
            stats: RouterStats::default(),
            arrived_via: None,
            resolvers: HashMap::new(),
            upstream: Vec::new(),
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
            dns_servers: cfg.dns_servers.clone().unwrap_or_default(),
            mtu: self.cfg.instance_mtu,
            lease_secs: 3600,
            hostname: Some(format!("ip-{}", cfg.ipv4[0].to_string().replace('.', "-"))),
            domain_name: Some(
                cfg.domain_name
                    .clone()
                    .unwrap_or_else(|| "ec2.internal".into()),
            ),
        };
        if let Some(dns) = &cfg.dns {
            self.set_resolver(cfg.vni, dns);
        }
        let layers = self.slot(index).map_or(PortLayers::STANDARD, |s| s.layers);
        self.enis[usize::from(index)] = Some(EniSlot {
            cfg,
            gateway,
            epoch,
            layers,
        });
        Ok(index)
    }

    /// Gives VPC `vni`'s resolver this configuration, keeping its cache,
    /// packet limits and counters; makes it if the host has none yet.
    fn set_resolver(&mut self, vni: u32, dns: &Arc<VpcDns>) {
        match self.resolvers.get_mut(&vni) {
            Some((current, _)) if Arc::ptr_eq(current, dns) => {}
            Some((current, r)) => {
                *current = dns.clone();
                *r.config_mut() = (**dns).clone();
            }
            None => {
                let r = VpcResolver::new((**dns).clone(), RESOLVER_CACHE);
                self.resolvers.insert(vni, (dns.clone(), r));
            }
        }
    }

    /// The counters of every VPC resolver on this host, added up.
    pub fn dns_counters(&self) -> openvpc_dns::Counters {
        let mut total = openvpc_dns::Counters::default();
        for (_, r) in self.resolvers.values() {
            total.merge(r.counters());
        }
        total
    }

    /// The queries the resolvers forwarded since the last call, for the
    /// caller to send to the region's upstream resolver. Each reply goes
    /// back through [`Self::relay_upstream`]; a query that gets none,
    /// through [`Self::fail_upstream`].
    pub fn take_upstream_queries(&mut self) -> Vec<UpstreamQuery> {
        core::mem::take(&mut self.upstream)
    }

    /// The frame that carries the upstream resolver's `reply` to `q`'s
    /// client, and the ENI to send it to; `None` (counted by the resolver)
    /// if the reply is not a DNS response, or the VPC or ENI has gone.
    pub fn relay_upstream(
        &mut self,
        q: &UpstreamQuery,
        reply: &[u8],
        now: u64,
    ) -> Option<(EniIndex, Vec<u8>)> {
        let (_, r) = self.resolvers.get_mut(&q.vni)?;
        let answer = r.relay(reply, &q.forward, now).ok()?;
        self.client_frame(q, &answer)
    }

    /// The SERVFAIL answer to `q` when the upstream resolver cannot be
    /// asked or did not answer, and the ENI to send it to.
    pub fn fail_upstream(&mut self, q: &UpstreamQuery) -> Option<(EniIndex, Vec<u8>)> {
        let (_, r) = self.resolvers.get_mut(&q.vni)?;
        let answer = r.fail(&q.query)?;
        self.client_frame(q, &answer)
    }

    /// `answer` in a frame to `q`'s client, if its ENI is still there.
    fn client_frame(&mut self, q: &UpstreamQuery, answer: &[u8]) -> Option<(EniIndex, Vec<u8>)> {
        let slot = self.slot(q.client.eni)?;
        if slot.cfg.vni != q.vni || slot.cfg.mac != q.client.mac {
            return None;
        }
        let frame = resolver::answer_frame(self.cfg.router_mac, &q.client, answer).ok()?;
        self.stats.dns_answers += 1;
        Some((q.client.eni, frame))
    }

    /// Takes a query to the VPC's resolver (spec 1.4), before any security
    /// group or network ACL: `None` if the frame is not one.
    fn answer_dns(
        &mut self,
        index: EniIndex,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        now: u64,
    ) -> Option<Output> {
        let slot = self.slot(index)?;
        // A query from an address that is not the ENI's is not the
        // resolver's to answer: the layers judge it (source/destination
        // check) like any packet.
        if !resolver::is_resolver_query(pf, slot.cfg.dns()) || !slot.cfg.owns(pf.key.src_ip()) {
            return None;
        }
        let vni = slot.cfg.vni;
        let Some((client, query)) = resolver::split_query(index, buf.data(), pf) else {
            return Some(self.drop(DropReason::Malformed));
        };
        let Some((_, r)) = self.resolvers.get_mut(&vni) else {
            return Some(self.drop(DropReason::ResolverAbsent));
        };
        Some(match r.handle(EniKey(u32::from(index)), query, now) {
            Outcome::Answer(answer) => {
                match resolver::answer_frame(self.cfg.router_mac, &client, &answer) {
                    Ok(frame) => {
                        buf.set(&frame);
                        self.stats.dns_answers += 1;
                        Output::Instance(index)
                    }
                    Err(_) => self.drop(DropReason::GatewayReplyFailed),
                }
            }
            Outcome::Forward(forward) => {
                let query = query.to_vec();
                self.upstream.push(UpstreamQuery {
                    client,
                    vni,
                    forward,
                    query,
                });
                Output::Resolver
            }
            Outcome::Drop(_) => self.drop(DropReason::ResolverDropped),
        })
    }

    /// Gives ENI `index`'s port these layers (the standard ones unless a
    /// component such as NAT adds its own); its flows are judged again on
    /// their next packet. False if no ENI is there.
    pub fn set_layers(&mut self, index: EniIndex, layers: PortLayers) -> bool {
        match self
            .enis
            .get_mut(usize::from(index))
            .and_then(Option::as_mut)
        {
            Some(slot) => {
                slot.layers = layers;
                slot.epoch = slot.epoch.wrapping_add(1);
                true
            }
            None => false,
        }
    }

    /// Transforms in use: translated flow directions.
    pub fn transform_count(&self) -> usize {
        self.transforms.len()
    }

    /// Removes an ENI and every flow it had.
    pub fn remove_eni(&mut self, id: &str) -> bool {
        let Some(index) = self.by_id.get(id).copied() else {
            return false;
        };
        let finished = &mut self.finished_logs;
        let released = &mut self.released;
        let id_owned = id.to_string();
        self.flows.sweep(
            |k, _| k.zone == index,
            |k, e| {
                released.extend(e.transforms());
                push_records(finished, id_owned.clone(), &k, &e);
            },
        );
        self.give_back_transforms();
        let vni = self.slot(index).map(|s| s.cfg.vni);
        self.unindex(index);
        self.by_id.remove(id);
        self.enis[usize::from(index)] = None;
        if let Some(vni) = vni {
            if self.vni_enis.contains_key(&vni) {
                if let Some((_, r)) = self.resolvers.get_mut(&vni) {
                    r.forget_eni(EniKey(u32::from(index)));
                }
            } else {
                self.resolvers.remove(&vni);
            }
        }
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
        let frame = Frame::parse(buf.data());
        self.instance_frame(index, buf, frame, now)
    }

    /// [`Self::from_instance`] with the frame already parsed: the gateway
    /// and every layer read this one parse.
    fn instance_frame(
        &mut self,
        index: EniIndex,
        buf: &mut PacketBuf,
        frame: Frame,
        now: u64,
    ) -> Output {
        if self.slot(index).is_none() {
            return self.drop(DropReason::UnknownSource);
        }
        let pf = match frame {
            Frame::Arp => return self.answer_arp(index, buf),
            Frame::Ip(pf) => pf,
            Frame::Unsupported => return self.drop(DropReason::UnsupportedEthertype),
            Frame::Malformed => return self.drop(DropReason::Malformed),
        };
        if gateway::is_dhcp_flow(&pf) {
            return self.answer_dhcp(index, buf);
        }
        if resolver::may_be_query(&pf)
            && let Some(out) = self.answer_dns(index, buf, &pf, now)
        {
            return out;
        }
        if buf.data()[0] & 1 == 1 {
            // Group addresses: only DHCP is answered; a VPC has no broadcast.
            return self.drop(DropReason::Broadcast);
        }
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
            // The flow hash of the frames the flow table takes directly.
            let mut prepared: [(Frame, Option<u64>); BATCH] = [(Frame::Malformed, None); BATCH];
            for (slot, buf) in prepared.iter_mut().zip(bufs.iter()) {
                let frame = Frame::parse(buf.data());
                let hash = frame.plain_unicast(buf.data()).map(|pf| {
                    let (nkey, _) = pf.key.in_zone(index).normalized();
                    let hash = self.flows.hash(&nkey);
                    self.flows.prefetch(hash);
                    hash
                });
                *slot = (frame, hash);
            }
            for ((buf, out), prep) in bufs.iter_mut().zip(outs.iter_mut()).zip(prepared) {
                *out = match prep {
                    (Frame::Ip(pf), Some(hash)) if self.slot(index).is_some() => {
                        self.process_hashed(index, Way::Egress, buf, &pf, hash, now)
                    }
                    (frame, _) => self.instance_frame(index, buf, frame, now),
                };
            }
        }
    }

    /// A Geneve datagram received on the underlay (the UDP payload).
    pub fn from_underlay(&mut self, buf: &mut PacketBuf, now: u64) -> Output {
        match self.classify_underlay(buf) {
            Ok((index, pf, via)) => {
                self.arrived_via = via;
                let out = self.process(index, Way::Ingress, buf, &pf, now);
                self.arrived_via = None;
                out
            }
            Err(reason) => self.drop(reason),
        }
    }

    /// Geneve datagrams from the underlay, processed together as in
    /// [`Self::from_instance_batch`]. `outs[i]` receives `bufs[i]`'s output.
    pub fn from_underlay_batch(&mut self, bufs: &mut [PacketBuf], outs: &mut [Output], now: u64) {
        for (bufs, outs) in bufs.chunks_mut(BATCH).zip(outs.chunks_mut(BATCH)) {
            let mut prepared: [Option<Classified>; BATCH] = [None; BATCH];
            for (slot, buf) in prepared.iter_mut().zip(bufs.iter_mut()) {
                *slot = Some(self.classify_underlay(buf).map(|(index, pf, via)| {
                    let (nkey, _) = pf.key.in_zone(index).normalized();
                    let hash = self.flows.hash(&nkey);
                    self.flows.prefetch(hash);
                    (index, pf, hash, via)
                }));
            }
            for ((buf, out), prep) in bufs.iter_mut().zip(outs.iter_mut()).zip(prepared) {
                *out = match prep {
                    Some(Ok((index, pf, hash, via))) => {
                        self.arrived_via = via;
                        let out = if pf.icmp_error {
                            self.process(index, Way::Ingress, buf, &pf, now)
                        } else {
                            self.process_hashed(index, Way::Ingress, buf, &pf, hash, now)
                        };
                        self.arrived_via = None;
                        out
                    }
                    Some(Err(reason)) => self.drop(reason),
                    None => self.drop(DropReason::Malformed),
                };
            }
        }
    }

    /// Decapsulates a datagram and finds the local ENI it is for; isolation
    /// is enforced here: only an ENI of the packet's own VNI can be chosen.
    fn classify_underlay(
        &self,
        buf: &mut PacketBuf,
    ) -> Result<(EniIndex, ParsedFlow, Option<ReturnVia>), DropReason> {
        let g = GeneveHeader::view(buf.data()).map_err(|_| DropReason::Malformed)?;
        if g.header.protocol.get() != ethertype::TEB {
            return Err(DropReason::UnsupportedEthertype);
        }
        // No option is understood here, so a critical one must drop the
        // packet (RFC 8926 §3.5).
        if g.options().any(|o| o.critical) {
            return Err(DropReason::CriticalOption);
        }
        let via = ReturnVia::find(g.options());
        let (vni, header_len) = (g.header.vni(), GeneveHeader::LEN + g.options.len());
        buf.pop_front(header_len);
        let pf = flow::parse_ethernet(buf.data()).map_err(|_| DropReason::Malformed)?;
        if pf.later_fragment {
            return Err(DropReason::Fragment);
        }
        if let Some(&i) = self.by_addr.get(&(vni, pf.key.dst_ip())) {
            return Ok((i, pf, via));
        }
        // Transit traffic to an appliance ENI is addressed to its MAC; the
        // gateway layer admits it only where the source/destination check
        // is off.
        let mac = EthernetHeader::view(buf.data()).map(|(h, _)| h.dst);
        match mac.ok().and_then(|m| self.by_mac.get(&(vni, m)).copied()) {
            Some(i) => Ok((i, pf, via)),
            None if self.vni_enis.contains_key(&vni) => Err(DropReason::UnknownEni),
            None => Err(DropReason::UnknownVni),
        }
    }

    fn answer_arp(&mut self, index: EniIndex, buf: &mut PacketBuf) -> Output {
        let Some(slot) = self.enis.get(usize::from(index)).and_then(Option::as_ref) else {
            return self.drop(DropReason::UnknownSource);
        };
        let vni = slot.cfg.vni;
        let table = &slot.cfg.subnet.route_table;
        let mapping = &mut self.mapping;
        let mut pending = false;
        let reply = gateway::answer_arp(&slot.gateway, buf.data(), |ip| {
            // A load balancer's address in the subnet lives on no host: its
            // nodes answer to the MAC that names it.
            if let Some((
                _,
                RouteTarget::Gateway {
                    kind: GatewayKind::LoadBalancer,
                    id,
                    ..
                },
            )) = table.lookup(IpAddr::V4(ip))
            {
                return Some(gateway_mac(id));
            }
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

    fn gateway_reply(
        &mut self,
        index: EniIndex,
        buf: &mut PacketBuf,
        reply: Result<Option<Vec<u8>>, GatewayError>,
    ) -> Output {
        match reply {
            Ok(Some(frame)) => {
                buf.set(&frame);
                self.stats.gateway_replies += 1;
                Output::Instance(index)
            }
            Ok(None) => self.drop(DropReason::GatewayUnanswered),
            Err(e) => self.drop(e.drop_reason()),
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
        let logged = slot.cfg.flow_logged;

        // Fast path: a live, current entry.
        let mut stale = None;
        if let Some(entry) = self.flows.get_mut(hash, &nkey) {
            if let Some(h) = entry.alias_of() {
                return self.process_translated(index, way, buf, pf, h, now);
            }
            let dir = if way == entry.origin() {
                Direction::Original
            } else {
                Direction::Reply
            };
            if entry.conn.expired(now, &timeouts) {
                stale = Some(false);
            } else if is_opening_syn(pf)
                && (entry.conn.is_closed() || {
                    let mut old = entry.conn;
                    old.update(dir, pf.tcp_flags, now) == Verdict::Invalid
                })
            {
                // A SYN on a closed connection's tuple, or one the old
                // connection refuses, reuses its ports (a client that
                // closed and connects again from the same port): the old
                // entry goes and the SYN opens a new flow, whatever was
                // compiled since. Its hops must be its own: through a load
                // balancer the new connection may come through another
                // node (another front or place), and its replies must go
                // back there, not where the old one's went.
                stale = Some(false);
            } else if entry.epoch != epoch {
                stale = Some(true);
            } else {
                let hop = entry.hop(way);
                let compiled = match hop {
                    Hop::Unknown => false,
                    Hop::Transform(h) => self
                        .transforms
                        .get(h)
                        .is_some_and(|t| t.then != Hop::Unknown),
                    _ => true,
                };
                if compiled {
                    if entry.conn.update(dir, pf.tcp_flags, now) == Verdict::Invalid {
                        return self.drop(DropReason::ConntrackInvalid);
                    } else if let Hop::Drop(reason) = hop {
                        self.log_reject(reason, key, way, pf, now);
                        return self.drop(reason);
                    }
                    if stale.is_none() {
                        if logged && !entry.count(way, pf.ip_len, pf.tcp_flags, now) {
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
        if stale == Some(false) {
            // Idled out (spec 3.2) or reopened: the packet starts over as a new flow.
            if let Some(old) = self.flows.remove(hash, &nkey) {
                self.finish_entry(nkey, &old);
            }
        }
        let local_is_src = (way == Way::Egress) != swapped;
        self.slow_path(index, way, buf, pf, key, (nkey, local_is_src), hash, now)
    }

    /// The slow path: runs the port's layers over the packet, then commits
    /// the verdict (flow entry, hop, counters) in this one place.
    ///
    /// An entry compiled against an older epoch is judged again here: a
    /// tracked connection survives a rule change (spec 3.2) and only
    /// recompiles its hops; an untracked one is judged by the groups again.
    /// A connection the gateway or the groups now refuse is cut at once; a
    /// network ACL or route refusal is stateless and is cached as this
    /// direction's hop.
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
        let (epoch, logged) = (slot.epoch, slot.cfg.flow_logged);
        let state = match existing {
            None => FlowState::New,
            Some((_, true)) => FlowState::Tracked,
            Some((_, false)) => FlowState::Untracked,
        };
        let packet = PacketMeta::new(pf);
        // A reply pinned to a load balancer's node goes there, wherever
        // the routes would send it: its routing is not asked (its filters
        // are).
        let pinned = match self.flows.get(hash, &nkey).map(|e| e.hop(way)) {
            Some(Hop::Transform(h)) => self.transforms.get(h).and_then(|t| t.via),
            _ => None,
        };
        let skip = pinned.map(|_| LayerKind::Routing);
        let judged = layer::run_skipping(
            &slot.cfg,
            slot.layers,
            way,
            &packet,
            state,
            &mut NoSink,
            skip,
        )
        .map(|v| {
            (
                v.tracked.unwrap_or(true),
                next_of(&slot.cfg, v.forward, &v.key),
                v.rewrite,
                v.key,
            )
        });
        let (tracked, next, rewrite, new_key) = match judged {
            Ok(ok) => ok,
            Err(denied) => {
                self.log_reject(denied.reason, key, way, pf, now);
                if existing.is_some() {
                    if matches!(denied.layer, LayerKind::Gateway | LayerKind::SecurityGroup) {
                        if let Some(old) = self.flows.remove(hash, &nkey) {
                            self.finish_entry(nkey, &old);
                        }
                    } else if let Some(entry) = self.flows.get_mut(hash, &nkey) {
                        entry.refresh(epoch);
                        match entry.hop(way) {
                            // A translated direction keeps its handle.
                            Hop::Transform(h) => {
                                if let Some(t) = self.transforms.get_mut(h) {
                                    t.then = Hop::Drop(denied.reason);
                                }
                            }
                            _ => entry.set_hop(way, Hop::Drop(denied.reason)),
                        }
                    }
                }
                return self.drop(denied.reason);
            }
        };
        let resolved = match pinned {
            Some(via) => Ok(self.via_hop(index, via)),
            None => self.resolve(next, new_key.dst_ip()),
        };
        let mut hop = match resolved {
            Ok(hop) => hop,
            Err(None) => {
                self.stats.pending += 1;
                return Output::Pending;
            }
            Err(Some(reason)) => Hop::Drop(reason),
        };
        // A translated direction keeps its transform; only where it goes
        // is compiled again.
        if let Some(Hop::Transform(h)) = self.flows.get(hash, &nkey).map(|e| e.hop(way))
            && let Some(t) = self.transforms.get_mut(h)
        {
            t.then = hop;
            hop = Hop::Transform(h);
        }
        let mut alias = None;
        if let (None, Some(rewrite)) = (existing, rewrite)
            && !matches!(hop, Hop::Drop(_))
        {
            let alias_key = transform::rewritten(&key, &rewrite)
                .reversed()
                .normalized()
                .0;
            let t = Transform {
                rewrite,
                then: hop,
                original: key,
                alias: Some(alias_key),
                via: None,
            };
            match self.transforms.alloc(t) {
                Some(h) => {
                    hop = Hop::Transform(h);
                    alias = Some((alias_key, h));
                }
                None => return self.drop(DropReason::TransformTableFull),
            }
        }
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
                entry.refresh(epoch);
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
                let reply_hop = match self.arrived_via.filter(|_| way == Way::Ingress) {
                    Some(via) => {
                        let pin = Transform {
                            rewrite: Rewrite::default(),
                            then: Hop::Unknown,
                            original: key,
                            alias: None,
                            via: Some(via),
                        };
                        let Some(h) = self.transforms.alloc(pin) else {
                            if let Hop::Transform(h) = hop {
                                self.transforms.free(h);
                            }
                            return self.drop(DropReason::TransformTableFull);
                        };
                        entry.set_hop(Way::Egress, Hop::Transform(h));
                        Some(h)
                    }
                    None => None,
                };
                let inserted = self.insert_flow(hash, nkey, entry, now).is_some();
                if !inserted {
                    self.give_back_transforms();
                    for h in [hop]
                        .into_iter()
                        .filter_map(|h| match h {
                            Hop::Transform(h) => Some(h),
                            _ => None,
                        })
                        .chain(reply_hop)
                    {
                        self.transforms.free(h);
                    }
                    return self.drop(DropReason::TableFull);
                }
                if let Some((alias_key, h)) = alias
                    && !self.insert_alias(alias_key, h, now)
                {
                    if let Some(old) = self.flows.remove(hash, &nkey) {
                        self.finish_entry(nkey, &old);
                    }
                    return self.drop(DropReason::TableFull);
                }
                self.give_back_transforms();
                match self.flows.get_mut(hash, &nkey) {
                    Some(e) => e,
                    None => return self.drop(DropReason::TableFull),
                }
            }
        };
        if let Hop::Drop(reason) = hop {
            self.log_reject(reason, key, way, pf, now);
            return self.drop(reason);
        }
        if logged && !entry.count(way, pf.ip_len, pf.tcp_flags, now) {
            flush_counters(&mut self.finished_logs, &self.enis, &nkey, entry);
            entry.count(way, pf.ip_len, pf.tcp_flags, now);
        }
        self.apply(index, hop, buf, pf, hash, now)
    }

    /// Turns where the layers send a packet into a compiled hop: the
    /// mapping lookup for addresses in a VPC, the next-hop table for the
    /// underlay. `Err(None)` means the mapping is pending.
    fn resolve(&mut self, next: Next, dst: IpAddr) -> Result<Hop, Option<DropReason>> {
        let mapping = &mut self.mapping;
        let Some(place) = next.place(|vni| mapping.lookup(vni, dst), self.cfg.router_mac)? else {
            return Ok(Hop::Deliver);
        };
        if place.underlay == self.cfg.underlay {
            return match self.eni_at(place.vni, dst, place.dst_mac) {
                Some(i) => Ok(Hop::SameHost(i)),
                None => Err(Some(DropReason::NoMapping)),
            };
        }
        match self.next_hops.intern(place) {
            Some(i) => Ok(Hop::Underlay(i)),
            None => Err(Some(DropReason::NextHopTableFull)),
        }
    }

    /// Where a reply pinned by [`ReturnVia`] goes: the node now serving
    /// the place, as the route to the load balancer's address lists it.
    fn via_hop(&mut self, index: EniIndex, via: ReturnVia) -> Hop {
        let Some(slot) = self.slot(index) else {
            return Hop::Drop(DropReason::UnknownSource);
        };
        let vni = slot.cfg.vni;
        let (underlay, mac) = match slot.cfg.subnet.route_table.lookup(IpAddr::V4(via.front)) {
            Some((
                _,
                RouteTarget::Gateway {
                    kind: GatewayKind::LoadBalancer,
                    id,
                    nodes,
                },
            )) => match nodes.at_place(usize::from(via.place)) {
                Some(underlay) => (underlay, gateway_mac(id)),
                None => return Hop::Drop(DropReason::TargetUnserved),
            },
            _ => return Hop::Drop(DropReason::NoRoute),
        };
        let place = NextHop {
            underlay,
            vni,
            dst_mac: mac,
            src_mac: self.cfg.router_mac,
        };
        match self.next_hops.intern(place) {
            Some(i) => Hop::Underlay(i),
            None => Hop::Drop(DropReason::NextHopTableFull),
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
            Hop::Transform(h) => {
                let Some(t) = self.transforms.get(h).copied() else {
                    return self.drop(DropReason::UnknownSource);
                };
                if transform::apply(buf.data_mut(), pf, &t.rewrite).is_err() {
                    return self.drop(DropReason::RewriteFailed);
                }
                let translated = ParsedFlow {
                    key: transform::rewritten(&pf.key, &t.rewrite),
                    ..*pf
                };
                match t.then {
                    // A transform's hop is never another transform.
                    Hop::Transform(_) | Hop::Unknown => self.drop(DropReason::UnknownSource),
                    then => self.apply(index, then, buf, &translated, hash, now),
                }
            }
            Hop::Drop(reason) => self.drop(reason),
            Hop::Unknown => self.drop(DropReason::UnknownSource),
        }
    }

    /// Inserts a new entry, evicting closed and expired flows when the
    /// table is full (their transforms are given back by the caller, with
    /// [`Self::give_back_transforms`]).
    fn insert_flow(
        &mut self,
        hash: u64,
        key: FlowKey,
        entry: FlowEntry,
        now: u64,
    ) -> Option<&mut FlowEntry> {
        let enis = &self.enis;
        let finished = &mut self.finished_logs;
        let released = &mut self.released;
        self.flows.insert(
            hash,
            key,
            entry,
            now,
            |k, e| {
                e.alias_of().is_none()
                    && enis
                        .get(usize::from(k.zone))
                        .and_then(Option::as_ref)
                        .is_none_or(|s| e.conn.is_closed() || e.conn.expired(now, &s.cfg.timeouts))
            },
            |k, e| {
                released.extend(e.transforms());
                if let Some(id) = enis
                    .get(usize::from(k.zone))
                    .and_then(Option::as_ref)
                    .map(|s| s.cfg.id.clone())
                {
                    push_records(finished, id, &k, &e);
                }
            },
        )
    }

    /// Files a translated flow's reply key, naming transform `h`; false if
    /// the table has no room.
    fn insert_alias(&mut self, key: FlowKey, h: u32, now: u64) -> bool {
        let hash = self.flows.hash(&key);
        let inserted = self
            .insert_flow(hash, key, FlowEntry::alias(h), now)
            .is_some();
        self.give_back_transforms();
        inserted
    }

    /// Gives back the transforms of entries that went away, with the
    /// aliases of their replies.
    fn give_back_transforms(&mut self) {
        while let Some(h) = self.released.pop() {
            if let Some(Transform {
                alias: Some(alias), ..
            }) = self.transforms.free(h)
            {
                let hash = self.flows.hash(&alias);
                self.flows.remove(hash, &alias);
            }
        }
    }

    /// A packet whose key is a translated flow's reply key: it finds the
    /// flow through transform `h`, is translated back, and takes the reply
    /// direction's hop (compiled here on the first reply).
    #[cold]
    fn process_translated(
        &mut self,
        index: EniIndex,
        way: Way,
        buf: &mut PacketBuf,
        pf: &ParsedFlow,
        h: u32,
        now: u64,
    ) -> Output {
        let Some(original) = self.transforms.get(h).copied() else {
            return self.drop(DropReason::ConntrackInvalid);
        };
        let owner = original.owner();
        let hash = self.flows.hash(&owner);
        let Some(slot) = self.slot(index) else {
            return self.drop(DropReason::UnknownSource);
        };
        let (epoch, timeouts, logged) = (slot.epoch, slot.cfg.timeouts, slot.cfg.flow_logged);
        let Some(entry) = self.flows.get_mut(hash, &owner) else {
            return self.drop(DropReason::ConntrackInvalid);
        };
        if entry.conn.expired(now, &timeouts) {
            if let Some(old) = self.flows.remove(hash, &owner) {
                self.finish_entry(owner, &old);
            }
            return self.drop(DropReason::ConntrackInvalid);
        }
        let current = entry.epoch == epoch;
        let hop = entry.hop(way);
        let compiled = match hop {
            Hop::Transform(r) => self
                .transforms
                .get(r)
                .is_some_and(|t| t.then != Hop::Unknown && current),
            _ => false,
        };
        let hop = if compiled {
            self.stats.fast_path += 1;
            hop
        } else {
            self.stats.slow_path += 1;
            let reply = transform::reply_rewrite(&original.original, &original.rewrite);
            let untranslated = transform::rewritten(&pf.key, &reply);
            let Some(slot) = self.slot(index) else {
                return self.drop(DropReason::UnknownSource);
            };
            let packet = PacketMeta::with_key(pf, untranslated);
            let next = match layer::run(
                &slot.cfg,
                slot.layers,
                way,
                &packet,
                FlowState::Tracked,
                &mut NoSink,
            ) {
                Ok(v) => next_of(&slot.cfg, v.forward, &v.key),
                Err(denied) => return self.drop(denied.reason),
            };
            let then = match self.resolve(next, untranslated.dst_ip()) {
                Ok(then) => then,
                Err(None) => {
                    self.stats.pending += 1;
                    return Output::Pending;
                }
                Err(Some(reason)) => return self.drop(reason),
            };
            match hop {
                Hop::Transform(r) if self.transforms.get(r).is_some() => {
                    if let Some(t) = self.transforms.get_mut(r) {
                        t.then = then;
                    }
                    hop
                }
                _ => {
                    let t = Transform {
                        rewrite: reply,
                        then,
                        original: original.original,
                        alias: None,
                        via: None,
                    };
                    match self.transforms.alloc(t) {
                        Some(r) => Hop::Transform(r),
                        None => return self.drop(DropReason::TransformTableFull),
                    }
                }
            }
        };
        let Some(entry) = self.flows.get_mut(hash, &owner) else {
            return self.drop(DropReason::ConntrackInvalid);
        };
        entry.refresh(epoch);
        entry.set_hop(way, hop);
        let dir = if way == entry.origin() {
            Direction::Original
        } else {
            Direction::Reply
        };
        if entry.conn.update(dir, pf.tcp_flags, now) == Verdict::Invalid {
            return self.drop(DropReason::ConntrackInvalid);
        }
        if logged && !entry.count(way, pf.ip_len, pf.tcp_flags, now) {
            flush_counters(&mut self.finished_logs, &self.enis, &owner, entry);
            entry.count(way, pf.ip_len, pf.tcp_flags, now);
        }
        let hash = self.flows.hash(&pf.key.in_zone(index).normalized().0);
        self.apply(index, hop, buf, pf, hash, now)
    }

    /// ICMP errors pass the security groups when they quote a tracked flow
    /// of this ENI (spec 3.2); the other layers still apply. They create no
    /// entry of their own.
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
        let state = if related {
            FlowState::Related
        } else {
            FlowState::New
        };
        let packet = PacketMeta::new(pf);
        let next = match layer::run(&slot.cfg, slot.layers, way, &packet, state, &mut NoSink) {
            Ok(v) => next_of(&slot.cfg, v.forward, &v.key),
            Err(denied) => {
                self.log_reject(denied.reason, pf.key.in_zone(index), way, pf, now);
                return self.drop(denied.reason);
            }
        };
        self.stats.slow_path += 1;
        let hash = self.hasher.hash(&pf.key);
        match self.resolve(next, pf.key.dst_ip()) {
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
        let logged = slot_of(&self.enis, key.zone).is_some_and(|s| s.cfg.flow_logged);
        if logged && matches!(reason, DropReason::SgDeny | DropReason::NaclDeny) {
            self.rejects.record(key, way, pf.ip_len, pf.tcp_flags, now);
        }
    }

    /// Keeps the flow-log counts of an entry that is going away, and gives
    /// back what it owned.
    fn finish_entry(&mut self, key: FlowKey, entry: &FlowEntry) {
        if let Some(id) = self.slot(key.zone).map(|s| s.cfg.id.clone()) {
            push_records(&mut self.finished_logs, id, &key, entry);
        }
        self.released.extend(entry.transforms());
        self.give_back_transforms();
    }

    /// Removes expired and closed flows in one pass over the whole table:
    /// for tests and tools; the worker uses [`Router::expire_step`].
    pub fn expire(&mut self, now: u64) -> usize {
        let enis = &self.enis;
        let finished = &mut self.finished_logs;
        let released = &mut self.released;
        let removed = self.flows.sweep(
            |k, e| {
                e.alias_of().is_none()
                    && slot_of(enis, k.zone).is_none_or(|s| e.conn.expired(now, &s.cfg.timeouts))
            },
            |k, e| {
                released.extend(e.transforms());
                if let Some(id) = eni_id(enis, k.zone) {
                    push_records(finished, id, &k, &e);
                }
            },
        );
        self.give_back_transforms();
        removed
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
        let released = &mut self.released;
        let mut harvest = Vec::new();
        let removed = self.flows.sweep_step(
            budget,
            |k, e| {
                if e.alias_of().is_some() {
                    // An alias goes with the flow it names.
                    return false;
                }
                let slot = slot_of(enis, k.zone);
                let dead = slot.is_none_or(|s| e.conn.expired(now, &s.cfg.timeouts));
                if !dead && let (Some(s), Some(_)) = (slot, e.log_start_ms()) {
                    push_records(&mut harvest, s.cfg.id.clone(), k, e);
                    e.reset_counters();
                }
                dead
            },
            |k, e| {
                released.extend(e.transforms());
                if let Some(id) = eni_id(enis, k.zone) {
                    push_records(finished, id, &k, &e);
                }
            },
        );
        finished.append(&mut harvest);
        self.give_back_transforms();
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

    /// Explains what this router would do with `frame` crossing ENI
    /// `index` `way`: each layer's decision with the rule behind it, then
    /// the fate. The same layers as the packet path, with a recording sink;
    /// it commits nothing (no flow, counter or mapping request), which
    /// `&self` guarantees. A packet for another ENI of this host is
    /// followed through that ENI's ingress layers.
    pub fn explain(&self, index: EniIndex, way: Way, frame: &[u8]) -> Explanation {
        let mut steps = Vec::new();
        let fate = self.explain_at(index, way, frame, &mut steps, None);
        Explanation { steps, fate }
    }

    fn explain_at(
        &self,
        index: EniIndex,
        way: Way,
        frame: &[u8],
        steps: &mut Vec<Step>,
        // On the ingress leg of a packet this router hands to one of its own
        // ENIs: the entry the egress leg would have made (its zone, key and
        // whether it is tracked). A packet to its own ENI meets it.
        egress_leg: Option<(FlowKey, bool)>,
    ) -> Fate {
        let Some(slot) = self.slot(index) else {
            return Fate::Dropped(DropReason::UnknownSource);
        };
        let pf = match Frame::parse(frame) {
            Frame::Ip(pf) if pf.later_fragment => return Fate::Dropped(DropReason::Fragment),
            Frame::Ip(pf) => pf,
            Frame::Arp | Frame::Unsupported => {
                return Fate::Dropped(DropReason::UnsupportedEthertype);
            }
            Frame::Malformed => return Fate::Dropped(DropReason::Malformed),
        };
        let (nkey, _) = pf.key.in_zone(index).normalized();
        let entry = self.flows.get(self.flows.hash(&nkey), &nkey);
        let existing = entry
            .map(|e| e.tracked())
            .or(egress_leg.filter(|(k, _)| *k == nkey).map(|(_, t)| t));
        let state = match existing {
            Some(true) => FlowState::Tracked,
            Some(false) => FlowState::Untracked,
            None => FlowState::New,
        };
        let mut recorder = Recorder::new(&slot.cfg);
        let judged = layer::run(
            &slot.cfg,
            slot.layers,
            way,
            &PacketMeta::new(&pf),
            state,
            &mut recorder,
        );
        steps.append(&mut recorder.steps);
        let (next, dst, tracked) = match judged {
            Ok(v) => (
                next_of(&slot.cfg, v.forward, &v.key),
                v.key.dst_ip(),
                existing.or(v.tracked).unwrap_or(true),
            ),
            Err(denied) => return Fate::Dropped(denied.reason),
        };
        // The connection tracker's say, on a copy, where the packet path
        // asks it: a packet that does not fit its connection is refused
        // before it is forwarded; one that cannot open a connection, once
        // its destination is known.
        if let Some(e) = entry {
            let dir = if way == e.origin() {
                Direction::Original
            } else {
                Direction::Reply
            };
            let mut conn = e.conn;
            if conn.update(dir, pf.tcp_flags, conn.last_seen()) == Verdict::Invalid
                && !is_opening_syn(&pf)
            {
                return Fate::Dropped(DropReason::ConntrackInvalid);
            }
        }
        let opens = existing.is_some()
            || Conn::new(Protocol::from_ip(pf.key.protocol), pf.tcp_flags, 0).is_some();
        let place = next.place(|vni| self.mapping.peek(vni, dst), self.cfg.router_mac);
        let NextHop {
            vni,
            underlay,
            dst_mac,
            ..
        } = match place {
            Ok(Some(place)) => place,
            Ok(None) if !opens => return Fate::Dropped(DropReason::ConntrackInvalid),
            Ok(None) => {
                return Fate::Delivered {
                    eni: slot.cfg.id.clone(),
                };
            }
            Err(None) => return Fate::Unresolved,
            Err(Some(reason)) => return Fate::Dropped(reason),
        };
        let local = (underlay == self.cfg.underlay).then(|| self.eni_at(vni, dst, dst_mac));
        if local == Some(None) {
            return Fate::Dropped(DropReason::NoMapping);
        }
        if !opens {
            return Fate::Dropped(DropReason::ConntrackInvalid);
        }
        if underlay != self.cfg.underlay {
            return Fate::Sent {
                underlay,
                vni,
                dst_mac,
            };
        }
        match local.flatten() {
            Some(local) if egress_leg.is_none() => {
                let leg = Some((nkey, tracked));
                self.explain_at(local, Way::Ingress, frame, steps, leg)
            }
            _ => Fate::Dropped(DropReason::NoMapping),
        }
    }

    /// The local ENI a packet of VPC `vni` arriving from the underlay is
    /// for, as decapsulation picks it: by destination address, or by MAC for
    /// transit traffic to an appliance.
    pub fn eni_at(&self, vni: u32, dst: IpAddr, dst_mac: MacAddr) -> Option<EniIndex> {
        self.by_addr
            .get(&(vni, dst))
            .or_else(|| self.by_mac.get(&(vni, dst_mac)))
            .copied()
    }

    /// Looks up the entry of a flow as ENI `eni` sees it, for tests and traces.
    pub fn flow(&self, eni: EniIndex, key: &FlowKey) -> Option<&FlowEntry> {
        let (n, _) = key.in_zone(eni).normalized();
        self.flows.get(self.flows.hash(&n), &n)
    }
}

/// Where a packet that passed the layers goes, copied out of the port's
/// configuration so the router's tables can be borrowed to resolve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Into the ENI.
    Deliver,
    /// To the owner of the destination address in VPC `vni`.
    Mapped {
        vni: u32,
        same_subnet: bool,
        eni_mac: MacAddr,
    },
    /// To a node that serves a route target (a gateway, an appliance ENI),
    /// in VPC `vni`; `mac` is the appliance's (a gateway takes the router's).
    Fixed {
        vni: u32,
        underlay: IpAddr,
        mac: Option<MacAddr>,
    },
}

impl Next {
    /// The underlay hop this leads to, `None` for delivery into the ENI.
    /// `lookup` answers for the destination in a VPC (the mapping service
    /// on the packet path, its read-only peek in explain mode); `Err(None)`
    /// means its answer is pending.
    fn place(
        self,
        lookup: impl FnOnce(u32) -> Lookup,
        router_mac: MacAddr,
    ) -> Result<Option<NextHop>, Option<DropReason>> {
        match self {
            Next::Deliver => Ok(None),
            Next::Mapped {
                vni,
                same_subnet,
                eni_mac,
            } => match lookup(vni) {
                Lookup::Found(m) => Ok(Some(NextHop {
                    vni,
                    underlay: m.underlay,
                    dst_mac: m.mac,
                    src_mac: if same_subnet { eni_mac } else { router_mac },
                })),
                Lookup::Pending => Err(None),
                Lookup::Absent => Err(Some(DropReason::NoMapping)),
            },
            Next::Fixed { vni, underlay, mac } => Ok(Some(NextHop {
                vni,
                underlay,
                dst_mac: mac.unwrap_or(router_mac),
                src_mac: router_mac,
            })),
        }
    }
}

/// The [`Next`] of a packet (with `key` after the layers' rewrites) that
/// the layers sent to `forward` from `port`.
fn next_of(port: &EniConfig, forward: Option<Forward<'_>>, key: &FlowKey) -> Next {
    match forward {
        None => Next::Deliver,
        Some(Forward::Mapped { vni }) => Next::Mapped {
            vni,
            same_subnet: port.subnet.contains(key.dst_ip()),
            eni_mac: port.mac,
        },
        Some(Forward::Node { underlay, mac, .. }) => Next::Fixed {
            vni: port.vni,
            underlay,
            mac,
        },
    }
}

/// A received datagram after decapsulation: its ENI, flow and flow hash.
type Classified = Result<(EniIndex, ParsedFlow, u64, Option<ReturnVia>), DropReason>;

/// Upstream answers each VPC resolver caches.
const RESOLVER_CACHE: usize = 4096;

/// Frames a batch takes at a time: enough to overlap the cache misses of
/// that many lookups, few enough that their slots stay in L1.
pub const BATCH: usize = 32;

/// A frame from an instance, parsed once: what the gateway and the layers
/// read.
#[derive(Debug, Clone, Copy)]
enum Frame {
    Arp,
    Ip(ParsedFlow),
    Unsupported,
    Malformed,
}

impl Frame {
    #[inline]
    fn parse(frame: &[u8]) -> Frame {
        let Ok(eth) = ethernet::split(frame) else {
            return Frame::Malformed;
        };
        match eth.ethertype {
            ethertype::ARP => Frame::Arp,
            ethertype::IPV4 | ethertype::IPV6 => {
                let Some(ip) = frame.get(eth.payload_offset..) else {
                    return Frame::Malformed;
                };
                match flow::parse_ip(ip, eth.ethertype) {
                    Ok(mut pf) => {
                        pf.l3_offset += eth.payload_offset;
                        pf.l4_offset += eth.payload_offset;
                        Frame::Ip(pf)
                    }
                    Err(_) => Frame::Malformed,
                }
            }
            _ => Frame::Unsupported,
        }
    }

    /// The flow of an ordinary unicast IP frame, the kind the batch path
    /// takes; `None` for anything the gateway or an error path must see
    /// (ARP, DHCP, broadcast, fragments, ICMP errors, malformed frames).
    #[inline]
    fn plain_unicast(&self, frame: &[u8]) -> Option<ParsedFlow> {
        match self {
            Frame::Ip(pf)
                if frame.first().is_some_and(|b| b & 1 == 0)
                    && !pf.later_fragment
                    && !pf.icmp_error
                    && !gateway::is_dhcp_flow(pf)
                    && !resolver::may_be_query(pf) =>
            {
                Some(*pf)
            }
            _ => None,
        }
    }
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
