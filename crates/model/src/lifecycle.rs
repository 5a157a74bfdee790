//! The lifecycle states of every stored resource kind that has one, as enums.
//!
//! Why here, in `model`: these states are read by more than the API actions
//! that write them. The fleet compiler decides from them whether a route
//! target carries traffic, and the edge and hyperplane will read the same
//! records. A state spelled as a string in each reader lets a rename silently
//! flip a route between `active` and `blackhole`; one enum per kind, shared
//! by every reader, makes that a compile error instead.
//!
//! Each enum (de)serialises as AWS's exact spelling, which is also what the
//! stored records already hold, so records written before these types keep
//! loading unchanged. `as_str` (and `Display`) give the same spelling for XML
//! and filters. A value outside the enum fails to parse: a reader must treat
//! it as an error, never guess.

use serde::{Deserialize, Serialize};

/// One enum: its variants with their AWS spellings, `as_str`, `Display`.
macro_rules! lifecycle {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every state, in AWS's documented order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// AWS's spelling, as the API shows it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

lifecycle! {
    /// A VPC's state (VpcState).
    VpcState {
        Pending = "pending",
        Available = "available",
    }
}

lifecycle! {
    /// A subnet's state (SubnetState).
    SubnetState {
        Pending = "pending",
        Available = "available",
    }
}

lifecycle! {
    /// The state of a CIDR block's association with a VPC or subnet
    /// (VpcCidrBlockStateCode, SubnetCidrBlockStateCode: the same values).
    CidrBlockState {
        Associating = "associating",
        Associated = "associated",
        Disassociating = "disassociating",
        Disassociated = "disassociated",
        Failing = "failing",
        Failed = "failed",
    }
}

lifecycle! {
    /// A NAT gateway's state (NatGatewayState).
    NatGatewayState {
        Pending = "pending",
        Failed = "failed",
        Available = "available",
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

lifecycle! {
    /// A load balancer's state (LoadBalancerStateEnum): `provisioning` until
    /// a node of its shard serves it, then `active`; `failed` with a reason
    /// when no node can.
    LoadBalancerState {
        Active = "active",
        Provisioning = "provisioning",
        ActiveImpaired = "active_impaired",
        Failed = "failed",
    }
}

lifecycle! {
    /// A target's health state as DescribeTargetHealth shows it
    /// (TargetHealthStateEnum), decided by the hyperplane nodes' probes.
    TargetHealthState {
        Initial = "initial",
        Healthy = "healthy",
        Unhealthy = "unhealthy",
        Unused = "unused",
        Draining = "draining",
        Unavailable = "unavailable",
    }
}

impl NatGatewayState {
    /// spec 2.5, issue 16: a route to a NAT gateway is `active` only while
    /// the gateway is `available`; pending (no node serves it yet), failed,
    /// deleting (draining) and deleted gateways blackhole their routes.
    pub fn is_dead(self) -> bool {
        self != NatGatewayState::Available
    }

    /// Whether the gateway has a shard of hyperplane nodes that program it:
    /// from `pending` (a node's report that it serves it makes it
    /// `available`) until it is deleted (`deleting` drains: its routes are
    /// blackholes and its nodes let it go, while it keeps its addresses).
    pub fn holds_shard(self) -> bool {
        matches!(self, NatGatewayState::Pending | NatGatewayState::Available)
    }
}

lifecycle! {
    /// The state of one of a NAT gateway's addresses (NatGatewayAddressStatus).
    NatAddressStatus {
        Assigning = "assigning",
        Unassigning = "unassigning",
        Associating = "associating",
        Disassociating = "disassociating",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

lifecycle! {
    /// A VPC peering connection's state (VpcPeeringConnectionStateReasonCode).
    VpcPeeringState {
        InitiatingRequest = "initiating-request",
        PendingAcceptance = "pending-acceptance",
        Active = "active",
        Deleted = "deleted",
        Rejected = "rejected",
        Failed = "failed",
        Expired = "expired",
        Provisioning = "provisioning",
        Deleting = "deleting",
    }
}

impl VpcPeeringState {
    /// spec 2.5: only an active peering carries traffic; a route to one in
    /// any other state (not yet accepted, or gone) is a blackhole.
    pub fn is_alive(self) -> bool {
        self == VpcPeeringState::Active
    }
}

lifecycle! {
    /// A VPN connection's state (VpnState).
    VpnConnectionState {
        Pending = "pending",
        Available = "available",
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

impl VpnConnectionState {
    /// Not yet deleted: still listed and still counted.
    pub fn exists(self) -> bool {
        self != VpnConnectionState::Deleted
    }
}

lifecycle! {
    /// A virtual private gateway's state (VpnState).
    VpnGatewayState {
        Pending = "pending",
        Available = "available",
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

impl VpnGatewayState {
    /// Not yet deleted: still listed and still counted.
    pub fn exists(self) -> bool {
        self != VpnGatewayState::Deleted
    }

    /// spec 2.5: a route to a gateway that is going or gone is a blackhole.
    pub fn is_dead(self) -> bool {
        matches!(self, VpnGatewayState::Deleting | VpnGatewayState::Deleted)
    }
}

lifecycle! {
    /// A customer gateway's state (the same values as VpnState).
    CustomerGatewayState {
        Pending = "pending",
        Available = "available",
        Deleting = "deleting",
        Deleted = "deleted",
    }
}

impl CustomerGatewayState {
    /// Not yet deleted: still listed and still counted.
    pub fn exists(self) -> bool {
        self != CustomerGatewayState::Deleted
    }
}

lifecycle! {
    /// An instance's state (InstanceStateName).
    InstanceState {
        Pending = "pending",
        Running = "running",
        ShuttingDown = "shutting-down",
        Terminated = "terminated",
        Stopping = "stopping",
        Stopped = "stopped",
    }
}

impl InstanceState {
    /// spec 12: the state code EC2 reports beside the name.
    pub fn code(self) -> u32 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
            InstanceState::Stopping => 64,
            InstanceState::Stopped => 80,
        }
    }

    /// spec 2.5: a route to an instance that is stopped or going away is a
    /// blackhole. (A stopping instance still counts: it has not stopped.)
    pub fn is_dead(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated | InstanceState::Stopped
        )
    }
}

lifecycle! {
    /// A VPC endpoint's state (State). AWS spells these in camelCase, unlike
    /// the other kinds.
    VpcEndpointState {
        PendingAcceptance = "pendingAcceptance",
        Pending = "pending",
        Available = "available",
        Deleting = "deleting",
        Deleted = "deleted",
        Rejected = "rejected",
        Failed = "failed",
        Expired = "expired",
        Partial = "partial",
    }
}

impl VpcEndpointState {
    /// spec 2.5: a route through an endpoint that is not accepted, failed
    /// or going is a blackhole.
    pub fn is_dead(self) -> bool {
        matches!(
            self,
            VpcEndpointState::PendingAcceptance
                | VpcEndpointState::Deleting
                | VpcEndpointState::Deleted
                | VpcEndpointState::Rejected
                | VpcEndpointState::Failed
                | VpcEndpointState::Expired
        )
    }
}

lifecycle! {
    /// A managed prefix list's state (PrefixListState).
    PrefixListState {
        CreateInProgress = "create-in-progress",
        CreateComplete = "create-complete",
        CreateFailed = "create-failed",
        ModifyInProgress = "modify-in-progress",
        ModifyComplete = "modify-complete",
        ModifyFailed = "modify-failed",
        RestoreInProgress = "restore-in-progress",
        RestoreComplete = "restore-complete",
        RestoreFailed = "restore-failed",
        DeleteInProgress = "delete-in-progress",
        DeleteComplete = "delete-complete",
        DeleteFailed = "delete-failed",
    }
}

lifecycle! {
    /// Whether a flow log's records reach its destination
    /// (`deliverLogsStatus`).
    FlowLogDeliveryStatus {
        Success = "SUCCESS",
        Failed = "FAILED",
    }
}

lifecycle! {
    /// A Reachability Analyzer analysis's status (AnalysisStatus). openvpc
    /// answers StartNetworkInsightsAnalysis once the analysis is done, so
    /// a stored analysis is never `running`; the value is AWS's all the same.
    AnalysisStatus {
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored records hold AWS's spellings; each enum must read and write
    /// exactly them, or records written before the enums stop loading.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>,
    {
        for &state in all {
            let json = format!("\"{}\"", as_str(state));
            assert_eq!(serde_json::to_string(&state).ok(), Some(json.clone()));
            assert_eq!(serde_json::from_str::<T>(&json).ok(), Some(state));
        }
    }

    #[test]
    fn every_state_reads_and_writes_its_aws_spelling() {
        round_trips(VpcState::ALL, VpcState::as_str);
        round_trips(SubnetState::ALL, SubnetState::as_str);
        round_trips(CidrBlockState::ALL, CidrBlockState::as_str);
        round_trips(NatGatewayState::ALL, NatGatewayState::as_str);
        round_trips(NatAddressStatus::ALL, NatAddressStatus::as_str);
        round_trips(VpcPeeringState::ALL, VpcPeeringState::as_str);
        round_trips(VpnConnectionState::ALL, VpnConnectionState::as_str);
        round_trips(VpnGatewayState::ALL, VpnGatewayState::as_str);
        round_trips(CustomerGatewayState::ALL, CustomerGatewayState::as_str);
        round_trips(InstanceState::ALL, InstanceState::as_str);
        round_trips(VpcEndpointState::ALL, VpcEndpointState::as_str);
        round_trips(PrefixListState::ALL, PrefixListState::as_str);
        round_trips(FlowLogDeliveryStatus::ALL, FlowLogDeliveryStatus::as_str);
        round_trips(AnalysisStatus::ALL, AnalysisStatus::as_str);
    }

    #[test]
    fn a_state_outside_the_enum_does_not_parse() {
        assert!(serde_json::from_str::<NatGatewayState>("\"Available\"").is_err());
        assert!(serde_json::from_str::<VpcPeeringState>("\"pending_acceptance\"").is_err());
        assert!(serde_json::from_str::<VpcEndpointState>("\"pending-acceptance\"").is_err());
    }

    #[test]
    fn spellings_aws_writes_with_hyphens_and_camel_case() {
        assert_eq!(
            VpcPeeringState::PendingAcceptance.as_str(),
            "pending-acceptance"
        );
        assert_eq!(
            VpcPeeringState::InitiatingRequest.as_str(),
            "initiating-request"
        );
        assert_eq!(InstanceState::ShuttingDown.as_str(), "shutting-down");
        assert_eq!(
            VpcEndpointState::PendingAcceptance.as_str(),
            "pendingAcceptance"
        );
        assert_eq!(PrefixListState::CreateComplete.as_str(), "create-complete");
    }
}
