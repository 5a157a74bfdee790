//! What the lab tests with an outside world share (tests/lab_edge.rs,
//! tests/lab_nat.rs): `openvpc lab up` with 2 hosts in 2 AZs, 2 edges and
//! the outside (BIRD as the internet's router, a test server address),
//! the aws CLI making VPCs, subnets, gateways, groups and instances, and
//! real programs run in the instances and in the outside namespace.
//!
//! Needs root (namespaces, TAP and TUN devices), the aws CLI from
//! scripts/test's venv and BIRD; without them [`Lab::up`] says why and
//! the test skips (CI runs them as root with every tool).

use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const OPENVPC: &str = env!("CARGO_BIN_EXE_openvpc");

/// The outside router BIRD (`lab up` runs it in the outside namespace).
pub const BIRD: &str = "/usr/sbin/bird";

/// The port of the outside's echo server: it answers each request with
/// the address the request came from.
pub const ECHO_PORT: u16 = 8000;

/// A running lab with an outside; taken down when dropped.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    /// Programs started inside instances or the outside, killed at the end.
    pub background: Vec<Child>,
    /// The outside's namespace (`DIR/outside`).
    pub outside: String,
    /// Where tests run servers in the outside (`DIR/outside-ip`).
    pub outside_ip: String,
    /// The region's public pool (`DIR/public-pool`).
    pub public_pool: String,
}

