//! ELBv2 listener actions: Create, Describe, Modify and Delete Listener(s)
//! with their one forward action, listener attributes (spec 9.6), and the
//! target group's in-use time that listeners start and end.

use super::records::{
    Listener, LoadBalancer, check_arn, find_lb, find_listener, find_tg, get_tg, listener_not_found,
    listeners,
};
use super::{
    MAX_LISTENERS, answer, check_port, config, page, random_id, validation, write_attributes,
};
use crate::api::actions::Ctx;
use crate::api::actions::resource::{Tx, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use openvpc_model::time::now_secs;

/// Which target group protocols a listener protocol may forward to.
fn forwards_to(listener: &str, group: &str) -> bool {
    match listener {
        "TCP" => group == "TCP" || group == "TCP_UDP",
        "UDP" => group == "UDP" || group == "TCP_UDP",
        "TCP_UDP" => group == "TCP_UDP",
        "TLS" => group == "TCP" || group == "TLS",
        _ => false,
    }
}

/// The one `forward` default action: its target group ARN.
fn default_action(params: &Params) -> Result<Option<String>, ApiError> {
    let actions = params.structs("DefaultActions.member")?;
    match actions.as_slice() {
        [] => Ok(None),
        [a] => {
            let kind = a
                .required("Type")
                .map_err(|_| validation("DefaultActions.member.N.Type is required"))?;
            if kind != "forward" {
                return Err(validation(format!(
                    "Action type '{kind}' is not supported on network load balancers: use 'forward'"
                )));
            }
            let arn = a
                .get("TargetGroupArn")
                .or_else(|| a.get("ForwardConfig.TargetGroups.member.1.TargetGroupArn"))
                .ok_or_else(|| validation("A forward action needs a TargetGroupArn"))?;
            Ok(Some(arn.to_owned()))
        }
        _ => Err(validation(
            "A network load balancer listener takes exactly one default action",
        )),
    }
}

fn write_listener(x: &mut Xml, l: &Listener) {
    x.elem("ListenerArn", &l.arn)
        .elem("LoadBalancerArn", &l.load_balancer_arn)
        .elem("Port", l.port)
        .elem("Protocol", &l.protocol);
    if let Some(cert) = &l.certificate_arn {
        x.members("Certificates", [cert], |x, c| {
            x.elem("CertificateArn", c);
        });
    }
    x.members("DefaultActions", [&l.target_group_arn], |x, tg| {
        x.elem("Type", "forward").elem("TargetGroupArn", tg);
    });
}

/// Checks a listener's protocol, port and target group against its load
/// balancer and the other listeners, and marks the group in use.
fn check_listener(tx: &mut Tx, l: &Listener, lb: &LoadBalancer) -> Result<(), ApiError> {
    if !["TCP", "UDP", "TCP_UDP", "TLS"].contains(&l.protocol.as_str()) {
        return Err(validation(format!(
            "Listener protocol '{}' must be one of [TCP, UDP, TCP_UDP, TLS]",
            l.protocol
        )));
    }
    // A TLS listener terminates TLS with a certificate from ACM; openvpc
    // has no certificates yet, so it refuses the protocol as AWS refuses
    // one a load balancer does not support.
    if l.protocol == "TLS" {
        return Err(ApiError::new(
            "UnsupportedProtocol",
            "TLS listeners are not supported yet: they need certificates (ACM), which openvpc does not have; use TCP, UDP or TCP_UDP",
        ));
    }
    if lb.ip_address_type == "dualstack" && !["TCP", "TLS"].contains(&l.protocol.as_str()) {
        return Err(config(
            "Dual-stack network load balancers take TCP and TLS listeners only",
        ));
    }
    let all = listeners(tx)?;
    let others: Vec<&Listener> = all
        .iter()
        .filter(|o| o.load_balancer_arn == lb.arn && o.arn != l.arn)
        .collect();
    if others.iter().any(|o| o.port == l.port) {
        return Err(ApiError::new(
            "DuplicateListener",
            format!(
                "A listener already exists on port {} of this load balancer",
                l.port
            ),
        ));
    }
    if others.len() >= MAX_LISTENERS {
        return Err(ApiError::new(
            "TooManyListeners",
            format!("A load balancer can have at most {MAX_LISTENERS} listeners"),
        ));
    }
    let mut tg = find_tg(tx, &l.target_group_arn)?;
    if !forwards_to(&l.protocol, &tg.protocol) {
        return Err(validation(format!(
            "A {} listener cannot forward to a {} target group",
            l.protocol, tg.protocol
        )));
    }
    if tg.vpc_id != lb.vpc_id {
        return Err(config(format!(
            "Target group '{}' is in VPC '{}', not in the load balancer's VPC '{}'",
            tg.arn, tg.vpc_id, lb.vpc_id
        )));
    }
    if all
        .iter()
        .any(|o| o.target_group_arn == tg.arn && o.load_balancer_arn != lb.arn)
    {
        return Err(ApiError::new(
            "TargetGroupAssociationLimit",
            format!(
                "Target group '{}' is already associated with another load balancer",
                tg.arn
            ),
        ));
    }
    if tg.in_use_since.is_none() {
        tg.in_use_since = Some(now_secs());
        tx.put(&tg)?;
    }
    Ok(())
}

/// A target group no listener uses any more goes back to `unused`.
pub(super) fn release_unused(tx: &mut Tx, tg_arn: &str) -> Result<(), ApiError> {
    if listeners(tx)?.iter().any(|l| l.target_group_arn == tg_arn) {
        return Ok(());
    }
    if let Some(mut tg) = get_tg(tx, tg_arn)? {
        tg.in_use_since = None;
        tx.put(&tg)?;
    }
    Ok(())
}

pub(super) fn create_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let lb_arn = params.required("LoadBalancerArn")?;
    let protocol = params.required("Protocol")?.to_owned();
    let port = check_port(
        "Port",
        params
            .number("Port")?
            .ok_or_else(|| ApiError::missing_parameter("Port"))?,
    )?;
    let tg_arn = default_action(params)?
        .ok_or_else(|| validation("A listener needs a default action (DefaultActions.member.1)"))?;
    let certificate_arn = params
        .get("Certificates.member.1.CertificateArn")
        .map(str::to_owned);
    let listener = transact(ctx, |tx| {
        let lb = find_lb(tx, lb_arn)?;
        let id = random_id();
        let l = Listener {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:{}:listener/net/{}/{}/{id}",
                ctx.region, ctx.account.id, lb.name, lb.id
            ),
            id: id.clone(),
            load_balancer_arn: lb.arn.clone(),
            protocol: protocol.clone(),
            port,
            target_group_arn: tg_arn.clone(),
            certificate_arn: certificate_arn.clone(),
            tcp_idle_timeout: None,
        };
        check_listener(tx, &l, &lb)?;
        tx.put(&l)?;
        Ok(l)
    })?;
    Ok(answer(ctx, "CreateListener", |x| {
        x.members("Listeners", [&listener], write_listener);
    }))
}

