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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const OPENVPC: &str = env!("CARGO_BIN_EXE_openvpc");

/// The outside router BIRD (`lab up` runs it in the outside namespace).
const BIRD: &str = "/usr/sbin/bird";

/// The port of the outside's echo server: it answers each request with
/// the address the request came from.
const ECHO_PORT: u16 = 8000;

/// A running lab with an outside; taken down when dropped.
struct Lab {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// Programs started inside instances or the outside, killed at the end.
    background: Vec<Child>,
    /// The outside's namespace (`DIR/outside`).
    outside: String,
    /// Where tests run servers in the outside (`DIR/outside-ip`).
    outside_ip: String,
    /// The region's public pool (`DIR/public-pool`).
    public_pool: String,
}

impl Lab {
    /// A lab of 2 hosts in 2 AZs (h1 in us-east-1a, h2 in us-east-1b) and
    /// 2 edge nodes; `None` (said why) where tests cannot run.
    fn up() -> Option<Lab> {
        if let Some(why) = common::cannot_run_instances() {
            eprintln!("skipping: {why}");
            return None;
        }
        if !Path::new(BIRD).exists() {
            assert!(
                std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
                "{BIRD} is missing: scripts/test installs bird2"
            );
            eprintln!("skipping: {BIRD} is missing (apt-get install bird2)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(OPENVPC)
            .args(["lab", "up", "--hosts", "2", "--azs", "2", "--edges", "2"])
            .arg("--dir")
            .arg(dir.path())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let read = |name: &str| {
            std::fs::read_to_string(dir.path().join(name))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        let mut lab = Lab {
            outside: read("outside"),
            outside_ip: read("outside-ip"),
            public_pool: read("public-pool"),
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
        // Issue 15: the three files name the outside, and nothing in them
        // leaves the documentation ranges.
        assert!(
            lab.outside.starts_with("ovl-") && lab.outside.ends_with("-out"),
            "DIR/outside: {:?}",
            lab.outside
        );
        assert_eq!(lab.outside_ip, "198.51.100.10");
        assert_eq!(lab.public_pool, "203.0.113.0/24");
        Some(lab)
    }

    fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Runs `aws ec2 ARGS --output json`; panics with the CLI's message on failure.
    fn ec2(&self, args: &[&str]) -> Value {
        let out = Command::new(std::env::var_os("OPENVPC_AWS_CLI").unwrap())
            .arg("ec2")
            .args(args)
            .args(["--output", "json"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
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

    fn vpc(&self, cidr: &str) -> String {
        let v = self.ec2(&["create-vpc", "--cidr-block", cidr]);
        v["Vpc"]["VpcId"].as_str().unwrap().to_owned()
    }

    /// A subnet; with `public`, instances launched in it get a public IP
    /// (MapPublicIpOnLaunch, spec 5.1).
    fn subnet(&self, vpc: &str, cidr: &str, az: &str, public: bool) -> String {
        let v = self.ec2(&[
            "create-subnet",
            "--vpc-id",
            vpc,
            "--cidr-block",
            cidr,
            "--availability-zone",
            az,
        ]);
        let subnet = v["Subnet"]["SubnetId"].as_str().unwrap().to_owned();
        if public {
            self.ec2(&[
                "modify-subnet-attribute",
                "--subnet-id",
                &subnet,
                "--map-public-ip-on-launch",
            ]);
        }
        subnet
    }

    /// Creates an internet gateway and attaches it to `vpc`.
    fn igw(&self, vpc: &str) -> String {
        let v = self.ec2(&["create-internet-gateway"]);
        let igw = v["InternetGateway"]["InternetGatewayId"]
            .as_str()
            .unwrap()
            .to_owned();
        self.ec2(&[
            "attach-internet-gateway",
            "--vpc-id",
            vpc,
            "--internet-gateway-id",
            &igw,
        ]);
        igw
    }

    /// The VPC's main route table.
    fn main_route_table(&self, vpc: &str) -> String {
        let v = self.ec2(&[
            "describe-route-tables",
            "--filters",
            &format!("Name=vpc-id,Values={vpc}"),
            "Name=association.main,Values=true",
        ]);
        v["RouteTables"][0]["RouteTableId"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Routes 0.0.0.0/0 in `table` to `igw`.
    fn default_route(&self, table: &str, igw: &str) {
        self.ec2(&[
            "create-route",
            "--route-table-id",
            table,
            "--destination-cidr-block",
            "0.0.0.0/0",
            "--gateway-id",
            igw,
        ]);
    }

    /// A VPC of `cidr` with an attached internet gateway and 0.0.0.0/0 to
    /// it in the main route table: (VPC, IGW, main route table).
    fn internet_vpc(&self, cidr: &str) -> (String, String, String) {
        let vpc = self.vpc(cidr);
        let igw = self.igw(&vpc);
        let table = self.main_route_table(&vpc);
        self.default_route(&table, &igw);
        (vpc, igw, table)
    }

    /// A group allowing TCP `ports` from anywhere.
    fn group(&self, vpc: &str, name: &str, ports: &[u16]) -> String {
        let v = self.ec2(&[
            "create-security-group",
            "--vpc-id",
            vpc,
            "--group-name",
            name,
            "--description",
            name,
        ]);
        let group = v["GroupId"].as_str().unwrap().to_owned();
        for port in ports {
            self.ec2(&[
                "authorize-security-group-ingress",
                "--group-id",
                &group,
                "--protocol",
                "tcp",
                "--port",
                &port.to_string(),
                "--cidr",
                "0.0.0.0/0",
            ]);
        }
        group
    }

    /// Launches one instance and waits until its interface has its address.
    fn instance(&self, subnet: &str, group: &str, ip: Option<&str>) -> Instance {
        let mut args = vec![
            "run-instances",
            "--image-id",
            "ami-12345678",
            "--count",
            "1",
            "--subnet-id",
            subnet,
            "--security-group-ids",
            group,
        ];
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

    /// The instance's public IPv4 address as DescribeInstances shows it.
    fn public_ip(&self, instance: &Instance) -> Option<String> {
        let v = self.ec2(&["describe-instances", "--instance-ids", &instance.id]);
        v["Reservations"][0]["Instances"][0]["PublicIpAddress"]
            .as_str()
            .map(str::to_owned)
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

    /// Starts python's http.server on `port` inside `instance`, serving
    /// `/who` with the instance's ID, and waits until it listens.
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
        self.wait_listening(&["exec", &instance.id, "--"], port);
    }

    /// Runs `CMD` in the outside namespace.
    fn outside_cmd(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.outside]).args(cmd);
        c
    }

    /// Starts the outside's echo server on `outside_ip:ECHO_PORT`: it
    /// answers every GET with the request's source address, so a test
    /// sees which address the outside saw.
    fn echo_server(&mut self) {
        let script = format!(
            "import http.server\n\
             class H(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       body = self.client_address[0].encode()\n\
             \x20       self.send_response(200)\n\
             \x20       self.send_header('Content-Length', str(len(body)))\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(body)\n\
             \x20   def log_message(self, *a):\n\
             \x20       pass\n\
             http.server.ThreadingHTTPServer(({ip:?}, {ECHO_PORT}), H).serve_forever()\n",
            ip = self.outside_ip
        );
        let child = self
            .outside_cmd(&["python3", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.background.push(child);
        let ns = self.outside.clone();
        self.wait_listening(&["--netns", &ns], ECHO_PORT);
    }

    /// Waits until something listens on TCP `port` where `place` says:
    /// `["exec", ID, "--"]` in an instance, `["--netns", NS]` the outside.
    fn wait_listening(&self, place: &[&str], port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = if place[0] == "--netns" {
                Command::new("ip")
                    .args(["netns", "exec", place[1], "ss", "-ltn"])
                    .output()
                    .unwrap()
            } else {
                exec(place[1], &["ss", "-ltn"])
            };
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nothing listens on tcp {port} in {place:?}");
    }

    /// `curl http://ADDR:PORT/who` from the outside: the answering
    /// instance's ID, or curl's exit code (28: timed out).
    fn curl_from_outside(&self, addr: &str, port: u16, timeout: &str) -> Result<String, i32> {
        let url = format!("http://{addr}:{port}/who");
        let out = self
            .outside_cmd(&["curl", "-sf", "--max-time", timeout, &url])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(out.status.code().unwrap_or(-1))
        }
    }

    /// The instance curls the outside's echo server: the source address
    /// the outside saw, or `None`.
    fn curl_outside_from(&self, instance: &Instance) -> Option<String> {
        let url = format!("http://{}:{ECHO_PORT}/", self.outside_ip);
        let out = exec(&instance.id, &["curl", "-sf", "--max-time", "3", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `openvpc lab status --json`.
    fn status(&self) -> Value {
        let out = Command::new(OPENVPC)
            .args(["lab", "status", "--json", "--dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "lab status: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The hosts' drops of `reason`, summed.
    fn host_drops(&self, reason: &str) -> u64 {
        let status = self.status();
        status["hosts"]
            .as_object()
            .unwrap()
            .values()
            .map(|h| h["drops"][reason].as_u64().unwrap_or(0))
            .sum()
    }

    fn lab_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("lab.json")).unwrap()).unwrap()
    }

    /// The namespace of a part of the plan: `hosts` or `edges`, by ID.
    fn netns_of(&self, list: &str, id_key: &str, id: &str) -> String {
        let plan = &self.lab_json()["plan"];
        plan[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[id_key] == id)
            .unwrap()["netns"]
            .as_str()
            .unwrap()
            .to_owned()
    }

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

    /// `openvpc lab restart PART`.
    fn restart(&self, part: &str, kill: bool) {
        let mut cmd = Command::new(OPENVPC);
        cmd.args(["lab", "restart", part, "--dir"])
            .arg(self.dir.path());
        if kill {
            cmd.arg("--kill");
        }
        assert!(
            cmd.status().unwrap().success(),
            "restarting {part} failed; logs in {:?}",
            self.logs()
        );
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

/// Retries `check` for up to 10 s until it gives `want`: a change made
/// through the API reaches the hosts and edges asynchronously.
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

/// tshark prints the Geneve VNI in hex (`0x…`); decimal is accepted too.
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Starts tshark on `iface` inside `netns` for `secs` seconds, writing `pcap`.
fn capture(netns: &str, iface: &str, filter: &str, secs: u32, pcap: &Path) -> Child {
    Command::new("ip")
        .args(["netns", "exec", netns, "tshark", "-q", "-i", iface, "-f"])
        .arg(filter)
        .args(["-a", &format!("duration:{secs}"), "-w"])
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `tshark -r PCAP -Y FILTER -T fields -e …`: one line per packet, the
/// fields tab-separated (a field of an encapsulated packet lists the outer
/// value, then the inner, comma-separated).
fn decode(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(pcap).args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_instance_with_a_public_ip_reaches_the_outside_and_is_reached_from_it() {
    let Some(mut lab) = Lab::up() else {
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
    entry("100", true, "-1", None, "allow");
    let assoc = lab.ec2(&[
        "describe-network-acls",
        "--filters",
        &format!("Name=association.subnet-id,Values={subnet}"),
    ])["NetworkAcls"][0]["Associations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["SubnetId"] == subnet.as_str())
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
    let Some(mut lab) = Lab::up() else {
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
    let table = lab.ec2(&["create-route-table", "--vpc-id", &vpc])["RouteTable"]["RouteTableId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.ec2(&[
        "associate-route-table",
        "--route-table-id",
        &table,
        "--subnet-id",
        &isolated,
    ]);
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
    let Some(mut lab) = Lab::up() else {
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
    let v = lab.ec2(&["allocate-address", "--domain", "vpc"]);
    let eip = v["PublicIp"].as_str().unwrap().to_owned();
    let alloc = v["AllocationId"].as_str().unwrap().to_owned();
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

/// The streaming client in the outside: opens N connections to the
/// targets (round robin), each of which the instance's server feeds
/// continuously; prints `connected` once all are open, then after
/// DURATION seconds one JSON line: resets, closes, the longest pause of
/// any connection, how many connections paused more than 0.5 s, and how
/// many got nothing in the last 2 s.
const STREAM_CLIENT: &str = r#"
import json, selectors, socket, sys, time
targets = sys.argv[1].split(',')
port = int(sys.argv[2]); n = int(sys.argv[3]); duration = float(sys.argv[4])
sel = selectors.DefaultSelector()
for i in range(n):
    c = socket.create_connection((targets[i % len(targets)], port), timeout=5)
    c.setblocking(False)
    sel.register(c, selectors.EVENT_READ, i)
print('connected', flush=True)
start = time.monotonic()
last = [start] * n
pause = [0.0] * n
pause_at = [0.0] * n
resets = closes = errors = 0
alive = set(range(n))
while time.monotonic() - start < duration and alive:
    for key, _ in sel.select(0.05):
        i = key.data
        try:
            data = key.fileobj.recv(65536)
        except ConnectionResetError:
            resets += 1; sel.unregister(key.fileobj); alive.discard(i); continue
        except OSError:
            errors += 1; sel.unregister(key.fileobj); alive.discard(i); continue
        if not data:
            closes += 1; sel.unregister(key.fileobj); alive.discard(i); continue
        now = time.monotonic()
        if now - last[i] > pause[i]:
            pause[i] = now - last[i]; pause_at[i] = last[i] - start
        last[i] = now
end = time.monotonic()
for i in alive:
    if end - last[i] > pause[i]:
        pause[i] = end - last[i]; pause_at[i] = last[i] - start
worst = max(range(n), key=lambda i: pause[i])
print(json.dumps({
    'resets': resets, 'closes': closes, 'errors': errors, 'alive': len(alive),
    'max_pause_ms': round(pause[worst] * 1000), 'max_pause_at_s': round(pause_at[worst], 2),
    'paused_over_500ms': sum(1 for p in pause if p > 0.5),
    'stalled_at_end': sum(1 for i in alive if end - last[i] > 2),
}), flush=True)
"#;

/// The streaming server in an instance: every connection gets 100 bytes
/// each 10 ms until it goes away.
const STREAM_SERVER: &str = r#"
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(128)
def feed(c):
    try:
        while True:
            c.sendall(b'x' * 100)
            time.sleep(0.01)
    except OSError:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=feed, args=(c,), daemon=True).start()
"#;

#[test]
fn killing_an_edge_keeps_streaming_connections() {
    let Some(mut lab) = Lab::up() else {
        return;
    };
    const PORT: u16 = 9000;
    let (vpc, _, _) = lab.internet_vpc("10.0.0.0/16");
    let group = lab.group(&vpc, "stream", &[PORT]);
    let mut targets = Vec::new();
    for (cidr, az) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        let subnet = lab.subnet(&vpc, cidr, az, true);
        let inst = lab.instance(&subnet, &group, None);
        let child = Command::new(OPENVPC)
            .args(["exec", &inst.id, "--", "python3", "-c", STREAM_SERVER])
            .arg(PORT.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.background.push(child);
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
    let e1_pid = lab.lab_json()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "e1")
        .unwrap()["pid"]
        .as_u64()
        .unwrap();
    let e1_uplink = lab.lab_json()["plan"]["edges"][0]["uplink_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let killed = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-KILL", &e1_pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
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
    let e2 = lab.lab_json()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["part"] == "e2")
        .unwrap()["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let e2_uplink = lab.lab_json()["plan"]["edges"][1]["uplink_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let signal = |sig: &str| {
        assert!(
            Command::new("kill")
                .args([sig, &e2])
                .status()
                .unwrap()
                .success()
        );
    };
    signal("-STOP");
    let stopped = Instant::now();
    let mut withdrawn = None;
    while stopped.elapsed() < Duration::from_secs(10) {
        if !lab.pool_next_hops().contains(&e2_uplink) {
            withdrawn = Some(stopped.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal("-CONT");
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
