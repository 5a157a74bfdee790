//! The compiler: one ENI record plus the records it names (VPC, subnet,
//! network ACL, route table, security groups and whatever their rules and
//! routes point at) into the [`EniState`] its host runs, with every group
//! reference, prefix list and route target resolved.
//!
//! It reads from a [`Mirror`], the fleet index's copy of the records it
//! needs, and reports every record and association it looked at as a
//! [`Dep`], so the index knows which ENIs a later change touches. It never
//! reads the store itself and never writes anything.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use openvpc_model::cidr::Ipv4Cidr;
use openvpc_model::flow_log::{
    EniContext, EniLog, FlowLogSpec, LoggedEni, PathRoute, TrafficType, traffic_path,
};
use openvpc_model::host::{
    ConntrackState, DnsAddress, DnsName, EniState, HostRecord, NetworkAclEntryState,
    NetworkAclState, PublicIpv4, RouteState, RouteTableState, RouteTargetState,
    SecurityGroupRuleState, SecurityGroupState, SubnetState, VpcDnsState,
};
use openvpc_model::hyperplane::NatRoute;
use openvpc_model::lifecycle::{CidrBlockState, InstanceState};
use openvpc_model::node::NodeRecord;

use super::nodes::Role;
use crate::records::dhcp_options::DhcpOptions;
use crate::records::elbv2::{Listener as ElbListener, LoadBalancer, TargetGroup};
use crate::records::flow_log::FlowLog;
use crate::records::instance::Instance;
use crate::records::nat_gateway::NatGateway;
use crate::records::network_acl::{EntryCidr, NetworkAcl};
use crate::records::network_interface::{
    NetworkInterface, TCP_ESTABLISHED_DEFAULT, UDP_DEFAULT, UDP_STREAM_DEFAULT,
};
use crate::records::prefix_list::{PrefixList, aws_lists};
use crate::records::region::RegionSettings;
use crate::records::route_table::{Destination, RouteTable, Target, TargetKind};
use crate::records::route_target::{Liveness, TargetRecord};
use crate::records::security_group::{self, SecurityGroup};
use crate::records::subnet::Subnet;
use crate::records::vpc::Vpc;
use crate::records::vpc_peering::VpcPeering;
use crate::records::vpn_connection::{VpnConnection, VpnTelemetry};
use openvpc_model::edge::{VgwRoute, VpnTunnel};

/// A record's store key, `r/{account}/{region}/{segment}/{id}` (or
/// `hosts/{region}/{id}`): how the index names records.
pub type Key = String;

/// The network ACL entry number of the implicit final `*` rule, which the
/// host applies without being told.
const STAR_RULE: u16 = 32767;

/// Something a compiled ENI depends on: when it changes, the ENI is
/// compiled again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// A record, by store key (present or not).
    Record(Key),
    /// Which network ACL is explicitly associated with this subnet.
    AclOf(Key),
    /// Which network ACL is this VPC's default.
    DefaultAcl(Key),
    /// Which route table is explicitly associated with this subnet.
    TableOf(Key),
    /// Which route table is this VPC's main one.
    MainTable(Key),
    /// The addresses of the ENIs carrying this security group.
    Members(Key),
    /// Which ENIs are attached to this instance.
    InstanceEnis(Key),
    /// Which VPC record has this ID (peerings name VPCs of other accounts).
    VpcId(String),
    /// The live nodes of a role in this region (edges for internet
    /// gateways, hyperplane nodes for NAT gateways and load balancers).
    Nodes(Role, String),
    /// Which network load balancers of this VPC (by VPC ID) are served,
    /// and their fronts' addresses: every host of the VPC routes to them.
    LoadBalancers(String),
    /// Which flow logs cover this resource (a VPC, subnet or ENI, by ID).
    FlowLogsOf(String),
    /// The private addresses of this VPC's network interfaces (by VPC ID)
    /// and their public ones: what its resolver names (spec 1.4).
    VpcAddresses(String),
}

