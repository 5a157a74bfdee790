//! The ELBv2 API (Version 2015-12-01, SigV4 service `elasticloadbalancing`,
//! spec 9 and 12.5) for network load balancers: load balancers, target
//! groups, targets and listeners as records in the caller's key space, with
//! the standard Query protocol's responses. API only: no packet is balanced,
//! so target health is what the API can know without a dataplane (see
//! [`target_health`]).
//!
//! Records live under their own segments (`elb-lb`, `elb-tg`,
//! `elb-listener`), keyed by the random part of their ARN; an ARN is looked
//! up by listing the segment, which spec 13's quotas keep small.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::actions::Ctx;
use crate::actions::network_interface::{format_time, now_secs};
use crate::actions::resource::{Tx, to_json, transact};
use crate::error::ApiError;
use crate::query::Params;
use crate::xml::Xml;

/// The namespace of every ELBv2 response and error.
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

const LB_SEGMENT: &str = "elb-lb";
const TG_SEGMENT: &str = "elb-tg";
const LISTENER_SEGMENT: &str = "elb-listener";

/// spec 9.7 / 13: network load balancers per region.
pub const MAX_LOAD_BALANCERS: usize = 50;
/// spec 9.1: listeners per NLB.
pub const MAX_LISTENERS: usize = 50;
/// spec 9.7: target groups per region.
pub const MAX_TARGET_GROUPS: usize = 3000;
/// spec 9.7: targets per group.
pub const MAX_TARGETS: usize = 1000;

/// A network load balancer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    /// The 16 hex digits that end the ARN and name the record.
    pub id: String,
    pub scheme: String,
    pub ip_address_type: String,
    pub vpc_id: String,
    pub zones: Vec<Zone>,
    pub created: u64,
    pub tags: Vec<(String, String)>,
    pub cross_zone: bool,
    pub deletion_protection: bool,
}

/// One enabled AZ: its subnet, and the EIP given for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Zone {
    pub zone: String,
    pub subnet_id: String,
    pub allocation_id: Option<String>,
}

/// A target group and its registered targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub id: String,
    pub protocol: String,
    pub port: u16,
    pub vpc_id: String,
    pub target_type: String,
    pub health: HealthCheck,
    pub targets: Vec<Target>,
    /// When a listener first sent it traffic: health checks start then.
    pub in_use_since: Option<u64>,
    pub tags: Vec<(String, String)>,
    /// Attributes changed from their defaults (spec 9.1); the rest are
    /// computed by [`tg_attributes`].
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Health check settings (spec 9.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    pub port: String,
    pub path: Option<String>,
    pub interval: u32,
    pub timeout: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Option<String>,
}

/// A registered target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub port: u16,
    pub registered: u64,
}

/// A listener and the target group its forward action sends to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listener {
    pub arn: String,
    pub id: String,
    pub load_balancer_arn: String,
    pub protocol: String,
    pub port: u16,
    pub target_group_arn: String,
    pub certificate_arn: Option<String>,
    /// `tcp.idle_timeout.seconds` when changed from the default (spec
    /// 9.6); TCP listeners only.
    #[serde(default)]
    pub tcp_idle_timeout: Option<u32>,
}

type Handler = fn(&Ctx, &Params) -> Result<String, ApiError>;

/// Runs an ELBv2 action.
pub fn dispatch(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let action = params.required("Action")?;
    let handler: Handler = match action {
        "CreateLoadBalancer" => create_load_balancer,
        "DescribeLoadBalancers" => describe_load_balancers,
        "DeleteLoadBalancer" => delete_load_balancer,
        "DescribeLoadBalancerAttributes" => describe_load_balancer_attributes,
        "ModifyLoadBalancerAttributes" => modify_load_balancer_attributes,
        "CreateTargetGroup" => create_target_group,
        "DescribeTargetGroups" => describe_target_groups,
        "ModifyTargetGroup" => modify_target_group,
        "DeleteTargetGroup" => delete_target_group,
        "RegisterTargets" => register_targets,
        "DeregisterTargets" => deregister_targets,
        "DescribeTargetHealth" => describe_target_health,
        "CreateListener" => create_listener,
        "DescribeListeners" => describe_listeners,
        "ModifyListener" => modify_listener,
        "DeleteListener" => delete_listener,
        "DescribeListenerAttributes" => describe_listener_attributes,
        "ModifyListenerAttributes" => modify_listener_attributes,
        "DescribeTargetGroupAttributes" => describe_target_group_attributes,
        "ModifyTargetGroupAttributes" => modify_target_group_attributes,
        "AddTags" => add_tags,
        "RemoveTags" => remove_tags,
        "DescribeTags" => describe_tags,
        _ => return Err(ApiError::invalid_action(action)),
    };
    handler(ctx, params)
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationError", message)
}

fn config(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidConfigurationRequest", message)
}

fn answer(ctx: &Ctx, action: &str, body: impl FnOnce(&mut Xml)) -> String {
    Xml::query_response(action, NAMESPACE, ctx.request_id, body)
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn read<T: for<'de> Deserialize<'de>>(value: &[u8], noun: &str) -> Result<T, ApiError> {
    serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("A stored {noun} is unreadable: {e}")))
}

fn list<T: for<'de> Deserialize<'de>>(
    tx: &mut Tx,
    segment: &str,
    noun: &str,
) -> Result<Vec<T>, ApiError> {
    let prefix = tx.ctx().prefix(segment);
    tx.range_raw(&prefix)?
        .into_iter()
        .map(|(_, v)| read(&v, noun))
        .collect()
}

fn put<T: Serialize>(tx: &mut Tx, segment: &str, id: &str, value: &T) -> Result<(), ApiError> {
    let key = tx.ctx().key(segment, id);
    tx.put_raw(key, to_json(value)?);
    Ok(())
}

fn load_balancers(tx: &mut Tx) -> Result<Vec<LoadBalancer>, ApiError> {
    let mut all: Vec<LoadBalancer> = list(tx, LB_SEGMENT, "load balancer")?;
    // Describe answers in name order, as AWS lists them.
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

fn target_groups(tx: &mut Tx) -> Result<Vec<TargetGroup>, ApiError> {
    let mut all: Vec<TargetGroup> = list(tx, TG_SEGMENT, "target group")?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

fn listeners(tx: &mut Tx) -> Result<Vec<Listener>, ApiError> {
    let mut all: Vec<Listener> = list(tx, LISTENER_SEGMENT, "listener")?;
    all.sort_by(|a, b| (&a.load_balancer_arn, a.port).cmp(&(&b.load_balancer_arn, b.port)));
    Ok(all)
}

/// Whether a load balancer has a node in `subnet_id`: its ENI there keeps
/// the subnet alive (spec 9.1 and 1.7), so DeleteSubnet asks.
pub fn subnet_in_use(tx: &mut Tx, subnet_id: &str) -> Result<bool, ApiError> {
    Ok(load_balancers(tx)?
        .iter()
        .any(|lb| lb.zones.iter().any(|z| z.subnet_id == subnet_id)))
}

fn lb_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "LoadBalancerNotFound",
        format!("One or more load balancers not found: '{arn}'"),
    )
}

fn tg_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "TargetGroupNotFound",
        format!("One or more target groups not found: '{arn}'"),
    )
}

