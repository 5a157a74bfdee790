//! The lab's namespaces and links, made and removed with iproute2's `ip`,
//! the tool an operator would use to inspect them.

use std::path::Path;
use std::process::Command;

use crate::{LabError, LabPlan, UNDERLAY_IFACE, UNDERLAY_PREFIX};

/// Runs `ip ARGS`; a failure carries ip's own message.
pub fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| LabError::Io {
            path: "ip".into(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        command: format!("ip {}", args.join(" ")),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// True if a named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Makes the underlay namespace with its bridge, and each host namespace
/// with a veth into that bridge carrying the host's underlay address.
pub(crate) fn build(plan: &LabPlan) -> Result<(), LabError> {
    let ul = plan.underlay_netns.as_str();
    ip(&["netns", "add", ul])?;
    ip(&["-n", ul, "link", "set", "lo", "up"])?;
    ip(&["-n", ul, "link", "add", "br0", "type", "bridge"])?;
    // The bridge stands for a physical switch, which runs no host
    // firewall: where br_netfilter is built in, each new namespace would
    // pass every bridged frame through the (empty) iptables hooks.
    ip(&[
        "netns",
        "exec",
        ul,
        "sh",
        "-c",
        "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true",
    ])?;
    ip(&["-n", ul, "link", "set", "br0", "up"])?;
    for host in &plan.hosts {
        let ns = host.netns.as_str();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&[
            "link",
            "add",
            &host.veth_host,
            "type",
            "veth",
            "peer",
            "name",
            &host.veth_bridge,
        ])?;
        ip(&["link", "set", &host.veth_host, "netns", ns])?;
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            &host.veth_host,
            "name",
            UNDERLAY_IFACE,
        ])?;
        let addr = format!("{}/{UNDERLAY_PREFIX}", host.underlay_ip);
        ip(&["-n", ns, "addr", "add", &addr, "dev", UNDERLAY_IFACE])?;
        ip(&["-n", ns, "link", "set", UNDERLAY_IFACE, "up"])?;
        ip(&["link", "set", &host.veth_bridge, "netns", ul])?;
        ip(&["-n", ul, "link", "set", &host.veth_bridge, "master", "br0"])?;
        ip(&["-n", ul, "link", "set", &host.veth_bridge, "up"])?;
    }
    Ok(())
}

/// Removes whatever of the plan exists; a missing part is not an error.
/// Deleting a namespace deletes the veth ends inside it, and with them
/// their peers.
pub(crate) fn destroy(plan: &LabPlan) {
    for host in &plan.hosts {
        if netns_exists(&host.netns) {
            let _ = ip(&["netns", "delete", &host.netns]);
        }
        // A pair `build` made but had not moved yet.
        let _ = ip(&["link", "delete", &host.veth_host]);
    }
    if netns_exists(&plan.underlay_netns) {
        let _ = ip(&["netns", "delete", &plan.underlay_netns]);
    }
}
