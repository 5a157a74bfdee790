//! Reachability Analyzer paths (issue 14): CreateNetworkInsightsPath,
//! DescribeNetworkInsightsPaths and DeleteNetworkInsightsPath. A path names
//! a source and a destination of the caller's account (instances, ENIs and
//! internet gateways, by ID or ARN, or an address as the destination), a
//! protocol, a port and the filters that scope an analysis; it decides
//! nothing. The analyses that run a path (StartNetworkInsightsAnalysis and
//! its neighbours) are answered by `network_insights_analysis`.
//!
//! Isolation: an endpoint is looked up in the caller's own key space only,
//! and an ARN that names another account or region is answered as the ID
//! naming nothing, so a path between two accounts' resources cannot be made
//! and the answer does not tell whether the other account's resource exists.

use std::net::Ipv4Addr;

use openvpc_model::ResourceKind;
use openvpc_model::time::timestamp;
use serde_json::Value;

use super::idempotency::{self, ClientToken};
use super::instance::Instance;
use super::internet_gateway::InternetGateway;
use super::network_interface::NetworkInterface;
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe, new_id, not_found, segment, transact,
    write_tags,
};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::network_insights::{
    EndpointKind, NetworkInsightsPath, PathEndpoint, PathFilter, PathProtocol, PortRange,
};

/// The field of an analysis record (under `nia/`) that names its path:
/// while one names a path, DeleteNetworkInsightsPath refuses it.
pub const ANALYSIS_PATH_FIELD: &str = "network_insights_path_id";

/// The path actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateNetworkInsightsPath" => create(ctx, params),
        "DescribeNetworkInsightsPaths" => describe_paths(ctx, params),
        "DeleteNetworkInsightsPath" => delete(ctx, params),
        _ => return None,
    })
}

impl Resource for NetworkInsightsPath {
    const KIND: ResourceKind = ResourceKind::NetworkInsightsPath;
    // The code Terraform's provider and AWS's CloudFormation handler test for.
    const NOT_FOUND: &'static str = "InvalidNetworkInsightsPathId.NotFound";
    const NOUN: &'static str = "network insights path";
    // botocore: NetworkInsightsMaxResults is 1 to 100.
    const MAX_RESULTS: std::ops::RangeInclusive<u32> = 1..=100;

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The filters botocore documents, plus the `destination-port`,
    /// `source-ip` and `destination-ip` of the first API documentation.
    /// An endpoint matches by ID or ARN; a port range as `from-to`.
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let endpoint = |e: Option<&PathEndpoint>| {
            e.map(|e| vec![e.id.clone(), e.arn.clone()])
                .unwrap_or_default()
        };
        let filter = |at: &str| match at {
            "filter-at-source" => self.filter_at_source,
            _ => self.filter_at_destination,
        };
        Some(match name {
            "source" => endpoint(Some(&self.source)),
            "destination" => endpoint(self.destination.as_ref()),
            "protocol" => vec![self.protocol.as_str().to_owned()],
            "destination-port" => self
                .destination_port
                .map(|p| p.to_string())
                .into_iter()
                .collect(),
            "source-ip" => self.source_ip.map(|a| a.to_string()).into_iter().collect(),
            "destination-ip" => self
                .destination_ip
                .map(|a| a.to_string())
                .into_iter()
                .collect(),
            _ => {
                let (at, member) = name.split_once('.')?;
                if at != "filter-at-source" && at != "filter-at-destination" {
                    return None;
                }
                let f = filter(at);
                match member {
                    "source-address" => f.and_then(|f| f.source_address).map(|a| a.to_string()),
                    "destination-address" => {
                        f.and_then(|f| f.destination_address).map(|a| a.to_string())
                    }
                    "source-port-range" => f.and_then(|f| f.source_port_range).map(range_text),
                    "destination-port-range" => {
                        f.and_then(|f| f.destination_port_range).map(range_text)
                    }
                    _ => return None,
                }
                .into_iter()
                .collect()
            }
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("networkInsightsPathId", &self.id)
            .elem("networkInsightsPathArn", &self.arn)
            .elem("createdDate", &self.created_date)
            .elem("source", &self.source.id)
            .opt("destination", self.destination.as_ref().map(|d| &d.id))
            .elem("sourceArn", &self.source.arn)
            .opt("destinationArn", self.destination.as_ref().map(|d| &d.arn))
            .opt("sourceIp", self.source_ip)
            .opt("destinationIp", self.destination_ip)
            .elem("protocol", self.protocol.as_str())
            .opt("destinationPort", self.destination_port);
        write_tags(x, &self.tags);
        if let Some(f) = &self.filter_at_source {
            x.node("filterAtSource", |x| write_filter(x, f));
        }
        if let Some(f) = &self.filter_at_destination {
            x.node("filterAtDestination", |x| write_filter(x, f));
        }
    }
}

fn range_text(r: PortRange) -> String {
    let (from, to) = r.bounds();
    format!("{from}-{to}")
}

/// A `PathFilter` as botocore reads it.
fn write_filter(x: &mut Xml, f: &PathFilter) {
    let range = |x: &mut Xml, name: &str, r: Option<PortRange>| {
        if let Some(r) = r {
            x.node(name, |x| {
                x.opt("fromPort", r.from_port).opt("toPort", r.to_port);
            });
        }
    };
    x.opt("sourceAddress", f.source_address);
    range(x, "sourcePortRange", f.source_port_range);
    x.opt("destinationAddress", f.destination_address);
    range(x, "destinationPortRange", f.destination_port_range);
}

/// What a `Source` or `Destination` names, before it is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EndpointRef {
    kind: EndpointKind,
    id: String,
    /// The account and region of an ARN; `None` for a bare ID.
    arn_scope: Option<(String, String)>,
}

