//! Where CloudWatch Logs keeps its state, and the only code that reads or
//! writes it: log groups, their streams and the streams' events, under
//! `logs/{account}/{region}/` in the server's store.
//!
//! - `g/{group}`: a [`Group`], with a random `uid` that names everything
//!   the group holds, so a group deleted and created again under the same
//!   name never sees the old one's streams.
//! - `s/{group uid}/{stream}`: a [`Stream`], with the list of its chunks.
//! - `c/{group uid}/{stream uid}/{index}`: a chunk, up to
//!   [`CHUNK_EVENTS`] events or [`CHUNK_BYTES`] bytes in arrival order, so
//!   that appending a batch is one transaction that rewrites the stream
//!   record and the one or two chunks the batch fills, never one write per
//!   event.
//! - `dead/{id}`: a tombstone, listing key prefixes that a deleted group or
//!   stream left behind; [`sweep`] deletes them in bounded transactions
//!   (etcd caps a transaction at 128 ops) and then the tombstone, so a
//!   crash half-way leaves a sweep to finish, not orphans.
//!
//! Logs are kept out of the resources' `r/` key space on purpose: they do
//! not move the account's fence (log delivery never makes an EC2 action
//! retry), and the fleet, which scans `r/` when it starts, never reads them.
//! Writes are optimistic: a [`LogTx`] compares every record it read (the
//! group, the stream) when it commits; chunks are covered by their
//! stream's record, which every writer of a chunk rewrites.
//!
//! Bounded: a stream keeps at most [`MAX_STREAM_EVENTS`] events and
//! [`MAX_STREAM_BYTES`] bytes; past either, its oldest chunks are dropped
//! whole and counted in [`Stream::dropped_events`].

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::LogsError;
use crate::store::{Compare, KeyValue, Op, Store, Txn, TxnResult};

/// The prefix of every key this module writes.
pub const PREFIX: &[u8] = b"logs/";

/// Events per chunk.
pub const CHUNK_EVENTS: u32 = 1_000;
/// Bytes (as AWS counts them, see [`event_size`]) per chunk.
pub const CHUNK_BYTES: u64 = 256 * 1024;
/// Events a stream keeps before its oldest are dropped.
pub const MAX_STREAM_EVENTS: u64 = 100_000;
/// Bytes a stream keeps before its oldest events are dropped.
pub const MAX_STREAM_BYTES: u64 = 32 * 1024 * 1024;

/// Deletes per sweep transaction: well inside etcd's 128 ops.
const SWEEP_BATCH: usize = 100;
/// Keys per range call when listing.
const PAGE: usize = 500;
/// How often a transaction that keeps losing races is tried.
const ATTEMPTS: usize = 32;

/// A log event's size as AWS counts it against its quotas: the message's
/// UTF-8 bytes plus 26.
pub fn event_size(message: &str) -> u64 {
    message.len() as u64 + 26
}

/// A log group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    /// Milliseconds since the epoch.
    pub creation_time: i64,
    /// Names the group's streams and chunks in the store.
    pub uid: u64,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// `STANDARD` or `INFREQUENT_ACCESS`: kept and reported, no more.
    #[serde(default = "standard")]
    pub class: String,
}

fn standard() -> String {
    "STANDARD".to_owned()
}

/// One chunk of a stream, as its stream's record lists it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ChunkInfo {
    pub index: u64,
    pub events: u32,
    pub bytes: u64,
    /// The earliest and latest timestamps in the chunk, so that reads for
    /// a time range skip the chunks outside it.
    pub min_time: i64,
    pub max_time: i64,
}

/// A log stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stream {
    pub name: String,
    pub creation_time: i64,
    /// Names the stream's chunks and starts its events' IDs.
    pub uid: u64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub last_ingestion: Option<i64>,
    /// The sequence number of the next event: orders events with equal
    /// timestamps by arrival.
    pub next_seq: u64,
    /// The index of the next chunk to open.
    pub next_chunk: u64,
    /// The chunks kept, oldest first.
    pub chunks: Vec<ChunkInfo>,
    /// Events dropped (oldest first) to keep the stream within bounds.
    pub dropped_events: u64,
}

impl Stream {
    pub fn new(name: &str, now: i64) -> Self {
        Stream {
            name: name.to_owned(),
            creation_time: now,
            uid: rand::random(),
            first_event: None,
            last_event: None,
            last_ingestion: None,
            next_seq: 1,
            next_chunk: 0,
            chunks: Vec::new(),
            dropped_events: 0,
        }
    }

