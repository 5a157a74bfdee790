//! The NLB core against spec 9: target choice by the flow hash over
//! healthy targets (9.2), stickiness, fail open and draining (9.4),
//! cross-zone (9.5), client IP preservation (9.3), UDP and TCP_UDP
//! listeners, replication and takeover, and malformed input.

use core::net::Ipv4Addr;
use std::collections::HashMap;

use openvpc_dataplane::buf::PacketBuf;
use openvpc_hyperplane::nlb::{
    FlowRecord, Front, Health, Listener, Nlb, NlbConfig, NlbDrop, NlbOutput, Protocol, RecordKind,
    Target, TargetGroup, TargetType,
};
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};
use openvpc_packet::udp::UdpRepr;
use proptest::prelude::*;

const FRONT_A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const FRONT_B: Ipv4Addr = Ipv4Addr::new(10, 0, 16, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 7);
const T: [Ipv4Addr; 3] = [
    Ipv4Addr::new(10, 0, 1, 10),
    Ipv4Addr::new(10, 0, 1, 11),
    Ipv4Addr::new(10, 0, 17, 12),
];

fn target(k: usize, az: &str) -> Target {
    Target {
        id: format!("i-{k}"),
        ip: T[k],
        port: 8080,
        az: az.into(),
        health: Health::Healthy,
    }
}

/// Targets 0 and 1 in az-a, 2 in az-b; fronts A (az-a) and B (az-b).
fn config(target_type: TargetType, protocol: Protocol, cross_zone: bool) -> NlbConfig {
    let group = TargetGroup {
        id: "tg-1".into(),
        target_type,
        targets: vec![target(0, "az-a"), target(1, "az-a"), target(2, "az-b")],
        preserve_client_ip: None,
        cross_zone: None,
    };
    let mut c = NlbConfig::new(
        vec![
            Front {
                address: FRONT_A,
                az: "az-a".into(),
            },
            Front {
                address: FRONT_B,
                az: "az-b".into(),
            },
        ],
        vec![Listener {
            port: 80,
            protocol,
            target_group: 0,
        }],
        vec![group],
        0,
        2,
        100_000,
    );
    c.cross_zone = cross_zone;
    c
}

fn nlb(target_type: TargetType, protocol: Protocol, cross_zone: bool) -> Nlb {
    Nlb::new(config(target_type, protocol, cross_zone)).unwrap()
}

fn build(src: Ipv4Addr, dst: Ipv4Addr, l4: L4Repr) -> Vec<u8> {
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
        l4,
    }
    .build(b"payload")
    .unwrap()
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, fl: u8, seq: u32) -> Vec<u8> {
    let mut t = TcpRepr::new(sport, dport, fl);
    t.seq = seq;
    build(src, dst, L4Repr::Tcp(t))
}

fn udp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    build(
        src,
        dst,
        L4Repr::Udp(UdpRepr {
            src_port: sport,
            dst_port: dport,
        }),
    )
}

fn client(n: &mut Nlb, packet: &[u8], now: u64) -> (NlbOutput, PacketBuf) {
    let mut b = PacketBuf::from_frame(packet);
    (n.from_client(&mut b, now), b)
}

fn reply(n: &mut Nlb, packet: &[u8], now: u64) -> (NlbOutput, PacketBuf) {
    let mut b = PacketBuf::from_frame(packet);
    (n.from_target(&mut b, now), b)
}

/// The target a client's SYN went to.
fn syn_to(n: &mut Nlb, sport: u16, front: Ipv4Addr, seq: u32, now: u64) -> NlbOutput {
    client(n, &tcp(CLIENT, sport, front, 80, flags::SYN, seq), now).0
}

fn chosen(out: NlbOutput) -> Ipv4Addr {
    match out {
        NlbOutput::ToTarget { target, .. } => target,
        other => panic!("not to a target: {other:?}"),
    }
}

