//! The packet-level NLB health-check prober (spec 9.4), sans-IO: a TCP
//! client engine that runs the probes [`crate::health::HealthChecker::due`]
//! asks for as bare IPv4 packets sent from the load balancer's front
//! address, and turns what the target answers into the
//! [`Outcome`]s [`crate::health::HealthChecker::result`] takes.
//!
//! Why packets and not sockets: the front address is a private IP inside
//! the target's VPC and the node is not in that VPC. The node's shell
//! carries the packets [`Prober::transmit`] gives it to the target over
//! Geneve (with the NLB's VNI) and hands back the target's answers with
//! [`Prober::receive`]; no OS stack ever owns the front address. The TCP
//! state machine is smoltcp's: an [`Interface`] with `Medium::Ip` owning
//! the front address over a [`Device`] that is only two packet queues.
//!
//! One [`Prober`] per (VNI, front address) the node probes from. It owns
//! the probe connections, their local ports (taken in turn from a range the
//! node gives it, disjoint from other nodes' and from source-NAT ports, and
//! never one still held by a connection, TIME_WAIT included), the probe
//! deadlines, and the counters. It owns no sockets, threads or clocks: time
//! is an argument, a [`Millis`] count on the same clock as the health
//! checker's.
//!
//! What a probe does:
//! - `TcpConnect`: SYN; the handshake completing is `Connected`, then the
//!   connection is closed with a FIN, not a RST. AWS's TCP checks complete
//!   the handshake and close; a graceful close also keeps probes out of the
//!   target's reset counts and logs. The cost, TIME_WAIT on our side, only
//!   holds one port of the range for smoltcp's 10 s.
//! - `HttpGet`: connect, send the request, read until the status line is
//!   complete ([`parse_status_line`]), then close gracefully while
//!   discarding the rest of the answer.
//! - `HttpGet` with `tls`: the same over TLS. rustls is the TLS client,
//!   sans-IO like the rest: the bytes smoltcp receives go to
//!   `read_tls`, what `write_tls` produces goes into the socket, the
//!   request is written and the answer read as plaintext. As on AWS, the
//!   target's certificate is not validated and the client speaks TLS 1.2
//!   only (see `tls_config` for why). A failed handshake or an alert is
//!   `Malformed`, as for an answer that is not HTTP.
//! - A RST to the SYN (or an ICMP unreachable for it) is `Refused`; a RST or
//!   a close after the handshake, before an HTTP answer, is `Reset`; bytes
//!   that are not an HTTP status line are `Malformed`; nothing decided by
//!   the deadline is `Timeout`, and the connection is aborted.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::ops::RangeInclusive;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use openvpc_packet::queue_device::QueueDevice;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Packet, TcpPacket};
use thiserror::Error;

use crate::health::parse_status_line;
use crate::health::{MAX_STATUS_LINE, Millis, Outcome, Probe, ProbeKind, StatusLine};

/// How many probe connections one prober keeps open by default, lingering
/// ones (closing, TIME_WAIT) included: the bound on its memory.
pub const DEFAULT_MAX_OPEN: usize = 1024;

/// How long a connection whose probe is decided may take to close before
/// it is aborted with a RST: longer than smoltcp's 10 s TIME_WAIT, so only
/// peers that never finish the close (a FIN never acknowledged, a body
/// streamed forever) are cut.
pub const LINGER: Millis = 20_000;

/// The packets waiting for the shell before the stack stops sending:
/// smoltcp keeps what it could not send and retries, so a shell that does
/// not drain [`Prober::transmit`] slows probes down instead of growing
/// memory.
const TX_QUEUE: usize = 4096;

/// The MTU toward targets. Probes send one small segment each way, and the
/// MSS announced from it keeps the target's answers unfragmented inside the
/// Geneve overlay.
const MTU: usize = 1500;

/// The receive buffer of a probe connection: the status line is at most
/// [`MAX_STATUS_LINE`] bytes, the rest is read and discarded.
const RX_BUFFER: usize = 2 * MAX_STATUS_LINE;

