//! NAT gateways (spec 6, 12, 13): CreateNatGateway, DescribeNatGateways and
//! DeleteNatGateway, and secondary addresses: AssociateNatGatewayAddress and
//! DisassociateNatGatewayAddress (Elastic IPs of a public gateway),
//! AssignPrivateNatGatewayAddress and UnassignPrivateNatGatewayAddress
//! (private addresses of a private gateway). A gateway's record holds its
//! addresses; its private addresses live on a requester-managed ENI
//! (`interfaceType nat_gateway`) in its subnet, created and deleted with
//! it, and a public gateway's
//! Elastic IPs are associated with that ENI, so DescribeAddresses,
//! DeleteSubnet and ReleaseAddress see them as in use.
//!
//! Lifecycle (spec 6.1, issue 16): a gateway is stored `pending`, holding
//! its ENI and Elastic IPs, until a hyperplane node of its shard reports it
//! programmed; the fleet's NAT lifecycle (`fleet::nat_lifecycle`) then
//! moves it to `available` through [`settle`], or to `failed` when no node
//! can serve it or its VPC lost its internet gateway. A gateway that AWS
//! would fail while provisioning (no internet gateway, an unknown or taken
//! allocation, a full subnet) is stored `failed` at once with AWS's
//! `FailureCode`, holding nothing. Deleting drains: the gateway is
//! `deleting` (its routes blackholes at once, its shard let go) but keeps
//! its ENI and Elastic IPs, so replies still in flight to them reach no
//! one else; the lifecycle then makes it `deleted`, freeing the ENI and
//! disassociating the EIPs (deleting it again answers as the first delete
//! did). Failed and deleted gateways stay visible for an hour, then
//! disappear.
//!
//! Under `--moto-compat` ([`InternetPolicy::Assumed`]: no hyperplane node
//! runs) a gateway is stored `available` at once and deleted at once, as
//! moto models them; the Create answer alone shows `pending`.

use std::net::Ipv4Addr;

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::{NatAddressStatus, NatGatewayState};
use openvpc_model::time::{format_time, now_secs};

use super::Ctx;
use super::address::{Address, AddressAssociation, region_settings};
use super::idempotency::{self, ClientToken};
use super::internet_gateway::InternetGateway;
use super::network_interface::{
    AddressRequest, EniSpec, NetworkInterface, PublicMapping, create_in, delete_in, parse_ip,
};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_with, new_id, transact, transact_as_owner,
    write_tags,
};
use super::subnet::Subnet;
use crate::api::error::ApiError;
use crate::api::query::{Params, check_tags};
use crate::api::xml::Xml;
use crate::fleet::nat_lifecycle::{Step, Transition};
pub use crate::records::nat_gateway::{NatAddress, NatGateway, VISIBLE_AFTER_END_SECS};
use crate::records::region::InternetPolicy;
use crate::store::Store;

/// spec 6.2, 13: NAT gateways per availability zone; pending, available and
/// deleting ones count.
pub const NAT_GATEWAYS_PER_AZ: usize = 5;

/// spec 6.2, 13: addresses per gateway, the primary included. AWS's default
/// for a public gateway's Elastic IPs is 2, adjustable to 8; quotas are not
/// adjustable here, so the limit is the hard maximum of 8, as for the
/// private addresses of a private gateway.
pub const MAX_ADDRESSES: usize = 8;

/// The gateway as the API shows it, in `state`.
fn write_gateway(g: &NatGateway, x: &mut Xml, state: NatGatewayState) {
    x.elem("createTime", &g.create_time)
        .opt("deleteTime", g.delete_time.as_deref())
        .opt("failureCode", g.failure_code.as_deref())
        .opt("failureMessage", g.failure_message.as_deref())
        .list("natGatewayAddressSet", &g.addresses, |x, a| {
            x.opt("allocationId", a.allocation_id.as_deref())
                .opt("networkInterfaceId", g.network_interface_id.as_deref())
                .opt("privateIp", a.private_ip)
                .opt("publicIp", a.public_ip)
                .opt("associationId", a.association_id.as_deref())
                .elem("isPrimary", a.is_primary)
                .elem("status", a.status);
        })
        .elem("natGatewayId", &g.id)
        .elem("state", state)
        .elem("subnetId", &g.subnet_id)
        .elem("vpcId", &g.vpc_id)
        .elem("connectivityType", &g.connectivity_type);
    write_tags(x, &g.tags);
}

