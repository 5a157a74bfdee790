//! VPC peering connections (spec 7, 12, 13): CreateVpcPeeringConnection,
//! AcceptVpcPeeringConnection, RejectVpcPeeringConnection,
//! DeleteVpcPeeringConnection, DescribeVpcPeeringConnections and
//! ModifyVpcPeeringConnectionOptions, and what DeleteVpc does to peerings.
//!
//! Store design: a peering is one record kept in each account that takes
//! part, under that account's `pcx` segment, so each side describes, tags
//! (tags are per account, as in AWS) and routes to it from its own key
//! space. The two copies differ only in their tags; every change writes both
//! in one transaction through [`save`]. The other account's copy is read
//! and written with `get_raw`/`put_raw`, which compares it, and the other
//! account's fence is moved too, so that account's own transactions, which
//! trust their fence alone, see the change and run again.
//!
//! Time-driven states are computed on read: a `pending-acceptance` request
//! is `expired` once 168 h have passed, and ended peerings stay visible for
//! spec 7.1's windows, which depend on who is looking.

use std::net::Ipv6Addr;

use openvpc_model::lifecycle::{CidrBlockState, VpcPeeringState};
use openvpc_model::time::now_secs;
use openvpc_model::{Ipv4Cidr, ResourceKind};

use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_with, new_id, not_found, ok_return,
    to_json, transact, write_tags,
};
use super::vpc::{Vpc, has_dependencies};
use super::{Ctx, store_error, tags_for};
use crate::api::account;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::vpc_peering::{EXPIRY_SECS, PeeringOptions, PeeringSide, VpcPeering};

/// spec 13: outstanding (pending) requests per account.
pub const OUTSTANDING_QUOTA: usize = 25;
/// spec 7.2, 13: active peerings per VPC (default quota).
pub const ACTIVE_PER_VPC_QUOTA: usize = 50;

/// AWS's message for a request that cannot be set up.
const FAILED_MESSAGE: &str =
    "Failed due to incorrect VPC-ID, Account ID, or overlapping CIDR range";

fn write_options(x: &mut Xml, o: &PeeringOptions) {
    x.elem(
        "allowDnsResolutionFromRemoteVpc",
        o.allow_dns_resolution_from_remote_vpc,
    )
    .elem(
        "allowEgressFromLocalClassicLinkToRemoteVpc",
        o.allow_egress_from_local_classic_link_to_remote_vpc,
    )
    .elem(
        "allowEgressFromLocalVpcToRemoteClassicLink",
        o.allow_egress_from_local_vpc_to_remote_classic_link,
    );
}

fn write_side(x: &mut Xml, s: &PeeringSide) {
    x.opt("cidrBlock", s.cidr_blocks.first())
        .list("cidrBlockSet", &s.cidr_blocks, |x, c| {
            x.elem("cidrBlock", c);
        })
        .list("ipv6CidrBlockSet", &s.ipv6_cidr_blocks, |x, c| {
            x.elem("ipv6CidrBlock", c);
        })
        .elem("ownerId", &s.owner_id)
        .node("peeringOptions", |x| write_options(x, &s.options))
        .elem("vpcId", &s.vpc_id)
        .elem("region", &s.region);
}

fn side_filter(s: &PeeringSide, field: &str) -> Option<Vec<String>> {
    Some(match field {
        "vpc-id" => vec![s.vpc_id.clone()],
        "owner-id" => vec![s.owner_id.clone()],
        "cidr-block" => s.cidr_blocks.clone(),
        "region" => vec![s.region.clone()],
        _ => return None,
    })
}

