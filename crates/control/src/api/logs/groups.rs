//! Log groups and log streams: CreateLogGroup, DescribeLogGroups,
//! DeleteLogGroup, CreateLogStream, DescribeLogStreams and
//! DeleteLogStream, with the members, errors and paging of the botocore
//! model. Also the paging every Describe and FilterLogEvents share
//! ([`page`]).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::store::{self, Group, Stream};
use super::{
    Call, LogsError, check_group_name, check_stream_name, group_arn, group_name, group_not_found,
    input, invalid, stream_not_found,
};

/// DescribeLogGroups' and DescribeLogStreams' `limit`: 1 to 50, 50 unless given.
const DESCRIBE_LIMIT: usize = 50;
/// Tags per log group.
const MAX_TAGS: usize = 50;

/// A page of `items` (sorted in the order they are listed, each with its
/// sort key) after the position `token` names, at most `limit` long, and
/// the token of the next page if more remain. A token is the hex of the
/// last listed key, so a page resumes correctly when items come or go in
/// between; `descending` says which way the keys run.
pub(super) fn page<T>(
    items: Vec<(String, T)>,
    descending: bool,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), LogsError> {
    let after = token.map(decode_token).transpose()?;
    let mut rest = items.into_iter().filter(|(key, _)| match &after {
        None => true,
        Some(after) if descending => key < after,
        Some(after) => key > after,
    });
    let mut out = Vec::new();
    let mut last = None;
    for (key, item) in rest.by_ref().take(limit) {
        out.push(item);
        last = Some(key);
    }
    let next = match (rest.next(), last) {
        (Some(_), Some(last)) => Some(hex::encode(last)),
        _ => None,
    };
    Ok((out, next))
}

fn decode_token(token: &str) -> Result<String, LogsError> {
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| invalid("The specified nextToken is invalid."))
}

/// A `limit` member: 1 to `max`, `max` unless given.
pub(super) fn page_limit(limit: Option<i64>, max: usize) -> Result<usize, LogsError> {
    match limit {
        None => Ok(max),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "1 validation error detected: Value '{n}' at 'limit' failed to satisfy \
                     constraint: Member must have value between 1 and {max}"
                ))
            }),
    }
}

/// The group named `name`, or ResourceNotFoundException.
fn load_group(call: &Call, name: &str) -> Result<Group, LogsError> {
    store::read(call.store, &call.space.group_key(name))?.ok_or_else(group_not_found)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateLogGroup {
    log_group_name: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    log_group_class: Option<String>,
}

pub(super) fn create_log_group(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: CreateLogGroup = input(body)?;
    let name = req
        .log_group_name
        .ok_or_else(|| invalid("The parameter logGroupName is required."))?;
    check_group_name(&name, "logGroupName")?;
    let tags = req.tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "A log group has at most {MAX_TAGS} tags; this request gives {}",
            tags.len()
        )));
    }
    let class = match req.log_group_class.as_deref() {
        None => "STANDARD",
        Some(c @ ("STANDARD" | "INFREQUENT_ACCESS")) => c,
        Some(other) => {
            return Err(invalid(format!(
                "logGroupClass '{other}' is not supported here: use STANDARD or INFREQUENT_ACCESS"
            )));
        }
    };
    store::transact(call.store, |tx| {
        let key = call.space.group_key(&name);
        if tx.get::<Group>(&key)?.is_some() {
            return Err(LogsError::AlreadyExists(
                "The specified log group already exists".to_owned(),
            ));
        }
        let group = Group {
            name: name.clone(),
            creation_time: call.now,
            uid: rand::random(),
            tags: tags.clone(),
            class: class.to_owned(),
        };
        tx.put(key, &group)
    })?;
    Ok(json!({}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogGroups {
    log_group_name_prefix: Option<String>,
    log_group_name_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(super) fn describe_log_groups(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: DescribeLogGroups = input(body)?;
    let limit = page_limit(req.limit, DESCRIBE_LIMIT)?;
    let prefix = match (&req.log_group_name_prefix, &req.log_group_name_pattern) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
            ));
        }
        (Some(prefix), None) => {
            check_group_name(prefix, "logGroupNamePrefix")?;
            prefix.as_str()
        }
        _ => "",
    };
    // The pattern matches anywhere in the name, ignoring case.
    let pattern = req.log_group_name_pattern.as_deref().map(str::to_lowercase);
    let mut key_prefix = call.space.groups_prefix();
    key_prefix.extend_from_slice(prefix.as_bytes());
    let groups: Vec<Group> = store::list(call.store, &key_prefix)?;
    let groups: Vec<(String, Group)> = groups
        .into_iter()
        .filter(|g| {
            pattern
                .as_deref()
                .is_none_or(|p| g.name.to_lowercase().contains(p))
        })
        .map(|g| (g.name.clone(), g))
        .collect();
    let (groups, next) = page(groups, false, req.next_token.as_deref(), limit)?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let streams: Vec<Stream> = store::list(call.store, &call.space.streams_prefix(g.uid))?;
        let stored: u64 = streams.iter().map(Stream::stored_bytes).sum();
        let arn = group_arn(call, &g.name);
        out.push(json!({
            "logGroupName": g.name,
            "creationTime": g.creation_time,
            "metricFilterCount": 0,
            "arn": format!("{arn}:*"),
            "storedBytes": stored,
            "logGroupClass": g.class,
            "logGroupArn": arn,
        }));
    }
    let mut answer = json!({ "logGroups": out });
    if let Some(next) = next {
        answer["nextToken"] = json!(next);
    }
    Ok(answer)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteLogGroup {
    log_group_name: Option<String>,
}

