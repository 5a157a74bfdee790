//! The registry of the nodes that follow a region's server (DESIGN.md,
//! "Edge" and "Hyperplane"): a live node is a JSON [`NodeRecord`] at
//! `{role prefix}{region}/{node_id}` (`edges/…`, `hyperplane/…`), written
//! when it registers and again at every heartbeat with a later expiry, and
//! deleted when it leaves cleanly or when its expiry passes (the [`sweep`],
//! which every server runs). The record existing is the node being alive:
//! the fleet index compiles internet-gateway routes to the underlay
//! addresses of the region's edges, and the API shows those routes `active`
//! only while one exists. A hyperplane node's record also keeps the NAT
//! gateways its last heartbeat said it serves, which the NAT lifecycle
//! reads (`nat_lifecycle`).
//!
//! Also the region's settings (`settings/{region}`), which `server` writes
//! at start from its flags and every server and edge reads.

use ipnet::Ipv4Net;
use openvpc_model::node::{EDGE_TTL_MS, NodeRecord, NodeRegistration};

use super::registry::{RegistryError, check_host};
use crate::records::region::{DEFAULTS_KEY, InternetPolicy, RegionSettings, settings_key};
use crate::store::{Compare, Op, Store, StoreError, Txn, TxnResult};

/// Where edge nodes are registered.
pub const EDGES_PREFIX: &str = "edges/";
/// Where hyperplane nodes are registered.
pub const HYPERPLANE_PREFIX: &str = "hyperplane/";

/// What a node does for the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Translates public addresses (internet gateways).
    Edge,
    /// Keeps stateful flows (NAT gateways, load balancers).
    Hyperplane,
}

impl Role {
    pub const ALL: [Role; 2] = [Role::Edge, Role::Hyperplane];

    /// The store prefix its nodes are registered under.
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Edge => EDGES_PREFIX,
            Role::Hyperplane => HYPERPLANE_PREFIX,
        }
    }

    /// The role of a store key, with the region and node ID it names.
    pub fn of_key(key: &str) -> Option<(Role, &str, &str)> {
        Role::ALL.into_iter().find_map(|role| {
            let rest = key.strip_prefix(role.prefix())?;
            let (region, id) = rest.split_once('/')?;
            (!id.contains('/')).then_some((role, region, id))
        })
    }
}

/// The store key of a node.
pub fn node_key(role: Role, region: &str, node_id: &str) -> String {
    format!("{}{region}/{node_id}", role.prefix())
}

