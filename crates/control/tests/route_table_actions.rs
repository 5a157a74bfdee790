//! The route-table actions over the in-memory store: each VPC's main table,
//! custom tables, routes to every kind of target and their errors, the
//! local-route rules, blackhole state, subnet and gateway associations, main
//! table replacement, filters, and the hooks other modules call.
//!
//! Targets owned by modules built elsewhere (IGWs, NAT gateways, ENIs, …)
//! are stand-in records written straight to their store keys: route tables
//! only rely on a target's key existing and on its `state`/`vpc_id`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{all, first};

use openvpc_control::ApiError;
use openvpc_control::account::Account;
use openvpc_control::actions::resource::transact;
use openvpc_control::actions::route_table::{self, RouteTable};
use openvpc_control::actions::subnet::Subnet;
use openvpc_control::actions::{Ctx, dispatch};
use openvpc_control::fleet::nodes::{self as edges, Role};
use openvpc_control::query::Params;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::edge::EdgeRegistration;

const ACCOUNT: &str = "111111111111";

struct World {
    store: MemoryStore,
    account: Account,
    vpc: String,
}

impl World {
    fn new() -> Self {
        let store = MemoryStore::new();
        let account = Account::generate("a", Some(ACCOUNT));
        let mut w = World {
            store,
            account,
            vpc: String::new(),
        };
        w.vpc = w.ok_first("Action=CreateVpc&CidrBlock=10.0.0.0%2F16", "vpcId");
        w
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.store,
            account: &self.account,
            region: "us-east-1",
            request_id: "req-test",
            fleet: None,
        }
    }

    fn call(&self, body: &str) -> Result<String, ApiError> {
        let body = body.replace('/', "%2F");
        dispatch(&self.ctx(), &Params::parse(body.as_bytes(), ""))
    }

    fn ok(&self, body: &str) -> String {
        match self.call(body) {
            Ok(xml) => xml,
            Err(e) => panic!("{body} failed: {e}"),
        }
    }

    fn ok_first(&self, body: &str, tag: &str) -> String {
        first(&self.ok(body), tag)
    }

    fn code(&self, body: &str) -> String {
        match self.call(body) {
            Ok(xml) => panic!("{body} succeeded: {xml}"),
            Err(e) => e.code.into_owned(),
        }
    }

    fn subnet(&self, cidr: &str) -> String {
        self.ok_first(
            &format!("Action=CreateSubnet&VpcId={}&CidrBlock={cidr}", self.vpc),
            "subnetId",
        )
    }

    fn table(&self) -> String {
        self.ok_first(
            &format!("Action=CreateRouteTable&VpcId={}", self.vpc),
            "routeTableId",
        )
    }

    /// The main table of the world's VPC: (table ID, main association ID).
    fn main(&self) -> (String, String) {
        let xml = self.ok(&format!(
            "Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={}&Filter.2.Name=association.main&Filter.2.Value.1=true",
            self.vpc
        ));
        assert_eq!(all(&xml, "routeTableId").len(), 2, "{xml}"); // table + its association
        (
            first(&xml, "routeTableId"),
            first(&xml, "routeTableAssociationId"),
        )
    }

    /// A stand-in record of another module's resource.
    fn fake(&self, prefix: &str, n: u32, json: &str) -> String {
        let id = format!("{prefix}-{n:017x}");
        let key = format!("r/{ACCOUNT}/us-east-1/{prefix}/{id}");
        self.store.put(key.as_bytes(), json.as_bytes()).unwrap();
        id
    }

    fn unfake(&self, prefix: &str, id: &str) {
        let key = format!("r/{ACCOUNT}/us-east-1/{prefix}/{id}");
        self.store.delete(key.as_bytes()).unwrap();
    }

    /// The described table's routes as (destination, target, state, origin).
    fn routes(&self, table: &str) -> Vec<(String, String, String, String)> {
        let xml = self.ok(&format!(
            "Action=DescribeRouteTables&RouteTableId.1={table}"
        ));
        let set = xml
            .split("<routeSet>")
            .nth(1)
            .and_then(|s| s.split("</routeSet>").next())
            .unwrap_or_default()
            .to_owned();
        set.split("<item>")
            .skip(1)
            .map(|item| {
                let dest = [
                    "destinationCidrBlock",
                    "destinationIpv6CidrBlock",
                    "destinationPrefixListId",
                ]
                .iter()
                .map(|t| first(item, t))
                .find(|v| !v.is_empty())
                .unwrap_or_default();
                let target = [
                    "gatewayId",
                    "natGatewayId",
                    "networkInterfaceId",
                    "instanceId",
                    "vpcPeeringConnectionId",
                    "egressOnlyInternetGatewayId",
                    "transitGatewayId",
                ]
                .iter()
                .map(|t| first(item, t))
                .find(|v| !v.is_empty())
                .unwrap_or_default();
                (dest, target, first(item, "state"), first(item, "origin"))
            })
            .collect()
    }

    fn ids(&self, query: &str) -> Vec<String> {
        let xml = self.ok(&format!("Action=DescribeRouteTables&{query}"));
        // Table IDs are the ones directly under each table item (before its
        // associations, which repeat them).
        xml.split("<routeTableSet>")
            .nth(1)
            .unwrap_or_default()
            .split("<item><routeTableId>")
            .skip(1)
            .filter_map(|s| s.split_once("</routeTableId>").map(|(id, _)| id.to_owned()))
            .collect()
    }

    fn table_for(&self, subnet: &str) -> String {
        transact(&self.ctx(), |tx| {
            let s = tx.load::<Subnet>(subnet)?;
            route_table::table_for_subnet(tx, &s)
        })
        .unwrap()
        .id
    }
}

