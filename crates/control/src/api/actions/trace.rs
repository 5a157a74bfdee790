//! `TracePacket`, openvpc's own action behind `openvpc trace`: explains what
//! the dataplane does with a packet from an instance or ENI of the caller to
//! an address, instance or ENI, layer by layer, with the rule behind each
//! decision (the explanation itself is `crate::trace`). No AWS SDK knows
//! this action; the Reachability Analyzer actions answer AWS's clients from
//! the same explanation.
//!
//! The fate names each hop after the source's host: a NAT gateway's
//! (`natGatewayId`, `natNodeId`, the translated `natSource` and
//! `natSourcePort`, the port a fresh node would allocate), then the edge's
//! (`edgeId`, `publicSource`: the Elastic IP it leaves the region with).
//! A packet to a network load balancer names its hop with `lb…` elements:
//! the load balancer (`lbArn`, `lbName`), the node (`lbNodeId`, `lbPlace`),
//! the listener (`lbListenerPort`, `lbListenerProtocol`) and its group
//! (`lbTargetGroupArn`), the target the flow hash picked (`lbTargetId`,
//! `lbTargetIp`, `lbTargetPort`) with its health as the nodes report it
//! (`lbTargetHealth`, `lbTargetHealthReason`, `lbFailOpen`) and the source
//! it sees (`lbTargetSource`); a drop at the node is `lb:<reason>`
//! (`lb:no_listener`: no listener on the port). A packet to a VPN
//! gateway (issue 19) is fate `vpn`: the gateway (`vpnGatewayId`), the
//! route of its table it took (`vpnPrefix`), the tunnel carrying it
//! (`vpnConnectionId`, `tunnelOutsideIp`) and the edge serving that tunnel
//! (`edgeId`, `underlay`; `handedOnBy`: the edge that took it from the host
//! and handed it on); a drop at the gateway is `vgw:<reason>` (`vgw:no_route`:
//! the gateway knows no prefix for it, spec 10.3; `vgw:tunnel`: the tunnel
//! is down). A drop for want of a served route to a gateway (no tunnel up),
//! or of any route while the VPC has one, names the gateway and says why
//! in `vpnTunnels` (each tunnel's state, as `VgwTelemetry` words it).
//!
//! Parameters: `Source` (`i-` or `eni-`), `Destination` (`i-` or `eni-`) or
//! `DestinationIp`, `Protocol` (`tcp`, `udp` or `icmp`), `DestinationPort`
//! (tcp and udp).

use core::net::Ipv4Addr;

use openvpc_dataplane::explain::{Fate, Probe};
use openvpc_model::ResourceKind;

use super::Ctx;
use super::instance::{Instance, primary_eni};
use super::network_interface::NetworkInterface;
use super::resource::{Tx, check_id, transact};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::trace::{EdgeHop, LbHop, NatHop, TraceError, Traced, VpnHop, lb_protocol_name, trace};

pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "TracePacket" => trace_packet(ctx, params),
        _ => return None,
    })
}

/// The ENI a `Source`/`Destination` names: an ENI, or an instance's
/// primary one. Only the caller's own resources are found.
pub(crate) fn interface_of(
    tx: &mut Tx,
    param: &str,
    id: &str,
) -> Result<NetworkInterface, ApiError> {
    if id.starts_with("eni-") {
        check_id(ResourceKind::NetworkInterface, id)?;
        return tx.load::<NetworkInterface>(id);
    }
    if id.starts_with("i-") {
        check_id(ResourceKind::Instance, id)?;
        let instance = tx.load::<Instance>(id)?;
        return primary_eni(tx, &instance)?.ok_or_else(|| {
            ApiError::new(
                "IncorrectInstanceState",
                format!("The instance '{id}' has no network interface, so it sends and receives nothing."),
            )
        });
    }
    Err(ApiError::invalid_value(
        param,
        id,
        "Name an instance (i-…) or a network interface (eni-…).",
    ))
}

/// The probe `Protocol` and `DestinationPort` describe.
pub(crate) fn probe_of(protocol: &str, port: Option<u16>) -> Result<Probe, ApiError> {
    let need_port = || {
        port.ok_or_else(|| {
            ApiError::new(
                "MissingParameter",
                "The request must contain the parameter DestinationPort for tcp and udp.",
            )
        })
    };
    Ok(match protocol {
        "tcp" => Probe::Tcp { port: need_port()? },
        "udp" => Probe::Udp { port: need_port()? },
        "icmp" => Probe::Icmp,
        other => {
            return Err(ApiError::invalid_value(
                "Protocol",
                other,
                "The protocol must be tcp, udp or icmp.",
            ));
        }
    })
}

