//! Runs moto's published VPC tests against this build's `openvpc server
//! --moto-compat` through `scripts/moto-suite`, which fails if any test listed
//! in `tests/moto-passing.txt` (the ratchet) no longer passes, if a failing
//! test has no line in `tests/moto-divergences.md` saying why, or if one moto
//! marks `aws_verified` neither passes nor is listed there. The script owns
//! the details (fetching moto's tests, the server, pytest, the comparison);
//! this test only hands it the binary, so the suite runs under nextest with
//! the other client tests.
//!
//! `scripts/test` creates the Python environment and sets `OPENVPC_PYTHON`;
//! without it the test skips, unless `OPENVPC_REQUIRE_TOOLS` is set.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn moto_vpc_tests_in_the_ratchet_still_pass() {
    let Some(python) = common::python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/moto-suite");
    let status = Command::new(python)
        .arg(&script)
        .args(["--openvpc", env!("CARGO_BIN_EXE_openvpc")])
        .status()
        .expect("running scripts/moto-suite");
    assert!(
        status.success(),
        "moto tests in crates/openvpc/tests/moto-passing.txt no longer pass, or failing ones \
         are not explained in moto-divergences.md (listed above)"
    );
}
