//! One flow log record as its destination shows it (spec 8.1): the value of
//! each field of a flow log's format, as a text line (S3 plain text,
//! CloudWatch Logs, Firehose) or as typed cells (Parquet columns).
//!
//! This module owns what each field means for a record: which fields are
//! `-` for NODATA/SKIPDATA, `version` as the highest version among the
//! format's fields, and each field's Parquet column name and type. The list
//! of fields and their versions is `openvpc_records::flow_log::FIELDS`; this
//! module must not keep a second copy of it, nor know files or keys.

use core::fmt::Write as _;
use core::net::IpAddr;

use openvpc_model::flow_log::{EniContext, FlowDirection, FlowFields, FlowRecord, LogStatus};
use openvpc_records::flow_log::{DEFAULT_LOG_FORMAT, FormatError, format_fields, version_of};

/// A field a format may name (spec 8.1), one per name in `FIELDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Version,
    AccountId,
    InterfaceId,
    SrcAddr,
    DstAddr,
    SrcPort,
    DstPort,
    Protocol,
    Packets,
    Bytes,
    Start,
    End,
    Action,
    LogStatus,
    VpcId,
    SubnetId,
    InstanceId,
    TcpFlags,
    Type,
    PktSrcAddr,
    PktDstAddr,
    Region,
    AzId,
    SublocationType,
    SublocationId,
    PktSrcAwsService,
    PktDstAwsService,
    FlowDirection,
    TrafficPath,
    /// The v7 ECS fields: openvpc runs no ECS tasks, so they are always `-`.
    Ecs(EcsField),
    RejectReason,
}

/// The ten v7 ECS fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcsField {
    ClusterArn,
    ClusterName,
    ContainerInstanceArn,
    ContainerInstanceId,
    ContainerId,
    SecondContainerId,
    ServiceName,
    TaskDefinitionArn,
    TaskArn,
    TaskId,
}

/// Every field with its name, in `FIELDS` order.
const NAMES: &[(Field, &str)] = &[
    (Field::Version, "version"),
    (Field::AccountId, "account-id"),
    (Field::InterfaceId, "interface-id"),
    (Field::SrcAddr, "srcaddr"),
    (Field::DstAddr, "dstaddr"),
    (Field::SrcPort, "srcport"),
    (Field::DstPort, "dstport"),
    (Field::Protocol, "protocol"),
    (Field::Packets, "packets"),
    (Field::Bytes, "bytes"),
    (Field::Start, "start"),
    (Field::End, "end"),
    (Field::Action, "action"),
    (Field::LogStatus, "log-status"),
    (Field::VpcId, "vpc-id"),
    (Field::SubnetId, "subnet-id"),
    (Field::InstanceId, "instance-id"),
    (Field::TcpFlags, "tcp-flags"),
    (Field::Type, "type"),
    (Field::PktSrcAddr, "pkt-srcaddr"),
    (Field::PktDstAddr, "pkt-dstaddr"),
    (Field::Region, "region"),
    (Field::AzId, "az-id"),
    (Field::SublocationType, "sublocation-type"),
    (Field::SublocationId, "sublocation-id"),
    (Field::PktSrcAwsService, "pkt-src-aws-service"),
    (Field::PktDstAwsService, "pkt-dst-aws-service"),
    (Field::FlowDirection, "flow-direction"),
    (Field::TrafficPath, "traffic-path"),
    (Field::Ecs(EcsField::ClusterArn), "ecs-cluster-arn"),
    (Field::Ecs(EcsField::ClusterName), "ecs-cluster-name"),
    (
        Field::Ecs(EcsField::ContainerInstanceArn),
        "ecs-container-instance-arn",
    ),
    (
        Field::Ecs(EcsField::ContainerInstanceId),
        "ecs-container-instance-id",
    ),
    (Field::Ecs(EcsField::ContainerId), "ecs-container-id"),
    (
        Field::Ecs(EcsField::SecondContainerId),
        "ecs-second-container-id",
    ),
    (Field::Ecs(EcsField::ServiceName), "ecs-service-name"),
    (
        Field::Ecs(EcsField::TaskDefinitionArn),
        "ecs-task-definition-arn",
    ),
    (Field::Ecs(EcsField::TaskArn), "ecs-task-arn"),
    (Field::Ecs(EcsField::TaskId), "ecs-task-id"),
    (Field::RejectReason, "reject-reason"),
];

/// A Parquet column's type (the Athena DDL's `int`, `bigint`, `string`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Int32,
    Int64,
    Utf8,
}

