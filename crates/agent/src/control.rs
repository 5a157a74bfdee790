//! The agent's conversation with the control plane over the agent API:
//! register, long-poll the watch for deltas (handed to the reconciler),
//! answer the worker's mapping questions in batches, and report the
//! instances' setup health (which doubles as the host's heartbeat).
//!
//! When the server is away the dataplane keeps running on what it has: the
//! loops log the outage once, retry with backoff, and resume the watch from
//! the last revision they saw.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use openvpc_model::host::{
    HealthReport, HostDelta, HostRecord, HostRegistration, MappingAnswer, MappingKey, TOKEN_HEADER,
    path,
};

use crate::health::Health;

use crate::reconcile::Reconciler;
use crate::snapshot::{self, Snapshot};
use crate::worker::WorkerClient;

/// How long the server may hold a watch open.
pub const WATCH_WAIT_MS: u64 = 25_000;
/// Most keys in one mapping request.
pub const MAPPING_BATCH: usize = 1_024;
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A failed exchange with the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{what}: {source}; is the server at {url} up and the agent token right?")]
    Http {
        what: &'static str,
        url: String,
        #[source]
        source: Box<ureq::Error>,
    },
    #[error("{what}: the server's answer is not what this node understands: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("mapping lookup: asked {asked} keys, got {answered} answers")]
    Mismatch { asked: usize, answered: usize },
}

/// A blocking client for the agent API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    /// Long polls wait longer than anything else may.
    watch: ureq::Agent,
    short: ureq::Agent,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into()
}

impl Client {
    /// A client for the server at `server_url`, authenticating with `token`.
    pub fn new(server_url: &str, token: &str) -> Self {
        Client::with_short_timeout(server_url, token, Duration::from_secs(10))
    }

    /// [`Client::new`] whose calls other than long polls give up after
    /// `short` (an edge's heartbeat later than the server's TTL is none).
    pub fn with_short_timeout(server_url: &str, token: &str, short: Duration) -> Self {
        Client {
            base: server_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            watch: agent(Duration::from_millis(WATCH_WAIT_MS + 10_000)),
            short: agent(short),
        }
    }

    /// POSTs `body` as JSON to `endpoint` and reads the JSON answer
    /// (`what` names the exchange in errors).
    pub fn post<T: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        endpoint: &str,
        body: &T,
    ) -> Result<R, ClientError> {
        let url = format!("{}{endpoint}", self.base);
        let http = |source| ClientError::Http {
            what,
            url: url.clone(),
            source: Box::new(source),
        };
        let body =
            serde_json::to_vec(body).map_err(|source| ClientError::Decode { what, source })?;
        let mut resp = self
            .short
            .post(&url)
            .header(TOKEN_HEADER, &self.token)
            .content_type("application/json")
            .send(&body[..])
            .map_err(http)?;
        let text = resp.body_mut().read_to_vec().map_err(http)?;
        serde_json::from_slice(&text).map_err(|source| ClientError::Decode { what, source })
    }

    /// A long poll: GETs `endpoint` with `query`, allowing the answer up
    /// to `limit` bytes (a whole state is larger than ureq's default).
    pub fn long_poll<R: serde::de::DeserializeOwned>(
        &self,
        what: &'static str,
        endpoint: &str,
        query: &[(&str, String)],
        limit: u64,
    ) -> Result<R, ClientError> {
        let url = format!("{}{endpoint}", self.base);
        let http = |source| ClientError::Http {
            what,
            url: url.clone(),
            source: Box::new(source),
        };
        let mut request = self.watch.get(&url);
        for (k, v) in query {
            request = request.query(*k, v);
        }
        let mut resp = request
            .header(TOKEN_HEADER, &self.token)
            .call()
            .map_err(http)?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(http)?;
        serde_json::from_slice(&text).map_err(|source| ClientError::Decode { what, source })
    }

    /// `POST /agent/v1/register`.
    pub fn register(&self, reg: &HostRegistration) -> Result<HostRecord, ClientError> {
        self.post("register", path::REGISTER, reg)
    }

    /// `GET /agent/v1/watch`: what changed since `since`, waiting up to
    /// `wait_ms` for something to.
    pub fn watch(&self, host_id: &str, since: u64, wait_ms: u64) -> Result<HostDelta, ClientError> {
        let query = [
            ("host", host_id.to_owned()),
            ("since", since.to_string()),
            ("wait_ms", wait_ms.to_string()),
        ];
        // A full state of many ENIs is larger than ureq's default limit.
        self.long_poll("watch", path::WATCH, &query, 256 << 20)
    }

    /// `POST /agent/v1/health`: the instances' setup health, whole.
    pub fn health(&self, report: &HealthReport) -> Result<(), ClientError> {
        let _: serde_json::Value = self.post("health report", path::HEALTH, report)?;
        Ok(())
    }

    /// `POST /agent/v1/mappings`: one answer per key, in order.
    pub fn mappings(&self, keys: &[MappingKey]) -> Result<Vec<MappingAnswer>, ClientError> {
        let answers: Vec<MappingAnswer> = self.post("mapping lookup", path::MAPPINGS, &keys)?;
        if answers.len() != keys.len() {
            return Err(ClientError::Mismatch {
                asked: keys.len(),
                answered: answers.len(),
            });
        }
        Ok(answers)
    }
}

