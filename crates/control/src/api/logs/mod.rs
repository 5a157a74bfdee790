//! A minimal CloudWatch Logs API (service `logs`, version 2014-03-28, the
//! AWS JSON 1.1 protocol) on the server's endpoint, for flow logs'
//! CloudWatch Logs destination: `aws logs …` and boto3 create, list and
//! delete log groups and streams, put events, and read them back with
//! GetLogEvents and FilterLogEvents. Everything is per account and region.
//!
//! A request is `POST /` with `X-Amz-Target: Logs_20140328.<Action>` and a
//! JSON body, signed for `logs` (the server verifies it and resolves the
//! account as for every service); the answer is JSON, and errors are
//! `{"__type": "<Code>", "message": "…"}` ([`error_body`]).
//!
//! This file owns dispatch, errors, names and [`deliver_events`], which the
//! flow-log delivery calls directly (no HTTP). Storage is in [`store`], the
//! actions in `groups` (groups and streams) and `events` (events), filter
//! patterns in [`pattern`].

use serde::de::DeserializeOwned;

use crate::api::actions::Ctx;
use crate::api::error::ApiError;
use crate::store::{Store, StoreError};

mod events;
mod groups;
pub mod pattern;
pub mod store;

/// The `X-Amz-Target` prefix of every CloudWatch Logs action.
pub const TARGET_PREFIX: &str = "Logs_20140328.";
/// The Content-Type of every answer.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Why a CloudWatch Logs call failed; each variant is one AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsError {
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidParameter(String),
    /// The body is not the JSON the action takes.
    #[error("{0}")]
    Serialization(String),
    #[error("{0}")]
    UnknownOperation(String),
    #[error("Too many concurrent changes to these log groups; retry the request.")]
    Busy,
    #[error("The log store failed: {0}")]
    Store(#[from] StoreError),
    #[error("The log store holds an unreadable record: {0}")]
    Corrupt(String),
}

impl LogsError {
    /// The AWS error code.
    pub fn code(&self) -> &'static str {
        match self {
            LogsError::AlreadyExists(_) => "ResourceAlreadyExistsException",
            LogsError::NotFound(_) => "ResourceNotFoundException",
            LogsError::InvalidParameter(_) => "InvalidParameterException",
            LogsError::Serialization(_) => "SerializationException",
            LogsError::UnknownOperation(_) => "UnknownOperationException",
            LogsError::Busy | LogsError::Store(_) | LogsError::Corrupt(_) => {
                "ServiceUnavailableException"
            }
        }
    }

    fn status(&self) -> u16 {
        match self {
            LogsError::Busy => 503,
            LogsError::Store(_) | LogsError::Corrupt(_) => 500,
            _ => 400,
        }
    }
}

impl From<LogsError> for ApiError {
    fn from(e: LogsError) -> Self {
        ApiError::new(e.code(), e.to_string()).with_status(e.status())
    }
}

fn invalid(message: impl Into<String>) -> LogsError {
    LogsError::InvalidParameter(message.into())
}

fn group_not_found() -> LogsError {
    LogsError::NotFound("The specified log group does not exist.".to_owned())
}

fn stream_not_found() -> LogsError {
    LogsError::NotFound("The specified log stream does not exist.".to_owned())
}

/// The JSON error body of a failed call, as botocore's JSON protocol reads it.
pub fn error_body(e: &ApiError) -> String {
    serde_json::json!({ "__type": e.code, "message": e.message }).to_string()
}

/// Whether a request's `X-Amz-Target` names a CloudWatch Logs action, so
/// that its answer (an error included) is written as JSON.
pub fn is_logs_target(target: Option<&str>) -> bool {
    target.is_some_and(|t| t.starts_with(TARGET_PREFIX))
}

/// Milliseconds since the epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

type Handler = fn(&Call, &[u8]) -> Result<serde_json::Value, LogsError>;

