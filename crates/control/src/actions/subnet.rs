//! Subnets and availability zones (spec 1.2, 12): CreateSubnet,
//! DescribeSubnets, DeleteSubnet, ModifySubnetAttribute and
//! DescribeAvailabilityZones, and the subnet's address book: which private
//! addresses its ENIs hold, so allocation and `AvailableIpAddressCount`
//! agree (spec 1.2's five reserved addresses are never handed out).

use std::net::Ipv4Addr;

use openvpc_model::{Ipv4Cidr, ResourceKind};
use serde::{Deserialize, Serialize};

use super::resource::{
    DescribeSpec, Resource, Tags, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::subnet_cidr_reservation::CidrReservation;
use super::vpc::Vpc;
use super::{Ctx, network_acl, route_table, tags_for};
use crate::error::ApiError;
use crate::query::Params;
use crate::xml::Xml;

/// spec 13: subnets per VPC (default quota).
pub const SUBNETS_PER_VPC: usize = 200;

/// A subnet as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub arn: String,
    pub cidr_block: Ipv4Cidr,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub state: String,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    #[serde(default)]
    pub assign_ipv6_address_on_creation: bool,
    #[serde(default)]
    pub enable_dns64: bool,
    #[serde(default = "ip_name")]
    pub hostname_type: String,
    /// Whether launched instances get DNS A / AAAA records of their
    /// resource name (`privateDnsNameOptionsOnLaunch`).
    #[serde(default)]
    pub resource_name_dns_a: bool,
    #[serde(default)]
    pub resource_name_dns_aaaa: bool,
    /// Private addresses held by ENIs (and managed interfaces) in the subnet.
    #[serde(default)]
    pub allocated: Vec<Ipv4Addr>,
    pub tags: Tags,
    /// Parts of the range set aside (CreateSubnetCidrReservation).
    #[serde(default)]
    pub cidr_reservations: Vec<CidrReservation>,
}

fn ip_name() -> String {
    "ip-name".into()
}

impl Subnet {
    /// spec 1.2: the size less the five reserved addresses and those in use.
    pub fn available_addresses(&self) -> u64 {
        self.cidr_block
            .usable_in_subnet()
            .saturating_sub(self.allocated.len() as u64)
    }