fn route(dest: &str, target: &str, state: &str, origin: &str) -> (String, String, String, String) {
    (dest.into(), target.into(), state.into(), origin.into())
}

#[test]
fn every_vpc_gets_a_main_table_that_goes_with_it() {
    let w = World::new();
    let xml = w.ok(&format!(
        "Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={}",
        w.vpc
    ));
    // spec 1.6: one table, main, with only the local route.
    let (table, assoc) = w.main();
    assert!(
        table.starts_with("rtb-") && table.len() == 4 + 17,
        "{table}"
    );
    assert!(assoc.starts_with("rtbassoc-"), "{assoc}");
    assert_eq!(first(&xml, "main"), "true");
    assert_eq!(first(&xml, "ownerId"), ACCOUNT);
    assert_eq!(
        w.routes(&table),
        vec![route("10.0.0.0/16", "local", "active", "CreateRouteTable")]
    );
    // spec 1.7: DeleteVpc takes the main table with it.
    w.ok(&format!("Action=DeleteVpc&VpcId={}", w.vpc));
    assert!(w.ids("").is_empty());
}

#[test]
fn custom_table_lifecycle_and_delete_rules() {
    let w = World::new();
    let (main, _) = w.main();
    let xml = w.ok(&format!(
        "Action=CreateRouteTable&VpcId={}&TagSpecification.1.ResourceType=route-table&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=private",
        w.vpc
    ));
    let rt = first(&xml, "routeTableId");
    // spec 2.1: custom tables start with only the local route(s), unassociated.
    assert_eq!(first(&xml, "value"), "private");
    assert!(all(&xml, "routeTableAssociationId").is_empty());
    assert_eq!(
        w.routes(&rt),
        vec![route("10.0.0.0/16", "local", "active", "CreateRouteTable")]
    );
    // spec 1.7: a custom table keeps the VPC.
    assert_eq!(
        w.code(&format!("Action=DeleteVpc&VpcId={}", w.vpc)),
        "DependencyViolation"
    );
    // spec 2.1: the main table cannot be deleted.
    assert_eq!(
        w.code(&format!("Action=DeleteRouteTable&RouteTableId={main}")),
        "DependencyViolation"
    );
    w.ok(&format!("Action=DeleteRouteTable&RouteTableId={rt}"));
    // spec 2.9: InvalidRouteTableID.NotFound; a malformed ID gets .Malformed.
    assert_eq!(
        w.code(&format!("Action=DeleteRouteTable&RouteTableId={rt}")),
        "InvalidRouteTableID.NotFound"
    );
    assert_eq!(
        w.code("Action=DescribeRouteTables&RouteTableId.1=rtb-1234abcd"),
        "InvalidRouteTableID.NotFound"
    );
    assert_eq!(
        w.code("Action=DeleteRouteTable&RouteTableId=rtb-xyz"),
        "InvalidRouteTableID.Malformed"
    );
    assert_eq!(
        w.code("Action=CreateRouteTable&VpcId=vpc-0000000000000000f"),
        "InvalidVpcID.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateRouteTable&VpcId={}&TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=a",
            w.vpc
        )),
        "InvalidParameterValue"
    );
    // spec 12.1: DryRun creates nothing.
    assert_eq!(
        w.code(&format!(
            "Action=CreateRouteTable&VpcId={}&DryRun=true",
            w.vpc
        )),
        "DryRunOperation"
    );
    assert_eq!(w.ids("").len(), 1);
    w.ok(&format!("Action=DeleteVpc&VpcId={}", w.vpc));
}

