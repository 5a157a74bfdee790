//! The packet-level health-check prober against targets made of a second
//! smoltcp stack (spec 9.4's TCP, HTTP and HTTPS checks): the outcomes of
//! each kind of answer (connect, status codes, refusal, reset, silence,
//! garbage, ICMP unreachable, TLS handshakes that succeed or fail), local
//! port reuse, the bound on open probes, counted drops of bad packets, and
//! the prober driving a real `HealthChecker`.
//!
//! No sockets: the test shuttles the IPv4 packets between the prober and
//! the target stack, as the node's shell does over Geneve. HTTPS targets
//! are a rustls server over the target stack's socket, with a self-signed
//! certificate made by rcgen.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::io::{Read, Write};
use std::sync::{Arc, OnceLock};

use openvpc_hyperplane::health::{
    HealthCheckConfig, HealthCheckParams, HealthChecker, Millis, Outcome, Probe, ProbeKind, Target,
    TargetState, http_request,
};
use openvpc_hyperplane::probe::{LINGER, ProbeError, ProbeId, Prober};
use openvpc_packet::queue_device::QueueDevice;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Packet, TcpPacket};

const FRONT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 50);
const TARGET: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 10);
const PORTS: core::ops::RangeInclusive<u16> = 40_000..=40_099;

/// How the target's listener behaves.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Reads the request, answers these bytes, closes.
    Answer(&'static [u8]),
    /// Accepts the connection, then resets it once the request is in.
    ResetAfterRequest,
    /// Accepts and never answers.
    Mute,
    /// Answers these bytes as soon as any bytes arrive (an HTTP server
    /// answering a TLS ClientHello with a 400), then closes.
    AnswerAnything(&'static [u8]),
    /// An HTTPS server with a self-signed certificate: completes the TLS
    /// handshake, reads the request, answers these bytes, sends
    /// close_notify and closes.
    Https(&'static [u8]),
    /// [`Behaviour::Https`] speaking TLS 1.3 only.
    Https13Only(&'static [u8]),
}

/// One listening socket of the target and its connection's state.
struct Listener {
    handle: SocketHandle,
    port: u16,
    behaviour: Behaviour,
    /// Plaintext received on the connection.
    got: Vec<u8>,
    /// The TLS server of an HTTPS listener's connection.
    tls: Option<ServerConnection>,
    answered: bool,
}

/// The TLS server configurations of HTTPS targets: a self-signed
/// certificate for a name that is not the target's address (the prober
/// must accept it anyway), TLS 1.2 and 1.3 or TLS 1.3 only.
fn server_config(tls13_only: bool) -> Arc<ServerConfig> {
    static BOTH: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    static TLS13: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    let make = || {
        let key = rcgen::generate_simple_self_signed(vec!["target.invalid".to_string()])
            .expect("a self-signed certificate");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        // Only a test target: the prober's provider is ring too.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::ALL_VERSIONS
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![key.cert.der().clone()], der)
            .expect("a certificate");
        Arc::new(config)
    };
    let cell = if tls13_only { &TLS13 } else { &BOTH };
    cell.get_or_init(make).clone()
}

/// The target: a smoltcp stack owning `TARGET` with listeners on some
/// ports (any other port answers a SYN with a RST, as a host with nothing
/// listening does), or a black hole that swallows everything.
struct Server {
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    black_hole: bool,
    /// The SNI of each TLS handshake the target saw.
    sni: Vec<Option<String>>,
    /// The TLS version of each handshake the target completed.
    versions: Vec<rustls::ProtocolVersion>,
}

impl Server {
    fn new() -> Self {
        let mut dev = QueueDevice::new(1500, usize::MAX);
        let mut iface = Interface::new(
            Config::new(HardwareAddress::Ip),
            &mut dev,
            Instant::from_millis(0),
        );
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(TARGET), 24))
                .expect("room for one address");
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Addr::new(10, 0, 2, 1))
            .expect("room for a route");
        Self {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            listeners: Vec::new(),
            black_hole: false,
            sni: Vec::new(),
            versions: Vec::new(),
        }
    }

    fn black_hole() -> Self {
        Self {
            black_hole: true,
            ..Self::new()
        }
    }

    /// Listens on `port` with `behaviour`, `count` connections at a time.
    fn listen(mut self, port: u16, behaviour: Behaviour, count: usize) -> Self {
        for _ in 0..count {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 4096]),
                tcp::SocketBuffer::new(vec![0; 4096]),
            );
            s.listen(port).expect("listen");
            let h = self.sockets.add(s);
            self.listeners.push(Listener {
                handle: h,
                port,
                behaviour,
                got: Vec::new(),
                tls: None,
                answered: false,
            });
        }
        self
    }

    fn poll(&mut self, now: Millis) {
        let at = Instant::from_millis(now as i64);
        self.iface.poll(at, &mut self.dev, &mut self.sockets);
        for l in &mut self.listeners {
            let s = self.sockets.get_mut::<tcp::Socket>(l.handle);
            // Closed since the last round (any RST already sent): listen
            // for the next connection.
            if s.state() == tcp::State::Closed {
                s.listen(l.port).expect("listen again");
                l.tls = None;
                l.answered = false;
                l.got.clear();
            }
            if let Behaviour::Https(answer) | Behaviour::Https13Only(answer) = l.behaviour {
                let tls13_only = matches!(l.behaviour, Behaviour::Https13Only(_));
                serve_tls(s, l, answer, tls13_only, &mut self.sni, &mut self.versions);
                continue;
            }
            let got = &mut l.got;
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = s.recv_slice(&mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            let request_in = got.windows(4).any(|w| w == b"\r\n\r\n");
            match l.behaviour {
                Behaviour::AnswerAnything(bytes) if !got.is_empty() && s.may_send() => {
                    s.send_slice(bytes).expect("room for the answer");
                    s.close();
                    got.clear();
                }
                Behaviour::Answer(bytes) if request_in && s.may_send() => {
                    s.send_slice(bytes).expect("room for the answer");
                    s.close();
                    got.clear();
                }
                Behaviour::ResetAfterRequest if request_in => {
                    s.abort();
                    got.clear();
                }
                _ => {}
            }
            // The prober closed a TCP check: close our side too.
            if s.state() == tcp::State::CloseWait {
                s.close();
            }
        }
        self.iface.poll(at, &mut self.dev, &mut self.sockets);
    }
}

