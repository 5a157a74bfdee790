//! Router benchmarks: the fast path for established flows (1k and 1M flows,
//! 64-byte frames, encapsulation included) and the slow path for new flows
//! through 100 security-group rules, 20 ACL rules and 1,000 routes.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openvpc_dataplane::router::BATCH;
use openvpc_dataplane::workload::Workload;
use openvpc_dataplane::{Output, PacketBuf};

fn fast_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("router");
    g.throughput(Throughput::Elements(1));
    for (name, flows) in [
        ("fast_path_1k_flows", 1_000usize),
        ("fast_path_1m_flows", 1_000_000),
    ] {
        let mut w = Workload::new(flows);
        assert_eq!(w.establish(1_000), flows, "every flow must be established");
        let mut buf = PacketBuf::default();
        let mut i = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let out = w.send(i, &mut buf, 2_000);
                i += 1;
                if i == flows {
                    i = 0;
                }
                black_box(out)
            })
        });
    }
    for (name, flows) in [
        ("fast_path_batched_1k_flows", 1_000usize),
        ("fast_path_batched_1m_flows", 1_000_000),
    ] {
        let mut w = Workload::new(flows);
        assert_eq!(w.establish(1_000), flows, "every flow must be established");
        let mut bufs = vec![PacketBuf::default(); BATCH];
        let mut outs = [Output::Pending; BATCH];
        let mut i = 0usize;
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                w.send_batch(i, &mut bufs, &mut outs, 2_000);
                i = (i + BATCH) % flows;
                black_box(&outs);
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.bench_function("slow_path_new_flow", |b| {
        b.iter_custom(|iters| {
            let mut w = Workload::new(iters as usize);
            let start = Instant::now();
            black_box(w.establish(1_000));
            start.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, fast_path);
criterion_main!(benches);
