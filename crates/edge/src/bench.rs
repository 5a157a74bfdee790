//! `openvpc bench edge`: the edge's translate-and-encapsulate rate on one
//! core, inbound (public to private, Geneve to the host) and outbound
//! (private to public, to the uplink), with `addresses` public addresses
//! held, each packet to a different address so the table is not in cache
//! (issue 15's goal: ≥ 5 Mpps per core at 1M addresses).
//!
//! It owns the measuring and the wording of the figures; the binary turns
//! its arguments into [`run`]'s and prints [`EdgeFigures`].

use core::net::{IpAddr, Ipv4Addr};
use std::hint::black_box;
use std::time::{Duration, Instant};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetRepr, ethertype};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use crate::translate::{Edge, EdgeDrop, EdgeOutput, LOOKUP_BATCH, PublicMapping};

/// What `openvpc bench edge` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdgeFigures {
    pub addresses: usize,
    pub inbound_pps: f64,
    pub outbound_pps: f64,
}

impl EdgeFigures {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "addresses": self.addresses,
            "inbound_mpps": self.inbound_pps / 1e6,
            "outbound_mpps": self.outbound_pps / 1e6,
        })
    }

    pub fn table(&self) -> String {
        format!(
            "{:<52} {:>10.2} Mpps\n{:<52} {:>10.2} Mpps\n",
            format!(
                "inbound: translate + Geneve encap, {} addresses",
                self.addresses
            ),
            self.inbound_pps / 1e6,
            format!("outbound: decap + translate, {} addresses", self.addresses),
            self.outbound_pps / 1e6,
        )
    }
}

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building the sample packets failed: {0}")]
    Packet(openvpc_packet::Error),
    #[error("a sample packet was not translated ({0:?}): the bench or the edge is broken")]
    NotTranslated(EdgeOutput),
}

const VNI: u32 = 4242;
/// Distinct packets cycled through: each to a different address, spread
/// over the whole table.
const SAMPLES: usize = 65_536;

fn public(i: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(0x6400_0000 + i as u32)
}

fn private(i: usize) -> Ipv4Addr {
    Ipv4Addr::from_bits(0x0a00_0000 + i as u32)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr) -> Result<Vec<u8>, BenchError> {
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 40_000,
            dst_port: 443,
        }),
    }
    .build(&[0u8; 18])
    .map_err(BenchError::Packet)
}

fn from_host(packet: &[u8]) -> Result<Vec<u8>, BenchError> {
    let mut frame = vec![0u8; GeneveHeader::LEN + 14];
    let at = GeneveRepr::ethernet(VNI)
        .emit(&mut frame)
        .map_err(BenchError::Packet)?;
    EthernetRepr {
        dst: MacAddr([2, 0, 0, 0, 0, 1]),
        src: MacAddr([2, 0, 0, 0, 0, 2]),
        vlan: None,
        ethertype: ethertype::IPV4,
    }
    .emit(frame.get_mut(at..).unwrap_or_default())
    .map_err(BenchError::Packet)?;
    frame.extend_from_slice(packet);
    Ok(frame)
}

/// Packets per second through `f`, in batches of [`LOOKUP_BATCH`] as the
/// node's I/O hands them over.
fn rate(
    edge: &mut Edge,
    frames: &[Vec<u8>],
    budget: Duration,
    f: fn(&mut Edge, &mut [PacketBuf], &mut [EdgeOutput]),
) -> Result<f64, BenchError> {
    let mut bufs: Vec<PacketBuf> = (0..LOOKUP_BATCH).map(|_| PacketBuf::default()).collect();
    let mut out = [EdgeOutput::Drop(EdgeDrop::Malformed); LOOKUP_BATCH];
    for (buf, frame) in bufs.iter_mut().zip(frames) {
        buf.set(frame);
    }
    let n = frames.len().min(LOOKUP_BATCH);
    f(edge, &mut bufs[..n], &mut out[..n]);
    if let Some(dropped) = out[..n].iter().find(|o| matches!(o, EdgeOutput::Drop(_))) {
        return Err(BenchError::NotTranslated(*dropped));
    }
    let (mut n, start) = (0u64, Instant::now());
    while start.elapsed() < budget {
        for chunk in frames.chunks(LOOKUP_BATCH) {
            for (buf, frame) in bufs.iter_mut().zip(chunk) {
                buf.set(frame);
            }
            f(edge, &mut bufs[..chunk.len()], &mut out[..chunk.len()]);
            black_box(&out);
        }
        n += frames.len() as u64;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Measures each direction for `budget` with `addresses` public addresses.
pub fn run(budget: Duration, addresses: usize) -> Result<EdgeFigures, BenchError> {
    let addresses = addresses.max(1);
    let mut edge = Edge::new(MacAddr([2, 0x6f, 0x76, 0x70, 0x63, 1]));
    edge.set_attached(VNI, true);
    for i in 0..addresses {
        edge.upsert(PublicMapping {
            public: public(i),
            vni: VNI,
            private: private(i),
            host: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
            mac: MacAddr([2, 1, 0, 0, 0, 1]),
            nat_nodes: Vec::new(),
        });
    }
    // Spread over the table with a stride coprime to it.
    let picks: Vec<usize> = (0..SAMPLES.min(addresses))
        .map(|k| (k * 7919) % addresses)
        .collect();
    let outside = Ipv4Addr::new(203, 0, 113, 9);
    let inbound = picks
        .iter()
        .map(|&i| udp(outside, public(i)))
        .collect::<Result<Vec<_>, _>>()?;
    let outbound = picks
        .iter()
        .map(|&i| udp(private(i), outside).and_then(|p| from_host(&p)))
        .collect::<Result<Vec<_>, _>>()?;
    let inbound_pps = rate(&mut edge, &inbound, budget, Edge::inbound_batch)?;
    let outbound_pps = rate(&mut edge, &outbound, budget, Edge::outbound_batch)?;
    Ok(EdgeFigures {
        addresses,
        inbound_pps,
        outbound_pps,
    })
}
