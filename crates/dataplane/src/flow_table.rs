//! The compiled flow table: one entry per connection per ENI, holding the
//! connection state, what to do with each direction (a hop, or a header
//! transform and then a hop) and the flow-log counters. Bounded and
//! preallocated; hashed with the per-process random seed; when full, closed
//! and expired flows are swept out first and what still does not fit is
//! refused and counted.
//!
//! Each direction has its own key. Untranslated, the two directions' keys
//! are each other's reverse and share the entry's direction-normalised key,
//! so the common flow costs one slot (and the fast path one lookup). A
//! translated flow's reply carries the translated tuple: its key gets a slot
//! of its own, an alias naming the transform whose owner is the entry
//! (`crate::transform`). An alias lives and dies with its entry.
//!
//! Hand-written rather than a `hashbrown` map because the fast path needs two
//! things a general map does not give: a slot array sized exactly for its
//! capacity (a power-of-two table for 1M flows allocates 2M slots, doubling
//! the memory per flow), and the slot's address from the hash alone, so a
//! batch of packets can prefetch all its slots before touching any (DESIGN.md,
//! "Where the limit is"). It is open addressing with linear probing and
//! backward-shift deletion, so there are no tombstones to age.

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
    /// Apply transform `n` of the router's transform table (a rewrite, then
    /// that transform's hop). The handle belongs to the entry.
    Transform(u32),
}

/// Largest next-hop number a packed hop can hold.
pub const MAX_HOP_INDEX: u32 = (1 << 29) - 1;

impl Hop {
    /// Three tag bits over a 29-bit payload: a hop costs 4 bytes per direction.
    fn pack(self) -> u32 {
        match self {
            Hop::Unknown => 0,
            Hop::Drop(r) => (1 << 29) | u32::from(r as u8),
            Hop::Underlay(n) => (2 << 29) | (n & MAX_HOP_INDEX),
            Hop::SameHost(z) => (3 << 29) | u32::from(z),
            Hop::Deliver => 4 << 29,
            Hop::Transform(n) => (5 << 29) | (n & MAX_HOP_INDEX),
        }
    }

    fn unpack(v: u32) -> Hop {
        let payload = v & MAX_HOP_INDEX;
        match v >> 29 {
            1 => DropReason::ALL
                .get(payload as usize)
                .map_or(Hop::Unknown, |r| Hop::Drop(*r)),
            2 => Hop::Underlay(payload),
            3 => Hop::SameHost(payload as u16),
            4 => Hop::Deliver,
            5 => Hop::Transform(payload),
            _ => Hop::Unknown,
        }
    }
}

const ORIGIN_INGRESS: u8 = 1;
const TRACKED: u8 = 2;
const LOCAL_IS_SRC: u8 = 4;
/// The slot holds no connection: it is the reply key of a translated flow,
/// and its egress field names the transform whose owner is the entry.
const ALIAS: u8 = 8;

/// One connection as seen by one ENI: 56 bytes.
#[derive(Debug, Clone, Copy)]
pub struct FlowEntry {
    pub conn: Conn,
    /// Flow-log bytes and packets, `[egress, ingress]` relative to the ENI.
    /// 32 bits each: a counter about to wrap is flushed as a record first.
    bytes: [u32; 2],
    packets: [u32; 2],
    /// The ENI's policy epoch this entry was compiled against.
    pub epoch: u32,
    egress: u32,
    ingress: u32,
    /// First packet of the current flow-log interval, in seconds + 1; 0 when idle.
    log_start: u32,
    tcp_flags: [u8; 2],
    bits: u8,
}

impl FlowEntry {
    /// A new entry for a connection opened by a packet going `origin`.
    pub fn new(conn: Conn, epoch: u32, origin: Way, tracked: bool, local_is_src: bool) -> Self {
        let mut bits = 0;
        if origin == Way::Ingress {
            bits |= ORIGIN_INGRESS;
        }
        if tracked {
            bits |= TRACKED;
        }
        if local_is_src {
            bits |= LOCAL_IS_SRC;
        }
        FlowEntry {
            conn,
            bytes: [0; 2],
            packets: [0; 2],
            epoch,
            egress: 0,
            ingress: 0,
            log_start: 0,
            tcp_flags: [0; 2],
            bits,
        }
    }

