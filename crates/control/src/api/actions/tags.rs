//! CreateTags, DeleteTags and DescribeTags (spec 12.1, 13): tags on any stored
//! resource, whatever module owns it. A resource is found by its ID alone:
//! the prefix names its kind, the kind's store segment holds its record, and
//! every record keeps its tags in a top-level `"tags": [[key, value], …]`
//! field, which these actions edit as JSON without knowing the rest.
//!
//! [`taggable`] is the one table of what each kind is called in DescribeTags
//! and which code answers an ID that names nothing.
//!
//! Security-group rules are the one exception to "a record per resource":
//! a rule's tags sit in its object inside its group's `ingress` or `egress`
//! list, so the rule's group is found by scanning the groups.

use std::collections::BTreeSet;

use openvpc_model::{ResourceId, ResourceKind};
use serde_json::Value;

use super::Ctx;
use super::resource::{Tags, Tx, ok_return, segment, tag_filter_values, to_json, transact};
use crate::api::error::ApiError;
use crate::api::filter::Filter;
use crate::api::query::{MAX_TAGS, Params};
use crate::api::xml::Xml;

/// The tag actions.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateTags" => create(ctx, params),
        "DeleteTags" => delete(ctx, params),
        "DescribeTags" => describe(ctx, params),
        _ => return None,
    })
}

/// A kind that carries tags in its own record: its `resourceType` in
/// DescribeTags and the error code for an ID of it that names nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taggable {
    pub resource_type: &'static str,
    pub not_found: &'static str,
}

const fn t(resource_type: &'static str, not_found: &'static str) -> Option<Taggable> {
    Some(Taggable {
        resource_type,
        not_found,
    })
}

/// What the tag actions know of each kind (EC2's resource types; moto's
/// NotFound codes, which are EC2's). `None` for kinds that are not tagged on
/// their own record: associations and attachments, and security-group rules,
/// which live inside their group's record (tagged there, see `RULE_ROW`).
/// The match is exhaustive so that a new
/// kind cannot be added without deciding its row.
pub const fn taggable(kind: ResourceKind) -> Option<Taggable> {
    use ResourceKind as K;
    match kind {
        K::Vpc => t("vpc", "InvalidVpcID.NotFound"),
        K::Subnet => t("subnet", "InvalidSubnetID.NotFound"),
        K::RouteTable => t("route-table", "InvalidRouteTableID.NotFound"),
        K::NetworkAcl => t("network-acl", "InvalidNetworkAclID.NotFound"),
        K::SecurityGroup => t("security-group", "InvalidGroup.NotFound"),
        K::InternetGateway => t("internet-gateway", "InvalidInternetGatewayID.NotFound"),
        K::EgressOnlyInternetGateway => {
            t("egress-only-internet-gateway", "InvalidGatewayID.NotFound")
        }
        K::NatGateway => t("natgateway", "NatGatewayNotFound"),
        K::ElasticIpAllocation => t("elastic-ip", "InvalidAllocationID.NotFound"),
        K::VpcPeeringConnection => t(
            "vpc-peering-connection",
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        K::FlowLog => t("vpc-flow-log", "InvalidFlowLogId.NotFound"),
        K::CustomerGateway => t("customer-gateway", "InvalidCustomerGatewayID.NotFound"),
        K::VpnGateway => t("vpn-gateway", "InvalidVpnGatewayID.NotFound"),
        K::VpnConnection => t("vpn-connection", "InvalidVpnConnectionID.NotFound"),
        K::VpcEndpoint => t("vpc-endpoint", "InvalidVpcEndpointId.NotFound"),
        K::PrefixList => t("prefix-list", "InvalidPrefixListID.NotFound"),
        K::NetworkInterface => t("network-interface", "InvalidNetworkInterfaceID.NotFound"),
        K::DhcpOptions => t("dhcp-options", "InvalidDhcpOptionID.NotFound"),
        K::Instance => t("instance", "InvalidInstanceID.NotFound"),
        K::TransitGateway => t("transit-gateway", "InvalidTransitGatewayID.NotFound"),
        K::NetworkInsightsPath => t(
            "network-insights-path",
            "InvalidNetworkInsightsPathId.NotFound",
        ),
        K::NetworkInsightsAnalysis => t(
            "network-insights-analysis",
            "InvalidNetworkInsightsAnalysisId.NotFound",
        ),
        K::VpcCidrAssociation
        | K::SubnetCidrAssociation
        | K::RouteTableAssociation
        | K::NetworkAclAssociation
        | K::SecurityGroupRule
        | K::ElasticIpAssociation
        | K::NetworkInterfaceAttachment => None,
    }
}

/// Security-group rules: tagged inside their group's record (see above).
const RULE_ROW: Taggable = Taggable {
    resource_type: "security-group-rule",
    not_found: "InvalidSecurityGroupRuleId.NotFound",
};

/// The rule lists of a security-group record.
const RULE_LISTS: [&str; 2] = ["ingress", "egress"];

fn invalid_id(id: &str) -> ApiError {
    ApiError::new(
        "InvalidID",
        format!("The ID '{id}' is not valid: name a taggable resource such as vpc-… or sg-…"),
    )
}

/// `ResourceId.N`: at least one, each the well-formed ID of a taggable kind
/// (anything else is `InvalidID`, as EC2 answers), without repeats.
fn resources(params: &Params) -> Result<Vec<(ResourceKind, Taggable, String)>, ApiError> {
    let ids = params.list("ResourceId")?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("ResourceId.N"));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for id in ids {
        let parsed: ResourceId = id.parse().map_err(|_| invalid_id(&id))?;
        let kind = parsed.kind();
        let row = match kind {
            ResourceKind::SecurityGroupRule => RULE_ROW,
            _ => taggable(kind).ok_or_else(|| invalid_id(&id))?,
        };
        if seen.insert(id.clone()) {
            out.push((kind, row, id));
        }
    }
    Ok(out)
}

