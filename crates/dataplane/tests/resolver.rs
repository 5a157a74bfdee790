//! The VPC resolver in the gateway layer (spec 1.4): queries to the VPC's
//! base + 2 and to 169.254.169.253 are answered by the host's resolver
//! before security groups and network ACLs, which do not filter them; other
//! traffic to port 53 goes through the layers like any other; forwarded
//! queries wait for the caller's upstream and come back to the instance.

#![allow(clippy::unwrap_used)]

mod common;

use core::net::Ipv4Addr;

use common::resolver::*;
use common::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};
use openvpc_dataplane::DropReason;
use openvpc_dataplane::PacketBuf;
use openvpc_dataplane::router::Output;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::flow;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

/// The answer in a frame the router sent to the instance, checked to come
/// from `server`:53 to the client's port.
fn answer(frame: &[u8], server: &str) -> Message {
    let pf = flow::parse_ethernet(frame).unwrap();
    assert_eq!(
        pf.key.src_ip(),
        addr(server),
        "the answer comes from the address asked"
    );
    assert_eq!(pf.key.dst_ip(), addr(CLIENT));
    assert_eq!((pf.key.src_port, pf.key.dst_port), (53, 40000));
    Message::from_vec(&frame[pf.l4_offset + 8..pf.l3_offset + pf.ip_len]).unwrap()
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[test]
fn a_query_to_base_plus_two_is_answered_whatever_the_groups_and_acl_say() {
    // spec 1.4: security groups and NACLs cannot filter traffic to the
    // resolver.
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    let mut buf =
        PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 7, "ip-10-0-1-6.ec2.internal."));
    assert_eq!(r.from_instance(0, &mut buf, 1_000), Output::Instance(0));
    let m = answer(buf.data(), "10.0.0.2");
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m), vec![ip("10.0.1.6")]);
    assert_eq!(r.drops().total(), 0);
    assert_eq!(r.dns_counters().local_answers, 1);

    // The batch path leaves it to the gateway too.
    let mut bufs = vec![PacketBuf::from_frame(&query_frame(
        "10.0.0.2",
        53,
        8,
        "ec2-203-0-113-5.compute-1.amazonaws.com.",
    ))];
    let mut outs = vec![Output::Pending];
    r.from_instance_batch(0, &mut bufs, &mut outs, 1_001);
    assert_eq!(outs[0], Output::Instance(0));
    // spec 1.4: inside the VPC the public name gives the private address.
    assert_eq!(
        a_records(&answer(bufs[0].data(), "10.0.0.2")),
        vec![ip(CLIENT)]
    );
}

#[test]
fn the_link_local_address_answers_too() {
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    let mut buf = PacketBuf::from_frame(&query_frame(
        "169.254.169.253",
        53,
        9,
        "ip-10-0-1-5.ec2.internal.",
    ));
    assert_eq!(r.from_instance(0, &mut buf, 1_000), Output::Instance(0));
    let m = answer(buf.data(), "169.254.169.253");
    assert_eq!(a_records(&m), vec![ip(CLIENT)]);
}

#[test]
fn port_53_of_another_address_goes_through_the_layers() {
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    for server in ["10.0.1.6", "10.0.0.3", "198.51.100.10"] {
        let mut buf = PacketBuf::from_frame(&query_frame(server, 53, 1, "www.example.com."));
        assert_eq!(
            r.from_instance(0, &mut buf, 1_000),
            Output::Drop(DropReason::SgDeny),
            "{server}: not the resolver, so the group judges it"
        );
    }
    // A query from an address that is not the ENI's is not answered: the
    // layers judge it (here the source/destination check).
    let spoofed = PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: ROUTER_MAC,
            src: mac(5),
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(ip("10.0.1.99"), ip("10.0.0.2"), 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 40000,
            dst_port: 53,
        }),
    }
    .build(&query_bytes(1, "ip-10-0-1-6.ec2.internal."))
    .unwrap();
    let mut buf = PacketBuf::from_frame(&spoofed);
    assert_eq!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(DropReason::SourceDestCheck)
    );
    // Another port of the resolver's address is not DNS either.
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 5353, 1, "x."));
    assert_eq!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(DropReason::SgDeny)
    );
    assert_eq!(r.dns_counters(), openvpc_dns::Counters::default());
}