// spec 12.1 (Idempotency): CreateRouteTable takes a ClientToken (botocore
// fills one in on every call and resends it when it retries a timed-out
// request, as Ansible's ec2_vpc_route_table makes it): the same token and
// parameters return the first table and make no second one; the token with
// other parameters is IdempotentParameterMismatch.
#[test]
fn create_route_table_client_token_idempotency() {
    let w = World::new();
    let req = format!(
        "Action=CreateRouteTable&VpcId={}&ClientToken=tok-1&TagSpecification.1.ResourceType=route-table&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=public",
        w.vpc
    );
    let one = w.ok(&req);
    let rt = first(&one, "routeTableId");
    assert_eq!(first(&one, "clientToken"), "tok-1");
    let two = w.ok(&req);
    assert_eq!(first(&two, "routeTableId"), rt);
    assert_eq!(first(&two, "clientToken"), "tok-1");
    assert_eq!(w.ids("").len(), 2, "the main table and one custom table");
    assert_eq!(
        w.code(&format!(
            "Action=CreateRouteTable&VpcId={}&ClientToken=tok-1",
            w.vpc
        )),
        "IdempotentParameterMismatch"
    );
    // Another token is another table; no token, a new table each time.
    let other = w.ok_first(
        &format!("Action=CreateRouteTable&VpcId={}&ClientToken=tok-2", w.vpc),
        "routeTableId",
    );
    assert_ne!(other, rt);
    w.table();
    w.table();
    assert_eq!(w.ids("").len(), 5);
}

#[test]
fn route_tables_per_vpc_quota() {
    let w = World::new();
    // spec 2.8: 200 per VPC, the main table included.
    for _ in 1..route_table::TABLES_PER_VPC {
        w.table();
    }
    assert_eq!(
        w.code(&format!("Action=CreateRouteTable&VpcId={}", w.vpc)),
        "RouteTableLimitExceeded"
    );
}

