//! Log events: PutLogEvents (with AWS's batch rules: chronological order,
//! 10,000 events, 1 MiB, 24 hours; too new and too old events rejected
//! and reported; the sequence token ignored, as AWS now ignores it),
//! GetLogEvents (one stream, forward and backward tokens) and
//! FilterLogEvents (a group's streams, by time and filter pattern).
//!
//! Events are ordered by timestamp, then stream, then arrival; their IDs
//! ([`StoredEvent::event_id`]) sort in that order and serve as the
//! positions the paging tokens name.

use serde::Deserialize;
use serde_json::{Value, json};

use super::groups::{page, page_limit};
use super::pattern::Pattern;
use super::store::{self, Group, StoredEvent, Stream};
use super::{
    Call, LogsError, check_group_name, check_stream_name, group_name, group_not_found, input,
    invalid, stream_not_found,
};

/// Events per PutLogEvents batch.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Bytes per PutLogEvents batch (messages plus 26 bytes per event).
pub const MAX_BATCH_BYTES: u64 = 1_048_576;
/// The time one batch may span.
const MAX_BATCH_SPAN_MS: i64 = 24 * 3600 * 1000;
/// Events further in the future than this are rejected as too new.
const TOO_NEW_MS: i64 = 2 * 3600 * 1000;
/// Events older than this are rejected as too old.
const TOO_OLD_MS: i64 = 14 * 24 * 3600 * 1000;
/// Events per GetLogEvents or FilterLogEvents answer: 10,000 unless `limit` says fewer.
const MAX_EVENTS: usize = 10_000;
/// Bytes of events per GetLogEvents answer.
const MAX_ANSWER_BYTES: u64 = 1_048_576;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputEvent {
    timestamp: Option<i64>,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutLogEvents {
    log_group_name: Option<String>,
    log_stream_name: Option<String>,
    log_events: Option<Vec<InputEvent>>,
}

/// The events of a batch to store, after AWS's checks: the indices of the
/// first too-new event and just past the last too-old one.
#[derive(Debug, PartialEq, Eq)]
struct Accepted {
    /// Index range of the events kept.
    kept: std::ops::Range<usize>,
    too_new_start: Option<usize>,
    too_old_end: Option<usize>,
}

/// Checks a batch as PutLogEvents does; `now` in milliseconds.
fn accept(events: &[(i64, &str)], now: i64) -> Result<Accepted, LogsError> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(format!(
            "1 validation error detected: Value at 'logEvents' failed to satisfy constraint: \
             Member must have length between 1 and {MAX_BATCH_EVENTS} (it has {})",
            events.len()
        )));
    }
    let bytes: u64 = events.iter().map(|(_, m)| store::event_size(m)).sum();
    if bytes > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "Upload too large: {bytes} bytes exceeds limit of {MAX_BATCH_BYTES}"
        )));
    }
    if events.windows(2).any(|w| w[1].0 < w[0].0) {
        return Err(invalid(
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    if let (Some(first), Some(last)) = (events.first(), events.last())
        && last.0 - first.0 > MAX_BATCH_SPAN_MS
    {
        return Err(invalid(
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    // Chronological, so the too-old events lead and the too-new ones trail.
    let old = events
        .iter()
        .take_while(|(t, _)| *t < now - TOO_OLD_MS)
        .count();
    let new_start = events
        .iter()
        .position(|(t, _)| *t > now + TOO_NEW_MS)
        .unwrap_or(events.len());
    Ok(Accepted {
        kept: old..new_start.max(old),
        too_new_start: (new_start < events.len()).then_some(new_start),
        too_old_end: (old > 0).then_some(old),
    })
}

pub(super) fn put_log_events(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: PutLogEvents = input(body)?;
    let group = req
        .log_group_name
        .ok_or_else(|| invalid("The parameter logGroupName is required."))?;
    check_group_name(&group, "logGroupName")?;
    let stream = req
        .log_stream_name
        .ok_or_else(|| invalid("The parameter logStreamName is required."))?;
    check_stream_name(&stream, "logStreamName")?;
    let given = req.log_events.unwrap_or_default();
    let mut events = Vec::with_capacity(given.len());
    for (i, e) in given.iter().enumerate() {
        let timestamp = e.timestamp.filter(|t| *t >= 0).ok_or_else(|| {
            invalid(format!(
                "logEvents.{} needs a timestamp of 0 or more (milliseconds since the epoch)",
                i + 1
            ))
        })?;
        let message = e
            .message
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "logEvents.{} needs a message of at least 1 character",
                    i + 1
                ))
            })?;
        events.push((timestamp, message));
    }
    let accepted = accept(&events, call.now)?;
    let kept = &events[accepted.kept.clone()];
    let next_seq = store::transact(call.store, |tx| {
        let group: Group = tx
            .get(&call.space.group_key(&group))?
            .ok_or_else(group_not_found)?;
        let mut record: Stream = tx
            .get(&call.space.stream_key(group.uid, &stream))?
            .ok_or_else(stream_not_found)?;
        store::append(tx, &call.space, &group, &mut record, kept, call.now)?;
        Ok(record.next_seq)
    })?;
    let mut answer = json!({ "nextSequenceToken": format!("{next_seq:056}") });
    if accepted.too_new_start.is_some() || accepted.too_old_end.is_some() {
        let mut info = json!({});
        if let Some(i) = accepted.too_new_start {
            info["tooNewLogEventStartIndex"] = json!(i);
        }
        if let Some(i) = accepted.too_old_end {
            info["tooOldLogEventEndIndex"] = json!(i);
        }
        answer["rejectedLogEventsInfo"] = info;
    }
    Ok(answer)
}

/// The timestamp an event ID starts with (see [`StoredEvent::event_id`]);
/// the earliest time for an ID that does not start with one.
fn id_time(id: &str) -> i64 {
    id.get(..20)
        .and_then(|t| t.parse().ok())
        .unwrap_or(i64::MIN)
}

/// A GetLogEvents token: a direction and the ID of the event it is next to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Events after this one.
    Forward(String),
    /// Events before this one.
    Backward(String),
}

