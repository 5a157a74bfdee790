//! CreateVpc, DescribeVpcs and DeleteVpc (spec 1.1, 1.7, 12), the VPC
//! attributes (ModifyVpcAttribute, DescribeVpcAttribute; spec 1.4) and
//! secondary CIDR blocks (AssociateVpcCidrBlock, DisassociateVpcCidrBlock;
//! spec 1.1). CreateVpc creates the VPC's defaults in the same transaction,
//! and DeleteVpc removes them with it or refuses while other dependents remain.

use std::net::{Ipv4Addr, Ipv6Addr};

use openvpc_model::lifecycle::{CidrBlockState, VpcState};
use openvpc_model::{Ipv4Cidr, ResourceKind};

use super::egress_only_internet_gateway::EgressOnlyInternetGateway;
use super::internet_gateway::InternetGateway;
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::subnet::Subnet;
use super::{
    Ctx, dhcp_options, network_acl, route_table, security_group, tags_for, vpc_endpoint,
    vpc_peering,
};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::vpc::{CidrAssociation, Ipv6CidrAssociation, Vpc};

/// spec 13: VPCs per region (default quota).
pub const VPC_QUOTA: usize = 5;

/// spec 1.1 and 13: IPv4 blocks per VPC, the primary included (default quota).
pub const IPV4_CIDR_QUOTA: usize = 5;

/// spec 1.1 and 13: IPv6 blocks per VPC (default quota).
pub const IPV6_CIDR_QUOTA: usize = 5;

/// The VPC actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpc" => create(ctx, params),
        "DescribeVpcs" => describe(ctx, params),
        "DeleteVpc" => delete(ctx, params),
        "ModifyVpcAttribute" => modify_attribute(ctx, params),
        "DescribeVpcAttribute" => describe_attribute(ctx, params),
        "AssociateVpcCidrBlock" => associate_cidr_block(ctx, params),
        "DisassociateVpcCidrBlock" => disassociate_cidr_block(ctx, params),
        "ModifyVpcTenancy" => modify_tenancy(ctx, params),
        _ => return None,
    })
}

/// spec 1.1: /16 to /28, never in 169.254.0.0/16.
fn parse_cidr(text: &str) -> Result<Ipv4Cidr, ApiError> {
    let cidr: Ipv4Cidr = text.parse().map_err(|_| {
        // EC2 names the parameter in lowerCamelCase here; clients (and
        // moto's tests) compare the whole message.
        ApiError::invalid_value("cidrBlock", text, "This is not a valid CIDR block.")
    })?;
    let link_local: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(169, 254, 0, 0), 16)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if cidr.check_block_size().is_err() || cidr.overlaps(&link_local) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!("The CIDR '{cidr}' is invalid."),
        ));
    }
    Ok(cidr)
}

fn vni_counter_key(region: &str) -> Vec<u8> {
    format!("region/{region}/next-vni").into_bytes()
}

/// First VNI handed out; lower values stay free for infrastructure.
const FIRST_VNI: u32 = 4096;

/// What a new VPC is made of; the rest takes its defaults.
#[derive(Debug, Clone)]
pub struct NewVpc<'a> {
    pub cidr: Ipv4Cidr,
    pub tenancy: &'a str,
    pub is_default: bool,
    pub ipv6: bool,
    pub tags: Tags,
}

