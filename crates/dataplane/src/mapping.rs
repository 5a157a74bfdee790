//! The mapping service as the router sees it: which host, ENI and MAC own an
//! address in a VPC. The agent implements it with a pull-and-cache client;
//! tests use [`StaticMapping`].

use core::net::IpAddr;
use std::collections::HashMap;
use std::sync::Arc;

use openvpc_packet::MacAddr;

/// Where an address lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MappingEntry {
    /// The underlay address of the host that holds the ENI.
    pub underlay: IpAddr,
    pub eni: Arc<str>,
    pub mac: MacAddr,
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(MappingEntry),
    /// Not cached yet: the implementation has asked the server, and the
    /// caller should hold the packet briefly and retry.
    Pending,
    /// Nothing lives at this address.
    Absent,
}

/// Resolves (VNI, address) to its owner.
pub trait Mapping {
    /// The owner of `addr` in VPC `vni`; on a miss the implementation may
    /// ask the server and answer [`Lookup::Pending`].
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup;

    /// What [`Mapping::lookup`] would answer now, without asking anyone or
    /// counting anything: explain mode commits nothing.
    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup;
}

/// A fixed table: for tests and the in-memory fabric.
#[derive(Debug, Clone, Default)]
pub struct StaticMapping(pub HashMap<(u32, IpAddr), MappingEntry>);

impl StaticMapping {
    pub fn insert(&mut self, vni: u32, addr: IpAddr, entry: MappingEntry) {
        self.0.insert((vni, addr), entry);
    }
}

impl Mapping for StaticMapping {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        self.peek(vni, addr)
    }

    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup {
        match self.0.get(&(vni, addr)) {
            Some(e) => Lookup::Found(e.clone()),
            None => Lookup::Absent,
        }
    }
}

impl<M: Mapping + ?Sized> Mapping for &mut M {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        (**self).lookup(vni, addr)
    }

    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup {
        (**self).peek(vni, addr)
    }
}
