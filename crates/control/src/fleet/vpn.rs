//! Site-to-Site VPN in the fleet (issue 19, spec 10): which edge serves
//! each tunnel, how far a tunnel's last report can be believed, and the
//! routes a virtual private gateway chooses (spec 10.3), which become the
//! propagated routes of its VPC's tables (spec 2.7) and the edges' own
//! table of where the gateway's packets go.
//!
//! Pure functions over records: the fleet index and the API read the same
//! answers from the same inputs.

use core::net::{IpAddr, Ipv4Addr};
use std::cmp::Reverse;

use ipnet::Ipv4Net;
use openvpc_dataplane::maglev::stable_hash;
use openvpc_model::edge::{LearnedRoute, VpnTunnel};
use openvpc_model::node::NodeRecord;

use super::compile::v4net;
use crate::records::vpn_connection::{TunnelTelemetry, VpnConnection, VpnTelemetry};

/// Seeds the rendezvous hash that places tunnels on edges.
const SEED_TUNNEL_PLACE: u64 = 0x7670_6e2d_7475_6e31; // "vpn-tun1"

/// The edges that serve a connection's two tunnels, out of `edges` (the
/// region's live edges): the two that rank highest for the connection by
/// rendezvous hashing, so a connection stays put while its edges live and
/// an edge's death moves only its own tunnels. With one edge both tunnels
/// share it; with none, neither is served.
pub fn place<'e>(edges: &'e [NodeRecord], vpn_id: &str) -> [Option<&'e NodeRecord>; 2] {
    let mut ranked: Vec<(u64, &NodeRecord)> = edges
        .iter()
        .map(|e| {
            let key = format!("{vpn_id}/{}", e.node_id);
            (stable_hash(SEED_TUNNEL_PLACE, key.as_bytes()), e)
        })
        .collect();
    ranked.sort_by_key(|(h, e)| (Reverse(*h), e.node_id.clone()));
    let first = ranked.first().map(|(_, e)| *e);
    let second = ranked.get(1).map(|(_, e)| *e).or(first);
    [first, second]
}

/// A tunnel as the truth has it now: served by a live edge, and up only as
/// that edge last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelView {
    pub index: u8,
    pub outside_ip: Ipv4Addr,
    /// The edge serving it (ID, underlay address); `None` while no edge
    /// lives.
    pub edge: Option<(String, IpAddr)>,
    /// The serving edge has reported on it.
    pub reported: bool,
    pub ipsec_up: bool,
    pub bgp_up: bool,
    pub status_message: String,
    pub routes: Vec<LearnedRoute>,
    pub last_change_ms: Option<u64>,
}

impl TunnelView {
    /// `VgwTelemetry.Status`: UP when it carries traffic: IPsec up, and for
    /// a dynamic connection BGP too (AWS shows a BGP tunnel whose session
    /// is down as DOWN, "IPSEC IS UP").
    pub fn is_up(&self, static_routes_only: bool) -> bool {
        self.ipsec_up && (static_routes_only || self.bgp_up)
    }
}

/// The tunnels of `vpn` with what `telemetry` says of them, believed only
/// from the edge that serves each now (a report from an edge that died
/// or lost the tunnel is stale: the tunnel is down until its new edge
/// says otherwise).
pub fn tunnel_views(
    vpn: &VpnConnection,
    telemetry: Option<&VpnTelemetry>,
    edges: &[NodeRecord],
) -> Vec<TunnelView> {
    let placed = place(edges, &vpn.id);
    vpn.tunnels
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let edge = placed.get(i).copied().flatten();
            let report: Option<&TunnelTelemetry> = telemetry.and_then(|tel| {
                tel.tunnels.iter().find(|r| {
                    r.outside_ip == t.outside_ip && edge.is_some_and(|e| e.node_id == r.edge_id)
                })
            });
            TunnelView {
                index: i as u8,
                outside_ip: t.outside_ip,
                edge: edge.map(|e| (e.node_id.clone(), e.underlay_ip)),
                reported: report.is_some(),
                ipsec_up: report.is_some_and(|r| r.ipsec_up),
                bgp_up: report.is_some_and(|r| r.bgp_up),
                status_message: report.map(|r| r.status_message.clone()).unwrap_or_default(),
                routes: report.map(|r| r.routes.clone()).unwrap_or_default(),
                last_change_ms: report.map(|r| r.last_change_ms),
            }
        })
        .collect()
}