/// Creates a VPC with everything spec 1.6 gives every VPC (main route
/// table, default network ACL, default security group) in `tx`, within the
/// region's VPC quota. The default VPC (spec 1.3) starts here too.
pub fn insert_vpc(tx: &mut Tx, new: NewVpc) -> Result<Vpc, ApiError> {
    let ctx = tx.ctx();
    if tx.list::<Vpc>()?.len() >= VPC_QUOTA {
        return Err(ApiError::new(
            "VpcLimitExceeded",
            format!(
                "The maximum number of VPCs has been reached ({VPC_QUOTA} per region). Delete a VPC or ask for a higher quota."
            ),
        ));
    }
    let vni = next_vni(tx)?;
    // spec 1.6: the account's default DHCP options set is associated.
    let dhcp_options_id = dhcp_options::default_set_id(tx)?;
    let ipv6_cidr_associations = if new.ipv6 {
        vec![amazon_ipv6_block(tx)?]
    } else {
        Vec::new()
    };
    let vpc = Vpc {
        id: new_id(ResourceKind::Vpc),
        owner_id: ctx.account.id.clone(),
        cidr_block: new.cidr.to_string(),
        cidr_associations: vec![CidrAssociation {
            association_id: new_id(ResourceKind::VpcCidrAssociation),
            cidr_block: new.cidr.to_string(),
            state: CidrBlockState::Associated,
        }],
        state: VpcState::Available,
        dhcp_options_id,
        instance_tenancy: new.tenancy.into(),
        is_default: new.is_default,
        enable_dns_support: true,
        // spec 1.4: hostnames are on in the default VPC only.
        enable_dns_hostnames: new.is_default,
        tags: new.tags,
        vni,
        enable_network_address_usage_metrics: false,
        ipv6_cidr_associations,
    };
    tx.put(&vpc)?;
    // spec 1.6: the main route table comes with the VPC, atomically.
    route_table::vpc_created(tx, &vpc)?;
    // spec 1.6: the default network ACL comes with the VPC, atomically.
    network_acl::vpc_created(tx, &vpc)?;
    // spec 1.6: the default security group comes with the VPC, atomically.
    let (sg_compares, sg_ops) =
        security_group::default_group_ops(ctx, &vpc.id, !vpc.ipv6_cidr_associations.is_empty())?;
    tx.include(sg_compares, sg_ops);
    Ok(vpc)
}

/// An IPv6 block from a pool needs the pool named (the API reference:
/// "You must also specify Ipv6Pool in the request"); pools themselves
/// (BYOIP and IPAM) are not run here, so a request naming one is refused
/// clearly rather than given a block the caller did not choose.
fn refuse_pools(params: &Params) -> Result<(), ApiError> {
    if params.get("Ipv6CidrBlock").is_some() && params.get("Ipv6Pool").is_none() {
        return Err(ApiError::missing_parameter("Ipv6Pool"));
    }
    for unsupported in [
        "Ipv6Pool",
        "Ipv6CidrBlock",
        "Ipv4IpamPoolId",
        "Ipv6IpamPoolId",
    ] {
        if let Some(v) = params.get(unsupported) {
            return Err(ApiError::invalid_value(
                unsupported,
                v,
                "Bring-your-own and IPAM pools are not supported; use CidrBlock or AmazonProvidedIpv6CidrBlock.",
            ));
        }
    }
    Ok(())
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let cidr = parse_cidr(params.required("CidrBlock")?)?;
    refuse_pools(params)?;
    let tenancy = params.get("InstanceTenancy").unwrap_or("default");
    if !matches!(tenancy, "default" | "dedicated") {
        return Err(ApiError::invalid_value(
            "InstanceTenancy",
            tenancy,
            "Use 'default' or 'dedicated'.",
        ));
    }
    let tags = tags_for(params, "vpc")?;
    let ipv6 = params.bool("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false);
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpc = transact(ctx, |tx| {
        insert_vpc(
            tx,
            NewVpc {
                cidr,
                tenancy,
                is_default: false,
                ipv6,
                tags: tags.clone(),
            },
        )
    })?;
    // AWS answers CreateVpc with the VPC still pending.
    let shown = Vpc {
        state: VpcState::Pending,
        ..vpc
    };
    Ok(Xml::response("CreateVpc", ctx.request_id, |x| {
        x.node("vpc", |x| shown.write(x));
    }))
}

/// Takes the region's next VNI: unique across accounts, never reused.
fn next_vni(tx: &mut Tx) -> Result<u32, ApiError> {
    let key = vni_counter_key(tx.ctx().region);
    let vni = tx
        .get_raw(&key)?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u32>().ok())
        .unwrap_or(FIRST_VNI);
    tx.put_raw(key, (vni + 1).to_string().into_bytes());
    Ok(vni)
}

