//! An in-memory region for tests: several routers on simulated hosts joined
//! by a fake underlay, one shared mapping table, and a clock the test moves.
//! Frames are injected as if an instance sent them and collected where an
//! instance would read them; every frame that crosses a wire is captured so
//! a failing test can leave a pcap behind.
//!
//! It runs the production router unchanged: the fabric only carries frames.

use core::net::{IpAddr, Ipv4Addr};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::udp::UdpRepr;

use crate::buf::PacketBuf;
use crate::drop::DropReason;
use crate::eni::{EniConfig, EniError};
use crate::explain::{Explanation, Fate};
use crate::mapping::{Lookup, Mapping, MappingEntry, StaticMapping};
use crate::policy::Way;
use crate::router::{EniIndex, Output, Router, RouterConfig};

/// A mapping table every host of the fabric shares, as if the mapping
/// service answered instantly.
#[derive(Debug, Clone, Default)]
pub struct SharedMapping(pub Rc<RefCell<StaticMapping>>);

impl Mapping for SharedMapping {
    fn lookup(&mut self, vni: u32, addr: IpAddr) -> Lookup {
        self.0.borrow_mut().lookup(vni, addr)
    }

    fn peek(&self, vni: u32, addr: IpAddr) -> Lookup {
        self.0.borrow().peek(vni, addr)
    }
}

/// What became of an injected frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// An instance received this frame.
    Delivered { eni: String, frame: Vec<u8> },
    /// A router dropped it.
    Dropped { host: usize, reason: DropReason },
    /// The mapping was not ready.
    Pending { host: usize },
    /// Sent to an underlay address no host of the fabric has.
    LeftFabric { dst: IpAddr },
}

impl Delivery {
    /// The frame if it was delivered to `eni`.
    pub fn delivered_to(&self, eni: &str) -> Option<&[u8]> {
        match self {
            Delivery::Delivered { eni: e, frame } if e == eni => Some(frame),
            _ => None,
        }
    }

