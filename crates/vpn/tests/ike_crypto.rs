//! IKEv2's cryptography against values computed independently (Python's
//! hmac and pow, from the RFC 7296 formulas): the key derivation, the
//! pre-shared-key AUTH, a MODP public value; both sides of every
//! Diffie-Hellman group agree; the MODP primes are safe primes; the SK
//! payload round-trips with GCM and CBC and refuses a forgery.

use num_bigint::BigUint;
use openvpc_vpn::ike::crypto::{
    CryptoError, DhGroup, DhPrivate, Encr, IkeKeys, IkeSuite, Integ, Prf, open_in_place, psk_auth,
    seal_in_place, sk_body,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn suite_cbc() -> IkeSuite {
    IkeSuite {
        encr: Encr::AesCbc { key_bits: 128 },
        prf: Prf::HmacSha256,
        integ: Some(Integ::HmacSha256_128),
        dh: DhGroup::Modp2048,
    }
}

#[test]
fn keys_and_auth_match_an_independent_computation() {
    let ni: Vec<u8> = (0..32).collect();
    let nr: Vec<u8> = (100..132).collect();
    let shared = vec![7u8; 256];
    let keys = IkeKeys::derive(
        &suite_cbc(),
        &ni,
        &nr,
        &shared,
        0x0102_0304_0506_0708,
        0x1112_1314_1516_1718,
    );
    assert_eq!(
        keys.sk_d,
        hex("ecf1a04c135a071d46d3f0f2d74bd74eb982cac36b9a02cead4b110363be0392")
    );
    assert_eq!(
        keys.sk_ai,
        hex("d46f7e3de1442ad346603e9466815781381a1e334fd88fa6e71c7ec72e883d4e")
    );
    assert_eq!(keys.sk_er, hex("6a22be185e4440599322f7f6514e698f"));
    assert_eq!(
        keys.sk_pr,
        hex("2e73684d474661c13812047fa39d6e201c2c256f085dbd03ca388370dff7059a")
    );
    let message: Vec<u8> = (0..50).collect();
    let auth = psk_auth(
        Prf::HmacSha256,
        b"a.secret_key.123",
        &message,
        &nr,
        &keys.sk_pi,
        &[1, 0, 0, 0, 198, 51, 100, 7],
    );
    assert_eq!(
        auth,
        hex("e974f558f14794bb2df53bce225a6921caade5a05c1e9176e434e0b40b6c7c16")
    );
}

#[test]
fn a_modp_public_value_is_two_to_the_secret() {
    let random: Vec<u8> = (1..=64).collect();
    let (_, public) = DhPrivate::new(DhGroup::Modp2048, &random).unwrap();
    assert_eq!(public.len(), 256);
    assert_eq!(&public[..16], &hex("ca737546c70b3a25a43d745a3e31526b")[..]);
    assert_eq!(&public[248..], &hex("46140888a7b411f8")[..]);
}

#[test]
fn both_sides_of_every_group_agree() {
    for group in DhGroup::ALL {
        let n = group.secret_len();
        let a_rand: Vec<u8> = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        let b_rand: Vec<u8> = (0..n).map(|i| (i * 13 + 5) as u8).collect();
        // P-521's scalars are 521 bits: the top byte must be 0 or 1.
        let fix = |mut r: Vec<u8>| {
            if group == DhGroup::Ecp521 {
                r[0] &= 1;
            }
            r
        };
        let (a, a_pub) = DhPrivate::new(group, &fix(a_rand)).unwrap();
        let (b, b_pub) = DhPrivate::new(group, &fix(b_rand)).unwrap();
        assert_eq!(a_pub.len(), group.public_len(), "{group:?}");
        let (ab, ba) = (a.shared(&b_pub).unwrap(), b.shared(&a_pub).unwrap());
        assert_eq!(ab, ba, "{group:?}");
        assert!(ab.iter().any(|b| *b != 0));
        // A value off the group is refused.
        let mut bad = b_pub.clone();
        bad.iter_mut().for_each(|b| *b = 0);
        assert_eq!(
            a.shared(&bad),
            Err(CryptoError::BadPublicValue),
            "{group:?}"
        );
        assert_eq!(
            a.shared(&b_pub[1..]),
            Err(CryptoError::BadPublicValue),
            "{group:?}: short"
        );
    }
}

#[test]
fn the_modp_primes_are_safe_primes() {
    let one = BigUint::from(1u8);
    for (group, bits) in [
        (DhGroup::Modp1024, 1024),
        (DhGroup::Modp1536, 1536),
        (DhGroup::Modp2048, 2048),
        (DhGroup::Modp3072, 3072),
        (DhGroup::Modp4096, 4096),
        (DhGroup::Modp6144, 6144),
        (DhGroup::Modp8192, 8192),
    ] {
        let p = group.prime().unwrap();
        assert_eq!(p.bits(), bits, "{group:?}");
        // Fermat tests: p and q = (p - 1) / 2 are (probable) primes, as
        // RFC 2409 and 3526 say; one mistyped digit would fail them.
        let q = (&p - &one) >> 1;
        assert_eq!(
            BigUint::from(2u8).modpow(&(&p - &one), &p),
            one,
            "{group:?} p"
        );
        assert_eq!(
            BigUint::from(3u8).modpow(&(&q - &one), &q),
            one,
            "{group:?} q"
        );
        // Both ends are 64 one bits.
        let ones = BigUint::from(u64::MAX);
        assert_eq!(&p & &ones, ones, "{group:?}");
        assert_eq!(&p >> (bits - 64), ones, "{group:?}");
    }
}

#[test]
fn the_sk_payload_round_trips_and_refuses_forgeries() {
    let suites = [
        suite_cbc(),
        IkeSuite {
            encr: Encr::AesGcm16 { key_bits: 256 },
            prf: Prf::HmacSha384,
            integ: None,
            dh: DhGroup::Ecp384,
        },
        IkeSuite {
            encr: Encr::AesCbc { key_bits: 256 },
            prf: Prf::HmacSha1,
            integ: Some(Integ::HmacSha1_96),
            dh: DhGroup::Modp1024,
        },
    ];
    for suite in suites {
        let keys = IkeKeys::derive(&suite, &[1; 16], &[2; 16], &[3; 128], 1, 2);
        let inner: Vec<u8> = (0..77).collect();
        let iv = vec![9u8; suite.encr.iv_len()];
        let body = sk_body(&suite, &iv, &inner).unwrap();
        // A 28-byte header and the SK generic header, then the body.
        let mut message = vec![0xaa; 28];
        message.extend_from_slice(&[0x21, 0, 0, 0]);
        message.extend_from_slice(&body);
        seal_in_place(&suite, &keys.sk_ei, &keys.sk_ai, &mut message, 28).unwrap();
        assert_ne!(&message[32 + iv.len()..32 + iv.len() + 77], &inner[..]);
        let mut copy = message.clone();
        let range = open_in_place(&suite, &keys.sk_ei, &keys.sk_ai, &mut copy, 28).unwrap();
        assert_eq!(&copy[range], &inner[..], "{suite:?}");
        // The responder's keys do not open the initiator's message.
        let mut wrong = message.clone();
        assert!(open_in_place(&suite, &keys.sk_er, &keys.sk_ar, &mut wrong, 28).is_err());
        // A changed header byte (authenticated data) is a forgery.
        let mut forged = message.clone();
        forged[3] ^= 1;
        assert_eq!(
            open_in_place(&suite, &keys.sk_ei, &keys.sk_ai, &mut forged, 28),
            Err(CryptoError::Integrity),
            "{suite:?}"
        );
        let mut short = message[..30].to_vec();
        assert!(open_in_place(&suite, &keys.sk_ei, &keys.sk_ai, &mut short, 28).is_err());
    }
}
