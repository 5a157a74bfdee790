//! What every node that follows a region's server (an edge node, a
//! hyperplane node) says about itself: its registration, which doubles as
//! its heartbeat, and the record the server keeps of it while it beats.
//!
//! Plain serde values sent as JSON; they name no store keys.

use core::net::IpAddr;

use serde::{Deserialize, Serialize};

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
}
