//! Gateway VPC endpoints (spec 11; `vpce-`) to S3 and DynamoDB:
//! CreateVpcEndpoint, DescribeVpcEndpoints, ModifyVpcEndpoint,
//! DeleteVpcEndpoints and DescribeVpcEndpointServices, with the hooks route
//! tables and DeleteVpc call inside their transactions.
//!
//! An endpoint owns one route in each of its tables: destination the
//! service's AWS-managed prefix list, target the endpoint. Those routes are
//! added and removed only here, in the transaction that changes the
//! endpoint's table list, so the two never disagree; CreateRoute-made routes
//! to the same list are refused, and DeleteRoute/ReplaceRoute refuse the
//! endpoint's routes ([`owns_route`]). Interface and Gateway Load Balancer
//! endpoints are not offered.

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::VpcEndpointState;
use openvpc_model::time::timestamp;

use super::idempotency::{self, ClientToken};
use super::prefix_list::{GATEWAY_SERVICES, aws_list_for, service_name};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, filters_match,
    new_id, ok_return, transact, write_tags,
};
use super::route_table::{Destination, ORIGIN_STATIC, Route, RouteTable, Target, TargetKind};
use super::vpc::{Vpc, has_dependencies};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::vpc_endpoint::VpcEndpoint;

/// spec 11 and 13: gateway endpoints per region.
pub const ENDPOINT_QUOTA: usize = 20;
/// spec 11: gateway endpoints per VPC.
pub const ENDPOINTS_PER_VPC: usize = 255;
/// spec 11: the longest endpoint policy.
const MAX_POLICY: usize = 20_480;
/// The policy an endpoint gets when none is given: full access, as AWS's.
const FULL_ACCESS: &str = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#;

/// The endpoint actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpcEndpoint" => create(ctx, params),
        "DescribeVpcEndpoints" => describe(ctx, params),
        "ModifyVpcEndpoint" => modify(ctx, params),
        "DeleteVpcEndpoints" => delete(ctx, params),
        "DescribeVpcEndpointServices" => describe_services(ctx, params),
        _ => return None,
    })
}

impl Resource for VpcEndpoint {
    const KIND: ResourceKind = ResourceKind::VpcEndpoint;
    const NOT_FOUND: &'static str = "InvalidVpcEndpointId.NotFound";
    const NOUN: &'static str = "VpcEndpoint";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "vpc-endpoint-id" => vec![self.id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            "service-name" => vec![self.service_name.clone()],
            "vpc-endpoint-state" => vec![self.state.as_str().to_owned()],
            "vpc-endpoint-type" => vec!["Gateway".into()],
            "owner-id" => vec![self.owner_id.clone()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("vpcEndpointId", &self.id)
            .elem("vpcEndpointType", "Gateway")
            .elem("vpcId", &self.vpc_id)
            .elem("serviceName", &self.service_name)
            .elem("state", self.state)
            .elem("policyDocument", &self.policy_document)
            .list("routeTableIdSet", &self.route_table_ids, |x, id| {
                x.text(id);
            })
            .list("subnetIdSet", std::iter::empty::<()>(), |_, _| {})
            .list("groupSet", std::iter::empty::<()>(), |_, _| {})
            .elem("ipAddressType", "ipv4")
            .elem("privateDnsEnabled", false)
            .elem("requesterManaged", false)
            .list("networkInterfaceIdSet", std::iter::empty::<()>(), |_, _| {})
            .list("dnsEntrySet", std::iter::empty::<()>(), |_, _| {})
            .elem("creationTimestamp", &self.creation_timestamp);
        write_tags(x, &self.tags);
        x.elem("ownerId", &self.owner_id);
    }
}

