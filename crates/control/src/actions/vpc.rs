//! CreateVpc, DescribeVpcs and DeleteVpc (spec 1.1, 1.7, 12).

use std::net::Ipv4Addr;

use openvpc_model::{Ipv4Cidr, ResourceId, ResourceKind};
use serde::{Deserialize, Serialize};

use super::{Ctx, security_group, store_error, tags_for};
use crate::error::ApiError;
use crate::filter::Filter;
use crate::query::Params;
use crate::store::{Compare, KeyValue, Op, Txn, TxnResult};
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
    pub tags: Vec<(String, String)>,
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
    // Optimistic concurrency: read the quota and the VNI counter, then commit
    // only if neither changed meanwhile; retry on a race.
    for _ in 0..16 {
        let existing = ctx
            .store
            .range(&ctx.prefix("vpc"), None, usize::MAX)
            .map_err(store_error)?;
        if existing.len() >= VPC_QUOTA {
            return Err(ApiError::new(
                "VpcLimitExceeded",
                format!(
                    "The maximum number of VPCs has been reached ({VPC_QUOTA} per region). Delete a VPC or ask for a higher quota."
                ),
            ));
        }
        let counter = ctx
            .store
            .get(&vni_counter_key(ctx.region))
            .map_err(store_error)?;
        let vni = counter
            .as_ref()
            .and_then(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<u32>().ok())
            .unwrap_or(FIRST_VNI);
        let vpc = Vpc {
            id: ResourceId::generate(ResourceKind::Vpc).to_string(),
            owner_id: ctx.account.id.clone(),
            cidr_block: cidr.to_string(),
            cidr_associations: vec![CidrAssociation {
                association_id: ResourceId::generate(ResourceKind::VpcCidrAssociation).to_string(),
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
        let counter_compare = match &counter {
            Some(kv) => Compare::ModRevision(kv.key.clone(), kv.mod_revision),
            None => Compare::Absent(vni_counter_key(ctx.region)),
        };
        let mut compares = vec![counter_compare];
        // The quota: no VPC appeared or went away since the read.
        compares.extend(
            existing
                .iter()
                .map(|kv| Compare::ModRevision(kv.key.clone(), kv.mod_revision)),
        );
        compares.push(Compare::Absent(ctx.key("vpc", &vpc.id)));
        // spec 1.6: the default security group comes with the VPC, atomically.
        let (sg_compares, sg_ops) = security_group::default_group_ops(ctx, &vpc.id)?;
        compares.extend(sg_compares);
        let mut txn = Txn {
            compares,
            ops: vec![
                Op::Put(
                    vni_counter_key(ctx.region),
                    (vni + 1).to_string().into_bytes(),
                ),
                Op::Put(
                    ctx.key("vpc", &vpc.id),
                    serde_json::to_vec(&vpc).map_err(|e| ApiError::internal(e.to_string()))?,
                ),
            ],
        };
        txn.ops.extend(sg_ops);
        if let TxnResult::Committed(_) = ctx.store.txn(txn).map_err(store_error)? {
            // AWS answers CreateVpc with the VPC still pending.
            let shown = Vpc {
                state: "pending".into(),
                ..vpc
            };
            return Ok(Xml::response("CreateVpc", ctx.request_id, |x| {
                x.node("vpc", |x| write_vpc(x, &shown));
            }));
        }
    }
    Err(ApiError::new(
        "RequestLimitExceeded",
        "Too many concurrent changes; retry the request.",
    )
    .with_status(503))
}

fn write_vpc(x: &mut Xml, v: &Vpc) {
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
        .elem("isDefault", v.is_default)
        .list("tagSet", &v.tags, |x, (k, val)| {
            x.elem("key", k).elem("value", val);
        });
}

fn parse_vpc(kv: &KeyValue) -> Result<Vpc, ApiError> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::internal(format!("A stored VPC is unreadable: {e}")))
}

