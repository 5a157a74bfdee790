//! The resolver's rules (spec 1.4), checked with real DNS messages built and
//! read by hickory-proto.

use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use openvpc_dns::{
    DropReason, EniKey, LOCAL_TTL, Outcome, VpcDns, VpcResolver, amazon_domain, set_message_id,
};

const ENI: EniKey = EniKey(1);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
const WEB_PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 7);
const DB: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 9);

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn query(id: u16, qname: &str, rtype: RecordType) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), rtype));
    m.to_vec().unwrap()
}

/// A us-east-1 VPC with both DNS attributes on, a web server with a public
/// IPv4 and a database without one.
fn resolver(region: &str) -> VpcResolver {
    let mut cfg = VpcDns::new(region).unwrap();
    cfg.enable_dns_hostnames = true;
    cfg.set_address(WEB, Some(WEB_PUBLIC));
    cfg.set_address(DB, None);
    VpcResolver::new(cfg, 64)
}

fn answer(r: &mut VpcResolver, q: &[u8], now_ms: u64) -> Message {
    match r.handle(ENI, q, now_ms) {
        Outcome::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

#[test]
fn spec_1_4_domain_is_ec2_internal_in_us_east_1_and_region_compute_internal_elsewhere() {
    assert_eq!(amazon_domain("us-east-1"), "ec2.internal");
    assert_eq!(amazon_domain("eu-west-3"), "eu-west-3.compute.internal");
    let r = resolver("eu-west-3");
    assert_eq!(r.config().domain(), &name("eu-west-3.compute.internal."));
}

#[test]
fn spec_1_4_private_name_resolves_to_the_vpc_address() {
    let mut r = resolver("us-east-1");
    let m = answer(
        &mut r,
        &query(7, "ip-10-0-1-5.ec2.internal.", RecordType::A),
        0,
    );
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert!(m.metadata.recursion_available);
    assert_eq!(a_records(&m), vec![WEB]);
    assert_eq!(m.answers[0].ttl, LOCAL_TTL);
    assert_eq!(m.queries[0].name(), &name("ip-10-0-1-5.ec2.internal."));

    // Case does not matter, and another region uses its own domain.
    let m = answer(
        &mut r,
        &query(8, "IP-10-0-2-9.EC2.Internal.", RecordType::A),
        0,
    );
    assert_eq!(a_records(&m), vec![DB]);
    let mut r = resolver("eu-west-1");
    let m = answer(
        &mut r,
        &query(9, "ip-10-0-2-9.eu-west-1.compute.internal.", RecordType::A),
        0,
    );
    assert_eq!(a_records(&m), vec![DB]);
}

#[test]
fn spec_1_4_private_name_of_an_address_not_in_the_vpc_is_nxdomain() {
    let mut r = resolver("us-east-1");
    for qname in [
        "ip-10-0-1-6.ec2.internal.",
        "nothing-here.ec2.internal.",
        "www.ip-10-0-1-5.ec2.internal.",
        "ip-010-0-1-5.ec2.internal.",
    ] {
        let m = answer(&mut r, &query(1, qname, RecordType::A), 0);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{qname}");
        assert!(m.metadata.authoritative, "{qname}");
        assert!(m.answers.is_empty());
        // The domain's SOA lets clients cache the negative answer (RFC 2308).
        assert_eq!(m.authorities.len(), 1, "{qname}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(m.authorities[0].name, name("ec2.internal."));
    }
    assert_eq!(r.counters().nxdomain, 4);
}

#[test]
fn every_address_of_the_vpcs_cidr_blocks_has_its_private_name() {
    // Amazon's private names are derived from the address: the resolver
    // names every address of the VPC's blocks, an interface holding it or
    // not; outside them the name does not exist.
    let mut cfg = VpcDns::new("us-east-1").unwrap();
    cfg.enable_dns_hostnames = true;
    cfg.add_range(Ipv4Addr::new(10, 0, 0, 0), 16);
    cfg.add_range(Ipv4Addr::new(100, 64, 7, 9), 24);
    let mut r = VpcResolver::new(cfg, 8);
    for (qname, want) in [
        (
            "ip-10-0-200-17.ec2.internal.",
            Some(Ipv4Addr::new(10, 0, 200, 17)),
        ),
        (
            "ip-100-64-7-1.ec2.internal.",
            Some(Ipv4Addr::new(100, 64, 7, 1)),
        ),
        ("ip-10-1-0-1.ec2.internal.", None),
        ("ip-100-64-8-1.ec2.internal.", None),
    ] {
        let m = answer(&mut r, &query(1, qname, RecordType::A), 0);
        match want {
            Some(ip) => assert_eq!(a_records(&m), vec![ip], "{qname}"),
            None => assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{qname}"),
        }
    }
}

#[test]
fn spec_1_4_existing_private_name_without_records_of_the_type_is_nodata() {
    let mut r = resolver("us-east-1");
    let m = answer(
        &mut r,
        &query(1, "ip-10-0-1-5.ec2.internal.", RecordType::AAAA),
        0,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
}

#[test]
fn spec_1_4_public_name_resolves_to_the_private_address_inside_the_vpc() {
    let mut r = resolver("us-east-1");
    let m = answer(
        &mut r,
        &query(3, "ec2-203-0-113-7.compute-1.amazonaws.com.", RecordType::A),
        0,
    );
    assert_eq!(a_records(&m), vec![WEB]);

    let mut r = resolver("eu-west-1");
    let m = answer(
        &mut r,
        &query(
            4,
            "ec2-203-0-113-7.eu-west-1.compute.amazonaws.com.",
            RecordType::A,
        ),
        0,
    );
    assert_eq!(a_records(&m), vec![WEB]);
    // The us-east-1 form is not this region's: public DNS answers it.
    assert!(matches!(
        r.handle(
            ENI,
            &query(5, "ec2-203-0-113-7.compute-1.amazonaws.com.", RecordType::A),
            0
        ),
        Outcome::Forward(_)
    ));
}

#[test]
fn spec_1_4_public_name_of_another_vpc_goes_upstream() {
    let mut r = resolver("us-east-1");
    let q = query(
        3,
        "ec2-198-51-100-1.compute-1.amazonaws.com.",
        RecordType::A,
    );
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
}

#[test]
fn spec_1_4_with_hostnames_off_amazon_names_do_not_resolve() {
    let mut r = resolver("us-east-1");
    r.config_mut().enable_dns_hostnames = false;
    // Private name: not resolved.
    let m = answer(
        &mut r,
        &query(1, "ip-10-0-1-5.ec2.internal.", RecordType::A),
        0,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Public name: not the private address; public DNS answers it.
    let q = query(2, "ec2-203-0-113-7.compute-1.amazonaws.com.", RecordType::A);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
    // Reverse name: not answered here either.
    let q = query(3, "5.1.0.10.in-addr.arpa.", RecordType::PTR);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
}

#[test]
fn spec_1_4_with_dns_support_off_queries_get_no_answer() {
    let mut r = resolver("us-east-1");
    r.config_mut().enable_dns_support = false;
    for qname in ["ip-10-0-1-5.ec2.internal.", "example.com."] {
        let q = query(1, qname, RecordType::A);
        assert_eq!(
            r.handle(ENI, &q, 0),
            Outcome::Drop(DropReason::SupportDisabled)
        );
    }
    assert_eq!(r.counters().dropped(DropReason::SupportDisabled), 2);
}

#[test]
fn reverse_name_of_a_vpc_address_gives_its_private_name() {
    // AWS behaviour, not listed in spec 1.4.
    let mut r = resolver("us-east-1");
    let m = answer(
        &mut r,
        &query(1, "5.1.0.10.in-addr.arpa.", RecordType::PTR),
        0,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        m.answers[0].data,
        RData::PTR(PTR(name("ip-10-0-1-5.ec2.internal.")))
    );
    // Not a VPC address: upstream.
    let q = query(2, "6.1.0.10.in-addr.arpa.", RecordType::PTR);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
}

#[test]
fn issue_18_load_balancer_name_resolves_to_its_front_addresses() {
    let mut r = resolver("us-east-1");
    let lb = "my-nlb-0123456789abcdef.elb.us-east-1.amazonaws.com";
    let fronts = vec![Ipv4Addr::new(10, 0, 1, 100), Ipv4Addr::new(10, 0, 2, 100)];
    r.config_mut().set_name(lb, fronts.clone()).unwrap();
    let m = answer(&mut r, &query(1, &format!("{lb}."), RecordType::A), 0);
    assert_eq!(a_records(&m), fronts);
    // Without DNS hostnames, too: it is not an Amazon instance name.
    r.config_mut().enable_dns_hostnames = false;
    let m = answer(&mut r, &query(2, &format!("{lb}."), RecordType::A), 0);
    assert_eq!(a_records(&m), fronts);
    r.config_mut().remove_name(lb).unwrap();
    let q = query(3, &format!("{lb}."), RecordType::A);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
}

#[test]
fn issue_18_other_names_are_forwarded_and_the_reply_relayed_with_the_client_id() {
    let mut r = resolver("us-east-1");
    let q = query(0x1234, "example.com.", RecordType::A);
    let Outcome::Forward(fwd) = r.handle(ENI, &q, 0) else {
        panic!("expected a forward")
    };
    assert_eq!(fwd.client_id(), 0x1234);
    assert_eq!(r.counters().forwarded, 1);

    // The shell sent it upstream under its own id 0x9999.
    let mut up = Message::from_vec(&q).unwrap();
    up.metadata.id = 0x9999;
    let mut reply = up.into_response();
    reply.metadata.recursion_available = true;
    reply.add_answer(Record::from_rdata(
        name("example.com."),
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 80))),
    ));
    let reply = reply.to_vec().unwrap();
    let relayed = r.relay(&reply, &fwd, 0).unwrap();
    let m = Message::from_vec(&relayed).unwrap();
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 80)]);
    assert_eq!(
        &relayed[2..],
        &reply[2..],
        "relayed unchanged but for the id"
    );

    // Garbage from upstream is counted and dropped.
    assert_eq!(
        r.relay(&[1, 2, 3], &fwd, 0),
        Err(DropReason::UpstreamMalformed)
    );
}

