//! 1:1 translation between public and private IPv4 addresses (spec 5.1,
//! 5.3): the table of public addresses the region's control plane hands an
//! edge node, and the two directions a packet crosses it.
//!
//! - Outbound: a host encapsulates to an edge a packet whose route target
//!   is an internet gateway. The edge takes the private source of the inner
//!   packet, finds the public address held for it in that VPC, rewrites the
//!   source and sends the bare IPv4 packet out of its uplink.
//! - Inbound: a packet to a public address is rewritten to the private
//!   address and encapsulated (Geneve, the VPC's VNI) to the host of the ENI
//!   that holds it; that host applies the network ACL and security groups.
//! - A NAT gateway's Elastic IP is held the same way, but a reply to it goes
//!   to the hyperplane node that owns its port: each place of the gateway's
//!   shard owns a slice of every address's ports
//!   (`openvpc_hyperplane::nat::owner_of`), so the port alone (the TCP or
//!   UDP destination port, the ICMP echo identifier, or the source port
//!   quoted in an ICMP error) names the node, with no shared state. The
//!   control plane lists, per place, the node that serves it (a dead node's
//!   buddy in its place).
//!
//! Stateless: every decision reads only the table, so any edge node can
//! take any packet of any flow. What cannot be translated is a counted
//! drop, as AWS drops it: a packet from an instance with no public address,
//! to a public address no one holds, or of a VPC without an attached
//! internet gateway.

use core::net::{IpAddr, Ipv4Addr};

use hashbrown::{HashMap, HashSet};
use openvpc_dataplane::buf::PacketBuf;
use openvpc_dataplane::layer::Rewrite;
use openvpc_dataplane::transform;
use openvpc_hyperplane::nat::owner_of;
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::flow::{self, FlowHasher, entropy_port};
use openvpc_packet::geneve::{GeneveHeader, GeneveRepr};
use openvpc_packet::ip::protocol;

/// The most places a NAT gateway's shard may have: the NAT core counts
/// them in a `u8` (`owner_of`).
pub const MAX_NAT_PLACES: usize = u8::MAX as usize;

/// A public address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicMapping {
    pub public: Ipv4Addr,
    /// The VPC's VNI.
    pub vni: u32,
    pub private: Ipv4Addr,
    /// The underlay address of the host that runs the ENI.
    pub host: IpAddr,
    /// The ENI's MAC, the inner destination of inbound packets.
    pub mac: MacAddr,
    /// For a NAT gateway's Elastic IP: per place of its shard, the node
    /// serving the place's port slice; a reply goes to
    /// `nat_nodes[owner_of(port, len)]` instead of `host`. Empty for an ENI
    /// (at most [`MAX_NAT_PLACES`] are kept).
    pub nat_nodes: Vec<IpAddr>,
}

/// What the table keeps of a mapping: small and `Copy`, so the batch calls
/// copy it out of the table in their lookup pass. A NAT gateway's node list
/// lives in [`Edge`]'s side table, named by `nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    vni: u32,
    private: Ipv4Addr,
    host: IpAddr,
    mac: MacAddr,
    nat: Option<u32>,
}

/// Why the edge dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeDrop {
    /// The packet or its encapsulation failed to parse.
    Malformed,
    /// Only IPv4 crosses the edge (IPv6 goes through egress-only gateways,
    /// which are not served yet).
    NotIpv4,
    /// Sent out through an internet gateway from an address that holds no
    /// public IP (spec 5.1: such traffic does not leave the VPC).
    NoPublicIp,
    /// Sent to a public address that nobody holds.
    UnknownPublicIp,
    /// The VPC has no internet gateway attached.
    NoInternetGateway,
    /// The translation could not be applied.
    RewriteFailed,
}

impl EdgeDrop {
    /// Every reason, in counter order.
    pub const ALL: [EdgeDrop; 6] = [
        EdgeDrop::Malformed,
        EdgeDrop::NotIpv4,
        EdgeDrop::NoPublicIp,
        EdgeDrop::UnknownPublicIp,
        EdgeDrop::NoInternetGateway,
        EdgeDrop::RewriteFailed,
    ];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            EdgeDrop::Malformed => "malformed",
            EdgeDrop::NotIpv4 => "not_ipv4",
            EdgeDrop::NoPublicIp => "no_public_ip",
            EdgeDrop::UnknownPublicIp => "unknown_public_ip",
            EdgeDrop::NoInternetGateway => "no_internet_gateway",
            EdgeDrop::RewriteFailed => "rewrite_failed",
        }
    }
}

