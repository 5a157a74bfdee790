//! `openvpc trace --from … --to … --protocol …`: asks the server what the
//! dataplane does with a packet, and prints each layer's decision with the
//! rule behind it, then the packet's fate. The server explains over the
//! state its hosts run; nothing is sent and no root is needed.
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
    match report.fate.as_str() {
        "delivered" => out.push_str(&format!(
            "delivered to {}\n",
            report.delivered_to.as_deref().unwrap_or("the destination")
        )),
        "dropped" => {
            let reason = report.reason.as_deref().unwrap_or("");
            match reason.strip_prefix("edge:") {
                Some(at_edge) => out.push_str(&format!(
                    "dropped by edge node {}: {at_edge}\n",
                    report.edge_id.as_deref().unwrap_or("?")
                )),
                None => {
                    let why = DropReason::from_name(reason).map_or("", DropReason::describe);
                    out.push_str(&format!("dropped: {reason} ({why})\n"));
                }
            }
        }
        "forwarded" => out.push_str(&format!(
            "forwarded to the gateway's node at {}\n",
            report.underlay.as_deref().unwrap_or("?")
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
