//! What the binary's integration tests share: a real `openvpc server` on a
//! free port, and the Python environment of the real clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod lab;
pub mod vpn;

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server; killed when dropped.
pub struct Server {
    pub child: Child,
    /// `AWS_ENDPOINT_URL`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_DEFAULT_REGION`.
    pub env: Vec<(String, String)>,
}

impl Server {
    /// A command with the server's environment, as a client needs it.
    pub fn client(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Kills the server with SIGKILL: no shutdown code runs.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openvpc server` on a free port and reads the lines it prints.
pub fn start(data_dir: &Path) -> Server {
    start_with(data_dir, &[])
}

/// [`start`] with more arguments (`--store etcd://...`).
pub fn start_with(data_dir: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openvpc"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting openvpc server");
    let stdout = child.stdout.take().expect("server stdout");
    let mut env = Vec::new();
    for line in BufReader::new(stdout).lines().take(3) {
        let line = line.expect("reading the server's output");
        let (k, v) = line.split_once('=').expect("KEY=value lines");
        env.push((k.to_owned(), v.to_owned()));
    }
    assert_eq!(
        env.len(),
        3,
        "the server prints endpoint, credentials and region"
    );
    Server { child, env }
}

/// Why a test that starts real instances cannot run here, if it cannot:
/// instances need root (network namespaces, TAP devices), and the test
/// drives them with the aws CLI of scripts/test's venv.
pub fn cannot_run_instances() -> Option<&'static str> {
    // /proc/self belongs to the effective user.
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if euid.ok() != Some(0) {
        return Some("not root: instances need network namespaces and TAP devices");
    }
    if std::env::var_os("OPENVPC_AWS_CLI").is_none() {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "OPENVPC_AWS_CLI is not set: run scripts/test"
        );
        return Some("OPENVPC_AWS_CLI is not set (scripts/test sets it)");
    }
    None
}

/// The venv's Python that scripts/test made, or `None` (the caller skips)
/// when it is absent outside scripts/test.
pub fn python() -> Option<OsString> {
    let python = std::env::var_os("OPENVPC_PYTHON");
    if python.is_none() {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "OPENVPC_PYTHON is not set: run scripts/test, which creates the Python environment"
        );
        eprintln!("skipping: OPENVPC_PYTHON is not set (scripts/test sets it)");
    }
    python
}
