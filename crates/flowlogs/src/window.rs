//! Aggregation windows (spec 8.1): what a node does with the flow counts
//! its dataplane hands out, before anything leaves it. Counts are summed per
//! flow log, ENI, direction of a 5-tuple, action and capture window
//! (`MaxAggregationInterval`, 60 or 600 s, aligned to the clock); a window
//! is closed once it has ended and a grace for late counts has passed.
//! Then each of its flows is one `OK` record, an ENI without traffic in it
//! gets one `NODATA` record, and flows that did not fit (the table is
//! bounded) are one `SKIPDATA` record.
//!
//! Sans-IO: time (Unix seconds and milliseconds) comes in as arguments.

use core::net::{IpAddr, Ipv4Addr};
use std::collections::{BTreeMap, HashMap, HashSet};

pub use openvpc_model::flow_log::EniLog;
use openvpc_model::flow_log::{
    Action, EniContext, FlowDirection, FlowFields, FlowLogSpec, FlowRecord, LogStatus, TrafficPath,
};

/// How long after a window ends its counts may still arrive: the
/// dataplane hands out a live flow's counts once per pass over its table.
pub const DEFAULT_GRACE_SECS: i64 = 10;

/// The open flows a node keeps by default before it skips (SKIPDATA).
pub const DEFAULT_CAPACITY: usize = 262_144;

/// The counts of one direction of one flow on one ENI, as the dataplane
/// hands them out (a slice of time; several add up in a window).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub eni_id: String,
    /// The packets' own addresses and ports.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    /// Unix milliseconds of the first and last packet counted.
    pub start_ms: i64,
    pub end_ms: i64,
    pub action: Action,
    pub tcp_flags: u8,
    pub direction: FlowDirection,
    pub traffic_path: Option<TrafficPath>,
}

/// Why an observation was not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// spec 8.1's not-logged traffic (DNS to the resolver, DHCP, the
    /// router's addresses, link-local services).
    NotLogged,
    /// No flow log covers the ENI, or none takes this action.
    Unlogged,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlowKey {
    flow_log: u32,
    eni: u32,
    window: i64,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    protocol: u8,
    action: Action,
    direction: FlowDirection,
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    packets: u64,
    bytes: u64,
    start_ms: i64,
    end_ms: i64,
    tcp_flags: u8,
    traffic_path: Option<TrafficPath>,
}

/// The windows of one node.
#[derive(Debug)]
pub struct Windows {
    enis: HashMap<String, EniLog>,
    /// Interned names, so keys stay small: flow log IDs and ENI IDs.
    names: Vec<String>,
    name_index: HashMap<String, u32>,
    open: HashMap<FlowKey, Counts>,
    /// (flow log, ENI, window) → skipped observations.
    skipped: HashMap<(u32, u32, i64), u64>,
    /// (flow log, ENI) → the start of the first window not yet reported.
    next_window: HashMap<(u32, u32), i64>,
    capacity: usize,
    grace_secs: i64,
    /// Observations skipped because the table was full (SKIPDATA).
    pub skipped_total: u64,
    /// Observations of traffic spec 8.1 does not log.
    pub not_logged: u64,
}

impl Windows {
    pub fn new(capacity: usize, grace_secs: i64) -> Self {
        Windows {
            enis: HashMap::new(),
            names: Vec::new(),
            name_index: HashMap::new(),
            open: HashMap::new(),
            skipped: HashMap::new(),
            next_window: HashMap::new(),
            capacity,
            grace_secs,
            skipped_total: 0,
            not_logged: 0,
        }
    }

    /// The ENIs to log now, replacing the last set. A flow log newly on an
    /// ENI starts with the window `now` is in (AWS's windows are not
    /// aligned to the clock, so a first window that started a little
    /// earlier is one they could have had); one that is gone forgets its
    /// windows.
    pub fn set_enis(&mut self, enis: impl IntoIterator<Item = EniLog>, now_secs: i64) {
        self.enis = enis
            .into_iter()
            .map(|e| (e.context.eni_id.clone(), e))
            .collect();
        let mut live = HashSet::new();
        let pairs: Vec<(String, String, u32)> = self
            .enis
            .values()
            .flat_map(|e| {
                e.specs
                    .iter()
                    .map(|s| (s.flow_log_id.clone(), e.context.eni_id.clone(), interval(s)))
            })
            .collect();
        for (flow_log, eni, every) in pairs {
            let pair = (self.intern(&flow_log), self.intern(&eni));
            live.insert(pair);
            self.next_window
                .entry(pair)
                .or_insert_with(|| window_of(now_secs, every));
        }
        self.next_window.retain(|pair, _| live.contains(pair));
        self.open.retain(|k, _| live.contains(&(k.flow_log, k.eni)));
        self.skipped.retain(|(f, e, _), _| live.contains(&(*f, *e)));
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.name_index.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(name.to_owned());
        self.name_index.insert(name.to_owned(), i);
        i
    }

