//! A node's gateways, sans-IO, two nodes of one shard wired by hand: the
//! path of a flow from a host through a node to an edge and back, the
//! buddy's record before the first packet leaves, failover to the buddy,
//! a node that rejoins and gets its flows back, and forwarding a flow met
//! on the wrong node (issue 16, DESIGN.md "Hyperplane").

mod common;

use core::net::{IpAddr, Ipv4Addr};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_hyperplane::nat::{NatDrop, owner_of};
use openvpc_hyperplane::serve::{Neighbor, NodeDrop, PeerVerdict, Verdict, gateway_mac};
use openvpc_hyperplane::wire::{Body, Message};
use openvpc_model::hyperplane::{NatAssignment, NatConnectivity, NatRoute};
use openvpc_packet::MacAddr;
use openvpc_packet::geneve::GeneveHeader;
use openvpc_packet::tcp::flags;

use common::{ROUTER, VNI, deliver, geneve, inner, ip, logged_eni, members, node, node_ip, tcp};

const GW: &str = "nat-0aa";
const NAT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
const INST: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const INST_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 10]);

fn host() -> IpAddr {
    ip("10.99.0.3")
}

fn edge() -> IpAddr {
    ip("10.254.0.2")
}

/// The gateway's assignment, with the places' liveness given.
fn assignment(alive: [bool; 2]) -> NatAssignment {
    NatAssignment {
        gateway_id: GW.into(),
        account_id: "123".into(),
        vpc_id: "vpc-1".into(),
        vni: VNI,
        subnet_id: "subnet-1".into(),
        connectivity: NatConnectivity::Public,
        private_ips: vec![NAT_IP],
        public_ips: vec![Ipv4Addr::new(198, 51, 100, 7)],
        shard: members(alive),
        edges: vec![edge()],
        routes: Vec::new(),
        flow_log: None,
    }
}

/// From the instance, through its host, to the gateway.
fn from_host(fl: u8, sport: u16) -> PacketBuf {
    geneve(
        gateway_mac(GW),
        INST_MAC,
        &tcp(INST, sport, SERVER, 80, fl, 1),
    )
}

/// From the server, through an edge (which mapped the EIP back to the
/// gateway's private address), to the gateway.
fn from_edge(port: u16, fl: u8) -> PacketBuf {
    geneve(ROUTER, ROUTER, &tcp(SERVER, 80, NAT_IP, port, fl, 1))
}

#[test]
fn a_flow_crosses_the_node_with_its_record_at_the_buddy_first() {
    let (mut a, mut b) = (node("hp1"), node("hp2"));
    a.configure(&[assignment([true, true])], 0);
    b.configure(&[assignment([true, true])], 0);
    assert_eq!(a.serving(), vec![GW.to_string()]);
    // Each asked the other to join; nothing to hand back yet.
    deliver(&mut a, node_ip("hp1"), &mut b, 0);
    deliver(&mut b, node_ip("hp2"), &mut a, 0);
    a.take_outbox();
    b.take_outbox();

    let mut syn = from_host(flags::SYN, 40_000);
    let v = a.receive(&mut syn, host(), 1);
    let Verdict::Send {
        to,
        after: Some(seq),
        ..
    } = v
    else {
        panic!("{v:?}")
    };
    assert_eq!(to, edge(), "a public gateway's packets go to an edge");
    let (src, port, dst, dport) = inner(&syn);
    assert_eq!(
        (src, dst, dport),
        (IpAddr::V4(NAT_IP), IpAddr::V4(SERVER), 80)
    );
    assert_eq!(owner_of(port, 2), 0, "node 0 hands out its own slice");
    // The record (asking for an acknowledgement) and the instance's host
    // went to the buddy; its answer acknowledges the packet's sequence.
    let outbox = a.take_outbox();
    assert!(outbox.iter().all(|(to, _)| *to == node_ip("hp2")));
    assert!(outbox.iter().any(|(_, m)| matches!(
        &m.body,
        Body::Replicate { ack: true, records } if records.len() == 1
    )));
    let mut bytes = Vec::new();
    let mut scratch = PacketBuf::default();
    let mut acked = None;
    for (_, m) in outbox {
        m.encode(&mut bytes);
        if let PeerVerdict::Done = b.peer(&bytes, node_ip("hp1"), 1, &mut scratch) {}
    }
    for (_, m) in b.take_outbox() {
        m.encode(&mut bytes);
        if let PeerVerdict::Acked(s) = a.peer(&bytes, node_ip("hp2"), 1, &mut scratch) {
            acked = Some(s);
        }
    }
    assert_eq!(acked, Some(seq));

    // The reply comes back from the edge and goes to the instance's host.
    let mut synack = from_edge(port, flags::SYN | flags::ACK);
    let v = a.receive(&mut synack, edge(), 1);
    assert!(
        matches!(v, Verdict::Send { to, after: None, .. } if to == host()),
        "{v:?}"
    );
    assert_eq!(
        inner(&synack),
        (IpAddr::V4(SERVER), 80, IpAddr::V4(INST), 40_000)
    );
    let stats = a.gateway_stats();
    assert_eq!(stats[0].active, 1);
    assert_eq!(stats[0].counters.connections_established, 1);
    assert_eq!(b.gateway_stats()[0].replicas, 1);
}

