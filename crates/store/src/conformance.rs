//! The behaviour every [`Store`] backend must show, as one suite: run
//! [`conformance`] with a function that makes a fresh, empty store. Each check
//! is also public, so a failing one can be run alone. Checks panic on failure.
//!
//! [`check_against_model`] replays any sequence of txns against a plain
//! `BTreeMap` model; property tests feed it random sequences.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Compare, Event, EventKind, KeyValue, Op, Revision, Store, StoreError, Txn, TxnResult};

/// Runs every check, each on a fresh store from `make`.
pub fn conformance<S: Store>(make: impl Fn() -> S) {
    type Check<S> = (&'static str, fn(&S));
    let checks: [Check<S>; 11] = [
        ("get_put_delete", get_put_delete),
        ("invalid_txns", invalid_txns),
        ("range", range),
        ("txn_all_or_nothing", txn_all_or_nothing),
        ("revisions", revisions),
        ("cas_race", cas_race),
        ("changes", changes),
        (
            "changes_limit_keeps_revisions_whole",
            changes_limit_keeps_revisions_whole,
        ),
        ("wait_for", wait_for),
        ("compaction", compaction),
        ("model_sequence", model_sequence),
    ];
    for (name, check) in checks {
        eprintln!("store conformance: {name}");
        check(&make());
    }
}

fn put(key: &[u8], value: &[u8]) -> Op {
    Op::Put(key.to_vec(), value.to_vec())
}

fn commit<S: Store>(store: &S, txn: Txn) -> Revision {
    match store.txn(txn.clone()) {
        Ok(TxnResult::Committed(revision)) => revision,
        other => panic!("{txn:?} should commit, got {other:?}"),
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<Vec<u8>> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

/// Single-key puts and deletes, and the revisions they leave on the key.
pub fn get_put_delete<S: Store>(store: &S) {
    assert_eq!(store.revision().unwrap(), 0, "a new store is at revision 0");
    assert_eq!(store.get(b"a").unwrap(), None);

    assert_eq!(store.put(b"a", b"1").unwrap(), 1);
    let kv = store.get(b"a").unwrap().unwrap();
    assert_eq!(
        kv,
        KeyValue {
            key: b"a".to_vec(),
            value: b"1".to_vec(),
            create_revision: 1,
            mod_revision: 1
        }
    );

    assert_eq!(store.put(b"a", b"2").unwrap(), 2);
    let kv = store.get(b"a").unwrap().unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
        (&b"2"[..], 1, 2)
    );

    // The same value again is still a change.
    assert_eq!(store.put(b"a", b"2").unwrap(), 3);
    assert_eq!(store.get(b"a").unwrap().unwrap().mod_revision, 3);

    assert_eq!(store.delete(b"a").unwrap(), 4);
    assert_eq!(store.get(b"a").unwrap(), None);

    // Recreated: a new create revision.
    assert_eq!(store.put(b"a", b"3").unwrap(), 5);
    let kv = store.get(b"a").unwrap().unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (5, 5));

    // Changing nothing commits without advancing the revision (as etcd does).
    assert_eq!(store.delete(b"absent").unwrap(), 5);
    assert_eq!(store.txn(Txn::new()).unwrap(), TxnResult::Committed(5));
    assert_eq!(store.revision().unwrap(), 5);
    assert!(store.changes(b"", 5, 10).unwrap().is_empty());

    // Empty values and arbitrary bytes are fine.
    assert_eq!(store.put(b"empty", b"").unwrap(), 6);
    assert_eq!(store.get(b"empty").unwrap().unwrap().value, b"");
    let binary = [0u8, 0xff, 0x80, 0];
    store.put(&binary, &binary).unwrap();
    assert_eq!(store.get(&binary).unwrap().unwrap().value, binary);
    assert_eq!(
        store.get(&binary[..3]).unwrap(),
        None,
        "no prefix matching in get"
    );
    let big = vec![7u8; 1 << 20];
    store.put(b"big", &big).unwrap();
    assert_eq!(store.get(b"big").unwrap().unwrap().value, big);
}

/// Empty keys and keys changed twice in one txn are refused, applying nothing.
pub fn invalid_txns<S: Store>(store: &S) {
    assert_eq!(store.put(b"", b"x"), Err(StoreError::EmptyKey));
    assert_eq!(
        store.txn(Txn::new().when(Compare::Exists(Vec::new()))),
        Err(StoreError::EmptyKey)
    );
    let twice = Txn::new()
        .then(put(b"k", b"1"))
        .then(put(b"other", b"2"))
        .then(Op::Delete(b"k".to_vec()));
    assert!(matches!(
        store.txn(twice),
        Err(StoreError::DuplicateKey { .. })
    ));
    assert_eq!(store.revision().unwrap(), 0);
    assert_eq!(store.get(b"other").unwrap(), None);
}

/// Prefix ranges: sorted bytewise, strictly after `after`, at most `limit`,
/// and paging with the last key returned visits every key once.
pub fn range<S: Store>(store: &S) {
    let mut all: Vec<Vec<u8>> = Vec::new();
    for i in 0..37u32 {
        all.push(format!("vpc/{i}").into_bytes()); // "vpc/10" sorts before "vpc/2"
    }
    all.extend([
        b"vpc".to_vec(),
        b"vpc/".to_vec(),
        b"vpc0".to_vec(),
        b"vpa/x".to_vec(),
        b"subnet/1".to_vec(),
        vec![0xff, 0xff],
        vec![0xff, 0xff, 0],
        vec![0xff, 0xff, 0xff, 1],
        vec![0xff],
        vec![0],
    ]);
    // Written in chunks, in an order unrelated to the sort order.
    for chunk in all.chunks(5).rev() {
        let mut txn = Txn::new();
        for key in chunk {
            txn = txn.then(Op::Put(key.clone(), key.repeat(2)));
        }
        commit(store, txn);
    }
    all.sort();

    let expect = |prefix: &[u8], after: Option<&[u8]>, limit: usize| -> Vec<Vec<u8>> {
        all.iter()
            .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a))
            .take(limit)
            .cloned()
            .collect()
    };
    type Case<'a> = (&'a [u8], Option<&'a [u8]>, usize);
    let cases: &[Case] = &[
        (b"", None, 1000),
        (b"", None, 3),
        (b"vpc/", None, 1000),
        (b"vpc/", None, 5),
        (b"vpc/", Some(b"vpc/2"), 4),
        (b"vpc/", Some(b"vpc/25"), 1000),
        (b"vpc/", Some(b"a"), 2),      // after sorts before the prefix
        (b"vpc/", Some(b"vpc/9"), 10), // after the last key
        (b"vpc/", Some(b"zzz"), 10),   // past the prefix altogether
        (b"vpc", None, 1000),
        (b"vpc/3", None, 1000),
        (&[0xff, 0xff], None, 1000),
        (&[0xff], Some(&[0xff, 0xff]), 1000),
        (b"nothing", None, 1000),
        (b"vpc/", None, 0),
    ];
    for &(prefix, after, limit) in cases {
        let got = store.range(prefix, after, limit).unwrap();
        assert_eq!(
            keys(&got),
            expect(prefix, after, limit),
            "range({prefix:?}, {after:?}, {limit})"
        );
        for kv in &got {
            assert_eq!(kv.value, kv.key.repeat(2));
        }
    }

    // Pagination visits every key under the prefix once, in order.
    for page in [1, 2, 7, 37, 100] {
        let mut seen = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let got = store.range(b"vpc/", after.as_deref(), page).unwrap();
            assert!(got.len() <= page);
            let Some(last) = got.last() else { break };
            after = Some(last.key.clone());
            seen.extend(keys(&got));
        }
        assert_eq!(seen, expect(b"vpc/", None, usize::MAX), "pages of {page}");
    }
}

