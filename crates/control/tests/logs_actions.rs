//! The CloudWatch Logs API below HTTP (issue 18, flow logs' CloudWatch
//! Logs destination): `deliver_events` as the flow-log delivery calls it
//! (a missing group and stream are created, a batch is one store write,
//! a full stream drops its oldest events and counts them), accounts that
//! never see each other's groups, a deleted group's keys all gone, and
//! requests through the server's signed path answered in the JSON
//! protocol's codes. The real `aws logs` CLI is driven in
//! `crates/openvpc/tests/logs_api.rs`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openvpc_control::account::{self, Account};
use openvpc_control::actions::Ctx;
use openvpc_control::api::logs::{self, store as logstore};
use openvpc_control::server::{ApiState, execute};
use openvpc_control::sigv4;
use openvpc_control::store::{MemoryStore, Store};
use serde_json::{Value, json};

const REGION: &str = "us-east-1";

/// Runs a CloudWatch Logs action as `account`, below HTTP.
fn call(store: &dyn Store, account: &Account, action: &str, body: Value) -> Result<Value, String> {
    let ctx = Ctx {
        store,
        account,
        region: REGION,
        request_id: "req-test",
        fleet: None,
    };
    let target = format!("{}{action}", logs::TARGET_PREFIX);
    logs::dispatch(&ctx, Some(&target), body.to_string().as_bytes())
        .map(|s| serde_json::from_str(&s).unwrap())
        .map_err(|e| e.code.into_owned())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn messages(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

// Issue 18: AWS's flow logs create a missing log group, and one stream per
// ENI; delivered events read back in timestamp order.
#[test]
fn delivery_creates_the_group_and_stream_and_events_read_back_in_order() {
    let store = MemoryStore::new();
    let a = common::account();
    let t = now_ms();
    let events = vec![
        (t + 2, "third REJECT".to_owned()),
        (t, "first ACCEPT".to_owned()),
        (t + 1, "second ACCEPT".to_owned()),
    ];
    let before = store.revision().unwrap();
    logs::deliver_events(&store, &a.id, REGION, "/vpc/flow", "eni-1-all", &events).unwrap();
    assert_eq!(
        store.revision().unwrap(),
        before + 1,
        "group, stream and events in one store write"
    );
    assert!(logs::group_exists(&store, &a.id, REGION, "/vpc/flow").unwrap());
    let got = call(
        &store,
        &a,
        "GetLogEvents",
        json!({"logGroupName": "/vpc/flow", "logStreamName": "eni-1-all", "startFromHead": true}),
    )
    .unwrap();
    assert_eq!(
        messages(&got),
        ["first ACCEPT", "second ACCEPT", "third REJECT"]
    );
    // A second delivery appends to the same stream: one more write.
    let before = store.revision().unwrap();
    logs::deliver_events(
        &store,
        &a.id,
        REGION,
        "/vpc/flow",
        "eni-1-all",
        &[(t + 3, "fourth REJECT".to_owned())],
    )
    .unwrap();
    assert_eq!(store.revision().unwrap(), before + 1);
    let rejects = call(
        &store,
        &a,
        "FilterLogEvents",
        json!({"logGroupName": "/vpc/flow", "filterPattern": "REJECT"}),
    )
    .unwrap();
    assert_eq!(messages(&rejects), ["third REJECT", "fourth REJECT"]);
    // Bad names are refused before anything is written.
    let e = logs::deliver_events(&store, &a.id, REGION, "bad name", "s", &events).unwrap_err();
    assert_eq!(e.code(), "InvalidParameterException");
}

// Bounded storage: a stream keeps at most MAX_STREAM_EVENTS events; the
// oldest go first, whole chunks at a time, and are counted.
#[test]
fn a_full_stream_drops_its_oldest_events_and_counts_them() {
    let store = MemoryStore::new();
    let a = common::account();
    let t = now_ms() - 3_600_000;
    let total = logstore::MAX_STREAM_EVENTS as usize + 2 * logstore::CHUNK_EVENTS as usize + 10;
    let events: Vec<(i64, String)> = (0..total)
        .map(|i| (t + i as i64, format!("event {i}")))
        .collect();
    logs::deliver_events(&store, &a.id, REGION, "g", "s", &events).unwrap();
    let space = logstore::Space::new(&a.id, REGION);
    let group: logstore::Group = logstore::read(&store, &space.group_key("g"))
        .unwrap()
        .unwrap();
    let stream: logstore::Stream = logstore::read(&store, &space.stream_key(group.uid, "s"))
        .unwrap()
        .unwrap();
    let kept = logstore::events(&store, &space, &group, &stream, None).unwrap();
    assert!(kept.len() as u64 <= logstore::MAX_STREAM_EVENTS);
    assert_eq!(kept.len() as u64 + stream.dropped_events, total as u64);
    assert!(stream.dropped_events > 0);
    // The newest event is kept; the oldest are the ones gone.
    assert_eq!(kept.last().unwrap().message, format!("event {}", total - 1));
    assert_eq!(
        kept.first().unwrap().message,
        format!("event {}", stream.dropped_events)
    );
    // Chunks in the store are exactly those the stream lists.
    let chunks = store
        .range(
            &space.chunks_prefix(group.uid, stream.uid),
            None,
            usize::MAX,
        )
        .unwrap();
    assert_eq!(chunks.len(), stream.chunks.len());
    // A read for a time range reads only the chunks that overlap it.
    let at = t + 5_000;
    let some = logstore::events(&store, &space, &group, &stream, Some((at, at))).unwrap();
    assert!(some.len() <= logstore::CHUNK_EVENTS as usize);
    assert!(some.iter().any(|e| e.message == "event 5000"));
}

// Everything is per account: one account never sees another's groups,
// and may use the same names.
#[test]
fn accounts_never_see_each_others_groups() {
    let store = MemoryStore::new();
    let a = Account::generate("alice", None);
    let b = Account::generate("bob", None);
    let t = now_ms();
    logs::deliver_events(
        &store,
        &a.id,
        REGION,
        "shared",
        "s",
        &[(t, "alice's".to_owned())],
    )
    .unwrap();
    let listed = call(&store, &b, "DescribeLogGroups", json!({})).unwrap();
    assert_eq!(listed["logGroups"], json!([]));
    let e = call(
        &store,
        &b,
        "FilterLogEvents",
        json!({"logGroupName": "shared"}),
    )
    .unwrap_err();
    assert_eq!(e, "ResourceNotFoundException");
    call(
        &store,
        &b,
        "CreateLogGroup",
        json!({"logGroupName": "shared"}),
    )
    .unwrap();
    let e = call(
        &store,
        &b,
        "DeleteLogStream",
        json!({"logGroupName": "shared", "logStreamName": "s"}),
    )
    .unwrap_err();
    assert_eq!(e, "ResourceNotFoundException");
    // Bob's delete leaves alice's events alone.
    call(
        &store,
        &b,
        "DeleteLogGroup",
        json!({"logGroupName": "shared"}),
    )
    .unwrap();
    let hers = call(
        &store,
        &a,
        "FilterLogEvents",
        json!({"logGroupName": "shared"}),
    )
    .unwrap();
    assert_eq!(messages(&hers), ["alice's"]);
    // Another region is another key space.
    assert!(!logs::group_exists(&store, &a.id, "eu-west-1", "shared").unwrap());
}

// DeleteLogGroup deletes the group's streams and events too: nothing of
// it is left in the store, tombstones included.
#[test]
fn a_deleted_group_leaves_no_keys() {
    let store = MemoryStore::new();
    let a = common::account();
    let t = now_ms();
    for stream in ["s1", "s2", "s3"] {
        let events: Vec<(i64, String)> = (0..2_500).map(|i| (t + i, format!("m{i}"))).collect();
        logs::deliver_events(&store, &a.id, REGION, "g", stream, &events).unwrap();
    }
    assert!(
        !store
            .range(logstore::PREFIX, None, usize::MAX)
            .unwrap()
            .is_empty()
    );
    call(&store, &a, "DeleteLogGroup", json!({"logGroupName": "g"})).unwrap();
    assert_eq!(
        store.range(logstore::PREFIX, None, usize::MAX).unwrap(),
        vec![]
    );
    let e = call(&store, &a, "DeleteLogGroup", json!({"logGroupName": "g"})).unwrap_err();
    assert_eq!(e, "ResourceNotFoundException");
}

// The botocore model's errors for the actions' bad input.
#[test]
fn bad_input_gets_the_models_error_codes() {
    let store = MemoryStore::new();
    let a = common::account();
    let cases = [
        ("CreateLogGroup", json!({"logGroupName": "a b"})),
        ("CreateLogGroup", json!({})),
        ("DescribeLogGroups", json!({"limit": 51})),
        ("DescribeLogGroups", json!({"nextToken": "not-hex"})),
        (
            "FilterLogEvents",
            json!({"logGroupName": "g", "filterPattern": "{ $.a = 1 }"}),
        ),
        (
            "FilterLogEvents",
            json!({"logGroupName": "g", "logStreamNames": ["a"], "logStreamNamePrefix": "a"}),
        ),
        (
            "GetLogEvents",
            json!({"logGroupName": "g", "logStreamName": "s", "nextToken": "x/1"}),
        ),
        (
            "DescribeLogStreams",
            json!({"logGroupName": "g", "logGroupIdentifier": "g"}),
        ),
    ];
    call(&store, &a, "CreateLogGroup", json!({"logGroupName": "g"})).unwrap();
    call(
        &store,
        &a,
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "s"}),
    )
    .unwrap();
    for (action, body) in cases {
        let e = call(&store, &a, action, body.clone()).unwrap_err();
        assert_eq!(e, "InvalidParameterException", "{action} {body}");
    }
    let e = call(&store, &a, "CreateLogGroup", json!({"logGroupName": "g"})).unwrap_err();
    assert_eq!(e, "ResourceAlreadyExistsException");
    let e = call(
        &store,
        &a,
        "CreateLogStream",
        json!({"logGroupName": "g", "logStreamName": "s"}),
    )
    .unwrap_err();
    assert_eq!(e, "ResourceAlreadyExistsException");
    let e = call(
        &store,
        &a,
        "GetLogEvents",
        json!({"logGroupName": "g", "logStreamName": "x"}),
    )
    .unwrap_err();
    assert_eq!(e, "ResourceNotFoundException");
    let e = call(&store, &a, "PutRetentionPolicy", json!({})).unwrap_err();
    assert_eq!(e, "UnknownOperationException");
    let ctx = Ctx {
        store: &store,
        account: &a,
        region: REGION,
        request_id: "r",
        fleet: None,
    };
    let target = format!("{}DescribeLogGroups", logs::TARGET_PREFIX);
    let e = logs::dispatch(&ctx, Some(&target), b"{not json").unwrap_err();
    assert_eq!(e.code, "SerializationException");
    // The JSON protocol's error body: __type and message.
    let body: Value = serde_json::from_str(&logs::error_body(&e)).unwrap();
    assert_eq!(body["__type"], "SerializationException");
    assert!(body["message"].is_string());
}