// spec 9.2: connections spread over the healthy targets by the flow hash;
// over many flows each of 3 targets gets its third within ±25 %.
#[test]
fn new_flows_spread_over_three_targets_within_a_quarter_of_their_share() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let mut seen: HashMap<Ipv4Addr, u32> = HashMap::new();
    let flows = 3000u32;
    for i in 0..flows {
        let t = chosen(syn_to(&mut n, 1024 + i as u16, FRONT_A, i * 7919, 0));
        *seen.entry(t).or_default() += 1;
    }
    assert_eq!(seen.len(), 3);
    let share = f64::from(flows) / 3.0;
    for (t, c) in &seen {
        let off = (f64::from(*c) - share).abs() / share;
        assert!(off <= 0.25, "{t} got {c} of {flows}");
    }
    assert_eq!(n.counters().new_flows, u64::from(flows));
    assert_eq!(n.active_flows(), flows);
}

// spec 9.2: every packet of a connection reaches the same target; the
// SYN's sequence number is part of the hash, so the same client tuple
// reopened with other sequence numbers lands on different targets.
#[test]
fn a_flow_keeps_its_target_and_the_sequence_number_is_hashed() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let first = chosen(syn_to(&mut n, 5000, FRONT_A, 1, 0));
    for k in 0..20 {
        let (o, _) = client(
            &mut n,
            &tcp(CLIENT, 5000, FRONT_A, 80, flags::ACK, 2 + k),
            1,
        );
        assert_eq!(chosen(o), first);
        assert!(matches!(o, NlbOutput::ToTarget { record: None, .. }));
    }
    let mut targets = std::collections::HashSet::new();
    for seq in 0..64u32 {
        let mut m = nlb(TargetType::Instance, Protocol::Tcp, true);
        targets.insert(chosen(syn_to(
            &mut m,
            5000,
            FRONT_A,
            seq.wrapping_mul(0x9e37_79b9),
            0,
        )));
    }
    assert_eq!(targets.len(), 3, "the sequence number moves the choice");
    // spec 9.1: a segment of no connection gets a RST, from the front
    // address to the client, at the sequence number its ACK asked for.
    let (o, rst) = client(&mut n, &tcp(CLIENT, 6000, FRONT_A, 80, flags::ACK, 9), 1);
    assert_eq!(o, NlbOutput::Reset);
    let pf = openvpc_packet::flow::parse_ip(rst.data(), 0x0800).unwrap();
    assert_eq!(
        (
            pf.key.src_ip(),
            pf.key.src_port,
            pf.key.dst_ip(),
            pf.key.dst_port
        ),
        (FRONT_A.into(), 80, CLIENT.into(), 6000)
    );
    assert_ne!(pf.tcp_flags & flags::RST, 0);
    assert_eq!(n.counters().resets_sent, 1);
    // A RST of no connection is a counted drop, never answered.
    let (o, _) = client(&mut n, &tcp(CLIENT, 6000, FRONT_A, 80, flags::RST, 9), 1);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::NoConnection));
    // A node that just joined its place drops such segments instead: their
    // flows may be on their way back from the buddy.
    n.quiet_for(2, 3);
    let (o, _) = client(&mut n, &tcp(CLIENT, 6001, FRONT_A, 80, flags::ACK, 9), 4);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::Joining));
    let (o, _) = client(&mut n, &tcp(CLIENT, 6001, FRONT_A, 80, flags::ACK, 9), 5);
    assert_eq!(o, NlbOutput::Reset);
}

// spec 9.4: an unhealthy target gets no new flows; its established flow
// continues.
#[test]
fn an_unhealthy_target_gets_no_new_flows_but_keeps_its_own() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let mut on_t0 = None;
    for i in 0..100u16 {
        if chosen(syn_to(&mut n, 2000 + i, FRONT_A, u32::from(i), 0)) == T[0] {
            on_t0 = Some(2000 + i);
            break;
        }
    }
    let on_t0 = on_t0.expect("some flow on target 0");
    assert!(n.set_health(0, 0, Health::Unhealthy));
    assert_eq!(n.host_counts(0), Some((2, 1)));
    for i in 0..500u16 {
        assert_ne!(chosen(syn_to(&mut n, 10_000 + i, FRONT_A, 7, 1)), T[0]);
    }
    let (o, _) = client(&mut n, &tcp(CLIENT, on_t0, FRONT_A, 80, flags::ACK, 5), 2);
    assert_eq!(chosen(o), T[0]);
}

