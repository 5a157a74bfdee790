//! What a restarted agent runs on until the server answers (fail static):
//! the desired state it last applied and the mapping owners it knew, kept
//! in one JSON file under the state directory.
//!
//! A snapshot is a fallback, never the truth: the first full state from the
//! server replaces the ENIs, and the mappings it held are forgotten then,
//! because changes made while the agent was away were never invalidated.

use std::path::{Path, PathBuf};

use openvpc_model::host::{EniState, MappingAnswer};
use serde::{Deserialize, Serialize};

/// The snapshot's file name inside the state directory.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

/// The state a restarted agent can run on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub enis: Vec<EniState>,
    pub mappings: Vec<MappingAnswer>,
}

/// The snapshot file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {path}: {source}; check that the state directory is writable")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} does not parse: {source}; remove it, the server's state replaces it")]
    Format {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The snapshot in `state_dir`, if there is one.
pub fn load(state_dir: &Path) -> Result<Option<Snapshot>, SnapshotError> {
    let path = state_dir.join(SNAPSHOT_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SnapshotError::Format { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SnapshotError::Io { path, source }),
    }
}

/// Replaces the snapshot in `state_dir` (written aside, then renamed).
pub fn save(state_dir: &Path, snapshot: &Snapshot) -> Result<(), SnapshotError> {
    let path = state_dir.join(SNAPSHOT_FILE);
    let json = serde_json::to_vec(snapshot).map_err(|source| SnapshotError::Format {
        path: path.clone(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let io = |source| SnapshotError::Io {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv4Addr;
    use openvpc_model::host::{MappingKey, MappingRecord};

    #[test]
    fn round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let snap = Snapshot {
            enis: vec![crate::install::fixtures::eni(
                "eni-a",
                "i-a",
                Ipv4Addr::new(10, 0, 1, 10),
                "02:00:00:00:00:0a",
            )],
            mappings: vec![MappingAnswer {
                key: MappingKey {
                    vni: 77,
                    ip: "10.0.1.11".parse().unwrap(),
                },
                record: Some(MappingRecord {
                    underlay_ip: "192.0.2.2".parse().unwrap(),
                    eni_id: "eni-b".into(),
                    mac: "02:00:00:00:00:0b".into(),
                }),
            }],
        };
        save(dir.path(), &snap).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(snap));
        std::fs::write(dir.path().join(SNAPSHOT_FILE), b"[").unwrap();
        assert!(matches!(
            load(dir.path()),
            Err(SnapshotError::Format { .. })
        ));
    }
}
