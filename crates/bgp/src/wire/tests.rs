//! The codec's tests: byte vectors written by hand from the RFC 4271 §4
//! layouts, round trips, one test per class of malformed input with the
//! NOTIFICATION it must produce, and a property test that arbitrary bytes
//! never panic the decoder.

use super::*;
use proptest::prelude::*;

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

/// Prepends marker, length and type to a body.
fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

/// An UPDATE body from its three fields.
fn update_body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    b
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const AS_PATH_65001: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9];
const NEXT_HOP_10_0_0_1: [u8; 7] = [0x40, 3, 4, 10, 0, 0, 1];

fn mandatory() -> Vec<u8> {
    [&ORIGIN_IGP[..], &AS_PATH_65001, &NEXT_HOP_10_0_0_1].concat()
}

fn decode_err(bytes: &[u8], four: bool) -> Notification {
    Message::decode(bytes, four).unwrap_err().notification()
}

#[test]
fn keepalive_is_a_bare_header() {
    // RFC 4271 §4.4: a KEEPALIVE is the 19-byte header alone.
    let bytes = Message::Keepalive.encode(true).unwrap();
    assert_eq!(bytes, msg(4, &[]));
    assert_eq!(Message::decode(&bytes, true).unwrap(), Message::Keepalive);
}

#[test]
fn open_hand_built_with_4_octet_as() {
    // RFC 4271 §4.2 + RFC 6793: AS 4200000000 goes in as AS_TRANS, the real
    // number in capability 65.
    let body = [
        4, // version
        0x5b, 0xa0, // AS_TRANS 23456
        0, 90, // hold time
        192, 0, 2, 1,  // BGP identifier
        16, // optional parameters length
        2, 6, 1, 4, 0, 1, 0, 1, // capabilities: MP IPv4 unicast
        2, 6, 65, 4, 0xfa, 0x56, 0xea, 0x00, // capabilities: 4-octet AS
    ];
    let bytes = msg(1, &body);
    let open = Open::new(4_200_000_000, 90, Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(Message::Open(open.clone()).encode(true).unwrap(), bytes);
    let Message::Open(got) = Message::decode(&bytes, false).unwrap() else {
        panic!("not an OPEN")
    };
    assert_eq!(got, open);
    assert_eq!(got.asn(), 4_200_000_000);
    assert_eq!(got.my_as, AS_TRANS);
    assert!(got.carries_ipv4_unicast());
}

#[test]
fn open_small_as_in_its_field() {
    let open = Open::new(65001, 3, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(open.my_as, 65001);
    let bytes = Message::Open(open.clone()).encode(true).unwrap();
    assert_eq!(Message::decode(&bytes, true).unwrap(), Message::Open(open));
}

#[test]
fn open_without_capabilities_implies_ipv4_unicast() {
    let bytes = msg(1, &[4, 0xfd, 0xe9, 0, 180, 10, 0, 0, 1, 0]);
    let Message::Open(o) = Message::decode(&bytes, false).unwrap() else {
        panic!()
    };
    assert_eq!(o.asn(), 65001);
    assert!(o.carries_ipv4_unicast());
    assert_eq!(o.four_octet_as(), None);
}

#[test]
fn open_with_several_capabilities_in_one_parameter_and_unknown_ones() {
    // BIRD and FRR pack all capabilities in one parameter; unknown ones
    // (here graceful restart, 64) are kept.
    let caps = [1, 4, 0, 2, 0, 1, 64, 2, 0, 120, 2, 0];
    let mut body = vec![4, 0xfd, 0xe9, 0, 3, 10, 0, 0, 1, 2 + caps.len() as u8, 2];
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    let Message::Open(o) = Message::decode(&msg(1, &body), true).unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::Unknown {
                code: 64,
                value: vec![0, 120]
            },
            Capability::RouteRefresh,
        ]
    );
    // Only IPv6 advertised: IPv4 unicast is not carried.
    assert!(!o.carries_ipv4_unicast());
}

