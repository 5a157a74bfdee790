//! A whole exchange with the responder, sans-IO, from a small initiator
//! written here from RFC 7296 with the crate's codec and cryptography:
//! IKE_SA_INIT, IKE_AUTH (both AUTH values checked both ways), the child
//! SA carrying ESP from the initiator, a retransmitted IKE_AUTH answered
//! with the same bytes, an authentic but malformed request answered with
//! INVALID_SYNTAX, a message ID out of the window dropped, and a Delete
//! of the IKE SA taking the child down. (Interoperability is tested
//! against strongSwan in tests/strongswan.rs.)

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use openvpc_vpn::esp::{IPV4, OutboundSa, Transform};
use openvpc_vpn::ike::crypto::{
    self, DhGroup, DhPrivate, Encr, IkeKeys, IkeSuite, Integ, Prf, child_keymat, psk_auth,
};
use openvpc_vpn::ike::message::{
    self, Delete, Exchange, Header, IKE_VERSION, Identification, Message, Payload, Proposal,
    TrafficSelector, TransformSpec, auth_method, dh, encr, esn, id_type, integ, notify_type, prf,
    protocol, transform_type,
};
use openvpc_vpn::ike::responder::{
    Down, Entropy, IkeDrop, Output, Responder, TunnelConfig, any_ipv4, id_body, seal_encoded,
};

const PSK: &[u8] = b"abcdefgh12345678";
const SPI_I: u64 = 0x0123_4567_89ab_cdef;
const OUR_ESP_SPI: u32 = 0xc0de_0001;

struct Counter(u8);

impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_mul(13).wrapping_add(7);
            *b = self.0;
        }
    }
}

fn peer() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)), 500)
}

fn t(kind: u8, id: u16, key_len: Option<u16>) -> TransformSpec {
    TransformSpec { kind, id, key_len }
}

fn suite() -> IkeSuite {
    IkeSuite {
        encr: Encr::AesCbc { key_bits: 128 },
        prf: Prf::HmacSha256,
        integ: Some(Integ::HmacSha256_128),
        dh: DhGroup::Modp2048,
    }
}

fn header(exchange: Exchange, spi_r: u64, message_id: u32) -> Header {
    Header {
        spi_i: SPI_I,
        spi_r,
        next_payload: 0,
        version: IKE_VERSION,
        exchange,
        flags: Header::INITIATOR,
        message_id,
        length: 0,
    }
}

/// `payloads` inside an SK payload sealed with the initiator's keys.
fn protect(keys: &IkeKeys, h: Header, payloads: &[Payload]) -> Vec<u8> {
    let (first, plain) = message::encode_payloads(payloads);
    protect_raw(keys, h, first, &plain)
}

fn protect_raw(keys: &IkeKeys, h: Header, first: u8, plain: &[u8]) -> Vec<u8> {
    seal_encoded(
        &suite(),
        &keys.sk_ei,
        &keys.sk_ai,
        h,
        first,
        plain,
        &mut Counter(1),
    )
    .unwrap()
}

/// The responder's protected answer's payloads, opened with its keys.
fn unprotect(keys: &IkeKeys, bytes: &[u8]) -> Vec<Payload> {
    let m = message::parse(bytes).unwrap();
    assert!(m.header.is_response());
    let Some(Payload::Encrypted { first_payload, .. }) = m.payloads.last() else {
        panic!("{m:?}")
    };
    let mut buf = bytes.to_vec();
    let range = crypto::open_in_place(
        &suite(),
        &keys.sk_er,
        &keys.sk_ar,
        &mut buf,
        m.encrypted_at.unwrap(),
    )
    .unwrap();
    message::parse_payloads(*first_payload, &buf[range]).unwrap()
}

