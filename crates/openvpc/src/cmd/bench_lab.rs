//! `openvpc bench lab`: arguments only; the measuring is in
//! `openvpc-bench-lab`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, ValueEnum};
use openvpc_bench_lab::{BenchConfig, compare_table, parse_baseline, run_baseline, table};

/// Where each host's dataplane thread runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkerPin {
    /// h1's worker on CPU0 with the clients, h2's on CPU1 with the servers:
    /// each worker shares a CPU with its own instance.
    Local,
    /// h1's worker on CPU1, h2's on CPU0: each worker on the other CPU.
    Swap,
    /// Both float.
    None,
}

#[derive(Debug, Args)]
pub struct LabBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds per test (the baseline's DUR).
    #[arg(long, default_value_t = 10)]
    secs: u32,
    /// Flood pings for the ICMP RTT (the baseline's PINGS).
    #[arg(long, default_value_t = 2000)]
    pings: u32,
    /// Let the clients and servers float instead of CPU0/CPU1 (PIN=0).
    #[arg(long)]
    no_pin: bool,
    /// Where the agents' dataplane threads run.
    #[arg(long, value_enum, default_value_t = WorkerPin::Local)]
    worker_pin: WorkerPin,
    /// Also run the baseline script and print ours, the kernel's and OVS's
    /// figures side by side with ratios.
    #[arg(long)]
    compare_kernel: bool,
    /// The baseline script --compare-kernel runs.
    #[arg(long, default_value = "/work/shared/bench/kernel-baseline.sh")]
    baseline_script: PathBuf,
    /// Compare with this baseline JSON instead of running the script.
    #[arg(long)]
    baseline_json: Option<PathBuf>,
    /// Leave the lab running afterwards (for profiling).
    #[arg(long)]
    keep: bool,
    /// The agents' --worker-busy-poll-us (their default when not given).
    #[arg(long)]
    worker_busy_poll_us: Option<u64>,
}

pub fn run(args: LabBenchArgs) -> anyhow::Result<()> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))
            .context("installing a signal handler")?;
    }
    let mut cfg = BenchConfig::new(std::env::current_exe().context("finding the openvpc binary")?);
    cfg.secs = args.secs.max(1);
    cfg.pings = args.pings.max(1);
    cfg.pin = !args.no_pin;
    cfg.keep = args.keep;
    let cpus = match args.worker_pin {
        WorkerPin::Local => Some(("0", "1")),
        WorkerPin::Swap => Some(("1", "0")),
        WorkerPin::None => None,
    };
    let mut agent_args: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (host, cpu) in [("h1", cpus.map(|c| c.0)), ("h2", cpus.map(|c| c.1))] {
        let a = agent_args.entry(host.to_owned()).or_default();
        if let Some(cpu) = cpu {
            a.extend(["--worker-cpu".to_owned(), cpu.to_owned()]);
        }
        if let Some(us) = args.worker_busy_poll_us {
            a.extend(["--worker-busy-poll-us".to_owned(), us.to_string()]);
        }
    }
    cfg.agent_args = agent_args;
    let ours = openvpc_bench_lab::run(&cfg, &interrupted, |s| eprintln!("bench lab: {s}"))?;
    let baseline = if let Some(path) = &args.baseline_json {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Some(parse_baseline(&text).with_context(|| format!("reading {}", path.display()))?)
    } else if args.compare_kernel {
        Some(run_baseline(&args.baseline_script, cfg.secs, |s| {
            eprintln!("bench lab: {s}")
        })?)
    } else {
        None
    };
    if args.json {
        let mut v = serde_json::to_value(&ours)?;
        if let Some(b) = &baseline {
            v["baseline"] = serde_json::to_value(b)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(b) = &baseline {
        print!("{}", compare_table(&ours, b));
    } else {
        print!("{}", table(&ours));
    }
    Ok(())
}
