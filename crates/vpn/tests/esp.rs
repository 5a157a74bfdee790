//! ESP SA pairs (RFC 4303, 4106, 3602, 4868): every transform AWS offers
//! in phase 2 round-trips; the wire layout is the RFCs' (checked against
//! the bare primitives); replays, forgeries, truncations and a used-up
//! sequence are counted drops; arbitrary bytes never panic.

use aes_gcm::Aes128Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use openvpc_vpn::esp::{
    EspDrop, IPV4, InboundSa, Integrity, NO_NEXT_HEADER, OutboundSa, Transform,
};
use proptest::prelude::*;
use sha2::Sha256;

const SPI: u32 = 0xc0ff_ee01;

fn all_transforms() -> Vec<Transform> {
    let mut all = vec![
        Transform::AesGcm16 { key_bits: 128 },
        Transform::AesGcm16 { key_bits: 256 },
    ];
    for key_bits in [128, 256] {
        for integrity in [
            Integrity::Sha1,
            Integrity::Sha256,
            Integrity::Sha384,
            Integrity::Sha512,
        ] {
            all.push(Transform::AesCbc {
                key_bits,
                integrity,
            });
        }
    }
    all
}

fn keymat(t: Transform, seed: u8) -> Vec<u8> {
    (0..t.keymat_len())
        .map(|i| seed.wrapping_add(i as u8))
        .collect()
}

fn pair(t: Transform) -> (OutboundSa, InboundSa) {
    (
        OutboundSa::new(SPI, t, &keymat(t, 7)).unwrap(),
        InboundSa::new(SPI, t, &keymat(t, 7)).unwrap(),
    )
}

