//! [`MemoryStore`]: the store held in process memory, for fast unit tests of
//! code built on [`Store`]. Same semantics as the durable backends; nothing
//! survives the process.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{
    Event, EventKind, KeyValue, Notifier, Op, Revision, Store, StoreError, Txn, TxnResult,
    changes_full,
};

/// An in-memory [`Store`].
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    notifier: Notifier,
}

#[derive(Debug, Default)]
struct State {
    kv: BTreeMap<Vec<u8>, KeyValue>,
    /// Every event after `compacted`, oldest first.
    log: VecDeque<Event>,
    revision: Revision,
    compacted: Revision,
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.state().kv.get(key).cloned())
    }

    fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        let state = self.state();
        Ok(state
            .kv
            .range::<[u8], _>((start, Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(_, kv)| kv.clone())
            .collect())
    }

    fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        txn.validate()?;
        let mut state = self.state();
        let state = &mut *state;
        let failed = txn.first_failed(|key| Ok(state.kv.get(key).map(|kv| kv.mod_revision)))?;
        if let Some(failed_compare) = failed {
            return Ok(TxnResult::Failed { failed_compare });
        }
        let revision = state.revision + 1;
        let mut changed = false;
        for op in txn.ops {
            let event = match op {
                Op::Put(key, value) => {
                    let create_revision = state
                        .kv
                        .get(&key)
                        .map_or(revision, |old| old.create_revision);
                    state.kv.insert(
                        key.clone(),
                        KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision,
                            mod_revision: revision,
                        },
                    );
                    Event {
                        revision,
                        kind: EventKind::Put,
                        key,
                        value: Some(value),
                    }
                }
                Op::Delete(key) => {
                    if state.kv.remove(&key).is_none() {
                        continue;
                    }
                    Event {
                        revision,
                        kind: EventKind::Delete,
                        key,
                        value: None,
                    }
                }
            };
            state.log.push_back(event);
            changed = true;
        }
        if !changed {
            return Ok(TxnResult::Committed(state.revision));
        }
        state.revision = revision;
        self.notifier.committed(revision);
        Ok(TxnResult::Committed(revision))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.state().revision)
    }

    fn changes(
        &self,
        prefix: &[u8],
        from: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let state = self.state();
        if from < state.compacted {
            return Err(StoreError::Compacted {
                requested: from,
                oldest: state.compacted,
            });
        }
        let start = state.log.partition_point(|event| event.revision <= from);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for event in state.log.range(start..) {
            if !event.key.starts_with(prefix) {
                continue;
            }
            if changes_full(&out, limit, event.revision) {
                break;
            }
            out.push(event.clone());
        }
        Ok(out)
    }

    fn wait_for(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        Ok(self.notifier.wait_for(after, timeout))
    }

    fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        let mut state = self.state();
        let keep_after = keep_after.min(state.revision);
        if keep_after <= state.compacted {
            return Ok(());
        }
        let drop = state
            .log
            .partition_point(|event| event.revision <= keep_after);
        state.log.drain(..drop);
        state.compacted = keep_after;
        Ok(())
    }
}