// spec 9.4: with every target unhealthy the NLB fails open to all of them.
#[test]
fn all_unhealthy_fails_open_to_all() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    for k in 0..3 {
        n.set_health(0, k, Health::Unhealthy);
    }
    assert_eq!(n.host_counts(0), Some((0, 3)));
    let mut seen = std::collections::HashSet::new();
    for i in 0..300u16 {
        seen.insert(chosen(syn_to(&mut n, 3000 + i, FRONT_A, 1, 0)));
    }
    assert_eq!(seen.len(), 3);
}

// spec 9.4 / issue 17: a draining target keeps its established flows until
// the deregistration delay ends and gets no new flow; after it, the old
// flow's packets are counted drops.
#[test]
fn draining_keeps_old_flows_until_the_deadline_and_takes_no_new_ones() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let sport = (0..200u16)
        .map(|i| 4000 + i)
        .find(|&p| chosen(syn_to(&mut n, p, FRONT_A, 3, 0)) == T[1])
        .expect("a flow on target 1");
    assert!(n.set_health(0, 1, Health::Draining { until: 300 }));
    for i in 0..300u16 {
        assert_ne!(chosen(syn_to(&mut n, 20_000 + i, FRONT_A, 9, 10)), T[1]);
    }
    let (o, _) = client(&mut n, &tcp(CLIENT, sport, FRONT_A, 80, flags::ACK, 4), 299);
    assert_eq!(chosen(o), T[1]);
    let (o, _) = reply(&mut n, &tcp(T[1], 8080, CLIENT, sport, flags::ACK, 1), 299);
    assert!(matches!(o, NlbOutput::ToClient { .. }), "{o:?}");
    let (o, _) = client(&mut n, &tcp(CLIENT, sport, FRONT_A, 80, flags::ACK, 5), 300);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::DrainExpired));
    assert_eq!(n.drops(NlbDrop::DrainExpired), 1);
    // The flow is gone: the next segment opens nothing and is reset.
    let (o, _) = client(&mut n, &tcp(CLIENT, sport, FRONT_A, 80, flags::ACK, 6), 301);
    assert_eq!(o, NlbOutput::Reset);
}

// spec 9.5: cross-zone off (the default) keeps a front address's flows in
// its AZ; on, they reach every AZ.
#[test]
fn cross_zone_off_restricts_each_front_to_its_az() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, false);
    for i in 0..300u16 {
        let a = chosen(syn_to(&mut n, 1000 + i, FRONT_A, 1, 0));
        assert!(a == T[0] || a == T[1], "{a}");
        let b = chosen(syn_to(&mut n, 1000 + i, FRONT_B, 1, 0));
        assert_eq!(b, T[2]);
    }
    // A target group's own setting overrides the load balancer's.
    let mut c = config(TargetType::Instance, Protocol::Tcp, false);
    c.target_groups[0].cross_zone = Some(true);
    let mut n = Nlb::new(c).unwrap();
    let seen: std::collections::HashSet<_> = (0..300u16)
        .map(|i| chosen(syn_to(&mut n, 1000 + i, FRONT_B, 1, 0)))
        .collect();
    assert_eq!(seen.len(), 3);
}

