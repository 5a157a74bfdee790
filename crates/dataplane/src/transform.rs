//! Header transforms: what a flow entry does to one direction's packets
//! when a layer translated them (NAT, a load balancer's target, the edge),
//! compiled on the flow's first packet and applied on the fast path without
//! evaluating any rule: rewrite the addresses and ports, fix the checksums
//! incrementally (RFC 1624), then take the direction's hop.
//!
//! A transform is a finite resource owned by its flow entry (STYLE.md: "Finite
//! resources are handles tied to the flow entry's lifetime"): it is taken
//! from a bounded table when the entry is made and given back when the entry
//! expires, is evicted or is removed. A full table is a counted drop.
//!
//! A translated flow's reply carries the translated tuple, so it does not
//! find the entry under the entry's own key: the table keeps the reply's key
//! as an alias that names the transform, and the transform names its owner.

use core::net::IpAddr;

use openvpc_packet::FlowKey;
use openvpc_packet::checksum::{update16, update32};
use openvpc_packet::flow::ParsedFlow;
use openvpc_packet::geneve::ReturnVia;
use openvpc_packet::ip::protocol;

use crate::flow_table::Hop;
use crate::layer::Rewrite;

/// One direction's transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    pub rewrite: Rewrite,
    /// Where the rewritten packet goes.
    pub then: Hop,
    /// The key of the flow's original packets as they arrived (oriented,
    /// in the ENI's zone): its normalised form is the owner entry's key.
    pub original: FlowKey,
    /// The table key of the replies' alias, on the original direction's
    /// transform (removed with it).
    pub alias: Option<FlowKey>,
    /// Set on the reply direction of a flow that came through a load
    /// balancer's node: the replies go back through that place of its
    /// shard, wherever the routes would send them (see
    /// [`openvpc_packet::geneve::ReturnVia`]).
    pub via: Option<ReturnVia>,
}

impl Transform {
    /// The key of the entry that owns this transform.
    pub fn owner(&self) -> FlowKey {
        self.original.normalized().0
    }
}

/// The bounded table of live transforms, addressed by handle.
#[derive(Debug)]
pub struct Transforms {
    slots: Vec<Option<Transform>>,
    free: Vec<u32>,
    capacity: usize,
    /// Transforms refused because the table was full.
    pub refused_full: u64,
}

impl Transforms {
    /// A table for at most `capacity` transforms; it grows on demand.
    pub fn new(capacity: usize) -> Self {
        Transforms {
            slots: Vec::new(),
            free: Vec::new(),
            capacity,
            refused_full: 0,
        }
    }

    /// Takes a handle for `t`; `None` (counted) when the table is full.
    pub fn alloc(&mut self, t: Transform) -> Option<u32> {
        if let Some(h) = self.free.pop()
            && let Some(slot) = self.slots.get_mut(h as usize)
        {
            *slot = Some(t);
            return Some(h);
        }
        if self.slots.len() >= self.capacity
            || self.slots.len() >= crate::flow_table::MAX_HOP_INDEX as usize
        {
            self.refused_full += 1;
            return None;
        }
        self.slots.push(Some(t));
        u32::try_from(self.slots.len() - 1).ok()
    }

    /// Gives a handle back.
    pub fn free(&mut self, h: u32) -> Option<Transform> {
        let t = self.slots.get_mut(h as usize)?.take()?;
        self.free.push(h);
        Some(t)
    }

    #[inline]
    pub fn get(&self, h: u32) -> Option<&Transform> {
        self.slots.get(h as usize)?.as_ref()
    }

    pub fn get_mut(&mut self, h: u32) -> Option<&mut Transform> {
        self.slots.get_mut(h as usize)?.as_mut()
    }