impl Field {
    /// The field named `name` (without `${}`).
    pub fn parse(name: &str) -> Option<Field> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }

    /// The field's name as a format writes it.
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("", |(_, n)| n)
    }

    /// The Parquet column name: the field name with `_` for `-`.
    pub fn column_name(self) -> String {
        self.name().replace('-', "_")
    }

    /// The Parquet column type, as in AWS's Athena table for Parquet flow logs.
    pub fn column_type(self) -> ColumnType {
        match self {
            Field::Version
            | Field::SrcPort
            | Field::DstPort
            | Field::TcpFlags
            | Field::TrafficPath => ColumnType::Int32,
            Field::Protocol | Field::Packets | Field::Bytes | Field::Start | Field::End => {
                ColumnType::Int64
            }
            _ => ColumnType::Utf8,
        }
    }
}

/// One field's value; `None` (a [`Cell`]) is `-` in text and NULL in Parquet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Text(String),
}

/// A field's value, or `None` when it does not apply (`-`).
pub type Cell = Option<Value>;

/// A flow log's record format: its fields in order and the `version` its
/// records show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFormat {
    fields: Vec<Field>,
    version: u8,
}

impl Default for LineFormat {
    /// The default (version 2) format.
    fn default() -> Self {
        // DEFAULT_LOG_FORMAT names only known fields; an empty format would be
        // the visible symptom of that constant breaking.
        LineFormat::parse(DEFAULT_LOG_FORMAT).unwrap_or(LineFormat {
            fields: Vec::new(),
            version: 2,
        })
    }
}

impl LineFormat {
    /// A flow log's `LogFormat` (`${field} ${field} ...`).
    pub fn parse(log_format: &str) -> Result<LineFormat, FormatError> {
        let names = format_fields(log_format)?;
        let fields = names
            .iter()
            .map(|n| Field::parse(n).ok_or_else(|| FormatError::UnknownField((*n).to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LineFormat {
            version: version_of(&names),
            fields,
        })
    }

    /// The format's fields, in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// spec 8.1: the `version` field's value, the highest version among the
    /// format's fields (2 for the default format).
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The first line of a plain-text S3 file: the field names, separated by
    /// spaces.
    pub fn header(&self) -> String {
        let names: Vec<&str> = self.fields.iter().map(|f| f.name()).collect();
        names.join(" ")
    }

    /// The record's value for each field of the format, in order.
    pub fn cells(&self, ctx: &EniContext, region: &str, rec: &FlowRecord) -> Vec<Cell> {
        self.fields
            .iter()
            .map(|f| self.cell(*f, ctx, region, rec))
            .collect()
    }

    /// The record as one line (no newline).
    pub fn render(&self, ctx: &EniContext, region: &str, rec: &FlowRecord) -> String {
        render_cells(&self.cells(ctx, region, rec))
    }

    fn cell(&self, field: Field, ctx: &EniContext, region: &str, rec: &FlowRecord) -> Cell {
        // spec 8.1: NODATA and SKIPDATA lines show `-` for every address,
        // port, count, action and flag field, whatever the node sent.
        let flow: Option<&FlowFields> = match rec.status {
            LogStatus::Ok => rec.flow.as_ref(),
            LogStatus::Nodata | LogStatus::Skipdata => None,
        };
        let text = |s: &str| Some(Value::Text(s.to_owned()));
        let addr = |a: IpAddr| Some(Value::Text(a.to_string()));
        let int = |i: i64| Some(Value::Int(i));
        match field {
            Field::Version => int(i64::from(self.version)),
            Field::AccountId => text(&ctx.account_id),
            Field::InterfaceId => text(&rec.eni_id),
            Field::SrcAddr => flow.and_then(|f| addr(f.src)),
            Field::DstAddr => flow.and_then(|f| addr(f.dst)),
            Field::SrcPort => flow.and_then(|f| int(i64::from(f.src_port))),
            Field::DstPort => flow.and_then(|f| int(i64::from(f.dst_port))),
            Field::Protocol => flow.and_then(|f| int(i64::from(f.protocol))),
            // Counts beyond i64 cannot happen in one window; saturate rather
            // than wrap if a node ever sends one.
            Field::Packets => flow.and_then(|f| int(i64::try_from(f.packets).unwrap_or(i64::MAX))),
            Field::Bytes => flow.and_then(|f| int(i64::try_from(f.bytes).unwrap_or(i64::MAX))),
            Field::Start => int(rec.start),
            Field::End => int(rec.end),
            Field::Action => flow.and_then(|f| text(f.action.as_str())),
            Field::LogStatus => text(rec.status.as_str()),
            Field::VpcId => text(&ctx.vpc_id),
            Field::SubnetId => text(&ctx.subnet_id),
            Field::InstanceId => ctx.instance_id.as_deref().and_then(text),
            Field::TcpFlags => flow.and_then(|f| int(i64::from(f.tcp_flags))),
            Field::Type => flow.and_then(|f| match f.pkt_src {
                IpAddr::V4(_) => text("IPv4"),
                IpAddr::V6(_) => text("IPv6"),
            }),
            Field::PktSrcAddr => flow.and_then(|f| addr(f.pkt_src)),
            Field::PktDstAddr => flow.and_then(|f| addr(f.pkt_dst)),
            Field::Region => text(region),
            Field::AzId => text(&ctx.az_id),
            // No Local Zones, Wavelength Zones or Outposts; no AWS service
            // address ranges: these fields never apply.
            Field::SublocationType
            | Field::SublocationId
            | Field::PktSrcAwsService
            | Field::PktDstAwsService => None,
            Field::FlowDirection => flow.and_then(|f| text(f.direction.as_str())),
            // spec 8.1: `traffic-path` is for egress only.
            Field::TrafficPath => flow.and_then(|f| match f.direction {
                FlowDirection::Egress => f.traffic_path.and_then(|p| int(i64::from(p.code()))),
                FlowDirection::Ingress => None,
            }),
            Field::Ecs(_) => None,
            // spec 8.1: only Block Public Access rejections name a reason,
            // and openvpc has no Block Public Access.
            Field::RejectReason => None,
        }
    }
}

/// Cells as one text line: space-separated, `-` for `None`.
pub fn render_cells(cells: &[Cell]) -> String {
    let mut line = String::with_capacity(cells.len() * 12);
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        match cell {
            None => line.push('-'),
            // Writing to a String cannot fail.
            Some(Value::Int(n)) => {
                let _ = write!(line, "{n}");
            }
            Some(Value::Text(s)) => line.push_str(s),
        }
    }
    line
}

#[cfg(test)]
pub(crate) mod tests {
    use openvpc_model::flow_log::{Action, TrafficPath};
    use openvpc_records::flow_log::FIELDS;
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn ctx() -> EniContext {
        EniContext {
            eni_id: "eni-1235b8ca123456789".into(),
            account_id: "123456789010".into(),
            vpc_id: "vpc-0a1b2c3d4e5f60718".into(),
            subnet_id: "subnet-0a1b2c3d4e5f60718".into(),
            instance_id: Some("i-0a1b2c3d4e5f60718".into()),
            primary_ip: "172.31.16.139".parse().unwrap(),
            az_id: "use1-az1".into(),
        }
    }