/// Who is calling, where, and when.
struct Call<'a> {
    store: &'a dyn Store,
    account_id: &'a str,
    region: &'a str,
    space: store::Space,
    /// Milliseconds since the epoch.
    now: i64,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("account_id", &self.account_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Runs the CloudWatch Logs action `target` (the request's `X-Amz-Target`)
/// with its JSON `body`, answering the JSON body of the response.
pub fn dispatch(ctx: &Ctx, target: Option<&str>, body: &[u8]) -> Result<String, ApiError> {
    let action = target
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .ok_or_else(|| {
            LogsError::UnknownOperation(format!(
                "CloudWatch Logs requests need an X-Amz-Target header naming \
                 {TARGET_PREFIX}<Action>; this one has {}",
                target.map_or("none".to_owned(), |t| format!("'{t}'"))
            ))
        })?;
    let handler: Handler = match action {
        "CreateLogGroup" => groups::create_log_group,
        "DescribeLogGroups" => groups::describe_log_groups,
        "DeleteLogGroup" => groups::delete_log_group,
        "CreateLogStream" => groups::create_log_stream,
        "DescribeLogStreams" => groups::describe_log_streams,
        "DeleteLogStream" => groups::delete_log_stream,
        "PutLogEvents" => events::put_log_events,
        "GetLogEvents" => events::get_log_events,
        "FilterLogEvents" => events::filter_log_events,
        _ => {
            return Err(LogsError::UnknownOperation(format!(
                "The operation {action} is not supported by this endpoint's CloudWatch Logs API \
                 (it serves CreateLogGroup, DescribeLogGroups, DeleteLogGroup, CreateLogStream, \
                 DescribeLogStreams, DeleteLogStream, PutLogEvents, GetLogEvents and \
                 FilterLogEvents)"
            ))
            .into());
        }
    };
    let call = Call {
        store: ctx.store,
        account_id: &ctx.account.id,
        region: ctx.region,
        space: store::Space::new(&ctx.account.id, ctx.region),
        now: now_ms(),
    };
    let answer = handler(&call, body)?;
    Ok(answer.to_string())
}

/// The action's input: an empty body is `{}`, and unknown members are
/// ignored as AWS ignores them.
fn input<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, LogsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| LogsError::Serialization(format!("The request body is not valid: {e}")))
}

/// Log group names: 1 to 512 of `[.-_/#A-Za-z0-9]`.
fn check_group_name(name: &str, member: &str) -> Result<(), LogsError> {
    let ok = (1..=512).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#'));
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: \
         Member must have length between 1 and 512 and satisfy regular expression pattern: \
         [\\.\\-_/#A-Za-z0-9]+"
    )))
}

/// Log stream names: 1 to 512 characters, neither `:` nor `*`.
fn check_stream_name(name: &str, member: &str) -> Result<(), LogsError> {
    let ok = (1..=512).contains(&name.len()) && !name.contains([':', '*']);
    if ok {
        return Ok(());
    }
    Err(invalid(format!(
        "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: \
         Member must have length between 1 and 512 and satisfy regular expression pattern: [^:*]*"
    )))
}

/// The group a request names, by `logGroupName` or `logGroupIdentifier`
/// (a name or a group ARN), exactly one of them.
fn group_name<'a>(
    call: &Call,
    name: &'a Option<String>,
    identifier: &'a Option<String>,
) -> Result<&'a str, LogsError> {
    match (name, identifier) {
        (Some(name), None) => {
            check_group_name(name, "logGroupName")?;
            Ok(name)
        }
        (None, Some(id)) => {
            let prefix = format!(
                "arn:aws:logs:{}:{}:log-group:",
                call.region, call.account_id
            );
            let name = match id.strip_prefix(&prefix) {
                Some(rest) => rest.strip_suffix(":*").unwrap_or(rest),
                None if id.starts_with("arn:") => {
                    return Err(invalid(format!(
                        "logGroupIdentifier '{id}' is not a log group ARN of this account and region"
                    )));
                }
                None => id,
            };
            check_group_name(name, "logGroupIdentifier")?;
            Ok(name)
        }
        (Some(_), Some(_)) => Err(invalid(
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
        )),
        (None, None) => Err(invalid(
            "Either LogGroupName or LogGroupIdentifier must be specified.",
        )),
    }
}