impl Resource for NatGateway {
    const KIND: ResourceKind = ResourceKind::NatGateway;
    // spec 12.3: EC2's code for a NAT gateway ID that names nothing.
    const NOT_FOUND: &'static str = "NatGatewayNotFound";
    const NOUN: &'static str = "NAT gateway";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "nat-gateway-id" => vec![self.id.clone()],
            "state" => vec![self.state.as_str().to_owned()],
            "subnet-id" => vec![self.subnet_id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        write_gateway(self, x, self.state);
    }
}

/// The NAT gateway actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateNatGateway" => create(ctx, params),
        "DescribeNatGateways" => describe(ctx, params),
        "DeleteNatGateway" => delete(ctx, params),
        "AssociateNatGatewayAddress" => associate_address(ctx, params),
        "DisassociateNatGatewayAddress" => disassociate_address(ctx, params),
        "AssignPrivateNatGatewayAddress" => assign_private_address(ctx, params),
        "UnassignPrivateNatGatewayAddress" => unassign_private_address(ctx, params),
        _ => return None,
    })
}

/// What a CreateNatGateway asks for, checked before any store access.
#[derive(Debug, Clone)]
struct Request {
    subnet_id: String,
    public: bool,
    /// Primary first; empty for a private gateway.
    allocations: Vec<String>,
    addresses: AddressRequest,
    tags: Tags,
    /// spec 12.1: the request's `ClientToken`.
    token: Option<ClientToken>,
}

fn combination(message: &str) -> ApiError {
    ApiError::new("InvalidParameterCombination", message)
}

fn parse_request(params: &Params) -> Result<Request, ApiError> {
    let subnet_id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, subnet_id)?;
    let connectivity = params.get("ConnectivityType").unwrap_or("public");
    let public = match connectivity {
        "public" => true,
        "private" => false,
        other => {
            return Err(ApiError::invalid_value(
                "ConnectivityType",
                other,
                "Use 'public' or 'private'.",
            ));
        }
    };
    let mut allocations = Vec::new();
    if let Some(primary) = params.get("AllocationId") {
        allocations.push(primary.to_owned());
    }
    allocations.extend(params.list("SecondaryAllocationId")?);
    for id in &allocations {
        check_id(ResourceKind::ElasticIpAllocation, id)?;
    }
    let secondary_ips = params
        .list("SecondaryPrivateIpAddress")?
        .iter()
        .map(|t| parse_ip("SecondaryPrivateIpAddress", t))
        .collect::<Result<Vec<_>, _>>()?;
    let secondary_count = params
        .number::<usize>("SecondaryPrivateIpAddressCount")?
        .unwrap_or(0);
    if secondary_count > 0 && !secondary_ips.is_empty() {
        return Err(combination(
            "Give either SecondaryPrivateIpAddressCount or SecondaryPrivateIpAddress, not both.",
        ));
    }
    let primary = params
        .get("PrivateIpAddress")
        .map(|t| parse_ip("PrivateIpAddress", t))
        .transpose()?;
    let addresses = if public {
        // spec 6.1: a public gateway needs an Elastic IP at creation.
        if params.get("AllocationId").is_none() {
            return Err(ApiError::missing_parameter("AllocationId"));
        }
        // Each secondary private address carries one secondary EIP.
        if secondary_count > 0 {
            return Err(combination(
                "A public NAT gateway takes secondary addresses through SecondaryAllocationId, not SecondaryPrivateIpAddressCount.",
            ));
        }
        let extra = allocations.len() - 1;
        if !secondary_ips.is_empty() && secondary_ips.len() != extra {
            return Err(combination(
                "Give one SecondaryPrivateIpAddress for each SecondaryAllocationId.",
            ));
        }
        AddressRequest {
            primary,
            secondary_count: if secondary_ips.is_empty() { extra } else { 0 },
            secondaries: secondary_ips,
        }
    } else {
        // spec 6.1: a private gateway cannot take an EIP.
        if !allocations.is_empty() {
            return Err(combination(
                "A private NAT gateway cannot have an Elastic IP: leave out AllocationId and SecondaryAllocationId.",
            ));
        }
        AddressRequest {
            primary,
            secondaries: secondary_ips,
            secondary_count,
        }
    };
    let total = 1 + addresses.secondaries.len() + addresses.secondary_count;
    if total > MAX_ADDRESSES {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "A NAT gateway has at most {MAX_ADDRESSES} addresses (1 primary and {} secondary); {total} were asked for.",
                MAX_ADDRESSES - 1
            ),
        ));
    }
    let mut seen = Vec::new();
    for a in &allocations {
        if seen.contains(&a) {
            return Err(ApiError::invalid_value(
                "SecondaryAllocationId",
                a,
                "Each allocation may be given once.",
            ));
        }
        seen.push(a);
    }
    // EC2's resource type is `natgateway`; moto's tests (and some callers)
    // write `nat-gateway`, which is accepted as the same thing.
    let mut tags = Vec::new();
    for (kind, t) in params.tag_specifications()? {
        if kind != "natgateway" && kind != "nat-gateway" {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "'{kind}' is not a valid taggable resource type for this operation; use 'natgateway'"
                ),
            ));
        }
        tags.extend(t);
    }
    check_tags(&tags)?;
    Ok(Request {
        subnet_id: subnet_id.to_owned(),
        public,
        allocations,
        addresses,
        tags: tags.into_iter().map(|t| (t.key, t.value)).collect(),
        token: ClientToken::of(params, "CreateNatGateway")?,
    })
}

