//! Target health as DescribeTargetHealth tells it: what the control plane
//! decides itself from the records (a group no listener uses, checks
//! turned off, an instance that is not running, a draining target), and
//! otherwise what the hyperplane nodes' probes found, read from the
//! reports the nodes of the load balancer's shard send with their
//! heartbeats ([`NodeRecord::target_health`]). Nothing here guesses a
//! probe's outcome: a target no node has reported on yet is `initial`.

use openvpc_model::lifecycle::{InstanceState, TargetHealthState};
use openvpc_model::node::{NodeRecord, TargetHealthReport};
use openvpc_model::time::now_secs;

use super::answer;
use super::records::{LoadBalancer, Target, TargetGroup, find_tg, get_lb, listeners};
use super::target_group::{drained, instance, target_params};
use crate::api::actions::Ctx;
use crate::api::actions::resource::transact;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::fleet::nodes::{Role, nodes};
use crate::fleet::shards::{StoredShard, shard_key};

/// A target's state with AWS's reason code and description, if any.
pub type Health = (TargetHealthState, Option<(String, Option<String>)>);

fn reason(state: TargetHealthState, code: &str, description: &str) -> Health {
    (state, Some((code.to_owned(), Some(description.to_owned()))))
}

/// The health DescribeTargetHealth shows for a registered target.
///
/// What the records decide comes first:
/// - a group no listener forwards to: `unused` (`Target.NotInUse`);
/// - a deregistered target, until its delay ends: `draining`
///   (`Target.DeregistrationInProgress`);
/// - health checks off: `unavailable` (`Target.HealthCheckDisabled`);
/// - an instance that is not running: `unused` (`Target.InvalidState`).
///
/// Otherwise it is what a node of the load balancer's shard reported
/// (`report`, see [`shard_report`]); with no report yet the target is
/// `initial` (`Elb.RegistrationInProgress`), as on AWS while the first
/// checks run.
pub fn target_health(
    tg: &TargetGroup,
    target: &Target,
    instance_state: Option<InstanceState>,
    report: Option<&TargetHealthReport>,
) -> Health {
    if tg.in_use_since.is_none() {
        return reason(
            TargetHealthState::Unused,
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        );
    }
    if target.deregistered_at.is_some() {
        return reason(
            TargetHealthState::Draining,
            "Target.DeregistrationInProgress",
            "Target deregistration is in progress",
        );
    }
    if !tg.health.enabled {
        return reason(
            TargetHealthState::Unavailable,
            "Target.HealthCheckDisabled",
            "Health checks are disabled",
        );
    }
    if instance_state.is_some_and(|s| s != InstanceState::Running) {
        return reason(
            TargetHealthState::Unused,
            "Target.InvalidState",
            "Target is in the stopped or terminated state",
        );
    }
    match report {
        Some(r) => (
            r.state,
            r.reason.clone().map(|code| (code, r.description.clone())),
        ),
        None => reason(
            TargetHealthState::Initial,
            "Elb.RegistrationInProgress",
            "Target registration is in progress",
        ),
    }
}

/// The report on `(group, target, port)` that counts: the one from the
/// node at the first place of `places` (a shard's node IDs, in order) whose
/// node is live (in `live`) and has reported on the target. A dead node's
/// last words, and nodes outside the shard, do not count.
pub fn shard_report<'a>(
    places: &[String],
    live: &'a [NodeRecord],
    group_id: &str,
    target_id: &str,
    port: u16,
) -> Option<&'a TargetHealthReport> {
    places.iter().find_map(|place| {
        live.iter()
            .find(|n| &n.node_id == place)?
            .target_health
            .iter()
            .find(|r| r.target_group_id == group_id && r.target_id == target_id && r.port == port)
    })
}

/// The places of the shards of `lbs`, in order, and the region's live
/// hyperplane nodes: what [`shard_report`] chooses from. Read outside the
/// transaction: they are the nodes' and the shard keeper's, not the
/// account's.
fn shard_view(ctx: &Ctx, lbs: &[LoadBalancer]) -> Result<(Vec<String>, Vec<NodeRecord>), ApiError> {
    let store_error = |e: crate::store::StoreError| {
        ApiError::internal(format!("The hyperplane nodes' records are unreadable: {e}"))
    };
    let mut places = Vec::new();
    for lb in lbs {
        let key = shard_key(ctx.region, &lb.gateway_id());
        if let Some(kv) = ctx.store.get(key.as_bytes()).map_err(store_error)? {
            // An unreadable shard is one no node serves yet.
            if let Ok(shard) = serde_json::from_slice::<StoredShard>(&kv.value) {
                places.extend(shard.nodes);
            }
        }
    }
    if places.is_empty() {
        return Ok((places, Vec::new()));
    }
    let now_ms = now_secs().saturating_mul(1000);
    let live = nodes(ctx.store, Role::Hyperplane, ctx.region)
        .map_err(store_error)?
        .into_iter()
        .filter(|n| n.expires_at_ms >= now_ms)
        .collect();
    Ok((places, live))
}

