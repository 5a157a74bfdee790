//! Elastic IPs (spec 5.3, 12): AllocateAddress, AssociateAddress,
//! DisassociateAddress, ReleaseAddress and DescribeAddresses, and the
//! region's public IPv4 pool that Elastic IPs and launch-time public
//! addresses both come from.
//!
//! The pool is one region-wide record (outside every account) mapping each
//! handed-out address to its account; every transaction that takes or
//! returns an address reads it through [`Tx::get_raw`], so two accounts
//! allocating at once conflict and one retries: no address is ever given
//! to two accounts.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use openvpc_model::ResourceKind;

use super::instance::Instance;
use super::internet_gateway::InternetGateway;
use super::network_interface::{NetworkInterface, PublicMapping, parse_ip};
use super::resource::{
    Resource, Tags, Tx, matches_filters, new_id, ok_return, to_json, transact, write_tags,
};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::address::{Address, AddressAssociation};
use crate::records::region::{DEFAULTS_KEY, InternetPolicy, RegionSettings, settings_key};

/// spec 13: Elastic IPs per region (default quota).
pub const ADDRESS_QUOTA: usize = 5;

/// The region's settings (`server --public-pool`), read inside the
/// transaction; a region never configured has the defaults.
pub fn region_settings(tx: &mut Tx) -> Result<RegionSettings, ApiError> {
    let key = settings_key(tx.ctx().region);
    let stored = match tx.get_raw(key.as_bytes())? {
        Some(v) => Some((key, v)),
        None => tx
            .get_raw(DEFAULTS_KEY.as_bytes())?
            .map(|v| (DEFAULTS_KEY.to_owned(), v)),
    };
    match stored {
        Some((key, v)) => serde_json::from_slice(&v).map_err(|e| {
            ApiError::internal(format!(
                "The region's stored settings ({key}) are unreadable: {e}; restart the server with its --public-pool to write them again"
            ))
        }),
        None => Ok(RegionSettings::default()),
    }
}

fn pool_key(region: &str) -> Vec<u8> {
    format!("region/{region}/public-ips").into_bytes()
}

/// Handed-out addresses and the account holding each.
type PoolState = BTreeMap<Ipv4Addr, String>;

fn read_pool(tx: &mut Tx) -> Result<PoolState, ApiError> {
    let key = pool_key(tx.ctx().region);
    match tx.get_raw(&key)? {
        Some(v) => serde_json::from_slice(&v)
            .map_err(|e| ApiError::internal(format!("The public address pool is unreadable: {e}"))),
        None => Ok(PoolState::new()),
    }
}

fn write_pool(tx: &mut Tx, pool: &PoolState) -> Result<(), ApiError> {
    let key = pool_key(tx.ctx().region);
    tx.put_raw(key, to_json(pool)?);
    Ok(())
}

