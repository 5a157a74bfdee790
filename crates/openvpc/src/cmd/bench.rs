//! `openvpc bench`: arguments and printing only. The measuring lives with
//! what is measured: `openvpc_packet::bench`, `openvpc_dataplane::bench`,
//! `openvpc_edge::bench`, `openvpc_hyperplane::bench`,
//! `openvpc_control::bench` and `openvpc-bench-lab`. The statistically
//! careful versions are the criterion benches (`cargo bench`).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// The packet layer: Geneve decap to the inner flow key, and the flow hash.
    Packet {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure each figure, in seconds.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// The virtual router: fast path at 1k and 1M flows, slow path, memory
    /// and allocations per flow (the goals are in DESIGN.md). Allocations
    /// are counted only in a build with `--features count-allocations`.
    Dataplane {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure each fast-path figure, in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Flows in the large-table measurement.
        #[arg(long, default_value_t = 1_000_000)]
        flows: usize,
        /// The CPU the measuring thread is pinned to (default: the last
        /// one). A thread the scheduler moves between CPUs makes the
        /// flow-log comparison (a few percent) drown in noise.
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// The edge: public <-> private translation and Geneve encapsulation per
    /// core, with many public addresses held (the goal: 5 Mpps at 1M).
    Edge {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure each direction, in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Public addresses held.
        #[arg(long, default_value_t = 1_000_000)]
        addresses: usize,
    },
    /// The hyperplane's NAT core on one core: new connections per second,
    /// translated packets of established flows, bytes per flow with its
    /// replica, and the replication record's cost (the goals: 1 M/s,
    /// 5 Mpps, 256 B); a new flow's record to a buddy over loopback (the
    /// goal: 50 µs); the load balancer core's new flows per second (the
    /// goal: 1 M/s).
    Hyperplane {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// How long to measure the packet rate, in seconds.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Flows in the table.
        #[arg(long, default_value_t = 1_000_000)]
        flows: usize,
    },
    /// Shuffle sharding and Maglev on a hyperplane fleet (computed, not
    /// timed). The blast radius when one tenant poisons its shard (all k of
    /// its nodes down): the share of the other tenants fully affected (all
    /// of their nodes down) and partially affected (some), measured on
    /// random shards and on the shards the fleet gives out (which keep
    /// AWS's rule that two tenants share at most half a shard), next to the
    /// hypergeometric closed form P(full) = 1/C(N,k),
    /// P(any) = 1 - C(N-k,k)/C(N,k). Then Maglev's disruption: the share of
    /// flows that move when one node leaves or joins, inside a shard (k
    /// nodes) and over the fleet (N nodes). Without --nodes and --k it shows
    /// the two examples of spec section 14: N=8 k=2 and N=100 k=5.
    Shards {
        /// Print one JSON object (an array of them for the two examples)
        /// instead of a table.
        #[arg(long)]
        json: bool,
        /// Nodes in the fleet (N). With --k alone, 8.
        #[arg(long)]
        nodes: Option<usize>,
        /// Nodes per tenant's shard (k). With --nodes alone, 2.
        #[arg(long)]
        k: Option<usize>,
        /// Tenants (NAT gateways) given shards.
        #[arg(long, default_value_t = 1_000)]
        tenants: usize,
        /// Monte Carlo draws of the whole tenant population on random shards.
        #[arg(long, default_value_t = 1_000)]
        trials: usize,
    },
    /// The EC2 API through HTTP with SigV4, on a store holding many VPCs,
    /// subnets and security-group rules of many accounts: p50 and p99
    /// latency of DescribeVpcs (filtered), CreateSubnet and
    /// AuthorizeSecurityGroupIngress.
    Api {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// VPCs, subnets and rules each in the store before measuring.
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        /// Calls measured per action (CreateSubnet is capped by its quota).
        #[arg(long, default_value_t = 500)]
        samples: usize,
    },
    /// Real traffic between two instances on two lab hosts, measured as
    /// bench/kernel-baseline.sh measures the kernel and Open vSwitch:
    /// iperf3 TCP and UDP 64 B, sockperf TCP ping-pong (needs root).
    Lab(super::bench_lab::LabBenchArgs),
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        Target::Lab(lab) => super::bench_lab::run(lab),
        Target::Packet { json, seconds } => {
            packet(json, Duration::from_secs_f64(seconds.max(0.01)))
        }
        Target::Dataplane {
            json,
            seconds,
            flows,
            cpu,
        } => dataplane(
            cpu,
            json,
            Duration::from_secs_f64(seconds.max(0.01)),
            flows.max(1),
        ),
        Target::Api {
            json,
            objects,
            samples,
        } => api(json, objects, samples.max(1)),
        Target::Edge {
            json,
            seconds,
            addresses,
        } => edge(json, Duration::from_secs_f64(seconds.max(0.01)), addresses),
        Target::Hyperplane {
            json,
            seconds,
            flows,
        } => hyperplane(json, Duration::from_secs_f64(seconds.max(0.01)), flows),
        Target::Shards {
            json,
            nodes,
            k,
            tenants,
            trials,
        } => shards(json, nodes, k, tenants.max(2), trials.max(1)),
    }
}