/// Why a gateway fails instead of coming up (spec 6.1's `FailureCode`s).
fn failure(code: &str, message: String) -> (String, String) {
    (code.to_owned(), message)
}

/// Checks what AWS checks while provisioning; `Err` is the failure to record.
fn provision_check(
    tx: &mut Tx,
    req: &Request,
    subnet: &Subnet,
) -> Result<Result<Vec<Address>, (String, String)>, ApiError> {
    let mut addresses = Vec::new();
    let all = tx.list::<Address>()?;
    for id in &req.allocations {
        let Some(a) = all.iter().find(|a| a.id == *id) else {
            return Ok(Err(failure(
                "InvalidAllocationID.NotFound",
                format!(
                    "Elastic IP address {id} could not be associated with this NAT gateway: the allocation does not exist."
                ),
            )));
        };
        if a.association.is_some() {
            return Ok(Err(failure(
                "Resource.AlreadyAssociated",
                format!(
                    "Elastic IP address {id} ({}) is already associated.",
                    a.public_ip
                ),
            )));
        }
        addresses.push(a.clone());
    }
    // spec 6.1: a public gateway routes out through the VPC's internet gateway.
    if req.public
        && !tx
            .list::<InternetGateway>()?
            .iter()
            .any(|g| g.vpc_id.as_deref() == Some(subnet.vpc_id.as_str()))
    {
        return Ok(Err(failure(
            "Gateway.NotAttached",
            format!("Network {} has no Internet gateway attached", subnet.vpc_id),
        )));
    }
    Ok(Ok(addresses))
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let req = parse_request(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (gateway, fresh) = transact(ctx, |tx| {
        let now = now_secs();
        // spec 12.1: a retry with the same token returns the first answer.
        if let Some(gateway) = idempotency::earlier_one::<NatGateway>(tx, req.token.as_ref())? {
            return Ok((gateway, false));
        }
        let all = tx.list::<NatGateway>()?;
        // Ended gateways past their visible hour are dropped here, the next
        // time the account creates one.
        for g in all.iter().filter(|g| !g.visible(now)) {
            tx.delete::<NatGateway>(&g.id);
        }
        let subnet = tx.load::<Subnet>(&req.subnet_id)?;
        let in_zone = all
            .iter()
            .filter(|g| g.live() && g.availability_zone == subnet.availability_zone)
            .count();
        if in_zone >= NAT_GATEWAYS_PER_AZ {
            return Err(ApiError::new(
                "NatGatewayLimitExceeded",
                format!(
                    "The maximum number of NAT gateways has been reached ({NAT_GATEWAYS_PER_AZ} per availability zone, {}). Delete one or ask for a higher quota.",
                    subnet.availability_zone
                ),
            ));
        }
        let id = new_id(ResourceKind::NatGateway);
        // Where nodes serve gateways, a gateway waits for one (issue 16);
        // under --moto-compat none runs, and it is up at once.
        let state = match region_settings(tx)?.internet {
            InternetPolicy::Edges => NatGatewayState::Pending,
            InternetPolicy::Assumed => NatGatewayState::Available,
        };
        let mut gateway = NatGateway {
            id: id.clone(),
            owner_id: ctx.account.id.clone(),
            subnet_id: subnet.id.clone(),
            vpc_id: subnet.vpc_id.clone(),
            availability_zone: subnet.availability_zone.clone(),
            connectivity_type: if req.public { "public" } else { "private" }.into(),
            state,
            state_since: Some(now),
            failure_code: None,
            failure_message: None,
            network_interface_id: None,
            addresses: Vec::new(),
            create_time: format_time(now),
            delete_time: None,
            ended_at: None,
            tags: req.tags.clone(),
        };
        let provisioned = match provision_check(tx, &req, &subnet)? {
            Ok(eips) => attach_addresses(tx, &req, &mut gateway, eips),
            Err(f) => Ok(Err(f)),
        }?;
        if let Err((code, message)) = provisioned {
            gateway.state = NatGatewayState::Failed;
            gateway.failure_code = Some(code);
            gateway.failure_message = Some(message);
            gateway.ended_at = Some(now);
            gateway.addresses = req
                .allocations
                .iter()
                .enumerate()
                .map(|(i, a)| NatAddress {
                    private_ip: None,
                    allocation_id: Some(a.clone()),
                    public_ip: None,
                    association_id: None,
                    is_primary: i == 0,
                    status: NatAddressStatus::Failed,
                })
                .collect();
        }
        tx.put(&gateway)?;
        idempotency::remember(tx, req.token.as_ref(), std::slice::from_ref(&gateway))?;
        Ok((gateway, true))
    })?;
    // The first answer shows AWS's `pending` (a gateway under --moto-compat
    // is stored `available` already; a failed one shows `failed` at once).
    let shown = if fresh && gateway.state == NatGatewayState::Available {
        NatGatewayState::Pending
    } else {
        gateway.state
    };
    Ok(Xml::response("CreateNatGateway", ctx.request_id, |x| {
        x.opt("clientToken", req.token.as_ref().map(ClientToken::token))
            .node("natGateway", |x| write_gateway(&gateway, x, shown));
    }))
}

/// Creates the gateway's managed ENI and associates its Elastic IPs; a
/// subnet without room is a provisioning failure, not an error.
fn attach_addresses(
    tx: &mut Tx,
    req: &Request,
    gateway: &mut NatGateway,
    eips: Vec<Address>,
) -> Result<Result<(), (String, String)>, ApiError> {
    let spec = EniSpec {
        description: format!("Interface for NAT Gateway {}", gateway.id),
        addresses: req.addresses.clone(),
        // spec 6.1: no security group can be attached to a NAT gateway.
        groups: Vec::new(),
        conntrack: None,
        tags: Vec::new(),
    };
    let mut eni: NetworkInterface = match create_in(tx, &req.subnet_id, spec) {
        Ok(eni) => eni,
        Err(e) if e.code == "InsufficientFreeAddressesInSubnet" => {
            return Ok(Err(failure(
                "InsufficientFreeAddressesInSubnet",
                format!(
                    "Subnet {} has insufficient free addresses to create this NAT gateway.",
                    req.subnet_id
                ),
            )));
        }
        Err(e) => return Err(e),
    };
    eni.interface_type = "nat_gateway".into();
    eni.requester_managed = true;
    // A NAT gateway forwards traffic that is neither from nor to itself.
    eni.source_dest_check = false;
    let owner = tx.ctx().account.id.clone();
    for (i, private_ip) in eni.private_ips.clone().into_iter().enumerate() {
        let mut entry = NatAddress {
            private_ip: Some(private_ip),
            allocation_id: None,
            public_ip: None,
            association_id: None,
            is_primary: i == 0,
            status: NatAddressStatus::Succeeded,
        };
        if let Some(mut eip) = eips.get(i).cloned() {
            let association_id = new_id(ResourceKind::ElasticIpAssociation);
            eni.public.push(PublicMapping {
                private_ip,
                public_ip: eip.public_ip,
                allocation_id: Some(eip.id.clone()),
                association_id: Some(association_id.clone()),
                ip_owner_id: owner.clone(),
            });
            eip.association = Some(AddressAssociation {
                association_id: association_id.clone(),
                network_interface_id: eni.id.clone(),
                private_ip,
                instance_id: None,
            });
            tx.put(&eip)?;
            entry.allocation_id = Some(eip.id.clone());
            entry.public_ip = Some(eip.public_ip);
            entry.association_id = Some(association_id);
        }
        gateway.addresses.push(entry);
    }
    tx.put(&eni)?;
    gateway.network_interface_id = Some(eni.id);
    Ok(Ok(()))
}

/// The gateways the account can see now (ended ones for an hour).
fn visible(tx: &mut Tx) -> Result<Vec<NatGateway>, ApiError> {
    let now = now_secs();
    Ok(tx
        .list::<NatGateway>()?
        .into_iter()
        .filter(|g| g.visible(now))
        .collect())
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_with::<NatGateway>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeNatGateways",
            ids: "NatGatewayId",
            set: "natGatewaySet",
        },
        |_| true,
        visible,
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NatGatewayId")?;
    check_id(ResourceKind::NatGateway, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let now = now_secs();
        let mut gateway = visible(tx)?
            .into_iter()
            .find(|g| g.id == id)
            .ok_or_else(|| super::resource::not_found::<NatGateway>(id))?;
        // AWS answers a repeated delete of a gateway that is still visible
        // (deleting, or deleted) with its ID again, changing nothing: tools
        // that retry or re-run a teardown see success, not an error.
        if matches!(
            gateway.state,
            NatGatewayState::Deleting | NatGatewayState::Deleted
        ) {
            return Ok(());
        }
        gateway.delete_time = Some(format_time(now));
        // issue 16: a gateway that came up drains first, `deleting` (its
        // routes blackholes at once), and holds its ENI and Elastic IPs
        // until the fleet's NAT lifecycle makes it `deleted` ([`settle`]).
        // A failed gateway has nothing to drain, and --moto-compat has no
        // nodes to drain.
        let drains = gateway.state != NatGatewayState::Failed
            && region_settings(tx)?.internet == InternetPolicy::Edges;
        if drains {
            gateway.state = NatGatewayState::Deleting;
            gateway.state_since = Some(now);
            return tx.put(&gateway);
        }
        finish_deletion(tx, &mut gateway, now)?;
        tx.put(&gateway)
    })?;
    Ok(Xml::response("DeleteNatGateway", ctx.request_id, |x| {
        x.elem("natGatewayId", id);
    }))
}

