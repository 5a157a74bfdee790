//! Network load balancers through the Hyperplane in a lab (issue 17):
//! `openvpc lab up` runs the hosts, edges and hyperplane nodes; the aws CLI
//! makes a VPC with two AZs, three instances running HTTP servers as the
//! targets of an internal TCP:80 network load balancer, and clients; real
//! programs in the instances (python's HTTP server and clients, a UDP
//! echo, streaming TCP) check what the targets see, how flows spread, what
//! the health checks find, what deregistration drains, and what survives
//! the death of a node of the load balancer's shard.
//!
//! Needs root (namespaces, TAP and TUN devices), the aws CLI from
//! scripts/test's venv and BIRD; without them the test says why and skips
//! (CI runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lab::{
    Clients, Instance, Lab, STREAM_CLIENT, STREAM_SERVER, UDP_CLIENT, UDP_ECHO, eventually, exec,
    signal,
};

const VPC_CIDR: &str = "10.40.0.0/16";
const WEB_PORT: u16 = 80;
const STREAM_PORT: u16 = 9000;
const UDP_PORT: u16 = 5353;

/// The targets' HTTP server (`PORT IDENT PIDFILE`): answers every GET with
/// `IDENT CLIENT-ADDRESS`, so a test sees which target answered and whom
/// it saw; writes its pid to PIDFILE so a test can stop it.
const WHO_SERVER: &str = r#"
import http.server, os, sys
open(sys.argv[3], 'w').write(str(os.getpid()))
ident = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('%s %s' % (ident, self.client_address[0])).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()
"#;

/// The client (`URL N`): N GETs, each on a new connection; prints one JSON
/// line: answers per target, the client addresses the targets saw, and
/// the requests that failed.
const REQUESTS: &str = r#"
import collections, json, sys, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
counts = collections.Counter(); seen = set(); failed = 0; errors = collections.Counter()
for _ in range(n):
    try:
        ident, client = urllib.request.urlopen(url, timeout=3).read().decode().split()
        counts[ident] += 1; seen.add(client)
    except Exception as e:
        failed += 1; errors[repr(getattr(e, 'reason', e))] += 1
print(json.dumps({'counts': counts, 'clients': sorted(seen), 'failed': failed, 'errors': errors}))
"#;

/// Requests from fixed source ports, each port going once through each
/// front in turn (never twice to one front: the client's own socket of
/// the last connection may still be closing): prints `{"ok": N,
/// "errors": [...], "targets": {...}}`.
const REUSE: &str = r#"
import collections, json, socket, sys
fronts, port, n = sys.argv[1].split(','), int(sys.argv[2]), int(sys.argv[3])
CRLF = bytes([13, 10])
ok = 0; errors = []; targets = collections.Counter()
for i in range(n):
    front = fronts[i % len(fronts)]
    src = 41000 + i // len(fronts)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(3)
    try:
        s.bind(('', src)); s.connect((front, port))
        s.sendall(b'GET / HTTP/1.0' + CRLF + CRLF)
        data = b''
        while True:
            chunk = s.recv(4096)
            if not chunk: break
            data += chunk
        targets[data.split(CRLF + CRLF, 1)[-1].split()[0].decode()] += 1; ok += 1
    except Exception as e:
        errors.append('%s from %d via %s' % (repr(e), src, front))
    finally:
        s.close()
print(json.dumps({'ok': ok, 'errors': errors, 'targets': targets}))
"#;

/// The VPC, its load balancer and its instances.
struct Net {
    vpc: String,
    lb_arn: String,
    lb_id: String,
    web_tg: String,
    /// The load balancer's address per AZ.
    fronts: BTreeMap<String, String>,
    /// (instance, AZ): t1 and t2 in us-east-1a, t3 in us-east-1b.
    targets: Vec<(Instance, String)>,
    client: Instance,
}

