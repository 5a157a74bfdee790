//! A gateway VPC endpoint as stored: the record under `vpce/{id}` and the
//! route tables it adds its service's prefix list to.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::vpc_endpoint`.

use openvpc_model::lifecycle::VpcEndpointState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// A gateway endpoint as stored. `state` and `vpc_id` are top-level, which
/// the route module reads generically for its blackhole and VPC checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcEndpoint {
    pub id: String,
    pub owner_id: String,
    pub vpc_id: String,
    pub service_name: String,
    /// The service's AWS-managed list, the destination of the routes.
    pub prefix_list_id: String,
    pub route_table_ids: Vec<String>,
    pub policy_document: String,
    pub state: VpcEndpointState,
    pub creation_timestamp: String,
    pub tags: Tags,
}
