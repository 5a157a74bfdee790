//! Runs the real aws CLI and boto3 (tests/clients/*.py, under pytest)
//! against a real `openvpc server`, restarted once in between so the
//! accounts and their keys are shown to persist.
//!
//! `scripts/test` creates the Python environment and sets `OPENVPC_PYTHON`;
//! without it the test skips, unless `OPENVPC_REQUIRE_TOOLS` is set.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `openvpc server` on a free port and reads the lines it prints.
fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openvpc"))
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
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

#[test]
fn aws_cli_and_boto3_against_the_server() {
    let Some(python) = std::env::var_os("OPENVPC_PYTHON") else {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "OPENVPC_PYTHON is not set: run scripts/test, which creates the Python environment"
        );
        eprintln!("skipping: OPENVPC_PYTHON is not set (scripts/test sets it)");
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary data directory");
    // First start creates the admin account; then a second account is added
    // with the server stopped, and the server restarted on the same store.
    drop(start(dir.path()));
    let status = Command::new(env!("CARGO_BIN_EXE_openvpc"))
        .args(["accounts", "create", "bob", "--data-dir"])
        .arg(dir.path())
        .status()
        .expect("running openvpc accounts create");
    assert!(status.success());
    let server = start(dir.path());
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&tests);
    for (k, v) in &server.env {
        cmd.env(k, v);
    }
    let status = cmd.status().expect("running pytest");
    assert!(status.success(), "the client tests failed (output above)");
}
