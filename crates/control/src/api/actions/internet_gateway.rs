//! Internet gateways (spec 5.1, 13): CreateInternetGateway,
//! DescribeInternetGateways, DeleteInternetGateway, AttachInternetGateway and
//! DetachInternetGateway. A gateway's record holds its one attachment; the
//! one-VPC-per-gateway and one-gateway-per-VPC rules are checked inside the
//! attaching transaction, so two concurrent attaches can never both win.

use openvpc_model::ResourceKind;

use super::network_interface::NetworkInterface;
use super::resource::{
    DescribeSpec, Resource, Tags, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::vpc::{VPC_QUOTA, Vpc};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::internet_gateway::InternetGateway;
use crate::records::region::InternetPolicy;

/// spec 13: internet gateways per region follow the VPC quota.
pub const INTERNET_GATEWAY_QUOTA: usize = VPC_QUOTA;

/// The internet-gateway actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateInternetGateway" => create(ctx, params),
        "DescribeInternetGateways" => describe(ctx, params),
        "DeleteInternetGateway" => delete(ctx, params),
        "AttachInternetGateway" => attach(ctx, params),
        "DetachInternetGateway" => detach(ctx, params),
        _ => return None,
    })
}

impl Resource for InternetGateway {
    const KIND: ResourceKind = ResourceKind::InternetGateway;
    const NOT_FOUND: &'static str = "InvalidInternetGatewayID.NotFound";
    const NOUN: &'static str = "internet gateway";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "internet-gateway-id" => vec![self.id.clone()],
            "owner-id" => vec![self.owner_id.clone()],
            "attachment.vpc-id" => self.vpc_id.iter().cloned().collect(),
            // EC2 shows an attachment only while attached, and then as
            // `available`; a detached gateway has no state to match.
            "attachment.state" => self.vpc_id.iter().map(|_| "available".into()).collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("internetGatewayId", &self.id)
            .elem("ownerId", &self.owner_id)
            .list("attachmentSet", &self.vpc_id, |x, vpc| {
                // spec 5.1: an attached gateway shows `available`, not `attached`.
                x.elem("vpcId", vpc).elem("state", "available");
            });
        write_tags(x, &self.tags);
    }
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let tags = tags_for(params, "internet-gateway")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let igw = transact(ctx, |tx| {
        if tx.list::<InternetGateway>()?.len() >= INTERNET_GATEWAY_QUOTA {
            return Err(ApiError::new(
                "InternetGatewayLimitExceeded",
                format!(
                    "The maximum number of internet gateways has been reached ({INTERNET_GATEWAY_QUOTA} per region). Delete an unused gateway or ask for a higher quota."
                ),
            ));
        }
        let igw = InternetGateway {
            id: new_id(ResourceKind::InternetGateway),
            owner_id: ctx.account.id.clone(),
            vpc_id: None,
            tags: tags.clone(),
        };
        tx.put(&igw)?;
        Ok(igw)
    })?;
    Ok(Xml::response(
        "CreateInternetGateway",
        ctx.request_id,
        |x| {
            x.node("internetGateway", |x| igw.write(x));
        },
    ))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<InternetGateway>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeInternetGateways",
            ids: "InternetGatewayId",
            set: "internetGatewaySet",
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("InternetGatewayId")?;
    check_id(ResourceKind::InternetGateway, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let igw = tx.load::<InternetGateway>(id)?;
        // spec 5.1: an attached gateway must be detached first.
        if let Some(vpc) = &igw.vpc_id {
            return Err(ApiError::new(
                "DependencyViolation",
                format!(
                    "The internetGateway '{id}' has dependencies and cannot be deleted: it is attached to {vpc}. Detach it first."
                ),
            ));
        }
        tx.delete::<InternetGateway>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteInternetGateway"))
}

/// `InternetGatewayId` and `VpcId`, both required and well formed.
fn gateway_and_vpc(params: &Params) -> Result<(&str, &str), ApiError> {
    let igw = params.required("InternetGatewayId")?;
    let vpc = params.required("VpcId")?;
    check_id(ResourceKind::InternetGateway, igw)?;
    check_id(ResourceKind::Vpc, vpc)?;
    Ok((igw, vpc))
}

pub fn attach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let (igw_id, vpc_id) = gateway_and_vpc(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut igw = tx.load::<InternetGateway>(igw_id)?;
        tx.load::<Vpc>(vpc_id)?;
        // spec 5.1: one VPC per gateway and one gateway per VPC.
        if let Some(current) = &igw.vpc_id {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "Resource {igw_id} is already associated with {current}. Detach it before attaching it elsewhere."
                ),
            ));
        }
        if let Some(other) = tx
            .list::<InternetGateway>()?
            .into_iter()
            .find(|g| g.vpc_id.as_deref() == Some(vpc_id))
        {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "Resource {vpc_id} is already associated with internet gateway {}; a VPC has at most one.",
                    other.id
                ),
            ));
        }
        igw.vpc_id = Some(vpc_id.to_owned());
        tx.put(&igw)
    })?;
    Ok(ok_return(ctx, "AttachInternetGateway"))
}

pub fn detach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let (igw_id, vpc_id) = gateway_and_vpc(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut igw = tx.load::<InternetGateway>(igw_id)?;
        // A VPC that does not exist is simply not the one attached: EC2 (and
        // moto) answer Gateway.NotAttached rather than InvalidVpcID.NotFound.
        if igw.vpc_id.as_deref() != Some(vpc_id) {
            return Err(ApiError::new(
                "Gateway.NotAttached",
                format!("InternetGatewayID {igw_id} is not attached to a VPC {vpc_id}."),
            ));
        }
        // The well-known Terraform error: public addresses mapped in the
        // VPC (Elastic IPs, auto-assigned public IPs) keep the gateway, as
        // their translation needs it. moto allows the detach.
        let mapped = super::address::region_settings(tx)?.internet == InternetPolicy::Edges
            && tx
                .list::<NetworkInterface>()?
                .iter()
                .any(|e| e.vpc_id == vpc_id && !e.public.is_empty());
        if mapped {
            return Err(ApiError::new(
                "DependencyViolation",
                format!(
                    "Network {vpc_id} has some mapped public address(es). Please unmap those public address(es) before detaching the gateway."
                ),
            ));
        }
        igw.vpc_id = None;
        tx.put(&igw)
    })?;
    Ok(ok_return(ctx, "DetachInternetGateway"))
}
