//! ESP throughput per core, one tunnel, 1,400-byte inner packets (issue
//! 19's goal: AWS allows 1.25 Gbit/s per tunnel): sealing and opening
//! with AES-GCM-128 and -256, and with AES-CBC-128 + HMAC-SHA-256-128.
//! Opening re-seals each packet first (an SA opens a sequence number
//! once), so the open figures are seal + open; the seal figures alone
//! tell the two apart.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openvpc_vpn::esp::{IPV4, InboundSa, Integrity, OutboundSa, Transform};

const INNER: usize = 1400;

fn keymat(t: Transform) -> Vec<u8> {
    (0..t.keymat_len()).map(|i| i as u8).collect()
}

fn bench(c: &mut Criterion) {
    let transforms = [
        ("aes-gcm-128", Transform::AesGcm16 { key_bits: 128 }),
        ("aes-gcm-256", Transform::AesGcm16 { key_bits: 256 }),
        (
            "aes-cbc-128-sha256",
            Transform::AesCbc {
                key_bits: 128,
                integrity: Integrity::Sha256,
            },
        ),
    ];
    let inner = vec![0x45u8; INNER];
    let mut g = c.benchmark_group("esp_1400");
    g.throughput(Throughput::Bytes(INNER as u64));
    g.measurement_time(Duration::from_secs(3));
    for (name, t) in transforms {
        let km = keymat(t);
        let mut out = OutboundSa::new(7, t, &km).expect("sa");
        let mut wire = Vec::with_capacity(2048);
        g.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| {
                wire.clear();
                out.seal(black_box(&inner), IPV4, &mut wire).expect("seal");
                black_box(&wire);
            });
        });
        let mut out = OutboundSa::new(7, t, &km).expect("sa");
        let mut inb = InboundSa::new(7, t, &km).expect("sa");
        g.bench_function(format!("seal+open/{name}"), |b| {
            b.iter(|| {
                wire.clear();
                out.seal(black_box(&inner), IPV4, &mut wire).expect("seal");
                black_box(inb.open(&mut wire).expect("open"));
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
