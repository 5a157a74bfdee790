//! The edge node's conversation with the control plane over the edge API
//! (`openvpc_model::edge`): register (which is also the heartbeat, every
//! [`HEARTBEAT_MS`]), long-poll the watch for the table of public
//! addresses, and deregister on a clean stop.
//!
//! Shaped like the agent's client: when the server is away the node keeps
//! translating with the table it has; the loops log the outage once, retry
//! with backoff, and resume the watch from the last revision they saw.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use openvpc_agent::control::{Outage, sleep_unless_stopped};
use openvpc_model::edge::{
    EdgeDelta, EdgeRecord, EdgeRegistration, HEARTBEAT_MS, VpnTunnelReport, path,
};
use openvpc_model::host::{MappingAnswer, MappingKey};
use openvpc_packet::MacAddr;

use crate::translate::{MAX_NAT_PLACES, PublicMapping, TableUpdate};

/// How long the server may hold a watch open.
pub const WATCH_WAIT_MS: u64 = 25_000;
/// Registrations and deregistrations give up after this: a heartbeat
/// later than the server's TTL is no heartbeat anyway.
const SHORT_TIMEOUT: Duration = Duration::from_secs(3);
/// The largest VNI Geneve carries (24 bits).
const MAX_VNI: u32 = (1 << 24) - 1;

pub use openvpc_agent::control::ClientError;

/// A blocking client for the edge API, over the agent API's client.
#[derive(Debug, Clone)]
pub struct Client(openvpc_agent::control::Client);

impl Client {
    /// A client for the server at `server_url`, authenticating with `token`
    /// (the agent token).
    pub fn new(server_url: &str, token: &str) -> Self {
        Client(openvpc_agent::control::Client::with_short_timeout(
            server_url,
            token,
            SHORT_TIMEOUT,
        ))
    }

    /// `POST /edge/v1/register`: also the heartbeat.
    pub fn register(&self, reg: &EdgeRegistration) -> Result<EdgeRecord, ClientError> {
        self.0.post("register", path::REGISTER, reg)
    }

    /// `POST /edge/v1/deregister`: the node leaves at once.
    pub fn deregister(&self, reg: &EdgeRegistration) -> Result<(), ClientError> {
        let _: serde_json::Value = self.0.post("deregister", path::DEREGISTER, reg)?;
        Ok(())
    }

    /// `POST /edge/v1/vpn-status`: the VPN tunnels this edge serves, as
    /// they are now.
    pub fn vpn_status(
        &self,
        edge_id: &str,
        reports: &[VpnTunnelReport],
    ) -> Result<(), ClientError> {
        let endpoint = format!("{}?edge={edge_id}", path::VPN_STATUS);
        let _: serde_json::Value = self.0.post("VPN status report", &endpoint, &reports)?;
        Ok(())
    }

    /// `POST /agent/v1/mappings`: who holds each address (the VPN
    /// gateway's decrypted packets go to them).
    pub fn mappings(&self, keys: &[MappingKey]) -> Result<Vec<MappingAnswer>, ClientError> {
        self.0.mappings(keys)
    }

    /// `GET /edge/v1/watch`: what changed since `since`, waiting up to
    /// `wait_ms` for something to.
    pub fn watch(&self, edge_id: &str, since: u64, wait_ms: u64) -> Result<EdgeDelta, ClientError> {
        let query = [
            ("edge", edge_id.to_owned()),
            ("since", since.to_string()),
            ("wait_ms", wait_ms.to_string()),
        ];
        // A region's whole table is larger than ureq's default limit.
        self.0.long_poll("watch", path::WATCH, &query, 512 << 20)
    }
}

/// What an edge does while the server is away.
const EDGE_CONSEQUENCE: &str = "the edge keeps translating with its current table and retries";

/// What the control loops know, for the status file and readiness.
#[derive(Debug, Default)]
pub struct ControlState {
    /// The last heartbeat was answered.
    pub registered: AtomicBool,
    /// A full table has been applied.
    pub synced: AtomicBool,
    /// The revision of the last delta applied.
    pub revision: AtomicU64,
    /// Entries skipped because they made no sense, since start.
    pub skipped: AtomicU64,
}

/// An entry of a delta that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEntry {
    #[error("public address {public}: MAC {mac:?} is not a MAC address")]
    Mac {
        public: core::net::Ipv4Addr,
        mac: String,
    },
    #[error("public address {public}: VNI {vni} does not fit Geneve's 24 bits")]
    Vni {
        public: core::net::Ipv4Addr,
        vni: u32,
    },
    #[error("public address {public}: {places} NAT places, more than the {max} a shard may have")]
    NatPlaces {
        public: core::net::Ipv4Addr,
        places: usize,
        max: usize,
    },
}

