//! Geneve (RFC 8926): the overlay header between openvpc hosts. The VNI names
//! the VPC; options are TLVs, and the critical bit on an option means a
//! receiver that does not understand it must drop the packet.

use core::net::IpAddr;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::ensure_room;
use crate::ethernet::{self, ethertype};
use crate::ip::protocol;
use crate::ipv4::Ipv4Header;
use crate::ipv6::Ipv6Header;
use crate::udp::UdpHeader;
use crate::{Error, Layer, split_header};

/// The IANA UDP port for Geneve.
pub const PORT: u16 = 6081;

/// openvpc's Geneve option class, from the range IANA keeps for
/// experimental use (RFC 8926 §7): the options only openvpc's own nodes and
/// hosts exchange.
pub const OPTION_CLASS_OPENVPC: u16 = 0xFFF0;

/// The option that pins a flow's replies to the node it came through:
/// [`ReturnVia`].
pub const OPTION_RETURN_VIA: u8 = 1;

/// "Send this flow's replies back through place `place` of the load
/// balancer whose address is `front`." A load balancer's node puts it on
/// the packets it sends a target: the target's host remembers it with the
/// flow, and sends the replies to the node now serving that place (its
/// route to `front` lists them), not on by the client's address, which the
/// target may see unchanged (client IP preservation). Not critical: a
/// receiver that does not know it still delivers the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReturnVia {
    pub front: core::net::Ipv4Addr,
    pub place: u8,
}

impl ReturnVia {
    /// Bytes of the whole option: its 4-byte TLV header and 8 of data.
    pub const LEN: usize = 12;

    /// The option as it goes on the wire.
    pub fn option(&self) -> [u8; Self::LEN] {
        let class = OPTION_CLASS_OPENVPC.to_be_bytes();
        let f = self.front.octets();
        [
            class[0],
            class[1],
            OPTION_RETURN_VIA,
            2,
            self.place,
            0,
            0,
            0,
            f[0],
            f[1],
            f[2],
            f[3],
        ]
    }

    /// The option among a datagram's options, if one is there and well formed.
    pub fn find(options: GeneveOptions<'_>) -> Option<ReturnVia> {
        options
            .filter(|o| o.class == OPTION_CLASS_OPENVPC && o.option_type == OPTION_RETURN_VIA)
            .find_map(|o| {
                let d: [u8; 8] = o.data.get(..8)?.try_into().ok()?;
                Some(ReturnVia {
                    front: core::net::Ipv4Addr::new(d[4], d[5], d[6], d[7]),
                    place: d[0],
                })
            })
    }
}

/// Outer Ethernet + IPv4 + UDP + Geneve without options: the overhead the
/// instance MTU must leave room for.
pub const OVERHEAD_V4: usize = 14 + 20 + 8 + GeneveHeader::LEN;

/// The fixed 8-byte Geneve header, laid over the buffer.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct GeneveHeader {
    /// Version (2 bits) and options length in 4-byte words (6 bits).
    pub ver_optlen: u8,
    /// OAM (bit 7), critical options present (bit 6), reserved.
    pub flags: u8,
    pub protocol: U16,
    pub vni: [u8; 3],
    pub reserved: u8,
}

const OAM: u8 = 0x80;
const CRITICAL: u8 = 0x40;
/// The critical bit inside an option's type byte.
const OPTION_CRITICAL: u8 = 0x80;

impl GeneveHeader {
    pub const LEN: usize = 8;

    /// Checks the version and option TLVs and splits the packet.
    #[inline]
    pub fn view(buf: &[u8]) -> Result<GenevePacket<'_>, Error> {
        let (header, rest) = split_header::<GeneveHeader>(buf, Layer::Geneve)?;
        let version = header.ver_optlen >> 6;
        if version != 0 {
            return Err(Error::Version {
                layer: Layer::Geneve,
                version,
            });
        }
        let opt_len = header.options_len();
        if opt_len > rest.len() {
            return Err(Error::Truncated {
                layer: Layer::Geneve,
                need: Self::LEN + opt_len,
                have: buf.len(),
            });
        }
        let (options, payload) = rest.split_at(opt_len);
        validate_options(options)?;
        Ok(GenevePacket {
            header,
            options,
            payload,
        })
    }

    /// Length of the options area in bytes.
    #[inline]
    pub fn options_len(&self) -> usize {
        usize::from(self.ver_optlen & 0x3f) * 4
    }

    #[inline]
    pub fn vni(&self) -> u32 {
        u32::from_be_bytes([0, self.vni[0], self.vni[1], self.vni[2]])
    }

    pub fn oam(&self) -> bool {
        self.flags & OAM != 0
    }

    pub fn critical(&self) -> bool {
        self.flags & CRITICAL != 0
    }
}