/// One round of an HTTPS listener's connection: TLS bytes in from the
/// socket, the request read as plaintext, the answer written once it is
/// in, TLS bytes out; closed after the answer (or an alert) is sent.
fn serve_tls(
    s: &mut tcp::Socket<'_>,
    l: &mut Listener,
    answer: &[u8],
    tls13_only: bool,
    sni: &mut Vec<Option<String>>,
    versions: &mut Vec<rustls::ProtocolVersion>,
) {
    if !s.may_recv() && !s.may_send() {
        return;
    }
    let tls = l.tls.get_or_insert_with(|| {
        ServerConnection::new(server_config(tls13_only)).expect("a TLS server")
    });
    let mut failed = false;
    loop {
        let n = s
            .recv(|d| match tls.read_tls(&mut &*d) {
                Ok(n) => (n, n),
                Err(_) => (0, 0),
            })
            .unwrap_or(0);
        let was_handshaking = tls.is_handshaking();
        if tls.process_new_packets().is_err() {
            // rustls queued an alert for the client: send it and close.
            failed = true;
            break;
        }
        if was_handshaking && !tls.is_handshaking() {
            sni.push(tls.server_name().map(str::to_string));
            versions.extend(tls.protocol_version());
        }
        let mut buf = [0u8; 1024];
        while let Ok(k @ 1..) = tls.reader().read(&mut buf) {
            l.got.extend_from_slice(&buf[..k]);
        }
        if n == 0 {
            break;
        }
    }
    if !l.answered && l.got.windows(4).any(|w| w == b"\r\n\r\n") {
        tls.writer().write_all(answer).expect("room for the answer");
        tls.send_close_notify();
        l.answered = true;
    }
    while tls.wants_write() && s.may_send() {
        let n = s
            .send(|room| {
                let mut out: &mut [u8] = room;
                let n = tls.write_tls(&mut out).unwrap_or(0);
                (n, n)
            })
            .unwrap_or(0);
        if n == 0 {
            break;
        }
    }
    if (l.answered || failed) && !tls.wants_write() && s.may_send() {
        s.close();
    }
    // The prober closed first: close our side too.
    if s.state() == tcp::State::CloseWait {
        s.close();
    }
}

