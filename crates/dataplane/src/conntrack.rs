//! Connection tracking for the stateful security groups of an ENI (spec 3.2):
//! the state of one connection — TCP handshake and close, UDP and ICMP
//! request and reply — advanced one packet at a time, and the idle timeouts
//! that end it.
//!
//! It owns the per-connection state machine and the timeout table, nothing
//! else. It must not look up flows, evaluate rules, read a clock, allocate or
//! panic: the dataplane keeps one [`Conn`] per flow-table entry (both
//! directions share it), decides which flows are tracked at all (spec 3.2,
//! untracked flows), passes the time in as milliseconds, and drops and counts
//! whatever gets [`Verdict::Invalid`].
//!
//! No sequence numbers are kept, to stay within 16 bytes per connection: a
//! FIN counts as acknowledged by the next ACK from the other side, and a RST is
//! believed whatever its sequence number (like Linux with window checks off).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use core::fmt;
use core::ops::RangeInclusive;

use openvpc_packet::ip::protocol;
use openvpc_packet::tcp::flags;

/// AWS range of `TcpEstablishedTimeout`, in seconds.
pub const TCP_ESTABLISHED_SECS: RangeInclusive<u32> = 60..=432_000;
/// AWS range of `UdpStreamTimeout`, in seconds.
pub const UDP_STREAM_SECS: RangeInclusive<u32> = 60..=180;
/// AWS range of `UdpTimeout`, in seconds.
pub const UDP_SECS: RangeInclusive<u32> = 30..=60;

/// Idle timeouts, configurable per ENI (AWS ConnectionTrackingSpecification).
///
/// The first four are AWS's (spec 3.2). The `tcp_*` rest cannot be set
/// through the API and AWS does not document them, so they take Linux
/// nf_conntrack's values; they are public so the dataplane can tune them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// `TcpEstablishedTimeout`: an established TCP connection.
    pub tcp_established_secs: u32,
    /// `UdpStreamTimeout`: UDP once more than one request/response was seen.
    pub udp_stream_secs: u32,
    /// `UdpTimeout`: UDP in one direction or a single exchange.
    pub udp_secs: u32,
    /// ICMP and every other protocol; not configurable in AWS.
    pub other_secs: u32,
    /// A SYN not answered yet (Linux SYN_SENT: 120 s).
    pub tcp_syn_sent_secs: u32,
    /// SYN-ACK seen, the handshake's last ACK not yet (Linux SYN_RECV: 60 s).
    pub tcp_syn_received_secs: u32,
    /// Upper bound for any TCP state while the peer has sent nothing, so a
    /// stray ACK picked up mid-stream (or an ACK scan) cannot hold an entry
    /// for the 5-day established timeout (Linux UNACK: 300 s).
    pub tcp_unreplied_secs: u32,
    /// One side has sent FIN while the other may still send data
    /// (Linux FIN_WAIT: 120 s).
    pub tcp_half_closed_secs: u32,
    /// Both sides have sent FIN and the last ACK is pending (Linux LAST_ACK: 30 s).
    pub tcp_closing_secs: u32,
    /// Both FINs acknowledged: lets retransmitted FINs and ACKs through for
    /// 2 MSL (Linux TIME_WAIT: 120 s).
    pub tcp_time_wait_secs: u32,
    /// After a RST: long enough for retransmitted RSTs to still match
    /// (Linux CLOSE: 10 s).
    pub tcp_closed_secs: u32,
}

impl Default for Timeouts {
    /// spec 3.2: TCP established 432000 s, UDP stream 180 s, UDP 30 s, others 600 s.
    fn default() -> Self {
        Timeouts {
            tcp_established_secs: 432_000,
            udp_stream_secs: 180,
            udp_secs: 30,
            other_secs: 600,
            tcp_syn_sent_secs: 120,
            tcp_syn_received_secs: 60,
            tcp_unreplied_secs: 300,
            tcp_half_closed_secs: 120,
            tcp_closing_secs: 30,
            tcp_time_wait_secs: 120,
            tcp_closed_secs: 10,
        }
    }
}

/// A `ConnectionTrackingSpecification` value outside the AWS range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeoutError {
    #[error(
        "TcpEstablishedTimeout must be from {min} to {max} seconds, got {0}",
        min = TCP_ESTABLISHED_SECS.start(),
        max = TCP_ESTABLISHED_SECS.end()
    )]
    TcpEstablished(u32),
    #[error(
        "UdpStreamTimeout must be from {min} to {max} seconds, got {0}",
        min = UDP_STREAM_SECS.start(),
        max = UDP_STREAM_SECS.end()
    )]
    UdpStream(u32),
    #[error(
        "UdpTimeout must be from {min} to {max} seconds, got {0}",
        min = UDP_SECS.start(),
        max = UDP_SECS.end()
    )]
    Udp(u32),
}

