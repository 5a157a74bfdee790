//! Subnets and availability zones (spec 1.1, 1.2, 12): CreateSubnet,
//! DescribeSubnets, DeleteSubnet, ModifySubnetAttribute,
//! Associate/DisassociateSubnetCidrBlock (the subnet's IPv6 block, carved
//! from its VPC's) and DescribeAvailabilityZones, and the subnet's address
//! book: which IPv4 and IPv6 addresses its ENIs hold, so allocation and
//! `AvailableIpAddressCount` agree (spec 1.2's reserved addresses are never
//! handed out). An IPv6-only subnet (`Ipv6Native`) has no IPv4 block at all.
//!
//! IPv6 here is records only: the dataplane carries no IPv6 yet, so nothing
//! in this module reaches a host.

use ipnet::Ipv6Net;
use openvpc_model::lifecycle::{CidrBlockState, SubnetState};
use openvpc_model::{Ipv4Cidr, ResourceKind};

use super::resource::{
    DescribeSpec, Resource, Tags, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::vpc::Vpc;
use super::{Ctx, network_acl, route_table, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::subnet::{
    AddressError, Subnet, SubnetIpv6Association, Zone, ip_name, zones,
};

/// spec 13: subnets per VPC (default quota).
pub const SUBNETS_PER_VPC: usize = 200;

/// spec 1.1: the prefix lengths an IPv6 subnet block may have: /44 to /64
/// in steps of four (an Amazon-provided VPC /56 thus gives /56, /60 or /64
/// subnets; AWS accepts the whole /56 as one subnet, which moto's
/// AWS-verified `test_create_ipv6native_subnet` relies on).
pub const IPV6_SUBNET_PREFIXES: [u8; 6] = [44, 48, 52, 56, 60, 64];

impl From<AddressError> for ApiError {
    fn from(e: AddressError) -> ApiError {
        let code = match e {
            AddressError::Ipv6Only { .. }
            | AddressError::NoIpv6Block { .. }
            | AddressError::OutOfRange { .. }
            | AddressError::Reserved { .. } => "InvalidParameterValue",
            AddressError::InUse { .. } => "InvalidIPAddress.InUse",
            AddressError::Exhausted { .. } | AddressError::Ipv6Exhausted { .. } => {
                "InsufficientFreeAddressesInSubnet"
            }
        };
        ApiError::new(code, e.to_string())
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
            "cidr" | "cidr-block" | "cidrBlock" => {
                Some(self.cidr_block.iter().map(ToString::to_string).collect())
            }
            "availability-zone" | "availabilityZone" => one(self.availability_zone.clone()),
            "availability-zone-id" | "availabilityZoneId" => one(self.availability_zone_id.clone()),
            "available-ip-address-count" => one(self.available_addresses().to_string()),
            "default-for-az" | "defaultForAz" => one(self.default_for_az.to_string()),
            "map-public-ip-on-launch" => one(self.map_public_ip_on_launch.to_string()),
            "owner-id" => one(self.owner_id.clone()),
            "state" => one(self.state.as_str().to_owned()),
            "subnet-arn" => one(self.arn.clone()),
            "ipv6-native" => one(self.ipv6_native.to_string()),
            "assign-ipv6-address-on-creation" => {
                one(self.assign_ipv6_address_on_creation.to_string())
            }
            "ipv6-cidr-block-association.ipv6-cidr-block" => Some(
                self.ipv6_cidr_associations
                    .iter()
                    .map(|a| a.ipv6_cidr_block.to_string())
                    .collect(),
            ),
            "ipv6-cidr-block-association.association-id" => Some(
                self.ipv6_cidr_associations
                    .iter()
                    .map(|a| a.association_id.clone())
                    .collect(),
            ),
            "ipv6-cidr-block-association.state" => Some(
                self.ipv6_cidr_associations
                    .iter()
                    .map(|a| a.state.as_str().to_owned())
                    .collect(),
            ),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        x.elem("subnetId", &self.id)
            .elem("subnetArn", &self.arn)
            .elem("state", self.state)
            .elem("vpcId", &self.vpc_id)
            .elem("ownerId", &self.owner_id)
            .opt("cidrBlock", self.cidr_block)
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
                &self.ipv6_cidr_associations,
                |x, a| write_ipv6_association(x, a, a.state),
            )
            .elem("enableDns64", self.enable_dns64)
            .elem("ipv6Native", self.ipv6_native)
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
        "AssociateSubnetCidrBlock" => associate_cidr_block(ctx, params),
        "DisassociateSubnetCidrBlock" => disassociate_cidr_block(ctx, params),
        "DescribeAvailabilityZones" => describe_zones(ctx, params),
        _ => return None,
    })
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
        .filter(|a| a.state == CidrBlockState::Associated)
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

/// IPAM pools are not run here: a request naming one is refused clearly
/// rather than given a block the caller did not choose.
fn refuse_ipam(params: &Params, names: &[&str]) -> Result<(), ApiError> {
    for name in names {
        if let Some(v) = params.get(name) {
            return Err(ApiError::invalid_value(
                name,
                v,
                "IPAM pools are not supported; give the block itself (CidrBlock or Ipv6CidrBlock).",
            ));
        }
    }
    Ok(())
}

/// An `Ipv6CidrBlock` parameter, host bits masked (spec 1.1's
/// canonicalisation, as for IPv4 blocks).
fn parse_ipv6_block(text: &str) -> Result<Ipv6Net, ApiError> {
    let net: Ipv6Net = text.parse().map_err(|_| {
        ApiError::invalid_value(
            "ipv6CidrBlock",
            text,
            "This is not a valid IPv6 CIDR block.",
        )
    })?;
    Ok(net.trunc())
}

fn ipv6_overlap(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(b) || b.contains(a)
}

/// spec 1.1, 1.2: an IPv6 subnet block is /44 to /64 in steps of four,
/// inside one of the VPC's associated IPv6 blocks, and overlaps no other
/// subnet's block. AWS answers a block outside the VPC and a wrong size
/// alike (`InvalidSubnet.Range`, "The IPv6 CIDR '…' is invalid.").
fn check_ipv6_range(
    vpc: &Vpc,
    block: Ipv6Net,
    siblings: &[Subnet],
    own_id: Option<&str>,
) -> Result<(), ApiError> {
    let inside = vpc
        .ipv6_cidr_associations
        .iter()
        .filter(|a| a.state == CidrBlockState::Associated)
        .filter_map(|a| a.ipv6_cidr_block.parse::<Ipv6Net>().ok())
        .any(|v| v.contains(&block));
    if !IPV6_SUBNET_PREFIXES.contains(&block.prefix_len()) || !inside {
        return Err(ApiError::new(
            "InvalidSubnet.Range",
            format!("The IPv6 CIDR '{block}' is invalid."),
        ));
    }
    let clash = siblings
        .iter()
        .filter(|s| Some(s.id.as_str()) != own_id)
        .flat_map(|s| &s.ipv6_cidr_associations)
        .any(|a| ipv6_overlap(&a.ipv6_cidr_block, &block));
    if clash {
        return Err(ApiError::new(
            "InvalidSubnet.Conflict",
            format!("The IPv6 CIDR '{block}' conflicts with another subnet"),
        ));
    }
    Ok(())
}

fn new_ipv6_association(block: Ipv6Net) -> SubnetIpv6Association {
    SubnetIpv6Association {
        association_id: new_id(ResourceKind::SubnetCidrAssociation),
        ipv6_cidr_block: block,
        state: CidrBlockState::Associated,
    }
}

/// One `ipv6CidrBlockAssociationSet` item, or the association of
/// Associate/DisassociateSubnetCidrBlock's answer, showing `state`.
fn write_ipv6_association(x: &mut Xml, a: &SubnetIpv6Association, state: CidrBlockState) {
    x.elem("associationId", &a.association_id)
        .elem("ipv6CidrBlock", a.ipv6_cidr_block)
        .node("ipv6CidrBlockState", |x| {
            x.elem("state", state.as_str());
        })
        .elem("ipv6AddressAttribute", "public")
        .elem("ipSource", "amazon");
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    check_ipv6_native(params)?;
    refuse_ipam(
        params,
        &[
            "Ipv4IpamPoolId",
            "Ipv4NetmaskLength",
            "Ipv6IpamPoolId",
            "Ipv6NetmaskLength",
        ],
    )?;
    let ipv6_native = params.bool("Ipv6Native")? == Some(true);
    // An IPv6-only subnet has no IPv4 block (check_ipv6_native refused one).
    let cidr: Option<Ipv4Cidr> = if ipv6_native {
        None
    } else {
        let text = params.required("CidrBlock")?;
        Some(text.parse().map_err(|_| {
            ApiError::invalid_value("cidrBlock", text, "This is not a valid CIDR block.")
        })?)
    };
    let ipv6_block = params
        .get("Ipv6CidrBlock")
        .map(parse_ipv6_block)
        .transpose()?;
    let zone = zone_of(ctx, params)?;
    let tags = tags_for(params, "subnet")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let subnet = transact(ctx, |tx| {
        let vpc = tx.load::<Vpc>(vpc_id)?;
        if let Some(cidr) = cidr {
            check_range(&vpc, cidr)?;
        }
        let siblings: Vec<Subnet> = tx
            .list::<Subnet>()?
            .into_iter()
            .filter(|s| s.vpc_id == vpc_id)
            .collect();
        if let Some(cidr) = cidr
            && siblings
                .iter()
                .any(|s| s.cidr_block.is_some_and(|c| c.overlaps(&cidr)))
        {
            return Err(ApiError::new(
                "InvalidSubnet.Conflict",
                format!("The CIDR '{cidr}' conflicts with another subnet"),
            ));
        }
        if let Some(block) = ipv6_block {
            check_ipv6_range(&vpc, block, &siblings, None)?;
        }
        if siblings.len() >= SUBNETS_PER_VPC {
            return Err(ApiError::new(
                "SubnetLimitExceeded",
                format!(
                    "The VPC '{vpc_id}' already has the maximum of {SUBNETS_PER_VPC} subnets. Delete a subnet or ask for a higher quota."
                ),
            ));
        }
        let mut subnet = subnet_record(ctx, &vpc, cidr, &zone, false, tags.clone());
        subnet.ipv6_cidr_associations = ipv6_block.into_iter().map(new_ipv6_association).collect();
        // An IPv6-only subnet's interfaces get an IPv6 address or none at
        // all, so AWS creates it with this set (and keeps it set).
        subnet.ipv6_native = ipv6_native;
        subnet.assign_ipv6_address_on_creation = ipv6_native;
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
    subnet_record(ctx, vpc, Some(cidr), zone, default_for_az, tags)
}

/// A new subnet record; `cidr` is `None` for an IPv6-only subnet.
fn subnet_record(
    ctx: &Ctx,
    vpc: &Vpc,
    cidr: Option<Ipv4Cidr>,
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
        ipv6_native: false,
        ipv6_cidr_associations: Vec::new(),
        ipv6_allocated: Vec::new(),
        availability_zone: zone.name.clone(),
        availability_zone_id: zone.id.clone(),
        state: SubnetState::Available,
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
        if subnet.in_use() || crate::api::elbv2::records::subnet_in_use(tx, id)? {
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
            // An IPv6-only subnet's interfaces have no other address.
            if !v && subnet.ipv6_native {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "Invalid value 'false' for assign-ipv6-address-on-creation. Subnet ({id}) is IPv6-only, so its network interfaces always get an IPv6 address."
                    ),
                ));
            }
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

pub fn associate_cidr_block(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, id)?;
    refuse_ipam(params, &["Ipv6IpamPoolId", "Ipv6NetmaskLength"])?;
    let block = parse_ipv6_block(params.required("Ipv6CidrBlock")?)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let association = transact(ctx, |tx| {
        let mut subnet = tx.load::<Subnet>(id)?;
        // A subnet holds one IPv6 block; replacing it is disassociate, then
        // associate.
        if let Some(held) = subnet.ipv6_block() {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Subnet {id} already has the IPv6 CIDR block {held}; a subnet holds one. Disassociate it first."
                ),
            ));
        }
        let vpc = tx.load::<Vpc>(&subnet.vpc_id)?;
        let siblings: Vec<Subnet> = tx
            .list::<Subnet>()?
            .into_iter()
            .filter(|s| s.vpc_id == subnet.vpc_id)
            .collect();
        check_ipv6_range(&vpc, block, &siblings, Some(id))?;
        let association = new_ipv6_association(block);
        subnet.ipv6_cidr_associations.push(association.clone());
        tx.put(&subnet)?;
        Ok(association)
    })?;
    // EC2 answers while the block is still being associated.
    Ok(Xml::response(
        "AssociateSubnetCidrBlock",
        ctx.request_id,
        |x| {
            x.node("ipv6CidrBlockAssociation", |x| {
                write_ipv6_association(x, &association, CidrBlockState::Associating);
            })
            .elem("subnetId", id);
        },
    ))
}

