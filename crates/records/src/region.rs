//! A region's settings as stored (`settings/{region}`): what `openvpc
//! server` is told about the region at start and every server of it shares
//! through the store, and the edge nodes read through their watch: the
//! public IPv4 pool, and how internet gateways are judged.
//!
//! Outside every account and outside the prefixes moto's reset clears: the
//! settings describe the region, not anyone's resources.

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Where a region's settings are stored.
pub fn settings_key(region: &str) -> String {
    format!("{SETTINGS_PREFIX}{region}")
}

/// The prefix of every region's settings.
pub const SETTINGS_PREFIX: &str = "settings/";

/// The settings of every region no server was started for (a request may
/// name any region): written by each server at start, with the default pool
/// and the server's internet policy. No region is named `.defaults` (region
/// names have no dot).
pub const DEFAULTS_KEY: &str = "settings/.defaults";

/// The public pool of a region that was given none: the documentation
/// ranges of RFC 5737 (TEST-NET-2 and TEST-NET-3), which no real host owns.
pub fn default_public_pool() -> Vec<Ipv4Net> {
    vec![
        Ipv4Net::new(core::net::Ipv4Addr::new(198, 51, 100, 0), 24).unwrap_or_default(),
        Ipv4Net::new(core::net::Ipv4Addr::new(203, 0, 113, 0), 24).unwrap_or_default(),
    ]
}

/// How an internet gateway is judged able to forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InternetPolicy {
    /// The truth (spec 5.1): a route to an internet gateway is `active`
    /// only while the gateway is attached to the route's VPC and an edge
    /// node serves the region; an Elastic IP associates only with an
    /// address in a VPC that has an internet gateway attached.
    #[default]
    Edges,
    /// As moto models a region (`--moto-compat` only, for moto's test
    /// suite, where no edge runs): every existing internet gateway counts
    /// as forwarding, and Elastic IPs associate in any VPC.
    Assumed,
}

/// A region's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionSettings {
    /// Where Elastic IPs and auto-assigned public IPv4 addresses come from;
    /// each range's network and broadcast addresses are never handed out.
    pub public_pool: Vec<Ipv4Net>,
    #[serde(default)]
    pub internet: InternetPolicy,
}

impl Default for RegionSettings {
    fn default() -> Self {
        RegionSettings {
            public_pool: default_public_pool(),
            internet: InternetPolicy::Edges,
        }
    }
}

impl RegionSettings {
    /// Whether `ip` is an address of the pool that may be handed out.
    pub fn in_pool(&self, ip: core::net::Ipv4Addr) -> bool {
        self.public_pool.iter().any(|net| {
            net.contains(&ip)
                && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_keeps_network_and_broadcast_addresses() {
        let s = RegionSettings {
            public_pool: vec!["203.0.113.0/24".parse().unwrap()],
            internet: InternetPolicy::Edges,
        };
        assert!(s.in_pool("203.0.113.1".parse().unwrap()));
        assert!(s.in_pool("203.0.113.254".parse().unwrap()));
        assert!(!s.in_pool("203.0.113.0".parse().unwrap()));
        assert!(!s.in_pool("203.0.113.255".parse().unwrap()));
        assert!(!s.in_pool("198.51.100.7".parse().unwrap()));
    }

    #[test]
    fn settings_stored_before_the_policy_existed_read_as_the_truth() {
        let s: RegionSettings =
            serde_json::from_str(r#"{"public_pool":["203.0.113.0/24"]}"#).unwrap();
        assert_eq!(s.internet, InternetPolicy::Edges);
    }
}
