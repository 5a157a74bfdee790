//! Makes the host match the control plane's deltas: converts each ENI's
//! desired state, creates its instance namespace and TAP, hands both to the
//! worker, starts DHCP, and tears down what was removed. Each step's
//! outcome goes to the instance's [`Health`], which the agent reports.
//!
//! An ENI whose state did not change is left alone, so a full resync after
//! a server outage does not disturb established flows (a re-install would
//! bump the ENI's epoch). No HTTP here: the control loop feeds deltas in,
//! and tests can too.

use std::collections::{HashMap, HashSet};
use std::thread::JoinHandle;

use openvpc_model::host::{EniState, HostDelta, RouteTargetState};

use crate::health::{Health, Step, StepState};
use crate::install::{Converter, InstallError};
use crate::instance::{DhcpStart, InstanceError, Instances};
use crate::netns::DHCP_CLIENT;
use crate::worker::{WorkerClient, WorkerError};

/// Why one ENI could not be installed; the others still are.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Install(#[from] InstallError),
    #[error("ENI {eni}: {source}")]
    Router {
        eni: String,
        #[source]
        source: openvpc_dataplane::eni::EniError,
    },
    #[error(transparent)]
    Instance(#[from] InstanceError),
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// The host side of the desired state.
#[derive(Debug)]
pub struct Reconciler {
    worker: WorkerClient,
    instances: Instances,
    converter: Converter,
    installed: HashMap<String, EniState>,
    instance_mtu: u16,
    dhcp: Vec<JoinHandle<()>>,
    health: Health,
    /// The DHCP client instances run ([`DHCP_CLIENT`] unless a test
    /// injects a fault).
    dhcp_client: String,
    /// ENIs whose install failed, with their instance: their health entry
    /// goes when they do.
    failed: HashMap<String, String>,
    /// Where the flow-logged ENIs are published; `None` in tests that do
    /// not log.
    flow_logs: Option<crate::flow_log::SharedEnis>,
}

/// What a delta did, for logs and tests.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub installed: usize,
    pub unchanged: usize,
    pub removed: usize,
    /// DHCP clients started (new interfaces without an address).
    pub dhcp_started: usize,
    pub errors: Vec<(String, ReconcileError)>,
}

/// True if the ENI can be re-configured in place: same instance, device
/// and MAC, so the TAP the worker holds is still the right one.
fn same_device(a: &EniState, b: &EniState) -> bool {
    a.instance_id == b.instance_id && a.device_index == b.device_index && a.mac == b.mac
}

impl Reconciler {
    /// `instance_mtu` is the router's: the TAPs get it.
    pub fn new(worker: WorkerClient, instances: Instances, instance_mtu: u16) -> Self {
        Reconciler {
            worker,
            instances,
            converter: Converter::new(),
            installed: HashMap::new(),
            instance_mtu,
            dhcp: Vec::new(),
            health: Health::default(),
            dhcp_client: DHCP_CLIENT.to_owned(),
            failed: HashMap::new(),
            flow_logs: None,
        }
    }

    /// Records the instances' setup steps in `health` (shared with whoever
    /// reports them) instead of a private record.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Tells `logged` which installed ENIs flow logs cover, after each
    /// change.
    pub fn with_flow_logs(mut self, logged: crate::flow_log::SharedEnis) -> Self {
        self.flow_logs = Some(logged);
        self
    }

    /// Runs `client` as the instances' DHCP client.
    pub fn with_dhcp_client(mut self, client: &str) -> Self {
        self.dhcp_client = client.to_owned();
        self
    }

    /// The instances' setup health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The worker this reconciler installs into.
    pub fn worker(&self) -> &WorkerClient {
        &self.worker
    }

    /// The ENIs installed now, by ID.
    pub fn installed(&self) -> impl Iterator<Item = &EniState> {
        self.installed.values()
    }

    /// Applies one watch answer.
    pub fn apply(&mut self, delta: &HostDelta) -> ApplyReport {
        let mut report = ApplyReport::default();
        if delta.full {
            let keep: HashSet<&str> = delta.upserts.iter().map(|e| e.eni_id.as_str()).collect();
            let gone: Vec<String> = self
                .installed
                .keys()
                .chain(self.failed.keys())
                .filter(|id| !keep.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                self.remove(&id, &mut report);
            }
        }
        for id in &delta.removals {
            self.remove(id, &mut report);
        }
        for state in &delta.upserts {
            if state.instance_id.is_none() {
                // A detached ENI is not run by any host.
                self.remove(&state.eni_id, &mut report);
                continue;
            }
            if self.installed.get(&state.eni_id) == Some(state) {
                report.unchanged += 1;
                continue;
            }
            match self.install(state) {
                Ok(dhcp) => {
                    self.failed.remove(&state.eni_id);
                    report.installed += 1;
                    report.dhcp_started += usize::from(dhcp);
                }
                Err(e) => {
                    tracing::warn!(eni = state.eni_id, error = %e, "ENI not installed");
                    if let Some(instance) = &state.instance_id {
                        self.failed.insert(state.eni_id.clone(), instance.clone());
                    }
                    report.errors.push((state.eni_id.clone(), e));
                }
            }
        }
        if !delta.invalidations.is_empty()
            && let Err(e) = self.worker.invalidate(delta.invalidations.clone())
        {
            report.errors.push((String::new(), e.into()));
        }
        if delta.full {
            self.remove_orphans();
        }
        self.converter.retain_used(self.installed.values());
        self.dhcp.retain(|h| !h.is_finished());
        if let Some(logged) = &self.flow_logs {
            logged.publish(
                self.installed
                    .values()
                    .filter_map(crate::flow_log::LoggedEni::of)
                    .collect(),
            );
        }
        report
    }