/// A failing compare applies nothing and names the first compare that failed;
/// passing compares apply every op at one revision.
pub fn txn_all_or_nothing<S: Store>(store: &S) {
    let r1 = store.put(b"x", b"1").unwrap();
    store.put(b"y", b"1").unwrap();
    let before = store.revision().unwrap();

    let failing = Txn::new()
        .when(Compare::Exists(b"x".to_vec()))
        .when(Compare::Absent(b"x".to_vec()))
        .when(Compare::Absent(b"y".to_vec()))
        .then(put(b"x", b"2"))
        .then(put(b"new", b"2"))
        .then(Op::Delete(b"y".to_vec()));
    assert_eq!(
        store.txn(failing).unwrap(),
        TxnResult::Failed { failed_compare: 1 }
    );
    assert_eq!(
        store.revision().unwrap(),
        before,
        "a failed txn does not advance the revision"
    );
    assert_eq!(store.get(b"x").unwrap().unwrap().value, b"1");
    assert_eq!(store.get(b"new").unwrap(), None);
    assert!(store.get(b"y").unwrap().is_some());
    assert!(store.changes(b"", before, 10).unwrap().is_empty());

    // Each kind of compare, holding and failing.
    let cases = [
        (Compare::Absent(b"x".to_vec()), false),
        (Compare::Absent(b"nope".to_vec()), true),
        (Compare::Exists(b"x".to_vec()), true),
        (Compare::Exists(b"nope".to_vec()), false),
        (Compare::ModRevision(b"x".to_vec(), r1), true),
        (Compare::ModRevision(b"x".to_vec(), r1 + 1), false),
        (Compare::ModRevision(b"x".to_vec(), 0), false),
        (Compare::ModRevision(b"nope".to_vec(), 0), false),
        (Compare::ModRevision(b"nope".to_vec(), r1), false),
    ];
    for (compare, holds) in cases {
        let txn = Txn::new()
            .when(Compare::Exists(b"y".to_vec()))
            .when(compare.clone());
        let want = if holds {
            TxnResult::Committed(before)
        } else {
            TxnResult::Failed { failed_compare: 1 }
        };
        assert_eq!(store.txn(txn).unwrap(), want, "{compare:?}");
    }

    // All ops of a txn share its revision.
    let txn = Txn::new()
        .when(Compare::ModRevision(b"x".to_vec(), r1))
        .then(put(b"x", b"3"))
        .then(put(b"z", b"3"))
        .then(Op::Delete(b"y".to_vec()))
        .then(Op::Delete(b"never".to_vec()));
    let rev = commit(store, txn);
    assert_eq!(rev, before + 1);
    let x = store.get(b"x").unwrap().unwrap();
    let z = store.get(b"z").unwrap().unwrap();
    assert_eq!(
        (x.value.as_slice(), x.create_revision, x.mod_revision),
        (&b"3"[..], r1, rev)
    );
    assert_eq!((z.create_revision, z.mod_revision), (rev, rev));
    assert_eq!(store.get(b"y").unwrap(), None);
    let events = store.changes(b"", before, 100).unwrap();
    assert_eq!(
        events,
        vec![
            Event {
                revision: rev,
                kind: EventKind::Put,
                key: b"x".to_vec(),
                value: Some(b"3".to_vec())
            },
            Event {
                revision: rev,
                kind: EventKind::Put,
                key: b"z".to_vec(),
                value: Some(b"3".to_vec())
            },
            Event {
                revision: rev,
                kind: EventKind::Delete,
                key: b"y".to_vec(),
                value: None
            },
        ],
        "one event per change, in op order; none for deleting an absent key"
    );
}

