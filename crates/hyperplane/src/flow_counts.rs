//! What a gateway's or a load balancer's flows carried since the last
//! harvest, for the flow logs on its ENI (spec 8.2), and the records they
//! make. Kept beside the flow table, by slot, only while a flow log covers
//! the ENI, so the tables' entries stay small for everything nobody logs.
//!
//! Sans-IO. It allocates when counting is turned on, and never per packet
//! once the map has grown to the traffic's size.

use core::net::{IpAddr, Ipv4Addr};

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use openvpc_dataplane::flowlog::{FlowLogRecord, LogAction, logged_flags};
use openvpc_dataplane::policy::Way;
use openvpc_packet::ip::protocol;

/// One side of a crossing: `src:sport → dst:dport`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tuple {
    pub src: u32,
    pub sport: u16,
    pub dst: u32,
    pub dport: u16,
}

impl Tuple {
    fn reversed(self) -> Tuple {
        Tuple {
            src: self.dst,
            sport: self.dport,
            dst: self.src,
            dport: self.sport,
        }
    }
}

/// A flow as it crosses the ENI: what arrives from the side that opened
/// it, and what leaves, rewritten, towards the other side (a NAT gateway:
/// instance → outside, then gateway → outside; a load balancer: client →
/// front, then the source the target sees → target). Replies cross the
/// other way, each tuple reversed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crossing {
    pub proto: u8,
    pub arrives: Tuple,
    pub leaves: Tuple,
}

/// Flows counted between two harvests; beyond, packets are skipped and
/// counted (the agent's windows bound theirs the same way).
pub const MAX_COUNTED: usize = 262_144;
/// Flows whose slot another flow took before a harvest, kept until it.
const MAX_FINISHED: usize = 4_096;

/// One direction of one flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub packets: u64,
    pub bytes: u64,
    /// Seconds of the cores' clock of the first and last packet.
    pub first: u32,
    pub last: u32,
    /// OR of spec 8.1's flags ([`logged_flags`]).
    pub tcp_flags: u8,
}

impl Counted {
    fn add(&mut self, bytes: u64, tcp_flags: u8, now: u32) {
        if self.packets == 0 {
            self.first = now;
        }
        self.packets += 1;
        self.bytes += bytes;
        self.last = now;
        self.tcp_flags |= logged_flags(tcp_flags);
    }
}

/// What one flow carried: `out` from the side that opened it, `back`
/// from the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowCount {
    pub flow: Crossing,
    pub out: Counted,
    pub back: Counted,
}

/// A gateway's counts between harvests.
#[derive(Debug, Default)]
pub struct FlowCounts {
    by_slot: HashMap<u32, FlowCount>,
    finished: Vec<FlowCount>,
    /// Packets not counted: too many flows between two harvests.
    pub skipped: u64,
}

impl FlowCounts {
    /// Counts one packet of `flow` (in table slot `slot`): `out` from the
    /// side that opened it, else from the other.
    pub fn count(
        &mut self,
        slot: u32,
        flow: &Crossing,
        out: bool,
        bytes: u64,
        tcp_flags: u8,
        now: u32,
    ) {
        let full = self.by_slot.len() >= MAX_COUNTED;
        let entry = match self.by_slot.entry(slot) {
            Entry::Occupied(e) => {
                let e = e.into_mut();
                if e.flow != *flow {
                    // The slot's flow ended and another took it: the old
                    // counts wait for the harvest on their own.
                    if self.finished.len() < MAX_FINISHED {
                        self.finished.push(*e);
                    } else {
                        self.skipped += e.out.packets + e.back.packets;
                    }
                    *e = FlowCount {
                        flow: *flow,
                        out: Counted::default(),
                        back: Counted::default(),
                    };
                }
                e
            }
            Entry::Vacant(_) if full => {
                self.skipped += 1;
                return;
            }
            Entry::Vacant(v) => v.insert(FlowCount {
                flow: *flow,
                out: Counted::default(),
                back: Counted::default(),
            }),
        };
        let side = if out { &mut entry.out } else { &mut entry.back };
        side.add(bytes, tcp_flags, now);
    }

