//! Types shared by every openvpc component: resource IDs in AWS form and CIDR
//! arithmetic with AWS's validation rules. Pure values: no I/O, no storage.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cidr;
pub mod host;
pub mod id;
pub mod rule;

pub use cidr::{CidrError, Ipv4Cidr, canonical_ipv6_cidr};
pub use id::{IdError, ResourceId, ResourceKind};
