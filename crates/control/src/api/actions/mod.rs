//! The EC2 actions: each takes the request's parameters and the caller's
//! account, reads and writes the store inside that account's key space, and
//! returns the XML body. Dispatch by `Action` lives here.

pub mod account_attributes;
pub mod address;
pub mod classic_link;
pub mod customer_gateway;
pub mod default_vpc;
pub mod dhcp_options;
pub mod egress_only_internet_gateway;
pub mod flow_log;
pub mod idempotency;
pub mod instance;
pub mod instance_status;
pub mod internet_gateway;
pub mod nat_gateway;
pub mod network_acl;
pub mod network_insights;
pub mod network_insights_analysis;
pub mod network_interface;
pub mod prefix_list;
pub mod resource;
pub mod route_table;
/// Route-target liveness lives with the records; the old path stays.
pub use crate::records::route_target;
pub mod security_group;
pub mod subnet;
pub mod subnet_cidr_reservation;
pub mod tags;
pub mod trace;
pub mod vpc;
pub mod vpc_endpoint;
pub mod vpc_peering;
pub mod vpn_connection;
pub mod vpn_gateway;

use crate::api::account::Account;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::store::{Store, StoreError};

/// Who is asking, where, and the store to act on.
pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    pub account: &'a Account,
    pub region: &'a str,
    pub request_id: &'a str,
    /// The compiled state the hosts run, for explaining packets (trace, the
    /// Reachability Analyzer); `None` where this server runs no fleet.
    pub fleet: Option<&'a crate::fleet::Fleet>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("account", &self.account.id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Every key prefix under which actions keep state: resources (`r/`, then
/// account, region, kind and ID, as [`Ctx::key`] builds them) and per-region
/// counters (`region/`), and the names `--moto-compat` records for other
/// services (`compat/`, see `moto_compat`), and which host each instance
/// was placed on (`placements/`, see `fleet::registry`). Accounts, access
/// keys and registered hosts (`hosts/`) live outside them. A module
/// that keeps state under a new prefix adds it here, so `--moto-compat`'s
/// reset clears it too.
pub const STATE_PREFIXES: &[&[u8]] = &[
    b"r/",
    b"region/",
    b"compat/",
    b"placements/",
    // CloudWatch Logs' groups, streams and events (see `api::logs::store`).
    b"logs/",
];

impl Ctx<'_> {
    /// The store key of a resource of this account and region.
    pub fn key(&self, kind: &str, id: &str) -> Vec<u8> {
        format!("r/{}/{}/{kind}/{id}", self.account.id, self.region).into_bytes()
    }

    /// The prefix under which every resource of `kind` of this account lives.
    pub fn prefix(&self, kind: &str) -> Vec<u8> {
        format!("r/{}/{}/{kind}/", self.account.id, self.region).into_bytes()
    }
}

/// A resource module's entry point: runs `action` if the module owns it.
pub type Handler = fn(&Ctx, &str, &Params) -> Option<Result<String, ApiError>>;

/// Every resource module, one line each.
const HANDLERS: &[Handler] = &[
    vpc::dispatch,
    classic_link::dispatch,
    default_vpc::dispatch,
    security_group::dispatch,
    subnet::dispatch,
    subnet_cidr_reservation::dispatch,
    route_table::dispatch,
    network_interface::dispatch,
    address::dispatch,
    account_attributes::dispatch,
    instance::dispatch,
    instance_status::dispatch,
    network_acl::dispatch,
    internet_gateway::dispatch,
    egress_only_internet_gateway::dispatch,
    customer_gateway::dispatch,
    vpn_gateway::dispatch,
    vpn_connection::dispatch,
    flow_log::dispatch,
    dhcp_options::dispatch,
    prefix_list::dispatch,
    vpc_endpoint::dispatch,
    nat_gateway::dispatch,
    vpc_peering::dispatch,
    network_insights::dispatch,
    network_insights_analysis::dispatch,
    trace::dispatch,
    tags::dispatch,
];

/// Runs the request's action.
pub fn dispatch(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let action = params.required("Action")?;
    HANDLERS
        .iter()
        .find_map(|handler| handler(ctx, action, params))
        .unwrap_or_else(|| Err(ApiError::invalid_action(action)))
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    ApiError::internal(format!("The store failed: {e}"))
}

/// Tags from `TagSpecification`s for `resource_type`; a specification for
/// another type is refused, as EC2 does.
pub(crate) fn tags_for(params: &Params, resource_type: &str) -> Result<resource::Tags, ApiError> {
    let mut tags = Vec::new();
    for (kind, t) in params.tag_specifications()? {
        if kind != resource_type {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "'{kind}' is not a valid taggable resource type for this operation; use '{resource_type}'"
                ),
            ));
        }
        tags.extend(t);
    }
    crate::api::query::check_tags(&tags)?;
    Ok(tags.into_iter().map(|t| (t.key, t.value)).collect())
}
