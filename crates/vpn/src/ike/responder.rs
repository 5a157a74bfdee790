//! One tunnel's IKEv2 responder (RFC 7296), as AWS's side of a
//! Site-to-Site VPN tunnel is (spec 10.2: startup action `add`, the
//! customer gateway initiates): IKE_SA_INIT and IKE_AUTH with the
//! tunnel's pre-shared key, one child SA in tunnel mode, the peer's
//! CREATE_CHILD_SA rekeys (child and IKE SA), INFORMATIONAL (liveness
//! checks, deletes), and dead peer detection of its own (30 s, action
//! `clear`). NAT detection moves the tunnel to UDP 4500 (RFC 3948).
//!
//! Sans-IO: datagrams in with the time and a source of randomness,
//! [`Output`]s out (datagrams to send, child SAs up or down, the IKE SA
//! down). Every message refused is counted by reason; none panics.

use core::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};

use super::crypto::{
    self, CryptoError, DhGroup, DhPrivate, IkeKeys, IkeSuite, Prf, auth_matches, psk_auth,
};
use super::message::{
    self, Delete, Exchange, Header, IKE_VERSION, Identification, Message, Notify, Payload,
    Proposal, TrafficSelector, auth_method, id_type, notify_type, protocol,
};
use super::proposal::{choose_esp, choose_ike, requested_group};
use crate::esp::{InboundSa, OutboundSa, Transform};

/// Randomness, from the shell (a CSPRNG); tests give a deterministic one.
pub trait Entropy {
    fn fill(&mut self, buf: &mut [u8]);
}

/// What one tunnel is configured with (the VPN connection's record).
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelConfig {
    pub psk: Vec<u8>,
    /// Our outside address: our identity (ID_IPV4_ADDR), as AWS's.
    pub local_ip: IpAddr,
    /// The VPC side's selector (`LocalIpv4NetworkCidr`, default
    /// 0.0.0.0/0) and the customer side's (`RemoteIpv4NetworkCidr`).
    pub local_ts: TrafficSelector,
    pub remote_ts: TrafficSelector,
    /// Phase 1 and 2 lifetimes (spec 10.2: 28,800 and 3,600 s): an SA
    /// the peer has not rekeyed by then is deleted.
    pub ike_lifetime_secs: u64,
    pub child_lifetime_secs: u64,
    /// Dead peer detection: a liveness check after this long without a
    /// word from the peer, and the IKE SA cleared when the peer has been
    /// silent for [`TunnelConfig::dpd_timeout_secs`].
    pub dpd_delay_secs: u64,
    pub dpd_timeout_secs: u64,
}

impl core::fmt::Debug for TunnelConfig {
    // The key is never printed.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TunnelConfig")
            .field("local_ip", &self.local_ip)
            .field("local_ts", &self.local_ts)
            .field("remote_ts", &self.remote_ts)
            .finish_non_exhaustive()
    }
}

/// 0.0.0.0/0, all protocols and ports: AWS's default selectors.
pub fn any_ipv4() -> TrafficSelector {
    TrafficSelector {
        ip_protocol: 0,
        start_port: 0,
        end_port: u16::MAX,
        start: IpAddr::V4(core::net::Ipv4Addr::UNSPECIFIED),
        end: IpAddr::V4(core::net::Ipv4Addr::BROADCAST),
    }
}

impl TunnelConfig {
    /// spec 10.2's defaults around a key and our address.
    pub fn new(psk: &[u8], local_ip: IpAddr) -> TunnelConfig {
        TunnelConfig {
            psk: psk.to_vec(),
            local_ip,
            local_ts: any_ipv4(),
            remote_ts: any_ipv4(),
            ike_lifetime_secs: 28_800,
            child_lifetime_secs: 3_600,
            dpd_delay_secs: 10,
            dpd_timeout_secs: 30,
        }
    }
}

/// A child SA that came up: its two ESP halves and what it carries.
#[derive(Debug)]
pub struct ChildSa {
    pub inbound: InboundSa,
    pub outbound: OutboundSa,
    /// Our side's and the peer's selectors as agreed (each side may have
    /// several).
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// A rekey: the inbound SPI of the child it replaces (deleted by the
    /// peer soon after).
    pub replaces: Option<u32>,
}

/// Why the IKE SA went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// The peer deleted it.
    Deleted,
    /// Dead peer detection: no answer within the timeout.
    DeadPeer,
    /// Its lifetime ran out before the peer rekeyed it.
    Expired,
    /// The peer's AUTH did not match the pre-shared key.
    AuthenticationFailed,
    /// The peer started over (a new IKE_SA_INIT).
    Replaced,
}

/// What the shell does next.
#[derive(Debug)]
pub enum Output {
    /// Send `bytes` (an IKE message) to `to`; over UDP 4500 with the
    /// non-ESP marker when `natt`.
    Send {
        to: SocketAddr,
        natt: bool,
        bytes: Vec<u8>,
    },
    ChildUp(Box<ChildSa>),
    /// Forget the child whose inbound SPI this is.
    ChildDown {
        inbound_spi: u32,
    },
    IkeDown(Down),
}

/// Why a datagram was not acted on, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IkeDrop {
    Malformed,
    /// A response, or a request of the wrong exchange or flags here.
    Unexpected,
    /// No IKE SA has these SPIs.
    UnknownSpi,
    /// A message ID out of the window (neither the next nor the last).
    MessageId,
    /// The SK payload did not verify or decrypt.
    Integrity,
    /// The SK payload verified but its payloads do not parse: answered
    /// with INVALID_SYNTAX (RFC 7296 §3.10.1).
    InvalidSyntax,
    /// The peer's public value is not valid for its group.
    BadKeyExchange,
}