fn listener_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "ListenerNotFound",
        format!("One or more listeners not found: '{arn}'"),
    )
}

/// An ARN must at least look like one of ours before it is looked up:
/// AWS refuses other strings as malformed rather than absent.
fn check_arn(arn: &str, kind: &str) -> Result<(), ApiError> {
    if !arn.starts_with("arn:") || !arn.contains(&format!(":{kind}/")) {
        return Err(validation(format!("'{arn}' is not a valid {kind} ARN")));
    }
    // A well-formed ARN of another region or account is looked up and
    // found absent: the records are per account and region.
    Ok(())
}

fn find_lb(tx: &mut Tx, arn: &str) -> Result<LoadBalancer, ApiError> {
    check_arn(arn, "loadbalancer")?;
    load_balancers(tx)?
        .into_iter()
        .find(|lb| lb.arn == arn)
        .ok_or_else(|| lb_not_found(arn))
}

fn find_tg(tx: &mut Tx, arn: &str) -> Result<TargetGroup, ApiError> {
    check_arn(arn, "targetgroup")?;
    target_groups(tx)?
        .into_iter()
        .find(|tg| tg.arn == arn)
        .ok_or_else(|| tg_not_found(arn))
}

fn find_listener(tx: &mut Tx, arn: &str) -> Result<Listener, ApiError> {
    check_arn(arn, "listener")?;
    listeners(tx)?
        .into_iter()
        .find(|l| l.arn == arn)
        .ok_or_else(|| listener_not_found(arn))
}

/// Load balancer and target group names: 1–32 alphanumerics and hyphens,
/// not starting or ending with a hyphen.
fn check_name(name: &str, noun: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(validation(format!(
            "{noun} name '{name}' must have 1 to 32 characters, only alphanumerics and hyphens, and must not begin or end with a hyphen"
        )));
    }
    if noun == "Load balancer" && name.starts_with("internal-") {
        return Err(validation(format!(
            "Load balancer name '{name}' cannot begin with 'internal-'"
        )));
    }
    Ok(())
}

fn tags(params: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let tags = params.tags("Tags.member")?;
    Ok(tags.into_iter().map(|t| (t.key, t.value)).collect())
}

/// A page of `items` from `Marker` (the name or ARN of the page's first
/// item, as our markers are issued), at most `PageSize` (1–400) long, and
/// the marker of the next page.
fn page<T>(
    params: &Params,
    mut items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match params.number::<usize>("PageSize")? {
        Some(n) if !(1..=400).contains(&n) => {
            return Err(validation(format!(
                "PageSize {n} must be between 1 and 400"
            )));
        }
        Some(n) => n,
        None => 400,
    };
    if let Some(marker) = params.get("Marker") {
        // The marker names the first item of the page; if that item has
        // gone since, the page starts at the next name in order.
        let start = items
            .iter()
            .position(|i| name(i) == marker)
            .or_else(|| items.iter().position(|i| name(i) > marker))
            .unwrap_or(items.len());
        items.drain(..start);
    }
    let next = items.get(size).map(|i| name(i).to_owned());
    items.truncate(size);
    Ok((items, next))
}

// ---------------------------------------------------------------- load balancers

/// The Route 53 zone of NLB DNS names in the regions we know it for.
fn canonical_hosted_zone(region: &str) -> Option<&'static str> {
    Some(match region {
        "us-east-1" => "Z26RNL4JYFTOTI",
        "us-east-2" => "ZLMOA37VPKANP",
        "us-west-1" => "Z24FKFUX50B4VW",
        "us-west-2" => "Z18D5FSROUN65G",
        "eu-west-1" => "Z2IFOLAFXWLO4F",
        "eu-central-1" => "Z3F0SRJ5LGBH90",
        _ => return None,
    })
}

fn write_lb(x: &mut Xml, ctx: &Ctx, lb: &LoadBalancer, state: &str) {
    x.elem("LoadBalancerArn", &lb.arn)
        .elem(
            "DNSName",
            format!("{}-{}.elb.{}.amazonaws.com", lb.name, lb.id, ctx.region),
        )
        .opt("CanonicalHostedZoneId", canonical_hosted_zone(ctx.region))
        .elem("CreatedTime", format_time(lb.created))
        .elem("LoadBalancerName", &lb.name)
        .elem("Scheme", &lb.scheme)
        .elem("VpcId", &lb.vpc_id)
        .node("State", |x| {
            x.elem("Code", state);
        })
        .elem("Type", "network")
        .members("AvailabilityZones", &lb.zones, |x, z| {
            x.elem("ZoneName", &z.zone).elem("SubnetId", &z.subnet_id);
            x.members("LoadBalancerAddresses", z.allocation_id.iter(), |x, id| {
                x.elem("AllocationId", id);
            });
        })
        .elem("IpAddressType", &lb.ip_address_type);
}

/// The EC2 subnet record fields a load balancer needs.
#[derive(Deserialize)]
struct SubnetRecord {
    vpc_id: String,
    availability_zone: String,
}

fn subnet(tx: &mut Tx, id: &str) -> Result<SubnetRecord, ApiError> {
    let key = tx.ctx().key("subnet", id);
    let value = tx.get_raw(&key)?.ok_or_else(|| {
        ApiError::new(
            "SubnetNotFound",
            format!("The subnet ID '{id}' is not found"),
        )
    })?;
    read(&value, "subnet")
}

