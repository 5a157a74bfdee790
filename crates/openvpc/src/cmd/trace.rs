//! `openvpc trace --from … --to … --protocol …`: asks the server what the
//! dataplane does with a packet, and prints each layer's decision with the
//! rule behind it, then the packet's fate: through a NAT gateway, the
//! hyperplane node that translates it and the address and port it is
//! translated to, then the edge and the Elastic IP it leaves the region
//! from; to a network load balancer, its node, the listener and target
//! group, the target the flow hash picks with its health, then the
//! target's own layers; to a VPN gateway, the route of its table, the
//! tunnel that carries the packet and the edge serving it, or, when no
//! tunnel is up, each tunnel's state. The server explains over the state its hosts run; nothing is sent
//! and no root is needed.
//!
//! Endpoint, region and credentials are found as the aws CLI finds them:
//! flags first, then `AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, and the profile
//! (`--profile`, `AWS_PROFILE`, `default`) of the shared credentials file
//! (`AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use openvpc_control::client::{Client, ClientError, TraceReport};
use openvpc_dataplane::DropReason;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Where the packet starts: an instance (i-…) or a network interface (eni-…).
    #[arg(long)]
    from: String,
    /// Where it goes: an IPv4 address, an instance or a network interface.
    #[arg(long)]
    to: String,
    #[arg(long, value_enum)]
    protocol: Protocol,
    /// The destination port (tcp and udp).
    #[arg(long)]
    port: Option<u16>,
    /// The API endpoint [default: $AWS_ENDPOINT_URL, else http://127.0.0.1:8773].
    #[arg(long)]
    endpoint_url: Option<String>,
    /// The region [default: $AWS_REGION or $AWS_DEFAULT_REGION, else us-east-1].
    #[arg(long)]
    region: Option<String>,
    /// The credentials profile [default: $AWS_PROFILE, else default].
    #[arg(long)]
    profile: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The access key and secret, as the aws CLI would find them.
fn credentials(profile: Option<&str>) -> anyhow::Result<(String, String)> {
    if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok((key, secret));
    }
    let profile = profile
        .map(str::to_owned)
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let path = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))
        .context("no credentials: set AWS_SHARED_CREDENTIALS_FILE (openvpc writes one in its data directory) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")?;
    let ini = ini::Ini::load_from_file(&path).with_context(|| {
        format!(
            "reading the credentials file {}: set AWS_SHARED_CREDENTIALS_FILE to the one in openvpc's data directory",
            path.display()
        )
    })?;
    let section = ini.section(Some(profile.as_str())).with_context(|| {
        format!(
            "the credentials file {} has no profile [{profile}]",
            path.display()
        )
    })?;
    match (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) {
        (Some(key), Some(secret)) => Ok((key.to_owned(), secret.to_owned())),
        _ => bail!(
            "profile [{profile}] of {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        ),
    }
}

pub fn run(args: TraceArgs) -> anyhow::Result<()> {
    let endpoint = args
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| "http://127.0.0.1:8773".into());
    let region = args
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".into());
    let (key, secret) = credentials(args.profile.as_deref())?;
    let client = Client::new(&endpoint, &key, &secret, &region);
    let protocol = match args.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
    };
    let to_key = if args.to.starts_with("i-") || args.to.starts_with("eni-") {
        "Destination"
    } else {
        "DestinationIp"
    };
    let port = args.port.map(|p| p.to_string());
    let mut params = vec![
        ("Source", args.from.as_str()),
        (to_key, args.to.as_str()),
        ("Protocol", protocol),
    ];
    if let Some(port) = &port {
        params.push(("DestinationPort", port));
    }
    let xml = match client.call("TracePacket", &params) {
        Ok(xml) => xml,
        Err(ClientError::Api(e)) => bail!("{}: {}", e.code, e.message),
        Err(e) => return Err(e.into()),
    };
    print!("{}", render(&TraceReport::parse(&xml)));
    Ok(())
}

