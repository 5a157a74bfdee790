//! `openvpc bench dataplane`: quick measurements of the router on the
//! standard [`Workload`]: the fast path at 1k and at many established flows,
//! the slow path for new flows, flow-table memory and allocations per
//! fast-path packet (the goals are in DESIGN.md). The statistically careful
//! versions are the criterion benches (`cargo bench -p openvpc-dataplane`).
//!
//! It owns the measuring and the wording of the figures; the binary only
//! turns its arguments into [`run`]'s and prints [`DataplaneFigures`]. Behind
//! the `bench` feature, so the router's users do not pull in `serde_json`.
//! Allocations are counted only where [`alloc_counter::CountingAllocator`]
//! is installed (see that module for why it is a build choice); elsewhere
//! the figure is absent and the output says so.

pub mod alloc_counter;

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::router::BATCH;
use crate::workload::Workload;
use crate::{Output, PacketBuf};

/// Why a measurement could not be made: the workload did not set up the
/// flows it should have, which is a bug in the router or the workload.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("only {established} of {wanted} flows were established: the workload is broken")]
    NotEstablished { established: usize, wanted: usize },
    #[error("only {established} of {wanted} new flows were admitted")]
    NotAdmitted { established: usize, wanted: usize },
}

/// What `openvpc bench dataplane` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DataplaneFigures {
    /// Flows in the large-table measurement.
    pub flows: usize,
    pub fast_path_pps_1k: f64,
    /// The same with no flow log on the ENI (nothing counted): the cost of
    /// flow-log accounting is the difference.
    pub fast_path_pps_1k_unlogged: f64,
    /// At `flows` established flows.
    pub fast_path_pps_large: f64,
    pub slow_path_flows_per_sec: f64,
    /// Explaining one new flow's packet (what `openvpc trace` runs per
    /// host), in microseconds, on the same policy as the slow path.
    pub explain_micros: f64,
    /// Flow-table bytes per flow, both directions, at `flows` flows.
    pub bytes_per_flow: f64,
    /// Allocations per fast-path packet at `flows` flows; `None` when this
    /// process does not count allocations.
    pub allocs_per_packet: Option<f64>,
}

/// What the output says in place of the allocation figure when the process
/// does not count allocations.
pub const ALLOCATIONS_NOT_COUNTED: &str =
    "not counted: build openvpc with --features count-allocations";

impl DataplaneFigures {
    /// The figures as one JSON object. Without allocation counting,
    /// `allocs_per_packet_fast_path` is null and `allocation_counting` says
    /// why.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "fast_path_mpps_1k": self.fast_path_pps_1k / 1e6,
            "fast_path_mpps_1k_unlogged": self.fast_path_pps_1k_unlogged / 1e6,
            "flow_log_accounting_cost_percent": self.flow_log_cost_percent(),
            "fast_path_mpps_1m": self.fast_path_pps_large / 1e6,
            "slow_path_flows_per_sec": self.slow_path_flows_per_sec,
            "explain_micros": self.explain_micros,
            "bytes_per_flow": self.bytes_per_flow,
            "allocs_per_packet_fast_path": self.allocs_per_packet,
        });
        if self.allocs_per_packet.is_none() {
            v["allocation_counting"] = ALLOCATIONS_NOT_COUNTED.into();
        }
        v
    }

    /// How much slower the fast path is with a flow log on the ENI, in
    /// percent of the unlogged rate (goal: at most 5).
    pub fn flow_log_cost_percent(&self) -> f64 {
        (1.0 - self.fast_path_pps_1k / self.fast_path_pps_1k_unlogged) * 100.0
    }

    /// The figures as a table, one line each.
    pub fn table(&self) -> String {
        let allocs = match self.allocs_per_packet {
            Some(a) => format!("{a:>10.3}"),
            None => ALLOCATIONS_NOT_COUNTED.to_owned(),
        };
        [
            format!(
                "{:<52} {:>10.2} Mpps",
                "fast path, 1k established flows, 64 B + encap",
                self.fast_path_pps_1k / 1e6
            ),
            format!(
                "{:<52} {:>10.2} Mpps",
                "  the same, no flow log on the ENI",
                self.fast_path_pps_1k_unlogged / 1e6
            ),
            format!(
                "{:<52} {:>10.1} %",
                "  flow-log accounting cost",
                self.flow_log_cost_percent()
            ),
            format!(
                "{:<52} {:>10.2} Mpps",
                format!("fast path, {} established flows", self.flows),
                self.fast_path_pps_large / 1e6
            ),
            format!(
                "{:<52} {:>10.0} flows/s",
                "slow path, new flows (100 SG, 20 ACL, 1000 routes)", self.slow_path_flows_per_sec
            ),
            format!(
                "{:<52} {:>10.2} us",
                "explain one packet (trace; same policy)", self.explain_micros
            ),
            format!(
                "{:<52} {:>10.1} bytes",
                "flow-table memory per flow (both directions)", self.bytes_per_flow
            ),
            format!("{:<52} {allocs}", "allocations per fast-path packet"),
        ]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect()
    }
}