    pub(crate) fn ok_record() -> FlowRecord {
        FlowRecord {
            flow_log_id: "fl-0123456789abcdef0".into(),
            eni_id: "eni-1235b8ca123456789".into(),
            status: LogStatus::Ok,
            start: 1418530010,
            end: 1418530070,
            flow: Some(FlowFields {
                src: "172.31.16.139".parse().unwrap(),
                dst: "172.31.16.21".parse().unwrap(),
                pkt_src: "172.31.16.139".parse().unwrap(),
                pkt_dst: "172.31.16.21".parse().unwrap(),
                src_port: 20641,
                dst_port: 22,
                protocol: 6,
                packets: 20,
                bytes: 4249,
                action: Action::Accept,
                tcp_flags: 3,
                direction: FlowDirection::Egress,
                traffic_path: Some(TrafficPath::InternetGateway),
            }),
        }
    }

    pub(crate) fn nodata_record() -> FlowRecord {
        FlowRecord {
            status: LogStatus::Nodata,
            flow: None,
            ..ok_record()
        }
    }

    const ACCEPTANCE: &str =
        r"^2 \d{12} eni-[0-9a-f]{17} \S+ \S+ \d+ \d+ \d+ \d+ \d+ \d+ \d+ (ACCEPT|REJECT) OK$";

    #[test]
    fn every_stored_field_has_a_variant() {
        // The enum and records' FIELDS must name the same fields, in order.
        let names: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
        let stored: Vec<&str> = FIELDS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, stored);
        for (f, n) in NAMES {
            assert_eq!(Field::parse(n), Some(*f));
            assert_eq!(f.name(), *n);
        }
    }

    #[test]
    fn default_line_is_the_spec_example() {
        // spec 8.1: the default format's example record.
        let line = LineFormat::default().render(&ctx(), "us-east-1", &ok_record());
        assert_eq!(
            line,
            "2 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 1418530010 1418530070 ACCEPT OK"
        );
        assert!(regex::Regex::new(ACCEPTANCE).unwrap().is_match(&line));
    }

