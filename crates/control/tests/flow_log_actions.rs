//! Flow logs over the in-memory store, without HTTP: CreateFlowLogs'
//! parameter checks and per-resource failures, the format and destination
//! rules, FlowLogAlreadyExists, client tokens, DescribeFlowLogs' filters and
//! DeleteFlowLogs (spec 8, 12.1, 12.3).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc, vpc_with};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

const ROLE: &str = "arn:aws:iam::111111111111:role/flow";

fn s3(resources: &str, bucket: &str) -> String {
    format!(
        "Action=CreateFlowLogs&ResourceType=VPC{resources}&TrafficType=ALL&LogDestinationType=s3&LogDestination=arn:aws:s3:::{bucket}"
    )
}

fn cwl(resources: &str, group: &str) -> String {
    format!(
        "Action=CreateFlowLogs&ResourceType=VPC{resources}&TrafficType=ALL&LogGroupName={group}&DeliverLogsPermissionArn={ROLE}"
    )
}

fn ids(store: &dyn Store, a: &Account, query: &str) -> Vec<String> {
    let xml = call(store, a, query).unwrap();
    let set = xml
        .split("<flowLogIdSet>")
        .nth(1)
        .map(|s| s.split("</flowLogIdSet>").next().unwrap().to_owned())
        .unwrap_or_default();
    all(&set, "item")
}

fn describe(store: &dyn Store, a: &Account, query: &str) -> Vec<String> {
    all(
        &call(store, a, &format!("Action=DescribeFlowLogs{query}")).unwrap(),
        "flowLogId",
    )
}

// spec 8.1, 8.2: an S3 flow log for a VPC gets an fl- ID, the default v2
// format, interval 600, plain-text destination options, and status
// SUCCESS/ACTIVE.
#[test]
fn create_s3_defaults() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let made = ids(
        &store,
        &a,
        &s3(&format!("&ResourceId.1={v}"), "bucket-1/logs"),
    );
    assert_eq!(made.len(), 1);
    assert!(made[0].starts_with("fl-"));
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeFlowLogs&FlowLogId.1={}", made[0]),
    )
    .unwrap();
    assert_eq!(first(&xml, "resourceId"), v);
    assert_eq!(first(&xml, "trafficType"), "ALL");
    assert_eq!(first(&xml, "logDestinationType"), "s3");
    assert_eq!(first(&xml, "logDestination"), "arn:aws:s3:::bucket-1/logs");
    assert_eq!(first(&xml, "maxAggregationInterval"), "600");
    assert_eq!(first(&xml, "deliverLogsStatus"), "SUCCESS");
    assert_eq!(first(&xml, "flowLogStatus"), "ACTIVE");
    assert_eq!(first(&xml, "fileFormat"), "plain-text");
    assert_eq!(
        first(&xml, "logFormat"),
        "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}"
    );
}

// spec 8.2: CloudWatch Logs needs DeliverLogsPermissionArn; the group may
// come as an ARN; subnets and interfaces take flow logs too.
#[test]
fn create_cloud_watch_and_other_resources() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let subnet = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateSubnet&VpcId={v}&CidrBlock=10.0.1.0%2F24"),
        )
        .unwrap(),
        "subnetId",
    );
    let eni = first(
        &call(
            &store,
            &a,
            &format!("Action=CreateNetworkInterface&SubnetId={subnet}"),
        )
        .unwrap(),
        "networkInterfaceId",
    );
    let made = ids(
        &store,
        &a,
        &format!(
            "Action=CreateFlowLogs&ResourceType=Subnet&ResourceId.1={subnet}&TrafficType=REJECT&LogDestination=arn:aws:logs:us-east-1:111111111111:log-group:grp:*&DeliverLogsPermissionArn={ROLE}&MaxAggregationInterval=60"
        ),
    );
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeFlowLogs&FlowLogId.1={}", made[0]),
    )
    .unwrap();
    assert_eq!(first(&xml, "logGroupName"), "grp");
    assert_eq!(first(&xml, "deliverLogsPermissionArn"), ROLE);
    assert_eq!(first(&xml, "maxAggregationInterval"), "60");
    assert_eq!(first(&xml, "logDestinationType"), "cloud-watch-logs");
    let made = ids(
        &store,
        &a,
        &format!(
            "Action=CreateFlowLogs&ResourceType=NetworkInterface&ResourceId.1={eni}&TrafficType=ACCEPT&LogDestinationType=kinesis-data-firehose&LogDestination=arn:aws:firehose:us-east-1:111111111111:deliverystream/s"
        ),
    );
    assert_eq!(made.len(), 1);
}

