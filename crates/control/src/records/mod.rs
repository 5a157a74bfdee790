//! The stored resource records: the shape each EC2 resource has in the
//! store, shared by the API actions (which read and write them) and the
//! fleet compiler (which turns them into what agents get).
//!
//! A module here owns the serde shape of its record kind and pure functions
//! over that data. It must not know the Query protocol, XML or request
//! parameters: the actions that answer requests implement `Resource` for
//! these types in `crate::api::actions`.

pub mod instance;
pub mod network_acl;
pub mod network_interface;
pub mod prefix_list;
pub mod route_table;
pub mod route_target;
pub mod security_group;
pub mod subnet;
pub mod vpc;
pub mod vpc_peering;

/// Tags as stored on every resource: (key, value) in the order given.
pub type Tags = Vec<(String, String)>;

/// A stored key and its value.
pub type RawEntry = (Vec<u8>, Vec<u8>);