#[test]
fn routes_to_each_target_kind_and_their_errors() {
    let w = World::new();
    let rt = w.table();
    let igw = w.fake("igw", 1, &format!(r#"{{"vpc_id":"{}"}}"#, w.vpc));
    let nat = w.fake(
        "nat",
        2,
        &format!(r#"{{"vpc_id":"{}","state":"available"}}"#, w.vpc),
    );
    let pcx = w.fake("pcx", 3, r#"{"state":"active"}"#);
    let tgw = w.fake("tgw", 4, "{}");
    let vgw = w.fake("vgw", 5, "{}");
    let inst = w.fake("i", 6, r#"{"state":"running"}"#);
    let eigw = w.fake("eigw", 7, "{}");
    let create = |dest: &str, target: &str| {
        let dest = if dest.contains(':') {
            format!("DestinationIpv6CidrBlock={dest}")
        } else if dest.starts_with("pl-") {
            format!("DestinationPrefixListId={dest}")
        } else {
            format!("DestinationCidrBlock={dest}")
        };
        format!("Action=CreateRoute&RouteTableId={rt}&{dest}&{target}")
    };
    // spec 2.1: one destination and one target of each kind.
    w.ok(&create("0.0.0.0/0", &format!("GatewayId={igw}")));
    w.ok(&create("192.168.0.0/16", &format!("NatGatewayId={nat}")));
    w.ok(&create(
        "172.16.0.0/16",
        &format!("VpcPeeringConnectionId={pcx}"),
    ));
    w.ok(&create("100.64.0.0/10", &format!("TransitGatewayId={tgw}")));
    w.ok(&create("198.18.0.0/15", &format!("GatewayId={vgw}")));
    w.ok(&create("203.0.113.0/24", &format!("InstanceId={inst}")));
    w.ok(&create(
        "::/0",
        &format!("EgressOnlyInternetGatewayId={eigw}"),
    ));
    w.ok(&create("pl-63a5400a", &format!("GatewayId={igw}")));
    // Issue 15: an internet gateway forwards only while an edge node
    // serves the region; until then its routes show as AWS shows a route
    // whose target cannot forward.
    let routes = w.routes(&rt);
    assert!(routes.contains(&route("0.0.0.0/0", &igw, "blackhole", "CreateRoute")));
    edges::register(
        &w.store,
        Role::Edge,
        "us-east-1",
        &EdgeRegistration {
            node_id: "e1".into(),
            underlay_ip: "10.254.0.2".parse().unwrap(),
            serving: Vec::new(),
            target_health: Vec::new(),
        },
        1,
    )
    .unwrap();
    let routes = w.routes(&rt);
    assert_eq!(routes.len(), 9, "{routes:?}");
    assert!(routes.contains(&route("0.0.0.0/0", &igw, "active", "CreateRoute")));
    assert!(routes.contains(&route("::/0", &eigw, "active", "CreateRoute")));
    assert!(routes.contains(&route("pl-63a5400a", &igw, "active", "CreateRoute")));
    assert!(routes.contains(&route("203.0.113.0/24", &inst, "active", "CreateRoute")));
    let xml = w.ok(&format!("Action=DescribeRouteTables&RouteTableId.1={rt}"));
    assert_eq!(first(&xml, "instanceOwnerId"), ACCOUNT);

    // spec 2.9: the same destination again is RouteAlreadyExists (host bits
    // masked), including the local route's.
    assert_eq!(
        w.code(&create("0.0.0.0/0", &format!("NatGatewayId={nat}"))),
        "RouteAlreadyExists"
    );
    assert_eq!(
        w.code(&create("192.168.0.9/16", &format!("GatewayId={igw}"))),
        "RouteAlreadyExists"
    );
    assert_eq!(
        w.code(&create("10.0.0.0/16", &format!("GatewayId={igw}"))),
        "RouteAlreadyExists"
    );
    // A target that does not exist gets its kind's NotFound code.
    for (target, code) in [
        (
            "GatewayId=igw-0000000000000000f",
            "InvalidGatewayID.NotFound",
        ),
        (
            "GatewayId=vgw-0000000000000000f",
            "InvalidGatewayID.NotFound",
        ),
        (
            "GatewayId=nat-0000000000000000f",
            "InvalidGatewayID.NotFound",
        ),
        (
            "NatGatewayId=nat-0000000000000000f",
            "InvalidNatGatewayID.NotFound",
        ),
        (
            "NetworkInterfaceId=eni-0000000000000000f",
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (
            "InstanceId=i-0000000000000000f",
            "InvalidInstanceID.NotFound",
        ),
        (
            "VpcPeeringConnectionId=pcx-0000000000000000f",
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (
            "TransitGatewayId=tgw-0000000000000000f",
            "InvalidTransitGatewayID.NotFound",
        ),
        (
            "EgressOnlyInternetGatewayId=eoigw",
            "InvalidGatewayID.NotFound",
        ),
    ] {
        assert_eq!(w.code(&create("8.8.8.0/24", target)), code, "{target}");
    }
    // A target in another VPC belongs to a different network.
    let foreign = w.fake("nat", 9, r#"{"vpc_id":"vpc-0000000000000000f"}"#);
    assert_eq!(
        w.code(&create("8.8.8.0/24", &format!("NatGatewayId={foreign}"))),
        "InvalidParameterValue"
    );
    // spec 2.3: reserved destinations.
    assert_eq!(
        w.code(&create("169.254.169.0/24", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("169.254.168.0/22", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("fd00:ec2::/48", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    // spec 2.3: a larger block around the reserved range is fine.
    w.ok(&create("169.254.0.0/16", &format!("GatewayId={igw}")));
    // spec 2.5: an EIGW carries IPv6 only; 'local' is no CreateRoute target.
    assert_eq!(
        w.code(&create(
            "8.8.8.0/24",
            &format!("EgressOnlyInternetGatewayId={eigw}")
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("8.8.8.0/24", "GatewayId=local")),
        "InvalidParameterValue"
    );
    // Parameters: bad CIDR, none or two destinations, none or two targets.
    assert_eq!(
        w.code(&create("1000.1.0.0/20", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("2001:db8::/129", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId={rt}&GatewayId={igw}"
        )),
        "MissingParameter"
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=8.8.8.0/24&DestinationIpv6CidrBlock=2001:db8::/64&GatewayId={igw}"
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=8.8.8.0/24"
        )),
        "MissingParameter"
    );
    assert_eq!(
        w.code(&create(
            "8.8.8.0/24",
            &format!("GatewayId={igw}&NatGatewayId={nat}")
        )),
        "InvalidParameterCombination"
    );
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId=rtb-1234abcd&DestinationCidrBlock=8.8.8.0/24&GatewayId={igw}"
        )),
        "InvalidRouteTableID.NotFound"
    );

    // spec 2.9: ReplaceRoute on a missing destination → InvalidParameterValue.
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=1.1.1.1/32&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0/0&NatGatewayId={nat}"
    ));
    assert!(
        w.routes(&rt)
            .contains(&route("0.0.0.0/0", &nat, "active", "CreateRoute"))
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0/0&GatewayId=igw-0000000000000000f"
        )),
        "InvalidGatewayID.NotFound"
    );

    // spec 2.9: deleting a missing route → InvalidRoute.NotFound; spec 2.2:
    // the local route cannot be deleted.
    w.ok(&format!(
        "Action=DeleteRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0/0"
    ));
    assert_eq!(
        w.code(&format!(
            "Action=DeleteRoute&RouteTableId={rt}&DestinationCidrBlock=0.0.0.0/0"
        )),
        "InvalidRoute.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=DeleteRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.0.0/16"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=DeleteRoute&RouteTableId={rt}&DestinationIpv6CidrBlock=::/0"
    ));
    w.ok(&format!(
        "Action=DeleteRoute&RouteTableId={rt}&DestinationPrefixListId=pl-63a5400a"
    ));
    assert_eq!(w.routes(&rt).len(), 7);
}

#[test]
fn local_route_rules() {
    let w = World::new();
    let rt = w.table();
    w.subnet("10.0.1.0/24");
    let eni = w.fake("eni", 1, &format!(r#"{{"vpc_id":"{}"}}"#, w.vpc));
    let nat = w.fake("nat", 2, "{}");
    let igw = w.fake("igw", 3, "{}");
    let create = |dest: &str, target: &str| {
        format!("Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock={dest}&{target}")
    };
    // spec 2.2: more specific than local only for a whole subnet, to a NAT
    // gateway, an ENI or a GWLB endpoint.
    assert_eq!(
        w.code(&create("10.0.0.0/16", &format!("NetworkInterfaceId={eni}"))),
        "RouteAlreadyExists"
    );
    assert_eq!(
        w.code(&create("10.0.2.0/24", &format!("NetworkInterfaceId={eni}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("10.0.1.0/25", &format!("NetworkInterfaceId={eni}"))),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&create("10.0.1.0/24", &format!("GatewayId={igw}"))),
        "InvalidParameterValue"
    );
    w.ok(&create("10.0.1.0/24", &format!("NetworkInterfaceId={eni}")));
    // ... and a retarget keeps to the rule.
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.1.0/24&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.1.0/24&NatGatewayId={nat}"
    ));
    // A less specific block around the VPC is an ordinary route.
    w.ok(&create("10.0.0.0/8", &format!("GatewayId={igw}")));
    // spec 2.2: the local route's target can go through an ENI and back.
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.0.0/16&NetworkInterfaceId={eni}"
    ));
    assert!(
        w.routes(&rt)
            .contains(&route("10.0.0.0/16", &eni, "active", "CreateRouteTable"))
    );
    assert_eq!(
        w.code(&format!(
            "Action=DeleteRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.0.0/16"
        )),
        "InvalidParameterValue"
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.0.0/16&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={rt}&DestinationCidrBlock=10.0.0.0/16&GatewayId=local"
    ));
    assert!(
        w.routes(&rt)
            .contains(&route("10.0.0.0/16", "local", "active", "CreateRouteTable"))
    );
}

#[test]
fn fifty_static_routes_per_family() {
    let w = World::new();
    let rt = w.table();
    let igw = w.fake("igw", 1, "{}");
    // spec 2.8 / 13: 50 non-propagated routes per family; the 51st fails.
    for i in 0..route_table::ROUTES_PER_FAMILY {
        w.ok(&format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=172.16.{i}.0/24&GatewayId={igw}"
        ));
    }
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=172.17.0.0/24&GatewayId={igw}"
        )),
        "RouteLimitExceeded"
    );
    // Counted separately for IPv6.
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rt}&DestinationIpv6CidrBlock=2001:db8::/64&GatewayId={igw}"
    ));
}

