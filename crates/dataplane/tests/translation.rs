//! Translated flows (issue 14's rewrite actions): a port with a NAT layer
//! rewrites a flow's packets, the reply finds the flow under its own,
//! translated key, is translated back, and the transforms are handles that
//! go back when the flow goes. The layer here is a test SNAT; the NAT
//! gateway's and the edge's layers are built on the same actions.

#![allow(clippy::unwrap_used)]

mod common;

use core::net::{IpAddr, Ipv4Addr};

use common::*;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::eni::EniConfig;
use openvpc_dataplane::layer::{
    Action, Decision, FlowState, Gateway, INGRESS, Layer, LayerKind, NetworkAcl as AclLayer,
    PacketMeta, PortLayers, Rewrite, Routing, RuleRef, SecurityGroups,
};
use openvpc_dataplane::policy::{NetworkAcl, Way};
use openvpc_dataplane::router::RouterConfig;
use openvpc_model::rule::TrafficMatch;
use openvpc_packet::flow::parse_ethernet;
use openvpc_packet::tcp::flags;

const VPC: &str = "10.0.0.0/16";
const VNI: u32 = 100;
const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 77);

/// Source NAT out of the port: 10.0.1.10:p leaves as 10.0.1.77:(p + 1000).
#[derive(Debug)]
struct Snat;

impl Layer for Snat {
    fn kind(&self) -> LayerKind {
        LayerKind::Nat
    }

    fn decide<'a>(
        &self,
        _: &'a EniConfig,
        way: Way,
        packet: &PacketMeta<'_>,
        _: FlowState,
    ) -> Decision<'a> {
        let action = if way == Way::Egress && packet.key.src_ip() == IpAddr::V4(INSIDE) {
            Action::Rewrite(Rewrite {
                src: Some((IpAddr::V4(OUTSIDE), packet.key.src_port + 1000)),
                dst: None,
            })
        } else {
            Action::Allow
        };
        Decision {
            action,
            rule: RuleRef::Translation,
        }
    }
}

static SNAT_EGRESS: &[&dyn Layer] = &[&Gateway, &SecurityGroups, &AclLayer, &Snat, &Routing];

/// `a` (owning both the inside and the outside address) on host 0 with the
/// SNAT layer, its router configured by `tune`; `b` on host 1. Both groups
/// admit everything.
fn region_with(name: &'static str, tune: impl FnOnce(&mut RouterConfig)) -> TestFabric {
    let mut f = TestFabric::new(name);
    f.add_host_with(tune);
    f.add_host();
    let table = routes(VPC, vec![]);
    let sa = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl"),
        table.clone(),
    );
    let sb = subnet(
        "subnet-b",
        "10.0.2.0/24",
        NetworkAcl::allow_all("acl"),
        table,
    );
    let open = || group("sg-open", vec![allow(TrafficMatch::ALL, "0.0.0.0/0")]);
    let mut a = eni("eni-a", 1, "10.0.1.10", &sa, VNI, VPC, vec![open()]);
    a.ipv4.push(OUTSIDE);
    f.add_eni(0, a).unwrap();
    f.add_eni(1, eni("eni-b", 2, "10.0.2.20", &sb, VNI, VPC, vec![open()]))
        .unwrap();
    assert!(f.set_layers(
        "eni-a",
        PortLayers {
            egress: SNAT_EGRESS,
            ingress: INGRESS,
        }
    ));
    f
}

fn region(name: &'static str) -> TestFabric {
    region_with(name, |_| {})
}

fn tuple(frame: &[u8]) -> (IpAddr, u16, IpAddr, u16) {
    let k = parse_ethernet(frame).unwrap().key;
    (k.src_ip(), k.src_port, k.dst_ip(), k.dst_port)
}

