//! `openvpc up`: a one-machine region in one process: the server on the
//! embedded store and the agent of this host, until Ctrl-C.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use openvpc_agent::{Agent, AgentConfig};

use super::agent::stop_on_signals;
use super::server::{ApiServer, bind_and_announce, open_region};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address to serve the EC2 API on.
    #[arg(long, default_value = "127.0.0.1:8773")]
    listen: SocketAddr,
    /// Where the store, the credentials and the agent's state live.
    #[arg(long, default_value = "./openvpc-data")]
    data_dir: PathBuf,
    /// The region; this host serves its zone REGIONa.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Only check for the programs instances need (ip, udhcpc and its hook
    /// script, ping, curl, python3) and stop, printing the `apt-get
    /// install` line, if one is missing. Without it, `up` installs the
    /// missing Debian packages with apt-get, saying so in one line.
    #[arg(long)]
    no_install: bool,
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        anyhow::bail!(
            "`openvpc up` runs instances as network namespaces on TAP devices, which needs root: \
             run it with sudo (or `openvpc server` for the API alone)"
        );
    }
    // Before anything serves: instances without their tools would be
    // shown running while they have no address.
    super::agent::ensure_instance_tools(args.no_install, "up")?;
    let region = open_region(&args.data_dir, None, &args.region, false, &[])?;
    let token = region.token.clone();
    let zone = format!("{}a", args.region);
    let stop = stop_on_signals()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (server, local) = runtime.block_on(async {
        let (listener, local) = bind_and_announce(args.listen, &region, &args.region).await?;
        anyhow::Ok((ApiServer::start(listener, region.state), local))
    })?;

    let host_id = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "local".to_owned());
    let agent = Agent::start(AgentConfig {
        server_url: format!("http://{local}"),
        token,
        host_id: host_id.clone(),
        availability_zone: zone.clone(),
        // One host: the underlay never leaves this machine.
        underlay_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        underlay_netns: None,
        state_dir: args.data_dir.join("agent"),
        worker_cpu: None,
        worker_busy_poll: openvpc_agent::worker::DEFAULT_BUSY_POLL,
        dhcp_client: openvpc_agent::dhcp_client_from_env(),
    })
    .context("starting this host's agent")?;
    while !agent.wait_synced(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("up: waiting for the agent to sync with the server");
    }
    eprintln!(
        "up: region {} with host {host_id} serving zone {zone}. Export the lines above, then try:\n\
         \x20   aws ec2 run-instances --image-id ami-12345678 --subnet-id \
         $(aws ec2 describe-subnets --filters Name=availability-zone,Values={zone} \
         --query 'Subnets[0].SubnetId' --output text)\n\
         \x20   openvpc exec <the instance ID> -- ip addr\n\
         Ctrl-C stops the region; instances and resources are kept for the next `up`.",
        args.region
    );
    super::agent::serve_until_stopped(&agent, &args.data_dir.join("agent"), &host_id, &stop);
    eprintln!("up: stopping");
    agent.stop();
    let result = runtime.block_on(server.stop());
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}