fn create_load_balancer(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let name = params.required("Name")?.to_owned();
    check_name(&name, "Load balancer")?;
    // AWS's default type is `application`; openvpc has NLBs only.
    match params.get("Type") {
        Some("network") => {}
        other => {
            return Err(validation(format!(
                "Load balancer type '{}' is not supported: openvpc implements only network load balancers (Type=network)",
                other.unwrap_or("application")
            )));
        }
    }
    let scheme = params.get("Scheme").unwrap_or("internet-facing").to_owned();
    if scheme != "internet-facing" && scheme != "internal" {
        return Err(validation(format!(
            "Scheme '{scheme}' must be one of [internet-facing, internal]"
        )));
    }
    let ip_address_type = params.get("IpAddressType").unwrap_or("ipv4").to_owned();
    if ip_address_type != "ipv4" && ip_address_type != "dualstack" {
        return Err(validation(format!(
            "IpAddressType '{ip_address_type}' must be one of [ipv4, dualstack]"
        )));
    }
    if params.get("SecurityGroups.member.1").is_some() {
        return Err(validation(
            "Security groups on network load balancers are not supported by openvpc",
        ));
    }
    let mut mappings: Vec<(String, Option<String>)> = params
        .list("Subnets.member")?
        .into_iter()
        .map(|s| (s, None))
        .collect();
    for m in params.structs("SubnetMappings.member")? {
        let id = m
            .required("SubnetId")
            .map_err(|_| validation("SubnetMappings.member.N.SubnetId is required"))?;
        mappings.push((id.to_owned(), m.get("AllocationId").map(str::to_owned)));
    }
    if mappings.is_empty() {
        return Err(validation(
            "At least one subnet must be specified (Subnets or SubnetMappings)",
        ));
    }
    let tags = tags(params)?;
    let created = transact(ctx, |tx| {
        let existing = load_balancers(tx)?;
        if existing.iter().any(|lb| lb.name == name) {
            return Err(ApiError::new(
                "DuplicateLoadBalancerName",
                format!("A load balancer with the name '{name}' already exists"),
            ));
        }
        if existing.len() >= MAX_LOAD_BALANCERS {
            return Err(ApiError::new(
                "TooManyLoadBalancers",
                format!(
                    "The quota of {MAX_LOAD_BALANCERS} network load balancers per region is reached"
                ),
            ));
        }
        let mut zones: Vec<Zone> = Vec::new();
        let mut vpc_id: Option<String> = None;
        for (subnet_id, allocation_id) in &mappings {
            let s = subnet(tx, subnet_id)?;
            if vpc_id.get_or_insert_with(|| s.vpc_id.clone()) != &s.vpc_id {
                return Err(config(
                    "All subnets of a load balancer must be in the same VPC",
                ));
            }
            if zones.iter().any(|z| z.zone == s.availability_zone) {
                return Err(config(format!(
                    "A load balancer cannot be attached to multiple subnets in the same Availability Zone ({})",
                    s.availability_zone
                )));
            }
            if let Some(alloc) = allocation_id {
                // spec 9.1: EIPs only for internet-facing NLBs.
                if scheme == "internal" {
                    return Err(config(
                        "Elastic IP addresses can be given only to internet-facing load balancers",
                    ));
                }
                let key = tx.ctx().key("eipalloc", alloc);
                if tx.get_raw(&key)?.is_none() {
                    return Err(ApiError::new(
                        "AllocationIdNotFound",
                        format!("The allocation ID '{alloc}' is not found"),
                    ));
                }
            }
            zones.push(Zone {
                zone: s.availability_zone,
                subnet_id: subnet_id.clone(),
                allocation_id: allocation_id.clone(),
            });
        }
        let id = random_id();
        let lb = LoadBalancer {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:{}:loadbalancer/net/{name}/{id}",
                ctx.region, ctx.account.id
            ),
            name: name.clone(),
            id: id.clone(),
            scheme: scheme.clone(),
            ip_address_type: ip_address_type.clone(),
            vpc_id: vpc_id.clone().unwrap_or_default(),
            zones,
            created: now_secs(),
            tags: tags.clone(),
            cross_zone: false,
            deletion_protection: false,
        };
        put(tx, LB_SEGMENT, &id, &lb)?;
        Ok(lb)
    })?;
    // AWS answers Create while the nodes are still being placed.
    Ok(answer(ctx, "CreateLoadBalancer", |x| {
        x.members("LoadBalancers", [&created], |x, lb| {
            write_lb(x, ctx, lb, "provisioning")
        });
    }))
}

