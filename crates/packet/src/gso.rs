//! Segmentation offload in software: the `virtio_net_hdr` a TAP with
//! `IFF_VNET_HDR` puts in front of each frame, completion of the partial
//! checksums it announces, TCP/IPv4 segmentation of a super-segment
//! (what an instance hands a TAP that offers TSO) into wire-sized segments,
//! and the reverse for frames going to an instance: TCP segments and UDP
//! datagrams of one flow coalesced into one super-frame.
//!
//! Pure functions over byte buffers; the agent does the system calls.

use crate::checksum;
use crate::{Error, Layer};

/// Bytes of the `virtio_net_hdr` a TAP exchanges (without mergeable buffers).
pub const VNET_HDR_LEN: usize = 10;

/// `flags`: the checksum from `csum_start` on is partial and must be completed.
pub const F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksums were checked (or the sender vouches for them).
pub const F_DATA_VALID: u8 = 2;

/// `gso_type`: no segmentation.
pub const GSO_NONE: u8 = 0;
/// `gso_type`: a TCP/IPv4 super-segment.
pub const GSO_TCPV4: u8 = 1;
/// `gso_type`: a TCP/IPv6 super-segment.
pub const GSO_TCPV6: u8 = 4;
/// `gso_type`: a UDP super-datagram (cut into datagrams of `gso_size`).
pub const GSO_UDP_L4: u8 = 5;
/// `gso_type` bit: ECN was negotiated (CWR only on the first segment).
pub const GSO_ECN: u8 = 0x80;

/// The `virtio_net_hdr` of one frame (native, i.e. little-endian on the
/// hosts we run on: the TAP's legacy layout).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header at the front of `buf`.
    pub fn parse(buf: &[u8]) -> Result<Self, Error> {
        let b =
            buf.get(..VNET_HDR_LEN)
                .ok_or(truncated(Layer::Ethernet, VNET_HDR_LEN, buf.len()))?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's bytes.
    pub fn bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// True if the frame is a super-segment to be cut.
    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

fn truncated(layer: Layer, need: usize, have: usize) -> Error {
    Error::Truncated { layer, need, have }
}

/// Completes a partial checksum as the kernel's `skb_checksum_help` does:
/// the field at `start + offset` holds the pseudo-header sum; the sum of
/// everything from `start` on, folded and complemented, replaces it.
pub fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), Error> {
    let field = start.saturating_add(offset);
    if field.saturating_add(2) > frame.len() {
        return Err(truncated(Layer::Tcp, field.saturating_add(2), frame.len()));
    }
    let sum = checksum::finish(checksum::add(0, &frame[start..]));
    frame[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

const ETH_LEN: usize = 14;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// How [`cut_tcp4`] cut a super-segment: `count` segments, segment `k`
/// being `headers` bytes of its own headers (at `k * headers` in the
/// header buffer) followed by [`Cut::chunk`]`(k)` of the original payload.
/// Every segment but the last is [`Cut::stride`] bytes long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub headers: usize,
    pub count: usize,
    pub mss: usize,
    /// Where the payload lies in the super-segment.
    pub payload: core::ops::Range<usize>,
}

impl Cut {
    /// Bytes of every segment but the last.
    pub fn stride(&self) -> usize {
        self.headers + self.mss
    }

    /// Segment `k`'s payload within the super-segment `pkt`.
    pub fn chunk<'a>(&self, pkt: &'a [u8], k: usize) -> &'a [u8] {
        let from = self.payload.start + k * self.mss;
        let to = (from + self.mss).min(self.payload.end);
        pkt.get(from..to).unwrap_or_default()
    }
}

