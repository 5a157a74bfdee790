//! ELBv2 target group actions: Create, Describe, Modify and Delete
//! TargetGroup(s), their health check settings (spec 9.4), Register and
//! Deregister Targets, and target group attributes (spec 9.1, 9.3).
//!
//! Deregistration drains (spec 9.4): a deregistered target stays in the
//! group, `draining`, with its `deregistered_at`, until the group's
//! deregistration delay has passed; it is removed lazily ([`drained`]) by
//! the next transaction that reads or writes the group.

use openvpc_model::lifecycle::{CidrBlockState, InstanceState};
use std::net::Ipv4Addr;

use serde::Deserialize;

use super::records::{
    HealthCheck, Listener, Target, TargetGroup, check_arn, find_lb, find_tg, listeners,
    target_groups, tg_not_found,
};
use super::{
    MAX_TARGET_GROUPS, MAX_TARGETS, answer, bool_attribute, check_name, check_port, config, page,
    random_id, read, tags, validation, write_attributes,
};
use crate::api::actions::Ctx;
use crate::api::actions::resource::{Tx, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use openvpc_model::time::now_secs;

const TG_PROTOCOLS: &[&str] = &["TCP", "UDP", "TCP_UDP", "TLS"];

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
pub(super) fn lb_arns_of(tg: &TargetGroup, listeners: &[Listener]) -> Vec<String> {
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
        state: CidrBlockState,
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
            .filter(|a| a.state == CidrBlockState::Associated)
            .map(|a| a.cidr_block),
    );
    Ok(Some(cidrs))
}

pub(super) fn create_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
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
        tx.put(&tg)?;
        Ok(tg)
    })?;
    Ok(answer(ctx, "CreateTargetGroup", |x| {
        x.members("TargetGroups", [&tg], |x, tg| write_tg(x, tg, &[]));
    }))
}

pub(super) fn describe_target_groups(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
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

pub(super) fn modify_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let (tg, lbs) = transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        drained(&mut tg, now_secs());
        apply_health(params, &mut tg.health)?;
        tx.put(&tg)?;
        let lbs = lb_arns_of(&tg, &listeners(tx)?);
        Ok((tg, lbs))
    })?;
    Ok(answer(ctx, "ModifyTargetGroup", |x| {
        x.members("TargetGroups", [&tg], |x, tg| write_tg(x, tg, &lbs));
    }))
}

pub(super) fn delete_target_group(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
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
        tx.delete::<TargetGroup>(&tg.id);
        Ok(())
    })?;
    Ok(answer(ctx, "DeleteTargetGroup", |_| {}))
}

/// `Targets.member.N.Id` / `.Port`, the port defaulting to the group's.
pub(super) fn target_params(
    params: &Params,
    default_port: u16,
) -> Result<Vec<(String, u16)>, ApiError> {
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
pub(super) struct InstanceRecord {
    pub(super) state: InstanceState,
    vpc_id: String,
}

pub(super) fn instance(tx: &mut Tx, id: &str) -> Result<Option<InstanceRecord>, ApiError> {
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

pub(super) fn register_targets(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        let wanted = target_params(params, tg.port)?;
        let cidrs = vpc_cidrs(tx, &tg.vpc_id)?.unwrap_or_default();
        let now = now_secs();
        drained(&mut tg, now);
        for (id, port) in wanted {
            if tg.target_type == "instance" {
                let Some(i) = instance(tx, &id)? else {
                    return Err(invalid_target(format!(
                        "The following targets are not valid instances: '{id}'"
                    )));
                };
                if i.state == InstanceState::Terminated {
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
            // target may be registered on several ports); a draining one
            // is registered afresh.
            match tg.targets.iter_mut().find(|t| t.id == id && t.port == port) {
                Some(t) if t.deregistered_at.is_some() => {
                    t.deregistered_at = None;
                    t.registered = now;
                }
                Some(_) => {}
                None => tg.targets.push(Target {
                    id,
                    port,
                    registered: now,
                    deregistered_at: None,
                }),
            }
        }
        if tg.targets.len() > MAX_TARGETS {
            return Err(ApiError::new(
                "TooManyTargets",
                format!("A target group can have at most {MAX_TARGETS} targets"),
            ));
        }
        tx.put(&tg)
    })?;
    Ok(answer(ctx, "RegisterTargets", |_| {}))
}

pub(super) fn deregister_targets(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        let now = now_secs();
        // AWS: "If the specified target does not exist, the action returns
        // successfully", so a repeated deregistration is not an error, and
        // a draining target keeps draining from its first deregistration.
        for (id, port) in target_params(params, tg.port)? {
            for t in tg
                .targets
                .iter_mut()
                .filter(|t| t.id == id && t.port == port)
            {
                t.deregistered_at.get_or_insert(now);
            }
        }
        drained(&mut tg, now);
        tx.put(&tg)
    })?;
    Ok(answer(ctx, "DeregisterTargets", |_| {}))
}

