//! The responder's refusals, sans-IO (RFC 7296): what it answers to
//! IKE_SA_INIT requests it cannot take (NO_PROPOSAL_CHOSEN,
//! INVALID_KE_PAYLOAD naming its group, INVALID_MAJOR_VERSION), that a
//! retransmitted request gets the very same answer, and that what it
//! drops is counted by reason. The full exchanges are tested against
//! strongSwan (tests/strongswan.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use openvpc_vpn::ike::crypto::{DhGroup, DhPrivate};
use openvpc_vpn::ike::message::{
    self, Exchange, Header, IKE_VERSION, Message, Payload, Proposal, TransformSpec, dh, encr,
    notify_type, prf, protocol, transform_type,
};
use openvpc_vpn::ike::responder::{Entropy, IkeDrop, Output, Responder, TunnelConfig};

struct Counter(u8);

impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(37);
            *b = self.0;
        }
    }
}

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500);

fn responder() -> Responder {
    Responder::new(TunnelConfig::new(
        b"abcdefgh12345678",
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    ))
}

fn t(kind: u8, id: u16, key_len: Option<u16>) -> TransformSpec {
    TransformSpec { kind, id, key_len }
}

/// An IKE_SA_INIT request offering AES-GCM-128 with `groups`, its KE in
/// `ke_group`.
fn init_request(groups: &[u16], ke_group: DhGroup, encr_id: u16) -> Vec<u8> {
    let mut transforms = vec![
        t(transform_type::ENCR, encr_id, Some(128)),
        t(transform_type::PRF, prf::HMAC_SHA2_256, None),
    ];
    transforms.extend(groups.iter().map(|g| t(transform_type::DH, *g, None)));
    let (_, public) = DhPrivate::new(ke_group, &vec![5u8; ke_group.secret_len()]).unwrap();
    Message {
        header: Header {
            spi_i: 0x1111_2222_3333_4444,
            spi_r: 0,
            next_payload: 0,
            version: IKE_VERSION,
            exchange: Exchange::IkeSaInit,
            flags: Header::INITIATOR,
            message_id: 0,
            length: 0,
        },
        payloads: vec![
            Payload::Sa(vec![Proposal {
                num: 1,
                protocol: protocol::IKE,
                spi: Vec::new(),
                transforms,
            }]),
            Payload::Ke {
                group: ke_group.id(),
                data: public,
            },
            Payload::Nonce(vec![9; 32]),
        ],
        encrypted_at: None,
    }
    .encode()
}

/// The notifies of the one datagram `out` sends.
fn answered(out: &[Output]) -> (Message, Vec<(u16, Vec<u8>)>) {
    let [Output::Send { bytes, to, .. }] = out else {
        panic!("one datagram: {out:?}")
    };
    assert_eq!(*to, PEER);
    let m = message::parse(bytes).unwrap();
    assert!(m.header.is_response());
    let notifies = m
        .payloads
        .iter()
        .filter_map(|p| match p {
            Payload::Notify(n) => Some((n.kind, n.data.clone())),
            _ => None,
        })
        .collect();
    (m, notifies)
}

#[test]
fn an_acceptable_request_gets_one_proposal_back_and_its_retransmission_the_same_answer() {
    let mut r = responder();
    let mut rng = Counter(1);
    let request = init_request(&[dh::MODP_2048], DhGroup::Modp2048, encr::AES_GCM_16);
    let first = r.handle(PEER, false, &request, 0, &mut rng);
    let (m, notifies) = answered(&first);
    assert_ne!(m.header.spi_r, 0, "our SPI");
    let Some(Payload::Sa(chosen)) = m.payloads.first() else {
        panic!("{m:?}")
    };
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].transforms.len(), 3, "ENCR, PRF, DH: one each");
    assert!(
        notifies
            .iter()
            .any(|(k, _)| *k == notify_type::NAT_DETECTION_SOURCE_IP)
    );
    let again = r.handle(PEER, false, &request, 500, &mut rng);
    match (&first[0], &again[0]) {
        (Output::Send { bytes: a, .. }, Output::Send { bytes: b, .. }) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.counters.retransmits_answered, 1);
}

#[test]
fn the_key_exchanges_group_is_taken_when_offered() {
    let mut r = responder();
    let mut rng = Counter(4);
    let out = r.handle(
        PEER,
        false,
        &init_request(&[19, dh::MODP_2048], DhGroup::Modp2048, encr::AES_GCM_16),
        0,
        &mut rng,
    );
    let (m, _) = answered(&out);
    let ke = m.payloads.iter().find_map(|p| match p {
        Payload::Ke { group, .. } => Some(*group),
        _ => None,
    });
    assert_eq!(ke, Some(dh::MODP_2048), "no round trip for 19");
}

#[test]
fn unacceptable_requests_are_answered_with_the_reason() {
    let mut r = responder();
    let mut rng = Counter(2);
    // 3DES only: nothing AWS offers.
    let out = r.handle(
        PEER,
        false,
        &init_request(&[dh::MODP_2048], DhGroup::Modp2048, 3),
        0,
        &mut rng,
    );
    let (_, notifies) = answered(&out);
    assert_eq!(
        notifies,
        vec![(notify_type::NO_PROPOSAL_CHOSEN, Vec::new())]
    );
    assert_eq!(r.counters.no_proposal, 1);

    // Only group 19 is offered, the KE carries group 14:
    // INVALID_KE_PAYLOAD naming 19 (RFC 7296 §1.2).
    let out = r.handle(
        PEER,
        false,
        &init_request(&[19], DhGroup::Modp2048, encr::AES_GCM_16),
        0,
        &mut rng,
    );
    let (_, notifies) = answered(&out);
    assert_eq!(
        notifies,
        vec![(
            notify_type::INVALID_KE_PAYLOAD,
            19u16.to_be_bytes().to_vec()
        )]
    );

    // Version 3: INVALID_MAJOR_VERSION, unprotected (RFC 7296 §2.5).
    let mut v3 = init_request(&[dh::MODP_2048], DhGroup::Modp2048, encr::AES_GCM_16);
    v3[17] = 0x30;
    let out = r.handle(PEER, false, &v3, 0, &mut rng);
    let (_, notifies) = answered(&out);
    assert_eq!(notifies[0].0, notify_type::INVALID_MAJOR_VERSION);
}

#[test]
fn what_is_dropped_is_counted_by_reason() {
    let mut r = responder();
    let mut rng = Counter(3);
    assert!(r.handle(PEER, false, &[1, 2, 3], 0, &mut rng).is_empty());
    assert_eq!(r.counters.drops[IkeDrop::Malformed as usize], 1);
    // An IKE_AUTH for SPIs nobody knows.
    let mut auth = init_request(&[dh::MODP_2048], DhGroup::Modp2048, encr::AES_GCM_16);
    auth[8..16].copy_from_slice(&7u64.to_be_bytes());
    auth[18] = Exchange::IkeAuth.code();
    auth[20..24].copy_from_slice(&1u32.to_be_bytes());
    assert!(r.handle(PEER, false, &auth, 0, &mut rng).is_empty());
    assert_eq!(r.counters.drops[IkeDrop::UnknownSpi as usize], 1);
    // A response to nothing we asked.
    let mut response = init_request(&[dh::MODP_2048], DhGroup::Modp2048, encr::AES_GCM_16);
    response[19] = Header::RESPONSE;
    assert!(r.handle(PEER, false, &response, 0, &mut rng).is_empty());
    assert_eq!(r.counters.drops[IkeDrop::UnknownSpi as usize], 2);
    assert!(!r.is_established());
}