impl IkeDrop {
    pub const ALL: [IkeDrop; 7] = [
        IkeDrop::Malformed,
        IkeDrop::Unexpected,
        IkeDrop::UnknownSpi,
        IkeDrop::MessageId,
        IkeDrop::Integrity,
        IkeDrop::InvalidSyntax,
        IkeDrop::BadKeyExchange,
    ];

    pub fn name(self) -> &'static str {
        match self {
            IkeDrop::Malformed => "malformed",
            IkeDrop::Unexpected => "unexpected",
            IkeDrop::UnknownSpi => "unknown_spi",
            IkeDrop::MessageId => "message_id",
            IkeDrop::Integrity => "integrity",
            IkeDrop::InvalidSyntax => "invalid_syntax",
            IkeDrop::BadKeyExchange => "bad_key_exchange",
        }
    }
}

/// A tunnel's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IkeCounters {
    pub requests: u64,
    pub retransmits_answered: u64,
    pub ike_sas: u64,
    pub child_sas: u64,
    pub auth_failures: u64,
    pub no_proposal: u64,
    pub dpd_sent: u64,
    /// Per [`IkeDrop`], in [`IkeDrop::ALL`] order.
    pub drops: [u64; IkeDrop::ALL.len()],
}

/// After our IKE_SA_INIT answer, before IKE_AUTH.
struct HalfOpen {
    spi_i: u64,
    spi_r: u64,
    suite: IkeSuite,
    keys: IkeKeys,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The peer's first message and our answer, as on the wire: the AUTH
    /// values sign them.
    request: Vec<u8>,
    response: Vec<u8>,
    started_ms: u64,
}

/// A request of ours waiting for its answer.
struct Pending {
    message_id: u32,
    bytes: Vec<u8>,
    sent_ms: u64,
}

struct Established {
    spi_i: u64,
    spi_r: u64,
    suite: IkeSuite,
    keys: IkeKeys,
    /// The next request ID we expect from the peer, and our last answer
    /// (for its retransmissions).
    peer_next: u32,
    last_answer: Option<(u32, Vec<u8>)>,
    /// Our own requests: the next ID, and the one in flight.
    our_next: u32,
    pending: Option<Pending>,
    /// The children: (our inbound SPI, the peer's, when it came up).
    children: Vec<(u32, u32, u64)>,
    up_ms: u64,
}

/// One tunnel's responder.
pub struct Responder {
    config: TunnelConfig,
    /// A new IKE SA between IKE_SA_INIT and IKE_AUTH.
    half_open: Option<Box<HalfOpen>>,
    established: Option<Box<Established>>,
    /// The IKE SA that replaces `established` after the peer rekeyed
    /// it: it takes over once the peer deletes the old one, or uses it.
    successor: Option<Box<Established>>,
    peer: Option<SocketAddr>,
    /// Whether the peer talks on UDP 4500 (it moved, or a NAT is between).
    natt: bool,
    last_heard_ms: u64,
    /// For the peer's retransmitted IKE_SA_INIT: its SPI and our answer.
    init_answer: Option<(u64, Vec<u8>)>,
    pub counters: IkeCounters,
}

impl core::fmt::Debug for Responder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Responder")
            .field("config", &self.config)
            .field("peer", &self.peer)
            .field("established", &self.is_established())
            .finish_non_exhaustive()
    }
}

const NONCE_LEN: usize = 32;
/// Our requests are retried this often while unanswered.
const RETRY_MS: u64 = 2_000;
/// A half-open IKE SA is forgotten after this long.
const HALF_OPEN_MS: u64 = 30_000;

fn nonzero_spi(rng: &mut dyn Entropy) -> u64 {
    loop {
        let mut b = [0u8; 8];
        rng.fill(&mut b);
        let spi = u64::from_be_bytes(b);
        if spi != 0 {
            return spi;
        }
    }
}

fn nonzero_spi32(rng: &mut dyn Entropy) -> u32 {
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let spi = u32::from_be_bytes(b);
        // SPIs 1 to 255 are reserved (RFC 4303 §2.1).
        if spi > 255 {
            return spi;
        }
    }
}

fn random_vec(rng: &mut dyn Entropy, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill(&mut v);
    v
}

/// NAT_DETECTION_*_IP's value (RFC 7296 §2.23): SHA-1 of the SPIs, an
/// address and a port.
pub fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(spi_i.to_be_bytes());
    h.update(spi_r.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(a) => h.update(a.octets()),
        IpAddr::V6(a) => h.update(a.octets()),
    }
    h.update(addr.port().to_be_bytes());
    h.finalize().to_vec()
}

/// An ID payload's body as AUTH signs it (RFC 7296 §2.15: without the
/// generic header).
pub fn id_body(id: &Identification) -> Vec<u8> {
    let mut v = vec![id.kind, 0, 0, 0];
    v.extend_from_slice(&id.data);
    v
}

fn our_id(ip: IpAddr) -> Identification {
    match ip {
        IpAddr::V4(a) => Identification {
            kind: id_type::IPV4_ADDR,
            data: a.octets().to_vec(),
        },
        IpAddr::V6(a) => Identification {
            kind: id_type::IPV6_ADDR,
            data: a.octets().to_vec(),
        },
    }
}

fn ipv4_range(ts: &TrafficSelector) -> Option<(u32, u32)> {
    match (ts.start, ts.end) {
        (IpAddr::V4(s), IpAddr::V4(e)) => Some((s.to_bits(), e.to_bits())),
        _ => None,
    }
}

