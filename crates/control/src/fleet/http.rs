//! The agent API over HTTP (`/agent/v1/…`, see `openvpc_model::host::path`):
//! registration, the watch of a host's state, mapping lookups and the
//! instances' health reports, as JSON.
//! Every call must carry the shared token in `TOKEN_HEADER`; errors are JSON
//! `{"error": CODE, "message": TEXT}` with a 4xx/5xx status.
//!
//! Thin: the registry and the fleet index do the work; this only parses,
//! authenticates and moves blocking work off the async threads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openvpc_model::edge::VpnTunnelReport;
use openvpc_model::edge::path as edge_path;
use openvpc_model::flow_log::{FlowRecordBatch, RECORDS_PATH};
use openvpc_model::host::{HealthReport, HostRegistration, MappingKey, TOKEN_HEADER, path};
use openvpc_model::hyperplane::path as hyperplane_path;
use openvpc_model::node::NodeRegistration;
use openvpc_model::time::now_secs;
use serde::{Deserialize, Serialize};

use super::flow_log_delivery::Delivery;
use super::health;
use super::index::{Fleet, MAX_MAPPING_KEYS};
use super::nodes::{self, Role};
use super::registry::{self, RegistryError};
use super::token::token_matches;
use crate::store::Store;

/// The longest a watch waits for a change before answering an empty delta.
pub const MAX_WAIT_MS: u64 = 30_000;

/// What the agent API handlers share.
#[derive(Clone)]
pub struct AgentApi {
    pub fleet: Arc<Fleet>,
    token: Arc<str>,
    /// The region of requests that name none (the server's `--region`).
    pub region: Arc<str>,
    /// Where flow-log records go; `None` refuses them.
    pub delivery: Option<Arc<Delivery>>,
}

impl std::fmt::Debug for AgentApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentApi")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AgentApi {
    pub fn new(fleet: Arc<Fleet>, token: String, region: &str) -> Self {
        AgentApi {
            fleet,
            token: token.into(),
            region: region.into(),
            delivery: None,
        }
    }

    /// Takes the nodes' flow-log records into `delivery`.
    pub fn with_delivery(mut self, delivery: Arc<Delivery>) -> Self {
        self.delivery = Some(delivery);
        self
    }

    /// The shared token agents must present.
    pub fn token(&self) -> &str {
        &self.token
    }
}

/// The routes of the agent API.
pub fn router(api: AgentApi) -> Router {
    Router::new()
        .route(path::REGISTER, axum::routing::post(register))
        .route(path::WATCH, axum::routing::get(watch))
        .route(path::MAPPINGS, axum::routing::post(mappings))
        .route(path::HEALTH, axum::routing::post(health_report))
        .route(RECORDS_PATH, axum::routing::post(flow_log_records))
        .route("/metrics", axum::routing::get(metrics))
        .route(edge_path::REGISTER, axum::routing::post(edge_register))
        .route(edge_path::DEREGISTER, axum::routing::post(edge_deregister))
        .route(edge_path::WATCH, axum::routing::get(edge_watch))
        .route(edge_path::VPN_STATUS, axum::routing::post(edge_vpn_status))
        .route(
            hyperplane_path::REGISTER,
            axum::routing::post(hyperplane_register),
        )
        .route(
            hyperplane_path::DEREGISTER,
            axum::routing::post(hyperplane_deregister),
        )
        .route(hyperplane_path::WATCH, axum::routing::get(hyperplane_watch))
        .with_state(api)
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: String,
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorBody {
            error: code,
            message: message.into(),
        },
    )
}

/// An answer refusing a request, boxed: responses are large.
type Refused = Box<Response>;

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Refused {
    Box::new(error(status, code, message))
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer failed: {e}"),
        )
            .into_response(),
    }
}

/// `Err` with the 401 answer unless the request carries the token.
fn authenticate(api: &AgentApi, headers: &HeaderMap) -> Result<(), Refused> {
    let given = headers.get(TOKEN_HEADER).map(|v| v.as_bytes());
    match given {
        Some(given) if token_matches(given, api.token.as_bytes()) => Ok(()),
        Some(_) => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            format!(
                "The {TOKEN_HEADER} header does not match this server's agent token; use the one in the server's data directory (agent-token)."
            ),
        )),
        None => Err(refuse(
            StatusCode::UNAUTHORIZED,
            "MissingToken",
            format!(
                "Send the server's agent token (the agent-token file in its data directory) in the {TOKEN_HEADER} header."
            ),
        )),
    }
}

