//! The etcd backend against a real etcd: the store conformance suite (each
//! check on a fresh etcd, since revisions are etcd's own), and use from
//! inside another tokio runtime, as the API server does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::sync::Arc;

use openvpc_store::conformance::conformance;
use openvpc_store::test_etcd::{self, TestEtcd};
use openvpc_store::{EtcdStore, Store};

#[test]
fn etcd_conformance() {
    if !test_etcd::available() {
        return;
    }
    // The etcd of the check running now; replacing it kills the last one,
    // whose store the suite has dropped by then.
    let current: RefCell<Option<TestEtcd>> = RefCell::new(None);
    conformance(|| {
        let etcd = TestEtcd::start();
        let store = etcd.store();
        *current.borrow_mut() = Some(etcd);
        store
    });
}

#[test]
fn usable_from_inside_a_runtime() {
    if !test_etcd::available() {
        return;
    }
    let etcd = TestEtcd::start();
    let store: Arc<dyn Store> = Arc::new(etcd.store());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // As the API calls it: on the blocking pool.
        let s = store.clone();
        let revision = tokio::task::spawn_blocking(move || s.put(b"k", b"v"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revision, 1);
        // Even straight from async code it answers (blocking that worker).
        assert_eq!(store.get(b"k").unwrap().unwrap().value, b"v");
        // And dropping the last handle there does not panic.
        drop(store);
    });
}

#[test]
fn unreachable_etcd_is_an_error() {
    let err = EtcdStore::open_url("etcd://127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("etcd"), "{err}");
}
