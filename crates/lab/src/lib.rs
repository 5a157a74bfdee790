//! A region of several hosts on one machine, for tests and demos: each host
//! is a network namespace holding only its underlay address, the hosts are
//! joined by a bridge inside one more namespace, and a server and one agent
//! per host run as background processes.
//!
//! The lab also has an outside world: a namespace standing for the
//! internet's router, with a test server address, and edge nodes, each a
//! namespace with one leg on the underlay bridge and one on the outside's
//! bridge. BIRD runs as the outside router and learns the region's public
//! pool from every edge over BGP, spreading flows over the live ones.
//!
//! The outside also stands for the region's upstream DNS resolver, which
//! the hosts' VPC resolvers forward names they do not hold to: the outside
//! namespace has one more leg, on the underlay bridge, at
//! [`REGION_RESOLVER_IP`], where dnsmasq answers ([`REGION_RESOLVER_NAMES`]),
//! and each agent is given it as `--dns-upstream`. The hosts reach it on
//! the underlay directly, as a region's hosts reach its resolver fleet.
//!
//! Every name, link and process the lab makes is written to `DIR/lab.json`
//! before it is made, so [`down`] can remove all of it, also after `up`
//! crashed half way. No address is ever configured outside the lab's own
//! namespaces: the agents reach the server on loopback and create their
//! underlay sockets inside their host's namespace.
//!
//! With `--datacenter` the outside also holds a customer's datacenter
//! (see [`datacenter`]): strongSwan and BIRD (or FRR) there are the
//! customer gateway and router of a Site-to-Site VPN connection.
//!
//! This crate plumbs namespaces and processes; it knows nothing of packets
//! or of the API beyond the files the server and agents write.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod datacenter;
mod netns;

pub use datacenter::DatacenterPlan;
pub use netns::{ip, netns_exists};

/// The most hosts one lab holds: their underlay addresses are 10.254.0.11…
pub const MAX_HOSTS: usize = 200;

/// The most availability zones: `REGIONa` to `REGIONz`.
pub const MAX_AZS: usize = 26;

/// The most edge nodes: their underlay addresses are 10.254.0.2 to
/// 10.254.0.10, below the hosts'.
pub const MAX_EDGES: usize = 9;

/// The most hyperplane nodes: their underlay addresses are 10.254.0.231
/// to 10.254.0.246, above the hosts'.
pub const MAX_HYPERPLANE_NODES: usize = 16;

/// The hyperplane nodes a lab runs unless told otherwise: enough for NAT
/// gateways' shards of 2 to differ, and for a node to die while every
/// shard keeps a live buddy.
pub const DEFAULT_HYPERPLANE_NODES: usize = 4;

/// The outside router's address on its bridge, where the edges' uplinks
/// attach (192.0.2.0/24, TEST-NET-1).
pub const OUTSIDE_ROUTER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The outside bridge's prefix length.
pub const OUTSIDE_PREFIX: u8 = 24;

/// The address in the outside namespace where tests run servers
/// (198.51.100.0/24, TEST-NET-2): `DIR/outside-ip`.
pub const OUTSIDE_SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);

/// The lab region's public pool (203.0.113.0/24, TEST-NET-3), apart from
/// every address of the outside: `DIR/public-pool`.
pub const PUBLIC_POOL: &str = "203.0.113.0/24";

/// The region's upstream DNS resolver: the outside namespace's address on
/// the underlay bridge (above the hosts', below the hyperplane nodes').
pub const REGION_RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 250);

/// The names the region's resolver answers, as dnsmasq `--host-record`s:
/// an "internet" name for the test servers' address.
pub const REGION_RESOLVER_NAMES: &[(&str, Ipv4Addr)] = &[("www.example.com", OUTSIDE_SERVER_IP)];

/// The part name of the region's DNS resolver (dnsmasq) in `lab.json`.
pub const REGION_RESOLVER: &str = "region-resolver";

/// dnsmasq (Debian's dnsmasq-base): the region's resolver. Without it the
/// lab runs none and the hosts answer outside names SERVFAIL.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The outside router's AS.
pub const OUTSIDE_AS: u32 = 65000;

/// The AS every edge node announces the public pool from.
pub const EDGE_AS: u32 = 64512;

/// The BGP hold time the outside router and the edges agree on, in
/// seconds: the longest an edge that stops answering (without closing its
/// session) keeps its path. RFC 4271's smallest non-zero value.
pub const BGP_HOLD_TIME: u16 = 3;

/// The part name of the outside router (BIRD) in `lab.json`.
pub const OUTSIDE_ROUTER: &str = "outside-router";

/// The BIRD daemon (Debian's bird2).
pub const BIRD: &str = "/usr/sbin/bird";

/// How long `up` waits for the server and each agent to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a lab could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("a lab needs 1 to {MAX_HOSTS} hosts, not {0}")]
    Hosts(usize),
    #[error("a lab needs 1 to {MAX_AZS} availability zones and no more than it has hosts, not {0}")]
    Azs(usize),
    #[error(
        "{0} already holds a lab: run `openvpc lab down --dir {0}` first, or pick another --dir"
    )]
    Exists(PathBuf),
    #[error("{0} holds no lab (no lab.json): nothing to take down")]
    NoLab(PathBuf),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{what} did not become ready within {secs} s; its log is {log}")]
    NotReady {
        what: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("a lab has 0 to {MAX_HYPERPLANE_NODES} hyperplane nodes, not {0}")]
    HyperplaneNodes(usize),
    #[error("a lab has 0 to {MAX_EDGES} edge nodes, not {0}")]
    Edges(usize),
    #[error(
        "{0} is missing: the lab's outside router is BIRD 2 (`apt-get install bird2`), or build a lab without an outside (`--edges 0`)"
    )]
    MissingTool(PathBuf),
    #[error(
        "the lab has no part '{0}': name `server`, a host ID (h1, h2, …), an edge ID (e1, e2, …), `{OUTSIDE_ROUTER}`, `datacenter-gateway`, `datacenter-router` or `datacenter-zebra`"
    )]
    NoPart(String),
    #[error(
        "a datacenter lives on the outside world: build the lab with edges (`--edges 1` or more) to add `--datacenter`"
    )]
    DatacenterNeedsOutside,
    #[error("the lab in {0} has no datacenter: build it with `openvpc lab up --datacenter`")]
    NoDatacenter(PathBuf),
    #[error("{0}")]
    Connection(String),
    #[error(
        "{0} is missing: the datacenter's customer gateway is strongSwan (`apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins`)"
    )]
    MissingStrongswan(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a lab file this version understands: {source}")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// `h1`, `h2`, …: also the agent's `--host-id`.
    pub host_id: String,
    pub netns: String,
    pub availability_zone: String,
    pub underlay_ip: Ipv4Addr,
    /// The veth pair's names while both ends are still in the root
    /// namespace; recorded so `down` can remove a pair `up` left behind.
    pub veth_host: String,
    pub veth_bridge: String,
}

