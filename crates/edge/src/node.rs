//! An edge node: its packet I/O ([`crate::io`]), its control loops
//! ([`crate::control`]: heartbeat and watch) and its state directory
//! (`ready` once it serves, `status.json` every second). Start it, feed
//! it, stop it.
//!
//! Threads: the I/O worker (packets), the heartbeat (register every
//! second, deregister at the end), the watch (deltas → the worker's table,
//! the uplink routes and the BGP announcement), the status writer, the
//! BGP speaker when a peer is configured, and `/metrics` when asked for.

use core::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use openvpc_model::edge::{EdgeDelta, EdgeRegistration};
use openvpc_packet::MacAddr;

use crate::bgp::{Announcer, BgpConfig, BgpError};
use crate::control::{self, Client, ControlState};
use crate::io::{self, IoClient, IoConfig, IoError, IoHandle, IoStatus, Routes, VpnShared};
use crate::translate::EdgeDrop;
use openvpc_model::edge::VpnTunnelReport;
use openvpc_model::host::{MappingAnswer, MappingKey};

/// The file in the state directory that says the node serves: it has
/// registered and applied the region's whole table (the lab waits for it;
/// the same name as `openvpc_lab::READY_FILE`).
pub const READY_FILE: &str = "ready";
/// The file in the state directory with the node's counters, rewritten
/// every [`STATUS_EVERY`].
pub const STATUS_FILE: &str = "status.json";
/// How often the status file is rewritten.
pub const STATUS_EVERY: Duration = Duration::from_secs(1);
/// The default uplink TUN name.
pub const DEFAULT_TUN: &str = "pub0";
/// How long `stop` waits for a watch that is still open; the thread ends
/// on its own when the server answers.
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(2);

