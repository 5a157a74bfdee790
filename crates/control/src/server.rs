//! The HTTP shell of the API: accepts EC2 Query requests on `/`, verifies
//! their SigV4 signature, resolves the caller's account and region, and
//! runs the action. Thin on purpose: protocol and actions live in their own
//! modules and know nothing of HTTP.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::account;
use crate::actions::{Ctx, dispatch};
use crate::error::ApiError;
use crate::query::Params;
use crate::sigv4;
use crate::store::Store;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The router serving the EC2 Query API at `/`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", axum::routing::any(handle))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn request_id() -> String {
    let bits: u128 = rand::random();
    let h = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

async fn handle(
    State(state): State<ApiState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = request_id();
    let id = request_id.clone();
    let result = tokio::task::spawn_blocking(move || {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let query = uri.query().unwrap_or("");
        execute(
            &state,
            method.as_str(),
            uri.path(),
            query,
            &headers,
            &body,
            &id,
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(ApiError::internal(format!(
            "The request handler failed: {e}"
        )))
    });
    match result {
        Ok(xml) => xml_response(StatusCode::OK, xml),
        Err(e) => {
            tracing::debug!(code = %e.code, message = %e.message, "request refused");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            xml_response(status, e.to_xml(&request_id))
        }
    }
}

fn xml_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml;charset=UTF-8")],
        body,
    )
        .into_response()
}

/// Authenticates and runs one request.
pub fn execute(
    state: &ApiState,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    request_id: &str,
) -> Result<String, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let request = sigv4::Request {
        method,
        path,
        query,
        headers,
        body,
    };
    let store = state.store.as_ref();
    let verified = sigv4::verify(&request, now, |key| {
        account::by_access_key(store, key)
            .ok()
            .flatten()
            .map(|a| a.secret_access_key)
    })
    .map_err(|e| ApiError::new(e.code(), e.to_string()).with_status(e.status()))?;
    if verified.service != "ec2" {
        return Err(ApiError::new(
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to correct service: 'ec2', not '{}'.",
                verified.service
            ),
        )
        .with_status(403));
    }
    let account = account::by_access_key(store, &verified.access_key)?.ok_or_else(|| {
        ApiError::new(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        )
        .with_status(401)
    })?;
    let params = Params::parse(body, query);
    let ctx = Ctx {
        store,
        account: &account,
        region: &verified.region,
        request_id,
    };
    dispatch(&ctx, &params)
}