/// Frees what a gateway holds: its ENI (its private addresses go back to
/// the subnet) and its Elastic IPs' associations (spec 6.2: the addresses
/// stay allocated to the account).
fn release_holdings(tx: &mut Tx, gateway: &mut NatGateway) -> Result<(), ApiError> {
    if let Some(eni_id) = gateway.network_interface_id.clone()
        && let Some(eni) = tx.get::<NetworkInterface>(&eni_id)?
    {
        delete_in(tx, &eni)?;
    }
    for a in &mut gateway.addresses {
        a.association_id = None;
    }
    Ok(())
}

/// spec 6.2: the end of a deletion: the gateway is `deleted`, its ENI gone
/// and its EIPs disassociated; routes to it stay blackholes.
fn finish_deletion(tx: &mut Tx, gateway: &mut NatGateway, now: u64) -> Result<(), ApiError> {
    release_holdings(tx, gateway)?;
    gateway.state = NatGatewayState::Deleted;
    gateway.state_since = Some(now);
    gateway.delete_time.get_or_insert_with(|| format_time(now));
    // A failed gateway keeps the hour that began when it failed.
    gateway.ended_at = Some(gateway.ended_at.unwrap_or(now));
    Ok(())
}

/// Applies one step of the fleet's NAT lifecycle (`fleet::nat_lifecycle`)
/// as the gateway's account, at `now` (Unix seconds): one transaction,
/// which applies only while the gateway is still in the state the step was
/// planned from, so a concurrent DeleteNatGateway (or another server's
/// lifecycle) is never overwritten; the account's fence makes the check
/// and the write one. Returns whether it applied.
pub fn settle(store: &dyn Store, step: &Step, now: u64) -> Result<bool, ApiError> {
    transact_as_owner(store, &step.account, &step.region, "nat-lifecycle", |tx| {
        let Some(mut gateway) = tx.get::<NatGateway>(&step.gateway_id)? else {
            return Ok(false);
        };
        if gateway.state != step.from {
            return Ok(false);
        }
        match &step.to {
            Transition::Available => {
                gateway.state = NatGatewayState::Available;
                gateway.state_since = Some(now);
            }
            Transition::Failed { code, message } => {
                // As a failure at creation: the gateway holds nothing.
                release_holdings(tx, &mut gateway)?;
                gateway.network_interface_id = None;
                // Only the Elastic IPs asked for are shown, as then.
                gateway.addresses.retain(|a| a.allocation_id.is_some());
                for a in &mut gateway.addresses {
                    a.private_ip = None;
                    a.public_ip = None;
                    a.status = NatAddressStatus::Failed;
                }
                gateway.state = NatGatewayState::Failed;
                gateway.state_since = Some(now);
                gateway.failure_code = Some(code.clone());
                gateway.failure_message = Some(message.clone());
                gateway.ended_at = Some(now);
            }
            Transition::Deleted => finish_deletion(tx, &mut gateway, now)?,
        }
        tx.put(&gateway)?;
        Ok(true)
    })
}

