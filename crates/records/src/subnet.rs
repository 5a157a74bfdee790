//! A subnet as stored: the record under `subnet/{id}`, its IPv6
//! associations and CIDR reservations, and the region's zones it is placed in.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::subnet`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use openvpc_model::Ipv4Cidr;
use openvpc_model::lifecycle::{CidrBlockState, SubnetState};
use rand::RngExt;
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

/// Why a subnet cannot hand out an address. The messages are the ones
/// users see; the API maps each to AWS's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "Subnet '{subnet}' is IPv6-only: it has no IPv4 addresses. Ask for IPv6 addresses, or use a subnet with an IPv4 block."
    )]
    Ipv6Only { subnet: String },
    #[error(
        "Subnet '{subnet}' has no IPv6 CIDR block: associate one (AssociateSubnetCidrBlock) before asking for IPv6 addresses."
    )]
    NoIpv6Block { subnet: String },
    #[error("Address {ip} does not fall within the subnet's address range {block}")]
    OutOfRange { ip: IpAddr, block: String },
    #[error(
        "Address {ip} is reserved in subnet {subnet} (the first four and the last address are AWS's)"
    )]
    Reserved { ip: IpAddr, subnet: String },
    #[error("Address {ip} is in use.")]
    InUse { ip: IpAddr },
    #[error(
        "There are not enough free addresses in subnet '{subnet}' to satisfy the requested number of instances."
    )]
    Exhausted { subnet: String },
    #[error("There are not enough free IPv6 addresses in subnet '{subnet}'.")]
    Ipv6Exhausted { subnet: String },
}

impl Subnet {
    /// spec 1.2: the size less the five reserved addresses and those in use
    /// (none at all in an IPv6-only subnet, as AWS shows it).
    pub fn available_addresses(&self) -> u64 {
        self.cidr_block.map_or(0, |c| {
            c.usable_in_subnet()
                .saturating_sub(self.allocated.len() as u64)
        })
    }

    /// The IPv4 block, or the error an IPv4 request in an IPv6-only subnet gets.
    pub fn ipv4_block(&self) -> Result<Ipv4Cidr, AddressError> {
        self.cidr_block.ok_or_else(|| AddressError::Ipv6Only {
            subnet: self.id.clone(),
        })
    }

    /// Takes `wanted`, or the lowest free address when none is asked for.
    /// A reserved or taken address is refused with the code AWS uses.
    pub fn allocate(&mut self, wanted: Option<Ipv4Addr>) -> Result<Ipv4Addr, AddressError> {
        let block = self.ipv4_block()?;
        let address = match wanted {
            Some(ip) => {
                if !block.contains_addr(ip) {
                    return Err(AddressError::OutOfRange {
                        ip: ip.into(),
                        block: block.to_string(),
                    });
                }
                if block.is_reserved_in_subnet(ip) {
                    return Err(AddressError::Reserved {
                        ip: ip.into(),
                        subnet: self.id.clone(),
                    });
                }
                if self.allocated.contains(&ip) {
                    return Err(AddressError::InUse { ip: ip.into() });
                }
                ip
            }
            // Explicit reservations are never handed out automatically.
            None => (4..block.size().saturating_sub(1))
                .filter_map(|n| block.nth(n as u32))
                .find(|ip| {
                    !self.allocated.contains(ip)
                        && !self
                            .cidr_reservations
                            .iter()
                            .any(|r| r.reservation_type == "explicit" && r.cidr.contains_addr(*ip))
                })
                .ok_or_else(|| AddressError::Exhausted {
                    subnet: self.id.clone(),
                })?,
        };
        self.allocated.push(address);
        Ok(address)
    }

    /// Returns an address to the subnet.
    pub fn release(&mut self, address: Ipv4Addr) {
        self.allocated.retain(|a| *a != address);
    }

    /// The subnet's associated IPv6 block, if it has one.
    pub fn ipv6_block(&self) -> Option<Ipv6Net> {
        self.ipv6_cidr_associations
            .iter()
            .find(|a| a.state == CidrBlockState::Associated)
            .map(|a| a.ipv6_cidr_block)
    }

    /// Whether ENIs hold any address of the subnet.
    pub fn in_use(&self) -> bool {
        !self.allocated.is_empty() || !self.ipv6_allocated.is_empty()
    }

    /// Takes the IPv6 address `wanted`, or a random free one of the block
    /// (AWS hands out IPv6 addresses at random, not in order). spec 1.2: the
    /// first four and the last address of the block are reserved here too.
    pub fn allocate_ipv6(&mut self, wanted: Option<Ipv6Addr>) -> Result<Ipv6Addr, AddressError> {
        let block = self.ipv6_block().ok_or_else(|| AddressError::NoIpv6Block {
            subnet: self.id.clone(),
        })?;
        let base = u128::from(block.network());
        let last = u128::from(block.broadcast());
        let reserved = |ip: Ipv6Addr| {
            let n = u128::from(ip);
            n < base.saturating_add(4) || n == last
        };
        let address = match wanted {
            Some(ip) => {
                if !block.contains(&ip) {
                    return Err(AddressError::OutOfRange {
                        ip: ip.into(),
                        block: block.to_string(),
                    });
                }
                if reserved(ip) {
                    return Err(AddressError::Reserved {
                        ip: ip.into(),
                        subnet: self.id.clone(),
                    });
                }
                if self.ipv6_allocated.contains(&ip) {
                    return Err(AddressError::InUse { ip: ip.into() });
                }
                ip
            }
            None => {
                // A /64 holds 2^64 addresses, so a random pick is all but
                // always free; the bound only keeps a pathological book from
                // looping for ever.
                let host_bits = 128 - u32::from(block.prefix_len());
                let mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
                let mut rng = rand::rng();
                (0..1000)
                    .map(|_| Ipv6Addr::from(base | (rng.random::<u128>() & mask)))
                    .find(|ip| !reserved(*ip) && !self.ipv6_allocated.contains(ip))
                    .ok_or_else(|| AddressError::Ipv6Exhausted {
                        subnet: self.id.clone(),
                    })?
            }
        };
        self.ipv6_allocated.push(address);
        Ok(address)
    }

    /// Returns an IPv6 address to the subnet.
    pub fn release_ipv6(&mut self, address: Ipv6Addr) {
        self.ipv6_allocated.retain(|a| *a != address);
    }
}
