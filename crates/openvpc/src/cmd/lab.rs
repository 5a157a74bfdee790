//! `openvpc lab up|down`: several hosts as network namespaces on this
//! machine, with a server and an agent per host, for tests and demos.

use std::path::PathBuf;

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
        } => {
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