// ---- secondary addresses (spec 6.2: up to 8 per gateway) ----

/// The gateway an address action names: it must be visible and `available`
/// (a failed or deleted gateway holds no addresses to change; a pending or
/// deleting one is not in a state to change them), of the connectivity
/// type the action is for.
fn live_gateway(tx: &mut Tx, id: &str, public: bool, action: &str) -> Result<NatGateway, ApiError> {
    let gateway = visible(tx)?
        .into_iter()
        .find(|g| g.id == id)
        .ok_or_else(|| super::resource::not_found::<NatGateway>(id))?;
    // [U]: the codes AWS gives for a gateway that is not available.
    match gateway.state {
        NatGatewayState::Available => {}
        NatGatewayState::Pending | NatGatewayState::Deleting => {
            return Err(ApiError::new(
                "IncorrectState",
                format!(
                    "The NAT gateway '{id}' is {}; its addresses can be changed once it is available.",
                    gateway.state
                ),
            ));
        }
        NatGatewayState::Failed | NatGatewayState::Deleted => {
            return Err(ApiError::new(
                "NatGatewayNotFound",
                format!(
                    "The NAT gateway '{id}' is {} and its addresses cannot be changed.",
                    gateway.state
                ),
            ));
        }
    }
    if (gateway.connectivity_type == "public") != public {
        return Err(combination(&format!(
            "{action} applies to {} NAT gateways only; {id} is {}.",
            if public { "public" } else { "private" },
            gateway.connectivity_type
        )));
    }
    Ok(gateway)
}

