//! The fleet side of network load balancers on the hyperplane (issue 17)
//! over the in-memory store: each load balancer's shuffle shard, its honest
//! lifecycle (`provisioning` → `active` once a node of its shard serves it,
//! `failed` without nodes, `active_impaired` while none serves it), what
//! its shard's nodes are told (fronts, listeners, target groups, targets
//! with their addresses, AZs and draining), and the hosts' internal `/32`
//! routes to its fronts.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::{HYPERPLANE_NODES as NODES, call, first, keep};
use openvpc_control::account::Account;
use openvpc_control::actions::Ctx;
use openvpc_control::elbv2;
use openvpc_control::fleet::nodes::{self, Role};
use openvpc_control::fleet::{Fleet, lb_lifecycle};
use openvpc_control::query::Params;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::edge::EDGE_TTL_MS;
use openvpc_model::host::RouteTargetState;
use openvpc_model::hyperplane::{LbAssignment, LbProtocol, LbTargetType};
use openvpc_model::node::NodeRegistration;

const REGION: &str = "us-east-1";

struct World {
    store: Arc<MemoryStore>,
    a: Account,
    vpc: String,
    /// 10.0.1.0/24 in us-east-1a.
    subnet_a: String,
    /// 10.0.2.0/24 in us-east-1b.
    subnet_b: String,
    sg: String,
}

impl World {
    /// A VPC with a subnet in each of us-east-1a and us-east-1b, hosts h1
    /// (us-east-1a) and h2 (us-east-1b), and a security group.
    fn new() -> World {
        let store = Arc::new(MemoryStore::new());
        let a = common::account();
        let vpc = common::vpc(store.as_ref(), &a);
        let mut w = World {
            store,
            a,
            vpc,
            subnet_a: String::new(),
            subnet_b: String::new(),
            sg: String::new(),
        };
        w.subnet_a = w.subnet("10.0.1.0/24", "us-east-1a");
        w.subnet_b = w.subnet("10.0.2.0/24", "us-east-1b");
        w.sg = common::security_group(w.store.as_ref(), &w.a, &w.vpc, "web");
        common::register_two_zone_hosts(w.store.as_ref());
        w
    }

    fn ok(&self, body: &str) -> String {
        call(self.store.as_ref(), &self.a, body).unwrap()
    }

    fn elb(&self, body: &str) -> String {
        let ctx = Ctx {
            store: self.store.as_ref(),
            account: &self.a,
            region: REGION,
            request_id: "req-test",
            fleet: None,
        };
        elbv2::dispatch(&ctx, &Params::parse(body.as_bytes(), ""))
            .unwrap_or_else(|e| panic!("{body} failed: {e}"))
    }

    fn subnet(&self, cidr: &str, zone: &str) -> String {
        common::subnet_in(self.store.as_ref(), &self.a, &self.vpc, cidr, zone)
    }

