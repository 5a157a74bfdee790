//! Reachability Analyzer analyses (issue 14): StartNetworkInsightsAnalysis,
//! DescribeNetworkInsightsAnalyses and DeleteNetworkInsightsAnalysis.
//!
//! An analysis is answered from the dataplane's explain mode
//! (`crate::trace`): the production layers run over the compiled state the
//! hosts run, with the path's protocol and port, from the path's source ENI
//! to its destination's address. It is not a second model of the network,
//! so its verdict is the fate a real packet would meet. The analysis runs
//! while StartNetworkInsightsAnalysis is answered and is stored as the
//! snapshot the API shows (`succeeded` or `failed`, never left `running`);
//! Describe never recomputes it.
//!
//! What the steps of the explanation lack to fill AWS's shapes (a security
//! group rule's CIDR, an ACL rule's ports, a route's target kind) is read
//! from the caller's own records by the IDs the steps name.
//!
//! What is honest rather than invented:
//! - a path from an internet gateway fails (inbound traffic from the
//!   internet needs the edge, issue 15);
//! - a route to a gateway no node serves yet stops the packet, as the hosts
//!   stop it: not found, `BAD_STATE` on the gateway, and a warning that says
//!   why;
//! - through a NAT gateway, the hyperplane node's core and then the edge's
//!   translate the packet (`crate::trace`): the path is found when both do,
//!   with the NAT gateway's component (the source translated to its private
//!   address) and the internet gateway's (to its Elastic IP); a drop on the
//!   node or the edge fails the analysis with the counter's name;
//! - to a network load balancer's address, the node's core picks the
//!   target as the node would (`crate::trace`): the load balancer's
//!   component (with its `ElasticLoadBalancerListener`) and its target
//!   group's come between the source's and the target's, whose security
//!   groups and ACL decide; an explanation of a drop at the target names
//!   the load balancer, listener, target group and target; no listener on
//!   the port is `ELB_LISTENERS_MISMATCH` [U: documented for Classic Load
//!   Balancers]; a target that is not healthy, or a load balancer failing
//!   open, is a warning;
//! - to a VPN gateway (issue 19), the edge's gateway core routes the
//!   packet (`crate::trace`): the path is found when a tunnel that is up
//!   carries it, ending at the gateway's component (the route to it shown
//!   with origin `EnableVgwRoutePropagation` when it was propagated), and a
//!   warning names the tunnel and its edge; when no tunnel is up (the
//!   hosts' route to the gateway is unserved, or the gateway's table picks
//!   a tunnel that is down) the explanation is `BAD_STATE_VPN` with the
//!   gateway and the connection, and the warning gives each tunnel's state;
//!   a gateway that knows no prefix for the address is
//!   `NO_ROUTE_TO_DESTINATION` on the gateway; no route at all while the
//!   VPC has a gateway warns with its tunnels' states (none propagates);
//! - a source that runs on no host fails with the reason.
//!
//! Isolation: the path is looked up in the caller's account only, and the
//! trace engine does not show the steps taken at another account's ENI.
//! AdditionalAccounts (cross-account analysis) is refused.

use std::net::Ipv4Addr;

use openvpc_dataplane::DropReason;
use openvpc_dataplane::explain::{Evidence, Explanation as Trace, Fate, Probe, StepAction};
use openvpc_dataplane::policy::Way;
use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::AnalysisStatus;
use openvpc_model::rule::{IpProtocol, L4Match, RuleAction, TrafficMatch};
use openvpc_model::time::{days_from_civil, format_time, now_secs};

use super::idempotency::{self, ClientToken};
use super::internet_gateway::InternetGateway;
use super::nat_gateway::NatGateway;
use super::network_acl::{EntryCidr, IPV4_STAR_RULE, NetworkAcl};
use super::network_insights::{EndpointKind, NetworkInsightsPath, PathEndpoint, PathProtocol};
use super::network_interface::NetworkInterface;
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_where, new_id, transact, write_tags,
};
use super::route_table::{Destination, RouteTable, Target, TargetKind};
use super::security_group::{SecurityGroup, Target as SgTarget};
use super::trace::{fleet, interface_of};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::fleet::Fleet;
use crate::records::elbv2::{Listener as ElbListener, LoadBalancer, TargetGroup};
pub use crate::records::network_insights_analysis::{
    AnalysisAclRule, AnalysisComponent, AnalysisLoadBalancerTarget, AnalysisPacketHeader,
    AnalysisPortRange, AnalysisRouteTableRoute, AnalysisSecurityGroupRule, Direction, Explanation,
    ExplanationCode, NetworkInsightsAnalysis, PathComponent, RouteState,
};
use crate::trace::{EdgeHop, LbHop, NatHop, Traced, VgwStatus, VpnHop, trace};
use openvpc_edge::vgw::VgwDrop;

/// The address a path to an internet gateway is analysed with when the path
/// names none: any address outside the VPC that the route table sends to
/// the gateway serves, and a well-known public one reads plainly.
pub const INTERNET_PROBE: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

/// The analysis actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "StartNetworkInsightsAnalysis" => start(ctx, params),
        "DescribeNetworkInsightsAnalyses" => describe_analyses(ctx, params),
        "DeleteNetworkInsightsAnalysis" => delete(ctx, params),
        _ => return None,
    })
}

impl Resource for NetworkInsightsAnalysis {
    const KIND: ResourceKind = ResourceKind::NetworkInsightsAnalysis;
    // The code of the tags table (and Terraform's provider).
    const NOT_FOUND: &'static str = "InvalidNetworkInsightsAnalysisId.NotFound";
    const NOUN: &'static str = "network insights analysis";
    // botocore: NetworkInsightsMaxResults is 1 to 100.
    const MAX_RESULTS: std::ops::RangeInclusive<u32> = 1..=100;

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    /// botocore's documented filters: `path-found` and `status`.
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "path-found" => self
                .network_path_found
                .map(|f| f.to_string())
                .into_iter()
                .collect(),
            "status" => vec![self.status.as_str().to_owned()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("networkInsightsAnalysisId", &self.id)
            .elem("networkInsightsAnalysisArn", &self.arn)
            .elem("networkInsightsPathId", &self.network_insights_path_id)
            .elem("startDate", &self.start_date)
            .elem("status", self.status.as_str())
            .opt("statusMessage", self.status_message.as_ref())
            .opt("warningMessage", self.warning_message.as_ref())
            .opt("networkPathFound", self.network_path_found);
        x.list(
            "forwardPathComponentSet",
            &self.forward_path_components,
            write_path_component,
        );
        x.list("explanationSet", &self.explanations, write_explanation);
        write_tags(x, &self.tags);
    }
}

fn write_component(x: &mut Xml, name: &str, c: Option<&AnalysisComponent>) {
    if let Some(c) = c {
        x.node(name, |x| {
            x.elem("id", &c.id)
                .opt("arn", c.arn.as_ref())
                .opt("name", c.name.as_ref());
        });
    }
}

fn write_port_range(x: &mut Xml, name: &str, r: Option<AnalysisPortRange>) {
    if let Some(r) = r {
        x.node(name, |x| {
            x.elem("from", r.from).elem("to", r.to);
        });
    }
}

fn write_acl_rule(x: &mut Xml, r: &AnalysisAclRule) {
    x.node("aclRule", |x| {
        x.opt("cidr", r.cidr.as_ref())
            .elem("egress", r.egress)
            .elem("protocol", &r.protocol)
            .elem("ruleAction", action_text(r.rule_action))
            .elem("ruleNumber", r.rule_number);
        write_port_range(x, "portRange", r.port_range);
    });
}

fn write_sg_rule(x: &mut Xml, r: &AnalysisSecurityGroupRule) {
    x.node("securityGroupRule", |x| {
        x.opt("cidr", r.cidr.as_ref())
            .elem("direction", r.direction.as_str())
            .opt("securityGroupId", r.security_group_id.as_ref())
            .opt("prefixListId", r.prefix_list_id.as_ref())
            .elem("protocol", &r.protocol);
        write_port_range(x, "portRange", r.port_range);
    });
}

