//! One module per subcommand.

pub mod alloc_counter;
pub mod bench;
pub mod bench_api;
pub mod decode;
pub mod server;