    fn name(&self, i: u32) -> String {
        self.names.get(i as usize).cloned().unwrap_or_default()
    }

    /// Adds one observation to every flow log of its ENI that takes its
    /// action.
    pub fn observe(&mut self, o: &Observation) -> Result<(), Skipped> {
        let Some(eni) = self.enis.get(&o.eni_id) else {
            return Err(Skipped::Unlogged);
        };
        if not_logged(eni.vpc_base, o) {
            self.not_logged += 1;
            return Err(Skipped::NotLogged);
        }
        let specs: Vec<(String, u32)> = eni
            .specs
            .iter()
            .filter(|s| s.traffic_type.admits(o.action))
            .map(|s| (s.flow_log_id.clone(), interval(s)))
            .collect();
        if specs.is_empty() {
            return Err(Skipped::Unlogged);
        }
        let eni = self.intern(&o.eni_id);
        for (flow_log, every) in specs {
            let flow_log = self.intern(&flow_log);
            let window = window_of(o.start_ms.div_euclid(1000), every);
            // A window already reported takes nothing more: the late
            // counts go to the next one, so none is lost or said twice.
            let window = self
                .next_window
                .get(&(flow_log, eni))
                .map_or(window, |&next| window.max(next));
            let key = FlowKey {
                flow_log,
                eni,
                window,
                src: o.src,
                dst: o.dst,
                src_port: o.src_port,
                dst_port: o.dst_port,
                protocol: o.protocol,
                action: o.action,
                direction: o.direction,
            };
            if let Some(c) = self.open.get_mut(&key) {
                c.packets += o.packets;
                c.bytes += o.bytes;
                c.start_ms = c.start_ms.min(o.start_ms);
                c.end_ms = c.end_ms.max(o.end_ms);
                c.tcp_flags |= o.tcp_flags;
                c.traffic_path = c.traffic_path.or(o.traffic_path);
                continue;
            }
            if self.open.len() >= self.capacity {
                self.skipped_total += 1;
                *self.skipped.entry((flow_log, eni, window)).or_default() += 1;
                continue;
            }
            self.open.insert(
                key,
                Counts {
                    packets: o.packets,
                    bytes: o.bytes,
                    start_ms: o.start_ms,
                    end_ms: o.end_ms,
                    tcp_flags: o.tcp_flags,
                    traffic_path: o.traffic_path,
                },
            );
        }
        Ok(())
    }