pub fn disassociate_cidr_block(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let association_id = params.required("AssociationId")?;
    check_id(ResourceKind::SubnetCidrAssociation, association_id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (subnet_id, association) = transact(ctx, |tx| {
        let Some((mut subnet, i)) = tx.list::<Subnet>()?.into_iter().find_map(|s| {
            let i = s
                .ipv6_cidr_associations
                .iter()
                .position(|a| a.association_id == association_id)?;
            Some((s, i))
        }) else {
            return Err(ApiError::new(
                "InvalidSubnetCidrBlockAssociationID.NotFound",
                format!(
                    "The subnet CIDR block with association ID '{association_id}' does not exist"
                ),
            ));
        };
        // AWS's own refusal: an IPv6-only subnet always has this set, so its
        // only block is refused here too.
        if subnet.assign_ipv6_address_on_creation {
            return Err(ApiError::new(
                "InvalidCidrBlock.InUse",
                format!(
                    "The subnet IPv6 CIDR block with association ID {association_id} may not be disassociated, because its subnet has assign-ipv6-address-on-creation set to true."
                ),
            ));
        }
        if !subnet.ipv6_allocated.is_empty() {
            return Err(ApiError::new(
                "InvalidCidrBlock.InUse",
                format!(
                    "The subnet IPv6 CIDR block with association ID {association_id} may not be disassociated, because network interfaces in subnet {} hold IPv6 addresses from it. Unassign them first.",
                    subnet.id
                ),
            ));
        }
        let association = subnet.ipv6_cidr_associations.remove(i);
        tx.put(&subnet)?;
        Ok((subnet.id, association))
    })?;
    Ok(Xml::response(
        "DisassociateSubnetCidrBlock",
        ctx.request_id,
        |x| {
            x.node("ipv6CidrBlockAssociation", |x| {
                write_ipv6_association(x, &association, CidrBlockState::Disassociating);
            })
            .elem("subnetId", &subnet_id);
        },
    ))
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
