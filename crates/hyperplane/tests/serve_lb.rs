//! A node's network load balancers, sans-IO, two nodes of one shard wired
//! by hand (issue 17): a client's flow through the node to a target's host
//! with the return-via option, the target's reply back to the client's
//! host from the front address, the record at the buddy first, failover
//! with the same target, translated sources for IP targets, and what the
//! heartbeat says.

mod common;

use core::net::{IpAddr, Ipv4Addr};

use openvpc_dataplane::buf::PacketBuf;
use openvpc_hyperplane::serve::{Neighbor, Serve, Verdict, gateway_mac};
use openvpc_hyperplane::wire::Body;
use openvpc_model::hyperplane::{
    LbAssignment, LbFront, LbHealthCheck, LbHealthProtocol, LbListener, LbProtocol, LbTarget,
    LbTargetGroup, LbTargetType,
};
use openvpc_model::lifecycle::TargetHealthState;
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::geneve::{GeneveHeader, ReturnVia};
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};

use common::{VNI, deliver, geneve, inner, inner_via, ip, logged_eni, members, node, node_ip, tcp};

const LB: &str = "elb-00000000000000a1";
const FRONT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 50);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 20);
const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 1, 10]);
const TARGET_MAC: MacAddr = MacAddr([2, 0, 0, 0, 2, 20]);

fn client_host() -> IpAddr {
    ip("10.99.0.3")
}

fn target_host() -> IpAddr {
    ip("10.99.0.4")
}

fn assignment(alive: [bool; 2], target_type: LbTargetType) -> LbAssignment {
    LbAssignment {
        id: "00000000000000a1".into(),
        arn: "arn:aws:elasticloadbalancing:us-east-1:123:loadbalancer/net/web/00000000000000a1"
            .into(),
        name: "web".into(),
        account_id: "123".into(),
        vpc_id: "vpc-1".into(),
        vni: VNI,
        internet_facing: false,
        cross_zone: false,
        fronts: vec![LbFront {
            subnet_id: "subnet-1".into(),
            availability_zone: "us-east-1a".into(),
            private_ip: FRONT,
            public_ip: None,
        }],
        listeners: vec![LbListener {
            port: 80,
            protocol: LbProtocol::Tcp,
            target_group_id: "tg1".into(),
            tcp_idle_timeout: None,
        }],
        target_groups: vec![LbTargetGroup {
            id: "tg1".into(),
            arn: "arn:tg1".into(),
            protocol: LbProtocol::Tcp,
            port: 80,
            target_type,
            health_check: LbHealthCheck {
                enabled: true,
                protocol: LbHealthProtocol::Tcp,
                port: None,
                path: None,
                matcher: None,
                interval_secs: 10,
                timeout_secs: 5,
                healthy_threshold: 3,
                unhealthy_threshold: 3,
            },
            preserve_client_ip: None,
            cross_zone: None,
            deregistration_delay_secs: 300,
            targets: vec![LbTarget {
                id: match target_type {
                    LbTargetType::Instance => "i-0target".into(),
                    LbTargetType::Ip => TARGET.to_string(),
                },
                ip: TARGET,
                port: 8080,
                availability_zone: "us-east-1a".into(),
                draining_until_ms: None,
                invalid_state: false,
            }],
        }],
        shard: members(alive),
        edges: Vec::new(),
        flow_logs: Vec::new(),
    }
}

fn from_client(fl: u8, sport: u16, seq: u32) -> PacketBuf {
    geneve(
        gateway_mac(LB),
        CLIENT_MAC,
        &tcp(CLIENT, sport, FRONT, 80, fl, seq),
    )
}

/// Two nodes serving the load balancer, introduced to each other.
fn shard(target_type: LbTargetType) -> (Serve, Serve) {
    let (mut a, mut b) = (node("hp1"), node("hp2"));
    a.configure_balancers(&[assignment([true, true], target_type)], 0, 0);
    b.configure_balancers(&[assignment([true, true], target_type)], 0, 0);
    deliver(&mut a, node_ip("hp1"), &mut b, 0);
    deliver(&mut b, node_ip("hp2"), &mut a, 0);
    a.take_outbox();
    b.take_outbox();
    (a, b)
}

fn target_neighbor() -> Neighbor {
    Neighbor {
        host: target_host(),
        mac: TARGET_MAC,
    }
}

/// Sends the client's SYN through `a`, resolving the target's host.
fn open(a: &mut Serve, sport: u16) -> PacketBuf {
    let mut syn = from_client(flags::SYN, sport, 77);
    let v = a.receive(&mut syn, client_host(), 1);
    let Verdict::Resolve { vni, ip, via } = v else {
        panic!("{v:?}")
    };
    assert_eq!((vni, ip), (VNI, TARGET));
    a.mapped(VNI, TARGET, Some(target_neighbor()), 1);
    let v = a.deliver(&mut syn, VNI, target_neighbor(), via);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == target_host()),
        "{v:?}"
    );
    syn
}

