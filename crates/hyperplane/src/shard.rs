//! Shuffle sharding: the k nodes of the fleet that serve one gateway, and
//! the blast radius that sharding buys (spec section 14).
//!
//! Every server computes a gateway's shard from the gateway ID, the fleet's
//! node IDs and the shards already handed out, with a fixed-seed hash
//! ([`stable_hash`]), so no coordination is needed and the answer does not
//! change between builds or machines. Nothing here does I/O, reads a clock
//! or draws from an unseeded random source; the Monte Carlo figures take
//! their seed as an argument.
//!
//! **The shard.** A gateway orders the fleet by rendezvous (highest random
//! weight) hashing over (gateway ID, node ID): [`rendezvous_order`]. Its
//! plain shard is the first k nodes of that order ([`shard`]).
//!
//! **AWS's overlap rule.** No two gateways share more than half of a shard
//! (at most ⌊k/2⌋ nodes) when the fleet allows it. [`Assigner::assign`]
//! walks the gateway's k-combinations of its order in lexicographic order of
//! positions (the plain shard first, then the ones that swap in the nearest
//! later nodes) and takes the first that overlaps every existing shard in at
//! most ⌊k/2⌋ nodes. When no such combination exists (the fleet is too small
//! for the tenants, e.g. more than C(8, 2) = 28 gateways on 8 nodes with
//! k = 2) or the bounded search does not find one, it takes the combination
//! whose largest overlap is smallest, then that shares it with the fewest
//! shards, then whose total overlap is smallest, first in the same order on
//! a tie; [`Assignment::within_rule`] says which
//! case happened.
//!
//! **Nodes joining and leaving.** A shard is stored once given out; it is not
//! recomputed when the fleet changes, so a node joining moves nobody. When a
//! node of a shard dies, [`Assigner::repair`] keeps the shard's live nodes
//! and fills the hole with the next node of the gateway's own order that
//! keeps the overlap rule (or, failing that, the least-overlapping one), so
//! only the flows of the dead node move.
//!
//! **Blast radius.** When one tenant poisons its shard (all k nodes down),
//! another tenant is *fully* affected when all of its nodes are in the
//! poisoned set and *partially* when some but not all are. With shards drawn
//! uniformly at random the overlap with one other tenant is hypergeometric:
//! P(full) = 1 / C(N, k) and P(any) = 1 − C(N−k, k) / C(N, k)
//! ([`closed_form`]); [`exact`] counts it by enumeration, [`monte_carlo`]
//! samples it, and [`measured`] computes it for the shards actually given out.

use std::collections::BTreeSet;

use openvpc_dataplane::maglev::mix;
// Public here too: the shard's hash, by the name callers have used.
pub use openvpc_dataplane::maglev::stable_hash;

/// The shard size AWS uses for a NAT gateway when nothing else is said.
pub const DEFAULT_SHARD_SIZE: usize = 2;

/// Combinations the overlap-rule search visits (per phase) before it settles
/// for the best found. Far more than a fleet that allows the rule needs; it
/// bounds the work on a fleet that does not.
pub const SEARCH_BUDGET: usize = 200_000;

const SEED_GATEWAY: u64 = 0x6f70_656e_7670_6301; // "openvpc" + 1
const SEED_NODE: u64 = 0x6f70_656e_7670_6302;

/// The rendezvous weight of `node` for `gateway`: higher comes first.
pub fn weight(gateway: &str, node: &str) -> u64 {
    pair_weight(
        stable_hash(SEED_GATEWAY, gateway.as_bytes()),
        stable_hash(SEED_NODE, node.as_bytes()),
    )
}

fn pair_weight(gateway_hash: u64, node_hash: u64) -> u64 {
    mix(gateway_hash ^ node_hash.rotate_left(29))
}

