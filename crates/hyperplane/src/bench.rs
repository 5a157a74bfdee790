//! `openvpc bench shards`: the blast radius of shuffle sharding on a fleet
//! (measured on random shards and on the shards [`Assigner`] gives out,
//! next to the hypergeometric closed form) and the flows Maglev moves when
//! a node leaves or joins (issue 16, item 2 and 3).
//!
//! It owns the figures and their wording; the binary turns its arguments
//! into [`run`]'s and prints [`ShardFigures`]. Everything is computed, not
//! timed: the same arguments print the same figures on every machine.

use crate::maglev::{self, Churn, DEFAULT_TABLE_SIZE, MaglevError};
use crate::shard::{self, Assigner, BlastRadius, ExactCount, ShardError};

/// Enumerate the shard space exactly only up to this many shards.
pub const EXACT_LIMIT: u64 = 1_000_000;

/// The seed of the Monte Carlo draws (fixed: figures are reproducible).
pub const SEED: u64 = 16;

/// What `openvpc bench shards` reports for one fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardFigures {
    pub nodes: usize,
    pub k: usize,
    pub tenants: usize,
    pub trials: usize,
    /// C(N, k).
    pub shard_space: f64,
    pub closed_form: BlastRadius,
    /// `None` when the shard space exceeds [`EXACT_LIMIT`].
    pub exact: Option<ExactCount>,
    pub monte_carlo: BlastRadius,
    /// The shards [`Assigner`] gave `tenants` gateways.
    pub assigned: BlastRadius,
    /// How many of those kept the overlap rule, and the largest overlap
    /// between any assigned shard and the ones before it.
    pub within_rule: usize,
    pub overlap_limit: usize,
    pub max_overlap: usize,
    /// P(overlap = j) with one other random shard, j = 0..=k.
    pub overlap_distribution: Vec<f64>,
    /// Maglev inside a shard (n = k) and over the whole fleet (n = N).
    pub maglev_shard: Churn,
    pub maglev_fleet: Churn,
}

/// Why the figures could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Maglev(#[from] MaglevError),
}

/// Computes the figures for `nodes` nodes, shards of `k`, `tenants` tenants
/// and `trials` Monte Carlo draws of the whole tenant population.
pub fn run(
    nodes: usize,
    k: usize,
    tenants: usize,
    trials: usize,
) -> Result<ShardFigures, BenchError> {
    let fleet: Vec<String> = (0..nodes).map(|i| format!("hp-{i}")).collect();
    let mut assigner = Assigner::new(&fleet, k)?;
    let k = assigner.k();
    let mut shards = Vec::with_capacity(tenants);
    let (mut within_rule, mut max_overlap) = (0, 0);
    for t in 0..tenants {
        let a = assigner.assign(&format!("nat-{t:017x}"));
        within_rule += usize::from(a.within_rule);
        max_overlap = max_overlap.max(a.max_overlap);
        shards.push(
            a.shard
                .nodes
                .iter()
                .filter_map(|n| fleet.iter().position(|m| m == n))
                .map(|i| i as u32)
                .collect::<Vec<u32>>(),
        );
    }
    let table = DEFAULT_TABLE_SIZE;
    Ok(ShardFigures {
        nodes,
        k,
        tenants,
        trials,
        shard_space: shard::binomial(nodes as u64, k as u64),
        closed_form: shard::closed_form(nodes as u64, k as u64),
        exact: shard::exact(nodes, k, EXACT_LIMIT),
        monte_carlo: shard::monte_carlo(nodes, k, tenants, trials, SEED),
        assigned: shard::measured(nodes, &shards),
        within_rule,
        overlap_limit: assigner.overlap_limit(),
        max_overlap,
        overlap_distribution: shard::overlap_distribution(nodes as u64, k as u64),
        maglev_shard: maglev::churn(k, table)?,
        maglev_fleet: maglev::churn(nodes, table)?,
    })
}

fn radius_json(r: &BlastRadius) -> serde_json::Value {
    serde_json::json!({ "full": r.full, "partial": r.partial, "any": r.any() })
}