    /// Takes `wanted`, or the lowest free address when none is asked for.
    /// A reserved or taken address is refused with the code AWS uses.
    pub fn allocate(&mut self, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, ApiError> {
        let address = match wanted {
            Some(ip) => {
                if !self.cidr_block.contains_addr(ip) {
                    return Err(ApiError::new(
                        "InvalidParameterValue",
                        format!(
                            "Address {ip} does not fall within the subnet's address range {}",
                            self.cidr_block
                        ),
                    ));
                }
                if self.cidr_block.is_reserved_in_subnet(ip) {
                    return Err(ApiError::new(
                        "InvalidParameterValue",
                        format!(
                            "Address {ip} is reserved in subnet {} (the first four and the last address are AWS's)",
                            self.id
                        ),
                    ));
                }
                if self.allocated.contains(&ip) {
                    return Err(ApiError::new(
                        "InvalidIPAddress.InUse",
                        format!("Address {ip} is in use."),
                    ));
                }
                ip
            }
            // Explicit reservations are never handed out automatically.
            None => (4..self.cidr_block.size().saturating_sub(1))
                .filter_map(|n| self.cidr_block.nth(n as u32))
                .find(|ip| {
                    !self.allocated.contains(ip)
                        && !self
                            .cidr_reservations
                            .iter()
                            .any(|r| r.reservation_type == "explicit" && r.cidr.contains_addr(*ip))
                })
                .ok_or_else(|| {
                    ApiError::new(
                        "InsufficientFreeAddressesInSubnet",
                        format!(
                            "There are not enough free addresses in subnet '{}' to satisfy the requested number of instances.",
                            self.id
                        ),
                    )
                })?,
        };
        self.allocated.push(address);
        Ok(address)
    }

    /// Returns an address to the subnet.
    pub fn release(&mut self, address: Ipv4Addr) {
        self.allocated.retain(|a| *a != address);
    }
}

impl Resource for Subnet {
    const KIND: ResourceKind = ResourceKind::Subnet;
    const NOT_FOUND: &'static str = "InvalidSubnetID.NotFound";
    const NOUN: &'static str = "subnet";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |v: String| Some(vec![v]);
        match name {
            "subnet-id" => one(self.id.clone()),
            "vpc-id" | "vpcId" => one(self.vpc_id.clone()),
            "cidr" | "cidr-block" | "cidrBlock" => one(self.cidr_block.to_string()),
            "availability-zone" | "availabilityZone" => one(self.availability_zone.clone()),
            "availability-zone-id" | "availabilityZoneId" => one(self.availability_zone_id.clone()),
            "available-ip-address-count" => one(self.available_addresses().to_string()),
            "default-for-az" | "defaultForAz" => one(self.default_for_az.to_string()),
            "map-public-ip-on-launch" => one(self.map_public_ip_on_launch.to_string()),
            "owner-id" => one(self.owner_id.clone()),
            "state" => one(self.state.clone()),
            "subnet-arn" => one(self.arn.clone()),
            "ipv6-native" => one("false".into()),
            "ipv6-cidr-block-association.ipv6-cidr-block"
            | "ipv6-cidr-block-association.association-id"
            | "ipv6-cidr-block-association.state" => Some(Vec::new()),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        x.elem("subnetId", &self.id)
            .elem("subnetArn", &self.arn)
            .elem("state", &self.state)
            .elem("vpcId", &self.vpc_id)
            .elem("ownerId", &self.owner_id)
            .elem("cidrBlock", self.cidr_block)
            .elem("availableIpAddressCount", self.available_addresses())
            .elem("availabilityZone", &self.availability_zone)
            .elem("availabilityZoneId", &self.availability_zone_id)
            .elem("defaultForAz", self.default_for_az)
            .elem("mapPublicIpOnLaunch", self.map_public_ip_on_launch)
            .elem("mapCustomerOwnedIpOnLaunch", false)
            .elem(
                "assignIpv6AddressOnCreation",
                self.assign_ipv6_address_on_creation,
            )
            .list(
                "ipv6CidrBlockAssociationSet",
                std::iter::empty::<()>(),
                |_, _| {},
            )
            .elem("enableDns64", self.enable_dns64)
            .elem("ipv6Native", false)
            .node("privateDnsNameOptionsOnLaunch", |x| {
                x.elem("hostnameType", &self.hostname_type)
                    .elem("enableResourceNameDnsARecord", self.resource_name_dns_a)
                    .elem(
                        "enableResourceNameDnsAAAARecord",
                        self.resource_name_dns_aaaa,
                    );
            });
        write_tags(x, &self.tags);
    }
}

/// The subnet actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateSubnet" => create(ctx, params),
        "DescribeSubnets" => describe(ctx, params),
        "DeleteSubnet" => delete(ctx, params),
        "ModifySubnetAttribute" => modify_attribute(ctx, params),
        "DescribeAvailabilityZones" => describe_zones(ctx, params),
        _ => return None,
    })
}

/// An availability zone of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub id: String,
}

/// The region's zones: `REGIONa`, `REGIONb`, `REGIONc`, with AWS-style zone
/// IDs (`use1-az1`). Agents will later declare the zones they serve.
pub fn zones(region: &str) -> Vec<Zone> {
    // `us-east-1` → `use1`, `ap-southeast-2` → `apse2`: AWS's short form.
    let short: String = region
        .split('-')
        .enumerate()
        .map(|(i, part)| match (i, part) {
            (0, _) => part.to_owned(),
            (_, "east") => "e".into(),
            (_, "west") => "w".into(),
            (_, "north") => "n".into(),
            (_, "south") => "s".into(),
            (_, "central") => "c".into(),
            (_, "northeast") => "ne".into(),
            (_, "southeast") => "se".into(),
            (_, "northwest") => "nw".into(),
            (_, "southwest") => "sw".into(),
            _ if part.chars().all(|c| c.is_ascii_digit()) => part.to_owned(),
            _ => part.chars().take(1).collect(),
        })
        .collect();
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, letter)| Zone {
            name: format!("{region}{letter}"),
            id: format!("{short}-az{}", i + 1),
        })
        .collect()
}