/// The gateway's ENI, which every available gateway has.
fn gateway_eni(tx: &mut Tx, gateway: &NatGateway) -> Result<NetworkInterface, ApiError> {
    let id = gateway.network_interface_id.as_deref().ok_or_else(|| {
        ApiError::internal(format!("NAT gateway {} has no interface", gateway.id))
    })?;
    tx.load::<NetworkInterface>(id)
}

fn check_room(gateway: &NatGateway, adding: usize) -> Result<(), ApiError> {
    let total = gateway.addresses.len() + adding;
    if total > MAX_ADDRESSES {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "A NAT gateway has at most {MAX_ADDRESSES} addresses (1 primary and {} secondary); {} has {} and {adding} more were asked for.",
                MAX_ADDRESSES - 1,
                gateway.id,
                gateway.addresses.len()
            ),
        ));
    }
    Ok(())
}

/// The private addresses a request names (`PrivateIpAddress.N`).
fn private_ips(params: &Params) -> Result<Vec<Ipv4Addr>, ApiError> {
    params
        .list("PrivateIpAddress")?
        .iter()
        .map(|t| parse_ip("PrivateIpAddress", t))
        .collect()
}

/// `MaxDrainDurationSeconds` (1–4000): how long AWS lets existing
/// connections drain. Nothing drains here, so it is only checked.
fn check_drain(params: &Params) -> Result<(), ApiError> {
    if let Some(secs) = params.number::<u32>("MaxDrainDurationSeconds")?
        && !(1..=4000).contains(&secs)
    {
        return Err(ApiError::invalid_value(
            "MaxDrainDurationSeconds",
            &secs.to_string(),
            "It must be between 1 and 4000 seconds.",
        ));
    }
    Ok(())
}

/// The answer of the four address actions: the addresses changed, with the
/// transitional status AWS shows first (`associating`, `assigning`, ...).
fn address_response(
    ctx: &Ctx,
    action: &str,
    gateway: &NatGateway,
    changed: &[NatAddress],
    status: NatAddressStatus,
) -> String {
    Xml::response(action, ctx.request_id, |x| {
        x.elem("natGatewayId", &gateway.id)
            .list("natGatewayAddressSet", changed, |x, a| {
                x.opt("allocationId", a.allocation_id.as_deref())
                    .opt(
                        "networkInterfaceId",
                        gateway.network_interface_id.as_deref(),
                    )
                    .opt("privateIp", a.private_ip)
                    .opt("publicIp", a.public_ip)
                    .opt("associationId", a.association_id.as_deref())
                    .elem("isPrimary", a.is_primary)
                    .elem("status", status);
            });
    })
}

