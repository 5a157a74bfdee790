//! `openvpc bench`: quick measurements of openvpc's components. The
//! statistically careful versions are the criterion benches (`cargo bench`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use openvpc_dataplane::router::BATCH;
use openvpc_dataplane::workload::Workload;
use openvpc_dataplane::{Output, PacketBuf};
use openvpc_packet::{FlowHasher, flow, geneve, sample};

use super::alloc_counter::allocations;

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// The packet layer: Geneve decap to the inner flow key, and the flow hash.
    Packet {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure each figure, in seconds.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// The virtual router: fast path at 1k and 1M flows, slow path, memory
    /// and allocations per flow (the goals are in DESIGN.md).
    Dataplane {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure each fast-path figure, in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Flows in the large-table measurement.
        #[arg(long, default_value_t = 1_000_000)]
        flows: usize,
    },
    /// The EC2 API through HTTP with SigV4, on a store holding many VPCs,
    /// subnets and security-group rules of many accounts: p50 and p99
    /// latency of DescribeVpcs (filtered), CreateSubnet and
    /// AuthorizeSecurityGroupIngress.
    Api {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// VPCs, subnets and rules each in the store before measuring.
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Calls measured per action (CreateSubnet is capped by its quota).
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Real traffic between two instances on two lab hosts, measured as
    /// bench/kernel-baseline.sh measures the kernel and Open vSwitch:
    /// iperf3 TCP and UDP 64 B, sockperf TCP ping-pong (needs root).
    Lab(super::bench_lab::LabBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Target::Lab(lab) => super::bench_lab::run(lab),
        Target::Packet { json, seconds } => {
            packet(json, Duration::from_secs_f64(seconds.max(0.01)))
        }
        Target::Dataplane {
            json,
            seconds,
            flows,
        } => dataplane(
            json,
            Duration::from_secs_f64(seconds.max(0.01)),
            flows.max(1),
        ),
        Target::Api {
            json,
            objects,
            samples,
        } => super::bench_api::run(json, objects, samples.max(1)),
    }
}

/// Runs `op` in batches until `budget` has passed; returns ns per call.
fn ns_per_op(budget: Duration, mut op: impl FnMut()) -> f64 {
    const BATCH: u64 = 10_000;
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..BATCH {
            op();
        }
        calls += BATCH;
    }
    start.elapsed().as_nanos() as f64 / calls as f64
}

fn packet(json: bool, budget: Duration) -> anyhow::Result<()> {
    let inner = sample::tcp_frame(64).context("building the sample frame")?;
    let frame = sample::geneve_frame(0x1234, &inner).context("building the sample frame")?;
    // Check once, outside the timed loop, that the frame parses.
    let key = flow::parse_ethernet(geneve::decap(&frame)?.inner())?.key;
    let hasher = FlowHasher::new();
    if !json {
        eprintln!("measuring for {:.1}s per figure...", budget.as_secs_f64());
    }
    let parse = ns_per_op(budget, || {
        if let Ok(d) = geneve::decap(black_box(&frame)) {
            black_box(d.vni());
            if let Ok(f) = flow::parse_ethernet(d.inner()) {
                black_box(f.key);
            }
        }
    });
    let hash = ns_per_op(budget, || {
        black_box(hasher.hash(black_box(&key)));
    });
    if json {
        println!(
            "{}",
            serde_json::json!({ "geneve_parse_ns": parse, "flow_hash_ns": hash })
        );
    } else {
        println!(
            "{:<44} {:>8.1} ns/packet",
            "Geneve/TCP frame -> inner flow key", parse
        );
        println!(
            "{:<44} {:>8.1} ns/key",
            "flow hash (seeded, per process)", hash
        );
    }
    Ok(())
}

/// Fast-path figures for `flows` established flows: (packets per second,
/// allocations per packet, flow-table bytes per flow).
fn fast_path(flows: usize, budget: Duration, json: bool) -> anyhow::Result<(f64, f64, f64)> {
    if !json {
        eprintln!("establishing {flows} flows...");
    }
    let mut w = Workload::new(flows);
    let established = w.establish(1_000);
    anyhow::ensure!(
        established == flows,
        "only {established} of {flows} flows were established: the workload is broken"
    );
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
    let (mut sent, mut i) = (0u64, 0usize);
    let allocs_before = allocations();
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
    let allocs = allocations() - allocs_before;
    Ok((
        sent as f64 / elapsed,
        allocs as f64 / sent as f64,
        bytes_per_flow,
    ))
}

fn dataplane(json: bool, budget: Duration, flows: usize) -> anyhow::Result<()> {
    let (small_pps, _, _) = fast_path(1_000, budget, json)?;
    let (large_pps, allocs, bytes_per_flow) = fast_path(flows, budget, json)?;
    if !json {
        eprintln!("measuring new flows...");
    }
    let new_flows = 200_000;
    let mut w = Workload::new(new_flows);
    let start = Instant::now();
    let established = w.establish(1_000);
    let slow = established as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        established == new_flows,
        "only {established} of {new_flows} new flows were admitted"
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "fast_path_mpps_1k": small_pps / 1e6,
                "fast_path_mpps_1m": large_pps / 1e6,
                "slow_path_flows_per_sec": slow,
                "bytes_per_flow": bytes_per_flow,
                "allocs_per_packet_fast_path": allocs,
            })
        );
    } else {
        println!(
            "{:<52} {:>10.2} Mpps",
            "fast path, 1k established flows, 64 B + encap",
            small_pps / 1e6
        );
        println!(
            "{:<52} {:>10.2} Mpps",
            format!("fast path, {flows} established flows"),
            large_pps / 1e6
        );
        println!(
            "{:<52} {:>10.0} flows/s",
            "slow path, new flows (100 SG, 20 ACL, 1000 routes)", slow
        );
        println!(
            "{:<52} {:>10.1} bytes",
            "flow-table memory per flow (both directions)", bytes_per_flow
        );
        println!(
            "{:<52} {:>10.3}",
            "allocations per fast-path packet", allocs
        );
    }
    Ok(())
}
