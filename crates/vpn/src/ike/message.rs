//! IKEv2 messages (RFC 7296 §3): the 28-byte header, the payload chain
//! and each payload's body, read into typed values and written back.
//!
//! Sans-IO and free of cryptography: the encrypted (SK) payload's body
//! (IV | ciphertext | ICV) stays opaque here; [`super::crypto`] opens it
//! and hands its plaintext to [`parse_payloads`]. Parsing never panics and
//! checks every length against the bytes it has; allocations are bounded
//! by the input's size. Each refusal is a [`ParseError`] a responder can
//! count by [`ParseError::name`] and answer with [`ParseError::notify`].
//!
//! Not here: whether a proposal is acceptable, which payloads an exchange
//! must carry, message IDs and retransmission; those are the state
//! machine's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The header's fixed size.
pub const HEADER_LEN: usize = 28;
/// Every payload's generic header: next payload, critical bit, length.
pub const GENERIC_HEADER_LEN: usize = 4;
/// IKEv2.0: major version 2 in the high nibble, minor 0.
pub const IKE_VERSION: u8 = 0x20;
/// The largest body a payload can carry (its length field is 16 bits).
pub const MAX_BODY: usize = u16::MAX as usize - GENERIC_HEADER_LEN;

/// RFC 7296 §3.9: a nonce is 16 to 256 bytes.
const NONCE_MIN: usize = 16;
const NONCE_MAX: usize = 256;
/// The generic header's critical bit (RFC 7296 §3.2).
const CRITICAL: u8 = 0x80;
/// Substructure "last" markers (RFC 7296 §3.3.1, §3.3.2).
const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
/// Attribute Format bit: set for TV (type/value) attributes.
const ATTR_TV: u16 = 0x8000;
/// Transform attribute 14, Key Length, always TV (RFC 7296 §3.3.5).
const ATTR_KEY_LENGTH: u16 = 14;
/// Traffic selector types and their lengths (RFC 7296 §3.13.1).
const TS_IPV4_ADDR_RANGE: u8 = 7;
const TS_IPV6_ADDR_RANGE: u8 = 8;
const TS_IPV4_LEN: usize = 16;
const TS_IPV6_LEN: usize = 40;

/// Payload type numbers (RFC 7296 §3.2, IANA "IKEv2 Payload Types").
pub mod payload_type {
    /// "No Next Payload": ends the chain.
    pub const NONE: u8 = 0;
    pub const SA: u8 = 33;
    pub const KE: u8 = 34;
    pub const IDI: u8 = 35;
    pub const IDR: u8 = 36;
    pub const CERT: u8 = 37;
    pub const CERTREQ: u8 = 38;
    pub const AUTH: u8 = 39;
    pub const NONCE: u8 = 40;
    pub const NOTIFY: u8 = 41;
    pub const DELETE: u8 = 42;
    pub const VENDOR_ID: u8 = 43;
    pub const TSI: u8 = 44;
    pub const TSR: u8 = 45;
    pub const SK: u8 = 46;
    pub const CP: u8 = 47;
    pub const EAP: u8 = 48;

    /// Types RFC 7296 defines: their critical bit is ignored (§2.5) even
    /// when this codec keeps their body raw.
    pub fn is_recognized(kind: u8) -> bool {
        (SA..=EAP).contains(&kind)
    }
}

/// Notify message types (RFC 7296 §3.10.1) a responder sends or reads.
pub mod notify_type {
    // Errors (below 16384).
    pub const UNSUPPORTED_CRITICAL_PAYLOAD: u16 = 1;
    pub const INVALID_IKE_SPI: u16 = 4;
    pub const INVALID_MAJOR_VERSION: u16 = 5;
    pub const INVALID_SYNTAX: u16 = 7;
    pub const INVALID_MESSAGE_ID: u16 = 9;
    pub const INVALID_SPI: u16 = 11;
    pub const NO_PROPOSAL_CHOSEN: u16 = 14;
    pub const INVALID_KE_PAYLOAD: u16 = 17;
    pub const AUTHENTICATION_FAILED: u16 = 24;
    pub const SINGLE_PAIR_REQUIRED: u16 = 34;
    pub const NO_ADDITIONAL_SAS: u16 = 35;
    pub const INTERNAL_ADDRESS_FAILURE: u16 = 36;
    pub const FAILED_CP_REQUIRED: u16 = 37;
    pub const TS_UNACCEPTABLE: u16 = 38;
    pub const INVALID_SELECTORS: u16 = 39;
    pub const TEMPORARY_FAILURE: u16 = 43;
    pub const CHILD_SA_NOT_FOUND: u16 = 44;
    // Status (16384 and above).
    pub const INITIAL_CONTACT: u16 = 16384;
    pub const SET_WINDOW_SIZE: u16 = 16385;
    pub const NAT_DETECTION_SOURCE_IP: u16 = 16388;
    pub const NAT_DETECTION_DESTINATION_IP: u16 = 16389;
    pub const COOKIE: u16 = 16390;
    pub const USE_TRANSPORT_MODE: u16 = 16391;
    pub const REKEY_SA: u16 = 16393;
    pub const ESP_TFC_PADDING_NOT_SUPPORTED: u16 = 16394;
    pub const NON_FIRST_FRAGMENTS_ALSO: u16 = 16395;
    pub const IKEV2_FRAGMENTATION_SUPPORTED: u16 = 16430;
    pub const SIGNATURE_HASH_ALGORITHMS: u16 = 16431;

