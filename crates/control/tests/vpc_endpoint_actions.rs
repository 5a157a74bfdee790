//! Gateway VPC endpoints over the in-memory store, without HTTP: the
//! prefix-list routes they own, ModifyVpcEndpoint, DeleteVpcEndpoints'
//! unsuccessful set, the services, the quota, DeleteVpc's refusal and every
//! error path (spec 1.7, 11, 13).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, main_route_table, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

const S3: &str = "com.amazonaws.us-east-1.s3";
const S3_LIST: &str = "pl-63a5400a";

fn endpoint(store: &dyn Store, a: &Account, vpc: &str, tables: &[&str]) -> String {
    let t: String = tables
        .iter()
        .enumerate()
        .map(|(i, t)| format!("&RouteTableId.{}={t}", i + 1))
        .collect();
    first(
        &call(
            store,
            a,
            &format!("Action=CreateVpcEndpoint&VpcId={vpc}&ServiceName={S3}{t}"),
        )
        .unwrap(),
        "vpcEndpointId",
    )
}

fn table(store: &dyn Store, a: &Account, id: &str) -> String {
    call(
        store,
        a,
        &format!("Action=DescribeRouteTables&RouteTableId.1={id}"),
    )
    .unwrap()
}

fn new_table(store: &dyn Store, a: &Account, vpc: &str) -> String {
    first(
        &call(store, a, &format!("Action=CreateRouteTable&VpcId={vpc}")).unwrap(),
        "routeTableId",
    )
}

// spec 11: an S3 endpoint adds pl → vpce to each of its tables; that route
// cannot be deleted or replaced directly; DescribeVpcEndpoints shows it.
#[test]
fn create_adds_routes_that_cannot_be_edited() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let rtb = main_route_table(&store, &a, &v);
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=CreateVpcEndpoint&VpcEndpointType=Gateway&VpcId={v}&ServiceName={S3}&RouteTableId.1={rtb}\
             &TagSpecification.1.ResourceType=vpc-endpoint&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=s3"
        ),
    )
    .unwrap();
    let id = first(&xml, "vpcEndpointId");
    assert!(id.starts_with("vpce-") && id.len() == 5 + 17);
    assert_eq!(first(&xml, "state"), "available");
    assert_eq!(first(&xml, "vpcEndpointType"), "Gateway");
    assert_eq!(first(&xml, "serviceName"), S3);
    assert_eq!(
        all(&first(&xml, "routeTableIdSet"), "item"),
        vec![rtb.clone()]
    );
    assert!(first(&xml, "policyDocument").contains("Allow"));
    let t = table(&store, &a, &rtb);
    assert!(t.contains(&format!(
        "<destinationPrefixListId>{S3_LIST}</destinationPrefixListId><gatewayId>{id}</gatewayId>"
    )));
    assert!(!t.contains("blackhole"));
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteRoute&RouteTableId={rtb}&DestinationPrefixListId={S3_LIST}")
        ),
        "InvalidParameterValue"
    );
    let igw = first(
        &call(&store, &a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    );
    call(
        &store,
        &a,
        &format!("Action=AttachInternetGateway&InternetGatewayId={igw}&VpcId={v}"),
    )
    .unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=ReplaceRoute&RouteTableId={rtb}&DestinationPrefixListId={S3_LIST}&GatewayId={igw}"
            )
        ),
        "InvalidParameterValue"
    );
    // A second S3 endpoint on the same table: the route exists.
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateVpcEndpoint&VpcId={v}&ServiceName={S3}&RouteTableId.1={rtb}")
        ),
        "RouteAlreadyExists"
    );
    // Describe and filters.
    let ids = |q: &str| {
        all(
            &call(&store, &a, &format!("Action=DescribeVpcEndpoints{q}")).unwrap(),
            "vpcEndpointId",
        )
    };
    assert_eq!(ids(""), vec![id.clone()]);
    assert_eq!(
        ids(&format!("&Filter.1.Name=vpc-id&Filter.1.Value.1={v}")),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&format!(
            "&Filter.1.Name=service-name&Filter.1.Value.1={S3}"
        ))
        .len(),
        1
    );
    assert_eq!(ids("&Filter.1.Name=tag:Name&Filter.1.Value.1=s3").len(), 1);
    assert!(ids("&Filter.1.Name=vpc-endpoint-state&Filter.1.Value.1=deleted").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeVpcEndpoints&VpcEndpointId.1=vpce-0123456789abcdef0"
        ),
        "InvalidVpcEndpointId.NotFound"
    );
}

