//! The NLB flow table: every flow once, in a slab preallocated to its
//! bound, found both ways through two hash tables of slab indices: the
//! client's tuple (client → front address and listener port) and the tuple
//! a target's reply carries (target → the source the target saw). As in
//! the NAT's table (DESIGN.md, "Tables"), the indices are 4 bytes, the
//! hash seed is random per process, and nothing allocates after
//! [`FlowTable::new`].

use core::hash::{Hash, Hasher};

use hashbrown::HashTable;

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

/// Whose flow this is on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Origin {
    /// Decided here.
    Local = 0,
    /// The buddy's, held in case it dies; not served here.
    Replica = 1,
    /// The dead buddy's, served here since [`crate::nlb::Nlb::take_over`].
    TakenOver = 2,
}

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
    by_forward: HashTable<u32>,
    by_reverse: HashTable<u32>,
    hasher: ahash::RandomState,
    by_origin: [u32; 3],
}

impl FlowTable {
    /// A table for at most `capacity` flows, all of it allocated now.
    pub fn new(capacity: usize) -> FlowTable {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        FlowTable {
            slots: vec![Flow::FREE; capacity],
            free: (0..capacity as u32).rev().collect(),
            by_forward: HashTable::with_capacity(capacity),
            by_reverse: HashTable::with_capacity(capacity),
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
            + self.by_forward.allocation_size()
            + self.by_reverse.allocation_size()
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

    /// The flow of the client's packets with `key`.
    #[inline]
    pub fn find_forward(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.by_forward
            .find(self.hash(key), |&i| {
                slots.get(i as usize).map(Flow::forward).as_ref() == Some(key)
            })
            .copied()
    }

    /// The flow of the target's replies with `key`.
    #[inline]
    pub fn find_reverse(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.by_reverse
            .find(self.hash(key), |&i| {
                slots.get(i as usize).map(Flow::reverse).as_ref() == Some(key)
            })
            .copied()
    }

    /// Stores `flow`; its keys must be free.
    pub fn insert(&mut self, flow: Flow) -> Result<u32, InsertError> {
        let (f, r) = (flow.forward(), flow.reverse());
        if self.find_forward(&f).is_some() || self.find_reverse(&r).is_some() {
            return Err(InsertError::Duplicate);
        }
        let (hf, hr) = (self.hash(&f), self.hash(&r));
        let i = self.free.pop().ok_or(InsertError::Full)?;
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return Err(InsertError::Full);
        };
        *slot = flow;
        let slots = &self.slots;
        let hasher = &self.hasher;
        // The tables were made for `capacity` entries: these never grow.
        self.by_forward.insert_unique(hf, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.forward()))
        });
        self.by_reverse.insert_unique(hr, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.reverse()))
        });
        self.by_origin[flow.origin as usize] += 1;
        Ok(i)
    }

    /// Removes flow `i`.
    pub fn remove(&mut self, i: u32) -> Option<Flow> {
        let flow = *self.get(i)?;
        let (hf, hr) = (self.hash(&flow.forward()), self.hash(&flow.reverse()));
        if let Ok(e) = self.by_forward.find_entry(hf, |&j| j == i) {
            e.remove();
        }
        if let Ok(e) = self.by_reverse.find_entry(hr, |&j| j == i) {
            e.remove();
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            *slot = Flow::FREE;
        }
        self.free.push(i);
        self.by_origin[flow.origin as usize] -= 1;
        Some(flow)
    }

    /// Changes the origin of flow `i` (a replica taken over, or handed back).
    pub fn set_origin(&mut self, i: u32, origin: Origin) {
        if let Some(f) = self.slots.get_mut(i as usize)
            && f.state != FlowState::Free
        {
            self.by_origin[f.origin as usize] -= 1;
            f.origin = origin;
            self.by_origin[origin as usize] += 1;
        }
    }

    /// Live flows from slot `start`, at most `n` slots looked at; `f`
    /// returns false to stop after this flow. Returns the next start and
    /// the slots looked at.
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
