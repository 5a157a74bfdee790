//! Site-to-Site VPN against a second customer router and on the wire
//! (issue 19's "Interop" and "The wire" tests): `openvpc lab datacenter
//! connect --router frr` runs FRR's bgpd and zebra as the customer router
//! in place of BIRD, and the VGW's BGP speaker must serve it the same:
//! both sessions Established as FRR sees them, both tunnels UP with
//! accepted routes in VgwTelemetry, the datacenter's prefix propagated
//! into the main route table, the VPC's CIDR installed by zebra in the
//! datacenter's kernel, and pings both ways. Meanwhile tshark captures
//! the datacenter's link in the outside namespace (`dc0`, from before
//! charon starts) and must decode IKEv2 (IKE_SA_INIT, IKE_AUTH, version
//! 2.0; UDP 500, then 4500 once charon's forced NAT-T encapsulation
//! moves there) and UDP-encapsulated ESP both ways on both tunnels.
//! One lab serves both checks: each `lab up` costs about 15 s.
//!
//! Needs root, the aws CLI, BIRD (the outside router), strongSwan, FRR
//! and tshark; without them it says why and skips, unless
//! OPENVPC_REQUIRE_TOOLS is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::lab::{Lab, capture, decode, exec};
use common::vpn::{VpnWorld, frr_missing, propagate_and_wait, strongswan_missing, within};

/// RFC 7296 §3.1: IKEv2's exchange types, and version 2.0 as one octet.
const IKE_SA_INIT: u64 = 34;
const IKE_AUTH: u64 = 35;
const IKE_VERSION_2_0: u64 = 0x20;

/// The longest the capture may run; it is stopped as soon as the traffic
/// it must hold has crossed.
const CAPTURE_LIMIT_SECS: u32 = 300;

fn tshark_missing() -> bool {
    if Command::new("tshark").arg("--version").output().is_ok() {
        return false;
    }
    assert!(
        std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
        "tshark is missing: scripts/test installs it"
    );
    eprintln!("skipping: tshark is missing (apt-get install tshark)");
    true
}

/// A running tshark; stopped by its PID (SIGINT, so it closes the file
/// and its dumpcap) when dropped, also when the test fails.
struct Capture(Child);

impl Capture {
    /// Stops the capture and waits for the file to be complete.
    fn stop(mut self) {
        self.interrupt();
    }

    fn interrupt(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-INT", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.interrupt();
    }
}

/// tshark prints numbers in decimal or, for hex-based fields, `0x…`.
fn number(s: &str) -> Option<u64> {
    common::lab::parse_number(s.trim())
}

