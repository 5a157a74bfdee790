//! DescribeInstanceStatus: each instance's system and instance status
//! checks, as EC2 shapes them, from what openvpc actually observed.
//!
//! - The system check is the host's: `ok` (reachability `passed`) while
//!   the agent of the instance's host reports (see `fleet::health`),
//!   `impaired` (`failed`) once it has been silent for
//!   `HOST_SILENT_AFTER_SECS`, `initializing` while a just-registered host
//!   has not reported yet.
//! - The instance check is the instance's setup on its host (namespace,
//!   TAP, DHCP lease): `ok` (`passed`), `initializing` while the agent is
//!   still at it or has not reported it yet, `impaired` (`failed`, with
//!   `impairedSince`) when a step failed.
//! - Nothing observed is not `ok`: an instance no host runs (an API-only
//!   server) and the instance check of a silent host are
//!   `insufficient-data`. Instances that are not running are
//!   `not-applicable`, and shown only with `IncludeAllInstances`.
//!
//! The mapping from observations to checks is [`checks`], sans-IO.

use openvpc_model::ResourceKind;
use openvpc_model::host::{HostRecord, InstanceSetup};
use openvpc_model::lifecycle::InstanceState;
use openvpc_model::time::{format_time, now_secs};

use super::Ctx;
use super::instance::{Instance, check_all_found, listed_ids};
use super::resource::{Resource, filters_match, next_token, page, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::fleet::health::{self, HOST_SILENT_AFTER_SECS, HostHealth};
use crate::fleet::registry::host_key;

pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    match action {
        "DescribeInstanceStatus" => Some(describe(ctx, params)),
        _ => None,
    }
}

/// A check's overall status (EC2's `SummaryStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    Ok,
    Impaired,
    Initializing,
    InsufficientData,
    NotApplicable,
}

impl Summary {
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::Ok => "ok",
            Summary::Impaired => "impaired",
            Summary::Initializing => "initializing",
            Summary::InsufficientData => "insufficient-data",
            Summary::NotApplicable => "not-applicable",
        }
    }
}

/// The `reachability` detail's status (EC2's `StatusType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Passed,
    Failed,
    Initializing,
    InsufficientData,
}

impl Reachability {
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Passed => "passed",
            Reachability::Failed => "failed",
            Reachability::Initializing => "initializing",
            Reachability::InsufficientData => "insufficient-data",
        }
    }
}

/// One check: its summary and, when it ran, its reachability detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub status: Summary,
    pub reachability: Option<Reachability>,
    /// Unix seconds since when the detail has failed.
    pub impaired_since: Option<i64>,
}

impl Check {
    fn of(status: Summary, reachability: Reachability) -> Check {
        Check {
            status,
            reachability: Some(reachability),
            impaired_since: None,
        }
    }

    fn failed(since: i64) -> Check {
        Check {
            status: Summary::Impaired,
            reachability: Some(Reachability::Failed),
            impaired_since: Some(since),
        }
    }

    const NOT_APPLICABLE: Check = Check {
        status: Summary::NotApplicable,
        reachability: None,
        impaired_since: None,
    };
}

/// The system and instance checks of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checks {
    pub system: Check,
    pub instance: Check,
}

/// What the server knows of the host an instance was placed on.
#[derive(Debug, Clone, Copy)]
pub enum HostView<'a> {
    /// No host: the region had none when it launched.
    Unplaced,
    /// The host never reported; `registered_at` is when it last registered
    /// (`None` if it is not registered at all).
    Silent { registered_at: Option<i64> },
    /// The host's last report.
    Reported(&'a HostHealth),
}

/// The checks of instance `id` in `state` on `host`, at `now` (Unix
/// seconds).
pub fn checks(id: &str, state: InstanceState, host: HostView<'_>, now: i64) -> Checks {
    if state != InstanceState::Running {
        return Checks {
            system: Check::NOT_APPLICABLE,
            instance: Check::NOT_APPLICABLE,
        };
    }
    let unknown = Check::of(Summary::InsufficientData, Reachability::InsufficientData);
    let report = match host {
        HostView::Unplaced => {
            return Checks {
                system: unknown.clone(),
                instance: unknown,
            };
        }
        HostView::Silent { registered_at } => {
            // A host that registered a moment ago gets the time a report
            // takes; one silent for longer is not serving its instances.
            let system = match registered_at {
                Some(at) if now - at <= HOST_SILENT_AFTER_SECS => {
                    Check::of(Summary::Initializing, Reachability::Initializing)
                }
                Some(at) => Check::failed(at),
                None => Check::failed(now),
            };
            return Checks {
                system,
                instance: unknown,
            };
        }
        HostView::Reported(report) => report,
    };
    if !report.fresh(now) {
        return Checks {
            system: Check::failed(report.reported_at),
            instance: unknown,
        };
    }
    let instance = match report.instance(id) {
        Some(h) => match h.setup {
            InstanceSetup::Ok => Check::of(Summary::Ok, Reachability::Passed),
            InstanceSetup::Initializing => {
                Check::of(Summary::Initializing, Reachability::Initializing)
            }
            InstanceSetup::Impaired => Check::failed(h.since),
        },
        // The host has not set it up yet (a launch a moment ago).
        None => Check::of(Summary::Initializing, Reachability::Initializing),
    };
    Checks {
        system: Check::of(Summary::Ok, Reachability::Passed),
        instance,
    }
}

