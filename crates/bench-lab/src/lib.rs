//! `openvpc bench lab`: real traffic between two real instances on two
//! hosts of a lab, measured exactly as `bench/kernel-baseline.sh` measures
//! the kernel's VXLAN + nftables and Open vSwitch's userspace datapath, so
//! the figures compare one to one (issue 7).
//!
//! It builds a two-host lab (one AZ per host) in a temporary directory,
//! creates through the EC2 API a VPC with one subnet per AZ, a security
//! group like the baseline's (tcp/5201, udp/5201 and ICMP echo in; the rest
//! dropped) and one instance per subnet, waits for DHCP, then runs inside
//! the instance namespaces, servers in vm2 pinned to CPU1 and clients in
//! vm1 pinned to CPU0 as the baseline does:
//! `sockperf ping-pong --tcp -m 64 --full-rtt`, `ping -f`, `iperf3` one TCP
//! stream, `iperf3 -u -l 64 -b 0`. Then, through the lab's edge nodes (an
//! internet gateway, a default route to it and an Elastic IP on vm1), one
//! TCP stream from vm1 to a server in the lab's outside namespace (pinned
//! to CPU1) and one back (`-R`): issue 15's figure against the same lab's
//! instance-to-instance stream. The lab is taken down on every exit
//! path this process controls (errors, panics unwinding, an interrupt seen
//! through the flag the caller passes).
//!
//! This crate drives tools and parses their output; it holds no dataplane
//! logic and prints nothing but progress through the caller's callback.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openvpc_control::client::Client;
use openvpc_lab::{LabPlan, Launch};
use serde::Serialize;

/// The port every server listens on, as in the baseline.
pub const PORT: u16 = 5201;

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building or removing the lab: {0}")]
    Lab(#[from] openvpc_lab::LabError),
    #[error("the EC2 API refused {action}: {message}")]
    Api { action: String, message: String },
    #[error("{0}")]
    Setup(String),
    #[error("`{command}` failed: {detail}")]
    Tool { command: String, detail: String },
    #[error("interrupted; the lab was taken down")]
    Interrupted,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `openvpc` binary the lab's server and agents run.
    pub exe: PathBuf,
    /// Seconds per test (`DUR` in the baseline; 10 there).
    pub secs: u32,
    /// Flood pings for the ICMP RTT (`PINGS`; 2000 there).
    pub pings: u32,
    /// Clients on CPU0, servers on CPU1 (`PIN=1`, the baseline's default).
    pub pin: bool,
    /// Extra `openvpc agent` arguments per host ID (`h1`, `h2`).
    pub agent_args: BTreeMap<String, Vec<String>>,
    /// Leave the lab running afterwards (for profiling); its directory is
    /// then kept and reported through progress.
    pub keep: bool,
}

impl BenchConfig {
    /// The baseline's settings: 10 s per test, 2000 pings, pinned.
    pub fn new(exe: PathBuf) -> Self {
        BenchConfig {
            exe,
            secs: 10,
            pings: 2000,
            pin: true,
            agent_args: BTreeMap::new(),
            keep: false,
        }
    }
}

/// What one run measured; `None` where a tool gave no figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub tcp_gbps: Option<f64>,
    pub tcp_retransmits: Option<u64>,
    pub udp64_tx_pps: Option<f64>,
    pub udp64_rx_pps: Option<f64>,
    pub udp64_loss_pct: Option<f64>,
    pub rr_avg_us: Option<f64>,
    pub rr_p50_us: Option<f64>,
    pub rr_p99_us: Option<f64>,
    pub rr_tps: Option<f64>,
    pub icmp_rtt_avg_us: Option<f64>,
    /// A new connection to tcp/5202 timed out (the group dropped it).
    pub sg_drops_tcp5202: Option<bool>,
    /// One TCP stream from vm1 (its Elastic IP) to the outside, through an
    /// edge node; and from the outside to vm1 (`iperf3 -R`).
    pub tcp_outside_gbps: Option<f64>,
    pub tcp_outside_retransmits: Option<u64>,
    pub tcp_from_outside_gbps: Option<f64>,
    /// One TCP stream from vm2 (a private subnet routed to a NAT gateway)
    /// to the outside, through a hyperplane node and an edge; and the
    /// download (`-R`), the update-mirror direction.
    pub tcp_nat_gbps: Option<f64>,
    pub tcp_nat_retransmits: Option<u64>,
    pub tcp_from_nat_gbps: Option<f64>,
    /// TCP request/response from vm1 to vm2 through an internal network
    /// load balancer (a hyperplane node each way), to set against the
    /// direct `rr_*` figures of the same run.
    pub nlb_rr_p50_us: Option<f64>,
    pub nlb_rr_p99_us: Option<f64>,
    pub nlb_rr_tps: Option<f64>,
}

/// The figures compared with the baseline: (key, label, unit, higher is better).
pub const METRICS: [(&str, &str, &str, bool); 9] = [
    ("tcp_gbps", "TCP throughput, 1 stream", "Gbit/s", true),
    ("tcp_retransmits", "TCP retransmits", "count", false),
    ("udp64_tx_pps", "UDP 64 B tx", "pkt/s", true),
    ("udp64_rx_pps", "UDP 64 B rx", "pkt/s", true),
    ("udp64_loss_pct", "UDP 64 B loss", "%", false),
    ("rr_p50_us", "TCP_RR RTT p50", "us", false),
    ("rr_p99_us", "TCP_RR RTT p99", "us", false),
    ("rr_tps", "TCP_RR transactions/s", "trans/s", true),
    ("icmp_rtt_avg_us", "ICMP flood-ping RTT", "us", false),
];

