//! Route tables (spec 1.6, 2, 12): each VPC's main table, custom tables,
//! their routes and their associations with subnets and gateways.
//! CreateRouteTable, DeleteRouteTable, DescribeRouteTables, CreateRoute,
//! ReplaceRoute, DeleteRoute, AssociateRouteTable, DisassociateRouteTable and
//! ReplaceRouteTableAssociation live here, with the hooks other modules call
//! inside their own transactions: [`vpc_created`], [`vpc_deleting`],
//! [`subnet_deleted`], [`vpc_cidr_added`], [`vpc_cidr_removed`], and
//! [`table_for_subnet`] for the route compiler.
//!
//! A route's `state` is not stored: Describe reads the target's record and
//! shows `blackhole` when it is gone or not usable (spec 2.5), so deleting a
//! NAT gateway or an ENI anywhere shows up here without that module knowing
//! about routes.

use std::collections::BTreeMap;

use openvpc_model::lifecycle::CidrBlockState;
use openvpc_model::{Ipv4Cidr, ResourceKind};

use openvpc_model::node::NodeRecord;

use super::idempotency::{self, ClientToken};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_with, new_id, ok_return, transact,
    write_tags,
};
use super::route_target::{self, Liveness, TargetRecord, TargetRecordKind};
use super::subnet::Subnet;
use super::vpc::{Vpc, has_dependencies};
use super::vpn_gateway::VpnGateway;
use super::{Ctx, prefix_list, tags_for, vpc_endpoint, vpn_connection};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::fleet::nodes::EDGES_PREFIX;
use crate::records::region::InternetPolicy;
pub use crate::records::route_table::{
    Association, Destination, Ipv6Cidr, ORIGIN_LOCAL, ORIGIN_PROPAGATED, ORIGIN_STATIC, Route,
    RouteTable, Target, TargetKind,
};

/// spec 2.8: route tables per VPC, the main table included.
pub const TABLES_PER_VPC: usize = 200;
/// spec 2.8: non-propagated routes per table, per address family.
pub const ROUTES_PER_FAMILY: usize = 50;

/// The request parameters that name a target, and the kind each names.
/// `VpcEndpointId` (a Gateway Load Balancer endpoint) is shown as a gateway,
/// as AWS shows it.
const TARGET_PARAMS: &[(&str, TargetKind)] = &[
    ("GatewayId", TargetKind::Gateway),
    ("VpcEndpointId", TargetKind::Gateway),
    ("NatGatewayId", TargetKind::NatGateway),
    ("NetworkInterfaceId", TargetKind::NetworkInterface),
    ("InstanceId", TargetKind::Instance),
    ("VpcPeeringConnectionId", TargetKind::VpcPeeringConnection),
    (
        "EgressOnlyInternetGatewayId",
        TargetKind::EgressOnlyInternetGateway,
    ),
    ("TransitGatewayId", TargetKind::TransitGateway),
    ("CarrierGatewayId", TargetKind::CarrierGateway),
    ("LocalGatewayId", TargetKind::LocalGateway),
];

impl Resource for RouteTable {
    const KIND: ResourceKind = ResourceKind::RouteTable;
    const NOT_FOUND: &'static str = "InvalidRouteTableID.NotFound";
    const NOUN: &'static str = "routeTable";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let assoc = |f: fn(&Association) -> Option<String>| -> Option<Vec<String>> {
            Some(self.associations.iter().filter_map(f).collect())
        };
        let routes = |f: &dyn Fn(&Route) -> Option<String>| -> Option<Vec<String>> {
            Some(self.routes.iter().filter_map(f).collect())
        };
        if let Some((_, kind)) = TARGET_PARAMS.iter().find(|(_, k)| k.filter() == name) {
            return routes(&|r| (r.target.kind == *kind).then(|| r.target.id.clone()));
        }
        match name {
            "route-table-id" => Some(vec![self.id.clone()]),
            "vpc-id" => Some(vec![self.vpc_id.clone()]),
            "owner-id" => Some(vec![self.owner_id.clone()]),
            "association.route-table-association-id" => assoc(|a| Some(a.id.clone())),
            "association.route-table-id" => Some(if self.associations.is_empty() {
                Vec::new()
            } else {
                vec![self.id.clone()]
            }),
            "association.subnet-id" => assoc(|a| a.subnet_id.clone()),
            "association.gateway-id" => assoc(|a| a.gateway_id.clone()),
            "association.state" => assoc(|_| Some("associated".into())),
            // A table with no main association answers `false` even when it
            // has no association at all, as moto (and EC2's console) read it.
            "association.main" => {
                let mut values: Vec<String> = self
                    .associations
                    .iter()
                    .map(|a| a.main.to_string())
                    .collect();
                if !self.is_main() {
                    values.push("false".into());
                }
                Some(values)
            }
            "route.destination-cidr-block" => routes(&|r| match &r.destination {
                Destination::Ipv4(c) => Some(c.to_string()),
                _ => None,
            }),
            "route.destination-ipv6-cidr-block" => routes(&|r| match &r.destination {
                Destination::Ipv6(c) => Some(c.to_string()),
                _ => None,
            }),
            "route.destination-prefix-list-id" => routes(&|r| match &r.destination {
                Destination::PrefixList(p) => Some(p.clone()),
                _ => None,
            }),
            "route.origin" => routes(&|r| Some(r.origin.clone())),
            "route.state" => routes(&|r| Some(r.state().to_owned())),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        x.elem("routeTableId", &self.id)
            .list("associationSet", &self.associations, |x, a| {
                write_association(x, &self.id, a);
            })
            .list("propagatingVgwSet", &self.propagating_vgws, |x, v| {
                x.elem("gatewayId", v);
            })
            .list("routeSet", &self.routes, |x, r| {
                match &r.destination {
                    Destination::Ipv4(c) => x.elem("destinationCidrBlock", c),
                    Destination::Ipv6(c) => x.elem("destinationIpv6CidrBlock", c),
                    Destination::PrefixList(p) => x.elem("destinationPrefixListId", p),
                };
                x.elem(r.target.kind.element(), &r.target.id);
                if r.target.kind == TargetKind::Instance {
                    x.elem("instanceOwnerId", &self.owner_id);
                }
                x.elem("origin", &r.origin).elem("state", r.state());
            });
        write_tags(x, &self.tags);
        x.elem("vpcId", &self.vpc_id)
            .elem("ownerId", &self.owner_id);
    }
}