#[test]
fn update_hand_built_round_trip() {
    // Withdraw 198.51.100.0/24, announce 203.0.113.0/24 and 10.0.0.0/8.
    let attrs = [
        &mandatory()[..],
        &[0x80, 4, 4, 0, 0, 0, 50],  // MED 50
        &[0x40, 5, 4, 0, 0, 0, 100], // LOCAL_PREF 100
    ]
    .concat();
    let bytes = msg(
        2,
        &update_body(&[24, 198, 51, 100], &attrs, &[24, 203, 0, 113, 8, 10]),
    );
    let want = Update {
        withdrawn: vec![p("198.51.100.0/24")],
        attributes: Some(PathAttributes {
            origin: Origin::Igp,
            as_path: vec![AsSegment::sequence(vec![65001])],
            next_hop: Ipv4Addr::new(10, 0, 0, 1),
            med: Some(50),
            local_pref: Some(100),
            other: vec![],
        }),
        nlri: vec![p("203.0.113.0/24"), p("10.0.0.0/8")],
    };
    assert_eq!(
        Message::decode(&bytes, true).unwrap(),
        Message::Update(want.clone())
    );
    assert_eq!(Message::Update(want).encode(true).unwrap(), bytes);
}

#[test]
fn update_2_octet_as_path_and_as_set() {
    // RFC 4271 AS_PATH with 2-octet numbers: SEQUENCE(65001 65002) SET(1 2).
    let as_path = [0x40, 2, 12, 2, 2, 0xfd, 0xe9, 0xfd, 0xea, 1, 2, 0, 1, 0, 2];
    let attrs = [&ORIGIN_IGP[..], &as_path, &NEXT_HOP_10_0_0_1].concat();
    let bytes = msg(2, &update_body(&[], &attrs, &[32, 192, 0, 2, 7]));
    let Message::Update(u) = Message::decode(&bytes, false).unwrap() else {
        panic!()
    };
    let a = u.attributes.unwrap();
    assert_eq!(
        a.as_path,
        vec![
            AsSegment::sequence(vec![65001, 65002]),
            AsSegment {
                kind: SegmentKind::Set,
                asns: vec![1, 2]
            }
        ]
    );
    assert_eq!(a.as_path_len(), 3);
    assert_eq!(u.nlri, vec![p("192.0.2.7/32")]);
}

#[test]
fn update_to_2_octet_peer_uses_as_trans_and_as4_path() {
    // RFC 6793 §4.2.2.
    let attrs = PathAttributes {
        origin: Origin::Igp,
        as_path: vec![AsSegment::sequence(vec![4_200_000_000])],
        next_hop: Ipv4Addr::new(10, 0, 0, 1),
        med: None,
        local_pref: None,
        other: vec![],
    };
    let u = Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(attrs),
        nlri: vec![p("203.0.113.0/24")],
    });
    let bytes = u.encode(false).unwrap();
    let Message::Update(got) = Message::decode(&bytes, false).unwrap() else {
        panic!()
    };
    let got = got.attributes.unwrap();
    assert_eq!(
        got.as_path,
        vec![AsSegment::sequence(vec![u32::from(AS_TRANS)])]
    );
    assert_eq!(got.other.len(), 1);
    assert_eq!(got.other[0].type_code, attr_type::AS4_PATH);
    assert_eq!(got.other[0].value, vec![2, 1, 0xfa, 0x56, 0xea, 0x00]);
}

#[test]
fn unknown_optional_transitive_is_kept_non_transitive_dropped() {
    // RFC 4271 §5: unrecognized optional transitive attributes are kept,
    // optional non-transitive ones ignored. Communities (8) and an
    // extended-length unknown (type 99, flags O|T|E).
    let attrs = [
        &mandatory()[..],
        &[0xc0, 8, 4, 0xfd, 0xe9, 0, 1],
        &[0xd0, 99, 0, 2, 7, 7],
        &[0x80, 98, 1, 5],
    ]
    .concat();
    let bytes = msg(2, &update_body(&[], &attrs, &[24, 203, 0, 113]));
    let Message::Update(u) = Message::decode(&bytes, true).unwrap() else {
        panic!()
    };
    let other = u.attributes.unwrap().other;
    assert_eq!(
        other,
        vec![
            RawAttribute {
                flags: 0xc0,
                type_code: 8,
                value: vec![0xfd, 0xe9, 0, 1]
            },
            RawAttribute {
                flags: 0xd0,
                type_code: 99,
                value: vec![7, 7]
            },
        ]
    );
}

