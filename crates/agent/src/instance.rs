//! The instances this agent runs: one network namespace per instance, named
//! exactly its ID, holding one persistent TAP `eth{device_index}` per ENI.
//! Namespaces outlive the agent; a small state file under the state
//! directory lists the ones this agent made, so a restarted agent (or a
//! later cleanup) knows what is its own.
//!
//! It does not touch the router: the reconciler hands the TAP to the worker.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use openvpc_packet::MacAddr;

use crate::netns::{self, NetnsError};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "instances.json";

/// Why an instance could not be set up or torn down.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("state file {path}: {source}; check that the state directory is writable")]
    StateIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {path} is not a JSON list of namespace names: {source}; remove it if it is stale"
    )]
    StateFormat {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What [`Instances::start_dhcp`] did.
#[derive(Debug)]
pub enum DhcpStart {
    /// The interface kept its address: nothing to ask.
    HasAddress,
    /// The client runs on this thread.
    Started(JoinHandle<()>),
    /// No client could be started, and why.
    NotStarted(String),
}

/// The interface name of an ENI inside its instance.
pub fn ifname(device_index: u32) -> String {
    format!("eth{device_index}")
}

/// The instance namespaces this agent owns, persisted.
#[derive(Debug)]
pub struct Instances {
    state_file: PathBuf,
    owned: BTreeSet<String>,
}

impl Instances {
    /// Loads the list from `state_dir`, creating the directory if needed.
    pub fn load(state_dir: &Path) -> Result<Self, InstanceError> {
        std::fs::create_dir_all(state_dir).map_err(|source| InstanceError::StateIo {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let state_file = state_dir.join(STATE_FILE);
        let owned = match std::fs::read(&state_file) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| InstanceError::StateFormat {
                    path: state_file.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(source) => {
                return Err(InstanceError::StateIo {
                    path: state_file,
                    source,
                });
            }
        };
        Ok(Instances { state_file, owned })
    }

    /// The namespaces this agent owns.
    pub fn owned(&self) -> impl Iterator<Item = &str> {
        self.owned.iter().map(String::as_str)
    }

    fn save(&self) -> Result<(), InstanceError> {
        let io = |source| InstanceError::StateIo {
            path: self.state_file.clone(),
            source,
        };
        let json =
            serde_json::to_vec(&self.owned).map_err(|source| InstanceError::StateFormat {
                path: self.state_file.clone(),
                source,
            })?;
        // Written aside and renamed, so a crash leaves the old list or the
        // new one, never half of one.
        let tmp = self.state_file.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &self.state_file).map_err(io)
    }

    /// Makes sure the instance's namespace exists and is on the list.
    pub fn ensure(&mut self, instance_id: &str) -> Result<(), InstanceError> {
        netns::check_name(instance_id)?;
        // Recorded before creation: a crash in between leaves a name to
        // clean up rather than a namespace nobody knows.
        if self.owned.insert(instance_id.to_string()) {
            self.save()?;
        }
        netns::ensure(instance_id)?;
        Ok(())
    }

    /// Opens (or re-attaches to) the ENI's TAP, sets its MAC, MTU and
    /// super-segment size (see [`crate::worker::tap_gso_max_size`]), and
    /// brings it up. The returned queue is nonblocking.
    pub fn attach(
        &self,
        instance_id: &str,
        device_index: u32,
        mac: MacAddr,
        mtu: u16,
    ) -> Result<File, InstanceError> {
        let name = ifname(device_index);
        let tap = netns::open_tap(instance_id, &name)?;
        let gso_max_size = crate::worker::tap_gso_max_size(mtu);
        netns::configure_link(instance_id, &name, mac, mtu, gso_max_size)?;
        Ok(tap)
    }

    /// Starts the instance's DHCP client (`client`, see
    /// [`netns::run_dhcp`]) on a thread if the interface has no IPv4
    /// address yet (a re-attached TAP keeps its address). `done` hears
    /// whether the interface got an address, or why not.
    pub fn start_dhcp(
        instance_id: &str,
        device_index: u32,
        client: &str,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) -> DhcpStart {
        let name = ifname(device_index);
        match netns::ipv4_addresses(instance_id, &name) {
            Ok(addrs) if !addrs.is_empty() => return DhcpStart::HasAddress,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "could not read addresses; running DHCP")
            }
        }
        let (instance_id, client) = (instance_id.to_string(), client.to_string());
        std::thread::Builder::new()
            .name(format!("dhcp-{instance_id}"))
            .spawn(move || {
                let result = netns::run_dhcp(&client, &instance_id, &name)
                    .map_err(|e| e.to_string())
                    .and_then(|()| match netns::ipv4_addresses(&instance_id, &name) {
                        Ok(addrs) if !addrs.is_empty() => Ok(()),
                        Ok(_) => Err(format!(
                            "{client} exited without setting an address on {name}"
                        )),
                        Err(e) => Err(e.to_string()),
                    });
                done(result);
            })
            .map_or_else(
                |e| DhcpStart::NotStarted(format!("could not start a DHCP thread: {e}")),
                DhcpStart::Started,
            )
    }

    /// Deletes an ENI's TAP (the worker must have closed its queue).
    pub fn detach(&self, instance_id: &str, device_index: u32) -> Result<(), InstanceError> {
        netns::delete_link(instance_id, &ifname(device_index))?;
        Ok(())
    }

    /// Kills what runs in the instance, deletes its namespace and forgets it.
    pub fn remove(&mut self, instance_id: &str) -> Result<(), InstanceError> {
        netns::delete(instance_id)?;
        if self.owned.remove(instance_id) {
            self.save()?;
        }
        Ok(())
    }
}

/// Deletes every instance namespace listed in `state_dir`'s state file (for
/// a host's decommissioning or a test's cleanup). Returns the names removed.
pub fn remove_instances(state_dir: &Path) -> Result<Vec<String>, InstanceError> {
    let mut instances = Instances::load(state_dir)?;
    let names: Vec<String> = instances.owned().map(str::to_string).collect();
    for name in &names {
        instances.remove(name)?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Instances::load(dir.path()).unwrap();
        assert_eq!(a.owned().count(), 0);
        a.owned.insert("i-1".into());
        a.owned.insert("i-2".into());
        a.save().unwrap();
        let b = Instances::load(dir.path()).unwrap();
        assert_eq!(b.owned().collect::<Vec<_>>(), ["i-1", "i-2"]);
        std::fs::write(dir.path().join(STATE_FILE), b"{").unwrap();
        assert!(matches!(
            Instances::load(dir.path()),
            Err(InstanceError::StateFormat { .. })
        ));
    }
}
