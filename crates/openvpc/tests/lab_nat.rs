//! NAT gateways through the Hyperplane in a lab (issue 16): `openvpc lab
//! up` runs hyperplane nodes (hp1, hp2, …) next to the hosts and edges;
//! the aws CLI makes a VPC with a public subnet holding a NAT gateway and
//! private subnets routed to it; real programs in the instances and in the
//! outside namespace (curl, ping, python clients and servers) check what
//! the outside sees, what survives a node's death and what runs out.
//!
//! Three labs: the default fleet of 4 nodes (the gateway's basics, SGs and
//! NACLs, `lab status`, the update-mirror scenario and a killed node
//! replaced in the shard), a fleet of 2 (a private NAT gateway towards a
//! peered VPC, and a killed node's buddy serves its flows and hands them
//! back when it returns), and the test-only knobs (10 ports per
//! destination, a 6 s idle timeout).
//!
//! Needs root (namespaces, TAP and TUN devices), the aws CLI from
//! scripts/test's venv and BIRD; without them the tests say why and skip
//! (CI runs them as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lab::{
    AclRule, Clients, ECHO_PORT, Instance, Lab, STREAM_CLIENT, STREAM_SERVER, UDP_CLIENT, UDP_ECHO,
    eventually, exec, signal,
};

/// The port of the outside's UDP echo ([`UDP_ECHO`]).
const UDP_PORT: u16 = 8001;

/// The outside's holding server (`IP PORT LOG`): appends each
/// connection's source `IP PORT` to LOG, sends it as the first line, and
/// keeps the connection open (never reading) until it dies.
const HOLD_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1024)
held = []
with open(sys.argv[3], 'a') as log:
    while True:
        c, peer = s.accept()
        held.append(c)
        line = '%s %d\n' % peer
        log.write(line)
        log.flush()
        try:
            c.sendall(line.encode())
        except OSError:
            pass
"#;

/// The holding client in an instance (`IP PORT OPEN MAX TIMEOUT EXTRA`):
/// connects to a [`HOLD_SERVER`] until OPEN connections are open or MAX
/// attempts were made, then EXTRA more attempts; prints one JSON line per
/// attempt (`ok`, and `seen`, the server's line, or `error`), then
/// `holding`. It keeps every open connection, and busy (a byte each 2 s,
/// so a short idle timeout does not end them), until its stdin closes.
const HOLD_CLIENT: &str = r#"
import json, socket, sys, threading
ip, port, want, most = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
timeout, extra = float(sys.argv[5]), int(sys.argv[6])
held = []
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
def keep_alive():
    # From the first connection on: the attempts after it may take their
    # whole timeout each, longer together than the gateway's idle timeout.
    while not done.wait(2):
        for c in list(held):
            try:
                c.send(b'k')
            except OSError:
                pass
threading.Thread(target=keep_alive, daemon=True).start()
def attempt(is_extra):
    try:
        c = socket.create_connection((ip, port), timeout=timeout)
        seen = c.makefile().readline().strip()
        held.append(c)
        print(json.dumps({'ok': True, 'seen': seen, 'extra': is_extra}), flush=True)
    except OSError as e:
        print(json.dumps({'ok': False, 'error': type(e).__name__, 'extra': is_extra}), flush=True)
tries = 0
while len(held) < want and tries < most:
    tries += 1
    attempt(False)
for _ in range(extra):
    attempt(True)
print('holding', flush=True)
done.wait()
"#;

/// The idle client in an instance (`IP PORT IDLE`): connects to a
/// [`HOLD_SERVER`], stays quiet IDLE seconds, then sends and waits for
/// what comes back; prints `{"seen", "outcome"}`, the outcome `reset`
/// (a RST), `fin` (an orderly close), `data` or `timeout`.
const IDLE_CLIENT: &str = r#"
import json, socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
seen = c.makefile().readline().strip()
time.sleep(float(sys.argv[3]))
outcome = 'data'
try:
    c.send(b'after the idle timeout\n')
    c.settimeout(5)
    if c.recv(100) == b'':
        outcome = 'fin'
except ConnectionResetError:
    outcome = 'reset'
except socket.timeout:
    outcome = 'timeout'
except OSError as e:
    outcome = type(e).__name__
print(json.dumps({'seen': seen, 'outcome': outcome}), flush=True)
"#;

/// The ports of the outside's holding and streaming servers.
const HOLD_PORT: u16 = 9000;
const IDLE_PORT: u16 = 9001;
const STREAM_PORT: u16 = 9002;

/// The peer's echo in an instance (`PORT`): it answers every GET with the
/// address and port the request came from (`IP PORT`).
const PEER_ECHO: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('%s %d' % self.client_address).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()
"#;
const PEER_PORT: u16 = 8080;

