//! Flow logs between the nodes and the server: which flow logs an ENI
//! feeds (compiled into its state), and the aggregated records a host sends
//! back for the server to write to each flow log's destination (spec 8).
//!
//! Records carry what the node saw and knows about the ENI; the server adds
//! only what a flow log decides (format, destination). They name no file
//! layout and no format: that is `openvpc_flowlogs`'s job.

use core::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::host::{EniState, RouteTargetState};

/// `TrafficType`: which decisions a flow log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TrafficType {
    Accept,
    Reject,
    All,
}

impl TrafficType {
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficType::Accept => "ACCEPT",
            TrafficType::Reject => "REJECT",
            TrafficType::All => "ALL",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACCEPT" => Some(TrafficType::Accept),
            "REJECT" => Some(TrafficType::Reject),
            "ALL" => Some(TrafficType::All),
            _ => None,
        }
    }

    /// Whether a record with this action belongs in the log.
    pub fn admits(self, action: Action) -> bool {
        match self {
            TrafficType::All => true,
            TrafficType::Accept => action == Action::Accept,
            TrafficType::Reject => action == Action::Reject,
        }
    }
}

/// `action`: ACCEPT (allowed by the groups and the ACL) or REJECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Accept,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "ACCEPT",
            Action::Reject => "REJECT",
        }
    }
}

/// `flow-direction`, relative to the ENI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    Ingress,
    Egress,
}

impl FlowDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowDirection::Ingress => "ingress",
            FlowDirection::Egress => "egress",
        }
    }
}

/// `log-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogStatus {
    /// Data is logged normally.
    Ok,
    /// No traffic to or from the ENI in the window.
    Nodata,
    /// Records were skipped because capacity ran out; `packets` counts the
    /// skipped flows' packets when known.
    Skipdata,
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Ok => "OK",
            LogStatus::Nodata => "NODATA",
            LogStatus::Skipdata => "SKIPDATA",
        }
    }
}

/// spec 8.1 `traffic-path`: how egress traffic leaves (1 to 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrafficPath {
    /// 1: through another resource in the same VPC.
    SameVpc,
    /// 2: an internet gateway or a gateway endpoint.
    InternetGateway,
    /// 3: a virtual private gateway.
    VirtualPrivateGateway,
    /// 4: an intra-region VPC peering connection.
    IntraRegionPeering,
    /// 5: an inter-region VPC peering connection.
    InterRegionPeering,
    /// 6: a local gateway.
    LocalGateway,
    /// 7: a gateway VPC endpoint (Nitro-based instances only).
    GatewayEndpoint,
    /// 8: an internet gateway (Nitro-based instances only).
    InternetGatewayNitro,
}

impl TrafficPath {
    /// The number the field shows.
    pub fn code(self) -> u8 {
        match self {
            TrafficPath::SameVpc => 1,
            TrafficPath::InternetGateway => 2,
            TrafficPath::VirtualPrivateGateway => 3,
            TrafficPath::IntraRegionPeering => 4,
            TrafficPath::InterRegionPeering => 5,
            TrafficPath::LocalGateway => 6,
            TrafficPath::GatewayEndpoint => 7,
            TrafficPath::InternetGatewayNitro => 8,
        }
    }
}

/// One flow log an ENI feeds, as compiled into its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLogSpec {
    pub flow_log_id: String,
    pub traffic_type: TrafficType,
    /// `MaxAggregationInterval`: 60 or 600 seconds.
    pub max_aggregation_interval: u32,
}

/// What a node knows about the ENI a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EniContext {
    pub eni_id: String,
    /// The account that owns the ENI (`account-id`).
    pub account_id: String,
    pub vpc_id: String,
    pub subnet_id: String,
    /// `None` for a requester-managed or detached ENI (`-`).
    pub instance_id: Option<String>,
    /// The ENI's primary private IPv4: `srcaddr` of its egress and
    /// `dstaddr` of its ingress.
    pub primary_ip: IpAddr,
    /// `az-id`, e.g. `use1-az1`.
    pub az_id: String,
}

/// An ENI whose traffic is logged, and by which flow logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniLog {
    pub context: EniContext,
    /// The VPC's network address: its router (+1), DNS (+2) and reserved
    /// (+3) addresses are not logged.
    pub vpc_base: Option<Ipv4Addr>,
    pub specs: Vec<FlowLogSpec>,
}

/// One route of the ENI's subnet as `traffic-path` sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRoute {
    pub destination: IpNet,
    pub path: Option<TrafficPath>,
}

