//! `openvpc trace` (TracePacket) and the Reachability Analyzer through a
//! virtual private gateway (issue 19, item 5), over the in-memory store
//! and the fleet: the host's route to the gateway (propagated, spec 2.7,
//! or static), the edge's own VPN gateway core choosing the tunnel (spec
//! 10.3), and, when no tunnel carries the packet, each tunnel's state as
//! the serving edges last reported it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{call, first};
use openvpc_control::account::Account;
use openvpc_control::actions::Ctx;
use openvpc_control::api::actions::vpn_connection::record_reports;
use openvpc_control::fleet::Fleet;
use openvpc_control::fleet::nodes::{self, Role};
use openvpc_control::query::Params;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::edge::{LearnedRoute, VpnTunnel, VpnTunnelReport};
use openvpc_model::node::NodeRegistration;

const REGION: &str = "us-east-1";

/// The datacenter's prefix the customer router announces.
const DATACENTER: &str = "172.16.0.0/16";
/// An address in it.
const SERVER: &str = "172.16.5.5";

/// A VPC with an instance on a host, a VPN gateway attached with
/// propagation on in the main route table, a dynamic VPN connection to a
/// customer gateway, and two live edges serving its two tunnels.
struct World {
    store: Arc<MemoryStore>,
    a: Account,
    fleet: Arc<Fleet>,
    instance: String,
    rtb: String,
    vgw: String,
    vpn: String,
    tunnels: Vec<VpnTunnel>,
}

impl World {
    fn new() -> World {
        let store = Arc::new(MemoryStore::new());
        let a = common::account();
        let vpc = common::vpc(store.as_ref(), &a);
        common::register_two_zone_hosts(store.as_ref());
        for (edge, ip) in [("e1", "10.254.0.2"), ("e2", "10.254.0.3")] {
            // Far in the future: the test's edges never expire.
            nodes::register(
                store.as_ref(),
                Role::Edge,
                REGION,
                &NodeRegistration {
                    node_id: edge.into(),
                    underlay_ip: ip.parse().unwrap(),
                    serving: vec![],
                    target_health: vec![],
                },
                u64::MAX / 2,
            )
            .unwrap();
        }
        let fleet = Fleet::load(Arc::clone(&store) as Arc<dyn Store>).unwrap();
        let ok = |body: &str| {
            call(store.as_ref(), &a, body)
                .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message))
        };
        let subnet = common::subnet_in(store.as_ref(), &a, &vpc, "10.0.1.0/24", "us-east-1a");
        let sg = common::security_group(store.as_ref(), &a, &vpc, "app");
        let instance = first(
            &ok(&format!(
                "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}&SecurityGroupId.1={sg}"
            )),
            "instanceId",
        );
        let cgw = first(
            &ok("Action=CreateCustomerGateway&Type=ipsec.1&IpAddress=198.51.100.20&BgpAsn=65000"),
            "customerGatewayId",
        );
        let vgw = first(&ok("Action=CreateVpnGateway&Type=ipsec.1"), "vpnGatewayId");
        ok(&format!(
            "Action=AttachVpnGateway&VpnGatewayId={vgw}&VpcId={vpc}"
        ));
        let rtb = common::main_route_table(store.as_ref(), &a, &vpc);
        ok(&format!(
            "Action=EnableVgwRoutePropagation&RouteTableId={rtb}&GatewayId={vgw}"
        ));
        let vpn = first(
            &ok(&format!(
                "Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId={cgw}&VpnGatewayId={vgw}"
            )),
            "vpnConnectionId",
        );
        fleet.catch_up().unwrap();
        let tunnels = fleet.edge_delta(REGION, 0).0.vpn_tunnels;
        assert_eq!(tunnels.len(), 2);
        assert_ne!(
            tunnels[0].edge_id, tunnels[1].edge_id,
            "one tunnel per edge"
        );
        World {
            store,
            a,
            fleet,
            instance,
            rtb,
            vgw,
            vpn,
            tunnels,
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: self.store.as_ref(),
            account: &self.a,
            region: REGION,
            request_id: "req-test",
            fleet: Some(&self.fleet),
        }
    }

    fn act(&self, body: &str) -> String {
        let xml =
            openvpc_control::actions::dispatch(&self.ctx(), &Params::parse(body.as_bytes(), ""))
                .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message));
        self.fleet.catch_up().unwrap();
        xml
    }

    /// Tunnel `t`'s serving edge reports it: IPsec up or down, BGP up or
    /// down, and the datacenter's prefix learned while BGP is up.
    fn report(&self, t: usize, ipsec_up: bool, bgp_up: bool) {
        let tunnel = &self.tunnels[t];
        let r = VpnTunnelReport {
            vpn_connection_id: self.vpn.clone(),
            outside_ip: tunnel.outside_ip,
            edge_id: tunnel.edge_id.clone(),
            ipsec_up,
            bgp_up,
            status_message: String::new(),
            routes: if bgp_up {
                vec![LearnedRoute {
                    prefix: DATACENTER.parse().unwrap(),
                    as_path_len: 1,
                    med: 0,
                }]
            } else {
                Vec::new()
            },
            last_change_ms: 1,
        };
        record_reports(
            self.store.as_ref(),
            &self.a.id,
            REGION,
            &self.vpn,
            &tunnel.edge_id,
            &[r],
        )
        .unwrap();
        self.fleet.catch_up().unwrap();
    }

    fn trace(&self, to: &str) -> String {
        self.act(&format!(
            "Action=TracePacket&Source={}&DestinationIp={to}&Protocol=tcp&DestinationPort=443",
            self.instance
        ))
    }

    fn analyse(&self, to: &str) -> String {
        let path = first(
            &self.act(&format!(
                "Action=CreateNetworkInsightsPath&Source={}&Protocol=tcp&FilterAtSource.DestinationAddress={to}&FilterAtSource.DestinationPortRange.FromPort=443&FilterAtSource.DestinationPortRange.ToPort=443",
                self.instance
            )),
            "networkInsightsPathId",
        );
        self.act(&format!(
            "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"
        ))
    }
}

