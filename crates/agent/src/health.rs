//! The setup health of the instances this agent runs: for each instance,
//! whether its configuration converted, its namespace and each TAP were
//! made, and each interface's DHCP client got an address in time. The
//! reconciler and the DHCP threads record steps; the summary per instance
//! (`initializing`, `ok`, `impaired` with the first failure as reason) is
//! what the agent reports to the server (DescribeInstanceStatus), writes to
//! `status.json` (`openvpc lab status`) and to a small file per instance
//! under [`INSTANCE_HEALTH_DIR`] (`openvpc exec` reads it), and logs when
//! it changes.
//!
//! The summary is sans-IO ([`summarize`]); [`Health`] adds the lock, the
//! log lines and the per-instance files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use openvpc_model::host::{HealthReport, InstanceHealth, InstanceSetup};

/// Where a running agent keeps one JSON [`InstanceHealth`] per instance,
/// named `{instance ID}.json`: machine-wide, like the namespaces themselves.
pub const INSTANCE_HEALTH_DIR: &str = "/run/openvpc/instances";

/// The file of an instance's health under `dir`.
pub fn health_file(dir: &Path, instance_id: &str) -> PathBuf {
    dir.join(format!("{instance_id}.json"))
}

/// The health an agent on this machine last wrote for `instance_id`, if any.
pub fn read_local(instance_id: &str) -> Option<InstanceHealth> {
    crate::netns::check_name(instance_id).ok()?;
    let bytes = std::fs::read(health_file(Path::new(INSTANCE_HEALTH_DIR), instance_id)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One setup step of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Converting the ENI's desired state into router configuration.
    Config,
    Namespace,
    Tap,
    Dhcp,
}

impl Step {
    fn noun(self) -> &'static str {
        match self {
            Step::Config => "configuration",
            Step::Namespace => "network namespace",
            Step::Tap => "TAP",
            Step::Dhcp => "DHCP",
        }
    }
}

/// Where one step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Ok,
    Failed(String),
}

/// The steps of one instance: the instance-wide ones (config, namespace)
/// under device `None`, the per-interface ones (TAP, DHCP) under its device
/// index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steps {
    steps: BTreeMap<(Option<u32>, Step), StepState>,
}

impl Steps {
    /// Records a step's state.
    pub fn set(&mut self, device: Option<u32>, step: Step, state: StepState) {
        self.steps.insert((device, step), state);
    }

    /// Forgets one interface's steps.
    pub fn drop_device(&mut self, device: u32) {
        self.steps.retain(|(d, _), _| *d != Some(device));
    }

    fn has(&self, device: Option<u32>, step: Step) -> bool {
        self.steps.contains_key(&(device, step))
    }
}

/// The summary of an instance's steps: impaired if any failed (the reason
/// names the first, instance-wide steps before interfaces), initializing
/// while any is pending or none was recorded, ok otherwise.
pub fn summarize(steps: &Steps) -> (InstanceSetup, Option<String>) {
    let mut pending = steps.steps.is_empty();
    for ((device, step), state) in &steps.steps {
        match state {
            StepState::Failed(why) => {
                let place = device.map_or(String::new(), |d| {
                    format!("{} ", crate::instance::ifname(d))
                });
                return (
                    InstanceSetup::Impaired,
                    Some(format!("{place}{} failed: {why}", step.noun())),
                );
            }
            StepState::Pending => pending = true,
            StepState::Ok => {}
        }
    }
    if pending {
        (InstanceSetup::Initializing, None)
    } else {
        (InstanceSetup::Ok, None)
    }
}

#[derive(Debug)]
struct Entry {
    steps: Steps,
    shown: InstanceHealth,
}

#[derive(Debug, Default)]
struct Book {
    entries: BTreeMap<String, Entry>,
    /// Bumped whenever a summary changes, so the reporter knows to send.
    version: u64,
}

/// The agent's record of its instances' health, shared by the reconciler,
/// the DHCP threads and the reporter.
#[derive(Debug, Clone, Default)]
pub struct Health {
    book: Arc<Mutex<Book>>,
    /// Where the per-instance files go (`None`: nowhere, as in tests).
    dir: Option<PathBuf>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl Health {
    /// A record that writes per-instance files to `dir`, if given.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Health {
            book: Arc::default(),
            dir,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a step of `instance_id` (creating its entry).
    pub fn step(&self, instance_id: &str, device: Option<u32>, step: Step, state: StepState) {
        self.update(instance_id, true, |s| s.set(device, step, state));
    }

    /// Records a step that finished on its own time (a DHCP client): only
    /// if the instance and that interface are still here, so a late answer
    /// does not bring back a removed instance.
    pub fn finish(&self, instance_id: &str, device: u32, step: Step, state: StepState) {
        self.update(instance_id, false, |s| {
            if s.has(Some(device), step) {
                s.set(Some(device), step, state);
            }
        });
    }

    /// Forgets one interface of an instance.
    pub fn remove_device(&self, instance_id: &str, device: u32) {
        self.update(instance_id, false, |s| s.drop_device(device));
    }

    fn update(&self, instance_id: &str, create: bool, f: impl FnOnce(&mut Steps)) {
        let mut book = self.lock();
        let created = !book.entries.contains_key(instance_id);
        if created && !create {
            return;
        }
        let now = unix_now();
        let entry = book
            .entries
            .entry(instance_id.to_owned())
            .or_insert_with(|| Entry {
                steps: Steps::default(),
                shown: InstanceHealth {
                    instance_id: instance_id.to_owned(),
                    setup: InstanceSetup::Initializing,
                    reason: None,
                    since: now,
                },
            });
        f(&mut entry.steps);
        let (setup, reason) = summarize(&entry.steps);
        if !created && setup == entry.shown.setup && reason == entry.shown.reason {
            return;
        }
        let was = entry.shown.setup;
        entry.shown.setup = setup;
        entry.shown.reason = reason.clone();
        if setup != was {
            entry.shown.since = now;
        }
        let shown = entry.shown.clone();
        book.version += 1;
        drop(book);
        match (was, setup) {
            (_, InstanceSetup::Impaired) => tracing::error!(
                instance = instance_id,
                "instance impaired: {}; DescribeInstanceStatus shows it impaired",
                reason.as_deref().unwrap_or("a setup step failed")
            ),
            (InstanceSetup::Impaired, InstanceSetup::Ok) => {
                tracing::info!(instance = instance_id, "instance set up again")
            }
            _ => {}
        }
        self.write_file(&shown);
    }

    /// Forgets an instance (it left this host).
    pub fn remove(&self, instance_id: &str) {
        let mut book = self.lock();
        if book.entries.remove(instance_id).is_some() {
            book.version += 1;
        }
        drop(book);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_file(health_file(dir, instance_id));
        }
    }

