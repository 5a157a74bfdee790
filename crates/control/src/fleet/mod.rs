//! The control plane's side of the hosts (DESIGN.md "Control plane" and
//! "Mapping service"): the host registry and instance placement
//! ([`registry`]), the compiler that turns resources into the state of each
//! ENI a host runs ([`compile`]), the incremental in-memory index that keeps
//! that state current from the store's change log and serves watch deltas and
//! mapping lookups ([`index`]), the agents' shared token ([`token`]), what
//! hosts report about their instances' setup ([`health`]), the agent API
//! over HTTP ([`http`]), the hyperplane's shards ([`shards`]) and the
//! lifecycles they drive ([`nat_lifecycle`], [`lb_lifecycle`]), and what
//! network load balancers become for nodes and hosts ([`lb`]), and the
//! delivery of the flow-log records nodes send ([`flow_log_delivery`]).
//!
//! It reads resource records but never writes them: the actions own them.
//! It knows nothing of packets; the agent turns what it serves into router
//! configuration.

pub mod compile;
pub mod flow_log_delivery;
pub mod health;
pub mod http;
pub mod index;
pub mod lb;
pub mod lb_lifecycle;
pub mod nat_lifecycle;
pub mod nodes;
pub mod registry;
pub mod shards;
pub mod token;
pub mod vpn;

use std::path::Path;
use std::sync::Arc;

pub use flow_log_delivery::DeliveryConfig;
pub use http::AgentApi;
pub use index::Fleet;
pub use token::agent_token;

use crate::store::{Store, StoreError};

/// Why the fleet machinery failed. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "writing the agent token file {path}: {source}; check the data directory's permissions"
    )]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the stored agent token is unreadable ({0}); delete the key cluster/agent-token and restart every server"
    )]
    BadToken(String),
    #[error(
        "starting the fleet tailer thread failed ({0}); the machine may be out of threads or memory"
    )]
    Thread(std::io::Error),
}

/// Everything a server needs to serve the agent API: the shared token (also
/// written to `{data_dir}/agent-token`, mode 0600), the fleet index loaded
/// from the store, and a background thread keeping that index current.
/// `region` is the one agent requests act in when they name none.
pub fn start(store: Arc<dyn Store>, region: &str, data_dir: &Path) -> Result<AgentApi, FleetError> {
    start_with(store, region, data_dir, DeliveryConfig::default())
}

/// [`start`] with flow-log files published as `delivery` says.
pub fn start_with(
    store: Arc<dyn Store>,
    region: &str,
    data_dir: &Path,
    delivery: DeliveryConfig,
) -> Result<AgentApi, FleetError> {
    let token = agent_token(store.as_ref())?;
    token::write_token_file(data_dir, &token)?;
    let fleet = Fleet::load(store)?;
    fleet.spawn_tailer()?;
    nodes::spawn_sweeper(&fleet)?;
    shards::spawn_keeper(&fleet)?;
    let delivery = Arc::new(flow_log_delivery::Delivery::new(
        Arc::clone(&fleet),
        data_dir,
        region,
        delivery,
    ));
    flow_log_delivery::spawn_publisher(&delivery)?;
    Ok(AgentApi::new(fleet, token, region).with_delivery(delivery))
}
