//! The node's `/metrics` in the Prometheus text format (0.0.4): per NAT
//! gateway, the CloudWatch metrics AWS publishes for it (spec 6.2:
//! `ActiveConnectionCount`, `ConnectionAttemptCount`,
//! `ConnectionEstablishedCount`, `ErrorPortAllocation`, `IdleTimeoutCount`,
//! `PacketsDropCount`, bytes and packets each way), the node's own drops
//! and socket counters; per network load balancer, AWS's NLB metrics
//! (`ActiveFlowCount`, `NewFlowCount`, `ProcessedBytes`,
//! `TCP_Target_Reset_Count`, and per target group `HealthyHostCount` and
//! `UnHealthyHostCount`); and the tiny HTTP responder that serves it.
//!
//! Written by hand rather than with a metrics crate: the figures are
//! already counted by the worker and copied out in a [`Snapshot`]; what is
//! left is formatting, which a registry would only duplicate.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::io::Snapshot;
use crate::nat::NatDrop;
use crate::nlb::NlbDrop;
use crate::serve::{BalancerStats, NodeDrop};

/// Renders `snapshot` of node `node_id`.
pub fn render(node_id: &str, snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let node = escape(node_id);
    let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{node=\"{node}\"{labels}}} {v}");
        }
    };
    let per_gateway = |f: &dyn Fn(&crate::serve::GatewayStats) -> u64| -> Vec<(String, u64)> {
        snapshot
            .gateways
            .iter()
            .map(|g| {
                (
                    format!(",nat_gateway_id=\"{}\"", escape(&g.gateway_id)),
                    f(g),
                )
            })
            .collect()
    };
    family(
        "openvpc_nat_active_connection_count",
        "gauge",
        "ActiveConnectionCount: flows this node translates for the gateway.",
        &per_gateway(&|g| u64::from(g.active)),
    );
    family(
        "openvpc_nat_connection_attempt_count",
        "counter",
        "ConnectionAttemptCount: new connections from instances (SYNs, first UDP/ICMP packets).",
        &per_gateway(&|g| g.counters.connection_attempts),
    );
    family(
        "openvpc_nat_connection_established_count",
        "counter",
        "ConnectionEstablishedCount: connections the destination answered.",
        &per_gateway(&|g| g.counters.connections_established),
    );
    family(
        "openvpc_nat_error_port_allocation",
        "counter",
        "ErrorPortAllocation: connections dropped because no source port was free towards the destination.",
        &per_gateway(&|g| g.drop_count(NatDrop::ErrorPortAllocation)),
    );
    family(
        "openvpc_nat_idle_timeout_count",
        "counter",
        "IdleTimeoutCount: connections ended by the 350 s idle timeout.",
        &per_gateway(&|g| g.counters.idle_timeouts),
    );
    family(
        "openvpc_nat_packets_drop_count",
        "counter",
        "PacketsDropCount: packets the gateway dropped, every reason.",
        &per_gateway(&|g| g.packets_dropped()),
    );
    family(
        "openvpc_nat_flow_log_skipped",
        "counter",
        "Packets the gateway's flow logs could not count (too many flows between two harvests).",
        &per_gateway(&|g| g.flow_counts_skipped),
    );
    let c = |f: fn(&crate::nat::NatCounters) -> u64| per_gateway(&move |g| f(&g.counters));
    family(
        "openvpc_nat_bytes_in_from_source",
        "counter",
        "BytesInFromSource: bytes from instances.",
        &c(|c| c.bytes_in_from_source),
    );
    family(
        "openvpc_nat_bytes_out_to_destination",
        "counter",
        "BytesOutToDestination: bytes sent towards destinations.",
        &c(|c| c.bytes_out_to_destination),
    );
    family(
        "openvpc_nat_bytes_in_from_destination",
        "counter",
        "BytesInFromDestination: bytes of replies.",
        &c(|c| c.bytes_in_from_destination),
    );
    family(
        "openvpc_nat_bytes_out_to_source",
        "counter",
        "BytesOutToSource: bytes of replies sent to instances.",
        &c(|c| c.bytes_out_to_source),
    );
    family(
        "openvpc_nat_packets_in_from_source",
        "counter",
        "PacketsInFromSource.",
        &c(|c| c.packets_in_from_source),
    );
    family(
        "openvpc_nat_packets_out_to_destination",
        "counter",
        "PacketsOutToDestination.",
        &c(|c| c.packets_out_to_destination),
    );
    family(
        "openvpc_nat_packets_in_from_destination",
        "counter",
        "PacketsInFromDestination.",
        &c(|c| c.packets_in_from_destination),
    );
    family(
        "openvpc_nat_packets_out_to_source",
        "counter",
        "PacketsOutToSource.",
        &c(|c| c.packets_out_to_source),
    );
    let drops: Vec<(String, u64)> = snapshot
        .gateways
        .iter()
        .flat_map(|g| {
            NatDrop::ALL.iter().map(move |d| {
                (
                    format!(
                        ",nat_gateway_id=\"{}\",reason=\"{}\"",
                        escape(&g.gateway_id),
                        d.name()
                    ),
                    g.drop_count(*d),
                )
            })
        })
        .collect();
    family(
        "openvpc_nat_drops",
        "counter",
        "Packets the gateway dropped, by reason.",
        &drops,
    );
    family(
        "openvpc_nat_replicas",
        "gauge",
        "Flows held for the buddy node.",
        &per_gateway(&|g| u64::from(g.replicas)),
    );
    // Network load balancers (issue 17): AWS's NLB metrics, per load
    // balancer, and per target group for the host counts.
    let per_lb = |f: &dyn Fn(&BalancerStats) -> u64| -> Vec<(String, u64)> {
        snapshot
            .balancers
            .iter()
            .map(|b| {
                (
                    format!(",load_balancer=\"net/{}/{}\"", escape(&b.name), b.id),
                    f(b),
                )
            })
            .collect()
    };
    family(
        "openvpc_nlb_active_flow_count",
        "gauge",
        "ActiveFlowCount: flows this node serves for the load balancer.",
        &per_lb(&|b| u64::from(b.active)),
    );
    family(
        "openvpc_nlb_new_flow_count",
        "counter",
        "NewFlowCount: flows opened from clients to targets.",
        &per_lb(&|b| b.counters.new_flows),
    );
    family(
        "openvpc_nlb_processed_bytes",
        "counter",
        "ProcessedBytes: bytes the load balancer carried, both ways.",
        &per_lb(&|b| b.counters.processed_bytes),
    );
    family(
        "openvpc_nlb_tcp_target_reset_count",
        "counter",
        "TCP_Target_Reset_Count: resets sent by targets.",
        &per_lb(&|b| b.counters.tcp_target_resets),
    );
    family(
        "openvpc_nlb_resets_sent",
        "counter",
        "RSTs the load balancer sent clients for segments of no connection (spec 9.1).",
        &per_lb(&|b| b.counters.resets_sent),
    );
    family(
        "openvpc_nlb_tuples_taken_over",
        "counter",
        "Older flows that gave their tuple towards a target up to a new connection of the same client port through another front.",
        &per_lb(&|b| b.counters.tuples_taken_over),
    );
    let per_group = |healthy: bool| -> Vec<(String, u64)> {
        snapshot
            .balancers
            .iter()
            .flat_map(|b| {
                b.groups.iter().map(move |(tg, h, u)| {
                    (
                        format!(
                            ",load_balancer=\"net/{}/{}\",target_group=\"{}\"",
                            escape(&b.name),
                            b.id,
                            escape(tg)
                        ),
                        u64::from(if healthy { *h } else { *u }),
                    )
                })
            })
            .collect()
    };
    family(
        "openvpc_nlb_healthy_host_count",
        "gauge",
        "HealthyHostCount: targets this node's health checks find healthy.",
        &per_group(true),
    );
    family(
        "openvpc_nlb_unhealthy_host_count",
        "gauge",
        "UnHealthyHostCount: targets this node's health checks find unhealthy.",
        &per_group(false),
    );
    let lb_drops: Vec<(String, u64)> = snapshot
        .balancers
        .iter()
        .flat_map(|b| {
            NlbDrop::ALL.iter().map(move |d| {
                (
                    format!(
                        ",load_balancer=\"net/{}/{}\",reason=\"{}\"",
                        escape(&b.name),
                        b.id,
                        d.name()
                    ),
                    b.drops[*d as usize],
                )
            })
        })
        .collect();
    family(
        "openvpc_nlb_drops",
        "counter",
        "Packets the load balancer dropped, by reason.",
        &lb_drops,
    );
    family(
        "openvpc_nlb_health_probes",
        "counter",
        "Health-check probes this node started.",
        &per_lb(&|b| b.probes.iter().map(|p| p.started).sum()),
    );
    family(
        "openvpc_nlb_flow_log_skipped",
        "counter",
        "Packets the load balancer's flow logs could not count (too many flows between two harvests).",
        &per_lb(&|b| b.flow_counts_skipped),
    );
    let node_drops: Vec<(String, u64)> = NodeDrop::ALL
        .iter()
        .zip(snapshot.node_drops)
        .map(|(d, v)| (format!(",reason=\"{}\"", d.name()), v))
        .collect();
    family(
        "openvpc_hyperplane_node_drops",
        "counter",
        "Datagrams the node dropped before any gateway, by reason.",
        &node_drops,
    );
    let io = &snapshot.io;
    let n = &snapshot.node;
    for (name, help, v) in [
        ("geneve_rx", "Geneve datagrams received.", io.geneve_rx),
        ("geneve_tx", "Geneve datagrams sent.", io.geneve_tx),
        ("peer_rx", "Peer messages received.", io.peer_rx),
        ("peer_tx", "Peer messages sent.", io.peer_tx),
        (
            "send_errors",
            "Datagrams the kernel refused.",
            io.send_errors,
        ),
        (
            "ack_timeouts",
            "First packets that left without the buddy's acknowledgement.",
            io.ack_timeouts,
        ),
        ("acks", "Buddy acknowledgements received.", io.acks),
        (
            "ack_wait_microseconds_sum",
            "Time first packets waited for the buddy.",
            io.ack_wait_us_sum,
        ),
        (
            "forwarded",
            "Packets forwarded to the node owning their flow.",
            n.forwarded,
        ),
        (
            "records_sent",
            "Flow records sent to other nodes.",
            n.records_sent,
        ),
        (
            "records_received",
            "Flow records received.",
            n.records_received,
        ),
        (
            "flow_log_records",
            "Flow-log counts of the gateways' ENIs handed to the flow-log thread.",
            io.flow_log_records,
        ),
        (
            "flow_log_records_dropped",
            "Flow-log counts dropped because the flow-log thread was behind.",
            io.flow_log_records_dropped,
        ),
        ("takeovers", "Dead places' slices taken over.", n.takeovers),
        ("adopted", "Flows handed back to this node.", n.adopted),
    ] {
        family(
            &format!("openvpc_hyperplane_{name}"),
            "counter",
            help,
            &[(String::new(), v)],
        );
    }
    out
}

