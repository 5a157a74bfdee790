//! A node's network load balancers (issue 17), beside its NAT gateways:
//! the assignment of each turned into its flow core ([`Nlb`]) and its
//! health checkers, the packets of clients and targets, and what the shard
//! says about its flows.
//!
//! - **From a client** (a host, or an edge for an internet-facing one): the
//!   frame names the load balancer by its MAC, or is addressed to one of
//!   its fronts. The node learns where the client lives, picks the target
//!   (or follows the flow's choice) and sends the packet to the target's
//!   host with the return-via option, so the host sends the replies back
//!   through this place of the shard whatever their addresses say.
//! - **From a target**: a reply, to the client (client IP preserved, the
//!   host pinned it here) or to a front address (translated source). It
//!   gets the front address back and goes to the client's host.
//! - **Replication, failover and rejoin** follow the NAT's: each new
//!   flow's record goes to the buddy before the first packet leaves; the
//!   buddy takes a dead place's flows over; a rejoining node gets its flows
//!   handed back.
//!
//! Health checks are driven here too (see [`Serve::health`]): the checker
//! of each target group decides, the prober of each front address sends
//! the probes, and what they find sets the targets' health in the flow
//! core and in the heartbeat's reports.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::BTreeMap;

use hashbrown::HashMap;
use openvpc_dataplane::buf::PacketBuf;
use openvpc_model::hyperplane::{
    LbAssignment, LbHealthCheck, LbHealthProtocol, LbProtocol, LbTargetType,
};
use openvpc_model::lifecycle::TargetHealthState;
use openvpc_model::node::TargetHealthReport;
use openvpc_packet::MacAddr;
use openvpc_packet::geneve::ReturnVia;

use super::{Neighbor, NodeDrop, Serve, Verdict, buddy_of, gateway_mac, serving_of};
use crate::health::{
    self, Change, HealthCheckConfig, HealthCheckParams, HealthChecker, Outcome, Recorded,
    TargetState,
};
use crate::nlb::{
    self, Front, Health, Listener, Nlb, NlbConfig, NlbCounters, NlbDrop, NlbOutput, RecordKind,
    TargetGroup, TargetType,
};
use crate::probe::{ProbeId, Prober, ProberCounters};
use crate::wire::Body;

/// Source ports of flows whose client address is not preserved, split
/// among the shard's places; the ports above are the health checks'.
pub const FLOW_PORTS: core::ops::RangeInclusive<u16> = 1024..=60_999;
/// Source ports of health-check probes, split among the shard's places so
/// two nodes never probe a target from the same address and port.
pub const PROBE_PORTS: core::ops::RangeInclusive<u16> = 61_000..=65_535;

/// One load balancer on this node.
#[derive(Debug)]
pub(super) struct Balancer {
    pub(super) assignment: LbAssignment,
    pub(super) nlb: Nlb,
    /// `elb-` and its ID ([`gateway_id`]).
    pub(super) name: String,
    pub(super) place: u8,
    pub(super) alive: Vec<Option<IpAddr>>,
    /// Per target group, in the assignment's order: its checker, and the
    /// health-check settings it was built from.
    pub(super) checkers: Vec<(LbHealthCheck, HealthChecker)>,
    /// Its packets the node dropped around the flow core.
    pub(super) dropped: u64,
    /// Per front address, in the assignment's order: the prober whose
    /// probes leave from it.
    pub(super) probers: Vec<Prober>,
    /// The probes in flight: (front, probe) → (group, target).
    pub(super) probing: HashMap<(usize, ProbeId), (usize, health::Target)>,
}

impl Balancer {
    fn buddy(&self) -> Option<IpAddr> {
        buddy_of(&self.alive, self.place)
    }

    fn serving(&self, place: u8) -> Option<IpAddr> {
        serving_of(&self.alive, place)
    }

    /// The place's node address: this node's own.
    fn me(&self) -> Option<IpAddr> {
        self.alive.get(usize::from(self.place)).copied().flatten()
    }
}

