//! Fast-path costs of the packet layer: parsing a Geneve-encapsulated TCP
//! frame down to its inner flow key, hashing a flow key, and the Internet
//! checksum over a segment and over a 64 KiB super-segment.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openvpc_packet::{FlowHasher, checksum, flow, geneve, sample};

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

fn checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [1448usize, 65_536] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum_{len}_bytes"), |b| {
            b.iter(|| black_box(checksum::add(0, black_box(&data))))
        });
    }
    g.finish();
}

criterion_group!(benches, parse, checksum);
criterion_main!(benches);