/// Why a shard cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("the fleet has no nodes: register at least one hyperplane node")]
    EmptyFleet,
    #[error("a shard of 0 nodes serves nothing: ask for k of at least 1")]
    ZeroSize,
    #[error("node {0:?} appears twice in the fleet: node IDs must be unique")]
    DuplicateNode(String),
}

/// The nodes that serve one gateway, in the gateway's rendezvous order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Shard {
    pub nodes: Vec<String>,
}

impl Shard {
    /// Nodes in both shards.
    pub fn overlap(&self, other: &Shard) -> usize {
        self.nodes
            .iter()
            .filter(|n| other.nodes.contains(n))
            .count()
    }
}

/// A gateway's shard and how well it keeps the overlap rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub shard: Shard,
    /// The most nodes it shares with any one existing shard.
    pub max_overlap: usize,
    /// Whether that is at most ⌊k/2⌋ (AWS's rule).
    pub within_rule: bool,
}

/// The fleet ordered for `gateway` by rendezvous hashing: its shard is a
/// prefix of this unless the overlap rule moved it. Ties (astronomically
/// rare) break by node ID so the order is total.
pub fn rendezvous_order<'a, S: AsRef<str>>(gateway: &str, fleet: &'a [S]) -> Vec<&'a str> {
    let g = stable_hash(SEED_GATEWAY, gateway.as_bytes());
    let mut nodes: Vec<(u64, &str)> = fleet
        .iter()
        .map(|n| {
            let n = n.as_ref();
            (pair_weight(g, stable_hash(SEED_NODE, n.as_bytes())), n)
        })
        .collect();
    nodes.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    nodes.into_iter().map(|(_, n)| n).collect()
}

/// The plain shard of `gateway`: the first `k` nodes of its rendezvous order
/// (the whole fleet when it has fewer than `k`), ignoring other gateways.
pub fn shard<S: AsRef<str>>(gateway: &str, fleet: &[S], k: usize) -> Result<Shard, ShardError> {
    Ok(Assigner::new(fleet, k)?.plain(gateway))
}

/// Gives out shards that keep the overlap rule against the shards already
/// given out. Holds the fleet and those shards as node indices with a
/// node → shards index, so each assignment costs what its search visits.
#[derive(Debug, Clone)]
pub struct Assigner {
    nodes: Vec<String>,
    node_hashes: Vec<u64>,
    k: usize,
    /// Existing shards, as indices into `nodes` (dead nodes left out).
    shards: Vec<Vec<u32>>,
    /// For each node, the existing shards that hold it.
    by_node: Vec<Vec<u32>>,
}

impl Assigner {
    /// An assigner for shards of `k` nodes (capped at the fleet's size) on
    /// `fleet`, with no shard given out yet.
    pub fn new<S: AsRef<str>>(fleet: &[S], k: usize) -> Result<Assigner, ShardError> {
        if fleet.is_empty() {
            return Err(ShardError::EmptyFleet);
        }
        if k == 0 {
            return Err(ShardError::ZeroSize);
        }
        let mut seen = BTreeSet::new();
        for n in fleet {
            if !seen.insert(n.as_ref()) {
                return Err(ShardError::DuplicateNode(n.as_ref().to_owned()));
            }
        }
        let nodes: Vec<String> = fleet.iter().map(|n| n.as_ref().to_owned()).collect();
        Ok(Assigner {
            node_hashes: nodes
                .iter()
                .map(|n| stable_hash(SEED_NODE, n.as_bytes()))
                .collect(),
            k: k.min(nodes.len()),
            shards: Vec::new(),
            by_node: vec![Vec::new(); nodes.len()],
            nodes,
        })
    }

    /// The shard size given out (k capped at the fleet's size).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The most nodes two shards may share under AWS's rule: ⌊k/2⌋.
    pub fn overlap_limit(&self) -> usize {
        self.k / 2
    }

    /// Shards given out (or recorded) so far.
    pub fn len(&self) -> usize {
        self.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shards.is_empty()
    }

