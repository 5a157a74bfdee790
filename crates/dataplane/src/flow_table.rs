//! The compiled flow table: one entry per connection per ENI, shared by both
//! directions, holding the connection state, what to do with each direction
//! and the flow-log counters. Bounded and preallocated; hashed with the
//! per-process random seed; when full, closed and expired flows are swept out
//! first and what still does not fit is refused and counted.

use hashbrown::HashTable;
use openvpc_packet::FlowKey;

use crate::conntrack::Conn;
use crate::drop::DropReason;
use crate::flowlog::DirCounters;
use crate::policy::Way;

/// What to do with one direction of a flow, compiled by the slow path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// Not compiled yet (new direction, or invalidated by a policy change).
    Unknown,
    /// Drop, for this reason (a NACL deny, a blackhole route, …).
    Drop(DropReason),
    /// Encapsulate towards next hop number `n` of the router's next-hop table.
    Underlay(u32),
    /// Hand to another ENI on this host (by zone), through its ingress policy.
    SameHost(u16),
    /// Deliver to the entry's own ENI.
    Deliver,
}

/// One connection as seen by one ENI.
#[derive(Debug, Clone, Copy)]
pub struct FlowEntry {
    pub conn: Conn,
    /// Flow-log counters: `[egress, ingress]` relative to the ENI.
    pub counters: [DirCounters; 2],
    /// First packet of the current flow-log interval (ms); 0 when idle.
    pub log_start_ms: u64,
    /// The ENI's policy epoch this entry was compiled against.
    pub epoch: u32,
    pub egress: Hop,
    pub ingress: Hop,
    /// The direction of the packet that opened the connection.
    pub origin: Way,
    /// False for spec 3.2's untracked flows, re-judged on every rule change.
    pub tracked: bool,
    /// True if the normalised key's source is the ENI's end, so flow logs can
    /// give each direction its own orientation.
    pub local_is_src: bool,
}

impl FlowEntry {
    #[inline]
    pub fn hop(&self, way: Way) -> Hop {
        match way {
            Way::Egress => self.egress,
            Way::Ingress => self.ingress,
        }
    }

    #[inline]
    pub fn set_hop(&mut self, way: Way, hop: Hop) {
        match way {
            Way::Egress => self.egress = hop,
            Way::Ingress => self.ingress = hop,
        }
    }

    #[inline]
    pub fn counters_mut(&mut self, way: Way) -> &mut DirCounters {
        &mut self.counters[way_index(way)]
    }
}

/// Index of a direction in `FlowEntry::counters`.
pub fn way_index(way: Way) -> usize {
    match way {
        Way::Egress => 0,
        Way::Ingress => 1,
    }
}

/// Table-wide counters, visible to operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub inserted: u64,
    pub removed: u64,
    /// Entries swept out to make room (closed or expired).
    pub evicted: u64,
    /// New flows refused because every entry was live.
    pub refused_full: u64,
}

/// The bounded flow table. Keys carry the ENI in their zone and are
/// direction-normalised.
#[derive(Debug)]
pub struct FlowTable {
    table: HashTable<(FlowKey, FlowEntry)>,
    hasher: ahash::RandomState,
    capacity: usize,
    /// When a full table may next be swept: sweeping is O(n), so a table full
    /// of live flows must not be swept for every refused packet.
    next_sweep_ms: u64,
    pub stats: TableStats,
}

/// How long a full table waits between sweeps.
const SWEEP_INTERVAL_MS: u64 = 1000;

impl FlowTable {
    /// A table for up to `capacity` flows, allocated now.
    pub fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        FlowTable {
            table: HashTable::with_capacity(capacity),
            hasher,
            capacity,
            next_sweep_ms: 0,
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the table has allocated, for the memory-per-flow figure.
    pub fn allocation_size(&self) -> usize {
        self.table.allocation_size()
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    #[inline]
    pub fn get_mut(&mut self, hash: u64, key: &FlowKey) -> Option<&mut FlowEntry> {
        self.table.find_mut(hash, |(k, _)| k == key).map(|(_, e)| e)
    }

    pub fn get(&self, hash: u64, key: &FlowKey) -> Option<&FlowEntry> {
        self.table.find(hash, |(k, _)| k == key).map(|(_, e)| e)
    }

    pub fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<FlowEntry> {
        let found = self.table.find_entry(hash, |(k, _)| k == key).ok()?;
        self.stats.removed += 1;
        Some(found.remove().0.1)
    }

    /// Inserts a new entry. When the table is full, sweeps out entries for
    /// which `dead` holds (at most once per second, handing each to
    /// `evicted`); if that frees nothing, refuses and counts.
    pub fn insert(
        &mut self,
        hash: u64,
        key: FlowKey,
        entry: FlowEntry,
        now: u64,
        dead: impl FnMut(&FlowKey, &FlowEntry) -> bool,
        evicted: impl FnMut(FlowKey, FlowEntry),
    ) -> Option<&mut FlowEntry> {
        if self.table.len() >= self.capacity {
            if now >= self.next_sweep_ms {
                self.next_sweep_ms = now.saturating_add(SWEEP_INTERVAL_MS);
                let n = self.sweep(dead, evicted);
                self.stats.evicted += n as u64;
            }
            if self.table.len() >= self.capacity {
                self.stats.refused_full += 1;
                return None;
            }
        }
        self.stats.inserted += 1;
        let hasher = &self.hasher;
        let slot = self
            .table
            .insert_unique(hash, (key, entry), |(k, _)| hasher.hash_one(k));
        Some(&mut slot.into_mut().1)
    }

    /// Removes every entry for which `dead` holds, handing it to `removed`.
    pub fn sweep(
        &mut self,
        mut dead: impl FnMut(&FlowKey, &FlowEntry) -> bool,
        mut removed: impl FnMut(FlowKey, FlowEntry),
    ) -> usize {
        let mut n = 0;
        for (k, e) in self.table.extract_if(|(k, e)| dead(k, e)) {
            removed(k, e);
            n += 1;
        }
        self.stats.removed += n as u64;
        n
    }

    /// Every entry, for flow-log draining.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&FlowKey, &mut FlowEntry)> {
        self.table.iter_mut().map(|(k, e)| (&*k, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.table.iter().map(|(k, e)| (k, e))
    }
}
