//! What a security-group or network-ACL rule matches besides addresses: an IP
//! protocol and, for TCP/UDP, a port range or, for ICMP, a type and code
//! (spec 3.1, 4.1). Shared by the API, which parses it, and the dataplane,
//! which evaluates it.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// IANA numbers of the protocols whose rules carry ports or ICMP fields.
pub mod ip_protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// A rule's protocol: all (`-1`) or one IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IpProtocol {
    All,
    Number(u8),
}

/// The protocol was not `-1`, a known name, or a number from 0 to 255.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid value '{0}' for IP protocol. Unknown protocol: use tcp, udp, icmp, icmpv6, -1 (all) or a number from 0 to 255"
)]
pub struct ProtocolError(pub String);

impl FromStr for IpProtocol {
    type Err = ProtocolError;
    /// Parses the API forms: `-1`/`all`, `tcp`, `udp`, `icmp`, `icmpv6`, or a number.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "-1" | "all" => IpProtocol::All,
            "tcp" => IpProtocol::Number(ip_protocol::TCP),
            "udp" => IpProtocol::Number(ip_protocol::UDP),
            "icmp" => IpProtocol::Number(ip_protocol::ICMP),
            "icmpv6" => IpProtocol::Number(ip_protocol::ICMPV6),
            n => IpProtocol::Number(n.parse().map_err(|_| ProtocolError(s.into()))?),
        })
    }
}

impl fmt::Display for IpProtocol {
    /// The form DescribeSecurityGroups returns: names for tcp/udp/icmp/icmpv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpProtocol::All => f.write_str("-1"),
            IpProtocol::Number(ip_protocol::TCP) => f.write_str("tcp"),
            IpProtocol::Number(ip_protocol::UDP) => f.write_str("udp"),
            IpProtocol::Number(ip_protocol::ICMP) => f.write_str("icmp"),
            IpProtocol::Number(ip_protocol::ICMPV6) => f.write_str("icmpv6"),
            IpProtocol::Number(n) => write!(f, "{n}"),
        }
    }
}

/// What a rule matches beyond the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum L4Match {
    /// All ports, or a protocol without ports.
    Any,
    /// TCP/UDP destination ports, inclusive.
    Ports { from: u16, to: u16 },
    /// ICMP type and code; `None` is AWS's `-1` wildcard.
    Icmp {
        icmp_type: Option<u8>,
        code: Option<u8>,
    },
}

/// The non-address part of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TrafficMatch {
    pub protocol: IpProtocol,
    pub l4: L4Match,
}

/// Why a rule's port range or ICMP type/code was refused (spec 3.1, 4.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortsError {
    #[error("Invalid value for portRange. Must specify both from and to ports with TCP/UDP.")]
    Missing,
    #[error(
        "Invalid value for portRange ({from} to {to}). Ports are 0 to 65535 with FromPort no greater than ToPort; ICMP types and codes are 0 to 255, or -1 for all."
    )]
    Range { from: String, to: String },
}

/// Just the fields of a packet that rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketFields {
    pub protocol: u8,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl TrafficMatch {
    /// Everything: protocol `-1`.
    pub const ALL: TrafficMatch = TrafficMatch {
        protocol: IpProtocol::All,
        l4: L4Match::Any,
    };

    pub fn tcp(from: u16, to: u16) -> Self {
        TrafficMatch {
            protocol: IpProtocol::Number(ip_protocol::TCP),
            l4: L4Match::Ports { from, to },
        }
    }

    pub fn udp(from: u16, to: u16) -> Self {
        TrafficMatch {
            protocol: IpProtocol::Number(ip_protocol::UDP),
            l4: L4Match::Ports { from, to },
        }
    }

    /// The match an API request describes, shared by security-group rules
    /// (`FromPort`/`ToPort`) and network ACL entries (`PortRange`,
    /// `IcmpTypeCode`): TCP/UDP need a port range within 0–65535; ICMP and
    /// ICMPv6 carry a type and a code, each -1 (or absent) for any; other
    /// protocols have no ports, so whatever was sent for them is ignored.
    pub fn from_api(
        protocol: IpProtocol,
        from: Option<i32>,
        to: Option<i32>,
    ) -> Result<Self, PortsError> {
        let bad_range = || PortsError::Range {
            from: from.map_or("none".into(), |p| p.to_string()),
            to: to.map_or("none".into(), |p| p.to_string()),
        };
        let l4 = match protocol {
            IpProtocol::Number(ip_protocol::TCP | ip_protocol::UDP) => {
                let (Some(from), Some(to)) = (from, to) else {
                    return Err(PortsError::Missing);
                };
                let (Ok(from), Ok(to)) = (u16::try_from(from), u16::try_from(to)) else {
                    return Err(bad_range());
                };
                if from > to {
                    return Err(bad_range());
                }
                L4Match::Ports { from, to }
            }
            IpProtocol::Number(ip_protocol::ICMP | ip_protocol::ICMPV6) => {
                let field = |v: Option<i32>| match v.unwrap_or(-1) {
                    -1 => Ok(None),
                    n => u8::try_from(n).map(Some).map_err(|_| bad_range()),
                };
                let icmp_type = field(from)?;
                let code = field(to)?;
                // A code only means something within a type.
                if icmp_type.is_none() && code.is_some() {
                    return Err(bad_range());
                }
                L4Match::Icmp { icmp_type, code }
            }
            _ => L4Match::Any,
        };
        Ok(TrafficMatch { protocol, l4 })
    }

    /// True if a packet with these fields matches.
    ///
    /// spec 3.1: `-1` or a protocol other than TCP, UDP, ICMP and ICMPv6
    /// means all ports, whatever the rule's port fields say.
    #[inline]
    pub fn matches(&self, p: &PacketFields) -> bool {
        let proto = match self.protocol {
            IpProtocol::All => return true,
            IpProtocol::Number(n) => n,
        };
        if proto != p.protocol {
            return false;
        }
        match (proto, self.l4) {
            (ip_protocol::TCP | ip_protocol::UDP, L4Match::Ports { from, to }) => {
                (from..=to).contains(&p.dst_port)
            }
            (ip_protocol::ICMP | ip_protocol::ICMPV6, L4Match::Icmp { icmp_type, code }) => {
                icmp_type.is_none_or(|t| t == p.icmp_type) && code.is_none_or(|c| c == p.icmp_code)
            }
            _ => true,
        }
    }

    /// True if the rule covers every port of its protocol (or all protocols):
    /// one half of spec 3.2's test for untracked flows.
    pub fn covers_all_ports(&self) -> bool {
        match (self.protocol, self.l4) {
            (IpProtocol::All, _) => true,
            (_, L4Match::Any) => true,
            (_, L4Match::Ports { from, to }) => from == 0 && to == u16::MAX,
            (_, L4Match::Icmp { icmp_type, code }) => icmp_type.is_none() && code.is_none(),
        }
    }
}

