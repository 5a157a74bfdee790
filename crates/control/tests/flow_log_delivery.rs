//! The server's side of flow logs (issue 18, spec 8.2), without root: the
//! records a node sends become files at the documented S3 keys under the
//! data directory, or events in the flow log's log group, one stream per
//! ENI; a destination that cannot be written turns the flow log's
//! `deliverLogsStatus` to `FAILED` with the reason, and a later good
//! write turns it back; records of deleted flow logs are counted, not
//! written.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{account, call, first, vpc};
use openvpc_control::account::Account;
use openvpc_control::fleet::Fleet;
use openvpc_control::fleet::flow_log_delivery::{Delivery, DeliveryConfig, s3_root};
use openvpc_control::store::MemoryStore;
use openvpc_model::flow_log::{
    Action, EniContext, FlowDirection, FlowFields, FlowRecord, FlowRecordBatch, LogStatus,
};

const REGION: &str = "us-east-1";
const ENI: &str = "eni-0123456789abcdef0";

fn flow_log(store: &MemoryStore, a: &Account, query: &str) -> String {
    let xml = call(store, a, &format!("Action=CreateFlowLogs{query}")).unwrap();
    first(&xml, "item")
}

fn status(store: &MemoryStore, a: &Account, id: &str) -> (String, String) {
    let xml = call(
        store,
        a,
        &format!("Action=DescribeFlowLogs&FlowLogId.1={id}"),
    )
    .unwrap();
    let message = xml
        .split("<deliverLogsErrorMessage>")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .unwrap_or("")
        .to_owned();
    (first(&xml, "deliverLogsStatus"), message)
}

fn batch(a: &Account, vpc: &str, flow_log_id: &str, start: i64) -> FlowRecordBatch {
    let ctx = EniContext {
        eni_id: ENI.into(),
        account_id: a.id.clone(),
        vpc_id: vpc.into(),
        subnet_id: "subnet-0123456789abcdef0".into(),
        instance_id: Some("i-0123456789abcdef0".into()),
        primary_ip: "10.0.1.10".parse().unwrap(),
        az_id: "use1-az1".into(),
    };
    let record = |action, dst_port, packets| FlowRecord {
        flow_log_id: flow_log_id.into(),
        eni_id: ENI.into(),
        status: LogStatus::Ok,
        start,
        end: start + 5,
        flow: Some(FlowFields {
            src: "10.0.1.10".parse().unwrap(),
            dst: "10.0.1.20".parse().unwrap(),
            pkt_src: "10.0.1.10".parse().unwrap(),
            pkt_dst: "10.0.1.20".parse().unwrap(),
            src_port: 40000,
            dst_port,
            protocol: 6,
            packets,
            bytes: packets * 60,
            action,
            tcp_flags: 2,
            direction: FlowDirection::Egress,
            traffic_path: None,
        }),
    };
    FlowRecordBatch {
        node_id: "h1".into(),
        enis: vec![ctx],
        records: vec![record(Action::Accept, 22, 3), record(Action::Reject, 23, 1)],
    }
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn delivery(store: &Arc<MemoryStore>, dir: &Path) -> (Arc<Fleet>, Delivery) {
    let fleet = Fleet::load(Arc::clone(store) as _).unwrap();
    let config = DeliveryConfig {
        publish_every_secs: 5,
        max_bytes: 1 << 20,
    };
    let d = Delivery::new(Arc::clone(&fleet), dir, REGION, config);
    (fleet, d)
}

// spec 8.2: S3 files at the documented key, gzip with the header line,
// published once the oldest record is the interval old.
#[test]
fn records_become_a_text_file_at_the_documented_key() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let id = flow_log(
        &store,
        &a,
        &format!(
            "&ResourceType=VPC&ResourceId.1={v}&TrafficType=ALL&LogDestinationType=s3&LogDestination=arn:aws:s3:::my-bucket/team"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let (fleet, d) = delivery(&store, dir.path());
    fleet.catch_up().unwrap();
    d.accept(&batch(&a, &v, &id, 1_796_000_000), 1_000);
    d.tick(1_004);
    assert!(files(&s3_root(dir.path())).is_empty(), "not due before 5 s");
    d.tick(1_005);
    let written = files(&s3_root(dir.path()));
    assert_eq!(written.len(), 1, "{written:?}");
    let rel = written[0]
        .strip_prefix(s3_root(dir.path()))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let want = format!(
        "my-bucket/team/AWSLogs/{}/vpcflowlogs/{REGION}/1970/01/01/",
        a.id
    );
    assert!(rel.starts_with(&want), "{rel} starts with {want}");
    let name = rel.rsplit('/').next().unwrap();
    assert!(
        name.starts_with(&format!(
            "{}_vpcflowlogs_{REGION}_{id}_19700101T0016Z_",
            a.id
        )),
        "{name}"
    );
    assert!(name.ends_with(".log.gz"), "{name}");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&written[0]).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status",
            &format!(
                "2 {} {ENI} 10.0.1.10 10.0.1.20 40000 22 6 3 180 1796000000 1796000005 ACCEPT OK",
                a.id
            ),
            &format!(
                "2 {} {ENI} 10.0.1.10 10.0.1.20 40000 23 6 1 60 1796000000 1796000005 REJECT OK",
                a.id
            ),
        ]
    );
    assert_eq!(status(&store, &a, &id).0, "SUCCESS");
    assert_eq!(d.counters.files_written.load(Ordering::Relaxed), 1);
}