impl Resource for Vpc {
    const KIND: ResourceKind = ResourceKind::Vpc;
    const NOT_FOUND: &'static str = "InvalidVpcID.NotFound";
    const NOUN: &'static str = "vpc";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let v = self;
        Some(match name {
            "vpc-id" => vec![v.id.clone()],
            "cidr" | "cidr-block" => vec![v.cidr_block.clone()],
            "cidr-block-association.cidr-block" => v
                .cidr_associations
                .iter()
                .map(|a| a.cidr_block.clone())
                .collect(),
            "cidr-block-association.association-id" => v
                .cidr_associations
                .iter()
                .map(|a| a.association_id.clone())
                .collect(),
            "cidr-block-association.state" => v
                .cidr_associations
                .iter()
                .map(|a| a.state.as_str().to_owned())
                .collect(),
            "dhcp-options-id" => vec![v.dhcp_options_id.clone()],
            // EC2 still answers the filter's older camel-case name.
            "is-default" | "isDefault" => vec![v.is_default.to_string()],
            "owner-id" => vec![v.owner_id.clone()],
            "state" => vec![v.state.as_str().to_owned()],
            "instance-tenancy" => vec![v.instance_tenancy.clone()],
            "ipv6-cidr-block-association.ipv6-cidr-block" => v
                .ipv6_cidr_associations
                .iter()
                .map(|a| a.ipv6_cidr_block.clone())
                .collect(),
            "ipv6-cidr-block-association.association-id" => v
                .ipv6_cidr_associations
                .iter()
                .map(|a| a.association_id.clone())
                .collect(),
            "ipv6-cidr-block-association.state" => v
                .ipv6_cidr_associations
                .iter()
                .map(|a| a.state.as_str().to_owned())
                .collect(),
            "ipv6-cidr-block-association.ipv6-pool" => v
                .ipv6_cidr_associations
                .iter()
                .map(|_| AMAZON_IPV6_POOL.to_owned())
                .collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        let v = self;
        x.elem("vpcId", &v.id)
            .elem("ownerId", &v.owner_id)
            .elem("state", v.state)
            .elem("cidrBlock", &v.cidr_block)
            .list(
                "cidrBlockAssociationSet",
                &v.cidr_associations,
                write_ipv4_association,
            )
            .list(
                "ipv6CidrBlockAssociationSet",
                &v.ipv6_cidr_associations,
                write_ipv6_association,
            )
            .elem("dhcpOptionsId", &v.dhcp_options_id)
            .elem("instanceTenancy", &v.instance_tenancy)
            .elem("isDefault", v.is_default);
        write_tags(x, &v.tags);
    }
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<Vpc>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeVpcs",
            ids: "VpcId",
            set: "vpcSet",
        },
    )
}