/// The records the compiler reads, as the fleet index mirrors them from the
/// store, with the associations resolved into indices.
#[derive(Debug, Default)]
pub struct Mirror {
    pub vpcs: HashMap<Key, Vpc>,
    pub vpc_by_id: HashMap<String, Key>,
    pub subnets: HashMap<Key, Subnet>,
    pub acls: HashMap<Key, NetworkAcl>,
    /// Subnet key → the ACL explicitly associated with it.
    pub acl_of_subnet: HashMap<Key, Key>,
    /// VPC key → its default ACL.
    pub default_acl: HashMap<Key, Key>,
    pub tables: HashMap<Key, RouteTable>,
    /// Subnet key → the route table explicitly associated with it.
    pub table_of_subnet: HashMap<Key, Key>,
    /// VPC key → its main route table.
    pub main_table: HashMap<Key, Key>,
    pub groups: HashMap<Key, SecurityGroup>,
    /// Security group key → the ENIs carrying it.
    pub members: HashMap<Key, BTreeSet<Key>>,
    pub lists: HashMap<Key, PrefixList>,
    pub peerings: HashMap<Key, VpcPeering>,
    pub enis: HashMap<Key, NetworkInterface>,
    pub instances: HashMap<Key, Instance>,
    /// Instance key → the ENIs attached to it.
    pub instance_enis: HashMap<Key, BTreeSet<Key>>,
    /// Route targets known only by liveness and the VPC they belong to (an
    /// internet gateway's: the one it is attached to): gateways of every
    /// kind. An unreadable record is absent (a blackhole).
    pub gateways: HashMap<Key, TargetRecord>,
    pub hosts: HashMap<Key, HostRecord>,
    /// Live edge nodes, by key (`edges/{region}/{id}`).
    pub edges: HashMap<Key, NodeRecord>,
    /// Live hyperplane nodes, by key (`hyperplane/{region}/{id}`).
    pub hyperplane: HashMap<Key, NodeRecord>,
    /// Each NAT gateway's shard of hyperplane node IDs, by key
    /// (`shards/{region}/{gateway_id}`).
    pub shards: HashMap<Key, Vec<String>>,
    /// NAT gateways, whole, by key: their nodes translate for them.
    pub nats: HashMap<Key, NatGateway>,
    /// Each region's settings, by region name.
    pub settings: HashMap<String, RegionSettings>,
    /// Network load balancers, whole, by key.
    pub lbs: HashMap<Key, LoadBalancer>,
    /// VPC ID → the keys of the load balancers in it.
    pub lbs_of_vpc: HashMap<String, BTreeSet<Key>>,
    /// ELBv2 target groups, whole, by key.
    pub target_groups: HashMap<Key, TargetGroup>,
    /// ELBv2 listeners, whole, by key.
    pub elb_listeners: HashMap<Key, ElbListener>,
    /// Flow logs, whole, by key.
    pub flow_logs: HashMap<Key, FlowLog>,
    /// A flow log's key by its ID.
    pub flow_log_by_id: HashMap<String, Key>,
    /// Resource ID (VPC, subnet or ENI) → the keys of the flow logs on it.
    pub flow_logs_of: HashMap<String, BTreeSet<Key>>,
    /// DHCP options sets, whole, by key.
    pub dhcp_options: HashMap<Key, DhcpOptions>,
    /// VPC ID → the keys of its network interfaces.
    pub enis_of_vpc: HashMap<String, BTreeSet<Key>>,
    /// Site-to-Site VPN connections, whole, by key.
    pub vpns: HashMap<Key, VpnConnection>,
    /// What the edges last said of each connection's tunnels, by the
    /// connection's key.
    pub vpn_telemetry: HashMap<Key, VpnTelemetry>,
}

impl Mirror {
    /// Per place of `shard_key`'s shard, the underlay address of the node
    /// that serves it: its own while it lives, else its buddy's (the next
    /// live place), so a dead node's flows go where their state is and no
    /// other flow moves. Empty while no node of the shard lives.
    pub fn shard_nodes(&self, region: &str, shard_key: &str) -> Vec<IpAddr> {
        let places: Vec<Option<IpAddr>> = self
            .shards
            .get(shard_key)
            .into_iter()
            .flatten()
            .map(|id| {
                self.hyperplane
                    .get(&super::nodes::node_key(Role::Hyperplane, region, id))
                    .map(|n| n.underlay_ip)
            })
            .collect();
        openvpc_hyperplane::shard::serving_places(&places)
            .into_iter()
            .flatten()
            .collect()
    }

    /// `region`'s live edge nodes, sorted by ID.
    pub fn edge_records(&self, region: &str) -> Vec<NodeRecord> {
        let mut edges: Vec<NodeRecord> = self
            .edges
            .values()
            .filter(|e| e.region == region)
            .cloned()
            .collect();
        edges.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        edges
    }

    /// The VPC a VPN gateway of `scope` is attached to (VNI and IPv4
    /// CIDRs), while it is alive and attached.
    pub fn vgw_vpc(&self, scope: &str, vgw_id: &str) -> Option<(String, u32, Vec<Ipv4Net>)> {
        let g = self.gateways.get(&rkey(scope, "vgw", vgw_id))?;
        if g.liveness != Liveness::Alive {
            return None;
        }
        let vpc_id = g.vpc_id.as_ref()?;
        let vpc = self.vpcs.get(self.vpc_by_id.get(vpc_id)?)?;
        Some((vpc_id.clone(), vpc.vni, vpc_cidrs(vpc)))
    }

    /// The live connections of a VPN gateway of `scope`, each with its
    /// tunnels' views (`super::vpn::tunnel_views`).
    pub fn vgw_connections(
        &self,
        scope: &str,
        vgw_id: &str,
        edges: &[NodeRecord],
    ) -> Vec<(&VpnConnection, Vec<super::vpn::TunnelView>)> {
        let mut out: Vec<(&VpnConnection, Vec<super::vpn::TunnelView>)> = self
            .vpns
            .iter()
            .filter(|(k, v)| {
                self::scope(k) == scope
                    && v.is_live()
                    && v.vpn_gateway_id.as_deref() == Some(vgw_id)
            })
            .map(|(k, v)| {
                let views = super::vpn::tunnel_views(v, self.vpn_telemetry.get(k), edges);
                (v, views)
            })
            .collect();
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out
    }

