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
    /// Every VPN tunnel of the region, whole, each with the edge that
    /// serves it (issue 19): an edge serves its own and hands another's
    /// traffic to its owner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vpn_tunnels: Vec<VpnTunnel>,
    /// Every VPN gateway's chosen routes (spec 10.3), whole: where an
    /// edge sends what a VPC sends to its gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vgw_routes: Vec<VgwRoute>,
}

/// A prefix a VPN gateway routes, and the tunnel it chose for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VgwRoute {
    pub vpn_gateway_id: String,
    /// The VNI of the gateway's VPC.
    pub vni: u32,
    pub prefix: Ipv4Net,
    /// The tunnel's outside address, and the edge that serves it.
    pub outside_ip: Ipv4Addr,
    pub edge_underlay: IpAddr,
}

/// One tunnel of a Site-to-Site VPN connection, as the edge that serves it
/// needs it (spec 10.2): the IKE responder's parameters, the inside /30
/// BGP runs over, and where the gateway's VPC is.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnTunnel {
    pub vpn_connection_id: String,
    pub vpn_gateway_id: String,
    /// 0 or 1: the connection's first or second tunnel.
    pub index: u8,
    /// Ours: from the region's public pool; the owner edge announces it.
    pub outside_ip: Ipv4Addr,
    /// The customer gateway's address.
    pub customer_ip: Ipv4Addr,
    /// AWS (we) take the first host address, the customer the second.
    pub inside_cidr: Ipv4Net,
    pub pre_shared_key: String,
    pub amazon_asn: u32,
    pub customer_asn: u32,
    /// No BGP over the inside /30: `static_routes` say what the customer
    /// side holds.
    pub static_routes_only: bool,
    pub static_routes: Vec<Ipv4Net>,
    /// The selectors: the customer side's (`LocalIpv4NetworkCidr`) and the
    /// VPC side's (`RemoteIpv4NetworkCidr`), 0.0.0.0/0 by default.
    pub local_network: Ipv4Net,
    pub remote_network: Ipv4Net,
    /// The VNI of the VPC the gateway is attached to, and its CIDRs (what
    /// BGP announces to the customer); `None` while detached.
    pub vni: Option<u32>,
    pub vpc_cidrs: Vec<Ipv4Net>,
    /// The edge that serves it, and its underlay address.
    pub edge_id: String,
    pub edge_underlay: IpAddr,
}

// The pre-shared key is never printed.
impl core::fmt::Debug for VpnTunnel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VpnTunnel")
            .field("vpn_connection_id", &self.vpn_connection_id)
            .field("index", &self.index)
            .field("outside_ip", &self.outside_ip)
            .field("inside_cidr", &self.inside_cidr)
            .field("edge_id", &self.edge_id)
            .finish_non_exhaustive()
    }
}

/// A route the customer gateway announced over a tunnel's BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedRoute {
    pub prefix: Ipv4Net,
    /// AS_PATH length and MED: spec 10.3's tie-breaks.
    pub as_path_len: u32,
    #[serde(default)]
    pub med: u32,
}

/// What an edge says of a tunnel it serves (`POST` [`path::VPN_STATUS`]):
/// the truth `VgwTelemetry` and route propagation are made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnTunnelReport {
    pub vpn_connection_id: String,
    pub outside_ip: Ipv4Addr,
    pub edge_id: String,
    /// The IKE SA and a child SA are up.
    pub ipsec_up: bool,
    /// The BGP session is established (always false for static routing).
    pub bgp_up: bool,
    /// What `VgwTelemetry.StatusMessage` says, as AWS words it.
    pub status_message: String,
    /// The routes accepted from the customer over BGP.
    pub routes: Vec<LearnedRoute>,
    /// Unix milliseconds of the last change of `ipsec_up` or `bgp_up`.
    pub last_change_ms: u64,
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
    /// POST a list of [`super::VpnTunnelReport`] (`?edge=ID`): the tunnels
    /// the edge serves, whole; answers `{}`.
    pub const VPN_STATUS: &str = "/edge/v1/vpn-status";
}
