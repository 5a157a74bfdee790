//! Desired state to router configuration: turns the control plane's compiled
//! [`EniState`] into the dataplane's [`EniConfig`]. Pure: no I/O, no clock.
//! The agent installs what this builds; the control plane builds the same
//! to explain a packet (`openvpc trace`), so both run one conversion.
//!
//! Subnets and security groups are interned, so the ENIs of one subnet share
//! one `Arc<SubnetConfig>` (and its route table and ACL) as long as the
//! control plane sends them identical; a changed subnet gets a fresh one.

use std::collections::HashMap;
use std::sync::Arc;

use crate::conntrack::Timeouts;
use crate::eni::{EniConfig, SubnetConfig};
use crate::maglev::MaglevError;
use crate::policy::{NaclEntry, NetworkAcl, SecurityGroup, SgRule};
use crate::route::{GatewayKind, Route, RouteTable, RouteTarget};
use openvpc_model::host::{
    ConntrackState, EniState, NetworkAclEntryState, RouteTargetState, SecurityGroupRuleState,
    SecurityGroupState, SubnetState, VpcDnsState,
};
use openvpc_packet::MacAddr;
use openvpc_packet::ethernet::ParseMacError;

/// Why an ENI's desired state could not become router configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error(
        "ENI {eni} has MAC address {mac:?} that does not parse: the control plane must send 02:xx:xx:xx:xx:xx"
    )]
    BadMac {
        eni: String,
        mac: String,
        #[source]
        source: ParseMacError,
    },
    #[error(
        "route {destination} of {route_table} targets ENI {target} with MAC {mac:?} that does not parse"
    )]
    BadRouteMac {
        route_table: String,
        destination: String,
        target: String,
        mac: String,
    },
    #[error(
        "route {destination} of {route_table} targets gateway {gateway} whose nodes cannot be placed: {source}"
    )]
    GatewayNodes {
        route_table: String,
        destination: String,
        gateway: String,
        // Boxed: the error travels inside every install result.
        #[source]
        source: Box<MaglevError>,
    },
    #[error("VPC {vpc}'s resolver cannot be configured: {source}")]
    Dns {
        vpc: String,
        #[source]
        source: openvpc_dns::ConfigError,
    },
}

/// The kind of gateway an ID names, from its prefix; `None` for a prefix
/// this router does not know.
pub fn gateway_kind(gateway_id: &str) -> Option<GatewayKind> {
    let (prefix, _) = gateway_id.split_once('-')?;
    Some(match prefix {
        "igw" => GatewayKind::Internet,
        "eigw" => GatewayKind::EgressOnlyInternet,
        "nat" => GatewayKind::Nat,
        "elb" => GatewayKind::LoadBalancer,
        "vgw" => GatewayKind::VpnGateway,
        "tgw" => GatewayKind::TransitGateway,
        "vpce" => GatewayKind::VpcEndpoint,
        _ => return None,
    })
}

/// The dataplane's timeouts for an ENI: the three AWS-settable ones from the
/// control plane, the rest at their defaults.
pub fn timeouts(c: &ConntrackState) -> Timeouts {
    Timeouts {
        tcp_established_secs: c.tcp_established,
        udp_stream_secs: c.udp_stream,
        udp_secs: c.udp,
        ..Timeouts::default()
    }
}

fn route_target(
    table: &str,
    destination: &str,
    t: &RouteTargetState,
) -> Result<RouteTarget, InstallError> {
    Ok(match t {
        RouteTargetState::Local => RouteTarget::Local,
        RouteTargetState::Gateway { gateway_id, nodes } if !nodes.is_empty() => {
            match gateway_kind(gateway_id) {
                // A NAT gateway's Maglev table is built here, once per
                // compiled route table, not per packet.
                Some(kind) => RouteTarget::gateway(kind, gateway_id.clone(), nodes.clone())
                    .map_err(|source| InstallError::GatewayNodes {
                        route_table: table.to_string(),
                        destination: destination.to_string(),
                        gateway: gateway_id.clone(),
                        source: Box::new(source),
                    })?,
                // A gateway kind newer than this build: dropping is the safe
                // reading, as for a gateway no node serves (the agent warns of
                // it when it installs the state).
                None => RouteTarget::Blackhole,
            }
        }
        // No node serves the gateway, or the ENI is not placed: dropped
        // until the control plane says otherwise, and named as unserved.
        RouteTargetState::Gateway { gateway_id, .. } => RouteTarget::Unserved {
            id: gateway_id.clone(),
        },
        RouteTargetState::Eni {
            eni_id, host: None, ..
        } => RouteTarget::Unserved { id: eni_id.clone() },
        RouteTargetState::Eni {
            eni_id,
            host: Some(host),
            mac,
        } => RouteTarget::Eni {
            id: eni_id.clone(),
            underlay: *host,
            mac: mac.parse().map_err(|_| InstallError::BadRouteMac {
                route_table: table.to_string(),
                destination: destination.to_string(),
                target: eni_id.clone(),
                mac: mac.clone(),
            })?,
        },
        RouteTargetState::Peering {
            peering_id,
            peer_vni,
        } => RouteTarget::Peering {
            id: peering_id.clone(),
            peer_vni: *peer_vni,
        },
        RouteTargetState::Blackhole => RouteTarget::Blackhole,
    })
}

