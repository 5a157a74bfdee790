//! [`EtcdStore`]: the [`Store`] trait backed by an etcd v3 cluster, so several
//! openvpc servers can share one control-plane state.
//!
//! etcd already is the model the trait was written after, so the mapping is
//! direct: keys and values are bytes, an etcd txn is our txn, and etcd's
//! global revision is ours shifted by one (an empty etcd is at revision 1,
//! an empty store at 0). etcd advances its revision only for a txn that
//! changes something, exactly as the trait says, so every txn is sent as is.
//!
//! The trait is synchronous and the client is async: the store owns a small
//! tokio runtime, spawns each request on it and waits on a std channel, which
//! works from any thread, including another runtime's blocking pool. It
//! speaks etcd's gRPC API through the generated stubs of `openvpc-etcd-api`
//! (no client library: the one we used needed `protoc` in every build).
//!
//! etcd bounds what one txn may hold: `--max-txn-ops` (128 by default)
//! compares and ops per branch, `--max-request-bytes` (1.5 MiB) in all. A
//! txn past them fails with a backend error; run etcd with larger limits if
//! actions that touch many objects at once need them.

use std::future::Future;
use std::time::Duration;

use openvpc_etcd_api::etcdserverpb::{
    CompactionRequest, Compare as EtcdCompare, DeleteRangeRequest, PutRequest, RangeRequest,
    RangeResponse, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest, compare, kv_client,
    request_op, response_op, watch_client, watch_request,
};
use openvpc_etcd_api::mvccpb::{self, event::EventType};
use tokio_stream::StreamExt as _;
use tonic::transport::{Channel, Endpoint};

use super::{
    Compare, Event, EventKind, KeyValue, Op, Revision, Store, StoreError, Txn, TxnResult,
    changes_full,
};

/// How long one request may take before the store gives up on etcd.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `connect` waits for a first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`Store`] on an etcd cluster. Cheap to share: all methods take `&self`.
pub struct EtcdStore {
    /// `None` only while dropping (the runtime is shut down without blocking).
    runtime: Option<tokio::runtime::Runtime>,
    kv: kv_client::KvClient<Channel>,
    watch: watch_client::WatchClient<Channel>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

/// Parses `etcd://host:port[,host:port…]` into the client's endpoint URLs.
pub fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
    let hosts = url.strip_prefix("etcd://").ok_or_else(|| {
        StoreError::Incompatible(format!(
            "{url:?} is not an etcd URL; write etcd://host:port[,host:port...]"
        ))
    })?;
    let endpoints: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| format!("http://{h}"))
        .collect();
    if endpoints.is_empty() {
        return Err(StoreError::Incompatible(format!(
            "{url:?} names no etcd host; write etcd://host:port[,host:port...]"
        )));
    }
    Ok(endpoints)
}

/// Our revision for an etcd revision: etcd starts at 1 where we start at 0.
fn ours(etcd: i64) -> Revision {
    u64::try_from(etcd.saturating_sub(1)).unwrap_or(0)
}

/// etcd's revision for ours; revisions past etcd's range saturate, which no
/// real store reaches.
fn etcd(ours: Revision) -> i64 {
    i64::try_from(ours)
        .ok()
        .and_then(|r| r.checked_add(1))
        .unwrap_or(i64::MAX)
}

fn backend(e: tonic::Status) -> StoreError {
    StoreError::Backend(format!("etcd: {}: {}", e.code(), e.message()))
}

fn is_compacted(e: &tonic::Status) -> bool {
    e.message().contains("compacted")
}

fn convert(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key,
        value: kv.value,
        create_revision: ours(kv.create_revision),
        mod_revision: ours(kv.mod_revision),
    }
}

fn header_revision(resp: &RangeResponse) -> i64 {
    resp.header.as_ref().map_or(0, |h| h.revision)
}

/// A watch of every key from etcd revision `start`, as a request stream that
/// stays open: etcd ends a watch whose request stream the client closed.
fn watch_all_from(start: i64) -> impl tokio_stream::Stream<Item = WatchRequest> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: vec![0],
                range_end: NO_END.to_vec(),
                start_revision: start,
                ..Default::default()
            },
        )),
    };
    tokio_stream::iter([create]).chain(tokio_stream::pending())
}