/// Takes the lowest free public address of the region for the caller's account.
pub fn take(tx: &mut Tx) -> Result<Ipv4Addr, ApiError> {
    let mut pool = read_pool(tx)?;
    let settings = region_settings(tx)?;
    for range in &settings.public_pool {
        for ip in range.hosts() {
            if !settings.in_pool(ip) {
                continue;
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = pool.entry(ip) {
                slot.insert(tx.ctx().account.id.clone());
                write_pool(tx, &pool)?;
                return Ok(ip);
            }
        }
    }
    Err(ApiError::new(
        "InsufficientAddressCapacity",
        "There are no free public IPv4 addresses in this region.",
    ))
}

/// Maps a public address taken from the region's pool ([`take`]) onto
/// `private_ip` of `eni`: an Amazon-owned one, with no allocation or
/// association, as AWS gives at launch. The ENI is still to be stored.
/// Returns the address.
pub fn take_for(
    tx: &mut Tx,
    eni: &mut NetworkInterface,
    private_ip: Ipv4Addr,
) -> Result<Ipv4Addr, ApiError> {
    let public_ip = take(tx)?;
    eni.public.push(PublicMapping {
        private_ip,
        public_ip,
        allocation_id: None,
        association_id: None,
        ip_owner_id: "amazon".into(),
    });
    Ok(public_ip)
}

/// Takes `wanted` for the caller's account if it is a free address of the
/// region's pool: AllocateAddress's `Address`, which EC2 allows only to
/// recover a released address (or for a pool of one's own, which does not
/// exist here). Released addresses are not remembered, so any free pool
/// address counts as recoverable; anything else names no address.
fn take_specific(tx: &mut Tx, wanted: Ipv4Addr) -> Result<Ipv4Addr, ApiError> {
    let mut pool = read_pool(tx)?;
    let in_pool = region_settings(tx)?.in_pool(wanted);
    if !in_pool || pool.contains_key(&wanted) {
        return Err(address_not_found(&wanted.to_string()));
    }
    pool.insert(wanted, tx.ctx().account.id.clone());
    write_pool(tx, &pool)?;
    Ok(wanted)
}

/// Returns a public address to the region's pool.
pub fn give_back(tx: &mut Tx, ip: Ipv4Addr) -> Result<(), ApiError> {
    let mut pool = read_pool(tx)?;
    if pool.get(&ip) == Some(&tx.ctx().account.id) {
        pool.remove(&ip);
        write_pool(tx, &pool)?;
    }
    Ok(())
}

impl Resource for Address {
    const KIND: ResourceKind = ResourceKind::ElasticIpAllocation;
    const NOT_FOUND: &'static str = "InvalidAllocationID.NotFound";
    const NOUN: &'static str = "allocation";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let assoc = |f: fn(&AddressAssociation) -> Option<String>| {
            Some(self.association.iter().filter_map(f).collect())
        };
        match name {
            "allocation-id" => Some(vec![self.id.clone()]),
            "public-ip" => Some(vec![self.public_ip.to_string()]),
            "domain" => Some(vec![self.domain.clone()]),
            "network-border-group" => Some(vec![self.region.clone()]),
            "association-id" => assoc(|a| Some(a.association_id.clone())),
            "instance-id" => assoc(|a| a.instance_id.clone()),
            "network-interface-id" => assoc(|a| Some(a.network_interface_id.clone())),
            "network-interface-owner-id" => Some(
                self.association
                    .iter()
                    .map(|_| self.owner_id.clone())
                    .collect(),
            ),
            "private-ip-address" => assoc(|a| Some(a.private_ip.to_string())),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        x.elem("publicIp", self.public_ip)
            .elem("allocationId", &self.id)
            .elem("domain", &self.domain)
            .elem("publicIpv4Pool", "amazon")
            .elem("networkBorderGroup", &self.region);
        if let Some(a) = &self.association {
            x.elem("associationId", &a.association_id)
                .elem("networkInterfaceId", &a.network_interface_id)
                .elem("networkInterfaceOwnerId", &self.owner_id)
                .elem("privateIpAddress", a.private_ip)
                .opt("instanceId", a.instance_id.as_deref());
        }
        write_tags(x, &self.tags);
    }
}

/// The Elastic IP actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "AllocateAddress" => allocate(ctx, params),
        "AssociateAddress" => associate(ctx, params),
        "DisassociateAddress" => disassociate(ctx, params),
        "ReleaseAddress" => release(ctx, params),
        "DescribeAddresses" => describe(ctx, params),
        "DescribeAddressesAttribute" => describe_attribute(ctx, params),
        _ => return None,
    })
}

fn allocation_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidAllocationID.NotFound",
        format!("Allocation ID '{id}' not found."),
    )
}

fn address_not_found(ip: &str) -> ApiError {
    ApiError::new(
        "InvalidAddress.NotFound",
        format!("Address '{ip}' not found."),
    )
}

fn association_not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidAssociationID.NotFound",
        format!("Association ID '{id}' not found."),
    )
}