    /// The slot of a translated flow's reply key: it names transform
    /// `handle`, whose owner is the flow's entry.
    pub fn alias(handle: u32) -> Self {
        let mut e = FlowEntry::new(Conn::default(), 0, Way::Egress, true, false);
        e.bits |= ALIAS;
        e.egress = handle;
        e
    }

    /// The transform handle this slot aliases, if it is an alias.
    #[inline]
    pub fn alias_of(&self) -> Option<u32> {
        (self.bits & ALIAS != 0).then_some(self.egress)
    }

    /// The transform handles the entry owns, to give back when it goes.
    pub fn transforms(&self) -> impl Iterator<Item = u32> {
        let owned = self.bits & ALIAS == 0;
        [self.hop(Way::Egress), self.hop(Way::Ingress)]
            .into_iter()
            .filter_map(move |h| match h {
                Hop::Transform(n) if owned => Some(n),
                _ => None,
            })
    }

    /// The direction of the packet that opened the connection.
    pub fn origin(&self) -> Way {
        if self.bits & ORIGIN_INGRESS != 0 {
            Way::Ingress
        } else {
            Way::Egress
        }
    }

    /// False for spec 3.2's untracked flows, re-judged on every rule change.
    pub fn tracked(&self) -> bool {
        self.bits & TRACKED != 0
    }

    /// True if the normalised key's source is the ENI's end, so flow logs
    /// can give each direction its own orientation.
    pub fn local_is_src(&self) -> bool {
        self.bits & LOCAL_IS_SRC != 0
    }

    #[inline]
    pub fn hop(&self, way: Way) -> Hop {
        Hop::unpack(match way {
            Way::Egress => self.egress,
            Way::Ingress => self.ingress,
        })
    }

    #[inline]
    pub fn set_hop(&mut self, way: Way, hop: Hop) {
        match way {
            Way::Egress => self.egress = hop.pack(),
            Way::Ingress => self.ingress = hop.pack(),
        }
    }

    /// Brings an entry compiled against an older policy epoch up to
    /// `epoch`: both hops are forgotten and compiled again.
    ///
    /// A translated direction keeps its transform (a connection keeps its
    /// translation across a policy change); the router recompiles the
    /// transform's own hop.
    pub fn refresh(&mut self, epoch: u32) {
        if self.epoch != epoch {
            self.epoch = epoch;
            for way in [Way::Egress, Way::Ingress] {
                if !matches!(self.hop(way), Hop::Transform(_)) {
                    self.set_hop(way, Hop::Unknown);
                }
            }
        }
    }

    /// Counts one packet. Returns false, counting nothing, if a counter would
    /// wrap: the caller flushes the counters as a record and counts again.
    #[inline]
    pub fn count(&mut self, way: Way, bytes: usize, tcp_flags: u8, now_ms: u64) -> bool {
        let i = way_index(way);
        let total = u64::from(self.bytes[i]) + bytes as u64;
        // One test on the fast path: the byte counter wraps long before
        // the packet counter can (every IP packet has 20 bytes or more),
        // so only it is checked and the packet count saturates.
        if total > u64::from(u32::MAX) {
            return false;
        }
        if self.log_start == 0 {
            self.log_start = (now_ms / 1000) as u32 + 1;
        }
        self.bytes[i] = total as u32;
        self.packets[i] = self.packets[i].saturating_add(1);
        self.tcp_flags[i] |= crate::flowlog::logged_flags(tcp_flags);
        true
    }

