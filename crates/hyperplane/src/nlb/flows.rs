//! The NLB's flows: a flow's tuple and state, and its table, the shared
//! [`FlowSlab`] found both ways: by the client's tuple (client → front
//! address and listener port) and by the tuple a target's reply carries
//! (target → the source the target saw).

use core::hash::{Hash, Hasher};

use crate::flow_slab::{FlowSlab, SlabFlow};

/// A tuple as a packet carries it: `src` → `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Key {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl Hash for Key {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.src) << 32 | u64::from(self.dst));
        state.write_u64(
            u64::from(self.sport) << 32 | u64::from(self.dport) << 8 | u64::from(self.proto),
        );
    }
}

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// An empty slab slot.
    Free = 0,
    /// The client's first packet went to the target; no reply yet.
    Opened = 1,
    /// The target answered.
    Established = 2,
    /// A RST from either side: the flow goes at the next sweep.
    Closed = 3,
}

impl FlowState {
    pub fn from_u8(v: u8) -> Option<FlowState> {
        Some(match v {
            1 => FlowState::Opened,
            2 => FlowState::Established,
            3 => FlowState::Closed,
            _ => return None,
        })
    }
}

pub use crate::flow_slab::{InsertError, Origin};

/// One flow: the client's tuple, the chosen target, and the source the
/// target sees (the client itself when its IP is preserved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub client: u32,
    pub front: u32,
    pub cport: u16,
    /// The listener port.
    pub fport: u16,
    pub proto: u8,
    pub target: u32,
    pub tport: u16,
    pub source: u32,
    pub sport: u16,
    /// The target group's index in the configuration, and the target's in it.
    pub group: u16,
    pub slot: u16,
    /// The node of the shard that chose the target.
    pub owner: u8,
    pub state: FlowState,
    pub origin: Origin,
    /// Seconds (wrapping) of the last packet; for a replica, of the last record.
    pub last_seen: u32,
    /// Seconds (wrapping) of the last record sent to the buddy.
    pub replicated_at: u32,
    /// The sequence number of the SYN that opened a TCP flow: a SYN with
    /// another one on the same tuple is a new connection (spec 9.2: the
    /// SYN's sequence number is part of the flow). 0 for UDP, or unknown.
    pub syn_seq: u32,
}

impl Flow {
    pub const FREE: Flow = Flow {
        client: 0,
        front: 0,
        cport: 0,
        fport: 0,
        proto: 0,
        target: 0,
        tport: 0,
        source: 0,
        sport: 0,
        group: 0,
        slot: 0,
        owner: 0,
        state: FlowState::Free,
        origin: Origin::Local,
        last_seen: 0,
        replicated_at: 0,
        syn_seq: 0,
    };

    /// The key of the client's packets.
    #[inline]
    pub fn forward(&self) -> Key {
        Key {
            src: self.client,
            dst: self.front,
            sport: self.cport,
            dport: self.fport,
            proto: self.proto,
        }
    }

    /// The key of the target's replies.
    #[inline]
    pub fn reverse(&self) -> Key {
        Key {
            src: self.target,
            dst: self.source,
            sport: self.tport,
            dport: self.sport,
            proto: self.proto,
        }
    }
}

/// The NLB's flow table: found by the client's tuple (forward) and by
/// the target's replies (reverse).
pub type FlowTable = FlowSlab<Flow>;

impl SlabFlow for Flow {
    type Key = Key;
    const FREE: Flow = Flow::FREE;

    #[inline]
    fn is_free(&self) -> bool {
        self.state == FlowState::Free
    }

    #[inline]
    fn origin(&self) -> Origin {
        self.origin
    }

    fn set_origin(&mut self, origin: Origin) {
        self.origin = origin;
    }

    #[inline]
    fn first(&self) -> Key {
        self.forward()
    }

    #[inline]
    fn second(&self) -> Key {
        self.reverse()
    }
}

impl FlowSlab<Flow> {
    /// The flow of the client's packets with `key`.
    #[inline]
    pub fn find_forward(&self, key: &Key) -> Option<u32> {
        self.find_first(key, self.hash(key))
    }

    /// The flow of the target's replies with `key`.
    #[inline]
    pub fn find_reverse(&self, key: &Key) -> Option<u32> {
        self.find_second(key, self.hash(key))
    }
}