fn resource_kind(kind: EndpointKind) -> ResourceKind {
    match kind {
        EndpointKind::Instance => ResourceKind::Instance,
        EndpointKind::NetworkInterface => ResourceKind::NetworkInterface,
        EndpointKind::InternetGateway => ResourceKind::InternetGateway,
    }
}

/// The kinds AWS accepts that openvpc does not serve yet, by ID prefix and
/// ARN resource type (transit gateway attachments and endpoint services
/// share their parents' ID prefixes).
const NOT_YET: &[(&str, &str, &str)] = &[
    ("tgw-", "transit-gateway", "transit gateways"),
    (
        "tgw-",
        "transit-gateway-attachment",
        "transit gateway attachments",
    ),
    ("vpce-", "vpc-endpoint", "VPC endpoints"),
    ("vpce-", "vpc-endpoint-service", "VPC endpoint services"),
    ("pcx-", "vpc-peering-connection", "VPC peering connections"),
    ("vgw-", "vpn-gateway", "VPN gateways"),
];

fn not_yet(param: &str, value: &str, what: &str) -> ApiError {
    ApiError::invalid_value(
        param,
        value,
        &format!(
            "openvpc does not support {what} as a path's {} yet: use an instance, a network interface or an internet gateway.",
            param.to_ascii_lowercase()
        ),
    )
}

fn unknown_endpoint(param: &str, value: &str) -> ApiError {
    ApiError::invalid_value(
        param,
        value,
        "Name an instance (i-…), a network interface (eni-…) or an internet gateway (igw-…), by ID or by ARN.",
    )
}

/// Parses `Source` or `Destination`: an ID, or an ARN
/// `arn:aws:ec2:{region}:{account}:{type}/{id}`. A malformed ID of a kind
/// gets the kind's `.Malformed` code.
fn endpoint_ref(param: &str, value: &str) -> Result<EndpointRef, ApiError> {
    let (kind, id, arn_scope) = if let Some(rest) = value.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return Err(unknown_endpoint(param, value));
        };
        if partition != "aws" || service != "ec2" || region.is_empty() || account.is_empty() {
            return Err(unknown_endpoint(param, value));
        }
        let Some((kind_name, id)) = resource.split_once('/') else {
            return Err(unknown_endpoint(param, value));
        };
        let kind = match kind_name {
            "instance" => EndpointKind::Instance,
            "network-interface" => EndpointKind::NetworkInterface,
            "internet-gateway" => EndpointKind::InternetGateway,
            other => {
                return Err(match NOT_YET.iter().find(|(_, t, _)| *t == other) {
                    Some((_, _, what)) => not_yet(param, value, what),
                    None => unknown_endpoint(param, value),
                });
            }
        };
        (kind, id, Some((account.to_owned(), region.to_owned())))
    } else {
        let kind = if value.starts_with("i-") {
            EndpointKind::Instance
        } else if value.starts_with("eni-") {
            EndpointKind::NetworkInterface
        } else if value.starts_with("igw-") {
            EndpointKind::InternetGateway
        } else if let Some((_, _, what)) = NOT_YET.iter().find(|(p, _, _)| value.starts_with(p)) {
            return Err(not_yet(param, value, what));
        } else {
            return Err(unknown_endpoint(param, value));
        };
        (kind, value, None)
    };
    check_id(resource_kind(kind), id)?;
    Ok(EndpointRef {
        kind,
        id: id.to_owned(),
        arn_scope,
    })
}

