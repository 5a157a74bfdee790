//! What the control plane and the hosts say to each other: a host's
//! registration, the compiled state of each ENI placed on it (every group
//! reference, prefix list and route target already resolved), the deltas of
//! the watch stream, and the mapping service's questions and answers.
//!
//! These are plain serde values sent as JSON over the agent API
//! (`/agent/v1/…`). They name no store keys and no dataplane types: the
//! server compiles resources into them, the agent turns them into router
//! configuration.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::rule::{RuleAction, TrafficMatch};

/// The UDP port hosts speak Geneve on (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

/// The header an agent sends its shared token in.
pub const TOKEN_HEADER: &str = "x-openvpc-agent-token";

/// What an agent says about itself when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRegistration {
    pub host_id: String,
    /// The availability zone's name, e.g. `us-east-1a`.
    pub availability_zone: String,
    /// The address other hosts send this host's Geneve traffic to.
    pub underlay_ip: IpAddr,
}

/// A registered host as the server keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host_id: String,
    pub region: String,
    pub availability_zone: String,
    pub underlay_ip: IpAddr,
    /// Unix seconds of the last registration.
    pub registered_at: i64,
}

/// One ENI as its host must run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniState {
    pub eni_id: String,
    pub account_id: String,
    /// The instance it is attached to; `None` for a detached ENI, which a
    /// host does not run.
    pub instance_id: Option<String>,
    /// 0 for the primary ENI (`eth0` in the instance).
    pub device_index: u32,
    /// `02:xx:xx:xx:xx:xx`.
    pub mac: String,
    /// Primary private IPv4 first, then secondaries.
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub vpc_id: String,
    /// The VPC's Geneve VNI, unique in the region.
    pub vni: u32,
    /// The VPC's primary CIDR: base + 2 is its DNS server.
    pub vpc_cidr: Ipv4Net,
    pub subnet: SubnetState,
    pub security_groups: Vec<SecurityGroupState>,
    pub source_dest_check: bool,
    pub conntrack: ConntrackState,
    /// DHCP option 12, e.g. `ip-10-0-1-10`.
    pub hostname: Option<String>,
    /// DHCP option 15, e.g. `ec2.internal`.
    pub domain_name: Option<String>,
    /// The public IPv4 addresses mapped 1:1 onto the ENI's private ones
    /// (auto-assigned or Elastic IPs, spec 5.1, 5.3): what an edge
    /// translates. The host drops a packet bound for an internet gateway
    /// from a private address without one, as AWS does.
    #[serde(default)]
    pub public_ipv4: Vec<PublicIpv4>,
    /// The zone's ID (`use1-az1`), for flow logs' `az-id`.
    #[serde(default)]
    pub availability_zone_id: String,
    /// The flow logs that cover this ENI: its own, its subnet's and its
    /// VPC's (spec 8.1).
    #[serde(default)]
    pub flow_logs: Vec<crate::flow_log::FlowLogSpec>,
    /// What the host's resolver for the ENI's VPC knows (spec 1.4); `None`
    /// in state compiled before the resolver: the host answers nothing.
    #[serde(default)]
    pub dns: Option<VpcDnsState>,
    /// DHCP option 6: the DHCP options set's own `domain-name-servers`
    /// (AmazonProvidedDNS standing for the VPC's base + 2); `None` gives
    /// AmazonProvidedDNS alone, base + 2.
    #[serde(default)]
    pub dns_servers: Option<Vec<Ipv4Addr>>,
}

/// What one VPC's resolver (AmazonProvidedDNS, spec 1.4) answers from: the
/// same for every ENI of the VPC. Each host runs one resolver per VPC it
/// has ENIs of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VpcDnsState {
    /// The region: it names the Amazon domains.
    pub region: String,
    /// `enableDnsSupport`: when false, the resolver answers nothing.
    pub enable_dns_support: bool,
    /// `enableDnsHostnames`: with support, Amazon's private and public
    /// names resolve.
    pub enable_dns_hostnames: bool,
    /// The VPC's IPv4 CIDR blocks: every address in them has its private
    /// name (`ip-a-b-c-d`), derived from the address.
    #[serde(default)]
    pub cidrs: Vec<Ipv4Net>,
    /// The private addresses of the VPC's network interfaces that hold a
    /// public IPv4, with it, sorted by private address: the public names
    /// (`ec2-…`) that resolve to them inside the VPC. Only these, so that
    /// launching an instance without a public address recompiles no other
    /// ENI of the VPC.
    pub addresses: Vec<DnsAddress>,
    /// Other names the resolver answers in the VPC (its network load
    /// balancers' DNS names), sorted by name.
    #[serde(default)]
    pub names: Vec<DnsName>,
}

/// A private address of the VPC and its public one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DnsAddress {
    pub private: Ipv4Addr,
    #[serde(default)]
    pub public: Option<Ipv4Addr>,
}

/// A name the resolver answers with these addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DnsName {
    pub name: String,
    pub addresses: Vec<Ipv4Addr>,
}

/// A public IPv4 address held for one private address of an ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicIpv4 {
    pub private: Ipv4Addr,
    pub public: Ipv4Addr,
}

