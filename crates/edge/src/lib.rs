//! The edge (DESIGN.md, "Edge"): the nodes that own a region's public
//! address space and translate 1:1 between public addresses and the private
//! addresses of instances (public IPs and Elastic IPs), stateless, so every
//! edge node can handle any packet.
//!
//! [`translate`] is the sans-IO core: frames and packets in, rewritten
//! bytes and where they go out; no sockets, threads or clocks. Around it a
//! thin shell makes an edge node: [`io`] (the Geneve socket, the uplink TUN
//! and the worker thread that owns the core), [`control`] (registration,
//! heartbeat and the watch of the edge API), [`bgp`] (the announcement of
//! the public pool to the upstream router), [`metrics`] (`/metrics`) and
//! [`node`] (starting and stopping it all, the state directory).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "bench")]
pub mod bench;
pub mod bgp;
pub mod control;
pub mod io;
pub mod metrics;
pub mod node;
pub mod translate;
pub mod vgw;

pub use node::{EdgeNode, EdgeNodeConfig, EdgeNodeError, EdgeNodeHandle, NodeStatus};
pub use translate::{Edge, EdgeDrop, EdgeOutput, PublicMapping, TableUpdate};