/// One load balancer's figures on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalancerStats {
    pub id: String,
    pub name: String,
    pub vni: u32,
    pub place: u8,
    pub nodes: u8,
    /// The places whose flows this node serves (its own, and dead ones it
    /// took over).
    pub serves: Vec<u8>,
    pub counters: NlbCounters,
    /// `ActiveFlowCount` on this node.
    pub active: u32,
    pub replicas: u32,
    /// Per [`NlbDrop`], in [`NlbDrop::ALL`] order.
    pub drops: [u64; NlbDrop::ALL.len()],
    pub node_dropped: u64,
    /// Per target group: its ID, `HealthyHostCount` and
    /// `UnHealthyHostCount` as this node's checks found them.
    pub groups: Vec<(String, u32, u32)>,
    /// Per front address: its prober's counters.
    pub probes: Vec<ProberCounters>,
    /// Packets its flow logs could not count (too many flows at once).
    pub flow_counts_skipped: u64,
}

fn protocol_of(p: LbProtocol) -> nlb::Protocol {
    match p {
        LbProtocol::Tcp => nlb::Protocol::Tcp,
        LbProtocol::Udp => nlb::Protocol::Udp,
        LbProtocol::TcpUdp => nlb::Protocol::TcpUdp,
    }
}

/// A group's health-check settings as the checker takes them; settings
/// the API let through but the checker refuses fall back to the defaults
/// of their protocol rather than leave the group unchecked.
pub(super) fn check_config(h: &LbHealthCheck) -> HealthCheckConfig {
    let protocol = match h.protocol {
        LbHealthProtocol::Tcp => "TCP",
        LbHealthProtocol::Http => "HTTP",
        LbHealthProtocol::Https => "HTTPS",
    };
    let port = h.port.map(|p| p.to_string());
    let params = HealthCheckParams {
        protocol: Some(protocol),
        port: Some(port.as_deref().unwrap_or("traffic-port")),
        path: h.path.as_deref(),
        matcher: h.matcher.as_deref(),
        interval_secs: Some(h.interval_secs),
        timeout_secs: Some(h.timeout_secs),
        healthy_threshold: Some(h.healthy_threshold),
        unhealthy_threshold: Some(h.unhealthy_threshold),
    };
    HealthCheckConfig::from_params(&params).unwrap_or_else(|_| {
        let p = health::HealthProtocol::parse(protocol).unwrap_or(health::HealthProtocol::Tcp);
        HealthCheckConfig::nlb_default(p)
    })
}

fn checked_target(t: &openvpc_model::hyperplane::LbTarget) -> health::Target {
    health::Target::new(t.id.clone(), t.ip, t.port)
}

/// The flow core's view of a target's health: what the checker found, or
/// what the control plane decided (draining, unused).
fn health_of(
    t: &openvpc_model::hyperplane::LbTarget,
    checker: Option<&HealthChecker>,
    checks_on: bool,
    now: u64,
    unix_ms: u64,
) -> Health {
    if let Some(until_ms) = t.draining_until_ms {
        // Rounded up, and a second more for this clock's own rounding
        // (whole seconds): a flow may outlive its delay by a moment, never
        // end before it.
        let left = until_ms.saturating_sub(unix_ms).div_ceil(1000);
        return Health::Draining {
            until: now + left + 1,
        };
    }
    if t.invalid_state {
        return Health::Unused;
    }
    if !checks_on {
        return Health::Healthy;
    }
    match checker.map(|c| c.health(&checked_target(t)).state) {
        Some(TargetState::Healthy) => Health::Healthy,
        Some(TargetState::Unhealthy) => Health::Unhealthy,
        _ => Health::Initial,
    }
}

