//! A DHCP options set as stored: the record under `dopt/{id}` and its
//! options in the order given.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::dhcp_options`.

use serde::{Deserialize, Serialize};

use super::Tags;

/// A DHCP options set as stored: its options in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpOptions {
    pub id: String,
    pub owner_id: String,
    /// (key, values), one entry per key.
    pub configurations: Vec<(String, Vec<String>)>,
    /// True for the account's default set (spec 1.6).
    #[serde(default)]
    pub is_default: bool,
    pub tags: Tags,
}

impl DhcpOptions {
    /// The values of one option, if the set has it.
    pub fn values(&self, key: &str) -> Option<&[String]> {
        self.configurations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}
