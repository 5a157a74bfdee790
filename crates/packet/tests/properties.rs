//! Property tests: every header survives parse(emit(x)) == x, no byte string
//! makes a parser panic or read out of bounds, and incremental checksum
//! updates agree with recomputation.

use core::net::{Ipv4Addr, Ipv6Addr};

use openvpc_packet::arp::{ArpOp, ArpRepr};
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetRepr, VlanTag, ethertype};
use openvpc_packet::geneve::{self, GeneveOptionRepr, GeneveRepr};
use openvpc_packet::icmp::IcmpRepr;
use openvpc_packet::ipv4::{Fragmentation, Ipv4Repr};
use openvpc_packet::ipv6::{Ipv6Header, Ipv6Repr};
use openvpc_packet::tcp::TcpRepr;
use openvpc_packet::udp::UdpRepr;
use openvpc_packet::vxlan::VxlanRepr;
use openvpc_packet::{Layer, MacAddr, checksum, flow, icmpv4, icmpv6};
use proptest::prelude::*;

fn mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn ethernet() -> impl Strategy<Value = EthernetRepr> {
    let vlan = prop::option::of(
        (
            prop_oneof![Just(ethertype::VLAN), Just(ethertype::QINQ)],
            0u8..8,
            any::<bool>(),
            0u16..4096,
        )
            .prop_map(|(tpid, pcp, dei, vid)| VlanTag {
                tpid,
                pcp,
                dei,
                vid,
            }),
    );
    // A payload EtherType that is not itself a tag, or parsing would descend.
    let ty = any::<u16>().prop_filter("not a tag", |t| {
        *t != ethertype::VLAN && *t != ethertype::QINQ
    });
    (mac(), mac(), vlan, ty).prop_map(|(dst, src, vlan, ethertype)| EthernetRepr {
        dst,
        src,
        vlan,
        ethertype,
    })
}

fn ipv4() -> impl Strategy<Value = Ipv4Repr> {
    (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        any::<u16>(),
        (any::<bool>(), any::<bool>(), 0u16..0x2000),
        (0usize..=10).prop_flat_map(|words| prop::collection::vec(any::<u8>(), words * 4)),
        0u16..1200,
    )
        .prop_map(
            |(s, d, protocol, ttl, dscp_ecn, ident, (df, mf, offset), opts, payload_len)| {
                let mut options = [0u8; 40];
                options[..opts.len()].copy_from_slice(&opts);
                Ipv4Repr {
                    src: Ipv4Addr::from(s),
                    dst: Ipv4Addr::from(d),
                    protocol,
                    ttl,
                    dscp_ecn,
                    ident,
                    frag: Fragmentation {
                        dont_fragment: df,
                        more_fragments: mf,
                        offset,
                    },
                    options_len: opts.len() as u8,
                    options,
                    payload_len,
                }
            },
        )
}

fn ipv6() -> impl Strategy<Value = Ipv6Repr> {
    // Upper-layer next headers only: the builder emits no extension headers.
    let next = any::<u8>().prop_filter("not an extension header", |n| {
        !matches!(*n, 0 | 43 | 44 | 51 | 60)
    });
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        next,
        any::<u8>(),
        any::<u8>(),
        0u32..(1 << 20),
        0u16..1200,
    )
        .prop_map(
            |(s, d, next_header, hop_limit, traffic_class, flow_label, payload_len)| Ipv6Repr {
                src: Ipv6Addr::from(s),
                dst: Ipv6Addr::from(d),
                next_header,
                hop_limit,
                traffic_class,
                flow_label,
                payload_len,
            },
        )
}

fn tcp() -> impl Strategy<Value = TcpRepr> {
    (
        any::<(u16, u16, u32, u32, u8, u16, u16)>(),
        (0usize..=10).prop_flat_map(|w| prop::collection::vec(any::<u8>(), w * 4)),
    )
        .prop_map(
            |((src_port, dst_port, seq, ack, flags, window, urgent), opts)| {
                let mut options = [0u8; 40];
                options[..opts.len()].copy_from_slice(&opts);
                TcpRepr {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags,
                    window,
                    urgent,
                    options_len: opts.len() as u8,
                    options,
                }
            },
        )
}

fn icmp() -> impl Strategy<Value = IcmpRepr> {
    any::<(u8, u8, [u8; 4])>().prop_map(|(icmp_type, code, rest)| IcmpRepr {
        icmp_type,
        code,
        rest,
    })
}