/// The prober and its target, with the packets between them.
struct Net {
    prober: Prober,
    server: Server,
    now: Millis,
    outcomes: Vec<(ProbeId, Outcome)>,
    /// Every packet the prober sent, in order.
    sent: Vec<Vec<u8>>,
}

impl Net {
    fn new(server: Server) -> Self {
        Self {
            prober: Prober::with_seed(FRONT, PORTS, 7),
            server,
            now: 0,
            outcomes: Vec::new(),
            sent: Vec::new(),
        }
    }

    /// One millisecond of traffic.
    fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        for p in self.prober.transmit(now) {
            if !self.server.black_hole {
                self.server.dev.rx.push_back(p.clone());
            }
            self.sent.push(p);
        }
        self.server.poll(now);
        while let Some(p) = self.server.dev.tx.pop_front() {
            assert!(self.prober.receive(&p, now), "a target's answer is ours");
        }
        self.outcomes.extend(self.prober.outcomes(now));
    }

    /// Runs until `id` is decided (at most `limit` ms); its outcome.
    fn outcome_of(&mut self, id: ProbeId, limit: Millis) -> Outcome {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if let Some(&(_, o)) = self.outcomes.iter().find(|(i, _)| *i == id) {
                return o;
            }
        }
        panic!("probe {id:?} undecided after {limit} ms");
    }

    /// Runs `ms` milliseconds.
    fn run(&mut self, ms: Millis) {
        for _ in 0..ms {
            self.step();
        }
    }
}

fn probe(port: u16, kind: ProbeKind, deadline: Millis) -> Probe {
    Probe {
        target: Target::new("i-1", TARGET, port),
        dest: SocketAddrV4::new(TARGET, port),
        kind,
        deadline,
    }
}

fn http(port: u16, deadline: Millis) -> Probe {
    let kind = ProbeKind::HttpGet {
        tls: false,
        request: http_request("/health", TARGET, port),
    };
    probe(port, kind, deadline)
}

fn tcp_check(port: u16, deadline: Millis) -> Probe {
    probe(port, ProbeKind::TcpConnect, deadline)
}

/// The TCP header of a packet the prober sent.
fn tcp_of(p: &[u8]) -> (u16, bool, bool, bool) {
    let ip = Ipv4Packet::new_checked(p).expect("ipv4");
    assert_eq!(ip.src_addr(), FRONT, "probes leave from the front address");
    assert_eq!(ip.dst_addr(), TARGET, "probes go to the target");
    let t = TcpPacket::new_checked(ip.payload()).expect("tcp");
    (t.src_port(), t.syn() && !t.ack(), t.fin(), t.rst())
}

const OK_200: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const UNAVAILABLE_503: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn tcp_check_connects_then_closes_with_a_fin() {
    // Spec 9.4: a TCP check passes once the handshake completes.
    let mut net = Net::new(Server::new().listen(80, Behaviour::Mute, 1));
    let id = net.prober.start(&tcp_check(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 100), Outcome::Connected);
    net.run(100);
    let flags: Vec<_> = net.sent.iter().map(|p| tcp_of(p)).collect();
    assert!(flags.iter().any(|f| f.2), "closed with a FIN");
    assert!(
        !flags.iter().any(|f| f.3),
        "never a RST to a healthy target"
    );
    let c = net.prober.counters();
    assert_eq!((c.started, c.connected), (1, 1));
}

#[test]
fn http_check_reads_the_status_200() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::Answer(OK_200), 1));
    let id = net.prober.start(&http(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::HttpStatus(200));
    // The connection closes both ways and its port is freed.
    net.run(50);
    assert_eq!(
        net.prober.open(),
        0,
        "closed by the target: no TIME_WAIT here"
    );
    assert_eq!(net.prober.counters().http_status, 1);
}

