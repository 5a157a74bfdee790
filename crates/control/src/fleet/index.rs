//! The fleet index: the server's in-memory view of every host's desired
//! state, built once from the store and then kept current by tailing the
//! store's change log (so it follows writes of other servers on one etcd).
//!
//! Incremental by construction: each compiled ENI records what it read
//! ([`Dep`]); a changed record marks only the ENIs that read it (or the
//! association it moved) and only those are compiled again. An ENI whose
//! compiled state did not change is not reported. Per host, a bounded log of
//! (revision, ENI) serves watch deltas from a revision; per region, a
//! bounded log of (revision, mapping key) says which mapping answers
//! changed. A revision older than what the logs hold gets the full state.
//!
//! It owns no store data: losing it costs a rebuild, nothing else.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use openvpc_dataplane::route::gateway_mac;
use openvpc_hyperplane::shard::serving_places;
use openvpc_model::ResourceKind;
use openvpc_model::edge::{EdgeDelta, EdgeMapping};
use openvpc_model::host::{
    EniState, HostDelta, HostRecord, MappingAnswer, MappingKey, MappingRecord, PublicIpv4,
};
use openvpc_model::hyperplane::{HyperplaneDelta, NatAssignment, NatConnectivity, ShardMember};
use openvpc_model::lifecycle::NatGatewayState;
use openvpc_model::node::NodeRecord;
use serde::de::DeserializeOwned;

use super::FleetError;
use super::compile::{
    Compiled, Dep, Key, Mirror, account_of, compile, host_key, id_of, region_of, rkey, scope,
};
use super::nodes::Role;
use super::shards::StoredShard;
use crate::api::actions::resource::Record as _;
use crate::records::RawEntry;
use crate::records::elbv2::{Listener as ElbListener, LoadBalancer, TargetGroup};
use crate::records::flow_log::FlowLog;
use crate::records::instance::Instance;
use crate::records::nat_gateway::NatGateway;
use crate::records::network_acl::NetworkAcl;
use crate::records::network_interface::NetworkInterface;
use crate::records::region::{RegionSettings, default_public_pool};
use crate::records::route_table::RouteTable;
use crate::records::route_target::{self, TargetRecord, TargetRecordKind};
use crate::records::subnet::Subnet;
use crate::records::vpc::Vpc;
use crate::records::vpn_connection::{TELEMETRY_SEGMENT, VpnConnection, VpnTelemetry};
use crate::store::{Event, EventKind, Revision, Store, StoreError};

/// How many entries each host's and each region's log keeps; an agent
/// further behind than that gets the full state.
pub const LOG_CAPACITY: usize = 65_536;

/// Events read from the store per call while catching up.
const BATCH: usize = 1024;

/// The most addresses one mapping request may ask about.
pub const MAX_MAPPING_KEYS: usize = 1024;

/// A bounded log of what changed at which revision.
#[derive(Debug)]
struct Log<T> {
    /// The oldest `since` this log can replay from completely.
    floor: Revision,
    entries: VecDeque<(Revision, T)>,
}

impl<T: Clone> Log<T> {
    fn new(floor: Revision) -> Self {
        Log {
            floor,
            entries: VecDeque::new(),
        }
    }

    fn push(&mut self, revision: Revision, item: T) {
        if self.entries.len() >= LOG_CAPACITY
            && let Some((dropped, _)) = self.entries.pop_front()
        {
            self.floor = self.floor.max(dropped);
        }
        self.entries.push_back((revision, item));
    }

    /// The items after `since`, oldest first; `None` if some are gone.
    fn since(&self, since: Revision) -> Option<impl Iterator<Item = &T>> {
        (since >= self.floor).then(|| {
            let start = self.entries.partition_point(|(r, _)| *r <= since);
            self.entries.range(start..).map(|(_, t)| t)
        })
    }
}

/// What the mapping service needs of a running ENI.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MapSig {
    vni: u32,
    ips: Vec<Ipv4Addr>,
    host: Key,
    mac: String,
}

impl MapSig {
    fn of(c: &Compiled) -> MapSig {
        MapSig {
            vni: c.state.vni,
            ips: c.state.ipv4.clone(),
            host: c.host.clone(),
            mac: c.state.mac.clone(),
        }
    }
}

/// What an edge needs of a running ENI: its public addresses and where
/// their private ends live.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PubSig {
    vni: u32,
    public: Vec<PublicIpv4>,
    host: Key,
    mac: String,
}

impl PubSig {
    fn of(c: &Compiled) -> Option<PubSig> {
        (!c.state.public_ipv4.is_empty()).then(|| PubSig {
            vni: c.state.vni,
            public: c.state.public_ipv4.clone(),
            host: c.host.clone(),
            mac: c.state.mac.clone(),
        })
    }
}

/// The index proper; [`Fleet`] wraps it in a lock.
#[derive(Debug, Default)]
struct Index {
    revision: Revision,
    /// The revision the index was built at: every log can replay from here.
    base: Revision,
    mirror: Mirror,
    /// Dep → the ENIs whose compiled state read it.
    readers: HashMap<Dep, HashSet<Key>>,
    /// ENI → what its last compile read.
    reads: HashMap<Key, Vec<Dep>>,
    /// ENIs running on a host, compiled.
    live: HashMap<Key, Compiled>,
    /// Host key → the ENIs running on it.
    host_enis: HashMap<Key, BTreeSet<Key>>,
    host_logs: HashMap<Key, Log<Key>>,
    /// (region, VNI, address) → the running ENI that owns it.
    mappings: HashMap<(String, u32, Ipv4Addr), Key>,
    /// Region → the mapping keys that changed.
    invalidations: HashMap<String, Log<MappingKey>>,
    /// ENI compiles since the index was built (the build's own excluded).
    compiles: u64,
    /// (region, public address) → the running ENI that holds it.
    public: HashMap<(String, Ipv4Addr), Key>,
    /// (region, Elastic IP) → the public NAT gateway (pending or
    /// available) that holds it: its replies go to the gateway's nodes.
    nat_public: HashMap<(String, Ipv4Addr), Key>,
    /// (region, gateway ID) → the NAT gateway's key, for its shard's changes.
    nat_by_id: HashMap<(String, String), Key>,
    /// (region, private address) → the NAT gateways (of any VPC, in any
    /// state) with that address: the mapping service answers for those
    /// pending or available with a node of their shard.
    nat_private: HashMap<(String, Ipv4Addr), BTreeSet<Key>>,
    /// Region → the public addresses whose holder changed.
    public_log: HashMap<String, Log<Ipv4Addr>>,
    /// Region → the last revision at which what every edge gets whole (the
    /// attached VPCs, the public pool) changed.
    edge_meta: HashMap<String, Revision>,
    /// Region → the last revision at which a hyperplane node's assignments
    /// may have changed (NAT gateways, load balancers, shards, hyperplane
    /// nodes).
    hyperplane_meta: HashMap<String, Revision>,
    /// Instance key → how many registrations in target groups name it: a
    /// change of such an instance (its state) or of its ENIs (its address)
    /// is news for the hyperplane nodes.
    lb_instances: HashMap<Key, usize>,
    /// (region, gateway name `elb-{id}`) → the load balancer's key, for
    /// its shard's changes.
    lb_by_gateway: HashMap<(String, String), Key>,
    /// (region, public address) → the internet-facing load balancer
    /// (provisioning, active or impaired) whose front holds it: the edges
    /// hand what comes for it to its shard's nodes.
    lb_public: HashMap<(String, Ipv4Addr), Key>,
}

/// What one applied record changed.
#[derive(Debug, Default)]
struct Dirty {
    deps: Vec<Dep>,
    enis: Vec<Key>,
    /// Hosts whose record changed: their ENIs' mappings changed.
    hosts: Vec<Key>,
    /// Regions whose attached VPCs or public pool changed.
    edge_meta: Vec<String>,
    /// Regions whose hyperplane assignments may have changed.
    hyperplane_meta: Vec<String>,
    /// (region, public address) whose edge mapping may have changed
    /// outside an ENI's compile: NAT gateways' Elastic IPs.
    public: Vec<(String, Ipv4Addr)>,
    /// (region, VNI, address) whose mapping answer may have changed outside
    /// an ENI's compile: NAT gateways' private addresses.
    mappings: Vec<(String, u32, Ipv4Addr)>,
}

/// What a store key holds, as far as the index cares: parsed once from the
/// key's layout (`hosts/{region}/{host}`, `r/{account}/{region}/{kind}/{id}`),
/// and the only place that knows those layouts' strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Record {
    Host,
    Vpc,
    Subnet,
    NetworkAcl,
    RouteTable,
    SecurityGroup,
    PrefixList,
    Peering,
    Instance,
    NetworkInterface,
    /// A route target of which compiles read only the lifecycle state (and
    /// an internet gateway's attachment).
    Gateway,
    /// A live node of a role (`edges/{region}/{id}`, `hyperplane/…`).
    Node(Role),
    /// A NAT gateway's shard (`shards/{region}/{gateway_id}`).
    Shard,
    /// A region's settings (`settings/{region}`).
    Settings,
    /// A network load balancer (`…/elb-lb/{id}`).
    LoadBalancer,
    /// An ELBv2 target group (`…/elb-tg/{id}`).
    TargetGroup,
    /// An ELBv2 listener (`…/elb-listener/{id}`).
    ElbListener,
    /// A flow log (`…/fl/{id}`): the ENIs it covers log to it.
    FlowLog,
    /// A DHCP options set (`…/dopt/{id}`): what its VPCs' instances get.
    DhcpOptions,
    /// A Site-to-Site VPN connection (`…/vpn/{id}`): its tunnels are
    /// served by edges, its routes propagated.
    VpnConnection,
    /// What the edges last said of a connection's tunnels
    /// (`…/vpn-telemetry/{id}`).
    VpnTelemetry,
    /// A key no compile reads: another resource kind, or another layout.
    Ignored,
}