/// What an edge node needs to run.
#[derive(Debug, Clone)]
pub struct EdgeNodeConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8773`.
    pub server_url: String,
    /// The agent token, sent in `openvpc_model::host::TOKEN_HEADER`.
    pub token: String,
    /// This node's name in the region (unique).
    pub edge_id: String,
    /// The address hosts send Geneve to; the underlay socket binds it.
    pub underlay_ip: IpAddr,
    /// The network namespace of the underlay address and the uplink TUN
    /// (the lab's edges); `None` for our own (`openvpc up`).
    pub netns: Option<String>,
    /// The uplink TUN's name.
    pub tun_name: String,
    /// Where `ready` and `status.json` are written.
    pub state_dir: PathBuf,
    /// The source MAC of inbound inner frames: the VPC router's.
    pub router_mac: MacAddr,
    /// The upstream router to announce the public pool to, if any.
    pub bgp: Option<BgpConfig>,
    /// Where `/metrics` is served, in `netns` (`None`: not served; see
    /// [`crate::metrics::default_addr`]).
    pub metrics: Option<SocketAddr>,
}

impl EdgeNodeConfig {
    /// A node in our own namespace with the default TUN name and the
    /// dataplane's router MAC.
    pub fn new(
        server_url: &str,
        token: &str,
        edge_id: &str,
        underlay_ip: IpAddr,
        state_dir: PathBuf,
    ) -> Self {
        EdgeNodeConfig {
            server_url: server_url.to_string(),
            token: token.to_string(),
            edge_id: edge_id.to_string(),
            underlay_ip,
            netns: None,
            tun_name: DEFAULT_TUN.to_string(),
            state_dir,
            router_mac: openvpc_dataplane::RouterConfig::new(underlay_ip).router_mac,
            bgp: None,
            metrics: None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum EdgeNodeError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Bgp(#[from] BgpError),
    #[error("the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start an edge thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("could not serve /metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Applies deltas: the worker's table, the uplink routes, the pool.
#[derive(Debug)]
struct Applier {
    io: IoClient,
    edge_id: String,
    routes: Mutex<Routes>,
    pool: Mutex<Vec<Ipv4Net>>,
    state: Arc<ControlState>,
    /// Taken out (and stopped) first when the node stops.
    bgp: Mutex<Option<Announcer>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Applier {
    fn apply(&self, delta: &EdgeDelta) -> Result<(), IoError> {
        let (update, bad) = control::table_update(delta);
        for b in &bad {
            tracing::warn!(revision = delta.revision, "edge table entry skipped: {b}");
        }
        self.state
            .skipped
            .fetch_add(bad.len() as u64, Ordering::Relaxed);
        let changes = update.upserts.len() + update.removals.len();
        let (held, attached) = self.io.apply(update)?;
        self.io
            .vpn(delta.vpn_tunnels.clone(), delta.vgw_routes.clone())?;
        lock(&self.routes).sync(&delta.public_pool);
        *lock(&self.pool) = delta.public_pool.clone();
        // Announced only now that the table is in: traffic the router
        // sends us can be translated. The outside address of each VPN
        // tunnel we serve goes as a /32 too: the router sends the
        // tunnel's packets here and nowhere else.
        if let Some(bgp) = lock(&self.bgp).as_ref() {
            let mut announced = delta.public_pool.clone();
            announced.extend(
                delta
                    .vpn_tunnels
                    .iter()
                    .filter(|t| t.edge_id == self.edge_id)
                    .map(|t| Ipv4Net::from(t.outside_ip)),
            );
            bgp.set_pool(&announced);
        }
        self.state.revision.store(delta.revision, Ordering::Relaxed);
        if changes > 0 || delta.full {
            tracing::info!(
                revision = delta.revision,
                full = delta.full,
                changes,
                held,
                attached_vpcs = attached,
                "applied edge delta"
            );
        }
        if delta.full {
            self.state.synced.store(true, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// What a node reports (the status file's content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub edge_id: String,
    pub registered: bool,
    pub synced: bool,
    pub revision: u64,
    /// Delta entries skipped as malformed since start.
    pub skipped_entries: u64,
    pub public_pool: Vec<Ipv4Net>,
    /// The prefixes routed to the uplink TUN.
    pub routed: Vec<Ipv4Net>,
    pub io: IoStatus,
    /// The BGP session's state, if a peer is configured.
    pub bgp: Option<serde_json::Value>,
    /// The VPN gateway role's tunnels and figures.
    pub vpn: VpnShared,
}

impl NodeStatus {
    pub fn to_json(&self) -> serde_json::Value {
        let c = &self.io.io;
        let drops: serde_json::Map<String, serde_json::Value> = EdgeDrop::ALL
            .iter()
            .map(|r| (r.name().to_string(), self.io.drops(*r).into()))
            .collect();
        let strings = |v: &[Ipv4Net]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        serde_json::json!({
            "edge_id": self.edge_id,
            "registered": self.registered,
            "synced": self.synced,
            "revision": self.revision,
            "skipped_entries": self.skipped_entries,
            "table": self.io.table,
            "attached_vpcs": self.io.attached_vpcs,
            "public_pool": strings(&self.public_pool),
            "routed": strings(&self.routed),
            "translated": { "outbound": self.io.outbound, "inbound": self.io.inbound },
            "io": {
                "underlay_rx": c.underlay_rx,
                "underlay_rx_bytes": c.underlay_rx_bytes,
                "uplink_tx": c.uplink_tx,
                "uplink_tx_bytes": c.uplink_tx_bytes,
                "uplink_write_errors": c.uplink_write_errors,
                "uplink_rx": c.uplink_rx,
                "uplink_rx_bytes": c.uplink_rx_bytes,
                "underlay_tx": c.underlay_tx,
                "underlay_tx_bytes": c.underlay_tx_bytes,
                "underlay_send_errors": c.underlay_send_errors,
                "uplink_coalesced_writes": c.uplink_coalesced_writes,
                "uplink_rx_errors": c.uplink_rx_errors,
            },
            "drops": drops,
            "bgp": self.bgp,
            "vpn": vpn_json(&self.vpn),
        })
    }
}

/// The VPN gateway role in the status file: each tunnel (IPsec, BGP,
/// routes learned, counters) and the gateway's counters.
fn vpn_json(v: &VpnShared) -> serde_json::Value {
    let tunnels: Vec<serde_json::Value> = v
        .tunnels
        .iter()
        .map(|t| {
            let r = &t.report;
            let drops: serde_json::Map<String, serde_json::Value> =
                openvpc_vpn::tunnel::TunnelDrop::ALL
                    .iter()
                    .map(|d| (d.name().to_string(), t.counters.drops[*d as usize].into()))
                    .collect();
            serde_json::json!({
                "vpn_connection_id": r.vpn_connection_id,
                "outside_ip": r.outside_ip.to_string(),
                "ipsec_up": r.ipsec_up,
                "bgp_up": r.bgp_up,
                "bgp_state": t.bgp_state.map(|s| format!("{s:?}")),
                "status_message": r.status_message,
                "routes": r.routes.iter().map(|l| l.prefix.to_string()).collect::<Vec<_>>(),
                "packets_in": t.counters.packets_in,
                "packets_out": t.counters.packets_out,
                "bytes_in": t.counters.bytes_in,
                "bytes_out": t.counters.bytes_out,
                "drops": drops,
            })
        })
        .collect();
    let drops: serde_json::Map<String, serde_json::Value> = v
        .drops
        .iter()
        .map(|(name, n)| ((*name).to_string(), (*n).into()))
        .collect();
    serde_json::json!({
        "tunnels": tunnels,
        "to_vpc": v.to_vpc,
        "to_tunnel": v.to_tunnel,
        "handed_on": v.handed_on,
        "drops": drops,
    })
}

/// Everything the status thread and the handle share.
#[derive(Debug)]
struct Shared {
    edge_id: String,
    state_dir: PathBuf,
    state: Arc<ControlState>,
    applier: Applier,
    /// Ready needs a registration (false for a node without control loops).
    needs_registration: bool,
}

impl Shared {
    fn status(&self, io: &IoStatus, vpn: VpnShared) -> NodeStatus {
        NodeStatus {
            edge_id: self.edge_id.clone(),
            registered: self.state.registered.load(Ordering::Relaxed),
            synced: self.state.synced.load(Ordering::Relaxed),
            revision: self.state.revision.load(Ordering::Relaxed),
            skipped_entries: self.state.skipped.load(Ordering::Relaxed),
            public_pool: lock(&self.applier.pool).clone(),
            routed: lock(&self.applier.routes).installed().copied().collect(),
            io: *io,
            bgp: lock(&self.applier.bgp).as_ref().map(Announcer::to_json),
            vpn,
        }
    }

    fn ready(&self) -> bool {
        self.state.synced.load(Ordering::Relaxed)
            && (!self.needs_registration || self.state.registered.load(Ordering::Relaxed))
    }
}

/// Writes `status` to `dir/`[`STATUS_FILE`], replaced whole so a reader
/// never sees half.
fn write_status(dir: &Path, status: &NodeStatus) -> std::io::Result<()> {
    let mut json = status.to_json();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    json["unix_time"] = now.as_secs().into();
    let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
    std::fs::rename(&tmp, dir.join(STATUS_FILE))
}

/// The status writer: `ready` once the node serves, `status.json` every
/// [`STATUS_EVERY`].
fn status_loop(shared: &Shared, published: &dyn Fn() -> (IoStatus, VpnShared), stop: &AtomicBool) {
    let mut next = Instant::now();
    let mut ready_written = false;
    let mut failed = false;
    while !stop.load(Ordering::Relaxed) {
        // Our address of a new BGP session may differ from the last one.
        if let Some(bgp) = lock(&shared.applier.bgp).as_ref() {
            bgp.refresh();
        }
        if !ready_written && shared.ready() {
            let path = shared.state_dir.join(READY_FILE);
            match std::fs::write(&path, b"") {
                Ok(()) => {
                    ready_written = true;
                    tracing::info!(edge = %shared.edge_id, "edge serving");
                }
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!(error = %e, path = %path.display(), "could not write the ready file");
                }
                Err(_) => {}
            }
        }
        if Instant::now() >= next {
            next = Instant::now() + STATUS_EVERY;
            let (io, vpn) = published();
            match write_status(&shared.state_dir, &shared.status(&io, vpn)) {
                Ok(()) => failed = false,
                Err(e) if !failed => {
                    failed = true;
                    tracing::warn!(error = %e, dir = %shared.state_dir.display(), "could not write the status file");
                }
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running edge node.
#[derive(Debug)]
pub struct EdgeNodeHandle {
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    io: Option<Arc<IoHandle>>,
    heartbeat: Option<JoinHandle<()>>,
    watch: Option<JoinHandle<()>>,
    status: Option<JoinHandle<()>>,
    vpn: Option<JoinHandle<()>>,
    /// The `/metrics` responder and where it listens.
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

/// The VPN loop's view of the worker.
struct WorkerVpn(Arc<IoHandle>);

impl control::VpnWorker for WorkerVpn {
    fn take(&self) -> (u64, Vec<VpnTunnelReport>, Vec<MappingKey>) {
        let shared = self.0.vpn();
        let mut shared = lock(&shared);
        let wanted = std::mem::take(&mut shared.wanted);
        (shared.reports_seq, shared.reports.clone(), wanted)
    }

    fn answer(&self, answers: Vec<MappingAnswer>) -> Result<(), String> {
        self.0.client().mappings(answers).map_err(|e| e.to_string())
    }
}

/// The edge node: start it, feed it, stop it.
#[derive(Debug)]
pub struct EdgeNode;

impl EdgeNode {
    /// Opens the I/O, then registers with the server and follows its
    /// watch. The node is ready (see [`EdgeNodeHandle::wait_ready`]) once
    /// registered with the region's whole table applied.
    pub fn start(cfg: EdgeNodeConfig) -> Result<EdgeNodeHandle, EdgeNodeError> {
        let mut handle = Self::start_inner(&cfg, true)?;
        let client = Client::new(&cfg.server_url, &cfg.token);
        let reg = EdgeRegistration {
            node_id: cfg.edge_id.clone(),
            underlay_ip: cfg.underlay_ip,
            serving: Vec::new(),
            target_health: Vec::new(),
        };
        let heartbeat = {
            let (client, state, stop) = (
                client.clone(),
                handle.shared.state.clone(),
                handle.stop.clone(),
            );
            std::thread::Builder::new()
                .name("openvpc-edge-heartbeat".into())
                .spawn(move || control::heartbeat_loop(&client, &reg, &state, &stop))
                .map_err(EdgeNodeError::Thread)?
        };
        handle.heartbeat = Some(heartbeat);
        let watch = {
            let (shared, stop) = (handle.shared.clone(), handle.stop.clone());
            let edge_id = cfg.edge_id.clone();
            std::thread::Builder::new()
                .name("openvpc-edge-watch".into())
                .spawn(move || {
                    control::watch_loop(&client, &edge_id, &shared.state, &stop, |d| {
                        shared.applier.apply(d)
                    })
                })
                .map_err(EdgeNodeError::Thread)?
        };
        handle.watch = Some(watch);
        let vpn = {
            let stop = handle.stop.clone();
            let edge_id = cfg.edge_id.clone();
            let client = Client::new(&cfg.server_url, &cfg.token);
            let worker = WorkerVpn(
                handle
                    .io
                    .clone()
                    .ok_or(EdgeNodeError::Io(IoError::Stopped))?,
            );
            std::thread::Builder::new()
                .name("openvpc-edge-vpn".into())
                .spawn(move || control::vpn_loop(&client, &edge_id, &worker, &stop))
                .map_err(EdgeNodeError::Thread)?
        };
        handle.vpn = Some(vpn);
        Ok(handle)
    }

    /// Opens the I/O and the state directory without talking to a server:
    /// the table comes only from [`EdgeNodeHandle::apply`], the same path
    /// the watch feeds. For tests and static setups; ready once a full
    /// table is applied.
    pub fn start_static(cfg: EdgeNodeConfig) -> Result<EdgeNodeHandle, EdgeNodeError> {
        Self::start_inner(&cfg, false)
    }

    fn start_inner(
        cfg: &EdgeNodeConfig,
        needs_registration: bool,
    ) -> Result<EdgeNodeHandle, EdgeNodeError> {
        let dir_err = |source| EdgeNodeError::StateDir {
            path: cfg.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&cfg.state_dir).map_err(dir_err)?;
        // A ready file from an earlier run would announce us too early.
        match std::fs::remove_file(cfg.state_dir.join(READY_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(dir_err(e)),
            _ => {}
        }
        // Bound first: an address in use fails before anything runs.
        let metrics = cfg
            .metrics
            .map(|addr| bind_metrics(cfg.netns.as_deref(), addr))
            .transpose()?;
        let io = Arc::new(io::spawn(&IoConfig {
            underlay_ip: cfg.underlay_ip,
            netns: cfg.netns.clone(),
            tun_name: cfg.tun_name.clone(),
            router_mac: cfg.router_mac,
            edge_id: cfg.edge_id.clone(),
        })?);
        let bgp = match cfg.bgp {
            Some(b) => Some(Announcer::start(b, cfg.netns.clone(), cfg.underlay_ip)?),
            None => None,
        };
        let state = Arc::new(ControlState::default());
        let shared = Arc::new(Shared {
            edge_id: cfg.edge_id.clone(),
            state_dir: cfg.state_dir.clone(),
            state: state.clone(),
            applier: Applier {
                io: io.client(),
                edge_id: cfg.edge_id.clone(),
                routes: Mutex::new(Routes::new(cfg.netns.clone(), cfg.tun_name.clone())),
                pool: Mutex::new(Vec::new()),
                state,
                bgp: Mutex::new(bgp),
            },
            needs_registration,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let status = {
            let (shared, stop, io) = (shared.clone(), stop.clone(), io.clone());
            std::thread::Builder::new()
                .name("openvpc-edge-status".into())
                .spawn(move || {
                    status_loop(
                        &shared,
                        &|| {
                            let vpn = io.vpn();
                            let vpn = lock(&vpn).clone();
                            (io.status(), vpn)
                        },
                        &stop,
                    )
                })
                .map_err(EdgeNodeError::Thread)?
        };
        let mut handle = EdgeNodeHandle {
            stop,
            shared,
            io: Some(io),
            heartbeat: None,
            watch: None,
            status: Some(status),
            vpn: None,
            metrics: None,
        };
        // On an error the handle's drop stops what has started.
        if let Some((addr, listener)) = metrics {
            handle.metrics = Some(serve_metrics(&handle, addr, listener)?);
        }
        Ok(handle)
    }
}

/// Binds `/metrics`' `addr` in `netns`; answers the bound address (port
/// 0 picks one) and the listener.
fn bind_metrics(
    netns: Option<&str>,
    addr: SocketAddr,
) -> Result<(SocketAddr, std::net::TcpListener), EdgeNodeError> {
    let err = |source| EdgeNodeError::Metrics { addr, source };
    let listener = openvpc_agent::netns::in_netns(netns, || Ok(std::net::TcpListener::bind(addr)))
        .map_err(IoError::from)?
        .map_err(err)?;
    Ok((listener.local_addr().map_err(err)?, listener))
}

/// Serves the node's status as `/metrics` on `listener` (the hyperplane
/// node's responder) until the node stops.
fn serve_metrics(
    handle: &EdgeNodeHandle,
    addr: SocketAddr,
    listener: std::net::TcpListener,
) -> Result<(SocketAddr, JoinHandle<()>), EdgeNodeError> {
    let shared = handle.shared.clone();
    let io = handle
        .io
        .clone()
        .ok_or(EdgeNodeError::Io(IoError::Stopped))?;
    let thread = openvpc_hyperplane::metrics::serve_named(
        "openvpc-edge-metrics",
        listener,
        move || {
            let vpn = lock(&io.vpn()).clone();
            crate::metrics::render(&shared.status(&io.status(), vpn))
        },
        handle.stop.clone(),
    )
    .map_err(|source| EdgeNodeError::Metrics { addr, source })?;
    Ok((addr, thread))
}

impl EdgeNodeHandle {
    /// Applies a delta as if the watch had answered it: the table, the
    /// uplink routes for the public pool, readiness on a full table.
    /// Returns once the worker translates with it.
    pub fn apply(&self, delta: &EdgeDelta) -> Result<(), IoError> {
        self.shared.applier.apply(delta)
    }

    /// Waits until the node serves (see [`READY_FILE`]); false if that
    /// took longer than `timeout`.
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

    /// The node's counters and state now.
    pub fn status(&self) -> NodeStatus {
        let io = self.io.as_ref().map(|io| io.status()).unwrap_or_default();
        let vpn = self
            .io
            .as_ref()
            .map(|io| lock(&io.vpn()).clone())
            .unwrap_or_default();
        self.shared.status(&io, vpn)
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(addr, _)| *addr)
    }

    /// The bound underlay address (port 6081).
    pub fn underlay_addr(&self) -> Option<SocketAddr> {
        self.io.as_ref().map(|io| io.underlay_addr())
    }

    /// Deregisters (a clean stop), stops every thread and closes the TUN,
    /// which takes the routes into it along.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The router withdraws our path first, so it stops sending us
        // traffic before we stop translating it.
        let bgp = lock(&self.shared.applier.bgp).take();
        if let Some(bgp) = bgp {
            bgp.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        // The heartbeat deregisters on its way out, bounded by its timeout.
        for t in [
            self.heartbeat.take(),
            self.status.take(),
            self.vpn.take(),
            self.metrics.take().map(|(_, t)| t),
        ]
        .into_iter()
        .flatten()
        {
            let _ = t.join();
        }
        if let Some(t) = self.watch.take() {
            openvpc_agent::control::join_within(t, CONTROL_STOP_GRACE);
        }
        // Every other holder (the status thread) has ended; a watch still
        // open holds only the client, whose sends then fail.
        if let Some(io) = self.io.take().and_then(|io| Arc::try_unwrap(io).ok()) {
            io.stop();
        }
    }
}

impl Drop for EdgeNodeHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a node until `should_stop` returns true (checked every 200 ms).
pub fn run(cfg: EdgeNodeConfig, should_stop: impl Fn() -> bool) -> Result<(), EdgeNodeError> {
    let handle = EdgeNode::start(cfg)?;
    while !should_stop() {
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The status file carries every counter and each drop reason by name.
    #[test]
    fn the_status_names_every_drop_reason() {
        let mut io = IoStatus::default();
        io.drops[EdgeDrop::UnknownPublicIp as usize] = 3;
        io.table = 2;
        let s = NodeStatus {
            edge_id: "edge-1".into(),
            registered: true,
            synced: false,
            revision: 7,
            skipped_entries: 0,
            public_pool: vec!["198.51.100.0/24".parse().unwrap()],
            routed: vec![],
            io,
            bgp: None,
            vpn: VpnShared::default(),
        };
        let json = s.to_json();
        assert_eq!(json["drops"]["unknown_public_ip"], 3);
        assert_eq!(
            json["drops"].as_object().unwrap().len(),
            EdgeDrop::ALL.len()
        );
        assert_eq!(json["table"], 2);
        assert_eq!(json["public_pool"][0], "198.51.100.0/24");
        assert_eq!(json["io"]["underlay_rx"], 0);
    }
}
