//! Target health without a dataplane: what AWS would show for each target
//! ([`target_health`], a pure function of the records and the time), and
//! DescribeTargetHealth.

use super::answer;
use super::records::{Target, TargetGroup, find_tg};
use super::target_group::{instance, target_params};
use crate::api::actions::Ctx;
use crate::api::actions::resource::transact;
use crate::api::error::ApiError;
use crate::api::query::Params;
use openvpc_model::lifecycle::InstanceState;
use openvpc_model::time::now_secs;

/// The health AWS would show for a target, without a dataplane to probe it.
///
/// - A group no listener forwards to: `unused` (`Target.NotInUse`).
/// - Health checks off: `unavailable` (`Target.HealthCheckDisabled`).
/// - An instance that is not running: `unused` (`Target.InvalidState`).
/// - For `interval × healthy threshold` seconds (the time the checks take
///   to pass, 150 s by default) after the target was registered or the
///   group was put to use, whichever is later: `initial`
///   (`Elb.RegistrationInProgress`).
/// - Afterwards: `healthy`. Without a dataplane nothing probes the target,
///   so openvpc reports the outcome of a check that passes.
pub fn target_health(
    tg: &TargetGroup,
    target: &Target,
    instance_state: Option<InstanceState>,
    now: u64,
) -> (&'static str, Option<(&'static str, &'static str)>) {
    let Some(in_use) = tg.in_use_since else {
        return (
            "unused",
            Some((
                "Target.NotInUse",
                "Target group is not configured to receive traffic from the load balancer",
            )),
        );
    };
    if !tg.health.enabled {
        return (
            "unavailable",
            Some(("Target.HealthCheckDisabled", "Health checks are disabled")),
        );
    }
    if instance_state.is_some_and(|s| s != InstanceState::Running) {
        return (
            "unused",
            Some((
                "Target.InvalidState",
                "Target is in the stopped or terminated state",
            )),
        );
    }
    let since = in_use.max(target.registered);
    let checks = u64::from(tg.health.interval) * u64::from(tg.health.healthy_threshold);
    if now < since + checks {
        return (
            "initial",
            Some((
                "Elb.RegistrationInProgress",
                "Target registration is in progress",
            )),
        );
    }
    ("healthy", None)
}

pub(super) fn describe_target_health(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("TargetGroupArn")?;
    let rows = transact(ctx, |tx| {
        let tg = find_tg(tx, arn)?;
        let asked = if params.get("Targets.member.1.Id").is_some() {
            target_params(params, tg.port)?
        } else {
            tg.targets.iter().map(|t| (t.id.clone(), t.port)).collect()
        };
        let now = now_secs();
        let mut rows = Vec::new();
        for (id, port) in asked {
            let health = match tg.targets.iter().find(|t| t.id == id && t.port == port) {
                Some(t) => {
                    let state = if tg.target_type == "instance" {
                        instance(tx, &id)?.map(|i| i.state)
                    } else {
                        None
                    };
                    target_health(&tg, t, state, now)
                }
                None => (
                    "unused",
                    Some((
                        "Target.NotRegistered",
                        "Target is not registered to the target group",
                    )),
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
                        x.elem("Reason", code).elem("Description", text);
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

    fn state(
        tg: &TargetGroup,
        t: &Target,
        instance: Option<InstanceState>,
        now: u64,
    ) -> &'static str {
        target_health(tg, t, instance, now).0
    }

    #[test]
    fn a_group_no_listener_uses_shows_unused_targets() {
        // spec 9.4: Target.NotInUse until a listener forwards to the group.
        let (s, reason) = target_health(
            &group(None, true),
            &target(0),
            Some(InstanceState::Running),
            1_000,
        );
        assert_eq!(s, "unused");
        assert_eq!(reason.map(|r| r.0), Some("Target.NotInUse"));
    }

    #[test]
    fn disabled_checks_show_unavailable() {
        let (s, reason) = target_health(&group(Some(0), false), &target(0), None, 1_000);
        assert_eq!(s, "unavailable");
        assert_eq!(reason.map(|r| r.0), Some("Target.HealthCheckDisabled"));
    }

    #[test]
    fn an_instance_that_is_not_running_is_unused() {
        let (s, reason) = target_health(
            &group(Some(0), true),
            &target(0),
            Some(InstanceState::Stopped),
            1_000,
        );
        assert_eq!(s, "unused");
        assert_eq!(reason.map(|r| r.0), Some("Target.InvalidState"));
    }

    #[test]
    fn targets_are_initial_for_interval_times_threshold_then_healthy() {
        // spec 9.4: 30 s × 5 = 150 s after the later of registration and
        // the group's first use.
        let tg = group(Some(100), true);
        let t = target(200);
        assert_eq!(state(&tg, &t, Some(InstanceState::Running), 349), "initial");
        assert_eq!(state(&tg, &t, Some(InstanceState::Running), 350), "healthy");
        // An ip target has no instance state to consult.
        assert_eq!(state(&tg, &t, None, 350), "healthy");
        // A group put to use after the registration counts from its use.
        let late = group(Some(1_000), true);
        assert_eq!(state(&late, &t, None, 1_149), "initial");
        assert_eq!(state(&late, &t, None, 1_150), "healthy");
    }
}
