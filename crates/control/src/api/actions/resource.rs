//! What every resource module shares: resources as typed JSON records in the
//! caller's key space ([`Resource`]), one optimistic transaction per action
//! ([`transact`] and [`Tx`]), and Describe with IDs, filters, pagination and
//! DryRun ([`describe`]).
//!
//! Concurrency: every committing transaction of an account rewrites the
//! account's fence key and commits only if the fence has not moved since the
//! transaction began, so the writes of one account are serialisable without
//! each action listing the keys it read: a CreateSubnet can never race the
//! DeleteVpc of its VPC. Keys outside the account (region-wide counters and
//! pools) are compared one by one. A transaction that loses a race runs again
//! from the start on fresh reads.

use std::collections::BTreeMap;

use openvpc_model::{ResourceId, ResourceKind};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Ctx, store_error};
use crate::api::error::ApiError;
use crate::api::filter::Filter;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::store::{Compare, KeyValue, Op, Txn, TxnResult};

/// Tags as stored on every resource: the type lives with the records.
pub use crate::records::Tags;

/// A kind of resource stored as one JSON record per ID under
/// `r/{account}/{region}/{prefix}/{id}`, where `prefix` is its ID prefix.
pub trait Resource: Serialize + DeserializeOwned {
    /// The kind of ID this resource has.
    const KIND: ResourceKind;
    /// The error code for an ID that names no resource of this kind.
    const NOT_FOUND: &'static str;
    /// What error messages call it ("subnet", "route table").
    const NOUN: &'static str;
    /// The `MaxResults` its Describe accepts: 5 to 1000 for most kinds.
    const MAX_RESULTS: std::ops::RangeInclusive<u32> = 5..=1000;

    fn id(&self) -> &str;
    fn tags(&self) -> &Tags;
    /// The resource's values for a filter other than the tag filters, or
    /// `None` for a filter name this resource does not know.
    fn filter_values(&self, name: &str) -> Option<Vec<String>>;
    /// The resource's members in a Describe response (inside its `<item>`).
    fn write(&self, x: &mut Xml);
}

/// What [`Tx`] needs to store a record: the segment its keys live under
/// (`r/{account}/{region}/{segment}/{key}`), what messages call it, and the
/// key of one record. Every [`Resource`] is one, under its ID prefix; the
/// ELBv2 records, whose IDs are ARNs rather than EC2 IDs, implement it
/// directly with segments of their own.
pub trait Record: Serialize + DeserializeOwned {
    /// The store segment of this kind of record.
    fn segment() -> &'static str;
    /// What error messages call it.
    fn noun() -> &'static str;
    /// The last part of this record's key.
    fn record_id(&self) -> &str;
}

impl<R: Resource> Record for R {
    fn segment() -> &'static str {
        segment(R::KIND)
    }

    fn noun() -> &'static str {
        R::NOUN
    }

    fn record_id(&self) -> &str {
        self.id()
    }
}

/// The store segment of a kind: its ID prefix.
pub fn segment(kind: ResourceKind) -> &'static str {
    kind.prefix()
}

/// Checks an ID's syntax, answering the kind's `.Malformed` code.
pub fn check_id(kind: ResourceKind, id: &str) -> Result<(), ApiError> {
    ResourceId::parse(kind, id)
        .map(drop)
        .map_err(|e| ApiError::new(e.code(), e.to_string()))
}

/// [`check_id`] as DescribeVpcs and DescribeSubnets apply it: EC2 answers
/// an ID with the kind's prefix but odd digits (`vpc-does_not_exist`) as one
/// that names nothing (`.NotFound`), and only a wrong prefix as malformed.
pub fn check_described_id(kind: ResourceKind, id: &str) -> Result<(), ApiError> {
    if matches!(kind, ResourceKind::Vpc | ResourceKind::Subnet)
        && id
            .strip_prefix(kind.prefix())
            .is_some_and(|rest| rest.starts_with('-'))
    {
        return Ok(());
    }
    check_id(kind, id)
}

/// A fresh ID of `kind`.
pub fn new_id(kind: ResourceKind) -> String {
    ResourceId::generate(kind).to_string()
}

/// The error for an ID that names nothing.
pub fn not_found<R: Resource>(id: &str) -> ApiError {
    ApiError::new(
        R::NOT_FOUND,
        format!("The {} ID '{id}' does not exist", R::NOUN),
    )
}

/// The answer of an action that returns no data.
pub fn ok_return(ctx: &Ctx, action: &str) -> String {
    Xml::response(action, ctx.request_id, |x| {
        x.elem("return", true);
    })
}