/// One edge node: a namespace with a leg on the underlay and an uplink
/// into the outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgePlan {
    /// `e1`, `e2`, …: also the node's `--edge-id`.
    pub edge_id: String,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    /// Its address on the outside bridge, the BGP session's source.
    pub uplink_ip: Ipv4Addr,
    /// The underlay veth pair's names while both ends are in the root
    /// namespace (as [`HostPlan`]'s).
    pub veth_underlay: String,
    pub veth_underlay_bridge: String,
    /// The uplink veth pair's names, likewise.
    pub veth_uplink: String,
    pub veth_uplink_bridge: String,
}

/// One hyperplane node: a namespace with a leg on the underlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HyperplanePlan {
    /// `hp1`, `hp2`, …: also the node's `--node-id`.
    pub node_id: String,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    /// The veth pair's names while both ends are in the root namespace.
    pub veth_host: String,
    pub veth_bridge: String,
}

/// The outside world: the internet's router, as one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsidePlan {
    pub netns: String,
    /// Its address on the bridge the edges' uplinks attach to.
    pub router_ip: Ipv4Addr,
    /// Where tests run servers (`DIR/outside-ip`).
    pub server_ip: Ipv4Addr,
    /// The region's public pool (`server --public-pool`, `DIR/public-pool`).
    pub public_pool: String,
    pub router_as: u32,
    pub edge_as: u32,
    pub hold_time: u16,
    /// The region's resolver's address on the underlay bridge; `None` in
    /// a `lab.json` older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver_ip: Option<Ipv4Addr>,
    /// The veth pair of that leg while both ends are in the root namespace.
    #[serde(default)]
    pub veth_resolver: String,
    #[serde(default)]
    pub veth_resolver_bridge: String,
}

/// Everything a lab is made of, decided before anything is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    /// A short tag, unique per directory, in every name the lab makes.
    pub tag: String,
    pub region: String,
    /// The namespace that holds the underlay bridge.
    pub underlay_netns: String,
    pub hosts: Vec<HostPlan>,
    /// The outside world, absent in a lab without edges (and in a
    /// `lab.json` older than the outside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside: Option<OutsidePlan>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgePlan>,
    /// The Hyperplane fleet (NAT gateways).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hyperplane: Vec<HyperplanePlan>,
    /// A customer's datacenter on the outside (`--datacenter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<DatacenterPlan>,
}

/// The name of the uplink interface inside each edge namespace.
pub const UPLINK_IFACE: &str = "up0";

/// The bridge's name in the underlay's namespace and in the outside's.
pub const BRIDGE: &str = "br0";

/// The name of the underlay interface inside each host namespace.
pub const UNDERLAY_IFACE: &str = "ul0";

/// The underlay's prefix length (10.254.0.0/24).
pub const UNDERLAY_PREFIX: u8 = 24;

impl LabPlan {
    /// Plans `hosts` hosts over `azs` zones of `region`, named after `dir`.
    pub fn new(dir: &Path, hosts: usize, azs: usize, region: &str) -> Result<LabPlan, LabError> {
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(LabError::Hosts(hosts));
        }
        if azs == 0 || azs > MAX_AZS || azs > hosts {
            return Err(LabError::Azs(azs));
        }
        let tag = tag_of(dir);
        let hosts = (1..=hosts)
            .map(|i| {
                let zone = char::from(b'a' + ((i - 1) % azs) as u8);
                HostPlan {
                    host_id: format!("h{i}"),
                    netns: format!("ovl-{tag}-h{i}"),
                    availability_zone: format!("{region}{zone}"),
                    underlay_ip: Ipv4Addr::new(10, 254, 0, 10 + i as u8),
                    veth_host: format!("ovl{tag}h{i}a"),
                    veth_bridge: format!("ovl{tag}h{i}b"),
                }
            })
            .collect();
        Ok(LabPlan {
            underlay_netns: format!("ovl-{tag}-ul"),
            tag,
            region: region.to_owned(),
            hosts,
            outside: None,
            edges: Vec::new(),
            hyperplane: Vec::new(),
            datacenter: None,
        })
    }

    /// Adds a customer's datacenter on the outside world, which the plan
    /// must have (edges first).
    pub fn with_datacenter(mut self) -> Result<LabPlan, LabError> {
        if self.outside.is_none() {
            return Err(LabError::DatacenterNeedsOutside);
        }
        self.datacenter = Some(DatacenterPlan::new(&self.tag));
        Ok(self)
    }

    /// Adds `nodes` hyperplane nodes (0: none).
    pub fn with_hyperplane_nodes(mut self, nodes: usize) -> Result<LabPlan, LabError> {
        if nodes > MAX_HYPERPLANE_NODES {
            return Err(LabError::HyperplaneNodes(nodes));
        }
        let tag = &self.tag;
        self.hyperplane = (1..=nodes)
            .map(|i| HyperplanePlan {
                node_id: format!("hp{i}"),
                netns: format!("ovl-{tag}-hp{i}"),
                underlay_ip: Ipv4Addr::new(10, 254, 0, 230 + i as u8),
                veth_host: format!("ovl{tag}p{i}a"),
                veth_bridge: format!("ovl{tag}p{i}b"),
            })
            .collect();
        Ok(self)
    }

    /// Adds an outside world served by `edges` edge nodes; 0 leaves the lab
    /// without an outside.
    pub fn with_edges(mut self, edges: usize) -> Result<LabPlan, LabError> {
        if edges > MAX_EDGES {
            return Err(LabError::Edges(edges));
        }
        if edges == 0 {
            self.outside = None;
            self.edges = Vec::new();
            self.datacenter = None;
            return Ok(self);
        }
        let tag = &self.tag;
        self.outside = Some(OutsidePlan {
            netns: format!("ovl-{tag}-out"),
            router_ip: OUTSIDE_ROUTER_IP,
            server_ip: OUTSIDE_SERVER_IP,
            public_pool: PUBLIC_POOL.to_owned(),
            router_as: OUTSIDE_AS,
            edge_as: EDGE_AS,
            hold_time: BGP_HOLD_TIME,
            resolver_ip: Some(REGION_RESOLVER_IP),
            veth_resolver: format!("ovl{tag}r0a"),
            veth_resolver_bridge: format!("ovl{tag}r0b"),
        });
        self.edges = (1..=edges)
            .map(|i| EdgePlan {
                edge_id: format!("e{i}"),
                netns: format!("ovl-{tag}-e{i}"),
                underlay_ip: Ipv4Addr::new(10, 254, 0, 1 + i as u8),
                uplink_ip: Ipv4Addr::new(192, 0, 2, 10 + i as u8),
                veth_underlay: format!("ovl{tag}e{i}a"),
                veth_underlay_bridge: format!("ovl{tag}e{i}b"),
                veth_uplink: format!("ovl{tag}e{i}c"),
                veth_uplink_bridge: format!("ovl{tag}e{i}d"),
            })
            .collect();
        Ok(self)
    }
}

