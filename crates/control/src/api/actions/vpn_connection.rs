//! Site-to-Site VPN connections (spec 10.1–10.3, 13): CreateVpnConnection,
//! DescribeVpnConnections, DeleteVpnConnection, CreateVpnConnectionRoute and
//! DeleteVpnConnectionRoute, and ModifyVpnConnectionOptions.
//!
//! A connection joins one customer gateway to one VPN gateway (or transit
//! gateway) through two tunnels. Each tunnel gets an outside address from the
//! region's public pool (address.rs, released on delete), a /30 inside CIDR
//! from 169.254.0.0/16 that no other connection of the same gateway uses,
//! and a pre-shared key, unless the request gives its own (spec 10.2).

use std::net::Ipv4Addr;

use openvpc_model::edge::VpnTunnelReport;
use openvpc_model::lifecycle::VpnConnectionState;
use openvpc_model::node::NodeRecord;
use openvpc_model::time::{format_time, now_secs, timestamp};
use openvpc_model::{Ipv4Cidr, ResourceKind};
use rand::RngExt;

use super::address;
use super::customer_gateway::{
    CustomerGateway, check_named, ipsec_type, load_named, still_visible,
};
use super::resource::{DescribeSpec, Resource, Tags, Tx, new_id, ok_return, transact, write_tags};
use super::resource::{Record, describe_with, transact_as_owner};
use super::vpn_gateway::load_live;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::fleet::vpn::{TunnelView, tunnel_views};
pub use crate::records::vpn_connection::{
    ShownTelemetry, TELEMETRY_SEGMENT, Tunnel, TunnelTelemetry, VpnConnection, VpnRoute,
    VpnTelemetry,
};

/// spec 13: VPN connections per region.
pub const VPN_CONNECTION_QUOTA: usize = 50;
/// spec 10.3: VPN connections per VPN gateway.
pub const CONNECTIONS_PER_GATEWAY: usize = 10;
/// spec 10.3: static routes per connection.
pub const STATIC_ROUTE_QUOTA: usize = 100;
/// spec 10.1: tunnels per connection.
pub const TUNNELS: usize = 2;
/// spec 10.2: phase 1 and phase 2 lifetimes, DPD timeout.
const PHASE1_LIFETIME: u32 = 28_800;
const PHASE2_LIFETIME: u32 = 3_600;
const DPD_TIMEOUT: u32 = 30;

/// The VPN-connection actions this module answers.
/// The device configuration EC2 returns as `customerGatewayConfiguration`
/// (its "generic" XML form, reduced to what a device needs).
fn configuration(c: &VpnConnection) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><vpn_connection id=\"{}\"><customer_gateway_id>{}</customer_gateway_id><vpn_gateway_id>{}</vpn_gateway_id><vpn_connection_type>{}</vpn_connection_type>",
        c.id,
        c.customer_gateway_id,
        c.vpn_gateway_id
            .as_deref()
            .or(c.transit_gateway_id.as_deref())
            .unwrap_or(""),
        c.connection_type
    );
    for t in &c.tunnels {
        let aws_inside = t
            .inside_cidr
            .nth(1)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let cgw_inside = t
            .inside_cidr
            .nth(2)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let bgp = |asn: u64| {
            if c.static_routes_only {
                String::new()
            } else {
                format!("<bgp><asn>{asn}</asn><hold_time>30</hold_time></bgp>")
            }
        };
        out.push_str(&format!(
            "<ipsec_tunnel><customer_gateway><tunnel_outside_address><ip_address>{}</ip_address></tunnel_outside_address><tunnel_inside_address><ip_address>{cgw_inside}</ip_address><network_mask>255.255.255.252</network_mask><network_cidr>30</network_cidr></tunnel_inside_address>{}</customer_gateway><vpn_gateway><tunnel_outside_address><ip_address>{}</ip_address></tunnel_outside_address><tunnel_inside_address><ip_address>{aws_inside}</ip_address><network_mask>255.255.255.252</network_mask><network_cidr>30</network_cidr></tunnel_inside_address>{}</vpn_gateway><ike><authentication_protocol>sha1</authentication_protocol><encryption_protocol>aes-128-cbc</encryption_protocol><lifetime>{PHASE1_LIFETIME}</lifetime><perfect_forward_secrecy>group2</perfect_forward_secrecy><mode>main</mode><pre_shared_key>{}</pre_shared_key></ike><ipsec><protocol>esp</protocol><authentication_protocol>hmac-sha1-96</authentication_protocol><encryption_protocol>aes-128-cbc</encryption_protocol><lifetime>{PHASE2_LIFETIME}</lifetime><perfect_forward_secrecy>group2</perfect_forward_secrecy><mode>tunnel</mode><clear_df_bit>true</clear_df_bit><fragmentation_before_encryption>true</fragmentation_before_encryption><tcp_mss_adjustment>1379</tcp_mss_adjustment><dead_peer_detection><delay>10</delay><retries>3</retries></dead_peer_detection></ipsec></ipsec_tunnel>",
            c.customer_ip.as_deref().unwrap_or(""),
            bgp(c.customer_asn),
            t.outside_ip,
            bgp(c.amazon_asn),
            t.pre_shared_key,
        ));
    }
    out.push_str("</vpn_connection>");
    out
}

pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateVpnConnection" => create(ctx, params),
        "DescribeVpnConnections" => describe(ctx, params),
        "DeleteVpnConnection" => delete(ctx, params),
        "CreateVpnConnectionRoute" => route(ctx, params, true),
        "DeleteVpnConnectionRoute" => route(ctx, params, false),
        "ModifyVpnConnectionOptions" => modify_options(ctx, params),
        _ => return None,
    })
}

impl Resource for VpnConnection {
    const KIND: ResourceKind = ResourceKind::VpnConnection;
    const NOT_FOUND: &'static str = "InvalidVpnConnectionID.NotFound";
    const NOUN: &'static str = "vpnConnection";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "vpn-connection-id" => vec![self.id.clone()],
            "state" => vec![self.state.as_str().to_owned()],
            "type" => vec![self.connection_type.clone()],
            "customer-gateway-id" => vec![self.customer_gateway_id.clone()],
            "vpn-gateway-id" => self.vpn_gateway_id.iter().cloned().collect(),
            "transit-gateway-id" => self.transit_gateway_id.iter().cloned().collect(),
            "option.static-routes-only" => vec![self.static_routes_only.to_string()],
            "route.destination-cidr-block" => self
                .routes
                .iter()
                .map(|r| r.destination.to_string())
                .collect(),
            "bgp-asn" => vec![self.customer_asn.to_string()],
            "customer-gateway-configuration" => vec![configuration(self)],
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("vpnConnectionId", &self.id)
            .elem("state", self.state)
            .elem("type", &self.connection_type)
            .elem("customerGatewayId", &self.customer_gateway_id)
            .opt("vpnGatewayId", self.vpn_gateway_id.as_deref())
            .opt("transitGatewayId", self.transit_gateway_id.as_deref())
            .elem("category", "VPN");
        if self.is_live() {
            // The document is XML inside XML: `elem` escapes it.
            x.elem("customerGatewayConfiguration", configuration(self));
        }
        x.node("options", |x| {
            x.elem("enableAcceleration", false)
                .elem("staticRoutesOnly", self.static_routes_only)
                .elem(
                    "localIpv4NetworkCidr",
                    network_cidr(self.local_ipv4_network_cidr),
                )
                .elem(
                    "remoteIpv4NetworkCidr",
                    network_cidr(self.remote_ipv4_network_cidr),
                )
                .elem("outsideIpAddressType", "PublicIpv4")
                .elem("tunnelInsideIpVersion", "ipv4")
                .list("tunnelOptionSet", &self.tunnels, write_tunnel);
        })
        .list("routes", &self.routes, |x, r| {
            x.elem("destinationCidrBlock", r.destination)
                .elem("source", "Static")
                .elem(
                    "state",
                    if self.is_live() {
                        "available"
                    } else {
                        "deleted"
                    },
                );
        })
        .list(
            "vgwTelemetry",
            self.tunnels.iter().enumerate(),
            |x, (i, t)| {
                let shown = self.telemetry.get(i).cloned().unwrap_or_default();
                let changed = shown
                    .last_status_change_ms
                    .map_or_else(|| self.created.clone(), |ms| format_time(ms / 1000));
                x.elem("outsideIpAddress", t.outside_ip)
                    .elem("status", if shown.up { "UP" } else { "DOWN" })
                    .elem("lastStatusChange", changed)
                    .elem("statusMessage", &shown.status_message)
                    .elem("acceptedRouteCount", shown.accepted_route_count);
            },
        );
        write_tags(x, &self.tags);
    }
}

