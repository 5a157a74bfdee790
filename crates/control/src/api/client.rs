//! A small blocking EC2 Query client for openvpc's own tools (benchmarks,
//! later the agents): form-encodes the parameters, signs the request with
//! SigV4 like botocore does, sends it over HTTP/1.1 with keep-alive, and
//! turns EC2 error bodies back into [`ApiError`]s. It is not a general AWS
//! SDK: users have the aws CLI and boto3 for that.

use openvpc_model::time::now_secs;

use crate::api::error::ApiError;
use crate::sigv4::{self, SigningParams};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("could not reach the API at {endpoint}: {reason}; is `openvpc server` running there?")]
    Unreachable { endpoint: String, reason: String },
    #[error("the API answered {0}")]
    Api(ApiError),
    #[error("could not sign the request: {0}")]
    Sign(#[from] sigv4::SignError),
}

/// A client for one endpoint, account and region.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    host: String,
    access_key: String,
    secret_key: String,
    region: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` (`http://host:port`).
    pub fn new(endpoint: &str, access_key: &str, secret_key: &str, region: &str) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build();
        let host = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        Client {
            agent: config.into(),
            url: format!("http://{host}/"),
            host,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
        }
    }

    /// Calls EC2's `action` with `params`; returns the response body.
    pub fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<String, ClientError> {
        self.call_service("ec2", "2016-11-15", action, params)
    }

    /// Calls `action` of another Query API on the same endpoint (ELBv2:
    /// `elasticloadbalancing`, `2015-12-01`), signed for `service`.
    pub fn call_service(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<String, ClientError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("Action", action)
            .append_pair("Version", version)
            .extend_pairs(params)
            .finish();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let headers = vec![
            ("Host".to_owned(), self.host.clone()),
            ("Content-Type".to_owned(), content_type.to_owned()),
        ];
        let now = now_secs() as i64;
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                body: body.as_bytes(),
            },
            &SigningParams {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
                region: &self.region,
                service,
                time_unix: now,
                content_sha256_header: false,
            },
        )?;
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", content_type);
        for (name, value) in &signed {
            request = request.header(name, value);
        }
        let unreachable = |e: ureq::Error| ClientError::Unreachable {
            endpoint: self.url.clone(),
            reason: e.to_string(),
        };
        let mut response = request.send(body.as_bytes()).map_err(unreachable)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        if status == 200 {
            return Ok(text);
        }
        let field = |name: &str| {
            text.split(&format!("<{name}>"))
                .nth(1)
                .and_then(|rest| rest.split(&format!("</{name}>")).next())
                .unwrap_or_default()
                .to_owned()
        };
        Err(ClientError::Api(
            ApiError::new(field("Code"), field("Message")).with_status(status),
        ))
    }
}

/// One step of a trace as `TracePacket` answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracedStep {
    pub network_interface_id: String,
    pub direction: String,
    pub layer: String,
    pub action: String,
    pub rule: String,
}

/// A `TracePacket` answer: the steps in order and the packet's fate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceReport {
    pub steps: Vec<TracedStep>,
    /// `delivered`, `dropped`, `forwarded`, `internet` or `unresolved`.
    pub fate: String,
    /// The interface it was delivered to.
    pub delivered_to: Option<String>,
    /// The drop counter's name, for a dropped packet.
    pub reason: Option<String>,
    /// Where a forwarded packet went (a gateway's node).
    pub underlay: Option<String>,
    /// The edge node a packet to the internet left through, and the
    /// public source address it left with (fate `internet`).
    pub edge_id: Option<String>,
    pub public_source: Option<String>,
    /// A NAT gateway the packet went through, the hyperplane node that
    /// translated (or dropped) it, and the private source address and port
    /// it was translated to (a port the node would allocate a new flow).
    pub nat_gateway_id: Option<String>,
    pub nat_node_id: Option<String>,
    pub nat_node_underlay: Option<String>,
    pub nat_source: Option<String>,
    pub nat_source_port: Option<String>,
    /// A network load balancer the packet went to.
    pub lb: Option<LbReport>,
    /// A VPN gateway the packet went to (fate `vpn`, or dropped at its
    /// edge, `vgw:<reason>`), or whose tunnels say why the host dropped it.
    pub vpn: Option<VpnReport>,
}

