//! AWS Signature Version 4 for the EC2 Query API: verifying what the `aws` CLI,
//! boto3 and the other SDKs send (spec 12.1), and signing for openvpc's own
//! clients. This crate owns the canonical request (URI, query, headers,
//! payload hash), the credential scope, the signing-key chain, the 15-minute
//! clock window, presigned-URL expiry, and the AWS error code and HTTP status
//! of every way a signature can fail. It is sans-IO: it reads no clock (the
//! time is an argument), no socket and no key store (the caller passes a
//! lookup). It must never panic on request data, must compare signatures in
//! constant time, and must not decide authorisation: it says who signed the
//! request and for which region and service, and the caller checks those
//! against the endpoint it serves. It knows nothing of accounts, the store or
//! the API's actions, and keeps no date code of its own: the civil-date
//! conversion is `openvpc_model::time`, shared by the whole project.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use openvpc_model::time::{civil_time, days_from_civil, days_in_month};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
/// AWS accepts a request stamped up to 15 minutes either side of its own clock.
const MAX_SKEW_SECS: i64 = 15 * 60;
/// AWS's ceiling for `X-Amz-Expires`: seven days.
pub const MAX_PRESIGN_EXPIRES_SECS: u32 = 7 * 24 * 60 * 60;
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The presigned-URL parameters; a query that already has one cannot be presigned again.
const PRESIGN_PARAMS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
];
/// Headers a signer leaves unsigned because proxies and HTTP stacks add, drop
/// or rewrite them in flight (botocore's list, so both sides agree).
const UNSIGNABLE_HEADERS: [&str; 14] = [
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];
/// Client text quoted back in an error message is cut to this many characters,
/// so a megabyte header cannot become a megabyte response.
const QUOTE_LIMIT: usize = 80;

/// A request as the HTTP layer received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The method exactly as sent, e.g. "POST".
    pub method: &'a str,
    /// The raw path as received, still percent-encoded, e.g. "/".
    pub path: &'a str,
    /// The raw query string without '?', still percent-encoded; may be "".
    pub query: &'a str,
    /// Headers as received: names in any case, possibly repeated.
    pub headers: &'a [(String, String)],
    /// The body bytes.
    pub body: &'a [u8],
}

/// Who signed a verified request, and for which scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key ID from the credential scope.
    pub access_key: String,
    /// The region the request was signed for; the caller checks it is its own.
    pub region: String,
    /// The service the request was signed for ("ec2"); the caller checks it.
    pub service: String,
    /// The scope date, `yyyymmdd`.
    pub date: String,
}

/// Why a request's signature was not accepted; `code()` and `status()` give the AWS error.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Neither an Authorization header nor an X-Amz-Signature query parameter.
    #[error(
        "AWS was not able to validate the provided access credentials: the request is not \
         signed. Sign it with SigV4 (an Authorization header or a presigned URL)."
    )]
    Missing,
    /// The signature's parts are malformed or missing; the message says which.
    #[error("{0}")]
    Incomplete(String),
    /// The access key ID is not one this server knows.
    #[error("AWS was not able to validate the provided access credentials")]
    UnknownKey,
    /// Well formed, but not signed with the key's secret over this request.
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method."
    )]
    SignatureMismatch,
    /// Signed more than 15 minutes from now, or a presigned URL past its expiry.
    #[error("{0}")]
    Expired(String),
}

impl AuthError {
    /// The AWS error code, as EC2 puts it in `<Code>`.
    pub fn code(&self) -> &'static str {
        match self {
            // EC2 answers AuthFailure both for an unsigned request and for an
            // unknown key; the other Query APIs' MissingAuthenticationToken is
            // not what EC2 clients see.
            AuthError::Missing | AuthError::UnknownKey => "AuthFailure",
            AuthError::Incomplete(_) => "IncompleteSignature",
            AuthError::SignatureMismatch => "SignatureDoesNotMatch",
            AuthError::Expired(_) => "RequestExpired",
        }
    }

    /// The HTTP status AWS sends with `code()`.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Missing | AuthError::UnknownKey => 401,
            AuthError::Incomplete(_) | AuthError::Expired(_) => 400,
            AuthError::SignatureMismatch => 403,
        }
    }
}

/// Why `sign` or `presign` could not sign a request.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// SigV4 requires the Host header to be signed.
    #[error("the request has no Host header; add the Host it will be sent with before signing")]
    MissingHost,
    /// A scope part would not survive the `/`-separated credential string.
    #[error("the {0} must be non-empty and contain no '/' or whitespace")]
    BadScope(&'static str),
    /// The time cannot be written as `yyyymmddThhmmssZ`.
    #[error("the signing time {0} is outside the years 0000 to 9999")]
    BadTime(i64),
    /// A header name that is not an HTTP token, so no server could check its signature.
    #[error("the header name {0:?} is not a valid HTTP header name")]
    BadHeaderName(String),
    /// `X-Amz-Expires` above AWS's seven-day ceiling.
    #[error("a presigned URL may live at most 604800 seconds (7 days), not {0}")]
    BadExpires(u32),
    /// The query already carries presigned `X-Amz-*` parameters.
    #[error("the query already has presigned X-Amz-* parameters; presign the request without them")]
    AlreadySigned,
}

/// Who signs, for which scope, and when.
#[derive(Clone, Copy)]
pub struct SigningParams<'a> {
    /// Access key ID.
    pub access_key: &'a str,
    /// Secret access key.
    pub secret_key: &'a str,
    /// Region, e.g. "us-east-1".
    pub region: &'a str,
    /// Service, e.g. "ec2".
    pub service: &'a str,
    /// Signing time, seconds since the epoch.
    pub time_unix: i64,
    /// `sign` only: also add and sign X-Amz-Content-Sha256 (S3-style servers
    /// want it; EC2 does not).
    pub content_sha256_header: bool,
}

impl std::fmt::Debug for SigningParams<'_> {
    // Hand-written so that logging the parameters never logs the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningParams")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .field("service", &self.service)
            .field("time_unix", &self.time_unix)
            .field("content_sha256_header", &self.content_sha256_header)
            .finish()
    }
}

/// Verifies a request signed with the Authorization header or presigned query parameters.
/// `secret_for(access_key)` returns the secret key, or None if the key is unknown.
/// `now_unix` is the current time in seconds since the epoch. The caller must still
/// check `Verified::region` and `Verified::service` against the endpoint it serves.
pub fn verify(
    req: &Request<'_>,
    now_unix: i64,
    secret_for: impl Fn(&str) -> Option<String>,
) -> Result<Verified, AuthError> {
    let headers = HeaderMap::new(req.headers);
    let params = parse_query(req.query);
    let claim = read_claim(&headers, &params)?;
    check_time(&claim, now_unix)?;
    let payload_hash = payload_hash(&headers, req.body, &claim.signed_headers)?;
    let canonical_headers = canonical_headers(&headers, &claim.signed_headers)?;
    let canonical = canonical_request(
        req.method,
        req.path,
        &params,
        claim.presigned,
        &canonical_headers,
        &claim.signed_headers.join(";"),
        &payload_hash,
    );
    // Only now ask for the key: a malformed or stale request is rejected the
    // same way whether or not its key exists.
    let secret = secret_for(&claim.scope.access_key).ok_or(AuthError::UnknownKey)?;
    let key = signing_key(&secret, &claim.scope);
    let to_sign = string_to_sign(&claim.amz_date, &claim.scope, &canonical);
    let Ok(mut mac) = HmacSha256::new_from_slice(&key) else {
        // HMAC takes keys of any length, so this cannot happen; failing closed costs nothing.
        return Err(AuthError::SignatureMismatch);
    };
    mac.update(to_sign.as_bytes());
    // verify_slice compares in constant time, so the response time does not
    // tell an attacker how many leading bytes of a forged signature were right.
    mac.verify_slice(&claim.signature)
        .map_err(|_| AuthError::SignatureMismatch)?;
    let Scope {
        access_key,
        date,
        region,
        service,
    } = claim.scope;
    Ok(Verified {
        access_key,
        region,
        service,
        date,
    })
}

/// Reads who a request claims to be signed by, checking only that the
/// signature is well formed: neither the clock nor the signature itself is
/// checked. For `openvpc server --moto-compat` alone, where moto's tests sign
/// with made-up keys and sometimes a frozen clock (freezegun); never use it to
/// authenticate a real caller.
pub fn read_unverified(req: &Request<'_>) -> Result<Verified, AuthError> {
    let headers = HeaderMap::new(req.headers);
    let params = parse_query(req.query);
    let Scope {
        access_key,
        date,
        region,
        service,
    } = read_claim(&headers, &params)?.scope;
    Ok(Verified {
        access_key,
        region,
        service,
        date,
    })
}

