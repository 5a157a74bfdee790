#![no_main]
//! Fuzzes the ipv6 parser: any input must give Ok or a typed error, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_packet::ipv6::Ipv6Repr::parse(data);
});