/// Walks the TLVs once so iteration later cannot fail.
fn validate_options(mut options: &[u8]) -> Result<(), Error> {
    while !options.is_empty() {
        let Some(&len_byte) = options.get(3) else {
            return Err(Error::Truncated {
                layer: Layer::Geneve,
                need: 4,
                have: options.len(),
            });
        };
        let len = 4 + usize::from(len_byte & 0x1f) * 4;
        if len > options.len() {
            return Err(Error::Truncated {
                layer: Layer::Geneve,
                need: len,
                have: options.len(),
            });
        }
        options = &options[len..];
    }
    Ok(())
}

/// A checked Geneve packet: header view, options area and payload.
#[derive(Debug, Clone, Copy)]
pub struct GenevePacket<'a> {
    pub header: &'a GeneveHeader,
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> GenevePacket<'a> {
    /// The option TLVs (already validated by `view`).
    pub fn options(&self) -> GeneveOptions<'a> {
        GeneveOptions(self.options)
    }
}

/// One Geneve option TLV, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    pub class: u16,
    /// The option type without the critical bit.
    pub option_type: u8,
    pub critical: bool,
    pub data: &'a [u8],
}

/// Iterator over the options of a validated Geneve header.
#[derive(Debug, Clone)]
pub struct GeneveOptions<'a>(&'a [u8]);

impl<'a> Iterator for GeneveOptions<'a> {
    type Item = GeneveOption<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.0;
        let len = 4 + usize::from(*b.get(3)? & 0x1f) * 4;
        let data = b.get(4..len)?;
        self.0 = &b[len..];
        Some(GeneveOption {
            class: u16::from_be_bytes([b[0], b[1]]),
            option_type: b[2] & !OPTION_CRITICAL,
            critical: b[2] & OPTION_CRITICAL != 0,
            data,
        })
    }
}

/// An owned Geneve option, for building.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeneveOptionRepr {
    pub class: u16,
    /// 7 bits; the critical bit is separate.
    pub option_type: u8,
    pub critical: bool,
    /// A multiple of 4 bytes, at most 124.
    pub data: Vec<u8>,
}

/// A Geneve header as a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GeneveRepr {
    pub oam: bool,
    /// The C bit. Emitted set if this is true or any option is critical.
    pub critical: bool,
    /// EtherType of the payload; openvpc carries Ethernet (0x6558).
    pub protocol: u16,
    /// 24 bits.
    pub vni: u32,
    pub options: Vec<GeneveOptionRepr>,
}

impl GeneveRepr {
    /// An Ethernet-carrying header with no options.
    pub fn ethernet(vni: u32) -> Self {
        GeneveRepr {
            oam: false,
            critical: false,
            protocol: ethertype::TEB,
            vni,
            options: Vec::new(),
        }
    }

    pub fn parse(buf: &[u8]) -> Result<(Self, &[u8]), Error> {
        let pkt = GeneveHeader::view(buf)?;
        let repr = GeneveRepr {
            oam: pkt.header.oam(),
            critical: pkt.header.critical(),
            protocol: pkt.header.protocol.get(),
            vni: pkt.header.vni(),
            options: pkt
                .options()
                .map(|o| GeneveOptionRepr {
                    class: o.class,
                    option_type: o.option_type,
                    critical: o.critical,
                    data: o.data.to_vec(),
                })
                .collect(),
        };
        Ok((repr, pkt.payload))
    }

    fn options_len(&self) -> usize {
        self.options.iter().map(|o| 4 + o.data.len()).sum()
    }

    pub fn header_len(&self) -> usize {
        GeneveHeader::LEN + self.options_len()
    }

    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let opt_len = self.options_len();
        let len = GeneveHeader::LEN + opt_len;
        ensure_room(buf, len, Layer::Geneve)?;
        let invalid = |value| Error::Length {
            layer: Layer::Geneve,
            value,
            have: 252,
        };
        if opt_len > 252 {
            return Err(invalid(opt_len));
        }
        if self.vni > 0x00ff_ffff {
            return Err(Error::Unsupported {
                layer: Layer::Geneve,
                field: "VNI",
                value: self.vni,
            });
        }
        let critical = self.critical || self.options.iter().any(|o| o.critical);
        let [_, v0, v1, v2] = self.vni.to_be_bytes();
        let h = GeneveHeader {
            ver_optlen: (opt_len / 4) as u8,
            flags: if self.oam { OAM } else { 0 } | if critical { CRITICAL } else { 0 },
            protocol: self.protocol.into(),
            vni: [v0, v1, v2],
            reserved: 0,
        };
        buf[..GeneveHeader::LEN].copy_from_slice(h.as_bytes());
        let mut at = GeneveHeader::LEN;
        for o in &self.options {
            if o.data.len() % 4 != 0 || o.data.len() > 124 {
                return Err(invalid(o.data.len()));
            }
            buf[at..at + 2].copy_from_slice(&o.class.to_be_bytes());
            buf[at + 2] =
                (o.option_type & !OPTION_CRITICAL) | if o.critical { OPTION_CRITICAL } else { 0 };
            buf[at + 3] = (o.data.len() / 4) as u8;
            buf[at + 4..at + 4 + o.data.len()].copy_from_slice(&o.data);
            at += 4 + o.data.len();
        }
        Ok(len)
    }
}

