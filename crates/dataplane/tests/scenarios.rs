//! Scenario tests for the virtual router, run over the in-memory fabric with
//! the production layers: one test per rule, each naming the spec rule.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use openvpc_dataplane::conntrack::Timeouts;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::fabric::Delivery;
use openvpc_dataplane::flowlog::LogAction;
use openvpc_dataplane::policy::{NetworkAcl, SecurityGroup, SgRule, Way};
use openvpc_dataplane::route::{GatewayKind, Route, RouteTarget};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::ethernet::EthernetHeader;
use openvpc_packet::tcp::flags;
use openvpc_packet::{MacAddr, icmpv4};

const VPC: &str = "10.0.0.0/16";
const VNI: u32 = 100;

/// Two hosts; subnet A (10.0.1.0/24) and B (10.0.2.0/24) with the default
/// ACL and local routes; a web server `b` in B that admits tcp/80 from the
/// VPC, and clients `a1` (host 0) and `a2` (host 1) in A.
fn region(name: &'static str) -> TestFabric {
    let mut f = TestFabric::new(name);
    f.add_host();
    f.add_host();
    let table = routes(VPC, vec![]);
    let sa = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl-d"),
        table.clone(),
    );
    let sb = subnet(
        "subnet-b",
        "10.0.2.0/24",
        NetworkAcl::allow_all("acl-d"),
        table,
    );
    let web = group("sg-web", vec![allow(TrafficMatch::tcp(80, 80), VPC)]);
    let client = group("sg-client", vec![]);
    f.add_eni(
        0,
        eni(
            "eni-a1",
            1,
            "10.0.1.10",
            &sa,
            VNI,
            VPC,
            vec![client.clone()],
        ),
    )
    .unwrap();
    f.add_eni(
        1,
        eni("eni-a2", 2, "10.0.1.11", &sa, VNI, VPC, vec![client]),
    )
    .unwrap();
    f.add_eni(1, eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![web]))
        .unwrap();
    f
}

/// The three-way handshake from a1:40000 to b:`port`; each step must arrive.
fn open_tcp(f: &mut TestFabric, port: u16) {
    let steps = [
        (
            "eni-a1",
            "eni-b",
            syn(1, "10.0.1.10", 40000, "10.0.2.20", port),
        ),
        (
            "eni-b",
            "eni-a1",
            tcp(
                3,
                "10.0.2.20",
                port,
                "10.0.1.10",
                40000,
                flags::SYN | flags::ACK,
            ),
        ),
        (
            "eni-a1",
            "eni-b",
            tcp(1, "10.0.1.10", 40000, "10.0.2.20", port, flags::ACK),
        ),
    ];
    for (from, to, frame) in steps {
        let d = f.send(from, &frame);
        assert!(delivered(&d, to), "handshake step {from} -> {to}: {d:?}");
    }
}

fn delivered(d: &Delivery, eni: &str) -> bool {
    d.delivered_to(eni).is_some()
}

#[test]
fn across_subnets_and_hosts_with_stateful_replies() {
    let mut f = region("across_subnets");
    let d = f.send("eni-a1", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 80));
    let frame = d.delivered_to("eni-b").expect("SYN reaches the server");
    // The server sees its own MAC as destination and the router as source.
    let (eth, _) = EthernetHeader::view(frame).unwrap();
    assert_eq!(eth.dst, mac(3));
    assert_eq!(eth.src, ROUTER_MAC);
    // spec 3.2: the reply is allowed although sg-client admits nothing in.
    let d = f.send(
        "eni-b",
        &tcp(
            3,
            "10.0.2.20",
            80,
            "10.0.1.10",
            40000,
            flags::SYN | flags::ACK,
        ),
    );
    assert!(delivered(&d, "eni-a1"), "{d:?}");
    let d = f.send(
        "eni-a1",
        &tcp(1, "10.0.1.10", 40000, "10.0.2.20", 80, flags::ACK),
    );
    assert!(delivered(&d, "eni-b"), "{d:?}");
    // The third packet is an established flow on both hosts: fast path.
    assert!(f.routers[0].stats().fast_path >= 1);
}

#[test]
fn same_subnet_same_host_and_across_hosts() {
    let mut f = region("same_subnet_same_host_and_across_hosts");
    let sa = f.router("eni-a1").unwrap().eni(0).unwrap().subnet.clone();
    let open = group("sg-open", vec![allow(TrafficMatch::ALL, VPC)]);
    f.add_eni(
        0,
        eni("eni-a3", 4, "10.0.1.12", &sa, VNI, VPC, vec![open.clone()]),
    )
    .unwrap();
    f.add_eni(1, eni("eni-a4", 5, "10.0.1.13", &sa, VNI, VPC, vec![open]))
        .unwrap();
    // Same host: no underlay hop.
    let d = f.send("eni-a1", &udp(1, "10.0.1.10", 5000, "10.0.1.12", 53));
    let frame = d.delivered_to("eni-a3").expect("same-host delivery");
    // spec 2.4: same subnet is switched; the sender's MAC is kept.
    assert_eq!(EthernetHeader::view(frame).unwrap().0.src, mac(1));
    assert!(!f.captured().iter().any(|c| c.wire.starts_with("underlay")));
    // Across hosts.
    let d = f.send("eni-a1", &udp(1, "10.0.1.10", 5000, "10.0.1.13", 53));
    assert!(delivered(&d, "eni-a4"), "{d:?}");
    assert!(f.captured().iter().any(|c| c.wire.starts_with("underlay")));
}

