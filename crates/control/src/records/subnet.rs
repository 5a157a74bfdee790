//! A subnet as stored: the record under `subnet/{id}`, its IPv6
//! associations and CIDR reservations, and the region's zones it is placed in.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `crate::api::actions::subnet`.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use openvpc_model::Ipv4Cidr;
use openvpc_model::lifecycle::{CidrBlockState, SubnetState};
use serde::{Deserialize, Serialize};

use super::Tags;

/// An IPv6 block associated with a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetIpv6Association {
    pub association_id: String,
    pub ipv6_cidr_block: Ipv6Net,
    pub state: CidrBlockState,
}

/// A subnet as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub arn: String,
    /// The IPv4 block; `None` only for an IPv6-only subnet.
    #[serde(default)]
    pub cidr_block: Option<Ipv4Cidr>,
    /// Created with `Ipv6Native`: IPv6 only, no IPv4 block.
    #[serde(default)]
    pub ipv6_native: bool,
    #[serde(default)]
    pub ipv6_cidr_associations: Vec<SubnetIpv6Association>,
    /// IPv6 addresses held by ENIs in the subnet.
    #[serde(default)]
    pub ipv6_allocated: Vec<Ipv6Addr>,
    pub availability_zone: String,
    pub availability_zone_id: String,
    pub state: SubnetState,
    pub default_for_az: bool,
    pub map_public_ip_on_launch: bool,
    #[serde(default)]
    pub assign_ipv6_address_on_creation: bool,
    #[serde(default)]
    pub enable_dns64: bool,
    #[serde(default = "ip_name")]
    pub hostname_type: String,
    /// Whether launched instances get DNS A / AAAA records of their
    /// resource name (`privateDnsNameOptionsOnLaunch`).
    #[serde(default)]
    pub resource_name_dns_a: bool,
    #[serde(default)]
    pub resource_name_dns_aaaa: bool,
    /// Private addresses held by ENIs (and managed interfaces) in the subnet.
    #[serde(default)]
    pub allocated: Vec<Ipv4Addr>,
    pub tags: Tags,
    /// Parts of the range set aside (CreateSubnetCidrReservation).
    #[serde(default)]
    pub cidr_reservations: Vec<CidrReservation>,
}

/// The hostname type a subnet has unless set otherwise.
pub fn ip_name() -> String {
    "ip-name".into()
}

/// An availability zone of the region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: String,
    pub id: String,
}

/// The region's zones: `REGIONa`, `REGIONb`, `REGIONc`, with AWS-style zone
/// IDs (`use1-az1`). Agents will later declare the zones they serve.
pub fn zones(region: &str) -> Vec<Zone> {
    // `us-east-1` → `use1`, `ap-southeast-2` → `apse2`: AWS's short form.
    let short: String = region
        .split('-')
        .enumerate()
        .map(|(i, part)| match (i, part) {
            (0, _) => part.to_owned(),
            (_, "east") => "e".into(),
            (_, "west") => "w".into(),
            (_, "north") => "n".into(),
            (_, "south") => "s".into(),
            (_, "central") => "c".into(),
            (_, "northeast") => "ne".into(),
            (_, "southeast") => "se".into(),
            (_, "northwest") => "nw".into(),
            (_, "southwest") => "sw".into(),
            _ if part.chars().all(|c| c.is_ascii_digit()) => part.to_owned(),
            _ => part.chars().take(1).collect(),
        })
        .collect();
    ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, letter)| Zone {
            name: format!("{region}{letter}"),
            id: format!("{short}-az{}", i + 1),
        })
        .collect()
}

/// One reservation as stored in its subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidrReservation {
    pub id: String,
    pub cidr: Ipv4Cidr,
    /// `prefix` or `explicit`.
    pub reservation_type: String,
    pub description: Option<String>,
    pub tags: Tags,
}