// EC2's parameter checks, in its order and with its messages.
#[test]
fn create_parameter_errors() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let base = format!("Action=CreateFlowLogs&ResourceType=VPC&ResourceId.1={v}&TrafficType=ALL");
    let err = |q: &str| call(&store, &a, &format!("{base}{q}")).unwrap_err();
    let e = err("&LogDestinationType=s3&LogDestination=arn:aws:s3:::b12&MaxAggregationInterval=10");
    assert_eq!(
        (e.code.as_ref(), e.message.as_str()),
        (
            "InvalidParameter",
            "Invalid Flow Log Max Aggregation Interval"
        )
    );
    let e = err("&LogDestinationType=s3");
    assert_eq!(
        e.message,
        "LogDestination can't be empty if LogGroupName is not provided."
    );
    let e = err("&LogDestinationType=s3&LogGroupName=test");
    assert_eq!(
        e.message,
        "LogDestination type must be cloud-watch-logs if LogGroupName is provided."
    );
    let e = err("&LogGroupName=test");
    assert_eq!(
        e.message,
        "DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs."
    );
    assert_eq!(
        err("&LogDestinationType=s3&LogDestination=s3://b12").code,
        "InvalidParameter"
    );
    assert_eq!(
        err(&format!(
            "&LogDestinationType=s3&LogDestination=arn:aws:s3:::b12&DeliverLogsPermissionArn={ROLE}"
        ))
        .code,
        "InvalidParameter"
    );
    assert_eq!(
        err(&format!(
            "&LogGroupName=g&DeliverLogsPermissionArn={ROLE}&DestinationOptions.FileFormat=parquet"
        ))
        .code,
        "InvalidParameter"
    );
    assert_eq!(
        err("&LogDestinationType=s3&LogDestination=arn:aws:s3:::b12&DestinationOptions.FileFormat=csv").code,
        "InvalidParameterValue"
    );
    assert_eq!(
        err("&LogDestinationType=carrier-pigeon&LogDestination=x").code,
        "InvalidParameterValue"
    );
    let plain = |q: &str| {
        code(
            &store,
            &a,
            &format!("Action=CreateFlowLogs{q}&LogGroupName=g&DeliverLogsPermissionArn={ROLE}"),
        )
    };
    assert_eq!(
        plain(&format!(
            "&ResourceType=VPC&ResourceId.1={v}&TrafficType=SOME"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        plain(&format!(
            "&ResourceType=TransitGateway&ResourceId.1={v}&TrafficType=ALL"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        plain("&ResourceType=VPC&TrafficType=ALL"),
        "MissingParameter"
    );
    assert_eq!(
        plain(&format!("&ResourceId.1={v}&TrafficType=ALL")),
        "MissingParameter"
    );
    assert_eq!(
        plain(&format!("&ResourceType=VPC&ResourceId.1={v}")),
        "MissingParameter"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("{base}&LogDestinationType=s3&LogDestination=arn:aws:s3:::b12&DryRun=true")
        ),
        "DryRunOperation"
    );
    assert!(describe(&store, &a, "").is_empty(), "nothing was made");
}

// spec 8.1: a custom format names known fields of versions 2 to 8 as
// ${field}, separated by spaces; anything else is refused.
#[test]
fn custom_log_formats() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let format = "${version} ${vpc-id} ${subnet-id} ${instance-id} ${interface-id} ${account-id} ${type} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${pkt-srcaddr} ${pkt-dstaddr} ${protocol} ${bytes} ${packets} ${start} ${end} ${action} ${tcp-flags} ${log-status} ${region} ${az-id} ${flow-direction} ${traffic-path} ${reject-reason}";
    let encoded = format
        .replace('$', "%24")
        .replace('{', "%7B")
        .replace('}', "%7D")
        .replace(' ', "%20");
    let made = ids(
        &store,
        &a,
        &format!(
            "{}&LogFormat={encoded}",
            s3(&format!("&ResourceId.1={v}"), "b12")
        ),
    );
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeFlowLogs&FlowLogId.1={}", made[0]),
    )
    .unwrap();
    assert_eq!(first(&xml, "logFormat"), format);
    for bad in [
        "%24%7Bnot-a-field%7D",
        "version",
        "%24%7Bversion%7D%20%20%24%7Bsrcaddr%7D",
        "",
    ] {
        assert_eq!(
            code(
                &store,
                &a,
                &format!(
                    "{}&LogFormat={bad}",
                    s3(&format!("&ResourceId.1={v}"), "b13")
                )
            ),
            "InvalidParameter",
            "{bad}"
        );
    }
}