    /// Error types are below 16384 (RFC 7296 §3.10.1).
    pub fn is_error(kind: u16) -> bool {
        kind < INITIAL_CONTACT
    }
}

/// Security protocol IDs in proposals, notifies and deletes (§3.3.1).
pub mod protocol {
    pub const IKE: u8 = 1;
    pub const AH: u8 = 2;
    pub const ESP: u8 = 3;
}

/// Transform types (RFC 7296 §3.3.2).
pub mod transform_type {
    pub const ENCR: u8 = 1;
    pub const PRF: u8 = 2;
    pub const INTEG: u8 = 3;
    pub const DH: u8 = 4;
    pub const ESN: u8 = 5;
}

/// Encryption transform IDs (type 1).
pub mod encr {
    pub const AES_CBC: u16 = 12;
    pub const AES_GCM_16: u16 = 20;
}

/// Pseudorandom function IDs (type 2).
pub mod prf {
    pub const HMAC_SHA1: u16 = 2;
    pub const HMAC_SHA2_256: u16 = 5;
    pub const HMAC_SHA2_384: u16 = 6;
    pub const HMAC_SHA2_512: u16 = 7;
}

/// Integrity algorithm IDs (type 3).
pub mod integ {
    pub const NONE: u16 = 0;
    pub const HMAC_SHA1_96: u16 = 2;
    pub const HMAC_SHA2_256_128: u16 = 12;
    pub const HMAC_SHA2_384_192: u16 = 13;
    pub const HMAC_SHA2_512_256: u16 = 14;
}

/// Diffie-Hellman group numbers (type 4; also the KE payload's group).
pub mod dh {
    pub const MODP_1024: u16 = 2;
    pub const MODP_2048: u16 = 14;
    pub const MODP_3072: u16 = 15;
    pub const MODP_4096: u16 = 16;
    pub const ECP_256: u16 = 19;
    pub const ECP_384: u16 = 20;
    pub const ECP_521: u16 = 21;
    pub const MODP_2048_224: u16 = 23;
    pub const MODP_2048_256: u16 = 24;
    pub const CURVE25519: u16 = 31;
}

/// Extended Sequence Numbers IDs (type 5).
pub mod esn {
    pub const NO: u16 = 0;
    pub const YES: u16 = 1;
}

/// Identification types (RFC 7296 §3.5).
pub mod id_type {
    pub const IPV4_ADDR: u8 = 1;
    pub const FQDN: u8 = 2;
    pub const RFC822_ADDR: u8 = 3;
    pub const IPV6_ADDR: u8 = 5;
    pub const DER_ASN1_DN: u8 = 9;
    pub const KEY_ID: u8 = 11;
}

/// Authentication methods (RFC 7296 §3.8).
pub mod auth_method {
    pub const RSA_SIG: u8 = 1;
    pub const SHARED_KEY_MIC: u8 = 2;
    pub const DSS_SIG: u8 = 3;
    /// RFC 7427.
    pub const DIGITAL_SIGNATURE: u8 = 14;
}

/// The exchange a message belongs to (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exchange {
    IkeSaInit,
    IkeAuth,
    CreateChildSa,
    Informational,
    /// Any other number, kept so a responder can ignore it by policy.
    /// Never holds 34 to 37 when made by [`Exchange::from_u8`].
    Other(u8),
}

impl Exchange {
    pub fn from_u8(code: u8) -> Exchange {
        match code {
            34 => Exchange::IkeSaInit,
            35 => Exchange::IkeAuth,
            36 => Exchange::CreateChildSa,
            37 => Exchange::Informational,
            other => Exchange::Other(other),
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exchange::IkeSaInit => 34,
            Exchange::IkeAuth => 35,
            Exchange::CreateChildSa => 36,
            Exchange::Informational => 37,
            Exchange::Other(code) => code,
        }
    }
}

