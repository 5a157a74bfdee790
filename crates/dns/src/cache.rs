//! A small, bounded cache of upstream answers keyed by (name, type, class),
//! so that names asked often are answered without going upstream. Entries
//! live for the smallest TTL of their records (capped), and their TTLs count
//! down as they age. Time is an argument, in milliseconds.

use std::collections::HashMap;

use hickory_proto::rr::{DNSClass, Name, Record, RecordType};

/// The longest an answer is kept, whatever its TTL says (one day, as common
/// resolvers cap it), so a bad TTL cannot pin an entry.
pub const MAX_CACHE_TTL_S: u32 = 86_400;

/// A cached answer: its records and the times it was stored and expires.
#[derive(Debug, Clone)]
struct Entry {
    answers: Vec<Record>,
    stored_ms: u64,
    expires_ms: u64,
}

/// A bounded cache of positive upstream answers. `Name`'s equality and hash
/// ignore ASCII case, so `Example.COM` and `example.com` share an entry.
#[derive(Debug, Clone)]
pub struct AnswerCache {
    entries: HashMap<(Name, RecordType, DNSClass), Entry>,
    capacity: usize,
}

impl AnswerCache {
    /// An empty cache holding at most `capacity` answers.
    pub fn new(capacity: usize) -> Self {
        AnswerCache {
            entries: HashMap::with_capacity(capacity.min(4096)),
            capacity,
        }
    }

    /// How many answers are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stores `answers` for the question at `now_ms`. Nothing is stored for
    /// an empty answer or a zero TTL. When full, expired entries are swept
    /// first; if none were, one entry is evicted to make room.
    pub fn insert(&mut self, key: (Name, RecordType, DNSClass), answers: Vec<Record>, now_ms: u64) {
        let Some(ttl) = answers.iter().map(|r| r.ttl).min() else {
            return;
        };
        let ttl = ttl.min(MAX_CACHE_TTL_S);
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, e| e.expires_ms > now_ms);
            if self.entries.len() >= self.capacity {
                // Any victim will do: the cache only saves upstream trips.
                if let Some(victim) = self.entries.keys().next().cloned() {
                    self.entries.remove(&victim);
                }
            }
        }
        self.entries.insert(
            key,
            Entry {
                answers,
                stored_ms: now_ms,
                expires_ms: now_ms + u64::from(ttl) * 1000,
            },
        );
    }

    /// The answer for the question at `now_ms`, with each TTL lowered by the
    /// whole seconds the entry has aged; `None` when absent or expired (an
    /// expired entry is removed).
    pub fn get(
        &mut self,
        name: &Name,
        rtype: RecordType,
        class: DNSClass,
        now_ms: u64,
    ) -> Option<Vec<Record>> {
        let key = (name.clone(), rtype, class);
        let entry = self.entries.get(&key)?;
        if entry.expires_ms <= now_ms {
            self.entries.remove(&key);
            return None;
        }
        let aged_s =
            u32::try_from(now_ms.saturating_sub(entry.stored_ms) / 1000).unwrap_or(u32::MAX);
        let mut answers = entry.answers.clone();
        for r in &mut answers {
            r.ttl = r.ttl.saturating_sub(aged_s);
        }
        Some(answers)
    }
}