/// A VPC as AWS's NAT gateway scenario builds it: an internet gateway, a
/// public subnet (the main table's 0.0.0.0/0 to the IGW) holding a NAT
/// gateway with an Elastic IP, and a private subnet in each AZ whose table
/// sends 0.0.0.0/0 to the NAT gateway.
struct NatVpc {
    vpc: String,
    /// Private subnets in us-east-1a (host h1) and us-east-1b (h2).
    private: [String; 2],
    /// The group of the private instances: AWS's default egress (all),
    /// no ingress.
    group: String,
    nat: String,
    /// The gateway's primary Elastic IP.
    eip: String,
}

impl NatVpc {
    fn new(lab: &Lab) -> NatVpc {
        let (vpc, _igw, _main) = lab.internet_vpc("10.0.0.0/16");
        let public = lab.subnet(&vpc, "10.0.0.0/24", "us-east-1a", false);
        let (nat, eip) = lab.public_nat_gateway(&public);
        let private = [
            lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", false),
            lab.subnet(&vpc, "10.0.2.0/24", "us-east-1b", false),
        ];
        let table = lab.route_table(&vpc, &[&private[0], &private[1]]);
        let started = Instant::now();
        let gateway = wait_available(lab, &nat);
        eprintln!(
            "{nat} available {} ms after its creation",
            started.elapsed().as_millis()
        );
        assert_eq!(gateway["NatGatewayAddresses"][0]["PublicIp"], eip.as_str());
        lab.route(&table, "0.0.0.0/0", &["--nat-gateway-id", &nat]);
        // Issue 16: a route to a NAT gateway is active while it is available.
        eventually("the route to the NAT gateway to be active", true, || {
            let v = lab.ec2(&["describe-route-tables", "--route-table-ids", &table]);
            v["RouteTables"][0]["Routes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["NatGatewayId"] == nat.as_str() && r["State"] == "active")
        });
        let group = lab.group(&vpc, "private", &[]);
        NatVpc {
            vpc,
            private,
            group,
            nat,
            eip,
        }
    }

    /// `n` instances without public IPs, alternately in the private
    /// subnets of us-east-1a and us-east-1b (so on both hosts).
    fn instances(&self, lab: &Lab, n: usize) -> Vec<Instance> {
        (0..n)
            .map(|i| {
                let inst = lab.instance(&self.private[i % 2], &self.group, None);
                assert_eq!(lab.public_ip(&inst), None, "{} has a public IP", inst.id);
                inst
            })
            .collect()
    }

    /// The gateway as DescribeNatGateways shows it.
    fn describe(&self, lab: &Lab) -> Value {
        lab.ec2(&["describe-nat-gateways", "--nat-gateway-ids", &self.nat])["NatGateways"][0]
            .clone()
    }
}

/// Polls DescribeNatGateways until `nat` is `available` (issue 16: it is
/// `pending` until its shard has it programmed), for up to 30 s.
fn wait_available(lab: &Lab, nat: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = lab.ec2(&["describe-nat-gateways", "--nat-gateway-ids", nat]);
        let gateway = v["NatGateways"][0].clone();
        match gateway["State"].as_str() {
            Some("available") => return gateway,
            Some("pending") if Instant::now() < deadline => {}
            state => panic!(
                "{nat} is {state:?}, not available, {} s after its creation \
                 (FailureCode {}, FailureMessage {}); `lab status` in {:?}: {}",
                30,
                gateway["FailureCode"],
                gateway["FailureMessage"],
                lab.dir.path(),
                lab.status()["nat_gateways"]
            ),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The outside's echo servers: HTTP on `ECHO_PORT` and UDP on `UDP_PORT`,
/// each answering with the source address it saw.
fn echo_servers(lab: &mut Lab) {
    lab.echo_server();
    let ip = lab.outside_ip.clone();
    lab.spawn_outside(&["python3", "-c", UDP_ECHO, &ip, &UDP_PORT.to_string()]);
}

/// A holding server on the outside's `port`, logging to a file in the
/// lab's directory: the log's path.
fn hold_server(lab: &mut Lab, port: u16) -> std::path::PathBuf {
    let log = lab.dir.path().join(format!("peers-{port}.log"));
    let ip = lab.outside_ip.clone();
    lab.spawn_outside(&[
        "python3",
        "-c",
        HOLD_SERVER,
        &ip,
        &port.to_string(),
        log.to_str().unwrap(),
    ]);
    lab.wait_listening_outside(port);
    log
}

/// The `(IP, port)` pairs a holding server logged.
fn logged_peers(log: &std::path::Path) -> Vec<(String, u16)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (ip, port) = l.split_once(' ')?;
            Some((ip.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// The NAT gateway's entry in `lab status --json` (`null` while no live
/// node serves it).
fn shard_status(lab: &Lab, nat: &str) -> Value {
    lab.status()["nat_gateways"][nat].clone()
}

/// The nodes of the gateway's shard in `lab status`: (node, place, pid,
/// places served).
fn shard(lab: &Lab, nat: &str) -> Vec<(String, u64, u64, Vec<u64>)> {
    let mut nodes: Vec<_> = shard_status(lab, nat)["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_owned(),
                n["place"].as_u64().unwrap(),
                n["pid"].as_u64().unwrap(),
                n["serves_places"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    nodes.sort_by_key(|n| n.1);
    nodes
}

/// A counter of the gateway on one node's `/metrics` (Prometheus text,
/// served on its underlay address inside its namespace).
fn node_metric(lab: &Lab, node: &str, name: &str, nat: &str) -> u64 {
    let plan = lab.lab_json()["plan"]["hyperplane"].clone();
    let entry = plan
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == node)
        .unwrap()
        .clone();
    let url = format!(
        "http://{}:9108/metrics",
        entry["underlay_ip"].as_str().unwrap()
    );
    let out = Command::new("ip")
        .args(["netns", "exec", entry["netns"].as_str().unwrap()])
        .args(["curl", "-sf", "--max-time", "3", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url} in {node}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let series = format!("{name}{{node=\"{node}\",nat_gateway_id=\"{nat}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {node}'s /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// UDP from the instance to the outside's echo: the `IP PORT` it saw.
fn udp_from(lab: &Lab, instance: &Instance) -> Option<String> {
    let out = exec(
        &instance.id,
        &[
            "python3",
            "-c",
            UDP_CLIENT,
            &lab.outside_ip,
            &UDP_PORT.to_string(),
        ],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn private_instances_reach_the_outside_through_a_public_nat_gateway() {
    let lab_started = Instant::now();
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    let net = NatVpc::new(&lab);
    echo_servers(&mut lab);
    let instances = net.instances(&lab, 20);
    let (a, b) = (&instances[0], &instances[1]);

    // Spec 6: TCP from a private instance leaves with the gateway's EIP.
    for inst in [a, b] {
        let mut seen = None;
        eventually("a private instance to reach the outside", true, || {
            seen = lab.curl_outside_from(inst);
            seen.is_some()
        });
        assert_eq!(seen.as_deref(), Some(net.eip.as_str()), "{}", inst.id);
    }
    // ICMP echo and UDP too, UDP seen from the EIP.
    let ping = exec(&a.id, &["ping", "-c", "3", "-W", "2", &lab.outside_ip]);
    assert!(
        ping.status.success(),
        "ping through the NAT gateway: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let udp = udp_from(&lab, b).expect("no UDP answer through the NAT gateway");
    assert_eq!(udp.split(' ').next(), Some(net.eip.as_str()), "{udp}");

    lab_status_names_the_shard(&lab, &net);
    security_groups_and_acls_still_apply(&lab, &net, a);
    update_mirror(&mut lab, &net, &instances);
    let before_failover = lab_started.elapsed();
    // With 4 nodes the keeper gives the dead node's place to a third one;
    // the restarted node rejoins the fleet but not this shard (a shard
    // stays put while its nodes live).
    stream_through_a_node_failure(&mut lab, &net, &instances[..4], Fleet::Spare);
    eprintln!(
        "lab of 4 nodes: {} s before the failover, {} s in all",
        before_failover.as_secs(),
        lab_started.elapsed().as_secs()
    );
}

/// Issue 16: `lab status --json` lists every process with its role, name
/// and pid, and for the gateway the nodes of its shard with their pids;
/// each node's `/metrics` carries the gateway's counters.
fn lab_status_names_the_shard(lab: &Lab, net: &NatVpc) {
    let status = lab.status();
    let recorded = lab.lab_json()["processes"].as_array().unwrap().clone();
    let listed = status["processes"].as_array().unwrap();
    assert_eq!(listed.len(), recorded.len(), "{listed:?}");
    for p in &recorded {
        let name = p["part"].as_str().unwrap();
        let entry = listed
            .iter()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in lab status: {listed:?}"));
        assert_eq!(entry["pid"], p["pid"], "{entry}");
        assert_eq!(entry["running"], true, "{entry}");
        let want = match name {
            "server" => "server",
            "outside-router" => "outside-router",
            "region-resolver" => "region-resolver",
            n if n.starts_with("hp") => "hyperplane",
            n if n.starts_with('h') => "agent",
            n if n.starts_with('e') => "edge",
            n => panic!("a process {n} of no known part"),
        };
        assert_eq!(entry["role"], want, "{entry}");
    }
    let names: BTreeSet<&str> = listed.iter().filter_map(|l| l["name"].as_str()).collect();
    for part in [
        "server",
        "outside-router",
        "h1",
        "h2",
        "e1",
        "e2",
        "hp1",
        "hp2",
        "hp3",
        "hp4",
    ] {
        assert!(names.contains(part), "{part} missing from {names:?}");
    }

    let nodes = shard(lab, &net.nat);
    assert_eq!(
        nodes.len(),
        2,
        "a shard of 2 of hp1..hp4: {}",
        status["nat_gateways"]
    );
    let mut total_attempts = 0;
    for (place, (node, p, pid, serves)) in nodes.iter().enumerate() {
        assert!(
            ["hp1", "hp2", "hp3", "hp4"].contains(&node.as_str()),
            "{node}"
        );
        assert_eq!(*p, place as u64, "places 0 and 1: {nodes:?}");
        assert_eq!(serves, &[*p], "{node} serves its own place only");
        assert_eq!(*pid, lab.pid_of(node), "{node}'s pid");
        total_attempts += node_metric(lab, node, "openvpc_nat_connection_attempt_count", &net.nat);
    }
    assert_ne!(nodes[0].0, nodes[1].0, "{nodes:?}");
    assert!(
        total_attempts >= 3,
        "the shard's /metrics count the connections made so far: {total_attempts}"
    );
    eprintln!(
        "{} is served by {}:{} and {}:{}",
        net.nat, nodes[0].0, nodes[0].2, nodes[1].0, nodes[1].2
    );
}

/// Spec 4.1, 6: the instance's group and its subnet's network ACL still
/// filter what goes to the NAT gateway; the gateway itself has no group.
fn security_groups_and_acls_still_apply(lab: &Lab, net: &NatVpc, a: &Instance) {
    let gateway = net.describe(lab);
    assert!(
        !gateway.to_string().contains("SecurityGroup"),
        "a NAT gateway has no security group: {gateway}"
    );
    let eni = gateway["NatGatewayAddresses"][0]["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = lab.ec2(&[
        "describe-network-interfaces",
        "--network-interface-ids",
        &eni,
    ]);
    let eni = &v["NetworkInterfaces"][0];
    assert_eq!(eni["InterfaceType"], "nat_gateway", "{eni}");
    assert_eq!(eni["Groups"], serde_json::json!([]), "{eni}");

    // A NACL on a's subnet: rule 90 denies TCP out to the outside's echo
    // port, rule 100 allows everything else both ways.
    let dest = format!("{}/32", lab.outside_ip);
    let port = format!("From={ECHO_PORT},To={ECHO_PORT}");
    let acl = lab.network_acl(
        &net.vpc,
        &[
            AclRule {
                number: 90,
                egress: true,
                protocol: "tcp",
                cidr: &dest,
                ports: Some(&port),
                action: "deny",
            },
            AclRule::allow_all(true),
            AclRule::allow_all(false),
        ],
    );
    let default_acl = lab.swap_network_acl(&net.private[0], &acl);
    eventually("the NACL to block TCP to the outside", false, || {
        lab.curl_outside_from(a).is_some()
    });
    // Rule 90 is about TCP to one port: UDP still leaves.
    assert!(udp_from(lab, a).is_some(), "UDP blocked by a TCP-only deny");
    lab.swap_network_acl(&net.private[0], &default_acl);
    eventually("TCP to leave again with the default NACL", true, || {
        lab.curl_outside_from(a).as_deref() == Some(net.eip.as_str())
    });

    // The group's egress: without AWS's default allow-all rule nothing
    // leaves; with it back, the curl works again.
    let all = "IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]";
    let egress = |verb: &str| {
        lab.ec2(&[verb, "--group-id", &net.group, "--ip-permissions", all]);
    };
    egress("revoke-security-group-egress");
    eventually("the group to block egress", false, || {
        lab.curl_outside_from(a).is_some()
    });
    egress("authorize-security-group-egress");
    eventually("the group to allow egress again", true, || {
        lab.curl_outside_from(a).as_deref() == Some(net.eip.as_str())
    });
}

/// Issue 16, the update-mirror scenario: 100 concurrent connections from
/// 20 instances to one outside IP and port, all from the gateway's EIP,
/// every (address, port) distinct (spec 6: a source port unique per
/// destination).
fn update_mirror(lab: &mut Lab, net: &NatVpc, instances: &[Instance]) {
    let log = hold_server(lab, HOLD_PORT);
    let started = Instant::now();
    let all: Vec<&Instance> = instances.iter().collect();
    let ip = lab.outside_ip.clone();
    let mut clients = Clients::start(
        &all,
        HOLD_CLIENT,
        &[&ip, &HOLD_PORT.to_string(), "5", "5", "10", "0"],
    );
    let results = clients.read_until("holding");
    let opened = started.elapsed();
    // Every connection is still open here: the clients hold theirs until
    // their stdin closes.
    let mut seen_by_clients = Vec::new();
    for (inst, lines) in instances.iter().zip(&results) {
        assert_eq!(lines.len(), 5, "{}: {lines:?}", inst.id);
        for line in lines {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["ok"], true, "{}: {line}", inst.id);
            seen_by_clients.push(v["seen"].as_str().unwrap().to_owned());
        }
    }
    let peers = logged_peers(&log);
    assert_eq!(peers.len(), 100, "the server saw {peers:?}");
    assert!(
        peers.iter().all(|(ip, _)| *ip == net.eip),
        "every connection from the EIP {}: {peers:?}",
        net.eip
    );
    let distinct: BTreeSet<&(String, u16)> = peers.iter().collect();
    assert_eq!(distinct.len(), 100, "(address, port) collide: {peers:?}");
    let mut from_server: Vec<String> = peers.iter().map(|(i, p)| format!("{i} {p}")).collect();
    from_server.sort();
    seen_by_clients.sort();
    assert_eq!(from_server, seen_by_clients);
    // The nodes write their figures each second.
    let mut status = Value::Null;
    eventually("the gateway to count 100 active connections", true, || {
        status = shard_status(lab, &net.nat);
        status["active_connection_count"].as_u64().unwrap_or(0) >= 100
    });
    eprintln!(
        "update mirror: 100 connections from 20 instances open in {} ms, all from {}; \
         the gateway counts {} active",
        opened.as_millis(),
        net.eip,
        status["active_connection_count"]
    );
    assert_eq!(status["error_port_allocation"], 0, "{status}");
}

/// The fleet around the gateway's shard in a failover.
#[derive(Clone, Copy)]
enum Fleet {
    /// More nodes than the shard: a dead node's place goes to another.
    Spare,
    /// Just the shard's 2 nodes: the buddy serves both places until the
    /// dead one comes back.
    Pair,
}

/// Issue 16, failover: 200 TCP connections stream from `instances`
/// through the gateway (the outside server sends 100 bytes on each every
/// 100 ms); one node of the shard is SIGKILLed, streaming goes on 10 s,
/// then `lab restart` brings it back. Meanwhile another node serves its
/// place as `fleet` says. No connection may be reset or closed; the
/// longest stall is printed and bounded; new connections work once it is
/// back.
fn stream_through_a_node_failure(
    lab: &mut Lab,
    net: &NatVpc,
    instances: &[Instance],
    fleet: Fleet,
) {
    const CONNECTIONS: usize = 200;
    const DURATION_S: u64 = 30;
    lab.spawn_outside(&[
        "python3",
        "-c",
        STREAM_SERVER,
        &STREAM_PORT.to_string(),
        "0.1",
    ]);
    lab.wait_listening_outside(STREAM_PORT);
    let per_instance = CONNECTIONS / instances.len();
    let all: Vec<&Instance> = instances.iter().collect();
    let ip = lab.outside_ip.clone();
    let mut clients = Clients::start(
        &all,
        STREAM_CLIENT,
        &[
            &ip,
            &STREAM_PORT.to_string(),
            &per_instance.to_string(),
            &DURATION_S.to_string(),
        ],
    );
    for (inst, line) in instances.iter().zip(clients.read_until("connected")) {
        assert!(line.is_empty(), "{}: {line:?}", inst.id);
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let before = shard(lab, &net.nat);
    assert_eq!(before.len(), 2, "{before:?}");
    eventually("the gateway to count the streams as active", true, || {
        let status = shard_status(lab, &net.nat);
        status["active_connection_count"].as_u64().unwrap_or(0) >= CONNECTIONS as u64
    });

    // SIGKILL the node of place 0, by the pid lab status gives.
    let (victim, place, pid, _) = before[0].clone();
    let (survivor, ..) = before[1].clone();
    signal(pid, "-KILL");
    let killed = Instant::now();
    let killed_at = killed.duration_since(started);
    // Someone else serves its place: its buddy at once, then (with a node
    // to spare) the node the keeper puts there.
    let mut taken_over = None;
    while killed.elapsed() < Duration::from_secs(10) {
        let now = shard(lab, &net.nat);
        if now
            .iter()
            .any(|(n, _, _, serves)| *n != victim && serves.contains(&place))
        {
            taken_over = Some((killed.elapsed(), now));
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (took, after) = taken_over.unwrap_or_else(|| {
        panic!(
            "no node took {victim}'s place {place} within 10 s: {}",
            lab.status()["nat_gateways"]
        )
    });
    eprintln!(
        "failover: {victim} (pid {pid}) killed {} ms into the stream; its place served by \
         another node after {} ms: {after:?}",
        killed_at.as_millis(),
        took.as_millis()
    );
    // With a node to spare, the keeper puts it in the dead node's place
    // (its buddy hands it the flows); without, the buddy keeps serving.
    let mut replaced = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if replaced.is_none()
            && shard(lab, &net.nat)
                .iter()
                .any(|(n, p, ..)| *n != victim && *n != survivor && *p == place)
        {
            replaced = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let during = shard(lab, &net.nat);
    eprintln!(
        "failover: 10 s after the kill the shard is {during:?}{}",
        replaced.map_or(String::new(), |t| format!(
            "; the replacement served place {place} {} ms after the kill",
            t.as_millis()
        ))
    );
    match fleet {
        Fleet::Spare => assert!(
            during.len() == 2
                && during.iter().any(|(n, ..)| *n == survivor)
                && during.iter().all(|(n, ..)| *n != victim),
            "{victim}'s place given to a third node: {during:?}"
        ),
        Fleet::Pair => assert_eq!(
            during
                .iter()
                .map(|(n, p, _, serves)| (n.as_str(), *p, serves.clone()))
                .collect::<Vec<_>>(),
            [(survivor.as_str(), 1 - place, vec![0, 1])],
            "{survivor} serves both places"
        ),
    }

    // Back: it registers again; with no third node it gets its place and
    // its flows back from its buddy, otherwise the shard stays as it is.
    lab.restart(&victim, false);
    let back = Instant::now();
    eventually("the restarted node to register", true, || {
        let status = lab.status();
        let node = &status["hyperplane"][victim.as_str()];
        node["registered"] == true
            && status["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == victim.as_str() && p["running"] == true)
    });
    match fleet {
        Fleet::Spare => {
            std::thread::sleep(Duration::from_secs(2));
            let now = shard(lab, &net.nat);
            assert_eq!(now, during, "the shard moved when {victim} came back");
            eprintln!(
                "failover: {victim} back after {} ms; the shard stays {now:?}",
                back.elapsed().as_millis()
            );
        }
        Fleet::Pair => {
            eventually("the restarted node to serve its place again", true, || {
                let now = shard(lab, &net.nat);
                now.iter()
                    .any(|(n, p, _, serves)| *n == victim && *p == place && serves == &[place])
                    && now
                        .iter()
                        .any(|(n, _, _, serves)| *n == survivor && !serves.contains(&place))
            });
            let adopted = lab.status()["hyperplane"][victim.as_str()]["replication"]["adopted"]
                .as_u64()
                .unwrap_or(0);
            eprintln!(
                "failover: {victim} back after {} ms and serving place {place}; {adopted} \
                 flows handed back to it",
                back.elapsed().as_millis()
            );
            assert!(adopted > 0, "its buddy handed no flows back to {victim}");
        }
    }
    // New connections through the gateway work.
    eventually("a new connection through the gateway", true, || {
        lab.curl_outside_from(&instances[0]).as_deref() == Some(net.eip.as_str())
    });

    let reports = clients.next_json();
    let mut resets = 0;
    let mut longest = 0;
    for (inst, report) in instances.iter().zip(&reports) {
        eprintln!("failover: {} streaming: {report}", inst.id);
        resets += report["resets"].as_u64().unwrap()
            + report["closes"].as_u64().unwrap()
            + report["errors"].as_u64().unwrap();
        longest = longest.max(report["max_pause_ms"].as_u64().unwrap());
    }
    eprintln!(
        "failover over {CONNECTIONS} streaming connections: {resets} reset or closed, \
         longest stall {longest} ms"
    );
    // Issue 16: losing a node must not break an established connection.
    assert_eq!(resets, 0, "{reports:?}");
    for report in &reports {
        assert_eq!(report["alive"], per_instance, "{report}");
        assert_eq!(report["stalled_at_end"], 0, "{report}");
    }
    assert!(longest < 10_000, "the longest stall was {longest} ms");
}

/// Issue 16, spec 6: a private NAT gateway translates to its private
/// address and forwards by its subnet's route table. VPC A (10.10.0.0/16)
/// has the instances' subnet A1, whose table sends 10.20.0.0/16 to the
/// gateway, and the gateway's subnet A2, whose table sends it on to the
/// peering with VPC B (10.20.0.0/16); B routes 10.10.0.0/16 back over the
/// peering. An instance of A1 reaches B's instance, which sees the
/// gateway's private address, never the instance's; `openvpc trace` names
/// the gateway's hop.
fn private_nat_gateway_to_a_peered_vpc(lab: &mut Lab) {
    let started = Instant::now();
    let vpc_a = lab.vpc("10.10.0.0/16");
    let a1 = lab.subnet(&vpc_a, "10.10.1.0/24", "us-east-1a", false);
    let a2 = lab.subnet(&vpc_a, "10.10.2.0/24", "us-east-1b", false);
    let vpc_b = lab.vpc("10.20.0.0/16");
    let b1 = lab.subnet(&vpc_b, "10.20.1.0/24", "us-east-1b", false);

    let nat = lab.ec2(&[
        "create-nat-gateway",
        "--subnet-id",
        &a2,
        "--connectivity-type",
        "private",
    ])["NatGateway"]["NatGatewayId"]
        .as_str()
        .unwrap()
        .to_owned();
    let pcx = lab.ec2(&[
        "create-vpc-peering-connection",
        "--vpc-id",
        &vpc_a,
        "--peer-vpc-id",
        &vpc_b,
    ])["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.ec2(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    // A1: its own table, 10.20.0.0/16 to the NAT gateway (once available).
    let a1_table = lab.route_table(&vpc_a, &[&a1]);
    // A2 (the gateway's subnet) keeps A's main table: 10.20.0.0/16 to the
    // peering. B's main table: A's CIDR back over the peering.
    let a_main = lab.main_route_table(&vpc_a);
    lab.route(
        &a_main,
        "10.20.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );
    lab.route(
        &lab.main_route_table(&vpc_b),
        "10.10.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );

    let waited = Instant::now();
    let gateway = wait_available(lab, &nat);
    eprintln!(
        "private {nat} available after {} ms of waiting ({} ms after the VPCs' creation, \
         most of it the aws CLI's calls)",
        waited.elapsed().as_millis(),
        started.elapsed().as_millis()
    );
    // Spec 6: a private gateway has a private address and no Elastic IP.
    assert_eq!(gateway["ConnectivityType"], "private", "{gateway}");
    let address = &gateway["NatGatewayAddresses"][0];
    assert!(address.get("PublicIp").is_none(), "{gateway}");
    let nat_ip = address["PrivateIp"].as_str().unwrap().to_owned();
    assert!(nat_ip.starts_with("10.10.2."), "{nat_ip} is not in A2");
    lab.route(&a1_table, "10.20.0.0/16", &["--nat-gateway-id", &nat]);

    // B's instance admits the port from A's CIDR only; A's instance has
    // AWS's default egress and no ingress.
    let b_group = lab.group(&vpc_b, "peer", &[]);
    lab.allow(&b_group, "tcp", &PEER_PORT.to_string(), "10.10.0.0/16");
    let a_group = lab.group(&vpc_a, "client", &[]);
    let client = lab.instance(&a1, &a_group, None);
    let server = lab.instance(&b1, &b_group, None);
    let port = PEER_PORT.to_string();
    lab.spawn_in(&server, &["python3", "-c", PEER_ECHO, &port]);
    lab.wait_listening(&["exec", &server.id, "--"], PEER_PORT);

    let url = format!("http://{}:{PEER_PORT}/", server.ip);
    // What B's echo saw of the connection (`IP PORT`), or `None`.
    let reach = || {
        let out = exec(&client.id, &["curl", "-sf", "--max-time", "3", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let mut seen = None;
    eventually(
        "A's instance to reach B's through the gateway",
        true,
        || {
            seen = reach();
            seen.is_some()
        },
    );
    let seen = seen.unwrap_or_default();
    let (ip, seen_port) = seen.split_once(' ').unwrap_or((&seen, ""));
    eprintln!(
        "private NAT: {} ({}) reached {} ({}) as {seen}, {} ms after the VPCs' creation",
        client.id,
        client.ip,
        server.id,
        server.ip,
        started.elapsed().as_millis()
    );
    assert_eq!(
        ip, nat_ip,
        "B saw {seen}, not the gateway's private address {nat_ip} (the instance is {})",
        client.ip
    );
    assert!(seen_port.parse::<u16>().is_ok(), "{seen}");
    // Several connections, each its own translated port.
    let ports: BTreeSet<String> = (0..5)
        .map(|_| {
            let text = reach().unwrap_or_default();
            assert!(text.starts_with(&format!("{nat_ip} ")), "B saw {text:?}");
            text
        })
        .collect();
    assert_eq!(ports.len(), 5, "{ports:?}");

    let traced = lab.trace(
        &client.id,
        &server.ip,
        &["--protocol", "tcp", "--port", &port],
    );
    eprintln!("private NAT: trace\n{traced}");
    assert!(
        traced.contains(&format!("through NAT gateway {nat} on hyperplane node hp"))
            && traced.contains(&format!("source translated to {nat_ip}:")),
        "{traced}"
    );
    assert!(
        traced.contains(&format!("delivered to {}", eni_of(lab, &server))),
        "{traced}"
    );

    // The gateway counts the connections (the nodes write their figures
    // each second); replies on a port of the node the mapping service
    // does not name are forwarded to the one that owns it.
    let mut status = Value::Null;
    eventually("the private gateway to count 6 connections", true, || {
        status = shard_status(lab, &nat);
        status["connection_attempt_count"].as_u64().unwrap_or(0) >= 6
    });
    assert_eq!(status["packets_drop_count"], 0, "{status}");
    let fleet = lab.status()["hyperplane"].clone();
    for (node, ..) in shard(lab, &nat) {
        eprintln!(
            "private NAT: {node} forwarded {} packets, drops {}",
            fleet[&node]["replication"]["forwarded"], fleet[&node]["drops"]
        );
    }

    // The node forwards by the gateway's subnet's table: without its
    // route to the peering the translated packets have nowhere to go (a
    // counted `no_route` on the node); with it back they flow again.
    let no_route = |lab: &Lab| -> u64 {
        let fleet = lab.status()["hyperplane"].clone();
        shard(lab, &nat)
            .iter()
            .map(|(node, ..)| fleet[node]["drops"]["no_route"].as_u64().unwrap_or(0))
            .sum()
    };
    let before = no_route(lab);
    lab.ec2(&[
        "delete-route",
        "--route-table-id",
        &a_main,
        "--destination-cidr-block",
        "10.20.0.0/16",
    ]);
    eventually(
        "B unreachable without the gateway subnet's route",
        false,
        || reach().is_some(),
    );
    eventually("the node to count no_route drops", true, || {
        no_route(lab) > before
    });
    lab.route(
        &a_main,
        "10.20.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );
    let mut again = None;
    eventually("B reachable with the route back", true, || {
        again = reach();
        again.is_some()
    });
    let again = again.unwrap_or_default();
    assert!(again.starts_with(&format!("{nat_ip} ")), "{again}");
}

/// The network interface of `instance`.
fn eni_of(lab: &Lab, instance: &Instance) -> String {
    let v = lab.ec2(&["describe-instances", "--instance-ids", &instance.id]);
    v["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_killed_node_s_buddy_serves_its_flows_and_hands_them_back() {
    let started = Instant::now();
    let Some(mut lab) = Lab::up(&["--hyperplane-nodes", "2"]) else {
        return;
    };
    let net = NatVpc::new(&lab);
    lab.echo_server();
    let instances = net.instances(&lab, 4);
    eventually("a private instance to reach the outside", true, || {
        lab.curl_outside_from(&instances[0]).as_deref() == Some(net.eip.as_str())
    });
    // The shard is the whole fleet here: both nodes meet the private
    // gateway's flows and its replies.
    private_nat_gateway_to_a_peered_vpc(&mut lab);
    stream_through_a_node_failure(&mut lab, &net, &instances, Fleet::Pair);
    eprintln!("lab of 2 nodes: {} s", started.elapsed().as_secs());
}

#[test]
fn ports_run_out_per_destination_and_idle_connections_end_with_a_reset() {
    let started = Instant::now();
    let Some(mut lab) = Lab::up(&["--nat-ports", "20000-20009", "--nat-idle-timeout", "6"]) else {
        return;
    };
    let net = NatVpc::new(&lab);
    lab.echo_server();
    let instances = net.instances(&lab, 2);
    eventually("a private instance to reach the outside", true, || {
        lab.curl_outside_from(&instances[0]).as_deref() == Some(net.eip.as_str())
    });
    let ip = lab.outside_ip.clone();

    // Idle expiry (spec 6.2, shortened to 6 s): a segment of a connection
    // quiet for longer gets a RST back, never a FIN.
    hold_server(&mut lab, IDLE_PORT);
    let out = exec(
        &instances[1].id,
        &[
            "python3",
            "-c",
            IDLE_CLIENT,
            &ip,
            &IDLE_PORT.to_string(),
            "10",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the idle client: {e}: {out:?}"));
    eprintln!("idle expiry: {report}");
    assert!(
        report["seen"].as_str().unwrap().starts_with(&net.eip),
        "{report}"
    );
    assert_eq!(report["outcome"], "reset", "{report}");
    eventually("the gateway to count an idle timeout", true, || {
        shard_status(&lab, &net.nat)["idle_timeout_count"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });

    // Port exhaustion: 10 ports towards one destination, so 10 open
    // connections; every further one is dropped and counted as
    // ErrorPortAllocation. (The clients keep theirs busy: the idle
    // timeout is short here.)
    let log = hold_server(&mut lab, HOLD_PORT);
    let mut holder = Clients::start(
        &[&instances[0]],
        HOLD_CLIENT,
        &[&ip, &HOLD_PORT.to_string(), "10", "40", "1.5", "2"],
    );
    let lines = holder.read_until("holding").remove(0);
    let attempts: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["ok"] == true && a["extra"] == false)
        .collect();
    let failed = attempts.iter().filter(|a| a["ok"] == false).count();
    eprintln!(
        "port exhaustion: {} connections open, {failed} attempts failed, of {}",
        ok.len(),
        attempts.len()
    );
    assert_eq!(ok.len(), 10, "{lines:?}");
    let ports: BTreeSet<u16> = logged_peers(&log)
        .iter()
        .map(|(ip, port)| {
            assert_eq!(*ip, net.eip);
            *port
        })
        .collect();
    assert_eq!(ports, (20000..=20009).collect(), "the ports the server saw");
    let extra: Vec<&Value> = attempts.iter().filter(|a| a["extra"] == true).collect();
    assert_eq!(extra.len(), 2);
    assert!(
        extra.iter().all(|a| a["ok"] == false),
        "a connection beyond the last free port: {extra:?}"
    );
    eventually("the gateway to count ErrorPortAllocation", true, || {
        shard_status(&lab, &net.nat)["error_port_allocation"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let on_metrics: u64 = shard(&lab, &net.nat)
        .iter()
        .map(|(node, ..)| node_metric(&lab, node, "openvpc_nat_error_port_allocation", &net.nat))
        .sum();
    assert!(on_metrics > 0, "/metrics count no ErrorPortAllocation");

    // A second EIP gives room again.
    let (second, alloc) = lab.allocate_address();
    lab.ec2(&[
        "associate-nat-gateway-address",
        "--nat-gateway-id",
        &net.nat,
        "--allocation-ids",
        &alloc,
    ]);
    eventually("the second address to be associated", true, || {
        net.describe(&lab)["NatGatewayAddresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["AllocationId"] == alloc.as_str() && a["Status"] == "succeeded")
    });
    let mut seen = String::new();
    eventually("a connection through the second address", true, || {
        let out = exec(
            &instances[1].id,
            &[
                "python3",
                "-c",
                HOLD_CLIENT,
                &ip,
                &HOLD_PORT.to_string(),
                "1",
                "1",
                "1.5",
                "0",
            ],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let first: Value = serde_json::from_str(text.lines().next().unwrap_or("{}")).unwrap();
        seen = first["seen"].as_str().unwrap_or_default().to_owned();
        first["ok"] == true
    });
    assert!(seen.starts_with(&second), "{seen}, not from {second}");
    drop(holder);
    eprintln!("lab with the NAT knobs: {} s", started.elapsed().as_secs());
}