fn write_association(x: &mut Xml, table_id: &str, a: &Association) {
    x.elem("main", a.main)
        .elem("routeTableAssociationId", &a.id)
        .elem("routeTableId", table_id)
        .opt("subnetId", a.subnet_id.as_deref())
        .opt("gatewayId", a.gateway_id.as_deref())
        .node("associationState", |x| {
            x.elem("state", "associated");
        });
}

/// The route-table actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateRouteTable" => create_table(ctx, params),
        "DeleteRouteTable" => delete_table(ctx, params),
        "DescribeRouteTables" => describe(ctx, params),
        "CreateRoute" => create_route(ctx, params),
        "ReplaceRoute" => replace_route(ctx, params),
        "DeleteRoute" => delete_route(ctx, params),
        "AssociateRouteTable" => associate(ctx, params),
        "DisassociateRouteTable" => disassociate(ctx, params),
        "ReplaceRouteTableAssociation" => replace_association(ctx, params),
        _ => return None,
    })
}

// ---- hooks for other modules (called inside their transactions) ----

/// A new table of `vpc` with the local route of each of its CIDR blocks
/// (spec 2.1: custom tables start with only the local routes).
fn new_table(vpc: &Vpc, tags: Tags) -> RouteTable {
    let routes = vpc
        .cidr_associations
        .iter()
        .filter(|a| a.state == CidrBlockState::Associated)
        .filter_map(|a| Destination::parse_cidr(&a.cidr_block))
        .map(|destination| Route {
            destination,
            target: Target::local(),
            origin: ORIGIN_LOCAL.into(),
            blackhole: false,
        })
        .collect();
    RouteTable {
        id: new_id(ResourceKind::RouteTable),
        vpc_id: vpc.id.clone(),
        owner_id: vpc.owner_id.clone(),
        routes,
        associations: Vec::new(),
        propagating_vgws: Vec::new(),
        tags,
    }
}

/// spec 1.6: the main route table CreateVpc makes with the VPC.
pub fn vpc_created(tx: &mut Tx, vpc: &Vpc) -> Result<RouteTable, ApiError> {
    let mut table = new_table(vpc, Vec::new());
    table.associations.push(Association {
        id: new_id(ResourceKind::RouteTableAssociation),
        main: true,
        subnet_id: None,
        gateway_id: None,
    });
    tx.put(&table)?;
    Ok(table)
}

fn tables_of(tx: &mut Tx, vpc_id: &str) -> Result<Vec<RouteTable>, ApiError> {
    Ok(tx
        .list::<RouteTable>()?
        .into_iter()
        .filter(|t| t.vpc_id == vpc_id)
        .collect())
}

/// spec 1.7: DeleteVpc removes the main table with the VPC and refuses
/// while any other table remains.
pub fn vpc_deleting(tx: &mut Tx, vpc_id: &str) -> Result<(), ApiError> {
    let tables = tables_of(tx, vpc_id)?;
    if tables.iter().any(|t| !t.is_main()) {
        return Err(has_dependencies(vpc_id));
    }
    for t in tables {
        tx.delete::<RouteTable>(&t.id);
    }
    Ok(())
}