fn write_route(x: &mut Xml, r: &AnalysisRouteTableRoute) {
    x.node("routeTableRoute", |x| {
        x.opt("destinationCidr", r.destination_cidr.as_ref()).opt(
            "destinationPrefixListId",
            r.destination_prefix_list_id.as_ref(),
        );
        if let Some(t) = &r.target {
            x.elem(t.kind.element(), &t.id);
        }
        x.opt("origin", r.origin.as_ref())
            .elem("state", r.state.as_str());
    });
}

fn write_header(x: &mut Xml, name: &str, h: Option<&AnalysisPacketHeader>) {
    if let Some(h) = h {
        x.node(name, |x| {
            x.list("destinationAddressSet", &h.destination_addresses, |x, a| {
                x.text(a);
            });
            x.list(
                "destinationPortRangeSet",
                &h.destination_port_ranges,
                |x, r| {
                    x.elem("from", r.from).elem("to", r.to);
                },
            );
            x.elem("protocol", h.protocol.as_str());
            x.list("sourceAddressSet", &h.source_addresses, |x, a| {
                x.text(a);
            });
        });
    }
}

fn write_path_component(x: &mut Xml, c: &PathComponent) {
    x.elem("sequenceNumber", c.sequence_number);
    if let Some(r) = &c.acl_rule {
        write_acl_rule(x, r);
    }
    write_component(x, "attachedTo", c.attached_to.as_ref());
    write_component(x, "component", Some(&c.component));
    write_component(
        x,
        "elasticLoadBalancerListener",
        c.elastic_load_balancer_listener.as_ref(),
    );
    write_header(x, "outboundHeader", c.outbound_header.as_ref());
    write_header(x, "inboundHeader", c.inbound_header.as_ref());
    if let Some(r) = &c.route_table_route {
        write_route(x, r);
    }
    if let Some(r) = &c.security_group_rule {
        write_sg_rule(x, r);
    }
    write_component(x, "subnet", c.subnet.as_ref());
    write_component(x, "vpc", c.vpc.as_ref());
}

fn write_explanation(x: &mut Xml, e: &Explanation) {
    write_component(x, "acl", e.acl.as_ref());
    if let Some(r) = &e.acl_rule {
        write_acl_rule(x, r);
    }
    x.opt("address", e.address);
    write_component(x, "component", e.component.as_ref());
    write_component(x, "destination", e.destination.as_ref());
    x.opt("direction", e.direction.map(Direction::as_str))
        .elem("explanationCode", e.code.as_str());
    write_component(
        x,
        "elasticLoadBalancerListener",
        e.elastic_load_balancer_listener.as_ref(),
    );
    write_component(x, "internetGateway", e.internet_gateway.as_ref());
    x.opt("loadBalancerArn", e.load_balancer_arn.as_ref())
        .opt("loadBalancerListenerPort", e.load_balancer_listener_port);
    if let Some(t) = &e.load_balancer_target {
        x.node("loadBalancerTarget", |x| {
            x.elem("address", t.address)
                .elem("availabilityZone", &t.availability_zone);
            write_component(x, "instance", t.instance.as_ref());
            x.elem("port", t.port);
        });
    }
    write_component(
        x,
        "loadBalancerTargetGroup",
        e.load_balancer_target_group.as_ref(),
    );
    if !e.load_balancer_target_groups.is_empty() {
        x.list(
            "loadBalancerTargetGroupSet",
            &e.load_balancer_target_groups,
            |x, c| {
                x.elem("id", &c.id)
                    .opt("arn", c.arn.as_ref())
                    .opt("name", c.name.as_ref());
            },
        );
    }
    x.opt("loadBalancerTargetPort", e.load_balancer_target_port);
    write_component(x, "natGateway", e.nat_gateway.as_ref());
    write_component(x, "networkInterface", e.network_interface.as_ref());
    if let Some(r) = &e.route_table_route {
        write_route(x, r);
    }
    write_component(x, "routeTable", e.route_table.as_ref());
    if !e.security_groups.is_empty() {
        x.list("securityGroupSet", &e.security_groups, |x, c| {
            x.elem("id", &c.id).opt("arn", c.arn.as_ref());
        });
    }
    write_component(x, "subnet", e.subnet.as_ref());
    write_component(x, "vpc", e.vpc.as_ref());
    write_component(x, "vpnConnection", e.vpn_connection.as_ref());
    write_component(x, "vpnGateway", e.vpn_gateway.as_ref());
}

fn action_text(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Allow => "allow",
        RuleAction::Deny => "deny",
    }
}

// --- Start ------------------------------------------------------------------

/// A parameter openvpc refuses when it has any member.
fn refuse_list(params: &Params, name: &str, why: &str) -> Result<(), ApiError> {
    let values = params.list(name)?;
    match values.first() {
        Some(v) => Err(ApiError::invalid_value(name, v, why)),
        None => Ok(()),
    }
}

pub fn start(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let path_id = params.required("NetworkInsightsPathId")?;
    check_id(ResourceKind::NetworkInsightsPath, path_id)?;
    refuse_list(
        params,
        "AdditionalAccount",
        "openvpc analyses paths within the caller's account only: an account's network is invisible to every other account.",
    )?;
    refuse_list(
        params,
        "FilterInArn",
        "openvpc does not analyse through named intermediate components yet: leave FilterInArns out.",
    )?;
    refuse_list(
        params,
        "FilterOutArn",
        "openvpc does not exclude intermediate components yet: leave FilterOutArns out.",
    )?;
    let tags = tags_for(params, "network-insights-analysis")?;
    let token = ClientToken::of(params, "StartNetworkInsightsAnalysis")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let fleet = fleet(ctx)?;
    let analysis = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first analysis.
        if let Some(a) = idempotency::earlier_one::<NetworkInsightsAnalysis>(tx, token.as_ref())? {
            return Ok(a);
        }
        let path = tx.load::<NetworkInsightsPath>(path_id)?;
        let outcome = analyse(tx, fleet, &path)?;
        let id = new_id(ResourceKind::NetworkInsightsAnalysis);
        let start_secs = now_secs();
        let analysis = NetworkInsightsAnalysis {
            arn: format!(
                "arn:aws:ec2:{}:{}:network-insights-analysis/{id}",
                ctx.region, ctx.account.id
            ),
            id,
            owner_id: ctx.account.id.clone(),
            network_insights_path_id: path.id.clone(),
            start_date: format_time(start_secs),
            start_secs,
            status: outcome.status.unwrap_or(AnalysisStatus::Succeeded),
            status_message: outcome.status_message,
            warning_message: (!outcome.warnings.is_empty()).then(|| outcome.warnings.join(" ")),
            network_path_found: outcome.found,
            forward_path_components: outcome.components,
            explanations: outcome.explanations,
            tags: tags.clone(),
        };
        tx.put(&analysis)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&analysis))?;
        Ok(analysis)
    })?;
    Ok(Xml::response(
        "StartNetworkInsightsAnalysis",
        ctx.request_id,
        |x| {
            x.node("networkInsightsAnalysis", |x| analysis.write(x));
        },
    ))
}

/// What an analysis found.
#[derive(Debug, Default)]
struct Outcome {
    status: Option<AnalysisStatus>,
    status_message: Option<String>,
    warnings: Vec<String>,
    found: Option<bool>,
    components: Vec<PathComponent>,
    explanations: Vec<Explanation>,
}

impl Outcome {
    fn failed(message: impl Into<String>) -> Self {
        Outcome {
            status: Some(AnalysisStatus::Failed),
            status_message: Some(message.into()),
            ..Outcome::default()
        }
    }
}

