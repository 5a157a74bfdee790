//! What arrives on UDP 4500 (RFC 3948): ESP packets, IKE messages behind
//! the four-zero-byte non-ESP marker, and NAT keepalives (one 0xFF byte).
//! A tunnel's peer moves there from UDP 500 once IKE finds a NAT, or at
//! once when it insists on NAT-T.

/// The port of UDP-encapsulated ESP and of IKE after NAT detection.
pub const NATT_PORT: u16 = 4500;
/// IKE's own port.
pub const IKE_PORT: u16 = 500;
/// RFC 3948 §2.2: an IKE message on port 4500 starts with this.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// One UDP 4500 payload, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Natt<'a> {
    /// An ESP packet, from its SPI on.
    Esp(&'a [u8]),
    /// An IKE message, the marker stripped.
    Ike(&'a [u8]),
    /// RFC 3948 §2.3: sent to keep a NAT's mapping; nothing to answer.
    Keepalive,
    /// Shorter than an SPI, and not a keepalive.
    Malformed,
}

/// Classifies a UDP 4500 payload.
pub fn classify(payload: &[u8]) -> Natt<'_> {
    match payload {
        [0xff] => Natt::Keepalive,
        [0, 0, 0, 0, ike @ ..] => Natt::Ike(ike),
        p if p.len() >= 8 => Natt::Esp(p),
        _ => Natt::Malformed,
    }
}

/// Prefixes an IKE message for port 4500.
pub fn ike_on_natt(message: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&NON_ESP_MARKER);
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_told_apart() {
        assert_eq!(classify(&[0xff]), Natt::Keepalive);
        assert_eq!(classify(&[0, 0, 0, 0, 1, 2]), Natt::Ike(&[1, 2]));
        let esp = [0, 0, 1, 0, 0, 0, 0, 1, 9];
        assert_eq!(classify(&esp), Natt::Esp(&esp));
        assert_eq!(classify(&[1, 2, 3]), Natt::Malformed);
        assert_eq!(classify(&[]), Natt::Malformed);
        let mut out = Vec::new();
        ike_on_natt(&[7, 7], &mut out);
        assert_eq!(classify(&out), Natt::Ike(&[7, 7]));
    }
}
