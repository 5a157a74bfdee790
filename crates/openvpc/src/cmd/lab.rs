//! `openvpc lab up|restart|status|down`: several hosts as network namespaces on this
//! machine, with a server and an agent per host, for tests and demos.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use openvpc_lab::{LabPlan, Launch};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build a lab: N host namespaces on an underlay bridge, a server, and
    /// one agent per host, AZs REGIONa, REGIONb, … spread over the hosts.
    /// Writes DIR/endpoint and DIR/credentials for the aws CLI, then
    /// returns, leaving the lab running until `lab down`.
    Up {
        /// How many hosts.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// How many availability zones (at most as many as hosts).
        #[arg(long, default_value_t = 2)]
        azs: usize,
        /// Where the lab keeps its state, logs, endpoint and credentials.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// The region; its zones are REGIONa, REGIONb, …
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Only check for the programs instances need and stop if one is
        /// missing, instead of installing their Debian packages (see
        /// `openvpc up --help`).
        #[arg(long)]
        no_install: bool,
    },
    /// Restart one part of a running lab: `server` or a host ID (h1, …).
    /// Instances and their addresses stay; the agent resyncs.
    Restart {
        /// `server`, or the host ID of an agent.
        part: String,
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// Stop it with SIGKILL, as a crash would, instead of SIGTERM.
        #[arg(long)]
        kill: bool,
    },
    /// Show each host's dataplane counters (what its agent last wrote to
    /// `status.json` in its state directory, once a second): flows,
    /// frames through TAPs and the underlay, drops by reason, mapping
    /// lookups, frames waiting for a mapping; then each host's instances
    /// whose setup (namespace, TAP, DHCP) is not `ok`, with the reason.
    Status {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// Print one JSON object, host ID → that host's status.
        #[arg(long)]
        json: bool,
    },
    /// Take a lab down: stop its processes, remove its instances,
    /// namespaces and links. Also cleans up after a crashed `up`.
    Down {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
    },
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.command {
        LabCommand::Up {
            hosts,
            azs,
            dir,
            region,
            no_install,
        } => {
            super::agent::ensure_instance_tools(no_install, "lab")?;
            let plan = LabPlan::new(&dir, hosts, azs, &region)?;
            let launch = Launch {
                exe: std::env::current_exe().context("finding the openvpc binary")?,
                server_args: Vec::new(),
                agent_args: Default::default(),
            };
            let state = openvpc_lab::up(&dir, plan, &launch, |step| eprintln!("lab: {step}"))
                .with_context(|| {
                    format!(
                        "building the lab in {0}; `openvpc lab down --dir {0}` removes what was made",
                        dir.display()
                    )
                })?;
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            println!("AWS_ENDPOINT_URL={}", state.endpoint.unwrap_or_default());
            println!(
                "AWS_SHARED_CREDENTIALS_FILE={}",
                dir.join("credentials").display()
            );
            println!("AWS_DEFAULT_REGION={region}");
            eprintln!(
                "lab: ready; export the lines above, then e.g. `aws ec2 describe-availability-zones`; \
                 `openvpc lab down --dir {}` removes it",
                dir.display()
            );
            Ok(())
        }
        LabCommand::Restart { part, dir, kill } => {
            openvpc_lab::restart(&dir, &part, kill)?;
            eprintln!("lab: {part} restarted");
            Ok(())
        }
        LabCommand::Status { dir, json } => status(&dir, json),
        LabCommand::Down { dir } => {
            openvpc_lab::down(
                &dir,
                |state_dir| {
                    if let Err(e) = openvpc_agent::remove_instances(state_dir) {
                        eprintln!(
                            "lab: removing the instances of {}: {e}",
                            state_dir.display()
                        );
                    }
                },
                |step| eprintln!("lab: {step}"),
            )?;
            Ok(())
        }
    }
}

/// `lab status`: each host's last `status.json`, as a table or as JSON.
fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let state = openvpc_lab::load(dir)?;
    let plan = state
        .plan
        .with_context(|| format!("{} holds no plan: was `lab up` interrupted?", dir.display()))?;
    let mut all = serde_json::Map::new();
    for host in &plan.hosts {
        let path = openvpc_lab::host_dir(dir, &host.host_id).join(openvpc_agent::STATUS_FILE);
        let value = match std::fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .with_context(|| format!("reading {}", path.display()))?,
            // Not written yet (the agent is starting) or gone.
            Err(e) => serde_json::json!({ "error": format!("{}: {e}", path.display()) }),
        };
        all.insert(host.host_id.clone(), value);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let n = |v: &serde_json::Value, path: &[&str]| {
        path.iter()
            .try_fold(v, |v, k| v.get(k))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    println!(
        "{:<6} {:>4} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}  drops",
        "host", "age", "flows", "tap rx", "tap tx", "ul rx", "ul tx", "coalesced", "waiting"
    );
    for (host, v) in &all {
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            println!("{host:<6} {e}");
            continue;
        }
        let drops: Vec<String> = v
            .get("drops")
            .and_then(serde_json::Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, c)| format!("{k}={}", c.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "{host:<6} {:>3}s {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}  {}",
            now.saturating_sub(n(v, &["unix_time"])),
            n(v, &["flows"]),
            n(v, &["io", "tap_rx"]),
            n(v, &["io", "tap_tx"]),
            n(v, &["io", "underlay_rx"]),
            n(v, &["io", "underlay_tx"]),
            n(v, &["io", "tap_coalesced_writes"]),
            n(v, &["pending"]),
            if drops.is_empty() {
                "-".to_owned()
            } else {
                drops.join(" ")
            }
        );
    }
    // Instances whose setup is not done or failed, with the agent's reason.
    let mut header = false;
    for (host, v) in &all {
        let Some(instances) = v.get("instances").and_then(serde_json::Value::as_object) else {
            continue;
        };
        for (id, h) in instances {
            let setup = h
                .get("setup")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            if setup == "ok" {
                continue;
            }
            if !header {
                println!("\ninstances not ok:");
                header = true;
            }
            let reason = h.get("reason").and_then(serde_json::Value::as_str);
            println!(
                "{host:<6} {id} {setup}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
    }
    Ok(())
}
