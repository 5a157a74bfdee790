//! The VPC resolver through the router (issue 18 goal: at least 100k
//! answers/s per core for cached names): a query frame parsed, taken by
//! the gateway layer, answered by the host's resolver, and the reply frame
//! built; for a cached upstream name and for a private name. The clock
//! advances 1 ms a query, so the per-ENI limit never applies.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;

use common::ip;
use common::resolver::{deny_all_eni, query_frame, router, vpc_dns};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hickory_proto::op::Message;
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};
use openvpc_dataplane::PacketBuf;
use openvpc_dataplane::router::Output;

fn answers(c: &mut Criterion) {
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    // An upstream answer to cache first.
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 1, "www.example.com."));
    assert_eq!(r.from_instance(0, &mut buf, 1), Output::Resolver);
    let q = r.take_upstream_queries().pop().unwrap();
    let mut reply = Message::from_vec(&q.query).unwrap().into_response();
    reply.add_answer(Record::from_rdata(
        Name::from_ascii("www.example.com.").unwrap(),
        86_400,
        RData::A(A(ip("198.51.100.10"))),
    ));
    r.relay_upstream(&q, &reply.to_vec().unwrap(), 1).unwrap();

    let mut g = c.benchmark_group("resolver");
    g.throughput(Throughput::Elements(1));
    let mut now = 10u64;
    for (label, name) in [
        ("answer_cached_upstream_name", "www.example.com."),
        ("answer_private_name", "ip-10-0-1-6.ec2.internal."),
    ] {
        let frame = query_frame("10.0.0.2", 53, 2, name);
        g.bench_function(label, |b| {
            b.iter(|| {
                now += 1;
                buf.set(&frame);
                let out = r.from_instance(0, &mut buf, now);
                debug_assert_eq!(out, Output::Instance(0));
                black_box(out)
            });
        });
    }
    g.finish();
}

criterion_group!(benches, answers);
criterion_main!(benches);
