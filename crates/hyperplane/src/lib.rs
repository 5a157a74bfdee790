//! The Hyperplane (DESIGN.md, "Hyperplane"): the fleet of ordinary nodes
//! that make the region's stateful decisions — NAT gateways first, network
//! load balancers next — share flow state with a buddy node, and survive the
//! loss of a node.
//!
//! This crate is the sans-IO core: no sockets, threads or clocks (time is an
//! argument). [`shard`] gives each gateway its shuffle shard of nodes,
//! [`maglev`] picks the node inside a shard for a flow, [`nat`] translates
//! and keeps the flows. The node's I/O shell and its registration with the
//! region come with it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "bench")]
pub mod bench;
pub mod maglev;
pub mod nat;
pub mod shard;