/// The receive buffer of an HTTPS probe connection: room for the target's
/// handshake flight (its certificate chain) in a few windows. rustls takes
/// the bytes out at each step, so this only sets the window.
const TLS_RX_BUFFER: usize = 8 * 1024;

/// The send buffer of an HTTPS probe connection: the ClientHello, then the
/// client's handshake finish and the request as one record.
const TLS_TX_BUFFER: usize = 4 * 1024;

/// Why a probe could not start. Each is counted in [`ProberCounters`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProbeError {
    /// The TLS client of an HTTPS check could not be set up (a crypto
    /// provider that cannot make the configuration, or a request rustls
    /// will not buffer): nothing is sent and no outcome made up.
    #[error("cannot set up the TLS client of an HTTPS health check: {0}")]
    Tls(String),
    /// The prober already has its maximum of open connections.
    #[error("the prober already has {0} probe connections open")]
    Full(usize),
    /// Every local port of the range is held by an open connection.
    #[error("no free local port in {start}-{end}")]
    NoFreePort { start: u16, end: u16 },
    /// A destination no probe can go to (port 0, an unspecified, broadcast
    /// or multicast address, or the front address itself).
    #[error("cannot probe {0}")]
    BadDestination(SocketAddrV4),
}

/// A probe started by [`Prober::start`]; its outcome comes back with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProbeId(pub u64);

/// What a prober did, for `/metrics` and the status file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProberCounters {
    /// Probes started.
    pub started: u64,
    /// Probes refused by [`Prober::start`], by reason (`rejected_tls`:
    /// [`ProbeError::Tls`]).
    pub rejected_tls: u64,
    pub rejected_full: u64,
    pub rejected_no_port: u64,
    pub rejected_destination: u64,
    /// Completed probes, by outcome.
    pub connected: u64,
    pub refused: u64,
    pub reset: u64,
    pub timeout: u64,
    pub http_status: u64,
    pub malformed: u64,
    /// Connections aborted because they did not finish closing within
    /// [`LINGER`] after their probe was decided.
    pub linger_aborts: u64,
    /// Packets taken by [`Prober::receive`] (TCP to an open probe
    /// connection, or an ICMP error about one).
    pub packets_in: u64,
    /// Packets given out by [`Prober::transmit`].
    pub packets_out: u64,
    /// Packets refused as malformed: not IPv4, truncated, a bad checksum, a
    /// fragment.
    pub dropped_malformed: u64,
    /// Well-formed packets that are not for an open probe connection (late
    /// answers to a closed probe, another protocol, another address).
    pub dropped_unmatched: u64,
}

/// What a probe connection still has to do.
#[derive(Debug)]
enum Phase {
    /// The probe is undecided.
    Pending {
        /// Whether the handshake completed (a later close is `Reset`, not
        /// `Refused`).
        established: bool,
    },
    /// The outcome is out; the connection is closing and is aborted if it
    /// is still open at `linger_until`.
    Closing { linger_until: Millis },
}

/// What a probe connection is for.
#[derive(Debug)]
enum Task {
    Connect,
    Http {
        request: Vec<u8>,
        /// How much of `request` smoltcp has taken.
        sent: usize,
        /// The answer so far, at most [`MAX_STATUS_LINE`] + 1 bytes.
        answer: Vec<u8>,
    },
    /// Boxed: a TLS client is large next to the other tasks.
    Https(Box<TlsProbe>),
}

/// An HTTPS probe: the TLS client over the probe's TCP connection and
/// what it has decrypted.
struct TlsProbe {
    /// The request was written to it as plaintext when the probe started;
    /// rustls sends it once the handshake is done.
    tls: ClientConnection,
    /// Whether the target sent any TCP payload at all (a close with none
    /// is `Reset`, as for HTTP).
    heard: bool,
    /// The end of the TCP stream was given to rustls.
    eof: bool,
    /// The plaintext answer so far, at most [`MAX_STATUS_LINE`] + 1 bytes.
    answer: Vec<u8>,
}

