//! The ELBv2 records as stored: network load balancers and their zones,
//! target groups with their health-check settings and registered targets, and
//! listeners. The store segments and ARN lookups stay with the API
//! (`openvpc_control::api::elbv2::records`), which implements `Record` for them.
//! This module owns their stored shapes; it must not know the Query
//! protocol, XML or request parameters.

use std::net::Ipv4Addr;

use openvpc_model::lifecycle::LoadBalancerState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// A network load balancer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub name: String,
    /// The 16 hex digits that end the ARN and name the record.
    pub id: String,
    pub scheme: String,
    pub ip_address_type: String,
    pub vpc_id: String,
    pub zones: Vec<Zone>,
    pub created: u64,
    pub tags: Tags,
    pub cross_zone: bool,
    pub deletion_protection: bool,
    /// `provisioning` until a hyperplane node of its shard serves it, then
    /// `active`; `failed` (with `state_reason`) when none can. Records
    /// stored before there was a dataplane load as `provisioning`.
    #[serde(default = "provisioning")]
    pub state: LoadBalancerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// When `state` began (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<u64>,
}

fn provisioning() -> LoadBalancerState {
    LoadBalancerState::Provisioning
}

/// One enabled AZ: its subnet, and the EIP given for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Zone {
    pub zone: String,
    pub subnet_id: String,
    pub allocation_id: Option<String>,
    /// The requester-managed ENI (`ELB net/<name>/<id>`) in the subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
    /// The ENI's private address: the load balancer's address in this AZ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<Ipv4Addr>,
    /// An internet-facing load balancer's public address in this AZ (the
    /// Elastic IP given, or one from the region's pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
}

/// A target group and its registered targets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetGroup {
    pub arn: String,
    pub name: String,
    pub id: String,
    pub protocol: String,
    pub port: u16,
    pub vpc_id: String,
    pub target_type: String,
    pub health: HealthCheck,
    pub targets: Vec<Target>,
    /// When a listener first sent it traffic: health checks start then.
    pub in_use_since: Option<u64>,
    pub tags: Tags,
    /// Attributes changed from their defaults (spec 9.1); the rest are
    /// computed by `target_group::tg_attributes`.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Health check settings (spec 9.4).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthCheck {
    pub enabled: bool,
    pub protocol: String,
    pub port: String,
    pub path: Option<String>,
    pub interval: u32,
    pub timeout: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    pub matcher: Option<String>,
}

/// A registered target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub id: String,
    pub port: u16,
    pub registered: u64,
    /// Set when deregistered (Unix seconds): the target drains until the
    /// group's deregistration delay has passed, then is removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deregistered_at: Option<u64>,
}

/// A listener and the target group its forward action sends to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Listener {
    pub arn: String,
    pub id: String,
    pub load_balancer_arn: String,
    pub protocol: String,
    pub port: u16,
    pub target_group_arn: String,
    pub certificate_arn: Option<String>,
    /// `tcp.idle_timeout.seconds` when changed from the default (spec
    /// 9.6); TCP listeners only.
    #[serde(default)]
    pub tcp_idle_timeout: Option<u32>,
}

impl LoadBalancer {
    /// The name that stands for the load balancer where gateways are named:
    /// its shard's key, a host route's target, a hyperplane node's report
    /// that it serves it (`elb-` and the ID that ends its ARN).
    pub fn gateway_id(&self) -> String {
        format!("elb-{}", self.id)
    }

    /// Its DNS name (`DNSName`): `NAME-ID.elb.REGION.amazonaws.com`.
    pub fn dns_name(&self, region: &str) -> String {
        format!("{}-{}.elb.{}.amazonaws.com", self.name, self.id, region)
    }

    /// Whether the load balancer has a node (and so an ENI) in `subnet_id`.
    pub fn in_subnet(&self, subnet_id: &str) -> bool {
        self.zones.iter().any(|z| z.subnet_id == subnet_id)
    }
}
