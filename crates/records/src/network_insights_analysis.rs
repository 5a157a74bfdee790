//! A Reachability Analyzer analysis as stored: the record under `nia/{id}`,
//! a snapshot of what the dataplane's explain mode found for one path when
//! the analysis ran (the components that let the probe through, or the
//! explanations of why it was stopped), in the shape the API shows it.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in
//! `openvpc_control::api::actions::network_insights_analysis`.
//!
//! An analysis is never recomputed: Describe shows what was stored, as AWS
//! shows the network as it was when the analysis ran.

use std::net::Ipv4Addr;

use openvpc_model::lifecycle::AnalysisStatus;
use openvpc_model::rule::RuleAction;
use serde::{Deserialize, Serialize};

use super::Tags;
use super::network_insights::PathProtocol;
use super::route_table::Target;

/// botocore's `AnalysisComponent`: a resource on the path, by ID and ARN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisComponent {
    pub id: String,
    pub arn: Option<String>,
    /// botocore's `Name` (a load balancer's, a target group's); absent in
    /// analyses stored before it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// botocore's `AnalysisLoadBalancerTarget`: the target a load balancer
/// sends the path to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisLoadBalancerTarget {
    pub address: Ipv4Addr,
    pub availability_zone: String,
    /// An instance target's instance.
    pub instance: Option<AnalysisComponent>,
    pub port: u16,
}

/// botocore's `PortRange` (`from`, `to`), inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisPortRange {
    pub from: u16,
    pub to: u16,
}

/// Which way a rule or a check applied (AWS's `ingress` and `egress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    /// AWS's spelling, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// botocore's `AnalysisAclRule`: the network ACL rule that decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisAclRule {
    /// 1 to 32766, or 32767 for the `*` rule.
    pub rule_number: u32,
    pub rule_action: RuleAction,
    pub egress: bool,
    pub cidr: Option<String>,
    /// `all`, `tcp`, `udp`, `icmp` or a protocol number.
    pub protocol: String,
    pub port_range: Option<AnalysisPortRange>,
}

/// botocore's `AnalysisSecurityGroupRule`: the rule that admitted the packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisSecurityGroupRule {
    pub direction: Direction,
    pub cidr: Option<String>,
    /// The group the rule names as its peer, for a group-reference rule.
    pub security_group_id: Option<String>,
    pub prefix_list_id: Option<String>,
    pub protocol: String,
    pub port_range: Option<AnalysisPortRange>,
}

/// A route's state as AWS shows it (`active` or `blackhole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteState {
    Active,
    Blackhole,
}

impl RouteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Active => "active",
            RouteState::Blackhole => "blackhole",
        }
    }
}

/// botocore's `AnalysisRouteTableRoute`: the route that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisRouteTableRoute {
    pub destination_cidr: Option<String>,
    pub destination_prefix_list_id: Option<String>,
    /// The target as the route table names it; the API shows it in the
    /// member of its kind (`gatewayId`, `natGatewayId`, …).
    pub target: Option<Target>,
    /// `CreateRouteTable`, `CreateRoute` or `EnableVgwRoutePropagation`.
    pub origin: Option<String>,
    pub state: RouteState,
}

/// botocore's `AnalysisPacketHeader`: the packet as it leaves or arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisPacketHeader {
    pub protocol: PathProtocol,
    pub source_addresses: Vec<Ipv4Addr>,
    pub destination_addresses: Vec<Ipv4Addr>,
    pub destination_port_ranges: Vec<AnalysisPortRange>,
}

/// botocore's `PathComponent`: one hop or rule of the path found, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathComponent {
    /// From 1, in the order the packet meets the components.
    pub sequence_number: u32,
    pub component: AnalysisComponent,
    pub acl_rule: Option<AnalysisAclRule>,
    pub security_group_rule: Option<AnalysisSecurityGroupRule>,
    pub route_table_route: Option<AnalysisRouteTableRoute>,
    pub attached_to: Option<AnalysisComponent>,
    pub subnet: Option<AnalysisComponent>,
    pub vpc: Option<AnalysisComponent>,
    pub outbound_header: Option<AnalysisPacketHeader>,
    pub inbound_header: Option<AnalysisPacketHeader>,
    /// botocore's `ElasticLoadBalancerListener`: a load balancer's
    /// listener the path goes through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_load_balancer_listener: Option<AnalysisComponent>,
}

/// The explanation codes openvpc gives, with AWS's spellings (the
/// Reachability Analyzer's "explanation codes" page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExplanationCode {
    /// No rule of the ENI's security groups admits the packet.
    EniSgRulesMismatch,
    /// The subnet's network ACL denies the packet.
    SubnetAclRestriction,
    /// No route of the route table covers the destination.
    NoRouteToDestination,
    /// The matching route is not in a functional state (a blackhole).
    BadStateRoute,
    /// The component is not in a functional state.
    BadState,
    /// The ENI's source/destination check refuses an address not its own.
    EniSourceDestCheckRestriction,
    /// The load balancer has no listener that accepts the traffic.
    ElbListenersMismatch,
    /// The VPN connection is not in a functional state (no tunnel up).
    BadStateVpn,
}

