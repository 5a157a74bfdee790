//! One VPN tunnel's outside end (spec 10.1: each tunnel has its own
//! outside address), sans-IO on whole IPv4 packets, as an edge's uplink
//! hands them: IKE on UDP 500 and 4500, ESP bare (protocol 50) or in UDP
//! 4500 (RFC 3948) in; IKE answers and ESP out to the customer gateway,
//! and the decrypted inner packets in to the VPC side. It owns the IKE
//! [`Responder`] and the tunnel's child SAs; the newest child carries
//! what the VPC side sends.
//!
//! Every packet refused is a counted [`TunnelDrop`]; none panics.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ip::protocol;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use crate::esp::{self, EspDrop, InboundSa, OutboundSa};
use crate::fragments::{self, FragmentCounters, Reassembler};
use crate::ike::message::TrafficSelector;
use crate::ike::responder::{Down, Entropy, Output, Responder, TunnelConfig};
use crate::natt::{self, IKE_PORT, NATT_PORT, Natt};

/// IP protocol 50.
const ESP: u8 = 50;

/// What the tunnel hands on.
#[derive(Debug)]
pub enum TunnelOutput {
    /// An IPv4 packet to the customer gateway (from our outside address).
    Outside(Vec<u8>),
    /// A decrypted packet from the customer's network, for the VPC side.
    Inside(Vec<u8>),
    /// The IKE SA and a child came up (a rekeyed child too).
    Up,
    /// The tunnel went down: no child is left.
    Down(Down),
}

/// Why a packet was not carried, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelDrop {
    /// Not IPv4, not to our address, a bad header, or another protocol.
    NotOurs,
    /// ESP for an SPI no child has.
    UnknownSpi,
    /// ESP the child refused (replay, integrity…; counted there too).
    Esp,
    /// An inner packet outside the child's selectors.
    Selectors,
    /// The VPC side sent while no child is up.
    NoChild,
    /// An inner packet that is not IPv4.
    NotIpv4,
    /// Fragments that could not be put together (malformed, overlapping,
    /// evicted; timeouts are in the reassembler's counters).
    Fragments,
}

impl TunnelDrop {
    pub const ALL: [TunnelDrop; 7] = [
        TunnelDrop::NotOurs,
        TunnelDrop::UnknownSpi,
        TunnelDrop::Esp,
        TunnelDrop::Selectors,
        TunnelDrop::NoChild,
        TunnelDrop::NotIpv4,
        TunnelDrop::Fragments,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TunnelDrop::NotOurs => "not_ours",
            TunnelDrop::UnknownSpi => "unknown_spi",
            TunnelDrop::Esp => "esp",
            TunnelDrop::Selectors => "selectors",
            TunnelDrop::NoChild => "no_child",
            TunnelDrop::NotIpv4 => "not_ipv4",
            TunnelDrop::Fragments => "fragments",
        }
    }
}

/// A tunnel's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Per [`TunnelDrop`], in [`TunnelDrop::ALL`] order.
    pub drops: [u64; TunnelDrop::ALL.len()],
}

struct Child {
    inbound: InboundSa,
    outbound: OutboundSa,
    local_ts: Vec<TrafficSelector>,
    remote_ts: Vec<TrafficSelector>,
}

/// One tunnel.
pub struct Tunnel {
    responder: Responder,
    outside: Ipv4Addr,
    /// Newest last: it sends.
    children: Vec<Child>,
    /// The customer gateway's fragmented packets, waiting for the rest.
    fragments: Reassembler,
    pub counters: TunnelCounters,
}