/// DeleteSubnet drops the subnet's explicit association, if any.
pub fn subnet_deleted(tx: &mut Tx, subnet_id: &str) -> Result<(), ApiError> {
    for mut t in tx.list::<RouteTable>()? {
        let before = t.associations.len();
        t.associations
            .retain(|a| a.subnet_id.as_deref() != Some(subnet_id));
        if t.associations.len() != before {
            tx.put(&t)?;
        }
    }
    Ok(())
}

/// spec 1.1: a CIDR block associated with the VPC gets a local route in
/// every table of the VPC. A static route to the same destination would
/// shadow the VPC's own range, so it is refused.
pub fn vpc_cidr_added(tx: &mut Tx, vpc_id: &str, cidr: &str) -> Result<(), ApiError> {
    let destination = Destination::parse_cidr(cidr)
        .ok_or_else(|| ApiError::invalid_value("CidrBlock", cidr, "Not a valid CIDR block."))?;
    for mut t in tables_of(tx, vpc_id)? {
        match t.route(&destination) {
            Some(i) if t.routes[i].is_local() => continue,
            Some(_) => {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "Route table {} already has a route to {destination}; delete it before associating the block with the VPC.",
                        t.id
                    ),
                ));
            }
            None => t.routes.push(Route {
                destination: destination.clone(),
                target: Target::local(),
                origin: ORIGIN_LOCAL.into(),
                blackhole: false,
            }),
        }
        tx.put(&t)?;
    }
    Ok(())
}

/// The block's local route leaves every table of the VPC.
pub fn vpc_cidr_removed(tx: &mut Tx, vpc_id: &str, cidr: &str) -> Result<(), ApiError> {
    let Some(destination) = Destination::parse_cidr(cidr) else {
        return Ok(());
    };
    for mut t in tables_of(tx, vpc_id)? {
        let before = t.routes.len();
        t.routes
            .retain(|r| !(r.is_local() && r.destination == destination));
        if t.routes.len() != before {
            tx.put(&t)?;
        }
    }
    Ok(())
}

/// spec 2.1: the table a subnet uses: its explicit association, or else the
/// VPC's main table.
pub fn table_for_subnet(tx: &mut Tx, subnet: &Subnet) -> Result<RouteTable, ApiError> {
    let tables = tables_of(tx, &subnet.vpc_id)?;
    let explicit = tables.iter().position(|t| {
        t.associations
            .iter()
            .any(|a| a.subnet_id.as_deref() == Some(subnet.id.as_str()))
    });
    let main = tables.iter().position(RouteTable::is_main);
    explicit
        .or(main)
        .and_then(|i| tables.into_iter().nth(i))
        .ok_or_else(|| {
            ApiError::internal(format!(
                "The VPC {} of subnet {} has no main route table",
                subnet.vpc_id, subnet.id
            ))
        })
}

// ---- targets ----

/// A target's stored record, read through its kind's typed view (spec 2.5);
/// `None` when it does not exist. One that does not parse is an error naming
/// its key, never a live target.
fn target_record(tx: &mut Tx, target: &Target) -> Result<Option<TargetRecord>, ApiError> {
    let Some(segment) = target.kind.segment(&target.id) else {
        return Ok(None);
    };
    let Some(kind) = TargetRecordKind::of_segment(segment) else {
        return Ok(None);
    };
    let key = tx.ctx().key(segment, &target.id);
    let Some(raw) = tx.get_raw(&key)? else {
        return Ok(None);
    };
    let key = String::from_utf8_lossy(&key);
    route_target::target_record(kind, &key, &raw)
        .map(Some)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// spec 2.5: true while the target can carry traffic from `vpc_id`. An
/// internet gateway carries it while attached to that VPC and while an
/// edge node serves the region (spec 5.1; issue 15): otherwise the route
/// shows `blackhole`, as AWS shows a route whose gateway cannot forward.
fn target_alive(tx: &mut Tx, target: &Target, vpc_id: &str) -> Result<bool, ApiError> {
    if target.is_local() {
        return Ok(true);
    }
    let Some(record) = target_record(tx, target)? else {
        return Ok(false);
    };
    if record.liveness != Liveness::Alive {
        return Ok(false);
    }
    if target.kind == TargetKind::Gateway && target.id.starts_with("igw-") {
        // Under `--moto-compat`, as moto shows them: alive while they exist.
        if super::address::region_settings(tx)?.internet == InternetPolicy::Assumed {
            return Ok(true);
        }
        if record.vpc_id.as_deref() != Some(vpc_id) {
            return Ok(false);
        }
        return edge_serves(tx);
    }
    Ok(true)
}

/// Whether an edge node serves the region now.
pub fn edge_serves(tx: &mut Tx) -> Result<bool, ApiError> {
    // Read outside the transaction's fence: the edges' liveness is the
    // fleet's, which no API write depends on.
    let prefix = format!("{EDGES_PREFIX}{}/", tx.ctx().region);
    let edges = tx
        .ctx()
        .store
        .range(prefix.as_bytes(), None, 1)
        .map_err(|e| ApiError::internal(format!("Reading the region's edge nodes failed: {e}")))?;
    Ok(!edges.is_empty())
}

/// The target must exist, and a target that belongs to a VPC must belong to
/// the table's.
fn check_target(tx: &mut Tx, table: &RouteTable, target: &Target) -> Result<(), ApiError> {
    if target.is_local() {
        return Ok(());
    }
    let record =
        target_record(tx, target)?.ok_or_else(|| target_not_found(target.kind, &target.id))?;
    if let Some(vpc) = record.vpc_id
        && vpc != table.vpc_id
    {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Route table {} and target {} belong to different networks",
                table.id, target.id
            ),
        ));
    }
    Ok(())
}

