//! An internet gateway as stored: the record under `igw/{id}` and the VPC
//! it is attached to.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::internet_gateway`.

use serde::{Deserialize, Serialize};

use super::Tags;

/// An internet gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternetGateway {
    pub id: String,
    pub owner_id: String,
    /// The VPC it is attached to, if any.
    #[serde(default)]
    pub vpc_id: Option<String>,
    pub tags: Tags,
}
