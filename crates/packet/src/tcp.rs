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
