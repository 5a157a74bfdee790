//! The BGP-4 message codec: framing, OPEN (RFC 4271 §4.2 with capabilities
//! from RFC 5492: multiprotocol IPv4 unicast from RFC 4760, 4-octet AS
//! numbers from RFC 6793, route refresh), UPDATE (IPv4 withdrawn routes,
//! path attributes, NLRI), NOTIFICATION, KEEPALIVE and ROUTE-REFRESH.
//!
//! Decoding takes arbitrary bytes and never panics. Each [`DecodeError`]
//! says which NOTIFICATION (code, subcode, data) answers it, following RFC
//! 4271 §6.1–6.3: the session sends that and closes. RFC 7606's gentler
//! "treat as withdraw" is not implemented: the peers we talk to are our own
//! routers, and a reset is the conservative answer.
//!
//! Why our own codec rather than a crate: we looked at `rustbgpd-wire`
//! (closest fit, but a young single-maintainer 0.x crate that changed its
//! API across seven minor versions, pulls `bytes`, carries EVPN/FlowSpec we
//! do not need, and reports malformed input as free-text "malformed field"
//! errors that do not map to NOTIFICATION subcodes), `bgpkit-parser`
//! (MRT/BMP analysis, parse-oriented, many optional deps), `netgauze-bgp-pkt`
//! (a nom-based family of crates, much larger than the four messages we
//! need) and `bgp-rs` (parse only, unmaintained). The subset here is a few
//! hundred lines, and owning it lets every error carry its exact NOTIFICATION.
//!
//! It knows nothing of sessions, timers or sockets.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Length of the all-ones marker that starts every message.
pub const MARKER_LEN: usize = 16;
/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// The largest message RFC 4271 allows (we do not negotiate RFC 8654).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The only BGP version there is.
pub const BGP_VERSION: u8 = 4;
/// What a 4-octet AS number is replaced with in 2-octet fields (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// Address family IPv4 (IANA AFI 1).
pub const AFI_IPV4: u16 = 1;
/// Subsequent address family unicast (IANA SAFI 1).
pub const SAFI_UNICAST: u8 = 1;

/// Message type codes (RFC 4271 §4.1, RFC 2918).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes (RFC 4271 §5, RFC 6793).
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const AS4_PATH: u8 = 17;
}

/// Path attribute flag bits (RFC 4271 §4.3).
pub mod attr_flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Capability codes (RFC 5492 registry).
pub mod cap_code {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// NOTIFICATION error codes (RFC 4271 §4.5).
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
}

/// NOTIFICATION error subcodes, by error code (RFC 4271 §6, RFC 4486,
/// RFC 5492, RFC 6608).
pub mod subcode {
    pub const UNSPECIFIC: u8 = 0;
    // Message header errors.
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
    // OPEN message errors.
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    // UPDATE message errors.
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
    // Finite state machine errors (RFC 6608).
    pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
    pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    // Cease (RFC 4486).
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
}

/// An IPv4 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    addr: Ipv4Addr,
    len: u8,
}

/// A prefix that could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("prefix length {0} is longer than 32")]
    Length(u8),
    #[error("{0:?} is not an IPv4 prefix: write it like 203.0.113.0/24")]
    Syntax(String),
}

impl Ipv4Prefix {
    /// The prefix `addr/len`; host bits of `addr` are cleared.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, PrefixError> {
        if len > 32 {
            return Err(PrefixError::Length(len));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for 0.0.0.0/0.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// Bytes the prefix takes in an NLRI or withdrawn-routes field.
    fn wire_len(&self) -> usize {
        1 + usize::from(self.len).div_ceil(8)
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        let n = usize::from(self.len).div_ceil(8);
        out.extend_from_slice(&self.addr.octets()[..n]);
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = PrefixError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || PrefixError::Syntax(s.to_string());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(addr, len)
    }
}

/// A NOTIFICATION: the error that ends a session (RFC 4271 §4.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    /// A NOTIFICATION without data.
    pub fn new(code: u8, subcode: u8) -> Self {
        Self {
            code,
            subcode,
            data: Vec::new(),
        }
    }

    /// A NOTIFICATION with data.
    pub fn with_data(code: u8, subcode: u8, data: Vec<u8>) -> Self {
        Self {
            code,
            subcode,
            data,
        }
    }

    /// Cease / Administrative Shutdown: how a speaker says goodbye.
    pub fn cease() -> Self {
        Self::new(code::CEASE, subcode::ADMINISTRATIVE_SHUTDOWN)
    }