    /// Bytes of the events kept.
    pub fn stored_bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes).sum()
    }

    fn stored_events(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.events)).sum()
    }
}

/// An event as a chunk keeps it (short names: chunks hold thousands).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    #[serde(rename = "t")]
    pub timestamp: i64,
    #[serde(rename = "i")]
    pub ingestion: i64,
    #[serde(rename = "s")]
    pub seq: u64,
    #[serde(rename = "m")]
    pub message: String,
}

impl StoredEvent {
    /// The event's ID: 56 digits, its timestamp, its stream's uid and its
    /// sequence number, so IDs sort as events are ordered (by timestamp,
    /// then stream, then arrival) and serve as paging positions.
    pub fn event_id(&self, stream_uid: u64) -> String {
        format!(
            "{:020}{:020}{:016}",
            self.timestamp.max(0),
            stream_uid,
            self.seq % 10_000_000_000_000_000
        )
    }
}

/// The key space of one account in one region.
#[derive(Debug, Clone)]
pub struct Space {
    base: String,
}

impl Space {
    pub fn new(account_id: &str, region: &str) -> Self {
        Space {
            base: format!("logs/{account_id}/{region}/"),
        }
    }

    pub fn groups_prefix(&self) -> Vec<u8> {
        format!("{}g/", self.base).into_bytes()
    }

    pub fn group_key(&self, name: &str) -> Vec<u8> {
        format!("{}g/{name}", self.base).into_bytes()
    }

    pub fn streams_prefix(&self, group_uid: u64) -> Vec<u8> {
        format!("{}s/{group_uid:016x}/", self.base).into_bytes()
    }

    pub fn stream_key(&self, group_uid: u64, name: &str) -> Vec<u8> {
        format!("{}s/{group_uid:016x}/{name}", self.base).into_bytes()
    }

    fn group_chunks_prefix(&self, group_uid: u64) -> Vec<u8> {
        format!("{}c/{group_uid:016x}/", self.base).into_bytes()
    }

    pub fn chunks_prefix(&self, group_uid: u64, stream_uid: u64) -> Vec<u8> {
        format!("{}c/{group_uid:016x}/{stream_uid:016x}/", self.base).into_bytes()
    }

    fn chunk_key(&self, group_uid: u64, stream_uid: u64, index: u64) -> Vec<u8> {
        format!(
            "{}c/{group_uid:016x}/{stream_uid:016x}/{index:016x}",
            self.base
        )
        .into_bytes()
    }

    fn tombstones_prefix(&self) -> Vec<u8> {
        format!("{}dead/", self.base).into_bytes()
    }

    fn tombstone_key(&self) -> Vec<u8> {
        format!("{}dead/{:016x}", self.base, rand::random::<u64>()).into_bytes()
    }
}