    /// Records a shard given out earlier (e.g. read back from the store), so
    /// later assignments keep clear of it. Nodes no longer in the fleet are
    /// ignored: they serve nobody.
    pub fn record(&mut self, shard: &Shard) {
        let idx: Vec<u32> = shard
            .nodes
            .iter()
            .filter_map(|n| self.index_of(n))
            .collect();
        self.push(idx);
    }

    /// Gives `gateway` a shard under the overlap rule and records it.
    pub fn assign(&mut self, gateway: &str) -> Assignment {
        self.assign_keeping(gateway, &[])
    }

    /// A new shard for `gateway` whose current `shard` lost nodes: its nodes
    /// still in the fleet stay, the holes are filled from the gateway's order
    /// under the overlap rule. The gateway's old shard must not be among the
    /// recorded ones. The result is recorded.
    pub fn repair(&mut self, gateway: &str, shard: &Shard) -> Assignment {
        let keep: Vec<u32> = shard
            .nodes
            .iter()
            .filter_map(|n| self.index_of(n))
            .take(self.k)
            .collect();
        self.assign_keeping(gateway, &keep)
    }

    /// The first `k` nodes of the gateway's order, not recorded.
    pub fn plain(&self, gateway: &str) -> Shard {
        let order = self.order(gateway);
        self.to_shard(&order, &order[..self.k])
    }

    fn index_of(&self, node: &str) -> Option<u32> {
        self.nodes.iter().position(|n| n == node).map(|i| i as u32)
    }

    fn push(&mut self, idx: Vec<u32>) {
        let s = self.shards.len() as u32;
        for &n in &idx {
            self.by_node[n as usize].push(s);
        }
        self.shards.push(idx);
    }

    fn order(&self, gateway: &str) -> Vec<u32> {
        let g = stable_hash(SEED_GATEWAY, gateway.as_bytes());
        let mut order: Vec<(u64, u32)> = self
            .node_hashes
            .iter()
            .enumerate()
            .map(|(i, &h)| (pair_weight(g, h), i as u32))
            .collect();
        let nodes = &self.nodes;
        order.sort_unstable_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| nodes[a.1 as usize].cmp(&nodes[b.1 as usize]))
        });
        order.into_iter().map(|(_, i)| i).collect()
    }

    /// `chosen` put back in the order's sequence, as node IDs.
    fn to_shard(&self, order: &[u32], chosen: &[u32]) -> Shard {
        Shard {
            nodes: order
                .iter()
                .filter(|n| chosen.contains(n))
                .map(|&n| self.nodes[n as usize].clone())
                .collect(),
        }
    }

    fn assign_keeping(&mut self, gateway: &str, keep: &[u32]) -> Assignment {
        let order: Vec<u32> = self
            .order(gateway)
            .into_iter()
            .filter(|n| !keep.contains(n))
            .collect();
        let need = self.k - keep.len();
        let mut search = Search::new(self, keep);
        let limit = self.overlap_limit();
        let picked = search
            .first_within(&order, need, limit)
            .unwrap_or_else(|| search.least_overlapping(&order, need));
        let mut chosen: Vec<u32> = keep.to_vec();
        chosen.extend(picked);
        let max_overlap = search.max_overlap_of(&chosen);
        let full_order = self.order(gateway);
        let shard = self.to_shard(&full_order, &chosen);
        self.push(chosen);
        Assignment {
            shard,
            max_overlap,
            within_rule: max_overlap <= limit,
        }
    }
}

/// (largest overlap, shards with that overlap, total overlap).
type Cost = (usize, usize, usize);

/// The depth-first walk over combinations, counting overlaps incrementally:
/// adding a node bumps the count of each existing shard that holds it.
struct Search<'a> {
    by_node: &'a [Vec<u32>],
    /// Overlap of the partial combination with each existing shard.
    counts: Vec<usize>,
    /// How many existing shards have each overlap (index = overlap).
    histogram: Vec<usize>,
    total: usize,
    steps: usize,
}