/// The subnet of an ENI with its network ACL and route table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetState {
    pub subnet_id: String,
    pub cidr: Ipv4Net,
    pub ipv6_cidr: Option<Ipv6Net>,
    pub network_acl: NetworkAclState,
    pub route_table: RouteTableState,
}

/// A security group with its references expanded to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupState {
    pub group_id: String,
    pub ingress: Vec<SecurityGroupRuleState>,
    pub egress: Vec<SecurityGroupRuleState>,
}

/// One rule: a referenced group becomes its members' addresses, a prefix
/// list its entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRuleState {
    /// The rule's `sgr-` ID, so a trace can name the rule that allowed a
    /// flow; absent in state compiled before rules carried it.
    #[serde(default)]
    pub rule_id: Option<String>,
    pub traffic: TrafficMatch,
    pub peers: Vec<IpNet>,
}

/// A network ACL's numbered entries; the final `*` deny is implicit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAclState {
    pub network_acl_id: String,
    pub ingress: Vec<NetworkAclEntryState>,
    pub egress: Vec<NetworkAclEntryState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAclEntryState {
    pub rule_number: u16,
    pub traffic: TrafficMatch,
    pub cidr: IpNet,
    pub action: RuleAction,
}

/// A route table with prefix-list destinations expanded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTableState {
    pub route_table_id: String,
    pub routes: Vec<RouteState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteState {
    pub destination: IpNet,
    pub target: RouteTargetState,
}

/// Where a route sends packets, resolved as far as the control plane can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouteTargetState {
    /// Inside the VPC: the mapping service names the host.
    Local,
    /// A gateway (`igw-`, `eigw-`, `nat-`, `vgw-`, `tgw-`, `vpce-`).
    /// `nodes` are the underlay addresses of the nodes that serve it (an
    /// internet gateway: every live edge node of the region; the host picks
    /// one per flow by its hash). Empty while no such node runs: the host
    /// drops what it would send there, named as unserved.
    Gateway {
        gateway_id: String,
        #[serde(default)]
        nodes: Vec<IpAddr>,
    },
    /// A peered VPC: packets continue in the peer's VNI.
    Peering {
        peering_id: String,
        peer_vni: u32,
    },
    /// A network interface; `host` is `None` while it is not placed.
    Eni {
        eni_id: String,
        host: Option<IpAddr>,
        mac: String,
    },
    Blackhole,
}

/// Idle timeouts of the ENI's connection tracking, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackState {
    pub tcp_established: u32,
    pub udp_stream: u32,
    pub udp: u32,
}

/// The answer to a watch: what changed on a host since a revision.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostDelta {
    /// Resume the next watch from here.
    pub revision: u64,
    /// True when this is the host's whole state: drop every ENI not in
    /// `upserts`, and every cached mapping too (a full state carries no
    /// invalidations). Sent on first contact and when the asked revision is
    /// too old to replay.
    pub full: bool,
    /// ENIs to install or replace whole.
    pub upserts: Vec<EniState>,
    /// ENI IDs to remove.
    pub removals: Vec<String>,
    /// Mappings that changed: drop them from the cache and ask again.
    pub invalidations: Vec<MappingKey>,
}

/// A mapping-service question: who owns this address in this VPC?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MappingKey {
    pub vni: u32,
    pub ip: IpAddr,
}

/// Who owns an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingRecord {
    /// The underlay address of the host that runs the ENI.
    pub underlay_ip: IpAddr,
    pub eni_id: String,
    pub mac: String,
}

/// One answer of a batch lookup; `record` is `None` when nothing placed
/// owns the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingAnswer {
    pub key: MappingKey,
    pub record: Option<MappingRecord>,
}

/// How far an instance's setup on its host got: namespace, TAP and the
/// DHCP client's lease (what DescribeInstanceStatus's instance check shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceSetup {
    /// A step is still running (the DHCP client has not answered yet).
    Initializing,
    /// Every step succeeded: the instance has its address.
    Ok,
    /// A step failed; the report says which and why.
    Impaired,
}

/// One instance as its agent last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceHealth {
    pub instance_id: String,
    pub setup: InstanceSetup,
    /// Why it is impaired: the step and the error (`None` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds when `setup` took its current value.
    pub since: i64,
}

/// What an agent reports about its instances, whole, every few seconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HealthReport {
    pub host_id: String,
    pub instances: Vec<InstanceHealth>,
}

/// The agent API's endpoints, relative to the server's URL.
pub mod path {
    /// POST a [`super::HostRegistration`]; answers the [`super::HostRecord`].
    pub const REGISTER: &str = "/agent/v1/register";
    /// GET `?host=ID&since=REV[&wait_ms=N]`; answers a [`super::HostDelta`],
    /// waiting up to `wait_ms` for a change when there is none.
    pub const WATCH: &str = "/agent/v1/watch";
    /// POST a list of [`super::MappingKey`]; answers a list of
    /// [`super::MappingAnswer`] in the same order.
    pub const MAPPINGS: &str = "/agent/v1/mappings";
    /// POST a [`super::HealthReport`]; answers `{}`. Also the host's
    /// heartbeat: a host that stops reporting is shown impaired.
    pub const HEALTH: &str = "/agent/v1/health";
}
