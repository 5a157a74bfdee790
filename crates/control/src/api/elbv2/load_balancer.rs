//! ELBv2 load balancer actions: Create, Describe and Delete
//! LoadBalancer(s) and their attributes (deletion protection, cross-zone).

use openvpc_model::lifecycle::LoadBalancerState;
use serde::Deserialize;

use super::listener::release_unused;
use super::records::{
    Listener, LoadBalancer, Zone, check_arn, find_lb, get_lb, lb_not_found, listeners,
    load_balancers,
};
use super::{
    MAX_LOAD_BALANCERS, answer, bool_attribute, check_name, config, page, random_id, read, tags,
    validation, write_attributes,
};
use crate::api::actions::Ctx;
use crate::api::actions::resource::{Tx, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use openvpc_model::time::{format_time, now_secs};

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

pub(super) fn create_load_balancer(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
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
                network_interface_id: None,
                private_ip: None,
                public_ip: None,
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
            state: LoadBalancerState::Provisioning,
            state_reason: None,
            state_since: Some(now_secs()),
        };
        tx.put(&lb)?;
        Ok(lb)
    })?;
    // AWS answers Create while the nodes are still being placed.
    Ok(answer(ctx, "CreateLoadBalancer", |x| {
        x.members("LoadBalancers", [&created], |x, lb| {
            write_lb(x, ctx, lb, "provisioning")
        });
    }))
}

pub(super) fn describe_load_balancers(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
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

pub(super) fn delete_load_balancer(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("LoadBalancerArn")?;
    check_arn(arn, "loadbalancer")?;
    transact(ctx, |tx| {
        // AWS: deleting a load balancer that does not exist succeeds.
        let Some(lb) = get_lb(tx, arn)? else {
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
            tx.delete::<Listener>(&l.id);
        }
        for l in &gone {
            release_unused(tx, &l.target_group_arn)?;
        }
        tx.delete::<LoadBalancer>(&lb.id);
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

pub(super) fn describe_load_balancer_attributes(
    ctx: &Ctx,
    params: &Params,
) -> Result<String, ApiError> {
    let arn = params.required("LoadBalancerArn")?;
    let lb = transact(ctx, |tx| find_lb(tx, arn))?;
    Ok(answer(ctx, "DescribeLoadBalancerAttributes", |x| {
        write_attributes(x, &lb_attributes(&lb))
    }))
}

pub(super) fn modify_load_balancer_attributes(
    ctx: &Ctx,
    params: &Params,
) -> Result<String, ApiError> {
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
        tx.put(&lb)?;
        Ok(lb)
    })?;
    Ok(answer(ctx, "ModifyLoadBalancerAttributes", |x| {
        write_attributes(x, &lb_attributes(&lb))
    }))
}