/// The flow core's configuration for `a` at place `place`, with the
/// targets' health as `checkers` found it.
fn nlb_config(
    a: &LbAssignment,
    place: u8,
    capacity: usize,
    checkers: &[(LbHealthCheck, HealthChecker)],
    now: u64,
    unix_ms: u64,
) -> NlbConfig {
    let fronts = a
        .fronts
        .iter()
        .map(|f| Front {
            address: f.private_ip,
            az: f.availability_zone.clone(),
        })
        .collect();
    let target_groups = a
        .target_groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let checker = checkers.get(gi).map(|(_, c)| c);
            TargetGroup {
                id: g.id.clone(),
                target_type: match g.target_type {
                    LbTargetType::Instance => TargetType::Instance,
                    LbTargetType::Ip => TargetType::Ip,
                },
                targets: g
                    .targets
                    .iter()
                    .map(|t| nlb::Target {
                        id: t.id.clone(),
                        ip: t.ip,
                        port: t.port,
                        az: t.availability_zone.clone(),
                        health: health_of(t, checker, g.health_check.enabled, now, unix_ms),
                    })
                    .collect(),
                preserve_client_ip: g.preserve_client_ip,
                cross_zone: g.cross_zone,
            }
        })
        .collect();
    let listeners = a
        .listeners
        .iter()
        .filter_map(|l| {
            let group = a
                .target_groups
                .iter()
                .position(|g| g.id == l.target_group_id)?;
            Some(Listener {
                port: l.port,
                protocol: protocol_of(l.protocol),
                target_group: group,
            })
        })
        .collect();
    let mut config = NlbConfig::new(
        fronts,
        listeners,
        target_groups,
        place,
        a.shard.len() as u8,
        capacity,
    );
    config.cross_zone = a.cross_zone;
    config.ports = FLOW_PORTS;
    if let Some(t) = a.listeners.iter().find_map(|l| l.tcp_idle_timeout) {
        config.tcp_idle_timeout = t;
    }
    config
}

/// This place's slice of [`PROBE_PORTS`] in a shard of `k`.
pub fn probe_ports(place: u8, k: u8) -> core::ops::RangeInclusive<u16> {
    let (start, end) = (
        u32::from(*PROBE_PORTS.start()),
        u32::from(*PROBE_PORTS.end()),
    );
    let size = (end - start + 1) / u32::from(k.max(1));
    let first = start + u32::from(place) * size;
    let last = (first + size.max(1) - 1).min(end);
    first as u16..=last as u16
}

/// A prober per front address of `a`, on this place's probe ports.
fn probers_for(a: &LbAssignment, place: u8, k: u8) -> Vec<Prober> {
    a.fronts
        .iter()
        .map(|f| Prober::new(f.private_ip, probe_ports(place, k)))
        .collect()
}

/// The checkers of `a`'s groups: kept where the settings did not change
/// (their counts and states go on), new otherwise; every target in use is
/// registered, a draining one deregistered, one no longer there forgotten.
fn checkers_for(
    a: &LbAssignment,
    mut old: Vec<(String, LbHealthCheck, HealthChecker)>,
    now_ms: u64,
) -> Vec<(LbHealthCheck, HealthChecker)> {
    a.target_groups
        .iter()
        .map(|g| {
            let kept = old
                .iter()
                .position(|(id, h, _)| *id == g.id && *h == g.health_check)
                .map(|i| old.swap_remove(i));
            let mut checker = match kept {
                Some((_, _, c)) => c,
                None => HealthChecker::new(check_config(&g.health_check)),
            };
            let wanted: Vec<health::Target> = g
                .targets
                .iter()
                .filter(|t| g.health_check.enabled && t.draining_until_ms.is_none())
                .filter(|t| !t.invalid_state)
                .map(checked_target)
                .collect();
            let stale: Vec<health::Target> = checker
                .targets()
                .map(|(t, _)| t.clone())
                .filter(|t| !wanted.contains(t))
                .collect();
            for t in stale {
                // Gone from the next tick on.
                checker.deregister(&t, now_ms, 0);
            }
            for t in wanted {
                checker.register(t, now_ms);
            }
            (g.health_check.clone(), checker)
        })
        .collect()
}

