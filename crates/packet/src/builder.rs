//! Builds whole frames from header reprs: lengths, protocol numbers and
//! checksums are filled in, so callers state only what matters to them.
//! Used by the dataplane's slow path (ARP, DHCP and ICMP answers) and tests.

use crate::error::ensure_room;
use crate::ethernet::{EthernetRepr, ethertype};
use crate::icmp::IcmpRepr;
use crate::ip::protocol;
use crate::ipv4::Ipv4Repr;
use crate::ipv6::Ipv6Repr;
use crate::tcp::{self, TcpRepr};
use crate::udp::{self, UdpRepr};
use crate::{Error, Layer, icmpv4, icmpv6};

/// The network layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    V4(Ipv4Repr),
    V6(Ipv6Repr),
}

/// The transport layer of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Repr {
    Tcp(TcpRepr),
    Udp(UdpRepr),
    Icmpv4(IcmpRepr),
    Icmpv6(IcmpRepr),
    /// No L4 header is built: the payload follows the IP header as given,
    /// and the IP header's protocol field is kept.
    Raw,
}

impl L4Repr {
    fn header_len(&self) -> usize {
        match self {
            L4Repr::Tcp(t) => t.header_len(),
            L4Repr::Udp(_) => udp::UdpHeader::LEN,
            L4Repr::Icmpv4(_) | L4Repr::Icmpv6(_) => crate::icmp::IcmpHeader::LEN,
            L4Repr::Raw => 0,
        }
    }

    fn protocol(&self) -> Option<u8> {
        match self {
            L4Repr::Tcp(_) => Some(protocol::TCP),
            L4Repr::Udp(_) => Some(protocol::UDP),
            L4Repr::Icmpv4(_) => Some(protocol::ICMP),
            L4Repr::Icmpv6(_) => Some(protocol::ICMPV6),
            L4Repr::Raw => None,
        }
    }
}

/// A frame to build: optional Ethernet, IP, L4; the payload is given to `emit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketBuilder {
    /// `None` builds a bare IP packet.
    pub ethernet: Option<EthernetRepr>,
    pub ip: IpRepr,
    pub l4: L4Repr,
}

impl PacketBuilder {
    /// Total length of the frame for a payload of `payload_len` bytes.
    pub fn len(&self, payload_len: usize) -> usize {
        let eth = self.ethernet.as_ref().map_or(0, EthernetRepr::header_len);
        let ip = match &self.ip {
            IpRepr::V4(v4) => v4.header_len(),
            IpRepr::V6(v6) => v6.header_len(),
        };
        eth + ip + self.l4.header_len() + payload_len
    }

    /// Writes the frame into `buf`; returns its length.
    pub fn emit(&self, payload: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        let total = self.len(payload.len());
        ensure_room(buf, total, Layer::Ethernet)?;
        let buf = &mut buf[..total];
        let mut at = 0;
        if let Some(mut eth) = self.ethernet {
            eth.ethertype = match self.ip {
                IpRepr::V4(_) => ethertype::IPV4,
                IpRepr::V6(_) => ethertype::IPV6,
            };
            at += eth.emit(buf)?;
        }
        let l4_len = self.l4.header_len() + payload.len();
        let too_long = |value| Error::Length {
            layer: Layer::Ethernet,
            value,
            have: usize::from(u16::MAX),
        };
        let pseudo = match self.ip {
            IpRepr::V4(mut v4) => {
                v4.protocol = self.l4.protocol().unwrap_or(v4.protocol);
                v4.payload_len = u16::try_from(l4_len).map_err(|_| too_long(l4_len))?;
                at += v4.emit(&mut buf[at..])?;
                v4.pseudo_header()
            }
            IpRepr::V6(mut v6) => {
                v6.next_header = self.l4.protocol().unwrap_or(v6.next_header);
                v6.payload_len = u16::try_from(l4_len).map_err(|_| too_long(l4_len))?;
                at += v6.emit(&mut buf[at..])?;
                v6.pseudo_header()
            }
        };
        let l4 = &mut buf[at..];
        let header = match &self.l4 {
            L4Repr::Tcp(t) => t.emit(l4)?,
            L4Repr::Udp(u) => u.emit(l4, payload.len())?,
            L4Repr::Icmpv4(i) => i.emit(l4, Layer::Icmpv4)?,
            L4Repr::Icmpv6(i) => i.emit(l4, Layer::Icmpv6)?,
            L4Repr::Raw => 0,
        };
        l4[header..].copy_from_slice(payload);
        match &self.l4 {
            L4Repr::Tcp(_) => tcp::fill_checksum(l4, pseudo)?,
            L4Repr::Udp(_) => udp::fill_checksum(l4, pseudo)?,
            L4Repr::Icmpv4(_) => icmpv4::fill_checksum(l4)?,
            L4Repr::Icmpv6(_) => icmpv6::fill_checksum(l4, pseudo)?,
            L4Repr::Raw => {}
        }
        Ok(total)
    }

    /// Builds the frame into a new buffer.
    pub fn build(&self, payload: &[u8]) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; self.len(payload.len())];
        self.emit(payload, &mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MacAddr;
    use crate::flow::parse_ethernet;
    use core::net::Ipv4Addr;

    #[test]
    fn tcp_frame_parses_back() {
        let b = PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: MacAddr([2, 0, 0, 0, 0, 2]),
                src: MacAddr([2, 0, 0, 0, 0, 1]),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(
                Ipv4Addr::new(10, 0, 1, 5),
                Ipv4Addr::new(10, 0, 2, 7),
                0,
                0,
            )),
            l4: L4Repr::Tcp(TcpRepr::new(33000, 443, tcp::flags::SYN)),
        };
        let frame = b.build(b"hello").unwrap();
        assert_eq!(frame.len(), 14 + 20 + 20 + 5);
        let flow = parse_ethernet(&frame).unwrap();
        assert_eq!(flow.key.dst_port, 443);
        assert_eq!(flow.l4_offset, 34);
        let (ip, l4) = Ipv4Repr::parse(&frame[14..]).unwrap();
        assert_eq!(ip.protocol, protocol::TCP);
        let sum = crate::checksum::add(ip.pseudo_header(), l4);
        assert!(crate::checksum::verifies(sum));
        assert!(b.emit(b"hello", &mut [0u8; 20]).is_err());
    }
}
