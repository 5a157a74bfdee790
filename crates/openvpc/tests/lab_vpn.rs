//! Site-to-Site VPN in a lab (issue 19): `openvpc lab up --datacenter`
//! adds a customer's datacenter on the outside world, and `openvpc lab
//! datacenter connect` runs a VPN connection's customer side there:
//! strongSwan's charon as the customer gateway (both tunnels, initiated
//! by the customer side, spec 10.2) and BIRD as the customer router (eBGP
//! over each tunnel's inside /30). The aws CLI makes the VPC, the
//! instance, the customer gateway (the datacenter's address), the VPN
//! gateway and the connection.
//!
//! What runs without the VGW's dataplane is checked always: the
//! datacenter's addresses and routes, charon initiating IKE toward both
//! tunnels' outside addresses, BIRD's sessions configured, `lab status`,
//! a static-routes-only connection, disconnect, and that no pre-shared
//! key reaches a log. Then the whole path through the edges serving the
//! tunnels ([`both_tunnels_carry_bgp_and_traffic_both_ways`]): both
//! tunnels UP in VgwTelemetry, BGP established, the datacenter's prefix
//! propagated, pings both ways, security groups and network ACLs applied,
//! route precedence, failover from tunnel 1 to tunnel 2 (told: its IKE
//! SA deleted, with established TCP connections kept; silent: its address
//! dropped, caught by the BGP hold timer or dead peer detection), and no
//! transit through a peering. Each failover prints what it measured.
//!
//! Needs root, the aws CLI, BIRD and strongSwan; without them it says why
//! and skips (CI runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use serde_json::Value;

use std::time::{Duration, Instant};

use common::lab::{
    AclRule, Instance, Lab, OPENVPC, STREAM_CLIENT, STREAM_SERVER, eventually, exec,
};
use common::vpn::{VpnWorld, last_json, propagate_and_wait, strongswan_missing, within};

