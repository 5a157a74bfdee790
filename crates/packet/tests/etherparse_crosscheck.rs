//! Cross-checks the standard headers against etherparse, an independent
//! implementation: frames it builds parse here to the same fields, and
//! frames built here parse there with the same fields and checksums.

use core::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetRepr, VlanTag, ethertype};
use openvpc_packet::icmp::IcmpRepr;
use openvpc_packet::ipv4::{Ipv4Header, Ipv4Repr};
use openvpc_packet::ipv6::Ipv6Repr;
use openvpc_packet::tcp::{TcpHeader, TcpRepr};
use openvpc_packet::udp::{UdpHeader, UdpRepr};
use openvpc_packet::{MacAddr, flow, icmpv4, icmpv6};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Transport {
    Tcp { seq: u32, window: u16 },
    Udp,
    Echo,
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![
        any::<(u32, u16)>().prop_map(|(seq, window)| Transport::Tcp { seq, window }),
        Just(Transport::Udp),
        Just(Transport::Echo),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn etherparse_frames_parse_here(
        src_mac: [u8; 6], dst_mac: [u8; 6], vlan in prop::option::of(0u16..4096),
        v6: bool, s4: [u8; 4], d4: [u8; 4], s6: [u8; 16], d6: [u8; 16], ttl: u8,
        sport: u16, dport: u16, t in transport(), payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let b = etherparse::PacketBuilder::ethernet2(src_mac, dst_mac);
        let b = match vlan {
            Some(v) => b.single_vlan(etherparse::VlanId::try_new(v).unwrap()),
            None => b.single_vlan(etherparse::VlanId::try_new(0).unwrap()),
        };
        let b = if v6 { b.ipv6(s6, d6, ttl) } else { b.ipv4(s4, d4, ttl) };
        let mut frame = Vec::new();
        match t {
            Transport::Tcp { seq, window } => b.tcp(sport, dport, seq, window).write(&mut frame, &payload).unwrap(),
            Transport::Udp => b.udp(sport, dport).write(&mut frame, &payload).unwrap(),
            Transport::Echo if v6 => b.icmpv6_echo_request(sport, 1).write(&mut frame, &payload).unwrap(),
            Transport::Echo => b.icmpv4_echo_request(sport, 1).write(&mut frame, &payload).unwrap(),
        }
        let (eth, _) = EthernetRepr::parse(&frame).unwrap();
        prop_assert_eq!(eth.src, MacAddr(src_mac));
        prop_assert_eq!(eth.dst, MacAddr(dst_mac));
        prop_assert_eq!(eth.vlan.map(|t| t.vid), Some(vlan.unwrap_or(0)));
        let parsed = flow::parse_ethernet(&frame).unwrap();
        let expect = if v6 {
            flow::FlowKey::v6(Ipv6Addr::from(s6), Ipv6Addr::from(d6), 0, 0, 0)
        } else {
            flow::FlowKey::v4(Ipv4Addr::from(s4), Ipv4Addr::from(d4), 0, 0, 0)
        };
        prop_assert_eq!(parsed.key.src, expect.src);
        prop_assert_eq!(parsed.key.dst, expect.dst);
        let ports = match t { Transport::Echo => (sport, sport), _ => (sport, dport) };
        prop_assert_eq!((parsed.key.src_port, parsed.key.dst_port), ports);
        if !v6 {
            // Our full parse also verifies etherparse's header checksum.
            let (ip, _) = Ipv4Repr::parse(&frame[18..]).unwrap();
            prop_assert_eq!(ip.ttl, ttl);
        }
        let l4 = &frame[parsed.l4_offset..];
        let pseudo = if v6 {
            Ipv6Repr::parse(&frame[18..]).unwrap().0.pseudo_header()
        } else if matches!(t, Transport::Echo) {
            0
        } else {
            Ipv4Repr::parse(&frame[18..]).unwrap().0.pseudo_header()
        };
        prop_assert!(openvpc_packet::checksum::verifies(openvpc_packet::checksum::add(pseudo, l4)));
    }

    #[test]
    fn frames_built_here_parse_in_etherparse(
        src_mac: [u8; 6], dst_mac: [u8; 6], vlan in prop::option::of(0u16..4096),
        v6: bool, s4: [u8; 4], d4: [u8; 4], s6: [u8; 16], d6: [u8; 16],
        sport: u16, dport: u16, t in transport(), payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let ethernet = EthernetRepr {
            dst: MacAddr(dst_mac),
            src: MacAddr(src_mac),
            vlan: vlan.map(|vid| VlanTag { tpid: ethertype::VLAN, pcp: 0, dei: false, vid }),
            ethertype: 0,
        };
        let ip = if v6 {
            IpRepr::V6(Ipv6Repr::new(Ipv6Addr::from(s6), Ipv6Addr::from(d6), 0, 0))
        } else {
            IpRepr::V4(Ipv4Repr::new(Ipv4Addr::from(s4), Ipv4Addr::from(d4), 0, 0))
        };
        let l4 = match (t, v6) {
            (Transport::Tcp { seq, window }, _) => {
                let mut r = TcpRepr::new(sport, dport, 0x18);
                r.seq = seq;
                r.window = window;
                L4Repr::Tcp(r)
            }
            (Transport::Udp, _) => L4Repr::Udp(UdpRepr { src_port: sport, dst_port: dport }),
            (Transport::Echo, true) => L4Repr::Icmpv6(IcmpRepr::echo(icmpv6::types::ECHO_REQUEST, sport, 1)),
            (Transport::Echo, false) => L4Repr::Icmpv4(IcmpRepr::echo(icmpv4::types::ECHO_REQUEST, sport, 1)),
        };
        let frame = PacketBuilder { ethernet: Some(ethernet), ip, l4 }.build(&payload).unwrap();
        let sliced = SlicedPacket::from_ethernet(&frame).unwrap();
        match sliced.net.as_ref().unwrap() {
            NetSlice::Ipv4(ip) => {
                let h = ip.header();
                prop_assert_eq!(h.source(), s4);
                prop_assert_eq!(h.destination(), d4);
                prop_assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
            }
            NetSlice::Ipv6(ip) => {
                prop_assert_eq!(ip.header().source(), s6);
                prop_assert_eq!(ip.header().destination(), d6);
            }
            NetSlice::Arp(_) => prop_assert!(false, "not ARP"),
        }
        let net = sliced.net.as_ref().unwrap();
        match sliced.transport.as_ref().unwrap() {
            TransportSlice::Tcp(tcp) => {
                prop_assert_eq!((tcp.source_port(), tcp.destination_port()), (sport, dport));
                let expected = match net {
                    NetSlice::Ipv4(ip) => tcp.to_header().calc_checksum_ipv4(&ip.header().to_header(), tcp.payload()).unwrap(),
                    NetSlice::Ipv6(ip) => tcp.to_header().calc_checksum_ipv6(&ip.header().to_header(), tcp.payload()).unwrap(),
                    NetSlice::Arp(_) => unreachable!(),
                };
                prop_assert_eq!(tcp.checksum(), expected);
                prop_assert_eq!(tcp.payload(), &payload[..]);
            }
            TransportSlice::Udp(udp) => {
                prop_assert_eq!((udp.source_port(), udp.destination_port()), (sport, dport));
                let expected = match net {
                    NetSlice::Ipv4(ip) => udp.to_header().calc_checksum_ipv4(&ip.header().to_header(), udp.payload()).unwrap(),
                    NetSlice::Ipv6(ip) => udp.to_header().calc_checksum_ipv6(&ip.header().to_header(), udp.payload()).unwrap(),
                    NetSlice::Arp(_) => unreachable!(),
                };
                prop_assert_eq!(udp.checksum(), expected);
            }
            TransportSlice::Icmpv4(icmp) => {
                prop_assert_eq!(icmp.type_u8(), icmpv4::types::ECHO_REQUEST);
                prop_assert_eq!(icmp.checksum(), icmp.icmp_type().calc_checksum(icmp.payload()));
            }
            TransportSlice::Icmpv6(icmp) => {
                prop_assert_eq!(icmp.type_u8(), icmpv6::types::ECHO_REQUEST);
                let NetSlice::Ipv6(ip) = net else { unreachable!() };
                let expected = icmp.icmp_type().calc_checksum(ip.header().source(), ip.header().destination(), icmp.payload()).unwrap();
                prop_assert_eq!(icmp.checksum(), expected);
            }
            TransportSlice::Igmp(_) => prop_assert!(false, "not IGMP"),
        }
    }
}

/// The fixed-header views agree with etherparse's field accessors.
#[test]
fn views_agree_on_field_offsets() {
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 17)
        .tcp(1234, 80, 99, 4000)
        .syn()
        .write(&mut frame, b"x")
        .unwrap();
    let ip = Ipv4Header::view(&frame[14..]).unwrap();
    assert_eq!(ip.header.ttl, 17);
    let tcp = TcpHeader::view(ip.payload).unwrap();
    assert_eq!(tcp.header.seq.get(), 99);
    assert_eq!(tcp.header.window.get(), 4000);
    assert_eq!(tcp.header.flags, openvpc_packet::tcp::flags::SYN);
    assert_eq!(tcp.payload, b"x");
    let mut udp_frame = Vec::new();
    etherparse::PacketBuilder::ipv4([1, 2, 3, 4], [5, 6, 7, 8], 1)
        .udp(53, 5353)
        .write(&mut udp_frame, b"abc")
        .unwrap();
    let (udp, payload) = UdpHeader::view(&udp_frame[20..]).unwrap();
    assert_eq!(udp.length.get(), 11);
    assert_eq!(payload, b"abc");
}
