//! `openvpc decode HEX`: arguments and printing only; the explaining (each
//! header, unwrapping Geneve and VXLAN) is `openvpc_packet::explain`.

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The frame as hex, starting at the Ethernet header; spaces and colons are ignored.
    hex: Vec<String>,
}

pub fn run(args: DecodeArgs) -> anyhow::Result<()> {
    let text: String = args
        .hex
        .concat()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let frame = hex::decode(&text).context("the frame must be hex digits, two per byte")?;
    print!("{}", openvpc_packet::explain::explain(&frame));
    Ok(())
}