fn nacl_entries(entries: &[NetworkAclEntryState]) -> Vec<NaclEntry> {
    entries
        .iter()
        .map(|e| NaclEntry {
            rule_number: e.rule_number,
            traffic: e.traffic,
            cidr: e.cidr,
            action: e.action,
        })
        .collect()
}

fn sg_rules(rules: &[SecurityGroupRuleState]) -> Vec<SgRule> {
    rules
        .iter()
        .map(|r| SgRule::new(r.traffic, r.peers.iter().copied()).with_id(r.rule_id.clone()))
        .collect()
}

/// Builds a subnet's router configuration.
pub fn subnet_config(s: &SubnetState) -> Result<SubnetConfig, InstallError> {
    let table = &s.route_table.route_table_id;
    let routes = s
        .route_table
        .routes
        .iter()
        .map(|r| {
            Ok(Route {
                destination: r.destination,
                target: route_target(table, &r.destination.to_string(), &r.target)?,
            })
        })
        .collect::<Result<Vec<_>, InstallError>>()?;
    Ok(SubnetConfig {
        id: s.subnet_id.clone(),
        cidr: s.cidr,
        ipv6_cidr: s.ipv6_cidr,
        network_acl: Arc::new(NetworkAcl::new(
            s.network_acl.network_acl_id.clone(),
            nacl_entries(&s.network_acl.ingress),
            nacl_entries(&s.network_acl.egress),
        )),
        route_table: Arc::new(RouteTable::new(table.clone(), routes)),
    })
}

/// Builds a security group's router configuration.
pub fn security_group(g: &SecurityGroupState) -> SecurityGroup {
    SecurityGroup {
        id: g.group_id.clone(),
        ingress: sg_rules(&g.ingress),
        egress: sg_rules(&g.egress),
    }
}

/// Converts desired state to router configuration, sharing equal subnets and
/// groups between ENIs.
#[derive(Debug, Default)]
pub struct Converter {
    subnets: HashMap<String, (SubnetState, Arc<SubnetConfig>)>,
    groups: HashMap<String, (SecurityGroupState, Arc<SecurityGroup>)>,
    /// VPC ID → its resolver's configuration.
    dns: HashMap<String, (VpcDnsState, Arc<openvpc_dns::VpcDns>)>,
}

/// A VPC's resolver configuration from its compiled state. A name that is
/// not a valid DNS name (only a damaged record can hold one) is left out;
/// a region that cannot name a domain is an error.
pub fn vpc_dns(d: &VpcDnsState) -> Result<openvpc_dns::VpcDns, openvpc_dns::ConfigError> {
    let mut cfg = openvpc_dns::VpcDns::new(&d.region)?;
    cfg.enable_dns_support = d.enable_dns_support;
    cfg.enable_dns_hostnames = d.enable_dns_hostnames;
    for c in &d.cidrs {
        cfg.add_range(c.network(), c.prefix_len());
    }
    for a in &d.addresses {
        cfg.set_address(a.private, a.public);
    }
    for n in &d.names {
        let _ = cfg.set_name(&n.name, n.addresses.clone());
    }
    Ok(cfg)
}