/// A change to an edge's table, as the control plane's watch hands it (see
/// [`Edge::apply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableUpdate {
    /// `upserts` is the whole table: every other address is dropped.
    pub full: bool,
    pub upserts: Vec<PublicMapping>,
    pub removals: Vec<Ipv4Addr>,
    /// Every VNI with an internet gateway attached, whole; `None` keeps
    /// the current set.
    pub attached: Option<Vec<u32>>,
}

/// Where a translated packet goes; the buffer holds it, rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeOutput {
    /// Out of the uplink: the buffer is a bare IPv4 packet.
    Uplink,
    /// To a host over the underlay: the buffer is a Geneve header and the
    /// inner Ethernet frame, sent as one UDP datagram from `src_port`.
    Underlay {
        dst: IpAddr,
        src_port: u16,
    },
    Drop(EdgeDrop),
}

/// Packets whose table lookups run back to back in the batch calls.
pub const LOOKUP_BATCH: usize = 32;

/// The destination of a bare IPv4 packet: what inbound looks up (and what
/// names a VPN tunnel's outside address). Read from the header's fixed
/// place before the packet is parsed (the parse that follows checks the
/// rest).
pub(crate) fn ipv4_destination(packet: &[u8]) -> Option<Ipv4Addr> {
    if packet.first()? >> 4 != 4 {
        return None;
    }
    let dst: [u8; 4] = packet.get(16..20)?.try_into().ok()?;
    Some(Ipv4Addr::from(dst))
}

/// The VNI and the inner Ethernet frame of a Geneve datagram, read from
/// fixed places before anything is parsed.
pub(crate) fn geneve_frame(datagram: &[u8]) -> Option<(u32, &[u8])> {
    let options = usize::from(datagram.first()? & 0x3f) * 4;
    let vni = datagram.get(4..7)?;
    let vni = u32::from_be_bytes([0, vni[0], vni[1], vni[2]]);
    Some((vni, datagram.get(GeneveHeader::LEN + options..)?))
}

/// The inner packet of an untagged IPv4 Ethernet frame.
pub(crate) fn ipv4_of_frame(frame: &[u8]) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(EthernetHeader::LEN..)?;
    (ip.first()? >> 4 == 4).then_some(ip)
}

/// The (VNI, inner IPv4 source) of a Geneve datagram carrying an untagged
/// IPv4 frame: what outbound looks up; read from fixed places, as
/// [`ipv4_destination`].
fn outbound_key(datagram: &[u8]) -> Option<(u32, Ipv4Addr)> {
    let (vni, frame) = geneve_frame(datagram)?;
    let ip = ipv4_of_frame(frame)?;
    let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
    Some((vni, Ipv4Addr::from(src)))
}

/// One edge node's translation state and counters.
#[derive(Debug)]
pub struct Edge {
    by_public: HashMap<Ipv4Addr, Held>,
    by_private: HashMap<(u32, Ipv4Addr), Ipv4Addr>,
    /// The node lists of NAT gateways' Elastic IPs, by `Held::nat`.
    nat_nodes: Vec<Box<[IpAddr]>>,
    /// Slots of `nat_nodes` free for reuse.
    nat_free: Vec<u32>,
    /// VNIs of VPCs with an attached internet gateway.
    attached: HashSet<u32>,
    /// The source MAC of inbound inner frames: the VPC router's.
    router_mac: MacAddr,
    hasher: FlowHasher,
    drops: [u64; EdgeDrop::ALL.len()],
    /// Packets translated, outbound and inbound.
    pub outbound: u64,
    pub inbound: u64,
}

impl Edge {
    pub fn new(router_mac: MacAddr) -> Self {
        Edge {
            by_public: HashMap::new(),
            by_private: HashMap::new(),
            nat_nodes: Vec::new(),
            nat_free: Vec::new(),
            attached: HashSet::new(),
            router_mac,
            hasher: FlowHasher::new(),
            drops: [0; EdgeDrop::ALL.len()],
            outbound: 0,
            inbound: 0,
        }
    }

    /// Holds `m.public` for `m.private` (replacing whoever held either).
    pub fn upsert(&mut self, m: PublicMapping) {
        self.remove(m.public);
        if let Some(old) = self.by_private.get(&(m.vni, m.private)).copied() {
            self.remove(old);
        }
        let nat = (!m.nat_nodes.is_empty()).then(|| {
            let mut nodes = m.nat_nodes;
            nodes.truncate(MAX_NAT_PLACES);
            let nodes = nodes.into_boxed_slice();
            match self.nat_free.pop() {
                Some(slot) => {
                    self.nat_nodes[slot as usize] = nodes;
                    slot
                }
                None => {
                    self.nat_nodes.push(nodes);
                    (self.nat_nodes.len() - 1) as u32
                }
            }
        });
        self.by_private.insert((m.vni, m.private), m.public);
        self.by_public.insert(
            m.public,
            Held {
                vni: m.vni,
                private: m.private,
                host: m.host,
                mac: m.mac,
                nat,
            },
        );
    }