    /// The RFC's name for the code and subcode.
    pub fn describe(&self) -> &'static str {
        use code::*;
        match (self.code, self.subcode) {
            (MESSAGE_HEADER, 1) => "Message Header Error / Connection Not Synchronized",
            (MESSAGE_HEADER, 2) => "Message Header Error / Bad Message Length",
            (MESSAGE_HEADER, 3) => "Message Header Error / Bad Message Type",
            (MESSAGE_HEADER, _) => "Message Header Error",
            (OPEN, 1) => "OPEN Message Error / Unsupported Version Number",
            (OPEN, 2) => "OPEN Message Error / Bad Peer AS",
            (OPEN, 3) => "OPEN Message Error / Bad BGP Identifier",
            (OPEN, 4) => "OPEN Message Error / Unsupported Optional Parameter",
            (OPEN, 6) => "OPEN Message Error / Unacceptable Hold Time",
            (OPEN, 7) => "OPEN Message Error / Unsupported Capability",
            (OPEN, _) => "OPEN Message Error",
            (UPDATE, 1) => "UPDATE Message Error / Malformed Attribute List",
            (UPDATE, 2) => "UPDATE Message Error / Unrecognized Well-known Attribute",
            (UPDATE, 3) => "UPDATE Message Error / Missing Well-known Attribute",
            (UPDATE, 4) => "UPDATE Message Error / Attribute Flags Error",
            (UPDATE, 5) => "UPDATE Message Error / Attribute Length Error",
            (UPDATE, 6) => "UPDATE Message Error / Invalid ORIGIN Attribute",
            (UPDATE, 8) => "UPDATE Message Error / Invalid NEXT_HOP Attribute",
            (UPDATE, 9) => "UPDATE Message Error / Optional Attribute Error",
            (UPDATE, 10) => "UPDATE Message Error / Invalid Network Field",
            (UPDATE, 11) => "UPDATE Message Error / Malformed AS_PATH",
            (UPDATE, _) => "UPDATE Message Error",
            (HOLD_TIMER_EXPIRED, _) => "Hold Timer Expired",
            (FSM, _) => "Finite State Machine Error",
            (CEASE, 1) => "Cease / Maximum Number of Prefixes Reached",
            (CEASE, 2) => "Cease / Administrative Shutdown",
            (CEASE, 3) => "Cease / Peer De-configured",
            (CEASE, 4) => "Cease / Administrative Reset",
            (CEASE, 5) => "Cease / Connection Rejected",
            (CEASE, 6) => "Cease / Other Configuration Change",
            (CEASE, 7) => "Cease / Connection Collision Resolution",
            (CEASE, 8) => "Cease / Out of Resources",
            (CEASE, _) => "Cease",
            _ => "unknown error code",
        }
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.describe(), self.code, self.subcode)
    }
}

/// A capability advertised in OPEN (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760: we carry this address family.
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 6793: our real AS number.
    FourOctetAs(u32),
    /// Anything else, kept as received.
    Unknown { code: u8, value: Vec<u8> },
}

impl Capability {
    fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Capability::Multiprotocol { afi, safi } => {
                out.extend_from_slice(&[cap_code::MULTIPROTOCOL, 4]);
                out.extend_from_slice(&afi.to_be_bytes());
                out.extend_from_slice(&[0, *safi]);
            }
            Capability::RouteRefresh => out.extend_from_slice(&[cap_code::ROUTE_REFRESH, 0]),
            Capability::FourOctetAs(asn) => {
                out.extend_from_slice(&[cap_code::FOUR_OCTET_AS, 4]);
                out.extend_from_slice(&asn.to_be_bytes());
            }
            Capability::Unknown { code, value } => {
                out.push(*code);
                // Kept values came from a one-byte length; longer ones are
                // cut rather than mis-framed.
                let value = &value[..value.len().min(255)];
                out.push(value.len() as u8);
                out.extend_from_slice(value);
            }
        }
    }
}

/// An OPEN message (RFC 4271 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field: [`AS_TRANS`] when the real
    /// AS number needs 4 octets.
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Our OPEN: IPv4 unicast and 4-octet AS capabilities.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr) -> Self {
        Self {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: AFI_IPV4,
                    safi: SAFI_UNICAST,
                },
                Capability::FourOctetAs(asn),
            ],
        }
    }

    /// The 4-octet AS number the speaker advertised, if it supports them.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The speaker's AS number: the 4-octet capability's when present.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// True if the speaker carries IPv4 unicast: it said so, or it
    /// advertised no address family at all (RFC 4760 §8: then IPv4 unicast
    /// is implied).
    pub fn carries_ipv4_unicast(&self) -> bool {
        let mut any_mp = false;
        for c in &self.capabilities {
            if let Capability::Multiprotocol { afi, safi } = c {
                if *afi == AFI_IPV4 && *safi == SAFI_UNICAST {
                    return true;
                }
                any_mp = true;
            }
        }
        !any_mp
    }
}

