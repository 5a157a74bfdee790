//! VPC flow logs' control plane (spec 8): CreateFlowLogs, DescribeFlowLogs and
//! DeleteFlowLogs. A flow log records what to capture (a VPC, subnet or
//! network interface; ACCEPT, REJECT or ALL traffic), the record format
//! (spec 8.1's fields, validated) and where records go (CloudWatch Logs, an
//! S3 bucket ARN, or Kinesis Data Firehose). Writing records is the
//! dataplane's job; [`FlowLog::s3_location`] and [`FlowLog::format_version`]
//! are what it needs from here.
//!
//! A flow log goes with its resource: records whose VPC, subnet or interface
//! no longer exists are hidden from Describe and purged by the next create,
//! so the modules that delete those resources need not know about flow logs.
//!
//! Whether a destination exists is not this module's to know: S3 buckets
//! and log groups live in other services. [`Destinations`] answers it;
//! production accepts every destination ([`Unchecked`]), and `--moto-compat`
//! passes one backed by the buckets and log groups it has been asked to make
//! (`crate::api::moto_compat`, whose header says why only that mode checks).

use std::collections::BTreeSet;

use openvpc_model::lifecycle::FlowLogDeliveryStatus;
use openvpc_model::time::timestamp;
use openvpc_model::{ResourceId, ResourceKind};

use super::idempotency::{self, ClientToken};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_with, new_id, transact, write_tags,
};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::flow_log::{
    DEFAULT_LOG_FORMAT, DestinationOptions, FIELDS, FlowLog, format_fields, parse_s3_arn,
    version_of,
};

/// The flow-log actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateFlowLogs" => create(ctx, params, &Unchecked),
        "DescribeFlowLogs" => describe(ctx, params),
        "DeleteFlowLogs" => delete(ctx, params),
        _ => return None,
    })
}

impl Resource for FlowLog {
    const KIND: ResourceKind = ResourceKind::FlowLog;
    const NOT_FOUND: &'static str = "InvalidFlowLogId.NotFound";
    const NOUN: &'static str = "flow log";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "flow-log-id" => vec![self.id.clone()],
            "resource-id" => vec![self.resource_id.clone()],
            // TrafficType is accepted in any case (as moto's tests send it),
            // so the filter takes the value in the spellings it may come in.
            "traffic-type" => case_variants(&self.traffic_type),
            "log-destination-type" => vec![self.log_destination_type.clone()],
            "log-group-name" => self.log_group_name.iter().cloned().collect(),
            "deliver-log-status" => vec![self.deliver_logs_status.to_string()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("creationTime", &self.creation_time)
            .opt(
                "deliverLogsErrorMessage",
                self.deliver_logs_error_message.as_deref(),
            )
            .opt(
                "deliverLogsPermissionArn",
                self.deliver_logs_permission_arn.as_deref(),
            )
            .opt(
                "deliverCrossAccountRole",
                self.deliver_cross_account_role.as_deref(),
            )
            .elem("deliverLogsStatus", self.deliver_logs_status)
            .elem("flowLogId", &self.id)
            .elem("flowLogStatus", "ACTIVE")
            .opt("logGroupName", self.log_group_name.as_deref())
            .elem("resourceId", &self.resource_id)
            .elem("trafficType", &self.traffic_type)
            .elem("logDestinationType", &self.log_destination_type)
            .opt("logDestination", self.log_destination.as_deref())
            .elem("logFormat", &self.log_format)
            .elem("maxAggregationInterval", self.max_aggregation_interval);
        if let Some(o) = &self.destination_options {
            x.node("destinationOptions", |x| {
                x.elem("fileFormat", &o.file_format)
                    .elem("hiveCompatiblePartitions", o.hive_compatible_partitions)
                    .elem("perHourPartition", o.per_hour_partition);
            });
        }
        write_tags(x, &self.tags);
    }
}

fn case_variants(upper: &str) -> Vec<String> {
    let lower = upper.to_ascii_lowercase();
    let mut capitalised = lower.clone();
    if let Some(first) = capitalised.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    vec![upper.to_owned(), lower, capitalised]
}

/// Answers whether a flow log's destination exists, where another service
/// owns it.
pub trait Destinations {
    /// True if the S3 bucket exists.
    fn bucket_exists(&self, tx: &mut Tx, bucket: &str) -> Result<bool, ApiError>;
    /// True if the CloudWatch Logs group exists in the caller's region.
    fn log_group_exists(&self, tx: &mut Tx, name: &str) -> Result<bool, ApiError>;
}

