//! One BGP peer's finite state machine (RFC 4271 §8), sans-IO: the caller
//! owns the TCP connection and the clock. It feeds received bytes, the
//! connection's comings and goings and the current time (a `Duration` since
//! any origin it likes); it takes back the bytes to write and [`Event`]s.
//!
//! It owns the OPEN exchange and its checks (peer AS, hold time), the hold
//! and keepalive timers, what we announce (the Adj-RIB-Out: one attribute set
//! for a set of prefixes, sent as the difference from what the peer already
//! has) and what we learned (the Adj-RIB-In, with an optional prefix limit).
//!
//! Simplified from the RFC's FSM to what one connection at a time needs: no
//! connection collision detection, no DelayOpen, no damping; connect retry
//! and backoff belong to the caller (see [`crate::speaker`]). A passive
//! speaker uses it the same way: [`Session::listen`], then
//! [`Session::connected`] when the peer's connection is accepted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::wire::{
    self, AFI_IPV4, AsSegment, DecodeError, Ipv4Prefix, Message, Notification, Open, Origin,
    PathAttributes, SAFI_UNICAST, code, subcode,
};

/// How long we wait for the peer's OPEN after sending ours: RFC 4271 §8.2.2
/// suggests four minutes.
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// The default LOCAL_PREF we send to internal peers.
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The session's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub local_as: u32,
    /// The AS the peer must announce in its OPEN.
    pub peer_as: u32,
    /// Our BGP identifier; must not be 0.0.0.0.
    pub router_id: Ipv4Addr,
    /// Hold time we propose, in seconds: 0 (no keepalives, no hold timer) or
    /// at least 3. The session uses the smaller of ours and the peer's.
    pub hold_time: u16,
    /// Most prefixes the peer may announce; one more and the session is
    /// dropped with Cease / Maximum Number of Prefixes Reached.
    pub max_prefixes: Option<usize>,
}

impl Config {
    /// A configuration with RFC 4271's suggested hold time of 90 s and no
    /// prefix limit.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_as,
            peer_as,
            router_id,
            hold_time: 90,
            max_prefixes: None,
        }
    }

    fn is_internal(&self) -> bool {
        self.local_as == self.peer_as
    }
}

/// A configuration the session refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("hold time {0} s is not allowed: use 0 (no keepalives) or at least 3")]
    HoldTime(u16),
    #[error("the router id must not be 0.0.0.0: use one of the speaker's IPv4 addresses")]
    RouterId,
}

/// The states of RFC 4271 §8.2.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection and none being made.
    Idle,
    /// We are connecting to the peer.
    Connect,
    /// We are waiting for the peer to connect (passive).
    Active,
    /// Connected, our OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Routes flow.
    Established,
}

impl State {
    fn has_connection(self) -> bool {
        matches!(
            self,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }
}

/// What went wrong on our side of a session; each names the NOTIFICATION we
/// sent for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the peer sent a bad message: {0}")]
    Decode(#[from] DecodeError),
    #[error("the peer says it is AS {got}, but AS {expected} is configured for it")]
    BadPeerAs { expected: u32, got: u32 },
    #[error("the peer sent {message} in state {state:?}")]
    UnexpectedMessage { state: State, message: &'static str },
    #[error(
        "the peer announced {count} prefixes, more than the limit of {limit}: raise the limit or make it announce less"
    )]
    MaxPrefixes { limit: usize, count: usize },
}

