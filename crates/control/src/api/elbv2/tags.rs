//! ELBv2 AddTags, RemoveTags and DescribeTags on load balancers and target
//! groups (spec 12.1's limit of 50 tags per resource).

use super::records::{find_lb, find_tg};
use super::{answer, tags, validation};
use crate::api::actions::Ctx;
use crate::api::actions::resource::{Tx, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;

/// spec 12.1: at most 50 tags per resource.
const MAX_TAGS: usize = 50;

/// Runs `edit` on the tags of the load balancer or target group `arn` and
/// stores the result; returns the tags.
fn with_tags(
    tx: &mut Tx,
    arn: &str,
    edit: impl FnOnce(&mut Vec<(String, String)>) -> Result<(), ApiError>,
) -> Result<Vec<(String, String)>, ApiError> {
    if arn.contains(":loadbalancer/") {
        let mut lb = find_lb(tx, arn)?;
        edit(&mut lb.tags)?;
        tx.put(&lb)?;
        Ok(lb.tags)
    } else if arn.contains(":targetgroup/") {
        let mut tg = find_tg(tx, arn)?;
        edit(&mut tg.tags)?;
        tx.put(&tg)?;
        Ok(tg.tags)
    } else {
        Err(validation(format!(
            "'{arn}' is not a load balancer or target group ARN: openvpc tags those two"
        )))
    }
}

fn resource_arns(params: &Params) -> Result<Vec<String>, ApiError> {
    let arns = params.list("ResourceArns.member")?;
    if arns.is_empty() {
        return Err(validation("At least one resource ARN must be specified"));
    }
    Ok(arns)
}

pub(super) fn add_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let new = tags(params)?;
    transact(ctx, |tx| {
        for arn in &arns {
            with_tags(tx, arn, |tags| {
                for (k, v) in &new {
                    // A key given again takes the new value.
                    match tags.iter_mut().find(|(key, _)| key == k) {
                        Some(t) => t.1 = v.clone(),
                        None => tags.push((k.clone(), v.clone())),
                    }
                }
                if tags.len() > MAX_TAGS {
                    return Err(ApiError::new(
                        "TooManyTags",
                        format!("A resource can have at most {MAX_TAGS} tags"),
                    ));
                }
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(answer(ctx, "AddTags", |_| {}))
}

pub(super) fn remove_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let keys = params.list("TagKeys.member")?;
    transact(ctx, |tx| {
        for arn in &arns {
            with_tags(tx, arn, |tags| {
                tags.retain(|(k, _)| !keys.contains(k));
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(answer(ctx, "RemoveTags", |_| {}))
}

pub(super) fn describe_tags(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = resource_arns(params)?;
    let rows = transact(ctx, |tx| {
        arns.iter()
            .map(|arn| Ok((arn.clone(), with_tags(tx, arn, |_| Ok(()))?)))
            .collect::<Result<Vec<_>, ApiError>>()
    })?;
    Ok(answer(ctx, "DescribeTags", |x| {
        x.members("TagDescriptions", &rows, |x, (arn, tags)| {
            x.elem("ResourceArn", arn);
            x.members("Tags", tags, |x, (k, v)| {
                x.elem("Key", k).elem("Value", v);
            });
        });
    }))
}
