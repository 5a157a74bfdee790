//! `openvpc bench hyperplane`: the NAT core on one core — new connections
//! per second (parse, port allocation, flow insert, translation, the
//! replication record), translated packets per second of established flows
//! (batched lookups over a large table), bytes per flow with its replica,
//! and the cost of encoding a record and installing it on the buddy
//! (issue 16's goals: ≥ 1 M connections/s, ≥ 5 Mpps, ≤ 256 B per flow).
//!
//! It owns the measuring and the wording of the figures; the binary turns
//! its arguments into [`run`]'s and prints [`NatFigures`].

use core::net::Ipv4Addr;
use std::hint::black_box;
use std::time::{Duration, Instant};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use super::{FlowRecord, LOOKUP_BATCH, Nat, NatConfig, NatDrop, NatOutput};

/// What `openvpc bench hyperplane` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NatFigures {
    pub flows: usize,
    pub new_connections_per_sec: f64,
    pub established_pps: f64,
    pub bytes_per_flow: f64,
    pub bytes_per_flow_with_replica: f64,
    pub replica_ns: f64,
}

impl NatFigures {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "flows": self.flows,
            "new_connections_per_sec": self.new_connections_per_sec,
            "established_mpps": self.established_pps / 1e6,
            "bytes_per_flow": self.bytes_per_flow,
            "bytes_per_flow_with_replica": self.bytes_per_flow_with_replica,
            "replica_encode_install_ns": self.replica_ns,
        })
    }

    pub fn table(&self) -> String {
        format!(
            "{:<56} {:>10.2} M/s\n{:<56} {:>10.2} Mpps\n{:<56} {:>10.0} B\n{:<56} {:>10.0} B\n{:<56} {:>10.0} ns\n",
            format!("new NAT connections (UDP, {} flows)", self.flows),
            self.new_connections_per_sec / 1e6,
            format!(
                "established packets, outbound batches, {} flows",
                self.flows
            ),
            self.established_pps / 1e6,
            "bytes per flow (table preallocated / capacity)",
            self.bytes_per_flow,
            "bytes per flow including its replica on the buddy",
            self.bytes_per_flow_with_replica,
            "replication record: encode + decode + install",
            self.replica_ns,
        )
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building the sample packets failed: {0}")]
    Packet(openvpc_packet::Error),
    #[error("the NAT refused its configuration: {0}")]
    Config(super::NatConfigError),
    #[error("a sample packet was not translated ({0:?}): the bench or the NAT is broken")]
    NotTranslated(NatOutput),
    #[error("a replication record was refused: {0}")]
    Replica(super::ReplicaError),
}

const EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// The `i`-th sample connection: 1,024 instances, each to its own mix of
/// 256 destinations and source ports, so ports are allocated per
/// destination as in a real fleet.
fn packet(i: usize) -> Result<Vec<u8>, BenchError> {
    let src = Ipv4Addr::from_bits(0x0a00_0000 + (i % 1024) as u32);
    let dst = Ipv4Addr::from_bits(0xcb00_7100 + ((i / 1024) % 256) as u32);
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 1024 + (i / 262_144) as u16,
            dst_port: 443,
        }),
    }
    .build(&[0u8; 18])
    .map_err(BenchError::Packet)
}

fn nat(flows: usize) -> Result<Nat, BenchError> {
    Nat::new(NatConfig::new(vec![EIP], 0, 2, flows)).map_err(BenchError::Config)
}

/// Measures with a table of `flows` flows; `budget` per packet figure.
pub fn run(budget: Duration, flows: usize) -> Result<NatFigures, BenchError> {
    let flows = flows.clamp(LOOKUP_BATCH, 50_000_000);
    let frames = (0..flows).map(packet).collect::<Result<Vec<_>, _>>()?;
    let mut bufs: Vec<PacketBuf> = (0..LOOKUP_BATCH).map(|_| PacketBuf::default()).collect();
    let mut out = [NatOutput::Drop(NatDrop::Malformed); LOOKUP_BATCH];

    // New connections: fill a fresh table once, in batches.
    let mut n = nat(flows)?;
    let start = Instant::now();
    for chunk in frames.chunks(LOOKUP_BATCH) {
        for (buf, frame) in bufs.iter_mut().zip(chunk) {
            buf.set(frame);
        }
        n.outbound_batch(&mut bufs[..chunk.len()], &mut out[..chunk.len()], 0);
        if let Some(bad) = out[..chunk.len()]
            .iter()
            .find(|o| !matches!(o, NatOutput::ToDestination(Some(_))))
        {
            return Err(BenchError::NotTranslated(*bad));
        }
    }
    let new_connections_per_sec = flows as f64 / start.elapsed().as_secs_f64();

    // Established: the same packets again, spread over the table with a
    // stride coprime to it, so lookups miss the cache as at scale.
    let picks: Vec<usize> = (0..flows.min(65_536)).map(|k| (k * 7919) % flows).collect();
    let (mut sent, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for chunk in picks.chunks(LOOKUP_BATCH) {
            for (buf, &i) in bufs.iter_mut().zip(chunk) {
                buf.set(&frames[i]);
            }
            n.outbound_batch(&mut bufs[..chunk.len()], &mut out[..chunk.len()], 1);
            black_box(&out);
        }
        sent += picks.len() as u64;
    }
    let established_pps = sent as f64 / start.elapsed().as_secs_f64();
    if let Some(bad) = out
        .iter()
        .find(|o| !matches!(o, NatOutput::ToDestination(_)))
    {
        return Err(BenchError::NotTranslated(*bad));
    }

    // Replication: each flow's record encoded, decoded and installed on a
    // buddy (node 1 of the shard) with its own table.
    let records: Vec<[u8; super::replica::LEN]> = n
        .table()
        .iter()
        .map(|(_, f)| FlowRecord::of(super::RecordKind::Upsert, f).encode())
        .collect();
    let mut buddy = Nat::new(NatConfig::new(vec![EIP], 1, 2, flows)).map_err(BenchError::Config)?;
    let start = Instant::now();
    for wire in &records {
        let record = FlowRecord::decode(black_box(wire))
            .map_err(|e| BenchError::Replica(super::ReplicaError::Record(e)))?;
        buddy.replica(&record, 1).map_err(BenchError::Replica)?;
    }
    let replica_ns = start.elapsed().as_secs_f64() * 1e9 / records.len().max(1) as f64;
    let bytes_per_flow = n.bytes_per_flow();
    Ok(NatFigures {
        flows,
        new_connections_per_sec,
        established_pps,
        bytes_per_flow,
        bytes_per_flow_with_replica: bytes_per_flow + buddy.bytes_per_flow(),
        replica_ns,
    })
}