// spec 8.2: one flow log per resource, traffic type and destination.
#[test]
fn flow_log_already_exists() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let r = format!("&ResourceId.1={v}");
    ids(&store, &a, &s3(&r, "b12"));
    let e = call(&store, &a, &s3(&r, "b12")).unwrap_err();
    assert_eq!(e.code, "FlowLogAlreadyExists");
    assert_eq!(
        e.message,
        "Error. There is an existing Flow Log with the same configuration and log destination."
    );
    // Another bucket, another traffic type or another group is another flow log.
    ids(&store, &a, &s3(&r, "b13"));
    ids(
        &store,
        &a,
        &s3(&r, "b12").replace("TrafficType=ALL", "TrafficType=REJECT"),
    );
    ids(&store, &a, &cwl(&r, "g1"));
    assert_eq!(code(&store, &a, &cwl(&r, "g1")), "FlowLogAlreadyExists");
    assert_eq!(describe(&store, &a, "").len(), 4);
}

// Per-resource failures (a missing or malformed resource) go in
// `unsuccessful`; the others are made.
#[test]
fn unsuccessful_resources() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let xml = call(
        &store,
        &a,
        &s3(
            &format!("&ResourceId.1={v}&ResourceId.2=vpc-0123abcd&ResourceId.3=subnet-1"),
            "b12",
        ),
    )
    .unwrap();
    let set = xml.split("<unsuccessful>").nth(1).unwrap();
    assert_eq!(all(set, "resourceId"), ["vpc-0123abcd", "subnet-1"]);
    assert_eq!(
        all(set, "code"),
        ["InvalidVpcID.NotFound", "InvalidVpcID.Malformed"]
    );
    assert_eq!(describe(&store, &a, "").len(), 1);
}

// spec 12.1: a repeated ClientToken returns the first answer; with other
// parameters it is IdempotentParameterMismatch.
#[test]
fn client_token() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let q = format!(
        "{}&ClientToken=tok-1",
        s3(&format!("&ResourceId.1={v}"), "b12")
    );
    let first_ids = ids(&store, &a, &q);
    assert_eq!(ids(&store, &a, &q), first_ids);
    assert_eq!(
        code(&store, &a, &q.replace("b12", "b13")),
        "IdempotentParameterMismatch"
    );
    assert_eq!(describe(&store, &a, "").len(), 1);
}

// DescribeFlowLogs' filters (moto's list) and tags; TrafficType is taken in
// any case and its filter matches as it was written.
#[test]
fn describe_filters() {
    let store = MemoryStore::new();
    let a = account();
    let v1 = vpc(&store, &a);
    let v2 = vpc_with(&store, &a, "10.1.0.0/16");
    let fl1 = ids(&store, &a, &cwl(&format!("&ResourceId.1={v1}"), "grp"))[0].clone();
    let fl2 = ids(
        &store,
        &a,
        &format!(
            "{}&TagSpecification.1.ResourceType=vpc-flow-log&TagSpecification.1.Tag.1.Key=team&TagSpecification.1.Tag.1.Value=net",
            s3(&format!("&ResourceId.1={v2}"), "b12").replace("TrafficType=ALL", "TrafficType=Accept")
        ),
    )[0]
    .clone();
    let by = |f: &str, val: &str| {
        describe(
            &store,
            &a,
            &format!("&Filter.1.Name={f}&Filter.1.Value.1={val}"),
        )
    };
    assert_eq!(by("resource-id", &v1), [fl1.as_str()]);
    assert_eq!(by("log-destination-type", "s3"), [fl2.as_str()]);
    assert_eq!(by("log-group-name", "grp"), [fl1.as_str()]);
    assert_eq!(by("traffic-type", "Accept"), [fl2.as_str()]);
    assert_eq!(by("traffic-type", "ACCEPT"), [fl2.as_str()]);
    assert_eq!(by("flow-log-id", &fl1), [fl1.as_str()]);
    assert_eq!(by("deliver-log-status", "SUCCESS").len(), 2);
    assert_eq!(by("tag-key", "team"), [fl2.as_str()]);
    assert_eq!(by("tag:team", "net"), [fl2.as_str()]);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeFlowLogs&Filter.1.Name=unknown&Filter.1.Value.1=x"
        ),
        "InvalidParameterValue"
    );
    // Named flow logs that do not exist are left out, not an error.
    assert_eq!(
        describe(
            &store,
            &a,
            &format!("&FlowLogId.1={fl1}&FlowLogId.2=fl-0123abcd")
        ),
        [fl1.as_str()]
    );
    assert_eq!(
        code(&store, &a, "Action=DescribeFlowLogs&FlowLogId.1=vpc-1"),
        "InvalidFlowLogId.Malformed"
    );
    // Tags work through the tag actions too.
    call(
        &store,
        &a,
        &format!("Action=CreateTags&ResourceId.1={fl1}&Tag.1.Key=k&Tag.1.Value=v"),
    )
    .unwrap();
    assert_eq!(by("tag:k", "v"), [fl1]);
}

