//! The shuffle shards of NAT gateways and network load balancers (DESIGN.md,
//! "Hyperplane"; spec 14, issues 16 and 17): each live NAT gateway and
//! each load balancer that is not failed (named by its gateway name,
//! `elb-{id}`) of a region gets k of the region's live hyperplane
//! nodes, kept at `shards/{region}/{gateway_id}` so a shard stays put while
//! its nodes live, AWS's overlap rule holds against the shards already
//! given out, and a dead node is replaced by the next in the gateway's
//! order while the live ones stay (`openvpc_hyperplane::shard`).
//!
//! A shard is a list of places: a node's index is its slice of each of the
//! gateway's addresses' ports (`openvpc_hyperplane::nat::owner_of`). A
//! repair therefore keeps every surviving node at its index and puts the
//! replacement in the dead node's place ([`keep_places`]); with no node to
//! replace it, the dead node keeps its place and its buddy serves it.
//!
//! Every server runs the keeper; its plan is a pure function of what the
//! fleet index holds (gateways taken in ID order), so two servers write the
//! same shards and a race between them is harmless.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use openvpc_hyperplane::shard::{Assigner, DEFAULT_SHARD_SIZE, Shard};
use openvpc_model::node::NodeRecord;
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

/// The live hyperplane nodes and the shards, as the lifecycles
/// (`nat_lifecycle`, `lb_lifecycle`) read them from the fleet index.
#[derive(Debug, Clone, Default)]
pub struct Placement {
    /// Region → its live hyperplane nodes (with what each serves).
    pub nodes: BTreeMap<String, Vec<NodeRecord>>,
    /// Shard key (`shards/{region}/{gateway_id}`) → its node IDs.
    pub shards: BTreeMap<String, Vec<String>>,
}

impl Placement {
    /// The live nodes of the shard of `gateway_id` in `region`. A node's
    /// record existing is the node being alive (the sweeper removes it when
    /// its heartbeats stop), as for routes.
    pub fn live_shard(&self, region: &str, gateway_id: &str) -> Vec<&NodeRecord> {
        let shard = self
            .shards
            .get(&shard_key(region, gateway_id))
            .map_or(&[][..], Vec::as_slice);
        self.nodes
            .get(region)
            .into_iter()
            .flatten()
            .filter(|n| shard.contains(&n.node_id))
            .collect()
    }
}

/// A shard as stored: hyperplane node IDs, in the gateway's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredShard {
    pub nodes: Vec<String>,
}

/// What one region holds, as the keeper reads it.
#[derive(Debug, Default, Clone)]
pub struct RegionShards {
    /// The live NAT gateways and load balancers, by gateway ID.
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
        let nodes = match region.stored.get(g) {
            Some(nodes) if whole(nodes) => continue,
            Some(nodes) => {
                let repaired = assigner.repair(
                    g,
                    &Shard {
                        nodes: nodes.clone(),
                    },
                );
                let placed = keep_places(nodes, &repaired.shard.nodes);
                if placed == *nodes {
                    // A dead node with no live node to take its place: it
                    // keeps the place (its buddy serves it) until one joins.
                    continue;
                }
                placed
            }
            None => assigner.assign(g).shard.nodes,
        };
        changes.push((g.clone(), Some(nodes)));
    }
    changes
}

/// The repaired shard `repaired` (the assigner's pick, in the gateway's
/// order) laid out over the places of the stored shard `old`: a node's
/// place is its slice of each address's ports, so every node of `old` that
/// stays keeps its index (moving it would hand its flows' ports to another
/// node), and the new nodes fill the holes in order, then follow at the
/// end. A hole left with no new node keeps its old, dead node: its buddy
/// serves the place until a live node can take it, and the other places'
/// slices do not move meanwhile.
pub fn keep_places(old: &[String], repaired: &[String]) -> Vec<String> {
    let mut fresh = repaired.iter().filter(|n| !old.contains(n));
    let mut placed: Vec<String> = old
        .iter()
        .map(|n| {
            if repaired.contains(n) {
                n.clone()
            } else {
                fresh.next().unwrap_or(n).clone()
            }
        })
        .collect();
    placed.extend(fresh.cloned());
    placed
}

