//! Helpers the action tests share: calling an action over a store without
//! HTTP, reading elements out of the XML it returns, and making the
//! resources most tests start from.

#![allow(clippy::unwrap_used, dead_code)]

use openvpc_control::ApiError;
use openvpc_control::account::Account;
use openvpc_control::actions::{Ctx, dispatch};
use openvpc_control::query::Params;
use openvpc_control::store::{MemoryStore, Store};

pub fn call(store: &dyn Store, account: &Account, body: &str) -> Result<String, ApiError> {
    let ctx = Ctx {
        store,
        account,
        region: "us-east-1",
        request_id: "req-test",
    };
    dispatch(&ctx, &Params::parse(body.as_bytes(), ""))
}

/// The error code of a call that must fail.
pub fn code(store: &dyn Store, account: &Account, body: &str) -> String {
    match call(store, account, body) {
        Ok(xml) => panic!("{body} succeeded: {xml}"),
        Err(e) => e.code.into_owned(),
    }
}

/// The text of every `<name>` element, in order.
pub fn all(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.split(&open)
        .skip(1)
        .filter_map(|s| s.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// The text of the first `<name>` element, or "" when there is none.
pub fn first(xml: &str, name: &str) -> String {
    all(xml, name).into_iter().next().unwrap_or_default()
}

pub fn account() -> Account {
    Account::generate("a", Some("111111111111"))
}

/// A new VPC with `10.0.0.0/16`; its ID.
pub fn vpc(store: &dyn Store, a: &Account) -> String {
    vpc_with(store, a, "10.0.0.0/16")
}

/// A new VPC with this (unencoded) CIDR; its ID.
pub fn vpc_with(store: &dyn Store, a: &Account, cidr: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=CreateVpc&CidrBlock={}", cidr.replace('/', "%2F")),
        )
        .unwrap(),
        "vpcId",
    )
}

/// A new security group named `name` in `vpc`; its ID.
pub fn security_group(store: &dyn Store, a: &Account, vpc: &str, name: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=CreateSecurityGroup&GroupName={name}&GroupDescription=d&VpcId={vpc}"),
        )
        .unwrap(),
        "groupId",
    )
}

/// The ID of `vpc`'s main route table.
pub fn main_route_table(store: &dyn Store, a: &Account, vpc: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!(
                "Action=DescribeRouteTables&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}&Filter.2.Name=association.main&Filter.2.Value.1=true"
            ),
        )
        .unwrap(),
        "routeTableId",
    )
}

/// A new IPv4 customer-managed prefix list with `max` entries at most and
/// the (unencoded) CIDRs given; its ID.
pub fn prefix_list(store: &dyn Store, a: &Account, max: u32, cidrs: &[&str]) -> String {
    let entries: String = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| format!("&Entry.{}.Cidr={}", i + 1, c.replace('/', "%2F")))
        .collect();
    first(
        &call(
            store,
            a,
            &format!(
                "Action=CreateManagedPrefixList&PrefixListName=corp&MaxEntries={max}&AddressFamily=IPv4{entries}"
            ),
        )
        .unwrap(),
        "prefixListId",
    )
}

/// A new subnet of `vpc` with this (unencoded) CIDR in `us-east-1a`; its ID.
pub fn subnet(store: &dyn Store, a: &Account, vpc: &str, cidr: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!(
                "Action=CreateSubnet&VpcId={vpc}&CidrBlock={}&AvailabilityZone=us-east-1a",
                cidr.replace('/', "%2F")
            ),
        )
        .unwrap(),
        "subnetId",
    )
}

/// A new internet gateway attached to `vpc`; its ID.
pub fn attached_igw(store: &dyn Store, a: &Account, vpc: &str) -> String {
    let igw = first(
        &call(store, a, "Action=CreateInternetGateway").unwrap(),
        "internetGatewayId",
    );
    call(
        store,
        a,
        &format!("Action=AttachInternetGateway&InternetGatewayId={igw}&VpcId={vpc}"),
    )
    .unwrap();
    igw
}

/// A new Elastic IP; its allocation ID.
pub fn eip(store: &dyn Store, a: &Account) -> String {
    first(
        &call(store, a, "Action=AllocateAddress&Domain=vpc").unwrap(),
        "allocationId",
    )
}

/// Rewrites fields of a stored record, as time passing would (tests of
/// expiry and visibility windows).
pub fn edit_record(
    store: &dyn Store,
    a: &Account,
    segment: &str,
    id: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) {
    let key = format!("r/{}/us-east-1/{segment}/{id}", a.id);
    let kv = store.get(key.as_bytes()).unwrap().unwrap();
    let mut value: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    edit(&mut value);
    store
        .put(key.as_bytes(), &serde_json::to_vec(&value).unwrap())
        .unwrap();
}

/// A store with one account, a VPC (10.0.0.0/16) and a subnet
/// (10.0.1.0/24): what the ENI, address and instance tests start from.
pub struct Env {
    pub store: MemoryStore,
    pub a: Account,
    pub vpc: String,
    pub subnet: String,
}

impl Env {
    pub fn new() -> Env {
        let store = MemoryStore::new();
        let a = Account::generate("a", Some("111111111111"));
        let vpc = first(
            &call(&store, &a, "Action=CreateVpc&CidrBlock=10.0.0.0%2F16").unwrap(),
            "vpcId",
        );
        let subnet = first(
            &call(
                &store,
                &a,
                &format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.0.1.0%2F24"),
            )
            .unwrap(),
            "subnetId",
        );
        Env {
            store,
            a,
            vpc,
            subnet,
        }
    }

    pub fn ok(&self, body: &str) -> String {
        call(&self.store, &self.a, body).unwrap()
    }

    pub fn err(&self, body: &str) -> String {
        code(&self.store, &self.a, body)
    }

    pub fn group(&self, name: &str) -> String {
        first(
            &self.ok(&format!(
                "Action=CreateSecurityGroup&GroupName={name}&GroupDescription=d&VpcId={}",
                self.vpc
            )),
            "groupId",
        )
    }

    pub fn eni(&self, extra: &str) -> String {
        first(
            &self.ok(&format!(
                "Action=CreateNetworkInterface&SubnetId={}{extra}",
                self.subnet
            )),
            "networkInterfaceId",
        )
    }

    pub fn available(&self) -> String {
        first(
            &self.ok(&format!(
                "Action=DescribeSubnets&SubnetId.1={}",
                self.subnet
            )),
            "availableIpAddressCount",
        )
    }
}
