//! The lab's datacenter: a customer's network on the outside world, for
//! Site-to-Site VPN tests. `lab up --datacenter` makes a namespace with a
//! public address on its own link into the outside router (the customer
//! gateway's IP, outside the public pool) and a LAN server address; `lab
//! datacenter connect` starts, for one VPN connection, strongSwan's
//! charon as the customer gateway (IKEv2, PSK, both tunnels, the customer
//! side initiating) and, unless the connection is static-routes-only,
//! the customer router (one eBGP session per tunnel over its inside /30,
//! announcing the datacenter's prefix): BIRD, or with `--router frr`
//! FRR's bgpd with its zebra (which puts the learned routes in the
//! namespace's kernel table, as BIRD's kernel protocol does), so the
//! VGW's BGP speaker is tried against both (issue 19, Interop).
//!
//! This kernel has no XFRM, so charon runs kernel-libipsec: ESP in
//! userspace behind one TUN, `ipsec0`. Both tunnels share it, and
//! libipsec picks the SA for a packet by its policies (traffic
//! selectors), not by the route that sent it there. Each tunnel's
//! selectors therefore carry its own inside addresses (`.2/32` here,
//! `.1/32` there) next to the datacenter prefix and the VPC side, so a
//! BGP packet always takes its own tunnel's SA. The inside addresses sit
//! on `ipsec0` as /30s, as they would on a VTI: the BGP neighbors are
//! directly connected, and the VPC routes BIRD learns go into the main
//! table via `.1 dev ipsec0`. kernel-libipsec (5.9.8, measured) also
//! routes each installed child's remote selectors into `ipsec0` in table
//! 220, whatever `charon.install_routes` says; that table is looked up
//! before the main one, so while a tunnel is up its selectors route, and
//! BIRD's routes are what is left when none is. A static connection has
//! only those.
//!
//! FRR's daemons run standalone, not under `watchfrr` or the init
//! script: each with its configuration, pid file, zebra socket and vty
//! sockets in `DIR/datacenter/frr`, so they never meet the machine's own
//! FRR, another lab's or the BGP crate's tests' (`vtysh --vty_socket
//! DIR/datacenter/frr` reaches them). They keep running as root (they
//! configure the namespace's routes) with the group `frrvty`, the only
//! group FRR lets root run with without dropping privileges.
//!
//! charon writes `/var/run/charon.pid` and refuses to start when it
//! exists, which allows one charon per machine; each lab's runs with the
//! lab's own directory bound over `/run`, inside the mount namespace `ip
//! netns exec` gives it, so labs and the VPN crate's tests do not collide.
//!
//! Every name and process is recorded in `lab.json` before it is made,
//! like the rest of the lab. Pre-shared keys are written only to
//! `DIR/datacenter/swanctl.conf` (owner-only) and never printed.

use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{
    BIRD, LabError, LabProcess, OutsidePlan, Program, io_at, ip, load, log_dir, save, spawn,
    stop_process,
};

/// The customer gateway's public address (TEST-NET-2, outside the public
/// pool and apart from the outside's test server): `DIR/datacenter-ip`.
pub const DATACENTER_PUBLIC_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 202);

/// The outside router's end of the datacenter's link: its default route.
pub const DATACENTER_LINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 201);

/// The link's prefix length: a /30 of its own.
pub const DATACENTER_LINK_PREFIX: u8 = 30;

/// The server on the datacenter's LAN: `DIR/datacenter-server-ip`.
pub const DATACENTER_SERVER_IP: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 10);

/// The datacenter's network, announced over BGP: `DIR/datacenter-prefix`.
pub const DATACENTER_PREFIX: &str = "172.16.0.0/16";

/// strongSwan's IKE daemon (Debian's strongswan-charon).
pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// strongSwan's control tool (strongswan-swanctl), over the VICI socket.
pub const SWANCTL: &str = "swanctl";

/// The part name of the customer gateway (charon) in `lab.json`.
pub const GATEWAY_PART: &str = "datacenter-gateway";

/// The part name of the customer router (BIRD, or FRR's bgpd) in
/// `lab.json`.
pub const ROUTER_PART: &str = "datacenter-router";

/// The part name of FRR's zebra in `lab.json`, when the router is FRR.
pub const ZEBRA_PART: &str = "datacenter-zebra";

/// FRR's BGP daemon and its kernel-route manager (Debian's frr).
pub const BGPD: &str = "/usr/lib/frr/bgpd";
pub const ZEBRA: &str = "/usr/lib/frr/zebra";

/// FRR's shell, over the daemons' vty sockets.
pub const VTYSH: &str = "vtysh";

/// The group FRR's vty sockets belong to; FRR refuses a user outside
/// it, and root is not in it, so the daemons run with it as their group.
const FRR_VTY_GROUP: &str = "frrvty";

/// kernel-libipsec's TUN: the tunnels' packets go in and out here.
pub const LIBIPSEC_TUN: &str = "ipsec0";

/// The datacenter's leg toward the outside router, inside its namespace.
pub const WAN_IFACE: &str = "wan0";

/// The same link's other end, inside the outside namespace.
pub const OUTSIDE_IFACE: &str = "dc0";

/// The charon plugins the customer gateway needs: kernel-libipsec since
/// this kernel has no XFRM, vici for swanctl (as crates/vpn's tests).
const CHARON_PLUGINS: &str = "random nonce aes sha1 sha2 hmac kdf gmp gcm openssl kernel-libipsec kernel-netlink socket-default vici updown";

/// spec 10.2: AWS's tunnel defaults, which our VGW accepts; the customer
/// gateway offers the AES-CBC set with SHA-1/SHA-2 and the GCM set.
const IKE_PROPOSALS: &str =
    "aes128-sha1-modp2048,aes256-sha256-modp2048,aes128gcm16-prfsha256-ecp256";
const ESP_PROPOSALS: &str = "aes128gcm16-ecp256,aes128-sha1-modp2048,aes256-sha256-modp2048";

/// spec 10.2: phase 1 and phase 2 lifetimes; the customer side rekeys
/// before the VGW would.
const IKE_REKEY_SECS: u32 = 28_800;
const CHILD_REKEY_SECS: u32 = 3_600;

/// spec 10.2: BGP timers over the tunnels.
const BGP_HOLD_SECS: u16 = 30;
const BGP_KEEPALIVE_SECS: u16 = 10;

/// How long `connect` waits for charon's socket and BIRD's.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The customer router `lab datacenter connect` runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Router {
    /// BIRD 2 (`bird.conf`, `birdc`).
    #[default]
    Bird,
    /// FRR 8: bgpd for the sessions, zebra for the kernel routes.
    Frr,
}

impl Router {
    pub fn name(self) -> &'static str {
        match self {
            Router::Bird => "BIRD",
            Router::Frr => "FRR",
        }
    }

    /// Which router a recorded `datacenter-router` process runs.
    fn of(process: &LabProcess) -> Router {
        if process.args.iter().any(|a| a == BGPD) {
            Router::Frr
        } else {
            Router::Bird
        }
    }
}

/// The datacenter namespace and its link to the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatacenterPlan {
    pub netns: String,
    /// The customer gateway's IP, on [`WAN_IFACE`].
    pub public_ip: Ipv4Addr,
    /// The outside router's end of the link, the default route.
    pub link_ip: Ipv4Addr,
    pub link_prefix: u8,
    /// The LAN server's address, on loopback (this kernel may lack dummy
    /// links).
    pub server_ip: Ipv4Addr,
    /// The datacenter's network.
    pub prefix: String,
    /// The link's veth pair names while both ends are in the root
    /// namespace; recorded so `down` removes a pair `up` left behind.
    pub veth_inside: String,
    pub veth_outside: String,
}