impl Record {
    fn of(key: &str) -> Record {
        if let Some(rest) = key.strip_prefix(super::registry::HOSTS_PREFIX) {
            return if rest.split('/').count() == 2 {
                Record::Host
            } else {
                Record::Ignored
            };
        }
        if let Some((role, _, _)) = super::nodes::Role::of_key(key) {
            return Record::Node(role);
        }
        if let Some(rest) = key.strip_prefix(super::shards::SHARDS_PREFIX) {
            return if rest.split('/').count() == 2 {
                Record::Shard
            } else {
                Record::Ignored
            };
        }
        if let Some(rest) = key.strip_prefix(crate::records::region::SETTINGS_PREFIX) {
            return if rest.is_empty() || rest.contains('/') {
                Record::Ignored
            } else {
                Record::Settings
            };
        }
        let Some(rest) = key.strip_prefix("r/") else {
            return Record::Ignored;
        };
        let [_account, _region, segment, _id] = rest.split('/').collect::<Vec<_>>()[..] else {
            return Record::Ignored;
        };
        let Some(kind) = ResourceKind::ALL.iter().find(|k| k.prefix() == segment) else {
            // Route targets with no resource kind of ours yet (carrier and
            // local gateways), kept under AWS's ID prefixes.
            return match segment {
                "cagw" | "lgw" => Record::Gateway,
                s if s == LoadBalancer::segment() => Record::LoadBalancer,
                s if s == TargetGroup::segment() => Record::TargetGroup,
                s if s == ElbListener::segment() => Record::ElbListener,
                TELEMETRY_SEGMENT => Record::VpnTelemetry,
                _ => Record::Ignored,
            };
        };
        // Exhaustive, so that a new kind is a decision here.
        match kind {
            ResourceKind::Vpc => Record::Vpc,
            ResourceKind::Subnet => Record::Subnet,
            ResourceKind::NetworkAcl => Record::NetworkAcl,
            ResourceKind::RouteTable => Record::RouteTable,
            ResourceKind::SecurityGroup => Record::SecurityGroup,
            ResourceKind::PrefixList => Record::PrefixList,
            ResourceKind::VpcPeeringConnection => Record::Peering,
            ResourceKind::Instance => Record::Instance,
            ResourceKind::FlowLog => Record::FlowLog,
            ResourceKind::NetworkInterface => Record::NetworkInterface,
            ResourceKind::DhcpOptions => Record::DhcpOptions,
            ResourceKind::VpnConnection => Record::VpnConnection,
            ResourceKind::InternetGateway
            | ResourceKind::EgressOnlyInternetGateway
            | ResourceKind::NatGateway
            | ResourceKind::VpnGateway
            | ResourceKind::TransitGateway
            | ResourceKind::VpcEndpoint => Record::Gateway,
            ResourceKind::VpcCidrAssociation
            | ResourceKind::SubnetCidrAssociation
            | ResourceKind::RouteTableAssociation
            | ResourceKind::NetworkAclAssociation
            | ResourceKind::SecurityGroupRule
            | ResourceKind::ElasticIpAllocation
            | ResourceKind::ElasticIpAssociation
            | ResourceKind::CustomerGateway
            | ResourceKind::NetworkInterfaceAttachment
            | ResourceKind::NetworkInsightsPath
            | ResourceKind::NetworkInsightsAnalysis => Record::Ignored,
        }
    }
}

fn parse<T: DeserializeOwned>(key: &str, value: Option<&[u8]>) -> Option<T> {
    let value = value?;
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key, error = %e, "fleet: unreadable record ignored");
            None
        }
    }
}

/// spec 2.5: a route target's liveness (and VPC), through the same typed
/// read as the API's. A record that does not parse is logged with its key
/// and left out, so routes to it are blackholes until it is readable: never
/// alive.
fn gateway_record(key: &str, value: &[u8]) -> Option<TargetRecord> {
    let segment = key.rsplit('/').nth(1)?;
    let kind = TargetRecordKind::of_segment(segment)?;
    match route_target::target_record(kind, key, value) {
        Ok(record) => Some(record),
        Err(e) => {
            tracing::warn!(key, error = %e, "fleet: unreadable route target ignored");
            None
        }
    }
}

/// Replaces (or removes) a record in `map`; the old value.
fn swap<T>(map: &mut HashMap<Key, T>, key: &str, new: Option<T>) -> Option<T> {
    match new {
        Some(v) => map.insert(key.to_owned(), v),
        None => map.remove(key),
    }
}

/// Points `index[k] = value` for the keys of `new` and unpoints the keys of
/// `old` that pointed at `value`; returns the keys whose target changed.
fn reassociate(
    index: &mut HashMap<Key, Key>,
    value: &str,
    old: &BTreeSet<Key>,
    new: &BTreeSet<Key>,
) -> Vec<Key> {
    let mut changed = Vec::new();
    for k in old.difference(new) {
        if index.get(k).is_some_and(|v| v == value) {
            index.remove(k);
            changed.push(k.clone());
        }
    }
    for k in new {
        if index.get(k).is_none_or(|v| v != value) {
            index.insert(k.clone(), value.to_owned());
            changed.push(k.clone());
        }
    }
    changed
}

/// Whether a NAT gateway is public and its nodes translate for it (it is
/// pending or available): the edges hand its Elastic IPs' traffic to them.
fn serves_public(nat: &NatGateway) -> bool {
    nat.state.holds_shard() && nat.connectivity_type != "private"
}

/// Whether a load balancer is internet-facing and its nodes serve it: the
/// edges hand its fronts' public addresses' traffic to them.
fn lb_is_public(lb: &LoadBalancer) -> bool {
    super::lb_lifecycle::is_served(lb.state) && lb.scheme == "internet-facing"
}

/// The public addresses of a load balancer's fronts.
fn lb_public_ips(lb: &LoadBalancer) -> Vec<Ipv4Addr> {
    lb.zones.iter().filter_map(|z| z.public_ip).collect()
}

/// The Elastic IPs of a NAT gateway's addresses.
fn nat_eips(nat: &NatGateway) -> Vec<Ipv4Addr> {
    nat.addresses.iter().filter_map(|a| a.public_ip).collect()
}

/// The private addresses of a NAT gateway's addresses.
fn nat_private_ips(nat: &NatGateway) -> Vec<Ipv4Addr> {
    nat.addresses.iter().filter_map(|a| a.private_ip).collect()
}

/// The VNI of a NAT gateway's VPC, while the index knows the VPC.
fn nat_vni(m: &Mirror, nat: &NatGateway) -> Option<u32> {
    m.vpc_by_id
        .get(&nat.vpc_id)
        .and_then(|k| m.vpcs.get(k))
        .map(|v| v.vni)
}

/// The mapping keys a NAT gateway's private addresses answer to (none when
/// its VPC is unknown).
fn nat_mapping_keys(m: &Mirror, region: &str, nat: &NatGateway) -> Vec<(String, u32, Ipv4Addr)> {
    let Some(vni) = nat_vni(m, nat) else {
        return Vec::new();
    };
    nat_private_ips(nat)
        .into_iter()
        .map(|ip| (region.to_owned(), vni, ip))
        .collect()
}

/// Every place of NAT gateway `gateway_id`'s shard, in order: its node and,
/// while the node lives, its underlay address (none without a shard).
/// The live hyperplane nodes by region and the shards, for the lifecycles.
fn placement(m: &Mirror) -> super::shards::Placement {
    let mut out = super::shards::Placement::default();
    for n in m.hyperplane.values() {
        out.nodes
            .entry(n.region.clone())
            .or_default()
            .push(n.clone());
    }
    out.shards = m
        .shards
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out
}

fn shard_places(m: &Mirror, region: &str, gateway_id: &str) -> Vec<(String, Option<IpAddr>)> {
    m.shards
        .get(&super::shards::shard_key(region, gateway_id))
        .into_iter()
        .flatten()
        .map(|id| {
            let ip = m
                .hyperplane
                .get(&super::nodes::node_key(Role::Hyperplane, region, id))
                .map(|n| n.underlay_ip);
            (id.clone(), ip)
        })
        .collect()
}

