//! An instance as stored: the record under `i/{id}`.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::instance`.

use std::net::Ipv4Addr;

use openvpc_model::lifecycle::InstanceState;
use serde::{Deserialize, Serialize};

use super::Tags;
use super::network_interface::GroupRef;

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub reservation_id: String,
    pub owner_id: String,
    pub region: String,
    pub image_id: String,
    pub instance_type: String,
    /// `running`, `stopped` or `terminated`: the transitional states are
    /// only ever shown in the answers of the calls that start them.
    pub state: InstanceState,
    pub launch_time: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub private_ip: Option<Ipv4Addr>,
    /// The groups at launch; the primary ENI's groups win while it exists.
    pub groups: Vec<GroupRef>,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub ami_launch_index: u32,
    pub client_token: Option<String>,
    pub state_reason: String,
    pub tags: Tags,
    /// The registered host it runs on; `None` while the region has no hosts
    /// (an API-only server).
    #[serde(default)]
    pub host_id: Option<String>,
}