#[test]
fn the_buddy_serves_a_dead_node_and_hands_its_flows_back_when_it_returns() {
    let (mut a, mut b) = (node("hp1"), node("hp2"));
    a.configure(&[assignment([true, true])], 0);
    b.configure(&[assignment([true, true])], 0);
    a.take_outbox();
    b.take_outbox();
    let mut syn = from_host(flags::SYN, 40_000);
    a.receive(&mut syn, host(), 1);
    let (_, port, _, _) = inner(&syn);
    deliver(&mut a, node_ip("hp1"), &mut b, 1);
    b.take_outbox();

    // hp1 dies: the region says so, and hp2 takes its slice over.
    b.configure(&[assignment([false, true])], 5);
    assert_eq!(b.gateway_stats()[0].serves, vec![0, 1]);
    assert_eq!(b.counters().takeovers, 1);
    // The edge now sends the reply to hp2 (the buddy serves the slice),
    // and the hosts send the instance's packets there too.
    let mut ack = from_edge(port, flags::ACK);
    let v = b.receive(&mut ack, edge(), 6);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == host()),
        "{v:?}"
    );
    let mut data = from_host(flags::ACK, 40_000);
    let v = b.receive(&mut data, host(), 6);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == edge()),
        "{v:?}"
    );
    assert_eq!(inner(&data).1, port, "the same translation as hp1's");

    // hp1 comes back empty, joins, and asks the shard.
    let mut a = node("hp1");
    a.configure(&[assignment([true, true])], 100);
    // Until its flows arrive, it drops (never resets) what it does not know.
    let mut early = from_host(flags::ACK, 40_000);
    assert_eq!(a.receive(&mut early, host(), 100), Verdict::Done);
    assert_eq!(a.gateway_stats()[0].drop_count(NatDrop::Joining), 1);
    deliver(&mut a, node_ip("hp1"), &mut b, 100);
    b.configure(&[assignment([true, true])], 100);
    deliver(&mut b, node_ip("hp2"), &mut a, 100);
    assert_eq!(a.counters().adopted, 1);
    assert_eq!(b.gateway_stats()[0].serves, vec![1]);
    let mut again = from_host(flags::ACK, 40_000);
    let v = a.receive(&mut again, host(), 101);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == edge()),
        "{v:?}"
    );
    assert_eq!(inner(&again).1, port);
    // The instance's host came with the flow: replies reach it.
    let mut reply = from_edge(port, flags::ACK);
    let v = a.receive(&mut reply, edge(), 101);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == host()),
        "{v:?}"
    );
}

#[test]
fn a_flow_met_on_the_wrong_node_is_forwarded_once() {
    let (mut a, mut b) = (node("hp1"), node("hp2"));
    a.configure(&[assignment([true, true])], 0);
    b.configure(&[assignment([true, true])], 0);
    a.take_outbox();
    b.take_outbox();
    let mut syn = from_host(flags::SYN, 40_000);
    a.receive(&mut syn, host(), 1);
    let (_, port, _, _) = inner(&syn);
    deliver(&mut a, node_ip("hp1"), &mut b, 1);
    b.take_outbox();
    // The host's pick moved to hp2 (say, a node set change): hp2 holds only
    // a replica, so it forwards the packet to hp1, untouched.
    let mut data = from_host(flags::ACK, 40_000);
    assert_eq!(b.receive(&mut data, host(), 2), Verdict::Done);
    assert_eq!(b.counters().forwarded, 1);
    let out = b.take_outbox();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, node_ip("hp1"));
    let mut bytes = Vec::new();
    out[0].1.encode(&mut bytes);
    let mut buf = PacketBuf::default();
    let v = a.peer(&bytes, node_ip("hp2"), 2, &mut buf);
    let PeerVerdict::Packet(Verdict::Send { to, .. }) = v else {
        panic!("{v:?}")
    };
    assert_eq!(to, edge());
    assert_eq!(inner(&buf).1, port, "translated once, by its owner");
    // A forwarded packet whose flow is not at the receiver either is a
    // counted drop, not forwarded again.
    let stray = Message {
        seq: 9,
        gateway: GW.into(),
        body: Body::Forward {
            from: host(),
            datagram: from_edge(port + 1, flags::ACK).data().to_vec(),
        },
    };
    stray.encode(&mut bytes);
    assert_eq!(
        b.peer(&bytes, node_ip("hp1"), 3, &mut buf),
        PeerVerdict::Packet(Verdict::Done)
    );
    assert!(b.take_outbox().is_empty(), "never forwarded twice");
}

