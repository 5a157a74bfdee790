//! The NAT's flows: a flow's tuples and state, and its table: the shared
//! [`FlowSlab`] found both ways (the instance's original tuple, and the
//! translated tuple a reply carries), plus the count of ports in use per
//! destination that port allocation needs. Nothing here allocates after
//! [`FlowTable::new`].

use core::hash::{Hash, Hasher};

use core::ops::{Deref, DerefMut};

use hashbrown::HashTable;

use crate::flow_slab::{FlowSlab, SlabFlow};

/// A flow's tuple, seen from the gateway: `local` is the instance (original
/// side) or the gateway's address (translated side), `remote` the outside
/// peer. For ICMP echo `lport` is the query identifier and `rport` 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Key {
    pub local: u32,
    pub remote: u32,
    pub lport: u16,
    pub rport: u16,
    pub proto: u8,
}

impl Hash for Key {
    // Two words: the whole key, without field-by-field writes.
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.local) << 32 | u64::from(self.remote));
        state.write_u64(
            u64::from(self.lport) << 32 | u64::from(self.rport) << 8 | u64::from(self.proto),
        );
    }
}

/// Where a flow is in its life. TCP goes through all of them; UDP and
/// ICMP stop at `Established` (a reply was seen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FlowState {
    /// An empty slab slot.
    Free = 0,
    /// The instance's first packet went out; no reply yet.
    Opened = 1,
    /// A reply came back (TCP: the SYN-ACK).
    Established = 2,
    /// The instance sent a FIN.
    FinOut = 3,
    /// The outside sent a FIN.
    FinIn = 4,
    /// Both FINs, or a RST: the flow lingers briefly, then goes.
    Closed = 5,
}

impl FlowState {
    pub fn from_u8(v: u8) -> Option<FlowState> {
        Some(match v {
            1 => FlowState::Opened,
            2 => FlowState::Established,
            3 => FlowState::FinOut,
            4 => FlowState::FinIn,
            5 => FlowState::Closed,
            _ => return None,
        })
    }
}

pub use crate::flow_slab::{InsertError, Origin};

/// One flow: the instance's tuple, the translation, its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub src: u32,
    pub dst: u32,
    /// The gateway address the source is translated to.
    pub public: u32,
    pub sport: u16,
    pub dport: u16,
    /// The translated source port (ICMP: query identifier).
    pub pport: u16,
    pub proto: u8,
    pub state: FlowState,
    pub origin: Origin,
    /// Seconds (wrapping) of the last packet; for a replica, of the last
    /// record.
    pub last_seen: u32,
    /// Seconds (wrapping) of the last record sent to the buddy.
    pub replicated_at: u32,
}

impl Flow {
    pub const FREE: Flow = Flow {
        src: 0,
        dst: 0,
        public: 0,
        sport: 0,
        dport: 0,
        pport: 0,
        proto: 0,
        state: FlowState::Free,
        origin: Origin::Local,
        last_seen: 0,
        replicated_at: 0,
    };

    /// The key of the instance's packets.
    #[inline]
    pub fn original(&self) -> Key {
        Key {
            local: self.src,
            remote: self.dst,
            lport: self.sport,
            rport: self.dport,
            proto: self.proto,
        }
    }

    /// The key of the replies (translated side).
    #[inline]
    pub fn translated(&self) -> Key {
        Key {
            local: self.public,
            remote: self.dst,
            lport: self.pport,
            rport: self.dport,
            proto: self.proto,
        }
    }
}

/// Ports in use towards one destination from one gateway address, and
/// where the next search for a free one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dest {
    /// `lport` is always 0: the destination is (address, remote, rport, proto).
    pub key: Key,
    pub in_use: u32,
    pub cursor: u32,
}

/// The NAT's flow table: the shared [`FlowSlab`], found by the original
/// tuple and by the translated one, and beside it the ports in use per
/// destination. It reads as its slab ([`Deref`]); removing a flow also
/// gives its port back.
#[derive(Debug)]
pub struct FlowTable {
    slab: FlowSlab<Flow>,
    dests: HashTable<Dest>,
}

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
        self.original()
    }

    #[inline]
    fn second(&self) -> Key {
        self.translated()
    }
}

impl Deref for FlowTable {
    type Target = FlowSlab<Flow>;
    fn deref(&self) -> &FlowSlab<Flow> {
        &self.slab
    }
}

impl DerefMut for FlowTable {
    fn deref_mut(&mut self) -> &mut FlowSlab<Flow> {
        &mut self.slab
    }
}

impl FlowTable {
    /// A table for at most `capacity` flows, all of it allocated now.
    pub fn new(capacity: usize) -> FlowTable {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        FlowTable {
            slab: FlowSlab::new(capacity),
            dests: HashTable::with_capacity(capacity),
        }
    }

    /// Bytes the table holds, all preallocated.
    pub fn memory(&self) -> usize {
        self.slab.memory() + self.dests.allocation_size()
    }

    /// The flow of the instance's packets with `key` (hashed as `hash`).
    #[inline]
    pub fn find_original(&self, key: &Key, hash: u64) -> Option<u32> {
        self.slab.find_first(key, hash)
    }

    /// The flow of the replies with `key`.
    #[inline]
    pub fn find_translated(&self, key: &Key, hash: u64) -> Option<u32> {
        self.slab.find_second(key, hash)
    }

    /// Removes flow `i`, giving back its port if it was allocated here.
    pub fn remove(&mut self, i: u32) -> Option<Flow> {
        let flow = self.slab.remove(i)?;
        if flow.origin == Origin::Local {
            self.release_port(&flow);
        }
        Some(flow)
    }

    /// Whether the translated tuple `key` is in use.
    #[inline]
    pub fn translated_in_use(&self, key: &Key) -> bool {
        self.find_translated(key, self.hash(key)).is_some()
    }

    /// The destination entry of `key` (its `lport` 0), if any port is in use.
    pub fn dest(&self, key: &Key) -> Option<Dest> {
        self.dests
            .find(self.slab.hash(key), |d| d.key == *key)
            .copied()
    }

    /// Records one more port in use towards `key`, the search resuming at
    /// `cursor`; false if the table of destinations is full.
    pub fn take_port(&mut self, key: &Key, cursor: u32) -> bool {
        let h = self.slab.hash(key);
        if let Some(d) = self.dests.find_mut(h, |d| d.key == *key) {
            d.in_use += 1;
            d.cursor = cursor;
            return true;
        }
        if self.dests.len() >= self.dests.capacity() {
            return false;
        }
        let hasher = self.slab.hasher();
        self.dests.insert_unique(
            h,
            Dest {
                key: *key,
                in_use: 1,
                cursor,
            },
            |d| hasher.hash_one(d.key),
        );
        true
    }

    /// Gives back the port of a local flow (one fewer towards its
    /// destination).
    pub fn release_port(&mut self, flow: &Flow) {
        let key = Key {
            lport: 0,
            ..flow.translated()
        };
        let h = self.slab.hash(&key);
        if let Ok(mut e) = self.dests.find_entry(h, |d| d.key == key) {
            let d = e.get_mut();
            d.in_use = d.in_use.saturating_sub(1);
            if d.in_use == 0 {
                e.remove();
            }
        }
    }
}
