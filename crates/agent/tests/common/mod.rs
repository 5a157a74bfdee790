//! Shared by the integration tests: ENI states built by hand, and a
//! stand-in for the server's agent API for the client's tests only (the
//! real endpoints live in the control crate). The fake speaks just enough
//! HTTP/1.1 (one request per connection) and records every request.

#![allow(dead_code)]

use core::net::{IpAddr, Ipv4Addr};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use openvpc_model::host::{
    ConntrackState, EniState, MappingAnswer, MappingKey, MappingRecord, NetworkAclEntryState,
    NetworkAclState, RouteState, RouteTableState, RouteTargetState, SecurityGroupRuleState,
    SecurityGroupState, SubnetState,
};
use openvpc_model::rule::{RuleAction, TrafficMatch};

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

pub const VNI: u32 = 4242;

pub fn allow_all_entry() -> NetworkAclEntryState {
    NetworkAclEntryState {
        rule_number: 100,
        traffic: TrafficMatch::ALL,
        cidr: "0.0.0.0/0".parse().unwrap(),
        action: RuleAction::Allow,
    }
}

/// An ENI in subnet 10.0.1.0/24 of VPC 10.0.0.0/16 whose security group
/// admits the subnet and sends anywhere.
pub fn eni(id: &str, instance: &str, addr: Ipv4Addr, mac: &str) -> EniState {
    EniState {
        eni_id: id.into(),
        account_id: "111122223333".into(),
        instance_id: Some(instance.into()),
        device_index: 0,
        mac: mac.into(),
        ipv4: vec![addr],
        ipv6: vec![],
        vpc_id: "vpc-test".into(),
        vni: VNI,
        vpc_cidr: "10.0.0.0/16".parse().unwrap(),
        subnet: SubnetState {
            subnet_id: "subnet-test".into(),
            cidr: "10.0.1.0/24".parse().unwrap(),
            ipv6_cidr: None,
            network_acl: NetworkAclState {
                network_acl_id: "acl-test".into(),
                ingress: vec![allow_all_entry()],
                egress: vec![allow_all_entry()],
            },
            route_table: RouteTableState {
                route_table_id: "rtb-test".into(),
                routes: vec![RouteState {
                    destination: "10.0.0.0/16".parse().unwrap(),
                    target: RouteTargetState::Local,
                }],
            },
        },
        security_groups: vec![SecurityGroupState {
            group_id: "sg-test".into(),
            ingress: vec![SecurityGroupRuleState {
                rule_id: None,
                traffic: TrafficMatch::ALL,
                peers: vec!["10.0.1.0/24".parse().unwrap()],
            }],
            egress: vec![SecurityGroupRuleState {
                rule_id: None,
                traffic: TrafficMatch::ALL,
                peers: vec!["0.0.0.0/0".parse().unwrap()],
            }],
        }],
        source_dest_check: true,
        conntrack: ConntrackState {
            tcp_established: 432_000,
            udp_stream: 180,
            udp: 30,
        },
        hostname: None,
        domain_name: None,
        public_ipv4: vec![],
        availability_zone_id: String::new(),
        flow_logs: vec![],
        dns: None,
        dns_servers: None,
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A mapping service answering from a fixed table, as the server would.
pub type Table = Arc<HashMap<MappingKey, MappingRecord>>;

pub fn answer(table: &Table, keys: &[MappingKey]) -> Vec<MappingAnswer> {
    keys.iter()
        .map(|k| MappingAnswer {
            key: *k,
            record: table.get(k).cloned(),
        })
        .collect()
}

pub fn record(state: &EniState, host: IpAddr) -> (MappingKey, MappingRecord) {
    (
        MappingKey {
            vni: state.vni,
            ip: IpAddr::V4(state.ipv4[0]),
        },
        MappingRecord {
            underlay_ip: host,
            eni_id: state.eni_id.clone(),
            mac: state.mac.clone(),
        },
    )
}

pub type Handler = dyn Fn(&Req) -> (u16, String) + Send + Sync;

pub struct FakeServer {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: Arc<Handler>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (log, handler) = (log.clone(), handler.clone());
                            std::thread::spawn(move || serve(conn, &log, handler.as_ref()));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FakeServer {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self, path: &str) -> Vec<Req> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, log: &Mutex<Vec<Req>>, handler: &Handler) {
    conn.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = reader.read_exact(&mut body);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let req = Req {
        method,
        path: path.to_string(),
        query,
        headers,
        body,
    };
    log.lock().unwrap().push(req.clone());
    let (status, json) = handler(&req);
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
        json.len()
    );
}
