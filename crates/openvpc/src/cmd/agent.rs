//! `openvpc agent`: the virtual router of one host, its instances and its
//! underlay, fed by the regional server.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use openvpc_agent::{Agent, AgentConfig, AgentHandle};

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The regional server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8773")]
    server: String,
    /// This host's name in the region (unique).
    #[arg(long)]
    host_id: String,
    /// The availability zone this host serves, e.g. us-east-1a.
    #[arg(long)]
    az: String,
    /// The address other hosts reach this one's Geneve port (6081) at.
    #[arg(long)]
    underlay_ip: IpAddr,
    /// The network namespace that holds --underlay-ip, if not this one.
    #[arg(long)]
    underlay_netns: Option<String>,
    /// Where the agent keeps the list of the instances it runs.
    #[arg(long, default_value = "./openvpc-agent")]
    state_dir: PathBuf,
    /// The server's agent token (`agent-token` in the server's --data-dir).
    #[arg(long, default_value = "./openvpc-data/agent-token")]
    token_file: PathBuf,
    /// Pin the dataplane thread to this CPU (default: let it float).
    #[arg(long)]
    worker_cpu: Option<usize>,
    /// Microseconds the dataplane thread keeps polling after its last frame
    /// before it sleeps (0: sleep at once). Polling spares the senders a
    /// wake-up per frame, which dominates latency on virtual machines; an
    /// idle host does not spin.
    #[arg(long, default_value_t = 200)]
    worker_busy_poll_us: u64,
    /// Only check for the programs instances need (ip, udhcpc and its hook
    /// script, ping, curl, python3) and stop, printing the `apt-get
    /// install` line, if one is missing. Without it, a root agent with
    /// apt-get installs the missing Debian packages itself.
    #[arg(long)]
    no_install: bool,
    /// The region's upstream resolver (`IP:PORT`, reached from the
    /// underlay): the VPC resolvers send it the names they do not hold.
    /// Without it, those names get SERVFAIL.
    #[arg(long, value_name = "IP:PORT")]
    dns_upstream: Option<std::net::SocketAddr>,
}

/// Checks (and, unless `no_install`, installs as root) the programs
/// instances need, before anything serves: a missing DHCP client would
/// otherwise leave every instance without an address.
pub fn ensure_instance_tools(no_install: bool, who: &str) -> anyhow::Result<()> {
    use openvpc_agent::tools::{Policy, ensure};
    let policy = if no_install {
        Policy::CheckOnly
    } else {
        Policy::Install
    };
    ensure(policy, |line| eprintln!("{who}: {line}"))?;
    Ok(())
}

/// How often the worker's counters are written to the state directory.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Reads the token the server wrote.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the agent token {}: point --token-file at the `agent-token` file in the server's --data-dir",
            path.display()
        )
    })?;
    Ok(token.trim().to_owned())
}

/// Stops on SIGINT or SIGTERM.
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    Ok(stop)
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    ensure_instance_tools(args.no_install, &format!("agent {}", args.host_id))?;
    let cfg = AgentConfig {
        server_url: args.server.clone(),
        token: read_token(&args.token_file)?,
        host_id: args.host_id.clone(),
        availability_zone: args.az.clone(),
        underlay_ip: args.underlay_ip,
        underlay_netns: args.underlay_netns.clone(),
        state_dir: args.state_dir.clone(),
        worker_cpu: args.worker_cpu,
        worker_busy_poll: Duration::from_micros(args.worker_busy_poll_us),
        dhcp_client: openvpc_agent::dhcp_client_from_env(),
        dns_upstream: args.dns_upstream,
    };
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let stop = stop_on_signals()?;
    let agent = Agent::start(cfg).context("starting the agent (are you root?)")?;
    // Ready means registered and running the server's state for this host,
    // so `lab up` can hand the region to clients.
    while !agent.wait_synced(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            agent.stop();
            return Ok(());
        }
        eprintln!(
            "agent {}: waiting for the server at {}",
            args.host_id, args.server
        );
    }
    std::fs::write(args.state_dir.join(openvpc_lab::READY_FILE), b"")
        .with_context(|| format!("writing to {}", args.state_dir.display()))?;
    eprintln!(
        "agent {} ({}) serving; underlay {}:6081",
        args.host_id, args.az, args.underlay_ip
    );
    serve_until_stopped(&agent, &args.state_dir, &args.host_id, &stop);
    agent.stop();
    Ok(())
}

/// Keeps a started agent running until `stop` is set, rewriting its
/// counters to `state_dir/status.json` every [`STATUS_EVERY`] for
/// operators (`openvpc lab status`, or the file itself).
pub fn serve_until_stopped(
    agent: &AgentHandle,
    state_dir: &Path,
    host_id: &str,
    stop: &AtomicBool,
) {
    let mut next_status = std::time::Instant::now();
    let mut status_failed = false;
    while !stop.load(Ordering::Relaxed) {
        if std::time::Instant::now() >= next_status {
            next_status = std::time::Instant::now() + STATUS_EVERY;
            match agent.write_status(state_dir) {
                Ok(()) => status_failed = false,
                Err(e) if !status_failed => {
                    status_failed = true;
                    eprintln!(
                        "agent {host_id}: could not write {}: {e}",
                        state_dir.join(openvpc_agent::STATUS_FILE).display()
                    );
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