#[test]
fn security_group_allows_and_denies() {
    let mut f = region("security_group_allows_and_denies");
    // spec 3.1: tcp/80 is admitted, tcp/22 has no rule.
    assert!(delivered(
        &f.send("eni-a1", &syn(1, "10.0.1.10", 40001, "10.0.2.20", 80)),
        "eni-b"
    ));
    let d = f.send("eni-a1", &syn(1, "10.0.1.10", 40002, "10.0.2.20", 22));
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny));
    assert_eq!(f.routers[1].drops().get(DropReason::SgDeny), 1);
    // spec 3.1: inbound default deny: the client's group admits nothing.
    let d = f.send("eni-b", &syn(3, "10.0.2.20", 40003, "10.0.1.10", 80));
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny));
}

#[test]
fn security_group_referencing_group() {
    // spec 3.1 acceptance: B allows tcp/5432 from sg-A's members only.
    let mut f = TestFabric::new("security_group_referencing_group");
    f.add_host();
    f.add_host();
    let table = routes(VPC, vec![]);
    let s = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl"),
        table,
    );
    let a = group("sg-a", vec![]);
    let other = group("sg-other", vec![]);
    // The control plane expands the reference to the members' addresses.
    let db = group(
        "sg-db",
        vec![SgRule::new(
            TrafficMatch::tcp(5432, 5432),
            [net("10.0.1.10/32")],
        )],
    );
    f.add_eni(0, eni("eni-member", 1, "10.0.1.10", &s, VNI, VPC, vec![a]))
        .unwrap();
    f.add_eni(
        0,
        eni("eni-stranger", 2, "10.0.1.11", &s, VNI, VPC, vec![other]),
    )
    .unwrap();
    f.add_eni(1, eni("eni-db", 3, "10.0.1.20", &s, VNI, VPC, vec![db]))
        .unwrap();
    assert!(delivered(
        &f.send("eni-member", &syn(1, "10.0.1.10", 1111, "10.0.1.20", 5432)),
        "eni-db"
    ));
    let d = f.send(
        "eni-stranger",
        &syn(2, "10.0.1.11", 1111, "10.0.1.20", 5432),
    );
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny));
}

fn deny_ssh_acl(deny_first: bool) -> NetworkAcl {
    let (deny_n, allow_n) = if deny_first { (100, 200) } else { (200, 100) };
    let rules = || {
        vec![
            nacl_rule(
                deny_n,
                TrafficMatch::tcp(22, 22),
                "0.0.0.0/0",
                RuleAction::Deny,
            ),
            nacl_rule(allow_n, TrafficMatch::ALL, "0.0.0.0/0", RuleAction::Allow),
        ]
    };
    NetworkAcl::new("acl-ssh", rules(), rules())
}

fn ssh_region(name: &'static str, acl: NetworkAcl) -> TestFabric {
    let mut f = TestFabric::new(name);
    f.add_host();
    f.add_host();
    let table = routes(VPC, vec![]);
    let sa = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl-d"),
        table.clone(),
    );
    let sb = subnet("subnet-b", "10.0.2.0/24", acl, table);
    let ssh = group("sg-ssh", vec![allow(TrafficMatch::tcp(22, 22), VPC)]);
    f.add_eni(
        0,
        eni("eni-a", 1, "10.0.1.10", &sa, VNI, VPC, vec![ssh.clone()]),
    )
    .unwrap();
    f.add_eni(1, eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![ssh]))
        .unwrap();
    f
}

#[test]
fn nacl_lower_deny_beats_higher_allow_in_both_directions() {
    // spec 4.1 acceptance: 100 deny tcp/22 + 200 allow all blocks SSH.
    let mut f = ssh_region("nacl_lower_deny", deny_ssh_acl(true));
    let d = f.send("eni-a", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 22));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::NaclDeny),
        "ingress to subnet B"
    );
    let d = f.send("eni-b", &syn(3, "10.0.2.20", 40000, "10.0.1.10", 22));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::NaclDeny),
        "egress from subnet B"
    );
    // Swapped numbers: SSH passes.
    let mut f = ssh_region("nacl_lower_deny_swapped", deny_ssh_acl(false));
    assert!(delivered(
        &f.send("eni-a", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 22)),
        "eni-b"
    ));
}

#[test]
fn nacl_is_stateless_replies_need_the_ephemeral_range() {
    // spec 4.1 acceptance: in tcp/80 and out only tcp/80: replies to
    // ephemeral ports are dropped; adding out 1024-65535 fixes it.
    let build = |ephemeral: bool| {
        let mut egress = vec![nacl_rule(
            100,
            TrafficMatch::tcp(80, 80),
            "0.0.0.0/0",
            RuleAction::Allow,
        )];
        if ephemeral {
            egress.push(nacl_rule(
                110,
                TrafficMatch::tcp(1024, 65535),
                "0.0.0.0/0",
                RuleAction::Allow,
            ));
        }
        let ingress = vec![nacl_rule(
            100,
            TrafficMatch::tcp(80, 80),
            "0.0.0.0/0",
            RuleAction::Allow,
        )];
        NetworkAcl::new("acl-web", ingress, egress)
    };
    for ephemeral in [false, true] {
        let mut f = region("nacl_is_stateless_replies_need_the_ephemeral_range");
        let sb = subnet(
            "subnet-b",
            "10.0.2.0/24",
            build(ephemeral),
            routes(VPC, vec![]),
        );
        let web = group("sg-web", vec![allow(TrafficMatch::tcp(80, 80), VPC)]);
        f.update_eni(eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![web]))
            .unwrap();
        assert!(delivered(
            &f.send("eni-a1", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 80)),
            "eni-b"
        ));
        let d = f.send(
            "eni-b",
            &tcp(
                3,
                "10.0.2.20",
                80,
                "10.0.1.10",
                40000,
                flags::SYN | flags::ACK,
            ),
        );
        if ephemeral {
            assert!(delivered(&d, "eni-a1"), "{d:?}");
        } else {
            assert_eq!(d.drop_reason(), Some(DropReason::NaclDeny));
        }
    }
}

