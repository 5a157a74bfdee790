//! Managed prefix lists (spec 3.1, 11, 13; `pl-`): the customer-managed lists
//! of an account (CreateManagedPrefixList, DescribeManagedPrefixLists,
//! GetManagedPrefixListEntries, ModifyManagedPrefixList,
//! DeleteManagedPrefixList) and the AWS-managed lists of the S3 and DynamoDB
//! gateway endpoints (DescribePrefixLists, and DescribeManagedPrefixLists
//! with owner `AWS`), plus the lookups security groups, routes and VPC
//! endpoints use to name a list.
//!
//! AWS-managed lists are not stored: they are the same for every account of
//! a region, with an ID derived from the region and service, so they cannot
//! be changed, deleted or raced. Their CIDRs come from the documentation
//! range 192.0.2.0/24 (RFC 5737), which the EIP pool (198.51.100.0/24,
//! 203.0.113.0/24) does not use, so the dataplane can serve them locally.
//!
//! Every change to a customer list's entries makes a new version; all
//! versions are kept so that GetManagedPrefixListEntries can read an old one.

use openvpc_model::lifecycle::PrefixListState;
use openvpc_model::{Ipv4Cidr, ResourceKind};

use super::idempotency::{self, ClientToken};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_with, filters_match, new_id, transact,
    write_tags,
};
use super::route_table::{Destination, Ipv6Cidr, RouteTable};
use super::security_group::groups_in;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::prefix_list::{
    AWS_OWNER, Entry, GATEWAY_SERVICES, PrefixList, aws_list_for, aws_lists, service_name,
};

/// spec 13: customer-managed prefix lists per region.
pub const PREFIX_LIST_QUOTA: usize = 100;
/// spec 13: entries per customer-managed list.
pub const MAX_ENTRIES: u32 = 1000;
/// Name and description lengths AWS allows.
const MAX_TEXT: usize = 255;

impl Resource for PrefixList {
    const KIND: ResourceKind = ResourceKind::PrefixList;
    const NOT_FOUND: &'static str = "InvalidPrefixListID.NotFound";
    const NOUN: &'static str = "prefix list";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "prefix-list-id" => vec![self.id.clone()],
            "prefix-list-name" => vec![self.name.clone()],
            "owner-id" => vec![self.owner_id.clone()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("prefixListId", &self.id)
            .elem("addressFamily", &self.address_family)
            .elem("state", self.state)
            .opt("stateMessage", self.state_message.as_deref())
            .elem("prefixListArn", self.arn())
            .elem("prefixListName", &self.name);
        // AWS shows neither a size nor a version for its own lists.
        if !self.aws_managed {
            x.elem("maxEntries", self.max_entries)
                .elem("version", self.version());
        }
        write_tags(x, &self.tags);
        x.elem("ownerId", &self.owner_id);
    }
}

/// The prefix-list actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateManagedPrefixList" => create(ctx, params),
        "DescribeManagedPrefixLists" => describe(ctx, params),
        "GetManagedPrefixListEntries" => get_entries(ctx, params),
        "ModifyManagedPrefixList" => modify(ctx, params),
        "DeleteManagedPrefixList" => delete(ctx, params),
        "DescribePrefixLists" => describe_aws(ctx, params),
        _ => return None,
    })
}

/// The error for a list ID that names nothing.
pub fn not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidPrefixListID.NotFound",
        format!("The prefix list ID '{id}' does not exist"),
    )
}

/// The list with this ID as a transaction sees it: an AWS-managed list of
/// the region or a list of the account.
pub fn find(tx: &mut Tx, id: &str) -> Result<Option<PrefixList>, ApiError> {
    if let Some(l) = aws_lists(tx.ctx().region).into_iter().find(|l| l.id == id) {
        return Ok(Some(l));
    }
    tx.get::<PrefixList>(id)
}

/// A CIDR of the list's family, in canonical form.
fn entry_cidr(family: &str, text: &str) -> Result<String, ApiError> {
    let parsed = if family == "IPv6" {
        text.parse::<Ipv6Cidr>().ok().map(|c| c.to_string())
    } else {
        text.parse::<Ipv4Cidr>().ok().map(|c| c.to_string())
    };
    parsed.ok_or_else(|| {
        ApiError::invalid_value(
            "Cidr",
            text,
            &format!("This is not a valid {family} CIDR block."),
        )
    })
}