#[test]
fn what_the_node_cannot_place_is_a_counted_drop() {
    let mut a = node("hp1");
    a.configure(&[assignment([true, true])], 0);
    let mut junk = PacketBuf::from_frame(&[1, 2, 3]);
    assert_eq!(a.receive(&mut junk, host(), 0), Verdict::Done);
    assert_eq!(a.drops(NodeDrop::Malformed), 1);
    // Another VPC's frame.
    let mut other = from_host(flags::SYN, 1);
    other.data_mut()[4..7].copy_from_slice(&[0, 0, 1]);
    assert_eq!(a.receive(&mut other, host(), 0), Verdict::Done);
    assert_eq!(a.drops(NodeDrop::UnknownGateway), 1);
    // A reply for an instance the node never saw.
    let mut reply = from_edge(20_000, flags::ACK);
    assert_eq!(a.receive(&mut reply, edge(), 0), Verdict::Done);
    assert_eq!(a.gateway_stats()[0].drop_count(NatDrop::NoTranslation), 1);
    // No edge: the VPC lost its internet gateway.
    let mut lone = assignment([true, true]);
    lone.edges.clear();
    a.configure(&[lone], 0);
    let mut syn = from_host(flags::SYN, 2);
    assert_eq!(a.receive(&mut syn, host(), 0), Verdict::Done);
    assert_eq!(a.drops(NodeDrop::NoEdge), 1);
    // Garbage from a peer.
    let mut buf = PacketBuf::default();
    assert_eq!(
        a.peer(&[0xff; 9], node_ip("hp2"), 0, &mut buf),
        PeerVerdict::Done
    );
    assert_eq!(a.drops(NodeDrop::PeerMalformed), 1);
    // A gateway no longer assigned is gone.
    a.configure(&[], 0);
    assert!(a.serving().is_empty());
}

