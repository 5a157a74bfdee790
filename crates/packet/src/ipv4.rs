//! IPv4 headers (RFC 791), options included; fragments are recognised and
//! flagged, never reassembled here.

use core::net::Ipv4Addr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, checksum, split_header};

/// The fixed 20 bytes of an IPv4 header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Ipv4Header {
    pub version_ihl: u8,
    pub dscp_ecn: u8,
    pub total_len: U16,
    pub ident: U16,
    pub flags_frag: U16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: U16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

const DONT_FRAGMENT: u16 = 0x4000;
const MORE_FRAGMENTS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Largest options area: IHL is 4 bits, so at most 60 − 20 bytes.
pub const MAX_OPTIONS: usize = 40;

/// A checked IPv4 packet: the header view, its options and the payload
/// (trimmed to `total_len`, so Ethernet padding is not payload).
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    pub header: &'a Ipv4Header,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl Ipv4Header {
    pub const LEN: usize = 20;

    /// Checks version, IHL and total length, and splits the packet.
    #[inline]
    pub fn view(buf: &[u8]) -> Result<Ipv4Packet<'_>, Error> {
        let (header, rest) = split_header::<Ipv4Header>(buf, Layer::Ipv4)?;
        let version = header.version_ihl >> 4;
        if version != 4 {
            return Err(Error::Version {
                layer: Layer::Ipv4,
                version,
            });
        }
        let header_len = header.header_len();
        let total_len = usize::from(header.total_len.get());
        if header_len < Self::LEN || total_len < header_len || total_len > buf.len() {
            return Err(Error::Length {
                layer: Layer::Ipv4,
                value: if header_len < Self::LEN {
                    header_len
                } else {
                    total_len
                },
                have: buf.len(),
            });
        }
        let (options, payload) = rest[..total_len - Self::LEN].split_at(header_len - Self::LEN);
        Ok(Ipv4Packet {
            header,
            options,
            payload,
        })
    }

    /// The fixed header for in-place rewrites; lengths are not re-checked.
    pub fn view_mut(buf: &mut [u8]) -> Result<&mut Ipv4Header, Error> {
        crate::split_header_mut::<Ipv4Header>(buf, Layer::Ipv4).map(|(h, _)| h)
    }

    /// Header length in bytes, from IHL.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.version_ihl & 0x0f) * 4
    }

    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.src)
    }

    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.dst)
    }

    /// True for any fragment: more-fragments set or a non-zero offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_frag.get() & (MORE_FRAGMENTS | FRAG_OFFSET_MASK) != 0
    }

    /// True for the second and later fragments, which carry no L4 header.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.flags_frag.get() & FRAG_OFFSET_MASK != 0
    }

    /// Sets the source address, patching the header checksum (RFC 1624).
    pub fn set_src(&mut self, addr: Ipv4Addr) {
        let old = u32::from_be_bytes(self.src);
        self.checksum = checksum::update32(self.checksum.get(), old, addr.to_bits()).into();
        self.src = addr.octets();
    }

    /// Sets the destination address, patching the header checksum.
    pub fn set_dst(&mut self, addr: Ipv4Addr) {
        let old = u32::from_be_bytes(self.dst);
        self.checksum = checksum::update32(self.checksum.get(), old, addr.to_bits()).into();
        self.dst = addr.octets();
    }

    /// Decrements the TTL, patching the checksum; returns the new TTL.
    pub fn decrement_ttl(&mut self) -> u8 {
        let old = u16::from_be_bytes([self.ttl, self.protocol]);
        self.ttl = self.ttl.saturating_sub(1);
        let new = u16::from_be_bytes([self.ttl, self.protocol]);
        self.checksum = checksum::update16(self.checksum.get(), old, new).into();
        self.ttl
    }
}

impl Ipv4Packet<'_> {
    /// True if the header checksum (options included) verifies.
    pub fn checksum_ok(&self) -> bool {
        let acc = checksum::add(0, self.header.as_bytes());
        checksum::verifies(checksum::add(acc, self.options))
    }
}

/// Fragmentation fields of an IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Fragmentation {
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Offset in 8-byte units.
    pub offset: u16,
}

