//! The VPC's DNS resolver ("AmazonProvidedDNS", spec 1.4), as a sans-IO core.
//!
//! A [`VpcResolver`] holds what one VPC's resolver knows ([`VpcDns`]: its
//! region and Amazon domain, the two DNS attributes, its private addresses
//! with their public ones, and extra names such as a load balancer's) plus
//! its state: a per-ENI packet limit, a small cache of upstream answers and
//! counters. It takes a query's bytes and returns an [`Outcome`]: the answer's
//! bytes, "forward this upstream", or a counted drop. It opens no socket,
//! starts no thread and reads no clock: the caller passes the time in
//! milliseconds, so tests and benches control it.
//!
//! The host's gateway layer (`openvpc_dataplane::resolver`, in the router)
//! takes the queries instances send to the resolver and answers with this;
//! its shell (the agent's worker) sends [`Outcome::Forward`] queries to the
//! region's upstream resolver and hands the reply to
//! [`VpcResolver::relay`], which caches it and gives it back the client's
//! id.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cache;
mod counters;
mod names;
mod ratelimit;
mod resolver;

pub use cache::AnswerCache;
pub use counters::{Counters, DropReason};
pub use names::{amazon_domain, public_name_suffix};
pub use ratelimit::{RESOLVER_PPS_PER_ENI, TokenBucket};
pub use resolver::{
    ConfigError, EniKey, Forward, LOCAL_TTL, Outcome, VpcDns, VpcResolver, set_message_id,
};
