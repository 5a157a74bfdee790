//! Explain mode and the layer order, over the in-memory fabric with the
//! production layers: what each layer decided and the rule behind it, that
//! explaining commits nothing, and that an explanation's fate is the fate of
//! the real packet.

#![allow(clippy::unwrap_used)]

use core::net::IpAddr;

mod common;

use common::*;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::explain::{Evidence, Fate, StepAction};
use openvpc_dataplane::fabric::Delivery;
use openvpc_dataplane::layer::LayerKind;
use openvpc_dataplane::policy::{NetworkAcl, SgRule, Way};
use openvpc_dataplane::route::{GatewayKind, Route, RouteTarget, gateway_mac};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::MacAddr;
use openvpc_packet::geneve::GeneveHeader;

const VPC: &str = "10.0.0.0/16";
const VNI: u32 = 100;

/// Two hosts; `a` in subnet A (default ACL) on host 0, `b` in subnet B on
/// host 1, whose ACL is `acl_b` and whose group admits tcp/80 from the VPC
/// by rule `sgr-web`. A's table also has a blackhole, an igw route and a
/// route to NAT gateway `nat-1`, served by four nodes outside the fabric.
fn region(name: &'static str, acl_b: NetworkAcl) -> TestFabric {
    let mut f = TestFabric::new(name);
    f.add_host();
    f.add_host();
    let table = routes(
        VPC,
        vec![
            Route {
                destination: net("192.168.0.0/16"),
                target: RouteTarget::Blackhole,
            },
            Route {
                destination: net("0.0.0.0/0"),
                target: RouteTarget::gateway(
                    GatewayKind::Internet,
                    "igw-1",
                    vec![addr("192.0.2.200")],
                )
                .unwrap(),
            },
            Route {
                destination: net("198.51.100.0/24"),
                target: RouteTarget::gateway(GatewayKind::Nat, "nat-1", nat_nodes()).unwrap(),
            },
        ],
    );
    let sa = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl-a"),
        table.clone(),
    );
    let sb = subnet("subnet-b", "10.0.2.0/24", acl_b, table);
    let web = group(
        "sg-web",
        vec![SgRule::new(TrafficMatch::tcp(80, 80), [net(VPC)]).with_id(Some("sgr-web".into()))],
    );
    let mut a = eni(
        "eni-a",
        1,
        "10.0.1.10",
        &sa,
        VNI,
        VPC,
        vec![group("sg-a", vec![])],
    );
    a.public_ipv4 = vec![(
        "10.0.1.10".parse().unwrap(),
        "203.0.113.10".parse().unwrap(),
    )];
    f.add_eni(0, a).unwrap();
    f.add_eni(1, eni("eni-b", 2, "10.0.2.20", &sb, VNI, VPC, vec![web]))
        .unwrap();
    f
}

fn nat_nodes() -> Vec<IpAddr> {
    (1..=4).map(|i| addr(&format!("10.254.0.{i}"))).collect()
}

/// The inner Ethernet header's (destination, source) of the last frame the
/// fabric put on the underlay.
fn last_inner_macs(f: &TestFabric) -> (MacAddr, MacAddr) {
    let c = f
        .captured()
        .iter()
        .rev()
        .find(|c| c.wire.starts_with("underlay"))
        .unwrap();
    // Outer Ethernet, IPv4 and UDP, then Geneve and its options.
    let geneve = GeneveHeader::view(&c.frame[14 + 20 + 8..]).unwrap();
    let inner = geneve.payload;
    let mac = |at: usize| MacAddr(inner[at..at + 6].try_into().unwrap());
    (mac(0), mac(6))
}

fn layers(e: &openvpc_dataplane::explain::Explanation) -> Vec<(String, Way, LayerKind)> {
    e.steps
        .iter()
        .map(|s| (s.eni.clone(), s.way, s.layer))
        .collect()
}