/// How a trace failure reads to the caller.
pub(crate) fn trace_error(e: TraceError) -> ApiError {
    match e {
        TraceError::NotRunning(_) => ApiError::new("IncorrectState", e.to_string()),
        _ => ApiError::internal(e.to_string()),
    }
}

/// The server's fleet, or the error for a server that runs none.
pub(crate) fn fleet<'a>(ctx: &Ctx<'a>) -> Result<&'a crate::fleet::Fleet, ApiError> {
    ctx.fleet.ok_or_else(|| {
        ApiError::new(
            "UnsupportedOperation",
            "This server runs no hosts (it was started without the agent API), so there is no dataplane to explain.",
        )
    })
}

fn trace_packet(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let source = params.required("Source")?;
    let protocol = params.required("Protocol")?;
    let port = match params.get("DestinationPort") {
        Some(p) => Some(p.parse::<u16>().map_err(|_| {
            ApiError::invalid_value("DestinationPort", p, "A port is a number from 0 to 65535.")
        })?),
        None => None,
    };
    let probe = probe_of(protocol, port)?;
    let (eni, dst) = transact(ctx, |tx| {
        let eni = interface_of(tx, "Source", source)?;
        let dst = match (params.get("Destination"), params.get("DestinationIp")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::new(
                    "InvalidParameterCombination",
                    "Give Destination or DestinationIp, not both.",
                ));
            }
            (Some(d), None) => {
                let to = interface_of(tx, "Destination", d)?;
                to.private_ips.first().copied().ok_or_else(|| {
                    ApiError::new(
                        "InvalidParameterValue",
                        format!("'{d}' has no private IPv4 address."),
                    )
                })?
            }
            (None, Some(ip)) => ip.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::invalid_value("DestinationIp", ip, "Give an IPv4 address.")
            })?,
            (None, None) => {
                return Err(ApiError::new(
                    "MissingParameter",
                    "The request must contain the parameter Destination or DestinationIp.",
                ));
            }
        };
        Ok((eni, dst))
    })?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let fleet = fleet(ctx)?;
    let state = fleet
        .eni_state(&eni.id)
        .ok_or_else(|| trace_error(TraceError::NotRunning(eni.id.clone())))?;
    let explained =
        trace(fleet, ctx.region, &ctx.account.id, &state, dst, probe).map_err(trace_error)?;
    Ok(Xml::response("TracePacket", ctx.request_id, |x| {
        write_explanation(x, &explained);
    }))
}

/// The explanation as `TracePacket` answers it.
fn write_explanation(x: &mut Xml, traced: &Traced) {
    let e = &traced.explanation;
    x.list("stepSet", &e.steps, |x, s| {
        x.elem("networkInterfaceId", &s.eni)
            .elem(
                "direction",
                match s.way {
                    openvpc_dataplane::policy::Way::Egress => "egress",
                    openvpc_dataplane::policy::Way::Ingress => "ingress",
                },
            )
            .elem("layer", s.layer.name())
            .elem("action", &s.action)
            .elem("rule", &s.evidence);
    });
    let lb_drop = traced.lb.as_ref().and_then(|l| l.dropped.as_ref());
    x.node("fate", |x| {
        match &e.fate {
            Fate::Delivered { eni } => x.elem("code", "delivered").elem("networkInterfaceId", eni),
            // With the VPN gateway whose tunnels say why, if one does.
            Fate::Dropped(reason) => x
                .elem("code", "dropped")
                .elem("reason", reason)
                .opt(
                    "vpnGatewayId",
                    traced.vgw.as_ref().map(|g| &g.vpn_gateway_id),
                )
                .opt("vpnTunnels", traced.vgw.as_ref()),
            // Taken by a VPN gateway's edge.
            Fate::Sent { .. } if traced.vpn.is_some() => write_vpn(x, traced.vpn.as_ref()),
            // Dropped by the load balancer's node.
            Fate::Sent { .. } if lb_drop.is_some() => x
                .elem("code", "dropped")
                .opt("reason", lb_drop.map(|r| format!("lb:{r}"))),
            Fate::Sent { underlay, vni, .. } => match &traced.nat {
                Some(NatHop::Dropped {
                    node_id,
                    node_underlay,
                    gateway_id,
                    reason,
                }) => x
                    .elem("code", "dropped")
                    .elem("reason", format!("nat:{reason}"))
                    .opt("natGatewayId", gateway_id.as_ref())
                    .elem("natNodeId", node_id)
                    .elem("natNodeUnderlay", node_underlay),
                // The edge's part, or where the node sent it.
                Some(NatHop::Translated { to, .. }) => {
                    write_edge(x, traced.edge.as_ref(), to, *vni)
                }
                None => write_edge(x, traced.edge.as_ref(), underlay, *vni),
            },
            Fate::Unresolved => x.elem("code", "unresolved"),
        };
        // The NAT gateway that translated the packet, whatever came after
        // (an edge, or for a private gateway the destination's host).
        if let Some(NatHop::Translated {
            node_id,
            node_underlay,
            gateway_id,
            private_source,
            port,
            ..
        }) = &traced.nat
        {
            x.elem("natGatewayId", gateway_id)
                .elem("natNodeId", node_id)
                .elem("natNodeUnderlay", node_underlay)
                .elem("natSource", private_source)
                .elem("natSourcePort", port);
        }
        // The load balancer's hop, whatever came after (the target's
        // host, or the node's drop).
        if let Some(lb) = &traced.lb {
            write_lb(x, lb);
        }
    });
}

