//! Site-to-Site VPN (issue 19, spec 10): the virtual private gateway's
//! tunnels, as sans-IO cores (no sockets, threads or clocks: time is an
//! argument). [`esp`] seals and opens packets for one tunnel's SA pair,
//! with [`replay`]'s anti-replay window; [`natt`] is ESP and IKE over UDP
//! 4500 (RFC 3948); [`ike`] is the IKEv2 responder; [`tunnel`] puts them
//! together on whole IP packets, as an edge's uplink carries them (with
//! [`fragments`] putting the customer gateway's fragments together);
//! [`inside`] is our BGP endpoint on a tunnel's inside address, over the
//! tunnel's inner packets.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cipher;
pub mod esp;
pub mod fragments;
pub mod ike;
pub mod inside;
pub mod natt;
pub mod replay;
pub mod tunnel;
