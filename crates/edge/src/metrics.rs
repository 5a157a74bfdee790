//! The edge node's `/metrics` in the Prometheus text format (0.0.4): the
//! translation counters and drops, the socket and uplink counters, the BGP
//! announcement of the public pool, and the VPN gateway role, per tunnel
//! named after AWS's CloudWatch VPN metrics (`TunnelState`,
//! `TunnelDataIn`, `TunnelDataOut`) and with our own beside them (IPsec
//! and BGP up, routes accepted, packets each way, drops by reason).
//!
//! Written by hand, like the hyperplane node's (`openvpc_hyperplane::
//! metrics`), whose HTTP responder serves it: the figures are already in a
//! [`NodeStatus`]; what is left is formatting.

use std::fmt::Write as _;
use std::net::SocketAddr;

use openvpc_hyperplane::metrics::escape;
use openvpc_vpn::tunnel::TunnelDrop;

use crate::io::VpnShared;
use crate::node::NodeStatus;
use crate::translate::EdgeDrop;
use crate::vgw::{TunnelStatus, VgwDrop};

/// The default `/metrics` port: the hyperplane node's (9108) plus one, so
/// the two roles never collide on one address (`--metrics 0.0.0.0:…`, or
/// both in one namespace) and a scrape target's port says its role.
pub const DEFAULT_PORT: u16 = 9109;

/// The address `/metrics` is served on for an edge whose underlay is
/// `underlay_ip`.
pub fn default_addr(underlay_ip: core::net::IpAddr) -> SocketAddr {
    SocketAddr::new(underlay_ip, DEFAULT_PORT)
}

/// One family: HELP, TYPE, then a sample per row (extra labels after
/// `node`, value).
struct Out {
    text: String,
    node: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str, rows: &[(String, u64)]) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(self.text, "{name}{{node=\"{}\"{labels}}} {v}", self.node);
        }
    }

    /// A family of one sample without extra labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, v: u64) {
        self.family(name, kind, help, &[(String::new(), v)]);
    }
}

/// Renders the status of an edge node.
pub fn render(status: &NodeStatus) -> String {
    let mut out = Out {
        text: String::new(),
        node: escape(&status.edge_id),
    };
    render_node(&mut out, status);
    render_bgp(&mut out, status.bgp.as_ref());
    render_vpn(&mut out, &status.vpn);
    out.text
}