impl SessionError {
    /// The NOTIFICATION sent for this error.
    pub fn notification(&self) -> Notification {
        match self {
            SessionError::Decode(e) => e.notification(),
            SessionError::BadPeerAs { .. } => Notification::new(code::OPEN, subcode::BAD_PEER_AS),
            SessionError::UnexpectedMessage { state, .. } => Notification::new(
                code::FSM,
                match state {
                    State::OpenSent => subcode::UNEXPECTED_IN_OPENSENT,
                    State::OpenConfirm => subcode::UNEXPECTED_IN_OPENCONFIRM,
                    State::Established => subcode::UNEXPECTED_IN_ESTABLISHED,
                    _ => subcode::UNSPECIFIC,
                },
            ),
            SessionError::MaxPrefixes { limit, .. } => {
                // RFC 4486 §4: AFI, SAFI and the upper bound.
                let mut data = AFI_IPV4.to_be_bytes().to_vec();
                data.push(SAFI_UNICAST);
                data.extend_from_slice(&u32::try_from(*limit).unwrap_or(u32::MAX).to_be_bytes());
                Notification::with_data(code::CEASE, subcode::MAXIMUM_PREFIXES_REACHED, data)
            }
        }
    }
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownReason {
    #[error("closed by us")]
    LocalClose,
    #[error("the TCP connection was lost")]
    ConnectionLost,
    #[error("no message from the peer within the hold time")]
    HoldTimerExpired,
    #[error("the peer sent NOTIFICATION {0}")]
    PeerNotification(Notification),
    #[error("{0}; we sent NOTIFICATION {n}", n = .0.notification())]
    Error(SessionError),
}

/// Something the caller may want to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session reached Established.
    Established { peer_id: Ipv4Addr, hold_time: u16 },
    /// The session left OpenSent, OpenConfirm or Established.
    Down { reason: DownReason },
    /// The Adj-RIB-In changed: these prefixes were added or replaced, these
    /// removed.
    RoutesChanged {
        updated: Vec<Ipv4Prefix>,
        withdrawn: Vec<Ipv4Prefix>,
    },
}

/// A route learned from the peer (an Adj-RIB-In entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    pub next_hop: Ipv4Addr,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
}

/// The attributes we attach to what we announce, besides the next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportAttrs {
    pub origin: Origin,
    pub med: Option<u32>,
    /// Sent to internal peers only (RFC 4271 §5.1.5); defaults to 100.
    pub local_pref: Option<u32>,
}

/// What the OPEN exchange settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Negotiated {
    hold_time: u16,
    four_octet_as: bool,
    ipv4_unicast: bool,
    peer_id: Ipv4Addr,
}

/// One peer's session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    config: Config,
    state: State,
    since: Duration,
    negotiated: Option<Negotiated>,
    hold_deadline: Option<Duration>,
    keepalive_at: Option<Duration>,
    rx: Vec<u8>,
    out: Vec<u8>,
    events: VecDeque<Event>,
    /// What we want the peer to have.
    desired: BTreeSet<Ipv4Prefix>,
    desired_attrs: Option<PathAttributes>,
    /// What the peer has from us on this connection.
    sent: BTreeSet<Ipv4Prefix>,
    sent_attrs: Option<PathAttributes>,
    rib_in: BTreeMap<Ipv4Prefix, Route>,
    last_down: Option<DownReason>,
}

