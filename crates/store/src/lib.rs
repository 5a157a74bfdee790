//! The control plane's storage: a revisioned key-value store in the manner of
//! etcd. Every committed transaction that changes something advances one global
//! revision; each key remembers the revision that created it and the one that
//! last changed it; a change log lets watchers resume from any revision that has
//! not been compacted away.
//!
//! This crate owns the [`Store`] trait, its types and errors, and the backends
//! ([`RedbStore`], [`MemoryStore`], [`EtcdStore`]), plus, behind the
//! `conformance` feature, the suite every backend must pass and a throwaway
//! etcd server for tests. It must not know anything of resources, accounts or
//! the API: keys and values are opaque bytes, and the layers above decide what
//! they mean. It depends on no other openvpc crate except the generated etcd
//! client (`openvpc-etcd-api`).
//!
//! Semantics every backend follows (the `conformance` module, public with the
//! `conformance` feature, checks them):
//! - A [`Txn`] is all-or-nothing: its ops apply only if every compare holds.
//! - A committed txn that changes something advances the revision by exactly
//!   one; all its changes carry that revision. A txn that changes nothing (no
//!   ops, or only deletes of absent keys) commits without advancing it, as in
//!   etcd.
//! - A txn may change each key at most once, and keys are never empty.
//! - [`Store::changes`] never splits one revision's events across two calls.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod etcd;
pub mod memory;
pub mod redb;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
#[cfg(any(test, feature = "conformance"))]
pub mod test_etcd;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use etcd::EtcdStore;
pub use memory::MemoryStore;
pub use redb::RedbStore;

/// A global store revision; 0 is the empty store before its first commit.
pub type Revision = u64;

/// A key with its value and the revisions that created and last changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The revision of the put that created the key (since its last delete).
    pub create_revision: Revision,
    /// The revision of the key's last change.
    pub mod_revision: Revision,
}

/// A condition a [`Txn`] checks before applying its ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key exists and was last changed at exactly this revision.
    ModRevision(Vec<u8>, Revision),
    /// The key exists.
    Exists(Vec<u8>),
}

impl Compare {
    /// The key this compare looks at.
    pub fn key(&self) -> &[u8] {
        match self {
            Compare::Absent(key) | Compare::ModRevision(key, _) | Compare::Exists(key) => key,
        }
    }

    /// Whether the compare holds for a key whose current `mod_revision` is
    /// given (`None` when the key is absent).
    pub fn holds(&self, mod_revision: Option<Revision>) -> bool {
        match self {
            Compare::Absent(_) => mod_revision.is_none(),
            Compare::Exists(_) => mod_revision.is_some(),
            Compare::ModRevision(_, want) => mod_revision == Some(*want),
        }
    }
}

/// A change a [`Txn`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Sets the key's value, creating the key if absent.
    Put(Vec<u8>, Vec<u8>),
    /// Removes the key; a no-op if it is absent.
    Delete(Vec<u8>),
}

impl Op {
    /// The key this op changes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put(key, _) | Op::Delete(key) => key,
        }
    }
}

/// An all-or-nothing transaction: `ops` apply only if every compare holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a compare.
    #[must_use]
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    /// Adds an op.
    #[must_use]
    pub fn then(mut self, op: Op) -> Self {
        self.ops.push(op);
        self
    }

    /// Rejects empty keys and keys changed by more than one op.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.compares.iter().any(|c| c.key().is_empty()) {
            return Err(StoreError::EmptyKey);
        }
        let mut seen = BTreeSet::new();
        for op in &self.ops {
            if op.key().is_empty() {
                return Err(StoreError::EmptyKey);
            }
            if !seen.insert(op.key()) {
                return Err(StoreError::DuplicateKey {
                    key: String::from_utf8_lossy(op.key()).into_owned(),
                });
            }
        }
        Ok(())
    }

    /// The index of the first compare that fails, given each key's current
    /// mod revision.
    pub(crate) fn first_failed(
        &self,
        mut mod_revision: impl FnMut(&[u8]) -> Result<Option<Revision>, StoreError>,
    ) -> Result<Option<usize>, StoreError> {
        for (i, compare) in self.compares.iter().enumerate() {
            if !compare.holds(mod_revision(compare.key())?) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }
}

/// The outcome of [`Store::txn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    /// Every compare held and the ops were applied; the store's revision after
    /// the txn (unchanged if the txn changed nothing).
    Committed(Revision),
    /// The compare at this index (the first that failed) did not hold; nothing
    /// was applied.
    Failed { failed_compare: usize },
}

