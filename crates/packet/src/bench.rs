//! `openvpc bench packet`: a quick measurement of this crate's hot path,
//! Geneve decap down to the inner flow key, and of the flow hash. The
//! statistically careful versions are the criterion benches
//! (`cargo bench -p openvpc-packet`). Behind the `bench` feature, so that
//! ordinary users of the crate do not pull in `serde_json`.
//!
//! It owns the measuring and the wording of the figures; the binary only
//! turns its arguments into a budget and prints [`PacketFigures`].

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::{Error, FlowHasher, flow, geneve, sample};

/// What `openvpc bench packet` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacketFigures {
    /// Nanoseconds from a Geneve/TCP frame to its inner flow key.
    pub geneve_parse_ns: f64,
    /// Nanoseconds per flow hash (seeded, per process).
    pub flow_hash_ns: f64,
}

impl PacketFigures {
    /// The figures as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "geneve_parse_ns": self.geneve_parse_ns,
            "flow_hash_ns": self.flow_hash_ns,
        })
    }

    /// The figures as a table, one line each.
    pub fn table(&self) -> String {
        format!(
            "{:<44} {:>8.1} ns/packet\n{:<44} {:>8.1} ns/key\n",
            "Geneve/TCP frame -> inner flow key",
            self.geneve_parse_ns,
            "flow hash (seeded, per process)",
            self.flow_hash_ns
        )
    }
}

/// Runs `op` in batches until `budget` has passed; returns ns per call.
pub fn ns_per_op(budget: Duration, mut op: impl FnMut()) -> f64 {
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

/// Measures each figure for `budget`. Fails only if the sample frame does
/// not build or parse, which would be a bug in this crate.
pub fn run(budget: Duration) -> Result<PacketFigures, Error> {
    let inner = sample::tcp_frame(64)?;
    let frame = sample::geneve_frame(0x1234, &inner)?;
    // Check once, outside the timed loop, that the frame parses.
    let key = flow::parse_ethernet(geneve::decap(&frame)?.inner())?.key;
    let hasher = FlowHasher::new();
    let geneve_parse_ns = ns_per_op(budget, || {
        if let Ok(d) = geneve::decap(black_box(&frame)) {
            black_box(d.vni());
            if let Ok(f) = flow::parse_ethernet(d.inner()) {
                black_box(f.key);
            }
        }
    });
    let flow_hash_ns = ns_per_op(budget, || {
        black_box(hasher.hash(black_box(&key)));
    });
    Ok(PacketFigures {
        geneve_parse_ns,
        flow_hash_ns,
    })
}
