//! The agent API client and control loop against a fake endpoint that
//! records what it is asked (the real server lives in the control crate):
//! the wire (paths, token header, query, JSON bodies), resuming the watch
//! from the last revision after an outage, and, as root, a whole agent
//! started from its public API.

use core::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openvpc_agent::control::{self, Client, ClientError};
use openvpc_agent::health::{Health, Step, StepState};
use openvpc_agent::instance::Instances;
use openvpc_agent::reconcile::Reconciler;
use openvpc_agent::worker::{self, WorkerConfig};
use openvpc_agent::{Agent, AgentConfig, netns};
use openvpc_dataplane::RouterConfig;
use openvpc_model::host::{
    HostDelta, HostRecord, HostRegistration, MappingKey, TOKEN_HEADER, path,
};

mod common;
use common::{FakeServer, Req, Table, answer, eni, is_root, record};

const TOKEN: &str = "test-token";

fn registration(host: &str, underlay: IpAddr) -> HostRegistration {
    HostRegistration {
        host_id: host.into(),
        availability_zone: "us-east-1a".into(),
        underlay_ip: underlay,
    }
}

fn record_of(reg: &HostRegistration) -> HostRecord {
    HostRecord {
        host_id: reg.host_id.clone(),
        region: "us-east-1".into(),
        availability_zone: reg.availability_zone.clone(),
        underlay_ip: reg.underlay_ip,
        registered_at: 0,
    }
}

fn json<T: serde::Serialize>(v: &T) -> (u16, String) {
    (200, serde_json::to_string(v).unwrap())
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn client_speaks_the_agent_api() {
    let table: Table = Arc::new(
        [record(
            &eni(
                "eni-b",
                "i-b",
                Ipv4Addr::new(10, 0, 1, 11),
                "02:00:00:00:00:0b",
            ),
            "192.0.2.2".parse().unwrap(),
        )]
        .into(),
    );
    let server = FakeServer::start(Arc::new(move |req: &Req| match req.path.as_str() {
        path::REGISTER => {
            let reg: HostRegistration = serde_json::from_slice(&req.body).unwrap();
            json(&record_of(&reg))
        }
        path::WATCH => json(&HostDelta {
            revision: 9,
            full: true,
            ..HostDelta::default()
        }),
        path::MAPPINGS => {
            let keys: Vec<MappingKey> = serde_json::from_slice(&req.body).unwrap();
            json(&answer(&table, &keys))
        }
        _ => (404, "{}".into()),
    }));
    let client = Client::new(&format!("{}/", server.url()), TOKEN);
    let reg = registration("h-1", "192.0.2.1".parse().unwrap());
    assert_eq!(client.register(&reg).unwrap().host_id, "h-1");
    let delta = client.watch("h-1", 3, 25_000).unwrap();
    assert_eq!((delta.revision, delta.full), (9, true));
    let keys = [
        MappingKey {
            vni: common::VNI,
            ip: "10.0.1.11".parse().unwrap(),
        },
        MappingKey {
            vni: common::VNI,
            ip: "10.0.1.99".parse().unwrap(),
        },
    ];
    let answers = client.mappings(&keys).unwrap();
    assert_eq!(answers[0].key, keys[0]);
    assert_eq!(answers[0].record.as_ref().unwrap().eni_id, "eni-b");
    assert!(answers[1].record.is_none());

    let log = server.log.lock().unwrap().clone();
    for r in &log {
        assert_eq!(
            r.headers.get(TOKEN_HEADER).map(String::as_str),
            Some(TOKEN),
            "{r:?}"
        );
    }
    assert_eq!(log[0].method, "POST");
    assert_eq!(log[0].path, path::REGISTER);
    assert_eq!(
        serde_json::from_slice::<HostRegistration>(&log[0].body).unwrap(),
        reg
    );
    assert_eq!(log[1].method, "GET");
    assert_eq!(log[1].query.get("host").map(String::as_str), Some("h-1"));
    assert_eq!(log[1].query.get("since").map(String::as_str), Some("3"));
    assert_eq!(
        log[1].query.get("wait_ms").map(String::as_str),
        Some("25000")
    );
    assert_eq!(log[2].method, "POST");
}

#[test]
fn client_errors_are_typed() {
    let server = FakeServer::start(Arc::new(|req: &Req| match req.path.as_str() {
        path::MAPPINGS => (200, "[]".into()),
        path::WATCH => (200, "not json".into()),
        _ => (401, r#"{"code":"Unauthorized"}"#.into()),
    }));
    let client = Client::new(&server.url(), "wrong");
    let reg = registration("h-1", "192.0.2.1".parse().unwrap());
    assert!(matches!(
        client.register(&reg),
        Err(ClientError::Http { .. })
    ));
    assert!(matches!(
        client.watch("h-1", 0, 0),
        Err(ClientError::Decode { .. })
    ));
    let key = MappingKey {
        vni: 1,
        ip: "10.0.0.1".parse().unwrap(),
    };
    assert!(matches!(
        client.mappings(&[key]),
        Err(ClientError::Mismatch {
            asked: 1,
            answered: 0
        })
    ));
}

// The server goes away after the first full state: the loop keeps the
// state, registers again when it returns, and resumes from revision 5.
#[test]
fn watch_resumes_from_the_last_revision_after_an_outage() {
    let watches = Arc::new(AtomicUsize::new(0));
    let server = {
        let watches = watches.clone();
        FakeServer::start(Arc::new(move |req: &Req| match req.path.as_str() {
            path::REGISTER => {
                let reg: HostRegistration = serde_json::from_slice(&req.body).unwrap();
                json(&record_of(&reg))
            }
            path::WATCH => match watches.fetch_add(1, Ordering::SeqCst) {
                0 => json(&HostDelta {
                    revision: 5,
                    full: true,
                    ..HostDelta::default()
                }),
                1 | 2 => (503, "{}".into()),
                _ => {
                    std::thread::sleep(Duration::from_millis(100));
                    json(&HostDelta {
                        revision: 6,
                        ..HostDelta::default()
                    })
                }
            },
            _ => (404, "{}".into()),
        }))
    };
    let mut cfg = WorkerConfig::new(RouterConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    cfg.underlay_port = 0;
    let (tx, _lookups) = std::sync::mpsc::channel();
    let worker = worker::spawn(cfg, tx).unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut reconciler = Reconciler::new(
        worker.client(),
        Instances::load(state.path()).unwrap(),
        1450,
    );
    let client = Client::new(&server.url(), TOKEN);
    let reg = registration("h-1", "127.0.0.1".parse().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            control::watch_loop(
                &client,
                &reg,
                &mut reconciler,
                &stop,
                &AtomicBool::new(false),
                None,
            )
        })
    };
    wait_until("the watch to resume", Duration::from_secs(10), || {
        server.requests(path::WATCH).len() >= 6
    });
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    worker.stop();

    let since: Vec<String> = server
        .requests(path::WATCH)
        .iter()
        .map(|r| r.query["since"].clone())
        .collect();
    assert_eq!(since[..6], ["0", "5", "5", "5", "6", "6"]);
    // Registered at start and again after each failed watch.
    assert_eq!(server.requests(path::REGISTER).len(), 3);
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root for network namespaces and TAP devices");
            return;
        }
    };
}