/// Signs a request with the Authorization header. Returns the headers to add, in order:
/// X-Amz-Date, X-Amz-Content-Sha256 (when asked) and Authorization. Every header of
/// `req` is signed except hop-by-hop ones and User-Agent; any Authorization,
/// X-Amz-Date or X-Amz-Content-Sha256 already in `req` is ignored, as the returned
/// ones replace it. `req` must carry the Host header it will be sent with.
pub fn sign(
    req: &Request<'_>,
    params: &SigningParams<'_>,
) -> Result<Vec<(String, String)>, SignError> {
    let (scope, amz_date) = signing_scope(params)?;
    let payload_hash = hex::encode(Sha256::digest(req.body));

    let mut to_sign: Vec<(String, String)> = req
        .headers
        .iter()
        .filter(|(name, _)| {
            let name = name.trim().to_ascii_lowercase();
            !matches!(
                name.as_str(),
                "authorization" | "x-amz-date" | "x-amz-content-sha256"
            ) && !UNSIGNABLE_HEADERS.contains(&name.as_str())
        })
        .cloned()
        .collect();
    to_sign.push(("X-Amz-Date".to_owned(), amz_date.clone()));
    if params.content_sha256_header {
        to_sign.push(("X-Amz-Content-Sha256".to_owned(), payload_hash.clone()));
    }
    let headers = HeaderMap::new(&to_sign);
    if let Some(bad) = headers
        .map
        .keys()
        .find(|name| name.is_empty() || !name.bytes().all(is_lower_token_byte))
    {
        return Err(SignError::BadHeaderName(bad.clone()));
    }
    if !headers.map.contains_key("host") {
        return Err(SignError::MissingHost);
    }
    let names: Vec<String> = headers.map.keys().cloned().collect();
    let signed_headers = names.join(";");
    let mut canonical_headers = String::new();
    for (name, values) in &headers.map {
        push_header_line(&mut canonical_headers, name, values);
    }

    let params_q = parse_query(req.query);
    let canonical = canonical_request(
        req.method,
        req.path,
        &params_q,
        false,
        &canonical_headers,
        &signed_headers,
        &payload_hash,
    );
    let signature = signature_hex(params.secret_key, &scope, &amz_date, &canonical);

    let mut out = vec![("X-Amz-Date".to_owned(), amz_date)];
    if params.content_sha256_header {
        out.push(("X-Amz-Content-Sha256".to_owned(), payload_hash));
    }
    out.push((
        "Authorization".to_owned(),
        format!(
            "{ALGORITHM} Credential={}/{}, SignedHeaders={signed_headers}, Signature={signature}",
            scope.access_key,
            scope.string()
        ),
    ));
    Ok(out)
}

/// Presigns a request: returns the query string to send instead of `req.query`, with the
/// `X-Amz-*` parameters and `X-Amz-Signature` appended. Only Host is signed, so whoever
/// holds the URL can use it for `expires_secs` seconds after `params.time_unix`.
pub fn presign(
    req: &Request<'_>,
    params: &SigningParams<'_>,
    expires_secs: u32,
) -> Result<String, SignError> {
    let (scope, amz_date) = signing_scope(params)?;
    if expires_secs > MAX_PRESIGN_EXPIRES_SECS {
        return Err(SignError::BadExpires(expires_secs));
    }
    let original = parse_query(req.query);
    if original.iter().any(|(name, _)| {
        PRESIGN_PARAMS
            .iter()
            .any(|p| p.as_bytes() == name.as_slice())
    }) {
        return Err(SignError::AlreadySigned);
    }
    let headers = HeaderMap::new(req.headers);
    let Some(host) = headers.map.get("host") else {
        return Err(SignError::MissingHost);
    };
    let mut canonical_headers = String::new();
    push_header_line(&mut canonical_headers, "host", host);

    let credential = format!("{}/{}", scope.access_key, scope.string());
    let expires = expires_secs.to_string();
    let mut auth = String::new();
    for (name, value) in [
        ("X-Amz-Algorithm", ALGORITHM),
        ("X-Amz-Credential", credential.as_str()),
        ("X-Amz-Date", amz_date.as_str()),
        ("X-Amz-Expires", expires.as_str()),
        ("X-Amz-SignedHeaders", "host"),
    ] {
        if !auth.is_empty() {
            auth.push('&');
        }
        auth.push_str(name);
        auth.push('=');
        uri_encode(value.as_bytes(), false, &mut auth);
    }
    let query = if req.query.is_empty() {
        auth
    } else {
        format!("{}&{auth}", req.query)
    };
    // Non-S3 services hash the body even for presigned requests (botocore does;
    // UNSIGNED-PAYLOAD is S3's exception).
    let payload_hash = hex::encode(Sha256::digest(req.body));
    let canonical = canonical_request(
        req.method,
        req.path,
        &parse_query(&query),
        true,
        &canonical_headers,
        "host",
        &payload_hash,
    );
    let signature = signature_hex(params.secret_key, &scope, &amz_date, &canonical);
    Ok(format!("{query}&X-Amz-Signature={signature}"))
}

/// The credential scope: `access_key/date/region/service/aws4_request`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    access_key: String,
    date: String,
    region: String,
    service: String,
}

impl Scope {
    /// The scope as it appears in the string to sign (without the access key).
    fn string(&self) -> String {
        format!(
            "{}/{}/{}/{TERMINATOR}",
            self.date, self.region, self.service
        )
    }
}

/// What the request says about its own signature, parsed and checked for form.
#[derive(Debug)]
struct Claim {
    presigned: bool,
    scope: Scope,
    amz_date: String,
    time: i64,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
    expires: Option<i64>,
}

/// Request headers by lowercase name, values in arrival order.
struct HeaderMap<'a> {
    map: BTreeMap<String, Vec<&'a str>>,
}

impl<'a> HeaderMap<'a> {
    fn new(headers: &'a [(String, String)]) -> Self {
        let mut map: BTreeMap<String, Vec<&'a str>> = BTreeMap::new();
        for (name, value) in headers {
            map.entry(name.trim().to_ascii_lowercase())
                .or_default()
                .push(value.as_str());
        }
        HeaderMap { map }
    }

    /// The header's single value; a repeated one is ambiguous, so it is an error.
    fn one(&self, name: &str) -> Result<Option<&'a str>, AuthError> {
        match self.map.get(name).map(Vec::as_slice) {
            None | Some([]) => Ok(None),
            Some([value]) => Ok(Some(value)),
            Some(_) => Err(AuthError::Incomplete(format!(
                "The {name} header appears more than once; send it once."
            ))),
        }
    }
}

/// One query parameter, name and value percent-decoded.
type Param = (Vec<u8>, Vec<u8>);

/// The query's parameters in arrival order.
fn parse_query(query: &str) -> Vec<Param> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// The parameter's single value as text; a repeated one is ambiguous, so it is an error.
fn param_one(params: &[Param], name: &str) -> Result<Option<String>, AuthError> {
    let mut found = params
        .iter()
        .filter(|(n, _)| n.as_slice() == name.as_bytes());
    let Some((_, value)) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(AuthError::Incomplete(format!(
            "The {name} query parameter appears more than once; send it once."
        )));
    }
    String::from_utf8(value.clone())
        .map(Some)
        .map_err(|_| AuthError::Incomplete(format!("The {name} query parameter is not UTF-8.")))
}

fn param_required(params: &[Param], name: &str) -> Result<String, AuthError> {
    param_one(params, name)?.ok_or_else(|| {
        AuthError::Incomplete(format!(
            "AWS query-string parameters must include '{name}'. Re-examine the query-string \
             parameters."
        ))
    })
}

/// Reads the signature the request claims, from the Authorization header or the query.
fn read_claim(headers: &HeaderMap<'_>, params: &[Param]) -> Result<Claim, AuthError> {
    let authorization = headers.one("authorization")?;
    let query_signature = param_one(params, "X-Amz-Signature")?;
    match (authorization, query_signature) {
        (Some(_), Some(_)) => Err(AuthError::Incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter or the \
             Authorization header should be specified."
                .to_owned(),
        )),
        (Some(value), None) => read_header_claim(headers, value),
        (None, Some(signature)) => read_query_claim(params, &signature),
        (None, None) => {
            // Half a presigned URL is a broken signature, not a missing one.
            if param_one(params, "X-Amz-Algorithm")?.is_some()
                || param_one(params, "X-Amz-Credential")?.is_some()
            {
                Err(AuthError::Incomplete(
                    "AWS query-string parameters must include 'X-Amz-Signature'. Re-examine the \
                     query-string parameters."
                        .to_owned(),
                ))
            } else {
                Err(AuthError::Missing)
            }
        }
    }
}

fn read_header_claim(headers: &HeaderMap<'_>, authorization: &str) -> Result<Claim, AuthError> {
    let parts = parse_authorization(authorization)?;
    let amz_date = headers.one("x-amz-date")?.ok_or_else(|| {
        // botocore and the other SDKs always send X-Amz-Date; the RFC 1123
        // Date-header alternative is not supported.
        AuthError::Incomplete(
            "Authorization header requires existence of the 'X-Amz-Date' header.".to_owned(),
        )
    })?;
    claim(
        false,
        &parts.credential,
        amz_date.trim(),
        &parts.signed_headers,
        &parts.signature,
        None,
    )
}

fn read_query_claim(params: &[Param], signature: &str) -> Result<Claim, AuthError> {
    let algorithm = param_required(params, "X-Amz-Algorithm")?;
    if algorithm != ALGORITHM {
        return Err(AuthError::Incomplete(format!(
            "X-Amz-Algorithm only supports '{ALGORITHM}', not {}.",
            quoted(&algorithm)
        )));
    }
    let credential = param_required(params, "X-Amz-Credential")?;
    let amz_date = param_required(params, "X-Amz-Date")?;
    let signed_headers = param_required(params, "X-Amz-SignedHeaders")?;
    let expires = match param_one(params, "X-Amz-Expires")? {
        // Without X-Amz-Expires the URL gets the header-signing window of 15
        // minutes either side, never an unbounded life.
        None => None,
        Some(text) => Some(parse_expires(&text)?),
    };
    claim(
        true,
        &credential,
        &amz_date,
        &signed_headers,
        signature,
        expires,
    )
}

