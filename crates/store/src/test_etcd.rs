//! A throwaway etcd server for tests (public with the `conformance` feature):
//! a real `etcd` on free loopback ports in its own temporary directory,
//! killed by PID and removed when dropped.
//!
//! Tests that need it skip when `etcd` is not installed, unless
//! `OPENVPC_REQUIRE_TOOLS` is set (scripts/test sets it and installs etcd).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::EtcdStore;

/// A running etcd; killed and its directory removed when dropped.
#[derive(Debug)]
pub struct TestEtcd {
    child: Child,
    dir: PathBuf,
    /// `etcd://127.0.0.1:PORT`, as `openvpc server --store` takes it.
    pub url: String,
}

/// The etcd binary: `$OPENVPC_ETCD`, else `etcd` on the PATH.
fn binary() -> std::ffi::OsString {
    std::env::var_os("OPENVPC_ETCD").unwrap_or_else(|| "etcd".into())
}

/// Whether etcd can run here. Panics when it cannot but tools are required;
/// otherwise says the test skips.
pub fn available() -> bool {
    let found = Command::new(binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "etcd is not installed: run scripts/test, which installs etcd-server"
        );
        eprintln!("skipping: etcd is not installed (scripts/test installs etcd-server)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free loopback port")
}

impl TestEtcd {
    /// Starts etcd and waits until it answers. Call [`available`] first.
    pub fn start() -> Self {
        // Another process may take a free port before etcd does: retry.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start() {
                Ok(etcd) => return etcd,
                Err(why) => last = why,
            }
        }
        panic!("etcd did not start: {last}");
    }

    fn try_start() -> Result<Self, String> {
        static STARTED: AtomicU32 = AtomicU32::new(0);
        // RAM-backed when possible: etcd fsyncs every commit.
        let base = ["/dev/shm"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let dir = base.join(format!(
            "openvpc-etcd-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?;
        let child = Command::new(binary())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args(["--name", "default"])
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("default={peer_url}")])
            .args(["--max-txn-ops", "1024"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("running etcd: {e}"))?;
        let mut etcd = Self {
            child,
            dir,
            url: format!("etcd://127.0.0.1:{client}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                let log = std::fs::read_to_string(etcd.dir.join("etcd.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join("\n");
                return Err(format!("etcd exited ({status}):\n{tail}"));
            }
            if EtcdStore::open_url(&etcd.url).is_ok() {
                return Ok(etcd);
            }
            if Instant::now() > deadline {
                return Err("etcd did not answer within 30s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A new client store on this etcd.
    pub fn store(&self) -> EtcdStore {
        EtcdStore::open_url(&self.url).unwrap()
    }
}

impl Drop for TestEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
