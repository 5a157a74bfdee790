//! A subnet's route table: longest-prefix match over IPv4 and IPv6 (spec
//! 2.4), built off the fast path and swapped in whole; and which node of a
//! gateway carries a flow ([`GatewayNodes`]), with the MAC that names a NAT
//! gateway to its node ([`gateway_mac`]).

use core::fmt;
use core::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use openvpc_packet::MacAddr;
use prefix_trie::PrefixMap;

use crate::maglev::{HOST_TABLE_SIZE, Maglev, MaglevError, stable_hash};

/// The kinds of gateway a route can point at (spec 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayKind {
    Internet,
    EgressOnlyInternet,
    Nat,
    /// A network load balancer's front address: a host route (`/32`) the
    /// control plane adds for each of its addresses, served by its shard's
    /// hyperplane nodes.
    LoadBalancer,
    VpnGateway,
    TransitGateway,
    VpcEndpoint,
}

impl GatewayKind {
    /// Whether the gateway's nodes keep per-flow state (a NAT gateway's
    /// translations, a load balancer's target choices): its nodes are
    /// picked per place by Maglev, and its frames carry its own MAC.
    pub fn keeps_flows(self) -> bool {
        matches!(self, GatewayKind::Nat | GatewayKind::LoadBalancer)
    }

    /// Whether frames to the gateway carry its own MAC ([`gateway_mac`]):
    /// those whose nodes serve several gateways of one VPC, or serve it
    /// beside an internet gateway (an edge is both).
    pub fn named_by_mac(self) -> bool {
        self.keeps_flows() || self == GatewayKind::VpnGateway
    }
}

/// Where a route sends packets, resolved as far as the control plane can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Inside the VPC: the mapping service names the host.
    Local,
    /// A gateway served by other nodes (edge, hyperplane, VPN edge), reached
    /// over the underlay with the VPC's VNI. `nodes` is never empty (a
    /// gateway no node serves is [`RouteTarget::Unserved`]); each flow goes
    /// to the node its hash picks ([`RouteTarget::node_for`]). Build it with
    /// [`RouteTarget::gateway`].
    Gateway {
        kind: GatewayKind,
        id: String,
        nodes: GatewayNodes,
    },
    /// A peered VPC: packets continue in the peer's VNI (spec 7).
    Peering { id: String, peer_vni: u32 },
    /// A network interface (an appliance such as a NAT instance or firewall).
    Eni {
        id: String,
        underlay: IpAddr,
        mac: MacAddr,
    },
    /// The target is gone (spec 2.5).
    Blackhole,
    /// The target exists but nothing here forwards for it yet: a gateway
    /// no node (edge, hyperplane, VPN) serves, or an ENI that runs on no
    /// host. Dropped, and named as such, so a trace can say so.
    Unserved { id: String },
}

impl RouteTarget {
    /// A gateway target over `nodes` (their underlay addresses), with the
    /// pick its kind uses built now, off the fast path: see [`GatewayNodes`].
    pub fn gateway(
        kind: GatewayKind,
        id: impl Into<String>,
        nodes: Vec<IpAddr>,
    ) -> Result<RouteTarget, MaglevError> {
        Ok(RouteTarget::Gateway {
            kind,
            id: id.into(),
            nodes: GatewayNodes::new(kind, nodes)?,
        })
    }

    /// The node of a gateway that carries the flow of `hash`: every packet of
    /// a flow meets the same node, and the flows spread over all of them.
    /// `None` for targets that are not served gateways.
    #[inline]
    pub fn node_for(&self, hash: u32) -> Option<IpAddr> {
        match self {
            RouteTarget::Gateway { nodes, .. } => nodes.pick(hash),
            _ => None,
        }
    }
}

/// The nodes that serve a gateway, and how a flow picks one.
///
/// A NAT gateway's node holds the flow's translation (and its buddy the
/// replica), so its flows must stay put when the shard changes. The list is
/// per place of the gateway's shard: each place's node, or for a dead one
/// its buddy (the next live place, which holds its flows' replicas and
/// serves its port slice). A flow picks its place by Maglev over the places
/// ([`crate::maglev`]; a table of [`HOST_TABLE_SIZE`] slots built here, once
/// per compiled route table, shared behind an `Arc` by every clone of the
/// table). A node's death or replacement changes one place's address: only
/// that place's flows move, to the node that has their state; the places,
/// and so every other flow's pick, stay.
///
/// Other gateways (the edge's internet gateways) keep no per-flow state on
/// their nodes, so a multiply-shift over the list is enough.
#[derive(Clone)]
pub struct GatewayNodes {
    addrs: Vec<IpAddr>,
    /// Set for NAT gateways with at least one node; `Maglev::lookup` is an
    /// index into `addrs`.
    maglev: Option<Arc<Maglev>>,
}

