//! The host registry and instance placement. A host is a JSON
//! [`HostRecord`] at `hosts/{region}/{host_id}`; each placed instance leaves
//! a marker at `placements/{region}/{host_id}/{instance_id}`, so a launch
//! counts a host's instances by reading that host's markers only, never the
//! region's instances.
//!
//! Placement is best effort under concurrency: two launches racing may both
//! pick the same least-loaded host. That unbalances, it never breaks.

use std::collections::BTreeMap;

use openvpc_model::host::{HostRecord, HostRegistration};

use crate::records::subnet::zones;
use crate::store::{Store, StoreError};

/// Where hosts are registered.
pub const HOSTS_PREFIX: &str = "hosts/";
/// Where placement markers live (cleared with the resources by moto's reset).
pub const PLACEMENTS_PREFIX: &str = "placements/";

/// The store key of a host.
pub fn host_key(region: &str, host_id: &str) -> String {
    format!("{HOSTS_PREFIX}{region}/{host_id}")
}

/// The store key of an instance's placement marker.
pub fn placement_key(region: &str, host_id: &str, instance_id: &str) -> Vec<u8> {
    format!("{PLACEMENTS_PREFIX}{region}/{host_id}/{instance_id}").into_bytes()
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("the host ID {0:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.'")]
    BadHostId(String),
    #[error("the region {0:?} is not valid: use a region name such as us-east-1")]
    BadRegion(String),
    #[error(
        "the availability zone {zone:?} is not one of region {region}'s ({known}); start the agent with --az set to one of them"
    )]
    UnknownZone {
        zone: String,
        region: String,
        known: String,
    },
    #[error("the stored host {0} is unreadable; register the host again")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// True for a usable host ID: 1 to 64 letters, digits, '-', '_' or '.'.
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// True for a name usable as a region in keys (`us-east-1`).
pub fn valid_region(region: &str) -> bool {
    valid_name(region) && !region.contains('.')
}

/// `Err` unless the region and host ID a host sends can name keys (what
/// each of a host's writes checks first).
pub fn check_host(region: &str, host_id: &str) -> Result<(), RegistryError> {
    if !valid_region(region) {
        return Err(RegistryError::BadRegion(region.to_owned()));
    }
    if !valid_name(host_id) {
        return Err(RegistryError::BadHostId(host_id.to_owned()));
    }
    Ok(())
}

/// Records (or updates) a host; `now` is Unix seconds.
pub fn register(
    store: &dyn Store,
    region: &str,
    registration: &HostRegistration,
    now: i64,
) -> Result<HostRecord, RegistryError> {
    check_host(region, &registration.host_id)?;
    let known = zones(region);
    if !known
        .iter()
        .any(|z| z.name == registration.availability_zone)
    {
        return Err(RegistryError::UnknownZone {
            zone: registration.availability_zone.clone(),
            region: region.to_owned(),
            known: known
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let record = HostRecord {
        host_id: registration.host_id.clone(),
        region: region.to_owned(),
        availability_zone: registration.availability_zone.clone(),
        underlay_ip: registration.underlay_ip,
        registered_at: now,
    };
    let value = serde_json::to_vec(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    store.put(host_key(region, &record.host_id).as_bytes(), &value)?;
    Ok(record)
}

/// How many instances are placed on `host_id`: its markers, no instance
/// records read.
pub fn placed_count(store: &dyn Store, region: &str, host_id: &str) -> Result<usize, StoreError> {
    let prefix = placement_key(region, host_id, "");
    Ok(store.range(&prefix, None, usize::MAX)?.len())
}

/// Every host registered in `region`, sorted by ID.
pub fn hosts(store: &dyn Store, region: &str) -> Result<Vec<HostRecord>, RegistryError> {
    let prefix = format!("{HOSTS_PREFIX}{region}/");
    store
        .range(prefix.as_bytes(), None, usize::MAX)?
        .into_iter()
        .map(|kv| {
            serde_json::from_slice(&kv.value)
                .map_err(|_| RegistryError::Corrupt(String::from_utf8_lossy(&kv.key).into_owned()))
        })
        .collect()
}

/// Chooses hosts for the instances of one launch in one zone.
#[derive(Debug)]
pub struct Placer {
    /// Instances per host of the zone, this launch's included.
    load: BTreeMap<String, usize>,
}

impl Placer {
    /// The placer over `load`: each host of the launch's zone with the
    /// instances already placed on it. The caller reads these from the store
    /// (the API, inside its launch transaction); `None` when there is no
    /// host to place on.
    pub fn new(load: impl IntoIterator<Item = (String, usize)>) -> Option<Placer> {
        let load: BTreeMap<String, usize> = load.into_iter().collect();
        (!load.is_empty()).then_some(Placer { load })
    }

    /// The host for the next instance: the least loaded, ties broken by host
    /// ID. Counts it there.
    pub fn place(&mut self) -> Option<String> {
        // Sorted by ID, and `min_by_key` keeps the first of equals.
        let (host, count) = self.load.iter_mut().min_by_key(|(_, count)| **count)?;
        *count += 1;
        Some(host.clone())
    }
}