/// The ORIGIN attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

impl Origin {
    fn code(self) -> u8 {
        match self {
            Origin::Igp => 0,
            Origin::Egp => 1,
            Origin::Incomplete => 2,
        }
    }
}

/// The kind of an AS_PATH segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    Set,
    Sequence,
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsSegment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

impl AsSegment {
    /// An AS_SEQUENCE.
    pub fn sequence(asns: Vec<u32>) -> Self {
        Self {
            kind: SegmentKind::Sequence,
            asns,
        }
    }
}

/// A path attribute we keep without interpreting (optional transitive ones
/// we do not know, ATOMIC_AGGREGATE, AGGREGATOR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE that announces routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    pub next_hop: Ipv4Addr,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// Other attributes, in the order received.
    pub other: Vec<RawAttribute>,
}

impl PathAttributes {
    /// The AS numbers of the path, segments flattened (an AS_SET counts as
    /// its members, which is what a loop check needs).
    pub fn path_asns(&self) -> impl Iterator<Item = u32> + '_ {
        self.as_path.iter().flat_map(|s| s.asns.iter().copied())
    }

    /// AS_PATH length as the decision process counts it: an AS_SET counts
    /// as one (RFC 4271 §9.1.2.2).
    pub fn as_path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s.kind {
                SegmentKind::Set => 1,
                SegmentKind::Sequence => s.asns.len(),
            })
            .sum()
    }

    fn emit(&self, four_octet: bool, out: &mut Vec<u8>) {
        use attr_flag::{OPTIONAL, TRANSITIVE};
        emit_attr(out, TRANSITIVE, attr_type::ORIGIN, &[self.origin.code()]);
        let as_path = encode_as_path(&self.as_path, four_octet);
        emit_attr(out, TRANSITIVE, attr_type::AS_PATH, &as_path);
        emit_attr(
            out,
            TRANSITIVE,
            attr_type::NEXT_HOP,
            &self.next_hop.octets(),
        );
        if let Some(med) = self.med {
            emit_attr(
                out,
                OPTIONAL,
                attr_type::MULTI_EXIT_DISC,
                &med.to_be_bytes(),
            );
        }
        if let Some(lp) = self.local_pref {
            emit_attr(out, TRANSITIVE, attr_type::LOCAL_PREF, &lp.to_be_bytes());
        }
        // A 2-octet peer sees AS_TRANS in AS_PATH; the real numbers travel
        // in AS4_PATH (RFC 6793 §4.2.2).
        let needs_as4 = !four_octet && self.path_asns().any(|a| a > u32::from(u16::MAX));
        if needs_as4 {
            let as4 = encode_as_path(&self.as_path, true);
            emit_attr(out, OPTIONAL | TRANSITIVE, attr_type::AS4_PATH, &as4);
        }
        for a in &self.other {
            if needs_as4 && a.type_code == attr_type::AS4_PATH {
                continue;
            }
            emit_attr(out, a.flags, a.type_code, &a.value);
        }
    }
}

fn emit_attr(out: &mut Vec<u8>, flags: u8, type_code: u8, value: &[u8]) {
    let flags = flags & !attr_flag::EXTENDED_LENGTH;
    if let Ok(len) = u8::try_from(value.len()) {
        out.extend_from_slice(&[flags, type_code, len]);
    } else {
        // Values come from a 2-octet length or from our own small paths.
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&[flags | attr_flag::EXTENDED_LENGTH, type_code]);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&value[..value.len().min(usize::from(u16::MAX))]);
}

fn encode_as_path(segments: &[AsSegment], four_octet: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for seg in segments {
        let kind = match seg.kind {
            SegmentKind::Set => 1,
            SegmentKind::Sequence => 2,
        };
        // A segment holds at most 255 AS numbers; longer ones are split.
        for chunk in seg.asns.chunks(255) {
            out.push(kind);
            out.push(chunk.len() as u8);
            for &asn in chunk {
                if four_octet {
                    out.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let a = u16::try_from(asn).unwrap_or(AS_TRANS);
                    out.extend_from_slice(&a.to_be_bytes());
                }
            }
        }
    }
    out
}

