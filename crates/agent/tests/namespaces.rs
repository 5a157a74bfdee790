//! Real packets through real namespaces (testing ladder step 3; needs root).
//!
//! Instances are network namespaces with TAPs created by the agent's own
//! code, addressed by busybox udhcpc talking to the dataplane's DHCP server,
//! and exercised with ping and HTTP. Each test owns every namespace it makes
//! (names carry the test process's PID) and removes them in drop guards.

use core::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvpc_agent::control::lookup_loop_with;
use openvpc_agent::instance::Instances;
use openvpc_agent::netns;
use openvpc_agent::reconcile::Reconciler;
use openvpc_agent::worker::{self, WorkerConfig, WorkerHandle};
use openvpc_dataplane::RouterConfig;
use openvpc_model::host::{EniState, HostDelta, InstanceSetup};

mod common;
use common::{Table, answer, eni, is_root, record};

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root for network namespaces, TAP devices and veth pairs");
            return;
        }
    };
}

fn ip(args: &[&str]) {
    netns::run("ip", args).unwrap_or_else(|e| panic!("{e}"));
}

/// One host: a worker whose underlay lives in its own namespace, its lookup
/// thread and its reconciler. Dropping it stops both and removes the
/// instance namespaces it made.
struct Host {
    stop: Arc<AtomicBool>,
    lookup: Option<JoinHandle<()>>,
    worker: Option<WorkerHandle>,
    reconciler: Reconciler,
    state_dir: PathBuf,
    /// Stop as an agent does: instances stay for the next one.
    keep_instances: bool,
}