/// The zone named by `AvailabilityZone` or `AvailabilityZoneId`, or the
/// region's first zone when neither is given.
fn zone_of(ctx: &Ctx, params: &Params) -> Result<Zone, ApiError> {
    let all = zones(ctx.region);
    let names = all
        .iter()
        .map(|z| z.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let found = match (
        params.get("AvailabilityZone"),
        params.get("AvailabilityZoneId"),
    ) {
        (Some(name), _) => all.iter().find(|z| z.name == name).ok_or(name),
        (None, Some(id)) => all.iter().find(|z| z.id == id).ok_or(id),
        (None, None) => all.first().ok_or(""),
    };
    found.cloned().map_err(|wanted| {
        ApiError::new(
            "InvalidParameterValue",
            format!(
                "Value ({wanted}) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: {names}."
            ),
        )
    })
}

/// spec 1.2: /16 to /28, inside one of the VPC's associated blocks.
fn check_range(vpc: &Vpc, cidr: Ipv4Cidr) -> Result<(), ApiError> {
    let inside = vpc
        .cidr_associations
        .iter()
        .filter(|a| a.state == "associated")
        .filter_map(|a| a.cidr_block.parse::<Ipv4Cidr>().ok())
        .any(|block| block.contains(&cidr));
    if cidr.check_block_size().is_err() || !inside {
        return Err(ApiError::new(
            "InvalidSubnet.Range",
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    Ok(())
}

/// An IPv6-only subnet (`Ipv6Native`) needs an IPv6 block and takes no
/// IPv4 one; EC2 checks the first before the second, with these messages.
fn check_ipv6_native(params: &Params) -> Result<(), ApiError> {
    if params.bool("Ipv6Native")? != Some(true) {
        return Ok(());
    }
    let given = |names: [&str; 2]| names.iter().any(|n| params.get(n).is_some());
    if !given(["Ipv6CidrBlock", "Ipv6IpamPoolId"]) {
        return Err(ApiError::new(
            "MissingParameter",
            "Either 'ipv6CidrBlock' or 'ipv6IpamPoolId' should be provided.",
        ));
    }
    if given(["CidrBlock", "Ipv4IpamPoolId"]) {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "When specifying ipv4 parameters, cidrBlock or ipv4IpamPoolId, you cannot set ipv6Native to true.",
        ));
    }
    Ok(())
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    check_ipv6_native(params)?;
    let text = params.required("CidrBlock")?;
    let cidr: Ipv4Cidr = text.parse().map_err(|_| {
        ApiError::invalid_value("cidrBlock", text, "This is not a valid CIDR block.")
    })?;
    let zone = zone_of(ctx, params)?;
    let tags = tags_for(params, "subnet")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let subnet = transact(ctx, |tx| {
        let vpc = tx.load::<Vpc>(vpc_id)?;
        check_range(&vpc, cidr)?;
        let siblings: Vec<Subnet> = tx
            .list::<Subnet>()?
            .into_iter()
            .filter(|s| s.vpc_id == vpc_id)
            .collect();
        if siblings.iter().any(|s| s.cidr_block.overlaps(&cidr)) {
            return Err(ApiError::new(
                "InvalidSubnet.Conflict",
                format!("The CIDR '{cidr}' conflicts with another subnet"),
            ));
        }
        if siblings.len() >= SUBNETS_PER_VPC {
            return Err(ApiError::new(
                "SubnetLimitExceeded",
                format!(
                    "The VPC '{vpc_id}' already has the maximum of {SUBNETS_PER_VPC} subnets. Delete a subnet or ask for a higher quota."
                ),
            ));
        }
        let subnet = new_subnet(ctx, &vpc, cidr, &zone, false, tags.clone());
        tx.put(&subnet)?;
        // spec 4.2: every subnet starts associated with its VPC's default ACL.
        network_acl::subnet_created(tx, &subnet)?;
        Ok(subnet)
    })?;
    Ok(Xml::response("CreateSubnet", ctx.request_id, |x| {
        x.node("subnet", |x| subnet.write(x));
    }))
}

/// A new subnet record (the default VPC's subnets come from here too).
pub fn new_subnet(
    ctx: &Ctx,
    vpc: &Vpc,
    cidr: Ipv4Cidr,
    zone: &Zone,
    default_for_az: bool,
    tags: Tags,
) -> Subnet {
    let id = new_id(ResourceKind::Subnet);
    Subnet {
        arn: format!("arn:aws:ec2:{}:{}:subnet/{id}", ctx.region, ctx.account.id),
        id,
        vpc_id: vpc.id.clone(),
        owner_id: ctx.account.id.clone(),
        cidr_block: cidr,
        availability_zone: zone.name.clone(),
        availability_zone_id: zone.id.clone(),
        state: "available".into(),
        default_for_az,
        // spec 1.2: true on default subnets only.
        map_public_ip_on_launch: default_for_az,
        assign_ipv6_address_on_creation: false,
        enable_dns64: false,
        hostname_type: ip_name(),
        resource_name_dns_a: false,
        resource_name_dns_aaaa: false,
        cidr_reservations: Vec::new(),
        allocated: Vec::new(),
        tags,
    }
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<Subnet>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeSubnets",
            ids: "SubnetId",
            set: "subnetSet",
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let subnet = tx.load::<Subnet>(id)?;
        // spec 1.7 (and its subnet form in 12.3): ENIs keep a subnet alive,
        // a load balancer node's among them (spec 9.1).
        if !subnet.allocated.is_empty() || crate::elbv2::subnet_in_use(tx, id)? {
            return Err(ApiError::new(
                "DependencyViolation",
                format!("The subnet '{id}' has dependencies and cannot be deleted."),
            ));
        }
        // spec 2.1: the subnet's explicit association goes with it.
        route_table::subnet_deleted(tx, id)?;
        tx.delete::<Subnet>(id);
        network_acl::subnet_deleted(tx, id)?;
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteSubnet"))
}

/// `Name.Value=true|false`, the AttributeBooleanValue form.
fn attribute_bool(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    params.bool(&format!("{name}.Value"))
}

pub fn modify_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, id)?;
    let map_public = attribute_bool(params, "MapPublicIpOnLaunch")?;
    let assign_ipv6 = attribute_bool(params, "AssignIpv6AddressOnCreation")?;
    let dns64 = attribute_bool(params, "EnableDns64")?;
    let dns_a = attribute_bool(params, "EnableResourceNameDnsARecordOnLaunch")?;
    let dns_aaaa = attribute_bool(params, "EnableResourceNameDnsAAAARecordOnLaunch")?;
    let hostname_type = params.get("PrivateDnsHostnameTypeOnLaunch");
    if let Some(t) = hostname_type
        && !matches!(t, "ip-name" | "resource-name")
    {
        return Err(ApiError::invalid_value(
            "PrivateDnsHostnameTypeOnLaunch",
            t,
            "Use 'ip-name' or 'resource-name'.",
        ));
    }
    let given = [
        map_public.is_some(),
        assign_ipv6.is_some(),
        dns64.is_some(),
        hostname_type.is_some(),
        dns_a.is_some(),
        dns_aaaa.is_some(),
    ]
    .iter()
    .filter(|&&g| g)
    .count();
    if given != 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Specify exactly one attribute to modify per call (for example MapPublicIpOnLaunch.Value=true).",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut subnet = tx.load::<Subnet>(id)?;
        if let Some(v) = map_public {
            subnet.map_public_ip_on_launch = v;
        }
        if let Some(v) = assign_ipv6 {
            subnet.assign_ipv6_address_on_creation = v;
        }
        if let Some(v) = dns64 {
            subnet.enable_dns64 = v;
        }
        if let Some(t) = hostname_type {
            subnet.hostname_type = t.to_owned();
        }
        if let Some(v) = dns_a {
            subnet.resource_name_dns_a = v;
        }
        if let Some(v) = dns_aaaa {
            subnet.resource_name_dns_aaaa = v;
        }
        tx.put(&subnet)
    })?;
    Ok(ok_return(ctx, "ModifySubnetAttribute"))
}

