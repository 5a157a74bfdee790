//! `openvpc trace` (TracePacket) and the Reachability Analyzer through a
//! network load balancer (issue 17, item 6), over the in-memory store and
//! the fleet: the host's route to the load balancer's node, the node's own
//! load balancer core (listener, target group, the target the flow hash
//! picks with the targets' health as the nodes report it), then the
//! target's ACL and security groups as its host runs them.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;

use common::{HYPERPLANE_NODES as NODES, all, call, first};
use openvpc_control::account::Account;
use openvpc_control::actions::Ctx;
use openvpc_control::elbv2;
use openvpc_control::fleet::Fleet;
use openvpc_control::query::Params;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_dataplane::explain::PROBE_SOURCE_PORT;
use openvpc_hyperplane::nlb::flow_hash;
use openvpc_model::lifecycle::TargetHealthState;
use openvpc_model::node::TargetHealthReport;

const REGION: &str = "us-east-1";

struct Target {
    id: String,
    ip: Ipv4Addr,
}

/// A VPC with a subnet in each of us-east-1a and us-east-1b and a host in
/// each; a client in us-east-1a; three instance targets (two whose group
/// lets TCP 80 in, one whose group does not) of a TCP:80 target group with
/// cross-zone on (unless asked otherwise), behind an internal NLB with a TCP:80 listener, served by
/// its shard of three hyperplane nodes.
struct World {
    store: Arc<MemoryStore>,
    a: Account,
    fleet: Arc<Fleet>,
    client: Target,
    targets: Vec<Target>,
    closed_sg: String,
    lb_arn: String,
    lb_id: String,
    tg_arn: String,
    tg_id: String,
}

impl World {
    fn new() -> World {
        World::with_cross_zone(true)
    }

