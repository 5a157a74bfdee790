//! A broken instance is visible, as AWS shows it (issue 12): `openvpc up`
//! with a DHCP client that cannot run (the test's fault injection,
//! `OPENVPC_TEST_DHCP_CLIENT` pointing at a path that does not exist; a
//! real udhcpc cannot be made to fail on demand) launches an instance that
//! DescribeInstanceStatus shows `impaired` (reachability `failed`), whose
//! reason is in `up`'s log and is printed by `openvpc exec` first. The same
//! region started again with the real client gets the instance its address
//! and shows it `ok`.
//!
//! Needs root (namespaces, TAP devices), the host tools `up` checks for, and
//! the aws CLI from scripts/test's venv; without them the test says why and
//! skips (CI runs it as root).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const OPENVPC: &str = env!("CARGO_BIN_EXE_openvpc");

/// Why this test cannot run here, if it cannot.
fn cannot_run() -> Option<&'static str> {
    if let Some(why) = common::cannot_run_instances() {
        return Some(why);
    }
    if !openvpc_agent::tools::missing().is_empty() {
        return Some("the tools instances need are missing (scripts/test installs them)");
    }
    None
}

/// One `openvpc up`, stopped (SIGTERM) when dropped.
struct Up {
    child: Child,
    log: PathBuf,
}

impl Up {
    /// Starts `up` on `data` and `port`, logging to `log`, with `dhcp_client`
    /// injected if given; returns once it serves.
    fn start(data: &Path, port: u16, log: PathBuf, dhcp_client: Option<&str>) -> Up {
        let mut cmd = Command::new(OPENVPC);
        cmd.args([
            "up",
            "--no-install",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(data)
        .env_remove(openvpc_agent::DHCP_CLIENT_ENV)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        if let Some(client) = dhcp_client {
            cmd.env(openvpc_agent::DHCP_CLIENT_ENV, client);
        }
        let mut up = Up {
            child: cmd.spawn().unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !up.log_text().contains("serving zone") {
            if let Ok(Some(status)) = up.child.try_wait() {
                panic!("up exited ({status}): {}", up.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "up did not start: {}",
                up.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        up
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Removes the instance namespaces `up`'s agent made, whatever happens.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = openvpc_agent::remove_instances(&self.0.join("agent"));
    }
}

struct Aws {
    env: Vec<(String, String)>,
}

impl Aws {
    fn ec2(&self, args: &[&str]) -> Value {
        common::lab::ec2_with(&self.env, args)
            .unwrap_or_else(|e| panic!("aws ec2 {} failed: {e}", args.join(" ")))
    }

    fn status(&self, id: &str) -> Value {
        let v = self.ec2(&["describe-instance-status", "--instance-ids", id]);
        v["InstanceStatuses"][0].clone()
    }

    /// Polls DescribeInstanceStatus until the instance check is `want`.
    fn wait_instance_status(&self, id: &str, want: &str, up: &Up) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status(id);
            if s["InstanceStatus"]["Status"] == want {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never became {want}: last {s}; up's log: {}",
                up.log_text()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn exec_stderr(id: &str) -> String {
    let out = Command::new(OPENVPC)
        .args(["exec", id, "--", "true"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// Issue 12, deliverable 2: a failed DHCP setup is `impaired` with its
// reason in the log and before `exec`; the healthy instance is `ok`.
#[test]
fn failed_dhcp_is_impaired_and_a_healthy_instance_is_ok() {
    if let Some(why) = cannot_run() {
        eprintln!("skipping: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _cleanup = Cleanup(data.clone());
    let port = free_port();
    let up = Up::start(
        &data,
        port,
        dir.path().join("up-1.log"),
        Some("/nonexistent/udhcpc"),
    );
    let aws = Aws {
        env: vec![
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                data.join("credentials").display().to_string(),
            ),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ],
    };
    let vpc = aws.ec2(&["create-vpc", "--cidr-block", "10.0.0.0/16"])["Vpc"]["VpcId"]
        .as_str()
        .unwrap()
        .to_owned();
    let subnet = aws.ec2(&[
        "create-subnet",
        "--vpc-id",
        &vpc,
        "--cidr-block",
        "10.0.1.0/24",
        "--availability-zone",
        "us-east-1a",
    ])["Subnet"]["SubnetId"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = aws.ec2(&[
        "run-instances",
        "--image-id",
        "ami-12345678",
        "--subnet-id",
        &subnet,
    ])["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_owned();

    let s = aws.wait_instance_status(&id, "impaired", &up);
    assert_eq!(s["InstanceState"]["Name"], "running");
    assert_eq!(s["AvailabilityZone"], "us-east-1a");
    assert_eq!(s["InstanceStatus"]["Details"][0]["Name"], "reachability");
    assert_eq!(s["InstanceStatus"]["Details"][0]["Status"], "failed");
    assert!(s["InstanceStatus"]["Details"][0]["ImpairedSince"].is_string());
    // The host itself answers: only what was observed is reported.
    assert_eq!(s["SystemStatus"]["Status"], "ok");
    assert_eq!(s["SystemStatus"]["Details"][0]["Status"], "passed");

    // The reason reaches the operator: the `up` log names the instance and
    // the step, and `exec` says so before running the command.
    let log = up.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("instance impaired") && l.contains(&id))
        .unwrap_or_else(|| panic!("no impaired line for {id} in up's log:\n{log}"));
    assert!(
        line.contains("ERROR") && line.contains("DHCP failed"),
        "{line}"
    );
    let stderr = exec_stderr(&id);
    assert!(
        stderr.contains(&format!("instance {id} is impaired")) && stderr.contains("DHCP failed"),
        "{stderr}"
    );
    up.stop();

    // The same region with the real DHCP client: the re-attached instance
    // has no address, asks, gets one, and is shown ok.
    let up = Up::start(&data, port, dir.path().join("up-2.log"), None);
    let s = aws.wait_instance_status(&id, "ok", &up);
    assert_eq!(s["InstanceStatus"]["Details"][0]["Status"], "passed");
    assert_eq!(s["SystemStatus"]["Status"], "ok");
    assert!(
        s["InstanceStatus"]["Details"][0]
            .get("ImpairedSince")
            .is_none()
    );
    assert!(!exec_stderr(&id).contains("impaired"));
    let addr = Command::new(OPENVPC)
        .args([
            "exec", &id, "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains("10.0.1."),
        "eth0 has no address from 10.0.1.0/24"
    );
    aws.ec2(&["terminate-instances", "--instance-ids", &id]);
    up.stop();
}
