//! Flow logs end to end, in a lab (issue 18, spec 8): the aws CLI makes a
//! VPC with two instances and four flow logs — the VPC to S3 as plain
//! text, one ENI to S3 as Parquet with Hive-compatible, per-hour prefixes,
//! the subnet to CloudWatch Logs in a custom version-3 format, and one ENI
//! to a bucket that cannot be written. Real programs make the traffic
//! (ping, curl, python's HTTP server, a UDP query to the resolver's
//! address); the test then reads what was written the way a user would:
//! `zcat` for the text files, DuckDB for the Parquet ones, and `aws logs
//! filter-log-events` for the log group.
//!
//! An internal network load balancer in the first VPC forwards port 80
//! to the second instance's port 22: the VPC's flow log covers its ENI
//! too (records of the client coming in and of the target going out). A
//! second VPC sends a private instance's HTTP session through a NAT
//! gateway whose ENI has a flow log in spec 8.2's custom format
//! `${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}` (the hyperplane
//! nodes count what they translate and send the records).
//!
//! Checked (spec 8.1 and 8.2's acceptance list): every text line matches
//! the default format (or its NODATA / SKIPDATA form) under the header;
//! the object keys follow the documented layout; a connection to a port
//! the group does not open is `REJECT OK` with its port; the ping's
//! packets and bytes add up to what was sent, per direction; the
//! resolver's traffic is absent; the custom format shows version 3 and a
//! short TCP session's flags; and the unwritable destination makes its
//! flow log `FAILED` with the reason while the others stay `SUCCESS`. On
//! the NAT gateway's ENI: version 3, translated return traffic whose
//! `srcaddr` (the gateway) is not its `pkt-srcaddr` (the outside server),
//! and the short session's flags 3 and 19.
//!
//! Needs root (namespaces, TAP devices), the aws CLI and DuckDB from
//! scripts/test's venv and BIRD; without them the test says why and skips
//! (CI runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lab::{Instance, Lab, aws_with, exec};

const VPC_CIDR: &str = "10.60.0.0/16";
const BUCKET: &str = "flow-bucket";
const BAD_BUCKET: &str = "unwritable-bucket";
const LOG_GROUP: &str = "vpc-flow";
const PINGS: u64 = 10;
/// An ICMP echo of ping's default 56 bytes of data: 84 bytes of IP.
const PING_IP_BYTES: u64 = 84;
/// Version 3 fields only: `version` must say 3.
const CUSTOM: &str = "${version} ${interface-id} ${srcaddr} ${pkt-srcaddr} ${dstport} ${protocol} ${tcp-flags} ${action} ${log-status}";
/// spec 8.2's format for the NAT gateway's ENI.
const NAT_FORMAT: &str = "${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}";
const NAT_LOG_GROUP: &str = "nat-flow";
/// The outside's HTTP server for the NAT gateway's session.
const OUTSIDE_PORT: u16 = 8099;

/// An internal network load balancer in `subnet` forwarding TCP 80 to
/// `target`'s port 22; its ENI and address once the target is healthy.
fn nlb_to(lab: &Lab, vpc: &str, subnet: &str, target: &Instance) -> (String, String) {
    let tg = lab.nlb_target_group(vpc, "fl-web", "TCP", 22, None);
    lab.register_targets(&tg, &[&target.id]);
    let v = lab.elbv2(&[
        "create-load-balancer",
        "--name",
        "fl-web",
        "--type",
        "network",
        "--scheme",
        "internal",
        "--subnets",
        subnet,
    ]);
    let arn = v["LoadBalancers"][0]["LoadBalancerArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = arn.rsplit('/').next().unwrap().to_owned();
    lab.listener(&arn, "TCP", 80, &tg);
    let enis = lab.ec2(&[
        "describe-network-interfaces",
        "--filters",
        &format!("Name=description,Values=ELB net/fl-web/{id}"),
    ]);
    let eni = &enis["NetworkInterfaces"][0];
    let (eni_id, ip) = (
        eni["NetworkInterfaceId"].as_str().unwrap().to_owned(),
        eni["PrivateIpAddress"].as_str().unwrap().to_owned(),
    );
    wait_for(
        "the NLB's target to be healthy",
        Duration::from_secs(60),
        || {
            let v = lab.elbv2(&["describe-target-health", "--target-group-arn", &tg]);
            (v["TargetHealthDescriptions"][0]["TargetHealth"]["State"] == "healthy").then_some(())
        },
    );
    (eni_id, ip)
}

/// A VPC with an internet gateway, a NAT gateway in its public subnet and
/// a private instance whose default route is the NAT gateway; returns the
/// instance, the gateway's ENI and its private address.
fn nat_vpc(lab: &Lab) -> (Instance, String, String) {
    let (vpc, _igw, _main) = lab.internet_vpc("10.61.0.0/16");
    let public = lab.subnet(&vpc, "10.61.0.0/24", "us-east-1a", false);
    let (nat, _eip) = lab.public_nat_gateway(&public);
    let private = lab.subnet(&vpc, "10.61.1.0/24", "us-east-1a", false);
    let table = lab.route_table(&vpc, &[&private]);
    let gateway = wait_for(
        "the NAT gateway to be available",
        Duration::from_secs(60),
        || {
            let v = lab.ec2(&["describe-nat-gateways", "--nat-gateway-ids", &nat]);
            let g = v["NatGateways"][0].clone();
            (g["State"] == "available").then_some(g)
        },
    );
    lab.route(&table, "0.0.0.0/0", &["--nat-gateway-id", &nat]);
    let group = lab.group(&vpc, "nat-private", &[]);
    let instance = lab.instance(&private, &group, None);
    let address = &gateway["NatGatewayAddresses"][0];
    (
        instance,
        address["NetworkInterfaceId"].as_str().unwrap().to_owned(),
        address["PrivateIp"].as_str().unwrap().to_owned(),
    )
}

/// Every file under `dir` whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, suffix));
        } else if p.to_string_lossy().ends_with(suffix) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The lines of every text file, header lines included.
