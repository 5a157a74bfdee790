//! The HTTP shell of the API: accepts EC2, ELBv2 and STS Query requests and
//! CloudWatch Logs JSON requests on `/`, verifies their SigV4 signature,
//! resolves the caller's account and region, and runs the action of the
//! service the request is signed for (a Logs request is answered in JSON);
//! a request signed for any other service is refused and logged by name.
//! Thin on purpose: protocol and actions live in their own modules and know
//! nothing of HTTP.
//!
//! `--moto-compat` (for running moto's test suite, never in production)
//! changes what `moto_compat`'s header lists; this module never asks whether
//! it is on, but calls that module's [`Mode`] hooks at fixed points: when
//! routing, before a request is read as a Query call, when authenticating,
//! for STS's caller, and before EC2 dispatch.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use openvpc_model::time::now_secs;

use crate::api::account::{self, Account};
use crate::api::actions::{Ctx, default_vpc, dispatch};
use crate::api::elbv2;
use crate::api::error::ApiError;
use crate::api::logs;
use crate::api::moto_compat::Mode;
use crate::api::query::Params;
use crate::api::sts;
use crate::fleet::{self, AgentApi};
use crate::sigv4::{self, AuthError};
use crate::store::Store;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    /// `Some` (moto's account) under `--moto-compat`, `None` otherwise; read
    /// only through `moto_compat::Mode::of`, which says what it changes.
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
    let router = Router::new().route("/", axum::routing::any(handle));
    let router = Mode::of(&state).routes(router, handle).with_state(state);
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
    if let Some(response) = Mode::of(&state)
        .foreign(&state, &method, &uri, &headers, &body)
        .await
    {
        return response;
    }
    // CloudWatch Logs speaks JSON: its answers and errors are JSON, chosen
    // by the header its clients always send.
    let json = logs::is_logs_target(headers.get("x-amz-target").and_then(|v| v.to_str().ok()));
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
        Ok(body) if json => json_response(StatusCode::OK, body, &request_id),
        Ok(xml) => xml_response(StatusCode::OK, xml),
        Err(e) => {
            tracing::debug!(code = %e.code, message = %e.message, "request refused");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
            if json {
                json_response(status, logs::error_body(&e), &request_id)
            } else {
                xml_response(status, e.to_xml(&request_id))
            }
        }
    }
}

fn json_response(status: StatusCode, body: String, request_id: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, logs::CONTENT_TYPE.to_owned()),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                request_id.to_owned(),
            ),
        ],
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

/// The services this endpoint answers, by the SigV4 scope a request is
/// signed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Ec2,
    /// ELBv2 (spec 9, 12.5).
    Elbv2,
    /// STS's `GetCallerIdentity` (see `sts`).
    Sts,
    /// CloudWatch Logs (see `logs`), for flow logs' log groups.
    Logs,
}

impl Service {
    const SERVED: [Service; 4] = [Service::Ec2, Service::Elbv2, Service::Sts, Service::Logs];

    /// The name a credential scope gives the service.
    fn scope(self) -> &'static str {
        match self {
            Service::Ec2 => "ec2",
            Service::Elbv2 => "elasticloadbalancing",
            Service::Sts => "sts",
            Service::Logs => "logs",
        }
    }

    fn from_scope(scope: &str) -> Option<Self> {
        Self::SERVED.into_iter().find(|s| s.scope() == scope)
    }

    /// The error as this service's clients parse it: EC2's own shape, or
    /// the standard Query protocol's in the service's namespace.
    fn shape(self, e: ApiError) -> ApiError {
        match self {
            // CloudWatch Logs' errors are written as JSON from the code and
            // message alone.
            Service::Ec2 | Service::Logs => e,
            Service::Elbv2 => e.in_query_shape(elbv2::NAMESPACE),
            Service::Sts => e.in_query_shape(sts::NAMESPACE),
        }
    }

    /// The error for a request whose signature this service does not accept.
    fn auth_error(self, e: AuthError) -> ApiError {
        let error = match (self, &e) {
            // AWS's Query-protocol services (the common errors of ELBv2 and
            // STS) answer an unknown key with InvalidClientTokenId and an
            // unsigned request with MissingAuthenticationToken; EC2 answers
            // AuthFailure to both.
            (Service::Elbv2 | Service::Sts, AuthError::UnknownKey) => ApiError::new(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            )
            .with_status(403),
            (Service::Elbv2 | Service::Sts, AuthError::Missing) => ApiError::new(
                "MissingAuthenticationToken",
                "Request is missing Authentication Token",
            )
            .with_status(403),
            // The JSON protocol's common errors, as CloudWatch Logs answers them.
            (Service::Logs, AuthError::UnknownKey) => ApiError::new(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            ),
            (Service::Logs, AuthError::Missing) => ApiError::new(
                "MissingAuthenticationTokenException",
                "Request is missing Authentication Token",
            ),
            (Service::Logs, AuthError::SignatureMismatch) => {
                ApiError::new("InvalidSignatureException", e.to_string())
            }
            _ => ApiError::new(e.code(), e.to_string()).with_status(e.status()),
        };
        self.shape(error)
    }
}