    /// Stops translating `public`; true if it was held.
    pub fn remove(&mut self, public: Ipv4Addr) -> bool {
        match self.by_public.remove(&public) {
            Some(m) => {
                self.by_private.remove(&(m.vni, m.private));
                if let Some(slot) = m.nat {
                    if let Some(nodes) = self.nat_nodes.get_mut(slot as usize) {
                        *nodes = Box::default();
                    }
                    self.nat_free.push(slot);
                }
                true
            }
            None => false,
        }
    }

    /// Whether the VPC of `vni` has an internet gateway attached.
    pub fn set_attached(&mut self, vni: u32, attached: bool) {
        if attached {
            self.attached.insert(vni);
        } else {
            self.attached.remove(&vni);
        }
    }

    /// Applies a change from the control plane: a full table replaces
    /// every address and attachment held; otherwise removals go first, then
    /// upserts (so an address moved within one change ends at its new
    /// holder). The attached VNIs, when given, replace the set whole.
    pub fn apply(&mut self, update: &TableUpdate) {
        if update.full {
            self.by_public.clear();
            self.by_private.clear();
            self.nat_nodes.clear();
            self.nat_free.clear();
        }
        for public in &update.removals {
            self.remove(*public);
        }
        for m in &update.upserts {
            self.upsert(m.clone());
        }
        if let Some(vnis) = &update.attached {
            self.attached.clear();
            self.attached.extend(vnis.iter().copied());
        }
    }

    /// VPCs with an internet gateway attached.
    pub fn attached_len(&self) -> usize {
        self.attached.len()
    }

    /// Public addresses held.
    pub fn len(&self) -> usize {
        self.by_public.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_public.is_empty()
    }

    /// The drop counter of `reason`.
    pub fn drops(&self, reason: EdgeDrop) -> u64 {
        self.drops[reason as usize]
    }

    fn drop(&mut self, reason: EdgeDrop) -> EdgeOutput {
        self.drops[reason as usize] += 1;
        EdgeOutput::Drop(reason)
    }

    /// A Geneve datagram (the UDP payload) from a host, for the outside.
    pub fn outbound(&mut self, buf: &mut PacketBuf) -> EdgeOutput {
        let public = outbound_key(buf.data()).and_then(|k| self.by_private.get(&k).copied());
        self.outbound_with(buf, public)
    }

    /// [`Edge::outbound`] over a batch, `out[i]` for `bufs[i]`. The table
    /// lookups of the batch run back to back before the packets are
    /// rewritten, so their cache misses overlap instead of queueing one per
    /// packet (DESIGN.md, "Where the limit is").
    pub fn outbound_batch(&mut self, bufs: &mut [PacketBuf], out: &mut [EdgeOutput]) {
        self.batch(
            bufs,
            out,
            outbound_key,
            |edge, k| edge.by_private.get(&k).copied(),
            Edge::outbound_with,
        );
    }

    /// A batch in three passes: every packet's key, every table lookup,
    /// then every rewrite.
    fn batch<K: Copy, V: Copy>(
        &mut self,
        bufs: &mut [PacketBuf],
        out: &mut [EdgeOutput],
        key: impl Fn(&[u8]) -> Option<K>,
        lookup: impl Fn(&Edge, K) -> Option<V>,
        translate: impl Fn(&mut Edge, &mut PacketBuf, Option<V>) -> EdgeOutput,
    ) {
        for (bufs, out) in bufs
            .chunks_mut(LOOKUP_BATCH)
            .zip(out.chunks_mut(LOOKUP_BATCH))
        {
            let mut keys = [None; LOOKUP_BATCH];
            for (k, buf) in keys.iter_mut().zip(bufs.iter()) {
                *k = key(buf.data());
            }
            let mut found = [None; LOOKUP_BATCH];
            for (f, k) in found.iter_mut().zip(keys) {
                *f = k.and_then(|k| lookup(self, k));
            }
            for ((buf, o), v) in bufs.iter_mut().zip(out.iter_mut()).zip(found) {
                *o = translate(self, buf, v);
            }
        }
    }

