//! A subnet's route table: longest-prefix match over IPv4 and IPv6 (spec
//! 2.4), built off the fast path and swapped in whole.

use core::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use openvpc_packet::MacAddr;
use prefix_trie::PrefixMap;

/// The kinds of gateway a route can point at (spec 2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayKind {
    Internet,
    EgressOnlyInternet,
    Nat,
    VpnGateway,
    TransitGateway,
    VpcEndpoint,
}

/// Where a route sends packets, resolved as far as the control plane can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Inside the VPC: the mapping service names the host.
    Local,
    /// A gateway served by other nodes (edge, hyperplane, VPN edge), reached
    /// over the underlay with the VPC's VNI. `nodes` is never empty (a
    /// gateway no node serves is [`RouteTarget::Unserved`]); each flow goes
    /// to the node its hash picks ([`RouteTarget::node_for`]).
    Gateway {
        kind: GatewayKind,
        id: String,
        nodes: Vec<IpAddr>,
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
    /// The node of a gateway that carries the flow of `hash`: every packet of
    /// a flow meets the same node, and the flows spread over all of them.
    /// `None` for targets that are not served gateways.
    pub fn node_for(&self, hash: u32) -> Option<IpAddr> {
        match self {
            RouteTarget::Gateway { nodes, .. } if !nodes.is_empty() => {
                // Multiply-shift instead of `%`: no division, and it uses the
                // hash's high bits, which a weak low byte cannot skew.
                let pick = (u64::from(hash) * nodes.len() as u64) >> 32;
                nodes.get(pick as usize).copied()
            }
            _ => None,
        }
    }
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
        RouteTarget::Gateway {
            kind: GatewayKind::Internet,
            id: "igw-1".into(),
            nodes: vec!["192.0.2.250".parse().unwrap()],
        }
    }

    // Issue 15: each flow meets one edge node, and the flows spread over
    // all of them.
    #[test]
    fn a_gateway_node_is_picked_per_flow_and_all_are_used() {
        let nodes: Vec<IpAddr> = (1..=3)
            .map(|i| IpAddr::V4(core::net::Ipv4Addr::new(10, 254, 0, i)))
            .collect();
        let t = RouteTarget::Gateway {
            kind: GatewayKind::Internet,
            id: "igw-1".into(),
            nodes: nodes.clone(),
        };
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