/// Progress goes to stderr, and only with the table: `--json` prints the
/// one object and nothing else.
fn progress(json: bool) -> impl FnMut(&str) {
    move |m| {
        if !json {
            eprintln!("{m}");
        }
    }
}

fn packet(json: bool, budget: Duration) -> anyhow::Result<()> {
    if !json {
        eprintln!("measuring for {:.1}s per figure...", budget.as_secs_f64());
    }
    let figures = openvpc_packet::bench::run(budget).context("building the sample frame")?;
    if json {
        println!("{}", figures.json());
    } else {
        print!("{}", figures.table());
    }
    Ok(())
}

fn dataplane(cpu: Option<usize>, json: bool, budget: Duration, flows: usize) -> anyhow::Result<()> {
    let last = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    openvpc_agent::worker::pin_to(cpu.unwrap_or(last));
    let figures = openvpc_dataplane::bench::run(budget, flows, &mut progress(json))?;
    if json {
        println!("{}", figures.json());
    } else {
        print!("{}", figures.table());
    }
    Ok(())
}

fn edge(json: bool, budget: Duration, addresses: usize) -> anyhow::Result<()> {
    progress(json)(&format!("holding {addresses} public addresses..."));
    let figures = openvpc_edge::bench::run(budget, addresses)?;
    if json {
        println!("{}", figures.json());
    } else {
        print!("{}", figures.table());
    }
    Ok(())
}

fn shards(
    json: bool,
    nodes: Option<usize>,
    k: Option<usize>,
    tenants: usize,
    trials: usize,
) -> anyhow::Result<()> {
    let fleets = match (nodes, k) {
        (None, None) => vec![(8, 2), (100, 5)],
        (nodes, k) => vec![(
            nodes.unwrap_or(8),
            k.unwrap_or(openvpc_hyperplane::shard::DEFAULT_SHARD_SIZE),
        )],
    };
    let mut all = Vec::new();
    for (nodes, k) in fleets {
        progress(json)(&format!("N = {nodes}, k = {k}: computing..."));
        let figures = openvpc_hyperplane::bench::run(nodes, k, tenants, trials)
            .with_context(|| format!("shards of {k} on {nodes} nodes"))?;
        if !json {
            if !all.is_empty() {
                println!();
            }
            print!("{}", figures.table());
        }
        all.push(figures.json());
    }
    if json {
        match all.as_slice() {
            [one] => println!("{one}"),
            _ => println!("{}", serde_json::Value::Array(all)),
        }
    }
    Ok(())
}

fn hyperplane(json: bool, budget: Duration, flows: usize) -> anyhow::Result<()> {
    progress(json)(&format!("opening {flows} NAT flows..."));
    let figures = openvpc_hyperplane::nat::bench::run(budget, flows)?;
    progress(json)("replicating new flows' records to a buddy over loopback...");
    let replication = openvpc_hyperplane::serve::bench::run(20_000)?;
    progress(json)(&format!("opening {flows} load balancer flows..."));
    let nlb = openvpc_hyperplane::nlb::bench::run(flows)?;
    if json {
        let mut all = figures.json();
        all["replication"] = replication.json();
        all["nlb"] = nlb.json();
        println!("{all}");
    } else {
        print!("{}{}{}", figures.table(), replication.table(), nlb.table());
    }
    Ok(())
}

fn api(json: bool, objects: usize, samples: usize) -> anyhow::Result<()> {
    let figures = openvpc_control::bench::run(objects, samples, &mut progress(json))?;
    if json {
        println!("{}", figures.json());
    } else {
        print!("{}", figures.table());
    }
    Ok(())
}