/// spec 11: the service of a name, or `InvalidServiceName`.
fn service_of(region: &str, name: &str) -> Result<&'static str, ApiError> {
    GATEWAY_SERVICES
        .into_iter()
        .find(|s| service_name(region, s) == name)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidServiceName",
                format!(
                    "The Vpc Endpoint Service '{name}' does not exist; gateway endpoints serve {} and {}.",
                    service_name(region, "s3"),
                    service_name(region, "dynamodb")
                ),
            )
        })
}

/// spec 11: a policy is JSON of at most 20,480 characters.
fn check_policy(policy: &str) -> Result<(), ApiError> {
    if policy.chars().count() > MAX_POLICY
        || serde_json::from_str::<serde_json::Value>(policy).is_err()
    {
        return Err(ApiError::new(
            "MalformedPolicyDocument",
            format!("The policy must be a JSON document of at most {MAX_POLICY} characters."),
        ));
    }
    Ok(())
}

fn route_table_ids(params: &Params, name: &str) -> Result<Vec<String>, ApiError> {
    let ids = params.list(name)?;
    for id in &ids {
        check_id(ResourceKind::RouteTable, id)?;
    }
    Ok(ids)
}

/// spec 11: the endpoint's route in table `table_id`, added.
fn add_route(tx: &mut Tx, e: &VpcEndpoint, table_id: &str) -> Result<(), ApiError> {
    let mut table = tx.load::<RouteTable>(table_id)?;
    if table.vpc_id != e.vpc_id {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Route table {table_id} is in {}, not in the endpoint's VPC {}.",
                table.vpc_id, e.vpc_id
            ),
        ));
    }
    let destination = Destination::PrefixList(e.prefix_list_id.clone());
    if table.routes.iter().any(|r| r.destination == destination) {
        return Err(ApiError::new(
            "RouteAlreadyExists",
            format!(
                "Route table {table_id} already has a route to {}; it can serve one endpoint of {}.",
                e.prefix_list_id, e.service_name
            ),
        ));
    }
    table.routes.push(Route {
        destination,
        target: Target {
            kind: TargetKind::Gateway,
            id: e.id.clone(),
        },
        origin: ORIGIN_STATIC.into(),
        blackhole: false,
    });
    tx.put(&table)
}

/// The endpoint's route in table `table_id`, removed (the table may be gone).
fn remove_route(tx: &mut Tx, e: &VpcEndpoint, table_id: &str) -> Result<(), ApiError> {
    if let Some(mut table) = tx.get::<RouteTable>(table_id)? {
        table.routes.retain(|r| r.target.id != e.id);
        tx.put(&table)?;
    }
    Ok(())
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let kind = params.get("VpcEndpointType").unwrap_or("Gateway");
    if kind != "Gateway" {
        return Err(ApiError::invalid_value(
            "VpcEndpointType",
            kind,
            "Only Gateway endpoints (S3 and DynamoDB) are offered.",
        ));
    }
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    let name = params.required("ServiceName")?;
    let service = service_of(ctx.region, name)?;
    let tables = route_table_ids(params, "RouteTableId")?;
    let policy = params.get("PolicyDocument").unwrap_or(FULL_ACCESS);
    check_policy(policy)?;
    let tags: Tags = tags_for(params, "vpc-endpoint")?;
    let token = ClientToken::of(params, "CreateVpcEndpoint")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let list = aws_list_for(ctx.region, service)
        .ok_or_else(|| ApiError::internal(format!("no prefix list for {service}")))?;
    let endpoint = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first endpoint.
        if let Some(e) = idempotency::earlier_one::<VpcEndpoint>(tx, token.as_ref())? {
            return Ok(e);
        }
        tx.load::<Vpc>(vpc_id)?;
        let existing = tx.list::<VpcEndpoint>()?;
        if existing.len() >= ENDPOINT_QUOTA
            || existing.iter().filter(|e| e.vpc_id == vpc_id).count() >= ENDPOINTS_PER_VPC
        {
            return Err(ApiError::new(
                "VpcEndpointLimitExceeded",
                format!(
                    "The maximum number of gateway endpoints has been reached ({ENDPOINT_QUOTA} per region, {ENDPOINTS_PER_VPC} per VPC)."
                ),
            ));
        }
        let mut unique: Vec<String> = Vec::new();
        for t in &tables {
            if !unique.contains(t) {
                unique.push(t.clone());
            }
        }
        let e = VpcEndpoint {
            id: new_id(ResourceKind::VpcEndpoint),
            owner_id: ctx.account.id.clone(),
            vpc_id: vpc_id.to_owned(),
            service_name: name.to_owned(),
            prefix_list_id: list.id.clone(),
            route_table_ids: unique,
            policy_document: policy.to_owned(),
            state: VpcEndpointState::Available,
            creation_timestamp: timestamp(),
            tags: tags.clone(),
        };
        for t in &e.route_table_ids {
            add_route(tx, &e, t)?;
        }
        tx.put(&e)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&e))?;
        Ok(e)
    })?;
    Ok(Xml::response("CreateVpcEndpoint", ctx.request_id, |x| {
        x.node("vpcEndpoint", |x| endpoint.write(x))
            .opt("clientToken", token.as_ref().map(ClientToken::token));
    }))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<VpcEndpoint>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeVpcEndpoints",
            ids: "VpcEndpointId",
            set: "vpcEndpointSet",
        },
    )
}

