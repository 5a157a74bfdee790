//! What the fleet makes of network load balancers (issue 17): the
//! [`LbAssignment`] a hyperplane node of a load balancer's shard is told
//! (its fronts, listeners, the target groups they forward to with health
//! checks, attributes and targets resolved to addresses and AZs), and the
//! internal `/32` routes that lead every host of its VPC to its shard's
//! nodes ([`lb_routes`]). Pure functions of the fleet index's [`Mirror`];
//! they write nothing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use openvpc_model::host::{RouteState, RouteTargetState};
use openvpc_model::hyperplane::{
    LbAssignment, LbFront, LbHealthCheck, LbHealthProtocol, LbListener, LbProtocol, LbTarget,
    LbTargetGroup, LbTargetType, ShardMember,
};
use openvpc_model::lifecycle::InstanceState;

use super::compile::{Dep, Key, Mirror, region_of, rkey, scope};
use super::lb_lifecycle::is_served;
use super::nodes::Role;
use super::shards::shard_key;
use crate::api::actions::resource::Record;
use crate::records::elbv2::{LoadBalancer, TargetGroup};
use crate::records::vpc::Vpc;

/// `deregistration_delay.timeout_seconds` when a group leaves it unset
/// (spec 9.1; `api::elbv2::target_group`'s default).
pub const DEREGISTRATION_DELAY_DEFAULT: u32 = 300;

/// The AZ of an IP target outside every subnet of its VPC (a peered or
/// on-premises address): AWS registers those with `AvailabilityZone=all`.
pub const ALL_ZONES: &str = "all";

/// A listener's or group's protocol as the nodes serve it; `None` for one
/// they do not (TLS, refused by the API until certificates exist).
fn protocol(text: &str) -> Option<LbProtocol> {
    match text {
        "TCP" => Some(LbProtocol::Tcp),
        "UDP" => Some(LbProtocol::Udp),
        "TCP_UDP" => Some(LbProtocol::TcpUdp),
        _ => None,
    }
}

/// The store key of the target group `arn` names, in `scope`.
fn tg_key(scope: &str, arn: &str) -> Key {
    let id = arn.rsplit('/').next().unwrap_or(arn);
    rkey(scope, TargetGroup::segment(), id)
}

/// The routes every host of `vpc` (in `region`) gets to the fronts of the
/// VPC's load balancers that are provisioning, active or impaired: each
/// front's private address as a `/32` to the load balancer's gateway name,
/// served per place of its shard (a dead node's place by its buddy), as a
/// NAT gateway's. Internal: no route table shows them.
pub fn lb_routes(m: &Mirror, region: &str, vpc: &Vpc, deps: &mut Vec<Dep>) -> Vec<RouteState> {
    deps.push(Dep::LoadBalancers(vpc.id.clone()));
    let mut routes = Vec::new();
    for key in m.lbs_of_vpc.get(&vpc.id).into_iter().flatten() {
        let Some(lb) = m.lbs.get(key).filter(|lb| is_served(lb.state)) else {
            continue;
        };
        let gateway_id = lb.gateway_id();
        let shard = shard_key(region, &gateway_id);
        deps.push(Dep::Record(shard.clone()));
        deps.push(Dep::Nodes(Role::Hyperplane, region.to_owned()));
        let nodes = m.shard_nodes(region, &shard);
        for ip in lb.zones.iter().filter_map(|z| z.private_ip) {
            routes.push(RouteState {
                destination: IpNet::V4(Ipv4Net::from(ip)),
                target: RouteTargetState::Gateway {
                    gateway_id: gateway_id.clone(),
                    nodes: nodes.clone(),
                },
            });
        }
    }
    routes
}

/// What a node of load balancer `lb` (stored at `key`) is told, given its
/// shard's places and the region's live edges; `None` while its VPC is
/// unknown.
pub fn lb_assignment(
    m: &Mirror,
    key: &str,
    lb: &LoadBalancer,
    shard: Vec<ShardMember>,
    edges: &[IpAddr],
) -> Option<LbAssignment> {
    let vni = m
        .vpc_by_id
        .get(&lb.vpc_id)
        .and_then(|k| m.vpcs.get(k))
        .map(|v| v.vni)?;
    let scope = scope(key);
    let account_id = key.split('/').nth(1).unwrap_or("");
    let internet_facing = lb.scheme == "internet-facing";
    let fronts = lb
        .zones
        .iter()
        .filter_map(|z| {
            Some(LbFront {
                subnet_id: z.subnet_id.clone(),
                availability_zone: z.zone.clone(),
                private_ip: z.private_ip?,
                public_ip: z.public_ip,
            })
        })
        .collect();
    let mut listeners = Vec::new();
    let mut groups: BTreeMap<String, LbTargetGroup> = BTreeMap::new();
    let mut mine: Vec<_> = m
        .elb_listeners
        .iter()
        .filter(|(k, l)| super::compile::scope(k) == scope && l.load_balancer_arn == lb.arn)
        .map(|(_, l)| l)
        .collect();
    mine.sort_by_key(|l| l.port);
    for l in mine {
        let Some(listener_protocol) = protocol(&l.protocol) else {
            continue;
        };
        let Some(tg) = m
            .target_groups
            .get(&tg_key(scope, &l.target_group_arn))
            .filter(|tg| tg.arn == l.target_group_arn)
        else {
            continue;
        };
        if !groups.contains_key(&tg.id) {
            let Some(group) = target_group(m, scope, tg) else {
                continue;
            };
            groups.insert(tg.id.clone(), group);
        }
        listeners.push(LbListener {
            port: l.port,
            protocol: listener_protocol,
            target_group_id: tg.id.clone(),
            tcp_idle_timeout: l.tcp_idle_timeout,
        });
    }
    Some(LbAssignment {
        id: lb.id.clone(),
        arn: lb.arn.clone(),
        name: lb.name.clone(),
        account_id: account_id.to_owned(),
        vpc_id: lb.vpc_id.clone(),
        vni,
        internet_facing,
        cross_zone: lb.cross_zone,
        fronts,
        listeners,
        target_groups: groups.into_values().collect(),
        shard,
        edges: if internet_facing {
            edges.to_vec()
        } else {
            Vec::new()
        },
        flow_logs: lb
            .zones
            .iter()
            .filter_map(|z| {
                let eni = super::compile::ServiceEni {
                    eni_id: z.network_interface_id.as_deref()?,
                    subnet_id: &z.subnet_id,
                    vpc_id: &lb.vpc_id,
                    account_id,
                    primary_ip: z.private_ip,
                };
                super::compile::service_flow_log(m, scope, &eni)
            })
            .collect(),
    })
}