/// One answered instance.
struct Row {
    instance: Instance,
    checks: Checks,
}

fn filter_values(r: &Row, name: &str) -> Option<Vec<String>> {
    let one = |v: &str| Some(vec![v.to_owned()]);
    let reach = |c: &Check| {
        Some(
            c.reachability
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect(),
        )
    };
    match name {
        "availability-zone" => one(&r.instance.availability_zone),
        "instance-state-name" => one(r.instance.state.as_str()),
        "instance-state-code" => one(&r.instance.state.code().to_string()),
        "instance-status.status" => one(r.checks.instance.status.as_str()),
        "instance-status.reachability" => reach(&r.checks.instance),
        "system-status.status" => one(r.checks.system.status.as_str()),
        "system-status.reachability" => reach(&r.checks.system),
        // No scheduled events and no EBS: these match nothing.
        "event.code"
        | "event.description"
        | "event.instance-event-id"
        | "event.not-after"
        | "event.not-before"
        | "event.not-before-deadline"
        | "attached-ebs-status.status" => Some(Vec::new()),
        _ => None,
    }
}

/// What the server knows of `host_id`: its last report, else its
/// registration.
fn host_view(ctx: &Ctx, host_id: &str) -> Result<Option<HostHealth>, ApiError> {
    health::load(ctx.store, ctx.region, host_id)
        .map_err(|e| ApiError::internal(format!("Reading the hosts' health failed: {e}")))
}

fn registered_at(ctx: &Ctx, host_id: &str) -> Result<Option<i64>, ApiError> {
    let kv = ctx
        .store
        .get(host_key(ctx.region, host_id).as_bytes())
        .map_err(|e| ApiError::internal(format!("Reading the registered hosts failed: {e}")))?;
    Ok(kv
        .and_then(|kv| serde_json::from_slice::<HostRecord>(&kv.value).ok())
        .map(|h| h.registered_at))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = listed_ids(params)?;
    let filters = params.filters()?;
    let max = params.max_results(5..=1000)?;
    if max.is_some() && !ids.is_empty() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let after = next_token(params, ResourceKind::Instance)?;
    let include_all = params.bool("IncludeAllInstances")?.unwrap_or(false);
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let instances = transact(ctx, |tx| tx.list::<Instance>())?;
    check_all_found(&ids, &instances)?;
    let now = now_secs() as i64;
    let mut hosts: std::collections::BTreeMap<String, (Option<HostHealth>, Option<i64>)> =
        std::collections::BTreeMap::new();
    let mut rows = Vec::new();
    for instance in instances {
        if (!ids.is_empty() && !ids.contains(&instance.id))
            || after.as_deref().is_some_and(|a| instance.id.as_str() <= a)
            || (!include_all && instance.state != InstanceState::Running)
        {
            continue;
        }
        let checks = match instance.host_id.as_deref() {
            None => checks(&instance.id, instance.state, HostView::Unplaced, now),
            Some(host) => {
                if !hosts.contains_key(host) {
                    let report = host_view(ctx, host)?;
                    let registered = match report {
                        Some(_) => None,
                        None => registered_at(ctx, host)?,
                    };
                    hosts.insert(host.to_owned(), (report, registered));
                }
                let view = match hosts.get(host) {
                    Some((Some(report), _)) => HostView::Reported(report),
                    Some((None, registered_at)) => HostView::Silent {
                        registered_at: *registered_at,
                    },
                    None => HostView::Silent {
                        registered_at: None,
                    },
                };
                checks(&instance.id, instance.state, view, now)
            }
        };
        let row = Row { instance, checks };
        if filters_match(&row, &filters, filter_values)? {
            rows.push(row);
        }
    }
    let next = page(&mut rows, max, |r| r.instance.id());
    Ok(Xml::response(
        "DescribeInstanceStatus",
        ctx.request_id,
        |x| {
            x.list("instanceStatusSet", &rows, write_row)
                .opt("nextToken", next);
        },
    ))
}

