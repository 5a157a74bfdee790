//! TCP segment headers (RFC 9293), options carried as bytes.

use zerocopy::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, checksum, split_header};

/// The fixed 20 bytes of a TCP header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct TcpHeader {
    pub src_port: U16,
    pub dst_port: U16,
    pub seq: U32,
    pub ack: U32,
    /// Data offset (4 bits) and reserved bits.
    pub offset_reserved: u8,
    pub flags: u8,
    pub window: U16,
    pub checksum: U16,
    pub urgent: U16,
}

/// TCP control flags, as the byte at offset 13.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Largest options area: data offset is 4 bits, so at most 60 − 20 bytes.
pub const MAX_OPTIONS: usize = 40;

/// A checked TCP segment: header view, options, payload.
#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    pub header: &'a TcpHeader,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl TcpHeader {
    pub const LEN: usize = 20;

    /// Checks the data offset and splits the segment.
    #[inline]
    pub fn view(buf: &[u8]) -> Result<TcpSegment<'_>, Error> {
        let (header, rest) = split_header::<TcpHeader>(buf, Layer::Tcp)?;
        let len = header.header_len();
        if len < Self::LEN || len > buf.len() {
            return Err(Error::Length {
                layer: Layer::Tcp,
                value: len,
                have: buf.len(),
            });
        }
        let (options, payload) = rest.split_at(len - Self::LEN);
        Ok(TcpSegment {
            header,
            options,
            payload,
        })
    }

    pub fn view_mut(buf: &mut [u8]) -> Result<&mut TcpHeader, Error> {
        crate::split_header_mut::<TcpHeader>(buf, Layer::Tcp).map(|(h, _)| h)
    }

    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.offset_reserved >> 4) * 4
    }
}

/// A TCP header as a value; the checksum is computed by the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub urgent: u16,
    pub options_len: u8,
    pub options: [u8; MAX_OPTIONS],
}

impl TcpRepr {
    /// A segment with no options and a 64 KiB window.
    pub fn new(src_port: u16, dst_port: u16, flags: u8) -> Self {
        TcpRepr {
            src_port,
            dst_port,
            seq: 0,
            ack: 0,
            flags,
            window: 65535,
            urgent: 0,
            options_len: 0,
            options: [0; MAX_OPTIONS],
        }
    }

    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let seg = TcpHeader::view(buf)?;
        let h = seg.header;
        let mut options = [0u8; MAX_OPTIONS];
        options[..seg.options.len()].copy_from_slice(seg.options);
        let repr = TcpRepr {
            src_port: h.src_port.get(),
            dst_port: h.dst_port.get(),
            seq: h.seq.get(),
            ack: h.ack.get(),
            flags: h.flags,
            window: h.window.get(),
            urgent: h.urgent.get(),
            options_len: seg.options.len() as u8,
            options,
        };
        Ok((repr, seg.payload))
    }

    pub fn options(&self) -> &[u8] {
        &self.options[..usize::from(self.options_len)]
    }

    pub fn header_len(&self) -> usize {
        TcpHeader::LEN + usize::from(self.options_len)
    }

    /// Writes the header with a zero checksum; see [`fill_checksum`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.header_len();
        ensure_room(buf, len, Layer::Tcp)?;
        if !self.options_len.is_multiple_of(4) || usize::from(self.options_len) > MAX_OPTIONS {
            return Err(Error::Length {
                layer: Layer::Tcp,
                value: usize::from(self.options_len),
                have: MAX_OPTIONS,
            });
        }
        let h = TcpHeader {
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            seq: self.seq.into(),
            ack: self.ack.into(),
            offset_reserved: ((len / 4) as u8) << 4,
            flags: self.flags,
            window: self.window.into(),
            checksum: 0.into(),
            urgent: self.urgent.into(),
        };
        buf[..TcpHeader::LEN].copy_from_slice(h.as_bytes());
        buf[TcpHeader::LEN..len].copy_from_slice(self.options());
        Ok(len)
    }
}

/// Computes and stores the checksum of a whole segment given its pseudo-header sum.
pub fn fill_checksum(segment: &mut [u8], pseudo: u64) -> Result<(), Error> {
    ensure_room(segment, TcpHeader::LEN, Layer::Tcp)?;
    segment[16..18].fill(0);
    let sum = checksum::finish(checksum::add(pseudo, segment));
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // SYN from 45678 to 80 with MSS 1460 (captured header bytes).
    const SYN: [u8; 24] = [
        0xb2, 0x6e, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xfa,
        0xf0, 0x00, 0x00, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4,
    ];

    #[test]
    fn deconstruct_construct() {
        let (repr, payload) = TcpRepr::parse(&SYN).unwrap();
        assert_eq!(repr.src_port, 45678);
        assert_eq!(repr.dst_port, 80);
        assert_eq!(repr.seq, 0x12345678);
        assert_eq!(repr.flags, flags::SYN);
        assert_eq!(repr.options(), &[2, 4, 5, 0xb4]);
        assert!(payload.is_empty());
        let mut out = [0u8; 24];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, SYN);
    }

    #[test]
    fn bad_offsets() {
        let mut bad = SYN;
        bad[12] = 0x40; // 16 bytes
        assert!(TcpHeader::view(&bad).is_err());
        bad[12] = 0xf0; // 60 bytes, more than the buffer
        assert!(TcpHeader::view(&bad).is_err());
        assert!(TcpHeader::view(&SYN[..19]).is_err());
    }
}

