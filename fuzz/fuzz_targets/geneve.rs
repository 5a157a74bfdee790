#![no_main]
//! Fuzzes the geneve parser: any input must give Ok or a typed error, never a panic.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = openvpc_packet::geneve::GeneveRepr::parse(data);
    if let Ok(d) = openvpc_packet::geneve::decap(data) {
        let _ = openvpc_packet::flow::parse_ethernet(d.inner());
    }
});