    /// Everything counted since the last harvest, into `out`; the counts
    /// start again from zero.
    pub fn harvest(&mut self, out: &mut Vec<FlowCount>) {
        out.append(&mut self.finished);
        out.extend(self.by_slot.drain().map(|(_, c)| c));
    }

    /// Flows counted since the last harvest.
    pub fn len(&self) -> usize {
        self.by_slot.len() + self.finished.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A core's flow counting for flow logs: nothing kept while off (no flow
/// log covers its ENIs), a [`FlowCounts`] while on.
#[derive(Debug, Default)]
pub struct FlowLogging(Option<Box<FlowCounts>>);

impl FlowLogging {
    /// Turns counting on, or off forgetting the counts.
    pub fn set(&mut self, on: bool) {
        match (on, self.0.is_some()) {
            (true, false) => self.0 = Some(Box::default()),
            (false, true) => self.0 = None,
            _ => {}
        }
    }

    /// What each flow carried since the last call, into `out`.
    pub fn harvest(&mut self, out: &mut Vec<FlowCount>) {
        if let Some(c) = &mut self.0 {
            c.harvest(out);
        }
    }

    /// Packets the counts could not hold (too many flows between
    /// harvests).
    pub fn skipped(&self) -> u64 {
        self.0.as_ref().map_or(0, |c| c.skipped)
    }

    /// Counts one packet while on; `crossing` is only made then.
    #[inline]
    pub fn count(
        &mut self,
        slot: u32,
        crossing: impl FnOnce() -> Crossing,
        out: bool,
        bytes: u64,
        tcp_flags: u8,
        now: u32,
    ) {
        if let Some(c) = &mut self.0 {
            c.count(slot, &crossing(), out, bytes, tcp_flags, now);
        }
    }
}

/// The records a flow's counts make on the ENI `eni_id` (spec 8.2's NAT
/// gateway example): each direction passes the ENI twice, in as it
/// arrives and out as rewritten, so it is an ingress and an egress
/// record. The windows rewrite the ENI's own side to its primary address;
/// the packets' addresses stay here. `ms` turns the cores' seconds into
/// the clock of [`FlowLogRecord`]'s times.
pub fn records(eni_id: &str, c: &FlowCount, ms: impl Fn(u32) -> u64, out: &mut Vec<FlowLogRecord>) {
    let f = &c.flow;
    let mut push = |counted: &Counted, way: Way, t: Tuple| {
        if counted.packets == 0 {
            return;
        }
        // Flow logs show no ports for ICMP (the tables keep its identifier).
        let (sport, dport) = if f.proto == protocol::ICMP {
            (0, 0)
        } else {
            (t.sport, t.dport)
        };
        out.push(FlowLogRecord {
            interface_id: eni_id.to_owned(),
            src: ip(t.src),
            dst: ip(t.dst),
            src_port: sport,
            dst_port: dport,
            protocol: f.proto,
            packets: counted.packets,
            bytes: counted.bytes,
            start_ms: ms(counted.first),
            end_ms: ms(counted.last),
            // No security group is the gateway's own; its subnet's ACL is
            // the hosts' to apply, before and after it.
            action: LogAction::Accept,
            tcp_flags: counted.tcp_flags,
            direction: way,
        });
    };
    push(&c.out, Way::Ingress, f.arrives);
    push(&c.out, Way::Egress, f.leaves);
    push(&c.back, Way::Ingress, f.leaves.reversed());
    push(&c.back, Way::Egress, f.arrives.reversed());
}

fn ip(bits: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from_bits(bits))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_packet::tcp::flags;

    /// spec 8.2's NAT gateway example: 10.0.1.5 through 10.0.0.220 to
    /// 203.0.113.5:80.
    fn flow(sport: u16) -> Crossing {
        let remote = Ipv4Addr::new(203, 0, 113, 5).to_bits();
        Crossing {
            proto: protocol::TCP,
            arrives: Tuple {
                src: Ipv4Addr::new(10, 0, 1, 5).to_bits(),
                sport,
                dst: remote,
                dport: 80,
            },
            leaves: Tuple {
                src: Ipv4Addr::new(10, 0, 0, 220).to_bits(),
                sport: 40_000,
                dst: remote,
                dport: 80,
            },
        }
    }

    /// A short TCP session through the gateway: spec 8.2's flags 3 and 19.
    fn session(c: &mut FlowCounts, f: &Crossing, t: u32) {
        c.count(7, f, true, 60, flags::SYN, t);
        c.count(7, f, false, 60, flags::SYN | flags::ACK, t);
        c.count(7, f, true, 52, flags::ACK, t);
        c.count(7, f, true, 100, flags::ACK | flags::PSH, t + 1);
        c.count(7, f, false, 52, flags::FIN | flags::ACK, t + 2);
        c.count(7, f, true, 52, flags::FIN | flags::ACK, t + 2);
    }

    #[test]
    fn a_short_session_makes_four_records_with_spec_flags() {
        let mut c = FlowCounts::default();
        let f = flow(5555);
        session(&mut c, &f, 100);
        let mut counts = Vec::new();
        c.harvest(&mut counts);
        assert!(c.is_empty(), "a harvest starts the counts again");
        assert_eq!(counts.len(), 1);
        let mut recs = Vec::new();
        records("eni-nat", &counts[0], |s| u64::from(s) * 1000, &mut recs);
        assert_eq!(recs.len(), 4);
        let inst: IpAddr = "10.0.1.5".parse().unwrap();
        let remote: IpAddr = "203.0.113.5".parse().unwrap();
        let public: IpAddr = "10.0.0.220".parse().unwrap();
        let find = |way: Way, src: IpAddr| {
            recs.iter()
                .find(|r| r.direction == way && r.src == src)
                .unwrap()
        };
        let from_instance = find(Way::Ingress, inst);
        assert_eq!(
            (
                from_instance.dst,
                from_instance.src_port,
                from_instance.dst_port
            ),
            (remote, 5555, 80)
        );
        assert_eq!((from_instance.packets, from_instance.bytes), (4, 264));
        assert_eq!(from_instance.tcp_flags, 3, "SYN and FIN");
        assert_eq!(
            (from_instance.start_ms, from_instance.end_ms),
            (100_000, 102_000)
        );
        let translated = find(Way::Egress, public);
        assert_eq!((translated.dst, translated.src_port), (remote, 40_000));
        assert_eq!(translated.packets, 4);
        let reply = find(Way::Ingress, remote);
        assert_eq!((reply.dst, reply.dst_port), (public, 40_000));
        assert_eq!(reply.tcp_flags, 19, "SYN-ACK and FIN");
        let back = find(Way::Egress, remote);
        assert_eq!((back.dst, back.src_port, back.dst_port), (inst, 80, 5555));
        assert_eq!((back.packets, back.bytes), (2, 112));
    }

    #[test]
    fn a_slot_taken_by_another_flow_keeps_the_first_flows_counts() {
        let mut c = FlowCounts::default();
        session(&mut c, &flow(5555), 10);
        session(&mut c, &flow(6666), 20);
        let mut counts = Vec::new();
        c.harvest(&mut counts);
        let ports: Vec<u16> = counts.iter().map(|c| c.flow.arrives.sport).collect();
        assert_eq!(ports, [5555, 6666]);
        assert!(
            counts
                .iter()
                .all(|c| c.out.packets == 4 && c.back.packets == 2)
        );
    }

    #[test]
    fn icmp_records_show_no_ports() {
        let mut c = FlowCounts::default();
        let mut f = flow(77);
        f.proto = protocol::ICMP;
        c.count(1, &f, true, 84, 0, 5);
        let mut counts = Vec::new();
        c.harvest(&mut counts);
        let mut recs = Vec::new();
        records("eni-nat", &counts[0], u64::from, &mut recs);
        assert_eq!(recs.len(), 2, "no reply, no reply records");
        assert!(recs.iter().all(|r| r.src_port == 0 && r.dst_port == 0));
    }

    #[test]
    fn flows_beyond_the_bound_are_skipped_and_counted() {
        let mut c = FlowCounts::default();
        for slot in 0..MAX_COUNTED as u32 + 3 {
            c.count(slot, &flow(1), true, 40, 0, 1);
        }
        assert_eq!(c.len(), MAX_COUNTED);
        assert_eq!(c.skipped, 3);
    }
}