impl Timeouts {
    /// Checks the three API-settable timeouts against the AWS ranges (spec 3.2).
    ///
    /// The others are not user input, so they are not checked.
    pub fn validate(self) -> Result<Self, TimeoutError> {
        if !TCP_ESTABLISHED_SECS.contains(&self.tcp_established_secs) {
            return Err(TimeoutError::TcpEstablished(self.tcp_established_secs));
        }
        if !UDP_STREAM_SECS.contains(&self.udp_stream_secs) {
            return Err(TimeoutError::UdpStream(self.udp_stream_secs));
        }
        if !UDP_SECS.contains(&self.udp_secs) {
            return Err(TimeoutError::Udp(self.udp_secs));
        }
        Ok(self)
    }
}

/// Which way a packet goes relative to the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The direction of the packet that created the entry.
    Original,
    Reply,
}

/// The protocol families tracked differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMPv4 and ICMPv6 (echo flows, keyed by identifier).
    Icmp,
    /// Everything else, keyed by (IP pair, protocol) only (spec 3.2).
    Other,
}

impl Protocol {
    /// The tracking family of an IP protocol number.
    pub fn from_ip(proto: u8) -> Self {
        match proto {
            protocol::TCP => Protocol::Tcp,
            protocol::UDP => Protocol::Udp,
            protocol::ICMP | protocol::ICMPV6 => Protocol::Icmp,
            _ => Protocol::Other,
        }
    }
}

/// Whether a packet fits its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    Accept,
    /// The packet does not fit the connection (e.g. a SYN-ACK in the original
    /// direction): the router drops and counts it. The entry is left as it
    /// was. A SYN in the reply direction on a closed entry is also Invalid:
    /// it opens a connection the other way, which must pass the rules as a
    /// new flow, so the caller may evict the closed entry and retry.
    Invalid,
}

/// Where a connection is; each state belongs to one [`Protocol`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    /// The original side has sent FIN, the reply side has not.
    FinWait,
    /// The reply side has sent FIN, the original side has not.
    CloseWait,
    /// Both sides have sent FIN; at least one is not acknowledged yet.
    Closing,
    /// Both FINs acknowledged.
    TimeWait,
    /// A RST was seen.
    Closed,
    UdpUnreplied,
    UdpReplied,
    UdpStream,
    IcmpUnreplied,
    IcmpReplied,
    OtherUnreplied,
    OtherReplied,
}

impl State {
    /// The name used in trace output and flow logs.
    pub fn as_str(self) -> &'static str {
        match self {
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait => "FIN_WAIT",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::TimeWait => "TIME_WAIT",
            State::Closed => "CLOSED",
            State::UdpUnreplied => "UDP_UNREPLIED",
            State::UdpReplied => "UDP_REPLIED",
            State::UdpStream => "UDP_STREAM",
            State::IcmpUnreplied => "ICMP_UNREPLIED",
            State::IcmpReplied => "ICMP_REPLIED",
            State::OtherUnreplied => "OTHER_UNREPLIED",
            State::OtherReplied => "OTHER_REPLIED",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            State::SynSent
            | State::SynReceived
            | State::Established
            | State::FinWait
            | State::CloseWait
            | State::Closing
            | State::TimeWait
            | State::Closed => Protocol::Tcp,
            State::UdpUnreplied | State::UdpReplied | State::UdpStream => Protocol::Udp,
            State::IcmpUnreplied | State::IcmpReplied => Protocol::Icmp,
            State::OtherUnreplied | State::OtherReplied => Protocol::Other,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Bits of `Conn::flags`. The FIN bits are what the TCP close states are
// computed from, so the two sides' closes cannot get out of step.
const FIN_ORIGINAL: u8 = 1 << 0;
const FIN_REPLY: u8 = 1 << 1;
const FIN_ORIGINAL_ACKED: u8 = 1 << 2;
const FIN_REPLY_ACKED: u8 = 1 << 3;
const REPLY_SEEN: u8 = 1 << 4;
const PICKED_UP: u8 = 1 << 5;
/// Both sides sent a bare SYN, so a SYN-ACK may come from either side.
const SIMULTANEOUS_OPEN: u8 = 1 << 6;

/// The tracked state of one connection, stored once per flow-table entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn {
    /// Milliseconds on the caller's monotonic clock.
    last_seen: u64,
    state: State,
    flags: u8,
}

impl Default for Conn {
    /// A placeholder (an unreplied non-TCP flow seen at time 0), for
    /// preallocated tables whose empty slots need some value.
    fn default() -> Self {
        Conn {
            last_seen: 0,
            state: State::OtherUnreplied,
            flags: 0,
        }
    }
}

impl Conn {
    /// A new connection from its first packet (`tcp_flags` is the TCP flag
    /// byte, 0 for other protocols), or `None` if that packet cannot start one.
    ///
    /// A TCP packet other than a SYN is picked up as an open connection (like
    /// Linux `nf_conntrack_tcp_loose=1`), so flows survive an agent restart.
    /// It must carry ACK (RFC 9293 3.4: every segment after the SYN does), so
    /// RSTs, SYN-ACKs and flag-less scans never create an entry.
    pub fn new(protocol: Protocol, tcp_flags: u8, now: u64) -> Option<Conn> {
        let (state, flags) = match protocol {
            Protocol::Tcp => match Segment::classify(tcp_flags) {
                Segment::Syn => (State::SynSent, 0),
                Segment::Ack => (State::Established, PICKED_UP),
                Segment::Fin { ack: true } => (State::FinWait, PICKED_UP | FIN_ORIGINAL),
                _ => return None,
            },
            Protocol::Udp => (State::UdpUnreplied, 0),
            // spec 3.2: ICMP is always tracked.
            Protocol::Icmp => (State::IcmpUnreplied, 0),
            // spec 3.2: other protocols are tracked by (IP pair, protocol).
            Protocol::Other => (State::OtherUnreplied, 0),
        };
        Some(Conn {
            last_seen: now,
            state,
            flags,
        })
    }

