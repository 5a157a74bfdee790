//! The host agent's I/O shell (DESIGN.md, "The packet path" and "Mapping
//! service"): instances as network namespaces with TAP devices, the Geneve
//! underlay over UDP, one worker thread driving the sans-IO router, and the
//! client side of the agent API (register, watch, mapping lookups).
//!
//! Policy and packet logic live in `openvpc-dataplane`; this crate only
//! moves bytes and state to and from it.
//!
//! Threads: the worker (packets), the control loop (watch → reconciler:
//! namespaces, TAPs, DHCP clients), the lookup loop (mapping batches) and
//! the health loop (each instance's setup health, to the server).
//!
//! Before an agent starts, [`tools`] says which programs instances need
//! and which are missing.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod batch_io;
pub mod control;
pub mod flow_log;
pub mod health;
pub use openvpc_dataplane::install;
pub mod instance;
pub mod mapping;
pub mod netns;
pub mod reconcile;
pub mod snapshot;
pub mod tools;
pub mod worker;

use core::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use openvpc_dataplane::RouterConfig;
use openvpc_model::host::HostRegistration;

pub use instance::remove_instances;
pub use worker::{WorkerClient, WorkerConfig, WorkerHandle, WorkerStatus};

/// What an agent needs to run.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub server_url: String,
    /// The shared agent token, sent in [`openvpc_model::host::TOKEN_HEADER`].
    pub token: String,
    pub host_id: String,
    pub availability_zone: String,
    /// The address other hosts send this host's Geneve traffic to; the
    /// underlay socket binds it.
    pub underlay_ip: IpAddr,
    /// The network namespace the underlay address lives in (the lab's
    /// hosts); `None` for the agent's own.
    pub underlay_netns: Option<String>,
    /// Where the agent keeps the list of instance namespaces it owns.
    pub state_dir: PathBuf,
    /// The CPU the dataplane thread is pinned to; `None` lets it float.
    pub worker_cpu: Option<usize>,
    /// How long the dataplane thread polls before it sleeps
    /// ([`worker::DEFAULT_BUSY_POLL`] unless tuned).
    pub worker_busy_poll: Duration,
    /// The DHCP client instances run: [`netns::DHCP_CLIENT`], or (tests'
    /// fault injection, see [`DHCP_CLIENT_ENV`]) a program that fails.
    pub dhcp_client: String,
    /// The region's upstream resolver (`IP:PORT`), which the VPC
    /// resolvers forward the names they do not hold to; `None`: those are
    /// answered SERVFAIL, as a resolver that cannot reach its upstream
    /// answers.
    pub dns_upstream: Option<std::net::SocketAddr>,
}

/// The environment variable that replaces the instances' DHCP client, for
/// tests that need DHCP to fail on purpose (e.g. a path that does not
/// exist): the real thing cannot be made to fail on demand.
pub const DHCP_CLIENT_ENV: &str = "OPENVPC_TEST_DHCP_CLIENT";

/// The DHCP client to run: [`DHCP_CLIENT_ENV`]'s value if set, else
/// [`netns::DHCP_CLIENT`].
pub fn dhcp_client_from_env() -> String {
    std::env::var(DHCP_CLIENT_ENV).unwrap_or_else(|_| netns::DHCP_CLIENT.to_owned())
}

