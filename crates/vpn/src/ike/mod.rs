//! IKEv2 (RFC 7296) for the tunnels' outside ends: [`message`] reads and
//! writes messages and payloads; [`crypto`] derives the keys and seals and
//! opens the encrypted (SK) payload.

pub mod crypto;
pub mod message;
pub mod proposal;
pub mod responder;