/// How a gateway knows a prefix (spec 10.3's order for equal prefixes:
/// static before BGP, then the shorter AS_PATH, then the lower MED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathSource {
    Static,
    Bgp { as_path_len: u32, med: u32 },
}

/// The path a gateway chose for a prefix: the tunnel, and the edge that
/// serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgwPath {
    pub prefix: Ipv4Net,
    pub source: PathSource,
    pub vpn_connection_id: String,
    pub outside_ip: Ipv4Addr,
    pub edge_underlay: IpAddr,
}

/// spec 10.3: the routes of a gateway over its live connections, each
/// with the tunnels' views: per prefix one path, on one tunnel (a gateway
/// has one primary egress, no ECMP). Only tunnels that are up carry
/// routes: a connection's static routes while it has an IPsec SA up, its
/// BGP routes while their session is established. Sorted by prefix.
pub fn vgw_paths(connections: &[(&VpnConnection, Vec<TunnelView>)]) -> Vec<VgwPath> {
    let mut candidates: Vec<(Ipv4Net, PathSource, &str, u8, Ipv4Addr, IpAddr)> = Vec::new();
    for (vpn, views) in connections {
        if !vpn.is_live() {
            continue;
        }
        for v in views {
            let Some((_, underlay)) = &v.edge else {
                continue;
            };
            let mut add = |prefix: Ipv4Net, source| {
                candidates.push((
                    prefix.trunc(),
                    source,
                    vpn.id.as_str(),
                    v.index,
                    v.outside_ip,
                    *underlay,
                ));
            };
            if v.ipsec_up {
                for r in &vpn.routes {
                    add(v4net(r.destination), PathSource::Static);
                }
            }
            if v.ipsec_up && v.bgp_up && !vpn.static_routes_only {
                for r in &v.routes {
                    add(
                        r.prefix,
                        PathSource::Bgp {
                            as_path_len: r.as_path_len,
                            med: r.med,
                        },
                    );
                }
            }
        }
    }
    // The best first per prefix; ties go to the lower connection ID, then
    // its first tunnel, so every server and edge picks the same one.
    candidates.sort_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
    candidates.dedup_by_key(|c| c.0);
    candidates
        .into_iter()
        .map(
            |(prefix, source, vpn, _, outside_ip, edge_underlay)| VgwPath {
                prefix,
                source,
                vpn_connection_id: vpn.to_owned(),
                outside_ip,
                edge_underlay,
            },
        )
        .collect()
}

/// spec 2.7: the most BGP routes a route table takes by propagation (not
/// adjustable); static VPN routes do not count.
pub const MAX_PROPAGATED_BGP: usize = 100;

/// The paths a route table takes by propagation from `paths`: every static
/// one, and the first [`MAX_PROPAGATED_BGP`] learned over BGP (by prefix).
pub fn propagated_into_table(paths: Vec<VgwPath>) -> impl Iterator<Item = VgwPath> {
    let mut bgp = 0;
    paths.into_iter().filter(move |p| match p.source {
        PathSource::Static => true,
        PathSource::Bgp { .. } => {
            bgp += 1;
            bgp <= MAX_PROPAGATED_BGP
        }
    })
}

