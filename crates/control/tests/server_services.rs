//! Which services the endpoint answers, as the server sees signed requests
//! (issue 12): EC2, ELBv2 and STS's `GetCallerIdentity` with verified
//! signatures, each service's errors in its own shape, and a request signed
//! for any other service refused with AWS's credential-scope error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::signed_call;
use openvpc_control::ApiError;
use openvpc_control::account::{self, Account};
use openvpc_control::server::ApiState;
use openvpc_control::store::{MemoryStore, Store};

fn state() -> (ApiState, Account) {
    let store = Arc::new(MemoryStore::new());
    let alice = Account::generate("alice", Some("210987654321"));
    account::create(store.as_ref(), &alice).unwrap();
    let state = ApiState {
        store: store as Arc<dyn Store>,
        moto_compat: None,
        agent: None,
    };
    (state, alice)
}

/// Runs `body` signed now with `a`'s keys, scoped to `service`.
fn call(state: &ApiState, a: &Account, service: &str, body: &str) -> Result<String, ApiError> {
    signed_call(state, &a.access_key_id, &a.secret_access_key, service, body)
}

const STS_ERROR: &str =
    "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>";

/// Issue 12: GetCallerIdentity in production mode names the account's root
/// user, with the account ID as UserId (AWS's answer for root keys).
#[test]
fn sts_get_caller_identity_names_the_accounts_root_user() {
    let (state, alice) = state();
    let xml = call(
        &state,
        &alice,
        "sts",
        "Action=GetCallerIdentity&Version=2011-06-15",
    )
    .unwrap();
    assert!(
        xml.contains(
            "<GetCallerIdentityResult><UserId>210987654321</UserId><Account>210987654321</Account><Arn>arn:aws:iam::210987654321:root</Arn></GetCallerIdentityResult>"
        ),
        "{xml}"
    );
    assert!(xml.contains("<RequestId>req-test</RequestId>"), "{xml}");
}

/// STS verifies signatures as EC2 does, and answers its failures in its own
/// error shape with STS's codes.
#[test]
fn sts_refusals_in_sts_shape() {
    let (state, alice) = state();
    let e = signed_call(
        &state,
        &alice.access_key_id,
        "not-the-secret",
        "sts",
        "Action=GetCallerIdentity",
    )
    .unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("SignatureDoesNotMatch", 403));
    assert!(e.to_xml("r").contains(STS_ERROR), "{}", e.to_xml("r"));
    let e = signed_call(
        &state,
        "AKIAUNKNOWNUNKNOWN00",
        "x",
        "sts",
        "Action=GetCallerIdentity",
    )
    .unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("InvalidClientTokenId", 403));
    assert!(e.to_xml("r").contains(STS_ERROR));
    let e = call(
        &state,
        &alice,
        "sts",
        "Action=AssumeRole&Version=2011-06-15",
    )
    .unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("InvalidAction", 400));
    assert!(e.to_xml("r").contains(STS_ERROR));
}

/// STS is a global service: asking it makes nothing in the region (no
/// default VPC is made for a call that is not EC2's).
#[test]
fn sts_touches_no_region() {
    let (state, alice) = state();
    call(&state, &alice, "sts", "Action=GetCallerIdentity").unwrap();
    assert!(state.store.range(b"r/", None, 1).unwrap().is_empty());
}

/// Issue 12 (bad input): a request signed for a service this endpoint does
/// not serve gets AWS's credential-scope refusal (SignatureDoesNotMatch,
/// 403) naming every served service, whether or not its key is known, and
/// nothing is made.
#[test]
fn unserved_services_are_refused_naming_the_served_ones() {
    let (state, alice) = state();
    for service in ["s3", "iam", "dynamodb", "ec2messages"] {
        let e = call(&state, &alice, service, "Action=ListBuckets").unwrap_err();
        assert_eq!((e.code.as_ref(), e.status), ("SignatureDoesNotMatch", 403));
        assert_eq!(
            e.message,
            format!(
                "Credential should be scoped to correct service: 'ec2', 'elasticloadbalancing', 'sts', 'logs', not '{service}'. \
                 This endpoint serves EC2, ELBv2, STS (GetCallerIdentity) and CloudWatch Logs only."
            )
        );
        assert!(
            e.to_xml("r")
                .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors>")
        );
    }
    let e = signed_call(
        &state,
        "AKIAUNKNOWNUNKNOWN00",
        "x",
        "iam",
        "Action=ListUsers",
    )
    .unwrap_err();
    assert_eq!(
        e.code, "SignatureDoesNotMatch",
        "the scope is checked first"
    );
    assert!(state.store.range(b"r/", None, 1).unwrap().is_empty());
}

/// EC2 keeps its own codes and shape; ELBv2 answers an unknown key as the
/// Query-protocol services do.
#[test]
fn ec2_and_elbv2_refusals_keep_their_shapes() {
    let (state, alice) = state();
    call(&state, &alice, "ec2", "Action=DescribeVpcs").unwrap();
    let e = signed_call(
        &state,
        "AKIAUNKNOWNUNKNOWN00",
        "x",
        "ec2",
        "Action=DescribeVpcs",
    )
    .unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("AuthFailure", 401));
    assert!(e.to_xml("r").contains("<Response><Errors>"));
    let e = signed_call(
        &state,
        "AKIAUNKNOWNUNKNOWN00",
        "x",
        "elasticloadbalancing",
        "Action=DescribeLoadBalancers",
    )
    .unwrap_err();
    assert_eq!((e.code.as_ref(), e.status), ("InvalidClientTokenId", 403));
    assert!(e.to_xml("r").contains(
        "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\">"
    ));
}
