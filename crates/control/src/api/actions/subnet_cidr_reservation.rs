//! Subnet CIDR reservations: CreateSubnetCidrReservation,
//! GetSubnetCidrReservations and DeleteSubnetCidrReservation. A reservation
//! sets part of a subnet's range aside: `explicit` ones are never handed out
//! automatically (the subnet's allocator skips them), `prefix` ones are kept
//! for prefixes delegated to ENIs.
//!
//! Reservations live in their subnet's record, so they go with it and a
//! check against the subnet's range and the other reservations is one read.
//! Subnets have no IPv6 block yet, so only IPv4 reservations can be made.

use openvpc_model::{Ipv4Cidr, ResourceId, ResourceKind};

use super::resource::{check_id, filters_match, tag_filter_values, transact, write_tags};
use super::subnet::Subnet;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::subnet::CidrReservation;

/// The reservation actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateSubnetCidrReservation" => create(ctx, params),
        "GetSubnetCidrReservations" => get(ctx, params),
        "DeleteSubnetCidrReservation" => delete(ctx, params),
        _ => return None,
    })
}

/// A fresh `scr-` ID: the ID kinds of the model do not include
/// reservations, which are never named anywhere but here.
fn new_reservation_id() -> String {
    // A subnet ID's 17 hex digits, under the reservation's prefix.
    let subnet = ResourceId::generate(ResourceKind::Subnet).to_string();
    format!("scr-{}", subnet.trim_start_matches("subnet-"))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        "InvalidSubnetCidrReservationID.NotFound",
        format!("The subnet-cidr-reservation ID '{id}' does not exist"),
    )
}

fn write_reservation(x: &mut Xml, subnet: &Subnet, r: &CidrReservation) {
    x.elem("subnetCidrReservationId", &r.id)
        .elem("subnetId", &subnet.id)
        .elem("cidr", r.cidr)
        .elem("reservationType", &r.reservation_type)
        .elem("ownerId", &subnet.owner_id)
        .opt("description", r.description.as_deref());
    write_tags(x, &r.tags);
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let subnet_id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, subnet_id)?;
    let reservation_type = params.required("ReservationType")?;
    if !matches!(reservation_type, "prefix" | "explicit") {
        return Err(ApiError::invalid_value(
            "ReservationType",
            reservation_type,
            "Use 'prefix' or 'explicit'.",
        ));
    }
    let text = params.required("Cidr")?;
    let tags = tags_for(params, "subnet-cidr-reservation")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (subnet, reservation) = transact(ctx, |tx| {
        let mut subnet = tx.load::<Subnet>(subnet_id)?;
        let outside = || {
            ApiError::new(
                "InvalidParameterValue",
                // An IPv6-only subnet has no IPv4 block to reserve in.
                match subnet.cidr_block {
                    Some(block) => {
                        format!("Reservation CIDR should be within subnet CIDR block ({block})")
                    }
                    None => format!("Subnet {} is IPv6-only: it has no IPv4 block", subnet.id),
                },
            )
        };
        // An IPv6 CIDR (or anything else) cannot lie in the IPv4 block.
        let cidr: Ipv4Cidr = text.parse().map_err(|_| outside())?;
        if !subnet.cidr_block.is_some_and(|b| b.contains(&cidr)) {
            return Err(outside());
        }
        if subnet
            .cidr_reservations
            .iter()
            .any(|r| r.cidr.overlaps(&cidr))
        {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("Reservation CIDR {text} has overlap with existing reserved CIDR block"),
            ));
        }
        let reservation = CidrReservation {
            id: new_reservation_id(),
            cidr,
            reservation_type: reservation_type.to_owned(),
            description: params.get("Description").map(str::to_owned),
            tags: tags.clone(),
        };
        subnet.cidr_reservations.push(reservation.clone());
        tx.put(&subnet)?;
        Ok((subnet, reservation))
    })?;
    Ok(Xml::response(
        "CreateSubnetCidrReservation",
        ctx.request_id,
        |x| {
            x.node("subnetCidrReservation", |x| {
                write_reservation(x, &subnet, &reservation);
            });
        },
    ))
}

/// The values a reservation offers to a filter.
fn filter_values(item: &(&Subnet, &CidrReservation), name: &str) -> Option<Vec<String>> {
    let (subnet, r) = item;
    Some(match name {
        "reservationType" => vec![r.reservation_type.clone()],
        "subnet-id" => vec![subnet.id.clone()],
        "owner-id" => vec![subnet.owner_id.clone()],
        _ => return tag_filter_values(&r.tags, name),
    })
}

pub fn get(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let subnet_id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, subnet_id)?;
    let filters = params.filters()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let subnet = transact(ctx, |tx| tx.load::<Subnet>(subnet_id))?;
    let mut shown = Vec::new();
    for r in &subnet.cidr_reservations {
        if filters_match(&(&subnet, r), &filters, filter_values)? {
            shown.push(r);
        }
    }
    Ok(Xml::response(
        "GetSubnetCidrReservations",
        ctx.request_id,
        |x| {
            x.list("subnetIpv4CidrReservationSet", &shown, |x, r| {
                write_reservation(x, &subnet, r);
            })
            .list(
                "subnetIpv6CidrReservationSet",
                std::iter::empty::<()>(),
                |_, _| {},
            );
        },
    ))
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("SubnetCidrReservationId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (subnet, reservation) = transact(ctx, |tx| {
        for mut subnet in tx.list::<Subnet>()? {
            if let Some(i) = subnet.cidr_reservations.iter().position(|r| r.id == id) {
                let reservation = subnet.cidr_reservations.remove(i);
                tx.put(&subnet)?;
                return Ok((subnet, reservation));
            }
        }
        Err(not_found(id))
    })?;
    Ok(Xml::response(
        "DeleteSubnetCidrReservation",
        ctx.request_id,
        |x| {
            x.node("deletedSubnetCidrReservation", |x| {
                write_reservation(x, &subnet, &reservation);
            });
        },
    ))
}