/// The core's form of a delta. A bad entry is left out, and its public
/// address removed instead, so it stops translating to a holder that may
/// be stale; each is returned to be logged.
pub fn table_update(delta: &EdgeDelta) -> (TableUpdate, Vec<BadEntry>) {
    let mut bad = Vec::new();
    let mut update = TableUpdate {
        full: delta.full,
        upserts: Vec::with_capacity(delta.upserts.len()),
        removals: delta.removals.clone(),
        attached: Some(
            delta
                .attached_vnis
                .iter()
                .copied()
                .filter(|v| *v <= MAX_VNI)
                .collect(),
        ),
    };
    for m in &delta.upserts {
        if m.vni > MAX_VNI {
            bad.push(BadEntry::Vni {
                public: m.public,
                vni: m.vni,
            });
            update.removals.push(m.public);
            continue;
        }
        if m.nat_nodes.len() > MAX_NAT_PLACES {
            bad.push(BadEntry::NatPlaces {
                public: m.public,
                places: m.nat_nodes.len(),
                max: MAX_NAT_PLACES,
            });
            update.removals.push(m.public);
            continue;
        }
        match m.mac.parse::<MacAddr>() {
            Ok(mac) => update.upserts.push(PublicMapping {
                public: m.public,
                vni: m.vni,
                private: m.private,
                host: m.host,
                mac,
                // A NAT gateway's Elastic IP: replies go to the node of
                // their port's place.
                nat_nodes: m.nat_nodes.clone(),
            }),
            Err(_) => {
                bad.push(BadEntry::Mac {
                    public: m.public,
                    mac: m.mac.clone(),
                });
                update.removals.push(m.public);
            }
        }
    }
    (update, bad)
}

/// Registers at once and again every [`HEARTBEAT_MS`] until `stop`, then
/// deregisters (if the server ever heard of us). `registered` follows the
/// last answer.
pub fn heartbeat_loop(
    client: &Client,
    reg: &EdgeRegistration,
    state: &ControlState,
    stop: &AtomicBool,
) {
    let every = Duration::from_millis(HEARTBEAT_MS);
    let ever = heartbeat_loop_with(state, stop, every, || client.register(reg).map(|_| ()));
    if ever {
        match client.deregister(reg) {
            Ok(()) => tracing::info!(edge = %reg.node_id, "deregistered"),
            Err(e) => {
                tracing::warn!(error = %e, "could not deregister; the server drops this edge when its registration expires")
            }
        }
    }
}

/// [`heartbeat_loop`] over any sender (tests count the calls); true if a
/// registration ever succeeded.
pub fn heartbeat_loop_with(
    state: &ControlState,
    stop: &AtomicBool,
    every: Duration,
    mut register: impl FnMut() -> Result<(), ClientError>,
) -> bool {
    let mut outage = Outage::new(EDGE_CONSEQUENCE);
    let mut ever = false;
    while !stop.load(Ordering::Relaxed) {
        let wait = match register() {
            Ok(()) => {
                outage.ok("register");
                if !state.registered.swap(true, Ordering::Relaxed) {
                    tracing::info!("registered with the server");
                }
                ever = true;
                every
            }
            Err(e) => {
                state.registered.store(false, Ordering::Relaxed);
                // Retry sooner than a heartbeat at first, never later:
                // the server forgets an edge after three.
                outage.failed("register", &e).min(every)
            }
        };
        if !sleep_unless_stopped(stop, wait) {
            break;
        }
    }
    ever
}

/// How often the VPN gateway's reports are sent while nothing changes: the
/// server believes a tunnel's report only while its edge lives, so this is
/// for a server that missed one (it restarted, or a write failed).
pub const VPN_REPORT_EVERY: Duration = Duration::from_secs(10);

/// How often the VPN loop looks for news from the worker.
const VPN_POLL: Duration = Duration::from_millis(50);

/// What the VPN loop reads from and hands to the worker.
pub trait VpnWorker {
    /// The reports (with their sequence number) and the addresses whose
    /// owners the gateway wants to know.
    fn take(&self) -> (u64, Vec<VpnTunnelReport>, Vec<MappingKey>);
    /// The mapping service's answers; an error ends the loop (the worker
    /// has stopped).
    fn answer(&self, answers: Vec<MappingAnswer>) -> Result<(), String>;
}

