//! `openvpc up`: a one-machine region in one process: the server on the
//! embedded store, the agent of this host, an edge node and a hyperplane
//! node (NAT gateways), until Ctrl-C.
//!
//! The edge's uplink is a TUN device in this host's namespace (`pub0`) with
//! the region's public pool routed to it, so this host reaches instances'
//! public IPs, and instances with public IPs reach this host. A TUN rather
//! than a veth pair into a namespace of its own: the agent's underlay is on
//! loopback, which another namespace cannot reach, and one device with the
//! pool routed to it is all the host needs. Reaching further (whatever the
//! host reaches) is the operator's choice, one command:
//! `iptables -t nat -A POSTROUTING -s POOL ! -d POOL -j MASQUERADE` (with
//! `net.ipv4.ip_forward=1`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use openvpc_agent::{Agent, AgentConfig};
use openvpc_edge::{EdgeNode, EdgeNodeConfig};
use openvpc_hyperplane::{HyperplaneNode, HyperplaneNodeConfig};

use super::agent::stop_on_signals;
use super::server::{ApiServer, bind_and_announce, open_region};

/// The in-process edge node's underlay address (port 6081, like the agent's
/// on 127.0.0.1).
const EDGE_UNDERLAY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The in-process hyperplane node's underlay address (ports 6081, 6082,
/// and 9108 for `/metrics`).
const HYPERPLANE_UNDERLAY: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

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
    let region = open_region(
        &args.data_dir,
        None,
        &args.region,
        false,
        &[],
        openvpc_control::fleet::DeliveryConfig::default(),
    )?;
    let token = region.token.clone();
    let edge_token = token.clone();
    let hyperplane_token = token.clone();
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
        dns_upstream: None,
    })
    .context("starting this host's agent")?;
    while !agent.wait_synced(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("up: waiting for the agent to sync with the server");
    }
    let edge = EdgeNode::start(EdgeNodeConfig::new(
        &format!("http://{local}"),
        &edge_token,
        &format!("{host_id}-edge"),
        // The agent's underlay is 127.0.0.1:6081; the edge's is another
        // loopback address on the same port.
        IpAddr::V4(EDGE_UNDERLAY),
        args.data_dir.join("edge"),
    ))
    .context("starting the edge node (its uplink is the TUN device pub0)")?;
    while !edge.wait_ready(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("up: waiting for the edge node to sync with the server");
    }
    // One node: a NAT gateway's shard is this node alone (no buddy to
    // fail over to, as a one-machine region has no second machine).
    let hyperplane = HyperplaneNode::start(HyperplaneNodeConfig::new(
        &format!("http://{local}"),
        &hyperplane_token,
        &format!("{host_id}-hyperplane"),
        IpAddr::V4(HYPERPLANE_UNDERLAY),
        args.data_dir.join("hyperplane"),
    ))
    .context("starting the hyperplane node")?;
    while !hyperplane.wait_ready(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("up: waiting for the hyperplane node to sync with the server");
    }
    eprintln!(
        "up: region {} with host {host_id} serving zone {zone}. Export the lines above, then try:\n\
         \x20   aws ec2 run-instances --image-id ami-12345678 --subnet-id \
         $(aws ec2 describe-subnets --filters Name=availability-zone,Values={zone} \
         --query 'Subnets[0].SubnetId' --output text)\n\
         \x20   openvpc exec <the instance ID> -- ip addr\n\
         Instances with a public IP (an Elastic IP, or MapPublicIpOnLaunch) in a subnet\n\
         routed to an attached internet gateway reach this host, and this host reaches them,\n\
         through the edge node's uplink pub0; instances in private subnets routed to a NAT\n\
         gateway reach it through the hyperplane node ({HYPERPLANE_UNDERLAY}, metrics on :9108).\n\
         To let them reach whatever this host reaches:\n\
         \x20   sysctl -w net.ipv4.ip_forward=1\n\
         \x20   iptables -t nat -A POSTROUTING -s <the public pool> ! -d <the public pool> -j MASQUERADE\n\
         Ctrl-C stops the region; instances and resources are kept for the next `up`.",
        args.region
    );
    super::agent::serve_until_stopped(&agent, &args.data_dir.join("agent"), &host_id, &stop);
    eprintln!("up: stopping");
    hyperplane.stop();
    edge.stop();
    agent.stop();
    let result = runtime.block_on(server.stop());
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}