/// The intersections of each of the peer's selectors with ours (RFC 7296
/// §2.9: the responder narrows each, and answers every one that is left:
/// a customer gateway proposing its LAN and its inside address gets both,
/// so its BGP over the inside addresses matches the child's policy);
/// `None` when nothing is left.
fn narrow(theirs: &[TrafficSelector], ours: &TrafficSelector) -> Option<Vec<TrafficSelector>> {
    let (os, oe) = ipv4_range(ours)?;
    let narrowed: Vec<TrafficSelector> = theirs
        .iter()
        .filter_map(|t| {
            let (ts, te) = ipv4_range(t)?;
            let (s, e) = (ts.max(os), te.min(oe));
            let (ps, pe) = (
                t.start_port.max(ours.start_port),
                t.end_port.min(ours.end_port),
            );
            let proto = match (t.ip_protocol, ours.ip_protocol) {
                (0, p) | (p, 0) => p,
                (a, b) if a == b => a,
                _ => return None,
            };
            (s <= e && ps <= pe).then(|| TrafficSelector {
                ip_protocol: proto,
                start_port: ps,
                end_port: pe,
                start: IpAddr::V4(core::net::Ipv4Addr::from_bits(s)),
                end: IpAddr::V4(core::net::Ipv4Addr::from_bits(e)),
            })
        })
        .collect();
    (!narrowed.is_empty()).then_some(narrowed)
}

fn find<'a, T>(payloads: &'a [Payload], f: impl Fn(&'a Payload) -> Option<T>) -> Option<T> {
    payloads.iter().find_map(f)
}

fn notifies(payloads: &[Payload], kind: u16) -> impl Iterator<Item = &Notify> {
    payloads.iter().filter_map(move |p| match p {
        Payload::Notify(n) if n.kind == kind => Some(n),
        _ => None,
    })
}

fn sa_of(payloads: &[Payload]) -> Option<&[Proposal]> {
    find(payloads, |p| match p {
        Payload::Sa(v) => Some(v.as_slice()),
        _ => None,
    })
}

fn nonce_of(payloads: &[Payload]) -> Option<Vec<u8>> {
    find(payloads, |p| match p {
        Payload::Nonce(n) => Some(n.clone()),
        _ => None,
    })
}

fn ke_of(payloads: &[Payload]) -> Option<(u16, Vec<u8>)> {
    find(payloads, |p| match p {
        Payload::Ke { group, data } => Some((*group, data.clone())),
        _ => None,
    })
}

fn ts_of(payloads: &[Payload]) -> Option<(&[TrafficSelector], &[TrafficSelector])> {
    let tsi = find(payloads, |p| match p {
        Payload::TsI(v) => Some(v.as_slice()),
        _ => None,
    })?;
    let tsr = find(payloads, |p| match p {
        Payload::TsR(v) => Some(v.as_slice()),
        _ => None,
    })?;
    Some((tsi, tsr))
}

fn header(spi_i: u64, spi_r: u64, exchange: Exchange, message_id: u32, flags: u8) -> Header {
    Header {
        spi_i,
        spi_r,
        next_payload: 0,
        version: IKE_VERSION,
        exchange,
        flags,
        message_id,
        length: 0,
    }
}

