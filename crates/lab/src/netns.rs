//! The lab's namespaces and links, made and removed with iproute2's `ip`,
//! the tool an operator would use to inspect them: the underlay bridge and
//! the hosts, and the outside world with its edge namespaces. Only the
//! lab's own namespaces are configured; the root namespace holds a veth
//! end only between its creation and its move.

use std::path::Path;
use std::process::Command;

use crate::{
    BRIDGE, LabError, LabPlan, OUTSIDE_PREFIX, OutsidePlan, UNDERLAY_IFACE, UNDERLAY_PREFIX,
    UPLINK_IFACE,
};

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
    bridge(ul)?;
    for host in &plan.hosts {
        let ns = host.netns.as_str();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        veth_into(
            ns,
            &host.veth_host,
            &host.veth_bridge,
            UNDERLAY_IFACE,
            &format!("{}/{UNDERLAY_PREFIX}", host.underlay_ip),
        )?;
        attach(ul, &host.veth_bridge)?;
    }
    for node in &plan.hyperplane {
        let ns = node.netns.as_str();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        veth_into(
            ns,
            &node.veth_host,
            &node.veth_bridge,
            UNDERLAY_IFACE,
            &format!("{}/{UNDERLAY_PREFIX}", node.underlay_ip),
        )?;
        attach(ul, &node.veth_bridge)?;
    }
    Ok(())
}

/// Makes a bridge `br0` in `ns` and brings it up.
fn bridge(ns: &str) -> Result<(), LabError> {
    ip(&["-n", ns, "link", "add", BRIDGE, "type", "bridge"])?;
    // The bridge stands for a physical switch, which runs no host
    // firewall: where br_netfilter is built in, each new namespace would
    // pass every bridged frame through the (empty) iptables hooks.
    ip(&[
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true",
    ])?;
    ip(&["-n", ns, "link", "set", BRIDGE, "up"])
}

/// Moves `link` (still in the root namespace) into `ns` as a port of its
/// bridge.
fn attach(ns: &str, link: &str) -> Result<(), LabError> {
    ip(&["link", "set", link, "netns", ns])?;
    ip(&["-n", ns, "link", "set", link, "master", BRIDGE])?;
    ip(&["-n", ns, "link", "set", link, "up"])
}

/// Makes a veth pair, moves `inner` into `ns` renamed `name` with `addr`,
/// and leaves `outer` in the root namespace for [`attach`].
fn veth_into(ns: &str, inner: &str, outer: &str, name: &str, addr: &str) -> Result<(), LabError> {
    ip(&["link", "add", inner, "type", "veth", "peer", "name", outer])?;
    ip(&["link", "set", inner, "netns", ns])?;
    ip(&["-n", ns, "link", "set", inner, "name", name])?;
    ip(&["-n", ns, "addr", "add", addr, "dev", name])?;
    ip(&["-n", ns, "link", "set", name, "up"])
}

/// Sets `net.KEY=VALUE` sysctls inside `ns` (they are per namespace).
fn sysctl(ns: &str, settings: &[(&str, &str)]) -> Result<(), LabError> {
    let script: Vec<String> = settings
        .iter()
        .map(|(key, value)| format!("echo {value} > /proc/sys/{}", key.replace('.', "/")))
        .collect();
    ip(&["netns", "exec", ns, "sh", "-ec", &script.join("; ")])
}

/// A router's sysctls: it forwards, and checks no source path, since the
/// lab's paths are asymmetric by design (ECMP out, flow hash back).
const ROUTER_SYSCTLS: [(&str, &str); 4] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
    ("net.ipv4.conf.all.send_redirects", "0"),
];