fn geneve_repr() -> impl Strategy<Value = GeneveRepr> {
    let option = (
        any::<u16>(),
        0u8..128,
        any::<bool>(),
        (0usize..=4).prop_flat_map(|w| prop::collection::vec(any::<u8>(), w * 4)),
    )
        .prop_map(|(class, option_type, critical, data)| GeneveOptionRepr {
            class,
            option_type,
            critical,
            data,
        });
    (
        any::<bool>(),
        any::<bool>(),
        any::<u16>(),
        0u32..(1 << 24),
        prop::collection::vec(option, 0..4),
    )
        .prop_map(|(oam, c, protocol, vni, options)| {
            // The C bit is emitted set whenever an option is critical.
            let critical = c || options.iter().any(|o| o.critical);
            GeneveRepr {
                oam,
                critical,
                protocol,
                vni,
                options,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ethernet_roundtrip(repr in ethernet(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; repr.header_len()];
        repr.emit(&mut buf).unwrap();
        buf.extend_from_slice(&payload);
        let (back, rest) = EthernetRepr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn arp_roundtrip(op in prop_oneof![Just(ArpOp::Request), Just(ArpOp::Reply)], sm in mac(), si in any::<[u8;4]>(), tm in mac(), ti in any::<[u8;4]>()) {
        let repr = ArpRepr { op, sender_mac: sm, sender_ip: si.into(), target_mac: tm, target_ip: ti.into() };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        prop_assert_eq!(ArpRepr::parse(&buf).unwrap(), repr);
    }

    #[test]
    fn ipv4_roundtrip(repr in ipv4()) {
        let mut buf = vec![0u8; repr.header_len() + usize::from(repr.payload_len)];
        repr.emit(&mut buf).unwrap();
        let (back, payload) = Ipv4Repr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(payload.len(), usize::from(repr.payload_len));
    }

    #[test]
    fn ipv6_roundtrip(repr in ipv6()) {
        let mut buf = vec![0u8; 40 + usize::from(repr.payload_len)];
        repr.emit(&mut buf).unwrap();
        let (back, payload) = Ipv6Repr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(payload.len(), usize::from(repr.payload_len));
    }

    #[test]
    fn tcp_roundtrip(repr in tcp(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; repr.header_len()];
        repr.emit(&mut buf).unwrap();
        buf.extend_from_slice(&payload);
        let (back, rest) = TcpRepr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn udp_roundtrip(src_port: u16, dst_port: u16, payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let repr = UdpRepr { src_port, dst_port };
        let mut buf = vec![0u8; 8];
        repr.emit(&mut buf, payload.len()).unwrap();
        buf.extend_from_slice(&payload);
        let (back, rest) = UdpRepr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn icmp_roundtrip(repr in icmp(), body in prop::collection::vec(any::<u8>(), 0..64)) {
        for layer in [Layer::Icmpv4, Layer::Icmpv6] {
            let mut buf = vec![0u8; 8];
            repr.emit(&mut buf, layer).unwrap();
            buf.extend_from_slice(&body);
            let (back, rest) = IcmpRepr::parse(&buf, layer).unwrap();
            prop_assert_eq!(back, repr);
            prop_assert_eq!(rest, &body[..]);
        }
    }

    #[test]
    fn geneve_roundtrip(repr in geneve_repr(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = vec![0u8; repr.header_len()];
        repr.emit(&mut buf).unwrap();
        buf.extend_from_slice(&payload);
        let (back, rest) = GeneveRepr::parse(&buf).unwrap();
        prop_assert_eq!(back, repr);
        prop_assert_eq!(rest, &payload[..]);
    }

    #[test]
    fn vxlan_roundtrip(vni in 0u32..(1 << 24)) {
        let mut buf = [0u8; 8];
        VxlanRepr { vni }.emit(&mut buf).unwrap();
        prop_assert_eq!(VxlanRepr::parse(&buf).unwrap().0, VxlanRepr { vni });
    }

    /// Builder output parses back to the flow key it was built from, in both
    /// families and for each transport; the L4 checksum verifies.
    #[test]
    fn built_frames_give_their_flow_key(
        v4 in ipv4(), v6 in ipv6(), t in tcp(), sport: u16, dport: u16, id: u16, use_v6: bool, which in 0u8..3,
        payload in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let mut v4 = v4;
        v4.frag = Fragmentation::default();
        v4.options_len = 0;
        let ip = if use_v6 { IpRepr::V6(v6) } else { IpRepr::V4(v4) };
        let l4 = match (which, use_v6) {
            (0, _) => L4Repr::Tcp(t),
            (1, _) => L4Repr::Udp(UdpRepr { src_port: sport, dst_port: dport }),
            (_, false) => L4Repr::Icmpv4(IcmpRepr::echo(icmpv4::types::ECHO_REQUEST, id, 1)),
            (_, true) => L4Repr::Icmpv6(IcmpRepr::echo(icmpv6::types::ECHO_REQUEST, id, 1)),
        };
        let eth = EthernetRepr { dst: MacAddr([2, 0, 0, 0, 0, 2]), src: MacAddr([2, 0, 0, 0, 0, 1]), vlan: None, ethertype: 0 };
        let frame = PacketBuilder { ethernet: Some(eth), ip, l4 }.build(&payload).unwrap();
        let parsed = flow::parse_ethernet(&frame).unwrap();
        let (expect_sport, expect_dport) = match l4 {
            L4Repr::Tcp(t) => (t.src_port, t.dst_port),
            L4Repr::Udp(u) => (u.src_port, u.dst_port),
            _ => (id, id),
        };
        prop_assert_eq!(parsed.key.src_port, expect_sport);
        prop_assert_eq!(parsed.key.dst_port, expect_dport);
        prop_assert_eq!(parsed.ip_len, frame.len() - 14);
        let l4_bytes = &frame[parsed.l4_offset..];
        let pseudo = match ip {
            IpRepr::V4(_) if which == 2 => 0,
            IpRepr::V4(_) => {
                let (r, _) = Ipv4Repr::parse(&frame[14..]).unwrap();
                r.pseudo_header()
            }
            IpRepr::V6(_) => Ipv6Repr::parse(&frame[14..]).unwrap().0.pseudo_header(),
        };
        prop_assert!(checksum::verifies(checksum::add(pseudo, l4_bytes)));
    }

    /// No byte string makes any parser panic (the test harness would catch it).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = EthernetRepr::parse(&bytes);
        let _ = ArpRepr::parse(&bytes);
        let _ = Ipv4Repr::parse(&bytes);
        let _ = Ipv6Repr::parse(&bytes);
        let _ = Ipv6Header::view(&bytes);
        let _ = TcpRepr::parse(&bytes);
        let _ = UdpRepr::parse(&bytes);
        let _ = IcmpRepr::parse(&bytes, Layer::Icmpv4);
        let _ = GeneveRepr::parse(&bytes);
        let _ = VxlanRepr::parse(&bytes);
        let _ = geneve::decap(&bytes);
        let _ = flow::parse_ethernet(&bytes);
        let _ = flow::quoted_flow(&bytes, 4);
        let _ = flow::quoted_flow(&bytes, 6);
    }

    /// Mutating a valid frame byte by byte never panics either: this walks
    /// the parsers past their first checks, where random bytes rarely go.
    #[test]
    fn mutated_frames_never_panic(at in 0usize..120, value: u8, cut in 0usize..120) {
        let inner = PacketBuilder {
            ethernet: Some(EthernetRepr { dst: MacAddr([2,0,0,0,0,2]), src: MacAddr([2,0,0,0,0,1]), vlan: None, ethertype: 0 }),
            ip: IpRepr::V4(Ipv4Repr::new(Ipv4Addr::new(10,0,0,1), Ipv4Addr::new(10,0,0,2), 0, 0)),
            l4: L4Repr::Tcp(TcpRepr::new(1000, 80, 2)),
        }.build(b"payload").unwrap();
        let mut frame = openvpc_packet::sample::geneve_frame(7, &inner).unwrap();
        if at < frame.len() { frame[at] = value; }
        frame.truncate(frame.len().saturating_sub(cut));
        if let Ok(d) = geneve::decap(&frame) {
            let _ = flow::parse_ethernet(d.inner());
        }
    }

    /// RFC 1624 updates equal recomputing the checksum from scratch.
    #[test]
    fn incremental_update_equals_recompute(
        data in prop::collection::vec(any::<u8>(), 2..200).prop_map(|mut v| { if v.len() % 2 == 1 { v.pop(); } v }),
        word_at: prop::sample::Index, new16: u16, new32: u32, new_bytes: [u8; 16],
    ) {
        let before = checksum::of(&data);
        let i = word_at.index(data.len() / 2) * 2;
        let mut changed = data.clone();
        changed[i..i + 2].copy_from_slice(&new16.to_be_bytes());
        let old = u16::from_be_bytes([data[i], data[i + 1]]);
        prop_assert!(same_checksum(checksum::update16(before, old, new16), checksum::of(&changed)));

        if data.len() >= 4 {
            let i = word_at.index(data.len() / 2 - 1) * 2;
            let mut changed = data.clone();
            changed[i..i + 4].copy_from_slice(&new32.to_be_bytes());
            let old = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
            prop_assert!(same_checksum(checksum::update32(before, old, new32), checksum::of(&changed)));
        }
        if data.len() >= 16 {
            let i = word_at.index(data.len() / 2 - 7) * 2;
            let mut changed = data.clone();
            changed[i..i + 16].copy_from_slice(&new_bytes);
            prop_assert!(same_checksum(checksum::update_bytes(before, &data[i..i + 16], &new_bytes), checksum::of(&changed)));
        }
    }
}

/// Ones'-complement arithmetic has two zeros (0x0000 and 0xffff). RFC 1624
/// eqn. 3 can yield either where recomputation yields the other, and both
/// verify; every other value must match exactly.
fn same_checksum(a: u16, b: u16) -> bool {
    a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}