/// A group as the nodes serve it; `None` for a protocol or target type
/// they do not.
fn target_group(m: &Mirror, scope: &str, tg: &TargetGroup) -> Option<LbTargetGroup> {
    let target_type = match tg.target_type.as_str() {
        "instance" => LbTargetType::Instance,
        "ip" => LbTargetType::Ip,
        _ => return None,
    };
    let attribute = |name: &str| tg.attributes.get(name).map(String::as_str);
    let delay = attribute("deregistration_delay.timeout_seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEREGISTRATION_DELAY_DEFAULT);
    let h = &tg.health;
    let http = h.protocol != "TCP";
    let health_check = LbHealthCheck {
        enabled: h.enabled,
        protocol: match h.protocol.as_str() {
            "HTTP" => LbHealthProtocol::Http,
            "HTTPS" => LbHealthProtocol::Https,
            _ => LbHealthProtocol::Tcp,
        },
        // `traffic-port` (or anything that is not a port) probes the
        // target's own port.
        port: h.port.parse().ok(),
        path: h.path.clone().filter(|_| http),
        matcher: h.matcher.clone().filter(|_| http),
        interval_secs: h.interval,
        timeout_secs: h.timeout,
        healthy_threshold: h.healthy_threshold,
        unhealthy_threshold: h.unhealthy_threshold,
    };
    let targets = tg
        .targets
        .iter()
        .filter_map(|t| {
            let (ip, availability_zone, invalid_state) = match target_type {
                LbTargetType::Instance => instance_target(m, scope, &t.id)?,
                LbTargetType::Ip => {
                    let ip: Ipv4Addr = t.id.parse().ok()?;
                    (
                        ip,
                        ip_target_zone(m, region_of(scope), &tg.vpc_id, ip),
                        false,
                    )
                }
            };
            Some(LbTarget {
                id: t.id.clone(),
                ip,
                port: t.port,
                availability_zone,
                draining_until_ms: t
                    .deregistered_at
                    .map(|at| at.saturating_add(u64::from(delay)).saturating_mul(1000)),
                invalid_state,
            })
        })
        .collect();
    Some(LbTargetGroup {
        id: tg.id.clone(),
        arn: tg.arn.clone(),
        protocol: protocol(&tg.protocol)?,
        port: tg.port,
        target_type,
        health_check,
        preserve_client_ip: attribute("preserve_client_ip.enabled").map(|v| v == "true"),
        cross_zone: match attribute("load_balancing.cross_zone.enabled") {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => None,
        },
        deregistration_delay_secs: delay,
        targets,
    })
}

/// An instance target: its primary ENI's private address and AZ, and
/// whether it is not running (then it gets neither probes nor flows).
/// `None` while the instance or any address of it is unknown.
fn instance_target(m: &Mirror, scope: &str, id: &str) -> Option<(Ipv4Addr, String, bool)> {
    let key = rkey(scope, "i", id);
    let instance = m.instances.get(&key)?;
    let primary = m
        .instance_enis
        .get(&key)
        .into_iter()
        .flatten()
        .filter_map(|k| m.enis.get(k))
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0));
    let (ip, zone) = match primary {
        Some(eni) => (eni.primary_ip()?, eni.availability_zone.clone()),
        None => (instance.private_ip?, instance.availability_zone.clone()),
    };
    Some((ip, zone, instance.state != InstanceState::Running))
}

/// The AZ of the subnet of VPC `vpc_id` (in `region`) that holds `ip`, or
/// [`ALL_ZONES`] when none does.
fn ip_target_zone(m: &Mirror, region: &str, vpc_id: &str, ip: Ipv4Addr) -> String {
    m.subnets
        .iter()
        .filter(|(k, s)| region_of(k) == region && s.vpc_id == vpc_id)
        .find(|(_, s)| {
            s.cidr_block.is_some_and(|c| {
                Ipv4Net::new(c.network(), c.prefix_len()).is_ok_and(|n| n.contains(&ip))
            })
        })
        .map_or_else(
            || ALL_ZONES.to_owned(),
            |(_, s)| s.availability_zone.clone(),
        )
}
