//! The resolver's test bench, shared by `tests/resolver.rs` and
//! `benches/resolver.rs`: an ENI whose group and ACL deny everything, a
//! VPC's resolver configuration, and DNS queries as instance frames.

use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use openvpc_dataplane::eni::EniConfig;
use openvpc_dataplane::mapping::StaticMapping;
use openvpc_dataplane::policy::{NetworkAcl, SecurityGroup};
use openvpc_dataplane::router::{Router, RouterConfig};
use openvpc_dns::VpcDns;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use super::*;

pub const VNI: u32 = 77;
pub const CLIENT: &str = "10.0.1.5";

/// A group with no rule at all and an ACL with only its final deny: every
/// packet through the layers is dropped.
pub fn deny_all_eni(dns: Option<VpcDns>) -> EniConfig {
    let acl = NetworkAcl::new("acl-deny", vec![], vec![]);
    let sn = subnet(
        "subnet-1",
        "10.0.1.0/24",
        acl,
        routes("10.0.0.0/16", vec![]),
    );
    let sg = Arc::new(SecurityGroup {
        id: "sg-deny".into(),
        ingress: vec![],
        egress: vec![],
    });
    let mut cfg = eni("eni-1", 5, CLIENT, &sn, VNI, "10.0.0.0/16", vec![sg]);
    cfg.dns = dns.map(Arc::new);
    cfg
}

pub fn vpc_dns() -> VpcDns {
    let mut d = VpcDns::new("us-east-1").unwrap();
    d.enable_dns_hostnames = true;
    d.set_address(ip(CLIENT), Some(ip("203.0.113.5")));
    d.set_address(ip("10.0.1.6"), None);
    d
}

pub fn router(cfg: EniConfig) -> Router<StaticMapping> {
    let mut r = Router::new(
        RouterConfig::new("192.0.2.1".parse().unwrap()),
        StaticMapping::default(),
    );
    r.upsert_eni(cfg).unwrap();
    r
}

pub fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

/// A UDP query from the instance to `server`:`port`.
pub fn query_frame(server: &str, port: u16, id: u16, name: &str) -> Vec<u8> {
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: ROUTER_MAC,
            src: mac(5),
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(ip(CLIENT), ip(server), 0, 0)),
        l4: L4Repr::Udp(UdpRepr {
            src_port: 40000,
            dst_port: port,
        }),
    }
    .build(&query_bytes(id, name))
    .unwrap()
}
