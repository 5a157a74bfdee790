//! The gateway layer of the per-host virtual router: it answers ARP and
//! DHCPv4 from one instance NIC (ENI), as the AWS VPC router does, so that an
//! unmodified DHCP client (busybox udhcpc, dhclient, systemd-networkd)
//! configures the instance. It owns what an instance sees of its link: which
//! addresses the router answers ARP for, and what a lease contains. It is
//! sans-IO: pure functions from a received frame to an optional reply frame.
//! It must not keep lease state, read clocks, touch sockets or forward
//! anything: the lease follows from the ENI's configuration alone, and every
//! frame it does not answer belongs to later layers.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use core::net::Ipv4Addr;
use core::ops::Range;

use openvpc_packet::arp::{ArpOp, ArpRepr};
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::{EthernetRepr, ethertype};
use openvpc_packet::flow::ParsedFlow;
use openvpc_packet::ip::protocol;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;
use openvpc_packet::{Error as PacketError, MacAddr};

use crate::drop::DropReason;

/// UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;
/// UDP port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// Shortest Ethernet frame without FCS; ARP replies are padded to it because
/// some guest drivers drop runts.
const MIN_FRAME: usize = 60;

/// IMDS and the link-local Amazon DNS endpoint. Some images (Amazon Linux)
/// route IMDS on-link, so the instance ARPs for it and the router must answer.
const LINK_LOCAL_SERVICES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 169, 253),
];

/// What the gateway answers with for one ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The instance's MAC.
    pub eni_mac: MacAddr,
    /// Its primary private IPv4 address.
    pub eni_ip: Ipv4Addr,
    /// Subnet network address and prefix length, e.g. 10.0.1.0/24.
    pub subnet: (Ipv4Addr, u8),
    /// MAC the virtual router answers with, for its own addresses and for
    /// every off-link address it knows.
    pub router_mac: MacAddr,
    /// Amazon DNS: VPC base + 2.
    pub dns: Ipv4Addr,
    /// DHCP option 6 when the VPC's DHCP options set names its own
    /// `domain-name-servers` (spec 1.4); empty gives `dns` alone.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Sent as DHCP option 26.
    pub mtu: u16,
    /// DHCP lease time (AWS uses 3600).
    pub lease_secs: u32,
    /// DHCP option 12, e.g. "ip-10-0-1-10".
    pub hostname: Option<String>,
    /// DHCP option 15, e.g. "ec2.internal".
    pub domain_name: Option<String>,
}

impl GatewayConfig {
    /// The subnet mask as an integer; a prefix over 32 counts as 32.
    fn mask_bits(&self) -> u32 {
        let host_bits = 32 - u32::from(self.subnet.1.min(32));
        u32::MAX.checked_shl(host_bits).unwrap_or(0)
    }

    /// The subnet mask (DHCP option 1).
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.mask_bits())
    }

    /// The subnet's network address, host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.subnet.0.to_bits() & self.mask_bits())
    }

    /// The subnet's broadcast address (DHCP option 28).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network().to_bits() | !self.mask_bits())
    }

    /// The subnet router, base + 1: default gateway and DHCP server identifier.
    pub fn router_ip(&self) -> Ipv4Addr {
        self.host(1)
    }

    /// True if `ip` is inside the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.to_bits() & self.mask_bits() == self.network().to_bits()
    }

    /// The address `offset` above the network address.
    fn host(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network().to_bits().wrapping_add(offset))
    }

    /// True for addresses the router itself owns on this link.
    fn is_router_address(&self, ip: Ipv4Addr) -> bool {
        // spec: AWS reserves subnet base+1 (router) and base+2 (DNS) in every subnet.
        ip == self.router_ip()
            || ip == self.host(2)
            || ip == self.dns
            || LINK_LOCAL_SERVICES.contains(&ip)
    }

    /// True for subnet addresses nobody answers for: the network address,
    /// base+3 (reserved by AWS for future use) and the broadcast address.
    fn is_unowned(&self, ip: Ipv4Addr) -> bool {
        ip == self.network() || ip == self.host(3) || ip == self.broadcast()
    }
}

/// Why a frame got no answer; each cause is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// An Ethernet, ARP, IPv4 or UDP header is malformed.
    #[error("malformed frame: {0}")]
    Malformed(#[from] PacketError),
    /// ENIs carry untagged frames only.
    #[error("VLAN-tagged frame from an ENI, which carries untagged frames only: dropped")]
    Tagged,
    /// `answer_arp` was given something other than ARP.
    #[error("not an ARP frame (EtherType {0:#06x}): hand it to the next layer")]
    NotArp(u16),
    /// `answer_dhcp` was given something other than IPv4/UDP 68 -> 67.
    #[error("not a DHCPv4 client message (IPv4/UDP 68 -> 67): hand it to the next layer")]
    NotDhcp,
    /// DHCP messages fit in one packet; a fragment is not one of ours.
    #[error("IPv4 fragment on the DHCP ports: DHCP messages are never fragmented, dropped")]
    Fragment,
    /// The frame (or ARP sender) names a MAC other than the ENI's.
    #[error("frame claims MAC {claimed} but the ENI is {eni}: spoofed, dropped")]
    SpoofedMac { claimed: MacAddr, eni: MacAddr },
    /// A DHCP client asked for another NIC's lease.
    #[error(
        "DHCP client hardware address {chaddr} is not the ENI's {eni}: another NIC's lease is never handed out"
    )]
    ForeignClient { chaddr: MacAddr, eni: MacAddr },
    /// Unicast to a DHCP server that is not this subnet's router.
    #[error(
        "DHCP message addressed to {0}, not to this subnet's router: hand it to the next layer"
    )]
    NotForUs(Ipv4Addr),
    /// The UDP payload is shorter than the BOOTP header and magic cookie.
    #[error("DHCP message truncated: needs {need} bytes, has {have}")]
    DhcpTruncated { need: usize, have: usize },
    /// BOOTP op is not BOOTREQUEST.
    #[error("BOOTP op {0} is not a request (1): dropped")]
    NotBootRequest(u8),
    /// Hardware type or length is not Ethernet's.
    #[error("DHCP hardware type {htype} / length {hlen} is not Ethernet (1 / 6): dropped")]
    NotEthernet { htype: u8, hlen: u8 },
    /// Plain BOOTP (no magic cookie) is not served.
    #[error("DHCP magic cookie missing: plain BOOTP is not served")]
    NoMagicCookie,
    /// An option's length runs past the end of the message.
    #[error("DHCP option {code} runs past the end of the message")]
    OptionOverrun { code: u8 },
    /// An option this server reads has the wrong length.
    #[error("DHCP option {code} has length {len}, which its format forbids")]
    OptionLength { code: u8, len: u8 },
    /// No option 53: a BOOTP request, not DHCP.
    #[error("DHCP message has no message type (option 53)")]
    NoMessageType,
    /// Option 53 holds a type clients do not send (or an unknown one).
    #[error("DHCP message type {0} is not one a client sends to a server")]
    UnexpectedMessageType(u8),
    /// The reply could not be built (only a configuration with absurdly long
    /// names can cause this).
    #[error("could not build the reply: {0}; check the hostname and domain name")]
    Emit(PacketError),
}

impl GatewayError {
    /// The drop counter this cause is counted under.
    pub fn drop_reason(&self) -> DropReason {
        match self {
            GatewayError::Malformed(_) => DropReason::Malformed,
            GatewayError::Tagged => DropReason::VlanTagged,
            GatewayError::NotArp(_) | GatewayError::NotDhcp => DropReason::GatewayUnanswered,
            GatewayError::Fragment => DropReason::Fragment,
            GatewayError::SpoofedMac { .. } => DropReason::SpoofedMac,
            GatewayError::ForeignClient { .. } => DropReason::DhcpForeignClient,
            GatewayError::NotForUs(_) => DropReason::DhcpNotForRouter,
            GatewayError::DhcpTruncated { .. }
            | GatewayError::NotBootRequest(_)
            | GatewayError::NotEthernet { .. }
            | GatewayError::NoMagicCookie
            | GatewayError::OptionOverrun { .. }
            | GatewayError::OptionLength { .. }
            | GatewayError::NoMessageType
            | GatewayError::UnexpectedMessageType(_) => DropReason::DhcpInvalid,
            GatewayError::Emit(_) => DropReason::GatewayReplyFailed,
        }
    }
}

