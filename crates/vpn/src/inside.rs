//! The virtual private gateway's BGP endpoint on one tunnel's inside
//! address (spec 10.2), sans-IO: no sockets, threads or clocks; time is an
//! argument (a `Duration` since any origin, the same clock as the BGP
//! [`Session`]'s).
//!
//! Each tunnel has an inside /30 from 169.254.0.0/16: AWS (we) take the
//! first host address, the customer gateway the second, and the customer's
//! router runs eBGP with us over the tunnel. No kernel interface holds our
//! address (an edge serves many tunnels, and the inside /30s of different
//! VPN gateways may overlap), so the TCP endpoint is smoltcp's: an
//! [`Interface`] with `Medium::Ip` owning our inside address over a device
//! that is two packet queues. The tunnel hands its decrypted inner packets
//! for our address to [`BgpEndpoint::receive`]; what
//! [`BgpEndpoint::poll`] returns goes back sealed into the tunnel.
//!
//! It owns the TCP connection the BGP session runs on and drives the
//! sans-IO [`Session`] over it; every protocol decision is the session's.
//! - Passive: a socket listens on our address, port 179 (BIRD and FRR
//!   connect by default; AWS's sample configurations have the customer
//!   side connect). Only the customer gateway's address may connect: a SYN
//!   from any other source is answered with a RST by a second, socketless
//!   interface and counted ([`InsideCounters::refused_connections`]).
//! - One connection carries the session. A new connection from the peer
//!   that completes its handshake replaces the one in use: we never
//!   connect, so there is no collision to resolve (RFC 4271 §6.8), and a
//!   peer that connects again has given up on the old connection (its
//!   router restarted, or the tunnel flapped); waiting for our hold timer
//!   would keep it out for up to 30 s.
//! - When the session ends (a NOTIFICATION either way, the hold timer, the
//!   prefix limit of spec 10.3) the connection is closed after what the
//!   session still had to send; when the connection ends (FIN, RST) the
//!   session is told. Either way the learned routes are withdrawn at once
//!   and the socket listens again.
//! - [`BgpEndpoint::tunnel_down`]: the tunnel (its IPsec SA) is gone; the
//!   connection is dropped without a word and the routes withdrawn.
//!
//! Every packet refused is counted ([`InsideCounters`]); none panics.

use core::net::Ipv4Addr;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use ipnet::Ipv4Net;
use openvpc_bgp::session::ConfigError;
use openvpc_bgp::{Config, Event, ExportAttrs, Ipv4Prefix, Route, Session, State};
use openvpc_packet::queue_device::QueueDevice;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};

/// The BGP port.
pub const BGP_PORT: u16 = 179;

/// The MTU of our inside address: spec 10.2's tunnel interface MTU, so our
/// segments (MSS 1359) fit the tunnel unfragmented and stay under the MSS
/// of 1406 AWS allows.
pub const INSIDE_MTU: usize = 1399;

/// The hold time of BGP over a tunnel (spec 10.2: keepalive 10 s, hold
/// 30 s; the session sends keepalives at a third of the hold time).
pub const HOLD_TIME: u16 = 30;

/// The most prefixes a customer gateway may announce (spec 10.3); one more
/// drops the session.
pub const MAX_PREFIXES: usize = 100;

/// How long a connection we closed may take to finish closing before it is
/// aborted: longer than smoltcp's 10 s TIME_WAIT, so only a peer that
/// never acknowledges our FIN (a dead tunnel) is cut.
pub const LINGER: Duration = Duration::from_secs(20);

/// smoltcp's own timeout on a connection that gets no answer: a handshake
/// never completed, or data never acknowledged. Longer than the hold time,
/// so a dead peer is the BGP hold timer's to declare.
const TCP_TIMEOUT: Duration = Duration::from_secs(60);

/// Inner packets waiting for [`BgpEndpoint::poll`]; more are dropped.
const RX_QUEUE: usize = 256;

/// Packets waiting for the caller before the stack stops sending (smoltcp
/// keeps what it could not send and retries).
const TX_QUEUE: usize = 256;

