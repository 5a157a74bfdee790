//! `openvpc hyperplane`: a node of the region's Hyperplane fleet, serving
//! the NAT gateways whose shuffle shards hold it, fed by the regional
//! server.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use openvpc_hyperplane::{HyperplaneNode, HyperplaneNodeConfig};

use super::agent::{read_token, stop_on_signals};
use super::metrics_addr::{MetricsAddr, parse_metrics};

#[derive(Debug, Args)]
pub struct HyperplaneArgs {
    /// The regional server's URL.
    #[arg(long, default_value = "http://127.0.0.1:8773")]
    server: String,
    /// This node's name in the region (unique among hyperplane nodes).
    #[arg(long)]
    node_id: String,
    /// The address hosts and edges send this node Geneve to (port 6081)
    /// and the other nodes replicate flows to (port 6082); it must be on an
    /// interface of --netns.
    #[arg(long)]
    underlay_ip: IpAddr,
    /// The network namespace that holds --underlay-ip, if not this one.
    #[arg(long)]
    netns: Option<String>,
    /// Where the node writes `ready` (registered, assignments applied) and
    /// `status.json` (its gateways' figures, every second).
    #[arg(long, default_value = "./openvpc-hyperplane")]
    state_dir: PathBuf,
    /// The server's agent token (`agent-token` in the server's --data-dir).
    #[arg(long, default_value = "./openvpc-data/agent-token")]
    token_file: PathBuf,
    /// Where Prometheus scrapes `/metrics` (default: --underlay-ip, port
    /// 9108, in --netns); `off` serves none.
    #[arg(long, value_parser = parse_metrics)]
    metrics: Option<MetricsAddr>,
    /// The NAT idle timeout in seconds (AWS: 350). For tests.
    #[arg(long, default_value_t = openvpc_hyperplane::nat::IDLE_TIMEOUT, hide = true)]
    idle_timeout: u32,
    /// The translated source ports, `FIRST-LAST` (default 10536-65535:
    /// 55,000 per destination, AWS's limit). A test shrinks it to reach
    /// ErrorPortAllocation.
    #[arg(long, value_parser = parse_ports, hide = true)]
    ports: Option<RangeInclusive<u16>>,
}

fn parse_ports(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s}: give FIRST-LAST, e.g. 10536-65535"))?;
    let (a, b): (u16, u16) = (
        a.parse().map_err(|e| format!("{a}: {e}"))?,
        b.parse().map_err(|e| format!("{b}: {e}"))?,
    );
    if a < 1024 || b < a {
        return Err(format!(
            "{s}: ports run from 1024 up (AWS never translates to a lower one), first ≤ last"
        ));
    }
    Ok(a..=b)
}

pub fn run(args: HyperplaneArgs) -> anyhow::Result<()> {
    let mut cfg = HyperplaneNodeConfig::new(
        &args.server,
        &read_token(&args.token_file)?,
        &args.node_id,
        args.underlay_ip,
        args.state_dir.clone(),
    );
    cfg.netns = args.netns.clone();
    match args.metrics {
        Some(MetricsAddr::Off) => cfg.metrics = None,
        Some(MetricsAddr::At(a)) => cfg.metrics = Some(a),
        None => {}
    }
    cfg.serve.idle_timeout = args.idle_timeout;
    if let Some(p) = args.ports.clone() {
        cfg.serve.ports = p;
    }
    let stop = stop_on_signals()?;
    let node = HyperplaneNode::start(cfg).context("starting the hyperplane node")?;
    while !node.wait_ready(Duration::from_secs(1)) {
        if stop.load(Ordering::Relaxed) {
            node.stop();
            return Ok(());
        }
        let s = node.status();
        eprintln!(
            "hyperplane {}: waiting for the server at {} (registered: {}, assignments: {})",
            args.node_id,
            args.server,
            s["registered"],
            if s["synced"] == true {
                "applied"
            } else {
                "not yet"
            }
        );
    }
    eprintln!(
        "hyperplane {} serving; underlay {}:6081, peers :6082{}{}",
        args.node_id,
        args.underlay_ip,
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
    fn port_ranges_are_checked() {
        assert_eq!(parse_ports("20000-20009"), Ok(20_000..=20_009));
        assert!(parse_ports("80-90").is_err());
        assert!(parse_ports("3000-2000").is_err());
        assert!(parse_ports("x").is_err());
    }
}