/// An IPv4-looking inner packet of `len` bytes.
fn inner(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn every_transform_round_trips_packets_of_every_size() {
    for t in all_transforms() {
        let (mut out, mut inb) = pair(t);
        for len in [20, 21, 22, 23, 40, 64, 1399, 1400, 1500] {
            let packet = inner(len);
            let mut wire = Vec::new();
            out.seal(&packet, IPV4, &mut wire).unwrap();
            assert_eq!(wire.len(), len + t.overhead(len), "{t:?} {len}");
            // The body ends on a 4-byte boundary (RFC 4303 §2.4).
            let opened = inb.open(&mut wire).unwrap();
            assert_eq!(opened.next_header, IPV4);
            assert_eq!(&wire[opened.inner.clone()], &packet[..], "{t:?} {len}");
        }
        assert_eq!(out.counters.packets, 9);
        assert_eq!(inb.counters.packets, 9);
        assert_eq!(inb.highest(), 9);
    }
}

#[test]
fn gcm_packets_are_laid_out_as_rfc_4106_says() {
    let t = Transform::AesGcm16 { key_bits: 128 };
    let km = keymat(t, 1);
    let (key, salt) = km.split_at(16);
    let mut out = OutboundSa::new(SPI, t, &km).unwrap();
    let packet = inner(33);
    let mut wire = Vec::new();
    out.seal(&packet, IPV4, &mut wire).unwrap();
    // SPI, sequence 1, an 8-byte IV.
    assert_eq!(&wire[..4], &SPI.to_be_bytes());
    assert_eq!(&wire[4..8], &1u32.to_be_bytes());
    let iv = &wire[8..16];
    // The bare cipher: nonce = salt || IV, AAD = SPI || sequence, the
    // plaintext padded 1, 2, … so that with pad length and next header it
    // ends on a 4-byte boundary (33 + 1 + 2 = 36), then the 16-byte ICV.
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(iv);
    let mut plain = packet.clone();
    plain.extend_from_slice(&[1]);
    plain.extend_from_slice(&[1, IPV4]);
    assert_eq!(plain.len() % 4, 0);
    let aead = Aes128Gcm::new_from_slice(key).unwrap();
    let tag = aead
        .encrypt_inout_detached(
            &Nonce::<Aes128Gcm>::from(nonce),
            &wire[..8],
            plain.as_mut_slice().into(),
        )
        .unwrap();
    assert_eq!(&wire[16..16 + plain.len()], &plain[..]);
    assert_eq!(&wire[16 + plain.len()..], tag.as_slice());
}

#[test]
fn cbc_packets_carry_a_truncated_hmac_over_header_iv_and_ciphertext() {
    let t = Transform::AesCbc {
        key_bits: 128,
        integrity: Integrity::Sha256,
    };
    let km = keymat(t, 2);
    let auth = &km[16..];
    let mut out = OutboundSa::new(SPI, t, &km).unwrap();
    let mut wire = Vec::new();
    out.seal(&inner(100), IPV4, &mut wire).unwrap();
    let icv_at = wire.len() - 16;
    // 8 header, 16 IV, 100 + 2 padded to 112.
    assert_eq!(icv_at, 8 + 16 + 112);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(auth).unwrap();
    mac.update(&wire[..icv_at]);
    let full = mac.finalize().into_bytes();
    assert_eq!(&wire[icv_at..], &full[..16], "HMAC-SHA-256-128");
    // Two packets never share an IV.
    let mut second = Vec::new();
    out.seal(&inner(100), IPV4, &mut second).unwrap();
    assert_ne!(&wire[8..24], &second[8..24]);
}

#[test]
fn replays_forgeries_and_short_packets_are_counted_drops() {
    for t in all_transforms() {
        let (mut out, mut inb) = pair(t);
        let mut wire = Vec::new();
        out.seal(&inner(60), IPV4, &mut wire).unwrap();
        let copy = wire.clone();
        inb.open(&mut wire).unwrap();
        let mut again = copy.clone();
        assert_eq!(inb.open(&mut again), Err(EspDrop::Replayed), "{t:?}");

        let mut forged = Vec::new();
        out.seal(&inner(60), IPV4, &mut forged).unwrap();
        let last = forged.len() - 20;
        forged[last] ^= 1;
        assert_eq!(inb.open(&mut forged), Err(EspDrop::AuthFailed), "{t:?}");
        // A forged packet does not move the window: the real one passes.
        let mut real = Vec::new();
        out.seal(&inner(60), IPV4, &mut real).unwrap();
        assert_eq!(inb.open(&mut real).map(|o| o.seq), Ok(3), "{t:?}");

        let mut other_key = InboundSa::new(SPI, t, &keymat(t, 99)).unwrap();
        let mut next = Vec::new();
        out.seal(&inner(60), IPV4, &mut next).unwrap();
        assert_eq!(other_key.open(&mut next), Err(EspDrop::AuthFailed));

        let mut short = copy[..12].to_vec();
        assert_eq!(inb.open(&mut short), Err(EspDrop::Truncated));
        let mut wrong = copy.clone();
        wrong[0] ^= 0x80;
        assert_eq!(inb.open(&mut wrong), Err(EspDrop::WrongSpi));
        let mut zero = copy.clone();
        zero[4..8].copy_from_slice(&[0; 4]);
        assert_eq!(inb.open(&mut zero), Err(EspDrop::ZeroSequence));
        for reason in [
            EspDrop::Replayed,
            EspDrop::AuthFailed,
            EspDrop::Truncated,
            EspDrop::WrongSpi,
            EspDrop::ZeroSequence,
        ] {
            assert_eq!(inb.counters.dropped(reason), 1, "{t:?} {reason:?}");
        }
    }
}

#[test]
fn dummy_packets_are_dropped_on_arrival() {
    let (mut out, mut inb) = pair(Transform::AesGcm16 { key_bits: 256 });
    let mut wire = Vec::new();
    out.seal(&[], NO_NEXT_HEADER, &mut wire).unwrap();
    assert_eq!(inb.open(&mut wire), Err(EspDrop::Dummy));
}

#[test]
fn a_wrong_key_length_is_refused() {
    let t = Transform::AesGcm16 { key_bits: 128 };
    assert!(OutboundSa::new(SPI, t, &[0; 16]).is_err(), "no salt");
    let t = Transform::AesGcm16 { key_bits: 192 };
    assert!(OutboundSa::new(SPI, t, &[0; 28]).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), gcm in any::<bool>()) {
        let t = if gcm {
            Transform::AesGcm16 { key_bits: 128 }
        } else {
            Transform::AesCbc { key_bits: 256, integrity: Integrity::Sha512 }
        };
        let mut inb = InboundSa::new(u32::from_be_bytes([bytes.first().copied().unwrap_or(0), 0, 0, 0]), t, &keymat(t, 3)).unwrap();
        let mut b = bytes.clone();
        prop_assert!(inb.open(&mut b).is_err());
    }
}
