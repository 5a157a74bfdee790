//! ARP for IPv4 over Ethernet (RFC 826): the only kind a VPC carries.

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, MacAddr, ethernet::ethertype, split_header};

/// The 28-byte Ethernet/IPv4 ARP packet, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ArpHeader {
    pub htype: U16,
    pub ptype: U16,
    pub hlen: u8,
    pub plen: u8,
    pub oper: U16,
    pub sender_mac: MacAddr,
    pub sender_ip: [u8; 4],
    pub target_mac: MacAddr,
    pub target_ip: [u8; 4],
}

impl ArpHeader {
    pub const LEN: usize = 28;
}

/// ARP operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOp {
    Request,
    Reply,
}

/// An Ethernet/IPv4 ARP packet as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    pub op: ArpOp,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Parses an ARP packet; anything but Ethernet/IPv4 request or reply is an error.
    pub fn parse(buf: &[u8]) -> Result<Self, Error> {
        let (h, _) = split_header::<ArpHeader>(buf, Layer::Arp)?;
        let unsupported = |field, value: u32| Error::Unsupported {
            layer: Layer::Arp,
            field,
            value,
        };
        if h.htype.get() != 1 {
            return Err(unsupported("hardware type", h.htype.get().into()));
        }
        if h.ptype.get() != ethertype::IPV4 {
            return Err(unsupported("protocol type", h.ptype.get().into()));
        }
        if h.hlen != 6 || h.plen != 4 {
            return Err(unsupported(
                "address length",
                u32::from(h.hlen) << 8 | u32::from(h.plen),
            ));
        }
        let op = match h.oper.get() {
            1 => ArpOp::Request,
            2 => ArpOp::Reply,
            other => return Err(unsupported("operation", other.into())),
        };
        Ok(ArpRepr {
            op,
            sender_mac: h.sender_mac,
            sender_ip: Ipv4Addr::from(h.sender_ip),
            target_mac: h.target_mac,
            target_ip: Ipv4Addr::from(h.target_ip),
        })
    }

    pub fn header_len(&self) -> usize {
        ArpHeader::LEN
    }

    /// The reply a responder owning `target_ip` with `mac` sends to this request.
    pub fn reply(&self, mac: MacAddr) -> ArpRepr {
        ArpRepr {
            op: ArpOp::Reply,
            sender_mac: mac,
            sender_ip: self.target_ip,
            target_mac: self.sender_mac,
            target_ip: self.sender_ip,
        }
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        ensure_room(buf, ArpHeader::LEN, Layer::Arp)?;
        let h = ArpHeader {
            htype: 1.into(),
            ptype: ethertype::IPV4.into(),
            hlen: 6,
            plen: 4,
            oper: match self.op {
                ArpOp::Request => 1,
                ArpOp::Reply => 2,
            }
            .into(),
            sender_mac: self.sender_mac,
            sender_ip: self.sender_ip.octets(),
            target_mac: self.target_mac,
            target_ip: self.target_ip.octets(),
        };
        buf[..ArpHeader::LEN].copy_from_slice(h.as_bytes());
        Ok(ArpHeader::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Who has 10.0.0.1? Tell 10.0.0.10 (captured from a Linux guest).
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x0a,
        0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
    ];

    #[test]
    fn deconstruct_construct() {
        let repr = ArpRepr::parse(&REQUEST).unwrap();
        assert_eq!(repr.op, ArpOp::Request);
        assert_eq!(repr.sender_ip, Ipv4Addr::new(10, 0, 0, 10));
        assert_eq!(repr.target_ip, Ipv4Addr::new(10, 0, 0, 1));
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        assert_eq!(buf, REQUEST);
        let reply = repr.reply(MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(reply.sender_ip, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(reply.target_mac, repr.sender_mac);
    }

    #[test]
    fn rejects_other_protocols() {
        let mut bad = REQUEST;
        bad[3] = 0xdd; // ptype 0x08dd
        assert!(ArpRepr::parse(&bad).is_err());
        let mut bad = REQUEST;
        bad[7] = 9;
        assert!(ArpRepr::parse(&bad).is_err());
        assert!(ArpRepr::parse(&REQUEST[..27]).is_err());
    }
}