    /// The flow-log counters of one direction.
    pub fn counters(&self, way: Way) -> DirCounters {
        let i = way_index(way);
        DirCounters {
            bytes: u64::from(self.bytes[i]),
            packets: self.packets[i],
            tcp_flags: self.tcp_flags[i],
        }
    }

    /// Start of the current flow-log interval in ms, or `None` when idle.
    pub fn log_start_ms(&self) -> Option<u64> {
        (self.log_start != 0).then(|| u64::from(self.log_start - 1) * 1000)
    }

    /// Starts a new flow-log interval.
    pub fn reset_counters(&mut self) {
        self.bytes = [0; 2];
        self.packets = [0; 2];
        self.tcp_flags = [0; 2];
        self.log_start = 0;
    }
}

/// Index of a direction in the per-direction counters.
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

/// A slot: the key (family 0 marks it empty) and the entry.
type Slot = (FlowKey, FlowEntry);

/// The bounded flow table. Keys carry the ENI in their zone and are
/// direction-normalised.
#[derive(Debug)]
pub struct FlowTable {
    slots: Vec<Slot>,
    hasher: ahash::RandomState,
    capacity: usize,
    len: usize,
    /// When a full table may next be swept: even a bounded sweep step costs
    /// tens of microseconds, so a table full of live flows must not be
    /// swept for every refused packet.
    next_sweep_ms: u64,
    /// Where the next incremental sweep step starts.
    cursor: usize,
    pub stats: TableStats,
}

/// How long a full table waits between sweep steps.
const SWEEP_INTERVAL_MS: u64 = 10;

/// Slots a full table's insert examines per sweep step: bounded, so a
/// new flow never pays for a scan of the whole table.
const FULL_SWEEP_BUDGET: usize = 16_384;

/// Slots per flow of capacity: linear probing stays short below 80 % load.
const SLOTS_PER_FLOW: f64 = 1.25;

fn empty_slot() -> Slot {
    let key = FlowKey::v4(
        core::net::Ipv4Addr::UNSPECIFIED,
        core::net::Ipv4Addr::UNSPECIFIED,
        0,
        0,
        0,
    );
    let entry = FlowEntry::new(Conn::default(), 0, Way::Egress, false, false);
    (FlowKey { family: 0, ..key }, entry)
}

/// Asks the kernel to back a large, still untouched allocation with huge
/// pages. A big table is probed at random, so with 4 KiB pages nearly every
/// lookup also misses the TLB; 2 MiB pages remove most of those misses.
/// Only advice: where the kernel declines, nothing changes. Measured here
/// (THP in `madvise` mode), khugepaged collapses the table within seconds
/// rather than at first touch, and the 1M-flow fast path gains about 6 %.
fn advise_huge_pages(slots: &mut Vec<Slot>) {
    const HUGE: usize = 2 << 20;
    let bytes = slots.capacity() * core::mem::size_of::<Slot>();
    if bytes < 2 * HUGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let start = slots.as_mut_ptr() as usize;
        // madvise wants page-aligned ranges: advise the 2 MiB-aligned middle.
        let first = start.next_multiple_of(HUGE);
        let end = (start + bytes) / HUGE * HUGE;
        if end > first {
            // SAFETY: the range lies inside this Vec's own allocation, and
            // MADV_HUGEPAGE changes only how the kernel backs it, not its
            // contents or validity.
            unsafe {
                libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
            }
        }
    }
}