impl<'a> Search<'a> {
    fn new(assigner: &'a Assigner, keep: &[u32]) -> Search<'a> {
        let mut histogram = vec![0; assigner.k + 1];
        histogram[0] = assigner.shards.len();
        let mut s = Search {
            by_node: &assigner.by_node,
            counts: vec![0; assigner.shards.len()],
            histogram,
            total: 0,
            steps: 0,
        };
        for &n in keep {
            s.add(n);
        }
        s
    }

    fn add(&mut self, node: u32) {
        for &s in &self.by_node[node as usize] {
            let c = &mut self.counts[s as usize];
            self.histogram[*c] -= 1;
            *c += 1;
            self.histogram[*c] += 1;
            self.total += 1;
        }
    }

    fn remove(&mut self, node: u32) {
        for &s in &self.by_node[node as usize] {
            let c = &mut self.counts[s as usize];
            self.histogram[*c] -= 1;
            *c -= 1;
            self.histogram[*c] += 1;
            self.total -= 1;
        }
    }

    fn max_overlap(&self) -> usize {
        self.histogram.iter().rposition(|&h| h > 0).unwrap_or(0)
    }

    fn exceeds(&self, node: u32, limit: usize) -> bool {
        self.by_node[node as usize]
            .iter()
            .any(|&s| self.counts[s as usize] > limit)
    }

    fn max_overlap_of(&mut self, chosen: &[u32]) -> usize {
        // The search state is back at `keep` after each phase; rebuild from
        // scratch so this does not depend on where it stopped.
        for c in self.counts.iter_mut() {
            *c = 0;
        }
        for h in self.histogram.iter_mut() {
            *h = 0;
        }
        self.histogram[0] = self.counts.len();
        self.total = 0;
        for &n in chosen {
            self.add(n);
        }
        self.max_overlap()
    }

    /// The first combination (lexicographic in order positions) that keeps
    /// every overlap within `limit`, if the budget finds one.
    fn first_within(&mut self, order: &[u32], need: usize, limit: usize) -> Option<Vec<u32>> {
        if self.max_overlap() > limit {
            return None;
        }
        self.steps = 0;
        let mut picked = Vec::with_capacity(need);
        self.walk_within(order, 0, need, limit, &mut picked)
            .then_some(picked)
    }

    fn walk_within(
        &mut self,
        order: &[u32],
        from: usize,
        need: usize,
        limit: usize,
        picked: &mut Vec<u32>,
    ) -> bool {
        if picked.len() == need {
            return true;
        }
        let left = need - picked.len();
        for i in from..=order.len().saturating_sub(left) {
            if i >= order.len() || self.steps >= SEARCH_BUDGET {
                return false;
            }
            self.steps += 1;
            let n = order[i];
            self.add(n);
            if !self.exceeds(n, limit) {
                picked.push(n);
                if self.walk_within(order, i + 1, need, limit, picked) {
                    return true;
                }
                picked.pop();
            }
            self.remove(n);
        }
        false
    }

    /// The combination with the smallest (largest overlap, shards sharing
    /// that much, total overlap), first in order on a tie; branch and bound,
    /// since that triple only grows as nodes are added.
    fn least_overlapping(&mut self, order: &[u32], need: usize) -> Vec<u32> {
        self.steps = 0;
        let mut best: Option<(Cost, Vec<u32>)> = None;
        let mut picked = Vec::with_capacity(need);
        self.walk_least(order, 0, need, &mut picked, &mut best);
        match best {
            Some((_, b)) => b,
            // Unreachable with need <= order.len(), which `k` capping
            // guarantees; the plain prefix is the honest fallback anyway.
            None => order.iter().copied().take(need).collect(),
        }
    }

    fn walk_least(
        &mut self,
        order: &[u32],
        from: usize,
        need: usize,
        picked: &mut Vec<u32>,
        best: &mut Option<(Cost, Vec<u32>)>,
    ) {
        let max = self.max_overlap();
        let cost = (max, self.histogram[max], self.total);
        if best.as_ref().is_some_and(|(b, _)| cost >= *b) {
            return;
        }
        if picked.len() == need {
            *best = Some((cost, picked.clone()));
            return;
        }
        let left = need - picked.len();
        for i in from..=order.len().saturating_sub(left) {
            if i >= order.len() || self.steps >= SEARCH_BUDGET {
                return;
            }
            self.steps += 1;
            let n = order[i];
            self.add(n);
            picked.push(n);
            self.walk_least(order, i + 1, need, picked, best);
            picked.pop();
            self.remove(n);
        }
    }
}

/// The share of *other* tenants hit when one tenant's shard is poisoned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlastRadius {
    /// All of their nodes are in the poisoned set: they are down.
    pub full: f64,
    /// Some but not all of their nodes are: they run degraded.
    pub partial: f64,
}

