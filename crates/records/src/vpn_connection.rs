//! A Site-to-Site VPN connection as stored: the record under `vpn/{id}`,
//! its two tunnels and its static routes.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::vpn_connection`.

use std::net::Ipv4Addr;

use openvpc_model::Ipv4Cidr;
use openvpc_model::lifecycle::VpnConnectionState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// One tunnel as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tunnel {
    pub outside_ip: Ipv4Addr,
    /// The /30: AWS takes its first host address, the customer gateway the
    /// second (spec 10.2).
    pub inside_cidr: Ipv4Cidr,
    pub pre_shared_key: String,
}

/// A static route of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnRoute {
    pub destination: Ipv4Cidr,
}

/// A VPN connection as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnConnection {
    pub id: String,
    /// `available` or `deleted`.
    pub state: VpnConnectionState,
    #[serde(rename = "type")]
    pub connection_type: String,
    pub customer_gateway_id: String,
    pub vpn_gateway_id: Option<String>,
    pub transit_gateway_id: Option<String>,
    pub static_routes_only: bool,
    pub tunnels: Vec<Tunnel>,
    pub routes: Vec<VpnRoute>,
    /// The customer gateway's address and ASN when the connection was made,
    /// for the configuration document.
    pub customer_ip: Option<String>,
    pub customer_asn: u64,
    pub amazon_asn: u64,
    pub created: String,
    #[serde(default)]
    pub deleted_at: Option<u64>,
    /// spec 10.2: the IPv4 networks the tunnels carry on the customer side
    /// (local) and the AWS side (remote); `None` is the default 0.0.0.0/0.
    #[serde(default)]
    pub local_ipv4_network_cidr: Option<Ipv4Cidr>,
    #[serde(default)]
    pub remote_ipv4_network_cidr: Option<Ipv4Cidr>,
    pub tags: Tags,
    /// `VgwTelemetry`, per tunnel: computed from the edges' reports when
    /// the connection is read, never stored.
    #[serde(skip)]
    pub telemetry: Vec<ShownTelemetry>,
}

/// A tunnel's `VgwTelemetry` as Describe shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShownTelemetry {
    pub up: bool,
    pub status_message: String,
    pub accepted_route_count: usize,
    /// Unix milliseconds; `None` before any report.
    pub last_status_change_ms: Option<u64>,
}

impl VpnConnection {
    pub fn is_live(&self) -> bool {
        self.state.exists()
    }
}

/// The store segment of [`VpnTelemetry`] (`r/{account}/{region}/vpn-telemetry/{id}`).
pub const TELEMETRY_SEGMENT: &str = "vpn-telemetry";

/// What the edges last reported of a connection's tunnels (issue 19): the
/// truth behind `VgwTelemetry`, the connection's `available` state and
/// the routes its gateway propagates. Kept apart from the connection, so
/// the edges' writes never race a customer's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnTelemetry {
    /// The connection's ID.
    pub id: String,
    pub tunnels: Vec<TunnelTelemetry>,
}

/// One tunnel's last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelTelemetry {
    pub outside_ip: Ipv4Addr,
    /// The edge that reported it: the report holds only while that edge
    /// lives and still serves the tunnel.
    pub edge_id: String,
    pub ipsec_up: bool,
    pub bgp_up: bool,
    pub status_message: String,
    pub routes: Vec<LearnedRoute>,
    /// Unix milliseconds of the last change of `ipsec_up` or `bgp_up`.
    pub last_change_ms: u64,
}

pub use openvpc_model::edge::LearnedRoute;