impl Resource for VpcPeering {
    const KIND: ResourceKind = ResourceKind::VpcPeeringConnection;
    // spec 7.2, 12.3 (moto spells it `InvalidVpcPeeringConnectionId.NotFound`).
    const NOT_FOUND: &'static str = "InvalidVpcPeeringConnectionID.NotFound";
    const NOUN: &'static str = "vpcPeeringConnection";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        if let Some(field) = name.strip_prefix("accepter-vpc-info.") {
            return side_filter(&self.accepter, field);
        }
        if let Some(field) = name.strip_prefix("requester-vpc-info.") {
            return side_filter(&self.requester, field);
        }
        Some(match name {
            "vpc-peering-connection-id" => vec![self.id.clone()],
            "status-code" => vec![self.state.as_str().to_owned()],
            "status-message" => vec![self.message.clone()],
            "expiration-time" => self.expiration_time().into_iter().collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        write_peering(self, x, self.state, &self.message);
    }
}

/// The peering actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpcPeeringConnection" => create(ctx, params),
        "AcceptVpcPeeringConnection" => accept(ctx, params),
        "RejectVpcPeeringConnection" => reject(ctx, params),
        "DeleteVpcPeeringConnection" => delete(ctx, params),
        "DescribeVpcPeeringConnections" => describe(ctx, params),
        "ModifyVpcPeeringConnectionOptions" => modify_options(ctx, params),
        _ => return None,
    })
}

// ---- keys of other accounts ----

fn record_key(account: &str, region: &str, id: &str) -> Vec<u8> {
    format!("r/{account}/{region}/pcx/{id}").into_bytes()
}

/// Reads another account's fence into the transaction (so any write of that
/// account makes this one run again) and moves it when `write` is set (so
/// that account's running transactions run again).
fn fence_other(tx: &mut Tx, account: &str, write: bool) -> Result<(), ApiError> {
    let key = format!("fence/{account}/{}", tx.ctx().region).into_bytes();
    tx.get_raw(&key)?;
    if write {
        tx.put_raw(key, Vec::new());
    }
    Ok(())
}

/// Another account's VPC, if it exists.
fn foreign_vpc(tx: &mut Tx, account: &str, vpc_id: &str) -> Result<Option<Vpc>, ApiError> {
    let key = format!("r/{account}/{}/vpc/{vpc_id}", tx.ctx().region).into_bytes();
    tx.get_raw(&key)?
        .map(|v| {
            serde_json::from_slice(&v)
                .map_err(|e| ApiError::internal(format!("A stored VPC is unreadable: {e}")))
        })
        .transpose()
}

/// Every peering copy another account holds, at `now`.
fn foreign_list(tx: &mut Tx, account: &str, now: u64) -> Result<Vec<VpcPeering>, ApiError> {
    fence_other(tx, account, false)?;
    let prefix = format!("r/{account}/{}/pcx/", tx.ctx().region).into_bytes();
    tx.ctx()
        .store
        .range(&prefix, None, usize::MAX)
        .map_err(store_error)?
        .into_iter()
        .map(|kv| {
            serde_json::from_slice::<VpcPeering>(&kv.value)
                .map(|p| p.at(now))
                .map_err(|e| ApiError::internal(format!("A stored peering is unreadable: {e}")))
        })
        .collect()
}

/// Writes the caller's copy and, when the peering spans two accounts and
/// `both` is set, the other account's copy with that account's own tags.
fn save(tx: &mut Tx, pcx: &VpcPeering, both: bool) -> Result<(), ApiError> {
    tx.put(pcx)?;
    let me = tx.ctx().account.id.clone();
    let other = pcx.other_account(&me).to_owned();
    if !both || other == me {
        return Ok(());
    }
    let key = record_key(&other, tx.ctx().region, &pcx.id);
    let tags = match tx.get_raw(&key)? {
        Some(v) => serde_json::from_slice::<VpcPeering>(&v)
            .map(|p| p.tags)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let copy = VpcPeering {
        tags,
        ..pcx.clone()
    };
    tx.put_raw(key, to_json(&copy)?);
    fence_other(tx, &other, true)
}

/// The caller's peerings it can see now.
fn visible(tx: &mut Tx) -> Result<Vec<VpcPeering>, ApiError> {
    let now = now_secs();
    let me = tx.ctx().account.id.clone();
    Ok(tx
        .list::<VpcPeering>()?
        .into_iter()
        .map(|p| p.at(now))
        .filter(|p| p.visible_to(&me, now))
        .collect())
}

/// The named peering as the caller sees it.
fn load(tx: &mut Tx, id: &str) -> Result<VpcPeering, ApiError> {
    visible(tx)?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| not_found::<VpcPeering>(id))
}

