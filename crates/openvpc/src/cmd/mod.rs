//! One module per subcommand.

pub mod agent;
pub mod bench;
pub mod bench_lab;
pub mod decode;
pub mod edge;
pub mod exec;
pub mod hyperplane;
pub mod lab;
pub mod metrics_addr;
pub mod server;
pub mod trace;
pub mod up;
