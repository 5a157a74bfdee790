//! DescribeInstanceStatus over the in-memory store (issue 12, "a broken
//! instance is visible, as AWS shows it"): AWS's shapes, what each host's
//! health report makes of its instances' system and instance checks, the
//! parameters (IDs, IncludeAllInstances, filters, paging), the errors, the
//! per-account view, and the agent API's health endpoint that feeds it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{account, all, call, code, first, post, serve_agent_api};
use openvpc_control::account::Account;
use openvpc_control::fleet::health::{self, HOST_SILENT_AFTER_SECS, HostHealth, health_key};
use openvpc_control::fleet::registry;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::host::{HealthReport, HostRegistration, InstanceHealth, InstanceSetup, path};

const REGION: &str = "us-east-1";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct World {
    store: Arc<MemoryStore>,
    a: Account,
    subnet: String,
}

impl World {
    /// A VPC with a subnet in us-east-1a; host h1 serves that zone unless
    /// `hosts` is false.
    fn new(hosts: bool) -> World {
        let store = Arc::new(MemoryStore::new());
        let a = account();
        let vpc = first(
            &call(
                store.as_ref(),
                &a,
                "Action=CreateVpc&CidrBlock=10.0.0.0%2F16",
            )
            .unwrap(),
            "vpcId",
        );
        let subnet = first(
            &call(
                store.as_ref(),
                &a,
                &format!(
                    "Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.1.0%2F24&AvailabilityZone=us-east-1a"
                ),
            )
            .unwrap(),
            "subnetId",
        );
        if hosts {
            registry::register(
                store.as_ref(),
                REGION,
                &HostRegistration {
                    host_id: "h1".into(),
                    availability_zone: "us-east-1a".into(),
                    underlay_ip: "192.0.2.1".parse().unwrap(),
                },
                now(),
            )
            .unwrap();
        }
        World { store, a, subnet }
    }

    fn ok(&self, body: &str) -> String {
        call(self.store.as_ref(), &self.a, body).unwrap()
    }

    fn err(&self, body: &str) -> String {
        code(self.store.as_ref(), &self.a, body)
    }

    /// Launches `n` instances; their IDs.
    fn run(&self, n: u32) -> Vec<String> {
        all(
            &self.ok(&format!(
                "Action=RunInstances&ImageId=ami-12c6146b&MinCount={n}&MaxCount={n}&SubnetId={}",
                self.subnet
            )),
            "instanceId",
        )
    }

    /// h1 reports `instances` as of `at`.
    fn report(&self, at: i64, instances: &[(&str, InstanceSetup, Option<&str>)]) {
        let report = HealthReport {
            host_id: "h1".into(),
            instances: instances
                .iter()
                .map(|(id, setup, reason)| InstanceHealth {
                    instance_id: (*id).into(),
                    setup: *setup,
                    reason: reason.map(str::to_owned),
                    since: at - 7,
                })
                .collect(),
        };
        // Written directly, so the test picks the report's time.
        let record = HostHealth {
            host_id: "h1".into(),
            reported_at: at,
            instances: report.instances,
        };
        self.store
            .put(
                health_key(REGION, "h1").as_bytes(),
                &serde_json::to_vec(&record).unwrap(),
            )
            .unwrap();
    }

    fn status(&self, extra: &str) -> String {
        self.ok(&format!("Action=DescribeInstanceStatus{extra}"))
    }
}

/// The text of `<outer>…<inner>` inside the item of `id`.
fn item<'a>(xml: &'a str, id: &str) -> &'a str {
    let start = xml
        .find(&format!("<instanceId>{id}</instanceId>"))
        .unwrap_or_else(|| panic!("{id} not in {xml}"));
    let rest = &xml[start..];
    &rest[..rest.find("</eventsSet>").unwrap()]
}

fn check<'a>(item: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = item.find(&open).unwrap() + open.len();
    &item[start..item[start..].find(&format!("</{name}>")).unwrap() + start]
}

// Issue 12: AWS's shape: instanceState, then systemStatus and instanceStatus,
// each a status and one `reachability` detail.
#[test]
fn a_healthy_instance_on_a_reporting_host_is_ok() {
    let w = World::new(true);
    let ids = w.run(1);
    w.report(now(), &[(&ids[0], InstanceSetup::Ok, None)]);
    let xml = w.status("");
    assert!(xml.starts_with("<?xml") || xml.contains("<DescribeInstanceStatusResponse"));
    let it = item(&xml, &ids[0]);
    assert_eq!(first(it, "availabilityZone"), "us-east-1a");
    assert_eq!(
        check(it, "instanceState"),
        "<code>16</code><name>running</name>"
    );
    let want = "<status>ok</status><details><item><name>reachability</name><status>passed</status></item></details>";
    assert_eq!(check(it, "systemStatus"), want);
    assert_eq!(check(it, "instanceStatus"), want);
}

