//! Explaining a packet on the server (`openvpc trace`, the Reachability
//! Analyzer): the fleet's compiled state of each ENI, the one its host runs,
//! turned into router configuration by the same conversion the agents use
//! (`openvpc_dataplane::install`) and run through the dataplane's explain
//! mode. It is the production pipeline, not a model of it: nothing is sent,
//! no host is asked, no root is needed.
//!
//! The walk follows the packet as the underlay would: the source ENI's
//! egress, then the ingress of the ENI the mapping service names at the
//! destination (in the same VPC or, across a peering, in the peer's). A
//! packet handed to a gateway's node ends the walk there.
//!
//! Account isolation: the source must belong to the asking account; the
//! steps taken at another account's ENI (a peer's instance) are not shown,
//! only that the packet reached it and whether it was let in.
//!
//! It reads the fleet; it must not know the Query protocol.

use core::net::{IpAddr, Ipv4Addr};

use openvpc_dataplane::explain::{Explanation, Fate, Probe, StepAction, probe_frame};
use openvpc_dataplane::install::{Converter, InstallError};
use openvpc_dataplane::mapping::{Lookup, Mapping, MappingEntry};
use openvpc_dataplane::policy::Way;
use openvpc_dataplane::{Router, RouterConfig};
use openvpc_model::host::{EniState, MappingKey};
use openvpc_packet::MacAddr;

use crate::fleet::Fleet;

/// Why a packet could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The source ENI runs on no host: nothing would send its packets.
    #[error(
        "network interface {0} runs on no host yet, so it sends no packets: start its instance, or wait for a host to take it"
    )]
    NotRunning(String),
    #[error("network interface {eni} cannot be configured: {source}")]
    Config {
        eni: String,
        #[source]
        source: InstallError,
    },
    #[error("network interface {eni} cannot be configured: {source}")]
    Router {
        eni: String,
        #[source]
        source: openvpc_dataplane::eni::EniError,
    },
    #[error("could not build the probe packet: {0}")]
    Probe(openvpc_packet::Error),
}

/// The mapping service as the fleet answers it, read only.
struct FleetMapping<'f> {
    fleet: &'f Fleet,
    region: &'f str,
}

impl FleetMapping<'_> {
    fn find(&self, vni: u32, ip: IpAddr) -> Lookup {
        let answer = self.fleet.lookup(self.region, &[MappingKey { vni, ip }]);
        let Some(record) = answer.into_iter().next().and_then(|a| a.record) else {
            return Lookup::Absent;
        };
        match record.mac.parse::<MacAddr>() {
            Ok(mac) => Lookup::Found(MappingEntry {
                underlay: record.underlay_ip,
                eni: record.eni_id.as_str().into(),
                mac,
            }),
            Err(_) => Lookup::Absent,
        }
    }
}

impl Mapping for FleetMapping<'_> {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        self.find(vni, addr)
    }

    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup {
        self.find(vni, addr)
    }
}

/// A router holding the one ENI a step of the walk happens at. Its
/// underlay is unspecified, so every next hop is another host's and the
/// walk continues there, as the packet would, whether or not both ENIs
/// share a machine: the same layers decide either way.
fn router_for<'f>(
    fleet: &'f Fleet,
    region: &'f str,
    state: &EniState,
) -> Result<(Router<FleetMapping<'f>>, openvpc_dataplane::EniIndex), TraceError> {
    let config = Converter::new()
        .eni_config(state)
        .map_err(|source| TraceError::Config {
            eni: state.eni_id.clone(),
            source,
        })?;
    let mut router = Router::new(
        RouterConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        FleetMapping { fleet, region },
    );
    let index = router
        .upsert_eni(config)
        .map_err(|source| TraceError::Router {
            eni: state.eni_id.clone(),
            source,
        })?;
    Ok((router, index))
}

/// Explains `probe` sent from `source` (an ENI of `account`) to `dst`.
pub fn trace(
    fleet: &Fleet,
    region: &str,
    account: &str,
    source: &EniState,
    dst: Ipv4Addr,
    probe: Probe,
) -> Result<Explanation, TraceError> {
    if fleet.host_of(&source.eni_id).is_none() {
        return Err(TraceError::NotRunning(source.eni_id.clone()));
    }
    let (router, index) = router_for(fleet, region, source)?;
    let frame = probe_frame(
        router
            .eni(index)
            .ok_or_else(|| TraceError::NotRunning(source.eni_id.clone()))?,
        dst,
        probe,
        router.config().router_mac,
    )
    .map_err(TraceError::Probe)?;
    let mut explained = router.explain(index, Way::Egress, &frame);
    let Fate::Sent { vni, .. } = explained.fate else {
        return Ok(explained);
    };
    // The next ENI: an appliance the route names, or whoever owns the
    // destination in the packet's VPC.
    let named = explained.steps.last().and_then(|s| match &s.action {
        StepAction::Forward {
            target: Some(t), ..
        } if t.starts_with("eni-") => Some(t.clone()),
        _ => None,
    });
    let next_eni = match named {
        Some(eni) => Some(eni),
        None => match (FleetMapping { fleet, region }).find(vni, IpAddr::V4(dst)) {
            Lookup::Found(e) => Some(e.eni.to_string()),
            Lookup::Absent | Lookup::Pending => None,
        },
    };
    let Some(next_state) = next_eni.and_then(|eni| fleet.eni_state(&eni)) else {
        // Handed to a gateway's node, which the walk does not enter.
        return Ok(explained);
    };
    let (router, index) = router_for(fleet, region, &next_state)?;
    let there = router.explain(index, Way::Ingress, &frame);
    if next_state.account_id == account {
        explained.steps.extend(there.steps);
        explained.fate = there.fate;
    } else {
        explained.fate = match there.fate {
            Fate::Delivered { .. } => Fate::Delivered {
                eni: format!("an interface of account {}", next_state.account_id),
            },
            other => other,
        };
    }
    Ok(explained)
}