/// An UPDATE message (RFC 4271 §4.3), IPv4 unicast only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Prefix>,
    /// Present when the UPDATE carried ORIGIN, AS_PATH and NEXT_HOP (it
    /// must when it announces NLRI).
    pub attributes: Option<PathAttributes>,
    pub nlri: Vec<Ipv4Prefix>,
}

impl Update {
    /// True for the End-of-RIB marker (RFC 4724): an empty UPDATE.
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty() && self.attributes.is_none() && self.nlri.is_empty()
    }
}

/// One BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    /// RFC 2918; decoded so it is not a Bad Message Type, otherwise ignored.
    RouteRefresh {
        afi: u16,
        safi: u8,
    },
}

/// A message we could not encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error(
        "the message would be {0} bytes, more than BGP's 4096: announce fewer prefixes per UPDATE"
    )]
    TooLong(usize),
}

/// Input the codec rejects, each naming the NOTIFICATION that answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the message marker is not all ones")]
    NotSynchronized,
    #[error("bad message length {0}")]
    BadLength(u16),
    #[error("unknown message type {0}")]
    BadType(u8),
    #[error("the peer speaks BGP version {0}; only 4 is supported")]
    UnsupportedVersion(u8),
    #[error("the peer's BGP identifier {0} is not valid")]
    BadBgpId(Ipv4Addr),
    #[error("unsupported optional parameter type {0} in OPEN")]
    UnsupportedOptionalParameter(u8),
    #[error("unacceptable hold time {0} s: it must be 0 or at least 3")]
    UnacceptableHoldTime(u16),
    #[error("malformed OPEN: {0}")]
    MalformedOpen(&'static str),
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(&'static str),
    #[error("unrecognized well-known attribute {}", attr_name(.0))]
    UnrecognizedWellKnown(Vec<u8>),
    #[error("missing well-known attribute {0}")]
    MissingWellKnown(u8),
    #[error("attribute {} has the wrong flags", attr_name(.0))]
    AttributeFlags(Vec<u8>),
    #[error("attribute {} has the wrong length", attr_name(.0))]
    AttributeLength(Vec<u8>),
    #[error("invalid ORIGIN value")]
    InvalidOrigin(Vec<u8>),
    #[error("invalid NEXT_HOP")]
    InvalidNextHop(Vec<u8>),
    #[error("invalid prefix in the withdrawn routes or NLRI")]
    InvalidNetworkField,
    #[error("malformed AS_PATH")]
    MalformedAsPath,
}

fn attr_name(raw: &[u8]) -> String {
    raw.get(1)
        .map_or_else(|| "?".to_string(), |t| t.to_string())
}

impl DecodeError {
    /// The NOTIFICATION that answers this error (RFC 4271 §6.1–6.3).
    pub fn notification(&self) -> Notification {
        use DecodeError::*;
        use subcode::*;
        let n = Notification::with_data;
        match self {
            NotSynchronized => n(code::MESSAGE_HEADER, CONNECTION_NOT_SYNCHRONIZED, vec![]),
            BadLength(len) => n(
                code::MESSAGE_HEADER,
                BAD_MESSAGE_LENGTH,
                len.to_be_bytes().to_vec(),
            ),
            BadType(t) => n(code::MESSAGE_HEADER, BAD_MESSAGE_TYPE, vec![*t]),
            // Data: the largest version we support, two octets.
            UnsupportedVersion(_) => n(
                code::OPEN,
                UNSUPPORTED_VERSION,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            BadBgpId(_) => n(code::OPEN, BAD_BGP_IDENTIFIER, vec![]),
            UnsupportedOptionalParameter(_) => {
                n(code::OPEN, UNSUPPORTED_OPTIONAL_PARAMETER, vec![])
            }
            UnacceptableHoldTime(_) => n(code::OPEN, UNACCEPTABLE_HOLD_TIME, vec![]),
            MalformedOpen(_) => n(code::OPEN, UNSPECIFIC, vec![]),
            MalformedAttributeList(_) => n(code::UPDATE, MALFORMED_ATTRIBUTE_LIST, vec![]),
            UnrecognizedWellKnown(a) => {
                n(code::UPDATE, UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, a.clone())
            }
            MissingWellKnown(t) => n(code::UPDATE, MISSING_WELL_KNOWN_ATTRIBUTE, vec![*t]),
            AttributeFlags(a) => n(code::UPDATE, ATTRIBUTE_FLAGS_ERROR, a.clone()),
            AttributeLength(a) => n(code::UPDATE, ATTRIBUTE_LENGTH_ERROR, a.clone()),
            InvalidOrigin(a) => n(code::UPDATE, INVALID_ORIGIN_ATTRIBUTE, a.clone()),
            InvalidNextHop(a) => n(code::UPDATE, INVALID_NEXT_HOP_ATTRIBUTE, a.clone()),
            InvalidNetworkField => n(code::UPDATE, INVALID_NETWORK_FIELD, vec![]),
            MalformedAsPath => n(code::UPDATE, MALFORMED_AS_PATH, vec![]),
        }
    }
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.bytes(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Finds the first message in `buf`: `Ok(Some(len))` when a whole message
/// of `len` bytes is there, `Ok(None)` when more bytes are needed, an error
/// when the header is bad (the stream cannot be resynchronised after it).
pub fn frame(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    if buf.len() < HEADER_LEN {
        // A marker byte that is not 0xff is wrong however the message ends.
        if buf.iter().take(MARKER_LEN).any(|&b| b != 0xff) {
            return Err(DecodeError::NotSynchronized);
        }
        return Ok(None);
    }
    if buf[..MARKER_LEN].iter().any(|&b| b != 0xff) {
        return Err(DecodeError::NotSynchronized);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    if usize::from(len) < HEADER_LEN || usize::from(len) > MAX_MESSAGE_LEN {
        return Err(DecodeError::BadLength(len));
    }
    Ok((buf.len() >= usize::from(len)).then_some(usize::from(len)))
}

impl Message {
    /// Decodes one whole message (as [`frame`] cut it). `four_octet_as`:
    /// both sides advertised 4-octet AS support, so AS_PATH carries 4-octet
    /// numbers.
    pub fn decode(msg: &[u8], four_octet_as: bool) -> Result<Message, DecodeError> {
        let len = match frame(msg)? {
            Some(len) if len == msg.len() => len,
            _ => {
                let field = msg
                    .get(16..18)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
                return Err(DecodeError::BadLength(field));
            }
        };
        let ty = msg[18];
        let body = &msg[HEADER_LEN..];
        let bad_len = || DecodeError::BadLength(len as u16);
        match ty {
            msg_type::OPEN if len >= 29 => decode_open(body).map(Message::Open),
            msg_type::UPDATE if len >= 23 => {
                decode_update(body, four_octet_as).map(Message::Update)
            }
            msg_type::NOTIFICATION if len >= 21 => Ok(Message::Notification(Notification {
                code: body[0],
                subcode: body[1],
                data: body[2..].to_vec(),
            })),
            msg_type::KEEPALIVE if len == HEADER_LEN => Ok(Message::Keepalive),
            msg_type::ROUTE_REFRESH if len == 23 => Ok(Message::RouteRefresh {
                afi: u16::from_be_bytes([body[0], body[1]]),
                safi: body[3],
            }),
            msg_type::OPEN
            | msg_type::UPDATE
            | msg_type::NOTIFICATION
            | msg_type::KEEPALIVE
            | msg_type::ROUTE_REFRESH => Err(bad_len()),
            other => Err(DecodeError::BadType(other)),
        }
    }

    /// Encodes the message. UPDATEs longer than 4096 bytes are refused: use
    /// [`encode_updates`] to split a large change.
    pub fn encode(&self, four_octet_as: bool) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&[0xff; MARKER_LEN]);
        out.extend_from_slice(&[0, 0, 0]);
        let ty = match self {
            Message::Open(open) => {
                out.push(BGP_VERSION);
                out.extend_from_slice(&open.my_as.to_be_bytes());
                out.extend_from_slice(&open.hold_time.to_be_bytes());
                out.extend_from_slice(&open.bgp_id.octets());
                // One capabilities parameter per capability: simple, valid
                // (RFC 5492 §4), and never over a parameter's 255 bytes.
                let mut params = Vec::new();
                for cap in &open.capabilities {
                    let mut c = Vec::new();
                    cap.emit(&mut c);
                    params.push(2);
                    params.push(c.len() as u8);
                    params.extend_from_slice(&c);
                }
                let Ok(plen) = u8::try_from(params.len()) else {
                    return Err(EncodeError::TooLong(HEADER_LEN + 10 + params.len()));
                };
                out.push(plen);
                out.extend_from_slice(&params);
                msg_type::OPEN
            }
            Message::Update(u) => {
                let mut withdrawn = Vec::new();
                for p in &u.withdrawn {
                    p.emit(&mut withdrawn);
                }
                let mut attrs = Vec::new();
                if let Some(a) = &u.attributes {
                    a.emit(four_octet_as, &mut attrs);
                }
                let total = HEADER_LEN + 4 + withdrawn.len() + attrs.len();
                if total > MAX_MESSAGE_LEN {
                    return Err(EncodeError::TooLong(total));
                }
                out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
                out.extend_from_slice(&withdrawn);
                out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
                out.extend_from_slice(&attrs);
                for p in &u.nlri {
                    p.emit(&mut out);
                }
                msg_type::UPDATE
            }
            Message::Notification(n) => {
                out.push(n.code);
                out.push(n.subcode);
                out.extend_from_slice(&n.data);
                msg_type::NOTIFICATION
            }
            Message::Keepalive => msg_type::KEEPALIVE,
            Message::RouteRefresh { afi, safi } => {
                out.extend_from_slice(&afi.to_be_bytes());
                out.extend_from_slice(&[0, *safi]);
                msg_type::ROUTE_REFRESH
            }
        };
        let len = out.len();
        if len > MAX_MESSAGE_LEN {
            return Err(EncodeError::TooLong(len));
        }
        out[16..18].copy_from_slice(&(len as u16).to_be_bytes());
        out[18] = ty;
        Ok(out)
    }
}

/// Encodes a change as as few UPDATEs as fit in 4096 bytes each: first the
/// withdrawals, then the announcements sharing `attrs`.
pub fn encode_updates(
    withdrawn: &[Ipv4Prefix],
    announced: &[Ipv4Prefix],
    attrs: &PathAttributes,
    four_octet_as: bool,
) -> Result<Vec<Vec<u8>>, EncodeError> {
    let mut out = Vec::new();
    let room = MAX_MESSAGE_LEN - HEADER_LEN - 4;
    let mut batch = Vec::new();
    let mut used = 0;
    for p in withdrawn {
        if used + p.wire_len() > room {
            out.push(update_msg(
                std::mem::take(&mut batch),
                None,
                Vec::new(),
                four_octet_as,
            )?);
            used = 0;
        }
        used += p.wire_len();
        batch.push(*p);
    }
    if !batch.is_empty() {
        out.push(update_msg(batch, None, Vec::new(), four_octet_as)?);
    }
    if announced.is_empty() {
        return Ok(out);
    }
    let mut attr_bytes = Vec::new();
    attrs.emit(four_octet_as, &mut attr_bytes);
    let room = room.saturating_sub(attr_bytes.len());
    if room < 5 {
        return Err(EncodeError::TooLong(HEADER_LEN + 4 + attr_bytes.len() + 5));
    }
    let mut batch = Vec::new();
    let mut used = 0;
    for p in announced {
        if used + p.wire_len() > room {
            let nlri = std::mem::take(&mut batch);
            out.push(update_msg(Vec::new(), Some(attrs), nlri, four_octet_as)?);
            used = 0;
        }
        used += p.wire_len();
        batch.push(*p);
    }
    if !batch.is_empty() {
        out.push(update_msg(Vec::new(), Some(attrs), batch, four_octet_as)?);
    }
    Ok(out)
}

fn update_msg(
    withdrawn: Vec<Ipv4Prefix>,
    attributes: Option<&PathAttributes>,
    nlri: Vec<Ipv4Prefix>,
    four_octet_as: bool,
) -> Result<Vec<u8>, EncodeError> {
    Message::Update(Update {
        withdrawn,
        attributes: attributes.cloned(),
        nlri,
    })
    .encode(four_octet_as)
}

fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    let short = DecodeError::MalformedOpen("shorter than its fixed fields");
    let mut r = Reader { buf: body };
    let version = r.u8().ok_or(short.clone())?;
    if version != BGP_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let my_as = r.u16().ok_or(short.clone())?;
    let hold_time = r.u16().ok_or(short.clone())?;
    // RFC 4271 §6.2: a hold time of one or two seconds MUST be rejected.
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::UnacceptableHoldTime(hold_time));
    }
    let bgp_id = Ipv4Addr::from(r.u32().ok_or(short.clone())?);
    // RFC 6286: any non-zero 4-octet value is a valid identifier.
    if bgp_id.is_unspecified() {
        return Err(DecodeError::BadBgpId(bgp_id));
    }
    let plen = r.u8().ok_or(short)?;
    let params = r
        .bytes(usize::from(plen))
        .ok_or(DecodeError::MalformedOpen(
            "optional parameters run past the message",
        ))?;
    if !r.is_empty() {
        return Err(DecodeError::MalformedOpen(
            "bytes after the optional parameters",
        ));
    }
    let mut capabilities = Vec::new();
    let mut p = Reader { buf: params };
    while !p.is_empty() {
        let bad = DecodeError::MalformedOpen("truncated optional parameter");
        let ptype = p.u8().ok_or(bad.clone())?;
        let len = p.u8().ok_or(bad.clone())?;
        let value = p.bytes(usize::from(len)).ok_or(bad)?;
        if ptype != 2 {
            return Err(DecodeError::UnsupportedOptionalParameter(ptype));
        }
        let mut c = Reader { buf: value };
        while !c.is_empty() {
            let bad = DecodeError::MalformedOpen("truncated capability");
            let code = c.u8().ok_or(bad.clone())?;
            let len = c.u8().ok_or(bad.clone())?;
            let value = c.bytes(usize::from(len)).ok_or(bad)?;
            let wrong_len = DecodeError::MalformedOpen("capability of the wrong length");
            capabilities.push(match code {
                cap_code::MULTIPROTOCOL => {
                    let [a0, a1, _, safi] = <[u8; 4]>::try_from(value).map_err(|_| wrong_len)?;
                    Capability::Multiprotocol {
                        afi: u16::from_be_bytes([a0, a1]),
                        safi,
                    }
                }
                cap_code::ROUTE_REFRESH if value.is_empty() => Capability::RouteRefresh,
                cap_code::FOUR_OCTET_AS => {
                    let b = <[u8; 4]>::try_from(value).map_err(|_| wrong_len)?;
                    Capability::FourOctetAs(u32::from_be_bytes(b))
                }
                _ => Capability::Unknown {
                    code,
                    value: value.to_vec(),
                },
            });
        }
    }
    Ok(Open {
        my_as,
        hold_time,
        bgp_id,
        capabilities,
    })
}