impl Index {
    /// Applies one record's new value (`None`: deleted) to the mirror.
    fn apply(&mut self, key: &str, value: Option<&[u8]>, dirty: &mut Dirty) {
        let record = Record::of(key);
        if record == Record::Host {
            let new: Option<HostRecord> = parse(key, value);
            let old = swap(&mut self.mirror.hosts, key, new.clone());
            // A restarting agent registers again: only a new zone or
            // underlay address changes what anyone was told.
            let used = |h: &Option<HostRecord>| {
                h.as_ref()
                    .map(|h| (h.availability_zone.clone(), h.underlay_ip))
            };
            if used(&old) != used(&new) {
                dirty.deps.push(Dep::Record(key.to_owned()));
                dirty.hosts.push(key.to_owned());
            }
            return;
        }
        if let Record::Node(role) = record {
            let new: Option<NodeRecord> = parse(key, value);
            let nodes = match role {
                Role::Edge => &mut self.mirror.edges,
                Role::Hyperplane => &mut self.mirror.hyperplane,
            };
            let old = swap(nodes, key, new.clone());
            // A heartbeat moves only the expiry.
            let used = |e: &Option<NodeRecord>| e.as_ref().map(|e| e.underlay_ip);
            if used(&old) != used(&new) {
                let region = key.split('/').nth(1).unwrap_or("").to_owned();
                // Nodes are told their shard's places (hyperplane) and
                // where translated packets go (edges) whole.
                dirty.hyperplane_meta.push(region.clone());
                if role == Role::Edge {
                    // Which edge serves each VPN tunnel.
                    dirty.edge_meta.push(region.clone());
                }
                if role == Role::Hyperplane {
                    // Replies to the Elastic IPs of the gateways it serves
                    // now go to it, or to its buddy.
                    let node = id_of(key);
                    let gateways: Vec<String> = self
                        .mirror
                        .shards
                        .iter()
                        .filter(|(k, nodes)| {
                            k.split('/').nth(1) == Some(region.as_str())
                                && nodes.iter().any(|n| n == node)
                        })
                        .map(|(k, _)| id_of(k).to_owned())
                        .collect();
                    for g in gateways {
                        self.touch_nat_eips(&region, &g, dirty);
                        self.touch_lb_public(&region, &g, dirty);
                        self.touch_nat_mappings(&region, &g, dirty);
                    }
                }
                dirty.deps.push(Dep::Nodes(role, region));
            }
            return;
        }
        if record == Record::Shard {
            let new: Option<StoredShard> = parse(key, value);
            let new = new.map(|s| s.nodes);
            if swap(&mut self.mirror.shards, key, new.clone()) != new {
                dirty.deps.push(Dep::Record(key.to_owned()));
                let region = key.split('/').nth(1).unwrap_or("").to_owned();
                self.touch_nat_eips(&region, id_of(key), dirty);
                self.touch_lb_public(&region, id_of(key), dirty);
                self.touch_nat_mappings(&region, id_of(key), dirty);
                dirty.hyperplane_meta.push(region);
            }
            return;
        }
        if record == Record::Settings {
            let new: Option<RegionSettings> = parse(key, value);
            let region = id_of(key).to_owned();
            let old = match new {
                Some(s) => self.mirror.settings.insert(region.clone(), s),
                None => self.mirror.settings.remove(&region),
            };
            if old.as_ref() != self.mirror.settings.get(&region) {
                dirty.edge_meta.push(region);
            }
            return;
        }
        let m = &mut self.mirror;
        let scope = scope(key);
        match record {
            Record::Vpc => {
                let new: Option<Vpc> = parse(key, value);
                let old = swap(&mut m.vpcs, key, new.clone());
                // Compiles read only these: a tag change touches no ENI.
                // The DNS attributes and the DHCP options set are the
                // resolver's and DHCP's (spec 1.4).
                let used = |v: &Option<Vpc>| {
                    v.as_ref().map(|v| {
                        (
                            v.id.clone(),
                            v.vni,
                            v.cidr_block.clone(),
                            v.enable_dns_support,
                            v.enable_dns_hostnames,
                            v.dhcp_options_id.clone(),
                            v.cidr_associations.clone(),
                        )
                    })
                };
                if used(&old) == used(&new) {
                    return;
                }
                for v in old.iter().chain(new.iter()) {
                    dirty.deps.push(Dep::VpcId(v.id.clone()));
                }
                if let Some(v) = &old {
                    m.vpc_by_id.remove(&v.id);
                }
                if let Some(v) = &new {
                    m.vpc_by_id.insert(v.id.clone(), key.to_owned());
                }
            }
            Record::Subnet => {
                let new: Option<Subnet> = parse(key, value);
                let old = swap(&mut m.subnets, key, new.clone());
                // Every address handed out or returned rewrites the subnet
                // (its address book); compiles read only its range, so that
                // must not recompile every ENI of the subnet.
                let used =
                    |s: &Option<Subnet>| s.as_ref().map(|s| (s.cidr_block, s.vpc_id.clone()));
                if used(&old) == used(&new) {
                    return;
                }
                // An IP target's AZ is its subnet's.
                if !m.target_groups.is_empty() {
                    dirty.hyperplane_meta.push(region_of(key).to_owned());
                }
            }
            Record::NetworkAcl => {
                let new: Option<NetworkAcl> = parse(key, value);
                let old = swap(&mut m.acls, key, new.clone());
                if old == new {
                    return;
                }
                let subnets = |a: &Option<NetworkAcl>| {
                    a.iter()
                        .flat_map(|a| &a.associations)
                        .map(|s| rkey(scope, "subnet", &s.subnet_id))
                        .collect::<BTreeSet<_>>()
                };
                // A default ACL's associations are implicit (the subnets
                // without an explicit one), whatever it lists.
                let explicit = |a: &Option<NetworkAcl>| {
                    if a.as_ref().is_some_and(|a| a.is_default) {
                        BTreeSet::new()
                    } else {
                        subnets(a)
                    }
                };
                for s in reassociate(&mut m.acl_of_subnet, key, &explicit(&old), &explicit(&new)) {
                    dirty.deps.push(Dep::AclOf(s));
                }
                let vpc_of = |a: &Option<NetworkAcl>| {
                    a.as_ref()
                        .filter(|a| a.is_default)
                        .map(|a| rkey(scope, "vpc", &a.vpc_id))
                };
                let (was, is) = (vpc_of(&old), vpc_of(&new));
                if was != is {
                    if let Some(vpc) = was
                        && m.default_acl.get(&vpc).is_some_and(|k| k == key)
                    {
                        m.default_acl.remove(&vpc);
                        dirty.deps.push(Dep::DefaultAcl(vpc));
                    }
                    if let Some(vpc) = is {
                        m.default_acl.insert(vpc.clone(), key.to_owned());
                        dirty.deps.push(Dep::DefaultAcl(vpc));
                    }
                }
            }
            Record::RouteTable => {
                let new: Option<RouteTable> = parse(key, value);
                let old = swap(&mut m.tables, key, new.clone());
                if old == new {
                    return;
                }
                let subnets = |t: &Option<RouteTable>| {
                    t.iter()
                        .flat_map(|t| &t.associations)
                        .filter_map(|a| a.subnet_id.as_ref())
                        .map(|s| rkey(scope, "subnet", s))
                        .collect::<BTreeSet<_>>()
                };
                for s in reassociate(&mut m.table_of_subnet, key, &subnets(&old), &subnets(&new)) {
                    dirty.deps.push(Dep::TableOf(s));
                }
                let main_of = |t: &Option<RouteTable>| {
                    t.as_ref()
                        .filter(|t| t.associations.iter().any(|a| a.main))
                        .map(|t| rkey(scope, "vpc", &t.vpc_id))
                };
                let (was, is) = (main_of(&old), main_of(&new));
                if was != is {
                    if let Some(vpc) = was
                        && m.main_table.get(&vpc).is_some_and(|k| k == key)
                    {
                        m.main_table.remove(&vpc);
                        dirty.deps.push(Dep::MainTable(vpc));
                    }
                    if let Some(vpc) = is {
                        m.main_table.insert(vpc.clone(), key.to_owned());
                        dirty.deps.push(Dep::MainTable(vpc));
                    }
                }
            }
            Record::SecurityGroup => {
                let new = parse(key, value);
                if swap(&mut m.groups, key, new.clone()) == new {
                    return;
                }
            }
            Record::DhcpOptions => {
                let new = parse(key, value);
                if swap(&mut m.dhcp_options, key, new.clone()) == new {
                    return;
                }
            }
            Record::PrefixList => {
                let new = parse(key, value);
                if swap(&mut m.lists, key, new.clone()) == new {
                    return;
                }
            }
            Record::Peering => {
                let new = parse(key, value);
                if swap(&mut m.peerings, key, new.clone()) == new {
                    return;
                }
            }
            Record::Instance => {
                let new: Option<Instance> = parse(key, value);
                let old = swap(&mut m.instances, key, new.clone());
                // Compiles read only whether it exists and its state.
                let used = |i: &Option<Instance>| i.as_ref().map(|i| i.state);
                if used(&old) == used(&new) {
                    return;
                }
                // A load balancer's target: its state is the nodes' news.
                if self.lb_instances.contains_key(key) {
                    dirty.hyperplane_meta.push(region_of(key).to_owned());
                }
            }
            Record::NetworkInterface => {
                let new: Option<NetworkInterface> = parse(key, value);
                let old = swap(&mut m.enis, key, new.clone());
                if old == new {
                    return;
                }
                dirty.enis.push(key.to_owned());
                // The VPC's public addresses, whose names its resolver
                // answers: every ENI of the VPC reads them.
                let named = |e: &Option<NetworkInterface>| {
                    e.as_ref().filter(|e| !e.public.is_empty()).map(|e| {
                        let public: Vec<_> = e
                            .public
                            .iter()
                            .map(|p| (p.private_ip, p.public_ip))
                            .collect();
                        (e.vpc_id.clone(), public)
                    })
                };
                if named(&old) != named(&new) {
                    for (vpc, _) in named(&old).into_iter().chain(named(&new)) {
                        dirty.deps.push(Dep::VpcAddresses(vpc));
                    }
                }
                let vpc_of = |e: &Option<NetworkInterface>| e.as_ref().map(|e| e.vpc_id.clone());
                if vpc_of(&old) != vpc_of(&new) {
                    if let Some(vpc) = vpc_of(&old)
                        && let Some(set) = m.enis_of_vpc.get_mut(&vpc)
                    {
                        set.remove(key);
                        if set.is_empty() {
                            m.enis_of_vpc.remove(&vpc);
                        }
                    }
                    if let Some(vpc) = vpc_of(&new) {
                        m.enis_of_vpc.entry(vpc).or_default().insert(key.to_owned());
                    }
                }
                // Membership of groups: who carries which, with which addresses.
                let groups = |e: &Option<NetworkInterface>| {
                    e.iter()
                        .flat_map(|e| &e.groups)
                        .map(|g| rkey(scope, "sg", &g.id))
                        .collect::<BTreeSet<_>>()
                };
                let (was_in, is_in) = (groups(&old), groups(&new));
                let ips = |e: &Option<NetworkInterface>| e.as_ref().map(|e| e.private_ips.clone());
                let touched: Vec<&Key> = if ips(&old) == ips(&new) {
                    was_in.symmetric_difference(&is_in).collect()
                } else {
                    was_in.union(&is_in).collect()
                };
                for g in touched {
                    dirty.deps.push(Dep::Members(g.clone()));
                }
                for g in was_in.difference(&is_in) {
                    if let Some(set) = m.members.get_mut(g) {
                        set.remove(key);
                        if set.is_empty() {
                            m.members.remove(g);
                        }
                    }
                }
                for g in &is_in {
                    m.members
                        .entry(g.clone())
                        .or_default()
                        .insert(key.to_owned());
                }
                // Attachment: which instance's ENIs it is among.
                let instance = |e: &Option<NetworkInterface>| {
                    e.as_ref()
                        .and_then(|e| e.attachment.as_ref())
                        .map(|a| (rkey(scope, "i", &a.instance_id), a.device_index))
                };
                let (was, is) = (instance(&old), instance(&new));
                // An ENI of a load balancer's target: its address is the
                // nodes' news.
                if was
                    .iter()
                    .chain(is.iter())
                    .any(|(i, _)| self.lb_instances.contains_key(i))
                {
                    dirty.hyperplane_meta.push(region_of(key).to_owned());
                }
                if was != is {
                    if let Some((i, _)) = &was {
                        if let Some(set) = m.instance_enis.get_mut(i) {
                            set.remove(key);
                            if set.is_empty() {
                                m.instance_enis.remove(i);
                            }
                        }
                        dirty.deps.push(Dep::InstanceEnis(i.clone()));
                    }
                    if let Some((i, _)) = &is {
                        m.instance_enis
                            .entry(i.clone())
                            .or_default()
                            .insert(key.to_owned());
                        dirty.deps.push(Dep::InstanceEnis(i.clone()));
                    }
                }
            }
            Record::Gateway => {
                // A NAT gateway's whole record: its nodes translate for it.
                if key.rsplit('/').nth(1) == Some("nat") {
                    let nat: Option<NatGateway> = parse(key, value);
                    let old = swap(&mut m.nats, key, nat.clone());
                    if old != nat {
                        let region = region_of(key).to_owned();
                        dirty.hyperplane_meta.push(region.clone());
                        // The edges' view of its Elastic IPs: held while it
                        // is pending or available, by whoever holds it now.
                        for ip in old.iter().flat_map(nat_eips) {
                            let k = (region.clone(), ip);
                            if self.nat_public.get(&k).is_some_and(|g| g == key) {
                                self.nat_public.remove(&k);
                            }
                            dirty.public.push(k);
                        }
                        let id = (region.clone(), id_of(key).to_owned());
                        match &nat {
                            Some(_) => self.nat_by_id.insert(id, key.to_owned()),
                            None => self.nat_by_id.remove(&id),
                        };
                        for n in nat.iter().filter(|n| serves_public(n)) {
                            for ip in nat_eips(n) {
                                let k = (region.clone(), ip);
                                self.nat_public.insert(k.clone(), key.to_owned());
                                dirty.public.push(k);
                            }
                        }
                        // The mapping service's view of its private
                        // addresses: what answers for them (its nodes,
                        // while it holds a shard) and under which ENI.
                        for ip in old.iter().flat_map(nat_private_ips) {
                            let k = (region.clone(), ip);
                            if let Some(set) = self.nat_private.get_mut(&k) {
                                set.remove(key);
                                if set.is_empty() {
                                    self.nat_private.remove(&k);
                                }
                            }
                        }
                        for ip in nat.iter().flat_map(nat_private_ips) {
                            self.nat_private
                                .entry((region.clone(), ip))
                                .or_default()
                                .insert(key.to_owned());
                        }
                        let answers = |n: &Option<NatGateway>| {
                            n.as_ref().filter(|n| n.state.holds_shard()).map(|n| {
                                (
                                    n.vpc_id.clone(),
                                    nat_private_ips(n),
                                    n.network_interface_id.clone(),
                                )
                            })
                        };
                        if answers(&old) != answers(&nat) {
                            for n in old.iter().chain(nat.iter()) {
                                dirty.mappings.extend(nat_mapping_keys(m, &region, n));
                            }
                        }
                    }
                }
                let new = value.and_then(|v| gateway_record(key, v));
                let old = swap(&mut m.gateways, key, new.clone());
                if old == new {
                    return;
                }
                let is_igw = key.rsplit('/').nth(1) == Some("igw");
                let attached = |g: &Option<TargetRecord>| g.as_ref().and_then(|g| g.vpc_id.clone());
                // The edges serve a VPN gateway's tunnels into the VPC it
                // is attached to.
                if key.rsplit('/').nth(1) == Some("vgw") {
                    dirty.edge_meta.push(region_of(key).to_owned());
                }
                if is_igw && attached(&old) != attached(&new) {
                    dirty.edge_meta.push(region_of(key).to_owned());
                    // A public NAT gateway's nodes send to the edges only
                    // while its VPC has an internet gateway.
                    dirty.hyperplane_meta.push(region_of(key).to_owned());
                }
            }
            Record::LoadBalancer => {
                let new: Option<LoadBalancer> = parse(key, value);
                let old = swap(&mut m.lbs, key, new.clone());
                // Any change may be news for the nodes of its shard.
                dirty.hyperplane_meta.push(region_of(key).to_owned());
                if let Some(lb) = &old
                    && let Some(set) = m.lbs_of_vpc.get_mut(&lb.vpc_id)
                {
                    set.remove(key);
                    if set.is_empty() {
                        m.lbs_of_vpc.remove(&lb.vpc_id);
                    }
                }
                if let Some(lb) = &new {
                    m.lbs_of_vpc
                        .entry(lb.vpc_id.clone())
                        .or_default()
                        .insert(key.to_owned());
                }
                let region = region_of(key).to_owned();
                if let Some(lb) = &old {
                    self.lb_by_gateway
                        .remove(&(region.clone(), lb.gateway_id()));
                }
                if let Some(lb) = &new {
                    self.lb_by_gateway
                        .insert((region.clone(), lb.gateway_id()), key.to_owned());
                }
                // The edges' view of its fronts' public addresses: held
                // while it is served, by whoever holds them now.
                for ip in old.iter().flat_map(lb_public_ips) {
                    let k = (region.clone(), ip);
                    if self.lb_public.get(&k).is_some_and(|l| l == key) {
                        self.lb_public.remove(&k);
                    }
                    dirty.public.push(k);
                }
                for ip in new
                    .iter()
                    .filter(|lb| lb_is_public(lb))
                    .flat_map(lb_public_ips)
                {
                    let k = (region.clone(), ip);
                    self.lb_public.insert(k.clone(), key.to_owned());
                    dirty.public.push(k);
                }
                // The hosts' routes read only whether it is served and its
                // fronts' addresses; their resolvers, its name and public
                // addresses too.
                let fronts = |lb: &Option<LoadBalancer>| {
                    lb.as_ref()
                        .filter(|lb| super::lb_lifecycle::is_served(lb.state))
                        .map(|lb| {
                            (
                                lb.vpc_id.clone(),
                                lb.zones
                                    .iter()
                                    .map(|z| (z.private_ip, z.public_ip))
                                    .collect::<Vec<_>>(),
                                (lb.name.clone(), lb.scheme.clone()),
                            )
                        })
                };
                let (was, is) = (fronts(&old), fronts(&new));
                if was != is {
                    for (vpc, _, _) in was.into_iter().chain(is) {
                        dirty.deps.push(Dep::LoadBalancers(vpc));
                    }
                }
                return;
            }
            Record::TargetGroup => {
                let new: Option<TargetGroup> = parse(key, value);
                let old = swap(&mut m.target_groups, key, new.clone());
                dirty.hyperplane_meta.push(region_of(key).to_owned());
                let instances = |tg: &Option<TargetGroup>| -> Vec<Key> {
                    tg.iter()
                        .filter(|tg| tg.target_type == "instance")
                        .flat_map(|tg| &tg.targets)
                        .map(|t| rkey(scope, "i", &t.id))
                        .collect()
                };
                for i in instances(&old) {
                    if let Some(n) = self.lb_instances.get_mut(&i) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.lb_instances.remove(&i);
                        }
                    }
                }
                for i in instances(&new) {
                    *self.lb_instances.entry(i).or_default() += 1;
                }
                return;
            }
            Record::ElbListener => {
                let new: Option<ElbListener> = parse(key, value);
                swap(&mut m.elb_listeners, key, new);
                dirty.hyperplane_meta.push(region_of(key).to_owned());
                return;
            }
            Record::VpnConnection | Record::VpnTelemetry => {
                let vpn_key = match record {
                    Record::VpnTelemetry => rkey(scope, "vpn", id_of(key)),
                    _ => key.to_owned(),
                };
                let changed = if record == Record::VpnConnection {
                    let new: Option<VpnConnection> = parse(key, value);
                    let old = swap(&mut m.vpns, key, new.clone());
                    for v in old.iter().chain(new.iter()) {
                        if let Some(vgw) = &v.vpn_gateway_id {
                            dirty.deps.push(Dep::Record(rkey(scope, "vgw", vgw)));
                        }
                    }
                    old != new
                } else {
                    let new: Option<VpnTelemetry> = parse(key, value);
                    let old = swap(&mut m.vpn_telemetry, &vpn_key, new.clone());
                    if let Some(vgw) = m.vpns.get(&vpn_key).and_then(|v| v.vpn_gateway_id.clone()) {
                        dirty.deps.push(Dep::Record(rkey(scope, "vgw", &vgw)));
                    }
                    old != new
                };
                if changed {
                    // The edges are told every tunnel and the gateways'
                    // routes whole.
                    dirty.edge_meta.push(region_of(key).to_owned());
                }
                return;
            }
            Record::FlowLog => {
                let new: Option<FlowLog> = parse(key, value);
                let old = swap(&mut m.flow_logs, key, new.clone());
                // Compiles read which flow logs cover a resource and how
                // they count; the delivery status is the server's own news.
                let used = |f: &Option<FlowLog>| {
                    f.as_ref().map(|f| {
                        (
                            f.resource_id.clone(),
                            f.traffic_type.clone(),
                            f.max_aggregation_interval,
                        )
                    })
                };
                if used(&old) == used(&new) {
                    return;
                }
                if let Some(f) = &old {
                    m.flow_log_by_id.remove(&f.id);
                    if let Some(set) = m.flow_logs_of.get_mut(&f.resource_id) {
                        set.remove(key);
                        if set.is_empty() {
                            m.flow_logs_of.remove(&f.resource_id);
                        }
                    }
                    dirty.deps.push(Dep::FlowLogsOf(f.resource_id.clone()));
                }
                if let Some(f) = &new {
                    m.flow_log_by_id.insert(f.id.clone(), key.to_owned());
                    m.flow_logs_of
                        .entry(f.resource_id.clone())
                        .or_default()
                        .insert(key.to_owned());
                    dirty.deps.push(Dep::FlowLogsOf(f.resource_id.clone()));
                }
                // A NAT gateway's nodes log its ENI (whole assignments:
                // rare enough to tell them all).
                dirty.hyperplane_meta.push(region_of(key).to_owned());
                return;
            }
            Record::Host | Record::Node(_) | Record::Shard | Record::Settings | Record::Ignored => {
                return;
            }
        }
        // A private NAT gateway's nodes are told its subnet's routes to the
        // VPC and its peers whole, and a logged gateway's nodes its
        // subnet's routes (`traffic-path`): coarsely, any change of what
        // those read is news for the region's nodes while it has such a
        // gateway.
        if matches!(
            record,
            Record::RouteTable | Record::Peering | Record::PrefixList | Record::Vpc
        ) && self.nodes_read_routes(region_of(key))
        {
            dirty.hyperplane_meta.push(region_of(key).to_owned());
        }
        dirty.deps.push(Dep::Record(key.to_owned()));
    }

    /// Whether `region` has a NAT gateway its nodes serve that is private,
    /// or a NAT gateway or load balancer a flow log may cover (the region
    /// has flow logs).
    fn nodes_read_routes(&self, region: &str) -> bool {
        let logged = self.mirror.flow_logs.keys().any(|k| region_of(k) == region);
        let nats = self
            .nat_by_id
            .iter()
            .filter(|((r, _), _)| r == region)
            .filter_map(|(_, k)| self.mirror.nats.get(k))
            .any(|n| n.state.holds_shard() && (logged || n.connectivity_type == "private"));
        nats || (logged && self.mirror.lbs.keys().any(|k| region_of(k) == region))
    }

    /// The ENIs that read any of `deps`, plus `enis`.
    fn affected(&self, dirty: &Dirty) -> BTreeSet<Key> {
        let mut out: BTreeSet<Key> = dirty.enis.iter().cloned().collect();
        for dep in &dirty.deps {
            if let Some(readers) = self.readers.get(dep) {
                out.extend(readers.iter().cloned());
            }
        }
        out
    }

    fn invalidate(
        &mut self,
        revision: Revision,
        region: &str,
        vni: u32,
        ips: &[Ipv4Addr],
        log: bool,
    ) {
        if !log {
            return;
        }
        let base = self.base;
        let entries = self
            .invalidations
            .entry(region.to_owned())
            .or_insert_with(|| Log::new(base));
        for ip in ips {
            entries.push(
                revision,
                MappingKey {
                    vni,
                    ip: IpAddr::V4(*ip),
                },
            );
        }
    }

    fn log_public(&mut self, revision: Revision, region: &str, ips: &[Ipv4Addr], log: bool) {
        if !log || ips.is_empty() {
            return;
        }
        let base = self.base;
        let entries = self
            .public_log
            .entry(region.to_owned())
            .or_insert_with(|| Log::new(base));
        for ip in ips {
            entries.push(revision, *ip);
        }
    }

    fn log_host(&mut self, revision: Revision, host: &str, eni: &str, log: bool) {
        let base = self.base;
        let entries = self
            .host_logs
            .entry(host.to_owned())
            .or_insert_with(|| Log::new(base));
        if log {
            entries.push(revision, eni.to_owned());
        }
    }

    /// Compiles `eni` again and records what changed at `revision`.
    fn recompile(&mut self, revision: Revision, eni: &str, log: bool) {
        if log {
            self.compiles += 1;
        }
        let mut deps = Vec::new();
        let compiled = match compile(&self.mirror, eni, &mut deps) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "fleet: ENI left off its host");
                None
            }
        };
        // Re-point the reverse index at what this compile read.
        if let Some(old) = self.reads.remove(eni) {
            for dep in old {
                if let Some(set) = self.readers.get_mut(&dep) {
                    set.remove(eni);
                    if set.is_empty() {
                        self.readers.remove(&dep);
                    }
                }
            }
        }
        deps.sort();
        deps.dedup();
        for dep in &deps {
            self.readers
                .entry(dep.clone())
                .or_default()
                .insert(eni.to_owned());
        }
        self.reads.insert(eni.to_owned(), deps);

        let old = self.live.get(eni).cloned();
        if old == compiled {
            return;
        }
        let region = region_of(eni).to_owned();
        // The mapping service's view.
        let (old_sig, new_sig) = (
            old.as_ref().map(MapSig::of),
            compiled.as_ref().map(MapSig::of),
        );
        if old_sig != new_sig {
            // Only the addresses whose answer changed are announced: all of
            // them when the ENI moved, changed MAC or VPC, came or went.
            let same_owner = matches!((&old_sig, &new_sig), (Some(o), Some(n))
                if o.vni == n.vni && o.host == n.host && o.mac == n.mac);
            if let Some(sig) = &old_sig {
                let gone: Vec<Ipv4Addr> = sig
                    .ips
                    .iter()
                    .filter(|ip| {
                        !same_owner || new_sig.as_ref().is_none_or(|n| !n.ips.contains(ip))
                    })
                    .copied()
                    .collect();
                for ip in &sig.ips {
                    let k = (region.clone(), sig.vni, *ip);
                    if self.mappings.get(&k).is_some_and(|owner| owner == eni) {
                        self.mappings.remove(&k);
                    }
                }
                self.invalidate(revision, &region, sig.vni, &gone, log);
            }
            if let Some(sig) = &new_sig {
                for ip in &sig.ips {
                    self.mappings
                        .insert((region.clone(), sig.vni, *ip), eni.to_owned());
                }
                let fresh: Vec<Ipv4Addr> = sig
                    .ips
                    .iter()
                    .filter(|ip| {
                        !same_owner || old_sig.as_ref().is_none_or(|o| !o.ips.contains(ip))
                    })
                    .copied()
                    .collect();
                self.invalidate(revision, &region, sig.vni, &fresh, log);
            }
        }
        // The edges' view.
        let (old_pub, new_pub) = (
            old.as_ref().and_then(PubSig::of),
            compiled.as_ref().and_then(PubSig::of),
        );
        if old_pub != new_pub {
            let mut touched = Vec::new();
            if let Some(sig) = &old_pub {
                for p in &sig.public {
                    let k = (region.clone(), p.public);
                    if self.public.get(&k).is_some_and(|owner| owner == eni) {
                        self.public.remove(&k);
                    }
                    touched.push(p.public);
                }
            }
            if let Some(sig) = &new_pub {
                for p in &sig.public {
                    self.public
                        .insert((region.clone(), p.public), eni.to_owned());
                    touched.push(p.public);
                }
            }
            self.log_public(revision, &region, &touched, log);
        }
        // The hosts' view.
        if let Some(old) = &old
            && compiled.as_ref().is_none_or(|c| c.host != old.host)
        {
            if let Some(set) = self.host_enis.get_mut(&old.host) {
                set.remove(eni);
            }
            self.log_host(revision, &old.host, eni, log);
        }
        match compiled {
            Some(c) => {
                self.host_enis
                    .entry(c.host.clone())
                    .or_default()
                    .insert(eni.to_owned());
                self.log_host(revision, &c.host, eni, log);
                self.live.insert(eni.to_owned(), c);
            }
            None => {
                self.live.remove(eni);
            }
        }
    }

    /// Applies one revision's events and compiles what they touched.
    fn apply_revision(&mut self, revision: Revision, events: &[&Event], log: bool) {
        let mut dirty = Dirty::default();
        for event in events {
            let Ok(key) = std::str::from_utf8(&event.key) else {
                continue;
            };
            let value = match event.kind {
                EventKind::Put => event.value.as_deref(),
                EventKind::Delete => None,
            };
            self.apply(key, value, &mut dirty);
        }
        // A host that moved or left changes the mapping of everything on it.
        for host in &dirty.hosts {
            let on_host: Vec<(u32, Vec<Ipv4Addr>)> = self
                .host_enis
                .get(host)
                .into_iter()
                .flatten()
                .filter_map(|e| self.live.get(e))
                .map(|c| (c.state.vni, c.state.ipv4.clone()))
                .collect();
            let region = host.split('/').nth(1).unwrap_or("").to_owned();
            for (vni, ips) in on_host {
                self.invalidate(revision, &region, vni, &ips, log);
            }
            // Its public addresses now lead elsewhere too.
            let public: Vec<Ipv4Addr> = self
                .host_enis
                .get(host)
                .into_iter()
                .flatten()
                .filter_map(|e| self.live.get(e))
                .flat_map(|c| c.state.public_ipv4.iter().map(|p| p.public))
                .collect();
            self.log_public(revision, &region, &public, log);
        }
        for (region, ip) in std::mem::take(&mut dirty.public) {
            self.log_public(revision, &region, &[ip], log);
        }
        for (region, vni, ip) in std::mem::take(&mut dirty.mappings) {
            self.invalidate(revision, &region, vni, &[ip], log);
        }
        if log {
            for region in dirty.hyperplane_meta.drain(..) {
                self.hyperplane_meta.insert(region, revision);
            }
            for region in dirty.edge_meta.drain(..) {
                self.edge_meta.insert(region, revision);
            }
        }
        for eni in self.affected(&dirty) {
            self.recompile(revision, &eni, log);
        }
        self.revision = self.revision.max(revision);
    }

    /// Marks the Elastic IPs of NAT gateway `gateway_id` of `region` as
    /// changed for the edges (its shard or a node of it changed).
    fn touch_nat_eips(&self, region: &str, gateway_id: &str, dirty: &mut Dirty) {
        let nat = self
            .nat_by_id
            .get(&(region.to_owned(), gateway_id.to_owned()))
            .and_then(|k| self.mirror.nats.get(k));
        for ip in nat.iter().flat_map(|n| nat_eips(n)) {
            dirty.public.push((region.to_owned(), ip));
        }
    }

    /// Marks the public addresses of load balancer `gateway_id` (`elb-…`)
    /// of `region` as changed for the edges (its shard or a node of it
    /// changed).
    fn touch_lb_public(&self, region: &str, gateway_id: &str, dirty: &mut Dirty) {
        let lb = self
            .lb_by_gateway
            .get(&(region.to_owned(), gateway_id.to_owned()))
            .and_then(|k| self.mirror.lbs.get(k));
        for ip in lb.iter().flat_map(|lb| lb_public_ips(lb)) {
            dirty.public.push((region.to_owned(), ip));
        }
    }

    /// Marks the private addresses of NAT gateway `gateway_id` of `region`
    /// as changed for the hosts (its shard or a node of it changed, so the
    /// node the mapping service names may have).
    fn touch_nat_mappings(&self, region: &str, gateway_id: &str, dirty: &mut Dirty) {
        let nat = self
            .nat_by_id
            .get(&(region.to_owned(), gateway_id.to_owned()))
            .and_then(|k| self.mirror.nats.get(k));
        if let Some(n) = nat {
            dirty
                .mappings
                .extend(nat_mapping_keys(&self.mirror, region, n));
        }
    }

    /// What the mapping service answers for `ip` in `vni` of `region` when
    /// it is a private address of a pending or available NAT gateway of
    /// that VPC: the first live node of its shard in place order (a dead
    /// place's buddy), with the gateway's ENI and MAC, which the hosts
    /// address its replies to. None while no node of its shard lives.
    fn nat_mapping(&self, region: &str, vni: u32, ip: Ipv4Addr) -> Option<MappingRecord> {
        let m = &self.mirror;
        let nat = self
            .nat_private
            .get(&(region.to_owned(), ip))?
            .iter()
            .filter_map(|k| m.nats.get(k))
            .find(|n| n.state.holds_shard() && nat_vni(m, n) == Some(vni))?;
        let places: Vec<Option<IpAddr>> = shard_places(m, region, &nat.id)
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let underlay_ip = serving_places(&places).into_iter().next().flatten()?;
        Some(MappingRecord {
            underlay_ip,
            eni_id: nat.network_interface_id.clone().unwrap_or_default(),
            mac: gateway_mac(&nat.id).to_string(),
        })
    }

    /// What an edge node of `region` translates for `public`, if anyone
    /// running holds it: an ENI on a host, or else a NAT gateway.
    fn edge_mapping(&self, region: &str, public: Ipv4Addr) -> Option<EdgeMapping> {
        self.eni_edge_mapping(region, public)
            .or_else(|| self.nat_edge_mapping(region, public))
            .or_else(|| self.lb_edge_mapping(region, public))
    }

    /// What an edge translates for the public address `public` of an
    /// internet-facing load balancer's front (issue 17): to the front's
    /// private address, handed to its shard's nodes per place as a NAT
    /// gateway's (`nat_nodes`: the edge picks the place by the packet's
    /// port; the place picks the target and keeps the flow). None while no
    /// node of its shard lives, so the edge drops what comes for it.
    fn lb_edge_mapping(&self, region: &str, public: Ipv4Addr) -> Option<EdgeMapping> {
        let m = &self.mirror;
        let lb = self
            .lb_public
            .get(&(region.to_owned(), public))
            .and_then(|k| m.lbs.get(k))
            .filter(|lb| lb_is_public(lb))?;
        let zone = lb.zones.iter().find(|z| z.public_ip == Some(public))?;
        let private = zone.private_ip?;
        let vni = m.vpc_by_id.get(&lb.vpc_id).and_then(|k| m.vpcs.get(k))?.vni;
        let gateway_id = lb.gateway_id();
        let places: Vec<Option<IpAddr>> = shard_places(m, region, &gateway_id)
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let nat_nodes: Vec<IpAddr> = serving_places(&places).into_iter().collect::<Option<_>>()?;
        Some(EdgeMapping {
            public,
            vni,
            private,
            host: *nat_nodes.first()?,
            mac: gateway_mac(&gateway_id).to_string(),
            eni_id: zone.network_interface_id.clone().unwrap_or_default(),
            nat_nodes,
        })
    }

    /// What an edge translates for the Elastic IP `public` of a pending or
    /// available public NAT gateway: to the private address it is paired
    /// with, and replies to the node serving the place of their port
    /// (`nat_nodes`; a dead node's place goes to its buddy). None while no
    /// node of its shard lives, so the edge drops what comes for it.
    fn nat_edge_mapping(&self, region: &str, public: Ipv4Addr) -> Option<EdgeMapping> {
        let m = &self.mirror;
        let nat = self
            .nat_public
            .get(&(region.to_owned(), public))
            .and_then(|k| m.nats.get(k))
            .filter(|n| serves_public(n))?;
        let private = nat
            .addresses
            .iter()
            .find(|a| a.public_ip == Some(public))?
            .private_ip?;
        let vni = m
            .vpc_by_id
            .get(&nat.vpc_id)
            .and_then(|k| m.vpcs.get(k))?
            .vni;
        let places: Vec<Option<IpAddr>> = shard_places(m, region, &nat.id)
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        let nat_nodes: Vec<IpAddr> = serving_places(&places).into_iter().collect::<Option<_>>()?;
        Some(EdgeMapping {
            public,
            vni,
            private,
            host: *nat_nodes.first()?,
            mac: gateway_mac(&nat.id).to_string(),
            eni_id: nat.network_interface_id.clone().unwrap_or_default(),
            nat_nodes,
        })
    }

    /// What an edge translates for `public` held by a running ENI.
    fn eni_edge_mapping(&self, region: &str, public: Ipv4Addr) -> Option<EdgeMapping> {
        let eni = self.public.get(&(region.to_owned(), public))?;
        let c = self.live.get(eni)?;
        let host = self.mirror.hosts.get(&c.host)?;
        let p = c.state.public_ipv4.iter().find(|p| p.public == public)?;
        Some(EdgeMapping {
            public,
            vni: c.state.vni,
            private: p.private,
            host: host.underlay_ip,
            mac: c.state.mac.clone(),
            eni_id: c.state.eni_id.clone(),
            nat_nodes: Vec::new(),
        })
    }

    /// The VNIs of `region`'s VPCs with an internet gateway attached.
    fn attached_vnis(&self, region: &str) -> Vec<u32> {
        let m = &self.mirror;
        let mut vnis: Vec<u32> = m
            .gateways
            .iter()
            .filter(|(k, _)| region_of(k) == region && k.rsplit('/').nth(1) == Some("igw"))
            .filter_map(|(_, g)| g.vpc_id.as_ref())
            .filter_map(|vpc| m.vpc_by_id.get(vpc).and_then(|k| m.vpcs.get(k)))
            .map(|v| v.vni)
            .collect();
        vnis.sort_unstable();
        vnis.dedup();
        vnis
    }

    /// What an edge node of `region` must change since `since`.
    fn edge_delta(&self, region: &str, since: Revision) -> EdgeDelta {
        let mut delta = EdgeDelta {
            revision: self.revision,
            attached_vnis: self.attached_vnis(region),
            public_pool: self
                .mirror
                .settings
                .get(region)
                .map_or_else(default_public_pool, |s| s.public_pool.clone()),
            vpn_tunnels: self.mirror.vpn_tunnels(region),
            vgw_routes: self.mirror.vgw_routes(region),
            ..EdgeDelta::default()
        };
        let empty = Log::new(self.base);
        let log = self.public_log.get(region).unwrap_or(&empty);
        let changed = (since != 0 && since <= self.revision)
            .then(|| log.since(since))
            .flatten();
        match changed {
            Some(changed) => {
                let mut seen = HashSet::new();
                for ip in changed {
                    if !seen.insert(*ip) {
                        continue;
                    }
                    match self.edge_mapping(region, *ip) {
                        Some(m) => delta.upserts.push(m),
                        None => delta.removals.push(*ip),
                    }
                }
                delta.removals.sort();
            }
            None => {
                delta.full = true;
                let held: BTreeSet<Ipv4Addr> = self
                    .public
                    .keys()
                    .chain(self.nat_public.keys())
                    .chain(self.lb_public.keys())
                    .filter(|(r, _)| r == region)
                    .map(|(_, ip)| *ip)
                    .collect();
                delta.upserts = held
                    .into_iter()
                    .filter_map(|ip| self.edge_mapping(region, ip))
                    .collect();
            }
        }
        delta.upserts.sort_by_key(|m| m.public);
        delta
    }

    /// Whether an edge that saw `since` has something new.
    fn edge_changed(&self, region: &str, since: Revision) -> bool {
        self.edge_meta.get(region).is_some_and(|r| *r > since)
    }

    /// The delta of `host` since `since`.
    fn delta(&self, host: &str, region: &str, since: Revision) -> HostDelta {
        let full = || {
            let mut upserts: Vec<EniState> = self
                .host_enis
                .get(host)
                .into_iter()
                .flatten()
                .filter_map(|e| self.live.get(e))
                .map(|c| c.state.clone())
                .collect();
            upserts.sort_by(|a, b| a.eni_id.cmp(&b.eni_id));
            HostDelta {
                revision: self.revision,
                full: true,
                upserts,
                removals: Vec::new(),
                invalidations: Vec::new(),
            }
        };
        if since == 0 || since > self.revision {
            return full();
        }
        let empty = Log::new(self.base);
        let host_log = self.host_logs.get(host).unwrap_or(&empty);
        let inv_empty = Log::new(self.base);
        let inv_log = self.invalidations.get(region).unwrap_or(&inv_empty);
        let (Some(changed), Some(invalid)) = (host_log.since(since), inv_log.since(since)) else {
            return full();
        };
        let mut seen = HashSet::new();
        let mut upserts = Vec::new();
        let mut removals = Vec::new();
        for eni in changed {
            if !seen.insert(eni) {
                continue;
            }
            let here = self.host_enis.get(host).is_some_and(|s| s.contains(eni));
            match self.live.get(eni) {
                Some(c) if here => upserts.push(c.state.clone()),
                _ => removals.push(id_of(eni).to_owned()),
            }
        }
        upserts.sort_by(|a: &EniState, b| a.eni_id.cmp(&b.eni_id));
        removals.sort();
        let mut seen = HashSet::new();
        let invalidations = invalid.filter(|k| seen.insert(**k)).copied().collect();
        HostDelta {
            revision: self.revision,
            full: false,
            upserts,
            removals,
            invalidations,
        }
    }
}