fn parse_expires(text: &str) -> Result<i64, AuthError> {
    let bad = || {
        AuthError::Incomplete(format!(
            "X-Amz-Expires must be a whole number of seconds from 0 to {MAX_PRESIGN_EXPIRES_SECS} \
             (7 days), not {}.",
            quoted(text)
        ))
    };
    if text.is_empty() || text.len() > 7 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u32>() {
        Ok(secs) if secs <= MAX_PRESIGN_EXPIRES_SECS => Ok(i64::from(secs)),
        _ => Err(bad()),
    }
}

/// Checks the parts common to both forms and assembles the claim.
fn claim(
    presigned: bool,
    credential: &str,
    amz_date: &str,
    signed_headers: &str,
    signature: &str,
    expires: Option<i64>,
) -> Result<Claim, AuthError> {
    let time = parse_amz_date(amz_date)?;
    let scope = parse_credential(credential)?;
    // parse_amz_date accepted only ASCII, so slicing at 8 is on a char boundary.
    let day = amz_date.get(..8).unwrap_or_default();
    if scope.date != day {
        return Err(AuthError::Incomplete(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: {} != '{day}', from '{amz_date}'.",
            quoted(&scope.date)
        )));
    }
    let signed_headers = parse_signed_headers(signed_headers)?;
    let signature = parse_signature(signature)?;
    Ok(Claim {
        presigned,
        scope,
        amz_date: amz_date.to_owned(),
        time,
        signed_headers,
        signature,
        expires,
    })
}

/// The three components of `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct AuthorizationParts {
    credential: String,
    signed_headers: String,
    signature: String,
}

fn parse_authorization(value: &str) -> Result<AuthorizationParts, AuthError> {
    let value = value.trim_matches(|c: char| c.is_ascii_whitespace());
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_whitespace()))
        .ok_or_else(|| {
            AuthError::Incomplete(format!(
                "Authorization header must be '{ALGORITHM} Credential=..., SignedHeaders=..., \
                 Signature=...', not {}.",
                quoted(value)
            ))
        })?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim_matches(|c: char| c.is_ascii_whitespace());
        if part.is_empty() {
            continue;
        }
        let Some((name, field)) = part.split_once('=') else {
            return Err(AuthError::Incomplete(format!(
                "Authorization header component {} is not of the form name=value.",
                quoted(part)
            )));
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            other => {
                return Err(AuthError::Incomplete(format!(
                    "Authorization header has an unknown component {}.",
                    quoted(other)
                )));
            }
        };
        if slot.replace(field.trim().to_owned()).is_some() {
            return Err(AuthError::Incomplete(format!(
                "Authorization header has the '{}' component more than once.",
                name.trim()
            )));
        }
    }
    let require = |slot: Option<String>, name: &str| {
        slot.ok_or_else(|| {
            AuthError::Incomplete(format!(
                "Authorization header requires '{name}' parameter. Authorization={}",
                quoted(value)
            ))
        })
    };
    Ok(AuthorizationParts {
        credential: require(credential, "Credential")?,
        signed_headers: require(signed_headers, "SignedHeaders")?,
        signature: require(signature, "Signature")?,
    })
}

fn parse_credential(credential: &str) -> Result<Scope, AuthError> {
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = parts[..] else {
        return Err(AuthError::Incomplete(format!(
            "Credential must have the form <access key>/<yyyymmdd>/<region>/<service>/\
             {TERMINATOR}, not {}.",
            quoted(credential)
        )));
    };
    if access_key.is_empty() {
        return Err(AuthError::Incomplete(
            "Credential has an empty access key ID.".to_owned(),
        ));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped to a date of the form yyyymmdd, not {}.",
            quoted(date)
        )));
    }
    if region.is_empty() {
        return Err(AuthError::Incomplete(
            "Credential should be scoped to a valid region, not ''.".to_owned(),
        ));
    }
    if service.is_empty() {
        return Err(AuthError::Incomplete(
            "Credential should be scoped to a valid service, not ''.".to_owned(),
        ));
    }
    if terminator != TERMINATOR {
        return Err(AuthError::Incomplete(format!(
            "Credential should be scoped with a valid terminator: '{TERMINATOR}', not {}.",
            quoted(terminator)
        )));
    }
    Ok(Scope {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    })
}

/// SignedHeaders as the spec writes it: lowercase names, sorted, `;`-separated,
/// and Host among them (otherwise the request could be replayed at another host).
fn parse_signed_headers(text: &str) -> Result<Vec<String>, AuthError> {
    let bad = || {
        AuthError::Incomplete(format!(
            "SignedHeaders must be lowercase header names, sorted and separated by ';', not {}.",
            quoted(text)
        ))
    };
    let mut names: Vec<String> = Vec::new();
    for name in text.split(';') {
        let valid = !name.is_empty() && name.bytes().all(is_lower_token_byte);
        // Strictly ascending also rules out a name listed twice.
        let ordered = names.last().is_none_or(|last| last.as_str() < name);
        if !valid || !ordered {
            return Err(bad());
        }
        names.push(name.to_owned());
    }
    if !names.iter().any(|n| n == "host") {
        return Err(AuthError::Incomplete(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".to_owned(),
        ));
    }
    Ok(names)
}

/// An RFC 9110 token character, excluding uppercase letters.
fn is_lower_token_byte(b: u8) -> bool {
    b.is_ascii_lowercase()
        || b.is_ascii_digit()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn parse_signature(text: &str) -> Result<Vec<u8>, AuthError> {
    match hex::decode(text) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(AuthError::Incomplete(format!(
            "Signature must be 64 hexadecimal characters, not {}.",
            quoted(text)
        ))),
    }
}

fn check_time(claim: &Claim, now: i64) -> Result<(), AuthError> {
    // i128 so that no `now` the caller passes can overflow the arithmetic.
    let (signed, now_wide) = (i128::from(claim.time), i128::from(now));
    let skew = i128::from(MAX_SKEW_SECS);
    let now_text = describe_time(now);
    if signed - now_wide > skew {
        return Err(AuthError::Expired(format!(
            "Request is not yet valid: it is dated {} but the server time is {now_text}, more \
             than 15 minutes earlier. Check the client's clock.",
            claim.amz_date
        )));
    }
    match claim.expires {
        Some(expires) if now_wide > signed + i128::from(expires) => {
            Err(AuthError::Expired(format!(
                "Request has expired: the presigned URL dated {} for {expires} seconds expired at \
                 {}; the server time is {now_text}.",
                claim.amz_date,
                describe_time(claim.time.saturating_add(expires))
            )))
        }
        None if now_wide - signed > skew => Err(AuthError::Expired(format!(
            "Request has expired: it is dated {} but the server time is {now_text}, more than 15 \
             minutes later. Check the client's clock.",
            claim.amz_date
        ))),
        _ => Ok(()),
    }
}