#[test]
fn issue_18_cached_names_answer_without_upstream_until_their_ttl_runs_out() {
    let mut r = resolver("us-east-1");
    let q = query(1, "example.com.", RecordType::A);
    let Outcome::Forward(fwd) = r.handle(ENI, &q, 1_000) else {
        panic!("expected a forward")
    };
    let mut reply = Message::from_vec(&q).unwrap().into_response();
    reply.add_answer(Record::from_rdata(
        name("example.com."),
        30,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 80))),
    ));
    r.relay(&reply.to_vec().unwrap(), &fwd, 1_000).unwrap();

    // 10 s later, another client asks in other case: answered from the cache,
    // TTL counted down.
    let m = answer(&mut r, &query(2, "EXAMPLE.com.", RecordType::A), 11_000);
    assert_eq!(m.metadata.id, 2);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 80)]);
    assert_eq!(m.answers[0].ttl, 20);
    assert!(!m.metadata.authoritative);
    assert_eq!(m.queries[0].name().to_ascii(), "EXAMPLE.com.");
    assert_eq!(r.counters().cache_hits, 1);

    // Another type is another entry.
    let q = query(3, "example.com.", RecordType::AAAA);
    assert!(matches!(r.handle(ENI, &q, 11_000), Outcome::Forward(_)));

    // After the TTL, upstream again.
    let q = query(4, "example.com.", RecordType::A);
    assert!(matches!(r.handle(ENI, &q, 31_000), Outcome::Forward(_)));
}

