//! `--moto-compat` as the server sees it: made-up keys act as moto's account
//! only with the flag, the service scope is still checked, and moto's reset
//! hook (served over real HTTP) wipes resources but keeps accounts, and does
//! not exist without the flag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use openvpc_control::account::{self, Account};
use openvpc_control::server::{ApiState, execute, serve};
use openvpc_control::store::{MemoryStore, Store};
use openvpc_control::{ApiError, moto_compat as moto};

fn state(moto_compat: bool) -> (ApiState, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let moto = moto_compat.then(|| moto::ensure_account(store.as_ref()).unwrap());
    let state = ApiState {
        store: Arc::clone(&store) as Arc<dyn Store>,
        moto_compat: moto,
        agent: None,
    };
    (state, store)
}

/// Runs `body` signed now with moto's made-up key, scoped to `service`.
fn call(state: &ApiState, service: &str, body: &str) -> Result<String, ApiError> {
    common::signed_call(state, "FOOBARKEY", "FOOBARSECRET", service, body)
}

#[test]
fn made_up_keys_are_refused_without_the_flag() {
    let (state, _) = state(false);
    let e = call(&state, "ec2", "Action=DescribeVpcs").unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("AuthFailure", 401));
}

#[test]
fn made_up_keys_act_as_motos_account_with_the_flag() {
    let (state, store) = state(true);
    let xml = call(&state, "ec2", "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap();
    assert!(xml.contains("<ownerId>123456789012</ownerId>"), "{xml}");
    assert!(
        !store
            .range(b"r/123456789012/us-east-1/", None, 10)
            .unwrap()
            .is_empty()
    );
    let e = call(&state, "s3", "Action=ListBuckets").unwrap_err();
    assert_eq!(
        (e.code.as_ref(), e.status),
        ("SignatureDoesNotMatch", 403),
        "the service scope is still checked"
    );
    let e = execute(&state, "POST", "/", "", &[], b"Action=DescribeVpcs", "r").unwrap_err();
    assert_eq!(
        e.code, "AuthFailure",
        "an unsigned request is still refused"
    );
}

/// Compat: STS `GetCallerIdentity` names moto's account (moto's
/// `account_id` fixture); without the flag moto's made-up key is refused
/// as STS refuses an unknown key.
#[test]
fn sts_get_caller_identity_names_motos_account_only_with_the_flag() {
    let (compat, _) = state(true);
    let xml = call(
        &compat,
        "sts",
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .unwrap();
    assert!(xml.contains("<Account>123456789012</Account>"), "{xml}");
    let e = call(&compat, "sts", "Action=AssumeRole").unwrap_err();
    assert_eq!(e.code, "InvalidAction");
    let (plain, _) = state(false);
    let e = call(&plain, "sts", "Action=GetCallerIdentity").unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("InvalidClientTokenId", 403));
}

/// Sends one HTTP/1.1 request to a freshly served router; returns the status
/// and body.
fn http(state: ApiState, method: &str, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let _ = stop.send(());
    runtime.block_on(server).unwrap().unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn reset_deletes_every_resource_and_keeps_accounts() {
    let (state, store) = state(true);
    call(&state, "ec2", "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap();
    let other = Account::generate("other", None);
    account::create(store.as_ref(), &other).unwrap();
    store
        .put(
            format!("r/{}/eu-west-1/vpc/vpc-1", other.id).as_bytes(),
            b"{}",
        )
        .unwrap();

    let (status, body) = http(state.clone(), "GET", "/moto-api/reset");
    assert_eq!(status, 400, "moto answers 400 to anything but POST: {body}");
    assert!(!store.range(b"r/", None, 1).unwrap().is_empty());

    let (status, body) = http(state.clone(), "POST", "/moto-api/reset");
    assert_eq!((status, body.as_str()), (200, r#"{"status": "ok"}"#));
    assert!(store.range(b"r/", None, 1).unwrap().is_empty());
    assert!(store.range(b"region/", None, 1).unwrap().is_empty());
    assert_eq!(account::list(store.as_ref()).unwrap().len(), 2);
    // spec 1.3: the next request finds a fresh default VPC, and only that.
    let xml = call(&state, "ec2", "Action=DescribeVpcs").unwrap();
    assert!(!xml.contains("10.0.0.0/16"), "{xml}");
    assert_eq!(xml.matches("<vpcId>").count(), 1, "{xml}");
}

#[test]
fn there_is_no_reset_without_the_flag() {
    let (state, store) = state(false);
    store
        .put(b"r/111111111111/us-east-1/vpc/vpc-1", b"{}")
        .unwrap();
    let (status, _) = http(state, "POST", "/moto-api/reset");
    assert_eq!(status, 404);
    assert!(!store.range(b"r/", None, 1).unwrap().is_empty());
}

/// spec 12.5: requests signed for `elasticloadbalancing` reach the ELBv2
/// actions, and their errors come in the Query protocol's shape.
#[test]
fn elasticloadbalancing_requests_reach_elbv2_with_its_error_shape() {
    let (state, _) = state(true);
    let xml = call(
        &state,
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers&Version=2015-12-01",
    )
    .unwrap();
    assert!(
        xml.contains("<DescribeLoadBalancersResult><LoadBalancers></LoadBalancers>"),
        "{xml}"
    );
    let e = call(
        &state,
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers&Names.member.1=nope",
    )
    .unwrap_err();
    assert_eq!(e.code, "LoadBalancerNotFound");
    assert!(e.to_xml("r").contains("<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error><Type>Sender</Type>"));
}
