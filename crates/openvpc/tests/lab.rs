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
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const OPENVPC: &str = env!("CARGO_BIN_EXE_openvpc");

/// A running lab; taken down when dropped.
struct Lab {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Programs started inside instances, killed at the end.
    background: Vec<Child>,
}

impl Lab {
    /// The lab every test here uses (3 hosts in 2 AZs) with one VPC of
    /// `cidr` and a subnet in each AZ; `None` (said why) where tests cannot run.
    fn with_vpc(cidr: &str) -> Option<(Lab, String, String, String)> {
        if let Some(why) = common::cannot_run_instances() {
            eprintln!("skipping: {why}");
            return None;
        }
        let lab = Lab::up(3, 2);
        let (vpc, sub_a, sub_b) = lab.vpc_with_subnets(cidr);
        Some((lab, vpc, sub_a, sub_b))
    }

    /// A VPC with 10.0.1.0/24 in us-east-1a and 10.0.2.0/24 in us-east-1b
    /// (the CIDR must hold them).
    fn vpc_with_subnets(&self, cidr: &str) -> (String, String, String) {
        let vpc = self.vpc(cidr);
        let sub_a = self.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
        let sub_b = self.subnet(&vpc, "10.0.2.0/24", "us-east-1b");
        (vpc, sub_a, sub_b)
    }