/// The fleet index of one server process, shared by the agent API handlers
/// and the tailer thread.
pub struct Fleet {
    store: Arc<dyn Store>,
    index: Mutex<Index>,
    /// Held while reading and applying the change log, so catch-ups from
    /// handlers and the tailer do not interleave.
    applying: Mutex<()>,
    /// The index's revision, for watchers waiting on a change.
    revision: tokio::sync::watch::Sender<Revision>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("revision", &*self.revision.borrow())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads every key under `prefix` in pages.
fn scan(store: &dyn Store, prefix: &[u8]) -> Result<Vec<RawEntry>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.range(prefix, after.as_deref(), BATCH)?;
        let done = page.len() < BATCH;
        after = page.last().map(|kv| kv.key.clone());
        out.extend(page.into_iter().map(|kv| (kv.key, kv.value)));
        if done || after.is_none() {
            return Ok(out);
        }
    }
}

/// Builds an index of the store as it is now.
fn build(store: &dyn Store) -> Result<Index, StoreError> {
    let revision = store.revision()?;
    let mut index = Index {
        revision,
        base: revision,
        ..Index::default()
    };
    let mut events = Vec::new();
    for prefix in [
        &b"r/"[..],
        super::registry::HOSTS_PREFIX.as_bytes(),
        super::nodes::EDGES_PREFIX.as_bytes(),
        super::nodes::HYPERPLANE_PREFIX.as_bytes(),
        super::shards::SHARDS_PREFIX.as_bytes(),
        crate::records::region::SETTINGS_PREFIX.as_bytes(),
    ] {
        for (key, value) in scan(store, prefix)? {
            events.push(Event {
                revision,
                kind: EventKind::Put,
                key,
                value: Some(value),
            });
        }
    }
    let refs: Vec<&Event> = events.iter().collect();
    index.apply_revision(revision, &refs, false);
    Ok(index)
}

