//! The conformance suite and the model property test, run against every
//! backend in this crate. Backend-specific tests (reopening, crashes) live in
//! the backend's own file.

use std::cell::Cell;

use proptest::prelude::*;

use super::conformance::{check_against_model, conformance};
use super::{Compare, MemoryStore, Op, RedbStore, Store, Txn};

/// Makes fresh redb stores, each in its own file of one temporary directory.
fn redb_maker(dir: &tempfile::TempDir) -> impl Fn() -> RedbStore + '_ {
    let made = Cell::new(0u32);
    move || {
        made.set(made.get() + 1);
        RedbStore::open(&dir.path().join(format!("{}.redb", made.get()))).unwrap()
    }
}

#[test]
fn memory_conformance() {
    conformance(MemoryStore::new);
}

#[test]
fn redb_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance(redb_maker(&dir));
}

#[test]
fn trait_objects_conform() {
    // `Store` is object-safe, and boxed or shared stores are stores too.
    conformance(|| -> Box<dyn Store> { Box::new(MemoryStore::new()) });
    conformance(|| std::sync::Arc::new(MemoryStore::new()));
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        20 => prop::sample::select(vec!["a", "b", "c", "d/1", "d/2", "d/3"])
            .prop_map(|k| k.as_bytes().to_vec()),
        1 => Just(Vec::new()),
    ]
}

fn txn() -> impl Strategy<Value = Txn> {
    let compare = prop_oneof![
        key().prop_map(Compare::Absent),
        key().prop_map(Compare::Exists),
        (key(), 0u64..12).prop_map(|(k, r)| Compare::ModRevision(k, r)),
    ];
    let op = prop_oneof![
        (key(), prop::collection::vec(any::<u8>(), 0..4)).prop_map(|(k, v)| Op::Put(k, v)),
        key().prop_map(Op::Delete),
    ];
    (
        prop::collection::vec(compare, 0..3),
        prop::collection::vec(op, 0..4),
    )
        .prop_map(|(compares, ops)| Txn { compares, ops })
}

proptest! {
    #[test]
    fn memory_matches_model(txns in prop::collection::vec(txn(), 1..30)) {
        check_against_model(&MemoryStore::new(), &txns);
    }
}

proptest! {
    // Every commit fsyncs: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn redb_matches_model(txns in prop::collection::vec(txn(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(&RedbStore::open(&dir.path().join("s.redb")).unwrap(), &txns);
    }
}