// Issue 12: an instance whose namespace, TAP or DHCP setup failed is
// impaired, with impairedSince; its host still answers, so the system
// check passes.
#[test]
fn a_failed_setup_is_impaired_since_it_failed() {
    let w = World::new(true);
    let ids = w.run(2);
    let at = now();
    w.report(
        at,
        &[
            (
                &ids[0],
                InstanceSetup::Impaired,
                Some("eth0 DHCP failed: exec"),
            ),
            (&ids[1], InstanceSetup::Initializing, None),
        ],
    );
    let xml = w.status("");
    let bad = item(&xml, &ids[0]);
    assert_eq!(first(check(bad, "systemStatus"), "status"), "ok");
    let inst = check(bad, "instanceStatus");
    assert_eq!(first(inst, "status"), "impaired");
    assert_eq!(all(inst, "status")[1], "failed");
    assert_eq!(first(inst, "name"), "reachability");
    let since = first(inst, "impairedSince");
    assert!(since.ends_with('Z') && since.contains('T'), "{since}");
    let init = check(item(&xml, &ids[1]), "instanceStatus");
    assert_eq!(all(init, "status"), ["initializing", "initializing"]);
}

// Be honest: a host that stopped reporting is impaired, and what it ran is
// unknown rather than ok.
#[test]
fn a_silent_host_makes_its_instances_system_impaired() {
    let w = World::new(true);
    let ids = w.run(1);
    w.report(
        now() - HOST_SILENT_AFTER_SECS - 5,
        &[(&ids[0], InstanceSetup::Ok, None)],
    );
    let xml = w.status("");
    let it = item(&xml, &ids[0]);
    assert_eq!(
        all(check(it, "systemStatus"), "status"),
        ["impaired", "failed"]
    );
    assert!(check(it, "systemStatus").contains("<impairedSince>"));
    assert_eq!(
        all(check(it, "instanceStatus"), "status"),
        ["insufficient-data", "insufficient-data"]
    );
    // A host that registered a moment ago and never reported yet is still
    // coming up.
    let w = World::new(true);
    let ids = w.run(1);
    let it_xml = w.status("");
    let it = item(&it_xml, &ids[0]);
    assert_eq!(
        all(check(it, "systemStatus"), "status"),
        ["initializing", "initializing"]
    );
}

// Nothing runs an instance of an API-only server: no check was made.
#[test]
fn an_unplaced_instance_has_insufficient_data() {
    let w = World::new(false);
    let ids = w.run(1);
    let xml = w.status("");
    let it = item(&xml, &ids[0]);
    for c in ["systemStatus", "instanceStatus"] {
        assert_eq!(
            all(check(it, c), "status"),
            ["insufficient-data", "insufficient-data"],
            "{c}"
        );
    }
}

// Only running instances by default; IncludeAllInstances adds the others
// as not-applicable, without details.
#[test]
fn include_all_instances_adds_stopped_ones_as_not_applicable() {
    let w = World::new(true);
    let ids = w.run(2);
    w.report(now(), &[(&ids[0], InstanceSetup::Ok, None)]);
    w.ok(&format!("Action=StopInstances&InstanceId.1={}", ids[1]));
    assert_eq!(all(&w.status(""), "instanceId"), [ids[0].clone()]);
    // A named instance that is not running is left out, not an error.
    assert!(
        all(
            &w.status(&format!("&InstanceId.1={}", ids[1])),
            "instanceId"
        )
        .is_empty()
    );
    let xml = w.status("&IncludeAllInstances=true");
    assert_eq!(all(&xml, "instanceId").len(), 2);
    let stopped = item(&xml, &ids[1]);
    assert_eq!(
        check(stopped, "instanceState"),
        "<code>80</code><name>stopped</name>"
    );
    assert_eq!(
        check(stopped, "systemStatus"),
        "<status>not-applicable</status><details></details>"
    );
}