/// spec 1.7: the refusal of DeleteVpc while dependents remain.
pub fn has_dependencies(id: &str) -> ApiError {
    ApiError::new(
        "DependencyViolation",
        format!("The vpc '{id}' has dependencies and cannot be deleted."),
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        tx.load::<Vpc>(id)?;
        // spec 1.7: subnets (and what lives in them) keep the VPC.
        if tx.list::<Subnet>()?.iter().any(|s| s.vpc_id == id) {
            return Err(has_dependencies(id));
        }
        // spec 1.7: the main route table goes with the VPC; others block it.
        route_table::vpc_deleting(tx, id)?;
        // spec 1.7: the default network ACL goes with the VPC; custom ones block it.
        network_acl::vpc_deleted(tx, id)?;
        // spec 1.7: an attached internet gateway or an egress-only one blocks DeleteVpc.
        if tx
            .list::<InternetGateway>()?
            .iter()
            .any(|g| g.vpc_id.as_deref() == Some(id))
            || tx
                .list::<EgressOnlyInternetGateway>()?
                .iter()
                .any(|g| g.vpc_id == id)
        {
            return Err(has_dependencies(id));
        }
        // spec 1.7, 10.1: an attached VPN gateway blocks DeleteVpc.
        if super::vpn_gateway::attached_to(tx, id)?.is_some() {
            return Err(has_dependencies(id));
        }
        // spec 1.7: gateway endpoints are not deleted by the API: they block it.
        vpc_endpoint::vpc_deleting(tx, id)?;
        // spec 7.2: its active peerings go with it; a pending request from
        // another account keeps it.
        vpc_peering::vpc_deleting(tx, id)?;
        // spec 1.7: the default security group goes with the VPC; others block it.
        let (sg_compares, sg_ops) = security_group::vpc_delete_ops(ctx, id)?;
        tx.include(sg_compares, sg_ops);
        tx.delete::<Vpc>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteVpc"))
}

/// What DescribeVpcs shows as the pool of Amazon-provided IPv6 blocks.
const AMAZON_IPV6_POOL: &str = "Amazon";

fn write_ipv6_association(x: &mut Xml, a: &Ipv6CidrAssociation) {
    x.elem("associationId", &a.association_id)
        .elem("ipv6CidrBlock", &a.ipv6_cidr_block)
        .node("ipv6CidrBlockState", |x| {
            x.elem("state", a.state);
        })
        .elem("networkBorderGroup", &a.network_border_group)
        .elem("ipv6Pool", AMAZON_IPV6_POOL)
        .elem("ipv6AddressAttribute", "public")
        .elem("ipSource", "amazon");
}

fn write_ipv4_association(x: &mut Xml, a: &CidrAssociation) {
    x.elem("associationId", &a.association_id)
        .elem("cidrBlock", &a.cidr_block)
        .node("cidrBlockState", |x| {
            x.elem("state", a.state);
        });
}

fn ipv6_counter_key(region: &str) -> Vec<u8> {
    format!("region/{region}/next-ipv6-block").into_bytes()
}

/// The region's Amazon-provided IPv6 space: /56 blocks carved in order out
/// of 2600:1f10::/32 (2^24 of them), unique across accounts, never reused.
const IPV6_POOL_BASE: u128 = 0x2600_1f10 << 96;
const IPV6_POOL_BLOCKS: u64 = 1 << 24;

/// spec 1.1: a fresh Amazon-provided /56 for a VPC.
fn amazon_ipv6_block(tx: &mut Tx) -> Result<Ipv6CidrAssociation, ApiError> {
    let key = ipv6_counter_key(tx.ctx().region);
    let n = tx
        .get_raw(&key)?
        .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    if n >= IPV6_POOL_BLOCKS {
        return Err(ApiError::new(
            "InsufficientCidrBlocks",
            "The region's pool of Amazon-provided IPv6 blocks is exhausted.",
        ));
    }
    tx.put_raw(key, (n + 1).to_string().into_bytes());
    let network = Ipv6Addr::from(IPV6_POOL_BASE | (u128::from(n) << 72));
    Ok(Ipv6CidrAssociation {
        association_id: new_id(ResourceKind::VpcCidrAssociation),
        ipv6_cidr_block: format!("{network}/56"),
        state: CidrBlockState::Associated,
        network_border_group: tx.ctx().region.to_owned(),
    })
}

/// The three VPC attributes: (wire name in ModifyVpcAttribute, name in
/// DescribeVpcAttribute's `Attribute` and its response).
const ATTRIBUTES: [(&str, &str); 3] = [
    ("EnableDnsSupport", "enableDnsSupport"),
    ("EnableDnsHostnames", "enableDnsHostnames"),
    (
        "EnableNetworkAddressUsageMetrics",
        "enableNetworkAddressUsageMetrics",
    ),
];

fn attribute_value(vpc: &Vpc, name: &str) -> Option<bool> {
    match name {
        "enableDnsSupport" => Some(vpc.enable_dns_support),
        "enableDnsHostnames" => Some(vpc.enable_dns_hostnames),
        "enableNetworkAddressUsageMetrics" => Some(vpc.enable_network_address_usage_metrics),
        _ => None,
    }
}

/// spec 1.4: one attribute per call; DNS hostnames only with DNS support.
pub fn modify_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    let mut given = Vec::new();
    for (wire, name) in ATTRIBUTES {
        if let Some(value) = params.bool(&format!("{wire}.Value"))? {
            given.push((name, value));
        }
    }
    let (name, value) = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(ApiError::missing_parameter(
                "EnableDnsSupport.Value, EnableDnsHostnames.Value or EnableNetworkAddressUsageMetrics.Value",
            ));
        }
        _ => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Only one attribute can be modified at a time; send one ModifyVpcAttribute per attribute.",
            ));
        }
    };
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vpc = tx.load::<Vpc>(id)?;
        match name {
            "enableDnsSupport" => vpc.enable_dns_support = value,
            "enableDnsHostnames" => {
                if value && !vpc.enable_dns_support {
                    return Err(ApiError::new(
                        "InvalidParameterCombination",
                        format!(
                            "DNS hostnames can be enabled only while DNS support is: enable enableDnsSupport on {id} first."
                        ),
                    ));
                }
                vpc.enable_dns_hostnames = value;
            }
            _ => vpc.enable_network_address_usage_metrics = value,
        }
        tx.put(&vpc)
    })?;
    Ok(ok_return(ctx, "ModifyVpcAttribute"))
}