/// The one target a request names.
fn target_param(params: &Params) -> Result<Target, ApiError> {
    let given: Vec<Target> = TARGET_PARAMS
        .iter()
        .filter_map(|(name, kind)| {
            params.get(name).map(|id| Target {
                kind: *kind,
                id: id.to_owned(),
            })
        })
        .collect();
    let names = TARGET_PARAMS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ");
    match <[Target; 1]>::try_from(given) {
        Ok([target]) => Ok(target),
        Err(v) if v.is_empty() => Err(ApiError::new(
            "MissingParameter",
            format!("The request must name the route's target: one of {names}."),
        )),
        Err(_) => Err(ApiError::new(
            "InvalidParameterCombination",
            format!("A route has exactly one target: give only one of {names}."),
        )),
    }
}

/// The one destination a request names.
fn destination_param(params: &Params) -> Result<Destination, ApiError> {
    let v4 = params.get("DestinationCidrBlock");
    let v6 = params.get("DestinationIpv6CidrBlock");
    let pl = params.get("DestinationPrefixListId");
    match (v4, v6, pl) {
        (Some(text), None, None) => text.parse().map(Destination::Ipv4).map_err(|_| {
            ApiError::invalid_value(
                "destinationCidrBlock",
                text,
                "This is not a valid CIDR block.",
            )
        }),
        (None, Some(text), None) => text.parse().map(Destination::Ipv6).map_err(|_| {
            ApiError::invalid_value(
                "destinationIpv6CidrBlock",
                text,
                "This is not a valid IPv6 CIDR block.",
            )
        }),
        (None, None, Some(id)) => {
            check_id(ResourceKind::PrefixList, id)?;
            Ok(Destination::PrefixList(id.to_owned()))
        }
        (None, None, None) => Err(ApiError::new(
            "MissingParameter",
            "The request must contain one of DestinationCidrBlock, DestinationIpv6CidrBlock or DestinationPrefixListId.",
        )),
        _ => Err(ApiError::new(
            "InvalidParameterCombination",
            "A route has exactly one destination: give only one of DestinationCidrBlock, DestinationIpv6CidrBlock or DestinationPrefixListId.",
        )),
    }
}

/// spec 11: a gateway endpoint's route is changed through the endpoint
/// (ModifyVpcEndpoint), never directly.
fn refuse_endpoint_route(tx: &mut Tx, table: &RouteTable, i: usize) -> Result<(), ApiError> {
    let route = &table.routes[i];
    if vpc_endpoint::owns_route(tx, &table.id, route)? {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "The route to {} in {} belongs to VPC endpoint {}; change the endpoint's route tables with ModifyVpcEndpoint instead.",
                route.destination, table.id, route.target.id
            ),
        ));
    }
    Ok(())
}

/// spec 2.3: destinations AWS keeps for itself.
fn check_reserved(destination: &Destination) -> Result<(), ApiError> {
    let reserved = match destination {
        Destination::Ipv4(c) => "169.254.168.0/22"
            .parse::<Ipv4Cidr>()
            .is_ok_and(|r| r.contains(c)),
        Destination::Ipv6(c) => "fd00:ec2::/32"
            .parse::<Ipv6Cidr>()
            .is_ok_and(|r| r.contains(c)),
        Destination::PrefixList(_) => false,
    };
    if reserved {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "The destination {destination} is reserved by AWS (169.254.168.0/22 and fd00:ec2::/32 cannot be routed)."
            ),
        ));
    }
    Ok(())
}

/// True if `inner` lies inside `outer` and is smaller.
fn strictly_inside(inner: &Destination, outer: &Destination) -> bool {
    match (inner, outer) {
        (Destination::Ipv4(i), Destination::Ipv4(o)) => o.contains(i) && i != o,
        (Destination::Ipv6(i), Destination::Ipv6(o)) => o.contains(i) && i != o,
        _ => false,
    }
}