#[test]
fn filters_select_by_check_state_and_zone() {
    let w = World::new(true);
    let ids = w.run(3);
    w.report(
        now(),
        &[
            (&ids[0], InstanceSetup::Ok, None),
            (&ids[1], InstanceSetup::Impaired, Some("eth0 TAP failed: x")),
        ],
    );
    w.ok(&format!("Action=StopInstances&InstanceId.1={}", ids[2]));
    let f = |name: &str, value: &str| {
        all(
            &w.status(&format!(
                "&IncludeAllInstances=true&Filter.1.Name={name}&Filter.1.Value.1={value}"
            )),
            "instanceId",
        )
    };
    assert_eq!(f("instance-status.status", "impaired"), [ids[1].clone()]);
    assert_eq!(
        f("instance-status.reachability", "failed"),
        [ids[1].clone()]
    );
    assert_eq!(f("instance-status.status", "ok"), [ids[0].clone()]);
    assert_eq!(f("system-status.status", "ok").len(), 2);
    assert_eq!(f("system-status.reachability", "passed").len(), 2);
    assert_eq!(
        f("system-status.status", "not-applicable"),
        [ids[2].clone()]
    );
    assert_eq!(f("instance-state-name", "stopped"), [ids[2].clone()]);
    assert_eq!(f("instance-state-code", "16").len(), 2);
    assert_eq!(f("availability-zone", "us-east-1a").len(), 3);
    assert!(f("availability-zone", "us-east-1b").is_empty());
    assert!(f("event.code", "system-reboot").is_empty());
    assert_eq!(
        w.err("Action=DescribeInstanceStatus&Filter.1.Name=bogus&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
}

#[test]
fn unknown_and_malformed_ids_fail_the_call() {
    let w = World::new(true);
    let ids = w.run(1);
    // spec 12.3: every named instance must exist (the InstanceStatusOk
    // waiter retries on exactly this code).
    assert_eq!(
        w.err(&format!(
            "Action=DescribeInstanceStatus&InstanceId.1={}&InstanceId.2=i-1234567890abcdef0",
            ids[0]
        )),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(
        w.err("Action=DescribeInstanceStatus&InstanceId.1=i-nothex"),
        "InvalidInstanceID.Malformed"
    );
    assert_eq!(
        w.err("Action=DescribeInstanceStatus&DryRun=true"),
        "DryRunOperation"
    );
}

// Another account neither sees the instances nor may name them.
#[test]
fn accounts_see_only_their_instances() {
    let w = World::new(true);
    let ids = w.run(1);
    let b = Account::generate("b", Some("222222222222"));
    let xml = call(w.store.as_ref(), &b, "Action=DescribeInstanceStatus").unwrap();
    assert!(all(&xml, "instanceId").is_empty());
    assert_eq!(
        code(
            w.store.as_ref(),
            &b,
            &format!("Action=DescribeInstanceStatus&InstanceId.1={}", ids[0])
        ),
        "InvalidInstanceID.NotFound"
    );
}

#[test]
fn pages_with_max_results_and_next_token() {
    let w = World::new(true);
    let mut ids = w.run(7);
    ids.sort();
    let page1 = w.status("&MaxResults=5");
    assert_eq!(all(&page1, "instanceId"), ids[..5]);
    let token = first(&page1, "nextToken");
    assert!(!token.is_empty());
    let page2 = w.status(&format!("&MaxResults=5&NextToken={token}"));
    assert_eq!(all(&page2, "instanceId"), ids[5..]);
    assert!(first(&page2, "nextToken").is_empty());
    assert_eq!(
        w.err("Action=DescribeInstanceStatus&MaxResults=4"),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.err(&format!(
            "Action=DescribeInstanceStatus&MaxResults=5&InstanceId.1={}",
            ids[0]
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(
        w.err("Action=DescribeInstanceStatus&NextToken=garbage"),
        "InvalidNextToken"
    );
}

// The agent API's health endpoint stores what DescribeInstanceStatus reads.
#[test]
fn the_agent_api_takes_health_reports() {
    let w = World::new(true);
    let ids = w.run(1);
    let s = serve_agent_api(&w.store);
    let post = |token: Option<&str>, body: &str| post(&s, path::HEALTH, token, body);
    let report = HealthReport {
        host_id: "h1".into(),
        instances: vec![InstanceHealth {
            instance_id: ids[0].clone(),
            setup: InstanceSetup::Impaired,
            reason: Some("eth0 DHCP failed: no lease".into()),
            since: now(),
        }],
    };
    let body = serde_json::to_string(&report).unwrap();
    assert_eq!(post(None, &body).0, 401);
    assert_eq!(post(Some(&s.token), "[]").0, 400);
    let (status, answer) = post(Some(&s.token), &body);
    assert_eq!(status, 200, "{answer}");
    let stored = health::load(w.store.as_ref(), REGION, "h1")
        .unwrap()
        .unwrap();
    assert_eq!(stored.instances, report.instances);
    let xml = w.status("");
    assert_eq!(
        first(check(item(&xml, &ids[0]), "instanceStatus"), "status"),
        "impaired"
    );
}