/// Why an endpoint of the path cannot be analysed any more (deleted since
/// the path was made, or an instance with no interface): the analysis
/// fails with the reason; a store failure stays an error.
fn endpoint_failure(e: ApiError) -> Result<Outcome, ApiError> {
    if e.code == "InternalError" {
        return Err(e);
    }
    Ok(Outcome::failed(e.message))
}

/// Runs the path through explain mode. `Err` only for store failures: what
/// makes the analysis itself fail is a `failed` outcome (a `None` status
/// is a success).
fn analyse(tx: &mut Tx, fleet: &Fleet, path: &NetworkInsightsPath) -> Result<Outcome, ApiError> {
    let ctx = tx.ctx();
    let mut warnings = Vec::new();
    if path.source.kind == EndpointKind::InternetGateway {
        return Ok(Outcome::failed(format!(
            "openvpc cannot analyse a path from internet gateway {} yet: traffic from the internet enters through the edge, which is not built yet (issue 15).",
            path.source.id
        )));
    }
    let source = match interface_of(tx, "Source", &path.source.id) {
        Ok(eni) => eni,
        Err(e) => return endpoint_failure(e),
    };
    // The port: the path's, or the first of its filter's range.
    let range = path.filter_at_source.and_then(|f| f.destination_port_range);
    let port = match (path.destination_port, range) {
        (Some(p), _) => p,
        (None, Some(r)) => {
            let (from, to) = r.bounds();
            if from != to {
                warnings.push(format!(
                    "openvpc analyses one destination port: port {from} of the range {from}-{to} was analysed."
                ));
            }
            from
        }
        (None, None) => {
            return Ok(Outcome::failed(
                "openvpc analyses one destination port at a time: give the path a DestinationPort or a FilterAtSource.DestinationPortRange.",
            ));
        }
    };
    let probe = match path.protocol {
        PathProtocol::Tcp => Probe::Tcp { port },
        PathProtocol::Udp => Probe::Udp { port },
    };
    let filter_address = path.filter_at_source.and_then(|f| f.destination_address);
    let named_address = path.destination_ip.or(filter_address);
    let (dst, dst_eni) = match &path.destination {
        Some(d) if d.kind == EndpointKind::InternetGateway => {
            (named_address.unwrap_or(INTERNET_PROBE), None)
        }
        Some(d) => {
            let eni = match interface_of(tx, "Destination", &d.id) {
                Ok(eni) => eni,
                Err(e) => return endpoint_failure(e),
            };
            let Some(primary) = eni.private_ips.first().copied() else {
                return Ok(Outcome::failed(format!(
                    "The path's destination {} has no private IPv4 address.",
                    d.id
                )));
            };
            (named_address.unwrap_or(primary), Some(eni))
        }
        None => match named_address {
            Some(a) => (a, None),
            None => {
                return Ok(Outcome::failed(
                    "The path names no destination address to analyse.",
                ));
            }
        },
    };
    let source_ip = source.private_ips.first().copied();
    let asked_source = path
        .source_ip
        .or(path.filter_at_source.and_then(|f| f.source_address));
    if let Some(asked) = asked_source
        && Some(asked) != source_ip
    {
        warnings.push(format!(
            "openvpc analyses from the source interface's primary address, not {asked}."
        ));
    }
    if path.filter_at_destination.is_some() {
        warnings.push(
            "FilterAtDestination was not taken into account: it scopes paths from a gateway, which openvpc does not analyse yet."
                .to_owned(),
        );
    }
    let Some(state) = fleet.eni_state(&source.id) else {
        return Ok(Outcome::failed(
            crate::trace::TraceError::NotRunning(source.id.clone()).to_string(),
        ));
    };
    let explained = match trace(fleet, ctx.region, &ctx.account.id, &state, dst, probe) {
        Ok(e) => e,
        Err(e) => return Ok(Outcome::failed(e.to_string())),
    };
    let header = AnalysisPacketHeader {
        protocol: path.protocol,
        source_addresses: source_ip.into_iter().collect(),
        destination_addresses: vec![dst],
        destination_port_ranges: vec![AnalysisPortRange {
            from: port,
            to: port,
        }],
    };
    let mut outcome = judge(
        tx,
        path,
        &source,
        dst_eni.as_ref(),
        dst,
        &header,
        &explained,
    )?;
    warnings.append(&mut outcome.warnings);
    outcome.warnings = warnings;
    Ok(outcome)
}