/// The IKE header (RFC 7296 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub spi_i: u64,
    pub spi_r: u64,
    /// The first payload's type. Recomputed by the encoder.
    pub next_payload: u8,
    /// Major version in the high nibble ([`IKE_VERSION`]).
    pub version: u8,
    pub exchange: Exchange,
    /// [`Header::INITIATOR`], [`Header::VERSION`], [`Header::RESPONSE`].
    pub flags: u8,
    pub message_id: u32,
    /// The whole message's length. Recomputed by the encoder.
    pub length: u32,
}

impl Header {
    /// Set by the original initiator of the IKE SA.
    pub const INITIATOR: u8 = 0x08;
    /// "I can speak a higher major version": never set by IKEv2.0.
    pub const VERSION: u8 = 0x10;
    /// Set on responses.
    pub const RESPONSE: u8 = 0x20;

    pub fn is_initiator(&self) -> bool {
        self.flags & Header::INITIATOR != 0
    }

    pub fn is_response(&self) -> bool {
        self.flags & Header::RESPONSE != 0
    }

    fn put(&self, out: &mut Vec<u8>, next_payload: u8, length: u32) {
        out.extend_from_slice(&self.spi_i.to_be_bytes());
        out.extend_from_slice(&self.spi_r.to_be_bytes());
        out.push(next_payload);
        out.push(self.version);
        out.push(self.exchange.code());
        out.push(self.flags);
        out.extend_from_slice(&self.message_id.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
    }
}

/// One transform of a proposal (RFC 7296 §3.3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransformSpec {
    /// [`transform_type`].
    pub kind: u8,
    pub id: u16,
    /// The Key Length attribute (14), in bits. Other attributes are
    /// skipped on parse: RFC 7296 defines no other.
    pub key_len: Option<u16>,
}

/// One proposal of an SA payload (RFC 7296 §3.3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    pub num: u8,
    /// [`protocol`]: IKE or ESP.
    pub protocol: u8,
    /// Empty in IKE_SA_INIT, 8 bytes rekeying an IKE SA, 4 for ESP. At
    /// most 255 bytes.
    pub spi: Vec<u8>,
    pub transforms: Vec<TransformSpec>,
}

/// IDi or IDr's body (RFC 7296 §3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identification {
    /// [`id_type`].
    pub kind: u8,
    pub data: Vec<u8>,
}

/// A Notify payload (RFC 7296 §3.10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notify {
    /// [`protocol`], or 0 when no SA is meant.
    pub protocol: u8,
    /// At most 255 bytes.
    pub spi: Vec<u8>,
    /// [`notify_type`].
    pub kind: u16,
    pub data: Vec<u8>,
}

/// A Delete payload (RFC 7296 §3.11).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Delete {
    pub protocol: u8,
    /// 0 for the IKE SA itself (with no SPIs), 4 for ESP.
    pub spi_size: u8,
    /// Each `spi_size` bytes long.
    pub spis: Vec<Vec<u8>>,
}

/// One traffic selector (RFC 7296 §3.13.1): an address range, a port
/// range and an IP protocol (0 for any).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    pub ip_protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
    /// `start` and `end` are the same family: it picks the TS type.
    pub start: IpAddr,
    pub end: IpAddr,
}

/// A payload with its typed body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Payload {
    Sa(Vec<Proposal>),
    Ke {
        group: u16,
        data: Vec<u8>,
    },
    IdI(Identification),
    IdR(Identification),
    Auth {
        method: u8,
        data: Vec<u8>,
    },
    /// 16 to 256 bytes.
    Nonce(Vec<u8>),
    Notify(Notify),
    Delete(Delete),
    VendorId(Vec<u8>),
    TsI(Vec<TrafficSelector>),
    TsR(Vec<TrafficSelector>),
    /// SK (RFC 7296 §3.14), always the last payload: `body` is IV |
    /// ciphertext | ICV, opened by the crypto layer; `first_payload` is
    /// the first inner payload's type (the SK header's Next Payload).
    Encrypted {
        first_payload: u8,
        body: Vec<u8>,
    },
    /// CERT, CERTREQ, CP, EAP and types RFC 7296 does not define, kept
    /// raw. `critical` is the generic header's bit; an undefined type
    /// with it set is refused ([`ParseError::UnsupportedCritical`]).
    Unknown {
        kind: u8,
        critical: bool,
        body: Vec<u8>,
    },
}

impl Payload {
    /// A Notify about no particular SA (protocol 0, no SPI).
    pub fn notify(kind: u16, data: Vec<u8>) -> Payload {
        Payload::Notify(Notify {
            protocol: 0,
            spi: Vec::new(),
            kind,
            data,
        })
    }

