//! Customer gateways (spec 10.1, 13): CreateCustomerGateway,
//! DescribeCustomerGateways and DeleteCustomerGateway; and what the three VPN
//! kinds (customer gateways, VPN gateways, VPN connections) share: IDs that
//! name nothing answer `.NotFound` even when malformed (as EC2 does for these
//! kinds), and deleted records stay visible, as `deleted`, for a while.

use std::net::Ipv4Addr;

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::CustomerGatewayState;
use openvpc_model::time::now_secs;

use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe_where, new_id, not_found, ok_return,
    transact, write_tags,
};
use super::vpn_connection::VpnConnection;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::customer_gateway::CustomerGateway;

/// spec 13: customer gateways per region.
pub const CUSTOMER_GATEWAY_QUOTA: usize = 50;
/// spec 10.1: the ASN a customer gateway gets when none is given (the
/// console's default).
pub const DEFAULT_BGP_ASN: u64 = 65_000;
/// The only gateway and connection type EC2 knows.
pub const IPSEC_1: &str = "ipsec.1";
/// How long a deleted customer gateway, VPN gateway or VPN connection stays
/// in Describe answers as `deleted` (EC2 keeps them "for a while").
pub const DELETED_VISIBLE_SECS: u64 = 3600;

/// True while a record deleted at `deleted_at` is still shown.
pub(crate) fn still_visible(deleted_at: Option<u64>) -> bool {
    deleted_at.is_none_or(|t| now_secs().saturating_sub(t) < DELETED_VISIBLE_SECS)
}

/// The record named by `id`: EC2 answers `.NotFound` for these kinds even
/// when the ID is malformed (`'?'`), so the syntax check only guards the key.
pub(crate) fn load_named<R: Resource>(tx: &mut Tx, id: &str) -> Result<R, ApiError> {
    if check_id(R::KIND, id).is_err() {
        return Err(not_found::<R>(id));
    }
    tx.get(id)?.ok_or_else(|| not_found::<R>(id))
}

/// A Describe's named IDs: malformed ones are reported as not found, as
/// [`load_named`] does, before the shared Describe checks their syntax.
pub(crate) fn check_named<R: Resource>(params: &Params, list: &str) -> Result<(), ApiError> {
    for id in params.list(list)? {
        if check_id(R::KIND, &id).is_err() {
            return Err(not_found::<R>(&id));
        }
    }
    Ok(())
}

/// `Type`, which must be `ipsec.1`.
pub(crate) fn ipsec_type(params: &Params) -> Result<String, ApiError> {
    let t = params.required("Type")?;
    if t != IPSEC_1 {
        return Err(ApiError::invalid_value(
            "Type",
            t,
            "The only supported type is ipsec.1.",
        ));
    }
    Ok(t.to_owned())
}

/// The customer-gateway actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateCustomerGateway" => create(ctx, params),
        "DescribeCustomerGateways" => describe(ctx, params),
        "DeleteCustomerGateway" => delete(ctx, params),
        _ => return None,
    })
}

impl Resource for CustomerGateway {
    const KIND: ResourceKind = ResourceKind::CustomerGateway;
    const NOT_FOUND: &'static str = "InvalidCustomerGatewayID.NotFound";
    const NOUN: &'static str = "customerGateway";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "customer-gateway-id" => vec![self.id.clone()],
            "bgp-asn" => vec![self.bgp_asn.to_string()],
            "ip-address" => self.ip_address.iter().cloned().collect(),
            "state" => vec![self.state.as_str().to_owned()],
            "type" => vec![self.gateway_type.clone()],
            "device-name" => self.device_name.iter().cloned().collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("customerGatewayId", &self.id)
            .elem("state", self.state)
            .elem("type", &self.gateway_type)
            .opt("ipAddress", self.ip_address.as_deref());
        if self.extended {
            x.elem("bgpAsnExtended", self.bgp_asn);
        } else {
            x.elem("bgpAsn", self.bgp_asn);
        }
        x.opt("deviceName", self.device_name.as_deref())
            .opt("certificateArn", self.certificate_arn.as_deref());
        write_tags(x, &self.tags);
    }
}

