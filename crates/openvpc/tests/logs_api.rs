//! The CloudWatch Logs API (issue 18, flow logs' CloudWatch Logs
//! destination) driven by the real `aws logs` CLI against a real `openvpc
//! server`: groups, streams, events, filter patterns, the errors of the
//! botocore model, two accounts that never see each other's groups, and
//! events that survive a restart.
//!
//! Needs the CLI of scripts/test's venv (`OPENVPC_AWS_CLI`); skips without
//! it, unless `OPENVPC_REQUIRE_TOOLS` is set.

mod common;

use std::ffi::OsString;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Server, start};
use serde_json::{Value, json};

const GROUP: &str = "/openvpc/flow-logs";

fn aws_cli() -> Option<OsString> {
    let cli = std::env::var_os("OPENVPC_AWS_CLI");
    if cli.is_none() {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "OPENVPC_AWS_CLI is not set: run scripts/test"
        );
        eprintln!("skipping: OPENVPC_AWS_CLI is not set (scripts/test sets it)");
    }
    cli
}

/// `aws logs <args>` as `profile`: the JSON answer, or the CLI's stderr.
fn logs(cli: &OsString, server: &Server, profile: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(cli)
        .arg("logs")
        .args(args)
        .args(["--output", "json", "--profile", profile])
        .envs(server.env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("running the aws CLI");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_slice(&out.stdout).expect("the CLI prints JSON"))
}

fn ok(cli: &OsString, server: &Server, profile: &str, args: &[&str]) -> Value {
    logs(cli, server, profile, args).unwrap_or_else(|e| panic!("aws logs {args:?}: {e}"))
}

/// The error code of a call that must fail.
fn fails(cli: &OsString, server: &Server, profile: &str, args: &[&str]) -> String {
    match logs(cli, server, profile, args) {
        Ok(v) => panic!("aws logs {args:?} succeeded: {v}"),
        Err(e) => e,
    }
}

fn messages(events: &Value) -> Vec<String> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| e["message"].as_str().expect("a message").to_owned())
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Flow-log records in the default format (spec 8.1), as delivery writes them.
fn record(eni: &str, src: &str, dst: &str, port: u16, action: &str) -> String {
    format!(
        "2 123456789012 {eni} {src} {dst} 49152 {port} 6 3 180 1700000000 1700000060 {action} OK"
    )
}

