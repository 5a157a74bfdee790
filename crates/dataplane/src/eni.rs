//! What the control plane tells a router about each local ENI: addresses,
//! subnet, VPC, and the compiled policy (security groups, network ACL,
//! routes). Installed and replaced whole through `Router::upsert_eni`.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use openvpc_packet::MacAddr;

use crate::conntrack::Timeouts;
use crate::policy::{NetworkAcl, SecurityGroup};
use crate::route::RouteTable;

/// The most security groups an ENI may carry (spec 3.3: 5 by default, 16 by quota).
pub const MAX_SECURITY_GROUPS: usize = 16;

/// A subnet as the router needs it. Shared between the ENIs of the subnet.
#[derive(Debug, Clone)]
pub struct SubnetConfig {
    pub id: String,
    pub cidr: Ipv4Net,
    pub ipv6_cidr: Option<Ipv6Net>,
    pub network_acl: Arc<NetworkAcl>,
    pub route_table: Arc<RouteTable>,
}

impl SubnetConfig {
    /// True if `addr` is inside the subnet: traffic between such addresses is
    /// switched, not routed, and NACLs do not apply (spec 2.4, 4.1).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.cidr.contains(&a),
            IpAddr::V6(a) => self.ipv6_cidr.is_some_and(|c| c.contains(&a)),
        }
    }

    /// The subnet router: base + 1.
    pub fn router_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.cidr.network().to_bits().wrapping_add(1))
    }
}

/// One ENI on this host.
#[derive(Debug, Clone)]
pub struct EniConfig {
    pub id: String,
    pub mac: MacAddr,
    /// Primary private IPv4 first, then secondaries.
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub subnet: Arc<SubnetConfig>,
    /// The VPC's VNI.
    pub vni: u32,
    /// The VPC's primary CIDR: its base + 2 is the DNS server (spec 1.4).
    pub vpc_cidr: Ipv4Net,
    pub security_groups: Vec<Arc<SecurityGroup>>,
    pub source_dest_check: bool,
    pub timeouts: Timeouts,
    /// DHCP option 15, e.g. `eu-west-1.compute.internal`; `None` gives
    /// us-east-1's `ec2.internal`.
    pub domain_name: Option<String>,
    /// (private, public) for each private address that holds a public
    /// IPv4 (spec 5.1): only these may leave through an internet gateway.
    pub public_ipv4: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// What the host's resolver for the ENI's VPC answers from (spec 1.4);
    /// shared by the ENIs of one VPC. `None`: no resolver, queries to it
    /// are dropped.
    pub dns: Option<Arc<openvpc_dns::VpcDns>>,
    /// DHCP option 6; `None` gives the VPC's resolver, base + 2.
    pub dns_servers: Option<Vec<Ipv4Addr>>,
    /// Whether a flow log covers the ENI (spec 8.1): only then are its
    /// flows and rejections counted for records.
    pub flow_logged: bool,
}

/// Why an ENI configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EniError {
    #[error("ENI {0} has no IPv4 address: give it a primary private IPv4 address")]
    NoAddress(String),
    #[error("ENI {eni} carries {count} security groups; at most {MAX_SECURITY_GROUPS} are allowed")]
    TooManyGroups { eni: String, count: usize },
    #[error("ENI {eni}: address {addr} is outside its subnet {subnet}")]
    AddressOutsideSubnet {
        eni: String,
        addr: IpAddr,
        subnet: IpNet,
    },
    #[error("VNI {0} does not fit in 24 bits")]
    BadVni(u32),
    #[error("this host already holds 65535 ENIs, the most one router can track")]
    TooManyEnis,
}

impl EniConfig {
    /// Checks what the router relies on.
    pub fn validate(&self) -> Result<(), EniError> {
        if self.ipv4.is_empty() {
            return Err(EniError::NoAddress(self.id.clone()));
        }
        if self.security_groups.len() > MAX_SECURITY_GROUPS {
            return Err(EniError::TooManyGroups {
                eni: self.id.clone(),
                count: self.security_groups.len(),
            });
        }
        if self.vni > 0x00ff_ffff {
            return Err(EniError::BadVni(self.vni));
        }
        for addr in self.addresses() {
            if !self.subnet.contains(addr) {
                let subnet = match addr {
                    IpAddr::V4(_) => IpNet::V4(self.subnet.cidr),
                    IpAddr::V6(_) => self
                        .subnet
                        .ipv6_cidr
                        .map_or(IpNet::V4(self.subnet.cidr), IpNet::V6),
                };
                return Err(EniError::AddressOutsideSubnet {
                    eni: self.id.clone(),
                    addr,
                    subnet,
                });
            }
        }
        Ok(())
    }

    /// Every address the ENI owns.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.ipv6.iter().map(|a| IpAddr::V6(*a)))
    }

    pub fn owns(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => self.ipv4.contains(&a),
            IpAddr::V6(a) => self.ipv6.contains(&a),
        }
    }

    pub fn dns(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.vpc_cidr.network().to_bits().wrapping_add(2))
    }
}