#[test]
fn longest_prefix_route_wins_and_blackhole_drops() {
    // spec 2.4: 10.9.0.0/16 → appliance ENI, 10.9.9.0/24 → blackhole.
    let mut f = TestFabric::new("longest_prefix_route_wins_and_blackhole_drops");
    f.add_host();
    f.add_host();
    let appliance_route = |dst: &str| Route {
        destination: net(dst),
        target: RouteTarget::Eni {
            id: "eni-fw".into(),
            underlay: addr("192.0.2.2"),
            mac: mac(9),
        },
    };
    let table = routes(
        VPC,
        vec![
            appliance_route("10.9.0.0/16"),
            Route {
                destination: net("10.9.9.0/24"),
                target: RouteTarget::Blackhole,
            },
            Route {
                destination: net("0.0.0.0/0"),
                target: RouteTarget::gateway(
                    GatewayKind::Internet,
                    "igw-1",
                    vec![addr("198.51.100.1")],
                )
                .unwrap(),
            },
        ],
    );
    let sa = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl"),
        table.clone(),
    );
    let sf = subnet(
        "subnet-fw",
        "10.0.3.0/24",
        NetworkAcl::allow_all("acl"),
        table,
    );
    let open = group("sg-open", vec![allow(TrafficMatch::ALL, "0.0.0.0/0")]);
    let mut a = eni("eni-a", 1, "10.0.1.10", &sa, VNI, VPC, vec![open.clone()]);
    a.public_ipv4 = vec![(
        "10.0.1.10".parse().unwrap(),
        "203.0.113.10".parse().unwrap(),
    )];
    f.add_eni(0, a).unwrap();
    let mut fw = eni("eni-fw", 9, "10.0.3.9", &sf, VNI, VPC, vec![open]);
    fw.source_dest_check = false;
    f.add_eni(1, fw).unwrap();
    let d = f.send("eni-a", &udp(1, "10.0.1.10", 1000, "10.9.1.1", 53));
    assert!(
        delivered(&d, "eni-fw"),
        "the /16 sends it to the appliance: {d:?}"
    );
    let d = f.send("eni-a", &udp(1, "10.0.1.10", 1000, "10.9.9.9", 53));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::Blackhole),
        "the /24 is more specific"
    );
    let d = f.send("eni-a", &udp(1, "10.0.1.10", 1000, "8.8.8.8", 53));
    assert_eq!(
        d,
        Delivery::LeftFabric {
            dst: addr("198.51.100.1")
        },
        "default route to the IGW node"
    );
    // spec 5.1: an address without a public IPv4 does not leave through
    // the internet gateway.
    let d = f.send("eni-fw", &udp(9, "10.0.3.9", 1000, "8.8.8.8", 53));
    assert_eq!(d.drop_reason(), Some(DropReason::NoPublicIp));
    let d = f.send("eni-a", &udp(1, "10.0.1.10", 1000, "10.0.7.7", 53));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::NoMapping),
        "local route, nobody there"
    );
}

#[test]
fn source_dest_check_on_and_off() {
    // spec 5.4: an ENI with the check on drops packets whose source is not its own.
    let mut f = region("source_dest_check_on_and_off");
    let spoofed = udp(1, "10.0.1.99", 1000, "10.0.2.20", 53);
    let d = f.send("eni-a1", &spoofed);
    assert_eq!(d.drop_reason(), Some(DropReason::SourceDestCheck));
    // Turning it off lets the appliance forward (egress passes the check).
    let sa = f.router("eni-a1").unwrap().eni(0).unwrap().subnet.clone();
    let mut cfg = eni(
        "eni-a1",
        1,
        "10.0.1.10",
        &sa,
        VNI,
        VPC,
        vec![group("sg-client", vec![])],
    );
    cfg.source_dest_check = false;
    f.update_eni(cfg).unwrap();
    let d = f.send("eni-a1", &udp(1, "10.0.1.99", 1000, "10.0.2.20", 80));
    assert_ne!(d.drop_reason(), Some(DropReason::SourceDestCheck), "{d:?}");
}