/// The parts of a Geneve-over-UDP frame a receiving host needs.
#[derive(Debug, Clone, Copy)]
pub struct Decap<'a> {
    pub outer_src: IpAddr,
    pub outer_dst: IpAddr,
    pub outer_src_port: u16,
    pub geneve: GenevePacket<'a>,
}

impl<'a> Decap<'a> {
    /// The encapsulated frame.
    pub fn inner(&self) -> &'a [u8] {
        self.geneve.payload
    }

    pub fn vni(&self) -> u32 {
        self.geneve.header.vni()
    }
}

/// Parses an underlay Ethernet frame down to the Geneve payload. Anything
/// that is not UDP to [`PORT`] is refused as unsupported.
#[inline(always)]
pub fn decap(frame: &[u8]) -> Result<Decap<'_>, Error> {
    let eth = ethernet::split(frame)?;
    let l3 = &frame[eth.payload_offset..];
    let (outer_src, outer_dst, udp) = match eth.ethertype {
        ethertype::IPV4 => {
            let ip = Ipv4Header::view(l3)?;
            if ip.header.protocol != protocol::UDP || ip.header.is_fragment() {
                return Err(not_geneve(u32::from(ip.header.protocol)));
            }
            (ip.header.src().into(), ip.header.dst().into(), ip.payload)
        }
        ethertype::IPV6 => {
            let ip = Ipv6Header::view(l3)?;
            if ip.l4_protocol != protocol::UDP || ip.fragment.is_some() {
                return Err(not_geneve(u32::from(ip.l4_protocol)));
            }
            (ip.header.src().into(), ip.header.dst().into(), ip.l4)
        }
        other => {
            return Err(Error::Unsupported {
                layer: Layer::Ethernet,
                field: "ethertype",
                value: other.into(),
            });
        }
    };
    let (udp_header, payload) = UdpHeader::view(udp)?;
    if udp_header.dst_port.get() != PORT {
        return Err(Error::Unsupported {
            layer: Layer::Udp,
            field: "destination port",
            value: udp_header.dst_port.get().into(),
        });
    }
    Ok(Decap {
        outer_src,
        outer_dst,
        outer_src_port: udp_header.src_port.get(),
        geneve: GeneveHeader::view(payload)?,
    })
}

fn not_geneve(protocol: u32) -> Error {
    Error::Unsupported {
        layer: Layer::Geneve,
        field: "outer protocol",
        value: protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Geneve header from RFC 8926 style capture: VNI 0x123456, one critical
    // option of class 0x0102 type 0x03 with 4 bytes of data, Ethernet payload.
    const WITH_OPTION: [u8; 16] = [
        0x02, 0x40, 0x65, 0x58, 0x12, 0x34, 0x56, 0x00, 0x01, 0x02, 0x83, 0x01, 0xde, 0xad, 0xbe,
        0xef,
    ];

    #[test]
    fn deconstruct() {
        let pkt = GeneveHeader::view(&WITH_OPTION).unwrap();
        assert_eq!(pkt.header.vni(), 0x123456);
        assert!(pkt.header.critical());
        assert!(!pkt.header.oam());
        let opts: Vec<_> = pkt.options().collect();
        assert_eq!(
            opts,
            vec![GeneveOption {
                class: 0x0102,
                option_type: 3,
                critical: true,
                data: &[0xde, 0xad, 0xbe, 0xef]
            }]
        );
        assert!(pkt.payload.is_empty());
    }

    #[test]
    fn construct() {
        let (repr, _) = GeneveRepr::parse(&WITH_OPTION).unwrap();
        let mut out = [0u8; 16];
        assert_eq!(repr.emit(&mut out).unwrap(), 16);
        assert_eq!(out, WITH_OPTION);
    }

    #[test]
    fn malformed() {
        let mut bad = WITH_OPTION;
        bad[0] = 0x42; // version 1
        assert!(GeneveHeader::view(&bad).is_err());
        let mut bad = WITH_OPTION;
        bad[11] = 0x02; // option claims 8 bytes of data
        assert!(GeneveHeader::view(&bad).is_err());
        assert!(GeneveHeader::view(&WITH_OPTION[..12]).is_err());
        let mut repr = GeneveRepr::ethernet(1 << 24);
        assert!(repr.emit(&mut [0u8; 8]).is_err(), "VNI over 24 bits");
        repr.vni = 1;
        repr.options.push(GeneveOptionRepr {
            class: 1,
            option_type: 1,
            critical: false,
            data: vec![1, 2, 3],
        });
        assert!(
            repr.emit(&mut [0u8; 64]).is_err(),
            "option data not a multiple of 4"
        );
    }
}
