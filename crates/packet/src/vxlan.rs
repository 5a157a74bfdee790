//! VXLAN (RFC 7348): the kernel's overlay, spoken for interoperability and
//! for comparing against the kernel baseline.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::{Error, Layer, split_header};

/// The IANA UDP port for VXLAN.
pub const PORT: u16 = 4789;

/// The 8-byte VXLAN header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct VxlanHeader {
    pub flags: u8,
    pub reserved1: [u8; 3],
    pub vni: [u8; 3],
    pub reserved2: u8,
}

/// The I flag: the VNI is valid. RFC 7348 requires it.
const VNI_VALID: u8 = 0x08;

impl VxlanHeader {
    pub const LEN: usize = 8;

    #[inline]
    pub fn view(buf: &[u8]) -> Result<(&VxlanHeader, &[u8]), Error> {
        let (h, payload) = split_header::<VxlanHeader>(buf, Layer::Vxlan)?;
        if h.flags & VNI_VALID == 0 {
            return Err(Error::Unsupported {
                layer: Layer::Vxlan,
                field: "flags",
                value: h.flags.into(),
            });
        }
        Ok((h, payload))
    }

    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.vni[0], self.vni[1], self.vni[2]])
    }
}

/// A VXLAN header as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VxlanRepr {
    /// 24 bits.
    pub vni: u32,
}

impl VxlanRepr {
    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let (h, payload) = VxlanHeader::view(buf)?;
        Ok((VxlanRepr { vni: h.vni() }, payload))
    }

    pub fn header_len(&self) -> usize {
        VxlanHeader::LEN
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        ensure_room(buf, VxlanHeader::LEN, Layer::Vxlan)?;
        if self.vni > 0x00ff_ffff {
            return Err(Error::Unsupported {
                layer: Layer::Vxlan,
                field: "VNI",
                value: self.vni,
            });
        }
        let [_, a, b, c] = self.vni.to_be_bytes();
        let h = VxlanHeader {
            flags: VNI_VALID,
            reserved1: [0; 3],
            vni: [a, b, c],
            reserved2: 0,
        };
        buf[..VxlanHeader::LEN].copy_from_slice(h.as_bytes());
        Ok(VxlanHeader::LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VNI 100, as the kernel baseline's VXLAN device sends it.
    const VNI_100: [u8; 8] = [0x08, 0, 0, 0, 0, 0, 100, 0];

    #[test]
    fn deconstruct_construct() {
        let (repr, rest) = VxlanRepr::parse(&VNI_100).unwrap();
        assert_eq!(repr.vni, 100);
        assert!(rest.is_empty());
        let mut out = [0u8; 8];
        repr.emit(&mut out).unwrap();
        assert_eq!(out, VNI_100);
    }

    #[test]
    fn i_flag_required() {
        let mut bad = VNI_100;
        bad[0] = 0;
        assert!(VxlanHeader::view(&bad).is_err());
        assert!(VxlanHeader::view(&VNI_100[..7]).is_err());
    }
}
