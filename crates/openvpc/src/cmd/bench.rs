//! `openvpc bench`: quick measurements of openvpc's components. The
//! statistically careful versions are the criterion benches (`cargo bench`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use openvpc_packet::{FlowHasher, flow, geneve, sample};

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
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Target::Packet { json, seconds } => {
            packet(json, Duration::from_secs_f64(seconds.max(0.01)))
        }
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
