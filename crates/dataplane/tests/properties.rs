//! Property tests of the router over the in-memory fabric: isolation between
//! VPCs with overlapping addresses under random rules, the fast path
//! agreeing with the slow path byte for byte, and explain mode telling the
//! fate of the real packet.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use openvpc_dataplane::explain::Fate;
use openvpc_dataplane::fabric::Delivery;
use openvpc_dataplane::policy::{NaclEntry, NetworkAcl, SecurityGroup, SgRule};
use openvpc_model::rule::{RuleAction, TrafficMatch};
use openvpc_packet::tcp::flags;
use proptest::prelude::*;

const VPC: &str = "10.0.0.0/16";

/// A random rule: all traffic or a TCP/UDP port range, from a random CIDR
/// inside or around the VPC.
fn traffic() -> impl Strategy<Value = TrafficMatch> {
    prop_oneof![
        Just(TrafficMatch::ALL),
        (0u16..8, 0u16..8).prop_map(|(a, b)| TrafficMatch::tcp(a.min(b), a.max(b))),
        (0u16..8, 0u16..8).prop_map(|(a, b)| TrafficMatch::udp(a.min(b), a.max(b))),
    ]
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0.0.0.0/0".to_string()),
        Just("10.0.0.0/16".to_string()),
        (1u8..3, 0u8..4).prop_map(|(s, h)| format!("10.0.{s}.{}/32", 10 + h)),
        (1u8..3).prop_map(|s| format!("10.0.{s}.0/24")),
    ]
}