// The API tells the truth: a bucket that cannot be written makes the flow
// log FAILED with the reason; once it can, SUCCESS again.
#[test]
fn an_unwritable_bucket_fails_the_flow_log_until_it_can_be_written() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let id = flow_log(
        &store,
        &a,
        &format!(
            "&ResourceType=VPC&ResourceId.1={v}&TrafficType=ALL&LogDestinationType=s3&LogDestination=arn:aws:s3:::blocked"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(s3_root(dir.path())).unwrap();
    std::fs::write(s3_root(dir.path()).join("blocked"), "a file, not a bucket").unwrap();
    let (fleet, d) = delivery(&store, dir.path());
    fleet.catch_up().unwrap();
    d.accept(&batch(&a, &v, &id, 1_796_000_000), 1_000);
    d.tick(1_010);
    let (state, message) = status(&store, &a, &id);
    assert_eq!(state, "FAILED");
    assert!(message.contains("blocked"), "{message}");
    assert_eq!(d.counters.files_failed.load(Ordering::Relaxed), 1);

    std::fs::remove_file(s3_root(dir.path()).join("blocked")).unwrap();
    fleet.catch_up().unwrap();
    d.accept(&batch(&a, &v, &id, 1_796_000_100), 1_020);
    d.tick(1_030);
    assert_eq!(status(&store, &a, &id), ("SUCCESS".into(), String::new()));
}

// spec 8.2: CloudWatch Logs: the group (made if missing) gets one stream
// per ENI, with the records as events in the flow log's format.
#[test]
fn records_become_events_in_a_stream_per_eni() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let id = flow_log(
        &store,
        &a,
        &format!(
            "&ResourceType=VPC&ResourceId.1={v}&TrafficType=ALL&LogDestinationType=cloud-watch-logs&LogGroupName=flows&DeliverLogsPermissionArn=arn:aws:iam::123456789012:role/f&LogFormat=%24%7Bversion%7D%20%24%7Btcp-flags%7D%20%24%7Baction%7D"
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let (fleet, d) = delivery(&store, dir.path());
    fleet.catch_up().unwrap();
    d.accept(&batch(&a, &v, &id, 1_796_000_000), 1_000);
    assert_eq!(d.counters.events_delivered.load(Ordering::Relaxed), 2);
    assert_eq!(status(&store, &a, &id).0, "SUCCESS");
}

// Records of a flow log deleted while they were on their way are counted
// and written nowhere.
#[test]
fn records_of_a_deleted_flow_log_are_counted_not_written() {
    let store = Arc::new(MemoryStore::new());
    let a = account();
    let v = vpc(store.as_ref(), &a);
    let dir = tempfile::tempdir().unwrap();
    let (fleet, d) = delivery(&store, dir.path());
    fleet.catch_up().unwrap();
    d.accept(&batch(&a, &v, "fl-0123456789abcdef0", 1_796_000_000), 1_000);
    d.tick(2_000);
    assert_eq!(d.counters.records_orphaned.load(Ordering::Relaxed), 2);
    assert!(files(dir.path()).is_empty());
}