/// Each connection's receive and send buffers: a BGP message is at most
/// 4096 bytes, and a session carries at most 100 prefixes in and 1,000
/// out (spec 10.3), a few kilobytes either way.
const SOCKET_BUFFER: usize = 16 * 1024;

/// Connections from the peer still in their handshake; beyond this the
/// oldest is aborted (each took a SYN and holds buffers).
const MAX_HANDSHAKES: usize = 4;

/// Why an endpoint could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(
        "the tunnel inside CIDR {0} is not a /30: spec 10.2 gives each tunnel a /30 from 169.254.0.0/16"
    )]
    NotSlash30(Ipv4Net),
    #[error(
        "the tunnel inside CIDR {0} is not in 169.254.0.0/16: spec 10.2 takes inside CIDRs from there"
    )]
    NotLinkLocal(Ipv4Net),
    #[error(transparent)]
    Session(#[from] ConfigError),
}

/// Why [`BgpEndpoint::receive`] did not take a packet, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InsideDrop {
    /// Not IPv4, truncated, a bad IP or TCP checksum, or a fragment (BGP
    /// segments fit the tunnel MTU and are never fragmented).
    Malformed,
    /// Not addressed to our inside address.
    NotOurs,
    /// [`BgpEndpoint::poll`] was not called for too many packets.
    Overflow,
}

/// What an endpoint did, for `/metrics` and telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InsideCounters {
    /// Packets [`BgpEndpoint::receive`] took.
    pub packets_in: u64,
    /// Packets [`BgpEndpoint::poll`] gave out.
    pub packets_out: u64,
    /// Per [`InsideDrop`].
    pub dropped_malformed: u64,
    pub dropped_not_ours: u64,
    pub dropped_overflow: u64,
    /// SYNs to us from an address other than the customer gateway's inside
    /// address, answered with a RST.
    pub refused_connections: u64,
    /// Other packets from such addresses (answered as smoltcp answers
    /// packets for no socket: a RST for TCP, nothing or an ICMP error
    /// otherwise).
    pub foreign_packets: u64,
    /// Connections from the peer that completed their handshake.
    pub connections: u64,
    /// Of those, how many replaced the one the session was on.
    pub connections_replaced: u64,
    /// Connections we closed that did not finish closing within
    /// [`LINGER`].
    pub linger_aborts: u64,
    /// Times the session reached Established.
    pub sessions_established: u64,
}

/// A session configuration for a VPN tunnel: our ASN (the VGW's
/// Amazon-side ASN), the customer gateway's ASN, our inside address as the
/// BGP identifier, spec 10.2's hold time and spec 10.3's prefix limit.
pub fn tunnel_session_config(local: Ipv4Addr, amazon_asn: u32, customer_asn: u32) -> Config {
    Config {
        hold_time: HOLD_TIME,
        max_prefixes: Some(MAX_PREFIXES),
        ..Config::new(amazon_asn, customer_asn, local)
    }
}

fn instant(d: Duration) -> Instant {
    Instant::from_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn duration(at: Instant) -> Duration {
    Duration::from_micros(u64::try_from(at.total_micros()).unwrap_or(0))
}

/// Whether the session holds a connection (RFC 4271's OpenSent,
/// OpenConfirm, Established).
fn session_connected(state: State) -> bool {
    matches!(
        state,
        State::OpenSent | State::OpenConfirm | State::Established
    )
}

/// A smoltcp interface owning `local` in `inside`, over a fresh device.
fn interface(local: Ipv4Addr, inside: Ipv4Net, seed: u64, device: &mut QueueDevice) -> Interface {
    let mut config = IfaceConfig::new(HardwareAddress::Ip);
    config.random_seed = seed;
    // The stack's clock starts at 0 and follows the `now` of each call.
    let mut iface = Interface::new(config, device, instant(Duration::ZERO));
    iface.update_ip_addrs(|addrs| {
        // A fresh interface's address list has room for one.
        let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(local), inside.prefix_len()));
    });
    iface
}