/// spec 2.2: a route more specific than the local route must match a whole
/// subnet's CIDR and go to a NAT gateway, an ENI or a GWLB endpoint.
fn check_local_override(
    tx: &mut Tx,
    table: &RouteTable,
    destination: &Destination,
    target: &Target,
) -> Result<(), ApiError> {
    let Some(local) = table
        .local_destinations()
        .find(|l| strictly_inside(destination, l))
        .cloned()
    else {
        return Ok(());
    };
    let whole_subnet = match destination {
        Destination::Ipv4(c) => tx
            .list::<Subnet>()?
            .iter()
            .any(|s| s.vpc_id == table.vpc_id && s.cidr_block == Some(*c)),
        _ => false,
    };
    if whole_subnet && target.is_middlebox() {
        return Ok(());
    }
    Err(ApiError::new(
        "InvalidParameterValue",
        format!(
            "The destination {destination} is more specific than the local route {local}: such a route must match a whole subnet's CIDR and target a NAT gateway, a network interface or a Gateway Load Balancer endpoint."
        ),
    ))
}

/// spec 2.5: an egress-only internet gateway carries IPv6 only.
fn check_family(destination: &Destination, target: &Target) -> Result<(), ApiError> {
    if target.kind == TargetKind::EgressOnlyInternetGateway && !destination.is_ipv6() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "The egress-only internet gateway {} can only be the target of an IPv6 route, not of {destination}.",
                target.id
            ),
        ));
    }
    if target.is_local() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "'local' can only be the target of the VPC's own local routes.",
        ));
    }
    Ok(())
}

/// spec 2.6: what a table associated with an IGW or a VGW may hold. Its
/// targets are local, an ENI, or (IGW only) a GWLB endpoint; its
/// destinations are the VPC's blocks or whole subnets; no prefix lists and
/// no propagation; and it is not the main table.
fn check_gateway_table(tx: &mut Tx, table: &RouteTable, gateway: &str) -> Result<(), ApiError> {
    let refuse = |why: String| {
        Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Route table {} cannot be associated with gateway {gateway}: {why}",
                table.id
            ),
        ))
    };
    if table.is_main() {
        return refuse("the main route table cannot be a gateway route table".into());
    }
    if !table.propagating_vgws.is_empty() {
        return refuse("route propagation is enabled on it".into());
    }
    let subnets: Vec<Subnet> = tx
        .list::<Subnet>()?
        .into_iter()
        .filter(|s| s.vpc_id == table.vpc_id)
        .collect();
    let igw = gateway.starts_with("igw-");
    for r in &table.routes {
        let target_ok = r.target.is_local()
            || r.target.kind == TargetKind::NetworkInterface
            || (igw && r.target.kind == TargetKind::Gateway && r.target.id.starts_with("vpce-"));
        if !target_ok {
            return refuse(format!(
                "the route to {} targets {}; only local, a network interface{} may be targets",
                r.destination,
                r.target.id,
                if igw {
                    " or a Gateway Load Balancer endpoint"
                } else {
                    ""
                }
            ));
        }
        let destination_ok = r.is_local()
            || table.local_destinations().any(|l| *l == r.destination)
            || matches!(&r.destination, Destination::Ipv4(c) if subnets.iter().any(|s| s.cidr_block == Some(*c)));
        if !destination_ok {
            return refuse(format!(
                "its destination {} is neither the VPC's CIDR nor a whole subnet's",
                r.destination
            ));
        }
    }
    Ok(())
}

/// Re-checks every edge association of a table after its routes changed.
fn check_gateway_associations(tx: &mut Tx, table: &RouteTable) -> Result<(), ApiError> {
    for gateway in table.gateway_ids() {
        check_gateway_table(tx, table, &gateway)?;
    }
    Ok(())
}

// ---- actions ----

pub fn create_table(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    let tags: Tags = tags_for(params, "route-table")?;
    let token = ClientToken::of(params, "CreateRouteTable")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let table = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first table.
        if let Some(table) = idempotency::earlier_one::<RouteTable>(tx, token.as_ref())? {
            return Ok(table);
        }
        let vpc = tx.load::<Vpc>(vpc_id)?;
        if tables_of(tx, vpc_id)?.len() >= TABLES_PER_VPC {
            return Err(ApiError::new(
                "RouteTableLimitExceeded",
                format!(
                    "The VPC '{vpc_id}' already has the maximum of {TABLES_PER_VPC} route tables. Delete a route table or ask for a higher quota."
                ),
            ));
        }
        let table = new_table(&vpc, tags.clone());
        tx.put(&table)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&table))?;
        Ok(table)
    })?;
    Ok(Xml::response("CreateRouteTable", ctx.request_id, |x| {
        x.node("routeTable", |x| table.write(x));
        x.opt("clientToken", token.as_ref().map(ClientToken::token));
    }))
}