    /// Every VPN tunnel of `region`, with the edge that serves it.
    pub fn vpn_tunnels(&self, region: &str) -> Vec<VpnTunnel> {
        let edges = self.edge_records(region);
        let mut keys: Vec<&Key> = self
            .vpns
            .iter()
            .filter(|(k, v)| region_of(k) == region && v.is_live())
            .map(|(k, _)| k)
            .collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| self.vpns.get(k).map(|v| (k, v)))
            .flat_map(|(k, v)| {
                let vpc = v
                    .vpn_gateway_id
                    .as_deref()
                    .and_then(|g| self.vgw_vpc(scope(k), g))
                    .map(|(_, vni, cidrs)| (vni, cidrs));
                super::vpn::edge_tunnels(v, &edges, vpc)
            })
            .collect()
    }

    /// Every attached VPN gateway's chosen routes in `region`.
    pub fn vgw_routes(&self, region: &str) -> Vec<VgwRoute> {
        let edges = self.edge_records(region);
        let mut gateways: Vec<(&str, &str)> = self
            .vpns
            .iter()
            .filter(|(k, v)| region_of(k) == region && v.is_live())
            .filter_map(|(k, v)| Some((scope(k), v.vpn_gateway_id.as_deref()?)))
            .collect();
        gateways.sort_unstable();
        gateways.dedup();
        let mut routes = Vec::new();
        for (scope, vgw) in gateways {
            let Some((_, vni, _)) = self.vgw_vpc(scope, vgw) else {
                continue;
            };
            let connections = self.vgw_connections(scope, vgw, &edges);
            routes.extend(
                super::vpn::vgw_paths(&connections)
                    .into_iter()
                    .map(|p| VgwRoute {
                        vpn_gateway_id: vgw.to_owned(),
                        vni,
                        prefix: p.prefix,
                        outside_ip: p.outside_ip,
                        edge_underlay: p.edge_underlay,
                    }),
            );
        }
        routes
    }

    /// The underlay addresses of `region`'s live edge nodes, sorted, so
    /// every host spreads flows over them in the same order.
    pub fn edge_nodes(&self, region: &str) -> Vec<IpAddr> {
        let mut nodes: Vec<IpAddr> = self
            .edges
            .values()
            .filter(|e| e.region == region)
            .map(|e| e.underlay_ip)
            .collect();
        nodes.sort();
        nodes.dedup();
        nodes
    }
}

/// Why an ENI could not be compiled: a record it names is missing or
/// unreadable. The ENI is left off its host until the record appears.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("ENI {eni} names {what} {id}, which does not exist")]
    Missing {
        eni: String,
        what: &'static str,
        id: String,
    },
    #[error("ENI {eni}: {what} {value:?} is not a valid CIDR")]
    BadCidr {
        eni: String,
        what: &'static str,
        value: String,
    },
}

/// A compiled ENI and where it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// The store key of its host (`hosts/{region}/{host_id}`).
    pub host: Key,
    pub state: EniState,
}

/// `r/{account}/{region}` of a resource key.
pub fn scope(key: &str) -> &str {
    let mut slashes = key.match_indices('/').map(|(i, _)| i);
    match slashes.nth(2) {
        Some(end) => &key[..end],
        None => key,
    }
}

/// The region of a scope or resource key.
pub fn region_of(key: &str) -> &str {
    key.split('/').nth(2).unwrap_or("")
}

/// The account of a resource key (`r/{account}/{region}/…`).
pub fn account_of(key: &str) -> &str {
    key.split('/').nth(1).unwrap_or("")
}

/// The ID at the end of a key.
pub fn id_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The key of a resource in `scope`.
pub fn rkey(scope: &str, segment: &str, id: &str) -> Key {
    format!("{scope}/{segment}/{id}")
}

/// The key of the host an ENI of `region` names.
pub fn host_key(region: &str, host_id: &str) -> Key {
    super::registry::host_key(region, host_id)
}

/// DHCP option 15 as EC2 hands it out.
pub fn domain_name(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".into()
    } else {
        format!("{region}.compute.internal")
    }
}

pub(crate) fn v4net(c: Ipv4Cidr) -> Ipv4Net {
    // An Ipv4Cidr's prefix length is at most 32, so this cannot fail.
    Ipv4Net::new(c.network(), c.prefix_len()).unwrap_or_default()
}

/// Whether the ENI runs on a host now: attached to an instance that is not
/// terminated, and placed. Its host key and instance when it does.
pub fn live_on<'m>(
    m: &'m Mirror,
    eni_key: &str,
    eni: &NetworkInterface,
    deps: &mut Vec<Dep>,
) -> Option<(Key, &'m Instance)> {
    let attachment = eni.attachment.as_ref()?;
    let instance_key = rkey(scope(eni_key), "i", &attachment.instance_id);
    deps.push(Dep::Record(instance_key.clone()));
    let instance = m.instances.get(&instance_key)?;
    if instance.state == InstanceState::Terminated {
        return None;
    }
    let host = eni.host_id.as_deref()?;
    Some((host_key(region_of(eni_key), host), instance))
}

