//! `POST /moto-api/reset`, which moto's `mock_aws` calls before and after
//! each test: every resource of every account goes, accounts and their keys
//! stay. Served only under `--moto-compat` (see [`super::Mode::routes`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::actions::STATE_PREFIXES;
use crate::api::server::ApiState;
use crate::store::{Op, Store, StoreError, Txn};

/// Keys deleted per transaction by [`reset`]: small enough that one
/// transaction stays cheap, large enough that a test's few dozen resources go
/// in one.
const RESET_PAGE: usize = 512;

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

/// moto's `/moto-api/reset`, answered as moto's own server does: 200 with
/// `{"status": "ok"}` to a POST, 400 to anything else.
pub(super) async fn handle(State(state): State<ApiState>, method: Method) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    if method != Method::POST {
        return (
            StatusCode::BAD_REQUEST,
            json,
            r#"{"Error": "Need to POST to reset Moto"}"#,
        )
            .into_response();
    }
    let store = Arc::clone(&state.store);
    match tokio::task::spawn_blocking(move || reset(store.as_ref())).await {
        Ok(Ok(deleted)) => {
            tracing::debug!(deleted, "moto reset");
            (StatusCode::OK, json, r#"{"status": "ok"}"#).into_response()
        }
        Ok(Err(e)) => failed(&e),
        Err(e) => failed(&e),
    }
}

fn failed(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "moto reset failed");
    let body = serde_json::json!({ "Error": format!("The reset failed: {e}") }).to_string();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::account::{self, Account};
    use crate::api::moto_compat::{ACCOUNT_ID, ensure_account};
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
