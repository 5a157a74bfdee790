//! An Elastic IP as stored: the record under `eipalloc/{id}` and its
//! association with an ENI.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::address`.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::Tags;

/// Where an Elastic IP points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressAssociation {
    pub association_id: String,
    pub network_interface_id: String,
    pub private_ip: Ipv4Addr,
    /// The instance the ENI is attached to, if any.
    pub instance_id: Option<String>,
}

/// An Elastic IP as stored (keyed by its allocation ID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub id: String,
    pub public_ip: Ipv4Addr,
    pub domain: String,
    pub owner_id: String,
    pub region: String,
    pub association: Option<AddressAssociation>,
    pub tags: Tags,
}
