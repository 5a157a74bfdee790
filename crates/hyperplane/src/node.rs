//! A hyperplane node (`openvpc hyperplane`): its packet worker
//! ([`crate::io`]), its conversation with the region's server over the
//! hyperplane API (register every [`HEARTBEAT_MS`] with the gateways it
//! serves, long-poll its assignments), its state directory (`ready` once
//! it serves, `status.json` every second) and its `/metrics`. Start it,
//! stop it.
//!
//! When the server is away the node keeps translating with the
//! assignments it has; the loops log the outage once, retry with backoff,
//! and resume the watch from the last revision.

use core::net::{IpAddr, SocketAddr};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvpc_agent::control::{ClientError, Outage, sleep_unless_stopped};
use openvpc_agent::flow_log;
use openvpc_model::hyperplane::{HyperplaneDelta, NodeRecord, NodeRegistration, path};
use openvpc_model::node::HEARTBEAT_MS;

use crate::io::{self, IoClient, IoError, IoHandle, Snapshot};
use crate::nat::NatDrop;
use crate::nlb::NlbDrop;
use crate::serve::{NodeDrop, ServeConfig};

/// The file in the state directory that says the node serves (registered,
/// its assignments applied); the lab waits for it.
pub const READY_FILE: &str = "ready";
/// The node's figures, rewritten every [`STATUS_EVERY`].
pub const STATUS_FILE: &str = "status.json";
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How long the server may hold a watch open.
pub const WATCH_WAIT_MS: u64 = 25_000;
/// Registrations give up after this: a heartbeat later than the server's
/// TTL is no heartbeat anyway.
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `stop` waits for a watch that is still open.
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(2);
/// What the node does while the server is away.
const CONSEQUENCE: &str = "the node keeps translating with its current assignments and retries";

/// What a node needs to run.
#[derive(Debug, Clone)]
pub struct HyperplaneNodeConfig {
    pub server_url: String,
    /// The agent token.
    pub token: String,
    pub node_id: String,
    /// Where hosts, edges and the other nodes reach it (ports 6081, 6082).
    pub underlay_ip: IpAddr,
    /// The namespace of `underlay_ip`, if not ours (the lab's nodes).
    pub netns: Option<String>,
    pub state_dir: PathBuf,
    /// Where `/metrics` is served (`None`: not served).
    pub metrics: Option<SocketAddr>,
    /// The NAT's knobs (idle timeout and port range shrink for tests).
    pub serve: ServeConfig,
}