/// What a real packet's delivery says, in an explanation's terms.
fn fate_of(d: &Delivery) -> Fate {
    match d {
        Delivery::Delivered { eni, .. } => Fate::Delivered { eni: eni.clone() },
        Delivery::Dropped { reason, .. } => Fate::Dropped(*reason),
        other => panic!("unexpected delivery {other:?}"),
    }
}

// DESIGN.md "The packet path": egress runs gateway, groups, ACL, routing;
// ingress crosses the subnet boundary (ACL) before the ENI's groups.
#[test]
fn an_allowed_flow_names_every_rule_in_order() {
    let f = region("explain_allowed", NetworkAcl::allow_all("acl-b"));
    let e = f.explain("eni-a", &syn(1, "10.0.1.10", 4000, "10.0.2.20", 80));
    assert_eq!(
        e.fate,
        Fate::Delivered {
            eni: "eni-b".into()
        }
    );
    let a = |l| ("eni-a".to_string(), Way::Egress, l);
    let b = |l| ("eni-b".to_string(), Way::Ingress, l);
    assert_eq!(
        layers(&e),
        vec![
            a(LayerKind::Gateway),
            a(LayerKind::SecurityGroup),
            a(LayerKind::NetworkAcl),
            a(LayerKind::Routing),
            b(LayerKind::Gateway),
            b(LayerKind::NetworkAcl),
            b(LayerKind::SecurityGroup),
        ]
    );
    let evidence: Vec<&Evidence> = e.steps.iter().map(|s| &s.evidence).collect();
    assert_eq!(
        evidence[3],
        &Evidence::Route {
            route_table_id: "rtb-test".into(),
            destination: net(VPC),
            target: "local".into(),
        }
    );
    assert_eq!(
        evidence[5],
        &Evidence::AclEntry {
            acl_id: "acl-b".into(),
            rule_number: 100,
            action: RuleAction::Allow,
        }
    );
    assert_eq!(
        evidence[6],
        &Evidence::SecurityGroupRule {
            group_id: "sg-web".into(),
            rule_id: Some("sgr-web".into()),
        }
    );
    assert_eq!(
        e.steps[6].action,
        StepAction::StatefulAllow { tracked: true }
    );
}

#[test]
fn explaining_commits_nothing() {
    let mut f = region("explain_commits_nothing", NetworkAcl::allow_all("acl-b"));
    let frame = syn(1, "10.0.1.10", 4001, "10.0.2.20", 80);
    let before = (
        f.router("eni-a").unwrap().flow_count(),
        f.router("eni-a").unwrap().stats(),
        f.router("eni-a").unwrap().drops().clone(),
        f.router("eni-b").unwrap().flow_count(),
    );
    for _ in 0..3 {
        f.explain("eni-a", &frame);
        f.explain("eni-a", &syn(1, "10.0.1.10", 4001, "10.0.2.20", 22));
    }
    let after = (
        f.router("eni-a").unwrap().flow_count(),
        f.router("eni-a").unwrap().stats(),
        f.router("eni-a").unwrap().drops().clone(),
        f.router("eni-b").unwrap().flow_count(),
    );
    assert_eq!(before, after);
    // The real packet then takes the slow path: nothing was cached for it.
    assert!(f.send("eni-a", &frame).delivered_to("eni-b").is_some());
    assert_eq!(f.router("eni-a").unwrap().stats().slow_path, 1);
}