#[test]
fn udp_idle_timeout_then_replies_are_judged_by_rules() {
    // spec 3.2: UDP flows idle out after 30 s; after that a "reply" is a new
    // inbound flow, which sg-client does not admit.
    let mut f = region("udp_idle_timeout_then_replies_are_judged_by_rules");
    let open = group("sg-open", vec![allow(TrafficMatch::ALL, VPC)]);
    let sb = f
        .router("eni-b")
        .unwrap()
        .eni(f.eni_index("eni-b").unwrap())
        .unwrap()
        .subnet
        .clone();
    f.update_eni(eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![open]))
        .unwrap();
    assert!(delivered(
        &f.send("eni-a1", &udp(1, "10.0.1.10", 5000, "10.0.2.20", 53)),
        "eni-b"
    ));
    f.advance(29_000);
    assert!(delivered(
        &f.send("eni-b", &udp(3, "10.0.2.20", 53, "10.0.1.10", 5000)),
        "eni-a1"
    ));
    f.advance(30_001);
    let d = f.send("eni-b", &udp(3, "10.0.2.20", 53, "10.0.1.10", 5000));
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny), "{d:?}");
}

#[test]
fn custom_tcp_timeout() {
    // spec 3.2 acceptance: TcpEstablishedTimeout=60; after 61 s idle, replies
    // not allowed by the rules are dropped.
    let mut f = region("custom_tcp_timeout");
    let sa = f.router("eni-a1").unwrap().eni(0).unwrap().subnet.clone();
    let mut cfg = eni(
        "eni-a1",
        1,
        "10.0.1.10",
        &sa,
        VNI,
        VPC,
        vec![group("sg-client", vec![])],
    );
    cfg.timeouts = Timeouts {
        tcp_established_secs: 60,
        ..Timeouts::default()
    };
    f.update_eni(cfg).unwrap();
    open_tcp(&mut f, 80);
    f.advance(59_000);
    let d = f.send(
        "eni-b",
        &tcp(3, "10.0.2.20", 80, "10.0.1.10", 40000, flags::ACK),
    );
    assert!(delivered(&d, "eni-a1"), "{d:?}");
    f.advance(61_000);
    let d = f.send(
        "eni-b",
        &tcp(3, "10.0.2.20", 80, "10.0.1.10", 40000, flags::ACK),
    );
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny), "{d:?}");
}

#[test]
fn rule_change_mid_connection_tracked_survives_untracked_is_cut() {
    // spec 3.2 acceptance: tracked (rule from a /32): revoke it and the
    // session survives; untracked (0.0.0.0/0 in + all out): revoke and it drops.
    for untracked in [false, true] {
        let mut f = region("rule_change_mid_connection_tracked_survives_untracked_is_cut");
        let from = if untracked {
            "0.0.0.0/0"
        } else {
            "10.0.1.10/32"
        };
        let sb = f
            .router("eni-b")
            .unwrap()
            .eni(f.eni_index("eni-b").unwrap())
            .unwrap()
            .subnet
            .clone();
        let ssh = group("sg-ssh", vec![allow(TrafficMatch::tcp(22, 22), from)]);
        f.update_eni(eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![ssh]))
            .unwrap();
        f.send("eni-a1", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 22));
        f.send(
            "eni-b",
            &tcp(
                3,
                "10.0.2.20",
                22,
                "10.0.1.10",
                40000,
                flags::SYN | flags::ACK,
            ),
        );
        assert!(delivered(
            &f.send(
                "eni-a1",
                &tcp(1, "10.0.1.10", 40000, "10.0.2.20", 22, flags::ACK)
            ),
            "eni-b"
        ));
        // Revoke the ingress rule.
        f.update_eni(eni(
            "eni-b",
            3,
            "10.0.2.20",
            &sb,
            VNI,
            VPC,
            vec![group("sg-ssh", vec![])],
        ))
        .unwrap();
        let d = f.send(
            "eni-a1",
            &tcp(
                1,
                "10.0.1.10",
                40000,
                "10.0.2.20",
                22,
                flags::ACK | flags::PSH,
            ),
        );
        if untracked {
            assert_eq!(
                d.drop_reason(),
                Some(DropReason::SgDeny),
                "untracked flow is cut at once"
            );
        } else {
            assert!(delivered(&d, "eni-b"), "tracked flow survives: {d:?}");
        }
        // New connections are refused either way.
        let d = f.send("eni-a1", &syn(1, "10.0.1.10", 40001, "10.0.2.20", 22));
        assert_eq!(d.drop_reason(), Some(DropReason::SgDeny));
    }
}

#[test]
fn nacl_deny_added_breaks_established_flow_and_logs_reject() {
    // spec 4.2 acceptance: a new NACL deny breaks an established, tracked
    // flow at once; the flow log shows REJECT for it.
    let mut f = ssh_region("nacl_deny_added", NetworkAcl::allow_all("acl-d"));
    f.send("eni-a", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 22));
    assert!(delivered(
        &f.send(
            "eni-b",
            &tcp(
                3,
                "10.0.2.20",
                22,
                "10.0.1.10",
                40000,
                flags::SYN | flags::ACK
            )
        ),
        "eni-a"
    ));
    let sb = subnet(
        "subnet-b",
        "10.0.2.0/24",
        deny_ssh_acl(true),
        routes(VPC, vec![]),
    );
    let ssh = group("sg-ssh", vec![allow(TrafficMatch::tcp(22, 22), VPC)]);
    f.update_eni(eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![ssh]))
        .unwrap();
    let d = f.send(
        "eni-a",
        &tcp(1, "10.0.1.10", 40000, "10.0.2.20", 22, flags::ACK),
    );
    assert_eq!(d.drop_reason(), Some(DropReason::NaclDeny));
    let logs = f.routers[1].drain_flow_logs();
    let reject = logs
        .iter()
        .find(|r| r.action == LogAction::Reject)
        .expect("a REJECT record");
    assert_eq!(
        (
            reject.interface_id.as_str(),
            reject.dst_port,
            reject.direction
        ),
        ("eni-b", 22, Way::Ingress)
    );
}