/// Answers an ARP request sent by the instance. `resolve(ip)` gives the MAC
/// for a target that is another ENI (the router's mapping lookup); the subnet
/// router (base+1), DNS (base+2 and `cfg.dns`) and IMDS answer with
/// `router_mac`, and so does an off-link target that `resolve` knows, because
/// the router carries all off-subnet traffic.
///
/// Returns `Ok(None)` for ARP that needs no answer (replies, gratuitous ARP
/// and probes for the instance's own address, reserved or unknown targets)
/// and `Ok(Some(frame))` with a complete Ethernet ARP reply addressed to the
/// instance.
pub fn answer_arp(
    cfg: &GatewayConfig,
    frame: &[u8],
    resolve: impl FnOnce(Ipv4Addr) -> Option<MacAddr>,
) -> Result<Option<Vec<u8>>, GatewayError> {
    let (eth, payload) = EthernetRepr::parse(frame)?;
    if eth.vlan.is_some() {
        return Err(GatewayError::Tagged);
    }
    if eth.ethertype != ethertype::ARP {
        return Err(GatewayError::NotArp(eth.ethertype));
    }
    let arp = ArpRepr::parse(payload)?;
    check_source(cfg, eth.src)?;
    check_source(cfg, arp.sender_mac)?;
    if arp.op != ArpOp::Request {
        return Ok(None);
    }
    // Gratuitous ARP and RFC 5227 probes test the instance's own address:
    // silence is the "no conflict" answer.
    if arp.target_ip == arp.sender_ip || arp.target_ip == cfg.eni_ip {
        return Ok(None);
    }
    let Some(mac) = arp_owner(cfg, arp.target_ip, resolve) else {
        return Ok(None);
    };
    let mut out = vec![0u8; MIN_FRAME];
    let eth = EthernetRepr {
        dst: cfg.eni_mac,
        src: mac,
        vlan: None,
        ethertype: ethertype::ARP,
    };
    let at = eth.emit(&mut out).map_err(GatewayError::Emit)?;
    let body = out.get_mut(at..).unwrap_or_default();
    arp.reply(mac).emit(body).map_err(GatewayError::Emit)?;
    Ok(Some(out))
}

/// The MAC that answers for `target`, if anyone does.
fn arp_owner(
    cfg: &GatewayConfig,
    target: Ipv4Addr,
    resolve: impl FnOnce(Ipv4Addr) -> Option<MacAddr>,
) -> Option<MacAddr> {
    if cfg.is_router_address(target) {
        return Some(cfg.router_mac);
    }
    if cfg.contains(target) {
        if cfg.is_unowned(target) {
            return None;
        }
        return resolve(target);
    }
    // Only an instance with an on-link route wider than its subnet asks for
    // these; the router must still see the traffic to apply route tables.
    resolve(target).map(|_| cfg.router_mac)
}

/// Rejects frames whose source is not the ENI: the gateway answers one NIC.
fn check_source(cfg: &GatewayConfig, claimed: MacAddr) -> Result<(), GatewayError> {
    if claimed == cfg.eni_mac {
        Ok(())
    } else {
        Err(GatewayError::SpoofedMac {
            claimed,
            eni: cfg.eni_mac,
        })
    }
}

/// True if this parsed flow is a DHCPv4 client message (UDP 68 -> 67, the
/// first fragment): the router's parse decides, no second look at the frame.
#[inline]
pub fn is_dhcp_flow(pf: &ParsedFlow) -> bool {
    pf.key.family == 4
        && pf.key.protocol == protocol::UDP
        && !pf.later_fragment
        && pf.key.src_port == CLIENT_PORT
        && pf.key.dst_port == SERVER_PORT
}

/// True if this Ethernet frame is a DHCPv4 client message (UDP 68 -> 67,
/// IPv4), checked cheaply: no checksums, lengths or DHCP contents.
pub fn is_dhcp_request(frame: &[u8]) -> bool {
    dhcp_ports(frame).unwrap_or(false)
}

/// `None` when the frame ends before the field that decides.
fn dhcp_ports(frame: &[u8]) -> Option<bool> {
    if be16(frame, 12)? != ethertype::IPV4 {
        return Some(false);
    }
    let ip = frame.get(14..)?;
    let version_ihl = *ip.first()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    let first_fragment = be16(ip, 6)? & 0x1fff == 0;
    Some(
        version_ihl >> 4 == 4
            && ihl >= 20
            && *ip.get(9)? == protocol::UDP
            && first_fragment
            && be16(ip, ihl)? == CLIENT_PORT
            && be16(ip, ihl + 2)? == SERVER_PORT,
    )
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes: [u8; 2] = buf.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(bytes))
}

/// Answers DHCPDISCOVER with DHCPOFFER, DHCPREQUEST with DHCPACK (or DHCPNAK
/// if the requested address or server identifier is not ours), DHCPINFORM
/// with DHCPACK without lease; DHCPRELEASE and DHCPDECLINE get no answer.
///
/// Returns a full Ethernet/IPv4/UDP frame from `router_mac` / subnet base+1
/// port 67 to the client: broadcast when the client has no address yet, sets
/// the broadcast flag, or is refused (RFC 2131 §4.1), unicast to `eni_ip` /
/// `eni_mac` otherwise. Option overload (52) is not read.
pub fn answer_dhcp(cfg: &GatewayConfig, frame: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
    let (eth, payload) = EthernetRepr::parse(frame)?;
    if eth.vlan.is_some() {
        return Err(GatewayError::Tagged);
    }
    if eth.ethertype != ethertype::IPV4 {
        return Err(GatewayError::NotDhcp);
    }
    let (ip, l4) = Ipv4Repr::parse(payload)?;
    if ip.protocol != protocol::UDP {
        return Err(GatewayError::NotDhcp);
    }
    if ip.is_fragment() {
        return Err(GatewayError::Fragment);
    }
    // The UDP checksum is not checked: a guest with checksum offload may hand
    // over a datagram whose checksum nobody completed (the classic dhclient
    // failure), and a corrupted message can at worst earn a NAK.
    let (udp, body) = UdpRepr::parse(l4)?;
    if (udp.src_port, udp.dst_port) != (CLIENT_PORT, SERVER_PORT) {
        return Err(GatewayError::NotDhcp);
    }
    check_source(cfg, eth.src)?;
    if ip.dst != Ipv4Addr::BROADCAST && ip.dst != cfg.broadcast() && ip.dst != cfg.router_ip() {
        return Err(GatewayError::NotForUs(ip.dst));
    }
    let msg = ClientMessage::parse(body)?;
    if msg.chaddr_mac() != cfg.eni_mac {
        return Err(GatewayError::ForeignClient {
            chaddr: msg.chaddr_mac(),
            eni: cfg.eni_mac,
        });
    }
    let kind = match msg.msg_type {
        msg_type::DISCOVER => Reply::Offer,
        msg_type::REQUEST if request_is_ours(cfg, &msg) => Reply::Ack,
        msg_type::REQUEST => Reply::Nak,
        msg_type::INFORM => Reply::InformAck,
        msg_type::DECLINE | msg_type::RELEASE => return Ok(None),
        other => return Err(GatewayError::UnexpectedMessageType(other)),
    };
    build_reply(cfg, &msg, kind).map(Some)
}