/// Remembers whether the server is reachable, so an outage is logged once
/// when it starts and once when it ends, not per retry, and backs off
/// between retries. Shared by every node that follows a server (the agent,
/// the edge): `consequence` says what the node does meanwhile.
#[derive(Debug)]
pub struct Outage {
    down: bool,
    backoff: Duration,
    consequence: &'static str,
}

/// What an agent does while the server is away.
const AGENT_CONSEQUENCE: &str = "the dataplane keeps its current state and retries";

impl Outage {
    pub fn new(consequence: &'static str) -> Self {
        Outage {
            down: false,
            backoff: MIN_BACKOFF,
            consequence,
        }
    }

    /// Logs the start of an outage; how long to wait before retrying.
    pub fn failed(&mut self, what: &str, e: &dyn std::fmt::Display) -> Duration {
        if !self.down {
            self.down = true;
            tracing::warn!(error = %e, "{what} failed; {}", self.consequence);
            self.backoff = MIN_BACKOFF;
        } else {
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        self.backoff
    }

    /// Logs the end of an outage, if one was on.
    pub fn ok(&mut self, what: &str) {
        if self.down {
            tracing::info!("{what}: the server answers again");
        }
        self.down = false;
    }
}

/// Sleeps `d` in short steps; false if asked to stop meanwhile.
/// Joins `t` if it ends within `grace`; otherwise leaves it to end on its
/// own (a long poll cannot be interrupted, and ends when its request does).
pub fn join_within(t: std::thread::JoinHandle<()>, grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    while !t.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if t.is_finished() {
        let _ = t.join();
    }
}

pub fn sleep_unless_stopped(stop: &AtomicBool, d: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !left.is_zero() {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
    !stop.load(Ordering::Relaxed)
}

/// How often the snapshot is refreshed while nothing changes.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);

/// Writes what the host runs now to the snapshot; skipped (the old one
/// stays) if the worker does not answer.
fn save_snapshot(dir: &Path, reconciler: &Reconciler) {
    let Ok(mappings) = reconciler.worker().known_mappings() else {
        return;
    };
    let snap = Snapshot {
        enis: reconciler.installed().cloned().collect(),
        mappings,
    };
    if let Err(e) = snapshot::save(dir, &snap) {
        tracing::warn!(error = %e, "could not save the snapshot");
    }
}

/// Installs the last snapshot, if any; true if one was installed.
fn restore_snapshot(dir: &Path, reconciler: &mut Reconciler) -> bool {
    let snap = match snapshot::load(dir) {
        Ok(Some(s)) => s,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "snapshot ignored");
            return false;
        }
    };
    // Owners first, so the instances' first packets find them.
    if reconciler.worker().mappings(snap.mappings).is_err() {
        return false;
    }
    let report = reconciler.apply(&HostDelta {
        revision: 0,
        full: true,
        upserts: snap.enis,
        ..HostDelta::default()
    });
    tracing::info!(
        installed = report.installed,
        errors = report.errors.len(),
        "running on the last snapshot until the server answers"
    );
    true
}