/// The refusal of a request signed for a service this endpoint does not
/// serve: AWS's answer to a credential scoped to another service
/// (SignatureDoesNotMatch, 403), naming every service that is served.
fn unserved(service: &str) -> ApiError {
    let served: Vec<String> = Service::SERVED
        .iter()
        .map(|s| format!("'{}'", s.scope()))
        .collect();
    ApiError::new(
        "SignatureDoesNotMatch",
        format!(
            "Credential should be scoped to correct service: {}, not '{service}'. \
             This endpoint serves EC2, ELBv2, STS (GetCallerIdentity) and CloudWatch Logs only.",
            served.join(", ")
        ),
    )
    .with_status(403)
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
    let now = now_secs() as i64;
    let request = sigv4::Request {
        method,
        path,
        query,
        headers,
        body,
    };
    let store = state.store.as_ref();
    // The scope names the service before the signature is checked, so a
    // request for a service not served here is told so (and logged by
    // name) rather than failing on its key, and errors come in the shape
    // of the service the client speaks.
    let claimed = sigv4::read_unverified(&request).map_err(|e| Service::Ec2.auth_error(e))?;
    let Some(service) = Service::from_scope(&claimed.service) else {
        tracing::warn!(
            service = %claimed.service,
            "refused a request signed for a service this endpoint does not serve \
             (it serves ec2, elasticloadbalancing, sts and logs)"
        );
        return Err(unserved(&claimed.service));
    };
    let mode = Mode::of(state);
    let (verified, account) = match mode.fixed_account() {
        Some(fixed) => (claimed, fixed.clone()),
        None => {
            let verified = sigv4::verify(&request, now, |key| {
                account::by_access_key(store, key)
                    .ok()
                    .flatten()
                    .map(|a| a.secret_access_key)
            })
            .map_err(|e| service.auth_error(e))?;
            let account = account::by_access_key(store, &verified.access_key)
                .map_err(|e| service.shape(e))?
                // Only a key deleted since the signature was checked gets here.
                .ok_or_else(|| service.auth_error(AuthError::UnknownKey))?;
            (verified, account)
        }
    };
    if service == Service::Logs {
        // Per account and region like everything else, but no default VPC:
        // a log call creates no EC2 resources.
        let ctx = Ctx {
            store,
            account: &account,
            region: &verified.region,
            request_id,
            fleet: None,
        };
        let target = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-target"))
            .map(|(_, v)| v.as_str());
        return logs::dispatch(&ctx, target, body);
    }
    let params = Params::parse(body, query);
    if service == Service::Sts {
        return sts::dispatch(&mode.caller(&account), &params, request_id);
    }
    let ctx = Ctx {
        store,
        account: &account,
        region: &verified.region,
        request_id,
        fleet: state.agent.as_ref().map(|a| &*a.fleet),
    };
    // spec 1.3: an account finds a default VPC in every region it uses.
    default_vpc::ensure(&ctx).map_err(|e| service.shape(e))?;
    if service == Service::Elbv2 {
        return elbv2::dispatch(&ctx, &params).map_err(|e| service.shape(e));
    }
    if let Some(answer) = mode.ec2_action(&ctx, &params) {
        return answer;
    }
    dispatch(&ctx, &params)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    use super::*;
    use crate::store::MemoryStore;

    /// Records every event's level and fields as `level name=value …`.
    #[derive(Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    struct Fields(String);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!(" {}={value:?}", field.name()));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields(event.metadata().level().to_string());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    // Issue 12 (bad input): the refusal of a request signed for a service
    // this endpoint does not serve is logged at WARN, naming the service.
    #[test]
    fn unserved_service_is_logged_by_name() {
        let store = Arc::new(MemoryStore::new());
        let alice = Account::generate("alice", None);
        account::create(store.as_ref(), &alice).unwrap();
        let state = ApiState {
            store,
            moto_compat: None,
            agent: None,
        };
        let mut headers = vec![("Host".to_owned(), "127.0.0.1".to_owned())];
        let body = b"Action=ListTables";
        let request = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body,
        };
        let now = now_secs() as i64;
        let signed = sigv4::sign(
            &request,
            &sigv4::SigningParams {
                access_key: &alice.access_key_id,
                secret_key: &alice.secret_access_key,
                region: "us-east-1",
                service: "dynamodb",
                time_unix: now,
                content_sha256_header: false,
            },
        )
        .unwrap();
        headers.extend(signed);
        let recorder = Recorder::default();
        let e = tracing::subscriber::with_default(recorder.clone(), || {
            execute(&state, "POST", "/", "", &headers, body, "r")
        })
        .unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        let logged = recorder.0.lock().unwrap().clone();
        assert!(
            logged
                .iter()
                .any(|l| l.starts_with(&Level::WARN.to_string()) && l.contains("service=dynamodb")),
            "{logged:?}"
        );
    }
}
