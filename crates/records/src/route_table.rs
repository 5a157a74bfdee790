//! A route table as stored: the record under `rtb/{id}`, its routes (each a
//! destination and a target) and its associations.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format) and pure reads of it; it must not know the Query
//! protocol, XML or request parameters, which live in
//! `openvpc_control::api::actions::route_table`.

use std::net::Ipv6Addr;

use openvpc_model::Ipv4Cidr;
use serde::{Deserialize, Serialize};

use super::Tags;

/// `Origin` of the local routes a table is created with.
pub const ORIGIN_LOCAL: &str = "CreateRouteTable";
/// `Origin` of routes added with CreateRoute.
pub const ORIGIN_STATIC: &str = "CreateRoute";
/// `Origin` of routes learned from a VGW (spec 2.7).
pub const ORIGIN_PROPAGATED: &str = "EnableVgwRoutePropagation";

/// What kind of thing a route sends traffic to; each has its own member in
/// the API (spec 2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// `local`, `igw-`, `vgw-` or `vpce-` (all shown as `gatewayId`).
    Gateway,
    NatGateway,
    NetworkInterface,
    Instance,
    VpcPeeringConnection,
    EgressOnlyInternetGateway,
    TransitGateway,
    CarrierGateway,
    LocalGateway,
}

impl TargetKind {
    /// The store segment (ID prefix) of a target of this kind, or `None` for
    /// a gateway ID of no kind a route can name.
    pub fn segment(self, id: &str) -> Option<&'static str> {
        Some(match self {
            TargetKind::Gateway => ["igw", "vgw", "vpce"]
                .into_iter()
                .find(|p| id.strip_prefix(p).is_some_and(|r| r.starts_with('-')))?,
            TargetKind::NatGateway => "nat",
            TargetKind::NetworkInterface => "eni",
            TargetKind::Instance => "i",
            TargetKind::VpcPeeringConnection => "pcx",
            TargetKind::EgressOnlyInternetGateway => "eigw",
            TargetKind::TransitGateway => "tgw",
            // No resource kinds of ours yet; their IDs keep AWS's prefixes.
            TargetKind::CarrierGateway => "cagw",
            TargetKind::LocalGateway => "lgw",
        })
    }
}

/// Where a route sends traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub kind: TargetKind,
    pub id: String,
}

impl Target {
    /// The VPC itself: the local route's usual target.
    pub fn local() -> Self {
        Target {
            kind: TargetKind::Gateway,
            id: "local".into(),
        }
    }

    pub fn is_local(&self) -> bool {
        self.kind == TargetKind::Gateway && self.id == "local"
    }
}

/// A route's destination: one IPv4 block, one IPv6 block or a prefix list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    Ipv4(Ipv4Cidr),
    Ipv6(Ipv6Cidr),
    PrefixList(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Ipv4(c) => c.fmt(f),
            Destination::Ipv6(c) => c.fmt(f),
            Destination::PrefixList(p) => f.write_str(p),
        }
    }
}

impl Destination {
    /// spec 2.8: routes are counted per address family; prefix lists count
    /// with IPv4, where almost all of them live.
    pub fn is_ipv6(&self) -> bool {
        matches!(self, Destination::Ipv6(_))
    }

    /// Parses a VPC CIDR given as text (either family).
    pub fn parse_cidr(text: &str) -> Option<Self> {
        if text.contains(':') {
            text.parse().ok().map(Destination::Ipv6)
        } else {
            text.parse().ok().map(Destination::Ipv4)
        }
    }
}

/// A canonical IPv6 CIDR block (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv6Cidr {
    pub network: u128,
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    pub fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }

    /// True if `other` lies wholly inside this block.
    pub fn contains(&self, other: &Ipv6Cidr) -> bool {
        other.prefix_len >= self.prefix_len
            && other.network & Self::mask(self.prefix_len) == self.network
    }
}

impl std::str::FromStr for Ipv6Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or_else(|| s.to_owned())?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| s.to_owned())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(s.to_owned());
        }
        let prefix_len: u8 = len.parse().map_err(|_| s.to_owned())?;
        if prefix_len > 128 {
            return Err(s.to_owned());
        }
        Ok(Ipv6Cidr {
            network: addr.to_bits() & Self::mask(prefix_len),
            prefix_len,
        })
    }
}