// spec 9.3: instance targets see the client's address; the packets are
// exactly those built anew (checksums included), both ways.
#[test]
fn client_ip_preserved_rewrites_only_the_destination() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, false);
    let (o, b) = client(&mut n, &tcp(CLIENT, 5555, FRONT_B, 80, flags::SYN, 77), 0);
    let NlbOutput::ToTarget {
        target,
        record: Some(r),
        ..
    } = o
    else {
        panic!("{o:?}")
    };
    assert_eq!(target, T[2]);
    assert_eq!(r.source, CLIENT);
    assert_eq!(
        b.data(),
        tcp(CLIENT, 5555, T[2], 8080, flags::SYN, 77).as_slice()
    );
    let (o, b) = reply(
        &mut n,
        &tcp(T[2], 8080, CLIENT, 5555, flags::SYN | flags::ACK, 900),
        0,
    );
    assert_eq!(
        o,
        NlbOutput::ToClient {
            client: CLIENT,
            record: o_record(o)
        }
    );
    assert_eq!(
        b.data(),
        tcp(FRONT_B, 80, CLIENT, 5555, flags::SYN | flags::ACK, 900).as_slice()
    );
    assert!(n.counters().processed_bytes >= 2 * b.len() as u64);
}

fn o_record(o: NlbOutput) -> Option<FlowRecord> {
    match o {
        NlbOutput::ToClient { record, .. } | NlbOutput::ToTarget { record, .. } => record,
        _ => None,
    }
}

// spec 9.3: IP targets behind a TCP listener see the NLB's own address
// (the front of the flow's AZ) and a port; the reply to it goes back to
// the client, byte for byte as built anew.
#[test]
fn client_ip_not_preserved_translates_the_source_to_the_front() {
    let mut n = nlb(TargetType::Ip, Protocol::Tcp, false);
    let (o, b) = client(&mut n, &tcp(CLIENT, 5555, FRONT_B, 80, flags::SYN, 77), 0);
    assert_eq!(chosen(o), T[2]);
    let r = o_record(o).unwrap();
    assert_eq!(r.source, FRONT_B);
    let port = r.sport;
    assert!(port >= 1024);
    assert_eq!(n.owner_of_port(port), 0, "a port of this node's slice");
    assert_eq!(
        b.data(),
        tcp(FRONT_B, port, T[2], 8080, flags::SYN, 77).as_slice()
    );
    let (o, b) = reply(
        &mut n,
        &tcp(T[2], 8080, FRONT_B, port, flags::SYN | flags::ACK, 5),
        0,
    );
    assert!(matches!(o, NlbOutput::ToClient { client: CLIENT, .. }));
    assert_eq!(
        b.data(),
        tcp(FRONT_B, 80, CLIENT, 5555, flags::SYN | flags::ACK, 5).as_slice()
    );
    // Preservation turned on for the group: the client's address again.
    let mut c = config(TargetType::Ip, Protocol::Tcp, false);
    c.target_groups[0].preserve_client_ip = Some(true);
    let mut n = Nlb::new(c).unwrap();
    let (_, b) = client(&mut n, &tcp(CLIENT, 5555, FRONT_B, 80, flags::SYN, 77), 0);
    assert_eq!(
        b.data(),
        tcp(CLIENT, 5555, T[2], 8080, flags::SYN, 77).as_slice()
    );
}

// spec 9.2, 9.3: a UDP listener balances datagrams (IP targets keep the
// client's address with UDP); a datagram's flow keeps its target; TCP to a
// UDP listener matches no listener.
#[test]
fn udp_listener_balances_and_keeps_the_client_ip() {
    let mut n = nlb(TargetType::Ip, Protocol::Udp, false);
    let (o, b) = client(&mut n, &udp(CLIENT, 4444, FRONT_A, 80), 0);
    let t = chosen(o);
    assert_eq!(b.data(), udp(CLIENT, 4444, t, 8080).as_slice());
    let (o, _) = client(&mut n, &udp(CLIENT, 4444, FRONT_A, 80), 5);
    assert_eq!(chosen(o), t);
    let (o, b) = reply(&mut n, &udp(t, 8080, CLIENT, 4444), 6);
    assert!(matches!(o, NlbOutput::ToClient { .. }));
    assert_eq!(b.data(), udp(FRONT_A, 80, CLIENT, 4444).as_slice());
    let (o, _) = client(&mut n, &tcp(CLIENT, 4444, FRONT_A, 80, flags::SYN, 1), 6);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::NoListener));
    // spec 9.2: after 120 s idle the datagram is a new flow.
    let (o, _) = client(&mut n, &udp(CLIENT, 4444, FRONT_A, 80), 6 + 121);
    assert!(matches!(
        o,
        NlbOutput::ToTarget {
            record: Some(_),
            ..
        }
    ));
    assert_eq!(n.counters().new_flows, 2);
}