/// Looks an endpoint up in the caller's account: one that names nothing
/// there (another account's or region's ARN included) is the kind's
/// `.NotFound`.
fn resolve(tx: &mut Tx, r: &EndpointRef) -> Result<PathEndpoint, ApiError> {
    let ctx = tx.ctx();
    let ours = r
        .arn_scope
        .as_ref()
        .is_none_or(|(account, region)| *account == ctx.account.id && region == ctx.region);
    let exists = match r.kind {
        EndpointKind::Instance => ours && tx.get::<Instance>(&r.id)?.is_some(),
        EndpointKind::NetworkInterface => ours && tx.get::<NetworkInterface>(&r.id)?.is_some(),
        EndpointKind::InternetGateway => ours && tx.get::<InternetGateway>(&r.id)?.is_some(),
    };
    if !exists {
        return Err(match r.kind {
            EndpointKind::Instance => not_found::<Instance>(&r.id),
            EndpointKind::NetworkInterface => not_found::<NetworkInterface>(&r.id),
            EndpointKind::InternetGateway => not_found::<InternetGateway>(&r.id),
        });
    }
    Ok(PathEndpoint {
        kind: r.kind,
        id: r.id.clone(),
        arn: format!(
            "arn:aws:ec2:{}:{}:{}/{}",
            ctx.region,
            ctx.account.id,
            r.kind.arn_type(),
            r.id
        ),
    })
}

fn ipv4(params: &Params, name: &str) -> Result<Option<Ipv4Addr>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::invalid_value(name, v, "Expected an IPv4 address such as 10.0.1.5.")
            })
        })
        .transpose()
}

/// botocore's `Port`: 0 to 65535.
fn port(params: &Params, name: &str) -> Result<Option<u16>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::invalid_value(name, v, "Expected a port number from 0 to 65535.")
            })
        })
        .transpose()
}

fn port_range(params: &Params, name: &str) -> Result<Option<PortRange>, ApiError> {
    let from_name = format!("{name}.FromPort");
    let to_name = format!("{name}.ToPort");
    let range = PortRange {
        from_port: port(params, &from_name)?,
        to_port: port(params, &to_name)?,
    };
    if range.from_port.is_none() && range.to_port.is_none() {
        return Ok(None);
    }
    if let (Some(from), Some(to)) = (range.from_port, range.to_port)
        && from > to
    {
        return Err(ApiError::invalid_value(
            &from_name,
            &from.to_string(),
            &format!("The first port of a range must not be above its last ({to_name} is {to})."),
        ));
    }
    Ok(Some(range))
}

/// `FilterAtSource` or `FilterAtDestination`, if the request has any member
/// of it.
fn path_filter(params: &Params, name: &str) -> Result<Option<PathFilter>, ApiError> {
    let f = PathFilter {
        source_address: ipv4(params, &format!("{name}.SourceAddress"))?,
        destination_address: ipv4(params, &format!("{name}.DestinationAddress"))?,
        source_port_range: port_range(params, &format!("{name}.SourcePortRange"))?,
        destination_port_range: port_range(params, &format!("{name}.DestinationPortRange"))?,
    };
    Ok((f != PathFilter::default()).then_some(f))
}

fn combination(message: &str) -> ApiError {
    ApiError::new("InvalidParameterCombination", message.to_owned())
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let source = endpoint_ref("Source", params.required("Source")?)?;
    let destination = params
        .get("Destination")
        .filter(|d| !d.is_empty())
        .map(|d| endpoint_ref("Destination", d))
        .transpose()?;
    let protocol = match params.required("Protocol")? {
        "tcp" => PathProtocol::Tcp,
        "udp" => PathProtocol::Udp,
        other => {
            return Err(ApiError::invalid_value(
                "Protocol",
                other,
                "Use tcp or udp.",
            ));
        }
    };
    let source_ip = ipv4(params, "SourceIp")?;
    let destination_ip = ipv4(params, "DestinationIp")?;
    let destination_port = port(params, "DestinationPort")?;
    let filter_at_source = path_filter(params, "FilterAtSource")?;
    let filter_at_destination = path_filter(params, "FilterAtDestination")?;
    // botocore's documentation of FilterAtSource and FilterAtDestination:
    // a filter replaces the plain parameters it overlaps.
    if filter_at_source.is_some() && (source_ip.is_some() || destination_port.is_some()) {
        return Err(combination(
            "FilterAtSource cannot be combined with SourceIp or DestinationPort: put the address and port in the filter.",
        ));
    }
    if filter_at_destination.is_some() && destination_ip.is_some() {
        return Err(combination(
            "FilterAtDestination cannot be combined with DestinationIp: put the address in the filter.",
        ));
    }
    // AWS's own wording (as Terraform's issue 38132 quotes it).
    if destination.is_none()
        && filter_at_source
            .and_then(|f| f.destination_address)
            .is_none()
    {
        return Err(ApiError::new(
            "MissingParameter",
            "The request must include either the Destination parameter or the FilterAtSource.DestinationAddress parameter. Add the required parameter and retry the request.",
        ));
    }
    let tags = tags_for(params, "network-insights-path")?;
    let token = ClientToken::of(params, "CreateNetworkInsightsPath")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let path = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first path.
        if let Some(path) = idempotency::earlier_one::<NetworkInsightsPath>(tx, token.as_ref())? {
            return Ok(path);
        }
        let source = resolve(tx, &source)?;
        let destination = destination.as_ref().map(|d| resolve(tx, d)).transpose()?;
        let id = new_id(ResourceKind::NetworkInsightsPath);
        let path = NetworkInsightsPath {
            arn: format!(
                "arn:aws:ec2:{}:{}:network-insights-path/{id}",
                ctx.region, ctx.account.id
            ),
            id,
            owner_id: ctx.account.id.clone(),
            created_date: timestamp(),
            source,
            destination,
            source_ip,
            destination_ip,
            protocol,
            destination_port,
            filter_at_source,
            filter_at_destination,
            tags: tags.clone(),
        };
        tx.put(&path)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&path))?;
        Ok(path)
    })?;
    Ok(Xml::response(
        "CreateNetworkInsightsPath",
        ctx.request_id,
        |x| {
            x.node("networkInsightsPath", |x| path.write(x));
        },
    ))
}