impl Serve {
    /// Takes the node's load balancers (whole) at `now` (the node's clock
    /// in seconds; `unix_ms` the wall clock, for deregistration deadlines
    /// the control plane gives in it).
    pub fn configure_balancers(&mut self, assignments: &[LbAssignment], now: u64, unix_ms: u64) {
        let now_ms = now.saturating_mul(1000);
        let mut old: HashMap<String, super::Balancer> = self
            .balancers
            .drain(..)
            .map(|b| (b.assignment.id.clone(), b))
            .collect();
        let mut next = Vec::with_capacity(assignments.len());
        for a in assignments {
            let Some((place, k, alive)) = super::place_in(&a.shard, &self.config.node_id) else {
                continue;
            };
            let kept = old
                .remove(&a.id)
                .filter(|b| b.place == place && b.alive.len() == usize::from(k));
            match kept {
                Some(mut b) => {
                    let previous: Vec<(String, LbHealthCheck, HealthChecker)> = b
                        .assignment
                        .target_groups
                        .iter()
                        .map(|g| g.id.clone())
                        .zip(core::mem::take(&mut b.checkers))
                        .map(|(id, (h, c))| (id, h, c))
                        .collect();
                    b.checkers = checkers_for(a, previous, now_ms);
                    let config =
                        nlb_config(a, place, self.config.capacity, &b.checkers, now, unix_ms);
                    if b.nlb.reconfigure(config).is_err() {
                        continue;
                    }
                    let old_buddy = b.buddy();
                    let fronts_changed = b.assignment.fronts != a.fronts;
                    b.assignment = a.clone();
                    b.alive = alive;
                    if fronts_changed {
                        b.probers = probers_for(a, place, k);
                        b.probing.clear();
                    }
                    self.follow_balancer_places(&mut b, old_buddy, now);
                    next.push(b);
                }
                None => {
                    let checkers = checkers_for(a, Vec::new(), now_ms);
                    let config =
                        nlb_config(a, place, self.config.capacity, &checkers, now, unix_ms);
                    let Ok(mut nlb) = Nlb::new(config) else {
                        continue;
                    };
                    nlb.quiet_for(now, super::JOIN_QUIET_SECS);
                    let mut b = super::Balancer {
                        name: gateway_id(a),
                        assignment: a.clone(),
                        nlb,
                        place,
                        alive,
                        checkers,
                        dropped: 0,
                        probers: probers_for(a, place, k),
                        probing: HashMap::new(),
                    };
                    self.join(&b.name, &b.alive, place);
                    self.take_over_dead_balancer(&mut b, now);
                    next.push(b);
                }
            }
        }
        for b in &mut next {
            b.nlb.flow_logging().set(!b.assignment.flow_logs.is_empty());
        }
        next.sort_by(|a, b| a.name.cmp(&b.name));
        self.balancers = next;
        self.reindex_balancers();
    }

    fn take_over_dead_balancer(&mut self, b: &mut super::Balancer, now: u64) {
        let me = b.me();
        for q in 0..b.alive.len() as u8 {
            if q != b.place && b.alive[usize::from(q)].is_none() && b.serving(q) == me {
                b.nlb.take_over(q, now);
                self.counters.takeovers += 1;
            }
        }
    }

    fn follow_balancer_places(
        &mut self,
        b: &mut super::Balancer,
        old_buddy: Option<IpAddr>,
        now: u64,
    ) {
        self.take_over_dead_balancer(b, now);
        let buddy = b.buddy();
        if buddy != old_buddy
            && let Some(to) = buddy
        {
            let mut records: Vec<nlb::FlowRecord> = b.nlb.records_of(b.place).collect();
            records.retain(|r| r.kind == RecordKind::Upsert);
            self.send_records(to, &b.name, records, false);
        }
    }

    fn reindex_balancers(&mut self) {
        self.lb_by_mac.clear();
        self.lb_by_front.clear();
        for (i, b) in self.balancers.iter().enumerate() {
            let a = &b.assignment;
            self.lb_by_mac.insert((a.vni, gateway_mac(&b.name)), i);
            for f in &a.fronts {
                self.lb_by_front.insert((a.vni, f.private_ip), i);
            }
        }
    }

    /// The load balancer a frame is for: named by its MAC, or addressed
    /// to one of its fronts.
    pub(super) fn balancer_for(&self, vni: u32, dst_mac: MacAddr, dst: Ipv4Addr) -> Option<usize> {
        if self.balancers.is_empty() {
            return None;
        }
        self.lb_by_mac
            .get(&(vni, dst_mac))
            .or_else(|| self.lb_by_front.get(&(vni, dst)))
            .copied()
    }

    pub(super) fn balancer_index(&self, id: &str) -> Option<usize> {
        self.balancers
            .binary_search_by(|b| b.name.as_str().cmp(id))
            .ok()
    }