pub fn delete_table(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let table = tx.load::<RouteTable>(id)?;
        // spec 2.1: the main table, and any associated table, stay.
        if !table.associations.is_empty() {
            return Err(ApiError::new(
                "DependencyViolation",
                format!("The routeTable '{id}' has dependencies and cannot be deleted."),
            ));
        }
        // spec 11: the table leaves the endpoints that routed through it.
        vpc_endpoint::route_table_deleted(tx, id)?;
        tx.delete::<RouteTable>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteRouteTable"))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let edges = vpn_connection::live_edges(ctx)?;
    describe_with::<RouteTable>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeRouteTables",
            ids: "RouteTableId",
            set: "routeTableSet",
        },
        |_| true,
        |tx| {
            let mut tables = tx.list::<RouteTable>()?;
            // spec 2.5: each target's record is read once per Describe.
            let mut alive: BTreeMap<(String, String), bool> = BTreeMap::new();
            for table in &mut tables {
                for route in &mut table.routes {
                    let key = (route.target.id.clone(), table.vpc_id.clone());
                    let ok = match alive.get(&key) {
                        Some(ok) => *ok,
                        None => {
                            let ok = target_alive(tx, &route.target, &table.vpc_id)?;
                            alive.insert(key, ok);
                            ok
                        }
                    };
                    route.blackhole = !ok;
                }
                add_propagated_routes(tx, table, &edges)?;
            }
            Ok(tables)
        },
    )
}

/// spec 2.7, 10.3: the routes a table learns from the VGWs propagating
/// into it, shown with `Origin=EnableVgwRoutePropagation`: while the
/// gateway is attached to the table's VPC, what its tunnels carry now (a
/// connection's static routes while a tunnel's IPsec SA is up, the routes
/// its BGP sessions learned while they are established). Computed when
/// the table is read, never stored. A destination the table also routes
/// statically shows both, as AWS does; the static one wins (spec 2.4) and
/// is what the hosts are told. Several connections announcing one prefix
/// make one route.
fn add_propagated_routes(
    tx: &mut Tx,
    table: &mut RouteTable,
    edges: &[NodeRecord],
) -> Result<(), ApiError> {
    for vgw_id in table.propagating_vgws.clone() {
        let attached = tx
            .get::<VpnGateway>(&vgw_id)?
            .is_some_and(|g| g.is_live() && g.vpc_id.as_deref() == Some(table.vpc_id.as_str()));
        if !attached {
            continue;
        }
        let paths = vpn_connection::vgw_paths_of(tx, &vgw_id, edges)?;
        for path in crate::fleet::vpn::propagated_into_table(paths) {
            let Ok(cidr) = Ipv4Cidr::new(path.prefix.network(), path.prefix.prefix_len()) else {
                continue;
            };
            let destination = Destination::Ipv4(cidr);
            if table
                .routes
                .iter()
                .any(|r| r.destination == destination && r.origin == ORIGIN_PROPAGATED)
            {
                continue;
            }
            table.routes.push(Route {
                destination,
                target: Target {
                    kind: TargetKind::Gateway,
                    id: vgw_id.clone(),
                },
                origin: ORIGIN_PROPAGATED.to_owned(),
                blackhole: false,
            });
        }
    }
    Ok(())
}

pub fn create_route(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let table_id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    let target = target_param(params)?;
    // Checked after the target, as EC2 does: a missing target is reported
    // before a missing destination.
    let destination = destination_param(params);
    if params.dry_run()? {
        destination?;
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut table = tx.load::<RouteTable>(table_id)?;
        check_target(tx, &table, &target)?;
        let destination = destination.clone()?;
        check_reserved(&destination)?;
        // spec 2.4: a prefix-list destination names a list that exists.
        if let Destination::PrefixList(id) = &destination
            && prefix_list::find(tx, id)?.is_none()
        {
            return Err(prefix_list::not_found(id));
        }
        check_family(&destination, &target)?;
        if table.route(&destination).is_some() {
            return Err(ApiError::new(
                "RouteAlreadyExists",
                format!("The route identified by {destination} already exists."),
            ));
        }
        check_local_override(tx, &table, &destination, &target)?;
        let same_family = table
            .routes
            .iter()
            .filter(|r| {
                r.origin == ORIGIN_STATIC && r.destination.is_ipv6() == destination.is_ipv6()
            })
            .count();
        if same_family >= ROUTES_PER_FAMILY {
            return Err(ApiError::new(
                "RouteLimitExceeded",
                format!(
                    "Route table {table_id} already has the maximum of {ROUTES_PER_FAMILY} {} routes. Delete a route or ask for a higher quota.",
                    if destination.is_ipv6() {
                        "IPv6"
                    } else {
                        "IPv4"
                    }
                ),
            ));
        }
        table.routes.push(Route {
            destination,
            target: target.clone(),
            origin: ORIGIN_STATIC.into(),
            blackhole: false,
        });
        check_gateway_associations(tx, &table)?;
        tx.put(&table)
    })?;
    Ok(ok_return(ctx, "CreateRoute"))
}

