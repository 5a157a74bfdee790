//! One VPC's resolver: what it knows ([`VpcDns`]), how it answers a query
//! ([`VpcResolver::handle`]), and how an upstream reply goes back to the
//! client ([`VpcResolver::relay`]). The rules are spec 1.4's.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::cache::AnswerCache;
use crate::counters::{Counters, DropReason};
use crate::names::{
    amazon_domain, parse_host_label, parse_octet, private_label, public_name_suffix,
};
use crate::ratelimit::{RESOLVER_PPS_PER_ENI, TokenBucket};

/// The TTL of the resolver's own answers, in seconds (AWS gives its
/// instance names a 60 s TTL).
pub const LOCAL_TTL: u32 = 60;

/// The UDP payload the resolver advertises in its EDNS answers (the DNS
/// flag day 2020 value, which avoids IP fragmentation).
const EDNS_PAYLOAD: u16 = 1232;

/// The ENI a query came from, as the shell numbers them; the packet limit is
/// per ENI (spec 1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EniKey(pub u32);

/// A name or region the resolver cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("'{name}' is not a valid DNS name: {reason}")]
    InvalidName { name: String, reason: String },
}

fn fqdn(name: &str) -> Result<Name, ConfigError> {
    let mut n = Name::from_ascii(name).map_err(|e| ConfigError::InvalidName {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    n.set_fqdn(true);
    Ok(n)
}

/// What one VPC's resolver knows. The attribute defaults are a new
/// non-default VPC's (spec 1.4): DNS support on, DNS hostnames off.
#[derive(Debug, Clone)]
pub struct VpcDns {
    region: String,
    domain: Name,
    public_suffix: Name,
    /// `enableDnsSupport`: when false, no query is answered (spec 1.4).
    pub enable_dns_support: bool,
    /// `enableDnsHostnames`: with support, Amazon's private and public names
    /// resolve; without, neither does (spec 1.4).
    pub enable_dns_hostnames: bool,
    /// The VPC's private addresses, each with its public IPv4 if any.
    private: HashMap<Ipv4Addr, Option<Ipv4Addr>>,
    /// Public IPv4 -> the private address behind it.
    public_to_private: HashMap<Ipv4Addr, Ipv4Addr>,
    /// The VPC's IPv4 CIDR blocks as (network bits, mask bits): every
    /// address in them has its private name, whether an interface holds it
    /// or not, as Amazon's names are derived from the address.
    ranges: Vec<(u32, u32)>,
    /// Other names answered in the VPC (a load balancer's DNS name -> its
    /// front addresses).
    extra: HashMap<Name, Vec<Ipv4Addr>>,
    /// The Amazon domain's SOA, sent with its negative answers so that
    /// clients cache them for [`LOCAL_TTL`] (RFC 2308).
    soa: Record,
}

impl VpcDns {
    /// A VPC in `region`, with its Amazon domain and public name suffix
    /// derived from the region (spec 1.4), and no addresses yet.
    pub fn new(region: &str) -> Result<Self, ConfigError> {
        let domain = fqdn(&amazon_domain(region))?;
        let hostmaster = fqdn(&format!("hostmaster.{}", amazon_domain(region)))?;
        let soa = Record::from_rdata(
            domain.clone(),
            LOCAL_TTL,
            RData::SOA(SOA::new(
                domain.clone(),
                hostmaster,
                1,
                7200,
                900,
                1_209_600,
                LOCAL_TTL,
            )),
        );
        Ok(VpcDns {
            region: region.to_owned(),
            soa,
            domain,
            public_suffix: fqdn(&public_name_suffix(region))?,
            enable_dns_support: true,
            enable_dns_hostnames: false,
            private: HashMap::new(),
            public_to_private: HashMap::new(),
            ranges: Vec::new(),
            extra: HashMap::new(),
        })
    }

    /// The region the VPC is in.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The Amazon private domain (`ec2.internal` or `<region>.compute.internal`).
    pub fn domain(&self) -> &Name {
        &self.domain
    }

    /// Adds (or replaces) a private address and the public IPv4 mapped to it.
    pub fn set_address(&mut self, private: Ipv4Addr, public: Option<Ipv4Addr>) {
        self.remove_address(private);
        self.private.insert(private, public);
        if let Some(public) = public {
            self.public_to_private.insert(public, private);
        }
    }

    /// Gives every address of `network/prefix_len` (a CIDR block of the
    /// VPC) its private name; a prefix over 32 counts as 32.
    pub fn add_range(&mut self, network: Ipv4Addr, prefix_len: u8) {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len.min(32)))
            .unwrap_or(0);
        self.ranges.push((network.to_bits() & mask, mask));
    }

    /// Whether `ip` is one of the VPC's: an address set with
    /// [`Self::set_address`] or inside a range of [`Self::add_range`].
    pub fn is_private(&self, ip: Ipv4Addr) -> bool {
        self.private.contains_key(&ip)
            || self
                .ranges
                .iter()
                .any(|(net, mask)| ip.to_bits() & mask == *net)
    }

    /// Forgets a private address and its public one.
    pub fn remove_address(&mut self, private: Ipv4Addr) {
        if let Some(Some(public)) = self.private.remove(&private)
            && self.public_to_private.get(&public) == Some(&private)
        {
            self.public_to_private.remove(&public);
        }
    }

    /// Answers `name` with `addrs` (a load balancer's DNS name and its front
    /// addresses). The name matches without regard to case.
    pub fn set_name(&mut self, name: &str, addrs: Vec<Ipv4Addr>) -> Result<(), ConfigError> {
        self.extra.insert(fqdn(name)?, addrs);
        Ok(())
    }

    /// Stops answering `name`.
    pub fn remove_name(&mut self, name: &str) -> Result<(), ConfigError> {
        self.extra.remove(&fqdn(name)?);
        Ok(())
    }

    /// Whether Amazon's names resolve: both attributes on (spec 1.4).
    fn amazon_names(&self) -> bool {
        self.enable_dns_support && self.enable_dns_hostnames
    }
}