// spec 11 and 12.3: what CreateVpcEndpoint refuses.
#[test]
fn create_errors() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let other = vpc(&store, &a);
    let foreign = main_route_table(&store, &a, &other);
    for (q, want) in [
        (
            format!("VpcId={v}&ServiceName=com.amazonaws.us-east-1.ec2"),
            "InvalidServiceName",
        ),
        (
            format!("VpcId={v}&ServiceName=com.amazonaws.eu-west-1.s3"),
            "InvalidServiceName",
        ),
        (
            format!("VpcId={v}&ServiceName={S3}&VpcEndpointType=Interface"),
            "InvalidParameterValue",
        ),
        (format!("ServiceName={S3}"), "MissingParameter"),
        (format!("VpcId={v}"), "MissingParameter"),
        (
            format!("VpcId=vpc-0123456789abcdef0&ServiceName={S3}"),
            "InvalidVpcID.NotFound",
        ),
        (
            format!("VpcId={v}&ServiceName={S3}&RouteTableId.1=rtb-0123456789abcdef0"),
            "InvalidRouteTableID.NotFound",
        ),
        (
            format!("VpcId={v}&ServiceName={S3}&RouteTableId.1={foreign}"),
            "InvalidParameterValue",
        ),
        (
            format!("VpcId={v}&ServiceName={S3}&PolicyDocument=not-json"),
            "MalformedPolicyDocument",
        ),
        (
            format!("VpcId={v}&ServiceName={S3}&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        assert_eq!(
            code(&store, &a, &format!("Action=CreateVpcEndpoint&{q}")),
            want,
            "{q}"
        );
    }
    // Nothing was left behind: no endpoint, no route.
    let none = call(&store, &a, "Action=DescribeVpcEndpoints").unwrap();
    assert!(all(&none, "vpcEndpointId").is_empty());
    assert!(!table(&store, &a, &foreign).contains(S3_LIST));
}

// spec 11: ModifyVpcEndpoint moves the routes with the table list.
#[test]
fn modify_route_tables() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let main = main_route_table(&store, &a, &v);
    let private = new_table(&store, &a, &v);
    let id = endpoint(&store, &a, &v, &[&main]);
    call(
        &store,
        &a,
        &format!(
            "Action=ModifyVpcEndpoint&VpcEndpointId={id}&AddRouteTableId.1={private}&RemoveRouteTableId.1={main}"
        ),
    )
    .unwrap();
    assert!(!table(&store, &a, &main).contains(S3_LIST));
    assert!(table(&store, &a, &private).contains(S3_LIST));
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeVpcEndpoints&VpcEndpointId.1={id}"),
    )
    .unwrap();
    assert_eq!(
        all(&first(&described, "routeTableIdSet"), "item"),
        vec![private.clone()]
    );
    let modify = |q: &str| {
        code(
            &store,
            &a,
            &format!("Action=ModifyVpcEndpoint&VpcEndpointId={id}&{q}"),
        )
    };
    assert_eq!(
        modify(&format!("RemoveRouteTableId.1={main}")),
        "InvalidParameterValue"
    );
    assert_eq!(
        modify("AddRouteTableId.1=rtb-0123456789abcdef0"),
        "InvalidRouteTableID.NotFound"
    );
    assert_eq!(
        modify(&format!(
            "AddRouteTableId.1={main}&RemoveRouteTableId.1={main}"
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(modify("PolicyDocument=%7B"), "MalformedPolicyDocument");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=ModifyVpcEndpoint&VpcEndpointId=vpce-0123456789abcdef0&ResetPolicy=true"
        ),
        "InvalidVpcEndpointId.NotFound"
    );
    // A deleted table leaves the endpoint.
    call(
        &store,
        &a,
        &format!("Action=ModifyVpcEndpoint&VpcEndpointId={id}&AddRouteTableId.1={main}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteRouteTable&RouteTableId={private}"),
    )
    .unwrap();
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeVpcEndpoints&VpcEndpointId.1={id}"),
    )
    .unwrap();
    assert_eq!(
        all(&first(&described, "routeTableIdSet"), "item"),
        vec![main]
    );
}

// spec 11 and 1.7: DeleteVpcEndpoints removes the routes, answers unknown
// IDs in `unsuccessful`; DeleteVpc refuses while an endpoint remains.
#[test]
fn delete_and_vpc_dependency() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let rtb = main_route_table(&store, &a, &v);
    let id = endpoint(&store, &a, &v, &[&rtb]);
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")),
        "DependencyViolation"
    );
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=DeleteVpcEndpoints&VpcEndpointId.1={id}&VpcEndpointId.2=vpce-0123456789abcdef0&VpcEndpointId.3=nope"
        ),
    )
    .unwrap();
    assert_eq!(all(&xml, "resourceId"), ["vpce-0123456789abcdef0", "nope"]);
    assert_eq!(
        all(&xml, "code"),
        [
            "InvalidVpcEndpointId.NotFound",
            "InvalidVpcEndpointId.Malformed"
        ]
    );
    assert!(!table(&store, &a, &rtb).contains(S3_LIST));
    assert_eq!(
        code(&store, &a, "Action=DeleteVpcEndpoints"),
        "MissingParameter"
    );
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={v}")).unwrap();
}

