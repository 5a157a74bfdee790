//! ELBv2 load balancer actions: Create, Describe and Delete
//! LoadBalancer(s) and their attributes (deletion protection, cross-zone).
//!
//! Each enabled zone has a node with a requester-managed ENI in its subnet
//! (`ELB net/<name>/<id>`, interface type `network_load_balancer`, as on
//! AWS): its private address is the load balancer's address in that zone,
//! and an internet-facing load balancer's public address there (the given
//! Elastic IP, or one from the region's pool) is mapped onto it. The ENIs
//! are made with the load balancer and go with it. The state is the
//! record's: the fleet's lifecycle moves it, this module only shows it.

use std::net::Ipv4Addr;

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
use crate::api::actions::address::{self, Address, region_settings};
use crate::api::actions::network_interface::{
    AddressRequest, EniSpec, NetworkInterface, create_in, delete_in, parse_ip,
};
use crate::api::actions::resource::{Tx, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::records::region::InternetPolicy;
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

fn write_lb(x: &mut Xml, ctx: &Ctx, lb: &LoadBalancer, state: LoadBalancerState) {
    x.elem("LoadBalancerArn", &lb.arn)
        .elem("DNSName", lb.dns_name(ctx.region))
        .opt("CanonicalHostedZoneId", canonical_hosted_zone(ctx.region))
        .elem("CreatedTime", format_time(lb.created))
        .elem("LoadBalancerName", &lb.name)
        .elem("Scheme", &lb.scheme)
        .elem("VpcId", &lb.vpc_id)
        .node("State", |x| {
            x.elem("Code", state);
            // The reason belongs to the state the record holds.
            if state == lb.state {
                x.opt("Reason", lb.state_reason.as_deref());
            }
        })
        .elem("Type", "network")
        .members("AvailabilityZones", &lb.zones, |x, z| {
            x.elem("ZoneName", &z.zone).elem("SubnetId", &z.subnet_id);
            let addressed =
                z.public_ip.is_some() || z.allocation_id.is_some() || z.private_ip.is_some();
            x.members("LoadBalancerAddresses", addressed.then_some(z), |x, z| {
                x.opt("IpAddress", z.public_ip)
                    .opt("AllocationId", z.allocation_id.as_deref())
                    .opt("PrivateIPv4Address", z.private_ip);
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

/// One `Subnets.member.N` or `SubnetMappings.member.N`.
struct Mapping {
    subnet_id: String,
    allocation_id: Option<String>,
    /// An internal load balancer's chosen address in the subnet.
    private_ip: Option<Ipv4Addr>,
}

/// Makes a zone's node: its requester-managed ENI in the zone's subnet,
/// with the chosen private address or the subnet's next free one, and for
/// an internet-facing load balancer its public address (the Elastic IP
/// given, else one from the region's pool) mapped onto that address.
/// Fills the zone's `network_interface_id`, `private_ip` and `public_ip`.
fn front(
    tx: &mut Tx,
    zone: &mut Zone,
    mapping: &Mapping,
    description: &str,
    internet_facing: bool,
) -> Result<(), ApiError> {
    let spec = EniSpec {
        description: description.to_owned(),
        addresses: AddressRequest {
            primary: mapping.private_ip,
            ..Default::default()
        },
        groups: Vec::new(),
        conntrack: None,
        tags: Vec::new(),
    };
    // The EC2 errors of the subnet's address book, in ELBv2's words.
    let mut eni: NetworkInterface = create_in(tx, &zone.subnet_id, spec).map_err(|e| {
        if e.code == "InsufficientFreeAddressesInSubnet" {
            ApiError::new(
                "InvalidSubnet",
                format!(
                    "Subnet '{}' has no free address for the load balancer's node",
                    zone.subnet_id
                ),
            )
        } else if e.status == 400 {
            config(format!(
                "The load balancer's address in subnet '{}' cannot be used: {}",
                zone.subnet_id, e.message
            ))
        } else {
            e
        }
    })?;
    eni.interface_type = "network_load_balancer".into();
    eni.requester_managed = true;
    let private_ip = eni
        .primary_ip()
        .ok_or_else(|| ApiError::internal("A load balancer's ENI was made without an address"))?;
    if internet_facing {
        let public_ip = match &zone.allocation_id {
            Some(id) => {
                let mut eip = tx.get::<Address>(id)?.ok_or_else(|| {
                    ApiError::new(
                        "AllocationIdNotFound",
                        format!("The allocation ID '{id}' is not found"),
                    )
                })?;
                if eip.association.is_some() {
                    return Err(config(format!(
                        "Elastic IP address '{id}' ({}) is already associated",
                        eip.public_ip
                    )));
                }
                let owner = tx.ctx().account.id.clone();
                address::bind(&mut eni, &mut eip, private_ip, &owner);
                tx.put(&eip)?;
                eip.public_ip
            }
            None => address::take_for(tx, &mut eni, private_ip)?,
        };
        zone.public_ip = Some(public_ip);
    }
    tx.put(&eni)?;
    zone.network_interface_id = Some(eni.id);
    zone.private_ip = Some(private_ip);
    Ok(())
}

/// Deletes the zones' ENIs: their private addresses go back to their
/// subnets, pool addresses to the region's pool, and Elastic IPs are
/// disassociated (they stay allocated to the account).
fn release_fronts(tx: &mut Tx, lb: &LoadBalancer) -> Result<(), ApiError> {
    for id in lb
        .zones
        .iter()
        .filter_map(|z| z.network_interface_id.as_ref())
    {
        if let Some(eni) = tx.get::<NetworkInterface>(id)? {
            delete_in(tx, &eni)?;
        }
    }
    Ok(())
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
    let mut mappings: Vec<Mapping> = params
        .list("Subnets.member")?
        .into_iter()
        .map(|subnet_id| Mapping {
            subnet_id,
            allocation_id: None,
            private_ip: None,
        })
        .collect();
    for m in params.structs("SubnetMappings.member")? {
        let id = m
            .required("SubnetId")
            .map_err(|_| validation("SubnetMappings.member.N.SubnetId is required"))?;
        let private_ip = m
            .get("PrivateIPv4Address")
            .map(|t| {
                parse_ip("PrivateIPv4Address", t)
                    .map_err(|_| validation(format!("'{t}' is not a valid IPv4 address")))
            })
            .transpose()?;
        // AWS: a private address can be chosen for internal load balancers only.
        if private_ip.is_some() && scheme != "internal" {
            return Err(config(
                "A private IPv4 address (SubnetMappings.member.N.PrivateIPv4Address) can be given only for an internal load balancer",
            ));
        }
        mappings.push(Mapping {
            subnet_id: id.to_owned(),
            allocation_id: m.get("AllocationId").map(str::to_owned),
            private_ip,
        });
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
        for Mapping {
            subnet_id,
            allocation_id,
            ..
        } in &mappings
        {
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
        // Where hyperplane nodes serve load balancers, one provisions until
        // its shard serves it (the fleet's lifecycle moves it on); under
        // --moto-compat none runs, and it is active at once.
        let state = match region_settings(tx)?.internet {
            InternetPolicy::Edges => LoadBalancerState::Provisioning,
            InternetPolicy::Assumed => LoadBalancerState::Active,
        };
        let description = format!("ELB net/{name}/{id}");
        for (zone, m) in zones.iter_mut().zip(&mappings) {
            front(tx, zone, m, &description, scheme == "internet-facing")?;
        }
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
            state,
            state_reason: None,
            state_since: Some(now_secs()),
        };
        tx.put(&lb)?;
        Ok(lb)
    })?;
    // AWS answers Create while the nodes are still being placed.
    Ok(answer(ctx, "CreateLoadBalancer", |x| {
        x.members("LoadBalancers", [&created], |x, lb| {
            write_lb(x, ctx, lb, LoadBalancerState::Provisioning)
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
            write_lb(x, ctx, lb, lb.state)
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
        release_fronts(tx, &lb)?;
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
