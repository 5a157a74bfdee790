//! The edge in a lab (issue 15): `openvpc lab up` builds an outside world
//! (a namespace with BIRD as the internet's router and a test server
//! address) and two edge nodes that announce the public pool to it over
//! BGP. The aws CLI makes VPCs with internet gateways, public and Elastic
//! IPs; real programs in the instances and in the outside namespace
//! (curl, python servers, tshark) check what crosses the edge.
//!
//! Needs root (namespaces, TAP and TUN devices), the aws CLI from
//! scripts/test's venv and BIRD; without them the tests say why and skip
//! (CI runs them as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lab::{
    AclRule, ECHO_PORT, Instance, Lab, STREAM_CLIENT, STREAM_SERVER, capture, decode, eventually,
    exec, parse_number, signal,
};

/// What only the edge's tests ask of a lab.
impl Lab {
    /// The VNI an agent was given for `instance`'s VPC, from the snapshot
    /// of whichever host runs it.
    fn vni_of(&self, instance: &Instance) -> u64 {
        for host in ["h1", "h2"] {
            let path = self.dir.path().join(format!("hosts/{host}/snapshot.json"));
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let snapshot: Value = serde_json::from_slice(&text).unwrap();
            let found = snapshot["enis"].as_array().and_then(|enis| {
                enis.iter()
                    .find(|e| e["instance_id"] == instance.id.as_str())
                    .and_then(|e| e["vni"].as_u64())
            });
            if let Some(vni) = found {
                return vni;
            }
        }
        panic!("{} is in no host's snapshot", instance.id);
    }