impl Session {
    /// A session in Idle.
    pub fn new(config: Config) -> Result<Self, ConfigError> {
        if matches!(config.hold_time, 1 | 2) {
            return Err(ConfigError::HoldTime(config.hold_time));
        }
        if config.router_id.is_unspecified() {
            return Err(ConfigError::RouterId);
        }
        Ok(Self {
            config,
            state: State::Idle,
            since: Duration::ZERO,
            negotiated: None,
            hold_deadline: None,
            keepalive_at: None,
            rx: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            desired: BTreeSet::new(),
            desired_attrs: None,
            sent: BTreeSet::new(),
            sent_attrs: None,
            rib_in: BTreeMap::new(),
            last_down: None,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// When the session entered its current state.
    pub fn since(&self) -> Duration {
        self.since
    }

    /// The hold time in use, once OPENs are exchanged.
    pub fn hold_time(&self) -> Option<u16> {
        self.negotiated.map(|n| n.hold_time)
    }

    /// The peer's BGP identifier, once its OPEN is accepted.
    pub fn peer_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.map(|n| n.peer_id)
    }

    /// Why the session last went down.
    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    /// The routes learned from the peer (Adj-RIB-In).
    pub fn routes(&self) -> &BTreeMap<Ipv4Prefix, Route> {
        &self.rib_in
    }

    /// The prefixes we want announced.
    pub fn announced(&self) -> &BTreeSet<Ipv4Prefix> {
        &self.desired
    }

    /// Bytes to write to the connection, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::tick`] next has something to do.
    pub fn next_deadline(&self) -> Option<Duration> {
        match (self.hold_deadline, self.keepalive_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// We are about to connect to the peer (Idle → Connect).
    pub fn connect(&mut self, now: Duration) {
        if !self.state.has_connection() {
            self.enter(State::Connect, now);
        }
    }

    /// We wait for the peer to connect (Idle → Active).
    pub fn listen(&mut self, now: Duration) {
        if !self.state.has_connection() {
            self.enter(State::Active, now);
        }
    }

    /// A TCP connection to the peer is up: sends our OPEN (→ OpenSent). A
    /// connection that was already up is taken as lost first.
    pub fn connected(&mut self, now: Duration) {
        if self.state.has_connection() {
            self.down(DownReason::ConnectionLost, now);
        }
        self.rx.clear();
        self.out.clear();
        let open = Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.router_id,
        );
        self.send(&Message::Open(open), now);
        self.enter(State::OpenSent, now);
        self.hold_deadline = Some(now + OPEN_HOLD_TIME);
    }

    /// The TCP connection closed or failed (or could not be made).
    pub fn disconnected(&mut self, now: Duration) {
        if self.state.has_connection() {
            self.down(DownReason::ConnectionLost, now);
        } else {
            self.enter(State::Idle, now);
        }
    }

    /// We close the session: a Cease NOTIFICATION if connected (→ Idle).
    pub fn close(&mut self, now: Duration) {
        if self.state.has_connection() {
            self.send(&Message::Notification(Notification::cease()), now);
            self.down(DownReason::LocalClose, now);
        } else {
            self.enter(State::Idle, now);
        }
    }

    /// Bytes read from the connection: any number of messages, whole or in
    /// pieces.
    pub fn received(&mut self, bytes: &[u8], now: Duration) {
        if !self.state.has_connection() {
            return;
        }
        self.rx.extend_from_slice(bytes);
        let mut used = 0;
        while self.state.has_connection() {
            let four = self.negotiated.is_some_and(|n| n.four_octet_as);
            let rest = &self.rx[used..];
            let decoded = match wire::frame(rest) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    used += len;
                    Message::decode(&rest[..len], four)
                }
                Err(e) => Err(e),
            };
            match decoded {
                Ok(msg) => self.handle(msg, now),
                Err(e) => self.fail(SessionError::Decode(e), now),
            }
        }
        if self.state.has_connection() {
            self.rx.drain(..used);
        } else {
            self.rx.clear();
        }
    }

    /// Time passed: expires the hold timer, sends KEEPALIVEs when due.
    pub fn tick(&mut self, now: Duration) {
        if self.hold_deadline.is_some_and(|d| now >= d) {
            self.send(
                &Message::Notification(Notification::new(code::HOLD_TIMER_EXPIRED, 0)),
                now,
            );
            self.down(DownReason::HoldTimerExpired, now);
            return;
        }
        if self.keepalive_at.is_some_and(|k| now >= k) {
            self.send(&Message::Keepalive, now);
        }
    }

    /// Sets what we announce: these prefixes with this next hop and these
    /// attributes. When Established, sends UPDATEs for the difference from
    /// what the peer has; otherwise they go out once the session is up.
    pub fn set_announced(
        &mut self,
        prefixes: impl IntoIterator<Item = Ipv4Prefix>,
        next_hop: Ipv4Addr,
        attrs: ExportAttrs,
        now: Duration,
    ) {
        self.desired = prefixes.into_iter().collect();
        let internal = self.config.is_internal();
        self.desired_attrs = Some(PathAttributes {
            origin: attrs.origin,
            // RFC 4271 §5.1.2: an external peer sees our AS prepended; an
            // internal one an empty path.
            as_path: if internal {
                Vec::new()
            } else {
                vec![AsSegment::sequence(vec![self.config.local_as])]
            },
            next_hop,
            med: attrs.med,
            local_pref: internal.then(|| attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)),
            other: Vec::new(),
        });
        if self.state == State::Established {
            self.sync_announced(now);
        }
    }

