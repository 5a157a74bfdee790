#![no_main]
//! Fuzzes ESP's inbound SAs and the UDP 4500 classifier: any packet is
//! opened or refused with a counted reason, never a panic.

use openvpc_vpn::esp::{InboundSa, Integrity, Transform};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_vpn::natt::classify(data);
    let spi = openvpc_vpn::esp::spi_of(data).unwrap_or(0);
    for t in [
        Transform::AesGcm16 { key_bits: 128 },
        Transform::AesCbc {
            key_bits: 256,
            integrity: Integrity::Sha256,
        },
    ] {
        let key = vec![7u8; t.keymat_len()];
        let Ok(mut sa) = InboundSa::new(spi, t, &key) else {
            continue;
        };
        let mut packet = data.to_vec();
        let _ = sa.open(&mut packet);
    }
});