/// The first key after every key starting with `prefix`; `None` when no such
/// key exists (an empty prefix, or one of only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// etcd's range end for "every key from the start key on".
const NO_END: [u8; 1] = [0];

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (`http://host:port`) and
    /// checks that it answers.
    pub fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("starting the etcd client runtime: {e}")))?;
        let mut list = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| StoreError::Incompatible(format!("etcd endpoint {url:?}: {e}")))?
                .connect_timeout(Duration::from_secs(5))
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10));
            list.push(endpoint);
        }
        // The balanced channel spawns its connection tasks on the runtime.
        let channel = {
            let _enter = runtime.enter();
            Channel::balance_list(list.into_iter())
        };
        // Ranges of a big store and watch batches may exceed tonic's 4 MiB
        // default; etcd bounds what it sends itself.
        let store = Self {
            kv: kv_client::KvClient::new(channel.clone()).max_decoding_message_size(usize::MAX),
            watch: watch_client::WatchClient::new(channel).max_decoding_message_size(usize::MAX),
            runtime: Some(runtime),
        };
        // The channel connects lazily: a first read says whether etcd answers.
        let mut kv = store.kv.clone();
        let endpoints = endpoints.to_vec();
        let named = endpoints.clone();
        store
            .run(CONNECT_TIMEOUT, async move {
                kv.range(RangeRequest {
                    key: vec![0],
                    count_only: true,
                    ..Default::default()
                })
                .await
                .map_err(|e| {
                    StoreError::Backend(format!(
                        "connecting to etcd at {endpoints:?}: {}",
                        e.message()
                    ))
                })
            })
            .map_err(|e| match e {
                StoreError::Backend(m) if m.starts_with("etcd did not answer") => {
                    StoreError::Backend(format!(
                        "connecting to etcd at {named:?}: no answer within {}s",
                        CONNECT_TIMEOUT.as_secs()
                    ))
                }
                e => e,
            })?;
        Ok(store)
    }

    /// Connects to the cluster an `etcd://host:port[,host:port…]` URL names.
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::connect(&parse_url(url)?)
    }

    fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the etcd store is shutting down".into()))?;
        spawn_wait(runtime.handle(), timeout, future)
    }
}

