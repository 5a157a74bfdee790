//! `openvpc edge`: an edge node of the region, translating between the
//! VPCs' private addresses and the public pool, fed by the regional server.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use openvpc_edge::bgp::{BgpConfig, DEFAULT_HOLD_TIME};
use openvpc_edge::{EdgeNode, EdgeNodeConfig};

use super::agent::{read_token, stop_on_signals};
use super::metrics_addr::{MetricsAddr, parse_metrics};

#[derive(Debug, Args)]
pub struct EdgeArgs {
    /// The regional server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8773")]
    server: String,
    /// This edge node's name in the region (unique).
    #[arg(long)]
    edge_id: String,
    /// The address hosts send this node Geneve traffic for the outside to
    /// (port 6081); it must be on an interface of --netns.
    #[arg(long)]
    underlay_ip: IpAddr,
    /// The network namespace that holds --underlay-ip and where the uplink
    /// TUN is made, if not this one. Its kernel forwards what the edge
    /// translates: it needs a default route to the outside and
    /// net.ipv4.ip_forward=1.
    #[arg(long)]
    netns: Option<String>,
    /// The uplink TUN device: the region's public pool is routed to it,
    /// and translated packets leave through it.
    #[arg(long, default_value = openvpc_edge::node::DEFAULT_TUN)]
    tun: String,
    /// Where the node writes `ready` (once registered with the region's
    /// table applied) and `status.json` (its counters, every second).
    #[arg(long, default_value = "./openvpc-edge")]
    state_dir: PathBuf,
    /// The server's agent token (`agent-token` in the server's --data-dir).
    #[arg(long, default_value = "./openvpc-data/agent-token")]
    token_file: PathBuf,
    /// The upstream router to announce the region's public pool to over
    /// BGP (port 179, connected from --netns), with our address of the
    /// session as the next hop. Announced once the region's table is
    /// applied; withdrawn (Cease) on a clean stop.
    #[arg(long, requires_all = ["bgp_peer_as", "bgp_as"])]
    bgp_peer: Option<Ipv4Addr>,
    /// The router's AS number.
    #[arg(long, requires = "bgp_peer")]
    bgp_peer_as: Option<u32>,
    /// This edge's AS number.
    #[arg(long, requires = "bgp_peer")]
    bgp_as: Option<u32>,
    /// The BGP hold time we propose, in seconds (0, or 3 and more): how
    /// long the router keeps the path of an edge it no longer hears from.
    #[arg(long, default_value_t = DEFAULT_HOLD_TIME, value_parser = parse_hold_time)]
    bgp_hold_time: u16,
    /// Where Prometheus scrapes `/metrics`: translation counters and
    /// drops, the BGP announcement, and per VPN tunnel AWS's CloudWatch
    /// metrics (TunnelState, TunnelDataIn, TunnelDataOut) and ours
    /// (default: --underlay-ip, port 9109, in --netns; the hyperplane
    /// node's is 9108); `off` serves none.
    #[arg(long, value_name = "ADDRESS:PORT|off", value_parser = parse_metrics)]
    metrics: Option<MetricsAddr>,
}

/// A hold time RFC 4271 allows: 0 or at least 3 seconds.
fn parse_hold_time(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(v) if v == 0 || v >= 3 => Ok(v),
        Ok(v) => Err(format!(
            "{v} s: a hold time is 0 or at least 3 seconds (RFC 4271)"
        )),
        Err(e) => Err(e.to_string()),
    }
}

pub fn run(args: EdgeArgs) -> anyhow::Result<()> {
    let mut cfg = EdgeNodeConfig::new(
        &args.server,
        &read_token(&args.token_file)?,
        &args.edge_id,
        args.underlay_ip,
        args.state_dir.clone(),
    );
    cfg.netns = args.netns.clone();
    cfg.tun_name = args.tun.clone();
    cfg.metrics = MetricsAddr::resolve(
        args.metrics,
        openvpc_edge::metrics::default_addr(args.underlay_ip),
    );
    if let (Some(peer), Some(peer_as), Some(local_as)) =
        (args.bgp_peer, args.bgp_peer_as, args.bgp_as)
    {
        cfg.bgp = Some(BgpConfig {
            peer,
            peer_as,
            local_as,
            hold_time: args.bgp_hold_time,
        });
    }
    let stop = stop_on_signals()?;
    let node = EdgeNode::start(cfg).context("starting the edge node (are you root?)")?;
    // The node writes `ready` itself; this only tells the operator.
    while !node.wait_ready(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            node.stop();
            return Ok(());
        }
        let s = node.status();
        eprintln!(
            "edge {}: waiting for the server at {} (registered: {}, table: {})",
            args.edge_id,
            args.server,
            s.registered,
            if s.synced { "applied" } else { "not yet" }
        );
    }
    eprintln!(
        "edge {} serving; underlay {}:6081, uplink {}{}{}",
        args.edge_id,
        args.underlay_ip,
        args.tun,
        node.metrics_addr()
            .map(|a| format!(", metrics http://{a}/metrics"))
            .unwrap_or_default(),
        args.netns
            .as_deref()
            .map(|ns| format!(" in {ns}"))
            .unwrap_or_default()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    node.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_time_is_0_or_at_least_3() {
        assert!(parse_hold_time("2").is_err());
        assert_eq!(parse_hold_time("0"), Ok(0));
        assert_eq!(parse_hold_time("3"), Ok(3));
    }
}
