//! Our speaker against a real BIRD 2 (`/usr/sbin/bird`, queried with
//! `birdc`), each test in namespaces of its own: the session comes up, BIRD
//! has our prefix with our next hop, we learn BIRD's prefix, a withdrawal
//! reaches BIRD, a frozen speaker's route goes after the hold time (3 s) and
//! a killed one's at once, and two speakers announcing the same prefix give
//! BIRD's kernel table an ECMP route.
//!
//! Needs root; without it (or without BIRD) the tests say so and pass,
//! unless OPENVPC_REQUIRE_TOOLS=1.
//!
//! # The outside router's configuration
//!
//! The shape the lab's outside router uses: it accepts any number of edge
//! peers passively (edges connect to it), takes the public pool from each,
//! and installs one kernel route with a next hop per live edge (ECMP).
//! Replace the addresses and AS numbers; add one `protocol bgp` per edge.
//!
//! ```text
//! router id 192.0.2.1;
//!
//! protocol device { scan time 1; }
//!
//! # All equal-cost BGP paths go into one multipath kernel route.
//! protocol kernel {
//!     ipv4 { export all; };
//!     merge paths on;
//! }
//!
//! template bgp edge {
//!     local as 65000;
//!     passive on;             # edges connect to us
//!     hold time 3;            # a dead edge's path goes within 3 s
//!     keepalive time 1;
//!     error wait time 1, 5;   # let a restarted edge back in quickly
//!     ipv4 { import all; export none; };
//! }
//!
//! protocol bgp edge1 from edge { neighbor 192.0.2.2 as 65010; }
//! protocol bgp edge2 from edge { neighbor 192.0.2.18 as 65010; }
//! ```
//!
//! `ip route show 203.0.113.0/24` then shows
//! `nexthop via 192.0.2.2 ... nexthop via 192.0.2.18 ...`.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{ChildArgs, Lab, output, ready, signal, speaker, wait_until};
use openvpc_bgp::{ExportAttrs, Ipv4Prefix, State};

const BIRD: &str = "/usr/sbin/bird";
const BIRDC: &str = "/usr/sbin/birdc";

const ROUTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const EDGE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ROUTER_AS: u32 = 65000;
const EDGE_AS: u32 = 65010;
/// The latest a frozen speaker's route may go: the 3 s hold time, plus
/// birdc polling and a loaded machine's scheduling.
const HOLD_BOUND: Duration = Duration::from_millis(4500);

fn pool() -> Ipv4Prefix {
    "203.0.113.0/24".parse().unwrap()
}

fn outside() -> Ipv4Prefix {
    "198.51.100.0/24".parse().unwrap()
}

/// The pseudo-test the crash test starts as a separate speaker process.
#[test]
fn child_speaker() {
    common::child_speaker_main();
}

/// Starts BIRD in `ns` with `config`; returns the control socket path.
fn start_bird(lab: &mut Lab, ns: &str, config: &str) -> String {
    let conf = lab.path("bird.conf");
    std::fs::write(&conf, config).unwrap();
    let sock = lab.path("bird.ctl");
    let pid = lab.path("bird.pid");
    lab.spawn(
        ns,
        BIRD,
        &["-f", "-c", &conf, "-s", &sock, "-P", &pid],
        "bird.log",
    );
    let up = wait_until(Duration::from_secs(10), || {
        output(BIRDC, &["-s", &sock, "show", "status"]).contains("Daemon is up")
    });
    assert!(up.is_some(), "BIRD did not start: {}", lab.log("bird.log"));
    sock
}

fn birdc(sock: &str, args: &[&str]) -> String {
    let mut a = vec!["-s", sock];
    a.extend_from_slice(args);
    output(BIRDC, &a)
}

/// BIRD's route for `prefix`, `None` if it has none.
fn bird_route(sock: &str, prefix: Ipv4Prefix) -> Option<String> {
    let out = birdc(sock, &["show", "route", &prefix.to_string(), "all"]);
    out.contains("BGP.next_hop").then_some(out)
}

/// One router namespace and one edge namespace joined by a veth.
fn two_namespaces(lab: &mut Lab) -> (String, String) {
    let r = lab.ns("r");
    let e = lab.ns("e");
    lab.link(&r, "r0", "192.0.2.1/28", &e, "e0", "192.0.2.2/28");
    (r, e)
}

