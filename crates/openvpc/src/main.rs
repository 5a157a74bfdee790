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
    /// Run the regional control plane: the EC2 API on the embedded store.
    Server(cmd::server::ServerArgs),
    /// Manage the accounts of a region.
    Accounts(cmd::server::AccountsArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Server(args) => cmd::server::run(args),
        Command::Accounts(args) => cmd::server::accounts(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Decode(args) => cmd::decode::run(args),
    }
}