/// Rules biased towards admitting traffic, so most probes get through and
/// the properties are exercised on delivered frames, not only on drops.
fn sg_rules() -> impl Strategy<Value = Vec<SgRule>> {
    let rule = (traffic(), cidr()).prop_map(|(t, c)| SgRule::new(t, [net(&c)]));
    (prop::collection::vec(rule, 0..4), any::<bool>()).prop_map(|(mut rules, open)| {
        if open {
            rules.push(SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")]));
        }
        rules
    })
}

fn nacl_entry() -> impl Strategy<Value = NaclEntry> {
    (1u16..200, traffic(), cidr(), any::<bool>()).prop_map(|(n, t, c, allow)| NaclEntry {
        rule_number: n,
        traffic: t,
        cidr: net(&c),
        action: if allow {
            RuleAction::Allow
        } else {
            RuleAction::Deny
        },
    })
}

/// Random entries, usually ending in an allow-all as real ACLs do.
fn nacl_side() -> impl Strategy<Value = Vec<NaclEntry>> {
    (prop::collection::vec(nacl_entry(), 0..4), 0u8..4).prop_map(|(mut entries, end)| {
        if end > 0 {
            entries.push(NaclEntry {
                rule_number: 1000,
                traffic: TrafficMatch::ALL,
                cidr: net("0.0.0.0/0"),
                action: RuleAction::Allow,
            });
        }
        entries
    })
}

fn nacl() -> impl Strategy<Value = NetworkAcl> {
    (nacl_side(), nacl_side()).prop_map(|(i, e)| NetworkAcl::new("acl-r", i, e))
}

/// One VPC's random policy: per-subnet ACLs and one group per ENI.
#[derive(Debug, Clone)]
struct VpcPolicy {
    acls: [NetworkAcl; 2],
    groups: Vec<(Vec<SgRule>, Vec<SgRule>)>,
}

fn vpc_policy() -> impl Strategy<Value = VpcPolicy> {
    (
        nacl(),
        nacl(),
        prop::collection::vec((sg_rules(), sg_rules()), 4),
    )
        .prop_map(|(a, b, groups)| VpcPolicy {
            acls: [a, b],
            groups,
        })
}

/// A VPC whose ACLs and groups admit everything, both ways.
fn open_policy() -> VpcPolicy {
    let all = || vec![SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")])];
    VpcPolicy {
        acls: [
            NetworkAcl::allow_all("acl-open-1"),
            NetworkAcl::allow_all("acl-open-2"),
        ],
        groups: vec![(all(), all()); 4],
    }
}

/// A packet: from ENI `from` (0..4) of VPC `vpc`, to an address of the
/// shared plan, protocol and ports from a small set so rules often match.
#[derive(Debug, Clone)]
struct Probe {
    vpc: usize,
    from: usize,
    to: usize,
    udp: bool,
    sport: u16,
    dport: u16,
    syn_ack: bool,
}

fn probe(vpcs: usize) -> impl Strategy<Value = Probe> {
    (
        0..vpcs,
        0usize..4,
        0usize..5,
        any::<bool>(),
        0u16..8,
        0u16..8,
        any::<bool>(),
    )
        .prop_map(|(vpc, from, to, udp, sport, dport, syn_ack)| Probe {
            vpc,
            from,
            to,
            udp,
            sport,
            dport,
            syn_ack,
        })
}

/// The ENIs of every VPC sit at the same addresses: 10.0.1.10, 10.0.1.11 in
/// subnet 1 and 10.0.2.10, 10.0.2.11 in subnet 2, spread over three hosts.
const ADDRS: [&str; 5] = [
    "10.0.1.10",
    "10.0.1.11",
    "10.0.2.10",
    "10.0.2.11",
    "10.0.3.10",
];

fn build(policies: &[VpcPolicy]) -> TestFabric {
    let mut f = TestFabric::new("isolation_property");
    for _ in 0..3 {
        f.add_host();
    }
    for (v, p) in policies.iter().enumerate() {
        let vni = 100 + v as u32;
        let table = routes(VPC, vec![]);
        let subnets = [
            subnet(
                &format!("subnet-{v}-1"),
                "10.0.1.0/24",
                p.acls[0].clone(),
                table.clone(),
            ),
            subnet(
                &format!("subnet-{v}-2"),
                "10.0.2.0/24",
                p.acls[1].clone(),
                table,
            ),
        ];
        for (i, a) in ADDRS[..4].iter().enumerate() {
            let (ingress, egress) = p.groups[i].clone();
            let g = Arc::new(SecurityGroup {
                id: format!("sg-{v}-{i}"),
                ingress,
                egress,
            });
            let cfg = eni(
                &format!("eni-{v}-{i}"),
                (v * 10 + i + 1) as u8,
                a,
                &subnets[i / 2],
                vni,
                VPC,
                vec![g],
            );
            f.add_eni((v + i) % 3, cfg).unwrap();
        }
    }
    f
}

fn packet(p: &Probe) -> Vec<u8> {
    let src = ADDRS[p.from];
    let dst = ADDRS[p.to];
    let n = (p.vpc * 10 + p.from + 1) as u8;
    if p.udp {
        udp(n, src, p.sport, dst, p.dport)
    } else {
        let f = if p.syn_ack {
            flags::SYN | flags::ACK
        } else {
            flags::SYN
        };
        tcp(n, src, p.sport, dst, p.dport, f)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Isolation: whatever the rules, a frame sent in one VPC is delivered
    /// only to an ENI of that VPC, and only to the ENI that owns the
    /// destination address.
    #[test]
    fn frames_never_cross_vpcs(
        mut policies in prop::collection::vec(vpc_policy(), 2..4),
        probes in prop::collection::vec(probe(4), 1..40),
        step_ms in 0u64..40_000,
    ) {
        // One more VPC, at the same addresses, that lets everything through:
        // its probes must arrive, so a fabric that dropped every packet
        // would fail here instead of passing vacuously.
        policies.push(open_policy());
        let open = policies.len() - 1;
        let mut f = build(&policies);
        let mut delivered_in_open = 0;
        let control = Probe { vpc: open, from: 0, to: 3, udp: true, sport: 1, dport: 2, syn_ack: false };
        for p in probes.iter().filter(|p| p.vpc < policies.len()).chain([&control]) {
            let d = f.send(&format!("eni-{}-{}", p.vpc, p.from), &packet(p));
            if let Delivery::Delivered { eni, .. } = &d {
                prop_assert_eq!(eni, &format!("eni-{}-{}", p.vpc, p.to), "probe {:?}", p);
                if p.vpc == open {
                    delivered_in_open += 1;
                }
            } else if p.vpc == open && p.to < 4 && !p.syn_ack && p.from != p.to {
                prop_assert!(false, "the open VPC dropped {:?}: {:?}", p, d);
            }
            f.advance(step_ms);
        }
        prop_assert!(delivered_in_open > 0);
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Explain mode is the production pipeline: for random rules in
    /// overlapping VPCs and random probes, the fate it explains is the fate
    /// of the packet then sent, and it leaves the routers as they were.
    #[test]
    fn explain_tells_the_real_fate(
        policies in prop::collection::vec(vpc_policy(), 1..3),
        probes in prop::collection::vec(probe(2), 1..30),
    ) {
        let mut f = build(&policies);
        let mut compared = 0;
        for p in &probes {
            let p = &Probe { vpc: p.vpc % policies.len(), ..p.clone() };
            let eni = format!("eni-{}-{}", p.vpc, p.from);
            let frame = packet(p);
            let flows: Vec<usize> = f.routers.iter().map(|r| r.flow_count()).collect();
            let explained = f.explain(&eni, &frame).fate;
            let after: Vec<usize> = f.routers.iter().map(|r| r.flow_count()).collect();
            prop_assert_eq!(&flows, &after, "explaining changed a flow table");
            let real = match f.send(&eni, &frame) {
                Delivery::Delivered { eni, .. } => Fate::Delivered { eni },
                Delivery::Dropped { reason, .. } => Fate::Dropped(reason),
                other => {
                    prop_assert!(false, "unexpected {:?} for {:?}", other, p);
                    continue;
                }
            };
            prop_assert_eq!(&explained, &real, "probe {:?}", p);
            compared += 1;
        }
        prop_assert!(compared > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The fast path gives the same verdict and the same bytes as the slow
    /// path for the same packet.
    #[test]
    fn fast_path_equals_slow_path(
        policy in vpc_policy(),
        warmup in prop::collection::vec(probe(1), 0..10),
        p in probe(1),
    ) {
        // Slow: a fresh region sees the packet once, after the same warm-up.
        let mut slow = build(std::slice::from_ref(&policy));
        let mut fast = build(std::slice::from_ref(&policy));
        for w in &warmup {
            slow.send(&format!("eni-0-{}", w.from), &packet(w));
            fast.send(&format!("eni-0-{}", w.from), &packet(w));
        }
        // A SYN-ACK cannot open a flow; first packets here can.
        let p = Probe { syn_ack: false, ..p };
        let frame = packet(&p);
        let eni = format!("eni-0-{}", p.from);
        let first = fast.send(&eni, &frame);
        let hits_before: u64 = fast.routers.iter().map(|r| r.stats().fast_path).sum();
        let again = fast.send(&eni, &frame);
        let hits_after: u64 = fast.routers.iter().map(|r| r.stats().fast_path).sum();
        let reference = slow.send(&eni, &frame);
        prop_assert_eq!(&first, &reference);
        prop_assert_eq!(&again, &reference);
        // A delivered first packet left an entry at its source host: the
        // second must have been served from it, or this compares the slow
        // path with itself.
        if matches!(first, Delivery::Delivered { .. }) {
            prop_assert!(hits_after > hits_before, "the second send missed the fast path");
        }
    }

    /// The ACL decides as a naive reference does: of all matching entries,
    /// the lowest number; none matching is the `*` deny.
    #[test]
    fn nacl_equals_naive_reference(acl_entries in prop::collection::vec(
        (1u16..50, traffic(), cidr(), any::<bool>()), 0..12),
        port in 0u16..100, udp_proto: bool, peer_host in 0u8..4, peer_subnet in 1u8..4,
    ) {
        // Unique rule numbers, as the API guarantees.
        let mut seen = std::collections::HashSet::new();
        let entries: Vec<NaclEntry> = acl_entries.into_iter().filter(|e| seen.insert(e.0)).map(|(n, t, c, a)| NaclEntry {
            rule_number: n, traffic: t, cidr: net(&c), action: if a { RuleAction::Allow } else { RuleAction::Deny },
        }).collect();
        let acl = NetworkAcl::new("acl", entries.clone(), vec![]);
        let fields = openvpc_model::rule::PacketFields { protocol: if udp_proto { 17 } else { 6 }, dst_port: port, ..Default::default() };
        let peer = addr(&format!("10.0.{peer_subnet}.{}", 10 + peer_host));
        let naive = entries.iter()
            .filter(|e| e.cidr.contains(&peer) && e.traffic.matches(&fields))
            .min_by_key(|e| e.rule_number)
            .map_or(RuleAction::Deny, |e| e.action);
        prop_assert_eq!(acl.evaluate(openvpc_dataplane::policy::Way::Ingress, peer, &fields).action, naive);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Processing frames in batches gives the same outputs and bytes as one
    /// at a time, whatever mix of new flows, repeats and odd frames a batch
    /// holds.
    #[test]
    fn batches_equal_one_at_a_time(
        picks in prop::collection::vec((0usize..64, 0u8..8), 1..100),
    ) {
        use openvpc_dataplane::workload::{Workload, frame};
        use openvpc_dataplane::{Output, PacketBuf};
        let mut one = Workload::new(64);
        let mut batched = Workload::new(64);
        let frames: Vec<Vec<u8>> = picks.iter().map(|(i, kind)| match kind {
            0 => frame(*i, flags::SYN)[..20].to_vec(),       // truncated
            1 => { let mut f = frame(*i, flags::ACK); f[0] = 0xff; f } // broadcast
            2 => { let mut f = frame(*i, flags::ACK); f[12] = 0x08; f[13] = 0x06; f } // "ARP"
            _ => frame(*i, flags::ACK),
        }).collect();
        let mut expected = Vec::new();
        for f in &frames {
            let mut b = PacketBuf::from_frame(f);
            let out = one.router.from_instance(one.eni, &mut b, 5_000);
            expected.push((out, b.data().to_vec()));
        }
        let mut bufs: Vec<PacketBuf> = frames.iter().map(|f| PacketBuf::from_frame(f)).collect();
        let mut outs = vec![Output::Pending; bufs.len()];
        let eni = batched.eni;
        batched.router.from_instance_batch(eni, &mut bufs, &mut outs, 5_000);
        for (k, ((out, bytes), (got, buf))) in expected.iter().zip(outs.iter().zip(&bufs)).enumerate() {
            prop_assert_eq!(out, got, "frame {}", k);
            prop_assert_eq!(&bytes[..], buf.data(), "frame {}", k);
        }
        prop_assert_eq!(one.router.stats(), batched.router.stats());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The receive side too: a batch of underlay datagrams (valid, for other
    /// VNIs, truncated, with critical options) gives the same outputs and
    /// bytes as one at a time.
    #[test]
    fn underlay_batches_equal_one_at_a_time(
        picks in prop::collection::vec((0usize..4, 0usize..5, 0u8..6, 0u16..4), 1..60),
    ) {
        use openvpc_dataplane::{Output, PacketBuf};
        use openvpc_packet::geneve::{GeneveOptionRepr, GeneveRepr};
        let policy = VpcPolicy {
            acls: [NetworkAcl::allow_all("a"), NetworkAcl::allow_all("b")],
            groups: vec![(vec![SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")])], vec![SgRule::new(TrafficMatch::ALL, [net("0.0.0.0/0")])]); 4],
        };
        let mut one = build(std::slice::from_ref(&policy));
        let mut batched = build(std::slice::from_ref(&policy));
        let datagrams: Vec<Vec<u8>> = picks.iter().map(|(from, to, kind, port)| {
            let p = Probe { vpc: 0, from: *from, to: *to, udp: true, sport: *port, dport: 53, syn_ack: false };
            let inner = packet(&p);
            let mut g = GeneveRepr::ethernet(if *kind == 1 { 999 } else { 100 });
            if *kind == 2 {
                g.options.push(GeneveOptionRepr { class: 1, option_type: 1, critical: true, data: vec![0; 4] });
            }
            let mut d = vec![0u8; g.header_len()];
            g.emit(&mut d).unwrap();
            d.extend_from_slice(&inner);
            if *kind == 3 { d.truncate(30); }
            d
        }).collect();
        // Host 0 receives everything, as if its peers had sent it.
        let mut expected = Vec::new();
        for d in &datagrams {
            let mut b = PacketBuf::from_frame(d);
            let out = one.routers[0].from_underlay(&mut b, 5_000);
            expected.push((out, b.data().to_vec()));
        }
        let mut bufs: Vec<PacketBuf> = datagrams.iter().map(|d| PacketBuf::from_frame(d)).collect();
        let mut outs = vec![Output::Pending; bufs.len()];
        batched.routers[0].from_underlay_batch(&mut bufs, &mut outs, 5_000);
        for (k, ((out, bytes), (got, buf))) in expected.iter().zip(outs.iter().zip(&bufs)).enumerate() {
            prop_assert_eq!(out, got, "datagram {}", k);
            prop_assert_eq!(&bytes[..], buf.data(), "datagram {}", k);
        }
        prop_assert_eq!(one.routers[0].drops(), batched.routers[0].drops());
        prop_assert_eq!(one.routers[0].stats(), batched.routers[0].stats());
    }
}
