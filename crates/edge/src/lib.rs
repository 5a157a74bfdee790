//! The edge (DESIGN.md, "Edge"): the nodes that own a region's public
//! address space and translate 1:1 between public addresses and the private
//! addresses of instances (public IPs and Elastic IPs), stateless, so every
//! edge node can handle any packet.
//!
//! This crate is the sans-IO core: frames and packets in, rewritten bytes
//! and where they go out. No sockets, threads or clocks. The node's I/O
//! shell (its uplink and the underlay) and its registration with the
//! region come with it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "bench")]
pub mod bench;
pub mod translate;

pub use translate::{Edge, EdgeDrop, EdgeOutput, PublicMapping};