#[test]
fn routes_to_missing_or_inactive_targets_are_blackholes() {
    let w = World::new();
    let (main, _) = w.main();
    let nat = w.fake("nat", 1, r#"{"state":"available"}"#);
    let pcx = w.fake("pcx", 2, r#"{"state":"pending-acceptance"}"#);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={main}&DestinationCidrBlock=0.0.0.0/0&NatGatewayId={nat}"
    ));
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={main}&DestinationCidrBlock=10.1.0.0/16&VpcPeeringConnectionId={pcx}"
    ));
    // spec 2.5: a pcx not yet accepted is a blackhole until it is active.
    assert!(
        w.routes(&main)
            .contains(&route("10.1.0.0/16", &pcx, "blackhole", "CreateRoute"))
    );
    w.fake("pcx", 2, r#"{"state":"active"}"#);
    assert!(
        w.routes(&main)
            .contains(&route("10.1.0.0/16", &pcx, "active", "CreateRoute"))
    );
    // spec 2.5: deleting the NAT gateway (record gone, or left as deleted)
    // turns its routes into blackholes.
    assert!(
        w.routes(&main)
            .contains(&route("0.0.0.0/0", &nat, "active", "CreateRoute"))
    );
    w.fake("nat", 1, r#"{"state":"deleted"}"#);
    assert!(
        w.routes(&main)
            .contains(&route("0.0.0.0/0", &nat, "blackhole", "CreateRoute"))
    );
    w.unfake("nat", &nat);
    assert!(
        w.routes(&main)
            .contains(&route("0.0.0.0/0", &nat, "blackhole", "CreateRoute"))
    );
    assert_eq!(
        w.ids("Filter.1.Name=route.state&Filter.1.Value.1=blackhole"),
        vec![main.clone()]
    );
    // The route stays until it is changed or deleted.
    let nat2 = w.fake("nat", 3, "{}");
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={main}&DestinationCidrBlock=0.0.0.0/0&NatGatewayId={nat2}"
    ));
    assert!(
        w.ids("Filter.1.Name=route.state&Filter.1.Value.1=blackhole")
            .is_empty()
    );
}

