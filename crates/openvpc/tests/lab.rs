//! Real instances talking through the VPC (issue 6): `openvpc lab up`
//! builds 3 hosts in 2 AZs as namespaces, the aws CLI creates VPCs, subnets,
//! groups and instances, and real programs inside the instances (ping,
//! curl, python's http.server, a UDP echo) check what gets through.
//!
//! Needs root (namespaces, TAP devices) and the aws CLI from scripts/test's
//! venv; without either the tests say why and skip (CI runs them as root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use common::lab::{Instance, Lab, capture, decode, eventually, exec, parse_number, signal};

/// The lab every test here uses (3 hosts in 2 AZs) with one VPC of `cidr`
/// and a subnet in each AZ; `None` (said why) where tests cannot run.
fn lab_with_vpc(cidr: &str) -> Option<(Lab, String, String, String)> {
    let lab = Lab::up_with(&["--hosts", "3", "--azs", "2"])?;
    let (vpc, sub_a, sub_b) = vpc_with_subnets(&lab, cidr);
    Some((lab, vpc, sub_a, sub_b))
}

/// A VPC with 10.0.1.0/24 in us-east-1a and 10.0.2.0/24 in us-east-1b (the
/// CIDR must hold them).
fn vpc_with_subnets(lab: &Lab, cidr: &str) -> (String, String, String) {
    let vpc = lab.vpc(cidr);
    let sub_a = lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", false);
    let sub_b = lab.subnet(&vpc, "10.0.2.0/24", "us-east-1b", false);
    (vpc, sub_a, sub_b)
}

/// Starts a UDP echo on `port` inside `instance`; every datagram it gets is
/// appended to the returned file and echoed back.
fn udp_echo(lab: &mut Lab, instance: &Instance, port: u16) -> PathBuf {
    let log = lab.dir.path().join(format!("udp-{}-{port}", instance.id));
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('0.0.0.0', {port}))\n\
         while True:\n\
         \x20   data, peer = s.recvfrom(2048)\n\
         \x20   open({log:?}, 'a').write(peer[0] + ' ' + data.decode(errors='replace') + '\\n')\n\
         \x20   s.sendto(data, peer)\n",
        log = log.display().to_string()
    );
    lab.spawn_in(instance, &["python3", "-c", &script]);
    lab.wait_listening_on(&["exec", &instance.id, "--"], "udp", port);
    log
}

fn ping(from: &Instance, to: &str) -> bool {
    exec(&from.id, &["ping", "-c", "2", "-W", "2", "-i", "0.3", to])
        .status
        .success()
}

