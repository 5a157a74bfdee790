//! An edge node in real namespaces (needs root; skipped otherwise, unless
//! `OPENVPC_REQUIRE_TOOLS` is set): a "host" namespace on the node's
//! underlay, the edge's namespace with its uplink TUN, and an "outside"
//! namespace routed from the edge. The table is static, injected through
//! the path the watch uses ([`EdgeNodeHandle::apply`]). The outside
//! reaches the public pool by a static route, or (second test) by the
//! route the edge announces over BGP to BIRD running in the outside.
//!
//! ```text
//!  host 10.254.9.1 ──veth── 10.254.9.2 edge [pub0 TUN] 10.254.10.1 ──veth── 10.254.10.2 outside
//!                                                                          (203.0.113.9 on lo)
//! ```
//!
//! Every address lives inside the namespaces the test creates.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openvpc_agent::netns;
use openvpc_edge::bgp::BgpConfig;
use openvpc_edge::{EdgeDrop, EdgeNode, EdgeNodeConfig, EdgeNodeHandle, NodeStatus};
use openvpc_model::edge::{EdgeDelta, EdgeMapping};
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::flow::parse_ip;
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

const VNI: u32 = 77;
const ENI_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
const ROUTER_MAC: MacAddr = MacAddr([0x02, 0x6f, 0x76, 0x70, 0x63, 0x01]);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 254, 9, 1);
const EDGE: Ipv4Addr = Ipv4Addr::new(10, 254, 9, 2);
const PRIVATE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NOBODY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const SERVER_PORT: u16 = 7000;
const CLIENT_PORT: u16 = 5555;

/// Why the test cannot run here, if it cannot.
fn cannot_run(needs: &[&str]) -> Option<String> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    let missing = needs
        .iter()
        .find(|p| Command::new(p).arg("--version").output().is_err());
    let reason = if euid.ok() != Some(0) {
        "not root: the edge needs network namespaces and a TUN device".to_string()
    } else if let Some(p) = missing {
        format!("{p} is not installed")
    } else {
        return None;
    };
    assert!(
        std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
        "OPENVPC_REQUIRE_TOOLS is set but {reason}"
    );
    Some(reason)
}

/// The namespaces of one test, deleted (with anything inside) on drop,
/// also when the test fails.
struct Namespaces {
    host: String,
    edge: String,
    outside: String,
}

impl Namespaces {
    /// Names unique to this process and `tag` (tests run in parallel).
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        Namespaces {
            host: format!("oe-{tag}-host-{id}"),
            edge: format!("oe-{tag}-edge-{id}"),
            outside: format!("oe-{tag}-out-{id}"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.host, &self.edge, &self.outside]
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        if let Err(e) = netns::run("ip", &all) {
            panic!("ip {}: {e}", all.join(" "));
        }
    }

    /// host ── edge ── outside, addressed and routed as in the header; the
    /// outside routes the public pool to the edge if `static_route`.
    fn build(&self, static_route: bool) {
        for ns in self.all() {
            netns::ensure(ns).unwrap();
        }
        let (h, e, o) = (&self.host, &self.edge, &self.outside);
        let veth = ["type", "veth", "peer", "name"];
        self.ip(
            h,
            &[&["link", "add", "h0"][..], &veth, &["e0", "netns", e]].concat(),
        );
        self.ip(
            e,
            &[&["link", "add", "e1"][..], &veth, &["o0", "netns", o]].concat(),
        );
        self.ip(h, &["addr", "add", "10.254.9.1/24", "dev", "h0"]);
        self.ip(h, &["link", "set", "h0", "up"]);
        self.ip(e, &["addr", "add", "10.254.9.2/24", "dev", "e0"]);
        self.ip(e, &["link", "set", "e0", "up"]);
        self.ip(e, &["addr", "add", "10.254.10.1/24", "dev", "e1"]);
        self.ip(e, &["link", "set", "e1", "up"]);
        // The uplink: the edge's default route leads to the outside.
        self.ip(e, &["route", "add", "default", "via", "10.254.10.2"]);
        self.ip(o, &["addr", "add", "10.254.10.2/24", "dev", "o0"]);
        self.ip(o, &["link", "set", "o0", "up"]);
        self.ip(o, &["addr", "add", "203.0.113.9/32", "dev", "lo"]);
        if static_route {
            let pool = ["route", "add", "198.51.100.0/24", "via", "10.254.10.1"];
            self.ip(o, &pool);
        }
        let forward = ["netns", "exec", e, "sysctl", "-qw", "net.ipv4.ip_forward=1"];
        netns::run("ip", &forward).unwrap();
    }

