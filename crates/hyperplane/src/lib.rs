//! The Hyperplane (DESIGN.md, "Hyperplane"): the fleet of ordinary nodes
//! that make the region's stateful decisions — NAT gateways first, network
//! load balancers next — share flow state with a buddy node, and survive the
//! loss of a node.
//!
//! The sans-IO core (no sockets, threads or clocks: time is an argument):
//! [`shard`] gives each gateway its shuffle shard of nodes, [`maglev`]
//! picks the node inside a shard for a flow, [`nat`] translates and keeps
//! the flows, [`serve`] runs a node's gateways and speaks [`wire`] with the
//! other nodes. For network load balancers (issue 17, not yet served by the
//! node): [`nlb`] chooses and keeps each flow's target, [`health`] runs the
//! targets' health-check state machines. The thin I/O shell: [`io`] (sockets), [`node`] (the
//! region's API, status, readiness) and [`metrics`] (`/metrics`).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub use node::{HyperplaneNode, HyperplaneNodeConfig, HyperplaneNodeHandle};

#[cfg(feature = "bench")]
pub mod bench;
pub mod flow_counts;
pub mod flow_slab;
pub use openvpc_dataplane::maglev;
pub mod health;
pub mod io;
pub mod metrics;
pub mod nat;
pub mod nlb;
pub mod node;
pub mod probe;
pub mod serve;
pub mod shard;
pub mod wire;