/// spec 10.2: a tunnel's options with their defaults.
fn write_tunnel(x: &mut Xml, t: &Tunnel) {
    let values = |x: &mut Xml, name: &str, items: &[&str]| {
        x.list(name, items.iter(), |x, v| {
            x.elem("value", v);
        });
    };
    x.elem("outsideIpAddress", t.outside_ip)
        .elem("tunnelInsideCidr", t.inside_cidr)
        .elem("preSharedKey", &t.pre_shared_key)
        .elem("phase1LifetimeSeconds", PHASE1_LIFETIME)
        .elem("phase2LifetimeSeconds", PHASE2_LIFETIME)
        .elem("rekeyMarginTimeSeconds", 270)
        .elem("rekeyFuzzPercentage", 100)
        .elem("replayWindowSize", 1024)
        .elem("dpdTimeoutSeconds", DPD_TIMEOUT)
        .elem("dpdTimeoutAction", "clear");
    let ciphers = ["AES128", "AES256", "AES128-GCM-16", "AES256-GCM-16"];
    let integrity = ["SHA1", "SHA2-256", "SHA2-384", "SHA2-512"];
    values(x, "phase1EncryptionAlgorithmSet", &ciphers);
    values(x, "phase2EncryptionAlgorithmSet", &ciphers);
    values(x, "phase1IntegrityAlgorithmSet", &integrity);
    values(x, "phase2IntegrityAlgorithmSet", &integrity);
    // What the tunnels' IKEv2 responder serves (crates/vpn): AWS's
    // defaults less RFC 5114's groups 22-24 and IKEv1.
    values(
        x,
        "phase1DHGroupNumberSet",
        &["2", "14", "15", "16", "17", "18", "19", "20", "21"],
    );
    values(
        x,
        "phase2DHGroupNumberSet",
        &["2", "5", "14", "15", "16", "17", "18", "19", "20", "21"],
    );
    values(x, "ikeVersionSet", &["ikev2"]);
    x.elem("startupAction", "add");
}

/// spec 10.2: inside CIDRs reserved by AWS.
fn reserved_inside(cidr: &Ipv4Cidr) -> bool {
    let o = cidr.network().octets();
    (o[2] <= 5 && o[3] == 0) || (o[2] == 169 && o[3] == 252)
}

/// spec 10.2: a /30 of 169.254.0.0/16, written as its network, not reserved.
fn check_inside_cidr(text: &str) -> Result<Ipv4Cidr, ApiError> {
    let bad = |why: &str| ApiError::invalid_value("TunnelInsideCidr", text, why);
    let cidr: Ipv4Cidr = text
        .parse()
        .map_err(|_| bad("Give a /30 CIDR block from 169.254.0.0/16."))?;
    let link_local: Ipv4Cidr = Ipv4Cidr::new(Ipv4Addr::new(169, 254, 0, 0), 16)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if cidr.prefix_len() != 30 || !link_local.contains(&cidr) || cidr.to_string() != text {
        return Err(bad("Give a /30 CIDR block from 169.254.0.0/16."));
    }
    if reserved_inside(&cidr) {
        return Err(bad(
            "169.254.0.0/30 to 169.254.5.0/30 and 169.254.169.252/30 are reserved.",
        ));
    }
    Ok(cidr)
}