impl FlowTable {
    /// A table for up to `capacity` flows, allocated now.
    pub fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        let n = ((capacity as f64 * SLOTS_PER_FLOW) as usize).max(capacity + 1);
        let mut slots = Vec::with_capacity(n);
        advise_huge_pages(&mut slots);
        slots.resize(n, empty_slot());
        FlowTable {
            slots,
            hasher,
            capacity,
            len: 0,
            next_sweep_ms: 0,
            cursor: 0,
            stats: TableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes the table has allocated, for the memory-per-flow figure.
    pub fn allocation_size(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Slot>()
    }

    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot a hash starts probing at (multiply-shift: no power-of-two size).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        ((u128::from(hash) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// Asks the CPU to start loading the slot of `hash`, so a batch of
    /// lookups overlaps its cache misses instead of paying them in turn.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(slot) = self.slots.get(self.home(hash)) {
            let p = (slot as *const Slot).cast::<i8>();
            // SAFETY: prefetch is a hint that never faults, and SSE is part
            // of the x86_64 baseline, so the target feature is always there.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p);
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                    p.wrapping_add(64),
                );
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = hash;
    }

    /// The slot holding `key`, if any.
    #[inline]
    fn find(&self, hash: u64, key: &FlowKey) -> Option<usize> {
        let mut i = self.home(hash);
        loop {
            let (k, _) = self.slots.get(i)?;
            if k.family == 0 {
                return None;
            }
            if k == key {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    #[inline]
    pub fn get_mut(&mut self, hash: u64, key: &FlowKey) -> Option<&mut FlowEntry> {
        let i = self.find(hash, key)?;
        self.slots.get_mut(i).map(|(_, e)| e)
    }

    #[inline]
    pub fn get(&self, hash: u64, key: &FlowKey) -> Option<&FlowEntry> {
        let i = self.find(hash, key)?;
        self.slots.get(i).map(|(_, e)| e)
    }

    pub fn remove(&mut self, hash: u64, key: &FlowKey) -> Option<FlowEntry> {
        let i = self.find(hash, key)?;
        Some(self.remove_at(i).1)
    }

    /// Empties slot `i` and shifts later members of its probe run back, so
    /// no lookup ever stops early at the hole.
    fn remove_at(&mut self, i: usize) -> Slot {
        let removed = self.slots[i];
        let mut hole = i;
        let mut j = i;
        loop {
            j = self.next(j);
            let (k, _) = self.slots[j];
            if k.family == 0 {
                break;
            }
            let home = self.home(self.hash(&k));
            // The entry at j may fill the hole unless its home lies
            // cyclically in (hole, j]: then it would be probed past.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = self.slots[j];
                hole = j;
            }
        }
        self.slots[hole].0.family = 0;
        self.len -= 1;
        self.stats.removed += 1;
        removed
    }

    /// Inserts a new entry (the key must not be present). When the table is
    /// full, sweeps out entries for which `dead` holds (at most once per
    /// second, handing each to `evicted`); if that frees nothing, refuses
    /// and counts.
    pub fn insert(
        &mut self,
        hash: u64,
        key: FlowKey,
        entry: FlowEntry,
        now: u64,
        dead: impl FnMut(&FlowKey, &FlowEntry) -> bool,
        evicted: impl FnMut(FlowKey, FlowEntry),
    ) -> Option<&mut FlowEntry> {
        if self.len >= self.capacity {
            if now >= self.next_sweep_ms {
                self.next_sweep_ms = now.saturating_add(SWEEP_INTERVAL_MS);
                let mut dead = dead;
                let n = self.sweep_step(FULL_SWEEP_BUDGET, |k, e| dead(k, e), evicted);
                self.stats.evicted += n as u64;
            }
            if self.len >= self.capacity {
                self.stats.refused_full += 1;
                return None;
            }
        }
        // There is always an empty slot: there are more slots than capacity.
        let mut i = self.home(hash);
        while self.slots[i].0.family != 0 {
            i = self.next(i);
        }
        self.slots[i] = (key, entry);
        self.len += 1;
        self.stats.inserted += 1;
        Some(&mut self.slots[i].1)
    }

    /// Removes every entry for which `dead` holds, handing it to `removed`.
    pub fn sweep(
        &mut self,
        mut dead: impl FnMut(&FlowKey, &FlowEntry) -> bool,
        mut removed: impl FnMut(FlowKey, FlowEntry),
    ) -> usize {
        // Keys first, removals after: a backward shift during the scan could
        // move an unvisited entry behind the cursor.
        let doomed: Vec<FlowKey> = self
            .slots
            .iter()
            .filter(|(k, e)| k.family != 0 && dead(k, e))
            .map(|(k, _)| *k)
            .collect();
        for key in &doomed {
            let hash = self.hash(key);
            if let Some(i) = self.find(hash, key) {
                let (k, e) = self.remove_at(i);
                removed(k, e);
            }
        }
        doomed.len()
    }

    /// Slots in the table (more than its capacity): a full incremental
    /// sweep visits this many.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// One step of an incremental sweep: moves past up to `budget` slots from
    /// where the last step stopped, wrapping around. `visit` sees every
    /// entry passed (and may update it, e.g. harvest counters) and says
    /// whether it is dead; dead entries are removed and handed to
    /// `removed`. Returns how many were removed.
    ///
    /// The cost is bounded by `budget`, not by the table size, so callers
    /// spread a full pass over many small steps. An entry shifted back over
    /// the cursor by a removal near the wrap may be passed once and seen
    /// again on the next pass: it is only expired a pass later.
    pub fn sweep_step(
        &mut self,
        budget: usize,
        mut visit: impl FnMut(&FlowKey, &mut FlowEntry) -> bool,
        mut removed: impl FnMut(FlowKey, FlowEntry),
    ) -> usize {
        let mut i = self.cursor.min(self.slots.len().saturating_sub(1));
        let mut gone = 0;
        let mut examined = 0;
        // Each removal shrinks the table, so re-examining a slot after one
        // (not counted against the budget) still ends.
        while examined < budget.min(self.slots.len()) {
            let (k, e) = &mut self.slots[i];
            if k.family != 0 && visit(k, e) {
                let (k, e) = self.remove_at(i);
                removed(k, e);
                gone += 1;
                // Slot i now holds an entry shifted back, or nothing: look
                // at it again.
                continue;
            }
            i = self.next(i);
            examined += 1;
        }
        self.cursor = i;
        gone
    }

    /// Every entry, for flow-log draining.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&FlowKey, &mut FlowEntry)> {
        self.slots
            .iter_mut()
            .filter(|(k, _)| k.family != 0)
            .map(|(k, e)| (&*k, e))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &FlowEntry)> {
        self.slots
            .iter()
            .filter(|(k, _)| k.family != 0)
            .map(|(k, e)| (k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u32) -> FlowKey {
        FlowKey::v4(Ipv4Addr::from_bits(n), Ipv4Addr::new(10, 0, 0, 1), 6, 1, 2)
    }

    fn entry(epoch: u32) -> FlowEntry {
        let conn = Conn::new(crate::conntrack::Protocol::Udp, 0, 0).unwrap();
        FlowEntry::new(conn, epoch, Way::Egress, true, true)
    }

    #[test]
    fn entry_and_slot_sizes() {
        assert_eq!(core::mem::size_of::<FlowEntry>(), 56);
        assert_eq!(core::mem::size_of::<Slot>(), 96);
    }

    #[test]
    fn hops_pack_and_unpack() {
        for hop in [
            Hop::Unknown,
            Hop::Drop(DropReason::NaclDeny),
            Hop::Underlay(MAX_HOP_INDEX),
            Hop::SameHost(65535),
            Hop::Deliver,
        ] {
            let mut e = entry(0);
            e.set_hop(Way::Ingress, hop);
            assert_eq!(e.hop(Way::Ingress), hop);
            assert_eq!(e.hop(Way::Egress), Hop::Unknown);
        }
    }

    #[test]
    fn counters_refuse_to_wrap() {
        let mut e = entry(0);
        assert!(e.count(Way::Egress, u32::MAX as usize, 0x02, 5_000));
        assert!(!e.count(Way::Egress, 1, 0, 5_000), "would wrap");
        assert!(e.count(Way::Ingress, 1, 0x10, 5_000));
        assert_eq!(e.counters(Way::Egress).packets, 1);
        assert_eq!(e.log_start_ms(), Some(5_000));
        e.reset_counters();
        assert_eq!(e.log_start_ms(), None);
    }

    // Steps of a bounded budget, repeated for two passes, remove every dead
    // entry and keep every live one.
    #[test]
    fn incremental_sweep_covers_the_table_in_bounded_steps() {
        let mut t = FlowTable::new(1000, ahash::RandomState::with_seeds(1, 2, 3, 4));
        for n in 0..1000 {
            let k = key(n);
            t.insert(t.hash(&k), k, entry(n), 0, |_, _| false, |_, _| {});
        }
        let mut gone = 0;
        for _ in 0..(2 * t.slot_count()).div_ceil(64) {
            let mut visited = 0;
            let n = t.sweep_step(
                64,
                |_, e| {
                    visited += 1;
                    e.epoch % 3 == 0
                },
                |_, _| {},
            );
            assert!(visited <= 64 + n);
            gone += n;
        }
        assert_eq!(gone, (0..1000).filter(|n| n % 3 == 0).count());
        assert_eq!(t.len(), 1000 - gone);
        assert!(t.iter().all(|(_, e)| e.epoch % 3 != 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Sweep(u32),
        Step(u32, usize),
    }

    proptest! {
        /// The table behaves as a map: inserts, removals (with backward
        /// shifts) and sweeps leave exactly what a HashMap would hold.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec(
            prop_oneof![
                (0u32..40).prop_map(Op::Insert),
                (0u32..40).prop_map(Op::Remove),
                (2u32..5).prop_map(Op::Sweep),
                (2u32..5, 1usize..20).prop_map(|(m, b)| Op::Step(m, b)),
            ], 0..200), capacity in 1usize..40)
        {
            // A weak hash so keys collide and probe runs wrap around.
            let mut t = FlowTable::new(capacity, ahash::RandomState::with_seeds(1, 2, 3, 4));
            let mut model: HashMap<u32, u32> = HashMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Insert(n) => {
                        let k = key(n);
                        let h = t.hash(&k);
                        if t.get(h, &k).is_none() {
                            let full = model.len() >= capacity;
                            let r = t.insert(h, k, entry(step as u32), 0, |_, _| false, |_, _| {});
                            prop_assert_eq!(r.is_none(), full);
                            if !full {
                                model.insert(n, step as u32);
                            }
                        }
                    }
                    Op::Remove(n) => {
                        let k = key(n);
                        let h = t.hash(&k);
                        prop_assert_eq!(t.remove(h, &k).map(|e| e.epoch), model.remove(&n));
                    }
                    Op::Sweep(m) => {
                        let mut gone = Vec::new();
                        t.sweep(|_, e| e.epoch % m == 0, |_, e| gone.push(e.epoch));
                        let before = model.len();
                        model.retain(|_, v| *v % m != 0);
                        prop_assert_eq!(gone.len(), before - model.len());
                    }
                    Op::Step(m, budget) => {
                        let mut seen = 0;
                        let mut gone = Vec::new();
                        let n = t.sweep_step(
                            budget,
                            |_, e| {
                                seen += 1;
                                e.epoch % m == 0
                            },
                            |k, e| gone.push((k, e.epoch)),
                        );
                        prop_assert_eq!(n, gone.len());
                        prop_assert!(seen <= budget + n);
                        for (k, epoch) in gone {
                            prop_assert_eq!(epoch % m, 0);
                            let found = model.iter().find(|(n, _)| key(**n) == k).map(|(n, _)| *n);
                            prop_assert!(found.is_some());
                            if let Some(n) = found {
                                model.remove(&n);
                            }
                        }
                    }
                }
                prop_assert_eq!(t.len(), model.len());
                for (n, epoch) in &model {
                    let k = key(*n);
                    prop_assert_eq!(t.get(t.hash(&k), &k).map(|e| e.epoch), Some(*epoch));
                }
            }
            prop_assert_eq!(t.iter().count(), model.len());
        }
    }
}