fn decode_prefixes(field: &[u8]) -> Result<Vec<Ipv4Prefix>, DecodeError> {
    let mut out = Vec::new();
    let mut r = Reader { buf: field };
    while let Some(len) = r.u8() {
        if len > 32 {
            return Err(DecodeError::InvalidNetworkField);
        }
        let bytes = r
            .bytes(usize::from(len).div_ceil(8))
            .ok_or(DecodeError::InvalidNetworkField)?;
        let mut octets = [0u8; 4];
        octets[..bytes.len()].copy_from_slice(bytes);
        let p = Ipv4Prefix::new(Ipv4Addr::from(octets), len)
            .map_err(|_| DecodeError::InvalidNetworkField)?;
        out.push(p);
    }
    Ok(out)
}

fn decode_update(body: &[u8], four_octet_as: bool) -> Result<Update, DecodeError> {
    let too_long =
        || DecodeError::MalformedAttributeList("withdrawn or attribute length past the message");
    let mut r = Reader { buf: body };
    let wlen = r.u16().ok_or_else(too_long)?;
    let withdrawn = r.bytes(usize::from(wlen)).ok_or_else(too_long)?;
    let alen = r.u16().ok_or_else(too_long)?;
    let attrs = r.bytes(usize::from(alen)).ok_or_else(too_long)?;
    let nlri = r.buf;
    let withdrawn = decode_prefixes(withdrawn)?;
    let nlri = decode_prefixes(nlri)?;

    let mut seen = [false; 256];
    let mut origin = None;
    let mut as_path = None;
    let mut next_hop = None;
    let mut med = None;
    let mut local_pref = None;
    let mut other = Vec::new();
    let mut a = Reader { buf: attrs };
    while !a.is_empty() {
        let start = a.buf;
        let truncated = || DecodeError::MalformedAttributeList("truncated attribute");
        let flags = a.u8().ok_or_else(truncated)?;
        let type_code = a.u8().ok_or_else(truncated)?;
        let len = if flags & attr_flag::EXTENDED_LENGTH != 0 {
            a.u16().ok_or_else(truncated)?
        } else {
            u16::from(a.u8().ok_or_else(truncated)?)
        };
        let value = a.bytes(usize::from(len)).ok_or_else(truncated)?;
        let raw = start[..start.len() - a.buf.len()].to_vec();
        if std::mem::replace(&mut seen[usize::from(type_code)], true) {
            return Err(DecodeError::MalformedAttributeList(
                "an attribute appears twice",
            ));
        }
        let kind = flags & (attr_flag::OPTIONAL | attr_flag::TRANSITIVE);
        let well_known = attr_flag::TRANSITIVE;
        let check_flags = |want: u8| {
            if kind == want {
                Ok(())
            } else {
                Err(DecodeError::AttributeFlags(raw.clone()))
            }
        };
        let u32_value = || {
            <[u8; 4]>::try_from(value)
                .map(u32::from_be_bytes)
                .map_err(|_| DecodeError::AttributeLength(raw.clone()))
        };
        match type_code {
            attr_type::ORIGIN => {
                check_flags(well_known)?;
                origin = Some(match value {
                    [0] => Origin::Igp,
                    [1] => Origin::Egp,
                    [2] => Origin::Incomplete,
                    [_] => return Err(DecodeError::InvalidOrigin(raw)),
                    _ => return Err(DecodeError::AttributeLength(raw)),
                });
            }
            attr_type::AS_PATH => {
                check_flags(well_known)?;
                as_path = Some(decode_as_path(value, four_octet_as)?);
            }
            attr_type::NEXT_HOP => {
                check_flags(well_known)?;
                let nh = Ipv4Addr::from(u32_value()?);
                // RFC 4271 §6.3: a syntactically incorrect next hop.
                if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                    return Err(DecodeError::InvalidNextHop(raw));
                }
                next_hop = Some(nh);
            }
            attr_type::MULTI_EXIT_DISC => {
                check_flags(attr_flag::OPTIONAL)?;
                med = Some(u32_value()?);
            }
            attr_type::LOCAL_PREF => {
                check_flags(well_known)?;
                local_pref = Some(u32_value()?);
            }
            attr_type::ATOMIC_AGGREGATE => {
                check_flags(well_known)?;
                if !value.is_empty() {
                    return Err(DecodeError::AttributeLength(raw));
                }
                other.push(RawAttribute {
                    flags,
                    type_code,
                    value: Vec::new(),
                });
            }
            attr_type::AGGREGATOR => {
                check_flags(attr_flag::OPTIONAL | attr_flag::TRANSITIVE)?;
                let want = if four_octet_as { 8 } else { 6 };
                if value.len() != want {
                    return Err(DecodeError::AttributeLength(raw));
                }
                other.push(RawAttribute {
                    flags,
                    type_code,
                    value: value.to_vec(),
                });
            }
            _ if flags & attr_flag::OPTIONAL == 0 => {
                return Err(DecodeError::UnrecognizedWellKnown(raw));
            }
            // RFC 4271 §5: an unrecognized optional transitive attribute is
            // kept (and marked partial if passed on); a non-transitive one
            // is quietly ignored.
            _ if flags & attr_flag::TRANSITIVE != 0 => other.push(RawAttribute {
                flags,
                type_code,
                value: value.to_vec(),
            }),
            _ => {}
        }
    }
    if !nlri.is_empty() {
        for (present, t) in [
            (origin.is_some(), attr_type::ORIGIN),
            (as_path.is_some(), attr_type::AS_PATH),
            (next_hop.is_some(), attr_type::NEXT_HOP),
        ] {
            if !present {
                return Err(DecodeError::MissingWellKnown(t));
            }
        }
    }
    let attributes = match (origin, as_path, next_hop) {
        (Some(origin), Some(as_path), Some(next_hop)) => Some(PathAttributes {
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            other,
        }),
        _ => None,
    };
    Ok(Update {
        withdrawn,
        attributes,
        nlri,
    })
}