fn describe_load_balancers(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = params.list("LoadBalancerArns.member")?;
    let names = params.list("Names.member")?;
    if !arns.is_empty() && !names.is_empty() {
        return Err(validation(
            "Load balancer names and load balancer ARNs cannot be specified at the same time",
        ));
    }
    let all = transact(ctx, load_balancers)?;
    let chosen = if !arns.is_empty() {
        arns.iter()
            .map(|arn| {
                check_arn(arn, "loadbalancer")?;
                all.iter()
                    .find(|lb| &lb.arn == arn)
                    .cloned()
                    .ok_or_else(|| lb_not_found(arn))
            })
            .collect::<Result<Vec<_>, _>>()?
    } else if !names.is_empty() {
        names
            .iter()
            .map(|n| {
                all.iter().find(|lb| &lb.name == n).cloned().ok_or_else(|| {
                    ApiError::new(
                        "LoadBalancerNotFound",
                        format!("Load balancers '[{n}]' not found"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    } else {
        all
    };
    let (items, next) = page(params, chosen, |lb| &lb.name)?;
    Ok(answer(ctx, "DescribeLoadBalancers", |x| {
        x.members("LoadBalancers", &items, |x, lb| {
            write_lb(x, ctx, lb, "active")
        });
        x.opt("NextMarker", next);
    }))
}

fn delete_load_balancer(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("LoadBalancerArn")?;
    check_arn(arn, "loadbalancer")?;
    transact(ctx, |tx| {
        // AWS: deleting a load balancer that does not exist succeeds.
        let Some(lb) = load_balancers(tx)?.into_iter().find(|lb| lb.arn == arn) else {
            return Ok(());
        };
        if lb.deletion_protection {
            return Err(ApiError::new(
                "OperationNotPermitted",
                format!(
                    "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                ),
            ));
        }
        let gone: Vec<Listener> = listeners(tx)?
            .into_iter()
            .filter(|l| l.load_balancer_arn == lb.arn)
            .collect();
        for l in &gone {
            let key = tx.ctx().key(LISTENER_SEGMENT, &l.id);
            tx.delete_raw(key);
        }
        for l in &gone {
            release_unused(tx, &l.target_group_arn)?;
        }
        let key = tx.ctx().key(LB_SEGMENT, &lb.id);
        tx.delete_raw(key);
        Ok(())
    })?;
    Ok(answer(ctx, "DeleteLoadBalancer", |_| {}))
}

fn lb_attributes(lb: &LoadBalancer) -> Vec<(&'static str, String)> {
    vec![
        (
            "deletion_protection.enabled",
            lb.deletion_protection.to_string(),
        ),
        (
            "load_balancing.cross_zone.enabled",
            lb.cross_zone.to_string(),
        ),
    ]
}

fn write_attributes(x: &mut Xml, attributes: &[(&'static str, String)]) {
    x.members("Attributes", attributes, |x, (k, v)| {
        x.elem("Key", k).elem("Value", v);
    });
}

fn describe_load_balancer_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("LoadBalancerArn")?;
    let lb = transact(ctx, |tx| find_lb(tx, arn))?;
    Ok(answer(ctx, "DescribeLoadBalancerAttributes", |x| {
        write_attributes(x, &lb_attributes(&lb))
    }))
}

fn bool_attribute(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(validation(format!(
            "Attribute '{key}' must be 'true' or 'false', not '{value}'"
        ))),
    }
}

fn modify_load_balancer_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("LoadBalancerArn")?;
    let changes = params.structs("Attributes.member")?;
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    let lb = transact(ctx, |tx| {
        let mut lb = find_lb(tx, arn)?;
        for change in &changes {
            let key = change
                .required("Key")
                .map_err(|_| validation("Attributes.member.N.Key is required"))?;
            let value = change.get("Value").unwrap_or("");
            match key {
                "deletion_protection.enabled" => {
                    lb.deletion_protection = bool_attribute(key, value)?
                }
                "load_balancing.cross_zone.enabled" => lb.cross_zone = bool_attribute(key, value)?,
                _ => {
                    return Err(validation(format!(
                        "Load balancer attribute key '{key}' is not recognized"
                    )));
                }
            }
        }
        let id = lb.id.clone();
        put(tx, LB_SEGMENT, &id, &lb)?;
        Ok(lb)
    })?;
    Ok(answer(ctx, "ModifyLoadBalancerAttributes", |x| {
        write_attributes(x, &lb_attributes(&lb))
    }))
}

// ---------------------------------------------------------------- target groups

const TG_PROTOCOLS: &[&str] = &["TCP", "UDP", "TCP_UDP", "TLS"];

fn check_port(name: &str, port: u32) -> Result<u16, ApiError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| validation(format!("{name} {port} must be between 1 and 65535")))
}

/// Sets `target` from parameter `name` when it is given, refusing values
/// outside `range`.
fn set_in_range(
    params: &Params,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    target: &mut u32,
) -> Result<(), ApiError> {
    match params.number::<u32>(name)? {
        Some(v) if !range.contains(&v) => Err(validation(format!(
            "{name} {v} must be between {} and {}",
            range.start(),
            range.end()
        ))),
        Some(v) => {
            *target = v;
            Ok(())
        }
        None => Ok(()),
    }
}

/// Applies the health check parameters of a Create or Modify to `health`;
/// on Create, `health` holds spec 9.4's NLB defaults.
fn apply_health(params: &Params, health: &mut HealthCheck) -> Result<(), ApiError> {
    if let Some(p) = params.get("HealthCheckProtocol") {
        if !["TCP", "HTTP", "HTTPS"].contains(&p) {
            return Err(validation(format!(
                "Health check protocol '{p}' must be one of [TCP, HTTP, HTTPS]"
            )));
        }
        if p != health.protocol {
            health.protocol = p.to_owned();
            // spec 9.4: the timeout default follows the protocol, and the
            // path and matcher exist only for HTTP(S) checks.
            health.timeout = if p == "HTTP" { 6 } else { 10 };
            if p == "TCP" {
                health.path = None;
                health.matcher = None;
            } else {
                health.path.get_or_insert_with(|| "/".to_owned());
                health.matcher.get_or_insert_with(|| "200-399".to_owned());
            }
        }
    }
    if let Some(port) = params.get("HealthCheckPort") {
        if port != "traffic-port" {
            let n: u32 = port
                .parse()
                .map_err(|_| validation(format!("Health check port '{port}' is not a port")))?;
            check_port("HealthCheckPort", n)?;
        }
        health.port = port.to_owned();
    }
    if let Some(enabled) = params.bool("HealthCheckEnabled")? {
        health.enabled = enabled;
    }
    if let Some(path) = params.get("HealthCheckPath") {
        if health.protocol == "TCP" {
            return Err(validation(
                "A health check path can be given only with HTTP or HTTPS health checks",
            ));
        }
        if !path.starts_with('/') {
            return Err(validation(format!(
                "Health check path '{path}' must begin with '/'"
            )));
        }
        health.path = Some(path.to_owned());
    }
    if let Some(code) = params.get("Matcher.HttpCode") {
        if health.protocol == "TCP" {
            return Err(validation(
                "A health check matcher can be given only with HTTP or HTTPS health checks",
            ));
        }
        health.matcher = Some(code.to_owned());
    }
    set_in_range(
        params,
        "HealthCheckIntervalSeconds",
        5..=300,
        &mut health.interval,
    )?;
    set_in_range(
        params,
        "HealthCheckTimeoutSeconds",
        2..=120,
        &mut health.timeout,
    )?;
    set_in_range(
        params,
        "HealthyThresholdCount",
        2..=10,
        &mut health.healthy_threshold,
    )?;
    set_in_range(
        params,
        "UnhealthyThresholdCount",
        2..=10,
        &mut health.unhealthy_threshold,
    )?;
    if health.timeout >= health.interval {
        return Err(validation(format!(
            "Health check timeout ({}) must be smaller than the interval ({})",
            health.timeout, health.interval
        )));
    }
    Ok(())
}

fn write_tg(x: &mut Xml, tg: &TargetGroup, lb_arns: &[String]) {
    let h = &tg.health;
    x.elem("TargetGroupArn", &tg.arn)
        .elem("TargetGroupName", &tg.name)
        .elem("Protocol", &tg.protocol)
        .elem("Port", tg.port)
        .elem("VpcId", &tg.vpc_id)
        .elem("HealthCheckProtocol", &h.protocol)
        .elem("HealthCheckPort", &h.port)
        .elem("HealthCheckEnabled", h.enabled)
        .elem("HealthCheckIntervalSeconds", h.interval)
        .elem("HealthCheckTimeoutSeconds", h.timeout)
        .elem("HealthyThresholdCount", h.healthy_threshold)
        .elem("UnhealthyThresholdCount", h.unhealthy_threshold)
        .opt("HealthCheckPath", h.path.as_ref());
    if let Some(m) = &h.matcher {
        x.node("Matcher", |x| {
            x.elem("HttpCode", m);
        });
    }
    x.members("LoadBalancerArns", lb_arns, |x, arn| {
        x.text(arn);
    })
    .elem("TargetType", &tg.target_type)
    .elem("IpAddressType", "ipv4");
}

/// The load balancers whose listeners forward to `tg`.
fn lb_arns_of(tg: &TargetGroup, listeners: &[Listener]) -> Vec<String> {
    let mut arns: Vec<String> = listeners
        .iter()
        .filter(|l| l.target_group_arn == tg.arn)
        .map(|l| l.load_balancer_arn.clone())
        .collect();
    arns.dedup();
    arns
}

fn vpc_cidrs(tx: &mut Tx, vpc_id: &str) -> Result<Option<Vec<String>>, ApiError> {
    #[derive(Deserialize)]
    struct Assoc {
        cidr_block: String,
        state: String,
    }
    #[derive(Deserialize)]
    struct VpcRecord {
        cidr_block: String,
        #[serde(default)]
        cidr_associations: Vec<Assoc>,
    }
    let key = tx.ctx().key("vpc", vpc_id);
    let Some(value) = tx.get_raw(&key)? else {
        return Ok(None);
    };
    let vpc: VpcRecord = read(&value, "VPC")?;
    let mut cidrs = vec![vpc.cidr_block];
    cidrs.extend(
        vpc.cidr_associations
            .into_iter()
            .filter(|a| a.state == "associated")
            .map(|a| a.cidr_block),
    );
    Ok(Some(cidrs))
}

fn create_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let name = params.required("Name")?.to_owned();
    check_name(&name, "Target group")?;
    let target_type = params.get("TargetType").unwrap_or("instance").to_owned();
    if target_type != "instance" && target_type != "ip" {
        return Err(validation(format!(
            "Target type '{target_type}' is not supported: openvpc implements 'instance' and 'ip' target groups"
        )));
    }
    let protocol = params.required("Protocol")?.to_owned();
    if !TG_PROTOCOLS.contains(&protocol.as_str()) {
        return Err(validation(format!(
            "Protocol '{protocol}' must be one of [TCP, UDP, TCP_UDP, TLS]: openvpc implements network load balancers only"
        )));
    }
    let port = check_port(
        "Port",
        params
            .number("Port")?
            .ok_or_else(|| ApiError::missing_parameter("Port"))?,
    )?;
    let vpc_id = params.required("VpcId")?.to_owned();
    let mut health = HealthCheck {
        enabled: true,
        protocol: "TCP".to_owned(),
        port: "traffic-port".to_owned(),
        path: None,
        interval: 30,
        timeout: 10,
        healthy_threshold: 5,
        unhealthy_threshold: 2,
        matcher: None,
    };
    apply_health(params, &mut health)?;
    let tags = tags(params)?;
    let tg = transact(ctx, |tx| {
        if vpc_cidrs(tx, &vpc_id)?.is_none() {
            return Err(validation(format!("The VPC ID '{vpc_id}' is not found")));
        }
        let existing = target_groups(tx)?;
        if existing.iter().any(|t| t.name == name) {
            return Err(ApiError::new(
                "DuplicateTargetGroupName",
                format!("A target group with the name '{name}' already exists"),
            ));
        }
        if existing.len() >= MAX_TARGET_GROUPS {
            return Err(ApiError::new(
                "TooManyTargetGroups",
                format!("The quota of {MAX_TARGET_GROUPS} target groups per region is reached"),
            ));
        }
        let id = random_id();
        let tg = TargetGroup {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:{}:targetgroup/{name}/{id}",
                ctx.region, ctx.account.id
            ),
            name: name.clone(),
            id: id.clone(),
            protocol: protocol.clone(),
            port,
            vpc_id: vpc_id.clone(),
            target_type: target_type.clone(),
            health: health.clone(),
            targets: Vec::new(),
            in_use_since: None,
            tags: tags.clone(),
            attributes: Default::default(),
        };
        put(tx, TG_SEGMENT, &id, &tg)?;
        Ok(tg)
    })?;
    Ok(answer(ctx, "CreateTargetGroup", |x| {
        x.members("TargetGroups", [&tg], |x, tg| write_tg(x, tg, &[]));
    }))
}

fn describe_target_groups(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = params.list("TargetGroupArns.member")?;
    let names = params.list("Names.member")?;
    let lb_arn = params.get("LoadBalancerArn");
    let (all, listeners) = transact(ctx, |tx| {
        if let Some(arn) = lb_arn {
            find_lb(tx, arn)?;
        }
        Ok((target_groups(tx)?, listeners(tx)?))
    })?;
    let mut chosen = Vec::new();
    for arn in &arns {
        check_arn(arn, "targetgroup")?;
        chosen.push(
            all.iter()
                .find(|t| &t.arn == arn)
                .cloned()
                .ok_or_else(|| tg_not_found(arn))?,
        );
    }
    for n in &names {
        chosen.push(all.iter().find(|t| &t.name == n).cloned().ok_or_else(|| {
            ApiError::new(
                "TargetGroupNotFound",
                format!("Target groups '[{n}]' not found"),
            )
        })?);
    }
    if arns.is_empty() && names.is_empty() {
        chosen = all;
    }
    if let Some(lb) = lb_arn {
        chosen.retain(|t| lb_arns_of(t, &listeners).iter().any(|a| a == lb));
    }
    let (items, next) = page(params, chosen, |t| &t.name)?;
    Ok(answer(ctx, "DescribeTargetGroups", |x| {
        x.members("TargetGroups", &items, |x, tg| {
            write_tg(x, tg, &lb_arns_of(tg, &listeners))
        });
        x.opt("NextMarker", next);
    }))
}

fn modify_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let (tg, lbs) = transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        apply_health(params, &mut tg.health)?;
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)?;
        let lbs = lb_arns_of(&tg, &listeners(tx)?);
        Ok((tg, lbs))
    })?;
    Ok(answer(ctx, "ModifyTargetGroup", |x| {
        x.members("TargetGroups", [&tg], |x, tg| write_tg(x, tg, &lbs));
    }))
}

