//! The NAT flow table: every flow once, in a slab preallocated to its
//! bound, found both ways through two hash tables of slab indices (the
//! instance's original tuple, and the translated tuple a reply carries),
//! plus the count of ports in use per destination that port allocation
//! needs.
//!
//! The hash tables hold 4-byte indices, not keys: a key is read back from
//! the slab, so a flow costs one slab entry and two indices (DESIGN.md,
//! "Tables": preallocated, bounded, a random per-process seed). Nothing
//! here allocates after [`FlowTable::new`].

use core::hash::{Hash, Hasher};

use hashbrown::HashTable;

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

/// Whose flow this is on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Origin {
    /// Decided here, its port from this node's slice (counted per
    /// destination).
    Local = 0,
    /// The buddy's, held in case it dies; not translated here.
    Replica = 1,
    /// The dead buddy's, served here since [`crate::nat::Nat::take_over`].
    TakenOver = 2,
}

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

/// Why a flow could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Full,
    /// One of its keys is already held by another flow.
    Duplicate,
}

/// The bounded flow table.
#[derive(Debug)]
pub struct FlowTable {
    slots: Vec<Flow>,
    free: Vec<u32>,
    by_original: HashTable<u32>,
    by_translated: HashTable<u32>,
    dests: HashTable<Dest>,
    hasher: ahash::RandomState,
    /// Live flows by [`Origin`].
    by_origin: [u32; 3],
}

impl FlowTable {
    /// A table for at most `capacity` flows, all of it allocated now.
    pub fn new(capacity: usize) -> FlowTable {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        FlowTable {
            slots: vec![Flow::FREE; capacity],
            free: (0..capacity as u32).rev().collect(),
            by_original: HashTable::with_capacity(capacity),
            by_translated: HashTable::with_capacity(capacity),
            dests: HashTable::with_capacity(capacity),
            hasher: ahash::RandomState::new(),
            by_origin: [0; 3],
        }
    }

    #[inline]
    pub fn hash(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live flows of `origin`.
    pub fn count(&self, origin: Origin) -> u32 {
        self.by_origin[origin as usize]
    }

    /// Bytes the table holds, all preallocated.
    pub fn memory(&self) -> usize {
        self.slots.capacity() * size_of::<Flow>()
            + self.free.capacity() * size_of::<u32>()
            + self.by_original.allocation_size()
            + self.by_translated.allocation_size()
            + self.dests.allocation_size()
    }

    #[inline]
    pub fn get(&self, i: u32) -> Option<&Flow> {
        self.slots
            .get(i as usize)
            .filter(|f| f.state != FlowState::Free)
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut Flow> {
        self.slots
            .get_mut(i as usize)
            .filter(|f| f.state != FlowState::Free)
    }

    /// The flow of the instance's packets with `key` (hashed as `hash`).
    #[inline]
    pub fn find_original(&self, key: &Key, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.by_original
            .find(hash, |&i| {
                slots.get(i as usize).map(Flow::original).as_ref() == Some(key)
            })
            .copied()
    }

    /// The flow of the replies with `key`.
    #[inline]
    pub fn find_translated(&self, key: &Key, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.by_translated
            .find(hash, |&i| {
                slots.get(i as usize).map(Flow::translated).as_ref() == Some(key)
            })
            .copied()
    }

    /// Stores `flow`; its keys must be free.
    pub fn insert(&mut self, flow: Flow) -> Result<u32, InsertError> {
        let (o, t) = (flow.original(), flow.translated());
        let (ho, ht) = (self.hash(&o), self.hash(&t));
        if self.find_original(&o, ho).is_some() || self.find_translated(&t, ht).is_some() {
            return Err(InsertError::Duplicate);
        }
        let i = self.free.pop().ok_or(InsertError::Full)?;
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return Err(InsertError::Full);
        };
        *slot = flow;
        let slots = &self.slots;
        let hasher = &self.hasher;
        // The tables were made for `capacity` entries: these never grow.
        self.by_original.insert_unique(ho, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.original()))
        });
        self.by_translated.insert_unique(ht, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.translated()))
        });
        self.by_origin[flow.origin as usize] += 1;
        Ok(i)
    }

    /// Removes flow `i`, giving back its port if it was allocated here.
    pub fn remove(&mut self, i: u32) -> Option<Flow> {
        let flow = *self.get(i)?;
        let (ho, ht) = (self.hash(&flow.original()), self.hash(&flow.translated()));
        if let Ok(e) = self.by_original.find_entry(ho, |&j| j == i) {
            e.remove();
        }
        if let Ok(e) = self.by_translated.find_entry(ht, |&j| j == i) {
            e.remove();
        }
        if flow.origin == Origin::Local {
            self.release_port(&flow);
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            *slot = Flow::FREE;
        }
        self.free.push(i);
        self.by_origin[flow.origin as usize] -= 1;
        Some(flow)
    }

    /// Changes the origin of flow `i` (a replica taken over).
    pub fn set_origin(&mut self, i: u32, origin: Origin) {
        if let Some(f) = self.slots.get_mut(i as usize)
            && f.state != FlowState::Free
        {
            self.by_origin[f.origin as usize] -= 1;
            f.origin = origin;
            self.by_origin[origin as usize] += 1;
        }
    }

    /// Whether the translated tuple `key` is in use.
    #[inline]
    pub fn translated_in_use(&self, key: &Key) -> bool {
        self.find_translated(key, self.hash(key)).is_some()
    }

    /// The destination entry of `key` (its `lport` 0), if any port is in use.
    pub fn dest(&self, key: &Key) -> Option<Dest> {
        self.dests.find(self.hash(key), |d| d.key == *key).copied()
    }

    /// Records one more port in use towards `key`, the search resuming at
    /// `cursor`; false if the table of destinations is full.
    pub fn take_port(&mut self, key: &Key, cursor: u32) -> bool {
        let h = self.hash(key);
        if let Some(d) = self.dests.find_mut(h, |d| d.key == *key) {
            d.in_use += 1;
            d.cursor = cursor;
            return true;
        }
        if self.dests.len() >= self.dests.capacity() {
            return false;
        }
        let hasher = &self.hasher;
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
        let h = self.hash(&key);
        if let Ok(mut e) = self.dests.find_entry(h, |d| d.key == key) {
            let d = e.get_mut();
            d.in_use = d.in_use.saturating_sub(1);
            if d.in_use == 0 {
                e.remove();
            }
        }
    }

    /// Live flows from slot `start`, at most `n` slots looked at, for a
    /// sweep; `f` returns false to stop after this flow. Returns the next
    /// start and the slots looked at.
    pub fn scan(
        &self,
        start: u32,
        n: usize,
        mut f: impl FnMut(u32, &Flow) -> bool,
    ) -> (u32, usize) {
        let len = self.slots.len() as u32;
        let mut i = start % len.max(1);
        let mut looked = 0;
        while looked < n.min(self.slots.len()) {
            let go_on = self.get(i).is_none_or(|flow| f(i, flow));
            i = (i + 1) % len;
            looked += 1;
            if !go_on {
                break;
            }
        }
        (i, looked)
    }

    /// Every live flow.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Flow)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, f)| f.state != FlowState::Free)
            .map(|(i, f)| (i as u32, f))
    }
}