/// Runs the plan of every region the fleet knows and writes it, then moves
/// NAT gateways along their lifecycle (`nat_lifecycle`: pending to
/// available or failed, deleting to deleted) and load balancers along
/// theirs (`lb_lifecycle`: provisioning to active or failed, active to
/// impaired and back) on what the index holds. Returns the shards written
/// and gateways and load balancers moved.
pub fn keep_once(fleet: &Fleet) -> Result<usize, StoreError> {
    let written = keep_shards(fleet)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let moved = super::nat_lifecycle::settle_once(fleet, now_ms, Default::default())
        .map_err(|e| StoreError::Backend(format!("{}: {}", e.code, e.message)))?;
    let lbs_moved = super::lb_lifecycle::settle_once(fleet, now_ms, Default::default())
        .map_err(|e| StoreError::Backend(format!("{}: {}", e.code, e.message)))?;
    Ok(written + moved.len() + lbs_moved.len())
}

/// Runs the plan of every region the fleet knows and writes it.
fn keep_shards(fleet: &Fleet) -> Result<usize, StoreError> {
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
                        tracing::warn!(error = %e, "keeping the hyperplane shards failed; retrying");
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
        let before = r.stored.clone();
        r.nodes.retain(|n| *n != dead);
        let repair = plan(&r, 2);
        apply(&mut r, &repair);
        let now = &r.stored["nat-1"];
        assert!(now.contains(&kept) && !now.contains(&dead), "{now:?}");
        assert!(r.stored.values().all(|s| !s.contains(&dead)));
        // Every survivor keeps its place (its port slice); the newcomer
        // takes the dead node's.
        for (g, old) in &before {
            let new = &r.stored[g];
            assert_eq!(new.len(), old.len(), "{g}");
            for (i, n) in old.iter().enumerate() {
                if *n != dead {
                    assert_eq!(new[i], *n, "{g}: {n} kept place {i}");
                }
            }
        }

        r.gateways.retain(|g| g != "nat-2");
        let gone = plan(&r, 2);
        assert!(gone.contains(&("nat-2".to_owned(), None)));
    }

    /// Issue 16: a node's index in its shard is its port slice, so a
    /// repair moves no survivor; the new node fills the hole, and a shard
    /// that grows takes the new node at its end.
    #[test]
    fn repair_keeps_every_survivor_at_its_place() {
        assert_eq!(
            keep_places(&ids(&["a", "dead", "c"]), &ids(&["c", "n", "a"])),
            ids(&["a", "n", "c"])
        );
        assert_eq!(
            keep_places(&ids(&["dead", "b"]), &ids(&["n", "b"])),
            ids(&["n", "b"])
        );
        // No node to take the place: the dead node keeps it (its buddy
        // serves it) so the survivor's slice does not change.
        assert_eq!(
            keep_places(&ids(&["dead", "b"]), &ids(&["b"])),
            ids(&["dead", "b"])
        );
        // A shard given out on a smaller fleet grows at its end.
        assert_eq!(
            keep_places(&ids(&["a"]), &ids(&["n", "a"])),
            ids(&["a", "n"])
        );
    }

    /// A shard whose dead node has no replacement is left as stored (no
    /// write every round), and repaired once a node joins.
    #[test]
    fn a_dead_node_without_a_replacement_keeps_its_place() {
        let mut r = RegionShards {
            gateways: ids(&["nat-1"]),
            nodes: ids(&["hp2"]),
            stored: BTreeMap::from([("nat-1".to_owned(), ids(&["hp1", "hp2"]))]),
        };
        assert!(plan(&r, 2).is_empty());
        r.nodes = ids(&["hp2", "hp3"]);
        assert_eq!(
            plan(&r, 2),
            [("nat-1".to_owned(), Some(ids(&["hp3", "hp2"])))]
        );
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