impl Figures {
    /// One figure by its JSON key, as a number.
    pub fn get(&self, key: &str) -> Option<f64> {
        match key {
            "tcp_gbps" => self.tcp_gbps,
            "tcp_retransmits" => self.tcp_retransmits.map(|v| v as f64),
            "udp64_tx_pps" => self.udp64_tx_pps,
            "udp64_rx_pps" => self.udp64_rx_pps,
            "udp64_loss_pct" => self.udp64_loss_pct,
            "rr_avg_us" => self.rr_avg_us,
            "rr_p50_us" => self.rr_p50_us,
            "rr_p99_us" => self.rr_p99_us,
            "rr_tps" => self.rr_tps,
            "icmp_rtt_avg_us" => self.icmp_rtt_avg_us,
            "tcp_outside_gbps" => self.tcp_outside_gbps,
            "tcp_outside_retransmits" => self.tcp_outside_retransmits.map(|v| v as f64),
            "tcp_from_outside_gbps" => self.tcp_from_outside_gbps,
            "tcp_nat_gbps" => self.tcp_nat_gbps,
            "tcp_nat_retransmits" => self.tcp_nat_retransmits.map(|v| v as f64),
            "tcp_from_nat_gbps" => self.tcp_from_nat_gbps,
            "nlb_rr_p50_us" => self.nlb_rr_p50_us,
            "nlb_rr_p99_us" => self.nlb_rr_p99_us,
            "nlb_rr_tps" => self.nlb_rr_tps,
            _ => None,
        }
    }
}

/// The lab, taken down when dropped.
struct LabGuard {
    dir: PathBuf,
    keep: bool,
    /// Programs started inside instances.
    children: Vec<Child>,
}

impl LabGuard {
    fn kill_children(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        self.kill_children();
        if self.keep {
            return;
        }
        let _ = openvpc_lab::down(
            &self.dir,
            |state_dir| {
                let _ = openvpc_agent::remove_instances(state_dir);
            },
            |_| {},
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One instance of the benchmark.
#[derive(Debug, Clone)]
struct Instance {
    id: String,
    ip: String,
}

/// Builds the lab, measures, takes the lab down. `interrupted` is polled
/// between steps (set it from a SIGINT handler).
pub fn run(
    cfg: &BenchConfig,
    interrupted: &AtomicBool,
    mut progress: impl FnMut(&str),
) -> Result<Figures, BenchError> {
    let dir = std::env::temp_dir().join(format!("openvpc-bench-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| BenchError::Io {
        path: dir.clone(),
        source,
    })?;
    let plan = LabPlan::new(&dir, 2, 2, "us-east-1")?
        .with_edges(2)?
        .with_hyperplane_nodes(2)?;
    let outside = plan.outside.as_ref().map(|o| Instance {
        id: o.netns.clone(),
        ip: o.server_ip.to_string(),
    });
    let mut guard = LabGuard {
        dir: dir.clone(),
        keep: cfg.keep,
        children: Vec::new(),
    };
    let launch = Launch {
        exe: cfg.exe.clone(),
        server_args: Vec::new(),
        agent_args: cfg.agent_args.clone(),
        hyperplane_args: Vec::new(),
    };
    progress(&format!("building a 2-host lab in {}", dir.display()));
    let state = openvpc_lab::up(&dir, plan, &launch, |s| progress(&format!("lab: {s}")))?;
    check(interrupted)?;
    let endpoint = state.endpoint.unwrap_or_default();
    let client = client_for(&dir, &endpoint)?;
    let (vm1, vm2, public) = topology(&client, &mut progress)?;
    for vm in [&vm1, &vm2] {
        wait_address(vm, interrupted)?;
    }
    progress(&format!(
        "instances ready: vm1 {} {} on h1, vm2 {} {} on h2",
        vm1.id, vm1.ip, vm2.id, vm2.ip
    ));
    progress(&format!("vm1's Elastic IP: {public}"));
    let figures =
        measure(cfg, &mut guard, &vm1, &vm2, interrupted, &mut progress).and_then(|mut f| {
            let sp = through_nlb(
                cfg,
                &mut guard,
                &client,
                (&vm1, &vm2),
                interrupted,
                &mut progress,
            )?;
            (f.nlb_rr_p50_us, f.nlb_rr_p99_us, f.nlb_rr_tps) = (sp.p50, sp.p99, sp.tps);
            if let Some(outside) = &outside {
                (
                    f.tcp_outside_gbps,
                    f.tcp_outside_retransmits,
                    f.tcp_from_outside_gbps,
                ) = streams_to_outside(
                    cfg,
                    &mut guard,
                    &vm1,
                    outside,
                    "through an edge (vm1's Elastic IP)",
                    &mut progress,
                )?;
                progress("routing vm2's subnet to a NAT gateway");
                nat_for(&client, &vpc_of(&client)?, interrupted, &mut progress)?;
                (f.tcp_nat_gbps, f.tcp_nat_retransmits, f.tcp_from_nat_gbps) = streams_to_outside(
                    cfg,
                    &mut guard,
                    &vm2,
                    outside,
                    "through the NAT gateway",
                    &mut progress,
                )?;
            }
            Ok(f)
        });
    if cfg.keep {
        progress(&format!(
            "lab kept in {}; `openvpc lab down --dir {0}` removes it",
            dir.display()
        ));
    } else {
        progress("taking the lab down");
    }
    drop(guard);
    figures
}

fn check(interrupted: &AtomicBool) -> Result<(), BenchError> {
    if interrupted.load(Ordering::Relaxed) {
        return Err(BenchError::Interrupted);
    }
    Ok(())
}

/// A client for the lab's API with the credentials it wrote.
fn client_for(dir: &Path, endpoint: &str) -> Result<Client, BenchError> {
    let path = dir.join("credentials");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        path: path.clone(),
        source,
    })?;
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
            .ok_or_else(|| BenchError::Setup(format!("{} has no {name}", path.display())))
    };
    Ok(Client::new(
        endpoint,
        &value("aws_access_key_id")?,
        &value("aws_secret_access_key")?,
        "us-east-1",
    ))
}