/// RFC 2131 §4.3.2: whether a DHCPREQUEST asks for the ENI's lease from us.
fn request_is_ours(cfg: &GatewayConfig, msg: &ClientMessage<'_>) -> bool {
    // The router is the VPC's only DHCP server, so a foreign server id means a
    // lease remembered from another network: a NAK restarts the client at
    // once instead of leaving it on a dead lease.
    if msg.server_id.is_some_and(|id| id != cfg.router_ip()) {
        return false;
    }
    // SELECTING and INIT-REBOOT name the address in option 50; RENEWING and
    // REBINDING in ciaddr.
    match msg.requested_ip {
        Some(ip) => ip == cfg.eni_ip,
        None => msg.ciaddr == cfg.eni_ip,
    }
}

/// Byte ranges of the fixed BOOTP header (RFC 2131 §2).
mod field {
    use core::ops::Range;

    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const XID: Range<usize> = 4..8;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const COOKIE: Range<usize> = 236..240;
    /// Where options start, after the magic cookie.
    pub const OPTIONS: usize = 240;
}

const BOOTREQUEST: u8 = 1;
const BOOTREPLY: u8 = 2;
const HTYPE_ETHERNET: u8 = 1;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BROADCAST_FLAG: u16 = 0x8000;
/// RFC 1542 §3.4: relays and old clients expect at least a 300-byte BOOTP message.
const MIN_BOOTP_LEN: usize = 300;

/// DHCP option codes (RFC 2132 and successors).
pub mod option {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const INTERFACE_MTU: u8 = 26;
    pub const BROADCAST: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53).
pub mod msg_type {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const DECLINE: u8 = 4;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
    pub const INFORM: u8 = 8;
}

/// The options a lease always carries, in the order sent when the client's
/// parameter request list does not name them.
const CONFIG_OPTIONS: [u8; 7] = [
    option::SUBNET_MASK,
    option::ROUTER,
    option::DNS,
    option::HOST_NAME,
    option::DOMAIN_NAME,
    option::INTERFACE_MTU,
    option::BROADCAST,
];

/// The parts of a client's DHCP message the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClientMessage<'a> {
    msg_type: u8,
    xid: [u8; 4],
    flags: u16,
    ciaddr: Ipv4Addr,
    giaddr: Ipv4Addr,
    chaddr: [u8; 16],
    requested_ip: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    params: &'a [u8],
    client_id: Option<&'a [u8]>,
}

/// `buf[range]` as an array; zeros if out of bounds, which callers rule out
/// by checking the length first.
fn array<const N: usize>(buf: &[u8], range: Range<usize>) -> [u8; N] {
    buf.get(range)
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

fn byte(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

impl<'a> ClientMessage<'a> {
    fn parse(buf: &'a [u8]) -> Result<Self, GatewayError> {
        if buf.len() < field::OPTIONS {
            return Err(GatewayError::DhcpTruncated {
                need: field::OPTIONS,
                have: buf.len(),
            });
        }
        let op = byte(buf, field::OP);
        if op != BOOTREQUEST {
            return Err(GatewayError::NotBootRequest(op));
        }
        let (htype, hlen) = (byte(buf, field::HTYPE), byte(buf, field::HLEN));
        if htype != HTYPE_ETHERNET || hlen != 6 {
            return Err(GatewayError::NotEthernet { htype, hlen });
        }
        if array::<4>(buf, field::COOKIE) != MAGIC_COOKIE {
            return Err(GatewayError::NoMagicCookie);
        }
        let mut msg = ClientMessage {
            msg_type: 0,
            xid: array(buf, field::XID),
            flags: u16::from_be_bytes(array(buf, field::FLAGS)),
            ciaddr: Ipv4Addr::from(array::<4>(buf, field::CIADDR)),
            giaddr: Ipv4Addr::from(array::<4>(buf, field::GIADDR)),
            chaddr: array(buf, field::CHADDR),
            requested_ip: None,
            server_id: None,
            params: &[],
            client_id: None,
        };
        let mut msg_type = None;
        // The first instance of an option wins; RFC 3396 concatenation matters
        // only for options longer than this server reads.
        for opt in Options::new(buf.get(field::OPTIONS..).unwrap_or_default()) {
            let (code, value) = opt?;
            match code {
                option::MESSAGE_TYPE if msg_type.is_none() => {
                    msg_type = Some(exact::<1>(code, value)?[0]);
                }
                option::REQUESTED_IP if msg.requested_ip.is_none() => {
                    msg.requested_ip = Some(Ipv4Addr::from(exact::<4>(code, value)?));
                }
                option::SERVER_ID if msg.server_id.is_none() => {
                    msg.server_id = Some(Ipv4Addr::from(exact::<4>(code, value)?));
                }
                option::PARAMETER_REQUEST_LIST if msg.params.is_empty() => msg.params = value,
                option::CLIENT_ID if msg.client_id.is_none() && !value.is_empty() => {
                    msg.client_id = Some(value);
                }
                _ => {}
            }
        }
        msg.msg_type = msg_type.ok_or(GatewayError::NoMessageType)?;
        Ok(msg)
    }

    fn chaddr_mac(&self) -> MacAddr {
        MacAddr(array(&self.chaddr, 0..6))
    }
}

/// An option value that must be exactly `N` bytes long.
fn exact<const N: usize>(code: u8, value: &[u8]) -> Result<[u8; N], GatewayError> {
    value.try_into().map_err(|_| GatewayError::OptionLength {
        code,
        len: u8::try_from(value.len()).unwrap_or(u8::MAX),
    })
}

/// Iterates over `(code, value)` in a DHCP options area, stopping at END or
/// at the end of the buffer (a missing END is tolerated, as clients do).
#[derive(Debug, Clone)]
struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Options<'a> {
    fn new(area: &'a [u8]) -> Self {
        Options { rest: area }
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8]), GatewayError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&code, rest) = self.rest.split_first()?;
            match code {
                option::PAD => self.rest = rest,
                option::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let value = rest
                        .split_first()
                        .and_then(|(&len, rest)| rest.split_at_checked(usize::from(len)));
                    let Some((value, rest)) = value else {
                        self.rest = &[];
                        return Some(Err(GatewayError::OptionOverrun { code }));
                    };
                    self.rest = rest;
                    return Some(Ok((code, value)));
                }
            }
        }
    }
}

/// Which reply a client message earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Offer,
    Ack,
    /// DHCPACK to DHCPINFORM: configuration without a lease.
    InformAck,
    Nak,
}

/// Appends one option, split into several of the same code when longer than
/// 255 bytes (RFC 3396); an empty value is not sent.
fn put(out: &mut Vec<u8>, code: u8, value: &[u8]) {
    for chunk in value.chunks(usize::from(u8::MAX)) {
        out.push(code);
        out.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(chunk);
    }
}

/// The value of a configuration option this server supplies, if it does.
fn config_option(cfg: &GatewayConfig, code: u8) -> Option<Vec<u8>> {
    let value = match code {
        option::SUBNET_MASK => cfg.netmask().octets().to_vec(),
        option::ROUTER => cfg.router_ip().octets().to_vec(),
        option::DNS if cfg.dns_servers.is_empty() => cfg.dns.octets().to_vec(),
        option::DNS => cfg.dns_servers.iter().flat_map(|ip| ip.octets()).collect(),
        option::HOST_NAME => cfg.hostname.as_deref()?.as_bytes().to_vec(),
        option::DOMAIN_NAME => cfg.domain_name.as_deref()?.as_bytes().to_vec(),
        option::INTERFACE_MTU => cfg.mtu.to_be_bytes().to_vec(),
        option::BROADCAST => cfg.broadcast().octets().to_vec(),
        _ => return None,
    };
    Some(value)
}