/// The verdict and its components, from the explanation.
fn judge(
    tx: &mut Tx,
    path: &NetworkInsightsPath,
    source: &NetworkInterface,
    dst_eni: Option<&NetworkInterface>,
    dst: Ipv4Addr,
    header: &AnalysisPacketHeader,
    traced: &Traced,
) -> Result<Outcome, ApiError> {
    let explained: &Trace = &traced.explanation;
    let mut components = Vec::new();
    let src_attached = source
        .attachment
        .as_ref()
        .map(|a| component(tx, &a.instance_id));
    if path.source.kind == EndpointKind::Instance
        && let Some(instance) = &src_attached
    {
        components.push(path_component(instance.clone()));
    }
    components.push(PathComponent {
        attached_to: src_attached,
        subnet: Some(component(tx, &source.subnet_id)),
        vpc: Some(component(tx, &source.vpc_id)),
        outbound_header: Some(header.clone()),
        ..path_component(component(tx, &source.id))
    });
    // A private NAT gateway's packet continues at its destination: the
    // gateway's component comes between the source's steps and the
    // destination's, and the destination sees the translated source.
    let mut header_in = header.clone();
    // A load balancer's target likewise: the load balancer's and its
    // target group's components come between the source's steps and the
    // target's, and the target sees the header the node sent it.
    let mut lb_pending: Option<Vec<PathComponent>> = None;
    if let Some(lb) = &traced.lb
        && lb.dropped.is_none()
        && !matches!(explained.fate, Fate::Sent { .. })
    {
        let (parts, to_target) = lb_components(tx, lb, header)?;
        lb_pending = Some(parts);
        header_in = to_target;
    }
    let mut nat_pending: Option<(String, Ipv4Addr)> = None;
    if let Some(NatHop::Translated {
        gateway_id,
        private_source,
        ..
    }) = &traced.nat
        && !matches!(explained.fate, Fate::Sent { .. })
    {
        nat_pending = Some((gateway_id.clone(), *private_source));
        header_in.source_addresses = vec![*private_source];
    }
    for step in &explained.steps {
        if matches!(step.action, StepAction::Deny(_)) {
            break;
        }
        if !(step.eni == source.id && step.way == Way::Egress)
            && let Some((gateway_id, private_source)) = nat_pending.take()
        {
            components.push(nat_component(tx, &gateway_id, private_source, header)?);
        }
        if !(step.eni == source.id && step.way == Way::Egress)
            && let Some(parts) = lb_pending.take()
        {
            components.extend(parts);
        }
        if let Some(c) = step_component(tx, step.way, &step.action, &step.evidence)? {
            components.push(c);
        }
    }
    if let Some((gateway_id, private_source)) = nat_pending.take() {
        components.push(nat_component(tx, &gateway_id, private_source, header)?);
    }
    if let Some(parts) = lb_pending.take() {
        components.extend(parts);
    }
    let mut outcome = Outcome::default();
    // What the nodes report of the target's health, and a fail-open.
    if let Some(lb) = &traced.lb {
        outcome.warnings.extend(lb_warnings(lb));
    }
    match &explained.fate {
        Fate::Delivered { eni } => {
            outcome.found = Some(true);
            // The destination's own interface, when it is the caller's (a
            // peer account's is not shown).
            if let Some(record) = tx.get::<NetworkInterface>(eni)? {
                let attached = record
                    .attachment
                    .as_ref()
                    .map(|a| component(tx, &a.instance_id));
                components.push(PathComponent {
                    attached_to: attached.clone(),
                    subnet: Some(component(tx, &record.subnet_id)),
                    vpc: Some(component(tx, &record.vpc_id)),
                    inbound_header: Some(header_in),
                    ..path_component(component(tx, &record.id))
                });
                let to_instance = path
                    .destination
                    .as_ref()
                    .is_some_and(|d| d.kind == EndpointKind::Instance);
                if to_instance && let Some(instance) = attached {
                    components.push(path_component(instance));
                }
            }
        }
        Fate::Sent { .. } => {
            // The packet left for a node the walk does not enter: a path to
            // an internet gateway ends there when the route names it.
            let gateway = path
                .destination
                .as_ref()
                .filter(|d| d.kind == EndpointKind::InternetGateway);
            let reached = explained.steps.last().and_then(|s| match &s.action {
                StepAction::Forward {
                    target: Some(t), ..
                } => Some(t.clone()),
                _ => None,
            });
            // Through an internet gateway, the edge translates the source
            // to its public address: the gateway's component shows the
            // header as it leaves (spec 5.1).
            let translated = |tx: &mut Tx, id: &str| {
                let mut c = path_component(component(tx, id));
                if let Some(EdgeHop::Translated { public_source, .. }) = &traced.edge {
                    c.outbound_header = Some(AnalysisPacketHeader {
                        source_addresses: vec![*public_source],
                        ..header.clone()
                    });
                }
                c
            };
            if let Some(lb) = &traced.lb {
                return through_lb(tx, lb, components, outcome.warnings);
            }
            if let Some(vpn) = &traced.vpn {
                return through_vgw(tx, vpn, gateway, header, dst, components);
            }
            match &traced.nat {
                Some(NatHop::Dropped {
                    node_id,
                    gateway_id,
                    reason,
                    ..
                }) => {
                    return Ok(Outcome::failed(format!(
                        "Hyperplane node {node_id} of NAT gateway {} drops the packet ({reason}), which no Reachability Analyzer explanation code describes.",
                        gateway_id.as_deref().unwrap_or("?")
                    )));
                }
                Some(NatHop::Translated {
                    gateway_id,
                    private_source,
                    to,
                    ..
                }) => {
                    return through_nat(
                        tx,
                        traced,
                        gateway,
                        header,
                        (gateway_id, *private_source, *to),
                        components,
                    );
                }
                None => {}
            }
            if let Some(EdgeHop::Dropped { edge_id, reason }) = &traced.edge {
                return Ok(Outcome::failed(format!(
                    "Edge node {edge_id} drops the packet ({}), which no Reachability Analyzer explanation code describes.",
                    reason.name()
                )));
            }
            match (gateway, reached) {
                (Some(g), Some(t)) if g.id == t => {
                    outcome.found = Some(true);
                    components.push(translated(tx, &g.id));
                }
                (None, Some(t))
                    if t.starts_with("igw-")
                        && matches!(traced.edge, Some(EdgeHop::Translated { .. })) =>
                {
                    // An address beyond the gateway: the path leaves the
                    // VPC there, which is as far as the analysis sees.
                    outcome.found = Some(true);
                    components.push(translated(tx, &t));
                }
                (_, t) => {
                    return Ok(Outcome::failed(format!(
                        "The packet leaves through {}, which openvpc's analysis does not follow yet.",
                        t.unwrap_or_else(|| "another node".to_owned())
                    )));
                }
            }
        }
        Fate::Dropped(reason) => {
            outcome.found = Some(false);
            let denied = explained
                .steps
                .iter()
                .rev()
                .find(|s| matches!(s.action, StepAction::Deny(_)));
            match explain_drop(tx, path, *reason, denied, dst, dst_eni)? {
                Some((mut explanation, mut warning)) => {
                    if let Some(lb) = &traced.lb {
                        lb_explained(tx, lb, &mut explanation)?;
                    }
                    if let Some(g) = &traced.vgw {
                        vgw_explained(tx, g, &mut explanation, &mut warning);
                    }
                    outcome.explanations.push(explanation);
                    outcome.warnings.extend(warning);
                }
                None => {
                    return Ok(Outcome::failed(format!(
                        "The dataplane drops the probe ({reason}: {}), which no Reachability Analyzer explanation code describes.",
                        reason.describe()
                    )));
                }
            }
        }
        Fate::Unresolved => {
            return Ok(Outcome::failed(format!(
                "Where {dst} is in the VPC is not known yet: analyse again in a moment."
            )));
        }
    }
    for (n, c) in components.iter_mut().enumerate() {
        c.sequence_number = u32::try_from(n + 1).unwrap_or(u32::MAX);
    }
    outcome.components = components;
    Ok(outcome)
}

fn direction(way: Way) -> Direction {
    match way {
        Way::Egress => Direction::Egress,
        Way::Ingress => Direction::Ingress,
    }
}

/// The path component of a step that let the packet through, if AWS shows
/// one for it (the source/destination check and switching inside a subnet
/// are not components).
fn step_component(
    tx: &mut Tx,
    way: Way,
    action: &StepAction,
    evidence: &Evidence,
) -> Result<Option<PathComponent>, ApiError> {
    Ok(match evidence {
        Evidence::SecurityGroupRule { group_id, rule_id } => Some(PathComponent {
            security_group_rule: Some(sg_rule(tx, way, group_id, rule_id.as_deref())?),
            ..path_component(component(tx, group_id))
        }),
        Evidence::AclEntry {
            acl_id,
            rule_number,
            ..
        } => Some(PathComponent {
            acl_rule: acl_rule(tx, way, acl_id, u32::from(*rule_number))?,
            ..path_component(component(tx, acl_id))
        }),
        // A load balancer's front: the hosts' internal /32 to its nodes is
        // in no route table; the table shows the VPC's local route, the one
        // AWS shows for an address inside the VPC.
        Evidence::Route {
            route_table_id,
            target,
            ..
        } if matches!(action, StepAction::Forward { .. }) && target.starts_with("elb-") => {
            let local = tx.get::<RouteTable>(route_table_id)?.and_then(|t| {
                t.routes
                    .iter()
                    .find(|r| {
                        r.target == Target::local() && matches!(r.destination, Destination::Ipv4(_))
                    })
                    .cloned()
            });
            local.map(|r| PathComponent {
                route_table_route: Some(AnalysisRouteTableRoute {
                    destination_cidr: Some(r.destination.to_string()),
                    destination_prefix_list_id: None,
                    target: Some(r.target.clone()),
                    origin: Some(r.origin.clone()),
                    state: RouteState::Active,
                }),
                ..path_component(component(tx, route_table_id))
            })
        }
        Evidence::Route {
            route_table_id,
            destination,
            target,
        } if matches!(action, StepAction::Forward { .. }) => Some(PathComponent {
            route_table_route: Some(route(
                tx,
                route_table_id,
                &destination.to_string(),
                target,
                RouteState::Active,
            )?),
            ..path_component(component(tx, route_table_id))
        }),
        _ => None,
    })
}

