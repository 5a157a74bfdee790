//! The honest lifecycle of NAT gateways (spec 6.1, issue 16): what moves a
//! gateway on from `pending` and from `deleting`. A pending gateway becomes
//! `available` once a live hyperplane node of its shard reports it in
//! `serving` (it has programmed it); it becomes `failed` with AWS's
//! `FailureCode` when its VPC has no internet gateway attached (a public
//! one) or when no live node of its shard has been there for
//! [`Timing::unserved_secs`] since it was created. A deleting gateway
//! becomes `deleted` after [`Timing::drain_secs`], and only then are its
//! ENI and Elastic IPs released.
//!
//! [`plan`] is a pure function of a [`Snapshot`] of the fleet index and the
//! time; [`settle_once`] writes its steps through the NAT gateway actions'
//! `settle`, one compare-and-swap transaction per gateway, so a
//! concurrent DeleteNatGateway wins. Every server runs it from the shard
//! keeper; two servers planning the same step is harmless (the second
//! finds the state moved and does nothing).

use std::collections::BTreeSet;

use openvpc_model::lifecycle::NatGatewayState;

use super::Fleet;
use super::shards::Placement;
use crate::api::actions::nat_gateway;
use crate::api::error::ApiError;
use crate::records::nat_gateway::NatGateway;

/// How long a pending gateway may go without a live node in its shard
/// before it fails: long enough for a node that is restarting to come back
/// (its TTL is 1.5 s), short enough that a region without any hyperplane
/// node says so within a minute.
pub const UNSERVED_SECS: u64 = 30;

/// How long a deleting gateway drains before it is deleted and its
/// addresses released. AWS gives no figure for DeleteNatGateway (its
/// deletions take from seconds to minutes); a few seconds keeps the
/// `deleting` state observable without slowing teardowns.
pub const DRAIN_SECS: u64 = 5;

/// The lifecycle's waits, in seconds (tests pass their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub unserved_secs: u64,
    pub drain_secs: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            unserved_secs: UNSERVED_SECS,
            drain_secs: DRAIN_SECS,
        }
    }
}

/// A gateway on its way up or down, with where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub account: String,
    pub region: String,
    pub gateway: NatGateway,
}

/// What the lifecycle reads from the fleet index.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The pending and deleting gateways.
    pub gateways: Vec<Tracked>,
    /// The live hyperplane nodes (with what each serves) and the shards.
    pub placement: Placement,
    /// The VPCs with an internet gateway attached.
    pub attached_vpcs: BTreeSet<String>,
}

/// Where a gateway goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Available,
    Failed { code: String, message: String },
    Deleted,
}

impl Transition {
    /// The state the gateway moves to.
    pub fn state(&self) -> NatGatewayState {
        match self {
            Transition::Available => NatGatewayState::Available,
            Transition::Failed { .. } => NatGatewayState::Failed,
            Transition::Deleted => NatGatewayState::Deleted,
        }
    }
}

/// One gateway's move, from the state it was planned in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub account: String,
    pub region: String,
    pub gateway_id: String,
    pub from: NatGatewayState,
    pub to: Transition,
}

/// The moves due at `now_ms` (Unix milliseconds).
pub fn plan(snapshot: &Snapshot, now_ms: u64, timing: Timing) -> Vec<Step> {
    let now = now_ms / 1000;
    let mut steps = Vec::new();
    for t in &snapshot.gateways {
        let g = &t.gateway;
        let since = g.state_since.unwrap_or(0);
        let to = match g.state {
            NatGatewayState::Pending => pending(snapshot, t, now, since, timing),
            NatGatewayState::Deleting => {
                (now >= since.saturating_add(timing.drain_secs)).then_some(Transition::Deleted)
            }
            NatGatewayState::Available | NatGatewayState::Failed | NatGatewayState::Deleted => None,
        };
        if let Some(to) = to {
            steps.push(Step {
                account: t.account.clone(),
                region: t.region.clone(),
                gateway_id: g.id.clone(),
                from: g.state,
                to,
            });
        }
    }
    steps.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
    steps
}

/// Where a pending gateway goes now, if anywhere.
fn pending(
    snapshot: &Snapshot,
    t: &Tracked,
    now: u64,
    since: u64,
    timing: Timing,
) -> Option<Transition> {
    let g = &t.gateway;
    // spec 6.1: a public gateway routes out through its VPC's internet
    // gateway; without one it fails, as AWS decides while provisioning.
    if g.connectivity_type == "public" && !snapshot.attached_vpcs.contains(&g.vpc_id) {
        return Some(Transition::Failed {
            code: "Gateway.NotAttached".into(),
            message: format!("Network {} has no Internet gateway attached", g.vpc_id),
        });
    }
    let live = snapshot.placement.live_shard(&t.region, &g.id);
    if live.iter().any(|n| n.serving.contains(&g.id)) {
        return Some(Transition::Available);
    }
    if live.is_empty() && now >= since.saturating_add(timing.unserved_secs) {
        // botocore's FailureMessage for InternalError, naming the ENI, and
        // why here.
        let eni = g.network_interface_id.as_deref().unwrap_or("-");
        return Some(Transition::Failed {
            code: "InternalError".into(),
            message: format!(
                "Network interface {eni}, created and used internally by this NAT gateway is in an invalid state. Please try again. (No hyperplane node of region {} served it within {} s.)",
                t.region, timing.unserved_secs
            ),
        });
    }
    None
}

