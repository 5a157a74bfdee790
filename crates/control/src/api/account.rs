//! Accounts and their access keys. Every resource belongs to one account,
//! and a request acts as the account its access key names; nothing an action
//! reads or writes is outside that account's key space.

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::store::{Compare, Op, Store, Txn, TxnResult};

/// An account and its one access key pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// 12 digits (spec 12.4).
    pub id: String,
    pub name: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

fn account_key(id: &str) -> Vec<u8> {
    format!("accounts/{id}").into_bytes()
}

fn access_key_key(access_key_id: &str) -> Vec<u8> {
    format!("access-keys/{access_key_id}").into_bytes()
}

const KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

impl Account {
    /// A new account with fresh keys; `id` is random unless given.
    pub fn generate(name: &str, id: Option<&str>) -> Self {
        let id = id.map_or_else(
            || {
                let mut rng = rand::rng();
                (0..12)
                    .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                    .collect()
            },
            str::to_owned,
        );
        Account {
            id,
            name: name.to_owned(),
            access_key_id: format!("AKIA{}", random_string(KEY_ALPHABET, 16)),
            secret_access_key: random_string(SECRET_ALPHABET, 40),
        }
    }

    /// The `[profile]` section of an aws CLI credentials file.
    pub fn credentials_ini(&self, profile: &str) -> String {
        format!(
            "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.access_key_id, self.secret_access_key
        )
    }
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("The store failed: {e}"))
}

/// Stores a new account; fails if its ID or access key is taken.
pub fn create(store: &dyn Store, account: &Account) -> Result<(), ApiError> {
    let value = serde_json::to_vec(account).map_err(store_error)?;
    let txn = Txn {
        compares: vec![
            Compare::Absent(account_key(&account.id)),
            Compare::Absent(access_key_key(&account.access_key_id)),
        ],
        ops: vec![
            Op::Put(account_key(&account.id), value),
            Op::Put(
                access_key_key(&account.access_key_id),
                account.id.clone().into_bytes(),
            ),
        ],
    };
    match store.txn(txn).map_err(store_error)? {
        TxnResult::Committed(_) => Ok(()),
        TxnResult::Failed { .. } => Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "An account with ID {} or its access key already exists",
                account.id
            ),
        )),
    }
}

/// The account an access key belongs to.
pub fn by_access_key(store: &dyn Store, access_key_id: &str) -> Result<Option<Account>, ApiError> {
    let Some(id) = store
        .get(&access_key_key(access_key_id))
        .map_err(store_error)?
    else {
        return Ok(None);
    };
    let id = String::from_utf8_lossy(&id.value).into_owned();
    by_id(store, &id)
}

pub fn by_id(store: &dyn Store, id: &str) -> Result<Option<Account>, ApiError> {
    store
        .get(&account_key(id))
        .map_err(store_error)?
        .map(|kv| serde_json::from_slice(&kv.value).map_err(store_error))
        .transpose()
}

/// Every account, in ID order.
pub fn list(store: &dyn Store) -> Result<Vec<Account>, ApiError> {
    store
        .range(b"accounts/", None, usize::MAX)
        .map_err(store_error)?
        .into_iter()
        .map(|kv| serde_json::from_slice(&kv.value).map_err(store_error))
        .collect()
}