/// A packet [`BgpEndpoint::receive`] accepted.
enum Sorted {
    /// From the customer gateway's inside address.
    Peer,
    /// From another source; `syn` if it opens a TCP connection.
    Foreign { syn: bool },
}

/// The VGW's BGP endpoint on one tunnel's inside address. See the module
/// documentation.
pub struct BgpEndpoint {
    inside: Ipv4Net,
    local: Ipv4Addr,
    peer: Ipv4Addr,
    session: Session,
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    /// Answers what comes from other sources than the peer: it has our
    /// address and no sockets, so smoltcp refuses every connection.
    refuser: Interface,
    refuser_device: QueueDevice,
    no_sockets: SocketSet<'static>,
    /// Always listening on our address, port 179.
    listener: SocketHandle,
    /// Connections from the peer still in their handshake, oldest first.
    handshaking: Vec<SocketHandle>,
    /// The connection the session is on.
    conn: Option<SocketHandle>,
    /// Session output the connection's send buffer had no room for yet.
    unsent: Vec<u8>,
    /// Connections we closed or aborted, with the time they are cut.
    closing: Vec<(SocketHandle, Duration)>,
    events: VecDeque<Event>,
    routes_changed: bool,
    /// The latest time seen: smoltcp's clock must not go back.
    now: Duration,
    counters: InsideCounters,
}