impl core::fmt::Debug for TlsProbe {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsProbe")
            .field("handshaking", &self.tls.is_handshaking())
            .field("heard", &self.heard)
            .field("eof", &self.eof)
            .field("answer", &self.answer.len())
            .finish_non_exhaustive()
    }
}

impl TlsProbe {
    /// Moves bytes between `socket` and the TLS client and reads the
    /// plaintext answer. Returns the outcome once there is one, and whether
    /// the socket changed (so the stack must run again).
    fn step(&mut self, socket: &mut tcp::Socket<'_>, established: bool) -> (Option<Outcome>, bool) {
        let mut changed = false;
        let mut buf = [0u8; 512];
        let mut status = parse_status_line(&self.answer);
        loop {
            // Ciphertext in. rustls takes what its buffer has room for; the
            // rest stays in the socket for the next round of this loop.
            let fed = socket
                .recv(|data| match self.tls.read_tls(&mut &*data) {
                    Ok(n) => (n, n),
                    Err(_) => (0, 0),
                })
                .unwrap_or(0);
            if fed > 0 {
                self.heard = true;
                changed = true;
            }
            // The target closed its side with a FIN: tell rustls, once,
            // after the last byte (it then knows a close_notify from a
            // truncation). A RST is left to the caller: `Reset`.
            let closing = fed == 0
                && established
                && !socket.may_recv()
                && socket.state() != tcp::State::Closed
                && !self.eof;
            if closing {
                self.eof = true;
                let _ = self.tls.read_tls(&mut &[][..]);
            }
            if self.tls.process_new_packets().is_err() {
                // A handshake failure, an alert, bytes that are not TLS.
                return (Some(Outcome::Malformed), true);
            }
            // Plaintext out of rustls, up to a decided status line.
            while status == StatusLine::Incomplete {
                match self.tls.reader().read(&mut buf) {
                    Ok(n @ 1..) => {
                        let room = (MAX_STATUS_LINE + 1).saturating_sub(self.answer.len());
                        self.answer.extend_from_slice(&buf[..n.min(room)]);
                        status = parse_status_line(&self.answer);
                    }
                    // Nothing yet (WouldBlock), a clean close_notify (0) or
                    // a truncated stream (UnexpectedEof, after `eof`).
                    _ => break,
                }
            }
            if status != StatusLine::Incomplete || (fed == 0 && !closing) {
                break;
            }
        }
        match status {
            StatusLine::Status(code) => {
                // A graceful end: close_notify, then the caller's FIN.
                self.tls.send_close_notify();
                self.flush(socket);
                (Some(Outcome::HttpStatus(code)), true)
            }
            StatusLine::Malformed => (Some(Outcome::Malformed), true),
            StatusLine::Incomplete if self.eof => {
                // Closed with no status line: nothing at all, or a finished
                // handshake and then nothing, is a reset connection, as for
                // HTTP; a handshake cut short or a partial line is not an
                // HTTP answer.
                let reset = self.answer.is_empty() && (!self.heard || !self.tls.is_handshaking());
                let outcome = if reset {
                    Outcome::Reset
                } else {
                    Outcome::Malformed
                };
                (Some(outcome), true)
            }
            StatusLine::Incomplete => (None, self.flush(socket) || changed),
        }
    }

    /// Ciphertext out: what rustls has to send, as far as the socket takes
    /// it (nothing before the TCP handshake). Returns whether it sent.
    fn flush(&mut self, socket: &mut tcp::Socket<'_>) -> bool {
        let mut sent = false;
        while self.tls.wants_write() && socket.may_send() {
            let n = socket
                .send(|room| {
                    let mut out: &mut [u8] = room;
                    let n = self.tls.write_tls(&mut out).unwrap_or(0);
                    (n, n)
                })
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            sent = true;
        }
        sent
    }
}