/// `Prefix.N.Cidr` with optional `Prefix.N.Description`.
fn entries_param(params: &Params, prefix: &str, family: &str) -> Result<Vec<Entry>, ApiError> {
    let mut out: Vec<Entry> = Vec::new();
    for e in params.structs(prefix)? {
        let cidr = entry_cidr(
            family,
            e.required("Cidr")
                .map_err(|_| ApiError::missing_parameter(&format!("{prefix}.N.Cidr")))?,
        )?;
        let description = e.get("Description").map(str::to_owned);
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_TEXT)
        {
            return Err(ApiError::invalid_value(
                "Description",
                description.as_deref().unwrap_or_default(),
                "Descriptions are at most 255 characters long.",
            ));
        }
        if out.iter().any(|o| o.cidr == cidr) {
            return Err(ApiError::invalid_value(
                prefix,
                &cidr,
                "The CIDR is given more than once.",
            ));
        }
        out.push(Entry { cidr, description });
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.chars().count() > MAX_TEXT {
        return Err(ApiError::invalid_value(
            "PrefixListName",
            name,
            "Names are 1 to 255 characters long.",
        ));
    }
    // The prefix is AWS's, for its own lists.
    if name.starts_with("com.amazonaws") {
        return Err(ApiError::invalid_value(
            "PrefixListName",
            name,
            "Names may not start with 'com.amazonaws'.",
        ));
    }
    Ok(())
}

fn check_max_entries(n: i64) -> Result<u32, ApiError> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_ENTRIES).contains(n))
        .ok_or_else(|| {
            ApiError::invalid_value(
                "MaxEntries",
                &n.to_string(),
                "The maximum number of entries is from 1 to 1000.",
            )
        })
}

fn too_many(id: &str, max: u32) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!(
            "The prefix list {id} would have more than its maximum of {max} entries; raise MaxEntries first."
        ),
    )
}

fn response(ctx: &Ctx, action: &str, list: &PrefixList) -> String {
    Xml::response(action, ctx.request_id, |x| {
        x.node("prefixList", |x| list.write(x));
    })
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let name = params.required("PrefixListName")?;
    check_name(name)?;
    let max_entries = check_max_entries(
        params
            .number::<i64>("MaxEntries")?
            .ok_or_else(|| ApiError::missing_parameter("MaxEntries"))?,
    )?;
    let family = params.required("AddressFamily")?;
    if !matches!(family, "IPv4" | "IPv6") {
        // moto takes any family; AWS takes these two (spec 11).
        return Err(ApiError::invalid_value(
            "AddressFamily",
            family,
            "Use IPv4 or IPv6.",
        ));
    }
    let entries = entries_param(params, "Entry", family)?;
    if entries.len() > max_entries as usize {
        return Err(too_many(name, max_entries));
    }
    let tags: Tags = tags_for(params, "prefix-list")?;
    let token = ClientToken::of(params, "CreateManagedPrefixList")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let list = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first list.
        if let Some(list) = idempotency::earlier_one::<PrefixList>(tx, token.as_ref())? {
            return Ok(list);
        }
        if tx.list::<PrefixList>()?.len() >= PREFIX_LIST_QUOTA {
            return Err(ApiError::new(
                "PrefixListLimitExceeded",
                format!(
                    "The maximum number of prefix lists has been reached ({PREFIX_LIST_QUOTA} per region). Delete a list or ask for a higher quota."
                ),
            ));
        }
        let list = PrefixList {
            id: new_id(ResourceKind::PrefixList),
            owner_id: ctx.account.id.clone(),
            name: name.to_owned(),
            address_family: family.to_owned(),
            max_entries,
            versions: vec![entries.clone()],
            state: PrefixListState::CreateComplete,
            state_message: None,
            region: ctx.region.to_owned(),
            aws_managed: false,
            tags: tags.clone(),
        };
        tx.put(&list)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&list))?;
        Ok(list)
    })?;
    // CreateManagedPrefixList's answer has no clientToken (botocore's model).
    Ok(response(ctx, "CreateManagedPrefixList", &list))
}

/// The AWS-managed lists and the account's, sorted by ID.
fn all_lists(tx: &mut Tx) -> Result<Vec<PrefixList>, ApiError> {
    let mut lists = aws_lists(tx.ctx().region);
    lists.extend(tx.list::<PrefixList>()?);
    lists.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(lists)
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_with::<PrefixList>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeManagedPrefixLists",
            ids: "PrefixListId",
            set: "prefixListSet",
        },
        |_| true,
        all_lists,
    )
}

