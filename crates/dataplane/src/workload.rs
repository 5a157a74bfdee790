//! Standard workloads for measuring the router: a host with one busy ENI whose
//! policy has 100 security-group rules, 20 network-ACL rules and 1,000
//! routes, talking to instances on other hosts. Deterministic and clock-free:
//! `cargo bench` and `openvpc bench dataplane` time it; this module only
//! builds it.

use core::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};

use crate::buf::PacketBuf;
use crate::conntrack::Timeouts;
use crate::eni::{EniConfig, SubnetConfig};
use crate::mapping::{Lookup, Mapping, MappingEntry};
use crate::policy::{NaclEntry, NetworkAcl, SecurityGroup, SgRule};
use crate::route::{GatewayKind, Route, RouteTable, RouteTarget};
use crate::router::{EniIndex, Output, Router, RouterConfig};

/// Every address in 10.0.0.0/8 lives on the remote host 192.0.2.2, with a
/// MAC derived from the address: a mapping that costs nothing to consult,
/// so the figures measure the router.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntheticMapping;

impl Mapping for SyntheticMapping {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        self.peek(vni, addr)
    }

    fn peek(&self, _vni: u32, addr: IpAddr) -> Lookup {
        match addr {
            IpAddr::V4(a) if a.octets()[0] == 10 => {
                let o = a.octets();
                Lookup::Found(MappingEntry {
                    underlay: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
                    eni: Arc::from("eni-remote"),
                    mac: MacAddr([0x02, 0x01, o[0], o[1], o[2], o[3]]),
                })
            }
            _ => Lookup::Absent,
        }
    }
}

/// The measured host: one router, one source ENI, and the frames of its flows.
#[derive(Debug)]
pub struct Workload {
    pub router: Router<SyntheticMapping>,
    pub eni: EniIndex,
    /// One 64-byte TCP frame per flow, each to a different destination.
    pub frames: Vec<Vec<u8>>,
}

const SOURCE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 10);
const SOURCE_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);

/// Flows go to this many instances, several flows each, as a busy client's
/// connections would.
pub const DESTINATIONS: usize = 4096;

/// The destination of flow `i`: one of [`DESTINATIONS`] instances in
/// 10.1.0.0/16, outside the source's subnet so every flow is routed and
/// crosses the ACL.
pub fn destination(i: usize) -> Ipv4Addr {
    let d = (i % DESTINATIONS) as u32;
    Ipv4Addr::new(10, 1, (d >> 8) as u8, d as u8)
}

/// TCP flags of a connection's first packet.
pub const SYN: u8 = flags::SYN;

/// A 64-byte TCP frame of flow `i`, from the source ENI; flows to the same
/// destination differ in source port.
pub fn frame(i: usize, tcp_flags: u8) -> Vec<u8> {
    let sport = 1024 + (i / DESTINATIONS) as u16;
    let t = TcpRepr::new(sport, 443, tcp_flags);
    PacketBuilder {
        ethernet: Some(EthernetRepr {
            dst: MacAddr([0x02, 0x6f, 0x76, 0x70, 0x63, 0x01]),
            src: SOURCE_MAC,
            vlan: None,
            ethertype: 0,
        }),
        ip: IpRepr::V4(Ipv4Repr::new(SOURCE, destination(i), 0, 0)),
        l4: L4Repr::Tcp(t),
    }
    .build(&[0u8; 10])
    .unwrap_or_default()
}