    /// Installs one ENI; true if a DHCP client was started for it.
    fn install(&mut self, state: &EniState) -> Result<bool, ReconcileError> {
        let Some(instance) = state.instance_id.as_deref() else {
            return Ok(false);
        };
        let health = self.health.clone();
        let failed = |device: Option<u32>, step: Step, e: &dyn std::fmt::Display| {
            health.step(instance, device, step, StepState::Failed(e.to_string()));
        };
        for route in &state.subnet.route_table.routes {
            if let RouteTargetState::Gateway { gateway_id, .. } = &route.target
                && crate::install::gateway_kind(gateway_id).is_none()
            {
                tracing::warn!(%gateway_id, route_table = %state.subnet.route_table.route_table_id, "unknown gateway kind; route treated as blackhole");
            }
        }
        let config = self
            .converter
            .eni_config(state)
            .inspect_err(|e| failed(None, Step::Config, e))?;
        config
            .validate()
            .map_err(|source| ReconcileError::Router {
                eni: state.eni_id.clone(),
                source,
            })
            .inspect_err(|e| failed(None, Step::Config, e))?;
        let reuse = self
            .installed
            .get(&state.eni_id)
            .is_some_and(|old| same_device(old, state));
        let tap = if reuse {
            None
        } else {
            if self.installed.contains_key(&state.eni_id) {
                // Moved to another instance or device: the old TAP goes.
                let mut scratch = ApplyReport::default();
                self.remove(&state.eni_id, &mut scratch);
            }
            let device = Some(state.device_index);
            self.instances
                .ensure(instance)
                .inspect_err(|e| failed(None, Step::Namespace, e))?;
            self.health
                .step(instance, None, Step::Namespace, StepState::Ok);
            let tap = self
                .instances
                .attach(instance, state.device_index, config.mac, self.instance_mtu)
                .inspect_err(|e| failed(device, Step::Tap, e))?;
            Some(tap)
        };
        let new_tap = tap.is_some();
        self.worker
            .upsert_eni(config, tap)?
            .map_err(|source| ReconcileError::Router {
                eni: state.eni_id.clone(),
                source,
            })
            .inspect_err(|e| failed(Some(state.device_index), Step::Tap, e))?;
        self.installed.insert(state.eni_id.clone(), state.clone());
        if !new_tap {
            return Ok(false);
        }
        let device = state.device_index;
        self.health
            .step(instance, Some(device), Step::Tap, StepState::Ok);
        self.health
            .step(instance, Some(device), Step::Dhcp, StepState::Pending);
        let (health, id) = (self.health.clone(), instance.to_owned());
        let done = move |result: Result<(), String>| {
            let state = result.map_or_else(StepState::Failed, |()| StepState::Ok);
            health.finish(&id, device, Step::Dhcp, state);
        };
        match Instances::start_dhcp(instance, device, &self.dhcp_client, done) {
            DhcpStart::HasAddress => {
                self.health
                    .step(instance, Some(device), Step::Dhcp, StepState::Ok);
                Ok(false)
            }
            DhcpStart::Started(h) => {
                self.dhcp.push(h);
                Ok(true)
            }
            DhcpStart::NotStarted(why) => {
                self.health
                    .step(instance, Some(device), Step::Dhcp, StepState::Failed(why));
                Ok(false)
            }
        }
    }

    /// Removes an ENI: from the router (closing its TAP queue), then the TAP,
    /// then the instance's namespace if no other ENI of it remains.
    fn remove(&mut self, eni_id: &str, report: &mut ApplyReport) {
        if let Some(instance) = self.failed.remove(eni_id)
            && !self
                .installed
                .values()
                .any(|s| s.instance_id.as_deref() == Some(instance.as_str()))
        {
            self.health.remove(&instance);
        }
        let Some(old) = self.installed.remove(eni_id) else {
            return;
        };
        report.removed += 1;
        let mut fail = |e: ReconcileError| {
            tracing::warn!(eni = eni_id, error = %e, "ENI removal incomplete");
            report.errors.push((eni_id.to_string(), e));
        };
        if let Err(e) = self.worker.remove_eni(eni_id) {
            fail(e.into());
        }
        let Some(instance) = old.instance_id.as_deref() else {
            return;
        };
        let still_used = self
            .installed
            .values()
            .any(|s| s.instance_id.as_deref() == Some(instance));
        let result = if still_used {
            self.health.remove_device(instance, old.device_index);
            self.instances.detach(instance, old.device_index)
        } else {
            self.health.remove(instance);
            self.instances.remove(instance)
        };
        if let Err(e) = result {
            fail(e.into());
        }
    }

    /// After a full state: namespaces this agent made for instances it no
    /// longer runs (terminated while it was down) are deleted.
    fn remove_orphans(&mut self) {
        let live: HashSet<&str> = self
            .installed
            .values()
            .filter_map(|s| s.instance_id.as_deref())
            .collect();
        let orphans: Vec<String> = self
            .instances
            .owned()
            .filter(|n| !live.contains(n))
            .map(str::to_string)
            .collect();
        for name in orphans {
            tracing::info!(
                instance = name,
                "removing the namespace of an instance no longer on this host"
            );
            self.health.remove(&name);
            if let Err(e) = self.instances.remove(&name) {
                tracing::warn!(instance = name, error = %e, "could not remove instance namespace");
            }
        }
    }

    /// Waits for the DHCP clients started so far (tests and orderly stops).
    pub fn wait_dhcp(&mut self) {
        for h in self.dhcp.drain(..) {
            let _ = h.join();
        }
    }
}
