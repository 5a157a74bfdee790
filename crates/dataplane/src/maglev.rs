//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): the node of a
//! shard that a flow hash maps to, so every packet of a flow — from any
//! host — meets the same node, and a change in the node set moves little
//! more than the flows of the node that changed.
//!
//! The table has a prime number of slots M ([`DEFAULT_TABLE_SIZE`] = 65,537
//! for measurements, [`HOST_TABLE_SIZE`] = 4,093 on the hosts). Each node's
//! preference list over the slots is the permutation `offset + j·skip
//! (mod M)`, with offset and skip from two fixed-seed hashes of its node ID
//! ([`stable_hash`]), so every host builds the same table from the same node
//! list in any order. Nodes take turns claiming their next preferred free
//! slot until the table is full, which gives each node M/n slots give or
//! take one. A lookup is one modulo and one array read: no allocation, no
//! branch on the node count.
//!
//! It owns the table, its measurements ([`disruption`]) and the fixed-seed
//! hash every server derives shards and tables from ([`stable_hash`]); which
//! nodes are in the list (the shard, minus dead nodes) is the caller's. It
//! lives in the dataplane because the hosts pick a NAT gateway's node with
//! it; the Hyperplane re-exports it.

/// Maglev's default table size, a prime well above any shard's node count.
pub const DEFAULT_TABLE_SIZE: u32 = 65_537;

/// The table size a host uses for a NAT gateway's route (`RouteTarget`'s
/// node pick). A prime, so every node's permutation visits every slot. It is
/// small because a host holds one table per NAT route of each subnet it
/// serves: 4,093 × 4 bytes = 16 KiB, built in tens of microseconds when the
/// route table is compiled, and small enough to stay in cache on the fast
/// path. It is large enough because both of Maglev's flaws shrink as n/M
/// does, and a shard has a handful of nodes (k = 2 by default, rarely above
/// 8): each node's share of the flows is within 0.2 % of 1/n, and when a
/// node leaves, the flows of the nodes that stay that move anyway (the
/// refill reshuffles a few slots) are none with 2 nodes, 0.5 % with 4 and
/// 1.4 % with 8 ([`churn`]; 65,537 slots would cut that 16-fold at 16 times
/// the memory).
pub const HOST_TABLE_SIZE: u32 = 4_093;

const SEED_OFFSET: u64 = 0x6d61_676c_6576_0001; // "maglev" + 1
const SEED_SKIP: u64 = 0x6d61_676c_6576_0002;

/// A 64-bit hash of `bytes` with a fixed `seed`: the same on every machine,
/// build and Rust version (unlike `std`'s hashers), so every server derives
/// the same shards and Maglev tables.
pub fn stable_hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    mix(h)
}

/// SplitMix64's finaliser: a bijection with full avalanche.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("a Maglev table needs at least one node")]
    NoNodes,
    #[error("the Maglev table size {0} is not prime: use a prime such as 65537")]
    NotPrime(u32),
    #[error(
        "a Maglev table of {size} slots cannot hold {nodes} nodes: use a prime above the node count"
    )]
    TooSmall { size: u32, nodes: usize },
    #[error("node {0:?} appears twice: node IDs must be unique")]
    DuplicateNode(String),
}

/// A built lookup table over a list of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    /// Slot → index into `nodes`.
    table: Box<[u32]>,
    nodes: Vec<String>,
}

