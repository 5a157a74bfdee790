//! The ELBv2 records: load balancers, target groups (with their targets)
//! and listeners, stored through the resource framework's [`Record`] so that
//! [`Tx`]'s `get`/`list`/`put`/`delete` read and write them like the EC2
//! resources. Their IDs are the 16 hex digits that end their ARNs, not EC2
//! IDs, so they keep segments of their own (`elb-lb`, `elb-tg`,
//! `elb-listener`) and are looked up by ARN here. Also what EC2 actions may
//! ask of them ([`subnet_in_use`]) without reaching into request handling.

use super::validation;
use crate::api::actions::resource::{Record, Tx};
use crate::api::error::ApiError;
pub use crate::records::elbv2::{HealthCheck, Listener, LoadBalancer, Target, TargetGroup, Zone};

/// The store segments, as records have always been kept: existing data
/// must still load.
const LB_SEGMENT: &str = "elb-lb";
const TG_SEGMENT: &str = "elb-tg";
const LISTENER_SEGMENT: &str = "elb-listener";

impl Record for LoadBalancer {
    fn segment() -> &'static str {
        LB_SEGMENT
    }

    fn noun() -> &'static str {
        "load balancer"
    }

    fn record_id(&self) -> &str {
        &self.id
    }
}

impl Record for TargetGroup {
    fn segment() -> &'static str {
        TG_SEGMENT
    }

    fn noun() -> &'static str {
        "target group"
    }

    fn record_id(&self) -> &str {
        &self.id
    }
}

impl Record for Listener {
    fn segment() -> &'static str {
        LISTENER_SEGMENT
    }

    fn noun() -> &'static str {
        "listener"
    }

    fn record_id(&self) -> &str {
        &self.id
    }
}

/// Every load balancer, in name order: Describe answers so, as AWS lists them.
pub(super) fn load_balancers(tx: &mut Tx) -> Result<Vec<LoadBalancer>, ApiError> {
    let mut all: Vec<LoadBalancer> = tx.list()?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Every target group, in name order.
pub(super) fn target_groups(tx: &mut Tx) -> Result<Vec<TargetGroup>, ApiError> {
    let mut all: Vec<TargetGroup> = tx.list()?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(all)
}

/// Every listener, by load balancer and port.
pub(super) fn listeners(tx: &mut Tx) -> Result<Vec<Listener>, ApiError> {
    let mut all: Vec<Listener> = tx.list()?;
    all.sort_by(|a, b| (&a.load_balancer_arn, a.port).cmp(&(&b.load_balancer_arn, b.port)));
    Ok(all)
}

/// Whether a load balancer has a node in `subnet_id`: its ENI there keeps
/// the subnet alive (spec 9.1 and 1.7), so DeleteSubnet asks.
pub fn subnet_in_use(tx: &mut Tx, subnet_id: &str) -> Result<bool, ApiError> {
    Ok(tx
        .list::<LoadBalancer>()?
        .iter()
        .any(|lb| lb.in_subnet(subnet_id)))
}

pub(super) fn lb_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "LoadBalancerNotFound",
        format!("One or more load balancers not found: '{arn}'"),
    )
}

pub(super) fn tg_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "TargetGroupNotFound",
        format!("One or more target groups not found: '{arn}'"),
    )
}

pub(super) fn listener_not_found(arn: &str) -> ApiError {
    ApiError::new(
        "ListenerNotFound",
        format!("One or more listeners not found: '{arn}'"),
    )
}

/// An ARN must at least look like one of ours before it is looked up:
/// AWS refuses other strings as malformed rather than absent.
pub(super) fn check_arn(arn: &str, kind: &str) -> Result<(), ApiError> {
    if !arn.starts_with("arn:") || !arn.contains(&format!(":{kind}/")) {
        return Err(validation(format!("'{arn}' is not a valid {kind} ARN")));
    }
    // A well-formed ARN of another region or account is looked up and
    // found absent: the records are per account and region.
    Ok(())
}

/// The record an ARN names, if it exists: the record under the ARN's last
/// part (its ID), if that record has exactly this ARN.
fn by_arn<R: Record>(
    tx: &mut Tx,
    arn: &str,
    arn_of: impl Fn(&R) -> &str,
) -> Result<Option<R>, ApiError> {
    let id = arn.rsplit('/').next().unwrap_or(arn);
    Ok(tx.get::<R>(id)?.filter(|r| arn_of(r) == arn))
}

/// The load balancer `arn` names, if it exists (the ARN is not checked).
pub(super) fn get_lb(tx: &mut Tx, arn: &str) -> Result<Option<LoadBalancer>, ApiError> {
    by_arn(tx, arn, |lb: &LoadBalancer| &lb.arn)
}

/// The target group `arn` names, if it exists (the ARN is not checked).
pub(super) fn get_tg(tx: &mut Tx, arn: &str) -> Result<Option<TargetGroup>, ApiError> {
    by_arn(tx, arn, |tg: &TargetGroup| &tg.arn)
}

/// The load balancer `arn` names: a malformed ARN is `ValidationError`, a
/// missing one `LoadBalancerNotFound`.
pub(super) fn find_lb(tx: &mut Tx, arn: &str) -> Result<LoadBalancer, ApiError> {
    check_arn(arn, "loadbalancer")?;
    get_lb(tx, arn)?.ok_or_else(|| lb_not_found(arn))
}

/// The target group `arn` names (`TargetGroupNotFound` if none).
pub(super) fn find_tg(tx: &mut Tx, arn: &str) -> Result<TargetGroup, ApiError> {
    check_arn(arn, "targetgroup")?;
    get_tg(tx, arn)?.ok_or_else(|| tg_not_found(arn))
}

/// The listener `arn` names (`ListenerNotFound` if none).
pub(super) fn find_listener(tx: &mut Tx, arn: &str) -> Result<Listener, ApiError> {
    check_arn(arn, "listener")?;
    by_arn(tx, arn, |l: &Listener| &l.arn)?.ok_or_else(|| listener_not_found(arn))
}
