//! A flow log as stored: the record under `fl/{id}`, its destination and
//! its record format (spec 8.1's fields and the versions that brought them).
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::flow_log`.

use openvpc_model::lifecycle::FlowLogDeliveryStatus;
use serde::{Deserialize, Serialize};

use super::Tags;

/// spec 8.1: the default (version 2) format.
pub const DEFAULT_LOG_FORMAT: &str = "${version} ${account-id} ${interface-id} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} ${bytes} ${start} ${end} ${action} ${log-status}";

/// spec 8.1: every field a custom format may name, with the version that
/// introduced it.
pub const FIELDS: &[(&str, u8)] = &[
    ("version", 2),
    ("account-id", 2),
    ("interface-id", 2),
    ("srcaddr", 2),
    ("dstaddr", 2),
    ("srcport", 2),
    ("dstport", 2),
    ("protocol", 2),
    ("packets", 2),
    ("bytes", 2),
    ("start", 2),
    ("end", 2),
    ("action", 2),
    ("log-status", 2),
    ("vpc-id", 3),
    ("subnet-id", 3),
    ("instance-id", 3),
    ("tcp-flags", 3),
    ("type", 3),
    ("pkt-srcaddr", 3),
    ("pkt-dstaddr", 3),
    ("region", 4),
    ("az-id", 4),
    ("sublocation-type", 4),
    ("sublocation-id", 4),
    ("pkt-src-aws-service", 5),
    ("pkt-dst-aws-service", 5),
    ("flow-direction", 5),
    ("traffic-path", 5),
    ("ecs-cluster-arn", 7),
    ("ecs-cluster-name", 7),
    ("ecs-container-instance-arn", 7),
    ("ecs-container-instance-id", 7),
    ("ecs-container-id", 7),
    ("ecs-second-container-id", 7),
    ("ecs-service-name", 7),
    ("ecs-task-definition-arn", 7),
    ("ecs-task-arn", 7),
    ("ecs-task-id", 7),
    ("reject-reason", 8),
];

/// Where a flow log's records go, and what only that kind of destination has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationOptions {
    /// `plain-text` or `parquet`.
    pub file_format: String,
    pub hive_compatible_partitions: bool,
    pub per_hour_partition: bool,
}

/// A flow log as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    pub id: String,
    pub resource_id: String,
    /// `VPC`, `Subnet` or `NetworkInterface`.
    pub resource_type: String,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: String,
    /// `cloud-watch-logs`, `s3` or `kinesis-data-firehose`.
    pub log_destination_type: String,
    pub log_destination: Option<String>,
    pub log_group_name: Option<String>,
    pub deliver_logs_permission_arn: Option<String>,
    pub deliver_cross_account_role: Option<String>,
    pub log_format: String,
    pub max_aggregation_interval: u32,
    pub destination_options: Option<DestinationOptions>,
    /// `SUCCESS` or `FAILED` (the destination could not be reached).
    pub deliver_logs_status: FlowLogDeliveryStatus,
    pub deliver_logs_error_message: Option<String>,
    pub creation_time: String,
    pub tags: Tags,
}

impl FlowLog {
    /// spec 8.2: an S3 destination's bucket and key prefix (without slashes
    /// at its ends; empty when none).
    pub fn s3_location(&self) -> Option<(String, String)> {
        if self.log_destination_type != "s3" {
            return None;
        }
        self.log_destination.as_deref().and_then(parse_s3_arn)
    }

    /// spec 8.1: a record's `version`: the highest version among its fields.
    pub fn format_version(&self) -> u8 {
        format_fields(&self.log_format)
            .map(|fields| version_of(&fields))
            .unwrap_or(2)
    }

    /// The destination two flow logs must not share with the same resource
    /// and traffic type (spec 8.2: `FlowLogAlreadyExists`).
    pub fn destination_key(&self) -> (String, Option<String>, Option<String>) {
        (
            self.log_destination_type.clone(),
            self.log_destination.clone(),
            self.log_group_name.clone(),
        )
    }
}

/// `arn:<partition>:s3:::bucket[/prefix]` → (bucket, prefix).
pub fn parse_s3_arn(arn: &str) -> Option<(String, String)> {
    let rest = arn.strip_prefix("arn:")?;
    let (partition, rest) = rest.split_once(':')?;
    if !partition.starts_with("aws") {
        return None;
    }
    let path = rest.strip_prefix("s3:::")?;
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    bucket_ok.then(|| (bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

pub fn version_of(fields: &[&str]) -> u8 {
    fields
        .iter()
        .filter_map(|f| FIELDS.iter().find(|(n, _)| n == f).map(|(_, v)| *v))
        .max()
        .unwrap_or(2)
}

/// Why a custom log format is refused; the messages are the ones users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("LogFormat must name at least one field.")]
    Empty,
    #[error(
        "Invalid LogFormat: '{0}' is not a field; write each field as ${{field-name}}, separated by single spaces."
    )]
    NotAField(String),
    #[error("Unknown fields provided in LogFormat: {0}")]
    UnknownField(String),
}

/// spec 8.1: a custom format is `${field}` tokens separated by spaces, each a
/// known field; the field names, in order.
pub fn format_fields(format: &str) -> Result<Vec<&str>, FormatError> {
    if format.trim().is_empty() {
        return Err(FormatError::Empty);
    }
    format
        .split(' ')
        .map(|t| {
            let name = t
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| FormatError::NotAField(t.to_owned()))?;
            if FIELDS.iter().any(|(f, _)| *f == name) {
                Ok(name)
            } else {
                Err(FormatError::UnknownField(t.to_owned()))
            }
        })
        .collect()
}