/// The explanation of a drop, and a warning to add; `None` for a reason no
/// explanation code describes.
fn explain_drop(
    tx: &mut Tx,
    path: &NetworkInsightsPath,
    reason: DropReason,
    denied: Option<&openvpc_dataplane::explain::Step>,
    dst: Ipv4Addr,
    dst_eni: Option<&NetworkInterface>,
) -> Result<Option<(Explanation, Option<String>)>, ApiError> {
    let at = match denied {
        Some(step) => tx.get::<NetworkInterface>(&step.eni)?,
        None => None,
    };
    let subnet = at.as_ref().map(|e| component(tx, &e.subnet_id));
    let vpc = at.as_ref().map(|e| component(tx, &e.vpc_id));
    let destination = path.destination.as_ref().map(|d| component(tx, &d.id));
    let evidence = denied.map(|s| &s.evidence);
    let way = denied.map(|s| s.way);
    let mut warning = None;
    let explanation = match (reason, evidence) {
        (DropReason::SgDeny, Some(Evidence::NoSecurityGroupRule { group_ids })) => {
            let eni = at.as_ref().map(|e| component(tx, &e.id));
            Explanation {
                direction: way.map(direction),
                component: eni.clone(),
                network_interface: eni,
                security_groups: group_ids.iter().map(|g| component(tx, g)).collect(),
                subnet,
                vpc,
                ..Explanation::new(ExplanationCode::EniSgRulesMismatch)
            }
        }
        (
            DropReason::NaclDeny,
            Some(e @ (Evidence::AclEntry { .. } | Evidence::AclDefault { .. })),
        ) => {
            let (acl_id, rule_number) = match e {
                Evidence::AclEntry {
                    acl_id,
                    rule_number,
                    ..
                } => (acl_id, u32::from(*rule_number)),
                Evidence::AclDefault { acl_id } => (acl_id, IPV4_STAR_RULE),
                _ => return Ok(None),
            };
            let acl = component(tx, acl_id);
            let way = way.unwrap_or(Way::Egress);
            Explanation {
                direction: Some(direction(way)),
                component: Some(acl.clone()),
                acl: Some(acl),
                acl_rule: acl_rule(tx, way, acl_id, rule_number)?,
                subnet,
                vpc,
                ..Explanation::new(ExplanationCode::SubnetAclRestriction)
            }
        }
        (DropReason::NoRoute, Some(Evidence::NoRoute { route_table_id })) => {
            let table = component(tx, route_table_id);
            Explanation {
                component: Some(table.clone()),
                route_table: Some(table),
                destination,
                address: Some(dst),
                vpc,
                ..Explanation::new(ExplanationCode::NoRouteToDestination)
            }
        }
        (
            DropReason::Blackhole,
            Some(Evidence::Route {
                route_table_id,
                destination: cidr,
                target,
            }),
        ) => {
            let table = component(tx, route_table_id);
            Explanation {
                component: Some(table.clone()),
                route_table: Some(table),
                route_table_route: Some(route(
                    tx,
                    route_table_id,
                    &cidr.to_string(),
                    target,
                    RouteState::Blackhole,
                )?),
                destination,
                address: Some(dst),
                vpc,
                ..Explanation::new(ExplanationCode::BadStateRoute)
            }
        }
        // [U] AWS has no code for a target its network always serves: the
        // closest documented one is BAD_STATE ("This component is not in a
        // functional state"), which is what it is in openvpc today; the
        // warning says why.
        (
            DropReason::TargetUnserved,
            Some(Evidence::Route {
                route_table_id,
                destination: cidr,
                target,
            }),
        ) => {
            let gateway = component(tx, target);
            warning = Some(if target.starts_with("nat-") {
                format!(
                    "No live hyperplane node of NAT gateway {target}'s shard serves it now, so the hosts drop what the route sends there."
                )
            } else if target.starts_with("vgw-") {
                format!(
                    "No tunnel of VPN gateway {target} is up, so no edge node carries what the route sends there."
                )
            } else {
                format!(
                    "No openvpc node serves {target} yet (internet, NAT and VPN gateways need the edge, issue 15), so the hosts drop what the route sends there."
                )
            });
            Explanation {
                component: Some(gateway.clone()),
                internet_gateway: target.starts_with("igw-").then(|| gateway.clone()),
                nat_gateway: target.starts_with("nat-").then_some(gateway),
                route_table: Some(component(tx, route_table_id)),
                route_table_route: Some(route(
                    tx,
                    route_table_id,
                    &cidr.to_string(),
                    target,
                    RouteState::Active,
                )?),
                destination,
                address: Some(dst),
                vpc,
                ..Explanation::new(ExplanationCode::BadState)
            }
        }
        // [U] the code's spelling is seen in AWS's answers (users' notes),
        // not on the explanation-codes page this was checked against.
        (DropReason::SourceDestCheck, _) => {
            let eni = at.as_ref().map(|e| component(tx, &e.id));
            Explanation {
                direction: way.map(direction),
                component: eni.clone(),
                network_interface: eni,
                address: Some(dst),
                subnet,
                vpc,
                ..Explanation::new(ExplanationCode::EniSourceDestCheckRestriction)
            }
        }
        // The path's destination interface runs on no host (its instance
        // is not placed, or it is detached): nothing receives for it.
        (DropReason::NoMapping, _) if dst_eni.is_some() => {
            let eni = dst_eni.map(|e| component(tx, &e.id));
            let vpc = dst_eni.map(|e| component(tx, &e.vpc_id));
            warning = Some(format!(
                "The destination interface {} runs on no host, so nothing receives what is sent to {dst}.",
                dst_eni.map(|e| e.id.as_str()).unwrap_or_default()
            ));
            Explanation {
                component: eni.clone(),
                network_interface: eni,
                destination,
                address: Some(dst),
                vpc,
                ..Explanation::new(ExplanationCode::BadState)
            }
        }
        // [U] no interface holds the address in the VPC the route led to:
        // AWS documents no code for an address nothing holds; the closest
        // is that nothing leads there.
        (DropReason::NoMapping, _) => {
            let vpc_id = path_vpc(tx, path)?;
            warning = Some(format!(
                "No network interface holds {dst} in the VPC the packet was routed to."
            ));
            Explanation {
                destination,
                address: Some(dst),
                vpc: (!vpc_id.is_empty()).then(|| component(tx, &vpc_id)),
                ..Explanation::new(ExplanationCode::NoRouteToDestination)
            }
        }
        _ => return Ok(None),
    };
    Ok(Some((explanation, warning)))
}