/// The values a VPC offers to a filter, or `None` for an unknown filter name.
fn filter_values(v: &Vpc, name: &str) -> Option<Vec<String>> {
    let tag_values = |key: Option<&str>| -> Vec<String> {
        v.tags
            .iter()
            .filter(|(k, _)| key.is_none_or(|want| want == k))
            .map(|(_, val)| val.clone())
            .collect()
    };
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
        "tag-key" => v.tags.iter().map(|(k, _)| k.clone()).collect(),
        "tag-value" => tag_values(None),
        _ => match name.strip_prefix("tag:") {
            Some(key) => tag_values(Some(key)),
            None => return None,
        },
    })
}

fn matches_all(v: &Vpc, filters: &[Filter]) -> Result<bool, ApiError> {
    for f in filters {
        let values = filter_values(v, &f.name).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue",
                format!("The filter '{}' is invalid", f.name),
            )
        })?;
        if !f.matches(values.iter().map(String::as_str)) {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("VpcId")?;
    for id in &ids {
        ResourceId::parse(ResourceKind::Vpc, id)
            .map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    }
    let filters = params.filters()?;
    let max = params.max_results(5..=1000)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let after = match params.get("NextToken") {
        Some(token) => Some(decode_token(token)?),
        None => None,
    };
    let mut vpcs = Vec::new();
    if ids.is_empty() {
        for kv in ctx
            .store
            .range(
                &ctx.prefix("vpc"),
                after.as_deref().map(|id| ctx.key("vpc", id)).as_deref(),
                usize::MAX,
            )
            .map_err(store_error)?
        {
            vpcs.push(parse_vpc(&kv)?);
        }
    } else {
        // spec 12.3: every named VPC must exist, or the whole call fails.
        let mut missing = Vec::new();
        for id in &ids {
            match ctx.store.get(&ctx.key("vpc", id)).map_err(store_error)? {
                Some(kv) => vpcs.push(parse_vpc(&kv)?),
                None => missing.push(id.as_str()),
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::new(
                "InvalidVpcID.NotFound",
                format!("The vpc ID '{}' does not exist", missing.join(", ")),
            ));
        }
        vpcs.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(after) = &after {
            vpcs.retain(|v| v.id > *after);
        }
    }
    let mut shown = Vec::new();
    for v in vpcs {
        if matches_all(&v, &filters)? {
            shown.push(v);
        }
    }
    let next = match max {
        Some(max) if shown.len() > max as usize => {
            shown.truncate(max as usize);
            shown.last().map(|v| encode_token(&v.id))
        }
        _ => None,
    };
    Ok(Xml::response("DescribeVpcs", ctx.request_id, |x| {
        x.list("vpcSet", &shown, write_vpc).opt("nextToken", next);
    }))
}

/// Pagination tokens name the last VPC returned; they are opaque to clients.
fn encode_token(last_id: &str) -> String {
    format!("v1.{last_id}")
}

fn decode_token(token: &str) -> Result<String, ApiError> {
    token
        .strip_prefix("v1.")
        .filter(|id| ResourceId::parse(ResourceKind::Vpc, id).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidNextToken",
                format!(
                    "The token '{token}' is invalid: pass the nextToken of a previous response"
                ),
            )
        })
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcId")?;
    ResourceId::parse(ResourceKind::Vpc, id).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let key = ctx.key("vpc", id);
    let Some(kv) = ctx.store.get(&key).map_err(store_error)? else {
        return Err(ApiError::new(
            "InvalidVpcID.NotFound",
            format!("The vpc ID '{id}' does not exist"),
        ));
    };
    let mut txn = Txn {
        compares: vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
        ops: vec![Op::Delete(key)],
    };
    // spec 1.7: the default security group goes with the VPC; others block it.
    let (sg_compares, sg_ops) = security_group::vpc_delete_ops(ctx, id)?;
    txn.compares.extend(sg_compares);
    txn.ops.extend(sg_ops);
    match ctx.store.txn(txn).map_err(store_error)? {
        TxnResult::Committed(_) => Ok(Xml::response("DeleteVpc", ctx.request_id, |x| {
            x.elem("return", true);
        })),
        TxnResult::Failed { .. } => Err(ApiError::new(
            "IncorrectState",
            format!("The vpc '{id}' changed while it was being deleted; retry the request."),
        )),
    }
}
