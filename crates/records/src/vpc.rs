//! A VPC as stored: the record under `vpc/{id}` and its CIDR associations.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::vpc`.

use openvpc_model::lifecycle::CidrBlockState;
use openvpc_model::lifecycle::VpcState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// A CIDR block associated with a VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrAssociation {
    pub association_id: String,
    pub cidr_block: String,
    pub state: CidrBlockState,
}

/// An Amazon-provided IPv6 block associated with a VPC (spec 1.1: a /56).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6CidrAssociation {
    pub association_id: String,
    pub ipv6_cidr_block: String,
    pub state: CidrBlockState,
    pub network_border_group: String,
}

/// A VPC as stored. Fields added after the first release carry serde
/// defaults, so records written before them still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub owner_id: String,
    pub cidr_block: String,
    pub cidr_associations: Vec<CidrAssociation>,
    pub state: VpcState,
    pub dhcp_options_id: String,
    pub instance_tenancy: String,
    pub is_default: bool,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    pub tags: Tags,
    /// The Geneve VNI of the VPC's traffic, unique in the region.
    pub vni: u32,
    #[serde(default)]
    pub enable_network_address_usage_metrics: bool,
    #[serde(default)]
    pub ipv6_cidr_associations: Vec<Ipv6CidrAssociation>,
}
