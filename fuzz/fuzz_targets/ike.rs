#![no_main]
//! Fuzzes the IKEv2 message parser and the responder behind it: any
//! datagram must give a message or a typed error, and the responder an
//! answer or a counted drop, never a panic.

use openvpc_vpn::ike::responder::{Entropy, Responder, TunnelConfig};

struct Fixed;

impl Entropy for Fixed {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0x5a);
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(m) = openvpc_vpn::ike::message::parse(data) {
        let _ = openvpc_vpn::ike::message::parse(&m.encode());
    }
    let mut r = Responder::new(TunnelConfig::new(
        b"abcdefgh12345678",
        "192.0.2.1".parse().unwrap(),
    ));
    let _ = r.handle("192.0.2.2:500".parse().unwrap(), false, data, 0, &mut Fixed);
});
