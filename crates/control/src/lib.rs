//! The regional control plane: the EC2 Query protocol (parameters, filters,
//! XML responses and errors), authentication (signatures are checked by
//! `openvpc-sigv4`), accounts over the store (`openvpc-store`), and the
//! actions that create and describe VPC resources. This crate owns what users see
//! of openvpc through the `aws` CLI and boto3; it never touches packets.

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
pub mod server;
pub mod sts;
pub mod xml;

/// SigV4 lives in its own crate; the alias keeps `crate::sigv4::…` paths.
pub use openvpc_sigv4 as sigv4;
/// The revisioned store lives in its own crate; the alias keeps
/// `crate::store::…` paths inside this crate as they were.
pub use openvpc_store as store;

/// `moto_compat`'s earlier name (its account and reset), kept for callers.
pub use moto_compat as moto_api;

pub use error::ApiError;