impl GatewayNodes {
    /// The pick for a gateway of `kind` over `addrs` (for a NAT gateway:
    /// per place, so an address may repeat). It fails only with more places
    /// than [`HOST_TABLE_SIZE`], far beyond any shard.
    pub fn new(kind: GatewayKind, addrs: Vec<IpAddr>) -> Result<GatewayNodes, MaglevError> {
        let maglev = if kind.keeps_flows() && !addrs.is_empty() {
            let names: Vec<String> = (0..addrs.len()).map(|i| format!("place-{i}")).collect();
            Some(Arc::new(Maglev::new(&names, HOST_TABLE_SIZE)?))
        } else {
            None
        };
        Ok(GatewayNodes { addrs, maglev })
    }

    /// The underlay addresses of the nodes.
    pub fn addrs(&self) -> &[IpAddr] {
        &self.addrs
    }

    /// Whether the pick is Maglev's (a NAT gateway's).
    pub fn is_maglev(&self) -> bool {
        self.maglev.is_some()
    }

    /// The node serving place `place` of the shard (a Maglev pick's list is
    /// per place): where a flow that place owns goes back to.
    pub fn at_place(&self, place: usize) -> Option<IpAddr> {
        self.addrs.get(place).copied()
    }

    /// The node that carries the flow of `hash`; `None` with no nodes.
    #[inline]
    pub fn pick(&self, hash: u32) -> Option<IpAddr> {
        match &self.maglev {
            Some(table) => self.addrs.get(table.lookup(u64::from(hash))).copied(),
            None => {
                // Multiply-shift instead of `%`: no division, and it uses the
                // hash's high bits, which a weak low byte cannot skew.
                let pick = (u64::from(hash) * self.addrs.len() as u64) >> 32;
                self.addrs.get(pick as usize).copied()
            }
        }
    }
}

// The table is a function of the node list (and of whether there is one),
// so comparing those compares the picks without walking 4,093 slots.
impl PartialEq for GatewayNodes {
    fn eq(&self, other: &Self) -> bool {
        self.addrs == other.addrs && self.maglev.is_some() == other.maglev.is_some()
    }
}

impl Eq for GatewayNodes {}

// Not the table: a route target in a log line or a failed assertion should
// name its nodes, not print thousands of slots.
impl fmt::Debug for GatewayNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pick = match &self.maglev {
            Some(table) => format!("maglev({} slots)", table.table().len()),
            None => "multiply-shift".to_owned(),
        };
        f.debug_struct("GatewayNodes")
            .field("addrs", &self.addrs)
            .field("pick", &pick)
            .finish()
    }
}

const SEED_GATEWAY_MAC: u64 = 0x6777_2d6d_6163_0001; // "gw-mac" + 1

/// The MAC that names gateway `gateway_id` to the node that serves it: a
/// host puts it as the inner destination MAC of the frames it encapsulates
/// to a NAT gateway's node, so a node that serves several NAT gateways of
/// one VPC (one VNI) can tell which one a frame is for. Locally administered
/// unicast (`02:…`), the rest from a fixed-seed hash of the ID, so the
/// control plane, the hosts and the nodes derive it alike.
pub fn gateway_mac(gateway_id: &str) -> MacAddr {
    let h = stable_hash(SEED_GATEWAY_MAC, gateway_id.as_bytes()).to_be_bytes();
    MacAddr([0x02, h[0], h[1], h[2], h[3], h[4]])
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: IpNet,
    pub target: RouteTarget,
}

/// A compiled route table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub id: String,
    v4: PrefixMap<Ipv4Net, RouteTarget>,
    v6: PrefixMap<Ipv6Net, RouteTarget>,
}

impl RouteTable {
    /// Builds the table; of two routes to the same destination the later wins
    /// (the control plane resolves precedence before it sends routes).
    pub fn new(id: impl Into<String>, routes: impl IntoIterator<Item = Route>) -> Self {
        let mut table = RouteTable {
            id: id.into(),
            ..RouteTable::default()
        };
        for r in routes {
            match r.destination {
                IpNet::V4(n) => {
                    table.v4.insert(n.trunc(), r.target);
                }
                IpNet::V6(n) => {
                    table.v6.insert(n.trunc(), r.target);
                }
            }
        }
        table
    }