/// Compiles the ENI at `eni_key`; `Ok(None)` when it runs on no host.
/// Everything consulted is pushed onto `deps`, also on failure.
pub fn compile(
    m: &Mirror,
    eni_key: &str,
    deps: &mut Vec<Dep>,
) -> Result<Option<Compiled>, CompileError> {
    deps.push(Dep::Record(eni_key.to_owned()));
    let Some(eni) = m.enis.get(eni_key) else {
        return Ok(None);
    };
    let Some((host, _instance)) = live_on(m, eni_key, eni, deps) else {
        return Ok(None);
    };
    let scope = scope(eni_key);
    let region = region_of(eni_key);
    let missing = |what: &'static str, id: &str| CompileError::Missing {
        eni: eni.id.clone(),
        what,
        id: id.to_owned(),
    };

    let vpc_key = rkey(scope, "vpc", &eni.vpc_id);
    deps.push(Dep::Record(vpc_key.clone()));
    let vpc = m
        .vpcs
        .get(&vpc_key)
        .ok_or_else(|| missing("VPC", &eni.vpc_id))?;
    let vpc_cidr: Ipv4Net =
        vpc.cidr_block
            .parse::<Ipv4Cidr>()
            .map(v4net)
            .map_err(|_| CompileError::BadCidr {
                eni: eni.id.clone(),
                what: "the VPC's CIDR",
                value: vpc.cidr_block.clone(),
            })?;

    let subnet_key = rkey(scope, "subnet", &eni.subnet_id);
    deps.push(Dep::Record(subnet_key.clone()));
    let subnet = m
        .subnets
        .get(&subnet_key)
        .ok_or_else(|| missing("subnet", &eni.subnet_id))?;

    // An IPv6-only subnet's interfaces carry no IPv4, and the dataplane
    // carries no IPv6 yet: there is nothing a host could run for them.
    let Some(subnet_cidr) = subnet.cidr_block else {
        return Ok(None);
    };

    let network_acl = compile_acl(m, &subnet_key, &vpc_key, deps)
        .ok_or_else(|| missing("a network ACL for subnet", &subnet.id))?;
    let mut route_table = compile_routes(m, scope, &subnet_key, &vpc_key, vpc, deps)
        .ok_or_else(|| missing("a route table for subnet", &subnet.id))?;
    // Issue 17: the fronts of the VPC's load balancers lead to their
    // shards' nodes, beside the table's own routes (a /32 is the longest
    // match there is); no route table the API shows has these.
    route_table
        .routes
        .extend(super::lb::lb_routes(m, region, vpc, deps));

    let mut security_groups = Vec::new();
    for group in &eni.groups {
        let key = rkey(scope, "sg", &group.id);
        deps.push(Dep::Record(key.clone()));
        let sg = m
            .groups
            .get(&key)
            .ok_or_else(|| missing("security group", &group.id))?;
        security_groups.push(compile_group(m, region, sg, deps));
    }

    let conntrack = eni.conntrack.map_or(
        ConntrackState {
            tcp_established: TCP_ESTABLISHED_DEFAULT,
            udp_stream: UDP_STREAM_DEFAULT,
            udp: UDP_DEFAULT,
        },
        |c| ConntrackState {
            tcp_established: c.tcp_established,
            udp_stream: c.udp_stream,
            udp: c.udp,
        },
    );
    let (dns, dns_servers, dhcp_domain) = compile_dns(m, scope, region, vpc, vpc_cidr, deps);
    let attachment = eni.attachment.as_ref();
    let state = EniState {
        eni_id: eni.id.clone(),
        account_id: eni.owner_id.clone(),
        instance_id: attachment.map(|a| a.instance_id.clone()),
        device_index: attachment.map_or(0, |a| a.device_index),
        mac: eni.mac_address.clone(),
        ipv4: eni.private_ips.clone(),
        ipv6: Vec::new(),
        vpc_id: eni.vpc_id.clone(),
        vni: vpc.vni,
        vpc_cidr,
        subnet: SubnetState {
            subnet_id: subnet.id.clone(),
            cidr: v4net(subnet_cidr),
            ipv6_cidr: None,
            network_acl,
            route_table,
        },
        security_groups,
        source_dest_check: eni.source_dest_check,
        conntrack,
        hostname: eni
            .primary_ip()
            .map(|ip| format!("ip-{}", ip.to_string().replace('.', "-"))),
        domain_name: Some(dhcp_domain.unwrap_or_else(|| domain_name(region))),
        public_ipv4: eni
            .public
            .iter()
            .map(|p| PublicIpv4 {
                private: p.private_ip,
                public: p.public_ip,
            })
            .collect(),
        availability_zone_id: eni.availability_zone_id.clone(),
        flow_logs: compile_flow_logs(m, [&eni.id, &subnet.id, &vpc.id], deps),
        dns: Some(dns),
        dns_servers,
    };
    Ok(Some(Compiled { host, state }))
}

/// The DHCP value that stands for the VPC's own resolver (spec 1.4).
const AMAZON_PROVIDED_DNS: &str = "AmazonProvidedDNS";