/// spec 10.2: 8–64 characters of `[A-Za-z0-9._]`, not starting with `0`.
fn check_psk(text: &str) -> Result<(), ApiError> {
    let ok = (8..=64).contains(&text.len())
        && !text.starts_with('0')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_value(
            "PreSharedKey",
            "****",
            "A pre-shared key has 8 to 64 characters from A-Z, a-z, 0-9, '.' and '_', and does not start with '0'.",
        ))
    }
}

/// spec 10.2: the default key, 32 random alphanumerics not starting with `0`.
fn generate_psk() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..32)
        .map(|i| {
            // The first character comes from the letters alone.
            let pool = if i == 0 { &CHARS[..52] } else { CHARS };
            char::from(pool[rng.random_range(0..pool.len())])
        })
        .collect()
}

/// spec 10.2: a random free /30 of 169.254.0.0/16, avoiding the reserved
/// blocks and `used`.
fn generate_inside(used: &[Ipv4Cidr]) -> Result<Ipv4Cidr, ApiError> {
    let start: u32 = rand::rng().random_range(0..16_384);
    for step in 0..16_384u32 {
        let n = (start + step) % 16_384;
        let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(169, 254, 0, 0)) + n * 4);
        let cidr = Ipv4Cidr::new(addr, 30).map_err(|e| ApiError::internal(e.to_string()))?;
        if !reserved_inside(&cidr) && !used.contains(&cidr) {
            return Ok(cidr);
        }
    }
    Err(ApiError::internal("No free tunnel inside CIDR is left."))
}

/// A tunnel's inside CIDR and key as a request gives them.
type TunnelRequest = (Option<Ipv4Cidr>, Option<String>);

/// The request's tunnel options (`Options.TunnelOptions.N`): inside CIDR and
/// key for each, checked; at most two.
fn tunnel_requests(params: &Params) -> Result<Vec<TunnelRequest>, ApiError> {
    let given = params.structs("Options.TunnelOptions")?;
    if given.len() > TUNNELS {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "A VPN connection has {TUNNELS} tunnels; the request gives options for {}.",
                given.len()
            ),
        ));
    }
    let mut out = Vec::new();
    for t in &given {
        let cidr = t
            .get("TunnelInsideCidr")
            .map(check_inside_cidr)
            .transpose()?;
        let psk = t
            .get("PreSharedKey")
            .map(|k| check_psk(k).map(|()| k.to_owned()))
            .transpose()?;
        out.push((cidr, psk));
    }
    let cidrs: Vec<_> = out.iter().filter_map(|(c, _)| *c).collect();
    if cidrs.len() == 2 && cidrs[0] == cidrs[1] {
        return Err(ApiError::invalid_value(
            "TunnelInsideCidr",
            &cidrs[0].to_string(),
            "The two tunnels need different inside CIDR blocks.",
        ));
    }
    out.resize(TUNNELS, (None, None));
    Ok(out)
}