impl Lab {
    /// A lab of 2 hosts in 2 AZs (h1 in us-east-1a, h2 in us-east-1b), 2
    /// edge nodes and the default hyperplane fleet, with `extra` arguments
    /// for `lab up` (e.g. `--nat-ports 20000-20009`); `None` (said why)
    /// where tests cannot run.
    pub fn up(extra: &[&str]) -> Option<Lab> {
        let mut args = vec!["--hosts", "2", "--azs", "2", "--edges", "2"];
        args.extend_from_slice(extra);
        let lab = Lab::up_with(&args)?;
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

    /// `openvpc lab up ARGS` as they are (`lab up`'s defaults for what
    /// they leave out: edges and the outside among them); `None` (said
    /// why) where tests cannot run.
    pub fn up_with(args: &[&str]) -> Option<Lab> {
        if let Some(why) = super::cannot_run_instances() {
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
        let started = Instant::now();
        let out = Command::new(OPENVPC)
            .args(["lab", "up"])
            .args(args)
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
        eprintln!("lab up took {} ms", started.elapsed().as_millis());
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
        Some(lab)
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    /// Runs `aws ec2 ARGS --output json`: the answer, or the CLI's message.
    pub fn try_ec2(&self, args: &[&str]) -> Result<Value, String> {
        ec2_with(&self.env, args)
    }

    /// Runs `aws elbv2 ARGS --output json`; panics with the CLI's message
    /// on failure.
    pub fn elbv2(&self, args: &[&str]) -> Value {
        aws_with(&self.env, "elbv2", args)
            .unwrap_or_else(|e| panic!("aws elbv2 {}: {e}", args.join(" ")))
    }

    /// Runs `aws elbv2 ARGS --output json`: the answer, or the CLI's message.
    pub fn try_elbv2(&self, args: &[&str]) -> Result<Value, String> {
        aws_with(&self.env, "elbv2", args)
    }

    /// Runs `aws ec2 ARGS --output json`; panics with the CLI's message on failure.
    pub fn ec2(&self, args: &[&str]) -> Value {
        self.try_ec2(args)
            .unwrap_or_else(|e| panic!("aws ec2 {} failed: {e}", args.join(" ")))
    }

    pub fn vpc(&self, cidr: &str) -> String {
        let v = self.ec2(&["create-vpc", "--cidr-block", cidr]);
        v["Vpc"]["VpcId"].as_str().unwrap().to_owned()
    }

    /// A subnet; with `public`, instances launched in it get a public IP
    /// (MapPublicIpOnLaunch, spec 5.1).
    pub fn subnet(&self, vpc: &str, cidr: &str, az: &str, public: bool) -> String {
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
    pub fn igw(&self, vpc: &str) -> String {
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
    pub fn main_route_table(&self, vpc: &str) -> String {
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

    /// A new route table of `vpc`, associated with `subnets`.
    pub fn route_table(&self, vpc: &str, subnets: &[&str]) -> String {
        let v = self.ec2(&["create-route-table", "--vpc-id", vpc]);
        let table = v["RouteTable"]["RouteTableId"].as_str().unwrap().to_owned();
        for subnet in subnets {
            self.ec2(&[
                "associate-route-table",
                "--route-table-id",
                &table,
                "--subnet-id",
                subnet,
            ]);
        }
        table
    }

    /// Routes 0.0.0.0/0 in `table` to `igw`.
    pub fn default_route(&self, table: &str, igw: &str) {
        self.route(table, "0.0.0.0/0", &["--gateway-id", igw]);
    }

    /// `create-route` in `table` of `cidr` to `target` (`--gateway-id ID`,
    /// `--nat-gateway-id ID`, …).
    pub fn route(&self, table: &str, cidr: &str, target: &[&str]) {
        let mut args = vec![
            "create-route",
            "--route-table-id",
            table,
            "--destination-cidr-block",
            cidr,
        ];
        args.extend_from_slice(target);
        self.ec2(&args);
    }

    /// A VPC of `cidr` with an attached internet gateway and 0.0.0.0/0 to
    /// it in the main route table: (VPC, IGW, main route table).
    pub fn internet_vpc(&self, cidr: &str) -> (String, String, String) {
        let vpc = self.vpc(cidr);
        let igw = self.igw(&vpc);
        let table = self.main_route_table(&vpc);
        self.default_route(&table, &igw);
        (vpc, igw, table)
    }

    /// A group allowing TCP `ports` from anywhere.
    pub fn group(&self, vpc: &str, name: &str, ports: &[u16]) -> String {
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
            self.allow(&group, "tcp", &port.to_string(), "0.0.0.0/0");
        }
        group
    }

    /// Allows `proto` `port` (or ICMP with -1) from `cidr` into `group`.
    pub fn allow(&self, group: &str, proto: &str, port: &str, cidr: &str) {
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
    pub fn instance(&self, subnet: &str, group: &str, ip: Option<&str>) -> Instance {
        self.instance_in(subnet, &[group], ip)
    }

    /// [`Lab::instance`] in `groups` (none: the VPC's default group).
    pub fn instance_in(&self, subnet: &str, groups: &[&str], ip: Option<&str>) -> Instance {
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

    /// Allocates an Elastic IP: (its address, its allocation ID).
    pub fn allocate_address(&self) -> (String, String) {
        let v = self.ec2(&["allocate-address", "--domain", "vpc"]);
        (
            v["PublicIp"].as_str().unwrap().to_owned(),
            v["AllocationId"].as_str().unwrap().to_owned(),
        )
    }

    /// A public NAT gateway in `subnet` with a new Elastic IP: (its ID,
    /// the Elastic IP). It is `pending` until its shard serves it.
    pub fn public_nat_gateway(&self, subnet: &str) -> (String, String) {
        let (eip, alloc) = self.allocate_address();
        let v = self.ec2(&[
            "create-nat-gateway",
            "--subnet-id",
            subnet,
            "--allocation-id",
            &alloc,
        ]);
        let nat = v["NatGateway"]["NatGatewayId"].as_str().unwrap().to_owned();
        (nat, eip)
    }

    /// A target group over the instances' `port`, with fast health checks
    /// (5 s apart, 2 to change) on `check_port` (the traffic port if `None`).
    pub fn nlb_target_group(
        &self,
        vpc: &str,
        name: &str,
        proto: &str,
        port: u16,
        check: Option<u16>,
    ) -> String {
        let port_s = port.to_string();
        let check_s = check.map(|p| p.to_string());
        let mut args = vec![
            "create-target-group",
            "--name",
            name,
            "--protocol",
            proto,
            "--port",
            &port_s,
            "--vpc-id",
            vpc,
            "--target-type",
            "instance",
            "--health-check-protocol",
            "TCP",
            "--health-check-interval-seconds",
            "5",
            "--health-check-timeout-seconds",
            "2",
            "--healthy-threshold-count",
            "2",
            "--unhealthy-threshold-count",
            "2",
        ];
        if let Some(p) = &check_s {
            args.extend_from_slice(&["--health-check-port", p]);
        }
        let v = self.elbv2(&args);
        v["TargetGroups"][0]["TargetGroupArn"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn listener(&self, lb: &str, proto: &str, port: u16, tg: &str) {
        let action = format!("Type=forward,TargetGroupArn={tg}");
        self.elbv2(&[
            "create-listener",
            "--load-balancer-arn",
            lb,
            "--protocol",
            proto,
            "--port",
            &port.to_string(),
            "--default-actions",
            &action,
        ]);
    }

    pub fn register_targets(&self, tg: &str, ids: &[&str]) {
        let targets: Vec<String> = ids.iter().map(|id| format!("Id={id}")).collect();
        let mut args = vec!["register-targets", "--target-group-arn", tg, "--targets"];
        args.extend(targets.iter().map(String::as_str));
        self.elbv2(&args);
    }

    /// A network ACL of `vpc` holding `rules`.
    pub fn network_acl(&self, vpc: &str, rules: &[AclRule]) -> String {
        let acl = self.ec2(&["create-network-acl", "--vpc-id", vpc])["NetworkAcl"]["NetworkAclId"]
            .as_str()
            .unwrap()
            .to_owned();
        for rule in rules {
            let number = rule.number.to_string();
            let mut args = vec![
                "create-network-acl-entry",
                "--network-acl-id",
                &acl,
                "--rule-number",
                &number,
                "--protocol",
                rule.protocol,
                "--rule-action",
                rule.action,
                "--cidr-block",
                rule.cidr,
                if rule.egress { "--egress" } else { "--ingress" },
            ];
            if let Some(ports) = rule.ports {
                args.extend_from_slice(&["--port-range", ports]);
            }
            self.ec2(&args);
        }
        acl
    }

    /// Associates `acl` with `subnet` in place of the one it has: that one.
    pub fn swap_network_acl(&self, subnet: &str, acl: &str) -> String {
        let v = self.ec2(&[
            "describe-network-acls",
            "--filters",
            &format!("Name=association.subnet-id,Values={subnet}"),
        ]);
        let old = &v["NetworkAcls"][0];
        let assoc = old["Associations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["SubnetId"] == subnet)
            .unwrap()["NetworkAclAssociationId"]
            .as_str()
            .unwrap();
        self.ec2(&[
            "replace-network-acl-association",
            "--association-id",
            assoc,
            "--network-acl-id",
            acl,
        ]);
        old["NetworkAclId"].as_str().unwrap().to_owned()
    }

    /// The instance's public IPv4 address as DescribeInstances shows it.
    pub fn public_ip(&self, instance: &Instance) -> Option<String> {
        let v = self.ec2(&["describe-instances", "--instance-ids", &instance.id]);
        v["Reservations"][0]["Instances"][0]["PublicIpAddress"]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until DHCP has configured the instance's eth0.
    pub fn wait_address(&self, instance: &Instance) {
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

    /// Starts `cmd` inside `instance` in the background (killed when the
    /// lab drops), its output discarded.
    pub fn spawn_in(&mut self, instance: &Instance, cmd: &[&str]) {
        let child = Command::new(OPENVPC)
            .args(["exec", &instance.id, "--"])
            .args(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.background.push(child);
    }

    /// Starts python's http.server on `port` inside `instance`, serving
    /// `/who` with the instance's ID, and waits until it listens.
    pub fn http_server(&mut self, instance: &Instance, port: u16) {
        let root = self.dir.path().join(format!("www-{}-{port}", instance.id));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("who"), &instance.id).unwrap();
        let root = root.to_str().unwrap().to_owned();
        let port_arg = port.to_string();
        self.spawn_in(
            instance,
            &[
                "python3",
                "-m",
                "http.server",
                &port_arg,
                "--directory",
                &root,
            ],
        );
        self.wait_listening(&["exec", &instance.id, "--"], port);
    }

    /// Runs `CMD` in the outside namespace.
    pub fn outside_cmd(&self, cmd: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.outside]).args(cmd);
        c
    }

    /// Starts `cmd` in the outside namespace in the background (killed
    /// when the lab drops), its output discarded.
    pub fn spawn_outside(&mut self, cmd: &[&str]) {
        let child = self
            .outside_cmd(cmd)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.background.push(child);
    }

    /// Starts the outside's echo server on `outside_ip:ECHO_PORT`: it
    /// answers every GET with the request's source address, so a test
    /// sees which address the outside saw.
    pub fn echo_server(&mut self) {
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
        self.spawn_outside(&["python3", "-c", &script]);
        self.wait_listening_outside(ECHO_PORT);
    }

    /// Waits until something listens on TCP `port` in the outside.
    pub fn wait_listening_outside(&self, port: u16) {
        let ns = self.outside.clone();
        self.wait_listening(&["--netns", &ns], port);
    }

    /// Waits until something listens on TCP `port` where `place` says:
    /// `["exec", ID, "--"]` in an instance, `["--netns", NS]` the outside.
    pub fn wait_listening(&self, place: &[&str], port: u16) {
        self.wait_listening_on(place, "tcp", port);
    }

    /// [`Lab::wait_listening`] for `proto`, `tcp` or `udp`.
    pub fn wait_listening_on(&self, place: &[&str], proto: &str, port: u16) {
        let flag = if proto == "tcp" { "-ltn" } else { "-lun" };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let out = if place[0] == "--netns" {
                Command::new("ip")
                    .args(["netns", "exec", place[1], "ss", flag])
                    .output()
                    .unwrap()
            } else {
                exec(place[1], &["ss", flag])
            };
            if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("nothing listens on {proto} {port} in {place:?}");
    }

    /// `curl http://ADDR:PORT/who` from the outside: the answering
    /// instance's ID, or curl's exit code (28: timed out).
    pub fn curl_from_outside(&self, addr: &str, port: u16, timeout: &str) -> Result<String, i32> {
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
    pub fn curl_outside_from(&self, instance: &Instance) -> Option<String> {
        let url = format!("http://{}:{ECHO_PORT}/", self.outside_ip);
        let out = exec(&instance.id, &["curl", "-sf", "--max-time", "3", &url]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `openvpc lab status --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(OPENVPC)
            .args(["lab", "status", "--json", "--dir"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "lab status: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `openvpc trace --from FROM --to TO ARGS…` against the lab's server:
    /// its output.
    pub fn trace(&self, from: &str, to: &str, args: &[&str]) -> String {
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

    /// The hosts' drops of `reason`, summed.
    pub fn host_drops(&self, reason: &str) -> u64 {
        let status = self.status();
        status["hosts"]
            .as_object()
            .unwrap()
            .values()
            .map(|h| h["drops"][reason].as_u64().unwrap_or(0))
            .sum()
    }

    pub fn lab_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.path().join("lab.json")).unwrap()).unwrap()
    }

    /// The namespace of a part of the plan: `hosts`, `edges` or
    /// `hyperplane`, by ID.
    pub fn netns_of(&self, list: &str, id_key: &str, id: &str) -> String {
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

    /// The pid of a lab process (`e1`, `hp2`, …) as `lab.json` records it.
    pub fn pid_of(&self, part: &str) -> u64 {
        self.lab_json()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"] == part)
            .unwrap_or_else(|| panic!("no process {part} in lab.json"))["pid"]
            .as_u64()
            .unwrap()
    }

    /// For a failed test: copies the lab's logs and state files, with
    /// `lab status --json` as it is now, to a directory that outlives the
    /// lab (the lab's own goes with it), and says where.
    fn keep_evidence(&self) {
        let kept = std::env::temp_dir().join(format!(
            "openvpc-failed-lab-{}",
            self.dir
                .path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ));
        let _ = std::fs::create_dir_all(&kept);
        let copied = Command::new("cp")
            .arg("-r")
            .arg(self.logs())
            .arg(self.dir.path().join("hyperplane"))
            .arg(self.dir.path().join("lab.json"))
            .arg(&kept)
            .status();
        if let Ok(out) = Command::new(OPENVPC)
            .args(["lab", "status", "--json", "--dir"])
            .arg(self.dir.path())
            .output()
        {
            let _ = std::fs::write(kept.join("status.json"), out.stdout);
        }
        eprintln!(
            "the failed lab's logs and status are kept in {} ({copied:?})",
            kept.display()
        );
    }

    /// `openvpc lab restart PART`.
    pub fn restart(&self, part: &str, kill: bool) {
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
        if std::thread::panicking() {
            self.keep_evidence();
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

/// One entry of a network ACL (`create-network-acl-entry`).
pub struct AclRule<'a> {
    pub number: u16,
    pub egress: bool,
    /// `tcp`, `udp`, `icmp` or `-1` (all).
    pub protocol: &'a str,
    pub cidr: &'a str,
    /// `From=P,To=Q`.
    pub ports: Option<&'a str>,
    /// `allow` or `deny`.
    pub action: &'a str,
}

impl AclRule<'_> {
    /// Rule 100: everything allowed one way, as a default ACL has it.
    pub fn allow_all(egress: bool) -> AclRule<'static> {
        AclRule {
            number: 100,
            egress,
            protocol: "-1",
            cidr: "0.0.0.0/0",
            ports: None,
            action: "allow",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub ip: String,
}

/// The streaming client (`python3 -c STREAM_CLIENT TARGETS PORT N
/// DURATION`): opens N connections to the targets (comma-separated,
/// round robin), each of which a [`STREAM_SERVER`] feeds continuously;
/// prints `connected` once all are open, then after DURATION seconds one
/// JSON line: resets, closes, the longest pause of any connection, how
/// many connections paused more than 0.5 s, and how many got nothing in
/// the last 2 s.
pub const STREAM_CLIENT: &str = r#"
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

/// The streaming server (`python3 -c STREAM_SERVER PORT [EVERY]`): every
/// connection gets 100 bytes each EVERY seconds (default 0.01) until it
/// goes away.
pub const STREAM_SERVER: &str = r#"
import socket, sys, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
s.listen(512)
every = float(sys.argv[2]) if len(sys.argv) > 2 else 0.01
def feed(c):
    try:
        while True:
            c.sendall(b'x' * 100)
            time.sleep(every)
    except OSError:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=feed, args=(c,), daemon=True).start()
"#;

/// Runs `aws ec2 ARGS --output json` with `env` (endpoint, credentials,
/// region): the answer (`null` for none), or the CLI's message.
pub fn ec2_with(env: &[(String, String)], args: &[&str]) -> Result<Value, String> {
    aws_with(env, "ec2", args)
}

/// Runs `aws SERVICE ARGS --output json` with `env`: the answer (`null`
/// for none), or the CLI's message.
pub fn aws_with(env: &[(String, String)], service: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(std::env::var_os("OPENVPC_AWS_CLI").unwrap())
        .arg(service)
        .args(args)
        .args(["--output", "json"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// Sends `signal` (`-KILL`, `-STOP`, …) to a lab process.
pub fn signal(pid: u64, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}: {status}");
}

/// Runs `cmd` inside `instance` (`openvpc exec`) and waits for it.
pub fn exec(instance: &str, cmd: &[&str]) -> Output {
    Command::new(OPENVPC)
        .args(["exec", instance, "--"])
        .args(cmd)
        .output()
        .unwrap()
}

/// Retries `check` for up to 10 s until it gives `want`: a change made
/// through the API reaches the hosts and edges asynchronously.
pub fn eventually(what: &str, want: bool, mut check: impl FnMut() -> bool) {
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
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Starts tshark on `iface` inside `netns` for `secs` seconds, writing `pcap`.
pub fn capture(netns: &str, iface: &str, filter: &str, secs: u32, pcap: &Path) -> Child {
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
pub fn decode(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
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

/// The UDP echo (`IP PORT`): it answers each datagram with the address and
/// port it came from (`IP PORT`).
pub const UDP_ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(('%s %d' % peer).encode(), peer)
"#;

/// The UDP client in an instance: sends to `IP PORT` until an answer
/// comes (5 tries, 1 s each) and prints it; exits 1 without one.
pub const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(5):
    s.sendto(b'ping', (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode())
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
"#;

/// Python clients running in instances, stdin and stdout piped; killed
/// when dropped.
pub struct Clients(Vec<(Child, Lines<BufReader<ChildStdout>>)>);

impl Clients {
    /// `python3 -c SCRIPT ARGS` in each instance.
    pub fn start(instances: &[&Instance], script: &str, args: &[&str]) -> Clients {
        Clients(
            instances
                .iter()
                .map(|inst| {
                    let mut child = Command::new(OPENVPC)
                        .args(["exec", &inst.id, "--", "python3", "-c", script])
                        .args(args)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .unwrap();
                    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
                    (child, lines)
                })
                .collect(),
        )
    }

    /// Each client's lines up to `until` (not included); panics if a
    /// client ends before printing it.
    pub fn read_until(&mut self, until: &str) -> Vec<Vec<String>> {
        self.0
            .iter_mut()
            .map(|(_, lines)| {
                let mut before = Vec::new();
                for line in lines.map_while(Result::ok) {
                    if line == until {
                        return before;
                    }
                    before.push(line);
                }
                panic!("a client ended before printing {until:?}: {before:?}")
            })
            .collect()
    }

    /// Each client's next line, parsed.
    pub fn next_json(&mut self) -> Vec<Value> {
        self.0
            .iter_mut()
            .map(|(_, lines)| {
                let line = lines.next().and_then(Result::ok).unwrap_or_default();
                serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("a client's report {line:?}: {e}"))
            })
            .collect()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for (child, _) in &mut self.0 {
            drop(child.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