    /// The underlay addresses of the edge nodes.
    fn edge_underlay_ips(&self) -> Vec<String> {
        self.lab_json()["plan"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["underlay_ip"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The next hops of the outside router's route to the public pool.
    fn pool_next_hops(&self) -> Vec<String> {
        let out = self
            .outside_cmd(&["ip", "-4", "route", "show", &self.public_pool])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let words: Vec<&str> = text.split_whitespace().collect();
        words
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_owned())
            .collect()
    }
}

#[test]
fn an_instance_with_a_public_ip_reaches_the_outside_and_is_reached_from_it() {
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    let (vpc, igw, table) = lab.internet_vpc("10.0.0.0/16");
    let subnet = lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", true);
    let web = lab.group(&vpc, "web", &[8080]);
    let a = lab.instance(&subnet, &web, None);
    let public = lab
        .public_ip(&a)
        .expect("MapPublicIpOnLaunch gives a public IP");
    assert!(
        public.starts_with("203.0.113."),
        "{public} is not from the lab's pool {}",
        lab.public_pool
    );

    // Issue 15: an igw route is `active` while the gateway is attached
    // and an edge serves the region (both edges do).
    let v = lab.ec2(&["describe-route-tables", "--route-table-ids", &table]);
    let route = v["RouteTables"][0]["Routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["GatewayId"] == igw.as_str())
        .cloned()
        .unwrap();
    assert_eq!(route["State"], "active", "{route}");

    // Spec 5.1: the instance's eth0 holds only its private address; the
    // public one lives at the edge.
    let out = exec(&a.id, &["ip", "-4", "-o", "addr", "show"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let addrs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .collect();
    assert_eq!(
        addrs,
        ["127.0.0.1/8", &format!("{}/24", a.ip)],
        "ip addr in the instance: {text}"
    );

    // Outbound: the outside's server sees the public address as the source.
    lab.echo_server();
    let mut seen = None;
    eventually("the instance to reach the outside", true, || {
        seen = lab.curl_outside_from(&a);
        seen.is_some()
    });
    assert_eq!(seen.as_deref(), Some(public.as_str()));

    // Inbound: a port the group allows answers; another one, with a
    // server listening, times out (the SYN is dropped, never refused).
    lab.http_server(&a, 8080);
    lab.http_server(&a, 8081);
    assert_eq!(lab.curl_from_outside(&public, 8080, "3"), Ok(a.id.clone()));
    assert_eq!(
        lab.curl_from_outside(&public, 8081, "3"),
        Err(28),
        "8081 is not allowed by the group: curl must time out"
    );

    // The uplinks carry plain IPv4 between public addresses; the underlay
    // carries the instance's traffic to an edge as Geneve with the VPC's VNI.
    check_captures(&lab, &a, &public);

    // A NACL deny on the subnet blocks what the group allows (spec 4.1):
    // rule 90 denies 8080, rule 100 allows everything else both ways.
    let acl = lab.network_acl(
        &vpc,
        &[
            AclRule {
                number: 90,
                egress: false,
                protocol: "tcp",
                cidr: "0.0.0.0/0",
                ports: Some("From=8080,To=8080"),
                action: "deny",
            },
            AclRule::allow_all(false),
            AclRule::allow_all(true),
        ],
    );
    lab.swap_network_acl(&subnet, &acl);
    eventually("8080 from the outside through deny 90", false, || {
        lab.curl_from_outside(&public, 8080, "2").is_ok()
    });
    assert_eq!(
        lab.curl_from_outside(&public, 8080, "3"),
        Err(28),
        "the NACL drops the SYN: curl must time out"
    );
    // The instance still reaches the outside: rule 90 is about 8080 only.
    assert_eq!(lab.curl_outside_from(&a).as_deref(), Some(public.as_str()));
}

/// Captures on both edges' uplinks and on the underlay bridge while the
/// instance curls the outside, and has tshark decode them.
fn check_captures(lab: &Lab, a: &Instance, public: &str) {
    let mut captures = Vec::new();
    let mut uplinks = Vec::new();
    for edge in ["e1", "e2"] {
        let ns = lab.netns_of("edges", "edge_id", edge);
        let pcap = lab.dir.path().join(format!("uplink-{edge}.pcap"));
        // Everything but the BGP session: whatever carries the instance's
        // traffic on the uplink shows, Geneve included.
        captures.push(capture(&ns, "up0", "ip and not tcp port 179", 6, &pcap));
        uplinks.push(pcap);
    }
    let ul = lab.lab_json()["plan"]["underlay_netns"]
        .as_str()
        .unwrap()
        .to_owned();
    let underlay = lab.dir.path().join("underlay.pcap");
    captures.push(capture(&ul, "br0", "udp port 6081", 6, &underlay));
    std::thread::sleep(Duration::from_secs(2));
    // Several connections, so the flow hash likely uses both edges.
    for _ in 0..4 {
        assert_eq!(lab.curl_outside_from(a).as_deref(), Some(public));
    }
    for mut c in captures {
        c.wait().unwrap();
    }

    let mut plain = Vec::new();
    for pcap in &uplinks {
        let lines = decode(
            pcap,
            "ip",
            &["ip.src", "ip.dst", "udp.dstport", "geneve.vni"],
        );
        plain.extend(lines);
    }
    assert!(!plain.is_empty(), "tshark saw nothing on the uplinks");
    let to_outside = format!("{public}\t{}\t\t", lab.outside_ip);
    let from_outside = format!("{}\t{public}\t\t", lab.outside_ip);
    assert!(
        plain.iter().any(|l| l == &to_outside) && plain.iter().any(|l| l == &from_outside),
        "the uplinks carry the public address both ways: {plain:?}"
    );
    assert!(
        plain.iter().all(|l| *l == to_outside || *l == from_outside),
        "only plain IPv4 between {public} and {} on the uplinks (no Geneve, no private address): {plain:?}",
        lab.outside_ip
    );

    let geneve = decode(
        &underlay,
        &format!("geneve && tcp.port == {ECHO_PORT}"),
        &["geneve.vni", "ip.src", "ip.dst"],
    );
    let edges = lab.edge_underlay_ips();
    let outbound: Vec<&String> = geneve
        .iter()
        .filter(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let dst: Vec<&str> = f.get(2).unwrap_or(&"").split(',').collect();
            let src: Vec<&str> = f.get(1).unwrap_or(&"").split(',').collect();
            dst.len() == 2
                && edges.iter().any(|e| e == dst[0])
                && dst[1] == lab.outside_ip
                && src.get(1) == Some(&a.ip.as_str())
        })
        .collect();
    assert!(
        !outbound.is_empty(),
        "tshark saw no Geneve from {} to {} carried to an edge ({edges:?}): {geneve:?}",
        a.ip,
        lab.outside_ip
    );
    let vni = lab.vni_of(a);
    let vnis: Vec<&str> = geneve.iter().filter_map(|l| l.split('\t').next()).collect();
    assert!(
        vnis.iter().all(|v| parse_number(v) == Some(vni)),
        "tshark's VNIs {vnis:?}, the VPC's {vni}"
    );
}

#[test]
fn without_a_public_ip_or_an_igw_route_nothing_leaves() {
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    let (vpc, _igw, _table) = lab.internet_vpc("10.0.0.0/16");
    let group = lab.group(&vpc, "any", &[]);
    lab.echo_server();

    // Routed to the igw, but no public IP (the subnet does not map one).
    let private = lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", false);
    let p = lab.instance(&private, &group, None);
    assert_eq!(lab.public_ip(&p), None);
    let before = lab.host_drops("no_public_ip");
    assert_eq!(
        lab.curl_outside_from(&p),
        None,
        "an instance without a public IP reached the outside"
    );
    eventually("the hosts to count no_public_ip drops", true, || {
        lab.host_drops("no_public_ip") > before
    });

    // A public IP, but its subnet's route table has no igw route.
    let isolated = lab.subnet(&vpc, "10.0.2.0/24", "us-east-1b", true);
    let table = lab.route_table(&vpc, &[&isolated]);
    let q = lab.instance(&isolated, &group, None);
    assert!(lab.public_ip(&q).is_some(), "MapPublicIpOnLaunch");
    let before = lab.host_drops("no_route");
    assert_eq!(
        lab.curl_outside_from(&q),
        None,
        "an instance without an igw route reached the outside"
    );
    eventually("the hosts to count no_route drops", true, || {
        lab.host_drops("no_route") > before
    });

    // The same instance with the route added: it leaves.
    let igw = lab.ec2(&[
        "describe-internet-gateways",
        "--filters",
        &format!("Name=attachment.vpc-id,Values={vpc}"),
    ])["InternetGateways"][0]["InternetGatewayId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.default_route(&table, &igw);
    let public = lab.public_ip(&q).unwrap();
    eventually("the instance to leave once routed", true, || {
        lab.curl_outside_from(&q).as_deref() == Some(public.as_str())
    });
}

#[test]
fn elastic_ips_follow_reassociation_and_overlapping_vpcs_stay_apart() {
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    lab.echo_server();

    // Two VPCs with the same CIDR, and an instance at the same private
    // address in each: each gets its own public IP and sees only its own
    // traffic.
    let mut pairs = Vec::new();
    let mut blue = None;
    for name in ["blue", "green"] {
        let (vpc, _, _) = lab.internet_vpc("10.0.0.0/16");
        let subnet = lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", true);
        let group = lab.group(&vpc, name, &[8080]);
        let inst = lab.instance(&subnet, &group, Some("10.0.1.10"));
        lab.http_server(&inst, 8080);
        let public = lab.public_ip(&inst).unwrap();
        if blue.is_none() {
            blue = Some((vpc, group));
        }
        pairs.push((inst, public));
    }
    assert_ne!(pairs[0].1, pairs[1].1, "the same public IP twice");
    for (inst, public) in &pairs {
        let mut seen = None;
        eventually("each instance to reach the outside", true, || {
            seen = lab.curl_outside_from(inst);
            seen.is_some()
        });
        assert_eq!(seen.as_deref(), Some(public.as_str()), "{}", inst.id);
        for _ in 0..3 {
            assert_eq!(
                lab.curl_from_outside(public, 8080, "3"),
                Ok(inst.id.clone()),
                "{public} reaches its own instance only"
            );
        }
    }

    // An Elastic IP on x1, then moved to x2 (spec 5.3: AllowReassociation);
    // traffic follows within 1 s of the call's answer.
    let (vpc, group) = blue.unwrap();
    let subnet = lab.subnet(&vpc, "10.0.2.0/24", "us-east-1b", false);
    let x1 = lab.instance(&subnet, &group, None);
    let x2 = lab.instance(&subnet, &group, None);
    lab.http_server(&x1, 8080);
    lab.http_server(&x2, 8080);
    let (eip, alloc) = lab.allocate_address();
    lab.ec2(&[
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &x1.id,
    ]);
    eventually("the EIP to reach x1", true, || {
        lab.curl_from_outside(&eip, 8080, "2") == Ok(x1.id.clone())
    });
    assert_eq!(lab.curl_outside_from(&x1).as_deref(), Some(eip.as_str()));

    let called = Instant::now();
    lab.ec2(&[
        "associate-address",
        "--allocation-id",
        &alloc,
        "--instance-id",
        &x2.id,
        "--allow-reassociation",
    ]);
    let answered = Instant::now();
    let followed = probe_until(&lab, &eip, 8080, &x2.id, Duration::from_secs(10));
    let since_answer = followed.map(|t| t.duration_since(answered));
    eprintln!(
        "EIP move: the call took {} ms; traffic reached the new instance {} ms after its answer",
        answered.duration_since(called).as_millis(),
        since_answer.map_or("(never)".to_owned(), |d| d.as_millis().to_string())
    );
    let since_answer = since_answer.expect("traffic to the EIP never reached x2");
    assert!(
        since_answer <= Duration::from_secs(1),
        "issue 15: reassociation takes effect within 1 s, took {since_answer:?}"
    );
    assert_eq!(lab.curl_outside_from(&x2).as_deref(), Some(eip.as_str()));
    assert_eq!(lab.public_ip(&x1), None, "x1 no longer holds the EIP");
    assert_eq!(
        lab.curl_outside_from(&x1),
        None,
        "x1 lost its only public address"
    );
}

/// Polls `http://ADDR:PORT/who` from the outside, from one Python
/// process (no process start per attempt), until `want` answers: when.
fn probe_until(lab: &Lab, addr: &str, port: u16, want: &str, limit: Duration) -> Option<Instant> {
    let script = format!(
        "import sys, time, urllib.request\n\
         end = time.monotonic() + {limit}\n\
         while time.monotonic() < end:\n\
         \x20   try:\n\
         \x20       body = urllib.request.urlopen('http://{addr}:{port}/who', timeout=0.1).read().decode()\n\
         \x20       if body == {want:?}:\n\
         \x20           print('ok', flush=True)\n\
         \x20           sys.exit(0)\n\
         \x20   except Exception:\n\
         \x20       pass\n\
         \x20   time.sleep(0.01)\n\
         sys.exit(1)\n",
        limit = limit.as_secs_f64()
    );
    let mut child = lab
        .outside_cmd(&["python3", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let at = Instant::now();
    let ok = child.wait().unwrap().success();
    (ok && line.trim() == "ok").then_some(at)
}

#[test]
fn killing_an_edge_keeps_streaming_connections() {
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    const PORT: u16 = 9000;
    let (vpc, _, _) = lab.internet_vpc("10.0.0.0/16");
    let group = lab.group(&vpc, "stream", &[PORT]);
    let mut targets = Vec::new();
    for (cidr, az) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let subnet = lab.subnet(&vpc, cidr, az, true);
        let inst = lab.instance(&subnet, &group, None);
        lab.spawn_in(&inst, &["python3", "-c", STREAM_SERVER, &PORT.to_string()]);
        lab.wait_listening(&["exec", &inst.id, "--"], PORT);
        let public = lab.public_ip(&inst).unwrap();
        eventually(
            "the instance to be reachable from the outside",
            true,
            || {
                lab.outside_cmd(&[
                    "python3",
                    "-c",
                    &format!(
                        "import socket; socket.create_connection(('{public}', {PORT}), timeout=1)"
                    ),
                ])
                .status()
                .unwrap()
                .success()
            },
        );
        targets.push(public);
    }
    // Both edges announce the pool: the outside has two paths.
    assert_eq!(lab.pool_next_hops().len(), 2, "{:?}", lab.pool_next_hops());

    const DURATION_S: u64 = 25;
    let mut client = lab
        .outside_cmd(&["python3", "-c", STREAM_CLIENT, &targets.join(",")])
        .args([PORT.to_string(), "50".into(), DURATION_S.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "connected", "the 50 connections did not open");
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));

    // SIGKILL e1 (no restart yet): its BGP session drops, the outside
    // router withdraws its path.
    let e1_pid = lab.pid_of("e1");
    let e1_uplink = lab.lab_json()["plan"]["edges"][0]["uplink_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let killed = Instant::now();
    signal(e1_pid, "-KILL");
    let killed_at = killed.duration_since(started);
    let mut withdrawn = None;
    while killed.elapsed() < Duration::from_secs(10) {
        if !lab.pool_next_hops().contains(&e1_uplink) {
            withdrawn = Some(killed.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "edge failover: e1 killed {} ms into the stream; its path withdrawn after {}",
        killed_at.as_millis(),
        withdrawn.map_or("(never, in 10 s)".to_owned(), |d| format!(
            "{} ms",
            d.as_millis()
        ))
    );
    // The lab's hold time is 3 s: a path outlives its edge at most that.
    let withdrawn = withdrawn.expect("the dead edge's path was never withdrawn");
    assert!(
        withdrawn <= Duration::from_millis(3_500),
        "withdrawn after {withdrawn:?}, beyond the 3 s hold time"
    );

    // Back after 10 s: flows return to it, statelessly too.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(killed.elapsed()));
    lab.restart("e1", false);
    let back = Instant::now();
    eventually("e1's path to come back", true, || {
        lab.pool_next_hops().contains(&e1_uplink)
    });
    eprintln!(
        "edge failover: e1 restarted {} ms into the stream, its path back after {} ms",
        back.duration_since(started).as_millis(),
        back.elapsed().as_millis()
    );

    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = client.wait();
    let report: Value = serde_json::from_str(line.trim())
        .unwrap_or_else(|e| panic!("the client's report {line:?}: {e}"));
    eprintln!(
        "edge failover over 50 streaming connections: {} resets, {} closed, {} errors, \
         longest pause {} ms ({} s into the stream), {} connections paused > 0.5 s; report {report}",
        report["resets"],
        report["closes"],
        report["errors"],
        report["max_pause_ms"],
        report["max_pause_at_s"],
        report["paused_over_500ms"]
    );
    // Issue 15: established connections survive, the translation being
    // stateless: no resets, and every connection still streams at the end.
    assert_eq!(report["resets"], 0, "{report}");
    assert_eq!(report["closes"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["alive"], 50, "{report}");
    assert_eq!(report["stalled_at_end"], 0, "{report}");

    // A killed edge's kernel closes its BGP session at once. An edge that
    // hangs (SIGSTOP) keeps it open: the outside router withdraws its path
    // when the 3 s hold time runs out.
    let e2 = lab.pid_of("e2");
    let e2_uplink = lab.lab_json()["plan"]["edges"][1]["uplink_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    signal(e2, "-STOP");
    let stopped = Instant::now();
    let mut withdrawn = None;
    while stopped.elapsed() < Duration::from_secs(10) {
        if !lab.pool_next_hops().contains(&e2_uplink) {
            withdrawn = Some(stopped.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(e2, "-CONT");
    eprintln!(
        "edge failover: e2 stopped (SIGSTOP); its path withdrawn after {} (hold time 3 s)",
        withdrawn.map_or("(never, in 10 s)".to_owned(), |d| format!(
            "{} ms",
            d.as_millis()
        ))
    );
    let withdrawn = withdrawn.expect("the hung edge's path was never withdrawn");
    assert!(
        withdrawn <= Duration::from_millis(3_500),
        "withdrawn after {withdrawn:?}, beyond the 3 s hold time"
    );
    let resumed = Instant::now();
    while !lab.pool_next_hops().contains(&e2_uplink) {
        assert!(
            resumed.elapsed() < Duration::from_secs(20),
            "e2 resumed but did not announce the pool again within 20 s; logs in {:?}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "edge failover: e2 resumed (SIGCONT); its path back after {} ms",
        resumed.elapsed().as_millis()
    );
}
