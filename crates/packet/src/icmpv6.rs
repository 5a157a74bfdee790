//! ICMPv6 (RFC 4443) and the neighbour-discovery types (RFC 4861).

pub use crate::icmp::{IcmpHeader, IcmpRepr};
use crate::{Error, Layer};

/// ICMPv6 message types.
pub mod types {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAMETER_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const ROUTER_SOLICIT: u8 = 133;
    pub const ROUTER_ADVERT: u8 = 134;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const REDIRECT: u8 = 137;
}

/// True for error messages (types below 128), which quote the offending packet.
pub fn is_error(icmp_type: u8) -> bool {
    icmp_type < 128
}

pub fn is_echo(icmp_type: u8) -> bool {
    matches!(icmp_type, types::ECHO_REQUEST | types::ECHO_REPLY)
}

/// Parses an ICMPv6 header and returns it with the message body.
pub fn parse(buf: &[u8]) -> Result<(IcmpRepr, &[u8]), Error> {
    IcmpRepr::parse(buf, Layer::Icmpv6)
}

/// Computes and stores the checksum over a whole ICMPv6 message given the
/// IPv6 pseudo-header sum.
pub fn fill_checksum(message: &mut [u8], pseudo: u64) -> Result<(), Error> {
    crate::icmp::fill_checksum(message, pseudo, Layer::Icmpv6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum;

    #[test]
    fn echo_checksum_covers_pseudo_header() {
        let src = "fe80::1".parse().unwrap();
        let dst = "fe80::2".parse().unwrap();
        let mut msg = [0u8; 12];
        IcmpRepr::echo(types::ECHO_REQUEST, 7, 1)
            .emit(&mut msg, Layer::Icmpv6)
            .unwrap();
        msg[8..].copy_from_slice(b"ping");
        let pseudo = checksum::pseudo_v6(src, dst, 58, 12);
        fill_checksum(&mut msg, pseudo).unwrap();
        assert!(checksum::verifies(checksum::add(pseudo, &msg)));
        let (repr, body) = parse(&msg).unwrap();
        assert_eq!(repr.echo_id(), 7);
        assert_eq!(body, b"ping");
        assert!(is_error(types::PACKET_TOO_BIG) && !is_error(types::ECHO_REPLY));
    }
}
