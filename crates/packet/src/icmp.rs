//! The 8-byte header that ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share:
//! type, code, checksum and four bytes whose meaning depends on the type
//! (identifier and sequence for echo, unused or MTU for errors).

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, split_header};

/// The ICMP header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct IcmpHeader {
    pub icmp_type: u8,
    pub code: u8,
    pub checksum: U16,
    pub rest: [u8; 4],
}

impl IcmpHeader {
    pub const LEN: usize = 8;

    /// The header and the message body after it.
    #[inline]
    pub fn view(buf: &[u8], layer: Layer) -> Result<(&IcmpHeader, &[u8]), Error> {
        split_header(buf, layer)
    }

    /// Echo identifier (first half of `rest`).
    pub fn echo_id(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }
}

/// An ICMP header as a value; the checksum is computed by the builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IcmpRepr {
    pub icmp_type: u8,
    pub code: u8,
    pub rest: [u8; 4],
}

impl IcmpRepr {
    /// An echo request or reply with the given identifier and sequence.
    pub fn echo(icmp_type: u8, ident: u16, seq: u16) -> Self {
        let [a, b] = ident.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        IcmpRepr {
            icmp_type,
            code: 0,
            rest: [a, b, c, d],
        }
    }

    pub fn parse(buf: &[u8], layer: Layer) -> Result<(Self, &[u8]), Error> {
        let (h, body) = IcmpHeader::view(buf, layer)?;
        let repr = IcmpRepr {
            icmp_type: h.icmp_type,
            code: h.code,
            rest: h.rest,
        };
        Ok((repr, body))
    }

    pub fn header_len(&self) -> usize {
        IcmpHeader::LEN
    }

    /// Writes the header with a zero checksum.
    pub fn emit(&self, buf: &mut [u8], layer: Layer) -> Result<usize, Error> {
        ensure_room(buf, IcmpHeader::LEN, layer)?;
        buf[0] = self.icmp_type;
        buf[1] = self.code;
        buf[2..4].fill(0);
        buf[4..8].copy_from_slice(&self.rest);
        Ok(IcmpHeader::LEN)
    }

    /// Echo identifier (meaningful for echo messages only).
    pub fn echo_id(&self) -> u16 {
        u16::from_be_bytes([self.rest[0], self.rest[1]])
    }
}

/// Computes and stores an ICMP checksum over `message`, starting from
/// `pseudo` (zero for ICMPv4, the pseudo-header sum for ICMPv6).
pub(crate) fn fill_checksum(message: &mut [u8], pseudo: u64, layer: Layer) -> Result<(), Error> {
    ensure_room(message, IcmpHeader::LEN, layer)?;
    message[2..4].fill(0);
    let sum = crate::checksum::finish(crate::checksum::add(pseudo, message));
    message[2..4].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}