impl Converter {
    /// An empty converter: nothing interned yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The router configuration of one ENI.
    pub fn eni_config(&mut self, s: &EniState) -> Result<EniConfig, InstallError> {
        let mac: MacAddr = s.mac.parse().map_err(|source| InstallError::BadMac {
            eni: s.eni_id.clone(),
            mac: s.mac.clone(),
            source,
        })?;
        let subnet = match self.subnets.get(&s.subnet.subnet_id) {
            Some((state, cfg)) if *state == s.subnet => cfg.clone(),
            _ => {
                let cfg = Arc::new(subnet_config(&s.subnet)?);
                self.subnets
                    .insert(s.subnet.subnet_id.clone(), (s.subnet.clone(), cfg.clone()));
                cfg
            }
        };
        let security_groups = s
            .security_groups
            .iter()
            .map(|g| match self.groups.get(&g.group_id) {
                Some((state, cfg)) if state == g => cfg.clone(),
                _ => {
                    let cfg = Arc::new(security_group(g));
                    self.groups
                        .insert(g.group_id.clone(), (g.clone(), cfg.clone()));
                    cfg
                }
            })
            .collect();
        Ok(EniConfig {
            id: s.eni_id.clone(),
            mac,
            ipv4: s.ipv4.clone(),
            ipv6: s.ipv6.clone(),
            subnet,
            vni: s.vni,
            vpc_cidr: s.vpc_cidr,
            security_groups,
            source_dest_check: s.source_dest_check,
            timeouts: timeouts(&s.conntrack),
            domain_name: s.domain_name.clone(),
            public_ipv4: s
                .public_ipv4
                .iter()
                .map(|p| (p.private, p.public))
                .collect(),
            dns: s
                .dns
                .as_ref()
                .map(|d| self.vpc_dns(&s.vpc_id, d))
                .transpose()?,
            dns_servers: s.dns_servers.clone(),
            flow_logged: !s.flow_logs.is_empty(),
        })
    }

    /// The resolver configuration of a VPC, built once for all its ENIs
    /// while the control plane sends them identical.
    fn vpc_dns(
        &mut self,
        vpc_id: &str,
        d: &VpcDnsState,
    ) -> Result<Arc<openvpc_dns::VpcDns>, InstallError> {
        if let Some((state, cfg)) = self.dns.get(vpc_id)
            && state == d
        {
            return Ok(cfg.clone());
        }
        let cfg = Arc::new(vpc_dns(d).map_err(|source| InstallError::Dns {
            vpc: vpc_id.to_owned(),
            source,
        })?);
        self.dns.insert(vpc_id.to_owned(), (d.clone(), cfg.clone()));
        Ok(cfg)
    }

    /// Forgets subnets and groups no ENI in `live` uses any more, so the
    /// interning tables do not outgrow the host's ENIs.
    pub fn retain_used<'a>(&mut self, live: impl IntoIterator<Item = &'a EniState>) {
        let mut subnets = std::collections::HashSet::new();
        let mut groups = std::collections::HashSet::new();
        let mut vpcs = std::collections::HashSet::new();
        for s in live {
            subnets.insert(s.subnet.subnet_id.as_str());
            groups.extend(s.security_groups.iter().map(|g| g.group_id.as_str()));
            vpcs.insert(s.vpc_id.as_str());
        }
        self.subnets.retain(|id, _| subnets.contains(id.as_str()));
        self.groups.retain(|id, _| groups.contains(id.as_str()));
        self.dns.retain(|id, _| vpcs.contains(id.as_str()));
    }
}

/// Desired state for tests of the router and of the agent.
#[cfg(any(test, feature = "fixtures"))]
#[allow(clippy::unwrap_used)]
pub mod fixtures {
    use super::*;
    use core::net::Ipv4Addr;
    use openvpc_model::host::{NetworkAclState, RouteState, RouteTableState};
    use openvpc_model::rule::{RuleAction, TrafficMatch};