// spec 9.1: a TCP_UDP listener takes both protocols on its port; other
// ports and other addresses match nothing.
#[test]
fn tcp_udp_listener_takes_both_protocols() {
    let mut n = nlb(TargetType::Ip, Protocol::TcpUdp, true);
    let (o, _) = client(&mut n, &udp(CLIENT, 1, FRONT_A, 80), 0);
    assert!(matches!(o, NlbOutput::ToTarget { .. }));
    let (o, b) = client(&mut n, &tcp(CLIENT, 1, FRONT_A, 80, flags::SYN, 1), 0);
    // TCP_UDP keeps the client's address for IP targets (spec 9.3).
    assert_eq!(
        b.data(),
        tcp(CLIENT, 1, chosen(o), 8080, flags::SYN, 1).as_slice()
    );
    let (o, _) = client(&mut n, &udp(CLIENT, 1, FRONT_A, 81), 0);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::NoListener));
    let (o, _) = client(&mut n, &udp(CLIENT, 1, CLIENT, 80), 0);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::NoListener));
    assert_eq!(n.drops(NlbDrop::NoListener), 2);
}

// Issue 17, failover: the buddy installs each new flow's record; when the
// owner dies and the buddy takes over, the flow continues to the same
// target with the same translation, and a RST from the target is counted.
#[test]
fn replication_and_takeover_continue_a_flow_on_its_target() {
    let mut owner = nlb(TargetType::Ip, Protocol::Tcp, true);
    let mut c = config(TargetType::Ip, Protocol::Tcp, true);
    c.node = 1;
    let mut buddy = Nlb::new(c).unwrap();
    let (o, _) = client(
        &mut owner,
        &tcp(CLIENT, 7000, FRONT_A, 80, flags::SYN, 5),
        0,
    );
    let t = chosen(o);
    let record = o_record(o).unwrap();
    let wire = record.encode();
    let decoded = FlowRecord::decode(&wire).unwrap();
    assert_eq!(decoded, record);
    buddy.replica(&decoded, 0).unwrap();
    assert_eq!((buddy.replicas(), buddy.active_flows()), (1, 0));
    // Before the takeover, the buddy hands the packet to its owner.
    let (o, _) = client(
        &mut buddy,
        &tcp(CLIENT, 7000, FRONT_A, 80, flags::ACK, 6),
        1,
    );
    assert_eq!(o, NlbOutput::Forward { place: 0 });
    let mut b = PacketBuf::from_frame(&tcp(CLIENT, 7000, FRONT_A, 80, flags::ACK, 6));
    assert_eq!(
        buddy.from_client_forwarded(&mut b, 1),
        NlbOutput::Drop(NlbDrop::NotOwner)
    );
    buddy.take_over(0, 2);
    assert_eq!((buddy.replicas(), buddy.active_flows()), (0, 1));
    let (o, b) = client(
        &mut buddy,
        &tcp(CLIENT, 7000, FRONT_A, 80, flags::ACK, 6),
        2,
    );
    assert_eq!(chosen(o), t);
    assert_eq!(
        b.data(),
        tcp(record.source, record.sport, t, 8080, flags::ACK, 6).as_slice()
    );
    let (o, _) = reply(
        &mut buddy,
        &tcp(t, 8080, record.source, record.sport, flags::RST, 0),
        3,
    );
    assert!(matches!(o, NlbOutput::ToClient { client: CLIENT, .. }));
    assert_eq!(buddy.counters().tcp_target_resets, 1);
    // A delete forgets a replica; the owner's own flows refuse records.
    let del = FlowRecord {
        kind: RecordKind::Delete,
        ..record
    };
    assert!(owner.replica(&del, 4).is_err());
}