fn limit(message: String) -> ApiError {
    ApiError::new("VpnConnectionLimitExceeded", message)
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let connection_type = ipsec_type(params)?;
    let cgw_id = params.required("CustomerGatewayId")?;
    let vgw_id = params.get("VpnGatewayId");
    let tgw_id = params.get("TransitGatewayId");
    if vgw_id.is_some() && tgw_id.is_some() {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "The request must not contain both parameter vpnGatewayId and transitGatewayId",
        ));
    }
    if vgw_id.is_none() && tgw_id.is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "The request must contain the parameter vpnGatewayId or transitGatewayId",
        ));
    }
    let static_routes_only = params.bool("Options.StaticRoutesOnly")?.unwrap_or(false);
    let local_cidr = ipv4_network_param(params, "Options.LocalIpv4NetworkCidr")?;
    let remote_cidr = ipv4_network_param(params, "Options.RemoteIpv4NetworkCidr")?;
    let requested = tunnel_requests(params)?;
    let tags = tags_for(params, "vpn-connection")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpn = transact(ctx, |tx| {
        let cgw = load_named::<CustomerGateway>(tx, cgw_id)?;
        if !cgw.is_live() {
            return Err(ApiError::new(
                "IncorrectState",
                format!("The customer gateway '{cgw_id}' is deleted."),
            ));
        }
        let amazon_asn = match vgw_id {
            Some(id) => load_live(tx, id)?.amazon_side_asn,
            None => {
                let id = tgw_id.unwrap_or_default();
                transit_gateway_asn(tx, id)?
            }
        };
        // eBGP runs between two ASNs: a dynamic connection cannot have the
        // customer gateway in the gateway's own AS (spec 10.1: the Amazon
        // side's ASN must differ from the customer gateway's).
        if !static_routes_only && cgw.bgp_asn == amazon_asn {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "The customer gateway's BGP ASN {} is the gateway's Amazon-side ASN: BGP needs two. Create the customer gateway with another --bgp-asn, or make a static-routes connection (Options.StaticRoutesOnly=true).",
                    cgw.bgp_asn
                ),
            ));
        }
        let live: Vec<VpnConnection> = tx
            .list::<VpnConnection>()?
            .into_iter()
            .filter(VpnConnection::is_live)
            .collect();
        if live.len() >= VPN_CONNECTION_QUOTA {
            return Err(limit(format!(
                "The maximum number of VPN connections has been reached ({VPN_CONNECTION_QUOTA} per region)."
            )));
        }
        let siblings: Vec<&VpnConnection> = live
            .iter()
            .filter(|c| vgw_id.is_some() && c.vpn_gateway_id.as_deref() == vgw_id)
            .collect();
        if siblings.len() >= CONNECTIONS_PER_GATEWAY {
            return Err(limit(format!(
                "The maximum number of VPN connections per virtual private gateway has been reached ({CONNECTIONS_PER_GATEWAY})."
            )));
        }
        // spec 10.2: inside CIDRs are unique per gateway.
        let mut used: Vec<Ipv4Cidr> = siblings
            .iter()
            .flat_map(|c| c.tunnels.iter().map(|t| t.inside_cidr))
            .collect();
        if let Some(taken) = requested
            .iter()
            .filter_map(|(c, _)| *c)
            .find(|c| used.contains(c))
        {
            return Err(ApiError::invalid_value(
                "TunnelInsideCidr",
                &taken.to_string(),
                "Another VPN connection of this gateway uses this inside CIDR block.",
            ));
        }
        used.extend(requested.iter().filter_map(|(c, _)| *c));
        let mut tunnels = Vec::new();
        for (cidr, psk) in &requested {
            let inside_cidr = match cidr {
                Some(c) => *c,
                None => {
                    let c = generate_inside(&used)?;
                    used.push(c);
                    c
                }
            };
            tunnels.push(Tunnel {
                outside_ip: address::take(tx)?,
                inside_cidr,
                pre_shared_key: psk.clone().unwrap_or_else(generate_psk),
            });
        }
        let vpn = VpnConnection {
            id: new_id(ResourceKind::VpnConnection),
            // `available` once an edge serves a tunnel (its first report):
            // before that nothing answers the customer gateway.
            state: VpnConnectionState::Pending,
            connection_type: connection_type.clone(),
            customer_gateway_id: cgw_id.to_owned(),
            vpn_gateway_id: vgw_id.map(str::to_owned),
            transit_gateway_id: tgw_id.map(str::to_owned),
            static_routes_only,
            tunnels,
            routes: Vec::new(),
            customer_ip: cgw.ip_address.clone(),
            customer_asn: cgw.bgp_asn,
            amazon_asn,
            created: timestamp(),
            deleted_at: None,
            local_ipv4_network_cidr: local_cidr,
            remote_ipv4_network_cidr: remote_cidr,
            tags: tags.clone(),
            telemetry: Vec::new(),
        };
        tx.put(&vpn)?;
        Ok(vpn)
    })?;
    Ok(Xml::response("CreateVpnConnection", ctx.request_id, |x| {
        x.node("vpnConnection", |x| vpn.write(x));
    }))
}