fn delete_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    transact(ctx, |tx| {
        let tg = find_tg(tx, arn)?;
        if let Some(l) = listeners(tx)?.iter().find(|l| l.target_group_arn == tg.arn) {
            return Err(ApiError::new(
                "ResourceInUse",
                format!(
                    "Target group '{arn}' is currently in use by a listener or a rule ({})",
                    l.arn
                ),
            ));
        }
        let key = tx.ctx().key(TG_SEGMENT, &tg.id);
        tx.delete_raw(key);
        Ok(())
    })?;
    Ok(answer(ctx, "DeleteTargetGroup", |_| {}))
}

/// `Targets.member.N.Id` / `.Port`, the port defaulting to the group's.
fn target_params(params: &Params, default_port: u16) -> Result<Vec<(String, u16)>, ApiError> {
    let targets = params.structs("Targets.member")?;
    if targets.is_empty() {
        return Err(validation("At least one target must be specified"));
    }
    targets
        .iter()
        .map(|t| {
            let id = t
                .required("Id")
                .map_err(|_| validation("Targets.member.N.Id is required"))?;
            let port = match t.number::<u32>("Port")? {
                Some(p) => check_port("Port", p)?,
                None => default_port,
            };
            Ok((id.to_owned(), port))
        })
        .collect()
}

fn invalid_target(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidTarget", message)
}

/// The EC2 instance fields a target needs.
#[derive(Deserialize)]
struct InstanceRecord {
    state: String,
    vpc_id: String,
}

fn instance(tx: &mut Tx, id: &str) -> Result<Option<InstanceRecord>, ApiError> {
    let key = tx.ctx().key("i", id);
    tx.get_raw(&key)?.map(|v| read(&v, "instance")).transpose()
}

/// spec 9.1: private ranges an `ip` target may use outside the VPC.
const PRIVATE_RANGES: &[&str] = &[
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
];

fn cidr_contains(cidr: &str, ip: Ipv4Addr) -> bool {
    cidr.parse::<openvpc_model::Ipv4Cidr>()
        .is_ok_and(|c| c.contains_addr(ip))
}

fn register_targets(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        let wanted = target_params(params, tg.port)?;
        let cidrs = vpc_cidrs(tx, &tg.vpc_id)?.unwrap_or_default();
        for (id, port) in wanted {
            if tg.target_type == "instance" {
                let Some(i) = instance(tx, &id)? else {
                    return Err(invalid_target(format!(
                        "The following targets are not valid instances: '{id}'"
                    )));
                };
                if i.state == "terminated" {
                    return Err(invalid_target(format!(
                        "The following targets are not in a running state and cannot be registered: '{id}'"
                    )));
                }
                if i.vpc_id != tg.vpc_id {
                    return Err(invalid_target(format!(
                        "The following targets are not in the target group VPC '{}': '{id}'",
                        tg.vpc_id
                    )));
                }
            } else {
                let ip: Ipv4Addr = id.parse().map_err(|_| {
                    validation(format!("The IP address '{id}' is not a valid IPv4 address"))
                })?;
                let in_vpc = cidrs.iter().any(|c| cidr_contains(c, ip));
                let private = PRIVATE_RANGES.iter().any(|c| cidr_contains(c, ip));
                if !in_vpc && !private {
                    return Err(invalid_target(format!(
                        "The IP address '{id}' is outside the VPC and the private ranges (10.0.0.0/8, 100.64.0.0/10, 172.16.0.0/12, 192.168.0.0/16)"
                    )));
                }
            }
            // Registering a target again changes nothing (spec 9.1: one
            // target may be registered on several ports).
            if !tg.targets.iter().any(|t| t.id == id && t.port == port) {
                tg.targets.push(Target {
                    id,
                    port,
                    registered: now_secs(),
                });
            }
        }
        if tg.targets.len() > MAX_TARGETS {
            return Err(ApiError::new(
                "TooManyTargets",
                format!("A target group can have at most {MAX_TARGETS} targets"),
            ));
        }
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)
    })?;
    Ok(answer(ctx, "RegisterTargets", |_| {}))
}

fn deregister_targets(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        // AWS: "If the specified target does not exist, the action returns
        // successfully", so a repeated deregistration is not an error.
        for (id, port) in target_params(params, tg.port)? {
            tg.targets.retain(|t| !(t.id == id && t.port == port));
        }
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)
    })?;
    Ok(answer(ctx, "DeregisterTargets", |_| {}))
}