#[test]
fn flow_logs_count_both_directions() {
    // spec 8.1: one record per direction with packets, bytes and OR of flags.
    let mut f = region("flow_logs_count_both_directions");
    open_tcp(&mut f, 80);
    let logs = f.routers[0].drain_flow_logs();
    let out = logs.iter().find(|r| r.direction == Way::Egress).unwrap();
    assert_eq!(
        (out.src, out.dst, out.src_port, out.dst_port),
        (addr("10.0.1.10"), addr("10.0.2.20"), 40000, 80)
    );
    // spec 8.1 `tcp-flags`: a SYN then an ACK is SYN (2); ACK counts only
    // within a SYN-ACK (18).
    assert_eq!((out.packets, out.bytes, out.tcp_flags), (2, 80, flags::SYN));
    let back = logs.iter().find(|r| r.direction == Way::Ingress).unwrap();
    assert_eq!(
        (back.src_port, back.dst_port, back.packets, back.tcp_flags),
        (80, 40000, 1, flags::SYN | flags::ACK)
    );
    assert!(
        f.routers[0].drain_flow_logs().is_empty(),
        "counters start over"
    );
}

// The worker's path: bounded expiry steps harvest the same records as a
// full drain, and taking them scans nothing.
#[test]
fn expiry_steps_harvest_flow_logs_without_a_full_scan() {
    let mut f = region("expiry_steps_harvest_flow_logs_without_a_full_scan");
    open_tcp(&mut f, 80);
    let router = &mut f.routers[0];
    assert!(router.take_flow_logs().is_empty(), "nothing harvested yet");
    let slots = router.flow_slots();
    let mut removed = 0;
    for _ in 0..slots.div_ceil(4096) {
        removed += router.expire_step(0, 4096);
    }
    assert_eq!(removed, 0, "the connection is live");
    let logs = router.take_flow_logs();
    let out = logs.iter().find(|r| r.direction == Way::Egress).unwrap();
    assert_eq!((out.dst_port, out.packets), (80, 2));
    let back = logs.iter().find(|r| r.direction == Way::Ingress).unwrap();
    assert_eq!(back.packets, 1);
    assert!(router.drain_flow_logs().is_empty(), "counters started over");
}

#[test]
fn icmp_echo_and_related_errors() {
    let mut f = region("icmp_echo_and_related_errors");
    let sb = f
        .router("eni-b")
        .unwrap()
        .eni(f.eni_index("eni-b").unwrap())
        .unwrap()
        .subnet
        .clone();
    let icmp_in = SgRule::new(
        TrafficMatch {
            protocol: openvpc_model::rule::IpProtocol::Number(1),
            l4: openvpc_model::rule::L4Match::Any,
        },
        [net(VPC)],
    );
    let g = std::sync::Arc::new(SecurityGroup {
        id: "sg-icmp".into(),
        ingress: vec![icmp_in],
        egress: vec![],
    });
    f.update_eni(eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![g]))
        .unwrap();
    assert!(delivered(
        &f.send(
            "eni-a1",
            &ping(1, "10.0.1.10", "10.0.2.20", icmpv4::types::ECHO_REQUEST, 7)
        ),
        "eni-b"
    ));
    // spec 3.2: ICMP is tracked; the reply passes sg-icmp's empty egress and sg-client's empty ingress.
    let d = f.send(
        "eni-b",
        &ping(3, "10.0.2.20", "10.0.1.10", icmpv4::types::ECHO_REPLY, 7),
    );
    assert!(delivered(&d, "eni-a1"), "{d:?}");
    let d = f.send(
        "eni-b",
        &ping(3, "10.0.2.20", "10.0.1.10", icmpv4::types::ECHO_REQUEST, 8),
    );
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::SgDeny),
        "a new echo from b is not a reply"
    );
}

#[test]
fn isolation_same_addresses_in_two_vpcs() {
    // Two VPCs with the same CIDR and addresses: each instance reaches only its own peer.
    let mut f = TestFabric::new("isolation_same_addresses_in_two_vpcs");
    f.add_host();
    f.add_host();
    for (vni, tag) in [(100u32, 1u8), (200, 2)] {
        let s = subnet(
            &format!("subnet-{vni}"),
            "10.0.1.0/24",
            NetworkAcl::allow_all("acl"),
            routes(VPC, vec![]),
        );
        let open = group(
            &format!("sg-{vni}"),
            vec![allow(TrafficMatch::ALL, "0.0.0.0/0")],
        );
        f.add_eni(
            0,
            eni(
                &format!("eni-{vni}-x"),
                tag * 10 + 1,
                "10.0.1.10",
                &s,
                vni,
                VPC,
                vec![open.clone()],
            ),
        )
        .unwrap();
        f.add_eni(
            1,
            eni(
                &format!("eni-{vni}-y"),
                tag * 10 + 2,
                "10.0.1.20",
                &s,
                vni,
                VPC,
                vec![open],
            ),
        )
        .unwrap();
    }
    for vni in [100, 200] {
        let d = f.send(
            &format!("eni-{vni}-x"),
            &udp(1, "10.0.1.10", 9, "10.0.1.20", 9),
        );
        assert!(delivered(&d, &format!("eni-{vni}-y")), "{d:?}");
    }
}

