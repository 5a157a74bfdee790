//! The `openvpc` binary: parses the command line and hands each subcommand to
//! the crate that does the work. No logic lives here.

mod cmd;

/// Only in builds for measuring (`--features count-allocations`), so that
/// `openvpc bench dataplane` can report allocations per packet; production
/// processes run on the system allocator. Why it is a build choice is in
/// `openvpc_dataplane::bench::alloc_counter`.
#[cfg(feature = "count-allocations")]
#[global_allocator]
static ALLOCATOR: openvpc_dataplane::bench::alloc_counter::CountingAllocator =
    openvpc_dataplane::bench::alloc_counter::CountingAllocator;

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
    /// Run the virtual router of this host: its instances (network
    /// namespaces on TAP devices) and its Geneve underlay, fed by a server.
    /// First installs the programs instances need if missing (see
    /// --no-install).
    Agent(cmd::agent::AgentArgs),
    /// Measure openvpc's components on this machine.
    Bench(cmd::bench::BenchArgs),
    /// Decode a frame given in hex and explain each header, inner and outer.
    Decode(cmd::decode::DecodeArgs),
    /// Run an edge node: translate between instances' private addresses
    /// and the region's public pool (public and Elastic IPs), between the
    /// Geneve underlay and an uplink TUN, fed by a server (needs root).
    Edge(cmd::edge::EdgeArgs),
    /// Run a node of the Hyperplane fleet: the NAT gateways whose shards
    /// hold it, their flows replicated to a buddy node, fed by a server.
    Hyperplane(cmd::hyperplane::HyperplaneArgs),
    /// Run a command inside an instance on this machine.
    Exec(cmd::exec::ExecArgs),
    /// Several hosts as network namespaces on this machine, for tests and demos.
    Lab(cmd::lab::LabArgs),
    /// Run the regional control plane: the EC2 API on the embedded store.
    Server(cmd::server::ServerArgs),
    /// Explain what the dataplane does with a packet, layer by layer, with
    /// the rule behind each decision (asks the server; nothing is sent).
    Trace(cmd::trace::TraceArgs),
    /// Run a one-machine region: the server on the embedded store and this
    /// host's agent, until Ctrl-C (needs root). First installs the programs
    /// instances need if missing (see --no-install).
    Up(cmd::up::UpArgs),
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
        Command::Agent(args) => cmd::agent::run(args),
        Command::Edge(args) => cmd::edge::run(args),
        Command::Exec(args) => cmd::exec::run(args),
        Command::Hyperplane(args) => cmd::hyperplane::run(args),
        Command::Lab(args) => cmd::lab::run(args),
        Command::Server(args) => cmd::server::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Trace(args) => cmd::trace::run(args),
        Command::Accounts(args) => cmd::server::accounts(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Decode(args) => cmd::decode::run(args),
    }
}