#[test]
fn http_check_reports_a_503() {
    let mut net = Net::new(Server::new().listen(8080, Behaviour::Answer(UNAVAILABLE_503), 1));
    let id = net.prober.start(&http(8080, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::HttpStatus(503));
}

#[test]
fn closed_port_is_refused() {
    // The target's stack answers the SYN with a RST.
    let mut net = Net::new(Server::new());
    let tcp = net.prober.start(&tcp_check(81, 5_000), 0).expect("start");
    let get = net.prober.start(&http(82, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(tcp, 50), Outcome::Refused);
    assert_eq!(net.outcome_of(get, 50), Outcome::Refused);
    net.run(5);
    assert_eq!(net.prober.open(), 0, "refused connections free their port");
    assert_eq!(net.prober.counters().refused, 2);
}

#[test]
fn silence_times_out_at_the_deadline_and_aborts() {
    let mut net = Net::new(Server::black_hole());
    let deadline = 2_000;
    let id = net
        .prober
        .start(&tcp_check(80, deadline), 0)
        .expect("start");
    net.run(deadline - 1);
    assert!(
        net.outcomes.is_empty(),
        "nothing decided before the deadline"
    );
    let at = net.prober.poll_at(net.now).expect("a probe is pending");
    assert!(at <= deadline, "woken by the deadline at the latest ({at})");
    assert_eq!(net.outcome_of(id, 1), Outcome::Timeout);
    assert_eq!(net.now, deadline);
    let syns = net.sent.iter().filter(|p| tcp_of(p).1).count();
    assert!(syns >= 2, "the SYN is retransmitted while waiting ({syns})");
    net.run(1);
    assert!(
        tcp_of(net.sent.last().expect("a packet")).3,
        "aborted with a RST"
    );
    assert_eq!(net.prober.open(), 0);
    assert_eq!(net.prober.counters().timeout, 1);
}

#[test]
fn http_check_times_out_when_the_target_accepts_but_never_answers() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::Mute, 1));
    let id = net.prober.start(&http(80, 300), 0).expect("start");
    assert_eq!(net.outcome_of(id, 400), Outcome::Timeout);
    assert_eq!(net.now, 300);
}

#[test]
fn garbage_answer_is_malformed() {
    let mut net =
        Net::new(Server::new().listen(22, Behaviour::Answer(b"SSH-2.0-OpenSSH_9.6\r\n"), 1));
    let id = net.prober.start(&http(22, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::Malformed);
    assert_eq!(net.prober.counters().malformed, 1);
}

#[test]
fn truncated_status_line_then_close_is_malformed() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::Answer(b"HTTP/1.1 20"), 1));
    let id = net.prober.start(&http(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::Malformed);
}

#[test]
fn rst_after_the_request_is_reset() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::ResetAfterRequest, 1));
    let id = net.prober.start(&http(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::Reset);
    net.run(5);
    assert_eq!(net.prober.open(), 0);
    assert_eq!(net.prober.counters().reset, 1);
}

#[test]
fn close_without_an_answer_is_reset() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::Answer(b""), 1));
    let id = net.prober.start(&http(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::Reset);
}

fn https(port: u16, deadline: Millis) -> Probe {
    let kind = ProbeKind::HttpGet {
        tls: true,
        request: http_request("/health", TARGET, port),
    };
    probe(port, kind, deadline)
}

/// The TCP payloads of the packets the prober sent, in order.
fn payloads(sent: &[Vec<u8>]) -> Vec<Vec<u8>> {
    sent.iter()
        .filter_map(|p| {
            let ip = Ipv4Packet::new_checked(p.as_slice()).ok()?;
            let t = TcpPacket::new_checked(ip.payload()).ok()?;
            (!t.payload().is_empty()).then(|| t.payload().to_vec())
        })
        .collect()
}

#[test]
fn https_check_reads_the_status_200_over_tls() {
    // Spec 9.4's HTTPS check: the GET goes inside TLS, and a self-signed
    // certificate for another name passes, as AWS does not validate
    // targets' certificates.
    let mut net = Net::new(Server::new().listen(443, Behaviour::Https(OK_200), 1));
    let id = net.prober.start(&https(443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 500), Outcome::HttpStatus(200));
    let sent = payloads(&net.sent);
    let first = sent.first().expect("a ClientHello");
    assert_eq!(first[..2], [0x16, 0x03], "a TLS handshake record first");
    assert!(
        !sent.iter().any(|p| p.windows(4).any(|w| w == b"GET ")),
        "the request never leaves in plaintext"
    );
    // AWS sends no SNI to IP targets and speaks TLS 1.2 to them.
    assert_eq!(net.server.sni, [None]);
    assert_eq!(net.server.versions, [rustls::ProtocolVersion::TLSv1_2]);
    // Closed both ways: close_notify and FIN, no RST; the port is freed.
    net.run(50);
    assert!(!net.sent.iter().any(|p| tcp_of(p).3), "no RST");
    assert!(net.sent.iter().any(|p| tcp_of(p).2), "a FIN");
    assert_eq!(net.prober.open(), 0);
    assert_eq!(net.prober.counters().http_status, 1);
}