pub(super) fn describe_listeners(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arns = params.list("ListenerArns.member")?;
    let lb_arn = params.get("LoadBalancerArn");
    if arns.is_empty() == lb_arn.is_none() {
        return Err(validation(
            "Specify either a load balancer ARN or listener ARNs, and not both",
        ));
    }
    let chosen = transact(ctx, |tx| {
        let all = listeners(tx)?;
        if let Some(lb) = lb_arn {
            let lb = find_lb(tx, lb)?;
            return Ok(all
                .into_iter()
                .filter(|l| l.load_balancer_arn == lb.arn)
                .collect::<Vec<_>>());
        }
        arns.iter()
            .map(|arn| {
                check_arn(arn, "listener")?;
                all.iter()
                    .find(|l| &l.arn == arn)
                    .cloned()
                    .ok_or_else(|| listener_not_found(arn))
            })
            .collect()
    })?;
    let (items, next) = page(params, chosen, |l| &l.arn)?;
    Ok(answer(ctx, "DescribeListeners", |x| {
        x.members("Listeners", &items, write_listener);
        x.opt("NextMarker", next);
    }))
}

pub(super) fn modify_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let new_tg = default_action(params)?;
    let listener = transact(ctx, |tx| {
        let mut l = find_listener(tx, arn)?;
        let old_tg = l.target_group_arn.clone();
        if let Some(p) = params.get("Protocol") {
            l.protocol = p.to_owned();
            // spec 9.6: only TCP listeners have a configurable idle timeout;
            // a listener that stops being one keeps no setting to reappear.
            if l.protocol != "TCP" {
                l.tcp_idle_timeout = None;
            }
        }
        if let Some(port) = params.number::<u32>("Port")? {
            l.port = check_port("Port", port)?;
        }
        if let Some(tg) = &new_tg {
            l.target_group_arn = tg.clone();
        }
        if let Some(cert) = params.get("Certificates.member.1.CertificateArn") {
            l.certificate_arn = Some(cert.to_owned());
        }
        let lb = find_lb(tx, &l.load_balancer_arn)?;
        check_listener(tx, &l, &lb)?;
        tx.put(&l)?;
        if old_tg != l.target_group_arn {
            release_unused(tx, &old_tg)?;
        }
        Ok(l)
    })?;
    Ok(answer(ctx, "ModifyListener", |x| {
        x.members("Listeners", [&listener], write_listener);
    }))
}

pub(super) fn delete_listener(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    transact(ctx, |tx| {
        let l = find_listener(tx, arn)?;
        tx.delete::<Listener>(&l.id);
        release_unused(tx, &l.target_group_arn)
    })?;
    Ok(answer(ctx, "DeleteListener", |_| {}))
}