impl core::fmt::Debug for BgpEndpoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BgpEndpoint")
            .field("inside", &self.inside)
            .field("state", &self.session.state())
            .field("routes", &self.session.routes().len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl BgpEndpoint {
    /// The endpoint for the tunnel whose inside CIDR is `inside` (a /30 in
    /// 169.254.0.0/16; host bits are ignored): we are its first host
    /// address and the customer gateway its second. The session starts
    /// passive, waiting for the peer. TCP initial sequence numbers come
    /// from a random seed, so no one can guess them.
    pub fn new(inside: Ipv4Net, session: Config) -> Result<Self, Error> {
        let seed = RandomState::new().hash_one(inside);
        Self::with_seed(inside, session, seed)
    }

    /// [`Self::new`] with a given seed (for deterministic tests).
    pub fn with_seed(inside: Ipv4Net, session: Config, seed: u64) -> Result<Self, Error> {
        if inside.prefix_len() != 30 {
            return Err(Error::NotSlash30(inside));
        }
        let inside = inside.trunc();
        if !inside.network().is_link_local() {
            return Err(Error::NotLinkLocal(inside));
        }
        let network = u32::from(inside.network());
        let local = Ipv4Addr::from(network + 1);
        let peer = Ipv4Addr::from(network + 2);
        let mut session = Session::new(session)?;
        session.listen(Duration::ZERO);

        let mut device = QueueDevice::new(INSIDE_MTU, TX_QUEUE);
        let iface = interface(local, inside, seed, &mut device);
        let mut refuser_device = QueueDevice::new(INSIDE_MTU, TX_QUEUE);
        let mut refuser = interface(local, inside, seed.rotate_left(17), &mut refuser_device);
        // Foreign sources are not on-link; smoltcp answers only routed
        // destinations, and with Medium::Ip the next hop is never used.
        let _ = refuser.routes_mut().add_default_ipv4_route(peer);

        let mut sockets = SocketSet::new(Vec::new());
        let listener = sockets.add(listening_socket(local));
        Ok(Self {
            inside,
            local,
            peer,
            session,
            iface,
            device,
            sockets,
            refuser,
            refuser_device,
            no_sockets: SocketSet::new(Vec::new()),
            listener,
            handshaking: Vec::new(),
            conn: None,
            unsent: Vec::new(),
            closing: Vec::new(),
            events: VecDeque::new(),
            routes_changed: false,
            now: Duration::ZERO,
            counters: InsideCounters::default(),
        })
    }

    /// The tunnel's inside /30.
    pub fn inside(&self) -> Ipv4Net {
        self.inside
    }

    /// Our inside address (the /30's first host).
    pub fn local_addr(&self) -> Ipv4Addr {
        self.local
    }

    /// The customer gateway's inside address (the /30's second host), the
    /// only one that may connect.
    pub fn peer_addr(&self) -> Ipv4Addr {
        self.peer
    }

    /// The session's state: `Active` while waiting for the peer.
    pub fn state(&self) -> State {
        self.session.state()
    }

    /// The session, for what it tells (since when, hold time, peer id, why
    /// it last went down, what we announce).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The routes the customer gateway announced (Adj-RIB-In); empty
    /// whenever the session is not Established.
    pub fn routes(&self) -> &BTreeMap<Ipv4Prefix, Route> {
        self.session.routes()
    }

    pub fn counters(&self) -> InsideCounters {
        self.counters
    }

    /// The next session event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.collect_events();
        self.events.pop_front()
    }

    /// Whether the learned routes changed since the last call (so the
    /// caller re-exports them only then).
    pub fn take_routes_changed(&mut self) -> bool {
        self.collect_events();
        std::mem::take(&mut self.routes_changed)
    }

    /// Sets what we announce (the VPC's CIDRs): these prefixes with this
    /// next hop (normally [`Self::local_addr`]) and these attributes. The
    /// UPDATEs go out with the next [`Self::poll`].
    pub fn set_announced(
        &mut self,
        prefixes: impl IntoIterator<Item = Ipv4Prefix>,
        next_hop: Ipv4Addr,
        attrs: ExportAttrs,
        now: Duration,
    ) {
        let now = self.advance_clock(now);
        self.session.set_announced(prefixes, next_hop, attrs, now);
    }

    /// Closes the session on purpose (the VPN connection is being
    /// deleted): Cease, then the connection is closed by the next
    /// [`Self::poll`]. The endpoint keeps listening.
    pub fn close(&mut self, now: Duration) {
        let now = self.advance_clock(now);
        self.session.close(now);
    }

    /// Takes one inner IPv4 packet from the tunnel, addressed to our inside
    /// address. It is processed by the next [`Self::poll`].
    pub fn receive(&mut self, packet: &[u8], now: Duration) -> Result<(), InsideDrop> {
        self.advance_clock(now);
        let sorted = match self.check(packet) {
            Ok(s) => s,
            Err(drop) => {
                match drop {
                    InsideDrop::Malformed => self.counters.dropped_malformed += 1,
                    InsideDrop::NotOurs => self.counters.dropped_not_ours += 1,
                    InsideDrop::Overflow => self.counters.dropped_overflow += 1,
                }
                return Err(drop);
            }
        };
        let queue = match sorted {
            Sorted::Peer => &mut self.device.rx,
            Sorted::Foreign { syn } => {
                if syn {
                    self.counters.refused_connections += 1;
                } else {
                    self.counters.foreign_packets += 1;
                }
                &mut self.refuser_device.rx
            }
        };
        if queue.len() >= RX_QUEUE {
            self.counters.dropped_overflow += 1;
            return Err(InsideDrop::Overflow);
        }
        queue.push_back(packet.to_vec());
        self.counters.packets_in += 1;
        Ok(())
    }

    /// Runs the stack and the session to `now`: handles the packets
    /// received, accepts the peer's connection, feeds the session what it
    /// sent, writes what the session answers, runs the timers (the hold
    /// timer ends the connection too). Returns the inner IPv4 packets to
    /// seal into the tunnel, to the customer gateway.
    pub fn poll(&mut self, now: Duration) -> Vec<Vec<u8>> {
        let now = self.advance_clock(now);
        let at = instant(now);
        self.refuser
            .poll(at, &mut self.refuser_device, &mut self.no_sockets);
        self.iface.poll(at, &mut self.device, &mut self.sockets);
        self.accept(now);
        self.drive(now);
        // Send what was just decided: the session's bytes, FINs, RSTs.
        self.iface.poll(at, &mut self.device, &mut self.sockets);
        self.reap(now);
        self.collect_events();
        let mut out: Vec<Vec<u8>> = self.refuser_device.tx.drain(..).collect();
        out.extend(self.device.tx.drain(..));
        self.counters.packets_out += out.len() as u64;
        out
    }

    /// When [`Self::poll`] next has something to do: a retransmission, a
    /// delayed ACK, a keepalive, the hold timer, a linger end; `now` when
    /// packets are waiting. `None` with nothing pending.
    pub fn next_deadline(&mut self, now: Duration) -> Option<Duration> {
        let now = self.now.max(now);
        let stack = self
            .iface
            .poll_at(instant(now), &self.sockets)
            .map(duration);
        let session = self.session.next_deadline();
        let linger = self.closing.iter().map(|&(_, until)| until).min();
        let waiting = (!self.device.rx.is_empty()
            || !self.refuser_device.rx.is_empty()
            || self.session.has_output())
        .then_some(now);
        [stack, session, linger, waiting]
            .into_iter()
            .flatten()
            .min()
    }

    /// The tunnel went down (its IPsec SA was cleared, DPD gave up): the
    /// connection is dropped without a word (nothing can reach the peer)
    /// and the session told, so the learned routes are withdrawn at once.
    /// The endpoint listens again for when the tunnel comes back; a peer
    /// still holding the old connection then gets a RST and reconnects.
    pub fn tunnel_down(&mut self, now: Duration) {
        let now = self.advance_clock(now);
        let handles: Vec<SocketHandle> = self
            .conn
            .take()
            .into_iter()
            .chain(self.handshaking.drain(..))
            .chain(self.closing.drain(..).map(|(h, _)| h))
            .collect();
        for h in handles {
            self.sockets.remove(h);
        }
        self.unsent.clear();
        self.device.rx.clear();
        self.device.tx.clear();
        self.refuser_device.rx.clear();
        self.refuser_device.tx.clear();
        self.session.disconnected(now);
        // Whatever the session had for the old connection is lost with it.
        let _ = self.session.take_output();
        self.session.listen(now);
        self.collect_events();
    }

    fn advance_clock(&mut self, now: Duration) -> Duration {
        self.now = self.now.max(now);
        self.now
    }

    /// Sorts a packet handed to [`Self::receive`].
    fn check(&self, bytes: &[u8]) -> Result<Sorted, InsideDrop> {
        use InsideDrop::Malformed;
        if bytes.first().map(|b| b >> 4) != Some(4) {
            return Err(Malformed);
        }
        let ip = Ipv4Packet::new_checked(bytes).map_err(|_| Malformed)?;
        if !ip.verify_checksum() || ip.more_frags() || ip.frag_offset() != 0 {
            return Err(Malformed);
        }
        let payload = bytes
            .get(usize::from(ip.header_len())..usize::from(ip.total_len()))
            .ok_or(Malformed)?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if dst != self.local {
            return Err(InsideDrop::NotOurs);
        }
        let mut syn = false;
        if ip.next_header() == IpProtocol::Tcp {
            let tcp = TcpPacket::new_checked(payload).map_err(|_| Malformed)?;
            if !tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
                return Err(Malformed);
            }
            syn = tcp.syn() && !tcp.ack();
        }
        Ok(if src == self.peer {
            Sorted::Peer
        } else {
            Sorted::Foreign { syn }
        })
    }

    /// Moves a listener that took a SYN to the handshakes and listens
    /// again; promotes a completed handshake to the session's connection.
    fn accept(&mut self, now: Duration) {
        let taken = self.sockets.get::<tcp::Socket>(self.listener).state() != tcp::State::Listen;
        if taken {
            self.handshaking.push(self.listener);
            self.listener = self.sockets.add(listening_socket(self.local));
            if self.handshaking.len() > MAX_HANDSHAKES {
                let oldest = self.handshaking.remove(0);
                self.abort(oldest, now);
            }
        }
        let mut i = 0;
        while let Some(&h) = self.handshaking.get(i) {
            let socket = self.sockets.get_mut::<tcp::Socket>(h);
            let remote_ok = socket
                .remote_endpoint()
                .is_none_or(|e| e.addr == IpAddress::Ipv4(self.peer));
            match socket.state() {
                tcp::State::SynReceived if remote_ok => i += 1,
                tcp::State::Established | tcp::State::CloseWait if remote_ok => {
                    self.handshaking.remove(i);
                    self.promote(h, now);
                }
                // Back to Listen after a RST, closed, or (it cannot
                // happen: other sources go to the refuser) from a stranger.
                _ => {
                    self.handshaking.remove(i);
                    self.abort(h, now);
                }
            }
        }
    }

    /// `h` completed its handshake: the session runs on it from now on.
    fn promote(&mut self, h: SocketHandle, now: Duration) {
        self.counters.connections += 1;
        if let Some(old) = self.conn.take() {
            // The session takes its old connection as lost (Down, routes
            // withdrawn) before it sends OPEN on the new one.
            self.counters.connections_replaced += 1;
            self.abort(old, now);
        }
        self.unsent.clear();
        self.conn = Some(h);
        self.session.connected(now);
    }

    /// Aborts a connection (a RST if it has a peer) and lets it go once the
    /// RST is out.
    fn abort(&mut self, h: SocketHandle, now: Duration) {
        self.sockets.get_mut::<tcp::Socket>(h).abort();
        self.closing.push((h, now + LINGER));
    }

    /// Runs the session on its connection: bytes in, timers, bytes out;
    /// ends one when the other ends.
    fn drive(&mut self, now: Duration) {
        let Some(h) = self.conn else {
            if self.session.state() == State::Idle {
                self.session.listen(now);
            }
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(h);
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = socket.recv_slice(&mut buf) {
            self.session.received(buf.get(..n).unwrap_or_default(), now);
        }
        // A FIN (CloseWait), a RST or smoltcp's timeout (Closed).
        let peer_gone = !socket.may_recv();
        if peer_gone {
            self.session.disconnected(now);
        }
        self.session.tick(now);
        self.unsent.extend(self.session.take_output());
        if !self.unsent.is_empty()
            && let Ok(n) = socket.send_slice(&self.unsent)
        {
            self.unsent.drain(..n);
        }
        if peer_gone || !session_connected(self.session.state()) {
            // After what is queued (a NOTIFICATION), a FIN; nothing if the
            // peer reset it.
            socket.close();
            self.conn = None;
            self.unsent.clear();
            self.closing.push((h, now + LINGER));
            self.session.listen(now);
        }
    }

    /// Lets go of closed connections, keeps reading closing ones (so our
    /// close never stalls on a full window) and cuts those that take too
    /// long.
    fn reap(&mut self, now: Duration) {
        let mut buf = [0u8; 1024];
        let mut i = 0;
        while let Some(&(h, until)) = self.closing.get(i) {
            let socket = self.sockets.get_mut::<tcp::Socket>(h);
            while matches!(socket.recv_slice(&mut buf), Ok(1..)) {}
            let done = socket.state() == tcp::State::Closed && socket.remote_endpoint().is_none();
            if done {
                self.closing.swap_remove(i);
                self.sockets.remove(h);
                continue;
            }
            if now >= until && socket.state() != tcp::State::Closed {
                socket.abort();
                self.counters.linger_aborts += 1;
            }
            i += 1;
        }
    }

    fn collect_events(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            match &ev {
                Event::Established { .. } => self.counters.sessions_established += 1,
                Event::RoutesChanged { .. } => self.routes_changed = true,
                Event::Down { .. } => {}
            }
            self.events.push_back(ev);
        }
    }
}

/// A connection socket listening on our address, port 179.
fn listening_socket(local: Ipv4Addr) -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
    );
    // BGP messages are whole and few: send each at once.
    socket.set_nagle_enabled(false);
    socket.set_timeout(Some(smoltcp::time::Duration::from_millis(
        u64::try_from(TCP_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    )));
    // Only fails for port 0 or a socket already open; this one is new.
    let _ = socket.listen(IpListenEndpoint {
        addr: Some(IpAddress::Ipv4(local)),
        port: BGP_PORT,
    });
    socket
}