#[test]
fn notification_and_route_refresh() {
    let n = Notification::with_data(6, 1, vec![0, 1, 1, 0, 0, 0, 100]);
    let bytes = Message::Notification(n.clone()).encode(true).unwrap();
    assert_eq!(bytes, msg(3, &[6, 1, 0, 1, 1, 0, 0, 0, 100]));
    assert_eq!(
        Message::decode(&bytes, true).unwrap(),
        Message::Notification(n)
    );
    let rr = msg(5, &[0, 1, 0, 1]);
    assert_eq!(
        Message::decode(&rr, true).unwrap(),
        Message::RouteRefresh { afi: 1, safi: 1 }
    );
    assert_eq!(
        Message::RouteRefresh { afi: 1, safi: 1 }
            .encode(true)
            .unwrap(),
        rr
    );
}

#[test]
fn end_of_rib_is_an_empty_update() {
    let bytes = msg(2, &[0, 0, 0, 0]);
    let Message::Update(u) = Message::decode(&bytes, true).unwrap() else {
        panic!()
    };
    assert!(u.is_end_of_rib());
}

#[test]
fn framing_partial_and_multiple() {
    let ka = msg(4, &[]);
    assert_eq!(frame(&ka[..10]).unwrap(), None);
    assert_eq!(frame(&ka[..18]).unwrap(), None);
    let two = [ka.clone(), ka.clone()].concat();
    assert_eq!(frame(&two).unwrap(), Some(19));
}

// RFC 4271 §6.1: message header errors.

#[test]
fn header_errors() {
    let mut bad_marker = msg(4, &[]);
    bad_marker[3] = 0;
    assert_eq!(decode_err(&bad_marker, true), Notification::new(1, 1));
    // Detected before the header is complete, too.
    assert_eq!(frame(&bad_marker[..5]), Err(DecodeError::NotSynchronized));

    let mut short = msg(4, &[]);
    short[17] = 18;
    assert_eq!(
        decode_err(&short, true),
        Notification::with_data(1, 2, vec![0, 18])
    );
    let mut long = msg(4, &[]);
    long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(
        decode_err(&long, true),
        Notification::with_data(1, 2, vec![0x10, 0x01])
    );
    // A KEEPALIVE with a body; an OPEN shorter than 29; an UPDATE shorter
    // than 23; a NOTIFICATION without its code; a ROUTE-REFRESH of 24.
    for (ty, body) in [
        (4u8, vec![0u8]),
        (1, vec![4; 5]),
        (2, vec![0; 3]),
        (3, vec![6]),
        (5, vec![0; 5]),
    ] {
        let m = msg(ty, &body);
        let n = decode_err(&m, true);
        assert_eq!((n.code, n.subcode), (1, 2), "type {ty}");
        assert_eq!(n.data, (m.len() as u16).to_be_bytes().to_vec());
    }
    assert_eq!(
        decode_err(&msg(9, &[]), true),
        Notification::with_data(1, 3, vec![9])
    );
}

// RFC 4271 §6.2: OPEN message errors.

#[test]
fn open_errors() {
    let base = [4u8, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 0];
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = base.to_vec();
        f(&mut b);
        decode_err(&msg(1, &b), true)
    };
    assert_eq!(
        with(&|b| b[0] = 3),
        Notification::with_data(2, 1, vec![0, 4])
    );
    assert_eq!(with(&|b| b[4] = 1), Notification::new(2, 6));
    assert_eq!(with(&|b| b[4] = 2), Notification::new(2, 6));
    assert_eq!(with(&|b| b[5..9].fill(0)), Notification::new(2, 3));
    // Parameter type 1 (authentication, deprecated) is not supported.
    assert_eq!(
        with(&|b| {
            b[9] = 3;
            b.extend_from_slice(&[1, 1, 0]);
        }),
        Notification::new(2, 4)
    );
    // Parameter length past the end, capability truncated.
    assert_eq!(with(&|b| b[9] = 4), Notification::new(2, 0));
    assert_eq!(
        with(&|b| {
            b[9] = 4;
            b.extend_from_slice(&[2, 2, 65, 4]);
        }),
        Notification::new(2, 0)
    );
    // A hold time of 0 and of 3 are fine.
    assert!(Message::decode(&msg(1, &[4, 0, 1, 0, 0, 1, 1, 1, 1, 0]), true).is_ok());
    assert!(Message::decode(&msg(1, &[4, 0, 1, 0, 3, 1, 1, 1, 1, 0]), true).is_ok());
}

// RFC 4271 §6.3: UPDATE message errors.