/// Plans on what the fleet index holds and applies each step; returns the
/// steps applied.
pub fn settle_once(fleet: &Fleet, now_ms: u64, timing: Timing) -> Result<Vec<Step>, ApiError> {
    let steps = plan(&fleet.nat_snapshot(), now_ms, timing);
    let mut applied = Vec::new();
    for step in steps {
        if nat_gateway::settle(fleet.store().as_ref(), &step, now_ms / 1000)? {
            tracing::info!(
                gateway = %step.gateway_id,
                from = %step.from,
                to = %step.to.state(),
                "NAT gateway moved on"
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
    use openvpc_model::lifecycle::NatAddressStatus;
    use openvpc_model::node::NodeRecord;
    use std::collections::BTreeMap;

    fn gateway(id: &str, state: NatGatewayState, since: u64, public: bool) -> Tracked {
        Tracked {
            account: "123456789012".into(),
            region: "r1".into(),
            gateway: NatGateway {
                id: id.into(),
                owner_id: "123456789012".into(),
                subnet_id: "subnet-1".into(),
                vpc_id: "vpc-1".into(),
                availability_zone: "r1a".into(),
                connectivity_type: if public { "public" } else { "private" }.into(),
                state,
                state_since: Some(since),
                failure_code: None,
                failure_message: None,
                network_interface_id: Some("eni-1".into()),
                addresses: vec![crate::records::nat_gateway::NatAddress {
                    private_ip: Some("10.0.1.5".parse().unwrap()),
                    allocation_id: None,
                    public_ip: None,
                    association_id: None,
                    is_primary: true,
                    status: NatAddressStatus::Succeeded,
                }],
                create_time: String::new(),
                delete_time: None,
                ended_at: None,
                tags: Vec::new(),
            },
        }
    }

    fn node(id: &str, expires_at_ms: u64, serving: &[&str]) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            region: "r1".into(),
            underlay_ip: "10.254.0.1".parse().unwrap(),
            registered_at: 0,
            expires_at_ms,
            serving: serving.iter().map(|s| (*s).to_owned()).collect(),
            target_health: Vec::new(),
        }
    }

    fn snapshot(g: Tracked, nodes: Vec<NodeRecord>, shard: &[&str]) -> Snapshot {
        Snapshot {
            placement: Placement {
                shards: BTreeMap::from([(
                    shard_key("r1", &g.gateway.id),
                    shard.iter().map(|s| (*s).to_owned()).collect(),
                )]),
                nodes: BTreeMap::from([("r1".to_owned(), nodes)]),
            },
            gateways: vec![g],
            attached_vpcs: BTreeSet::from(["vpc-1".to_owned()]),
        }
    }

    fn to(s: &Snapshot, now_ms: u64) -> Option<Transition> {
        let steps = plan(s, now_ms, Timing::default());
        assert!(steps.len() <= 1);
        steps.into_iter().next().map(|s| s.to)
    }

    /// issue 16: pending until a live node of its shard serves it.
    #[test]
    fn pending_becomes_available_when_a_shard_node_serves_it() {
        let g = gateway("nat-1", NatGatewayState::Pending, 100, true);
        let s = snapshot(g.clone(), vec![node("hp1", 200_000, &[])], &["hp1", "hp2"]);
        assert_eq!(to(&s, 101_000), None, "programmed by no node yet");
        // A node outside the shard does not count.
        let s = snapshot(
            g.clone(),
            vec![node("hp3", 200_000, &["nat-1"])],
            &["hp1", "hp2"],
        );
        assert_eq!(to(&s, 101_000), None);
        let s = snapshot(g, vec![node("hp2", 200_000, &["nat-1"])], &["hp1", "hp2"]);
        assert_eq!(to(&s, 101_000), Some(Transition::Available));
    }

    /// spec 6.1: a public gateway whose VPC has no internet gateway fails
    /// with Gateway.NotAttached; a private one does not need one.
    #[test]
    fn a_public_gateway_without_igw_fails() {
        let mut s = snapshot(
            gateway("nat-1", NatGatewayState::Pending, 100, true),
            vec![node("hp1", 200_000, &["nat-1"])],
            &["hp1"],
        );
        s.attached_vpcs.clear();
        assert_eq!(
            to(&s, 101_000),
            Some(Transition::Failed {
                code: "Gateway.NotAttached".into(),
                message: "Network vpc-1 has no Internet gateway attached".into()
            })
        );
        s.gateways[0].gateway.connectivity_type = "private".into();
        assert_eq!(to(&s, 101_000), Some(Transition::Available));
    }

    /// issue 16: a gateway no node can serve fails with InternalError after
    /// [`UNSERVED_SECS`]; a live node of its shard keeps it waiting.
    #[test]
    fn a_gateway_without_nodes_fails_after_the_wait() {
        let g = gateway("nat-1", NatGatewayState::Pending, 100, false);
        let s = snapshot(g.clone(), vec![], &[]);
        assert_eq!(to(&s, (100 + UNSERVED_SECS - 1) * 1000), None);
        let Some(Transition::Failed { code, message }) = to(&s, (100 + UNSERVED_SECS) * 1000)
        else {
            panic!("not failed");
        };
        assert_eq!(code, "InternalError");
        assert!(message.starts_with("Network interface eni-1, created and used internally by this NAT gateway is in an invalid state."), "{message}");
        let s = snapshot(g, vec![node("hp1", u64::MAX, &[])], &["hp1"]);
        assert_eq!(to(&s, (100 + UNSERVED_SECS) * 1000), None);
    }

    /// issue 16: a deleting gateway drains, then is deleted.
    #[test]
    fn deleting_drains_then_deletes() {
        let s = snapshot(
            gateway("nat-1", NatGatewayState::Deleting, 100, true),
            vec![],
            &[],
        );
        assert_eq!(to(&s, (100 + DRAIN_SECS) * 1000 - 1), None);
        assert_eq!(to(&s, (100 + DRAIN_SECS) * 1000), Some(Transition::Deleted));
    }
}
