//! Flow log delivery, sans-IO (spec 8): what a flow log's destination
//! receives for the aggregated records the nodes send. `line` renders one
//! record in a flow log's format; `s3` names the object keys; `encode`
//! makes plain-text (gzip) and Parquet file bodies; `publisher` buffers one
//! S3 flow log's records and cuts them into files by time and size;
//! `cloudwatch` shapes CloudWatch Logs events. `window` is the nodes'
//! side: it sums the dataplane's counts into capture windows and closes
//! them into records.
//!
//! This crate reads no clock (time is an argument), opens no file or socket
//! and starts no thread: the server feeds it records and puts what it
//! returns. It decides nothing about which records a flow log admits
//! (`TrafficType`) nor whether a destination is reachable.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cloudwatch;
pub mod encode;
pub mod line;
pub mod publisher;
pub mod s3;
pub mod window;

pub use cloudwatch::{LogEvent, cloudwatch_events};
pub use encode::EncodeError;
pub use line::{Field, LineFormat};
pub use publisher::{Publisher, PublisherConfig, S3Object};
pub use s3::{FileFormat, S3Layout};