/// Records (or refreshes) a live node; `now_ms` is Unix milliseconds. A
/// node that registers again keeps its first registration time.
pub fn register(
    store: &dyn Store,
    role: Role,
    region: &str,
    registration: &NodeRegistration,
    now_ms: u64,
) -> Result<NodeRecord, RegistryError> {
    check_host(region, &registration.node_id)?;
    let key = node_key(role, region, &registration.node_id);
    let registered_at = store
        .get(key.as_bytes())?
        .and_then(|kv| serde_json::from_slice::<NodeRecord>(&kv.value).ok())
        .filter(|old| old.underlay_ip == registration.underlay_ip)
        .map_or((now_ms / 1000) as i64, |old| old.registered_at);
    let record = NodeRecord {
        node_id: registration.node_id.clone(),
        region: region.to_owned(),
        underlay_ip: registration.underlay_ip,
        registered_at,
        expires_at_ms: now_ms + EDGE_TTL_MS,
        serving: registration.serving.clone(),
        target_health: registration.target_health.clone(),
    };
    let value = serde_json::to_vec(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    store.put(key.as_bytes(), &value)?;
    Ok(record)
}

/// Removes a node at once (it is stopping).
pub fn deregister(
    store: &dyn Store,
    role: Role,
    region: &str,
    node_id: &str,
) -> Result<(), RegistryError> {
    check_host(region, node_id)?;
    store.delete(node_key(role, region, node_id).as_bytes())?;
    Ok(())
}

/// Every live node of `role` in `region`, sorted by ID (unreadable records
/// are left out).
pub fn nodes(store: &dyn Store, role: Role, region: &str) -> Result<Vec<NodeRecord>, StoreError> {
    let prefix = format!("{}{region}/", role.prefix());
    Ok(store
        .range(prefix.as_bytes(), None, usize::MAX)?
        .into_iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect())
}

/// Deletes every node record (of any role and region) whose expiry is
/// before `now_ms`: the node stopped sending heartbeats. Each delete is
/// conditional on the record being the one read, so a heartbeat that lands
/// meanwhile wins. Returns the keys removed.
pub fn sweep(store: &dyn Store, now_ms: u64) -> Result<Vec<String>, StoreError> {
    let mut removed = Vec::new();
    for role in Role::ALL {
        for kv in store.range(role.prefix().as_bytes(), None, usize::MAX)? {
            // An unreadable record cannot be alive: it goes too.
            let expired = serde_json::from_slice::<NodeRecord>(&kv.value)
                .map_or(true, |r| r.expires_at_ms < now_ms);
            if !expired {
                continue;
            }
            let txn = Txn::new()
                .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                .then(Op::Delete(kv.key.clone()));
            if let TxnResult::Committed { .. } = store.txn(txn)? {
                removed.push(String::from_utf8_lossy(&kv.key).into_owned());
            }
        }
    }
    Ok(removed)
}

/// How often a server looks for nodes that went quiet.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the thread that runs [`sweep`] every [`SWEEP_EVERY`]; it stops
/// when the last `Arc` of the fleet is dropped.
pub fn spawn_sweeper(
    fleet: &std::sync::Arc<super::Fleet>,
) -> Result<std::thread::JoinHandle<()>, super::FleetError> {
    let weak = std::sync::Arc::downgrade(fleet);
    std::thread::Builder::new()
        .name("edge-sweeper".into())
        .spawn(move || {
            let mut failing = false;
            loop {
                std::thread::sleep(SWEEP_EVERY);
                let Some(fleet) = weak.upgrade() else {
                    return;
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                match sweep(fleet.store().as_ref(), now) {
                    Ok(removed) => {
                        failing = false;
                        for key in removed {
                            tracing::warn!(node = %key, "node stopped answering; removed, hosts send to the others");
                        }
                    }
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "sweeping quiet edge nodes failed; retrying");
                    }
                    Err(_) => {}
                }
            }
        })
        .map_err(super::FleetError::Thread)
}