fn render_node(out: &mut Out, s: &NodeStatus) {
    out.single(
        "openvpc_edge_registered",
        "gauge",
        "1 while the node is registered with the region's server.",
        u64::from(s.registered),
    );
    out.single(
        "openvpc_edge_synced",
        "gauge",
        "1 once the region's whole table has been applied.",
        u64::from(s.synced),
    );
    out.single(
        "openvpc_edge_revision",
        "gauge",
        "The revision of the edge table last applied.",
        s.revision,
    );
    out.single(
        "openvpc_edge_skipped_entries",
        "counter",
        "Table entries skipped as malformed since start.",
        s.skipped_entries,
    );
    out.single(
        "openvpc_edge_public_addresses",
        "gauge",
        "Public addresses (public IPs and Elastic IPs) the node translates.",
        s.io.table,
    );
    out.single(
        "openvpc_edge_attached_vpcs",
        "gauge",
        "VPCs with an internet gateway attached.",
        s.io.attached_vpcs,
    );
    out.single(
        "openvpc_edge_routed_prefixes",
        "gauge",
        "Public pool prefixes routed to the uplink.",
        s.routed.len() as u64,
    );
    out.family(
        "openvpc_edge_translated_packets",
        "counter",
        "Packets translated, by direction (outbound: private to public).",
        &[
            (",direction=\"outbound\"".to_owned(), s.io.outbound),
            (",direction=\"inbound\"".to_owned(), s.io.inbound),
        ],
    );
    let drops: Vec<(String, u64)> = EdgeDrop::ALL
        .iter()
        .map(|d| (format!(",reason=\"{}\"", d.name()), s.io.drops(*d)))
        .collect();
    out.family(
        "openvpc_edge_drops",
        "counter",
        "Packets the node dropped instead of translating, by reason.",
        &drops,
    );
    let c = &s.io.io;
    for (name, help, v) in [
        (
            "underlay_rx_packets",
            "Geneve datagrams read from the underlay.",
            c.underlay_rx,
        ),
        (
            "underlay_rx_bytes",
            "Bytes of Geneve datagrams read from the underlay.",
            c.underlay_rx_bytes,
        ),
        (
            "underlay_tx_packets",
            "Datagrams the kernel took for the underlay.",
            c.underlay_tx,
        ),
        (
            "underlay_tx_bytes",
            "Bytes of every datagram offered to the underlay.",
            c.underlay_tx_bytes,
        ),
        (
            "underlay_send_errors",
            "Datagrams the kernel refused for the underlay.",
            c.underlay_send_errors,
        ),
        (
            "uplink_tx_packets",
            "Packets written to the uplink.",
            c.uplink_tx,
        ),
        (
            "uplink_tx_bytes",
            "Bytes written to the uplink.",
            c.uplink_tx_bytes,
        ),
        (
            "uplink_write_errors",
            "Writes to the uplink that failed.",
            c.uplink_write_errors,
        ),
        (
            "uplink_coalesced_writes",
            "Writes to the uplink that carried several coalesced packets.",
            c.uplink_coalesced_writes,
        ),
        (
            "uplink_rx_packets",
            "Packets read from the uplink.",
            c.uplink_rx,
        ),
        (
            "uplink_rx_bytes",
            "Bytes read from the uplink.",
            c.uplink_rx_bytes,
        ),
        (
            "uplink_rx_errors",
            "Packets read from the uplink that could not be handed on.",
            c.uplink_rx_errors,
        ),
    ] {
        out.single(&format!("openvpc_edge_{name}"), "counter", help, v);
    }
}

/// The announcement of the public pool, from the status file's `bgp`
/// object (`crate::bgp::Announcer::to_json`); no samples without a peer.
fn render_bgp(out: &mut Out, bgp: Option<&serde_json::Value>) {
    let row = |v: u64| -> Vec<(String, u64)> {
        bgp.map(|b| {
            let peer = b.get("peer").and_then(|p| p.as_str()).unwrap_or("");
            let peer_as = b.get("peer_as").and_then(|p| p.as_u64()).unwrap_or(0);
            (
                format!(",peer=\"{}\",peer_as=\"{peer_as}\"", escape(peer)),
                v,
            )
        })
        .into_iter()
        .collect()
    };
    let field = |k: &str| bgp.and_then(|b| b.get(k));
    out.family(
        "openvpc_edge_bgp_established",
        "gauge",
        "1 while the BGP session to the upstream router is established.",
        &row(u64::from(
            field("established")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        )),
    );
    out.family(
        "openvpc_edge_bgp_established_count",
        "counter",
        "Times the BGP session to the upstream router reached Established since start.",
        &row(field("established_count")
            .and_then(|v| v.as_u64())
            .unwrap_or(0)),
    );
    out.family(
        "openvpc_edge_bgp_announced_prefixes",
        "gauge",
        "Prefixes announced to the upstream router (the public pool and the VPN tunnels' outside addresses).",
        &row(field("announced")
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len() as u64)),
    );
}

/// AWS's `TunnelState` of one tunnel: up once IPsec is, and for a BGP
/// tunnel once its session is established too (CloudWatch: "for BGP VPNs,
/// 1 indicates ESTABLISHED"; the same rule as `VgwTelemetry`'s UP).
fn tunnel_state(t: &TunnelStatus) -> u64 {
    u64::from(t.report.ipsec_up && (t.bgp_state.is_none() || t.report.bgp_up))
}

