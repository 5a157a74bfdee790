//! A host's side of a network load balancer (issue 17): a client's packets
//! to the load balancer's address go to the node its place picks, even
//! inside the client's subnet, and ARP for that address is answered; a
//! target's replies to a flow that came through a node (the Geneve
//! return-via option) go back to the node now serving that place, not on
//! by the client's address, while the target's network ACL still applies.

#![allow(clippy::unwrap_used)]

use core::net::IpAddr;

mod common;

use common::*;
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::mapping::{MappingEntry, StaticMapping};
use openvpc_dataplane::policy::NetworkAcl;
use openvpc_dataplane::route::{GatewayKind, Route, RouteTarget, gateway_mac};
use openvpc_dataplane::router::{Output, Router, RouterConfig};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::arp::{ArpOp, ArpRepr};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr, ReturnVia};
use openvpc_packet::tcp::flags;

const VPC: &str = "10.0.0.0/16";
const VNI: u32 = 100;
const LB: &str = "elb-0123456789abcdef";
const FRONT: &str = "10.0.1.50";
const CLIENT_HOST: &str = "192.0.2.1";
const THIS_HOST: &str = "192.0.2.100";

fn nodes() -> Vec<IpAddr> {
    (1..=4).map(|i| addr(&format!("10.254.0.{i}"))).collect()
}

/// One host with the client `c` (10.0.1.10) and the target `t`
/// (10.0.1.20, in the same subnet), whose table holds the load balancer's
/// host route; `acl` is the subnet's. The client's own host is elsewhere
/// for the target's replies (the mapping says so).
fn host(acl: NetworkAcl) -> Router<StaticMapping> {
    let table = routes(
        VPC,
        vec![Route {
            destination: net(&format!("{FRONT}/32")),
            target: RouteTarget::gateway(GatewayKind::LoadBalancer, LB, nodes()).unwrap(),
        }],
    );
    let s = subnet("subnet-a", "10.0.1.0/24", acl, table);
    let mut mapping = StaticMapping::default();
    mapping.insert(
        VNI,
        addr("10.0.9.9"),
        MappingEntry {
            underlay: addr(CLIENT_HOST),
            eni: "eni-far".into(),
            mac: mac(9),
        },
    );
    for (ip, eni, n) in [("10.0.1.10", "eni-c", 1), ("10.0.1.20", "eni-t", 2)] {
        mapping.insert(
            VNI,
            addr(ip),
            MappingEntry {
                underlay: addr(THIS_HOST),
                eni: eni.into(),
                mac: mac(n),
            },
        );
    }
    let mut r = Router::new(RouterConfig::new(addr(THIS_HOST)), mapping);
    let open = group("sg-open", vec![allow(TrafficMatch::ALL, "0.0.0.0/0")]);
    r.upsert_eni(eni(
        "eni-c",
        1,
        "10.0.1.10",
        &s,
        VNI,
        VPC,
        vec![open.clone()],
    ))
    .unwrap();
    r.upsert_eni(eni("eni-t", 2, "10.0.1.20", &s, VNI, VPC, vec![open]))
        .unwrap();
    r
}

/// `frame` as a datagram from a node, with the return-via option when given.
fn from_node(frame: &[u8], via: Option<ReturnVia>) -> PacketBuf {
    let mut header = vec![0u8; GeneveHeader::LEN];
    GeneveRepr::ethernet(VNI).emit(&mut header).unwrap();
    if let Some(via) = via {
        header[0] = (ReturnVia::LEN / 4) as u8;
        header.extend_from_slice(&via.option());
    }
    header.extend_from_slice(frame);
    PacketBuf::from_frame(&header)
}

fn inner_dst_mac(buf: &PacketBuf) -> openvpc_packet::MacAddr {
    let g = GeneveHeader::view(buf.data()).unwrap();
    openvpc_packet::MacAddr(g.payload[..6].try_into().unwrap())
}

#[test]
fn a_client_reaches_the_load_balancer_through_its_node_even_in_its_own_subnet() {
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let c = r.eni_index("eni-c").unwrap();
    let mut buf = PacketBuf::from_frame(&syn(1, "10.0.1.10", 40000, FRONT, 80));
    match r.from_instance(c, &mut buf, 1) {
        Output::Underlay { dst, .. } => assert!(nodes().contains(&dst), "{dst}"),
        other => panic!("expected the node, got {other:?}"),
    }
    assert_eq!(inner_dst_mac(&buf), gateway_mac(LB));
}