/// The policy of the measured ENI: the rule that admits the traffic comes
/// last, so every new flow walks all 100 security-group rules and 20 ACL
/// rules, and the route table holds 1,000 routes.
fn policy() -> (Arc<SecurityGroup>, Arc<NetworkAcl>, Arc<RouteTable>) {
    let mut egress: Vec<SgRule> = (0..99u32)
        .map(|i| {
            SgRule::new(
                TrafficMatch::tcp(1000 + i as u16, 1000 + i as u16),
                [IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::from_bits(0xc633_6400 + i), 32).unwrap_or_default(),
                )],
            )
        })
        .collect();
    egress.push(SgRule::new(
        TrafficMatch::tcp(443, 443),
        [IpNet::V4(
            Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap_or_default(),
        )],
    ));
    let sg = Arc::new(SecurityGroup {
        id: "sg-bench".into(),
        ingress: vec![],
        egress,
    });
    let nacl_rules = |n: u16| -> Vec<NaclEntry> {
        let mut rules: Vec<NaclEntry> = (0..n - 1)
            .map(|i| NaclEntry {
                rule_number: 10 + i,
                traffic: TrafficMatch::tcp(2000 + i, 2000 + i),
                cidr: IpNet::V4(
                    Ipv4Net::new(Ipv4Addr::new(192, 168, i as u8, 0), 24).unwrap_or_default(),
                ),
                action: RuleAction::Deny,
            })
            .collect();
        rules.push(NaclEntry {
            rule_number: 1000,
            traffic: TrafficMatch::ALL,
            cidr: IpNet::V4(Ipv4Net::default()),
            action: RuleAction::Allow,
        });
        rules
    };
    let acl = Arc::new(NetworkAcl::new("acl-bench", nacl_rules(20), nacl_rules(20)));
    let mut routes: Vec<Route> = (0..998u32)
        .map(|i| Route {
            destination: IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from_bits(0xac10_0000 + (i << 8)), 24).unwrap_or_default(),
            ),
            target: RouteTarget::Blackhole,
        })
        .collect();
    routes.push(Route {
        destination: IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap_or_default()),
        target: RouteTarget::Local,
    });
    routes.push(Route {
        destination: IpNet::V4(Ipv4Net::default()),
        // An internet gateway's pick cannot fail (no Maglev table).
        target: RouteTarget::gateway(
            GatewayKind::Internet,
            "igw-bench",
            vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254))],
        )
        .unwrap_or(RouteTarget::Blackhole),
    });
    (sg, acl, Arc::new(RouteTable::new("rtb-bench", routes)))
}

impl Workload {
    /// A router sized for `flows` flows, with frames for each; no flow is
    /// established yet. A flow log covers the ENI, so every packet is
    /// counted for it (the costlier case).
    pub fn new(flows: usize) -> Self {
        Self::with_flow_logs(flows, true)
    }

    /// [`Workload::new`], with or without a flow log on the ENI.
    pub fn with_flow_logs(flows: usize, flow_logged: bool) -> Self {
        let mut cfg = RouterConfig::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        cfg.flow_capacity = flows.max(16);
        let mut router = Router::new(cfg, SyntheticMapping);
        let (sg, acl, table) = policy();
        let subnet = Arc::new(SubnetConfig {
            id: "subnet-bench".into(),
            cidr: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 24).unwrap_or_default(),
            ipv6_cidr: None,
            network_acl: acl,
            route_table: table,
        });
        let eni = router
            .upsert_eni(EniConfig {
                id: "eni-bench".into(),
                mac: SOURCE_MAC,
                ipv4: vec![SOURCE],
                ipv6: vec![],
                subnet,
                vni: 4242,
                vpc_cidr: Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).unwrap_or_default(),
                security_groups: vec![sg],
                source_dest_check: true,
                timeouts: Timeouts::default(),
                domain_name: None,
                public_ipv4: vec![],
                dns: None,
                dns_servers: None,
                flow_logged,
            })
            .unwrap_or_default();
        let frames = (0..flows).map(|i| frame(i, flags::ACK)).collect();
        Workload {
            router,
            eni,
            frames,
        }
    }

    /// Sends every flow's first packet (the slow path); returns how many were
    /// encapsulated.
    pub fn establish(&mut self, now: u64) -> usize {
        let mut buf = PacketBuf::default();
        let mut ok = 0;
        for f in &self.frames {
            buf.set(f);
            if matches!(
                self.router.from_instance(self.eni, &mut buf, now),
                Output::Underlay { .. }
            ) {
                ok += 1;
            }
        }
        ok
    }

    /// Sends the frames of flows `first..first + bufs.len()` (wrapping) as
    /// one batch.
    #[inline]
    pub fn send_batch(
        &mut self,
        first: usize,
        bufs: &mut [PacketBuf],
        outs: &mut [Output],
        now: u64,
    ) {
        let n = self.frames.len();
        for (k, buf) in bufs.iter_mut().enumerate() {
            buf.set(&self.frames[(first + k) % n]);
        }
        self.router.from_instance_batch(self.eni, bufs, outs, now);
    }

    /// Sends flow `i`'s frame through the router using `buf`.
    #[inline]
    pub fn send(&mut self, i: usize, buf: &mut PacketBuf, now: u64) -> Output {
        buf.set(&self.frames[i]);
        self.router.from_instance(self.eni, buf, now)
    }
}