/// Makes the outside world: its namespace with a bridge for the edges'
/// uplinks (holding the router's address) and the test servers' address
/// on loopback; then each edge's namespace, with a veth into the
/// underlay bridge and an uplink veth into the outside's bridge.
pub(crate) fn build_outside(outside: &OutsidePlan, plan: &LabPlan) -> Result<(), LabError> {
    let out = outside.netns.as_str();
    ip(&["netns", "add", out])?;
    ip(&["-n", out, "link", "set", "lo", "up"])?;
    // Flows spread over the edges' equal paths by their ports (L4 hash),
    // not only by their addresses.
    let mut settings = ROUTER_SYSCTLS.to_vec();
    settings.push(("net.ipv4.fib_multipath_hash_policy", "1"));
    sysctl(out, &settings)?;
    bridge(out)?;
    let router = format!("{}/{OUTSIDE_PREFIX}", outside.router_ip);
    ip(&["-n", out, "addr", "add", &router, "dev", BRIDGE])?;
    // On loopback: not every kernel has the dummy link type.
    let server = format!("{}/32", outside.server_ip);
    ip(&["-n", out, "addr", "add", &server, "dev", "lo"])?;
    // The region's resolver's leg on the underlay: the hosts reach it
    // there directly, as a region's hosts reach its resolvers.
    if let Some(resolver) = outside.resolver_ip {
        veth_into(
            out,
            &outside.veth_resolver,
            &outside.veth_resolver_bridge,
            UNDERLAY_IFACE,
            &format!("{resolver}/{UNDERLAY_PREFIX}"),
        )?;
        attach(&plan.underlay_netns, &outside.veth_resolver_bridge)?;
    }

    for edge in &plan.edges {
        let ns = edge.netns.as_str();
        ip(&["netns", "add", ns])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        sysctl(ns, &ROUTER_SYSCTLS)?;
        veth_into(
            ns,
            &edge.veth_underlay,
            &edge.veth_underlay_bridge,
            UNDERLAY_IFACE,
            &format!("{}/{UNDERLAY_PREFIX}", edge.underlay_ip),
        )?;
        attach(&plan.underlay_netns, &edge.veth_underlay_bridge)?;
        veth_into(
            ns,
            &edge.veth_uplink,
            &edge.veth_uplink_bridge,
            UPLINK_IFACE,
            &format!("{}/{OUTSIDE_PREFIX}", edge.uplink_ip),
        )?;
        attach(out, &edge.veth_uplink_bridge)?;
        // Links made before the `default` setting took effect keep their
        // own; the effective value is the larger of theirs and `all`'s.
        for link in [UNDERLAY_IFACE, UPLINK_IFACE] {
            sysctl(ns, &[(&format!("net.ipv4.conf.{link}.rp_filter"), "0")])?;
        }
        let router = outside.router_ip.to_string();
        ip(&["-n", ns, "route", "add", "default", "via", &router])?;
        // While the edge node is down its TUN, and the pool's route to it,
        // are gone: traffic for the pool that still arrives is dropped here
        // rather than sent back to the outside router by the default route.
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "blackhole",
            &outside.public_pool,
            "metric",
            "4000",
        ])?;
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
    for node in &plan.hyperplane {
        if netns_exists(&node.netns) {
            let _ = ip(&["netns", "delete", &node.netns]);
        }
        let _ = ip(&["link", "delete", &node.veth_host]);
    }
    for edge in &plan.edges {
        if netns_exists(&edge.netns) {
            let _ = ip(&["netns", "delete", &edge.netns]);
        }
        let _ = ip(&["link", "delete", &edge.veth_underlay]);
        let _ = ip(&["link", "delete", &edge.veth_uplink]);
    }
    if let Some(outside) = &plan.outside {
        if netns_exists(&outside.netns) {
            let _ = ip(&["netns", "delete", &outside.netns]);
        }
        // A pair `build_outside` made but had not moved yet.
        if !outside.veth_resolver.is_empty() {
            let _ = ip(&["link", "delete", &outside.veth_resolver]);
        }
    }
    if netns_exists(&plan.underlay_netns) {
        let _ = ip(&["netns", "delete", &plan.underlay_netns]);
    }
}
