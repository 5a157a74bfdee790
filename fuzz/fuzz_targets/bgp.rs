#![no_main]
//! Fuzzes the BGP message codec and a VPN tunnel's BGP endpoint behind
//! it: any bytes must decode to a message or a typed error (each naming
//! its NOTIFICATION), a decoded message must encode again, and the inside
//! endpoint must count what it refuses, never panic.

use std::time::Duration;

use openvpc_bgp::wire::Message;
use openvpc_vpn::inside::{BgpEndpoint, tunnel_session_config};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for four_octet in [false, true] {
        if let Ok(m) = Message::decode(data, four_octet) {
            let _ = m.encode(four_octet);
        }
    }
    let ours = "169.254.10.1".parse().unwrap();
    let Ok(mut endpoint) = BgpEndpoint::new(
        "169.254.10.0/30".parse().unwrap(),
        tunnel_session_config(ours, 64512, 65000),
    ) else {
        return;
    };
    let _ = endpoint.receive(data, Duration::from_millis(1));
    let _ = endpoint.poll(Duration::from_millis(2));
});