impl Fleet {
    /// Builds the index from the store's current contents.
    pub fn load(store: Arc<dyn Store>) -> Result<Arc<Fleet>, FleetError> {
        let index = build(store.as_ref())?;
        let (revision, _) = tokio::sync::watch::channel(index.revision);
        let fleet = Arc::new(Fleet {
            store,
            index: Mutex::new(index),
            applying: Mutex::new(()),
            revision,
        });
        // Changes that landed during the scan.
        fleet.catch_up()?;
        Ok(fleet)
    }

    /// The store the index follows.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store revision the index reflects.
    pub fn revision(&self) -> Revision {
        lock(&self.index).revision
    }

    /// A receiver that sees the index's revision change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Applies every change the store has committed since the index's
    /// revision; returns the new revision. Rebuilds the index (so agents get
    /// full states) if the store compacted history the index had not read.
    pub fn catch_up(&self) -> Result<Revision, FleetError> {
        let _applying = lock(&self.applying);
        let mut from = lock(&self.index).revision;
        let head = self.store.revision()?;
        loop {
            if from >= head {
                break;
            }
            let events = match self.store.changes(b"", from, BATCH) {
                Ok(events) => events,
                Err(StoreError::Compacted { .. }) => {
                    tracing::warn!(from, "fleet: change log compacted, rebuilding the index");
                    let index = build(self.store.as_ref())?;
                    from = index.revision;
                    *lock(&self.index) = index;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let Some(last) = events.last().map(|e| e.revision) else {
                break;
            };
            let mut by_revision: BTreeMap<Revision, Vec<&Event>> = BTreeMap::new();
            for e in &events {
                by_revision.entry(e.revision).or_default().push(e);
            }
            let mut index = lock(&self.index);
            for (revision, events) in by_revision {
                index.apply_revision(revision, &events, true);
            }
            drop(index);
            from = last;
        }
        let mut index = lock(&self.index);
        index.revision = index.revision.max(head);
        let revision = index.revision;
        drop(index);
        self.revision.send_if_modified(|r| {
            let changed = *r != revision;
            *r = revision;
            changed
        });
        Ok(revision)
    }

    /// What changed on `host_id` of `region` since `since` (0: everything).
    pub fn delta(&self, region: &str, host_id: &str, since: Revision) -> HostDelta {
        lock(&self.index).delta(&host_key(region, host_id), region, since)
    }

    /// The NAT gateways hyperplane node `node_id` of `region` serves (whole),
    /// and whether that may have changed since `since` (0: first contact).
    pub fn hyperplane_delta(
        &self,
        region: &str,
        node_id: &str,
        since: Revision,
    ) -> (HyperplaneDelta, bool) {
        let index = lock(&self.index);
        let m = &index.mirror;
        let mut assignments = Vec::new();
        // A public gateway's translated packets leave through the edges,
        // while its VPC has an internet gateway.
        let attached: HashSet<&str> = m
            .gateways
            .iter()
            .filter(|(k, _)| region_of(k) == region && k.rsplit('/').nth(1) == Some("igw"))
            .filter_map(|(_, g)| g.vpc_id.as_deref())
            .collect();
        let edges = m.edge_nodes(region);
        for (key, nat) in &m.nats {
            // A pending gateway is programmed first: a node's report that it
            // serves it is what makes it available.
            if region_of(key) != region || !nat.state.holds_shard() {
                continue;
            }
            let Some(shard) = m.shards.get(&super::shards::shard_key(region, &nat.id)) else {
                continue;
            };
            if !shard.iter().any(|n| n == node_id) {
                continue;
            }
            let Some(vni) = m
                .vpc_by_id
                .get(&nat.vpc_id)
                .and_then(|k| m.vpcs.get(k))
                .map(|v| v.vni)
            else {
                continue;
            };
            let mut addresses: Vec<_> = nat.addresses.iter().collect();
            addresses.sort_by_key(|a| !a.is_primary);
            let public = nat.connectivity_type != "private";
            assignments.push(NatAssignment {
                gateway_id: nat.id.clone(),
                account_id: nat.owner_id.clone(),
                vpc_id: nat.vpc_id.clone(),
                vni,
                subnet_id: nat.subnet_id.clone(),
                connectivity: if public {
                    NatConnectivity::Public
                } else {
                    NatConnectivity::Private
                },
                private_ips: addresses.iter().filter_map(|a| a.private_ip).collect(),
                public_ips: addresses.iter().filter_map(|a| a.public_ip).collect(),
                shard: shard_places(m, region, &nat.id)
                    .into_iter()
                    .map(|(node_id, underlay_ip)| ShardMember {
                        node_id,
                        underlay_ip,
                    })
                    .collect(),
                edges: if public && attached.contains(nat.vpc_id.as_str()) {
                    edges.clone()
                } else {
                    Vec::new()
                },
                routes: if public {
                    Vec::new()
                } else {
                    super::compile::nat_routes(m, key, nat)
                },
                flow_log: super::compile::nat_flow_log(m, key, nat),
            });
        }
        assignments.sort_by(|a, b| a.gateway_id.cmp(&b.gateway_id));
        // Issue 17: the load balancers whose shard holds the node, from
        // `provisioning` (its nodes' report that they serve it makes it
        // `active`) until it fails or is deleted.
        let mut load_balancers = Vec::new();
        for (key, lb) in &m.lbs {
            if region_of(key) != region || !super::lb_lifecycle::is_served(lb.state) {
                continue;
            }
            let gateway_id = lb.gateway_id();
            let in_shard = m
                .shards
                .get(&super::shards::shard_key(region, &gateway_id))
                .is_some_and(|s| s.iter().any(|n| n == node_id));
            if !in_shard {
                continue;
            }
            let shard = shard_places(m, region, &gateway_id)
                .into_iter()
                .map(|(node_id, underlay_ip)| ShardMember {
                    node_id,
                    underlay_ip,
                })
                .collect();
            load_balancers.extend(super::lb::lb_assignment(m, key, lb, shard, &edges));
        }
        load_balancers.sort_by(|a, b| a.id.cmp(&b.id));
        let news = since == 0
            || index
                .hyperplane_meta
                .get(region)
                .is_some_and(|r| *r > since);
        (
            HyperplaneDelta {
                revision: index.revision,
                assignments,
                load_balancers,
            },
            news,
        )
    }

    /// What changed for the edge nodes of `region` since `since` (0:
    /// everything), and whether there is anything new to say.
    pub fn edge_delta(&self, region: &str, since: Revision) -> (EdgeDelta, bool) {
        let index = lock(&self.index);
        let delta = index.edge_delta(region, since);
        let news = delta.full
            || !delta.upserts.is_empty()
            || !delta.removals.is_empty()
            || index.edge_changed(region, since);
        (delta, news)
    }

    /// What the shard keeper reads, per region: the live NAT gateways, the
    /// live hyperplane nodes and the stored shards, each sorted by ID.
    pub fn region_shards(&self) -> BTreeMap<String, super::shards::RegionShards> {
        let index = lock(&self.index);
        let m = &index.mirror;
        let mut out: BTreeMap<String, super::shards::RegionShards> = BTreeMap::new();
        for (key, nat) in &m.nats {
            // A gateway has a shard from `pending` (its nodes must program
            // it to make it `available`) until it is deleted.
            if nat.state.holds_shard() {
                out.entry(region_of(key).to_owned())
                    .or_default()
                    .gateways
                    .push(id_of(key).to_owned());
            }
        }
        for (key, lb) in &m.lbs {
            // A load balancer has a shard from `provisioning` until it
            // fails or is deleted (issue 17).
            if super::lb_lifecycle::is_served(lb.state) {
                out.entry(region_of(key).to_owned())
                    .or_default()
                    .gateways
                    .push(lb.gateway_id());
            }
        }
        for n in m.hyperplane.values() {
            out.entry(n.region.clone())
                .or_default()
                .nodes
                .push(n.node_id.clone());
        }
        for (key, nodes) in &m.shards {
            let region = key.split('/').nth(1).unwrap_or("").to_owned();
            out.entry(region)
                .or_default()
                .stored
                .insert(id_of(key).to_owned(), nodes.clone());
        }
        for r in out.values_mut() {
            r.gateways.sort();
            r.nodes.sort();
        }
        out
    }

    /// What the NAT lifecycle reads (`nat_lifecycle`): the pending and
    /// deleting gateways, the live hyperplane nodes with what each serves,
    /// the shards, and the VPCs with an internet gateway attached.
    pub fn nat_snapshot(&self) -> super::nat_lifecycle::Snapshot {
        let index = lock(&self.index);
        let m = &index.mirror;
        let mut out = super::nat_lifecycle::Snapshot::default();
        for (key, nat) in &m.nats {
            if matches!(
                nat.state,
                NatGatewayState::Pending | NatGatewayState::Deleting
            ) {
                out.gateways.push(super::nat_lifecycle::Tracked {
                    account: account_of(key).to_owned(),
                    region: region_of(key).to_owned(),
                    gateway: nat.clone(),
                });
            }
        }
        if out.gateways.is_empty() {
            return out;
        }
        out.placement = placement(m);
        out.attached_vpcs = m
            .gateways
            .iter()
            .filter(|(key, _)| key.rsplit('/').nth(1) == Some("igw"))
            .filter_map(|(_, g)| g.vpc_id.clone())
            .collect();
        out
    }

    /// What the load balancer lifecycle reads (`lb_lifecycle`): the load
    /// balancers that are not failed, the live hyperplane nodes with what
    /// each serves, and the shards.
    pub fn lb_snapshot(&self) -> super::lb_lifecycle::Snapshot {
        let index = lock(&self.index);
        let m = &index.mirror;
        let mut out = super::lb_lifecycle::Snapshot::default();
        for (key, lb) in &m.lbs {
            if super::lb_lifecycle::is_served(lb.state) {
                out.lbs.push(super::lb_lifecycle::Tracked {
                    account: account_of(key).to_owned(),
                    region: region_of(key).to_owned(),
                    lb: lb.clone(),
                });
            }
        }
        if out.lbs.is_empty() {
            return out;
        }
        out.placement = placement(m);
        out
    }

    /// The VNIs of `region`'s VPCs with an internet gateway attached.
    pub fn attached_vnis(&self, region: &str) -> Vec<u32> {
        lock(&self.index).attached_vnis(region)
    }

    /// The account of VPN connection `vpn_id` of `region`, if the index
    /// knows it.
    pub fn vpn_account(&self, region: &str, vpn_id: &str) -> Option<String> {
        let index = lock(&self.index);
        index
            .mirror
            .vpns
            .keys()
            .find(|k| region_of(k) == region && id_of(k) == vpn_id)
            .map(|k| account_of(k).to_owned())
    }

    /// The VPN gateways of `account` in `region` attached to the VPC of
    /// VNI `vni` (AWS allows one), sorted by ID: where a VPC's traffic to
    /// its datacenter goes, for the trace to say why none does.
    pub fn vgws_of_vni(&self, region: &str, account: &str, vni: u32) -> Vec<String> {
        let index = lock(&self.index);
        let m = &index.mirror;
        let want = format!("r/{account}/{region}");
        let mut ids: Vec<String> = m
            .gateways
            .keys()
            .filter(|k| k.rsplit('/').nth(1) == Some("vgw") && scope(k) == want)
            .map(|k| id_of(k).to_owned())
            .filter(|id| m.vgw_vpc(&want, id).is_some_and(|(_, v, _)| v == vni))
            .collect();
        ids.sort();
        ids
    }

    /// The live connections of VPN gateway `vgw_id` of `account` in
    /// `region`, sorted by ID, each with whether it routes statically and
    /// its tunnels as the fleet believes them now (`vpn::tunnel_views`:
    /// served by a live edge, up only as that edge last reported).
    pub fn vgw_tunnels(
        &self,
        region: &str,
        account: &str,
        vgw_id: &str,
    ) -> Vec<(String, bool, Vec<super::vpn::TunnelView>)> {
        let index = lock(&self.index);
        let m = &index.mirror;
        let edges = m.edge_records(region);
        m.vgw_connections(&format!("r/{account}/{region}"), vgw_id, &edges)
            .into_iter()
            .map(|(vpn, views)| (vpn.id.clone(), vpn.static_routes_only, views))
            .collect()
    }

    /// The live edge nodes of `region` the index knows, sorted by ID.
    pub fn edges(&self, region: &str) -> Vec<NodeRecord> {
        lock(&self.index).mirror.edge_records(region)
    }

    /// The live hyperplane nodes of `region` the index knows, sorted by ID.
    pub fn hyperplane_nodes(&self, region: &str) -> Vec<NodeRecord> {
        let index = lock(&self.index);
        let mut nodes: Vec<NodeRecord> = index
            .mirror
            .hyperplane
            .values()
            .filter(|n| n.region == region)
            .cloned()
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes
    }

    /// The mapping service: who runs each (VNI, address) of `region`.
    pub fn lookup(&self, region: &str, keys: &[MappingKey]) -> Vec<MappingAnswer> {
        let index = lock(&self.index);
        keys.iter()
            .map(|key| {
                let record = match key.ip {
                    IpAddr::V4(ip) => index
                        .mappings
                        .get(&(region.to_owned(), key.vni, ip))
                        .and_then(|eni| index.live.get(eni))
                        .and_then(|c| {
                            index.mirror.hosts.get(&c.host).map(|h| MappingRecord {
                                underlay_ip: h.underlay_ip,
                                eni_id: c.state.eni_id.clone(),
                                mac: c.state.mac.clone(),
                            })
                        })
                        .or_else(|| index.nat_mapping(region, key.vni, ip)),
                    IpAddr::V6(_) => None,
                };
                MappingAnswer { key: *key, record }
            })
            .collect()
    }

    /// A flow log by ID, with its store key, as the index mirrors it.
    pub fn flow_log(&self, id: &str) -> Option<(Key, FlowLog)> {
        let index = lock(&self.index);
        let key = index.mirror.flow_log_by_id.get(id)?;
        let f = index.mirror.flow_logs.get(key)?;
        Some((key.clone(), f.clone()))
    }

    /// The compiled state of a running ENI, by ID (for tools and tests).
    pub fn eni_state(&self, eni_id: &str) -> Option<EniState> {
        let index = lock(&self.index);
        index
            .live
            .iter()
            .find(|(k, _)| id_of(k) == eni_id)
            .map(|(_, c)| c.state.clone())
    }

    /// The host (`region`, host ID) an ENI runs on, by ENI ID.
    pub fn host_of(&self, eni_id: &str) -> Option<(String, String)> {
        let index = lock(&self.index);
        index
            .live
            .iter()
            .find(|(k, _)| id_of(k) == eni_id)
            .map(|(k, c)| (region_of(k).to_owned(), id_of(&c.host).to_owned()))
    }

    /// How many ENI compiles the index ran since it was built: what tests
    /// read to check that a change costs work proportional to what it
    /// touches.
    pub fn compiles(&self) -> u64 {
        lock(&self.index).compiles
    }

    /// The hosts of `region` the index knows, sorted by ID.
    pub fn registered_hosts(&self, region: &str) -> Vec<HostRecord> {
        let index = lock(&self.index);
        let mut hosts: Vec<HostRecord> = index
            .mirror
            .hosts
            .values()
            .filter(|h| h.region == region)
            .cloned()
            .collect();
        hosts.sort_by(|a, b| a.host_id.cmp(&b.host_id));
        hosts
    }

    /// Starts a thread that keeps the index current, waiting on the store
    /// for each new revision. It stops when the last `Arc` of the fleet is
    /// dropped.
    pub fn spawn_tailer(self: &Arc<Self>) -> Result<std::thread::JoinHandle<()>, FleetError> {
        let weak: Weak<Fleet> = Arc::downgrade(self);
        let store = Arc::clone(&self.store);
        std::thread::Builder::new()
            .name("fleet-tailer".into())
            .spawn(move || tail(&weak, store.as_ref()))
            .map_err(FleetError::Thread)
    }
}

fn tail(weak: &Weak<Fleet>, store: &dyn Store) {
    let mut failures = 0u32;
    loop {
        let Some(fleet) = weak.upgrade() else {
            return;
        };
        let after = fleet.revision();
        drop(fleet);
        // Waking once a second lets the thread notice the fleet is gone.
        let waited = store.wait_for(after, Duration::from_secs(1));
        let Some(fleet) = weak.upgrade() else {
            return;
        };
        let result = waited.map_err(FleetError::from).and_then(|r| {
            if r > after {
                fleet.catch_up().map(drop)
            } else {
                Ok(())
            }
        });
        drop(fleet);
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "fleet: following the store failed; retrying");
                std::thread::sleep(Duration::from_millis(100 * u64::from(failures.min(50))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_replays_after_its_floor_only() {
        let mut log: Log<u32> = Log::new(10);
        for (rev, item) in [(11, 1), (12, 2), (12, 3), (14, 4)] {
            log.push(rev, item);
        }
        let after =
            |log: &Log<u32>, since| log.since(since).map(|i| i.copied().collect::<Vec<_>>());
        assert_eq!(after(&log, 9), None);
        assert_eq!(after(&log, 10), Some(vec![1, 2, 3, 4]));
        assert_eq!(after(&log, 11), Some(vec![2, 3, 4]));
        assert_eq!(after(&log, 14), Some(vec![]));
    }

    #[test]
    fn a_full_log_raises_its_floor() {
        let mut log: Log<usize> = Log::new(0);
        for i in 0..=LOG_CAPACITY {
            log.push(i as Revision + 1, i);
        }
        // The entry of revision 1 is gone: only from 1 on is complete.
        assert_eq!(log.floor, 1);
        assert!(log.since(0).is_none());
        assert_eq!(log.since(1).map(Iterator::count), Some(LOG_CAPACITY));
    }

    #[test]
    fn keys_parse_to_the_records_compiles_read() {
        let cases = [
            ("hosts/us-east-1/h1", Record::Host),
            ("hosts/us-east-1", Record::Ignored),
            ("hosts/us-east-1/h1/extra", Record::Ignored),
            ("r/123/us-east-1/vpc/vpc-1", Record::Vpc),
            ("r/123/us-east-1/subnet/subnet-1", Record::Subnet),
            ("r/123/us-east-1/acl/acl-1", Record::NetworkAcl),
            ("r/123/us-east-1/rtb/rtb-1", Record::RouteTable),
            ("r/123/us-east-1/sg/sg-1", Record::SecurityGroup),
            ("r/123/us-east-1/pl/pl-1", Record::PrefixList),
            ("r/123/us-east-1/pcx/pcx-1", Record::Peering),
            ("r/123/us-east-1/i/i-1", Record::Instance),
            ("r/123/us-east-1/fl/fl-1", Record::FlowLog),
            ("r/123/us-east-1/eni/eni-1", Record::NetworkInterface),
            ("r/123/us-east-1/igw/igw-1", Record::Gateway),
            ("r/123/us-east-1/nat/nat-1", Record::Gateway),
            ("r/123/us-east-1/cagw/cagw-1", Record::Gateway),
            ("r/123/us-east-1/lgw/lgw-1", Record::Gateway),
            ("r/123/us-east-1/dopt/dopt-1", Record::DhcpOptions),
            (
                "r/123/us-east-1/elb-lb/0123456789abcdef",
                Record::LoadBalancer,
            ),
            (
                "r/123/us-east-1/elb-tg/0123456789abcdef",
                Record::TargetGroup,
            ),
            (
                "r/123/us-east-1/elb-listener/0123456789abcdef",
                Record::ElbListener,
            ),
            // Kinds no compile reads, names and markers, other layouts.
            (
                "r/123/us-east-1/security-group-name/vpc-1:web",
                Record::Ignored,
            ),
            ("r/123/us-east-1/vpc", Record::Ignored),
            ("r/123/us-east-1/vpc/vpc-1/extra", Record::Ignored),
            ("fence/123/us-east-1", Record::Ignored),
        ];
        for (key, want) in cases {
            assert_eq!(Record::of(key), want, "{key}");
        }
    }
}