/// Six hex digits of FNV-1a over the directory's path: short enough for
/// 15-byte interface names, stable so `down` finds what `up` named.
fn tag_of(dir: &Path) -> String {
    let path = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut hash: u32 = 0x811c_9dc5;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

/// One process the lab started, with what it takes to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabProcess {
    /// `server`, the host ID of an agent, the edge ID of an edge node, or
    /// [`OUTSIDE_ROUTER`].
    pub part: String,
    pub pid: u32,
    /// The program, when it is not the lab's `openvpc` (the outside
    /// router runs `ip netns exec NS bird …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<PathBuf>,
    pub args: Vec<String>,
    pub log: PathBuf,
}

/// What `lab.json` holds: the plan and the processes started so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub plan: Option<LabPlan>,
    /// The server and the agents, in start order.
    pub processes: Vec<LabProcess>,
    pub endpoint: Option<String>,
    /// The `openvpc` binary the processes run.
    pub exe: PathBuf,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn save(dir: &Path, state: &LabState) -> Result<(), LabError> {
    let path = state_path(dir);
    let tmp = dir.join("lab.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|source| LabError::BadState {
        path: path.clone(),
        source,
    })?;
    fs::write(&tmp, text).map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))
}

/// Reads `DIR/lab.json`.
pub fn load(dir: &Path) -> Result<LabState, LabError> {
    let path = state_path(dir);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LabError::NoLab(dir.to_owned()));
        }
        Err(e) => return Err(io_at(&path)(e)),
    };
    serde_json::from_slice(&text).map_err(|source| LabError::BadState { path, source })
}

/// How to start the lab's processes: the `openvpc` binary and its arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    /// Extra `server` arguments.
    pub server_args: Vec<String>,
    /// Extra `agent` arguments for some hosts, by host ID.
    pub agent_args: std::collections::BTreeMap<String, Vec<String>>,
    /// Extra `hyperplane` arguments for every node (tests' knobs).
    pub hyperplane_args: Vec<String>,
}

/// Where the lab keeps each part's files.
pub fn server_dir(dir: &Path) -> PathBuf {
    dir.join("server")
}

/// An agent's `--state-dir`.
pub fn host_dir(dir: &Path, host_id: &str) -> PathBuf {
    dir.join("hosts").join(host_id)
}

/// A hyperplane node's `--state-dir`.
pub fn hyperplane_dir(dir: &Path, node_id: &str) -> PathBuf {
    dir.join("hyperplane").join(node_id)
}

/// An edge node's `--state-dir`.
pub fn edge_dir(dir: &Path, edge_id: &str) -> PathBuf {
    dir.join("edges").join(edge_id)
}

/// The outside router's files: `bird.conf`, its control socket
/// `bird.ctl` (for `birdc -s`) and `bird.pid`.
pub fn router_dir(dir: &Path) -> PathBuf {
    dir.join("router")
}

/// The outside router's control socket.
pub fn router_socket(dir: &Path) -> PathBuf {
    router_dir(dir).join("bird.ctl")
}

/// The files `up` leaves for clients and tests, removed by `down`:
/// `endpoint`, `credentials`, and with an outside `outside` (its
/// namespace), `outside-ip` (where tests run servers) and `public-pool`.
const CLIENT_FILES: [&str; 5] = [
    "endpoint",
    "credentials",
    "outside",
    "outside-ip",
    "public-pool",
];

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

/// The file an agent writes once it has registered; `up` waits for it.
pub const READY_FILE: &str = "ready";

