//! The regional control plane: the EC2 Query protocol (parameters, filters,
//! XML responses and errors), authentication, the store, and the actions
//! that create and describe VPC resources. This crate owns what users see
//! of openvpc through the `aws` CLI and boto3; it never touches packets.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod account;
pub mod actions;
pub mod client;
pub mod elbv2;
pub mod error;
pub mod filter;
pub mod fleet;
pub mod moto_api;
pub mod moto_foreign;
pub mod query;
pub mod server;
pub mod sigv4;
pub mod store;
pub mod sts;
pub mod xml;

pub use error::ApiError;