impl Token {
    fn parse(token: &str) -> Result<Token, LogsError> {
        let bad = || invalid("The specified nextToken is invalid.");
        let (direction, id) = token.split_once('/').ok_or_else(bad)?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match direction {
            "f" => Ok(Token::Forward(id.to_owned())),
            "b" => Ok(Token::Backward(id.to_owned())),
            _ => Err(bad()),
        }
    }

    fn write(&self) -> String {
        match self {
            Token::Forward(id) => format!("f/{id}"),
            Token::Backward(id) => format!("b/{id}"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetLogEvents {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

/// An event with its ID, as the read actions order and page them.
struct Listed {
    id: String,
    event: StoredEvent,
}

fn listed(stream: &Stream, events: Vec<StoredEvent>) -> Vec<Listed> {
    let mut out: Vec<Listed> = events
        .into_iter()
        .map(|event| Listed {
            id: event.event_id(stream.uid),
            event,
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

pub(super) fn get_log_events(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: GetLogEvents = input(body)?;
    let name = group_name(call, &req.log_group_name, &req.log_group_identifier)?;
    let stream_name = req
        .log_stream_name
        .as_deref()
        .ok_or_else(|| invalid("The parameter logStreamName is required."))?;
    check_stream_name(stream_name, "logStreamName")?;
    let limit = page_limit(req.limit, MAX_EVENTS)?;
    let token = req.next_token.as_deref().map(Token::parse).transpose()?;
    let group: Group =
        store::read(call.store, &call.space.group_key(name))?.ok_or_else(group_not_found)?;
    let stream: Stream = store::read(call.store, &call.space.stream_key(group.uid, stream_name))?
        .ok_or_else(stream_not_found)?;
    // Start inclusive, end exclusive, as AWS documents them.
    let in_range =
        |t: i64| req.start_time.is_none_or(|s| t >= s) && req.end_time.is_none_or(|e| t < e);
    // Only the chunks that may hold events in range, and past the token.
    let mut from = req.start_time.unwrap_or(i64::MIN);
    let mut to = req.end_time.map_or(i64::MAX, |e| e.saturating_sub(1));
    match &token {
        Some(Token::Forward(id)) => from = from.max(id_time(id)),
        Some(Token::Backward(id)) => to = to.min(id_time(id)),
        None => {}
    }
    let within = (from, to);
    let all: Vec<Listed> = listed(
        &stream,
        store::events(call.store, &call.space, &group, &stream, Some(within))?,
    )
    .into_iter()
    .filter(|l| in_range(l.event.timestamp))
    .collect();
    // Which end the page is taken from: the token's direction, or the
    // head or tail of the stream.
    let (candidates, from_head): (Vec<&Listed>, bool) = match &token {
        Some(Token::Forward(after)) => (all.iter().filter(|l| &l.id > after).collect(), true),
        Some(Token::Backward(before)) => (all.iter().filter(|l| &l.id < before).collect(), false),
        None => (all.iter().collect(), req.start_from_head.unwrap_or(false)),
    };
    let mut chosen: Vec<&Listed> = Vec::new();
    let mut bytes = 0;
    let ordered: Box<dyn Iterator<Item = &&Listed>> = if from_head {
        Box::new(candidates.iter())
    } else {
        Box::new(candidates.iter().rev())
    };
    for l in ordered {
        let size = store::event_size(&l.event.message);
        if chosen.len() == limit || (!chosen.is_empty() && bytes + size > MAX_ANSWER_BYTES) {
            break;
        }
        bytes += size;
        chosen.push(l);
    }
    if !from_head {
        chosen.reverse();
    }
    // With no events, the tokens stay where they were, so a reader polling
    // the tail sees the same token until new events come.
    let zero = "0".repeat(56);
    let (forward, backward) = match (chosen.first(), chosen.last(), &token) {
        (Some(first), Some(last), _) => (
            Token::Forward(last.id.clone()),
            Token::Backward(first.id.clone()),
        ),
        (_, _, Some(Token::Forward(id))) => {
            (Token::Forward(id.clone()), Token::Backward(id.clone()))
        }
        (_, _, Some(Token::Backward(id))) => {
            (Token::Forward(id.clone()), Token::Backward(id.clone()))
        }
        _ => (Token::Forward(zero.clone()), Token::Backward(zero)),
    };
    let events: Vec<Value> = chosen
        .iter()
        .map(|l| {
            json!({
                "timestamp": l.event.timestamp,
                "message": l.event.message,
                "ingestionTime": l.event.ingestion,
            })
        })
        .collect();
    Ok(json!({
        "events": events,
        "nextForwardToken": forward.write(),
        "nextBackwardToken": backward.write(),
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterLogEvents {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// Streams FilterLogEvents searches at most, when named.
const MAX_NAMED_STREAMS: usize = 100;

pub(super) fn filter_log_events(call: &Call, body: &[u8]) -> Result<Value, LogsError> {
    let req: FilterLogEvents = input(body)?;
    let name = group_name(call, &req.log_group_name, &req.log_group_identifier)?;
    let limit = page_limit(req.limit, MAX_EVENTS)?;
    if req.log_stream_names.is_some() && req.log_stream_name_prefix.is_some() {
        return Err(invalid(
            "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
        ));
    }
    if let Some(names) = &req.log_stream_names {
        if names.is_empty() || names.len() > MAX_NAMED_STREAMS {
            return Err(invalid(format!(
                "logStreamNames must name 1 to {MAX_NAMED_STREAMS} streams; it names {}",
                names.len()
            )));
        }
        for n in names {
            check_stream_name(n, "logStreamNames")?;
        }
    }
    let prefix = req.log_stream_name_prefix.as_deref().unwrap_or("");
    if !prefix.is_empty() {
        check_stream_name(prefix, "logStreamNamePrefix")?;
    }
    let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or(""))
        .map_err(LogsError::InvalidParameter)?;
    let group: Group =
        store::read(call.store, &call.space.group_key(name))?.ok_or_else(group_not_found)?;
    let mut key_prefix = call.space.streams_prefix(group.uid);
    key_prefix.extend_from_slice(prefix.as_bytes());
    let streams: Vec<Stream> = store::list(call.store, &key_prefix)?;
    // Both ends inclusive, as AWS documents them for this action.
    let in_range =
        |t: i64| req.start_time.is_none_or(|s| t >= s) && req.end_time.is_none_or(|e| t <= e);
    // Only the chunks that may hold events in range, and past the token
    // (whose event ID starts with its time).
    let after = req
        .next_token
        .as_deref()
        .and_then(|t| hex::decode(t).ok())
        .and_then(|id| String::from_utf8(id).ok())
        .map_or(i64::MIN, |id| id_time(&id));
    let within = (
        req.start_time.unwrap_or(i64::MIN).max(after),
        req.end_time.unwrap_or(i64::MAX),
    );
    // Each found event keyed by its ID, which it also answers with.
    let mut found: Vec<(String, (String, &str, StoredEvent))> = Vec::new();
    for stream in &streams {
        if let Some(names) = &req.log_stream_names
            && !names.contains(&stream.name)
        {
            continue;
        }
        let events = store::events(call.store, &call.space, &group, stream, Some(within))?;
        for l in listed(stream, events) {
            if in_range(l.event.timestamp) && pattern.matches(&l.event.message) {
                found.push((l.id.clone(), (l.id, stream.name.as_str(), l.event)));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let (events, next) = page(found, false, req.next_token.as_deref(), limit)?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|(id, stream, event)| {
            json!({
                "logStreamName": stream,
                "timestamp": event.timestamp,
                "message": event.message,
                "ingestionTime": event.ingestion,
                "eventId": id,
            })
        })
        .collect();
    let mut answer = json!({ "events": events });
    if let Some(next) = next {
        answer["nextToken"] = json!(next);
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn batches_must_be_chronological_bounded_and_within_a_day() {
        let e = accept(&[(NOW, "b"), (NOW - 1, "a")], NOW).unwrap_err();
        assert!(e.to_string().contains("chronological order"), "{e}");
        let e = accept(&[(NOW - MAX_BATCH_SPAN_MS - 1, "a"), (NOW, "b")], NOW).unwrap_err();
        assert!(e.to_string().contains("24 hours"), "{e}");
        assert!(accept(&[], NOW).is_err());
        let big = "x".repeat(600_000);
        let e = accept(&[(NOW, &big), (NOW, &big)], NOW).unwrap_err();
        assert!(e.to_string().starts_with("Upload too large"), "{e}");
    }

    #[test]
    fn too_old_and_too_new_events_are_reported_not_stored() {
        let old = NOW - TOO_OLD_MS - 1;
        let new = NOW + TOO_NEW_MS + 1;
        // All within 24 hours of each other is impossible across 14 days,
        // so each end is checked on its own.
        let got = accept(&[(old - 2, "a"), (old - 1, "b"), (old, "c")], NOW).unwrap();
        assert_eq!(got.too_old_end, Some(3));
        assert!(got.kept.is_empty());
        let got = accept(&[(NOW, "a"), (new, "b")], NOW).unwrap();
        assert_eq!(
            got,
            Accepted {
                kept: 0..1,
                too_new_start: Some(1),
                too_old_end: None
            }
        );
    }

    #[test]
    fn tokens_name_a_direction_and_an_event() {
        let t = Token::parse("f/0123").unwrap();
        assert_eq!(t, Token::Forward("0123".to_owned()));
        assert_eq!(t.write(), "f/0123");
        assert_eq!(
            Token::parse("b/9").unwrap(),
            Token::Backward("9".to_owned())
        );
        for bad in ["", "f/", "x/1", "f/1a", "f1"] {
            assert!(Token::parse(bad).is_err(), "{bad}");
        }
    }
}