/// A network load balancer's hop: its node and place, the listener and
/// target group, the target the flow hash picked with its health, and the
/// source the target sees.
fn write_lb(x: &mut Xml, lb: &LbHop) {
    if let Some(l) = &lb.load_balancer {
        x.elem("lbGatewayId", &l.gateway_id)
            .elem("lbArn", &l.arn)
            .elem("lbName", &l.name);
    }
    x.elem("lbNodeId", &lb.node_id)
        .elem("lbNodeUnderlay", lb.node_underlay)
        .opt("lbPlace", lb.place)
        .elem("lbFront", lb.front)
        .elem("lbPort", lb.port);
    if let Some(l) = &lb.listener {
        x.elem("lbListenerPort", l.port)
            .elem("lbListenerProtocol", lb_protocol_name(l.protocol))
            .elem("lbTargetGroupArn", &l.target_group_arn);
    }
    if let Some(t) = &lb.target {
        x.elem("lbTargetId", &t.id)
            .elem("lbTargetIp", t.ip)
            .elem("lbTargetPort", t.port)
            .elem("lbTargetAvailabilityZone", &t.availability_zone)
            .elem("lbTargetHealth", t.health)
            .opt("lbTargetHealthReason", t.reason.as_ref());
    }
    x.elem("lbFailOpen", lb.fail_open);
    if let Some((ip, port)) = lb.source {
        x.elem("lbTargetSource", ip)
            .elem("lbTargetSourcePort", port);
    }
}

/// A VPN gateway's hop: sealed into a tunnel by the edge serving it, or
/// dropped by an edge with the gateway's reason.
fn write_vpn<'x>(x: &'x mut Xml, vpn: Option<&VpnHop>) -> &'x mut Xml {
    match vpn {
        Some(VpnHop::Tunnel {
            edge_id,
            edge_underlay,
            handed_on_by,
            vpn_gateway_id,
            vpn_connection_id,
            outside_ip,
            prefix,
        }) => x
            .elem("code", "vpn")
            .elem("edgeId", edge_id)
            .elem("underlay", edge_underlay)
            .opt("handedOnBy", handed_on_by.as_ref())
            .elem("vpnGatewayId", vpn_gateway_id)
            .elem("vpnPrefix", prefix)
            .elem("vpnConnectionId", vpn_connection_id)
            .elem("tunnelOutsideIp", outside_ip),
        Some(VpnHop::Dropped {
            edge_id,
            vpn_gateway_id,
            reason,
            gateway,
        }) => x
            .elem("code", "dropped")
            .elem("reason", format!("vgw:{}", reason.name()))
            .elem("edgeId", edge_id)
            .elem("vpnGatewayId", vpn_gateway_id)
            .opt("vpnTunnels", gateway.as_ref()),
        None => x.elem("code", "forwarded"),
    }
}

/// A packet sent to `underlay` (a gateway's node) in VNI `vni`: out to the
/// internet through the edge, dropped there, or forwarded to a node the
/// walk does not enter.
fn write_edge<'x>(
    x: &'x mut Xml,
    edge: Option<&EdgeHop>,
    underlay: &core::net::IpAddr,
    vni: u32,
) -> &'x mut Xml {
    match edge {
        Some(EdgeHop::Translated {
            edge_id,
            public_source,
        }) => x
            .elem("code", "internet")
            .elem("edgeId", edge_id)
            .elem("underlay", underlay)
            .elem("publicSource", public_source),
        Some(EdgeHop::Dropped { edge_id, reason }) => x
            .elem("code", "dropped")
            .elem("reason", format!("edge:{}", reason.name()))
            .elem("edgeId", edge_id),
        None => x
            .elem("code", "forwarded")
            .elem("underlay", underlay)
            .elem("vni", vni),
    }
}
