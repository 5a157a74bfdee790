//! The regional control plane: what users see of openvpc through the `aws`
//! CLI, boto3 and the tools built on them, and what hosts learn from it. It
//! never touches packets.
//!
//! - The Query API: `server` (HTTP, authentication, routing by service),
//!   `query`, `filter`, `xml` and `error` (the protocol's parameters,
//!   filters, responses and errors), `actions` (the EC2 resources, each a
//!   module over the `resource` framework), `elbv2` (the ELBv2 service on
//!   the same framework), `sts` (GetCallerIdentity), `account` (accounts and
//!   access keys), `moto_compat` (everything `--moto-compat` changes, and
//!   nothing else asks for that mode), `client` (a signed client for tests
//!   and tools).
//! - `records`: the stored shape of each EC2 resource record and pure
//!   reads of it (route-target liveness among them), shared by `actions`
//!   and `fleet`; no request handling.
//! - `fleet`: the host registry, placement, the incremental compiler, watch
//!   deltas, the mapping service and the agents' HTTP API.
//! - Signatures are checked by `openvpc-sigv4`; state lives in
//!   `openvpc-store` (both re-exported here under their old paths);
//!   lifecycle states and time come from `openvpc-model`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod account;
pub mod actions;
#[cfg(feature = "bench")]
pub mod bench;
pub mod client;
pub mod elbv2;
pub mod error;
pub mod filter;
pub mod fleet;
pub mod moto_compat;
pub mod query;
pub mod records;
pub mod server;
pub mod sts;
pub mod xml;

/// SigV4 lives in its own crate; the alias keeps `crate::sigv4::…` paths.
pub use openvpc_sigv4 as sigv4;
/// The revisioned store lives in its own crate; the alias keeps
/// `crate::store::…` paths inside this crate as they were.
pub use openvpc_store as store;

pub use error::ApiError;