/// spec 9.1: the deregistration delay when a group leaves it unset.
const DEREGISTRATION_DELAY_DEFAULT: u64 = 300;

/// The group's deregistration delay in seconds (spec 9.1: default 300).
pub(super) fn deregistration_delay(tg: &TargetGroup) -> u64 {
    tg.attributes
        .get("deregistration_delay.timeout_seconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEREGISTRATION_DELAY_DEFAULT)
}

/// Removes the targets that have drained by `now` (Unix seconds): those
/// deregistered at least the group's deregistration delay ago, and every
/// deregistered one of a group no listener uses, which has no flows to
/// drain. Returns whether any went, i.e. whether the group must be stored.
pub(super) fn drained(tg: &mut TargetGroup, now: u64) -> bool {
    let delay = deregistration_delay(tg);
    let in_use = tg.in_use_since.is_some();
    let before = tg.targets.len();
    tg.targets.retain(|t| match t.deregistered_at {
        Some(at) => in_use && now < at.saturating_add(delay),
        None => true,
    });
    tg.targets.len() != before
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

pub(super) fn describe_target_group_attributes(
    ctx: &Ctx,
    params: &Params,
) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let tg = transact(ctx, |tx| find_tg(tx, arn))?;
    Ok(answer(ctx, "DescribeTargetGroupAttributes", |x| {
        write_attributes(x, &tg_attributes(&tg))
    }))
}

pub(super) fn modify_target_group_attributes(
    ctx: &Ctx,
    params: &Params,
) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let changes = params.structs("Attributes.member")?;
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    let tg = transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        drained(&mut tg, now_secs());
        for change in &changes {
            let key = change
                .required("Key")
                .map_err(|_| validation("Attributes.member.N.Key is required"))?;
            let value = change.get("Value").unwrap_or("");
            check_tg_attribute(&tg, key, value)?;
            tg.attributes.insert(key.to_owned(), value.to_owned());
        }
        tx.put(&tg)?;
        Ok(tg)
    })?;
    Ok(answer(ctx, "ModifyTargetGroupAttributes", |x| {
        write_attributes(x, &tg_attributes(&tg))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(target_type: &str, protocol: &str) -> TargetGroup {
        TargetGroup {
            arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/1".to_owned(),
            name: "tg".to_owned(),
            id: "1".to_owned(),
            protocol: protocol.to_owned(),
            port: 80,
            vpc_id: "vpc-1".to_owned(),
            target_type: target_type.to_owned(),
            health: HealthCheck {
                enabled: true,
                protocol: "TCP".to_owned(),
                port: "traffic-port".to_owned(),
                path: None,
                interval: 30,
                timeout: 10,
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: None,
            },
            targets: Vec::new(),
            in_use_since: None,
            tags: Vec::new(),
            attributes: Default::default(),
        }
    }

    fn attribute(tg: &TargetGroup, key: &str) -> Option<String> {
        tg_attributes(tg)
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn client_ip_preservation_defaults_follow_target_type_and_protocol() {
        // spec 9.3: on for instance targets and for ip targets with UDP or
        // TCP_UDP, off for ip targets with TCP or TLS.
        let preserve = "preserve_client_ip.enabled";
        assert_eq!(
            attribute(&group("instance", "TCP"), preserve).as_deref(),
            Some("true")
        );
        assert_eq!(
            attribute(&group("ip", "UDP"), preserve).as_deref(),
            Some("true")
        );
        assert_eq!(
            attribute(&group("ip", "TCP_UDP"), preserve).as_deref(),
            Some("true")
        );
        assert_eq!(
            attribute(&group("ip", "TCP"), preserve).as_deref(),
            Some("false")
        );
        // ... and it cannot be turned off where it is forced on.
        let e = check_tg_attribute(&group("ip", "UDP"), preserve, "false").unwrap_err();
        assert_eq!(e.code, "InvalidConfigurationRequest");
        assert!(check_tg_attribute(&group("ip", "TCP"), preserve, "false").is_ok());
    }

    #[test]
    fn attribute_defaults_and_ranges_are_spec_9_1s() {
        let tg = group("instance", "TCP");
        assert_eq!(
            attribute(&tg, "deregistration_delay.timeout_seconds").as_deref(),
            Some("300")
        );
        assert_eq!(
            attribute(&tg, "load_balancing.cross_zone.enabled").as_deref(),
            Some("use_load_balancer_configuration")
        );
        let delay = "deregistration_delay.timeout_seconds";
        assert!(check_tg_attribute(&tg, delay, "3600").is_ok());
        assert!(check_tg_attribute(&tg, delay, "3601").is_err());
        assert!(check_tg_attribute(&tg, "stickiness.type", "lb_cookie").is_err());
        assert!(check_tg_attribute(&tg, "no.such.key", "1").is_err());
    }
}