/// spec 11: DescribePrefixLists shows the AWS-managed lists, with their CIDRs.
pub fn describe_aws(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("PrefixListId")?;
    for id in &ids {
        check_id(ResourceKind::PrefixList, id)?;
    }
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let lists = aws_lists(ctx.region);
    if let Some(missing) = ids.iter().find(|id| !lists.iter().any(|l| &l.id == *id)) {
        return Err(not_found(missing));
    }
    let mut shown = Vec::new();
    for l in lists {
        if !ids.is_empty() && !ids.contains(&l.id) {
            continue;
        }
        if filters_match(&l, &filters, |l, name| match name {
            "prefix-list-id" | "prefix-list-name" => l.filter_values(name),
            _ => None,
        })? {
            shown.push(l);
        }
    }
    Ok(Xml::response("DescribePrefixLists", ctx.request_id, |x| {
        x.list("prefixListSet", &shown, |x, l| {
            x.elem("prefixListId", &l.id)
                .elem("prefixListName", &l.name)
                .list("cidrSet", l.entries(), |x, e| {
                    x.text(&e.cidr);
                });
        });
    }))
}

pub fn get_entries(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("PrefixListId")?;
    check_id(ResourceKind::PrefixList, id)?;
    let target = params.number::<i64>("TargetVersion")?;
    let max = params.max_results(1..=100)?;
    let start: usize = match params.get("NextToken") {
        None => 0,
        Some(t) => t
            .strip_prefix("v1.")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidNextToken",
                    format!(
                        "The token '{t}' is invalid: pass the nextToken of a previous response"
                    ),
                )
            })?,
    };
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let list = transact(ctx, |tx| find(tx, id)?.ok_or_else(|| not_found(id)))?;
    let entries: &[Entry] = match target {
        None => list.entries(),
        Some(v) => usize::try_from(v)
            .ok()
            .and_then(|v| v.checked_sub(1))
            .and_then(|i| list.versions.get(i))
            .filter(|_| !list.aws_managed)
            .map(Vec::as_slice)
            .ok_or_else(|| {
                ApiError::invalid_value(
                    "TargetVersion",
                    &v.to_string(),
                    &format!("The prefix list {id} has versions 1 to {}.", list.version()),
                )
            })?,
    };
    let rest = entries.get(start..).unwrap_or_default();
    let (page, next) = match max {
        Some(m) if rest.len() > m as usize => (&rest[..m as usize], Some(start + m as usize)),
        _ => (rest, None),
    };
    Ok(Xml::response(
        "GetManagedPrefixListEntries",
        ctx.request_id,
        |x| {
            x.list("entrySet", page, |x, e| {
                x.elem("cidr", &e.cidr)
                    .opt("description", e.description.as_deref());
            })
            .opt("nextToken", next.map(|n| format!("v1.{n}")));
        },
    ))
}

/// A customer-managed list of the account, for a change: AWS's own lists
/// cannot be changed.
fn load_own(tx: &mut Tx, id: &str) -> Result<PrefixList, ApiError> {
    let list = find(tx, id)?.ok_or_else(|| not_found(id))?;
    if list.aws_managed {
        return Err(ApiError::new(
            "OperationNotPermitted",
            format!("The prefix list {id} is managed by AWS and cannot be changed."),
        ));
    }
    Ok(list)
}