    /// An ENI in 10.0.1.0/24 of VPC 10.0.0.0/16 with a default route to an
    /// internet gateway and a security group that admits its own subnet.
    pub fn eni(id: &str, instance: &str, ip: Ipv4Addr, mac: &str) -> EniState {
        EniState {
            eni_id: id.into(),
            account_id: "111122223333".into(),
            instance_id: Some(instance.into()),
            device_index: 0,
            mac: mac.into(),
            ipv4: vec![ip],
            ipv6: vec![],
            vpc_id: "vpc-1".into(),
            vni: 77,
            vpc_cidr: "10.0.0.0/16".parse().unwrap(),
            subnet: SubnetState {
                subnet_id: "subnet-1".into(),
                cidr: "10.0.1.0/24".parse().unwrap(),
                ipv6_cidr: None,
                network_acl: NetworkAclState {
                    network_acl_id: "acl-1".into(),
                    ingress: vec![NetworkAclEntryState {
                        rule_number: 100,
                        traffic: TrafficMatch::ALL,
                        cidr: "0.0.0.0/0".parse().unwrap(),
                        action: RuleAction::Allow,
                    }],
                    egress: vec![],
                },
                route_table: RouteTableState {
                    route_table_id: "rtb-1".into(),
                    routes: vec![
                        RouteState {
                            destination: "10.0.0.0/16".parse().unwrap(),
                            target: RouteTargetState::Local,
                        },
                        RouteState {
                            destination: "0.0.0.0/0".parse().unwrap(),
                            target: RouteTargetState::Gateway {
                                gateway_id: "igw-1".into(),
                                nodes: vec!["192.0.2.9".parse().unwrap()],
                            },
                        },
                    ],
                },
            },
            security_groups: vec![SecurityGroupState {
                group_id: "sg-1".into(),
                ingress: vec![SecurityGroupRuleState {
                    rule_id: None,
                    traffic: TrafficMatch::ALL,
                    peers: vec!["10.0.1.0/24".parse().unwrap()],
                }],
                egress: vec![SecurityGroupRuleState {
                    rule_id: None,
                    traffic: TrafficMatch::ALL,
                    peers: vec!["0.0.0.0/0".parse().unwrap()],
                }],
            }],
            source_dest_check: true,
            conntrack: ConntrackState {
                tcp_established: 3600,
                udp_stream: 120,
                udp: 40,
            },
            hostname: None,
            domain_name: None,
            public_ipv4: vec![],
            availability_zone_id: String::new(),
            flow_logs: vec![],
            dns: None,
            dns_servers: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::eni;
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use openvpc_model::host::RouteState;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn converts_addresses_policy_routes_and_timeouts() {
        let mut c = Converter::new();
        let cfg = c
            .eni_config(&eni(
                "eni-a",
                "i-a",
                Ipv4Addr::new(10, 0, 1, 10),
                "02:00:00:00:00:0a",
            ))
            .unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.mac, MacAddr([2, 0, 0, 0, 0, 0x0a]));
        assert_eq!(cfg.vni, 77);
        assert_eq!(cfg.timeouts.tcp_established_secs, 3600);
        assert_eq!(cfg.timeouts.udp_stream_secs, 120);
        assert_eq!(cfg.timeouts.udp_secs, 40);
        assert_eq!(cfg.timeouts.other_secs, Timeouts::default().other_secs);
        assert_eq!(
            cfg.security_groups[0].ingress[0].peers,
            vec!["10.0.1.0/24".parse().unwrap()]
        );
        let rt = &cfg.subnet.route_table;
        assert_eq!(
            rt.lookup(ip("10.0.9.9")).map(|r| r.1.clone()),
            Some(RouteTarget::Local)
        );
        assert_eq!(
            rt.lookup(ip("8.8.8.8")).map(|r| r.1.clone()),
            Some(
                RouteTarget::gateway(GatewayKind::Internet, "igw-1", vec![ip("192.0.2.9")])
                    .unwrap()
            )
        );
        // The egress list is empty: only the implicit * deny.
        assert!(
            cfg.subnet
                .network_acl
                .entries(crate::policy::Way::Egress)
                .is_empty()
        );
        assert_eq!(
            cfg.subnet
                .network_acl
                .entries(crate::policy::Way::Ingress)
                .len(),
            1
        );
    }

    #[test]
    fn carries_the_regions_dhcp_domain() {
        let mut state = eni(
            "eni-a",
            "i-a",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:00:00:00:0a",
        );
        state.domain_name = Some("eu-west-1.compute.internal".into());
        let cfg = Converter::new().eni_config(&state).unwrap();
        assert_eq!(
            cfg.domain_name.as_deref(),
            Some("eu-west-1.compute.internal")
        );
    }

    // A target that no node serves, or an ENI that is not placed, drops as
    // unserved (not as spec 2.5's blackhole: the target exists).
    #[test]
    fn unserved_targets_drop_as_unserved() {
        let mut s = eni(
            "eni-a",
            "i-a",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:00:00:00:0a",
        );
        s.subnet.route_table.routes = vec![
            RouteState {
                destination: "0.0.0.0/0".parse().unwrap(),
                target: RouteTargetState::Gateway {
                    gateway_id: "nat-1".into(),
                    nodes: vec![],
                },
            },
            RouteState {
                destination: "172.16.0.0/12".parse().unwrap(),
                target: RouteTargetState::Eni {
                    eni_id: "eni-fw".into(),
                    host: None,
                    mac: "02:00:00:00:00:ff".into(),
                },
            },
            RouteState {
                destination: "172.16.5.0/24".parse().unwrap(),
                target: RouteTargetState::Eni {
                    eni_id: "eni-fw".into(),
                    host: Some(ip("192.0.2.7")),
                    mac: "02:00:00:00:00:ff".into(),
                },
            },
            RouteState {
                destination: "192.168.0.0/16".parse().unwrap(),
                target: RouteTargetState::Peering {
                    peering_id: "pcx-1".into(),
                    peer_vni: 99,
                },
            },
        ];
        let cfg = Converter::new().eni_config(&s).unwrap();
        let rt = &cfg.subnet.route_table;
        let at = |a: &str| rt.lookup(ip(a)).map(|r| r.1.clone());
        assert_eq!(
            at("8.8.8.8"),
            Some(RouteTarget::Unserved { id: "nat-1".into() })
        );
        assert_eq!(
            at("172.17.0.1"),
            Some(RouteTarget::Unserved {
                id: "eni-fw".into()
            })
        );
        assert_eq!(
            at("172.16.5.1"),
            Some(RouteTarget::Eni {
                id: "eni-fw".into(),
                underlay: ip("192.0.2.7"),
                mac: MacAddr([2, 0, 0, 0, 0, 0xff]),
            })
        );
        assert_eq!(
            at("192.168.1.1"),
            Some(RouteTarget::Peering {
                id: "pcx-1".into(),
                peer_vni: 99
            })
        );
    }

    #[test]
    fn bad_macs_are_typed_errors() {
        let s = eni(
            "eni-a",
            "i-a",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:zz:00:00:0a",
        );
        assert!(matches!(
            Converter::new().eni_config(&s),
            Err(InstallError::BadMac { ref eni, .. }) if eni == "eni-a"
        ));
        let mut s = eni(
            "eni-a",
            "i-a",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:00:00:00:0a",
        );
        s.subnet.route_table.routes.push(RouteState {
            destination: "172.16.0.0/12".parse().unwrap(),
            target: RouteTargetState::Eni {
                eni_id: "eni-x".into(),
                host: Some(ip("192.0.2.1")),
                mac: "nope".into(),
            },
        });
        assert!(matches!(
            Converter::new().eni_config(&s),
            Err(InstallError::BadRouteMac { .. })
        ));
    }

    #[test]
    fn equal_subnets_and_groups_are_shared() {
        let mut c = Converter::new();
        let a = c
            .eni_config(&eni(
                "eni-a",
                "i-a",
                Ipv4Addr::new(10, 0, 1, 10),
                "02:00:00:00:00:0a",
            ))
            .unwrap();
        let b = c
            .eni_config(&eni(
                "eni-b",
                "i-b",
                Ipv4Addr::new(10, 0, 1, 11),
                "02:00:00:00:00:0b",
            ))
            .unwrap();
        assert!(Arc::ptr_eq(&a.subnet, &b.subnet));
        assert!(Arc::ptr_eq(&a.security_groups[0], &b.security_groups[0]));
        // A changed subnet is rebuilt, not shared with the stale one.
        let mut changed = eni(
            "eni-c",
            "i-c",
            Ipv4Addr::new(10, 0, 1, 12),
            "02:00:00:00:00:0c",
        );
        changed.subnet.route_table.routes.pop();
        let c3 = c.eni_config(&changed).unwrap();
        assert!(!Arc::ptr_eq(&a.subnet, &c3.subnet));
        assert!(c3.subnet.route_table.lookup(ip("8.8.8.8")).is_none());
        c.retain_used([]);
        assert!(c.subnets.is_empty() && c.groups.is_empty());
    }

    #[test]
    fn gateway_kinds_by_prefix() {
        assert_eq!(gateway_kind("igw-0abc"), Some(GatewayKind::Internet));
        assert_eq!(
            gateway_kind("eigw-0abc"),
            Some(GatewayKind::EgressOnlyInternet)
        );
        assert_eq!(gateway_kind("vpce-1"), Some(GatewayKind::VpcEndpoint));
        assert_eq!(gateway_kind("lgw-1"), None);
        assert_eq!(gateway_kind("igw"), None);
    }
}
