//! The calls to other AWS services that moto's EC2 tests make on the same
//! endpoint: S3 CreateBucket (REST: `PUT /BUCKET`, or `PUT /` with the
//! bucket as the first label of the Host) and CloudWatch Logs
//! CreateLogGroup (JSON protocol: `POST /` with
//! `X-Amz-Target: Logs_20140328.CreateLogGroup`) for the flow-log tests, and
//! SSM GetParameter on AWS's public AMI aliases (`/aws/service/ami-…`), with
//! which the aws_verified ENI tests look up an image before RunInstances
//! (see [`public_ami`]).
//!
//! They only record names, under `compat/` (which the moto reset clears), so
//! that CreateFlowLogs can tell a missing bucket or log group as EC2 does
//! ([`CompatDestinations`]; the parent module's header says why only here).
//! Reachable only through [`super::Mode`].

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::api::actions::Ctx;
use crate::api::actions::flow_log::{self, Destinations};
use crate::api::actions::resource::Tx;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::store::{Op, Store, Txn};

/// Where the names live; listed in `STATE_PREFIXES` so the reset clears it.
pub const PREFIX: &str = "compat/";

fn bucket_key(bucket: &str) -> Vec<u8> {
    format!("{PREFIX}s3/{bucket}").into_bytes()
}

fn log_group_key(account: &str, region: &str, name: &str) -> Vec<u8> {
    format!("{PREFIX}logs/{account}/{region}/{name}").into_bytes()
}

/// CreateFlowLogs' destination checks against the recorded names.
#[derive(Debug, Clone, Copy)]
pub struct CompatDestinations;

impl Destinations for CompatDestinations {
    fn bucket_exists(&self, tx: &mut Tx, bucket: &str) -> Result<bool, ApiError> {
        Ok(tx.get_raw(&bucket_key(bucket))?.is_some())
    }

    fn log_group_exists(&self, tx: &mut Tx, name: &str) -> Result<bool, ApiError> {
        let ctx = tx.ctx();
        let key = log_group_key(&ctx.account.id, ctx.region, name);
        Ok(tx.get_raw(&key)?.is_some())
    }
}

/// The EC2 actions compat mode answers differently: CreateFlowLogs checks
/// destinations against the recorded buckets and log groups.
pub(super) fn ec2_action(ctx: &Ctx, params: &Params) -> Option<Result<String, ApiError>> {
    match params.get("Action") {
        Some("CreateFlowLogs") => Some(flow_log::create(ctx, params, &CompatDestinations)),
        _ => None,
    }
}

/// What a foreign request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    CreateBucket(String),
    CreateLogGroup { region: String, name: String },
    GetParameter { region: String, name: String },
    Other(String),
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// (region, service) of the SigV4 credential scope in `Authorization`
/// (`Credential=AK/date/region/service/aws4_request`); the signature itself
/// is not checked, as nothing is in compat mode.
fn credential_scope(headers: &HeaderMap) -> Option<(&str, &str)> {
    let auth = header(headers, "authorization")?;
    let credential = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    let mut parts = credential.split('/').skip(2);
    Some((parts.next()?, parts.next()?))
}

/// The foreign call a request makes, or `None` for an EC2 request.
fn classify(method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Call> {
    if let Some(target) = header(headers, "x-amz-target") {
        let region = credential_scope(headers)
            .map(|(region, _)| region.to_owned())
            .unwrap_or_default();
        if target == "Logs_20140328.CreateLogGroup" {
            let name = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("logGroupName")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Some(Call::CreateLogGroup { region, name });
        }
        if target == "AmazonSSM.GetParameter" {
            let name = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| v.get("Name")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            return Some(Call::GetParameter { region, name });
        }
        return Some(Call::Other(target.to_owned()));
    }
    let is_s3 = credential_scope(headers).is_some_and(|(_, service)| service == "s3");
    if !is_s3 {
        return None;
    }
    if method != Method::PUT {
        return Some(Call::Other(format!("s3 {method} {path}")));
    }
    let from_path = path.trim_start_matches('/');
    let bucket = if from_path.is_empty() {
        // Virtual-hosted style: the bucket is the Host's first label.
        header(headers, "host")
            .and_then(|h| h.split_once('.'))
            .map(|(b, _)| b.to_owned())
            .unwrap_or_default()
    } else if from_path.contains('/') {
        return Some(Call::Other(format!("s3 PUT {path}")));
    } else {
        from_path.to_owned()
    };
    Some(Call::CreateBucket(bucket))
}

fn put_name(store: &dyn Store, key: Vec<u8>) -> Result<bool, String> {
    if store.get(&key).map_err(|e| e.to_string())?.is_some() {
        return Ok(false);
    }
    let mut txn = Txn::new();
    txn.ops.push(Op::Put(key, Vec::new()));
    store.txn(txn).map_err(|e| e.to_string())?;
    Ok(true)
}

fn json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

/// The image ID an AWS public AMI alias (an SSM parameter under
/// `/aws/service/ami-`, such as
/// `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64`)
/// resolves to, or `None` for any other name. openvpc has no image
/// catalogue (RunInstances records any `ami-` ID as given), so the ID is
/// made up: 17 hex digits, as AWS's are, from an FNV-1a hash of the name,
/// so one alias gives the same image every time.
fn public_ami(name: &str) -> Option<String> {
    let alias = name.strip_prefix("/aws/service/")?;
    if !alias.starts_with("ami-") || alias.contains("//") || alias.ends_with('/') {
        return None;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Some(format!("ami-0{:016x}", h))
}

/// SSM's GetParameter answer for a public AMI alias, or its
/// ParameterNotFound (an empty message, as SSM sends).
fn get_parameter(region: &str, name: &str) -> Response {
    match public_ami(name) {
        Some(image) => json(
            StatusCode::OK,
            serde_json::json!({
                "Parameter": {
                    "Name": name,
                    "Type": "String",
                    "Value": image,
                    "Version": 1,
                    "LastModifiedDate": 1_700_000_000.0,
                    "ARN": format!("arn:aws:ssm:{region}::parameter{name}"),
                    "DataType": "aws:ec2:image",
                }
            })
            .to_string(),
        ),
        None => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "__type": "ParameterNotFound", "message": "" }).to_string(),
        ),
    }
}

