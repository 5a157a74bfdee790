//! Explains a frame header by header, in words, unwrapping Geneve and VXLAN
//! down to the innermost frame: what `openvpc decode HEX` prints. It owns the
//! wording only; every field is read through this crate's reprs and views,
//! and a header that does not parse is reported as `malformed: …` in place,
//! never as a panic or an error, so a truncated capture still explains the
//! headers it has.

use crate::ethernet::{EthernetRepr, ethertype};
use crate::ip::protocol;
use crate::ipv4::Ipv4Repr;
use crate::ipv6::Ipv6Header;
use crate::tcp::TcpRepr;
use crate::udp::UdpRepr;
use crate::{arp, geneve, icmp, vxlan};

/// One line per header, starting at the Ethernet header of `frame`; each
/// encapsulated header is indented two spaces more than the one carrying it.
pub fn explain(frame: &[u8]) -> String {
    let mut out = String::new();
    explain_ethernet(frame, 0, &mut out);
    out
}

fn line(out: &mut String, depth: usize, text: impl AsRef<str>) {
    out.push_str(&"  ".repeat(depth));
    out.push_str(text.as_ref());
    out.push('\n');
}

fn explain_ethernet(frame: &[u8], depth: usize, out: &mut String) {
    let (eth, payload) = match EthernetRepr::parse(frame) {
        Ok(v) => v,
        Err(e) => return line(out, depth, format!("malformed: {e}")),
    };
    let vlan = eth
        .vlan
        .map(|t| format!(" vlan {}", t.vid))
        .unwrap_or_default();
    line(
        out,
        depth,
        format!(
            "Ethernet {} -> {}{vlan} type {:#06x}",
            eth.src, eth.dst, eth.ethertype
        ),
    );
    match eth.ethertype {
        ethertype::IPV4 => explain_ipv4(payload, depth + 1, out),
        ethertype::IPV6 => explain_ipv6(payload, depth + 1, out),
        ethertype::ARP => match arp::ArpRepr::parse(payload) {
            Ok(a) => line(
                out,
                depth + 1,
                format!(
                    "ARP {:?} {} ({}) asks for {}",
                    a.op, a.sender_ip, a.sender_mac, a.target_ip
                ),
            ),
            Err(e) => line(out, depth + 1, format!("malformed: {e}")),
        },
        other => line(
            out,
            depth + 1,
            format!("payload of type {other:#06x}, {} bytes", payload.len()),
        ),
    }
}

fn explain_ipv4(packet: &[u8], depth: usize, out: &mut String) {
    match Ipv4Repr::parse(packet) {
        Ok((ip, l4)) => {
            let frag = if ip.is_fragment() { " fragment" } else { "" };
            line(
                out,
                depth,
                format!(
                    "IPv4 {} -> {} proto {} ttl {}{frag}",
                    ip.src, ip.dst, ip.protocol, ip.ttl
                ),
            );
            if !ip.is_fragment() || ip.frag.offset == 0 {
                explain_l4(ip.protocol, l4, depth + 1, out);
            }
        }
        Err(e) => line(out, depth, format!("malformed: {e}")),
    }
}

fn explain_ipv6(packet: &[u8], depth: usize, out: &mut String) {
    match Ipv6Header::view(packet) {
        Ok(ip) => {
            line(
                out,
                depth,
                format!(
                    "IPv6 {} -> {} next {} hop limit {}",
                    ip.header.src(),
                    ip.header.dst(),
                    ip.l4_protocol,
                    ip.header.hop_limit
                ),
            );
            if !ip.is_later_fragment() {
                explain_l4(ip.l4_protocol, ip.l4, depth + 1, out);
            }
        }
        Err(e) => line(out, depth, format!("malformed: {e}")),
    }
}

fn explain_l4(proto: u8, l4: &[u8], depth: usize, out: &mut String) {
    match proto {
        protocol::TCP => match TcpRepr::parse(l4) {
            Ok((t, payload)) => line(
                out,
                depth,
                format!(
                    "TCP {} -> {} flags {:#04x} seq {} ack {}, {} bytes",
                    t.src_port,
                    t.dst_port,
                    t.flags,
                    t.seq,
                    t.ack,
                    payload.len()
                ),
            ),
            Err(e) => line(out, depth, format!("malformed: {e}")),
        },
        protocol::UDP => match UdpRepr::parse(l4) {
            Ok((u, payload)) => {
                line(
                    out,
                    depth,
                    format!(
                        "UDP {} -> {}, {} bytes",
                        u.src_port,
                        u.dst_port,
                        payload.len()
                    ),
                );
                explain_tunnel(u.dst_port, payload, depth + 1, out);
            }
            Err(e) => line(out, depth, format!("malformed: {e}")),
        },
        protocol::ICMP | protocol::ICMPV6 => {
            match icmp::IcmpRepr::parse(l4, crate::Layer::Icmpv4) {
                Ok((i, _)) => line(
                    out,
                    depth,
                    format!(
                        "ICMP type {} code {} id {}",
                        i.icmp_type,
                        i.code,
                        i.echo_id()
                    ),
                ),
                Err(e) => line(out, depth, format!("malformed: {e}")),
            }
        }
        other => line(out, depth, format!("protocol {other}, {} bytes", l4.len())),
    }
}

fn explain_tunnel(port: u16, payload: &[u8], depth: usize, out: &mut String) {
    match port {
        geneve::PORT => match geneve::GeneveHeader::view(payload) {
            Ok(g) => {
                let options = g.options().count();
                line(
                    out,
                    depth,
                    format!(
                        "Geneve vni {} options {} critical {} oam {}",
                        g.header.vni(),
                        options,
                        g.header.critical(),
                        g.header.oam()
                    ),
                );
                explain_ethernet(g.payload, depth + 1, out);
            }
            Err(e) => line(out, depth, format!("malformed: {e}")),
        },
        vxlan::PORT => match vxlan::VxlanHeader::view(payload) {
            Ok((v, inner)) => {
                line(out, depth, format!("VXLAN vni {}", v.vni()));
                explain_ethernet(inner, depth + 1, out);
            }
            Err(e) => line(out, depth, format!("malformed: {e}")),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample;

    #[test]
    fn explains_geneve_down_to_tcp() {
        let inner = sample::tcp_frame(64).unwrap();
        let frame = sample::geneve_frame(77, &inner).unwrap();
        let mut out = String::new();
        explain_ethernet(&frame, 0, &mut out);
        assert!(out.contains("Geneve vni 77"), "{out}");
        assert!(out.contains("IPv4 10.0.1.10 -> 10.0.2.20 proto 6"), "{out}");
        assert!(out.contains("TCP 40000 -> 80"), "{out}");
    }

    #[test]
    fn truncated_input_is_explained_not_fatal() {
        let inner = sample::tcp_frame(64).unwrap();
        let frame = sample::geneve_frame(77, &inner).unwrap();
        let mut out = String::new();
        explain_ethernet(&frame[..60], 0, &mut out);
        assert!(out.contains("malformed"), "{out}");
    }
}