#[test]
fn issue_18_cache_is_bounded_and_ignores_negative_or_mismatched_replies() {
    let mut cfg = VpcDns::new("us-east-1").unwrap();
    cfg.enable_dns_hostnames = true;
    let mut r = VpcResolver::new(cfg, 4);
    for i in 0..10u16 {
        let qname = format!("host{i}.example.com.");
        let q = query(i, &qname, RecordType::A);
        let Outcome::Forward(fwd) = r.handle(ENI, &q, 0) else {
            panic!("expected a forward")
        };
        let mut reply = Message::from_vec(&q).unwrap().into_response();
        reply.add_answer(Record::from_rdata(
            name(&qname),
            300,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
        ));
        r.relay(&reply.to_vec().unwrap(), &fwd, 0).unwrap();
    }
    assert_eq!(r.cache().len(), 4);

    // NXDOMAIN is relayed, not cached.
    let q = query(20, "nope.example.com.", RecordType::A);
    let Outcome::Forward(fwd) = r.handle(ENI, &q, 0) else {
        panic!("expected a forward")
    };
    let mut reply = Message::from_vec(&q).unwrap().into_response();
    reply.metadata.response_code = ResponseCode::NXDomain;
    r.relay(&reply.to_vec().unwrap(), &fwd, 0).unwrap();
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));

    // A reply for another question is not cached under this one.
    let q = query(21, "asked.example.com.", RecordType::A);
    let Outcome::Forward(fwd) = r.handle(ENI, &q, 0) else {
        panic!("expected a forward")
    };
    let mut reply = Message::new(21, MessageType::Response, OpCode::Query);
    reply.add_query(Query::query(name("other.example.com."), RecordType::A));
    reply.add_answer(Record::from_rdata(
        name("other.example.com."),
        300,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 66))),
    ));
    r.relay(&reply.to_vec().unwrap(), &fwd, 0).unwrap();
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
}

#[test]
fn set_message_id_rewrites_the_header() {
    let mut q = query(1, "example.com.", RecordType::A);
    assert!(set_message_id(&mut q, 0xbeef));
    assert_eq!(Message::from_vec(&q).unwrap().metadata.id, 0xbeef);
    assert!(!set_message_id(&mut [0u8], 1));
}

