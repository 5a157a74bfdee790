//! The VPN gateway role of an edge node (issue 19, spec 10), sans-IO:
//! the Site-to-Site VPN tunnels this edge serves, each an IKEv2/ESP end
//! ([`openvpc_vpn::tunnel`]) on its outside address with a BGP endpoint on
//! its inside address ([`openvpc_vpn::inside`]), and the gateways' tables
//! of which tunnel carries each prefix (chosen by the control plane, spec
//! 10.3).
//!
//! - From the uplink: packets to a tunnel's outside address (IKE, ESP).
//!   What the tunnel decrypts goes to its BGP endpoint (to our inside
//!   address) or into the gateway's VPC: to the host of the ENI holding
//!   the destination, found through the mapping service, as Geneve with
//!   the VPC's VNI; that host applies the network ACL and security groups.
//! - From the underlay: a host's frame to a gateway (its inner destination
//!   MAC is the gateway's, [`gateway_mac`]) is routed by the gateway's
//!   table to a tunnel; sealed here if this edge serves it, else handed
//!   as it is to the edge that does (once: a frame from an edge is never
//!   handed on again).
//! - Reports: per tunnel, IPsec and BGP up or down, since when, and the
//!   routes learned, for `VgwTelemetry` and route propagation.
//!
//! No sockets, threads or clocks: time is an argument (Unix milliseconds).
//! Every refusal is a counted [`VgwDrop`]; nothing panics on input.

use core::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hashbrown::{HashMap, HashSet};
use ipnet::Ipv4Net;
use openvpc_agent::mapping::MappingCache;
use openvpc_bgp::wire::SegmentKind;
use openvpc_bgp::{ExportAttrs, Ipv4Prefix, State};
use openvpc_dataplane::mapping::{Lookup, Mapping};
use openvpc_dataplane::route::gateway_mac;
use openvpc_model::edge::{LearnedRoute, VgwRoute, VpnTunnel, VpnTunnelReport};
use openvpc_model::host::{MappingAnswer, MappingKey};
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};

use crate::translate::{geneve_frame, ipv4_destination, ipv4_of_frame};
use openvpc_packet::tcp::clamp_mss;
use openvpc_vpn::ike::message::TrafficSelector;
use openvpc_vpn::ike::responder::{Down, Entropy, TunnelConfig};
use openvpc_vpn::inside::{BgpEndpoint, tunnel_session_config};
use openvpc_vpn::tunnel::{Tunnel, TunnelCounters, TunnelOutput};
use prefix_trie::PrefixMap;

/// Packets held while the mapping service is asked who holds their
/// destination; beyond this they are dropped (counted).
pub const MAX_HELD: usize = 256;

/// How often the owners of addresses already known are asked again: an
/// ENI deleted or moved stops receiving within this.
pub const MAPPING_REFRESH_MS: u64 = 30_000;

/// How long a held packet waits for its answer.
const HELD_MS: u64 = 2_000;

/// The TCP MSS the gateway clamps SYNs to, both ways (AWS's VPN clamps
/// to 1379): segments that fit the tunnel's 1446-byte MTU after ESP.
pub const TUNNEL_MSS: u16 = 1379;

/// Whether an IPv4 packet is a TCP segment with SYN set (checked before a
/// copy is made to clamp its MSS).
fn is_tcp_syn(p: &[u8]) -> bool {
    let ihl = p.first().map_or(0, |b| usize::from(b & 0x0f) * 4);
    p.get(9) == Some(&openvpc_packet::ip::protocol::TCP)
        && p.get(ihl + 13)
            .is_some_and(|f| f & openvpc_packet::tcp::flags::SYN != 0)
}

/// Why the gateway dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VgwDrop {
    /// A frame or inner packet that does not parse.
    Malformed,
    /// No tunnel carries the destination (the gateway does not know the
    /// prefix, spec 10.3).
    NoRoute,
    /// The tunnel refused it (no child SA up, outside its selectors…;
    /// counted by reason in the tunnel's counters).
    Tunnel,
    /// Decrypted traffic to an address outside the gateway's VPC.
    NotInVpc,
    /// The gateway is not attached to a VPC.
    Detached,
    /// Nobody holds the destination in the VPC.
    NoOwner,
    /// Too many packets waiting for the mapping service, or one waited
    /// too long.
    HeldTooLong,
    /// Another edge handed us a frame for a tunnel we do not serve: the
    /// two disagree for a moment; handing it on again could loop.
    NotServedHere,
    /// A packet to our inside address the BGP endpoint refused.
    Inside,
}