fn text_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for f in files(dir, ".log.gz") {
        let out = Command::new("zcat").arg(&f).output().unwrap();
        assert!(out.status.success(), "zcat {f:?}: {out:?}");
        lines.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    lines
}

fn flow_log(lab: &Lab, args: &[&str]) -> String {
    let mut all = vec!["create-flow-logs"];
    all.extend_from_slice(args);
    let v = lab.ec2(&all);
    assert_eq!(v["Unsuccessful"].as_array().map_or(0, Vec::len), 0, "{v}");
    v["FlowLogIds"][0].as_str().unwrap().to_owned()
}

fn eni_of(lab: &Lab, instance: &Instance) -> String {
    let v = lab.ec2(&["describe-instances", "--instance-ids", &instance.id]);
    v["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits up to 30 s for `instance` to fetch `url` with curl.
fn fetch(instance: &Instance, url: &str, what: &str) {
    wait_for(what, Duration::from_secs(30), || {
        let out = exec(
            &instance.id,
            &["curl", "-sf", "-o", "/dev/null", "--max-time", "3", url],
        );
        out.status.success().then_some(())
    });
}

/// Waits up to `limit` for `check` to give `Some`.
fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Sums packets and bytes of the default-format lines matching `keep`.
fn sum(lines: &[Vec<&str>], keep: impl Fn(&[&str]) -> bool) -> (u64, u64) {
    lines.iter().filter(|f| keep(f)).fold((0, 0), |(p, b), f| {
        (
            p + f[8].parse::<u64>().unwrap(),
            b + f[9].parse::<u64>().unwrap(),
        )
    })
}

#[test]
fn flow_logs_reach_s3_as_text_and_parquet_and_cloudwatch_logs() {
    let Some(mut lab) = Lab::up(&["--flow-log-publish-secs", "5"]) else {
        return;
    };
    let python = std::env::var("OPENVPC_PYTHON").unwrap_or_else(|_| "python3".into());
    let vpc = lab.vpc(VPC_CIDR);
    let subnet = lab.subnet(&vpc, "10.60.1.0/24", "us-east-1a", false);
    // spec 8.2's acceptance group: only tcp/22 (and ping) in.
    let group = lab.group(&vpc, "ssh-only", &[]);
    lab.allow(&group, "tcp", "22", VPC_CIDR);
    lab.allow(&group, "icmp", "-1", VPC_CIDR);
    let a = lab.instance(&subnet, &group, Some("10.60.1.10"));
    let b = lab.instance(&subnet, &group, Some("10.60.1.20"));
    let (eni_a, eni_b) = (eni_of(&lab, &a), eni_of(&lab, &b));
    let owner = lab.ec2(&["describe-vpcs", "--vpc-ids", &vpc])["Vpcs"][0]["OwnerId"]
        .as_str()
        .unwrap()
        .to_owned();

    let server_dir = lab.dir.path().join("server");
    // A bucket that is a plain file cannot hold objects.
    std::fs::create_dir_all(server_dir.join("s3")).unwrap();
    std::fs::write(server_dir.join("s3").join(BAD_BUCKET), "not a directory").unwrap();

    let text = flow_log(
        &lab,
        &[
            "--resource-type",
            "VPC",
            "--resource-ids",
            &vpc,
            "--traffic-type",
            "ALL",
            "--log-destination-type",
            "s3",
            "--log-destination",
            &format!("arn:aws:s3:::{BUCKET}/text"),
            "--max-aggregation-interval",
            "60",
        ],
    );
    let parquet = flow_log(
        &lab,
        &[
            "--resource-type",
            "NetworkInterface",
            "--resource-ids",
            &eni_b,
            "--traffic-type",
            "ALL",
            "--log-destination-type",
            "s3",
            "--log-destination",
            &format!("arn:aws:s3:::{BUCKET}/pq"),
            "--destination-options",
            "FileFormat=parquet,HiveCompatiblePartitions=true,PerHourPartition=true",
            "--max-aggregation-interval",
            "60",
        ],
    );
    let logs = flow_log(
        &lab,
        &[
            "--resource-type",
            "Subnet",
            "--resource-ids",
            &subnet,
            "--traffic-type",
            "ALL",
            "--log-destination-type",
            "cloud-watch-logs",
            "--log-group-name",
            LOG_GROUP,
            "--deliver-logs-permission-arn",
            "arn:aws:iam::123456789012:role/flow-logs",
            "--log-format",
            CUSTOM,
            "--max-aggregation-interval",
            "60",
        ],
    );
    let bad = flow_log(
        &lab,
        &[
            "--resource-type",
            "NetworkInterface",
            "--resource-ids",
            &eni_a,
            "--traffic-type",
            "ALL",
            "--log-destination-type",
            "s3",
            "--log-destination",
            &format!("arn:aws:s3:::{BAD_BUCKET}"),
            "--max-aggregation-interval",
            "60",
        ],
    );
    // spec 8.2: a flow log on a NAT gateway's ENI.
    let (private, nat_eni, nat_ip) = nat_vpc(&lab);
    let nat_log = flow_log(
        &lab,
        &[
            "--resource-type",
            "NetworkInterface",
            "--resource-ids",
            &nat_eni,
            "--traffic-type",
            "ALL",
            "--log-destination-type",
            "cloud-watch-logs",
            "--log-group-name",
            NAT_LOG_GROUP,
            "--deliver-logs-permission-arn",
            "arn:aws:iam::123456789012:role/flow-logs",
            "--log-format",
            NAT_FORMAT,
            "--max-aggregation-interval",
            "60",
        ],
    );
    let outside = lab.outside_ip.clone();
    lab.spawn_outside(&[
        "python3",
        "-m",
        "http.server",
        &OUTSIDE_PORT.to_string(),
        "--bind",
        &outside,
    ]);
    lab.wait_listening_outside(OUTSIDE_PORT);
    // The flow logs reach the hosts with the ENIs' next state, and the
    // gateway's nodes with their next assignments.
    std::thread::sleep(Duration::from_secs(3));
    fetch(
        &private,
        &format!("http://{outside}:{OUTSIDE_PORT}/"),
        "an HTTP session through the NAT gateway",
    );

    lab.http_server(&b, 22);
    // The VPC's flow log covers the load balancer's ENI too.
    let (nlb_eni, nlb_ip) = nlb_to(&lab, &vpc, &subnet, &b);
    fetch(
        &a,
        &format!("http://{nlb_ip}:80/who"),
        "an HTTP request through the load balancer",
    );
    let ping = exec(
        &a.id,
        &["ping", "-c", &PINGS.to_string(), "-i", "0.2", &b.ip],
    );
    assert!(ping.status.success(), "ping: {ping:?}");
    let curl = exec(
        &a.id,
        &[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "--max-time",
            "5",
            &format!("http://{}:22/who", b.ip),
        ],
    );
    assert!(curl.status.success(), "curl to the open port: {curl:?}");
    let refused = exec(
        &a.id,
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            &format!("http://{}:23/", b.ip),
        ],
    );
    assert!(!refused.status.success(), "port 23 is not open");
    // A query to the resolver's address and its answer (spec 8.1: never
    // logged).
    let dns = exec(
        &a.id,
        &[
            "python3",
            "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x03foo\\x00\\x00\\x01\\x00\\x01', ('10.60.0.2', 53)); print(len(s.recv(512)))",
        ],
    );
    // The resolver answered (whatever it says about `foo`): there was DNS
    // traffic for the flow logs to leave out.
    assert!(dns.status.success(), "the resolver answers: {dns:?}");

    // The 60 s window closes, the host sends it, the server publishes
    // every 5 s.
    let text_dir = server_dir
        .join("s3")
        .join(BUCKET)
        .join("text/AWSLogs")
        .join(&owner)
        .join("vpcflowlogs/us-east-1");
    let lines = wait_for(
        "the text flow log's ping records",
        Duration::from_secs(150),
        || {
            let lines = text_lines(&text_dir);
            let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split(' ').collect()).collect();
            let (p, _) = sum(&fields, |f| {
                f.len() == 14 && f[2] == eni_b && f[7] == "1" && f[4] == b.ip
            });
            let rejected = fields
                .iter()
                .any(|f| f.len() == 14 && f[6] == "23" && f[12] == "REJECT");
            (p >= PINGS && rejected).then_some(lines)
        },
    );
    eprintln!(
        "flow logs: {} text lines, e.g.\n{}",
        lines.len(),
        lines.iter().take(6).cloned().collect::<Vec<_>>().join("\n")
    );

    // The load balancer's ENI: the client's packets in on port 80, and on
    // to the target's port 22 (its own address as `srcaddr`: the ENI's
    // side is its primary address, whatever the packet carried).
    let nlb_lines = wait_for(
        "the load balancer ENI's records",
        Duration::from_secs(60),
        || {
            let lines = text_lines(&text_dir);
            let fields: Vec<Vec<String>> = lines
                .iter()
                .map(|l| l.split(' ').map(str::to_owned).collect())
                .filter(|f: &Vec<String>| f.len() == 14 && f[2] == nlb_eni && f[13] == "OK")
                .collect();
            let client_in = fields.iter().any(|f| {
                f[3] == a.ip && f[4] == nlb_ip && f[6] == "80" && f[7] == "6" && f[12] == "ACCEPT"
            });
            let to_target = fields
                .iter()
                .any(|f| f[3] == nlb_ip && f[4] == b.ip && f[6] == "22" && f[12] == "ACCEPT");
            (client_in && to_target).then_some(fields)
        },
    );
    eprintln!("flow logs on the load balancer's ENI {nlb_eni}: {nlb_lines:?}");

    // spec 8.2: the key layout.
    for f in files(&text_dir, ".log.gz") {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let rel = f
            .strip_prefix(&text_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 4, "YYYY/MM/DD/file: {rel}");
        assert!(
            parts[0].len() == 4 && parts[1].len() == 2 && parts[2].len() == 2,
            "{rel}"
        );
        let prefix = format!("{owner}_vpcflowlogs_us-east-1_{text}_");
        assert!(name.starts_with(&prefix), "{name} starts with {prefix}");
    }
    // spec 8.1: the header, then lines of the default format.
    let header = "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status";
    let ok = regex::Regex::new(
        r"^2 \d{12} eni-[0-9a-f]{17} \S+ \S+ \d+ \d+ \d+ \d+ \d+ \d+ \d+ (ACCEPT|REJECT) OK$",
    )
    .unwrap();
    let quiet =
        regex::Regex::new(r"^2 \d{12} eni-[0-9a-f]{17} - - - - - - - \d+ \d+ - (NODATA|SKIPDATA)$")
            .unwrap();
    let mut records = Vec::new();
    for line in &lines {
        if line == header {
            continue;
        }
        assert!(
            ok.is_match(line) || quiet.is_match(line),
            "not the default format: {line:?}"
        );
        records.push(line.split(' ').collect::<Vec<_>>());
    }
    let ok_records: Vec<Vec<&str>> = records.iter().filter(|f| f[13] == "OK").cloned().collect();
    // The resolver's traffic is not logged.
    assert!(
        !ok_records
            .iter()
            .any(|f| f[3] == "10.60.0.2" || f[4] == "10.60.0.2"),
        "traffic to the resolver is logged"
    );
    // spec 8.2: tcp/23 into a group that opens only 22 is REJECT.
    // a's own group lets the attempt out: only b's side rejects it.
    let rejects: Vec<_> = ok_records
        .iter()
        .filter(|f| f[2] == eni_b && f[6] == "23" && f[7] == "6")
        .collect();
    assert!(!rejects.is_empty());
    assert!(rejects.iter().all(|f| f[12] == "REJECT"), "{rejects:?}");
    // Counts add up, per ENI and direction: a's egress and b's ingress
    // see the echo requests, b's egress and a's ingress the replies.
    let icmp = |eni: &str, src: &str| {
        sum(&ok_records, |f| {
            f[2] == eni && f[7] == "1" && f[3] == src && f[12] == "ACCEPT"
        })
    };
    // spec 8.1: ICMP has no ports.
    assert!(
        ok_records
            .iter()
            .filter(|f| f[7] == "1")
            .all(|f| f[5] == "0" && f[6] == "0"),
        "ICMP records show ports 0"
    );
    let want = (PINGS, PINGS * PING_IP_BYTES);
    assert_eq!(icmp(&eni_a, &a.ip), want, "a's echo requests");
    assert_eq!(icmp(&eni_b, &a.ip), want, "b's echo requests in");
    assert_eq!(icmp(&eni_b, &b.ip), want, "b's echo replies");
    assert_eq!(icmp(&eni_a, &b.ip), want, "a's echo replies in");
    // The HTTP session on 22 is accepted both ways.
    assert!(
        ok_records
            .iter()
            .any(|f| f[2] == eni_b && f[6] == "22" && f[12] == "ACCEPT")
    );

    // Parquet, Hive-compatible and hourly, read back with DuckDB.
    let pq_dir = server_dir
        .join("s3")
        .join(BUCKET)
        .join("pq/AWSLogs")
        .join(format!("aws-account-id={owner}"))
        .join("aws-service=vpcflowlogs/aws-region=us-east-1");
    let pq_files = wait_for("the Parquet files", Duration::from_secs(60), || {
        let f = files(&pq_dir, ".parquet");
        (!f.is_empty()).then_some(f)
    });
    let hourly = regex::Regex::new(r"^year=\d{4}/month=\d{2}/day=\d{2}/hour=\d{2}/").unwrap();
    for f in &pq_files {
        let rel = f
            .strip_prefix(&pq_dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(hourly.is_match(&rel), "{rel}");
    }
    let glob = format!("{}/**/*.parquet", pq_dir.display());
    let query = format!(
        "import duckdb, json\n\
         rows = duckdb.sql(\"SELECT action, sum(packets), count(*) FROM read_parquet('{glob}') \
         WHERE log_status = 'OK' AND protocol = 1 GROUP BY action ORDER BY action\").fetchall()\n\
         types = duckdb.sql(\"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{glob}'))\").fetchall()\n\
         print(json.dumps({{'rows': rows, 'types': types}}))"
    );
    let out = Command::new(&python).args(["-c", &query]).output().unwrap();
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("flow logs: DuckDB over the Parquet files: {v}");
    // b's ENI: the echo requests in and the replies out, all accepted.
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0][0], "ACCEPT");
    assert_eq!(rows[0][1].as_u64(), Some(2 * PINGS), "{v}");
    let types: Vec<(String, String)> = v["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t[0].as_str().unwrap().to_owned(),
                t[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (column, ty) in [
        ("version", "INTEGER"),
        ("srcport", "INTEGER"),
        ("packets", "BIGINT"),
        ("action", "VARCHAR"),
        ("log_status", "VARCHAR"),
    ] {
        assert!(
            types.iter().any(|(c, t)| c == column && t == ty),
            "column {column} {ty} in {types:?}"
        );
    }

    // CloudWatch Logs: one stream per ENI, the custom format.
    let env = &lab.env;
    let filtered = aws_with(
        env,
        "logs",
        &[
            "filter-log-events",
            "--log-group-name",
            LOG_GROUP,
            "--filter-pattern",
            "REJECT",
        ],
    )
    .unwrap();
    let events = filtered["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{filtered}");
    for e in events {
        let msg = e["message"].as_str().unwrap();
        let f: Vec<&str> = msg.split(' ').collect();
        assert_eq!(f.len(), 9, "{msg}");
        assert_eq!(
            f[0], "3",
            "a custom format with v3 fields is version 3: {msg}"
        );
        assert_eq!(f[7], "REJECT");
        assert_eq!(e["logStreamName"], f[1], "one stream per ENI");
    }
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains(" 23 6 "))
    );
    let streams = aws_with(
        env,
        "logs",
        &["describe-log-streams", "--log-group-name", LOG_GROUP],
    )
    .unwrap();
    let names: Vec<&str> = streams["logStreams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["logStreamName"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&eni_a.as_str()) && names.contains(&eni_b.as_str()),
        "{names:?}"
    );
    // spec 8.1: a short TCP session's flags: the client's side shows SYN
    // and FIN (3), the server's SYN-ACK and FIN (19).
    let accepted = aws_with(
        env,
        "logs",
        &[
            "filter-log-events",
            "--log-group-name",
            LOG_GROUP,
            "--filter-pattern",
            "ACCEPT",
        ],
    )
    .unwrap();
    // (ENI, srcaddr, flags) of the TCP records on 22.
    let flags: Vec<(String, String, String)> = accepted["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let f: Vec<&str> = e["message"].as_str()?.split(' ').collect();
            (f[5] == "6").then(|| (f[1].to_owned(), f[2].to_owned(), f[6].to_owned()))
        })
        .collect();
    let client_out = |(eni, src, fl): &&(String, String, String)| {
        eni == &eni_a && src == &a.ip && (fl == "3" || fl == "7")
    };
    let server_out = |(eni, src, fl): &&(String, String, String)| {
        eni == &eni_b && src == &b.ip && (fl == "19" || fl == "23")
    };
    assert!(
        flags.iter().any(|f| client_out(&f)),
        "the client's SYN and FIN: {flags:?}"
    );
    assert!(
        flags.iter().any(|f| server_out(&f)),
        "the server's SYN-ACK and FIN: {flags:?}"
    );

    // spec 8.2 on the NAT gateway's ENI: version 3; the translated
    // return traffic's `srcaddr` is the gateway, its `pkt-srcaddr` the
    // outside server; the client's direction shows SYN and FIN (3), the
    // server's SYN-ACK and FIN (19), in and out of the gateway.
    let nat_lines: Vec<Vec<String>> = wait_for(
        "the NAT gateway ENI's records",
        Duration::from_secs(120),
        || {
            let v = aws_with(
                env,
                "logs",
                &["filter-log-events", "--log-group-name", NAT_LOG_GROUP],
            )
            .ok()?;
            let lines: Vec<Vec<String>> = v["events"]
                .as_array()?
                .iter()
                .filter(|e| e["logStreamName"] == nat_eni.as_str())
                .filter_map(|e| e["message"].as_str())
                .map(|m| m.split(' ').map(str::to_owned).collect())
                .collect();
            let flags = |want: &str| lines.iter().filter(|f| f[3] == want).count();
            (flags("3") >= 2 && flags("19") >= 2).then_some(lines)
        },
    );
    eprintln!("flow logs on the NAT gateway's ENI {nat_eni}: {nat_lines:?}");
    for f in &nat_lines {
        assert_eq!(f.len(), 4, "{f:?}");
        assert_eq!(f[0], "3", "version 3: {f:?}");
    }
    assert!(
        nat_lines
            .iter()
            .any(|f| f[1] == nat_ip && f[2] == outside && f[3] == "19"),
        "translated return traffic: srcaddr {nat_ip}, pkt-srcaddr {outside}: {nat_lines:?}"
    );
    assert!(
        nat_lines
            .iter()
            .any(|f| f[1] == private.ip && f[2] == private.ip && f[3] == "3"),
        "the instance's packets into the gateway: {nat_lines:?}"
    );

    // The truth about delivery.
    let described = lab.ec2(&["describe-flow-logs"]);
    let by_id = |id: &str| {
        described["FlowLogs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["FlowLogId"] == id)
            .cloned()
            .unwrap()
    };
    for id in [&text, &parquet, &logs, &nat_log] {
        let f = by_id(id);
        assert_eq!(f["FlowLogStatus"], "ACTIVE", "{f}");
        assert_eq!(f["DeliverLogsStatus"], "SUCCESS", "{f}");
    }
    // The server counts what it wrote and what it could not.
    let endpoint = &lab
        .env
        .iter()
        .find(|(k, _)| k == "AWS_ENDPOINT_URL")
        .unwrap()
        .1;
    let metrics = Command::new("curl")
        .args(["-sf", &format!("{endpoint}/metrics")])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    assert!(
        counter("openvpc_flow_log_files_written_total") >= 2,
        "{metrics}"
    );
    assert!(
        counter("openvpc_flow_log_files_failed_total") >= 1,
        "{metrics}"
    );
    assert!(
        counter("openvpc_flow_log_events_delivered_total") >= 1,
        "{metrics}"
    );
    let f = by_id(&bad);
    assert_eq!(f["DeliverLogsStatus"], "FAILED", "{f}");
    assert!(
        f["DeliverLogsErrorMessage"]
            .as_str()
            .unwrap_or("")
            .contains(BAD_BUCKET),
        "{f}"
    );
}
