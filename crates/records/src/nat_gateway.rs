//! A NAT gateway as stored: the record under `nat/{id}` and its addresses
//! (private IPs on its ENI, and Elastic IPs for a public gateway).
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::nat_gateway`.

use std::net::Ipv4Addr;

use openvpc_model::lifecycle::{NatAddressStatus, NatGatewayState};
use serde::{Deserialize, Serialize};

use super::Tags;

/// How long a failed or deleted gateway stays visible (AWS: about an hour).
pub const VISIBLE_AFTER_END_SECS: u64 = 3600;

/// One address of a gateway: a private address on its ENI and, for a public
/// gateway, the Elastic IP associated with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatAddress {
    pub private_ip: Option<Ipv4Addr>,
    pub allocation_id: Option<String>,
    pub public_ip: Option<Ipv4Addr>,
    pub association_id: Option<String>,
    pub is_primary: bool,
    pub status: NatAddressStatus,
}

/// A NAT gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatGateway {
    pub id: String,
    pub owner_id: String,
    pub subnet_id: String,
    /// Top-level so route_table can check that a route's target is in the
    /// table's VPC.
    pub vpc_id: String,
    pub availability_zone: String,
    pub connectivity_type: String,
    /// Its lifecycle (spec 6.1): `pending` until a node of its shard serves
    /// it, then `available`; `failed`; `deleting` while it drains, then
    /// `deleted`. route_target reads it: a route to the gateway is a
    /// blackhole unless it is `available`.
    pub state: NatGatewayState,
    /// When `state` began (Unix seconds): how long a gateway has waited for
    /// a node, or drained. Absent in records stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<u64>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub network_interface_id: Option<String>,
    pub addresses: Vec<NatAddress>,
    pub create_time: String,
    pub delete_time: Option<String>,
    /// When it failed or was deleted (Unix seconds): it is hidden an hour later.
    pub ended_at: Option<u64>,
    pub tags: Tags,
}

impl NatGateway {
    pub fn visible(&self, now: u64) -> bool {
        self.ended_at
            .is_none_or(|t| now < t.saturating_add(VISIBLE_AFTER_END_SECS))
    }

    /// spec 6.2, 13: pending, available and deleting gateways hold quota;
    /// failed and deleted ones do not.
    pub fn live(&self) -> bool {
        matches!(
            self.state,
            NatGatewayState::Pending | NatGatewayState::Available | NatGatewayState::Deleting
        )
    }
}