// Malformed input and other protocols are counted drops, never a panic.
#[test]
fn garbage_is_a_counted_drop() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    for bad in [
        &b""[..],
        &[0x45, 0, 0][..],
        &[0x60; 40][..],
        &[0x45; 60][..],
    ] {
        let (o, _) = client(&mut n, bad, 0);
        assert!(matches!(o, NlbOutput::Drop(_)), "{o:?}");
        let (o, _) = reply(&mut n, bad, 0);
        assert!(matches!(o, NlbOutput::Drop(_)), "{o:?}");
    }
    // The empty packet and the IPv6 one, from each side.
    assert_eq!(n.drops(NlbDrop::NotIpv4), 4);
    let total: u64 = NlbDrop::ALL.iter().map(|&d| n.drops(d)).sum();
    assert_eq!(total, 8);
    // A reply for no flow.
    let (o, _) = reply(&mut n, &udp(T[0], 8080, CLIENT, 9), 0);
    assert_eq!(o, NlbOutput::Drop(NlbDrop::NoFlow));
}

// A full table is a counted drop.
#[test]
fn a_full_table_is_a_counted_drop() {
    let mut c = config(TargetType::Instance, Protocol::Tcp, true);
    c.capacity = 2;
    let mut n = Nlb::new(c).unwrap();
    for i in 0..2 {
        assert!(matches!(
            syn_to(&mut n, 100 + i, FRONT_A, 1, 0),
            NlbOutput::ToTarget { .. }
        ));
    }
    assert_eq!(
        syn_to(&mut n, 200, FRONT_A, 1, 0),
        NlbOutput::Drop(NlbDrop::TableFull)
    );
    // Idle flows go after the TCP idle timeout (spec 9.6), freeing room.
    assert_eq!(n.expire(351, 100), 2);
    assert_eq!(n.active_flows(), 0);
    assert_eq!(n.counters().idle_timeouts, 2);
}

proptest! {
    // Replication records from the wire: any bytes decode to a record or
    // an error, and a record round-trips.
    #[test]
    fn records_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
        if let Ok(r) = FlowRecord::decode(&bytes) {
            prop_assert_eq!(FlowRecord::decode(&r.encode()), Ok(r));
            let _ = n.replica(&r, 0);
        }
        let mut b = PacketBuf::from_frame(&bytes);
        let _ = n.from_client(&mut b, 0);
        let mut b = PacketBuf::from_frame(&bytes);
        let _ = n.from_target(&mut b, 0);
    }
}

// spec 9.2: the SYN's sequence number is part of the flow. A client that
// closed and connects again from the same port (another ISN) opens a new
// connection, which picks its target afresh (here: not the target that
// went unhealthy meanwhile); a retransmitted SYN (same ISN) keeps the flow.
#[test]
fn a_new_syn_on_a_reused_tuple_is_a_new_connection() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let first = chosen(syn_to(&mut n, 6000, FRONT_A, 1234, 0));
    // Retransmitted: the same flow, no new record.
    let again = syn_to(&mut n, 6000, FRONT_A, 1234, 1);
    assert_eq!(chosen(again), first);
    assert!(matches!(again, NlbOutput::ToTarget { record: None, .. }));
    assert_eq!(n.counters().new_flows, 1);
    // The first target goes unhealthy; the client reconnects from the same
    // port with a new ISN.
    let slot = T.iter().position(|t| *t == first).unwrap();
    assert!(n.set_health(0, slot, Health::Unhealthy));
    let reopened = syn_to(&mut n, 6000, FRONT_A, 99_999, 2);
    assert!(matches!(
        reopened,
        NlbOutput::ToTarget {
            record: Some(_),
            ..
        }
    ));
    assert_ne!(
        chosen(reopened),
        first,
        "a new connection avoids the unhealthy target"
    );
    assert_eq!(n.counters().new_flows, 2);
    assert_eq!(n.active_flows(), 1);
}