#[test]
fn arp_for_the_load_balancers_address_is_answered_with_its_mac() {
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let c = r.eni_index("eni-c").unwrap();
    let request = ArpRepr {
        op: ArpOp::Request,
        sender_mac: mac(1),
        sender_ip: ip("10.0.1.10"),
        target_mac: openvpc_packet::MacAddr::ZERO,
        target_ip: ip(FRONT),
    };
    let mut frame = vec![0u8; 42];
    let eth = openvpc_packet::ethernet::EthernetRepr {
        dst: openvpc_packet::MacAddr::BROADCAST,
        src: mac(1),
        vlan: None,
        ethertype: openvpc_packet::ethernet::ethertype::ARP,
    };
    let at = eth.emit(&mut frame).unwrap();
    request.emit(&mut frame[at..]).unwrap();
    let mut buf = PacketBuf::from_frame(&frame);
    assert_eq!(r.from_instance(c, &mut buf, 1), Output::Instance(c));
    let (_, payload) = openvpc_packet::ethernet::EthernetRepr::parse(buf.data()).unwrap();
    let reply = ArpRepr::parse(payload).unwrap();
    assert_eq!(reply.sender_mac, gateway_mac(LB));
}

#[test]
fn a_targets_reply_goes_back_to_the_node_serving_the_flows_place() {
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let t = r.eni_index("eni-t").unwrap();
    // The client is on another host (10.0.9.9); its address is preserved.
    let via = ReturnVia {
        front: ip(FRONT),
        place: 2,
    };
    let mut buf = from_node(&syn(9, "10.0.9.9", 40000, "10.0.1.20", 80), Some(via));
    assert_eq!(r.from_underlay(&mut buf, 1), Output::Instance(t));
    let mut reply = PacketBuf::from_frame(&tcp(
        2,
        "10.0.1.20",
        80,
        "10.0.9.9",
        40000,
        flags::SYN | flags::ACK,
    ));
    match r.from_instance(t, &mut reply, 1) {
        Output::Underlay { dst, .. } => assert_eq!(dst, nodes()[2]),
        other => panic!("expected place 2's node, got {other:?}"),
    }
    assert_eq!(inner_dst_mac(&reply), gateway_mac(LB));
    // Later replies take the compiled hop: the same node.
    let mut ack = PacketBuf::from_frame(&tcp(2, "10.0.1.20", 80, "10.0.9.9", 40000, flags::ACK));
    assert!(matches!(
        r.from_instance(t, &mut ack, 2),
        Output::Underlay { dst, .. } if dst == nodes()[2]
    ));
}

#[test]
fn without_the_option_a_reply_follows_the_client_address() {
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let t = r.eni_index("eni-t").unwrap();
    let mut buf = from_node(&syn(9, "10.0.9.9", 40000, "10.0.1.20", 80), None);
    assert_eq!(r.from_underlay(&mut buf, 1), Output::Instance(t));
    let mut reply = PacketBuf::from_frame(&tcp(
        2,
        "10.0.1.20",
        80,
        "10.0.9.9",
        40000,
        flags::SYN | flags::ACK,
    ));
    assert!(matches!(
        r.from_instance(t, &mut reply, 1),
        Output::Underlay { dst, .. } if dst == addr(CLIENT_HOST)
    ));
}

#[test]
fn a_pinned_reply_still_meets_the_subnets_outbound_acl() {
    // spec 4: network ACLs are stateless; the pin changes where a reply
    // goes, not whether the ACL lets it out.
    let all = |n| nacl_rule(n, TrafficMatch::ALL, "0.0.0.0/0", RuleAction::Allow);
    let acl = NetworkAcl::new(
        "acl-a",
        vec![all(100)],
        vec![
            nacl_rule(
                1,
                TrafficMatch::tcp(40000, 40000),
                "0.0.0.0/0",
                RuleAction::Deny,
            ),
            all(100),
        ],
    );
    let mut r = host(acl);
    let t = r.eni_index("eni-t").unwrap();
    let via = ReturnVia {
        front: ip(FRONT),
        place: 0,
    };
    let mut buf = from_node(&syn(9, "10.0.9.9", 40000, "10.0.1.20", 80), Some(via));
    assert_eq!(r.from_underlay(&mut buf, 1), Output::Instance(t));
    let mut reply = PacketBuf::from_frame(&tcp(
        2,
        "10.0.1.20",
        80,
        "10.0.9.9",
        40000,
        flags::SYN | flags::ACK,
    ));
    assert_eq!(
        r.from_instance(t, &mut reply, 1),
        Output::Drop(DropReason::NaclDeny)
    );
}

