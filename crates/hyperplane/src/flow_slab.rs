//! The bounded flow table both hyperplane cores keep, the NAT's and the
//! load balancer's: every flow once, in a slab preallocated to its bound,
//! found both ways through two hash tables of slab indices: the tuple of
//! the packets that opened the flow, and the tuple its replies carry. The
//! indices are 4 bytes, the hash seed is random per process, and nothing
//! allocates after [`FlowSlab::new`] (DESIGN.md, "Tables"). What a flow
//! is, what its two keys are, and what a core keeps beside it (the NAT's
//! ports per destination) are the core's.

use core::hash::Hash;

use hashbrown::HashTable;

/// Whose flow this is on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Origin {
    /// Decided here (a NAT flow's port comes from this node's slice).
    Local = 0,
    /// The buddy's, held in case it dies; not served here.
    Replica = 1,
    /// The dead buddy's, served here since the core took its place over.
    TakenOver = 2,
}

/// What the slab needs of a flow.
pub trait SlabFlow: Copy {
    type Key: Hash + Eq + Copy;
    /// An empty slot.
    const FREE: Self;
    fn is_free(&self) -> bool;
    fn origin(&self) -> Origin;
    fn set_origin(&mut self, origin: Origin);
    /// The key of the packets that opened the flow.
    fn first(&self) -> Self::Key;
    /// The key its replies carry.
    fn second(&self) -> Self::Key;
}

/// Why a flow could not be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    Full,
    /// One of its keys is already held by another flow.
    Duplicate,
}

/// The slab and its two indices.
#[derive(Debug)]
pub struct FlowSlab<F> {
    slots: Vec<F>,
    free: Vec<u32>,
    by_first: HashTable<u32>,
    by_second: HashTable<u32>,
    hasher: ahash::RandomState,
    /// Live flows by [`Origin`].
    by_origin: [u32; 3],
}

impl<F: SlabFlow> FlowSlab<F> {
    /// A table for at most `capacity` flows, all of it allocated now.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        FlowSlab {
            slots: vec![F::FREE; capacity],
            free: (0..capacity as u32).rev().collect(),
            by_first: HashTable::with_capacity(capacity),
            by_second: HashTable::with_capacity(capacity),
            hasher: ahash::RandomState::new(),
            by_origin: [0; 3],
        }
    }

    #[inline]
    pub fn hash<K: Hash>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The seed the indices hash with, for tables a core keeps beside.
    pub fn hasher(&self) -> &ahash::RandomState {
        &self.hasher
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

    /// Bytes the slab and its indices hold, all preallocated.
    pub fn memory(&self) -> usize {
        self.slots.capacity() * size_of::<F>()
            + self.free.capacity() * size_of::<u32>()
            + self.by_first.allocation_size()
            + self.by_second.allocation_size()
    }

    #[inline]
    pub fn get(&self, i: u32) -> Option<&F> {
        self.slots.get(i as usize).filter(|f| !f.is_free())
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> Option<&mut F> {
        self.slots.get_mut(i as usize).filter(|f| !f.is_free())
    }

    /// The flow whose opening packets have `key` (hashed as `hash`).
    #[inline]
    pub fn find_first(&self, key: &F::Key, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.by_first
            .find(hash, |&i| {
                slots.get(i as usize).map(F::first).as_ref() == Some(key)
            })
            .copied()
    }

    /// The flow whose replies have `key` (hashed as `hash`).
    #[inline]
    pub fn find_second(&self, key: &F::Key, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.by_second
            .find(hash, |&i| {
                slots.get(i as usize).map(F::second).as_ref() == Some(key)
            })
            .copied()
    }

    /// Stores `flow`; its keys must be free.
    pub fn insert(&mut self, flow: F) -> Result<u32, InsertError> {
        let (a, b) = (flow.first(), flow.second());
        let (ha, hb) = (self.hash(&a), self.hash(&b));
        if self.find_first(&a, ha).is_some() || self.find_second(&b, hb).is_some() {
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
        self.by_first.insert_unique(ha, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.first()))
        });
        self.by_second.insert_unique(hb, i, |&j| {
            slots
                .get(j as usize)
                .map_or(0, |f| hasher.hash_one(f.second()))
        });
        self.by_origin[flow.origin() as usize] += 1;
        Ok(i)
    }

    /// Removes flow `i`.
    pub fn remove(&mut self, i: u32) -> Option<F> {
        let flow = *self.get(i)?;
        let (ha, hb) = (self.hash(&flow.first()), self.hash(&flow.second()));
        if let Ok(e) = self.by_first.find_entry(ha, |&j| j == i) {
            e.remove();
        }
        if let Ok(e) = self.by_second.find_entry(hb, |&j| j == i) {
            e.remove();
        }
        if let Some(slot) = self.slots.get_mut(i as usize) {
            *slot = F::FREE;
        }
        self.free.push(i);
        self.by_origin[flow.origin() as usize] -= 1;
        Some(flow)
    }

    /// Changes the origin of flow `i` (a replica taken over, or handed back).
    pub fn set_origin(&mut self, i: u32, origin: Origin) {
        if let Some(f) = self.slots.get_mut(i as usize)
            && !f.is_free()
        {
            self.by_origin[f.origin() as usize] -= 1;
            f.set_origin(origin);
            self.by_origin[origin as usize] += 1;
        }
    }

    /// Moves every flow of origin `from` that `pick` chooses to origin
    /// `to`, and lets `touch` update it (a takeover refreshes its idle
    /// time): a dead buddy's replicas taken over, or handed back.
    pub fn retag(
        &mut self,
        from: Origin,
        to: Origin,
        pick: impl Fn(&F) -> bool,
        mut touch: impl FnMut(&mut F),
    ) {
        let chosen: Vec<u32> = self
            .iter()
            .filter(|(_, f)| f.origin() == from && pick(f))
            .map(|(i, _)| i)
            .collect();
        for i in chosen {
            self.set_origin(i, to);
            if let Some(f) = self.get_mut(i) {
                touch(f);
            }
        }
    }

    /// Live flows from slot `start`, at most `n` slots looked at, for a
    /// sweep; `f` returns false to stop after this flow. Returns the next
    /// start and the slots looked at.
    pub fn scan(&self, start: u32, n: usize, mut f: impl FnMut(u32, &F) -> bool) -> (u32, usize) {
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
    pub fn iter(&self) -> impl Iterator<Item = (u32, &F)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_free())
            .map(|(i, f)| (i as u32, f))
    }
}