    fn write_file(&self, shown: &InstanceHealth) {
        let Some(dir) = &self.dir else {
            return;
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let path = health_file(dir, &shown.instance_id);
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(shown)?)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            tracing::warn!(dir = %dir.display(), error = %e, "could not write an instance's health file");
        }
    }

    /// The current summaries, by instance ID, and the version they are at.
    pub fn snapshot(&self) -> (u64, Vec<InstanceHealth>) {
        let book = self.lock();
        let list = book.entries.values().map(|e| e.shown.clone()).collect();
        (book.version, list)
    }

    /// The version the summaries are at (bumped on every change).
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// One instance's summary.
    pub fn get(&self, instance_id: &str) -> Option<InstanceHealth> {
        self.lock()
            .entries
            .get(instance_id)
            .map(|e| e.shown.clone())
    }

    /// The report to send the server.
    pub fn report(&self, host_id: &str) -> (u64, HealthReport) {
        let (version, instances) = self.snapshot();
        (
            version,
            HealthReport {
                host_id: host_id.to_owned(),
                instances,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(why: &str) -> StepState {
        StepState::Failed(why.into())
    }

    #[test]
    fn no_step_yet_is_initializing() {
        assert_eq!(
            summarize(&Steps::default()),
            (InstanceSetup::Initializing, None)
        );
    }

    #[test]
    fn pending_dhcp_is_initializing_then_ok() {
        let mut s = Steps::default();
        s.set(None, Step::Namespace, StepState::Ok);
        s.set(Some(0), Step::Tap, StepState::Ok);
        s.set(Some(0), Step::Dhcp, StepState::Pending);
        assert_eq!(summarize(&s).0, InstanceSetup::Initializing);
        s.set(Some(0), Step::Dhcp, StepState::Ok);
        assert_eq!(summarize(&s), (InstanceSetup::Ok, None));
    }

    #[test]
    fn any_failure_is_impaired_with_the_step_and_interface_named() {
        let mut s = Steps::default();
        s.set(None, Step::Namespace, StepState::Ok);
        s.set(Some(0), Step::Tap, StepState::Ok);
        s.set(Some(0), Step::Dhcp, failed("no lease within 10 s"));
        s.set(Some(1), Step::Dhcp, StepState::Pending);
        assert_eq!(
            summarize(&s),
            (
                InstanceSetup::Impaired,
                Some("eth0 DHCP failed: no lease within 10 s".into())
            )
        );
        // An instance-wide failure is named before an interface's.
        s.set(None, Step::Namespace, failed("ip netns add: exists"));
        assert_eq!(
            summarize(&s).1.as_deref(),
            Some("network namespace failed: ip netns add: exists")
        );
    }

    #[test]
    fn a_late_dhcp_answer_does_not_bring_back_a_removed_instance() {
        let h = Health::new(None);
        h.step("i-a", Some(0), Step::Dhcp, StepState::Pending);
        h.remove("i-a");
        h.finish("i-a", 0, Step::Dhcp, StepState::Ok);
        assert!(h.get("i-a").is_none());
        // Nor an interface that was detached.
        h.step("i-b", None, Step::Namespace, StepState::Ok);
        h.finish("i-b", 1, Step::Dhcp, failed("late"));
        assert_eq!(h.get("i-b").unwrap().setup, InstanceSetup::Ok);
    }

    #[test]
    fn changes_bump_the_version_and_write_the_instance_file() {
        let dir = tempfile::tempdir().unwrap();
        let h = Health::new(Some(dir.path().to_path_buf()));
        h.step("i-a", None, Step::Namespace, StepState::Ok);
        h.step("i-a", Some(0), Step::Dhcp, StepState::Pending);
        let v = h.version();
        h.step("i-a", Some(0), Step::Dhcp, StepState::Pending);
        assert_eq!(h.version(), v, "no change, no new version");
        h.finish("i-a", 0, Step::Dhcp, failed("exec of \"udhcpc\" failed"));
        assert!(h.version() > v);
        let file: InstanceHealth =
            serde_json::from_slice(&std::fs::read(health_file(dir.path(), "i-a")).unwrap())
                .unwrap();
        assert_eq!(file.setup, InstanceSetup::Impaired);
        assert!(file.reason.unwrap().contains("eth0 DHCP failed"));
        let (_, report) = h.report("h1");
        assert_eq!(report.host_id, "h1");
        assert_eq!(report.instances.len(), 1);
        h.remove("i-a");
        assert!(!health_file(dir.path(), "i-a").exists());
    }
}