impl Host {
    fn start(underlay_ns: &str, underlay: IpAddr, table: Table, state_dir: &Path) -> Host {
        let router = RouterConfig::new(underlay);
        let mtu = router.instance_mtu;
        let mut cfg = WorkerConfig::new(router);
        cfg.underlay_netns = Some(underlay_ns.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        let worker = worker::spawn(cfg, tx).unwrap_or_else(|e| panic!("{e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let lookup = {
            let (client, stop) = (worker.client(), stop.clone());
            std::thread::spawn(move || {
                lookup_loop_with(&rx, &client, &stop, |keys| Ok(answer(&table, keys)))
            })
        };
        let instances = Instances::load(state_dir).unwrap();
        Host {
            reconciler: Reconciler::new(worker.client(), instances, mtu),
            stop,
            lookup: Some(lookup),
            worker: Some(worker),
            state_dir: state_dir.to_path_buf(),
            keep_instances: false,
        }
    }

    /// Applies a full state of `enis`; returns how many DHCP clients ran.
    fn install(&mut self, enis: Vec<EniState>) -> usize {
        let report = self.reconciler.apply(&HostDelta {
            revision: 1,
            full: true,
            upserts: enis,
            removals: vec![],
            invalidations: vec![],
        });
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        self.reconciler.wait_dhcp();
        report.dhcp_started
    }

    /// Stops the worker as an agent stop does, leaving the instances.
    fn stop_keeping_instances(mut self) {
        self.keep_instances = true;
    }

    /// The worker's I/O counters.
    fn io(&self) -> openvpc_agent::worker::IoCounters {
        self.worker.as_ref().unwrap().client().status().unwrap().io
    }

    fn status(&self) -> String {
        match self.worker.as_ref().map(|w| w.client().status()) {
            Some(Ok(s)) => format!("{s:#?}"),
            _ => "worker gone".into(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.lookup.take() {
            let _ = t.join();
        }
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        if self.keep_instances {
            return;
        }
        if let Err(e) = openvpc_agent::remove_instances(&self.state_dir) {
            eprintln!("cleanup: {e}");
        }
    }
}

/// Namespaces made by the test itself (not by an agent) and children to
/// kill; removed on drop.
#[derive(Default)]
struct Guard {
    netns: Vec<String>,
    children: Vec<Child>,
}

impl Guard {
    fn netns(&mut self, name: &str) {
        self.netns.push(name.to_string());
        netns::ensure(name).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.netns.iter().rev() {
            if let Err(e) = netns::delete(n) {
                eprintln!("cleanup {n}: {e}");
            }
        }
    }
}

fn exec(ns: &str, cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    Command::new("ip").args(&args).output().unwrap()
}

fn assert_address(ns: &str, want: &str) {
    let addrs = netns::ipv4_addresses(ns, "eth0").unwrap();
    assert_eq!(addrs, vec![want.to_string()], "DHCP did not configure {ns}");
}

/// Pings, then fetches a page over TCP from an HTTP server in `server_ns`.
fn check_traffic(
    guard: &mut Guard,
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    hosts: &[&Host],
) {
    let status = || {
        hosts
            .iter()
            .map(|h| h.status())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let ping = exec(
        client_ns,
        &["busybox", "ping", "-c", "3", "-W", "1", server_ip],
    );
    assert!(
        ping.status.success(),
        "ping {server_ip} from {client_ns} failed:\n{}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        status()
    );

    let root = tempfile::tempdir().unwrap();
    let token = format!("openvpc-agent-test-{}", std::process::id());
    std::fs::write(root.path().join("index.html"), &token).unwrap();
    let root_dir = root.path().to_str().unwrap().to_string();
    guard.children.push(
        Command::new("ip")
            .args([
                "netns", "exec", server_ns, "busybox", "httpd", "-f", "-p", "8080", "-h", &root_dir,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://{server_ip}:8080/index.html");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = exec(client_ns, &["curl", "-s", "--max-time", "3", &url]);
        if out.status.success() && String::from_utf8_lossy(&out.stdout) == token {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "HTTP to {url} from {client_ns} failed: {out:?}\n{}",
            status()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_instances_on_one_host_get_dhcp_and_talk() {
    require_root!();
    let pid = std::process::id();
    let (a, b) = (format!("i-{pid:08x}0a"), format!("i-{pid:08x}0b"));
    let mut guard = Guard::default();
    let underlay_ns = format!("ovu-{pid}-solo");
    guard.netns(&underlay_ns);
    let underlay: IpAddr = "127.0.0.1".parse().unwrap();

    let ea = eni(
        "eni-a",
        &a,
        Ipv4Addr::new(10, 0, 1, 10),
        "02:00:0a:00:01:0a",
    );
    let eb = eni(
        "eni-b",
        &b,
        Ipv4Addr::new(10, 0, 1, 11),
        "02:00:0a:00:01:0b",
    );
    let table: Table = Arc::new([record(&ea, underlay), record(&eb, underlay)].into());
    let state = tempfile::tempdir().unwrap();
    let mut host = Host::start(&underlay_ns, underlay, table.clone(), state.path());
    assert_eq!(host.install(vec![ea.clone(), eb.clone()]), 2);

    assert_address(&a, "10.0.1.10/24");
    assert_address(&b, "10.0.1.11/24");
    // Issue 12: namespace, TAP and DHCP lease done: the instance is ok.
    for id in [&a, &b] {
        let h = host.reconciler.health().get(id).unwrap();
        assert_eq!(h.setup, InstanceSetup::Ok, "{h:?}");
    }
    check_traffic(&mut guard, &a, &b, "10.0.1.11", &[&host]);

    // An agent restart: the instances and their persistent TAPs outlive
    // the worker; the next one re-attaches them, and they keep their
    // addresses without asking DHCP again.
    host.stop_keeping_instances();
    assert!(netns::exists(&a) && netns::exists(&b));
    // An instance terminated while the agent was down: its namespace is on
    // the agent's list but not in the next full state, so it goes.
    let gone = format!("i-{pid:08x}0c");
    Instances::load(state.path())
        .unwrap()
        .ensure(&gone)
        .unwrap();
    let mut host = Host::start(&underlay_ns, underlay, table, state.path());
    let dhcp = host.install(vec![ea.clone(), eb.clone()]);
    assert_eq!(dhcp, 0, "DHCP ran again");
    // A kept address counts as a lease.
    assert_eq!(
        host.reconciler.health().get(&a).map(|h| h.setup),
        Some(InstanceSetup::Ok)
    );
    assert!(!netns::exists(&gone), "orphan {gone} left behind");
    assert_address(&a, "10.0.1.10/24");
    assert_address(&b, "10.0.1.11/24");
    let ping = exec(&a, &["busybox", "ping", "-c", "2", "-W", "1", "10.0.1.11"]);
    assert!(ping.status.success(), "{ping:?}\n{}", host.status());

    // A resync with the same state changes nothing: the flows stay.
    let report = host.reconciler.apply(&HostDelta {
        revision: 2,
        full: true,
        upserts: vec![ea, eb],
        ..HostDelta::default()
    });
    assert_eq!((report.installed, report.unchanged), (0, 2));

    // Terminating B's instance removes its namespace.
    let report = host.reconciler.apply(&HostDelta {
        revision: 3,
        removals: vec!["eni-b".into()],
        ..HostDelta::default()
    });
    assert_eq!(report.removed, 1);
    assert!(!netns::exists(&b));
    assert!(host.reconciler.health().get(&b).is_none());
    assert!(netns::exists(&a));
    drop(host);
    assert!(!netns::exists(&a), "remove_instances left {a}");
}

#[test]
fn two_hosts_over_a_geneve_underlay() {
    require_root!();
    let pid = std::process::id();
    let (a, b) = (format!("i-{pid:08x}1a"), format!("i-{pid:08x}1b"));
    let mut guard = Guard::default();
    let (u1, u2) = (format!("ovu-{pid}-h1"), format!("ovu-{pid}-h2"));
    guard.netns(&u1);
    guard.netns(&u2);
    // The veth pair is made here and both ends moved out, so deleting the
    // namespaces deletes it.
    let (v1, v2) = (format!("ov{pid}a"), format!("ov{pid}b"));
    ip(&["link", "add", &v1, "type", "veth", "peer", "name", &v2]);
    ip(&["link", "set", &v1, "netns", &u1]);
    ip(&["link", "set", &v2, "netns", &u2]);
    ip(&["-n", &u1, "addr", "add", "10.254.0.1/24", "dev", &v1]);
    ip(&["-n", &u2, "addr", "add", "10.254.0.2/24", "dev", &v2]);
    ip(&["-n", &u1, "link", "set", &v1, "up"]);
    ip(&["-n", &u2, "link", "set", &v2, "up"]);
    let (h1, h2): (IpAddr, IpAddr) = ("10.254.0.1".parse().unwrap(), "10.254.0.2".parse().unwrap());

    let ea = eni(
        "eni-a",
        &a,
        Ipv4Addr::new(10, 0, 1, 20),
        "02:00:0a:00:01:14",
    );
    let eb = eni(
        "eni-b",
        &b,
        Ipv4Addr::new(10, 0, 1, 21),
        "02:00:0a:00:01:15",
    );
    let table: Table = Arc::new([record(&ea, h1), record(&eb, h2)].into());
    let (s1, s2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut host1 = Host::start(&u1, h1, table.clone(), s1.path());
    let mut host2 = Host::start(&u2, h2, table, s2.path());
    assert_eq!(host1.install(vec![ea]), 1);
    assert_eq!(host2.install(vec![eb]), 1);

    assert_address(&a, "10.0.1.20/24");
    assert_address(&b, "10.0.1.21/24");
    assert_gso_max_size_fits_one_send(&a);
    check_traffic(&mut guard, &a, &b, "10.0.1.21", &[&host1, &host2]);

    // A bulk TCP transfer through the underlay (not a performance test:
    // debug builds, two cores; it checks that full-size segments pass).
    guard.children.push(
        Command::new("ip")
            .args(["netns", "exec", &b, "iperf3", "-s", "-1", "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let out = exec(
            &a,
            &["iperf3", "-c", "10.0.1.21", "-p", "5201", "-t", "2", "-J"],
        );
        // iperf3 -J can exit 0 with an "error" in its report (a server not
        // listening yet): only a report without one counts.
        let report = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok();
        if let Some(report) = report.filter(|r| out.status.success() && r.get("error").is_none()) {
            break report;
        }
        assert!(Instant::now() < deadline, "iperf3 failed: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0);
    eprintln!("iperf3 over the Geneve underlay: {:.0} Mbit/s", bps / 1e6);
    assert!(bps > 1e6, "{report}");

    // The traffic really crossed the underlay sockets, both ways.
    for h in [&host1, &host2] {
        let s = h.worker.as_ref().unwrap().client().status().unwrap();
        assert!(s.io.underlay_tx > 0 && s.io.underlay_rx > 0, "{s:#?}");
    }

    udp_burst_arrives_whole(&mut guard, &a, &b, "10.0.1.21", &host2);

    // The workers busy-poll only just after traffic: idle, they sleep.
    std::thread::sleep(Duration::from_millis(300));
    let before = worker_cpu_ticks();
    std::thread::sleep(Duration::from_secs(1));
    let spent = worker_cpu_ticks() - before;
    // Ticks are 10 ms; spinning would take ~100 per worker.
    assert!(spent <= 10, "idle workers used {spent} ticks of CPU in 1 s");
}

/// CPU time (user + system, in clock ticks) of this process's worker
/// threads so far.
fn worker_cpu_ticks() -> u64 {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "openvpc-worker" {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field,
        // utime and stime the 14th and 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields
            .get(11..13)
            .into_iter()
            .flatten()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .sum::<u64>();
    }
    ticks
}

/// The instance's TAP offers super-segments no larger than one underlay
/// send carries.
fn assert_gso_max_size_fits_one_send(ns: &str) {
    let out = exec(ns, &["ip", "-d", "link", "show", "eth0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u32 {
        let mut words = text.split_whitespace();
        words
            .by_ref()
            .find(|w| *w == name)
            .and_then(|_| words.next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let mtu = u16::try_from(field("mtu")).unwrap();
    assert_eq!(
        field("gso_max_size"),
        openvpc_agent::worker::tap_gso_max_size(mtu),
        "{text}"
    );
}

/// Bursts of equal-sized UDP datagrams from `client_ns` reach the
/// receiver intact and in order, although the receiving worker hands runs
/// of them to the TAP as one super-datagram (counted).
fn udp_burst_arrives_whole(
    guard: &mut Guard,
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    server_host: &Host,
) {
    const COUNT: usize = 2000;
    // Sent back to back, then a pause: each burst fits the TAP's queue.
    const BURST: usize = 32;
    // Each datagram: its sequence number, then a filler derived from it.
    let receiver = format!(
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE: hold the whole burst
s.bind(("{server_ip}", 5301))
s.settimeout(5)
print("ready", flush=True)
bad = 0
got = []
try:
    while len(got) < {COUNT}:
        d = s.recv(2048)
        n = int.from_bytes(d[:4], "big")
        if len(d) != 200 or d[4:] != bytes([n % 251]) * 196:
            bad += 1
        got.append(n)
except socket.timeout:
    pass
print(len(got), bad, int(got == sorted(got)), flush=True)
"#
    );
    let sender = format!(
        r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range({COUNT}):
    s.sendto(n.to_bytes(4, "big") + bytes([n % 251]) * 196, ("{server_ip}", 5301))
    if n % {BURST} == {BURST} - 1:
        time.sleep(0.002)
"#
    );
    let before = server_host.io();
    let mut rx = Command::new("ip")
        .args(["netns", "exec", server_ns, "python3", "-c", &receiver])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(rx.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    guard.children.push(rx);
    let sent = exec(client_ns, &["python3", "-c", &sender]);
    assert!(sent.status.success(), "{sent:?}");
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let io = server_host.io();
    // Received, malformed, in order. UDP may lose a datagram under load
    // (a TAP queue overflows while the worker waits for a CPU); a run
    // coalesced wrongly would lose or garble one per burst at least.
    let fields: Vec<usize> = line
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "receiver said {line:?}");
    assert!(
        fields[0] >= COUNT - COUNT / 100 && fields[1] == 0 && fields[2] == 1,
        "received {}, malformed {}, in order {}: {io:#?}",
        fields[0],
        fields[1],
        fields[2]
    );
    assert_eq!(io.tap_write_errors, before.tap_write_errors, "{io:#?}");
    assert!(
        io.tap_coalesced_writes > before.tap_coalesced_writes,
        "no datagrams were coalesced: {io:#?}"
    );
}