#[test]
fn update_errors() {
    let upd = |attrs: &[u8], nlri: &[u8]| decode_err(&msg(2, &update_body(&[], attrs, nlri)), true);
    let nlri = [24, 203, 0, 113];

    // Withdrawn length past the message.
    let mut b = update_body(&[], &[], &[]);
    b[1] = 9;
    assert_eq!(decode_err(&msg(2, &b), true), Notification::new(3, 1));
    // Total attribute length past the message.
    let mut b = update_body(&[], &mandatory(), &[]);
    b[3] += 1;
    assert_eq!(decode_err(&msg(2, &b), true), Notification::new(3, 1));
    // An attribute twice.
    assert_eq!(
        upd(&[&mandatory()[..], &ORIGIN_IGP].concat(), &nlri),
        Notification::new(3, 1)
    );
    // An attribute whose length runs past the list.
    assert_eq!(upd(&[0x40, 1, 5, 0], &nlri), Notification::new(3, 1));

    // Unrecognized well-known attribute (type 77, flags transitive only).
    let unknown = [0x40, 77, 1, 0];
    assert_eq!(
        upd(&[&mandatory()[..], &unknown].concat(), &nlri),
        Notification::with_data(3, 2, unknown.to_vec())
    );
    // Missing well-known: each of ORIGIN, AS_PATH, NEXT_HOP.
    let no_origin = [&AS_PATH_65001[..], &NEXT_HOP_10_0_0_1].concat();
    assert_eq!(
        upd(&no_origin, &nlri),
        Notification::with_data(3, 3, vec![1])
    );
    let no_path = [&ORIGIN_IGP[..], &NEXT_HOP_10_0_0_1].concat();
    assert_eq!(upd(&no_path, &nlri), Notification::with_data(3, 3, vec![2]));
    let no_nh = [&ORIGIN_IGP[..], &AS_PATH_65001].concat();
    assert_eq!(upd(&no_nh, &nlri), Notification::with_data(3, 3, vec![3]));
    // ... but a withdrawal needs none.
    assert!(Message::decode(&msg(2, &update_body(&nlri, &[], &[])), true).is_ok());

    // Attribute flags error: ORIGIN marked optional; MED marked transitive.
    let bad_origin = [0xc0, 1, 1, 0];
    assert_eq!(
        upd(
            &[&bad_origin[..], &AS_PATH_65001, &NEXT_HOP_10_0_0_1].concat(),
            &nlri
        ),
        Notification::with_data(3, 4, bad_origin.to_vec())
    );
    let bad_med = [0xc0, 4, 4, 0, 0, 0, 1];
    assert_eq!(
        upd(&[&mandatory()[..], &bad_med].concat(), &nlri),
        Notification::with_data(3, 4, bad_med.to_vec())
    );
    // Attribute length error: ORIGIN of 2 bytes, NEXT_HOP of 3, MED of 2.
    let long_origin = [0x40, 1, 2, 0, 0];
    assert_eq!(
        upd(
            &[&long_origin[..], &AS_PATH_65001, &NEXT_HOP_10_0_0_1].concat(),
            &nlri
        ),
        Notification::with_data(3, 5, long_origin.to_vec())
    );
    let short_nh = [0x40, 3, 3, 10, 0, 0];
    assert_eq!(
        upd(
            &[&ORIGIN_IGP[..], &AS_PATH_65001, &short_nh].concat(),
            &nlri
        ),
        Notification::with_data(3, 5, short_nh.to_vec())
    );
    let short_med = [0x80, 4, 2, 0, 0];
    assert_eq!(
        upd(&[&mandatory()[..], &short_med].concat(), &nlri),
        Notification::with_data(3, 5, short_med.to_vec())
    );
    // Invalid ORIGIN value.
    let origin_9 = [0x40, 1, 1, 9];
    assert_eq!(
        upd(
            &[&origin_9[..], &AS_PATH_65001, &NEXT_HOP_10_0_0_1].concat(),
            &nlri
        ),
        Notification::with_data(3, 6, origin_9.to_vec())
    );
    // Invalid NEXT_HOP: 0.0.0.0 and multicast.
    for nh in [[0x40, 3, 4, 0, 0, 0, 0], [0x40, 3, 4, 224, 0, 0, 5]] {
        assert_eq!(
            upd(&[&ORIGIN_IGP[..], &AS_PATH_65001, &nh].concat(), &nlri),
            Notification::with_data(3, 8, nh.to_vec())
        );
    }
    // Invalid network field: prefix length 33, truncated prefix.
    assert_eq!(
        upd(&mandatory(), &[33, 1, 2, 3, 4, 5]),
        Notification::new(3, 10)
    );
    assert_eq!(upd(&mandatory(), &[24, 203, 0]), Notification::new(3, 10));
    assert_eq!(
        decode_err(&msg(2, &update_body(&[25, 1, 2, 3], &[], &[])), true),
        Notification::new(3, 10)
    );
    // Malformed AS_PATH: bad segment type, empty segment, truncated.
    for path in [
        vec![0x40, 2, 6, 5, 1, 0, 0, 0, 1],
        vec![0x40, 2, 2, 2, 0],
        vec![0x40, 2, 5, 2, 2, 0, 0, 1],
    ] {
        assert_eq!(
            upd(
                &[&ORIGIN_IGP[..], &path, &NEXT_HOP_10_0_0_1].concat(),
                &nlri
            ),
            Notification::new(3, 11),
            "{path:?}"
        );
    }
}