#[test]
fn https_check_reports_a_503() {
    let mut net = Net::new(Server::new().listen(8443, Behaviour::Https(UNAVAILABLE_503), 1));
    let id = net.prober.start(&https(8443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 500), Outcome::HttpStatus(503));
}

#[test]
fn https_check_against_plain_http_is_malformed() {
    // The target answers the ClientHello with plain HTTP: the handshake
    // fails, which health.rs counts as Malformed (a failed check), never a
    // status read from outside TLS.
    const BAD_REQUEST: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let mut net = Net::new(Server::new().listen(443, Behaviour::AnswerAnything(BAD_REQUEST), 1));
    let id = net.prober.start(&https(443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 500), Outcome::Malformed);
    assert_eq!(net.prober.counters().malformed, 1);
    net.run(5);
    assert_eq!(net.prober.open(), 0, "aborted");
}

#[test]
fn https_check_of_a_tls13_only_target_fails() {
    // AWS: with HTTPS health checks, targets that support only TLS 1.3
    // fail them. The target's alert ends the handshake: Malformed.
    let mut net = Net::new(Server::new().listen(443, Behaviour::Https13Only(OK_200), 1));
    let id = net.prober.start(&https(443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 500), Outcome::Malformed);
    assert!(net.server.versions.is_empty(), "no handshake completed");
}

#[test]
fn https_check_times_out_when_the_handshake_never_completes() {
    // The target accepts the TCP connection and never answers the
    // ClientHello.
    let mut net = Net::new(Server::new().listen(443, Behaviour::Mute, 1));
    let id = net.prober.start(&https(443, 300), 0).expect("start");
    assert_eq!(net.outcome_of(id, 400), Outcome::Timeout);
    assert_eq!(net.now, 300);
    assert_eq!(net.prober.counters().timeout, 1);
}

#[test]
fn https_check_closed_without_an_answer_is_reset() {
    // Like HTTP: a close with nothing said (here: a FIN in answer to the
    // ClientHello) is a reset connection.
    let mut net = Net::new(Server::new().listen(443, Behaviour::AnswerAnything(b""), 1));
    let id = net.prober.start(&https(443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 500), Outcome::Reset);
}

#[test]
fn https_to_a_closed_port_is_refused() {
    let mut net = Net::new(Server::new());
    let id = net.prober.start(&https(443, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 50), Outcome::Refused);
}

#[test]
fn ports_cycle_and_time_wait_holds_a_port() {
    // Two local ports. A TCP check closes first, so its port sits in
    // TIME_WAIT (10 s in smoltcp) and is not reused until that ends.
    let mut net = Net::new(Server::new().listen(80, Behaviour::Mute, 2));
    net.prober = Prober::with_seed(FRONT, 40_000..=40_001, 7);
    let a = net.prober.start(&tcp_check(80, 5_000), 0).expect("start a");
    assert_eq!(net.outcome_of(a, 100), Outcome::Connected);
    let b = net
        .prober
        .start(&tcp_check(80, 5_000), net.now)
        .expect("start b");
    assert_eq!(net.outcome_of(b, 100), Outcome::Connected);
    let src: Vec<u16> = net
        .sent
        .iter()
        .filter(|p| tcp_of(p).1)
        .map(|p| tcp_of(p).0)
        .collect();
    assert_eq!(src, [40_000, 40_001], "ports are taken in turn");
    net.run(100);
    assert_eq!(net.prober.open(), 2, "both ports in TIME_WAIT");
    assert_eq!(
        net.prober.start(&tcp_check(80, net.now + 5_000), net.now),
        Err(ProbeError::NoFreePort {
            start: 40_000,
            end: 40_001
        })
    );
    assert_eq!(net.prober.counters().rejected_no_port, 1);
    // TIME_WAIT ends: the first port is free again.
    net.run(10_000);
    assert_eq!(net.prober.open(), 0);
    let c = net
        .prober
        .start(&tcp_check(80, net.now + 5_000), net.now)
        .expect("c");
    assert_eq!(net.outcome_of(c, 100), Outcome::Connected);
    let last_syn = net.sent.iter().rev().find(|p| tcp_of(p).1).expect("a SYN");
    assert_eq!(tcp_of(last_syn).0, 40_000);
}