pub(super) fn describe_target_health(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let rows = transact(ctx, |tx| {
        let mut tg = find_tg(tx, arn)?;
        // Targets whose delay has ended are gone now.
        if drained(&mut tg, now_secs()) {
            tx.put(&tg)?;
        }
        let mut lbs: Vec<LoadBalancer> = Vec::new();
        for l in listeners(tx)?
            .iter()
            .filter(|l| l.target_group_arn == tg.arn)
        {
            if let Some(lb) = get_lb(tx, &l.load_balancer_arn)?
                && !lbs.iter().any(|o| o.arn == lb.arn)
            {
                lbs.push(lb);
            }
        }
        let (places, live) = shard_view(ctx, &lbs)?;
        let asked = if params.get("Targets.member.1.Id").is_some() {
            target_params(params, tg.port)?
        } else {
            tg.targets.iter().map(|t| (t.id.clone(), t.port)).collect()
        };
        let mut rows = Vec::new();
        for (id, port) in asked {
            let health = match tg.targets.iter().find(|t| t.id == id && t.port == port) {
                Some(t) => {
                    let state = if tg.target_type == "instance" {
                        instance(tx, &id)?.map(|i| i.state)
                    } else {
                        None
                    };
                    let report = shard_report(&places, &live, &tg.id, &id, port);
                    target_health(&tg, t, state, report)
                }
                None => reason(
                    TargetHealthState::Unused,
                    "Target.NotRegistered",
                    "Target is not registered to the target group",
                ),
            };
            let check_port = if tg.health.port == "traffic-port" {
                port.to_string()
            } else {
                tg.health.port.clone()
            };
            rows.push((id, port, check_port, health));
        }
        Ok(rows)
    })?;
    Ok(answer(ctx, "DescribeTargetHealth", |x| {
        x.members(
            "TargetHealthDescriptions",
            &rows,
            |x, (id, port, check_port, (state, reason))| {
                x.node("Target", |x| {
                    x.elem("Id", id).elem("Port", port);
                })
                .elem("HealthCheckPort", check_port)
                .node("TargetHealth", |x| {
                    x.elem("State", state);
                    if let Some((code, text)) = reason {
                        x.elem("Reason", code).opt("Description", text.as_deref());
                    }
                });
            },
        );
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::elbv2::records::HealthCheck;
    use std::net::{IpAddr, Ipv4Addr};

    /// A TCP group with spec 9.4's NLB defaults (30 s interval, 5 checks).
    fn group(in_use_since: Option<u64>, enabled: bool) -> TargetGroup {
        TargetGroup {
            arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/0000000000000001".to_owned(),
            name: "tg".to_owned(),
            id: "0000000000000001".to_owned(),
            protocol: "TCP".to_owned(),
            port: 80,
            vpc_id: "vpc-1".to_owned(),
            target_type: "instance".to_owned(),
            health: HealthCheck {
                enabled,
                protocol: "TCP".to_owned(),
                port: "traffic-port".to_owned(),
                path: None,
                interval: 30,
                timeout: 10,
                healthy_threshold: 5,
                unhealthy_threshold: 2,
                matcher: None,
            },
            targets: Vec::new(),
            in_use_since,
            tags: Vec::new(),
            attributes: Default::default(),
        }
    }

    fn target(registered: u64) -> Target {
        Target {
            id: "i-1".to_owned(),
            port: 80,
            registered,
            deregistered_at: None,
        }
    }

    fn report(target_id: &str, state: TargetHealthState, code: Option<&str>) -> TargetHealthReport {
        TargetHealthReport {
            target_group_id: "0000000000000001".to_owned(),
            target_id: target_id.to_owned(),
            port: 80,
            state,
            reason: code.map(str::to_owned),
            description: code.map(|_| "Health checks failed".to_owned()),
        }
    }

    fn node(id: &str, reports: Vec<TargetHealthReport>) -> NodeRecord {
        NodeRecord {
            node_id: id.to_owned(),
            region: "us-east-1".to_owned(),
            underlay_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            registered_at: 0,
            expires_at_ms: u64::MAX,
            serving: Vec::new(),
            target_health: reports,
        }
    }

    fn code(h: &Health) -> Option<&str> {
        h.1.as_ref().map(|r| r.0.as_str())
    }

    #[test]
    fn a_group_no_listener_uses_shows_unused_targets() {
        // spec 9.4: Target.NotInUse until a listener forwards to the group.
        let h = target_health(
            &group(None, true),
            &target(0),
            Some(InstanceState::Running),
            None,
        );
        assert_eq!(h.0, TargetHealthState::Unused);
        assert_eq!(code(&h), Some("Target.NotInUse"));
    }

    #[test]
    fn disabled_checks_show_unavailable() {
        let h = target_health(&group(Some(0), false), &target(0), None, None);
        assert_eq!(h.0, TargetHealthState::Unavailable);
        assert_eq!(code(&h), Some("Target.HealthCheckDisabled"));
    }

    #[test]
    fn an_instance_that_is_not_running_is_unused_whatever_the_probes_say() {
        let healthy = report("i-1", TargetHealthState::Healthy, None);
        let h = target_health(
            &group(Some(0), true),
            &target(0),
            Some(InstanceState::Stopped),
            Some(&healthy),
        );
        assert_eq!(h.0, TargetHealthState::Unused);
        assert_eq!(code(&h), Some("Target.InvalidState"));
    }

    #[test]
    fn a_deregistered_target_is_draining_until_removed() {
        // spec 9.4: Target.DeregistrationInProgress while it drains.
        let mut t = target(0);
        t.deregistered_at = Some(10);
        let healthy = report("i-1", TargetHealthState::Healthy, None);
        let h = target_health(&group(Some(0), true), &t, None, Some(&healthy));
        assert_eq!(h.0, TargetHealthState::Draining);
        assert_eq!(code(&h), Some("Target.DeregistrationInProgress"));
    }

    #[test]
    fn without_a_report_a_target_is_initial_however_long_it_waits() {
        // The time-based fake is gone: no probe, no `healthy`.
        let h = target_health(&group(Some(0), true), &target(0), None, None);
        assert_eq!(h.0, TargetHealthState::Initial);
        assert_eq!(code(&h), Some("Elb.RegistrationInProgress"));
    }

    #[test]
    fn the_probes_report_is_shown_with_its_reason() {
        // spec 9.4: unhealthy with Target.FailedHealthChecks, from a probe.
        let bad = report(
            "i-1",
            TargetHealthState::Unhealthy,
            Some("Target.FailedHealthChecks"),
        );
        let h = target_health(&group(Some(0), true), &target(0), None, Some(&bad));
        assert_eq!(h.0, TargetHealthState::Unhealthy);
        assert_eq!(code(&h), Some("Target.FailedHealthChecks"));
        let good = report("i-1", TargetHealthState::Healthy, None);
        let h = target_health(&group(Some(0), true), &target(0), None, Some(&good));
        assert_eq!(h, (TargetHealthState::Healthy, None));
    }

    #[test]
    fn the_first_live_place_with_a_report_answers() {
        let places = ["n2".to_owned(), "n1".to_owned(), "n3".to_owned()];
        let n1 = node("n1", vec![report("i-1", TargetHealthState::Healthy, None)]);
        let n2 = node("n2", Vec::new());
        let n3 = node(
            "n3",
            vec![report(
                "i-1",
                TargetHealthState::Unhealthy,
                Some("Target.Timeout"),
            )],
        );
        // n2 is first but has no report on the target: n1, the next place, answers.
        let live = [n3.clone(), n1.clone(), n2.clone()];
        let r = shard_report(&places, &live, "0000000000000001", "i-1", 80).unwrap();
        assert_eq!(r.state, TargetHealthState::Healthy);
        // n1 dead (not live): n3 answers.
        let live = [n3.clone(), n2.clone()];
        let r = shard_report(&places, &live, "0000000000000001", "i-1", 80).unwrap();
        assert_eq!(r.reason.as_deref(), Some("Target.Timeout"));
        // Another port, target or group: nothing.
        let live = [n1.clone(), n3.clone()];
        assert!(shard_report(&places, &live, "0000000000000001", "i-1", 81).is_none());
        assert!(shard_report(&places, &live, "0000000000000001", "i-2", 80).is_none());
        assert!(shard_report(&places, &live, "0000000000000002", "i-1", 80).is_none());
        // A live node outside the shard does not count.
        assert!(shard_report(&["n9".to_owned()], &live, "0000000000000001", "i-1", 80).is_none());
    }
}