/// Until `stop`: asks the mapping service what the VPN gateway wants to
/// know and hands the answers back, and sends the gateway's reports to the
/// server when they change (and every [`VPN_REPORT_EVERY`]).
pub fn vpn_loop(client: &Client, edge_id: &str, worker: &dyn VpnWorker, stop: &AtomicBool) {
    let mut outage = Outage::new(EDGE_CONSEQUENCE);
    let mut sent_seq = 0;
    let mut sent_at: Option<std::time::Instant> = None;
    while sleep_unless_stopped(stop, VPN_POLL) {
        let (seq, reports, wanted) = worker.take();
        if !wanted.is_empty() {
            for chunk in wanted.chunks(openvpc_agent::control::MAPPING_BATCH) {
                match client.mappings(chunk) {
                    Ok(answers) => {
                        if worker.answer(answers).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        outage.failed("mapping lookup", &e);
                    }
                }
            }
        }
        let due = sent_at.is_none_or(|t| t.elapsed() >= VPN_REPORT_EVERY);
        if seq != sent_seq || (due && !reports.is_empty()) {
            match client.vpn_status(edge_id, &reports) {
                Ok(()) => {
                    outage.ok("VPN status report");
                    sent_seq = seq;
                    sent_at = Some(std::time::Instant::now());
                }
                Err(e) => {
                    outage.failed("VPN status report", &e);
                }
            }
        }
    }
}

/// Follows the watch until `stop`, applying every delta with `apply`; it
/// starts once the node has registered. An `apply` error (the worker has
/// stopped) ends the loop.
pub fn watch_loop<E: std::fmt::Display>(
    client: &Client,
    edge_id: &str,
    state: &ControlState,
    stop: &AtomicBool,
    apply: impl FnMut(&EdgeDelta) -> Result<(), E>,
) {
    while !state.registered.load(Ordering::Relaxed) {
        if !sleep_unless_stopped(stop, Duration::from_millis(50)) {
            return;
        }
    }
    watch_loop_with(state, stop, apply, |since| {
        client.watch(edge_id, since, WATCH_WAIT_MS)
    });
}

