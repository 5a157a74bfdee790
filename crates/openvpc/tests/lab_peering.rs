//! VPC peering in the dataplane, in a lab (issue 18, spec 7.2): the aws
//! CLI makes VPCs A (10.10.0.0/16), B (10.20.0.0/16) and C
//! (10.30.0.0/16), peerings A–B and A–C, routes on both sides, and a
//! second account's VPC D (10.40.0.0/16) peered with A; real programs in
//! the instances (ping, curl, python's HTTP server) check that traffic
//! crosses a peering only where both sides route it, that none of the
//! edge-to-edge cases that exist in the dataplane transits (A's IGW, NAT
//! gateway and gateway endpoint, and A–B plus A–C giving no B–C), that a
//! group of the peer VPC can be referenced, that another account's VPC
//! can be peered, and that deleting a peering blackholes its routes and
//! stops even an established flow at once. `openvpc trace` is asked why
//! each blocked case is dropped.
//!
//! A rule of the second account names A's group with A's account ID:
//! refused while no peering joins the VPCs, honoured across it.
//!
//! Not covered: A's Site-to-Site VPN and Direct Connect (neither is in the
//! dataplane).
//!
//! Needs root (namespaces, TAP and TUN devices), the aws CLI from
//! scripts/test's venv and BIRD; without them the test says why and skips
//! (CI runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use common::lab::{Instance, Lab, OPENVPC, aws_with, eventually, exec, signal};

const WEB_PORT: u16 = 80;
/// The port bob's group opens to A's client group by reference.
const REF_PORT: u16 = 8081;

/// The VPCs and what the cases need of them.
struct Net {
    vpc_a: String,
    /// A's main table (A's public subnet): 0.0.0.0/0 to A's IGW, B's and
    /// C's CIDRs to their peerings.
    a_main: String,
    b_main: String,
    c_main: String,
    pcx_ab: String,
    pcx_ac: String,
    /// A's instance in the group B's server admits by reference.
    a_client: Instance,
    /// That group.
    a_client_group: String,
    /// A's instance outside that group.
    a_other: Instance,
    /// A's instance in the private subnet (0.0.0.0/0 to the NAT gateway).
    a_private: Instance,
    b_server: Instance,
    c_server: Instance,
}

#[test]
fn peering_in_a_lab() {
    let started = Instant::now();
    let Some(mut lab) = Lab::up(&[]) else {
        return;
    };
    let bob = second_account(&lab);
    let net = build(&mut lab);
    eprintln!(
        "peering: VPCs, peerings and 5 instances ready {} ms after the start",
        started.elapsed().as_millis()
    );
    routes_on_both_sides(&lab, &net);
    security_group_of_the_peer_vpc(&lab, &net);
    no_transit_between_peers(&lab, &net);
    no_internet_through_the_peer(&mut lab, &net);
    no_gateway_endpoint_through_the_peer(&lab, &net);
    cross_account(&mut lab, &net, &bob);
    delete_blackholes(&lab, &net);
    eprintln!(
        "peering: the whole test took {} ms",
        started.elapsed().as_millis()
    );
}

