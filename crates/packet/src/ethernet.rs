//! Ethernet II frames, with at most one 802.1Q (or 802.1ad) tag.

use core::fmt;
use core::str::FromStr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, split_header};

/// EtherType values this crate understands.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const QINQ: u16 = 0x88a8;
    pub const IPV6: u16 = 0x86dd;
    /// Transparent Ethernet Bridging: an Ethernet frame inside Geneve.
    pub const TEB: u16 = 0x6558;
}

/// A 48-bit MAC address.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    FromBytes,
    IntoBytes,
    KnownLayout,
    Immutable,
    Unaligned,
)]
#[repr(transparent)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// True for group (multicast and broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// True for locally administered addresses (the kind openvpc assigns).
    pub fn is_local(&self) -> bool {
        self.0[0] & 2 == 2
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The text was not six colon-separated hex octets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a MAC address: expected six hex octets such as 02:00:00:00:00:01")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(|| ParseMacError(s.into()))?;
            if part.len() != 2 {
                return Err(ParseMacError(s.into()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ParseMacError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(ParseMacError(s.into()));
        }
        Ok(MacAddr(out))
    }
}

/// The fixed 14-byte Ethernet II header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EthernetHeader {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub ethertype: U16,
}

impl EthernetHeader {
    pub const LEN: usize = 14;

    /// The header and everything after it (a tag, if any, is still there).
    pub fn view(buf: &[u8]) -> Result<(&Self, &[u8]), Error> {
        split_header(buf, Layer::Ethernet)
    }

    /// Mutable view, for rewriting MAC addresses in place.
    pub fn view_mut(buf: &mut [u8]) -> Result<(&mut Self, &mut [u8]), Error> {
        crate::split_header_mut(buf, Layer::Ethernet)
    }
}

/// The 4 bytes after the MACs when a frame is tagged: TCI and inner EtherType.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VlanHeader {
    pub tci: U16,
    pub ethertype: U16,
}

/// An 802.1Q tag: priority, drop-eligible bit and VLAN ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag protocol identifier: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    pub tpid: u16,
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
}

impl VlanTag {
    fn tci(&self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }

    fn from_tci(tpid: u16, tci: u16) -> Self {
        VlanTag {
            tpid,
            pcp: (tci >> 13) as u8,
            dei: tci & 0x1000 != 0,
            vid: tci & 0x0fff,
        }
    }
}

/// Where the network layer starts, found without building a repr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EthernetSplit {
    /// The EtherType of the payload (after any tag).
    pub ethertype: u16,
    /// Offset of the payload in the frame: 14, or 18 when tagged.
    pub payload_offset: usize,
}

/// Finds the payload's EtherType and offset, skipping one VLAN tag.
#[inline]
pub fn split(frame: &[u8]) -> Result<EthernetSplit, Error> {
    let (eth, rest) = EthernetHeader::view(frame)?;
    let ethertype = eth.ethertype.get();
    if ethertype == ethertype::VLAN || ethertype == ethertype::QINQ {
        let (tag, _) = split_header::<VlanHeader>(rest, Layer::Vlan)?;
        return Ok(EthernetSplit {
            ethertype: tag.ethertype.get(),
            payload_offset: EthernetHeader::LEN + 4,
        });
    }
    Ok(EthernetSplit {
        ethertype,
        payload_offset: EthernetHeader::LEN,
    })
}

/// An Ethernet header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    pub dst: MacAddr,
    pub src: MacAddr,
    pub vlan: Option<VlanTag>,
    /// The EtherType of the payload.
    pub ethertype: u16,
}

impl EthernetRepr {
    /// Parses the header (and tag) and returns it with the payload.
    pub fn parse(frame: &[u8]) -> Result<(Self, &[u8]), Error> {
        let (eth, rest) = EthernetHeader::view(frame)?;
        let outer = eth.ethertype.get();
        if outer == ethertype::VLAN || outer == ethertype::QINQ {
            let (tag, payload) = split_header::<VlanHeader>(rest, Layer::Vlan)?;
            let repr = EthernetRepr {
                dst: eth.dst,
                src: eth.src,
                vlan: Some(VlanTag::from_tci(outer, tag.tci.get())),
                ethertype: tag.ethertype.get(),
            };
            return Ok((repr, payload));
        }
        let repr = EthernetRepr {
            dst: eth.dst,
            src: eth.src,
            vlan: None,
            ethertype: outer,
        };
        Ok((repr, rest))
    }

    pub fn header_len(&self) -> usize {
        EthernetHeader::LEN + if self.vlan.is_some() { 4 } else { 0 }
    }

    /// Writes the header at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        ensure_room(buf, len, Layer::Ethernet)?;
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        match self.vlan {
            Some(tag) => {
                buf[12..14].copy_from_slice(&tag.tpid.to_be_bytes());
                buf[14..16].copy_from_slice(&tag.tci().to_be_bytes());
                buf[16..18].copy_from_slice(&self.ethertype.to_be_bytes());
            }
            None => buf[12..14].copy_from_slice(&self.ethertype.to_be_bytes()),
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real frame header: broadcast ARP from 52:54:00:12:34:56.
    const ARP_FRAME_HEAD: [u8; 14] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
    ];

    #[test]
    fn deconstruct() {
        let (hdr, rest) = EthernetHeader::view(&ARP_FRAME_HEAD).unwrap();
        assert!(hdr.dst.is_broadcast());
        assert_eq!(hdr.src.to_string(), "52:54:00:12:34:56");
        assert_eq!(hdr.ethertype.get(), ethertype::ARP);
        assert!(rest.is_empty());
    }

    #[test]
    fn construct_tagged() {
        let repr = EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: "52:54:00:12:34:56".parse().unwrap(),
            vlan: Some(VlanTag {
                tpid: ethertype::VLAN,
                pcp: 5,
                dei: true,
                vid: 100,
            }),
            ethertype: ethertype::IPV4,
        };
        let mut buf = [0u8; 18];
        assert_eq!(repr.emit(&mut buf).unwrap(), 18);
        assert_eq!(&buf[12..18], &[0x81, 0x00, 0xb0, 0x64, 0x08, 0x00]);
        let (back, rest) = EthernetRepr::parse(&buf).unwrap();
        assert_eq!(back, repr);
        assert!(rest.is_empty());
        assert_eq!(
            split(&buf).unwrap(),
            EthernetSplit {
                ethertype: ethertype::IPV4,
                payload_offset: 18
            }
        );
    }

    #[test]
    fn truncated_tag_is_an_error() {
        let mut buf = ARP_FRAME_HEAD;
        buf[12] = 0x81;
        buf[13] = 0x00;
        assert!(matches!(
            split(&buf),
            Err(Error::Truncated {
                layer: Layer::Vlan,
                ..
            })
        ));
    }

    #[test]
    fn mac_parse_rejects_garbage() {
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("0g:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert_eq!(
            "02-00-00-00-00-0a".parse::<MacAddr>().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 10])
        );
    }
}