    /// The outside's route to the public pool, if any.
    fn outside_route(&self) -> String {
        let args = ["-n", &self.outside, "route", "show", "198.51.100.0/24"];
        netns::run("ip", &args).unwrap().trim().to_string()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in self.all() {
            if let Err(e) = netns::delete(ns) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

/// BIRD in the outside namespace, killed by pid on drop.
struct Bird(Child);

impl Bird {
    /// Peers passively with the edge (10.254.10.1, AS 65001) and installs
    /// what it learns in the outside's kernel.
    fn start(ns: &str, dir: &Path) -> Bird {
        let conf = dir.join("bird.conf");
        std::fs::write(
            &conf,
            "router id 10.254.10.2;\n\
             protocol device {}\n\
             protocol kernel { ipv4 { import none; export all; }; }\n\
             protocol bgp edge { local 10.254.10.2 as 65000; neighbor 10.254.10.1 as 65001;\n\
               passive on; hold time 3; ipv4 { import all; export none; }; }\n",
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Bird(child)
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP socket bound inside namespace `ns`.
fn bind_in(ns: &str, addr: SocketAddr) -> UdpSocket {
    let sock = netns::in_netns(Some(ns), || Ok(UdpSocket::bind(addr)))
        .unwrap()
        .unwrap_or_else(|e| panic!("bind {addr} in {ns}: {e}"));
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock
}

/// What a host sends the edge: Geneve(VNI) + Ethernet + IPv4/UDP.
fn geneve_from_host(src: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let inner = PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: ROUTER_MAC,
            src: ENI_MAC,
            vlan: None,
            ethertype: ethertype::IPV4,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(src, SERVER, 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: CLIENT_PORT,
            dst_port: SERVER_PORT,
        }),
    }
    .build(payload)
    .unwrap();
    let mut datagram = vec![0u8; GeneveHeader::LEN];
    let n = GeneveRepr::ethernet(VNI).emit(&mut datagram).unwrap();
    datagram.truncate(n);
    datagram.extend_from_slice(&inner);
    datagram
}

/// The region's table as the watch would hand it: one public address.
fn table() -> EdgeDelta {
    EdgeDelta {
        revision: 1,
        full: true,
        upserts: vec![EdgeMapping {
            public: PUBLIC,
            vni: VNI,
            private: PRIVATE,
            host: IpAddr::V4(HOST),
            mac: ENI_MAC.to_string(),
            eni_id: "eni-0123456789abcdef0".into(),
            nat_nodes: Vec::new(),
        }],
        removals: vec![],
        attached_vnis: vec![VNI],
        public_pool: vec!["198.51.100.0/24".parse().unwrap()],
        ..EdgeDelta::default()
    }
}

/// The node's config in the test's edge namespace.
fn config(namespaces: &Namespaces, state: &Path) -> EdgeNodeConfig {
    let mut cfg = EdgeNodeConfig::new(
        "http://127.0.0.1:1",
        "unused",
        "edge-test",
        IpAddr::V4(EDGE),
        state.to_path_buf(),
    );
    cfg.netns = Some(namespaces.edge.clone());
    cfg
}

/// Waits until `f` holds, up to `within`.
fn eventually<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    get: impl Fn() -> T,
    f: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let v = get();
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `f` holds of the node's status.
fn status_until(node: &EdgeNodeHandle, what: &str, f: impl Fn(&NodeStatus) -> bool) {
    eventually(what, Duration::from_secs(3), || node.status(), f);
}

/// A datagram from the instance to the outside server and the server's
/// answer, checked on both ends; returns the host's and the server's
/// sockets.
fn ping_pong(namespaces: &Namespaces) -> (UdpSocket, UdpSocket) {
    let host = bind_in(&namespaces.host, SocketAddr::new(IpAddr::V4(HOST), 6081));
    let server = bind_in(
        &namespaces.outside,
        SocketAddr::new(IpAddr::V4(SERVER), SERVER_PORT),
    );
    let edge_addr = SocketAddr::new(IpAddr::V4(EDGE), 6081);

    // Outbound: the server sees the public address as the source.
    let ping = geneve_from_host(PRIVATE, b"ping");
    host.send_to(&ping, edge_addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the translated packet reaches the outside");
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from, SocketAddr::new(IpAddr::V4(PUBLIC), CLIENT_PORT));

    // Inbound: the answer comes back to the host as Geneve.
    server.send_to(b"pong", from).unwrap();
    let (n, from_edge) = host
        .recv_from(&mut buf)
        .expect("the answer reaches the host over the underlay");
    assert_eq!(from_edge.ip(), IpAddr::V4(EDGE));
    let g = GeneveHeader::view(&buf[..n]).unwrap();
    assert_eq!(g.header.vni(), VNI);
    let (eth, ip) = EthernetHeader::view(g.payload).unwrap();
    assert_eq!((eth.dst, eth.src), (ENI_MAC, ROUTER_MAC));
    let pf = parse_ip(ip, ethertype::IPV4).unwrap();
    assert_eq!(pf.key.src_ip(), IpAddr::V4(SERVER));
    assert_eq!(pf.key.dst_ip(), IpAddr::V4(PRIVATE));
    let ports = (pf.key.src_port, pf.key.dst_port);
    assert_eq!(ports, (SERVER_PORT, CLIENT_PORT));
    assert!(ip.ends_with(b"pong"));
    (host, server)
}

// spec 5.1 through real sockets and a real kernel: outbound, the host's
// Geneve leaves the edge's uplink with the public source; inbound, the
// answer to the public address reaches the host as Geneve with the VPC's
// VNI, the private destination and the ENI's MAC. What cannot be
// translated is a counted drop.
#[test]
fn an_edge_translates_between_the_underlay_and_its_uplink() {
    if let Some(reason) = cannot_run(&["ip"]) {
        eprintln!("skipping: {reason}");
        return;
    }
    let namespaces = Namespaces::new("t");
    namespaces.build(true);
    let state = tempfile::tempdir().unwrap();
    let node = EdgeNode::start_static(config(&namespaces, state.path())).unwrap();
    assert!(!node.wait_ready(Duration::from_millis(100)), "no table yet");
    node.apply(&table()).unwrap();
    assert!(node.wait_ready(Duration::from_secs(3)));
    let s = node.status();
    assert_eq!((s.io.table, s.io.attached_vpcs), (1, 1));
    assert_eq!(s.routed, table().public_pool);
    let ready = state.path().join("ready");
    eventually(
        "the ready file",
        Duration::from_secs(3),
        || ready.exists(),
        |e| *e,
    );

    let (host, server) = ping_pong(&namespaces);
    let edge_addr = SocketAddr::new(IpAddr::V4(EDGE), 6081);
    let mut buf = [0u8; 2048];

    // To a public address nobody holds: dropped and counted, nothing sent.
    let nobody = SocketAddr::new(IpAddr::V4(NOBODY), CLIENT_PORT);
    server.send_to(b"lost", nobody).unwrap();
    status_until(&node, "unknown public IP counted", |s| {
        s.io.drops(EdgeDrop::UnknownPublicIp) == 1
    });
    // From an instance without a public address: dropped and counted.
    let stranger = geneve_from_host(Ipv4Addr::new(10, 0, 1, 11), b"x");
    host.send_to(&stranger, edge_addr).unwrap();
    status_until(&node, "no public IP counted", |s| {
        s.io.drops(EdgeDrop::NoPublicIp) == 1
    });
    host.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(host.recv_from(&mut buf).is_err(), "a drop sends nothing");

    let s = node.status();
    assert_eq!((s.io.outbound, s.io.inbound), (1, 1));
    assert_eq!((s.io.io.underlay_rx, s.io.io.uplink_tx), (2, 1));
    assert_eq!(s.io.io.underlay_tx, 1);
    assert!(s.io.io.uplink_rx >= 2);

    // The status file carries the counters.
    let status = state.path().join("status.json");
    let read = || -> Option<serde_json::Value> {
        let bytes = std::fs::read(&status).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let j = eventually("the status file", Duration::from_secs(3), read, |j| {
        j.as_ref().is_some_and(|j| j["drops"]["no_public_ip"] == 1)
    })
    .unwrap_or_default();
    assert_eq!(j["table"], 1);
    assert_eq!(j["translated"]["inbound"], 1);

    // Stopping closes the TUN, and its routes go with it.
    node.stop();
    let args = ["-n", &namespaces.edge, "route", "show", "198.51.100.0/24"];
    let routes = netns::run("ip", &args).unwrap();
    assert!(routes.trim().is_empty(), "{routes}");
}

// The edge announces the public pool to the outside router (BIRD) over
// BGP from its namespace, next hop its address of the session, only once
// it has its table; traffic follows the learned route; a clean stop
// withdraws it at once (Cease).
#[test]
fn an_edge_announces_the_public_pool_over_bgp() {
    if let Some(reason) = cannot_run(&["ip", "bird"]) {
        eprintln!("skipping: {reason}");
        return;
    }
    let namespaces = Namespaces::new("b");
    namespaces.build(false);
    let state = tempfile::tempdir().unwrap();
    let _bird = Bird::start(&namespaces.outside, state.path());
    let mut cfg = config(&namespaces, state.path());
    cfg.bgp = Some(BgpConfig {
        peer: Ipv4Addr::new(10, 254, 10, 2),
        peer_as: 65000,
        local_as: 65001,
        hold_time: 3,
    });
    let node = EdgeNode::start_static(cfg).unwrap();
    status_until(&node, "session established", |s| {
        s.bgp.as_ref().is_some_and(|b| b["established"] == true)
    });
    assert_eq!(namespaces.outside_route(), "", "nothing before the table");

    node.apply(&table()).unwrap();
    let route = eventually(
        "the outside learns the pool",
        Duration::from_secs(5),
        || namespaces.outside_route(),
        |r| !r.is_empty(),
    );
    assert!(route.contains("via 10.254.10.1"), "{route}");
    let s = node.status();
    let bgp = s.bgp.unwrap_or_default();
    assert_eq!(bgp["next_hop"], "10.254.10.1");
    assert_eq!(bgp["announced"][0], "198.51.100.0/24");

    ping_pong(&namespaces);

    let stopped = Instant::now();
    node.stop();
    eventually(
        "the path is withdrawn",
        Duration::from_secs(2),
        || namespaces.outside_route(),
        |r| r.is_empty(),
    );
    eprintln!("withdrawn {:?} after a clean stop", stopped.elapsed());
}