/// A path the hosts send to a NAT gateway (spec 6), which translated it
/// to its private address `private_source` and sent it to `to`: the
/// gateway's component shows the header as it comes in and as it leaves;
/// then, out to the internet, the edge maps that address to the gateway's
/// Elastic IP, and the internet gateway of the gateway's VPC shows it
/// leaving (spec 5.1). The path is found when it leaves, to the path's
/// internet gateway or to an address beyond.
fn through_nat(
    tx: &mut Tx,
    traced: &Traced,
    to_gateway: Option<&PathEndpoint>,
    header: &AnalysisPacketHeader,
    (gateway_id, private_source, to): (&str, Ipv4Addr, std::net::IpAddr),
    mut components: Vec<PathComponent>,
) -> Result<Outcome, ApiError> {
    let nat_vpc = tx.get::<NatGateway>(gateway_id)?.map(|n| n.vpc_id);
    components.push(nat_component(tx, gateway_id, private_source, header)?);
    let public_source = match &traced.edge {
        Some(EdgeHop::Translated { public_source, .. }) => *public_source,
        Some(EdgeHop::Dropped { edge_id, reason }) => {
            return Ok(Outcome::failed(format!(
                "Edge node {edge_id} drops what NAT gateway {gateway_id} sends it ({}), which no Reachability Analyzer explanation code describes.",
                reason.name()
            )));
        }
        None => {
            return Ok(Outcome::failed(format!(
                "NAT gateway {gateway_id} sends the packet to {to}, which openvpc's analysis does not follow yet."
            )));
        }
    };
    // The edge translated it: the gateway's VPC has an internet gateway.
    let igw = tx
        .list::<InternetGateway>()?
        .into_iter()
        .find(|g| g.vpc_id.is_some() && g.vpc_id == nat_vpc)
        .map(|g| g.id);
    if let Some(wanted) = to_gateway
        && igw.as_deref() != Some(wanted.id.as_str())
    {
        return Ok(Outcome::failed(format!(
            "The packet leaves through NAT gateway {gateway_id} and the internet gateway of its VPC, not through {}.",
            wanted.id
        )));
    }
    if let Some(igw) = igw {
        components.push(PathComponent {
            outbound_header: Some(AnalysisPacketHeader {
                source_addresses: vec![public_source],
                ..header.clone()
            }),
            ..path_component(component(tx, &igw))
        });
    }
    for (i, c) in components.iter_mut().enumerate() {
        c.sequence_number = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    Ok(Outcome {
        found: Some(true),
        components,
        ..Outcome::default()
    })
}

/// The first connection of a gateway with a tunnel down, else its first.
fn down_connection(g: &VgwStatus) -> Option<&str> {
    g.tunnels
        .iter()
        .find(|t| !t.up)
        .or(g.tunnels.first())
        .map(|t| t.vpn_connection_id.as_str())
}

/// A drop for want of a VPN gateway's tunnel (the hosts' route to it is
/// unserved): `BAD_STATE_VPN` on the gateway's connection, the gateway
/// named; for a drop with no route at all, the gateway's tunnels say why
/// none was propagated. Either way the warning gives each tunnel's state.
fn vgw_explained(
    tx: &Tx,
    g: &VgwStatus,
    explanation: &mut Explanation,
    warning: &mut Option<String>,
) {
    explanation.vpn_gateway = Some(component(tx, &g.vpn_gateway_id));
    if explanation.code == ExplanationCode::BadState {
        explanation.code = ExplanationCode::BadStateVpn;
        explanation.vpn_connection = down_connection(g).map(|c| component(tx, c));
        if let Some(c) = &explanation.vpn_connection {
            explanation.component = Some(c.clone());
        }
    }
    let states = format!("The VPN gateway's tunnels: {g}.");
    *warning = Some(match warning.take() {
        Some(w) => format!("{w} {states}"),
        None => states,
    });
}

/// A path the hosts send to a VPN gateway's edge (issue 19): sealed into
/// a tunnel that is up, the path is found and ends at the gateway (AWS's
/// analysis ends a path at a VPN gateway too), with a warning naming the
/// tunnel and its edge; dropped there, the gateway's reason.
fn through_vgw(
    tx: &mut Tx,
    vpn: &VpnHop,
    to_gateway: Option<&PathEndpoint>,
    header: &AnalysisPacketHeader,
    dst: Ipv4Addr,
    mut components: Vec<PathComponent>,
) -> Result<Outcome, ApiError> {
    let numbered = |mut components: Vec<PathComponent>| {
        for (i, c) in components.iter_mut().enumerate() {
            c.sequence_number = u32::try_from(i + 1).unwrap_or(u32::MAX);
        }
        components
    };
    match vpn {
        VpnHop::Tunnel {
            edge_id,
            vpn_gateway_id,
            vpn_connection_id,
            outside_ip,
            prefix,
            ..
        } => {
            if let Some(wanted) = to_gateway {
                return Ok(Outcome::failed(format!(
                    "The packet leaves through VPN gateway {vpn_gateway_id}, not through {}.",
                    wanted.id
                )));
            }
            components.push(PathComponent {
                outbound_header: Some(header.clone()),
                ..path_component(component(tx, vpn_gateway_id))
            });
            Ok(Outcome {
                found: Some(true),
                components: numbered(components),
                warnings: vec![format!(
                    "VPN gateway {vpn_gateway_id} routes {dst} by {prefix} into VPN connection {vpn_connection_id}'s tunnel {outside_ip}, served by edge node {edge_id}."
                )],
                ..Outcome::default()
            })
        }
        VpnHop::Dropped {
            edge_id,
            vpn_gateway_id,
            reason,
            gateway,
        } => {
            let vgw = component(tx, vpn_gateway_id);
            let explanation = match reason {
                VgwDrop::Tunnel => Explanation {
                    vpn_connection: gateway
                        .as_ref()
                        .and_then(down_connection)
                        .map(|c| component(tx, c)),
                    component: Some(vgw.clone()),
                    vpn_gateway: Some(vgw),
                    address: Some(dst),
                    ..Explanation::new(ExplanationCode::BadStateVpn)
                },
                // [U] the gateway knows no prefix for the address (spec
                // 10.3): the closest documented code.
                VgwDrop::NoRoute => Explanation {
                    component: Some(vgw.clone()),
                    vpn_gateway: Some(vgw),
                    address: Some(dst),
                    ..Explanation::new(ExplanationCode::NoRouteToDestination)
                },
                other => {
                    return Ok(Outcome::failed(format!(
                        "Edge node {edge_id} of VPN gateway {vpn_gateway_id} drops the packet ({}), which no Reachability Analyzer explanation code describes.",
                        other.name()
                    )));
                }
            };
            let mut warnings = vec![format!(
                "Edge node {edge_id} of VPN gateway {vpn_gateway_id} drops the packet ({}).",
                reason.name()
            )];
            if let Some(g) = gateway {
                warnings.push(format!("The VPN gateway's tunnels: {g}."));
            }
            Ok(Outcome {
                found: Some(false),
                components: numbered(components),
                explanations: vec![explanation],
                warnings,
                ..Outcome::default()
            })
        }
    }
}

/// The caller's load balancer, listener and target group a hop names.
type LbRecords = (
    Option<LoadBalancer>,
    Option<ElbListener>,
    Option<TargetGroup>,
);

/// The caller's load balancer, listener and target group records the hop
/// names (by ARN; the listener by its load balancer and port).
fn lb_records(tx: &mut Tx, lb: &LbHop) -> Result<LbRecords, ApiError> {
    let Some(l) = &lb.load_balancer else {
        return Ok((None, None, None));
    };
    let record = tx
        .list::<LoadBalancer>()?
        .into_iter()
        .find(|r| r.arn == l.arn);
    let listener = match &lb.listener {
        Some(at) => tx
            .list::<ElbListener>()?
            .into_iter()
            .find(|r| r.load_balancer_arn == l.arn && r.port == at.port),
        None => None,
    };
    let group = match &lb.listener {
        Some(at) => tx
            .list::<TargetGroup>()?
            .into_iter()
            .find(|g| g.arn == at.target_group_arn),
        None => None,
    };
    Ok((record, listener, group))
}

/// An ELBv2 resource as a component: its ARN is its ID (it has no other).
fn arn_component(arn: &str, name: Option<&str>) -> AnalysisComponent {
    AnalysisComponent {
        id: arn.to_owned(),
        arn: Some(arn.to_owned()),
        name: name.map(str::to_owned),
    }
}

/// A network load balancer's path components (issue 17): the load
/// balancer with the listener the packet matched, in the subnet of the
/// front address it was sent to, the header as it comes in and as the node
/// sends it on (to the target's address and port, from the source the
/// target sees); then its target group. With them, that header: the one
/// the target's interface receives.
fn lb_components(
    tx: &mut Tx,
    lb: &LbHop,
    header: &AnalysisPacketHeader,
) -> Result<(Vec<PathComponent>, AnalysisPacketHeader), ApiError> {
    let (record, listener, group) = lb_records(tx, lb)?;
    let mut to_target = header.clone();
    if let Some(t) = &lb.target {
        to_target.destination_addresses = vec![t.ip];
        to_target.destination_port_ranges = vec![AnalysisPortRange {
            from: t.port,
            to: t.port,
        }];
    }
    if let Some((ip, _)) = lb.source {
        to_target.source_addresses = vec![ip];
    }
    let Some(l) = &lb.load_balancer else {
        return Ok((Vec::new(), to_target));
    };
    let subnet = record
        .as_ref()
        .and_then(|r| r.zones.iter().find(|z| z.private_ip == Some(lb.front)))
        .map(|z| component(tx, &z.subnet_id));
    let vpc = record.as_ref().map(|r| component(tx, &r.vpc_id));
    let mut parts = vec![PathComponent {
        elastic_load_balancer_listener: listener.as_ref().map(|r| arn_component(&r.arn, None)),
        subnet,
        vpc: vpc.clone(),
        inbound_header: Some(header.clone()),
        outbound_header: Some(to_target.clone()),
        ..path_component(arn_component(&l.arn, Some(&l.name)))
    }];
    if let Some(at) = &lb.listener {
        parts.push(PathComponent {
            vpc,
            outbound_header: Some(to_target.clone()),
            ..path_component(arn_component(
                &at.target_group_arn,
                group.as_ref().map(|g| g.name.as_str()),
            ))
        });
    }
    Ok((parts, to_target))
}

/// What the analysis says of the target's health: its state as the load
/// balancer's nodes report it when not healthy, and that the load balancer
/// fails open when no target is healthy (spec 9.4).
fn lb_warnings(lb: &LbHop) -> Vec<String> {
    let mut warnings = Vec::new();
    let Some(t) = &lb.target else {
        return warnings;
    };
    if t.health != openvpc_model::lifecycle::TargetHealthState::Healthy {
        let reason = t
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        warnings.push(format!(
            "Target {} ({}:{}) is {}{reason} as the load balancer's nodes report it.",
            t.id, t.ip, t.port, t.health
        ));
    }
    if lb.fail_open {
        let group = lb
            .listener
            .as_ref()
            .map_or("", |l| l.target_group_arn.as_str());
        warnings.push(format!(
            "No target of target group {group} that this address sends to is healthy: the load balancer fails open and sends new flows to all of them."
        ));
    }
    warnings
}

/// The load balancer's members of an explanation of a drop at its target
/// (its security groups or ACL): the load balancer, listener, target group
/// and the target the flow went to.
fn lb_explained(tx: &mut Tx, lb: &LbHop, e: &mut Explanation) -> Result<(), ApiError> {
    let (_, listener, group) = lb_records(tx, lb)?;
    e.load_balancer_arn = lb.load_balancer.as_ref().map(|l| l.arn.clone());
    e.elastic_load_balancer_listener = listener.as_ref().map(|r| arn_component(&r.arn, None));
    e.load_balancer_listener_port = lb.listener.as_ref().map(|l| l.port);
    e.load_balancer_target_group = lb
        .listener
        .as_ref()
        .map(|l| arn_component(&l.target_group_arn, group.as_ref().map(|g| g.name.as_str())));
    if let Some(t) = &lb.target {
        e.load_balancer_target = Some(AnalysisLoadBalancerTarget {
            address: t.ip,
            availability_zone: t.availability_zone.clone(),
            instance: t.id.starts_with("i-").then(|| component(tx, &t.id)),
            port: t.port,
        });
        e.load_balancer_target_port = Some(t.port);
    }
    Ok(())
}

/// A path the hosts send to a network load balancer's node that goes no
/// further: dropped by the node (no listener on the port: the explanation
/// says so; anything else fails the analysis with the counter's name), or
/// sent to a target whose host the walk does not find.
fn through_lb(
    tx: &mut Tx,
    lb: &LbHop,
    mut components: Vec<PathComponent>,
    warnings: Vec<String>,
) -> Result<Outcome, ApiError> {
    for (i, c) in components.iter_mut().enumerate() {
        c.sequence_number = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    let name = lb
        .load_balancer
        .as_ref()
        .map_or_else(|| "?".to_owned(), |l| l.name.clone());
    match lb.dropped.as_deref() {
        Some("no_listener") => {
            let (record, _, _) = lb_records(tx, lb)?;
            let arn = lb.load_balancer.as_ref().map(|l| l.arn.clone());
            // [U] AWS documents ELB_LISTENERS_MISMATCH ("does not have a
            // listener that accepts the traffic") for Classic Load
            // Balancers; no code of its page is specific to ELBv2's.
            let explanation = Explanation {
                component: lb
                    .load_balancer
                    .as_ref()
                    .map(|l| arn_component(&l.arn, Some(&l.name))),
                load_balancer_arn: arn,
                load_balancer_listener_port: Some(lb.port),
                address: Some(lb.front),
                vpc: record.as_ref().map(|r| component(tx, &r.vpc_id)),
                ..Explanation::new(ExplanationCode::ElbListenersMismatch)
            };
            let mut warnings = warnings;
            warnings.push(format!(
                "Load balancer {name} has no listener on port {}.",
                lb.port
            ));
            Ok(Outcome {
                found: Some(false),
                explanations: vec![explanation],
                components,
                warnings,
                ..Outcome::default()
            })
        }
        Some(reason) => Ok(Outcome::failed(format!(
            "Hyperplane node {} of load balancer {name} drops the packet ({reason}), which no Reachability Analyzer explanation code describes.",
            lb.node_id
        ))),
        None => Ok(Outcome::failed(format!(
            "Load balancer {name} sends the packet to {}, whose host openvpc's analysis does not find.",
            lb.target
                .as_ref()
                .map_or_else(|| "its target".to_owned(), |t| t.ip.to_string())
        ))),
    }
}

/// NAT gateway `gateway_id`'s path component: in its subnet and VPC, the
/// header as it comes in and as it leaves, from `private_source` (spec 6:
/// source NAT to the gateway's private address).
fn nat_component(
    tx: &mut Tx,
    gateway_id: &str,
    private_source: Ipv4Addr,
    header: &AnalysisPacketHeader,
) -> Result<PathComponent, ApiError> {
    let nat = tx.get::<NatGateway>(gateway_id)?;
    Ok(PathComponent {
        subnet: nat.as_ref().map(|n| component(tx, &n.subnet_id)),
        vpc: nat.as_ref().map(|n| component(tx, &n.vpc_id)),
        inbound_header: Some(header.clone()),
        outbound_header: Some(AnalysisPacketHeader {
            source_addresses: vec![private_source],
            ..header.clone()
        }),
        ..path_component(component(tx, gateway_id))
    })
}

/// The VPC of the path's source interface.
fn path_vpc(tx: &mut Tx, path: &NetworkInsightsPath) -> Result<String, ApiError> {
    Ok(match interface_of(tx, "Source", &path.source.id) {
        Ok(eni) => eni.vpc_id,
        Err(_) => String::new(),
    })
}

// --- Components from the caller's records -----------------------------------

fn path_component(component: AnalysisComponent) -> PathComponent {
    PathComponent {
        sequence_number: 0,
        component,
        acl_rule: None,
        security_group_rule: None,
        route_table_route: None,
        attached_to: None,
        subnet: None,
        vpc: None,
        outbound_header: None,
        inbound_header: None,
        elastic_load_balancer_listener: None,
    }
}

/// A resource of the caller by ID, with its ARN where the kind has one.
fn component(tx: &Tx, id: &str) -> AnalysisComponent {
    let ctx = tx.ctx();
    // `vpce-` before `vpc-`: the longer prefix first.
    const TYPES: &[(&str, &str)] = &[
        ("i-", "instance"),
        ("eni-", "network-interface"),
        ("sg-", "security-group"),
        ("acl-", "network-acl"),
        ("rtb-", "route-table"),
        ("subnet-", "subnet"),
        ("vpce-", "vpc-endpoint"),
        ("vpc-", "vpc"),
        ("igw-", "internet-gateway"),
        ("eigw-", "egress-only-internet-gateway"),
        ("nat-", "natgateway"),
        ("pcx-", "vpc-peering-connection"),
        ("vgw-", "vpn-gateway"),
        ("vpn-", "vpn-connection"),
        ("tgw-", "transit-gateway"),
    ];
    let arn = TYPES
        .iter()
        .find(|(prefix, _)| id.starts_with(prefix))
        .map(|(_, kind)| format!("arn:aws:ec2:{}:{}:{kind}/{id}", ctx.region, ctx.account.id));
    AnalysisComponent {
        id: id.to_owned(),
        arn,
        name: None,
    }
}

/// A rule's protocol as the analysis shows it: `all` for `-1` [U: the
/// spelling AWS's analyses use for "all" is not documented].
fn protocol_text(p: IpProtocol) -> String {
    match p {
        IpProtocol::All => "all".to_owned(),
        other => other.to_string(),
    }
}

fn port_range_of(t: &TrafficMatch) -> Option<AnalysisPortRange> {
    match t.l4 {
        L4Match::Ports { from, to } => Some(AnalysisPortRange { from, to }),
        _ => None,
    }
}

/// The security-group rule the evidence names, from the caller's group.
fn sg_rule(
    tx: &mut Tx,
    way: Way,
    group_id: &str,
    rule_id: Option<&str>,
) -> Result<AnalysisSecurityGroupRule, ApiError> {
    let mut shown = AnalysisSecurityGroupRule {
        direction: direction(way),
        cidr: None,
        security_group_id: None,
        prefix_list_id: None,
        protocol: String::new(),
        port_range: None,
    };
    let group = tx.get::<SecurityGroup>(group_id)?;
    let rule = group.as_ref().and_then(|g| {
        g.rules(way == Way::Egress)
            .iter()
            .find(|r| Some(r.id.as_str()) == rule_id)
    });
    if let Some(rule) = rule {
        shown.protocol = protocol_text(rule.traffic.protocol);
        shown.port_range = port_range_of(&rule.traffic);
        match &rule.target {
            SgTarget::Ipv4(c) | SgTarget::Ipv6(c) => shown.cidr = Some(c.clone()),
            // [U] botocore documents securityGroupId only as "the security
            // group ID"; the group is the component, so the member names
            // the group the rule refers to, as prefixListId does.
            SgTarget::Group { group_id, .. } => shown.security_group_id = Some(group_id.clone()),
            SgTarget::PrefixList(p) => shown.prefix_list_id = Some(p.clone()),
        }
    }
    Ok(shown)
}

/// The network-ACL rule `rule_number` of `way`, from the caller's ACL.
fn acl_rule(
    tx: &mut Tx,
    way: Way,
    acl_id: &str,
    rule_number: u32,
) -> Result<Option<AnalysisAclRule>, ApiError> {
    let egress = way == Way::Egress;
    let Some(acl) = tx.get::<NetworkAcl>(acl_id)? else {
        return Ok(None);
    };
    Ok(acl
        .rules(egress)
        .into_iter()
        .find(|r| r.rule_number == rule_number)
        .map(|r| AnalysisAclRule {
            rule_number: r.rule_number,
            rule_action: r.action,
            egress,
            cidr: Some(match &r.cidr {
                EntryCidr::Ipv4(c) => c.to_string(),
                EntryCidr::Ipv6(c) => c.clone(),
            }),
            protocol: protocol_text(r.traffic.protocol),
            port_range: port_range_of(&r.traffic),
        }))
}

/// The route of table `table_id` to `cidr`, from the caller's table: its
/// target's kind and origin; the evidence's target where the table does
/// not have it (a prefix-list route, expanded by the compiler).
fn route(
    tx: &mut Tx,
    table_id: &str,
    cidr: &str,
    target: &str,
    state: RouteState,
) -> Result<AnalysisRouteTableRoute, ApiError> {
    let table = tx.get::<RouteTable>(table_id)?;
    let stored = table.as_ref().and_then(|t| {
        t.routes
            .iter()
            .find(|r| matches!(&r.destination, Destination::Ipv4(c) if c.to_string() == cidr))
    });
    Ok(match stored {
        Some(r) => AnalysisRouteTableRoute {
            destination_cidr: Some(cidr.to_owned()),
            destination_prefix_list_id: None,
            target: Some(r.target.clone()),
            origin: Some(r.origin.clone()),
            state,
        },
        // Not in the table's own routes: a VPN gateway's is propagated
        // (spec 2.7).
        None => AnalysisRouteTableRoute {
            destination_cidr: Some(cidr.to_owned()),
            destination_prefix_list_id: None,
            target: target_of(target),
            origin: target
                .starts_with("vgw-")
                .then(|| "EnableVgwRoutePropagation".to_owned()),
            state,
        },
    })
}

/// A route target the explanation names, by its ID's prefix.
fn target_of(id: &str) -> Option<Target> {
    let kind = if id == "local" || ["igw-", "vgw-", "vpce-"].iter().any(|p| id.starts_with(p)) {
        TargetKind::Gateway
    } else if id.starts_with("nat-") {
        TargetKind::NatGateway
    } else if id.starts_with("eni-") {
        TargetKind::NetworkInterface
    } else if id.starts_with("i-") {
        TargetKind::Instance
    } else if id.starts_with("pcx-") {
        TargetKind::VpcPeeringConnection
    } else if id.starts_with("eigw-") {
        TargetKind::EgressOnlyInternetGateway
    } else if id.starts_with("tgw-") {
        TargetKind::TransitGateway
    } else {
        return None;
    };
    Some(Target {
        kind,
        id: id.to_owned(),
    })
}

// --- Describe and Delete ----------------------------------------------------

/// A `MillisecondDateTime` parameter: ISO 8601 in UTC as botocore writes it
/// (`2024-05-01T12:00:00Z`, fractions allowed), or Unix seconds.
fn time_param(params: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(text) = params.get(name) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::invalid_value(
            name,
            text,
            "Give a time in ISO 8601 (2024-05-01T12:00:00Z) or Unix seconds.",
        )
    };
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Some(secs));
    }
    let t = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .unwrap_or(text);
    let (date, clock) = t.split_once('T').ok_or_else(bad)?;
    let clock = clock.split('.').next().unwrap_or(clock);
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad);
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let mut c = clock.split(':');
    let (h, mi, s) = (num(c.next())?, num(c.next())?, num(c.next())?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + s;
    u64::try_from(secs).map(Some).map_err(|_| bad())
}

