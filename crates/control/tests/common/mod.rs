//! Helpers the action tests share: calling an action over a store without
//! HTTP (or signed, as the server sees a request), reading elements out of
//! the XML it returns, making the resources most tests start from, the
//! fleet's hosts and hyperplane nodes as the fleet tests start them, and
//! the agent API served over real HTTP.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openvpc_control::account::Account;
use openvpc_control::actions::{Ctx, default_vpc, dispatch};
use openvpc_control::fleet::nodes::{self, Role};
use openvpc_control::fleet::{AgentApi, Fleet, agent_token, registry, shards};
use openvpc_control::query::Params;
use openvpc_control::server::{ApiState, execute, router};
use openvpc_control::store::{MemoryStore, Store};
use openvpc_control::{ApiError, sigv4};
use openvpc_model::host::{HostRegistration, TOKEN_HEADER};
use openvpc_model::node::{NodeRegistration, TargetHealthReport};

pub fn call(store: &dyn Store, account: &Account, body: &str) -> Result<String, ApiError> {
    let ctx = Ctx {
        store,
        account,
        region: "us-east-1",
        request_id: "req-test",
        fleet: None,
    };
    dispatch(&ctx, &Params::parse(body.as_bytes(), ""))
}

/// Makes the region's default VPC for `a`, as the server does on an
/// account's first request.
pub fn ensure_default_vpc(store: &dyn Store, a: &Account) {
    let ctx = Ctx {
        store,
        account: a,
        region: "us-east-1",
        request_id: "req-test",
        fleet: None,
    };
    default_vpc::ensure(&ctx).unwrap();
}

/// Runs `body` through the server's request path, signed now with
/// `key`/`secret` and scoped to `service`.
pub fn signed_call(
    state: &ApiState,
    key: &str,
    secret: &str,
    service: &str,
    body: &str,
) -> Result<String, ApiError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut headers = vec![
        ("Host".to_owned(), "127.0.0.1".to_owned()),
        (
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded; charset=utf-8".to_owned(),
        ),
    ];
    let request = sigv4::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: body.as_bytes(),
    };
    let params = sigv4::SigningParams {
        access_key: key,
        secret_key: secret,
        region: "us-east-1",
        service,
        time_unix: now,
        content_sha256_header: false,
    };
    let signed = sigv4::sign(&request, &params).unwrap();
    headers.extend(signed);
    execute(
        state,
        "POST",
        "/",
        "",
        &headers,
        body.as_bytes(),
        "req-test",
    )
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
    subnet_in(store, a, vpc, cidr, "us-east-1a")
}

/// A new subnet of `vpc` with this (unencoded) CIDR in `zone`; its ID.
pub fn subnet_in(store: &dyn Store, a: &Account, vpc: &str, cidr: &str, zone: &str) -> String {
    first(
        &call(
            store,
            a,
            &format!(
                "Action=CreateSubnet&VpcId={vpc}&CidrBlock={}&AvailabilityZone={zone}",
                cidr.replace('/', "%2F")
            ),
        )
        .unwrap(),
        "subnetId",
    )
}

/// The hyperplane nodes the fleet tests start: (node ID, underlay address).
pub const HYPERPLANE_NODES: [(&str, &str); 3] = [
    ("hp1", "10.254.1.1"),
    ("hp2", "10.254.1.2"),
    ("hp3", "10.254.1.3"),
];

/// Registers host h1 in us-east-1a (underlay 192.0.2.1) and h2 in
/// us-east-1b (192.0.2.2), as the load balancer tests place targets.
pub fn register_two_zone_hosts(store: &dyn Store) {
    for (host, zone, ip) in [
        ("h1", "us-east-1a", "192.0.2.1"),
        ("h2", "us-east-1b", "192.0.2.2"),
    ] {
        registry::register(
            store,
            "us-east-1",
            &HostRegistration {
                host_id: host.into(),
                availability_zone: zone.into(),
                underlay_ip: ip.parse().unwrap(),
            },
            1,
        )
        .unwrap();
    }
}

/// Heartbeats of the hyperplane nodes `which` (ID, underlay address) at
/// `now_ms`, each serving `serving` and reporting `health`.
pub fn beat_hyperplane(
    store: &dyn Store,
    which: &[(&str, &str)],
    serving: &[String],
    health: &[TargetHealthReport],
    now_ms: u64,
) {
    for (id, ip) in which {
        nodes::register(
            store,
            Role::Hyperplane,
            "us-east-1",
            &NodeRegistration {
                node_id: (*id).into(),
                underlay_ip: ip.parse().unwrap(),
                serving: serving.to_vec(),
                target_health: health.to_vec(),
            },
            now_ms,
        )
        .unwrap();
    }
}

/// Lets the index see the store, then runs the shard keeper (shards and
/// lifecycles) once and lets the index see what it wrote.
pub fn keep(fleet: &Fleet) {
    fleet.catch_up().unwrap();
    shards::keep_once(fleet).unwrap();
    fleet.catch_up().unwrap();
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

/// The agent API served over real HTTP from a store, with the fleet index
/// following it; stops when dropped.
pub struct AgentServer {
    pub url: String,
    /// The store's agent token.
    pub token: String,
    _runtime: tokio::runtime::Runtime,
}

pub fn serve_agent_api(store: &Arc<MemoryStore>) -> AgentServer {
    let store = Arc::clone(store) as Arc<dyn Store>;
    let token = agent_token(store.as_ref()).unwrap();
    let fleet = Fleet::load(Arc::clone(&store)).unwrap();
    fleet.spawn_tailer().unwrap();
    let state = ApiState {
        store,
        moto_compat: None,
        agent: Some(AgentApi::new(fleet, token.clone(), "us-east-1")),
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(async move { axum::serve(listener, router(state)).await });
    AgentServer {
        url,
        token,
        _runtime: runtime,
    }
}

/// An HTTP client that answers 4xx and 5xx as responses, not errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, body) of a POST to the agent API.
pub fn post(s: &AgentServer, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut request = http().post(format!("{}{path}", s.url));
    if let Some(t) = token {
        request = request.header(TOKEN_HEADER, t);
    }
    let mut response = request.send(body.as_bytes()).unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

/// (status, body) of a GET from the agent API.
pub fn get(s: &AgentServer, path: &str, token: Option<&str>) -> (u16, String) {
    let mut request = http().get(format!("{}{path}", s.url));
    if let Some(t) = token {
        request = request.header(TOKEN_HEADER, t);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}
