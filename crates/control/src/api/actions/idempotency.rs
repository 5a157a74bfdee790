//! Client tokens (spec 12.1, AWS's "Ensuring idempotency in Amazon EC2 API
//! requests"): the one mechanism every Create action with a `ClientToken`
//! uses so that a retried request makes nothing new. botocore fills the
//! token in by itself on most of these actions and resends the same one when
//! it retries a request that timed out, so a retry must answer with what the
//! first call made.
//!
//! A token is kept as a record in the caller's account and region
//! (`client-token/<Action>/<token>`, under `r/`, so `--moto-compat`'s reset
//! clears it with the resources), holding a fingerprint of the request and
//! the resources it made. The action writes it in the same transaction as
//! the resources ([`remember`]), so a call that fails stores no token and a
//! retry of it runs afresh.
//!
//! Same token, same parameters: the resources as they are now ([`earlier`]).
//! Same token, other parameters: `IdempotentParameterMismatch`. A token is
//! case-sensitive and scoped to the action, account and region (AWS: the same
//! token in another region makes a resource there).
//!
//! How long a token counts: AWS keeps one "for at least 24 hours" (after an
//! instance's termination, for RunInstances). Here a token counts while any
//! resource it made still exists and for [`TOKEN_TTL_SECS`] after its call
//! in any case; past both it is forgotten (and its record dropped the next
//! time the action records a token), and the token makes a new resource.
//! A token whose resources were deleted within its 24 hours answers with them
//! as the first call made them: AWS documents that a retry returns "the
//! result of the original request", and tools only read the IDs back from it.

use openvpc_model::time::now_secs;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::resource::{Resource, Tx, segment, to_json};
use crate::api::error::ApiError;
use crate::api::query::Params;

/// The store segment of token records (no ID prefix is spelled so).
const SEGMENT: &str = "client-token";

/// How long a token counts at least, from its call (AWS: at least 24 hours).
pub const TOKEN_TTL_SECS: u64 = 24 * 60 * 60;

/// The parameters the fingerprint leaves out: the protocol's own, the token
/// itself, and DryRun (a dry run then the real call is one request).
const NOT_FINGERPRINTED: &[&str] = &["Action", "Version", "ClientToken", "DryRun"];

/// A request's `ClientToken` and the fingerprint of the rest of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientToken {
    action: &'static str,
    token: String,
    fingerprint: String,
}

/// A token as stored.
#[derive(Debug, Serialize, Deserialize)]
struct TokenRecord {
    /// SHA-256 (hex) of the request's parameters but [`NOT_FINGERPRINTED`],
    /// sorted by name, as `name=value&...`.
    fingerprint: String,
    /// When the call was made (Unix seconds).
    made_at: u64,
    /// The store segment of the resources' kind.
    segment: String,
    /// The IDs of the resources the call made, in its answer's order.
    ids: Vec<String>,
    /// Those resources as the call made them, to answer with if they are
    /// gone by the retry.
    first: Vec<Value>,
}

impl ClientToken {
    /// The request's token for `action`, if it has one (an empty one counts
    /// as none). AWS limits tokens to 64 ASCII characters, but
    /// CreateManagedPrefixList's to 255 UTF-8 ones (botocore's model).
    pub fn of(params: &Params, action: &'static str) -> Result<Option<Self>, ApiError> {
        let Some(token) = params.get("ClientToken").filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let (limit, ascii) = match action {
            "CreateManagedPrefixList" => (255, false),
            _ => (64, true),
        };
        if token.chars().count() > limit || (ascii && !token.is_ascii()) {
            let what = if ascii {
                "ASCII characters"
            } else {
                "characters"
            };
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Value for parameter ClientToken is invalid: a client token is at most {limit} {what} long ({} given).",
                    token.chars().count()
                ),
            ));
        }
        let mut names: Vec<&str> = params
            .names()
            .filter(|n| !NOT_FINGERPRINTED.contains(n))
            .collect();
        names.sort_unstable();
        let mut hash = Sha256::new();
        for (i, n) in names.iter().enumerate() {
            if i > 0 {
                hash.update(b"&");
            }
            hash.update(n.as_bytes());
            hash.update(b"=");
            hash.update(params.get(n).unwrap_or_default().as_bytes());
        }
        Ok(Some(Self {
            action,
            token: token.to_owned(),
            fingerprint: hex::encode(hash.finalize()),
        }))
    }

    /// The token as the client sent it (responses echo it as `clientToken`).
    pub fn token(&self) -> &str {
        &self.token
    }

    fn key(&self, tx: &Tx) -> Vec<u8> {
        tx.ctx()
            .key(SEGMENT, &format!("{}/{}", self.action, self.token))
    }

    fn mismatch(&self) -> ApiError {
        ApiError::new(
            "IdempotentParameterMismatch",
            format!(
                "The client token '{}' was already used for a {} request with different parameters; use a new token for a new request.",
                self.token, self.action
            ),
        )
    }
}