/// Why the region's settings could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("the public pool is empty: give `--public-pool` at least one IPv4 CIDR")]
    EmptyPool,
    #[error(
        "the stored settings of region {region} are unreadable ({source}); delete the key settings/{region} and restart the server"
    )]
    Unreadable {
        region: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes the region's settings at server start: `pool` when given (else
/// what is stored, else the default), and the internet policy. Returns what
/// the region now has.
pub fn configure_region(
    store: &dyn Store,
    region: &str,
    pool: Option<&[Ipv4Net]>,
    internet: InternetPolicy,
) -> Result<RegionSettings, SettingsError> {
    let key = settings_key(region);
    let stored = match store.get(key.as_bytes())? {
        Some(kv) => Some(serde_json::from_slice::<RegionSettings>(&kv.value).map_err(
            |source| SettingsError::Unreadable {
                region: region.to_owned(),
                source,
            },
        )?),
        None => None,
    };
    let public_pool = match pool {
        Some([]) => return Err(SettingsError::EmptyPool),
        Some(pool) => {
            let mut pool: Vec<Ipv4Net> = pool.iter().map(Ipv4Net::trunc).collect();
            pool.sort();
            pool.dedup();
            pool
        }
        None => stored
            .as_ref()
            .map_or_else(crate::records::region::default_public_pool, |s| {
                s.public_pool.clone()
            }),
    };
    let settings = RegionSettings {
        public_pool,
        internet,
    };
    let defaults = RegionSettings {
        public_pool: crate::records::region::default_public_pool(),
        internet,
    };
    for (key, wanted) in [(key.as_str(), &settings), (DEFAULTS_KEY, &defaults)] {
        let current = store
            .get(key.as_bytes())?
            .and_then(|kv| serde_json::from_slice::<RegionSettings>(&kv.value).ok());
        if current.as_ref() != Some(wanted) {
            let value = serde_json::to_vec(wanted).map_err(|source| SettingsError::Unreadable {
                region: region.to_owned(),
                source,
            })?;
            store.put(key.as_bytes(), &value)?;
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn reg(id: &str, ip: &str) -> NodeRegistration {
        NodeRegistration {
            node_id: id.into(),
            underlay_ip: ip.parse().unwrap(),
            serving: Vec::new(),
            target_health: Vec::new(),
        }
    }

    /// A node that stops its heartbeats is gone after its TTL, and only then.
    #[test]
    fn a_silent_edge_is_swept_after_its_ttl() {
        let store = MemoryStore::new();
        register(
            &store,
            Role::Edge,
            "us-east-1",
            &reg("e1", "10.254.0.2"),
            1_000,
        )
        .unwrap();
        register(
            &store,
            Role::Edge,
            "us-east-1",
            &reg("e2", "10.254.0.3"),
            1_000,
        )
        .unwrap();
        assert!(sweep(&store, 1_000 + EDGE_TTL_MS).unwrap().is_empty());
        // e2 keeps beating; e1 went quiet.
        register(
            &store,
            Role::Edge,
            "us-east-1",
            &reg("e2", "10.254.0.3"),
            3_500,
        )
        .unwrap();
        let removed = sweep(&store, 1_001 + EDGE_TTL_MS).unwrap();
        assert_eq!(removed, vec!["edges/us-east-1/e1".to_string()]);
        let left: Vec<String> = nodes(&store, Role::Edge, "us-east-1")
            .unwrap()
            .into_iter()
            .map(|e| e.node_id)
            .collect();
        assert_eq!(left, vec!["e2".to_string()]);
    }

    #[test]
    fn a_heartbeat_keeps_the_first_registration_time() {
        let store = MemoryStore::new();
        let first = register(
            &store,
            Role::Edge,
            "us-east-1",
            &reg("e1", "10.254.0.2"),
            5_000,
        )
        .unwrap();
        let again = register(
            &store,
            Role::Edge,
            "us-east-1",
            &reg("e1", "10.254.0.2"),
            9_000,
        )
        .unwrap();
        assert_eq!(first.registered_at, again.registered_at);
        assert_eq!(again.expires_at_ms, 9_000 + EDGE_TTL_MS);
        deregister(&store, Role::Edge, "us-east-1", "e1").unwrap();
        assert!(nodes(&store, Role::Edge, "us-east-1").unwrap().is_empty());
    }

    #[test]
    fn bad_names_are_refused() {
        let store = MemoryStore::new();
        assert!(register(&store, Role::Edge, "us-east-1", &reg("a/b", "10.0.0.1"), 0).is_err());
        assert!(register(&store, Role::Edge, "us east", &reg("e1", "10.0.0.1"), 0).is_err());
    }

    #[test]
    fn settings_keep_the_stored_pool_unless_given_one() {
        let store = MemoryStore::new();
        let pool: Vec<Ipv4Net> = vec!["203.0.113.0/24".parse().unwrap()];
        let s = configure_region(&store, "r1", Some(&pool), InternetPolicy::Edges).unwrap();
        assert_eq!(s.public_pool, pool);
        let s = configure_region(&store, "r1", None, InternetPolicy::Edges).unwrap();
        assert_eq!(s.public_pool, pool, "a restart without the flag keeps it");
        assert!(matches!(
            configure_region(&store, "r1", Some(&[]), InternetPolicy::Edges),
            Err(SettingsError::EmptyPool)
        ));
        let fresh = configure_region(&store, "r2", None, InternetPolicy::Assumed).unwrap();
        assert_eq!(
            fresh.public_pool,
            crate::records::region::default_public_pool()
        );
        // Regions no server was started for follow the last server's policy.
        let defaults: RegionSettings =
            serde_json::from_slice(&store.get(DEFAULTS_KEY.as_bytes()).unwrap().unwrap().value)
                .unwrap();
        assert_eq!(defaults.internet, InternetPolicy::Assumed);
    }
}