#[test]
fn a_clients_flow_reaches_its_target_with_the_return_via_option_and_comes_back() {
    let (mut a, _b) = shard(LbTargetType::Instance);
    assert_eq!(a.serving(), vec![LB.to_string()]);
    let syn = open(&mut a, 40_000);
    let (tuple, via) = inner_via(&syn);
    // spec 9.3: an instance target sees the client's own address.
    assert_eq!(
        tuple,
        (IpAddr::V4(CLIENT), 40_000, IpAddr::V4(TARGET), 8080)
    );
    assert_eq!(
        via,
        Some(ReturnVia {
            front: FRONT,
            place: 0
        })
    );
    // The record went to the buddy, asking for an acknowledgement.
    let outbox = a.take_outbox();
    assert!(outbox.iter().any(|(to, m)| *to == node_ip("hp2")
        && matches!(&m.body, Body::LbReplicate { ack: true, records } if records.len() == 1)));

    // The target's host pinned the reply to this node: it carries the
    // load balancer's MAC and the client's address.
    let mut synack = geneve(
        gateway_mac(LB),
        TARGET_MAC,
        &tcp(TARGET, 8080, CLIENT, 40_000, flags::SYN | flags::ACK, 5),
    );
    let v = a.receive(&mut synack, target_host(), 1);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == client_host()),
        "{v:?}"
    );
    let (tuple, via) = inner_via(&synack);
    assert_eq!(tuple, (IpAddr::V4(FRONT), 80, IpAddr::V4(CLIENT), 40_000));
    assert_eq!(via, None);
}

#[test]
fn the_buddy_takes_a_dead_nodes_flows_to_the_same_target() {
    let (mut a, mut b) = shard(LbTargetType::Instance);
    open(&mut a, 40_001);
    deliver(&mut a, node_ip("hp1"), &mut b, 1);
    // hp1 dies; hp2 now serves place 0 as well.
    b.configure_balancers(&[assignment([false, true], LbTargetType::Instance)], 2, 0);
    b.mapped(VNI, TARGET, Some(target_neighbor()), 2);
    // The client's host now sends the flow's next segment to hp2.
    let mut ack = from_client(flags::ACK, 40_001, 78);
    let v = b.receive(&mut ack, client_host(), 3);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == target_host()),
        "{v:?}"
    );
    let (tuple, via) = inner_via(&ack);
    assert_eq!(tuple.2, IpAddr::V4(TARGET));
    // Still the flow of place 0: its replies go to whoever serves place 0.
    assert_eq!(via.map(|v| v.place), Some(0));
}

#[test]
fn an_ip_targets_flow_comes_from_the_front_address_and_its_reply_finds_the_flow() {
    let (mut a, _b) = shard(LbTargetType::Ip);
    let syn = open(&mut a, 40_002);
    let (src, sport, dst, dport) = inner(&syn);
    // spec 9.3: TCP to IP targets does not preserve the client's address.
    assert_eq!(
        (src, dst, dport),
        (IpAddr::V4(FRONT), IpAddr::V4(TARGET), 8080)
    );
    let mut synack = geneve(
        gateway_mac(LB),
        TARGET_MAC,
        &tcp(TARGET, 8080, FRONT, sport, flags::SYN | flags::ACK, 5),
    );
    let v = a.receive(&mut synack, target_host(), 1);
    assert!(
        matches!(v, Verdict::Send { to, .. } if to == client_host()),
        "{v:?}"
    );
    let tuple = inner(&synack);
    assert_eq!(tuple, (IpAddr::V4(FRONT), 80, IpAddr::V4(CLIENT), 40_002));
}

#[test]
fn the_heartbeat_reports_targets_initial_until_probes_decide() {
    let (a, _b) = shard(LbTargetType::Instance);
    let reports = a.target_health();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].target_id, "i-0target");
    assert_eq!(reports[0].state, TargetHealthState::Initial);
    assert_eq!(
        reports[0].reason.as_deref(),
        Some("Elb.RegistrationInProgress")
    );
}

#[test]
fn a_listener_port_with_no_listener_is_a_counted_drop() {
    let (mut a, _b) = shard(LbTargetType::Instance);
    let mut syn = geneve(
        gateway_mac(LB),
        CLIENT_MAC,
        &tcp(CLIENT, 40_003, FRONT, 81, flags::SYN, 1),
    );
    assert_eq!(a.receive(&mut syn, client_host(), 1), Verdict::Done);
    let stats = a.balancer_stats();
    let no_listener = openvpc_hyperplane::nlb::NlbDrop::NoListener as usize;
    assert_eq!(stats[0].drops[no_listener], 1);
}

