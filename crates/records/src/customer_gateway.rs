//! A customer gateway as stored: the record under `cgw/{id}`.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::customer_gateway`.

use openvpc_model::lifecycle::CustomerGatewayState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// A customer gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerGateway {
    pub id: String,
    /// `available` or `deleted`.
    pub state: CustomerGatewayState,
    #[serde(rename = "type")]
    pub gateway_type: String,
    pub ip_address: Option<String>,
    pub bgp_asn: u64,
    /// True when the ASN came as `BgpAsnExtended` (and is shown as such).
    #[serde(default)]
    pub extended: bool,
    pub device_name: Option<String>,
    pub certificate_arn: Option<String>,
    #[serde(default)]
    pub deleted_at: Option<u64>,
    pub tags: Tags,
}

impl CustomerGateway {
    pub fn is_live(&self) -> bool {
        self.state.exists()
    }
}