/// An ENI as the node that carries its traffic logs it: the records'
/// context and flow logs, and its subnet's routes, longest prefix first,
/// to tell each egress flow's `traffic-path`. A host builds it from the
/// ENI's compiled state; a hyperplane node is sent one for a gateway's
/// ENI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedEni {
    pub log: EniLog,
    pub routes: Vec<PathRoute>,
}

impl LoggedEni {
    /// `routes` in any order; `None` when no flow log covers the ENI.
    pub fn new(log: EniLog, mut routes: Vec<PathRoute>) -> Option<LoggedEni> {
        if log.specs.is_empty() {
            return None;
        }
        // Longest prefix first: the first match is the route used.
        routes.sort_by_key(|r| std::cmp::Reverse(r.destination.prefix_len()));
        Some(LoggedEni { log, routes })
    }

    /// An instance's ENI, from its compiled state; `None` when no flow log
    /// covers it.
    pub fn of(state: &EniState) -> Option<LoggedEni> {
        let primary_ip = state.ipv4.first().copied().map(IpAddr::V4)?;
        let routes = state
            .subnet
            .route_table
            .routes
            .iter()
            .map(|r| PathRoute {
                destination: r.destination,
                path: traffic_path(&r.target),
            })
            .collect();
        let log = EniLog {
            context: EniContext {
                eni_id: state.eni_id.clone(),
                account_id: state.account_id.clone(),
                vpc_id: state.vpc_id.clone(),
                subnet_id: state.subnet.subnet_id.clone(),
                instance_id: state.instance_id.clone(),
                primary_ip,
                az_id: state.availability_zone_id.clone(),
            },
            vpc_base: Some(state.vpc_cidr.network()),
            specs: state.flow_logs.clone(),
        };
        LoggedEni::new(log, routes)
    }

    /// The `traffic-path` of an egress flow to `dst`.
    pub fn path_to(&self, dst: IpAddr) -> Option<TrafficPath> {
        self.routes
            .iter()
            .find(|r| r.destination.contains(&dst))
            .and_then(|r| r.path)
    }
}

/// spec 8.1 `traffic-path` of a route's target.
pub fn traffic_path(target: &RouteTargetState) -> Option<TrafficPath> {
    match target {
        RouteTargetState::Local | RouteTargetState::Eni { .. } => Some(TrafficPath::SameVpc),
        RouteTargetState::Peering { .. } => Some(TrafficPath::IntraRegionPeering),
        RouteTargetState::Gateway { gateway_id, .. } => {
            match gateway_id.split('-').next().unwrap_or("") {
                "igw" | "eigw" => Some(TrafficPath::InternetGateway),
                "vgw" => Some(TrafficPath::VirtualPrivateGateway),
                "vpce" => Some(TrafficPath::GatewayEndpoint),
                // A NAT gateway or a load balancer is a resource in the VPC.
                "nat" | "elb" => Some(TrafficPath::SameVpc),
                _ => None,
            }
        }
        RouteTargetState::Blackhole => None,
    }
}

/// One record: one ENI, one direction of one flow, one window; or a
/// NODATA / SKIPDATA line for the ENI's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecord {
    pub flow_log_id: String,
    pub eni_id: String,
    pub status: LogStatus,
    /// The window this record belongs to, Unix seconds; for NODATA and
    /// SKIPDATA `start`/`end` are the window's.
    pub start: i64,
    pub end: i64,
    /// `None` for NODATA and SKIPDATA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowFields>,
}

/// The fields of an OK record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowFields {
    /// `srcaddr`/`dstaddr`: the ENI's side shows its primary address.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// `pkt-srcaddr`/`pkt-dstaddr`: the packet's own addresses.
    pub pkt_src: IpAddr,
    pub pkt_dst: IpAddr,
    /// 0 for protocols without ports (ICMP), as AWS writes them.
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub packets: u64,
    pub bytes: u64,
    pub action: Action,
    /// OR of the TCP flags over the window (FIN 1, SYN 2, RST 4, ACK 16
    /// only as part of SYN-ACK = 18).
    pub tcp_flags: u8,
    pub direction: FlowDirection,
    /// Egress only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_path: Option<TrafficPath>,
}

/// What a node sends the server once per flush: the contexts of the ENIs
/// its records name, then the records.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FlowRecordBatch {
    /// The sending node (a host, edge or hyperplane node).
    pub node_id: String,
    pub enis: Vec<EniContext>,
    pub records: Vec<FlowRecord>,
}

/// The path nodes POST a [`FlowRecordBatch`] to, relative to the server.
pub const RECORDS_PATH: &str = "/flowlogs/v1/records";
