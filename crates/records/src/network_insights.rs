//! A Reachability Analyzer path as stored: the record under `nip/{id}`, its
//! typed endpoints, protocol and the filters that scope an analysis.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::network_insights`.
//!
//! A path only names what to analyse: the analyses (`nia-`) that run it are
//! kept elsewhere, and nothing here decides reachability.

use std::net::Ipv4Addr;

use openvpc_model::rule::ip_protocol;
use serde::{Deserialize, Serialize};

use super::Tags;

/// The kinds of resource openvpc accepts as a path's source or destination
/// (AWS accepts more: transit gateways, VPC endpoints, peering connections,
/// VPN gateways, which openvpc refuses for now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointKind {
    Instance,
    NetworkInterface,
    InternetGateway,
}

impl EndpointKind {
    /// The resource type in the kind's ARN (`arn:aws:ec2:…:instance/i-…`).
    pub fn arn_type(self) -> &'static str {
        match self {
            EndpointKind::Instance => "instance",
            EndpointKind::NetworkInterface => "network-interface",
            EndpointKind::InternetGateway => "internet-gateway",
        }
    }
}

/// A path's source or destination: one resource of the path's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathEndpoint {
    pub kind: EndpointKind,
    /// The resource's ID (`i-…`, `eni-…`, `igw-…`), whether the request
    /// named it by ID or by ARN.
    pub id: String,
    pub arn: String,
}

/// The protocols a path may name (botocore's `Protocol` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathProtocol {
    Tcp,
    Udp,
}

impl PathProtocol {
    /// AWS's spelling, as the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            PathProtocol::Tcp => "tcp",
            PathProtocol::Udp => "udp",
        }
    }

    /// The IANA protocol number, as the dataplane matches it.
    pub fn number(self) -> u8 {
        match self {
            PathProtocol::Tcp => ip_protocol::TCP,
            PathProtocol::Udp => ip_protocol::UDP,
        }
    }
}

/// A port range of a path filter, each end as the request gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRange {
    pub from_port: Option<u16>,
    pub to_port: Option<u16>,
}

impl PortRange {
    /// The ports it covers, inclusive: a missing end is open (0 or 65535).
    pub fn bounds(self) -> (u16, u16) {
        (
            self.from_port.unwrap_or(0),
            self.to_port.unwrap_or(u16::MAX),
        )
    }
}

/// `FilterAtSource` or `FilterAtDestination`: what an analysis of the path
/// is scoped to at that end. Every member is optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFilter {
    pub source_address: Option<Ipv4Addr>,
    pub destination_address: Option<Ipv4Addr>,
    pub source_port_range: Option<PortRange>,
    pub destination_port_range: Option<PortRange>,
}

/// A Reachability Analyzer path as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInsightsPath {
    pub id: String,
    /// `arn:aws:ec2:{region}:{account}:network-insights-path/{id}`.
    pub arn: String,
    pub owner_id: String,
    /// ISO 8601, milliseconds, UTC, as EC2 writes times.
    pub created_date: String,
    pub source: PathEndpoint,
    /// `None` when the destination is an address only
    /// (`FilterAtSource.DestinationAddress`).
    pub destination: Option<PathEndpoint>,
    pub source_ip: Option<Ipv4Addr>,
    pub destination_ip: Option<Ipv4Addr>,
    pub protocol: PathProtocol,
    pub destination_port: Option<u16>,
    pub filter_at_source: Option<PathFilter>,
    pub filter_at_destination: Option<PathFilter>,
    pub tags: Tags,
}

#[cfg(test)]
mod tests {
    use super::*;

    // The stored spellings are the format: a rename must not pass silently.
    #[test]
    fn enums_keep_their_stored_spellings() {
        assert_eq!(
            serde_json::to_string(&EndpointKind::NetworkInterface).unwrap(),
            "\"network-interface\""
        );
        assert_eq!(
            serde_json::to_string(&PathProtocol::Udp).unwrap(),
            "\"udp\""
        );
        assert_eq!(PathProtocol::Tcp.number(), 6);
        assert_eq!(EndpointKind::InternetGateway.arn_type(), "internet-gateway");
    }

    #[test]
    fn open_port_range_ends_cover_every_port() {
        let r = PortRange {
            from_port: Some(80),
            to_port: None,
        };
        assert_eq!(r.bounds(), (80, 65535));
        let r = PortRange {
            from_port: None,
            to_port: None,
        };
        assert_eq!(r.bounds(), (0, 65535));
    }
}