    pub fn drop_reason(&self) -> Option<DropReason> {
        match self {
            Delivery::Dropped { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

/// A captured frame: when, where, and the bytes (a full Ethernet frame).
#[derive(Debug, Clone)]
pub struct Captured {
    pub at_ms: u64,
    pub wire: String,
    pub frame: Vec<u8>,
}

/// Simulated hosts, their routers and the underlay between them.
pub struct Fabric {
    pub routers: Vec<Router<SharedMapping>>,
    underlays: Vec<IpAddr>,
    mapping: SharedMapping,
    eni_host: HashMap<String, (usize, EniIndex)>,
    now_ms: u64,
    capture: Vec<Captured>,
}

impl core::fmt::Debug for Fabric {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Fabric")
            .field("routers", &self.routers)
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

impl Default for Fabric {
    fn default() -> Self {
        Self::new()
    }
}

impl Fabric {
    /// An empty fabric; the clock starts at 1 s so that zero never means "now".
    pub fn new() -> Self {
        Fabric {
            routers: Vec::new(),
            underlays: Vec::new(),
            mapping: SharedMapping::default(),
            eni_host: HashMap::new(),
            now_ms: 1000,
            capture: Vec::new(),
        }
    }

    /// Adds a host with underlay address 192.0.2.(n+1); returns its number.
    pub fn add_host(&mut self) -> usize {
        self.add_host_with(|_| {})
    }

    /// Adds a host whose router settings `tune` may change first.
    pub fn add_host_with(&mut self, tune: impl FnOnce(&mut RouterConfig)) -> usize {
        let n = self.routers.len();
        let underlay = IpAddr::V4(Ipv4Addr::new(192, 0, 2, n as u8 + 1));
        let mut cfg = RouterConfig::new(underlay);
        // Test regions are small; a production-sized table would be written
        // out in full for every host of every test case.
        cfg.flow_capacity = 4096;
        tune(&mut cfg);
        self.routers.push(Router::new(cfg, self.mapping.clone()));
        self.underlays.push(underlay);
        n
    }

    /// Places an ENI on `host` and publishes its addresses in the mapping.
    pub fn add_eni(&mut self, host: usize, cfg: EniConfig) -> Result<EniIndex, EniError> {
        let entry = MappingEntry {
            underlay: self.underlays[host],
            eni: Arc::from(cfg.id.as_str()),
            mac: cfg.mac,
        };
        for addr in cfg.addresses() {
            self.mapping
                .0
                .borrow_mut()
                .insert(cfg.vni, addr, entry.clone());
        }
        let id = cfg.id.clone();
        let index = self.routers[host].upsert_eni(cfg)?;
        self.eni_host.insert(id, (host, index));
        Ok(index)
    }

    /// Replaces an ENI's configuration in place (a policy change).
    pub fn update_eni(&mut self, cfg: EniConfig) -> Result<EniIndex, EniError> {
        let host = self.eni_host.get(&cfg.id).map_or(0, |h| h.0);
        self.add_eni(host, cfg)
    }

    /// Takes an ENI off its host and its addresses out of the mapping (an
    /// instance terminated); true if it was there.
    pub fn remove_eni(&mut self, eni: &str) -> bool {
        let Some((host, index)) = self.eni_host.remove(eni) else {
            return false;
        };
        if let Some(cfg) = self.routers[host].eni(index) {
            let mut mapping = self.mapping.0.borrow_mut();
            for addr in cfg.addresses() {
                mapping.0.remove(&(cfg.vni, addr));
            }
        }
        let removed = self.routers[host].remove_eni(eni);
        for router in &mut self.routers {
            router.mappings_changed();
        }
        removed
    }

    /// Gives `eni`'s port these layers; false if the ENI is not here.
    pub fn set_layers(&mut self, eni: &str, layers: crate::layer::PortLayers) -> bool {
        match self.eni_host.get(eni) {
            Some(&(host, index)) => self.routers[host].set_layers(index, layers),
            None => false,
        }
    }

    pub fn router(&self, eni: &str) -> Option<&Router<SharedMapping>> {
        self.eni_host.get(eni).map(|(h, _)| &self.routers[*h])
    }

    pub fn eni_index(&self, eni: &str) -> Option<EniIndex> {
        self.eni_host.get(eni).map(|h| h.1)
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// The instance behind `eni` sends `frame`; follows it to its end.
    pub fn send(&mut self, eni: &str, frame: &[u8]) -> Delivery {
        let Some(&(host, index)) = self.eni_host.get(eni) else {
            return Delivery::Dropped {
                host: usize::MAX,
                reason: DropReason::UnknownSource,
            };
        };
        self.capture(format!("{eni} tx"), frame.to_vec());
        let mut buf = PacketBuf::from_frame(frame);
        let now = self.now_ms;
        let mut out = self.routers[host].from_instance(index, &mut buf, now);
        let mut at = host;
        // A frame crosses the underlay at most once per hop; bound the walk
        // so a routing loop between appliances cannot hang a test.
        for _ in 0..8 {
            match out {
                Output::Instance(i) => {
                    let name = self.routers[at]
                        .eni(i)
                        .map_or_else(|| format!("eni slot {i}"), |c| c.id.clone());
                    self.capture(format!("{name} rx"), buf.data().to_vec());
                    return Delivery::Delivered {
                        eni: name,
                        frame: buf.data().to_vec(),
                    };
                }
                Output::Drop(reason) => return Delivery::Dropped { host: at, reason },
                Output::Pending => return Delivery::Pending { host: at },
                // Held by the host's resolver until the region's upstream
                // resolver answers, which the fabric does not model.
                Output::Resolver => return Delivery::Pending { host: at },
                Output::Underlay { dst, src_port } => {
                    self.capture_underlay(at, dst, src_port, buf.data());
                    let Some(next) = self.underlays.iter().position(|u| *u == dst) else {
                        return Delivery::LeftFabric { dst };
                    };
                    at = next;
                    out = self.routers[at].from_underlay(&mut buf, now);
                }
            }
        }
        Delivery::Dropped {
            host: at,
            reason: DropReason::NoRoute,
        }
    }

    /// Explains what `send(eni, frame)` would do, host by host, without
    /// sending anything: each host's router explains its part and the walk
    /// follows the underlay hop to the next host, as the packet would.
    pub fn explain(&self, eni: &str, frame: &[u8]) -> Explanation {
        let Some(&(host, index)) = self.eni_host.get(eni) else {
            return Explanation {
                steps: Vec::new(),
                fate: Fate::Dropped(DropReason::UnknownSource),
            };
        };
        let mut all = self.routers[host].explain(index, Way::Egress, frame);
        let dst = openvpc_packet::flow::parse_ethernet(frame).map(|pf| pf.key.dst_ip());
        for _ in 0..8 {
            let Fate::Sent {
                underlay,
                vni,
                dst_mac,
            } = all.fate
            else {
                break;
            };
            let Some(next) = self.underlays.iter().position(|u| *u == underlay) else {
                break;
            };
            let router = &self.routers[next];
            let Some(index) = dst.ok().and_then(|d| router.eni_at(vni, d, dst_mac)) else {
                all.fate = Fate::Dropped(DropReason::UnknownEni);
                break;
            };
            let mut there = router.explain(index, Way::Ingress, frame);
            all.steps.append(&mut there.steps);
            all.fate = there.fate;
        }
        all
    }

    fn capture(&mut self, wire: String, frame: Vec<u8>) {
        self.capture.push(Captured {
            at_ms: self.now_ms,
            wire,
            frame,
        });
    }

    /// Wraps an underlay datagram in Ethernet/IPv4/UDP so the capture decodes.
    fn capture_underlay(&mut self, from: usize, dst: IpAddr, src_port: u16, datagram: &[u8]) {
        let (IpAddr::V4(src), IpAddr::V4(dst4)) = (self.underlays[from], dst) else {
            return;
        };
        let frame = PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: MacAddr([0x02, 0xfe, 0, 0, 0, dst4.octets()[3]]),
                src: MacAddr([0x02, 0xfe, 0, 0, 0, src.octets()[3]]),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(src, dst4, 0, 0)),
            l4: L4Repr::Udp(UdpRepr {
                src_port,
                dst_port: openvpc_packet::geneve::PORT,
            }),
        }
        .build(datagram);
        if let Ok(frame) = frame {
            self.capture(format!("underlay {src} -> {dst}"), frame);
        }
    }

    pub fn captured(&self) -> &[Captured] {
        &self.capture
    }

    /// The capture as a pcap file (Ethernet link type), for Wireshark.
    pub fn pcap(&self) -> Vec<u8> {
        let Ok(mut writer) = pcap_file::pcap::PcapWriter::new(Vec::new()) else {
            return Vec::new();
        };
        for c in &self.capture {
            let packet = pcap_file::pcap::PcapPacket::new(
                std::time::Duration::from_millis(c.at_ms),
                c.frame.len() as u32,
                &c.frame,
            );
            if writer.write_packet(&packet).is_err() {
                break;
            }
        }
        writer.into_writer()
    }
}
