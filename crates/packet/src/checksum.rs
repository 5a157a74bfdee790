//! The Internet checksum (RFC 1071): full computation over a buffer, the
//! TCP/UDP pseudo-headers, and incremental update for rewrites (RFC 1624).
//!
//! Sums are carried as `u64` partial sums so callers can chain pieces (pseudo
//! header, header, payload) without folding in between; [`finish`] folds and
//! complements once at the end.

use core::net::{Ipv4Addr, Ipv6Addr};

/// Adds the big-endian 16-bit words of `data` to the partial sum `acc`.
///
/// A trailing odd byte is padded with zero, as RFC 1071 specifies.
///
/// The words are summed in the machine's own byte order, 32 bits at a time
/// into 64-bit lanes (no byte swap per word, so the loop vectorises), and
/// the folded total is byte-swapped once: the ones'-complement sum does not
/// depend on byte order (RFC 1071 §2(B)), and since 2^16 ≡ 1 (mod 2^16 − 1)
/// 32-bit words folded later give the same result as 16-bit ones. This is
/// the hottest loop of TCP segmentation (every payload byte passes it).
#[inline]
pub fn add(acc: u64, data: &[u8]) -> u64 {
    let word = |w: &[u8]| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    // Four lanes break the dependency chain; no lane can overflow below
    // 2^32 words.
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        lanes[0] += word(&b[0..4]);
        lanes[1] += word(&b[4..8]);
        lanes[2] += word(&b[8..12]);
        lanes[3] += word(&b[12..16]);
    }
    let rest = blocks.remainder();
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        lanes[0] += word(w);
    }
    let native = fold(lanes.iter().map(|&l| u64::from(fold(l))).sum());
    // The native sum read as big-endian words: swap on little-endian.
    let mut acc = acc + u64::from(u16::from_be(native));
    let tail = words.remainder();
    if let [hi, lo] = tail {
        acc += u64::from(u16::from_be_bytes([*hi, *lo]));
    } else if let [hi, lo, last] = tail {
        acc += u64::from(u16::from_be_bytes([*hi, *lo])) + (u64::from(*last) << 8);
    } else if let [last] = tail {
        acc += u64::from(*last) << 8;
    }
    acc
}

/// Folds a partial sum to 16 bits with end-around carry.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Folds and complements: the value that goes into a checksum field.
#[inline]
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The checksum of `data` alone (as for an IPv4 header or ICMPv4 message).
#[inline]
pub fn of(data: &[u8]) -> u16 {
    finish(add(0, data))
}

/// True if `data`, with its checksum field filled in, sums to all ones.
#[inline]
pub fn verifies(acc: u64) -> bool {
    fold(acc) == 0xffff
}

/// Partial sum of the IPv4 pseudo-header for TCP/UDP over `l4_len` bytes.
#[inline]
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> u64 {
    u64::from(src.to_bits()) + u64::from(dst.to_bits()) + u64::from(protocol) + u64::from(l4_len)
}

/// Partial sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline]
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, l4_len: u32) -> u64 {
    let acc = add(0, &src.octets());
    let acc = add(acc, &dst.octets());
    acc + u64::from(l4_len) + u64::from(next_header)
}

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changes from `old`
/// to `new`, without touching the rest of the data.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!check) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

/// RFC 1624 for a 32-bit field (an IPv4 address, a TCP sequence number).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = u64::from(!check)
        + u64::from(!(old >> 16) & 0xffff)
        + u64::from(!old & 0xffff)
        + (u64::from(new) >> 16)
        + (u64::from(new) & 0xffff);
    !fold(acc)
}

/// RFC 1624 for a field of any even length (an IPv6 address).
///
/// `old` and `new` must have the same length and start at an even offset in
/// the checksummed data.
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let mut acc = u64::from(!check);
    for (o, n) in old.chunks(2).zip(new.chunks(2)) {
        let o = u16::from_be_bytes([o[0], *o.get(1).unwrap_or(&0)]);
        let n = u16::from_be_bytes([n[0], *n.get(1).unwrap_or(&0)]);
        acc += u64::from(!o) + u64::from(n);
    }
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 1071 §3 worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(add(0, &data)), 0xddf2);
        assert_eq!(of(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(add(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }

    // A real IPv4 header (from a capture) verifies and recomputes to its value.
    #[test]
    fn real_ipv4_header() {
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verifies(add(0, &hdr)));
        let mut zeroed = hdr;
        zeroed[10] = 0;
        zeroed[11] = 0;
        assert_eq!(of(&zeroed), 0xb861);
    }

    #[test]
    fn update_matches_recompute_for_ttl_decrement() {
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let before = of(&hdr);
        let old = u16::from_be_bytes([hdr[8], hdr[9]]);
        hdr[8] -= 1;
        let new = u16::from_be_bytes([hdr[8], hdr[9]]);
        assert_eq!(update16(before, old, new), of(&hdr));
    }

    /// RFC 1071's definition, word by word, to check the fast sum against.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
        fold(acc)
    }

    proptest::proptest! {
        #[test]
        fn fast_sum_matches_the_definition(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
            start in 0u64..0x1_0000_0000,
        ) {
            proptest::prop_assert_eq!(fold(add(0, &data)), reference(&data));
            proptest::prop_assert_eq!(
                fold(add(start, &data)),
                fold(start + u64::from(reference(&data)))
            );
        }
    }

    #[test]
    fn all_ones_and_all_zeros_sum_as_before() {
        assert_eq!(fold(add(0, &[0u8; 100])), 0);
        assert_eq!(fold(add(0, &[0xffu8; 64])), 0xffff);
        assert_eq!(fold(add(0, &[0xffu8; 3])), reference(&[0xff; 3]));
    }
}