/// Runs `future` on `handle` and blocks this thread until it ends. Spawning
/// rather than `block_on` lets callers on any thread (even inside another
/// runtime) use the store.
fn spawn_wait<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    timeout: Duration,
    future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let result = tokio::time::timeout(timeout, future).await;
        // The caller waits on the channel; it cannot have gone away.
        let _ = tx.send(result);
    });
    match rx.recv() {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(StoreError::Backend(format!(
            "etcd did not answer within {}s",
            timeout.as_secs()
        ))),
        Err(_) => Err(StoreError::Backend(
            "the etcd request ended without an answer".into(),
        )),
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code; a store
        // may be dropped anywhere.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        if key.is_empty() {
            // etcd refuses empty keys; no key is empty.
            return Ok(None);
        }
        let mut kv = self.kv.clone();
        let key = key.to_vec();
        self.run(REQUEST_TIMEOUT, async move {
            let resp = kv
                .range(RangeRequest {
                    key,
                    ..Default::default()
                })
                .await
                .map_err(backend)?;
            Ok(resp.into_inner().kvs.into_iter().next().map(convert))
        })
    }

    fn range(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let end = prefix_end(prefix);
        let mut start = prefix.to_vec();
        if let Some(after) = after
            && after >= prefix
        {
            start = after.to_vec();
            start.push(0); // the first key after `after`
        }
        if end.as_ref().is_some_and(|end| start >= *end) {
            return Ok(Vec::new());
        }
        if start.is_empty() {
            start = vec![0]; // etcd refuses an empty start key; [0] is the least key
        }
        // etcd's limit 0 means "no limit".
        let request = RangeRequest {
            key: start,
            range_end: end.unwrap_or_else(|| NO_END.to_vec()),
            limit: i64::try_from(limit).unwrap_or(0),
            ..Default::default()
        };
        let mut kv = self.kv.clone();
        self.run(REQUEST_TIMEOUT, async move {
            let resp = kv.range(request).await.map_err(backend)?;
            Ok(resp.into_inner().kvs.into_iter().map(convert).collect())
        })
    }

    fn txn(&self, txn: Txn) -> Result<TxnResult, StoreError> {
        txn.validate()?;
        let size: usize = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => k.len() + v.len(),
                Op::Delete(k) => k.len(),
            })
            .sum();
        let compare: Vec<EtcdCompare> = txn
            .compares
            .iter()
            .map(|c| {
                let (target, result, value) = match c {
                    // A key's create revision is 0 exactly when it is absent.
                    Compare::Absent(_) => (
                        compare::CompareTarget::Create,
                        compare::CompareResult::Equal,
                        compare::TargetUnion::CreateRevision(0),
                    ),
                    Compare::Exists(_) => (
                        compare::CompareTarget::Create,
                        compare::CompareResult::Greater,
                        compare::TargetUnion::CreateRevision(0),
                    ),
                    // etcd compares an absent key's mod revision as 0, which
                    // no etcd revision of ours (>= 1) equals: as the trait wants.
                    Compare::ModRevision(_, r) => (
                        compare::CompareTarget::Mod,
                        compare::CompareResult::Equal,
                        compare::TargetUnion::ModRevision(etcd(*r)),
                    ),
                };
                EtcdCompare {
                    result: result.into(),
                    target: target.into(),
                    key: c.key().to_vec(),
                    target_union: Some(value),
                    range_end: Vec::new(),
                }
            })
            .collect();
        let success: Vec<RequestOp> = txn
            .ops
            .iter()
            .map(|op| {
                let request = match op {
                    Op::Put(key, value) => request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value: value.clone(),
                        ..Default::default()
                    }),
                    Op::Delete(key) => {
                        request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                            key: key.clone(),
                            ..Default::default()
                        })
                    }
                };
                RequestOp {
                    request: Some(request),
                }
            })
            .collect();
        // etcd says only that some compare failed; reading the compared keys
        // in the failure branch, at the same revision, tells which.
        let failure: Vec<RequestOp> = txn
            .compares
            .iter()
            .map(|c| RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: c.key().to_vec(),
                    ..Default::default()
                })),
            })
            .collect();
        let request = TxnRequest {
            compare,
            success,
            failure,
        };
        let mut kv = self.kv.clone();
        let resp = self.run(REQUEST_TIMEOUT, async move {
            kv.txn(request).await.map_err(|e| {
                if e.message().contains("too large") {
                    StoreError::TooLarge(size)
                } else {
                    backend(e)
                }
            })
        })?;
        let resp = resp.into_inner();
        if resp.succeeded {
            let revision = resp.header.map_or(0, |h| h.revision);
            return Ok(TxnResult::Committed(ours(revision)));
        }
        let current: Vec<Option<Revision>> = resp
            .responses
            .into_iter()
            .map(|r| match r.response {
                Some(response_op::Response::ResponseRange(range)) => {
                    range.kvs.first().map(|kv| ours(kv.mod_revision))
                }
                _ => None,
            })
            .collect();
        let mut current = current.into_iter();
        match txn.first_failed(|_| Ok(current.next().flatten()))? {
            Some(failed_compare) => Ok(TxnResult::Failed { failed_compare }),
            None => Err(StoreError::Backend(
                "etcd failed a transaction whose compares all hold".into(),
            )),
        }
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        let mut kv = self.kv.clone();
        self.run(REQUEST_TIMEOUT, async move {
            let resp = kv
                .range(RangeRequest {
                    key: vec![0],
                    count_only: true,
                    ..Default::default()
                })
                .await
                .map_err(backend)?;
            Ok(ours(header_revision(resp.get_ref())))
        })
    }

    fn changes(
        &self,
        prefix: &[u8],
        from: Revision,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let head = self.revision()?;
        if from >= head {
            return Ok(Vec::new());
        }
        // etcd has no read of its change log but a watch from a past revision.
        // It watches every key, not just the prefix: each etcd revision after
        // the first has events, so seeing the head revision's events says the
        // history is complete, which a prefix watch could never tell.
        // It starts at `from` itself (whose events are dropped) so that etcd
        // refuses it exactly when `from` was compacted away: etcd accepts a
        // watch from its compaction revision, which is our `oldest`.
        let (start, head) = (etcd(from), etcd(head));
        let prefix = prefix.to_vec();
        let mut watch = self.watch.clone();
        self.run(REQUEST_TIMEOUT, async move {
            let mut stream = watch
                .watch(watch_all_from(start))
                .await
                .map_err(backend)?
                .into_inner();
            let mut out: Vec<Event> = Vec::new();
            loop {
                let Some(resp) = stream.message().await.map_err(backend)? else {
                    return Err(StoreError::Backend(
                        "etcd ended a watch before the current revision".into(),
                    ));
                };
                if resp.compact_revision > 0 {
                    return Err(StoreError::Compacted {
                        requested: from,
                        oldest: ours(resp.compact_revision),
                    });
                }
                if resp.canceled {
                    return Err(StoreError::Backend(format!(
                        "etcd cancelled a watch: {}",
                        resp.cancel_reason
                    )));
                }
                // etcd sends each revision's events in one response (without
                // the fragment option), so a revision is never cut here.
                let mut done = false;
                for event in resp.events {
                    let kind = match EventType::try_from(event.r#type) {
                        Ok(EventType::Put) => EventKind::Put,
                        Ok(EventType::Delete) => EventKind::Delete,
                        Err(_) => {
                            return Err(StoreError::Backend(format!(
                                "etcd sent an event of unknown type {}",
                                event.r#type
                            )));
                        }
                    };
                    let Some(kv) = event.kv else { continue };
                    let revision = kv.mod_revision;
                    if revision <= start {
                        continue;
                    }
                    if revision > head {
                        done = true;
                        break;
                    }
                    done = revision == head;
                    if !kv.key.starts_with(&prefix) {
                        continue;
                    }
                    let revision = ours(revision);
                    if changes_full(&out, limit, revision) {
                        return Ok(out);
                    }
                    let value = match kind {
                        EventKind::Put => Some(kv.value),
                        EventKind::Delete => None,
                    };
                    out.push(Event {
                        revision,
                        kind,
                        key: kv.key,
                        value,
                    });
                }
                if done {
                    return Ok(out);
                }
            }
        })
    }

    fn wait_for(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        let current = self.revision()?;
        if current > after {
            return Ok(current);
        }
        // A watch from the revision after `after` answers with the first
        // commit past it, even one made before the watch was set up.
        let start = etcd(after).saturating_add(1);
        let mut watch = self.watch.clone();
        let waited = self.run(timeout + REQUEST_TIMEOUT, async move {
            let mut stream = watch
                .watch(watch_all_from(start))
                .await
                .map_err(backend)?
                .into_inner();
            let wait = async {
                while let Some(resp) = stream.message().await.map_err(backend)? {
                    if !resp.events.is_empty() || resp.canceled || resp.compact_revision > 0 {
                        break;
                    }
                }
                Ok::<(), StoreError>(())
            };
            match tokio::time::timeout(timeout, wait).await {
                Ok(result) => result,
                Err(_) => Ok(()), // timed out: the caller reads the revision
            }
        });
        waited?;
        self.revision()
    }

    fn compact(&self, keep_after: Revision) -> Result<(), StoreError> {
        let target = keep_after.min(self.revision()?);
        if target == 0 {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        self.run(REQUEST_TIMEOUT, async move {
            // etcd keeps history after its compaction revision, so compacting
            // at our `target` keeps exactly the changes after it.
            let request = CompactionRequest {
                revision: etcd(target),
                physical: true,
            };
            match kv.compact(request).await {
                Ok(_) => Ok(()),
                // Already compacted further: a no-op, as the trait says.
                Err(e) if is_compacted(&e) => Ok(()),
                Err(e) => Err(backend(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379").unwrap(),
            vec!["http://127.0.0.1:2379"]
        );
        assert_eq!(
            parse_url("etcd://a:1,b:2").unwrap(),
            vec!["http://a:1", "http://b:2"]
        );
        assert!(parse_url("http://a:1").is_err());
        assert!(parse_url("etcd://").is_err());
    }

    #[test]
    fn revisions_shift_by_one() {
        assert_eq!((ours(1), ours(2), ours(0)), (0, 1, 0));
        assert_eq!((etcd(0), etcd(1), etcd(u64::MAX)), (1, 2, i64::MAX));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