/// What the host's resolver for `vpc` answers from (spec 1.4), the DHCP
/// options set's `domain-name-servers` when it names its own (option 6),
/// and its `domain-name` (option 15) when it has one.
fn compile_dns(
    m: &Mirror,
    scope: &str,
    region: &str,
    vpc: &Vpc,
    vpc_cidr: Ipv4Net,
    deps: &mut Vec<Dep>,
) -> (VpcDnsState, Option<Vec<Ipv4Addr>>, Option<String>) {
    deps.push(Dep::VpcAddresses(vpc.id.clone()));
    let mut addresses: Vec<DnsAddress> = m
        .enis_of_vpc
        .get(&vpc.id)
        .into_iter()
        .flatten()
        .filter_map(|k| m.enis.get(k))
        .flat_map(|e| &e.public)
        .map(|p| DnsAddress {
            private: p.private_ip,
            public: Some(p.public_ip),
        })
        .collect();
    addresses.sort();
    addresses.dedup_by_key(|a| a.private);

    // Served network load balancers answer by name: an internal one with
    // its fronts' private addresses, an internet-facing one with their
    // public ones, as public DNS answers it.
    deps.push(Dep::LoadBalancers(vpc.id.clone()));
    let mut names: Vec<DnsName> = m
        .lbs_of_vpc
        .get(&vpc.id)
        .into_iter()
        .flatten()
        .filter_map(|k| m.lbs.get(k))
        .filter(|lb| super::lb_lifecycle::is_served(lb.state))
        .map(|lb| {
            let public = lb.scheme == "internet-facing";
            DnsName {
                name: lb.dns_name(region),
                addresses: lb
                    .zones
                    .iter()
                    .filter_map(|z| if public { z.public_ip } else { z.private_ip })
                    .collect(),
            }
        })
        .collect();
    names.sort();

    let base_plus_two = Ipv4Addr::from_bits(vpc_cidr.network().to_bits().wrapping_add(2));
    let (mut servers, mut domain) = (None, None);
    if !vpc.dhcp_options_id.is_empty() && vpc.dhcp_options_id != "default" {
        let key = rkey(scope, "dopt", &vpc.dhcp_options_id);
        deps.push(Dep::Record(key.clone()));
        if let Some(set) = m.dhcp_options.get(&key) {
            if let Some(values) = set.values("domain-name-servers") {
                let own: Vec<Ipv4Addr> = values
                    .iter()
                    .filter_map(|v| {
                        if v == AMAZON_PROVIDED_DNS {
                            Some(base_plus_two)
                        } else {
                            v.parse().ok()
                        }
                    })
                    .collect();
                // AmazonProvidedDNS alone is the default: left unsaid.
                if own != [base_plus_two] {
                    servers = Some(own);
                }
            }
            domain = set
                .values("domain-name")
                .and_then(|v| v.first())
                .cloned()
                .filter(|d| !d.is_empty());
        }
    }
    let mut cidrs = vpc_cidrs(vpc);
    cidrs.push(vpc_cidr);
    cidrs.sort();
    cidrs.dedup();
    let dns = VpcDnsState {
        region: region.to_owned(),
        cidrs,
        enable_dns_support: vpc.enable_dns_support,
        enable_dns_hostnames: vpc.enable_dns_hostnames,
        addresses,
        names,
    };
    (dns, servers, domain)
}

/// A VPC's IPv4 blocks: the primary and the associated secondary ones.
pub fn vpc_cidrs(vpc: &Vpc) -> Vec<Ipv4Net> {
    let mut cidrs: Vec<Ipv4Net> = vpc
        .cidr_block
        .parse::<Ipv4Cidr>()
        .map(v4net)
        .into_iter()
        .collect();
    cidrs.extend(
        vpc.cidr_associations
            .iter()
            .filter(|a| a.state == CidrBlockState::Associated)
            .filter_map(|a| a.cidr_block.parse::<Ipv4Cidr>().ok())
            .map(v4net),
    );
    cidrs.sort();
    cidrs.dedup();
    cidrs
}

/// spec 8.1: the flow logs on the ENI, its subnet and its VPC, in that
/// order; one whose settings do not parse is left out (the API refuses
/// them, so only a damaged record can).
fn compile_flow_logs(m: &Mirror, resources: [&str; 3], deps: &mut Vec<Dep>) -> Vec<FlowLogSpec> {
    let mut out = Vec::new();
    for resource in resources {
        deps.push(Dep::FlowLogsOf(resource.to_owned()));
        for key in m.flow_logs_of.get(resource).into_iter().flatten() {
            let Some(f) = m.flow_logs.get(key) else {
                continue;
            };
            let Some(traffic_type) = TrafficType::parse(&f.traffic_type) else {
                continue;
            };
            out.push(FlowLogSpec {
                flow_log_id: f.id.clone(),
                traffic_type,
                max_aggregation_interval: f.max_aggregation_interval,
            });
        }
    }
    out
}

/// The subnet's ACL: its explicit association, else the VPC's default.
fn compile_acl(
    m: &Mirror,
    subnet_key: &str,
    vpc_key: &str,
    deps: &mut Vec<Dep>,
) -> Option<NetworkAclState> {
    deps.push(Dep::AclOf(subnet_key.to_owned()));
    let key = match m.acl_of_subnet.get(subnet_key) {
        Some(k) => k,
        None => {
            deps.push(Dep::DefaultAcl(vpc_key.to_owned()));
            m.default_acl.get(vpc_key)?
        }
    };
    deps.push(Dep::Record(key.clone()));
    let acl = m.acls.get(key)?;
    let (mut ingress, mut egress) = (Vec::new(), Vec::new());
    for entry in &acl.entries {
        if entry.rule_number >= STAR_RULE {
            continue;
        }
        let cidr = match &entry.cidr {
            EntryCidr::Ipv4(c) => IpNet::V4(v4net(*c)),
            EntryCidr::Ipv6(text) => match text.parse::<Ipv6Net>() {
                Ok(n) => IpNet::V6(n),
                Err(_) => continue,
            },
        };
        let state = NetworkAclEntryState {
            rule_number: entry.rule_number,
            traffic: entry.traffic,
            cidr,
            action: entry.action,
        };
        if entry.egress {
            egress.push(state);
        } else {
            ingress.push(state);
        }
    }
    ingress.sort_by_key(|e| e.rule_number);
    egress.sort_by_key(|e| e.rule_number);
    Some(NetworkAclState {
        network_acl_id: acl.id.clone(),
        ingress,
        egress,
    })
}