// A client reuses its port through the other front, its address kept,
// and lands on the target of its last connection (which it closed): the
// new connection takes the tuple towards the target over, and the
// target's replies go back as the new front, on this node and on the
// buddy that holds the old flow's replica.
#[test]
fn one_port_through_two_fronts_to_one_target_is_the_newer_connection() {
    let mut n = nlb(TargetType::Instance, Protocol::Tcp, true);
    let mut c = config(TargetType::Instance, Protocol::Tcp, true);
    c.node = 1;
    let mut buddy = Nlb::new(c).unwrap();
    let (o, _) = client(&mut n, &tcp(CLIENT, 41000, FRONT_A, 80, flags::SYN, 1), 0);
    let first = chosen(o);
    buddy.replica(&o_record(o).unwrap(), 0).unwrap();
    // Through FRONT_B until the hash picks the same target.
    let mut isn = 1u32;
    let record = loop {
        isn += 7919;
        let (o, _) = client(&mut n, &tcp(CLIENT, 41000, FRONT_B, 80, flags::SYN, isn), 1);
        assert!(
            matches!(o, NlbOutput::ToTarget { .. }),
            "a reused port through the other front is not dropped: {o:?}"
        );
        if chosen(o) == first {
            break o_record(o).unwrap();
        }
    };
    assert!(n.counters().tuples_taken_over >= 1);
    assert_eq!(n.drops(NlbDrop::PortAllocation), 0);
    let (o, b) = reply(
        &mut n,
        &tcp(first, 8080, CLIENT, 41000, flags::SYN | flags::ACK, 5),
        2,
    );
    assert!(matches!(o, NlbOutput::ToClient { .. }), "{o:?}");
    assert_eq!(
        b.data(),
        tcp(FRONT_B, 80, CLIENT, 41000, flags::SYN | flags::ACK, 5).as_slice(),
        "the reply comes from the new connection's front"
    );
    // The buddy's replica of the old flow gives way to the new record.
    buddy.replica(&record, 2).unwrap();
}

// The buddy follows a reopened connection: the owner's record of the new
// connection on the tuple replaces the replica of the old one, and the
// record's SYN sequence number survives the wire.
#[test]
fn a_reopened_connections_record_replaces_the_buddys_replica() {
    let mut owner = nlb(TargetType::Ip, Protocol::Tcp, true);
    let mut c = config(TargetType::Ip, Protocol::Tcp, true);
    c.node = 1;
    let mut buddy = Nlb::new(c).unwrap();
    let mut isn = 1u32;
    let (o, _) = client(
        &mut owner,
        &tcp(CLIENT, 7100, FRONT_A, 80, flags::SYN, isn),
        0,
    );
    let (first, first_record) = (chosen(o), o_record(o).unwrap());
    assert_eq!(first_record.syn_seq, 1);
    buddy
        .replica(&FlowRecord::decode(&first_record.encode()).unwrap(), 0)
        .unwrap();
    // Reopen until the new connection lands on another target.
    let second = loop {
        isn += 7919;
        let (o, _) = client(
            &mut owner,
            &tcp(CLIENT, 7100, FRONT_A, 80, flags::SYN, isn),
            1,
        );
        let r = o_record(o).unwrap();
        assert_eq!(r.syn_seq, isn);
        buddy
            .replica(&FlowRecord::decode(&r.encode()).unwrap(), 1)
            .unwrap();
        if chosen(o) != first {
            break chosen(o);
        }
    };
    assert_eq!(buddy.replicas(), 1);
    buddy.take_over(0, 2);
    let (o, _) = client(
        &mut buddy,
        &tcp(CLIENT, 7100, FRONT_A, 80, flags::ACK, isn + 1),
        2,
    );
    assert_eq!(chosen(o), second);
}