/// A label value with `\`, `"` and newlines escaped (the edge's
/// `/metrics` uses it too).
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `GET /metrics` on `listener` with what `render` returns, until
/// `stop`. One request per connection; anything else is a 404.
pub fn serve(
    listener: TcpListener,
    render: impl Fn() -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    serve_named("openvpc-hyperplane-metrics", listener, render, stop)
}

/// [`serve`] on a thread named `thread` (the edge node's responder is
/// this one under its own name).
pub fn serve_named(
    thread: &str,
    listener: TcpListener,
    render: impl Fn() -> String + Send + 'static,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => answer(stream, &render),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        })
}

fn answer(mut stream: TcpStream, render: &dyn Fn() -> String) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut req = [0u8; 2048];
    let mut got = 0;
    // Up to the end of the request head.
    while got < req.len() {
        match stream.read(&mut req[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        if req[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&req[..got]);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, kind, body) =
        if head.starts_with("GET ") && path.split('?').next() == Some("/metrics") {
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                render(),
            )
        } else {
            (
                "404 Not Found",
                "text/plain; charset=utf-8",
                "only GET /metrics is served here\n".to_owned(),
            )
        };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The address `/metrics` is served on for a node whose underlay is
/// `underlay_ip`: port 9108 (next to Prometheus's exporters' range).
pub fn default_addr(underlay_ip: core::net::IpAddr) -> SocketAddr {
    SocketAddr::new(underlay_ip, DEFAULT_PORT)
}

/// The default `/metrics` port.
pub const DEFAULT_PORT: u16 = 9108;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::GatewayStats;

    #[test]
    fn every_aws_metric_is_rendered_per_gateway() {
        let mut g = GatewayStats {
            gateway_id: "nat-1".into(),
            vni: 7,
            place: 0,
            nodes: 2,
            serves: vec![0],
            counters: Default::default(),
            drops: [0; NatDrop::ALL.len()],
            node_dropped: 0,
            active: 3,
            replicas: 1,
            flow_counts_skipped: 0,
        };
        g.counters.connection_attempts = 5;
        g.drops[NatDrop::ErrorPortAllocation as usize] = 2;
        g.drops[NatDrop::Malformed as usize] = 1;
        let s = Snapshot {
            gateways: vec![g],
            ..Snapshot::default()
        };
        let text = render("hp1", &s);
        for want in [
            "openvpc_nat_active_connection_count{node=\"hp1\",nat_gateway_id=\"nat-1\"} 3",
            "openvpc_nat_connection_attempt_count{node=\"hp1\",nat_gateway_id=\"nat-1\"} 5",
            "openvpc_nat_error_port_allocation{node=\"hp1\",nat_gateway_id=\"nat-1\"} 2",
            "openvpc_nat_packets_drop_count{node=\"hp1\",nat_gateway_id=\"nat-1\"} 3",
            "openvpc_nat_idle_timeout_count{node=\"hp1\",nat_gateway_id=\"nat-1\"} 0",
            "openvpc_nat_connection_established_count{",
            "openvpc_nat_bytes_out_to_destination{",
            "openvpc_nat_packets_in_from_destination{",
            "# TYPE openvpc_nat_active_connection_count gauge",
            "openvpc_nat_drops{node=\"hp1\",nat_gateway_id=\"nat-1\",reason=\"error_port_allocation\"} 2",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn every_nlb_metric_is_rendered_per_load_balancer_and_group() {
        let mut b = BalancerStats {
            id: "50dc6c495c0c9188".into(),
            name: "web".into(),
            vni: 7,
            place: 0,
            nodes: 2,
            serves: vec![0],
            counters: Default::default(),
            active: 4,
            replicas: 2,
            drops: [0; NlbDrop::ALL.len()],
            node_dropped: 0,
            groups: vec![("73e2d6bc24d8a067".into(), 2, 1)],
            probes: Vec::new(),
            flow_counts_skipped: 0,
        };
        b.counters.new_flows = 9;
        b.counters.processed_bytes = 1_000;
        b.counters.tcp_target_resets = 1;
        b.drops[NlbDrop::NoListener as usize] = 3;
        let s = Snapshot {
            balancers: vec![b],
            ..Snapshot::default()
        };
        let text = render("hp1", &s);
        let lb = "node=\"hp1\",load_balancer=\"net/web/50dc6c495c0c9188\"";
        for want in [
            format!("openvpc_nlb_active_flow_count{{{lb}}} 4"),
            format!("openvpc_nlb_new_flow_count{{{lb}}} 9"),
            format!("openvpc_nlb_processed_bytes{{{lb}}} 1000"),
            format!("openvpc_nlb_tcp_target_reset_count{{{lb}}} 1"),
            format!("openvpc_nlb_healthy_host_count{{{lb},target_group=\"73e2d6bc24d8a067\"}} 2"),
            format!("openvpc_nlb_unhealthy_host_count{{{lb},target_group=\"73e2d6bc24d8a067\"}} 1"),
            format!("openvpc_nlb_drops{{{lb},reason=\"no_listener\"}} 3"),
        ] {
            assert!(text.contains(&want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn metrics_are_served_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let t = serve(listener, || "x 1\n".to_owned(), stop.clone()).unwrap();
        let get = |path: &str| {
            let mut s = TcpStream::connect(addr).unwrap();
            write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = get("/metrics");
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("x 1\n"), "{ok}");
        assert!(get("/other").starts_with("HTTP/1.1 404"));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }
}