pub(super) fn delete_log_group(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: DeleteLogGroup = input(body)?;
    let name = req
        .log_group_name
        .ok_or_else(|| invalid("The parameter logGroupName is required."))?;
    check_group_name(&name, "logGroupName")?;
    store::transact(call.store, |tx| {
        let group: Group = tx
            .get(&call.space.group_key(&name))?
            .ok_or_else(group_not_found)?;
        store::delete_group(tx, &call.space, &group)
    })?;
    store::sweep(call.store, &call.space)?;
    Ok(json!({}))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamInput {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
}

impl StreamInput {
    fn names(self) -> Result<(String, String), LogsError> {
        let group = self
            .log_group_name
            .ok_or_else(|| invalid("The parameter logGroupName is required."))?;
        check_group_name(&group, "logGroupName")?;
        let stream = self
            .log_stream_name
            .ok_or_else(|| invalid("The parameter logStreamName is required."))?;
        check_stream_name(&stream, "logStreamName")?;
        Ok((group, stream))
    }
}

pub(super) fn create_log_stream(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let (group, stream) = input::<StreamInput>(body)?.names()?;
    store::transact(call.store, |tx| {
        let group: Group = tx
            .get(&call.space.group_key(&group))?
            .ok_or_else(group_not_found)?;
        let key = call.space.stream_key(group.uid, &stream);
        if tx.get::<Stream>(&key)?.is_some() {
            return Err(LogsError::AlreadyExists(
                "The specified log stream already exists".to_owned(),
            ));
        }
        tx.put(key, &Stream::new(&stream, call.now))
    })?;
    Ok(json!({}))
}

pub(super) fn delete_log_stream(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let (group, stream) = input::<StreamInput>(body)?.names()?;
    store::transact(call.store, |tx| {
        let group: Group = tx
            .get(&call.space.group_key(&group))?
            .ok_or_else(group_not_found)?;
        let record: Stream = tx
            .get(&call.space.stream_key(group.uid, &stream))?
            .ok_or_else(stream_not_found)?;
        store::delete_stream(tx, &call.space, &group, &record)
    })?;
    store::sweep(call.store, &call.space)?;
    Ok(json!({}))
}

/// DescribeLogStreams' `orderBy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderBy {
    LogStreamName,
    LastEventTime,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeLogStreams {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    descending: Option<bool>,
    next_token: Option<String>,
    limit: Option<i64>,
}

pub(super) fn describe_log_streams(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: DescribeLogStreams = input(body)?;
    let name = group_name(call, &req.log_group_name, &req.log_group_identifier)?;
    let limit = page_limit(req.limit, DESCRIBE_LIMIT)?;
    let order = match req.order_by.as_deref() {
        None | Some("LogStreamName") => OrderBy::LogStreamName,
        Some("LastEventTime") => OrderBy::LastEventTime,
        Some(other) => {
            return Err(invalid(format!(
                "1 validation error detected: Value '{other}' at 'orderBy' failed to satisfy \
                 constraint: Member must satisfy enum value set: [LogStreamName, LastEventTime]"
            )));
        }
    };
    let prefix = req.log_stream_name_prefix.as_deref().unwrap_or("");
    if !prefix.is_empty() {
        check_stream_name(prefix, "logStreamNamePrefix")?;
        if order == OrderBy::LastEventTime {
            return Err(invalid(
                "Cannot order by LastEventTime with a logStreamNamePrefix.",
            ));
        }
    }
    let descending = req.descending.unwrap_or(false);
    let group = load_group(call, name)?;
    let mut key_prefix = call.space.streams_prefix(group.uid);
    key_prefix.extend_from_slice(prefix.as_bytes());
    let streams: Vec<Stream> = store::list(call.store, &key_prefix)?;
    let mut keyed: Vec<(String, Stream)> = streams
        .into_iter()
        .map(|s| {
            let key = match order {
                OrderBy::LogStreamName => s.name.clone(),
                OrderBy::LastEventTime => {
                    format!("{:020}/{}", s.last_event.unwrap_or(0).max(0), s.name)
                }
            };
            (key, s)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    if descending {
        keyed.reverse();
    }
    let (streams, next) = page(keyed, descending, req.next_token.as_deref(), limit)?;
    let arn = group_arn(call, &group.name);
    let out: Vec<Value> = streams
        .iter()
        .map(|s| {
            let mut v = json!({
                "logStreamName": s.name,
                "creationTime": s.creation_time,
                "arn": format!("{arn}:log-stream:{}", s.name),
                // Deprecated for streams: AWS reports 0.
                "storedBytes": 0,
                "uploadSequenceToken": s.next_seq.to_string(),
            });
            if let Some(t) = s.first_event {
                v["firstEventTimestamp"] = json!(t);
            }
            if let Some(t) = s.last_event {
                v["lastEventTimestamp"] = json!(t);
            }
            if let Some(t) = s.last_ingestion {
                v["lastIngestionTime"] = json!(t);
            }
            v
        })
        .collect();
    let mut answer = json!({ "logStreams": out });
    if let Some(next) = next {
        answer["nextToken"] = json!(next);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(keys: &[&str]) -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.to_string(), k.to_string()))
            .collect()
    }

    #[test]
    fn pages_resume_after_the_last_listed_key() {
        let (items, next) = page(keyed(&["a", "b", "c"]), false, None, 2).unwrap();
        assert_eq!(items, ["a", "b"]);
        let next = next.unwrap();
        let (items, last) = page(keyed(&["a", "b", "c"]), false, Some(&next), 2).unwrap();
        assert_eq!((items, last), (vec!["c".to_owned()], None));
        // A page that ends exactly at the last item has no next token.
        let (_, next) = page(keyed(&["a", "b"]), false, None, 2).unwrap();
        assert!(next.is_none());
        // Descending: the next page holds smaller keys.
        let (items, next) = page(keyed(&["c", "b", "a"]), true, None, 1).unwrap();
        assert_eq!(items, ["c"]);
        let (items, _) = page(keyed(&["c", "b", "a"]), true, next.as_deref(), 5).unwrap();
        assert_eq!(items, ["b", "a"]);
        let e = page(keyed(&["a"]), false, Some("zz"), 1).unwrap_err();
        assert_eq!(e.code(), "InvalidParameterException");
    }
}
