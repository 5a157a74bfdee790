//! The `openvpc` binary: parses the command line and hands each subcommand to
//! the crate that does the work. No logic lives here.

mod cmd;

#[global_allocator]
static ALLOCATOR: cmd::alloc_counter::CountingAllocator = cmd::alloc_counter::CountingAllocator;

use clap::{Parser, Subcommand};

/// openvpc: isolated virtual networks for ordinary Linux hosts, driven
/// through the EC2 API.
#[derive(Debug, Parser)]
#[command(name = "openvpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure openvpc's components on this machine.
    Bench(cmd::bench::BenchArgs),
    /// Decode a frame given in hex and explain each header, inner and outer.
    Decode(cmd::decode::DecodeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(args) => cmd::bench::run(args),
        Command::Decode(args) => cmd::decode::run(args),
    }
}
