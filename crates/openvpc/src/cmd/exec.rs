//! `openvpc exec INSTANCE -- CMD…`: runs a command inside an instance on
//! this machine (its network namespace carries the instance's ID). If the
//! agent recorded the instance as impaired, says so on stderr first.

use std::os::unix::process::CommandExt;
use std::process::Command;

use clap::Args;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The instance, e.g. i-0123456789abcdef0.
    instance_id: String,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(args: ExecArgs) -> anyhow::Result<()> {
    if !args.instance_id.starts_with("i-") {
        anyhow::bail!(
            "'{}' is not an instance ID: give one like i-0123456789abcdef0 (aws ec2 describe-instances lists them)",
            args.instance_id
        );
    }
    if !openvpc_lab::netns_exists(&args.instance_id) {
        anyhow::bail!(
            "instance {} does not run on this machine: check that it is running \
             (aws ec2 describe-instances --instance-ids {0}) and that an agent on this \
             machine holds it (`openvpc up` or `openvpc lab up`)",
            args.instance_id
        );
    }
    // An instance whose setup failed is said so first: the command will
    // likely fail for that reason (no address, no TAP). It still runs.
    if let Some(h) = openvpc_agent::health::read_local(&args.instance_id)
        && h.setup == openvpc_agent::health::InstanceSetup::Impaired
    {
        eprintln!(
            "openvpc exec: instance {} is impaired: {} (aws ec2 describe-instance-status --instance-ids {0} shows it); running the command anyway",
            args.instance_id,
            h.reason.as_deref().unwrap_or("its setup failed")
        );
    }
    // exec replaces this process, so the command's exit status and signals
    // are the caller's directly.
    let err = Command::new("ip")
        .args(["netns", "exec", &args.instance_id])
        .args(&args.command)
        .exec();
    Err(anyhow::anyhow!("running `ip netns exec`: {err}"))
}