#[test]
fn a_translated_reply_finds_its_flow() {
    let mut f = region("translated_reply");
    let out = f.send("eni-a", &syn(1, "10.0.1.10", 4000, "10.0.2.20", 80));
    let seen = out.delivered_to("eni-b").expect("the SYN arrives");
    assert_eq!(
        tuple(seen),
        (IpAddr::V4(OUTSIDE), 5000, addr("10.0.2.20"), 80),
        "b sees the translated source"
    );
    // The reply is addressed to the translated tuple and arrives untranslated.
    let back = f.send(
        "eni-b",
        &tcp(
            2,
            "10.0.2.20",
            80,
            "10.0.1.77",
            5000,
            flags::SYN | flags::ACK,
        ),
    );
    let seen = back.delivered_to("eni-a").expect("the SYN-ACK arrives");
    assert_eq!(
        tuple(seen),
        (addr("10.0.2.20"), 80, IpAddr::V4(INSIDE), 4000),
        "a sees its own tuple"
    );
    // Both directions now run from the entry, without the layers.
    let a = f.router("eni-a").unwrap();
    let slow = a.stats().slow_path;
    assert_eq!(a.transform_count(), 2, "one transform per direction");
    let out = f.send(
        "eni-a",
        &tcp(1, "10.0.1.10", 4000, "10.0.2.20", 80, flags::ACK),
    );
    assert_eq!(
        out.delivered_to("eni-b").map(tuple),
        Some((IpAddr::V4(OUTSIDE), 5000, addr("10.0.2.20"), 80))
    );
    let back = f.send(
        "eni-b",
        &tcp(2, "10.0.2.20", 80, "10.0.1.77", 5000, flags::ACK),
    );
    assert_eq!(
        back.delivered_to("eni-a").map(tuple),
        Some((addr("10.0.2.20"), 80, IpAddr::V4(INSIDE), 4000))
    );
    assert_eq!(f.router("eni-a").unwrap().stats().slow_path, slow);
}

// Finite resources are handles the entry owns: when the flow goes, its
// transforms and its reply key go with it.
#[test]
fn transforms_go_back_with_their_flow() {
    let mut f = region("transforms_go_back");
    for port in [4000, 4001, 4002] {
        let out = f.send("eni-a", &udp(1, "10.0.1.10", port, "10.0.2.20", 53));
        assert!(out.delivered_to("eni-b").is_some());
    }
    let a = f.router("eni-a").unwrap();
    assert_eq!(a.transform_count(), 3);
    // Three flows and the three replies' keys.
    assert_eq!(a.flow_count(), 6);
    f.advance(10 * 60 * 1000);
    let now = f.now_ms();
    let removed = f.fabric.routers[0].expire(now);
    assert_eq!(removed, 3, "the flows expire; their aliases go with them");
    let a = f.router("eni-a").unwrap();
    assert_eq!((a.transform_count(), a.flow_count()), (0, 0));
    // A reply to a translation that no longer exists is not let through as
    // a translated reply: it is a new flow to the outside address itself.
    let late = f.send("eni-b", &udp(2, "10.0.2.20", 53, "10.0.1.77", 5000));
    assert_eq!(
        late.delivered_to("eni-a").map(tuple),
        Some((addr("10.0.2.20"), 53, IpAddr::V4(OUTSIDE), 5000))
    );
}

// A full transform table is a counted drop, never a crash.
#[test]
fn a_full_transform_table_is_a_counted_drop() {
    let mut f = region_with("transform_table_full", |c| c.transform_capacity = 2);
    for port in [4000, 4001] {
        assert!(
            f.send("eni-a", &udp(1, "10.0.1.10", port, "10.0.2.20", 53))
                .delivered_to("eni-b")
                .is_some()
        );
    }
    let d = f.send("eni-a", &udp(1, "10.0.1.10", 4002, "10.0.2.20", 53));
    assert_eq!(d.drop_reason(), Some(DropReason::TransformTableFull));
    assert_eq!(
        f.router("eni-a")
            .unwrap()
            .drops()
            .get(DropReason::TransformTableFull),
        1
    );
}
