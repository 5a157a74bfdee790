//! Fast-path costs of the packet layer: parsing a Geneve-encapsulated TCP
//! frame down to its inner flow key, and hashing a flow key.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openvpc_packet::{FlowHasher, flow, geneve, sample};

fn parse(c: &mut Criterion) {
    let inner = sample::tcp_frame(64).expect("sample frame");
    let frame = sample::geneve_frame(0x1234, &inner).expect("sample frame");
    let mut g = c.benchmark_group("packet");
    g.throughput(Throughput::Elements(1));
    g.bench_function("geneve_tcp_to_inner_flow_key", |b| {
        b.iter(|| {
            let d = geneve::decap(black_box(&frame)).expect("valid frame");
            let f = flow::parse_ethernet(d.inner()).expect("valid inner frame");
            black_box(d.vni());
            black_box(f.key)
        })
    });
    g.bench_function("inner_flow_key_only", |b| {
        b.iter(|| {
            black_box(
                flow::parse_ethernet(black_box(&inner))
                    .expect("valid frame")
                    .key,
            )
        })
    });
    let key = flow::parse_ethernet(&inner).expect("valid frame").key;
    let hasher = FlowHasher::new();
    g.bench_function("flow_hash", |b| {
        b.iter(|| black_box(hasher.hash(black_box(&key))))
    });
    g.bench_function("flow_hash_symmetric", |b| {
        b.iter(|| black_box(hasher.hash_symmetric(black_box(&key))))
    });
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
