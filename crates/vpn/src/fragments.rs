//! Reassembly of IPv4 fragments addressed to a tunnel's outside address
//! (RFC 791), sans-IO. ESP for a full-size inner packet is larger than
//! some links on the way (an edge's uplink is 1,450 bytes: it leaves room
//! for the Geneve that carries translated packets to hosts), so the
//! customer gateway's packets may arrive in pieces; a tunnel that dropped
//! them would carry small packets and stall a TCP connection the moment
//! it sends a full segment.
//!
//! Written here rather than taken from a crate: smoltcp's reassembler
//! lives inside its interface, and this one must sit in front of the
//! tunnel's own parser, bounded and counted.
//!
//! Bounded: at most [`MAX_DATAGRAMS`] datagrams in progress, each at most
//! 65,535 bytes, each given [`TIMEOUT_MS`] to complete. Overlapping
//! fragments drop the datagram whole (as RFC 5722 asks of IPv6; nothing
//! legitimate overlaps). Every refusal is a counted [`FragmentDrop`].

use core::net::Ipv4Addr;

use openvpc_packet::checksum;
use openvpc_packet::ipv4::Ipv4Repr;

/// Datagrams being reassembled at once, per tunnel.
pub const MAX_DATAGRAMS: usize = 64;
/// How long a datagram's fragments wait for the rest (RFC 791 suggests
/// up to 15 s; ESP is real-time traffic).
pub const TIMEOUT_MS: u64 = 5_000;
/// An IPv4 datagram's largest size.
const MAX_LEN: usize = 65_535;

/// Why fragments were given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FragmentDrop {
    /// Not a well-formed IPv4 fragment.
    Malformed,
    /// Fragments that overlap, or a datagram longer than IPv4 allows.
    Overlap,
    /// Too many datagrams in progress: the oldest is given up.
    Full,
    /// The rest never came.
    Timeout,
}

/// The reassembler's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentCounters {
    pub fragments: u64,
    pub reassembled: u64,
    pub malformed: u64,
    pub overlaps: u64,
    pub evicted: u64,
    pub timeouts: u64,
}

/// One datagram being put together.
#[derive(Debug)]
struct Pending {
    key: (Ipv4Addr, Ipv4Addr, u8, u16),
    /// The header of the first fragment (offset 0), options included.
    header: Option<Vec<u8>>,
    /// (offset, bytes) of each payload piece.
    pieces: Vec<(usize, Vec<u8>)>,
    /// The payload's length, once the last fragment came.
    total: Option<usize>,
    since_ms: u64,
}

/// The fragments of one tunnel's peer, waiting.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: Vec<Pending>,
    pub counters: FragmentCounters,
}

/// Whether `packet` is an IPv4 fragment (more to come, or not the first).
pub fn is_fragment(packet: &[u8]) -> bool {
    packet
        .get(6..8)
        .is_some_and(|b| u16::from_be_bytes([b[0], b[1]]) & 0x3fff != 0)
}

impl Reassembler {
    /// Takes one fragment; the whole datagram once its last piece is in.
    pub fn push(&mut self, packet: &[u8], now_ms: u64) -> Result<Option<Vec<u8>>, FragmentDrop> {
        self.expire(now_ms);
        self.counters.fragments += 1;
        let Ok((ip, payload)) = Ipv4Repr::parse(packet) else {
            self.counters.malformed += 1;
            return Err(FragmentDrop::Malformed);
        };
        let header_len = packet.len() - payload.len();
        let offset = usize::from(ip.frag.offset) * 8;
        let last = !ip.frag.more_fragments;
        // Every piece but the last carries a multiple of 8 bytes.
        if (!last && payload.len() % 8 != 0) || offset + payload.len() > MAX_LEN {
            self.counters.malformed += 1;
            return Err(FragmentDrop::Malformed);
        }
        let key = (ip.src, ip.dst, ip.protocol, ip.ident);
        let at = match self.pending.iter().position(|p| p.key == key) {
            Some(i) => i,
            None => {
                if self.pending.len() >= MAX_DATAGRAMS {
                    self.pending.remove(0);
                    self.counters.evicted += 1;
                }
                self.pending.push(Pending {
                    key,
                    header: None,
                    pieces: Vec::new(),
                    total: None,
                    since_ms: now_ms,
                });
                self.pending.len() - 1
            }
        };
        let p = &mut self.pending[at];
        let end = offset + payload.len();
        let overlaps = p
            .pieces
            .iter()
            .any(|(o, b)| offset < o + b.len() && *o < end)
            || (last && p.total.is_some())
            || p.total.is_some_and(|t| end > t)
            || (last && p.pieces.iter().any(|(o, b)| o + b.len() > end));
        if overlaps {
            self.pending.remove(at);
            self.counters.overlaps += 1;
            return Err(FragmentDrop::Overlap);
        }
        if offset == 0 {
            p.header = packet.get(..header_len).map(<[u8]>::to_vec);
        }
        if last {
            p.total = Some(end);
        }
        p.pieces.push((offset, payload.to_vec()));
        let (Some(total), Some(_)) = (p.total, &p.header) else {
            return Ok(None);
        };
        if p.pieces.iter().map(|(_, b)| b.len()).sum::<usize>() != total {
            return Ok(None);
        }
        let mut p = self.pending.remove(at);
        p.pieces.sort_by_key(|(o, _)| *o);
        let mut whole = p.header.take().unwrap_or_default();
        let header_len = whole.len();
        for (_, b) in &p.pieces {
            whole.extend_from_slice(b);
        }
        let Ok(len) = u16::try_from(whole.len()) else {
            self.counters.overlaps += 1;
            return Err(FragmentDrop::Overlap);
        };
        // A datagram again: its length, no fragment fields, a new checksum.
        whole[2..4].copy_from_slice(&len.to_be_bytes());
        whole[6..8].copy_from_slice(&[0, 0]);
        whole[10..12].copy_from_slice(&[0, 0]);
        let sum = checksum::of(&whole[..header_len]);
        whole[10..12].copy_from_slice(&sum.to_be_bytes());
        self.counters.reassembled += 1;
        Ok(Some(whole))
    }