/// The file in its state directory where a running agent keeps its
/// worker's counters and its instances' setup health (rewritten every
/// second by `openvpc agent`).
pub const STATUS_FILE: &str = "status.json";

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Instance(#[from] instance::InstanceError),
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
    #[error("could not start an agent thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running agent.
#[derive(Debug)]
pub struct AgentHandle {
    stop: Arc<AtomicBool>,
    synced: Arc<AtomicBool>,
    worker: Option<WorkerHandle>,
    control: Option<JoinHandle<()>>,
    lookup: Option<JoinHandle<()>>,
    health_loop: Option<JoinHandle<()>>,
    flow_logs: Option<JoinHandle<()>>,
    flow_log_counters: Arc<flow_log::FlowLogCounters>,
    health: health::Health,
}

/// The agent: start it, query it, stop it.
#[derive(Debug)]
pub struct Agent;

/// How long `stop` waits for a watch that is still open; the thread exits
/// on its own when the server answers.
const CONTROL_STOP_GRACE: Duration = Duration::from_secs(2);

impl Agent {
    /// Binds the underlay, starts the worker and the control threads.
    /// Instance namespaces listed in the state directory are adopted: the
    /// last snapshot re-attaches them at once (so they keep working while
    /// the server is away), and the first full state from the server
    /// re-attaches or removes them.
    pub fn start(cfg: AgentConfig) -> Result<AgentHandle, AgentError> {
        let instances = instance::Instances::load(&cfg.state_dir)?;
        let router = RouterConfig::new(cfg.underlay_ip);
        let mtu = router.instance_mtu;
        let mut wcfg = WorkerConfig::new(router);
        wcfg.underlay_netns = cfg.underlay_netns.clone();
        wcfg.cpu = cfg.worker_cpu;
        wcfg.busy_poll = cfg.worker_busy_poll;
        wcfg.dns_upstream = cfg.dns_upstream;
        let (flow_logs_tx, flow_logs_rx) = std::sync::mpsc::sync_channel(flow_log::QUEUE);
        wcfg.flow_logs = Some(flow_logs_tx);
        let (lookups_tx, lookups_rx) = std::sync::mpsc::channel();
        let worker = worker::spawn(wcfg, lookups_tx)?;
        let stop = Arc::new(AtomicBool::new(false));
        let synced = Arc::new(AtomicBool::new(false));
        let client = control::Client::new(&cfg.server_url, &cfg.token);

        let lookup = {
            let (client, worker, stop) = (client.clone(), worker.client(), stop.clone());
            std::thread::Builder::new()
                .name("openvpc-lookup".into())
                .spawn(move || control::lookup_loop(&client, &lookups_rx, &worker, &stop))?
        };
        let logged = flow_log::SharedEnis::default();
        let flow_log_counters = Arc::new(flow_log::FlowLogCounters::default());
        let flow_logs = {
            let (client, stop, logged) = (client.clone(), stop.clone(), logged.clone());
            let (host_id, counters) = (cfg.host_id.clone(), flow_log_counters.clone());
            std::thread::Builder::new()
                .name("openvpc-flowlog".into())
                .spawn(move || {
                    flow_log::flow_log_loop(
                        &client,
                        &host_id,
                        &flow_logs_rx,
                        &logged,
                        &counters,
                        &stop,
                    )
                })?
        };
        let health = health::Health::new(Some(health::INSTANCE_HEALTH_DIR.into()));
        let health_loop = {
            let (client, health, stop) = (client.clone(), health.clone(), stop.clone());
            let host_id = cfg.host_id.clone();
            std::thread::Builder::new()
                .name("openvpc-health".into())
                .spawn(move || control::health_loop(&client, &host_id, &health, &stop))?
        };
        let control = {
            let reg = HostRegistration {
                host_id: cfg.host_id.clone(),
                availability_zone: cfg.availability_zone.clone(),
                underlay_ip: cfg.underlay_ip,
            };
            let mut reconciler = reconcile::Reconciler::new(worker.client(), instances, mtu)
                .with_health(health.clone())
                .with_flow_logs(logged)
                .with_dhcp_client(&cfg.dhcp_client);
            let (stop, synced, state_dir) = (stop.clone(), synced.clone(), cfg.state_dir.clone());
            std::thread::Builder::new()
                .name("openvpc-control".into())
                .spawn(move || {
                    control::watch_loop(
                        &client,
                        &reg,
                        &mut reconciler,
                        &stop,
                        &synced,
                        Some(&state_dir),
                    )
                })?
        };
        Ok(AgentHandle {
            stop,
            synced,
            worker: Some(worker),
            control: Some(control),
            lookup: Some(lookup),
            health_loop: Some(health_loop),
            flow_logs: Some(flow_logs),
            flow_log_counters,
            health,
        })
    }
}

impl AgentHandle {
    /// Waits until the agent has registered and applied the server's state
    /// for this host; false if that took longer than `timeout`.
    pub fn wait_synced(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while !self.synced.load(Ordering::Relaxed) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The worker's counters.
    pub fn status(&self) -> Option<WorkerStatus> {
        self.worker.as_ref().and_then(|w| w.client().status().ok())
    }

    /// Each instance's setup health, as last recorded.
    pub fn health(&self) -> &health::Health {
        &self.health
    }

    /// Writes the worker's counters and the instances' setup health
    /// (`instances`: ID → `{setup, reason?, since}`), with the time taken,
    /// to `dir/`[`STATUS_FILE`] (replaced whole, so a reader never sees half).
    pub fn write_status(&self, dir: &Path) -> std::io::Result<()> {
        let Some(status) = self.status() else {
            return Err(std::io::Error::other("the worker has stopped"));
        };
        let mut json = status.to_json();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        json["unix_time"] = now.as_secs().into();
        let c = &self.flow_log_counters;
        json["flow_logs"] = serde_json::json!({
            "records_sent": c.sent.load(Ordering::Relaxed),
            "records_dropped_unsent": c.dropped_unsent.load(Ordering::Relaxed),
            "skipdata": c.skipped.load(Ordering::Relaxed),
            "not_logged": c.not_logged.load(Ordering::Relaxed),
        });
        let (_, instances) = self.health.snapshot();
        json["instances"] = instances
            .iter()
            .map(|h| {
                let mut v = serde_json::json!({ "setup": h.setup, "since": h.since });
                if let Some(r) = &h.reason {
                    v["reason"] = r.clone().into();
                }
                (h.instance_id.clone(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&json)?)?;
        std::fs::rename(&tmp, dir.join(STATUS_FILE))
    }

    /// Stops the agent. Instance namespaces and their TAPs stay: they
    /// outlive the agent, and the next agent re-attaches them.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.lookup.take() {
            let _ = t.join();
        }
        if let Some(t) = self.health_loop.take() {
            let _ = t.join();
        }
        if let Some(t) = self.flow_logs.take() {
            control::join_within(t, CONTROL_STOP_GRACE);
        }
        if let Some(t) = self.control.take() {
            control::join_within(t, CONTROL_STOP_GRACE);
        }
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs an agent until `should_stop` returns true (checked every 200 ms).
pub fn run(cfg: AgentConfig, should_stop: impl Fn() -> bool) -> Result<(), AgentError> {
    let handle = Agent::start(cfg)?;
    while !should_stop() {
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    Ok(())
}
