//! The replication record: a flow's state as the deciding node sends it to
//! its buddy (DESIGN.md, "Hyperplane": the buddy has it before the
//! decision is used), 24 bytes on the wire, versioned. Decoding reads
//! untrusted bytes and never panics: anything it does not understand is an
//! error.
//!
//! Layout (big-endian): version 1, kind, protocol, state, source, destination,
//! gateway address (4 bytes each), source port, destination port,
//! translated port (2 each), 2 reserved bytes (zero). Longer input is
//! accepted and the rest ignored, so a later version may append fields.

use core::net::Ipv4Addr;

use openvpc_packet::ip::protocol;

use super::flows::{Flow, FlowState, Origin};

/// The record format this build writes.
pub const VERSION: u8 = 1;
/// Bytes of an encoded record.
pub const LEN: usize = 24;

/// What a record asks the buddy to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// Install the flow, or update its state and refresh it.
    Upsert = 1,
    /// Forget the flow.
    Delete = 2,
}

impl RecordKind {
    /// The kind a record's byte names, if any.
    pub fn from_u8(v: u8) -> Option<RecordKind> {
        match v {
            1 => Some(RecordKind::Upsert),
            2 => Some(RecordKind::Delete),
            _ => None,
        }
    }
}

/// One flow's replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowRecord {
    pub kind: RecordKind,
    pub proto: u8,
    pub state: FlowState,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub public: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub pport: u16,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("a flow record is {LEN} bytes, got {0}")]
    Short(usize),
    #[error("flow record version {0} is not understood (this build reads {VERSION})")]
    Version(u8),
    #[error("unknown flow record kind {0}")]
    Kind(u8),
    #[error("flow record for protocol {0}, which NAT does not translate")]
    Protocol(u8),
    #[error("invalid flow state {0}")]
    State(u8),
}

impl FlowRecord {
    /// The record of `flow`.
    pub fn of(kind: RecordKind, flow: &Flow) -> FlowRecord {
        FlowRecord {
            kind,
            proto: flow.proto,
            state: flow.state,
            src: Ipv4Addr::from_bits(flow.src),
            dst: Ipv4Addr::from_bits(flow.dst),
            public: Ipv4Addr::from_bits(flow.public),
            sport: flow.sport,
            dport: flow.dport,
            pport: flow.pport,
        }
    }

    /// The flow it describes, as a replica last refreshed at `now`.
    pub fn flow(&self, origin: Origin, now: u32) -> Flow {
        Flow {
            src: self.src.to_bits(),
            dst: self.dst.to_bits(),
            public: self.public.to_bits(),
            sport: self.sport,
            dport: self.dport,
            pport: self.pport,
            proto: self.proto,
            state: self.state,
            origin,
            last_seen: now,
            replicated_at: now,
        }
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = VERSION;
        b[1] = self.kind as u8;
        b[2] = self.proto;
        b[3] = self.state as u8;
        b[4..8].copy_from_slice(&self.src.octets());
        b[8..12].copy_from_slice(&self.dst.octets());
        b[12..16].copy_from_slice(&self.public.octets());
        b[16..18].copy_from_slice(&self.sport.to_be_bytes());
        b[18..20].copy_from_slice(&self.dport.to_be_bytes());
        b[20..22].copy_from_slice(&self.pport.to_be_bytes());
        b
    }

    pub fn decode(bytes: &[u8]) -> Result<FlowRecord, RecordError> {
        let b: &[u8; LEN] = bytes
            .get(..LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(RecordError::Short(bytes.len()))?;
        if b[0] != VERSION {
            return Err(RecordError::Version(b[0]));
        }
        let kind = RecordKind::from_u8(b[1]).ok_or(RecordError::Kind(b[1]))?;
        if !matches!(b[2], protocol::TCP | protocol::UDP | protocol::ICMP) {
            return Err(RecordError::Protocol(b[2]));
        }
        let state = FlowState::from_u8(b[3]).ok_or(RecordError::State(b[3]))?;
        let addr = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        Ok(FlowRecord {
            kind,
            proto: b[2],
            state,
            src: addr(4),
            dst: addr(8),
            public: addr(12),
            sport: port(16),
            dport: port(18),
            pport: port(20),
        })
    }
}