fn decode_as_path(value: &[u8], four_octet_as: bool) -> Result<Vec<AsSegment>, DecodeError> {
    let mut segments = Vec::new();
    let mut r = Reader { buf: value };
    let size = if four_octet_as { 4 } else { 2 };
    while !r.is_empty() {
        let kind = match r.u8().ok_or(DecodeError::MalformedAsPath)? {
            1 => SegmentKind::Set,
            2 => SegmentKind::Sequence,
            // Confederation segments (RFC 5065) never reach us: we are not
            // in a confederation.
            _ => return Err(DecodeError::MalformedAsPath),
        };
        let count = r.u8().ok_or(DecodeError::MalformedAsPath)?;
        if count == 0 {
            return Err(DecodeError::MalformedAsPath);
        }
        let bytes = r
            .bytes(usize::from(count) * size)
            .ok_or(DecodeError::MalformedAsPath)?;
        let asns = bytes
            .chunks_exact(size)
            .map(|c| match *c {
                [a, b] => u32::from(u16::from_be_bytes([a, b])),
                [a, b, c, d] => u32::from_be_bytes([a, b, c, d]),
                _ => 0,
            })
            .collect();
        segments.push(AsSegment { kind, asns });
    }
    Ok(segments)
}

#[cfg(test)]
mod tests;