/// The peering the packet was last routed over, if a route sent it to one.
fn through_peering(report: &TraceReport) -> Option<String> {
    report.steps.iter().rev().find_map(|s| {
        [&s.action, &s.rule]
            .into_iter()
            .flat_map(|t| t.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')))
            .find(|w| w.starts_with("pcx-"))
            .map(str::to_owned)
    })
}

/// The report as the terminal shows it: one line per step, then the fate.
fn render(report: &TraceReport) -> String {
    let mut out = String::new();
    let mut at = String::new();
    for s in &report.steps {
        if s.network_interface_id != at {
            at.clone_from(&s.network_interface_id);
            out.push_str(&format!("{at} ({}):\n", s.direction));
        }
        out.push_str(&format!("  {:<15} {:<22} {}\n", s.layer, s.action, s.rule));
    }
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    // The NAT gateway's hop, when it translated the packet.
    if let Some(private) = &report.nat_source {
        out.push_str(&format!(
            "through NAT gateway {} on hyperplane node {} ({}): source translated to {private}:{} (a port the node would allocate to this new flow)\n",
            or_unknown(&report.nat_gateway_id),
            or_unknown(&report.nat_node_id),
            or_unknown(&report.nat_node_underlay),
            or_unknown(&report.nat_source_port),
        ));
    }
    // The load balancer's hop: its node, listener, group and the target
    // the flow hash picked, with the target's health.
    if let Some(lb) = &report.lb {
        out.push_str(&format!(
            "to load balancer {} ({}) at {}: hyperplane node {} ({}), place {}\n",
            or_unknown(&lb.name),
            or_unknown(&lb.arn),
            or_unknown(&lb.front),
            or_unknown(&lb.node_id),
            or_unknown(&lb.node_underlay),
            or_unknown(&lb.place),
        ));
        if let Some(port) = &lb.listener_port {
            out.push_str(&format!(
                "  listener {}:{port} forwards to target group {}\n",
                or_unknown(&lb.listener_protocol),
                or_unknown(&lb.target_group_arn),
            ));
        }
        if let Some(id) = &lb.target_id {
            let reason = lb
                .target_health_reason
                .as_ref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default();
            out.push_str(&format!(
                "  target {id} ({}:{}) picked by the flow hash; its health: {}{reason}\n",
                or_unknown(&lb.target_ip),
                or_unknown(&lb.target_port),
                or_unknown(&lb.target_health),
            ));
            if lb.fail_open {
                out.push_str(
                    "  no target is healthy: the load balancer fails open to all of them\n",
                );
            }
            if let Some(src) = &lb.target_source {
                out.push_str(&format!(
                    "  the target sees the source {src}:{}\n",
                    or_unknown(&lb.target_source_port),
                ));
            }
        }
    }
    match report.fate.as_str() {
        "delivered" => out.push_str(&format!(
            "delivered to {}\n",
            report.delivered_to.as_deref().unwrap_or("the destination")
        )),
        "dropped" => {
            let reason = report.reason.as_deref().unwrap_or("");
            if let Some(at_gateway) = reason.strip_prefix("vgw:") {
                let why = match at_gateway {
                    "no_route" => "the gateway knows no route to it (spec 10.3)",
                    "tunnel" => "the tunnel its route picks is down",
                    other => other,
                };
                out.push_str(&format!(
                    "dropped by edge node {} of VPN gateway {}: {why}\n",
                    or_unknown(&report.edge_id),
                    report
                        .vpn
                        .as_ref()
                        .map_or("?", |v| v.vpn_gateway_id.as_str()),
                ));
            } else if let Some(at_edge) = reason.strip_prefix("edge:") {
                out.push_str(&format!(
                    "dropped by edge node {}: {at_edge}\n",
                    report.edge_id.as_deref().unwrap_or("?")
                ));
            } else if let Some(at_node) = reason.strip_prefix("lb:") {
                let lb = report.lb.clone().unwrap_or_default();
                let why = match at_node {
                    "no_listener" => format!("no listener on port {}", or_unknown(&lb.port)),
                    "no_target" => "no target the flow may go to".to_owned(),
                    "unsupported" => {
                        "a load balancer balances TCP and UDP only".to_owned()
                    }
                    other => other.to_owned(),
                };
                out.push_str(&format!(
                    "dropped by hyperplane node {} of load balancer {}: {why}\n",
                    or_unknown(&lb.node_id),
                    or_unknown(&lb.name),
                ));
            } else if let Some(at_node) = reason.strip_prefix("nat:") {
                out.push_str(&format!(
                    "dropped by hyperplane node {} ({}) of NAT gateway {}: {at_node}\n",
                    or_unknown(&report.nat_node_id),
                    or_unknown(&report.nat_node_underlay),
                    or_unknown(&report.nat_gateway_id),
                ));
            } else {
                let why = DropReason::from_name(reason).map_or("", DropReason::describe);
                out.push_str(&format!("dropped: {reason} ({why})\n"));
                if let Some(pcx) = through_peering(report).filter(|_| reason == "no_mapping") {
                    out.push_str(&format!(
                        "  VPC peering is not transitive (spec 7.2): {pcx} carries traffic only to the peer VPC's own interfaces, never on through its peerings, internet or NAT gateways, VPN or endpoints\n"
                    ));
                }
            }
        }
        "vpn" => {
            let vpn = report.vpn.clone().unwrap_or_default();
            out.push_str(&format!(
                "to VPN gateway {} by its route {}: into VPN connection {} through tunnel {}, sealed by edge node {} ({})\n",
                vpn.vpn_gateway_id,
                or_unknown(&vpn.prefix),
                or_unknown(&vpn.vpn_connection_id),
                or_unknown(&vpn.tunnel_outside_ip),
                or_unknown(&report.edge_id),
                or_unknown(&report.underlay),
            ));
            if let Some(by) = &vpn.handed_on_by {
                out.push_str(&format!(
                    "  edge node {by} took it from the host and handed it on to the tunnel's edge\n"
                ));
            }
        }
        "forwarded" => out.push_str(&format!(
            "forwarded to the gateway's node at {}\n",
            report.underlay.as_deref().unwrap_or("?")
        )),
        "internet" if report.nat_source.is_some() => out.push_str(&format!(
            "left the region through edge node {} ({}) from {}: the NAT gateway's Elastic IP\n",
            or_unknown(&report.edge_id),
            or_unknown(&report.underlay),
            or_unknown(&report.public_source),
        )),
        "internet" => out.push_str(&format!(
            "left the VPC through edge node {} ({}) as {}: the internet gateway's 1:1 translation\n",
            report.edge_id.as_deref().unwrap_or("?"),
            report.underlay.as_deref().unwrap_or("?"),
            report.public_source.as_deref().unwrap_or("?")
        )),
        "unresolved" => out.push_str("unresolved: nothing owns the destination yet\n"),
        other => out.push_str(&format!("{other}\n")),
    }
    // Why a VPN gateway carries nothing: its tunnels' states.
    if let Some(tunnels) = report.vpn.as_ref().and_then(|v| v.tunnels.as_ref()) {
        out.push_str(&format!("  {tunnels}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 16 (8): a packet through a NAT gateway reads hop by hop: the
    // node and the private address and port it translates to, then the
    // edge and the Elastic IP it leaves the region from.
    #[test]
    fn a_nat_hop_reads_before_the_edge() {
        let report = TraceReport {
            fate: "internet".into(),
            edge_id: Some("e1".into()),
            underlay: Some("10.254.0.2".into()),
            public_source: Some("198.51.100.7".into()),
            nat_gateway_id: Some("nat-0123456789abcdef0".into()),
            nat_node_id: Some("hp1".into()),
            nat_node_underlay: Some("10.254.1.1".into()),
            nat_source: Some("10.0.2.9".into()),
            nat_source_port: Some("1024".into()),
            ..TraceReport::default()
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].starts_with(
                "through NAT gateway nat-0123456789abcdef0 on hyperplane node hp1 (10.254.1.1): source translated to 10.0.2.9:1024"
            ),
            "{text}"
        );
        assert!(
            lines[1]
                .starts_with("left the region through edge node e1 (10.254.0.2) from 198.51.100.7"),
            "{text}"
        );

        let dropped = TraceReport {
            fate: "dropped".into(),
            reason: Some("nat:no_edge".into()),
            nat_gateway_id: Some("nat-0123456789abcdef0".into()),
            nat_node_id: Some("hp1".into()),
            nat_node_underlay: Some("10.254.1.1".into()),
            ..TraceReport::default()
        };
        assert_eq!(
            render(&dropped),
            "dropped by hyperplane node hp1 (10.254.1.1) of NAT gateway nat-0123456789abcdef0: no_edge\n"
        );
    }

    // Issue 19 (5): a packet to a VPN gateway reads as the route, the
    // tunnel and its edge; a drop for want of a tunnel up says each
    // tunnel's state.
    #[test]
    fn a_vpn_hop_names_the_route_tunnel_and_edge_or_the_tunnels_states() {
        let report = TraceReport {
            fate: "vpn".into(),
            edge_id: Some("e2".into()),
            underlay: Some("10.254.0.3".into()),
            vpn: Some(openvpc_control::client::VpnReport {
                vpn_gateway_id: "vgw-0123456789abcdef0".into(),
                prefix: Some("172.16.0.0/16".into()),
                vpn_connection_id: Some("vpn-0123456789abcdef0".into()),
                tunnel_outside_ip: Some("203.0.113.5".into()),
                handed_on_by: Some("e1".into()),
                tunnels: None,
            }),
            ..TraceReport::default()
        };
        assert_eq!(
            render(&report),
            "to VPN gateway vgw-0123456789abcdef0 by its route 172.16.0.0/16: into VPN connection vpn-0123456789abcdef0 through tunnel 203.0.113.5, sealed by edge node e2 (10.254.0.3)\n  edge node e1 took it from the host and handed it on to the tunnel's edge\n"
        );
        let down = TraceReport {
            fate: "dropped".into(),
            reason: Some("target_unserved".into()),
            vpn: Some(openvpc_control::client::VpnReport {
                vpn_gateway_id: "vgw-0123456789abcdef0".into(),
                tunnels: Some(
                    "vgw-0123456789abcdef0: vpn-0123456789abcdef0 tunnel 203.0.113.5 DOWN (IPSEC IS UP, BGP down)"
                        .into(),
                ),
                ..Default::default()
            }),
            ..TraceReport::default()
        };
        let text = render(&down);
        assert!(text.starts_with("dropped: target_unserved"), "{text}");
        assert!(
            text.ends_with("  vgw-0123456789abcdef0: vpn-0123456789abcdef0 tunnel 203.0.113.5 DOWN (IPSEC IS UP, BGP down)\n"),
            "{text}"
        );
    }

    // Issue 18 (spec 7.2): a packet routed over a peering to an address no
    // interface of the peer VPC owns is dropped, and the trace says why.
    #[test]
    fn a_peering_drop_says_peering_is_not_transitive() {
        let report = TraceReport {
            steps: vec![openvpc_control::client::TracedStep {
                network_interface_id: "eni-0123456789abcdef0".into(),
                direction: "egress".into(),
                layer: "routing".into(),
                action: "forward in VNI 7".into(),
                rule: "rtb-0123456789abcdef0 10.30.0.0/16 -> pcx-0123456789abcdef0".into(),
            }],
            fate: "dropped".into(),
            reason: Some("no_mapping".into()),
            ..TraceReport::default()
        };
        let text = render(&report);
        assert!(
            text.contains("VPC peering is not transitive (spec 7.2): pcx-0123456789abcdef0"),
            "{text}"
        );
        let unrouted = TraceReport {
            steps: vec![],
            ..report
        };
        assert!(!render(&unrouted).contains("transitive"));
    }

    // Issue 17 (6): a packet to a network load balancer reads hop by hop:
    // the load balancer and its node, the listener and target group, the
    // target the flow hash picked with its health (failing open when none
    // is healthy), then the target's fate; no listener on the port is said
    // so.
    #[test]
    fn a_load_balancer_hop_names_listener_group_target_and_health() {
        let lb = openvpc_control::client::LbReport {
            arn: Some(
                "arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/net/web/0123456789abcdef"
                    .into(),
            ),
            name: Some("web".into()),
            node_id: Some("hp1".into()),
            node_underlay: Some("10.254.1.1".into()),
            place: Some("0".into()),
            front: Some("10.0.1.10".into()),
            port: Some("80".into()),
            listener_port: Some("80".into()),
            listener_protocol: Some("TCP".into()),
            target_group_arn: Some("arn:tg/web/fedcba9876543210".into()),
            target_id: Some("i-0123456789abcdef0".into()),
            target_ip: Some("10.0.1.5".into()),
            target_port: Some("80".into()),
            target_health: Some("unhealthy".into()),
            target_health_reason: Some("Target.FailedHealthChecks".into()),
            fail_open: true,
            target_source: Some("10.0.2.7".into()),
            target_source_port: Some("49152".into()),
        };
        let report = TraceReport {
            fate: "dropped".into(),
            reason: Some("sg_deny".into()),
            lb: Some(lb.clone()),
            ..TraceReport::default()
        };
        let text = render(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("to load balancer web (arn:aws:elasticloadbalancing"),
            "{text}"
        );
        assert!(
            lines[0].ends_with("at 10.0.1.10: hyperplane node hp1 (10.254.1.1), place 0"),
            "{text}"
        );
        assert_eq!(
            lines[1],
            "  listener TCP:80 forwards to target group arn:tg/web/fedcba9876543210"
        );
        assert_eq!(
            lines[2],
            "  target i-0123456789abcdef0 (10.0.1.5:80) picked by the flow hash; its health: unhealthy, Target.FailedHealthChecks"
        );
        assert!(lines[3].contains("fails open"), "{text}");
        assert_eq!(lines[4], "  the target sees the source 10.0.2.7:49152");
        assert!(lines[5].starts_with("dropped: sg_deny"), "{text}");

        let none = TraceReport {
            fate: "dropped".into(),
            reason: Some("lb:no_listener".into()),
            lb: Some(openvpc_control::client::LbReport {
                port: Some("8080".into()),
                listener_port: None,
                target_id: None,
                ..lb
            }),
            ..TraceReport::default()
        };
        assert!(
            render(&none).ends_with(
                "dropped by hyperplane node hp1 of load balancer web: no listener on port 8080\n"
            ),
            "{}",
            render(&none)
        );
    }
}