/// The certificate check of HTTPS probes: none. AWS documents that a load
/// balancer does not validate the certificates of its targets, so targets
/// may use self-signed or expired ones, and that HTTPS health checks
/// behave the same (Elastic Load Balancing, "Target groups for your
/// Network Load Balancers": routing, and "Health checks"). The certificate
/// is not parsed for trust, its name and dates are not looked at. What is
/// still checked: the handshake's signatures, with the provider's
/// algorithms, so the TLS exchange itself is a real one.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS client configuration of HTTPS probes, made once per process:
/// - no certificate validation ([`AnyCertificate`]);
/// - TLS 1.2 only: AWS documents that with HTTPS health checks, targets
///   that support only TLS 1.3 fail them ("Health checks for Network Load
///   Balancer target groups");
/// - no SNI: the server name is the target's IP address, which TLS never
///   sends as SNI, as AWS sends none to IP targets;
/// - no session resumption: each probe is a full handshake, so a target
///   whose handshake broke is seen at once, and no session cache grows.
fn tls_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    // rustls deprecates ring's provider for lacking post-quantum key
    // exchange, which only TLS 1.3 has: these probes speak TLS 1.2, and
    // carry a health check's GET, no secret.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Ok(CONFIG.get_or_init(|| Arc::new(config)).clone())
}

/// A TLS client to `ip` with `request` already written as plaintext.
fn tls_client(ip: Ipv4Addr, request: &[u8]) -> Result<ClientConnection, rustls::Error> {
    let name = ServerName::IpAddress(core::net::IpAddr::V4(ip).into());
    let mut tls = ClientConnection::new(tls_config()?, name)?;
    tls.writer()
        .write_all(request)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    Ok(tls)
}

/// One probe connection, keyed by its local port.
#[derive(Debug)]
struct Conn {
    id: ProbeId,
    handle: SocketHandle,
    remote: SocketAddrV4,
    task: Task,
    deadline: Millis,
    phase: Phase,
}

/// The health-check probes sent from one front address (see the module
/// documentation).
pub struct Prober {
    front: Ipv4Addr,
    ports: RangeInclusive<u16>,
    /// The next local port to try: ports are taken in turn so a port is
    /// reused as late as possible.
    cursor: u16,
    max_open: usize,
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    conns: HashMap<u16, Conn>,
    next_id: u64,
    outcomes: Vec<(ProbeId, Outcome)>,
    /// The latest time seen: smoltcp's clock must not go back.
    now: Millis,
    counters: ProberCounters,
}