/// The hash on the canonical request's last line. EC2 carries the whole
/// request in the body, so the body is always hashed here; an
/// X-Amz-Content-Sha256 header is only accepted when it agrees.
fn payload_hash(
    headers: &HeaderMap<'_>,
    body: &[u8],
    signed_headers: &[String],
) -> Result<String, AuthError> {
    let computed = hex::encode(Sha256::digest(body));
    let Some(claimed) = headers.one("x-amz-content-sha256")? else {
        return Ok(computed);
    };
    let claimed = claimed.trim();
    if claimed.eq_ignore_ascii_case(&computed) {
        // A signer that had the header when it signed (and so signed the
        // header too) hashed its text; one that did not hashed the body.
        if signed_headers.iter().any(|h| h == "x-amz-content-sha256") {
            Ok(claimed.to_owned())
        } else {
            Ok(computed)
        }
    } else if claimed == UNSIGNED_PAYLOAD || claimed.starts_with("STREAMING-") {
        Err(AuthError::Incomplete(format!(
            "X-Amz-Content-Sha256 {} is not accepted: the EC2 Query API carries the request in \
             the body, so sign the body's SHA-256.",
            quoted(claimed)
        )))
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

fn canonical_headers(headers: &HeaderMap<'_>, signed: &[String]) -> Result<String, AuthError> {
    let mut out = String::new();
    for name in signed {
        let Some(values) = headers.map.get(name) else {
            return Err(AuthError::Incomplete(format!(
                "The signed header '{name}' is not in the request."
            )));
        };
        push_header_line(&mut out, name, values);
    }
    Ok(out)
}

/// `name:value1,value2\n`, each value trimmed with inner runs of whitespace collapsed.
fn push_header_line(out: &mut String, name: &str, values: &[&str]) {
    out.push_str(name);
    out.push(':');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, word) in value.split_ascii_whitespace().enumerate() {
            if j > 0 {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out.push('\n');
}

fn canonical_request(
    method: &str,
    path: &str,
    params: &[Param],
    presigned: bool,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    let mut out = String::with_capacity(256 + canonical_headers.len());
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(&canonical_query(params, presigned));
    out.push('\n');
    out.push_str(canonical_headers);
    out.push('\n');
    out.push_str(signed_headers);
    out.push('\n');
    out.push_str(payload_hash);
    out
}

/// The path as it came off the wire, normalised (dot segments and empty
/// segments removed, as botocore does for every service but S3) and then
/// URI-encoded once more. That second encoding is what AWS calls "encode each
/// segment twice": the client encoded it once to send it.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut normalised = String::with_capacity(path.len());
    if path.starts_with('/') {
        normalised.push('/');
    }
    normalised.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalised.push('/');
    }
    let mut out = String::with_capacity(normalised.len() + 8);
    uri_encode(normalised.as_bytes(), true, &mut out);
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Every parameter decoded and re-encoded with the RFC 3986 unreserved set,
/// sorted by name then value; a presigned request leaves out its signature.
/// Decoding first makes `%7E`, `~`, `%2f` and `%2F` all sign the same way,
/// whichever encoder the client used.
fn canonical_query(params: &[Param], presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| !(presigned && name.as_slice() == b"X-Amz-Signature"))
        .map(|(name, value)| {
            let (mut n, mut v) = (String::new(), String::new());
            uri_encode(name, false, &mut n);
            uri_encode(value, false, &mut v);
            (n, v)
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.string(),
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; an all-zero key would only ever
        // produce signatures that do not verify.
        Err(_) => [0; 32],
    }
}

/// HMAC("AWS4" + secret, date) → region → service → "aws4_request".
fn signing_key(secret: &str, scope: &Scope) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
    let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
    hmac_sha256(&k_service, TERMINATOR.as_bytes())
}

fn signature_hex(secret: &str, scope: &Scope, amz_date: &str, canonical_request: &str) -> String {
    let key = signing_key(secret, scope);
    let to_sign = string_to_sign(amz_date, scope, canonical_request);
    hex::encode(hmac_sha256(&key, to_sign.as_bytes()))
}

/// The scope to sign for and the `yyyymmddThhmmssZ` signing time.
fn signing_scope(params: &SigningParams<'_>) -> Result<(Scope, String), SignError> {
    let clean = |value: &str| {
        !value.is_empty() && !value.contains('/') && !value.chars().any(char::is_whitespace)
    };
    for (value, what) in [
        (params.access_key, "access key"),
        (params.region, "region"),
        (params.service, "service"),
    ] {
        if !clean(value) {
            return Err(SignError::BadScope(what));
        }
    }
    let amz_date = format_amz_date(params.time_unix).ok_or(SignError::BadTime(params.time_unix))?;
    let scope = Scope {
        access_key: params.access_key.to_owned(),
        date: amz_date.get(..8).unwrap_or_default().to_owned(),
        region: params.region.to_owned(),
        service: params.service.to_owned(),
    };
    Ok((scope, amz_date))
}

/// Percent-encodes every byte outside the RFC 3986 unreserved set (and `/` when
/// `keep_slash`), with uppercase hex as SigV4 requires.
fn uri_encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

/// Decodes a query component: `%XX` to its byte and `+` to a space, the way
/// the EC2 Query API reads a form. botocore puts a space on the wire as `+`
/// (urllib) but signs it as `%20`, and every SDK sends a literal `+` as `%2B`,
/// so this is the reading under which both sides agree. A `%` not followed by
/// two hex digits stays a literal `%`.
fn form_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            other => out.push(other),
        }
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses `yyyymmddThhmmssZ` (the only form SigV4 signs) to seconds since the epoch.
fn parse_amz_date(text: &str) -> Result<i64, AuthError> {
    let bad = || {
        AuthError::Incomplete(format!(
            "X-Amz-Date must be in the ISO 8601 basic format yyyymmddThhmmssZ, not {}.",
            quoted(text)
        ))
    };
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0..4),
        number(4..6),
        number(6..8),
        number(9..11),
        number(11..13),
        number(13..15),
    ) else {
        return Err(bad());
    };
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Formats seconds since the epoch as `yyyymmddThhmmssZ`, for years 0000 to 9999.
fn format_amz_date(unix: i64) -> Option<String> {
    let (year, month, day, hour, minute, second) = civil_time(unix);
    (0..=9999)
        .contains(&year)
        .then(|| format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}Z"))
}

/// A time for an error message: `yyyymmddThhmmssZ` when it has that form.
fn describe_time(unix: i64) -> String {
    format_amz_date(unix).unwrap_or_else(|| format!("{unix} seconds since the epoch"))
}

