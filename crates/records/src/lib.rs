//! The stored resource records: the shape each EC2 and ELBv2 resource has
//! in the store, its typed lifecycle state (from `openvpc_model::lifecycle`),
//! and pure reads over it (route-target liveness among them). Shared by the
//! API actions (which read and write them), the fleet compiler (which turns
//! them into what agents get), and the edge and hyperplane nodes that will
//! read the same records.
//!
//! A crate of its own, not a part of `model`, because these are the store's
//! formats (serde attributes are the stored bytes) and depend on
//! `serde_json`; `model` stays the plain values every crate shares. A
//! component that needs a record depends on this crate, not on the control
//! plane.
//!
//! It must not know the Query protocol, XML, request parameters, the store
//! or any I/O: the actions that answer requests implement `Resource` for
//! these types in `openvpc_control::api::actions`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod address;
pub mod customer_gateway;
pub mod dhcp_options;
pub mod egress_only_internet_gateway;
pub mod elbv2;
pub mod flow_log;
pub mod instance;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod network_acl;
pub mod network_insights;
pub mod network_insights_analysis;
pub mod network_interface;
pub mod prefix_list;
pub mod region;
pub mod route_table;
pub mod route_target;
pub mod security_group;
pub mod subnet;
pub mod vpc;
pub mod vpc_endpoint;
pub mod vpc_peering;
pub mod vpn_connection;
pub mod vpn_gateway;

/// Tags as stored on every resource: (key, value) in the order given.
pub type Tags = Vec<(String, String)>;

/// A stored key and its value.
pub type RawEntry = (Vec<u8>, Vec<u8>);