/// Builds the lab: namespaces and links, then the outside router, the
/// server, the agents and the edge nodes. Reports progress through
/// `progress`. Leaves `DIR/endpoint` and `DIR/credentials` behind for
/// clients, and with an outside `DIR/outside`, `DIR/outside-ip` and
/// `DIR/public-pool`.
pub fn up(
    dir: &Path,
    plan: LabPlan,
    launch: &Launch,
    mut progress: impl FnMut(&str),
) -> Result<LabState, LabError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    if state_path(dir).exists() {
        return Err(LabError::Exists(dir.to_owned()));
    }
    if plan.outside.is_some() && !Path::new(BIRD).exists() {
        return Err(LabError::MissingTool(BIRD.into()));
    }
    // The region's resolver, once it runs: the agents forward to it.
    let mut dns_upstream: Option<String> = None;
    let mut state = LabState {
        plan: Some(plan.clone()),
        exe: launch.exe.clone(),
        ..LabState::default()
    };
    save(dir, &state)?;
    progress(&format!(
        "underlay: bridge in namespace {} for {} hosts",
        plan.underlay_netns,
        plan.hosts.len()
    ));
    netns::build(&plan)?;
    fs::create_dir_all(log_dir(dir)).map_err(io_at(dir))?;

    if let Some(outside) = &plan.outside {
        progress(&format!(
            "outside: router {} in namespace {}, servers at {}, {} edge namespaces",
            outside.router_ip,
            outside.netns,
            outside.server_ip,
            plan.edges.len()
        ));
        netns::build_outside(outside, &plan)?;
        progress("starting the outside router (BIRD)");
        let (exe, args) = write_router_config(dir, outside, &plan.edges)?;
        let log = log_dir(dir).join("outside-router.log");
        let pid = spawn(&exe, &args, &log)?;
        state.processes.push(LabProcess {
            part: OUTSIDE_ROUTER.into(),
            pid,
            exe: Some(exe),
            args,
            log,
        });
        save(dir, &state)?;
        wait_router(dir)?;
        if let Some(dc) = &plan.datacenter {
            progress(&format!(
                "datacenter: namespace {} at {} (its LAN server {}, network {})",
                dc.netns, dc.public_ip, dc.server_ip, dc.prefix
            ));
            datacenter::build(dc, outside)?;
        }
        if let Some(resolver) = outside.resolver_ip {
            if Path::new(DNSMASQ).exists() {
                progress(&format!(
                    "starting the region's DNS resolver (dnsmasq) at {resolver}"
                ));
                let args = resolver_args(dir, outside, resolver);
                let log = log_dir(dir).join("region-resolver.log");
                let pid = spawn(Path::new("ip"), &args, &log)?;
                state.processes.push(LabProcess {
                    part: REGION_RESOLVER.into(),
                    pid,
                    exe: Some(PathBuf::from("ip")),
                    args,
                    log,
                });
                save(dir, &state)?;
                dns_upstream = Some(format!("{resolver}:53"));
            } else {
                progress(&format!(
                    "{DNSMASQ} is missing (`apt-get install dnsmasq-base`): no region resolver, outside names get SERVFAIL"
                ));
            }
        }
    }

    progress("starting the server");
    let server_dir = server_dir(dir);
    fs::create_dir_all(&server_dir).map_err(io_at(&server_dir))?;
    let server_log = log_dir(dir).join("server.log");
    // A fixed port, so a restarted server is where the agents look for it.
    let port = free_port().map_err(io_at(dir))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut args: Vec<String> = vec![
        "server".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--region".into(),
        plan.region.clone(),
        "--data-dir".into(),
    ];
    args.push(server_dir.display().to_string());
    if let Some(outside) = &plan.outside {
        args.extend(["--public-pool".into(), outside.public_pool.clone()]);
    }
    args.extend(launch.server_args.iter().cloned());
    let pid = spawn(&launch.exe, &args, &server_log)?;
    state.processes.push(LabProcess {
        part: "server".into(),
        pid,
        exe: None,
        args,
        log: server_log.clone(),
    });
    state.endpoint = Some(endpoint.clone());
    save(dir, &state)?;
    wait_server(&endpoint, &server_log)?;
    let token = server_dir.join("agent-token");
    wait_for("the server's agent token", &server_log, || {
        token.exists().then_some(())
    })?;

    for host in &plan.hosts {
        progress(&format!(
            "starting the agent of {} ({}, underlay {})",
            host.host_id, host.availability_zone, host.underlay_ip
        ));
        let state_dir = host_dir(dir, &host.host_id);
        fs::create_dir_all(&state_dir).map_err(io_at(&state_dir))?;
        let _ = fs::remove_file(state_dir.join(READY_FILE));
        let mut args = vec![
            "agent".to_owned(),
            "--server".into(),
            endpoint.clone(),
            "--host-id".into(),
            host.host_id.clone(),
            "--az".into(),
            host.availability_zone.clone(),
            "--underlay-ip".into(),
            host.underlay_ip.to_string(),
            "--underlay-netns".into(),
            host.netns.clone(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
            // `lab up` checked (and installed) the instances' tools once;
            // agents installing them in parallel would fight over dpkg's lock.
            "--no-install".into(),
        ];
        if let Some(upstream) = &dns_upstream {
            args.extend(["--dns-upstream".into(), upstream.clone()]);
        }
        args.extend(
            launch
                .agent_args
                .get(&host.host_id)
                .into_iter()
                .flatten()
                .cloned(),
        );
        let log = log_dir(dir).join(format!("agent-{}.log", host.host_id));
        let pid = spawn(&launch.exe, &args, &log)?;
        state.processes.push(LabProcess {
            part: host.host_id.clone(),
            pid,
            exe: None,
            args,
            log,
        });
        save(dir, &state)?;
    }
    if let Some(outside) = &plan.outside {
        for edge in &plan.edges {
            progress(&format!(
                "starting edge node {} (underlay {}, uplink {})",
                edge.edge_id, edge.underlay_ip, edge.uplink_ip
            ));
            let state_dir = edge_dir(dir, &edge.edge_id);
            fs::create_dir_all(&state_dir).map_err(io_at(&state_dir))?;
            let _ = fs::remove_file(state_dir.join(READY_FILE));
            let args = edge_args(&endpoint, edge, outside, &state_dir, &token);
            let log = log_dir(dir).join(format!("edge-{}.log", edge.edge_id));
            let pid = spawn(&launch.exe, &args, &log)?;
            state.processes.push(LabProcess {
                part: edge.edge_id.clone(),
                pid,
                exe: None,
                args,
                log,
            });
            save(dir, &state)?;
        }
    }
    for node in &plan.hyperplane {
        progress(&format!(
            "starting hyperplane node {} (underlay {})",
            node.node_id, node.underlay_ip
        ));
        let state_dir = hyperplane_dir(dir, &node.node_id);
        fs::create_dir_all(&state_dir).map_err(io_at(&state_dir))?;
        let _ = fs::remove_file(state_dir.join(READY_FILE));
        let mut args = vec![
            "hyperplane".to_owned(),
            "--server".into(),
            endpoint.clone(),
            "--node-id".into(),
            node.node_id.clone(),
            "--underlay-ip".into(),
            node.underlay_ip.to_string(),
            "--netns".into(),
            node.netns.clone(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
        ];
        args.extend(launch.hyperplane_args.iter().cloned());
        let log = log_dir(dir).join(format!("hyperplane-{}.log", node.node_id));
        let pid = spawn(&launch.exe, &args, &log)?;
        state.processes.push(LabProcess {
            part: node.node_id.clone(),
            pid,
            exe: None,
            args,
            log,
        });
        save(dir, &state)?;
    }
    for host in &plan.hosts {
        wait_agent(dir, &host.host_id)?;
    }
    for edge in &plan.edges {
        wait_edge(dir, &edge.edge_id)?;
    }
    for node in &plan.hyperplane {
        wait_hyperplane(dir, &node.node_id)?;
    }
    fs::write(dir.join("endpoint"), format!("{endpoint}\n")).map_err(io_at(dir))?;
    let credentials = server_dir.join("credentials");
    fs::copy(&credentials, dir.join("credentials")).map_err(io_at(&credentials))?;
    if let Some(outside) = &plan.outside {
        for (file, text) in [
            ("outside", outside.netns.clone()),
            ("outside-ip", outside.server_ip.to_string()),
            ("public-pool", outside.public_pool.clone()),
        ] {
            let path = dir.join(file);
            fs::write(&path, format!("{text}\n")).map_err(io_at(&path))?;
        }
    }
    if let Some(dc) = &plan.datacenter {
        datacenter::write_client_files(dir, dc)?;
    }
    Ok(state)
}

/// An edge node's command line: it joins the region like an agent, and
/// announces the pool to the outside router over BGP from its uplink.
fn edge_args(
    endpoint: &str,
    edge: &EdgePlan,
    outside: &OutsidePlan,
    state_dir: &Path,
    token: &Path,
) -> Vec<String> {
    vec![
        "edge".to_owned(),
        "--server".into(),
        endpoint.to_owned(),
        "--edge-id".into(),
        edge.edge_id.clone(),
        "--underlay-ip".into(),
        edge.underlay_ip.to_string(),
        "--netns".into(),
        edge.netns.clone(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--token-file".into(),
        token.display().to_string(),
        "--bgp-peer".into(),
        outside.router_ip.to_string(),
        "--bgp-peer-as".into(),
        outside.router_as.to_string(),
        "--bgp-as".into(),
        outside.edge_as.to_string(),
        "--bgp-hold-time".into(),
        outside.hold_time.to_string(),
    ]
}

/// Writes the outside router's BIRD configuration and answers the command
/// that runs it in the outside namespace, in the foreground so its PID is
/// the one the lab records (`ip netns exec` execs BIRD in place).
///
/// One passive BGP session per edge, whose routes BIRD takes as they come
/// (`import all`) and tells nothing back. After a session error (a hold
/// timer that ran out) BIRD takes the edge back after 1 s rather than its
/// default minute: lab edges come back quickly. The kernel protocol merges
/// the edges' equal paths into one multipath route, which the namespace's L4
/// hash spreads flows over. The route's preferred source is the test
/// servers' address, so connections the outside opens come from there.
fn write_router_config(
    dir: &Path,
    outside: &OutsidePlan,
    edges: &[EdgePlan],
) -> Result<(PathBuf, Vec<String>), LabError> {
    let router = router_dir(dir);
    fs::create_dir_all(&router).map_err(io_at(&router))?;
    let mut conf = format!(
        "# The lab's outside router (openvpc lab up): learns the public pool\n\
         # from the edge nodes over BGP.\n\
         log stderr all;\n\
         debug protocols {{ states, events }};\n\
         router id {router_ip};\n\
         \n\
         protocol device {{ }}\n\
         \n\
         protocol kernel {{\n\
         \x20   merge paths on;\n\
         \x20   ipv4 {{\n\
         \x20       import none;\n\
         \x20       export filter {{ krt_prefsrc = {server_ip}; accept; }};\n\
         \x20   }};\n\
         }}\n",
        router_ip = outside.router_ip,
        server_ip = outside.server_ip,
    );
    for edge in edges {
        conf.push_str(&format!(
            "\nprotocol bgp {id} {{\n\
             \x20   local {router_ip} as {router_as};\n\
             \x20   neighbor {peer} as {edge_as};\n\
             \x20   passive on;\n\
             \x20   hold time {hold};\n\
             \x20   error wait time 1, 5;\n\
             \x20   ipv4 {{ import all; export none; }};\n\
             }}\n",
            id = edge.edge_id,
            router_ip = outside.router_ip,
            router_as = outside.router_as,
            peer = edge.uplink_ip,
            edge_as = outside.edge_as,
            hold = outside.hold_time,
        ));
    }
    let conf_path = router.join("bird.conf");
    fs::write(&conf_path, conf).map_err(io_at(&conf_path))?;
    let socket = router_socket(dir);
    let _ = fs::remove_file(&socket);
    let args = vec![
        "netns".to_owned(),
        "exec".into(),
        outside.netns.clone(),
        BIRD.into(),
        "-f".into(),
        "-c".into(),
        conf_path.display().to_string(),
        "-s".into(),
        socket.display().to_string(),
        "-P".into(),
        router.join("bird.pid").display().to_string(),
    ];
    Ok((PathBuf::from("ip"), args))
}

/// The command that runs the region's resolver in the outside namespace,
/// in the foreground: dnsmasq with no configuration file, upstream or hosts
/// file, answering [`REGION_RESOLVER_NAMES`] on the underlay leg and the
/// test servers' address, logging every query to its log.
fn resolver_args(dir: &Path, outside: &OutsidePlan, resolver: Ipv4Addr) -> Vec<String> {
    let mut args = vec![
        "netns".to_owned(),
        "exec".into(),
        outside.netns.clone(),
        DNSMASQ.into(),
        "--keep-in-foreground".into(),
        "--conf-file=/dev/null".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--bind-interfaces".into(),
        format!("--listen-address={resolver}"),
        format!("--listen-address={}", outside.server_ip),
        "--user=root".into(),
        "--group=root".into(),
        "--log-queries".into(),
        "--log-facility=-".into(),
        format!(
            "--pid-file={}",
            router_dir(dir).join("dnsmasq.pid").display()
        ),
    ];
    for (name, ip) in REGION_RESOLVER_NAMES {
        args.push(format!("--host-record={name},{ip}"));
    }
    args
}

/// Waits until the outside router's control socket answers.
fn wait_router(dir: &Path) -> Result<(), LabError> {
    let socket = router_socket(dir);
    let log = log_dir(dir).join("outside-router.log");
    wait_for("the outside router (BIRD)", &log, || {
        std::os::unix::net::UnixStream::connect(&socket)
            .ok()
            .map(|_| ())
    })
}

fn wait_hyperplane(dir: &Path, node_id: &str) -> Result<(), LabError> {
    let ready = hyperplane_dir(dir, node_id).join(READY_FILE);
    let log = log_dir(dir).join(format!("hyperplane-{node_id}.log"));
    wait_for(&format!("hyperplane node {node_id}"), &log, || {
        ready.exists().then_some(())
    })
}

fn wait_edge(dir: &Path, edge_id: &str) -> Result<(), LabError> {
    let ready = edge_dir(dir, edge_id).join(READY_FILE);
    let log = log_dir(dir).join(format!("edge-{edge_id}.log"));
    wait_for(&format!("edge node {edge_id}"), &log, || {
        ready.exists().then_some(())
    })
}

fn wait_agent(dir: &Path, host_id: &str) -> Result<(), LabError> {
    let ready = host_dir(dir, host_id).join(READY_FILE);
    let log = log_dir(dir).join(format!("agent-{host_id}.log"));
    wait_for(&format!("the agent of {host_id}"), &log, || {
        ready.exists().then_some(())
    })
}

/// Waits until the server accepts connections.
fn wait_server(endpoint: &str, log: &Path) -> Result<(), LabError> {
    let addr = endpoint.trim_start_matches("http://").to_owned();
    wait_for("the server", log, || {
        std::net::TcpStream::connect(&addr).ok().map(|_| ())
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What a part of the lab is, by the name `lab.json` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Server,
    Agent,
    Edge,
    Hyperplane,
    OutsideRouter,
    RegionResolver,
    DatacenterGateway,
    DatacenterRouter,
    /// FRR's zebra beside its bgpd (the router part) when the customer
    /// router is FRR.
    DatacenterZebra,
}

impl PartKind {
    fn of(part: &str, plan: Option<&LabPlan>) -> Option<PartKind> {
        if part == "server" {
            return Some(PartKind::Server);
        }
        if part == OUTSIDE_ROUTER {
            return Some(PartKind::OutsideRouter);
        }
        if part == REGION_RESOLVER {
            return Some(PartKind::RegionResolver);
        }
        if part == datacenter::GATEWAY_PART {
            return Some(PartKind::DatacenterGateway);
        }
        if part == datacenter::ROUTER_PART {
            return Some(PartKind::DatacenterRouter);
        }
        if part == datacenter::ZEBRA_PART {
            return Some(PartKind::DatacenterZebra);
        }
        let plan = plan?;
        if plan.hosts.iter().any(|h| h.host_id == part) {
            Some(PartKind::Agent)
        } else if plan.edges.iter().any(|e| e.edge_id == part) {
            Some(PartKind::Edge)
        } else if plan.hyperplane.iter().any(|n| n.node_id == part) {
            Some(PartKind::Hyperplane)
        } else {
            None
        }
    }

    fn role(self) -> &'static str {
        match self {
            PartKind::Server => "server",
            PartKind::Agent => "agent",
            PartKind::Edge => "edge",
            PartKind::Hyperplane => "hyperplane",
            PartKind::OutsideRouter => OUTSIDE_ROUTER,
            PartKind::RegionResolver => REGION_RESOLVER,
            PartKind::DatacenterGateway => datacenter::GATEWAY_PART,
            PartKind::DatacenterRouter => datacenter::ROUTER_PART,
            PartKind::DatacenterZebra => datacenter::ZEBRA_PART,
        }
    }

    /// The program the part's process runs: `stop_process` signals a
    /// recorded PID only while it still runs that, so a recycled PID is
    /// left alone.
    fn program(self) -> Program {
        match self {
            PartKind::OutsideRouter => Program::Bird,
            PartKind::DatacenterRouter => Program::CustomerRouter,
            PartKind::DatacenterZebra => Program::Frr,
            PartKind::RegionResolver => Program::Dnsmasq,
            PartKind::DatacenterGateway => Program::Charon,
            _ => Program::Openvpc,
        }
    }
}

/// What a lab part is: `server`, `agent`, `edge`, `hyperplane` or
/// [`OUTSIDE_ROUTER`]; `None` for a name the lab does not hold.
pub fn role_of(part: &str, plan: Option<&LabPlan>) -> Option<&'static str> {
    PartKind::of(part, plan).map(PartKind::role)
}

/// Whether process `pid` still runs (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    // A process gone has no stat, which `is_zombie` counts as dead too.
    i32::try_from(pid).is_ok_and(|pid| !is_zombie(pid))
}

/// Stops one part of a running lab (`server`, a host ID, an edge ID or
/// [`OUTSIDE_ROUTER`]) and starts it again with the same arguments,
/// waiting until it is ready: what a test of restarts needs. `kill` stops
/// it with SIGKILL, as a crash would.
pub fn restart(dir: &Path, part: &str, kill: bool) -> Result<(), LabError> {
    let mut state = load(dir)?;
    let Some(kind) = PartKind::of(part, state.plan.as_ref()) else {
        return Err(LabError::NoPart(part.to_owned()));
    };
    let Some(process) = state.processes.iter_mut().find(|p| p.part == part) else {
        return Err(LabError::NoPart(part.to_owned()));
    };
    stop_process(process.pid, kill, kind.program());
    match kind {
        PartKind::Server => {
            // Its port must be free, or "ready" below would be the old
            // server's answer.
            let addr = state
                .endpoint
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches("http://")
                .to_owned();
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(&addr).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        PartKind::Agent => {
            let _ = fs::remove_file(host_dir(dir, part).join(READY_FILE));
        }
        PartKind::Edge => {
            let _ = fs::remove_file(edge_dir(dir, part).join(READY_FILE));
        }
        PartKind::Hyperplane => {
            let _ = fs::remove_file(hyperplane_dir(dir, part).join(READY_FILE));
        }
        // A killed BIRD leaves its socket behind; the new one makes its own.
        PartKind::OutsideRouter => {
            let _ = fs::remove_file(router_socket(dir));
        }
        PartKind::RegionResolver => {}
        PartKind::DatacenterGateway => {
            let _ = fs::remove_file(datacenter::vici_socket(dir));
        }
        PartKind::DatacenterRouter => {
            let _ = fs::remove_file(datacenter::router_socket(dir));
        }
        PartKind::DatacenterZebra => {}
    }
    let exe = process.exe.clone().unwrap_or_else(|| state.exe.clone());
    process.pid = spawn(&exe, &process.args, &process.log)?;
    let endpoint = state.endpoint.clone().unwrap_or_default();
    let (pid, args, log) = (process.pid, process.args.clone(), process.log.clone());
    save(dir, &state)?;
    let ready = |dir: &Path| match kind {
        PartKind::Server => wait_server(&endpoint, &log),
        PartKind::Agent => wait_agent(dir, part),
        PartKind::Edge => wait_edge(dir, part),
        PartKind::Hyperplane => wait_hyperplane(dir, part),
        PartKind::OutsideRouter => wait_router(dir),
        // dnsmasq answers as soon as it has bound its sockets, at once.
        PartKind::RegionResolver => Ok(()),
        // A new charon has a new TUN and no tunnels: configure it again.
        PartKind::DatacenterGateway => {
            match state.plan.as_ref().and_then(|p| p.datacenter.as_ref()) {
                Some(dc) => datacenter::configure_gateway(dir, dc),
                None => Err(LabError::NoDatacenter(dir.to_owned())),
            }
        }
        PartKind::DatacenterRouter => datacenter::wait_router(dir),
        PartKind::DatacenterZebra => datacenter::wait_zebra(dir),
    };
    match ready(dir) {
        // It exited on its way up (its log says why): one more start.
        Err(_) if wait_finished(pid as i32, Duration::ZERO) => {
            let pid = spawn(&exe, &args, &log)?;
            if let Some(p) = state.processes.iter_mut().find(|p| p.part == part) {
                p.pid = pid;
            }
            save(dir, &state)?;
            ready(dir)
        }
        other => other,
    }
}

/// Starts `exe args` in its own process group (so a Ctrl-C at the shell
/// that ran `lab up` does not reach it), with its output in a file.
fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<u32, LabError> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_at(log))?;
    let err = out.try_clone().map_err(io_at(log))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io_at(exe))?;
    Ok(child.id())
}