    /// The most specific route covering `dst`, with its destination.
    pub fn lookup(&self, dst: IpAddr) -> Option<(IpNet, &RouteTarget)> {
        match dst {
            IpAddr::V4(a) => self
                .v4
                .get_lpm(&Ipv4Net::from(a))
                .map(|(n, t)| (IpNet::V4(n), t)),
            IpAddr::V6(a) => self
                .v6
                .get_lpm(&Ipv6Net::from(a))
                .map(|(n, t)| (IpNet::V6(n), t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(dst: &str, target: RouteTarget) -> Route {
        Route {
            destination: dst.parse().unwrap(),
            target,
        }
    }

    fn igw() -> RouteTarget {
        RouteTarget::gateway(
            GatewayKind::Internet,
            "igw-1",
            vec!["192.0.2.250".parse().unwrap()],
        )
        .unwrap()
    }

    fn underlays(n: u8) -> Vec<IpAddr> {
        (1..=n)
            .map(|i| IpAddr::V4(core::net::Ipv4Addr::new(10, 254, 0, i)))
            .collect()
    }

    fn nat(nodes: Vec<IpAddr>) -> RouteTarget {
        RouteTarget::gateway(GatewayKind::Nat, "nat-0123456789abcdef0", nodes).unwrap()
    }

    /// Well-spread flow hashes, as `layer::gateway_hash` gives.
    fn flow_hashes(n: u64) -> impl Iterator<Item = u32> {
        (0..n).map(|i| (crate::maglev::mix(i) >> 32) as u32)
    }

    // Issue 15: each flow meets one edge node, and the flows spread over
    // all of them.
    #[test]
    fn a_gateway_node_is_picked_per_flow_and_all_are_used() {
        let nodes: Vec<IpAddr> = (1..=3)
            .map(|i| IpAddr::V4(core::net::Ipv4Addr::new(10, 254, 0, i)))
            .collect();
        let t = RouteTarget::gateway(GatewayKind::Internet, "igw-1", nodes.clone()).unwrap();
        let mut used = [0u32; 3];
        for h in 0..3000u32 {
            let hash = h.wrapping_mul(0x9e37_79b9);
            let node = t.node_for(hash).unwrap();
            assert_eq!(t.node_for(hash), Some(node), "the same flow, the same node");
            used[nodes.iter().position(|n| *n == node).unwrap()] += 1;
        }
        assert!(used.iter().all(|n| *n > 800), "{used:?}");
        assert_eq!(RouteTarget::Blackhole.node_for(7), None);
    }

    // Issue 16: a NAT gateway's flow meets the same node for every packet,
    // and the flows spread over all the places of the shard.
    #[test]
    fn a_nat_gateway_node_is_picked_by_maglev_and_all_are_used() {
        let nodes = underlays(4);
        let t = nat(nodes.clone());
        let mut used = [0u32; 4];
        for hash in flow_hashes(40_000) {
            let node = t.node_for(hash).unwrap();
            assert_eq!(t.node_for(hash), Some(node), "the same flow, the same node");
            used[nodes.iter().position(|n| *n == node).unwrap()] += 1;
        }
        // 10,000 each: Maglev's shares are within 0.2 % of 1/n, the sample
        // adds about 1 %.
        assert!(used.iter().all(|n| (9_500..10_500).contains(n)), "{used:?}");
    }

    // Issue 16: a change in the node set moves only the flows of the node
    // that changed. A node dies: its place is served by its buddy (the
    // control plane sends the buddy's address in its place), so exactly the
    // flows of that place move, to the buddy that holds their state, and no
    // other flow moves. A replacement takes the place back the same way.
    #[test]
    fn a_dead_node_moves_only_its_flows_and_only_to_its_buddy() {
        const FLOWS: u64 = 60_000;
        for n in [2u8, 3, 4, 8] {
            let nodes = underlays(n);
            let before = nat(nodes.clone());
            for (place, gone) in nodes.iter().enumerate() {
                let buddy = nodes[(place + 1) % nodes.len()];
                let mut served = nodes.clone();
                served[place] = buddy;
                let after = nat(served);
                let mut moved = 0u64;
                for hash in flow_hashes(FLOWS) {
                    let (was, now) = (before.node_for(hash), after.node_for(hash));
                    if was == Some(*gone) {
                        assert_eq!(
                            now,
                            Some(buddy),
                            "n={n}: a dead node's flow goes to its buddy"
                        );
                        moved += 1;
                    } else {
                        assert_eq!(now, was, "n={n}: a survivor's flow stays");
                    }
                }
                let share = moved as f64 / FLOWS as f64;
                let ideal = 1.0 / f64::from(n);
                assert!(
                    (share - ideal).abs() < 0.02,
                    "n={n}, place {place} dead: {share:.4} moved, ideal {ideal:.4}"
                );
                // A new node takes the place: only that place's flows move.
                let mut replaced = nodes.clone();
                replaced[place] = IpAddr::V4(core::net::Ipv4Addr::new(10, 254, 1, 1));
                let back = nat(replaced);
                for hash in flow_hashes(5_000) {
                    if before.node_for(hash) != Some(*gone) {
                        assert_eq!(back.node_for(hash), before.node_for(hash));
                    }
                }
            }
        }
    }

    // The table is built once and shared: cloning a route table copies a
    // pointer, and equality and Debug go by the node list.
    #[test]
    fn a_nat_table_is_shared_and_compared_by_its_nodes() {
        let t = nat(underlays(3));
        let (RouteTarget::Gateway { nodes: a, .. }, RouteTarget::Gateway { nodes: b, .. }) =
            (&t, &t.clone())
        else {
            panic!("a gateway");
        };
        assert!(Arc::ptr_eq(
            a.maglev.as_ref().unwrap(),
            b.maglev.as_ref().unwrap()
        ));
        assert!(a.is_maglev() && a.addrs() == underlays(3));
        assert_eq!(t, nat(underlays(3)));
        assert_ne!(t, nat(underlays(2)));
        let shown = format!("{t:?}");
        assert!(
            shown.contains("maglev(4093 slots)") && shown.len() < 400,
            "{shown}"
        );
        // The same addresses behind an internet gateway: another pick.
        let igw = GatewayNodes::new(GatewayKind::Internet, underlays(3)).unwrap();
        assert!(!igw.is_maglev());
        assert_ne!(&igw, a);
        assert_eq!(RouteTarget::Blackhole.node_for(7), None);
        assert_eq!(nat(vec![]).node_for(7), None);
    }

    // Issue 16: a NAT gateway's MAC names it to its node: stable, distinct
    // per gateway, locally administered unicast.
    #[test]
    fn gateway_mac_is_stable_distinct_and_local_unicast() {
        let a = gateway_mac("nat-0123456789abcdef0");
        assert_eq!(a, gateway_mac("nat-0123456789abcdef0"));
        // Pinned: hosts and nodes of different builds must agree.
        assert_eq!(a, MacAddr([0x02, 0x2e, 0xa0, 0x6c, 0xa8, 0xc4]));
        let ids: Vec<String> = (0..2000).map(|i| format!("nat-{i:017x}")).collect();
        let macs: std::collections::HashSet<MacAddr> =
            ids.iter().map(|id| gateway_mac(id)).collect();
        assert_eq!(macs.len(), ids.len(), "different gateways, different MACs");
        for m in macs.iter().chain([&a]) {
            assert_eq!(m.0[0], 0x02, "{m}: locally administered, unicast");
        }
    }

    // spec 2.4: longest prefix match, families separate.
    #[test]
    fn most_specific_route_wins() {
        let t = RouteTable::new(
            "rtb-1",
            [
                route("10.0.0.0/16", RouteTarget::Local),
                route("0.0.0.0/0", igw()),
                route("10.0.5.0/24", RouteTarget::Blackhole),
                route("::/0", RouteTarget::Blackhole),
            ],
        );
        let hit = |s: &str| {
            t.lookup(s.parse().unwrap())
                .map(|(n, t)| (n.to_string(), t.clone()))
        };
        assert_eq!(
            hit("10.0.1.1"),
            Some(("10.0.0.0/16".into(), RouteTarget::Local))
        );
        assert_eq!(
            hit("10.0.5.9"),
            Some(("10.0.5.0/24".into(), RouteTarget::Blackhole))
        );
        assert_eq!(hit("8.8.8.8").map(|h| h.1), Some(igw()));
        assert_eq!(hit("2600::1").map(|h| h.1), Some(RouteTarget::Blackhole));
        let no_default = RouteTable::new("rtb-2", [route("10.0.0.0/16", RouteTarget::Local)]);
        assert!(no_default.lookup("8.8.8.8".parse().unwrap()).is_none());
    }

    proptest! {
        /// The trie agrees with a naive scan for the longest covering prefix.
        #[test]
        fn lpm_equals_naive_reference(
            prefixes in prop::collection::vec((any::<u32>(), 0u8..=32), 0..60),
            probes in prop::collection::vec(any::<u32>(), 1..40),
        ) {
            let routes: Vec<Route> = prefixes.iter().enumerate().map(|(i, (a, len))| Route {
                destination: IpNet::V4(Ipv4Net::new((*a).into(), *len).unwrap().trunc()),
                target: RouteTarget::Peering { id: format!("pcx-{i}"), peer_vni: i as u32 },
            }).collect();
            let table = RouteTable::new("rtb", routes.clone());
            for p in probes {
                let addr = IpAddr::V4(p.into());
                // Naive: the longest covering prefix; among equal ones, the last inserted.
                let naive = routes.iter().enumerate()
                    .filter(|(_, r)| r.destination.contains(&addr))
                    .max_by_key(|(i, r)| (r.destination.prefix_len(), *i))
                    .map(|(_, r)| (r.destination, r.target.clone()));
                let got = table.lookup(addr).map(|(n, t)| (n, t.clone()));
                prop_assert_eq!(got, naive);
            }
        }
    }
}
