//! What the node tests share (tests/serve.rs, tests/serve_lb.rs): two
//! nodes of one shard wired by hand, the Geneve datagrams hosts and edges
//! send them, the inner flow of what comes out, and delivery of one
//! node's peer messages to the other.

#![allow(dead_code)]

use core::net::{IpAddr, Ipv4Addr};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_hyperplane::serve::{PeerVerdict, Serve, ServeConfig};
use openvpc_model::flow_log::{EniContext, EniLog, FlowLogSpec, LoggedEni, TrafficType};
use openvpc_model::hyperplane::ShardMember;
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetRepr, ethertype};
use openvpc_packet::flow::parse_ethernet;
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr, ReturnVia};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};

/// The VPC's VNI.
pub const VNI: u32 = 4242;
/// The VPC router's MAC, the source of what nodes and edges send.
pub const ROUTER: MacAddr = MacAddr([2, 0x6f, 0x76, 0x70, 0x63, 1]);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The underlay address of node `hp1` or `hp2`.
pub fn node_ip(n: &str) -> IpAddr {
    match n {
        "hp1" => ip("10.253.0.1"),
        "hp2" => ip("10.253.0.2"),
        _ => unreachable!(),
    }
}

/// The shard `hp1`, `hp2`, with each node's liveness given (a dead node
/// has no underlay address).
pub fn members(alive: [bool; 2]) -> Vec<ShardMember> {
    ["hp1", "hp2"]
        .iter()
        .zip(alive)
        .map(|(n, a)| ShardMember {
            node_id: (*n).into(),
            underlay_ip: a.then(|| node_ip(n)),
        })
        .collect()
}

pub fn node(id: &str) -> Serve {
    Serve::new(ServeConfig::new(id, ROUTER))
}

/// A Geneve datagram with an Ethernet frame around `packet`.
pub fn geneve(dst_mac: MacAddr, src_mac: MacAddr, packet: &[u8]) -> PacketBuf {
    let mut b = PacketBuf::from_frame(packet);
    let mut h = [0u8; GeneveHeader::LEN + 14];
    let at = GeneveRepr::ethernet(VNI).emit(&mut h).unwrap();
    EthernetRepr {
        dst: dst_mac,
        src: src_mac,
        vlan: None,
        ethertype: ethertype::IPV4,
    }
    .emit(&mut h[at..])
    .unwrap();
    assert!(b.push_front(&h));
    b
}

/// A bare TCP segment, acknowledging 1 when `fl` has ACK.
pub fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, fl: u8, seq: u32) -> Vec<u8> {
    let mut t = TcpRepr::new(sport, dport, fl);
    t.seq = seq;
    t.ack = u32::from(fl & flags::ACK != 0);
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
        l4: L4Repr::Tcp(t),
    }
    .build(b"")
    .unwrap()
}

/// The inner flow of a Geneve datagram: (src, sport, dst, dport).
pub fn inner(buf: &PacketBuf) -> (IpAddr, u16, IpAddr, u16) {
    let g = GeneveHeader::view(buf.data()).unwrap();
    let at = GeneveHeader::LEN + g.options.len();
    let pf = parse_ethernet(&buf.data()[at..]).unwrap();
    (
        pf.key.src_ip(),
        pf.key.src_port,
        pf.key.dst_ip(),
        pf.key.dst_port,
    )
}

/// The inner flow of a Geneve datagram, and its return-via option.
pub fn inner_via(buf: &PacketBuf) -> ((IpAddr, u16, IpAddr, u16), Option<ReturnVia>) {
    let g = GeneveHeader::view(buf.data()).unwrap();
    (inner(buf), ReturnVia::find(g.options()))
}

/// Delivers every message in `from`'s outbox to `to` (which answers into
/// its own outbox); returns the kinds delivered.
pub fn deliver(from: &mut Serve, from_ip: IpAddr, to: &mut Serve, now: u64) -> Vec<PeerVerdict> {
    let mut out = Vec::new();
    let mut bytes = Vec::new();
    let mut buf = PacketBuf::default();
    for (_, m) in from.take_outbox() {
        m.encode(&mut bytes);
        out.push(to.peer(&bytes, from_ip, now, &mut buf));
    }
    out
}

/// `eni_id`, with primary address `primary`, under one flow log (issue
/// 18): what the server sends a node for a logged gateway's or front's
/// ENI.
pub fn logged_eni(eni_id: &str, primary: Ipv4Addr) -> LoggedEni {
    LoggedEni::new(
        EniLog {
            context: EniContext {
                eni_id: eni_id.into(),
                account_id: "123".into(),
                vpc_id: "vpc-1".into(),
                subnet_id: "subnet-1".into(),
                instance_id: None,
                primary_ip: IpAddr::V4(primary),
                az_id: "use1-az1".into(),
            },
            vpc_base: Some(Ipv4Addr::new(10, 0, 0, 0)),
            specs: vec![FlowLogSpec {
                flow_log_id: "fl-1".into(),
                traffic_type: TrafficType::All,
                max_aggregation_interval: 60,
            }],
        },
        Vec::new(),
    )
    .expect("a flow log covers it")
}