#[test]
fn spec_1_4_limit_is_1024_packets_per_second_per_eni() {
    let mut r = resolver("us-east-1");
    let q = query(1, "ip-10-0-1-5.ec2.internal.", RecordType::A);
    let answered = (0..1500)
        .filter(|_| matches!(r.handle(ENI, &q, 5_000), Outcome::Answer(_)))
        .count();
    assert_eq!(answered, 1024);
    assert_eq!(r.counters().dropped(DropReason::RateLimited), 476);
    // Another ENI has its own allowance.
    assert!(matches!(r.handle(EniKey(2), &q, 5_000), Outcome::Answer(_)));
    // A quarter of a second later, a quarter of the allowance is back.
    let answered = (0..1500)
        .filter(|_| matches!(r.handle(ENI, &q, 5_250), Outcome::Answer(_)))
        .count();
    assert_eq!(answered, 256);
}

#[test]
fn spec_1_4_only_recursive_queries_are_sent_upstream() {
    let mut r = resolver("us-east-1");
    let mut m = Message::from_vec(&query(1, "example.com.", RecordType::A)).unwrap();
    m.metadata.recursion_desired = false;
    let reply = answer(&mut r, &m.to_vec().unwrap(), 0);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    // The VPC's own names still answer.
    let mut m = Message::from_vec(&query(2, "ip-10-0-1-5.ec2.internal.", RecordType::A)).unwrap();
    m.metadata.recursion_desired = false;
    let reply = answer(&mut r, &m.to_vec().unwrap(), 0);
    assert_eq!(a_records(&reply), vec![WEB]);
}

#[test]
fn malformed_packets_are_counted_and_dropped() {
    let mut r = resolver("us-east-1");
    assert_eq!(
        r.handle(ENI, &[0; 5], 0),
        Outcome::Drop(DropReason::TooShort)
    );

    let mut resp = query(1, "example.com.", RecordType::A);
    resp[2] |= 0x80;
    assert_eq!(
        r.handle(ENI, &resp, 0),
        Outcome::Drop(DropReason::NotAQuery)
    );

    // Claims a question that is not there.
    let mut trunc = query(1, "example.com.", RecordType::A);
    trunc.truncate(16);
    assert_eq!(
        r.handle(ENI, &trunc, 0),
        Outcome::Drop(DropReason::Malformed)
    );

    assert_eq!(r.counters().dropped(DropReason::TooShort), 1);
    assert_eq!(r.counters().dropped(DropReason::NotAQuery), 1);
    assert_eq!(r.counters().dropped(DropReason::Malformed), 1);
    assert_eq!(r.counters().dropped_total(), 3);
}

#[test]
fn queries_it_cannot_serve_get_an_error_code() {
    let mut r = resolver("us-east-1");
    // Two questions: FORMERR.
    let mut m = Message::from_vec(&query(1, "example.com.", RecordType::A)).unwrap();
    m.add_query(Query::query(name("example.org."), RecordType::A));
    let reply = answer(&mut r, &m.to_vec().unwrap(), 0);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // A NOTIFY: NOTIMP.
    let mut m = Message::from_vec(&query(2, "example.com.", RecordType::SOA)).unwrap();
    m.metadata.op_code = OpCode::Notify;
    let reply = answer(&mut r, &m.to_vec().unwrap(), 0);
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(r.counters().errors, 2);
}

#[test]
fn edns_queries_get_edns_answers() {
    let mut r = resolver("us-east-1");
    let mut m = Message::from_vec(&query(1, "ip-10-0-1-5.ec2.internal.", RecordType::A)).unwrap();
    m.edns = Some(Edns::new());
    let reply = answer(&mut r, &m.to_vec().unwrap(), 0);
    assert!(reply.edns.is_some());
    assert_eq!(a_records(&reply), vec![WEB]);
}

#[test]
fn addresses_and_their_public_ips_can_change() {
    let mut r = resolver("us-east-1");
    let new_public = Ipv4Addr::new(203, 0, 113, 8);
    r.config_mut().set_address(WEB, Some(new_public));
    let q = query(1, "ec2-203-0-113-7.compute-1.amazonaws.com.", RecordType::A);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
    let m = answer(
        &mut r,
        &query(2, "ec2-203-0-113-8.compute-1.amazonaws.com.", RecordType::A),
        0,
    );
    assert_eq!(a_records(&m), vec![WEB]);
    r.config_mut().remove_address(WEB);
    let m = answer(
        &mut r,
        &query(3, "ip-10-0-1-5.ec2.internal.", RecordType::A),
        0,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let q = query(4, "ec2-203-0-113-8.compute-1.amazonaws.com.", RecordType::A);
    assert!(matches!(r.handle(ENI, &q, 0), Outcome::Forward(_)));
    // A non-IN class is never answered from the VPC's data.
    let mut m = Message::from_vec(&query(5, "ip-10-0-2-9.ec2.internal.", RecordType::A)).unwrap();
    let mut q = m.queries[0].clone();
    q.set_query_class(DNSClass::CH);
    m.queries = vec![q];
    assert!(matches!(
        r.handle(ENI, &m.to_vec().unwrap(), 0),
        Outcome::Forward(_)
    ));
}