/// Whether an [`Event`] set or removed its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key, as recorded in the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The revision of the txn that made the change.
    pub revision: Revision,
    pub kind: EventKind,
    pub key: Vec<u8>,
    /// The new value for a put; `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// Why a store operation failed. Each message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store I/O failed ({0}); check the disk and the file's permissions, then restart")]
    Io(String),
    #[error("the store is corrupt ({0}); restore the store file from a backup")]
    Corrupt(String),
    #[error(
        "the change log before revision {oldest} was compacted, so changes after revision \
         {requested} are gone; re-read the current state with get/range and watch from its \
         revision"
    )]
    Compacted {
        /// The `from` revision that was asked for.
        requested: Revision,
        /// The smallest `from` that [`Store::changes`] still accepts.
        oldest: Revision,
    },
    #[error(
        "the store file {0} is in use by another process; stop that process or use another file"
    )]
    AlreadyOpen(String),
    #[error("{0}; point openvpc at its own store file")]
    Incompatible(String),
    #[error("keys must not be empty; give the key a name")]
    EmptyKey,
    #[error("a transaction may change each key once, but {key:?} has several ops; merge them")]
    DuplicateKey { key: String },
    #[error("a key or value is too large ({0} bytes); store large data elsewhere")]
    TooLarge(usize),
    #[error("the storage backend failed ({0}); restart the server, and report it if it recurs")]
    Backend(String),
}

/// A revisioned key-value store. Synchronous: async callers use
/// `spawn_blocking`. Safe to call from many threads at once.
pub trait Store: Send + Sync {
    /// The key's current value, or `None` if it is absent.
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError>;

    /// Keys starting with `prefix`, sorted, strictly after `after` if given, at
    /// most `limit` of them. To page, pass the last key returned as `after`.
    fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError>;

    /// Applies the ops if every compare holds, atomically; a `Committed` txn is
    /// durable (fsync'd) before this returns.
    fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError>;

    /// The current revision.
    fn revision(&self) -> Result<Revision, StoreError>;

    /// Changes after `from` (exclusive) to keys under `prefix`, oldest first.
    /// At most `limit` events, except that one revision's events are never
    /// split: the last revision returned is always complete, so a caller can
    /// resume from the last event's revision. `Err(Compacted)` if history
    /// after `from` was discarded.
    fn changes(
        &self,
        prefix: &[u8],
        from: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;

    /// Blocks up to `timeout` until the revision exceeds `after`; returns the
    /// current revision (still `<= after` on a timeout).
    fn wait_for(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError>;

    /// Discards the change log up to and including `keep_after` (clamped to
    /// the current revision); later `changes` from before it fail with
    /// `Compacted`. Keys and values are untouched. Compacting to an older point
    /// than before is a no-op.
    fn compact(&self, keep_after: Revision) -> Result<(), StoreError>;

    /// Sets one key unconditionally; returns the revision of the change.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<Revision, StoreError> {
        committed(self.txn(Txn::new().then(Op::Put(key.to_vec(), value.to_vec())))?)
    }

    /// Removes one key unconditionally; returns the store's revision after.
    fn delete(&self, key: &[u8]) -> Result<Revision, StoreError> {
        committed(self.txn(Txn::new().then(Op::Delete(key.to_vec())))?)
    }
}

/// The revision of a txn without compares, which cannot fail.
fn committed(result: TxnResult) -> Result<Revision, StoreError> {
    match result {
        TxnResult::Committed(revision) => Ok(revision),
        TxnResult::Failed { failed_compare } => Err(StoreError::Backend(format!(
            "a transaction without compares reported compare {failed_compare} failed"
        ))),
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $ty {
            fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
                (**self).get(key)
            }
            fn range(
                &self,
                prefix: &[u8],
                after: Option<&[u8]>,
                limit: usize,
            ) -> Result<Vec<KeyValue>, StoreError> {
                (**self).range(prefix, after, limit)
            }
            fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
                (**self).txn(txn)
            }
            fn revision(&self) -> Result<Revision, StoreError> {
                (**self).revision()
            }
            fn changes(
                &self,
                prefix: &[u8],
                from: Revision,
                limit: usize,
            ) -> Result<Vec<Event>, StoreError> {
                (**self).changes(prefix, from, limit)
            }
            fn wait_for(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
                (**self).wait_for(after, timeout)
            }
            fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
                (**self).compact(keep_after)
            }
        }
    )*};
}

forward_store!(Box<S>, Arc<S>);

/// Whether `changes` must stop before an event of revision `next`: the limit
/// is reached and the last event taken belongs to an earlier revision.
pub(crate) fn changes_full(out: &[Event], limit: usize, next: Revision) -> bool {
    out.len() >= limit && out.last().is_none_or(|last| last.revision != next)
}

/// The current revision, with a condition variable signalled on each commit:
/// what `wait_for` blocks on.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    revision: Mutex<Revision>,
    changed: std::sync::Condvar,
}

impl Notifier {
    pub(crate) fn new(revision: Revision) -> Self {
        Self {
            revision: Mutex::new(revision),
            changed: std::sync::Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Revision> {
        self.revision.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a committed revision and wakes every waiter.
    pub(crate) fn committed(&self, revision: Revision) {
        let mut current = self.lock();
        *current = (*current).max(revision);
        drop(current);
        self.changed.notify_all();
    }

    /// Blocks up to `timeout` until the revision exceeds `after`.
    pub(crate) fn wait_for(&self, after: Revision, timeout: Duration) -> Revision {
        let current = self.lock();
        let (current, _) = self
            .changed
            .wait_timeout_while(current, timeout, |revision| *revision <= after)
            .unwrap_or_else(PoisonError::into_inner);
        *current
    }
}
