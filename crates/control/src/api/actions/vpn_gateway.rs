//! Virtual private gateways (spec 10.1, 2.7, 13): CreateVpnGateway,
//! DescribeVpnGateways, DeleteVpnGateway, AttachVpnGateway and
//! DetachVpnGateway, and the route-propagation switches
//! EnableVgwRoutePropagation and DisableVgwRoutePropagation, which record the
//! gateway on the route table (shown there as `propagatingVgwSet`).
//!
//! A gateway's record holds its one current attachment (`vpc_id`, the
//! top-level field route_table.rs checks a route's target against) and the
//! last VPC it left, which Describe shows as `detached`. The one-VPC-per-
//! gateway and one-gateway-per-VPC rules are checked inside the attaching
//! transaction, so two concurrent attaches cannot both win.

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::VpnGatewayState;
use openvpc_model::time::now_secs;

use super::customer_gateway::{check_named, ipsec_type, load_named, still_visible};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_where, new_id, ok_return, transact,
    write_tags,
};
use super::route_table::RouteTable;
use super::vpc::Vpc;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::vpn_gateway::VpnGateway;

/// spec 13: VPN gateways per region.
pub const VPN_GATEWAY_QUOTA: usize = 5;
/// spec 10.1: the Amazon-side ASN when none is given.
pub const DEFAULT_AMAZON_ASN: u64 = 64_512;

/// The VPN-gateway and propagation actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpnGateway" => create(ctx, params),
        "DescribeVpnGateways" => describe(ctx, params),
        "DeleteVpnGateway" => delete(ctx, params),
        "AttachVpnGateway" => attach(ctx, params),
        "DetachVpnGateway" => detach(ctx, params),
        "EnableVgwRoutePropagation" => propagation(ctx, params, true),
        "DisableVgwRoutePropagation" => propagation(ctx, params, false),
        _ => return None,
    })
}

impl Resource for VpnGateway {
    const KIND: ResourceKind = ResourceKind::VpnGateway;
    const NOT_FOUND: &'static str = "InvalidVpnGatewayID.NotFound";
    const NOUN: &'static str = "virtual private gateway";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let attachment = self.attachment();
        Some(match name {
            "vpn-gateway-id" => vec![self.id.clone()],
            "state" => vec![self.state.as_str().to_owned()],
            "type" => vec![self.gateway_type.clone()],
            "availability-zone" => self.availability_zone.iter().cloned().collect(),
            "amazon-side-asn" => vec![self.amazon_side_asn.to_string()],
            "attachment.vpc-id" => attachment.iter().map(|(v, _)| (*v).to_owned()).collect(),
            "attachment.state" => attachment.iter().map(|(_, s)| (*s).to_owned()).collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("vpnGatewayId", &self.id)
            .elem("state", self.state)
            .elem("type", &self.gateway_type)
            .opt("availabilityZone", self.availability_zone.as_deref())
            .list("attachments", self.attachment(), |x, (vpc, state)| {
                x.elem("vpcId", vpc).elem("state", state);
            })
            .elem("amazonSideAsn", self.amazon_side_asn);
        write_tags(x, &self.tags);
    }
}

/// spec 10.1: a custom Amazon-side ASN is 64512–65534 or
/// 4200000000–4294967294.
fn amazon_side_asn(params: &Params) -> Result<u64, ApiError> {
    let Some(v) = params.get("AmazonSideAsn") else {
        return Ok(DEFAULT_AMAZON_ASN);
    };
    match v.parse::<u64>() {
        Ok(n) if (64_512..=65_534).contains(&n) || (4_200_000_000..=4_294_967_294).contains(&n) => {
            Ok(n)
        }
        _ => Err(ApiError::invalid_value(
            "AmazonSideAsn",
            v,
            "Use a private ASN from 64512 to 65534 or from 4200000000 to 4294967294.",
        )),
    }
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let gateway_type = ipsec_type(params)?;
    let asn = amazon_side_asn(params)?;
    let availability_zone = params.get("AvailabilityZone").map(str::to_owned);
    let tags = tags_for(params, "vpn-gateway")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vgw = transact(ctx, |tx| {
        if tx
            .list::<VpnGateway>()?
            .iter()
            .filter(|g| g.is_live())
            .count()
            >= VPN_GATEWAY_QUOTA
        {
            return Err(ApiError::new(
                "VpnGatewayLimitExceeded",
                format!(
                    "The maximum number of virtual private gateways has been reached ({VPN_GATEWAY_QUOTA} per region). Delete an unused one or ask for a higher quota."
                ),
            ));
        }
        let vgw = VpnGateway {
            id: new_id(ResourceKind::VpnGateway),
            state: VpnGatewayState::Available,
            gateway_type: gateway_type.clone(),
            availability_zone: availability_zone.clone(),
            amazon_side_asn: asn,
            vpc_id: None,
            detached_from: None,
            deleted_at: None,
            tags: tags.clone(),
        };
        tx.put(&vgw)?;
        Ok(vgw)
    })?;
    Ok(Xml::response("CreateVpnGateway", ctx.request_id, |x| {
        x.node("vpnGateway", |x| vgw.write(x));
    }))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    check_named::<VpnGateway>(params, "VpnGatewayId")?;
    describe_where::<VpnGateway>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeVpnGateways",
            ids: "VpnGatewayId",
            set: "vpnGatewaySet",
        },
        |g| still_visible(g.deleted_at),
    )
}