/// The whole agent from its public API against the fake endpoint: two
/// instances appear from one full state, get addresses, and reach each
/// other; stopping the agent leaves them; a new agent started while the
/// server is down runs them from its snapshot (fail static);
/// `remove_instances` removes them.
#[test]
fn agent_runs_instances_from_the_watch() {
    require_root!();
    let pid = std::process::id();
    let (a, b) = (format!("i-{pid:08x}2a"), format!("i-{pid:08x}2b"));
    let underlay_ns = format!("ovu-{pid}-agent");
    struct Cleanup(String, std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = openvpc_agent::remove_instances(&self.1);
            let _ = netns::delete(&self.0);
        }
    }
    let state = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(underlay_ns.clone(), state.path().to_path_buf());
    netns::ensure(&underlay_ns).unwrap();
    let underlay: IpAddr = "127.0.0.1".parse().unwrap();

    let ea = eni(
        "eni-a",
        &a,
        Ipv4Addr::new(10, 0, 1, 30),
        "02:00:0a:00:01:1e",
    );
    let eb = eni(
        "eni-b",
        &b,
        Ipv4Addr::new(10, 0, 1, 31),
        "02:00:0a:00:01:1f",
    );
    let table: Table = Arc::new([record(&ea, underlay), record(&eb, underlay)].into());
    let enis = vec![ea, eb];
    let down = Arc::new(AtomicBool::new(false));
    let server_down = down.clone();
    let server = FakeServer::start(Arc::new(move |req: &Req| match req.path.as_str() {
        _ if server_down.load(Ordering::SeqCst) => (503, "{}".into()),
        path::REGISTER => {
            let reg: HostRegistration = serde_json::from_slice(&req.body).unwrap();
            json(&record_of(&reg))
        }
        path::WATCH if req.query["since"] == "0" => json(&HostDelta {
            revision: 1,
            full: true,
            upserts: enis.clone(),
            ..HostDelta::default()
        }),
        path::WATCH => {
            std::thread::sleep(Duration::from_millis(300));
            json(&HostDelta {
                revision: 1,
                ..HostDelta::default()
            })
        }
        path::MAPPINGS => {
            let keys: Vec<MappingKey> = serde_json::from_slice(&req.body).unwrap();
            json(&answer(&table, &keys))
        }
        _ => (404, "{}".into()),
    }));
    let config = AgentConfig {
        server_url: server.url(),
        token: TOKEN.into(),
        host_id: "h-1".into(),
        availability_zone: "us-east-1a".into(),
        underlay_ip: underlay,
        underlay_netns: Some(underlay_ns.clone()),
        state_dir: state.path().to_path_buf(),
        worker_cpu: None,
        worker_busy_poll: openvpc_agent::worker::DEFAULT_BUSY_POLL,
        dhcp_client: openvpc_agent::netns::DHCP_CLIENT.into(),
        dns_upstream: None,
    };
    let agent = Agent::start(config.clone()).unwrap();
    for (ns, want) in [(&a, "10.0.1.30/24"), (&b, "10.0.1.31/24")] {
        wait_until(
            &format!("{ns} to get {want} over DHCP"),
            Duration::from_secs(20),
            || netns::ipv4_addresses(ns, "eth0").is_ok_and(|v| v == [want]),
        );
    }
    let ping = || {
        let args = [
            "netns",
            "exec",
            &a,
            "busybox",
            "ping",
            "-c",
            "3",
            "-W",
            "1",
            "10.0.1.31",
        ];
        std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap()
    };
    let out = ping();
    assert!(out.status.success(), "{out:?}\n{:#?}", agent.status());
    let status = agent.status().unwrap();
    assert!(status.mapping.answers >= 1, "{status:#?}");
    agent.stop();
    // Instances outlive the agent.
    assert!(netns::exists(&a) && netns::exists(&b));

    // The server goes away; a new agent runs the instances from its
    // snapshot: TAPs re-attached, owners known, no lookup needed.
    down.store(true, Ordering::SeqCst);
    let agent = Agent::start(config).unwrap();
    wait_until(
        "the snapshot to be installed",
        Duration::from_secs(10),
        || agent.status().is_some_and(|s| s.enis.len() == 2),
    );
    let out = ping();
    assert!(out.status.success(), "{out:?}\n{:#?}", agent.status());
    agent.stop();
    let mut removed = openvpc_agent::remove_instances(state.path()).unwrap();
    removed.sort();
    assert_eq!(removed, [a.clone(), b.clone()]);
    assert!(!netns::exists(&a) && !netns::exists(&b));
}