impl BlastRadius {
    /// Full or partial: at least one of their nodes is poisoned.
    pub fn any(&self) -> f64 {
        self.full + self.partial
    }
}

/// C(n, k) as a float (exact for the sizes that fit 2^53).
pub fn binomial(n: u64, k: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
}

/// The hypergeometric closed form for shards drawn uniformly at random:
/// P(full) = 1 / C(N, k), P(any) = 1 − C(N−k, k) / C(N, k).
pub fn closed_form(n: u64, k: u64) -> BlastRadius {
    let k = k.min(n);
    let all = binomial(n, k);
    if all == 0.0 {
        return BlastRadius {
            full: 0.0,
            partial: 0.0,
        };
    }
    let full = 1.0 / all;
    let any = 1.0 - binomial(n - k, k) / all;
    BlastRadius {
        full,
        partial: any - full,
    }
}

/// P(two random shards share exactly `j` nodes), j = 0..=k:
/// C(k, j)·C(N−k, k−j) / C(N, k).
pub fn overlap_distribution(n: u64, k: u64) -> Vec<f64> {
    let k = k.min(n);
    let all = binomial(n, k);
    (0..=k)
        .map(|j| binomial(k, j) * binomial(n - k, k - j) / all)
        .collect()
}

/// Exhaustive counts over every shard another tenant could hold, against a
/// fixed poisoned shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactCount {
    pub shards: u64,
    pub full: u64,
    pub partial: u64,
}

impl ExactCount {
    pub fn radius(&self) -> BlastRadius {
        let s = self.shards.max(1) as f64;
        BlastRadius {
            full: self.full as f64 / s,
            partial: self.partial as f64 / s,
        }
    }
}

/// Counts, over all C(n, k) shards, those fully and partially inside the
/// poisoned shard {0, …, k−1}. Returns `None` above `max_shards` shards.
pub fn exact(n: usize, k: usize, max_shards: u64) -> Option<ExactCount> {
    let k = k.min(n);
    if binomial(n as u64, k as u64) > max_shards as f64 {
        return None;
    }
    let mut count = ExactCount {
        shards: 0,
        full: 0,
        partial: 0,
    };
    // Walk combinations as increasing index vectors.
    let mut comb: Vec<usize> = (0..k).collect();
    loop {
        count.shards += 1;
        let hit = comb.iter().filter(|&&i| i < k).count();
        if hit == k {
            count.full += 1;
        } else if hit > 0 {
            count.partial += 1;
        }
        // Next combination: bump the rightmost index that can move.
        let Some(i) = (0..k).rev().find(|&i| comb[i] < n - k + i) else {
            return Some(count);
        };
        comb[i] += 1;
        for j in i + 1..k {
            comb[j] = comb[j - 1] + 1;
        }
    }
}