/// The shared part of the two actions that add secondary addresses: on
/// the live gateway `id` (public or private), with room for `n` more,
/// `make(tx, i, subnet, eni)` takes address `i` from the gateway's subnet
/// onto its ENI; the gateway, ENI and subnet are saved together and the
/// answer names the addresses added, in `status`.
fn add_addresses(
    ctx: &Ctx,
    id: &str,
    public: bool,
    action: &str,
    n: usize,
    mut make: impl FnMut(
        &mut Tx,
        usize,
        &mut Subnet,
        &mut NetworkInterface,
    ) -> Result<NatAddress, ApiError>,
    status: NatAddressStatus,
) -> Result<String, ApiError> {
    let (gateway, added) = transact(ctx, |tx| {
        let mut gateway = live_gateway(tx, id, public, action)?;
        check_room(&gateway, n)?;
        let mut eni = gateway_eni(tx, &gateway)?;
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        let added = (0..n)
            .map(|i| make(tx, i, &mut subnet, &mut eni))
            .collect::<Result<Vec<_>, _>>()?;
        gateway.addresses.extend(added.iter().cloned());
        tx.put(&subnet)?;
        tx.put(&eni)?;
        tx.put(&gateway)?;
        Ok((gateway, added))
    })?;
    Ok(address_response(ctx, action, &gateway, &added, status))
}

