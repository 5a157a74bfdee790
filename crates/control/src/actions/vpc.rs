//! CreateVpc, DescribeVpcs and DeleteVpc (spec 1.1, 1.7, 12). CreateVpc
//! creates the VPC's defaults in the same transaction, and DeleteVpc removes
//! them with it or refuses while other dependents remain.

use std::net::Ipv4Addr;

use openvpc_model::{Ipv4Cidr, ResourceKind};
use serde::{Deserialize, Serialize};

use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::subnet::Subnet;
use super::{Ctx, network_acl, route_table, security_group, tags_for};
use crate::error::ApiError;
use crate::query::Params;
use crate::xml::Xml;

/// spec 13: VPCs per region (default quota).
pub const VPC_QUOTA: usize = 5;

/// A CIDR block associated with a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrAssociation {
    pub association_id: String,
    pub cidr_block: String,
    pub state: String,
}

/// A VPC as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub owner_id: String,
    pub cidr_block: String,
    pub cidr_associations: Vec<CidrAssociation>,
    pub state: String,
    pub dhcp_options_id: String,
    pub instance_tenancy: String,
    pub is_default: bool,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    pub tags: Tags,
    /// The Geneve VNI of the VPC's traffic, unique in the region.
    pub vni: u32,
}

/// The VPC actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpc" => create(ctx, params),
        "DescribeVpcs" => describe(ctx, params),
        "DeleteVpc" => delete(ctx, params),
        _ => return None,
    })
}

/// spec 1.1: /16 to /28, never in 169.254.0.0/16.
fn parse_cidr(text: &str) -> Result<Ipv4Cidr, ApiError> {
    let cidr: Ipv4Cidr = text.parse().map_err(|_| {
        ApiError::invalid_value("CidrBlock", text, "This is not a valid CIDR block.")
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

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let cidr = parse_cidr(params.required("CidrBlock")?)?;
    let tenancy = params.get("InstanceTenancy").unwrap_or("default");
    if !matches!(tenancy, "default" | "dedicated") {
        return Err(ApiError::invalid_value(
            "InstanceTenancy",
            tenancy,
            "Use 'default' or 'dedicated'.",
        ));
    }
    let tags = tags_for(params, "vpc")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpc = transact(ctx, |tx| {
        if tx.list::<Vpc>()?.len() >= VPC_QUOTA {
            return Err(ApiError::new(
                "VpcLimitExceeded",
                format!(
                    "The maximum number of VPCs has been reached ({VPC_QUOTA} per region). Delete a VPC or ask for a higher quota."
                ),
            ));
        }
        let vni = next_vni(tx)?;
        let vpc = Vpc {
            id: new_id(ResourceKind::Vpc),
            owner_id: ctx.account.id.clone(),
            cidr_block: cidr.to_string(),
            cidr_associations: vec![CidrAssociation {
                association_id: new_id(ResourceKind::VpcCidrAssociation),
                cidr_block: cidr.to_string(),
                state: "associated".into(),
            }],
            state: "available".into(),
            dhcp_options_id: "default".into(),
            instance_tenancy: tenancy.into(),
            is_default: false,
            enable_dns_support: true,
            enable_dns_hostnames: false,
            tags: tags
                .iter()
                .map(|t| (t.key.clone(), t.value.clone()))
                .collect(),
            vni,
        };
        tx.put(&vpc)?;
        // spec 1.6: the main route table comes with the VPC, atomically.
        route_table::vpc_created(tx, &vpc)?;
        // spec 1.6: the default network ACL comes with the VPC, atomically.
        network_acl::vpc_created(tx, &vpc)?;
        // spec 1.6: the default security group comes with the VPC, atomically.
        let (sg_compares, sg_ops) = security_group::default_group_ops(ctx, &vpc.id)?;
        tx.include(sg_compares, sg_ops);
        Ok(vpc)
    })?;
    // AWS answers CreateVpc with the VPC still pending.
    let shown = Vpc {
        state: "pending".into(),
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
                .map(|a| a.state.clone())
                .collect(),
            "dhcp-options-id" => vec![v.dhcp_options_id.clone()],
            "is-default" => vec![v.is_default.to_string()],
            "owner-id" => vec![v.owner_id.clone()],
            "state" => vec![v.state.clone()],
            "instance-tenancy" => vec![v.instance_tenancy.clone()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        let v = self;
        x.elem("vpcId", &v.id)
            .elem("ownerId", &v.owner_id)
            .elem("state", &v.state)
            .elem("cidrBlock", &v.cidr_block)
            .list("cidrBlockAssociationSet", &v.cidr_associations, |x, a| {
                x.elem("associationId", &a.association_id)
                    .elem("cidrBlock", &a.cidr_block)
                    .node("cidrBlockState", |x| {
                        x.elem("state", &a.state);
                    });
            })
            .list(
                "ipv6CidrBlockAssociationSet",
                std::iter::empty::<()>(),
                |_, _| {},
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
        // spec 1.7: the default security group goes with the VPC; others block it.
        let (sg_compares, sg_ops) = security_group::vpc_delete_ops(ctx, id)?;
        tx.include(sg_compares, sg_ops);
        tx.delete::<Vpc>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteVpc"))
}
