//! Our speaker against a real FRR 8 bgpd (`/usr/lib/frr/bgpd`, run
//! standalone: `-Z` no zebra, `-S` no privilege changes, its own config,
//! pid file, zebra and vty socket paths in a temp dir; queried with
//! `vtysh --vty_socket DIR -d bgpd`), each test in namespaces of its own:
//! the session comes up, FRR has our prefix with our next hop, we learn
//! FRR's prefix, a withdrawal reaches FRR, a frozen speaker's route goes
//! after the hold time (3 s), and a prefix limit exceeded sends FRR
//! Cease / Maximum Number of Prefixes Reached.
//!
//! Needs root; without it (or without FRR) the tests say so and pass,
//! unless OPENVPC_REQUIRE_TOOLS=1.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{ChildArgs, Lab, connect_in, output, ready, signal, speaker, wait_until};
use openvpc_bgp::speaker::SpeakerConfig;
use openvpc_bgp::{Config, ExportAttrs, Ipv4Prefix, Speaker, State};
use serde_json::Value;

const BGPD: &str = "/usr/lib/frr/bgpd";
const VTYSH: &str = "/usr/bin/vtysh";

const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EDGE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ROUTER_AS: u32 = 65000;
const EDGE_AS: u32 = 65010;

fn pool() -> Ipv4Prefix {
    "203.0.113.0/24".parse().unwrap()
}

/// The pseudo-test the hold-time test starts as a separate speaker process.
#[test]
fn child_speaker() {
    common::child_speaker_main();
}

/// FRR announcing `networks`, waiting passively for us.
fn frr_config(networks: &[&str]) -> String {
    let nets: String = networks
        .iter()
        .map(|n| format!("  network {n}\n"))
        .collect();
    format!(
        "hostname outside
router bgp {ROUTER_AS}
 bgp router-id {ROUTER}
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor {EDGE} remote-as {EDGE_AS}
 neighbor {EDGE} passive
 neighbor {EDGE} timers 1 3
 address-family ipv4 unicast
{nets} exit-address-family
"
    )
}

/// Starts bgpd in `ns`; returns the vty socket directory.
fn start_frr(lab: &mut Lab, ns: &str, config: &str) -> String {
    let conf = lab.path("bgpd.conf");
    std::fs::write(&conf, config).unwrap();
    let dir = lab.dir.path().display().to_string();
    let pid = lab.path("bgpd.pid");
    let zsock = lab.path("zserv.api");
    lab.spawn(
        ns,
        BGPD,
        &[
            "-Z",
            "-S",
            "-f",
            &conf,
            "-i",
            &pid,
            "-z",
            &zsock,
            "--vty_socket",
            &dir,
            "-P",
            "0",
        ],
        "bgpd.log",
    );
    let up = wait_until(Duration::from_secs(15), || {
        vtysh(&dir, "show bgp summary json")
            .get("ipv4Unicast")
            .is_some()
    });
    assert!(up.is_some(), "bgpd did not start: {}", lab.log("bgpd.log"));
    dir
}

fn vtysh(dir: &str, cmd: &str) -> Value {
    let out = output(VTYSH, &["--vty_socket", dir, "-d", "bgpd", "-c", cmd]);
    serde_json::from_str(&out).unwrap_or(Value::Null)
}

/// FRR's paths for `prefix` (empty if it has none).
fn frr_paths(dir: &str, prefix: Ipv4Prefix) -> Vec<Value> {
    let v = vtysh(dir, &format!("show bgp ipv4 unicast {prefix} json"));
    v["paths"].as_array().cloned().unwrap_or_default()
}

fn neighbor(dir: &str) -> Value {
    vtysh(dir, &format!("show bgp neighbors {EDGE} json"))[EDGE.to_string()].clone()
}

fn two_namespaces(lab: &mut Lab) -> (String, String) {
    let r = lab.ns("r");
    let e = lab.ns("e");
    lab.link(&r, "r0", "192.0.2.1/28", &e, "e0", "192.0.2.2/28");
    (r, e)
}

