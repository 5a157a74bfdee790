//! An egress-only internet gateway as stored: the record under `eigw/{id}`.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::egress_only_internet_gateway`.

use serde::{Deserialize, Serialize};

use super::Tags;

/// An egress-only internet gateway as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressOnlyInternetGateway {
    pub id: String,
    pub owner_id: String,
    pub vpc_id: String,
    pub tags: Tags,
}