/// A seeded SplitMix64 generator: reproducible figures without a `rand`
/// dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (Lemire's multiply; the bias is below 2^-32
    /// for the fleet sizes here).
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// `k` distinct values of `0..n`, uniformly (Floyd's algorithm).
    pub fn sample(&mut self, n: usize, k: usize, out: &mut Vec<u32>) {
        out.clear();
        for j in n - k.min(n)..n {
            let t = self.below(j as u64 + 1) as u32;
            if out.contains(&t) {
                out.push(j as u32);
            } else {
                out.push(t);
            }
        }
    }
}

/// Samples the blast radius with uniformly random shards: each of `trials`
/// draws a poisoned shard and `tenants − 1` other shards of `k` of `n`
/// nodes, and counts the others hit.
pub fn monte_carlo(n: usize, k: usize, tenants: usize, trials: usize, seed: u64) -> BlastRadius {
    let k = k.min(n);
    let mut rng = SplitMix64::new(seed);
    let mut poisoned = vec![false; n];
    let mut shard = Vec::with_capacity(k);
    let (mut full, mut partial, mut seen) = (0u64, 0u64, 0u64);
    for _ in 0..trials {
        rng.sample(n, k, &mut shard);
        poisoned.iter_mut().for_each(|p| *p = false);
        for &i in &shard {
            poisoned[i as usize] = true;
        }
        for _ in 1..tenants {
            rng.sample(n, k, &mut shard);
            let hit = shard.iter().filter(|&&i| poisoned[i as usize]).count();
            if hit == k {
                full += 1;
            } else if hit > 0 {
                partial += 1;
            }
            seen += 1;
        }
    }
    let s = seen.max(1) as f64;
    BlastRadius {
        full: full as f64 / s,
        partial: partial as f64 / s,
    }
}

/// The blast radius of the shards actually given out, averaged over each
/// tenant in turn being the poisoned one. Shards hold node indices below
/// `n`.
pub fn measured(n: usize, shards: &[Vec<u32>]) -> BlastRadius {
    let mut by_node: Vec<Vec<u32>> = vec![Vec::new(); n];
    for (t, s) in shards.iter().enumerate() {
        for &node in s {
            if let Some(list) = by_node.get_mut(node as usize) {
                list.push(t as u32);
            }
        }
    }
    let mut hits = vec![0usize; shards.len()];
    let (mut full, mut partial) = (0u64, 0u64);
    for (p, poisoned) in shards.iter().enumerate() {
        hits.iter_mut().for_each(|h| *h = 0);
        for &node in poisoned {
            for &t in by_node.get(node as usize).into_iter().flatten() {
                hits[t as usize] += 1;
            }
        }
        for (t, (&h, s)) in hits.iter().zip(shards).enumerate() {
            if t == p || h == 0 {
                continue;
            }
            if h == s.len() {
                full += 1;
            } else {
                partial += 1;
            }
        }
    }
    let pairs = (shards.len() * shards.len().saturating_sub(1)).max(1) as f64;
    BlastRadius {
        full: full as f64 / pairs,
        partial: partial as f64 / pairs,
    }
}