#[test]
fn frr_session_announce_learn_withdraw() {
    if !ready(&[BGPD, VTYSH]) {
        return;
    }
    let mut lab = Lab::new("fsess");
    let (r, e) = two_namespaces(&mut lab);
    let dir = start_frr(&mut lab, &r, &frr_config(&["198.51.100.0/24"]));

    let sp = speaker(&e, EDGE_AS, ROUTER_AS, EDGE, ROUTER, 3);
    sp.set_announced(
        vec![pool()],
        EDGE,
        ExportAttrs {
            med: Some(7),
            ..Default::default()
        },
    );
    let took = wait_until(Duration::from_secs(20), || {
        sp.status().state == State::Established
    });
    assert!(
        took.is_some(),
        "not established: {:?}\n{}\n{}",
        sp.status(),
        neighbor(&dir),
        lab.log("bgpd.log")
    );
    println!("established after {took:?}");
    assert_eq!(neighbor(&dir)["bgpState"], "Established");
    // Both sides use the smaller hold time.
    assert_eq!(neighbor(&dir)["bgpTimerHoldTimeMsecs"], 3000);

    // FRR has our prefix, with our next hop, AS and MED.
    let has = wait_until(Duration::from_secs(10), || {
        !frr_paths(&dir, pool()).is_empty()
    });
    assert!(has.is_some(), "FRR lacks {}", pool());
    let path = &frr_paths(&dir, pool())[0];
    assert_eq!(path["nexthops"][0]["ip"], EDGE.to_string(), "{path}");
    assert_eq!(path["aspath"]["string"], EDGE_AS.to_string(), "{path}");
    assert_eq!(path["metric"], 7, "{path}");

    // We learn FRR's prefix.
    let outside: Ipv4Prefix = "198.51.100.0/24".parse().unwrap();
    let learned = wait_until(Duration::from_secs(10), || {
        sp.routes().contains_key(&outside)
    });
    assert!(learned.is_some(), "routes: {:?}", sp.routes());
    assert_eq!(sp.routes()[&outside].next_hop, ROUTER);

    // A withdrawal reaches FRR.
    sp.set_announced(vec![], EDGE, ExportAttrs::default());
    let gone = wait_until(Duration::from_secs(5), || {
        frr_paths(&dir, pool()).is_empty()
    });
    assert!(gone.is_some(), "FRR still has {}", pool());
    println!("withdrawal reached FRR after {gone:?}");

    // Stop sends Cease / Administrative Shutdown.
    sp.stop();
    let ceased = wait_until(Duration::from_secs(5), || {
        neighbor(&dir)["lastNotificationReason"]
            .as_str()
            .is_some_and(|s| s.contains("Administrative Shutdown"))
    });
    assert!(ceased.is_some(), "{}", neighbor(&dir));
}

#[test]
fn frr_withdraws_after_hold_time_when_speaker_freezes() {
    if !ready(&[BGPD, VTYSH]) {
        return;
    }
    let mut lab = Lab::new("fhold");
    let (r, e) = two_namespaces(&mut lab);
    let dir = start_frr(&mut lab, &r, &frr_config(&[]));
    let args = ChildArgs {
        local_as: EDGE_AS,
        peer_as: ROUTER_AS,
        me: EDGE,
        peer: ROUTER,
        hold: 3,
        prefix: pool(),
    };
    let child = lab.spawn_speaker("child_speaker", &e, &args);
    let up = wait_until(Duration::from_secs(20), || {
        !frr_paths(&dir, pool()).is_empty()
    });
    assert!(up.is_some(), "{}", neighbor(&dir));
    signal(child, libc::SIGSTOP);
    let frozen = wait_until(Duration::from_secs(10), || {
        frr_paths(&dir, pool()).is_empty()
    })
    .expect("FRR kept the route of a frozen speaker");
    println!("FRR withdrew a frozen speaker's route after {frozen:?} (hold time 3 s)");
    // The 3 s hold time (2-3 s after the last keepalive), plus vtysh
    // polling and a loaded machine's scheduling.
    assert!(
        (Duration::from_millis(1500)..=Duration::from_millis(4500)).contains(&frozen),
        "withdrawn after {frozen:?}: expected the 3 s hold timer"
    );
    let n = neighbor(&dir);
    assert!(
        n["lastNotificationReason"]
            .as_str()
            .is_some_and(|s| s.contains("Hold Timer Expired")),
        "{n}"
    );
    lab.kill(child);
}

#[test]
fn frr_exceeding_max_prefixes_gets_cease() {
    if !ready(&[BGPD, VTYSH]) {
        return;
    }
    let mut lab = Lab::new("fmax");
    let (r, e) = two_namespaces(&mut lab);
    let dir = start_frr(
        &mut lab,
        &r,
        &frr_config(&["198.51.100.0/26", "198.51.100.64/26", "198.51.100.128/26"]),
    );
    let mut cfg = SpeakerConfig::new(
        Config {
            hold_time: 3,
            max_prefixes: Some(2),
            ..Config::new(EDGE_AS, ROUTER_AS, EDGE)
        },
        ROUTER,
    );
    cfg.retry_min = Duration::from_secs(30);
    let sp = Speaker::spawn(cfg, connect_in(&e)).unwrap();
    let refused = wait_until(Duration::from_secs(20), || {
        neighbor(&dir)["lastNotificationReason"]
            .as_str()
            .is_some_and(|s| s.contains("Maximum Number of Prefixes Reached"))
    });
    assert!(refused.is_some(), "{}\n{:?}", neighbor(&dir), sp.status());
    let status = sp.status();
    assert_ne!(status.state, State::Established);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("limit of 2")),
        "{status:?}"
    );
    assert_eq!(status.prefixes_received, 0);
}