impl core::fmt::Debug for Prober {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Prober")
            .field("front", &self.front)
            .field("ports", &self.ports)
            .field("open", &self.conns.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

fn instant(ms: Millis) -> Instant {
    Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

fn millis(at: Instant) -> Millis {
    Millis::try_from(at.total_millis()).unwrap_or(0)
}

impl Prober {
    /// A prober for `front` taking local ports from `ports`, with a random
    /// seed for TCP initial sequence numbers (so an outsider cannot guess
    /// them and forge a target's answers).
    pub fn new(front: Ipv4Addr, ports: RangeInclusive<u16>) -> Self {
        let seed = RandomState::new().hash_one(front);
        Self::with_seed(front, ports, seed)
    }

    /// [`Self::new`] with a given seed (for deterministic tests).
    pub fn with_seed(front: Ipv4Addr, ports: RangeInclusive<u16>, seed: u64) -> Self {
        let mut device = QueueDevice::new(MTU, TX_QUEUE);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = seed;
        // The stack's clock starts at 0 and follows the `now` of each call.
        let mut iface = Interface::new(config, &mut device, instant(0));
        iface.update_ip_addrs(|addrs| {
            // A /32 on a fresh interface: the address list has room for it.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(front), 32));
        });
        // Targets are not on-link of a /32; smoltcp sends only to routed
        // destinations, and with Medium::Ip the next hop is never used, so
        // a default route via the front address itself is enough.
        let _ = iface.routes_mut().add_default_ipv4_route(front);
        let cursor = *ports.start();
        Self {
            front,
            ports,
            cursor,
            max_open: DEFAULT_MAX_OPEN,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            next_id: 0,
            outcomes: Vec::new(),
            now: 0,
            counters: ProberCounters::default(),
        }
    }

    /// Sets the bound on open connections (at least 1).
    pub fn with_max_open(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    pub fn front(&self) -> Ipv4Addr {
        self.front
    }

    pub fn counters(&self) -> ProberCounters {
        self.counters
    }

    /// Open connections: undecided probes and decided ones still closing.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Undecided probes.
    pub fn pending(&self) -> usize {
        self.conns
            .values()
            .filter(|c| matches!(c.phase, Phase::Pending { .. }))
            .count()
    }

    /// Starts `probe` at `now`: opens a connection from the front address
    /// to `probe.dest`. Its SYN comes out of the next [`Self::transmit`].
    pub fn start(&mut self, probe: &Probe, now: Millis) -> Result<ProbeId, ProbeError> {
        let task = match &probe.kind {
            ProbeKind::TcpConnect => Task::Connect,
            ProbeKind::HttpGet { tls: true, request } => {
                match tls_client(*probe.dest.ip(), request) {
                    Ok(tls) => Task::Https(Box::new(TlsProbe {
                        tls,
                        heard: false,
                        eof: false,
                        answer: Vec::new(),
                    })),
                    Err(e) => {
                        self.counters.rejected_tls += 1;
                        return Err(ProbeError::Tls(e.to_string()));
                    }
                }
            }
            ProbeKind::HttpGet {
                tls: false,
                request,
            } => Task::Http {
                request: request.clone(),
                sent: 0,
                answer: Vec::new(),
            },
        };
        let dest = probe.dest;
        let ip = *dest.ip();
        if dest.port() == 0
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
            || ip == self.front
        {
            self.counters.rejected_destination += 1;
            return Err(ProbeError::BadDestination(dest));
        }
        if self.conns.len() >= self.max_open {
            self.counters.rejected_full += 1;
            return Err(ProbeError::Full(self.max_open));
        }
        let Some(port) = self.free_port() else {
            self.counters.rejected_no_port += 1;
            return Err(ProbeError::NoFreePort {
                start: *self.ports.start(),
                end: *self.ports.end(),
            });
        };
        self.advance_clock(now);
        let (rx_len, tx_len) = match &task {
            Task::Connect => (RX_BUFFER, 1),
            Task::Http { request, .. } => (RX_BUFFER, request.len().max(1)),
            Task::Https(_) => (TLS_RX_BUFFER, TLS_TX_BUFFER),
        };
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; rx_len]),
            tcp::SocketBuffer::new(vec![0; tx_len]),
        );
        // The request goes out whole at once; Nagle would only delay it.
        socket.set_nagle_enabled(false);
        let remote = (IpAddress::Ipv4(ip), dest.port());
        let local = (IpAddress::Ipv4(self.front), port);
        if socket.connect(self.iface.context(), remote, local).is_err() {
            // Only reachable for addresses refused above.
            self.counters.rejected_destination += 1;
            return Err(ProbeError::BadDestination(dest));
        }
        let handle = self.sockets.add(socket);
        let id = ProbeId(self.next_id);
        self.next_id += 1;
        self.conns.insert(
            port,
            Conn {
                id,
                handle,
                remote: dest,
                task,
                deadline: probe.deadline,
                phase: Phase::Pending { established: false },
            },
        );
        self.counters.started += 1;
        Ok(id)
    }

    /// Feeds one IPv4 packet from a target at `now`. Returns whether it was
    /// for this prober: TCP from a probe connection's target to its port on
    /// the front address, or an ICMP destination unreachable quoting one
    /// (it refuses a probe still waiting for its SYN-ACK). Anything
    /// else is counted and left alone — in particular no RST answers a
    /// stray packet, since the front address also carries the NLB's real
    /// flows.
    pub fn receive(&mut self, packet: &[u8], now: Millis) -> bool {
        let Some(packet) = self.check(packet) else {
            self.counters.dropped_malformed += 1;
            return false;
        };
        match packet {
            Incoming::Tcp(port, bytes) => {
                self.counters.packets_in += 1;
                self.device.rx.push_back(bytes.to_vec());
                self.advance(now, Some(port));
                true
            }
            Incoming::Unreachable(port) => {
                self.counters.packets_in += 1;
                self.unreachable(port, now);
                true
            }
            Incoming::Unmatched => {
                self.counters.dropped_unmatched += 1;
                false
            }
        }
    }

    /// The packets to send to targets at `now`, each a whole IPv4 packet
    /// whose destination is the target.
    pub fn transmit(&mut self, now: Millis) -> Vec<Vec<u8>> {
        self.advance(now, None);
        let out: Vec<Vec<u8>> = self.device.tx.drain(..).collect();
        self.counters.packets_out += out.len() as u64;
        out
    }

    /// The probes decided by `now`, each once.
    pub fn outcomes(&mut self, now: Millis) -> Vec<(ProbeId, Outcome)> {
        self.advance(now, None);
        core::mem::take(&mut self.outcomes)
    }

    /// When the prober next needs [`Self::transmit`] or [`Self::outcomes`]
    /// called: a retransmission, a delayed ACK, a deadline, a linger end;
    /// `None` with nothing open. A time at or before `now` means at once.
    pub fn poll_at(&mut self, now: Millis) -> Option<Millis> {
        let stack = self
            .iface
            .poll_at(instant(now.max(self.now)), &self.sockets)
            .map(millis);
        let own = self
            .conns
            .values()
            .map(|c| match c.phase {
                Phase::Pending { .. } => c.deadline,
                Phase::Closing { linger_until } => linger_until,
            })
            .min();
        let waiting = (!self.outcomes.is_empty() || !self.device.tx.is_empty()).then_some(now);
        [stack, own, waiting].into_iter().flatten().min()
    }

    fn advance_clock(&mut self, now: Millis) {
        self.now = self.now.max(now);
    }

    /// Runs the stack to `now`, decides what can be decided, and starts the
    /// closes and aborts that follow: for the connection on `only` (a
    /// packet just came for it; the others' timers are looked at by the
    /// next [`Self::transmit`] or [`Self::outcomes`]), or for all.
    fn advance(&mut self, now: Millis, only: Option<u16>) {
        self.advance_clock(now);
        let now = self.now;
        self.iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        let mut acted = false;
        match only {
            Some(port) => acted = self.inspect(port, now),
            None => {
                let ports: Vec<u16> = self.conns.keys().copied().collect();
                for port in ports {
                    acted |= self.inspect(port, now);
                }
            }
        }
        if acted {
            // Send the FINs and RSTs just decided, so aborted connections
            // can be dropped below.
            self.iface
                .poll(instant(now), &mut self.device, &mut self.sockets);
        }
        self.reap();
    }

    /// Looks at one connection after the stack ran: reads its answer,
    /// decides its outcome, sends its request, closes or aborts it. Returns
    /// whether it changed the socket (so the stack must run again).
    fn inspect(&mut self, port: u16, now: Millis) -> bool {
        let Some(conn) = self.conns.get_mut(&port) else {
            return false;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
        let state = socket.state();
        let mut buf = [0u8; 512];
        let Phase::Pending { established } = &mut conn.phase else {
            // Decided: keep reading so the peer's answer never stalls our
            // close on a full window; cut a close that takes too long.
            while matches!(socket.recv_slice(&mut buf), Ok(1..)) {}
            if let Phase::Closing { linger_until } = conn.phase
                && now >= linger_until
                && state != tcp::State::Closed
            {
                socket.abort();
                self.counters.linger_aborts += 1;
                return true;
            }
            return false;
        };
        let synchronized = !matches!(
            state,
            tcp::State::Closed | tcp::State::SynSent | tcp::State::SynReceived | tcp::State::Listen
        );
        *established |= synchronized;
        let established = *established;
        let mut changed = false;
        let decided = match &mut conn.task {
            Task::Connect if established => Some(Outcome::Connected),
            Task::Connect => None,
            Task::Http {
                request,
                sent,
                answer,
            } => {
                if let Some(rest) = request.get(*sent..)
                    && !rest.is_empty()
                    && socket.may_send()
                    && let Ok(n) = socket.send_slice(rest)
                {
                    *sent += n;
                    changed |= n > 0;
                }
                let mut status = parse_status_line(answer);
                while status == StatusLine::Incomplete {
                    match socket.recv_slice(&mut buf) {
                        Ok(n @ 1..) => {
                            let room = (MAX_STATUS_LINE + 1).saturating_sub(answer.len());
                            answer.extend_from_slice(&buf[..n.min(room)]);
                            status = parse_status_line(answer);
                            changed = true;
                        }
                        _ => break,
                    }
                }
                match status {
                    StatusLine::Status(code) => Some(Outcome::HttpStatus(code)),
                    StatusLine::Malformed => Some(Outcome::Malformed),
                    // The peer closed its side with no complete line: an
                    // empty close is a reset connection, a partial line a
                    // malformed answer.
                    StatusLine::Incomplete if established && !socket.may_recv() => {
                        Some(if answer.is_empty() {
                            Outcome::Reset
                        } else {
                            Outcome::Malformed
                        })
                    }
                    StatusLine::Incomplete => None,
                }
            }
            Task::Https(probe) => {
                let (outcome, moved) = probe.step(socket, established);
                changed |= moved;
                outcome
            }
        };
        let decided = match decided {
            Some(outcome) => Some(outcome),
            // Closed before deciding: a RST to the SYN is a refusal, after
            // the handshake a reset.
            None if state == tcp::State::Closed => Some(if established {
                Outcome::Reset
            } else {
                Outcome::Refused
            }),
            None if now >= conn.deadline => Some(Outcome::Timeout),
            None => None,
        };
        let Some(outcome) = decided else {
            return changed;
        };
        match outcome {
            Outcome::Connected | Outcome::HttpStatus(_) => socket.close(),
            Outcome::Malformed | Outcome::Timeout => socket.abort(),
            // Already closed by the peer (or half-closed with nothing said:
            // finish the close politely).
            Outcome::Refused | Outcome::Reset => socket.close(),
        }
        conn.phase = Phase::Closing {
            linger_until: now.saturating_add(LINGER),
        };
        let id = conn.id;
        self.record(id, outcome);
        true
    }

    fn record(&mut self, id: ProbeId, outcome: Outcome) {
        let c = &mut self.counters;
        match outcome {
            Outcome::Connected => c.connected += 1,
            Outcome::Refused => c.refused += 1,
            Outcome::Reset => c.reset += 1,
            Outcome::Timeout => c.timeout += 1,
            Outcome::HttpStatus(_) => c.http_status += 1,
            Outcome::Malformed => c.malformed += 1,
        }
        self.outcomes.push((id, outcome));
    }

    /// Drops decided connections the stack has finished with (closed, any
    /// RST already sent), freeing their ports.
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        self.conns.retain(|_, conn| {
            let done = matches!(conn.phase, Phase::Closing { .. })
                && sockets.get::<tcp::Socket>(conn.handle).state() == tcp::State::Closed;
            if done {
                sockets.remove(conn.handle);
            }
            !done
        });
    }

    /// An ICMP destination unreachable about a probe's packet to its
    /// target: a SYN that cannot arrive is refused, as an OS stack reports
    /// it; for an established connection it is only advice, as in TCP.
    fn unreachable(&mut self, port: u16, now: Millis) {
        self.advance_clock(now);
        let Some(conn) = self.conns.get(&port) else {
            return;
        };
        let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
        if !matches!(conn.phase, Phase::Pending { established: false })
            || socket.state() != tcp::State::SynSent
        {
            return;
        }
        let id = conn.id;
        let handle = conn.handle;
        // Dropped without a RST: the target cannot be reached anyway.
        self.sockets.remove(handle);
        self.conns.remove(&port);
        self.record(id, Outcome::Refused);
    }

    fn free_port(&mut self) -> Option<u16> {
        let (start, end) = (*self.ports.start(), *self.ports.end());
        if start > end {
            return None;
        }
        let span = u32::from(end - start) + 1;
        for _ in 0..span {
            let port = self.cursor;
            self.cursor = if port >= end || port < start {
                start
            } else {
                port + 1
            };
            if port != 0 && (start..=end).contains(&port) && !self.conns.contains_key(&port) {
                return Some(port);
            }
        }
        None
    }

    /// Sorts an incoming packet: malformed (`None`), TCP for an open
    /// connection (the bytes to feed, trimmed to the IP length), an ICMP
    /// error about one, or not ours.
    fn check<'a>(&self, bytes: &'a [u8]) -> Option<Incoming<'a>> {
        if bytes.first().map(|b| b >> 4) != Some(4) {
            return None;
        }
        let ip = Ipv4Packet::new_checked(bytes).ok()?;
        if !ip.verify_checksum() {
            return None;
        }
        // smoltcp is built without reassembly, and probe answers are far
        // too small to be fragmented.
        if ip.more_frags() || ip.frag_offset() != 0 {
            return None;
        }
        let len = usize::from(ip.total_len());
        let header = usize::from(ip.header_len());
        let bytes = bytes.get(..len)?;
        let payload = bytes.get(header..)?;
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        if dst != self.front {
            return Some(Incoming::Unmatched);
        }
        match ip.next_header() {
            IpProtocol::Tcp => {
                let tcp = TcpPacket::new_checked(payload).ok()?;
                if !tcp.verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst)) {
                    return None;
                }
                let from = SocketAddrV4::new(src, tcp.src_port());
                Some(match self.conns.get(&tcp.dst_port()) {
                    Some(conn) if conn.remote == from => Incoming::Tcp(tcp.dst_port(), bytes),
                    _ => Incoming::Unmatched,
                })
            }
            IpProtocol::Icmp => Some(self.check_icmp(payload).unwrap_or(Incoming::Unmatched)),
            _ => Some(Incoming::Unmatched),
        }
    }

    /// An ICMP destination unreachable quoting a TCP segment from the front
    /// address to an open connection's target.
    fn check_icmp(&self, icmp: &[u8]) -> Option<Incoming<'static>> {
        const DEST_UNREACHABLE: u8 = 3;
        // type, code, checksum, unused (4), then the quoted IP header and
        // at least 8 bytes of its payload (RFC 792).
        let [kind, _code, ..] = *icmp else {
            return None;
        };
        if kind != DEST_UNREACHABLE || internet_checksum(icmp) != 0 {
            return None;
        }
        let quoted = icmp.get(8..)?;
        let ihl = usize::from(quoted.first()? & 0x0f) * 4;
        if quoted.first()? >> 4 != 4 || ihl < 20 || *quoted.get(9)? != 6 {
            return None;
        }
        let addr = |at: usize| -> Option<Ipv4Addr> {
            let b: [u8; 4] = quoted.get(at..at + 4)?.try_into().ok()?;
            Some(Ipv4Addr::from(b))
        };
        let port = |at: usize| -> Option<u16> {
            let b: [u8; 2] = quoted.get(at..at + 2)?.try_into().ok()?;
            Some(u16::from_be_bytes(b))
        };
        let (src, dst) = (addr(12)?, addr(16)?);
        let (sport, dport) = (port(ihl)?, port(ihl + 2)?);
        let conn = self.conns.get(&sport)?;
        (src == self.front && conn.remote == SocketAddrV4::new(dst, dport))
            .then_some(Incoming::Unreachable(sport))
    }
}

/// A sorted incoming packet (see [`Prober::check`]).
enum Incoming<'a> {
    /// The packet, for the connection on this local port.
    Tcp(u16, &'a [u8]),
    Unreachable(u16),
    Unmatched,
}

/// The ones' complement sum of `bytes` (RFC 1071); 0 over a message with a
/// correct checksum field.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in bytes.chunks(2) {
        let word = match *chunk {
            [a, b] => u16::from_be_bytes([a, b]),
            [a] => u16::from_be_bytes([a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