fn router_config() -> String {
    format!(
        r#"
router id {ROUTER};
protocol device {{ scan time 1; }}
protocol static {{ ipv4; route {outside} blackhole; }}
protocol bgp edge {{
    local {ROUTER} as {ROUTER_AS};
    neighbor {EDGE} as {EDGE_AS};
    passive on;
    hold time 3;
    keepalive time 1;
    error wait time 1, 2;
    ipv4 {{ import all; export all; }};
}}
"#,
        outside = outside()
    )
}

#[test]
fn bird_session_announce_learn_withdraw() {
    if !ready(&[BIRD, BIRDC]) {
        return;
    }
    let mut lab = Lab::new("bsess");
    let (r, e) = two_namespaces(&mut lab);
    let sock = start_bird(&mut lab, &r, &router_config());

    let sp = speaker(&e, EDGE_AS, ROUTER_AS, EDGE, ROUTER, 3);
    sp.set_announced(vec![pool()], EDGE, ExportAttrs::default());
    let took = wait_until(Duration::from_secs(20), || {
        sp.status().state == State::Established
    });
    assert!(
        took.is_some(),
        "not established: {:?}\n{}\n{}",
        sp.status(),
        birdc(&sock, &["show", "protocols", "all", "edge"]),
        lab.log("bird.log")
    );
    println!("established after {took:?}");
    assert!(birdc(&sock, &["show", "protocols", "edge"]).contains("Established"));

    // BIRD has our prefix, with our next hop and our AS.
    let route = wait_until(Duration::from_secs(10), || {
        bird_route(&sock, pool()).is_some()
    });
    let shown = bird_route(&sock, pool()).unwrap_or_default();
    assert!(route.is_some(), "BIRD lacks {}: {shown}", pool());
    assert!(shown.contains(&format!("BGP.next_hop: {EDGE}")), "{shown}");
    assert!(
        shown.contains(&format!("BGP.as_path: {EDGE_AS}")),
        "{shown}"
    );

    // We learn BIRD's prefix (what the VPN gateway will rely on).
    let learned = wait_until(Duration::from_secs(10), || {
        sp.routes().contains_key(&outside())
    });
    assert!(learned.is_some(), "routes: {:?}", sp.routes());
    let r = &sp.routes()[&outside()];
    assert_eq!(r.next_hop, ROUTER);
    assert_eq!(
        r.as_path
            .iter()
            .flat_map(|s| s.asns.clone())
            .collect::<Vec<_>>(),
        vec![ROUTER_AS]
    );
    assert_eq!(sp.status().prefixes_received, 1);

    // A withdrawal reaches BIRD.
    sp.set_announced(vec![], EDGE, ExportAttrs::default());
    let gone = wait_until(Duration::from_secs(5), || {
        bird_route(&sock, pool()).is_none()
    });
    assert!(gone.is_some(), "BIRD still has {}", pool());
    println!("withdrawal reached BIRD after {gone:?}");

    // Stopping sends Cease: BIRD says so.
    sp.stop();
    let ceased = wait_until(Duration::from_secs(5), || {
        let s = birdc(&sock, &["show", "protocols", "all", "edge"]);
        s.contains("Administrative shutdown") || s.contains("Received: Administrative shutdown")
    });
    assert!(
        ceased.is_some(),
        "{}",
        birdc(&sock, &["show", "protocols", "all", "edge"])
    );
}