    fn enter(&mut self, state: State, now: Duration) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    fn send(&mut self, msg: &Message, now: Duration) {
        let four = self.negotiated.is_some_and(|n| n.four_octet_as);
        match msg.encode(four) {
            Ok(bytes) => self.out.extend_from_slice(&bytes),
            // Only an oversized UPDATE can fail, and UPDATEs go through
            // `encode_updates`, which splits them.
            Err(e) => tracing::error!("BGP: could not encode a message: {e}"),
        }
        if matches!(msg, Message::Keepalive | Message::Update(_)) {
            self.restart_keepalive(now);
        }
    }

    fn restart_keepalive(&mut self, now: Duration) {
        self.keepalive_at = match self.negotiated {
            Some(n) if n.hold_time > 0 => Some(now + Duration::from_secs(n.hold_time.into()) / 3),
            _ => None,
        };
    }

    fn restart_hold(&mut self, now: Duration) {
        self.hold_deadline = match self.negotiated {
            Some(n) if n.hold_time > 0 => Some(now + Duration::from_secs(n.hold_time.into())),
            _ => None,
        };
    }

    /// Sends the NOTIFICATION for `err` and drops the session.
    fn fail(&mut self, err: SessionError, now: Duration) {
        self.send(&Message::Notification(err.notification()), now);
        self.down(DownReason::Error(err), now);
    }

    fn down(&mut self, reason: DownReason, now: Duration) {
        self.enter(State::Idle, now);
        self.negotiated = None;
        self.hold_deadline = None;
        self.keepalive_at = None;
        self.rx.clear();
        self.sent.clear();
        self.sent_attrs = None;
        if !self.rib_in.is_empty() {
            let withdrawn = std::mem::take(&mut self.rib_in).into_keys().collect();
            self.events.push_back(Event::RoutesChanged {
                updated: Vec::new(),
                withdrawn,
            });
        }
        self.last_down = Some(reason.clone());
        self.events.push_back(Event::Down { reason });
    }

    fn unexpected(&mut self, message: &'static str, now: Duration) {
        let state = self.state;
        self.fail(SessionError::UnexpectedMessage { state, message }, now);
    }