impl ExplanationCode {
    /// AWS's spelling, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            ExplanationCode::EniSgRulesMismatch => "ENI_SG_RULES_MISMATCH",
            ExplanationCode::SubnetAclRestriction => "SUBNET_ACL_RESTRICTION",
            ExplanationCode::NoRouteToDestination => "NO_ROUTE_TO_DESTINATION",
            ExplanationCode::BadStateRoute => "BAD_STATE_ROUTE",
            ExplanationCode::BadState => "BAD_STATE",
            ExplanationCode::EniSourceDestCheckRestriction => "ENI_SOURCE_DEST_CHECK_RESTRICTION",
            ExplanationCode::ElbListenersMismatch => "ELB_LISTENERS_MISMATCH",
            ExplanationCode::BadStateVpn => "BAD_STATE_VPN",
        }
    }
}

/// botocore's `Explanation`: why the path is blocked, and the components
/// that block it (only the members openvpc fills).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub code: ExplanationCode,
    pub direction: Option<Direction>,
    pub component: Option<AnalysisComponent>,
    pub network_interface: Option<AnalysisComponent>,
    pub security_groups: Vec<AnalysisComponent>,
    pub acl: Option<AnalysisComponent>,
    pub acl_rule: Option<AnalysisAclRule>,
    pub route_table: Option<AnalysisComponent>,
    pub route_table_route: Option<AnalysisRouteTableRoute>,
    pub internet_gateway: Option<AnalysisComponent>,
    /// botocore's `NatGateway`; absent in analyses stored before it was.
    #[serde(default)]
    pub nat_gateway: Option<AnalysisComponent>,
    pub destination: Option<AnalysisComponent>,
    pub address: Option<Ipv4Addr>,
    pub subnet: Option<AnalysisComponent>,
    pub vpc: Option<AnalysisComponent>,
    /// botocore's load balancer members (`LoadBalancerArn`,
    /// `ElasticLoadBalancerListener`, `LoadBalancerListenerPort`,
    /// `LoadBalancerTargetGroup(s)`, `LoadBalancerTarget`,
    /// `LoadBalancerTargetPort`); absent in analyses stored before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic_load_balancer_listener: Option<AnalysisComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_listener_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_target_group: Option<AnalysisComponent>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_target_groups: Vec<AnalysisComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_target: Option<AnalysisLoadBalancerTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_target_port: Option<u16>,
    /// botocore's `VpnGateway` and `VpnConnection`; absent in analyses
    /// stored before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_gateway: Option<AnalysisComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_connection: Option<AnalysisComponent>,
}

impl Explanation {
    /// An explanation with its code and nothing else filled in yet.
    pub fn new(code: ExplanationCode) -> Self {
        Explanation {
            code,
            direction: None,
            component: None,
            network_interface: None,
            security_groups: Vec::new(),
            acl: None,
            acl_rule: None,
            route_table: None,
            route_table_route: None,
            internet_gateway: None,
            nat_gateway: None,
            destination: None,
            address: None,
            subnet: None,
            vpc: None,
            load_balancer_arn: None,
            elastic_load_balancer_listener: None,
            load_balancer_listener_port: None,
            load_balancer_target_group: None,
            load_balancer_target_groups: Vec::new(),
            load_balancer_target: None,
            load_balancer_target_port: None,
            vpn_gateway: None,
            vpn_connection: None,
        }
    }
}

/// A Reachability Analyzer analysis as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInsightsAnalysis {
    pub id: String,
    /// `arn:aws:ec2:{region}:{account}:network-insights-analysis/{id}`.
    pub arn: String,
    pub owner_id: String,
    /// The path analysed. The field's name is the one
    /// DeleteNetworkInsightsPath looks for (`ANALYSIS_PATH_FIELD`).
    pub network_insights_path_id: String,
    /// ISO 8601, milliseconds, UTC, as EC2 writes times.
    pub start_date: String,
    /// The same instant in Unix seconds, for AnalysisStartTime/EndTime.
    pub start_secs: u64,
    pub status: AnalysisStatus,
    /// Why a `failed` analysis failed.
    pub status_message: Option<String>,
    /// What the analysis could not take into account.
    pub warning_message: Option<String>,
    /// `None` when the analysis failed.
    pub network_path_found: Option<bool>,
    pub forward_path_components: Vec<PathComponent>,
    pub explanations: Vec<Explanation>,
    pub tags: Tags,
}

#[cfg(test)]
mod tests {
    use super::*;

    // DeleteNetworkInsightsPath finds the analyses of a path by this field's
    // stored name: a rename would let a path be deleted under its analyses.
    #[test]
    fn the_path_field_keeps_its_stored_name() {
        let a = NetworkInsightsAnalysis {
            id: "nia-1".into(),
            arn: String::new(),
            owner_id: String::new(),
            network_insights_path_id: "nip-1".into(),
            start_date: String::new(),
            start_secs: 0,
            status: AnalysisStatus::Succeeded,
            status_message: None,
            warning_message: None,
            network_path_found: Some(true),
            forward_path_components: Vec::new(),
            explanations: Vec::new(),
            tags: Vec::new(),
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["network_insights_path_id"], "nip-1");
        assert_eq!(json["status"], "succeeded");
        assert!(json["tags"].is_array());
    }

    #[test]
    fn codes_keep_aws_spellings() {
        for code in [
            ExplanationCode::EniSgRulesMismatch,
            ExplanationCode::SubnetAclRestriction,
            ExplanationCode::NoRouteToDestination,
            ExplanationCode::BadStateRoute,
            ExplanationCode::BadState,
            ExplanationCode::EniSourceDestCheckRestriction,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&Direction::Egress).unwrap(),
            "\"egress\""
        );
    }
}
