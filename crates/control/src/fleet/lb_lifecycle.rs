//! The honest lifecycle of network load balancers (spec 9.1, issue 17):
//! what moves a load balancer between `provisioning`, `active`,
//! `active_impaired` and `failed`. A provisioning load balancer becomes
//! `active` once a live hyperplane node of its shard reports its gateway
//! name (`LoadBalancer::gateway_id`, `elb-…`) in `serving` (it has
//! programmed it); it becomes `failed`, with a `state_reason` saying why,
//! when no live node of its shard has been there for
//! [`Timing::unserved_secs`]. An active one becomes `active_impaired` when
//! no live node of its shard serves it any more, and `active` again when
//! one does. A failed one stays failed (DeleteLoadBalancer removes it).
//!
//! [`plan`] is a pure function of a [`Snapshot`] of the fleet index and the
//! time; [`settle_once`] writes each step in one transaction that applies
//! only while the load balancer is still in the state the step was planned
//! from, so a concurrent DeleteLoadBalancer (or another server's lifecycle)
//! is never overwritten. Every server runs it from the shard keeper.

use openvpc_model::lifecycle::LoadBalancerState;

use super::Fleet;
use super::shards::Placement;
use crate::api::actions::resource::transact_as_owner;
use crate::api::error::ApiError;
use crate::records::elbv2::LoadBalancer;

/// How long a provisioning load balancer may go without a live node in its
/// shard before it fails: as for NAT gateways (`nat_lifecycle`), long
/// enough for a restarting node to come back, short enough that a region
/// without hyperplane nodes says so within a minute.
pub const UNSERVED_SECS: u64 = super::nat_lifecycle::UNSERVED_SECS;

/// Whether a load balancer in `state` has a shard whose nodes serve it and
/// fronts the hosts route to: from `provisioning` (a node's report that it
/// serves it makes it `active`) while it is not `failed`.
pub fn is_served(state: LoadBalancerState) -> bool {
    matches!(
        state,
        LoadBalancerState::Provisioning
            | LoadBalancerState::Active
            | LoadBalancerState::ActiveImpaired
    )
}

/// The lifecycle's wait, in seconds (tests pass their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub unserved_secs: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            unserved_secs: UNSERVED_SECS,
        }
    }
}

/// A load balancer the lifecycle watches, with where it is stored.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub account: String,
    pub region: String,
    pub lb: LoadBalancer,
}

/// What the lifecycle reads from the fleet index.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The load balancers that are not failed.
    pub lbs: Vec<Tracked>,
    /// The live hyperplane nodes (with what each serves) and the shards.
    pub placement: Placement,
}

/// Where a load balancer goes, with the reason shown beside the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Active,
    Impaired { reason: String },
    Failed { reason: String },
}

impl Transition {
    /// The state the load balancer moves to.
    pub fn state(&self) -> LoadBalancerState {
        match self {
            Transition::Active => LoadBalancerState::Active,
            Transition::Impaired { .. } => LoadBalancerState::ActiveImpaired,
            Transition::Failed { .. } => LoadBalancerState::Failed,
        }
    }

    /// The `State.Reason` shown with the new state (none once active).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Transition::Active => None,
            Transition::Impaired { reason } | Transition::Failed { reason } => Some(reason),
        }
    }
}

/// One load balancer's move, from the state it was planned in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub account: String,
    pub region: String,
    /// The record's ID (the 16 hex digits that end its ARN).
    pub lb_id: String,
    pub from: LoadBalancerState,
    pub to: Transition,
}

/// The moves due at `now_ms` (Unix milliseconds).
pub fn plan(snapshot: &Snapshot, now_ms: u64, timing: Timing) -> Vec<Step> {
    let now = now_ms / 1000;
    let mut steps = Vec::new();
    for t in &snapshot.lbs {
        let lb = &t.lb;
        let gateway_id = lb.gateway_id();
        let live = snapshot.placement.live_shard(&t.region, &gateway_id);
        let served = live.iter().any(|n| n.serving.contains(&gateway_id));
        let since = lb.state_since.unwrap_or(lb.created);
        let to = match lb.state {
            LoadBalancerState::Provisioning if served => Some(Transition::Active),
            LoadBalancerState::Provisioning
                if live.is_empty() && now >= since.saturating_add(timing.unserved_secs) =>
            {
                Some(Transition::Failed {
                    reason: format!(
                        "No hyperplane node of region {} served the load balancer within {} s; start one (openvpc hyperplane) and create the load balancer again",
                        t.region, timing.unserved_secs
                    ),
                })
            }
            LoadBalancerState::Active if !served => Some(Transition::Impaired {
                reason: format!(
                    "No live hyperplane node of the load balancer's shard in region {} serves it",
                    t.region
                ),
            }),
            LoadBalancerState::ActiveImpaired if served => Some(Transition::Active),
            _ => None,
        };
        if let Some(to) = to {
            steps.push(Step {
                account: t.account.clone(),
                region: t.region.clone(),
                lb_id: lb.id.clone(),
                from: lb.state,
                to,
            });
        }
    }
    steps.sort_by(|a, b| a.lb_id.cmp(&b.lb_id));
    steps
}

/// Writes `step` as the load balancer's account at `now` (Unix seconds):
/// one transaction, which applies only while the load balancer is still in
/// the state the step was planned from. Returns whether it applied.
pub fn settle(store: &dyn crate::store::Store, step: &Step, now: u64) -> Result<bool, ApiError> {
    transact_as_owner(store, &step.account, &step.region, "lb-lifecycle", |tx| {
        let Some(mut lb) = tx.get::<LoadBalancer>(&step.lb_id)? else {
            return Ok(false);
        };
        if lb.state != step.from {
            return Ok(false);
        }
        lb.state = step.to.state();
        lb.state_reason = step.to.reason().map(str::to_owned);
        lb.state_since = Some(now);
        tx.put(&lb)?;
        Ok(true)
    })
}