/// ModifyVpcTenancy: EC2 only ever moves a VPC from `dedicated` to
/// `default` (instances already running keep their tenancy).
pub fn modify_tenancy(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    let tenancy = params.required("InstanceTenancy")?;
    if tenancy != "default" {
        return Err(ApiError::new(
            "UnsupportedTenancy",
            format!("The tenancy value {tenancy} is not supported."),
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vpc = tx.load::<Vpc>(id)?;
        vpc.instance_tenancy = tenancy.into();
        tx.put(&vpc)
    })?;
    Ok(Xml::response("ModifyVpcTenancy", ctx.request_id, |x| {
        x.elem("returnValue", true);
    }))
}

pub fn describe_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    let name = params.required("Attribute")?;
    if !ATTRIBUTES.iter().any(|(_, n)| *n == name) {
        return Err(ApiError::invalid_value(
            "attribute",
            name,
            "Unknown attribute: use enableDnsSupport, enableDnsHostnames or enableNetworkAddressUsageMetrics.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpc = transact(ctx, |tx| tx.load::<Vpc>(id))?;
    let value = attribute_value(&vpc, name)
        .ok_or_else(|| ApiError::internal(format!("attribute {name} has no value")))?;
    Ok(Xml::response("DescribeVpcAttribute", ctx.request_id, |x| {
        x.elem("vpcId", &vpc.id).node(name, |x| {
            x.elem("value", value);
        });
    }))
}

/// An address range of spec 1.1's restricted-combination table.
#[derive(Debug, Clone, Copy)]
struct Range {
    network: u32,
    len: u8,
}

impl Range {
    const fn new(network: u32, len: u8) -> Range {
        Range { network, len }
    }
}

const TEN: Range = Range::new(0x0a00_0000, 8);
const TEN_0_15: Range = Range::new(0x0a00_0000, 15);
const TEN_0_16: Range = Range::new(0x0a00_0000, 16);
const ONE72_16: Range = Range::new(0xac10_0000, 12);
const ONE72_31: Range = Range::new(0xac1f_0000, 16);
const ONE92_168: Range = Range::new(0xc0a8_0000, 16);
const ONE98_19: Range = Range::new(0xc613_0000, 16);

impl Range {
    /// True if `c` lies inside the range. VPC blocks are /16 or smaller
    /// and every range is /16 or larger, so a block is inside or apart.
    fn holds(self, c: &Ipv4Cidr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.len));
        c.prefix_len() >= self.len && c.network().to_bits() & mask == self.network
    }
}

fn rfc1918(c: &Ipv4Cidr) -> bool {
    TEN.holds(c) || ONE72_16.holds(c) || ONE92_168.holds(c)
}

/// spec 1.1's restricted-combination table. The row is chosen by the
/// primary block, as the AWS table is headed ("the range in which your
/// primary IPv4 CIDR block resides"): choosing it by every block would let
/// a permitted 100.64/10 secondary forbid further blocks from the
/// primary's own private range, which the same table permits.
fn restricted(primary: &Ipv4Cidr, existing: &[Ipv4Cidr], new: &Ipv4Cidr) -> bool {
    if TEN.holds(primary) {
        ONE72_16.holds(new)
            || ONE92_168.holds(new)
            || ONE98_19.holds(new)
            || (TEN_0_16.holds(new) && existing.iter().any(|e| TEN_0_15.holds(e)))
    } else if ONE72_16.holds(primary) {
        TEN.holds(new) || ONE92_168.holds(new) || ONE72_31.holds(new) || ONE98_19.holds(new)
    } else if ONE92_168.holds(primary) {
        TEN.holds(new) || ONE72_16.holds(new) || ONE98_19.holds(new)
    } else if ONE98_19.holds(primary) {
        rfc1918(new)
    } else {
        // A public block or one in 100.64.0.0/10.
        rfc1918(new) || ONE98_19.holds(new)
    }
}

/// spec 1.1: every rule a secondary IPv4 block must pass against the VPC.
fn check_secondary(vpc: &Vpc, new: &Ipv4Cidr) -> Result<(), ApiError> {
    if vpc.cidr_associations.len() >= IPV4_CIDR_QUOTA {
        return Err(ApiError::new(
            "CidrLimitExceeded",
            format!(
                "This network {} has met its maximum number of allowed CIDRs: {IPV4_CIDR_QUOTA}",
                vpc.id
            ),
        ));
    }
    let existing: Vec<Ipv4Cidr> = vpc
        .cidr_associations
        .iter()
        .map(|a| {
            a.cidr_block
                .parse()
                .map_err(|_| ApiError::internal(format!("{} has an unreadable CIDR block", vpc.id)))
        })
        .collect::<Result<_, _>>()?;
    // An existing block cannot be resized either: any overlap is refused.
    if let Some(clash) = existing.iter().find(|e| e.overlaps(new)) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!(
                "The CIDR '{new}' conflicts with the VPC's block {clash}; choose a block that overlaps none of the VPC's."
            ),
        ));
    }
    let primary: Ipv4Cidr = vpc
        .cidr_block
        .parse()
        .map_err(|_| ApiError::internal(format!("{} has an unreadable CIDR block", vpc.id)))?;
    if restricted(&primary, &existing, new) {
        return Err(ApiError::new(
            "InvalidVpc.Range",
            format!(
                "The CIDR '{new}' is restricted. Use a CIDR from the same private address range as the current VPC CIDR, or use a publicly-routable CIDR."
            ),
        ));
    }
    Ok(())
}

