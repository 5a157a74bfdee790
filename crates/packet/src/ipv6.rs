//! IPv6 headers (RFC 8200): the fixed header, and a walk over extension
//! headers to the upper-layer header. Extension headers are skipped, not
//! interpreted, except the fragment header, whose offset is reported.

use core::net::Ipv6Addr;

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::ip::protocol;
use crate::{Error, Layer, checksum, split_header};

/// The fixed 40-byte IPv6 header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct Ipv6Header {
    /// Version (4 bits), traffic class (8), flow label (20).
    pub vtcfl: U32,
    pub payload_len: U16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// At most this many extension headers are walked; more is treated as malformed
/// so a crafted chain cannot make the parser loop long.
pub const MAX_EXTENSION_HEADERS: usize = 8;

/// Fragment information from an IPv6 fragment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Fragment {
    /// Offset in 8-byte units.
    pub offset: u16,
    pub more_fragments: bool,
    pub ident: u32,
}

/// A checked IPv6 packet: the fixed header, the upper-layer protocol found
/// after the extension headers, and where its header starts.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    pub header: &'a Ipv6Header,
    /// The upper-layer protocol (TCP, UDP, ICMPv6, …) after any extension headers.
    pub l4_protocol: u8,
    /// Offset of the upper-layer header from the start of the IPv6 header.
    pub l4_offset: usize,
    /// The packet from the upper-layer header on, trimmed to `payload_len`.
    pub l4: &'a [u8],
    pub fragment: Option<Ipv6Fragment>,
}

impl Ipv6Header {
    pub const LEN: usize = 40;

    /// Checks the version and lengths and walks the extension headers.
    #[inline]
    pub fn view(buf: &[u8]) -> Result<Ipv6Packet<'_>, Error> {
        let (header, _) = split_header::<Ipv6Header>(buf, Layer::Ipv6)?;
        let version = (header.vtcfl.get() >> 28) as u8;
        if version != 6 {
            return Err(Error::Version {
                layer: Layer::Ipv6,
                version,
            });
        }
        let end = Self::LEN + usize::from(header.payload_len.get());
        if end > buf.len() {
            return Err(Error::Length {
                layer: Layer::Ipv6,
                value: end,
                have: buf.len(),
            });
        }
        let packet = &buf[..end];
        let mut next = header.next_header;
        let mut offset = Self::LEN;
        let mut fragment = None;
        for _ in 0..=MAX_EXTENSION_HEADERS {
            let ext_len = match next {
                protocol::HOPOPT | protocol::IPV6_ROUTE | protocol::IPV6_OPTS => {
                    let ext = ext_header(packet, offset)?;
                    (usize::from(ext[1]) + 1) * 8
                }
                protocol::AH => {
                    let ext = ext_header(packet, offset)?;
                    (usize::from(ext[1]) + 2) * 4
                }
                protocol::IPV6_FRAG => {
                    let ext = ext_header(packet, offset)?;
                    let off_flags = u16::from_be_bytes([ext[2], ext[3]]);
                    fragment = Some(Ipv6Fragment {
                        offset: off_flags >> 3,
                        more_fragments: off_flags & 1 == 1,
                        ident: u32::from_be_bytes([ext[4], ext[5], ext[6], ext[7]]),
                    });
                    8
                }
                _ => {
                    return Ok(Ipv6Packet {
                        header,
                        l4_protocol: next,
                        l4_offset: offset,
                        l4: &packet[offset..],
                        fragment,
                    });
                }
            };
            if offset + ext_len > packet.len() {
                return Err(Error::Truncated {
                    layer: Layer::Ipv6,
                    need: offset + ext_len,
                    have: packet.len(),
                });
            }
            next = packet[offset];
            offset += ext_len;
        }
        Err(Error::Unsupported {
            layer: Layer::Ipv6,
            field: "extension header chain length",
            value: MAX_EXTENSION_HEADERS as u32 + 1,
        })
    }

    /// The fixed header for in-place rewrites.
    pub fn view_mut(buf: &mut [u8]) -> Result<&mut Ipv6Header, Error> {
        crate::split_header_mut::<Ipv6Header>(buf, Layer::Ipv6).map(|(h, _)| h)
    }

    pub fn src(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.src)
    }

    pub fn dst(&self) -> Ipv6Addr {
        Ipv6Addr::from(self.dst)
    }
}

/// The first 8 bytes of the extension header at `offset`.
fn ext_header(packet: &[u8], offset: usize) -> Result<&[u8], Error> {
    packet.get(offset..offset + 8).ok_or(Error::Truncated {
        layer: Layer::Ipv6,
        need: offset + 8,
        have: packet.len(),
    })
}

impl Ipv6Packet<'_> {
    /// True for the second and later fragments, which carry no L4 header.
    pub fn is_later_fragment(&self) -> bool {
        self.fragment.is_some_and(|f| f.offset != 0)
    }
}

