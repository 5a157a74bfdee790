//! The one error type of the packet layer: small, `Copy`, and specific enough
//! that the dataplane can count each kind of malformed input separately.

use core::fmt;

/// The protocol layer a parse error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    Ethernet,
    Vlan,
    Arp,
    Ipv4,
    Ipv6,
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
    Geneve,
    Vxlan,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Layer::Ethernet => "Ethernet",
            Layer::Vlan => "802.1Q",
            Layer::Arp => "ARP",
            Layer::Ipv4 => "IPv4",
            Layer::Ipv6 => "IPv6",
            Layer::Tcp => "TCP",
            Layer::Udp => "UDP",
            Layer::Icmpv4 => "ICMPv4",
            Layer::Icmpv6 => "ICMPv6",
            Layer::Geneve => "Geneve",
            Layer::Vxlan => "VXLAN",
        };
        f.write_str(name)
    }
}

/// Why a buffer could not be parsed or a packet could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the header (or a length it declares) does.
    #[error("{layer} header truncated: needs {need} bytes, buffer has {have}")]
    Truncated {
        layer: Layer,
        need: usize,
        have: usize,
    },
    /// A version field holds a value this parser does not speak.
    #[error("{layer}: unsupported version {version}")]
    Version { layer: Layer, version: u8 },
    /// A header-length or total-length field is impossible.
    #[error("{layer}: length field {value} is invalid for a {have}-byte buffer")]
    Length {
        layer: Layer,
        value: usize,
        have: usize,
    },
    /// A field holds a value the format forbids or this parser does not handle.
    #[error("{layer}: unsupported {field} {value:#x}")]
    Unsupported {
        layer: Layer,
        field: &'static str,
        value: u32,
    },
    /// The output buffer is too small for what is being emitted.
    #[error("{layer}: output buffer of {have} bytes is too small, {need} needed")]
    NoRoom {
        layer: Layer,
        need: usize,
        have: usize,
    },
}

impl Error {
    /// The layer the error was found in.
    pub fn layer(&self) -> Layer {
        match *self {
            Error::Truncated { layer, .. }
            | Error::Version { layer, .. }
            | Error::Length { layer, .. }
            | Error::Unsupported { layer, .. }
            | Error::NoRoom { layer, .. } => layer,
        }
    }
}

/// Checks that `buf` can hold `need` bytes of `layer` output.
pub(crate) fn ensure_room(buf: &[u8], need: usize, layer: Layer) -> Result<(), Error> {
    if buf.len() < need {
        return Err(Error::NoRoom {
            layer,
            need,
            have: buf.len(),
        });
    }
    Ok(())
}