/// Answers a foreign request, or `None` if the request is for EC2.
/// Blocking: the caller runs it off the async runtime.
pub(super) fn answer(
    store: &dyn Store,
    account: &str,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<Response> {
    let call = classify(method, path, headers, body)?;
    Some(match call {
        Call::CreateBucket(bucket) if !bucket.is_empty() => {
            match put_name(store, bucket_key(&bucket)) {
                Ok(true) => (
                    StatusCode::OK,
                    [(header::LOCATION, format!("/{bucket}"))],
                    "",
                )
                    .into_response(),
                Ok(false) => (
                    StatusCode::CONFLICT,
                    [(header::CONTENT_TYPE, "application/xml")],
                    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>BucketAlreadyOwnedByYou</Code><Message>Your previous request to create the named bucket succeeded and you already own it.</Message><BucketName>{}</BucketName></Error>", crate::api::xml::escape(&bucket)),
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
        Call::CreateLogGroup { region, name } if !name.is_empty() => {
            match put_name(store, log_group_key(account, &region, &name)) {
                Ok(true) => json(StatusCode::OK, "{}".into()),
                Ok(false) => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({
                        "__type": "ResourceAlreadyExistsException",
                        "message": "The specified log group already exists",
                    })
                    .to_string(),
                ),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
            }
        }
        Call::GetParameter { region, name } => get_parameter(&region, &name),
        other => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "__type": "InvalidAction",
                "message": format!("openvpc's moto-compat mode does not serve {other:?}"),
            })
            .to_string(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const S3_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-west-1/s3/aws4_request, SignedHeaders=host, Signature=00";

    #[test]
    fn s3_create_bucket_path_and_host_style() {
        let h = headers(&[("authorization", S3_AUTH), ("host", "127.0.0.1:5000")]);
        assert_eq!(
            classify(&Method::PUT, "/my-bucket", &h, b""),
            Some(Call::CreateBucket("my-bucket".into()))
        );
        let h = headers(&[("authorization", S3_AUTH), ("host", "b2.localhost:5000")]);
        assert_eq!(
            classify(&Method::PUT, "/", &h, b""),
            Some(Call::CreateBucket("b2".into()))
        );
    }

    #[test]
    fn ec2_requests_are_not_foreign() {
        let h = headers(&[(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-west-1/ec2/aws4_request, SignedHeaders=host, Signature=00",
        )]);
        assert_eq!(
            classify(&Method::POST, "/", &h, b"Action=DescribeVpcs"),
            None
        );
    }

    #[test]
    fn logs_create_log_group() {
        let h = headers(&[
            ("x-amz-target", "Logs_20140328.CreateLogGroup"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AK/20240101/us-west-1/logs/aws4_request, SignedHeaders=host, Signature=00",
            ),
        ]);
        assert_eq!(
            classify(&Method::POST, "/", &h, br#"{"logGroupName": "g1"}"#),
            Some(Call::CreateLogGroup {
                region: "us-west-1".into(),
                name: "g1".into()
            })
        );
    }

    // The aws_verified ENI tests resolve AL2023's alias through SSM.
    #[test]
    fn ssm_public_ami_aliases() {
        let name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64";
        let h = headers(&[
            ("x-amz-target", "AmazonSSM.GetParameter"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=00",
            ),
        ]);
        let body = serde_json::json!({ "Name": name }).to_string();
        assert_eq!(
            classify(&Method::POST, "/", &h, body.as_bytes()),
            Some(Call::GetParameter {
                region: "us-east-1".into(),
                name: name.into()
            })
        );
        let image = public_ami(name).unwrap();
        assert_eq!(image.len(), "ami-".len() + 17);
        assert_eq!(public_ami(name), Some(image));
        assert_eq!(public_ami("/my/parameter"), None);
        assert_eq!(
            public_ami("/aws/service/global-infrastructure/regions"),
            None
        );
    }
}