pub fn associate_cidr_block(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    refuse_pools(params)?;
    let ipv6 = params.bool("AmazonProvidedIpv6CidrBlock")?.unwrap_or(false);
    let cidr = match (params.get("CidrBlock"), ipv6) {
        (Some(_), true) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Give either CidrBlock or AmazonProvidedIpv6CidrBlock, not both.",
            ));
        }
        (Some(text), false) => Some(parse_cidr(text)?),
        (None, true) => None,
        (None, false) => return Err(ApiError::missing_parameter("CidrBlock")),
    };
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let shown = transact(ctx, |tx| {
        let mut vpc = tx.load::<Vpc>(id)?;
        let shown = match &cidr {
            Some(cidr) => {
                check_secondary(&vpc, cidr)?;
                // spec 1.1: what the VPC's peerings allow.
                vpc_peering::vpc_cidr_adding(tx, id, cidr)?;
                let a = CidrAssociation {
                    association_id: new_id(ResourceKind::VpcCidrAssociation),
                    cidr_block: cidr.to_string(),
                    state: CidrBlockState::Associated,
                };
                vpc.cidr_associations.push(a.clone());
                // spec 1.1: every route table of the VPC gets a local route.
                route_table::vpc_cidr_added(tx, id, &a.cidr_block)?;
                Association::V4(a)
            }
            None => {
                if vpc.ipv6_cidr_associations.len() >= IPV6_CIDR_QUOTA {
                    return Err(ApiError::new(
                        "CidrLimitExceeded",
                        format!(
                            "This network {id} has met its maximum number of allowed CIDRs: {IPV6_CIDR_QUOTA}"
                        ),
                    ));
                }
                let a = amazon_ipv6_block(tx)?;
                vpc.ipv6_cidr_associations.push(a.clone());
                // spec 4.2: the default ACL opens ::/0 where not customised.
                network_acl::vpc_ipv6_added(tx, id)?;
                Association::V6(a)
            }
        };
        tx.put(&vpc)?;
        Ok(shown)
    })?;
    // EC2 answers while the block is still being associated.
    Ok(association_response(
        ctx,
        "AssociateVpcCidrBlock",
        id,
        shown,
        CidrBlockState::Associating,
    ))
}

