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
}

impl VpnConnection {
    pub fn is_live(&self) -> bool {
        self.state.exists()
    }
}