    fn with_cross_zone(cross_zone: bool) -> World {
        let store = Arc::new(MemoryStore::new());
        let a = common::account();
        let vpc = common::vpc(store.as_ref(), &a);
        common::register_two_zone_hosts(store.as_ref());
        let fleet = Fleet::load(Arc::clone(&store) as Arc<dyn Store>).unwrap();
        let ok = |body: &str| {
            call(store.as_ref(), &a, body)
                .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message))
        };
        let subnet_a = common::subnet_in(store.as_ref(), &a, &vpc, "10.0.1.0/24", "us-east-1a");
        let subnet_b = common::subnet_in(store.as_ref(), &a, &vpc, "10.0.2.0/24", "us-east-1b");
        let web = common::security_group(store.as_ref(), &a, &vpc, "web");
        ok(&format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={web}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16"
        ));
        let closed_sg = common::security_group(store.as_ref(), &a, &vpc, "closed");
        let run = |subnet: &str, sg: &str| {
            let xml = ok(&format!(
                "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}&SecurityGroupId.1={sg}"
            ));
            Target {
                id: first(&xml, "instanceId"),
                ip: first(&xml, "privateIpAddress").parse().unwrap(),
            }
        };
        let client = run(&subnet_a, &web);
        let targets = vec![
            run(&subnet_a, &web),
            run(&subnet_b, &web),
            run(&subnet_a, &closed_sg),
        ];
        let mut w = World {
            store,
            a,
            fleet,
            client,
            targets,
            closed_sg,
            lb_arn: String::new(),
            lb_id: String::new(),
            tg_arn: String::new(),
            tg_id: String::new(),
        };
        w.lb_arn = first(
            &w.elb(&format!(
                "Action=CreateLoadBalancer&Name=web&Type=network&Scheme=internal&Subnets.member.1={subnet_a}&Subnets.member.2={subnet_b}"
            )),
            "LoadBalancerArn",
        );
        w.lb_id = w.lb_arn.rsplit('/').next().unwrap().to_owned();
        w.tg_arn = first(
            &w.elb(&format!(
                "Action=CreateTargetGroup&Name=web&Protocol=TCP&Port=80&VpcId={vpc}&TargetType=instance"
            )),
            "TargetGroupArn",
        );
        w.tg_id = w.tg_arn.rsplit('/').next().unwrap().to_owned();
        let mut register = format!("Action=RegisterTargets&TargetGroupArn={}", w.tg_arn);
        for (i, t) in w.targets.iter().enumerate() {
            register.push_str(&format!("&Targets.member.{}.Id={}", i + 1, t.id));
        }
        w.elb(&register);
        w.elb(&format!(
            "Action=ModifyTargetGroupAttributes&TargetGroupArn={}&Attributes.member.1.Key=load_balancing.cross_zone.enabled&Attributes.member.1.Value={cross_zone}",
            w.tg_arn
        ));
        w.elb(&format!(
            "Action=CreateListener&LoadBalancerArn={}&Protocol=TCP&Port=80&DefaultActions.member.1.Type=forward&DefaultActions.member.1.TargetGroupArn={}",
            w.lb_arn, w.tg_arn
        ));
        // The nodes come up, the keeper gives the load balancer its shard,
        // they serve it: active, and the hosts get the route to its fronts.
        w.beat(&[], Vec::new());
        w.keep();
        w.beat(&[format!("elb-{}", w.lb_id)], Vec::new());
        w.keep();
        w
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: self.store.as_ref(),
            account: &self.a,
            region: REGION,
            request_id: "req-test",
            fleet: Some(&self.fleet),
        }
    }

    fn elb(&self, body: &str) -> String {
        elbv2::dispatch(&self.ctx(), &Params::parse(body.as_bytes(), ""))
            .unwrap_or_else(|e| panic!("{body} failed: {e}"))
    }

    fn act(&self, body: &str) -> String {
        openvpc_control::actions::dispatch(&self.ctx(), &Params::parse(body.as_bytes(), ""))
            .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message))
    }

    fn keep(&self) {
        common::keep(&self.fleet);
    }

    /// Heartbeats of every node, serving `serving`, reporting `health`.
    fn beat(&self, serving: &[String], health: Vec<TargetHealthReport>) {
        common::beat_hyperplane(
            self.store.as_ref(),
            &NODES,
            serving,
            &health,
            openvpc_model::time::now_secs() * 1000,
        );
        self.fleet.catch_up().unwrap();
    }

    /// Every node reports target `healthy[i]`'s health as healthy, the
    /// others' as unhealthy (`Target.FailedHealthChecks`).
    fn report(&self, healthy: &[bool]) {
        let health = self
            .targets
            .iter()
            .zip(healthy)
            .map(|(t, h)| TargetHealthReport {
                target_group_id: self.tg_id.clone(),
                target_id: t.id.clone(),
                port: 80,
                state: if *h {
                    TargetHealthState::Healthy
                } else {
                    TargetHealthState::Unhealthy
                },
                reason: (!h).then(|| "Target.FailedHealthChecks".to_owned()),
                description: None,
            })
            .collect();
        self.beat(&[format!("elb-{}", self.lb_id)], health);
    }

    /// The load balancer's address in us-east-1a (the client's AZ).
    fn front(&self) -> Ipv4Addr {
        let xml = self.elb(&format!(
            "Action=DescribeLoadBalancers&LoadBalancerArns.member.1={}",
            self.lb_arn
        ));
        assert_eq!(first(&xml, "Code"), "active", "{xml}");
        let key = format!("r/{}/{REGION}/elb-lb/{}", self.a.id, self.lb_id);
        let kv = self.store.get(key.as_bytes()).unwrap().unwrap();
        let lb: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
        lb["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["zone"] == "us-east-1a")
            .and_then(|z| z["private_ip"].as_str())
            .unwrap()
            .parse()
            .unwrap()
    }

    fn trace(&self, port: u16) -> String {
        self.act(&format!(
            "Action=TracePacket&Source={}&DestinationIp={}&Protocol=tcp&DestinationPort={port}",
            self.client.id,
            self.front()
        ))
    }

    fn analyse(&self, port: u16) -> String {
        let path = first(
            &self.act(&format!(
                "Action=CreateNetworkInsightsPath&Source={}&Protocol=tcp&FilterAtSource.DestinationAddress={}&FilterAtSource.DestinationPortRange.FromPort={port}&FilterAtSource.DestinationPortRange.ToPort={port}",
                self.client.id,
                self.front()
            )),
            "networkInsightsPathId",
        );
        self.act(&format!(
            "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"
        ))
    }

    /// The target spec 9.2's flow hash picks for the trace's probe (a TCP
    /// SYN from the client's probe port, sequence number 0) among
    /// `candidates` (indices into the targets, in registration order).
    fn hashed(&self, candidates: &[usize]) -> usize {
        let h = flow_hash(
            6,
            self.client.ip.to_bits(),
            PROBE_SOURCE_PORT,
            self.front().to_bits(),
            80,
            0,
        );
        candidates[((u128::from(h) * candidates.len() as u128) >> 64) as usize]
    }

    fn index_of(&self, instance: &str) -> usize {
        self.targets.iter().position(|t| t.id == instance).unwrap()
    }
}

