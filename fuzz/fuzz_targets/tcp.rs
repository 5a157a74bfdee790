#![no_main]
//! Fuzzes the tcp parser: any input must give Ok or a typed error, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_packet::tcp::TcpRepr::parse(data);
});