/// A transit gateway's Amazon-side ASN. openvpc has no transit gateways of
/// its own yet, so one is found only if a record of that ID exists; its ASN
/// is read generically (`amazon_side_asn`), defaulting to 64512.
fn transit_gateway_asn(tx: &mut Tx, id: &str) -> Result<u64, ApiError> {
    let missing = || {
        ApiError::new(
            "InvalidTransitGatewayID.NotFound",
            format!("The transitGateway ID '{id}' does not exist"),
        )
    };
    if super::resource::check_id(ResourceKind::TransitGateway, id).is_err() {
        return Err(missing());
    }
    let key = tx.ctx().key(ResourceKind::TransitGateway.prefix(), id);
    let record = tx.get_raw(&key)?.ok_or_else(missing)?;
    Ok(serde_json::from_slice::<serde_json::Value>(&record)
        .ok()
        .and_then(|v| v.get("amazon_side_asn").and_then(serde_json::Value::as_u64))
        .unwrap_or(super::vpn_gateway::DEFAULT_AMAZON_ASN))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    check_named::<VpnConnection>(params, "VpnConnectionId")?;
    let edges = live_edges(ctx)?;
    describe_with::<VpnConnection>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeVpnConnections",
            ids: "VpnConnectionId",
            set: "vpnConnectionSet",
        },
        |c| still_visible(c.deleted_at),
        |tx| {
            let mut all = tx.list::<VpnConnection>()?;
            for vpn in all.iter_mut().filter(|v| v.is_live()) {
                let telemetry = tx.get::<VpnTelemetry>(&vpn.id)?;
                vpn.telemetry = tunnel_views(vpn, telemetry.as_ref(), &edges)
                    .iter()
                    .map(|v| shown(vpn, v))
                    .collect();
            }
            Ok(all)
        },
    )
}

/// The region's live edges, which serve the tunnels.
pub fn live_edges(ctx: &Ctx) -> Result<Vec<NodeRecord>, ApiError> {
    crate::fleet::nodes::nodes(ctx.store, crate::fleet::nodes::Role::Edge, ctx.region)
        .map_err(|e| ApiError::internal(format!("reading the region's edges: {e}")))
}

/// spec 10.1: a tunnel's `VgwTelemetry`. A dynamic connection's tunnel is
/// UP only with its BGP session; with IPsec alone AWS says "IPSEC IS UP".
fn shown(vpn: &VpnConnection, v: &TunnelView) -> ShownTelemetry {
    let up = v.is_up(vpn.static_routes_only);
    let status_message = if v.edge.is_none() {
        "no edge node serves this tunnel".to_owned()
    } else if up && !vpn.static_routes_only {
        format!("{} BGP ROUTES", v.routes.len())
    } else if v.ipsec_up && !vpn.static_routes_only {
        "IPSEC IS UP".to_owned()
    } else {
        v.status_message.clone()
    };
    ShownTelemetry {
        up,
        status_message,
        accepted_route_count: if vpn.static_routes_only {
            0
        } else {
            v.routes.len()
        },
        last_status_change_ms: v.last_change_ms,
    }
}

impl Record for VpnTelemetry {
    fn segment() -> &'static str {
        TELEMETRY_SEGMENT
    }

    fn noun() -> &'static str {
        "VPN telemetry"
    }

    fn record_id(&self) -> &str {
        &self.id
    }
}