#[test]
fn aws_logs_cli_against_the_server() {
    let Some(cli) = aws_cli() else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary data directory");
    drop(start(dir.path()));
    let status = Command::new(env!("CARGO_BIN_EXE_openvpc"))
        .args(["accounts", "create", "bob", "--data-dir"])
        .arg(dir.path())
        .status()
        .expect("running openvpc accounts create");
    assert!(status.success());
    let server = start(dir.path());
    let a = "default";

    // Groups: create, refuse a duplicate and a bad name, list with paging.
    ok(
        &cli,
        &server,
        a,
        &["create-log-group", "--log-group-name", GROUP],
    );
    let e = fails(
        &cli,
        &server,
        a,
        &["create-log-group", "--log-group-name", GROUP],
    );
    assert!(e.contains("ResourceAlreadyExistsException"), "{e}");
    let e = fails(
        &cli,
        &server,
        a,
        &["create-log-group", "--log-group-name", "bad name"],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");
    for extra in ["/openvpc/a", "/openvpc/b", "/other"] {
        ok(
            &cli,
            &server,
            a,
            &["create-log-group", "--log-group-name", extra],
        );
    }
    // --page-size 1: the CLI follows nextToken page by page.
    let listed = ok(
        &cli,
        &server,
        a,
        &[
            "describe-log-groups",
            "--log-group-name-prefix",
            "/openvpc/",
            "--page-size",
            "1",
        ],
    );
    let names: Vec<&str> = listed["logGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["logGroupName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/openvpc/a", "/openvpc/b", GROUP]);
    let group = &listed["logGroups"][2];
    let arn = group["arn"].as_str().unwrap();
    assert!(
        arn.starts_with("arn:aws:logs:") && arn.ends_with(&format!(":log-group:{GROUP}:*")),
        "{arn}"
    );
    assert!(group["creationTime"].as_i64().unwrap() > 0);
    assert_eq!(group["storedBytes"], 0);

    // Streams and events: one stream per ENI, as flow logs deliver them.
    for stream in ["eni-a-all", "eni-b-all"] {
        ok(
            &cli,
            &server,
            a,
            &[
                "create-log-stream",
                "--log-group-name",
                GROUP,
                "--log-stream-name",
                stream,
            ],
        );
    }
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "create-log-stream",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
        ],
    );
    assert!(e.contains("ResourceAlreadyExistsException"), "{e}");
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "create-log-stream",
            "--log-group-name",
            "/missing",
            "--log-stream-name",
            "s",
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    let t = now_ms() - 60_000;
    let batch_a = json!([
        {"timestamp": t, "message": record("eni-a", "10.0.1.5", "10.0.2.9", 22, "ACCEPT")},
        {"timestamp": t + 1, "message": record("eni-a", "10.0.1.5", "10.0.2.9", 23, "REJECT")},
        {"timestamp": t + 2, "message": record("eni-a", "10.0.1.5", "10.0.3.1", 80, "ACCEPT")},
    ])
    .to_string();
    let put = ok(
        &cli,
        &server,
        a,
        &[
            "put-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--log-events",
            &batch_a,
        ],
    );
    assert!(put["nextSequenceToken"].is_string(), "{put}");
    assert!(put.get("rejectedLogEventsInfo").is_none(), "{put}");
    let batch_b = json!([
        {"timestamp": t + 5, "message": record("eni-b", "10.0.2.9", "10.0.1.5", 443, "REJECT")},
    ])
    .to_string();
    ok(
        &cli,
        &server,
        a,
        &[
            "put-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-b-all",
            "--log-events",
            &batch_b,
        ],
    );
    // A batch out of order is refused whole; a missing stream is named.
    let unordered =
        json!([{"timestamp": t + 9, "message": "x"}, {"timestamp": t, "message": "y"}]).to_string();
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "put-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--log-events",
            &unordered,
        ],
    );
    assert!(
        e.contains("InvalidParameterException") && e.contains("chronological"),
        "{e}"
    );
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "put-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "nope",
            "--log-events",
            &batch_b,
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");

    // GetLogEvents: from the head, and the newest one with a token back.
    let got = ok(
        &cli,
        &server,
        a,
        &[
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--start-from-head",
        ],
    );
    let msgs = messages(&got["events"]);
    assert_eq!(msgs.len(), 3);
    assert!(
        msgs[1].contains(" 23 6 ") && msgs[1].ends_with("REJECT OK"),
        "{msgs:?}"
    );
    assert!(got["events"][0]["ingestionTime"].as_i64().unwrap() >= t);
    let newest = ok(
        &cli,
        &server,
        a,
        &[
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--limit",
            "1",
        ],
    );
    assert_eq!(newest["events"][0]["timestamp"], t + 2);
    let back = newest["nextBackwardToken"].as_str().unwrap().to_owned();
    let before = ok(
        &cli,
        &server,
        a,
        &[
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--next-token",
            &back,
        ],
    );
    assert_eq!(before["events"].as_array().unwrap().len(), 2);
    let fwd = newest["nextForwardToken"].as_str().unwrap().to_owned();
    let after = ok(
        &cli,
        &server,
        a,
        &[
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
            "--next-token",
            &fwd,
        ],
    );
    assert!(after["events"].as_array().unwrap().is_empty());
    assert_eq!(
        after["nextForwardToken"],
        fwd.as_str(),
        "no new events: the same token"
    );

    // Streams report their events' times, newest first on request.
    let streams = ok(
        &cli,
        &server,
        a,
        &[
            "describe-log-streams",
            "--log-group-name",
            GROUP,
            "--order-by",
            "LastEventTime",
            "--descending",
        ],
    );
    let s = &streams["logStreams"];
    assert_eq!(s[0]["logStreamName"], "eni-b-all");
    assert_eq!(s[1]["firstEventTimestamp"], t);
    assert_eq!(s[1]["lastEventTimestamp"], t + 2);
    assert!(s[1]["lastIngestionTime"].as_i64().unwrap() >= t);
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "describe-log-streams",
            "--log-group-name",
            GROUP,
            "--order-by",
            "LastEventTime",
            "--log-stream-name-prefix",
            "eni",
        ],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");
    let stored = ok(
        &cli,
        &server,
        a,
        &["describe-log-groups", "--log-group-name-prefix", GROUP],
    );
    assert!(stored["logGroups"][0]["storedBytes"].as_u64().unwrap() > 0);

    // FilterLogEvents: terms, alternatives, quoted phrases, streams, paging.
    let filter = |extra: &[&str]| {
        let mut args = vec!["filter-log-events", "--log-group-name", GROUP];
        args.extend_from_slice(extra);
        ok(&cli, &server, a, &args)
    };
    let rejects = filter(&["--filter-pattern", "REJECT"]);
    let events = rejects["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["logStreamName"], "eni-a-all");
    assert_eq!(events[1]["logStreamName"], "eni-b-all");
    assert!(events[0]["eventId"].is_string());
    assert_eq!(
        messages(&filter(&["--filter-pattern", "REJECT 10.0.2.9 443"])["events"]).len(),
        1
    );
    assert_eq!(
        messages(&filter(&["--filter-pattern", "?443 ?80"])["events"]).len(),
        2
    );
    assert_eq!(
        messages(&filter(&["--filter-pattern", "\"10.0.1.5 10.0.3.1\""])["events"]).len(),
        1
    );
    assert_eq!(
        messages(&filter(&["--log-stream-names", "eni-b-all"])["events"]).len(),
        1
    );
    assert_eq!(
        messages(
            &filter(&[
                "--start-time",
                &(t + 1).to_string(),
                "--end-time",
                &(t + 2).to_string()
            ])["events"]
        )
        .len(),
        2
    );
    assert_eq!(messages(&filter(&["--page-size", "1"])["events"]).len(), 4);
    let e = fails(
        &cli,
        &server,
        a,
        &[
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--filter-pattern",
            "[version, account]",
        ],
    );
    assert!(e.contains("InvalidParameterException"), "{e}");

    // Isolation: bob sees none of it and may use the same names.
    let b = "bob";
    let none = ok(&cli, &server, b, &["describe-log-groups"]);
    assert_eq!(none["logGroups"], json!([]));
    let e = fails(
        &cli,
        &server,
        b,
        &[
            "get-log-events",
            "--log-group-name",
            GROUP,
            "--log-stream-name",
            "eni-a-all",
        ],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    ok(
        &cli,
        &server,
        b,
        &["create-log-group", "--log-group-name", GROUP],
    );
    let bobs = ok(
        &cli,
        &server,
        b,
        &["filter-log-events", "--log-group-name", GROUP],
    );
    assert_eq!(bobs["events"], json!([]));

    // Events survive a restart.
    drop(server);
    let server = start(dir.path());
    let again = ok(
        &cli,
        &server,
        a,
        &[
            "filter-log-events",
            "--log-group-name",
            GROUP,
            "--filter-pattern",
            "REJECT",
        ],
    );
    assert_eq!(again["events"], rejects["events"]);

    // Deleting a group deletes its streams and events.
    ok(
        &cli,
        &server,
        a,
        &["delete-log-group", "--log-group-name", GROUP],
    );
    let e = fails(
        &cli,
        &server,
        a,
        &["delete-log-group", "--log-group-name", GROUP],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    let e = fails(
        &cli,
        &server,
        a,
        &["describe-log-streams", "--log-group-name", GROUP],
    );
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    ok(
        &cli,
        &server,
        a,
        &["create-log-group", "--log-group-name", GROUP],
    );
    let fresh = ok(
        &cli,
        &server,
        a,
        &["describe-log-streams", "--log-group-name", GROUP],
    );
    assert_eq!(
        fresh["logStreams"],
        json!([]),
        "a group made again starts empty"
    );
    // bob's group of the same name was never touched.
    let bobs = ok(&cli, &server, b, &["describe-log-groups"]);
    assert_eq!(bobs["logGroups"].as_array().unwrap().len(), 1);
}