/// The health AWS would show for a target, without a dataplane to probe it.
///
/// - A group no listener forwards to: `unused` (`Target.NotInUse`).
/// - Health checks off: `unavailable` (`Target.HealthCheckDisabled`).
/// - An instance that is not running: `unused` (`Target.InvalidState`).
/// - For `interval × healthy threshold` seconds (the time the checks take
///   to pass, 150 s by default) after the target was registered or the
///   group was put to use, whichever is later: `initial`
///   (`Elb.RegistrationInProgress`).
/// - Afterwards: `healthy`. Without a dataplane nothing probes the target,
///   so openvpc reports the outcome of a check that passes.
pub fn target_health(
    tg: &TargetGroup,
    target: &Target,
    instance_state: Option<&str>,
    now: u64,
) -> (&'static str, Option<(&'static str, &'static str)>) {
    let Some(in_use) = tg.in_use_since else {
        return (
            "unused",
            Some((
                "Target.NotInUse",
                "Target group is not configured to receive traffic from the load balancer",
            )),
        );
    };
    if !tg.health.enabled {
        return (
            "unavailable",
            Some(("Target.HealthCheckDisabled", "Health checks are disabled")),
        );
    }
    if instance_state.is_some_and(|s| s != "running") {
        return (
            "unused",
            Some((
                "Target.InvalidState",
                "Target is in the stopped or terminated state",
            )),
        );
    }
    let since = in_use.max(target.registered);
    let checks = u64::from(tg.health.interval) * u64::from(tg.health.healthy_threshold);
    if now < since + checks {
        return (
            "initial",
            Some((
                "Elb.RegistrationInProgress",
                "Target registration is in progress",
            )),
        );
    }
    ("healthy", None)
}

fn describe_target_health(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let rows = transact(ctx, |tx| {
        let tg = find_tg(tx, arn)?;
        let asked = if params.get("Targets.member.1.Id").is_some() {
            target_params(params, tg.port)?
        } else {
            tg.targets.iter().map(|t| (t.id.clone(), t.port)).collect()
        };
        let now = now_secs();
        let mut rows = Vec::new();
        for (id, port) in asked {
            let health = match tg.targets.iter().find(|t| t.id == id && t.port == port) {
                Some(t) => {
                    let state = if tg.target_type == "instance" {
                        instance(tx, &id)?.map(|i| i.state)
                    } else {
                        None
                    };
                    target_health(&tg, t, state.as_deref(), now)
                }
                None => (
                    "unused",
                    Some((
                        "Target.NotRegistered",
                        "Target is not registered to the target group",
                    )),
                ),
            };
            let check_port = if tg.health.port == "traffic-port" {
                port.to_string()
            } else {
                tg.health.port.clone()
            };
            rows.push((id, port, check_port, health));
        }
        Ok(rows)
    })?;
    Ok(answer(ctx, "DescribeTargetHealth", |x| {
        x.members(
            "TargetHealthDescriptions",
            &rows,
            |x, (id, port, check_port, (state, reason))| {
                x.node("Target", |x| {
                    x.elem("Id", id).elem("Port", port);
                })
                .elem("HealthCheckPort", check_port)
                .node("TargetHealth", |x| {
                    x.elem("State", state);
                    if let Some((code, text)) = reason {
                        x.elem("Reason", code).elem("Description", text);
                    }
                });
            },
        );
    }))
}

// ---------------------------------------------------------------- listeners

/// Which target group protocols a listener protocol may forward to.
fn forwards_to(listener: &str, group: &str) -> bool {
    match listener {
        "TCP" => group == "TCP" || group == "TCP_UDP",
        "UDP" => group == "UDP" || group == "TCP_UDP",
        "TCP_UDP" => group == "TCP_UDP",
        "TLS" => group == "TCP" || group == "TLS",
        _ => false,
    }
}

/// The one `forward` default action: its target group ARN.
fn default_action(params: &Params) -> Result<Option<String>, ApiError> {
    let actions = params.structs("DefaultActions.member")?;
    match actions.as_slice() {
        [] => Ok(None),
        [a] => {
            let kind = a
                .required("Type")
                .map_err(|_| validation("DefaultActions.member.N.Type is required"))?;
            if kind != "forward" {
                return Err(validation(format!(
                    "Action type '{kind}' is not supported on network load balancers: use 'forward'"
                )));
            }
            let arn = a
                .get("TargetGroupArn")
                .or_else(|| a.get("ForwardConfig.TargetGroups.member.1.TargetGroupArn"))
                .ok_or_else(|| validation("A forward action needs a TargetGroupArn"))?;
            Ok(Some(arn.to_owned()))
        }
        _ => Err(validation(
            "A network load balancer listener takes exactly one default action",
        )),
    }
}

fn write_listener(x: &mut Xml, l: &Listener) {
    x.elem("ListenerArn", &l.arn)
        .elem("LoadBalancerArn", &l.load_balancer_arn)
        .elem("Port", l.port)
        .elem("Protocol", &l.protocol);
    if let Some(cert) = &l.certificate_arn {
        x.members("Certificates", [cert], |x, c| {
            x.elem("CertificateArn", c);
        });
    }
    x.members("DefaultActions", [&l.target_group_arn], |x, tg| {
        x.elem("Type", "forward").elem("TargetGroupArn", tg);
    });
}

/// Checks a listener's protocol, port and target group against its load
/// balancer and the other listeners, and marks the group in use.
fn check_listener(tx: &mut Tx, l: &Listener, lb: &LoadBalancer) -> Result<(), ApiError> {
    if !["TCP", "UDP", "TCP_UDP", "TLS"].contains(&l.protocol.as_str()) {
        return Err(validation(format!(
            "Listener protocol '{}' must be one of [TCP, UDP, TCP_UDP, TLS]",
            l.protocol
        )));
    }
    if l.protocol == "TLS" && l.certificate_arn.is_none() {
        return Err(validation(
            "A TLS listener needs a certificate (Certificates.member.1.CertificateArn)",
        ));
    }
    if lb.ip_address_type == "dualstack" && !["TCP", "TLS"].contains(&l.protocol.as_str()) {
        return Err(config(
            "Dual-stack network load balancers take TCP and TLS listeners only",
        ));
    }
    let all = listeners(tx)?;
    let others: Vec<&Listener> = all
        .iter()
        .filter(|o| o.load_balancer_arn == lb.arn && o.arn != l.arn)
        .collect();
    if others.iter().any(|o| o.port == l.port) {
        return Err(ApiError::new(
            "DuplicateListener",
            format!(
                "A listener already exists on port {} of this load balancer",
                l.port
            ),
        ));
    }
    if others.len() >= MAX_LISTENERS {
        return Err(ApiError::new(
            "TooManyListeners",
            format!("A load balancer can have at most {MAX_LISTENERS} listeners"),
        ));
    }
    let mut tg = find_tg(tx, &l.target_group_arn)?;
    if !forwards_to(&l.protocol, &tg.protocol) {
        return Err(validation(format!(
            "A {} listener cannot forward to a {} target group",
            l.protocol, tg.protocol
        )));
    }
    if tg.vpc_id != lb.vpc_id {
        return Err(config(format!(
            "Target group '{}' is in VPC '{}', not in the load balancer's VPC '{}'",
            tg.arn, tg.vpc_id, lb.vpc_id
        )));
    }
    if all
        .iter()
        .any(|o| o.target_group_arn == tg.arn && o.load_balancer_arn != lb.arn)
    {
        return Err(ApiError::new(
            "TargetGroupAssociationLimit",
            format!(
                "Target group '{}' is already associated with another load balancer",
                tg.arn
            ),
        ));
    }
    if tg.in_use_since.is_none() {
        tg.in_use_since = Some(now_secs());
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)?;
    }
    Ok(())
}