    /// Its payload type number.
    pub fn kind(&self) -> u8 {
        use payload_type as t;
        match self {
            Payload::Sa(_) => t::SA,
            Payload::Ke { .. } => t::KE,
            Payload::IdI(_) => t::IDI,
            Payload::IdR(_) => t::IDR,
            Payload::Auth { .. } => t::AUTH,
            Payload::Nonce(_) => t::NONCE,
            Payload::Notify(_) => t::NOTIFY,
            Payload::Delete(_) => t::DELETE,
            Payload::VendorId(_) => t::VENDOR_ID,
            Payload::TsI(_) => t::TSI,
            Payload::TsR(_) => t::TSR,
            Payload::Encrypted { .. } => t::SK,
            Payload::Unknown { kind, .. } => *kind,
        }
    }
}

/// A whole IKE message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    pub header: Header,
    pub payloads: Vec<Payload>,
    /// Where, in the parsed bytes, the SK payload's generic header
    /// starts: the bytes before it, with it, are GCM's associated data
    /// (RFC 5282 §5.1), and the ICV covers them (RFC 7296 §3.14).
    pub encrypted_at: Option<usize>,
}

/// Why a message or an SK payload's contents were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{len} bytes is shorter than the 28-byte IKE header")]
    Truncated { len: usize },
    #[error("the header's length is {header} but the datagram holds {len} bytes")]
    LengthMismatch { header: u32, len: usize },
    #[error("IKE version {0:#04x} is not major version 2")]
    UnsupportedVersion(u8),
    #[error("payload type {kind} runs past the end of the message")]
    PayloadTruncated { kind: u8 },
    #[error("payload type {kind} has length {len}, shorter than its fixed fields")]
    PayloadLength { kind: u8, len: usize },
    #[error("{len} bytes follow the last payload")]
    TrailingBytes { len: usize },
    #[error("the encrypted (SK) payload is not the last payload")]
    EncryptedNotLast,
    #[error("an encrypted (SK) payload inside an encrypted payload")]
    NestedEncrypted,
    #[error("unsupported payload type {0} is marked critical")]
    UnsupportedCritical(u8),
    #[error("a nonce of {0} bytes: RFC 7296 wants 16 to 256")]
    BadNonceLength(usize),
    #[error("payload type {kind} is malformed: {what}")]
    Malformed { kind: u8, what: &'static str },
}

impl ParseError {
    /// Every [`ParseError::name`], for registering counters up front.
    pub const NAMES: [&'static str; 11] = [
        "truncated",
        "length_mismatch",
        "unsupported_version",
        "payload_truncated",
        "payload_length",
        "trailing_bytes",
        "encrypted_not_last",
        "nested_encrypted",
        "unsupported_critical",
        "bad_nonce_length",
        "malformed",
    ];

    /// A stable name to count it by.
    pub fn name(&self) -> &'static str {
        match self {
            ParseError::Truncated { .. } => "truncated",
            ParseError::LengthMismatch { .. } => "length_mismatch",
            ParseError::UnsupportedVersion(_) => "unsupported_version",
            ParseError::PayloadTruncated { .. } => "payload_truncated",
            ParseError::PayloadLength { .. } => "payload_length",
            ParseError::TrailingBytes { .. } => "trailing_bytes",
            ParseError::EncryptedNotLast => "encrypted_not_last",
            ParseError::NestedEncrypted => "nested_encrypted",
            ParseError::UnsupportedCritical(_) => "unsupported_critical",
            ParseError::BadNonceLength(_) => "bad_nonce_length",
            ParseError::Malformed { .. } => "malformed",
        }
    }

    /// The Notify type RFC 7296 answers it with, and that Notify's data:
    /// INVALID_MAJOR_VERSION (§2.5, sent unprotected, in reply to a
    /// request only), UNSUPPORTED_CRITICAL_PAYLOAD with the offending
    /// type (§2.5), else INVALID_SYNTAX. §3.10.1 allows INVALID_SYNTAX
    /// only in an SK payload once the message's ICV checked out: for an
    /// unprotected message, the caller drops it instead.
    pub fn notify(&self) -> (u16, Vec<u8>) {
        match self {
            ParseError::UnsupportedVersion(_) => (notify_type::INVALID_MAJOR_VERSION, Vec::new()),
            ParseError::UnsupportedCritical(kind) => {
                (notify_type::UNSUPPORTED_CRITICAL_PAYLOAD, vec![*kind])
            }
            _ => (notify_type::INVALID_SYNTAX, Vec::new()),
        }
    }
}

/// A cursor over input bytes; every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.bytes.split_at_checked(n)?;
        self.bytes = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn rest(self) -> &'a [u8] {
        self.bytes
    }
}

