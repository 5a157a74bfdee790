//! Egress-only internet gateways (spec 5.2, 13): CreateEgressOnlyInternetGateway,
//! DescribeEgressOnlyInternetGateways and DeleteEgressOnlyInternetGateway.
//! An egress-only gateway is created attached to its VPC and stays so until
//! deleted; a VPC has at most one, checked inside the creating transaction.

use openvpc_model::ResourceKind;

use super::idempotency::{self, ClientToken};
use super::resource::{
    DescribeSpec, Resource, Tags, check_id, describe_skipping_missing, new_id, transact, write_tags,
};
use super::vpc::Vpc;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::egress_only_internet_gateway::EgressOnlyInternetGateway;

/// The egress-only-gateway actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateEgressOnlyInternetGateway" => create(ctx, params),
        "DescribeEgressOnlyInternetGateways" => describe(ctx, params),
        "DeleteEgressOnlyInternetGateway" => delete(ctx, params),
        _ => return None,
    })
}

impl Resource for EgressOnlyInternetGateway {
    const KIND: ResourceKind = ResourceKind::EgressOnlyInternetGateway;
    // EC2's code (and moto's) names gateways in general, not this kind.
    const NOT_FOUND: &'static str = "InvalidGatewayID.NotFound";
    const NOUN: &'static str = "eigw";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "egress-only-internet-gateway-id" => vec![self.id.clone()],
            "attachment.vpc-id" => vec![self.vpc_id.clone()],
            "attachment.state" => vec!["attached".into()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("egressOnlyInternetGatewayId", &self.id).list(
            "attachmentSet",
            [&self.vpc_id],
            |x, vpc| {
                // Unlike an internet gateway's `available`, this one says `attached`.
                x.elem("state", "attached").elem("vpcId", vpc);
            },
        );
        write_tags(x, &self.tags);
    }
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    // EC2 answers any `vpc-` ID that names no VPC alike, malformed or not,
    // and words it its own way here (moto's test_create_with_unknown_vpc).
    let unknown_vpc = || {
        ApiError::new(
            "InvalidVpcID.NotFound",
            format!("VpcID {vpc_id} does not exist."),
        )
    };
    if !vpc_id.starts_with("vpc-") {
        check_id(ResourceKind::Vpc, vpc_id)?;
    }
    let tags = tags_for(params, "egress-only-internet-gateway")?;
    let token = ClientToken::of(params, "CreateEgressOnlyInternetGateway")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let eigw = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first gateway.
        if let Some(eigw) =
            idempotency::earlier_one::<EgressOnlyInternetGateway>(tx, token.as_ref())?
        {
            return Ok(eigw);
        }
        if check_id(ResourceKind::Vpc, vpc_id).is_err() || tx.get::<Vpc>(vpc_id)?.is_none() {
            return Err(unknown_vpc());
        }
        // spec 5.2 and 13: one egress-only gateway per VPC at a time.
        if let Some(other) = tx
            .list::<EgressOnlyInternetGateway>()?
            .into_iter()
            .find(|g| g.vpc_id == vpc_id)
        {
            return Err(ApiError::new(
                "Resource.AlreadyAssociated",
                format!(
                    "Resource {vpc_id} already has egress-only internet gateway {}; a VPC has at most one.",
                    other.id
                ),
            ));
        }
        let eigw = EgressOnlyInternetGateway {
            id: new_id(ResourceKind::EgressOnlyInternetGateway),
            owner_id: ctx.account.id.clone(),
            vpc_id: vpc_id.to_owned(),
            tags: tags.clone(),
        };
        tx.put(&eigw)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&eigw))?;
        Ok(eigw)
    })?;
    Ok(Xml::response(
        "CreateEgressOnlyInternetGateway",
        ctx.request_id,
        |x| {
            x.opt("clientToken", token.as_ref().map(ClientToken::token))
                .node("egressOnlyInternetGateway", |x| eigw.write(x));
        },
    ))
}

/// A named gateway that does not exist (a deleted one) is left out rather
/// than failing the call: moto answers so, and Terraform's provider reads an
/// empty answer, not an error code, as "gone" for this action alone.
pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_skipping_missing::<EgressOnlyInternetGateway>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeEgressOnlyInternetGateways",
            ids: "EgressOnlyInternetGatewayId",
            set: "egressOnlyInternetGatewaySet",
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("EgressOnlyInternetGatewayId")?;
    check_id(ResourceKind::EgressOnlyInternetGateway, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        tx.load::<EgressOnlyInternetGateway>(id)?;
        tx.delete::<EgressOnlyInternetGateway>(id);
        Ok(())
    })?;
    Ok(Xml::response(
        "DeleteEgressOnlyInternetGateway",
        ctx.request_id,
        |x| {
            x.elem("returnCode", true);
        },
    ))
}