/// `curl http://to:port/who`: the answering instance's ID, or `None`.
fn curl(from: &Instance, to: &str, port: u16) -> Option<String> {
    let url = format!("http://{to}:{port}/who");
    let out = exec(&from.id, &["curl", "-sf", "--max-time", "3", &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Sends one UDP datagram and waits up to 2 s for the echo.
fn udp(from: &Instance, to: &str, port: u16, bind: Option<&str>) -> bool {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(({bind:?}, 0))\n\
         s.settimeout(2)\n\
         s.sendto(b'hello', ({to:?}, {port}))\n\
         try:\n\
         \x20   s.recvfrom(2048)\n\
         except socket.timeout:\n\
         \x20   sys.exit(1)\n",
        bind = bind.unwrap_or("0.0.0.0")
    );
    exec(&from.id, &["python3", "-c", &script]).status.success()
}

fn zone_of(lab: &Lab, instance: &Instance) -> String {
    let v = lab.ec2(&["describe-instances", "--instance-ids", &instance.id]);
    v["Reservations"][0]["Instances"][0]["Placement"]["AvailabilityZone"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn instances_talk_across_hosts_subnets_and_groups() {
    let Some((mut lab, vpc, sub_a, sub_b)) = lab_with_vpc("10.0.0.0/16") else {
        return;
    };
    let web = lab.group(&vpc, "web", &[]);
    lab.allow(&web, "tcp", "8080", "10.0.0.0/16");
    lab.allow(&web, "udp", "9000", "10.0.0.0/16");
    lab.allow(&web, "icmp", "-1", "10.0.0.0/16");
    let client = lab.group(&vpc, "client", &[]);
    let db = lab.group(&vpc, "db", &[]);
    // spec 3.1: a rule naming a group admits that group's members.
    lab.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &db,
        "--protocol",
        "tcp",
        "--port",
        "5432",
        "--source-group",
        &client,
    ]);

    // us-east-1a has h1 and h3, us-east-1b has h2.
    let a1 = lab.instance_in(&sub_a, &[&web], None);
    let b1 = lab.instance_in(&sub_b, &[&web, &db], None);
    let a2 = lab.instance_in(&sub_a, &[&web, &client], None);
    let a3 = lab.instance_in(&sub_a, &[&web], None);
    assert_eq!(zone_of(&lab, &a1), "us-east-1a");
    assert_eq!(zone_of(&lab, &b1), "us-east-1b");

    // ICMP across hosts and subnets, and between instances of one host
    // (a1 and a3 land on the same host: fewest instances, ties by host ID).
    assert!(ping(&a1, &b1.ip), "a1 -> b1 ping");
    assert!(ping(&b1, &a2.ip), "b1 -> a2 ping");
    assert!(ping(&a1, &a3.ip), "a1 -> a3 ping (same host)");

    // TCP: curl to an HTTP server in the other instance; the reply comes
    // back although no rule admits it (spec 3.2: stateful).
    lab.http_server(&b1, 8080);
    assert_eq!(curl(&a1, &b1.ip, 8080).as_deref(), Some(b1.id.as_str()));
    assert_eq!(curl(&a3, &b1.ip, 8080).as_deref(), Some(b1.id.as_str()));

    // UDP there and back.
    let received = udp_echo(&mut lab, &b1, 9000);
    assert!(udp(&a1, &b1.ip, 9000, None), "UDP echo a1 -> b1");
    let log = std::fs::read_to_string(&received).unwrap();
    assert!(log.contains(&a1.ip), "b1 saw a1's address: {log}");

    // Only allowed ports connect.
    lab.http_server(&b1, 8081);
    assert_eq!(curl(&a1, &b1.ip, 8081), None, "8081 is not allowed");
    // An operator sees it: `lab status` counts the refused SYNs as
    // security-group drops, next to the frames that crossed the underlay.
    eventually("lab status to count sg_deny drops", true, || {
        let status = lab.status();
        let hosts = status["hosts"].as_object().unwrap();
        let sum = |path: &[&str]| -> u64 {
            hosts
                .values()
                .map(|h| path.iter().fold(h, |v, k| &v[k]).as_u64().unwrap_or(0))
                .sum()
        };
        hosts.len() == 3 && sum(&["drops", "sg_deny"]) > 0 && sum(&["io", "underlay_tx"]) > 0
    });

    // The group reference: a2 (in `client`) reaches 5432, a1 does not.
    lab.http_server(&b1, 5432);
    assert_eq!(curl(&a2, &b1.ip, 5432).as_deref(), Some(b1.id.as_str()));
    assert_eq!(curl(&a1, &b1.ip, 5432), None, "a1 is not in `client`");

    // Removing a rule stops new connections.
    lab.ec2(&[
        "revoke-security-group-ingress",
        "--group-id",
        &web,
        "--protocol",
        "tcp",
        "--port",
        "8080",
        "--cidr",
        "10.0.0.0/16",
    ]);
    eventually("curl after the revoke", false, || {
        curl(&a1, &b1.ip, 8080).is_some()
    });

    // The underlay carries Geneve with the VPC's VNI.
    check_geneve_on_underlay(&lab, &a1, &b1);
}

/// Captures on h1's underlay while a1 pings b1 and has tshark decode it.
fn check_geneve_on_underlay(lab: &Lab, a1: &Instance, b1: &Instance) {
    let plan = &lab.lab_json()["plan"];
    let h1 = plan["hosts"][0]["netns"].as_str().unwrap().to_owned();
    let pcap = lab.dir.path().join("underlay.pcap");
    let mut capture = capture(&h1, "ul0", "udp port 6081", 6, &pcap);
    std::thread::sleep(Duration::from_secs(2));
    assert!(ping(a1, &b1.ip));
    capture.wait().unwrap();
    let lines = decode(&pcap, "geneve && icmp", &["geneve.vni", "ip.dst"]);
    assert!(
        lines.iter().any(|l| l.ends_with(&b1.ip)),
        "tshark saw no Geneve-encapsulated ping to {}: {lines:?}",
        b1.ip
    );
    // The VNI the agent of h1 was given for a1's VPC (its snapshot of the
    // server's state), as the wire carries it.
    let snapshot: Value = serde_json::from_slice(
        &std::fs::read(lab.dir.path().join("hosts/h1/snapshot.json")).unwrap(),
    )
    .unwrap();
    let vni = snapshot["enis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["instance_id"] == a1.id.as_str())
        .map(|e| e["vni"].as_u64().unwrap())
        .expect("a1 in h1's snapshot");
    let vnis: Vec<&str> = lines.iter().filter_map(|l| l.split('\t').next()).collect();
    assert!(
        !vnis.is_empty() && vnis.iter().all(|v| parse_number(v) == Some(vni)),
        "tshark's VNIs {vnis:?}, the VPC's {vni}"
    );
}

#[test]
fn network_acls_and_source_destination_check() {
    let Some((mut lab, vpc, sub_a, sub_b)) = lab_with_vpc("10.0.0.0/16") else {
        return;
    };
    let open = lab.group(&vpc, "open", &[]);
    lab.allow(&open, "-1", "-1", "0.0.0.0/0");
    let a1 = lab.instance_in(&sub_a, &[&open], None);
    let b1 = lab.instance_in(&sub_b, &[&open], None);
    lab.http_server(&b1, 8080);
    let received = udp_echo(&mut lab, &b1, 9000);
    assert_eq!(curl(&a1, &b1.ip, 8080).as_deref(), Some(b1.id.as_str()));

    // A custom ACL on b's subnet: rule 90 denies 8080, rule 100 allows all.
    let acl = lab.ec2(&["create-network-acl", "--vpc-id", &vpc])["NetworkAcl"]["NetworkAclId"]
        .as_str()
        .unwrap()
        .to_owned();
    let entry = |number: &str, egress: bool, proto: &str, ports: Option<&str>, action: &str| {
        let mut args = vec![
            "create-network-acl-entry",
            "--network-acl-id",
            &acl,
            "--rule-number",
            number,
            "--protocol",
            proto,
            "--rule-action",
            action,
            "--cidr-block",
            "0.0.0.0/0",
        ];
        args.push(if egress { "--egress" } else { "--ingress" });
        if let Some(ports) = ports {
            args.extend_from_slice(&["--port-range", ports]);
        }
        lab.ec2(&args);
    };
    entry("90", false, "tcp", Some("From=8080,To=8080"), "deny");
    entry("100", false, "-1", None, "allow");
    // Stateless: replies leave b's subnet only through the ephemeral range.
    entry("100", true, "tcp", Some("From=1024,To=65535"), "allow");
    let assoc = lab.ec2(&[
        "describe-network-acls",
        "--filters",
        &format!("Name=association.subnet-id,Values={sub_b}"),
    ])["NetworkAcls"][0]["Associations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["SubnetId"] == sub_b.as_str())
        .unwrap()["NetworkAclAssociationId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.ec2(&[
        "replace-network-acl-association",
        "--association-id",
        &assoc,
        "--network-acl-id",
        &acl,
    ]);
    // spec 4.1: the lowest number wins, so 90's deny beats 100's allow.
    eventually("curl through deny 90", false, || {
        curl(&a1, &b1.ip, 8080).is_some()
    });
    // `openvpc trace` names the rule the packet met, as the hosts ran it.
    let port = ["--protocol", "tcp", "--port", "8080"];
    let traced = lab.trace(&a1.id, &b1.id, &port);
    assert!(
        traced.contains(&format!("network ACL {acl}, rule 90 (deny)"))
            && traced.contains("dropped: nacl_deny"),
        "{traced}"
    );
    lab.ec2(&[
        "delete-network-acl-entry",
        "--network-acl-id",
        &acl,
        "--rule-number",
        "90",
        "--ingress",
    ]);
    eventually("curl once deny 90 is gone", true, || {
        curl(&a1, &b1.ip, 8080).is_some()
    });
    let traced = lab.trace(&a1.id, &b1.ip, &port);
    assert!(
        traced.contains(&format!("network ACL {acl}, rule 100 (allow)"))
            && traced.contains("delivered to eni-"),
        "{traced}"
    );
    // Narrow egress to 8080 only: the replies (to a1's ephemeral port) stop.
    lab.ec2(&[
        "replace-network-acl-entry",
        "--network-acl-id",
        &acl,
        "--rule-number",
        "100",
        "--egress",
        "--protocol",
        "tcp",
        "--port-range",
        "From=8080,To=8080",
        "--rule-action",
        "allow",
        "--cidr-block",
        "0.0.0.0/0",
    ]);
    eventually("curl without the ephemeral range", false, || {
        curl(&a1, &b1.ip, 8080).is_some()
    });

    // Source/destination check: a1 sends from an address it does not own.
    let spoofed = "10.0.1.200";
    let added = exec(
        &a1.id,
        &["ip", "addr", "add", &format!("{spoofed}/24"), "dev", "eth0"],
    );
    assert!(added.status.success());
    // Restore the ACL so only the check decides.
    entry("110", true, "-1", None, "allow");
    assert!(
        udp(&a1, &b1.ip, 9000, None),
        "the ACL lets UDP through again"
    );
    udp(&a1, &b1.ip, 9000, Some(spoofed));
    std::thread::sleep(Duration::from_millis(500));
    let seen = std::fs::read_to_string(&received).unwrap_or_default();
    assert!(
        !seen.contains(spoofed),
        "a spoofed source got through: {seen}"
    );
    lab.ec2(&[
        "modify-instance-attribute",
        "--instance-id",
        &a1.id,
        "--no-source-dest-check",
    ]);
    // The echo back to 10.0.1.200 has no owner, so only b1's log can tell.
    eventually("the spoofed datagram with the check off", true, || {
        udp(&a1, &b1.ip, 9000, Some(spoofed));
        std::fs::read_to_string(&received)
            .unwrap_or_default()
            .contains(spoofed)
    });
}

#[test]
fn overlapping_vpcs_stay_apart_and_restarts_keep_connectivity() {
    let Some((mut lab, blue, blue_a, blue_b)) = lab_with_vpc("10.0.0.0/16") else {
        return;
    };
    let green = vpc_with_subnets(&lab, "10.0.0.0/16");
    let mut pairs = Vec::new();
    for (name, (vpc, sub_a, sub_b)) in [("blue", (blue, blue_a, blue_b)), ("green", green)] {
        let open = lab.group(&vpc, name, &[]);
        lab.allow(&open, "-1", "-1", "10.0.0.0/16");
        let client = lab.instance_in(&sub_a, &[&open], Some("10.0.1.10"));
        let server = lab.instance_in(&sub_b, &[&open], Some("10.0.2.20"));
        lab.http_server(&server, 8080);
        pairs.push((client, server));
    }
    // Same addresses in both VPCs: each client reaches its own VPC's server.
    for (client, server) in &pairs {
        assert_eq!(
            curl(client, "10.0.2.20", 8080).as_deref(),
            Some(server.id.as_str())
        );
    }

    // A connection that stays open across the restarts.
    let (client, server) = &pairs[0];
    let keeper = udp_echo(&mut lab, server, 9000);
    assert!(udp(client, "10.0.2.20", 9000, None));

    // The server goes away: traffic keeps flowing on what the agents hold.
    signal(lab.pid_of("server"), "-KILL");
    std::thread::sleep(Duration::from_millis(500));
    for (client, server) in &pairs {
        assert_eq!(
            curl(client, "10.0.2.20", 8080).as_deref(),
            Some(server.id.as_str()),
            "with the server away"
        );
    }
    assert!(
        udp(client, "10.0.2.20", 9000, None),
        "UDP with the server away"
    );
    // It comes back; the agents resync.
    lab.restart("server", true);
    for (client, server) in &pairs {
        assert_eq!(
            curl(client, "10.0.2.20", 8080).as_deref(),
            Some(server.id.as_str())
        );
    }
    // The server remembers everything: its instances are still there.
    let v = lab.ec2(&["describe-instances", "--instance-ids", &pairs[1].1.id]);
    assert_eq!(
        v["Reservations"][0]["Instances"][0]["State"]["Name"],
        "running"
    );

    // Kill every agent: instances keep their namespaces and addresses, and
    // traffic resumes once the agents are back.
    for host in ["h1", "h2", "h3"] {
        lab.restart(host, true);
    }
    for (client, server) in &pairs {
        lab.wait_address(client);
        eventually("curl after the agents restarted", true, || {
            curl(client, "10.0.2.20", 8080).as_deref() == Some(server.id.as_str())
        });
    }
    assert!(udp(client, "10.0.2.20", 9000, None));
    assert!(std::fs::read_to_string(&keeper).unwrap().lines().count() >= 2);

    // TerminateInstances removes the instance's namespace.
    let gone = &pairs[1].0;
    lab.ec2(&["terminate-instances", "--instance-ids", &gone.id]);
    let netns = Path::new("/run/netns").join(&gone.id);
    eventually("the terminated instance's namespace", false, || {
        netns.exists()
    });
}