#[test]
fn host_bits_are_cleared() {
    assert_eq!(p("203.0.113.77/24"), p("203.0.113.0/24"));
    assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
    assert!("1.2.3.4/33".parse::<Ipv4Prefix>().is_err());
    assert!("1.2.3.4".parse::<Ipv4Prefix>().is_err());
}

#[test]
fn encode_updates_splits_at_4096_bytes() {
    let attrs = PathAttributes {
        origin: Origin::Igp,
        as_path: vec![AsSegment::sequence(vec![65000])],
        next_hop: Ipv4Addr::new(10, 0, 0, 1),
        med: None,
        local_pref: None,
        other: vec![],
    };
    let many: Vec<Ipv4Prefix> = (0..3000u32)
        .map(|i| Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        .collect();
    let msgs = encode_updates(&many, &many, &attrs, true).unwrap();
    assert!(msgs.len() >= 6, "{} messages", msgs.len());
    let (mut w, mut a) = (Vec::new(), Vec::new());
    for m in &msgs {
        assert!(m.len() <= MAX_MESSAGE_LEN);
        let Message::Update(u) = Message::decode(m, true).unwrap() else {
            panic!()
        };
        w.extend(u.withdrawn);
        a.extend(u.nlri);
    }
    assert_eq!(w, many);
    assert_eq!(a, many);
}

fn arb_prefix() -> impl Strategy<Value = Ipv4Prefix> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Prefix::new(Ipv4Addr::from(a), l).unwrap())
}

fn arb_attrs() -> impl Strategy<Value = PathAttributes> {
    (
        prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ],
        prop::collection::vec(
            (any::<bool>(), prop::collection::vec(any::<u32>(), 1..5)),
            0..3,
        ),
        1u32..0xe000_0000,
        any::<Option<u32>>(),
        any::<Option<u32>>(),
    )
        .prop_map(|(origin, segs, nh, med, local_pref)| PathAttributes {
            origin,
            as_path: segs
                .into_iter()
                .map(|(set, asns)| AsSegment {
                    kind: if set {
                        SegmentKind::Set
                    } else {
                        SegmentKind::Sequence
                    },
                    asns,
                })
                .collect(),
            next_hop: Ipv4Addr::from(nh),
            med,
            local_pref,
            other: vec![],
        })
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200), four: bool) {
        let _ = frame(&bytes);
        let _ = Message::decode(&bytes, four);
    }

    #[test]
    fn decode_never_panics_with_a_valid_header(
        ty in 1u8..=6,
        body in prop::collection::vec(any::<u8>(), 0..120),
        four: bool,
    ) {
        let _ = Message::decode(&msg(ty, &body), four);
    }

    #[test]
    fn update_round_trips(
        withdrawn in prop::collection::vec(arb_prefix(), 0..20),
        nlri in prop::collection::vec(arb_prefix(), 1..20),
        attrs in arb_attrs(),
    ) {
        let u = Message::Update(Update { withdrawn, attributes: Some(attrs), nlri });
        let bytes = u.encode(true).unwrap();
        prop_assert_eq!(Message::decode(&bytes, true).unwrap(), u);
    }

    #[test]
    fn open_round_trips(asn: u32, hold in prop_oneof![Just(0u16), 3u16..], id in 1u32..) {
        let o = Message::Open(Open::new(asn, hold, Ipv4Addr::from(id)));
        let bytes = o.encode(true).unwrap();
        prop_assert_eq!(Message::decode(&bytes, true).unwrap(), o);
    }
}