fn not_found(row: Taggable, id: &str) -> ApiError {
    ApiError::new(
        row.not_found,
        format!(
            "The {} ID '{id}' does not exist",
            row.resource_type.replace('-', " ")
        ),
    )
}

fn unreadable(id: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("The stored record of {id} is unreadable: {why}"))
}

/// The record's tags; a record without the field has none.
fn read_tags(record: &Value, id: &str) -> Result<Tags, ApiError> {
    match record.get("tags") {
        None | Some(Value::Null) => Ok(Tags::new()),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| unreadable(id, e)),
    }
}

/// Runs `edit` on the tags of every named resource in one transaction: all
/// resources change or none does.
fn edit_tags(
    ctx: &Ctx,
    targets: &[(ResourceKind, Taggable, String)],
    edit: impl Fn(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    transact(ctx, |tx| {
        for (kind, row, id) in targets {
            if *kind == ResourceKind::SecurityGroupRule {
                edit_rule_tags(tx, id, &edit)?;
                continue;
            }
            let key = ctx.key(segment(*kind), id);
            let raw = tx.get_raw(&key)?.ok_or_else(|| not_found(*row, id))?;
            let mut record: Value = serde_json::from_slice(&raw).map_err(|e| unreadable(id, e))?;
            let mut tags = read_tags(&record, id)?;
            edit(&mut tags)?;
            let Some(fields) = record.as_object_mut() else {
                return Err(unreadable(id, "not a JSON object"));
            };
            fields.insert(
                "tags".into(),
                serde_json::to_value(&tags).map_err(|e| unreadable(id, e))?,
            );
            tx.put_raw(key, to_json(&record)?);
        }
        Ok(())
    })
}

/// Runs `edit` on the tags of the security-group rule `id`, in its group.
fn edit_rule_tags(
    tx: &mut Tx,
    id: &str,
    edit: &impl Fn(&mut Tags) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let prefix = tx.ctx().prefix(segment(ResourceKind::SecurityGroup));
    for (key, raw) in tx.range_raw(&prefix)? {
        let mut record: Value = serde_json::from_slice(&raw).map_err(|e| unreadable(id, e))?;
        let place = RULE_LISTS.iter().find_map(|list| {
            let rules = record.get(*list)?.as_array()?;
            let i = rules
                .iter()
                .position(|r| r.get("id").and_then(Value::as_str) == Some(id))?;
            Some((*list, i))
        });
        let Some(rule) = place.and_then(|(list, i)| record.get_mut(list)?.get_mut(i)) else {
            continue;
        };
        let mut tags = read_tags(rule, id)?;
        edit(&mut tags)?;
        let Some(fields) = rule.as_object_mut() else {
            return Err(unreadable(id, "a rule is not a JSON object"));
        };
        fields.insert(
            "tags".into(),
            serde_json::to_value(&tags).map_err(|e| unreadable(id, e))?,
        );
        tx.put_raw(key, to_json(&record)?);
        return Ok(());
    }
    Err(not_found(RULE_ROW, id))
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let targets = resources(params)?;
    let new = params.tags("Tag")?;
    if new.is_empty() {
        return Err(ApiError::missing_parameter("Tag.N"));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    edit_tags(ctx, &targets, |tags| {
        // A key already present takes the new value in place.
        for tag in &new {
            match tags.iter_mut().find(|(k, _)| *k == tag.key) {
                Some((_, v)) => v.clone_from(&tag.value),
                None => tags.push((tag.key.clone(), tag.value.clone())),
            }
        }
        // spec 12.1 and 13: 50 tags per resource, counting those it had.
        if tags.len() > MAX_TAGS {
            return Err(ApiError::new(
                "TagLimitExceeded",
                format!(
                    "The maximum number of Tags for a resource has been reached ({MAX_TAGS}); delete some before adding more."
                ),
            ));
        }
        Ok(())
    })?;
    Ok(ok_return(ctx, "CreateTags"))
}

/// One `Tag.N` of DeleteTags: a key, and a value that must also match when
/// given (an empty `Value` matches only an empty value).
#[derive(Debug)]
struct Removal {
    key: String,
    value: Option<String>,
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let targets = resources(params)?;
    let removals = params
        .structs("Tag")?
        .into_iter()
        .map(|t| {
            Ok(Removal {
                key: t
                    .required("Key")
                    .map_err(|_| ApiError::missing_parameter("Tag.N.Key"))?
                    .to_owned(),
                value: t.get("Value").map(str::to_owned),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    edit_tags(ctx, &targets, |tags| {
        // No Tag.N at all removes every tag, as EC2 does.
        if removals.is_empty() {
            tags.clear();
        }
        tags.retain(|(k, v)| {
            !removals
                .iter()
                .any(|r| r.key == *k && r.value.as_ref().is_none_or(|want| want == v))
        });
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteTags"))
}

/// One row of DescribeTags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct TagRow {
    resource_id: String,
    key: String,
    value: String,
    resource_type: &'static str,
}

/// spec 12.1: DescribeTags filters; `tag:Key` selects whole resources, the
/// others single tags. An unknown name is `InvalidParameterValue`.
fn row_matches(row: &TagRow, resource_tags: &Tags, filters: &[Filter]) -> Result<bool, ApiError> {
    for f in filters {
        let values = match f.name.as_str() {
            "key" => vec![row.key.clone()],
            "value" => vec![row.value.clone()],
            "resource-id" => vec![row.resource_id.clone()],
            "resource-type" => vec![row.resource_type.to_owned()],
            name if name.starts_with("tag:") => {
                tag_filter_values(resource_tags, name).unwrap_or_default()
            }
            other => {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The filter '{other}' is invalid: DescribeTags filters on key, value, resource-id, resource-type and tag:<key>"
                    ),
                ));
            }
        };
        if !f.matches(values.iter().map(String::as_str)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Tokens name the last row returned: `v1.{resource id}.{key in hex}`.
fn encode_token(row: &TagRow) -> String {
    format!("v1.{}.{}", row.resource_id, hex::encode(&row.key))
}

fn decode_token(token: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::new(
            "InvalidNextToken",
            format!("The token '{token}' is invalid: pass the nextToken of a previous response"),
        )
    };
    let (id, key) = token
        .strip_prefix("v1.")
        .and_then(|rest| rest.split_once('.'))
        .ok_or_else(bad)?;
    id.parse::<ResourceId>().map_err(|_| bad())?;
    let key = hex::decode(key).map_err(|_| bad())?;
    let key = String::from_utf8(key).map_err(|_| bad())?;
    Ok((id.to_owned(), key))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let filters = params.filters()?;
    let max = params.max_results(5..=1000)?;
    let after = params.get("NextToken").map(decode_token).transpose()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let records = transact(ctx, |tx| {
        let mut records = Vec::new();
        for kind in ResourceKind::ALL {
            let Some(row) = taggable(*kind) else {
                continue;
            };
            let prefix = ctx.prefix(segment(*kind));
            for (key, value) in tx.range_raw(&prefix)? {
                if let Some(suffix) = key.strip_prefix(prefix.as_slice()) {
                    records.push((*kind, row, suffix.to_vec(), value));
                }
            }
        }
        Ok(records)
    })?;
    let mut rows = Vec::new();
    for (kind, taggable, suffix, value) in records {
        // Only a resource's own record: `{segment}/{id}`, where the ID parses
        // as this kind. Anything else a module keeps under its segment is
        // not a resource and carries no tags.
        let Ok(id) = String::from_utf8(suffix) else {
            continue;
        };
        if ResourceId::parse(kind, &id).is_err() {
            continue;
        }
        let record: Value = serde_json::from_slice(&value).map_err(|e| unreadable(&id, e))?;
        let mut tagged = vec![(id.clone(), taggable, read_tags(&record, &id)?)];
        // A group's rules carry their own tags (see the module comment).
        if kind == ResourceKind::SecurityGroup {
            for rule in RULE_LISTS
                .iter()
                .filter_map(|list| record.get(*list)?.as_array())
                .flatten()
            {
                if let Some(rule_id) = rule.get("id").and_then(Value::as_str) {
                    tagged.push((rule_id.to_owned(), RULE_ROW, read_tags(rule, rule_id)?));
                }
            }
        }
        for (id, taggable, tags) in tagged {
            for (key, value) in &tags {
                let row = TagRow {
                    resource_id: id.clone(),
                    key: key.clone(),
                    value: value.clone(),
                    resource_type: taggable.resource_type,
                };
                let past_token = after
                    .as_ref()
                    .is_none_or(|(a_id, a_key)| (&row.resource_id, &row.key) > (a_id, a_key));
                if past_token && row_matches(&row, &tags, &filters)? {
                    rows.push(row);
                }
            }
        }
    }
    rows.sort();
    let next = match max {
        Some(max) if rows.len() > max as usize => {
            rows.truncate(max as usize);
            rows.last().map(encode_token)
        }
        _ => None,
    };
    Ok(Xml::response("DescribeTags", ctx.request_id, |x| {
        x.list("tagSet", &rows, |x, r| {
            x.elem("resourceId", &r.resource_id)
                .elem("resourceType", r.resource_type)
                .elem("key", &r.key)
                .elem("value", &r.value);
        })
        .opt("nextToken", next);
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::actions::egress_only_internet_gateway::EgressOnlyInternetGateway;
    use crate::api::actions::internet_gateway::InternetGateway;
    use crate::api::actions::resource::Resource;
    use crate::api::actions::vpc::Vpc;

    fn code_of<R: Resource>() -> Option<&'static str> {
        taggable(R::KIND).map(|t| t.not_found)
    }

    // The table and the resource modules must agree on NotFound codes.
    #[test]
    fn table_agrees_with_resource_modules() {
        assert_eq!(code_of::<Vpc>(), Some(Vpc::NOT_FOUND));
        assert_eq!(
            code_of::<InternetGateway>(),
            Some(InternetGateway::NOT_FOUND)
        );
        assert_eq!(
            code_of::<EgressOnlyInternetGateway>(),
            Some(EgressOnlyInternetGateway::NOT_FOUND)
        );
        // Security groups are stored under their ID prefix too.
        assert_eq!(segment(ResourceKind::SecurityGroup), "sg");
    }

    #[test]
    fn tokens_round_trip_any_key() {
        let row = TagRow {
            resource_id: "vpc-0123456789abcdef0".into(),
            key: "a.b/c d:é".into(),
            value: String::new(),
            resource_type: "vpc",
        };
        assert_eq!(
            decode_token(&encode_token(&row)).unwrap(),
            (row.resource_id.clone(), row.key.clone())
        );
        assert_eq!(
            decode_token("v1.nope").unwrap_err().code,
            "InvalidNextToken"
        );
    }
}