    #[test]
    fn nodata_and_skipdata_show_dashes() {
        // spec 8.1/8.2: NODATA has `-` for address, port and count fields;
        // start/end are the window.
        let fmt = LineFormat::default();
        let line = fmt.render(&ctx(), "us-east-1", &nodata_record());
        assert_eq!(
            line,
            "2 123456789010 eni-1235b8ca123456789 - - - - - - - 1418530010 1418530070 - NODATA"
        );
        // A SKIPDATA record that carries flow fields still shows dashes.
        let skip = FlowRecord {
            status: LogStatus::Skipdata,
            ..ok_record()
        };
        assert!(
            fmt.render(&ctx(), "us-east-1", &skip)
                .ends_with("- - - - - - - 1418530010 1418530070 - SKIPDATA")
        );
    }

    #[test]
    fn custom_format_takes_the_highest_version() {
        // spec 8.2 acceptance: `${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}` is version 3.
        let fmt = LineFormat::parse("${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}").unwrap();
        assert_eq!(fmt.version(), 3);
        let mut rec = ok_record();
        if let Some(f) = rec.flow.as_mut() {
            f.pkt_src = "52.95.110.1".parse().unwrap();
            f.tcp_flags = 19;
        }
        assert_eq!(
            fmt.render(&ctx(), "us-east-1", &rec),
            "3 172.31.16.139 52.95.110.1 19"
        );
        assert_eq!(fmt.header(), "version srcaddr pkt-srcaddr tcp-flags");
    }

    #[test]
    fn every_field_renders() {
        // spec 8.1: v3-v5 fields from the ENI context, ECS (v7) and
        // reject-reason (v8) always `-`; version is 8.
        let all: Vec<String> = FIELDS.iter().map(|(n, _)| format!("${{{n}}}")).collect();
        let fmt = LineFormat::parse(&all.join(" ")).unwrap();
        assert_eq!(fmt.version(), 8);
        let line = fmt.render(&ctx(), "us-east-1", &ok_record());
        assert_eq!(
            line,
            "8 123456789010 eni-1235b8ca123456789 172.31.16.139 172.31.16.21 20641 22 6 20 4249 \
             1418530010 1418530070 ACCEPT OK vpc-0a1b2c3d4e5f60718 subnet-0a1b2c3d4e5f60718 \
             i-0a1b2c3d4e5f60718 3 IPv4 172.31.16.139 172.31.16.21 us-east-1 use1-az1 - - - - \
             egress 2 - - - - - - - - - - -"
        );
        // Ingress has no traffic-path; a requester-managed ENI no instance-id;
        // IPv6 traffic is type IPv6.
        let mut rec = ok_record();
        if let Some(f) = rec.flow.as_mut() {
            f.direction = FlowDirection::Ingress;
            f.pkt_src = "2001:db8::1".parse().unwrap();
        }
        let mut c = ctx();
        c.instance_id = None;
        let fmt =
            LineFormat::parse("${instance-id} ${type} ${flow-direction} ${traffic-path}").unwrap();
        assert_eq!(fmt.version(), 5);
        assert_eq!(fmt.render(&c, "us-east-1", &rec), "- IPv6 ingress -");
    }

    proptest! {
        // spec 8.2 acceptance: every default-format OK line matches the regex.
        #[test]
        fn default_lines_match_acceptance_regex(
            v6 in any::<bool>(),
            a in any::<[u8; 16]>(),
            b in any::<[u8; 16]>(),
            sp in any::<u16>(), dp in any::<u16>(), proto in any::<u8>(),
            packets in any::<u64>(), bytes in any::<u64>(),
            start in 0i64..4_000_000_000, len in 0i64..600,
            reject in any::<bool>(),
        ) {
            let ip = |x: [u8; 16]| -> IpAddr {
                if v6 { IpAddr::from(x) } else { IpAddr::from([x[0], x[1], x[2], x[3]]) }
            };
            let mut rec = ok_record();
            rec.start = start;
            rec.end = start + len;
            rec.flow = Some(FlowFields {
                src: ip(a), dst: ip(b), pkt_src: ip(a), pkt_dst: ip(b),
                src_port: sp, dst_port: dp, protocol: proto, packets, bytes,
                action: if reject { Action::Reject } else { Action::Accept },
                tcp_flags: 0, direction: FlowDirection::Ingress, traffic_path: None,
            });
            let line = LineFormat::default().render(&ctx(), "us-east-1", &rec);
            prop_assert!(regex::Regex::new(ACCEPTANCE).unwrap().is_match(&line), "{}", line);
        }
    }
}