/// A second account (`openvpc accounts create` works on a stopped server's
/// store): the lab's server is stopped, the account made in its data
/// directory, and the server started again. Its ID and aws CLI
/// environment (profile `bob` of the server's credentials file).
fn second_account(lab: &Lab) -> (String, Vec<(String, String)>) {
    let started = Instant::now();
    let pid = lab.pid_of("server");
    signal(pid, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the lab's server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    let server_dir = lab.dir.path().join("server");
    let out = Command::new(OPENVPC)
        .args(["accounts", "create", "bob", "--data-dir"])
        .arg(&server_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "accounts create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    lab.restart("server", false);
    let mut env: Vec<(String, String)> = lab
        .env
        .iter()
        .filter(|(k, _)| k != "AWS_SHARED_CREDENTIALS_FILE")
        .cloned()
        .collect();
    env.push((
        "AWS_SHARED_CREDENTIALS_FILE".into(),
        server_dir.join("credentials").display().to_string(),
    ));
    env.push(("AWS_PROFILE".into(), "bob".into()));
    eprintln!(
        "peering: account {id} (bob) made and the server back in {} ms",
        started.elapsed().as_millis()
    );
    (id, env)
}

fn id(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} in {v}"))
        .to_owned()
}

/// Requests and accepts a same-account peering of `a` with `b`.
fn peer(lab: &Lab, a: &str, b: &str) -> String {
    let v = lab.ec2(&[
        "create-vpc-peering-connection",
        "--vpc-id",
        a,
        "--peer-vpc-id",
        b,
    ]);
    let pcx = id(&v, "/VpcPeeringConnection/VpcPeeringConnectionId");
    let v = lab.ec2(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    let status = id(&v, "/VpcPeeringConnection/Status/Code");
    assert!(
        status == "active" || status == "provisioning",
        "spec 7.1: accepted is provisioning or active, not {status}"
    );
    pcx
}

fn delete_route(lab: &Lab, table: &str, cidr: &str) {
    lab.ec2(&[
        "delete-route",
        "--route-table-id",
        table,
        "--destination-cidr-block",
        cidr,
    ]);
}

/// A group of `vpc` admitting ICMP and tcp/80 from `cidr`.
fn open_group(lab: &Lab, vpc: &str, name: &str, cidr: &str) -> String {
    let group = lab.group(vpc, name, &[]);
    lab.allow(&group, "icmp", "-1", cidr);
    lab.allow(&group, "tcp", &WEB_PORT.to_string(), cidr);
    group
}

/// Polls DescribeNatGateways until `nat` is `available`, for up to 30 s.
fn wait_nat(lab: &Lab, nat: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = lab.ec2(&["describe-nat-gateways", "--nat-gateway-ids", nat]);
        match v["NatGateways"][0]["State"].as_str() {
            Some("available") => return,
            Some("pending") if Instant::now() < deadline => {}
            state => panic!("{nat} is {state:?}: {v}"),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn build(lab: &mut Lab) -> Net {
    // A: an internet VPC (main table 0.0.0.0/0 to its IGW) with a public
    // subnet holding a NAT gateway and a private subnet routed to it.
    let (vpc_a, _igw, a_main) = lab.internet_vpc("10.10.0.0/16");
    let a_public = lab.subnet(&vpc_a, "10.10.1.0/24", "us-east-1a", true);
    let a_priv = lab.subnet(&vpc_a, "10.10.2.0/24", "us-east-1b", false);
    let (nat, _eip) = lab.public_nat_gateway(&a_public);
    let a_private_table = lab.route_table(&vpc_a, &[&a_priv]);
    let vpc_b = lab.vpc("10.20.0.0/16");
    let b1 = lab.subnet(&vpc_b, "10.20.1.0/24", "us-east-1b", false);
    let vpc_c = lab.vpc("10.30.0.0/16");
    let c1 = lab.subnet(&vpc_c, "10.30.1.0/24", "us-east-1a", false);
    let b_main = lab.main_route_table(&vpc_b);
    let c_main = lab.main_route_table(&vpc_c);

    let pcx_ab = peer(lab, &vpc_a, &vpc_b);
    let pcx_ac = peer(lab, &vpc_a, &vpc_c);
    // Spec 7.2: each side adds the peer's CIDR to the peering itself.
    lab.route(
        &a_main,
        "10.20.0.0/16",
        &["--vpc-peering-connection-id", &pcx_ab],
    );
    lab.route(
        &a_main,
        "10.30.0.0/16",
        &["--vpc-peering-connection-id", &pcx_ac],
    );
    lab.route(
        &b_main,
        "10.10.0.0/16",
        &["--vpc-peering-connection-id", &pcx_ab],
    );
    lab.route(
        &c_main,
        "10.10.0.0/16",
        &["--vpc-peering-connection-id", &pcx_ac],
    );

    // A's client group: AWS's default egress, ICMP in. B's server
    // admits ICMP from every 10/8 address (so only routing can stop a
    // ping) and tcp/80 only from A's client group, by reference.
    let a_client_group = lab.group(&vpc_a, "client", &[]);
    lab.allow(&a_client_group, "icmp", "-1", "10.0.0.0/8");
    let a_other_group = lab.group(&vpc_a, "other", &[]);
    let b_group = lab.group(&vpc_b, "web", &[]);
    lab.allow(&b_group, "icmp", "-1", "10.0.0.0/8");
    lab.ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &b_group,
        "--protocol",
        "tcp",
        "--port",
        &WEB_PORT.to_string(),
        "--source-group",
        &a_client_group,
    ]);
    let c_group = open_group(lab, &vpc_c, "web", "10.0.0.0/8");
    let a_private_group = lab.group(&vpc_a, "private", &[]);

    let a_client = lab.instance(&a_public, &a_client_group, None);
    let a_other = lab.instance(&a_public, &a_other_group, None);
    let a_private = lab.instance(&a_priv, &a_private_group, None);
    let b_server = lab.instance(&b1, &b_group, None);
    let c_server = lab.instance(&c1, &c_group, None);
    lab.http_server(&b_server, WEB_PORT);
    lab.http_server(&c_server, WEB_PORT);

    wait_nat(lab, &nat);
    lab.route(&a_private_table, "0.0.0.0/0", &["--nat-gateway-id", &nat]);
    lab.echo_server();
    Net {
        vpc_a,
        a_main,
        b_main,
        c_main,
        pcx_ab,
        pcx_ac,
        a_client,
        a_client_group,
        a_other,
        a_private,
        b_server,
        c_server,
    }
}

/// One ping from `from` to `ip`, 1 s to answer.
fn ping(from: &Instance, ip: &str) -> bool {
    exec(&from.id, &["ping", "-c", "1", "-W", "1", ip])
        .status
        .success()
}

/// `curl http://IP/who` from `from`: the answering instance's ID, or `None`.
fn http(from: &Instance, ip: &str) -> Option<String> {
    let url = format!("http://{ip}:{WEB_PORT}/who");
    let out = exec(&from.id, &["curl", "-sf", "--max-time", "2", &url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn trace(lab: &Lab, from: &Instance, to: &str, proto: &str) -> String {
    let port = WEB_PORT.to_string();
    let args: &[&str] = if proto == "tcp" {
        &["--protocol", "tcp", "--port", &port]
    } else {
        &["--protocol", proto]
    };
    lab.trace(&from.id, to, args)
}

/// Spec 7.2: each side routes the peer's CIDR to the peering; traffic
/// flows only while both do.
fn routes_on_both_sides(lab: &Lab, net: &Net) {
    let started = Instant::now();
    eventually("A pings B across the peering", true, || {
        ping(&net.a_client, &net.b_server.ip)
    });
    eprintln!(
        "peering: A reached B {} ms after the last instance started",
        started.elapsed().as_millis()
    );
    assert_eq!(
        http(&net.a_client, &net.b_server.ip).as_deref(),
        Some(net.b_server.id.as_str()),
        "A's client gets B's page across the peering"
    );
    // Both directions: B pings A.
    assert!(ping(&net.b_server, &net.a_client.ip), "B pings A");
    let traced = trace(lab, &net.a_client, &net.b_server.ip, "tcp");
    eprintln!("peering: trace A -> B\n{traced}");
    assert!(
        traced.contains(&net.pcx_ab) && traced.contains("delivered to eni-"),
        "the trace names the peering route and delivers: {traced}"
    );

    // Spec 7.2 acceptance: "add a route on one side only and it does not"
    // work. B's route back goes: A's ping and HTTP get no answer.
    delete_route(lab, &net.b_main, "10.10.0.0/16");
    let removed = Instant::now();
    eventually("A's ping to B without B's route back", false, || {
        ping(&net.a_client, &net.b_server.ip)
    });
    eprintln!(
        "peering: A -> B stopped {} ms after B's route was deleted",
        removed.elapsed().as_millis()
    );
    assert_eq!(http(&net.a_client, &net.b_server.ip), None, "HTTP too");
    let traced = trace(lab, &net.b_server, &net.a_client.ip, "icmp");
    eprintln!("peering: trace B -> A without B's route\n{traced}");
    assert!(traced.contains("no_route"), "{traced}");

    lab.route(
        &net.b_main,
        "10.10.0.0/16",
        &["--vpc-peering-connection-id", &net.pcx_ab],
    );
    eventually("A pings B with both routes again", true, || {
        ping(&net.a_client, &net.b_server.ip)
    });
    eventually("A's HTTP to B with both routes again", true, || {
        http(&net.a_client, &net.b_server.ip).is_some()
    });
}

/// Spec 7.2: a rule may reference a group of the peer VPC (same region):
/// B's server admits tcp/80 from A's client group only.
fn security_group_of_the_peer_vpc(lab: &Lab, net: &Net) {
    assert_eq!(
        http(&net.a_client, &net.b_server.ip).as_deref(),
        Some(net.b_server.id.as_str()),
        "a member of the referenced group of the peer VPC gets in"
    );
    // The other instance of A is let out (default egress) and routed the
    // same way, but is not a member: dropped by B's group. It still pings
    // (ICMP is open to 10/8), so only the group reference stops it.
    assert!(ping(&net.a_other, &net.b_server.ip), "A's other pings B");
    assert_eq!(
        http(&net.a_other, &net.b_server.ip),
        None,
        "an instance of A outside the referenced group is not let in"
    );
    let traced = trace(lab, &net.a_other, &net.b_server.ip, "tcp");
    eprintln!("peering: trace of A's non-member -> B:80\n{traced}");
    assert!(traced.contains("sg_deny"), "{traced}");
}

/// Spec 7.2, edge to edge case 6: A–B plus A–C does not give B–C, even
/// with B routing C's CIDR to pcx-AB (and C routing B's to pcx-AC).
fn no_transit_between_peers(lab: &Lab, net: &Net) {
    // A reaches C: the peering A–C itself works.
    eventually("A pings C", true, || ping(&net.a_client, &net.c_server.ip));
    assert!(
        http(&net.a_client, &net.c_server.ip).is_some(),
        "A gets C's page"
    );
    lab.route(
        &net.b_main,
        "10.30.0.0/16",
        &["--vpc-peering-connection-id", &net.pcx_ab],
    );
    lab.route(
        &net.c_main,
        "10.20.0.0/16",
        &["--vpc-peering-connection-id", &net.pcx_ac],
    );
    // Give the routes time to reach the hosts, then expect nothing.
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        assert!(
            !ping(&net.b_server, &net.c_server.ip),
            "spec 7.2: B pings C"
        );
        assert!(
            !ping(&net.c_server, &net.b_server.ip),
            "spec 7.2: C pings B"
        );
    }
    assert_eq!(
        http(&net.b_server, &net.c_server.ip),
        None,
        "spec 7.2: B to C's page"
    );
    let traced = trace(lab, &net.b_server, &net.c_server.ip, "icmp");
    eprintln!("peering: trace B -> C over pcx-AB (not transitive)\n{traced}");
    // The packet is sent into A's VPC, where 10.30.x is no ENI's address:
    // a packet must end on an ENI of the peer VPC (spec 7.2).
    assert!(
        traced.contains(&net.pcx_ab)
            && traced.contains("no_mapping")
            && traced.contains("VPC peering is not transitive"),
        "{traced}"
    );
    delete_route(lab, &net.b_main, "10.30.0.0/16");
    delete_route(lab, &net.c_main, "10.20.0.0/16");
}

/// Spec 7.2, edge to edge cases 1 and 2: B cannot use A's internet
/// gateway nor A's NAT gateway. A's own instances reach the outside
/// through both (A's public subnet through the IGW, its private subnet
/// through the NAT gateway); B, routing 0.0.0.0/0 to pcx-AB, does not.
fn no_internet_through_the_peer(lab: &mut Lab, net: &Net) {
    eventually(
        "A's public instance reaches the outside via the IGW",
        true,
        || lab.curl_outside_from(&net.a_client).is_some(),
    );
    eventually(
        "A's private instance reaches the outside via NAT",
        true,
        || lab.curl_outside_from(&net.a_private).is_some(),
    );
    lab.route(
        &net.b_main,
        "0.0.0.0/0",
        &["--vpc-peering-connection-id", &net.pcx_ab],
    );
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(
            lab.curl_outside_from(&net.b_server),
            None,
            "spec 7.2 cases 1-2: B reaches the outside through A"
        );
        assert!(
            !ping(&net.b_server, &lab.outside_ip),
            "spec 7.2: B pings out"
        );
    }
    // The peering still carries B's traffic to A.
    assert!(ping(&net.b_server, &net.a_client.ip), "B still pings A");
    let traced = trace(lab, &net.b_server, &lab.outside_ip, "tcp");
    eprintln!("peering: trace B -> the outside over pcx-AB\n{traced}");
    assert!(
        traced.contains(&net.pcx_ab)
            && traced.contains("no_mapping")
            && traced.contains("VPC peering is not transitive"),
        "{traced}"
    );
    delete_route(lab, &net.b_main, "0.0.0.0/0");
    // Spec 7.2 cases 3 and 4 (A's Site-to-Site VPN and Direct Connect):
    // neither exists in the dataplane yet (VPN connections are API-only,
    // Direct Connect is not built), so there is nothing to transit.
}

/// Spec 7.2 case 5 and spec 11: B cannot use A's gateway endpoint. A gets
/// an S3 gateway endpoint on its main table (its `pl-` route to the
/// `vpce-`); B routes one of S3's CIDRs to pcx-AB. The lab serves no S3,
/// so no packet can show A's own access: `openvpc trace` shows A's probe
/// taking the endpoint's route, and B's sent into A's VNI and dropped
/// there, as no ENI of A holds the address.
fn no_gateway_endpoint_through_the_peer(lab: &Lab, net: &Net) {
    let service = "com.amazonaws.us-east-1.s3";
    let v = lab.ec2(&[
        "create-vpc-endpoint",
        "--vpc-endpoint-type",
        "Gateway",
        "--vpc-id",
        &net.vpc_a,
        "--service-name",
        service,
        "--route-table-ids",
        &net.a_main,
    ]);
    let vpce = id(&v, "/VpcEndpoint/VpcEndpointId");
    let v = lab.ec2(&[
        "describe-prefix-lists",
        "--filters",
        &format!("Name=prefix-list-name,Values={service}"),
    ]);
    let cidr = id(&v, "/PrefixLists/0/Cidrs/0");
    let s3_ip = cidr.split('/').next().unwrap().to_owned();
    lab.route(
        &net.b_main,
        &cidr,
        &["--vpc-peering-connection-id", &net.pcx_ab],
    );
    let traced_a = trace(lab, &net.a_client, &s3_ip, "tcp");
    eprintln!("peering: trace A -> S3 {s3_ip} (its endpoint)\n{traced_a}");
    assert!(
        traced_a.contains(&vpce),
        "A's probe takes {vpce}: {traced_a}"
    );
    let traced = trace(lab, &net.b_server, &s3_ip, "tcp");
    eprintln!("peering: trace B -> S3 {s3_ip} over pcx-AB\n{traced}");
    assert!(
        traced.contains(&net.pcx_ab) && traced.contains("no_mapping") && !traced.contains(&vpce),
        "{traced}"
    );
    delete_route(lab, &net.b_main, &cidr);
}

/// Spec 7.2: cross-account peering. Bob's VPC D (10.40.0.0/16) is peered
/// with A at A's request; bob accepts and routes A's CIDR back.
fn cross_account(lab: &mut Lab, net: &Net, bob: &(String, Vec<(String, String)>)) {
    let (bob_id, bob_env) = bob;
    let bob_ec2 = |args: &[&str]| {
        aws_with(bob_env, "ec2", args)
            .unwrap_or_else(|e| panic!("bob: aws ec2 {}: {e}", args.join(" ")))
    };
    let vpc_d = id(
        &bob_ec2(&["create-vpc", "--cidr-block", "10.40.0.0/16"]),
        "/Vpc/VpcId",
    );
    let d1 = id(
        &bob_ec2(&[
            "create-subnet",
            "--vpc-id",
            &vpc_d,
            "--cidr-block",
            "10.40.1.0/24",
            "--availability-zone",
            "us-east-1b",
        ]),
        "/Subnet/SubnetId",
    );
    let d_group = id(
        &bob_ec2(&[
            "create-security-group",
            "--vpc-id",
            &vpc_d,
            "--group-name",
            "web",
            "--description",
            "web",
        ]),
        "/GroupId",
    );
    for (proto, port) in [("icmp", "-1"), ("tcp", "80")] {
        bob_ec2(&[
            "authorize-security-group-ingress",
            "--group-id",
            &d_group,
            "--protocol",
            proto,
            "--port",
            port,
            "--cidr",
            "10.10.0.0/16",
        ]);
    }
    let v = bob_ec2(&[
        "run-instances",
        "--image-id",
        "ami-12345678",
        "--count",
        "1",
        "--subnet-id",
        &d1,
        "--security-group-ids",
        &d_group,
    ]);
    let d_server = Instance {
        id: id(&v, "/Instances/0/InstanceId"),
        ip: id(&v, "/Instances/0/PrivateIpAddress"),
    };

    // Spec 7.2: a rule may name another account's group only across a
    // peering of the two VPCs; before there is one, the group is not found.
    let a_account = lab.ec2(&[
        "describe-security-groups",
        "--group-ids",
        &net.a_client_group,
    ])["SecurityGroups"][0]["OwnerId"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_reference = format!(
        "IpProtocol=tcp,FromPort={REF_PORT},ToPort={REF_PORT},UserIdGroupPairs=[{{UserId={a_account},GroupId={}}}]",
        net.a_client_group
    );
    let refused = aws_with(
        bob_env,
        "ec2",
        &[
            "authorize-security-group-ingress",
            "--group-id",
            &d_group,
            "--ip-permissions",
            &by_reference,
        ],
    )
    .unwrap_err();
    assert!(refused.contains("InvalidGroup.NotFound"), "{refused}");

    let pcx = id(
        &lab.ec2(&[
            "create-vpc-peering-connection",
            "--vpc-id",
            &net.vpc_a,
            "--peer-vpc-id",
            &vpc_d,
            "--peer-owner-id",
            bob_id,
        ]),
        "/VpcPeeringConnection/VpcPeeringConnectionId",
    );
    // Spec 7.2: the requester cannot accept another account's peering.
    let refused = lab
        .try_ec2(&[
            "accept-vpc-peering-connection",
            "--vpc-peering-connection-id",
            &pcx,
        ])
        .unwrap_err();
    assert!(refused.contains("OperationNotPermitted"), "{refused}");
    bob_ec2(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    lab.route(
        &net.a_main,
        "10.40.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );
    let d_main = id(
        &bob_ec2(&[
            "describe-route-tables",
            "--filters",
            &format!("Name=vpc-id,Values={vpc_d}"),
            "Name=association.main,Values=true",
        ]),
        "/RouteTables/0/RouteTableId",
    );
    bob_ec2(&[
        "create-route",
        "--route-table-id",
        &d_main,
        "--destination-cidr-block",
        "10.10.0.0/16",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    lab.wait_address(&d_server);
    lab.http_server(&d_server, WEB_PORT);
    let started = Instant::now();
    eventually("A pings bob's instance across accounts", true, || {
        ping(&net.a_client, &d_server.ip)
    });
    eprintln!(
        "peering: cross-account ping worked {} ms after the routes",
        started.elapsed().as_millis()
    );
    assert_eq!(
        http(&net.a_client, &d_server.ip).as_deref(),
        Some(d_server.id.as_str()),
        "spec 7.2: cross-account peering carries HTTP"
    );
    // Across the active peering, bob's group admits A's client group by
    // reference (with A's account): A's client reaches the port, A's
    // other instance does not.
    bob_ec2(&[
        "authorize-security-group-ingress",
        "--group-id",
        &d_group,
        "--ip-permissions",
        &by_reference,
    ]);
    lab.http_server(&d_server, REF_PORT);
    let on_ref_port = |from: &Instance| {
        let url = format!("http://{}:{REF_PORT}/who", d_server.ip);
        exec(&from.id, &["curl", "-sf", "--max-time", "2", &url])
            .status
            .success()
    };
    eventually("A's client group is admitted across accounts", true, || {
        on_ref_port(&net.a_client)
    });
    assert!(
        !on_ref_port(&net.a_other),
        "spec 7.2: only the referenced group of the other account is admitted"
    );
    let traced = trace(lab, &net.a_client, &d_server.ip, "tcp");
    eprintln!("peering: trace A -> bob's instance\n{traced}");
    assert!(
        traced.contains(&pcx) && traced.contains(&format!("an interface of account {bob_id}")),
        "{traced}"
    );
}

/// Spec 2.5/7.2: deleting a peering leaves its routes `blackhole` on both
/// sides, and traffic stops at once.
fn delete_blackholes(lab: &Lab, net: &Net) {
    assert!(ping(&net.a_client, &net.b_server.ip), "A pings B before");
    // A ping running across the deletion (one flow, 5 per second, each
    // reply stamped with the time): the established flow stops too.
    let stream = Command::new(OPENVPC)
        .args(["exec", &net.a_client.id, "--"])
        .args(["ping", "-D", "-i", "0.2", "-W", "1", "-w", "6"])
        .arg(&net.b_server.ip)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let asked = unix_now();
    lab.ec2(&[
        "delete-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &net.pcx_ab,
    ]);
    let returned = unix_now();
    let deleted = Instant::now();
    let mut answered = 0;
    while ping(&net.a_client, &net.b_server.ip) {
        answered += 1;
        assert!(
            deleted.elapsed() < Duration::from_secs(5),
            "A still pings B 5 s after the peering's deletion"
        );
    }
    eprintln!(
        "peering: {answered} pings answered after DeleteVpcPeeringConnection returned; \
         the first unanswered one ended {} ms after it (1 s wait per ping)",
        deleted.elapsed().as_millis()
    );
    let out = stream.wait_with_output().unwrap();
    // `[1765000000.123456] 64 bytes from …`: the replies' times.
    let replies: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let before = replies.iter().filter(|t| **t < asked).count();
    let last = replies.last().copied().unwrap_or(0.0);
    eprintln!(
        "peering: the running ping got {before} replies before DeleteVpcPeeringConnection \
         was sent, {} in the {:.0} ms the call took, {} after it returned; \
         the last reply {:.0} ms after the call returned",
        replies
            .iter()
            .filter(|t| **t >= asked && **t <= returned)
            .count(),
        (returned - asked) * 1000.0,
        replies.iter().filter(|t| **t > returned).count(),
        (last - returned) * 1000.0
    );
    assert!(
        before >= 3,
        "the running ping got replies before: {replies:?}"
    );
    assert!(
        last < returned + 1.0,
        "an established flow still crossed the deleted peering {:.0} ms after the call \
         returned: {replies:?}",
        (last - returned) * 1000.0
    );
    for (table, cidr) in [(&net.a_main, "10.20.0.0/16"), (&net.b_main, "10.10.0.0/16")] {
        let v = lab.ec2(&["describe-route-tables", "--route-table-ids", table]);
        let found = v["RouteTables"][0]["Routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["DestinationCidrBlock"] == cidr)
            .cloned()
            .unwrap_or_else(|| panic!("no route {cidr} in {table}: {v}"));
        assert_eq!(found["State"], "blackhole", "spec 2.5: {found}");
        assert_eq!(
            found["VpcPeeringConnectionId"],
            net.pcx_ab.as_str(),
            "{found}"
        );
    }
    assert!(
        !ping(&net.b_server, &net.a_client.ip),
        "B pings A after the delete"
    );
    let traced = trace(lab, &net.a_client, &net.b_server.ip, "icmp");
    eprintln!("peering: trace A -> B after the delete\n{traced}");
    assert!(traced.contains("blackhole"), "{traced}");
}

/// Seconds since the epoch, as `ping -D` stamps its replies.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