/// Plans on what the fleet index holds and applies each step; returns the
/// steps applied.
pub fn settle_once(fleet: &Fleet, now_ms: u64, timing: Timing) -> Result<Vec<Step>, ApiError> {
    let steps = plan(&fleet.lb_snapshot(), now_ms, timing);
    let mut applied = Vec::new();
    for step in steps {
        if settle(fleet.store().as_ref(), &step, now_ms / 1000)? {
            tracing::info!(
                load_balancer = %step.lb_id,
                from = %step.from,
                to = %step.to.state(),
                "load balancer moved on"
            );
            applied.push(step);
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::shards::shard_key;
    use openvpc_model::node::NodeRecord;
    use std::collections::BTreeMap;

    fn lb(state: LoadBalancerState, since: u64) -> Tracked {
        Tracked {
            account: "123456789012".into(),
            region: "r1".into(),
            lb: LoadBalancer {
                arn: "arn:aws:elasticloadbalancing:r1:123456789012:loadbalancer/net/web/0123456789abcdef".into(),
                name: "web".into(),
                id: "0123456789abcdef".into(),
                scheme: "internal".into(),
                ip_address_type: "ipv4".into(),
                vpc_id: "vpc-1".into(),
                zones: Vec::new(),
                created: since,
                tags: Default::default(),
                cross_zone: false,
                deletion_protection: false,
                state,
                state_reason: None,
                state_since: Some(since),
            },
        }
    }

    const GW: &str = "elb-0123456789abcdef";

    fn node(id: &str, serving: &[&str]) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            region: "r1".into(),
            underlay_ip: "10.254.0.1".parse().unwrap(),
            registered_at: 0,
            expires_at_ms: u64::MAX,
            serving: serving.iter().map(|s| (*s).to_owned()).collect(),
            target_health: Vec::new(),
        }
    }

    fn snapshot(t: Tracked, nodes: Vec<NodeRecord>, shard: &[&str]) -> Snapshot {
        Snapshot {
            placement: Placement {
                shards: BTreeMap::from([(
                    shard_key("r1", &t.lb.gateway_id()),
                    shard.iter().map(|s| (*s).to_owned()).collect(),
                )]),
                nodes: BTreeMap::from([("r1".to_owned(), nodes)]),
            },
            lbs: vec![t],
        }
    }

    fn to(s: &Snapshot, now_ms: u64) -> Option<Transition> {
        let steps = plan(s, now_ms, Timing::default());
        assert!(steps.len() <= 1);
        steps.into_iter().next().map(|s| s.to)
    }

    /// issue 17: provisioning until a live node of its shard serves it,
    /// then active; a node outside the shard does not count.
    #[test]
    fn provisioning_becomes_active_when_a_shard_node_serves_it() {
        let t = lb(LoadBalancerState::Provisioning, 100);
        let s = snapshot(t.clone(), vec![node("hp1", &[])], &["hp1", "hp2"]);
        assert_eq!(to(&s, 101_000), None, "programmed by no node yet");
        let s = snapshot(t.clone(), vec![node("hp3", &[GW])], &["hp1", "hp2"]);
        assert_eq!(to(&s, 101_000), None, "hp3 is not of its shard");
        let s = snapshot(t, vec![node("hp2", &[GW])], &["hp1", "hp2"]);
        assert_eq!(to(&s, 101_000), Some(Transition::Active));
    }

    /// issue 17: a load balancer no node can serve fails with a reason
    /// after [`UNSERVED_SECS`]; a live node of its shard keeps it waiting.
    #[test]
    fn a_load_balancer_without_nodes_fails_after_the_wait() {
        let t = lb(LoadBalancerState::Provisioning, 100);
        let s = snapshot(t.clone(), vec![], &[]);
        assert_eq!(to(&s, (100 + UNSERVED_SECS - 1) * 1000), None);
        let Some(Transition::Failed { reason }) = to(&s, (100 + UNSERVED_SECS) * 1000) else {
            panic!("not failed");
        };
        assert!(
            reason.starts_with("No hyperplane node of region r1 served"),
            "{reason}"
        );
        let s = snapshot(t, vec![node("hp1", &[])], &["hp1"]);
        assert_eq!(to(&s, (100 + UNSERVED_SECS) * 1000), None);
    }

    /// issue 17: active is impaired while no live shard node serves it,
    /// and active again once one does; failed stays failed.
    #[test]
    fn active_is_impaired_without_a_serving_node_and_recovers() {
        let s = snapshot(
            lb(LoadBalancerState::Active, 100),
            vec![node("hp1", &[])],
            &["hp1"],
        );
        assert!(matches!(to(&s, 200_000), Some(Transition::Impaired { .. })));
        let s = snapshot(
            lb(LoadBalancerState::Active, 100),
            vec![node("hp1", &[GW])],
            &["hp1"],
        );
        assert_eq!(to(&s, 200_000), None);
        let s = snapshot(
            lb(LoadBalancerState::ActiveImpaired, 100),
            vec![node("hp1", &[GW])],
            &["hp1"],
        );
        assert_eq!(to(&s, 200_000), Some(Transition::Active));
        let s = snapshot(lb(LoadBalancerState::Failed, 100), vec![], &[]);
        assert_eq!(to(&s, 999_000), None);
    }
}