pub fn modify(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpcEndpointId")?;
    check_id(ResourceKind::VpcEndpoint, id)?;
    let add = route_table_ids(params, "AddRouteTableId")?;
    let remove = route_table_ids(params, "RemoveRouteTableId")?;
    if let Some(both) = add.iter().find(|t| remove.contains(t)) {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            format!("Route table {both} is both added and removed."),
        ));
    }
    let policy = params.get("PolicyDocument");
    let reset = params.bool("ResetPolicy")?.unwrap_or(false);
    if let Some(p) = policy {
        if reset {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Give PolicyDocument or ResetPolicy, not both.",
            ));
        }
        check_policy(p)?;
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut e = tx.load::<VpcEndpoint>(id)?;
        for t in &remove {
            if !e.route_table_ids.contains(t) {
                return Err(ApiError::invalid_value(
                    "RemoveRouteTableId",
                    t,
                    &format!("The route table is not associated with {id}."),
                ));
            }
            remove_route(tx, &e, t)?;
            e.route_table_ids.retain(|r| r != t);
        }
        for t in &add {
            if e.route_table_ids.contains(t) {
                continue;
            }
            add_route(tx, &e, t)?;
            e.route_table_ids.push(t.clone());
        }
        if let Some(p) = policy {
            p.clone_into(&mut e.policy_document);
        } else if reset {
            FULL_ACCESS.clone_into(&mut e.policy_document);
        }
        tx.put(&e)
    })?;
    Ok(ok_return(ctx, "ModifyVpcEndpoint"))
}

/// One endpoint that DeleteVpcEndpoints could not delete.
struct Unsuccessful {
    id: String,
    code: &'static str,
    message: String,
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = params.list("VpcEndpointId")?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("VpcEndpointId.N"));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    // EC2 answers each ID it cannot delete in `unsuccessful` and deletes
    // the others.
    let failed = transact(ctx, |tx| {
        let mut failed = Vec::new();
        for id in &ids {
            if let Err(e) = check_id(ResourceKind::VpcEndpoint, id) {
                failed.push(Unsuccessful {
                    id: id.clone(),
                    code: "InvalidVpcEndpointId.Malformed",
                    message: e.message,
                });
                continue;
            }
            let Some(e) = tx.get::<VpcEndpoint>(id)? else {
                failed.push(Unsuccessful {
                    id: id.clone(),
                    code: "InvalidVpcEndpointId.NotFound",
                    message: format!("The VpcEndpoint Id '{id}' does not exist"),
                });
                continue;
            };
            for t in &e.route_table_ids {
                remove_route(tx, &e, t)?;
            }
            tx.delete::<VpcEndpoint>(id);
        }
        Ok(failed)
    })?;
    Ok(Xml::response("DeleteVpcEndpoints", ctx.request_id, |x| {
        x.list("unsuccessful", &failed, |x, f| {
            x.node("error", |x| {
                x.elem("code", f.code).elem("message", &f.message);
            })
            .elem("resourceId", &f.id);
        });
    }))
}