impl Maglev {
    /// Builds the table of `size` slots (a prime larger than the node count)
    /// for `nodes`. The result depends on the set of node IDs, not on their
    /// order in the slice (only the indices [`lookup`](Self::lookup) returns
    /// follow the slice).
    pub fn new<S: AsRef<str>>(nodes: &[S], size: u32) -> Result<Maglev, MaglevError> {
        if nodes.is_empty() {
            return Err(MaglevError::NoNodes);
        }
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        if (size as usize) < nodes.len() || size < 2 {
            return Err(MaglevError::TooSmall {
                size,
                nodes: nodes.len(),
            });
        }
        let mut names: Vec<String> = nodes.iter().map(|n| n.as_ref().to_owned()).collect();
        // Claim in the order of node IDs so the table does not depend on the
        // order the caller listed them in.
        let mut turn: Vec<u32> = (0..names.len() as u32).collect();
        turn.sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
        for w in turn.windows(2) {
            if names[w[0] as usize] == names[w[1] as usize] {
                return Err(MaglevError::DuplicateNode(std::mem::take(
                    &mut names[w[0] as usize],
                )));
            }
        }
        let m = u64::from(size);
        // Per node: (offset, skip, next position in its permutation).
        let mut perm: Vec<(u64, u64, u64)> = names
            .iter()
            .map(|n| {
                let offset = stable_hash(SEED_OFFSET, n.as_bytes()) % m;
                let skip = stable_hash(SEED_SKIP, n.as_bytes()) % (m - 1) + 1;
                (offset, skip, 0)
            })
            .collect();
        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; size as usize].into_boxed_slice();
        let mut filled = 0usize;
        'fill: loop {
            for &i in &turn {
                let (offset, skip, next) = &mut perm[i as usize];
                // Each permutation visits every slot once (M prime, skip in
                // 1..M), so a free one is always found while any remain.
                let mut slot = (*offset + *next * *skip) % m;
                while table[slot as usize] != EMPTY {
                    *next += 1;
                    slot = (*offset + *next * *skip) % m;
                }
                table[slot as usize] = i;
                *next += 1;
                filled += 1;
                if filled == table.len() {
                    break 'fill;
                }
            }
        }
        Ok(Maglev {
            table,
            nodes: names,
        })
    }

    /// The index (into the node list given to [`new`](Self::new)) of the
    /// node that serves `flow_hash`.
    #[inline]
    pub fn lookup(&self, flow_hash: u64) -> usize {
        self.table[(flow_hash % self.table.len() as u64) as usize] as usize
    }

    /// The ID of the node that serves `flow_hash`.
    #[inline]
    pub fn node(&self, flow_hash: u64) -> &str {
        &self.nodes[self.lookup(flow_hash)]
    }

    /// The node list, in the order given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The table: slot → node index.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// Slots held by each node, in node-list order.
    pub fn slots_per_node(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for &i in self.table.iter() {
            counts[i as usize] += 1;
        }
        counts
    }

    /// The largest relative deviation of a node's share from M/n.
    pub fn imbalance(&self) -> f64 {
        let ideal = self.table.len() as f64 / self.nodes.len() as f64;
        self.slots_per_node()
            .into_iter()
            .map(|c| (c as f64 - ideal).abs() / ideal)
            .fold(0.0, f64::max)
    }
}

/// How much of the flow-hash space changed node between two tables of the
/// same size. Slots stand for flows: a uniform flow hash lands on each with
/// the same probability, so slot shares are flow shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Disruption {
    /// Share of all flows that now meet another node.
    pub moved: f64,
    /// Share of the flows whose node is in both tables that moved anyway
    /// (ideally 0: only the flows of a node that left must move).
    pub moved_of_kept: f64,
}

/// Compares the node each slot maps to in `before` and `after` (by node
/// ID). Returns `None` if the table sizes differ.
pub fn disruption(before: &Maglev, after: &Maglev) -> Option<Disruption> {
    if before.table.len() != after.table.len() {
        return None;
    }
    // Index in `before` → index in `after`, if the node is still there.
    let kept: Vec<Option<u32>> = before
        .nodes
        .iter()
        .map(|n| after.nodes.iter().position(|m| m == n).map(|i| i as u32))
        .collect();
    let (mut moved, mut kept_slots, mut moved_kept) = (0usize, 0usize, 0usize);
    for (&b, &a) in before.table.iter().zip(after.table.iter()) {
        match kept[b as usize] {
            Some(same) => {
                kept_slots += 1;
                if same != a {
                    moved += 1;
                    moved_kept += 1;
                }
            }
            None => moved += 1,
        }
    }
    Some(Disruption {
        moved: moved as f64 / before.table.len() as f64,
        moved_of_kept: if kept_slots == 0 {
            0.0
        } else {
            moved_kept as f64 / kept_slots as f64
        },
    })
}

/// What happens to the flows of a table of `nodes` nodes when one leaves
/// or one joins: [`churn`]'s result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Churn {
    pub nodes: usize,
    pub table_size: u32,
    /// Largest relative deviation of a node's slot count from M/n.
    pub imbalance: f64,
    /// Removing a node, averaged over each node in turn: the share of all
    /// flows that moved (ideally 1/n, the removed node's own). `None` with
    /// one node, which cannot be removed.
    pub removed_moved: Option<f64>,
    /// Removing a node: the share of the other nodes' flows that moved
    /// anyway, averaged over each node in turn, and the worst case.
    pub removed_others_mean: Option<f64>,
    pub removed_others_worst: Option<f64>,
    /// Adding a node: the share of all flows that moved (ideally 1/(n+1),
    /// the ones the new node takes).
    pub added_moved: f64,
    /// Adding a node: the share of flows that moved between old nodes.
    pub added_others: f64,
}