#[test]
fn subnet_associations() {
    let w = World::new();
    let (main, _) = w.main();
    let a = w.subnet("10.0.1.0/24");
    let rt1 = w.table();
    let rt2 = w.table();
    // spec 2.1: a subnet without an explicit association uses the main table.
    assert_eq!(w.table_for(&a), main);
    let xml = w.ok(&format!(
        "Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId={a}"
    ));
    let assoc = first(&xml, "associationId");
    assert!(assoc.starts_with("rtbassoc-"), "{xml}");
    assert_eq!(first(&xml, "state"), "associated");
    assert_eq!(w.table_for(&a), rt1);
    let described = w.ok(&format!("Action=DescribeRouteTables&RouteTableId.1={rt1}"));
    assert_eq!(first(&described, "subnetId"), a);
    assert_eq!(first(&described, "main"), "false");
    // The same association again answers with it; another table is refused.
    assert_eq!(
        w.ok_first(
            &format!("Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId={a}"),
            "associationId"
        ),
        assoc
    );
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={rt2}&SubnetId={a}"
        )),
        "Resource.AlreadyAssociated"
    );
    // spec 2.9: an associated table cannot be deleted.
    assert_eq!(
        w.code(&format!("Action=DeleteRouteTable&RouteTableId={rt1}")),
        "DependencyViolation"
    );
    // spec 2.1: disassociating puts the subnet back on the main table.
    w.ok(&format!(
        "Action=DisassociateRouteTable&AssociationId={assoc}"
    ));
    assert_eq!(w.table_for(&a), main);
    assert_eq!(
        w.code(&format!(
            "Action=DisassociateRouteTable&AssociationId={assoc}"
        )),
        "InvalidAssociationID.NotFound"
    );
    // Errors: unknown subnet or table, a subnet of another VPC, neither
    // subnet nor gateway.
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId=subnet-1234abcd"
        )),
        "InvalidSubnetID.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId=rtb-1234abcd&SubnetId={a}"
        )),
        "InvalidRouteTableID.NotFound"
    );
    assert_eq!(
        w.code(&format!("Action=AssociateRouteTable&RouteTableId={rt1}")),
        "MissingParameter"
    );
    let other_vpc = w.ok_first("Action=CreateVpc&CidrBlock=10.9.0.0/16", "vpcId");
    let far = w.ok_first(
        &format!("Action=CreateSubnet&VpcId={other_vpc}&CidrBlock=10.9.0.0/24"),
        "subnetId",
    );
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId={far}"
        )),
        "InvalidParameterValue"
    );

    // ReplaceRouteTableAssociation moves a subnet between tables.
    let assoc = w.ok_first(
        &format!("Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId={a}"),
        "associationId",
    );
    let xml = w.ok(&format!(
        "Action=ReplaceRouteTableAssociation&AssociationId={assoc}&RouteTableId={rt2}"
    ));
    let moved = first(&xml, "newAssociationId");
    assert!(moved.starts_with("rtbassoc-") && moved != assoc, "{xml}");
    assert_eq!(w.table_for(&a), rt2);
    // Again with the same table: nothing moves, the same ID comes back.
    assert_eq!(
        w.ok_first(
            &format!(
                "Action=ReplaceRouteTableAssociation&AssociationId={moved}&RouteTableId={rt2}"
            ),
            "newAssociationId"
        ),
        moved
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRouteTableAssociation&AssociationId=rtbassoc-1234abcd&RouteTableId={rt1}"
        )),
        "InvalidAssociationID.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=ReplaceRouteTableAssociation&AssociationId={moved}&RouteTableId=rtb-1234abcd"
        )),
        "InvalidRouteTableID.NotFound"
    );
    // DeleteSubnet drops the subnet's association, freeing the table.
    w.ok(&format!("Action=DeleteSubnet&SubnetId={a}"));
    w.ok(&format!("Action=DeleteRouteTable&RouteTableId={rt2}"));
}

#[test]
fn replacing_the_main_table() {
    let w = World::new();
    let (old_main, main_assoc) = w.main();
    let implicit = w.subnet("10.0.1.0/24");
    let rt1 = w.table();
    // spec 2.1: the main association cannot be disassociated, only moved.
    assert_eq!(
        w.code(&format!(
            "Action=DisassociateRouteTable&AssociationId={main_assoc}"
        )),
        "InvalidParameterValue"
    );
    let xml = w.ok(&format!(
        "Action=ReplaceRouteTableAssociation&AssociationId={main_assoc}&RouteTableId={rt1}"
    ));
    assert_eq!(first(&xml, "state"), "associated");
    let new_assoc = first(&xml, "newAssociationId");
    // spec 2.1: implicitly associated subnets follow the new main table.
    assert_eq!(w.main(), (rt1.clone(), new_assoc));
    assert_eq!(w.table_for(&implicit), rt1);
    let old = w.ok(&format!(
        "Action=DescribeRouteTables&RouteTableId.1={old_main}"
    ));
    assert!(all(&old, "routeTableAssociationId").is_empty(), "{old}");
    // The old main table is now an ordinary one: it can go, and then the
    // VPC (with its new main table) can too.
    w.ok(&format!("Action=DeleteRouteTable&RouteTableId={old_main}"));
    assert_eq!(
        w.code(&format!("Action=DeleteRouteTable&RouteTableId={rt1}")),
        "DependencyViolation"
    );
    w.ok(&format!("Action=DeleteSubnet&SubnetId={implicit}"));
    w.ok(&format!("Action=DeleteVpc&VpcId={}", w.vpc));
    assert!(w.ids("").is_empty());
}

