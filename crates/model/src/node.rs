//! What every node that follows a region's server (an edge node, a
//! hyperplane node) says about itself: its registration, which doubles as
//! its heartbeat, and the record the server keeps of it while it beats.
//!
//! Plain serde values sent as JSON; they name no store keys.

use core::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::lifecycle::TargetHealthState;

/// How often a node registers again to say it is alive.
pub const HEARTBEAT_MS: u64 = 500;

/// How long after its last registration a node counts as gone: the server
/// then removes it, and hosts stop sending to it. Three missed heartbeats,
/// so one late answer does not flap the region's routes.
pub const EDGE_TTL_MS: u64 = 1_500;

/// What a node says about itself, at start and every [`HEARTBEAT_MS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's name in the region (unique among nodes of its role).
    pub node_id: String,
    /// The address hosts send the node Geneve traffic to.
    pub underlay_ip: IpAddr,
    /// The gateways this node has programmed and translates for (a
    /// hyperplane node; an edge sends none): a NAT gateway is `available`
    /// once a node of its shard says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serving: Vec<String>,
    /// The health of the load balancers' targets as this node's probes
    /// found it (a hyperplane node; DescribeTargetHealth reads it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_health: Vec<TargetHealthReport>,
}

/// One target's health as one node's probes found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealthReport {
    /// The target group's ID (the 16 hex digits that end its ARN).
    pub target_group_id: String,
    /// The instance ID or IP address, as registered.
    pub target_id: String,
    pub port: u16,
    pub state: TargetHealthState,
    /// AWS's reason code (`Target.FailedHealthChecks`, …); `None` when
    /// healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A live node as the server keeps it (`edges/{region}/{id}`,
/// `hyperplane/{region}/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub region: String,
    pub underlay_ip: IpAddr,
    /// Unix seconds of the first registration of this run.
    pub registered_at: i64,
    /// Unix milliseconds after which the node counts as gone unless it
    /// registers again.
    pub expires_at_ms: u64,
    /// What its last heartbeat said it serves ([`NodeRegistration::serving`]):
    /// the NAT lifecycle reads it to move a pending gateway to `available`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub serving: Vec<String>,
    /// What its last heartbeat said of targets' health
    /// ([`NodeRegistration::target_health`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_health: Vec<TargetHealthReport>,
}
