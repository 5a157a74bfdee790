//! The shared secret agents present on every agent API call: created once
//! per store (so every server of one etcd agrees on it) and handed to agents
//! through a file only the server's user can read.

use std::path::{Path, PathBuf};

use super::FleetError;
use crate::store::{Compare, Op, Store, Txn, TxnResult};

/// Where the token lives in the store.
pub const TOKEN_KEY: &[u8] = b"cluster/agent-token";

/// The file in the data directory the token is written to.
pub const TOKEN_FILE: &str = "agent-token";

/// The store's agent token, creating it (32 random bytes, hex) on first use.
/// Creation is a compare-and-swap on the key's absence, so two servers
/// starting together on one store end up with the same token.
pub fn agent_token(store: &dyn Store) -> Result<String, FleetError> {
    loop {
        if let Some(kv) = store.get(TOKEN_KEY)? {
            let token =
                String::from_utf8(kv.value).map_err(|e| FleetError::BadToken(e.to_string()))?;
            if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(FleetError::BadToken("not 64 hex digits".into()));
            }
            return Ok(token);
        }
        let fresh = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        let txn = Txn::new()
            .when(Compare::Absent(TOKEN_KEY.to_vec()))
            .then(Op::Put(TOKEN_KEY.to_vec(), fresh.clone().into_bytes()));
        match store.txn(txn)? {
            TxnResult::Committed(_) => return Ok(fresh),
            // Another server created it first: read theirs.
            TxnResult::Failed { .. } => continue,
        }
    }
}

/// Writes the token to `{data_dir}/agent-token`, readable by its owner only.
pub fn write_token_file(data_dir: &Path, token: &str) -> Result<PathBuf, FleetError> {
    use std::io::Write;
    let path = data_dir.join(TOKEN_FILE);
    let error = |source| FleetError::TokenFile {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.create(true).write(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(error)?;
    // A file left from before with wider permissions is narrowed too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(error)?;
    }
    file.write_all(token.as_bytes()).map_err(error)?;
    Ok(path)
}

/// Compares two tokens in time independent of where they differ.
pub fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