fn wait_for<T>(
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let start = Instant::now();
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(LabError::NotReady {
                what: what.to_owned(),
                secs: READY_TIMEOUT.as_secs(),
                log: log.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes a lab down: stops its processes, lets `remove_instances` clear
/// each agent's instances, deletes its namespaces and links, and removes
/// `lab.json`. Works on whatever part of the lab exists.
pub fn down(
    dir: &Path,
    mut remove_instances: impl FnMut(&Path),
    mut progress: impl FnMut(&str),
) -> Result<(), LabError> {
    let state = load(dir)?;
    // Edges and agents first (the reverse of their start), so none
    // recreates an instance while we delete it; the outside router last.
    for process in state.processes.iter().rev() {
        let program = PartKind::of(&process.part, state.plan.as_ref())
            .map_or(Program::Openvpc, PartKind::program);
        if stop_process(process.pid, false, program) {
            progress(&format!("stopped {} (pid {})", process.part, process.pid));
        }
    }
    if let Some(plan) = &state.plan {
        for host in &plan.hosts {
            remove_instances(&host_dir(dir, &host.host_id));
        }
        // The datacenter's link ends in the outside namespace.
        if let Some(dc) = &plan.datacenter {
            datacenter::destroy(dc);
        }
        netns::destroy(plan);
        progress(&format!(
            "removed namespaces {} and ovl-{}-h*{}",
            plan.underlay_netns,
            plan.tag,
            if plan.outside.is_some() {
                format!(
                    ", ovl-{0}-out and ovl-{0}-e*{1}",
                    plan.tag,
                    if plan.datacenter.is_some() {
                        format!(", ovl-{}-dc", plan.tag)
                    } else {
                        String::new()
                    }
                )
            } else {
                String::new()
            }
        ));
    }
    for file in std::iter::once("lab.json")
        .chain(CLIENT_FILES)
        .chain(datacenter::CLIENT_FILES)
    {
        let _ = fs::remove_file(dir.join(file));
    }
    Ok(())
}

/// The programs the lab runs as background processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    /// The server, agents and edge nodes.
    Openvpc,
    /// The outside router.
    Bird,
    /// The region's resolver.
    Dnsmasq,
    /// The datacenter's customer gateway (strongSwan).
    Charon,
    /// FRR's bgpd or zebra (the datacenter's customer router with
    /// `--router frr`).
    Frr,
    /// The datacenter's customer router: BIRD or FRR's bgpd.
    CustomerRouter,
}

impl Program {
    /// True if `/proc/PID/cmdline`'s content is this program's.
    fn runs_in(self, cmdline: &[u8]) -> bool {
        match self {
            Program::Openvpc => String::from_utf8_lossy(cmdline).contains("openvpc"),
            // Only BIRD itself: its first argument names the binary.
            Program::Bird => {
                cmdline
                    .split(|b| *b == 0)
                    .next()
                    .and_then(|argv0| argv0.rsplit(|b| *b == b'/').next())
                    == Some(b"bird".as_slice())
            }
            Program::Dnsmasq => {
                cmdline
                    .split(|b| *b == 0)
                    .next()
                    .and_then(|argv0| argv0.rsplit(|b| *b == b'/').next())
                    == Some(b"dnsmasq".as_slice())
            }
            Program::Charon => {
                cmdline
                    .split(|b| *b == 0)
                    .next()
                    .and_then(|argv0| argv0.rsplit(|b| *b == b'/').next())
                    == Some(b"charon".as_slice())
            }
            Program::Frr => matches!(
                cmdline
                    .split(|b| *b == 0)
                    .next()
                    .and_then(|argv0| argv0.rsplit(|b| *b == b'/').next()),
                Some(b"bgpd" | b"zebra")
            ),
            Program::CustomerRouter => {
                Program::Bird.runs_in(cmdline)
                    || cmdline
                        .split(|b| *b == 0)
                        .next()
                        .and_then(|argv0| argv0.rsplit(|b| *b == b'/').next())
                        == Some(b"bgpd".as_slice())
            }
        }
    }
}

/// SIGTERM (or SIGKILL at once when `kill`), then SIGKILL after 5 s. Only
/// signals a process whose command line is still `program`'s, so a
/// recycled PID is left alone.
fn stop_process(pid: u32, kill: bool, program: Program) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !program.runs_in(&cmdline) {
        return false;
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with a PID read from our own state file and checked
    // to run the program the lab started; it has no memory-safety
    // preconditions.
    unsafe { libc::kill(pid, if kill { libc::SIGKILL } else { libc::SIGTERM }) };
    if !wait_finished(pid, Duration::from_secs(5)) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_finished(pid, Duration::from_secs(10));
    }
    true
}

/// Waits until `pid` has released everything it held, so a successor can
/// bind its ports. A multi-threaded process's leader turns zombie while
/// its other threads still exit and hold its sockets: only a zombie with
/// no open files is finished.
fn wait_finished(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let open_files = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        // A zombie leader's fd directory cannot be read while its other
        // threads still exit (holding the store's lock and the listening
        // socket): only a leader left alone is done.
        let threads = fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
        if !Path::new(&format!("/proc/{pid}")).exists()
            || (is_zombie(pid) && open_files == 0 && threads <= 1)
        {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_hosts_round_robin_over_zones() {
        let dir = tempfile::tempdir().unwrap();
        let plan = LabPlan::new(dir.path(), 3, 2, "us-east-1").unwrap();
        let zones: Vec<_> = plan
            .hosts
            .iter()
            .map(|h| h.availability_zone.as_str())
            .collect();
        assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1a"]);
        assert_eq!(plan.hosts[2].underlay_ip, Ipv4Addr::new(10, 254, 0, 13));
        for host in &plan.hosts {
            assert!(host.veth_host.len() <= 15, "{} too long", host.veth_host);
        }
        // The same directory always gives the same names: `down` relies on it.
        assert_eq!(plan, LabPlan::new(dir.path(), 3, 2, "us-east-1").unwrap());
    }

    #[test]
    fn refuses_impossible_shapes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LabPlan::new(dir.path(), 0, 1, "r"),
            Err(LabError::Hosts(0))
        ));
        assert!(matches!(
            LabPlan::new(dir.path(), 2, 3, "r"),
            Err(LabError::Azs(3))
        ));
    }

    #[test]
    fn plans_edges_under_the_hosts_and_an_outside() {
        let dir = tempfile::tempdir().unwrap();
        let plain = LabPlan::new(dir.path(), 3, 2, "us-east-1").unwrap();
        assert!(plain.outside.is_none() && plain.edges.is_empty());
        let plan = plain.clone().with_edges(2).unwrap();
        let outside = plan.outside.as_ref().unwrap();
        assert_eq!(outside.netns, format!("ovl-{}-out", plan.tag));
        assert_eq!(outside.public_pool, "203.0.113.0/24");
        let e2 = &plan.edges[1];
        assert_eq!(e2.edge_id, "e2");
        assert_eq!(e2.underlay_ip, Ipv4Addr::new(10, 254, 0, 3));
        assert_eq!(e2.uplink_ip, Ipv4Addr::new(192, 0, 2, 12));
        for edge in &plan.edges {
            for name in [
                &edge.veth_underlay,
                &edge.veth_underlay_bridge,
                &edge.veth_uplink,
                &edge.veth_uplink_bridge,
            ] {
                assert!(name.len() <= 15, "{name} too long");
            }
        }
        // The largest lab's edges stay below the first host's address.
        let most = plain.clone().with_edges(MAX_EDGES).unwrap();
        assert!(most.edges.last().unwrap().underlay_ip < plan.hosts[0].underlay_ip);
        assert!(matches!(
            plain.clone().with_edges(MAX_EDGES + 1),
            Err(LabError::Edges(_))
        ));
        assert_eq!(plain.clone().with_edges(0).unwrap(), plain);
    }

    #[test]
    fn a_lab_file_without_an_outside_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let plan = LabPlan::new(dir.path(), 1, 1, "r").unwrap();
        let mut json = serde_json::to_value(&plan).unwrap();
        json.as_object_mut().unwrap().remove("edges");
        let back: LabPlan = serde_json::from_value(json).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn only_bird_itself_counts_as_the_router() {
        assert!(Program::Bird.runs_in(b"/usr/sbin/bird\0-f\0-c\0x.conf\0"));
        assert!(!Program::Bird.runs_in(b"ip\0netns\0exec\0ns\0/usr/sbin/bird\0"));
        assert!(!Program::Bird.runs_in(b"/usr/bin/birdc\0"));
        assert!(!Program::Bird.runs_in(b""));
        assert!(Program::Frr.runs_in(b"/usr/lib/frr/bgpd\0-f\0x.conf\0"));
        assert!(Program::Frr.runs_in(b"/usr/lib/frr/zebra\0-f\0x.conf\0"));
        assert!(!Program::Frr.runs_in(b"/usr/bin/vtysh\0"));
        assert!(Program::CustomerRouter.runs_in(b"/usr/sbin/bird\0"));
        assert!(Program::CustomerRouter.runs_in(b"/usr/lib/frr/bgpd\0"));
        assert!(!Program::CustomerRouter.runs_in(b"/usr/lib/frr/zebra\0"));
        assert!(Program::Openvpc.runs_in(b"/x/openvpc\0edge\0"));
    }

    #[test]
    fn down_without_a_lab_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = down(dir.path(), |_| {}, |_| {}).unwrap_err();
        assert!(matches!(err, LabError::NoLab(_)));
    }
}