// Issue 17 (6), spec 9.2 and 9.4: with no node reporting any target
// healthy, the trace names the load balancer, its listener and group, and
// the target the flow hash picks among all three (it fails open, and says
// so); the target is the one the node's core picks for the probe's tuple.
#[test]
fn the_trace_names_the_listener_group_and_the_hashed_target_failing_open() {
    let w = World::new();
    let xml = w.trace(80);
    assert_eq!(first(&xml, "lbArn"), w.lb_arn, "{xml}");
    assert_eq!(first(&xml, "lbName"), "web");
    assert!(NODES.iter().any(|(n, _)| *n == first(&xml, "lbNodeId")));
    assert_eq!(first(&xml, "lbListenerPort"), "80");
    assert_eq!(first(&xml, "lbListenerProtocol"), "TCP");
    assert_eq!(first(&xml, "lbTargetGroupArn"), w.tg_arn);
    assert_eq!(first(&xml, "lbFailOpen"), "true", "{xml}");
    let picked = w.index_of(&first(&xml, "lbTargetId"));
    assert_eq!(picked, w.hashed(&[0, 1, 2]), "{xml}");
    assert_eq!(first(&xml, "lbTargetIp"), w.targets[picked].ip.to_string());
    // No node has reported on it yet (DescribeTargetHealth's `initial`).
    assert_eq!(first(&xml, "lbTargetHealth"), "initial", "{xml}");
    assert_eq!(
        first(&xml, "lbTargetHealthReason"),
        "Elb.RegistrationInProgress"
    );
    // Spec 9.3: instance targets over TCP see the client's own address.
    assert_eq!(first(&xml, "lbTargetSource"), w.client.ip.to_string());
}

// Issue 17 (6), spec 9.4: with the nodes' reports, new flows go to healthy
// targets only; the path then reaches the target through its own ACL and
// security groups, delivered.
#[test]
fn a_healthy_target_is_picked_and_reached_through_its_security_group() {
    let w = World::new();
    w.report(&[true, true, false]);
    let xml = w.trace(80);
    assert_eq!(first(&xml, "lbFailOpen"), "false", "{xml}");
    let picked = w.index_of(&first(&xml, "lbTargetId"));
    assert_eq!(picked, w.hashed(&[0, 1]), "{xml}");
    assert_eq!(first(&xml, "lbTargetHealth"), "healthy");
    assert_eq!(first(&xml, "code"), "delivered", "{xml}");
    // The target's ingress steps are in the trace, its group named.
    let rules = all(&xml, "rule");
    assert!(
        rules.iter().any(|r| r.contains("sg-")),
        "the target's security group allows it: {rules:?}"
    );

    // The analysis finds the path: the load balancer's component with its
    // listener, then its target group, then the target's interface.
    let xml = w.analyse(80);
    assert_eq!(first(&xml, "networkPathFound"), "true", "{xml}");
    let ids = all(&xml, "id");
    let lb_at = ids.iter().position(|i| *i == w.lb_arn).expect("the NLB");
    let tg_at = ids.iter().position(|i| *i == w.tg_arn).expect("its group");
    assert!(lb_at < tg_at, "{ids:?}");
    assert!(xml.contains("<elasticLoadBalancerListener>"), "{xml}");
    assert!(first(&xml, "elasticLoadBalancerListener").contains(":listener/net/web/"));
}