#[test]
fn gateway_route_tables() {
    let w = World::new();
    let (main, _) = w.main();
    w.subnet("10.0.1.0/24");
    let igw = w.fake("igw", 1, "{}");
    let vgw = w.fake("vgw", 2, "{}");
    let eni = w.fake("eni", 3, "{}");
    let nat = w.fake("nat", 4, "{}");
    let edge = w.table();
    // spec 2.1: the main table cannot be a gateway route table.
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={main}&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    // spec 2.6: a table with other targets, or destinations outside the VPC,
    // is refused.
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={edge}&DestinationCidrBlock=10.0.1.0/24&NatGatewayId={nat}"
    ));
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={edge}&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={edge}&DestinationCidrBlock=10.0.1.0/24&NetworkInterfaceId={eni}"
    ));
    let xml = w.ok(&format!(
        "Action=AssociateRouteTable&RouteTableId={edge}&GatewayId={igw}"
    ));
    let assoc = first(&xml, "associationId");
    let described = w.ok(&format!("Action=DescribeRouteTables&RouteTableId.1={edge}"));
    assert_eq!(first(&described, "gatewayId"), igw);
    assert!(first(&described, "subnetId").is_empty());
    assert_eq!(
        w.ids(&format!(
            "Filter.1.Name=association.gateway-id&Filter.1.Value.1={igw}"
        )),
        vec![edge.clone()]
    );
    // Its routes keep to the rules while it is associated.
    assert_eq!(
        w.code(&format!(
            "Action=CreateRoute&RouteTableId={edge}&DestinationCidrBlock=0.0.0.0/0&GatewayId={igw}"
        )),
        "InvalidParameterValue"
    );
    // spec 2.6: the whole-VPC route may go to the appliance.
    w.ok(&format!(
        "Action=ReplaceRoute&RouteTableId={edge}&DestinationCidrBlock=10.0.0.0/16&NetworkInterfaceId={eni}"
    ));
    // One gateway, one table; it cannot become the main table.
    let other = w.table();
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={other}&GatewayId={igw}"
        )),
        "Resource.AlreadyAssociated"
    );
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={edge}&GatewayId=igw-0000000000000000f"
        )),
        "InvalidGatewayID.NotFound"
    );
    assert_eq!(
        w.code(&format!(
            "Action=AssociateRouteTable&RouteTableId={edge}&GatewayId={nat}"
        )),
        "InvalidParameterValue"
    );
    w.ok(&format!(
        "Action=AssociateRouteTable&RouteTableId={edge}&GatewayId={vgw}"
    ));
    w.ok(&format!(
        "Action=DisassociateRouteTable&AssociationId={assoc}"
    ));
    assert!(
        w.ids(&format!(
            "Filter.1.Name=association.gateway-id&Filter.1.Value.1={igw}"
        ))
        .is_empty()
    );
}

#[test]
fn describe_filters_and_pagination() {
    let w = World::new();
    let (main, main_assoc) = w.main();
    let s1 = w.subnet("10.0.1.0/24");
    let rt1 = w.ok_first(
        &format!(
            "Action=CreateRouteTable&VpcId={}&TagSpecification.1.ResourceType=route-table&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=public",
            w.vpc
        ),
        "routeTableId",
    );
    let rt2 = w.table();
    let igw = w.fake("igw", 1, "{}");
    let nat = w.fake("nat", 2, "{}");
    let pcx = w.fake("pcx", 3, r#"{"state":"active"}"#);
    let tgw = w.fake("tgw", 4, "{}");
    let assoc = w.ok_first(
        &format!("Action=AssociateRouteTable&RouteTableId={rt1}&SubnetId={s1}"),
        "associationId",
    );
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rt1}&DestinationCidrBlock=0.0.0.0/0&GatewayId={igw}"
    ));
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rt2}&DestinationCidrBlock=0.0.0.0/0&NatGatewayId={nat}"
    ));
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rt2}&DestinationCidrBlock=172.16.0.0/12&VpcPeeringConnectionId={pcx}"
    ));
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={main}&DestinationCidrBlock=100.64.0.0/10&TransitGatewayId={tgw}"
    ));
    let f =
        |name: &str, value: &str| w.ids(&format!("Filter.1.Name={name}&Filter.1.Value.1={value}"));
    let mut everything = vec![main.clone(), rt1.clone(), rt2.clone()];
    everything.sort();
    assert_eq!(f("vpc-id", &w.vpc), everything);
    assert_eq!(f("route-table-id", &rt1), vec![rt1.clone()]);
    assert_eq!(f("association.main", "true"), vec![main.clone()]);
    let mut not_main = vec![rt1.clone(), rt2.clone()];
    not_main.sort();
    assert_eq!(f("association.main", "false"), not_main);
    assert_eq!(f("association.subnet-id", &s1), vec![rt1.clone()]);
    assert_eq!(
        f("association.route-table-association-id", &assoc),
        vec![rt1.clone()]
    );
    assert_eq!(
        f("association.route-table-association-id", &main_assoc),
        vec![main.clone()]
    );
    assert_eq!(f("association.route-table-id", &rt1), vec![rt1.clone()]);
    assert_eq!(f("route.destination-cidr-block", "0.0.0.0/0"), not_main);
    assert_eq!(f("route.gateway-id", &igw), vec![rt1.clone()]);
    assert_eq!(f("route.gateway-id", "local"), everything);
    assert_eq!(f("route.nat-gateway-id", &nat), vec![rt2.clone()]);
    assert_eq!(
        f("route.vpc-peering-connection-id", &pcx),
        vec![rt2.clone()]
    );
    assert_eq!(f("route.transit-gateway-id", "tgw-*"), vec![main.clone()]);
    assert_eq!(f("route.origin", "CreateRoute"), everything);
    assert_eq!(f("route.state", "active"), everything);
    assert_eq!(f("tag:Name", "pub*"), vec![rt1.clone()]);
    assert_eq!(f("owner-id", ACCOUNT), everything);
    // spec 12.1: filters AND; an unknown filter is refused.
    assert_eq!(
        w.ids(&format!(
            "Filter.1.Name=vpc-id&Filter.1.Value.1={}&Filter.2.Name=association.main&Filter.2.Value.1=true",
            w.vpc
        )),
        vec![main.clone()]
    );
    assert_eq!(
        w.code("Action=DescribeRouteTables&Filter.1.Name=not-a-filter&Filter.1.Value.1=x"),
        "InvalidParameterValue"
    );
    // spec 12.1: MaxResults and NextToken page through everything.
    for _ in 0..4 {
        w.table();
    }
    let page = w.ok("Action=DescribeRouteTables&MaxResults=5");
    let token = first(&page, "nextToken");
    assert!(!token.is_empty());
    let rest = w.ok(&format!(
        "Action=DescribeRouteTables&MaxResults=5&NextToken={token}"
    ));
    assert!(first(&rest, "nextToken").is_empty());
    assert_eq!(
        w.ids("MaxResults=5").len() + w.ids(&format!("MaxResults=5&NextToken={token}")).len(),
        7
    );
    assert_eq!(
        w.code("Action=DescribeRouteTables&MaxResults=4"),
        "InvalidParameterValue"
    );
}

