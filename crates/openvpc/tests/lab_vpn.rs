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
//! key reaches a log. The whole path (both tunnels UP in VgwTelemetry,
//! BGP established, the datacenter's prefix propagated, pings both ways)
//! is [`both_tunnels_carry_bgp_and_traffic_both_ways`], run with
//! `OPENVPC_LAB_VPN_E2E=1` until the edge serves tunnels.
//!
//! Needs root, the aws CLI, BIRD and strongSwan; without them it says why
//! and skips (CI runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use serde_json::Value;

use common::lab::{Instance, Lab, OPENVPC, exec};
use common::vpn::{VpnWorld, strongswan_missing, within};

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
    let Some(lab) = Lab::up(&["--datacenter"]) else {
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

    if std::env::var("OPENVPC_LAB_VPN_E2E").is_ok_and(|v| v == "1") {
        both_tunnels_carry_bgp_and_traffic_both_ways(&lab, &vpn, &vgw, &vpc, &instance);
    } else {
        eprintln!(
            "not checking the whole path (tunnels UP, BGP, propagation, pings): set OPENVPC_LAB_VPN_E2E=1 once the edge serves tunnels"
        );
    }

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
/// Needs the edge to serve tunnels: run with `OPENVPC_LAB_VPN_E2E=1`.
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
    lab.ec2(&[
        "enable-vgw-route-propagation",
        "--route-table-id",
        &table,
        "--gateway-id",
        vgw,
    ]);
    within(
        30,
        "172.16.0.0/16 propagated into the main route table",
        || {
            let v = lab.ec2(&["describe-route-tables", "--route-table-ids", &table]);
            let routes = v["RouteTables"][0]["Routes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let found = routes.iter().any(|r| {
                r["DestinationCidrBlock"] == "172.16.0.0/16"
                    && r["GatewayId"] == vgw
                    && r["Origin"] == "EnableVgwRoutePropagation"
                    && r["State"] == "active"
            });
            (!found).then(|| format!("{routes:?}"))
        },
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
