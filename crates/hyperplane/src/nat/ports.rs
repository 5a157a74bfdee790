//! Port slices (spec 6.2): which translated ports a node of a shard may
//! hand out, and which node owns a translated port, so a reply finds its
//! node from its (address, port) alone with no shared state.
//!
//! Node `i` of `n` owns the ports `p` with `p % n == i` (interleaved, not
//! contiguous): the owner of a port is one remainder for any `n`, every
//! node's slice has the same size within one port whatever the configured
//! range is, and the slices of a range shrunk for tests stay balanced.

use core::ops::RangeInclusive;

/// The translated ports: 10,536–65,535. Inside AWS's 1024–65535 (spec 6.2:
/// an outside server sees ports ≥ 1024) and exactly 55,000 ports wide, so
/// the range itself is AWS's limit of 55,000 concurrent connections per
/// (address, destination IP, destination port, protocol): no second count
/// is needed to enforce it.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 10_536..=65_535;

/// Connections per destination per address AWS allows (spec 6.2).
pub const PER_DESTINATION: u32 = 55_000;

/// The node of a shard of `nodes` that owns translated `port`.
#[inline]
pub fn owner_of(port: u16, nodes: u8) -> u8 {
    (port % u16::from(nodes.max(1))) as u8
}

/// One node's ports of a range: `first`, `first + step`, … (`size` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    first: u32,
    step: u32,
    size: u32,
}

impl Slice {
    /// Node `node`'s slice of `range` in a shard of `nodes`.
    pub fn new(range: &RangeInclusive<u16>, node: u8, nodes: u8) -> Slice {
        let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
        let n = u32::from(nodes.max(1));
        let node = u32::from(node) % n;
        let first = lo + (node + n - lo % n) % n;
        let size = if first > hi || lo > hi {
            0
        } else {
            (hi - first) / n + 1
        };
        Slice {
            first,
            step: n,
            size,
        }
    }

    /// Ports in the slice.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The `k`-th port of the slice (`k < size`).
    #[inline]
    pub fn port(&self, k: u32) -> u16 {
        (self.first + (k % self.size.max(1)) * self.step) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The default range is AWS's 55,000 per destination, all ≥ 1024.
    #[test]
    fn the_default_range_is_55000_ports_above_1023() {
        let r = DEFAULT_PORTS;
        assert_eq!(
            u32::from(*r.end()) - u32::from(*r.start()) + 1,
            PER_DESTINATION
        );
        assert!(*r.start() >= 1024);
    }

    // The slices of a shard partition the range, each port owned by the
    // node whose slice holds it.
    #[test]
    fn slices_partition_the_range_and_agree_with_owner_of() {
        for nodes in 1..=7u8 {
            for range in [DEFAULT_PORTS, 10_536..=10_545, 1024..=1024] {
                let mut seen = std::collections::HashSet::new();
                for node in 0..nodes {
                    let s = Slice::new(&range, node, nodes);
                    for k in 0..s.size() {
                        let p = s.port(k);
                        assert!(range.contains(&p));
                        assert_eq!(owner_of(p, nodes), node);
                        assert!(seen.insert(p), "port {p} in two slices");
                    }
                }
                assert_eq!(seen.len(), range.len(), "nodes {nodes} {range:?}");
            }
        }
    }
}