fn churn_json(c: &Churn) -> serde_json::Value {
    serde_json::json!({
        "nodes": c.nodes,
        "table_size": c.table_size,
        "imbalance": c.imbalance,
        "remove_one": {
            "moved": c.removed_moved,
            "ideal": (c.nodes > 1).then(|| 1.0 / c.nodes as f64),
            "others_moved_mean": c.removed_others_mean,
            "others_moved_worst": c.removed_others_worst,
        },
        "add_one": {
            "moved": c.added_moved,
            "ideal": 1.0 / (c.nodes + 1) as f64,
            "others_moved": c.added_others,
        },
    })
}

/// A percentage; tiny non-zero shares (1/C(100, 5) is 1.3e-6 %) in
/// scientific notation rather than as a misleading 0.000 %.
fn pct(x: f64) -> String {
    if x > 0.0 && x < 1e-5 {
        format!("{:.2e} %", x * 100.0)
    } else {
        format!("{:.3} %", x * 100.0)
    }
}

impl ShardFigures {
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "nodes": self.nodes,
            "k": self.k,
            "tenants": self.tenants,
            "trials": self.trials,
            "shard_space": self.shard_space,
            "blast_radius": {
                "closed_form": radius_json(&self.closed_form),
                "exact": self.exact.map(|e| radius_json(&e.radius())),
                "monte_carlo_random_shards": radius_json(&self.monte_carlo),
                "assigned_shards": radius_json(&self.assigned),
            },
            "assigned": {
                "within_rule": self.within_rule,
                "overlap_limit": self.overlap_limit,
                "max_overlap": self.max_overlap,
            },
            "overlap_distribution": self.overlap_distribution,
            "maglev": {
                "shard": churn_json(&self.maglev_shard),
                "fleet": churn_json(&self.maglev_fleet),
            },
        })
    }

    pub fn table(&self) -> String {
        let mut out = format!(
            "fleet: N = {} nodes, shards of k = {} (C({}, {}) = {:.0} shards), {} tenants\n\
             blast radius when one tenant's shard is poisoned (share of the other tenants):\n\
             {:<50} {:>10} {:>10} {:>10}\n",
            self.nodes,
            self.k,
            self.nodes,
            self.k,
            self.shard_space,
            self.tenants,
            "",
            "fully",
            "partially",
            "any",
        );
        let mut row = |name: String, r: &BlastRadius| {
            out.push_str(&format!(
                "  {:<48} {:>10} {:>10} {:>10}\n",
                name,
                pct(r.full),
                pct(r.partial),
                pct(r.any())
            ));
        };
        row("closed form (hypergeometric)".into(), &self.closed_form);
        if let Some(e) = &self.exact {
            row(
                format!("exact count over all {} shards", e.shards),
                &e.radius(),
            );
        }
        row(
            format!("random shards, Monte Carlo ({} trials)", self.trials),
            &self.monte_carlo,
        );
        row(
            "assigned shards (rendezvous + overlap rule)".into(),
            &self.assigned,
        );
        out.push_str(&format!(
            "  assigned: {} of {} tenants within the rule (share <= {} of {} nodes), largest overlap {}\n",
            self.within_rule, self.tenants, self.overlap_limit, self.k, self.max_overlap
        ));
        out.push_str("overlap with one other random shard:");
        for (j, p) in self.overlap_distribution.iter().enumerate() {
            out.push_str(&format!("  {j}: {:.2} %", p * 100.0));
        }
        out.push('\n');
        out.push_str(&format!(
            "Maglev (M = {}), share of flows moved:\n",
            self.maglev_shard.table_size
        ));
        for (what, c) in [
            ("a shard", &self.maglev_shard),
            ("the fleet", &self.maglev_fleet),
        ] {
            out.push_str(&churn_line(what, c));
        }
        out
    }
}

fn churn_line(what: &str, c: &Churn) -> String {
    let removed = match (
        c.removed_moved,
        c.removed_others_mean,
        c.removed_others_worst,
    ) {
        (Some(m), Some(o), Some(w)) => format!(
            "remove one: {} (ideal {}), of the others' flows {} (worst {})",
            pct(m),
            pct(1.0 / c.nodes as f64),
            pct(o),
            pct(w)
        ),
        _ => "remove one: no node left to take over".to_owned(),
    };
    format!(
        "  n = {} ({what}): {removed}; add one: {} (ideal {}, between old nodes {}); \
         slots per node within ±{:.3} % of M/n\n",
        c.nodes,
        pct(c.added_moved),
        pct(1.0 / (c.nodes + 1) as f64),
        pct(c.added_others),
        c.imbalance * 100.0,
    )
}
