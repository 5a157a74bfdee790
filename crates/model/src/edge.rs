//! What the control plane and the edge nodes say to each other over the
//! edge API (`/edge/v1/…`): an edge node's registration (which doubles as
//! its heartbeat), and the watch of what it translates: every public IPv4
//! address of the region held for an ENI, the VNIs of the VPCs with an
//! attached internet gateway, and the region's public pool the edges
//! announce to the outside.
//!
//! Plain serde values sent as JSON; they name no store keys and no
//! dataplane types.

use core::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use crate::node::{
    EDGE_TTL_MS, HEARTBEAT_MS, NodeRecord as EdgeRecord, NodeRegistration as EdgeRegistration,
};

/// One public address and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeMapping {
    pub public: Ipv4Addr,
    /// The VPC's VNI.
    pub vni: u32,
    pub private: Ipv4Addr,
    /// The underlay address of the host that runs the ENI.
    pub host: IpAddr,
    /// The ENI's MAC (`02:…`), the inner destination of inbound frames.
    pub mac: String,
    pub eni_id: String,
    /// For the Elastic IP of a NAT gateway: per place of the gateway's
    /// shard, the underlay address of the hyperplane node that serves the
    /// place's port slice (a dead node's place is served by its buddy).
    /// A reply goes to `nat_nodes[port % len]`; empty for an ENI on a host
    /// (then `host` is where replies go).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_nodes: Vec<IpAddr>,
}

/// The answer to an edge's watch: what changed since a revision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EdgeDelta {
    /// Resume the next watch from here.
    pub revision: u64,
    /// True when `upserts` is the whole table: drop every address not in it.
    pub full: bool,
    /// Addresses held now, or held by someone else than before.
    pub upserts: Vec<EdgeMapping>,
    /// Addresses no longer held.
    pub removals: Vec<Ipv4Addr>,
    /// Every VNI whose VPC has an internet gateway attached, whole.
    pub attached_vnis: Vec<u32>,
    /// The region's public pool, whole: what edges announce over BGP.
    pub public_pool: Vec<Ipv4Net>,
}

/// The edge API's endpoints, relative to the server's URL; every call
/// carries the agent token in `host::TOKEN_HEADER`.
pub mod path {
    /// POST an [`super::EdgeRegistration`]; answers the [`super::EdgeRecord`].
    pub const REGISTER: &str = "/edge/v1/register";
    /// POST an [`super::EdgeRegistration`]: the node leaves at once (a
    /// clean shutdown), without waiting out its TTL.
    pub const DEREGISTER: &str = "/edge/v1/deregister";
    /// GET `?edge=ID&since=REV[&wait_ms=N]`; answers an [`super::EdgeDelta`].
    pub const WATCH: &str = "/edge/v1/watch";
}