/// Runs `a`'s health checks at `now_ms` and answers each probe's SYN with
/// a RST from the target (nothing listens), as the target's host would
/// send it back: pinned to the load balancer's MAC.
fn probe_refused(a: &mut Serve, now_ms: u64) -> usize {
    let mut out = Vec::new();
    a.health(now_ms, &mut out);
    let mut answered = 0;
    for (data, verdict) in out {
        let mut buf = PacketBuf::from_frame(&data);
        let buf = match verdict {
            Verdict::Resolve { via, .. } => {
                a.mapped(VNI, TARGET, Some(target_neighbor()), now_ms / 1000);
                a.deliver(&mut buf, VNI, target_neighbor(), via);
                buf
            }
            Verdict::Send { .. } => buf,
            Verdict::Done => continue,
        };
        let ((src, sport, dst, dport), via) = inner_via(&buf);
        assert_eq!(
            (src, dst, dport),
            (IpAddr::V4(FRONT), IpAddr::V4(TARGET), 8080)
        );
        assert_eq!(
            via.map(|v| v.place),
            Some(0),
            "probes come back to their node"
        );
        let g = GeneveHeader::view(buf.data()).unwrap();
        let ip = &buf.data()[GeneveHeader::LEN + g.options.len() + 14..];
        let seq = u32::from_be_bytes(ip[24..28].try_into().unwrap());
        let mut t = TcpRepr::new(8080, sport, flags::RST | flags::ACK);
        t.ack = seq.wrapping_add(1);
        let rst = PacketBuilder {
            ethernet: None,
            ip: IpRepr::V4(Ipv4Repr::new(TARGET, FRONT, 0, 0)),
            l4: L4Repr::Tcp(t),
        }
        .build(b"")
        .unwrap();
        let mut back = geneve(gateway_mac(LB), TARGET_MAC, &rst);
        assert_eq!(
            a.receive(&mut back, target_host(), now_ms / 1000),
            Verdict::Done
        );
        answered += 1;
    }
    // The prober decides on its next run.
    a.health(now_ms + 1, &mut Vec::new());
    answered
}

#[test]
fn probes_from_the_front_address_make_a_refusing_target_unhealthy() {
    // spec 9.4: unhealthy after `unhealthy threshold` (3) failed checks,
    // one per interval (10 s), with Target.FailedHealthChecks.
    let (mut a, _b) = shard(LbTargetType::Instance);
    for round in 0..3 {
        assert_eq!(
            probe_refused(&mut a, round * 10_000),
            1,
            "round {round}: {:?}",
            a.balancer_stats()[0].probes
        );
    }
    let reports = a.target_health();
    assert_eq!(reports[0].state, TargetHealthState::Unhealthy);
    assert_eq!(
        reports[0].reason.as_deref(),
        Some("Target.FailedHealthChecks")
    );
    assert_eq!(a.balancer_stats()[0].groups[0], ("tg1".to_string(), 0, 1));
    // Not yet time for the next probe: nothing is sent.
    let mut out = Vec::new();
    a.health(25_000, &mut out);
    assert!(out.is_empty(), "{out:?}");
}

/// Issue 18 (spec 8.1): a front whose ENI a flow log covers gets records
/// of what crossed it: the client's packets in and on to the target, the
/// target's back in and on to the client.
#[test]
fn a_logged_front_hands_out_records_of_its_eni() {
    use openvpc_dataplane::policy::Way;
    let (mut a, _b) = shard(LbTargetType::Instance);
    let mut logged = assignment([true, true], LbTargetType::Instance);
    logged.flow_logs = vec![logged_eni("eni-0front", FRONT)];
    a.configure_balancers(&[logged], 1, 0);
    assert_eq!(a.logged_enis().len(), 1);
    open(&mut a, 40_001);
    let mut synack = geneve(
        gateway_mac(LB),
        TARGET_MAC,
        &tcp(TARGET, 8080, CLIENT, 40_001, flags::SYN | flags::ACK, 5),
    );
    a.receive(&mut synack, target_host(), 1);
    let mut records = Vec::new();
    a.harvest_flow_logs(&mut records);
    assert_eq!(records.len(), 4, "{records:?}");
    assert!(records.iter().all(|r| r.interface_id == "eni-0front"));
    let find = |way: Way, src: Ipv4Addr, dst: Ipv4Addr| {
        records
            .iter()
            .find(|r| r.direction == way && r.src == IpAddr::V4(src) && r.dst == IpAddr::V4(dst))
            .unwrap_or_else(|| panic!("{way:?} {src} -> {dst} in {records:?}"))
    };
    let client_in = find(Way::Ingress, CLIENT, FRONT);
    assert_eq!((client_in.dst_port, client_in.tcp_flags), (80, 2));
    // spec 9.3: an instance target sees the client's own address.
    let to_target = find(Way::Egress, CLIENT, TARGET);
    assert_eq!(to_target.dst_port, 8080);
    assert_eq!(find(Way::Ingress, TARGET, CLIENT).tcp_flags, 18);
    assert_eq!(find(Way::Egress, FRONT, CLIENT).src_port, 80);
}