/// Cuts `pkt` — `prefix` opaque bytes (e.g. a Geneve header, repeated in
/// every segment), then an Ethernet frame holding a TCP/IPv4 super-segment
/// — into segments of at most `mss` payload bytes, writing only each
/// segment's headers to `hdrs`: the payload is not copied, so a sender can
/// hand the kernel headers and payload slices side by side (one copy, into
/// the socket buffer). Each segment gets its own IPv4 total length,
/// identification (counting up) and header checksum, and its TCP sequence
/// number, flags (FIN and PSH only on the last, CWR only on the first) and
/// full checksum.
pub fn cut_tcp4(pkt: &[u8], prefix: usize, mss: usize, hdrs: &mut Vec<u8>) -> Result<Cut, Error> {
    let l3 = prefix + ETH_LEN;
    let ip = pkt
        .get(l3..l3 + 20)
        .ok_or(truncated(Layer::Ipv4, l3 + 20, pkt.len()))?;
    let unsupported = |field, value| Error::Unsupported {
        layer: Layer::Ipv4,
        field,
        value,
    };
    if pkt[l3 - 2..l3] != [0x08, 0x00] {
        return Err(unsupported(
            "ethertype",
            u32::from(u16::from_be_bytes([pkt[l3 - 2], pkt[l3 - 1]])),
        ));
    }
    if ip[0] >> 4 != 4 || ip[9] != 6 {
        return Err(unsupported("protocol", u32::from(ip[9])));
    }
    if mss == 0 {
        return Err(unsupported("segment size", 0));
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let l4 = l3 + ihl;
    let doff = usize::from(
        *pkt.get(l4 + 12)
            .ok_or(truncated(Layer::Tcp, l4 + 13, pkt.len()))?
            >> 4,
    ) * 4;
    let data = l4 + doff;
    if ihl < 20 || doff < 20 || data > pkt.len() {
        return Err(truncated(Layer::Tcp, data, pkt.len()));
    }
    let total = usize::from(u16::from_be_bytes([pkt[l3 + 2], pkt[l3 + 3]]));
    let end = if total >= ihl + doff {
        (l3 + total).min(pkt.len())
    } else {
        pkt.len()
    };
    let cut = Cut {
        headers: data,
        count: (end - data).div_ceil(mss).max(1),
        mss,
        payload: data..end,
    };
    let id0 = u16::from_be_bytes([pkt[l3 + 4], pkt[l3 + 5]]);
    let seq0 = u32::from_be_bytes([pkt[l4 + 4], pkt[l4 + 5], pkt[l4 + 6], pkt[l4 + 7]]);
    let flags0 = pkt[l4 + 13];
    let src = core::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = core::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    hdrs.reserve(cut.count * data);
    for k in 0..cut.count {
        let chunk = cut.chunk(pkt, k);
        let s = hdrs.len();
        hdrs.extend_from_slice(&pkt[..data]);
        let seg = &mut hdrs[s..];
        let ip_len = (ihl + doff + chunk.len()) as u16;
        seg[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        seg[l3 + 4..l3 + 6].copy_from_slice(&id0.wrapping_add(k as u16).to_be_bytes());
        seg[l3 + 10..l3 + 12].fill(0);
        let ip_sum = checksum::of(&seg[l3..l4]);
        seg[l3 + 10..l3 + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let seq = seq0.wrapping_add((k * mss) as u32);
        seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
        let mut flags = flags0;
        if k + 1 < cut.count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if k > 0 {
            flags &= !TCP_CWR;
        }
        seg[l4 + 13] = flags;
        seg[l4 + 16..l4 + 18].fill(0);
        let tcp_len = (doff + chunk.len()) as u16;
        // The TCP header is a whole number of 32-bit words, so the
        // payload's sum chains on at an even offset.
        let sum = checksum::pseudo_v4(src, dst, 6, tcp_len);
        let sum = checksum::finish(checksum::add(checksum::add(sum, &seg[l4..]), chunk));
        seg[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(cut)
}

/// [`cut_tcp4`] with the segments written whole, back to back, to `out`.
/// Returns `(stride, count)`.
pub fn segment_tcp4(
    pkt: &[u8],
    prefix: usize,
    mss: usize,
    out: &mut Vec<u8>,
) -> Result<(usize, usize), Error> {
    let mut hdrs = Vec::new();
    let cut = cut_tcp4(pkt, prefix, mss, &mut hdrs)?;
    for (k, h) in hdrs.chunks(cut.headers).enumerate() {
        out.extend_from_slice(h);
        out.extend_from_slice(cut.chunk(pkt, k));
    }
    Ok((cut.stride(), cut.count))
}

const TCP_ACK: u8 = 0x10;
/// The largest IPv4 packet a coalesced frame may become.
const MAX_IP_LEN: usize = 65_535;

/// Receive-side coalescing (GRO in software): consecutive in-order TCP/IPv4
/// segments of one flow, with identical headers but for what segmentation
/// changes, become one super-segment that a TAP accepts whole with a
/// `virtio_net_hdr` — the instance's kernel then handles 64 KiB at once
/// instead of one MSS. Consecutive UDP/IPv4 datagrams of one flow, all of
/// one size but the last, become one UDP super-datagram (`GSO_UDP_L4`):
/// the instance's kernel routes it once and cuts it back into datagrams at
/// the socket, so a stream of small datagrams costs one TAP write per
/// batch instead of one each. Frames that cannot join (other flows,
/// SYN/FIN/RST, a gap, a short segment already taken) are refused; the
/// caller flushes [`Coalescer::frame`] and sends them as they are.
///
/// Inner checksums are not verified: the underlay's UDP checksum covers
/// the inner frame end to end, and the frame written carries a partial
/// checksum the instance's kernel completes per segment.
#[derive(Debug, Default)]
pub struct Coalescer {
    buf: Vec<u8>,
    /// Offsets of the TCP header and of the payload in `buf`.
    l4: usize,
    data: usize,
    /// Payload bytes of the first segment: every later one but the last
    /// must match it.
    seg: usize,
    next_seq: u32,
    count: usize,
    /// No more segments may join (a short one or PSH was taken).
    closed: bool,
    /// The frames held are UDP datagrams, not TCP segments.
    udp: bool,
    /// The caller's tag for where the frame goes (e.g. a TAP index).
    pub target: usize,
}

/// (TCP header offset, payload offset, flags) of a plain TCP/IPv4 frame.
fn tcp4_layout(frame: &[u8]) -> Option<(usize, usize, u8)> {
    if frame.len() < ETH_LEN + 40 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    if ip[0] != 0x45 || ip[9] != 6 || ip[6] & 0x3f != 0 || ip[7] != 0 {
        // Options, another protocol, or a fragment.
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = ETH_LEN + 20;
    let doff = usize::from(frame[l4 + 12] >> 4) * 4;
    let data = l4 + doff;
    if doff < 20 || data > frame.len() || ETH_LEN + total != frame.len() {
        return None;
    }
    Some((l4, data, frame[l4 + 13]))
}

/// Most datagrams in one UDP super-datagram: the kernel refuses more
/// (`UDP_MAX_SEGMENTS` in the oldest kernels we run on).
const MAX_UDP_SEGMENTS: usize = 64;

/// (UDP header offset, payload offset) of a plain UDP/IPv4 frame.
fn udp4_layout(frame: &[u8]) -> Option<(usize, usize)> {
    if frame.len() < ETH_LEN + 28 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETH_LEN..];
    if ip[0] != 0x45 || ip[9] != 17 || ip[6] & 0x3f != 0 || ip[7] != 0 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let l4 = ETH_LEN + 20;
    let udp_len = usize::from(u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]));
    if ETH_LEN + total != frame.len() || udp_len != total - 20 {
        return None;
    }
    Some((l4, l4 + 8))
}

impl Coalescer {
    /// An empty coalescer whose buffer holds a 64 KiB super-segment.
    pub fn new() -> Self {
        Coalescer {
            buf: Vec::with_capacity(ETH_LEN + MAX_IP_LEN),
            ..Coalescer::default()
        }
    }

    /// Segments held.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Takes `frame` in (as the first segment, or appended to those held);
    /// false if it cannot join: then nothing changed.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let Some((l4, data, flags)) = tcp4_layout(frame) else {
            return self.push_udp(frame);
        };
        if self.count > 0 && self.udp {
            return false;
        }
        let payload = &frame[data..];
        if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 || payload.is_empty() {
            return false;
        }
        let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(frame);
            (self.l4, self.data, self.seg) = (l4, data, payload.len());
            self.next_seq = seq.wrapping_add(payload.len() as u32);
            self.count = 1;
            self.closed = flags & TCP_PSH != 0;
            self.udp = false;
            return true;
        }
        let b = &self.buf;
        let same = self.closed
            || data != self.data
            || seq != self.next_seq
            || payload.len() > self.seg
            || b.len() + payload.len() > ETH_LEN + MAX_IP_LEN
            // Ethernet, IP version/TOS, flags/TTL/protocol, addresses.
            || frame[..16] != b[..16]
            || frame[20..24] != b[20..24]
            || frame[26..l4] != b[26..l4]
            // Ports, ACK, data offset, window, options.
            || frame[l4..l4 + 4] != b[l4..l4 + 4]
            || frame[l4 + 8..l4 + 13] != b[l4 + 8..l4 + 13]
            || frame[l4 + 14..l4 + 16] != b[l4 + 14..l4 + 16]
            || frame[l4 + 20..data] != b[l4 + 20..data];
        if same {
            return false;
        }
        self.buf.extend_from_slice(payload);
        self.next_seq = seq.wrapping_add(payload.len() as u32);
        self.count += 1;
        if payload.len() < self.seg || flags & TCP_PSH != 0 {
            self.closed = true;
            self.buf[l4 + 13] |= flags & TCP_PSH;
        }
        true
    }

    /// [`Coalescer::push`] for a frame that is not a plain TCP segment.
    fn push_udp(&mut self, frame: &[u8]) -> bool {
        let Some((l4, data)) = udp4_layout(frame) else {
            return false;
        };
        let payload = &frame[data..];
        if payload.is_empty() {
            return false;
        }
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(frame);
            (self.l4, self.data, self.seg) = (l4, data, payload.len());
            self.count = 1;
            self.closed = false;
            self.udp = true;
            return true;
        }
        let b = &self.buf;
        let same = !self.udp
            || self.closed
            || data != self.data
            || payload.len() > self.seg
            || self.count >= MAX_UDP_SEGMENTS
            || b.len() + payload.len() > ETH_LEN + MAX_IP_LEN
            // Ethernet, IP version/TOS, flags/TTL/protocol, addresses, ports.
            || frame[..16] != b[..16]
            || frame[20..24] != b[20..24]
            || frame[26..l4 + 4] != b[26..l4 + 4];
        if same {
            return false;
        }
        self.buf.extend_from_slice(payload);
        self.count += 1;
        self.closed = payload.len() < self.seg;
        true
    }

    /// The frame held and the `virtio_net_hdr` it goes out with: a single
    /// segment as it came (no offload), several as one TCP/IPv4
    /// super-segment or UDP super-datagram with a partial checksum for the
    /// receiver to complete per segment. The coalescer is empty afterwards
    /// (the slice stays valid until the next push).
    pub fn frame(&mut self) -> (VnetHdr, &[u8]) {
        let count = std::mem::take(&mut self.count);
        self.closed = false;
        if count <= 1 {
            return (VnetHdr::default(), &self.buf);
        }
        let l3 = ETH_LEN;
        let ip_len = (self.buf.len() - l3) as u16;
        self.buf[l3 + 2..l3 + 4].copy_from_slice(&ip_len.to_be_bytes());
        self.buf[l3 + 10..l3 + 12].fill(0);
        let ip_sum = checksum::of(&self.buf[l3..l3 + 20]);
        self.buf[l3 + 10..l3 + 12].copy_from_slice(&ip_sum.to_be_bytes());
        let ip = &self.buf[l3..l3 + 20];
        let src = core::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
        let dst = core::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
        let l4_len = (self.buf.len() - self.l4) as u16;
        let (protocol, gso_type, csum_offset) = if self.udp {
            // The super-datagram's own length; the kernel rewrites it (and
            // adjusts the partial sum) per datagram.
            self.buf[self.l4 + 4..self.l4 + 6].copy_from_slice(&l4_len.to_be_bytes());
            (17, GSO_UDP_L4, 6)
        } else {
            (6, GSO_TCPV4, 16)
        };
        // What a sender with checksum offload leaves in the field: the
        // pseudo-header sum, folded, not complemented.
        let partial = checksum::fold(checksum::pseudo_v4(src, dst, protocol, l4_len));
        let field = self.l4 + csum_offset;
        self.buf[field..field + 2].copy_from_slice(&partial.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: self.data as u16,
            gso_size: self.seg as u16,
            csum_start: self.l4 as u16,
            csum_offset: csum_offset as u16,
        };
        (hdr, &self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{IpRepr, L4Repr, PacketBuilder};
    use crate::ethernet::EthernetRepr;
    use crate::ipv4::Ipv4Repr;
    use crate::tcp::TcpRepr;
    use crate::udp::UdpRepr;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    /// An Ethernet frame from 10.0.1.10 to 10.0.2.10 carrying `l4`.
    fn frame(l4: L4Repr, payload: &[u8]) -> Vec<u8> {
        PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: "02:00:00:00:00:0b".parse().unwrap(),
                src: "02:00:00:00:00:0a".parse().unwrap(),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(
                Ipv4Addr::new(10, 0, 1, 10),
                Ipv4Addr::new(10, 0, 2, 10),
                0,
                0,
            )),
            l4,
        }
        .build(payload)
        .unwrap()
    }

    fn super_segment(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut tcp = TcpRepr::new(40000, 5201, flags);
        tcp.seq = 0xffff_ff00;
        frame(L4Repr::Tcp(tcp), payload)
    }

    #[test]
    fn refuses_gaps_other_flows_and_control_segments() {
        let mut out = Vec::new();
        let (stride, _) =
            segment_tcp4(&super_segment(&[7u8; 3000], 0x10), 0, 1000, &mut out).unwrap();
        let segs: Vec<&[u8]> = out.chunks(stride).collect();
        let mut c = Coalescer::new();
        assert!(c.push(segs[0]));
        assert!(!c.push(segs[2]), "a gap");
        assert!(!c.push(&super_segment(b"x", 0x02)), "a SYN");
        assert!(c.push(segs[1]));
        assert_eq!(c.len(), 2);
    }

    fn datagram(payload: &[u8], src_port: u16) -> Vec<u8> {
        let udp = UdpRepr {
            src_port,
            dst_port: 5201,
        };
        frame(L4Repr::Udp(udp), payload)
    }

    /// Cuts a UDP super-datagram as the instance's kernel does: one
    /// datagram per `gso_size` bytes, each with the headers, its own
    /// lengths and a completed checksum.
    fn cut_udp(hdr: &VnetHdr, frame: &[u8]) -> Vec<Vec<u8>> {
        let data = usize::from(hdr.hdr_len);
        let l4 = usize::from(hdr.csum_start);
        let ip = 14;
        let src = Ipv4Addr::new(
            frame[ip + 12],
            frame[ip + 13],
            frame[ip + 14],
            frame[ip + 15],
        );
        let dst = Ipv4Addr::new(
            frame[ip + 16],
            frame[ip + 17],
            frame[ip + 18],
            frame[ip + 19],
        );
        frame[data..]
            .chunks(usize::from(hdr.gso_size))
            .map(|chunk| {
                let mut d = frame[..data].to_vec();
                d.extend_from_slice(chunk);
                let udp_len = (d.len() - l4) as u16;
                let ip_len = (d.len() - ip) as u16;
                d[ip + 2..ip + 4].copy_from_slice(&ip_len.to_be_bytes());
                d[ip + 10..ip + 12].fill(0);
                let sum = checksum::of(&d[ip..l4]);
                d[ip + 10..ip + 12].copy_from_slice(&sum.to_be_bytes());
                d[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
                let partial = checksum::fold(checksum::pseudo_v4(src, dst, 17, udp_len));
                d[l4 + 6..l4 + 8].copy_from_slice(&partial.to_be_bytes());
                complete_checksum(&mut d, l4, 6).unwrap();
                d
            })
            .collect()
    }

    #[test]
    fn udp_datagrams_of_one_flow_and_size_coalesce() {
        let mut c = Coalescer::new();
        assert!(c.push(&datagram(&[1; 64], 40000)));
        assert!(!c.push(&datagram(&[2; 64], 40001)), "another flow");
        assert!(!c.push(&datagram(&[2; 65], 40000)), "a longer datagram");
        assert!(c.push(&datagram(&[2; 64], 40000)));
        assert!(
            c.push(&datagram(&[3; 10], 40000)),
            "a shorter one ends the run"
        );
        assert!(
            !c.push(&datagram(&[4; 64], 40000)),
            "nothing joins after it"
        );
        let tcp = super_segment(b"tcp", 0x10);
        assert!(!c.push(&tcp), "a TCP segment does not join datagrams");
        let (hdr, frame) = c.frame();
        assert_eq!(hdr.gso_type, GSO_UDP_L4);
        assert_eq!((hdr.gso_size, hdr.csum_start, hdr.csum_offset), (64, 34, 6));
        assert_eq!(frame.len(), 42 + 64 + 64 + 10);
        // Held TCP refuses datagrams too.
        assert!(c.push(&tcp));
        assert!(!c.push(&datagram(&[1; 64], 40000)));
    }

    #[test]
    fn a_udp_run_stops_at_the_kernels_segment_limit() {
        let mut c = Coalescer::new();
        let d = datagram(&[9; 16], 40000);
        for _ in 0..MAX_UDP_SEGMENTS {
            assert!(c.push(&d));
        }
        assert!(!c.push(&d));
        assert_eq!(c.len(), MAX_UDP_SEGMENTS);
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1398,
            csum_start: 34,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.bytes()).unwrap(), h);
        assert!(h.is_gso());
        assert!(!VnetHdr::default().is_gso());
    }

    #[test]
    fn completes_a_partial_checksum() {
        let mut frame = super_segment(b"partial checksum", 0x18);
        let good = frame.clone();
        // What a TAP with TUN_F_CSUM hands over: only the pseudo-header sum,
        // not complemented, in the field.
        let l4 = 14 + 20;
        let pseudo = checksum::fold(checksum::pseudo_v4(
            Ipv4Addr::new(10, 0, 1, 10),
            Ipv4Addr::new(10, 0, 2, 10),
            6,
            (frame.len() - l4) as u16,
        ));
        frame[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        complete_checksum(&mut frame, l4, 16).unwrap();
        assert_eq!(frame, good);
        assert!(complete_checksum(&mut frame, l4, 1000).is_err());
    }

    proptest! {
        /// Segments cut from a super-segment coalesce back into it: same
        /// payload, one frame, a GSO header naming the segment size, and a
        /// checksum that completes to a valid one.
        #[test]
        fn segments_coalesce_back(
            payload in prop::collection::vec(any::<u8>(), 1..6000),
            mss in 200usize..1500,
        ) {
            let frame = super_segment(&payload, 0x18);
            let mut out = Vec::new();
            let (stride, count) = segment_tcp4(&frame, 0, mss, &mut out).unwrap();
            let mut c = Coalescer::new();
            for seg in out.chunks(stride) {
                prop_assert!(c.push(seg));
            }
            prop_assert_eq!(c.len(), count);
            // Nothing joins after the PSH of the last segment.
            prop_assert!(!c.push(out.chunks(stride).next().unwrap()));
            let (hdr, merged) = c.frame();
            let mut merged = merged.to_vec();
            prop_assert_eq!(&merged[54..], &payload[..]);
            prop_assert!(checksum::verifies(checksum::add(0, &merged[14..34])));
            if count > 1 {
                prop_assert_eq!(hdr.gso_type, GSO_TCPV4);
                prop_assert_eq!(usize::from(hdr.gso_size), mss);
                complete_checksum(&mut merged, 34, 16).unwrap();
            }
            prop_assert_eq!(merged, frame);
            prop_assert!(c.is_empty());
        }

        /// Datagrams of one flow coalesce into a super-datagram that,
        /// cut as the kernel cuts it, gives back each datagram exactly.
        #[test]
        fn udp_datagrams_coalesce_back(
            size in 1usize..1400,
            count in 1usize..80,
            last in 1usize..1400,
        ) {
            let last = last.min(size);
            let datagrams: Vec<Vec<u8>> = (0..count)
                .map(|k| {
                    let len = if k + 1 == count { last } else { size };
                    datagram(&vec![k as u8; len], 40000)
                })
                .collect();
            let mut c = Coalescer::new();
            let mut taken = 0;
            for d in &datagrams {
                if !c.push(d) {
                    break;
                }
                taken += 1;
            }
            prop_assert!(taken >= 1);
            prop_assert!(taken == count || taken == MAX_UDP_SEGMENTS
                || (taken + 1) * size + 42 > 14 + MAX_IP_LEN);
            let (hdr, frame) = c.frame();
            if taken == 1 {
                prop_assert!(!hdr.is_gso());
                prop_assert_eq!(frame, &datagrams[0][..]);
            } else {
                prop_assert_eq!(hdr.gso_type, GSO_UDP_L4);
                prop_assert_eq!(cut_udp(&hdr, frame), datagrams[..taken].to_vec());
            }
        }

        /// The segments carry the payload in order, each within the MSS,
        /// with valid IPv4 and TCP checksums and consecutive sequence numbers.
        #[test]
        fn segments_reassemble_with_valid_checksums(
            payload in prop::collection::vec(any::<u8>(), 0..6000),
            mss in 1usize..1500,
            prefix in 0usize..16,
            fin in any::<bool>(),
        ) {
            let flags = 0x10 | 0x08 | if fin { 0x01 } else { 0 };
            let frame = super_segment(&payload, flags);
            let mut pkt = vec![0xab; prefix];
            pkt.extend_from_slice(&frame);
            let mut out = Vec::new();
            let (stride, count) = segment_tcp4(&pkt, prefix, mss, &mut out).unwrap();
            prop_assert_eq!(count, payload.len().div_ceil(mss).max(1));
            let hdrs = prefix + 14 + 20 + 20;
            let mut got = Vec::new();
            for (k, seg) in out.chunks(stride).enumerate() {
                if k + 1 < count {
                    prop_assert_eq!(seg.len(), stride);
                }
                prop_assert_eq!(&seg[..prefix], &pkt[..prefix]);
                let ip = &seg[prefix + 14..prefix + 34];
                prop_assert!(checksum::verifies(checksum::add(0, ip)));
                prop_assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), seg.len() - prefix - 14);
                let tcp = &seg[prefix + 34..];
                let pseudo = checksum::pseudo_v4(
                    Ipv4Addr::new(10, 0, 1, 10),
                    Ipv4Addr::new(10, 0, 2, 10),
                    6,
                    tcp.len() as u16,
                );
                prop_assert!(checksum::verifies(checksum::add(pseudo, tcp)));
                let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
                prop_assert_eq!(seq, 0xffff_ff00u32.wrapping_add((k * mss) as u32));
                let last = k + 1 == count;
                prop_assert_eq!(tcp[13] & TCP_FIN != 0, fin && last);
                prop_assert_eq!(tcp[13] & TCP_PSH != 0, last);
                prop_assert!(seg.len() - hdrs <= mss);
                got.extend_from_slice(&seg[hdrs..]);
            }
            prop_assert_eq!(got, payload);
        }
    }
}