pub fn describe_paths(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe::<NetworkInsightsPath>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeNetworkInsightsPaths",
            ids: "NetworkInsightsPathId",
            set: "networkInsightsPathSet",
        },
    )
}

/// The first analysis of the account that names path `id`, if any.
fn analysis_of(tx: &mut Tx, id: &str) -> Result<Option<String>, ApiError> {
    let prefix = tx
        .ctx()
        .prefix(segment(ResourceKind::NetworkInsightsAnalysis));
    for (key, raw) in tx.range_raw(&prefix)? {
        let Ok(record) = serde_json::from_slice::<Value>(&raw) else {
            continue;
        };
        if record.get(ANALYSIS_PATH_FIELD).and_then(Value::as_str) == Some(id) {
            let analysis = key.get(prefix.len()..).unwrap_or_default();
            return Ok(Some(String::from_utf8_lossy(analysis).into_owned()));
        }
    }
    Ok(None)
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInsightsPathId")?;
    check_id(ResourceKind::NetworkInsightsPath, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        tx.load::<NetworkInsightsPath>(id)?;
        // AWS refuses while analyses of the path exist (the code Terraform's
        // provider retries on); they are deleted first.
        if let Some(analysis) = analysis_of(tx, id)? {
            return Err(ApiError::new(
                "AnalysisExistsForNetworkInsightsPath",
                format!(
                    "The network insights path '{id}' has analyses ({analysis}); delete them before the path."
                ),
            ));
        }
        tx.delete::<NetworkInsightsPath>(id);
        Ok(())
    })?;
    Ok(Xml::response(
        "DeleteNetworkInsightsPath",
        ctx.request_id,
        |x| {
            x.elem("networkInsightsPathId", id);
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_refs_by_id_and_arn() {
        let r = endpoint_ref("Source", "i-0123456789abcdef0").unwrap();
        assert_eq!(r.kind, EndpointKind::Instance);
        assert_eq!(r.arn_scope, None);
        let r = endpoint_ref(
            "Source",
            "arn:aws:ec2:us-east-1:111111111111:network-interface/eni-12345678",
        )
        .unwrap();
        assert_eq!(r.kind, EndpointKind::NetworkInterface);
        assert_eq!(r.id, "eni-12345678");
        assert_eq!(
            r.arn_scope,
            Some(("111111111111".to_owned(), "us-east-1".to_owned()))
        );
        // A malformed ID of a known kind gets that kind's code.
        assert_eq!(
            endpoint_ref("Source", "igw-XYZ").unwrap_err().code,
            "InvalidInternetGatewayID.Malformed"
        );
        assert_eq!(
            endpoint_ref(
                "Source",
                "arn:aws:ec2:us-east-1:111111111111:instance/eni-12345678"
            )
            .unwrap_err()
            .code,
            "InvalidInstanceID.Malformed"
        );
        for bad in [
            "vpc-12345678",
            "arn:aws:s3:::bucket",
            "arn:aws:ec2:us-east-1:111111111111:vpc/vpc-12345678",
            "tgw-12345678",
            "arn:aws:ec2:us-east-1:111111111111:vpn-gateway/vgw-12345678",
        ] {
            assert_eq!(
                endpoint_ref("Source", bad).unwrap_err().code,
                "InvalidParameterValue",
                "{bad}"
            );
        }
    }
}