/// An IPv4 header as a value. `payload_len` is the length after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub frag: Fragmentation,
    pub options_len: u8,
    /// Options bytes; only the first `options_len` are meaningful.
    pub options: [u8; MAX_OPTIONS],
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// A plain header: no options, DF set, TTL 64.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: u16) -> Self {
        Ipv4Repr {
            src,
            dst,
            protocol,
            ttl: 64,
            dscp_ecn: 0,
            ident: 0,
            frag: Fragmentation {
                dont_fragment: true,
                ..Fragmentation::default()
            },
            options_len: 0,
            options: [0; MAX_OPTIONS],
            payload_len,
        }
    }

    /// Parses and checks the header and its checksum; returns it with the payload.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let pkt = Ipv4Header::view(buf)?;
        if !pkt.checksum_ok() {
            return Err(Error::Unsupported {
                layer: Layer::Ipv4,
                field: "header checksum",
                value: pkt.header.checksum.get().into(),
            });
        }
        let h = pkt.header;
        let ff = h.flags_frag.get();
        let mut options = [0u8; MAX_OPTIONS];
        options[..pkt.options.len()].copy_from_slice(pkt.options);
        let repr = Ipv4Repr {
            src: h.src(),
            dst: h.dst(),
            protocol: h.protocol,
            ttl: h.ttl,
            dscp_ecn: h.dscp_ecn,
            ident: h.ident.get(),
            frag: Fragmentation {
                dont_fragment: ff & DONT_FRAGMENT != 0,
                more_fragments: ff & MORE_FRAGMENTS != 0,
                offset: ff & FRAG_OFFSET_MASK,
            },
            options_len: pkt.options.len() as u8,
            options,
            payload_len: pkt.payload.len() as u16,
        };
        Ok((repr, pkt.payload))
    }

    pub fn options(&self) -> &[u8] {
        &self.options[..usize::from(self.options_len)]
    }

    pub fn header_len(&self) -> usize {
        Ipv4Header::LEN + usize::from(self.options_len)
    }

    pub fn is_fragment(&self) -> bool {
        self.frag.more_fragments || self.frag.offset != 0
    }

    /// Writes the header, checksum included; returns its length.
    ///
    /// Options must be a multiple of 4 bytes long (pad with EOL/NOP).
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        ensure_room(buf, len, Layer::Ipv4)?;
        if !self.options_len.is_multiple_of(4) || usize::from(self.options_len) > MAX_OPTIONS {
            return Err(Error::Length {
                layer: Layer::Ipv4,
                value: usize::from(self.options_len),
                have: MAX_OPTIONS,
            });
        }
        let total = len + usize::from(self.payload_len);
        let total = u16::try_from(total).map_err(|_| Error::Length {
            layer: Layer::Ipv4,
            value: total,
            have: usize::from(u16::MAX),
        })?;
        let flags_frag = (u16::from(self.frag.dont_fragment) * DONT_FRAGMENT)
            | (u16::from(self.frag.more_fragments) * MORE_FRAGMENTS)
            | (self.frag.offset & FRAG_OFFSET_MASK);
        let h = Ipv4Header {
            version_ihl: 0x40 | (len / 4) as u8,
            dscp_ecn: self.dscp_ecn,
            total_len: total.into(),
            ident: self.ident.into(),
            flags_frag: flags_frag.into(),
            ttl: self.ttl,
            protocol: self.protocol,
            checksum: 0.into(),
            src: self.src.octets(),
            dst: self.dst.octets(),
        };
        buf[..Ipv4Header::LEN].copy_from_slice(h.as_bytes());
        buf[Ipv4Header::LEN..len].copy_from_slice(self.options());
        let sum = checksum::of(&buf[..len]);
        buf[10..12].copy_from_slice(&sum.to_be_bytes());
        Ok(len)
    }

    /// Partial sum of the TCP/UDP pseudo-header for this packet's payload.
    pub fn pseudo_header(&self) -> u64 {
        checksum::pseudo_v4(self.src, self.dst, self.protocol, self.payload_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A captured UDP/IPv4 header (192.168.0.1 -> 192.168.0.199, DF, TTL 64).
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    fn packet() -> Vec<u8> {
        let mut p = HEADER.to_vec();
        p.resize(0x73, 0xab);
        p
    }

    #[test]
    fn deconstruct() {
        let p = packet();
        let v = Ipv4Header::view(&p).unwrap();
        assert_eq!(v.header.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(v.header.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert_eq!(v.header.protocol, 17);
        assert!(!v.header.is_fragment());
        assert!(v.checksum_ok());
        assert_eq!(v.payload.len(), 0x73 - 20);
    }

    #[test]
    fn construct_parse_emit() {
        let p = packet();
        let (repr, payload) = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(payload.len(), 95);
        assert!(repr.frag.dont_fragment);
        let mut out = [0u8; 20];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, HEADER);
    }

    #[test]
    fn padding_is_not_payload() {
        let mut p = packet();
        p.extend_from_slice(&[0; 6]);
        assert_eq!(Ipv4Header::view(&p).unwrap().payload.len(), 95);
    }

    #[test]
    fn malformed() {
        let p = packet();
        assert!(Ipv4Header::view(&p[..19]).is_err());
        assert!(
            Ipv4Header::view(&p[..0x72]).is_err(),
            "total_len beyond buffer"
        );
        let mut bad = p.clone();
        bad[0] = 0x44; // IHL 4
        assert!(Ipv4Header::view(&bad).is_err());
        let mut bad = p.clone();
        bad[0] = 0x65;
        assert!(matches!(
            Ipv4Header::view(&bad),
            Err(Error::Version { version: 6, .. })
        ));
        let mut bad = p;
        bad[11] ^= 1;
        assert!(Ipv4Repr::parse(&bad).is_err(), "bad checksum");
    }

    #[test]
    fn fragments_are_flagged() {
        let mut p = packet();
        p[6] = 0x20; // MF
        assert!(Ipv4Header::view(&p).unwrap().header.is_fragment());
        assert!(!Ipv4Header::view(&p).unwrap().header.is_later_fragment());
        p[6] = 0x00;
        p[7] = 0x10;
        assert!(Ipv4Header::view(&p).unwrap().header.is_later_fragment());
    }

    #[test]
    fn rewrites_keep_checksum_valid() {
        let mut p = packet();
        let h = Ipv4Header::view_mut(&mut p).unwrap();
        h.set_src(Ipv4Addr::new(10, 1, 2, 3));
        h.set_dst(Ipv4Addr::new(172, 31, 255, 254));
        assert_eq!(h.decrement_ttl(), 63);
        assert!(Ipv4Header::view(&p).unwrap().checksum_ok());
    }
}