/// The Elastic IP a request names by `AllocationId` or else `PublicIp`.
fn named(tx: &mut Tx, params: &Params) -> Result<Address, ApiError> {
    let all = tx.list::<Address>()?;
    if let Some(id) = params.get("AllocationId") {
        return all
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| allocation_not_found(id));
    }
    if let Some(ip) = params.get("PublicIp") {
        return all
            .into_iter()
            .find(|a| a.public_ip.to_string() == ip)
            .ok_or_else(|| address_not_found(ip));
    }
    Err(ApiError::new(
        "MissingParameter",
        "Invalid request, expect PublicIp/AllocationId parameter.",
    ))
}

pub fn allocate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    // EC2-Classic is gone; `standard` is still accepted and recorded, as moto does.
    let domain = params.get("Domain").unwrap_or("vpc");
    if !matches!(domain, "vpc" | "standard") {
        return Err(ApiError::invalid_value("Domain", domain, "Use 'vpc'."));
    }
    let wanted = params
        .get("Address")
        .map(|t| parse_ip("Address", t))
        .transpose()?;
    let tags: Tags = tags_for(params, "elastic-ip")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let address = transact(ctx, |tx| {
        if tx.list::<Address>()?.len() >= ADDRESS_QUOTA {
            return Err(ApiError::new(
                "AddressLimitExceeded",
                format!(
                    "The maximum number of addresses has been reached ({ADDRESS_QUOTA} per region). Release an address or ask for a higher quota."
                ),
            ));
        }
        let address = Address {
            id: new_id(ResourceKind::ElasticIpAllocation),
            public_ip: match wanted {
                Some(ip) => take_specific(tx, ip)?,
                None => take(tx)?,
            },
            domain: domain.to_owned(),
            owner_id: ctx.account.id.clone(),
            region: ctx.region.to_owned(),
            association: None,
            tags: tags.clone(),
        };
        tx.put(&address)?;
        Ok(address)
    })?;
    Ok(Xml::response("AllocateAddress", ctx.request_id, |x| {
        x.elem("publicIp", address.public_ip)
            .elem("domain", &address.domain)
            .elem("allocationId", &address.id)
            .elem("publicIpv4Pool", "amazon")
            .elem("networkBorderGroup", &address.region);
    }))
}

/// Removes an Elastic IP from the ENI it is on; an ENI launched with an
/// auto-assigned public address gets a fresh one on its primary address
/// (spec 5.3).
pub fn disassociate_in(tx: &mut Tx, address: &mut Address) -> Result<(), ApiError> {
    let Some(assoc) = address.association.take() else {
        return Ok(());
    };
    if let Some(mut eni) = tx.get::<NetworkInterface>(&assoc.network_interface_id)? {
        eni.public
            .retain(|p| p.allocation_id.as_deref() != Some(address.id.as_str()));
        if eni.auto_public && eni.primary_ip() == Some(assoc.private_ip) {
            take_for(tx, &mut eni, assoc.private_ip)?;
        }
        tx.put(&eni)?;
    }
    tx.put(&*address)
}

/// Maps `address` onto `private_ip` of `eni` (whose public address there,
/// if any, the caller has already let go): the ENI's mapping and the
/// address's association, both still to be stored. Returns the new
/// association ID.
pub fn bind(
    eni: &mut NetworkInterface,
    address: &mut Address,
    private_ip: Ipv4Addr,
    owner: &str,
) -> String {
    let association_id = new_id(ResourceKind::ElasticIpAssociation);
    eni.public.push(PublicMapping {
        private_ip,
        public_ip: address.public_ip,
        allocation_id: Some(address.id.clone()),
        association_id: Some(association_id.clone()),
        ip_owner_id: owner.to_owned(),
    });
    address.association = Some(AddressAssociation {
        association_id: association_id.clone(),
        network_interface_id: eni.id.clone(),
        private_ip,
        instance_id: eni.attachment.as_ref().map(|a| a.instance_id.clone()),
    });
    association_id
}