/// The text of the first `<name>…</name>` in an API response.
fn xml_field(body: &str, name: &str) -> Option<String> {
    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(body[start..start + len].to_owned())
}

/// The ELBv2 Query API (served on the EC2 API's endpoint): its service
/// name and version.
const ELBV2: (&str, &str) = ("elasticloadbalancing", "2015-12-01");

/// Why the API refused `action`, from the client's error.
fn refused(action: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Api {
        action: action.to_owned(),
        message: e.to_string(),
    }
}

/// The first `<field>` of `action`'s answer `body`, which must hold one.
fn answer_field(action: &str, body: &str, field: &str) -> Result<String, BenchError> {
    xml_field(body, field).ok_or_else(|| BenchError::Api {
        action: action.to_owned(),
        message: format!("no <{field}> in the answer: {body}"),
    })
}

fn call(client: &Client, action: &str, params: &[(&str, &str)]) -> Result<String, BenchError> {
    client.call(action, params).map_err(|e| refused(action, e))
}

fn call_field(
    client: &Client,
    action: &str,
    params: &[(&str, &str)],
    field: &str,
) -> Result<String, BenchError> {
    answer_field(action, &call(client, action, params)?, field)
}

/// One VPC 10.0.0.0/16, subnets 10.0.1.0/24 (AZ a, host h1) and
/// 10.0.2.0/24 (AZ b, host h2) as in the baseline, the group, and one
/// instance in each subnet; an internet gateway with the main table's
/// default route to it, and an Elastic IP on vm1 (returned).
fn topology(
    client: &Client,
    progress: &mut impl FnMut(&str),
) -> Result<(Instance, Instance, String), BenchError> {
    progress("creating the VPC, subnets, security group and instances");
    let vpc = call_field(
        client,
        "CreateVpc",
        &[("CidrBlock", "10.0.0.0/16")],
        "vpcId",
    )?;
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.0.1.0/24", "us-east-1a"), ("10.0.2.0/24", "us-east-1b")] {
        subnets.push(call_field(
            client,
            "CreateSubnet",
            &[
                ("VpcId", &vpc),
                ("CidrBlock", cidr),
                ("AvailabilityZone", az),
            ],
            "subnetId",
        )?);
    }
    let group = call_field(
        client,
        "CreateSecurityGroup",
        &[
            ("VpcId", &vpc),
            ("GroupName", "bench"),
            ("GroupDescription", "like kernel-baseline.sh's nftables"),
        ],
        "groupId",
    )?;
    // The baseline's group: new tcp/5201, udp/5201 and ICMP echo in; the
    // rest dropped; replies by connection tracking. Egress stays open.
    for (proto, from, to) in [
        ("tcp", "5201", "5201"),
        ("udp", "5201", "5201"),
        ("icmp", "8", "-1"),
    ] {
        call(
            client,
            "AuthorizeSecurityGroupIngress",
            &[
                ("GroupId", &group),
                ("IpProtocol", proto),
                ("FromPort", from),
                ("ToPort", to),
                ("CidrIp", "10.0.0.0/16"),
            ],
        )?;
    }
    let mut vms = Vec::new();
    for (subnet, ip) in subnets.iter().zip(["10.0.1.10", "10.0.2.10"]) {
        let body = call(
            client,
            "RunInstances",
            &[
                ("ImageId", "ami-12345678"),
                ("MinCount", "1"),
                ("MaxCount", "1"),
                ("SubnetId", subnet),
                ("SecurityGroupId.1", &group),
                ("PrivateIpAddress", ip),
            ],
        )?;
        let id = xml_field(&body, "instanceId").ok_or_else(|| BenchError::Api {
            action: "RunInstances".into(),
            message: format!("no instance ID in {body}"),
        })?;
        vms.push(Instance {
            id,
            ip: ip.to_owned(),
        });
    }
    let vm2 = vms.pop();
    let vm1 = vms.pop();
    let (Some(vm1), Some(vm2)) = (vm1, vm2) else {
        return Err(BenchError::Setup("RunInstances gave no instances".into()));
    };
    let igw = call_field(client, "CreateInternetGateway", &[], "internetGatewayId")?;
    call(
        client,
        "AttachInternetGateway",
        &[("InternetGatewayId", &igw), ("VpcId", &vpc)],
    )?;
    let table = call_field(
        client,
        "DescribeRouteTables",
        &[("Filter.1.Name", "vpc-id"), ("Filter.1.Value.1", &vpc)],
        "routeTableId",
    )?;
    call(
        client,
        "CreateRoute",
        &[
            ("RouteTableId", &table),
            ("DestinationCidrBlock", "0.0.0.0/0"),
            ("GatewayId", &igw),
        ],
    )?;
    let allocated = call(client, "AllocateAddress", &[("Domain", "vpc")])?;
    let (Some(alloc), Some(public)) = (
        xml_field(&allocated, "allocationId"),
        xml_field(&allocated, "publicIp"),
    ) else {
        return Err(BenchError::Api {
            action: "AllocateAddress".into(),
            message: format!("no address in {allocated}"),
        });
    };
    call(
        client,
        "AssociateAddress",
        &[("AllocationId", &alloc), ("InstanceId", &vm1.id)],
    )?;
    Ok((vm1, vm2, public))
}

/// `ip netns exec INSTANCE ARGS…`.
fn in_instance(instance: &Instance, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &instance.id]).args(args);
    cmd
}