/// Reads a whole IKE message (RFC 7296 §3.1, §3.2).
pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
    let truncated = || ParseError::Truncated { len: bytes.len() };
    let mut r = Reader::new(bytes);
    let spi_i = r.u64().ok_or_else(truncated)?;
    let spi_r = r.u64().ok_or_else(truncated)?;
    let next_payload = r.u8().ok_or_else(truncated)?;
    let version = r.u8().ok_or_else(truncated)?;
    let exchange = Exchange::from_u8(r.u8().ok_or_else(truncated)?);
    let flags = r.u8().ok_or_else(truncated)?;
    let message_id = r.u32().ok_or_else(truncated)?;
    let length = r.u32().ok_or_else(truncated)?;
    // §2.5: a higher major version is answered with INVALID_MAJOR_VERSION
    // whatever else the message holds, so it is checked first.
    if version >> 4 != IKE_VERSION >> 4 {
        return Err(ParseError::UnsupportedVersion(version));
    }
    if usize::try_from(length).ok() != Some(bytes.len()) {
        return Err(ParseError::LengthMismatch {
            header: length,
            len: bytes.len(),
        });
    }
    let header = Header {
        spi_i,
        spi_r,
        next_payload,
        version,
        exchange,
        flags,
        message_id,
        length,
    };
    let (payloads, at) = walk(next_payload, r.rest(), true)?;
    Ok(Message {
        header,
        payloads,
        encrypted_at: at.map(|at| at + HEADER_LEN),
    })
}

/// Reads the payloads an SK payload decrypted to (RFC 7296 §3.14):
/// `first` is the SK payload's Next Payload field.
pub fn parse_payloads(first: u8, bytes: &[u8]) -> Result<Vec<Payload>, ParseError> {
    walk(first, bytes, false).map(|(payloads, _)| payloads)
}

/// Follows the Next Payload chain over `bytes`; returns the payloads and
/// the SK payload's offset in `bytes`, if one ends the chain.
fn walk(first: u8, bytes: &[u8], outer: bool) -> Result<(Vec<Payload>, Option<usize>), ParseError> {
    let mut payloads = Vec::new();
    let mut next = first;
    let mut offset = 0;
    let mut r = Reader::new(bytes);
    while next != payload_type::NONE {
        let kind = next;
        let remaining = r.bytes.len();
        let mut generic = Reader::new(
            r.take(GENERIC_HEADER_LEN)
                .ok_or(ParseError::PayloadTruncated { kind })?,
        );
        let (Some(following), Some(flags), Some(len)) = (generic.u8(), generic.u8(), generic.u16())
        else {
            return Err(ParseError::PayloadTruncated { kind });
        };
        let len = usize::from(len);
        let body_len = len
            .checked_sub(GENERIC_HEADER_LEN)
            .ok_or(ParseError::PayloadLength { kind, len })?;
        let body = r
            .take(body_len)
            .ok_or(ParseError::PayloadTruncated { kind })?;
        if kind == payload_type::SK {
            if !outer {
                return Err(ParseError::NestedEncrypted);
            }
            // §3.14: SK is the last payload; its Next Payload field names
            // the first inner payload, so the chain ends here.
            if !r.is_empty() {
                return Err(ParseError::EncryptedNotLast);
            }
            payloads.push(Payload::Encrypted {
                first_payload: following,
                body: body.to_vec(),
            });
            return Ok((payloads, Some(offset)));
        }
        payloads.push(parse_body(kind, flags & CRITICAL != 0, body)?);
        offset += remaining - r.bytes.len();
        next = following;
    }
    if !r.is_empty() {
        return Err(ParseError::TrailingBytes { len: r.bytes.len() });
    }
    Ok((payloads, None))
}