    /// Advances the state with one packet going `dir`.
    ///
    /// An accepted packet refreshes `last_seen` (never moving it backwards);
    /// an invalid one changes nothing, so junk cannot keep an entry alive.
    pub fn update(&mut self, dir: Direction, tcp_flags: u8, now: u64) -> Verdict {
        let next = match self.state.protocol() {
            Protocol::Tcp => tcp_next(self.state, self.flags, dir, Segment::classify(tcp_flags)),
            _ => Some((datagram_next(self.state, dir), self.flags)),
        };
        let Some((state, mut flags)) = next else {
            return Verdict::Invalid;
        };
        if dir == Direction::Reply {
            flags |= REPLY_SEEN;
        }
        self.state = state;
        self.flags = flags;
        self.last_seen = self.last_seen.max(now);
        Verdict::Accept
    }

    /// True once idle longer than the timeout of its current state.
    pub fn expired(&self, now: u64, t: &Timeouts) -> bool {
        now > self.deadline(t)
    }

    /// The last millisecond at which the connection is still alive if no
    /// packet comes: for timer wheels and sweeps.
    pub fn deadline(&self, t: &Timeouts) -> u64 {
        let ms = u64::from(self.timeout_secs(t)).saturating_mul(1000);
        self.last_seen.saturating_add(ms)
    }

    /// The idle timeout of the current state, in seconds.
    pub fn timeout_secs(&self, t: &Timeouts) -> u32 {
        let secs = match self.state {
            State::SynSent => t.tcp_syn_sent_secs,
            State::SynReceived => t.tcp_syn_received_secs,
            // spec 3.2: TcpEstablishedTimeout.
            State::Established => t.tcp_established_secs,
            State::FinWait | State::CloseWait => t.tcp_half_closed_secs,
            State::Closing => t.tcp_closing_secs,
            State::TimeWait => t.tcp_time_wait_secs,
            State::Closed => t.tcp_closed_secs,
            // spec 3.2: UdpTimeout covers one direction and a single exchange.
            State::UdpUnreplied | State::UdpReplied => t.udp_secs,
            State::UdpStream => t.udp_stream_secs,
            // spec 3.2: traffic coming back within 600 s is a reply.
            State::IcmpUnreplied
            | State::IcmpReplied
            | State::OtherUnreplied
            | State::OtherReplied => t.other_secs,
        };
        if self.state.protocol() == Protocol::Tcp && self.flags & REPLY_SEEN == 0 {
            secs.min(t.tcp_unreplied_secs)
        } else {
            secs
        }
    }

    /// True for TCP connections fully closed (both FINs acked, or RST seen):
    /// the first to evict when the table is full (spec 3.2, conntrack allowance).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::TimeWait | State::Closed)
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Milliseconds on the caller's clock of the last accepted packet.
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// True once a packet has gone in the reply direction.
    pub fn reply_seen(&self) -> bool {
        self.flags & REPLY_SEEN != 0
    }

    /// True for a TCP connection whose first packet was not a SYN.
    pub fn picked_up(&self) -> bool {
        self.flags & PICKED_UP != 0
    }
}

/// What a TCP packet means to the state machine, from its flags alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Syn,
    SynAck,
    Fin {
        ack: bool,
    },
    /// ACK with or without data, PSH, URG, ECN bits.
    Ack,
    Rst,
    /// A combination no TCP sends (SYN with FIN or RST, or no control bit):
    /// scans and crafted packets.
    Bogus,
}