#[test]
fn arp_and_dhcp_answers() {
    let mut f = region("arp_and_dhcp_answers");
    // ARP for the subnet router (base+1) is answered with the router MAC.
    let request = openvpc_packet::arp::ArpRepr {
        op: openvpc_packet::arp::ArpOp::Request,
        sender_mac: mac(1),
        sender_ip: ip("10.0.1.10"),
        target_mac: MacAddr::ZERO,
        target_ip: ip("10.0.1.1"),
    };
    let mut frame = vec![0u8; 42];
    openvpc_packet::ethernet::EthernetRepr {
        dst: MacAddr::BROADCAST,
        src: mac(1),
        vlan: None,
        ethertype: openvpc_packet::ethernet::ethertype::ARP,
    }
    .emit(&mut frame)
    .unwrap();
    request.emit(&mut frame[14..]).unwrap();
    let d = f.send("eni-a1", &frame);
    let reply = d.delivered_to("eni-a1").expect("an ARP reply");
    let arp = openvpc_packet::arp::ArpRepr::parse(&reply[14..]).unwrap();
    assert_eq!(
        (arp.sender_ip, arp.sender_mac),
        (ip("10.0.1.1"), ROUTER_MAC)
    );
    // A peer in the same subnet answers with its own MAC (via the mapping).
    let mut peer = request;
    peer.target_ip = ip("10.0.1.11");
    peer.emit(&mut frame[14..]).unwrap();
    let d = f.send("eni-a1", &frame);
    let arp =
        openvpc_packet::arp::ArpRepr::parse(&d.delivered_to("eni-a1").unwrap()[14..]).unwrap();
    assert_eq!(arp.sender_mac, mac(2));
}

#[test]
fn port_reuse_after_reset_opens_a_new_flow() {
    let mut f = region("port_reuse_after_reset_opens_a_new_flow");
    f.send("eni-a1", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 80));
    f.send(
        "eni-b",
        &tcp(
            3,
            "10.0.2.20",
            80,
            "10.0.1.10",
            40000,
            flags::RST | flags::ACK,
        ),
    );
    // The same 4-tuple opens again at once; the old entry gives way.
    let d = f.send("eni-a1", &syn(1, "10.0.1.10", 40000, "10.0.2.20", 80));
    assert!(delivered(&d, "eni-b"), "{d:?}");
    let d = f.send(
        "eni-b",
        &tcp(
            3,
            "10.0.2.20",
            80,
            "10.0.1.10",
            40000,
            flags::SYN | flags::ACK,
        ),
    );
    assert!(delivered(&d, "eni-a1"), "{d:?}");
}

#[test]
fn full_flow_table_is_a_counted_drop() {
    let mut f = TestFabric::new("full_flow_table_is_a_counted_drop");
    f.add_host_with(|c| c.flow_capacity = 2);
    f.add_host();
    let s = subnet(
        "subnet-a",
        "10.0.1.0/24",
        NetworkAcl::allow_all("acl"),
        routes(VPC, vec![]),
    );
    let open = group("sg-open", vec![allow(TrafficMatch::ALL, VPC)]);
    f.add_eni(
        0,
        eni("eni-x", 1, "10.0.1.10", &s, VNI, VPC, vec![open.clone()]),
    )
    .unwrap();
    f.add_eni(1, eni("eni-y", 2, "10.0.1.20", &s, VNI, VPC, vec![open]))
        .unwrap();
    for port in [1, 2] {
        assert!(delivered(
            &f.send("eni-x", &udp(1, "10.0.1.10", port, "10.0.1.20", 53)),
            "eni-y"
        ));
    }
    let d = f.send("eni-x", &udp(1, "10.0.1.10", 3, "10.0.1.20", 53));
    assert_eq!(d.drop_reason(), Some(DropReason::TableFull));
    assert_eq!(f.routers[0].table_stats().refused_full, 1);
    // Once the live flows idle out, the sweep makes room again (spec 3.2: UDP 30 s).
    f.advance(31_000);
    assert!(delivered(
        &f.send("eni-x", &udp(1, "10.0.1.10", 3, "10.0.1.20", 53)),
        "eni-y"
    ));
    assert_eq!(f.routers[0].table_stats().evicted, 2);
}

#[test]
fn dhcp_discover_gets_an_offer_with_the_eni_address() {
    let mut f = region("dhcp_discover_gets_an_offer_with_the_eni_address");
    // A minimal DHCPDISCOVER as udhcpc sends it: BOOTP header, magic cookie,
    // option 53 = 1, end.
    let frame = dhcp_discover(mac(1), [0xde, 0xad, 0xbe, 0xef], &[53, 1, 1, 255]);
    let d = f.send("eni-a1", &frame);
    let offer = d.delivered_to("eni-a1").expect("an offer");
    let (_, l4) = openvpc_packet::ipv4::Ipv4Repr::parse(&offer[14..]).unwrap();
    let (_, dhcp) = openvpc_packet::udp::UdpRepr::parse(l4).unwrap();
    assert_eq!(
        &dhcp[16..20],
        &[10, 0, 1, 10],
        "yiaddr is the ENI's address"
    );
    assert_eq!(&dhcp[4..8], &[0xde, 0xad, 0xbe, 0xef], "xid echoed");
    let has = |dhcp: &[u8], text: &[u8]| dhcp.windows(text.len()).any(|w| w == text);
    assert!(has(dhcp, b"ec2.internal"), "us-east-1's domain by default");

    // Option 15 follows the region the control plane names (spec 1.4).
    let index = f.fabric.eni_index("eni-a1").unwrap();
    let mut cfg = f
        .fabric
        .router("eni-a1")
        .unwrap()
        .eni(index)
        .unwrap()
        .clone();
    cfg.domain_name = Some("eu-west-1.compute.internal".into());
    f.fabric.update_eni(cfg).unwrap();
    let d = f.send("eni-a1", &frame);
    let offer = d.delivered_to("eni-a1").expect("an offer");
    let (_, l4) = openvpc_packet::ipv4::Ipv4Repr::parse(&offer[14..]).unwrap();
    let (_, dhcp) = openvpc_packet::udp::UdpRepr::parse(l4).unwrap();
    assert!(
        has(dhcp, b"eu-west-1.compute.internal"),
        "the region's domain"
    );
}

