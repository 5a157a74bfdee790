//! The agent's side of the mapping service: a pull-through cache the router
//! asks synchronously ([`Mapping`]). A miss answers `Pending` and queues the
//! key for a batch lookup; the worker ships the queue to whoever talks to the
//! server and feeds the answers back.
//!
//! What it must not do: forget a known owner because the server is away.
//! Found entries leave only by invalidation or a newer answer (fail static);
//! only "nobody owns this" answers and unanswered questions age out, so a
//! scan of empty addresses cannot hammer the server and a lost question is
//! asked again.

use core::net::IpAddr;
use hashbrown::HashMap;
use std::sync::Arc;

use openvpc_dataplane::mapping::{Lookup, Mapping, MappingEntry};
use openvpc_model::host::{MappingAnswer, MappingKey, MappingRecord};

/// How long "nobody owns this address" is believed.
pub const NEGATIVE_TTL_MS: u64 = 1_000;
/// How long a question may stay unanswered before it is asked again.
pub const RETRY_MS: u64 = 2_000;
/// Most entries (answers and open questions) the cache holds.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Found(MappingEntry),
    Absent { at: u64 },
    Asked { at: u64 },
}

/// Counters for the status query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MappingStats {
    pub hits: u64,
    pub misses: u64,
    pub negative_hits: u64,
    /// Lookups refused because the cache was full of live entries.
    pub full: u64,
    pub answers: u64,
    pub invalidations: u64,
}

/// A cache of (VNI, address) → owner, filled on demand.
#[derive(Debug)]
pub struct MappingCache {
    entries: HashMap<MappingKey, Entry>,
    wanted: Vec<MappingKey>,
    now: u64,
    capacity: usize,
    stats: MappingStats,
}

impl Default for MappingCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl MappingCache {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        MappingCache {
            entries: HashMap::new(),
            wanted: Vec::new(),
            now: 0,
            capacity,
            stats: MappingStats::default(),
        }
    }

    /// Sets the clock lookups are judged by ([`Mapping::lookup`] takes none).
    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    /// The keys asked for since the last call, each once.
    pub fn take_wanted(&mut self) -> Vec<MappingKey> {
        std::mem::take(&mut self.wanted)
    }

    /// True if keys wait to be asked.
    pub fn has_wanted(&self) -> bool {
        !self.wanted.is_empty()
    }

    /// Stores the server's answers. Returns true if an owner the router may
    /// have compiled into flows changed or went away: the caller must then
    /// tell the router (`Router::mappings_changed`).
    pub fn answer(&mut self, answers: &[MappingAnswer]) -> bool {
        let mut changed = false;
        for a in answers {
            self.stats.answers += 1;
            let new = match &a.record {
                Some(r) => match r.mac.parse() {
                    Ok(mac) => Entry::Found(MappingEntry {
                        underlay: r.underlay_ip,
                        eni: Arc::from(r.eni_id.as_str()),
                        mac,
                    }),
                    Err(e) => {
                        tracing::warn!(key = ?a.key, error = %e, "mapping answer with a bad MAC; treated as absent");
                        Entry::Absent { at: self.now }
                    }
                },
                None => Entry::Absent { at: self.now },
            };
            let old = self.entries.insert(a.key, new.clone());
            if let Some(Entry::Found(old)) = old
                && Entry::Found(old) != new
            {
                changed = true;
            }
        }
        changed
    }

    /// Drops keys the server says changed; they are asked again on next use.
    /// Returns true if a known owner was dropped (see [`Self::answer`]).
    pub fn invalidate(&mut self, keys: &[MappingKey]) -> bool {
        let mut changed = false;
        for k in keys {
            self.stats.invalidations += 1;
            if let Some(Entry::Found(_)) = self.entries.remove(k) {
                changed = true;
            }
        }
        changed
    }

    /// Forgets negative answers and unanswered questions that have aged out.
    pub fn sweep(&mut self, now: u64) {
        self.now = now;
        self.entries.retain(|_, e| match e {
            Entry::Found(_) => true,
            Entry::Absent { at } => now.saturating_sub(*at) < NEGATIVE_TTL_MS,
            Entry::Asked { at } => now.saturating_sub(*at) < RETRY_MS,
        });
    }

    /// Entries held: answers and open questions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The cache's counters.
    pub fn stats(&self) -> MappingStats {
        self.stats
    }

    /// Every known owner, as the server's answers (for a snapshot that a
    /// restarted agent can run on while the server is away).
    pub fn known(&self) -> Vec<MappingAnswer> {
        self.entries
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Found(m) => Some(MappingAnswer {
                    key: *k,
                    record: Some(MappingRecord {
                        underlay_ip: m.underlay,
                        eni_id: m.eni.to_string(),
                        mac: m.mac.to_string(),
                    }),
                }),
                _ => None,
            })
            .collect()
    }

    /// Every key with a known owner: what to ask again after a full state,
    /// which carries no invalidations. The owners stay in use meanwhile;
    /// answers that differ replace them (see [`Self::answer`]).
    pub fn known_keys(&self) -> Vec<MappingKey> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Found(_)))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The cached owner of a key, without asking anyone.
    pub fn get(&self, key: &MappingKey) -> Option<&MappingEntry> {
        match self.entries.get(key) {
            Some(Entry::Found(e)) => Some(e),
            _ => None,
        }
    }

    fn ask(&mut self, key: MappingKey) -> Lookup {
        if self.entries.len() >= self.capacity {
            self.sweep(self.now);
            if self.entries.len() >= self.capacity {
                self.stats.full += 1;
                return Lookup::Absent;
            }
        }
        self.stats.misses += 1;
        self.entries.insert(key, Entry::Asked { at: self.now });
        self.wanted.push(key);
        Lookup::Pending
    }
}