/// What to do with a packet sent to the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Send these bytes back to the client.
    Answer(Vec<u8>),
    /// Send the client's query, unchanged, to the region's upstream resolver
    /// and pass its reply to [`VpcResolver::relay`] with this.
    Forward(Forward),
    /// Send nothing; the reason has been counted.
    Drop(DropReason),
}

/// A query on its way upstream: what [`VpcResolver::relay`] needs to give
/// the reply back to the client and to cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    client_id: u16,
    question: (Name, RecordType, DNSClass),
}

impl Forward {
    /// The id of the client's query, which its reply must carry.
    pub fn client_id(&self) -> u16 {
        self.client_id
    }
}

/// Writes `id` into a DNS message's header; false if `msg` is too short to
/// have one. The shell may give upstream queries ids of its own; this puts
/// the client's back.
pub fn set_message_id(msg: &mut [u8], id: u16) -> bool {
    match msg.get_mut(..2) {
        Some(head) => {
            head.copy_from_slice(&id.to_be_bytes());
            true
        }
        None => false,
    }
}

/// What the VPC's own data says about a question.
enum Local {
    /// The name exists; these are its records of the asked type.
    Records(Vec<Record>),
    /// The name exists but has no record of the asked type.
    NoData,
    /// The name is under the Amazon domain and does not exist.
    NxDomain,
    /// The VPC's data does not cover the name.
    Elsewhere,
}

/// One VPC's resolver: its data, a packet limit per ENI, a cache of
/// upstream answers, and counters.
#[derive(Debug, Clone)]
pub struct VpcResolver {
    config: VpcDns,
    buckets: HashMap<EniKey, TokenBucket>,
    cache: AnswerCache,
    counters: Counters,
}

impl VpcResolver {
    /// A resolver for `config` caching at most `cache_capacity` upstream
    /// answers.
    pub fn new(config: VpcDns, cache_capacity: usize) -> Self {
        VpcResolver {
            config,
            buckets: HashMap::new(),
            cache: AnswerCache::new(cache_capacity),
            counters: Counters::default(),
        }
    }

    /// What the resolver knows.
    pub fn config(&self) -> &VpcDns {
        &self.config
    }