/// One payload's body, by its type.
fn parse_body(kind: u8, critical: bool, body: &[u8]) -> Result<Payload, ParseError> {
    use payload_type as t;
    let short = || ParseError::PayloadLength {
        kind,
        len: body.len() + GENERIC_HEADER_LEN,
    };
    let malformed = |what| ParseError::Malformed { kind, what };
    let mut r = Reader::new(body);
    let payload = match kind {
        t::SA => Payload::Sa(parse_proposals(body).map_err(malformed)?),
        t::KE => {
            let group = r.u16().ok_or_else(short)?;
            r.u16().ok_or_else(short)?;
            Payload::Ke {
                group,
                data: r.rest().to_vec(),
            }
        }
        t::IDI | t::IDR => {
            let id_kind = r.u8().ok_or_else(short)?;
            r.take(3).ok_or_else(short)?;
            let id = Identification {
                kind: id_kind,
                data: r.rest().to_vec(),
            };
            if kind == t::IDI {
                Payload::IdI(id)
            } else {
                Payload::IdR(id)
            }
        }
        t::AUTH => {
            let method = r.u8().ok_or_else(short)?;
            r.take(3).ok_or_else(short)?;
            Payload::Auth {
                method,
                data: r.rest().to_vec(),
            }
        }
        t::NONCE => {
            if !(NONCE_MIN..=NONCE_MAX).contains(&body.len()) {
                return Err(ParseError::BadNonceLength(body.len()));
            }
            Payload::Nonce(body.to_vec())
        }
        t::NOTIFY => {
            let protocol = r.u8().ok_or_else(short)?;
            let spi_size = r.u8().ok_or_else(short)?;
            let notify_kind = r.u16().ok_or_else(short)?;
            let spi = r
                .take(usize::from(spi_size))
                .ok_or_else(|| malformed("the SPI runs past the payload"))?;
            Payload::Notify(Notify {
                protocol,
                spi: spi.to_vec(),
                kind: notify_kind,
                data: r.rest().to_vec(),
            })
        }
        t::DELETE => {
            let protocol = r.u8().ok_or_else(short)?;
            let spi_size = r.u8().ok_or_else(short)?;
            let count = r.u16().ok_or_else(short)?;
            let rest = r.rest();
            // §3.11: exactly `count` SPIs of `spi_size` bytes. A zero size
            // with SPIs would let 8 bytes allocate 65,535 vectors.
            if spi_size == 0 && count != 0 {
                return Err(malformed("SPIs of size 0"));
            }
            if rest.len() != usize::from(spi_size) * usize::from(count) {
                return Err(malformed("the SPI count does not match the length"));
            }
            let spis = if spi_size == 0 {
                Vec::new()
            } else {
                rest.chunks_exact(usize::from(spi_size))
                    .map(<[u8]>::to_vec)
                    .collect()
            };
            Payload::Delete(Delete {
                protocol,
                spi_size,
                spis,
            })
        }
        t::VENDOR_ID => Payload::VendorId(body.to_vec()),
        t::TSI | t::TSR => {
            let selectors = parse_selectors(body).map_err(malformed)?;
            if kind == t::TSI {
                Payload::TsI(selectors)
            } else {
                Payload::TsR(selectors)
            }
        }
        _ => {
            // §2.5: only a type the receiver does not know can be
            // critical; the whole message is then refused.
            if critical && !t::is_recognized(kind) {
                return Err(ParseError::UnsupportedCritical(kind));
            }
            Payload::Unknown {
                kind,
                critical,
                body: body.to_vec(),
            }
        }
    };
    Ok(payload)
}

/// An SA payload's proposals (RFC 7296 §3.3.1).
fn parse_proposals(body: &[u8]) -> Result<Vec<Proposal>, &'static str> {
    let mut proposals = Vec::new();
    let mut r = Reader::new(body);
    while !r.is_empty() {
        let cut = "a proposal runs past the payload";
        let last = r.u8().ok_or(cut)?;
        r.u8().ok_or(cut)?;
        let len = usize::from(r.u16().ok_or(cut)?);
        let inner = len
            .checked_sub(4)
            .ok_or("a proposal's length is below its header")?;
        let mut p = Reader::new(r.take(inner).ok_or(cut)?);
        let short = "a proposal's length is shorter than its fields";
        let num = p.u8().ok_or(short)?;
        let protocol = p.u8().ok_or(short)?;
        let spi_size = p.u8().ok_or(short)?;
        let count = p.u8().ok_or(short)?;
        let spi = p.take(usize::from(spi_size)).ok_or(short)?.to_vec();
        let transforms = parse_transforms(p.rest())?;
        if transforms.len() != usize::from(count) {
            return Err("the transform count does not match the proposal");
        }
        match (last, r.is_empty()) {
            (LAST, true) | (MORE_PROPOSALS, false) => {}
            _ => return Err("a proposal's last-substructure mark is wrong"),
        }
        proposals.push(Proposal {
            num,
            protocol,
            spi,
            transforms,
        });
    }
    Ok(proposals)
}

/// A proposal's transforms (RFC 7296 §3.3.2) and their attributes
/// (§3.3.5).
fn parse_transforms(bytes: &[u8]) -> Result<Vec<TransformSpec>, &'static str> {
    let mut transforms = Vec::new();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let cut = "a transform runs past its proposal";
        let last = r.u8().ok_or(cut)?;
        r.u8().ok_or(cut)?;
        let len = usize::from(r.u16().ok_or(cut)?);
        let inner = len
            .checked_sub(4)
            .ok_or("a transform's length is below its header")?;
        let mut t = Reader::new(r.take(inner).ok_or(cut)?);
        let short = "a transform's length is below 8";
        let kind = t.u8().ok_or(short)?;
        t.u8().ok_or(short)?;
        let id = t.u16().ok_or(short)?;
        let mut key_len = None;
        while !t.is_empty() {
            let cut = "an attribute runs past its transform";
            let format_type = t.u16().ok_or(cut)?;
            let value = t.u16().ok_or(cut)?;
            if format_type & ATTR_TV != 0 {
                if format_type & !ATTR_TV == ATTR_KEY_LENGTH {
                    key_len = Some(value);
                }
            } else {
                // A TLV attribute: `value` is its length. None is defined
                // for IKEv2; skip it.
                t.take(usize::from(value)).ok_or(cut)?;
            }
        }
        match (last, r.is_empty()) {
            (LAST, true) | (MORE_TRANSFORMS, false) => {}
            _ => return Err("a transform's last-substructure mark is wrong"),
        }
        transforms.push(TransformSpec { kind, id, key_len });
    }
    Ok(transforms)
}

