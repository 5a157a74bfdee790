//! Types shared by every openvpc component: resource IDs in AWS form, CIDR
//! arithmetic with AWS's validation rules, the lifecycle states of stored
//! resources (`lifecycle`), and time (civil dates and the
//! formats AWS writes). Pure values: no I/O, no storage; the one exception is
//! `time::now_secs`, the project's single read of the system clock.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cidr;
pub mod edge;
pub mod flow_log;
pub mod host;
pub mod hyperplane;
pub mod id;
pub mod lifecycle;
pub mod node;
pub mod rule;
pub mod time;

pub use cidr::{CidrError, Ipv4Cidr, canonical_ipv6_cidr};
pub use id::{IdError, ResourceId, ResourceKind};