impl Segment {
    fn classify(f: u8) -> Segment {
        let has = |bit: u8| f & bit != 0;
        if has(flags::SYN) && (has(flags::RST) || has(flags::FIN)) {
            Segment::Bogus
        } else if has(flags::RST) {
            Segment::Rst
        } else if has(flags::SYN) {
            if has(flags::ACK) {
                Segment::SynAck
            } else {
                Segment::Syn
            }
        } else if has(flags::FIN) {
            Segment::Fin {
                ack: has(flags::ACK),
            }
        } else if has(flags::ACK) {
            Segment::Ack
        } else {
            Segment::Bogus
        }
    }
}

/// The TCP state and flags after `seg`, or `None` if it does not fit.
fn tcp_next(state: State, f: u8, dir: Direction, seg: Segment) -> Option<(State, u8)> {
    use Direction::{Original, Reply};
    use State::*;
    let keep = Some((state, f));
    match seg {
        Segment::Bogus => None,
        // RFC 9293 3.10.7: a RST ends the connection from any state.
        Segment::Rst => Some((Closed, f)),
        Segment::Syn => match (dir, state) {
            // Retransmitted SYNs; on a live connection a stray SYN must not
            // tear it down, and without sequence numbers we cannot tell a
            // client reboot from a retransmission (Linux ignores them too).
            (Original, SynSent | SynReceived | Established | FinWait | CloseWait) => keep,
            // Port reuse: the old connection is over on both sides.
            (Original, Closing | TimeWait | Closed) => Some((SynSent, 0)),
            // RFC 9293 3.5, figure 8: simultaneous open.
            (Reply, SynSent) => Some((SynReceived, f | SIMULTANEOUS_OPEN)),
            (Reply, SynReceived) if f & SIMULTANEOUS_OPEN != 0 => keep,
            _ => None,
        },
        Segment::SynAck => match (dir, state) {
            // RFC 9293 3.5: the second packet of the handshake.
            (Reply, SynSent) => Some((SynReceived, f)),
            // Retransmitted when the handshake's ACK was lost past us.
            (Reply, _) => keep,
            (Original, SynReceived) if f & SIMULTANEOUS_OPEN != 0 => keep,
            (Original, _) => None,
        },
        Segment::Ack => match (dir, state) {
            // A peer that still holds an old connection on the tuple (in
            // TIME-WAIT: a client that reused its port) answers the new SYN
            // with a bare ACK, a challenge (RFC 9293 3.10.7.4, RFC 5961
            // 4): it must reach the client, whose RST clears the old
            // connection so that its next SYN opens. It opens nothing.
            (Reply, SynSent) => keep,
            (Original, SynSent) => None,
            // RFC 9293 3.5: the third packet of the handshake.
            (Original, SynReceived) => Some((Established, f)),
            (Reply, SynReceived) | (_, Established | TimeWait | Closed) => keep,
            (_, FinWait | CloseWait | Closing) => Some(closing(ack_fin(f, dir))),
            _ => None,
        },
        Segment::Fin { ack } => match state {
            SynSent => None,
            // RFC 9293 3.6: each side closes its half; the ACK part of a
            // FIN-ACK is applied first, as it acknowledges the peer's FIN.
            SynReceived | Established | FinWait | CloseWait | Closing => {
                let f = if ack { ack_fin(f, dir) } else { f };
                let own = match dir {
                    Original => FIN_ORIGINAL,
                    Reply => FIN_REPLY,
                };
                Some(closing(f | own))
            }
            // Retransmitted FINs.
            TimeWait | Closed => keep,
            _ => None,
        },
    }
}

/// Marks the peer's FIN, if any, as acknowledged by an ACK going `dir`.
fn ack_fin(f: u8, dir: Direction) -> u8 {
    match dir {
        Direction::Original if f & FIN_REPLY != 0 => f | FIN_REPLY_ACKED,
        Direction::Reply if f & FIN_ORIGINAL != 0 => f | FIN_ORIGINAL_ACKED,
        _ => f,
    }
}

/// The state of an open or closing TCP connection, from its FIN bits.
fn closing(f: u8) -> (State, u8) {
    let all = FIN_ORIGINAL | FIN_REPLY | FIN_ORIGINAL_ACKED | FIN_REPLY_ACKED;
    let state = match (f & FIN_ORIGINAL != 0, f & FIN_REPLY != 0) {
        (false, false) => State::Established,
        (true, false) => State::FinWait,
        (false, true) => State::CloseWait,
        (true, true) if f & all == all => State::TimeWait,
        (true, true) => State::Closing,
    };
    (state, f)
}

