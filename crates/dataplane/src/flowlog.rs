//! Flow-log counters: what every accept and reject decision adds up to, per
//! ENI and directional 5-tuple, drained as AWS-style records once per
//! aggregation interval (spec 8.1). Accepted traffic is counted inside the
//! flow entry (no extra lookup on the fast path); rejected traffic has its
//! own bounded table. Writing records to files is the agent's job.

use core::net::IpAddr;

use hashbrown::HashMap;
use openvpc_packet::FlowKey;

use crate::policy::Way;

/// ACCEPT or REJECT, as flow logs spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogAction {
    Accept,
    Reject,
}

impl LogAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LogAction::Accept => "ACCEPT",
            LogAction::Reject => "REJECT",
        }
    }
}

/// One flow-log record: one ENI, one direction of one flow, one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLogRecord {
    pub interface_id: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    /// First and last packet of the interval, in ms of the router's clock.
    pub start_ms: u64,
    pub end_ms: u64,
    pub action: LogAction,
    /// OR of the logged TCP flags seen ([`logged_flags`]).
    pub tcp_flags: u8,
    /// `ingress` or `egress` relative to the ENI.
    pub direction: Way,
}

impl FlowLogRecord {
    /// The default (version 2) format line, with times in seconds:
    /// `version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status`.
    pub fn default_format(&self, account_id: &str) -> String {
        format!(
            "2 {account_id} {} {} {} {} {} {} {} {} {} {} {} OK",
            self.interface_id,
            self.src,
            self.dst,
            self.src_port,
            self.dst_port,
            self.protocol,
            self.packets,
            self.bytes,
            self.start_ms / 1000,
            self.end_ms / 1000,
            self.action.as_str(),
        )
    }
}

/// Counters for one direction of a flow, kept in its flow entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirCounters {
    pub bytes: u64,
    pub packets: u32,
    pub tcp_flags: u8,
}

impl DirCounters {
    #[inline]
    pub fn add(&mut self, bytes: usize, tcp_flags: u8) {
        self.bytes += bytes as u64;
        self.packets = self.packets.saturating_add(1);
        self.tcp_flags |= logged_flags(tcp_flags);
    }
}

/// spec 8.1 `tcp-flags`: FIN (1), SYN (2) and RST (4) as they are, and
/// ACK (16) only as part of a SYN-ACK (18); other flags are not logged.
#[inline]
pub fn logged_flags(tcp_flags: u8) -> u8 {
    const SYN_ACK: u8 = 0x12;
    let syn_ack = if tcp_flags & SYN_ACK == SYN_ACK {
        0x10
    } else {
        0
    };
    (tcp_flags & 0x07) | syn_ack
}

/// Rejected packets per (zone, directional key), bounded.
#[derive(Debug)]
pub struct RejectLog {
    counts: HashMap<(FlowKey, WayKey), RejectCount, ahash::RandomState>,
    capacity: usize,
    /// Rejections not recorded because the table was full.
    pub overflow: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct WayKey(bool);

#[derive(Debug, Clone, Copy)]
struct RejectCount {
    counters: DirCounters,
    start_ms: u64,
    end_ms: u64,
}

impl RejectLog {
    pub fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        RejectLog {
            counts: HashMap::with_capacity_and_hasher(capacity.min(4096), hasher),
            capacity,
            overflow: 0,
        }
    }

    /// Counts one rejected packet; `key.zone` names the ENI.
    pub fn record(&mut self, key: FlowKey, way: Way, bytes: usize, tcp_flags: u8, now: u64) {
        let k = (key, WayKey(way == Way::Ingress));
        if let Some(c) = self.counts.get_mut(&k) {
            c.counters.add(bytes, tcp_flags);
            c.end_ms = now;
            return;
        }
        if self.counts.len() >= self.capacity {
            self.overflow += 1;
            return;
        }
        let mut counters = DirCounters::default();
        counters.add(bytes, tcp_flags);
        self.counts.insert(
            k,
            RejectCount {
                counters,
                start_ms: now,
                end_ms: now,
            },
        );
    }

    /// Moves every count out as records; `eni_id(zone)` names the interface.
    pub fn drain(&mut self, eni_id: impl Fn(u16) -> Option<String>, out: &mut Vec<FlowLogRecord>) {
        for ((key, way), c) in self.counts.drain() {
            let Some(interface_id) = eni_id(key.zone) else {
                continue;
            };
            out.push(record(
                interface_id,
                &key,
                if way.0 { Way::Ingress } else { Way::Egress },
                &c.counters,
                c.start_ms,
                c.end_ms,
                LogAction::Reject,
            ));
        }
    }
}

/// Builds a record from a directional key and its counters.
pub fn record(
    interface_id: String,
    key: &FlowKey,
    direction: Way,
    c: &DirCounters,
    start_ms: u64,
    end_ms: u64,
    action: LogAction,
) -> FlowLogRecord {
    FlowLogRecord {
        interface_id,
        src: key.src_ip(),
        dst: key.dst_ip(),
        src_port: key.src_port,
        dst_port: key.dst_port,
        protocol: key.protocol,
        packets: u64::from(c.packets),
        bytes: c.bytes,
        start_ms,
        end_ms,
        action,
        tcp_flags: c.tcp_flags,
        direction,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn rejects_aggregate_and_drain() {
        let mut log = RejectLog::new(1, ahash::RandomState::new());
        let k = FlowKey::v4(
            Ipv4Addr::new(10, 0, 0, 5),
            Ipv4Addr::new(10, 0, 1, 5),
            6,
            999,
            22,
        )
        .in_zone(3);
        log.record(k, Way::Ingress, 60, 0x02, 1000);
        log.record(k, Way::Ingress, 60, 0x02, 4000);
        log.record(k.reversed(), Way::Egress, 60, 0x12, 4000);
        assert_eq!(log.overflow, 1, "capacity 1: the second key overflows");
        let mut out = Vec::new();
        log.drain(|z| (z == 3).then(|| "eni-1".to_string()), &mut out);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!(
            (r.packets, r.bytes, r.start_ms, r.end_ms),
            (2, 120, 1000, 4000)
        );
        assert_eq!(r.action, LogAction::Reject);
        assert_eq!(
            r.default_format("123456789012"),
            "2 123456789012 eni-1 10.0.0.5 10.0.1.5 999 22 6 2 120 1 4 REJECT OK"
        );
    }
}
