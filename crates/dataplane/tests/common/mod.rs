//! Builders for dataplane tests: VPCs, subnets, ENIs and frames, and a guard
//! that writes the fabric's pcap when a test fails.

#![allow(dead_code, clippy::unwrap_used)]

use core::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use openvpc_dataplane::conntrack::Timeouts;
use openvpc_dataplane::eni::{EniConfig, SubnetConfig};
use openvpc_dataplane::fabric::Fabric;
use openvpc_dataplane::policy::{NaclEntry, NetworkAcl, SecurityGroup, SgRule};
use openvpc_dataplane::route::{Route, RouteTable, RouteTarget};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::icmp::IcmpRepr;
use openvpc_packet::ipv4::Ipv4Repr;

pub mod resolver;
use openvpc_packet::tcp::{TcpRepr, flags};
use openvpc_packet::udp::UdpRepr;

pub const ROUTER_MAC: MacAddr = MacAddr([0x02, 0x6f, 0x76, 0x70, 0x63, 0x01]);

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A route table with the VPC's local route plus `extra`.
pub fn routes(vpc: &str, extra: Vec<Route>) -> Arc<RouteTable> {
    let mut all = vec![Route {
        destination: net(vpc),
        target: RouteTarget::Local,
    }];
    all.extend(extra);
    Arc::new(RouteTable::new("rtb-test", all))
}

pub fn subnet(id: &str, cidr: &str, acl: NetworkAcl, table: Arc<RouteTable>) -> Arc<SubnetConfig> {
    let cidr: Ipv4Net = cidr.parse().unwrap();
    Arc::new(SubnetConfig {
        id: id.into(),
        cidr,
        ipv6_cidr: None,
        network_acl: Arc::new(acl),
        route_table: table,
    })
}

/// A group allowing everything out and `ingress` in: what a user typically builds.
pub fn group(id: &str, ingress: Vec<SgRule>) -> Arc<SecurityGroup> {
    Arc::new(SecurityGroup {
        id: id.into(),
        ingress,
        egress: vec![SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")])],
    })
}

pub fn allow(traffic: TrafficMatch, from: &str) -> SgRule {
    SgRule::new(traffic, [net(from)])
}

pub fn nacl_rule(n: u16, traffic: TrafficMatch, cidr: &str, action: RuleAction) -> NaclEntry {
    NaclEntry {
        rule_number: n,
        traffic,
        cidr: net(cidr),
        action,
    }
}

pub fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

pub fn eni(
    id: &str,
    n: u8,
    addr: &str,
    subnet: &Arc<SubnetConfig>,
    vni: u32,
    vpc: &str,
    groups: Vec<Arc<SecurityGroup>>,
) -> EniConfig {
    EniConfig {
        id: id.into(),
        mac: mac(n),
        ipv4: vec![ip(addr)],
        ipv6: vec![],
        subnet: subnet.clone(),
        vni,
        vpc_cidr: vpc.parse().unwrap(),
        security_groups: groups,
        source_dest_check: true,
        timeouts: Timeouts::default(),
        domain_name: None,
        public_ipv4: vec![],
        dns: None,
        dns_servers: None,
        flow_logged: true,
    }
}

fn frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &str,
    dst: &str,
    l4: L4Repr,
    payload: &[u8],
) -> Vec<u8> {
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: dst_mac,
            src: src_mac,
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(ip(src), ip(dst), 0, 0)),
        l4,
    }
    .build(payload)
    .unwrap()
}

/// A TCP segment from an instance (MAC `n`) to the router.
pub fn tcp(n: u8, src: &str, sport: u16, dst: &str, dport: u16, tcp_flags: u8) -> Vec<u8> {
    let mut t = TcpRepr::new(sport, dport, tcp_flags);
    t.seq = 1000;
    frame(mac(n), ROUTER_MAC, src, dst, L4Repr::Tcp(t), b"")
}

pub fn syn(n: u8, src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    tcp(n, src, sport, dst, dport, flags::SYN)
}

pub fn udp(n: u8, src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    frame(
        mac(n),
        ROUTER_MAC,
        src,
        dst,
        L4Repr::Udp(UdpRepr {
            src_port: sport,
            dst_port: dport,
        }),
        b"hello",
    )
}

pub fn ping(n: u8, src: &str, dst: &str, icmp_type: u8, id: u16) -> Vec<u8> {
    frame(
        mac(n),
        ROUTER_MAC,
        src,
        dst,
        L4Repr::Icmpv4(IcmpRepr::echo(icmp_type, id, 1)),
        b"ping",
    )
}

/// A fabric that writes its capture to `<target tmp>/fabric-failures/NAME.pcap`
/// (and prints its state) if the test fails while it is alive.
pub struct TestFabric {
    pub name: &'static str,
    pub fabric: Fabric,
}

impl TestFabric {
    pub fn new(name: &'static str) -> Self {
        TestFabric {
            name,
            fabric: Fabric::new(),
        }
    }
}

impl std::ops::Deref for TestFabric {
    type Target = Fabric;
    fn deref(&self) -> &Fabric {
        &self.fabric
    }
}

impl std::ops::DerefMut for TestFabric {
    fn deref_mut(&mut self) -> &mut Fabric {
        &mut self.fabric
    }
}

impl Drop for TestFabric {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("fabric-failures");
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!("{}.pcap", self.name));
            if std::fs::write(&path, self.fabric.pcap()).is_ok() {
                eprintln!("capture of the failing test: {}", path.display());
            }
            eprintln!("fabric state: {:#?}", self.fabric);
        }
    }
}

pub fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}