    fn up(hosts: usize, azs: usize) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(OPENVPC)
            .args(["lab", "up", "--hosts", &hosts.to_string()])
            .args(["--azs", &azs.to_string(), "--dir"])
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let mut lab = Lab {
            dir,
            env: Vec::new(),
            background: Vec::new(),
        };
        assert!(
            out.status.success(),
            "lab up failed; logs in {:?}",
            lab.logs()
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                lab.env.push((k.into(), v.into()));
            }
        }
        assert_eq!(
            lab.env.len(),
            3,
            "lab up prints endpoint, credentials, region"
        );
        lab
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Runs `aws ec2 ARGS --output json`; panics with the CLI's message on failure.
    fn ec2(&self, args: &[&str]) -> Value {
        let out = self.ec2_raw(args);
        assert!(
            out.status.success(),
            "aws ec2 {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Value::Null;
        }
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn ec2_raw(&self, args: &[&str]) -> Output {
        Command::new(std::env::var_os("OPENVPC_AWS_CLI").unwrap())
            .arg("ec2")
            .args(args)
            .args(["--output", "json"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    /// `openvpc trace --from FROM --to TO ARGS…` against the lab's server;
    /// its output.
    fn trace(&self, from: &str, to: &str, args: &[&str]) -> String {
        let out = Command::new(OPENVPC)
            .args(["trace", "--from", from, "--to", to])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openvpc trace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn vpc(&self, cidr: &str) -> String {
        let v = self.ec2(&["create-vpc", "--cidr-block", cidr]);
        v["Vpc"]["VpcId"].as_str().unwrap().to_owned()
    }

    fn subnet(&self, vpc: &str, cidr: &str, az: &str) -> String {
        let v = self.ec2(&[
            "create-subnet",
            "--vpc-id",
            vpc,
            "--cidr-block",
            cidr,
            "--availability-zone",
            az,
        ]);
        v["Subnet"]["SubnetId"].as_str().unwrap().to_owned()
    }

    fn group(&self, vpc: &str, name: &str) -> String {
        let v = self.ec2(&[
            "create-security-group",
            "--vpc-id",
            vpc,
            "--group-name",
            name,
            "--description",
            name,
        ]);
        v["GroupId"].as_str().unwrap().to_owned()
    }

    /// Allows `proto` `port` (or ICMP with -1) from `cidr` into `group`.
    fn allow(&self, group: &str, proto: &str, port: &str, cidr: &str) {
        self.ec2(&[
            "authorize-security-group-ingress",
            "--group-id",
            group,
            "--protocol",
            proto,
            "--port",
            port,
            "--cidr",
            cidr,
        ]);
    }

    /// Launches one instance and waits until its interface has its address.
    fn instance(&self, subnet: &str, groups: &[&str], ip: Option<&str>) -> Instance {
        let mut args = vec![
            "run-instances",
            "--image-id",
            "ami-12345678",
            "--count",
            "1",
            "--subnet-id",
            subnet,
        ];
        if !groups.is_empty() {
            args.push("--security-group-ids");
            args.extend_from_slice(groups);
        }
        if let Some(ip) = ip {
            args.extend_from_slice(&["--private-ip-address", ip]);
        }
        let v = self.ec2(&args);
        let inst = &v["Instances"][0];
        let instance = Instance {
            id: inst["InstanceId"].as_str().unwrap().to_owned(),
            ip: inst["PrivateIpAddress"].as_str().unwrap().to_owned(),
        };
        self.wait_address(&instance);
        instance
    }

    /// Waits until DHCP has configured the instance's eth0.
    fn wait_address(&self, instance: &Instance) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = exec(
                &instance.id,
                &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
            );
            if String::from_utf8_lossy(&out.stdout).contains(&format!("inet {}/", instance.ip)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not get {} over DHCP in 30 s ({}); logs in {:?}",
                instance.id,
                instance.ip,
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts python's http.server on `port` inside `instance`, serving a
    /// file that names the instance, and waits until it listens.
    fn http_server(&mut self, instance: &Instance, port: u16) {
        let root = self.dir.path().join(format!("www-{}-{port}", instance.id));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("who"), &instance.id).unwrap();
        let child = Command::new(OPENVPC)
            .args(["exec", &instance.id, "--", "python3", "-m", "http.server"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.background.push(child);
        self.wait_listening(instance, "tcp", port);
    }

    /// Starts a UDP echo on `port` inside `instance`; every datagram it
    /// gets is appended to the returned file and echoed back.
    fn udp_echo(&mut self, instance: &Instance, port: u16) -> PathBuf {
        let log = self.dir.path().join(format!("udp-{}-{port}", instance.id));
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
        let child = Command::new(OPENVPC)
            .args(["exec", &instance.id, "--", "python3", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.background.push(child);
        self.wait_listening(instance, "udp", port);
        log
    }

    fn wait_listening(&self, instance: &Instance, proto: &str, port: u16) {
        let flag = if proto == "tcp" { "-ltn" } else { "-lun" };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = exec(&instance.id, &["ss", flag]);
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nothing listens on {proto} {port} in {}", instance.id);
    }

    /// Restarts a part of the lab (`server` or a host ID).
    fn restart(&self, part: &str, kill: bool) {
        let mut cmd = Command::new(OPENVPC);
        cmd.args(["lab", "restart", part, "--dir"])
            .arg(self.dir.path());
        if kill {
            cmd.arg("--kill");
        }
        let status = cmd.status().unwrap();
        if !status.success() {
            // The lab's directory goes with the test: keep what the log says.
            let log = self.logs().join(if part == "server" {
                "server.log".to_owned()
            } else {
                format!("agent-{part}.log")
            });
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            panic!(
                "restarting {part} failed; the end of {}:\n{}",
                log.display(),
                tail.join("\n")
            );
        }
    }

    /// `openvpc lab status --json`: each host's dataplane counters.
    fn status(&self) -> Value {
        let out = Command::new(OPENVPC)
            .args(["lab", "status", "--json", "--dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "lab status: {out:?}");
        let all: Value = serde_json::from_slice(&out.stdout).unwrap();
        all["hosts"].clone()
    }

    fn lab_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("lab.json")).unwrap()).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.background {
            let _ = child.kill();
            let _ = child.wait();
        }
        let status = Command::new(OPENVPC)
            .args(["lab", "down", "--dir"])
            .arg(self.dir.path())
            .status();
        if !matches!(status, Ok(s) if s.success()) && !std::thread::panicking() {
            panic!("lab down failed");
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    ip: String,
}

fn exec(instance: &str, cmd: &[&str]) -> Output {
    Command::new(OPENVPC)
        .args(["exec", instance, "--"])
        .args(cmd)
        .output()
        .unwrap()
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

/// Retries `check` for up to 10 s until it gives `want`: a change made
/// through the API reaches the hosts asynchronously.
fn eventually(what: &str, want: bool, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if check() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still not {want} after 10 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
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
    let Some((mut lab, vpc, sub_a, sub_b)) = Lab::with_vpc("10.0.0.0/16") else {
        return;
    };
    let web = lab.group(&vpc, "web");
    lab.allow(&web, "tcp", "8080", "10.0.0.0/16");
    lab.allow(&web, "udp", "9000", "10.0.0.0/16");
    lab.allow(&web, "icmp", "-1", "10.0.0.0/16");
    let client = lab.group(&vpc, "client");
    let db = lab.group(&vpc, "db");
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
    let a1 = lab.instance(&sub_a, &[&web], None);
    let b1 = lab.instance(&sub_b, &[&web, &db], None);
    let a2 = lab.instance(&sub_a, &[&web, &client], None);
    let a3 = lab.instance(&sub_a, &[&web], None);
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
    let received = lab.udp_echo(&b1, 9000);
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
        let hosts = status.as_object().unwrap();
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
    let mut capture = Command::new("ip")
        .args([
            "netns",
            "exec",
            &h1,
            "tshark",
            "-q",
            "-i",
            "ul0",
            "-f",
            "udp port 6081",
        ])
        .args(["-a", "duration:6", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(ping(a1, &b1.ip));
    capture.wait().unwrap();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args([
            "-Y",
            "geneve && icmp",
            "-T",
            "fields",
            "-e",
            "geneve.vni",
            "-e",
            "ip.dst",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.ends_with(&b1.ip)),
        "tshark saw no Geneve-encapsulated ping to {}: {text}",
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
    let vnis: Vec<&str> = text.lines().filter_map(|l| l.split('\t').next()).collect();
    assert!(
        !vnis.is_empty() && vnis.iter().all(|v| parse_number(v) == Some(vni)),
        "tshark's VNIs {vnis:?}, the VPC's {vni}"
    );
}

/// tshark prints the Geneve VNI in hex (`0x…`); decimal is accepted too.
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[test]
fn network_acls_and_source_destination_check() {
    let Some((mut lab, vpc, sub_a, sub_b)) = Lab::with_vpc("10.0.0.0/16") else {
        return;
    };
    let open = lab.group(&vpc, "open");
    lab.allow(&open, "-1", "-1", "0.0.0.0/0");
    let a1 = lab.instance(&sub_a, &[&open], None);
    let b1 = lab.instance(&sub_b, &[&open], None);
    lab.http_server(&b1, 8080);
    let received = lab.udp_echo(&b1, 9000);
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
    let Some((mut lab, blue, blue_a, blue_b)) = Lab::with_vpc("10.0.0.0/16") else {
        return;
    };
    let green = lab.vpc_with_subnets("10.0.0.0/16");
    let mut pairs = Vec::new();
    for (name, (vpc, sub_a, sub_b)) in [("blue", (blue, blue_a, blue_b)), ("green", green)] {
        let open = lab.group(&vpc, name);
        lab.allow(&open, "-1", "-1", "10.0.0.0/16");
        let client = lab.instance(&sub_a, &[&open], Some("10.0.1.10"));
        let server = lab.instance(&sub_b, &[&open], Some("10.0.2.20"));
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
    let keeper = lab.udp_echo(server, 9000);
    assert!(udp(client, "10.0.2.20", 9000, None));

    // The server goes away: traffic keeps flowing on what the agents hold.
    let server_pid = lab.lab_json()["processes"][0]["pid"].as_u64().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", &server_pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
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