fn output(mut cmd: Command) -> Result<Output, BenchError> {
    let command = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| BenchError::Tool {
            command,
            detail: e.to_string(),
        })
}

/// Waits up to 60 s for DHCP to give the instance its address.
fn wait_address(vm: &Instance, interrupted: &AtomicBool) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        check(interrupted)?;
        if openvpc_lab::netns_exists(&vm.id) {
            let out = output(in_instance(
                vm,
                &["ip", "-4", "-o", "addr", "show", "dev", "eth0"],
            ))?;
            if String::from_utf8_lossy(&out.stdout).contains(&format!("inet {}/", vm.ip)) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "{} did not get {} over DHCP within 60 s",
                vm.id, vm.ip
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until something in `vm` listens on tcp `port`.
fn wait_listen(vm: &Instance, port: u16) -> Result<(), BenchError> {
    for _ in 0..100 {
        let out = output(in_instance(vm, &["ss", "-ltn"]))?;
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(BenchError::Setup(format!(
        "the server in {} did not listen on tcp/{port}",
        vm.id
    )))
}

/// `taskset -c CPU` when pinning, as the baseline's CLI/SRV arrays.
fn pinned(cfg: &BenchConfig, cpu: u32, args: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    if cfg.pin && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2 {
        v.extend(["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]);
    }
    v.extend(args.iter().map(|s| (*s).to_owned()));
    v
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn spawn_server(guard: &mut LabGuard, vm: &Instance, args: &[String]) -> Result<usize, BenchError> {
    let mut cmd = in_instance(vm, &strs(args));
    let command = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Tool {
            command,
            detail: e.to_string(),
        })?;
    guard.children.push(child);
    Ok(guard.children.len() - 1)
}

fn stop_server(guard: &mut LabGuard, index: usize) {
    let mut child = guard.children.remove(index);
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for an `iperf3 -s -1` to exit on its own after its one test.
fn reap_server(guard: &mut LabGuard, index: usize) {
    let mut child = guard.children.remove(index);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn measure(
    cfg: &BenchConfig,
    guard: &mut LabGuard,
    vm1: &Instance,
    vm2: &Instance,
    interrupted: &AtomicBool,
    progress: &mut impl FnMut(&str),
) -> Result<Figures, BenchError> {
    let mut f = Figures::default();
    let secs = cfg.secs.max(1).to_string();
    let port = PORT.to_string();
    let limit = (cfg.secs + 30).to_string();
    // The first packets of a flow wait for the mapping lookup.
    let ping = output(in_instance(
        vm1,
        &["ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", &vm2.ip],
    ))?;
    if !ping.status.success() {
        return Err(BenchError::Setup(format!(
            "vm1 cannot reach vm2 ({})",
            String::from_utf8_lossy(&ping.stdout).trim()
        )));
    }
    check(interrupted)?;

    // The group drops a new connection to tcp/5202 (times out, not refused).
    let probe = format!("exec 3<>/dev/tcp/{}/5202", vm2.ip);
    let out = output(in_instance(vm1, &["timeout", "2", "bash", "-c", &probe]))?;
    f.sg_drops_tcp5202 = Some(out.status.code() == Some(124));

    // 1. TCP request/response.
    progress(&format!("sockperf ping-pong --tcp -m 64, {secs} s"));
    let srv = sockperf_server(cfg, guard, vm2)?;
    let sp = sockperf_ping_pong(cfg, vm1, &vm2.ip)?;
    stop_server(guard, srv);
    (f.rr_avg_us, f.rr_p50_us, f.rr_p99_us, f.rr_tps) = (sp.avg, sp.p50, sp.p99, sp.tps);
    check(interrupted)?;

    // 2. ICMP flood-ping RTT.
    progress(&format!("ping -f -c {}", cfg.pings));
    let pings = cfg.pings.to_string();
    let out = output(in_instance(
        vm1,
        &strs(
            &[
                vec!["timeout".to_owned(), "60".to_owned()],
                pinned(cfg, 0, &["ping", "-f", "-q", "-c", &pings, &vm2.ip]),
            ]
            .concat(),
        ),
    ))?;
    f.icmp_rtt_avg_us = parse_ping_avg_ms(&String::from_utf8_lossy(&out.stdout)).map(|ms| ms * 1e3);
    check(interrupted)?;

    // 3. TCP throughput, one stream.
    progress(&format!("iperf3 TCP, one stream, {secs} s"));
    let iperf_server = pinned(cfg, 1, &["iperf3", "-s", "-1", "-B", &vm2.ip, "-p", &port]);
    let srv = spawn_server(guard, vm2, &iperf_server)?;
    wait_listen(vm2, PORT)?;
    let j = iperf_client(cfg, vm1, vm2, &limit, &["-t", &secs])?;
    reap_server(guard, srv);
    f.tcp_gbps = j
        .pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .map(|b| (b / 1e9 * 100.0).round() / 100.0);
    f.tcp_retransmits = Some(
        j.pointer("/end/sum_sent/retransmits")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    );
    check(interrupted)?;

    // 4. UDP, 64-byte payload, unlimited rate.
    progress(&format!("iperf3 UDP -l 64 -b 0, {secs} s"));
    let srv = spawn_server(guard, vm2, &iperf_server)?;
    wait_listen(vm2, PORT)?;
    let j = iperf_client(
        cfg,
        vm1,
        vm2,
        &limit,
        &["-u", "-l", "64", "-b", "0", "-t", &secs],
    )?;
    reap_server(guard, srv);
    let num = |p: &str| j.pointer(p).and_then(serde_json::Value::as_f64);
    if let (Some(packets), Some(lost), Some(seconds)) = (
        num("/end/sum/packets"),
        num("/end/sum/lost_packets"),
        num("/end/sum/seconds"),
    ) && seconds > 0.0
    {
        f.udp64_tx_pps = Some((packets / seconds).round());
        f.udp64_rx_pps = Some(((packets - lost) / seconds).round());
    }
    f.udp64_loss_pct = num("/end/sum/lost_percent").map(|l| (l * 100.0).round() / 100.0);
    Ok(f)
}

/// sockperf's TCP server in `vm` on [`PORT`], listening.
fn sockperf_server(
    cfg: &BenchConfig,
    guard: &mut LabGuard,
    vm: &Instance,
) -> Result<usize, BenchError> {
    let port = PORT.to_string();
    let srv = spawn_server(
        guard,
        vm,
        &pinned(
            cfg,
            1,
            &[
                "sockperf",
                "server",
                "--tcp",
                "--uc-reuseaddr",
                "-i",
                &vm.ip,
                "-p",
                &port,
            ],
        ),
    )?;
    wait_listen(vm, PORT)?;
    Ok(srv)
}

/// sockperf ping-pong (TCP, 64 B) from `vm` to `to`:[`PORT`].
fn sockperf_ping_pong(cfg: &BenchConfig, vm: &Instance, to: &str) -> Result<Sockperf, BenchError> {
    let (secs, port) = (cfg.secs.max(1).to_string(), PORT.to_string());
    let limit = (cfg.secs + 30).to_string();
    let out = output(in_instance(
        vm,
        &strs(
            &[
                vec!["timeout".to_owned(), limit],
                pinned(
                    cfg,
                    0,
                    &[
                        "sockperf",
                        "ping-pong",
                        "--tcp",
                        "-i",
                        to,
                        "-p",
                        &port,
                        "-m",
                        "64",
                        "-t",
                        &secs,
                        "--full-rtt",
                    ],
                ),
            ]
            .concat(),
        ),
    ))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(parse_sockperf(&text))
}

fn elbv2(client: &Client, action: &str, params: &[(&str, &str)]) -> Result<String, BenchError> {
    let (service, version) = ELBV2;
    client
        .call_service(service, version, action, params)
        .map_err(|e| refused(action, e))
}

fn elbv2_field(
    client: &Client,
    action: &str,
    params: &[(&str, &str)],
    field: &str,
) -> Result<String, BenchError> {
    answer_field(action, &elbv2(client, action, params)?, field)
}

/// Waits up to 60 s for `ready` to hold, polling every 250 ms; past that,
/// fails with "`what` after 60 s" and `hint` (a likely cause, or "").
fn wait_for(
    what: &str,
    hint: &str,
    interrupted: &AtomicBool,
    mut ready: impl FnMut() -> Result<bool, BenchError>,
) -> Result<(), BenchError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready()? {
        check(interrupted)?;
        if std::time::Instant::now() > deadline {
            return Err(BenchError::Setup(format!("{what} after 60 s{hint}")));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

/// TCP request/response through an internal network load balancer: vm2
/// (its sockperf server) the only target of a TCP listener on [`PORT`],
/// the load balancer's address in vm2's subnet; sockperf from vm1 to that
/// address. The listener waits for vm2 to be healthy.
fn through_nlb(
    cfg: &BenchConfig,
    guard: &mut LabGuard,
    client: &Client,
    (vm1, vm2): (&Instance, &Instance),
    interrupted: &AtomicBool,
    progress: &mut impl FnMut(&str),
) -> Result<Sockperf, BenchError> {
    let vpc = vpc_of(client)?;
    let subnet = call_field(
        client,
        "DescribeSubnets",
        &[
            ("Filter.1.Name", "cidr-block"),
            ("Filter.1.Value.1", "10.0.2.0/24"),
        ],
        "subnetId",
    )?;
    let port = PORT.to_string();
    let tg = elbv2_field(
        client,
        "CreateTargetGroup",
        &[
            ("Name", "bench"),
            ("Protocol", "TCP"),
            ("Port", &port),
            ("VpcId", &vpc),
            ("TargetType", "instance"),
            ("HealthCheckIntervalSeconds", "5"),
            ("HealthCheckTimeoutSeconds", "2"),
            ("HealthyThresholdCount", "2"),
        ],
        "TargetGroupArn",
    )?;
    elbv2(
        client,
        "RegisterTargets",
        &[("TargetGroupArn", &tg), ("Targets.member.1.Id", &vm2.id)],
    )?;
    let lb = elbv2_field(
        client,
        "CreateLoadBalancer",
        &[
            ("Name", "bench"),
            ("Type", "network"),
            ("Scheme", "internal"),
            ("Subnets.member.1", &subnet),
        ],
        "LoadBalancerArn",
    )?;
    elbv2(
        client,
        "CreateListener",
        &[
            ("LoadBalancerArn", &lb),
            ("Protocol", "TCP"),
            ("Port", &port),
            ("DefaultActions.member.1.Type", "forward"),
            ("DefaultActions.member.1.TargetGroupArn", &tg),
        ],
    )?;
    let srv = sockperf_server(cfg, guard, vm2)?;
    let mut front = String::new();
    wait_for("the load balancer is not active", "", interrupted, || {
        let body = elbv2(
            client,
            "DescribeLoadBalancers",
            &[("LoadBalancerArns.member.1", &lb)],
        )?;
        front = xml_field(&body, "PrivateIPv4Address").unwrap_or_default();
        Ok(xml_field(&body, "Code").as_deref() == Some("active") && !front.is_empty())
    })?;
    wait_for("vm2 is not a healthy target", "", interrupted, || {
        let body = elbv2(client, "DescribeTargetHealth", &[("TargetGroupArn", &tg)])?;
        Ok(xml_field(&body, "State").as_deref() == Some("healthy"))
    })?;
    progress(&format!(
        "sockperf ping-pong --tcp -m 64 through the load balancer ({front}), {} s",
        cfg.secs.max(1)
    ));
    let sp = sockperf_ping_pong(cfg, vm1, &front);
    stop_server(guard, srv);
    sp
}

/// The VPC of the bench's subnets (the region may hold a default VPC too).
fn vpc_of(client: &Client) -> Result<String, BenchError> {
    call_field(
        client,
        "DescribeSubnets",
        &[
            ("Filter.1.Name", "cidr-block"),
            ("Filter.1.Value.1", "10.0.2.0/24"),
        ],
        "vpcId",
    )
}

/// A public subnet (the main table's route to the internet gateway) with a
/// NAT gateway on a new Elastic IP, and vm2's subnet (10.0.2.0/24) routed
/// to it by a table of its own; returns once the gateway is `available`
/// (or fails when the run is interrupted meanwhile).
fn nat_for(
    client: &Client,
    vpc: &str,
    interrupted: &AtomicBool,
    progress: &mut impl FnMut(&str),
) -> Result<(), BenchError> {
    let public = call_field(
        client,
        "CreateSubnet",
        &[
            ("VpcId", vpc),
            ("CidrBlock", "10.0.9.0/24"),
            ("AvailabilityZone", "us-east-1a"),
        ],
        "subnetId",
    )?;
    let alloc = call_field(
        client,
        "AllocateAddress",
        &[("Domain", "vpc")],
        "allocationId",
    )?;
    let nat = call_field(
        client,
        "CreateNatGateway",
        &[("SubnetId", &public), ("AllocationId", &alloc)],
        "natGatewayId",
    )?;
    wait_for(
        &format!("NAT gateway {nat} is not available"),
        ": is a hyperplane node running?",
        interrupted,
        || {
            let body = call(client, "DescribeNatGateways", &[("NatGatewayId.1", &nat)])?;
            match xml_field(&body, "state").as_deref() {
                Some("available") => Ok(true),
                Some("failed") => Err(BenchError::Setup(format!(
                    "NAT gateway {nat} failed: {}",
                    xml_field(&body, "failureMessage").unwrap_or_default()
                ))),
                _ => Ok(false),
            }
        },
    )?;
    progress(&format!("NAT gateway {nat} available"));
    let table = call_field(
        client,
        "CreateRouteTable",
        &[("VpcId", vpc)],
        "routeTableId",
    )?;
    call(
        client,
        "CreateRoute",
        &[
            ("RouteTableId", &table),
            ("DestinationCidrBlock", "0.0.0.0/0"),
            ("NatGatewayId", &nat),
        ],
    )?;
    let private = call_field(
        client,
        "DescribeSubnets",
        &[
            ("Filter.1.Name", "cidr-block"),
            ("Filter.1.Value.1", "10.0.2.0/24"),
        ],
        "subnetId",
    )?;
    call(
        client,
        "AssociateRouteTable",
        &[("RouteTableId", &table), ("SubnetId", &private)],
    )?;
    Ok(())
}

/// An iperf3 report's received rate, in Gbit/s to two decimals.
fn gbps(j: &serde_json::Value) -> Option<f64> {
    j.pointer("/end/sum_received/bits_per_second")
        .and_then(serde_json::Value::as_f64)
        .map(|b| (b / 1e9 * 100.0).round() / 100.0)
}

/// Gbit/s out, retransmits out, Gbit/s back.
type StreamPair = (Option<f64>, Option<u64>, Option<f64>);

/// Streams to and from the outside: one TCP stream from `vm` to a
/// server in the outside namespace, then one back (`iperf3 -R`), `via`
/// naming the path in the progress lines.
fn streams_to_outside(
    cfg: &BenchConfig,
    guard: &mut LabGuard,
    vm: &Instance,
    outside: &Instance,
    via: &str,
    progress: &mut impl FnMut(&str),
) -> Result<StreamPair, BenchError> {
    let secs = cfg.secs.max(1).to_string();
    let port = PORT.to_string();
    let limit = (cfg.secs + 30).to_string();
    let server = pinned(
        cfg,
        1,
        &["iperf3", "-s", "-1", "-B", &outside.ip, "-p", &port],
    );
    let mut run = |reverse: bool| {
        progress(&format!(
            "iperf3 TCP{}, one stream, {} the outside ({}) {via}, {secs} s",
            if reverse { " -R" } else { "" },
            if reverse { "from" } else { "to" },
            outside.ip
        ));
        let srv = spawn_server(guard, outside, &server)?;
        wait_listen(outside, PORT)?;
        let mut args = vec!["-t", secs.as_str()];
        if reverse {
            args.push("-R");
        }
        let j = iperf_client(cfg, vm, outside, &limit, &args);
        reap_server(guard, srv);
        j
    };
    let out = run(false)?;
    let back = run(true)?;
    Ok((
        gbps(&out),
        out.pointer("/end/sum_sent/retransmits")
            .and_then(serde_json::Value::as_u64),
        gbps(&back),
    ))
}

/// The edge's figures, next to the same lab's instance-to-instance stream.
fn outside_lines(ours: &Figures) -> String {
    let ratio = |v: Option<f64>| match (v, ours.tcp_gbps) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    format!(
        "{:<26} {:>12} Gbit/s  ({} of instance-to-instance, {} retransmits)\n{:<26} {:>12} Gbit/s  ({} of instance-to-instance)\n",
        "TCP vm1 -> outside (edge)",
        fmt(ours.tcp_outside_gbps),
        ratio(ours.tcp_outside_gbps),
        ours.tcp_outside_retransmits
            .map_or("-".into(), |r| r.to_string()),
        "TCP outside -> vm1 (edge)",
        fmt(ours.tcp_from_outside_gbps),
        ratio(ours.tcp_from_outside_gbps),
    ) + &format!(
        "{:<26} {:>12} Gbit/s  ({} of instance-to-instance, {} retransmits)\n{:<26} {:>12} Gbit/s  ({} of instance-to-instance)\n",
        "TCP vm2 -> outside (NAT)",
        fmt(ours.tcp_nat_gbps),
        ratio(ours.tcp_nat_gbps),
        ours.tcp_nat_retransmits
            .map_or("-".into(), |r| r.to_string()),
        "TCP outside -> vm2 (NAT)",
        fmt(ours.tcp_from_nat_gbps),
        ratio(ours.tcp_from_nat_gbps),
    )
}

/// The load balancer's request/response figures, with what it adds to the
/// same run's direct figures.
fn nlb_lines(ours: &Figures) -> String {
    let added = |via: Option<f64>, direct: Option<f64>| match (via, direct) {
        (Some(a), Some(b)) => format!("+{:.1} us over direct", a - b),
        _ => "-".into(),
    };
    format!(
        "{:<26} {:>12} us  ({})\n{:<26} {:>12} us  ({})\n{:<26} {:>12} trans/s\n",
        "TCP_RR RTT p50 via NLB",
        fmt(ours.nlb_rr_p50_us),
        added(ours.nlb_rr_p50_us, ours.rr_p50_us),
        "TCP_RR RTT p99 via NLB",
        fmt(ours.nlb_rr_p99_us),
        added(ours.nlb_rr_p99_us, ours.rr_p99_us),
        "TCP_RR via NLB",
        fmt(ours.nlb_rr_tps),
    )
}

/// Runs the iperf3 client in vm1 with `-J` and parses its report.
fn iperf_client(
    cfg: &BenchConfig,
    vm1: &Instance,
    vm2: &Instance,
    limit: &str,
    extra: &[&str],
) -> Result<serde_json::Value, BenchError> {
    let port = PORT.to_string();
    let mut args = vec!["iperf3", "-c", &vm2.ip, "-p", &port];
    args.extend_from_slice(extra);
    args.push("-J");
    let out = output(in_instance(
        vm1,
        &strs(
            &[
                vec!["timeout".to_owned(), limit.to_owned()],
                pinned(cfg, 0, &args),
            ]
            .concat(),
        ),
    ))?;
    let j: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Tool {
            command: format!("iperf3 {}", args.join(" ")),
            detail: format!(
                "unreadable JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            ),
        })?;
    if let Some(err) = j.get("error").and_then(serde_json::Value::as_str) {
        return Err(BenchError::Tool {
            command: format!("iperf3 {}", args.join(" ")),
            detail: err.to_owned(),
        });
    }
    Ok(j)
}

/// sockperf's summary figures.
#[derive(Debug, Default, PartialEq)]
struct Sockperf {
    avg: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    tps: Option<f64>,
}

/// Reads sockperf ping-pong's report as the baseline's sed lines do.
fn parse_sockperf(text: &str) -> Sockperf {
    let mut s = Sockperf::default();
    let number = |t: &str| {
        t.trim()
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .and_then(|n| n.parse::<f64>().ok())
    };
    for line in text.lines() {
        if let Some((_, rest)) = line.split_once("avg-rtt=") {
            s.avg = number(rest);
        }
        if let Some((_, rest)) = line.split_once("percentile 50.000 =") {
            s.p50 = number(rest);
        }
        if let Some((_, rest)) = line.split_once("percentile 99.000 =") {
            s.p99 = number(rest);
        }
        if let Some((_, rest)) = line.split_once("[Valid Duration] RunTime=") {
            let runtime = number(rest);
            let sent = rest
                .split_once("SentMessages=")
                .and_then(|(_, m)| number(m));
            if let (Some(r), Some(m)) = (runtime, sent)
                && r > 0.0
            {
                s.tps = Some((m / r).floor());
            }
        }
    }
    s
}

/// The average of `ping -q`'s `rtt min/avg/max/mdev = a/b/c/d ms`.
fn parse_ping_avg_ms(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains("min/avg/max"))?;
    let (_, values) = line.split_once('=')?;
    values.trim().split('/').nth(1)?.parse().ok()
}

/// The baseline's figures for one variant (`kernel`, `ovs`), by our keys.
pub type Baseline = BTreeMap<String, Figures>;

/// Reads the JSON `kernel-baseline.sh` writes.
pub fn parse_baseline(json: &[u8]) -> Result<Baseline, serde_json::Error> {
    let v: serde_json::Value = serde_json::from_slice(json)?;
    let mut out = Baseline::new();
    for r in v["results"].as_array().into_iter().flatten() {
        let (Some(variant), Some(metric)) = (r["variant"].as_str(), r["metric"].as_str()) else {
            continue;
        };
        let f = out.entry(variant.to_owned()).or_default();
        let x = r["value"].as_f64();
        match metric {
            "tcp_throughput" => f.tcp_gbps = x,
            "tcp_retransmits" => f.tcp_retransmits = r["value"].as_u64(),
            "udp64_tx_pps" => f.udp64_tx_pps = x,
            "udp64_rx_pps" => f.udp64_rx_pps = x,
            "udp64_loss" => f.udp64_loss_pct = x,
            "tcp_rr_rtt_avg" => f.rr_avg_us = x,
            "tcp_rr_rtt_p50" => f.rr_p50_us = x,
            "tcp_rr_rtt_p99" => f.rr_p99_us = x,
            "tcp_rr_tps" => f.rr_tps = x,
            "icmp_rtt_avg" => f.icmp_rtt_avg_us = x,
            "sg_drops_tcp5202" => f.sg_drops_tcp5202 = r["value"].as_bool(),
            _ => {}
        }
    }
    Ok(out)
}

/// Runs `kernel-baseline.sh` with `DUR=secs` and reads what it wrote.
pub fn run_baseline(
    script: &Path,
    secs: u32,
    mut progress: impl FnMut(&str),
) -> Result<Baseline, BenchError> {
    let out = std::env::temp_dir().join(format!("openvpc-kbl-{}.json", std::process::id()));
    progress(&format!(
        "running {} (DUR={secs}; about 90 s at 10 s)",
        script.display()
    ));
    let status = Command::new("bash")
        .arg(script)
        .arg(&out)
        .env("DUR", secs.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|source| BenchError::Io {
            path: script.to_owned(),
            source,
        })?;
    if !status.success() {
        return Err(BenchError::Tool {
            command: script.display().to_string(),
            detail: format!("exited with {status}"),
        });
    }
    let text = std::fs::read(&out).map_err(|source| BenchError::Io {
        path: out.clone(),
        source,
    })?;
    let _ = std::fs::remove_file(&out);
    parse_baseline(&text).map_err(|e| BenchError::Tool {
        command: script.display().to_string(),
        detail: format!("unreadable JSON: {e}"),
    })
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
    }
}

/// Ours next to the kernel and OVS, with ours/theirs ratios.
pub fn compare_table(ours: &Figures, baseline: &Baseline) -> String {
    let none = Figures::default();
    let kernel = baseline.get("kernel").unwrap_or(&none);
    let ovs = baseline.get("ovs").unwrap_or(&none);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let mut s = format!(
        "{:<26} {:>8} {:>12} {:>12} {:>12} {:>10} {:>10}\n",
        "metric", "unit", "openvpc", "kernel", "ovs", "/kernel", "/ovs"
    );
    for (key, label, unit, _) in METRICS {
        let (a, k, o) = (ours.get(key), kernel.get(key), ovs.get(key));
        s.push_str(&format!(
            "{label:<26} {unit:>8} {:>12} {:>12} {:>12} {:>10} {:>10}\n",
            fmt(a),
            fmt(k),
            fmt(o),
            ratio(a, k),
            ratio(a, o)
        ));
    }
    s.push_str(&outside_lines(ours));
    s.push_str(&nlb_lines(ours));
    s
}

/// Our figures alone.
pub fn table(ours: &Figures) -> String {
    let mut s = String::new();
    for (key, label, unit, _) in METRICS {
        s.push_str(&format!("{label:<26} {:>12} {unit}\n", fmt(ours.get(key))));
    }
    s.push_str(&format!(
        "{:<26} {:>12}\n",
        "SG drops new tcp/5202",
        ours.sg_drops_tcp5202.map_or("-".into(), |b| b.to_string())
    ));
    s.push_str(&outside_lines(ours));
    s.push_str(&nlb_lines(ours));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from sockperf 3.7 ping-pong --full-rtt.
    const SOCKPERF: &str = "\
sockperf: [Total Run] RunTime=10.000 sec; Warm up time=400 msec; SentMessages=118000; ReceivedMessages=117999
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=9.550 sec; SentMessages=110977; ReceivedMessages=110977
sockperf: ====> avg-rtt=86.042 (std-dev=12.474)
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Round trip is 86.042 usec
sockperf: ---> <MAX> observation = 1030.123
sockperf: ---> percentile 99.999 =  903.226
sockperf: ---> percentile 99.000 =  146.112
sockperf: ---> percentile 50.000 =   83.456
sockperf: ---> <MIN> observation =   40.201
";

    #[test]
    fn reads_sockperf() {
        let s = parse_sockperf(SOCKPERF);
        assert_eq!(s.avg, Some(86.042));
        assert_eq!(s.p50, Some(83.456));
        assert_eq!(s.p99, Some(146.112));
        assert_eq!(s.tps, Some((110_977.0f64 / 9.55).floor()));
    }

    #[test]
    fn reads_ping() {
        let text = "2000 packets transmitted, 2000 received, 0% packet loss, time 120ms\n\
                    rtt min/avg/max/mdev = 0.003/0.005/0.045/0.002 ms, ipg/ewma 0.060/0.005 ms\n";
        assert_eq!(parse_ping_avg_ms(text), Some(0.005));
    }

    #[test]
    fn reads_the_baseline_json() {
        let json = br#"{"results":[
            {"variant":"kernel","metric":"tcp_throughput","value":15.0,"unit":"Gbit/s"},
            {"variant":"kernel","metric":"udp64_rx_pps","value":264000,"unit":"pkt/s"},
            {"variant":"ovs","metric":"tcp_rr_rtt_p50","value":167,"unit":"us"},
            {"variant":"ovs","metric":"sg_drops_tcp5202","value":true,"unit":"bool"}]}"#;
        let b = parse_baseline(json).unwrap();
        assert_eq!(b["kernel"].tcp_gbps, Some(15.0));
        assert_eq!(b["kernel"].udp64_rx_pps, Some(264_000.0));
        assert_eq!(b["ovs"].rr_p50_us, Some(167.0));
        assert_eq!(b["ovs"].sg_drops_tcp5202, Some(true));
        let ours = Figures {
            tcp_gbps: Some(7.5),
            ..Figures::default()
        };
        let t = compare_table(&ours, &b);
        assert!(t.contains("0.50x"), "{t}");
    }

    #[test]
    fn reads_xml_fields() {
        let body = "<CreateVpcResponse><vpc><vpcId>vpc-1</vpcId></vpc></CreateVpcResponse>";
        assert_eq!(xml_field(body, "vpcId").as_deref(), Some("vpc-1"));
        assert_eq!(xml_field(body, "subnetId"), None);
    }
}