/// Stores what edge `edge_id` says of connection `vpn_id`'s tunnels (it
/// reports the ones it serves), in the connection's account: the
/// connection becomes `available` at the first report, since an edge now
/// answers its customer gateway. Writes only what changed; a report on a
/// connection that is gone, or on an address not its own, is dropped.
pub fn record_reports(
    store: &dyn crate::store::Store,
    account: &str,
    region: &str,
    vpn_id: &str,
    edge_id: &str,
    reports: &[VpnTunnelReport],
) -> Result<(), ApiError> {
    transact_as_owner(store, account, region, "vpn-status", |tx| {
        let Some(mut vpn) = tx.get::<VpnConnection>(vpn_id)? else {
            return Ok(());
        };
        if !vpn.is_live() {
            return Ok(());
        }
        let stored = tx.get::<VpnTelemetry>(vpn_id)?;
        let mut telemetry = stored.clone().unwrap_or_else(|| VpnTelemetry {
            id: vpn_id.to_owned(),
            tunnels: Vec::new(),
        });
        for r in reports {
            if !vpn.tunnels.iter().any(|t| t.outside_ip == r.outside_ip) {
                continue;
            }
            let entry = TunnelTelemetry {
                outside_ip: r.outside_ip,
                edge_id: edge_id.to_owned(),
                ipsec_up: r.ipsec_up,
                bgp_up: r.bgp_up,
                status_message: r.status_message.clone(),
                routes: r.routes.clone(),
                last_change_ms: r.last_change_ms,
            };
            // One entry per tunnel and edge: while the placement moves, a
            // tunnel's old edge and its new one may both speak for a moment;
            // the view believes the one serving it now.
            match telemetry
                .tunnels
                .iter_mut()
                .find(|t| t.outside_ip == r.outside_ip && t.edge_id == edge_id)
            {
                Some(t) => *t = entry,
                None => telemetry.tunnels.push(entry),
            }
        }
        // Entries of edges that are gone say nothing any more.
        let live =
            crate::fleet::nodes::nodes(tx.ctx().store, crate::fleet::nodes::Role::Edge, region)
                .map_err(|e| ApiError::internal(format!("reading the region's edges: {e}")))?;
        telemetry
            .tunnels
            .retain(|t| t.edge_id == edge_id || live.iter().any(|e| e.node_id == t.edge_id));
        if stored.as_ref() != Some(&telemetry) {
            tx.put(&telemetry)?;
        }
        if vpn.state == VpnConnectionState::Pending && !telemetry.tunnels.is_empty() {
            vpn.state = VpnConnectionState::Available;
            tx.put(&vpn)?;
        }
        Ok(())
    })
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpnConnectionId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut vpn = load_named::<VpnConnection>(tx, id)?;
        if !vpn.is_live() {
            return Ok(());
        }
        // The tunnels' outside addresses go back to the region's pool.
        for t in &vpn.tunnels {
            address::give_back(tx, t.outside_ip)?;
        }
        vpn.state = VpnConnectionState::Deleted;
        vpn.deleted_at = Some(now_secs());
        tx.put(&vpn)
    })?;
    Ok(ok_return(ctx, "DeleteVpnConnection"))
}

/// What Describe shows for a network CIDR option.
fn network_cidr(cidr: Option<Ipv4Cidr>) -> String {
    cidr.map_or_else(|| "0.0.0.0/0".to_owned(), |c| c.to_string())
}

/// An IPv4 network CIDR option (spec 10.2), if given.
fn ipv4_network_param(params: &Params, name: &str) -> Result<Option<Ipv4Cidr>, ApiError> {
    params
        .get(name)
        .map(|text| {
            text.parse::<Ipv4Cidr>()
                .map_err(|_| ApiError::invalid_value(name, text, "Give an IPv4 CIDR block."))
        })
        .transpose()
}

