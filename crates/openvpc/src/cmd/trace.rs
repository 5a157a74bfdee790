//! `openvpc trace --from … --to … --protocol …`: asks the server what the
//! dataplane does with a packet, and prints each layer's decision with the
//! rule behind it, then the packet's fate: through a NAT gateway, the
//! hyperplane node that translates it and the address and port it is
//! translated to, then the edge and the Elastic IP it leaves the region
//! from. The server explains over the state its hosts run; nothing is sent
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
    match report.fate.as_str() {
        "delivered" => out.push_str(&format!(
            "delivered to {}\n",
            report.delivered_to.as_deref().unwrap_or("the destination")
        )),
        "dropped" => {
            let reason = report.reason.as_deref().unwrap_or("");
            if let Some(at_edge) = reason.strip_prefix("edge:") {
                out.push_str(&format!(
                    "dropped by edge node {}: {at_edge}\n",
                    report.edge_id.as_deref().unwrap_or("?")
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
}
