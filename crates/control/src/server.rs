//! The HTTP shell of the API: accepts EC2 (and ELBv2) Query requests on `/`, verifies
//! their SigV4 signature, resolves the caller's account and region, and
//! runs the action. Thin on purpose: protocol and actions live in their own
//! modules and know nothing of HTTP.
//!
//! Under `--moto-compat` (for running moto's test suite, never in production)
//! signatures are only checked for form, every request acts as moto's fixed
//! account, `POST /moto-api/reset` wipes every resource (see `moto_api`),
//! STS's `GetCallerIdentity` names moto's account, and the S3 and CloudWatch
//! Logs calls moto's flow-log tests make are answered (see `moto_foreign`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::account::{self, Account};
use crate::actions::{Ctx, default_vpc, dispatch};
use crate::elbv2;
use crate::error::ApiError;
use crate::fleet::{self, AgentApi};
use crate::moto_api;
use crate::moto_foreign;
use crate::query::Params;
use crate::sigv4;
use crate::store::Store;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// `Some` under `--moto-compat`: every request with a well-formed
    /// signature acts as this account, whatever its key and secret, and the
    /// moto reset hook is served. `None` verifies every signature.
    pub moto_compat: Option<Account>,
    /// The agent API (`/agent/v1/…`: host registration, watch, mapping
    /// service); `None` serves none of it.
    pub agent: Option<AgentApi>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState").finish_non_exhaustive()
    }
}

/// The router serving the EC2 Query API at `/` (and moto's reset hook under
/// `--moto-compat`), and the agent API under `/agent/v1/` when configured.
pub fn router(state: ApiState) -> Router {
    let agent = state.agent.clone();
    let mut router = Router::new().route("/", axum::routing::any(handle));
    if state.moto_compat.is_some() {
        router = router
            .route("/moto-api/reset", axum::routing::any(moto_reset))
            // S3's path-style calls (`PUT /BUCKET`) land off `/`.
            .fallback(handle);
    }
    let router = router.with_state(state);
    match agent {
        Some(agent) => router.merge(fleet::http::router(agent)),
        None => router,
    }
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
    if let Some(moto) = &state.moto_compat {
        // moto's flow-log tests call S3 and CloudWatch Logs on this endpoint.
        let (store, account) = (Arc::clone(&state.store), moto.id.clone());
        let (m, p, h, b) = (
            method.clone(),
            uri.path().to_owned(),
            headers.clone(),
            body.clone(),
        );
        let foreign = tokio::task::spawn_blocking(move || {
            moto_foreign::answer(store.as_ref(), &account, &m, &p, &h, &b)
        })
        .await
        .ok()
        .flatten();
        if let Some(response) = foreign {
            return response;
        }
    }
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

/// moto's `/moto-api/reset`, answered as moto's own server does: 200 with
/// `{"status": "ok"}` to a POST, 400 to anything else.
async fn moto_reset(State(state): State<ApiState>, method: Method) -> Response {
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
    match tokio::task::spawn_blocking(move || moto_api::reset(store.as_ref())).await {
        Ok(Ok(deleted)) => {
            tracing::debug!(deleted, "moto reset");
            (StatusCode::OK, json, r#"{"status": "ok"}"#).into_response()
        }
        Ok(Err(e)) => reset_failed(&e),
        Err(e) => reset_failed(&e),
    }
}

fn reset_failed(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "moto reset failed");
    let body = serde_json::json!({ "Error": format!("The reset failed: {e}") }).to_string();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
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
    let auth_error =
        |e: sigv4::AuthError| ApiError::new(e.code(), e.to_string()).with_status(e.status());
    let verified = if state.moto_compat.is_some() {
        sigv4::read_unverified(&request).map_err(auth_error)?
    } else {
        sigv4::verify(&request, now, |key| {
            account::by_access_key(store, key)
                .ok()
                .flatten()
                .map(|a| a.secret_access_key)
        })
        .map_err(auth_error)?
    };
    // moto's `account_id` fixture asks STS who it is before a test runs; in
    // compat mode that is the one other question answered, and only that one.
    if let (Some(moto), "sts") = (&state.moto_compat, verified.service.as_str()) {
        let params = Params::parse(body, query);
        return moto_api::sts(moto, &params, request_id);
    }
    let elb = verified.service == "elasticloadbalancing";
    if verified.service != "ec2" && !elb {
        return Err(ApiError::new(
            "SignatureDoesNotMatch",
            format!(
                "Credential should be scoped to correct service: 'ec2', not '{}'.",
                verified.service
            ),
        )
        .with_status(403));
    }
    // ELBv2 clients parse the Query protocol's error shape, not EC2's.
    let shape = |e: ApiError| {
        if elb {
            e.in_query_shape(elbv2::NAMESPACE)
        } else {
            e
        }
    };
    let account = match &state.moto_compat {
        Some(moto) => moto.clone(),
        None => account::by_access_key(store, &verified.access_key)?
            .ok_or_else(|| {
                ApiError::new(
                    "AuthFailure",
                    "AWS was not able to validate the provided access credentials",
                )
                .with_status(401)
            })
            .map_err(shape)?,
    };
    let params = Params::parse(body, query);
    let ctx = Ctx {
        store,
        account: &account,
        region: &verified.region,
        request_id,
    };
    // spec 1.3: an account finds a default VPC in every region it uses.
    default_vpc::ensure(&ctx).map_err(shape)?;
    if elb {
        return elbv2::dispatch(&ctx, &params).map_err(shape);
    }
    if state.moto_compat.is_some()
        && let Some(answer) = moto_foreign::ec2_action(&ctx, &params)
    {
        return answer;
    }
    dispatch(&ctx, &params)
}