/// ModifyVpnConnectionOptions: the local and remote IPv4 network CIDRs of
/// a live connection (spec 10.2). The IPv6 ones apply only to connections
/// whose tunnels carry IPv6, which openvpc does not make, so they are
/// refused.
pub fn modify_options(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("VpnConnectionId")?;
    let local = ipv4_network_param(params, "LocalIpv4NetworkCidr")?;
    let remote = ipv4_network_param(params, "RemoteIpv4NetworkCidr")?;
    for name in ["LocalIpv6NetworkCidr", "RemoteIpv6NetworkCidr"] {
        if let Some(text) = params.get(name) {
            return Err(ApiError::invalid_value(
                name,
                text,
                "IPv6 network CIDRs apply only to a connection whose tunnels carry IPv6 (TunnelInsideIpVersion ipv6); this one carries IPv4.",
            ));
        }
    }
    if local.is_none() && remote.is_none() {
        return Err(ApiError::new(
            "MissingParameter",
            "Specify LocalIpv4NetworkCidr or RemoteIpv4NetworkCidr.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpn = transact(ctx, |tx| {
        let mut vpn = load_named::<VpnConnection>(tx, id)?;
        if !vpn.is_live() {
            return Err(ApiError::new(
                "IncorrectState",
                format!("The VPN connection '{id}' is deleted."),
            ));
        }
        if local.is_some() {
            vpn.local_ipv4_network_cidr = local;
        }
        if remote.is_some() {
            vpn.remote_ipv4_network_cidr = remote;
        }
        tx.put(&vpn)?;
        Ok(vpn)
    })?;
    Ok(Xml::response(
        "ModifyVpnConnectionOptions",
        ctx.request_id,
        |x| {
            x.node("vpnConnection", |x| vpn.write(x));
        },
    ))
}

/// spec 10.1, 10.3: Create/DeleteVpnConnectionRoute, static routes of a
/// live connection; at most 100.
pub fn route(ctx: &Ctx, params: &Params, create: bool) -> Result<String, ApiError> {
    let id = params.required("VpnConnectionId")?;
    let text = params.required("DestinationCidrBlock")?;
    let destination: Ipv4Cidr = text.parse().map_err(|_| {
        ApiError::invalid_value("DestinationCidrBlock", text, "Give an IPv4 CIDR block.")
    })?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let action = if create {
        "CreateVpnConnectionRoute"
    } else {
        "DeleteVpnConnectionRoute"
    };
    transact(ctx, |tx| {
        let mut vpn = load_named::<VpnConnection>(tx, id)?;
        if !vpn.is_live() {
            return Err(ApiError::new(
                "IncorrectState",
                format!("The VPN connection '{id}' is deleted."),
            ));
        }
        let existing = vpn.routes.iter().position(|r| r.destination == destination);
        match (create, existing) {
            (true, Some(_)) => {
                return Err(ApiError::new(
                    "RouteAlreadyExists",
                    format!("The VPN connection '{id}' already has a route to {destination}."),
                ));
            }
            (true, None) => {
                if vpn.routes.len() >= STATIC_ROUTE_QUOTA {
                    return Err(ApiError::new(
                        "RouteLimitExceeded",
                        format!("A VPN connection has at most {STATIC_ROUTE_QUOTA} static routes."),
                    ));
                }
                vpn.routes.push(VpnRoute { destination });
            }
            (false, Some(i)) => {
                vpn.routes.remove(i);
            }
            (false, None) => {
                return Err(ApiError::new(
                    "InvalidRoute.NotFound",
                    format!("The VPN connection '{id}' has no route to {destination}."),
                ));
            }
        }
        tx.put(&vpn)
    })?;
    Ok(ok_return(ctx, action))
}

/// spec 2.7, 10.3: the paths a gateway chose, over its live connections
/// and what the edges serving their tunnels last said (`edges`: the
/// region's live edges), for route propagation.
pub fn vgw_paths_of(
    tx: &mut Tx,
    vgw_id: &str,
    edges: &[NodeRecord],
) -> Result<Vec<crate::fleet::vpn::VgwPath>, ApiError> {
    let connections: Vec<VpnConnection> = tx
        .list::<VpnConnection>()?
        .into_iter()
        .filter(|c| c.is_live() && c.vpn_gateway_id.as_deref() == Some(vgw_id))
        .collect();
    let mut viewed = Vec::with_capacity(connections.len());
    for c in &connections {
        let telemetry = tx.get::<VpnTelemetry>(&c.id)?;
        viewed.push((c, tunnel_views(c, telemetry.as_ref(), edges)));
    }
    Ok(crate::fleet::vpn::vgw_paths(&viewed))
}

#[cfg(test)]
mod tests {
    use super::*;

    // spec 10.2: generated keys follow the PSK rules.
    #[test]
    fn generated_keys_are_valid() {
        for _ in 0..100 {
            assert!(check_psk(&generate_psk()).is_ok());
        }
    }

    // spec 10.2: generated inside CIDRs avoid the reserved and used blocks.
    #[test]
    fn generated_inside_cidrs_avoid_reserved() {
        for _ in 0..200 {
            let c = generate_inside(&[]).unwrap();
            assert!(check_inside_cidr(&c.to_string()).is_ok());
        }
        assert!(reserved_inside(&"169.254.5.0/30".parse().unwrap()));
        assert!(!reserved_inside(&"169.254.5.4/30".parse().unwrap()));
    }
}