fn id_param(params: &Params) -> Result<&str, ApiError> {
    let id = params.required("VpcPeeringConnectionId")?;
    check_id(ResourceKind::VpcPeeringConnection, id)?;
    Ok(id)
}

fn state_transition(id: &str, state: VpcPeeringState) -> ApiError {
    ApiError::new(
        "InvalidStateTransition",
        format!(
            "Invalid state transition for vpcPeeringConnection {id}: it is {state}, which does not allow this request."
        ),
    )
}

fn not_permitted(message: String) -> ApiError {
    ApiError::new("OperationNotPermitted", message)
}

// ---- CIDR overlap (spec 7.2) ----

fn ipv6_block(text: &str) -> Option<(u128, u8)> {
    let (addr, len) = text.split_once('/')?;
    let addr: Ipv6Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 128)?;
    Some((u128::from(addr), len))
}

fn ipv6_overlap(a: &str, b: &str) -> bool {
    let (Some((a, la)), Some((b, lb))) = (ipv6_block(a), ipv6_block(b)) else {
        return false;
    };
    let len = la.min(lb);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    a & mask == b & mask
}

/// spec 7.2: any IPv4 block (secondaries included) or IPv6 block of one VPC
/// overlapping any of the other's.
fn overlapping(a: &PeeringSide, b: &PeeringSide) -> bool {
    let v4 = |s: &PeeringSide| -> Vec<Ipv4Cidr> {
        s.cidr_blocks
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect()
    };
    let (a4, b4) = (v4(a), v4(b));
    a4.iter().any(|x| b4.iter().any(|y| x.overlaps(y)))
        || a.ipv6_cidr_blocks
            .iter()
            .any(|x| b.ipv6_cidr_blocks.iter().any(|y| ipv6_overlap(x, y)))
}

fn side_of(vpc: &Vpc, region: &str) -> PeeringSide {
    PeeringSide {
        owner_id: vpc.owner_id.clone(),
        vpc_id: vpc.id.clone(),
        region: region.to_owned(),
        cidr_blocks: vpc
            .cidr_associations
            .iter()
            .filter(|a| a.state == CidrBlockState::Associated)
            .map(|a| a.cidr_block.clone())
            .collect(),
        ipv6_cidr_blocks: vpc
            .ipv6_cidr_associations
            .iter()
            .filter(|a| a.state == CidrBlockState::Associated)
            .map(|a| a.ipv6_cidr_block.clone())
            .collect(),
        options: PeeringOptions::default(),
    }
}