/// A target group no listener uses any more goes back to `unused`.
fn release_unused(tx: &mut Tx, tg_arn: &str) -> Result<(), ApiError> {
    if listeners(tx)?.iter().any(|l| l.target_group_arn == tg_arn) {
        return Ok(());
    }
    if let Some(mut tg) = target_groups(tx)?.into_iter().find(|t| t.arn == tg_arn) {
        tg.in_use_since = None;
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)?;
    }
    Ok(())
}

fn create_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let lb_arn = params.required("LoadBalancerArn")?;
    let protocol = params.required("Protocol")?.to_owned();
    let port = check_port(
        "Port",
        params
            .number("Port")?
            .ok_or_else(|| ApiError::missing_parameter("Port"))?,
    )?;
    let tg_arn = default_action(params)?
        .ok_or_else(|| validation("A listener needs a default action (DefaultActions.member.1)"))?;
    let certificate_arn = params
        .get("Certificates.member.1.CertificateArn")
        .map(str::to_owned);
    let listener = transact(ctx, |tx| {
        let lb = find_lb(tx, lb_arn)?;
        let id = random_id();
        let l = Listener {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:{}:listener/net/{}/{}/{id}",
                ctx.region, ctx.account.id, lb.name, lb.id
            ),
            id: id.clone(),
            load_balancer_arn: lb.arn.clone(),
            protocol: protocol.clone(),
            port,
            target_group_arn: tg_arn.clone(),
            certificate_arn: certificate_arn.clone(),
            tcp_idle_timeout: None,
        };
        check_listener(tx, &l, &lb)?;
        put(tx, LISTENER_SEGMENT, &id, &l)?;
        Ok(l)
    })?;
    Ok(answer(ctx, "CreateListener", |x| {
        x.members("Listeners", [&listener], write_listener);
    }))
}

fn describe_listeners(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = params.list("ListenerArns.member")?;
    let lb_arn = params.get("LoadBalancerArn");
    if arns.is_empty() == lb_arn.is_none() {
        return Err(validation(
            "Specify either a load balancer ARN or listener ARNs, and not both",
        ));
    }
    let chosen = transact(ctx, |tx| {
        let all = listeners(tx)?;
        if let Some(lb) = lb_arn {
            let lb = find_lb(tx, lb)?;
            return Ok(all
                .into_iter()
                .filter(|l| l.load_balancer_arn == lb.arn)
                .collect::<Vec<_>>());
        }
        arns.iter()
            .map(|arn| {
                check_arn(arn, "listener")?;
                all.iter()
                    .find(|l| &l.arn == arn)
                    .cloned()
                    .ok_or_else(|| listener_not_found(arn))
            })
            .collect()
    })?;
    let (items, next) = page(params, chosen, |l| &l.arn)?;
    Ok(answer(ctx, "DescribeListeners", |x| {
        x.members("Listeners", &items, write_listener);
        x.opt("NextMarker", next);
    }))
}

fn modify_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let new_tg = default_action(params)?;
    let listener = transact(ctx, |tx| {
        let mut l = find_listener(tx, arn)?;
        let old_tg = l.target_group_arn.clone();
        if let Some(p) = params.get("Protocol") {
            l.protocol = p.to_owned();
            // spec 9.6: only TCP listeners have a configurable idle timeout;
            // a listener that stops being one keeps no setting to reappear.
            if l.protocol != "TCP" {
                l.tcp_idle_timeout = None;
            }
        }
        if let Some(port) = params.number::<u32>("Port")? {
            l.port = check_port("Port", port)?;
        }
        if let Some(tg) = &new_tg {
            l.target_group_arn = tg.clone();
        }
        if let Some(cert) = params.get("Certificates.member.1.CertificateArn") {
            l.certificate_arn = Some(cert.to_owned());
        }
        let lb = find_lb(tx, &l.load_balancer_arn)?;
        check_listener(tx, &l, &lb)?;
        let id = l.id.clone();
        put(tx, LISTENER_SEGMENT, &id, &l)?;
        if old_tg != l.target_group_arn {
            release_unused(tx, &old_tg)?;
        }
        Ok(l)
    })?;
    Ok(answer(ctx, "ModifyListener", |x| {
        x.members("Listeners", [&listener], write_listener);
    }))
}

fn delete_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    transact(ctx, |tx| {
        let l = find_listener(tx, arn)?;
        let key = tx.ctx().key(LISTENER_SEGMENT, &l.id);
        tx.delete_raw(key);
        release_unused(tx, &l.target_group_arn)
    })?;
    Ok(answer(ctx, "DeleteListener", |_| {}))
}

/// spec 9.6: the TCP idle timeout's key, default and range.
const TCP_IDLE_TIMEOUT: &str = "tcp.idle_timeout.seconds";
const TCP_IDLE_TIMEOUT_DEFAULT: u32 = 350;
const TCP_IDLE_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 60..=6000;

/// A listener's attributes: the TCP idle timeout for a TCP listener
/// (spec 9.6), none for the others, whose timeouts are fixed (TLS: 350 s,
/// UDP: 120 s) and which AWS shows no attributes for.
fn listener_attributes(l: &Listener) -> Vec<(&'static str, String)> {
    if l.protocol != "TCP" {
        return Vec::new();
    }
    let seconds = l.tcp_idle_timeout.unwrap_or(TCP_IDLE_TIMEOUT_DEFAULT);
    vec![(TCP_IDLE_TIMEOUT, seconds.to_string())]
}

fn describe_listener_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let listener = transact(ctx, |tx| find_listener(tx, arn))?;
    Ok(answer(ctx, "DescribeListenerAttributes", |x| {
        write_attributes(x, &listener_attributes(&listener))
    }))
}

fn modify_listener_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let changes = params.structs("Attributes.member")?;
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    let listener = transact(ctx, |tx| {
        let mut l = find_listener(tx, arn)?;
        for change in &changes {
            let key = change
                .required("Key")
                .map_err(|_| validation("Attributes.member.N.Key is required"))?;
            let value = change.get("Value").unwrap_or("");
            if key != TCP_IDLE_TIMEOUT {
                return Err(validation(format!(
                    "Listener attribute key '{key}' is not recognized; network load balancer listeners take '{TCP_IDLE_TIMEOUT}'"
                )));
            }
            let seconds = value
                .parse::<u32>()
                .ok()
                .filter(|s| TCP_IDLE_TIMEOUT_RANGE.contains(s))
                .ok_or_else(|| {
                    validation(format!(
                        "Attribute '{key}' must be a number from {} to {}, not '{value}'",
                        TCP_IDLE_TIMEOUT_RANGE.start(),
                        TCP_IDLE_TIMEOUT_RANGE.end()
                    ))
                })?;
            if l.protocol != "TCP" {
                return Err(config(format!(
                    "Attribute '{key}' can be set on TCP listeners only, not on this {} listener",
                    l.protocol
                )));
            }
            l.tcp_idle_timeout = Some(seconds);
        }
        let id = l.id.clone();
        put(tx, LISTENER_SEGMENT, &id, &l)?;
        Ok(l)
    })?;
    Ok(answer(ctx, "ModifyListenerAttributes", |x| {
        write_attributes(x, &listener_attributes(&listener))
    }))
}

