//! What hosts last said about their instances' setup health, kept per host
//! as a JSON [`HostHealth`] at `health/{region}/{host_id}`: the agent's
//! report (every instance it runs: `initializing`, `ok` or `impaired` with
//! the reason) with the server time it arrived. The report is also the
//! host's heartbeat: DescribeInstanceStatus shows the instances of a host
//! silent for longer than [`HOST_SILENT_AFTER_SECS`] as impaired.
//!
//! Agents report every few seconds; the record is rewritten only when the
//! report changed or the stored one is [`REWRITE_AFTER_SECS`] old, so a
//! quiet fleet costs the store one small write per host and half-minute.
//! These keys are outside the account state (`r/`) and the fleet index
//! ignores them.

use openvpc_model::host::{HealthReport, InstanceHealth};
use serde::{Deserialize, Serialize};

use super::registry::{RegistryError, check_host};
use crate::store::{Store, StoreError};

/// Where hosts' health reports live.
pub const HEALTH_PREFIX: &str = "health/";

/// A stored report older than this is rewritten even if unchanged, so its
/// time says the host is still there.
pub const REWRITE_AFTER_SECS: i64 = 30;

/// A host whose last report is older than this is not reporting: its
/// instances' system status is `impaired`. Agents report every 10 s and
/// the record is refreshed every [`REWRITE_AFTER_SECS`], so a live host's
/// record is at most about 40 s old.
pub const HOST_SILENT_AFTER_SECS: i64 = 90;

/// The store key of a host's health.
pub fn health_key(region: &str, host_id: &str) -> String {
    format!("{HEALTH_PREFIX}{region}/{host_id}")
}

/// A host's last report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostHealth {
    pub host_id: String,
    /// Unix seconds (the server's clock) the report was stored at.
    pub reported_at: i64,
    pub instances: Vec<InstanceHealth>,
}

impl HostHealth {
    /// What the host said about `instance_id`, if anything.
    pub fn instance(&self, instance_id: &str) -> Option<&InstanceHealth> {
        self.instances.iter().find(|i| i.instance_id == instance_id)
    }

    /// True if the host reported within [`HOST_SILENT_AFTER_SECS`] of `now`.
    pub fn fresh(&self, now: i64) -> bool {
        now - self.reported_at <= HOST_SILENT_AFTER_SECS
    }
}

/// The health `host_id` of `region` last reported, if it ever did.
pub fn load(
    store: &dyn Store,
    region: &str,
    host_id: &str,
) -> Result<Option<HostHealth>, StoreError> {
    let Some(kv) = store.get(health_key(region, host_id).as_bytes())? else {
        return Ok(None);
    };
    match serde_json::from_slice(&kv.value) {
        Ok(h) => Ok(Some(h)),
        Err(e) => {
            // An unreadable record is as good as none: the next report
            // replaces it.
            tracing::warn!(host = host_id, error = %e, "unreadable host health ignored");
            Ok(None)
        }
    }
}

/// Stores a host's report (at `now`, Unix seconds) unless the same report
/// is stored and fresh. True if it wrote.
pub fn record(
    store: &dyn Store,
    region: &str,
    report: &HealthReport,
    now: i64,
) -> Result<bool, RegistryError> {
    let id = &report.host_id;
    check_host(region, id)?;
    let mut instances = report.instances.clone();
    instances.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    if let Some(old) = load(store, region, id)?
        && old.instances == instances
        && now - old.reported_at < REWRITE_AFTER_SECS
    {
        return Ok(false);
    }
    let record = HostHealth {
        host_id: id.clone(),
        reported_at: now,
        instances,
    };
    let value = serde_json::to_vec(&record).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
    store.put(health_key(region, id).as_bytes(), &value)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use openvpc_model::host::InstanceSetup;

    fn report(setup: InstanceSetup) -> HealthReport {
        HealthReport {
            host_id: "h1".into(),
            instances: vec![InstanceHealth {
                instance_id: "i-1".into(),
                setup,
                reason: None,
                since: 5,
            }],
        }
    }

    #[test]
    fn an_unchanged_report_is_rewritten_only_when_old() {
        let store = MemoryStore::new();
        assert!(record(&store, "us-east-1", &report(InstanceSetup::Ok), 100).unwrap());
        assert!(!record(&store, "us-east-1", &report(InstanceSetup::Ok), 110).unwrap());
        assert!(record(&store, "us-east-1", &report(InstanceSetup::Impaired), 111).unwrap());
        assert!(
            record(
                &store,
                "us-east-1",
                &report(InstanceSetup::Impaired),
                111 + REWRITE_AFTER_SECS
            )
            .unwrap()
        );
        let h = load(&store, "us-east-1", "h1").unwrap().unwrap();
        assert_eq!(h.reported_at, 111 + REWRITE_AFTER_SECS);
        assert_eq!(h.instance("i-1").unwrap().setup, InstanceSetup::Impaired);
        assert!(h.fresh(h.reported_at + HOST_SILENT_AFTER_SECS));
        assert!(!h.fresh(h.reported_at + HOST_SILENT_AFTER_SECS + 1));
    }

    #[test]
    fn bad_names_are_refused() {
        let store = MemoryStore::new();
        let mut r = report(InstanceSetup::Ok);
        r.host_id = "a/b".into();
        assert!(matches!(
            record(&store, "us-east-1", &r, 1),
            Err(RegistryError::BadHostId(_))
        ));
        assert!(matches!(
            record(&store, "us east", &report(InstanceSetup::Ok), 1),
            Err(RegistryError::BadRegion(_))
        ));
    }
}