// ---- actions ----

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    let peer_vpc_id = params.required("PeerVpcId")?;
    check_id(ResourceKind::Vpc, peer_vpc_id)?;
    let me = ctx.account.id.as_str();
    let peer_owner = params.get("PeerOwnerId").unwrap_or(me);
    if peer_owner.len() != 12 || !peer_owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_value(
            "PeerOwnerId",
            peer_owner,
            "An account ID is 12 digits.",
        ));
    }
    let peer_region = params.get("PeerRegion").unwrap_or(ctx.region);
    // Inter-region peering needs the other region's store; not yet.
    if peer_region != ctx.region {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!(
                "Inter-region peering is not supported yet: PeerRegion must be this region ({}), not {peer_region}.",
                ctx.region
            ),
        ));
    }
    if peer_vpc_id == vpc_id {
        return Err(ApiError::invalid_value(
            "PeerVpcId",
            peer_vpc_id,
            "A VPC cannot be peered with itself.",
        ));
    }
    let tags: Tags = tags_for(params, "vpc-peering-connection")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let pcx = transact(ctx, |tx| {
        let now = now_secs();
        let vpc = tx.load::<Vpc>(vpc_id)?;
        // The other account's VPC: AWS does not tell a requester whether
        // another account or its VPC exists; the request just fails. In the
        // caller's own account a missing VPC is an error.
        let peer = if peer_owner == me {
            Some(tx.load::<Vpc>(peer_vpc_id)?)
        } else if account::by_id(ctx.store, peer_owner)?.is_some() {
            foreign_vpc(tx, peer_owner, peer_vpc_id)?
        } else {
            None
        };
        let own: Vec<VpcPeering> = tx
            .list::<VpcPeering>()?
            .into_iter()
            .map(|p| p.at(now))
            .collect();
        // spec 7.2, 13: 25 outstanding requests.
        let outstanding = own
            .iter()
            .filter(|p| p.requester.owner_id == me && p.state == VpcPeeringState::PendingAcceptance)
            .count();
        if outstanding >= OUTSTANDING_QUOTA {
            return Err(ApiError::new(
                "OutstandingVpcPeeringConnectionLimitExceeded",
                format!(
                    "You have reached the limit of {OUTSTANDING_QUOTA} outstanding VPC peering connection requests; wait for some to be accepted or delete them."
                ),
            ));
        }
        // spec 7.2: at most one peering per VPC pair.
        if let Some(existing) = own
            .iter()
            .find(|p| p.live() && p.involves(vpc_id) && p.involves(peer_vpc_id))
        {
            return Err(ApiError::new(
                "VpcPeeringConnectionAlreadyExists",
                format!(
                    "A VPC peering connection between {vpc_id} and {peer_vpc_id} already exists: {}.",
                    existing.id
                ),
            ));
        }
        let requester = side_of(&vpc, ctx.region);
        let accepter = match &peer {
            Some(p) => side_of(p, ctx.region),
            None => PeeringSide {
                owner_id: peer_owner.to_owned(),
                vpc_id: peer_vpc_id.to_owned(),
                region: ctx.region.to_owned(),
                cidr_blocks: Vec::new(),
                ipv6_cidr_blocks: Vec::new(),
                options: PeeringOptions::default(),
            },
        };
        // spec 7.1, 7.2: an unknown peer or overlapping blocks fail the
        // request; only the requester sees a failed one.
        let fails = peer.is_none() || overlapping(&requester, &accepter);
        let pcx = VpcPeering {
            id: new_id(ResourceKind::VpcPeeringConnection),
            requester,
            accepter,
            state: if fails {
                VpcPeeringState::Failed
            } else {
                VpcPeeringState::PendingAcceptance
            },
            message: if fails {
                FAILED_MESSAGE.to_owned()
            } else {
                format!("Pending Acceptance by {peer_owner}")
            },
            created_at: now,
            ended_at: fails.then_some(now),
            deleted_by: None,
            tags: tags.clone(),
        };
        save(tx, &pcx, !fails)?;
        Ok(pcx)
    })?;
    // AWS's first answer is always `initiating-request`.
    Ok(Xml::response(
        "CreateVpcPeeringConnection",
        ctx.request_id,
        |x| {
            x.node("vpcPeeringConnection", |x| {
                write_peering(
                    &pcx,
                    x,
                    VpcPeeringState::InitiatingRequest,
                    &format!("Initiating Request to {}", pcx.accepter.owner_id),
                );
            });
        },
    ))
}

/// spec 7.2: only the accepter account accepts or rejects (both sides are
/// the caller's in a same-account peering).
fn check_accepter(pcx: &VpcPeering, me: &str, verb: &str) -> Result<(), ApiError> {
    if pcx.accepter.owner_id != me {
        return Err(not_permitted(format!(
            "User {me} cannot {verb} peering {}: only the accepter account {} can.",
            pcx.id, pcx.accepter.owner_id
        )));
    }
    Ok(())
}

fn active_count(peerings: &[VpcPeering], vpc_id: &str) -> usize {
    peerings
        .iter()
        .filter(|p| p.state == VpcPeeringState::Active && p.involves(vpc_id))
        .count()
}