/// Who serves each place of a shard, given its places in order (`None`: the
/// place's node is dead): the place's own node while it lives, else its
/// buddy, the next live place cyclically (the node its flows were
/// replicated to). `None` only when no place lives.
///
/// A place is a slice of every address's ports, so this is what a reply
/// routed by port needs: `serving_places(p)[owner_of(port, p.len())]`.
pub fn serving_places<T: Clone>(places: &[Option<T>]) -> Vec<Option<T>> {
    let n = places.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|step| &places[(i + step) % n])
                .find_map(|p| p.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("hp-{i}")).collect()
    }

    #[test]
    fn closed_form_matches_exhaustive_count() {
        // Spec 14: the shard space is C(N, k); P(full) = 1/C(N,k),
        // P(any) = 1 - C(N-k,k)/C(N,k). Checked against enumeration.
        for n in 1..=14u64 {
            for k in 1..=n.min(6) {
                let e = exact(n as usize, k as usize, u64::MAX).unwrap();
                assert_eq!(e.shards as f64, binomial(n, k), "C({n},{k})");
                assert_eq!(e.full, 1, "one shard equals the poisoned one");
                let none = e.shards - e.full - e.partial;
                assert_eq!(none as f64, binomial(n - k, k), "N={n} k={k}");
                let c = closed_form(n, k);
                let r = e.radius();
                assert!((c.full - r.full).abs() < 1e-12, "N={n} k={k}");
                assert!((c.partial - r.partial).abs() < 1e-12, "N={n} k={k}");
            }
        }
    }

    #[test]
    fn spec_figures_for_the_two_examples() {
        // Spec 14: N=8, k=2 → 28 shards, 1/28 = 3.6 % fully affected.
        assert_eq!(binomial(8, 2), 28.0);
        assert!((closed_form(8, 2).full - 1.0 / 28.0).abs() < 1e-12);
        // N=100, k=5 → 75,287,520 shards; overlap 0: 76.96 %, 1: 21.14 %,
        // 2: 1.84 %, 3+: 0.06 %.
        assert_eq!(binomial(100, 5), 75_287_520.0);
        let d = overlap_distribution(100, 5);
        let pct = |x: f64| (x * 10_000.0).round() / 100.0;
        assert_eq!(pct(d[0]), 76.96);
        assert_eq!(pct(d[1]), 21.14);
        assert_eq!(pct(d[2]), 1.84);
        assert_eq!(pct(d[3] + d[4] + d[5]), 0.06);
        assert!((d.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn monte_carlo_converges_to_the_closed_form() {
        let m = monte_carlo(8, 2, 100, 2_000, 7);
        let c = closed_form(8, 2);
        assert!((m.full - c.full).abs() < 0.005, "{m:?} vs {c:?}");
        assert!((m.any() - c.any()).abs() < 0.01, "{m:?} vs {c:?}");
    }

    #[test]
    fn floyd_sample_is_distinct_and_in_range() {
        let mut rng = SplitMix64::new(1);
        let mut out = Vec::new();
        for _ in 0..1000 {
            rng.sample(10, 4, &mut out);
            assert_eq!(out.len(), 4);
            let set: BTreeSet<_> = out.iter().collect();
            assert_eq!(set.len(), 4);
            assert!(out.iter().all(|&x| x < 10));
        }
    }

    #[test]
    fn stable_hash_is_pinned() {
        // Every server must derive the same shards: a change to the hash is
        // a change to every gateway's shard, so it is pinned here.
        assert_eq!(stable_hash(0, b""), mix(0));
        assert_eq!(stable_hash(1, b"nat-0"), stable_hash(1, b"nat-0"));
        assert_ne!(stable_hash(1, b"nat-0"), stable_hash(2, b"nat-0"));
        assert_ne!(stable_hash(1, b"nat-0"), stable_hash(1, b"nat-0\0"));
        assert_eq!(
            shard("nat-0123456789abcdef0", &fleet(8), 2).unwrap(),
            shard("nat-0123456789abcdef0", &fleet(8), 2).unwrap()
        );
    }

    #[test]
    fn plain_shard_is_a_prefix_of_the_order() {
        let f = fleet(10);
        let order = rendezvous_order("nat-1", &f);
        let s = shard("nat-1", &f, 3).unwrap();
        assert_eq!(s.nodes, order[..3]);
    }

    #[test]
    fn errors() {
        assert_eq!(
            shard("nat-1", &Vec::<String>::new(), 2),
            Err(ShardError::EmptyFleet)
        );
        assert_eq!(shard("nat-1", &fleet(3), 0), Err(ShardError::ZeroSize));
        assert_eq!(
            shard("nat-1", &["a", "b", "a"], 2),
            Err(ShardError::DuplicateNode("a".into()))
        );
        // A fleet smaller than k: the whole fleet (`openvpc up` runs one node).
        assert_eq!(shard("nat-1", &["a"], 2).unwrap().nodes, ["a"]);
    }

    #[test]
    fn small_fleet_falls_back_to_least_overlap() {
        // N=8, k=2: 28 distinct shards. The first 28 gateways get distinct
        // shards (the rule for k=2 is "not identical"); the 29th cannot.
        let mut a = Assigner::new(&fleet(8), 2).unwrap();
        let mut seen = BTreeSet::new();
        for g in 0..28 {
            let r = a.assign(&format!("nat-{g}"));
            assert!(r.within_rule, "gateway {g}");
            let mut nodes = r.shard.nodes.clone();
            nodes.sort();
            assert!(seen.insert(nodes));
        }
        let r = a.assign("nat-28");
        assert!(!r.within_rule);
        assert_eq!(r.max_overlap, 2);
        // 56 gateways: every pair used exactly twice (least total overlap).
        for g in 29..56 {
            a.assign(&format!("nat-{g}"));
        }
        let counts = a.shards.iter().fold(
            std::collections::BTreeMap::<Vec<u32>, usize>::new(),
            |mut m, s| {
                let mut s = s.clone();
                s.sort();
                *m.entry(s).or_default() += 1;
                m
            },
        );
        assert!(counts.values().all(|&c| c == 2), "{counts:?}");
    }

    #[test]
    fn repair_keeps_live_nodes() {
        let f = fleet(12);
        let mut a = Assigner::new(&f, 4).unwrap();
        for g in 0..10 {
            a.assign(&format!("nat-{g}"));
        }
        let mine = Assigner::new(&f, 4).unwrap().plain("nat-x");
        let dead = mine.nodes[1].clone();
        let live: Vec<String> = f.iter().filter(|n| **n != dead).cloned().collect();
        let mut after = Assigner::new(&live, 4).unwrap();
        for s in a.shards.iter() {
            after.record(&Shard {
                nodes: s.iter().map(|&i| f[i as usize].clone()).collect(),
            });
        }
        let r = after.repair("nat-x", &mine);
        assert_eq!(r.shard.nodes.len(), 4);
        assert!(!r.shard.nodes.contains(&dead));
        for n in mine.nodes.iter().filter(|n| **n != dead) {
            assert!(r.shard.nodes.contains(n), "{n} kept");
        }
    }

    #[test]
    fn measured_counts_pairs() {
        // Two identical shards and one disjoint: poisoning 0 takes out 1
        // fully; poisoning 2 takes out nobody.
        let shards = vec![vec![0, 1], vec![0, 1], vec![2, 3]];
        let r = measured(4, &shards);
        assert!((r.full - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.partial, 0.0);
        let r = measured(4, &[vec![0, 1], vec![1, 2]]);
        assert_eq!(r.full, 0.0);
        assert_eq!(r.partial, 1.0);
    }

    /// Issue 16 (replicated state): a live place serves itself; a dead
    /// one is served by its buddy, the next live place cyclically, so
    /// consecutive dead places all land on the first live one after them.
    #[test]
    fn a_dead_place_is_served_by_the_next_live_one() {
        assert_eq!(
            serving_places(&[Some("a"), Some("b"), Some("c")]),
            [Some("a"), Some("b"), Some("c")]
        );
        assert_eq!(serving_places(&[None, Some("b")]), [Some("b"), Some("b")]);
        // The last place's buddy wraps around to the first.
        assert_eq!(serving_places(&[Some("a"), None]), [Some("a"), Some("a")]);
        assert_eq!(
            serving_places(&[Some("a"), None, None, Some("d"), None]),
            [Some("a"), Some("d"), Some("d"), Some("d"), Some("a")]
        );
        // Nobody lives: nobody serves.
        assert_eq!(serving_places::<&str>(&[None, None]), [None, None]);
        assert!(serving_places::<&str>(&[]).is_empty());
    }
}