#[test]
fn vpc_cidr_hooks_add_and_remove_local_routes() {
    let w = World::new();
    let (main, _) = w.main();
    let rt = w.table();
    // spec 1.1: a block associated with the VPC appears as a local route in
    // every table of the VPC, and leaves with it.
    transact(&w.ctx(), |tx| {
        route_table::vpc_cidr_added(tx, &w.vpc, "10.1.0.0/16")
    })
    .unwrap();
    for t in [&main, &rt] {
        assert!(
            w.routes(t)
                .contains(&route("10.1.0.0/16", "local", "active", "CreateRouteTable"))
        );
    }
    // Local routes of the new block cannot be deleted either.
    assert_eq!(
        w.code(&format!(
            "Action=DeleteRoute&RouteTableId={rt}&DestinationCidrBlock=10.1.0.0/16"
        )),
        "InvalidParameterValue"
    );
    transact(&w.ctx(), |tx| {
        route_table::vpc_cidr_removed(tx, &w.vpc, "10.1.0.0/16")
    })
    .unwrap();
    for t in [&main, &rt] {
        assert_eq!(w.routes(t).len(), 1);
    }
    // A static route on the block's range blocks the association.
    let igw = w.fake("igw", 1, "{}");
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rt}&DestinationCidrBlock=10.1.0.0/16&GatewayId={igw}"
    ));
    let err = transact(&w.ctx(), |tx| {
        route_table::vpc_cidr_added(tx, &w.vpc, "10.1.0.0/16")
    })
    .unwrap_err();
    assert_eq!(err.code, "InvalidParameterValue");
    let tables: Vec<RouteTable> = transact(&w.ctx(), |tx| tx.list::<RouteTable>()).unwrap();
    assert!(tables.iter().all(|t| t.routes.len() <= 2));
}

#[test]
fn accounts_do_not_see_each_other_s_tables() {
    let w = World::new();
    let rt = w.table();
    let other = Account::generate("b", Some("222222222222"));
    let ctx = Ctx {
        store: &w.store,
        account: &other,
        region: "us-east-1",
        request_id: "r",
        fleet: None,
    };
    let err = dispatch(
        &ctx,
        &Params::parse(
            format!("Action=DeleteRouteTable&RouteTableId={rt}").as_bytes(),
            "",
        ),
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidRouteTableID.NotFound");
}

// spec 12.1 (Idempotency): a token counts for 24 hours even if what it made
// was deleted since: the retry answers with the first call's table (AWS
// returns "the result of the original request") and makes none.
#[test]
fn client_token_of_a_deleted_table() {
    let w = World::new();
    let req = format!("Action=CreateRouteTable&VpcId={}&ClientToken=tok-1", w.vpc);
    let rt = w.ok_first(&req, "routeTableId");
    w.ok(&format!("Action=DeleteRouteTable&RouteTableId={rt}"));
    assert_eq!(w.ok_first(&req, "routeTableId"), rt);
    assert_eq!(w.ids("").len(), 1, "only the main table");
}