/// A gateway that is not deleted, by an ID that may be malformed.
pub(crate) fn load_live(tx: &mut Tx, id: &str) -> Result<VpnGateway, ApiError> {
    let vgw = load_named::<VpnGateway>(tx, id)?;
    if !vgw.is_live() {
        return Err(ApiError::new(
            "IncorrectState",
            format!("The virtual private gateway '{id}' is deleted."),
        ));
    }
    Ok(vgw)
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpnGatewayId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vgw = load_named::<VpnGateway>(tx, id)?;
        if !vgw.is_live() {
            return Ok(());
        }
        // spec 10.1: a gateway is detached before it is deleted.
        if let Some(vpc) = &vgw.vpc_id {
            return Err(ApiError::new(
                "IncorrectState",
                format!(
                    "The virtual private gateway '{id}' is attached to {vpc}; detach it before deleting it."
                ),
            ));
        }
        vgw.state = VpnGatewayState::Deleted;
        vgw.deleted_at = Some(now_secs());
        tx.put(&vgw)
    })?;
    Ok(ok_return(ctx, "DeleteVpnGateway"))
}

/// `VpnGatewayId` and `VpcId`, both required.
fn gateway_and_vpc(params: &Params) -> Result<(&str, &str), ApiError> {
    let vgw = params.required("VpnGatewayId")?;
    let vpc = params.required("VpcId")?;
    Ok((vgw, vpc))
}

pub fn attach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let (vgw_id, vpc_id) = gateway_and_vpc(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vgw = load_live(tx, vgw_id)?;
        tx.load::<Vpc>(vpc_id)?;
        // spec 10.1: a gateway attaches to one VPC, and a VPC has one gateway.
        if let Some(current) = &vgw.vpc_id {
            if current == vpc_id {
                return Ok(());
            }
            return Err(ApiError::new(
                "VpnGatewayAttachmentLimitExceeded",
                format!(
                    "The virtual private gateway {vgw_id} is already attached to {current}; detach it first."
                ),
            ));
        }
        if let Some(other) = tx
            .list::<VpnGateway>()?
            .into_iter()
            .find(|g| g.vpc_id.as_deref() == Some(vpc_id))
        {
            return Err(ApiError::new(
                "VpnGatewayAttachmentLimitExceeded",
                format!(
                    "The VPC {vpc_id} already has virtual private gateway {} attached; a VPC has at most one.",
                    other.id
                ),
            ));
        }
        vgw.vpc_id = Some(vpc_id.to_owned());
        vgw.detached_from = None;
        tx.put(&vgw)
    })?;
    Ok(Xml::response("AttachVpnGateway", ctx.request_id, |x| {
        x.node("attachment", |x| {
            x.elem("vpcId", vpc_id).elem("state", "attached");
        });
    }))
}

pub fn detach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let (vgw_id, vpc_id) = gateway_and_vpc(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vgw = load_named::<VpnGateway>(tx, vgw_id)?;
        if vgw.vpc_id.as_deref() != Some(vpc_id) {
            return Err(ApiError::new(
                "InvalidVpnGatewayAttachment.NotFound",
                format!(
                    "The attachment with vpn gateway ID '{vgw_id}' and vpc ID '{vpc_id}' does not exist"
                ),
            ));
        }
        vgw.vpc_id = None;
        vgw.detached_from = Some(vpc_id.to_owned());
        tx.put(&vgw)
    })?;
    Ok(ok_return(ctx, "DetachVpnGateway"))
}

/// spec 1.7: called inside DeleteVpc's transaction; an attached gateway keeps
/// the VPC.
pub fn attached_to(tx: &mut Tx, vpc_id: &str) -> Result<Option<String>, ApiError> {
    Ok(tx
        .list::<VpnGateway>()?
        .into_iter()
        .find(|g| g.vpc_id.as_deref() == Some(vpc_id))
        .map(|g| g.id))
}

/// spec 2.7: Enable/DisableVgwRoutePropagation. Enabling needs the gateway
/// attached to the table's VPC; disabling one that is not enabled is a no-op.
pub fn propagation(ctx: &Ctx, params: &Params, enable: bool) -> Result<String, ApiError> {
    let table_id = params.required("RouteTableId")?;
    let vgw_id = params.required("GatewayId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let action = if enable {
        "EnableVgwRoutePropagation"
    } else {
        "DisableVgwRoutePropagation"
    };
    transact(ctx, |tx| {
        let mut table = tx.load::<RouteTable>(table_id)?;
        let vgw = load_named::<VpnGateway>(tx, vgw_id)?;
        if enable {
            if vgw.vpc_id.as_deref() != Some(table.vpc_id.as_str()) {
                return Err(ApiError::new(
                    "Gateway.NotAttached",
                    format!(
                        "The virtual private gateway {vgw_id} is not attached to {}, the VPC of route table {table_id}.",
                        table.vpc_id
                    ),
                ));
            }
            // spec 2.6: a gateway route table cannot propagate.
            if table.associations.iter().any(|a| a.gateway_id.is_some()) {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "Route table {table_id} is associated with a gateway; gateway route tables cannot have route propagation."
                    ),
                ));
            }
            if table.propagating_vgws.iter().any(|v| v == vgw_id) {
                return Ok(());
            }
            table.propagating_vgws.push(vgw_id.to_owned());
        } else {
            let before = table.propagating_vgws.len();
            table.propagating_vgws.retain(|v| v != vgw_id);
            if table.propagating_vgws.len() == before {
                return Ok(());
            }
        }
        tx.put(&table)
    })?;
    Ok(ok_return(ctx, action))
}