pub fn describe_zones(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let names = params.list("ZoneName")?;
    let ids = params.list("ZoneId")?;
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let all = zones(ctx.region);
    if let Some(missing) = names
        .iter()
        .find(|n| !all.iter().any(|z| z.name == **n))
        .or_else(|| ids.iter().find(|i| !all.iter().any(|z| z.id == **i)))
    {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "The availability zone '{missing}' does not exist in region {}",
                ctx.region
            ),
        ));
    }
    let mut shown = Vec::new();
    for z in all {
        if (!names.is_empty() && !names.contains(&z.name))
            || (!ids.is_empty() && !ids.contains(&z.id))
        {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            let value = match f.name.as_str() {
                "zone-name" => z.name.clone(),
                "zone-id" => z.id.clone(),
                "region-name" => ctx.region.to_owned(),
                "state" => "available".into(),
                "zone-type" => "availability-zone".into(),
                "group-name" | "network-border-group" => ctx.region.to_owned(),
                "opt-in-status" => "opt-in-not-required".into(),
                other => {
                    return Err(ApiError::new(
                        "InvalidParameterValue",
                        format!("The filter '{other}' is invalid"),
                    ));
                }
            };
            keep &= f.matches([value.as_str()]);
        }
        if keep {
            shown.push(z);
        }
    }
    Ok(Xml::response(
        "DescribeAvailabilityZones",
        ctx.request_id,
        |x| {
            x.list("availabilityZoneInfo", &shown, |x, z| {
                x.elem("zoneName", &z.name)
                    .elem("zoneState", "available")
                    .elem("regionName", ctx.region)
                    .elem("zoneId", &z.id)
                    .elem("zoneType", "availability-zone")
                    .elem("optInStatus", "opt-in-not-required")
                    .elem("groupName", ctx.region)
                    .elem("networkBorderGroup", ctx.region)
                    .list("messageSet", std::iter::empty::<()>(), |_, _| {});
            });
        },
    ))
}
