//! The agent's flow-log thread: takes the counts the worker hands out once
//! a second, sums them into capture windows for the flow logs that cover
//! each ENI (the reconciler says which), and sends the closed windows'
//! records to the server, which writes them where each flow log says.
//!
//! The dataplane never waits for this thread: the worker drops (and
//! counts) what does not fit its queue. While the server is away, records
//! wait here up to [`MAX_UNSENT`]; beyond that the oldest are dropped and
//! counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use openvpc_dataplane::flowlog::{FlowLogRecord, LogAction};
use openvpc_dataplane::policy::Way;
use openvpc_flowlogs::window::{Observation, Windows};
pub use openvpc_model::flow_log::LoggedEni;
use openvpc_model::flow_log::{
    Action, EniContext, FlowDirection, FlowRecord, FlowRecordBatch, RECORDS_PATH,
};

use crate::control::{Client, ClientError, Outage};
use crate::worker::FlowLogHarvest;

const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// Records kept while the server does not take them.
pub const MAX_UNSENT: usize = 100_000;
/// Records in one request.
const BATCH: usize = 5_000;
/// The queue between the worker and this thread, in harvests.
pub const QUEUE: usize = 64;

/// The logged ENIs, as the reconciler last installed them; the flow-log
/// thread picks up a new set when the generation moves.
#[derive(Debug, Clone, Default)]
pub struct SharedEnis {
    inner: Arc<Mutex<(u64, Vec<LoggedEni>)>>,
}

impl SharedEnis {
    pub fn publish(&self, enis: Vec<LoggedEni>) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.0 += 1;
        g.1 = enis;
    }

    fn take_if_newer(&self, seen: u64) -> Option<(u64, Vec<LoggedEni>)> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (g.0 != seen).then(|| (g.0, g.1.clone()))
    }
}

/// What the thread has done, for the status file and `/metrics`.
#[derive(Debug, Default)]
pub struct FlowLogCounters {
    pub sent: AtomicU64,
    pub dropped_unsent: AtomicU64,
    pub skipped: AtomicU64,
    pub not_logged: AtomicU64,
}

/// The thread's state between harvests: sans-IO, so tests drive it.
#[derive(Debug)]
pub struct FlowLogs {
    windows: Windows,
    enis: std::collections::HashMap<String, LoggedEni>,
    seen: u64,
    unsent: VecDeque<FlowRecord>,
    pub dropped_unsent: u64,
}

impl Default for FlowLogs {
    fn default() -> Self {
        Self::new()
    }
}

impl FlowLogs {
    pub fn new() -> Self {
        FlowLogs {
            windows: Windows::new(
                openvpc_flowlogs::window::DEFAULT_CAPACITY,
                openvpc_flowlogs::window::DEFAULT_GRACE_SECS,
            ),
            enis: Default::default(),
            seen: 0,
            unsent: VecDeque::new(),
            dropped_unsent: 0,
        }
    }

    /// Takes the reconciler's latest ENIs, if they changed.
    pub fn refresh(&mut self, shared: &SharedEnis, now_secs: i64) {
        if let Some((generation, enis)) = shared.take_if_newer(self.seen) {
            self.seen = generation;
            self.windows
                .set_enis(enis.iter().map(|e| e.log.clone()), now_secs);
            self.enis = enis
                .into_iter()
                .map(|e| (e.log.context.eni_id.clone(), e))
                .collect();
        }
    }

    /// Counts one harvest of the worker.
    pub fn harvest(&mut self, h: &FlowLogHarvest) {
        for r in &h.records {
            if let Some(o) = self.observation(r, h.unix_offset_ms) {
                let _ = self.windows.observe(&o);
            }
        }
    }

    fn observation(&self, r: &FlowLogRecord, offset: i64) -> Option<Observation> {
        let eni = self.enis.get(&r.interface_id)?;
        let direction = match r.direction {
            Way::Egress => FlowDirection::Egress,
            Way::Ingress => FlowDirection::Ingress,
        };
        // The dataplane keys ICMP by its identifier; flow logs show no
        // ports for it.
        let ports = if matches!(r.protocol, ICMP | ICMPV6) {
            (0, 0)
        } else {
            (r.src_port, r.dst_port)
        };
        Some(Observation {
            eni_id: r.interface_id.clone(),
            src: r.src,
            dst: r.dst,
            src_port: ports.0,
            dst_port: ports.1,
            protocol: r.protocol,
            packets: r.packets,
            bytes: r.bytes,
            start_ms: r.start_ms as i64 + offset,
            end_ms: r.end_ms as i64 + offset,
            action: match r.action {
                LogAction::Accept => Action::Accept,
                LogAction::Reject => Action::Reject,
            },
            tcp_flags: r.tcp_flags,
            direction,
            traffic_path: (direction == FlowDirection::Egress)
                .then(|| eni.path_to(r.dst))
                .flatten(),
        })
    }

    /// Closes the windows due at `now_secs`; their records wait to be sent.
    pub fn close(&mut self, now_secs: i64) {
        self.unsent.extend(self.windows.close(now_secs));
        while self.unsent.len() > MAX_UNSENT {
            self.unsent.pop_front();
            self.dropped_unsent += 1;
        }
    }

    /// The next request, if any record waits; [`FlowLogs::sent`] removes
    /// its records once the server took them.
    pub fn next_batch(&self, node_id: &str) -> Option<FlowRecordBatch> {
        if self.unsent.is_empty() {
            return None;
        }
        let records: Vec<FlowRecord> = self.unsent.iter().take(BATCH).cloned().collect();
        let mut enis: Vec<EniContext> = Vec::new();
        for r in &records {
            if enis.iter().any(|e| e.eni_id == r.eni_id) {
                continue;
            }
            if let Some(c) = self.windows.context(&r.eni_id) {
                enis.push(c.clone());
            }
        }
        Some(FlowRecordBatch {
            node_id: node_id.to_owned(),
            enis,
            records,
        })
    }