fn unreadable(e: serde_json::Error) -> ApiError {
    ApiError::internal(format!("A stored client token is unreadable: {e}"))
}

/// True while a token counts: within its 24 hours, or while any resource it
/// made exists.
fn counts(tx: &mut Tx, record: &TokenRecord, now: u64) -> Result<bool, ApiError> {
    if now < record.made_at.saturating_add(TOKEN_TTL_SECS) {
        return Ok(true);
    }
    for id in &record.ids {
        let key = tx.ctx().key(&record.segment, id);
        if tx.get_raw(&key)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// spec 12.1: what an earlier call with this token made, as the resources
/// are now (or as first made, for those since deleted); `None` when there
/// is no token or it was not used yet. The token with other parameters is
/// `IdempotentParameterMismatch`.
pub fn earlier<R: Resource>(
    tx: &mut Tx,
    token: Option<&ClientToken>,
) -> Result<Option<Vec<R>>, ApiError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let Some(raw) = tx.get_raw(&token.key(tx))? else {
        return Ok(None);
    };
    let record: TokenRecord = serde_json::from_slice(&raw).map_err(unreadable)?;
    if !counts(tx, &record, now_secs())? {
        return Ok(None);
    }
    if record.fingerprint != token.fingerprint {
        return Err(token.mismatch());
    }
    let mut made = Vec::with_capacity(record.ids.len());
    for (id, first) in record.ids.iter().zip(record.first) {
        match tx.get::<R>(id)? {
            Some(now) => made.push(now),
            None => made.push(serde_json::from_value(first).map_err(unreadable)?),
        }
    }
    Ok(Some(made))
}

/// [`earlier`] for the actions that make one resource.
pub fn earlier_one<R: Resource>(
    tx: &mut Tx,
    token: Option<&ClientToken>,
) -> Result<Option<R>, ApiError> {
    Ok(earlier(tx, token)?.and_then(|made| made.into_iter().next()))
}

/// Records what a call with this token made, in the call's transaction, and
/// drops the action's tokens that no longer count. A call that made nothing
/// (CreateFlowLogs with every resource refused) records nothing: its retry
/// runs again and reports the same refusals.
pub fn remember<R: Resource>(
    tx: &mut Tx,
    token: Option<&ClientToken>,
    made: &[R],
) -> Result<(), ApiError> {
    let Some(token) = token else {
        return Ok(());
    };
    if made.is_empty() {
        return Ok(());
    }
    let now = now_secs();
    let mut prefix = tx.ctx().prefix(SEGMENT);
    prefix.extend_from_slice(token.action.as_bytes());
    prefix.push(b'/');
    for (key, raw) in tx.range_raw(&prefix)? {
        // An unreadable record is left alone rather than failing the call.
        if let Ok(old) = serde_json::from_slice::<TokenRecord>(&raw)
            && !counts(tx, &old, now)?
        {
            tx.delete_raw(key);
        }
    }
    let record = TokenRecord {
        fingerprint: token.fingerprint.clone(),
        made_at: now,
        segment: segment(R::KIND).to_owned(),
        ids: made.iter().map(|r| r.id().to_owned()).collect(),
        first: made
            .iter()
            .map(|r| serde_json::to_value(r).map_err(|e| ApiError::internal(e.to_string())))
            .collect::<Result<_, _>>()?,
    };
    let key = token.key(tx);
    tx.put_raw(key, to_json(&record)?);
    Ok(())
}
