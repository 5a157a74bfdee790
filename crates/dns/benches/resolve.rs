//! Answers per second for the resolver's hot cases (issue 18 goal: at least
//! 100k queries/s per core for cached names): a cached upstream name, a
//! private name, and a name under the Amazon domain that does not exist.
//! The clock advances 1 ms a query, so the 1024 packets/s limit never bites.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use openvpc_dns::{EniKey, Outcome, VpcDns, VpcResolver};

fn query(id: u16, qname: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(qname).expect("name"), rtype));
    m.to_vec().expect("query")
}

fn resolver() -> VpcResolver {
    let mut cfg = VpcDns::new("us-east-1").expect("region");
    cfg.enable_dns_hostnames = true;
    for i in 0..=255u8 {
        cfg.set_address(
            Ipv4Addr::new(10, 0, 1, i),
            Some(Ipv4Addr::new(203, 0, 113, i)),
        );
    }
    let mut r = VpcResolver::new(cfg, 1024);
    // Warm the cache with one upstream answer.
    let q = query(1, "www.example.com.", RecordType::A);
    let Outcome::Forward(fwd) = r.handle(EniKey(1), &q, 0) else {
        panic!("expected a forward")
    };
    let mut reply = Message::from_vec(&q).expect("query").into_response();
    reply.add_answer(Record::from_rdata(
        Name::from_ascii("www.example.com.").expect("name"),
        86_400,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 80))),
    ));
    r.relay(&reply.to_vec().expect("reply"), &fwd, 0)
        .expect("relay");
    r
}

fn answers(c: &mut Criterion) {
    let mut g = c.benchmark_group("resolver");
    g.throughput(Throughput::Elements(1));
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (label, qname) in [
        ("cached_name", "www.example.com."),
        ("private_name", "ip-10-0-1-5.ec2.internal."),
        ("public_name", "ec2-203-0-113-5.compute-1.amazonaws.com."),
        ("nxdomain", "ip-10-9-9-9.ec2.internal."),
    ] {
        let q = query(7, qname, RecordType::A);
        let mut r = resolver();
        let mut now_ms = 1u64;
        g.bench_function(label, |b| {
            b.iter(|| {
                now_ms += 1;
                match r.handle(EniKey(1), black_box(&q), now_ms) {
                    Outcome::Answer(bytes) => black_box(bytes),
                    other => panic!("{label}: expected an answer, got {other:?}"),
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, answers);
criterion_main!(benches);