impl VgwDrop {
    pub const ALL: [VgwDrop; 9] = [
        VgwDrop::Malformed,
        VgwDrop::NoRoute,
        VgwDrop::Tunnel,
        VgwDrop::NotInVpc,
        VgwDrop::Detached,
        VgwDrop::NoOwner,
        VgwDrop::HeldTooLong,
        VgwDrop::NotServedHere,
        VgwDrop::Inside,
    ];

    pub fn name(self) -> &'static str {
        match self {
            VgwDrop::Malformed => "malformed",
            VgwDrop::NoRoute => "no_route",
            VgwDrop::Tunnel => "tunnel",
            VgwDrop::NotInVpc => "not_in_vpc",
            VgwDrop::Detached => "detached",
            VgwDrop::NoOwner => "no_owner",
            VgwDrop::HeldTooLong => "held_too_long",
            VgwDrop::NotServedHere => "not_served_here",
            VgwDrop::Inside => "inside",
        }
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VgwOutput {
    /// A bare IPv4 packet out of the uplink (IKE or ESP to a customer
    /// gateway).
    Uplink(Vec<u8>),
    /// A Geneve datagram (header, Ethernet frame) to an underlay address:
    /// a host, or the edge serving a tunnel.
    Underlay { dst: IpAddr, datagram: Vec<u8> },
}

/// The path a gateway's table gives a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Path {
    outside_ip: Ipv4Addr,
    edge: IpAddr,
}

/// The parts of a tunnel's configuration that make it another tunnel:
/// a change of one starts it over; the rest (its VPC's CIDRs, static
/// routes) is applied in place.
fn identity(t: &VpnTunnel) -> impl PartialEq + '_ {
    (
        &t.vpn_connection_id,
        &t.pre_shared_key,
        t.inside_cidr,
        t.customer_ip,
        t.amazon_asn,
        t.customer_asn,
        t.static_routes_only,
        t.local_network,
        t.remote_network,
    )
}

fn selector(net: Ipv4Net) -> TrafficSelector {
    TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: IpAddr::V4(net.network()),
        end: IpAddr::V4(net.broadcast()),
    }
}

/// One tunnel this edge serves.
struct Served {
    spec: VpnTunnel,
    tunnel: Tunnel,
    /// `None` for a static-routes connection.
    bgp: Option<BgpEndpoint>,
    ipsec_up: bool,
    bgp_up: bool,
    last_change_ms: u64,
    /// Why it last went down, as telemetry says it.
    message: String,
}