    /// [`Edge::outbound`] with its table lookup done: `public` is what the
    /// source holds, if anything.
    fn outbound_with(&mut self, buf: &mut PacketBuf, public: Option<Ipv4Addr>) -> EdgeOutput {
        let Ok(g) = GeneveHeader::view(buf.data()) else {
            return self.drop(EdgeDrop::Malformed);
        };
        let (vni, geneve_len) = (g.header.vni(), GeneveHeader::LEN + g.options.len());
        if !buf.pop_front(geneve_len) {
            return self.drop(EdgeDrop::Malformed);
        }
        let Ok(eth) = openvpc_packet::ethernet::split(buf.data()) else {
            return self.drop(EdgeDrop::Malformed);
        };
        if eth.ethertype != ethertype::IPV4 {
            return self.drop(EdgeDrop::NotIpv4);
        }
        let Ok(pf) = flow::parse_ethernet(buf.data()) else {
            return self.drop(EdgeDrop::Malformed);
        };
        if !self.attached.contains(&vni) {
            return self.drop(EdgeDrop::NoInternetGateway);
        }
        if !matches!(pf.key.src_ip(), IpAddr::V4(_)) {
            return self.drop(EdgeDrop::NotIpv4);
        }
        let Some(public) = public else {
            return self.drop(EdgeDrop::NoPublicIp);
        };
        let rewrite = Rewrite {
            src: Some((IpAddr::V4(public), pf.key.src_port)),
            dst: None,
        };
        if transform::apply(buf.data_mut(), &pf, &rewrite).is_err() {
            return self.drop(EdgeDrop::RewriteFailed);
        }
        if !buf.pop_front(eth.payload_offset) {
            return self.drop(EdgeDrop::Malformed);
        }
        self.outbound += 1;
        EdgeOutput::Uplink
    }

    /// A bare IPv4 packet from the uplink, for an instance (or for the
    /// hyperplane node that owns its port, to a NAT gateway's Elastic IP).
    pub fn inbound(&mut self, buf: &mut PacketBuf) -> EdgeOutput {
        let m = ipv4_destination(buf.data()).and_then(|k| self.by_public.get(&k).copied());
        self.inbound_with(buf, m)
    }

    /// [`Edge::inbound`] over a batch, `out[i]` for `bufs[i]`, its lookups
    /// back to back as in [`Edge::outbound_batch`].
    pub fn inbound_batch(&mut self, bufs: &mut [PacketBuf], out: &mut [EdgeOutput]) {
        self.batch(
            bufs,
            out,
            ipv4_destination,
            |edge, k| edge.by_public.get(&k).copied(),
            Edge::inbound_with,
        );
    }

    /// [`Edge::inbound`] with its table lookup done: `found` is who holds
    /// the destination, if anyone.
    fn inbound_with(&mut self, buf: &mut PacketBuf, found: Option<Held>) -> EdgeOutput {
        if buf.data().first().is_none_or(|b| b >> 4 != 4) {
            return self.drop(EdgeDrop::NotIpv4);
        }
        let Ok(pf) = flow::parse_ip(buf.data(), ethertype::IPV4) else {
            return self.drop(EdgeDrop::Malformed);
        };
        if !matches!(pf.key.dst_ip(), IpAddr::V4(_)) {
            return self.drop(EdgeDrop::NotIpv4);
        }
        let Some(m) = found else {
            return self.drop(EdgeDrop::UnknownPublicIp);
        };
        if !self.attached.contains(&m.vni) {
            return self.drop(EdgeDrop::NoInternetGateway);
        }
        // Read before the rewrite: an ICMP error's quote is not rewritten,
        // but the offsets are the parse's.
        let dst = match m.nat {
            None => m.host,
            Some(slot) => {
                let nodes = self
                    .nat_nodes
                    .get(slot as usize)
                    .map_or(&[][..], |n| &n[..]);
                let port = nat_port(buf.data(), &pf);
                // `upsert` keeps at most MAX_NAT_PLACES, so the count fits.
                let place = owner_of(port, nodes.len() as u8);
                match nodes.get(usize::from(place)) {
                    Some(node) => *node,
                    None => m.host,
                }
            }
        };
        let rewrite = Rewrite {
            src: None,
            dst: Some((IpAddr::V4(m.private), pf.key.dst_port)),
        };
        if transform::apply(buf.data_mut(), &pf, &rewrite).is_err() {
            return self.drop(EdgeDrop::RewriteFailed);
        }
        let mut headers = [0u8; GeneveHeader::LEN + EthernetHeader::LEN];
        let eth = EthernetRepr {
            dst: m.mac,
            src: self.router_mac,
            vlan: None,
            ethertype: ethertype::IPV4,
        };
        let emitted = GeneveRepr::ethernet(m.vni)
            .emit(&mut headers)
            .and_then(|at| {
                let rest = headers.get_mut(at..).unwrap_or_default();
                eth.emit(rest).map(|n| at + n)
            });
        match emitted {
            Ok(n) if n == headers.len() && buf.push_front(&headers) => {}
            _ => return self.drop(EdgeDrop::Malformed),
        }
        self.inbound += 1;
        EdgeOutput::Underlay {
            dst,
            src_port: entropy_port(self.hasher.hash(&pf.key)),
        }
    }
}

