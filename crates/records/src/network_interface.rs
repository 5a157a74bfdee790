//! A network interface (ENI) as stored: the record under `eni/{id}`, its
//! attachment, public mappings, group references and conntrack timeouts.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format) and pure reads of it; it must not know the Query
//! protocol, XML or request parameters, which live in
//! `openvpc_control::api::actions::network_interface`.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::Tags;

/// spec 3.2: conntrack idle timeouts, defaults and allowed ranges (seconds).
pub const TCP_ESTABLISHED_DEFAULT: u32 = 432_000;
pub const UDP_STREAM_DEFAULT: u32 = 180;
pub const UDP_DEFAULT: u32 = 30;

/// A security group as an ENI carries it: names never change, so the name
/// is kept with the ID for Describe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// The ENI's attachment to an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub id: String,
    pub instance_id: String,
    pub instance_owner_id: String,
    pub device_index: u32,
    pub delete_on_termination: bool,
    pub attach_time: String,
}

/// A public IPv4 mapped 1:1 onto one of the ENI's private addresses (spec 5.1):
/// auto-assigned (no allocation) or an Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicMapping {
    pub private_ip: Ipv4Addr,
    pub public_ip: Ipv4Addr,
    pub allocation_id: Option<String>,
    pub association_id: Option<String>,
    pub ip_owner_id: String,
}

/// spec 3.2: the per-ENI idle timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conntrack {
    pub tcp_established: u32,
    pub udp_stream: u32,
    pub udp: u32,
}

/// An ENI as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub id: String,
    pub region: String,
    pub subnet_id: String,
    pub vpc_id: String,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub owner_id: String,
    pub description: String,
    /// The primary address first, then the secondaries.
    pub private_ips: Vec<Ipv4Addr>,
    pub groups: Vec<GroupRef>,
    pub mac_address: String,
    pub source_dest_check: bool,
    pub interface_type: String,
    pub requester_managed: bool,
    pub attachment: Option<Attachment>,
    pub public: Vec<PublicMapping>,
    /// The ENI got an auto-assigned public IPv4 at launch, and gets a fresh
    /// one back when an Elastic IP leaves its primary address (spec 5.3).
    pub auto_public: bool,
    pub conntrack: Option<Conntrack>,
    pub tags: Tags,
    /// The host that runs it: its instance's, while attached.
    #[serde(default)]
    pub host_id: Option<String>,
    /// IPv6 addresses from the subnet's IPv6 block (records only).
    #[serde(default)]
    pub ipv6_addresses: Vec<Ipv6Addr>,
}

impl NetworkInterface {
    pub fn primary_ip(&self) -> Option<Ipv4Addr> {
        self.private_ips.first().copied()
    }

    /// `in-use` while attached, and always for a requester-managed
    /// interface (AWS attaches it to its service's node).
    pub fn status(&self) -> &'static str {
        if self.attachment.is_some() || self.requester_managed {
            "in-use"
        } else {
            "available"
        }
    }

    /// The public mapping of the primary address, if any.
    pub fn primary_public(&self) -> Option<&PublicMapping> {
        let primary = self.primary_ip()?;
        self.public.iter().find(|p| p.private_ip == primary)
    }

    pub fn attached_to(&self, instance_id: &str) -> bool {
        self.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance_id)
    }
}
