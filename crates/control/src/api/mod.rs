//! The Query API: the EC2 and ELBv2 services as users reach them through
//! the `aws` CLI, boto3 and the tools built on them.
//!
//! - `server`: HTTP, authentication and routing by service.
//! - `query`, `filter`, `xml` and `error`: the protocol's parameters,
//!   filters, responses and errors.
//! - `actions`: the EC2 resources, each a module over the `resource`
//!   framework; `elbv2`: the ELBv2 service; `logs`: a minimal CloudWatch
//!   Logs (JSON protocol) for flow logs' log groups.
//! - `sts` (GetCallerIdentity), `account` (accounts and access keys),
//!   `client` (a signed client for tests and tools).
//! - `moto_compat`: everything `--moto-compat` changes; nothing else asks
//!   for that mode.
//! - `bench` (behind the `bench` feature): the API's latency figures.
//!
//! The API reads and writes `records` and calls into `fleet` (placement,
//! the registry's keys); the dependency never runs the other way.

pub mod account;
pub mod actions;
#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod elbv2;
pub mod error;
pub mod filter;
pub mod logs;
pub mod moto_compat;
pub mod query;
pub mod server;
pub mod sts;
pub mod xml;