pub fn replace_route(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let table_id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    let destination = destination_param(params)?;
    let target = target_param(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut table = tx.load::<RouteTable>(table_id)?;
        // EC2 answers InvalidParameterValue here, not InvalidRoute.NotFound.
        let i = table.route(&destination).ok_or_else(|| {
            ApiError::new(
                "InvalidParameterValue",
                format!(
                    "There is no route defined for '{destination}' in the route table. Use CreateRoute instead."
                ),
            )
        })?;
        check_target(tx, &table, &target)?;
        refuse_endpoint_route(tx, &table, i)?;
        if table.routes[i].is_local() {
            // spec 2.2: the local route may go through an appliance and back.
            if !(target.is_local() || target.is_middlebox())
                || target.kind == TargetKind::NatGateway
            {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The local route {destination} can only target 'local', a network interface or a Gateway Load Balancer endpoint."
                    ),
                ));
            }
        } else {
            check_family(&destination, &target)?;
            check_local_override(tx, &table, &destination, &target)?;
        }
        table.routes[i].target = target.clone();
        check_gateway_associations(tx, &table)?;
        tx.put(&table)
    })?;
    Ok(ok_return(ctx, "ReplaceRoute"))
}

pub fn delete_route(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let table_id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    let destination = destination_param(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut table = tx.load::<RouteTable>(table_id)?;
        let i = table.route(&destination).ok_or_else(|| {
            ApiError::new(
                "InvalidRoute.NotFound",
                format!(
                    "no route with destination-cidr-block {destination} in route table {table_id}"
                ),
            )
        })?;
        // spec 11: an endpoint's route goes with ModifyVpcEndpoint only.
        refuse_endpoint_route(tx, &table, i)?;
        // spec 2.2: the local route is always there.
        if table.routes[i].is_local() {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("cannot remove local route {destination} in route table {table_id}"),
            ));
        }
        table.routes.remove(i);
        tx.put(&table)
    })?;
    Ok(ok_return(ctx, "DeleteRoute"))
}

fn association_response(ctx: &Ctx, action: &str, member: &str, id: &str) -> String {
    Xml::response(action, ctx.request_id, |x| {
        x.elem(member, id).node("associationState", |x| {
            x.elem("state", "associated");
        });
    })
}

pub fn associate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let table_id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    let subnet_id = params.get("SubnetId");
    let gateway_id = params.get("GatewayId");
    match (subnet_id, gateway_id) {
        (None, None) => return Err(ApiError::missing_parameter("SubnetId or GatewayId")),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Associate a route table with a subnet or with a gateway, not both.",
            ));
        }
        (Some(s), None) => check_id(ResourceKind::Subnet, s)?,
        (None, Some(g)) => {
            if !(g.starts_with("igw-") || g.starts_with("vgw-")) {
                return Err(ApiError::invalid_value(
                    "GatewayId",
                    g,
                    "A route table can be associated with an internet gateway or a virtual private gateway.",
                ));
            }
        }
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let id = transact(ctx, |tx| {
        let mut table = tx.load::<RouteTable>(table_id)?;
        let tables = tx.list::<RouteTable>()?;
        let existing = tables.iter().find_map(|t| {
            t.associations
                .iter()
                .find(|a| {
                    (subnet_id.is_some() && a.subnet_id.as_deref() == subnet_id)
                        || (gateway_id.is_some() && a.gateway_id.as_deref() == gateway_id)
                })
                .map(|a| (t.id.clone(), a.id.clone()))
        });
        if let Some(s) = subnet_id {
            let subnet = tx.load::<Subnet>(s)?;
            if subnet.vpc_id != table.vpc_id {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!("Route table {table_id} and subnet {s} belong to different networks"),
                ));
            }
        }
        if let Some(g) = gateway_id {
            let target = Target {
                kind: TargetKind::Gateway,
                id: g.to_owned(),
            };
            if target_record(tx, &target)?.is_none() {
                return Err(target_not_found(target.kind, g));
            }
            check_gateway_table(tx, &table, g)?;
        }
        match existing {
            // Asking again for what exists answers with it, as moto does.
            Some((t, a)) if t == table.id => return Ok(a),
            Some((_, a)) => {
                let what = subnet_id.or(gateway_id).unwrap_or_default();
                return Err(ApiError::new(
                    "Resource.AlreadyAssociated",
                    format!(
                        "Resource {what} is already associated with a route table ({a}); use ReplaceRouteTableAssociation to move it."
                    ),
                ));
            }
            None => {}
        }
        let association = Association {
            id: new_id(ResourceKind::RouteTableAssociation),
            main: false,
            subnet_id: subnet_id.map(str::to_owned),
            gateway_id: gateway_id.map(str::to_owned),
        };
        let id = association.id.clone();
        table.associations.push(association);
        tx.put(&table)?;
        Ok(id)
    })?;
    Ok(association_response(
        ctx,
        "AssociateRouteTable",
        "associationId",
        &id,
    ))
}