/// Registers, then follows the watch until `stop`, applying every delta;
/// sets `synced` once the server's state has been applied.
///
/// With `snapshot_dir`, the last snapshot there is installed before the
/// server is first asked, and refreshed as the state changes (and on
/// exit), so a restarted agent keeps its instances working while the
/// server is away.
pub fn watch_loop(
    client: &Client,
    reg: &HostRegistration,
    reconciler: &mut Reconciler,
    stop: &AtomicBool,
    synced: &AtomicBool,
    snapshot_dir: Option<&Path>,
) {
    if let Some(dir) = snapshot_dir {
        restore_snapshot(dir, reconciler);
    }
    let mut outage = Outage::new(AGENT_CONSEQUENCE);
    let mut since = 0;
    let mut registered = false;
    let mut saved = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if !registered {
            match client.register(reg) {
                Ok(_) => {
                    registered = true;
                    outage.ok("register");
                }
                Err(e) => {
                    let wait = outage.failed("register", &e);
                    if !sleep_unless_stopped(stop, wait) {
                        break;
                    }
                    continue;
                }
            }
        }
        match client.watch(&reg.host_id, since, WATCH_WAIT_MS) {
            Ok(delta) => {
                outage.ok("watch");
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let report = reconciler.apply(&delta);
                if report.installed + report.removed > 0 || !report.errors.is_empty() {
                    tracing::info!(
                        revision = delta.revision,
                        full = delta.full,
                        installed = report.installed,
                        removed = report.removed,
                        errors = report.errors.len(),
                        "applied host delta"
                    );
                }
                if delta.full {
                    // A full state carries no invalidations: owners that
                    // changed while we were away (on a snapshot, or beyond
                    // the server's log) would stay stale, so ask again for
                    // all of them, still forwarding on the old answers.
                    let _ = reconciler.worker().refresh_mappings();
                }
                since = delta.revision;
                synced.store(true, Ordering::Relaxed);
                let changed = report.installed + report.removed > 0;
                if let Some(dir) = snapshot_dir
                    && (changed || saved.elapsed() >= SNAPSHOT_EVERY)
                {
                    save_snapshot(dir, reconciler);
                    saved = Instant::now();
                }
            }
            Err(e) => {
                let wait = outage.failed("watch", &e);
                // The server may have restarted and forgotten us.
                registered = false;
                if !sleep_unless_stopped(stop, wait) {
                    break;
                }
            }
        }
    }
    if let Some(dir) = snapshot_dir {
        save_snapshot(dir, reconciler);
    }
}

/// Answers the worker's mapping questions until `stop`: coalesces what has
/// queued up, asks the server, feeds the answers back. A failed lookup is
/// not retried here: the cache asks again after its retry interval.
pub fn lookup_loop(
    client: &Client,
    rx: &Receiver<Vec<MappingKey>>,
    worker: &WorkerClient,
    stop: &Arc<AtomicBool>,
) {
    lookup_loop_with(rx, worker, stop, |keys| client.mappings(keys));
}

/// [`lookup_loop`] over any resolver (tests answer from a table).
pub fn lookup_loop_with(
    rx: &Receiver<Vec<MappingKey>>,
    worker: &WorkerClient,
    stop: &AtomicBool,
    mut resolve: impl FnMut(&[MappingKey]) -> Result<Vec<MappingAnswer>, ClientError>,
) {
    let mut outage = Outage::new(AGENT_CONSEQUENCE);
    while !stop.load(Ordering::Relaxed) {
        let mut keys = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(k) => k,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        while let Ok(more) = rx.try_recv() {
            keys.extend(more);
        }
        keys.sort_unstable_by_key(|k| (k.vni, k.ip));
        keys.dedup();
        for chunk in keys.chunks(MAPPING_BATCH) {
            match resolve(chunk) {
                Ok(answers) => {
                    outage.ok("mapping lookup");
                    if worker.mappings(answers).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    outage.failed("mapping lookup", &e);
                }
            }
        }
    }
}

/// How often the health report is sent when nothing changed: the server
/// shows a host's instances impaired when it hears nothing for a while
/// (its `HOST_SILENT_AFTER`), so this is the heartbeat.
pub const HEALTH_EVERY: Duration = Duration::from_secs(10);

/// Sends `health` to the server until `stop`: at once when a summary
/// changes, and every [`HEALTH_EVERY`] anyway.
pub fn health_loop(client: &Client, host_id: &str, health: &Health, stop: &AtomicBool) {
    health_loop_with(health, host_id, stop, HEALTH_EVERY, |r| client.health(r));
}

/// [`health_loop`] over any sender (tests record what is sent).
pub fn health_loop_with(
    health: &Health,
    host_id: &str,
    stop: &AtomicBool,
    every: Duration,
    mut send: impl FnMut(&HealthReport) -> Result<(), ClientError>,
) {
    let mut outage = Outage::new(AGENT_CONSEQUENCE);
    let mut sent: Option<u64> = None;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let version = health.version();
        if sent != Some(version) || Instant::now() >= next {
            let (version, report) = health.report(host_id);
            match send(&report) {
                Ok(()) => {
                    outage.ok("health report");
                    sent = Some(version);
                    next = Instant::now() + every;
                }
                Err(e) => {
                    let wait = outage.failed("health report", &e);
                    next = Instant::now() + wait;
                    sent = Some(version);
                    if !sleep_unless_stopped(stop, wait) {
                        break;
                    }
                    continue;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