fn fate(xml: &str) -> String {
    xml.split("<fate>")
        .nth(1)
        .and_then(|f| f.split("</fate>").next())
        .unwrap_or_else(|| panic!("no fate in {xml}"))
        .to_owned()
}

// Issue 19 (5), spec 2.7 and 10.3: a probe to a prefix the gateway learned
// over BGP takes the propagated route to the edge serving the tunnel whose
// session learned it; that edge's gateway core routes it by the prefix into
// that tunnel. The trace names the route, the gateway, the connection, the
// tunnel's outside address and the edge.
#[test]
fn a_propagated_prefix_goes_into_the_tunnel_that_learned_it() {
    let w = World::new();
    w.report(1, true, true);
    let xml = w.trace(SERVER);
    let f = fate(&xml);
    assert_eq!(first(&f, "code"), "vpn", "{xml}");
    assert_eq!(first(&f, "vpnGatewayId"), w.vgw);
    assert_eq!(first(&f, "vpnPrefix"), DATACENTER);
    assert_eq!(first(&f, "vpnConnectionId"), w.vpn);
    assert_eq!(
        first(&f, "tunnelOutsideIp"),
        w.tunnels[1].outside_ip.to_string()
    );
    assert_eq!(first(&f, "edgeId"), w.tunnels[1].edge_id);
    assert_eq!(
        first(&f, "underlay"),
        w.tunnels[1].edge_underlay.to_string()
    );
    assert!(!f.contains("handedOnBy"), "{xml}");
    // The host's routing step names the propagated route to the gateway.
    assert!(
        xml.contains(&format!("route {DATACENTER} to {}", w.vgw)),
        "{xml}"
    );

    // The analysis finds the path; it ends at the gateway, the route shown
    // as propagated, and the warning names the tunnel and its edge.
    let xml = w.analyse(SERVER);
    assert_eq!(first(&xml, "networkPathFound"), "true", "{xml}");
    assert!(
        xml.contains("<origin>EnableVgwRoutePropagation</origin>"),
        "{xml}"
    );
    let components = xml.split("<explanationSet").next().unwrap();
    let last = components.rsplit("<sequenceNumber>").next().unwrap();
    assert!(last.contains(&format!("<id>{}</id>", w.vgw)), "{xml}");
    let warning = first(&xml, "warningMessage");
    assert!(
        warning.contains(&w.tunnels[1].outside_ip.to_string())
            && warning.contains(&w.tunnels[1].edge_id),
        "{warning}"
    );
}

// Issue 19 (5), spec 10.3: the session drops (IPsec stays up): its routes
// go, so the VPC has no route to the datacenter, and the trace says why
// with each tunnel's state, as VgwTelemetry words it.
#[test]
fn a_dropped_session_takes_the_route_and_the_trace_says_why() {
    let w = World::new();
    w.report(1, true, true);
    w.report(1, true, false);
    let xml = w.trace(SERVER);
    let f = fate(&xml);
    assert_eq!(first(&f, "code"), "dropped", "{xml}");
    assert_eq!(first(&f, "reason"), "no_route");
    assert_eq!(first(&f, "vpnGatewayId"), w.vgw);
    let tunnels = first(&f, "vpnTunnels");
    assert!(
        tunnels.contains(&format!(
            "tunnel {} DOWN (IPSEC IS UP, BGP down)",
            w.tunnels[1].outside_ip
        )),
        "{tunnels}"
    );
    assert!(
        tunnels.contains(&format!(
            "tunnel {} DOWN (edge {} has not reported on it)",
            w.tunnels[0].outside_ip, w.tunnels[0].edge_id
        )),
        "{tunnels}"
    );
    assert!(
        tunnels.starts_with(&format!("{}: {} ", w.vgw, w.vpn)),
        "{tunnels}"
    );
}