    /// The records of every window that ended at least the grace before
    /// `now_secs`, in (flow log, ENI, window) order.
    pub fn close(&mut self, now_secs: i64) -> Vec<FlowRecord> {
        let mut due: BTreeMap<(u32, u32, i64), Vec<FlowRecord>> = BTreeMap::new();
        let every_of = |enis: &HashMap<String, EniLog>, names: &[String], f: u32, e: u32| {
            let flow_log = names.get(f as usize)?;
            let eni = names.get(e as usize)?;
            enis.get(eni)?
                .specs
                .iter()
                .find(|s| &s.flow_log_id == flow_log)
                .map(interval)
        };
        let closed =
            |window: i64, every: u32| window + i64::from(every) + self.grace_secs <= now_secs;
        let mut done = Vec::new();
        for (k, c) in &self.open {
            let Some(every) = every_of(&self.enis, &self.names, k.flow_log, k.eni) else {
                continue;
            };
            if !closed(k.window, every) {
                continue;
            }
            done.push(k.clone());
            let flow = FlowFields {
                src: k.src,
                dst: k.dst,
                pkt_src: k.src,
                pkt_dst: k.dst,
                src_port: k.src_port,
                dst_port: k.dst_port,
                protocol: k.protocol,
                packets: c.packets,
                bytes: c.bytes,
                action: k.action,
                tcp_flags: c.tcp_flags,
                direction: k.direction,
                traffic_path: (k.direction == FlowDirection::Egress)
                    .then_some(c.traffic_path)
                    .flatten(),
            };
            due.entry((k.flow_log, k.eni, k.window))
                .or_default()
                .push(FlowRecord {
                    flow_log_id: String::new(),
                    eni_id: String::new(),
                    status: LogStatus::Ok,
                    start: c.start_ms.div_euclid(1000),
                    end: c.end_ms.div_euclid(1000),
                    flow: Some(flow),
                });
        }
        for k in done {
            self.open.remove(&k);
        }
        let skipped: Vec<(u32, u32, i64)> = self
            .skipped
            .keys()
            .filter(|(f, e, w)| {
                every_of(&self.enis, &self.names, *f, *e).is_some_and(|every| closed(*w, every))
            })
            .copied()
            .collect();
        for k in skipped {
            self.skipped.remove(&k);
            let every = every_of(&self.enis, &self.names, k.0, k.1).unwrap_or(600);
            due.entry(k).or_default().push(FlowRecord {
                flow_log_id: String::new(),
                eni_id: String::new(),
                status: LogStatus::Skipdata,
                start: k.2,
                end: k.2 + i64::from(every),
                flow: None,
            });
        }
        // NODATA for each window of each (flow log, ENI) that closed with
        // nothing in it.
        let pairs: Vec<((u32, u32), i64)> =
            self.next_window.iter().map(|(p, n)| (*p, *n)).collect();
        for ((f, e), mut next) in pairs {
            let Some(every) = every_of(&self.enis, &self.names, f, e) else {
                continue;
            };
            while closed(next, every) {
                due.entry((f, e, next)).or_insert_with(|| {
                    vec![FlowRecord {
                        flow_log_id: String::new(),
                        eni_id: String::new(),
                        status: LogStatus::Nodata,
                        start: next,
                        end: next + i64::from(every),
                        flow: None,
                    }]
                });
                next += i64::from(every);
            }
            self.next_window.insert((f, e), next);
        }
        let mut out = Vec::new();
        for ((f, e, _), records) in due {
            let (flow_log, eni) = (self.name(f), self.name(e));
            let primary = self.enis.get(&eni).map(|e| e.context.primary_ip);
            for mut r in records {
                r.flow_log_id.clone_from(&flow_log);
                r.eni_id.clone_from(&eni);
                // spec 8.1: the ENI's side of `srcaddr`/`dstaddr` is its
                // primary private address, whichever address the packet
                // used (`pkt-*` keep those).
                if let (Some(flow), Some(primary)) = (r.flow.as_mut(), primary) {
                    match flow.direction {
                        FlowDirection::Egress => flow.src = primary,
                        FlowDirection::Ingress => flow.dst = primary,
                    }
                }
                out.push(r);
            }
        }
        out
    }

    /// The context of a logged ENI, for the records' batch.
    pub fn context(&self, eni_id: &str) -> Option<&EniContext> {
        self.enis.get(eni_id).map(|e| &e.context)
    }

    /// Flows counted in windows not yet closed.
    pub fn open_flows(&self) -> usize {
        self.open.len()
    }
}

fn interval(s: &FlowLogSpec) -> u32 {
    // The API allows only 60 and 600; anything else counts as the default.
    if s.max_aggregation_interval == 60 {
        60
    } else {
        600
    }
}

fn window_of(secs: i64, every: u32) -> i64 {
    let every = i64::from(every);
    secs.div_euclid(every) * every
}

