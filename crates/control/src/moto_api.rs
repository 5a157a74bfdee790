//! What `openvpc server --moto-compat` adds so moto's published test suite
//! can run against openvpc in its server mode: the fixed account every
//! request acts as (moto's `123456789012`), the reset hook moto's
//! `mock_aws` calls before and after each test (`POST /moto-api/reset`), and
//! STS's `GetCallerIdentity`, which moto's `account_id` fixture calls.
//!
//! This module owns those two; it must never be reachable without the flag,
//! since reset wipes every account's resources and the fixed account skips
//! authentication. HTTP stays in `server`.

use crate::account::{self, Account};
use crate::actions::STATE_PREFIXES;
use crate::error::ApiError;
use crate::query::Params;
use crate::store::{Op, Store, StoreError, Txn};
use crate::sts::Identity;

/// The account moto's tests expect to be (moto's `DEFAULT_ACCOUNT_ID`).
pub const ACCOUNT_ID: &str = "123456789012";

/// Keys deleted per transaction by [`reset`]: small enough that one
/// transaction stays cheap, large enough that a test's few dozen resources go
/// in one.
const RESET_PAGE: usize = 512;

/// moto's account, created with fresh (unused) keys if the store lacks it.
pub fn ensure_account(store: &dyn Store) -> Result<Account, ApiError> {
    if let Some(existing) = account::by_id(store, ACCOUNT_ID)? {
        return Ok(existing);
    }
    let created = Account::generate("moto", Some(ACCOUNT_ID));
    account::create(store, &created)?;
    Ok(created)
}

/// STS as moto's tests need it: `GetCallerIdentity` names the fixed account,
/// as its IAM user `moto` with the account's access key as user ID; every
/// other STS action is unknown (see `sts`).
pub fn sts(account: &Account, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let caller = Identity {
        account: account.id.clone(),
        arn: format!("arn:aws:iam::{}:user/{}", account.id, account.name),
        user_id: account.access_key_id.clone(),
    };
    crate::sts::dispatch(&caller, params, request_id)
}

/// Deletes every resource of every account in every region, and the region
/// counters; accounts and their keys stay. Returns how many keys went.
/// Not one transaction: a reset runs between tests, when nothing else writes,
/// so pages keep each transaction small without anyone seeing half a reset.
pub fn reset(store: &dyn Store) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for prefix in STATE_PREFIXES {
        loop {
            let page = store.range(prefix, None, RESET_PAGE)?;
            if page.is_empty() {
                break;
            }
            deleted += page.len();
            let ops = page.into_iter().map(|kv| Op::Delete(kv.key)).collect();
            store.txn(Txn {
                compares: Vec::new(),
                ops,
            })?;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn reset_clears_resources_and_counters_but_keeps_accounts() {
        let store = MemoryStore::new();
        let moto = ensure_account(&store).unwrap();
        assert_eq!(ensure_account(&store).unwrap(), moto, "created once");
        let other = Account::generate("other", None);
        account::create(&store, &other).unwrap();
        for i in 0..1_300 {
            store
                .put(
                    format!("r/{ACCOUNT_ID}/us-east-1/vpc/vpc-{i}").as_bytes(),
                    b"{}",
                )
                .unwrap();
        }
        store
            .put(
                format!("r/{}/eu-west-1/vpc/vpc-1", other.id).as_bytes(),
                b"{}",
            )
            .unwrap();
        store.put(b"region/us-east-1/next-vni", b"7").unwrap();

        assert_eq!(reset(&store).unwrap(), 1_302);
        assert!(store.range(b"r/", None, usize::MAX).unwrap().is_empty());
        assert!(
            store
                .range(b"region/", None, usize::MAX)
                .unwrap()
                .is_empty()
        );
        assert_eq!(account::list(&store).unwrap().len(), 2);
        assert_eq!(
            account::by_access_key(&store, &other.access_key_id).unwrap(),
            Some(other)
        );
        assert_eq!(reset(&store).unwrap(), 0, "an empty reset is fine");
    }
}