    /// Changes what the resolver knows (attributes, addresses, names).
    pub fn config_mut(&mut self) -> &mut VpcDns {
        &mut self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The cache of upstream answers.
    pub fn cache(&self) -> &AnswerCache {
        &self.cache
    }

    /// Forgets an ENI's packet limit state (when the ENI goes away).
    pub fn forget_eni(&mut self, eni: EniKey) {
        self.buckets.remove(&eni);
    }

    /// Handles one packet's payload sent by `eni` to the resolver at
    /// `now_ms`. Never panics, whatever the bytes.
    pub fn handle(&mut self, eni: EniKey, packet: &[u8], now_ms: u64) -> Outcome {
        match self.handle_inner(eni, packet, now_ms) {
            Ok(outcome) => outcome,
            Err(reason) => {
                self.counters.drop(reason);
                Outcome::Drop(reason)
            }
        }
    }

    fn handle_inner(
        &mut self,
        eni: EniKey,
        packet: &[u8],
        now_ms: u64,
    ) -> Result<Outcome, DropReason> {
        // Spec 1.4: with enableDnsSupport false, queries are not answered.
        if !self.config.enable_dns_support {
            return Err(DropReason::SupportDisabled);
        }
        // Spec 1.4: 1024 packets/s per ENI, whatever the packets hold.
        let bucket = self
            .buckets
            .entry(eni)
            .or_insert_with(|| TokenBucket::new(RESOLVER_PPS_PER_ENI, now_ms));
        if !bucket.take(now_ms) {
            return Err(DropReason::RateLimited);
        }
        if packet.len() < 12 {
            return Err(DropReason::TooShort);
        }
        // The QR bit: never answer a response, which could loop.
        if packet[2] & 0x80 != 0 {
            return Err(DropReason::NotAQuery);
        }
        let query = Message::from_vec(packet).map_err(|_| DropReason::Malformed)?;
        if query.metadata.op_code != OpCode::Query {
            return self.error(query, ResponseCode::NotImp);
        }
        let [q] = query.queries.as_slice() else {
            return self.error(query, ResponseCode::FormErr);
        };
        let (name, rtype, class) = (q.name().clone(), q.query_type(), q.query_class());

        let local = if class == DNSClass::IN {
            self.lookup(&name, rtype)
        } else {
            Local::Elsewhere
        };
        match local {
            Local::Records(answers) => {
                self.counters.local_answers += 1;
                respond(query, ResponseCode::NoError, true, answers, Vec::new())
                    .map(Outcome::Answer)
            }
            Local::NoData => {
                self.counters.local_answers += 1;
                let soa = self.negative_authority(&name);
                respond(query, ResponseCode::NoError, true, Vec::new(), soa).map(Outcome::Answer)
            }
            Local::NxDomain => {
                self.counters.nxdomain += 1;
                let soa = self.negative_authority(&name);
                respond(query, ResponseCode::NXDomain, true, Vec::new(), soa).map(Outcome::Answer)
            }
            Local::Elsewhere => {
                if let Some(answers) = self.cache.get(&name, rtype, class, now_ms) {
                    self.counters.cache_hits += 1;
                    return respond(query, ResponseCode::NoError, false, answers, Vec::new())
                        .map(Outcome::Answer);
                }
                // Spec 1.4: the resolver answers recursive queries only.
                if !query.metadata.recursion_desired {
                    return self.error(query, ResponseCode::Refused);
                }
                self.counters.forwarded += 1;
                Ok(Outcome::Forward(Forward {
                    client_id: query.metadata.id,
                    question: (name, rtype, class),
                }))
            }
        }
    }

    /// The client's answer when the upstream resolver cannot be asked (none
    /// is configured) or did not answer in time: SERVFAIL, as a recursive
    /// resolver answers when it cannot resolve a name (RFC 2308 7.1).
    /// `query` is the client's query as [`Self::handle`] took it; `None`
    /// if it does not decode (it did when it was forwarded).
    pub fn fail(&mut self, query: &[u8]) -> Option<Vec<u8>> {
        let query = Message::from_vec(query).ok()?;
        self.error(query, ResponseCode::ServFail)
            .ok()
            .and_then(|o| match o {
                Outcome::Answer(bytes) => Some(bytes),
                _ => None,
            })
    }

    /// Turns the upstream resolver's `reply` to a forwarded query into the
    /// client's answer: the same bytes with the client's id. A positive
    /// answer to the same question is cached. A reply that is not a DNS
    /// response is counted and dropped.
    pub fn relay(
        &mut self,
        reply: &[u8],
        forward: &Forward,
        now_ms: u64,
    ) -> Result<Vec<u8>, DropReason> {
        let parsed = match Message::from_vec(reply) {
            Ok(m) if m.metadata.message_type == MessageType::Response => m,
            _ => {
                self.counters.drop(DropReason::UpstreamMalformed);
                return Err(DropReason::UpstreamMalformed);
            }
        };
        let (name, rtype, class) = &forward.question;
        let same_question = matches!(parsed.queries.as_slice(),
            [q] if q.name() == name && q.query_type() == *rtype && q.query_class() == *class);
        if same_question
            && parsed.metadata.response_code == ResponseCode::NoError
            && !parsed.metadata.truncation
            && !parsed.answers.is_empty()
        {
            self.cache
                .insert(forward.question.clone(), parsed.answers, now_ms);
        }
        let mut out = reply.to_vec();
        set_message_id(&mut out, forward.client_id);
        self.counters.relayed += 1;
        Ok(out)
    }

    /// What the VPC's own data says about `name`/`rtype` (class IN).
    fn lookup(&self, name: &Name, rtype: RecordType) -> Local {
        let cfg = &self.config;
        let wants_a = matches!(rtype, RecordType::A | RecordType::ANY);

        // Extra names (a load balancer's) resolve with DNS support alone.
        if let Some(addrs) = cfg.extra.get(name) {
            if !wants_a || addrs.is_empty() {
                return Local::NoData;
            }
            return Local::Records(
                addrs
                    .iter()
                    .map(|ip| Record::from_rdata(name.clone(), LOCAL_TTL, RData::A(A(*ip))))
                    .collect(),
            );
        }

        // The Amazon private domain: `ip-a-b-c-d.<domain>` for the VPC's
        // addresses when both attributes are on (spec 1.4); any other name
        // there does not exist.
        if cfg.domain.zone_of(name) {
            if name.num_labels() == cfg.domain.num_labels() {
                return Local::NoData;
            }
            if cfg.amazon_names()
                && name.num_labels() == cfg.domain.num_labels() + 1
                && let Some(ip) = name
                    .iter()
                    .next()
                    .and_then(|label| parse_host_label(label, b"ip-"))
                && cfg.is_private(ip)
            {
                return if wants_a {
                    Local::Records(vec![Record::from_rdata(
                        name.clone(),
                        LOCAL_TTL,
                        RData::A(A(ip)),
                    )])
                } else {
                    Local::NoData
                };
            }
            return Local::NxDomain;
        }

        // Public names resolve to the private address inside the VPC when
        // both attributes are on (spec 1.4). Other public names (another
        // VPC's, or with the attributes off) are public DNS's to answer.
        if cfg.amazon_names()
            && name.num_labels() == cfg.public_suffix.num_labels() + 1
            && cfg.public_suffix.zone_of(name)
            && let Some(public) = name
                .iter()
                .next()
                .and_then(|label| parse_host_label(label, b"ec2-"))
            && let Some(private) = cfg.public_to_private.get(&public)
        {
            return if wants_a {
                Local::Records(vec![Record::from_rdata(
                    name.clone(),
                    LOCAL_TTL,
                    RData::A(A(*private)),
                )])
            } else {
                Local::NoData
            };
        }

        // Reverse names of the VPC's addresses give their private names
        // (AWS behaviour; spec 1.4 does not list it).
        if cfg.amazon_names()
            && matches!(rtype, RecordType::PTR | RecordType::ANY)
            && let Some(ip) = reverse_v4(name)
            && cfg.is_private(ip)
            && let Ok(target) = Name::from_ascii(private_label(ip))
                .and_then(|label| label.append_domain(&cfg.domain))
        {
            return Local::Records(vec![Record::from_rdata(
                name.clone(),
                LOCAL_TTL,
                RData::PTR(PTR(target)),
            )]);
        }
        Local::Elsewhere
    }

    /// Answers with an error code and no records.
    fn error(&mut self, query: Message, code: ResponseCode) -> Result<Outcome, DropReason> {
        self.counters.errors += 1;
        respond(query, code, false, Vec::new(), Vec::new()).map(Outcome::Answer)
    }

    /// The authority section of a negative answer: the Amazon domain's SOA
    /// for names under it, nothing for others (an extra name's zone is not
    /// the resolver's).
    fn negative_authority(&self, name: &Name) -> Vec<Record> {
        if self.config.domain.zone_of(name) {
            vec![self.config.soa.clone()]
        } else {
            Vec::new()
        }
    }
}

/// The address of `d.c.b.a.in-addr.arpa.`, if that is what `name` is.
fn reverse_v4(name: &Name) -> Option<Ipv4Addr> {
    if name.num_labels() != 6 {
        return None;
    }
    let mut labels = name.iter();
    let mut octets = [0u8; 4];
    for i in (0..4).rev() {
        octets[i] = parse_octet(labels.next()?)?;
    }
    let in_addr = labels.next()?;
    let arpa = labels.next()?;
    (in_addr.eq_ignore_ascii_case(b"in-addr") && arpa.eq_ignore_ascii_case(b"arpa"))
        .then(|| Ipv4Addr::from(octets))
}

/// Encodes the answer to `query`, truncating (TC) to what the client can
/// take over UDP.
fn respond(
    query: Message,
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
) -> Result<Vec<u8>, DropReason> {
    let max_payload = query.max_payload();
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.metadata.authoritative = authoritative;
    m.metadata.response_code = code;
    // An unparsed question (FORMERR for several) is echoed as it came.
    m.queries = query.queries;
    m.answers = answers;
    m.authorities = authorities;
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        m.edns = Some(edns);
    }
    let bytes = m.to_vec().map_err(|_| DropReason::AnswerUnencodable)?;
    if bytes.len() <= usize::from(max_payload) {
        return Ok(bytes);
    }
    m.truncate()
        .to_vec()
        .map_err(|_| DropReason::AnswerUnencodable)
}