fn sent(out: &[Output]) -> Vec<u8> {
    out.iter()
        .find_map(|o| match o {
            Output::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .expect("an answer")
}

#[test]
fn a_whole_exchange_with_a_small_initiator() {
    let mut r = Responder::new(TunnelConfig::new(
        PSK,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    ));
    let mut rng = Counter(3);

    // IKE_SA_INIT.
    let (private, public) = DhPrivate::new(DhGroup::Modp2048, &[9u8; 64]).unwrap();
    let ni = vec![0x11u8; 32];
    let init = Message {
        header: header(Exchange::IkeSaInit, 0, 0),
        payloads: vec![
            Payload::Sa(vec![Proposal {
                num: 1,
                protocol: protocol::IKE,
                spi: Vec::new(),
                transforms: vec![
                    t(transform_type::ENCR, encr::AES_CBC, Some(128)),
                    t(transform_type::PRF, prf::HMAC_SHA2_256, None),
                    t(transform_type::INTEG, integ::HMAC_SHA2_256_128, None),
                    t(transform_type::DH, dh::MODP_2048, None),
                ],
            }]),
            Payload::Ke {
                group: dh::MODP_2048,
                data: public,
            },
            Payload::Nonce(ni.clone()),
        ],
        encrypted_at: None,
    }
    .encode();
    let answer = sent(&r.handle(peer(), false, &init, 0, &mut rng));
    let m = message::parse(&answer).unwrap();
    let spi_r = m.header.spi_r;
    let (ke, nr) = m.payloads.iter().fold((None, None), |(k, n), p| match p {
        Payload::Ke { data, .. } => (Some(data.clone()), n),
        Payload::Nonce(v) => (k, Some(v.clone())),
        _ => (k, n),
    });
    let (ke, nr) = (ke.unwrap(), nr.unwrap());
    let shared = private.shared(&ke).unwrap();
    let keys = IkeKeys::derive(&suite(), &ni, &nr, &shared, SPI_I, spi_r);

    // IKE_AUTH: the initiator signs its first message, the responder's
    // nonce and its ID.
    let idi = Identification {
        kind: id_type::IPV4_ADDR,
        data: vec![192, 0, 2, 2],
    };
    let auth = psk_auth(
        Prf::HmacSha256,
        PSK,
        &init,
        &nr,
        &keys.sk_pi,
        &id_body(&idi),
    );
    let request = protect(
        &keys,
        header(Exchange::IkeAuth, spi_r, 1),
        &[
            Payload::IdI(idi),
            Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: auth,
            },
            Payload::Sa(vec![Proposal {
                num: 1,
                protocol: protocol::ESP,
                spi: OUR_ESP_SPI.to_be_bytes().to_vec(),
                transforms: vec![
                    t(transform_type::ENCR, encr::AES_GCM_16, Some(128)),
                    t(transform_type::ESN, esn::NO, None),
                ],
            }]),
            // A customer gateway's LAN and its inside address, to the
            // VPC and our inside address (BGP runs between the two).
            Payload::TsI(vec![
                range(172, 16, 0, 0, 172, 16, 255, 255),
                host(169, 254, 10, 2),
            ]),
            Payload::TsR(vec![
                range(10, 0, 0, 0, 10, 0, 255, 255),
                host(169, 254, 10, 1),
            ]),
        ],
    );
    let out = r.handle(peer(), false, &request, 10, &mut rng);
    let answer = sent(&out);
    let inner = unprotect(&keys, &answer);
    // The responder's AUTH signs its first message, our nonce and its ID.
    let (idr, their_auth, chosen) = inner.iter().fold((None, None, None), |acc, p| match p {
        Payload::IdR(id) => (Some(id.clone()), acc.1, acc.2),
        Payload::Auth { data, .. } => (acc.0, Some(data.clone()), acc.2),
        Payload::Sa(v) => (acc.0, acc.1, Some(v[0].clone())),
        _ => acc,
    });
    let idr = idr.unwrap();
    assert_eq!(
        idr.data,
        vec![192, 0, 2, 1],
        "AWS's side is its outside address"
    );
    let mut m2 = Vec::new();
    // The response to IKE_SA_INIT, as sent.
    m2.extend_from_slice(&sent(&r.handle(peer(), false, &init, 20, &mut rng)));
    let want = psk_auth(Prf::HmacSha256, PSK, &m2, &ni, &keys.sk_pr, &id_body(&idr));
    assert_eq!(their_auth.unwrap(), want);
    // RFC 7296 §2.9: every selector asked for comes back (our side is
    // 0.0.0.0/0 here, so narrowing keeps each whole), not the first alone:
    // the customer's BGP over the inside addresses matches its policy.
    assert!(inner.iter().any(|p| matches!(p, Payload::TsI(v)
        if *v == [range(172, 16, 0, 0, 172, 16, 255, 255), host(169, 254, 10, 2)])));
    assert!(inner.iter().any(|p| matches!(p, Payload::TsR(v)
        if *v == [range(10, 0, 0, 0, 10, 0, 255, 255), host(169, 254, 10, 1)])));
    let responder_spi = u32::from_be_bytes(chosen.unwrap().spi.try_into().unwrap());
    assert!(r.is_established());

    // ESP from the initiator: its keys are the first half of KEYMAT.
    let transform = Transform::AesGcm16 { key_bits: 128 };
    let km = child_keymat(
        Prf::HmacSha256,
        &keys.sk_d,
        None,
        &ni,
        &nr,
        2 * transform.keymat_len(),
    );
    let mut to_responder =
        OutboundSa::new(responder_spi, transform, &km[..transform.keymat_len()]).unwrap();
    let mut wire = Vec::new();
    to_responder.seal(&[0x45; 40], IPV4, &mut wire).unwrap();
    let mut child = out
        .into_iter()
        .find_map(|o| match o {
            Output::ChildUp(c) => Some(*c),
            _ => None,
        })
        .expect("the child came up");
    assert_eq!(child.local_ts.len(), 2);
    assert_eq!(child.remote_ts.len(), 2);
    assert_eq!(child.inbound.spi(), responder_spi);
    assert_eq!(child.outbound.spi(), OUR_ESP_SPI);
    let opened = child.inbound.open(&mut wire).unwrap();
    assert_eq!(&wire[opened.inner], &[0x45; 40][..]);

    // RFC 7296 §2.1: the same request, the same answer.
    let again = sent(&r.handle(peer(), false, &request, 30, &mut rng));
    assert_eq!(again, answer);
    assert_eq!(
        r.counters.retransmits_answered, 2,
        "IKE_SA_INIT and IKE_AUTH"
    );

    // An authentic request whose payloads do not parse (a Nonce of 3
    // bytes): INVALID_SYNTAX (RFC 7296 §3.10.1).
    let bad = protect_raw(
        &keys,
        header(Exchange::Informational, spi_r, 2),
        message::payload_type::NONCE,
        &[0, 0, 0, 7, 1, 2, 3],
    );
    let inner = unprotect(&keys, &sent(&r.handle(peer(), false, &bad, 40, &mut rng)));
    assert!(matches!(&inner[..], [Payload::Notify(n)] if n.kind == notify_type::INVALID_SYNTAX));
    assert_eq!(r.counters.drops[IkeDrop::InvalidSyntax as usize], 1);

    // A message ID ahead of the window is dropped.
    let ahead = protect(&keys, header(Exchange::Informational, spi_r, 9), &[]);
    assert!(r.handle(peer(), false, &ahead, 50, &mut rng).is_empty());
    assert_eq!(r.counters.drops[IkeDrop::MessageId as usize], 1);

    // Deleting the IKE SA takes its child with it.
    let delete = protect(
        &keys,
        header(Exchange::Informational, spi_r, 3),
        &[Payload::Delete(Delete {
            protocol: protocol::IKE,
            spi_size: 0,
            spis: Vec::new(),
        })],
    );
    let out = r.handle(peer(), false, &delete, 60, &mut rng);
    assert!(unprotect(&keys, &sent(&out)).is_empty(), "an empty answer");
    assert!(
        out.iter().any(
            |o| matches!(o, Output::ChildDown { inbound_spi } if *inbound_spi == responder_spi)
        )
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::IkeDown(Down::Deleted)))
    );
    assert!(!r.is_established());
}

/// An IPv4 selector from `a.b.c.d` to `e.f.g.h`, any protocol and port.
#[allow(clippy::too_many_arguments)]
fn range(a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> TrafficSelector {
    TrafficSelector {
        start: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        end: IpAddr::V4(Ipv4Addr::new(e, f, g, h)),
        ..any_ipv4()
    }
}

/// A selector of one IPv4 address.
fn host(a: u8, b: u8, c: u8, d: u8) -> TrafficSelector {
    range(a, b, c, d, a, b, c, d)
}