fn group_arn(call: &Call, name: &str) -> String {
    format!(
        "arn:aws:logs:{}:{}:log-group:{name}",
        call.region, call.account_id
    )
}

/// Sends `events` (timestamps in milliseconds and messages) to `stream` of
/// `group` in account `account_id`'s `region`, creating the group and the
/// stream if they are missing, as flow logs' delivery does in AWS. Events
/// are stored in timestamp order, in transactions of at most 10,000 events
/// and 1 MiB (PutLogEvents' bounds), each one store write; they are not
/// checked for age, as delivery may be late, and empty messages (which
/// AWS refuses) are skipped. A stream past its bounds drops its oldest
/// events (see [`store`]). Errors: a bad group or stream name is
/// `InvalidParameter`; the store's failures are `Store`/`Busy`.
pub fn deliver_events(
    store: &dyn Store,
    account_id: &str,
    region: &str,
    group: &str,
    stream: &str,
    events: &[(i64, String)],
) -> Result<(), LogsError> {
    check_group_name(group, "logGroupName")?;
    check_stream_name(stream, "logStreamName")?;
    let space = store::Space::new(account_id, region);
    let now = now_ms();
    let mut sorted: Vec<(i64, &str)> = events
        .iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(t, m)| (*t, m.as_str()))
        .collect();
    sorted.sort_by_key(|(t, _)| *t);
    let mut batches: Vec<&[(i64, &str)]> = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, m)) in sorted.iter().enumerate() {
        let size = store::event_size(m);
        if i > start
            && (i - start >= events::MAX_BATCH_EVENTS || bytes + size > events::MAX_BATCH_BYTES)
        {
            batches.push(&sorted[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    batches.push(&sorted[start..]);
    for batch in batches {
        store::transact(store, |tx| {
            let group_key = space.group_key(group);
            let group = match tx.get::<store::Group>(&group_key)? {
                Some(g) => g,
                None => {
                    let g = store::Group {
                        name: group.to_owned(),
                        creation_time: now,
                        uid: rand::random(),
                        tags: Default::default(),
                        class: "STANDARD".to_owned(),
                    };
                    tx.put(group_key, &g)?;
                    g
                }
            };
            let stream_key = space.stream_key(group.uid, stream);
            match tx.get::<store::Stream>(&stream_key)? {
                Some(mut record) => store::append(tx, &space, &group, &mut record, batch, now),
                None => {
                    // A new stream is written even for a delivery with
                    // nothing in it, as AWS shows the ENI's stream.
                    let mut record = store::Stream::new(stream, now);
                    tx.put(stream_key, &record)?;
                    store::append(tx, &space, &group, &mut record, batch, now)
                }
            }
        })?;
    }
    Ok(())
}

/// Whether `group` exists in account `account_id`'s `region` (for
/// CreateFlowLogs' destination check).
pub fn group_exists(
    store: &dyn Store,
    account_id: &str,
    region: &str,
    group: &str,
) -> Result<bool, LogsError> {
    let space = store::Space::new(account_id, region);
    Ok(store::read::<store::Group>(store, &space.group_key(group))?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_the_model_pattern() {
        for ok in ["a", "/aws/vpc/flow-logs", "x.y_z#1", &"a".repeat(512)] {
            assert!(check_group_name(ok, "logGroupName").is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a:b", "é", &"a".repeat(513)] {
            let e = check_group_name(bad, "logGroupName").unwrap_err();
            assert_eq!(e.code(), "InvalidParameterException", "{bad}");
        }
    }

    #[test]
    fn stream_names_refuse_colon_and_star() {
        assert!(check_stream_name("eni-0123-all", "logStreamName").is_ok());
        assert!(check_stream_name("a/b c", "logStreamName").is_ok());
        for bad in ["", "a:b", "a*"] {
            assert!(check_stream_name(bad, "logStreamName").is_err(), "{bad}");
        }
    }
}