// ---------------------------------------------------------------- tags

/// spec 12.1: at most 50 tags per resource.
const MAX_TAGS: usize = 50;

/// Runs `edit` on the tags of the load balancer or target group `arn` and
/// stores the result; returns the tags.
fn with_tags(
    tx: &mut Tx,
    arn: &str,
    edit: impl FnOnce(&mut Vec<(String, String)>) -> Result<(), ApiError>,
) -> Result<Vec<(String, String)>, ApiError> {
    if arn.contains(":loadbalancer/") {
        let mut lb = find_lb(tx, arn)?;
        edit(&mut lb.tags)?;
        let id = lb.id.clone();
        put(tx, LB_SEGMENT, &id, &lb)?;
        Ok(lb.tags)
    } else if arn.contains(":targetgroup/") {
        let mut tg = find_tg(tx, arn)?;
        edit(&mut tg.tags)?;
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)?;
        Ok(tg.tags)
    } else {
        Err(validation(format!(
            "'{arn}' is not a load balancer or target group ARN: openvpc tags those two"
        )))
    }
}

fn resource_arns(params: &Params) -> Result<Vec<String>, ApiError> {
    let arns = params.list("ResourceArns.member")?;
    if arns.is_empty() {
        return Err(validation("At least one resource ARN must be specified"));
    }
    Ok(arns)
}

fn add_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let new = tags(params)?;
    transact(ctx, |tx| {
        for arn in &arns {
            with_tags(tx, arn, |tags| {
                for (k, v) in &new {
                    // A key given again takes the new value.
                    match tags.iter_mut().find(|(key, _)| key == k) {
                        Some(t) => t.1 = v.clone(),
                        None => tags.push((k.clone(), v.clone())),
                    }
                }
                if tags.len() > MAX_TAGS {
                    return Err(ApiError::new(
                        "TooManyTags",
                        format!("A resource can have at most {MAX_TAGS} tags"),
                    ));
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(answer(ctx, "AddTags", |_| {}))
}

fn remove_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let keys = params.list("TagKeys.member")?;
    transact(ctx, |tx| {
        for arn in &arns {
            with_tags(tx, arn, |tags| {
                tags.retain(|(k, _)| !keys.contains(k));
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(answer(ctx, "RemoveTags", |_| {}))
}

fn describe_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let rows = transact(ctx, |tx| {
        arns.iter()
            .map(|arn| Ok((arn.clone(), with_tags(tx, arn, |_| Ok(()))?)))
            .collect::<Result<Vec<_>, ApiError>>()
    })?;
    Ok(answer(ctx, "DescribeTags", |x| {
        x.members("TagDescriptions", &rows, |x, (arn, tags)| {
            x.elem("ResourceArn", arn);
            x.members("Tags", tags, |x, (k, v)| {
                x.elem("Key", k).elem("Value", v);
            });
        });
    }))
}

// ---------------------------------------------------------------- target group attributes

/// spec 9.3: client IP preservation cannot be turned off for `ip` targets
/// with UDP or TCP_UDP.
fn client_ip_forced(tg: &TargetGroup) -> bool {
    tg.target_type == "ip" && (tg.protocol == "UDP" || tg.protocol == "TCP_UDP")
}

/// Every attribute of a target group: spec 9.1's defaults (9.3's for client
/// IP preservation), overridden by what was modified.
fn tg_attributes(tg: &TargetGroup) -> Vec<(&'static str, String)> {
    let preserve = tg.target_type == "instance" || client_ip_forced(tg);
    let defaults: [(&'static str, String); 7] = [
        ("deregistration_delay.timeout_seconds", "300".to_owned()),
        (
            "deregistration_delay.connection_termination.enabled",
            "false".to_owned(),
        ),
        ("proxy_protocol_v2.enabled", "false".to_owned()),
        ("stickiness.enabled", "false".to_owned()),
        ("stickiness.type", "source_ip".to_owned()),
        ("preserve_client_ip.enabled", preserve.to_string()),
        (
            "load_balancing.cross_zone.enabled",
            "use_load_balancer_configuration".to_owned(),
        ),
    ];
    defaults
        .into_iter()
        .map(|(k, v)| (k, tg.attributes.get(k).cloned().unwrap_or(v)))
        .collect()
}

/// Checks one attribute change against spec 9.1's ranges.
fn check_tg_attribute(tg: &TargetGroup, key: &str, value: &str) -> Result<(), ApiError> {
    match key {
        "deregistration_delay.timeout_seconds" => match value.parse::<u32>() {
            Ok(n) if n <= 3600 => Ok(()),
            _ => Err(validation(format!(
                "Attribute '{key}' must be a number from 0 to 3600, not '{value}'"
            ))),
        },
        "deregistration_delay.connection_termination.enabled"
        | "proxy_protocol_v2.enabled"
        | "stickiness.enabled" => bool_attribute(key, value).map(drop),
        "preserve_client_ip.enabled" => {
            if !bool_attribute(key, value)? && client_ip_forced(tg) {
                return Err(config(
                    "Client IP preservation cannot be disabled for ip targets of UDP or TCP_UDP target groups",
                ));
            }
            Ok(())
        }
        "stickiness.type" if value == "source_ip" => Ok(()),
        "stickiness.type" => Err(validation(format!(
            "Stickiness type '{value}' must be 'source_ip' on network load balancers"
        ))),
        "load_balancing.cross_zone.enabled"
            if ["true", "false", "use_load_balancer_configuration"].contains(&value) =>
        {
            Ok(())
        }
        "load_balancing.cross_zone.enabled" => Err(validation(format!(
            "Attribute '{key}' must be true, false or use_load_balancer_configuration, not '{value}'"
        ))),
        _ => Err(validation(format!(
            "Target group attribute key '{key}' is not recognized"
        ))),
    }
}

fn describe_target_group_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let tg = transact(ctx, |tx| find_tg(tx, arn))?;
    Ok(answer(ctx, "DescribeTargetGroupAttributes", |x| {
        write_attributes(x, &tg_attributes(&tg))
    }))
}

fn modify_target_group_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let changes = params.structs("Attributes.member")?;
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    let tg = transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        for change in &changes {
            let key = change
                .required("Key")
                .map_err(|_| validation("Attributes.member.N.Key is required"))?;
            let value = change.get("Value").unwrap_or("");
            check_tg_attribute(&tg, key, value)?;
            tg.attributes.insert(key.to_owned(), value.to_owned());
        }
        let id = tg.id.clone();
        put(tx, TG_SEGMENT, &id, &tg)?;
        Ok(tg)
    })?;
    Ok(answer(ctx, "ModifyTargetGroupAttributes", |x| {
        write_attributes(x, &tg_attributes(&tg))
    }))
}
