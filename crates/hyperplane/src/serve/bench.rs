//! `openvpc bench hyperplane`'s replication figure: a new flow's record
//! sent to the buddy over loopback UDP, installed there by the buddy's
//! [`Serve`], and acknowledged — the wait of a new flow's first packet
//! (issue 16's goal: p50 and p99 below 50 µs). Real sockets, real message
//! encoding and decoding, the real install; the two nodes are two threads
//! of this process so one clock times both ends.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_model::hyperplane::{NatAssignment, NatConnectivity, ShardMember};
use openvpc_packet::MacAddr;
use openvpc_packet::ip::protocol;

use super::{PeerVerdict, Serve, ServeConfig};
use crate::nat::{FlowRecord, FlowState, RecordKind};
use crate::wire::{Body, Message};

/// The replication latencies, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplicationFigures {
    pub samples: usize,
    /// From the send to the record installed at the buddy.
    pub installed_p50_us: f64,
    pub installed_p99_us: f64,
    /// From the send to the acknowledgement back: what a first packet waits.
    pub acked_p50_us: f64,
    pub acked_p99_us: f64,
}

impl ReplicationFigures {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples,
            "installed_p50_us": self.installed_p50_us,
            "installed_p99_us": self.installed_p99_us,
            "acked_p50_us": self.acked_p50_us,
            "acked_p99_us": self.acked_p99_us,
        })
    }

    pub fn table(&self) -> String {
        format!(
            "{:<56} {:>7.1} / {:.1} µs\n{:<56} {:>7.1} / {:.1} µs\n",
            format!(
                "record installed at the buddy, loopback, p50 / p99 ({})",
                self.samples
            ),
            self.installed_p50_us,
            self.installed_p99_us,
            "record acknowledged (a first packet's wait), p50 / p99",
            self.acked_p50_us,
            self.acked_p99_us,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationBenchError {
    #[error("loopback socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("the buddy thread failed")]
    Buddy,
    #[error("the buddy did not install the records ({0} of {1})")]
    NotInstalled(u32, usize),
}

const GW: &str = "nat-bench";

fn assignment(a: IpAddr, b: IpAddr) -> NatAssignment {
    NatAssignment {
        gateway_id: GW.into(),
        account_id: "bench".into(),
        vpc_id: "vpc-bench".into(),
        vni: 1,
        subnet_id: "subnet-bench".into(),
        connectivity: NatConnectivity::Public,
        private_ips: vec![Ipv4Addr::new(10, 0, 0, 9)],
        public_ips: Vec::new(),
        shard: vec![
            ShardMember {
                node_id: "a".into(),
                underlay_ip: Some(a),
            },
            ShardMember {
                node_id: "b".into(),
                underlay_ip: Some(b),
            },
        ],
        edges: Vec::new(),
        routes: Vec::new(),
        flow_log: None,
    }
}

/// Sends `samples` records one at a time, each waiting for its
/// acknowledgement.
pub fn run(samples: usize) -> Result<ReplicationFigures, ReplicationBenchError> {
    let samples = samples.clamp(100, 1_000_000);
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    a.set_read_timeout(Some(Duration::from_secs(2)))?;
    b.set_read_timeout(Some(Duration::from_secs(2)))?;
    let b_addr = b.local_addr()?;
    let a_addr = a.local_addr()?;
    let mut buddy = Serve::new(ServeConfig::new("b", MacAddr([2, 0, 0, 0, 0, 1])));
    buddy.configure(&[assignment(a_addr.ip(), b_addr.ip())], 0);
    buddy.take_outbox();
    let start = Instant::now();
    let thread = std::thread::spawn(move || -> std::io::Result<(Vec<Duration>, Serve)> {
        let mut installed = Vec::with_capacity(samples);
        let (mut bytes, mut ack, mut scratch) = (vec![0u8; 2048], Vec::new(), PacketBuf::default());
        while installed.len() < samples {
            let (n, from) = b.recv_from(&mut bytes)?;
            let v = buddy.peer(&bytes[..n], from.ip(), 0, &mut scratch);
            installed.push(start.elapsed());
            debug_assert_eq!(v, PeerVerdict::Done);
            for (_, m) in buddy.take_outbox() {
                m.encode(&mut ack);
                b.send_to(&ack, SocketAddr::new(from.ip(), from.port()))?;
            }
        }
        Ok((installed, buddy))
    });
    let mut sent = Vec::with_capacity(samples);
    let mut acked = Vec::with_capacity(samples);
    let (mut out, mut back) = (Vec::new(), [0u8; 256]);
    for i in 0..samples {
        let record = FlowRecord {
            kind: RecordKind::Upsert,
            proto: protocol::TCP,
            state: FlowState::Opened,
            src: Ipv4Addr::from_bits(0x0a00_0100 + (i % 250) as u32),
            dst: Ipv4Addr::new(198, 51, 100, 10),
            public: Ipv4Addr::new(10, 0, 0, 9),
            sport: 10_000 + (i / 250) as u16,
            dport: 443,
            // Even ports: place 0's slice, the sender's.
            pport: 10_536 + 2 * (i % 27_000) as u16,
        };
        Message {
            seq: i as u32,
            gateway: GW.into(),
            body: Body::Replicate {
                ack: true,
                records: vec![record],
            },
        }
        .encode(&mut out);
        let t0 = start.elapsed();
        a.send_to(&out, b_addr)?;
        a.recv(&mut back)?;
        sent.push(t0);
        acked.push(start.elapsed() - t0);
    }
    let (installed, buddy) = thread.join().map_err(|_| ReplicationBenchError::Buddy)??;
    let replicas = buddy.gateway_stats().first().map_or(0, |g| g.replicas);
    if (replicas as usize) < samples.min(27_000) {
        return Err(ReplicationBenchError::NotInstalled(replicas, samples));
    }
    let mut one_way: Vec<Duration> = installed
        .iter()
        .zip(&sent)
        .map(|(i, s)| i.saturating_sub(*s))
        .collect();
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort_unstable();
        let i = ((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1));
        v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Ok(ReplicationFigures {
        samples,
        installed_p50_us: pct(&mut one_way, 0.50),
        installed_p99_us: pct(&mut one_way, 0.99),
        acked_p50_us: pct(&mut acked, 0.50),
        acked_p99_us: pct(&mut acked, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The measurement runs end to end and every record is installed (the
    // figures themselves are the bench's, not a test's).
    #[test]
    fn replication_over_loopback_installs_every_record() {
        let f = run(200).unwrap();
        assert_eq!(f.samples, 200);
        assert!(f.installed_p50_us <= f.installed_p99_us);
        assert!(f.acked_p50_us <= f.acked_p99_us);
    }
}