fn build_reply(
    cfg: &GatewayConfig,
    msg: &ClientMessage<'_>,
    kind: Reply,
) -> Result<Vec<u8>, GatewayError> {
    let none = Ipv4Addr::UNSPECIFIED;
    // RFC 2131 table 3; INFORM's ACK leaves yiaddr empty (§4.3.5), as the
    // client already has its address.
    let (ciaddr, yiaddr, msg_type) = match kind {
        Reply::Offer => (none, cfg.eni_ip, msg_type::OFFER),
        Reply::Ack => (msg.ciaddr, cfg.eni_ip, msg_type::ACK),
        Reply::InformAck => (msg.ciaddr, none, msg_type::ACK),
        Reply::Nak => (none, none, msg_type::NAK),
    };
    let mut out = vec![0u8; field::OPTIONS];
    out[field::OP] = BOOTREPLY;
    out[field::HTYPE] = HTYPE_ETHERNET;
    out[field::HLEN] = 6;
    out[field::XID].copy_from_slice(&msg.xid);
    out[field::FLAGS].copy_from_slice(&msg.flags.to_be_bytes());
    out[field::CIADDR].copy_from_slice(&ciaddr.octets());
    out[field::YIADDR].copy_from_slice(&yiaddr.octets());
    out[field::GIADDR].copy_from_slice(&msg.giaddr.octets());
    out[field::CHADDR].copy_from_slice(&msg.chaddr);
    out[field::COOKIE].copy_from_slice(&MAGIC_COOKIE);

    put(&mut out, option::MESSAGE_TYPE, &[msg_type]);
    put(&mut out, option::SERVER_ID, &cfg.router_ip().octets());
    if matches!(kind, Reply::Offer | Reply::Ack) {
        let lease = cfg.lease_secs;
        put(&mut out, option::LEASE_TIME, &lease.to_be_bytes());
        // An infinite lease is never renewed, so it has no T1 or T2.
        if lease != u32::MAX {
            let t2 = u32::try_from(u64::from(lease) * 7 / 8).unwrap_or(lease);
            put(&mut out, option::RENEWAL_TIME, &(lease / 2).to_be_bytes());
            put(&mut out, option::REBINDING_TIME, &t2.to_be_bytes());
        }
    }
    if kind == Reply::Nak {
        put(
            &mut out,
            option::MESSAGE,
            b"address not leased to this client",
        );
    } else {
        // The client's parameter request list sets the order; the lease's
        // essentials follow whether requested or not.
        let mut sent = [false; 256];
        for &code in msg.params.iter().chain(&CONFIG_OPTIONS) {
            let seen = &mut sent[usize::from(code)];
            if *seen {
                continue;
            }
            *seen = true;
            if let Some(value) = config_option(cfg, code) {
                put(&mut out, code, &value);
            }
        }
    }
    // RFC 6842: a client identifier is echoed unaltered.
    if let Some(id) = msg.client_id {
        put(&mut out, option::CLIENT_ID, id);
    }
    out.push(option::END);
    if out.len() < MIN_BOOTP_LEN {
        out.resize(MIN_BOOTP_LEN, option::PAD);
    }

    let broadcast =
        kind == Reply::Nak || msg.ciaddr.is_unspecified() || msg.flags & BROADCAST_FLAG != 0;
    let (dst_mac, dst_ip) = if broadcast {
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    } else {
        (cfg.eni_mac, cfg.eni_ip)
    };
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: dst_mac,
            src: cfg.router_mac,
            vlan: None,
            ethertype: ethertype::IPV4,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(cfg.router_ip(), dst_ip, protocol::UDP, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: SERVER_PORT,
            dst_port: CLIENT_PORT,
        }),
    }
    .build(&out)
    .map_err(GatewayError::Emit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use openvpc_packet::checksum;
    use proptest::prelude::*;

    const ENI_MAC: MacAddr = MacAddr([0x02, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
    const ROUTER_MAC: MacAddr = MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]);
    const OTHER_MAC: MacAddr = MacAddr([0x02, 0x1a, 0, 0, 0, 0x14]);
    const ENI_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
    const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 1);
    const XID: [u8; 4] = [0xde, 0xad, 0xbe, 0xef];

    fn cfg() -> GatewayConfig {
        GatewayConfig {
            eni_mac: ENI_MAC,
            eni_ip: ENI_IP,
            subnet: (Ipv4Addr::new(10, 0, 1, 0), 24),
            router_mac: ROUTER_MAC,
            dns: Ipv4Addr::new(10, 0, 0, 2),
            dns_servers: Vec::new(),
            mtu: 9001,
            lease_secs: 3600,
            hostname: Some("ip-10-0-1-10".into()),
            domain_name: Some("ec2.internal".into()),
        }
    }

    // ---- ARP ----

    fn arp_frame(op: ArpOp, sender_mac: MacAddr, sender_ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut out = vec![0u8; 42];
        EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: sender_mac,
            vlan: None,
            ethertype: ethertype::ARP,
        }
        .emit(&mut out)
        .unwrap();
        ArpRepr {
            op,
            sender_mac,
            sender_ip,
            target_mac: MacAddr::ZERO,
            target_ip: target,
        }
        .emit(&mut out[14..])
        .unwrap();
        out
    }

    fn who_has(target: Ipv4Addr) -> Vec<u8> {
        arp_frame(ArpOp::Request, ENI_MAC, ENI_IP, target)
    }

    fn no_resolve(ip: Ipv4Addr) -> Option<MacAddr> {
        panic!("resolve must not be called for {ip}")
    }

    /// Checks every field of an ARP reply: `owner` at `mac` answers the ENI.
    fn assert_arp_reply(frame: &[u8], owner: Ipv4Addr, mac: MacAddr) {
        assert_eq!(frame.len(), MIN_FRAME);
        let (eth, body) = EthernetRepr::parse(frame).unwrap();
        assert_eq!(eth.dst, ENI_MAC, "Ethernet destination");
        assert_eq!(eth.src, mac, "Ethernet source");
        assert_eq!(eth.vlan, None);
        assert_eq!(eth.ethertype, ethertype::ARP);
        let arp = ArpRepr::parse(body).unwrap();
        assert_eq!(
            arp,
            ArpRepr {
                op: ArpOp::Reply,
                sender_mac: mac,
                sender_ip: owner,
                target_mac: ENI_MAC,
                target_ip: ENI_IP,
            }
        );
        assert!(body[28..].iter().all(|&b| b == 0), "padding is zero");
    }

    #[test]
    fn arp_for_subnet_router() {
        // spec: subnet base+1 is the VPC router.
        let reply = answer_arp(&cfg(), &who_has(ROUTER_IP), no_resolve).unwrap();
        assert_arp_reply(&reply.unwrap(), ROUTER_IP, ROUTER_MAC);
    }

    #[test]
    fn arp_for_dns_addresses() {
        // spec: subnet base+2 and VPC base+2 are Amazon DNS, owned by the router.
        for dns in [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 0, 2)] {
            let reply = answer_arp(&cfg(), &who_has(dns), no_resolve).unwrap();
            assert_arp_reply(&reply.unwrap(), dns, ROUTER_MAC);
        }
        let imds = Ipv4Addr::new(169, 254, 169, 254);
        let reply = answer_arp(&cfg(), &who_has(imds), no_resolve).unwrap();
        assert_arp_reply(&reply.unwrap(), imds, ROUTER_MAC);
    }

    #[test]
    fn arp_for_another_eni() {
        let other = Ipv4Addr::new(10, 0, 1, 20);
        let asked = Cell::new(None);
        let reply = answer_arp(&cfg(), &who_has(other), |ip| {
            asked.set(Some(ip));
            Some(OTHER_MAC)
        })
        .unwrap();
        assert_eq!(asked.get(), Some(other));
        assert_arp_reply(&reply.unwrap(), other, OTHER_MAC);
    }

    #[test]
    fn arp_for_unknown_or_reserved_gets_no_answer() {
        let unknown = Ipv4Addr::new(10, 0, 1, 99);
        assert_eq!(answer_arp(&cfg(), &who_has(unknown), |_| None), Ok(None));
        // spec: network, base+3 and broadcast are reserved and answer nothing.
        for reserved in [[10, 0, 1, 0], [10, 0, 1, 3], [10, 0, 1, 255]] {
            let frame = who_has(Ipv4Addr::from(reserved));
            assert_eq!(answer_arp(&cfg(), &frame, no_resolve), Ok(None));
        }
        let internet = Ipv4Addr::new(8, 8, 8, 8);
        assert_eq!(answer_arp(&cfg(), &who_has(internet), |_| None), Ok(None));
    }

    #[test]
    fn arp_for_known_off_link_address_answers_with_router() {
        let other_subnet = Ipv4Addr::new(10, 0, 2, 20);
        let reply = answer_arp(&cfg(), &who_has(other_subnet), |_| Some(OTHER_MAC)).unwrap();
        assert_arp_reply(&reply.unwrap(), other_subnet, ROUTER_MAC);
    }

    #[test]
    fn replies_and_gratuitous_arp_get_no_answer() {
        let reply = arp_frame(ArpOp::Reply, ENI_MAC, ENI_IP, ROUTER_IP);
        assert_eq!(answer_arp(&cfg(), &reply, no_resolve), Ok(None));
        let gratuitous = arp_frame(ArpOp::Request, ENI_MAC, ENI_IP, ENI_IP);
        assert_eq!(answer_arp(&cfg(), &gratuitous, no_resolve), Ok(None));
        let gratuitous_reply = arp_frame(ArpOp::Reply, ENI_MAC, ENI_IP, ENI_IP);
        assert_eq!(answer_arp(&cfg(), &gratuitous_reply, no_resolve), Ok(None));
        let probe = arp_frame(ArpOp::Request, ENI_MAC, Ipv4Addr::UNSPECIFIED, ENI_IP);
        assert_eq!(answer_arp(&cfg(), &probe, no_resolve), Ok(None));
    }

    #[test]
    fn malformed_arp_is_an_error() {
        let good = who_has(ROUTER_IP);
        for len in 0..42 {
            assert!(
                answer_arp(&cfg(), &good[..len], no_resolve).is_err(),
                "truncated to {len}"
            );
        }
        let mut bad_op = good.clone();
        bad_op[14 + 7] = 3;
        assert!(matches!(
            answer_arp(&cfg(), &bad_op, no_resolve),
            Err(GatewayError::Malformed(_))
        ));
        let mut not_arp = good.clone();
        not_arp[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(
            answer_arp(&cfg(), &not_arp, no_resolve),
            Err(GatewayError::NotArp(0x86dd))
        );
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        tagged.extend_from_slice(&good[12..]);
        assert_eq!(
            answer_arp(&cfg(), &tagged, no_resolve),
            Err(GatewayError::Tagged)
        );
    }

    #[test]
    fn spoofed_arp_is_refused() {
        let spoofed = arp_frame(ArpOp::Request, OTHER_MAC, ENI_IP, ROUTER_IP);
        assert_eq!(
            answer_arp(&cfg(), &spoofed, no_resolve),
            Err(GatewayError::SpoofedMac {
                claimed: OTHER_MAC,
                eni: ENI_MAC
            })
        );
        // Ethernet source honest, ARP sender lying.
        let mut inner = who_has(ROUTER_IP);
        inner[14 + 8..14 + 14].copy_from_slice(&OTHER_MAC.0);
        assert!(matches!(
            answer_arp(&cfg(), &inner, no_resolve),
            Err(GatewayError::SpoofedMac { .. })
        ));
    }

    // ---- DHCP ----

    /// A client's BOOTP message: fixed header, cookie, `options` and END.
    fn bootp(chaddr: MacAddr, ciaddr: Ipv4Addr, flags: u16, options: &[(u8, &[u8])]) -> Vec<u8> {
        let mut m = vec![0u8; 240];
        m[0] = BOOTREQUEST;
        m[1] = 1;
        m[2] = 6;
        m[4..8].copy_from_slice(&XID);
        m[8..10].copy_from_slice(&3u16.to_be_bytes()); // secs
        m[10..12].copy_from_slice(&flags.to_be_bytes());
        m[12..16].copy_from_slice(&ciaddr.octets());
        m[28..34].copy_from_slice(&chaddr.0);
        m[236..240].copy_from_slice(&MAGIC_COOKIE);
        for (code, value) in options {
            m.push(*code);
            m.push(value.len() as u8);
            m.extend_from_slice(value);
        }
        m.push(option::END);
        m
    }

    fn udp_frame(
        src_mac: MacAddr,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        ports: (u16, u16),
        payload: &[u8],
    ) -> Vec<u8> {
        PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: MacAddr::BROADCAST,
                src: src_mac,
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
            l4: L4Repr::Udp(UdpRepr {
                src_port: ports.0,
                dst_port: ports.1,
            }),
        }
        .build(payload)
        .unwrap()
    }

    /// A client message from an instance without an address, broadcast.
    fn from_unconfigured(payload: &[u8]) -> Vec<u8> {
        udp_frame(
            ENI_MAC,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (CLIENT_PORT, SERVER_PORT),
            payload,
        )
    }

    fn client_id() -> Vec<u8> {
        let mut id = vec![1];
        id.extend_from_slice(&ENI_MAC.0);
        id
    }

    /// What busybox udhcpc sends first (broadcast flag clear, as by default).
    fn discover() -> Vec<u8> {
        let id = client_id();
        from_unconfigured(&bootp(
            ENI_MAC,
            Ipv4Addr::UNSPECIFIED,
            0,
            &[
                (option::MESSAGE_TYPE, &[msg_type::DISCOVER]),
                (option::CLIENT_ID, &id),
                (57, &[0x02, 0x40]),
                (option::PARAMETER_REQUEST_LIST, &[1, 3, 6, 12, 15, 28, 42]),
                (60, b"udhcp 1.36.1"),
            ],
        ))
    }

    fn request_selecting(requested: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
        let id = client_id();
        from_unconfigured(&bootp(
            ENI_MAC,
            Ipv4Addr::UNSPECIFIED,
            0,
            &[
                (option::MESSAGE_TYPE, &[msg_type::REQUEST]),
                (option::CLIENT_ID, &id),
                (option::REQUESTED_IP, &requested.octets()),
                (option::SERVER_ID, &server.octets()),
                (option::PARAMETER_REQUEST_LIST, &[1, 3, 6, 12, 15, 28, 42]),
            ],
        ))
    }

    /// A renewal: unicast from the leased address, ciaddr set, no option 50/54.
    fn request_renewing(ciaddr: Ipv4Addr, flags: u16) -> Vec<u8> {
        udp_frame(
            ENI_MAC,
            ciaddr,
            ROUTER_IP,
            (CLIENT_PORT, SERVER_PORT),
            &bootp(
                ENI_MAC,
                ciaddr,
                flags,
                &[
                    (option::MESSAGE_TYPE, &[msg_type::REQUEST]),
                    (option::PARAMETER_REQUEST_LIST, &[1, 3, 6, 26]),
                ],
            ),
        )
    }

    /// A reply taken apart, its checksums verified on the way.
    #[derive(Debug)]
    struct Parsed {
        eth: EthernetRepr,
        ip: Ipv4Repr,
        udp: UdpRepr,
        bootp: Vec<u8>,
        options: Vec<(u8, Vec<u8>)>,
    }

    impl Parsed {
        fn opt(&self, code: u8) -> Option<&[u8]> {
            self.options
                .iter()
                .find(|(c, _)| *c == code)
                .map(|(_, v)| v.as_slice())
        }

        fn codes(&self) -> Vec<u8> {
            self.options.iter().map(|(c, _)| *c).collect()
        }

        fn addr(&self, range: Range<usize>) -> Ipv4Addr {
            Ipv4Addr::from(<[u8; 4]>::try_from(&self.bootp[range]).unwrap())
        }

        fn msg_type(&self) -> u8 {
            self.opt(option::MESSAGE_TYPE).unwrap()[0]
        }
    }

    fn parse_reply(frame: &[u8]) -> Parsed {
        let (eth, payload) = EthernetRepr::parse(frame).unwrap();
        assert_eq!(eth.ethertype, ethertype::IPV4);
        // Ipv4Repr::parse verifies the header checksum.
        let (ip, l4) = Ipv4Repr::parse(payload).unwrap();
        assert_eq!(ip.protocol, protocol::UDP);
        assert_ne!(&l4[6..8], &[0, 0], "UDP checksum is present");
        assert!(
            checksum::verifies(checksum::add(ip.pseudo_header(), l4)),
            "UDP checksum"
        );
        let (udp, body) = UdpRepr::parse(l4).unwrap();
        assert!(body.len() >= MIN_BOOTP_LEN);
        assert_eq!(&body[field::COOKIE], &MAGIC_COOKIE);
        let options: Vec<(u8, Vec<u8>)> = Options::new(&body[field::OPTIONS..])
            .map(|o| o.map(|(c, v)| (c, v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        // The options end with END followed only by padding.
        let used: usize = options.iter().map(|(_, v)| 2 + v.len()).sum();
        let tail = &body[field::OPTIONS + used..];
        assert_eq!(tail[0], option::END, "options end with END");
        assert!(tail[1..].iter().all(|&b| b == option::PAD));
        Parsed {
            eth,
            ip,
            udp,
            bootp: body.to_vec(),
            options,
        }
    }

    /// Checks the fields every reply shares: from the router, copied ids.
    fn assert_common(r: &Parsed, broadcast: bool, flags: u16) {
        assert_eq!(r.eth.src, ROUTER_MAC);
        assert_eq!(r.ip.src, ROUTER_IP);
        assert_eq!((r.udp.src_port, r.udp.dst_port), (SERVER_PORT, CLIENT_PORT));
        if broadcast {
            assert_eq!(r.eth.dst, MacAddr::BROADCAST);
            assert_eq!(r.ip.dst, Ipv4Addr::BROADCAST);
        } else {
            assert_eq!(r.eth.dst, ENI_MAC);
            assert_eq!(r.ip.dst, ENI_IP);
        }
        assert_eq!(r.bootp[0], BOOTREPLY);
        assert_eq!(&r.bootp[1..4], &[1, 6, 0], "htype, hlen, hops");
        assert_eq!(&r.bootp[4..8], &XID);
        assert_eq!(&r.bootp[10..12], &flags.to_be_bytes());
        assert_eq!(r.addr(20..24), Ipv4Addr::UNSPECIFIED, "siaddr");
        assert_eq!(r.addr(24..28), Ipv4Addr::UNSPECIFIED, "giaddr copied");
        assert_eq!(&r.bootp[28..34], &ENI_MAC.0);
        assert!(
            r.bootp[34..236].iter().all(|&b| b == 0),
            "chaddr tail, sname, file"
        );
        assert_eq!(r.opt(option::SERVER_ID), Some(&ROUTER_IP.octets()[..]));
    }

    /// Checks the configuration options of an OFFER or ACK.
    fn assert_config(r: &Parsed) {
        assert_eq!(r.opt(option::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
        assert_eq!(r.opt(option::ROUTER), Some(&ROUTER_IP.octets()[..]));
        assert_eq!(r.opt(option::DNS), Some(&[10, 0, 0, 2][..]));
        assert_eq!(
            r.opt(option::INTERFACE_MTU),
            Some(&9001u16.to_be_bytes()[..])
        );
        assert_eq!(r.opt(option::BROADCAST), Some(&[10, 0, 1, 255][..]));
        assert_eq!(r.opt(option::HOST_NAME), Some(&b"ip-10-0-1-10"[..]));
        assert_eq!(r.opt(option::DOMAIN_NAME), Some(&b"ec2.internal"[..]));
    }

    fn assert_lease(r: &Parsed) {
        assert_eq!(r.opt(option::LEASE_TIME), Some(&3600u32.to_be_bytes()[..]));
        assert_eq!(
            r.opt(option::RENEWAL_TIME),
            Some(&1800u32.to_be_bytes()[..])
        );
        assert_eq!(
            r.opt(option::REBINDING_TIME),
            Some(&3150u32.to_be_bytes()[..])
        );
    }

    #[test]
    fn discover_gets_offer() {
        let offer = answer_dhcp(&cfg(), &discover()).unwrap().unwrap();
        let r = parse_reply(&offer);
        // No address yet: broadcast, though udhcpc leaves the flag clear.
        assert_common(&r, true, 0);
        assert_eq!(r.msg_type(), msg_type::OFFER);
        assert_eq!(r.addr(field::CIADDR), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.addr(field::YIADDR), ENI_IP);
        assert_lease(&r);
        assert_config(&r);
        assert_eq!(r.opt(option::CLIENT_ID), Some(&client_id()[..]));
        // Type, server, lease first; then the request list's order; MTU last.
        assert_eq!(r.codes(), [53, 54, 51, 58, 59, 1, 3, 6, 12, 15, 28, 26, 61]);
    }

    #[test]
    fn full_dora() {
        let c = cfg();
        let offer = parse_reply(&answer_dhcp(&c, &discover()).unwrap().unwrap());
        let server =
            Ipv4Addr::from(<[u8; 4]>::try_from(offer.opt(option::SERVER_ID).unwrap()).unwrap());
        let offered = offer.addr(field::YIADDR);
        let ack = answer_dhcp(&c, &request_selecting(offered, server))
            .unwrap()
            .unwrap();
        let r = parse_reply(&ack);
        assert_common(&r, true, 0);
        assert_eq!(r.msg_type(), msg_type::ACK);
        assert_eq!(r.addr(field::YIADDR), ENI_IP);
        assert_lease(&r);
        assert_config(&r);
        assert_eq!(r.opt(option::CLIENT_ID), Some(&client_id()[..]));
    }

    #[test]
    fn renewal_is_acked_unicast() {
        let ack = answer_dhcp(&cfg(), &request_renewing(ENI_IP, 0))
            .unwrap()
            .unwrap();
        let r = parse_reply(&ack);
        assert_common(&r, false, 0);
        assert_eq!(r.msg_type(), msg_type::ACK);
        assert_eq!(r.addr(field::CIADDR), ENI_IP);
        assert_eq!(r.addr(field::YIADDR), ENI_IP);
        assert_lease(&r);
        assert_config(&r);
        assert_eq!(r.codes()[5..9], [1, 3, 6, 26], "request list order");
        // The broadcast flag wins over a known address.
        let ack = answer_dhcp(&cfg(), &request_renewing(ENI_IP, BROADCAST_FLAG))
            .unwrap()
            .unwrap();
        assert_common(&parse_reply(&ack), true, BROADCAST_FLAG);
    }

    fn assert_nak(frame: &[u8]) {
        let reply = answer_dhcp(&cfg(), frame).unwrap().unwrap();
        let r = parse_reply(&reply);
        let flags = u16::from_be_bytes([frame[42 + 10], frame[42 + 11]]);
        assert_common(&r, true, flags);
        assert_eq!(r.msg_type(), msg_type::NAK);
        assert_eq!(r.addr(field::CIADDR), Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.addr(field::YIADDR), Ipv4Addr::UNSPECIFIED);
        for code in [
            option::LEASE_TIME,
            option::SUBNET_MASK,
            option::ROUTER,
            option::DNS,
        ] {
            assert_eq!(r.opt(code), None, "NAK carries no option {code}");
        }
    }

    #[test]
    fn request_for_another_address_is_naked() {
        assert_nak(&request_selecting(Ipv4Addr::new(10, 0, 1, 11), ROUTER_IP));
        assert_nak(&request_selecting(ENI_IP, Ipv4Addr::new(192, 168, 0, 1)));
        assert_nak(&request_renewing(Ipv4Addr::new(10, 0, 1, 11), 0));
        // INIT-REBOOT: option 50 without a server id.
        let reboot = from_unconfigured(&bootp(
            ENI_MAC,
            Ipv4Addr::UNSPECIFIED,
            0,
            &[
                (option::MESSAGE_TYPE, &[msg_type::REQUEST]),
                (option::REQUESTED_IP, &[192, 168, 1, 50]),
            ],
        ));
        assert_nak(&reboot);
    }

    #[test]
    fn inform_gets_ack_without_lease() {
        let frame = udp_frame(
            ENI_MAC,
            ENI_IP,
            ROUTER_IP,
            (CLIENT_PORT, SERVER_PORT),
            &bootp(
                ENI_MAC,
                ENI_IP,
                0,
                &[(option::MESSAGE_TYPE, &[msg_type::INFORM])],
            ),
        );
        let r = parse_reply(&answer_dhcp(&cfg(), &frame).unwrap().unwrap());
        assert_common(&r, false, 0);
        assert_eq!(r.msg_type(), msg_type::ACK);
        assert_eq!(r.addr(field::CIADDR), ENI_IP);
        assert_eq!(r.addr(field::YIADDR), Ipv4Addr::UNSPECIFIED);
        for code in [
            option::LEASE_TIME,
            option::RENEWAL_TIME,
            option::REBINDING_TIME,
        ] {
            assert_eq!(r.opt(code), None, "INFORM's ACK carries no option {code}");
        }
        assert_config(&r);
    }

    #[test]
    fn release_and_decline_get_no_answer() {
        for t in [msg_type::RELEASE, msg_type::DECLINE] {
            let frame = udp_frame(
                ENI_MAC,
                ENI_IP,
                ROUTER_IP,
                (CLIENT_PORT, SERVER_PORT),
                &bootp(
                    ENI_MAC,
                    ENI_IP,
                    0,
                    &[
                        (option::MESSAGE_TYPE, &[t]),
                        (option::SERVER_ID, &ROUTER_IP.octets()),
                    ],
                ),
            );
            assert_eq!(answer_dhcp(&cfg(), &frame), Ok(None));
        }
    }

    #[test]
    fn foreign_client_gets_nothing() {
        let frame = from_unconfigured(&bootp(
            OTHER_MAC,
            Ipv4Addr::UNSPECIFIED,
            0,
            &[(option::MESSAGE_TYPE, &[msg_type::DISCOVER])],
        ));
        assert_eq!(
            answer_dhcp(&cfg(), &frame),
            Err(GatewayError::ForeignClient {
                chaddr: OTHER_MAC,
                eni: ENI_MAC
            })
        );
        let spoofed = udp_frame(
            OTHER_MAC,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            (CLIENT_PORT, SERVER_PORT),
            &bootp(
                ENI_MAC,
                Ipv4Addr::UNSPECIFIED,
                0,
                &[(option::MESSAGE_TYPE, &[msg_type::DISCOVER])],
            ),
        );
        assert!(matches!(
            answer_dhcp(&cfg(), &spoofed),
            Err(GatewayError::SpoofedMac { .. })
        ));
    }

    #[test]
    fn other_servers_and_protocols_are_not_ours() {
        let elsewhere = udp_frame(
            ENI_MAC,
            ENI_IP,
            Ipv4Addr::new(10, 0, 2, 1),
            (CLIENT_PORT, SERVER_PORT),
            &bootp(
                ENI_MAC,
                ENI_IP,
                0,
                &[(option::MESSAGE_TYPE, &[msg_type::REQUEST])],
            ),
        );
        assert_eq!(
            answer_dhcp(&cfg(), &elsewhere),
            Err(GatewayError::NotForUs(Ipv4Addr::new(10, 0, 2, 1)))
        );
        let dns = udp_frame(
            ENI_MAC,
            ENI_IP,
            Ipv4Addr::new(10, 0, 0, 2),
            (40000, 53),
            b"q",
        );
        assert!(!is_dhcp_request(&dns));
        assert_eq!(answer_dhcp(&cfg(), &dns), Err(GatewayError::NotDhcp));
        assert!(!is_dhcp_request(&who_has(ROUTER_IP)));
        assert_eq!(
            answer_dhcp(&cfg(), &who_has(ROUTER_IP)),
            Err(GatewayError::NotDhcp)
        );
        let server_to_client = udp_frame(
            ENI_MAC,
            ENI_IP,
            Ipv4Addr::BROADCAST,
            (SERVER_PORT, CLIENT_PORT),
            b"x",
        );
        assert!(!is_dhcp_request(&server_to_client));
        assert!(is_dhcp_request(&discover()));
        let mut later_fragment = discover();
        later_fragment[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes());
        assert!(!is_dhcp_request(&later_fragment));
    }

    #[test]
    fn malformed_dhcp_is_a_typed_error() {
        let c = cfg();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut m = bootp(
                ENI_MAC,
                Ipv4Addr::UNSPECIFIED,
                0,
                &[(option::MESSAGE_TYPE, &[msg_type::DISCOVER])],
            );
            edit(&mut m);
            answer_dhcp(&c, &from_unconfigured(&m))
        };
        assert_eq!(
            with(&|m| m[0] = BOOTREPLY),
            Err(GatewayError::NotBootRequest(2))
        );
        assert_eq!(
            with(&|m| m[2] = 8),
            Err(GatewayError::NotEthernet { htype: 1, hlen: 8 })
        );
        assert_eq!(with(&|m| m[236] = 0), Err(GatewayError::NoMagicCookie));
        assert_eq!(
            with(&|m| m.truncate(239)),
            Err(GatewayError::DhcpTruncated {
                need: 240,
                have: 239
            })
        );
        assert_eq!(with(&|m| m.truncate(240)), Err(GatewayError::NoMessageType));
        assert_eq!(
            with(&|m| m.truncate(242)),
            Err(GatewayError::OptionOverrun { code: 53 })
        );
        assert_eq!(
            with(&|m| m[241] = 2),
            Err(GatewayError::OptionLength { code: 53, len: 2 })
        );
        assert_eq!(
            with(&|m| m[242] = msg_type::ACK),
            Err(GatewayError::UnexpectedMessageType(5))
        );
        // A missing END is tolerated.
        assert!(
            with(&|m| {
                m.pop();
            })
            .unwrap()
            .is_some()
        );
        // Ethernet padding after the IPv4 packet is not part of the message.
        let mut padded = discover();
        padded.extend_from_slice(&[0; 30]);
        assert!(answer_dhcp(&c, &padded).unwrap().is_some());
        let good = discover();
        for len in 0..good.len() {
            assert!(answer_dhcp(&c, &good[..len]).is_err(), "truncated to {len}");
        }
    }

    #[test]
    fn without_names_options_12_and_15_are_absent() {
        let c = GatewayConfig {
            hostname: None,
            domain_name: None,
            ..cfg()
        };
        let r = parse_reply(&answer_dhcp(&c, &discover()).unwrap().unwrap());
        assert_eq!(r.opt(option::HOST_NAME), None);
        assert_eq!(r.opt(option::DOMAIN_NAME), None);
        assert_eq!(
            r.opt(option::INTERFACE_MTU),
            Some(&9001u16.to_be_bytes()[..])
        );
    }

    #[test]
    fn options_sets_own_name_servers_replace_amazon_dns() {
        // spec 1.4: a DHCP options set's domain-name-servers are what
        // instances get, in its order, instead of AmazonProvidedDNS.
        let r = parse_reply(&answer_dhcp(&cfg(), &discover()).unwrap().unwrap());
        assert_eq!(r.opt(option::DNS), Some(&[10, 0, 0, 2][..]));
        let c = GatewayConfig {
            dns_servers: vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(10, 0, 0, 2)],
            ..cfg()
        };
        let r = parse_reply(&answer_dhcp(&c, &discover()).unwrap().unwrap());
        assert_eq!(r.opt(option::DNS), Some(&[192, 0, 2, 53, 10, 0, 0, 2][..]));
    }

    #[test]
    fn long_names_are_split_per_rfc3396() {
        let long = "a".repeat(300);
        let c = GatewayConfig {
            domain_name: Some(long.clone()),
            ..cfg()
        };
        let r = parse_reply(&answer_dhcp(&c, &discover()).unwrap().unwrap());
        let joined: Vec<u8> = r
            .options
            .iter()
            .filter(|(code, _)| *code == option::DOMAIN_NAME)
            .flat_map(|(_, v)| v.clone())
            .collect();
        assert_eq!(joined, long.as_bytes());
    }

    #[test]
    fn subnet_arithmetic() {
        let c = GatewayConfig {
            subnet: (Ipv4Addr::new(172, 31, 37, 9), 20),
            ..cfg()
        };
        assert_eq!(c.network(), Ipv4Addr::new(172, 31, 32, 0));
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(172, 31, 47, 255));
        assert_eq!(c.router_ip(), Ipv4Addr::new(172, 31, 32, 1));
        let any = GatewayConfig {
            subnet: (Ipv4Addr::new(1, 2, 3, 4), 0),
            ..cfg()
        };
        assert_eq!(any.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(any.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    // ---- properties ----

    fn valid_frames() -> Vec<Vec<u8>> {
        vec![
            discover(),
            request_selecting(ENI_IP, ROUTER_IP),
            request_renewing(ENI_IP, 0),
            who_has(ROUTER_IP),
            who_has(Ipv4Addr::new(10, 0, 1, 20)),
        ]
    }

    /// Any reply the gateway emits must be well-formed.
    fn check_reply(reply: &[u8]) {
        let (eth, _) = EthernetRepr::parse(reply).unwrap();
        if eth.ethertype == ethertype::IPV4 {
            parse_reply(reply);
        } else {
            assert_eq!(reply.len(), MIN_FRAME);
        }
    }

    fn run_all(frame: &[u8]) {
        let c = cfg();
        let dhcp = answer_dhcp(&c, frame);
        if !is_dhcp_request(frame) {
            assert!(
                dhcp.is_err(),
                "is_dhcp_request is false but answer_dhcp answered"
            );
        }
        if let Ok(Some(reply)) = dhcp {
            check_reply(&reply);
        }
        if let Ok(Some(reply)) = answer_arp(&c, frame, |_| Some(OTHER_MAC)) {
            check_reply(&reply);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            run_all(&bytes);
        }

        #[test]
        fn mutated_frames_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<Option<usize>>(),
        ) {
            let mut frame = valid_frames().swap_remove(which);
            for (at, value) in edits {
                let at = at % frame.len();
                frame[at] = value;
            }
            if let Some(cut) = cut {
                frame.truncate(cut % (frame.len() + 1));
            }
            run_all(&frame);
        }

        #[test]
        fn arbitrary_options_never_panic(
            msg in prop_oneof![Just(1u8), Just(3), Just(8), any::<u8>()],
            flags in any::<u16>(),
            ciaddr in any::<[u8; 4]>(),
            options in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut m = bootp(ENI_MAC, Ipv4Addr::from(ciaddr), flags, &[(option::MESSAGE_TYPE, &[msg])]);
            m.pop();
            m.extend_from_slice(&options);
            let frame = from_unconfigured(&m);
            prop_assert!(is_dhcp_request(&frame));
            run_all(&frame);
        }
    }

    // ---- a real decoder as the judge ----

    mod tshark {
        use super::*;
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        use std::process::Command;
        use std::time::Duration;

        fn available() -> bool {
            let found = Command::new("tshark").arg("--version").output().is_ok();
            if !found {
                assert!(
                    std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
                    "tshark is required but not installed: run scripts/test, which installs it"
                );
                eprintln!("skipping: tshark is not installed (scripts/test installs it)");
            }
            found
        }

        fn write_pcap(frames: &[Vec<u8>]) -> tempfile::NamedTempFile {
            let file = tempfile::Builder::new().suffix(".pcap").tempfile().unwrap();
            let mut writer = PcapWriter::new(file.reopen().unwrap()).unwrap();
            for (i, f) in frames.iter().enumerate() {
                let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
                writer.write_packet(&packet).unwrap();
            }
            drop(writer);
            file
        }

        fn tshark(file: &tempfile::NamedTempFile, extra: &[&str]) -> String {
            let out = Command::new("tshark")
                .arg("-n")
                .args([
                    "-o",
                    "ip.check_checksum:TRUE",
                    "-o",
                    "udp.check_checksum:TRUE",
                ])
                .arg("-r")
                .arg(file.path())
                .args(extra)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tshark failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }

        #[test]
        fn tshark_decodes_offer_and_ack() {
            if !available() {
                return;
            }
            let c = cfg();
            let frames = vec![
                answer_dhcp(&c, &discover()).unwrap().unwrap(),
                answer_dhcp(&c, &request_selecting(ENI_IP, ROUTER_IP))
                    .unwrap()
                    .unwrap(),
                answer_dhcp(&c, &request_renewing(ENI_IP, 0))
                    .unwrap()
                    .unwrap(),
                answer_dhcp(
                    &c,
                    &request_selecting(Ipv4Addr::new(10, 0, 1, 11), ROUTER_IP),
                )
                .unwrap()
                .unwrap(),
                answer_arp(&c, &who_has(ROUTER_IP), no_resolve)
                    .unwrap()
                    .unwrap(),
            ];
            let file = write_pcap(&frames);
            let fields = [
                "dhcp.option.dhcp",
                "dhcp.ip.your",
                "dhcp.option.interface_mtu",
                "dhcp.option.ip_address_lease_time",
                "dhcp.option.subnet_mask",
                "dhcp.option.router",
                "dhcp.option.domain_name_server",
                "dhcp.option.hostname",
                "dhcp.option.domain_name",
                "dhcp.option.broadcast_address",
                "arp.src.proto_ipv4",
                "arp.src.hw_mac",
            ];
            let mut args = vec!["-T", "fields", "-E", "separator=|"];
            for f in fields {
                args.extend(["-e", f]);
            }
            let text = tshark(&file, &args);
            let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
            assert_eq!(rows.len(), 5, "{text}");
            let lease = [
                "2",
                "10.0.1.10",
                "9001",
                "3600",
                "255.255.255.0",
                "10.0.1.1",
                "10.0.0.2",
                "ip-10-0-1-10",
                "ec2.internal",
                "10.0.1.255",
                "",
                "",
            ];
            assert_eq!(rows[0], lease, "OFFER");
            let mut ack = lease;
            ack[0] = "5";
            assert_eq!(rows[1], ack, "ACK");
            assert_eq!(rows[2], ack, "renewal ACK");
            assert_eq!(
                rows[3],
                ["6", "0.0.0.0", "", "", "", "", "", "", "", "", "", ""],
                "NAK"
            );
            assert_eq!(rows[4][10..], ["10.0.1.1", "02:fe:00:00:00:01"], "ARP");

            let verbose = tshark(&file, &["-V"]);
            assert!(
                !verbose.contains("Malformed"),
                "tshark reports a malformed packet:\n{verbose}"
            );
            assert!(
                !verbose.contains("[incorrect"),
                "tshark reports a bad checksum:\n{verbose}"
            );
            assert!(
                !verbose.contains("Expert Info (Warning"),
                "tshark warns:\n{verbose}"
            );
            // Four DHCP frames: each has an IPv4 and a UDP checksum, both verified.
            assert_eq!(
                verbose.matches("[Header checksum status: Good]").count(),
                4,
                "IPv4 checksums:\n{verbose}"
            );
            assert_eq!(
                verbose.matches("[Checksum Status: Good]").count(),
                4,
                "UDP checksums:\n{verbose}"
            );
        }
    }
}