/// A TSi or TSr body (RFC 7296 §3.13).
fn parse_selectors(body: &[u8]) -> Result<Vec<TrafficSelector>, &'static str> {
    let mut r = Reader::new(body);
    let short = "shorter than its fixed fields";
    let count = r.u8().ok_or(short)?;
    r.take(3).ok_or(short)?;
    let mut selectors = Vec::new();
    for _ in 0..count {
        let cut = "a selector runs past the payload";
        let ts_type = r.u8().ok_or(cut)?;
        let ip_protocol = r.u8().ok_or(cut)?;
        let len = usize::from(r.u16().ok_or(cut)?);
        let want = match ts_type {
            TS_IPV4_ADDR_RANGE => TS_IPV4_LEN,
            TS_IPV6_ADDR_RANGE => TS_IPV6_LEN,
            _ => return Err("a selector type other than an IPv4 or IPv6 range"),
        };
        if len != want {
            return Err("a selector's length does not match its type");
        }
        let mut s = Reader::new(r.take(len - 4).ok_or(cut)?);
        let (Some(start_port), Some(end_port)) = (s.u16(), s.u16()) else {
            return Err(cut);
        };
        let (start, end) = if ts_type == TS_IPV4_ADDR_RANGE {
            let (Some(a), Some(b)) = (s.array::<4>(), s.array::<4>()) else {
                return Err(cut);
            };
            (
                IpAddr::from(Ipv4Addr::from(a)),
                IpAddr::from(Ipv4Addr::from(b)),
            )
        } else {
            let (Some(a), Some(b)) = (s.array::<16>(), s.array::<16>()) else {
                return Err(cut);
            };
            (
                IpAddr::from(Ipv6Addr::from(a)),
                IpAddr::from(Ipv6Addr::from(b)),
            )
        };
        selectors.push(TrafficSelector {
            ip_protocol,
            start_port,
            end_port,
            start,
            end,
        });
    }
    if !r.is_empty() {
        return Err("bytes follow the last selector");
    }
    Ok(selectors)
}

impl Message {
    /// The message's bytes, with the header's Next Payload and Length and
    /// every payload's chain field and length computed here.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_offset().0
    }

    /// [`Message::encode`], and where the SK payload's generic header
    /// starts: the crypto layer fills its body in place and MACs up to
    /// its end.
    pub fn encode_with_offset(&self) -> (Vec<u8>, Option<usize>) {
        let mut out = Vec::with_capacity(512);
        self.header.put(&mut out, 0, 0);
        let (first, at) = put_payloads(&mut out, &self.payloads);
        set_u8(&mut out, 16, first);
        let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
        set_bytes(&mut out, 24, &len.to_be_bytes());
        (out, at)
    }
}

/// The payloads to put in an SK payload, and the first one's type (0 if
/// none) for the SK header's Next Payload.
pub fn encode_payloads(payloads: &[Payload]) -> (u8, Vec<u8>) {
    let mut out = Vec::new();
    let (first, _) = put_payloads(&mut out, payloads);
    (first, out)
}

/// Appends the chain; returns the first type and the SK payload's offset
/// in `out`. An `Encrypted` payload must be the last: its Next Payload
/// field is its `first_payload`, which ends the outer chain.
fn put_payloads(out: &mut Vec<u8>, payloads: &[Payload]) -> (u8, Option<usize>) {
    let mut at = None;
    for (i, payload) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(payload_type::NONE, Payload::kind);
        let start = out.len();
        let (chain, critical) = match payload {
            Payload::Encrypted { first_payload, .. } => {
                debug_assert!(i + 1 == payloads.len(), "SK must be the last payload");
                at = Some(start);
                (*first_payload, false)
            }
            Payload::Unknown { critical, .. } => (next, *critical),
            _ => (next, false),
        };
        out.push(chain);
        out.push(if critical { CRITICAL } else { 0 });
        out.extend_from_slice(&[0, 0]);
        put_body(out, payload);
        set_len16(out, start);
    }
    (
        payloads.first().map_or(payload_type::NONE, Payload::kind),
        at,
    )
}