    fn handle(&mut self, msg: Message, now: Duration) {
        if let Message::Notification(n) = msg {
            self.down(DownReason::PeerNotification(n), now);
            return;
        }
        match (self.state, msg) {
            (State::OpenSent, Message::Open(open)) => self.accept_open(&open, now),
            (State::OpenConfirm, Message::Keepalive) => {
                self.enter(State::Established, now);
                self.restart_hold(now);
                if let Some(n) = self.negotiated {
                    self.events.push_back(Event::Established {
                        peer_id: n.peer_id,
                        hold_time: n.hold_time,
                    });
                }
                self.sync_announced(now);
            }
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(u)) => {
                self.restart_hold(now);
                self.apply_update(u, now);
            }
            // We do not advertise route refresh; a peer that asks anyway
            // already has everything we announce.
            (State::Established, Message::RouteRefresh { .. }) => self.restart_hold(now),
            (_, Message::Open(_)) => self.unexpected("OPEN", now),
            (_, Message::Keepalive) => self.unexpected("KEEPALIVE", now),
            (_, Message::Update(_)) => self.unexpected("UPDATE", now),
            (_, Message::RouteRefresh { .. }) => self.unexpected("ROUTE-REFRESH", now),
            (_, Message::Notification(_)) => {}
        }
    }

    fn accept_open(&mut self, open: &Open, now: Duration) {
        let got = open.asn();
        if got != self.config.peer_as {
            let expected = self.config.peer_as;
            self.fail(SessionError::BadPeerAs { expected, got }, now);
            return;
        }
        // RFC 4271 §4.2: the smaller hold time wins; 0 means none.
        let hold_time = self.config.hold_time.min(open.hold_time);
        self.negotiated = Some(Negotiated {
            hold_time,
            four_octet_as: open.four_octet_as().is_some(),
            ipv4_unicast: open.carries_ipv4_unicast(),
            peer_id: open.bgp_id,
        });
        self.send(&Message::Keepalive, now);
        self.enter(State::OpenConfirm, now);
        self.restart_hold(now);
    }

    fn apply_update(&mut self, u: wire::Update, now: Duration) {
        let mut updated = Vec::new();
        let mut withdrawn = Vec::new();
        for p in u.withdrawn {
            if self.rib_in.remove(&p).is_some() {
                withdrawn.push(p);
            }
        }
        if let Some(a) = u.attributes {
            // RFC 4271 §9.1.2: a route whose path holds our own AS is a
            // loop and is not used; it replaces (withdraws) any earlier one.
            let looped = a.path_asns().any(|asn| asn == self.config.local_as);
            for p in u.nlri {
                if looped {
                    if self.rib_in.remove(&p).is_some() {
                        withdrawn.push(p);
                    }
                    continue;
                }
                let route = Route {
                    origin: a.origin,
                    as_path: a.as_path.clone(),
                    next_hop: a.next_hop,
                    med: a.med,
                    local_pref: a.local_pref,
                };
                if self.rib_in.get(&p) != Some(&route) {
                    self.rib_in.insert(p, route);
                    updated.push(p);
                }
            }
        }
        if !updated.is_empty() || !withdrawn.is_empty() {
            self.events
                .push_back(Event::RoutesChanged { updated, withdrawn });
        }
        if let Some(limit) = self.config.max_prefixes {
            let count = self.rib_in.len();
            if count > limit {
                self.fail(SessionError::MaxPrefixes { limit, count }, now);
            }
        }
    }

    /// Sends the difference between what we want announced and what the
    /// peer has.
    fn sync_announced(&mut self, now: Duration) {
        let Some(n) = self.negotiated else { return };
        if !n.ipv4_unicast {
            return;
        }
        let attrs_changed = self.sent_attrs != self.desired_attrs;
        let withdraw: Vec<Ipv4Prefix> = self.sent.difference(&self.desired).copied().collect();
        // New attributes replace the old for every prefix (an UPDATE for a
        // prefix implicitly withdraws its previous route).
        let announce: Vec<Ipv4Prefix> = if attrs_changed {
            self.desired.iter().copied().collect()
        } else {
            self.desired.difference(&self.sent).copied().collect()
        };
        if withdraw.is_empty() && announce.is_empty() {
            self.sent_attrs = self.desired_attrs.clone();
            return;
        }
        let empty = PathAttributes {
            origin: Origin::Igp,
            as_path: Vec::new(),
            next_hop: Ipv4Addr::UNSPECIFIED,
            med: None,
            local_pref: None,
            other: Vec::new(),
        };
        let attrs = self.desired_attrs.as_ref().unwrap_or(&empty);
        match wire::encode_updates(&withdraw, &announce, attrs, n.four_octet_as) {
            Ok(msgs) => {
                for m in msgs {
                    self.out.extend_from_slice(&m);
                }
                self.restart_keepalive(now);
                self.sent = self.desired.clone();
                self.sent_attrs = self.desired_attrs.clone();
            }
            Err(e) => tracing::error!("BGP: could not encode our announcements: {e}"),
        }
    }
}

#[cfg(test)]
mod tests;