/// The region a request names, or the server's.
fn region(api: &AgentApi, asked: Option<String>) -> Result<String, Refused> {
    let region = asked.unwrap_or_else(|| api.region.to_string());
    if registry::valid_region(&region) {
        Ok(region)
    } else {
        Err(refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRegion",
            format!("The region {region:?} is not valid; name one such as us-east-1."),
        ))
    }
}

/// What the POST endpoints share: the token, the region, and a JSON body
/// of type `T` (`code` and `shape` name it in the 400 answer).
fn posted<T: serde::de::DeserializeOwned>(
    api: &AgentApi,
    headers: &HeaderMap,
    asked_region: Option<String>,
    body: &[u8],
    code: &'static str,
    shape: &str,
) -> Result<(String, T), Refused> {
    authenticate(api, headers)?;
    let region = region(api, asked_region)?;
    let value = serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            code,
            format!("The body must be {shape}: {e}"),
        ))
    })?;
    Ok((region, value))
}

fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "agent API request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        format!("The server failed: {e}"),
    )
}

/// What the POST endpoints' writes share: `apply` runs at the current time
/// (Unix seconds) off the async threads; a request it refuses is a 400
/// with `code`, a store that fails a 500.
async fn write<R: Send + 'static>(
    api: &AgentApi,
    code: &'static str,
    apply: impl FnOnce(&dyn Store, i64) -> Result<R, RegistryError> + Send + 'static,
) -> Result<R, Refused> {
    let now = now_secs() as i64;
    let store = Arc::clone(api.fleet.store());
    match tokio::task::spawn_blocking(move || apply(store.as_ref(), now)).await {
        Ok(Ok(written)) => Ok(written),
        Ok(Err(e @ RegistryError::Store(_))) => Err(Box::new(internal(&e))),
        Ok(Err(e)) => Err(refuse(StatusCode::BAD_REQUEST, code, e.to_string())),
        Err(e) => Err(Box::new(internal(&e))),
    }
}

/// Brings the index up to the store, so an answer reflects every write
/// made before the request.
async fn catch_up(fleet: &Arc<Fleet>) -> Result<(), Refused> {
    let fleet = Arc::clone(fleet);
    match tokio::task::spawn_blocking(move || fleet.catch_up()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Box::new(internal(&e))),
        Err(e) => Err(Box::new(internal(&e))),
    }
}

#[derive(Debug, Deserialize)]
struct RegionQuery {
    region: Option<String>,
}

async fn register(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, registration): (_, HostRegistration) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidRegistration",
        "a JSON HostRegistration",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let written = write(&api, "InvalidRegistration", move |store, now| {
        registry::register(store, &region, &registration, now)
    })
    .await;
    match written {
        Ok(record) => {
            tracing::info!(host = %record.host_id, zone = %record.availability_zone, underlay = %record.underlay_ip, "host registered");
            json(StatusCode::OK, &record)
        }
        Err(r) => *r,
    }
}

#[derive(Debug, Deserialize)]
struct WatchQuery {
    host: String,
    #[serde(default)]
    since: u64,
    #[serde(default)]
    wait_ms: u64,
    region: Option<String>,
}

async fn watch(
    State(api): State<AgentApi>,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authenticate(&api, &headers) {
        return *r;
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidWatch",
                format!("Ask as ?host=ID&since=REVISION[&wait_ms=N]: {e}"),
            );
        }
    };
    let region = match region(&api, query.region) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Err(r) = catch_up(&api.fleet).await {
        return *r;
    }
    long_poll(&api.fleet, query.wait_ms, || {
        let delta = api.fleet.delta(&region, &query.host, query.since);
        let news = delta.full
            || !delta.upserts.is_empty()
            || !delta.removals.is_empty()
            || !delta.invalidations.is_empty();
        (delta, news)
    })
    .await
}

