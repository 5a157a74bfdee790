//! A VPC peering connection as stored: the record under `pcx/{id}` (in each
//! account that takes part) and its two sides.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `crate::api::actions::vpc_peering`.

use openvpc_model::lifecycle::VpcPeeringState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// One side's peering options (ModifyVpcPeeringConnectionOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringOptions {
    pub allow_dns_resolution_from_remote_vpc: bool,
    pub allow_egress_from_local_classic_link_to_remote_vpc: bool,
    pub allow_egress_from_local_vpc_to_remote_classic_link: bool,
}

/// One VPC of a peering, as it was when the request was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringSide {
    pub owner_id: String,
    pub vpc_id: String,
    pub region: String,
    /// The VPC's IPv4 blocks, primary first; empty when the VPC was not found.
    pub cidr_blocks: Vec<String>,
    pub ipv6_cidr_blocks: Vec<String>,
    pub options: PeeringOptions,
}

/// A peering connection as stored (in each account that takes part). No
/// top-level `vpc_id`: route_table would require it to be the table's VPC,
/// and a peering belongs to two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcPeering {
    pub id: String,
    pub requester: PeeringSide,
    pub accepter: PeeringSide,
    /// spec 7.1's status code; route_table reads it (only `active` carries
    /// traffic). `expired` is never stored: it is computed from `created_at`.
    pub state: VpcPeeringState,
    pub message: String,
    pub created_at: u64,
    /// When it reached an end state (failed, rejected, deleted).
    pub ended_at: Option<u64>,
    pub deleted_by: Option<String>,
    pub tags: Tags,
}