/// Measures [`Churn`] for nodes `hp-0` … `hp-{n-1}` in a table of `size`
/// slots (exactly, slot by slot: no sampling).
pub fn churn(n: usize, size: u32) -> Result<Churn, MaglevError> {
    let names: Vec<String> = (0..n).map(|i| format!("hp-{i}")).collect();
    let all = Maglev::new(&names, size)?;
    let (mut moved, mut others, mut worst) = (0.0, 0.0, 0.0f64);
    let removable = if n > 1 { n } else { 0 };
    for i in 0..removable {
        let rest: Vec<&String> = names.iter().filter(|m| **m != names[i]).collect();
        let after = Maglev::new(&rest, size)?;
        if let Some(d) = disruption(&all, &after) {
            moved += d.moved;
            others += d.moved_of_kept;
            worst = worst.max(d.moved_of_kept);
        }
    }
    let mut grown = names.clone();
    grown.push(format!("hp-{n}"));
    let bigger = Maglev::new(&grown, size)?;
    let added = disruption(&all, &bigger).unwrap_or(Disruption {
        moved: 0.0,
        moved_of_kept: 0.0,
    });
    // Flows that moved to the new node are the intended ones; the rest
    // moved between old nodes.
    let to_new = bigger.slots_per_node()[n] as f64 / f64::from(size);
    let per = |x: f64| (removable > 0).then(|| x / removable as f64);
    Ok(Churn {
        nodes: n,
        table_size: size,
        imbalance: all.imbalance(),
        removed_moved: per(moved),
        removed_others_mean: per(others),
        removed_others_worst: (removable > 0).then_some(worst),
        added_moved: added.moved,
        added_others: (added.moved - to_new).max(0.0),
    })
}

/// Trial division: table sizes are built rarely and are at most 2^32.
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    let mut d = 2u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("hp-{i}")).collect()
    }

    #[test]
    fn errors() {
        assert_eq!(
            Maglev::new(&Vec::<String>::new(), 7),
            Err(MaglevError::NoNodes)
        );
        assert_eq!(Maglev::new(&nodes(2), 8), Err(MaglevError::NotPrime(8)));
        assert_eq!(
            Maglev::new(&nodes(5), 3),
            Err(MaglevError::TooSmall { size: 3, nodes: 5 })
        );
        assert_eq!(
            Maglev::new(&["a", "b", "a"], 7),
            Err(MaglevError::DuplicateNode("a".into()))
        );
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Shards, Maglev tables and gateway MACs are derived from it on
        // every server: a change to it is a change to all of them.
        assert_eq!(stable_hash(0, b""), mix(0));
        assert_eq!(mix(0), 0);
        assert_eq!(stable_hash(1, b"nat-0"), 0x0596_7655_d633_fed5);
        assert_eq!(
            stable_hash(SEED_OFFSET, b"10.254.0.1"),
            0x62eb_f715_7f8d_ada0
        );
    }

    #[test]
    fn host_table_size_is_prime() {
        assert!(is_prime(HOST_TABLE_SIZE));
        let m = Maglev::new(&nodes(8), HOST_TABLE_SIZE).unwrap();
        assert!(m.imbalance() < 0.005, "{}", m.imbalance());
    }

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(2) && is_prime(251) && is_prime(4_294_967_291));
        assert!(!is_prime(1) && !is_prime(65_535) && !is_prime(4_294_967_295));
    }

    #[test]
    fn one_node_takes_everything() {
        let m = Maglev::new(&["only"], 13).unwrap();
        assert!((0..100).all(|h| m.node(h) == "only"));
    }

    #[test]
    fn order_of_the_list_does_not_matter() {
        let a = Maglev::new(&["a", "b", "c"], 251).unwrap();
        let b = Maglev::new(&["c", "a", "b"], 251).unwrap();
        assert!((0..1000u64).all(|h| a.node(h) == b.node(h)));
    }
}
