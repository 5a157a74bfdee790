//! The edge node's announcement of the region's public pool to the
//! upstream router over BGP (`openvpc-bgp`'s speaker), so the router sends
//! public traffic to every live edge and withdraws a dead edge's path.
//!
//! The TCP connection is made inside the node's namespace, from a thread
//! that enters it. The next hop announced is our address of the session
//! (what the router reaches us at): probed with a route lookup before the
//! first connection, and taken from each connection's local address after.
//! Nothing is announced before the node has the region's table, so the
//! router never sends it traffic it cannot translate.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::io;
use std::net::{TcpStream, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::Ipv4Net;
use openvpc_agent::netns;
use openvpc_bgp::speaker::BGP_PORT;
use openvpc_bgp::{Config, ExportAttrs, Ipv4Prefix, Speaker, SpeakerConfig, State};

/// The hold time proposed unless configured: the shortest RFC 4271
/// allows, so a silent edge's path is withdrawn within 3 s.
pub const DEFAULT_HOLD_TIME: u16 = 3;

/// One BGP peer to announce the pool to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BgpConfig {
    /// The router's address (port 179).
    pub peer: Ipv4Addr,
    pub peer_as: u32,
    pub local_as: u32,
    /// Seconds: 0 or at least 3.
    pub hold_time: u16,
}

/// Why the announcer could not start.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    #[error(
        "no BGP router ID: the peer {peer} is not reachable from the edge's namespace ({source}) and the underlay address is not IPv4"
    )]
    RouterId {
        peer: Ipv4Addr,
        #[source]
        source: io::Error,
    },
    #[error("BGP speaker: {0}")]
    Spawn(#[from] openvpc_bgp::speaker::SpawnError),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The address the kernel of `netns` would send to `peer` from.
fn probe_local(netns: Option<&str>, peer: Ipv4Addr) -> io::Result<Ipv4Addr> {
    let local = netns::in_netns(netns, || {
        Ok((|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.connect((peer, BGP_PORT))?;
            s.local_addr()
        })())
    })
    .map_err(io::Error::other)??;
    match local.ip() {
        IpAddr::V4(a) => Ok(a),
        IpAddr::V6(_) => Err(io::Error::other("the route to the peer is not IPv4")),
    }
}

/// What we last asked the speaker to announce.
#[derive(Debug, Default, PartialEq, Eq)]
struct Announced {
    pool: Vec<Ipv4Net>,
    next_hop: Option<Ipv4Addr>,
}

/// A running announcement to one peer.
#[derive(Debug)]
pub struct Announcer {
    cfg: BgpConfig,
    speaker: Speaker,
    /// Our address of the session, set at each connection.
    local: Arc<Mutex<Option<Ipv4Addr>>>,
    /// The pool to announce; `None` until the node has its table.
    pool: Mutex<Option<Vec<Ipv4Net>>>,
    announced: Mutex<Announced>,
}

impl Announcer {
    /// Starts the speaker; it connects (inside `netns`) at once, and
    /// announces once [`Announcer::set_pool`] is called.
    pub fn start(
        cfg: BgpConfig,
        netns: Option<String>,
        underlay_ip: IpAddr,
    ) -> Result<Announcer, BgpError> {
        let probed = probe_local(netns.as_deref(), cfg.peer);
        let router_id = match (&probed, underlay_ip) {
            (Ok(a), _) => *a,
            (Err(_), IpAddr::V4(a)) => a,
            (Err(e), IpAddr::V6(_)) => {
                return Err(BgpError::RouterId {
                    peer: cfg.peer,
                    source: io::Error::new(e.kind(), e.to_string()),
                });
            }
        };
        let local = Arc::new(Mutex::new(probed.ok()));
        let mut session = Config::new(cfg.local_as, cfg.peer_as, router_id);
        session.hold_time = cfg.hold_time;
        // The router has nothing to tell an edge; a flood is an error.
        session.max_prefixes = Some(100_000);
        let connect = {
            let local = local.clone();
            move |peer: SocketAddr, timeout| {
                let stream = netns::in_netns(netns.as_deref(), || {
                    Ok(TcpStream::connect_timeout(&peer, timeout))
                })
                .map_err(io::Error::other)??;
                if let Ok(SocketAddr::V4(a)) = stream.local_addr() {
                    *lock(&local) = Some(*a.ip());
                }
                Ok(stream)
            }
        };
        let speaker = Speaker::spawn(SpeakerConfig::new(session, cfg.peer), connect)?;
        Ok(Announcer {
            cfg,
            speaker,
            local,
            pool: Mutex::new(None),
            announced: Mutex::new(Announced::default()),
        })
    }

    /// Announces `pool` (the region's, whole) from now on.
    pub fn set_pool(&self, pool: &[Ipv4Net]) {
        *lock(&self.pool) = Some(pool.to_vec());
        self.refresh();
    }

    /// Tells the speaker what to announce if the pool or our session
    /// address changed since it was last told.
    pub fn refresh(&self) {
        let Some(pool) = lock(&self.pool).clone() else {
            return;
        };
        let want = Announced {
            pool,
            next_hop: *lock(&self.local),
        };
        let mut announced = lock(&self.announced);
        if *announced == want {
            return;
        }
        if let Some(next_hop) = want.next_hop {
            let prefixes = want
                .pool
                .iter()
                .filter_map(|n| Ipv4Prefix::new(n.network(), n.prefix_len()).ok())
                .collect();
            self.speaker
                .set_announced(prefixes, next_hop, ExportAttrs::default());
            tracing::info!(peer = %self.cfg.peer, %next_hop, pool = ?want.pool, "announcing the public pool over BGP");
        }
        *announced = want;
    }

    /// The session's state, for the status file.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.speaker.status();
        let announced = lock(&self.announced);
        serde_json::json!({
            "peer": self.cfg.peer.to_string(),
            "peer_as": self.cfg.peer_as,
            "local_as": self.cfg.local_as,
            "hold_time": self.cfg.hold_time,
            "state": format!("{:?}", s.state),
            "established": s.state == State::Established,
            "established_count": s.established_count,
            "last_error": s.last_error,
            "next_hop": announced.next_hop.map(|a| a.to_string()),
            "announced": announced.pool.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })
    }

    /// Whether the session is up.
    pub fn established(&self) -> bool {
        self.speaker.status().state == State::Established
    }

    /// Sends Cease (the router withdraws our path at once) and stops.
    pub fn stop(self) {
        self.speaker.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // With no route to the peer, the probe fails instead of guessing.
    #[test]
    fn the_local_address_is_the_route_to_the_peer() {
        assert_eq!(
            probe_local(None, Ipv4Addr::LOCALHOST).unwrap(),
            Ipv4Addr::LOCALHOST
        );
    }
}