#[test]
fn open_probes_are_bounded() {
    let mut net = Net::new(Server::black_hole());
    net.prober = Prober::with_seed(FRONT, PORTS, 7).with_max_open(2);
    net.prober.start(&tcp_check(80, 1_000), 0).expect("first");
    net.prober.start(&tcp_check(81, 1_000), 0).expect("second");
    assert_eq!(
        net.prober.start(&tcp_check(82, 1_000), 0),
        Err(ProbeError::Full(2))
    );
    assert_eq!(net.prober.counters().rejected_full, 1);
    // Once the two time out, there is room again.
    net.run(1_001);
    assert_eq!(net.prober.counters().timeout, 2);
    net.prober
        .start(&tcp_check(82, 3_000), net.now)
        .expect("room again");
}

#[test]
fn bad_destinations_are_refused() {
    let mut net = Net::new(Server::new());
    for dest in [
        SocketAddrV4::new(TARGET, 0),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 80),
        SocketAddrV4::new(FRONT, 80),
    ] {
        let mut p = tcp_check(80, 1_000);
        p.dest = dest;
        assert_eq!(
            net.prober.start(&p, 0),
            Err(ProbeError::BadDestination(dest))
        );
    }
    assert_eq!(net.prober.counters().rejected_destination, 4);
}