/// An IPv6 fixed header as a value. Builders emit no extension headers:
/// `next_header` is the upper-layer protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
    pub payload_len: u16,
}

impl Ipv6Repr {
    pub fn new(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: u16) -> Self {
        Ipv6Repr {
            src,
            dst,
            next_header,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
            payload_len,
        }
    }

    /// Parses the fixed header; returns it with the bytes after it.
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let pkt = Ipv6Header::view(buf)?;
        let h = pkt.header;
        let vtcfl = h.vtcfl.get();
        let repr = Ipv6Repr {
            src: h.src(),
            dst: h.dst(),
            next_header: h.next_header,
            hop_limit: h.hop_limit,
            traffic_class: (vtcfl >> 20) as u8,
            flow_label: vtcfl & 0x000f_ffff,
            payload_len: h.payload_len.get(),
        };
        let end = Ipv6Header::LEN + usize::from(repr.payload_len);
        Ok((repr, &buf[Ipv6Header::LEN..end]))
    }

    pub fn header_len(&self) -> usize {
        Ipv6Header::LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        ensure_room(buf, Ipv6Header::LEN, Layer::Ipv6)?;
        let h = Ipv6Header {
            vtcfl: (6 << 28
                | u32::from(self.traffic_class) << 20
                | (self.flow_label & 0x000f_ffff))
                .into(),
            payload_len: self.payload_len.into(),
            next_header: self.next_header,
            hop_limit: self.hop_limit,
            src: self.src.octets(),
            dst: self.dst.octets(),
        };
        buf[..Ipv6Header::LEN].copy_from_slice(h.as_bytes());
        Ok(Ipv6Header::LEN)
    }

    /// Partial sum of the upper-layer pseudo-header for this packet.
    pub fn pseudo_header(&self) -> u64 {
        checksum::pseudo_v6(
            self.src,
            self.dst,
            self.next_header,
            u32::from(self.payload_len),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet_with_extensions(exts: &[(u8, Vec<u8>)], l4_protocol: u8, l4: &[u8]) -> Vec<u8> {
        let first = exts.first().map_or(l4_protocol, |e| e.0);
        let mut body = Vec::new();
        for (i, (_, bytes)) in exts.iter().enumerate() {
            let next = exts.get(i + 1).map_or(l4_protocol, |e| e.0);
            let mut b = bytes.clone();
            b[0] = next;
            body.extend_from_slice(&b);
        }
        body.extend_from_slice(l4);
        let repr = Ipv6Repr::new(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            first,
            body.len() as u16,
        );
        let mut out = vec![0u8; 40];
        repr.emit(&mut out).unwrap();
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn skips_extension_headers_to_l4() {
        let hop = (protocol::HOPOPT, vec![0, 0, 1, 4, 0, 0, 0, 0]);
        let dst = (protocol::IPV6_OPTS, {
            let mut v = vec![0u8; 16];
            v[1] = 1;
            v
        });
        let frag = (protocol::IPV6_FRAG, vec![0, 0, 0x00, 0x01, 0, 0, 0, 7]);
        let ah = (protocol::AH, vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let p = packet_with_extensions(&[hop, dst, frag, ah], protocol::UDP, &[1; 8]);
        let v = Ipv6Header::view(&p).unwrap();
        assert_eq!(v.l4_protocol, protocol::UDP);
        assert_eq!(v.l4_offset, 40 + 8 + 16 + 8 + 12);
        assert_eq!(v.l4, &[1; 8]);
        assert_eq!(
            v.fragment,
            Some(Ipv6Fragment {
                offset: 0,
                more_fragments: true,
                ident: 7
            })
        );
        assert!(!v.is_later_fragment());
    }

    #[test]
    fn truncated_extension_is_an_error() {
        let dst = (protocol::IPV6_OPTS, {
            let mut v = vec![0u8; 16];
            v[1] = 5; // claims 48 bytes
            v
        });
        let p = packet_with_extensions(&[dst], protocol::TCP, &[]);
        assert!(Ipv6Header::view(&p).is_err());
    }

    #[test]
    fn long_chains_are_refused() {
        let exts: Vec<_> = (0..12)
            .map(|_| (protocol::IPV6_OPTS, vec![0u8; 8]))
            .collect();
        let p = packet_with_extensions(&exts, protocol::TCP, &[]);
        assert!(Ipv6Header::view(&p).is_err());
    }

    #[test]
    fn roundtrip_and_bad_version() {
        let p = packet_with_extensions(&[], protocol::ICMPV6, &[128, 0, 0, 0]);
        let (repr, rest) = Ipv6Repr::parse(&p).unwrap();
        assert_eq!(rest, &[128, 0, 0, 0]);
        assert_eq!(repr.next_header, protocol::ICMPV6);
        let mut bad = p.clone();
        bad[0] = 0x45;
        assert!(Ipv6Header::view(&bad).is_err());
        assert!(
            Ipv6Header::view(&p[..43]).is_err(),
            "payload_len past the end"
        );
    }
}