    /// Launches one instance; (instance ID, primary ENI ID, private IP).
    fn run(&self, subnet: &str) -> (String, String, Ipv4Addr) {
        let xml = self.ok(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}&SecurityGroupId.1={}",
            self.sg
        ));
        (
            first(&xml, "instanceId"),
            first(&xml, "networkInterfaceId"),
            first(&xml, "privateIpAddress").parse().unwrap(),
        )
    }

    /// An NLB over both subnets; (ARN, record ID).
    fn nlb(&self, name: &str, scheme: &str) -> (String, String) {
        let arn = first(
            &self.elb(&format!(
                "Action=CreateLoadBalancer&Name={name}&Type=network&Scheme={scheme}&Subnets.member.1={}&Subnets.member.2={}",
                self.subnet_a, self.subnet_b
            )),
            "LoadBalancerArn",
        );
        let id = arn.rsplit('/').next().unwrap().to_owned();
        (arn, id)
    }

    fn target_group(&self, name: &str, protocol: &str, port: u16, kind: &str) -> String {
        first(
            &self.elb(&format!(
                "Action=CreateTargetGroup&Name={name}&Protocol={protocol}&Port={port}&VpcId={}&TargetType={kind}",
                self.vpc
            )),
            "TargetGroupArn",
        )
    }

    fn listener(&self, lb: &str, protocol: &str, port: u16, tg: &str) {
        self.elb(&format!(
            "Action=CreateListener&LoadBalancerArn={lb}&Protocol={protocol}&Port={port}&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={tg}"
        ));
    }

    fn record(&self, segment: &str, id: &str) -> Option<serde_json::Value> {
        let key = format!("r/{}/{REGION}/{segment}/{id}", self.a.id);
        let kv = self.store.get(key.as_bytes()).unwrap()?;
        Some(serde_json::from_slice(&kv.value).unwrap())
    }

    fn lb_state(&self, id: &str) -> String {
        self.record("elb-lb", id).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The private addresses of the load balancer's fronts.
    fn fronts(&self, id: &str) -> Vec<Ipv4Addr> {
        self.record("elb-lb", id).unwrap()["zones"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|z| z["private_ip"].as_str())
            .map(|ip| ip.parse().unwrap())
            .collect()
    }

    fn vni(&self) -> u32 {
        self.record("vpc", &self.vpc).unwrap()["vni"]
            .as_u64()
            .unwrap() as u32
    }

    fn fleet(&self) -> Arc<Fleet> {
        Fleet::load(Arc::clone(&self.store) as Arc<dyn Store>).unwrap()
    }

    /// Heartbeats of `which` nodes at `now` (ms), each serving `serving`.
    fn beat(&self, now: u64, which: &[(&str, &str)], serving: &[String]) {
        common::beat_hyperplane(self.store.as_ref(), which, serving, &[], now);
    }
}

/// The node IDs of `gateway`'s stored shard.
fn shard_of(fleet: &Fleet, gateway: &str) -> Vec<String> {
    fleet
        .region_shards()
        .get(REGION)
        .and_then(|r| r.stored.get(gateway).cloned())
        .unwrap_or_default()
}

fn underlay(node: &str) -> IpAddr {
    NODES
        .iter()
        .find(|(id, _)| *id == node)
        .unwrap()
        .1
        .parse()
        .unwrap()
}

/// The load balancer `id`'s assignment as node `node` is told it.
fn assignment(fleet: &Fleet, node: &str, id: &str) -> Option<LbAssignment> {
    fleet
        .hyperplane_delta(REGION, node, 0)
        .0
        .load_balancers
        .into_iter()
        .find(|a| a.id == id)
}

/// The routes of `eni`'s compiled table to `ip`/32.
fn front_route(fleet: &Fleet, eni: &str, ip: Ipv4Addr) -> Option<RouteTargetState> {
    fleet
        .eni_state(eni)
        .unwrap()
        .subnet
        .route_table
        .routes
        .into_iter()
        .find(|r| r.destination.to_string() == format!("{ip}/32"))
        .map(|r| r.target)
}

// Issue 17: a load balancer gets a shuffle shard like a NAT gateway; it is
// provisioning until a node of that shard reports it in `serving`, then
// active; impaired while no live node of its shard serves it, active again
// when one does.
#[test]
fn a_load_balancer_gets_a_shard_and_is_active_once_served() {
    let w = World::new();
    let (_, id) = w.nlb("web", "internal");
    let gateway = format!("elb-{id}");
    let fleet = w.fleet();
    w.beat(1_000, &NODES, &[]);
    keep(&fleet);
    let shard = shard_of(&fleet, &gateway);
    assert_eq!(shard.len(), 2, "a shard of k = 2: {shard:?}");
    assert_eq!(w.lb_state(&id), "provisioning", "no node serves it yet");
    // The shard's nodes, and only they, are told to serve it.
    for (node, _) in NODES {
        let (delta, news) = fleet.hyperplane_delta(REGION, node, 0);
        assert!(news);
        let mine = shard.iter().any(|n| n == node);
        assert_eq!(delta.load_balancers.len(), usize::from(mine), "{node}");
        let rev = delta.revision;
        assert!(
            !fleet.hyperplane_delta(REGION, node, rev).1,
            "no news since"
        );
    }
    // A node outside the shard reporting it does not count.
    let outsider: Vec<(&str, &str)> = NODES
        .iter()
        .copied()
        .filter(|(n, _)| !shard.iter().any(|s| s == n))
        .collect();
    w.beat(1_100, &outsider, std::slice::from_ref(&gateway));
    keep(&fleet);
    assert_eq!(w.lb_state(&id), "provisioning");
    // One shard node reports it programmed: active.
    let first_node: Vec<(&str, &str)> = NODES
        .iter()
        .copied()
        .filter(|(n, _)| *n == shard[0])
        .collect();
    w.beat(1_200, &first_node, std::slice::from_ref(&gateway));
    keep(&fleet);
    assert_eq!(w.lb_state(&id), "active");
    assert!(
        w.record("elb-lb", &id).unwrap()["state_reason"].is_null(),
        "no reason while active"
    );
    // It stops serving it (and no other shard node does): impaired.
    w.beat(1_300, &first_node, &[]);
    keep(&fleet);
    assert_eq!(w.lb_state(&id), "active_impaired");
    assert!(w.record("elb-lb", &id).unwrap()["state_reason"].is_string());
    w.beat(1_400, &first_node, std::slice::from_ref(&gateway));
    keep(&fleet);
    assert_eq!(w.lb_state(&id), "active");
}