/// `<tagSet>` as EC2 writes it.
pub fn write_tags(x: &mut Xml, tags: &Tags) {
    x.list("tagSet", tags, |x, (k, v)| {
        x.elem("key", k).elem("value", v);
    });
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn from_json<R: Record>(value: &[u8]) -> Result<R, ApiError> {
    serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("A stored {} is unreadable: {e}", R::noun())))
}

/// The account's fence: rewritten by every write of the account.
pub(crate) fn fence_key(ctx: &Ctx) -> Vec<u8> {
    format!("fence/{}/{}", ctx.account.id, ctx.region).into_bytes()
}

/// A stored key and its value: the type lives with the records.
pub use crate::records::RawEntry;

/// One action's view of the store: reads see the action's own writes, and
/// the writes commit together or not at all.
pub struct Tx<'a, 'c> {
    ctx: &'a Ctx<'c>,
    account_prefix: Vec<u8>,
    fence: Compare,
    /// Compares on keys outside the account, recorded as they are read.
    outside: BTreeMap<Vec<u8>, Compare>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Parts of transactions built by code that does not use `Tx`.
    extra: Txn,
}

impl std::fmt::Debug for Tx<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

impl<'a, 'c> Tx<'a, 'c> {
    fn begin(ctx: &'a Ctx<'c>) -> Result<Self, ApiError> {
        let key = fence_key(ctx);
        let fence = match ctx.store.get(&key).map_err(store_error)? {
            Some(kv) => Compare::ModRevision(key, kv.mod_revision),
            None => Compare::Absent(key),
        };
        Ok(Tx {
            ctx,
            account_prefix: format!("r/{}/{}/", ctx.account.id, ctx.region).into_bytes(),
            fence,
            outside: BTreeMap::new(),
            writes: BTreeMap::new(),
            extra: Txn::new(),
        })
    }

    /// Who is asking, where.
    pub fn ctx(&self) -> &'a Ctx<'c> {
        self.ctx
    }