/// spec 8.1's not-logged traffic: to or from the resolver and the
/// router's reserved addresses, the link-local services, and DHCP.
fn not_logged(vpc_base: Option<Ipv4Addr>, o: &Observation) -> bool {
    const UDP: u8 = 17;
    if o.protocol == UDP && matches!((o.src_port, o.dst_port), (68, 67) | (67, 68)) {
        return true;
    }
    let special = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => {
            let link_local = matches!(
                v4.octets(),
                [169, 254, 169, 253] | [169, 254, 169, 254] | [169, 254, 169, 123]
            );
            let reserved = vpc_base.is_some_and(|base| {
                let offset = u32::from(v4).wrapping_sub(u32::from(base));
                (1..=3).contains(&offset)
            });
            link_local || reserved
        }
        IpAddr::V6(_) => false,
    };
    special(o.src) || special(o.dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_model::flow_log::TrafficType;

    fn eni(specs: Vec<FlowLogSpec>) -> EniLog {
        EniLog {
            context: EniContext {
                eni_id: "eni-0123456789abcdef0".into(),
                account_id: "123456789012".into(),
                vpc_id: "vpc-1".into(),
                subnet_id: "subnet-1".into(),
                instance_id: Some("i-1".into()),
                primary_ip: "10.0.1.10".parse().unwrap(),
                az_id: "use1-az1".into(),
            },
            vpc_base: Some(Ipv4Addr::new(10, 0, 0, 0)),
            specs,
        }
    }

    fn spec(id: &str, traffic_type: TrafficType, every: u32) -> FlowLogSpec {
        FlowLogSpec {
            flow_log_id: id.into(),
            traffic_type,
            max_aggregation_interval: every,
        }
    }

    fn obs(dst: &str, dst_port: u16, action: Action, ms: i64, packets: u64) -> Observation {
        Observation {
            eni_id: "eni-0123456789abcdef0".into(),
            src: "10.0.1.10".parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 40000,
            dst_port,
            protocol: 6,
            packets,
            bytes: packets * 100,
            start_ms: ms,
            end_ms: ms + 500,
            action,
            tcp_flags: 0x02,
            direction: FlowDirection::Egress,
            traffic_path: Some(TrafficPath::SameVpc),
        }
    }

    #[test]
    fn counts_add_up_per_window_and_close_after_the_grace() {
        let mut w = Windows::new(100, 10);
        w.set_enis([eni(vec![spec("fl-1", TrafficType::All, 60)])], 60);
        // The first window is [60, 120).
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 61_000, 3))
            .unwrap();
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 100_000, 4))
            .unwrap();
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 121_000, 5))
            .unwrap();
        assert!(w.close(129).is_empty(), "the grace has not passed");
        let out = w.close(130);
        assert_eq!(out.len(), 1);
        let r = &out[0];
        assert_eq!((r.start, r.end, r.status), (61, 100, LogStatus::Ok));
        let f = r.flow.as_ref().unwrap();
        assert_eq!((f.packets, f.bytes), (7, 700));
        let out = w.close(190);
        assert_eq!(out[0].flow.as_ref().unwrap().packets, 5);
    }

    #[test]
    fn a_quiet_window_is_nodata_and_late_counts_move_on() {
        let mut w = Windows::new(100, 10);
        w.set_enis([eni(vec![spec("fl-1", TrafficType::All, 60)])], 90);
        let out = w.close(130);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].status, out[0].start, out[0].end),
            (LogStatus::Nodata, 60, 120)
        );
        // Counts for the reported window land in the next one.
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 110_000, 1))
            .unwrap();
        let out = w.close(190);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].status, LogStatus::Ok);
    }

    #[test]
    fn traffic_type_and_not_logged_traffic() {
        let mut w = Windows::new(100, 10);
        w.set_enis([eni(vec![spec("fl-r", TrafficType::Reject, 60)])], 60);
        assert_eq!(
            w.observe(&obs("10.0.1.20", 22, Action::Accept, 61_000, 1)),
            Err(Skipped::Unlogged)
        );
        assert_eq!(
            w.observe(&obs("10.0.0.2", 53, Action::Reject, 61_000, 1)),
            Err(Skipped::NotLogged),
            "DNS to the resolver is not logged"
        );
        assert_eq!(
            w.observe(&obs("169.254.169.254", 80, Action::Reject, 61_000, 1)),
            Err(Skipped::NotLogged)
        );
        w.observe(&obs("10.0.1.20", 23, Action::Reject, 61_000, 1))
            .unwrap();
        let out = w.close(200);
        let ok: Vec<_> = out.iter().filter(|r| r.status == LogStatus::Ok).collect();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].flow.as_ref().unwrap().dst_port, 23);
        assert_eq!(ok[0].flow_log_id, "fl-r");
    }

    #[test]
    fn a_full_table_skips_and_says_so() {
        let mut w = Windows::new(1, 10);
        w.set_enis([eni(vec![spec("fl-1", TrafficType::All, 60)])], 60);
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 61_000, 1))
            .unwrap();
        w.observe(&obs("10.0.1.21", 22, Action::Accept, 61_000, 1))
            .unwrap();
        w.observe(&obs("10.0.1.22", 22, Action::Accept, 61_000, 1))
            .unwrap();
        assert_eq!(w.skipped_total, 2);
        let out = w.close(130);
        let statuses: Vec<_> = out.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![LogStatus::Ok, LogStatus::Skipdata]);
    }

    #[test]
    fn removing_a_flow_log_forgets_its_windows() {
        let mut w = Windows::new(100, 10);
        w.set_enis([eni(vec![spec("fl-1", TrafficType::All, 60)])], 60);
        w.observe(&obs("10.0.1.20", 22, Action::Accept, 61_000, 1))
            .unwrap();
        w.set_enis([eni(vec![])], 70);
        assert!(w.close(1000).is_empty());
        assert_eq!(w.open_flows(), 0);
    }
}