fn write_check(x: &mut Xml, name: &str, c: &Check) {
    x.node(name, |x| {
        x.elem("status", c.status.as_str());
        x.list("details", c.reachability, |x, r| {
            x.elem("name", "reachability")
                .elem("status", r.as_str())
                .opt(
                    "impairedSince",
                    c.impaired_since
                        .filter(|_| r == Reachability::Failed)
                        .map(|t| format_time(t.max(0) as u64)),
                );
        });
    });
}

fn write_row(x: &mut Xml, r: &Row) {
    let i = &r.instance;
    x.elem("instanceId", &i.id)
        .elem("availabilityZone", &i.availability_zone)
        .node("instanceState", |x| {
            x.elem("code", i.state.code()).elem("name", i.state);
        });
    write_check(x, "systemStatus", &r.checks.system);
    write_check(x, "instanceStatus", &r.checks.instance);
    x.list("eventsSet", std::iter::empty::<()>(), |_, ()| {});
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_model::host::InstanceHealth;

    fn host(reported_at: i64, setup: Option<InstanceSetup>) -> HostHealth {
        HostHealth {
            host_id: "h1".into(),
            reported_at,
            instances: setup
                .map(|setup| InstanceHealth {
                    instance_id: "i-1".into(),
                    setup,
                    reason: Some("eth0 DHCP failed: x".into()),
                    since: 42,
                })
                .into_iter()
                .collect(),
        }
    }

    fn pair(c: &Checks) -> (&str, Option<&str>, &str, Option<&str>) {
        (
            c.system.status.as_str(),
            c.system.reachability.map(Reachability::as_str),
            c.instance.status.as_str(),
            c.instance.reachability.map(Reachability::as_str),
        )
    }

    #[test]
    fn a_reporting_host_shows_its_instances_setup() {
        let now = 1000;
        let ok = host(now - 5, Some(InstanceSetup::Ok));
        let c = checks("i-1", InstanceState::Running, HostView::Reported(&ok), now);
        assert_eq!(pair(&c), ("ok", Some("passed"), "ok", Some("passed")));
        let init = host(now, Some(InstanceSetup::Initializing));
        let c = checks(
            "i-1",
            InstanceState::Running,
            HostView::Reported(&init),
            now,
        );
        assert_eq!(
            pair(&c),
            ("ok", Some("passed"), "initializing", Some("initializing"))
        );
        // Issue 12: a failed namespace, TAP or DHCP step is impaired, since
        // the agent saw it fail.
        let bad = host(now, Some(InstanceSetup::Impaired));
        let c = checks("i-1", InstanceState::Running, HostView::Reported(&bad), now);
        assert_eq!(pair(&c), ("ok", Some("passed"), "impaired", Some("failed")));
        assert_eq!(c.instance.impaired_since, Some(42));
        // Not in the report yet: the host has not set it up.
        let none = host(now, None);
        let c = checks(
            "i-1",
            InstanceState::Running,
            HostView::Reported(&none),
            now,
        );
        assert_eq!(c.instance.status, Summary::Initializing);
    }

    #[test]
    fn a_silent_host_is_impaired_and_its_instances_unknown() {
        let now = 10_000;
        let old = host(now - HOST_SILENT_AFTER_SECS - 1, Some(InstanceSetup::Ok));
        let c = checks("i-1", InstanceState::Running, HostView::Reported(&old), now);
        assert_eq!(
            pair(&c),
            (
                "impaired",
                Some("failed"),
                "insufficient-data",
                Some("insufficient-data")
            )
        );
        assert_eq!(c.system.impaired_since, Some(old.reported_at));
        // Never reported: a grace period after registering, then impaired.
        let c = checks(
            "i-1",
            InstanceState::Running,
            HostView::Silent {
                registered_at: Some(now - 3),
            },
            now,
        );
        assert_eq!(c.system.status, Summary::Initializing);
        let c = checks(
            "i-1",
            InstanceState::Running,
            HostView::Silent {
                registered_at: Some(now - HOST_SILENT_AFTER_SECS - 1),
            },
            now,
        );
        assert_eq!(c.system.status, Summary::Impaired);
        let c = checks(
            "i-1",
            InstanceState::Running,
            HostView::Silent {
                registered_at: None,
            },
            now,
        );
        assert_eq!(c.system.status, Summary::Impaired);
    }

    #[test]
    fn nothing_observed_is_never_ok() {
        let c = checks("i-1", InstanceState::Running, HostView::Unplaced, 0);
        assert_eq!(
            pair(&c),
            (
                "insufficient-data",
                Some("insufficient-data"),
                "insufficient-data",
                Some("insufficient-data")
            )
        );
        for state in [
            InstanceState::Stopped,
            InstanceState::Terminated,
            InstanceState::Pending,
        ] {
            let ok = host(0, Some(InstanceSetup::Ok));
            let c = checks("i-1", state, HostView::Reported(&ok), 0);
            assert_eq!(pair(&c), ("not-applicable", None, "not-applicable", None));
        }
    }
}
