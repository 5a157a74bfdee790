//! ICMPv4 (RFC 792): message types, error classification, checksum.

pub use crate::icmp::{IcmpHeader, IcmpRepr};
use crate::{Error, Layer};

/// ICMPv4 message types.
pub mod types {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
}

/// Destination-unreachable code for "fragmentation needed and DF set",
/// whose `rest` carries the next-hop MTU (RFC 1191).
pub const CODE_FRAG_NEEDED: u8 = 4;

/// True for error messages, which quote the IP header and 8 bytes of the
/// datagram that caused them.
pub fn is_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        types::DEST_UNREACHABLE
            | types::SOURCE_QUENCH
            | types::REDIRECT
            | types::TIME_EXCEEDED
            | types::PARAMETER_PROBLEM
    )
}

/// True for echo request or reply, whose identifier acts as a port.
pub fn is_echo(icmp_type: u8) -> bool {
    matches!(icmp_type, types::ECHO_REQUEST | types::ECHO_REPLY)
}

/// Parses an ICMPv4 header and returns it with the message body.
pub fn parse(buf: &[u8]) -> Result<(IcmpRepr, &[u8]), Error> {
    IcmpRepr::parse(buf, Layer::Icmpv4)
}

/// Computes and stores the checksum over a whole ICMPv4 message.
pub fn fill_checksum(message: &mut [u8]) -> Result<(), Error> {
    crate::icmp::fill_checksum(message, 0, Layer::Icmpv4)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Echo request id 0x1234 seq 1 with 4 bytes of data; checksum worked by hand
    // (0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364 = 0xdefb, complemented 0x2104).
    const ECHO: [u8; 12] = [
        0x08, 0x00, 0x21, 0x04, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64,
    ];

    #[test]
    fn deconstruct_construct() {
        let (repr, body) = parse(&ECHO).unwrap();
        assert_eq!(repr.icmp_type, types::ECHO_REQUEST);
        assert_eq!(repr.echo_id(), 0x1234);
        assert_eq!(body, b"abcd");
        let mut out = [0u8; 12];
        repr.emit(&mut out, Layer::Icmpv4).unwrap();
        out[8..].copy_from_slice(b"abcd");
        fill_checksum(&mut out).unwrap();
        assert_eq!(out, ECHO);
        assert!(parse(&ECHO[..7]).is_err());
        assert!(is_echo(repr.icmp_type) && !is_error(repr.icmp_type));
        assert!(is_error(types::TIME_EXCEEDED));
    }
}