// Issue 17: with no hyperplane node in the region, a load balancer fails
// after the wait, with a reason saying so, and loses its shard.
#[test]
fn a_load_balancer_without_nodes_fails_with_a_reason() {
    let w = World::new();
    let (_, id) = w.nlb("lonely", "internal");
    let fleet = w.fleet();
    keep(&fleet);
    assert_eq!(w.lb_state(&id), "provisioning");
    let created = w.record("elb-lb", &id).unwrap()["created"]
        .as_u64()
        .unwrap();
    let early = lb_lifecycle::settle_once(
        &fleet,
        (created + lb_lifecycle::UNSERVED_SECS - 2) * 1000,
        Default::default(),
    )
    .unwrap();
    assert!(early.is_empty(), "still within the wait");
    let moved = lb_lifecycle::settle_once(
        &fleet,
        (created + lb_lifecycle::UNSERVED_SECS + 1) * 1000,
        Default::default(),
    )
    .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(w.lb_state(&id), "failed");
    let reason = w.record("elb-lb", &id).unwrap()["state_reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("No hyperplane node of region us-east-1"),
        "{reason}"
    );
    // A failed load balancer has no shard and is served by no node.
    w.beat(2_000, &NODES, &[]);
    keep(&fleet);
    assert!(shard_of(&fleet, &format!("elb-{id}")).is_empty());
    for (node, _) in NODES {
        assert!(assignment(&fleet, node, &id).is_none());
    }
}

