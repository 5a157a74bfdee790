//! The regional control plane: what users see of openvpc through the `aws`
//! CLI, boto3 and the tools built on them, and what hosts learn from it. It
//! never touches packets. Two top-level modules, kept apart so that each
//! can become its own crate later (the split is modules for now):
//!
//! - `api`: the EC2 and ELBv2 Query services (HTTP server, authentication,
//!   the protocol's parameters, filters, XML and errors, the actions, STS,
//!   accounts, moto compatibility and a signed client). Its modules are
//!   re-exported at the crate root under their old paths
//!   (`openvpc_control::actions`, `::server`, …).
//! - `fleet`: the host registry, placement, the incremental compiler, watch
//!   deltas, the mapping service and the agents' HTTP API. It must not
//!   depend on `api`'s request handling: the API reads the store for a
//!   launch and hands `fleet` the hosts to place on.
//! - `trace`: explains a packet over the fleet's compiled state with the
//!   dataplane's own layers (`openvpc trace`, the Reachability Analyzer).
//! - Signatures are checked by `openvpc-sigv4`; state lives in
//!   `openvpc-store`; the stored records' shapes and route-target liveness
//!   are `openvpc-records`, shared by `api` and `fleet` (all three
//!   re-exported here as `sigv4`, `store` and `records`);
//!   lifecycle states and time come from `openvpc-model`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod fleet;
pub mod trace;

#[cfg(feature = "bench")]
pub use api::bench;
/// The API's modules under the paths they had before the `api` split, so
/// tests, the binary and other crates keep their imports.
pub use api::{
    account, actions, client, elbv2, error, filter, moto_compat, query, server, sts, xml,
};

/// The stored records live in their own crate, shared with the nodes that
/// read them; the alias keeps `crate::records::…` paths.
pub use openvpc_records as records;
/// SigV4 lives in its own crate; the alias keeps `crate::sigv4::…` paths.
pub use openvpc_sigv4 as sigv4;
/// The revisioned store lives in its own crate; the alias keeps
/// `crate::store::…` paths inside this crate as they were.
pub use openvpc_store as store;

pub use api::error::ApiError;