/// A request through the server's path, signed for `logs` with this key.
fn signed(
    state: &ApiState,
    key: &str,
    secret: &str,
    action: &str,
    body: &str,
) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut headers = vec![
        ("Host".to_owned(), "127.0.0.1".to_owned()),
        ("Content-Type".to_owned(), logs::CONTENT_TYPE.to_owned()),
        (
            "X-Amz-Target".to_owned(),
            format!("{}{action}", logs::TARGET_PREFIX),
        ),
    ];
    let request = sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let params = sigv4::SigningParams {
        access_key: key,
        secret_key: secret,
        region: REGION,
        service: "logs",
        time_unix: now,
        content_sha256_header: false,
    };
    headers.extend(sigv4::sign(&request, &params).unwrap());
    execute(state, "POST", "/", "", &headers, body.as_bytes(), "req")
        .map_err(|e| e.code.into_owned())
}

// Requests signed for `logs` are verified and resolved to their account
// like every other service's; an unknown key gets the JSON protocol's code.
#[test]
fn signed_requests_reach_the_callers_account() {
    let store = Arc::new(MemoryStore::new());
    let alice = Account::generate("alice", None);
    account::create(store.as_ref(), &alice).unwrap();
    let state = ApiState {
        store: store.clone(),
        moto_compat: None,
        agent: None,
    };
    let (key, secret) = (&alice.access_key_id, &alice.secret_access_key);
    signed(
        &state,
        key,
        secret,
        "CreateLogGroup",
        r#"{"logGroupName":"/signed"}"#,
    )
    .unwrap();
    let listed = signed(&state, key, secret, "DescribeLogGroups", "{}").unwrap();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["logGroups"][0]["logGroupName"], "/signed");
    assert!(logs::group_exists(store.as_ref(), &alice.id, REGION, "/signed").unwrap());
    let e = signed(
        &state,
        "AKIAUNKNOWN000000000",
        "x",
        "DescribeLogGroups",
        "{}",
    )
    .unwrap_err();
    assert_eq!(e, "UnrecognizedClientException");
    let e = signed(&state, key, "wrong-secret", "DescribeLogGroups", "{}").unwrap_err();
    assert_eq!(e, "InvalidSignatureException");
}