/// Each committed txn that changes something advances the revision by one.
pub fn revisions<S: Store>(store: &S) {
    for i in 1..=25u64 {
        let txn = Txn::new()
            .then(Op::Put(
                format!("k{}", i % 4).into_bytes(),
                i.to_string().into_bytes(),
            ))
            .then(Op::Put(format!("j{i}").into_bytes(), Vec::new()));
        assert_eq!(store.txn(txn).unwrap(), TxnResult::Committed(i));
        assert_eq!(store.revision().unwrap(), i);
        // A failed txn in between changes nothing.
        let fail = Txn::new()
            .when(Compare::Absent(b"j1".to_vec()))
            .then(put(b"j1", b"x"));
        assert_eq!(
            store.txn(fail).unwrap(),
            TxnResult::Failed { failed_compare: 0 }
        );
        assert_eq!(store.revision().unwrap(), i);
    }
}

/// 4 threads each do 200 read-modify-write increments of one counter with
/// `ModRevision` compares and retries: none is lost.
pub fn cas_race<S: Store>(store: &S) {
    const THREADS: usize = 4;
    const INCREMENTS: usize = 200;
    let key = b"counter".to_vec();
    let commits: Vec<Vec<(Revision, u64)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let key = key.clone();
                scope.spawn(move || {
                    let mut mine = Vec::with_capacity(INCREMENTS);
                    for _ in 0..INCREMENTS {
                        loop {
                            let current = store.get(&key).unwrap();
                            let (compare, value) = match &current {
                                None => (Compare::Absent(key.clone()), 0u64),
                                Some(kv) => (
                                    Compare::ModRevision(key.clone(), kv.mod_revision),
                                    String::from_utf8(kv.value.clone())
                                        .unwrap()
                                        .parse()
                                        .unwrap(),
                                ),
                            };
                            let next = value + 1;
                            let txn = Txn::new()
                                .when(compare)
                                .then(Op::Put(key.clone(), next.to_string().into_bytes()));
                            match store.txn(txn).unwrap() {
                                TxnResult::Committed(revision) => {
                                    mine.push((revision, next));
                                    break;
                                }
                                TxnResult::Failed { failed_compare: 0 } => {}
                                other => panic!("unexpected {other:?}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let total = (THREADS * INCREMENTS) as u64;
    let kv = store.get(&key).unwrap().unwrap();
    assert_eq!(kv.value, total.to_string().into_bytes());
    assert_eq!(store.revision().unwrap(), total);

    // Every increment committed once, at its own revision, in order.
    let mut all: Vec<(Revision, u64)> = commits.into_iter().flatten().collect();
    all.sort();
    let want: Vec<(Revision, u64)> = (1..=total).map(|i| (i, i)).collect();
    assert_eq!(all, want);
    let events = store.changes(&key, 0, usize::MAX).unwrap();
    let values: Vec<Vec<u8>> = events.into_iter().filter_map(|e| e.value).collect();
    let want: Vec<Vec<u8>> = (1..=total).map(|i| i.to_string().into_bytes()).collect();
    assert_eq!(values, want);
}

/// Builds a history of puts and deletes under two prefixes; returns every
/// event in order.
fn history<S: Store>(store: &S) -> Vec<Event> {
    let mut events = Vec::new();
    let mut live_b = std::collections::VecDeque::new();
    for i in 0..30u32 {
        let revision = Revision::from(i) + 1;
        let mut txn = Txn::new();
        let mut add = |op: Op| {
            let (kind, value) = match &op {
                Op::Put(_, v) => (EventKind::Put, Some(v.clone())),
                Op::Delete(_) => (EventKind::Delete, None),
            };
            events.push(Event {
                revision,
                kind,
                key: op.key().to_vec(),
                value,
            });
            txn.ops.push(op);
        };
        add(Op::Put(
            format!("a/{}", i % 5).into_bytes(),
            i.to_string().into_bytes(),
        ));
        if i % 3 == 0 {
            add(Op::Put(format!("b/{i}").into_bytes(), b"b".to_vec()));
        }
        if i % 4 == 3 {
            // The oldest b/ key still there.
            add(Op::Delete(live_b.pop_front().unwrap()));
        }
        if i % 3 == 0 {
            live_b.push_back(format!("b/{i}").into_bytes());
        }
        assert_eq!(commit(store, txn), revision);
    }
    events
}

/// `changes` returns every event in order, filtered by prefix, and resumes
/// from any revision.
pub fn changes<S: Store>(store: &S) {
    assert!(
        store.changes(b"", 0, 10).unwrap().is_empty(),
        "a new store has no history"
    );
    let all = history(store);
    let head = store.revision().unwrap();
    assert_eq!(store.changes(b"", 0, usize::MAX).unwrap(), all);
    for prefix in [&b""[..], b"a/", b"b/", b"b/1", b"c/"] {
        for from in 0..=head + 2 {
            let want: Vec<Event> = all
                .iter()
                .filter(|e| e.revision > from && e.key.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(
                store.changes(prefix, from, usize::MAX).unwrap(),
                want,
                "changes({prefix:?}, {from})"
            );
        }
    }
    // A watcher that resumes from the last revision it saw misses nothing.
    for limit in 1..=4 {
        let mut seen = Vec::new();
        let mut from = 0;
        loop {
            let got = store.changes(b"", from, limit).unwrap();
            let Some(last) = got.last() else { break };
            from = last.revision;
            seen.extend(got);
        }
        assert_eq!(seen, all, "resumed with limit {limit}");
    }
    assert!(store.changes(b"", u64::MAX, 10).unwrap().is_empty());
}

/// A limit never splits one revision's events, and `limit` caps the count
/// whenever whole revisions allow.
pub fn changes_limit_keeps_revisions_whole<S: Store>(store: &S) {
    let mut big = Txn::new();
    for i in 0..5 {
        big.ops
            .push(Op::Put(format!("k/{i}").into_bytes(), Vec::new()));
    }
    commit(store, big); // revision 1: five events
    store.put(b"k/single", b"").unwrap(); // revision 2: one
    store.put(b"k/single", b"").unwrap(); // revision 3: one

    let got = store.changes(b"k/", 0, 2).unwrap();
    assert_eq!(
        got.len(),
        5,
        "the first revision comes whole even past the limit"
    );
    assert!(got.iter().all(|e| e.revision == 1));
    let got = store.changes(b"k/", 1, 2).unwrap();
    assert_eq!(
        got.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert_eq!(store.changes(b"k/", 0, 0).unwrap(), Vec::new());
    // Filtered to one key of the big revision, the limit applies as usual.
    assert_eq!(store.changes(b"k/3", 0, 1).unwrap().len(), 1);
}

/// `wait_for` returns at once when already past, wakes on a commit from
/// another thread, and times out otherwise.
pub fn wait_for<S: Store>(store: &S) {
    store.put(b"w", b"1").unwrap();
    let start = Instant::now();
    assert_eq!(store.wait_for(0, Duration::from_secs(30)).unwrap(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "already past: no wait"
    );

    let start = Instant::now();
    assert_eq!(store.wait_for(1, Duration::from_millis(80)).unwrap(), 1);
    assert!(
        start.elapsed() >= Duration::from_millis(80),
        "times out after the timeout"
    );

    std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let start = Instant::now();
            let revision = store.wait_for(1, Duration::from_secs(60)).unwrap();
            (revision, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        store.put(b"w", b"2").unwrap();
        let (revision, waited) = waiter.join().unwrap();
        assert_eq!(revision, 2);
        assert!(
            waited < Duration::from_secs(30),
            "woken by the commit, not the timeout"
        );
    });

    // Failed and no-op txns do not wake a waiter.
    let start = Instant::now();
    store.delete(b"absent").unwrap();
    assert_eq!(store.wait_for(2, Duration::from_millis(30)).unwrap(), 2);
    assert!(start.elapsed() >= Duration::from_millis(30));
}

/// Compaction discards old history only: `changes` from before it fail with
/// `Compacted`, later ones and all data are untouched.
pub fn compaction<S: Store>(store: &S) {
    let all = history(store);
    let head = store.revision().unwrap();
    let data = store.range(b"", None, usize::MAX).unwrap();

    store.compact(10).unwrap();
    for from in 0..10 {
        assert_eq!(
            store.changes(b"a/", from, 10),
            Err(StoreError::Compacted {
                requested: from,
                oldest: 10
            })
        );
    }
    let after: Vec<Event> = all.iter().filter(|e| e.revision > 10).cloned().collect();
    assert_eq!(store.changes(b"", 10, usize::MAX).unwrap(), after);
    assert_eq!(
        store.range(b"", None, usize::MAX).unwrap(),
        data,
        "data survives compaction"
    );
    assert_eq!(store.revision().unwrap(), head);

    store.compact(4).unwrap(); // older than before: no-op
    assert_eq!(store.changes(b"", 10, usize::MAX).unwrap(), after);
    assert!(matches!(
        store.changes(b"", 9, 1),
        Err(StoreError::Compacted { oldest: 10, .. })
    ));

    store.compact(u64::MAX).unwrap(); // clamped to the current revision
    assert!(store.changes(b"", head, 10).unwrap().is_empty());
    assert_eq!(
        store.changes(b"", head - 1, 10),
        Err(StoreError::Compacted {
            requested: head - 1,
            oldest: head
        })
    );
    // History goes on after a full compaction.
    let revision = store.put(b"a/new", b"").unwrap();
    assert_eq!(revision, head + 1);
    let got = store.changes(b"", head, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].revision, revision);
}

/// A fixed mixed sequence through [`check_against_model`].
pub fn model_sequence<S: Store>(store: &S) {
    let k = |s: &str| s.as_bytes().to_vec();
    let txns = vec![
        Txn::new()
            .then(Op::Put(k("a"), k("1")))
            .then(Op::Put(k("b"), k("1"))),
        Txn::new()
            .when(Compare::ModRevision(k("a"), 1))
            .then(Op::Delete(k("a"))),
        Txn::new()
            .when(Compare::ModRevision(k("b"), 2))
            .then(Op::Delete(k("b"))),
        Txn::new()
            .when(Compare::Absent(k("a")))
            .then(Op::Put(k("a"), k("2"))),
        Txn::new().then(Op::Delete(k("zz"))),
        Txn::new()
            .then(Op::Put(k("c"), k("3")))
            .then(Op::Put(k("c"), k("4"))),
        Txn::new().then(Op::Put(Vec::new(), k("4"))),
        Txn::new()
            .when(Compare::Exists(k("b")))
            .when(Compare::Exists(k("zz"))),
    ];
    check_against_model(store, &txns);
}

/// The simplest possible store: what every backend must agree with.
#[derive(Debug, Default)]
struct Model {
    kv: BTreeMap<Vec<u8>, KeyValue>,
    log: Vec<Event>,
    revision: Revision,
}

impl Model {
    fn txn(&mut self, txn: &Txn) -> Result<TxnResult, StoreError> {
        let mut seen = std::collections::BTreeSet::new();
        if txn.compares.iter().any(|c| c.key().is_empty()) {
            return Err(StoreError::EmptyKey);
        }
        for op in &txn.ops {
            if op.key().is_empty() {
                return Err(StoreError::EmptyKey);
            }
            if !seen.insert(op.key().to_vec()) {
                let key = String::from_utf8_lossy(op.key()).into_owned();
                return Err(StoreError::DuplicateKey { key });
            }
        }
        for (i, compare) in txn.compares.iter().enumerate() {
            let current = self.kv.get(compare.key()).map(|kv| kv.mod_revision);
            let holds = match compare {
                Compare::Absent(_) => current.is_none(),
                Compare::Exists(_) => current.is_some(),
                Compare::ModRevision(_, r) => current == Some(*r),
            };
            if !holds {
                return Ok(TxnResult::Failed { failed_compare: i });
            }
        }
        let revision = self.revision + 1;
        let logged = self.log.len();
        for op in &txn.ops {
            match op {
                Op::Put(key, value) => {
                    let create_revision =
                        self.kv.get(key).map_or(revision, |kv| kv.create_revision);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision,
                        mod_revision: revision,
                    };
                    self.kv.insert(key.clone(), kv);
                    let value = Some(value.clone());
                    self.log.push(Event {
                        revision,
                        kind: EventKind::Put,
                        key: key.clone(),
                        value,
                    });
                }
                Op::Delete(key) => {
                    if self.kv.remove(key).is_some() {
                        let (kind, value) = (EventKind::Delete, None);
                        self.log.push(Event {
                            revision,
                            kind,
                            key: key.clone(),
                            value,
                        });
                    }
                }
            }
        }
        if self.log.len() > logged {
            self.revision = revision;
        }
        Ok(TxnResult::Committed(self.revision))
    }
}

/// Applies `txns` to `store` (fresh and empty) and to a model, checking that
/// each result, and afterwards all data, revisions and history, agree.
pub fn check_against_model<S: Store>(store: &S, txns: &[Txn]) {
    let mut model = Model::default();
    for (i, txn) in txns.iter().enumerate() {
        let want = model.txn(txn);
        let got = store.txn(txn.clone());
        match (&want, &got) {
            (Err(StoreError::DuplicateKey { .. }), Err(StoreError::DuplicateKey { .. })) => {}
            _ => assert_eq!(got, want, "txn {i}: {txn:?}"),
        }
        assert_eq!(store.revision().unwrap(), model.revision, "after txn {i}");
    }
    let everything = store.range(b"", None, usize::MAX).unwrap();
    let model_kvs: Vec<KeyValue> = model.kv.values().cloned().collect();
    assert_eq!(everything, model_kvs);
    for txn in txns {
        for key in txn
            .ops
            .iter()
            .map(Op::key)
            .chain(txn.compares.iter().map(Compare::key))
        {
            if !key.is_empty() {
                assert_eq!(store.get(key).unwrap().as_ref(), model.kv.get(key));
            }
        }
    }
    assert_eq!(store.changes(b"", 0, usize::MAX).unwrap(), model.log);
    // Replaying the history rebuilds the data.
    let mut replayed = BTreeMap::new();
    for event in store.changes(b"", 0, usize::MAX).unwrap() {
        match event.value {
            Some(value) => replayed.insert(event.key, value),
            None => replayed.remove(&event.key),
        };
    }
    let current: BTreeMap<Vec<u8>, Vec<u8>> = everything
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect();
    assert_eq!(replayed, current);
}
