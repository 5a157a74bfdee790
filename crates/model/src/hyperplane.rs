//! What the control plane and the hyperplane nodes say to each other over
//! the hyperplane API (`/hyperplane/v1/…`): a node's registration (the
//! shared [`crate::node`] one, which doubles as its heartbeat), and the
//! watch of its assignments: every NAT gateway whose shuffle shard holds
//! the node, with what translating for it takes.
//!
//! Plain serde values sent as JSON; they name no store keys.

use core::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use crate::node::{NodeRecord, NodeRegistration};

/// Whether a NAT gateway translates to public addresses (through the
/// region's edges) or to its private address only (spec 6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NatConnectivity {
    Public,
    Private,
}

/// One place of a gateway's shard: a node and, while it lives, its address.
/// A place's index is its slice of each address's ports
/// (`openvpc_hyperplane::nat::owner_of`); while its node is dead, the next
/// live place (its buddy) serves the slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMember {
    pub node_id: String,
    /// `None` while the node is dead (its registration expired).
    pub underlay_ip: Option<IpAddr>,
}

/// One route of a private gateway's subnet that a node can follow: the
/// destinations inside the VPC (`local`) or across a peering, and the VNI
/// the translated packet continues in (the mapping service then names the
/// destination's host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRoute {
    pub destination: Ipv4Net,
    pub vni: u32,
}

/// A NAT gateway a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatAssignment {
    pub gateway_id: String,
    pub account_id: String,
    pub vpc_id: String,
    /// The VPC's VNI: what hosts encapsulate the gateway's traffic with.
    pub vni: u32,
    pub subnet_id: String,
    pub connectivity: NatConnectivity,
    /// The gateway's private addresses on its ENI, the primary first: what
    /// it translates sources to (an edge then maps each to its Elastic IP
    /// for a public gateway).
    pub private_ips: Vec<Ipv4Addr>,
    /// The Elastic IPs of a public gateway, in the order of `private_ips`.
    pub public_ips: Vec<Ipv4Addr>,
    /// Every place of the shard, in order, dead nodes included: a node's
    /// place is its slice of each address's ports, and its buddy is the
    /// next live place.
    pub shard: Vec<ShardMember>,
    /// Where a public gateway's translated packets go: the underlay
    /// addresses of the region's live edge nodes (empty while the VPC has
    /// no internet gateway attached, or for a private gateway).
    #[serde(default)]
    pub edges: Vec<IpAddr>,
    /// Where a private gateway's translated packets go: the routes of its
    /// subnet's table to the VPC itself and to peered VPCs (longest prefix
    /// first matters not: the node matches the longest). Empty for a
    /// public gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<NatRoute>,
}

/// The answer to a node's watch: its assignments, whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HyperplaneDelta {
    /// Resume the next watch from here.
    pub revision: u64,
    pub assignments: Vec<NatAssignment>,
}

/// The hyperplane API's endpoints, relative to the server's URL; every call
/// carries the agent token in `host::TOKEN_HEADER`.
pub mod path {
    /// POST a [`super::NodeRegistration`]; answers the [`super::NodeRecord`].
    pub const REGISTER: &str = "/hyperplane/v1/register";
    /// POST a [`super::NodeRegistration`]: the node leaves at once.
    pub const DEREGISTER: &str = "/hyperplane/v1/deregister";
    /// GET `?node=ID&since=REV[&wait_ms=N]`; answers a
    /// [`super::HyperplaneDelta`].
    pub const WATCH: &str = "/hyperplane/v1/watch";
}