/// Fast-path figures for `flows` established flows (on an ENI a flow log
/// covers, or not): packets per second,
/// allocations per packet if counted, flow-table bytes per flow.
fn fast_path(
    flows: usize,
    flow_logged: bool,
    budget: Duration,
    progress: &mut dyn FnMut(&str),
) -> Result<(f64, Option<f64>, f64), BenchError> {
    progress(&format!("establishing {flows} flows..."));
    let mut w = Workload::with_flow_logs(flows, flow_logged);
    let established = w.establish(1_000);
    if established != flows {
        return Err(BenchError::NotEstablished {
            established,
            wanted: flows,
        });
    }
    let bytes_per_flow = w.router.flow_table_bytes() as f64 / flows as f64;
    // Batches, as the agent's workers read frames: lookups overlap their
    // cache misses (see `Router::from_instance_batch`).
    let mut bufs = vec![PacketBuf::default(); BATCH];
    let mut outs = [Output::Pending; BATCH];
    // One pass first, at the measured time: each flow's first packet in a
    // new flow-log aggregation interval hands the old interval's record to
    // the router's record buffer, which grows (amortised) until the agent
    // drains it. That happens once per flow per interval, not per packet;
    // the figures below are the steady state.
    for i in (0..flows).step_by(BATCH) {
        w.send_batch(i, &mut bufs, &mut outs, 2_000);
    }
    let counting = alloc_counter::installed();
    let (mut sent, mut i) = (0u64, 0usize);
    let allocs_before = alloc_counter::allocations();
    let start = Instant::now();
    while start.elapsed() < budget {
        for _ in 0..128 {
            w.send_batch(i, &mut bufs, &mut outs, 2_000);
            debug_assert!(outs.iter().all(|o| matches!(o, Output::Underlay { .. })));
            black_box(&outs);
            i = (i + BATCH) % flows;
        }
        sent += 128 * BATCH as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allocs = alloc_counter::allocations() - allocs_before;
    Ok((
        sent as f64 / elapsed,
        counting.then(|| allocs as f64 / sent as f64),
        bytes_per_flow,
    ))
}

/// Mean time to explain a new flow's first packet at the workload's ENI
/// (100 SG rules, 20 ACL rules, 1,000 routes), over `budget`.
fn explain_micros(w: &Workload, budget: Duration) -> f64 {
    use crate::policy::Way;
    // Flows the workload has not opened: explain sees new connections.
    let frames: Vec<Vec<u8>> = (0..1024)
        .map(|i| crate::workload::frame(w.frames.len() + i, crate::workload::SYN))
        .collect();
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for f in &frames {
            black_box(w.router.explain(w.eni, Way::Egress, f));
        }
        n += frames.len() as u64;
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// Measures each fast-path figure for `budget`, the large table at `flows`
/// flows; `progress` hears what is being set up while it runs.
pub fn run(
    budget: Duration,
    flows: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<DataplaneFigures, BenchError> {
    // Logged and unlogged alternate, best of two each: the difference is
    // a few percent, less than the drift of a busy machine.
    let (mut small_pps, mut unlogged_pps) = (0f64, 0f64);
    for _ in 0..2 {
        small_pps = small_pps.max(fast_path(1_000, true, budget, progress)?.0);
        unlogged_pps = unlogged_pps.max(fast_path(1_000, false, budget, progress)?.0);
    }
    let (large_pps, allocs, bytes_per_flow) = fast_path(flows, true, budget, progress)?;
    progress("measuring new flows...");
    let new_flows = 200_000;
    let mut w = Workload::new(new_flows);
    let start = Instant::now();
    let established = w.establish(1_000);
    let slow = established as f64 / start.elapsed().as_secs_f64();
    if established != new_flows {
        return Err(BenchError::NotAdmitted {
            established,
            wanted: new_flows,
        });
    }
    progress("measuring explain...");
    let explain = explain_micros(&w, budget);
    Ok(DataplaneFigures {
        flows,
        explain_micros: explain,
        fast_path_pps_1k: small_pps,
        fast_path_pps_1k_unlogged: unlogged_pps,
        fast_path_pps_large: large_pps,
        slow_path_flows_per_sec: slow,
        bytes_per_flow,
        allocs_per_packet: allocs,
    })
}