// Issue 12: the health report goes out at once when an instance's setup
// changes, and again every period as the host's heartbeat.
#[test]
fn health_reports_go_out_on_change_and_as_a_heartbeat() {
    let health = Health::new(None);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let looper = {
        let (health, stop, sent) = (health.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            control::health_loop_with(&health, "h-1", &stop, Duration::from_millis(400), |r| {
                sent.lock().unwrap().push(r.clone());
                Ok(())
            })
        })
    };
    let count = || sent.lock().unwrap().len();
    wait_until("the first report", Duration::from_secs(2), || count() >= 1);
    assert!(sent.lock().unwrap()[0].instances.is_empty());
    health.step(
        "i-a",
        Some(0),
        Step::Dhcp,
        StepState::Failed("no lease".into()),
    );
    wait_until("the report of the change", Duration::from_secs(1), || {
        sent.lock().unwrap().iter().any(|r| !r.instances.is_empty())
    });
    let changed_at = count();
    let last = sent.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.host_id, "h-1");
    assert_eq!(
        last.instances[0].reason.as_deref(),
        Some("eth0 DHCP failed: no lease")
    );
    // Nothing changes: the next report is the heartbeat, a period later.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(), changed_at, "sent again without a change");
    wait_until("the heartbeat", Duration::from_secs(2), || {
        count() > changed_at
    });
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
}
