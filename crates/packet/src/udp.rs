//! UDP datagram headers (RFC 768).

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, checksum, split_header};

/// The 8-byte UDP header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct UdpHeader {
    pub src_port: U16,
    pub dst_port: U16,
    pub length: U16,
    pub checksum: U16,
}

impl UdpHeader {
    pub const LEN: usize = 8;

    /// Checks the length field and returns the header and its payload.
    #[inline]
    pub fn view(buf: &[u8]) -> Result<(&UdpHeader, &[u8]), Error> {
        let (header, _) = split_header::<UdpHeader>(buf, Layer::Udp)?;
        let len = usize::from(header.length.get());
        if len < Self::LEN || len > buf.len() {
            return Err(Error::Length {
                layer: Layer::Udp,
                value: len,
                have: buf.len(),
            });
        }
        Ok((header, &buf[Self::LEN..len]))
    }

    pub fn view_mut(buf: &mut [u8]) -> Result<&mut UdpHeader, Error> {
        crate::split_header_mut::<UdpHeader>(buf, Layer::Udp).map(|(h, _)| h)
    }
}

/// A UDP header as a value; length and checksum come from the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let (h, payload) = UdpHeader::view(buf)?;
        Ok((
            UdpRepr {
                src_port: h.src_port.get(),
                dst_port: h.dst_port.get(),
            },
            payload,
        ))
    }

    pub fn header_len(&self) -> usize {
        UdpHeader::LEN
    }

    /// Writes the header for a payload of `payload_len` bytes, checksum zero.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) -> Result<usize, Error> {
        ensure_room(buf, UdpHeader::LEN, Layer::Udp)?;
        let total = UdpHeader::LEN + payload_len;
        let length = u16::try_from(total).map_err(|_| Error::Length {
            layer: Layer::Udp,
            value: total,
            have: usize::from(u16::MAX),
        })?;
        let h = UdpHeader {
            src_port: self.src_port.into(),
            dst_port: self.dst_port.into(),
            length: length.into(),
            checksum: 0.into(),
        };
        buf[..UdpHeader::LEN].copy_from_slice(h.as_bytes());
        Ok(UdpHeader::LEN)
    }
}

/// Computes and stores the checksum of a whole datagram. A computed zero is
/// sent as 0xffff, since zero means "no checksum" (RFC 768).
pub fn fill_checksum(datagram: &mut [u8], pseudo: u64) -> Result<(), Error> {
    ensure_room(datagram, UdpHeader::LEN, Layer::Udp)?;
    datagram[6..8].fill(0);
    let sum = match checksum::finish(checksum::add(pseudo, datagram)) {
        0 => 0xffff,
        s => s,
    };
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // DNS query header from 53412 to 53, 40 bytes in all.
    const DNS: [u8; 8] = [0xd0, 0xa4, 0x00, 0x35, 0x00, 0x28, 0x5c, 0x1f];

    #[test]
    fn deconstruct_construct() {
        let mut dgram = DNS.to_vec();
        dgram.resize(40, 0);
        let (repr, payload) = UdpRepr::parse(&dgram).unwrap();
        assert_eq!(repr.src_port, 53412);
        assert_eq!(repr.dst_port, 53);
        assert_eq!(payload.len(), 32);
        let mut out = [0u8; 8];
        repr.emit(&mut out, 32).unwrap();
        assert_eq!(&out[..6], &DNS[..6]);
    }

    #[test]
    fn bad_length() {
        let mut dgram = DNS.to_vec();
        dgram.resize(39, 0);
        assert!(UdpHeader::view(&dgram).is_err(), "length beyond buffer");
        dgram[5] = 7;
        assert!(UdpHeader::view(&dgram).is_err(), "length below header");
    }
}