impl std::fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            Ipv6Addr::from_bits(self.network),
            self.prefix_len
        )
    }
}

impl TryFrom<String> for Ipv6Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv6Cidr> for String {
    fn from(c: Ipv6Cidr) -> String {
        c.to_string()
    }
}

/// One route as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub destination: Destination,
    pub target: Target,
    /// `CreateRouteTable` (the local routes), `CreateRoute` or
    /// `EnableVgwRoutePropagation`.
    pub origin: String,
    /// spec 2.5: computed when the table is read, never stored.
    #[serde(skip)]
    pub blackhole: bool,
}

impl Route {
    /// spec 2.2: a local route stays one even while its target is replaced
    /// by an appliance; it cannot be deleted.
    pub fn is_local(&self) -> bool {
        self.origin == ORIGIN_LOCAL
    }

    pub fn state(&self) -> &'static str {
        if self.blackhole {
            "blackhole"
        } else {
            "active"
        }
    }
}

/// An association of a table with a subnet, a gateway (edge association),
/// or the VPC itself (the main association).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub id: String,
    pub main: bool,
    pub subnet_id: Option<String>,
    pub gateway_id: Option<String>,
}

/// A route table as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub id: String,
    pub vpc_id: String,
    pub owner_id: String,
    pub routes: Vec<Route>,
    pub associations: Vec<Association>,
    /// VGWs whose routes propagate into the table (spec 2.7).
    #[serde(default)]
    pub propagating_vgws: Vec<String>,
    pub tags: Tags,
}

impl RouteTable {
    /// True for the VPC's main table.
    pub fn is_main(&self) -> bool {
        self.associations.iter().any(|a| a.main)
    }
}

impl TargetKind {
    /// The route's member that carries the target's ID.
    pub fn element(self) -> &'static str {
        match self {
            TargetKind::Gateway => "gatewayId",
            TargetKind::NatGateway => "natGatewayId",
            TargetKind::NetworkInterface => "networkInterfaceId",
            TargetKind::Instance => "instanceId",
            TargetKind::VpcPeeringConnection => "vpcPeeringConnectionId",
            TargetKind::EgressOnlyInternetGateway => "egressOnlyInternetGatewayId",
            TargetKind::TransitGateway => "transitGatewayId",
            TargetKind::CarrierGateway => "carrierGatewayId",
            TargetKind::LocalGateway => "localGatewayId",
        }
    }

    /// The DescribeRouteTables filter on this kind of target.
    pub fn filter(self) -> &'static str {
        match self {
            TargetKind::Gateway => "route.gateway-id",
            TargetKind::NatGateway => "route.nat-gateway-id",
            TargetKind::NetworkInterface => "route.network-interface-id",
            TargetKind::Instance => "route.instance-id",
            TargetKind::VpcPeeringConnection => "route.vpc-peering-connection-id",
            TargetKind::EgressOnlyInternetGateway => "route.egress-only-internet-gateway-id",
            TargetKind::TransitGateway => "route.transit-gateway-id",
            TargetKind::CarrierGateway => "route.carrier-gateway-id",
            TargetKind::LocalGateway => "route.local-gateway-id",
        }
    }
}

impl Target {
    /// spec 2.2: what may take traffic for part of the VPC's own range: an
    /// ENI, a NAT gateway or a Gateway Load Balancer endpoint.
    pub fn is_middlebox(&self) -> bool {
        matches!(
            self.kind,
            TargetKind::NetworkInterface | TargetKind::NatGateway
        ) || (self.kind == TargetKind::Gateway && self.id.starts_with("vpce-"))
    }
}

impl RouteTable {
    pub fn route(&self, destination: &Destination) -> Option<usize> {
        self.routes
            .iter()
            .position(|r| &r.destination == destination)
    }

    pub fn gateway_ids(&self) -> Vec<String> {
        self.associations
            .iter()
            .filter_map(|a| a.gateway_id.clone())
            .collect()
    }

    /// The VPC's CIDR blocks, as the table's local routes name them.
    pub fn local_destinations(&self) -> impl Iterator<Item = &Destination> {
        self.routes
            .iter()
            .filter(|r| r.is_local())
            .map(|r| &r.destination)
    }
}