impl DatacenterPlan {
    pub(crate) fn new(tag: &str) -> DatacenterPlan {
        DatacenterPlan {
            netns: format!("ovl-{tag}-dc"),
            public_ip: DATACENTER_PUBLIC_IP,
            link_ip: DATACENTER_LINK_IP,
            link_prefix: DATACENTER_LINK_PREFIX,
            server_ip: DATACENTER_SERVER_IP,
            prefix: DATACENTER_PREFIX.to_owned(),
            veth_inside: format!("ovl{tag}d0a"),
            veth_outside: format!("ovl{tag}d0b"),
        }
    }
}

/// Makes the datacenter's namespace with its link into the outside
/// namespace, its LAN server address and its default route.
pub(crate) fn build(dc: &DatacenterPlan, outside: &OutsidePlan) -> Result<(), LabError> {
    let ns = dc.netns.as_str();
    let out = outside.netns.as_str();
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    // A router for its LAN; the tunnel's packets come in on ipsec0 and
    // leave on it, so no source check.
    sysctl(
        ns,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
        ],
    )?;
    ip(&[
        "link",
        "add",
        &dc.veth_inside,
        "type",
        "veth",
        "peer",
        "name",
        &dc.veth_outside,
    ])?;
    for (link, netns, name, addr) in [
        (&dc.veth_inside, ns, WAN_IFACE, dc.public_ip),
        (&dc.veth_outside, out, OUTSIDE_IFACE, dc.link_ip),
    ] {
        ip(&["link", "set", link, "netns", netns])?;
        ip(&["-n", netns, "link", "set", link, "name", name])?;
        let cidr = format!("{addr}/{}", dc.link_prefix);
        ip(&["-n", netns, "addr", "add", &cidr, "dev", name])?;
        ip(&["-n", netns, "link", "set", name, "up"])?;
    }
    let server = format!("{}/32", dc.server_ip);
    ip(&["-n", ns, "addr", "add", &server, "dev", "lo"])?;
    ip(&[
        "-n",
        ns,
        "route",
        "add",
        "default",
        "via",
        &dc.link_ip.to_string(),
    ])?;
    Ok(())
}

/// Sets `net.KEY=VALUE` sysctls inside `ns` (they are per namespace).
fn sysctl(ns: &str, settings: &[(&str, &str)]) -> Result<(), LabError> {
    let script: Vec<String> = settings
        .iter()
        .map(|(key, value)| format!("echo {value} > /proc/sys/{}", key.replace('.', "/")))
        .collect();
    ip(&["netns", "exec", ns, "sh", "-ec", &script.join("; ")])
}

/// Removes the datacenter's namespace and a veth pair left in the root
/// namespace; a missing part is not an error.
pub(crate) fn destroy(dc: &DatacenterPlan) {
    if crate::netns_exists(&dc.netns) {
        let _ = ip(&["netns", "delete", &dc.netns]);
    }
    let _ = ip(&["link", "delete", &dc.veth_inside]);
}

/// The files `up --datacenter` leaves for tests (removed by `down`).
pub(crate) const CLIENT_FILES: [&str; 4] = [
    "datacenter-ip",
    "datacenter-server-ip",
    "datacenter-prefix",
    "datacenter-netns",
];

pub(crate) fn write_client_files(dir: &Path, dc: &DatacenterPlan) -> Result<(), LabError> {
    for (file, text) in [
        ("datacenter-ip", dc.public_ip.to_string()),
        ("datacenter-server-ip", dc.server_ip.to_string()),
        ("datacenter-prefix", dc.prefix.clone()),
        ("datacenter-netns", dc.netns.clone()),
    ] {
        let path = dir.join(file);
        fs::write(&path, format!("{text}\n")).map_err(io_at(&path))?;
    }
    Ok(())
}

/// The datacenter's files: strongswan.conf, swanctl.conf, charon's VICI
/// socket and log, its `/run`, bird.conf and BIRD's control socket.
pub fn datacenter_dir(dir: &Path) -> PathBuf {
    dir.join("datacenter")
}

/// charon's VICI socket (`swanctl --uri unix://…`).
pub fn vici_socket(dir: &Path) -> PathBuf {
    datacenter_dir(dir).join("charon.vici")
}

/// The customer router's control socket (`birdc -s`).
pub fn router_socket(dir: &Path) -> PathBuf {
    datacenter_dir(dir).join("bird.ctl")
}

/// FRR's files: its daemons' configurations, pid files, zebra's socket
/// and the vty sockets (`vtysh --vty_socket`).
pub fn frr_dir(dir: &Path) -> PathBuf {
    datacenter_dir(dir).join("frr")
}

/// A tunnel's pre-shared key: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(String);

impl Psk {
    /// spec 10.2: 8 to 64 characters of letters, digits, `.` and `_`, not
    /// starting with 0. Anything else would not be AWS's and could break
    /// out of the quoted secret in swanctl.conf, so it is refused.
    pub fn new(key: &str) -> Result<Psk, LabError> {
        let ok = (8..=64).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
        if ok {
            Ok(Psk(key.to_owned()))
        } else {
            Err(LabError::Connection(format!(
                "a tunnel's pre-shared key has {} characters, not 8 to 64 of letters, digits, '.' and '_' (spec 10.2)",
                key.len()
            )))
        }
    }

    fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

/// One of a connection's tunnels, as the customer gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// The VGW's outside address (from the public pool): the IKE peer.
    pub outside_ip: Ipv4Addr,
    /// The VGW's inside address, the /30's first host (spec 10.2).
    pub vgw_inside: Ipv4Addr,
    /// Ours, the /30's second host.
    pub cgw_inside: Ipv4Addr,
    pub psk: Psk,
}

/// What the customer gateway and router need of a VPN connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub id: String,
    pub vpn_gateway_id: Option<String>,
    /// The customer gateway's IP the connection was made for.
    pub customer_ip: Ipv4Addr,
    /// The BGP ASNs; `None` on a static-routes-only connection.
    pub customer_asn: Option<u32>,
    pub amazon_asn: Option<u32>,
    pub static_routes_only: bool,
    pub tunnels: Vec<Tunnel>,
    /// The VPC side's prefixes (the attached VPC's CIDRs), the remote
    /// traffic selectors; empty means 0.0.0.0/0.
    pub remote_prefixes: Vec<String>,
}

/// The text between `<name>` and `</name>` (the first such element).
fn inner<'x>(text: &'x str, name: &str) -> Option<&'x str> {
    let rest = text.split_once(&format!("<{name}>"))?.1;
    Some(rest.split_once(&format!("</{name}>"))?.0)
}

/// Every `<name>…</name>`'s text, in order.
pub fn all_inner<'x>(text: &'x str, name: &str) -> Vec<&'x str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    text.split(&open)
        .skip(1)
        .filter_map(|part| part.split_once(&close).map(|(v, _)| v))
        .collect()
}

/// XML's five predefined entities and numeric references, undone.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let Some(end) = tail.find(';') else {
            out.push_str(tail);
            return out;
        };
        let entity = &tail[1..end];
        let ch = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => out.push(c),
            None => out.push_str(&tail[..=end]),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

fn bad(what: &str) -> LabError {
    LabError::Connection(format!("the connection's configuration lacks {what}"))
}