fn decode<T: DeserializeOwned>(value: &[u8], key: &[u8]) -> Result<T, LogsError> {
    serde_json::from_slice(value).map_err(|e| {
        LogsError::Corrupt(format!(
            "the stored record {} is unreadable: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, LogsError> {
    serde_json::to_vec(value).map_err(|e| LogsError::Corrupt(e.to_string()))
}

/// A record as it is stored now, outside any transaction.
pub fn read<T: DeserializeOwned>(store: &dyn Store, key: &[u8]) -> Result<Option<T>, LogsError> {
    store
        .get(key)?
        .map(|kv| decode(&kv.value, &kv.key))
        .transpose()
}

/// Every key and value under `prefix`, sorted by key, read in pages.
fn scan(store: &dyn Store, prefix: &[u8]) -> Result<Vec<KeyValue>, LogsError> {
    let mut out: Vec<KeyValue> = Vec::new();
    loop {
        let after = out.last().map(|kv| kv.key.clone());
        let page = store.range(prefix, after.as_deref(), PAGE)?;
        let done = page.len() < PAGE;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// Every record under `prefix`, in key order.
pub fn list<T: DeserializeOwned>(store: &dyn Store, prefix: &[u8]) -> Result<Vec<T>, LogsError> {
    scan(store, prefix)?
        .iter()
        .map(|kv| decode(&kv.value, &kv.key))
        .collect()
}

/// A stream's events, in stored (arrival) order: all of them, or (with
/// `within`, both ends inclusive) those of the chunks that may hold events
/// in that time range; the caller still checks each event's time.
pub fn events(
    store: &dyn Store,
    space: &Space,
    group: &Group,
    stream: &Stream,
    within: Option<(i64, i64)>,
) -> Result<Vec<StoredEvent>, LogsError> {
    let mut out = Vec::new();
    let Some((from, to)) = within else {
        for kv in scan(store, &space.chunks_prefix(group.uid, stream.uid))? {
            out.extend(decode::<Vec<StoredEvent>>(&kv.value, &kv.key)?);
        }
        return Ok(out);
    };
    for chunk in &stream.chunks {
        if chunk.max_time < from || chunk.min_time > to {
            continue;
        }
        let key = space.chunk_key(group.uid, stream.uid, chunk.index);
        // A chunk dropped since the stream was read is simply gone.
        if let Some(kv) = store.get(&key)? {
            out.extend(decode::<Vec<StoredEvent>>(&kv.value, &key)?);
        }
    }
    Ok(out)
}

/// One write's view of the store: the records it read are compared when
/// it commits, and its writes commit together or not at all.
pub struct LogTx<'s> {
    store: &'s dyn Store,
    compares: BTreeMap<Vec<u8>, Compare>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl std::fmt::Debug for LogTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogTx")
            .field("reads", &self.compares.len())
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl<'s> LogTx<'s> {
    /// A record, as this transaction sees it; the commit fails if it has
    /// changed since.
    pub fn get<T: DeserializeOwned>(&mut self, key: &[u8]) -> Result<Option<T>, LogsError> {
        if let Some(written) = self.writes.get(key) {
            return written.as_deref().map(|v| decode(v, key)).transpose();
        }
        let kv = self.store.get(key)?;
        let compare = match &kv {
            Some(kv) => Compare::ModRevision(key.to_vec(), kv.mod_revision),
            None => Compare::Absent(key.to_vec()),
        };
        self.compares.entry(key.to_vec()).or_insert(compare);
        kv.map(|kv| decode(&kv.value, key)).transpose()
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), LogsError> {
        self.writes.insert(key, Some(encode(value)?));
        Ok(())
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    fn commit(self) -> Result<bool, LogsError> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let txn = Txn {
            compares: self.compares.into_values().collect(),
            ops: self
                .writes
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => Op::Put(k, v),
                    None => Op::Delete(k),
                })
                .collect(),
        };
        Ok(matches!(self.store.txn(txn)?, TxnResult::Committed(_)))
    }
}

/// Runs `body` in a [`LogTx`] and commits what it wrote, again on fresh
/// reads when another writer got in first. An error from `body` commits
/// nothing.
pub fn transact<T>(
    store: &dyn Store,
    mut body: impl FnMut(&mut LogTx) -> Result<T, LogsError>,
) -> Result<T, LogsError> {
    for _ in 0..ATTEMPTS {
        let mut tx = LogTx {
            store,
            compares: BTreeMap::new(),
            writes: BTreeMap::new(),
        };
        let out = body(&mut tx)?;
        if tx.commit()? {
            return Ok(out);
        }
    }
    Err(LogsError::Busy)
}

/// Appends events (each a timestamp and message) to `stream` of `group`
/// in `tx`: fills the stream's last chunk, opens new ones as needed, drops
/// the oldest chunks past the stream's bounds and writes the stream
/// record. `now` is the ingestion time. The caller has read `stream`
/// through `tx`.
pub fn append(
    tx: &mut LogTx,
    space: &Space,
    group: &Group,
    stream: &mut Stream,
    events: &[(i64, &str)],
    now: i64,
) -> Result<(), LogsError> {
    if events.is_empty() {
        return Ok(());
    }
    // The last chunk takes more events while it has room; it is read
    // without a compare of its own, as the stream's record covers it.
    let mut open: Option<(ChunkInfo, Vec<StoredEvent>)> = None;
    if let Some(last) = stream.chunks.last().copied()
        && last.events < CHUNK_EVENTS
        && last.bytes < CHUNK_BYTES
    {
        let key = space.chunk_key(group.uid, stream.uid, last.index);
        let held = match tx.store.get(&key)? {
            Some(kv) => decode::<Vec<StoredEvent>>(&kv.value, &key)?,
            None => Vec::new(),
        };
        stream.chunks.pop();
        open = Some((last, held));
    }
    let mut filled: Vec<(ChunkInfo, Vec<StoredEvent>)> = Vec::new();
    for &(timestamp, message) in events {
        let size = event_size(message);
        let full = open
            .as_ref()
            .is_some_and(|(c, _)| c.events >= CHUNK_EVENTS || c.bytes + size > CHUNK_BYTES);
        if full && let Some(done) = open.take() {
            filled.push(done);
        }
        let (info, held) = open.get_or_insert_with(|| {
            let index = stream.next_chunk;
            stream.next_chunk += 1;
            (
                ChunkInfo {
                    index,
                    events: 0,
                    bytes: 0,
                    min_time: timestamp,
                    max_time: timestamp,
                },
                Vec::new(),
            )
        });
        info.events += 1;
        info.bytes += size;
        info.min_time = info.min_time.min(timestamp);
        info.max_time = info.max_time.max(timestamp);
        held.push(StoredEvent {
            timestamp,
            ingestion: now,
            seq: stream.next_seq,
            message: message.to_owned(),
        });
        stream.next_seq += 1;
        stream.first_event = Some(stream.first_event.map_or(timestamp, |t| t.min(timestamp)));
        stream.last_event = Some(stream.last_event.map_or(timestamp, |t| t.max(timestamp)));
    }
    filled.extend(open);
    for (info, held) in filled {
        tx.put(space.chunk_key(group.uid, stream.uid, info.index), &held)?;
        stream.chunks.push(info);
    }
    stream.last_ingestion = Some(now);
    while stream.chunks.len() > 1
        && (stream.stored_events() > MAX_STREAM_EVENTS || stream.stored_bytes() > MAX_STREAM_BYTES)
    {
        let oldest = stream.chunks.remove(0);
        tx.delete(space.chunk_key(group.uid, stream.uid, oldest.index));
        stream.dropped_events += u64::from(oldest.events);
        tracing::debug!(
            stream = %stream.name,
            dropped = oldest.events,
            total_dropped = stream.dropped_events,
            "a log stream is full: its oldest events were dropped"
        );
    }
    tx.put(space.stream_key(group.uid, &stream.name), stream)
}

/// What a tombstone lists: key prefixes left to delete.
#[derive(Debug, Serialize, Deserialize)]
struct Tombstone {
    prefixes: Vec<String>,
}

/// Deletes `group` in `tx`, leaving a tombstone for its streams and events.
pub fn delete_group(tx: &mut LogTx, space: &Space, group: &Group) -> Result<(), LogsError> {
    tx.delete(space.group_key(&group.name));
    let prefixes = [
        space.streams_prefix(group.uid),
        space.group_chunks_prefix(group.uid),
    ];
    bury(tx, space, &prefixes)
}

/// Deletes `stream` of `group` in `tx`, leaving a tombstone for its events.
pub fn delete_stream(
    tx: &mut LogTx,
    space: &Space,
    group: &Group,
    stream: &Stream,
) -> Result<(), LogsError> {
    tx.delete(space.stream_key(group.uid, &stream.name));
    bury(tx, space, &[space.chunks_prefix(group.uid, stream.uid)])
}

fn bury(tx: &mut LogTx, space: &Space, prefixes: &[Vec<u8>]) -> Result<(), LogsError> {
    let tombstone = Tombstone {
        prefixes: prefixes
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect(),
    };
    tx.put(space.tombstone_key(), &tombstone)
}

/// Deletes what every tombstone of this key space lists, then the
/// tombstones: after a delete, and again after any later one if a crash
/// cut a sweep short.
pub fn sweep(store: &dyn Store, space: &Space) -> Result<(), LogsError> {
    for kv in scan(store, &space.tombstones_prefix())? {
        let tombstone: Tombstone = decode(&kv.value, &kv.key)?;
        for prefix in &tombstone.prefixes {
            // Only this space's keys: a tombstone is data, and data is
            // not trusted to name any key it likes.
            if !prefix.as_bytes().starts_with(space.base.as_bytes()) {
                continue;
            }
            loop {
                let keys = store.range(prefix.as_bytes(), None, SWEEP_BATCH)?;
                if keys.is_empty() {
                    break;
                }
                let txn = Txn {
                    compares: Vec::new(),
                    ops: keys.into_iter().map(|kv| Op::Delete(kv.key)).collect(),
                };
                store.txn(txn)?;
            }
        }
        store.delete(&kv.key)?;
    }
    Ok(())
}
