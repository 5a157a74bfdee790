//! A virtual private gateway as stored: the record under `vgw/{id}` and
//! the VPC it is attached to.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::vpn_gateway`.

use openvpc_model::lifecycle::VpnGatewayState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// A virtual private gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnGateway {
    pub id: String,
    /// `available` or `deleted`: route_table.rs reads this top-level field
    /// to show routes to a deleted gateway as `blackhole` (spec 2.5).
    pub state: VpnGatewayState,
    #[serde(rename = "type")]
    pub gateway_type: String,
    pub availability_zone: Option<String>,
    pub amazon_side_asn: u64,
    /// The VPC it is attached to.
    pub vpc_id: Option<String>,
    /// The VPC it was last detached from, shown as a `detached` attachment.
    #[serde(default)]
    pub detached_from: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<u64>,
    pub tags: Tags,
}

impl VpnGateway {
    pub fn is_live(&self) -> bool {
        self.state.exists()
    }

    /// (VPC, state) of the attachment Describe shows, if any.
    pub fn attachment(&self) -> Option<(&str, &str)> {
        match (&self.vpc_id, &self.detached_from) {
            (Some(vpc), _) => Some((vpc, "attached")),
            (None, Some(vpc)) => Some((vpc, "detached")),
            (None, None) => None,
        }
    }
}
