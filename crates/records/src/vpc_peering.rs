//! A VPC peering connection as stored: the record under `pcx/{id}` (in each
//! account that takes part) and its two sides.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format); it must not know the Query protocol, XML or request
//! parameters, which live in `openvpc_control::api::actions::vpc_peering`.

use openvpc_model::lifecycle::VpcPeeringState;
use openvpc_model::time::format_time;
use serde::{Deserialize, Serialize};

use super::Tags;

/// spec 7.2, 13: a request not accepted within 168 h expires.
pub const EXPIRY_SECS: u64 = 168 * 3600;

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// One side's peering options (ModifyVpcPeeringConnectionOptions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringOptions {
    pub allow_dns_resolution_from_remote_vpc: bool,
    pub allow_egress_from_local_classic_link_to_remote_vpc: bool,
    pub allow_egress_from_local_vpc_to_remote_classic_link: bool,
}

/// One VPC of a peering, as it was when the request was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringSide {
    pub owner_id: String,
    pub vpc_id: String,
    pub region: String,
    /// The VPC's IPv4 blocks, primary first; empty when the VPC was not found.
    pub cidr_blocks: Vec<String>,
    pub ipv6_cidr_blocks: Vec<String>,
    pub options: PeeringOptions,
}

/// A peering connection as stored (in each account that takes part). No
/// top-level `vpc_id`: route_table would require it to be the table's VPC,
/// and a peering belongs to two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcPeering {
    pub id: String,
    pub requester: PeeringSide,
    pub accepter: PeeringSide,
    /// spec 7.1's status code; route_table reads it (only `active` carries
    /// traffic). `expired` is never stored: it is computed from `created_at`.
    pub state: VpcPeeringState,
    pub message: String,
    pub created_at: u64,
    /// When it reached an end state (failed, rejected, deleted).
    pub ended_at: Option<u64>,
    pub deleted_by: Option<String>,
    pub tags: Tags,
}

impl VpcPeering {
    /// The state at `now`: a pending request past its expiry is `expired`.
    pub fn at(mut self, now: u64) -> Self {
        let expires = self.created_at.saturating_add(EXPIRY_SECS);
        if self.state == VpcPeeringState::PendingAcceptance && now >= expires {
            self.state = VpcPeeringState::Expired;
            self.message = "Expired".into();
            self.ended_at = Some(expires);
        }
        self
    }

    pub fn same_account(&self) -> bool {
        self.requester.owner_id == self.accepter.owner_id
    }

    /// spec 7.1: how long an ended peering stays visible to `viewer`.
    pub fn visible_to(&self, viewer: &str, now: u64) -> bool {
        let Some(ended) = self.ended_at else {
            return true;
        };
        let short = self.same_account();
        let window = match self.state {
            VpcPeeringState::Failed => 2 * HOUR,
            VpcPeeringState::Expired => 2 * DAY,
            VpcPeeringState::Rejected if short || viewer != self.requester.owner_id => 2 * HOUR,
            VpcPeeringState::Rejected => 2 * DAY,
            VpcPeeringState::Deleted if short || self.deleted_by.as_deref() == Some(viewer) => {
                2 * HOUR
            }
            VpcPeeringState::Deleted => 2 * DAY,
            _ => return true,
        };
        now < ended.saturating_add(window)
    }

    /// A request or connection that still holds its VPC pair.
    pub fn live(&self) -> bool {
        matches!(
            self.state,
            VpcPeeringState::InitiatingRequest
                | VpcPeeringState::PendingAcceptance
                | VpcPeeringState::Provisioning
                | VpcPeeringState::Active
        )
    }

    pub fn involves(&self, vpc_id: &str) -> bool {
        self.requester.vpc_id == vpc_id || self.accepter.vpc_id == vpc_id
    }

    /// The account on the other side from `me` (itself for a same-account one).
    pub fn other_account(&self, me: &str) -> &str {
        if self.requester.owner_id == me {
            &self.accepter.owner_id
        } else {
            &self.requester.owner_id
        }
    }

    pub fn expiration_time(&self) -> Option<String> {
        (self.state == VpcPeeringState::PendingAcceptance)
            .then(|| format_time(self.created_at.saturating_add(EXPIRY_SECS)))
    }
}