    pub fn sent(&mut self, n: usize) {
        self.unsent.drain(..n.min(self.unsent.len()));
    }

    pub fn skipped(&self) -> u64 {
        self.windows.skipped_total
    }

    pub fn not_logged(&self) -> u64 {
        self.windows.not_logged
    }
}

/// Runs the thread until `stop`.
pub fn flow_log_loop(
    client: &Client,
    node_id: &str,
    harvests: &Receiver<FlowLogHarvest>,
    shared: &SharedEnis,
    counters: &FlowLogCounters,
    stop: &AtomicBool,
) {
    let mut logs = FlowLogs::new();
    let mut outage = Outage::new("flow-log records wait on the host and are retried");
    let mut next_send = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match harvests.recv_timeout(Duration::from_millis(500)) {
            Ok(h) => {
                logs.refresh(shared, unix_secs());
                logs.harvest(&h);
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = unix_secs();
        logs.refresh(shared, now);
        logs.close(now);
        if Instant::now() >= next_send {
            while let Some(batch) = logs.next_batch(node_id) {
                let n = batch.records.len();
                let sent: Result<serde_json::Value, ClientError> =
                    client.post("flow-log records", RECORDS_PATH, &batch);
                match sent {
                    Ok(_) => {
                        outage.ok("flow-log records");
                        logs.sent(n);
                        counters.sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        next_send = Instant::now() + outage.failed("sending flow-log records", &e);
                        break;
                    }
                }
            }
        }
        counters
            .dropped_unsent
            .store(logs.dropped_unsent, Ordering::Relaxed);
        counters.skipped.store(logs.skipped(), Ordering::Relaxed);
        counters
            .not_logged
            .store(logs.not_logged(), Ordering::Relaxed);
    }
}

fn unix_secs() -> i64 {
    openvpc_model::time::now_secs() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use openvpc_dataplane::install::fixtures::eni;
    use openvpc_model::flow_log::{FlowLogSpec, LogStatus, TrafficPath, TrafficType};

    fn logged() -> SharedEnis {
        let mut state = eni(
            "eni-1",
            "i-1",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:00:00:00:01",
        );
        state.availability_zone_id = "use1-az1".into();
        state.flow_logs = vec![FlowLogSpec {
            flow_log_id: "fl-1".into(),
            traffic_type: TrafficType::All,
            max_aggregation_interval: 60,
        }];
        let shared = SharedEnis::default();
        shared.publish(LoggedEni::of(&state).into_iter().collect());
        shared
    }

    fn record(protocol: u8, dst: &str, direction: Way) -> FlowLogRecord {
        FlowLogRecord {
            interface_id: "eni-1".into(),
            src: "10.0.1.10".parse().unwrap(),
            dst: dst.parse().unwrap(),
            src_port: 777,
            dst_port: 777,
            protocol,
            packets: 4,
            bytes: 336,
            start_ms: 2_000,
            end_ms: 3_000,
            action: LogAction::Accept,
            tcp_flags: 0,
            direction,
        }
    }

    #[test]
    fn a_harvest_becomes_records_with_their_context() {
        let shared = logged();
        let mut logs = FlowLogs::new();
        // Router time 2 s is Unix 1_000_061 s: inside the window [1_000_020, 1_000_080).
        let offset = 1_000_059_000;
        logs.refresh(&shared, 1_000_061);
        logs.harvest(&FlowLogHarvest {
            records: vec![
                record(1, "10.0.1.20", Way::Egress),
                record(6, "198.51.100.10", Way::Egress),
                // Not logged: the resolver (spec 8.1).
                record(17, "10.0.0.2", Way::Egress),
            ],
            unix_offset_ms: offset,
        });
        logs.close(1_000_079);
        assert!(logs.next_batch("h1").is_none(), "the window is still open");
        logs.close(1_000_090);
        let batch = logs.next_batch("h1").unwrap();
        assert_eq!(batch.enis.len(), 1);
        assert_eq!(batch.enis[0].az_id, "use1-az1");
        let ok: Vec<_> = batch
            .records
            .iter()
            .filter(|r| r.status == LogStatus::Ok)
            .collect();
        assert_eq!(ok.len(), 2, "{:?}", batch.records);
        let icmp = ok
            .iter()
            .find_map(|r| r.flow.as_ref().filter(|f| f.protocol == 1));
        let icmp = icmp.unwrap();
        assert_eq!((icmp.src_port, icmp.dst_port), (0, 0), "ICMP has no ports");
        assert_eq!(icmp.traffic_path, Some(TrafficPath::SameVpc));
        let out = ok
            .iter()
            .find_map(|r| r.flow.as_ref().filter(|f| f.protocol == 6));
        assert_eq!(
            out.unwrap().traffic_path,
            Some(TrafficPath::InternetGateway),
            "0.0.0.0/0 goes to igw-1"
        );
        assert_eq!(ok[0].start, 1_000_061);
        assert_eq!(logs.not_logged(), 1);
        logs.sent(batch.records.len());
        assert!(logs.next_batch("h1").is_none());
    }

    #[test]
    fn an_eni_without_flow_logs_is_not_logged() {
        let state = eni(
            "eni-2",
            "i-2",
            Ipv4Addr::new(10, 0, 1, 11),
            "02:00:00:00:00:02",
        );
        assert!(LoggedEni::of(&state).is_none());
    }
}
