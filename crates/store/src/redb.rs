//! [`RedbStore`]: the embedded store, one redb file, so `openvpc up` needs no
//! other process. Each [`Store::txn`] is one redb write transaction, committed
//! with redb's default durability (fsync before `commit` returns).
//!
//! Layout, all in one file:
//! - `kv`: key → (create_revision, mod_revision, value)
//! - `log`: (revision, index in txn) → (key, value; `None` for a delete)
//! - `meta`: `format`, `revision` (the current one) and `compacted` (the
//!   change log holds every revision after it)
//!
//! This file owns the on-disk layout; it must not grow any knowledge of what
//! keys mean.

use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::{
    Event, EventKind, KeyValue, Notifier, Op, Revision, Store, StoreError, Txn, TxnResult,
    changes_full,
};

/// Key → (create_revision, mod_revision, value).
const KV: TableDefinition<&[u8], (u64, u64, &[u8])> = TableDefinition::new("kv");
/// (revision, index within the txn) → (key, new value or `None` for a delete).
const LOG: TableDefinition<LogKey, LogEntry> = TableDefinition::new("log");
type LogKey = (u64, u32);
type LogEntry<'a> = (&'a [u8], Option<&'a [u8]>);
/// Named counters.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
/// Bumped whenever the layout above changes incompatibly.
const FORMAT: u64 = 1;

/// The embedded store: a single redb file.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    notifier: Notifier,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if it does not exist.
    /// After a crash, redb repairs the file here; every committed txn is kept.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| {
            let e = ::redb::Error::from(e);
            match e {
                ::redb::Error::DatabaseAlreadyOpen => {
                    StoreError::AlreadyOpen(path.display().to_string())
                }
                ::redb::Error::UpgradeRequired(_) => StoreError::Incompatible(format!(
                    "{} was written by an older redb file format",
                    path.display()
                )),
                e => backend(e),
            }
        })?;
        let revision = init(&db, path)?;
        Ok(Self {
            db,
            path: path.to_path_buf(),
            notifier: Notifier::new(revision),
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(backend)
    }

    fn write(&self) -> Result<WriteTransaction, StoreError> {
        self.db.begin_write().map_err(backend)
    }
}

/// Creates the tables of a new file, checks the format of an old one, and
/// returns the current revision.
fn init(db: &Database, path: &Path) -> Result<Revision, StoreError> {
    let tx = db.begin_write().map_err(backend)?;
    let revision = {
        let mut meta = tx.open_table(META).map_err(|e| match e {
            ::redb::TableError::TableTypeMismatch { .. } => StoreError::Incompatible(format!(
                "{} is a redb file but not an openvpc store",
                path.display()
            )),
            e => backend(e),
        })?;
        match get_meta(&meta, META_FORMAT)? {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::Incompatible(format!(
                    "{} has store format {other}, this openvpc reads format {FORMAT}",
                    path.display()
                )));
            }
            None => {
                meta.insert(META_FORMAT, FORMAT).map_err(backend)?;
            }
        }
        let revision = get_meta(&meta, META_REVISION)?.unwrap_or(0);
        tx.open_table(KV).map_err(backend)?;
        tx.open_table(LOG).map_err(backend)?;
        revision
    };
    tx.commit().map_err(backend)?;
    Ok(revision)
}

fn get_meta(
    meta: &impl ReadableTable<&'static str, u64>,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(meta.get(name).map_err(backend)?.map(|v| v.value()))
}

/// Maps any redb error to the variant a caller can act on.
fn backend(e: impl Into<::redb::Error>) -> StoreError {
    match e.into() {
        ::redb::Error::Io(e) => StoreError::Io(e.to_string()),
        ::redb::Error::PreviousIo => {
            StoreError::Io("an earlier write failed and the file must be reopened".into())
        }
        ::redb::Error::Corrupted(why) => StoreError::Corrupt(why),
        ::redb::Error::ValueTooLarge(len) => StoreError::TooLarge(len),
        ::redb::Error::DatabaseAlreadyOpen => StoreError::AlreadyOpen("(the store file)".into()),
        e => StoreError::Backend(e.to_string()),
    }
}

