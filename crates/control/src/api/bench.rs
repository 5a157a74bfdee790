//! `openvpc bench api`: the EC2 API's latency through HTTP and SigV4 on a
//! full store. A server runs in this process on a fresh redb store in a
//! temporary directory; the store is filled through the actions (many
//! accounts with their VPCs, subnets and rules), then one account's calls
//! are timed one at a time from a signing client over loopback.
//!
//! It owns the measuring and the wording of the figures; the binary only
//! turns its arguments into [`run`]'s and prints [`ApiFigures`]. Behind the
//! `bench` feature: no server or tool other than `openvpc bench` needs it.

use std::sync::Arc;
use std::time::Instant;

use crate::api::account::{self, Account};
use crate::api::actions::{Ctx, dispatch};
use crate::api::client::{Client, ClientError};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::server::{ApiState, serve};
use crate::store::{RedbStore, Store, StoreError};

/// Why a measurement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{call}: {error}")]
    Action { call: String, error: ApiError },
    #[error("no <{tag}> in the answer: {xml}")]
    NoTag { tag: String, xml: String },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the API server stopped: {0}")]
    Server(String),
    #[error("no account was created")]
    NoAccount,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// What `openvpc bench api` reports: p50 and p99 of each action, in
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ApiFigures {
    /// VPCs, subnets and rules each in the store while measuring.
    pub objects_each: usize,
    pub describe_vpcs_filtered: (f64, f64),
    pub create_subnet: (f64, f64),
    pub authorize_sg_ingress: (f64, f64),
}

impl ApiFigures {
    /// The figures as one JSON object.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "objects_each": self.objects_each,
            "describe_vpcs_filtered_p50_ms": self.describe_vpcs_filtered.0,
            "describe_vpcs_filtered_p99_ms": self.describe_vpcs_filtered.1,
            "create_subnet_p50_ms": self.create_subnet.0,
            "create_subnet_p99_ms": self.create_subnet.1,
            "authorize_sg_ingress_p50_ms": self.authorize_sg_ingress.0,
            "authorize_sg_ingress_p99_ms": self.authorize_sg_ingress.1,
        })
    }

    /// The figures as a table, one line each after the store's size.
    pub fn table(&self) -> String {
        let stored = self.objects_each;
        let mut out =
            format!("store: {stored} VPCs, {stored} subnets, {stored} SG rules; goal p99 < 5 ms\n");
        for (name, (p50, p99)) in [
            ("DescribeVpcs (filtered)", self.describe_vpcs_filtered),
            ("CreateSubnet", self.create_subnet),
            ("AuthorizeSecurityGroupIngress", self.authorize_sg_ingress),
        ] {
            out.push_str(&format!(
                "{name:<32} p50 {p50:>7.2} ms   p99 {p99:>7.2} ms\n"
            ));
        }
        out
    }
}

const REGION: &str = "us-east-1";
/// spec 13: each account holds at most 5 VPCs, so the store's VPCs come
/// from many accounts, as they would in a region.
const VPCS_PER_ACCOUNT: usize = 5;

/// The first `<tag>` value of an XML body.
fn first(xml: &str, tag: &str) -> Result<String, BenchError> {
    xml.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|rest| rest.split(&format!("</{tag}>")).next())
        .map(str::to_owned)
        .ok_or_else(|| BenchError::NoTag {
            tag: tag.to_owned(),
            xml: xml.to_owned(),
        })
}

fn call(store: &dyn Store, account: &Account, body: &str) -> Result<String, BenchError> {
    let ctx = Ctx {
        store,
        account,
        region: REGION,
        request_id: "bench",
        fleet: None,
    };
    dispatch(&ctx, &Params::parse(body.as_bytes(), "")).map_err(|error| BenchError::Action {
        call: body.to_owned(),
        error,
    })
}

/// One account's 5 VPCs, a subnet in each and a rule on each default group.
fn fill_account(store: &dyn Store, account: &Account) -> Result<Vec<String>, BenchError> {
    let mut vpcs = Vec::new();
    for v in 0..VPCS_PER_ACCOUNT {
        let xml = call(
            store,
            account,
            &format!("Action=CreateVpc&CidrBlock=10.{v}.0.0%2F16"),
        )?;
        let vpc = first(&xml, "vpcId")?;
        call(
            store,
            account,
            &format!("Action=CreateSubnet&VpcId={vpc}&CidrBlock=10.{v}.0.0%2F24"),
        )?;
        let groups = call(
            store,
            account,
            &format!("Action=DescribeSecurityGroups&Filter.1.Name=vpc-id&Filter.1.Value.1={vpc}"),
        )?;
        let group = first(&groups, "groupId")?;
        call(
            store,
            account,
            &format!(
                "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0"
            ),
        )?;
        vpcs.push(vpc);
    }
    Ok(vpcs)
}