fn render_vpn(out: &mut Out, v: &VpnShared) {
    let tunnel_labels = |t: &TunnelStatus| {
        format!(
            ",vpn_connection_id=\"{}\",tunnel_ip_address=\"{}\"",
            escape(&t.report.vpn_connection_id),
            t.report.outside_ip
        )
    };
    let per_tunnel = |f: &dyn Fn(&TunnelStatus) -> u64| -> Vec<(String, u64)> {
        v.tunnels.iter().map(|t| (tunnel_labels(t), f(t))).collect()
    };
    out.family(
        "openvpc_vpn_tunnel_state",
        "gauge",
        "TunnelState: 1 up (IPsec up and, with BGP routing, the session established), 0 down.",
        &per_tunnel(&tunnel_state),
    );
    out.family(
        "openvpc_vpn_tunnel_data_in_bytes",
        "counter",
        "TunnelDataIn: bytes received through the tunnel from the customer gateway (decrypted).",
        &per_tunnel(&|t| t.counters.bytes_in),
    );
    out.family(
        "openvpc_vpn_tunnel_data_out_bytes",
        "counter",
        "TunnelDataOut: bytes sent through the tunnel to the customer gateway (before encryption).",
        &per_tunnel(&|t| t.counters.bytes_out),
    );
    out.family(
        "openvpc_vpn_tunnel_ipsec_up",
        "gauge",
        "1 while the tunnel's IKE SA and a child SA are up.",
        &per_tunnel(&|t| u64::from(t.report.ipsec_up)),
    );
    out.family(
        "openvpc_vpn_tunnel_bgp_up",
        "gauge",
        "1 while the tunnel's BGP session is established (0 for static routing).",
        &per_tunnel(&|t| u64::from(t.report.bgp_up)),
    );
    out.family(
        "openvpc_vpn_tunnel_routes_accepted",
        "gauge",
        "AcceptedRouteCount: routes accepted from the customer over BGP.",
        &per_tunnel(&|t| t.report.routes.len() as u64),
    );
    out.family(
        "openvpc_vpn_tunnel_packets_in",
        "counter",
        "Packets received through the tunnel from the customer gateway.",
        &per_tunnel(&|t| t.counters.packets_in),
    );
    out.family(
        "openvpc_vpn_tunnel_packets_out",
        "counter",
        "Packets sent through the tunnel to the customer gateway.",
        &per_tunnel(&|t| t.counters.packets_out),
    );
    out.family(
        "openvpc_vpn_tunnel_last_status_change_seconds",
        "gauge",
        "LastStatusChange: Unix time of the last change of IPsec or BGP up (0: none yet).",
        &per_tunnel(&|t| t.report.last_change_ms / 1000),
    );
    let drops: Vec<(String, u64)> = v
        .tunnels
        .iter()
        .flat_map(|t| {
            TunnelDrop::ALL.iter().map(move |d| {
                (
                    format!("{},reason=\"{}\"", tunnel_labels(t), d.name()),
                    t.counters.drops[*d as usize],
                )
            })
        })
        .collect();
    out.family(
        "openvpc_vpn_tunnel_drops",
        "counter",
        "Packets the tunnel did not carry, by reason.",
        &drops,
    );
    out.single(
        "openvpc_vpn_gateway_to_vpc_packets",
        "counter",
        "Packets decrypted from tunnels into VPCs.",
        v.to_vpc,
    );
    out.single(
        "openvpc_vpn_gateway_to_tunnel_packets",
        "counter",
        "Packets from VPCs sealed into tunnels.",
        v.to_tunnel,
    );
    out.single(
        "openvpc_vpn_gateway_handed_on_packets",
        "counter",
        "Packets from VPCs handed on to the edge serving their tunnel.",
        v.handed_on,
    );
    // Every reason, counted or not: a reason missing from the worker's
    // list (none published yet) reads 0.
    let gateway_drops: Vec<(String, u64)> = VgwDrop::ALL
        .iter()
        .map(|d| {
            let n = v
                .drops
                .iter()
                .find(|(name, _)| *name == d.name())
                .map_or(0, |(_, n)| *n);
            (format!(",reason=\"{}\"", d.name()), n)
        })
        .collect();
    out.family(
        "openvpc_vpn_gateway_drops",
        "counter",
        "Packets the VPN gateway role dropped, by reason.",
        &gateway_drops,
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use openvpc_model::edge::{LearnedRoute, VpnTunnelReport};
    use openvpc_vpn::tunnel::TunnelCounters;

    use super::*;
    use crate::io::IoStatus;

    fn tunnel(id: &str, ip: [u8; 4], ipsec: bool, bgp: Option<bool>) -> TunnelStatus {
        TunnelStatus {
            report: VpnTunnelReport {
                vpn_connection_id: id.into(),
                outside_ip: ip.into(),
                edge_id: "edge-1".into(),
                ipsec_up: ipsec,
                bgp_up: bgp == Some(true),
                status_message: String::new(),
                routes: Vec::new(),
                last_change_ms: 1_700_000_000_123,
            },
            bgp_state: bgp.map(|up| {
                if up {
                    openvpc_bgp::State::Established
                } else {
                    openvpc_bgp::State::Active
                }
            }),
            counters: TunnelCounters::default(),
        }
    }

    fn status(vpn: VpnShared, bgp: Option<serde_json::Value>) -> NodeStatus {
        NodeStatus {
            edge_id: "edge-1".into(),
            registered: true,
            synced: true,
            revision: 4,
            skipped_entries: 0,
            public_pool: Vec::new(),
            routed: Vec::new(),
            io: IoStatus::default(),
            bgp,
            vpn,
        }
    }

    /// The value of the sample `series` (name and labels, exactly).
    fn sample(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    // Text format 0.0.4: each family's HELP and TYPE come once, before
    // its samples, and every sample belongs to a declared family.
    #[test]
    fn every_family_has_help_and_type_before_its_samples() {
        let mut vpn = VpnShared::default();
        vpn.tunnels
            .push(tunnel("vpn-1", [203, 0, 113, 10], true, Some(true)));
        let bgp = serde_json::json!({"peer": "10.0.0.1", "peer_as": 65000,
            "established": true, "established_count": 1, "announced": ["198.51.100.0/24"]});
        let text = render(&status(vpn, Some(bgp)));
        let (mut helped, mut typed) = (HashSet::new(), HashSet::new());
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap();
                assert!(helped.insert(name.to_owned()), "HELP twice: {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(helped.contains(name), "TYPE before HELP: {name}");
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                assert!(typed.insert(name.to_owned()), "TYPE twice: {name}");
            } else {
                let name = line.split('{').next().unwrap();
                assert!(typed.contains(name), "sample of no family: {line}");
                assert!(line.contains("node=\"edge-1\""), "{line}");
                samples += 1;
            }
        }
        assert!(samples > 0);
        for name in [
            "openvpc_vpn_tunnel_state",
            "openvpc_vpn_tunnel_data_in_bytes",
            "openvpc_vpn_tunnel_data_out_bytes",
            "openvpc_vpn_tunnel_bgp_up",
            "openvpc_vpn_tunnel_routes_accepted",
            "openvpc_vpn_tunnel_drops",
            "openvpc_vpn_gateway_drops",
            "openvpc_edge_drops",
            "openvpc_edge_bgp_established",
        ] {
            assert!(typed.contains(name), "no family {name}");
        }
        assert_eq!(
            sample(
                &text,
                "openvpc_edge_bgp_established{node=\"edge-1\",peer=\"10.0.0.1\",peer_as=\"65000\"}"
            ),
            Some(1)
        );
        assert_eq!(
            sample(
                &text,
                "openvpc_edge_bgp_announced_prefixes{node=\"edge-1\",peer=\"10.0.0.1\",peer_as=\"65000\"}"
            ),
            Some(1)
        );
    }

    // CloudWatch's TunnelState: 1 up, 0 down; a BGP tunnel is up only
    // with its session established, a static one with IPsec alone.
    #[test]
    fn tunnel_state_is_one_only_when_up() {
        let mut vpn = VpnShared::default();
        vpn.tunnels
            .push(tunnel("vpn-a", [203, 0, 113, 1], true, Some(true)));
        vpn.tunnels
            .push(tunnel("vpn-a", [203, 0, 113, 2], true, Some(false)));
        vpn.tunnels
            .push(tunnel("vpn-s", [203, 0, 113, 3], true, None));
        vpn.tunnels
            .push(tunnel("vpn-s", [203, 0, 113, 4], false, None));
        let text = render(&status(vpn, None));
        let state = |id: &str, ip: &str| {
            sample(
                &text,
                &format!(
                    "openvpc_vpn_tunnel_state{{node=\"edge-1\",vpn_connection_id=\"{id}\",tunnel_ip_address=\"{ip}\"}}"
                ),
            )
        };
        assert_eq!(state("vpn-a", "203.0.113.1"), Some(1));
        assert_eq!(
            state("vpn-a", "203.0.113.2"),
            Some(0),
            "BGP not established"
        );
        assert_eq!(state("vpn-s", "203.0.113.3"), Some(1), "static: IPsec up");
        assert_eq!(state("vpn-s", "203.0.113.4"), Some(0));
        // No upstream peer: the BGP families are declared but empty.
        assert!(!text.contains("openvpc_edge_bgp_established{"));
    }

    // TunnelDataIn/Out, packets, routes accepted and the drops by reason.
    #[test]
    fn tunnel_bytes_packets_routes_and_drops() {
        let mut t = tunnel("vpn-1", [203, 0, 113, 10], true, Some(true));
        t.counters.bytes_in = 1500;
        t.counters.packets_in = 3;
        t.counters.bytes_out = 840;
        t.counters.packets_out = 2;
        t.counters.drops[TunnelDrop::UnknownSpi as usize] = 7;
        t.report.routes = vec![
            LearnedRoute {
                prefix: "172.16.0.0/16".parse().unwrap(),
                as_path_len: 1,
                med: 0,
            },
            LearnedRoute {
                prefix: "172.17.0.0/16".parse().unwrap(),
                as_path_len: 1,
                med: 0,
            },
        ];
        let mut vpn = VpnShared {
            to_vpc: 3,
            to_tunnel: 2,
            handed_on: 1,
            drops: vec![("no_route", 5)],
            ..VpnShared::default()
        };
        vpn.tunnels.push(t);
        let mut s = status(vpn, None);
        s.io.drops[EdgeDrop::ALL[0] as usize] = 9;
        s.io.outbound = 11;
        let text = render(&s);
        let l = "node=\"edge-1\",vpn_connection_id=\"vpn-1\",tunnel_ip_address=\"203.0.113.10\"";
        for (series, want) in [
            (format!("openvpc_vpn_tunnel_data_in_bytes{{{l}}}"), 1500),
            (format!("openvpc_vpn_tunnel_data_out_bytes{{{l}}}"), 840),
            (format!("openvpc_vpn_tunnel_packets_in{{{l}}}"), 3),
            (format!("openvpc_vpn_tunnel_packets_out{{{l}}}"), 2),
            (format!("openvpc_vpn_tunnel_routes_accepted{{{l}}}"), 2),
            (format!("openvpc_vpn_tunnel_bgp_up{{{l}}}"), 1),
            (format!("openvpc_vpn_tunnel_ipsec_up{{{l}}}"), 1),
            (
                format!("openvpc_vpn_tunnel_last_status_change_seconds{{{l}}}"),
                1_700_000_000,
            ),
            (
                format!("openvpc_vpn_tunnel_drops{{{l},reason=\"unknown_spi\"}}"),
                7,
            ),
            (format!("openvpc_vpn_tunnel_drops{{{l},reason=\"esp\"}}"), 0),
            (
                "openvpc_vpn_gateway_to_vpc_packets{node=\"edge-1\"}".to_owned(),
                3,
            ),
            (
                "openvpc_vpn_gateway_drops{node=\"edge-1\",reason=\"no_route\"}".to_owned(),
                5,
            ),
            (
                "openvpc_vpn_gateway_drops{node=\"edge-1\",reason=\"inside\"}".to_owned(),
                0,
            ),
            (
                format!(
                    "openvpc_edge_drops{{node=\"edge-1\",reason=\"{}\"}}",
                    EdgeDrop::ALL[0].name()
                ),
                9,
            ),
            (
                "openvpc_edge_translated_packets{node=\"edge-1\",direction=\"outbound\"}"
                    .to_owned(),
                11,
            ),
        ] {
            assert_eq!(sample(&text, &series), Some(want), "{series} in\n{text}");
        }
        // Every reason of both lists, counted or not.
        assert_eq!(
            text.matches("openvpc_vpn_tunnel_drops{").count(),
            TunnelDrop::ALL.len()
        );
        assert_eq!(
            text.matches("openvpc_vpn_gateway_drops{").count(),
            VgwDrop::ALL.len()
        );
        assert_eq!(
            text.matches("openvpc_edge_drops{").count(),
            EdgeDrop::ALL.len()
        );
    }

    // Label values escape `\`, `"` and newlines (text format 0.0.4).
    #[test]
    fn label_values_are_escaped() {
        let mut vpn = VpnShared::default();
        vpn.tunnels
            .push(tunnel("vpn-\"x\\\ny", [203, 0, 113, 9], true, None));
        let mut s = status(vpn, None);
        s.edge_id = "edge \"1\"".into();
        let text = render(&s);
        assert!(
            text.contains(
                "openvpc_vpn_tunnel_state{node=\"edge \\\"1\\\"\",vpn_connection_id=\"vpn-\\\"x\\\\\\ny\",tunnel_ip_address=\"203.0.113.9\"} 1"
            ),
            "{text}"
        );
        // No raw newline inside a sample.
        assert!(
            text.lines()
                .all(|l| l.starts_with('#') || l.ends_with(char::is_numeric))
        );
    }

    // A node started with a metrics address serves its own figures there,
    // bound in its namespace, and stops serving when it stops (needs
    // root for the namespace and the uplink TUN; skipped otherwise).
    #[test]
    fn a_node_serves_its_metrics_in_its_namespace() {
        use openvpc_agent::netns;
        let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        if euid.ok() != Some(0) {
            eprintln!("skipping: not root");
            return;
        }
        let ns = format!("oem{}", std::process::id());
        netns::ensure(&ns).unwrap();
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = netns::delete(&self.0);
            }
        }
        let _gone = Gone(ns.clone());
        for args in [
            &["link", "set", "lo", "up"][..],
            &["addr", "add", "10.99.0.1/32", "dev", "lo"][..],
        ] {
            let all = [&["-n", ns.as_str()][..], args].concat();
            netns::run("ip", &all).unwrap();
        }
        let state = tempfile::tempdir().unwrap();
        let mut cfg = crate::node::EdgeNodeConfig::new(
            "http://127.0.0.1:1",
            "unused",
            "edge-m",
            "10.99.0.1".parse().unwrap(),
            state.path().to_path_buf(),
        );
        cfg.netns = Some(ns.clone());
        cfg.metrics = Some("10.99.0.1:0".parse().unwrap());
        let node = crate::node::EdgeNode::start_static(cfg).unwrap();
        let addr = node.metrics_addr().unwrap();
        assert_eq!(addr.ip().to_string(), "10.99.0.1");
        let get = || {
            netns::in_netns(Some(&ns), || Ok(TcpStream::connect(addr)))
                .unwrap()
                .map(|mut c| {
                    write!(c, "GET /metrics HTTP/1.1\r\n\r\n").unwrap();
                    let mut got = String::new();
                    c.read_to_string(&mut got).unwrap();
                    got
                })
        };
        let got = get().unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(
            got.contains("openvpc_edge_synced{node=\"edge-m\"} 0"),
            "{got}"
        );
        assert!(
            got.contains("# TYPE openvpc_vpn_tunnel_state gauge"),
            "{got}"
        );
        node.stop();
        assert!(get().is_err(), "still served after stop");
    }

    // The hyperplane's responder serves the edge's rendering over HTTP.
    #[test]
    fn metrics_are_served_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = status(VpnShared::default(), None);
        let t =
            openvpc_hyperplane::metrics::serve(listener, move || render(&s), stop.clone()).unwrap();
        let mut conn = TcpStream::connect(addr).unwrap();
        write!(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
        assert!(got.contains("text/plain; version=0.0.4"), "{got}");
        assert!(
            got.contains("openvpc_edge_registered{node=\"edge-1\"} 1"),
            "{got}"
        );
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
