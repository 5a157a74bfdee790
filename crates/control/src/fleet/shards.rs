//! The shuffle shards of NAT gateways (DESIGN.md, "Hyperplane"; spec 14):
//! each live NAT gateway of a region gets k of the region's live hyperplane
//! nodes, kept at `shards/{region}/{gateway_id}` so a shard stays put while
//! its nodes live, AWS's overlap rule holds against the shards already
//! given out, and a dead node is replaced by the next in the gateway's
//! order while the live ones stay (`openvpc_hyperplane::shard`).
//!
//! Every server runs the keeper; its plan is a pure function of what the
//! fleet index holds (gateways taken in ID order), so two servers write the
//! same shards and a race between them is harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openvpc_hyperplane::shard::{Assigner, DEFAULT_SHARD_SIZE, Shard};
use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError};
use crate::store::{Store, StoreError};

/// Where shards are kept.
pub const SHARDS_PREFIX: &str = "shards/";

/// How often the keeper looks at the fleet.
pub const KEEP_EVERY: Duration = Duration::from_millis(250);

/// The store key of a gateway's shard.
pub fn shard_key(region: &str, gateway_id: &str) -> String {
    format!("{SHARDS_PREFIX}{region}/{gateway_id}")
}

/// A shard as stored: hyperplane node IDs, in the gateway's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredShard {
    pub nodes: Vec<String>,
}

/// What one region holds, as the keeper reads it.
#[derive(Debug, Default, Clone)]
pub struct RegionShards {
    /// The live NAT gateways, by ID.
    pub gateways: Vec<String>,
    /// The live hyperplane nodes, by ID.
    pub nodes: Vec<String>,
    /// Gateway ID → its stored shard.
    pub stored: BTreeMap<String, Vec<String>>,
}

/// A change the keeper makes: a gateway's new shard, or `None` to delete
/// the shard of a gateway that is gone.
pub type Change = (String, Option<Vec<String>>);

/// The changes that give every live gateway a shard of `k` live nodes (or
/// all of them, when fewer live) and remove the shards of gateways gone.
/// Shards whose nodes all live stay as they are.
pub fn plan(region: &RegionShards, k: usize) -> Vec<Change> {
    let mut changes: Vec<Change> = region
        .stored
        .keys()
        .filter(|g| region.gateways.binary_search(g).is_err())
        .map(|g| (g.clone(), None))
        .collect();
    let Ok(mut assigner) = Assigner::new(&region.nodes, k) else {
        // No node lives: shards wait, unchanged, for one.
        return changes;
    };
    let size = assigner.k();
    let whole = |nodes: &[String]| {
        nodes.len() == size && nodes.iter().all(|n| region.nodes.binary_search(n).is_ok())
    };
    // Shards that stand are recorded first, so the others keep clear of them.
    for g in &region.gateways {
        if let Some(nodes) = region.stored.get(g).filter(|n| whole(n)) {
            assigner.record(&Shard {
                nodes: nodes.clone(),
            });
        }
    }
    for g in &region.gateways {
        let assignment = match region.stored.get(g) {
            Some(nodes) if whole(nodes) => continue,
            Some(nodes) => assigner.repair(
                g,
                &Shard {
                    nodes: nodes.clone(),
                },
            ),
            None => assigner.assign(g),
        };
        changes.push((g.clone(), Some(assignment.shard.nodes)));
    }
    changes
}

/// Runs the plan of every region the fleet knows and writes it.
pub fn keep_once(fleet: &Fleet) -> Result<usize, StoreError> {
    let store = fleet.store();
    let mut written = 0;
    for (region, shards) in fleet.region_shards() {
        for (gateway, nodes) in plan(&shards, DEFAULT_SHARD_SIZE) {
            let key = shard_key(&region, &gateway);
            match nodes {
                Some(nodes) => {
                    let value = serde_json::to_vec(&StoredShard { nodes })
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    store.put(key.as_bytes(), &value)?;
                }
                None => {
                    store.delete(key.as_bytes())?;
                }
            }
            written += 1;
        }
    }
    Ok(written)
}

/// Starts the thread that runs [`keep_once`] every [`KEEP_EVERY`]; it stops
/// when the last `Arc` of the fleet is dropped.
pub fn spawn_keeper(fleet: &Arc<Fleet>) -> Result<std::thread::JoinHandle<()>, FleetError> {
    let weak: Weak<Fleet> = Arc::downgrade(fleet);
    std::thread::Builder::new()
        .name("shard-keeper".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(KEEP_EVERY);
                let Some(fleet) = weak.upgrade() else {
                    return;
                };
                match fleet.catch_up().map_err(|e| e.to_string()).and_then(|_| {
                    keep_once(&fleet).map_err(|e| e.to_string())
                }) {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "keeping the NAT gateways' shards failed; retrying");
                    }
                    Err(_) => {}
                }
            }
        })
        .map_err(FleetError::Thread)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn apply(region: &mut RegionShards, changes: &[Change]) {
        for (g, nodes) in changes {
            match nodes {
                Some(n) => {
                    region.stored.insert(g.clone(), n.clone());
                }
                None => {
                    region.stored.remove(g);
                }
            }
        }
    }

    /// spec 14: every gateway gets k live nodes; a shard whose nodes live
    /// stays; a dead node is replaced and the live one kept; a gateway gone
    /// loses its shard.
    #[test]
    fn shards_are_given_kept_repaired_and_removed() {
        let mut r = RegionShards {
            gateways: ids(&["nat-1", "nat-2", "nat-3"]),
            nodes: ids(&["hp1", "hp2", "hp3", "hp4"]),
            stored: BTreeMap::new(),
        };
        let first = plan(&r, 2);
        assert_eq!(first.len(), 3);
        apply(&mut r, &first);
        for nodes in r.stored.values() {
            assert_eq!(nodes.len(), 2);
            assert_ne!(nodes[0], nodes[1]);
        }
        assert!(plan(&r, 2).is_empty(), "nothing changes while all live");

        let nat1 = r.stored["nat-1"].clone();
        let (dead, kept) = (nat1[0].clone(), nat1[1].clone());
        r.nodes.retain(|n| *n != dead);
        let repair = plan(&r, 2);
        apply(&mut r, &repair);
        let now = &r.stored["nat-1"];
        assert!(now.contains(&kept) && !now.contains(&dead), "{now:?}");
        assert!(r.stored.values().all(|s| !s.contains(&dead)));

        r.gateways.retain(|g| g != "nat-2");
        let gone = plan(&r, 2);
        assert!(gone.contains(&("nat-2".to_owned(), None)));
    }

    #[test]
    fn without_nodes_shards_wait() {
        let r = RegionShards {
            gateways: ids(&["nat-1"]),
            nodes: vec![],
            stored: BTreeMap::from([("nat-1".to_owned(), ids(&["hp1", "hp2"]))]),
        };
        assert!(plan(&r, 2).is_empty());
    }
}