// Issue 17 and spec 9.1-9.5: what a shard node is told: the fronts (one
// per AZ), the TCP/UDP listeners with their groups, each group's health
// check and attributes, and its targets at their addresses and AZs (an
// instance's primary ENI, an IP target's subnet, or `all`); a deregistered
// target drains until its delay ends; a stopped instance is invalid.
#[test]
fn the_assignment_carries_fronts_listeners_groups_and_targets() {
    let w = World::new();
    let (lb, id) = w.nlb("web", "internal");
    let (i1, _, ip1) = w.run(&w.subnet_a);
    let (i2, _, ip2) = w.run(&w.subnet_b);
    let web = w.target_group("web", "TCP", 80, "instance");
    let dns = w.target_group("dns", "UDP", 53, "ip");
    let tg_id = |arn: &str| arn.rsplit('/').next().unwrap().to_owned();
    w.elb(&format!(
        "Action=RegisterTargets&TargetGroupArn={web}&Targets.member.1.Id={i1}&Targets.member.2.Id={i2}&Targets.member.2.Port=8080"
    ));
    w.elb(&format!(
        "Action=RegisterTargets&TargetGroupArn={dns}&Targets.member.1.Id=10.0.2.77&Targets.member.2.Id=10.0.200.9&Targets.member.2.AvailabilityZone=all"
    ));
    w.elb(&format!(
        "Action=ModifyTargetGroupAttributes&TargetGroupArn={web}&Attributes.member.1.Key=deregistration_delay.timeout_seconds&Attributes.member.1.Value=60&Attributes.member.2.Key=load_balancing.cross_zone.enabled&Attributes.member.2.Value=true&Attributes.member.3.Key=preserve_client_ip.enabled&Attributes.member.3.Value=false"
    ));
    w.listener(&lb, "TCP", 80, &web);
    w.listener(&lb, "UDP", 53, &dns);
    let fleet = w.fleet();
    w.beat(1_000, &NODES, &[]);
    keep(&fleet);
    let shard = shard_of(&fleet, &format!("elb-{id}"));
    let node = shard[0].as_str();
    let a = assignment(&fleet, node, &id).unwrap();
    assert_eq!((a.vpc_id.as_str(), a.vni), (w.vpc.as_str(), w.vni()));
    assert!(
        !a.internet_facing && a.edges.is_empty(),
        "internal: no edges"
    );
    assert!(!a.cross_zone, "spec 9.5: off by default");
    let fronts: Vec<(String, String, Ipv4Addr)> = a
        .fronts
        .iter()
        .map(|f| {
            (
                f.subnet_id.clone(),
                f.availability_zone.clone(),
                f.private_ip,
            )
        })
        .collect();
    let ips = w.fronts(&id);
    assert_eq!(ips.len(), 2, "one address per AZ");
    assert!(
        fronts.contains(&(w.subnet_a.clone(), "us-east-1a".into(), ips[0])),
        "{fronts:?}"
    );
    assert!(
        fronts.contains(&(w.subnet_b.clone(), "us-east-1b".into(), ips[1])),
        "{fronts:?}"
    );
    let members: Vec<IpAddr> = a.shard.iter().filter_map(|m| m.underlay_ip).collect();
    assert_eq!(
        members,
        shard.iter().map(|n| underlay(n)).collect::<Vec<_>>()
    );
    let listeners: Vec<(u16, LbProtocol, String)> = a
        .listeners
        .iter()
        .map(|l| (l.port, l.protocol, l.target_group_id.clone()))
        .collect();
    assert_eq!(
        listeners,
        [
            (53, LbProtocol::Udp, tg_id(&dns)),
            (80, LbProtocol::Tcp, tg_id(&web))
        ]
    );
    let group = |arn: &str| {
        a.target_groups
            .iter()
            .find(|g| g.id == tg_id(arn))
            .unwrap()
            .clone()
    };
    let g = group(&web);
    assert_eq!(
        (g.protocol, g.port, g.target_type),
        (LbProtocol::Tcp, 80, LbTargetType::Instance)
    );
    assert_eq!(g.deregistration_delay_secs, 60);
    assert_eq!(g.cross_zone, Some(true));
    assert_eq!(g.preserve_client_ip, Some(false));
    assert_eq!(g.health_check.port, None, "traffic-port");
    let targets: Vec<(String, Ipv4Addr, u16, String, bool)> = g
        .targets
        .iter()
        .map(|t| {
            (
                t.id.clone(),
                t.ip,
                t.port,
                t.availability_zone.clone(),
                t.invalid_state,
            )
        })
        .collect();
    assert!(
        targets.contains(&(i1.clone(), ip1, 80, "us-east-1a".into(), false)),
        "{targets:?}"
    );
    assert!(
        targets.contains(&(i2.clone(), ip2, 8080, "us-east-1b".into(), false)),
        "{targets:?}"
    );
    assert!(g.targets.iter().all(|t| t.draining_until_ms.is_none()));
    let d = group(&dns);
    assert_eq!(
        (d.protocol, d.target_type),
        (LbProtocol::Udp, LbTargetType::Ip)
    );
    assert_eq!(d.deregistration_delay_secs, 300, "the default");
    assert_eq!(d.cross_zone, None, "use_load_balancer_configuration");
    assert_eq!(d.preserve_client_ip, None, "spec 9.3's default");
    let zones: Vec<(String, String)> = d
        .targets
        .iter()
        .map(|t| (t.id.clone(), t.availability_zone.clone()))
        .collect();
    assert!(
        zones.contains(&("10.0.2.77".into(), "us-east-1b".into())),
        "{zones:?}"
    );
    assert!(
        zones.contains(&("10.0.200.9".into(), "all".into())),
        "{zones:?}"
    );

    // Deregistered, a target drains for the group's delay; the node hears.
    let rev = fleet.hyperplane_delta(REGION, node, 0).0.revision;
    w.elb(&format!(
        "Action=DeregisterTargets&TargetGroupArn={web}&Targets.member.1.Id={i1}"
    ));
    fleet.catch_up().unwrap();
    assert!(
        fleet.hyperplane_delta(REGION, node, rev).1,
        "news for the node"
    );
    let t = group_target(&assignment(&fleet, node, &id).unwrap(), &tg_id(&web), &i1);
    let at = w.record("elb-tg", &tg_id(&web)).unwrap()["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == i1.as_str())
        .unwrap()["deregistered_at"]
        .as_u64()
        .unwrap();
    assert_eq!(t.draining_until_ms, Some((at + 60) * 1000));

    // A stopped instance is an invalid target; the node hears.
    let rev = fleet.revision();
    w.ok(&format!("Action=StopInstances&InstanceId.1={i2}"));
    fleet.catch_up().unwrap();
    assert!(
        fleet.hyperplane_delta(REGION, node, rev).1,
        "news for the node"
    );
    let t = group_target(&assignment(&fleet, node, &id).unwrap(), &tg_id(&web), &i2);
    assert!(t.invalid_state, "{t:?}");
}

fn group_target(
    a: &LbAssignment,
    group: &str,
    target: &str,
) -> openvpc_model::hyperplane::LbTarget {
    a.target_groups
        .iter()
        .find(|g| g.id == group)
        .unwrap()
        .targets
        .iter()
        .find(|t| t.id == target)
        .unwrap()
        .clone()
}

// Issue 17: every host of the VPC routes each front's address (/32) to the
// load balancer's shard nodes, per place (a dead node's by its buddy); the
// route is internal (DescribeRouteTables does not show it); it goes with
// the load balancer, and so do its shard and its nodes' assignment.
#[test]
fn hosts_route_the_fronts_to_the_shard_until_the_load_balancer_goes() {
    let w = World::new();
    let (_, eni_a, _) = w.run(&w.subnet_a);
    let (_, eni_b, _) = w.run(&w.subnet_b);
    let fleet = w.fleet();
    w.beat(1_000, &NODES, &[]);
    keep(&fleet);
    let (lb, id) = w.nlb("web", "internal");
    let gateway = format!("elb-{id}");
    keep(&fleet);
    let shard = shard_of(&fleet, &gateway);
    let served: Vec<IpAddr> = shard.iter().map(|n| underlay(n)).collect();
    let fronts = w.fronts(&id);
    assert_eq!(fronts.len(), 2);
    for eni in [&eni_a, &eni_b] {
        for ip in &fronts {
            assert_eq!(
                front_route(&fleet, eni, *ip),
                Some(RouteTargetState::Gateway {
                    gateway_id: gateway.clone(),
                    nodes: served.clone()
                }),
                "{eni} to {ip}"
            );
        }
    }
    // Internal: the route tables the API shows have no such route.
    let tables = w.ok(&format!(
        "Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={}",
        w.vpc
    ));
    for ip in &fronts {
        assert!(!tables.contains(&format!("{ip}/32")), "{tables}");
    }
    assert!(!tables.contains(&gateway), "{tables}");
    // Issue 18: the VPC's resolver answers its name with its fronts.
    let dns_name = first(
        &w.elb(&format!(
            "Action=DescribeLoadBalancers&LoadBalancerArns.member.1={lb}"
        )),
        "DNSName",
    );
    let names = fleet.eni_state(&eni_a).unwrap().dns.unwrap().names;
    assert_eq!(names.len(), 1);
    assert_eq!(names[0].name, dns_name);
    let mut answered = names[0].addresses.clone();
    let mut want = fronts.clone();
    answered.sort();
    want.sort();
    assert_eq!(answered, want);

    // A node of the shard dies: its place is served by its buddy until the
    // keeper replaces it, and the hosts follow.
    let dead = shard[0].clone();
    let alive: Vec<(&str, &str)> = NODES.iter().copied().filter(|(n, _)| *n != dead).collect();
    w.beat(2_000 + EDGE_TTL_MS, &alive, &[]);
    nodes::sweep(w.store.as_ref(), 2_001 + EDGE_TTL_MS).unwrap();
    fleet.catch_up().unwrap();
    let Some(RouteTargetState::Gateway { nodes: now, .. }) = front_route(&fleet, &eni_a, fronts[0])
    else {
        panic!("no route");
    };
    assert_eq!(
        now,
        vec![served[1], served[1]],
        "the buddy serves both places"
    );
    keep(&fleet);
    let Some(RouteTargetState::Gateway { nodes: now, .. }) = front_route(&fleet, &eni_a, fronts[0])
    else {
        panic!("no route");
    };
    assert_eq!(now.len(), 2);
    assert!(
        !now.contains(&underlay(&dead)) && now[1] == served[1],
        "{now:?}"
    );

    // Deleted: the routes, the shard and the assignment go.
    let rev = fleet.revision();
    w.elb(&format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}"));
    keep(&fleet);
    for ip in &fronts {
        assert_eq!(front_route(&fleet, &eni_a, *ip), None);
        assert_eq!(front_route(&fleet, &eni_b, *ip), None);
    }
    assert!(shard_of(&fleet, &gateway).is_empty());
    for (node, _) in NODES {
        assert!(fleet.hyperplane_delta(REGION, node, rev).1, "{node} hears");
        assert!(assignment(&fleet, node, &id).is_none());
    }
    // The hosts were told: their watch from before has the ENIs again.
    let delta = fleet.delta(REGION, "h1", rev);
    assert!(
        delta.upserts.iter().any(|e| e.eni_id == eni_a),
        "h1 re-sent"
    );
}

// Issue 17: an internet-facing load balancer's nodes are told the region's
// live edges and each front's public address.
#[test]
fn an_internet_facing_load_balancer_is_told_its_edges() {
    let w = World::new();
    common::attached_igw(w.store.as_ref(), &w.a, &w.vpc);
    nodes::register(
        w.store.as_ref(),
        Role::Edge,
        REGION,
        &NodeRegistration {
            node_id: "e1".into(),
            underlay_ip: "10.254.0.2".parse().unwrap(),
            serving: Vec::new(),
            target_health: Vec::new(),
        },
        1_000,
    )
    .unwrap();
    let (lb, id) = w.nlb("pub", "internet-facing");
    let fleet = w.fleet();
    w.beat(1_000, &NODES, &[]);
    keep(&fleet);
    let shard = shard_of(&fleet, &format!("elb-{id}"));
    let a = assignment(&fleet, &shard[0], &id).unwrap();
    assert!(a.internet_facing);
    assert_eq!(a.edges, vec!["10.254.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(a.fronts.len(), 2);
    assert!(
        a.fronts.iter().all(|f| f.public_ip.is_some()),
        "{:?}",
        a.fronts
    );
    // The edges translate each front's public address to its private one
    // and hand the traffic to the shard's nodes, per place.
    let served: Vec<IpAddr> = shard.iter().map(|n| underlay(n)).collect();
    let (edge, _) = fleet.edge_delta(REGION, 0);
    for f in &a.fronts {
        let public = f.public_ip.unwrap();
        let m = edge
            .upserts
            .iter()
            .find(|m| m.public == public)
            .unwrap_or_else(|| panic!("{public} not mapped: {edge:?}"));
        assert_eq!((m.private, m.vni), (f.private_ip, w.vni()));
        assert_eq!(m.nat_nodes, served);
        assert_eq!(m.host, served[0]);
    }
    // Deleted: the edges drop its addresses.
    let rev = fleet.revision();
    w.elb(&format!("Action=DeleteLoadBalancer&LoadBalancerArn={lb}"));
    keep(&fleet);
    let (edge, news) = fleet.edge_delta(REGION, rev);
    assert!(news);
    for f in &a.fronts {
        assert!(edge.removals.contains(&f.public_ip.unwrap()), "{edge:?}");
    }
}