pub fn accept(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = id_param(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let me = ctx.account.id.as_str();
    let pcx = transact(ctx, |tx| {
        let now = now_secs();
        let mut pcx = load(tx, id)?;
        check_accepter(&pcx, me, "accept")?;
        if pcx.state != VpcPeeringState::PendingAcceptance {
            return Err(state_transition(id, pcx.state));
        }
        // spec 7.2, 13: 50 active peerings per VPC, on both sides.
        let own: Vec<VpcPeering> = tx
            .list::<VpcPeering>()?
            .into_iter()
            .map(|p| p.at(now))
            .collect();
        let requester_side = if pcx.requester.owner_id == me {
            own.clone()
        } else {
            foreign_list(tx, &pcx.requester.owner_id.clone(), now)?
        };
        for (vpc, list) in [
            (&pcx.accepter.vpc_id, &own),
            (&pcx.requester.vpc_id, &requester_side),
        ] {
            if active_count(list, vpc) >= ACTIVE_PER_VPC_QUOTA {
                return Err(ApiError::new(
                    "ActiveVpcPeeringConnectionPerVpcLimitExceeded",
                    format!(
                        "VPC {vpc} already has {ACTIVE_PER_VPC_QUOTA} active peering connections, the most it may have."
                    ),
                ));
            }
        }
        pcx.state = VpcPeeringState::Active;
        pcx.message = "Active".into();
        save(tx, &pcx, true)?;
        Ok(pcx)
    })?;
    Ok(Xml::response(
        "AcceptVpcPeeringConnection",
        ctx.request_id,
        |x| {
            x.node("vpcPeeringConnection", |x| pcx.write(x));
        },
    ))
}

pub fn reject(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = id_param(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let me = ctx.account.id.as_str();
    transact(ctx, |tx| {
        let mut pcx = load(tx, id)?;
        check_accepter(&pcx, me, "reject")?;
        if pcx.state != VpcPeeringState::PendingAcceptance {
            return Err(state_transition(id, pcx.state));
        }
        pcx.state = VpcPeeringState::Rejected;
        pcx.message = format!("Rejected by {me}");
        pcx.ended_at = Some(now_secs());
        save(tx, &pcx, true)
    })?;
    Ok(ok_return(ctx, "RejectVpcPeeringConnection"))
}

/// Marks a peering deleted by `me` and writes both copies.
fn mark_deleted(tx: &mut Tx, mut pcx: VpcPeering, me: &str) -> Result<(), ApiError> {
    pcx.state = VpcPeeringState::Deleted;
    pcx.message = format!("Deleted by {me}");
    pcx.deleted_by = Some(me.to_owned());
    pcx.ended_at = Some(now_secs());
    save(tx, &pcx, true)
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = id_param(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let me = ctx.account.id.as_str();
    transact(ctx, |tx| {
        let pcx = load(tx, id)?;
        match pcx.state {
            // spec 7.1: either side deletes an active peering.
            VpcPeeringState::Active | VpcPeeringState::Provisioning => {}
            // spec 7.1: the requester withdraws a pending request; the
            // accepter rejects it instead.
            VpcPeeringState::PendingAcceptance if pcx.requester.owner_id == me => {}
            VpcPeeringState::PendingAcceptance => {
                return Err(not_permitted(format!(
                    "User {me} cannot delete pending peering {id}: the accepter rejects it instead."
                )));
            }
            // spec 7.1: failed, rejected and expired ones cannot be deleted.
            other => return Err(state_transition(id, other)),
        }
        mark_deleted(tx, pcx, me)
    })?;
    Ok(ok_return(ctx, "DeleteVpcPeeringConnection"))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_with::<VpcPeering>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeVpcPeeringConnections",
            ids: "VpcPeeringConnectionId",
            set: "vpcPeeringConnectionSet",
        },
        |_| true,
        visible,
    )
}

/// `Prefix.Allow…` options of one side, if any were given.
fn options_param(
    params: &Params,
    prefix: &str,
    current: &PeeringOptions,
) -> Result<Option<PeeringOptions>, ApiError> {
    let get = |name: &str| params.bool(&format!("{prefix}.{name}"));
    let dns = get("AllowDnsResolutionFromRemoteVpc")?;
    let classic_to_remote = get("AllowEgressFromLocalClassicLinkToRemoteVpc")?;
    let local_to_classic = get("AllowEgressFromLocalVpcToRemoteClassicLink")?;
    if dns.is_none() && classic_to_remote.is_none() && local_to_classic.is_none() {
        return Ok(None);
    }
    Ok(Some(PeeringOptions {
        allow_dns_resolution_from_remote_vpc: dns
            .unwrap_or(current.allow_dns_resolution_from_remote_vpc),
        allow_egress_from_local_classic_link_to_remote_vpc: classic_to_remote
            .unwrap_or(current.allow_egress_from_local_classic_link_to_remote_vpc),
        allow_egress_from_local_vpc_to_remote_classic_link: local_to_classic
            .unwrap_or(current.allow_egress_from_local_vpc_to_remote_classic_link),
    }))
}

pub fn modify_options(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = id_param(params)?;
    let has = |prefix: &str| params.names().any(|n| n.starts_with(prefix));
    if !has("RequesterPeeringConnectionOptions.") && !has("AccepterPeeringConnectionOptions.") {
        return Err(ApiError::missing_parameter(
            "RequesterPeeringConnectionOptions or AccepterPeeringConnectionOptions",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let me = ctx.account.id.as_str();
    let (pcx, requester_set, accepter_set) = transact(ctx, |tx| {
        let mut pcx = load(tx, id)?;
        // spec 7.2: options are set once the peering is active.
        if pcx.state != VpcPeeringState::Active {
            return Err(state_transition(id, pcx.state));
        }
        let requester = options_param(
            params,
            "RequesterPeeringConnectionOptions",
            &pcx.requester.options,
        )?;
        let accepter = options_param(
            params,
            "AccepterPeeringConnectionOptions",
            &pcx.accepter.options,
        )?;
        // Each side sets its own options only.
        for (given, owner, side) in [
            (&requester, &pcx.requester.owner_id, "requester"),
            (&accepter, &pcx.accepter.owner_id, "accepter"),
        ] {
            if given.is_some() && owner != me {
                return Err(not_permitted(format!(
                    "User {me} cannot modify the {side} options of peering {id}: they belong to account {owner}."
                )));
            }
        }
        if let Some(o) = &requester {
            pcx.requester.options = o.clone();
        }
        if let Some(o) = &accepter {
            pcx.accepter.options = o.clone();
        }
        save(tx, &pcx, true)?;
        Ok((pcx, requester.is_some(), accepter.is_some()))
    })?;
    Ok(Xml::response(
        "ModifyVpcPeeringConnectionOptions",
        ctx.request_id,
        |x| {
            if accepter_set {
                x.node("accepterPeeringConnectionOptions", |x| {
                    write_options(x, &pcx.accepter.options);
                });
            }
            if requester_set {
                x.node("requesterPeeringConnectionOptions", |x| {
                    write_options(x, &pcx.requester.options);
                });
            }
        },
    ))
}

/// DeleteVpc's part (spec 7.2): the VPC's live peerings are deleted with
/// it, except that a pending request from another account to this VPC
/// keeps the VPC until it is accepted or rejected.
pub fn vpc_deleting(tx: &mut Tx, vpc_id: &str) -> Result<(), ApiError> {
    let me = tx.ctx().account.id.clone();
    for pcx in visible(tx)? {
        if !pcx.live() || !pcx.involves(vpc_id) {
            continue;
        }
        if pcx.state == VpcPeeringState::PendingAcceptance
            && pcx.accepter.vpc_id == vpc_id
            && pcx.requester.owner_id != me
        {
            return Err(has_dependencies(vpc_id));
        }
        mark_deleted(tx, pcx, &me)?;
    }
    Ok(())
}

/// AssociateVpcCidrBlock's part (spec 1.1): what the VPC's live peerings
/// allow when it takes the IPv4 block `new`.
/// - A request the VPC made that is `pending-acceptance`: no block at all.
/// - A request to the VPC that is `pending-acceptance`: the block is added,
///   but one overlapping the requester's fails the request.
/// - An `active` (or `provisioning`) peering: the block must not overlap
///   the peer VPC's blocks.
///
/// Each live peering's copy of the VPC's blocks takes the new one, so later
/// checks and DescribeVpcPeeringConnections see it.
pub fn vpc_cidr_adding(tx: &mut Tx, vpc_id: &str, new: &Ipv4Cidr) -> Result<(), ApiError> {
    let me = tx.ctx().account.id.clone();
    let now = now_secs();
    for mut pcx in visible(tx)? {
        if !pcx.live() || !pcx.involves(vpc_id) {
            continue;
        }
        let requested = pcx.requester.vpc_id == vpc_id;
        let (mine, peer) = if requested {
            (&pcx.requester, &pcx.accepter)
        } else {
            (&pcx.accepter, &pcx.requester)
        };
        // The peer's blocks now (it may have added some since the request),
        // and the copy in the peering when its VPC cannot be read.
        let peer_vpc = if peer.owner_id == me {
            tx.get::<Vpc>(&peer.vpc_id)?
        } else {
            foreign_vpc(tx, &peer.owner_id.clone(), &peer.vpc_id.clone())?
        };
        let peer_blocks: Vec<Ipv4Cidr> = peer_vpc
            .map(|v| side_of(&v, &peer.region).cidr_blocks)
            .unwrap_or_else(|| peer.cidr_blocks.clone())
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect();
        let clash = peer_blocks.iter().find(|b| b.overlaps(new)).copied();
        let (pcx_id, peer_vpc_id) = (pcx.id.clone(), peer.vpc_id.clone());
        let own_vpc_id = mine.vpc_id.clone();
        match pcx.state {
            VpcPeeringState::PendingAcceptance if requested => {
                return Err(not_permitted(format!(
                    "The VPC {vpc_id} has a VPC peering connection request ({pcx_id}) pending acceptance; no CIDR block can be added to it until the request is accepted, rejected or deleted."
                )));
            }
            VpcPeeringState::PendingAcceptance if clash.is_some() => {
                // spec 1.1: the accepter's overlapping block fails the request.
                pcx.state = VpcPeeringState::Failed;
                pcx.message = FAILED_MESSAGE.to_owned();
                pcx.ended_at = Some(now);
                save(tx, &pcx, true)?;
                continue;
            }
            VpcPeeringState::PendingAcceptance => {}
            _ => {
                if let Some(clash) = clash {
                    return Err(ApiError::new(
                        "InvalidVpc.Range",
                        format!(
                            "The CIDR '{new}' overlaps the block {clash} of VPC {peer_vpc_id}, which {own_vpc_id} is peered with ({pcx_id}); choose a block that overlaps none of the peer's."
                        ),
                    ));
                }
            }
        }
        let side = if requested {
            &mut pcx.requester
        } else {
            &mut pcx.accepter
        };
        side.cidr_blocks.push(new.to_string());
        save(tx, &pcx, true)?;
    }
    Ok(())
}

/// A peering as the API shows it, with `code` and `message` as its status.
fn write_peering(p: &VpcPeering, x: &mut Xml, code: VpcPeeringState, message: &str) {
    x.node("accepterVpcInfo", |x| write_side(x, &p.accepter))
        .opt("expirationTime", p.expiration_time())
        .node("requesterVpcInfo", |x| write_side(x, &p.requester))
        .node("status", |x| {
            x.elem("code", code).elem("message", message);
        });
    write_tags(x, &p.tags);
    x.elem("vpcPeeringConnectionId", &p.id);
}