/// A fresh private value of `group`; curve scalars out of range are drawn
/// again.
fn dh_keypair(group: DhGroup, rng: &mut dyn Entropy) -> Result<(DhPrivate, Vec<u8>), CryptoError> {
    let mut last = CryptoError::BadPublicValue;
    for _ in 0..8 {
        let mut r = random_vec(rng, group.secret_len());
        if group == DhGroup::Ecp521
            && let Some(b) = r.first_mut()
        {
            *b &= 1;
        }
        match DhPrivate::new(group, &r) {
            Ok(k) => return Ok(k),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Encodes `payloads` inside an SK payload with the sender's keys.
fn seal(
    suite: &IkeSuite,
    sk_e: &[u8],
    sk_a: &[u8],
    h: Header,
    payloads: &[Payload],
    rng: &mut dyn Entropy,
) -> Option<Vec<u8>> {
    let (first, plain) = message::encode_payloads(payloads);
    seal_encoded(suite, sk_e, sk_a, h, first, &plain, rng)
}

/// A message of header `h` and one SK payload holding `plain` (encoded
/// payloads, the first of type `first`), sealed with the sender's keys
/// and a random IV.
pub fn seal_encoded(
    suite: &IkeSuite,
    sk_e: &[u8],
    sk_a: &[u8],
    h: Header,
    first: u8,
    plain: &[u8],
    rng: &mut dyn Entropy,
) -> Option<Vec<u8>> {
    let iv = random_vec(rng, suite.encr.iv_len());
    let body = crypto::sk_body(suite, &iv, plain).ok()?;
    let (mut bytes, at) = Message {
        header: h,
        payloads: vec![Payload::Encrypted {
            first_payload: first,
            body,
        }],
        encrypted_at: None,
    }
    .encode_with_offset();
    crypto::seal_in_place(suite, sk_e, sk_a, &mut bytes, at?).ok()?;
    Some(bytes)
}

/// Opens a protected message's SK payload with the sender's keys.
fn open(
    suite: &IkeSuite,
    sk_e: &[u8],
    sk_a: &[u8],
    msg: &Message,
    bytes: &[u8],
) -> Result<Vec<Payload>, IkeDrop> {
    let at = msg.encrypted_at.ok_or(IkeDrop::Malformed)?;
    let first = match msg.payloads.last() {
        Some(Payload::Encrypted { first_payload, .. }) => *first_payload,
        _ => return Err(IkeDrop::Malformed),
    };
    let mut buf = bytes.to_vec();
    let range = crypto::open_in_place(suite, sk_e, sk_a, &mut buf, at).map_err(|e| match e {
        CryptoError::Integrity | CryptoError::Padding => IkeDrop::Integrity,
        _ => IkeDrop::Malformed,
    })?;
    message::parse_payloads(first, &buf[range]).map_err(|_| IkeDrop::InvalidSyntax)
}

impl Responder {
    pub fn new(config: TunnelConfig) -> Responder {
        Responder {
            config,
            half_open: None,
            established: None,
            successor: None,
            peer: None,
            natt: false,
            last_heard_ms: 0,
            init_answer: None,
            counters: IkeCounters::default(),
        }
    }

    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    pub fn is_established(&self) -> bool {
        self.established.is_some()
    }

    /// Where the peer is, and whether over UDP 4500.
    pub fn peer(&self) -> Option<(SocketAddr, bool)> {
        self.peer.map(|p| (p, self.natt))
    }

    /// The children's inbound SPIs.
    pub fn children(&self) -> Vec<u32> {
        self.established
            .as_ref()
            .map(|e| e.children.iter().map(|c| c.0).collect())
            .unwrap_or_default()
    }

    /// Something (an ESP packet) came from the peer: it is alive.
    pub fn heard(&mut self, now_ms: u64) {
        self.last_heard_ms = self.last_heard_ms.max(now_ms);
    }

    /// An authentic message came from `from`: where the peer is now, and
    /// that it lives.
    fn heard_from(&mut self, from: SocketAddr, natt: bool, now_ms: u64) {
        self.peer = Some(from);
        self.natt |= natt;
        self.last_heard_ms = now_ms;
    }

    fn drop(&mut self, reason: IkeDrop) -> Vec<Output> {
        self.counters.drops[reason as usize] += 1;
        Vec::new()
    }

    fn send(&self, to: SocketAddr, bytes: Vec<u8>) -> Output {
        Output::Send {
            to,
            natt: self.natt,
            bytes,
        }
    }

    /// An IKE datagram from `from` (its payload, less the non-ESP marker
    /// when it came on UDP 4500: `natt`).
    pub fn handle(
        &mut self,
        from: SocketAddr,
        natt: bool,
        bytes: &[u8],
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<Output> {
        let msg = match message::parse(bytes) {
            Ok(m) => m,
            Err(e) => return self.refuse_unparsed(from, natt, bytes, &e),
        };
        let h = msg.header;
        if h.is_response() {
            return self.response(&msg, bytes, now_ms);
        }
        self.counters.requests += 1;
        match h.exchange {
            Exchange::IkeSaInit => self.init(&msg, bytes, from, natt, now_ms, rng),
            Exchange::IkeAuth => self.auth(&msg, bytes, from, natt, now_ms, rng),
            Exchange::CreateChildSa | Exchange::Informational => {
                self.in_sa(&msg, bytes, from, natt, now_ms, rng)
            }
            Exchange::Other(_) => self.drop(IkeDrop::Unexpected),
        }
    }

    /// A request that did not parse: an IKE_SA_INIT gets the Notify RFC
    /// 7296 §2.5 asks for (unprotected); anything else is dropped
    /// (§3.10.1: no INVALID_SYNTAX for an unauthenticated message).
    fn refuse_unparsed(
        &mut self,
        from: SocketAddr,
        natt: bool,
        bytes: &[u8],
        e: &message::ParseError,
    ) -> Vec<Output> {
        let mut out = self.drop(IkeDrop::Malformed);
        let (kind, data) = e.notify();
        let init_request =
            bytes.get(18) == Some(&34) && bytes.get(19).is_some_and(|f| f & Header::RESPONSE == 0);
        if init_request && kind != notify_type::INVALID_SYNTAX {
            let spi_i = bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_be_bytes);
            let answer = Message {
                header: header(spi_i, 0, Exchange::IkeSaInit, 0, Header::RESPONSE),
                payloads: vec![Payload::notify(kind, data)],
                encrypted_at: None,
            };
            out.push(Output::Send {
                to: from,
                natt,
                bytes: answer.encode(),
            });
        }
        out
    }

    fn init(
        &mut self,
        msg: &Message,
        bytes: &[u8],
        from: SocketAddr,
        natt: bool,
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<Output> {
        let h = msg.header;
        if h.spi_r != 0 || h.message_id != 0 || !h.is_initiator() {
            return self.drop(IkeDrop::Unexpected);
        }
        if let Some((spi, answer)) = &self.init_answer
            && *spi == h.spi_i
        {
            self.counters.retransmits_answered += 1;
            return vec![Output::Send {
                to: from,
                natt,
                bytes: answer.clone(),
            }];
        }
        let answer_notify = |kind: u16, data: Vec<u8>| Output::Send {
            to: from,
            natt,
            bytes: Message {
                header: header(h.spi_i, 0, Exchange::IkeSaInit, 0, Header::RESPONSE),
                payloads: vec![Payload::notify(kind, data)],
                encrypted_at: None,
            }
            .encode(),
        };
        let p = &msg.payloads;
        let (Some(proposals), Some((group, ke)), Some(ni)) = (sa_of(p), ke_of(p), nonce_of(p))
        else {
            return self.drop(IkeDrop::Malformed);
        };
        let Some((suite, chosen)) = choose_ike(proposals, Some(group)) else {
            self.counters.no_proposal += 1;
            return vec![answer_notify(notify_type::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        if group != suite.dh.id() {
            // RFC 7296 §1.2: name the group the initiator should use.
            return vec![answer_notify(
                notify_type::INVALID_KE_PAYLOAD,
                suite.dh.id().to_be_bytes().to_vec(),
            )];
        }
        let Ok((private, public)) = dh_keypair(suite.dh, rng) else {
            return self.drop(IkeDrop::BadKeyExchange);
        };
        let Ok(shared) = private.shared(&ke) else {
            return self.drop(IkeDrop::BadKeyExchange);
        };
        let spi_r = nonzero_spi(rng);
        let nr = random_vec(rng, NONCE_LEN);
        let keys = IkeKeys::derive(&suite, &ni, &nr, &shared, h.spi_i, spi_r);
        let port = if natt {
            crate::natt::NATT_PORT
        } else {
            crate::natt::IKE_PORT
        };
        let local = SocketAddr::new(self.config.local_ip, port);
        // The peer is behind a NAT when none of the sources it hashed is
        // the one we see: it moves to 4500 (RFC 7296 §2.23).
        let mut sources = notifies(p, notify_type::NAT_DETECTION_SOURCE_IP).peekable();
        let behind_nat =
            sources.peek().is_some() && !sources.any(|n| n.data == nat_hash(h.spi_i, 0, from));
        let response = Message {
            header: header(h.spi_i, spi_r, Exchange::IkeSaInit, 0, Header::RESPONSE),
            payloads: vec![
                Payload::Sa(vec![chosen]),
                Payload::Ke {
                    group: suite.dh.id(),
                    data: public,
                },
                Payload::Nonce(nr.clone()),
                Payload::notify(
                    notify_type::NAT_DETECTION_SOURCE_IP,
                    nat_hash(h.spi_i, spi_r, local),
                ),
                Payload::notify(
                    notify_type::NAT_DETECTION_DESTINATION_IP,
                    nat_hash(h.spi_i, spi_r, from),
                ),
            ],
            encrypted_at: None,
        }
        .encode();
        self.half_open = Some(Box::new(HalfOpen {
            spi_i: h.spi_i,
            spi_r,
            suite,
            keys,
            ni,
            nr,
            request: bytes.to_vec(),
            response: response.clone(),
            started_ms: now_ms,
        }));
        self.init_answer = Some((h.spi_i, response.clone()));
        self.peer = Some(from);
        self.natt = natt || behind_nat;
        self.last_heard_ms = now_ms;
        vec![Output::Send {
            to: from,
            natt,
            bytes: response,
        }]
    }

    fn auth(
        &mut self,
        msg: &Message,
        bytes: &[u8],
        from: SocketAddr,
        natt: bool,
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<Output> {
        let h = msg.header;
        // A retransmitted IKE_AUTH of the SA that is up: the same answer.
        if let Some(e) = &self.established
            && e.spi_i == h.spi_i
            && e.spi_r == h.spi_r
        {
            return self.in_sa(msg, bytes, from, natt, now_ms, rng);
        }
        let Some(half) = self
            .half_open
            .take_if(|x| x.spi_i == h.spi_i && x.spi_r == h.spi_r)
        else {
            return self.drop(IkeDrop::UnknownSpi);
        };
        if h.message_id != 1 || !h.is_initiator() {
            self.half_open = Some(half);
            return self.drop(IkeDrop::MessageId);
        }
        let suite = half.suite;
        let inner = match open(&suite, &half.keys.sk_ei, &half.keys.sk_ai, msg, bytes) {
            Ok(p) => p,
            Err(IkeDrop::InvalidSyntax) => {
                // In IKE_AUTH it ends the IKE SA (RFC 7296 §2.21.2): the
                // half-open SA is forgotten.
                let mut out = self.drop(IkeDrop::InvalidSyntax);
                let invalid = [Payload::notify(notify_type::INVALID_SYNTAX, Vec::new())];
                let h2 = header(h.spi_i, h.spi_r, Exchange::IkeAuth, 1, Header::RESPONSE);
                if let Some(answer) = seal(
                    &suite,
                    &half.keys.sk_er,
                    &half.keys.sk_ar,
                    h2,
                    &invalid,
                    rng,
                ) {
                    out.push(Output::Send {
                        to: from,
                        natt,
                        bytes: answer,
                    });
                }
                return out;
            }
            Err(reason) => {
                self.half_open = Some(half);
                return self.drop(reason);
            }
        };
        self.heard_from(from, natt, now_ms);
        let answer =
            |r: &mut Self, payloads: &[Payload], rng: &mut dyn Entropy| -> Option<Output> {
                let bytes = seal(
                    &suite,
                    &half.keys.sk_er,
                    &half.keys.sk_ar,
                    header(h.spi_i, h.spi_r, Exchange::IkeAuth, 1, Header::RESPONSE),
                    payloads,
                    rng,
                )?;
                Some(r.send(from, bytes))
            };
        let (Some(idi), Some((method, auth))) = (
            find(&inner, |p| match p {
                Payload::IdI(id) => Some(id.clone()),
                _ => None,
            }),
            find(&inner, |p| match p {
                Payload::Auth { method, data } => Some((*method, data.clone())),
                _ => None,
            }),
        ) else {
            return self.drop(IkeDrop::Malformed);
        };
        // RFC 7296 §2.15: the initiator signs its first message, our
        // nonce and its ID.
        let want = psk_auth(
            suite.prf,
            &self.config.psk,
            &half.request,
            &half.nr,
            &half.keys.sk_pi,
            &id_body(&idi),
        );
        if method != auth_method::SHARED_KEY_MIC || !auth_matches(&want, &auth) {
            self.counters.auth_failures += 1;
            let failed = [Payload::notify(
                notify_type::AUTHENTICATION_FAILED,
                Vec::new(),
            )];
            return answer(self, &failed, rng).into_iter().collect();
        }
        let mut out = Vec::new();
        if let Some(old) = self.established.take() {
            // The customer gateway started over: the old SA and its
            // children are gone.
            out.extend(
                old.children
                    .iter()
                    .map(|c| Output::ChildDown { inbound_spi: c.0 }),
            );
            out.push(Output::IkeDown(Down::Replaced));
        }
        let idr = our_id(self.config.local_ip);
        let our_auth = psk_auth(
            suite.prf,
            &self.config.psk,
            &half.response,
            &half.ni,
            &half.keys.sk_pr,
            &id_body(&idr),
        );
        let mut payloads = vec![
            Payload::IdR(idr),
            Payload::Auth {
                method: auth_method::SHARED_KEY_MIC,
                data: our_auth,
            },
        ];
        let mut established = Established {
            spi_i: h.spi_i,
            spi_r: h.spi_r,
            suite,
            keys: half.keys.clone(),
            peer_next: 2,
            last_answer: None,
            our_next: 0,
            pending: None,
            children: Vec::new(),
            up_ms: now_ms,
        };
        // The child SA: IKE_AUTH carries no KE, so its keys come from
        // SK_d and the IKE_SA_INIT nonces.
        match self.child(
            &inner,
            &half.keys.sk_d,
            suite.prf,
            None,
            &half.ni,
            &half.nr,
            rng,
        ) {
            Ok((child, answer_payloads)) => {
                payloads.extend(answer_payloads);
                established
                    .children
                    .push((child.inbound.spi(), child.outbound.spi(), now_ms));
                out.push(Output::ChildUp(Box::new(child)));
                self.counters.child_sas += 1;
            }
            // The IKE SA stands without a child (RFC 7296 §1.2).
            Err(kind) => payloads.push(Payload::notify(kind, Vec::new())),
        }
        let Some(sent) = answer(self, &payloads, rng) else {
            return self.drop(IkeDrop::Malformed);
        };
        if let Output::Send { bytes, .. } = &sent {
            established.last_answer = Some((1, bytes.clone()));
        }
        self.counters.ike_sas += 1;
        self.established = Some(Box::new(established));
        out.insert(0, sent);
        out
    }

    /// A child SA from a request's SA, nonces and selectors, and the
    /// answer's payloads for it; or the Notify type refusing it.
    #[allow(clippy::too_many_arguments)]
    fn child(
        &self,
        request: &[Payload],
        sk_d: &[u8],
        prf: Prf,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        rng: &mut dyn Entropy,
    ) -> Result<(ChildSa, Vec<Payload>), u16> {
        let proposals = sa_of(request).ok_or(notify_type::NO_PROPOSAL_CHOSEN)?;
        let (tsi, tsr) = ts_of(request).ok_or(notify_type::TS_UNACCEPTABLE)?;
        // AWS's tunnels are tunnel mode only: a USE_TRANSPORT_MODE request
        // is refused by leaving it out of the answer (RFC 7296 §1.3.1).
        let our_spi = nonzero_spi32(rng);
        // A Diffie-Hellman group is asked of the proposal only with a KE.
        let pfs = shared.and(requested_group(proposals));
        let (transform, peer_spi, chosen) =
            choose_esp(proposals, our_spi, pfs).ok_or(notify_type::NO_PROPOSAL_CHOSEN)?;
        // TSi is the initiator's (the customer's) side, TSr ours.
        let remote = narrow(tsi, &self.config.remote_ts).ok_or(notify_type::TS_UNACCEPTABLE)?;
        let local = narrow(tsr, &self.config.local_ts).ok_or(notify_type::TS_UNACCEPTABLE)?;
        let (inbound, outbound) =
            child_sas(transform, prf, sk_d, shared, ni, nr, our_spi, peer_spi)
                .ok_or(notify_type::NO_PROPOSAL_CHOSEN)?;
        let rekeying = notifies(request, notify_type::REKEY_SA)
            .next()
            .and_then(|n| n.spi.as_slice().try_into().ok())
            .map(u32::from_be_bytes);
        // The old child's inbound SPI is ours: the peer names its own.
        let replaces = rekeying.and_then(|peer_old| {
            self.established
                .as_ref()?
                .children
                .iter()
                .find(|c| c.1 == peer_old)
                .map(|c| c.0)
        });
        Ok((
            ChildSa {
                inbound,
                outbound,
                local_ts: local.clone(),
                remote_ts: remote.clone(),
                replaces,
            },
            vec![
                Payload::Sa(vec![chosen]),
                Payload::TsI(remote),
                Payload::TsR(local),
            ],
        ))
    }

    /// A request in the established IKE SA (a retransmitted IKE_AUTH,
    /// CREATE_CHILD_SA, INFORMATIONAL).
    fn in_sa(
        &mut self,
        msg: &Message,
        bytes: &[u8],
        from: SocketAddr,
        natt: bool,
        now_ms: u64,
        rng: &mut dyn Entropy,
    ) -> Vec<Output> {
        let h = msg.header;
        if let Some(next) = self
            .successor
            .take_if(|s| s.spi_i == h.spi_i && s.spi_r == h.spi_r)
        {
            // The peer uses the rekeyed IKE SA: the old one is done.
            self.established = Some(next);
        }
        let Some(mut e) = self
            .established
            .take_if(|e| e.spi_i == h.spi_i && e.spi_r == h.spi_r)
        else {
            return self.drop(IkeDrop::UnknownSpi);
        };
        if let Some((id, answer)) = &e.last_answer
            && *id == h.message_id
        {
            // RFC 7296 §2.1: a retransmitted request gets the same answer.
            let out = vec![self.send(from, answer.clone())];
            self.counters.retransmits_answered += 1;
            self.established = Some(e);
            return out;
        }
        if h.message_id != e.peer_next {
            self.established = Some(e);
            return self.drop(IkeDrop::MessageId);
        }
        let inner = match open(&e.suite, &e.keys.sk_ei, &e.keys.sk_ai, msg, bytes) {
            Ok(p) => p,
            Err(IkeDrop::InvalidSyntax) => {
                // Authentic but unreadable: the peer is told, and the
                // exchange is done (RFC 7296 §2.21.2).
                let mut out = self.drop(IkeDrop::InvalidSyntax);
                e.peer_next = e.peer_next.wrapping_add(1);
                let invalid = [Payload::notify(notify_type::INVALID_SYNTAX, Vec::new())];
                let h2 = header(h.spi_i, h.spi_r, h.exchange, h.message_id, Header::RESPONSE);
                if let Some(answer) =
                    seal(&e.suite, &e.keys.sk_er, &e.keys.sk_ar, h2, &invalid, rng)
                {
                    e.last_answer = Some((h.message_id, answer.clone()));
                    out.push(self.send(from, answer));
                }
                self.established = Some(e);
                return out;
            }
            Err(reason) => {
                self.established = Some(e);
                return self.drop(reason);
            }
        };
        self.heard_from(from, natt, now_ms);
        e.peer_next = e.peer_next.wrapping_add(1);
        let mut out = Vec::new();
        let mut gone = false;
        let answer_payloads = match h.exchange {
            Exchange::Informational => {
                let mut answer = Vec::new();
                for p in &inner {
                    let Payload::Delete(d) = p else { continue };
                    if d.protocol == protocol::IKE {
                        gone = true;
                    } else if d.protocol == protocol::ESP {
                        // The peer names its inbound SPIs; we answer with
                        // ours of the same children (RFC 7296 §1.4.1).
                        let mut ours = Vec::new();
                        for spi in &d.spis {
                            let Ok(b) = <[u8; 4]>::try_from(spi.as_slice()) else {
                                continue;
                            };
                            let peer_spi = u32::from_be_bytes(b);
                            if let Some(i) = e.children.iter().position(|c| c.1 == peer_spi) {
                                let (inbound_spi, _, _) = e.children.remove(i);
                                out.push(Output::ChildDown { inbound_spi });
                                ours.push(inbound_spi.to_be_bytes().to_vec());
                            }
                        }
                        if !ours.is_empty() {
                            answer.push(Payload::Delete(Delete {
                                protocol: protocol::ESP,
                                spi_size: 4,
                                spis: ours,
                            }));
                        }
                    }
                }
                answer
            }
            Exchange::CreateChildSa => self.create_child(&mut e, &inner, now_ms, rng, &mut out),
            _ => Vec::new(),
        };
        let Some(answer) = seal(
            &e.suite,
            &e.keys.sk_er,
            &e.keys.sk_ar,
            header(h.spi_i, h.spi_r, h.exchange, h.message_id, Header::RESPONSE),
            &answer_payloads,
            rng,
        ) else {
            self.established = Some(e);
            return self.drop(IkeDrop::Malformed);
        };
        e.last_answer = Some((h.message_id, answer.clone()));
        out.insert(0, self.send(from, answer));
        if !gone {
            self.established = Some(e);
        } else if let Some(next) = self.successor.take() {
            // The old SA of a rekey: its children live on in the new one.
            self.established = Some(next);
        } else {
            out.extend(
                e.children
                    .iter()
                    .map(|c| Output::ChildDown { inbound_spi: c.0 }),
            );
            out.push(Output::IkeDown(Down::Deleted));
        }
        out
    }

    /// CREATE_CHILD_SA (RFC 7296 §1.3): a new or rekeyed child, or the
    /// IKE SA rekeyed. Returns the answer's payloads.
    fn create_child(
        &mut self,
        e: &mut Established,
        inner: &[Payload],
        now_ms: u64,
        rng: &mut dyn Entropy,
        out: &mut Vec<Output>,
    ) -> Vec<Payload> {
        let refuse = |kind: u16| vec![Payload::notify(kind, Vec::new())];
        let Some(ni) = nonce_of(inner) else {
            return refuse(notify_type::INVALID_SYNTAX);
        };
        let Some(proposals) = sa_of(inner) else {
            return refuse(notify_type::INVALID_SYNTAX);
        };
        let nr = random_vec(rng, NONCE_LEN);
        // A Diffie-Hellman exchange of its own, if asked (PFS, or an IKE
        // SA rekey, which always has one).
        let mut ke_answer = None;
        let mut shared = None;
        if let Some((group_id, ke)) = ke_of(inner) {
            let Some(group) = DhGroup::from_id(group_id) else {
                return refuse(notify_type::INVALID_KE_PAYLOAD);
            };
            let Ok((private, public)) = dh_keypair(group, rng) else {
                return refuse(notify_type::NO_PROPOSAL_CHOSEN);
            };
            let Ok(s) = private.shared(&ke) else {
                return refuse(notify_type::INVALID_KE_PAYLOAD);
            };
            shared = Some(s);
            ke_answer = Some(Payload::Ke {
                group: group_id,
                data: public,
            });
        }
        if proposals.iter().any(|p| p.protocol == protocol::IKE) {
            // The IKE SA is rekeyed: new SPIs and keys, its children move
            // to it (RFC 7296 §2.18).
            let Some((suite, mut chosen)) = choose_ike(proposals, ke_of(inner).map(|k| k.0)) else {
                return refuse(notify_type::NO_PROPOSAL_CHOSEN);
            };
            let (Some(shared), Some(new_spi_i)) = (
                shared,
                proposals
                    .iter()
                    .find(|p| p.num == chosen.num)
                    .and_then(|p| <[u8; 8]>::try_from(p.spi.as_slice()).ok())
                    .map(u64::from_be_bytes),
            ) else {
                return refuse(notify_type::INVALID_SYNTAX);
            };
            let new_spi_r = nonzero_spi(rng);
            chosen.spi = new_spi_r.to_be_bytes().to_vec();
            let keys = IkeKeys::rekeyed(
                &suite,
                &e.keys.sk_d,
                &shared,
                &ni,
                &nr,
                new_spi_i,
                new_spi_r,
            );
            let Some(ke) = ke_answer else {
                return refuse(notify_type::INVALID_SYNTAX);
            };
            let answer = vec![Payload::Sa(vec![chosen]), Payload::Nonce(nr), ke];
            // The old SA answers this request, then the peer deletes it;
            // the new one takes over then (or at its first request).
            self.successor = Some(Box::new(Established {
                spi_i: new_spi_i,
                spi_r: new_spi_r,
                suite,
                keys,
                peer_next: 0,
                last_answer: None,
                our_next: 0,
                pending: None,
                children: e.children.clone(),
                up_ms: now_ms,
            }));
            return answer;
        }
        match self.child(
            inner,
            &e.keys.sk_d,
            e.suite.prf,
            shared.as_deref(),
            &ni,
            &nr,
            rng,
        ) {
            Ok((child, mut payloads)) => {
                e.children
                    .push((child.inbound.spi(), child.outbound.spi(), now_ms));
                self.counters.child_sas += 1;
                out.push(Output::ChildUp(Box::new(child)));
                payloads.insert(1, Payload::Nonce(nr));
                if let Some(ke) = ke_answer {
                    payloads.insert(2, ke);
                }
                payloads
            }
            Err(kind) => refuse(kind),
        }
    }

    /// An answer to one of our requests (a liveness check).
    fn response(&mut self, msg: &Message, bytes: &[u8], now_ms: u64) -> Vec<Output> {
        let h = msg.header;
        let Some(e) = self
            .established
            .as_mut()
            .filter(|e| e.spi_i == h.spi_i && e.spi_r == h.spi_r)
        else {
            return self.drop(IkeDrop::UnknownSpi);
        };
        if e.pending.as_ref().map(|p| p.message_id) != Some(h.message_id) {
            return self.drop(IkeDrop::MessageId);
        }
        let (suite, ek, ak) = (e.suite, e.keys.sk_ei.clone(), e.keys.sk_ai.clone());
        if let Err(reason) = open(&suite, &ek, &ak, msg, bytes) {
            return self.drop(reason);
        }
        if let Some(e) = self.established.as_mut() {
            e.pending = None;
        }
        self.last_heard_ms = now_ms;
        Vec::new()
    }

    /// Time passes: liveness checks, their retries, dead peers, SA
    /// lifetimes and half-open SAs.
    pub fn tick(&mut self, now_ms: u64, rng: &mut dyn Entropy) -> Vec<Output> {
        if self
            .half_open
            .as_ref()
            .is_some_and(|h| now_ms.saturating_sub(h.started_ms) > HALF_OPEN_MS)
        {
            self.half_open = None;
        }
        let mut out = Vec::new();
        let Some(mut e) = self.established.take() else {
            return out;
        };
        let silent = now_ms.saturating_sub(self.last_heard_ms);
        if silent >= self.config.dpd_timeout_secs * 1000 {
            // spec 10.2: DPD action `clear`.
            out.extend(
                e.children
                    .iter()
                    .map(|c| Output::ChildDown { inbound_spi: c.0 }),
            );
            out.push(Output::IkeDown(Down::DeadPeer));
            return out;
        }
        if now_ms.saturating_sub(e.up_ms) >= self.config.ike_lifetime_secs * 1000 {
            out.extend(
                e.children
                    .iter()
                    .map(|c| Output::ChildDown { inbound_spi: c.0 }),
            );
            out.push(Output::IkeDown(Down::Expired));
            return out;
        }
        let lifetime = self.config.child_lifetime_secs * 1000;
        e.children.retain(|c| {
            let alive = now_ms.saturating_sub(c.2) < lifetime;
            if !alive {
                out.push(Output::ChildDown { inbound_spi: c.0 });
            }
            alive
        });
        let to = self.peer;
        match (&mut e.pending, to) {
            (Some(p), Some(to)) if now_ms.saturating_sub(p.sent_ms) >= RETRY_MS => {
                p.sent_ms = now_ms;
                out.push(self.send(to, p.bytes.clone()));
            }
            (None, Some(to)) if silent >= self.config.dpd_delay_secs * 1000 => {
                // An empty INFORMATIONAL request (RFC 7296 §1.4).
                let id = e.our_next;
                if let Some(bytes) = seal(
                    &e.suite,
                    &e.keys.sk_er,
                    &e.keys.sk_ar,
                    header(e.spi_i, e.spi_r, Exchange::Informational, id, 0),
                    &[],
                    rng,
                ) {
                    e.our_next = id.wrapping_add(1);
                    e.pending = Some(Pending {
                        message_id: id,
                        bytes: bytes.clone(),
                        sent_ms: now_ms,
                    });
                    self.counters.dpd_sent += 1;
                    out.push(self.send(to, bytes));
                }
            }
            _ => {}
        }
        self.established = Some(e);
        out
    }
}

/// The two ESP halves of a child SA (RFC 7296 §2.17): KEYMAT = prf+(SK_d,
/// [g^ir] | Ni | Nr); the initiator-to-responder SA's keys (our inbound)
/// come first.
#[allow(clippy::too_many_arguments)]
fn child_sas(
    transform: Transform,
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    our_spi: u32,
    peer_spi: u32,
) -> Option<(InboundSa, OutboundSa)> {
    let n = transform.keymat_len();
    let km = crypto::child_keymat(prf, sk_d, shared, ni, nr, 2 * n);
    let (i_to_r, r_to_i) = km.split_at(n);
    Some((
        InboundSa::new(our_spi, transform, i_to_r).ok()?,
        OutboundSa::new(peer_spi, transform, r_to_i).ok()?,
    ))
}
