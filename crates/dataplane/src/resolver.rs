//! The VPC resolver's endpoint in the gateway layer (spec 1.4,
//! AmazonProvidedDNS): which frames from an instance are queries to the
//! resolver (UDP port 53 of the VPC's base + 2 or of 169.254.169.253), the
//! query's bytes and where its answer goes, and the answer's frame. The
//! router takes such frames before the security groups and network ACLs,
//! which do not filter them (spec 1.4), and hands the payload to the VPC's
//! [`openvpc_dns::VpcResolver`]. Sans-IO, like the rest of the gateway: no
//! socket, no clock; the upstream resolver is the caller's to ask.

use core::net::{IpAddr, Ipv4Addr};

use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetHeader, EthernetRepr, ethertype};
use openvpc_packet::flow::ParsedFlow;
use openvpc_packet::ip::protocol;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use crate::router::EniIndex;

/// The resolver's link-local address (spec 1.4).
pub const LINK_LOCAL_RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 253);

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// UDP header length.
const UDP_HEADER: usize = 8;

/// Whether a frame could be a query to the resolver: IPv4 UDP to port 53,
/// not a later fragment. Cheap, for the batch path, which leaves such
/// frames to the gateway; [`is_resolver_query`] decides.
#[inline]
pub fn may_be_query(pf: &ParsedFlow) -> bool {
    pf.key.family == 4
        && pf.key.protocol == protocol::UDP
        && pf.key.dst_port == DNS_PORT
        && !pf.later_fragment
}

/// Whether `pf` is a query to the resolver as an ENI whose VPC's resolver
/// is at `vpc_resolver` (base + 2) sees it.
#[inline]
pub fn is_resolver_query(pf: &ParsedFlow, vpc_resolver: Ipv4Addr) -> bool {
    may_be_query(pf)
        && matches!(pf.key.dst_ip(), IpAddr::V4(dst) if dst == vpc_resolver || dst == LINK_LOCAL_RESOLVER)
}

/// Where a query came from, so that its answer can be sent back: the
/// answer leaves from the address and port the client asked, to the
/// client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The local ENI that sent it.
    pub eni: EniIndex,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The resolver address the client asked (base + 2 or 169.254.169.253).
    pub server: Ipv4Addr,
}

/// The client and the DNS message of a query frame `pf` was parsed from;
/// `None` if the UDP header or length does not hold.
pub fn split_query<'a>(
    eni: EniIndex,
    frame: &'a [u8],
    pf: &ParsedFlow,
) -> Option<(Client, &'a [u8])> {
    let (IpAddr::V4(ip), IpAddr::V4(server)) = (pf.key.src_ip(), pf.key.dst_ip()) else {
        return None;
    };
    let (eth, _) = EthernetHeader::view(frame).ok()?;
    let ip_end = pf.l3_offset.checked_add(pf.ip_len)?.min(frame.len());
    let udp = frame.get(pf.l4_offset..ip_end)?;
    let udp_len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    if udp_len < UDP_HEADER || udp_len > udp.len() {
        return None;
    }
    let client = Client {
        eni,
        mac: eth.src,
        ip,
        port: pf.key.src_port,
        server,
    };
    Some((client, &udp[UDP_HEADER..udp_len]))
}

/// The frame that carries `answer` back to `client`, from the router's MAC
/// and the address it asked.
pub fn answer_frame(
    router_mac: MacAddr,
    client: &Client,
    answer: &[u8],
) -> Result<Vec<u8>, openvpc_packet::Error> {
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: client.mac,
            src: router_mac,
            vlan: None,
            ethertype: ethertype::IPV4,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(client.server, client.ip, protocol::UDP, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: DNS_PORT,
            dst_port: client.port,
        }),
    }
    .build(answer)
}

/// A query the host's resolver sends to the region's upstream resolver:
/// the client to answer, the resolver's note of the question, and the
/// query's bytes as the client sent them.
#[derive(Debug, Clone)]
pub struct UpstreamQuery {
    pub client: Client,
    /// The VPC (VNI) whose resolver forwarded it: its reply goes back
    /// through that resolver.
    pub vni: u32,
    pub forward: openvpc_dns::Forward,
    pub query: Vec<u8>,
}