fn addr(text: Option<&str>, what: &str) -> Result<Ipv4Addr, LabError> {
    let text = text.ok_or_else(|| bad(what))?.trim();
    text.parse()
        .map_err(|_| LabError::Connection(format!("{what} {text:?} is not an IPv4 address")))
}

impl Connection {
    /// Reads a `DescribeVpnConnections` answer for connection `id`: its
    /// `customerGatewayConfiguration` document (escaped inside the
    /// answer) and its options.
    pub fn from_describe(xml: &str, id: &str) -> Result<Connection, LabError> {
        // The connection's part of the answer: from its ID up to the next
        // connection's, or the end.
        let start = xml
            .find(&format!("<vpnConnectionId>{id}</vpnConnectionId>"))
            .ok_or_else(|| {
                LabError::Connection(format!("DescribeVpnConnections does not list {id}"))
            })?;
        let rest = &xml[start + 1..];
        let item = &rest[..rest.find("<vpnConnectionId>").unwrap_or(rest.len())];
        let state = inner(item, "state").unwrap_or_default();
        let document = inner(item, "customerGatewayConfiguration").ok_or_else(|| {
            LabError::Connection(format!(
                "{id} is {state} and has no customer gateway configuration: only a pending or available connection has one"
            ))
        })?;
        let mut connection = Connection::from_configuration(&unescape(document))?;
        if inner(item, "staticRoutesOnly").map(str::trim) == Some("true") {
            connection.static_routes_only = true;
            connection.customer_asn = None;
            connection.amazon_asn = None;
        }
        Ok(connection)
    }

    /// Reads a connection's downloadable configuration (AWS's generic
    /// `<vpn_connection>` document): per tunnel the outside and inside
    /// addresses, the pre-shared key and, with BGP, both ASNs.
    pub fn from_configuration(doc: &str) -> Result<Connection, LabError> {
        let id = doc
            .split_once("<vpn_connection id=\"")
            .and_then(|(_, r)| r.split_once('"'))
            .map(|(id, _)| id.to_owned())
            .ok_or_else(|| bad("its <vpn_connection id=…>"))?;
        let vpn_gateway_id = inner(doc, "vpn_gateway_id")
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(str::to_owned);
        let mut tunnels = Vec::new();
        let mut customer_ip = None;
        let mut customer_asn = None;
        let mut amazon_asn = None;
        for t in all_inner(doc, "ipsec_tunnel") {
            let cgw = inner(t, "customer_gateway").ok_or_else(|| bad("<customer_gateway>"))?;
            let vgw = inner(t, "vpn_gateway").ok_or_else(|| bad("<vpn_gateway>"))?;
            fn outside(side: &str) -> Option<&str> {
                inner(inner(side, "tunnel_outside_address")?, "ip_address")
            }
            fn inside(side: &str) -> Option<&str> {
                inner(inner(side, "tunnel_inside_address")?, "ip_address")
            }
            customer_ip = Some(addr(
                outside(cgw),
                "the customer gateway's outside address",
            )?);
            let asn = |side: &str| -> Result<Option<u32>, LabError> {
                inner(side, "bgp")
                    .and_then(|b| inner(b, "asn"))
                    .map(|a| {
                        a.trim().parse::<u32>().map_err(|_| {
                            LabError::Connection(format!("the BGP ASN {a:?} is not a number"))
                        })
                    })
                    .transpose()
            };
            customer_asn = asn(cgw)?;
            amazon_asn = asn(vgw)?;
            let key = inner(t, "ike")
                .and_then(|i| inner(i, "pre_shared_key"))
                .ok_or_else(|| bad("a tunnel's pre-shared key"))?;
            tunnels.push(Tunnel {
                outside_ip: addr(outside(vgw), "a tunnel's outside address")?,
                vgw_inside: addr(inside(vgw), "the VGW's inside address")?,
                cgw_inside: addr(inside(cgw), "the customer gateway's inside address")?,
                psk: Psk::new(&unescape(key))?,
            });
        }
        if tunnels.is_empty() {
            return Err(bad("any <ipsec_tunnel>"));
        }
        let customer_ip = customer_ip.ok_or_else(|| bad("the customer gateway's address"))?;
        let static_routes_only = customer_asn.is_none() || amazon_asn.is_none();
        Ok(Connection {
            id,
            vpn_gateway_id,
            customer_ip,
            customer_asn: customer_asn.filter(|_| !static_routes_only),
            amazon_asn: amazon_asn.filter(|_| !static_routes_only),
            static_routes_only,
            tunnels,
            remote_prefixes: Vec::new(),
        })
    }

    /// True if BIRD runs: the connection has BGP.
    pub fn has_bgp(&self) -> bool {
        !self.static_routes_only && self.customer_asn.is_some() && self.amazon_asn.is_some()
    }
}

/// charon's own configuration: the plugins, NAT-T ports, the VICI socket
/// and the log in `dc_dir`; fast IKE retransmits so a tunnel comes up
/// soon after its VGW does.
pub fn render_strongswan_conf(dc_dir: &Path) -> String {
    format!(
        "# The lab datacenter's customer gateway (openvpc lab datacenter connect).\n\
         charon {{\n\
         \x20 load = {CHARON_PLUGINS}\n\
         \x20 port = 500\n\
         \x20 port_nat_t = 4500\n\
         \x20 retransmit_timeout = 2\n\
         \x20 retransmit_base = 1.4\n\
         \x20 retransmit_tries = 3\n\
         \x20 plugins {{\n\
         \x20   vici {{\n\
         \x20     socket = unix://{dir}/charon.vici\n\
         \x20   }}\n\
         \x20 }}\n\
         \x20 filelog {{\n\
         \x20   log {{\n\
         \x20     path = {dir}/charon.log\n\
         \x20     time_format = %F %T\n\
         \x20     default = 1\n\
         \x20     ike = 2\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        dir = dc_dir.display(),
    )
}

/// The tunnels as swanctl connections `tunnel1`, `tunnel2`, …: IKEv2 with
/// the PSK, IDs the two addresses, both initiated at once and retried
/// forever, DPD every 10 s restarting a dead tunnel (so a cleared one
/// comes back). Each child's selectors hold the tunnel's inside
/// addresses, so libipsec sends each BGP session through its own tunnel.
pub fn render_swanctl_conf(c: &Connection, dc: &DatacenterPlan) -> String {
    let remote: Vec<String> = if c.remote_prefixes.is_empty() {
        vec!["0.0.0.0/0".to_owned()]
    } else {
        c.remote_prefixes.clone()
    };
    let mut conns = String::new();
    let mut secrets = String::new();
    for (i, t) in c.tunnels.iter().enumerate() {
        let name = format!("tunnel{}", i + 1);
        let local_ts = format!("{},{}/32", dc.prefix, t.cgw_inside);
        let mut remote_ts = remote.clone();
        if !remote.iter().any(|r| r == "0.0.0.0/0") {
            remote_ts.push(format!("{}/32", t.vgw_inside));
        }
        conns.push_str(&format!(
            "  {name} {{\n\
             \x20   version = 2\n\
             \x20   local_addrs = {local}\n\
             \x20   remote_addrs = {peer}\n\
             \x20   proposals = {IKE_PROPOSALS}\n\
             \x20   encap = yes\n\
             \x20   keyingtries = 0\n\
             \x20   dpd_delay = 10s\n\
             \x20   rekey_time = {IKE_REKEY_SECS}s\n\
             \x20   local {{\n\
             \x20     auth = psk\n\
             \x20     id = {local}\n\
             \x20   }}\n\
             \x20   remote {{\n\
             \x20     auth = psk\n\
             \x20     id = {peer}\n\
             \x20   }}\n\
             \x20   children {{\n\
             \x20     {name} {{\n\
             \x20       local_ts = {local_ts}\n\
             \x20       remote_ts = {remote_ts}\n\
             \x20       esp_proposals = {ESP_PROPOSALS}\n\
             \x20       rekey_time = {CHILD_REKEY_SECS}s\n\
             \x20       start_action = start\n\
             \x20       dpd_action = restart\n\
             \x20       close_action = restart\n\
             \x20     }}\n\
             \x20   }}\n\
             \x20 }}\n",
            local = dc.public_ip,
            peer = t.outside_ip,
            remote_ts = remote_ts.join(","),
        ));
        secrets.push_str(&format!(
            "  ike-{name} {{\n\
             \x20   id-1 = {peer}\n\
             \x20   id-2 = {local}\n\
             \x20   secret = \"{secret}\"\n\
             \x20 }}\n",
            peer = t.outside_ip,
            local = dc.public_ip,
            secret = t.psk.secret(),
        ));
    }
    format!(
        "# VPN connection {id}: the lab datacenter's customer gateway.\n\
         connections {{\n{conns}}}\n\
         secrets {{\n{secrets}}}\n",
        id = c.id
    )
}