    /// Transforms in use.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `key` as it looks after `rewrite`.
pub fn rewritten(key: &FlowKey, rewrite: &Rewrite) -> FlowKey {
    let mut k = *key;
    if let Some((ip, port)) = rewrite.src {
        set_addr(&mut k.src, ip);
        k.src_port = port;
    }
    if let Some((ip, port)) = rewrite.dst {
        set_addr(&mut k.dst, ip);
        k.dst_port = port;
    }
    k
}

/// Writes `ip` as a key stores it (IPv4 as an IPv4-mapped IPv6 address).
fn set_addr(field: &mut [u8; 16], ip: IpAddr) {
    *field = match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
}

/// The rewrite that undoes `rewrite` on the replies of the flow whose
/// original packets had `original` as their key: a translated source is
/// the replies' destination, a translated destination their source.
pub fn reply_rewrite(original: &FlowKey, rewrite: &Rewrite) -> Rewrite {
    Rewrite {
        src: rewrite.dst.map(|_| (original.dst_ip(), original.dst_port)),
        dst: rewrite.src.map(|_| (original.src_ip(), original.src_port)),
    }
}

/// Why a packet could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteError {
    /// Only IPv4 is translated (as AWS's NAT gateways translate).
    NotIpv4,
    /// The frame is shorter than its parse said.
    Truncated,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn put16(b: &mut [u8], at: usize, v: u16) -> Option<()> {
    b.get_mut(at..at + 2)?.copy_from_slice(&v.to_be_bytes());
    Some(())
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Applies `rewrite` to the IPv4 packet of `frame` (parsed as `pf`): the
/// addresses in the IP header, the ports of TCP and UDP (the identifier of
/// an ICMP echo), and every checksum they are part of, incrementally.
pub fn apply(frame: &mut [u8], pf: &ParsedFlow, rewrite: &Rewrite) -> Result<(), RewriteError> {
    if pf.key.family != 4 {
        return Err(RewriteError::NotIpv4);
    }
    apply_v4(frame, pf, rewrite).ok_or(RewriteError::Truncated)
}

fn apply_v4(frame: &mut [u8], pf: &ParsedFlow, rewrite: &Rewrite) -> Option<()> {
    let (l3, l4) = (pf.l3_offset, pf.l4_offset);
    // Where the L4 checksum is and whether the pseudo-header is in it.
    // A later fragment carries no L4 header: only the IP header changes.
    let l4_check = match pf.key.protocol {
        _ if pf.later_fragment => None,
        protocol::TCP => Some((l4 + 16, true)),
        protocol::UDP => Some((l4 + 6, true)).filter(|_| be16(frame, l4 + 6) != Some(0)),
        protocol::ICMP => Some((l4 + 2, false)),
        _ => None,
    };
    let ports = matches!(pf.key.protocol, protocol::TCP | protocol::UDP) && !pf.later_fragment;
    for (addr_at, port_at, to) in [(l3 + 12, l4, rewrite.src), (l3 + 16, l4 + 2, rewrite.dst)] {
        let Some((ip, port)) = to else { continue };
        let IpAddr::V4(new) = ip else { return None };
        let (old, new) = (be32(frame, addr_at)?, u32::from(new));
        frame
            .get_mut(addr_at..addr_at + 4)?
            .copy_from_slice(&new.to_be_bytes());
        let ip_check = update32(be16(frame, l3 + 10)?, old, new);
        put16(frame, l3 + 10, ip_check)?;
        if let Some((at, true)) = l4_check {
            let c = update32(be16(frame, at)?, old, new);
            put16(frame, at, c)?;
        }
        let port_field = if ports {
            Some(port_at)
        } else if pf.key.protocol == protocol::ICMP && !pf.icmp_error && !pf.later_fragment {
            // An echo's identifier is both of its "ports".
            Some(l4 + 4)
        } else {
            None
        };
        if let Some(at) = port_field {
            let old_port = be16(frame, at)?;
            if old_port != port {
                put16(frame, at, port)?;
                if let Some((c_at, _)) = l4_check {
                    let c = update16(be16(frame, c_at)?, old_port, port);
                    put16(frame, c_at, c)?;
                }
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use openvpc_packet::MacAddr;
    use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
    use openvpc_packet::ethernet::EthernetRepr;
    use openvpc_packet::flow::parse_ethernet;
    use openvpc_packet::ipv4::Ipv4Repr;
    use openvpc_packet::tcp::{TcpRepr, flags};
    use openvpc_packet::udp::UdpRepr;

    fn frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, l4: &str) -> Vec<u8> {
        let l4 = match l4 {
            "tcp" => L4Repr::Tcp(TcpRepr::new(sport, dport, flags::SYN)),
            _ => L4Repr::Udp(UdpRepr {
                src_port: sport,
                dst_port: dport,
            }),
        };
        PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: MacAddr([2, 0, 0, 0, 0, 1]),
                src: MacAddr([2, 0, 0, 0, 0, 2]),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(src.into(), dst.into(), 0, 0)),
            l4,
        }
        .build(b"some payload")
        .unwrap()
    }

    // An incremental rewrite equals the packet built whole with the new
    // tuple: addresses, ports and every checksum.
    #[test]
    fn rewriting_equals_building_anew() {
        for l4 in ["tcp", "udp"] {
            let mut f = frame([10, 0, 1, 10], 40000, [10, 0, 2, 20], 80, l4);
            let pf = parse_ethernet(&f).unwrap();
            let rw = Rewrite {
                src: Some((IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 1024)),
                dst: Some((IpAddr::V4(Ipv4Addr::new(10, 0, 3, 30)), 8080)),
            };
            apply(&mut f, &pf, &rw).unwrap();
            let want = frame([203, 0, 113, 7], 1024, [10, 0, 3, 30], 8080, l4);
            assert_eq!(f, want, "{l4}");
            assert_eq!(rewritten(&pf.key, &rw), parse_ethernet(&want).unwrap().key);
        }
    }

    // A later fragment has no L4 header: only the IP header may change.
    #[test]
    fn a_later_fragment_keeps_its_payload() {
        let mut f = frame([10, 0, 1, 10], 40000, [10, 0, 2, 20], 80, "udp");
        // Fragment offset 8 (×8 bytes): what follows the IP header is data.
        f[14 + 6] = 0;
        f[14 + 7] = 1;
        let ip_check = openvpc_packet::checksum::of(&{
            let mut h = f[14..34].to_vec();
            h[10] = 0;
            h[11] = 0;
            h
        });
        f[14 + 10..14 + 12].copy_from_slice(&ip_check.to_be_bytes());
        let pf = parse_ethernet(&f).unwrap();
        assert!(pf.later_fragment);
        let before = f.clone();
        let rw = Rewrite {
            src: Some((IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 1024)),
            dst: None,
        };
        apply(&mut f, &pf, &rw).unwrap();
        assert_eq!(&f[34..], &before[34..], "the payload is untouched");
        assert_eq!(&f[14 + 12..14 + 16], &[203, 0, 113, 7]);
        assert_eq!(
            openvpc_packet::checksum::of(&f[14..34]),
            0,
            "the IP checksum holds"
        );
    }

    // The reply's rewrite restores what the instance sent.
    #[test]
    fn the_reply_rewrite_undoes_the_translation() {
        let key = FlowKey::v4(
            Ipv4Addr::new(10, 0, 1, 10),
            Ipv4Addr::new(8, 8, 8, 8),
            protocol::UDP,
            40000,
            53,
        );
        let rw = Rewrite {
            src: Some((IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)), 1024)),
            dst: None,
        };
        let reply = rewritten(&key, &rw).reversed();
        let back = rewritten(&reply, &reply_rewrite(&key, &rw));
        assert_eq!(back, key.reversed());
    }

    #[test]
    fn handles_are_bounded_and_reused() {
        let t = Transform {
            rewrite: Rewrite::default(),
            then: Hop::Deliver,
            original: FlowKey::v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 6, 1, 2),
            alias: None,
            via: None,
        };
        let mut ts = Transforms::new(2);
        let a = ts.alloc(t).unwrap();
        let b = ts.alloc(t).unwrap();
        assert_eq!(ts.alloc(t), None);
        assert_eq!(ts.refused_full, 1);
        assert!(ts.free(a).is_some());
        assert!(ts.free(a).is_none(), "a handle is given back once");
        assert_eq!(ts.alloc(t), Some(a));
        assert_ne!(a, b);
        assert_eq!(ts.len(), 2);
    }
}