// AWS evaluates the network ACL before the security group on the way in:
// a packet both refuse is a NACL drop, and the explanation stops there.
#[test]
fn ingress_names_the_network_acl_before_the_group() {
    let deny_all = NetworkAcl::new("acl-closed", vec![], vec![]);
    let mut f = region("explain_ingress_order", deny_all);
    // tcp/22: the group has no rule for it either.
    let frame = syn(1, "10.0.1.10", 4002, "10.0.2.20", 22);
    let e = f.explain("eni-a", &frame);
    assert_eq!(e.fate, Fate::Dropped(DropReason::NaclDeny));
    let last = e.steps.last().unwrap();
    assert_eq!(
        (last.way, last.layer),
        (Way::Ingress, LayerKind::NetworkAcl)
    );
    assert_eq!(
        last.evidence,
        Evidence::AclDefault {
            acl_id: "acl-closed".into()
        }
    );
    let d = f.send("eni-a", &frame);
    assert_eq!(d.drop_reason(), Some(DropReason::NaclDeny));
    assert_eq!(
        f.router("eni-b").unwrap().drops().get(DropReason::SgDeny),
        0
    );
}

// The explanation's fate is the real packet's, for each way a packet ends.
#[test]
fn the_explained_fate_is_the_real_fate() {
    let mut f = region("explain_equals_send", NetworkAcl::allow_all("acl-b"));
    let cases = [
        // Delivered.
        syn(1, "10.0.1.10", 5000, "10.0.2.20", 80),
        // The destination's group has no rule for 22.
        syn(1, "10.0.1.10", 5001, "10.0.2.20", 22),
        // Spoofed source: the source/destination check.
        syn(1, "10.0.1.99", 5002, "10.0.2.20", 80),
        // A blackhole route.
        syn(1, "10.0.1.10", 5003, "192.168.1.1", 80),
        // Nobody at this address of the VPC.
        syn(1, "10.0.1.10", 5004, "10.0.3.3", 80),
    ];
    for frame in cases {
        let explained = f.explain("eni-a", &frame).fate;
        let real = fate_of(&f.send("eni-a", &frame));
        assert_eq!(explained, real);
    }
    // An igw route leaves the host for the gateway's node.
    let e = f.explain("eni-a", &syn(1, "10.0.1.10", 5005, "8.8.8.8", 53));
    assert!(matches!(
        e.fate,
        Fate::Sent { underlay, vni: VNI, .. } if underlay == addr("192.0.2.200")
    ));
    assert_eq!(
        e.steps.last().unwrap().action,
        StepAction::Forward {
            vni: VNI,
            target: Some("igw-1".into())
        }
    );
}

// Issue 16: a flow to a NAT gateway leaves for the node Maglev picks, the
// same one its explanation (and so the control plane's trace) names, with
// the gateway's own MAC as the inner destination so a node serving several
// NAT gateways of the VPC knows which one it is for. An internet gateway's
// frames keep the router's MAC.
#[test]
fn a_nat_gateway_flow_goes_to_the_explained_node_with_the_gateway_mac() {
    let mut f = region("explain_nat", NetworkAcl::allow_all("acl-b"));
    let mut used = std::collections::BTreeSet::new();
    for port in 6000..6200 {
        let frame = syn(1, "10.0.1.10", port, "198.51.100.7", 443);
        let Fate::Sent {
            underlay,
            vni,
            dst_mac,
        } = f.explain("eni-a", &frame).fate
        else {
            panic!("port {port}: not sent");
        };
        assert_eq!((vni, dst_mac), (VNI, gateway_mac("nat-1")));
        assert_eq!(
            f.send("eni-a", &frame),
            Delivery::LeftFabric { dst: underlay },
            "port {port}: the explained node is the real one"
        );
        assert_eq!(last_inner_macs(&f), (gateway_mac("nat-1"), ROUTER_MAC));
        // The same flow again: the same node.
        assert_eq!(
            f.send("eni-a", &frame),
            Delivery::LeftFabric { dst: underlay }
        );
        used.insert(underlay);
    }
    assert_eq!(used.len(), 4, "the flows spread over every node: {used:?}");
    let frame = syn(1, "10.0.1.10", 7000, "8.8.8.8", 53);
    assert!(matches!(
        f.send("eni-a", &frame),
        Delivery::LeftFabric { .. }
    ));
    assert_eq!(last_inner_macs(&f), (ROUTER_MAC, ROUTER_MAC));
}
