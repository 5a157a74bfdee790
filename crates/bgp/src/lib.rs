//! A small BGP-4 speaker: the edge nodes announce the region's public pool
//! to the outside router with it, and the VPN gateway reuses it to learn the
//! customer gateway's routes.
//!
//! Three layers, each usable alone:
//! - [`wire`]: the message codec (RFC 4271, 4-octet AS numbers from RFC 6793,
//!   capabilities from RFC 5492 and IPv4 unicast from RFC 4760). Decoding
//!   never panics; every error names the NOTIFICATION it must be answered
//!   with.
//! - [`session`]: one peer's finite state machine, sans-IO: bytes in, bytes
//!   and events out, time passed in as an argument. It owns the negotiation,
//!   the hold and keepalive timers, what we announce (Adj-RIB-Out) and what
//!   we learned (Adj-RIB-In, with an optional prefix limit).
//! - [`speaker`]: a thread per peer that drives a session over a blocking
//!   TCP connection it gets from the caller (so the caller can make the
//!   socket inside a network namespace), with reconnect and backoff.
//!
//! It does not choose best paths, install routes, or listen for peers: the
//! caller decides what a learned route means.
//!
//! An edge node announcing the public pool to the outside router:
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use openvpc_bgp::{Config, ExportAttrs, Speaker, SpeakerConfig, State};
//!
//! let me = Ipv4Addr::new(192, 0, 2, 2);
//! let mut session = Config::new(65010, 65000, me); // local AS, peer AS, router id
//! session.hold_time = 3;
//! let config = SpeakerConfig::new(session, Ipv4Addr::new(192, 0, 2, 1));
//! // The closure may enter a network namespace before connecting.
//! let speaker = Speaker::spawn(config, openvpc_bgp::speaker::connect_direct)?;
//! speaker.set_announced(vec!["203.0.113.0/24".parse()?], me, ExportAttrs::default());
//! let up = speaker.status().state == State::Established;
//! speaker.stop(); // Cease, then close
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod session;
pub mod speaker;
pub mod wire;

pub use session::{Config, DownReason, Event, ExportAttrs, Route, Session, SessionError, State};
pub use speaker::{SpawnError, Speaker, SpeakerConfig, Status};
pub use wire::{DecodeError, Ipv4Prefix, Message, Notification, Origin};