pub fn associate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let instance_id = params.get("InstanceId");
    let eni_id = params.get("NetworkInterfaceId");
    if instance_id.is_none() && eni_id.is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "Invalid request, expect InstanceId/NetworkId parameter.",
        ));
    }
    if params.get("AllocationId").is_none() && params.get("PublicIp").is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "Invalid request, expect PublicIp/AllocationId parameter.",
        ));
    }
    let private_ip = params
        .get("PrivateIpAddress")
        .map(|t| parse_ip("PrivateIpAddress", t))
        .transpose()?;
    // Like moto, an EIP already on another interface moves only when asked to.
    let reassociate = params.bool("AllowReassociation")?.unwrap_or(false);
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let association_id = transact(ctx, |tx| {
        let mut address = named(tx, params)?;
        let mut eni = match (eni_id, instance_id) {
            (Some(id), _) => tx.load::<NetworkInterface>(id)?,
            (None, Some(id)) => {
                let instance = tx.load::<Instance>(id)?;
                tx.list::<NetworkInterface>()?
                    .into_iter()
                    .find(|e| {
                        e.attachment
                            .as_ref()
                            .is_some_and(|a| a.instance_id == instance.id && a.device_index == 0)
                    })
                    .ok_or_else(|| {
                        ApiError::new(
                            "IncorrectInstanceState",
                            format!("The instance '{id}' has no network interface; it is not in a valid state for this operation."),
                        )
                    })?
            }
            (None, None) => return Err(ApiError::missing_parameter("InstanceId")),
        };
        if let Some(want) = instance_id
            && eni_id.is_some()
            && !eni.attached_to(want)
        {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                format!(
                    "Network interface '{}' is not attached to instance '{want}'.",
                    eni.id
                ),
            ));
        }
        let target_ip = match private_ip {
            Some(ip) if eni.private_ips.contains(&ip) => ip,
            Some(ip) => {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The private address {ip} is not assigned to network interface '{}'.",
                        eni.id
                    ),
                ));
            }
            None => eni.primary_ip().ok_or_else(|| {
                ApiError::internal(format!("Network interface '{}' has no address", eni.id))
            })?,
        };
        // spec 5.1, 15: an Elastic IP maps only onto an address whose VPC
        // can reach the internet.
        if region_settings(tx)?.internet == InternetPolicy::Edges
            && !tx
                .list::<InternetGateway>()?
                .iter()
                .any(|g| g.vpc_id.as_deref() == Some(eni.vpc_id.as_str()))
        {
            return Err(ApiError::new(
                "Gateway.NotAttached",
                format!(
                    "Network {} is not attached to any internet gateway. Attach one (AttachInternetGateway) before associating an Elastic IP with an address in it.",
                    eni.vpc_id
                ),
            ));
        }
        if let Some(current) = &address.association {
            if current.network_interface_id == eni.id && current.private_ip == target_ip {
                // The same target again changes nothing.
                return Ok(current.association_id.clone());
            }
            if !reassociate {
                return Err(ApiError::new(
                    "Resource.AlreadyAssociated",
                    format!("Resource {} is already associated.", address.public_ip),
                ));
            }
            disassociate_in(tx, &mut address)?;
            // The move may have rewritten the target ENI (same ENI, other address).
            eni = tx.load::<NetworkInterface>(&eni.id)?;
        }
        // One public address per private address: an earlier EIP there is
        // disassociated, an auto-assigned one goes back to the pool.
        if let Some(old) = eni
            .public
            .iter()
            .find(|p| p.private_ip == target_ip)
            .cloned()
        {
            match &old.allocation_id {
                Some(other) => {
                    if let Some(mut other) = tx.get::<Address>(other)? {
                        other.association = None;
                        tx.put(&other)?;
                    }
                }
                None => give_back(tx, old.public_ip)?,
            }
            eni.public.retain(|p| p.private_ip != target_ip);
        }
        let association_id = bind(&mut eni, &mut address, target_ip, &ctx.account.id);
        tx.put(&eni)?;
        tx.put(&address)?;
        Ok(association_id)
    })?;
    Ok(Xml::response("AssociateAddress", ctx.request_id, |x| {
        x.elem("return", true)
            .elem("associationId", &association_id);
    }))
}