// A private gateway (spec 6.1): translated to its private address, then on
// by its subnet's routes (here a peering, the peer's VNI) to the host the
// mapping service names; the peer's reply comes back to the gateway's
// address and, on a node that does not own its port, goes to the one that
// does.
#[test]
fn a_private_gateway_forwards_by_its_routes_and_replies_find_the_port_owner() {
    const PEER_VNI: u32 = 5151;
    let peer = Ipv4Addr::new(10, 20, 0, 5);
    let peer_mac = MacAddr([2, 0, 0, 0, 2, 5]);
    let peer_host = ip("10.99.0.4");
    let private = || {
        let mut a = assignment([true, true]);
        a.connectivity = NatConnectivity::Private;
        a.edges.clear();
        a.routes = vec![
            NatRoute {
                destination: "10.0.0.0/16".parse().unwrap(),
                vni: VNI,
            },
            NatRoute {
                destination: "10.20.0.0/16".parse().unwrap(),
                vni: PEER_VNI,
            },
        ];
        a
    };
    let (mut a, mut b) = (node("hp1"), node("hp2"));
    a.configure(&[private()], 0);
    b.configure(&[private()], 0);
    a.take_outbox();
    b.take_outbox();
    let syn = tcp(INST, 40_000, peer, 22, flags::SYN, 1);
    let mut buf = geneve(gateway_mac(GW), INST_MAC, &syn);
    let v = a.receive(&mut buf, host(), 1);
    assert_eq!(
        v,
        Verdict::Resolve {
            vni: PEER_VNI,
            ip: peer,
            via: None,
        }
    );
    let n = Neighbor {
        host: peer_host,
        mac: peer_mac,
    };
    a.mapped(PEER_VNI, peer, Some(n), 1);
    let v = a.deliver(&mut buf, PEER_VNI, n, None);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == peer_host),
        "{v:?}"
    );
    let g = GeneveHeader::view(buf.data()).unwrap();
    assert_eq!(g.header.vni(), PEER_VNI, "on in the peer VPC's VNI");
    let (src, port, dst, _) = inner(&buf);
    assert_eq!((src, dst), (IpAddr::V4(NAT_IP), IpAddr::V4(peer)));
    // A later packet needs no lookup.
    let mut ack = geneve(
        gateway_mac(GW),
        INST_MAC,
        &tcp(INST, 40_000, peer, 22, flags::ACK, 1),
    );
    assert!(matches!(a.receive(&mut ack, host(), 2), Verdict::Send { to, .. } if to == peer_host));
    deliver(&mut a, node_ip("hp1"), &mut b, 2);
    b.take_outbox();
    // The peer's reply reaches hp2 (the mapping service names one node):
    // the port is hp1's slice, so hp2 forwards it there, untouched.
    let reply = tcp(peer, 22, NAT_IP, port, flags::SYN | flags::ACK, 1);
    let mut r = geneve(gateway_mac(GW), peer_mac, &reply);
    assert_eq!(b.receive(&mut r, peer_host, 2), Verdict::Done);
    assert_eq!(b.counters().forwarded, 1);
    let out = b.take_outbox();
    assert_eq!(out[0].0, node_ip("hp1"));
    let mut bytes = Vec::new();
    out[0].1.encode(&mut bytes);
    let mut back = PacketBuf::default();
    let v = a.peer(&bytes, node_ip("hp2"), 2, &mut back);
    assert!(
        matches!(v, PeerVerdict::Packet(Verdict::Send { to, .. }) if to == host()),
        "{v:?}"
    );
    assert_eq!(
        inner(&back),
        (IpAddr::V4(peer), 22, IpAddr::V4(INST), 40_000)
    );
    // No route: dropped and counted.
    let mut lost = geneve(
        gateway_mac(GW),
        INST_MAC,
        &tcp(INST, 1, SERVER, 80, flags::SYN, 1),
    );
    assert_eq!(a.receive(&mut lost, host(), 3), Verdict::Done);
    assert_eq!(a.drops(NodeDrop::NoRoute), 1);
    assert_eq!(
        a.gateway_stats()[0].packets_dropped(),
        1,
        "the gateway's PacketsDropCount counts it"
    );
}

/// Issue 18 (spec 8.2): a gateway whose ENI a flow log covers hands out
/// what it translated as records on that ENI, each direction in and out;
/// one nobody logs counts nothing.
#[test]
fn a_logged_gateway_hands_out_records_of_its_eni() {
    use openvpc_dataplane::policy::Way;
    let mut a = node("hp1");
    a.configure(&[assignment([true, false])], 0);
    let mut syn = from_host(flags::SYN, 40_001);
    a.receive(&mut syn, host(), 1);
    let mut records = Vec::new();
    a.harvest_flow_logs(&mut records);
    assert!(records.is_empty(), "not logged: nothing counted");

    let mut logged = assignment([true, false]);
    logged.flow_log = Some(logged_eni("eni-0nat", NAT_IP));
    a.configure(&[logged], 2);
    assert_eq!(a.logged_enis().len(), 1);
    let mut syn = from_host(flags::SYN, 40_002);
    a.receive(&mut syn, host(), 3);
    let (_, port, _, _) = inner(&syn);
    let mut synack = from_edge(port, flags::SYN | flags::ACK);
    a.receive(&mut synack, edge(), 3);
    a.harvest_flow_logs(&mut records);
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(records.iter().all(|r| r.interface_id == "eni-0nat"));
    let from_instance = records
        .iter()
        .find(|r| r.direction == Way::Ingress && r.src == IpAddr::V4(INST))
        .unwrap();
    assert_eq!(
        (from_instance.src_port, from_instance.tcp_flags),
        (40_002, 2)
    );
    let translated_back = records
        .iter()
        .find(|r| r.direction == Way::Egress && r.dst == IpAddr::V4(INST))
        .unwrap();
    assert_eq!(translated_back.src, IpAddr::V4(SERVER));
    assert_eq!(translated_back.tcp_flags, 18, "SYN-ACK");
    assert_eq!(translated_back.start_ms, 3_000);
    records.clear();
    a.harvest_flow_logs(&mut records);
    assert!(records.is_empty(), "a harvest starts the counts again");
}
