//! Route-target liveness (spec 2.5): whether the stored record a route
//! points at can carry traffic, decided in one place for the API (route
//! `state` in DescribeRouteTables) and the fleet compiler (what agents get).
//!
//! A target's record is read through a typed view of the fields liveness
//! needs: its lifecycle state as the kind's enum from
//! `openvpc_model::lifecycle`, and the VPC it belongs to. A record that does
//! not parse as its kind (including a state the enum does not know) is a
//! [`RecordError`] naming its key; it is never counted as alive.
//!
//! It lives with the records because it reads only stored records: it must
//! not know the Query protocol, XML or request parameters.

use openvpc_model::lifecycle::{
    InstanceState, NatGatewayState, VpcEndpointState, VpcPeeringState, VpnGatewayState,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The kinds of record a route can target, by their store segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRecordKind {
    InternetGateway,
    EgressOnlyInternetGateway,
    NatGateway,
    VpnGateway,
    VpcEndpoint,
    NetworkInterface,
    Instance,
    VpcPeering,
    TransitGateway,
    CarrierGateway,
    LocalGateway,
}

impl TargetRecordKind {
    /// The kind stored under this segment (ID prefix), if a route can
    /// target it.
    pub fn of_segment(segment: &str) -> Option<TargetRecordKind> {
        Some(match segment {
            "igw" => TargetRecordKind::InternetGateway,
            "eigw" => TargetRecordKind::EgressOnlyInternetGateway,
            "nat" => TargetRecordKind::NatGateway,
            "vgw" => TargetRecordKind::VpnGateway,
            "vpce" => TargetRecordKind::VpcEndpoint,
            "eni" => TargetRecordKind::NetworkInterface,
            "i" => TargetRecordKind::Instance,
            "pcx" => TargetRecordKind::VpcPeering,
            "tgw" => TargetRecordKind::TransitGateway,
            "cagw" => TargetRecordKind::CarrierGateway,
            "lgw" => TargetRecordKind::LocalGateway,
            _ => return None,
        })
    }
}

/// Whether a route to an existing target carries traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Going, gone, failed, stopped, or (a peering) not active: the route
    /// is a blackhole.
    Dead,
}

/// What a route needs from its target's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetRecord {
    pub liveness: Liveness,
    /// The VPC the target belongs to, for kinds that belong to one.
    pub vpc_id: Option<String>,
}

/// A stored record that does not parse as its kind.
#[derive(Debug, thiserror::Error)]
#[error("the stored record {key} cannot be read: {source}")]
pub struct RecordError {
    pub key: String,
    #[source]
    pub source: serde_json::Error,
}

/// The fields liveness reads, with the kind's state type. Missing fields
/// default (a record with no state has none to be dead in); fields present
/// must have their type.
#[derive(Deserialize)]
struct View<S> {
    #[serde(default = "Option::default")]
    state: Option<S>,
    #[serde(default)]
    vpc_id: Option<String>,
}

fn view<S: DeserializeOwned>(
    key: &str,
    raw: &[u8],
    dead: fn(S) -> bool,
) -> Result<TargetRecord, RecordError> {
    let v: View<S> = serde_json::from_slice(raw).map_err(|source| RecordError {
        key: key.to_owned(),
        source,
    })?;
    Ok(TargetRecord {
        liveness: if v.state.is_some_and(dead) {
            Liveness::Dead
        } else {
            Liveness::Alive
        },
        vpc_id: v.vpc_id,
    })
}

/// spec 2.5: the liveness (and VPC) of the target stored at `key` as `raw`.
pub fn target_record(
    kind: TargetRecordKind,
    key: &str,
    raw: &[u8],
) -> Result<TargetRecord, RecordError> {
    match kind {
        TargetRecordKind::NatGateway => view(key, raw, NatGatewayState::is_dead),
        TargetRecordKind::VpnGateway => view(key, raw, VpnGatewayState::is_dead),
        TargetRecordKind::VpcEndpoint => view(key, raw, VpcEndpointState::is_dead),
        TargetRecordKind::Instance => view(key, raw, InstanceState::is_dead),
        TargetRecordKind::VpcPeering => view(key, raw, |s: VpcPeeringState| !s.is_alive()),
        TargetRecordKind::InternetGateway
        | TargetRecordKind::EgressOnlyInternetGateway
        | TargetRecordKind::NetworkInterface
        | TargetRecordKind::TransitGateway
        | TargetRecordKind::CarrierGateway
        | TargetRecordKind::LocalGateway => {
            // No lifecycle state: alive while the record exists.
            view(key, raw, |_: serde::de::IgnoredAny| false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn liveness(segment: &str, json: &str) -> Result<Liveness, RecordError> {
        let kind = TargetRecordKind::of_segment(segment).ok_or_else(|| RecordError {
            key: segment.to_owned(),
            source: serde::de::Error::custom("no kind"),
        })?;
        target_record(kind, "r/1/us-east-1/x/x-1", json.as_bytes()).map(|r| r.liveness)
    }

    /// spec 2.5: gone, going, failed or not-active targets are blackholes.
    #[test]
    fn states_that_blackhole_a_route() {
        assert_eq!(
            liveness("nat", r#"{"state":"deleted"}"#).ok(),
            Some(Liveness::Dead)
        );
        // issue 16: a NAT gateway carries traffic only while `available`.
        assert_eq!(
            liveness("nat", r#"{"state":"pending"}"#).ok(),
            Some(Liveness::Dead)
        );
        assert_eq!(
            liveness("nat", r#"{"state":"available"}"#).ok(),
            Some(Liveness::Alive)
        );
        assert_eq!(
            liveness("pcx", r#"{"state":"pending-acceptance"}"#).ok(),
            Some(Liveness::Dead)
        );
        assert_eq!(
            liveness("pcx", r#"{"state":"active"}"#).ok(),
            Some(Liveness::Alive)
        );
        assert_eq!(
            liveness("i", r#"{"state":"stopped"}"#).ok(),
            Some(Liveness::Dead)
        );
        assert_eq!(
            liveness("i", r#"{"state":"running"}"#).ok(),
            Some(Liveness::Alive)
        );
        assert_eq!(
            liveness("vgw", r#"{"state":"deleting"}"#).ok(),
            Some(Liveness::Dead)
        );
        assert_eq!(
            liveness("vpce", r#"{"state":"available"}"#).ok(),
            Some(Liveness::Alive)
        );
        assert_eq!(liveness("igw", "{}").ok(), Some(Liveness::Alive));
    }

    /// A record that does not parse is an error naming its key, never alive.
    #[test]
    fn an_unreadable_record_is_an_error_with_its_key() {
        for (segment, json) in [
            ("nat", r#"{"state":"Available"}"#),
            ("pcx", "not json"),
            ("igw", r#"{"vpc_id":7}"#),
            ("i", r#"{"state":{"code":16,"name":"running"}}"#),
        ] {
            let err = liveness(segment, json).err();
            assert!(
                err.is_some_and(|e| e.to_string().contains("r/1/us-east-1/x/x-1")),
                "{segment} {json}"
            );
        }
    }
}