fn put_body(out: &mut Vec<u8>, payload: &Payload) {
    match payload {
        Payload::Sa(proposals) => {
            for (i, p) in proposals.iter().enumerate() {
                let start = out.len();
                out.push(if i + 1 == proposals.len() {
                    LAST
                } else {
                    MORE_PROPOSALS
                });
                out.extend_from_slice(&[0, 0, 0]);
                out.push(p.num);
                out.push(p.protocol);
                out.push(len_u8(p.spi.len()));
                out.push(len_u8(p.transforms.len()));
                out.extend_from_slice(&p.spi);
                for (j, t) in p.transforms.iter().enumerate() {
                    let t_start = out.len();
                    out.push(if j + 1 == p.transforms.len() {
                        LAST
                    } else {
                        MORE_TRANSFORMS
                    });
                    out.extend_from_slice(&[0, 0, 0]);
                    out.push(t.kind);
                    out.push(0);
                    out.extend_from_slice(&t.id.to_be_bytes());
                    if let Some(bits) = t.key_len {
                        out.extend_from_slice(&(ATTR_TV | ATTR_KEY_LENGTH).to_be_bytes());
                        out.extend_from_slice(&bits.to_be_bytes());
                    }
                    set_len16(out, t_start);
                }
                set_len16(out, start);
            }
        }
        Payload::Ke { group, data } => {
            out.extend_from_slice(&group.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(data);
        }
        Payload::IdI(id) | Payload::IdR(id) => {
            out.extend_from_slice(&[id.kind, 0, 0, 0]);
            out.extend_from_slice(&id.data);
        }
        Payload::Auth { method, data } => {
            out.extend_from_slice(&[*method, 0, 0, 0]);
            out.extend_from_slice(data);
        }
        Payload::Nonce(data) | Payload::VendorId(data) => out.extend_from_slice(data),
        Payload::Notify(n) => {
            out.push(n.protocol);
            out.push(len_u8(n.spi.len()));
            out.extend_from_slice(&n.kind.to_be_bytes());
            out.extend_from_slice(&n.spi);
            out.extend_from_slice(&n.data);
        }
        Payload::Delete(d) => {
            out.push(d.protocol);
            out.push(d.spi_size);
            let count = u16::try_from(d.spis.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for spi in &d.spis {
                debug_assert_eq!(spi.len(), usize::from(d.spi_size), "SPI size");
                out.extend_from_slice(spi);
            }
        }
        Payload::TsI(selectors) | Payload::TsR(selectors) => {
            out.extend_from_slice(&[len_u8(selectors.len()), 0, 0, 0]);
            for ts in selectors {
                let ts_type = match ts.start {
                    IpAddr::V4(_) => TS_IPV4_ADDR_RANGE,
                    IpAddr::V6(_) => TS_IPV6_ADDR_RANGE,
                };
                let start = out.len();
                out.extend_from_slice(&[ts_type, ts.ip_protocol, 0, 0]);
                out.extend_from_slice(&ts.start_port.to_be_bytes());
                out.extend_from_slice(&ts.end_port.to_be_bytes());
                debug_assert_eq!(ts.start.is_ipv4(), ts.end.is_ipv4(), "TS families");
                for addr in [ts.start, ts.end] {
                    match addr {
                        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                    }
                }
                set_len16(out, start);
            }
        }
        Payload::Encrypted { body, .. } | Payload::Unknown { body, .. } => {
            out.extend_from_slice(body)
        }
    }
}

/// A one-byte count or size. Larger values are the caller's bug (the
/// wire cannot say them); debug builds stop on it.
fn len_u8(len: usize) -> u8 {
    debug_assert!(len <= usize::from(u8::MAX), "{len} does not fit a byte");
    u8::try_from(len).unwrap_or(u8::MAX)
}

/// Writes the length of the structure that began at `start` (and runs to
/// the end of `out`) into its bytes 2..4, as every IKE structure has it.
fn set_len16(out: &mut [u8], start: usize) {
    let len = out.len() - start;
    debug_assert!(len <= usize::from(u16::MAX), "a payload of {len} bytes");
    let len = u16::try_from(len).unwrap_or(u16::MAX);
    set_bytes(out, start + 2, &len.to_be_bytes());
}

fn set_u8(out: &mut [u8], at: usize, value: u8) {
    set_bytes(out, at, &[value]);
}

/// Overwrites bytes the encoder itself reserved, so always in range.
fn set_bytes(out: &mut [u8], at: usize, value: &[u8]) {
    if let Some(slot) = out.get_mut(at..at + value.len()) {
        slot.copy_from_slice(value);
    }
}
