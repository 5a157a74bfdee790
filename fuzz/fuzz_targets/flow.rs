#![no_main]
//! Fuzzes the flow parser: any input must give Ok or a typed error, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_packet::flow::parse_ethernet(data);
});