/// A watch's answer: `answer` (a delta, and whether it has news) as soon as
/// it has news, else when the index moves and it then has, else after
/// `wait_ms` (at most [`MAX_WAIT_MS`]) as it is.
async fn long_poll<T: Serialize>(
    fleet: &Fleet,
    wait_ms: u64,
    answer: impl Fn() -> (T, bool),
) -> Response {
    let deadline = Instant::now() + Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    let mut changes = fleet.subscribe();
    loop {
        changes.borrow_and_update();
        let (delta, news) = answer();
        let left = deadline.saturating_duration_since(Instant::now());
        if news || left.is_zero() {
            return json(StatusCode::OK, &delta);
        }
        // Woken by the tailer when the index moves; answer on the deadline
        // (or at once should the index be going away).
        let woken = tokio::time::timeout(left, changes.changed()).await;
        if !matches!(woken, Ok(Ok(()))) {
            return json(StatusCode::OK, &answer().0);
        }
    }
}

async fn mappings(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, keys): (_, Vec<MappingKey>) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidMappingRequest",
        "a JSON list of mapping keys",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if keys.len() > MAX_MAPPING_KEYS {
        return error(
            StatusCode::BAD_REQUEST,
            "TooManyKeys",
            format!(
                "A request may ask about {MAX_MAPPING_KEYS} keys at most, not {}; split it.",
                keys.len()
            ),
        );
    }
    if let Err(r) = catch_up(&api.fleet).await {
        return *r;
    }
    json(StatusCode::OK, &api.fleet.lookup(&region, &keys))
}

async fn health_report(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, report): (_, HealthReport) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidHealthReport",
        "a JSON HealthReport",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let written = write(&api, "InvalidHealthReport", move |store, now| {
        health::record(store, &region, &report, now)
    })
    .await;
    match written {
        Ok(_) => json(StatusCode::OK, &serde_json::json!({})),
        Err(r) => *r,
    }
}

/// `GET /metrics`: the server's counters in Prometheus's text format.
async fn metrics(State(api): State<AgentApi>) -> Response {
    let mut out = String::new();
    if let Some(d) = &api.delivery {
        out.push_str(&d.counters.prometheus());
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out,
    )
        .into_response()
}

/// `POST /flowlogs/v1/records`: a node's closed flow-log windows.
async fn flow_log_records(
    State(api): State<AgentApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = authenticate(&api, &headers) {
        return *r;
    }
    let Some(delivery) = api.delivery.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "FlowLogsUnavailable",
            "this server delivers no flow logs",
        );
    };
    let batch: FlowRecordBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "InvalidFlowRecords",
                format!("expected a JSON FlowRecordBatch: {e}"),
            );
        }
    };
    let taken = tokio::task::spawn_blocking(move || delivery.accept(&batch, now_secs())).await;
    match taken {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({})),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("delivering flow-log records failed: {e}"),
        ),
    }
}

/// Unix milliseconds now: edge expiries are finer than the registry's seconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's registration (or heartbeat) as `role`.
async fn node_register(
    api: AgentApi,
    role: Role,
    query: RegionQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, registration): (_, NodeRegistration) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidRegistration",
        "a JSON NodeRegistration",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let written = write(&api, "InvalidRegistration", move |store, _| {
        nodes::register(store, role, &region, &registration, now_ms())
    })
    .await;
    match written {
        Ok(record) => json(StatusCode::OK, &record),
        Err(r) => *r,
    }
}

/// A node of `role` leaving cleanly.
async fn node_deregister(
    api: AgentApi,
    role: Role,
    query: RegionQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, registration): (_, NodeRegistration) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidRegistration",
        "a JSON NodeRegistration",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let node_id = registration.node_id.clone();
    let written = write(&api, "InvalidRegistration", move |store, _| {
        nodes::deregister(store, role, &region, &registration.node_id)
    })
    .await;
    match written {
        Ok(()) => {
            tracing::info!(node = %node_id, ?role, "node left");
            json(StatusCode::OK, &serde_json::json!({}))
        }
        Err(r) => *r,
    }
}

async fn edge_register(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    node_register(api, Role::Edge, query, headers, body).await
}

async fn edge_deregister(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    node_deregister(api, Role::Edge, query, headers, body).await
}

#[derive(Debug, Deserialize)]
struct EdgeQuery {
    edge: String,
    region: Option<String>,
}