/// A VPN gateway's hop as `TracePacket` answers it (the `vpn…` elements
/// of the fate; the edge is the report's `edge_id` and `underlay`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpnReport {
    pub vpn_gateway_id: String,
    /// The route of the gateway's table the packet took.
    pub prefix: Option<String>,
    /// The tunnel carrying it: its connection and outside address.
    pub vpn_connection_id: Option<String>,
    pub tunnel_outside_ip: Option<String>,
    /// The edge that took it from the host and handed it on to the edge
    /// serving the tunnel.
    pub handed_on_by: Option<String>,
    /// The gateway's tunnels' states, when they say why it was dropped.
    pub tunnels: Option<String>,
}

/// A network load balancer's hop as `TracePacket` answers it (the `lb…`
/// elements of the fate).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbReport {
    pub arn: Option<String>,
    pub name: Option<String>,
    pub node_id: Option<String>,
    pub node_underlay: Option<String>,
    pub place: Option<String>,
    pub front: Option<String>,
    pub port: Option<String>,
    pub listener_port: Option<String>,
    pub listener_protocol: Option<String>,
    pub target_group_arn: Option<String>,
    pub target_id: Option<String>,
    pub target_ip: Option<String>,
    pub target_port: Option<String>,
    pub target_health: Option<String>,
    pub target_health_reason: Option<String>,
    /// `true` when no target was healthy and the flow went to one of all.
    pub fail_open: bool,
    pub target_source: Option<String>,
    pub target_source_port: Option<String>,
}

impl TraceReport {
    /// Reads a `TracePacket` response body (the shape the server writes:
    /// `stepSet` items, then `fate`).
    pub fn parse(xml: &str) -> TraceReport {
        fn inner<'x>(text: &'x str, name: &str) -> Option<&'x str> {
            let rest = text.split(&format!("<{name}>")).nth(1)?;
            rest.split(&format!("</{name}>")).next()
        }
        let between = |text: &str, name: &str| -> Option<String> {
            let raw = inner(text, name)?;
            Some(
                quick_xml::escape::unescape(raw)
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| raw.to_owned()),
            )
        };
        let steps_xml = inner(xml, "stepSet").unwrap_or_default();
        let steps = steps_xml
            .split("<item>")
            .skip(1)
            .map(|item| TracedStep {
                network_interface_id: between(item, "networkInterfaceId").unwrap_or_default(),
                direction: between(item, "direction").unwrap_or_default(),
                layer: between(item, "layer").unwrap_or_default(),
                action: between(item, "action").unwrap_or_default(),
                rule: between(item, "rule").unwrap_or_default(),
            })
            .collect();
        let fate = inner(xml, "fate").unwrap_or_default();
        TraceReport {
            steps,
            fate: between(fate, "code").unwrap_or_default(),
            delivered_to: between(fate, "networkInterfaceId"),
            reason: between(fate, "reason"),
            underlay: between(fate, "underlay"),
            edge_id: between(fate, "edgeId"),
            public_source: between(fate, "publicSource"),
            nat_gateway_id: between(fate, "natGatewayId"),
            nat_node_id: between(fate, "natNodeId"),
            nat_node_underlay: between(fate, "natNodeUnderlay"),
            nat_source: between(fate, "natSource"),
            nat_source_port: between(fate, "natSourcePort"),
            lb: between(fate, "lbNodeId").map(|node_id| LbReport {
                arn: between(fate, "lbArn"),
                name: between(fate, "lbName"),
                node_id: Some(node_id),
                node_underlay: between(fate, "lbNodeUnderlay"),
                place: between(fate, "lbPlace"),
                front: between(fate, "lbFront"),
                port: between(fate, "lbPort"),
                listener_port: between(fate, "lbListenerPort"),
                listener_protocol: between(fate, "lbListenerProtocol"),
                target_group_arn: between(fate, "lbTargetGroupArn"),
                target_id: between(fate, "lbTargetId"),
                target_ip: between(fate, "lbTargetIp"),
                target_port: between(fate, "lbTargetPort"),
                target_health: between(fate, "lbTargetHealth"),
                target_health_reason: between(fate, "lbTargetHealthReason"),
                fail_open: between(fate, "lbFailOpen").as_deref() == Some("true"),
                target_source: between(fate, "lbTargetSource"),
                target_source_port: between(fate, "lbTargetSourcePort"),
            }),
            vpn: between(fate, "vpnGatewayId").map(|vpn_gateway_id| VpnReport {
                vpn_gateway_id,
                prefix: between(fate, "vpnPrefix"),
                vpn_connection_id: between(fate, "vpnConnectionId"),
                tunnel_outside_ip: between(fate, "tunnelOutsideIp"),
                handed_on_by: between(fate, "handedOnBy"),
                tunnels: between(fate, "vpnTunnels"),
            }),
        }
    }
}