#[test]
fn frr_as_the_customer_router_and_ikev2_esp_on_the_wire() {
    if strongswan_missing() || frr_missing() || tshark_missing() {
        return;
    }
    let Some(lab) = Lab::up(&["--datacenter"]) else {
        return;
    };
    let dc_ip = lab.file("datacenter-ip");
    let server_ip = lab.file("datacenter-server-ip");

    // The wire: capture IKE and NAT-T on the datacenter's link from before
    // charon starts (VpnWorld::connect runs `lab datacenter connect`).
    let pcap = lab.dir.path().join("datacenter-wire.pcapng");
    let tshark = Capture(capture(
        &lab.outside,
        "dc0",
        "udp port 500 or udp port 4500",
        CAPTURE_LIMIT_SECS,
        &pcap,
    ));
    within(15, "tshark capturing on dc0", || {
        let len = std::fs::metadata(&pcap).map_or(0, |m| m.len());
        (len == 0).then(|| format!("{} is still empty", pcap.display()))
    });

    let started = Instant::now();
    let world = VpnWorld::connect(&lab, &["--router", "frr"]);

    // The router parts are FRR's: bgpd as datacenter-router, its zebra.
    let processes = lab.lab_json()["processes"].clone();
    let args_of = |part: &str| -> String {
        processes
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"] == part)
            .map(|p| p["args"].to_string())
            .unwrap_or_else(|| panic!("no {part} in lab.json: {processes}"))
    };
    assert!(args_of("datacenter-router").contains("/usr/lib/frr/bgpd"));
    assert!(args_of("datacenter-zebra").contains("/usr/lib/frr/zebra"));
    assert!(lab.process_running("datacenter-router") && lab.process_running("datacenter-zebra"));

    // Interop: BGP Established on both tunnels as FRR sees them, with the
    // VGW's ASN and spec 10.2's hold time.
    let peers = || lab.dc_frr("bgpd", "show bgp summary json")["ipv4Unicast"]["peers"].clone();
    within(90, "FRR's sessions Established on both tunnels", || {
        let p = peers();
        let up = p.as_object().map_or(0, |m| {
            m.values().filter(|v| v["state"] == "Established").count()
        });
        (up != 2).then(|| format!("{p}\n{}", lab.sas()))
    });
    println!(
        "FRR: both sessions Established {} ms after connect",
        started.elapsed().as_millis()
    );
    for (peer, v) in peers().as_object().unwrap() {
        // spec 10.2: the VGW's end of a tunnel's inside /30.
        let host = peer
            .strip_prefix("169.254.")
            .and_then(|rest| rest.rsplit('.').next())
            .and_then(|last| last.parse::<u8>().ok());
        assert_eq!(
            host.map(|h| h % 4),
            Some(1),
            "{peer}: not a /30's first host"
        );
        assert_eq!(v["remoteAs"], 64512, "{v}");
        assert_eq!(v["localAs"], 65000, "{v}");
        let n = lab.dc_frr("bgpd", &format!("show bgp neighbors {peer} json"))[peer].clone();
        assert_eq!(
            n["bgpTimerHoldTimeMsecs"], 30_000,
            "spec 10.2: hold 30 s: {n}"
        );
        assert_eq!(n["bgpTimerKeepAliveIntervalMsecs"], 10_000, "{n}");
    }

    // spec 10.2 / issue 19: both tunnels UP with the datacenter's prefix
    // accepted. Only the state and telemetry are shown: the rest holds
    // the PSKs.
    let connection = || -> Value {
        lab.ec2(&[
            "describe-vpn-connections",
            "--vpn-connection-ids",
            &world.vpn,
        ])["VpnConnections"][0]
            .clone()
    };
    within(60, "both tunnels UP with accepted routes", || {
        let c = connection();
        let t = c["VgwTelemetry"].as_array().cloned().unwrap_or_default();
        let ok = t.len() == 2
            && t.iter()
                .all(|t| t["Status"] == "UP" && t["AcceptedRouteCount"].as_u64().unwrap_or(0) >= 1);
        (!ok || c["State"] != "available").then(|| format!("{} {}", c["State"], c["VgwTelemetry"]))
    });

    // spec 10.3: learned from FRR, propagated into the main route table.
    let table = lab.main_route_table(&world.vpc);
    propagate_and_wait(&lab, &table, &world.vgw);

    // FRR learned the VPC's CIDR over both tunnels and zebra put one best
    // path into the datacenter's kernel, from the LAN server's address.
    let paths = lab.dc_frr("bgpd", "show bgp ipv4 unicast 10.0.0.0/16 json")["paths"].clone();
    assert_eq!(paths.as_array().map_or(0, Vec::len), 2, "{paths}");
    within(15, "zebra installs 10.0.0.0/16 into the kernel", || {
        let out = lab.in_datacenter(&["ip", "-4", "route", "show", "10.0.0.0/16"]);
        let route = String::from_utf8_lossy(&out.stdout).into_owned();
        let ok = route.contains("dev ipsec0")
            && route.contains("proto bgp")
            && route.contains(&format!("src {server_ip}"));
        (!ok).then_some(route)
    });

    // Traffic both ways through the tunnels.
    within(30, "the instance pings the datacenter server", || {
        let out = exec(
            &world.instance.id,
            &["ping", "-c", "2", "-W", "2", &server_ip],
        );
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let out = lab.in_datacenter(&[
        "ping",
        "-c",
        "3",
        "-W",
        "2",
        "-I",
        &server_ip,
        &world.instance.ip,
    ]);
    assert!(
        out.status.success(),
        "the datacenter pings the instance: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    println!(
        "FRR interop: sessions, propagation and pings both ways {} ms after connect",
        started.elapsed().as_millis()
    );

    // `lab status` names the router and shows FRR's sessions.
    let status = lab.status();
    let dc = &status["datacenter"];
    assert_eq!(dc["router"]["program"], "frr", "{dc}");
    assert_eq!(dc["router"]["running"], true, "{dc}");
    assert_eq!(dc["router"]["zebra"]["running"], true, "{dc}");
    let summary = dc["protocols"].as_str().unwrap_or_default();
    assert!(summary.matches("169.254.").count() >= 2, "{dc}");

    // The wire.
    tshark.stop();
    wire_shows_ikev2_and_esp(&pcap, &dc_ip, &world.outside_ips);

    // `lab restart` knows FRR's parts: a crashed bgpd and a restarted
    // zebra come back, and so do the sessions and the kernel route.
    let restarted = Instant::now();
    lab.restart("datacenter-router", true);
    lab.restart("datacenter-zebra", false);
    within(60, "FRR's sessions Established again", || {
        let p = peers();
        let up = p.as_object().map_or(0, |m| {
            m.values().filter(|v| v["state"] == "Established").count()
        });
        (up != 2).then(|| p.to_string())
    });
    within(15, "zebra installs 10.0.0.0/16 again", || {
        let out = lab.in_datacenter(&["ip", "-4", "route", "show", "10.0.0.0/16"]);
        let route = String::from_utf8_lossy(&out.stdout).into_owned();
        (!route.contains("proto bgp")).then_some(route)
    });
    println!(
        "FRR restarted (bgpd killed, zebra stopped): sessions and route back after {} ms",
        restarted.elapsed().as_millis()
    );

    // Disconnect stops bgpd and zebra, and zebra takes its routes along.
    let (ok, stderr) = lab.datacenter(&["disconnect"]);
    assert!(ok, "{stderr}");
    for part in [
        "datacenter-router",
        "datacenter-zebra",
        "datacenter-gateway",
    ] {
        assert!(stderr.contains(part), "{part} stopped: {stderr}");
        assert!(!lab.process_running(part), "{part} still runs");
    }
    let out = lab.in_datacenter(&["ip", "-4", "route", "show", "proto", "bgp"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "zebra left routes: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// What tshark decodes of the capture: IKEv2's IKE_SA_INIT and IKE_AUTH
/// (version 2.0) between the datacenter and each tunnel's outside
/// address, and ESP in UDP 4500 in both directions of each tunnel.
fn wire_shows_ikev2_and_esp(pcap: &Path, dc_ip: &str, outside_ips: &[String]) {
    let ike = decode(
        pcap,
        "isakmp",
        &[
            "ip.src",
            "ip.dst",
            "udp.dstport",
            "isakmp.exchangetype",
            "isakmp.version",
        ],
    );
    let esp = decode(pcap, "esp", &["ip.src", "ip.dst", "udp.dstport", "esp.spi"]);
    println!(
        "the wire: {} IKE messages, {} ESP packets decoded",
        ike.len(),
        esp.len()
    );
    // (src, dst, port, exchange type, version) per IKE message.
    let ike: Vec<(String, String, u64, u64, u64)> = ike
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Some((
                f.first()?.to_string(),
                f.get(1)?.to_string(),
                number(f.get(2)?)?,
                number(f.get(3)?)?,
                number(f.get(4)?)?,
            ))
        })
        .collect();
    for tunnel in outside_ips {
        let with = |exchange: u64, from: &str, to: &str| -> BTreeSet<u64> {
            ike.iter()
                .filter(|(s, d, _, x, v)| {
                    s == from && d == to && *x == exchange && *v == IKE_VERSION_2_0
                })
                .map(|(_, _, port, _, _)| *port)
                .collect()
        };
        // RFC 7296 §1.2: the customer side initiates, the VGW answers.
        let init = with(IKE_SA_INIT, dc_ip, tunnel);
        assert!(
            init.contains(&500),
            "no IKEv2 IKE_SA_INIT request to {tunnel} on UDP 500: {ike:?}"
        );
        assert!(
            !with(IKE_SA_INIT, tunnel, dc_ip).is_empty(),
            "no IKE_SA_INIT response from {tunnel}: {ike:?}"
        );
        // RFC 7296 §2.23: with NAT-T encapsulation forced, IKE_AUTH moves
        // to UDP 4500.
        let auth = with(IKE_AUTH, dc_ip, tunnel);
        assert!(
            auth.contains(&4500),
            "no IKEv2 IKE_AUTH to {tunnel} on UDP 4500: {auth:?} {ike:?}"
        );
        assert!(
            !with(IKE_AUTH, tunnel, dc_ip).is_empty(),
            "no IKE_AUTH response from {tunnel}: {ike:?}"
        );
        // RFC 3948: ESP in UDP 4500 both ways, one SPI per direction.
        let spis = |from: &str, to: &str| -> BTreeSet<String> {
            esp.iter()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split('\t').collect();
                    (f.first() == Some(&from)
                        && f.get(1) == Some(&to)
                        && f.get(2).and_then(|p| number(p)) == Some(4500))
                    .then(|| f.get(3).map(|s| s.to_string()))
                    .flatten()
                })
                .collect()
        };
        let out = spis(dc_ip, tunnel);
        let back = spis(tunnel, dc_ip);
        assert!(
            !out.is_empty() && !back.is_empty(),
            "ESP in UDP 4500 both ways with {tunnel}: out {out:?}, back {back:?}"
        );
        assert!(out.is_disjoint(&back), "each direction has its own SPI");
        println!(
            "the wire, tunnel {tunnel}: IKE_SA_INIT on {init:?}, IKE_AUTH on {auth:?}, ESP SPIs out {out:?} back {back:?}"
        );
    }
}