/// [`watch_loop`] over any source of deltas (tests answer from a list).
pub fn watch_loop_with<E: std::fmt::Display>(
    state: &ControlState,
    stop: &AtomicBool,
    mut apply: impl FnMut(&EdgeDelta) -> Result<(), E>,
    mut watch: impl FnMut(u64) -> Result<EdgeDelta, ClientError>,
) {
    let mut outage = Outage::new(EDGE_CONSEQUENCE);
    let mut since = state.revision.load(Ordering::Relaxed);
    while !stop.load(Ordering::Relaxed) {
        match watch(since) {
            Ok(delta) => {
                outage.ok("watch");
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = apply(&delta) {
                    tracing::error!(error = %e, "the edge's table could not be updated; the watch stops");
                    return;
                }
                since = delta.revision;
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

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use openvpc_model::edge::EdgeMapping;
    use std::cell::Cell;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn entry(public: &str, mac: &str, vni: u32) -> EdgeMapping {
        EdgeMapping {
            public: ip(public),
            vni,
            private: ip("10.0.1.10"),
            host: IpAddr::V4(ip("192.0.2.2")),
            mac: mac.into(),
            eni_id: "eni-1".into(),
            nat_nodes: Vec::new(),
        }
    }

    fn http_error() -> ClientError {
        ClientError::Http {
            what: "test",
            url: "http://127.0.0.1:1".into(),
            source: Box::new(ureq::Error::ConnectionFailed),
        }
    }

    // A bad entry is skipped and its address removed, never a panic; the
    // good ones and the attached set pass through.
    #[test]
    fn bad_entries_are_skipped_and_their_addresses_removed() {
        let delta = EdgeDelta {
            revision: 4,
            full: true,
            upserts: vec![
                entry("198.51.100.7", "02:00:00:00:00:0a", 77),
                entry("198.51.100.8", "not-a-mac", 77),
                entry("198.51.100.9", "02:00:00:00:00:0b", 1 << 24),
            ],
            removals: vec![ip("198.51.100.1")],
            attached_vnis: vec![77, 1 << 25],
            public_pool: vec![],
            ..EdgeDelta::default()
        };
        let (update, bad) = table_update(&delta);
        assert!(update.full);
        assert_eq!(update.upserts.len(), 1);
        assert_eq!(update.upserts[0].mac, MacAddr([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(
            update.removals,
            vec![ip("198.51.100.1"), ip("198.51.100.8"), ip("198.51.100.9")]
        );
        assert_eq!(update.attached, Some(vec![77]));
        assert_eq!(bad.len(), 2);
        assert!(matches!(&bad[0], BadEntry::Mac { mac, .. } if mac == "not-a-mac"));
    }

    // Issue 16: a NAT gateway's Elastic IP keeps its nodes, per place; a
    // list longer than a shard may be is a bad entry, its address removed.
    #[test]
    fn nat_nodes_pass_through_and_too_many_places_are_bad() {
        let nodes: Vec<IpAddr> = ["192.0.2.31", "192.0.2.32"]
            .iter()
            .map(|s| IpAddr::V4(ip(s)))
            .collect();
        let too_many = vec![IpAddr::V4(ip("192.0.2.31")); MAX_NAT_PLACES + 1];
        let delta = EdgeDelta {
            revision: 5,
            full: false,
            upserts: vec![
                EdgeMapping {
                    nat_nodes: nodes.clone(),
                    ..entry("198.51.100.7", "02:00:00:00:00:0a", 77)
                },
                EdgeMapping {
                    nat_nodes: too_many,
                    ..entry("198.51.100.8", "02:00:00:00:00:0b", 77)
                },
            ],
            removals: vec![],
            attached_vnis: vec![77],
            public_pool: vec![],
            ..EdgeDelta::default()
        };
        let (update, bad) = table_update(&delta);
        assert_eq!(update.upserts.len(), 1);
        assert_eq!(update.upserts[0].nat_nodes, nodes);
        assert_eq!(update.removals, vec![ip("198.51.100.8")]);
        assert!(
            matches!(bad[..], [BadEntry::NatPlaces { places, .. }] if places == MAX_NAT_PLACES + 1)
        );
    }

    // The heartbeat marks the node registered while the server answers,
    // and not while it does not; it keeps trying through the outage.
    #[test]
    fn the_heartbeat_follows_the_server() {
        let state = ControlState::default();
        let stop = AtomicBool::new(false);
        let calls = Cell::new(0);
        let ever = heartbeat_loop_with(&state, &stop, Duration::from_millis(1), || {
            calls.set(calls.get() + 1);
            match calls.get() {
                1 => Err(http_error()),
                2 => Ok(()),
                3 => {
                    assert!(state.registered.load(Ordering::Relaxed));
                    Err(http_error())
                }
                _ => {
                    assert!(!state.registered.load(Ordering::Relaxed));
                    stop.store(true, Ordering::Relaxed);
                    Ok(())
                }
            }
        });
        assert!(ever);
        assert_eq!(calls.get(), 4);
    }

    // The watch resumes from the revision last applied, also across a
    // failed call.
    #[test]
    fn the_watch_resumes_from_the_last_revision() {
        let state = ControlState::default();
        let stop = AtomicBool::new(false);
        let asked = std::cell::RefCell::new(Vec::new());
        let applied = std::cell::RefCell::new(Vec::new());
        watch_loop_with(
            &state,
            &stop,
            |d: &EdgeDelta| {
                applied.borrow_mut().push(d.revision);
                Ok::<(), String>(())
            },
            |since| {
                asked.borrow_mut().push(since);
                match asked.borrow().len() {
                    1 => Ok(EdgeDelta {
                        revision: 5,
                        full: true,
                        ..EdgeDelta::default()
                    }),
                    2 => Err(http_error()),
                    3 => Ok(EdgeDelta {
                        revision: 9,
                        ..EdgeDelta::default()
                    }),
                    _ => {
                        stop.store(true, Ordering::Relaxed);
                        Err(http_error())
                    }
                }
            },
        );
        assert_eq!(*asked.borrow(), vec![0, 5, 5, 9]);
        assert_eq!(*applied.borrow(), vec![5, 9]);
    }

    // A stopped worker ends the watch instead of spinning.
    #[test]
    fn an_apply_failure_ends_the_watch() {
        let state = ControlState::default();
        let stop = AtomicBool::new(false);
        let calls = Cell::new(0);
        watch_loop_with(
            &state,
            &stop,
            |_: &EdgeDelta| Err("stopped"),
            |_| {
                calls.set(calls.get() + 1);
                Ok(EdgeDelta::default())
            },
        );
        assert_eq!(calls.get(), 1);
    }
}
