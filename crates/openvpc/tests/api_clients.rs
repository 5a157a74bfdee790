//! Runs the real aws CLI and boto3 (tests/clients/*.py, under pytest)
//! against a real `openvpc server`, restarted once in between so the
//! accounts and their keys are shown to persist.
//!
//! `scripts/test` creates the Python environment and sets `OPENVPC_PYTHON`;
//! without it the test skips, unless `OPENVPC_REQUIRE_TOOLS` is set.

mod common;

use std::path::Path;
use std::process::Command;

use common::{python, start};

#[test]
fn aws_cli_and_boto3_against_the_server() {
    let Some(python) = python() else {
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
    let status = server
        .client(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&tests)
        .status()
        .expect("running pytest");
    assert!(status.success(), "the client tests failed (output above)");
}
