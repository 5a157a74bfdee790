//! ClassicLink's VPC actions: DescribeVpcClassicLink,
//! DescribeVpcClassicLinkDnsSupport, EnableVpcClassicLink,
//! DisableVpcClassicLink, EnableVpcClassicLinkDnsSupport and
//! DisableVpcClassicLinkDnsSupport.
//!
//! AWS retired EC2-Classic in August 2023, and with it ClassicLink: no
//! instance can be linked to a VPC any more. What is left is what AWS
//! answers for VPCs today, and all openvpc answers: the describes show every
//! VPC with ClassicLink and its DNS support off; enabling either fails with
//! `UnsupportedOperation` [U: the exact code AWS gives since the
//! retirement]; disabling, which leaves the VPC as it is, succeeds. Each
//! action still checks its VPC IDs, DryRun and (describes) filters and
//! pagination like any other, so a caller that probes them gets the usual
//! errors.

use openvpc_model::ResourceKind;

use super::Ctx;
use super::resource::{
    check_described_id, check_id, filters_match, next_token, not_found, ok_return, page,
    tag_filter_values, transact, write_tags,
};
use super::vpc::Vpc;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;

/// The ClassicLink actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "DescribeVpcClassicLink" => describe(ctx, params),
        "DescribeVpcClassicLinkDnsSupport" => describe_dns_support(ctx, params),
        "EnableVpcClassicLink" => enable(ctx, params, "EnableVpcClassicLink"),
        "EnableVpcClassicLinkDnsSupport" => enable(ctx, params, "EnableVpcClassicLinkDnsSupport"),
        "DisableVpcClassicLink" => disable(ctx, params, "DisableVpcClassicLink"),
        "DisableVpcClassicLinkDnsSupport" => {
            disable(ctx, params, "DisableVpcClassicLinkDnsSupport")
        }
        _ => return None,
    })
}

/// The account's VPCs named by `ids` (each must exist), or all of them.
fn vpcs(ctx: &Ctx, ids: &[String]) -> Result<Vec<Vpc>, ApiError> {
    let all = transact(ctx, |tx| tx.list::<Vpc>())?;
    if let Some(missing) = ids.iter().find(|id| !all.iter().any(|v| v.id == **id)) {
        return Err(not_found::<Vpc>(missing));
    }
    Ok(all
        .into_iter()
        .filter(|v| ids.is_empty() || ids.contains(&v.id))
        .collect())
}

fn vpc_ids(params: &Params, name: &str) -> Result<Vec<String>, ApiError> {
    let ids = params.list(name)?;
    for id in &ids {
        check_described_id(ResourceKind::Vpc, id)?;
    }
    Ok(ids)
}

/// DescribeVpcClassicLink: `VpcId.N` and filters (`is-classic-link-enabled`
/// and the tag filters); no pagination.
pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = vpc_ids(params, "VpcId")?;
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let mut shown = Vec::new();
    for v in vpcs(ctx, &ids)? {
        let keep = filters_match(&v, &filters, |v, name| {
            if name == "is-classic-link-enabled" {
                return Some(vec!["false".to_owned()]);
            }
            tag_filter_values(&v.tags, name)
        })?;
        if keep {
            shown.push(v);
        }
    }
    Ok(Xml::response(
        "DescribeVpcClassicLink",
        ctx.request_id,
        |x| {
            x.list("vpcSet", &shown, |x, v| {
                x.elem("vpcId", &v.id).elem("classicLinkEnabled", false);
                write_tags(x, &v.tags);
            });
        },
    ))
}

/// DescribeVpcClassicLinkDnsSupport: `VpcIds.N`, `MaxResults` (5–255) and
/// `NextToken`.
pub fn describe_dns_support(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = vpc_ids(params, "VpcIds")?;
    let max = params.max_results(5..=255)?;
    let after = next_token(params, ResourceKind::Vpc)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let mut shown: Vec<Vpc> = vpcs(ctx, &ids)?
        .into_iter()
        .filter(|v| after.as_deref().is_none_or(|a| v.id.as_str() > a))
        .collect();
    let next = page(&mut shown, max, |v| &v.id);
    Ok(Xml::response(
        "DescribeVpcClassicLinkDnsSupport",
        ctx.request_id,
        |x| {
            x.list("vpcs", &shown, |x, v| {
                x.elem("vpcId", &v.id)
                    .elem("classicLinkDnsSupported", false);
            })
            .opt("nextToken", next);
        },
    ))
}

/// The VPC of an Enable or Disable call, which must exist.
fn target_vpc(ctx: &Ctx, params: &Params) -> Result<(), ApiError> {
    let id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| tx.load::<Vpc>(id)).map(drop)
}

/// EnableVpcClassicLink and EnableVpcClassicLinkDnsSupport: refused, as
/// there is no EC2-Classic left to link.
pub fn enable(ctx: &Ctx, params: &Params, action: &str) -> Result<String, ApiError> {
    target_vpc(ctx, params)?;
    Err(ApiError::new(
        "UnsupportedOperation",
        format!("{action} is not supported: EC2-Classic and ClassicLink have been retired."),
    ))
}

/// DisableVpcClassicLink and DisableVpcClassicLinkDnsSupport: ClassicLink
/// is always off, so there is nothing to undo.
pub fn disable(ctx: &Ctx, params: &Params, action: &str) -> Result<String, ApiError> {
    target_vpc(ctx, params)?;
    Ok(ok_return(ctx, action))
}