    fn drop_for_balancer(&mut self, bi: usize, reason: NodeDrop) -> Verdict {
        if let Some(b) = self.balancers.get_mut(bi) {
            b.dropped += 1;
        }
        self.drop(reason)
    }

    /// A datagram for load balancer `bi`: `ip` bytes of Geneve and
    /// Ethernet headers, then the packet from `src`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn balancer_packet(
        &mut self,
        bi: usize,
        buf: &mut PacketBuf,
        ip: usize,
        src: Ipv4Addr,
        (from, src_mac): (IpAddr, MacAddr),
        now: u64,
        forwarded: bool,
    ) -> Verdict {
        let Some(b) = self.balancers.get(bi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let vni = b.assignment.vni;
        if !buf.pop_front(ip) {
            return self.drop(NodeDrop::Malformed);
        }
        if self.probe_reply(bi, buf.data(), now) {
            return Verdict::Done;
        }
        let Some(b) = self.balancers.get_mut(bi) else {
            return self.drop(NodeDrop::UnknownGateway);
        };
        let (out, from_client) = b.nlb.from_node(buf, now, forwarded);
        if from_client {
            self.learn_client(bi, vni, src, src_mac, from, forwarded);
        }
        match out {
            NlbOutput::ToTarget {
                target,
                owner,
                record,
            } => {
                let after = self.replicate_lb(bi, record);
                let Some(b) = self.balancers.get(bi) else {
                    return self.drop(NodeDrop::UnknownGateway);
                };
                let via = Some(ReturnVia {
                    front: b
                        .assignment
                        .fronts
                        .first()
                        .map_or(Ipv4Addr::UNSPECIFIED, |f| f.private_ip),
                    place: owner,
                })
                // Big segments leave without it: their flow's entry at the
                // target's host was made by an earlier, smaller packet, and
                // the option must not push a full-size frame past the MTU.
                .filter(|_| buf.len() <= MAX_PINNED_PACKET);
                self.send_to_host(buf, vni, target, via, after, now)
            }
            NlbOutput::ToClient { client, record } => {
                self.replicate_lb(bi, record);
                self.send_to_host(buf, vni, client, None, None, now)
            }
            NlbOutput::Forward { place } => {
                let Some(b) = self.balancers.get(bi) else {
                    return self.drop(NodeDrop::UnknownGateway);
                };
                let me = b.me();
                let Some(to) = b.serving(place).filter(|to| Some(*to) != me) else {
                    return self.drop_for_balancer(bi, NodeDrop::UnknownGateway);
                };
                let id = b.name.clone();
                self.forward_to(to, &id, ip, buf, from)
            }
            NlbOutput::Reset => {
                // Back to where the segment came from: the client's host,
                // or the edge an outside client's packets came through.
                if !Serve::encapsulate(buf, vni, src_mac, self.config.router_mac) {
                    return self.drop(NodeDrop::Malformed);
                }
                Verdict::Send {
                    to: from,
                    after: None,
                }
            }
            NlbOutput::Drop(_) => Verdict::Done,
        }
    }

    /// Sends a bare IPv4 packet to the host of `ip` in `vni`: a learned
    /// client, or the mapping service's answer (asked for when not known).
    #[allow(clippy::too_many_arguments)]
    fn send_to_host(
        &mut self,
        buf: &mut PacketBuf,
        vni: u32,
        ip: Ipv4Addr,
        via: Option<ReturnVia>,
        after: Option<u32>,
        now: u64,
    ) -> Verdict {
        let known = self.neighbors.get(&(vni, ip)).copied().or_else(|| {
            self.mappings
                .get(&(vni, ip))
                .filter(|(_, at)| now.saturating_sub(*at) < super::MAPPING_TTL_SECS)
                .and_then(|(n, _)| *n)
        });
        match known {
            Some(n) => {
                if !Serve::encapsulate_via(buf, vni, n.mac, self.config.router_mac, via) {
                    return self.drop(NodeDrop::Malformed);
                }
                Verdict::Send { to: n.host, after }
            }
            None => Verdict::Resolve { vni, ip, via },
        }
    }

    /// Notes where a client lives, for the replies; the buddy hears of a
    /// new one, so the replies find it after a failover.
    fn learn_client(
        &mut self,
        bi: usize,
        vni: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
        host: IpAddr,
        forwarded: bool,
    ) {
        let n = Neighbor { host, mac };
        if forwarded || self.neighbors.get(&(vni, ip)) == Some(&n) {
            return;
        }
        self.neighbors.insert((vni, ip), n);
        let Some(b) = self.balancers.get(bi) else {
            return;
        };
        if let Some(to) = b.buddy() {
            let id = b.name.clone();
            self.send(to, &id, Body::Neighbor { vni, ip, mac, host });
        }
    }

    /// A record to the buddy: a new flow's asks for an acknowledgement
    /// (its first packet waits), the rest go without.
    fn replicate_lb(&mut self, bi: usize, record: Option<nlb::FlowRecord>) -> Option<u32> {
        let record = record?;
        let b = self.balancers.get(bi)?;
        let to = b.buddy()?;
        let id = b.name.clone();
        let ack = record.state == nlb::FlowState::Opened;
        self.counters.records_sent += 1;
        let seq = self.send(
            to,
            &id,
            Body::LbReplicate {
                ack,
                records: vec![record],
            },
        );
        ack.then_some(seq)
    }

    /// A peer's message about load balancer `bi`.
    pub(super) fn balancer_peer(
        &mut self,
        bi: usize,
        seq: u32,
        id: String,
        body: Body,
        from: IpAddr,
        now: u64,
    ) {
        match body {
            Body::LbReplicate { ack, records } => {
                self.counters.records_received += records.len() as u64;
                let mut refused = 0;
                if let Some(b) = self.balancers.get_mut(bi) {
                    for r in &records {
                        match b.nlb.replica(r, now) {
                            Ok(()) | Err(nlb::ReplicaError::OwnFlow) => {}
                            Err(_) => refused += 1,
                        }
                    }
                }
                self.drops[NodeDrop::RecordRefused as usize] += refused;
                if ack {
                    self.outbox.push((
                        from,
                        crate::wire::Message {
                            seq,
                            gateway: id,
                            body: Body::Ack,
                        },
                    ));
                }
            }
            Body::LbHandBack { records } => {
                let mut refused = 0;
                if let Some(b) = self.balancers.get_mut(bi) {
                    for r in &records {
                        match b.nlb.adopt(r, now) {
                            Ok(()) => self.counters.adopted += 1,
                            Err(_) => refused += 1,
                        }
                    }
                }
                self.drops[NodeDrop::RecordRefused as usize] += refused;
            }
            Body::Join { place } => self.balancer_joined(bi, place, from),
            Body::Neighbor { vni, ip, mac, host } => {
                self.neighbors.insert((vni, ip), Neighbor { host, mac });
            }
            // NAT records, forwarded packets and acknowledgements are the
            // caller's; anything else about a load balancer is malformed.
            _ => {
                self.drop(NodeDrop::PeerMalformed);
            }
        }
    }

    /// The node at `from` joined place `place` of load balancer `bi`.
    fn balancer_joined(&mut self, bi: usize, place: u8, from: IpAddr) {
        let Some(b) = self.balancers.get_mut(bi) else {
            return;
        };
        if place == b.place || usize::from(place) >= b.alive.len() {
            return;
        }
        let id = b.name.clone();
        let vni = b.assignment.vni;
        b.nlb.hand_back(place);
        let back: Vec<nlb::FlowRecord> = b
            .nlb
            .records_of(place)
            .filter(|r| r.kind == RecordKind::Upsert)
            .collect();
        if let Some(a) = b.alive.get_mut(usize::from(place)) {
            *a = Some(from);
        }
        let buddy = b.buddy() == Some(from);
        let mine: Vec<nlb::FlowRecord> = if buddy {
            b.nlb.records_of(b.place).collect()
        } else {
            Vec::new()
        };
        self.counters.handed_back += back.len() as u64;
        self.send_records(from, &id, back, true);
        self.send_records(from, &id, mine, false);
        if buddy {
            self.send_neighbors(from, &id, vni);
        }
    }

    /// Whether a packet for load balancer `bi` is the answer to one of
    /// this node's health-check probes (taken by the prober if so): to a
    /// front address, on a port of this place's probe slice.
    fn probe_reply(&mut self, bi: usize, packet: &[u8], now: u64) -> bool {
        let now_ms = self.probe_clock.max(now.saturating_mul(1000));
        let Some(b) = self.balancers.get_mut(bi) else {
            return false;
        };
        let (Some(dst), Some(port)) = (
            packet
                .get(16..20)
                .and_then(|d| <[u8; 4]>::try_from(d).ok())
                .map(Ipv4Addr::from),
            super::l4_word(packet, 2),
        ) else {
            return false;
        };
        if !probe_ports(b.place, b.alive.len() as u8).contains(&port) {
            return false;
        }
        match b.probers.iter_mut().find(|p| p.front() == dst) {
            Some(p) => {
                p.receive(packet, now_ms);
                true
            }
            None => false,
        }
    }

    /// Runs the health checks at `now_ms` (the node's clock, in
    /// milliseconds): starts the probes that are due, takes what the
    /// probers found, and sets the targets' health from it. The packets the
    /// probers send come out in `out`, each as the shell must handle it
    /// (a Geneve datagram to send, or a bare packet to resolve first).
    pub fn health(&mut self, now_ms: u64, out: &mut Vec<(Vec<u8>, Verdict)>) {
        self.probe_clock = self.probe_clock.max(now_ms);
        let now_ms = self.probe_clock;
        for bi in 0..self.balancers.len() {
            let mut changes = Vec::new();
            let Some(b) = self.balancers.get_mut(bi) else {
                continue;
            };
            start_due_probes(b, now_ms, &mut changes);
            for (fi, p) in b.probers.iter_mut().enumerate() {
                for (id, outcome) in p.outcomes(now_ms) {
                    let Some((gi, target)) = b.probing.remove(&(fi, id)) else {
                        continue;
                    };
                    if let Some((_, c)) = b.checkers.get_mut(gi)
                        && let Recorded::Changed(change) = c.result(&target, outcome, now_ms)
                    {
                        changes.push((gi, change));
                    }
                }
            }
            for (gi, (_, c)) in b.checkers.iter_mut().enumerate() {
                changes.extend(c.tick(now_ms).changes.into_iter().map(|ch| (gi, ch)));
            }
            apply_changes(b, &changes);
            let (vni, place) = (b.assignment.vni, b.place);
            let packets: Vec<Vec<u8>> = b
                .probers
                .iter_mut()
                .flat_map(|p| p.transmit(now_ms))
                .collect();
            for packet in packets {
                let Some(dst) = packet
                    .get(16..20)
                    .and_then(|d| <[u8; 4]>::try_from(d).ok())
                    .map(Ipv4Addr::from)
                else {
                    continue;
                };
                let via = packet
                    .get(12..16)
                    .and_then(|d| <[u8; 4]>::try_from(d).ok())
                    .map(|front| ReturnVia {
                        front: Ipv4Addr::from(front),
                        place,
                    });
                let mut buf = PacketBuf::from_frame(&packet);
                let v = self.send_to_host(&mut buf, vni, dst, via, None, now_ms / 1000);
                out.push((buf.data().to_vec(), v));
            }
        }
    }

    /// Whether any load balancer is served here (the shell then runs the
    /// health checks).
    pub fn has_balancers(&self) -> bool {
        !self.balancers.is_empty()
    }

    /// Expires idle and drained flows of every load balancer.
    pub(super) fn expire_balancers(&mut self, now: u64, budget: usize) -> usize {
        self.balancers
            .iter_mut()
            .map(|b| b.nlb.expire(now, budget))
            .sum()
    }

    /// Every load balancer's figures now.
    pub fn balancer_stats(&self) -> Vec<BalancerStats> {
        self.balancers
            .iter()
            .map(|b| BalancerStats {
                id: b.assignment.id.clone(),
                name: b.assignment.name.clone(),
                vni: b.assignment.vni,
                place: b.place,
                nodes: b.alive.len() as u8,
                serves: (0..b.alive.len() as u8)
                    .filter(|q| b.nlb.serves_place(*q))
                    .collect(),
                counters: *b.nlb.counters(),
                active: b.nlb.active_flows(),
                replicas: b.nlb.replicas(),
                drops: NlbDrop::ALL.map(|d| b.nlb.drops(d)),
                node_dropped: b.dropped,
                groups: b
                    .assignment
                    .target_groups
                    .iter()
                    .enumerate()
                    .map(|(gi, g)| {
                        let (h, u) = b.nlb.host_counts(gi).unwrap_or((0, 0));
                        (g.id.clone(), h, u)
                    })
                    .collect(),
                probes: b.probers.iter().map(Prober::counters).collect(),
                flow_counts_skipped: b.nlb.flow_counts_skipped(),
            })
            .collect()
    }

    /// What this node's checks found of every target it probes: the
    /// heartbeat's reports (DescribeTargetHealth reads them).
    pub fn target_health(&self) -> Vec<TargetHealthReport> {
        let mut reports = BTreeMap::new();
        for b in &self.balancers {
            for (g, (_, checker)) in b.assignment.target_groups.iter().zip(&b.checkers) {
                for (t, h) in checker.targets() {
                    let state = match h.state {
                        TargetState::Initial => TargetHealthState::Initial,
                        TargetState::Healthy => TargetHealthState::Healthy,
                        TargetState::Unhealthy => TargetHealthState::Unhealthy,
                        // Draining and unused are the control plane's to say.
                        _ => continue,
                    };
                    reports.insert(
                        (g.id.clone(), t.id.clone(), t.port),
                        TargetHealthReport {
                            target_group_id: g.id.clone(),
                            target_id: t.id.clone(),
                            port: t.port,
                            state,
                            reason: h.reason.map(|r| r.code().to_owned()),
                            description: h.reason.map(|r| r.description()),
                        },
                    );
                }
            }
        }
        reports.into_values().collect()
    }
}