    /// Gives up the datagrams whose fragments have waited too long.
    pub fn expire(&mut self, now_ms: u64) {
        let before = self.pending.len();
        self.pending
            .retain(|p| now_ms.saturating_sub(p.since_ms) < TIMEOUT_MS);
        self.counters.timeouts += (before - self.pending.len()) as u64;
    }

    /// Datagrams in progress.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
    use proptest::prelude::*;

    fn datagram(len: usize) -> Vec<u8> {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut ip = Ipv4Repr::new(
            "198.51.100.20".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
            17,
            0,
        );
        ip.ident = 0x1234;
        ip.frag.dont_fragment = false;
        PacketBuilder {
            ethernet: None,
            ip: IpRepr::V4(ip),
            l4: L4Repr::Raw,
        }
        .build(&payload)
        .unwrap()
    }

    /// Cuts `packet` into fragments of `size` payload bytes (a multiple of
    /// 8), as a router would.
    fn fragment(packet: &[u8], size: usize) -> Vec<Vec<u8>> {
        let (_, payload) = Ipv4Repr::parse(packet).unwrap();
        let header_len = packet.len() - payload.len();
        payload
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let mut f = packet[..header_len].to_vec();
                f.extend_from_slice(chunk);
                let more = (i + 1) * size < payload.len();
                let ff = ((i * size / 8) as u16) | if more { 0x2000 } else { 0 };
                let len = f.len() as u16;
                f[2..4].copy_from_slice(&len.to_be_bytes());
                f[6..8].copy_from_slice(&ff.to_be_bytes());
                f[10..12].copy_from_slice(&[0, 0]);
                let sum = checksum::of(&f[..header_len]);
                f[10..12].copy_from_slice(&sum.to_be_bytes());
                f
            })
            .collect()
    }

    // Fragments in any order make the datagram again, byte for byte.
    #[test]
    fn fragments_in_any_order_make_the_datagram() {
        let whole = datagram(1_480);
        let mut pieces = fragment(&whole, 600);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| is_fragment(p)));
        assert!(!is_fragment(&whole));
        pieces.swap(0, 2);
        let mut r = Reassembler::default();
        assert_eq!(r.push(&pieces[0], 0), Ok(None));
        assert_eq!(r.push(&pieces[1], 1), Ok(None));
        let got = r.push(&pieces[2], 2).unwrap().unwrap();
        assert_eq!(got, whole);
        assert!(r.is_empty());
        assert_eq!(r.counters.reassembled, 1);
    }

    // What never completes is given up after the timeout; overlaps drop
    // the datagram; the table is bounded.
    #[test]
    fn timeouts_overlaps_and_the_bound_are_counted() {
        let whole = datagram(1_480);
        let pieces = fragment(&whole, 600);
        let mut r = Reassembler::default();
        assert_eq!(r.push(&pieces[0], 0), Ok(None));
        r.expire(TIMEOUT_MS);
        assert!(r.is_empty());
        assert_eq!(r.counters.timeouts, 1);
        assert_eq!(r.push(&pieces[0], 0), Ok(None));
        assert_eq!(r.push(&pieces[0], 1), Err(FragmentDrop::Overlap));
        assert!(r.is_empty());
        for ident in 0..(MAX_DATAGRAMS as u16 + 3) {
            let mut p = pieces[0].clone();
            p[4..6].copy_from_slice(&ident.to_be_bytes());
            p[10..12].copy_from_slice(&[0, 0]);
            let sum = checksum::of(&p[..20]);
            p[10..12].copy_from_slice(&sum.to_be_bytes());
            r.push(&p, 10).unwrap();
        }
        assert_eq!(r.len(), MAX_DATAGRAMS);
        assert_eq!(r.counters.evicted, 3);
    }

    proptest! {
        // Arbitrary bytes never panic and never leave more than the bound.
        #[test]
        fn arbitrary_fragments_never_panic(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..50)) {
            let mut r = Reassembler::default();
            for (i, p) in packets.iter().enumerate() {
                let _ = r.push(p, i as u64);
            }
            prop_assert!(r.len() <= MAX_DATAGRAMS);
        }
    }
}