/// The port of an inbound packet to a NAT gateway's Elastic IP that names
/// the place owning it: the TCP or UDP destination port, the ICMP echo
/// identifier (the flow key holds it as both ports), or, for an ICMP error,
/// the source port of the packet it quotes (what the gateway sent). A later
/// fragment carries no port: 0, the first place's.
fn nat_port(packet: &[u8], pf: &flow::ParsedFlow) -> u16 {
    if pf.key.protocol == protocol::ICMP && pf.icmp_error {
        return packet
            .get(pf.l4_offset..)
            .and_then(|icmp| flow::quoted_flow(icmp, 4).ok())
            .map_or(pf.key.dst_port, |quoted| quoted.src_port);
    }
    pf.key.dst_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
    use openvpc_packet::flow::parse_ip;
    use openvpc_packet::icmpv4::IcmpRepr;
    use openvpc_packet::ipv4::Ipv4Repr;
    use openvpc_packet::tcp::{TcpRepr, flags};

    const ROUTER: MacAddr = MacAddr([2, 0x6f, 0x76, 0x70, 0x63, 1]);
    const ENI: MacAddr = MacAddr([2, 0, 0, 0, 0, 0x0a]);
    const VNI: u32 = 77;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn mapping() -> PublicMapping {
        PublicMapping {
            public: ip("198.51.100.7"),
            vni: VNI,
            private: ip("10.0.1.10"),
            host: IpAddr::V4(ip("192.0.2.2")),
            mac: ENI,
            nat_nodes: Vec::new(),
        }
    }

    fn packet(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        PacketBuilder {
            ethernet: None,
            ip: IpRepr::V4(Ipv4Repr::new(ip(src), ip(dst), 0, 0)),
            l4: L4Repr::Tcp(TcpRepr::new(sport, dport, flags::SYN)),
        }
        .build(b"hello")
        .unwrap()
    }

    /// What a host sends an edge: Geneve(VNI) + Ethernet + the packet.
    fn from_host(vni: u32, packet: &[u8]) -> PacketBuf {
        let mut frame = vec![0u8; GeneveHeader::LEN + EthernetHeader::LEN];
        let at = GeneveRepr::ethernet(vni).emit(&mut frame).unwrap();
        EthernetRepr {
            dst: ROUTER,
            src: ENI,
            vlan: None,
            ethertype: ethertype::IPV4,
        }
        .emit(&mut frame[at..])
        .unwrap();
        frame.extend_from_slice(packet);
        PacketBuf::from_frame(&frame)
    }

    fn edge() -> Edge {
        let mut e = Edge::new(ROUTER);
        e.upsert(mapping());
        e.set_attached(VNI, true);
        e
    }

    // spec 5.1: outbound, the private source becomes the public address;
    // the bytes equal the packet built with it (checksums included).
    #[test]
    fn outbound_rewrites_the_source_to_the_public_address() {
        let mut e = edge();
        let mut buf = from_host(VNI, &packet("10.0.1.10", 40000, "203.0.113.9", 80));
        assert_eq!(e.outbound(&mut buf), EdgeOutput::Uplink);
        assert_eq!(buf.data(), packet("198.51.100.7", 40000, "203.0.113.9", 80));
        assert_eq!(e.outbound, 1);
    }

    // spec 5.1: inbound, the public destination becomes the private one,
    // encapsulated with the VPC's VNI to the ENI's host and MAC.
    #[test]
    fn inbound_translates_and_encapsulates_to_the_host() {
        let mut e = edge();
        let mut buf = PacketBuf::from_frame(&packet("203.0.113.9", 80, "198.51.100.7", 40000));
        let out = e.inbound(&mut buf);
        assert!(matches!(out, EdgeOutput::Underlay { dst, .. } if dst == mapping().host));
        let g = GeneveHeader::view(buf.data()).unwrap();
        assert_eq!(g.header.vni(), VNI);
        let inner = g.payload;
        let (eth, _) = EthernetHeader::view(inner).unwrap();
        assert_eq!((eth.dst, eth.src), (ENI, ROUTER));
        assert_eq!(
            &inner[EthernetHeader::LEN..],
            packet("203.0.113.9", 80, "10.0.1.10", 40000).as_slice()
        );
        let pf = parse_ip(&inner[EthernetHeader::LEN..], ethertype::IPV4).unwrap();
        assert_eq!(pf.key.dst_ip(), IpAddr::V4(ip("10.0.1.10")));
    }

    // What AWS drops, each counted under its reason.
    #[test]
    fn what_cannot_be_translated_is_a_counted_drop() {
        let mut e = edge();
        let mut no_public = from_host(VNI, &packet("10.0.1.11", 1, "203.0.113.9", 80));
        assert_eq!(
            e.outbound(&mut no_public),
            EdgeOutput::Drop(EdgeDrop::NoPublicIp)
        );
        let mut nobody = PacketBuf::from_frame(&packet("203.0.113.9", 80, "198.51.100.8", 1));
        assert_eq!(
            e.inbound(&mut nobody),
            EdgeOutput::Drop(EdgeDrop::UnknownPublicIp)
        );
        e.set_attached(VNI, false);
        let mut detached = PacketBuf::from_frame(&packet("203.0.113.9", 80, "198.51.100.7", 1));
        assert_eq!(
            e.inbound(&mut detached),
            EdgeOutput::Drop(EdgeDrop::NoInternetGateway)
        );
        let mut garbage = PacketBuf::from_frame(&[0x45, 0, 0]);
        assert_eq!(
            e.inbound(&mut garbage),
            EdgeOutput::Drop(EdgeDrop::Malformed)
        );
        for (reason, n) in [
            (EdgeDrop::NoPublicIp, 1),
            (EdgeDrop::UnknownPublicIp, 1),
            (EdgeDrop::NoInternetGateway, 1),
            (EdgeDrop::Malformed, 1),
        ] {
            assert_eq!(e.drops(reason), n, "{}", reason.name());
        }
    }

    // Overlapping VPCs: the same private address in two VNIs holds two
    // public addresses, and each VPC's traffic takes only its own.
    #[test]
    fn overlapping_vpcs_have_their_own_public_addresses() {
        let mut e = edge();
        let other = PublicMapping {
            public: ip("198.51.100.9"),
            vni: 78,
            host: IpAddr::V4(ip("192.0.2.3")),
            ..mapping()
        };
        e.upsert(other.clone());
        e.set_attached(78, true);
        let mut a = from_host(VNI, &packet("10.0.1.10", 1, "203.0.113.9", 80));
        let mut b = from_host(78, &packet("10.0.1.10", 1, "203.0.113.9", 80));
        assert_eq!(e.outbound(&mut a), EdgeOutput::Uplink);
        assert_eq!(e.outbound(&mut b), EdgeOutput::Uplink);
        assert_eq!(a.data(), packet("198.51.100.7", 1, "203.0.113.9", 80));
        assert_eq!(b.data(), packet("198.51.100.9", 1, "203.0.113.9", 80));
        let mut to_b = PacketBuf::from_frame(&packet("203.0.113.9", 80, "198.51.100.9", 1));
        assert!(matches!(
            e.inbound(&mut to_b),
            EdgeOutput::Underlay { dst, .. } if dst == other.host
        ));
    }

    // The control plane's watch: a full table drops what it does not
    // list; a change applies removals before upserts; the attached set is
    // replaced whole.
    #[test]
    fn a_table_update_replaces_or_patches_the_table() {
        let mut e = edge();
        let other = PublicMapping {
            public: ip("198.51.100.9"),
            private: ip("10.0.1.20"),
            ..mapping()
        };
        e.apply(&TableUpdate {
            full: true,
            upserts: vec![other.clone()],
            removals: vec![],
            attached: Some(vec![VNI, 78]),
        });
        assert_eq!(e.len(), 1);
        assert_eq!(e.attached_len(), 2);
        let mut gone = from_host(VNI, &packet("10.0.1.10", 1, "203.0.113.9", 80));
        assert_eq!(
            e.outbound(&mut gone),
            EdgeOutput::Drop(EdgeDrop::NoPublicIp)
        );
        // A move within one change: removed and upserted, it stays held.
        e.apply(&TableUpdate {
            full: false,
            upserts: vec![PublicMapping {
                private: ip("10.0.1.30"),
                ..other
            }],
            removals: vec![other.public],
            attached: None,
        });
        assert_eq!(e.len(), 1);
        assert_eq!(e.attached_len(), 2);
        let mut moved = from_host(VNI, &packet("10.0.1.30", 1, "203.0.113.9", 80));
        assert_eq!(e.outbound(&mut moved), EdgeOutput::Uplink);
        e.apply(&TableUpdate {
            attached: Some(vec![]),
            ..TableUpdate::default()
        });
        let mut detached = from_host(VNI, &packet("10.0.1.30", 1, "203.0.113.9", 80));
        assert_eq!(
            e.outbound(&mut detached),
            EdgeOutput::Drop(EdgeDrop::NoInternetGateway)
        );
    }

    // Reassociation (spec 5.3): an address moved to another holder is
    // translated for the new one only, and the old holder loses it.
    #[test]
    fn a_moved_address_follows_its_new_holder() {
        let mut e = edge();
        e.upsert(PublicMapping {
            private: ip("10.0.1.20"),
            ..mapping()
        });
        assert_eq!(e.len(), 1);
        let mut old = from_host(VNI, &packet("10.0.1.10", 1, "203.0.113.9", 80));
        assert_eq!(e.outbound(&mut old), EdgeOutput::Drop(EdgeDrop::NoPublicIp));
        let mut new = from_host(VNI, &packet("10.0.1.20", 1, "203.0.113.9", 80));
        assert_eq!(e.outbound(&mut new), EdgeOutput::Uplink);
        assert!(e.remove(ip("198.51.100.7")));
        assert!(e.is_empty());
    }

    /// A batch gives each packet what it would get alone, drops included.
    #[test]
    fn a_batch_translates_as_packets_one_by_one() {
        let mut one = Edge::new(ROUTER);
        let mut batch = Edge::new(ROUTER);
        for e in [&mut one, &mut batch] {
            e.upsert(mapping());
            e.set_attached(VNI, true);
        }
        let udp = |dst: &str| {
            PacketBuilder {
                ethernet: None,
                ip: IpRepr::V4(Ipv4Repr::new(ip("203.0.113.9"), ip(dst), 0, 0)),
                l4: L4Repr::Udp(openvpc_packet::udp::UdpRepr {
                    src_port: 5000,
                    dst_port: 53,
                }),
            }
            .build(b"q")
            .unwrap()
        };
        let frames = [
            udp("198.51.100.7"),
            udp("198.51.100.8"),
            vec![0x45, 0, 0],
            vec![0x60; 40],
            udp("198.51.100.7"),
        ];
        let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
        let mut out = vec![EdgeOutput::Drop(EdgeDrop::Malformed); frames.len()];
        batch.inbound_batch(&mut bufs, &mut out);
        for ((frame, got), buf) in frames.iter().zip(&out).zip(&bufs) {
            let mut alone = PacketBuf::from_frame(frame);
            assert_eq!(one.inbound(&mut alone), *got);
            assert_eq!(alone.data(), buf.data());
        }
        assert_eq!(batch.drops, one.drops);
        assert_eq!(batch.inbound, 2);
    }

    const NAT_EIP: &str = "198.51.100.50";
    const NAT_MAC: MacAddr = MacAddr([2, 0x4e, 0x41, 0x54, 0, 1]);

    fn node(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    /// A NAT gateway's Elastic IP whose shard's places are served by
    /// `nodes` (as the control plane lists them: a dead place's buddy in
    /// its place).
    fn nat_edge(nodes: &[IpAddr]) -> Edge {
        let mut e = edge();
        e.upsert(PublicMapping {
            public: ip(NAT_EIP),
            vni: VNI,
            private: ip("10.0.0.9"),
            host: nodes[0],
            mac: NAT_MAC,
            nat_nodes: nodes.to_vec(),
        });
        e
    }

    fn sent_to(e: &mut Edge, packet: &[u8]) -> Option<IpAddr> {
        match e.inbound(&mut PacketBuf::from_frame(packet)) {
            EdgeOutput::Underlay { dst, .. } => Some(dst),
            _ => None,
        }
    }

    fn icmp(src: &str, dst: &str, repr: IcmpRepr, payload: &[u8]) -> Vec<u8> {
        PacketBuilder {
            ethernet: None,
            ip: IpRepr::V4(Ipv4Repr::new(ip(src), ip(dst), 0, 0)),
            l4: L4Repr::Icmpv4(repr),
        }
        .build(payload)
        .unwrap()
    }

    // Issue 16 (flow placement): a reply to a NAT gateway's Elastic IP goes
    // to the node owning its destination port's slice (port % places),
    // translated to the gateway's private address and MAC like any
    // holder's; TCP and UDP alike.
    #[test]
    fn a_reply_to_a_nat_eip_goes_to_the_node_of_its_ports_place() {
        let nodes = [node(31), node(32), node(33)];
        let mut e = nat_edge(&nodes);
        for port in [40_000u16, 40_001, 40_002, 61_234] {
            let want = nodes[usize::from(port % 3)];
            let tcp = packet("203.0.113.9", 80, NAT_EIP, port);
            assert_eq!(sent_to(&mut e, &tcp), Some(want), "tcp {port}");
            let udp = PacketBuilder {
                ethernet: None,
                ip: IpRepr::V4(Ipv4Repr::new(ip("203.0.113.9"), ip(NAT_EIP), 0, 0)),
                l4: L4Repr::Udp(openvpc_packet::udp::UdpRepr {
                    src_port: 53,
                    dst_port: port,
                }),
            }
            .build(b"a")
            .unwrap();
            assert_eq!(sent_to(&mut e, &udp), Some(want), "udp {port}");
        }
        let mut buf = PacketBuf::from_frame(&packet("203.0.113.9", 80, NAT_EIP, 40_001));
        e.inbound(&mut buf);
        let g = GeneveHeader::view(buf.data()).unwrap();
        let (eth, _) = EthernetHeader::view(g.payload).unwrap();
        assert_eq!(eth.dst, NAT_MAC);
        assert_eq!(
            &g.payload[EthernetHeader::LEN..],
            packet("203.0.113.9", 80, "10.0.0.9", 40_001).as_slice()
        );
        // An ENI's address still goes to its host.
        let to_eni = packet("203.0.113.9", 80, "198.51.100.7", 40_001);
        assert_eq!(sent_to(&mut e, &to_eni), Some(mapping().host));
    }

    // Issue 16: ICMP query IDs are sliced as ports are, so an echo reply
    // goes by its identifier; an ICMP error goes by the source port of the
    // packet it quotes (the one the gateway sent).
    #[test]
    fn icmp_goes_by_its_identifier_or_its_quoted_port() {
        use openvpc_packet::icmpv4::types;
        let nodes = [node(31), node(32)];
        let mut e = nat_edge(&nodes);
        for id in [7u16, 8] {
            let reply = icmp(
                "203.0.113.9",
                NAT_EIP,
                IcmpRepr::echo(types::ECHO_REPLY, id, 1),
                b"ping",
            );
            assert_eq!(sent_to(&mut e, &reply), Some(nodes[usize::from(id % 2)]));
        }
        for sport in [50_000u16, 50_001] {
            let quoted = packet(NAT_EIP, sport, "203.0.113.9", 80);
            let error = icmp(
                "203.0.113.1",
                NAT_EIP,
                IcmpRepr {
                    icmp_type: types::DEST_UNREACHABLE,
                    code: 3,
                    rest: [0; 4],
                },
                &quoted[..28],
            );
            assert_eq!(
                sent_to(&mut e, &error),
                Some(nodes[usize::from(sport % 2)]),
                "error quoting port {sport}"
            );
        }
    }

    // Issue 16 (replicated state): while a node is dead, the control plane
    // lists its buddy (the next live place) in its place, so the dead
    // place's slice goes to the buddy and the other slices do not move.
    #[test]
    fn a_dead_places_slice_goes_to_its_buddy() {
        let (a, c) = (node(31), node(33));
        // Places a, b, c with b dead: b's place is served by c.
        let mut e = nat_edge(&[a, c, c]);
        let to = |e: &mut Edge, port| sent_to(e, &packet("203.0.113.9", 443, NAT_EIP, port));
        assert_eq!(to(&mut e, 30_000), Some(a));
        assert_eq!(to(&mut e, 30_001), Some(c));
        assert_eq!(to(&mut e, 30_002), Some(c));
        // b returns: the control plane's upsert hands it its place back.
        let b = node(32);
        e.apply(&TableUpdate {
            upserts: vec![PublicMapping {
                public: ip(NAT_EIP),
                vni: VNI,
                private: ip("10.0.0.9"),
                host: a,
                mac: NAT_MAC,
                nat_nodes: vec![a, b, c],
            }],
            ..TableUpdate::default()
        });
        assert_eq!(to(&mut e, 30_000), Some(a));
        assert_eq!(to(&mut e, 30_001), Some(b));
        assert_eq!(to(&mut e, 30_002), Some(c));
        // Outbound from the gateway's private address takes its Elastic IP.
        let mut out = from_host(VNI, &packet("10.0.0.9", 30_001, "203.0.113.9", 443));
        assert_eq!(e.outbound(&mut out), EdgeOutput::Uplink);
        assert_eq!(out.data(), packet(NAT_EIP, 30_001, "203.0.113.9", 443));
    }

    // Node lists are kept in a side table: a removed address frees its
    // slot for the next, and a full table starts over.
    #[test]
    fn nat_node_lists_are_reused_and_cleared() {
        let mut e = nat_edge(&[node(31), node(32)]);
        assert!(e.remove(ip(NAT_EIP)));
        assert_eq!(e.nat_free, [0]);
        e.upsert(PublicMapping {
            public: ip("198.51.100.51"),
            vni: VNI,
            private: ip("10.0.0.10"),
            host: node(34),
            mac: NAT_MAC,
            nat_nodes: vec![node(34)],
        });
        assert_eq!((e.nat_nodes.len(), e.nat_free.len()), (1, 0));
        assert_eq!(
            sent_to(&mut e, &packet("203.0.113.9", 80, "198.51.100.51", 1)),
            Some(node(34))
        );
        e.apply(&TableUpdate {
            full: true,
            upserts: vec![mapping()],
            ..TableUpdate::default()
        });
        assert!(e.nat_nodes.is_empty() && e.nat_free.is_empty());
        assert_eq!(e.len(), 1);
    }
}