#[test]
fn bird_withdraws_after_hold_time_when_speaker_freezes_or_dies() {
    if !ready(&[BIRD, BIRDC]) {
        return;
    }
    let mut lab = Lab::new("bhold");
    let (r, e) = two_namespaces(&mut lab);
    let sock = start_bird(&mut lab, &r, &router_config());
    let args = ChildArgs {
        local_as: EDGE_AS,
        peer_as: ROUTER_AS,
        me: EDGE,
        peer: ROUTER,
        hold: 3,
        prefix: pool(),
    };

    // A frozen speaker (SIGSTOP: the process and its socket stay, nothing
    // is sent, as when a machine hangs or its link dies): BIRD's hold timer
    // withdraws the route.
    let child = lab.spawn_speaker("child_speaker", &e, &args);
    let up = wait_until(Duration::from_secs(20), || {
        bird_route(&sock, pool()).is_some()
    });
    assert!(
        up.is_some(),
        "{}",
        birdc(&sock, &["show", "protocols", "all", "edge"])
    );
    signal(child, libc::SIGSTOP);
    let frozen = wait_until(Duration::from_secs(10), || {
        bird_route(&sock, pool()).is_none()
    })
    .expect("BIRD kept the route of a frozen speaker");
    println!("BIRD withdrew a frozen speaker's route after {frozen:?} (hold time 3 s)");
    assert!(
        (Duration::from_millis(1500)..=HOLD_BOUND).contains(&frozen),
        "withdrawn after {frozen:?}: expected the 3 s hold timer (2-3 s after the last keepalive, plus polling)"
    );
    let info = birdc(&sock, &["show", "protocols", "all", "edge"]);
    assert!(info.contains("Hold timer expired"), "{info}");
    lab.kill(child);

    // A killed speaker (SIGKILL on a live kernel): the kernel closes the
    // socket, BIRD sees the connection end and withdraws at once.
    let child = lab.spawn_speaker("child_speaker", &e, &args);
    let up = wait_until(Duration::from_secs(20), || {
        bird_route(&sock, pool()).is_some()
    });
    assert!(
        up.is_some(),
        "{}",
        birdc(&sock, &["show", "protocols", "all", "edge"])
    );
    signal(child, libc::SIGKILL);
    let killed = wait_until(Duration::from_secs(10), || {
        bird_route(&sock, pool()).is_none()
    })
    .expect("BIRD kept the route of a killed speaker");
    println!("BIRD withdrew a killed speaker's route after {killed:?}");
    // The kernel's FIN, not the hold timer.
    assert!(killed < Duration::from_secs(1), "{killed:?}");
    lab.kill(child);
}

#[test]
fn bird_ecmp_over_two_speakers() {
    if !ready(&[BIRD, BIRDC]) {
        return;
    }
    let mut lab = Lab::new("becmp");
    let r = lab.ns("r");
    let e1 = lab.ns("e1");
    let e2 = lab.ns("e2");
    let edge2 = Ipv4Addr::new(192, 0, 2, 18);
    lab.link(&r, "r0", "192.0.2.1/28", &e1, "e0", "192.0.2.2/28");
    lab.link(&r, "r1", "192.0.2.17/28", &e2, "e0", "192.0.2.18/28");
    // The configuration documented at the top of this file.
    let config = r#"
router id 192.0.2.1;
protocol device { scan time 1; }
protocol kernel {
    ipv4 { export all; };
    merge paths on;
}
template bgp edge {
    local as 65000;
    passive on;
    hold time 3;
    keepalive time 1;
    error wait time 1, 5;
    ipv4 { import all; export none; };
}
protocol bgp edge1 from edge { neighbor 192.0.2.2 as 65010; }
protocol bgp edge2 from edge { neighbor 192.0.2.18 as 65010; }
"#;
    let sock = start_bird(&mut lab, &r, config);
    let s1 = speaker(&e1, EDGE_AS, ROUTER_AS, EDGE, ROUTER, 3);
    let s2 = speaker(
        &e2,
        EDGE_AS,
        ROUTER_AS,
        edge2,
        Ipv4Addr::new(192, 0, 2, 17),
        3,
    );
    s1.set_announced(vec![pool()], EDGE, ExportAttrs::default());
    s2.set_announced(vec![pool()], edge2, ExportAttrs::default());

    let kernel_route = || output("ip", &["-n", &r, "route", "show", &pool().to_string()]);
    let both = wait_until(Duration::from_secs(20), || {
        let k = kernel_route();
        k.contains("nexthop via 192.0.2.2 ") && k.contains("nexthop via 192.0.2.18 ")
    });
    assert!(
        both.is_some(),
        "kernel: {}\nBIRD: {}\n{}",
        kernel_route(),
        birdc(&sock, &["show", "route", "all"]),
        birdc(&sock, &["show", "protocols"])
    );
    println!("ECMP route in BIRD's namespace:\n{}", kernel_route());

    // One edge leaves: the route keeps only the other next hop.
    s1.stop();
    let single = wait_until(Duration::from_secs(10), || {
        let k = kernel_route();
        k.contains("via 192.0.2.18") && !k.contains("192.0.2.2 ")
    });
    assert!(single.is_some(), "kernel: {}", kernel_route());
    drop(s2);
}