fn key_value(key: &[u8], (create_revision, mod_revision, value): (u64, u64, &[u8])) -> KeyValue {
    KeyValue {
        key: key.to_vec(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
    }
}

impl Store for RedbStore {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        let tx = self.read()?;
        let kv = tx.open_table(KV).map_err(backend)?;
        let found = kv.get(key).map_err(backend)?;
        Ok(found.map(|v| key_value(key, v.value())))
    }

    fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let tx = self.read()?;
        let kv = tx.open_table(KV).map_err(backend)?;
        for entry in kv
            .range::<&[u8]>((start, Bound::Unbounded))
            .map_err(backend)?
        {
            let (key, value) = entry.map_err(backend)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key_value(key, value.value()));
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        txn.validate()?;
        let tx = self.write()?;
        let (result, changed) = {
            let mut kv = tx.open_table(KV).map_err(backend)?;
            let failed =
                txn.first_failed(|key| Ok(kv.get(key).map_err(backend)?.map(|v| v.value().1)))?;
            let mut meta = tx.open_table(META).map_err(backend)?;
            let current = get_meta(&meta, META_REVISION)?.unwrap_or(0);
            if let Some(failed_compare) = failed {
                (TxnResult::Failed { failed_compare }, false)
            } else {
                let revision = current + 1;
                let mut log = tx.open_table(LOG).map_err(backend)?;
                let mut index: u32 = 0;
                for op in &txn.ops {
                    match op {
                        Op::Put(key, value) => {
                            let create = match kv.get(key.as_slice()).map_err(backend)? {
                                Some(old) => old.value().0,
                                None => revision,
                            };
                            kv.insert(key.as_slice(), (create, revision, value.as_slice()))
                                .map_err(backend)?;
                            log.insert((revision, index), (key.as_slice(), Some(value.as_slice())))
                                .map_err(backend)?;
                        }
                        Op::Delete(key) => {
                            if kv.remove(key.as_slice()).map_err(backend)?.is_none() {
                                continue;
                            }
                            log.insert((revision, index), (key.as_slice(), None))
                                .map_err(backend)?;
                        }
                    }
                    index += 1;
                }
                if index == 0 {
                    (TxnResult::Committed(current), false)
                } else {
                    meta.insert(META_REVISION, revision).map_err(backend)?;
                    (TxnResult::Committed(revision), true)
                }
            }
        };
        if changed {
            tx.commit().map_err(backend)?;
            if let TxnResult::Committed(revision) = result {
                self.notifier.committed(revision);
            }
        } else {
            tx.abort().map_err(backend)?;
        }
        Ok(result)
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let tx = self.read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        Ok(get_meta(&meta, META_REVISION)?.unwrap_or(0))
    }

    fn changes(
        &self,
        prefix: &[u8],
        from: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let tx = self.read()?;
        let meta = tx.open_table(META).map_err(backend)?;
        let oldest = get_meta(&meta, META_COMPACTED)?.unwrap_or(0);
        if from < oldest {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let mut out = Vec::new();
        let Some(first) = from.checked_add(1) else {
            return Ok(out);
        };
        if limit == 0 {
            return Ok(out);
        }
        let log = tx.open_table(LOG).map_err(backend)?;
        for entry in log.range((first, 0u32)..).map_err(backend)? {
            let (at, change) = entry.map_err(backend)?;
            let (revision, _) = at.value();
            let (key, value) = change.value();
            if !key.starts_with(prefix) {
                continue;
            }
            if changes_full(&out, limit, revision) {
                break;
            }
            out.push(Event {
                revision,
                kind: if value.is_some() {
                    EventKind::Put
                } else {
                    EventKind::Delete
                },
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
            });
        }
        Ok(out)
    }

    fn wait_for(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        Ok(self.notifier.wait_for(after, timeout))
    }

    fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        let tx = self.write()?;
        {
            let mut meta = tx.open_table(META).map_err(backend)?;
            let current = get_meta(&meta, META_REVISION)?.unwrap_or(0);
            let oldest = get_meta(&meta, META_COMPACTED)?.unwrap_or(0);
            let keep_after = keep_after.min(current);
            if keep_after <= oldest {
                drop(meta);
                return tx.abort().map_err(backend);
            }
            let mut log = tx.open_table(LOG).map_err(backend)?;
            log.retain_in(..(keep_after + 1, 0u32), |_, _| false)
                .map_err(backend)?;
            meta.insert(META_COMPACTED, keep_after).map_err(backend)?;
        }
        tx.commit().map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{Compare, Txn};

    #[test]
    fn reopen_keeps_data_revision_history_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let (data, history) = {
            let store = RedbStore::open(&path).unwrap();
            for i in 0..20u32 {
                let key = format!("k/{}", i % 7).into_bytes();
                store.put(&key, &i.to_be_bytes()).unwrap();
                if i % 5 == 4 {
                    store.delete(&key).unwrap();
                }
            }
            store.compact(6).unwrap();
            let data = store.range(b"", None, usize::MAX).unwrap();
            let history = store.changes(b"", 6, usize::MAX).unwrap();
            assert_eq!(store.revision().unwrap(), 24);
            (data, history)
        };
        let store = RedbStore::open(&path).unwrap();
        assert_eq!(store.revision().unwrap(), 24);
        assert_eq!(store.range(b"", None, usize::MAX).unwrap(), data);
        assert_eq!(store.changes(b"", 6, usize::MAX).unwrap(), history);
        assert_eq!(
            store.changes(b"", 5, 1),
            Err(StoreError::Compacted {
                requested: 5,
                oldest: 6
            })
        );
        assert_eq!(store.wait_for(23, Duration::from_secs(10)).unwrap(), 24);
        assert_eq!(store.put(b"k/next", b"").unwrap(), 25);
        assert_eq!(store.path(), path);
    }

    #[test]
    fn a_second_open_of_one_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        let _first = RedbStore::open(&path).unwrap();
        let err = RedbStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::AlreadyOpen(_)), "{err}");
        assert!(err.to_string().contains("store.redb"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
        assert!(RedbStore::open(&garbage).is_err());

        // A redb file with other tables of the same names.
        let other = dir.path().join("other.redb");
        {
            let db = Database::create(&other).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<&str, &str>::new("meta"))
                .unwrap();
            tx.commit().unwrap();
        }
        let err = RedbStore::open(&other).unwrap_err();
        assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
    }

    const CRASH_ENV: &str = "OPENVPC_STORE_CRASH_WRITER";

    fn pair(i: u64) -> [Vec<u8>; 2] {
        [
            format!("crash/a/{i:010}").into_bytes(),
            format!("crash/b/{i:010}").into_bytes(),
        ]
    }

    /// The child half of `commits_survive_sigkill`: with `OPENVPC_STORE_CRASH_WRITER`
    /// set to a store path, commits numbered pairs of keys as fast as it can and
    /// prints each number once its txn is committed. Without it, does nothing.
    #[test]
    fn crash_writer() {
        let Some(path) = std::env::var_os(CRASH_ENV) else {
            return;
        };
        let store = RedbStore::open(Path::new(&path)).unwrap();
        let start = store.revision().unwrap();
        let payload = vec![0xab; 2000];
        let mut out = std::io::stdout().lock();
        let begun = Instant::now();
        // Bounded, in case the parent never kills us.
        for i in start..start + 100_000 {
            if begun.elapsed() > Duration::from_secs(30) {
                break;
            }
            let [a, b] = pair(i);
            let txn = Txn::new()
                .when(Compare::Absent(a.clone()))
                .then(Op::Put(a, payload.clone()))
                .then(Op::Put(b, payload.clone()));
            let TxnResult::Committed(revision) = store.txn(txn).unwrap() else {
                panic!("pair {i} already exists")
            };
            writeln!(out, "committed {i} {revision}").unwrap();
            out.flush().unwrap();
        }
    }

    /// Runs `crash_writer` in a child process, kills it with SIGKILL mid-stream,
    /// and returns the numbers it reported committed.
    fn run_and_kill(path: &Path) -> Vec<(u64, Revision)> {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "redb::tests::crash_writer", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CRASH_ENV, path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test … ... " on the line before our first.
                if let Some((_, numbers)) = line.split_once("committed ") {
                    let mut words = numbers.split(' ');
                    let i: u64 = words.next().unwrap().parse().unwrap();
                    let revision: Revision = words.next().unwrap().parse().unwrap();
                    if tx.send((i, revision)).is_err() {
                        break;
                    }
                }
            }
        });
        // Start the clock once the child is committing, not while it starts up.
        let first = rx.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        reader.join().unwrap();
        let first = first.expect("the writer child committed nothing within 60 s");
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was killed, not finished: {status}"
        );
        let mut committed = vec![first];
        committed.extend(rx.try_iter());
        committed
    }

    #[test]
    fn commits_survive_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crash.redb");
        let mut start = 0;
        for round in 0..2 {
            let committed = run_and_kill(&path);
            eprintln!(
                "round {round}: {} commits reported before SIGKILL",
                committed.len()
            );
            assert!(
                committed.len() >= 5,
                "round {round}: only {} commits",
                committed.len()
            );

            let store = RedbStore::open(&path).unwrap();
            // Every txn wrote a pair, so the revision counts the pairs.
            let revision = store.revision().unwrap();
            let a = store.range(b"crash/a/", None, usize::MAX).unwrap();
            let b = store.range(b"crash/b/", None, usize::MAX).unwrap();
            assert_eq!(a.len() as u64, revision, "round {round}");
            assert_eq!(b.len() as u64, revision, "round {round}: half-applied txn");
            for (i, (a, b)) in a.iter().zip(&b).enumerate() {
                let i = i as u64;
                assert_eq!(
                    [a.key.clone(), b.key.clone()],
                    pair(i),
                    "round {round}: a hole"
                );
                assert_eq!((a.mod_revision, b.mod_revision), (i + 1, i + 1));
            }
            // Everything reported committed is there, and at most the one txn
            // in flight at the kill beyond it.
            for (n, &(i, rev)) in committed.iter().enumerate() {
                assert_eq!(
                    i,
                    start + n as u64,
                    "round {round}: the child skipped a number"
                );
                assert_eq!(
                    rev,
                    i + 1,
                    "round {round}: pair {i} committed at revision {rev}"
                );
                assert!(
                    store.get(&pair(i)[0]).unwrap().is_some(),
                    "round {round}: lost pair {i}"
                );
            }
            let (last, _) = *committed.last().unwrap();
            assert!(
                revision == last + 1 || revision == last + 2,
                "round {round}: {revision} vs {last}"
            );
            let events = store.changes(b"", 0, usize::MAX).unwrap();
            assert_eq!(
                events.len() as u64,
                2 * revision,
                "round {round}: the change log"
            );
            for (n, event) in events.iter().enumerate() {
                assert_eq!(event.revision, n as u64 / 2 + 1);
                assert_eq!(event.key, pair(n as u64 / 2)[n % 2]);
            }
            start = revision;
        }
    }
}
