//! `openvpc bench lab` end to end (issue 7): a two-host lab, real iperf3
//! and sockperf between two instances, all seven figures in the JSON. A
//! smoke test with 1-second runs: benchmarks are not timed tests, so no
//! figure is checked against a goal.
//!
//! Needs root, iperf3 and sockperf; without them the test says why and skips
//! (under scripts/test, which installs both, a missing tool fails it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const OPENVPC: &str = env!("CARGO_BIN_EXE_openvpc");

fn cannot_run() -> Option<String> {
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        return Some("not root: labs need network namespaces and TAP devices".into());
    }
    for tool in ["iperf3", "sockperf"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            // scripts/test installs them: there, a missing tool is a failure.
            assert!(
                std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
                "{tool} is not installed: scripts/test installs it"
            );
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

#[test]
fn bench_lab_runs_end_to_end_and_reports_every_figure() {
    if let Some(why) = cannot_run() {
        eprintln!("skipped: {why}");
        return;
    }
    let out = Command::new(OPENVPC)
        .args(["bench", "lab", "--secs", "1", "--pings", "100", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench lab failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "tcp_gbps",
        "tcp_retransmits",
        "udp64_rx_pps",
        "udp64_loss_pct",
        "rr_p50_us",
        "rr_p99_us",
        "rr_tps",
    ] {
        assert!(v[key].is_number(), "{key} missing in {v:#}");
    }
    assert!(v["tcp_gbps"].as_f64().unwrap() > 0.0, "{v:#}");
    assert_eq!(v["sg_drops_tcp5202"], true, "{v:#}");
}