/// Client text for an error message, single-quoted and cut to `QUOTE_LIMIT` characters.
fn quoted(text: &str) -> String {
    let mut out = String::from("'");
    let mut chars = text.chars();
    out.extend(chars.by_ref().take(QUOTE_LIMIT));
    if chars.next().is_some() {
        out.push('…');
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---- helpers -------------------------------------------------------------------

    fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn keys(table: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let table: Vec<(String, String)> = table
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect();
        move |ak| table.iter().find(|(a, _)| a == ak).map(|(_, s)| s.clone())
    }

    fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.to_owned(), value.to_owned()));
    }

    fn header<'h>(headers: &'h [(String, String)], name: &str) -> &'h str {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    // ---- a JSON reader just big enough for the fixtures (no serde in this crate) ---

    #[derive(Debug, Clone)]
    enum Json {
        Str(String),
        Num(i64),
        Arr(Vec<Json>),
        Obj(Vec<(String, Json)>),
        Lit,
    }

    impl Json {
        fn get(&self, key: &str) -> Option<&Json> {
            match self {
                Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }
        fn str(&self, key: &str) -> String {
            match self.get(key) {
                Some(Json::Str(s)) => s.clone(),
                other => panic!("{key}: not a string: {other:?}"),
            }
        }
        fn num(&self, key: &str) -> i64 {
            match self.get(key) {
                Some(Json::Num(n)) => *n,
                other => panic!("{key}: not a number: {other:?}"),
            }
        }
    }

    struct JsonReader<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl JsonReader<'_> {
        fn parse(text: &str) -> Json {
            let mut r = JsonReader {
                s: text.as_bytes(),
                i: 0,
            };
            r.value()
        }
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(u8::is_ascii_whitespace) {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) {
            self.ws();
            assert_eq!(self.s[self.i], b, "at {}", self.i);
            self.i += 1;
        }
        fn value(&mut self) -> Json {
            self.ws();
            match self.s[self.i] {
                b'"' => Json::Str(self.string()),
                b'[' => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.s[self.i] == b']' {
                        self.i += 1;
                        return Json::Arr(items);
                    }
                    loop {
                        items.push(self.value());
                        self.ws();
                        self.i += 1;
                        if self.s[self.i - 1] == b']' {
                            return Json::Arr(items);
                        }
                    }
                }
                b'{' => {
                    self.i += 1;
                    let mut fields = Vec::new();
                    self.ws();
                    if self.s[self.i] == b'}' {
                        self.i += 1;
                        return Json::Obj(fields);
                    }
                    loop {
                        self.ws();
                        let key = self.string();
                        self.eat(b':');
                        fields.push((key, self.value()));
                        self.ws();
                        self.i += 1;
                        if self.s[self.i - 1] == b'}' {
                            return Json::Obj(fields);
                        }
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = self.i;
                    self.i += 1;
                    while self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                    Json::Num(text.parse().unwrap())
                }
                _ => {
                    while self.s[self.i].is_ascii_alphabetic() {
                        self.i += 1;
                    }
                    Json::Lit
                }
            }
        }
        fn hex4(&mut self) -> u32 {
            let text = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
            self.i += 4;
            u32::from_str_radix(text, 16).unwrap()
        }
        fn string(&mut self) -> String {
            self.eat(b'"');
            let mut out = Vec::new();
            loop {
                let b = self.s[self.i];
                self.i += 1;
                match b {
                    b'"' => return String::from_utf8(out).unwrap(),
                    b'\\' => {
                        let e = self.s[self.i];
                        self.i += 1;
                        let c = match e {
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'u' => {
                                let mut code = self.hex4();
                                if (0xD800..0xDC00).contains(&code) {
                                    self.i += 2; // the "\u" of the low surrogate
                                    let low = self.hex4();
                                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                                }
                                char::from_u32(code).unwrap()
                            }
                            other => char::from(other),
                        };
                        let mut buf = [0; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    other => out.push(other),
                }
            }
        }
    }

    /// A request botocore signed, as the server received it (tests/fixtures/*.json,
    /// written by tests/fixtures/gen_sigv4_fixtures.py).
    #[derive(Debug, Clone)]
    struct Fixture {
        now_unix: i64,
        signed_at: String,
        access_key: String,
        secret_key: String,
        region: String,
        service: String,
        method: String,
        path: String,
        query: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        expires: Option<i64>,
    }

    impl Fixture {
        fn load(text: &str) -> Fixture {
            let j = JsonReader::parse(text);
            let headers = match j.get("headers") {
                Some(Json::Arr(items)) => items
                    .iter()
                    .map(|pair| match pair {
                        Json::Arr(kv) => match (&kv[0], &kv[1]) {
                            (Json::Str(k), Json::Str(v)) => (k.clone(), v.clone()),
                            other => panic!("header {other:?}"),
                        },
                        other => panic!("header {other:?}"),
                    })
                    .collect(),
                other => panic!("headers {other:?}"),
            };
            Fixture {
                now_unix: j.num("now_unix"),
                signed_at: j.str("signed_at"),
                access_key: j.str("access_key"),
                secret_key: j.str("secret_key"),
                region: j.str("region"),
                service: j.str("service"),
                method: j.str("method"),
                path: j.str("path"),
                query: j.str("query"),
                headers,
                body: j.str("body").into_bytes(),
                expires: j.get("expires").map(|_| j.num("expires")),
            }
        }

        fn request(&self) -> Request<'_> {
            Request {
                method: &self.method,
                path: &self.path,
                query: &self.query,
                headers: &self.headers,
                body: &self.body,
            }
        }

        fn verify_at(&self, now: i64) -> Result<Verified, AuthError> {
            verify(
                &self.request(),
                now,
                keys(&[(&self.access_key, &self.secret_key)]),
            )
        }

        fn verify(&self) -> Result<Verified, AuthError> {
            self.verify_at(self.now_unix)
        }

        fn params(&self) -> SigningParams<'_> {
            SigningParams {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
                region: &self.region,
                service: &self.service,
                time_unix: self.now_unix,
                content_sha256_header: false,
            }
        }
    }

    const POST_DESCRIBE_VPCS: &str = include_str!("../tests/fixtures/ec2_post_describe_vpcs.json");
    const POST_FILTER_ESCAPED: &str =
        include_str!("../tests/fixtures/ec2_post_filter_escaped.json");
    const GET_QUERY_ENCODING: &str =
        include_str!("../tests/fixtures/ec2_get_query_needs_encoding.json");
    const SERVICE_PATH: &str = include_str!("../tests/fixtures/service_path_encoded.json");
    const PRESIGNED_GET: &str = include_str!("../tests/fixtures/ec2_presigned_get.json");
    const PRESIGNED_ENCODING: &str =
        include_str!("../tests/fixtures/ec2_presigned_query_needs_encoding.json");
    const CLIENT_FILTERS: &str =
        include_str!("../tests/fixtures/ec2_client_describe_vpcs_filters.json");

    const ALL_FIXTURES: [&str; 7] = [
        POST_DESCRIBE_VPCS,
        POST_FILTER_ESCAPED,
        GET_QUERY_ENCODING,
        SERVICE_PATH,
        PRESIGNED_GET,
        PRESIGNED_ENCODING,
        CLIENT_FILTERS,
    ];

    /// The header-signed fixtures that came from SigV4Auth directly, so that
    /// every header present before signing is known.
    const HEADER_SIGNED_FIXTURES: [&str; 4] = [
        POST_DESCRIBE_VPCS,
        POST_FILTER_ESCAPED,
        GET_QUERY_ENCODING,
        SERVICE_PATH,
    ];

    fn fixture(text: &str) -> Fixture {
        Fixture::load(text)
    }

    // ---- the published AWS SigV4 test suite ------------------------------------------

    const SUITE_KEY: &str = "AKIDEXAMPLE";
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 20150830T123600Z.
    const SUITE_TIME: i64 = 1_440_938_160;

    struct SuiteCase {
        name: &'static str,
        method: &'static str,
        path: &'static str,
        query: &'static str,
        extra_headers: &'static [(&'static str, &'static str)],
        body: &'static str,
        signed_headers: &'static str,
        signature: &'static str,
    }

    /// Cases from AWS's aws-sig-v4-test-suite (2015-08-30). The signatures are the
    /// published ones, and each was re-derived with botocore 1.44.8 before it went in.
    const SUITE: &[SuiteCase] = &[
        SuiteCase {
            name: "get-vanilla",
            method: "GET",
            path: "/",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        SuiteCase {
            name: "get-vanilla-query-order-key-case",
            method: "GET",
            path: "/",
            query: "Param2=value2&Param1=value1",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        },
        SuiteCase {
            name: "post-vanilla",
            method: "POST",
            path: "/",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        },
        SuiteCase {
            name: "post-x-www-form-urlencoded",
            method: "POST",
            path: "/",
            query: "",
            extra_headers: &[("Content-Type", "application/x-www-form-urlencoded")],
            body: "Param1=value1",
            signed_headers: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        },
        SuiteCase {
            name: "get-vanilla-query-unreserved",
            method: "GET",
            path: "/",
            query: "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=\
                    -._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        },
        SuiteCase {
            name: "get-vanilla-utf8-query",
            method: "GET",
            path: "/",
            query: "%E1%88%B4=bar",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        },
        SuiteCase {
            name: "get-header-value-trim",
            method: "GET",
            path: "/",
            query: "",
            extra_headers: &[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")],
            body: "",
            signed_headers: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        },
        SuiteCase {
            name: "get-utf8 (raw UTF-8 path, encoded once)",
            method: "GET",
            path: "/\u{1234}",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        },
        SuiteCase {
            name: "get-space (raw space in the path)",
            method: "GET",
            path: "/example space/",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        },
        SuiteCase {
            name: "get-relative-relative (normalises to /)",
            method: "GET",
            path: "/example1/example2/../..",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        },
        SuiteCase {
            name: "get-slashes (empty segments removed)",
            method: "GET",
            path: "//example//",
            query: "",
            extra_headers: &[],
            body: "",
            signed_headers: "host;x-amz-date",
            signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        },
    ];

    fn suite_headers(case: &SuiteCase) -> Vec<(String, String)> {
        let mut headers = hdrs(&[("Host", "example.amazonaws.com")]);
        headers.extend(hdrs(case.extra_headers));
        headers
    }

    #[test]
    fn aws_test_suite_vectors_verify() {
        for case in SUITE {
            let mut headers = suite_headers(case);
            headers.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
            headers.push((
                "Authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/\
                     aws4_request, SignedHeaders={}, Signature={}",
                    case.signed_headers, case.signature
                ),
            ));
            let req = Request {
                method: case.method,
                path: case.path,
                query: case.query,
                headers: &headers,
                body: case.body.as_bytes(),
            };
            let got = verify(&req, SUITE_TIME, keys(&[(SUITE_KEY, SUITE_SECRET)]));
            assert_eq!(
                got,
                Ok(Verified {
                    access_key: SUITE_KEY.into(),
                    region: "us-east-1".into(),
                    service: "service".into(),
                    date: "20150830".into(),
                }),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn read_unverified_takes_any_key_and_time_but_only_a_well_formed_signature() {
        let case = &SUITE[0];
        let mut headers = suite_headers(case);
        headers.push(("X-Amz-Date".into(), "20150830T123600Z".into()));
        fn req<'a>(case: &'a SuiteCase, headers: &'a [(String, String)]) -> Request<'a> {
            Request {
                method: case.method,
                path: case.path,
                query: case.query,
                headers,
                body: case.body.as_bytes(),
            }
        }
        assert_eq!(
            read_unverified(&req(case, &headers)),
            Err(AuthError::Missing)
        );
        // A key nobody issued and a signature nobody computed, ten years late:
        // moto's tests sign like this, and only the form is checked.
        let mut forged = headers.clone();
        forged.push((
            "Authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential=FOOBARKEY/20150830/eu-west-1/ec2/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={}",
                "0".repeat(64)
            ),
        ));
        assert_eq!(
            read_unverified(&req(case, &forged)),
            Ok(Verified {
                access_key: "FOOBARKEY".into(),
                region: "eu-west-1".into(),
                service: "ec2".into(),
                date: "20150830".into(),
            })
        );
        let mut malformed = headers;
        malformed.push((
            "Authorization".into(),
            "AWS4-HMAC-SHA256 Credential=FOOBARKEY/20150830/eu-west-1/ec2/aws4_request".into(),
        ));
        assert!(matches!(
            read_unverified(&req(case, &malformed)),
            Err(AuthError::Incomplete(_))
        ));
    }

    #[test]
    fn aws_test_suite_vectors_sign() {
        for case in SUITE {
            let headers = suite_headers(case);
            let req = Request {
                method: case.method,
                path: case.path,
                query: case.query,
                headers: &headers,
                body: case.body.as_bytes(),
            };
            let params = SigningParams {
                access_key: SUITE_KEY,
                secret_key: SUITE_SECRET,
                region: "us-east-1",
                service: "service",
                time_unix: SUITE_TIME,
                content_sha256_header: false,
            };
            let added = sign(&req, &params).unwrap();
            assert_eq!(added[0], ("X-Amz-Date".into(), "20150830T123600Z".into()));
            assert_eq!(
                added[1].1,
                format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/\
                     aws4_request, SignedHeaders={}, Signature={}",
                    case.signed_headers, case.signature
                ),
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn suite_canonical_request_for_get_vanilla() {
        // The canonical request published with get-vanilla, byte for byte.
        let headers = hdrs(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let map = HeaderMap::new(&headers);
        let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
        let canonical = canonical_request(
            "GET",
            "/",
            &parse_query(""),
            false,
            &canonical_headers(&map, &signed).unwrap(),
            "host;x-amz-date",
            &hex::encode(Sha256::digest(b"")),
        );
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n\
             host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let scope = Scope {
            access_key: SUITE_KEY.into(),
            date: "20150830".into(),
            region: "us-east-1".into(),
            service: "service".into(),
        };
        assert_eq!(
            string_to_sign("20150830T123600Z", &scope, &canonical),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n\
             bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
    }

    // ---- requests signed by real botocore -------------------------------------------

    #[test]
    fn botocore_fixtures_verify_at_their_signing_time() {
        for text in ALL_FIXTURES {
            let f = fixture(text);
            let got = f.verify();
            assert_eq!(
                got,
                Ok(Verified {
                    access_key: f.access_key.clone(),
                    region: f.region.clone(),
                    service: f.service.clone(),
                    date: f.signed_at[..8].to_owned(),
                }),
                "{} {} {}",
                f.method,
                f.path,
                f.query
            );
        }
    }

    #[test]
    fn fixture_times_agree_with_the_date_code() {
        for text in ALL_FIXTURES {
            let f = fixture(text);
            assert_eq!(format_amz_date(f.now_unix).unwrap(), f.signed_at);
            assert_eq!(parse_amz_date(&f.signed_at), Ok(f.now_unix));
        }
    }

    #[test]
    fn sign_reproduces_botocores_authorization_header() {
        for text in HEADER_SIGNED_FIXTURES {
            let f = fixture(text);
            // What the request held when botocore signed it: Content-Length is
            // added later by the HTTP layer, and the signature headers by the signer.
            let before: Vec<(String, String)> = f
                .headers
                .iter()
                .filter(|(n, _)| {
                    !["authorization", "x-amz-date", "content-length"]
                        .contains(&n.to_ascii_lowercase().as_str())
                })
                .cloned()
                .collect();
            let req = Request {
                headers: &before,
                ..f.request()
            };
            let added = sign(&req, &f.params()).unwrap();
            assert_eq!(
                added,
                vec![
                    ("X-Amz-Date".to_owned(), f.signed_at.clone()),
                    (
                        "Authorization".to_owned(),
                        header(&f.headers, "authorization").to_owned()
                    ),
                ],
                "{}",
                f.path
            );
        }
    }

    #[test]
    fn presign_reproduces_botocores_query() {
        for text in [PRESIGNED_GET, PRESIGNED_ENCODING] {
            let f = fixture(text);
            let original = f.query.split("&X-Amz-Algorithm=").next().unwrap();
            let req = Request {
                query: original,
                ..f.request()
            };
            let expires = u32::try_from(f.expires.unwrap()).unwrap();
            assert_eq!(presign(&req, &f.params(), expires).unwrap(), f.query);
        }
    }

    #[test]
    fn client_call_with_filters_is_in_the_body() {
        // spec 12.1: the CLI POSTs the parameters as a form; the values arrive encoded.
        let f = fixture(CLIENT_FILTERS);
        let body = String::from_utf8(f.body.clone()).unwrap();
        assert!(body.contains("Filter.1.Value.1=a%2Fb"), "{body}");
        assert!(f.verify().is_ok());
    }

    // ---- tampering --------------------------------------------------------------------

    #[test]
    fn a_changed_body_byte_does_not_verify() {
        let f = fixture(POST_FILTER_ESCAPED);
        for i in 0..f.body.len() {
            let mut t = f.clone();
            t.body[i] ^= 0x01;
            assert_eq!(t.verify(), Err(AuthError::SignatureMismatch), "byte {i}");
        }
        let mut t = f.clone();
        t.body.push(b'&');
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
    }

    #[test]
    fn a_changed_signed_header_does_not_verify() {
        let f = fixture(POST_DESCRIBE_VPCS);
        for (name, value) in [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "127.0.0.1:8774"),
            ("X-Amz-Date", "20260501T123457Z"),
        ] {
            let mut t = f.clone();
            set_header(&mut t.headers, name, value);
            assert_eq!(t.verify(), Err(AuthError::SignatureMismatch), "{name}");
        }
    }

    #[test]
    fn unsigned_headers_and_header_name_case_do_not_matter() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let mut t = f.clone();
        t.headers
            .push(("Accept-Encoding".into(), "identity".into()));
        set_header(&mut t.headers, "User-Agent", "something else");
        for (name, _) in &mut t.headers {
            *name = name.to_ascii_uppercase();
        }
        assert!(t.verify().is_ok());
        // Whitespace the canonical form trims away is not part of what is signed.
        let mut t = f.clone();
        let ct = format!("  {}  ", header(&f.headers, "content-type"));
        set_header(&mut t.headers, "Content-Type", &ct);
        assert!(t.verify().is_ok());
    }

    #[test]
    fn a_changed_query_does_not_verify() {
        let f = fixture(GET_QUERY_ENCODING);
        let mut t = f.clone();
        t.query = t.query.replace("owner-id", "owner-Id");
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
        let mut t = f.clone();
        t.query.push_str("&DryRun=true");
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
        // Re-ordering or re-encoding the same parameters is the same request.
        let mut t = f.clone();
        let mut parts: Vec<&str> = f.query.split('&').collect();
        parts.reverse();
        t.query = parts.join("&").replace('+', "%20").replace('~', "%7e");
        assert!(t.verify().is_ok(), "{}", t.query);
    }

    #[test]
    fn a_changed_path_does_not_verify() {
        let mut f = fixture(SERVICE_PATH);
        f.path = "/a%20b/d~e*f".into();
        assert_eq!(f.verify(), Err(AuthError::SignatureMismatch));
    }

    #[test]
    fn wrong_secret_and_unknown_key() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let wrong = verify(
            &f.request(),
            f.now_unix,
            keys(&[(&f.access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ")]),
        );
        assert_eq!(wrong, Err(AuthError::SignatureMismatch));
        let unknown = verify(&f.request(), f.now_unix, keys(&[("AKIAOTHER", "x")]));
        assert_eq!(unknown, Err(AuthError::UnknownKey));
    }

    #[test]
    fn the_clock_window_is_15_minutes_either_way() {
        let f = fixture(POST_DESCRIBE_VPCS);
        assert!(f.verify_at(f.now_unix + 15 * 60).is_ok());
        assert!(f.verify_at(f.now_unix - 15 * 60).is_ok());
        for now in [
            f.now_unix + 16 * 60,
            f.now_unix - 16 * 60,
            i64::MIN,
            i64::MAX,
        ] {
            let err = f.verify_at(now).unwrap_err();
            assert!(matches!(err, AuthError::Expired(_)), "{now}: {err:?}");
            assert_eq!((err.code(), err.status()), ("RequestExpired", 400));
        }
        let err = f.verify_at(f.now_unix + 16 * 60).unwrap_err().to_string();
        assert!(err.contains("20260501T123456Z") && err.contains("20260501T125056Z"));
    }

    #[test]
    fn a_presigned_url_expires() {
        let f = fixture(PRESIGNED_GET);
        assert_eq!(f.expires, Some(300));
        assert!(f.verify_at(f.now_unix + 300).is_ok());
        let err = f.verify_at(f.now_unix + 301).unwrap_err();
        assert!(matches!(err, AuthError::Expired(_)), "{err:?}");
        // Dated too far in the future is not yet valid.
        assert!(f.verify_at(f.now_unix - 15 * 60).is_ok());
        assert!(matches!(
            f.verify_at(f.now_unix - 16 * 60),
            Err(AuthError::Expired(_))
        ));
    }

    #[test]
    fn presigned_tampering() {
        let f = fixture(PRESIGNED_ENCODING);
        let mut t = f.clone();
        t.query = t.query.replace("X-Amz-Expires=900", "X-Amz-Expires=901");
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
        let mut t = f.clone();
        t.query = t.query.replace("a%20b", "a%20c");
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
        let mut t = f.clone();
        t.query = t.query.replace("X-Amz-Expires=900", "X-Amz-Expires=604801");
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        let mut t = f.clone();
        t.query = t.query.replace(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-HMAC-SHA1",
        );
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        let mut t = f.clone();
        t.query = t
            .query
            .replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=");
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        // Half a presigned URL is incomplete, not missing.
        let mut t = f.clone();
        t.query = t
            .query
            .split("&X-Amz-Signature=")
            .next()
            .unwrap()
            .to_owned();
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        // Two signatures, or both mechanisms at once, are ambiguous.
        let mut t = f.clone();
        t.query.push_str("&X-Amz-Signature=00");
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        let mut t = f.clone();
        let header_signed = fixture(POST_DESCRIBE_VPCS);
        t.headers.push((
            "Authorization".into(),
            header(&header_signed.headers, "authorization").into(),
        ));
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn an_unsigned_request_is_missing_authentication() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let mut t = f.clone();
        t.headers.retain(|(n, _)| n != "Authorization");
        let err = t.verify().unwrap_err();
        assert_eq!(err, AuthError::Missing);
        assert_eq!((err.code(), err.status()), ("AuthFailure", 401));
    }

    /// The fixture with its Authorization header replaced by `authorization`.
    fn with_authorization(f: &Fixture, authorization: &str) -> Fixture {
        let mut t = f.clone();
        set_header(&mut t.headers, "Authorization", authorization);
        t
    }

    #[test]
    fn host_must_be_signed() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let auth = header(&f.headers, "authorization").replace(
            "SignedHeaders=content-type;host;x-amz-date",
            "SignedHeaders=content-type;x-amz-date",
        );
        let err = with_authorization(&f, &auth).verify().unwrap_err();
        assert!(
            matches!(&err, AuthError::Incomplete(m) if m.contains("'Host'")),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let good = header(&f.headers, "authorization").to_owned();
        let sig = good.split("Signature=").nth(1).unwrap();
        let cases = [
            ("AWS4-HMAC-SHA256".to_owned(), "bare algorithm"),
            ("AWS4-HMAC-SHA256 ".to_owned(), "no components"),
            (
                good.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA512 "),
                "algorithm",
            ),
            (
                good.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256"),
                "no space",
            ),
            (
                good.replace("Credential=", "Credentials="),
                "misspelt component",
            ),
            (
                good.replace(", SignedHeaders=content-type;host;x-amz-date", ""),
                "no SignedHeaders",
            ),
            (
                good.replace(&format!(", Signature={sig}"), ""),
                "no Signature",
            ),
            (
                good.replace(
                    "Credential=AKIAIOSFODNN7EXAMPLE/20260501/us-east-1/ec2/aws4_request, ",
                    "",
                ),
                "no Credential",
            ),
            (format!("{good}, Signature={sig}"), "Signature twice"),
            (good.replace("Signature=", "Signature"), "no '='"),
            (good.replace(sig, &sig[..63]), "63-digit signature"),
            (
                good.replace(sig, &format!("{}zz", &sig[..62])),
                "non-hex signature",
            ),
            (
                good.replace("/aws4_request", "/aws4_requests"),
                "terminator",
            ),
            (good.replace("/aws4_request", ""), "four scope parts"),
            (good.replace("/ec2/", "/ec2/x/"), "six scope parts"),
            (good.replace("/us-east-1/", "//"), "empty region"),
            (good.replace("/ec2/", "//"), "empty service"),
            (
                good.replace("AKIAIOSFODNN7EXAMPLE/", "/"),
                "empty access key",
            ),
            (good.replace("/20260501/", "/2026051/"), "short scope date"),
            (
                good.replace("/20260501/", "/20260502/"),
                "scope date differs from X-Amz-Date",
            ),
            (
                good.replace("content-type;host", "host;content-type"),
                "unsorted SignedHeaders",
            ),
            (
                good.replace("content-type;host", "Content-Type;host"),
                "uppercase SignedHeaders",
            ),
            (
                good.replace("content-type;host", "content-type;;host"),
                "empty SignedHeaders name",
            ),
            (
                good.replace("content-type;host", "host;host"),
                "repeated SignedHeaders name",
            ),
            (
                good.replace("content-type;host", "accept;content-type;host"),
                "signed header absent",
            ),
        ];
        for (auth, what) in &cases {
            let err = with_authorization(&f, auth).verify().unwrap_err();
            assert!(matches!(err, AuthError::Incomplete(_)), "{what}: {err:?}");
            assert_eq!(
                (err.code(), err.status()),
                ("IncompleteSignature", 400),
                "{what}"
            );
        }
        // Every truncation of a good header fails cleanly, whatever it cuts.
        for (i, _) in good.char_indices() {
            assert!(
                with_authorization(&f, &good[..i]).verify().is_err(),
                "cut at {i}"
            );
        }
        // A clean variation still verifies: no spaces after the commas.
        assert!(
            with_authorization(&f, &good.replace(", ", ","))
                .verify()
                .is_ok()
        );
    }

    #[test]
    fn bad_or_missing_dates_are_incomplete() {
        let f = fixture(POST_DESCRIBE_VPCS);
        for date in [
            "",
            "20260501T123456",
            "2026-05-01T12:34:56Z",
            "20260501 123456Z",
            "20261301T123456Z",
            "20260230T123456Z",
            "20260501T243456Z",
            "20260501T126056Z",
            "20260501T123460Z",
            "２0260501T123456Z",
            "+0260501T123456Z",
        ] {
            let mut t = f.clone();
            set_header(&mut t.headers, "X-Amz-Date", date);
            assert!(
                matches!(t.verify(), Err(AuthError::Incomplete(_))),
                "{date:?}"
            );
        }
        let mut t = f.clone();
        t.headers.retain(|(n, _)| n != "X-Amz-Date");
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
        let mut t = f.clone();
        t.headers.push(("x-amz-date".into(), f.signed_at.clone()));
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn repeated_authorization_is_incomplete() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let mut t = f.clone();
        t.headers.push((
            "authorization".into(),
            header(&f.headers, "authorization").into(),
        ));
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn content_sha256_header_must_match_the_body() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let hash = hex::encode(Sha256::digest(&f.body));
        // Present but unsigned and correct: harmless.
        let mut t = f.clone();
        t.headers
            .push(("X-Amz-Content-Sha256".into(), hash.to_ascii_uppercase()));
        assert!(t.verify().is_ok());
        let mut t = f.clone();
        t.headers
            .push(("X-Amz-Content-Sha256".into(), hex::encode([0u8; 32])));
        assert_eq!(t.verify(), Err(AuthError::SignatureMismatch));
        let mut t = f.clone();
        t.headers
            .push(("X-Amz-Content-Sha256".into(), UNSIGNED_PAYLOAD.into()));
        assert!(matches!(t.verify(), Err(AuthError::Incomplete(_))));
    }

    #[test]
    fn signed_content_sha256_round_trips() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let mut headers: Vec<(String, String)> = f
            .headers
            .iter()
            .filter(|(n, _)| n != "Authorization" && n != "X-Amz-Date")
            .cloned()
            .collect();
        let req = Request {
            headers: &headers,
            ..f.request()
        };
        let params = SigningParams {
            content_sha256_header: true,
            ..f.params()
        };
        let added = sign(&req, &params).unwrap();
        assert_eq!(added[1].0, "X-Amz-Content-Sha256");
        assert!(added[2].1.contains(
            "SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date"
        ));
        headers.extend(added);
        let req = Request {
            headers: &headers,
            ..f.request()
        };
        let secrets = keys(&[(&f.access_key, &f.secret_key)]);
        assert!(verify(&req, f.now_unix, &secrets).is_ok());
        let mut body = f.body.clone();
        body[0] = b'a';
        let req = Request { body: &body, ..req };
        assert_eq!(
            verify(&req, f.now_unix, &secrets),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn repeated_headers_join_in_order() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let mut headers = hdrs(&[
            ("Host", "127.0.0.1:8773"),
            ("X-Extra", "one"),
            ("x-extra", "  two   three "),
        ]);
        let req = Request {
            headers: &headers,
            ..f.request()
        };
        let added = sign(&req, &f.params()).unwrap();
        headers.extend(added.clone());
        let map = HeaderMap::new(&headers);
        let mut line = String::new();
        push_header_line(&mut line, "x-extra", &map.map["x-extra"]);
        assert_eq!(line, "x-extra:one,two three\n");
        assert!(
            verify(
                &Request {
                    headers: &headers,
                    ..f.request()
                },
                f.now_unix,
                keys(&[(&f.access_key, &f.secret_key)])
            )
            .is_ok()
        );
        headers.swap(1, 2);
        assert_eq!(
            verify(
                &Request {
                    headers: &headers,
                    ..f.request()
                },
                f.now_unix,
                keys(&[(&f.access_key, &f.secret_key)])
            ),
            Err(AuthError::SignatureMismatch)
        );
    }

    #[test]
    fn error_codes_and_statuses() {
        let table = [
            (AuthError::Missing, "AuthFailure", 401),
            (
                AuthError::Incomplete("x".into()),
                "IncompleteSignature",
                400,
            ),
            (AuthError::UnknownKey, "AuthFailure", 401),
            (AuthError::SignatureMismatch, "SignatureDoesNotMatch", 403),
            (AuthError::Expired("x".into()), "RequestExpired", 400),
        ];
        for (err, code, status) in table {
            assert_eq!((err.code(), err.status()), (code, status), "{err:?}");
        }
        assert_eq!(
            AuthError::SignatureMismatch.to_string(),
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method."
        );
    }

    #[test]
    fn sign_rejects_what_it_cannot_sign() {
        let f = fixture(POST_DESCRIBE_VPCS);
        let no_host = hdrs(&[("Content-Type", "text/plain")]);
        let req = Request {
            headers: &no_host,
            ..f.request()
        };
        assert_eq!(sign(&req, &f.params()), Err(SignError::MissingHost));
        assert_eq!(presign(&req, &f.params(), 60), Err(SignError::MissingHost));
        let req = f.request();
        let p = f.params();
        assert_eq!(
            sign(
                &req,
                &SigningParams {
                    region: "us/east",
                    ..p
                }
            ),
            Err(SignError::BadScope("region"))
        );
        assert_eq!(
            sign(
                &req,
                &SigningParams {
                    access_key: "",
                    ..p
                }
            ),
            Err(SignError::BadScope("access key"))
        );
        assert_eq!(
            sign(
                &req,
                &SigningParams {
                    time_unix: 253_402_300_800,
                    ..p
                }
            ),
            Err(SignError::BadTime(253_402_300_800))
        );
        let bad_name = hdrs(&[("Host", "h"), ("X Bad", "v")]);
        assert_eq!(
            sign(
                &Request {
                    headers: &bad_name,
                    ..req
                },
                &p
            ),
            Err(SignError::BadHeaderName("x bad".into()))
        );
        assert_eq!(
            presign(&req, &p, 604_801),
            Err(SignError::BadExpires(604_801))
        );
        let presigned = fixture(PRESIGNED_GET);
        assert_eq!(
            presign(&presigned.request(), &p, 60),
            Err(SignError::AlreadySigned)
        );
    }

    #[test]
    fn signing_params_debug_hides_the_secret() {
        let shown = format!("{:?}", prop_params());
        assert!(shown.contains(KEY) && !shown.contains(SECRET), "{shown}");
    }

    #[test]
    fn canonical_uri_and_query_forms() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/.."), "/");
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(canonical_uri("/a%2Fb"), "/a%252Fb");
        assert_eq!(canonical_uri("/\u{e9} *"), "/%C3%A9%20%2A");
        let q = parse_query("b=2&a=%7e&a=1&c&=x&d=%zz&e=+%2B");
        assert_eq!(
            canonical_query(&q, false),
            "=x&a=1&a=~&b=2&c=&d=%25zz&e=%20%2B"
        );
        let q = parse_query("X-Amz-Signature=abc&A=1");
        assert_eq!(canonical_query(&q, true), "A=1");
        assert_eq!(canonical_query(&q, false), "A=1&X-Amz-Signature=abc");
    }

    #[test]
    fn dates_round_trip_through_the_calendar() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Ok(0));
        assert_eq!(parse_amz_date("20000229T235959Z"), Ok(951_868_799));
        assert_eq!(parse_amz_date("20150830T123600Z"), Ok(SUITE_TIME));
        assert!(parse_amz_date("21000229T000000Z").is_err());
        assert_eq!(format_amz_date(-1).as_deref(), Some("19691231T235959Z"));
        assert_eq!(
            format_amz_date(253_402_300_799).as_deref(),
            Some("99991231T235959Z")
        );
        assert_eq!(format_amz_date(253_402_300_800), None);
        assert!(describe_time(i64::MAX).contains("seconds since the epoch"));
        assert!(describe_time(i64::MIN).contains("seconds since the epoch"));
    }

    // ---- properties ------------------------------------------------------------------

    /// A query component encoded the way some client might: RFC 3986 strictly,
    /// or form-style with '+' for a space.
    fn encode_component(text: &str, plus_for_space: bool) -> String {
        let mut out = String::new();
        for ch in text.chars() {
            let mut buf = [0; 4];
            let bytes = ch.encode_utf8(&mut buf).as_bytes();
            if plus_for_space && ch == ' ' {
                out.push('+');
            } else {
                uri_encode(bytes, false, &mut out);
            }
        }
        out
    }

    fn build_query(params: &[(String, String)], plus_for_space: bool) -> String {
        params
            .iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    encode_component(k, plus_for_space),
                    encode_component(v, plus_for_space)
                )
            })
            .collect::<Vec<_>>()
            .join("&")
    }

    const KEY: &str = "AKIAPROPTEST";
    const SECRET: &str = "proptest/secret+key";
    const T0: i64 = 1_777_638_896; // 20260501T123456Z

    fn prop_params() -> SigningParams<'static> {
        SigningParams {
            access_key: KEY,
            secret_key: SECRET,
            region: "eu-west-1",
            service: "ec2",
            time_unix: T0,
            content_sha256_header: false,
        }
    }

    fn header_strategy() -> impl Strategy<Value = (String, String)> {
        let name = prop_oneof![
            Just("Authorization".to_owned()),
            Just("authorization".to_owned()),
            Just("X-Amz-Date".to_owned()),
            Just("Host".to_owned()),
            Just("X-Amz-Content-Sha256".to_owned()),
            "[A-Za-z-]{1,12}",
            any::<String>(),
        ];
        let value = prop_oneof![
            "AWS4-HMAC-SHA256 Credential=[A-Z/0-9a-z_]{0,60}, SignedHeaders=[a-z;]{0,20}, \
             Signature=[0-9a-f]{0,70}",
            "[0-9]{8}T[0-9]{6}Z",
            any::<String>(),
        ];
        (name, value)
    }

    proptest! {
        #[test]
        fn arbitrary_requests_never_panic(
            method in any::<String>(),
            path in any::<String>(),
            query in prop_oneof![
                any::<String>(),
                "(X-Amz-(Algorithm|Credential|Date|Expires|SignedHeaders|Signature)\
                 =[%A-Za-z0-9/;-]{0,30}&?){0,7}",
            ],
            headers in proptest::collection::vec(header_strategy(), 0..8),
            body in proptest::collection::vec(any::<u8>(), 0..64),
            now in any::<i64>(),
        ) {
            let req = Request {
                method: &method,
                path: &path,
                query: &query,
                headers: &headers,
                body: &body,
            };
            let _ = verify(&req, now, |_| Some("secret".to_owned()));
            let _ = sign(&req, &SigningParams { time_unix: now, ..prop_params() });
            let _ = presign(&req, &SigningParams { time_unix: now, ..prop_params() }, 60);
        }

        #[test]
        fn arbitrary_authorization_values_fail_cleanly(
            tail in any::<String>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let f = fixture(POST_DESCRIBE_VPCS);
            let t = with_authorization(&f, &format!("AWS4-HMAC-SHA256 {tail}"));
            prop_assert!(t.verify().is_err());
            // And a good header with arbitrary text spliced in at a char boundary.
            let good = header(&f.headers, "authorization");
            let bounds: Vec<usize> = good.char_indices().map(|(i, _)| i).collect();
            let at = bounds[cut.index(bounds.len())];
            let spliced = format!("{}{tail}{}", &good[..at], &good[at..]);
            let result = with_authorization(&f, &spliced).verify();
            let harmless = tail.chars().all(|c| c == ',' || c.is_whitespace());
            prop_assert!(result.is_err() || harmless, "{spliced}");
        }

        #[test]
        fn sign_then_verify_round_trips(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            params in proptest::collection::vec((any::<String>(), any::<String>()), 0..6),
            plus_for_space in any::<bool>(),
            extra in "[ -~]{0,40}",
            path in "(/[A-Za-z0-9 ._~%*éሴ-]{0,8}){0,4}/?",
            skew in -900i64..=900,
            with_hash in any::<bool>(),
        ) {
            let query = build_query(&params, plus_for_space);
            let mut headers = hdrs(&[
                ("Host", "ec2.eu-west-1.example:8773"),
                ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ]);
            headers.push(("X-Extra".into(), extra.clone()));
            let req = Request {
                method: "POST",
                path: &path,
                query: &query,
                headers: &headers,
                body: &body,
            };
            let params = SigningParams { content_sha256_header: with_hash, ..prop_params() };
            let added = sign(&req, &params).unwrap();
            let mut all = headers.clone();
            all.extend(added);
            let signed = Request { headers: &all, ..req };
            let got = verify(&signed, T0 + skew, |k| (k == KEY).then(|| SECRET.to_owned()));
            prop_assert_eq!(got, Ok(Verified {
                access_key: KEY.into(),
                region: "eu-west-1".into(),
                service: "ec2".into(),
                date: "20260501".into(),
            }));
            // Any change to the body is caught.
            let mut other = body.clone();
            other.push(0);
            let changed = Request { body: &other, ..signed };
            prop_assert!(verify(&changed, T0, |_| Some(SECRET.to_owned())).is_err());
        }

        #[test]
        fn presign_then_verify_round_trips(
            params in proptest::collection::vec(
                ("[A-Za-z][A-Za-z0-9.]{0,10}", any::<String>()),
                0..6,
            ),
            plus_for_space in any::<bool>(),
            expires in 0u32..=MAX_PRESIGN_EXPIRES_SECS,
            at in any::<proptest::sample::Index>(),
        ) {
            let query = build_query(&params, plus_for_space);
            let headers = hdrs(&[("Host", "127.0.0.1:8773")]);
            let req = Request {
                method: "GET",
                path: "/",
                query: &query,
                headers: &headers,
                body: b"",
            };
            let signed_query = presign(&req, &prop_params(), expires).unwrap();
            let signed = Request { query: &signed_query, ..req };
            let offset = at.index(usize::try_from(expires).unwrap() + 1);
            let within = T0 + i64::try_from(offset).unwrap();
            let secrets = |k: &str| (k == KEY).then(|| SECRET.to_owned());
            prop_assert!(verify(&signed, within, secrets).is_ok());
            let after = T0 + i64::from(expires) + 1;
            prop_assert!(matches!(verify(&signed, after, secrets), Err(AuthError::Expired(_))));
        }

        #[test]
        fn mutated_presigned_queries_fail_cleanly(
            insert in any::<String>(),
            cut in any::<proptest::sample::Index>(),
            drop in 0usize..4,
        ) {
            let f = fixture(PRESIGNED_ENCODING);
            let at = cut.index(f.query.len() + 1);
            // The fixture's query is ASCII, so every index is a char boundary.
            let end = (at + drop).min(f.query.len());
            let mut t = f.clone();
            t.query = format!("{}{insert}{}", &f.query[..at], &f.query[end..]);
            let result = t.verify();
            if t.query != f.query && result.is_ok() {
                // Only a change that decodes to the same parameters may pass.
                let same = canonical_query(&parse_query(&t.query), true)
                    == canonical_query(&parse_query(&f.query), true);
                prop_assert!(same, "{}", t.query);
            }
        }

        #[test]
        fn amz_dates_round_trip(t in 0i64..=253_402_300_799) {
            let text = format_amz_date(t).unwrap();
            prop_assert_eq!(parse_amz_date(&text), Ok(t));
        }
    }
}