pub fn modify(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("PrefixListId")?;
    check_id(ResourceKind::PrefixList, id)?;
    let current = params.number::<i64>("CurrentVersion")?;
    let name = params.get("PrefixListName");
    if let Some(n) = name {
        check_name(n)?;
    }
    let max_entries = params
        .number::<i64>("MaxEntries")?
        .map(check_max_entries)
        .transpose()?;
    let has_entries = params.structs("AddEntry")?.len() + params.structs("RemoveEntry")?.len() > 0;
    if max_entries.is_some() && has_entries {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "MaxEntries cannot be changed in the same request as the entries.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let list = transact(ctx, |tx| {
        let mut list = load_own(tx, id)?;
        // Optimistic concurrency for clients: a stale version is refused.
        if let Some(v) = current
            && v != list.version() as i64
        {
            return Err(ApiError::new(
                "PrefixListVersionMismatch",
                format!(
                    "The prefix list {id} is at version {}, not {v}; read it again and retry.",
                    list.version()
                ),
            ));
        }
        if let Some(n) = name {
            n.clone_into(&mut list.name);
        }
        if has_entries {
            let add = entries_param(params, "AddEntry", &list.address_family)?;
            let remove: Vec<String> = params
                .structs("RemoveEntry")?
                .iter()
                .map(|e| {
                    entry_cidr(
                        &list.address_family,
                        e.required("Cidr")
                            .map_err(|_| ApiError::missing_parameter("RemoveEntry.N.Cidr"))?,
                    )
                })
                .collect::<Result<_, _>>()?;
            let mut entries = list.entries().to_vec();
            for cidr in &remove {
                if add.iter().any(|a| &a.cidr == cidr) {
                    return Err(ApiError::new(
                        "InvalidParameterCombination",
                        format!("The CIDR {cidr} is both added and removed."),
                    ));
                }
                let before = entries.len();
                entries.retain(|e| &e.cidr != cidr);
                if entries.len() == before {
                    return Err(ApiError::invalid_value(
                        "RemoveEntry",
                        cidr,
                        &format!("The prefix list {id} has no entry for this CIDR."),
                    ));
                }
            }
            for a in add {
                // Adding a CIDR the list has replaces its description.
                match entries.iter_mut().find(|e| e.cidr == a.cidr) {
                    Some(e) => e.description = a.description,
                    None => entries.push(a),
                }
            }
            if entries.len() > list.max_entries as usize {
                return Err(too_many(id, list.max_entries));
            }
            list.versions.push(entries);
        }
        if let Some(m) = max_entries {
            if (m as usize) < list.entries().len() {
                return Err(too_many(id, m));
            }
            list.max_entries = m;
            // spec 3.1: a list weighs its max entries in every group that
            // names it, so a bigger list must still fit their quotas.
            for g in groups_in(tx)? {
                super::security_group::check_quota_with(tx, &g, &list)?;
            }
        }
        list.state = PrefixListState::ModifyComplete;
        list.state_message = None;
        tx.put(&list)?;
        Ok(list)
    })?;
    Ok(response(ctx, "ModifyManagedPrefixList", &list))
}

/// AWS deletes a list asynchronously: the call is accepted
/// (`delete-in-progress`) even while a security group rule or a route
/// names the list; the delete then fails and the list stays, in
/// `delete-failed` with a `stateMessage` naming the reference, until it is
/// deleted again once nothing names it. (The API reference only says to
/// remove references first; moto's aws_verified
/// test_authorize_security_group_rules_with_different_ipranges_or_prefixes
/// deletes a list its group still names without an error, and Terraform
/// users meet `delete-failed`, terraform-provider-aws#20991.)
pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("PrefixListId")?;
    check_id(ResourceKind::PrefixList, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (list, deleted) = transact(ctx, |tx| {
        let mut list = load_own(tx, id)?;
        let in_rule = groups_in(tx)?.iter().any(|g| g.references_prefix_list(id));
        let in_route = tx.list::<RouteTable>()?.iter().any(|t| {
            t.routes
                .iter()
                .any(|r| r.destination == Destination::PrefixList(id.to_owned()))
        });
        if in_rule || in_route {
            list.state = PrefixListState::DeleteFailed;
            list.state_message = Some(format!(
                "The prefix list {id} is referenced by a {}; remove the reference, then delete it again.",
                if in_rule {
                    "security group rule"
                } else {
                    "route"
                }
            ));
            tx.put(&list)?;
            return Ok((list, false));
        }
        tx.delete::<PrefixList>(id);
        Ok((list, true))
    })?;
    let shown = PrefixList {
        state: if deleted {
            PrefixListState::DeleteComplete
        } else {
            PrefixListState::DeleteInProgress
        },
        state_message: None,
        ..list
    };
    Ok(response(ctx, "DeleteManagedPrefixList", &shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec 11: AWS-managed lists have fixed, well-formed IDs per region.
    #[test]
    fn aws_list_ids_are_fixed_per_region() {
        let a = aws_lists("us-east-1");
        assert_eq!(a, aws_lists("us-east-1"));
        assert_ne!(a[0].id, aws_lists("eu-west-1")[0].id);
        for l in &a {
            assert!(check_id(ResourceKind::PrefixList, &l.id).is_ok());
            assert_eq!(l.id.len(), 3 + 8);
        }
    }
}