/// AssociateNatGatewayAddress: secondary Elastic IPs for a public gateway,
/// each on a new secondary private address of its ENI (`PrivateIpAddress.N`
/// names them, one per allocation, or they are picked).
pub fn associate_address(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NatGatewayId")?;
    check_id(ResourceKind::NatGateway, id)?;
    let allocations = params.list("AllocationId")?;
    if allocations.is_empty() {
        return Err(ApiError::missing_parameter("AllocationId.1"));
    }
    for (i, a) in allocations.iter().enumerate() {
        check_id(ResourceKind::ElasticIpAllocation, a)?;
        if allocations[..i].contains(a) {
            return Err(ApiError::invalid_value(
                "AllocationId",
                a,
                "Each allocation may be given once.",
            ));
        }
    }
    let wanted_ips = private_ips(params)?;
    if !wanted_ips.is_empty() && wanted_ips.len() != allocations.len() {
        return Err(combination(
            "Give one PrivateIpAddress for each AllocationId, or none.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let owner = ctx.account.id.clone();
    add_addresses(
        ctx,
        id,
        true,
        "AssociateNatGatewayAddress",
        allocations.len(),
        |tx, i, subnet, eni| {
            let allocation = &allocations[i];
            let mut eip = tx.load::<Address>(allocation)?;
            if eip.association.is_some() {
                return Err(ApiError::new(
                    "Resource.AlreadyAssociated",
                    format!(
                        "Elastic IP address {allocation} ({}) is already associated.",
                        eip.public_ip
                    ),
                ));
            }
            let private_ip = subnet.allocate(wanted_ips.get(i).copied())?;
            let association_id = new_id(ResourceKind::ElasticIpAssociation);
            eni.private_ips.push(private_ip);
            eni.public.push(PublicMapping {
                private_ip,
                public_ip: eip.public_ip,
                allocation_id: Some(eip.id.clone()),
                association_id: Some(association_id.clone()),
                ip_owner_id: owner.clone(),
            });
            eip.association = Some(AddressAssociation {
                association_id: association_id.clone(),
                network_interface_id: eni.id.clone(),
                private_ip,
                instance_id: None,
            });
            tx.put(&eip)?;
            Ok(NatAddress {
                private_ip: Some(private_ip),
                allocation_id: Some(eip.id.clone()),
                public_ip: Some(eip.public_ip),
                association_id: Some(association_id),
                is_primary: false,
                status: NatAddressStatus::Succeeded,
            })
        },
        NatAddressStatus::Associating,
    )
}

/// DisassociateNatGatewayAddress: takes secondary Elastic IPs off a public
/// gateway (they stay allocated to the account); the private address each
/// was on goes with it [U: whether AWS keeps that private address]. The
/// primary address cannot be disassociated.
pub fn disassociate_address(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NatGatewayId")?;
    check_id(ResourceKind::NatGateway, id)?;
    let associations = params.list("AssociationId")?;
    if associations.is_empty() {
        return Err(ApiError::missing_parameter("AssociationId.1"));
    }
    for (i, a) in associations.iter().enumerate() {
        check_id(ResourceKind::ElasticIpAssociation, a)?;
        if associations[..i].contains(a) {
            return Err(ApiError::invalid_value(
                "AssociationId",
                a,
                "Each association may be given once.",
            ));
        }
    }
    check_drain(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (gateway, removed) = transact(ctx, |tx| {
        let mut gateway = live_gateway(tx, id, true, "DisassociateNatGatewayAddress")?;
        let mut eni = gateway_eni(tx, &gateway)?;
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        let mut removed = Vec::new();
        for association in &associations {
            let Some(pos) = gateway
                .addresses
                .iter()
                .position(|a| a.association_id.as_deref() == Some(association.as_str()))
            else {
                return Err(ApiError::new(
                    "InvalidAssociationID.NotFound",
                    format!(
                        "The association ID '{association}' does not exist on NAT gateway {id}."
                    ),
                ));
            };
            if gateway.addresses[pos].is_primary {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The association '{association}' is of the primary address of NAT gateway {id}, which cannot be disassociated."
                    ),
                ));
            }
            let address = gateway.addresses.remove(pos);
            if let Some(allocation) = &address.allocation_id
                && let Some(mut eip) = tx.get::<Address>(allocation)?
            {
                eip.association = None;
                tx.put(&eip)?;
            }
            if let Some(ip) = address.private_ip {
                eni.public.retain(|p| p.private_ip != ip);
                eni.private_ips.retain(|a| *a != ip);
                subnet.release(ip);
            }
            removed.push(address);
        }
        tx.put(&subnet)?;
        tx.put(&eni)?;
        tx.put(&gateway)?;
        Ok((gateway, removed))
    })?;
    Ok(address_response(
        ctx,
        "DisassociateNatGatewayAddress",
        &gateway,
        &removed,
        NatAddressStatus::Disassociating,
    ))
}

/// AssignPrivateNatGatewayAddress: secondary private addresses for a
/// private gateway, named (`PrivateIpAddress.N`) or counted
/// (`PrivateIpAddressCount`, 1–7).
pub fn assign_private_address(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NatGatewayId")?;
    check_id(ResourceKind::NatGateway, id)?;
    let wanted = private_ips(params)?;
    let count = params.number::<usize>("PrivateIpAddressCount")?;
    match (wanted.is_empty(), count) {
        (true, None) => {
            return Err(ApiError::new(
                "MissingParameter",
                "Specify PrivateIpAddress.N or PrivateIpAddressCount.",
            ));
        }
        (false, Some(_)) => {
            return Err(combination(
                "Give either PrivateIpAddress.N or PrivateIpAddressCount, not both.",
            ));
        }
        (_, Some(n)) if !(1..MAX_ADDRESSES).contains(&n) => {
            return Err(ApiError::invalid_value(
                "PrivateIpAddressCount",
                &n.to_string(),
                &format!("It must be between 1 and {}.", MAX_ADDRESSES - 1),
            ));
        }
        _ => {}
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    add_addresses(
        ctx,
        id,
        false,
        "AssignPrivateNatGatewayAddress",
        count.unwrap_or(wanted.len()),
        |_, i, subnet, eni| {
            let ip = subnet.allocate(wanted.get(i).copied())?;
            eni.private_ips.push(ip);
            Ok(NatAddress {
                private_ip: Some(ip),
                allocation_id: None,
                public_ip: None,
                association_id: None,
                is_primary: false,
                status: NatAddressStatus::Succeeded,
            })
        },
        NatAddressStatus::Assigning,
    )
}

/// UnassignPrivateNatGatewayAddress: frees secondary private addresses of
/// a private gateway; the primary cannot be unassigned.
pub fn unassign_private_address(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NatGatewayId")?;
    check_id(ResourceKind::NatGateway, id)?;
    let gone = private_ips(params)?;
    if gone.is_empty() {
        return Err(ApiError::missing_parameter("PrivateIpAddress.1"));
    }
    check_drain(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (gateway, removed) = transact(ctx, |tx| {
        let mut gateway = live_gateway(tx, id, false, "UnassignPrivateNatGatewayAddress")?;
        let mut eni = gateway_eni(tx, &gateway)?;
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        let mut removed = Vec::new();
        for ip in &gone {
            let Some(pos) = gateway
                .addresses
                .iter()
                .position(|a| a.private_ip == Some(*ip))
            else {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!("The address {ip} is not assigned to NAT gateway {id}."),
                ));
            };
            if gateway.addresses[pos].is_primary {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The address {ip} is the primary address of NAT gateway {id}, which cannot be unassigned."
                    ),
                ));
            }
            removed.push(gateway.addresses.remove(pos));
            eni.private_ips.retain(|a| a != ip);
            subnet.release(*ip);
        }
        tx.put(&subnet)?;
        tx.put(&eni)?;
        tx.put(&gateway)?;
        Ok((gateway, removed))
    })?;
    Ok(address_response(
        ctx,
        "UnassignPrivateNatGatewayAddress",
        &gateway,
        &removed,
        NatAddressStatus::Unassigning,
    ))
}
