//! The gRPC client and messages of the part of etcd's v3 API that openvpc's
//! etcd store (`openvpc-store`'s `etcd` module) uses: KV's Range, Put,
//! DeleteRange, Txn and Compact, and Watch. Only types and stubs: the store
//! owns connections, retries and the mapping to its own trait.
//!
//! Why generated code is committed rather than built: the `etcd-client`
//! crate runs `protoc` in its build script, so every build of openvpc
//! needed a system `protoc` (`cargo run -- up` failed on a fresh machine
//! with only Rust). Vendoring a protoc binary through a crate would put a
//! prebuilt executable from the registry into every build and still run a
//! code generator per build; the API is stable (etcd keeps v3 wire
//! compatible), so generating once is simpler and builds faster.
//!
//! To change it: edit the trimmed protos in `proto/` (copy messages from
//! etcd's `api/etcdserverpb/rpc.proto`, keeping field numbers), then run
//! `cargo run --manifest-path crates/etcd-api/regenerate/Cargo.toml` with
//! `protoc` installed (`apt-get install protobuf-compiler`), and commit
//! `src/generated/`. `scripts/test` fails if any crate's build needs protoc.

// Generated code: its style is prost's and tonic's, not ours.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    missing_docs,
    rustdoc::all
)]
pub mod mvccpb {
    include!("generated/mvccpb.rs");
}

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_debug_implementations,
    missing_docs,
    rustdoc::all
)]
pub mod etcdserverpb {
    include!("generated/etcdserverpb.rs");
}