/// The next state of a UDP, ICMP or other connection.
fn datagram_next(state: State, dir: Direction) -> State {
    match (state, dir) {
        (State::UdpUnreplied, Direction::Reply) => State::UdpReplied,
        // spec 3.2: "more than one request/response" read as any packet after
        // the first reply (Linux's rule): retransmitted requests before a
        // reply do not count, a second request or reply datagram does.
        (State::UdpReplied, _) => State::UdpStream,
        (State::IcmpUnreplied, Direction::Reply) => State::IcmpReplied,
        (State::OtherUnreplied, Direction::Reply) => State::OtherReplied,
        _ => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Original as O, Reply as R};
    use flags::{ACK, FIN, PSH, RST, SYN};
    use proptest::prelude::*;

    const SA: u8 = SYN | ACK;
    const FA: u8 = FIN | ACK;
    const PA: u8 = PSH | ACK;
    const RA: u8 = RST | ACK;
    const SEC: u64 = 1000;

    /// Feeds packets one second apart, checking each is accepted and the
    /// state after it.
    fn run(c: &mut Conn, steps: &[(Direction, u8, State)]) {
        for (i, &(dir, f, want)) in steps.iter().enumerate() {
            let now = c.last_seen() + SEC;
            assert_eq!(c.update(dir, f, now), Verdict::Accept, "step {i}: {c:?}");
            assert_eq!(c.state(), want, "step {i}");
            assert_eq!(c.last_seen(), now);
        }
    }

    fn established() -> Conn {
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        run(
            &mut c,
            &[(R, SA, State::SynReceived), (O, ACK, State::Established)],
        );
        c
    }

    #[test]
    fn conn_fits_in_16_bytes() {
        assert!(core::mem::size_of::<Conn>() <= 16);
    }

    #[test]
    fn protocol_from_ip_number() {
        assert_eq!(Protocol::from_ip(6), Protocol::Tcp);
        assert_eq!(Protocol::from_ip(17), Protocol::Udp);
        assert_eq!(Protocol::from_ip(1), Protocol::Icmp);
        assert_eq!(Protocol::from_ip(58), Protocol::Icmp);
        assert_eq!(Protocol::from_ip(47), Protocol::Other);
        assert_eq!(Protocol::from_ip(50), Protocol::Other);
    }

    #[test]
    fn three_way_handshake_then_data() {
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        assert_eq!(c.state(), State::SynSent);
        assert!(!c.reply_seen() && !c.picked_up());
        run(
            &mut c,
            &[
                (O, SYN, State::SynSent), // retransmitted SYN
                (R, SA, State::SynReceived),
                (R, SA, State::SynReceived), // retransmitted SYN-ACK
                (O, ACK, State::Established),
                (O, PA, State::Established),
                (R, PA, State::Established),
                (R, SA, State::Established), // SYN-ACK again, its ACK lost past us
            ],
        );
        assert!(!c.is_closed());
        // spec 3.2: TcpEstablishedTimeout once established.
        assert_eq!(c.timeout_secs(&Timeouts::default()), 432_000);
    }

    #[test]
    fn fin_close_from_original() {
        let mut c = established();
        run(
            &mut c,
            &[
                (O, FA, State::FinWait),
                (R, PA, State::FinWait), // the half still open carries data
                (R, ACK, State::FinWait),
                (R, FA, State::Closing),
                (R, FA, State::Closing), // retransmitted
                (O, ACK, State::TimeWait),
                (R, FA, State::TimeWait), // late retransmission
                (O, ACK, State::TimeWait),
            ],
        );
        assert!(c.is_closed());
    }

    #[test]
    fn fin_close_from_reply() {
        let mut c = established();
        run(
            &mut c,
            &[
                (R, FA, State::CloseWait),
                (O, PA, State::CloseWait),
                (O, FA, State::Closing),
                (R, ACK, State::TimeWait),
            ],
        );
        assert!(c.is_closed());
    }

    #[test]
    fn three_packet_close() {
        let mut c = established();
        run(
            &mut c,
            &[
                (O, FA, State::FinWait),
                (R, FA, State::Closing), // acks the original FIN, sends its own
                (O, ACK, State::TimeWait),
            ],
        );
    }

    #[test]
    fn simultaneous_close() {
        let mut c = established();
        // Both FINs cross in flight. Without sequence numbers the reply's
        // FIN-ACK counts as acknowledging the original FIN: TimeWait comes
        // one ACK early, which only shortens an already short wait.
        run(
            &mut c,
            &[
                (O, FA, State::FinWait),
                (R, FA, State::Closing),
                (O, ACK, State::TimeWait),
                (R, ACK, State::TimeWait),
            ],
        );
        assert!(c.is_closed());
    }

    #[test]
    fn fin_without_ack_is_not_an_acknowledgement() {
        let mut c = established();
        run(
            &mut c,
            &[
                (O, FIN, State::FinWait),
                (R, FIN, State::Closing),
                (O, ACK, State::Closing), // acks the reply FIN only
                (R, ACK, State::TimeWait),
            ],
        );
    }

    #[test]
    fn rst_from_original() {
        let mut c = established();
        run(
            &mut c,
            &[
                (O, RST, State::Closed),
                (O, RST, State::Closed), // retransmitted RST still matches
                (R, PA, State::Closed),  // data in flight
            ],
        );
        assert!(c.is_closed());
    }

    #[test]
    fn rst_from_reply() {
        let mut c = established();
        run(&mut c, &[(R, RA, State::Closed), (R, RA, State::Closed)]);
        assert!(c.is_closed());
    }

    #[test]
    fn rst_refuses_a_syn() {
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        run(&mut c, &[(R, RA, State::Closed)]);
        assert!(c.is_closed());
        assert_eq!(c.timeout_secs(&Timeouts::default()), 10);
    }

    #[test]
    fn rst_while_closing() {
        let mut c = established();
        run(&mut c, &[(O, FA, State::FinWait), (R, RST, State::Closed)]);
        assert!(c.is_closed());
    }

    #[test]
    fn new_syn_reopens_a_closed_entry() {
        for close in [
            &[(O, RST, State::Closed)][..],
            &[
                (O, FA, State::FinWait),
                (R, FA, State::Closing),
                (O, ACK, State::TimeWait),
            ][..],
            &[(O, FA, State::FinWait), (R, FA, State::Closing)][..],
        ] {
            let mut c = established();
            run(&mut c, close);
            run(
                &mut c,
                &[
                    (O, SYN, State::SynSent),
                    (R, SA, State::SynReceived),
                    (O, ACK, State::Established),
                    (O, FA, State::FinWait), // the old FIN bits are gone
                ],
            );
        }
    }

    #[test]
    fn reopen_forgets_the_reply() {
        let mut c = established();
        run(&mut c, &[(R, RST, State::Closed), (O, SYN, State::SynSent)]);
        assert!(!c.reply_seen());
    }

    #[test]
    fn reply_syn_on_a_closed_entry_is_invalid() {
        let mut c = established();
        run(&mut c, &[(O, RST, State::Closed)]);
        let before = c;
        assert_eq!(c.update(R, SYN, 99 * SEC), Verdict::Invalid);
        assert_eq!(c, before);
    }

    #[test]
    fn mid_stream_pickup() {
        let t = Timeouts::default();
        let mut c = Conn::new(Protocol::Tcp, PA, 0).unwrap();
        assert_eq!(c.state(), State::Established);
        assert!(c.picked_up());
        // Until the peer answers, a picked-up entry lives 300 s, not 5 days.
        assert_eq!(c.timeout_secs(&t), 300);
        run(&mut c, &[(R, ACK, State::Established)]);
        assert_eq!(c.timeout_secs(&t), 432_000);
        run(
            &mut c,
            &[(R, FA, State::CloseWait), (O, FA, State::Closing)],
        );

        let c = Conn::new(Protocol::Tcp, FA, 0).unwrap();
        assert_eq!(c.state(), State::FinWait);
        assert!(c.picked_up());
    }

    #[test]
    fn first_packets_that_cannot_start_a_connection() {
        for f in [RST, RA, SA, 0, PSH, FIN, SYN | FIN, SYN | RST] {
            assert_eq!(Conn::new(Protocol::Tcp, f, 0), None, "flags {f:#04x}");
        }
    }

    #[test]
    fn a_challenge_ack_to_a_reopening_syn_passes_and_opens_nothing() {
        // The peer still holds the old connection in TIME-WAIT and answers
        // the new SYN with a bare ACK; the client's RST then clears the
        // old connection and its next SYN opens (RFC 9293 3.10.7.4).
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        assert_eq!(c.update(R, ACK, SEC), Verdict::Accept);
        assert_eq!(c.state(), State::SynSent);
        run(&mut c, &[(O, RST, State::Closed), (O, SYN, State::SynSent)]);
    }

    #[test]
    fn invalid_packets_change_nothing() {
        let syn_sent = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        let est = established();
        for (c, dir, f) in [
            (syn_sent, O, SA), // SYN-ACK in the original direction
            (syn_sent, O, ACK),
            (syn_sent, O, FA),
            (est, O, SA),
            (est, R, SYN),
            (est, O, 0),
            (est, O, SYN | FIN),
            (est, R, SYN | RST),
        ] {
            let mut after = c;
            assert_eq!(
                after.update(dir, f, 50 * SEC),
                Verdict::Invalid,
                "{c:?} {f:#04x}"
            );
            assert_eq!(after, c, "{dir:?} {f:#04x} changed the entry");
        }
    }

    #[test]
    fn stray_syn_leaves_an_established_connection_alone() {
        let mut c = established();
        run(
            &mut c,
            &[(O, SYN, State::Established), (O, ACK, State::Established)],
        );
    }

    #[test]
    fn simultaneous_open() {
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        run(
            &mut c,
            &[
                (R, SYN, State::SynReceived),
                (O, SA, State::SynReceived),
                (R, SA, State::SynReceived),
                (O, ACK, State::Established),
            ],
        );
    }

    #[test]
    fn original_syn_ack_needs_simultaneous_open() {
        let mut c = Conn::new(Protocol::Tcp, SYN, 0).unwrap();
        run(&mut c, &[(R, SA, State::SynReceived)]);
        assert_eq!(c.update(O, SA, 5 * SEC), Verdict::Invalid);
    }

    /// Asserts the entry lives exactly `secs` after its last packet.
    fn assert_boundary(c: &Conn, t: &Timeouts, secs: u64) {
        let edge = c.last_seen() + secs * SEC;
        assert!(
            !c.expired(edge, t),
            "{:?} expired at its timeout",
            c.state()
        );
        assert!(
            c.expired(edge + 1, t),
            "{:?} alive past its timeout",
            c.state()
        );
        assert_eq!(c.deadline(t), edge);
    }

    #[test]
    fn tcp_timeouts_at_the_boundary() {
        let t = Timeouts::default();
        let mut c = Conn::new(Protocol::Tcp, SYN, 7).unwrap();
        assert_boundary(&c, &t, 120);
        let steps = [
            (R, SA, 60),
            (O, ACK, 432_000),
            (O, FA, 120),
            (R, FA, 30),
            (O, ACK, 120),
            (O, RST, 10),
        ];
        for (dir, f, secs) in steps {
            assert_eq!(c.update(dir, f, c.last_seen() + 3), Verdict::Accept);
            assert_boundary(&c, &t, secs);
        }
        let mut c = established();
        run(&mut c, &[(R, FA, State::CloseWait)]);
        assert_boundary(&c, &t, 120);
    }

    #[test]
    fn custom_tcp_established_timeout() {
        let t = Timeouts {
            tcp_established_secs: 60,
            ..Timeouts::default()
        }
        .validate()
        .unwrap();
        assert_boundary(&established(), &t, 60);
    }

    #[test]
    fn udp_single_exchange_then_stream() {
        let t = Timeouts::default();
        let mut c = Conn::new(Protocol::Udp, 0, 0).unwrap();
        assert_eq!(c.state(), State::UdpUnreplied);
        assert_boundary(&c, &t, 30);
        run(
            &mut c,
            &[
                (O, 0, State::UdpUnreplied), // retransmitted request
                (R, 0, State::UdpReplied),
            ],
        );
        assert_boundary(&c, &t, 30);
        run(&mut c, &[(O, 0, State::UdpStream)]);
        assert_boundary(&c, &t, 180);
        run(&mut c, &[(R, 0, State::UdpStream)]);

        // A second reply datagram is also more than one exchange.
        let mut c = Conn::new(Protocol::Udp, 0, 0).unwrap();
        run(
            &mut c,
            &[(R, 0, State::UdpReplied), (R, 0, State::UdpStream)],
        );
    }

    #[test]
    fn udp_custom_timeouts() {
        let t = Timeouts {
            udp_secs: 60,
            udp_stream_secs: 60,
            ..Timeouts::default()
        }
        .validate()
        .unwrap();
        let mut c = Conn::new(Protocol::Udp, 0, 5).unwrap();
        assert_boundary(&c, &t, 60);
        run(&mut c, &[(R, 0, State::UdpReplied)]);
        assert_boundary(&c, &t, 60);
        let t = Timeouts {
            udp_secs: 45,
            udp_stream_secs: 90,
            ..t
        };
        assert_boundary(&c, &t, 45);
        run(&mut c, &[(O, 0, State::UdpStream)]);
        assert_boundary(&c, &t, 90);
    }

    #[test]
    fn icmp_and_other_protocols_last_600_s() {
        let t = Timeouts::default();
        for (p, unreplied, replied) in [
            (Protocol::Icmp, State::IcmpUnreplied, State::IcmpReplied),
            (Protocol::Other, State::OtherUnreplied, State::OtherReplied),
        ] {
            let mut c = Conn::new(p, 0, 0).unwrap();
            assert_eq!(c.state(), unreplied);
            assert_boundary(&c, &t, 600);
            run(
                &mut c,
                &[(O, 0, unreplied), (R, 0, replied), (O, 0, replied)],
            );
            assert_boundary(&c, &t, 600);
            assert!(!c.is_closed());
        }
    }

    #[test]
    fn time_going_backwards() {
        let t = Timeouts::default();
        let mut c = Conn::new(Protocol::Udp, 0, 100 * SEC).unwrap();
        assert_eq!(c.update(R, 0, 10 * SEC), Verdict::Accept);
        assert_eq!(c.last_seen(), 100 * SEC);
        assert!(!c.expired(0, &t));
        let mut c = Conn::new(Protocol::Tcp, SYN, u64::MAX).unwrap();
        assert_eq!(c.deadline(&t), u64::MAX);
        assert!(!c.expired(u64::MAX, &t));
        assert_eq!(c.update(R, SA, 0), Verdict::Accept);
        assert_eq!(c.last_seen(), u64::MAX);
    }

    #[test]
    fn validate_accepts_the_range_ends() {
        let d = Timeouts::default();
        assert_eq!(d.validate(), Ok(d));
        for (tcp, stream, udp) in [(60, 60, 30), (432_000, 180, 60)] {
            let t = Timeouts {
                tcp_established_secs: tcp,
                udp_stream_secs: stream,
                udp_secs: udp,
                ..d
            };
            assert_eq!(t.validate(), Ok(t));
        }
    }

    #[test]
    fn validate_refuses_one_past_the_ends() {
        let d = Timeouts::default();
        let tcp = |v| Timeouts {
            tcp_established_secs: v,
            ..d
        };
        let stream = |v| Timeouts {
            udp_stream_secs: v,
            ..d
        };
        let udp = |v| Timeouts { udp_secs: v, ..d };
        assert_eq!(tcp(59).validate(), Err(TimeoutError::TcpEstablished(59)));
        assert_eq!(
            tcp(432_001).validate(),
            Err(TimeoutError::TcpEstablished(432_001))
        );
        assert_eq!(stream(59).validate(), Err(TimeoutError::UdpStream(59)));
        assert_eq!(stream(181).validate(), Err(TimeoutError::UdpStream(181)));
        assert_eq!(udp(29).validate(), Err(TimeoutError::Udp(29)));
        assert_eq!(udp(61).validate(), Err(TimeoutError::Udp(61)));
        assert_eq!(
            TimeoutError::TcpEstablished(59).to_string(),
            "TcpEstablishedTimeout must be from 60 to 432000 seconds, got 59"
        );
        assert_eq!(
            TimeoutError::UdpStream(181).to_string(),
            "UdpStreamTimeout must be from 60 to 180 seconds, got 181"
        );
        assert_eq!(
            TimeoutError::Udp(61).to_string(),
            "UdpTimeout must be from 30 to 60 seconds, got 61"
        );
    }

    fn protocol() -> impl Strategy<Value = Protocol> {
        prop_oneof![
            4 => Just(Protocol::Tcp),
            1 => Just(Protocol::Udp),
            1 => Just(Protocol::Icmp),
            1 => Just(Protocol::Other),
        ]
    }

    /// Mostly real flag combinations, so deep states are reached, plus noise.
    fn tcp_flags() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => prop::sample::select(vec![SYN, SA, ACK, PA, FA, FIN, RST, RA]),
            1 => any::<u8>(),
        ]
    }

    fn direction() -> impl Strategy<Value = Direction> {
        prop_oneof![Just(O), Just(R)]
    }

    proptest! {
        #[test]
        fn any_packet_sequence_is_safe(
            p in protocol(),
            first in tcp_flags(),
            start in any::<u64>(),
            steps in prop::collection::vec((direction(), tcp_flags(), 0u64..1_000_000_000), 0..64),
        ) {
            let Some(mut c) = Conn::new(p, first, start) else {
                return Ok(());
            };
            let t = Timeouts::default();
            let mut now = start;
            for (dir, f, delta) in steps {
                now = now.saturating_add(delta);
                let before = c;
                let verdict = c.update(dir, f, now);
                prop_assert!(c.last_seen() >= before.last_seen());
                prop_assert_eq!(c.state().protocol(), p);
                match verdict {
                    Verdict::Accept => prop_assert_eq!(c.last_seen(), now),
                    Verdict::Invalid => prop_assert_eq!(c, before),
                }
                if p != Protocol::Tcp {
                    prop_assert_eq!(verdict, Verdict::Accept);
                } else if f & RST != 0 && f & SYN == 0 {
                    prop_assert!(c.is_closed());
                }
                prop_assert!(!c.expired(c.last_seen(), &t));
                prop_assert!(c.deadline(&t) >= c.last_seen());
            }
        }

        #[test]
        fn any_clock_never_panics(
            p in protocol(),
            first in tcp_flags(),
            start in any::<u64>(),
            steps in prop::collection::vec((direction(), tcp_flags(), any::<u64>()), 0..32),
        ) {
            let Some(mut c) = Conn::new(p, first, start) else {
                return Ok(());
            };
            let t = Timeouts::default();
            let mut newest = start;
            for (dir, f, now) in steps {
                if c.update(dir, f, now) == Verdict::Accept {
                    newest = newest.max(now);
                }
                prop_assert_eq!(c.last_seen(), newest);
                let _ = c.expired(now, &t);
            }
        }
    }
}