/// The RFC 1071 checksum.
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 header + `payload` with protocol `proto`, from `src` to `dst`.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let len = (20 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    p[2..4].copy_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

#[test]
fn icmp_unreachable_for_the_syn_is_refused() {
    let mut net = Net::new(Server::black_hole());
    let id = net.prober.start(&tcp_check(80, 5_000), 0).expect("start");
    net.step();
    let syn = net.sent.first().expect("the SYN").clone();
    // Type 3 code 1 (host unreachable), quoting the SYN's header + 8 bytes.
    let mut icmp = vec![3, 1, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&syn[..28]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let packet = ipv4(Ipv4Addr::new(10, 0, 2, 1), FRONT, 1, &icmp);
    assert!(net.prober.receive(&packet, net.now));
    assert_eq!(net.prober.outcomes(net.now), [(id, Outcome::Refused)]);
    assert_eq!(net.prober.open(), 0);
}

#[test]
fn garbage_and_stray_packets_are_counted_drops() {
    let mut net = Net::new(Server::new().listen(80, Behaviour::Mute, 1));
    let id = net.prober.start(&tcp_check(80, 5_000), 0).expect("start");
    net.step();
    let syn = net.sent.first().expect("the SYN").clone();
    let p = &mut net.prober;
    // Malformed: not IPv4, truncated, bad IP checksum, bad TCP checksum,
    // a fragment.
    assert!(!p.receive(b"", 1));
    assert!(!p.receive(b"garbage that is no packet", 1));
    assert!(!p.receive(&[0x60; 40], 1));
    let mut seg = vec![0u8; 20];
    seg[12] = 0x50;
    let good = ipv4(TARGET, FRONT, 6, &seg);
    assert!(!p.receive(&good[..30], 1), "truncated");
    let mut bad_ip = good.clone();
    bad_ip[8] ^= 1;
    assert!(!p.receive(&bad_ip, 1), "bad IP checksum");
    assert!(!p.receive(&good, 1), "bad TCP checksum (zero)");
    let mut frag = ipv4(TARGET, FRONT, 6, &seg);
    frag[6] = 0x20; // more fragments
    let c = checksum(&{
        let mut h = frag[..20].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert!(!p.receive(&frag, 1), "a fragment");
    assert_eq!(p.counters().dropped_malformed, 7);
    // Well formed, not ours: another address, UDP, our own SYN looped back
    // (wrong destination), an ICMP echo.
    assert!(!p.receive(&ipv4(TARGET, Ipv4Addr::new(10, 0, 1, 51), 17, &[0; 8]), 1));
    assert!(!p.receive(&ipv4(TARGET, FRONT, 17, &[0; 8]), 1));
    assert!(!p.receive(&syn, 1));
    assert!(!p.receive(&ipv4(TARGET, FRONT, 1, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]), 1));
    assert_eq!(p.counters().dropped_unmatched, 4);
    // None of it disturbed the probe, and no RST answered it.
    assert_eq!(net.outcome_of(id, 100), Outcome::Connected);
    assert!(!net.sent.iter().any(|p| tcp_of(p).3));
}

#[test]
fn late_answers_after_the_probe_are_not_ours() {
    // A target that answers a timed-out probe: the port is closed, the
    // answer is a counted drop and no RST goes back.
    let mut net = Net::new(Server::black_hole());
    let id = net.prober.start(&tcp_check(80, 100), 0).expect("start");
    assert_eq!(net.outcome_of(id, 200), Outcome::Timeout);
    net.run(2);
    assert_eq!(net.prober.open(), 0);
    let mut seg = vec![0u8; 20];
    seg[0..2].copy_from_slice(&80u16.to_be_bytes());
    seg[2..4].copy_from_slice(&PORTS.start().to_be_bytes());
    seg[12] = 0x50;
    seg[13] = 0x12; // SYN|ACK
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&TARGET.octets());
    pseudo.extend_from_slice(&FRONT.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&seg);
    let c = checksum(&pseudo);
    seg[16..18].copy_from_slice(&c.to_be_bytes());
    let before = net.sent.len();
    assert!(!net.prober.receive(&ipv4(TARGET, FRONT, 6, &seg), net.now));
    assert_eq!(net.prober.counters().dropped_unmatched, 1);
    assert!(net.prober.transmit(net.now + 1).is_empty());
    assert_eq!(net.sent.len(), before);
}

#[test]
fn decided_connections_that_never_close_are_aborted_after_the_linger() {
    // The target never acknowledges our FIN: the connection is cut.
    let mut net = Net::new(Server::new().listen(80, Behaviour::Mute, 1));
    let id = net.prober.start(&tcp_check(80, 5_000), 0).expect("start");
    assert_eq!(net.outcome_of(id, 100), Outcome::Connected);
    net.server.black_hole = true;
    let t = net.now;
    while net.now < t + LINGER + 10 && net.prober.open() > 0 {
        net.step();
    }
    assert_eq!(net.prober.open(), 0);
    assert_eq!(net.prober.counters().linger_aborts, 1);
    assert!(tcp_of(net.sent.last().expect("a packet")).3);
}

/// Drives a `HealthChecker` with the prober from `t` for `secs` seconds.
fn drive(hc: &mut HealthChecker, net: &mut Net, secs: Millis) {
    let mut started: Vec<(ProbeId, Target)> = Vec::new();
    let end = net.now + secs * 1_000;
    while net.now < end {
        for p in hc.due(net.now) {
            let id = net.prober.start(&p, net.now).expect("start");
            started.push((id, p.target));
        }
        let seen = net.outcomes.len();
        net.step();
        for &(id, outcome) in &net.outcomes[seen..] {
            if let Some(i) = started.iter().position(|(s, _)| *s == id) {
                let (_, target) = started.swap_remove(i);
                hc.result(&target, outcome, net.now);
            }
        }
        hc.tick(net.now);
    }
}

#[test]
fn the_prober_makes_a_checker_healthy_then_unhealthy() {
    // Spec 9.4 with interval 5 s, timeout 2 s, thresholds 2: an HTTP target
    // answering 200 is healthy after two probes; once its listener is gone
    // (RST to the SYN), two failed probes make it unhealthy with
    // Target.FailedHealthChecks.
    let config = HealthCheckConfig::from_params(&HealthCheckParams {
        protocol: Some("HTTP"),
        interval_secs: Some(5),
        timeout_secs: Some(2),
        healthy_threshold: Some(2),
        unhealthy_threshold: Some(2),
        ..Default::default()
    })
    .expect("config");
    let mut hc = HealthChecker::new(config);
    let target = Target::new("i-1", TARGET, 80);
    hc.register(target.clone(), 0);
    let mut net = Net::new(Server::new().listen(80, Behaviour::Answer(OK_200), 2));
    drive(&mut hc, &mut net, 6);
    assert_eq!(hc.health(&target).state, TargetState::Healthy);
    net.server = Server::new();
    drive(&mut hc, &mut net, 10);
    let h = hc.health(&target);
    assert_eq!(h.state, TargetState::Unhealthy);
    assert_eq!(
        h.reason.map(|r| r.code()),
        Some("Target.FailedHealthChecks")
    );
}

#[test]
fn the_prober_makes_an_https_checker_healthy() {
    // Spec 9.4 with protocol HTTPS: the checker asks for TLS probes, and a
    // target answering 200 over TLS (self-signed) is healthy after two.
    let config = HealthCheckConfig::from_params(&HealthCheckParams {
        protocol: Some("HTTPS"),
        port: Some("443"),
        interval_secs: Some(5),
        timeout_secs: Some(2),
        healthy_threshold: Some(2),
        unhealthy_threshold: Some(2),
        ..Default::default()
    })
    .expect("config");
    let mut hc = HealthChecker::new(config);
    let target = Target::new("i-1", TARGET, 443);
    hc.register(target.clone(), 0);
    let mut net = Net::new(Server::new().listen(443, Behaviour::Https(OK_200), 2));
    drive(&mut hc, &mut net, 6);
    assert_eq!(hc.health(&target).state, TargetState::Healthy);
    assert_eq!(net.prober.counters().http_status, 2);
    assert_eq!(net.server.versions.len(), 2, "two TLS handshakes");
}

#[test]
fn many_probes_at_once_each_get_their_answer() {
    // Two targets' worth of listeners on one stack: 40 HTTP checks and 40
    // TCP checks in flight together, each decided on its own connection.
    let mut net = Net::new(
        Server::new()
            .listen(80, Behaviour::Answer(OK_200), 40)
            .listen(81, Behaviour::Mute, 40),
    );
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push((
            net.prober.start(&http(80, 5_000), 0).expect("http"),
            Outcome::HttpStatus(200),
        ));
        ids.push((
            net.prober.start(&tcp_check(81, 5_000), 0).expect("tcp"),
            Outcome::Connected,
        ));
    }
    net.run(300);
    for (id, want) in ids {
        let got = net.outcomes.iter().find(|(i, _)| *i == id).map(|(_, o)| *o);
        assert_eq!(got, Some(want), "{id:?}");
    }
    assert_eq!(net.outcomes.len(), 80, "each probe decided once");
}

/// Sets the IPv4 and TCP checksums of `p` (an IPv4 packet with a TCP
/// segment) so a mutated packet gets past the checksum checks.
fn fix_checksums(p: &mut [u8]) {
    let ihl = usize::from(p[0] & 0x0f) * 4;
    p[10] = 0;
    p[11] = 0;
    let c = checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    let seg_len = p.len() - ihl;
    p[ihl + 16] = 0;
    p[ihl + 17] = 0;
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&p[12..20]);
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&p[ihl..]);
    let c = checksum(&pseudo);
    p[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a target sends — its real answers with flags, sequence
    /// numbers, windows and options changed, checksums made right — the
    /// prober never panics and decides the probe by its deadline, over
    /// HTTP and over TLS (where a changed payload breaks the records).
    #[test]
    fn mangled_answers_never_panic_and_probes_end(
        edits in proptest::collection::vec((0usize..60, proptest::prelude::any::<u8>()), 1..6),
        which in 0usize..8,
        tls in proptest::prelude::any::<bool>(),
    ) {
        let (server, p) = if tls {
            (Server::new().listen(443, Behaviour::Https(OK_200), 1), https(443, 500))
        } else {
            (Server::new().listen(80, Behaviour::Answer(OK_200), 1), http(80, 500))
        };
        let mut net = Net::new(server);
        let id = net.prober.start(&p, 0).expect("start");
        let mut n = 0usize;
        while net.now < 600 && !net.outcomes.iter().any(|(i, _)| *i == id) {
            net.now += 1;
            let now = net.now;
            for p in net.prober.transmit(now) {
                net.server.dev.rx.push_back(p);
            }
            net.server.poll(now);
            while let Some(mut p) = net.server.dev.tx.pop_front() {
                if n == which {
                    let ihl = usize::from(p[0] & 0x0f) * 4;
                    for &(at, byte) in &edits {
                        // Only the TCP header and payload: ports stay, so
                        // the packet still reaches the probe connection.
                        let at = ihl + 4 + at % (p.len() - ihl - 4);
                        p[at] = byte;
                    }
                    fix_checksums(&mut p);
                }
                n += 1;
                net.prober.receive(&p, now);
            }
            net.outcomes.extend(net.prober.outcomes(now));
        }
        proptest::prop_assert!(net.outcomes.iter().any(|(i, _)| *i == id));
        proptest::prop_assert!(net.now <= 500);
    }
}