impl HyperplaneNodeConfig {
    pub fn new(
        server_url: &str,
        token: &str,
        node_id: &str,
        underlay_ip: IpAddr,
        state_dir: PathBuf,
    ) -> Self {
        let router_mac = openvpc_dataplane::RouterConfig::new(underlay_ip).router_mac;
        HyperplaneNodeConfig {
            server_url: server_url.to_owned(),
            token: token.to_owned(),
            node_id: node_id.to_owned(),
            underlay_ip,
            netns: None,
            state_dir,
            metrics: Some(crate::metrics::default_addr(underlay_ip)),
            serve: ServeConfig::new(node_id, router_mac),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not serve /metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start a hyperplane thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What the control loops know.
#[derive(Debug, Default)]
struct ControlState {
    registered: AtomicBool,
    synced: AtomicBool,
    revision: AtomicU64,
}

/// A node's status file.
pub fn status_json(
    node_id: &str,
    registered: bool,
    synced: bool,
    revision: u64,
    s: &Snapshot,
    flow_logs: &flow_log::FlowLogCounters,
) -> serde_json::Value {
    let gateways: Vec<serde_json::Value> = s
        .gateways
        .iter()
        .map(|g| {
            let c = &g.counters;
            let drops: serde_json::Map<String, serde_json::Value> = NatDrop::ALL
                .iter()
                .map(|d| (d.name().to_owned(), g.drop_count(*d).into()))
                .collect();
            serde_json::json!({
                "nat_gateway_id": g.gateway_id,
                "vni": g.vni,
                "place": g.place,
                "nodes": g.nodes,
                "serves_places": g.serves,
                "active_connection_count": g.active,
                "replicas": g.replicas,
                "connection_attempt_count": c.connection_attempts,
                "connection_established_count": c.connections_established,
                "error_port_allocation": g.drop_count(NatDrop::ErrorPortAllocation),
                "idle_timeout_count": c.idle_timeouts,
                "resets_sent": c.resets_sent,
                "packets_drop_count": g.packets_dropped(),
                "bytes_in_from_source": c.bytes_in_from_source,
                "bytes_out_to_destination": c.bytes_out_to_destination,
                "bytes_in_from_destination": c.bytes_in_from_destination,
                "bytes_out_to_source": c.bytes_out_to_source,
                "packets_in_from_source": c.packets_in_from_source,
                "packets_out_to_destination": c.packets_out_to_destination,
                "packets_in_from_destination": c.packets_in_from_destination,
                "packets_out_to_source": c.packets_out_to_source,
                "flow_log_skipped": g.flow_counts_skipped,
                "drops": drops,
            })
        })
        .collect();
    let load_balancers: Vec<serde_json::Value> = s
        .balancers
        .iter()
        .map(|b| {
            let drops: serde_json::Map<String, serde_json::Value> = NlbDrop::ALL
                .iter()
                .map(|d| (d.name().to_owned(), b.drops[*d as usize].into()))
                .collect();
            let groups: Vec<serde_json::Value> = b
                .groups
                .iter()
                .map(|(id, healthy, unhealthy)| {
                    serde_json::json!({
                        "target_group_id": id,
                        "healthy_host_count": healthy,
                        "unhealthy_host_count": unhealthy,
                    })
                })
                .collect();
            serde_json::json!({
                "load_balancer_id": b.id,
                "name": b.name,
                "vni": b.vni,
                "place": b.place,
                "nodes": b.nodes,
                "serves_places": b.serves,
                "active_flow_count": b.active,
                "replicas": b.replicas,
                "new_flow_count": b.counters.new_flows,
                "processed_bytes": b.counters.processed_bytes,
                "tcp_target_reset_count": b.counters.tcp_target_resets,
                "resets_sent": b.counters.resets_sent,
                "tuples_taken_over": b.counters.tuples_taken_over,
                "packets_drop_count": b.drops.iter().sum::<u64>() + b.node_dropped,
                "health_probes": b.probes.iter().map(|p| p.started).sum::<u64>(),
                "flow_log_skipped": b.flow_counts_skipped,
                "target_groups": groups,
                "drops": drops,
            })
        })
        .collect();
    let node_drops: serde_json::Map<String, serde_json::Value> = NodeDrop::ALL
        .iter()
        .zip(s.node_drops)
        .map(|(d, v)| (d.name().to_owned(), v.into()))
        .collect();
    let io = &s.io;
    let n = &s.node;
    serde_json::json!({
        "node_id": node_id,
        "registered": registered,
        "synced": synced,
        "revision": revision,
        "gateways": gateways,
        "load_balancers": load_balancers,
        "neighbors": s.neighbors,
        "io": {
            "geneve_rx": io.geneve_rx,
            "geneve_rx_bytes": io.geneve_rx_bytes,
            "geneve_tx": io.geneve_tx,
            "geneve_tx_bytes": io.geneve_tx_bytes,
            "peer_rx": io.peer_rx,
            "peer_tx": io.peer_tx,
            "send_errors": io.send_errors,
            "ack_timeouts": io.ack_timeouts,
            "mapping_lookups": io.lookups,
            "mapping_lookup_errors": io.lookup_errors,
            "held_overflow": io.held_overflow,
            "acks": io.acks,
            "ack_wait_us_max": io.ack_wait_us_max,
            "ack_wait_us_mean": io.ack_wait_us_sum.checked_div(io.acks).unwrap_or(0),
        },
        "replication": {
            "forwarded": n.forwarded,
            "records_sent": n.records_sent,
            "records_received": n.records_received,
            "takeovers": n.takeovers,
            "handed_back": n.handed_back,
            "adopted": n.adopted,
        },
        "flow_logs": {
            "records_handed_out": io.flow_log_records,
            "records_dropped_by_worker": io.flow_log_records_dropped,
            "sent": flow_logs.sent.load(Ordering::Relaxed),
            "dropped_unsent": flow_logs.dropped_unsent.load(Ordering::Relaxed),
            "skipped": flow_logs.skipped.load(Ordering::Relaxed),
            "not_logged": flow_logs.not_logged.load(Ordering::Relaxed),
        },
        "drops": node_drops,
    })
}

/// Everything the threads share.
#[derive(Debug)]
struct Shared {
    node_id: String,
    state_dir: PathBuf,
    state: ControlState,
    io: IoClient,
    flow_logs: Arc<flow_log::FlowLogCounters>,
}

impl Shared {
    fn ready(&self) -> bool {
        self.state.registered.load(Ordering::Relaxed) && self.state.synced.load(Ordering::Relaxed)
    }

    fn status(&self) -> serde_json::Value {
        status_json(
            &self.node_id,
            self.state.registered.load(Ordering::Relaxed),
            self.state.synced.load(Ordering::Relaxed),
            self.state.revision.load(Ordering::Relaxed),
            &self.io.snapshot(),
            &self.flow_logs,
        )
    }
}

fn write_status(dir: &Path, mut json: serde_json::Value) -> std::io::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    json["unix_time"] = now.as_secs().into();
    let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
    std::fs::rename(&tmp, dir.join(STATUS_FILE))
}

fn status_loop(shared: &Shared, stop: &AtomicBool) {
    let mut next = Instant::now();
    let mut ready_written = false;
    let mut failed = false;
    while !stop.load(Ordering::Relaxed) {
        if !ready_written && shared.ready() {
            match std::fs::write(shared.state_dir.join(READY_FILE), b"") {
                Ok(()) => {
                    ready_written = true;
                    tracing::info!(node = %shared.node_id, "hyperplane node serving");
                }
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!(error = %e, "could not write the ready file");
                }
                Err(_) => {}
            }
        }
        if Instant::now() >= next {
            next = Instant::now() + STATUS_EVERY;
            match write_status(&shared.state_dir, shared.status()) {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!(error = %e, "could not write the status file");
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The hyperplane API over the agent API's client.
#[derive(Debug, Clone)]
struct Client(openvpc_agent::control::Client);

impl Client {
    fn register(&self, reg: &NodeRegistration) -> Result<NodeRecord, ClientError> {
        self.0.post("register", path::REGISTER, reg)
    }

    fn deregister(&self, reg: &NodeRegistration) -> Result<(), ClientError> {
        let _: serde_json::Value = self.0.post("deregister", path::DEREGISTER, reg)?;
        Ok(())
    }

    fn watch(&self, node_id: &str, since: u64) -> Result<HyperplaneDelta, ClientError> {
        let query = [
            ("node", node_id.to_owned()),
            ("since", since.to_string()),
            ("wait_ms", WATCH_WAIT_MS.to_string()),
        ];
        self.0.long_poll("watch", path::WATCH, &query, 64 << 20)
    }
}

/// Registers at once and every [`HEARTBEAT_MS`], saying which gateways the
/// worker serves, until `stop`; then deregisters.
fn heartbeat_loop(client: &Client, cfg: &HyperplaneNodeConfig, shared: &Shared, stop: &AtomicBool) {
    let every = Duration::from_millis(HEARTBEAT_MS);
    let mut outage = Outage::new(CONSEQUENCE);
    let mut reg = NodeRegistration {
        node_id: cfg.node_id.clone(),
        underlay_ip: cfg.underlay_ip,
        serving: Vec::new(),
        target_health: Vec::new(),
    };
    let mut ever = false;
    while !stop.load(Ordering::Relaxed) {
        // Only once its first assignments are applied does the node say
        // what it serves.
        (reg.serving, reg.target_health) = if shared.state.synced.load(Ordering::Relaxed) {
            let s = shared.io.snapshot();
            (s.serving, s.target_health)
        } else {
            (Vec::new(), Vec::new())
        };
        let wait = match client.register(&reg) {
            Ok(_) => {
                outage.ok("register");
                if !shared.state.registered.swap(true, Ordering::Relaxed) {
                    tracing::info!(node = %cfg.node_id, "registered with the server");
                }
                ever = true;
                every
            }
            Err(e) => {
                shared.state.registered.store(false, Ordering::Relaxed);
                outage.failed("register", &e).min(every)
            }
        };
        if !sleep_unless_stopped(stop, wait) {
            break;
        }
    }
    if ever {
        reg.serving.clear();
        reg.target_health.clear();
        if let Err(e) = client.deregister(&reg) {
            tracing::warn!(error = %e, "could not deregister; the server drops this node when its registration expires");
        }
    }
}

/// Follows the watch once registered, handing each answer's assignments to
/// the worker; a stopped worker ends it.
fn watch_loop(client: &Client, node_id: &str, shared: &Shared, stop: &AtomicBool) {
    while !shared.state.registered.load(Ordering::Relaxed) {
        if !sleep_unless_stopped(stop, Duration::from_millis(50)) {
            return;
        }
    }
    let mut outage = Outage::new(CONSEQUENCE);
    let mut since = 0;
    while !stop.load(Ordering::Relaxed) {
        match client.watch(node_id, since) {
            Ok(delta) => {
                outage.ok("watch");
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let n = delta.assignments.len() + delta.load_balancers.len();
                let assignments = io::Assignments {
                    nat_gateways: delta.assignments,
                    load_balancers: delta.load_balancers,
                };
                if let Err(e) = shared.io.configure(assignments) {
                    tracing::error!(error = %e, "the node's assignments could not be applied; the watch stops");
                    return;
                }
                if since == 0 || delta.revision != since {
                    tracing::info!(
                        revision = delta.revision,
                        gateways = n,
                        "applied assignments"
                    );
                }
                since = delta.revision;
                shared.state.revision.store(since, Ordering::Relaxed);
                shared.state.synced.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                let wait = outage.failed("watch", &e);
                if !sleep_unless_stopped(stop, wait) {
                    break;
                }
            }
        }
    }
}

/// A running node.
#[derive(Debug)]
pub struct HyperplaneNodeHandle {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    io: Option<IoHandle>,
    threads: Vec<JoinHandle<()>>,
    watch: Option<JoinHandle<()>>,
    metrics: Option<SocketAddr>,
}

/// The hyperplane node: start it, stop it.
#[derive(Debug)]
pub struct HyperplaneNode;

impl HyperplaneNode {
    /// Opens the sockets and `/metrics`, registers, follows the watch.
    pub fn start(cfg: HyperplaneNodeConfig) -> Result<HyperplaneNodeHandle, NodeError> {
        let dir_err = |source| NodeError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.state_dir).map_err(dir_err)?;
        match std::fs::remove_file(cfg.state_dir.join(READY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(dir_err(e)),
            _ => {}
        }
        let client = Client(openvpc_agent::control::Client::with_short_timeout(
            &cfg.server_url,
            &cfg.token,
            SHORT_TIMEOUT,
        ));
        // Private gateways' destinations: the agents' mapping service.
        let resolver: io::Resolver = {
            let client = client.clone();
            Box::new(move |keys| client.0.mappings(keys).map_err(|e| e.to_string()))
        };
        // Flow logs on the gateways' ENIs: the agent's thread, fed by the
        // worker.
        let (harvests, harvested) = std::sync::mpsc::sync_channel(flow_log::QUEUE);
        let logged = flow_log::SharedEnis::default();
        let flow_log_counters = Arc::new(flow_log::FlowLogCounters::default());
        let io = io::spawn(
            cfg.underlay_ip,
            cfg.netns.as_deref(),
            cfg.serve.clone(),
            Some(resolver),
            Some(io::FlowLogSink {
                harvests,
                enis: logged.clone(),
            }),
        )?;
        let shared = Arc::new(Shared {
            node_id: cfg.node_id.clone(),
            state_dir: cfg.state_dir.clone(),
            state: ControlState::default(),
            io: io.client(),
            flow_logs: flow_log_counters.clone(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let mut metrics = None;
        if let Some(addr) = cfg.metrics {
            let err = |source| NodeError::Metrics { addr, source };
            let listener = openvpc_agent::netns::in_netns(cfg.netns.as_deref(), || {
                Ok(TcpListener::bind(addr))
            })
            .map_err(IoError::from)?
            .map_err(err)?;
            metrics = listener.local_addr().ok();
            let (client, node_id) = (io.client(), cfg.node_id.clone());
            threads.push(
                crate::metrics::serve(
                    listener,
                    move || crate::metrics::render(&node_id, &client.snapshot()),
                    stop.clone(),
                )
                .map_err(err)?,
            );
        }
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(NodeError::Thread)
        };
        {
            let (shared, stop) = (shared.clone(), stop.clone());
            threads.push(spawn(
                "openvpc-hyperplane-status",
                Box::new(move || status_loop(&shared, &stop)),
            )?);
        }
        {
            let (shared, stop, client, cfg) =
                (shared.clone(), stop.clone(), client.clone(), cfg.clone());
            threads.push(spawn(
                "openvpc-hyperplane-heartbeat",
                Box::new(move || heartbeat_loop(&client, &cfg, &shared, &stop)),
            )?);
        }
        {
            let (stop, client, node_id, counters) = (
                stop.clone(),
                client.clone(),
                cfg.node_id.clone(),
                flow_log_counters.clone(),
            );
            threads.push(spawn(
                "openvpc-hyperplane-flow-logs",
                Box::new(move || {
                    flow_log::flow_log_loop(
                        &client.0, &node_id, &harvested, &logged, &counters, &stop,
                    );
                }),
            )?);
        }
        let watch = {
            let (shared, stop, node_id) = (shared.clone(), stop.clone(), cfg.node_id.clone());
            spawn(
                "openvpc-hyperplane-watch",
                Box::new(move || watch_loop(&client, &node_id, &shared, &stop)),
            )?
        };
        Ok(HyperplaneNodeHandle {
            stop,
            shared,
            io: Some(io),
            threads,
            watch: Some(watch),
            metrics,
        })
    }
}

impl HyperplaneNodeHandle {
    /// Waits until the node serves; false after `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.shared.ready() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The status file's content now.
    pub fn status(&self) -> serde_json::Value {
        self.shared.status()
    }

    /// The worker's figures now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.io.snapshot()
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
    }

    pub fn underlay_addr(&self) -> Option<SocketAddr> {
        self.io.as_ref().map(IoHandle::underlay_addr)
    }

    /// Deregisters, stops every thread, closes the sockets.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(t) = self.watch.take() {
            openvpc_agent::control::join_within(t, CONTROL_STOP_GRACE);
        }
        if let Some(io) = self.io.take() {
            io.stop();
        }
    }
}

impl Drop for HyperplaneNodeHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a node until `should_stop` returns true (checked every 200 ms).
pub fn run(cfg: HyperplaneNodeConfig, should_stop: impl Fn() -> bool) -> Result<(), NodeError> {
    let handle = HyperplaneNode::start(cfg)?;
    while !should_stop() {
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    Ok(())
}