impl Served {
    fn new(spec: VpnTunnel, now_ms: u64) -> Option<Served> {
        let mut config =
            TunnelConfig::new(spec.pre_shared_key.as_bytes(), IpAddr::V4(spec.outside_ip));
        // The VPC side is ours (`RemoteIpv4NetworkCidr`), the customer's
        // theirs (`LocalIpv4NetworkCidr`).
        config.local_ts = selector(spec.remote_network);
        config.remote_ts = selector(spec.local_network);
        let tunnel = Tunnel::new(config)?;
        let bgp = if spec.static_routes_only {
            None
        } else {
            let ours = Ipv4Addr::from_bits(spec.inside_cidr.network().to_bits().wrapping_add(1));
            let session = tunnel_session_config(ours, spec.amazon_asn, spec.customer_asn);
            match BgpEndpoint::new(spec.inside_cidr, session) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(vpn = %spec.vpn_connection_id, error = %e, "the tunnel's BGP endpoint cannot be made; it carries no BGP");
                    None
                }
            }
        };
        let mut served = Served {
            spec,
            tunnel,
            bgp,
            ipsec_up: false,
            bgp_up: false,
            last_change_ms: now_ms,
            message: String::new(),
        };
        served.announce(now_ms);
        Some(served)
    }

    /// spec 10.3: the gateway announces its VPC's CIDRs to the customer.
    fn announce(&mut self, now_ms: u64) {
        let Some(bgp) = &mut self.bgp else {
            return;
        };
        let prefixes: Vec<Ipv4Prefix> = self
            .spec
            .vpc_cidrs
            .iter()
            .filter_map(|n| Ipv4Prefix::new(n.network(), n.prefix_len()).ok())
            .collect();
        let next_hop = bgp.local_addr();
        bgp.set_announced(prefixes, next_hop, ExportAttrs::default(), since(now_ms));
    }

    fn report(&self) -> VpnTunnelReport {
        let routes = self
            .bgp
            .as_ref()
            .filter(|_| self.bgp_up)
            .map(|b| {
                b.routes()
                    .iter()
                    .filter_map(|(p, r)| {
                        Some(LearnedRoute {
                            prefix: Ipv4Net::new(p.addr(), p.prefix_len()).ok()?,
                            as_path_len: r
                                .as_path
                                .iter()
                                .map(|s| match s.kind {
                                    SegmentKind::Sequence => s.asns.len() as u32,
                                    _ => 1,
                                })
                                .sum(),
                            med: r.med.unwrap_or(0),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        VpnTunnelReport {
            vpn_connection_id: self.spec.vpn_connection_id.clone(),
            outside_ip: self.spec.outside_ip,
            edge_id: self.spec.edge_id.clone(),
            ipsec_up: self.ipsec_up,
            bgp_up: self.bgp_up,
            status_message: self.message.clone(),
            routes,
            last_change_ms: self.last_change_ms,
        }
    }
}

/// The BGP endpoint's clock: any origin will do, Unix milliseconds it is.
fn since(now_ms: u64) -> Duration {
    Duration::from_millis(now_ms)
}

fn down_message(d: Down) -> &'static str {
    match d {
        Down::Deleted => "the customer gateway deleted the IKE SA",
        Down::DeadPeer => "dead peer detection: the customer gateway stopped answering",
        Down::Expired => "the SA's lifetime ran out before the customer gateway rekeyed it",
        Down::AuthenticationFailed => "AUTHENTICATION_FAILED: the pre-shared key does not match",
        Down::Replaced => "the customer gateway started a new IKE SA",
    }
}

/// A packet waiting for the mapping service.
struct Held {
    vni: u32,
    dst: Ipv4Addr,
    packet: Vec<u8>,
    since_ms: u64,
}

/// A tunnel's figures, for the status file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStatus {
    pub report: VpnTunnelReport,
    pub bgp_state: Option<State>,
    pub counters: TunnelCounters,
}

/// The VPN gateway role of one edge node.
pub struct Vgw {
    edge_id: String,
    router_mac: MacAddr,
    served: HashMap<Ipv4Addr, Served>,
    /// VNI → the gateway's table: prefix → tunnel and its edge.
    tables: HashMap<u32, PrefixMap<Ipv4Net, Path>>,
    /// A gateway's MAC → its VPC's VNI.
    macs: HashMap<MacAddr, u32>,
    /// The edges serving tunnels: a frame from one is never handed on.
    edges: HashSet<IpAddr>,
    mapping: MappingCache,
    /// Keys to ask the mapping service about, beyond the cache's misses.
    refresh: Vec<MappingKey>,
    last_refresh_ms: u64,
    held: Vec<Held>,
    drops: [u64; VgwDrop::ALL.len()],
    /// Packets decrypted into the VPC, sealed into a tunnel, handed to
    /// another edge.
    pub to_vpc: u64,
    pub to_tunnel: u64,
    pub handed_on: u64,
    reports_changed: bool,
}

impl core::fmt::Debug for Vgw {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vgw")
            .field("edge_id", &self.edge_id)
            .field("tunnels", &self.served.len())
            .field("gateways", &self.tables.len())
            .finish_non_exhaustive()
    }
}

impl Vgw {
    pub fn new(edge_id: &str, router_mac: MacAddr) -> Self {
        Vgw {
            edge_id: edge_id.to_owned(),
            router_mac,
            served: HashMap::new(),
            tables: HashMap::new(),
            macs: HashMap::new(),
            edges: HashSet::new(),
            mapping: MappingCache::default(),
            refresh: Vec::new(),
            last_refresh_ms: 0,
            held: Vec::new(),
            drops: [0; VgwDrop::ALL.len()],
            to_vpc: 0,
            to_tunnel: 0,
            handed_on: 0,
            reports_changed: false,
        }
    }

    /// Takes the region's tunnels and gateways' routes, whole: serves the
    /// tunnels given to this edge (keeping the state of those that stay
    /// the same tunnel) and forgets the rest.
    pub fn apply(&mut self, tunnels: &[VpnTunnel], routes: &[VgwRoute], now_ms: u64) {
        let mine: HashMap<Ipv4Addr, &VpnTunnel> = tunnels
            .iter()
            .filter(|t| t.edge_id == self.edge_id)
            .map(|t| (t.outside_ip, t))
            .collect();
        let before = self.served.len();
        self.served.retain(|ip, s| {
            mine.get(ip)
                .is_some_and(|t| identity(t) == identity(&s.spec))
        });
        let mut changed = self.served.len() != before;
        for (ip, t) in mine {
            match self.served.get_mut(&ip) {
                Some(s) => {
                    if s.spec != *t {
                        s.spec = t.clone();
                        s.announce(now_ms);
                    }
                }
                None => {
                    if let Some(s) = Served::new(t.clone(), now_ms) {
                        tracing::info!(vpn = %t.vpn_connection_id, outside = %ip, "serving VPN tunnel");
                        self.served.insert(ip, s);
                        changed = true;
                    }
                }
            }
        }
        self.reports_changed |= changed;
        self.tables.clear();
        self.macs.clear();
        for r in routes {
            self.tables.entry(r.vni).or_default().insert(
                r.prefix.trunc(),
                Path {
                    outside_ip: r.outside_ip,
                    edge: r.edge_underlay,
                },
            );
            self.macs.insert(gateway_mac(&r.vpn_gateway_id), r.vni);
        }
        for t in tunnels {
            if let Some(vni) = t.vni {
                self.macs.insert(gateway_mac(&t.vpn_gateway_id), vni);
            }
        }
        self.edges = tunnels.iter().map(|t| t.edge_underlay).collect();
    }

    /// Whether a packet to `dst` from the uplink is a tunnel's.
    pub fn serves(&self, dst: Ipv4Addr) -> bool {
        self.served.contains_key(&dst)
    }

    /// Whether any gateway routes through this edge at all (the worker
    /// looks at frames' MACs only then).
    pub fn is_active(&self) -> bool {
        !self.macs.is_empty() || !self.served.is_empty()
    }

    /// The outside addresses this edge serves: it announces each as a /32.
    pub fn outside_ips(&self) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self.served.keys().copied().collect();
        ips.sort();
        ips
    }

    pub fn drops(&self, reason: VgwDrop) -> u64 {
        self.drops[reason as usize]
    }

    fn drop(&mut self, reason: VgwDrop) {
        self.drops[reason as usize] += 1;
    }

    /// A packet from the uplink to a tunnel's outside address.
    pub fn from_uplink(
        &mut self,
        packet: &[u8],
        now_ms: u64,
        rng: &mut dyn Entropy,
        out: &mut Vec<VgwOutput>,
    ) {
        let Some(dst) = ipv4_destination(packet) else {
            self.drop(VgwDrop::Malformed);
            return;
        };
        let Some(s) = self.served.get_mut(&dst) else {
            self.drop(VgwDrop::NoRoute);
            return;
        };
        let outputs = s.tunnel.from_outside(packet, now_ms, rng);
        self.tunnel_outputs(dst, outputs, now_ms, out);
    }

    /// A Geneve datagram from `from` on the underlay: taken (true) if its
    /// inner frame is for a gateway, else left for the internet gateway's
    /// translation.
    pub fn from_underlay(
        &mut self,
        datagram: &[u8],
        from: IpAddr,
        out: &mut Vec<VgwOutput>,
    ) -> bool {
        // Fixed places only: every internet gateway's datagram passes here
        // first while this edge serves a gateway.
        let Some((frame_vni, frame)) = geneve_frame(datagram) else {
            return false;
        };
        let Some(mac) = frame
            .get(..6)
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .map(MacAddr)
        else {
            return false;
        };
        let Some(&vni) = self.macs.get(&mac) else {
            return false;
        };
        if vni != frame_vni {
            // A frame naming another VPC's gateway: not ours to carry.
            self.drop(VgwDrop::NoRoute);
            return true;
        }
        let Some((inner, dst)) =
            ipv4_of_frame(frame).and_then(|ip| Some((ip, ipv4_destination(ip)?)))
        else {
            self.drop(VgwDrop::Malformed);
            return true;
        };
        let path = self
            .tables
            .get(&vni)
            .and_then(|t| t.get_lpm(&Ipv4Net::from(dst)))
            .map(|(_, p)| *p);
        let Some(path) = path else {
            self.drop(VgwDrop::NoRoute);
            return true;
        };
        if let Some(s) = self.served.get_mut(&path.outside_ip) {
            let clamped;
            let inner = if is_tcp_syn(inner) {
                let mut copy = inner.to_vec();
                clamp_mss(&mut copy, TUNNEL_MSS);
                clamped = copy;
                &clamped[..]
            } else {
                inner
            };
            match s.tunnel.to_outside(inner) {
                Ok(sealed) => {
                    self.to_tunnel += 1;
                    out.push(VgwOutput::Uplink(sealed));
                }
                Err(_) => self.drop(VgwDrop::Tunnel),
            }
        } else if self.edges.contains(&from) {
            self.drop(VgwDrop::NotServedHere);
        } else {
            self.handed_on += 1;
            out.push(VgwOutput::Underlay {
                dst: path.edge,
                datagram: datagram.to_vec(),
            });
        }
        true
    }

    /// Time passes: the tunnels' timers (dead peer detection, lifetimes),
    /// the BGP endpoints', held packets' and the mapping refresh.
    pub fn tick(&mut self, now_ms: u64, rng: &mut dyn Entropy, out: &mut Vec<VgwOutput>) {
        let ips: Vec<Ipv4Addr> = self.served.keys().copied().collect();
        for ip in ips {
            let Some(s) = self.served.get_mut(&ip) else {
                continue;
            };
            let outputs = s.tunnel.tick(now_ms, rng);
            self.tunnel_outputs(ip, outputs, now_ms, out);
            self.poll_bgp(ip, now_ms, out);
        }
        let before = self.held.len();
        self.held
            .retain(|h| now_ms.saturating_sub(h.since_ms) < HELD_MS);
        let expired = before - self.held.len();
        self.drops[VgwDrop::HeldTooLong as usize] += expired as u64;
        if now_ms.saturating_sub(self.last_refresh_ms) >= MAPPING_REFRESH_MS {
            self.last_refresh_ms = now_ms;
            self.refresh = self.mapping.known_keys();
        }
    }

    /// The keys to ask the mapping service about now.
    pub fn take_wanted(&mut self) -> Vec<MappingKey> {
        let mut keys = self.mapping.take_wanted();
        keys.append(&mut self.refresh);
        keys
    }

    /// The mapping service's answers: held packets whose owner is now
    /// known go on.
    pub fn answer(&mut self, answers: &[MappingAnswer], now_ms: u64, out: &mut Vec<VgwOutput>) {
        self.mapping.set_now(now_ms);
        self.mapping.answer(answers);
        let held = std::mem::take(&mut self.held);
        for h in held {
            self.deliver_to_vpc(h.vni, h.dst, h.packet, h.since_ms, now_ms, out);
        }
    }

    /// What each tunnel served here says now.
    pub fn reports(&self) -> Vec<VpnTunnelReport> {
        let mut reports: Vec<VpnTunnelReport> = self.served.values().map(Served::report).collect();
        reports.sort_by_key(|r| r.outside_ip);
        reports
    }

    /// Whether a report changed since the last call.
    pub fn take_reports_changed(&mut self) -> bool {
        std::mem::take(&mut self.reports_changed)
    }

    /// Each tunnel's report, BGP state and counters.
    pub fn status(&self) -> Vec<TunnelStatus> {
        let mut all: Vec<TunnelStatus> = self
            .served
            .values()
            .map(|s| TunnelStatus {
                report: s.report(),
                bgp_state: s.bgp.as_ref().map(BgpEndpoint::state),
                counters: s.tunnel.counters,
            })
            .collect();
        all.sort_by_key(|t| t.report.outside_ip);
        all
    }

    fn tunnel_outputs(
        &mut self,
        ip: Ipv4Addr,
        outputs: Vec<TunnelOutput>,
        now_ms: u64,
        out: &mut Vec<VgwOutput>,
    ) {
        let mut inside = false;
        for o in outputs {
            let Some(s) = self.served.get_mut(&ip) else {
                return;
            };
            match o {
                TunnelOutput::Outside(p) => out.push(VgwOutput::Uplink(p)),
                TunnelOutput::Up => {
                    if !s.ipsec_up {
                        s.ipsec_up = true;
                        s.last_change_ms = now_ms;
                        s.message.clear();
                        self.reports_changed = true;
                        tracing::info!(vpn = %s.spec.vpn_connection_id, outside = %ip, "VPN tunnel up");
                    }
                }
                TunnelOutput::Down(why) => {
                    if s.ipsec_up || s.message != down_message(why) {
                        tracing::info!(vpn = %s.spec.vpn_connection_id, outside = %ip, reason = down_message(why), "VPN tunnel down");
                        s.ipsec_up = false;
                        s.bgp_up = false;
                        s.last_change_ms = now_ms;
                        s.message = down_message(why).to_owned();
                        self.reports_changed = true;
                    }
                    if let Some(b) = &mut s.bgp {
                        b.tunnel_down(since(now_ms));
                    }
                }
                TunnelOutput::Inside(mut p) => {
                    clamp_mss(&mut p, TUNNEL_MSS);
                    let ours = s.bgp.as_ref().map(BgpEndpoint::local_addr);
                    match (s.bgp.as_mut(), ipv4_destination(&p)) {
                        (Some(b), Some(d)) if Some(d) == ours => {
                            if b.receive(&p, since(now_ms)).is_err() {
                                self.drops[VgwDrop::Inside as usize] += 1;
                            }
                            inside = true;
                        }
                        (_, Some(d)) => match s.spec.vni {
                            None => self.drop(VgwDrop::Detached),
                            Some(_) if !s.spec.vpc_cidrs.iter().any(|c| c.contains(&d)) => {
                                self.drop(VgwDrop::NotInVpc)
                            }
                            Some(vni) => self.deliver_to_vpc(vni, d, p, now_ms, now_ms, out),
                        },
                        (_, None) => self.drop(VgwDrop::Malformed),
                    }
                }
            }
        }
        if inside {
            self.poll_bgp(ip, now_ms, out);
        }
    }

    /// Runs a tunnel's BGP endpoint: what it sends is sealed into the
    /// tunnel; a session going up or down is news.
    fn poll_bgp(&mut self, ip: Ipv4Addr, now_ms: u64, out: &mut Vec<VgwOutput>) {
        let Some(s) = self.served.get_mut(&ip) else {
            return;
        };
        let Some(b) = &mut s.bgp else {
            return;
        };
        for p in b.poll(since(now_ms)) {
            match s.tunnel.to_outside(&p) {
                Ok(sealed) => out.push(VgwOutput::Uplink(sealed)),
                Err(_) => self.drops[VgwDrop::Tunnel as usize] += 1,
            }
        }
        let up = b.state() == State::Established;
        let routes_changed = b.take_routes_changed();
        while b.poll_event().is_some() {}
        if up != s.bgp_up {
            tracing::info!(vpn = %s.spec.vpn_connection_id, outside = %ip, up, "VPN tunnel BGP session");
            s.bgp_up = up;
            s.last_change_ms = now_ms;
            if !up {
                s.message = b
                    .session()
                    .last_down()
                    .map(|d| format!("BGP: {d:?}"))
                    .unwrap_or_default();
            }
            self.reports_changed = true;
        }
        if routes_changed {
            self.reports_changed = true;
        }
    }

    /// A decrypted packet into the gateway's VPC: to the host holding its
    /// destination, or held while the mapping service is asked.
    fn deliver_to_vpc(
        &mut self,
        vni: u32,
        dst: Ipv4Addr,
        packet: Vec<u8>,
        since_ms: u64,
        now_ms: u64,
        out: &mut Vec<VgwOutput>,
    ) {
        self.mapping.set_now(now_ms);
        match self.mapping.lookup(vni, IpAddr::V4(dst)) {
            Lookup::Found(owner) => {
                let mut datagram =
                    vec![0u8; GeneveHeader::LEN + EthernetHeader::LEN + packet.len()];
                let eth = EthernetRepr {
                    dst: owner.mac,
                    src: self.router_mac,
                    vlan: None,
                    ethertype: ethertype::IPV4,
                };
                let emitted = GeneveRepr::ethernet(vni)
                    .emit(&mut datagram)
                    .and_then(|at| {
                        let rest = datagram.get_mut(at..).unwrap_or_default();
                        eth.emit(rest).map(|n| at + n)
                    });
                match emitted {
                    Ok(n) if n == GeneveHeader::LEN + EthernetHeader::LEN => {
                        if let Some(body) = datagram.get_mut(n..) {
                            body.copy_from_slice(&packet);
                        }
                        self.to_vpc += 1;
                        out.push(VgwOutput::Underlay {
                            dst: owner.underlay,
                            datagram,
                        });
                    }
                    _ => self.drop(VgwDrop::Malformed),
                }
            }
            Lookup::Pending if self.held.len() < MAX_HELD => self.held.push(Held {
                vni,
                dst,
                packet,
                since_ms,
            }),
            Lookup::Pending => self.drop(VgwDrop::HeldTooLong),
            Lookup::Absent => self.drop(VgwDrop::NoOwner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VNI: u32 = 77;
    const ME: &str = "edge-a";

    fn tunnel(outside: &str, edge: &str, underlay: &str) -> VpnTunnel {
        VpnTunnel {
            vpn_connection_id: "vpn-1".into(),
            vpn_gateway_id: "vgw-1".into(),
            index: 0,
            outside_ip: outside.parse().unwrap(),
            customer_ip: "198.51.100.20".parse().unwrap(),
            inside_cidr: "169.254.10.0/30".parse().unwrap(),
            pre_shared_key: "key_one_1".into(),
            amazon_asn: 64512,
            customer_asn: 65000,
            static_routes_only: false,
            static_routes: vec![],
            local_network: Ipv4Net::default(),
            remote_network: Ipv4Net::default(),
            vni: Some(VNI),
            vpc_cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            edge_id: edge.into(),
            edge_underlay: underlay.parse().unwrap(),
        }
    }

    fn route(prefix: &str, outside: &str, edge: &str) -> VgwRoute {
        VgwRoute {
            vpn_gateway_id: "vgw-1".into(),
            vni: VNI,
            prefix: prefix.parse().unwrap(),
            outside_ip: outside.parse().unwrap(),
            edge_underlay: edge.parse().unwrap(),
        }
    }

    /// A host's Geneve datagram carrying `dst` to the gateway (its MAC).
    fn frame(vni: u32, mac: MacAddr, dst: &str) -> Vec<u8> {
        let mut d = vec![0u8; GeneveHeader::LEN + EthernetHeader::LEN + 20];
        let at = GeneveRepr::ethernet(vni).emit(&mut d).unwrap();
        EthernetRepr {
            dst: mac,
            src: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan: None,
            ethertype: ethertype::IPV4,
        }
        .emit(&mut d[at..])
        .unwrap();
        let ip = &mut d[at + EthernetHeader::LEN..];
        ip[0] = 0x45;
        ip[12..16].copy_from_slice(&[10, 0, 1, 10]);
        ip[16..20].copy_from_slice(&dst.parse::<Ipv4Addr>().unwrap().octets());
        d
    }

    fn vgw() -> Vgw {
        let mut v = Vgw::new(ME, MacAddr([2, 0, 0, 0, 0, 0xfe]));
        v.apply(
            &[
                tunnel("203.0.113.5", ME, "10.254.0.2"),
                VpnTunnel {
                    index: 1,
                    inside_cidr: "169.254.11.0/30".parse().unwrap(),
                    ..tunnel("203.0.113.6", "edge-b", "10.254.0.3")
                },
            ],
            &[
                route("172.16.0.0/16", "203.0.113.5", "10.254.0.2"),
                route("172.17.0.0/16", "203.0.113.6", "10.254.0.3"),
            ],
            1_000,
        );
        v
    }

    const HOST: &str = "192.0.2.1";

    // An edge serves the tunnels given to it and only those; it announces
    // their outside addresses, and reports each (down until IKE is done).
    #[test]
    fn an_edge_serves_its_own_tunnels() {
        let mut v = vgw();
        assert_eq!(
            v.outside_ips(),
            vec!["203.0.113.5".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(v.serves("203.0.113.5".parse().unwrap()));
        assert!(!v.serves("203.0.113.6".parse().unwrap()));
        assert!(v.take_reports_changed());
        let reports = v.reports();
        assert_eq!(reports.len(), 1);
        assert!(!reports[0].ipsec_up && !reports[0].bgp_up);
        assert_eq!(reports[0].edge_id, ME);
        // The same tunnel with another VPC CIDR keeps its state; another
        // key makes it another tunnel.
        let mut same = tunnel("203.0.113.5", ME, "10.254.0.2");
        same.vpc_cidrs.push("10.1.0.0/16".parse().unwrap());
        v.apply(std::slice::from_ref(&same), &[], 2_000);
        assert!(!v.take_reports_changed());
        same.pre_shared_key = "another_key".into();
        v.apply(std::slice::from_ref(&same), &[], 3_000);
        assert!(v.take_reports_changed());
        v.apply(&[], &[], 4_000);
        assert!(v.outside_ips().is_empty());
        assert!(!v.is_active());
    }

    // A VPC's frame to the gateway goes by the gateway's table: to a tunnel
    // here (refused and counted while no child SA is up), handed as it is
    // to the edge serving another tunnel, never handed on twice, and
    // dropped without a route. Frames to other MACs are not the gateway's.
    #[test]
    fn frames_follow_the_gateways_table() {
        let mut v = vgw();
        let mac = gateway_mac("vgw-1");
        let host: IpAddr = HOST.parse().unwrap();
        let mut out = Vec::new();

        assert!(v.from_underlay(&frame(VNI, mac, "172.16.1.10"), host, &mut out));
        assert!(out.is_empty());
        assert_eq!(v.drops(VgwDrop::Tunnel), 1, "no child SA yet");

        let handed = frame(VNI, mac, "172.17.1.10");
        assert!(v.from_underlay(&handed, host, &mut out));
        assert_eq!(
            out,
            vec![VgwOutput::Underlay {
                dst: "10.254.0.3".parse().unwrap(),
                datagram: handed.clone(),
            }]
        );
        assert_eq!(v.handed_on, 1);
        out.clear();
        // From an edge: not handed on again.
        assert!(v.from_underlay(&handed, "10.254.0.3".parse().unwrap(), &mut out));
        assert!(out.is_empty());
        assert_eq!(v.drops(VgwDrop::NotServedHere), 1);

        assert!(v.from_underlay(&frame(VNI, mac, "192.168.1.1"), host, &mut out));
        assert_eq!(v.drops(VgwDrop::NoRoute), 1);
        // Another VPC naming this gateway's MAC gets nothing through it.
        assert!(v.from_underlay(&frame(VNI + 1, mac, "172.16.1.10"), host, &mut out));
        assert_eq!(v.drops(VgwDrop::NoRoute), 2);
        assert!(out.is_empty());

        let igw_bound = frame(VNI, MacAddr([2, 0, 0, 0, 0, 0xfe]), "8.8.8.8");
        assert!(!v.from_underlay(&igw_bound, host, &mut out));
        assert!(!v.from_underlay(&[0u8; 3], host, &mut out));
    }

    // Whatever arrives at a tunnel's address is the tunnel's to refuse and
    // count; nothing panics.
    #[test]
    fn garbage_from_the_uplink_is_counted() {
        let mut v = vgw();
        struct Zero;
        impl Entropy for Zero {
            fn fill(&mut self, buf: &mut [u8]) {
                buf.fill(0);
            }
        }
        let mut out = Vec::new();
        let mut packet = vec![0x45u8; 40];
        packet[16..20].copy_from_slice(&[203, 0, 113, 5]);
        v.from_uplink(&packet, 1_000, &mut Zero, &mut out);
        v.from_uplink(&[1, 2, 3], 1_000, &mut Zero, &mut out);
        v.tick(2_000, &mut Zero, &mut out);
        assert!(out.is_empty());
        assert_eq!(v.drops(VgwDrop::Malformed), 1);
        let status = v.status();
        assert_eq!(status[0].counters.drops.iter().sum::<u64>(), 1);
    }
}
