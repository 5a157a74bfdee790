//! The sans-IO virtual router: per-host ENIs, the policy layers (gateway,
//! security groups, network ACLs, routes), connection tracking, the compiled
//! flow table, flow-log counters and drop reasons.
//!
//! No sockets, threads or clocks: frames come in as byte buffers, time as an
//! argument (milliseconds on the caller's monotonic clock), and what to do
//! with each frame goes out as a value. The agent owns the I/O.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "bench")]
pub mod bench;
pub mod buf;
pub mod conntrack;
pub mod drop;
pub mod eni;
pub mod explain;
pub mod fabric;
pub mod flow_table;
pub mod flowlog;
pub mod gateway;
pub mod install;
pub mod layer;
pub mod maglev;
pub mod mapping;
pub mod policy;
pub mod resolver;
pub mod route;
pub mod router;
pub mod transform;
pub mod workload;

pub use buf::PacketBuf;
pub use drop::DropReason;
pub use router::{EniIndex, Output, Router, RouterConfig};