// Issue 19 (5), spec 2.7: a static route to the gateway while no tunnel is
// up is unserved (no edge carries it): the trace gives the tunnels'
// states, and the analysis explains BAD_STATE_VPN on the connection.
#[test]
fn a_static_route_to_the_gateway_with_no_tunnel_up_is_unserved_with_the_reason() {
    let w = World::new();
    w.act(&format!(
        "Action=CreateRoute&RouteTableId={}&DestinationCidrBlock=192.168.0.0%2F16&GatewayId={}",
        w.rtb, w.vgw
    ));
    let xml = w.trace("192.168.1.1");
    let f = fate(&xml);
    assert_eq!(first(&f, "code"), "dropped", "{xml}");
    assert_eq!(first(&f, "reason"), "target_unserved");
    assert_eq!(first(&f, "vpnGatewayId"), w.vgw);
    let tunnels = first(&f, "vpnTunnels");
    for t in &w.tunnels {
        assert!(
            tunnels.contains(&format!("tunnel {} DOWN", t.outside_ip)),
            "{tunnels}"
        );
    }

    let xml = w.analyse("192.168.1.1");
    assert_eq!(first(&xml, "networkPathFound"), "false", "{xml}");
    assert_eq!(first(&xml, "explanationCode"), "BAD_STATE_VPN", "{xml}");
    let explanation = xml.split("<explanationSet>").nth(1).unwrap();
    assert!(
        explanation.contains(&format!("<vpnGateway><id>{}</id>", w.vgw)),
        "{xml}"
    );
    assert!(
        explanation.contains(&format!("<vpnConnection><id>{}</id>", w.vpn)),
        "{xml}"
    );
    assert!(first(&xml, "warningMessage").contains("DOWN"), "{xml}");
}

// Issue 19 (5), spec 10.3: a static route to the gateway goes to the edges
// serving its tunnels that are up; the edge that takes the packet routes it
// by the gateway's table: a prefix the gateway knows goes into its tunnel
// (handed on once when another edge serves it), one it does not know is
// dropped there (`vgw:no_route`).
#[test]
fn the_gateways_edge_routes_a_static_routes_packets_by_its_own_table() {
    let w = World::new();
    w.report(0, true, true);
    w.report(1, true, true);
    // spec 2.4: a static VPC route beats the propagated one.
    for cidr in ["172.16.0.0%2F16", "192.168.0.0%2F16"] {
        w.act(&format!(
            "Action=CreateRoute&RouteTableId={}&DestinationCidrBlock={cidr}&GatewayId={}",
            w.rtb, w.vgw
        ));
    }
    // The host spreads flows over both edges (by the flow's hash): over a
    // few destinations, some reach the tunnel's edge through the other.
    let mut handed_on = 0;
    for host in 1..=16 {
        let xml = w.trace(&format!("172.16.5.{host}"));
        let f = fate(&xml);
        assert_eq!(first(&f, "code"), "vpn", "{xml}");
        // Both tunnels learned it alike: the first is the primary egress.
        assert_eq!(
            first(&f, "tunnelOutsideIp"),
            w.tunnels[0].outside_ip.to_string()
        );
        assert_eq!(first(&f, "edgeId"), w.tunnels[0].edge_id);
        if f.contains("handedOnBy") {
            assert_eq!(first(&f, "handedOnBy"), w.tunnels[1].edge_id, "{xml}");
            handed_on += 1;
        }
    }
    assert!(
        handed_on > 0 && handed_on < 16,
        "{handed_on} of 16 handed on"
    );

    let xml = w.trace("192.168.1.1");
    let f = fate(&xml);
    assert_eq!(first(&f, "code"), "dropped", "{xml}");
    assert_eq!(first(&f, "reason"), "vgw:no_route");
    assert_eq!(first(&f, "vpnGatewayId"), w.vgw);
    let xml = w.analyse("192.168.1.1");
    assert_eq!(
        first(&xml, "explanationCode"),
        "NO_ROUTE_TO_DESTINATION",
        "{xml}"
    );
}