#[test]
fn a_syn_on_a_closed_tuple_opens_a_new_connection_even_after_a_policy_change() {
    // A SYN the old connection refuses (here the other side opens on the
    // same tuple) gives the old, closed entry up and opens a new flow; it
    // did on the fast path, and must too when the ENI's policy was
    // compiled again since (the slow path), not be dropped as invalid.
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let (c, t) = (r.eni_index("eni-c").unwrap(), r.eni_index("eni-t").unwrap());
    let (ci, ti) = ("10.0.1.10", "10.0.1.20");
    let send = |r: &mut Router<StaticMapping>, from: u16, fl: u8| {
        let frame = if from == c {
            tcp(1, ci, 40000, ti, 80, fl)
        } else {
            tcp(2, ti, 80, ci, 40000, fl)
        };
        let mut b = PacketBuf::from_frame(&frame);
        r.from_instance(from, &mut b, 1)
    };
    for (from, fl) in [
        (c, flags::SYN),
        (t, flags::SYN | flags::ACK),
        (c, flags::ACK),
        (t, flags::FIN | flags::ACK),
        (c, flags::FIN | flags::ACK),
        (t, flags::ACK),
    ] {
        assert!(
            matches!(send(&mut r, from, fl), Output::Instance(_)),
            "{fl:#x}"
        );
    }
    r.mappings_changed();
    assert_eq!(send(&mut r, t, flags::SYN), Output::Instance(c));
    assert_eq!(r.drops().get(DropReason::ConntrackInvalid), 0);
}

#[test]
fn a_new_connection_on_a_closed_tuple_replies_through_its_own_node() {
    // A client reaching one target through two of the load balancer's
    // nodes (two fronts, its own address kept) reuses a port: the new
    // connection's replies go to the node it came through, not to the one
    // the closed connection on the same tuple used (its SYN-ACK would be
    // lost there and the client would time out).
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let t = r.eni_index("eni-t").unwrap();
    let via = |place| ReturnVia {
        front: ip(FRONT),
        place,
    };
    let client = |fl: u8, place| {
        from_node(
            &tcp(9, "10.0.9.9", 40000, "10.0.1.20", 80, fl),
            Some(via(place)),
        )
    };
    let reply = |r: &mut Router<StaticMapping>, fl: u8, now| {
        let mut b = PacketBuf::from_frame(&tcp(2, "10.0.1.20", 80, "10.0.9.9", 40000, fl));
        match r.from_instance(t, &mut b, now) {
            Output::Underlay { dst, .. } => dst,
            other => panic!("expected a node, got {other:?}"),
        }
    };
    assert_eq!(
        r.from_underlay(&mut client(flags::SYN, 2), 1),
        Output::Instance(t)
    );
    assert_eq!(reply(&mut r, flags::SYN | flags::ACK, 1), nodes()[2]);
    assert_eq!(
        r.from_underlay(&mut client(flags::ACK, 2), 1),
        Output::Instance(t)
    );
    // The target closes first and keeps the tuple in TIME-WAIT.
    assert_eq!(reply(&mut r, flags::FIN | flags::ACK, 2), nodes()[2]);
    assert_eq!(
        r.from_underlay(&mut client(flags::FIN | flags::ACK, 2), 2),
        Output::Instance(t)
    );
    assert_eq!(reply(&mut r, flags::ACK, 2), nodes()[2]);
    // The same tuple again, through place 1's node.
    assert_eq!(
        r.from_underlay(&mut client(flags::SYN, 1), 3),
        Output::Instance(t)
    );
    assert_eq!(reply(&mut r, flags::SYN | flags::ACK, 3), nodes()[1]);
    assert_eq!(r.drops().get(DropReason::ConntrackInvalid), 0);
}

#[test]
fn a_pinned_reply_to_an_outside_client_needs_no_route_of_the_targets_subnet() {
    // An internet-facing load balancer: the client is outside, and the
    // target's subnet has no route there (no internet gateway route); the
    // reply goes back through the node all the same.
    let mut r = host(NetworkAcl::allow_all("acl-a"));
    let t = r.eni_index("eni-t").unwrap();
    let via = ReturnVia {
        front: ip(FRONT),
        place: 1,
    };
    let mut buf = from_node(&syn(9, "198.51.100.10", 40000, "10.0.1.20", 80), Some(via));
    assert_eq!(r.from_underlay(&mut buf, 1), Output::Instance(t));
    let mut reply = PacketBuf::from_frame(&tcp(
        2,
        "10.0.1.20",
        80,
        "198.51.100.10",
        40000,
        flags::SYN | flags::ACK,
    ));
    assert!(matches!(
        r.from_instance(t, &mut reply, 1),
        Output::Underlay { dst, .. } if dst == nodes()[1]
    ));
    // Unpinned, the same reply has no route.
    let mut other = PacketBuf::from_frame(&tcp(
        2,
        "10.0.1.20",
        80,
        "198.51.100.10",
        40001,
        flags::SYN | flags::ACK,
    ));
    assert_eq!(
        r.from_instance(t, &mut other, 1),
        Output::Drop(DropReason::NoRoute)
    );
}
