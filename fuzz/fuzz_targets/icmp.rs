#![no_main]
//! Fuzzes the icmp parser: any input must give Ok or a typed error, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_packet::icmpv4::parse(data);
    let _ = openvpc_packet::flow::quoted_flow(data, 4);
    let _ = openvpc_packet::flow::quoted_flow(data, 6);
});