// DeleteFlowLogs: all missing is InvalidFlowLogId.NotFound with EC2's
// message; some missing go in `unsuccessful` while the rest are deleted.
#[test]
fn delete_flow_logs() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let made = ids(&store, &a, &s3(&format!("&ResourceId.1={v}"), "b12"));
    let e = call(
        &store,
        &a,
        "Action=DeleteFlowLogs&FlowLogId.1=fl-1a2b3c4d&FlowLogId.2=fl-2b3c4d5e",
    )
    .unwrap_err();
    assert_eq!(e.code, "InvalidFlowLogId.NotFound");
    assert_eq!(
        e.message,
        "These flow log ids in the input list are not found: [TotalCount: 2] fl-1a2b3c4d fl-2b3c4d5e"
    );
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=DeleteFlowLogs&FlowLogId.1={}&FlowLogId.2=fl-1a2b3c4d",
            made[0]
        ),
    )
    .unwrap();
    assert_eq!(all(&xml, "resourceId"), ["fl-1a2b3c4d"]);
    assert_eq!(first(&xml, "code"), "InvalidFlowLogId.NotFound");
    assert!(describe(&store, &a, "").is_empty());
    assert_eq!(
        code(&store, &a, "Action=DeleteFlowLogs"),
        "MissingParameter"
    );
    assert_eq!(
        code(&store, &a, "Action=DeleteFlowLogs&FlowLogId.1=vpc-1"),
        "InvalidFlowLogId.Malformed"
    );
}

// spec 8.1: a flow log goes with its resource.
#[test]
fn flow_log_goes_with_its_resource() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    ids(&store, &a, &s3(&format!("&ResourceId.1={v}"), "b12"));
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
    assert!(describe(&store, &a, "").is_empty());
}

// Issue 12: DeleteFlowLogs answers per item. A flow log deleted before,
// named again beside a live one, is reported in `unsuccessful` with its
// code while the live one is deleted; named alone, the call fails with
// EC2's not-found message (as moto's tests of AWS's answer expect), which
// tools treat as already gone.
#[test]
fn repeated_delete_flow_logs() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let w = vpc_with(&store, &a, "10.1.0.0/16");
    let made = ids(
        &store,
        &a,
        &s3(&format!("&ResourceId.1={v}&ResourceId.2={w}"), "b12"),
    );
    assert_eq!(made.len(), 2);
    call(
        &store,
        &a,
        &format!("Action=DeleteFlowLogs&FlowLogId.1={}", made[0]),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=DeleteFlowLogs&FlowLogId.1={}&FlowLogId.2={}",
            made[0], made[1]
        ),
    )
    .unwrap();
    assert!(
        xml.contains(&format!(
            "<unsuccessful><item><error><code>InvalidFlowLogId.NotFound</code><message>The flow log ID &apos;{0}&apos; does not exist</message></error><resourceId>{0}</resourceId></item></unsuccessful>",
            made[0]
        )),
        "{xml}"
    );
    assert!(describe(&store, &a, "").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteFlowLogs&FlowLogId.1={}", made[1])
        ),
        "InvalidFlowLogId.NotFound"
    );
}