/// The customer router: one eBGP session per tunnel from its `.2` to the
/// VGW's `.1` (directly connected over `ipsec0`), spec 10.2's timers,
/// reconnecting after 5 s; it announces the datacenter's prefix and puts
/// the VPC routes it learns into the kernel, from the LAN server's
/// address, so the datacenter's packets to the VPC go into the tunnel.
/// `None` for a static-routes-only connection.
pub fn render_bird_conf(c: &Connection, dc: &DatacenterPlan) -> Option<String> {
    let (Some(local_as), Some(peer_as)) = (c.customer_asn, c.amazon_asn) else {
        return None;
    };
    if c.static_routes_only {
        return None;
    }
    let mut conf = format!(
        "# VPN connection {id}: the lab datacenter's customer router.\n\
         log stderr all;\n\
         debug protocols {{ states, events }};\n\
         router id {router_id};\n\
         \n\
         protocol device {{ scan time 1; }}\n\
         \n\
         # The datacenter's network, announced to the VGW.\n\
         protocol static datacenter {{\n\
         \x20   ipv4;\n\
         \x20   route {prefix} blackhole;\n\
         }}\n\
         \n\
         protocol kernel {{\n\
         \x20   ipv4 {{\n\
         \x20       import none;\n\
         \x20       export filter {{\n\
         \x20           if source = RTS_BGP then {{ krt_prefsrc = {server}; accept; }}\n\
         \x20           reject;\n\
         \x20       }};\n\
         \x20   }};\n\
         }}\n",
        id = c.id,
        router_id = dc.public_ip,
        prefix = dc.prefix,
        server = dc.server_ip,
    );
    for (i, t) in c.tunnels.iter().enumerate() {
        conf.push_str(&format!(
            "\nprotocol bgp tunnel{n} {{\n\
             \x20   local {local} as {local_as};\n\
             \x20   neighbor {peer} as {peer_as};\n\
             \x20   interface \"{LIBIPSEC_TUN}\";\n\
             \x20   hold time {BGP_HOLD_SECS};\n\
             \x20   keepalive time {BGP_KEEPALIVE_SECS};\n\
             \x20   connect retry time 5;\n\
             \x20   error wait time 1, 5;\n\
             \x20   ipv4 {{\n\
             \x20       import all;\n\
             \x20       export where proto = \"datacenter\";\n\
             \x20   }};\n\
             }}\n",
            n = i + 1,
            local = t.cgw_inside,
            peer = t.vgw_inside,
        ));
    }
    Some(conf)
}

/// FRR's two configurations: zebra's and bgpd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrrConf {
    pub zebra: String,
    pub bgpd: String,
}

/// The customer router as FRR, the same as [`render_bird_conf`]'s: one
/// eBGP session per tunnel from its `.2` (bound to it) to the VGW's `.1`,
/// spec 10.2's timers, reconnecting after 5 s. Its policies take every
/// route the VGW sends and send it only the datacenter's prefix (not the
/// VPC routes one tunnel taught it over the other). The prefix is a
/// `network` without an import check: nothing in the datacenter routes
/// it as a whole (its server is a loopback address), and a static route
/// would need FRR's staticd as a third daemon. One best path (no ECMP),
/// like BIRD's kernel export; zebra installs it with the LAN server's
/// address as the source. `None` for a static-routes-only connection.
pub fn render_frr_conf(c: &Connection, dc: &DatacenterPlan) -> Option<FrrConf> {
    let (Some(local_as), Some(peer_as)) = (c.customer_asn, c.amazon_asn) else {
        return None;
    };
    if c.static_routes_only {
        return None;
    }
    let zebra = format!(
        "! VPN connection {id}: the lab datacenter's customer router (FRR's zebra).\n\
         hostname datacenter-zebra\n\
         log stdout informational\n\
         ! The VPC routes BGP learns leave from the LAN server's address.\n\
         route-map FROM-LAN-SERVER permit 10\n\
         \x20set src {server}\n\
         exit\n\
         ip protocol bgp route-map FROM-LAN-SERVER\n",
        id = c.id,
        server = dc.server_ip,
    );
    let mut neighbors = String::new();
    let mut policies = String::new();
    for (i, t) in c.tunnels.iter().enumerate() {
        let peer = t.vgw_inside;
        // Named as swanctl's connections and BIRD's protocols, so `lab
        // status` lines up FRR's summary with the SAs.
        neighbors.push_str(&format!(
            "\x20neighbor {peer} remote-as {peer_as}\n\
             \x20neighbor {peer} description tunnel{n} to {outside}\n\
             \x20neighbor {peer} update-source {local}\n\
             \x20neighbor {peer} timers {BGP_KEEPALIVE_SECS} {BGP_HOLD_SECS}\n\
             \x20neighbor {peer} timers connect 5\n",
            n = i + 1,
            outside = t.outside_ip,
            local = t.cgw_inside,
        ));
        policies.push_str(&format!(
            "\x20 neighbor {peer} route-map FROM-VGW in\n\
             \x20 neighbor {peer} route-map TO-VGW out\n"
        ));
    }
    let bgpd = format!(
        "! VPN connection {id}: the lab datacenter's customer router (FRR's bgpd).\n\
         hostname datacenter-bgpd\n\
         log stdout informational\n\
         ip prefix-list DATACENTER seq 5 permit {prefix}\n\
         route-map TO-VGW permit 10\n\
         \x20match ip address prefix-list DATACENTER\n\
         exit\n\
         route-map FROM-VGW permit 10\n\
         exit\n\
         router bgp {local_as}\n\
         \x20bgp router-id {router_id}\n\
         \x20bgp log-neighbor-changes\n\
         \x20no bgp ebgp-requires-policy\n\
         \x20no bgp network import-check\n\
         {neighbors}\
         \x20address-family ipv4 unicast\n\
         \x20 network {prefix}\n\
         \x20 maximum-paths 1\n\
         {policies}\
         \x20exit-address-family\n\
         exit\n",
        id = c.id,
        prefix = dc.prefix,
        router_id = dc.public_ip,
    );
    Some(FrrConf { zebra, bgpd })
}

