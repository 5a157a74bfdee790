//! ClassicLink's VPC actions over the in-memory store: since EC2-Classic's
//! retirement every VPC shows ClassicLink and its DNS support off, enabling
//! either is refused and disabling is a no-op; IDs, DryRun, filters and
//! pagination are checked as for any action.

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, vpc, vpc_with};
use openvpc_control::store::MemoryStore;

#[test]
fn describes_show_classic_link_off() {
    let store = MemoryStore::new();
    let a = account();
    let v1 = vpc(&store, &a);
    let v2 = vpc_with(&store, &a, "10.90.0.0/16");
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpcClassicLink&VpcId.1={v1}&VpcId.2={v2}"),
    )
    .unwrap();
    let mut ids = all(&xml, "vpcId");
    ids.sort();
    let mut want = vec![v1.clone(), v2.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(all(&xml, "classicLinkEnabled"), ["false", "false"]);

    let xml = call(
        &store,
        &a,
        "Action=DescribeVpcClassicLink&Filter.1.Name=is-classic-link-enabled&Filter.1.Value.1=true",
    )
    .unwrap();
    assert!(all(&xml, "vpcId").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeVpcClassicLink&Filter.1.Name=nonsense&Filter.1.Value.1=x"
        ),
        "InvalidParameterValue"
    );

    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpcClassicLinkDnsSupport&VpcIds.1={v2}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "vpcId"), std::slice::from_ref(&v2));
    assert_eq!(all(&xml, "classicLinkDnsSupported"), ["false"]);

    // Pages of the account's VPCs (the default VPC included, if any).
    let xml = call(
        &store,
        &a,
        "Action=DescribeVpcClassicLinkDnsSupport&MaxResults=5",
    )
    .unwrap();
    assert!(!all(&xml, "vpcId").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeVpcClassicLinkDnsSupport&MaxResults=1000"
        ),
        "InvalidParameterValue"
    );

    for action in [
        "DescribeVpcClassicLink&VpcId.1",
        "DescribeVpcClassicLinkDnsSupport&VpcIds.1",
    ] {
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action={action}=vpc-0123456789abcdef0")
            ),
            "InvalidVpcID.NotFound"
        );
    }
    assert_eq!(
        code(&store, &a, "Action=DescribeVpcClassicLink&DryRun=true"),
        "DryRunOperation"
    );
}

#[test]
fn enabling_is_refused_and_disabling_is_a_no_op() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    for action in ["EnableVpcClassicLink", "EnableVpcClassicLinkDnsSupport"] {
        assert_eq!(
            code(&store, &a, &format!("Action={action}&VpcId={v}")),
            "UnsupportedOperation"
        );
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action={action}&VpcId=vpc-0123456789abcdef0")
            ),
            "InvalidVpcID.NotFound"
        );
    }
    for action in ["DisableVpcClassicLink", "DisableVpcClassicLinkDnsSupport"] {
        let xml = call(&store, &a, &format!("Action={action}&VpcId={v}")).unwrap();
        assert!(xml.contains("<return>true</return>"), "{xml}");
        assert_eq!(
            code(&store, &a, &format!("Action={action}")),
            "MissingParameter"
        );
        assert_eq!(
            code(&store, &a, &format!("Action={action}&VpcId=sg-12345678")),
            "InvalidVpcID.Malformed"
        );
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action={action}&VpcId={v}&DryRun=true")
            ),
            "DryRunOperation"
        );
    }
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpcClassicLink&VpcId.1={v}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "classicLinkEnabled"), ["false"]);
}