#[test]
fn a_datacenter_needs_an_outside() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(OPENVPC)
        .args(["lab", "up", "--edges", "0", "--datacenter", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--edges"), "says how to fix it: {stderr}");
    assert!(!dir.path().join("lab.json").exists(), "nothing was made");
}

#[test]
fn the_datacenter_runs_the_customer_side_of_a_vpn_connection() {
    if strongswan_missing() {
        return;
    }
    let Some(mut lab) = Lab::up(&["--datacenter"]) else {
        return;
    };
    // The datacenter's public address is the customer gateway's IP: on the
    // internet, outside the region's pool and apart from the test server.
    let dc_ip = lab.file("datacenter-ip");
    assert_eq!(dc_ip, "198.51.100.202");
    assert!(!dc_ip.starts_with("203.0.113.") && dc_ip != lab.outside_ip);
    let server_ip = lab.file("datacenter-server-ip");
    assert_eq!(server_ip, "172.16.1.10");
    assert_eq!(lab.file("datacenter-prefix"), "172.16.0.0/16");
    let netns = lab.file("datacenter-netns");
    assert!(
        netns.starts_with("ovl-") && netns.ends_with("-dc"),
        "{netns}"
    );
    // It reaches the outside's server, and an edge reaches it through the
    // outside router.
    let ping = lab.in_datacenter(&["ping", "-c", "1", "-W", "2", &lab.outside_ip]);
    assert!(ping.status.success(), "datacenter → outside: {ping:?}");
    let e1 = lab.netns_of("edges", "edge_id", "e1");
    let ping = Command::new("ip")
        .args(["netns", "exec", &e1, "ping", "-c", "1", "-W", "2", &dc_ip])
        .output()
        .unwrap();
    assert!(ping.status.success(), "edge → datacenter: {ping:?}");
    let route = Command::new("ip")
        .args(["netns", "exec", &e1, "ip", "-4", "route", "get", &dc_ip])
        .output()
        .unwrap();
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(route.contains("via 192.0.2.1"), "{route}");

    // Before any connection there is nothing to disconnect, and no gateway.
    let (ok, _) = lab.datacenter(&["disconnect"]);
    assert!(ok);
    let status = lab.status();
    assert_eq!(
        status["datacenter"]["public_ip"],
        dc_ip.as_str(),
        "{status}"
    );
    assert_eq!(status["datacenter"]["gateway"]["running"], false);

    let VpnWorld {
        vpc,
        subnet,
        group,
        instance,
        cgw,
        vgw,
        vpn,
        outside_ips,
        psks,
        ..
    } = VpnWorld::connect(&lab, &[]);
    assert!(lab.process_running("datacenter-gateway"));
    assert!(lab.process_running("datacenter-router"));

    // spec 10.2: the customer side initiates, both tunnels at once, from
    // the customer gateway's IP to each tunnel's outside address.
    within(30, "charon initiates both tunnels", || {
        let log = lab.charon_log();
        let missing: Vec<&String> = outside_ips
            .iter()
            .filter(|ip| !log.contains(&format!("from {dc_ip}[500] to {ip}[500]")))
            .collect();
        (!missing.is_empty()).then(|| format!("no IKE_SA_INIT to {missing:?} yet"))
    });
    let sas = lab.sas();
    assert!(
        sas.contains("tunnel1") && sas.contains("tunnel2"),
        "both IKE SAs exist: {sas}"
    );
    // Our inside address of each /30 on libipsec's TUN: BIRD's sessions
    // are directly connected there.
    let addrs = lab.in_datacenter(&["ip", "-4", "-o", "addr", "show", "dev", "ipsec0"]);
    let addrs = String::from_utf8_lossy(&addrs.stdout).into_owned();
    let describe = lab.ec2(&["describe-vpn-connections", "--vpn-connection-ids", &vpn]);
    let tunnels = describe["VpnConnections"][0]["Options"]["TunnelOptions"]
        .as_array()
        .unwrap()
        .clone();
    for t in &tunnels {
        let cidr = t["TunnelInsideCidr"].as_str().unwrap();
        let base: std::net::Ipv4Addr = cidr.split('/').next().unwrap().parse().unwrap();
        let ours = std::net::Ipv4Addr::from(u32::from(base) + 2);
        assert!(
            addrs.contains(&format!("inet {ours}/30")),
            "{ours} on ipsec0: {addrs}"
        );
    }
    let protocols = lab.dc_protocols();
    assert!(
        protocols.contains("tunnel1") && protocols.contains("tunnel2"),
        "one BGP session per tunnel: {protocols}"
    );
    let status = lab.status();
    let dc = &status["datacenter"];
    assert_eq!(dc["gateway"]["running"], true, "{dc}");
    assert_eq!(dc["router"]["running"], true, "{dc}");
    assert!(
        dc["sas"].as_str().unwrap_or_default().contains("tunnel1"),
        "{dc}"
    );
    assert!(
        dc["protocols"]
            .as_str()
            .unwrap_or_default()
            .contains("tunnel2"),
        "{dc}"
    );

    both_tunnels_carry_bgp_and_traffic_both_ways(&lab, &vpn, &vgw, &vpc, &instance);
    groups_and_acls_apply(&lab, &vpc, &subnet, &group, &instance);
    route_precedence(&lab, &vgw, &vpc, &instance);
    failover_keeps_connections(&mut lab, &vpn, &instance);
    failover_on_silence(&lab, &vpn, &outside_ips, &instance);
    not_through_a_peering(&lab, &vpc, &group, &instance);

    // A static-routes-only connection: charon alone, no router.
    let (static_vpn, static_ips, static_psks) = lab.vpn_connection(&cgw, &vgw, true);
    let (ok, stderr) = lab.datacenter(&["connect", "--vpn-connection-id", &static_vpn]);
    assert!(ok, "lab datacenter connect (static): {stderr}");
    assert!(lab.process_running("datacenter-gateway"));
    assert!(
        !lab.process_running("datacenter-router"),
        "no BGP, no router"
    );
    within(
        30,
        "charon initiates the static connection's tunnels",
        || {
            let log = lab.charon_log();
            let missing: Vec<&String> = static_ips
                .iter()
                .filter(|ip| !log.contains(&format!("to {ip}[500]")))
                .collect();
            (!missing.is_empty()).then(|| format!("nothing to {missing:?} yet"))
        },
    );

    // A connection made for another customer gateway is refused, saying why.
    let other = lab.ec2(&[
        "create-customer-gateway",
        "--type",
        "ipsec.1",
        "--public-ip",
        "192.0.2.99",
        "--bgp-asn",
        "65001",
    ])["CustomerGateway"]["CustomerGatewayId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (elsewhere, _, _) = lab.vpn_connection(&other, &vgw, false);
    let (ok, stderr) = lab.datacenter(&["connect", "--vpn-connection-id", &elsewhere]);
    assert!(
        !ok && stderr.contains("192.0.2.99") && stderr.contains(&dc_ip),
        "{stderr}"
    );

    let (ok, stderr) = lab.datacenter(&["disconnect"]);
    assert!(ok && stderr.contains("datacenter-gateway"), "{stderr}");
    assert!(!lab.process_running("datacenter-gateway"));
    assert!(
        !lab.dir.path().join("datacenter/swanctl.conf").exists(),
        "the secrets go too"
    );

    // No pre-shared key in any log, the commands' output included.
    let mut logs = String::new();
    for entry in std::fs::read_dir(lab.logs()).unwrap().flatten() {
        logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    logs.push_str(&lab.charon_log());
    logs.push_str(&stderr);
    for psk in psks.iter().chain(&static_psks) {
        assert!(!logs.contains(psk.as_str()), "a PSK is in the logs");
    }
}

/// The whole path through the VGW (issue 19's "Both tunnels" and
/// "Traffic" tests): both tunnels UP in VgwTelemetry, BGP established on
/// both, the datacenter's prefix propagated into a route table with
/// propagation on, and pings instance → datacenter server and back.
fn both_tunnels_carry_bgp_and_traffic_both_ways(
    lab: &Lab,
    vpn: &str,
    vgw: &str,
    vpc: &str,
    instance: &Instance,
) {
    let server_ip = lab.file("datacenter-server-ip");
    let telemetry = || -> Value {
        lab.ec2(&["describe-vpn-connections", "--vpn-connection-ids", vpn])["VpnConnections"][0]
            .clone()
    };
    // BGP over each tunnel's inside /30, as the customer router sees it.
    within(90, "BGP established on both tunnels", || {
        let p = lab.dc_protocols();
        (p.matches("Established").count() < 2).then(|| format!("{p}\n{}", lab.sas()))
    });
    // spec 10.2 / issue 19: honest telemetry, `available` once a tunnel is
    // up. Only the state and telemetry are shown: the rest holds the PSKs.
    within(30, "both tunnels UP in VgwTelemetry", || {
        let c = telemetry();
        let up = c["VgwTelemetry"]
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t["Status"] == "UP").count());
        (up != 2 || c["State"] != "available")
            .then(|| format!("{} {}", c["State"], c["VgwTelemetry"]))
    });
    // spec 10.3: the datacenter's prefix, learned over BGP, in a route
    // table with propagation on.
    let table = lab.main_route_table(vpc);
    propagate_and_wait(lab, &table, vgw);
    // Operators see each edge's tunnels in `lab status`.
    let text = Command::new(OPENVPC)
        .args(["lab", "status", "--dir"])
        .arg(lab.dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(vpn) && text.matches("Established").count() >= 2,
        "lab status shows the tunnels: {text}"
    );
    let c = telemetry();
    for t in c["VgwTelemetry"].as_array().unwrap() {
        assert!(t["AcceptedRouteCount"].as_u64().unwrap_or(0) >= 1, "{t}");
    }
    // The datacenter learned the VPC's CIDR and routes it into the tunnel.
    let route = lab.in_datacenter(&["ip", "-4", "route", "show", "10.0.0.0/16"]);
    let route = String::from_utf8_lossy(&route.stdout).into_owned();
    assert!(route.contains("dev ipsec0"), "{route}");

    within(30, "the instance pings the datacenter server", || {
        let out = exec(&instance.id, &["ping", "-c", "2", "-W", "2", &server_ip]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let out = lab.in_datacenter(&["ping", "-c", "3", "-W", "2", "-I", &server_ip, &instance.ip]);
    assert!(
        out.status.success(),
        "the datacenter pings the instance: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Whether the datacenter's server reaches the instance (ICMP, from its
/// LAN address).
fn datacenter_reaches(lab: &Lab, instance: &Instance) -> bool {
    let server_ip = lab.file("datacenter-server-ip");
    lab.in_datacenter(&["ping", "-c", "1", "-W", "2", "-I", &server_ip, &instance.ip])
        .status
        .success()
}

/// Whether the instance reaches the datacenter's server (ICMP).
fn reaches_datacenter(lab: &Lab, instance: &Instance) -> bool {
    let server_ip = lab.file("datacenter-server-ip");
    exec(&instance.id, &["ping", "-c", "1", "-W", "2", &server_ip])
        .status
        .success()
}

/// Issue 19 ("Traffic"): what comes out of a tunnel meets the VPC's
/// network ACL and the instance's security group like any other packet.
fn groups_and_acls_apply(lab: &Lab, vpc: &str, subnet: &str, group: &str, instance: &Instance) {
    let deny = lab.network_acl(
        vpc,
        &[
            AclRule {
                number: 50,
                egress: false,
                protocol: "-1",
                cidr: "172.16.0.0/16",
                ports: None,
                action: "deny",
            },
            AclRule::allow_all(false),
            AclRule::allow_all(true),
        ],
    );
    let old = lab.swap_network_acl(subnet, &deny);
    eventually("the network ACL stops the datacenter", false, || {
        datacenter_reaches(lab, instance)
    });
    lab.swap_network_acl(subnet, &old);
    eventually("the datacenter reaches the instance again", true, || {
        datacenter_reaches(lab, instance)
    });
    let icmp = [
        "--group-id",
        group,
        "--protocol",
        "icmp",
        "--port",
        "-1",
        "--cidr",
        "172.16.0.0/16",
    ];
    let mut revoke = vec!["revoke-security-group-ingress"];
    revoke.extend(icmp);
    lab.ec2(&revoke);
    eventually("the security group stops the datacenter", false, || {
        datacenter_reaches(lab, instance)
    });
    let mut authorize = vec!["authorize-security-group-ingress"];
    authorize.extend(icmp);
    lab.ec2(&authorize);
    eventually(
        "the security group lets the datacenter in again",
        true,
        || datacenter_reaches(lab, instance),
    );
}

/// Each route of `table` as (destination, target, origin).
fn routes_of(lab: &Lab, table: &str) -> Vec<(String, String, String)> {
    let v = lab.ec2(&["describe-route-tables", "--route-table-ids", table]);
    v["RouteTables"][0]["Routes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let target = ["GatewayId", "NetworkInterfaceId", "InstanceId"]
                .iter()
                .find_map(|k| r[*k].as_str())
                .unwrap_or_default();
            (
                r["DestinationCidrBlock"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                target.to_owned(),
                r["Origin"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// spec 2.4, 2.7 and 10.3: without propagation the route is not there;
/// a static VPC route for the same prefix wins over the propagated one,
/// and DescribeRouteTables shows both.
fn route_precedence(lab: &Lab, vgw: &str, vpc: &str, instance: &Instance) {
    let table = lab.main_route_table(vpc);
    let propagated = |lab: &Lab| {
        routes_of(lab, &table)
            .iter()
            .any(|r| r.0 == "172.16.0.0/16" && r.2 == "EnableVgwRoutePropagation")
    };
    let toggle = |on: bool| {
        lab.ec2(&[
            if on {
                "enable-vgw-route-propagation"
            } else {
                "disable-vgw-route-propagation"
            },
            "--route-table-id",
            &table,
            "--gateway-id",
            vgw,
        ]);
    };
    toggle(false);
    assert!(!propagated(lab), "{:?}", routes_of(lab, &table));
    eventually(
        "no route to the datacenter without propagation",
        false,
        || reaches_datacenter(lab, instance),
    );
    toggle(true);
    within(30, "propagated again", || {
        (!propagated(lab)).then(|| format!("{:?}", routes_of(lab, &table)))
    });
    eventually("the route is back", true, || {
        reaches_datacenter(lab, instance)
    });

    // A static route to an internet gateway for the same prefix: it wins
    // (the instance has no public address, so nothing gets through), and
    // both show.
    let igw = lab.igw(vpc);
    lab.route(&table, "172.16.0.0/16", &["--gateway-id", &igw]);
    let routes = routes_of(lab, &table);
    let both: Vec<&(String, String, String)> =
        routes.iter().filter(|r| r.0 == "172.16.0.0/16").collect();
    assert_eq!(both.len(), 2, "{routes:?}");
    assert!(
        both.iter().any(|r| r.1 == igw && r.2 == "CreateRoute"),
        "{routes:?}"
    );
    assert!(
        both.iter()
            .any(|r| r.1 == vgw && r.2 == "EnableVgwRoutePropagation"),
        "{routes:?}"
    );
    eventually("the static route wins", false, || {
        reaches_datacenter(lab, instance)
    });
    let trace = lab.trace(
        &instance.id,
        &lab.file("datacenter-server-ip"),
        &["--protocol", "icmp"],
    );
    assert!(
        trace.contains(&igw),
        "the trace follows the static route: {trace}"
    );
    lab.ec2(&[
        "delete-route",
        "--route-table-id",
        &table,
        "--destination-cidr-block",
        "172.16.0.0/16",
    ]);
    eventually("the propagated route carries again", true, || {
        reaches_datacenter(lab, instance)
    });
}

/// The tunnels' `Status` in VgwTelemetry, in tunnel order.
fn tunnel_states(lab: &Lab, vpn: &str) -> Vec<String> {
    lab.ec2(&["describe-vpn-connections", "--vpn-connection-ids", vpn])["VpnConnections"][0]
        ["VgwTelemetry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| t["Status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Issue 19 ("Failover"): tunnel 1 (the primary egress) goes away, its
/// IKE SA deleted by the customer gateway; traffic moves to tunnel 2. An
/// established TCP connection (the instance reading a stream from the
/// datacenter) survives; the longest pause it saw is the failover time.
fn failover_keeps_connections(lab: &mut Lab, vpn: &str, instance: &Instance) {
    let vici = format!(
        "unix://{}",
        lab.dir.path().join("datacenter/charon.vici").display()
    );
    let server_ip = lab.file("datacenter-server-ip");
    let netns = lab.file("datacenter-netns");
    let server = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &netns,
            "python3",
            "-c",
            STREAM_SERVER,
            "8080",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    lab.background.push(server);
    within(10, "the datacenter's stream server listens", || {
        let out = lab.in_datacenter(&["ss", "-Hltn", "sport = :8080"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .is_empty()
            .then(|| "not yet".to_owned())
    });
    let instance_id = instance.id.clone();
    let client = std::thread::spawn(move || {
        exec(
            &instance_id,
            &[
                "python3",
                "-c",
                STREAM_CLIENT,
                &server_ip,
                "8080",
                "2",
                "15",
            ],
        )
    });
    std::thread::sleep(Duration::from_secs(4));
    let killed = Instant::now();
    let out = std::process::Command::new("swanctl")
        .args(["--terminate", "--ike", "tunnel1", "--uri", &vici])
        .output()
        .unwrap();
    assert!(out.status.success(), "swanctl --terminate: {out:?}");
    within(15, "tunnel 1 DOWN and tunnel 2 UP", || {
        let states = tunnel_states(lab, vpn);
        (states != ["DOWN", "UP"]).then(|| format!("{states:?}"))
    });
    let noticed = killed.elapsed();
    let out = client.join().unwrap();
    let report = last_json(&out, "the stream client");
    eprintln!(
        "failover (IKE SA of tunnel 1 deleted): telemetry after {} ms; TCP streams: {report}",
        noticed.as_millis()
    );
    if report["stalled_at_end"] != 0 {
        dump_vpn_state(lab);
        let server_ip = lab.file("datacenter-server-ip");
        eprintln!(
            "trace: {}",
            lab.trace(
                &instance.id,
                &server_ip,
                &["--protocol", "tcp", "--port", "8080"]
            )
        );
    }
    assert_eq!(report["resets"], 0, "{report}");
    assert_eq!(report["closes"], 0, "{report}");
    assert_eq!(report["alive"], 2, "both connections survive: {report}");
    assert_eq!(report["stalled_at_end"], 0, "{report}");
    // Tunnel 1 comes back when the customer gateway starts it again.
    let out = std::process::Command::new("swanctl")
        .args(["--initiate", "--child", "tunnel1", "--uri", &vici])
        .output()
        .unwrap();
    assert!(out.status.success(), "swanctl --initiate: {out:?}");
    within(60, "tunnel 1 UP again", || {
        let states = tunnel_states(lab, vpn);
        (states != ["UP", "UP"]).then(|| format!("{states:?}"))
    });
    assert!(reaches_datacenter(lab, instance));
}

/// spec 7.2 (case 3): a peered VPC cannot reach the datacenter through
/// this VPC's VPN gateway, even with a route to the peering for it.
fn not_through_a_peering(lab: &Lab, vpc: &str, group: &str, instance: &Instance) {
    let other = lab.vpc("10.9.0.0/16");
    let subnet = lab.subnet(&other, "10.9.1.0/24", "us-east-1a", false);
    let peer_group = lab.group(&other, "peer", &[]);
    lab.allow(&peer_group, "icmp", "-1", "0.0.0.0/0");
    let peer = lab.instance(&subnet, &peer_group, None);
    let pcx = lab.ec2(&[
        "create-vpc-peering-connection",
        "--vpc-id",
        &other,
        "--peer-vpc-id",
        vpc,
    ])["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.ec2(&[
        "accept-vpc-peering-connection",
        "--vpc-peering-connection-id",
        &pcx,
    ]);
    let table = lab.main_route_table(&other);
    lab.route(
        &table,
        "10.0.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );
    lab.route(
        &table,
        "172.16.0.0/16",
        &["--vpc-peering-connection-id", &pcx],
    );
    let back = lab.main_route_table(vpc);
    lab.route(&back, "10.9.0.0/16", &["--vpc-peering-connection-id", &pcx]);
    // The peering itself works.
    lab.allow(group, "icmp", "-1", "10.9.0.0/16");
    eventually("the peer reaches the instance", true, || {
        exec(&peer.id, &["ping", "-c", "1", "-W", "2", &instance.ip])
            .status
            .success()
    });
    let server_ip = lab.file("datacenter-server-ip");
    let out = exec(&peer.id, &["ping", "-c", "3", "-W", "2", &server_ip]);
    assert!(
        !out.status.success(),
        "spec 7.2: no transit through the VPN gateway: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What a failed VPN check needs to be understood: each edge's gateway
/// role, and the datacenter's SAs, routes and BGP view.
fn dump_vpn_state(lab: &Lab) {
    for edge in ["e1", "e2"] {
        let status =
            std::fs::read_to_string(lab.dir.path().join("edges").join(edge).join("status.json"))
                .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
        eprintln!("{edge} vpn: {}", v["vpn"]);
        eprintln!(
            "{edge} drops: {} translated {}",
            v["drops"], v["translated"]
        );
    }
    eprintln!("datacenter SAs: {}", lab.sas());
    for cmd in [
        &["ip", "-4", "route", "show", "table", "all"][..],
        &["ip", "-s", "link", "show", "ipsec0"][..],
    ] {
        let out = lab.in_datacenter(cmd);
        eprintln!(
            "datacenter {cmd:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    eprintln!("datacenter BGP: {}", lab.dc_protocols());
}

/// Counts the datagrams that reach UDP port 9999 for DURATION seconds
/// (`python3 -c GAP_RECEIVER DURATION`), then prints one JSON line: how
/// many came, the longest gap between two, and how long before the end
/// the last one came.
const GAP_RECEIVER: &str = r#"
import json, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 9999))
s.settimeout(0.1)
end = time.monotonic() + float(sys.argv[1])
n, last, gap = 0, None, 0.0
while time.monotonic() < end:
    try:
        s.recv(100)
    except socket.timeout:
        continue
    now = time.monotonic()
    if last is not None:
        gap = max(gap, now - last)
    n, last = n + 1, now
print(json.dumps({'received': n, 'max_gap_ms': round(gap * 1000),
    'quiet_at_end_ms': round((end - last) * 1000) if last else None}), flush=True)
"#;

/// Sends COUNT datagrams to ADDRESS:9999, one every 100 ms
/// (`python3 -c UDP_SENDER ADDRESS COUNT`).
const UDP_SENDER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(str(i).encode(), (sys.argv[1], 9999))
    time.sleep(0.1)
"#;

/// Issue 19 ("Failover"), the silent kind: tunnel 1's outside address
/// stops answering in the datacenter (its packets dropped both ways,
/// nothing said). Dead peer detection or the BGP hold timer (30 s each)
/// takes the tunnel down at the gateway, and the gateway's traffic moves
/// to tunnel 2: measured as the longest gap in datagrams the instance
/// sends every 100 ms to the datacenter. (The other way is the customer
/// gateway's to move: libipsec picks its SA by policy, so it follows its
/// own dead peer detection, not BGP.)
fn failover_on_silence(lab: &Lab, vpn: &str, outside_ips: &[String], instance: &Instance) {
    let server_ip = lab.file("datacenter-server-ip");
    let first = format!("{}/32", outside_ips[0]);
    let netns = lab.file("datacenter-netns");
    let receiver = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-c", GAP_RECEIVER, "48"])
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    let instance_id = instance.id.clone();
    let sender = std::thread::spawn(move || {
        exec(
            &instance_id,
            &["python3", "-c", UDP_SENDER, &server_ip, "460"],
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    // The datacenter sends nothing to it, and the outside router drops
    // what it sends to the datacenter.
    let dc = format!("{}/32", lab.file("datacenter-ip"));
    let towards_dc = [
        "rule",
        "from",
        first.as_str(),
        "to",
        dc.as_str(),
        "blackhole",
    ];
    let in_outside = |verb: &str| {
        let mut args = vec![
            "netns",
            "exec",
            lab.outside.as_str(),
            "ip",
            towards_dc[0],
            verb,
        ];
        args.extend_from_slice(&towards_dc[1..]);
        std::process::Command::new("ip")
            .args(&args)
            .output()
            .unwrap()
    };
    let silenced = Instant::now();
    let out = lab.in_datacenter(&["ip", "route", "add", "blackhole", first.as_str()]);
    assert!(out.status.success(), "{out:?}");
    let out = in_outside("add");
    assert!(out.status.success(), "{out:?}");
    within(45, "tunnel 1 DOWN after silence", || {
        let states = tunnel_states(lab, vpn);
        (states.first().map(String::as_str) != Some("DOWN")).then(|| format!("{states:?}"))
    });
    let detected = silenced.elapsed();
    let sent = sender.join().unwrap();
    assert!(sent.status.success(), "{sent:?}");
    let out = receiver.join().unwrap();
    let report = last_json(&out, "the datagram receiver");
    eprintln!(
        "failover (tunnel 1 silent): telemetry DOWN after {} ms; VPC → datacenter: {report}",
        detected.as_millis()
    );
    let gap = report["max_gap_ms"].as_u64().unwrap_or(u64::MAX);
    // DPD's or BGP's 30 s, and the move after it.
    assert!(gap <= 35_000, "{report}");
    assert!(
        report["quiet_at_end_ms"]
            .as_u64()
            .is_some_and(|q| q < 2_000),
        "datagrams cross tunnel 2 after the failover: {report}"
    );
    in_outside("del");
    lab.in_datacenter(&["ip", "route", "del", "blackhole", first.as_str()]);
}