/// The table holding an association, and the association's index in it.
fn find_association(tx: &mut Tx, id: &str) -> Result<(RouteTable, usize), ApiError> {
    tx.list::<RouteTable>()?
        .into_iter()
        .find_map(|t| {
            let i = t.associations.iter().position(|a| a.id == id)?;
            Some((t, i))
        })
        .ok_or_else(|| {
            ApiError::new(
                "InvalidAssociationID.NotFound",
                format!("The association ID '{id}' does not exist"),
            )
        })
}

pub fn disassociate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("AssociationId")?;
    check_id(ResourceKind::RouteTableAssociation, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let (mut table, i) = find_association(tx, id)?;
        // spec 2.1: the main association only moves, with
        // ReplaceRouteTableAssociation.
        if table.associations[i].main {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "{id} is the main route table association of VPC {} and cannot be disassociated; use ReplaceRouteTableAssociation to make another table the main one.",
                    table.vpc_id
                ),
            ));
        }
        // spec 2.1: the subnet falls back to the main table implicitly.
        table.associations.remove(i);
        tx.put(&table)
    })?;
    Ok(ok_return(ctx, "DisassociateRouteTable"))
}

pub fn replace_association(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("AssociationId")?;
    check_id(ResourceKind::RouteTableAssociation, id)?;
    let table_id = params.required("RouteTableId")?;
    check_id(ResourceKind::RouteTable, table_id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let new_id_ = transact(ctx, |tx| {
        let mut new_table = tx.load::<RouteTable>(table_id)?;
        // Already there: nothing to move (moto answers with the same ID).
        if new_table.associations.iter().any(|a| a.id == id) {
            return Ok(id.to_owned());
        }
        let (mut old_table, i) = find_association(tx, id)?;
        if old_table.vpc_id != new_table.vpc_id {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Route table {table_id} is in VPC {}, not in VPC {} of association {id}",
                    new_table.vpc_id, old_table.vpc_id
                ),
            ));
        }
        let old = old_table.associations.remove(i);
        // spec 2.1: replacing the main association makes the new table the
        // main one; implicitly associated subnets follow it.
        let moved = Association {
            id: new_id(ResourceKind::RouteTableAssociation),
            ..old
        };
        // A subnet or gateway explicitly on the new table already keeps that
        // association; the old one just goes.
        let duplicate = new_table.associations.iter().any(|a| {
            (moved.subnet_id.is_some() && a.subnet_id == moved.subnet_id)
                || (moved.gateway_id.is_some() && a.gateway_id == moved.gateway_id)
        });
        let answer = moved.id.clone();
        if !duplicate {
            new_table.associations.push(moved);
        }
        // spec 2.6: a gateway route table stays one (and never the main).
        check_gateway_associations(tx, &new_table)?;
        tx.put(&old_table)?;
        tx.put(&new_table)?;
        Ok(answer)
    })?;
    Ok(association_response(
        ctx,
        "ReplaceRouteTableAssociation",
        "newAssociationId",
        &new_id_,
    ))
}

/// The error for a target ID that names nothing.
fn target_not_found(kind: TargetKind, id: &str) -> ApiError {
    let (code, noun) = match kind {
        TargetKind::Gateway => ("InvalidGatewayID.NotFound", "gateway"),
        TargetKind::NatGateway => ("InvalidNatGatewayID.NotFound", "natGateway"),
        TargetKind::NetworkInterface => ("InvalidNetworkInterfaceID.NotFound", "networkInterface"),
        TargetKind::Instance => ("InvalidInstanceID.NotFound", "instance"),
        TargetKind::VpcPeeringConnection => (
            "InvalidVpcPeeringConnectionID.NotFound",
            "vpcPeeringConnection",
        ),
        // moto's wording, which AWS shares: the eigw is a gateway.
        TargetKind::EgressOnlyInternetGateway => ("InvalidGatewayID.NotFound", "eigw"),
        TargetKind::TransitGateway => ("InvalidTransitGatewayID.NotFound", "transitGateway"),
        TargetKind::CarrierGateway => ("InvalidCarrierGatewayID.NotFound", "carrierGateway"),
        TargetKind::LocalGateway => ("InvalidLocalGatewayID.NotFound", "localGateway"),
    };
    ApiError::new(code, format!("The {noun} ID '{id}' does not exist"))
}