/// p50 and p99 of `samples` calls, in milliseconds.
fn latencies(
    samples: usize,
    mut op: impl FnMut(usize) -> Result<(), BenchError>,
) -> Result<(f64, f64), BenchError> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples {
        let start = Instant::now();
        op(i)?;
        times.push(start.elapsed());
    }
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
        times[i].as_secs_f64() * 1e3
    };
    Ok((at(0.50), at(0.99)))
}

/// Fills a fresh store with `objects` VPCs, subnets and rules each, then
/// times `samples` calls per action; `progress` hears how the filling goes.
pub fn run(
    objects: usize,
    samples: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<ApiFigures, BenchError> {
    let dir = std::env::temp_dir().join(format!("openvpc-bench-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    let result = measure(&dir, objects, samples, progress);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(
    dir: &std::path::Path,
    objects: usize,
    samples: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<ApiFigures, BenchError> {
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(&dir.join("store.redb"))?);
    let accounts = objects.div_ceil(VPCS_PER_ACCOUNT).max(1);
    let start = Instant::now();
    let mut me = None;
    for i in 0..accounts {
        let account = Account::generate(&format!("bench{i}"), None);
        account::create(store.as_ref(), &account).map_err(|error| BenchError::Action {
            call: format!("creating account bench{i}"),
            error,
        })?;
        let vpcs = fill_account(store.as_ref(), &account)?;
        if i == 0 {
            me = Some((account, vpcs));
        }
        if (i + 1) % 200 == 0 {
            progress(&format!(
                "filling the store: {} of {} VPCs, subnets and rules each ({:.0} s)",
                (i + 1) * VPCS_PER_ACCOUNT,
                accounts * VPCS_PER_ACCOUNT,
                start.elapsed().as_secs_f64()
            ));
        }
    }
    let (me, vpcs) = me.ok_or(BenchError::NoAccount)?;

    let runtime = tokio::runtime::Runtime::new().map_err(io("starting the async runtime"))?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(io("listening on loopback"))?;
    let endpoint = format!(
        "http://{}",
        listener.local_addr().map_err(io("listening on loopback"))?
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(
        listener,
        ApiState {
            store,
            moto_compat: None,
            agent: None,
        },
        async {
            let _ = stopped.await;
        },
    ));
    let client = Client::new(&endpoint, &me.access_key_id, &me.secret_access_key, REGION);
    progress(&format!(
        "measuring {samples} calls per action through {endpoint}..."
    ));

    let describe = latencies(samples, |i| {
        let cidr = format!("10.{}.0.0/16", i % VPCS_PER_ACCOUNT);
        client.call(
            "DescribeVpcs",
            &[("Filter.1.Name", "cidr-block"), ("Filter.1.Value.1", &cidr)],
        )?;
        Ok(())
    })?;
    // spec 13: 200 subnets per VPC, one of which the fill made.
    let subnet_samples = samples.min(vpcs.len() * 199);
    let create_subnet = latencies(subnet_samples, |i| {
        let vpc = &vpcs[i % vpcs.len()];
        let cidr = format!("10.{}.{}.0/24", i % vpcs.len(), 1 + i / vpcs.len());
        client.call("CreateSubnet", &[("VpcId", vpc), ("CidrBlock", &cidr)])?;
        Ok(())
    })?;
    // spec 3.3: 60 inbound IPv4 rules per group, so a new group every 60.
    let mut group = String::new();
    let authorize = latencies(samples, |i| {
        if i % 60 == 0 {
            let xml = client.call(
                "CreateSecurityGroup",
                &[
                    ("VpcId", &vpcs[0]),
                    ("GroupName", &format!("bench{i}")),
                    ("GroupDescription", "bench"),
                ],
            )?;
            group = first(&xml, "groupId")?;
        }
        let port = (1000 + i % 60).to_string();
        client.call(
            "AuthorizeSecurityGroupIngress",
            &[
                ("GroupId", &group),
                ("IpPermissions.1.IpProtocol", "tcp"),
                ("IpPermissions.1.FromPort", &port),
                ("IpPermissions.1.ToPort", &port),
                ("IpPermissions.1.IpRanges.1.CidrIp", "192.0.2.0/24"),
            ],
        )?;
        Ok(())
    })?;
    let _ = stop.send(());
    runtime
        .block_on(server)
        .map_err(|e| BenchError::Server(e.to_string()))?
        .map_err(|e| BenchError::Server(e.to_string()))?;

    Ok(ApiFigures {
        objects_each: accounts * VPCS_PER_ACCOUNT,
        describe_vpcs_filtered: describe,
        create_subnet,
        authorize_sg_ingress: authorize,
    })
}
