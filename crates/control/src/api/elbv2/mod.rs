//! The ELBv2 API (Version 2015-12-01, SigV4 service `elasticloadbalancing`,
//! spec 9 and 12.5) for network load balancers: load balancers, target
//! groups, targets and listeners as records in the caller's key space, with
//! the standard Query protocol's responses. The hyperplane nodes of each
//! load balancer's shard balance its packets and probe its targets (the
//! fleet compiles what they get from these records); target health is
//! what their probes report (see [`target_health`]).
//!
//! This file owns dispatch and what every action shares (errors, names,
//! paging, attributes). The records and their lookups are in [`records`],
//! stored through the same resource framework as the EC2 resources; each
//! kind's actions are in their own file.

use serde::Deserialize;

use crate::api::actions::Ctx;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;

mod health;
mod listener;
mod load_balancer;
pub mod records;
mod tags;
mod target_group;

pub use health::{shard_report, target_health};
pub use records::{HealthCheck, Listener, LoadBalancer, Target, TargetGroup, Zone, subnet_in_use};

/// The namespace of every ELBv2 response and error.
pub const NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// spec 9.7 / 13: network load balancers per region.
pub const MAX_LOAD_BALANCERS: usize = 50;
/// spec 9.1: listeners per NLB.
pub const MAX_LISTENERS: usize = 50;
/// spec 9.7: target groups per region.
pub const MAX_TARGET_GROUPS: usize = 3000;
/// spec 9.7: targets per group.
pub const MAX_TARGETS: usize = 1000;

type Handler = fn(&Ctx, &Params) -> Result<String, ApiError>;

/// Runs an ELBv2 action.
pub fn dispatch(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let action = params.required("Action")?;
    let handler: Handler = match action {
        "CreateLoadBalancer" => load_balancer::create_load_balancer,
        "DescribeLoadBalancers" => load_balancer::describe_load_balancers,
        "DeleteLoadBalancer" => load_balancer::delete_load_balancer,
        "DescribeLoadBalancerAttributes" => load_balancer::describe_load_balancer_attributes,
        "ModifyLoadBalancerAttributes" => load_balancer::modify_load_balancer_attributes,
        "CreateTargetGroup" => target_group::create_target_group,
        "DescribeTargetGroups" => target_group::describe_target_groups,
        "ModifyTargetGroup" => target_group::modify_target_group,
        "DeleteTargetGroup" => target_group::delete_target_group,
        "RegisterTargets" => target_group::register_targets,
        "DeregisterTargets" => target_group::deregister_targets,
        "DescribeTargetHealth" => health::describe_target_health,
        "CreateListener" => listener::create_listener,
        "DescribeListeners" => listener::describe_listeners,
        "ModifyListener" => listener::modify_listener,
        "DeleteListener" => listener::delete_listener,
        "DescribeListenerAttributes" => listener::describe_listener_attributes,
        "ModifyListenerAttributes" => listener::modify_listener_attributes,
        "DescribeTargetGroupAttributes" => target_group::describe_target_group_attributes,
        "ModifyTargetGroupAttributes" => target_group::modify_target_group_attributes,
        "AddTags" => tags::add_tags,
        "RemoveTags" => tags::remove_tags,
        "DescribeTags" => tags::describe_tags,
        _ => return Err(ApiError::invalid_action(action)),
    };
    handler(ctx, params)
}

fn validation(message: impl Into<String>) -> ApiError {
    ApiError::new("ValidationError", message)
}

fn config(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidConfigurationRequest", message)
}

fn answer(ctx: &Ctx, action: &str, body: impl FnOnce(&mut Xml)) -> String {
    Xml::query_response(action, NAMESPACE, ctx.request_id, body)
}

fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn read<T: for<'de> Deserialize<'de>>(value: &[u8], noun: &str) -> Result<T, ApiError> {
    serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("A stored {noun} is unreadable: {e}")))
}

/// Load balancer and target group names: 1–32 alphanumerics and hyphens,
/// not starting or ending with a hyphen.
fn check_name(name: &str, noun: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(validation(format!(
            "{noun} name '{name}' must have 1 to 32 characters, only alphanumerics and hyphens, and must not begin or end with a hyphen"
        )));
    }
    if noun == "Load balancer" && name.starts_with("internal-") {
        return Err(validation(format!(
            "Load balancer name '{name}' cannot begin with 'internal-'"
        )));
    }
    Ok(())
}

fn tags(params: &Params) -> Result<Vec<(String, String)>, ApiError> {
    let tags = params.tags("Tags.member")?;
    Ok(tags.into_iter().map(|t| (t.key, t.value)).collect())
}

/// A page of `items` from `Marker` (the name or ARN of the page's first
/// item, as our markers are issued), at most `PageSize` (1–400) long, and
/// the marker of the next page.
fn page<T>(
    params: &Params,
    mut items: Vec<T>,
    name: impl Fn(&T) -> &str,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let size = match params.number::<usize>("PageSize")? {
        Some(n) if !(1..=400).contains(&n) => {
            return Err(validation(format!(
                "PageSize {n} must be between 1 and 400"
            )));
        }
        Some(n) => n,
        None => 400,
    };
    if let Some(marker) = params.get("Marker") {
        // The marker names the first item of the page; if that item has
        // gone since, the page starts at the next name in order.
        let start = items
            .iter()
            .position(|i| name(i) == marker)
            .or_else(|| items.iter().position(|i| name(i) > marker))
            .unwrap_or(items.len());
        items.drain(..start);
    }
    let next = items.get(size).map(|i| name(i).to_owned());
    items.truncate(size);
    Ok((items, next))
}

fn write_attributes(x: &mut Xml, attributes: &[(&'static str, String)]) {
    x.members("Attributes", attributes, |x, (k, v)| {
        x.elem("Key", k).elem("Value", v);
    });
}

fn bool_attribute(key: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(validation(format!(
            "Attribute '{key}' must be 'true' or 'false', not '{value}'"
        ))),
    }
}

fn check_port(name: &str, port: u32) -> Result<u16, ApiError> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| validation(format!("{name} {port} must be between 1 and 65535")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_1_to_32_alphanumerics_and_inner_hyphens() {
        assert!(check_name("my-lb-1", "Load balancer").is_ok());
        assert!(check_name(&"a".repeat(32), "Target group").is_ok());
        for bad in ["", "-lb", "lb-", "lb_1", &"a".repeat(33)] {
            let e = check_name(bad, "Target group").unwrap_err();
            assert_eq!(e.code, "ValidationError", "{bad:?}");
        }
        // Load balancer names only: the prefix AWS gives internal NLBs' DNS names.
        assert!(check_name("internal-lb", "Load balancer").is_err());
        assert!(check_name("internal-tg", "Target group").is_ok());
    }

    #[test]
    fn pages_start_at_the_marker_or_the_next_name_after_it() {
        let names = || vec!["a", "b", "c", "d"];
        let params = Params::parse(b"PageSize=2&Marker=b", "");
        let (items, next) = page(&params, names(), |n| n).unwrap();
        assert_eq!((items, next.as_deref()), (vec!["b", "c"], Some("d")));
        // A marker whose item has gone starts at the next name in order.
        let params = Params::parse(b"Marker=bb", "");
        let (items, next) = page(&params, names(), |n| n).unwrap();
        assert_eq!((items, next), (vec!["c", "d"], None));
        let params = Params::parse(b"PageSize=401", "");
        assert!(page(&params, names(), |n| n).is_err());
    }
}