#[test]
fn forwarded_queries_wait_for_the_upstream_and_come_back() {
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 11, "www.example.com."));
    assert_eq!(r.from_instance(0, &mut buf, 1_000), Output::Resolver);
    let mut queries = r.take_upstream_queries();
    assert_eq!(queries.len(), 1);
    assert!(r.take_upstream_queries().is_empty());
    let q = queries.pop().unwrap();

    // The upstream's reply, under the id the shell gave it upstream.
    let mut reply = Message::from_vec(&q.query).unwrap().into_response();
    reply.metadata.id = 999;
    reply.add_answer(Record::from_rdata(
        Name::from_ascii("www.example.com.").unwrap(),
        300,
        RData::A(A(ip("198.51.100.10"))),
    ));
    let (eni, frame) = r
        .relay_upstream(&q, &reply.to_vec().unwrap(), 1_010)
        .unwrap();
    assert_eq!(eni, 0);
    let m = answer(&frame, "10.0.0.2");
    assert_eq!(m.metadata.id, 11, "the client's id is put back");
    assert_eq!(a_records(&m), vec![ip("198.51.100.10")]);

    // Cached now: answered at once.
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 12, "www.example.com."));
    assert_eq!(r.from_instance(0, &mut buf, 1_020), Output::Instance(0));
    assert_eq!(
        a_records(&answer(buf.data(), "10.0.0.2")),
        vec![ip("198.51.100.10")]
    );

    // No upstream: SERVFAIL.
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 13, "www.example.org."));
    assert_eq!(r.from_instance(0, &mut buf, 1_030), Output::Resolver);
    let q = r.take_upstream_queries().pop().unwrap();
    let (_, frame) = r.fail_upstream(&q).unwrap();
    let m = answer(&frame, "10.0.0.2");
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (13, ResponseCode::ServFail)
    );
}

#[test]
fn dns_support_off_answers_nothing_and_counts() {
    // spec 1.4: with enableDnsSupport false, queries are not answered.
    let mut d = vpc_dns();
    d.enable_dns_support = false;
    let mut r = router(deny_all_eni(Some(d)));
    let mut buf =
        PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 1, "ip-10-0-1-6.ec2.internal."));
    assert_eq!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(DropReason::ResolverDropped)
    );
    assert_eq!(
        r.dns_counters()
            .dropped(openvpc_dns::DropReason::SupportDisabled),
        1
    );
}

#[test]
fn malformed_queries_are_counted_drops() {
    let mut r = router(deny_all_eni(Some(vpc_dns())));
    let mut frame = query_frame("10.0.0.2", 53, 1, "ip-10-0-1-6.ec2.internal.");
    // Cut the DNS message after its header's first bytes, fixing no length:
    // the UDP length now runs past the packet.
    frame.truncate(14 + 20 + 8 + 6);
    let mut buf = PacketBuf::from_frame(&frame);
    assert!(matches!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(_)
    ));
    // A well-framed message that is not DNS.
    let garbage = PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: ROUTER_MAC,
            src: mac(5),
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(ip(CLIENT), ip("10.0.0.2"), 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 40000,
            dst_port: 53,
        }),
    }
    .build(&[0xff; 40])
    .unwrap();
    let mut buf = PacketBuf::from_frame(&garbage);
    assert_eq!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(DropReason::ResolverDropped)
    );
    assert!(r.dns_counters().dropped_total() >= 1);
}

#[test]
fn without_a_resolver_configuration_queries_are_dropped_as_such() {
    let mut r = router(deny_all_eni(None));
    let mut buf = PacketBuf::from_frame(&query_frame("10.0.0.2", 53, 1, "x.ec2.internal."));
    assert_eq!(
        r.from_instance(0, &mut buf, 1_000),
        Output::Drop(DropReason::ResolverAbsent)
    );
}
