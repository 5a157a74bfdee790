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

use crate::flow_log::LoggedEni;
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
    /// The gateway's ENI, while a flow log covers it (the ENI, its subnet
    /// or its VPC): the nodes count what they translate and send records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_log: Option<LoggedEni>,
}

/// The answer to a node's watch: its assignments, whole.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HyperplaneDelta {
    /// Resume the next watch from here.
    pub revision: u64,
    pub assignments: Vec<NatAssignment>,
    /// The network load balancers whose shard holds the node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancers: Vec<LbAssignment>,
}

/// A listener's or target group's protocol as the nodes serve it (TLS is
/// refused by the API until certificates exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LbProtocol {
    Tcp,
    Udp,
    TcpUdp,
}

/// A target group's `TargetType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbTargetType {
    Instance,
    Ip,
}

/// A health check's protocol (spec 9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LbHealthProtocol {
    Tcp,
    Http,
    Https,
}

/// One address of a load balancer: one per enabled AZ, on the
/// requester-managed ENI in that AZ's subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbFront {
    pub subnet_id: String,
    pub availability_zone: String,
    pub private_ip: Ipv4Addr,
    /// An internet-facing load balancer's public address in this AZ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<Ipv4Addr>,
}

/// A listener: a port and protocol forwarding to one target group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbListener {
    pub port: u16,
    pub protocol: LbProtocol,
    /// The ID of the group its forward action sends to.
    pub target_group_id: String,
    /// `tcp.idle_timeout.seconds` (spec 9.6); `None` is the default 350.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_idle_timeout: Option<u32>,
}

/// A target group's health check (spec 9.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbHealthCheck {
    pub enabled: bool,
    pub protocol: LbHealthProtocol,
    /// `None` is `traffic-port`.
    pub port: Option<u16>,
    /// HTTP(S) only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP(S) only: `200-399` and the like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// A registered target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbTarget {
    /// The instance ID or the IP address, as registered.
    pub id: String,
    /// Where traffic goes: the instance's primary private address, or the
    /// IP target itself.
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The target's AZ (an IP target's subnet's AZ).
    pub availability_zone: String,
    /// Set while deregistered: Unix milliseconds when its deregistration
    /// delay ends and its flows are cut. It gets no new flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draining_until_ms: Option<u64>,
    /// Set for an instance that is not running (spec 9.4: `unused`,
    /// `Target.InvalidState`): not probed, no flows.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub invalid_state: bool,
}

/// A target group used by a load balancer's listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbTargetGroup {
    /// The 16 hex digits that end its ARN.
    pub id: String,
    pub arn: String,
    pub protocol: LbProtocol,
    pub port: u16,
    pub target_type: LbTargetType,
    pub health_check: LbHealthCheck,
    /// `preserve_client_ip.enabled` when set; `None` takes spec 9.3's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_client_ip: Option<bool>,
    /// `load_balancing.cross_zone.enabled` when not
    /// `use_load_balancer_configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cross_zone: Option<bool>,
    /// `deregistration_delay.timeout_seconds` (default 300).
    pub deregistration_delay_secs: u32,
    pub targets: Vec<LbTarget>,
}

/// A network load balancer a node serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LbAssignment {
    /// The 16 hex digits that end its ARN (a node reports `elb-` and this
    /// as what it serves).
    pub id: String,
    pub arn: String,
    pub name: String,
    pub account_id: String,
    pub vpc_id: String,
    /// The VPC's VNI.
    pub vni: u32,
    pub internet_facing: bool,
    /// `load_balancing.cross_zone.enabled` (default off, spec 9.5).
    pub cross_zone: bool,
    pub fronts: Vec<LbFront>,
    pub listeners: Vec<LbListener>,
    pub target_groups: Vec<LbTargetGroup>,
    /// Every place of the shard, in order, dead nodes included.
    pub shard: Vec<ShardMember>,
    /// Where an internet-facing load balancer's replies to outside clients
    /// go: the region's live edges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<IpAddr>,
    /// The fronts' ENIs that a flow log covers (the ENI, its subnet or its
    /// VPC), each with its front address as its primary: the nodes count
    /// what crosses them and send records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flow_logs: Vec<LoggedEni>,
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