impl core::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Tunnel")
            .field("outside", &self.outside)
            .field("children", &self.children.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// Whether one of a child's selectors covers `addr`.
fn covers(selectors: &[TrafficSelector], addr: Ipv4Addr) -> bool {
    selectors.iter().any(|ts| match (ts.start, ts.end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => s <= addr && addr <= e,
        _ => false,
    })
}

/// The source and destination of an inner IPv4 packet.
fn inner_addresses(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if packet.first()? >> 4 != 4 {
        return None;
    }
    let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    Some((Ipv4Addr::from(src), Ipv4Addr::from(dst)))
}

impl Tunnel {
    /// `config.local_ip` is the tunnel's outside address (IPv4).
    pub fn new(config: TunnelConfig) -> Option<Tunnel> {
        let IpAddr::V4(outside) = config.local_ip else {
            return None;
        };
        Some(Tunnel {
            responder: Responder::new(config),
            outside,
            children: Vec::new(),
            fragments: Reassembler::default(),
            counters: TunnelCounters::default(),
        })
    }

    pub fn outside(&self) -> Ipv4Addr {
        self.outside
    }

    /// Whether a child carries traffic.
    pub fn is_up(&self) -> bool {
        !self.children.is_empty()
    }

    /// The reassembler's figures.
    pub fn fragment_counters(&self) -> FragmentCounters {
        self.fragments.counters
    }

    pub fn responder(&self) -> &Responder {
        &self.responder
    }

    fn drop(&mut self, reason: TunnelDrop) -> Vec<TunnelOutput> {
        self.counters.drops[reason as usize] += 1;
        Vec::new()
    }

    /// A packet from the outside to the tunnel's address.
    pub fn from_outside(
        &mut self,
        packet: &[u8],
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<TunnelOutput> {
        if fragments::is_fragment(packet) {
            return match self.fragments.push(packet, now_ms) {
                Ok(Some(whole)) => self.from_outside(&whole, now_ms, rng),
                Ok(None) => Vec::new(),
                Err(_) => self.drop(TunnelDrop::Fragments),
            };
        }
        let Ok((ip, payload)) = Ipv4Repr::parse(packet) else {
            return self.drop(TunnelDrop::NotOurs);
        };
        if ip.dst != self.outside {
            return self.drop(TunnelDrop::NotOurs);
        }
        match ip.protocol {
            ESP => self.esp(payload, now_ms),
            protocol::UDP => {
                let Ok((udp, data)) = UdpRepr::parse(payload) else {
                    return self.drop(TunnelDrop::NotOurs);
                };
                let from = SocketAddr::new(IpAddr::V4(ip.src), udp.src_port);
                match udp.dst_port {
                    IKE_PORT => self.ike(from, false, data, now_ms, rng),
                    NATT_PORT => match natt::classify(data) {
                        Natt::Ike(m) => self.ike(from, true, m, now_ms, rng),
                        Natt::Esp(e) => self.esp(e, now_ms),
                        Natt::Keepalive => Vec::new(),
                        Natt::Malformed => self.drop(TunnelDrop::NotOurs),
                    },
                    _ => self.drop(TunnelDrop::NotOurs),
                }
            }
            _ => self.drop(TunnelDrop::NotOurs),
        }
    }

    fn esp(&mut self, esp_packet: &[u8], now_ms: u64) -> Vec<TunnelOutput> {
        let Some(spi) = esp::spi_of(esp_packet) else {
            return self.drop(TunnelDrop::NotOurs);
        };
        let Some(i) = self.children.iter().position(|c| c.inbound.spi() == spi) else {
            return self.drop(TunnelDrop::UnknownSpi);
        };
        let mut buf = esp_packet.to_vec();
        let opened = match self.children[i].inbound.open(&mut buf) {
            Ok(o) => o,
            Err(EspDrop::Dummy) => return Vec::new(),
            Err(_) => return self.drop(TunnelDrop::Esp),
        };
        self.responder.heard(now_ms);
        let inner = &buf[opened.inner];
        let Some((src, dst)) = inner_addresses(inner) else {
            return self.drop(TunnelDrop::NotIpv4);
        };
        // RFC 4301 §5.2: what arrives must match the child's selectors.
        let c = &self.children[i];
        if !covers(&c.remote_ts, src) || !covers(&c.local_ts, dst) {
            return self.drop(TunnelDrop::Selectors);
        }
        self.counters.packets_in += 1;
        self.counters.bytes_in += inner.len() as u64;
        vec![TunnelOutput::Inside(inner.to_vec())]
    }

    fn ike(
        &mut self,
        from: SocketAddr,
        natt: bool,
        message: &[u8],
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<TunnelOutput> {
        let outputs = self.responder.handle(from, natt, message, now_ms, rng);
        self.apply(outputs)
    }

    /// Time passes (dead peer detection, lifetimes).
    pub fn tick(&mut self, now_ms: u64, rng: &mut dyn Entropy) -> Vec<TunnelOutput> {
        self.fragments.expire(now_ms);
        let outputs = self.responder.tick(now_ms, rng);
        self.apply(outputs)
    }

    fn apply(&mut self, outputs: Vec<Output>) -> Vec<TunnelOutput> {
        let mut out = Vec::new();
        for o in outputs {
            match o {
                Output::Send { to, natt, bytes } => {
                    if let Some(p) = self.udp_to(to, natt, &bytes) {
                        out.push(TunnelOutput::Outside(p));
                    }
                }
                Output::ChildUp(c) => {
                    let c = *c;
                    self.children.push(Child {
                        inbound: c.inbound,
                        outbound: c.outbound,
                        local_ts: c.local_ts,
                        remote_ts: c.remote_ts,
                    });
                    out.push(TunnelOutput::Up);
                }
                Output::ChildDown { inbound_spi } => {
                    self.children.retain(|c| c.inbound.spi() != inbound_spi);
                }
                Output::IkeDown(why) => {
                    self.children.clear();
                    out.push(TunnelOutput::Down(why));
                }
            }
        }
        out
    }

    /// An IKE message in UDP from our outside address.
    fn udp_to(&self, to: SocketAddr, natt: bool, message: &[u8]) -> Option<Vec<u8>> {
        let IpAddr::V4(dst) = to.ip() else {
            return None;
        };
        let mut payload = Vec::with_capacity(message.len() + 4);
        let port = if natt {
            natt::ike_on_natt(message, &mut payload);
            NATT_PORT
        } else {
            payload.extend_from_slice(message);
            IKE_PORT
        };
        udp_packet(self.outside, port, dst, to.port(), &payload)
    }

    /// A packet from the VPC side into the tunnel: the newest child whose
    /// selectors cover it seals it; the customer gateway gets it in UDP
    /// 4500 when it talks NAT-T, else as bare ESP.
    pub fn to_outside(&mut self, inner: &[u8]) -> Result<Vec<u8>, TunnelDrop> {
        let Some((src, dst)) = inner_addresses(inner) else {
            self.counters.drops[TunnelDrop::NotIpv4 as usize] += 1;
            return Err(TunnelDrop::NotIpv4);
        };
        let (Some((peer, natt)), false) = (self.responder.peer(), self.children.is_empty()) else {
            self.counters.drops[TunnelDrop::NoChild as usize] += 1;
            return Err(TunnelDrop::NoChild);
        };
        let Some(child) = self
            .children
            .iter_mut()
            .rev()
            .find(|c| covers(&c.local_ts, src) && covers(&c.remote_ts, dst))
        else {
            self.counters.drops[TunnelDrop::Selectors as usize] += 1;
            return Err(TunnelDrop::Selectors);
        };
        let mut sealed = Vec::with_capacity(inner.len() + 64);
        if child.outbound.seal(inner, esp::IPV4, &mut sealed).is_err() {
            self.counters.drops[TunnelDrop::Esp as usize] += 1;
            return Err(TunnelDrop::Esp);
        }
        let IpAddr::V4(peer_ip) = peer.ip() else {
            return Err(TunnelDrop::NotOurs);
        };
        let packet = if natt {
            udp_packet(self.outside, NATT_PORT, peer_ip, peer.port(), &sealed)
        } else {
            let mut ip = Ipv4Repr::new(self.outside, peer_ip, ESP, 0);
            // A full-size inner packet makes an ESP packet larger than the
            // path's MTU: the outer packet may be fragmented on the way,
            // and the customer gateway reassembles it before opening it.
            ip.frag.dont_fragment = false;
            PacketBuilder {
                ethernet: None,
                ip: IpRepr::V4(ip),
                l4: L4Repr::Raw,
            }
            .build(&sealed)
            .ok()
        };
        let Some(packet) = packet else {
            self.counters.drops[TunnelDrop::Esp as usize] += 1;
            return Err(TunnelDrop::Esp);
        };
        self.counters.packets_out += 1;
        self.counters.bytes_out += inner.len() as u64;
        Ok(packet)
    }
}

fn udp_packet(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut ip = Ipv4Repr::new(src, dst, protocol::UDP, 0);
    // Large IKE messages may need fragmenting on the way.
    ip.frag.dont_fragment = false;
    PacketBuilder {
        ethernet: None,
        ip: IpRepr::V4(ip),
        l4: L4Repr::Udp(UdpRepr {
            src_port: sport,
            dst_port: dport,
        }),
    }
    .build(payload)
    .ok()
}