pub fn describe_analyses(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let path = params.get("NetworkInsightsPathId");
    if let Some(p) = path {
        check_id(ResourceKind::NetworkInsightsPath, p)?;
    }
    let from = time_param(params, "AnalysisStartTime")?;
    let until = time_param(params, "AnalysisEndTime")?;
    describe_where::<NetworkInsightsAnalysis>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeNetworkInsightsAnalyses",
            ids: "NetworkInsightsAnalysisId",
            set: "networkInsightsAnalysisSet",
        },
        |a| {
            path.is_none_or(|p| a.network_insights_path_id == p)
                && from.is_none_or(|t| a.start_secs >= t)
                && until.is_none_or(|t| a.start_secs <= t)
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInsightsAnalysisId")?;
    check_id(ResourceKind::NetworkInsightsAnalysis, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        tx.load::<NetworkInsightsAnalysis>(id)?;
        tx.delete::<NetworkInsightsAnalysis>(id);
        Ok(())
    })?;
    Ok(Xml::response(
        "DeleteNetworkInsightsAnalysis",
        ctx.request_id,
        |x| {
            x.elem("networkInsightsAnalysisId", id);
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_botocore_sends_them() {
        let p = |q: &str| Params::parse(q.as_bytes(), "");
        let t = |q: &str| time_param(&p(q), "T");
        assert_eq!(t("T=1970-01-02T00:00:00Z").unwrap(), Some(86_400));
        assert_eq!(t("T=1970-01-01T00:01:00.250Z").unwrap(), Some(60));
        assert_eq!(t("T=120").unwrap(), Some(120));
        assert_eq!(t("").unwrap(), None);
        assert_eq!(t("T=yesterday").unwrap_err().code, "InvalidParameterValue");
    }

    #[test]
    fn targets_by_prefix() {
        assert_eq!(
            target_of("local").map(|t| t.kind),
            Some(TargetKind::Gateway)
        );
        assert_eq!(
            target_of("pcx-12345678").map(|t| t.kind),
            Some(TargetKind::VpcPeeringConnection)
        );
        assert_eq!(target_of("blackhole"), None);
        assert_eq!(TargetKind::NatGateway.element(), "natGatewayId");
    }

    // DeleteNetworkInsightsPath finds analyses by this field's stored name.
    #[test]
    fn the_record_names_its_path_where_delete_path_looks() {
        assert_eq!(
            super::super::network_insights::ANALYSIS_PATH_FIELD,
            "network_insights_path_id"
        );
    }
}