/// The CIDRs of a prefix list: an AWS-managed list of the region, or a
/// stored one of the scope.
fn list_entries(m: &Mirror, scope: &str, id: &str, deps: &mut Vec<Dep>) -> Vec<IpNet> {
    let region = region_of(scope);
    let managed;
    let list = if let Some(l) = aws_lists(region).into_iter().find(|l| l.id == id) {
        managed = l;
        Some(&managed)
    } else {
        let key = rkey(scope, "pl", id);
        deps.push(Dep::Record(key.clone()));
        m.lists.get(&key)
    };
    list.map(|l| {
        l.entries()
            .iter()
            .filter_map(|e| e.cidr.parse::<IpNet>().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// The subnet's route table: its explicit association, else the VPC's main.
fn compile_routes(
    m: &Mirror,
    scope: &str,
    subnet_key: &str,
    vpc_key: &str,
    vpc: &Vpc,
    deps: &mut Vec<Dep>,
) -> Option<RouteTableState> {
    deps.push(Dep::TableOf(subnet_key.to_owned()));
    let key = match m.table_of_subnet.get(subnet_key) {
        Some(k) => k,
        None => {
            deps.push(Dep::MainTable(vpc_key.to_owned()));
            m.main_table.get(vpc_key)?
        }
    };
    deps.push(Dep::Record(key.clone()));
    let table = m.tables.get(key)?;
    let mut routes = Vec::new();
    for route in &table.routes {
        let destinations: Vec<IpNet> = match &route.destination {
            Destination::Ipv4(c) => vec![IpNet::V4(v4net(*c))],
            Destination::Ipv6(c) => match Ipv6Net::new(c.network.into(), c.prefix_len) {
                Ok(n) => vec![IpNet::V6(n)],
                Err(_) => continue,
            },
            Destination::PrefixList(id) => list_entries(m, scope, id, deps),
        };
        let target = resolve_target(m, scope, vpc, &route.target, deps);
        routes.extend(destinations.into_iter().map(|destination| RouteState {
            destination,
            target: target.clone(),
        }));
    }
    routes.extend(propagated_routes(m, scope, vpc, table, &routes, deps));
    Some(RouteTableState {
        route_table_id: table.id.clone(),
        routes,
    })
}

/// spec 2.7, 10.3: what the VPN gateways propagating into `table` add to
/// it while attached to its VPC: each prefix their tunnels carry now, to
/// the edge serving the tunnel the gateway chose. A destination `routes`
/// (the table's own) already has is left out: the static route wins
/// (spec 2.4); a more specific propagated prefix still wins by length.
fn propagated_routes(
    m: &Mirror,
    scope: &str,
    vpc: &Vpc,
    table: &RouteTable,
    routes: &[RouteState],
    deps: &mut Vec<Dep>,
) -> Vec<RouteState> {
    if table.propagating_vgws.is_empty() {
        return Vec::new();
    }
    let region = region_of(scope);
    deps.push(Dep::Nodes(Role::Edge, region.to_owned()));
    let edges = m.edge_records(region);
    let mut out: Vec<RouteState> = Vec::new();
    for vgw in &table.propagating_vgws {
        deps.push(Dep::Record(rkey(scope, "vgw", vgw)));
        if m.vgw_vpc(scope, vgw)
            .is_none_or(|(vpc_id, _, _)| vpc_id != vpc.id)
        {
            continue;
        }
        let connections = m.vgw_connections(scope, vgw, &edges);
        for path in super::vpn::propagated_into_table(super::vpn::vgw_paths(&connections)) {
            let destination = IpNet::V4(path.prefix);
            if routes
                .iter()
                .chain(out.iter())
                .any(|r| r.destination == destination)
            {
                continue;
            }
            out.push(RouteState {
                destination,
                target: RouteTargetState::Gateway {
                    gateway_id: vgw.clone(),
                    nodes: vec![path.edge_underlay],
                },
            });
        }
    }
    out
}

/// The edges a static route to VPN gateway `vgw_id` sends to: those
/// serving its tunnels that are up (the edge that takes a packet finds the
/// gateway's path for it and hands it on to the tunnel's edge); none while
/// no tunnel is up, so the route is unserved.
fn vgw_nodes(m: &Mirror, scope: &str, vgw_id: &str) -> Vec<IpAddr> {
    let edges = m.edge_records(region_of(scope));
    let mut nodes: Vec<IpAddr> = m
        .vgw_connections(scope, vgw_id, &edges)
        .iter()
        .flat_map(|(vpn, views)| {
            views
                .iter()
                .filter(|v| v.is_up(vpn.static_routes_only))
                .filter_map(|v| v.edge.as_ref().map(|(_, ip)| *ip))
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Where a private NAT gateway's translated packets can go (issue 16): the
/// IPv4 routes of its subnet's table (its explicit association, else the
/// VPC's main) that stay on the underlay, resolved as an ENI's are: `local`
/// in the gateway's VPC, an active peering in the peer's. Every other
/// target is left out, so the node drops what matches only them as having
/// no route. Empty while the gateway's VPC, subnet or table is missing.
pub fn nat_routes(m: &Mirror, nat_key: &str, nat: &NatGateway) -> Vec<NatRoute> {
    let scope = scope(nat_key);
    let vpc_key = rkey(scope, "vpc", &nat.vpc_id);
    let Some(vpc) = m.vpcs.get(&vpc_key) else {
        return Vec::new();
    };
    let subnet_key = rkey(scope, "subnet", &nat.subnet_id);
    // The index tells the nodes again on any change of the region's route
    // tables, peerings, prefix lists or VPCs, so what was read is not kept.
    let mut deps = Vec::new();
    let Some(table) = compile_routes(m, scope, &subnet_key, &vpc_key, vpc, &mut deps) else {
        return Vec::new();
    };
    table
        .routes
        .into_iter()
        .filter_map(|r| {
            let IpNet::V4(destination) = r.destination else {
                return None;
            };
            let vni = match r.target {
                RouteTargetState::Local => vpc.vni,
                RouteTargetState::Peering { peer_vni, .. } => peer_vni,
                _ => return None,
            };
            Some(NatRoute { destination, vni })
        })
        .collect()
}

/// A NAT gateway's ENI as its nodes log it (spec 8.2: flow logs on the
/// gateway's ENI, subnet or VPC record what it translates), or `None`
/// while no flow log covers it.
pub fn nat_flow_log(m: &Mirror, nat_key: &str, nat: &NatGateway) -> Option<LoggedEni> {
    let eni_id = nat.network_interface_id.as_deref()?;
    let primary_ip = nat
        .addresses
        .iter()
        .find(|a| a.is_primary)
        .and_then(|a| a.private_ip);
    let eni = ServiceEni {
        eni_id,
        subnet_id: &nat.subnet_id,
        vpc_id: &nat.vpc_id,
        account_id: &nat.owner_id,
        primary_ip,
    };
    service_flow_log(m, scope(nat_key), &eni)
}

/// A requester-managed ENI a service's nodes carry the traffic of (a NAT
/// gateway's, a load balancer's front).
#[derive(Debug)]
pub struct ServiceEni<'a> {
    pub eni_id: &'a str,
    pub subnet_id: &'a str,
    pub vpc_id: &'a str,
    pub account_id: &'a str,
    /// The service's address on it, when the service knows it (else the
    /// ENI's own primary address).
    pub primary_ip: Option<Ipv4Addr>,
}

/// A service ENI as its nodes log it, or `None` while no flow log covers
/// it (the ENI, its subnet or its VPC). The index tells the nodes again
/// when a flow log or a route table of the region changes, so what was
/// read is not kept.
pub fn service_flow_log(m: &Mirror, scope: &str, s: &ServiceEni) -> Option<LoggedEni> {
    let mut deps = Vec::new();
    let specs = compile_flow_logs(m, [s.eni_id, s.subnet_id, s.vpc_id], &mut deps);
    if specs.is_empty() {
        return None;
    }
    let vpc_key = rkey(scope, "vpc", s.vpc_id);
    let vpc = m.vpcs.get(&vpc_key)?;
    let eni = m.enis.get(&rkey(scope, "eni", s.eni_id))?;
    let primary_ip = s.primary_ip.or_else(|| eni.primary_ip())?;
    let subnet_key = rkey(scope, "subnet", s.subnet_id);
    let routes = compile_routes(m, scope, &subnet_key, &vpc_key, vpc, &mut deps)
        .map(|t| {
            t.routes
                .iter()
                .map(|r| PathRoute {
                    destination: r.destination,
                    path: traffic_path(&r.target),
                })
                .collect()
        })
        .unwrap_or_default();
    let log = EniLog {
        context: EniContext {
            eni_id: s.eni_id.to_owned(),
            account_id: s.account_id.to_owned(),
            vpc_id: s.vpc_id.to_owned(),
            subnet_id: s.subnet_id.to_owned(),
            // spec 8.1: `-` for a requester-managed ENI.
            instance_id: None,
            primary_ip: IpAddr::V4(primary_ip),
            az_id: eni.availability_zone_id.clone(),
        },
        vpc_base: vpc
            .cidr_block
            .parse::<Ipv4Cidr>()
            .ok()
            .map(|c| v4net(c).network()),
        specs,
    };
    LoggedEni::new(log, routes)
}

/// The underlay address of the host a placed ENI runs on.
fn underlay_of(
    m: &Mirror,
    eni_key: &str,
    eni: &NetworkInterface,
    deps: &mut Vec<Dep>,
) -> Option<IpAddr> {
    let host = host_key(region_of(eni_key), eni.host_id.as_deref()?);
    deps.push(Dep::Record(host.clone()));
    m.hosts.get(&host).map(|h| h.underlay_ip)
}

fn eni_target(m: &Mirror, eni_key: &str, deps: &mut Vec<Dep>) -> RouteTargetState {
    deps.push(Dep::Record(eni_key.to_owned()));
    match m.enis.get(eni_key) {
        Some(eni) => RouteTargetState::Eni {
            eni_id: eni.id.clone(),
            host: underlay_of(m, eni_key, eni, deps),
            mac: eni.mac_address.clone(),
        },
        None => RouteTargetState::Blackhole,
    }
}

/// spec 2.5: a target that is gone or not usable makes a blackhole.
fn resolve_target(
    m: &Mirror,
    scope: &str,
    vpc: &Vpc,
    target: &Target,
    deps: &mut Vec<Dep>,
) -> RouteTargetState {
    if target.is_local() {
        return RouteTargetState::Local;
    }
    let Some(segment) = target.kind.segment(&target.id) else {
        return RouteTargetState::Blackhole;
    };
    let key = rkey(scope, segment, &target.id);
    deps.push(Dep::Record(key.clone()));
    match target.kind {
        TargetKind::NetworkInterface => eni_target(m, &key, deps),
        TargetKind::Instance => {
            let Some(instance) = m.instances.get(&key) else {
                return RouteTargetState::Blackhole;
            };
            if instance.state.is_dead() {
                return RouteTargetState::Blackhole;
            }
            deps.push(Dep::InstanceEnis(key.clone()));
            let primary = m.instance_enis.get(&key).and_then(|enis| {
                enis.iter().find(|k| {
                    m.enis
                        .get(*k)
                        .and_then(|e| e.attachment.as_ref())
                        .is_some_and(|a| a.device_index == 0)
                })
            });
            match primary {
                Some(eni_key) => eni_target(m, eni_key, deps),
                None => RouteTargetState::Blackhole,
            }
        }
        TargetKind::VpcPeeringConnection => {
            let Some(pcx) = m.peerings.get(&key) else {
                return RouteTargetState::Blackhole;
            };
            if !pcx.state.is_alive() {
                return RouteTargetState::Blackhole;
            }
            let peer = if pcx.requester.vpc_id == vpc.id {
                &pcx.accepter.vpc_id
            } else {
                &pcx.requester.vpc_id
            };
            deps.push(Dep::VpcId(peer.clone()));
            let peer_vni = m
                .vpc_by_id
                .get(peer)
                .and_then(|k| m.vpcs.get(k))
                .map(|v| v.vni);
            match peer_vni {
                Some(peer_vni) => RouteTargetState::Peering {
                    peering_id: pcx.id.clone(),
                    peer_vni,
                },
                None => RouteTargetState::Blackhole,
            }
        }
        // spec 5.1: an internet gateway forwards for the VPC it is attached
        // to, through the region's edge nodes.
        TargetKind::Gateway if segment == "igw" => match m.gateways.get(&key) {
            Some(g) if g.vpc_id.as_deref() == Some(vpc.id.as_str()) => {
                let region = region_of(scope);
                deps.push(Dep::Nodes(Role::Edge, region.to_owned()));
                RouteTargetState::Gateway {
                    gateway_id: target.id.clone(),
                    nodes: m.edge_nodes(region),
                }
            }
            _ => RouteTargetState::Blackhole,
        },
        // A NAT gateway forwards through the hyperplane nodes of its shard
        // (issue 16); none yet, and its routes are unserved.
        TargetKind::NatGateway => match m.gateways.get(&key) {
            Some(g) if g.liveness == Liveness::Alive => {
                let region = region_of(scope);
                let shard = super::shards::shard_key(region, &target.id);
                deps.push(Dep::Record(shard.clone()));
                deps.push(Dep::Nodes(Role::Hyperplane, region.to_owned()));
                RouteTargetState::Gateway {
                    gateway_id: target.id.clone(),
                    nodes: m.shard_nodes(region, &shard),
                }
            }
            _ => RouteTargetState::Blackhole,
        },
        // A VPN gateway forwards for the VPC it is attached to, through
        // the edges serving its tunnels (issue 19).
        TargetKind::Gateway if segment == "vgw" => match m.gateways.get(&key) {
            Some(g)
                if g.liveness == Liveness::Alive
                    && g.vpc_id.as_deref() == Some(vpc.id.as_str()) =>
            {
                deps.push(Dep::Nodes(Role::Edge, region_of(scope).to_owned()));
                RouteTargetState::Gateway {
                    gateway_id: target.id.clone(),
                    nodes: vgw_nodes(m, scope, &target.id),
                }
            }
            _ => RouteTargetState::Blackhole,
        },
        _ => match m.gateways.get(&key) {
            Some(g) if g.liveness == Liveness::Alive => RouteTargetState::Gateway {
                gateway_id: target.id.clone(),
                nodes: Vec::new(),
            },
            _ => RouteTargetState::Blackhole,
        },
    }
}

/// A group's rules with each peer expanded to addresses.
fn compile_group(
    m: &Mirror,
    region: &str,
    sg: &SecurityGroup,
    deps: &mut Vec<Dep>,
) -> SecurityGroupState {
    let scope = format!("r/{}/{region}", sg.owner_id);
    let mut rules = |rules: &[security_group::Rule]| -> Vec<SecurityGroupRuleState> {
        rules
            .iter()
            .map(|rule| SecurityGroupRuleState {
                rule_id: Some(rule.id.clone()),
                traffic: rule.traffic,
                peers: peers(m, &scope, &rule.target, deps),
            })
            .collect()
    };
    let ingress = rules(&sg.ingress);
    let egress = rules(&sg.egress);
    SecurityGroupState {
        group_id: sg.id.clone(),
        ingress,
        egress,
    }
}

fn peers(
    m: &Mirror,
    scope: &str,
    target: &security_group::Target,
    deps: &mut Vec<Dep>,
) -> Vec<IpNet> {
    use security_group::Target as T;
    match target {
        T::Ipv4(c) | T::Ipv6(c) => c.parse::<IpNet>().into_iter().collect(),
        T::PrefixList(id) => list_entries(m, scope, id, deps),
        T::Group { user_id, group_id } => {
            let key = rkey(&format!("r/{user_id}/{}", region_of(scope)), "sg", group_id);
            deps.push(Dep::Members(key.clone()));
            let mut out: BTreeSet<Ipv4Addr> = BTreeSet::new();
            for member in m.members.get(&key).into_iter().flatten() {
                if let Some(eni) = m.enis.get(member) {
                    out.extend(eni.private_ips.iter().copied());
                }
            }
            out.into_iter()
                .map(|ip| IpNet::V4(Ipv4Net::from(ip)))
                .collect()
        }
    }
}