/// Starts every probe of `b`'s groups that is due, from the front in the
/// target's AZ (else the first); a probe that cannot start counts as a
/// failed check (an HTTPS check, which the prober cannot make, among them).
fn start_due_probes(b: &mut Balancer, now_ms: u64, changes: &mut Vec<(usize, Change)>) {
    for gi in 0..b.checkers.len() {
        let Some((_, c)) = b.checkers.get_mut(gi) else {
            continue;
        };
        for probe in c.due(now_ms) {
            let az = b
                .assignment
                .target_groups
                .get(gi)
                .and_then(|g| g.targets.iter().find(|t| t.ip == probe.target.ip))
                .map(|t| t.availability_zone.as_str());
            let fi = b
                .assignment
                .fronts
                .iter()
                .position(|f| Some(f.availability_zone.as_str()) == az)
                .unwrap_or(0);
            let started = b.probers.get_mut(fi).map(|p| p.start(&probe, now_ms));
            match started {
                Some(Ok(id)) => {
                    b.probing.insert((fi, id), (gi, probe.target));
                }
                _ => {
                    if let Recorded::Changed(ch) =
                        c.result(&probe.target, Outcome::Malformed, now_ms)
                    {
                        changes.push((gi, ch));
                    }
                }
            }
        }
    }
}

/// Sets the flow core's view of the targets whose health changed.
fn apply_changes(b: &mut Balancer, changes: &[(usize, Change)]) {
    for (gi, ch) in changes {
        let health = match ch.to.state {
            TargetState::Healthy => Health::Healthy,
            TargetState::Unhealthy => Health::Unhealthy,
            TargetState::Initial => Health::Initial,
            _ => continue,
        };
        let slot = b.assignment.target_groups.get(*gi).and_then(|g| {
            g.targets
                .iter()
                .position(|t| t.ip == ch.target.ip && t.port == ch.target.port)
        });
        if let Some(ti) = slot {
            b.nlb.set_health(*gi, ti, health);
        }
    }
}

/// The largest packet (bare IPv4) that carries the return-via option: with
/// the option's 12 bytes it still fits a 1500-byte underlay under the
/// instances' MTU.
pub const MAX_PINNED_PACKET: usize = 1400;

/// How a load balancer is named between nodes, in the heartbeat and to
/// hosts (its shard's key, its frames' MAC): `elb-` and its ID.
pub fn gateway_id(a: &LbAssignment) -> String {
    format!("elb-{}", a.id)
}