/// spec 11: the two gateway services of the region.
pub fn describe_services(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let names = params.list("ServiceName")?;
    for n in &names {
        service_of(ctx.region, n)?;
    }
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let mut shown = Vec::new();
    for service in GATEWAY_SERVICES {
        let name = service_name(ctx.region, service);
        if !names.is_empty() && !names.contains(&name) {
            continue;
        }
        let keep = filters_match(&name, &filters, |name, filter| match filter {
            "service-name" => Some(vec![name.clone()]),
            "service-type" => Some(vec!["Gateway".into()]),
            _ => None,
        })?;
        if keep {
            shown.push((service, name));
        }
    }
    shown.sort_by(|a, b| a.1.cmp(&b.1));
    let zones: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|z| format!("{}{z}", ctx.region))
        .collect();
    Ok(Xml::response(
        "DescribeVpcEndpointServices",
        ctx.request_id,
        |x| {
            x.list("serviceNameSet", &shown, |x, (_, name)| {
                x.text(name);
            })
            .list("serviceDetailSet", &shown, |x, (service, name)| {
                x.elem("serviceName", name)
                    .elem("serviceId", format!("vpce-svc-{service}-{}", ctx.region))
                    .list("serviceType", ["Gateway"], |x, t| {
                        x.elem("serviceType", t);
                    })
                    .list("availabilityZoneSet", &zones, |x, z| {
                        x.text(z);
                    })
                    .elem("owner", "amazon")
                    .list(
                        "baseEndpointDnsNameSet",
                        [format!("{service}.{}.amazonaws.com", ctx.region)],
                        |x, d| {
                            x.text(d);
                        },
                    )
                    .elem("vpcEndpointPolicySupported", true)
                    .elem("acceptanceRequired", false)
                    .elem("managesVpcEndpoints", false)
                    .list("supportedIpAddressTypeSet", ["ipv4"], |x, t| {
                        x.text(t);
                    });
            });
        },
    ))
}

// ---- hooks for other modules (called inside their transactions) ----

/// True if `route` of table `table_id` is a gateway endpoint's, which only
/// ModifyVpcEndpoint and DeleteVpcEndpoints may change (spec 11).
pub fn owns_route(tx: &mut Tx, table_id: &str, route: &Route) -> Result<bool, ApiError> {
    if route.target.kind != TargetKind::Gateway || !route.target.id.starts_with("vpce-") {
        return Ok(false);
    }
    Ok(tx
        .get::<VpcEndpoint>(&route.target.id)?
        .is_some_and(|e| e.route_table_ids.iter().any(|t| t == table_id)))
}

/// DeleteRouteTable: the table leaves every endpoint's list.
pub fn route_table_deleted(tx: &mut Tx, table_id: &str) -> Result<(), ApiError> {
    for mut e in tx.list::<VpcEndpoint>()? {
        if e.route_table_ids.iter().any(|t| t == table_id) {
            e.route_table_ids.retain(|t| t != table_id);
            tx.put(&e)?;
        }
    }
    Ok(())
}

/// spec 1.7: the API does not delete a VPC's gateway endpoints: they keep it.
pub fn vpc_deleting(tx: &mut Tx, vpc_id: &str) -> Result<(), ApiError> {
    if tx.list::<VpcEndpoint>()?.iter().any(|e| e.vpc_id == vpc_id) {
        return Err(has_dependencies(vpc_id));
    }
    Ok(())
}
