//! The NLB replication record: a flow's target choice and translation as
//! the deciding node sends it to its buddy before the first packet goes to
//! the target, 32 bytes on the wire, versioned. Decoding reads untrusted
//! bytes and never panics: anything it does not understand is an error.
//!
//! Layout (big-endian): version 1, kind, protocol, state, owner node,
//! 3 reserved bytes (zero); client, front address, target, source seen by
//! the target (4 bytes each); client port, listener port, target port,
//! source port (2 each); then the sequence number of the SYN that opened a
//! TCP flow (4 bytes; 0 for UDP), appended to the first layout. Longer input
//! is accepted and the rest ignored, so a later version may append fields;
//! a record without the SYN's sequence number reads as 0 (unknown).

use core::net::Ipv4Addr;

use openvpc_packet::ip::protocol;

use super::flows::{Flow, FlowState, Origin};

/// The record format this build writes.
pub const VERSION: u8 = 1;
/// Bytes of an encoded record.
pub const LEN: usize = 36;
/// Bytes of the shortest record read (without the SYN's sequence number).
pub const MIN_LEN: usize = 32;

/// What a record asks the buddy to do: the NAT's kinds.
pub use crate::nat::RecordKind;

/// One flow's replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    pub kind: RecordKind,
    pub proto: u8,
    pub state: FlowState,
    pub owner: u8,
    pub client: Ipv4Addr,
    pub front: Ipv4Addr,
    pub target: Ipv4Addr,
    pub source: Ipv4Addr,
    pub cport: u16,
    pub fport: u16,
    pub tport: u16,
    pub sport: u16,
    /// The sequence number of the SYN that opened the flow (0: UDP, or
    /// unknown).
    pub syn_seq: u32,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("an NLB flow record is at least {MIN_LEN} bytes, got {0}")]
    Short(usize),
    #[error("NLB flow record version {0} is not understood (this build reads {VERSION})")]
    Version(u8),
    #[error("unknown NLB flow record kind {0}")]
    Kind(u8),
    #[error("NLB flow record for protocol {0}, which an NLB does not balance")]
    Protocol(u8),
    #[error("invalid NLB flow state {0}")]
    State(u8),
}

impl FlowRecord {
    /// The record of `flow`.
    pub fn of(kind: RecordKind, flow: &Flow) -> FlowRecord {
        FlowRecord {
            kind,
            proto: flow.proto,
            state: flow.state,
            owner: flow.owner,
            client: Ipv4Addr::from_bits(flow.client),
            front: Ipv4Addr::from_bits(flow.front),
            target: Ipv4Addr::from_bits(flow.target),
            source: Ipv4Addr::from_bits(flow.source),
            cport: flow.cport,
            fport: flow.fport,
            tport: flow.tport,
            sport: flow.sport,
            syn_seq: flow.syn_seq,
        }
    }

    /// The flow it describes, refreshed at `now`; the target group and the
    /// target's index are the receiver's to resolve.
    pub fn flow(&self, origin: Origin, group: u16, slot: u16, now: u32) -> Flow {
        Flow {
            client: self.client.to_bits(),
            front: self.front.to_bits(),
            cport: self.cport,
            fport: self.fport,
            proto: self.proto,
            target: self.target.to_bits(),
            tport: self.tport,
            source: self.source.to_bits(),
            sport: self.sport,
            group,
            slot,
            owner: self.owner,
            state: self.state,
            origin,
            last_seen: now,
            replicated_at: now,
            syn_seq: self.syn_seq,
        }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = VERSION;
        b[1] = self.kind as u8;
        b[2] = self.proto;
        b[3] = self.state as u8;
        b[4] = self.owner;
        b[8..12].copy_from_slice(&self.client.octets());
        b[12..16].copy_from_slice(&self.front.octets());
        b[16..20].copy_from_slice(&self.target.octets());
        b[20..24].copy_from_slice(&self.source.octets());
        b[24..26].copy_from_slice(&self.cport.to_be_bytes());
        b[26..28].copy_from_slice(&self.fport.to_be_bytes());
        b[28..30].copy_from_slice(&self.tport.to_be_bytes());
        b[30..32].copy_from_slice(&self.sport.to_be_bytes());
        b[32..36].copy_from_slice(&self.syn_seq.to_be_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<FlowRecord, RecordError> {
        let b: &[u8; MIN_LEN] = bytes
            .get(..MIN_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::Short(bytes.len()))?;
        let syn_seq = bytes
            .get(MIN_LEN..LEN)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map_or(0, u32::from_be_bytes);
        if b[0] != VERSION {
            return Err(RecordError::Version(b[0]));
        }
        let kind = RecordKind::from_u8(b[1]).ok_or(RecordError::Kind(b[1]))?;
        if !matches!(b[2], protocol::TCP | protocol::UDP) {
            return Err(RecordError::Protocol(b[2]));
        }
        let state = FlowState::from_u8(b[3]).ok_or(RecordError::State(b[3]))?;
        let addr = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Ok(FlowRecord {
            kind,
            proto: b[2],
            state,
            owner: b[4],
            client: addr(8),
            front: addr(12),
            target: addr(16),
            source: addr(20),
            cport: port(24),
            fport: port(26),
            tport: port(28),
            sport: port(30),
            syn_seq,
        })
    }
}