/// What the edges are told of one connection: its tunnels, each with the
/// edge that serves it; none while no edge lives. `vpc` is the gateway's
/// attached VPC (VNI and CIDRs), if any.
pub fn edge_tunnels(
    vpn: &VpnConnection,
    edges: &[NodeRecord],
    vpc: Option<(u32, Vec<Ipv4Net>)>,
) -> Vec<VpnTunnel> {
    let Some(vgw) = vpn.vpn_gateway_id.as_deref() else {
        // A transit gateway's connection: nothing here serves those.
        return Vec::new();
    };
    let Some(customer_ip) = vpn
        .customer_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let any = Ipv4Net::default();
    let placed = place(edges, &vpn.id);
    vpn.tunnels
        .iter()
        .zip(placed)
        .enumerate()
        .filter_map(|(i, (t, edge))| {
            let edge = edge?;
            Some(VpnTunnel {
                vpn_connection_id: vpn.id.clone(),
                vpn_gateway_id: vgw.to_owned(),
                index: i as u8,
                outside_ip: t.outside_ip,
                customer_ip,
                inside_cidr: v4net(t.inside_cidr),
                pre_shared_key: t.pre_shared_key.clone(),
                amazon_asn: u32::try_from(vpn.amazon_asn).unwrap_or(0),
                customer_asn: u32::try_from(vpn.customer_asn).unwrap_or(0),
                static_routes_only: vpn.static_routes_only,
                static_routes: vpn.routes.iter().map(|r| v4net(r.destination)).collect(),
                local_network: vpn.local_ipv4_network_cidr.map_or(any, v4net),
                remote_network: vpn.remote_ipv4_network_cidr.map_or(any, v4net),
                vni: vpc.as_ref().map(|(vni, _)| *vni),
                vpc_cidrs: vpc.as_ref().map(|(_, c)| c.clone()).unwrap_or_default(),
                edge_id: edge.node_id.clone(),
                edge_underlay: edge.underlay_ip,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::vpn_connection::{Tunnel, VpnRoute};
    use openvpc_model::Ipv4Cidr;
    use openvpc_model::lifecycle::VpnConnectionState;

    fn edge(id: &str, ip: &str) -> NodeRecord {
        NodeRecord {
            node_id: id.into(),
            region: "r".into(),
            underlay_ip: ip.parse().unwrap(),
            registered_at: 0,
            expires_at_ms: u64::MAX,
            serving: vec![],
            target_health: vec![],
        }
    }

    fn vpn(id: &str, static_only: bool, routes: &[&str]) -> VpnConnection {
        VpnConnection {
            id: id.into(),
            state: VpnConnectionState::Available,
            connection_type: "ipsec.1".into(),
            customer_gateway_id: "cgw-1".into(),
            vpn_gateway_id: Some("vgw-1".into()),
            transit_gateway_id: None,
            static_routes_only: static_only,
            tunnels: vec![
                Tunnel {
                    outside_ip: "203.0.113.5".parse().unwrap(),
                    inside_cidr: "169.254.10.0/30".parse::<Ipv4Cidr>().unwrap(),
                    pre_shared_key: "key_one_1".into(),
                },
                Tunnel {
                    outside_ip: "203.0.113.6".parse().unwrap(),
                    inside_cidr: "169.254.11.0/30".parse::<Ipv4Cidr>().unwrap(),
                    pre_shared_key: "key_two_2".into(),
                },
            ],
            routes: routes
                .iter()
                .map(|r| VpnRoute {
                    destination: r.parse().unwrap(),
                })
                .collect(),
            customer_ip: Some("198.51.100.20".into()),
            customer_asn: 65000,
            amazon_asn: 64512,
            created: String::new(),
            deleted_at: None,
            local_ipv4_network_cidr: None,
            remote_ipv4_network_cidr: None,
            tags: Default::default(),
            telemetry: Vec::new(),
        }
    }

    fn view(index: u8, ip: &str, up: bool, bgp: bool, routes: &[(&str, u32, u32)]) -> TunnelView {
        TunnelView {
            index,
            outside_ip: ip.parse().unwrap(),
            edge: Some((
                format!("e{index}"),
                format!("10.254.0.{}", 2 + index).parse().unwrap(),
            )),
            reported: true,
            ipsec_up: up,
            bgp_up: bgp,
            status_message: String::new(),
            routes: routes
                .iter()
                .map(|(p, l, m)| LearnedRoute {
                    prefix: p.parse().unwrap(),
                    as_path_len: *l,
                    med: *m,
                })
                .collect(),
            last_change_ms: Some(1),
        }
    }

    // Two edges or more: the tunnels land on two different ones, and the
    // placement of a connection does not move when an unrelated edge
    // joins unless the newcomer outranks its edges.
    #[test]
    fn tunnels_spread_over_two_edges_and_stay_put() {
        let edges = vec![edge("a", "10.0.0.1"), edge("b", "10.0.0.2")];
        let [t0, t1] = place(&edges, "vpn-1");
        assert_ne!(t0.unwrap().node_id, t1.unwrap().node_id);
        let one = vec![edge("a", "10.0.0.1")];
        let [t0, t1] = place(&one, "vpn-1");
        assert_eq!(t0.unwrap().node_id, "a");
        assert_eq!(t1.unwrap().node_id, "a");
        assert_eq!(place(&[], "vpn-1"), [None, None]);
        let mut many: Vec<NodeRecord> = (0..8)
            .map(|i| edge(&format!("e{i}"), &format!("10.0.0.{}", i + 1)))
            .collect();
        let before: Vec<String> = place(&many, "vpn-9")
            .iter()
            .map(|e| e.unwrap().node_id.clone())
            .collect();
        // Removing an edge that serves neither tunnel moves nothing.
        let unrelated = many
            .iter()
            .position(|e| !before.contains(&e.node_id))
            .unwrap();
        many.remove(unrelated);
        let after: Vec<String> = place(&many, "vpn-9")
            .iter()
            .map(|e| e.unwrap().node_id.clone())
            .collect();
        assert_eq!(before, after);
    }

    // A report counts only from the edge that serves the tunnel now.
    #[test]
    fn a_report_from_another_edge_is_stale() {
        let edges = vec![edge("a", "10.0.0.1"), edge("b", "10.0.0.2")];
        let v = vpn("vpn-1", true, &["172.16.0.0/16"]);
        let [t0, _] = place(&edges, &v.id);
        let owner = t0.unwrap().node_id.clone();
        let other = if owner == "a" { "b" } else { "a" };
        let report = |edge_id: &str| VpnTelemetry {
            id: v.id.clone(),
            tunnels: vec![TunnelTelemetry {
                outside_ip: v.tunnels[0].outside_ip,
                edge_id: edge_id.into(),
                ipsec_up: true,
                bgp_up: false,
                status_message: String::new(),
                routes: vec![],
                last_change_ms: 5,
            }],
        };
        let views = tunnel_views(&v, Some(&report(&owner)), &edges);
        assert!(views[0].ipsec_up && views[0].is_up(true));
        assert!(!views[1].reported && !views[1].ipsec_up);
        let views = tunnel_views(&v, Some(&report(other)), &edges);
        assert!(!views[0].ipsec_up);
    }

    // spec 10.3: longest prefix is the tables' business; for one prefix,
    // static beats BGP, then the shorter AS_PATH, then the lower MED; one
    // tunnel carries each prefix.
    #[test]
    fn paths_follow_spec_10_3() {
        let dynamic = vpn("vpn-b", false, &[]);
        let statik = vpn("vpn-a", true, &["172.16.0.0/16"]);
        let paths = vgw_paths(&[
            (
                &dynamic,
                vec![
                    view(
                        0,
                        "203.0.113.5",
                        true,
                        true,
                        &[("172.16.0.0/16", 1, 0), ("10.9.0.0/16", 2, 50)],
                    ),
                    view(
                        1,
                        "203.0.113.6",
                        true,
                        true,
                        &[("10.9.0.0/16", 2, 10), ("10.8.0.0/16", 1, 0)],
                    ),
                ],
            ),
            (
                &statik,
                vec![
                    view(0, "203.0.113.7", true, false, &[]),
                    view(1, "203.0.113.8", false, false, &[]),
                ],
            ),
        ]);
        let by = |p: &str| {
            paths
                .iter()
                .find(|x| x.prefix == p.parse::<Ipv4Net>().unwrap())
                .unwrap()
        };
        assert_eq!(paths.len(), 3);
        // The static route of vpn-a beats the BGP one of vpn-b.
        assert_eq!(by("172.16.0.0/16").vpn_connection_id, "vpn-a");
        assert_eq!(
            by("172.16.0.0/16").outside_ip,
            "203.0.113.7".parse::<Ipv4Addr>().unwrap()
        );
        // Equal AS_PATH: the lower MED's tunnel.
        assert_eq!(
            by("10.9.0.0/16").outside_ip,
            "203.0.113.6".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(
            by("10.8.0.0/16").source,
            PathSource::Bgp {
                as_path_len: 1,
                med: 0
            }
        );
    }

    // Routes leave with their tunnel: a session that drops takes its BGP
    // routes, a dead SA the static ones; a BGP tunnel without its session
    // carries no learned routes even with IPsec up.
    #[test]
    fn routes_leave_with_their_tunnel() {
        let dynamic = vpn("vpn-b", false, &[]);
        let paths = vgw_paths(&[(
            &dynamic,
            vec![view(
                0,
                "203.0.113.5",
                true,
                false,
                &[("172.16.0.0/16", 1, 0)],
            )],
        )]);
        assert!(paths.is_empty());
        let statik = vpn("vpn-a", true, &["172.16.0.0/16"]);
        let paths = vgw_paths(&[(&statik, vec![view(0, "203.0.113.5", false, false, &[])])]);
        assert!(paths.is_empty());
        let paths = vgw_paths(&[(&statik, vec![view(0, "203.0.113.5", true, false, &[])])]);
        assert_eq!(paths.len(), 1);
    }

    // spec 2.7: a table takes at most 100 BGP routes by propagation;
    // static ones are not counted.
    #[test]
    fn a_table_takes_at_most_100_bgp_routes() {
        let dynamic = vpn("vpn-b", false, &[]);
        let statik = vpn("vpn-a", true, &["192.168.0.0/16"]);
        let learned: Vec<(String, u32, u32)> = (0..120)
            .map(|i| (format!("10.{}.{}.0/24", 100 + i / 200, i % 200), 1, 0))
            .collect();
        let learned: Vec<(&str, u32, u32)> = learned
            .iter()
            .map(|(p, l, m)| (p.as_str(), *l, *m))
            .collect();
        let paths = vgw_paths(&[
            (&dynamic, vec![view(0, "203.0.113.5", true, true, &learned)]),
            (&statik, vec![view(0, "203.0.113.7", true, false, &[])]),
        ]);
        assert_eq!(paths.len(), 121);
        let taken: Vec<VgwPath> = propagated_into_table(paths).collect();
        assert_eq!(taken.len(), 101);
        assert!(taken.iter().any(|p| p.source == PathSource::Static));
    }

    // The edges get each tunnel with its serving edge, the VPC's VNI and
    // CIDRs, and the selectors' defaults.
    #[test]
    fn edges_are_told_each_tunnel_and_its_edge() {
        let edges = vec![edge("a", "10.0.0.1"), edge("b", "10.0.0.2")];
        let v = vpn("vpn-1", false, &[]);
        let tunnels = edge_tunnels(&v, &edges, Some((77, vec!["10.0.0.0/16".parse().unwrap()])));
        assert_eq!(tunnels.len(), 2);
        assert_ne!(tunnels[0].edge_id, tunnels[1].edge_id);
        assert_eq!(tunnels[0].vni, Some(77));
        assert_eq!(
            tunnels[1].inside_cidr,
            "169.254.11.0/30".parse::<Ipv4Net>().unwrap()
        );
        assert_eq!(tunnels[0].local_network, Ipv4Net::default());
        assert_eq!(
            tunnels[0].customer_ip,
            "198.51.100.20".parse::<Ipv4Addr>().unwrap()
        );
        assert!(edge_tunnels(&v, &[], None).is_empty());
    }
}