    /// A key's value as this transaction sees it.
    pub fn get_raw(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        let kv = self.ctx.store.get(key).map_err(store_error)?;
        if !key.starts_with(&self.account_prefix) {
            let compare = match &kv {
                Some(kv) => Compare::ModRevision(key.to_vec(), kv.mod_revision),
                None => Compare::Absent(key.to_vec()),
            };
            self.outside.entry(key.to_vec()).or_insert(compare);
        }
        Ok(kv.map(|kv| kv.value))
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    pub fn delete_raw(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Every (key, value) under `prefix` as this transaction sees it, sorted
    /// by key. Only for prefixes inside the account, which the fence covers.
    pub fn range_raw(&mut self, prefix: &[u8]) -> Result<Vec<RawEntry>, ApiError> {
        debug_assert!(prefix.starts_with(&self.account_prefix));
        let stored: Vec<KeyValue> = self
            .ctx
            .store
            .range(prefix, None, usize::MAX)
            .map_err(store_error)?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            stored.into_iter().map(|kv| (kv.key, kv.value)).collect();
        for (key, value) in self.writes.range(prefix.to_vec()..) {
            if !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// The resource with this ID, if it exists.
    pub fn get<R: Record>(&mut self, id: &str) -> Result<Option<R>, ApiError> {
        let key = self.ctx.key(R::segment(), id);
        self.get_raw(&key)?.map(|v| from_json(&v)).transpose()
    }

    /// The resource with this ID: a malformed ID gets its `.Malformed` code
    /// and a missing one its `.NotFound` code.
    pub fn load<R: Resource>(&mut self, id: &str) -> Result<R, ApiError> {
        check_id(R::KIND, id)?;
        self.get(id)?.ok_or_else(|| not_found::<R>(id))
    }

    /// Every resource of this kind in the account, sorted by ID.
    pub fn list<R: Record>(&mut self) -> Result<Vec<R>, ApiError> {
        let prefix = self.ctx.prefix(R::segment());
        self.range_raw(&prefix)?
            .into_iter()
            .map(|(_, v)| from_json(&v))
            .collect()
    }

    /// Creates or replaces a resource.
    pub fn put<R: Record>(&mut self, resource: &R) -> Result<(), ApiError> {
        let key = self.ctx.key(R::segment(), resource.record_id());
        self.put_raw(key, to_json(resource)?);
        Ok(())
    }

    pub fn delete<R: Record>(&mut self, id: &str) {
        let key = self.ctx.key(R::segment(), id);
        self.delete_raw(key);
    }

    /// Adds compares and ops built outside `Tx` (modules that assemble their
    /// own `Txn`s) to this transaction.
    pub fn include(&mut self, compares: Vec<Compare>, ops: Vec<Op>) {
        self.extra.compares.extend(compares);
        for op in ops {
            match op {
                Op::Put(k, v) => self.put_raw(k, v),
                Op::Delete(k) => self.delete_raw(k),
            }
        }
    }

    fn commit(self) -> Result<bool, ApiError> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let fence = fence_key(self.ctx);
        let mut txn = self.extra;
        txn.compares.push(self.fence);
        txn.compares.extend(self.outside.into_values());
        txn.ops
            .extend(self.writes.into_iter().map(|(k, v)| match v {
                Some(v) => Op::Put(k, v),
                None => Op::Delete(k),
            }));
        txn.ops.push(Op::Put(fence, Vec::new()));
        match self.ctx.store.txn(txn).map_err(store_error)? {
            TxnResult::Committed(_) => Ok(true),
            TxnResult::Failed { .. } => Ok(false),
        }
    }
}

/// [`transact`] in the key space of account `account_id` in `region`, for
/// the server's own work on a resource (a lifecycle moving it on), which
/// acts as its owner; `request_id` names that work.
pub fn transact_as_owner<T>(
    store: &dyn crate::store::Store,
    account_id: &str,
    region: &str,
    request_id: &str,
    body: impl FnMut(&mut Tx) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    // Only the account's ID is read inside its key space.
    let account = crate::api::account::Account {
        id: account_id.to_owned(),
        name: String::new(),
        access_key_id: String::new(),
        secret_access_key: String::new(),
    };
    let ctx = Ctx {
        store,
        account: &account,
        region,
        request_id,
        fleet: None,
    };
    transact(&ctx, body)
}

/// How often a transaction that keeps losing races is tried before the
/// caller is told to retry.
const ATTEMPTS: usize = 32;

/// Runs `body` in a transaction and commits what it wrote; runs it again on
/// fresh reads when another writer got in first. An error from `body`
/// commits nothing.
pub fn transact<T>(
    ctx: &Ctx,
    mut body: impl FnMut(&mut Tx) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    for _ in 0..ATTEMPTS {
        let mut tx = Tx::begin(ctx)?;
        let out = body(&mut tx)?;
        if tx.commit()? {
            return Ok(out);
        }
    }
    Err(ApiError::new(
        "RequestLimitExceeded",
        "Too many concurrent changes to this account; retry the request.",
    )
    .with_status(503))
}

/// The values of the tag filters (`tag:Key`, `tag-key`, `tag-value`), or
/// `None` for another filter name.
pub fn tag_filter_values(tags: &Tags, name: &str) -> Option<Vec<String>> {
    match name {
        "tag-key" => Some(tags.iter().map(|(k, _)| k.clone()).collect()),
        "tag-value" => Some(tags.iter().map(|(_, v)| v.clone()).collect()),
        _ => name.strip_prefix("tag:").map(|key| {
            tags.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        }),
    }
}

/// True if `item` passes every filter, given the values it offers to each
/// filter name; an unknown filter name is `InvalidParameterValue`.
pub fn filters_match<T>(
    item: &T,
    filters: &[Filter],
    values: impl Fn(&T, &str) -> Option<Vec<String>>,
) -> Result<bool, ApiError> {
    for f in filters {
        let values = values(item, &f.name).ok_or_else(|| {
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

/// True if the resource passes every filter, the tag filters included.
pub fn matches_filters<R: Resource>(r: &R, filters: &[Filter]) -> Result<bool, ApiError> {
    filters_match(r, filters, |r, name| {
        tag_filter_values(r.tags(), name).or_else(|| r.filter_values(name))
    })
}

/// How one Describe action is spelled on the wire.
#[derive(Debug, Clone, Copy)]
pub struct DescribeSpec {
    /// `DescribeSubnets`.
    pub action: &'static str,
    /// The list parameter of IDs: `SubnetId` (as `SubnetId.N`).
    pub ids: &'static str,
    /// The response's list element: `subnetSet`.
    pub set: &'static str,
}

/// A Describe action: the named IDs (each must exist), the filters,
/// `MaxResults` (the kind's [`Resource::MAX_RESULTS`]) with `NextToken`,
/// and DryRun.
pub fn describe<R: Resource>(
    ctx: &Ctx,
    params: &Params,
    spec: DescribeSpec,
) -> Result<String, ApiError> {
    describe_where::<R>(ctx, params, spec, |_| true)
}

/// [`describe`], showing only the resources `keep` accepts (for parameters
/// beyond IDs and filters).
pub fn describe_where<R: Resource>(
    ctx: &Ctx,
    params: &Params,
    spec: DescribeSpec,
    keep: impl Fn(&R) -> bool,
) -> Result<String, ApiError> {
    describe_impl(ctx, params, spec, keep, |tx| tx.list::<R>(), true)
}

/// [`describe_where`] over the resources `load` returns, for kinds whose
/// shown values are computed from other records at read time (a route's
/// `blackhole` state comes from its target).
pub fn describe_with<R: Resource>(
    ctx: &Ctx,
    params: &Params,
    spec: DescribeSpec,
    keep: impl Fn(&R) -> bool,
    load: impl FnMut(&mut Tx) -> Result<Vec<R>, ApiError>,
) -> Result<String, ApiError> {
    describe_impl(ctx, params, spec, keep, load, true)
}

/// [`describe`] for the few actions where EC2 answers a named ID that names
/// nothing by leaving it out rather than failing the call
/// (DescribeEgressOnlyInternetGateways).
pub fn describe_skipping_missing<R: Resource>(
    ctx: &Ctx,
    params: &Params,
    spec: DescribeSpec,
) -> Result<String, ApiError> {
    describe_impl(ctx, params, spec, |_: &R| true, |tx| tx.list::<R>(), false)
}

fn describe_impl<R: Resource>(
    ctx: &Ctx,
    params: &Params,
    spec: DescribeSpec,
    keep: impl Fn(&R) -> bool,
    mut load: impl FnMut(&mut Tx) -> Result<Vec<R>, ApiError>,
    named_must_exist: bool,
) -> Result<String, ApiError> {
    let ids = params.list(spec.ids)?;
    for id in &ids {
        check_described_id(R::KIND, id)?;
    }
    let filters = params.filters()?;
    let max = params.max_results(R::MAX_RESULTS)?;
    let after = next_token(params, R::KIND)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let all: Vec<R> = transact(ctx, &mut load)?;
    // spec 12.3: every named resource must exist, or the whole call fails.
    if named_must_exist
        && let Some(missing) = ids.iter().find(|id| !all.iter().any(|r| r.id() == *id))
    {
        return Err(not_found::<R>(missing));
    }
    let mut shown = Vec::new();
    for r in all {
        if (!ids.is_empty() && !ids.iter().any(|id| id == r.id()))
            || after.as_deref().is_some_and(|a| r.id() <= a)
            || !keep(&r)
        {
            continue;
        }
        if matches_filters(&r, &filters)? {
            shown.push(r);
        }
    }
    let next = page(&mut shown, max, |r| r.id());
    Ok(Xml::response(spec.action, ctx.request_id, |x| {
        x.list(spec.set, &shown, |x, r| r.write(x))
            .opt("nextToken", next);
    }))
}

/// The ID after which a page starts, from `NextToken`. Tokens name the last
/// ID returned; they are opaque to clients.
pub fn next_token(params: &Params, kind: ResourceKind) -> Result<Option<String>, ApiError> {
    let Some(token) = params.get("NextToken") else {
        return Ok(None);
    };
    token
        .strip_prefix("v1.")
        .filter(|id| ResourceId::parse(kind, id).is_ok())
        .map(|id| Some(id.to_owned()))
        .ok_or_else(|| {
            ApiError::new(
                "InvalidNextToken",
                format!(
                    "The token '{token}' is invalid: pass the nextToken of a previous response"
                ),
            )
        })
}

/// Cuts `items` (sorted by ID) to a page of `max`; the token of the next page.
pub fn page<T>(items: &mut Vec<T>, max: Option<u32>, id: impl Fn(&T) -> &str) -> Option<String> {
    match max {
        Some(max) if items.len() > max as usize => {
            items.truncate(max as usize);
            items.last().map(|last| format!("v1.{}", id(last)))
        }
        _ => None,
    }
}

/// Commits a transaction built without [`Tx`], moving the account's fence so
/// that concurrent [`transact`]ions see the change and run again.
pub(crate) fn commit_outside_tx(ctx: &Ctx, mut txn: Txn) -> Result<TxnResult, ApiError> {
    txn.ops.push(Op::Put(fence_key(ctx), Vec::new()));
    ctx.store.txn(txn).map_err(store_error)
}