/// spec 10.1: `BgpAsn` 1–2,147,483,647, or `BgpAsnExtended` above that but
/// outside the 4.2-billion private range; not both; 65000 when neither.
fn bgp_asn(params: &Params) -> Result<(u64, bool), ApiError> {
    let short = params.get("BgpAsn");
    let long = params.get("BgpAsnExtended");
    match (short, long) {
        (Some(_), Some(_)) => Err(ApiError::new(
            "InvalidParameterCombination",
            "The request must not contain both parameter BgpAsn and BgpAsnExtended.",
        )),
        (Some(v), None) => match v.parse::<u64>() {
            Ok(n) if (1..=2_147_483_647).contains(&n) => Ok((n, false)),
            _ => Err(ApiError::invalid_value(
                "BgpAsn",
                v,
                "A customer gateway's ASN is from 1 to 2147483647; use BgpAsnExtended above that.",
            )),
        },
        (None, Some(v)) => match v.parse::<u64>() {
            Ok(n)
                if (2_147_483_648..=4_294_967_295).contains(&n)
                    && !(4_200_000_000..=4_294_967_294).contains(&n) =>
            {
                Ok((n, true))
            }
            _ => Err(ApiError::invalid_value(
                "BgpAsnExtended",
                v,
                "An extended ASN is from 2147483648 to 4294967295, outside the private range 4200000000-4294967294.",
            )),
        },
        (None, None) => Ok((DEFAULT_BGP_ASN, false)),
    }
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let gateway_type = ipsec_type(params)?;
    // `PublicIp` is the parameter's older name; botocore still sends it.
    let ip = params.get("IpAddress").or_else(|| params.get("PublicIp"));
    let certificate_arn = params.get("CertificateArn").map(str::to_owned);
    let ip_address = match ip {
        Some(ip) => Some(
            ip.parse::<Ipv4Addr>()
                .map_err(|_| {
                    ApiError::invalid_value("IpAddress", ip, "Give the gateway's IPv4 address.")
                })?
                .to_string(),
        ),
        None if certificate_arn.is_some() => None,
        None => return Err(ApiError::missing_parameter("IpAddress")),
    };
    let (asn, extended) = bgp_asn(params)?;
    let device_name = params.get("DeviceName").map(str::to_owned);
    let tags = tags_for(params, "customer-gateway")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let cgw = transact(ctx, |tx| {
        let live: Vec<CustomerGateway> = tx
            .list::<CustomerGateway>()?
            .into_iter()
            .filter(CustomerGateway::is_live)
            .collect();
        // EC2 answers a create that repeats a live gateway's type, address
        // and ASN with that gateway instead of making another.
        if let Some(same) = live.iter().find(|g| {
            g.ip_address == ip_address
                && g.bgp_asn == asn
                && g.gateway_type == gateway_type
                && g.certificate_arn == certificate_arn
        }) {
            return Ok(same.clone());
        }
        if live.len() >= CUSTOMER_GATEWAY_QUOTA {
            return Err(ApiError::new(
                "CustomerGatewayLimitExceeded",
                format!(
                    "The maximum number of customer gateways has been reached ({CUSTOMER_GATEWAY_QUOTA} per region). Delete an unused one or ask for a higher quota."
                ),
            ));
        }
        let cgw = CustomerGateway {
            id: new_id(ResourceKind::CustomerGateway),
            state: CustomerGatewayState::Available,
            gateway_type: gateway_type.clone(),
            ip_address: ip_address.clone(),
            bgp_asn: asn,
            extended,
            device_name: device_name.clone(),
            certificate_arn: certificate_arn.clone(),
            deleted_at: None,
            tags: tags.clone(),
        };
        tx.put(&cgw)?;
        Ok(cgw)
    })?;
    Ok(Xml::response(
        "CreateCustomerGateway",
        ctx.request_id,
        |x| {
            x.node("customerGateway", |x| cgw.write(x));
        },
    ))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    check_named::<CustomerGateway>(params, "CustomerGatewayId")?;
    describe_where::<CustomerGateway>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeCustomerGateways",
            ids: "CustomerGatewayId",
            set: "customerGatewaySet",
        },
        |g| still_visible(g.deleted_at),
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("CustomerGatewayId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut cgw = load_named::<CustomerGateway>(tx, id)?;
        if !cgw.is_live() {
            return Ok(());
        }
        // A gateway a live connection uses must outlive it.
        if let Some(vpn) = tx
            .list::<VpnConnection>()?
            .into_iter()
            .find(|c| c.is_live() && c.customer_gateway_id == id)
        {
            return Err(ApiError::new(
                "IncorrectState",
                format!(
                    "The customer gateway '{id}' is in use by VPN connection {}; delete the connection first.",
                    vpn.id
                ),
            ));
        }
        cgw.state = CustomerGatewayState::Deleted;
        cgw.deleted_at = Some(now_secs());
        tx.put(&cgw)
    })?;
    Ok(ok_return(ctx, "DeleteCustomerGateway"))
}
