//! An acknowledged write survives `kill -9` of the server, and a
//! multi-object action is all or nothing (issue 4, store): boto3 streams
//! creates and deletes of VPCs (each with its default security group) and
//! groups, the server is SIGKILLed mid-stream — twice — and after each
//! restart every acknowledged write is there and nothing is half-made
//! (tests/durability/stream.py does the client side).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{python, start};

/// Waits until the stream has acknowledged `n` writes beyond `from`.
fn wait_for_acks(acks: &Path, from: usize, n: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = std::fs::read_to_string(acks)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if count >= from + n {
            return count;
        }
        assert!(
            Instant::now() < deadline,
            "the stream acknowledged only {count} writes in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let Some(python) = python() else {
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/durability/stream.py");
    let dir = tempfile::tempdir().expect("a temporary data directory");
    let acks = dir.path().join("acks");
    let mut seen = 0;
    for round in 0..2 {
        let server = start(&dir.path().join("data"));
        let mut writer = server
            .client(&python)
            .arg(&script)
            .arg("write")
            .arg(&acks)
            .spawn()
            .expect("starting the writer");
        // Kill at a point that differs between rounds, mid-stream.
        seen = wait_for_acks(&acks, seen, 25 + round * 13);
        server.kill();
        let status = writer.wait().expect("waiting for the writer");
        assert!(status.success(), "the writer should stop cleanly");
        let server = start(&dir.path().join("data"));
        let status = server
            .client(&python)
            .arg(&script)
            .arg("check")
            .arg(&acks)
            .status()
            .expect("running the check");
        assert!(
            status.success(),
            "round {round}: acknowledged writes were lost or half-made (above)"
        );
    }
}