pub fn disassociate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let association_id = params.get("AssociationId");
    let public_ip = params.get("PublicIp");
    if association_id.is_none() && public_ip.is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "Invalid request, expect PublicIp/AssociationId parameter.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let all = tx.list::<Address>()?;
        let mut address = match (association_id, public_ip) {
            (Some(id), _) => all
                .into_iter()
                .find(|a| {
                    a.association
                        .as_ref()
                        .is_some_and(|s| s.association_id == id)
                })
                .ok_or_else(|| association_not_found(id))?,
            (None, Some(ip)) => all
                .into_iter()
                .find(|a| a.public_ip.to_string() == ip)
                .ok_or_else(|| address_not_found(ip))?,
            (None, None) => return Err(ApiError::missing_parameter("AssociationId")),
        };
        disassociate_in(tx, &mut address)
    })?;
    Ok(ok_return(ctx, "DisassociateAddress"))
}

pub fn release(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let address = named(tx, params)?;
        if address.association.is_some() {
            return Err(ApiError::new(
                "InvalidIPAddress.InUse",
                format!(
                    "Address {} is in use: disassociate it before releasing it.",
                    address.public_ip
                ),
            ));
        }
        give_back(tx, address.public_ip)?;
        tx.delete::<Address>(&address.id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "ReleaseAddress"))
}

/// DescribeAddressesAttribute: the one attribute, `domain-name` (the
/// reverse-DNS record), which no address here has set, so each address
/// shows only its IP and allocation ID.
pub fn describe_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("AllocationId")?;
    let attribute = params.get("Attribute");
    if let Some(other) = attribute.filter(|a| *a != "domain-name") {
        return Err(ApiError::invalid_value(
            "Attribute",
            other,
            "The only attribute is 'domain-name'.",
        ));
    }
    let max = params.max_results(1..=1000)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let all = transact(ctx, |tx| tx.list::<Address>())?;
    if let Some(missing) = ids.iter().find(|id| !all.iter().any(|a| a.id == **id)) {
        return Err(allocation_not_found(missing));
    }
    let mut shown: Vec<Address> = all
        .into_iter()
        .filter(|a| ids.is_empty() || ids.contains(&a.id))
        .collect();
    if let Some(max) = max {
        shown.truncate(max as usize);
    }
    Ok(Xml::response(
        "DescribeAddressesAttribute",
        ctx.request_id,
        |x| {
            x.list("addressSet", &shown, |x, a| {
                x.elem("publicIp", a.public_ip).elem("allocationId", &a.id);
            });
        },
    ))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("AllocationId")?;
    let ips = params.list("PublicIp")?;
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let all = transact(ctx, |tx| tx.list::<Address>())?;
    // Every named address must exist, or the whole call fails (as EC2 and moto do).
    if let Some(missing) = ids.iter().find(|id| !all.iter().any(|a| a.id == **id)) {
        return Err(allocation_not_found(missing));
    }
    if let Some(missing) = ips
        .iter()
        .find(|ip| !all.iter().any(|a| a.public_ip.to_string() == **ip))
    {
        return Err(address_not_found(missing));
    }
    let mut shown = Vec::new();
    for a in all {
        if (!ids.is_empty() && !ids.contains(&a.id))
            || (!ips.is_empty() && !ips.contains(&a.public_ip.to_string()))
        {
            continue;
        }
        if matches_filters(&a, &filters)? {
            shown.push(a);
        }
    }
    // Named addresses come back in the order they were asked for.
    if !ips.is_empty() {
        shown.sort_by_key(|a| ips.iter().position(|ip| *ip == a.public_ip.to_string()));
    }
    Ok(Xml::response("DescribeAddresses", ctx.request_id, |x| {
        x.list("addressesSet", &shown, |x, a| a.write(x));
    }))
}