/// The MSS option's kind (RFC 9293 §3.2).
const OPTION_MSS: u8 = 2;

/// Lowers the MSS option of a TCP SYN in the IPv4 packet `packet` to at
/// most `max`, patching the checksum (RFC 1624): what a router in front of
/// a smaller MTU does (a VPN gateway: spec 10.2's MSS of 1379), so neither
/// side sends segments the tunnel must fragment. Anything else (not a
/// SYN, not TCP, a fragment, a packet too short) is left alone. Returns
/// whether it changed the packet.
pub fn clamp_mss(packet: &mut [u8], max: u16) -> bool {
    let Some(&vihl) = packet.first() else {
        return false;
    };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || packet.get(9) != Some(&crate::ip::protocol::TCP) {
        return false;
    }
    // A fragment other than the first carries no TCP header.
    let frag = packet
        .get(6..8)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if frag & 0x1fff != 0 {
        return false;
    }
    let Some(tcp) = packet.get_mut(ihl..) else {
        return false;
    };
    let Some(&offset) = tcp.get(12) else {
        return false;
    };
    let header_len = usize::from(offset >> 4) * 4;
    if tcp.get(13).is_none_or(|f| f & flags::SYN == 0) || header_len < TcpHeader::LEN {
        return false;
    }
    let mut at = TcpHeader::LEN;
    while at < header_len {
        match tcp.get(at).copied() {
            None | Some(0) => return false,
            Some(1) => at += 1,
            Some(kind) => {
                let Some(len) = tcp.get(at + 1).map(|l| usize::from(*l)) else {
                    return false;
                };
                if len < 2 || at + len > header_len {
                    return false;
                }
                if kind == OPTION_MSS && len == 4 {
                    let Some(b) = tcp.get(at + 2..at + 4) else {
                        return false;
                    };
                    let old = u16::from_be_bytes([b[0], b[1]]);
                    if old <= max {
                        return false;
                    }
                    let Some(c) = tcp.get(16..18) else {
                        return false;
                    };
                    let check = checksum::update16(u16::from_be_bytes([c[0], c[1]]), old, max);
                    tcp[at + 2..at + 4].copy_from_slice(&max.to_be_bytes());
                    tcp[16..18].copy_from_slice(&check.to_be_bytes());
                    return true;
                }
                at += len;
            }
        }
    }
    false
}

#[cfg(test)]
mod clamp_tests {
    use super::*;
    use crate::builder::{IpRepr, L4Repr, PacketBuilder};
    use crate::ipv4::Ipv4Repr;

    fn syn(mss: u16, syn: bool) -> Vec<u8> {
        let mut tcp = TcpRepr::new(40000, 80, if syn { flags::SYN } else { flags::ACK });
        let opts = [1, 1, OPTION_MSS, 4, (mss >> 8) as u8, mss as u8, 1, 1];
        tcp.options[..opts.len()].copy_from_slice(&opts);
        tcp.options_len = opts.len() as u8;
        PacketBuilder {
            ethernet: None,
            ip: IpRepr::V4(Ipv4Repr::new(
                "10.0.1.10".parse().unwrap(),
                "172.16.1.10".parse().unwrap(),
                crate::ip::protocol::TCP,
                0,
            )),
            l4: L4Repr::Tcp(tcp),
        }
        .build(b"")
        .unwrap()
    }

    fn verifies(packet: &[u8]) -> bool {
        let pseudo = checksum::pseudo_v4(
            "10.0.1.10".parse().unwrap(),
            "172.16.1.10".parse().unwrap(),
            crate::ip::protocol::TCP,
            (packet.len() - 20) as u16,
        );
        checksum::verifies(checksum::add(pseudo, &packet[20..]))
    }

    // A SYN's larger MSS is lowered with a checksum that still verifies;
    // a smaller one, or a segment that is no SYN, is left alone.
    #[test]
    fn a_syns_mss_is_clamped_and_the_checksum_kept() {
        let mut p = syn(1460, true);
        assert!(verifies(&p));
        assert!(clamp_mss(&mut p, 1379));
        assert_eq!(&p[20 + 24..20 + 26], &1379u16.to_be_bytes());
        assert!(verifies(&p));
        let mut small = syn(1300, true);
        assert!(!clamp_mss(&mut small, 1379));
        let mut ack = syn(1460, false);
        assert!(!clamp_mss(&mut ack, 1379));
        for len in 0..p.len() {
            let mut cut = p[..len].to_vec();
            clamp_mss(&mut cut, 1000);
        }
    }
}