/// A network ACL rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleAction {
    Allow,
    Deny,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(protocol: u8, dst_port: u16) -> PacketFields {
        PacketFields {
            protocol,
            dst_port,
            ..PacketFields::default()
        }
    }

    #[test]
    fn parses_api_protocols() {
        assert_eq!("-1".parse::<IpProtocol>().unwrap(), IpProtocol::All);
        assert_eq!("TCP".parse::<IpProtocol>().unwrap(), IpProtocol::Number(6));
        assert_eq!("50".parse::<IpProtocol>().unwrap(), IpProtocol::Number(50));
        assert!("256".parse::<IpProtocol>().is_err());
        assert!("tcpp".parse::<IpProtocol>().is_err());
        assert_eq!(IpProtocol::Number(17).to_string(), "udp");
    }

    #[test]
    fn port_ranges_are_inclusive() {
        let m = TrafficMatch::tcp(1024, 65535);
        assert!(m.matches(&fields(6, 1024)));
        assert!(m.matches(&fields(6, 65535)));
        assert!(!m.matches(&fields(6, 1023)));
        assert!(!m.matches(&fields(17, 2000)));
    }

    // spec 3.1: a protocol other than 6, 17, 1, 58 means all ports.
    #[test]
    fn other_protocols_ignore_ports() {
        let m = TrafficMatch {
            protocol: IpProtocol::Number(47),
            l4: L4Match::Ports { from: 1, to: 1 },
        };
        assert!(m.matches(&fields(47, 9999)));
        assert!(TrafficMatch::ALL.matches(&fields(132, 1)));
    }

    // spec 3.1, 4.1: tcp/udp need an ordered port range; other protocols ignore ports.
    #[test]
    fn from_api_validates_ports() {
        let tcp = IpProtocol::Number(ip_protocol::TCP);
        assert_eq!(
            TrafficMatch::from_api(tcp, Some(22), Some(22)).unwrap(),
            TrafficMatch::tcp(22, 22)
        );
        assert_eq!(
            TrafficMatch::from_api(tcp, None, None),
            Err(PortsError::Missing)
        );
        assert!(TrafficMatch::from_api(tcp, Some(23), Some(22)).is_err());
        assert!(TrafficMatch::from_api(tcp, Some(0), Some(65536)).is_err());
        assert_eq!(
            TrafficMatch::from_api(IpProtocol::All, Some(22), Some(22)).unwrap(),
            TrafficMatch::ALL
        );
        let icmp = IpProtocol::Number(ip_protocol::ICMP);
        assert!(TrafficMatch::from_api(icmp, Some(-1), Some(4)).is_err());
        assert_eq!(
            TrafficMatch::from_api(icmp, None, None).unwrap().l4,
            L4Match::Icmp {
                icmp_type: None,
                code: None
            }
        );
    }

    // spec 3.1: for ICMP, FromPort/ToPort are type and code with -1 wildcards.
    #[test]
    fn icmp_type_and_code() {
        let frag_needed = TrafficMatch {
            protocol: IpProtocol::Number(1),
            l4: L4Match::Icmp {
                icmp_type: Some(3),
                code: Some(4),
            },
        };
        let p = PacketFields {
            protocol: 1,
            icmp_type: 3,
            icmp_code: 4,
            ..PacketFields::default()
        };
        assert!(frag_needed.matches(&p));
        assert!(!frag_needed.matches(&PacketFields { icmp_code: 1, ..p }));
        let any_icmp = TrafficMatch {
            protocol: IpProtocol::Number(1),
            l4: L4Match::Icmp {
                icmp_type: None,
                code: None,
            },
        };
        assert!(any_icmp.matches(&PacketFields { icmp_type: 8, ..p }));
        assert!(any_icmp.covers_all_ports() && !frag_needed.covers_all_ports());
    }
}
