//! The NLB core's new flows per second on one core (issue 17's goal:
//! ≥ 1 M/s): a client's TCP SYN parsed, its listener and target chosen by
//! the flow hash, the flow inserted, the packet rewritten and its
//! replication record made; once with the client's IP preserved
//! (instance targets) and once translated to the front address (IP
//! targets over TCP, which also allocates a source port).
//!
//! It owns the measuring and the wording of the figures; the binary (not
//! wired yet) prints [`NlbFigures`].

use core::net::Ipv4Addr;
use std::time::Instant;

use openvpc_dataplane::buf::PacketBuf;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};

use super::{
    Front, Health, Listener, Nlb, NlbConfig, NlbConfigError, NlbOutput, Protocol, Target,
    TargetGroup, TargetType,
};

/// What the bench reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NlbFigures {
    pub flows: usize,
    pub new_flows_per_sec: f64,
    pub new_flows_per_sec_translated: f64,
    pub bytes_per_flow: f64,
}

impl NlbFigures {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "flows": self.flows,
            "new_flows_per_sec": self.new_flows_per_sec,
            "new_flows_per_sec_translated": self.new_flows_per_sec_translated,
            "bytes_per_flow": self.bytes_per_flow,
        })
    }

    pub fn table(&self) -> String {
        format!(
            "{:<60} {:>8.2} M/s\n{:<60} {:>8.2} M/s\n{:<60} {:>8.0} B\n",
            format!("new NLB flows, client IP preserved ({} flows)", self.flows),
            self.new_flows_per_sec / 1e6,
            "new NLB flows, source translated to the front address",
            self.new_flows_per_sec_translated / 1e6,
            "bytes per flow (table preallocated / capacity)",
            self.bytes_per_flow,
        )
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building the sample packets failed: {0}")]
    Packet(openvpc_packet::Error),
    #[error("the NLB refused its configuration: {0}")]
    Config(NlbConfigError),
    #[error("a sample packet was not balanced ({0:?}): the bench or the NLB is broken")]
    NotBalanced(NlbOutput),
}

const FRONT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);

/// The `i`-th client's SYN to the front address's port 80.
fn syn(i: usize) -> Result<Vec<u8>, BenchError> {
    let src = Ipv4Addr::from_bits(0x0a01_0000 + (i % 65_536) as u32);
    let mut tcp = TcpRepr::new(1024 + (i / 65_536) as u16, 80, flags::SYN);
    tcp.seq = (i as u32).wrapping_mul(2_654_435_761);
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(src, FRONT, 0, 0)),
        l4: L4Repr::Tcp(tcp),
    }
    .build(&[])
    .map_err(BenchError::Packet)
}

fn nlb(flows: usize, target_type: TargetType) -> Result<Nlb, BenchError> {
    let targets = (0..3)
        .map(|k| Target {
            id: format!("t{k}"),
            ip: Ipv4Addr::new(10, 0, 1, 10 + k),
            port: 80,
            az: "az-a".into(),
            health: Health::Healthy,
        })
        .collect();
    let group = TargetGroup {
        id: "tg".into(),
        target_type,
        targets,
        preserve_client_ip: None,
        cross_zone: None,
    };
    let config = NlbConfig::new(
        vec![Front {
            address: FRONT,
            az: "az-a".into(),
        }],
        vec![Listener {
            port: 80,
            protocol: Protocol::Tcp,
            target_group: 0,
        }],
        vec![group],
        0,
        1,
        flows,
    );
    Nlb::new(config).map_err(BenchError::Config)
}

fn fill(n: &mut Nlb, frames: &[Vec<u8>]) -> Result<f64, BenchError> {
    let mut buf = PacketBuf::default();
    let start = Instant::now();
    for frame in frames {
        buf.set(frame);
        let out = n.from_client(&mut buf, 0);
        if !matches!(
            out,
            NlbOutput::ToTarget {
                record: Some(_),
                ..
            }
        ) {
            return Err(BenchError::NotBalanced(out));
        }
    }
    Ok(frames.len() as f64 / start.elapsed().as_secs_f64())
}

/// Measures new flows per second filling a table of `flows` flows (at
/// most 50,000 translated ones: 55,000 source ports per target).
pub fn run(flows: usize) -> Result<NlbFigures, BenchError> {
    let flows = flows.clamp(1, 50_000_000);
    let frames = (0..flows).map(syn).collect::<Result<Vec<_>, _>>()?;
    let mut n = nlb(flows, TargetType::Instance)?;
    let new_flows_per_sec = fill(&mut n, &frames)?;
    let bytes_per_flow = n.table().memory() as f64 / n.table().capacity() as f64;
    let translated = flows.min(50_000);
    let mut n = nlb(translated, TargetType::Ip)?;
    let new_flows_per_sec_translated = fill(&mut n, &frames[..translated])?;
    Ok(NlbFigures {
        flows,
        new_flows_per_sec,
        new_flows_per_sec_translated,
        bytes_per_flow,
    })
}