/// Runs `swanctl ARGS` against the lab's charon: its output, or why not.
pub fn swanctl(dir: &Path, args: &[&str]) -> Result<String, String> {
    let uri = format!("unix://{}", vici_socket(dir).display());
    let out = Command::new(SWANCTL)
        .args(args)
        .args(["--uri", &uri])
        .output()
        .map_err(|e| format!("running {SWANCTL}: {e}"))?;
    // swanctl reports each plugin of the default configuration it cannot
    // load; that is not charon's answer.
    let text: String = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .lines()
    .filter(|l| !(l.starts_with("plugin '") && l.contains("failed to load")))
    .map(|l| format!("{l}\n"))
    .collect();
    if out.status.success() {
        Ok(text)
    } else {
        Err(text.trim().to_owned())
    }
}

/// Runs `birdc -s SOCKET ARGS` against the customer router.
pub fn birdc(dir: &Path, args: &[&str]) -> Result<String, String> {
    let socket = router_socket(dir);
    let out = Command::new("birdc")
        .arg("-s")
        .arg(&socket)
        .args(args)
        .output()
        .map_err(|e| format!("running birdc: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "birdc -s {}: {}{}",
            socket.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `vtysh --vty_socket DIR/datacenter/frr -d DAEMON -c COMMAND`
/// against the customer router when it is FRR: its answer, or why not.
pub fn vtysh(dir: &Path, daemon: &str, command: &str) -> Result<String, String> {
    let sockets = frr_dir(dir);
    let out = Command::new(VTYSH)
        .arg("--vty_socket")
        .arg(&sockets)
        .args(["-d", daemon, "-c", command])
        .output()
        .map_err(|e| format!("running {VTYSH}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!(
            "{VTYSH} --vty_socket {} -d {daemon}: {}{}",
            sockets.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn wait(what: &str, log: &Path, mut ready: impl FnMut() -> bool) -> Result<(), LabError> {
    let start = Instant::now();
    while !ready() {
        if start.elapsed() > READY_TIMEOUT {
            return Err(LabError::NotReady {
                what: what.to_owned(),
                secs: READY_TIMEOUT.as_secs(),
                log: log.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The command that runs charon in the datacenter's namespace, in the
/// foreground with its configuration: `ip netns exec` gives it a mount
/// namespace of its own, where the lab's `run` directory is bound over
/// `/run` so its pid file is the lab's; each step execs the next, so the
/// recorded PID is charon's.
fn charon_args(dir: &Path, dc: &DatacenterPlan) -> Vec<String> {
    let dc_dir = datacenter_dir(dir);
    vec![
        "netns".to_owned(),
        "exec".into(),
        dc.netns.clone(),
        "sh".into(),
        "-c".into(),
        "mount --bind \"$1\" /run && STRONGSWAN_CONF=\"$2\" exec \"$3\"".into(),
        "sh".into(),
        dc_dir.join("run").display().to_string(),
        dc_dir.join("strongswan.conf").display().to_string(),
        CHARON.into(),
    ]
}

fn bird_args(dir: &Path, dc: &DatacenterPlan) -> Vec<String> {
    let dc_dir = datacenter_dir(dir);
    vec![
        "netns".to_owned(),
        "exec".into(),
        dc.netns.clone(),
        BIRD.into(),
        "-f".into(),
        "-c".into(),
        dc_dir.join("bird.conf").display().to_string(),
        "-s".into(),
        router_socket(dir).display().to_string(),
        "-P".into(),
        dc_dir.join("bird.pid").display().to_string(),
    ]
}

/// The commands that run FRR's zebra and bgpd in the datacenter's
/// namespace, in the foreground (`ip netns exec` execs them, so the
/// recorded PIDs are theirs), every path of theirs in [`frr_dir`], no TCP
/// vty port.
fn frr_args(dir: &Path, dc: &DatacenterPlan, daemon: &str) -> Vec<String> {
    let frr = frr_dir(dir);
    let file = |name: String| frr.join(name).display().to_string();
    let exe = if daemon == "zebra" { ZEBRA } else { BGPD };
    [
        "netns",
        "exec",
        &dc.netns,
        exe,
        "-u",
        "root",
        "-g",
        FRR_VTY_GROUP,
        "-f",
        &file(format!("{daemon}.conf")),
        "-i",
        &file(format!("{daemon}.pid")),
        "-z",
        &file("zserv.api".to_owned()),
        "--vty_socket",
        &frr.display().to_string(),
        "-P",
        "0",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Starts the customer gateway for `c` (and the customer router with
/// BGP: BIRD, or FRR with `router`) in the datacenter, replacing what an
/// earlier `connect` started.
pub fn connect(
    dir: &Path,
    c: &Connection,
    router: Router,
    mut progress: impl FnMut(&str),
) -> Result<(), LabError> {
    let state = load(dir)?;
    let dc = state
        .plan
        .as_ref()
        .and_then(|p| p.datacenter.clone())
        .ok_or_else(|| LabError::NoDatacenter(dir.to_owned()))?;
    if c.customer_ip != dc.public_ip {
        return Err(LabError::Connection(format!(
            "{} was made for the customer gateway at {}, but the datacenter is at {}: create the customer gateway with --public-ip {}",
            c.id, c.customer_ip, dc.public_ip, dc.public_ip
        )));
    }
    if !Path::new(CHARON).exists() {
        return Err(LabError::MissingStrongswan(CHARON.into()));
    }
    match router {
        Router::Bird if c.has_bgp() && !Path::new(BIRD).exists() => {
            return Err(LabError::MissingTool(BIRD.into()));
        }
        Router::Frr if c.has_bgp() && !(Path::new(BGPD).exists() && Path::new(ZEBRA).exists()) => {
            return Err(LabError::Connection(format!(
                "{BGPD} or {ZEBRA} is missing: the customer router with --router frr is FRR (`apt-get install frr`)"
            )));
        }
        _ => {}
    }
    disconnect(dir, &mut progress)?;
    let dc_dir = datacenter_dir(dir);
    fs::create_dir_all(dc_dir.join("run")).map_err(io_at(&dc_dir))?;
    fs::create_dir_all(log_dir(dir)).map_err(io_at(dir))?;
    let write = |name: &str, text: &str, secret: bool| -> Result<(), LabError> {
        let path = dc_dir.join(name);
        let _ = fs::remove_file(&path);
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        options
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(io_at(&path))
    };
    let router_files: Option<Vec<(&str, String)>> = match router {
        Router::Bird => render_bird_conf(c, &dc).map(|b| vec![("bird.conf", b)]),
        Router::Frr => render_frr_conf(c, &dc)
            .map(|f| vec![("frr/zebra.conf", f.zebra), ("frr/bgpd.conf", f.bgpd)]),
    };
    write("strongswan.conf", &render_strongswan_conf(&dc_dir), false)?;
    write("swanctl.conf", &render_swanctl_conf(c, &dc), true)?;
    let _ = fs::remove_file(vici_socket(dir));

    progress(&format!(
        "starting the customer gateway (strongSwan) for {} at {}: tunnels to {}",
        c.id,
        dc.public_ip,
        c.tunnels
            .iter()
            .map(|t| t.outside_ip.to_string())
            .collect::<Vec<_>>()
            .join(" and ")
    ));
    start_gateway(dir, &dc)?;

    if let Some(files) = router_files {
        progress(&format!(
            "starting the customer router ({}): AS {} to the VGW's AS {} over {}",
            router.name(),
            c.customer_asn.unwrap_or_default(),
            c.amazon_asn.unwrap_or_default(),
            c.tunnels
                .iter()
                .map(|t| format!("{} → {}", t.cgw_inside, t.vgw_inside))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let frr = frr_dir(dir);
        fs::create_dir_all(&frr).map_err(io_at(&frr))?;
        for (name, text) in &files {
            write(name, text, false)?;
        }
        start_router(dir, &dc, router)?;
    }
    Ok(())
}

/// Spawns charon (recorded first), waits for its socket, puts the inside
/// addresses on its TUN and loads the tunnels, which it then initiates.
fn start_gateway(dir: &Path, dc: &DatacenterPlan) -> Result<(), LabError> {
    let mut state = load(dir)?;
    let args = charon_args(dir, dc);
    let log = log_dir(dir).join("datacenter-gateway.log");
    let exe = PathBuf::from("ip");
    let pid = spawn(&exe, &args, &log)?;
    state.processes.retain(|p| p.part != GATEWAY_PART);
    state.processes.push(LabProcess {
        part: GATEWAY_PART.into(),
        pid,
        exe: Some(exe),
        args,
        log,
    });
    save(dir, &state)?;
    configure_gateway(dir, dc)
}

/// What a charon just started needs before it serves: the inside /30s on
/// `ipsec0` (it made the TUN on loading kernel-libipsec) and the tunnels.
pub(crate) fn configure_gateway(dir: &Path, dc: &DatacenterPlan) -> Result<(), LabError> {
    let log = datacenter_dir(dir).join("charon.log");
    let socket = vici_socket(dir);
    wait("the customer gateway's VICI socket", &log, || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })?;
    wait("the customer gateway's TUN ipsec0", &log, || {
        ip(&["-n", &dc.netns, "link", "show", LIBIPSEC_TUN]).is_ok()
    })?;
    let conf = datacenter_dir(dir).join("swanctl.conf");
    let text = fs::read_to_string(&conf).map_err(io_at(&conf))?;
    let insides = inside_cidrs(&text);
    for inside in &insides {
        let _ = ip(&["-n", &dc.netns, "addr", "add", inside, "dev", LIBIPSEC_TUN]);
    }
    sysctl(
        &dc.netns,
        &[(&format!("net.ipv4.conf.{LIBIPSEC_TUN}.rp_filter"), "0")],
    )?;
    ip(&["-n", &dc.netns, "link", "set", LIBIPSEC_TUN, "up"])?;
    let conf = conf.display().to_string();
    let out = swanctl(dir, &["--load-all", "--noprompt", "--file", &conf]).map_err(|stderr| {
        LabError::Command {
            command: format!("{SWANCTL} --load-all --file {conf}"),
            stderr,
        }
    })?;
    // swanctl also reports plugins it could not load (test-vectors): only
    // the count of loaded connections tells.
    if !out.contains(&format!(
        "successfully loaded {} connections",
        insides.len()
    )) {
        return Err(LabError::Command {
            command: format!("{SWANCTL} --load-all --file {conf}"),
            stderr: out.trim().to_owned(),
        });
    }
    Ok(())
}

/// Our inside address of each tunnel as `.2/30`, from the local traffic
/// selectors swanctl.conf holds (`…,169.254.x.2/32`).
fn inside_cidrs(swanctl_conf: &str) -> Vec<String> {
    swanctl_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("local_ts = "))
        .filter_map(|ts| ts.split(',').nth(1))
        .filter_map(|a| a.strip_suffix("/32"))
        .map(|a| format!("{a}/30"))
        .collect()
}

/// Starts the customer router: BIRD, or FRR's zebra and then its bgpd
/// (which finds zebra's socket at once). Each is recorded before it runs.
fn start_router(dir: &Path, dc: &DatacenterPlan, router: Router) -> Result<(), LabError> {
    match router {
        Router::Bird => {
            let _ = fs::remove_file(router_socket(dir));
            start_part(dir, ROUTER_PART, bird_args(dir, dc))?;
            wait_router(dir)
        }
        Router::Frr => {
            let frr = frr_dir(dir);
            for stale in ["zebra.vty", "bgpd.vty", "zserv.api"] {
                let _ = fs::remove_file(frr.join(stale));
            }
            start_part(dir, ZEBRA_PART, frr_args(dir, dc, "zebra"))?;
            wait_zebra(dir)?;
            start_part(dir, ROUTER_PART, frr_args(dir, dc, "bgpd"))?;
            wait_router(dir)
        }
    }
}

/// Spawns `ip ARGS` as lab part `part`, logging to `DIR/logs/PART.log`.
fn start_part(dir: &Path, part: &str, args: Vec<String>) -> Result<(), LabError> {
    let mut state = load(dir)?;
    let log = log_dir(dir).join(format!("{part}.log"));
    let exe = PathBuf::from("ip");
    let pid = spawn(&exe, &args, &log)?;
    state.processes.retain(|p| p.part != part);
    state.processes.push(LabProcess {
        part: part.into(),
        pid,
        exe: Some(exe),
        args,
        log,
    });
    save(dir, &state)
}

/// Waits until the recorded customer router answers on its socket
/// (BIRD's control socket, or bgpd's vty socket).
pub(crate) fn wait_router(dir: &Path) -> Result<(), LabError> {
    let state = load(dir)?;
    let router = state
        .processes
        .iter()
        .find(|p| p.part == ROUTER_PART)
        .map_or(Router::Bird, Router::of);
    let socket = match router {
        Router::Bird => router_socket(dir),
        Router::Frr => frr_dir(dir).join("bgpd.vty"),
    };
    let log = log_dir(dir).join("datacenter-router.log");
    wait(
        &format!("the customer router ({})", router.name()),
        &log,
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
    )
}

/// Waits until FRR's zebra answers on its vty socket.
pub(crate) fn wait_zebra(dir: &Path) -> Result<(), LabError> {
    let socket = frr_dir(dir).join("zebra.vty");
    let log = log_dir(dir).join(format!("{ZEBRA_PART}.log"));
    wait("the customer router's zebra (FRR)", &log, || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    })
}

/// Stops the customer router and gateway (the router first, so it does
/// not see the tunnels die; FRR's zebra after its bgpd, taking its kernel
/// routes with it) and forgets them; the secrets file goes too. True if
/// something ran.
pub fn disconnect(dir: &Path, mut progress: impl FnMut(&str)) -> Result<bool, LabError> {
    let mut state = load(dir)?;
    let mut stopped = false;
    for (part, program) in [
        (ROUTER_PART, Program::CustomerRouter),
        (ZEBRA_PART, Program::Frr),
        (GATEWAY_PART, Program::Charon),
    ] {
        if let Some(p) = state.processes.iter().find(|p| p.part == part)
            && stop_process(p.pid, false, program)
        {
            progress(&format!("stopped {part} (pid {})", p.pid));
            stopped = true;
        }
    }
    state
        .processes
        .retain(|p| ![ROUTER_PART, ZEBRA_PART, GATEWAY_PART].contains(&p.part.as_str()));
    save(dir, &state)?;
    let _ = fs::remove_file(datacenter_dir(dir).join("swanctl.conf"));
    Ok(stopped)
}

/// What `lab status` shows of the datacenter.
#[derive(Debug, Clone, Serialize)]
pub struct DatacenterStatus {
    pub netns: String,
    pub public_ip: Ipv4Addr,
    pub server_ip: Ipv4Addr,
    pub prefix: String,
    pub gateway_pid: Option<u32>,
    pub gateway_running: bool,
    /// Which customer router runs (BIRD unless started with `--router
    /// frr`).
    pub router: Router,
    pub router_pid: Option<u32>,
    pub router_running: bool,
    /// FRR's zebra, when the router is FRR.
    pub zebra_pid: Option<u32>,
    pub zebra_running: bool,
    /// `swanctl --list-sas`, or why it could not be read.
    pub sas: Result<String, String>,
    /// `birdc show protocols` or FRR's `show bgp summary`, or why not.
    pub protocols: Option<Result<String, String>>,
}

/// The datacenter's address and whether charon and BIRD run, with what
/// they say; `None` in a lab without a datacenter.
pub fn status(dir: &Path) -> Result<Option<DatacenterStatus>, LabError> {
    let state = load(dir)?;
    let Some(dc) = state.plan.as_ref().and_then(|p| p.datacenter.clone()) else {
        return Ok(None);
    };
    let pid = |part: &str| {
        state
            .processes
            .iter()
            .find(|p| p.part == part)
            .map(|p| p.pid)
    };
    let (gateway_pid, router_pid, zebra_pid) =
        (pid(GATEWAY_PART), pid(ROUTER_PART), pid(ZEBRA_PART));
    let gateway_running = gateway_pid.is_some_and(crate::process_alive);
    let router_running = router_pid.is_some_and(crate::process_alive);
    let zebra_running = zebra_pid.is_some_and(crate::process_alive);
    let router = state
        .processes
        .iter()
        .find(|p| p.part == ROUTER_PART)
        .map_or(Router::Bird, Router::of);
    let sas = if gateway_running {
        swanctl(dir, &["--list-sas"])
    } else {
        Err("not running: `openvpc lab datacenter connect` starts it".to_owned())
    };
    let protocols = router_pid.map(|_| {
        if !router_running {
            Err("not running".to_owned())
        } else if router == Router::Frr {
            vtysh(dir, "bgpd", "show bgp summary")
        } else {
            birdc(dir, &["show", "protocols"])
        }
    });
    Ok(Some(DatacenterStatus {
        netns: dc.netns,
        public_ip: dc.public_ip,
        server_ip: dc.server_ip,
        prefix: dc.prefix,
        gateway_pid,
        gateway_running,
        router,
        router_pid,
        router_running,
        zebra_pid,
        zebra_running,
        sas,
        protocols,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSK1: &str = "Tun1.secret_key1";
    const PSK2: &str = "Tun2.secret_key2";

    /// The document our server's `configuration()` writes, for 2 tunnels.
    fn document(bgp: bool) -> String {
        let tunnel = |outside: &str, cgw_in: &str, vgw_in: &str, psk: &str| {
            let b = |asn: u32| {
                if bgp {
                    format!("<bgp><asn>{asn}</asn><hold_time>30</hold_time></bgp>")
                } else {
                    String::new()
                }
            };
            format!(
                "<ipsec_tunnel><customer_gateway><tunnel_outside_address><ip_address>198.51.100.202</ip_address></tunnel_outside_address><tunnel_inside_address><ip_address>{cgw_in}</ip_address><network_mask>255.255.255.252</network_mask><network_cidr>30</network_cidr></tunnel_inside_address>{}</customer_gateway><vpn_gateway><tunnel_outside_address><ip_address>{outside}</ip_address></tunnel_outside_address><tunnel_inside_address><ip_address>{vgw_in}</ip_address><network_mask>255.255.255.252</network_mask><network_cidr>30</network_cidr></tunnel_inside_address>{}</vpn_gateway><ike><authentication_protocol>sha1</authentication_protocol><pre_shared_key>{psk}</pre_shared_key></ike><ipsec><protocol>esp</protocol></ipsec></ipsec_tunnel>",
                b(65000),
                b(64512)
            )
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><vpn_connection id=\"vpn-0123abcd\"><customer_gateway_id>cgw-1</customer_gateway_id><vpn_gateway_id>vgw-1</vpn_gateway_id><vpn_connection_type>ipsec.1</vpn_connection_type>{}{}</vpn_connection>",
            tunnel("203.0.113.5", "169.254.10.2", "169.254.10.1", PSK1),
            tunnel("203.0.113.6", "169.254.11.2", "169.254.11.1", PSK2),
        )
    }

    fn escape(s: &str) -> String {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    fn describe(bgp: bool) -> String {
        format!(
            "<DescribeVpnConnectionsResponse><vpnConnectionSet><item><vpnConnectionId>vpn-0123abcd</vpnConnectionId><state>pending</state><customerGatewayConfiguration>{}</customerGatewayConfiguration><options><staticRoutesOnly>{}</staticRoutesOnly></options></item></vpnConnectionSet></DescribeVpnConnectionsResponse>",
            escape(&document(bgp)),
            !bgp
        )
    }

    fn plan() -> DatacenterPlan {
        DatacenterPlan::new("abc123")
    }

    #[test]
    fn reads_both_tunnels_from_the_describe_answer() {
        let c = Connection::from_describe(&describe(true), "vpn-0123abcd").unwrap();
        assert_eq!(c.id, "vpn-0123abcd");
        assert_eq!(c.vpn_gateway_id.as_deref(), Some("vgw-1"));
        assert_eq!(c.customer_ip, DATACENTER_PUBLIC_IP);
        assert_eq!((c.customer_asn, c.amazon_asn), (Some(65000), Some(64512)));
        assert!(c.has_bgp());
        assert_eq!(c.tunnels.len(), 2);
        let t2 = &c.tunnels[1];
        assert_eq!(t2.outside_ip, Ipv4Addr::new(203, 0, 113, 6));
        assert_eq!(t2.vgw_inside, Ipv4Addr::new(169, 254, 11, 1));
        assert_eq!(t2.cgw_inside, Ipv4Addr::new(169, 254, 11, 2));
        assert_eq!(t2.psk, Psk::new(PSK2).unwrap());
        // Not listed, or not live: said so.
        assert!(Connection::from_describe(&describe(true), "vpn-other").is_err());
    }

    #[test]
    fn a_static_connection_has_no_bgp_and_no_router() {
        let c = Connection::from_describe(&describe(false), "vpn-0123abcd").unwrap();
        assert!(c.static_routes_only && !c.has_bgp());
        assert_eq!(render_bird_conf(&c, &plan()), None);
        let conf = render_strongswan_conf(Path::new("/d"));
        assert!(conf.contains("kernel-libipsec") && conf.contains("unix:///d/charon.vici"));
        assert!(render_swanctl_conf(&c, &plan()).contains("start_action = start"));
    }

    // spec 10.2: PSK authentication with IP-address IDs, both tunnels,
    // the customer side initiating, DPD restarting; each child's selectors
    // carry its own inside addresses.
    #[test]
    fn swanctl_conf_holds_each_tunnels_peer_key_ids_and_selectors() {
        let mut c = Connection::from_configuration(&document(true)).unwrap();
        c.remote_prefixes = vec!["10.0.0.0/16".into()];
        let conf = render_swanctl_conf(&c, &plan());
        let t1 = conf.split("  tunnel2 {").next().unwrap();
        assert!(t1.contains("remote_addrs = 203.0.113.5"), "{conf}");
        assert!(t1.contains("local_addrs = 198.51.100.202"));
        assert!(t1.contains("id = 198.51.100.202") && t1.contains("id = 203.0.113.5"));
        assert!(t1.contains("local_ts = 172.16.0.0/16,169.254.10.2/32"));
        assert!(t1.contains("remote_ts = 10.0.0.0/16,169.254.10.1/32"));
        assert!(t1.contains("auth = psk") && t1.contains("version = 2"));
        assert!(t1.contains("dpd_delay = 10s") && t1.contains("dpd_action = restart"));
        assert!(conf.contains("remote_addrs = 203.0.113.6"));
        assert!(conf.contains("local_ts = 172.16.0.0/16,169.254.11.2/32"));
        let secrets = conf.split("secrets {").nth(1).unwrap();
        let s1 = secrets.split("ike-tunnel2").next().unwrap();
        assert!(s1.contains("id-1 = 203.0.113.5") && s1.contains(&format!("\"{PSK1}\"")));
        assert!(!s1.contains(PSK2));
        assert!(secrets.contains(&format!("\"{PSK2}\"")));
        assert_eq!(inside_cidrs(&conf), ["169.254.10.2/30", "169.254.11.2/30"]);
        // No VPC known: the whole VPC side, as AWS's sample.
        c.remote_prefixes.clear();
        let conf = render_swanctl_conf(&c, &plan());
        assert!(conf.contains("remote_ts = 0.0.0.0/0\n"), "{conf}");
    }

    // spec 10.2: eBGP per tunnel from .2 to .1, the customer's ASN against
    // the VGW's, hold 30 / keepalive 10, the datacenter prefix announced.
    #[test]
    fn bird_conf_peers_each_tunnels_inside_address_with_both_asns() {
        let c = Connection::from_configuration(&document(true)).unwrap();
        let conf = render_bird_conf(&c, &plan()).unwrap();
        for (n, local, peer) in [
            (1, "169.254.10.2", "169.254.10.1"),
            (2, "169.254.11.2", "169.254.11.1"),
        ] {
            let block = conf
                .split(&format!("protocol bgp tunnel{n} {{"))
                .nth(1)
                .unwrap();
            let block = block.split("\n}\n").next().unwrap();
            assert!(
                block.contains(&format!("local {local} as 65000;")),
                "{block}"
            );
            assert!(
                block.contains(&format!("neighbor {peer} as 64512;")),
                "{block}"
            );
            assert!(block.contains("hold time 30;") && block.contains("keepalive time 10;"));
            assert!(block.contains("connect retry time 5;"));
        }
        assert!(conf.contains("route 172.16.0.0/16 blackhole;"));
        assert!(conf.contains("krt_prefsrc = 172.16.1.10;"));
    }

    // spec 10.2, with FRR as the router (issue 19, Interop): the same
    // sessions, timers and announcement as BIRD's; only the datacenter's
    // prefix goes out; zebra installs learned routes from the server.
    #[test]
    fn frr_conf_peers_each_tunnels_inside_address_with_both_asns() {
        let c = Connection::from_configuration(&document(true)).unwrap();
        let FrrConf { zebra, bgpd } = render_frr_conf(&c, &plan()).unwrap();
        let router = bgpd.split("router bgp 65000\n").nth(1).unwrap();
        assert!(router.contains(" bgp router-id 198.51.100.202\n"), "{bgpd}");
        assert!(router.contains(" no bgp ebgp-requires-policy\n"));
        for (n, local, peer) in [
            (1, "169.254.10.2", "169.254.10.1"),
            (2, "169.254.11.2", "169.254.11.1"),
        ] {
            for line in [
                format!(" neighbor {peer} remote-as 64512\n"),
                format!(
                    " neighbor {peer} description tunnel{n} to 203.0.113.{}\n",
                    n + 4
                ),
                format!(" neighbor {peer} update-source {local}\n"),
                format!(" neighbor {peer} timers 10 30\n"),
                format!(" neighbor {peer} timers connect 5\n"),
                format!("  neighbor {peer} route-map FROM-VGW in\n"),
                format!("  neighbor {peer} route-map TO-VGW out\n"),
            ] {
                assert!(router.contains(&line), "{line:?} missing from\n{bgpd}");
            }
        }
        let family = router
            .split(" address-family ipv4 unicast\n")
            .nth(1)
            .unwrap();
        assert!(family.contains("  network 172.16.0.0/16\n"), "{bgpd}");
        assert!(family.contains("  maximum-paths 1\n"));
        assert!(bgpd.contains("ip prefix-list DATACENTER seq 5 permit 172.16.0.0/16\n"));
        let to_vgw = bgpd.split("route-map TO-VGW permit 10\n").nth(1).unwrap();
        assert!(to_vgw.starts_with(" match ip address prefix-list DATACENTER\n"));
        assert!(zebra.contains(" set src 172.16.1.10\n"), "{zebra}");
        assert!(zebra.contains("ip protocol bgp route-map FROM-LAN-SERVER\n"));
        for conf in [&zebra, &bgpd] {
            assert!(!conf.contains(PSK1) && !conf.contains(PSK2));
        }
        // No BGP, no router.
        let c = Connection::from_describe(&describe(false), "vpn-0123abcd").unwrap();
        assert_eq!(render_frr_conf(&c, &plan()), None);
    }

    // Each FRR daemon's files are the lab's own: none of FRR's defaults
    // under /var/run/frr or /etc/frr, so labs never share a socket.
    #[test]
    fn frr_daemons_keep_every_path_in_the_labs_directory() {
        let dir = Path::new("/lab");
        for daemon in ["zebra", "bgpd"] {
            let args = frr_args(dir, &plan(), daemon);
            assert_eq!(args[..3], ["netns", "exec", "ovl-abc123-dc"]);
            assert!(args[3].ends_with(&format!("/{daemon}")), "{args:?}");
            let value = |flag: &str| {
                let at = args.iter().position(|a| a == flag).unwrap();
                args[at + 1].clone()
            };
            assert_eq!(value("-f"), format!("/lab/datacenter/frr/{daemon}.conf"));
            assert_eq!(value("-i"), format!("/lab/datacenter/frr/{daemon}.pid"));
            assert_eq!(value("-z"), "/lab/datacenter/frr/zserv.api");
            assert_eq!(value("--vty_socket"), "/lab/datacenter/frr");
            assert_eq!(value("-P"), "0");
        }
        // `lab status` and `restart` tell the router by its command.
        let router = |args: Vec<String>| {
            Router::of(&LabProcess {
                part: ROUTER_PART.into(),
                pid: 1,
                exe: None,
                args,
                log: PathBuf::new(),
            })
        };
        assert_eq!(router(frr_args(dir, &plan(), "bgpd")), Router::Frr);
        assert_eq!(router(bird_args(dir, &plan())), Router::Bird);
    }

    #[test]
    fn a_psk_never_shows_in_debug_output_or_errors() {
        let c = Connection::from_configuration(&document(true)).unwrap();
        let shown = format!("{c:?} {:?}", c.tunnels[0]);
        assert!(!shown.contains(PSK1) && !shown.contains(PSK2), "{shown}");
        assert!(shown.contains("<redacted>"));
        let bird = render_bird_conf(&c, &plan()).unwrap();
        assert!(!bird.contains(PSK1) && !bird.contains(PSK2));
        let err = Psk::new("bad\"key\nsecret").unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(Psk::new("short").is_err());
    }

    #[test]
    fn unescape_undoes_xml_entities() {
        assert_eq!(
            unescape("&lt;a x=&quot;1&quot;&gt;&amp;&#65;&#x42;"),
            "<a x=\"1\">&AB"
        );
        assert_eq!(unescape("no entities"), "no entities");
    }

    #[test]
    fn the_datacenter_is_named_after_the_lab_and_fits_interface_names() {
        let dc = plan();
        assert_eq!(dc.netns, "ovl-abc123-dc");
        assert!(dc.veth_inside.len() <= 15 && dc.veth_outside.len() <= 15);
        assert!(!DATACENTER_PUBLIC_IP.to_string().starts_with("203.0.113."));
    }
}
