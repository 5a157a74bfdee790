//! Ready-made frames for benchmarks, demos and tests in other crates: a
//! Geneve-encapsulated TCP segment as one host sends it to another.

use core::net::Ipv4Addr;

use crate::builder::{IpRepr, L4Repr, PacketBuilder};
use crate::ethernet::EthernetRepr;
use crate::geneve::{self, GeneveRepr};
use crate::ipv4::Ipv4Repr;
use crate::tcp::{TcpRepr, flags};
use crate::udp::UdpRepr;
use crate::{Error, MacAddr};

/// An instance-to-instance TCP frame (10.0.1.10:40000 → 10.0.2.20:80) whose
/// frame is `inner_len` bytes long (at least 54).
pub fn tcp_frame(inner_len: usize) -> Result<Vec<u8>, Error> {
    let payload = vec![0x5a; inner_len.saturating_sub(54)];
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
            src: MacAddr([0x02, 0, 0, 0, 0x10, 0x0a]),
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(
            Ipv4Addr::new(10, 0, 1, 10),
            Ipv4Addr::new(10, 0, 2, 20),
            0,
            0,
        )),
        l4: L4Repr::Tcp(TcpRepr::new(40000, 80, flags::ACK | flags::PSH)),
    }
    .build(&payload)
}

/// `inner` wrapped in Geneve (VNI `vni`) over IPv4/UDP between two underlay hosts.
pub fn geneve_frame(vni: u32, inner: &[u8]) -> Result<Vec<u8>, Error> {
    let header = GeneveRepr::ethernet(vni);
    let mut payload = vec![0u8; header.header_len()];
    header.emit(&mut payload)?;
    payload.extend_from_slice(inner);
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: MacAddr([0x02, 0xfe, 0, 0, 0, 0x02]),
            src: MacAddr([0x02, 0xfe, 0, 0, 0, 0x01]),
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            0,
            0,
        )),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 50123,
            dst_port: geneve::PORT,
        }),
    }
    .build(&payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_frames_decode() {
        let inner = tcp_frame(64).unwrap();
        assert_eq!(inner.len(), 64);
        let outer = geneve_frame(42, &inner).unwrap();
        let d = geneve::decap(&outer).unwrap();
        assert_eq!(d.vni(), 42);
        assert_eq!(d.inner(), &inner[..]);
        let flow = crate::flow::parse_ethernet(d.inner()).unwrap();
        assert_eq!(flow.key.dst_port, 80);
    }
}