// Issue 17 (6), spec 3 and 9.4: when the target the node picks is one whose
// security group does not let TCP 80 in, the trace drops it there and names
// that group; the analysis explains it with the load balancer's members.
#[test]
fn a_target_security_group_that_blocks_the_port_is_named() {
    let w = World::new();
    // Only the closed target is healthy: every new flow goes to it.
    w.report(&[false, false, true]);
    let xml = w.trace(80);
    assert_eq!(w.index_of(&first(&xml, "lbTargetId")), 2, "{xml}");
    assert_eq!(first(&xml, "code"), "dropped", "{xml}");
    assert_eq!(first(&xml, "reason"), "sg_deny", "{xml}");
    assert!(
        all(&xml, "rule").iter().any(|r| r.contains(&w.closed_sg)),
        "the blocking group is named: {xml}"
    );

    let xml = w.analyse(80);
    assert_eq!(first(&xml, "networkPathFound"), "false", "{xml}");
    assert_eq!(first(&xml, "explanationCode"), "ENI_SG_RULES_MISMATCH");
    assert!(all(&xml, "id").contains(&w.closed_sg), "{xml}");
    assert_eq!(first(&xml, "loadBalancerArn"), w.lb_arn);
    assert_eq!(first(&xml, "loadBalancerListenerPort"), "80");
    assert_eq!(first(&xml, "loadBalancerTargetPort"), "80");
    assert_eq!(first(&xml, "address"), w.targets[2].ip.to_string(), "{xml}");
    assert!(xml.contains("<loadBalancerTargetGroup>"), "{xml}");
}

// Issue 17 (6), spec 9.1: a port with no listener stops at the node, and the
// trace and the analysis say so.
#[test]
fn no_listener_on_the_port_is_explained() {
    let w = World::new();
    let xml = w.trace(8080);
    assert_eq!(first(&xml, "code"), "dropped", "{xml}");
    assert_eq!(first(&xml, "reason"), "lb:no_listener");
    assert_eq!(first(&xml, "lbPort"), "8080");
    assert!(!xml.contains("<lbTargetId>"), "{xml}");

    let xml = w.analyse(8080);
    assert_eq!(first(&xml, "networkPathFound"), "false", "{xml}");
    assert_eq!(first(&xml, "explanationCode"), "ELB_LISTENERS_MISMATCH");
    assert_eq!(first(&xml, "loadBalancerArn"), w.lb_arn);
    assert_eq!(first(&xml, "loadBalancerListenerPort"), "8080");
    assert!(first(&xml, "warningMessage").contains("no listener on port 8080"));
}

// Spec 9.1: a load balancer balances TCP and UDP; an ICMP probe to its
// address stops at the node, which says why.
#[test]
fn icmp_to_the_load_balancer_is_not_balanced() {
    let w = World::new();
    let xml = w.act(&format!(
        "Action=TracePacket&Source={}&DestinationIp={}&Protocol=icmp",
        w.client.id,
        w.front()
    ));
    assert_eq!(first(&xml, "code"), "dropped", "{xml}");
    assert_eq!(first(&xml, "reason"), "lb:unsupported", "{xml}");
    assert_eq!(first(&xml, "lbArn"), w.lb_arn);
}

// Spec 9.5 and 9.4: with cross-zone off, the us-east-1a address sends only
// to us-east-1a's targets; when none of those is healthy (only the
// us-east-1b one is), it fails open to all of its own AZ's, never to the
// healthy one in the other AZ.
#[test]
fn without_cross_zone_the_front_fails_open_within_its_zone() {
    let w = World::with_cross_zone(false);
    w.report(&[false, true, false]);
    let xml = w.trace(80);
    assert_eq!(first(&xml, "lbFailOpen"), "true", "{xml}");
    let picked = w.index_of(&first(&xml, "lbTargetId"));
    assert_eq!(picked, w.hashed(&[0, 2]), "{xml}");
    assert_eq!(first(&xml, "lbTargetHealth"), "unhealthy");
    assert_eq!(
        first(&xml, "lbTargetHealthReason"),
        "Target.FailedHealthChecks"
    );
    let analysis = w.analyse(80);
    assert!(
        first(&analysis, "warningMessage").contains("fails open"),
        "{analysis}"
    );
}