// spec 11 and 13: 20 gateway endpoints per region.
#[test]
fn quota() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    for _ in 0..20 {
        endpoint(&store, &a, &v, &[]);
    }
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateVpcEndpoint&VpcId={v}&ServiceName={S3}")
        ),
        "VpcEndpointLimitExceeded"
    );
}

// spec 11: the region's two gateway services.
#[test]
fn services() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(&store, &a, "Action=DescribeVpcEndpointServices").unwrap();
    assert_eq!(
        all(&first(&xml, "serviceNameSet"), "item"),
        ["com.amazonaws.us-east-1.dynamodb", S3]
    );
    assert_eq!(
        xml.matches("<serviceType><item><serviceType>Gateway</serviceType></item></serviceType>")
            .count(),
        2
    );
    let one = call(
        &store,
        &a,
        &format!("Action=DescribeVpcEndpointServices&ServiceName.1={S3}"),
    )
    .unwrap();
    assert_eq!(all(&one, "serviceName"), [S3]);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeVpcEndpointServices&ServiceName.1=com.amazonaws.us-east-1.ec2"
        ),
        "InvalidServiceName"
    );
}

// Endpoints belong to their account.
#[test]
fn accounts_are_isolated() {
    let store = MemoryStore::new();
    let a = account();
    let b = Account::generate("b", Some("222222222222"));
    let v = vpc(&store, &a);
    let id = endpoint(&store, &a, &v, &[]);
    let xml = call(
        &store,
        &b,
        &format!("Action=DeleteVpcEndpoints&VpcEndpointId.1={id}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "resourceId"), vec![id]);
}

// Issue 12: a repeated DeleteVpcEndpoints (a retry, a second teardown) is not
// an error: an endpoint already deleted, like one that never existed, is
// reported in `unsuccessful` with its own code, and the call succeeds even
// when every ID fails.
#[test]
fn repeated_delete_reports_each_id_in_unsuccessful() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let rtb = main_route_table(&store, &a, &v);
    let first_id = endpoint(&store, &a, &v, &[&rtb]);
    let delete = |ids: &[&str]| {
        let mut body = "Action=DeleteVpcEndpoints".to_owned();
        for (i, id) in ids.iter().enumerate() {
            body.push_str(&format!("&VpcEndpointId.{}={id}", i + 1));
        }
        call(&store, &a, &body).unwrap()
    };
    let xml = delete(&[&first_id]);
    assert!(xml.contains("<unsuccessful></unsuccessful>"), "{xml}");
    let xml = delete(&[&first_id]);
    assert_eq!(all(&xml, "resourceId"), [first_id.as_str()]);
    assert_eq!(all(&xml, "code"), ["InvalidVpcEndpointId.NotFound"]);
    assert!(
        xml.contains(&format!(
            "<unsuccessful><item><error><code>InvalidVpcEndpointId.NotFound</code><message>The VpcEndpoint Id &apos;{first_id}&apos; does not exist</message></error><resourceId>{first_id}</resourceId></item></unsuccessful>"
        )),
        "{xml}"
    );
    // Mixed with a live one: the live one goes, the gone one is reported.
    let second = endpoint(&store, &a, &v, &[&rtb]);
    let xml = delete(&[&first_id, &second]);
    assert_eq!(all(&xml, "resourceId"), [first_id]);
    assert!(
        all(
            &call(&store, &a, "Action=DescribeVpcEndpoints").unwrap(),
            "vpcEndpointId"
        )
        .is_empty()
    );
    assert!(!table(&store, &a, &rtb).contains(S3_LIST));
}

// spec 12.1 (Idempotency): CreateVpcEndpoint with the ClientToken of an
// earlier call returns that endpoint and adds no second route; the token
// with other parameters is IdempotentParameterMismatch.
#[test]
fn create_client_token_idempotency() {
    let store = MemoryStore::new();
    let a = account();
    let v = vpc(&store, &a);
    let rt = main_route_table(&store, &a, &v);
    let req = format!(
        "Action=CreateVpcEndpoint&VpcId={v}&ServiceName={S3}&RouteTableId.1={rt}&ClientToken=tok-1"
    );
    let one = call(&store, &a, &req).unwrap();
    let id = first(&one, "vpcEndpointId");
    assert_eq!(first(&one, "clientToken"), "tok-1");
    let two = call(&store, &a, &req).unwrap();
    assert_eq!(first(&two, "vpcEndpointId"), id);
    assert_eq!(
        all(
            &call(&store, &a, "Action=DescribeVpcEndpoints").unwrap(),
            "vpcEndpointId"
        ),
        std::slice::from_ref(&id)
    );
    let routes = table(&store, &a, &rt);
    assert_eq!(
        all(&routes, "destinationPrefixListId"),
        [S3_LIST],
        "{routes}"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateVpcEndpoint&VpcId={v}&ServiceName={S3}&ClientToken=tok-1")
        ),
        "IdempotentParameterMismatch"
    );
}