/// A block as AssociateVpcCidrBlock and DisassociateVpcCidrBlock show it.
#[derive(Debug, Clone)]
enum Association {
    V4(CidrAssociation),
    V6(Ipv6CidrAssociation),
}

fn association_response(
    ctx: &Ctx,
    action: &str,
    vpc_id: &str,
    association: Association,
    state: CidrBlockState,
) -> String {
    Xml::response(action, ctx.request_id, |x| {
        match association {
            Association::V4(a) => x.node("cidrBlockAssociation", |x| {
                write_ipv4_association(x, &CidrAssociation { state, ..a });
            }),
            Association::V6(a) => x.node("ipv6CidrBlockAssociation", |x| {
                write_ipv6_association(x, &Ipv6CidrAssociation { state, ..a });
            }),
        };
        x.elem("vpcId", vpc_id);
    })
}

pub fn disassociate_cidr_block(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let association_id = params.required("AssociationId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (vpc_id, shown) = transact(ctx, |tx| {
        for mut vpc in tx.list::<Vpc>()? {
            let shown = if let Some(i) = vpc
                .cidr_associations
                .iter()
                .position(|a| a.association_id == association_id)
            {
                // spec 1.1: the primary block stays with the VPC for life.
                if vpc.cidr_associations[i].cidr_block == vpc.cidr_block {
                    return Err(ApiError::new(
                        "OperationNotPermitted",
                        format!(
                            "The vpc CIDR block with association ID {association_id} may not be disassociated. It is the primary IPv4 CIDR block of the VPC"
                        ),
                    ));
                }
                let block = vpc.cidr_associations[i].cidr_block.clone();
                if let Ok(range) = block.parse::<Ipv4Cidr>()
                    && tx.list::<Subnet>()?.iter().any(|s| {
                        s.vpc_id == vpc.id && s.cidr_block.is_some_and(|c| range.contains(&c))
                    })
                {
                    return Err(ApiError::new(
                        "InvalidCidrBlock.InUse",
                        format!(
                            "The vpc CIDR block {block} cannot be disassociated: subnets use it. Delete them first."
                        ),
                    ));
                }
                route_table::vpc_cidr_removed(tx, &vpc.id, &block)?;
                Association::V4(vpc.cidr_associations.remove(i))
            } else if let Some(i) = vpc
                .ipv6_cidr_associations
                .iter()
                .position(|a| a.association_id == association_id)
            {
                // As for IPv4: a block subnets carve from stays while they do.
                let block = vpc.ipv6_cidr_associations[i].ipv6_cidr_block.clone();
                if let Ok(range) = block.parse::<ipnet::Ipv6Net>()
                    && tx.list::<Subnet>()?.iter().any(|s| {
                        s.vpc_id == vpc.id
                            && s.ipv6_cidr_associations
                                .iter()
                                .any(|a| range.contains(&a.ipv6_cidr_block))
                    })
                {
                    return Err(ApiError::new(
                        "InvalidCidrBlock.InUse",
                        format!(
                            "The vpc IPv6 CIDR block {block} cannot be disassociated: subnets use it. Disassociate their IPv6 blocks first."
                        ),
                    ));
                }
                Association::V6(vpc.ipv6_cidr_associations.remove(i))
            } else {
                continue;
            };
            tx.put(&vpc)?;
            return Ok((vpc.id, shown));
        }
        // A malformed ID names no association either: NotFound, not Malformed.
        Err(ApiError::new(
            "InvalidVpcCidrBlockAssociationID.NotFound",
            format!("The vpc CIDR block association ID '{association_id}' does not exist"),
        ))
    })?;
    Ok(association_response(
        ctx,
        "DisassociateVpcCidrBlock",
        &vpc_id,
        shown,
        CidrBlockState::Disassociating,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    fn allowed(primary: &str, others: &[&str], new: &str) -> bool {
        let mut existing = vec![c(primary)];
        existing.extend(others.iter().map(|s| c(s)));
        !restricted(&c(primary), &existing, &c(new))
    }

    // spec 1.1: the restricted-combination table, row by row.
    #[test]
    fn restricted_combinations() {
        // 10.0.0.0/8
        assert!(!allowed("10.0.0.0/16", &[], "172.16.0.0/16"));
        assert!(!allowed("10.0.0.0/16", &[], "192.168.0.0/16"));
        assert!(!allowed("10.0.0.0/16", &[], "198.19.0.0/16"));
        assert!(allowed("10.0.0.0/16", &[], "10.2.0.0/16"));
        assert!(allowed("10.0.0.0/16", &[], "100.64.0.0/16"));
        assert!(allowed("10.0.0.0/16", &[], "203.0.113.0/24"));
        assert!(!allowed("10.1.0.0/16", &[], "10.0.5.0/24"));
        assert!(allowed("10.2.0.0/16", &[], "10.0.5.0/24"));
        assert!(!allowed("10.2.0.0/16", &["10.1.0.0/16"], "10.0.5.0/24"));
        // 172.16.0.0/12
        assert!(!allowed("172.16.0.0/16", &[], "10.0.0.0/16"));
        assert!(!allowed("172.16.0.0/16", &[], "192.168.0.0/16"));
        assert!(!allowed("172.16.0.0/16", &[], "172.31.0.0/16"));
        assert!(!allowed("172.16.0.0/16", &[], "198.19.0.0/16"));
        assert!(allowed("172.16.0.0/16", &[], "172.17.0.0/16"));
        assert!(allowed("172.16.0.0/16", &[], "100.64.0.0/16"));
        // 192.168.0.0/16
        assert!(!allowed("192.168.0.0/20", &[], "10.0.0.0/16"));
        assert!(!allowed("192.168.0.0/20", &[], "172.16.0.0/16"));
        assert!(!allowed("192.168.0.0/20", &[], "198.19.0.0/16"));
        assert!(allowed("192.168.0.0/20", &[], "192.168.16.0/20"));
        assert!(allowed("192.168.0.0/20", &[], "8.8.0.0/16"));
        // 198.19.0.0/16
        assert!(!allowed("198.19.0.0/20", &[], "10.0.0.0/16"));
        assert!(!allowed("198.19.0.0/20", &[], "192.168.0.0/16"));
        assert!(allowed("198.19.0.0/20", &[], "100.64.0.0/16"));
        assert!(allowed("198.19.0.0/20", &[], "8.8.0.0/16"));
        // public or 100.64.0.0/10
        assert!(!allowed("100.64.0.0/16", &[], "10.0.0.0/16"));
        assert!(!allowed("8.8.0.0/16", &[], "172.16.0.0/16"));
        assert!(!allowed("8.8.0.0/16", &[], "198.19.0.0/16"));
        assert!(allowed("8.8.0.0/16", &[], "100.64.0.0/16"));
        assert!(allowed("100.64.0.0/16", &[], "9.9.0.0/16"));
        // The row is the primary's: a 100.64 secondary does not forbid 10/8.
        assert!(allowed("10.0.0.0/16", &["100.64.0.0/16"], "10.5.0.0/16"));
    }

    #[test]
    fn ipv6_blocks_are_slash_56_in_the_pool() {
        let first = Ipv6Addr::from(IPV6_POOL_BASE | (1u128 << 72));
        assert_eq!(first.to_string(), "2600:1f10:0:100::");
    }

    // Records written before the attribute and IPv6 fields existed still read.
    #[test]
    fn old_records_read() {
        let old = r#"{"id":"vpc-0123456789abcdef0","owner_id":"1","cidr_block":"10.0.0.0/16","cidr_associations":[],"state":"available","dhcp_options_id":"default","instance_tenancy":"default","is_default":false,"enable_dns_support":true,"enable_dns_hostnames":false,"tags":[],"vni":4096}"#;
        let vpc: Vpc = serde_json::from_str(old).unwrap();
        assert!(!vpc.enable_network_address_usage_metrics);
        assert!(vpc.ipv6_cidr_associations.is_empty());
    }
}