/// An edge's report on the VPN tunnels it serves (issue 19): stored per
/// connection, in the connection's account, where `VgwTelemetry`, the
/// connection's state and route propagation read it.
async fn edge_vpn_status(
    State(api): State<AgentApi>,
    Query(query): Query<EdgeQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (region, reports): (_, Vec<VpnTunnelReport>) = match posted(
        &api,
        &headers,
        query.region,
        &body,
        "InvalidReport",
        "a JSON list of VpnTunnelReport",
    ) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if !registry::valid_name(&query.edge) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidReport",
            format!("The edge ID {:?} is not valid", query.edge),
        );
    }
    if let Err(r) = catch_up(&api.fleet).await {
        return *r;
    }
    let mut by_vpn: BTreeMap<String, Vec<VpnTunnelReport>> = BTreeMap::new();
    for r in reports {
        by_vpn
            .entry(r.vpn_connection_id.clone())
            .or_default()
            .push(r);
    }
    let fleet = Arc::clone(&api.fleet);
    let edge = query.edge;
    let written = tokio::task::spawn_blocking(move || {
        for (vpn_id, reports) in &by_vpn {
            // A connection the index does not know is gone: nothing to say.
            let Some(account) = fleet.vpn_account(&region, vpn_id) else {
                continue;
            };
            crate::api::actions::vpn_connection::record_reports(
                fleet.store().as_ref(),
                &account,
                &region,
                vpn_id,
                &edge,
                reports,
            )?;
        }
        Ok::<(), crate::api::error::ApiError>(())
    })
    .await;
    match written {
        Ok(Ok(())) => json(StatusCode::OK, &serde_json::json!({})),
        Ok(Err(e)) => internal(&e),
        Err(e) => internal(&e),
    }
}

async fn hyperplane_register(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    node_register(api, Role::Hyperplane, query, headers, body).await
}

async fn hyperplane_deregister(
    State(api): State<AgentApi>,
    Query(query): Query<RegionQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    node_deregister(api, Role::Hyperplane, query, headers, body).await
}

#[derive(Debug, Deserialize)]
struct NodeWatchQuery {
    /// The node's ID (`?node=`; edges ask as `?edge=`).
    #[serde(alias = "edge")]
    node: String,
    #[serde(default)]
    since: u64,
    #[serde(default)]
    wait_ms: u64,
    region: Option<String>,
}

/// What a node's watch checks before it waits: the token, the query, the
/// node's ID and the region; then the index is brought up to the store.
async fn node_watch_query(
    api: &AgentApi,
    query: Result<Query<NodeWatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: &HeaderMap,
    param: &str,
) -> Result<(NodeWatchQuery, String), Refused> {
    authenticate(api, headers)?;
    let Query(query) = query.map_err(|e| {
        refuse(
            StatusCode::BAD_REQUEST,
            "InvalidWatch",
            format!("Ask as ?{param}=ID&since=REVISION[&wait_ms=N]: {e}"),
        )
    })?;
    if !registry::valid_name(&query.node) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "InvalidWatch",
            format!(
                "The {param} ID {:?} is not valid: use 1 to 64 letters, digits, '-', '_' or '.'",
                query.node
            ),
        ));
    }
    let region = region(api, query.region.clone())?;
    catch_up(&api.fleet).await?;
    Ok((query, region))
}

/// A hyperplane node's watch: the NAT gateways it serves, whole, as soon
/// as they may have changed, or after `wait_ms`.
async fn hyperplane_watch(
    State(api): State<AgentApi>,
    query: Result<Query<NodeWatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (query, region) = match node_watch_query(&api, query, &headers, "node").await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    long_poll(&api.fleet, query.wait_ms, || {
        api.fleet
            .hyperplane_delta(&region, &query.node, query.since)
    })
    .await
}

/// An edge node's watch: the region's public addresses, whole on first
/// contact, then what changed, waiting up to `wait_ms` for a change.
async fn edge_watch(
    State(api): State<AgentApi>,
    query: Result<Query<NodeWatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let (query, region) = match node_watch_query(&api, query, &headers, "edge").await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    long_poll(&api.fleet, query.wait_ms, || {
        api.fleet.edge_delta(&region, query.since)
    })
    .await
}