impl Mapping for MappingCache {
    fn lookup(&mut self, vni: u32, ip: IpAddr) -> Lookup {
        let key = MappingKey { vni, ip };
        let now = self.now;
        match self.entries.get(&key) {
            Some(Entry::Found(e)) => {
                self.stats.hits += 1;
                Lookup::Found(e.clone())
            }
            Some(Entry::Absent { at }) if now.saturating_sub(*at) < NEGATIVE_TTL_MS => {
                self.stats.negative_hits += 1;
                Lookup::Absent
            }
            Some(Entry::Asked { at }) if now.saturating_sub(*at) < RETRY_MS => Lookup::Pending,
            _ => self.ask(key),
        }
    }

    fn peek(&self, vni: u32, ip: IpAddr) -> Lookup {
        match self.entries.get(&MappingKey { vni, ip }) {
            Some(Entry::Found(e)) => Lookup::Found(e.clone()),
            Some(Entry::Absent { at }) if self.now.saturating_sub(*at) < NEGATIVE_TTL_MS => {
                Lookup::Absent
            }
            // Not known yet: a real packet would ask the server and wait.
            _ => Lookup::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openvpc_packet::MacAddr;

    fn key(ip: &str) -> MappingKey {
        MappingKey {
            vni: 7,
            ip: ip.parse().unwrap(),
        }
    }

    fn found(k: MappingKey, host: &str) -> MappingAnswer {
        MappingAnswer {
            key: k,
            record: Some(MappingRecord {
                underlay_ip: host.parse().unwrap(),
                eni_id: "eni-b".into(),
                mac: "02:00:00:00:00:0b".into(),
            }),
        }
    }

    #[test]
    fn miss_is_pending_once_then_found_after_the_answer() {
        let mut c = MappingCache::default();
        c.set_now(1000);
        let k = key("10.0.1.11");
        assert_eq!(c.lookup(7, k.ip), Lookup::Pending);
        assert_eq!(c.lookup(7, k.ip), Lookup::Pending);
        // Asked once, however often the router looked.
        assert_eq!(c.take_wanted(), vec![k]);
        assert!(c.take_wanted().is_empty());
        assert!(!c.answer(&[found(k, "192.0.2.2")]));
        match c.lookup(7, k.ip) {
            Lookup::Found(e) => {
                assert_eq!(e.underlay, "192.0.2.2".parse::<IpAddr>().unwrap());
                assert_eq!(e.mac, MacAddr([2, 0, 0, 0, 0, 0x0b]));
                assert_eq!(&*e.eni, "eni-b");
            }
            other => panic!("expected Found, got {other:?}"),
        }
        // Another VNI is another key.
        assert_eq!(c.lookup(8, k.ip), Lookup::Pending);
    }

    #[test]
    fn absent_answers_are_believed_briefly() {
        let mut c = MappingCache::default();
        c.set_now(1000);
        let k = key("10.0.1.99");
        assert_eq!(c.lookup(7, k.ip), Lookup::Pending);
        c.take_wanted();
        c.answer(&[MappingAnswer {
            key: k,
            record: None,
        }]);
        c.set_now(1500);
        assert_eq!(c.lookup(7, k.ip), Lookup::Absent);
        assert!(!c.has_wanted());
        c.set_now(1000 + NEGATIVE_TTL_MS);
        assert_eq!(c.lookup(7, k.ip), Lookup::Pending);
        assert_eq!(c.take_wanted(), vec![k]);
    }

    #[test]
    fn invalidation_drops_the_key_and_reports_a_change() {
        let mut c = MappingCache::default();
        let k = key("10.0.1.11");
        c.answer(&[found(k, "192.0.2.2")]);
        assert!(matches!(c.lookup(7, k.ip), Lookup::Found(_)));
        assert!(c.invalidate(&[k]));
        assert!(!c.invalidate(&[k]));
        assert_eq!(c.lookup(7, k.ip), Lookup::Pending);
        assert_eq!(c.take_wanted(), vec![k]);
        // A moved owner is a change the router must hear about.
        c.answer(&[found(k, "192.0.2.2")]);
        assert!(!c.answer(&[found(k, "192.0.2.2")]));
        assert!(c.answer(&[found(k, "192.0.2.3")]));
    }

    // DESIGN.md "Mapping service": agents keep serving from cache when the server is away.
    #[test]
    fn fail_static_known_owners_never_age_out() {
        let mut c = MappingCache::default();
        let k = key("10.0.1.11");
        c.set_now(1000);
        c.answer(&[found(k, "192.0.2.2")]);
        // An hour with no server: sweeps and lookups keep the owner.
        for t in (1000..3_600_000).step_by(60_000) {
            c.sweep(t);
        }
        c.set_now(3_600_000);
        assert!(matches!(c.lookup(7, k.ip), Lookup::Found(_)));
        // A question nobody answered is asked again after RETRY_MS, not forgotten.
        let q = key("10.0.1.12");
        assert_eq!(c.lookup(7, q.ip), Lookup::Pending);
        assert_eq!(c.take_wanted(), vec![q]);
        c.set_now(3_600_000 + RETRY_MS - 1);
        assert_eq!(c.lookup(7, q.ip), Lookup::Pending);
        assert!(!c.has_wanted());
        c.set_now(3_600_000 + RETRY_MS);
        assert_eq!(c.lookup(7, q.ip), Lookup::Pending);
        assert_eq!(c.take_wanted(), vec![q]);
    }

    #[test]
    fn known_owners_round_trip_and_clear() {
        let mut c = MappingCache::default();
        let (k, q) = (key("10.0.1.11"), key("10.0.1.12"));
        c.answer(&[
            found(k, "192.0.2.2"),
            MappingAnswer {
                key: q,
                record: None,
            },
        ]);
        let known = c.known();
        assert_eq!(known, vec![found(k, "192.0.2.2")]);
        let mut restored = MappingCache::default();
        assert!(!restored.answer(&known));
        assert!(matches!(restored.lookup(7, k.ip), Lookup::Found(_)));
        // After a full state the known owners are asked again, not dropped.
        assert_eq!(restored.known_keys(), vec![k]);
    }

    #[test]
    fn a_full_cache_refuses_new_keys_but_keeps_known_ones() {
        let mut c = MappingCache::new(2);
        c.set_now(1000);
        let (a, b) = (key("10.0.1.1"), key("10.0.1.2"));
        c.answer(&[found(a, "192.0.2.2"), found(b, "192.0.2.2")]);
        assert_eq!(c.lookup(7, "10.0.1.3".parse().unwrap()), Lookup::Absent);
        assert_eq!(c.stats().full, 1);
        assert!(matches!(c.lookup(7, a.ip), Lookup::Found(_)));
    }
}