/// Production: openvpc runs no S3 or CloudWatch Logs API, so every bucket
/// and group is taken to exist (an S3 destination becomes a directory under
/// the data directory when the dataplane writes to it).
#[derive(Debug, Clone, Copy)]
pub struct Unchecked;

impl Destinations for Unchecked {
    fn bucket_exists(&self, _: &mut Tx, _: &str) -> Result<bool, ApiError> {
        Ok(true)
    }
    fn log_group_exists(&self, _: &mut Tx, _: &str) -> Result<bool, ApiError> {
        Ok(true)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new("InvalidParameter", message)
}

/// A log group's name from its ARN (`arn:aws:logs:region:acct:log-group:NAME[:*]`).
fn log_group_from_arn(arn: &str) -> Option<String> {
    let (_, name) = arn.split_once(":log-group:")?;
    let name = name.strip_suffix(":*").unwrap_or(name);
    (arn.starts_with("arn:") && !name.is_empty()).then(|| name.to_owned())
}

/// spec 8.1: a custom format's field names, in order.
fn parse_format(format: &str) -> Result<Vec<&str>, ApiError> {
    format_fields(format).map_err(|e| invalid(e.to_string()))
}

/// What one CreateFlowLogs asks for, checked; everything but the resources.
#[derive(Debug, Clone)]
struct Request {
    resource_type: String,
    resource_kind: ResourceKind,
    resource_ids: Vec<String>,
    traffic_type: String,
    log_destination_type: String,
    log_destination: Option<String>,
    log_group_name: Option<String>,
    deliver_logs_permission_arn: Option<String>,
    deliver_cross_account_role: Option<String>,
    log_format: String,
    max_aggregation_interval: u32,
    destination_options: Option<DestinationOptions>,
    /// spec 12.1: the request's `ClientToken`.
    token: Option<ClientToken>,
    tags: Tags,
}

fn read_request(params: &Params) -> Result<Request, ApiError> {
    let resource_type = params.required("ResourceType")?;
    let resource_kind = match resource_type {
        "VPC" => ResourceKind::Vpc,
        "Subnet" => ResourceKind::Subnet,
        "NetworkInterface" => ResourceKind::NetworkInterface,
        other => {
            return Err(ApiError::invalid_value(
                "ResourceType",
                other,
                "Flow logs are made for a VPC, Subnet or NetworkInterface.",
            ));
        }
    };
    let mut seen = BTreeSet::new();
    let resource_ids: Vec<String> = params
        .list("ResourceId")?
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    if resource_ids.is_empty() {
        return Err(ApiError::missing_parameter("ResourceId.N"));
    }
    let traffic = params.required("TrafficType")?;
    let traffic_type = traffic.to_ascii_uppercase();
    if !["ACCEPT", "REJECT", "ALL"].contains(&traffic_type.as_str()) {
        return Err(ApiError::invalid_value(
            "TrafficType",
            traffic,
            "Use ACCEPT, REJECT or ALL.",
        ));
    }
    let log_destination_type = params
        .get("LogDestinationType")
        .unwrap_or("cloud-watch-logs")
        .to_owned();
    let log_destination = params.get("LogDestination").map(str::to_owned);
    let mut log_group_name = params.get("LogGroupName").map(str::to_owned);
    let deliver_logs_permission_arn = params.get("DeliverLogsPermissionArn").map(str::to_owned);
    // The order of these checks, and their messages, are EC2's (as moto
    // records them).
    if log_group_name.is_none() && log_destination.is_none() {
        return Err(invalid(
            "LogDestination can't be empty if LogGroupName is not provided.",
        ));
    }
    match log_destination_type.as_str() {
        "cloud-watch-logs" => {
            if deliver_logs_permission_arn.is_none() {
                return Err(invalid(
                    "DeliverLogsPermissionArn can't be empty if LogDestinationType is cloud-watch-logs.",
                ));
            }
            if let Some(arn) = &log_destination {
                let name = log_group_from_arn(arn).ok_or_else(|| {
                    invalid(format!(
                        "LogDestination: {arn} is not a valid CloudWatch Logs log group ARN."
                    ))
                })?;
                if log_group_name.as_ref().is_some_and(|n| *n != name) {
                    return Err(invalid(
                        "LogGroupName and LogDestination name different log groups.",
                    ));
                }
                log_group_name = Some(name);
            }
        }
        "s3" | "kinesis-data-firehose" => {
            if log_group_name.is_some() {
                return Err(invalid(
                    "LogDestination type must be cloud-watch-logs if LogGroupName is provided.",
                ));
            }
            let dest = log_destination.as_deref().unwrap_or_default();
            let ok = if log_destination_type == "s3" {
                parse_s3_arn(dest).is_some()
            } else {
                dest.starts_with("arn:") && dest.contains(":firehose:")
            };
            if !ok {
                return Err(invalid(format!(
                    "LogDestination: {dest} is not a valid {log_destination_type} ARN."
                )));
            }
            if log_destination_type == "s3" && deliver_logs_permission_arn.is_some() {
                return Err(invalid(
                    "DeliverLogsPermissionArn is not applicable for s3 delivery.",
                ));
            }
        }
        other => {
            return Err(ApiError::invalid_value(
                "LogDestinationType",
                other,
                "Use cloud-watch-logs, s3 or kinesis-data-firehose.",
            ));
        }
    }
    let max_aggregation_interval = match params.get("MaxAggregationInterval") {
        None => 600,
        Some("60") => 60,
        Some("600") => 600,
        Some(_) => return Err(invalid("Invalid Flow Log Max Aggregation Interval")),
    };
    let log_format = match params.get("LogFormat") {
        None => DEFAULT_LOG_FORMAT.to_owned(),
        Some(f) => {
            parse_format(f)?;
            f.to_owned()
        }
    };
    let file_format = params.get("DestinationOptions.FileFormat");
    let hive = params.bool("DestinationOptions.HiveCompatiblePartitions")?;
    let per_hour = params.bool("DestinationOptions.PerHourPartition")?;
    let any_option = file_format.is_some() || hive.is_some() || per_hour.is_some();
    let destination_options = if log_destination_type == "s3" {
        let file_format = file_format.unwrap_or("plain-text");
        if !["plain-text", "parquet"].contains(&file_format) {
            return Err(ApiError::invalid_value(
                "DestinationOptions.FileFormat",
                file_format,
                "Use plain-text or parquet.",
            ));
        }
        Some(DestinationOptions {
            file_format: file_format.to_owned(),
            hive_compatible_partitions: hive.unwrap_or(false),
            per_hour_partition: per_hour.unwrap_or(false),
        })
    } else if any_option {
        return Err(invalid(
            "DestinationOptions apply only to the s3 destination.",
        ));
    } else {
        None
    };
    Ok(Request {
        resource_type: resource_type.to_owned(),
        resource_kind,
        resource_ids,
        traffic_type,
        log_destination_type,
        log_destination,
        log_group_name,
        deliver_logs_permission_arn,
        deliver_cross_account_role: params.get("DeliverCrossAccountRole").map(str::to_owned),
        log_format,
        max_aggregation_interval,
        destination_options,
        token: ClientToken::of(params, "CreateFlowLogs")?,
        tags: tags_for(params, "vpc-flow-log")?,
    })
}

/// True if the record a flow log is for still exists.
fn resource_exists(tx: &mut Tx, fl: &FlowLog) -> Result<bool, ApiError> {
    let kind = match fl.resource_type.as_str() {
        "VPC" => ResourceKind::Vpc,
        "Subnet" => ResourceKind::Subnet,
        _ => ResourceKind::NetworkInterface,
    };
    let key = tx.ctx().key(kind.prefix(), &fl.resource_id);
    Ok(tx.get_raw(&key)?.is_some())
}

/// The account's flow logs whose resources exist, and the IDs of those whose
/// resources are gone.
fn live(tx: &mut Tx) -> Result<(Vec<FlowLog>, Vec<String>), ApiError> {
    let mut alive = Vec::new();
    let mut orphans = Vec::new();
    for fl in tx.list::<FlowLog>()? {
        if resource_exists(tx, &fl)? {
            alive.push(fl);
        } else {
            orphans.push(fl.id);
        }
    }
    Ok((alive, orphans))
}

/// The NotFound code and message for a resource of `kind` that is missing.
fn resource_missing(kind: ResourceKind, id: &str) -> (String, String) {
    let (code, noun) = match kind {
        ResourceKind::Vpc => ("InvalidVpcID.NotFound", "vpc"),
        ResourceKind::Subnet => ("InvalidSubnetID.NotFound", "subnet"),
        _ => ("InvalidNetworkInterfaceID.NotFound", "networkInterface"),
    };
    (
        code.to_owned(),
        format!("The {noun} ID '{id}' does not exist"),
    )
}

/// What CreateFlowLogs answers.
struct Outcome {
    ids: Vec<String>,
    unsuccessful: Vec<(String, String, String)>,
}

/// CreateFlowLogs, checking destinations with `destinations`.
pub fn create(
    ctx: &Ctx,
    params: &Params,
    destinations: &dyn Destinations,
) -> Result<String, ApiError> {
    let req = read_request(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let outcome = transact(ctx, |tx| {
        let (existing, orphans) = live(tx)?;
        for id in orphans {
            tx.delete::<FlowLog>(&id);
        }
        // spec 12.1: a retried request with the same token gets the flow
        // logs the first made.
        if let Some(earlier) = idempotency::earlier::<FlowLog>(tx, req.token.as_ref())? {
            return Ok(Outcome {
                ids: earlier.into_iter().map(|f| f.id).collect(),
                unsuccessful: Vec::new(),
            });
        }
        let mut outcome = Outcome {
            ids: Vec::new(),
            unsuccessful: Vec::new(),
        };
        // Per-resource failures go in `unsuccessful`, as EC2 answers them.
        let bucket_missing = match req.log_destination_type.as_str() {
            "s3" => {
                let (bucket, _) = req
                    .log_destination
                    .as_deref()
                    .and_then(parse_s3_arn)
                    .unwrap_or_default();
                (!destinations.bucket_exists(tx, &bucket)?).then_some(bucket)
            }
            _ => None,
        };
        let group_missing = match &req.log_group_name {
            Some(name) if req.log_destination_type == "cloud-watch-logs" => {
                !destinations.log_group_exists(tx, name)?
            }
            _ => false,
        };
        let mut made: Vec<FlowLog> = Vec::new();
        for resource_id in &req.resource_ids {
            if let Err(e) = ResourceId::parse(req.resource_kind, resource_id) {
                outcome.unsuccessful.push((
                    resource_id.clone(),
                    e.code().to_owned(),
                    e.to_string(),
                ));
                continue;
            }
            let key = ctx.key(req.resource_kind.prefix(), resource_id);
            if tx.get_raw(&key)?.is_none() {
                let (code, message) = resource_missing(req.resource_kind, resource_id);
                outcome
                    .unsuccessful
                    .push((resource_id.clone(), code, message));
                continue;
            }
            if let Some(bucket) = &bucket_missing {
                outcome.unsuccessful.push((
                    resource_id.clone(),
                    "400".into(),
                    format!("LogDestination: {bucket} does not exist."),
                ));
                continue;
            }
            let fl = FlowLog {
                id: new_id(ResourceKind::FlowLog),
                resource_id: resource_id.clone(),
                resource_type: req.resource_type.clone(),
                traffic_type: req.traffic_type.clone(),
                log_destination_type: req.log_destination_type.clone(),
                log_destination: req.log_destination.clone(),
                log_group_name: req.log_group_name.clone(),
                deliver_logs_permission_arn: req.deliver_logs_permission_arn.clone(),
                deliver_cross_account_role: req.deliver_cross_account_role.clone(),
                log_format: req.log_format.clone(),
                max_aggregation_interval: req.max_aggregation_interval,
                destination_options: req.destination_options.clone(),
                // EC2 makes a flow log to a missing group and reports its
                // delivery as failing.
                deliver_logs_status: if group_missing {
                    FlowLogDeliveryStatus::Failed
                } else {
                    FlowLogDeliveryStatus::Success
                },
                deliver_logs_error_message: group_missing.then(|| "Access error".to_owned()),
                creation_time: timestamp(),
                tags: req.tags.clone(),
            };
            // spec 8.2: one flow log per resource, traffic type and destination.
            if existing.iter().chain(made.iter()).any(|f| {
                f.resource_id == fl.resource_id
                    && f.traffic_type == fl.traffic_type
                    && f.destination_key() == fl.destination_key()
            }) {
                return Err(ApiError::new(
                    "FlowLogAlreadyExists",
                    "Error. There is an existing Flow Log with the same configuration and log destination.",
                ));
            }
            tx.put(&fl)?;
            outcome.ids.push(fl.id.clone());
            made.push(fl);
        }
        idempotency::remember(tx, req.token.as_ref(), &made)?;
        Ok(outcome)
    })?;
    Ok(Xml::response("CreateFlowLogs", ctx.request_id, |x| {
        x.opt("clientToken", req.token.as_ref().map(ClientToken::token))
            .node("flowLogIdSet", |x| {
                for id in &outcome.ids {
                    x.elem("item", id);
                }
            })
            .list(
                "unsuccessful",
                &outcome.unsuccessful,
                |x, (id, code, message)| {
                    x.node("error", |x| {
                        x.elem("code", code).elem("message", message);
                    })
                    .elem("resourceId", id);
                },
            );
    }))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let spec = DescribeSpec {
        action: "DescribeFlowLogs",
        ids: "FlowLogId",
        set: "flowLogSet",
    };
    let ids = params.list("FlowLogId")?;
    if ids.is_empty() {
        return describe_with::<FlowLog>(ctx, params, spec, |_| true, |tx| Ok(live(tx)?.0));
    }
    for id in &ids {
        check_id(ResourceKind::FlowLog, id)?;
    }
    // EC2 answers named flow logs that do not exist by leaving them out, so
    // the IDs become one more (ANDed) `flow-log-id` filter, whose values are
    // ORed, under an index no client uses.
    let mut pairs: Vec<(String, String)> = params
        .names()
        .filter(|n| !n.starts_with("FlowLogId."))
        .map(|n| (n.to_owned(), params.get(n).unwrap_or_default().to_owned()))
        .collect();
    pairs.push(("Filter.4000000000.Name".into(), "flow-log-id".into()));
    for (i, id) in ids.iter().enumerate() {
        pairs.push((format!("Filter.4000000000.Value.{}", i + 1), id.clone()));
    }
    let rewritten = Params::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    describe_with::<FlowLog>(ctx, &rewritten, spec, |_| true, |tx| Ok(live(tx)?.0))
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("FlowLogId")?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("FlowLogId.N"));
    }
    for id in &ids {
        check_id(ResourceKind::FlowLog, id)?;
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let missing = transact(ctx, |tx| {
        let (existing, _) = live(tx)?;
        let mut missing = Vec::new();
        for id in &ids {
            if existing.iter().any(|f| &f.id == id) {
                tx.delete::<FlowLog>(id);
            } else {
                missing.push(id.clone());
            }
        }
        // When none of the named flow logs exists the call fails, with EC2's
        // message; otherwise the missing ones are listed as unsuccessful.
        if missing.len() == ids.len() {
            return Err(ApiError::new(
                FlowLog::NOT_FOUND,
                format!(
                    "These flow log ids in the input list are not found: [TotalCount: {}] {}",
                    missing.len(),
                    missing.join(" ")
                ),
            ));
        }
        Ok(missing)
    })?;
    Ok(Xml::response("DeleteFlowLogs", ctx.request_id, |x| {
        x.list("unsuccessful", &missing, |x, id| {
            x.node("error", |x| {
                x.elem("code", FlowLog::NOT_FOUND)
                    .elem("message", format!("The flow log ID '{id}' does not exist"));
            })
            .elem("resourceId", id);
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec 8.1: a custom format's version is the highest among its fields.
    #[test]
    fn format_versions() {
        assert_eq!(version_of(&parse_format(DEFAULT_LOG_FORMAT).unwrap()), 2);
        assert_eq!(
            version_of(&parse_format("${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}").unwrap()),
            3
        );
        assert_eq!(version_of(&parse_format("${traffic-path}").unwrap()), 5);
        assert!(parse_format("${nope}").is_err());
        assert!(parse_format("${version}  ${srcaddr}").is_err());
        assert!(parse_format("version").is_err());
    }

    // spec 8.2: S3 destinations are bucket ARNs with an optional prefix.
    #[test]
    fn s3_arns() {
        assert_eq!(
            parse_s3_arn("arn:aws:s3:::my-bucket/logs/vpc/"),
            Some(("my-bucket".into(), "logs/vpc".into()))
        );
        assert_eq!(
            parse_s3_arn("arn:aws-cn:s3:::b12"),
            Some(("b12".into(), String::new()))
        );
        assert_eq!(parse_s3_arn("arn:aws:s3:::"), None);
        assert_eq!(parse_s3_arn("s3://bucket"), None);
    }
}
