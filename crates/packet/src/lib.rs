//! Wire formats for the openvpc dataplane: zero-copy header views, builders,
//! checksums and flow keys.
//!
//! Every header has two faces, as in smoltcp. A **view** is a
//! [`zerocopy`] struct laid over the buffer (`Ipv4Header::view(buf)`), whose
//! accessors read fields in place and whose setters patch them; it is what the
//! fast path uses. A **repr** (`Ipv4Repr`) is a plain value with `parse`,
//! `header_len` and `emit`; it is what builders and tests use.
//!
//! Parsers check lengths once, up front, and return [`Error`] for anything
//! malformed: they never panic and never read past the buffer. This crate does
//! no I/O and keeps no state beyond the per-process flow-hash seed.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod arp;
#[cfg(feature = "bench")]
pub mod bench;
pub mod builder;
pub mod checksum;
mod error;
pub mod ethernet;
pub mod explain;
pub mod flow;
pub mod geneve;
pub mod gso;
pub mod icmp;
pub mod icmpv4;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
#[cfg(feature = "smoltcp")]
pub mod queue_device;
pub mod sample;
pub mod tcp;
pub mod udp;
pub mod vxlan;

pub use error::{Error, Layer};
pub use ethernet::MacAddr;
pub use flow::{FlowHasher, FlowKey};

/// Splits `buf` into a fixed-size header view and the bytes after it.
fn split_header<H>(buf: &[u8], layer: Layer) -> Result<(&H, &[u8]), Error>
where
    H: zerocopy::FromBytes + zerocopy::KnownLayout + zerocopy::Immutable + zerocopy::Unaligned,
{
    H::ref_from_prefix(buf).map_err(|_| Error::Truncated {
        layer,
        need: core::mem::size_of::<H>(),
        have: buf.len(),
    })
}

/// Mutable twin of [`split_header`], for in-place rewrites.
fn split_header_mut<H>(buf: &mut [u8], layer: Layer) -> Result<(&mut H, &mut [u8]), Error>
where
    H: zerocopy::FromBytes + zerocopy::IntoBytes + zerocopy::KnownLayout + zerocopy::Unaligned,
{
    let have = buf.len();
    H::mut_from_prefix(buf).map_err(|_| Error::Truncated {
        layer,
        need: core::mem::size_of::<H>(),
        have,
    })
}