/// spec 9.6: the TCP idle timeout's key, default and range.
const TCP_IDLE_TIMEOUT: &str = "tcp.idle_timeout.seconds";
const TCP_IDLE_TIMEOUT_DEFAULT: u32 = 350;
const TCP_IDLE_TIMEOUT_RANGE: std::ops::RangeInclusive<u32> = 60..=6000;

/// A listener's attributes: the TCP idle timeout for a TCP listener
/// (spec 9.6), none for the others, whose timeouts are fixed (TLS: 350 s,
/// UDP: 120 s) and which AWS shows no attributes for.
fn listener_attributes(l: &Listener) -> Vec<(&'static str, String)> {
    if l.protocol != "TCP" {
        return Vec::new();
    }
    let seconds = l.tcp_idle_timeout.unwrap_or(TCP_IDLE_TIMEOUT_DEFAULT);
    vec![(TCP_IDLE_TIMEOUT, seconds.to_string())]
}

pub(super) fn describe_listener_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let listener = transact(ctx, |tx| find_listener(tx, arn))?;
    Ok(answer(ctx, "DescribeListenerAttributes", |x| {
        write_attributes(x, &listener_attributes(&listener))
    }))
}

pub(super) fn modify_listener_attributes(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let arn = params.required("ListenerArn")?;
    let changes = params.structs("Attributes.member")?;
    if changes.is_empty() {
        return Err(validation("At least one attribute must be specified"));
    }
    let listener = transact(ctx, |tx| {
        let mut l = find_listener(tx, arn)?;
        for change in &changes {
            let key = change
                .required("Key")
                .map_err(|_| validation("Attributes.member.N.Key is required"))?;
            let value = change.get("Value").unwrap_or("");
            if key != TCP_IDLE_TIMEOUT {
                return Err(validation(format!(
                    "Listener attribute key '{key}' is not recognized; network load balancer listeners take '{TCP_IDLE_TIMEOUT}'"
                )));
            }
            let seconds = value
                .parse::<u32>()
                .ok()
                .filter(|s| TCP_IDLE_TIMEOUT_RANGE.contains(s))
                .ok_or_else(|| {
                    validation(format!(
                        "Attribute '{key}' must be a number from {} to {}, not '{value}'",
                        TCP_IDLE_TIMEOUT_RANGE.start(),
                        TCP_IDLE_TIMEOUT_RANGE.end()
                    ))
                })?;
            if l.protocol != "TCP" {
                return Err(config(format!(
                    "Attribute '{key}' can be set on TCP listeners only, not on this {} listener",
                    l.protocol
                )));
            }
            l.tcp_idle_timeout = Some(seconds);
        }
        tx.put(&l)?;
        Ok(l)
    })?;
    Ok(answer(ctx, "ModifyListenerAttributes", |x| {
        write_attributes(x, &listener_attributes(&listener))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(protocol: &str, tcp_idle_timeout: Option<u32>) -> Listener {
        Listener {
            arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/net/lb/1/2"
                .to_owned(),
            id: "2".to_owned(),
            load_balancer_arn:
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/lb/1"
                    .to_owned(),
            protocol: protocol.to_owned(),
            port: 80,
            target_group_arn:
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg/3".to_owned(),
            certificate_arn: None,
            tcp_idle_timeout,
        }
    }

    #[test]
    fn listener_protocols_forward_to_compatible_groups_only() {
        // spec 9.1: an NLB listener forwards TCP, UDP, TCP_UDP or TLS
        // (TLS listeners are refused before this, see `check_listener`).
        assert!(forwards_to("TCP", "TCP") && forwards_to("TCP", "TCP_UDP"));
        assert!(!forwards_to("TCP", "UDP"));
        assert!(forwards_to("UDP", "UDP") && forwards_to("UDP", "TCP_UDP"));
        assert!(forwards_to("TCP_UDP", "TCP_UDP") && !forwards_to("TCP_UDP", "TCP"));
        assert!(forwards_to("TLS", "TCP") && forwards_to("TLS", "TLS"));
        assert!(!forwards_to("HTTP", "TCP"));
    }

    #[test]
    fn only_tcp_listeners_show_an_idle_timeout_defaulting_to_350() {
        // spec 9.6: 350 s by default, configurable on TCP listeners only.
        assert_eq!(
            listener_attributes(&listener("TCP", None)),
            vec![(TCP_IDLE_TIMEOUT, "350".to_owned())]
        );
        assert_eq!(
            listener_attributes(&listener("TCP", Some(60))),
            vec![(TCP_IDLE_TIMEOUT, "60".to_owned())]
        );
        assert!(listener_attributes(&listener("TLS", None)).is_empty());
        assert!(listener_attributes(&listener("UDP", None)).is_empty());
    }
}
