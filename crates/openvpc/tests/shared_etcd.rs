//! Two `openvpc server`s on one etcd (`--store etcd://...`) act as one
//! control plane: a VPC created through one is visible through the other,
//! and CreateSubnet calls racing through both never make a CIDR twice or
//! overlapping subnets, since every action commits with compare-and-swap on
//! the account's fence key (tests/shared_etcd/race.py does the client side).

mod common;

use std::path::Path;

use common::{python, start_with};
use openvpc_store::test_etcd::{self, TestEtcd};

#[test]
fn two_servers_share_one_etcd() {
    let Some(python) = python() else {
        return;
    };
    if !test_etcd::available() {
        return;
    }
    let etcd = TestEtcd::start();
    let dir = tempfile::tempdir().expect("a temporary data directory");
    // Started one after the other: the first creates the admin account and
    // writes its keys; the second finds the account in etcd.
    let a = start_with(&dir.path().join("a"), &["--store", &etcd.url]);
    let b = start_with(&dir.path().join("b"), &["--store", &etcd.url]);
    let endpoint = |s: &common::Server| {
        s.env
            .iter()
            .find(|(k, _)| k == "AWS_ENDPOINT_URL")
            .map(|(_, v)| v.clone())
            .expect("the server prints its endpoint")
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shared_etcd/race.py");
    let status = a
        .client(&python)
        .arg(&script)
        .arg(endpoint(&a))
        .arg(endpoint(&b))
        .status()
        .expect("running race.py");
    assert!(status.success(), "the two servers disagreed (above)");
}
