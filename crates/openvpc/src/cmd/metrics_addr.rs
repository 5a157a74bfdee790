//! The `--metrics ADDRESS:PORT|off` flag the node subcommands share
//! (`openvpc edge`, `openvpc hyperplane`): where Prometheus scrapes, or
//! no responder at all.

use core::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAddr {
    Off,
    At(SocketAddr),
}

impl MetricsAddr {
    /// The address to serve on, given the node's default; `None` for `off`.
    pub fn resolve(flag: Option<MetricsAddr>, default: SocketAddr) -> Option<SocketAddr> {
        match flag {
            Some(MetricsAddr::Off) => None,
            Some(MetricsAddr::At(a)) => Some(a),
            None => Some(default),
        }
    }
}

/// clap's parser for the flag.
pub fn parse_metrics(s: &str) -> Result<MetricsAddr, String> {
    if s == "off" {
        return Ok(MetricsAddr::Off);
    }
    s.parse()
        .map(MetricsAddr::At)
        .map_err(|e| format!("{s}: {e} (give ADDRESS:PORT, or `off`)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // An address, or `off`; anything else says what to give.
    #[test]
    fn the_flag_takes_an_address_or_off() {
        assert_eq!(parse_metrics("off"), Ok(MetricsAddr::Off));
        assert_eq!(
            parse_metrics("10.254.0.2:9109"),
            Ok(MetricsAddr::At("10.254.0.2:9109".parse().unwrap()))
        );
        assert!(parse_metrics("10.254.0.2").is_err());
    }
}