/// An ICMP error from `from` (MAC `n`) to `to`, quoting `quoted` (an
/// Ethernet frame whose IP header and first 8 L4 bytes are quoted).
fn icmp_error(n: u8, from: &str, to: &str, quoted: &[u8]) -> Vec<u8> {
    let ip_len = 20 + 8;
    openvpc_packet::builder::PacketBuilder {
        ethernet: Some(openvpc_packet::ethernet::EthernetRepr {
            dst: ROUTER_MAC,
            src: mac(n),
            vlan: None,
            ethertype: 0,
        }),
        ip: openvpc_packet::builder::IpRepr::V4(openvpc_packet::ipv4::Ipv4Repr::new(
            ip(from),
            ip(to),
            0,
            0,
        )),
        l4: openvpc_packet::builder::L4Repr::Icmpv4(openvpc_packet::icmp::IcmpRepr {
            icmp_type: icmpv4::types::DEST_UNREACHABLE,
            code: 3,
            rest: [0; 4],
        }),
    }
    .build(&quoted[14..14 + ip_len])
    .unwrap()
}

#[test]
fn icmp_errors_of_tracked_flows_pass_the_security_groups() {
    // spec 3.2: ICMP errors related to a tracked flow are allowed; unrelated
    // ones are judged by the rules (sg-client admits nothing in).
    let mut f = region("icmp_errors_of_tracked_flows_pass_the_security_groups");
    let syn_frame = syn(1, "10.0.1.10", 40000, "10.0.2.20", 80);
    assert!(delivered(&f.send("eni-a1", &syn_frame), "eni-b"));
    let related = icmp_error(3, "10.0.2.20", "10.0.1.10", &syn_frame);
    let d = f.send("eni-b", &related);
    assert!(delivered(&d, "eni-a1"), "{d:?}");
    let unrelated = icmp_error(
        3,
        "10.0.2.20",
        "10.0.1.10",
        &syn(1, "10.0.1.10", 40999, "10.0.2.20", 80),
    );
    assert_eq!(
        f.send("eni-b", &unrelated).drop_reason(),
        Some(DropReason::SgDeny)
    );
}

/// A TCP segment over IPv6 from an instance (MAC `n`) to the router.
fn tcp6(n: u8, src: &str, sport: u16, dst: &str, dport: u16, tcp_flags: u8) -> Vec<u8> {
    openvpc_packet::builder::PacketBuilder {
        ethernet: Some(openvpc_packet::ethernet::EthernetRepr {
            dst: ROUTER_MAC,
            src: mac(n),
            vlan: None,
            ethertype: 0,
        }),
        ip: openvpc_packet::builder::IpRepr::V6(openvpc_packet::ipv6::Ipv6Repr::new(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            0,
            0,
        )),
        l4: openvpc_packet::builder::L4Repr::Tcp(openvpc_packet::tcp::TcpRepr::new(
            sport, dport, tcp_flags,
        )),
    }
    .build(b"")
    .unwrap()
}