/// `aws elbv2 describe-target-health`: each target's (state, reason).
fn target_health(lab: &Lab, tg: &str) -> BTreeMap<String, (String, String)> {
    let v = lab.elbv2(&["describe-target-health", "--target-group-arn", tg]);
    v["TargetHealthDescriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["Target"]["Id"].as_str().unwrap().to_owned(),
                (
                    d["TargetHealth"]["State"].as_str().unwrap_or("").to_owned(),
                    d["TargetHealth"]["Reason"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ),
            )
        })
        .collect()
}

/// Waits (as [`eventually`] does) for load balancer `arn` to be `active`;
/// its Availability Zones (with their addresses) as it is then described.
fn wait_active(lab: &Lab, arn: &str, what: &str) -> Vec<Value> {
    let mut zones = Vec::new();
    eventually(what, true, || {
        let v = lab.elbv2(&["describe-load-balancers", "--load-balancer-arns", arn]);
        let lb = &v["LoadBalancers"][0];
        zones = lb["AvailabilityZones"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        lb["State"]["Code"] == "active"
    });
    zones
}

/// Waits up to `within` for every target of `tg` in `ids` to be in `state`;
/// how long it took.
fn wait_health(lab: &Lab, tg: &str, ids: &[&str], state: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let h = target_health(lab, tg);
        if ids
            .iter()
            .all(|id| h.get(*id).is_some_and(|(s, _)| s == state))
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "targets {ids:?} not {state} within {within:?}: {h:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn set_lb_attribute(lab: &Lab, lb: &str, key: &str, value: &str) {
    let attr = format!("Key={key},Value={value}");
    lab.elbv2(&[
        "modify-load-balancer-attributes",
        "--load-balancer-arn",
        lb,
        "--attributes",
        &attr,
    ]);
}

/// Starts the who-server on `port` in `target`; its pid file is returned.
fn who_server(lab: &mut Lab, target: &Instance, port: u16) -> std::path::PathBuf {
    let pidfile = lab.dir.path().join(format!("who-{}-{port}.pid", target.id));
    let _ = std::fs::remove_file(&pidfile);
    let (port_s, pid_s) = (port.to_string(), pidfile.to_str().unwrap().to_owned());
    lab.spawn_in(
        target,
        &["python3", "-c", WHO_SERVER, &port_s, &target.id, &pid_s],
    );
    lab.wait_listening(&["exec", &target.id, "--"], port);
    pidfile
}

/// Runs REQUESTS in the client: (answers per target, addresses seen, failures).
fn requests(net: &Net, front: &str, n: usize) -> (BTreeMap<String, u64>, Vec<String>, u64) {
    let url = format!("http://{front}:{WEB_PORT}/");
    let out = exec(
        &net.client.id,
        &["python3", "-c", REQUESTS, &url, &n.to_string()],
    );
    assert!(out.status.success(), "requests: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    if v["failed"] != 0 {
        eprintln!("nlb: requests to {front} failed: {}", v["errors"]);
    }
    let counts = v["counts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    let clients = v["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (counts, clients, v["failed"].as_u64().unwrap())
}

/// The VPC of two AZs, the three targets with their servers, the client
/// and the internal load balancer with its TCP:80 listener, active and
/// with every target healthy.
fn build(lab: &mut Lab) -> Net {
    let vpc = lab.vpc(VPC_CIDR);
    let sa = lab.subnet(&vpc, "10.40.1.0/24", "us-east-1a", false);
    let sb = lab.subnet(&vpc, "10.40.2.0/24", "us-east-1b", false);
    let web = lab.group(&vpc, "web", &[]);
    // spec 9.3: targets must let the clients (their addresses are kept)
    // and the load balancer's health checks (from its addresses) in.
    for (proto, port) in [
        ("tcp", WEB_PORT.to_string()),
        ("tcp", STREAM_PORT.to_string()),
        ("udp", UDP_PORT.to_string()),
    ] {
        lab.allow(&web, proto, &port, VPC_CIDR);
    }
    let t1 = lab.instance(&sa, &web, Some("10.40.1.11"));
    let t2 = lab.instance(&sa, &web, Some("10.40.1.12"));
    let t3 = lab.instance(&sb, &web, Some("10.40.2.13"));
    let client = lab.instance(&sa, &web, Some("10.40.1.50"));
    let targets = vec![
        (t1, "us-east-1a".to_owned()),
        (t2, "us-east-1a".to_owned()),
        (t3, "us-east-1b".to_owned()),
    ];
    for (t, _) in &targets {
        who_server(lab, t, WEB_PORT);
    }

    let web_tg = lab.nlb_target_group(&vpc, "web", "TCP", WEB_PORT, None);
    let ids: Vec<&str> = targets.iter().map(|(t, _)| t.id.as_str()).collect();
    lab.register_targets(&web_tg, &ids);
    let v = lab.elbv2(&[
        "create-load-balancer",
        "--name",
        "web",
        "--type",
        "network",
        "--scheme",
        "internal",
        "--subnets",
        &sa,
        &sb,
    ]);
    let lb = &v["LoadBalancers"][0];
    let lb_arn = lb["LoadBalancerArn"].as_str().unwrap().to_owned();
    let lb_id = lb_arn.rsplit('/').next().unwrap().to_owned();
    lab.listener(&lb_arn, "TCP", WEB_PORT, &web_tg);

    // Its ENIs, as AWS describes them.
    let enis = lab.ec2(&[
        "describe-network-interfaces",
        "--filters",
        &format!("Name=description,Values=ELB net/web/{lb_id}"),
    ]);
    assert_eq!(
        enis["NetworkInterfaces"].as_array().map_or(0, Vec::len),
        2,
        "one requester-managed ENI per AZ: {enis}"
    );

    let started = Instant::now();
    let fronts: BTreeMap<String, String> =
        wait_active(lab, &lb_arn, "the load balancer to be active")
            .iter()
            .filter_map(|z| {
                let ip = z["LoadBalancerAddresses"][0]["PrivateIPv4Address"].as_str()?;
                Some((z["ZoneName"].as_str()?.to_owned(), ip.to_owned()))
            })
            .collect();
    eprintln!(
        "nlb: active {} ms after creation; addresses {fronts:?}",
        started.elapsed().as_millis()
    );
    assert_eq!(fronts.len(), 2, "{fronts:?}");
    let took = wait_health(lab, &web_tg, &ids, "healthy", Duration::from_secs(60));
    eprintln!(
        "nlb: every target healthy {} ms after the listener",
        took.as_millis()
    );
    Net {
        vpc,
        lb_arn,
        lb_id,
        web_tg,
        fronts,
        targets,
        client,
    }
}

#[test]
fn network_load_balancer_in_a_lab() {
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    let net = build(&mut lab);
    spread_and_client_addresses(&lab, &net);
    one_port_through_both_fronts(&net);
    cross_zone_off(&lab, &net);
    health_checks_follow_a_stopped_server(&mut lab, &net);
    udp_listener(&mut lab, &net);
    internet_facing(&mut lab, &net);
    streams(&mut lab, &net);
}

/// An internet-facing load balancer serves the lab's outside: its public
/// address in each AZ reaches the targets (which see the outside client's
/// own address), and the answers come back from that public address.
fn internet_facing(lab: &mut Lab, net: &Net) {
    lab.igw(&net.vpc);
    let web = lab.group(&net.vpc, "web-public", &[]);
    lab.allow(&web, "tcp", &WEB_PORT.to_string(), "0.0.0.0/0");
    for (t, _) in &net.targets {
        let groups = lab.ec2(&["describe-instances", "--instance-ids", &t.id]);
        let eni =
            groups["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
                .as_str()
                .unwrap()
                .to_owned();
        let mut ids: Vec<String> = groups["Reservations"][0]["Instances"][0]["SecurityGroups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["GroupId"].as_str().unwrap().to_owned())
            .collect();
        ids.push(web.clone());
        let mut args = vec![
            "modify-network-interface-attribute",
            "--network-interface-id",
            eni.as_str(),
            "--groups",
        ];
        args.extend(ids.iter().map(String::as_str));
        lab.ec2(&args);
    }
    let subnets: Vec<String> = lab.ec2(&[
        "describe-subnets",
        "--filters",
        &format!("Name=vpc-id,Values={}", net.vpc),
    ])["Subnets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["SubnetId"].as_str().unwrap().to_owned())
        .collect();
    let mut args = vec![
        "create-load-balancer",
        "--name",
        "public",
        "--type",
        "network",
        "--scheme",
        "internet-facing",
        "--subnets",
    ];
    args.extend(subnets.iter().map(String::as_str));
    let v = lab.elbv2(&args);
    let arn = v["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    // A target group serves one load balancer: the public one gets its own.
    let tg = lab.nlb_target_group(&net.vpc, "web-public", "TCP", WEB_PORT, None);
    let ids: Vec<&str> = net.targets.iter().map(|(t, _)| t.id.as_str()).collect();
    lab.register_targets(&tg, &ids);
    lab.listener(&arn, "TCP", WEB_PORT, &tg);
    let public: Vec<String> =
        wait_active(lab, &arn, "the internet-facing load balancer to be active")
            .iter()
            .filter_map(|z| {
                Some(
                    z["LoadBalancerAddresses"][0]["IpAddress"]
                        .as_str()?
                        .to_owned(),
                )
            })
            .collect();
    assert_eq!(public.len(), 2, "a public address per AZ: {public:?}");
    for ip in &public {
        let mut answer = String::new();
        eventually(&format!("the outside to reach {ip}"), true, || {
            let url = format!("http://{ip}:{WEB_PORT}/");
            let out = lab
                .outside_cmd(&["curl", "-sf", "--max-time", "3", &url])
                .output()
                .unwrap();
            answer = String::from_utf8_lossy(&out.stdout).into_owned();
            out.status.success()
        });
        let (ident, client) = answer.split_once(' ').unwrap();
        assert!(net.targets.iter().any(|(t, _)| t.id == ident), "{answer:?}");
        assert_eq!(client, lab.outside_ip, "the target saw {client}");
        eprintln!("nlb: internet-facing {ip}: answered by {ident}, which saw {client}");
    }
}

/// Issue 17: 600 requests with cross-zone on reach all three targets,
/// each within ±25 % of its share, and each target sees the client's own
/// address (spec 9.3, instance targets).
fn spread_and_client_addresses(lab: &Lab, net: &Net) {
    set_lb_attribute(
        lab,
        &net.lb_arn,
        "load_balancing.cross_zone.enabled",
        "true",
    );
    std::thread::sleep(Duration::from_secs(2));
    let front = &net.fronts["us-east-1a"];
    let (counts, clients, failed) = requests(net, front, 600);
    eprintln!("nlb: 600 requests, cross-zone on: {counts:?}, {failed} failed");
    assert_eq!(failed, 0, "{counts:?}");
    assert_eq!(
        clients,
        vec![net.client.ip.clone()],
        "targets saw {clients:?}"
    );
    for (t, _) in &net.targets {
        let n = counts.get(&t.id).copied().unwrap_or(0);
        assert!(
            (150..=250).contains(&n),
            "{} got {n} of 600 (share 200 ± 25 %): {counts:?}",
            t.id
        );
    }
}

/// A client that reuses its source ports through both of the load
/// balancer's addresses, its own address kept (cross-zone on, so both
/// fronts reach every target): a target often still holds the last
/// connection of that port, from the other front, in TIME-WAIT. Each new
/// connection must go back through the node it came through (the target's
/// host opens a new flow for it, with its own return path), so none of
/// them may fail.
fn one_port_through_both_fronts(net: &Net) {
    let fronts: Vec<&str> = net.fronts.values().map(String::as_str).collect();
    let out = exec(
        &net.client.id,
        &[
            "python3",
            "-c",
            REUSE,
            &fronts.join(","),
            &WEB_PORT.to_string(),
            "24",
        ],
    );
    assert!(out.status.success(), "reuse: {out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("nlb: 12 source ports, each through both fronts in turn: {v}");
    assert_eq!(v["ok"], 24, "{v}");
}

/// Spec 9.5: with cross-zone off, each AZ's address serves only the
/// targets in its AZ.
fn cross_zone_off(lab: &Lab, net: &Net) {
    set_lb_attribute(
        lab,
        &net.lb_arn,
        "load_balancing.cross_zone.enabled",
        "false",
    );
    for (az, front) in &net.fronts {
        let mut counts = BTreeMap::new();
        eventually(&format!("{az}'s address to serve only {az}"), true, || {
            counts = requests(net, front, 30).0;
            counts
                .keys()
                .all(|id| net.targets.iter().any(|(t, taz)| &t.id == id && taz == az))
        });
        eprintln!("nlb: cross-zone off, {az}'s address {front}: {counts:?}");
        // The client reaches the same targets through both addresses with
        // its own address kept, so a port it reuses may meet a target that
        // still holds the old connection in TIME-WAIT: that target's
        // challenge ACK must reach the client (whose RST clears it), or the
        // connection would time out.
        let (counts, _, failed) = requests(net, front, 60);
        assert_eq!(failed, 0, "{az}'s address: {counts:?}");
    }
    set_lb_attribute(
        lab,
        &net.lb_arn,
        "load_balancing.cross_zone.enabled",
        "true",
    );
}

/// Spec 9.4: a target whose server stops is `unhealthy` with
/// `Target.FailedHealthChecks` within interval × unhealthy threshold plus
/// one interval (15 s here) and gets no new flows; back, it is `healthy`.
fn health_checks_follow_a_stopped_server(lab: &mut Lab, net: &Net) {
    let (victim, _) = &net.targets[0];
    let pidfile = lab
        .dir
        .path()
        .join(format!("who-{}-{WEB_PORT}.pid", victim.id));
    let pid: u64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal(pid, "-TERM");
    let stopped = Instant::now();
    let took = wait_health(
        lab,
        &net.web_tg,
        &[&victim.id],
        "unhealthy",
        Duration::from_secs(16),
    );
    let (_, reason) = target_health(lab, &net.web_tg)[&victim.id].clone();
    eprintln!(
        "nlb: a stopped server was unhealthy ({reason}) after {} ms",
        took.as_millis()
    );
    assert_eq!(reason, "Target.FailedHealthChecks");
    // Every node of the shard checks on its own schedule: by the bound,
    // all of them send new flows elsewhere.
    let bound = Duration::from_secs(5 * 2 + 5);
    std::thread::sleep(bound.saturating_sub(stopped.elapsed()));
    let (counts, _, failed) = requests(net, &net.fronts["us-east-1a"], 60);
    assert_eq!(failed, 0, "{counts:?}");
    assert!(!counts.contains_key(&victim.id), "{counts:?}");

    who_server(lab, victim, WEB_PORT);
    let took = wait_health(
        lab,
        &net.web_tg,
        &[&victim.id],
        "healthy",
        Duration::from_secs(20),
    );
    eprintln!(
        "nlb: restarted, healthy again after {} ms",
        took.as_millis()
    );
}

/// A UDP listener: a UDP echo target behind it answers.
fn udp_listener(lab: &mut Lab, net: &Net) {
    let (t, _) = &net.targets[2];
    lab.spawn_in(
        t,
        &["python3", "-c", UDP_ECHO, "0.0.0.0", &UDP_PORT.to_string()],
    );
    lab.wait_listening_on(&["exec", &t.id, "--"], "udp", UDP_PORT);
    // Health checks over TCP on the web port: UDP has no handshake.
    let tg = lab.nlb_target_group(&net.vpc, "echo", "UDP", UDP_PORT, Some(WEB_PORT));
    lab.register_targets(&tg, &[&t.id]);
    lab.listener(&net.lb_arn, "UDP", UDP_PORT, &tg);
    wait_health(lab, &tg, &[&t.id], "healthy", Duration::from_secs(30));
    let front = &net.fronts["us-east-1b"];
    let mut answer = String::new();
    eventually(
        "the UDP echo to answer through the load balancer",
        true,
        || {
            let out = exec(
                &net.client.id,
                &["python3", "-c", UDP_CLIENT, front, &UDP_PORT.to_string()],
            );
            answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            out.status.success()
        },
    );
    // The echo saw the client's own address (UDP always keeps it).
    assert!(
        answer.starts_with(&format!("{} ", net.client.ip)),
        "{answer:?}"
    );
}

/// Streams through the load balancer: a node of its shard is SIGKILLed
/// under 100 connections (none may be reset), then a deregistered target's
/// streams go on until the deregistration delay ends.
fn streams(lab: &mut Lab, net: &Net) {
    let stream_tg = lab.nlb_target_group(&net.vpc, "stream", "TCP", STREAM_PORT, None);
    for (t, _) in &net.targets {
        lab.spawn_in(
            t,
            &[
                "python3",
                "-c",
                STREAM_SERVER,
                &STREAM_PORT.to_string(),
                "0.1",
            ],
        );
        lab.wait_listening(&["exec", &t.id, "--"], STREAM_PORT);
    }
    let ids: Vec<&str> = net.targets.iter().map(|(t, _)| t.id.as_str()).collect();
    lab.register_targets(&stream_tg, &ids);
    lab.listener(&net.lb_arn, "TCP", STREAM_PORT, &stream_tg);
    wait_health(lab, &stream_tg, &ids, "healthy", Duration::from_secs(30));
    let front = net.fronts["us-east-1a"].clone();

    // Failover: 100 connections, 30 s; the node of place 0 dies at 3 s.
    let mut clients = Clients::start(
        &[&net.client],
        STREAM_CLIENT,
        &[&front, &STREAM_PORT.to_string(), "100", "30"],
    );
    clients.read_until("connected");
    std::thread::sleep(Duration::from_secs(3));
    let shard = lab.status()["load_balancers"][&net.lb_id].clone();
    let nodes = shard["nodes"].as_array().cloned().unwrap_or_default();
    assert!(nodes.len() >= 2, "the load balancer's shard: {shard}");
    let victim = nodes
        .iter()
        .find(|n| n["place"] == 0)
        .unwrap_or(&nodes[0])
        .clone();
    eprintln!("nlb: killing {} under 100 streams", victim["node"]);
    signal(victim["pid"].as_u64().unwrap(), "-KILL");
    let report = clients.next_json().remove(0);
    eprintln!("nlb: failover under 100 streams: {report}");
    assert_eq!(report["resets"], 0, "{report}");
    assert_eq!(report["closes"], 0, "{report}");
    assert_eq!(report["alive"], 100, "{report}");
    assert_eq!(report["stalled_at_end"], 0, "{report}");
    drop(clients);
    lab.restart(victim["node"].as_str().unwrap(), false);

    // Draining (spec 9.4): an 8 s delay; t1 is deregistered 3 s in. Its
    // streams go on until the delay ends, then stop; the others go on.
    lab.elbv2(&[
        "modify-target-group-attributes",
        "--target-group-arn",
        &stream_tg,
        "--attributes",
        "Key=deregistration_delay.timeout_seconds,Value=8",
    ]);
    let mut clients = Clients::start(
        &[&net.client],
        STREAM_CLIENT,
        &[&front, &STREAM_PORT.to_string(), "12", "20"],
    );
    clients.read_until("connected");
    std::thread::sleep(Duration::from_secs(3));
    let t1 = &net.targets[0].0.id;
    lab.elbv2(&[
        "deregister-targets",
        "--target-group-arn",
        &stream_tg,
        "--targets",
        &format!("Id={t1}"),
    ]);
    let (state, reason) = target_health(lab, &stream_tg)[t1].clone();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("draining", "Target.DeregistrationInProgress")
    );
    let report = clients.next_json().remove(0);
    eprintln!("nlb: draining, 12 streams, t1 deregistered at 3 s with an 8 s delay: {report}");
    assert_eq!(report["resets"], 0, "{report}");
    let stalled = report["stalled_at_end"].as_u64().unwrap();
    assert!(
        (1..12).contains(&stalled),
        "t1's streams (and only they) stop after the delay: {report}"
    );
    let paused_at = report["max_pause_at_s"].as_f64().unwrap();
    assert!(
        paused_at >= 3.0 + 8.0 - 1.0,
        "a drained stream stopped at {paused_at} s, before the delay ended: {report}"
    );
}