#[test]
fn ipv6_across_subnets_and_hosts() {
    // spec 2.1: IPv6 has its own routes (the VPC's /56 is local); SGs and
    // NACLs match IPv6 CIDRs; replies are tracked as for IPv4.
    let mut f = TestFabric::new("ipv6_across_subnets_and_hosts");
    f.add_host();
    f.add_host();
    let table = std::sync::Arc::new(openvpc_dataplane::route::RouteTable::new(
        "rtb-6",
        [
            Route {
                destination: net(VPC),
                target: RouteTarget::Local,
            },
            Route {
                destination: net("2600:1f18:1:ab00::/56"),
                target: RouteTarget::Local,
            },
        ],
    ));
    let with_v6 = |id: &str, v4: &str, v6: &str| {
        let mut s = (*subnet(id, v4, NetworkAcl::allow_all("acl-d"), table.clone())).clone();
        s.ipv6_cidr = Some(v6.parse().unwrap());
        std::sync::Arc::new(s)
    };
    let sa = with_v6("subnet-a", "10.0.1.0/24", "2600:1f18:1:ab01::/64");
    let sb = with_v6("subnet-b", "10.0.2.0/24", "2600:1f18:1:ab02::/64");
    let web6 = group(
        "sg-web6",
        vec![allow(TrafficMatch::tcp(443, 443), "2600:1f18:1:ab00::/56")],
    );
    // spec 2.1/3.1: 0.0.0.0/0 does not cover IPv6; an IPv6 group needs ::/0.
    let v4_only = group("sg-v4-only", vec![]);
    let client = std::sync::Arc::new(SecurityGroup {
        id: "sg-client6".into(),
        ingress: vec![],
        egress: vec![SgRule::new(
            TrafficMatch::ALL,
            [net("0.0.0.0/0"), net("::/0")],
        )],
    });
    let mut a = eni(
        "eni-a",
        1,
        "10.0.1.10",
        &sa,
        VNI,
        VPC,
        vec![v4_only.clone()],
    );
    a.ipv6 = vec!["2600:1f18:1:ab01::10".parse().unwrap()];
    let mut b = eni("eni-b", 3, "10.0.2.20", &sb, VNI, VPC, vec![web6]);
    b.ipv6 = vec!["2600:1f18:1:ab02::20".parse().unwrap()];
    f.add_eni(0, a).unwrap();
    f.add_eni(1, b).unwrap();
    let (a6, b6) = ("2600:1f18:1:ab01::10", "2600:1f18:1:ab02::20");
    let d = f.send("eni-a", &tcp6(1, a6, 40000, b6, 443, flags::SYN));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::SgDeny),
        "an IPv4-only egress rule"
    );
    let sa = f.router("eni-a").unwrap().eni(0).unwrap().subnet.clone();
    let mut a = eni("eni-a", 1, "10.0.1.10", &sa, VNI, VPC, vec![client]);
    a.ipv6 = vec![a6.parse().unwrap()];
    f.update_eni(a).unwrap();
    let d = f.send("eni-a", &tcp6(1, a6, 40000, b6, 443, flags::SYN));
    let frame = d
        .delivered_to("eni-b")
        .unwrap_or_else(|| panic!("SYN over IPv6: {d:?}"));
    assert_eq!(EthernetHeader::view(frame).unwrap().0.dst, mac(3));
    let d = f.send(
        "eni-b",
        &tcp6(3, b6, 443, a6, 40000, flags::SYN | flags::ACK),
    );
    assert!(delivered(&d, "eni-a"), "the tracked reply: {d:?}");
    let d = f.send("eni-a", &tcp6(1, a6, 40001, b6, 22, flags::SYN));
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny));
    // spec 5.4: the source/destination check covers IPv6 addresses too.
    let d = f.send(
        "eni-a",
        &tcp6(1, "2600:1f18:1:ab01::99", 40000, b6, 443, flags::SYN),
    );
    assert_eq!(d.drop_reason(), Some(DropReason::SourceDestCheck));
}

/// A DHCPDISCOVER from the ENI's MAC (MAC 1) asking for `chaddr`'s lease,
/// with transaction ID `xid` and `options` after the magic cookie.
fn dhcp_discover(chaddr: MacAddr, xid: [u8; 4], options: &[u8]) -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&xid);
    bootp[28..34].copy_from_slice(&chaddr.0);
    bootp.extend_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(options);
    openvpc_packet::builder::PacketBuilder {
        ethernet: Some(openvpc_packet::ethernet::EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: mac(1),
            vlan: None,
            ethertype: 0,
        }),
        ip: openvpc_packet::builder::IpRepr::V4(openvpc_packet::ipv4::Ipv4Repr::new(
            ip("0.0.0.0"),
            ip("255.255.255.255"),
            0,
            0,
        )),
        l4: openvpc_packet::builder::L4Repr::Udp(openvpc_packet::udp::UdpRepr {
            src_port: 68,
            dst_port: 67,
        }),
    }
    .build(&bootp)
    .unwrap()
}

// The gateway's refusals are counted by cause, not all as `malformed`.
#[test]
fn gateway_refusals_are_counted_by_cause() {
    let mut f = region("gateway_refusals_are_counted_by_cause");
    let cases = [
        (
            dhcp_discover(mac(9), [0; 4], &[53, 1, 1, 255]),
            DropReason::DhcpForeignClient,
        ),
        // Option 53 claims 4 bytes of value and the message ends first.
        (
            dhcp_discover(mac(1), [0; 4], &[53, 4, 1]),
            DropReason::DhcpInvalid,
        ),
        (
            dhcp_discover(mac(1), [0; 4], &[255]),
            DropReason::DhcpInvalid,
        ),
    ];
    for (frame, reason) in cases {
        assert_eq!(f.send("eni-a1", &frame).drop_reason(), Some(reason));
    }
    // ARP whose sender claims another NIC's MAC.
    let request = openvpc_packet::arp::ArpRepr {
        op: openvpc_packet::arp::ArpOp::Request,
        sender_mac: mac(7),
        sender_ip: ip("10.0.1.10"),
        target_mac: MacAddr::ZERO,
        target_ip: ip("10.0.1.1"),
    };
    let mut frame = vec![0u8; 42];
    openvpc_packet::ethernet::EthernetRepr {
        dst: MacAddr::BROADCAST,
        src: mac(1),
        vlan: None,
        ethertype: openvpc_packet::ethernet::ethertype::ARP,
    }
    .emit(&mut frame)
    .unwrap();
    request.emit(&mut frame[14..]).unwrap();
    assert_eq!(
        f.send("eni-a1", &frame).drop_reason(),
        Some(DropReason::SpoofedMac)
    );
    let drops = f.routers[0].drops();
    assert_eq!(drops.get(DropReason::Malformed), 0);
    assert_eq!(drops.get(DropReason::DhcpInvalid), 2);
}
