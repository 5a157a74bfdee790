//! What hyperplane nodes say to each other over UDP ([`PEER_PORT`] on
//! their underlay addresses): flow records for the buddy and its
//! acknowledgements, the hand-back of a slice's flows to a node that
//! rejoins, the instances' hosts a node learned, and packets forwarded to
//! the node that owns their flow.
//!
//! A message is one datagram: version, kind, a sequence number, the
//! gateway it is about (its ID, length-prefixed), then the kind's body.
//! Decoding reads untrusted bytes and never panics; what it does not
//! understand is an error the shell counts.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use openvpc_packet::MacAddr;

use crate::nat::{FlowRecord, RecordError};
use crate::nlb;

/// The UDP port nodes listen on for each other, next to Geneve's 6081.
pub const PEER_PORT: u16 = 6082;
/// The format this build writes.
pub const VERSION: u8 = 1;
/// Records per message: a message stays below a 1500-byte underlay MTU.
pub const RECORDS_PER_MESSAGE: usize = 48;
/// A load balancer's records per message (they are longer).
pub const LB_RECORDS_PER_MESSAGE: usize = 36;
/// The longest gateway ID a message carries.
pub const MAX_GATEWAY_ID: usize = 64;

/// A message's kind, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Flow records for the buddy to keep; `ack` asks for an [`Body::Ack`]
    /// (a new flow whose first packet waits for it).
    Replicate { ack: bool, records: Vec<FlowRecord> },
    /// The records of `seq` are kept.
    Ack,
    /// Flows of the receiver's own slice, served by the sender while the
    /// receiver was away: the receiver translates them from now on.
    HandBack { records: Vec<FlowRecord> },
    /// The sender (at `place`) joined the gateway's shard: send it what it
    /// should hold (its slice's flows back, your flows if it is your buddy).
    Join { place: u8 },
    /// An instance of the gateway's VPC sits behind this host: where its
    /// replies go.
    Neighbor {
        vni: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
        host: IpAddr,
    },
    /// A packet of a flow the receiver owns, as it reached the sender:
    /// `datagram` is the Geneve datagram, `from` the underlay address it
    /// came from.
    Forward { from: IpAddr, datagram: Vec<u8> },
    /// [`Body::Replicate`] for a load balancer's flows.
    LbReplicate {
        ack: bool,
        records: Vec<nlb::FlowRecord>,
    },
    /// [`Body::HandBack`] for a load balancer's flows.
    LbHandBack { records: Vec<nlb::FlowRecord> },
}

/// A flow record as messages carry it: fixed length, versioned, decoded
/// without panics.
trait WireRecord: Sized {
    const LEN: usize;
    fn put(&self, out: &mut Vec<u8>);
    fn get(bytes: &[u8]) -> Result<Self, WireError>;
}

impl WireRecord for FlowRecord {
    const LEN: usize = crate::nat::replica::LEN;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        Ok(FlowRecord::decode(bytes)?)
    }
}

impl WireRecord for nlb::FlowRecord {
    const LEN: usize = nlb::replica::LEN;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.encode());
    }
    fn get(bytes: &[u8]) -> Result<Self, WireError> {
        Ok(nlb::FlowRecord::decode(bytes)?)
    }
}

/// A count, then the records (at most 255).
fn put_records<R: WireRecord>(out: &mut Vec<u8>, records: &[R]) {
    let n = records.len().min(usize::from(u8::MAX));
    out.push(n as u8);
    for r in &records[..n] {
        r.put(out);
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub seq: u32,
    pub gateway: String,
    pub body: Body,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("a peer message is too short")]
    Short,
    #[error("peer message version {0} is not understood (this build reads {VERSION})")]
    Version(u8),
    #[error("unknown peer message kind {0}")]
    Kind(u8),
    #[error("the gateway ID is not UTF-8 or longer than {MAX_GATEWAY_ID} bytes")]
    Gateway,
    #[error("{0}")]
    Record(#[from] RecordError),
    #[error("{0}")]
    LbRecord(#[from] nlb::RecordError),
    #[error("bad address family {0}")]
    Family(u8),
}

const KIND_REPLICATE: u8 = 1;
const KIND_REPLICATE_ACK: u8 = 2;
const KIND_ACK: u8 = 3;
const KIND_HAND_BACK: u8 = 4;
const KIND_JOIN: u8 = 5;
const KIND_NEIGHBOR: u8 = 6;
const KIND_FORWARD: u8 = 7;
const KIND_LB_REPLICATE: u8 = 8;
const KIND_LB_REPLICATE_ACK: u8 = 9;
const KIND_LB_HAND_BACK: u8 = 10;

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.octets());
        }
    }
}

/// Reads untrusted bytes from the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn ip(&mut self) -> Result<IpAddr, WireError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            f => Err(WireError::Family(f)),
        }
    }

    fn records<R: WireRecord>(&mut self) -> Result<Vec<R>, WireError> {
        let n = usize::from(self.u8()?);
        let mut records = Vec::with_capacity(n.min(RECORDS_PER_MESSAGE));
        for _ in 0..n {
            records.push(R::get(self.take(R::LEN)?)?);
        }
        Ok(records)
    }
}

impl Message {
    /// The message's bytes, appended to `out` (cleared first).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        let kind = match &self.body {
            Body::Replicate { ack: false, .. } => KIND_REPLICATE,
            Body::Replicate { ack: true, .. } => KIND_REPLICATE_ACK,
            Body::Ack => KIND_ACK,
            Body::HandBack { .. } => KIND_HAND_BACK,
            Body::Join { .. } => KIND_JOIN,
            Body::Neighbor { .. } => KIND_NEIGHBOR,
            Body::Forward { .. } => KIND_FORWARD,
            Body::LbReplicate { ack: false, .. } => KIND_LB_REPLICATE,
            Body::LbReplicate { ack: true, .. } => KIND_LB_REPLICATE_ACK,
            Body::LbHandBack { .. } => KIND_LB_HAND_BACK,
        };
        out.extend_from_slice(&[VERSION, kind]);
        out.extend_from_slice(&self.seq.to_be_bytes());
        let id = self.gateway.as_bytes();
        let id = &id[..id.len().min(MAX_GATEWAY_ID)];
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        match &self.body {
            Body::Replicate { records, .. } | Body::HandBack { records } => {
                put_records(out, records);
            }
            Body::LbReplicate { records, .. } | Body::LbHandBack { records } => {
                put_records(out, records);
            }
            Body::Ack => {}
            Body::Join { place } => out.push(*place),
            Body::Neighbor { vni, ip, mac, host } => {
                out.extend_from_slice(&vni.to_be_bytes());
                out.extend_from_slice(&ip.octets());
                out.extend_from_slice(&mac.0);
                put_ip(out, *host);
            }
            Body::Forward { from, datagram } => {
                put_ip(out, *from);
                out.extend_from_slice(datagram);
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::Version(version));
        }
        let kind = r.u8()?;
        let seq = u32::from_be_bytes(r.array::<4>()?);
        let len = usize::from(r.u8()?);
        if len > MAX_GATEWAY_ID {
            return Err(WireError::Gateway);
        }
        let gateway = core::str::from_utf8(r.take(len)?)
            .map_err(|_| WireError::Gateway)?
            .to_owned();
        let body = match kind {
            KIND_REPLICATE | KIND_REPLICATE_ACK => Body::Replicate {
                ack: kind == KIND_REPLICATE_ACK,
                records: r.records()?,
            },
            KIND_ACK => Body::Ack,
            KIND_HAND_BACK => Body::HandBack {
                records: r.records()?,
            },
            KIND_JOIN => Body::Join { place: r.u8()? },
            KIND_NEIGHBOR => Body::Neighbor {
                vni: u32::from_be_bytes(r.array::<4>()?),
                ip: Ipv4Addr::from(r.array::<4>()?),
                mac: MacAddr(r.array::<6>()?),
                host: r.ip()?,
            },
            KIND_FORWARD => Body::Forward {
                from: r.ip()?,
                datagram: r.0.to_vec(),
            },
            KIND_LB_REPLICATE | KIND_LB_REPLICATE_ACK => Body::LbReplicate {
                ack: kind == KIND_LB_REPLICATE_ACK,
                records: r.records()?,
            },
            KIND_LB_HAND_BACK => Body::LbHandBack {
                records: r.records()?,
            },
            k => return Err(WireError::Kind(k)),
        };
        Ok(Message { seq, gateway, body })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nat::{FlowState, RecordKind};
    use openvpc_packet::ip::protocol;
    use proptest::prelude::*;

    fn record(port: u16) -> FlowRecord {
        FlowRecord {
            kind: RecordKind::Upsert,
            proto: protocol::TCP,
            state: FlowState::Established,
            src: Ipv4Addr::new(10, 0, 1, 5),
            dst: Ipv4Addr::new(203, 0, 113, 9),
            public: Ipv4Addr::new(10, 0, 0, 7),
            sport: 40_000,
            dport: 443,
            pport: port,
        }
    }

    fn round_trip(body: Body) {
        let m = Message {
            seq: 7,
            gateway: "nat-0123456789abcdef0".into(),
            body,
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        assert!(out.len() <= 1400, "{} bytes", out.len());
        assert_eq!(Message::decode(&out), Ok(m));
    }

    #[test]
    fn every_kind_round_trips() {
        let full: Vec<_> = (0..RECORDS_PER_MESSAGE as u16)
            .map(|i| record(20_000 + i))
            .collect();
        round_trip(Body::Replicate {
            ack: true,
            records: full.clone(),
        });
        round_trip(Body::Replicate {
            ack: false,
            records: vec![record(1)],
        });
        round_trip(Body::Ack);
        round_trip(Body::HandBack { records: full });
        round_trip(Body::Join { place: 3 });
        round_trip(Body::Neighbor {
            vni: 77,
            ip: Ipv4Addr::new(10, 0, 1, 5),
            mac: MacAddr([2, 0, 0, 0, 0, 9]),
            host: "10.99.0.3".parse().unwrap(),
        });
        round_trip(Body::Forward {
            from: "fd00::3".parse().unwrap(),
            datagram: vec![1, 2, 3, 4],
        });
        let lb: Vec<nlb::FlowRecord> = (0..LB_RECORDS_PER_MESSAGE as u16)
            .map(|i| lb_record(30_000 + i))
            .collect();
        round_trip(Body::LbReplicate {
            ack: true,
            records: lb.clone(),
        });
        round_trip(Body::LbReplicate {
            ack: false,
            records: vec![lb_record(1)],
        });
        round_trip(Body::LbHandBack { records: lb });
    }

    fn lb_record(port: u16) -> nlb::FlowRecord {
        nlb::FlowRecord {
            kind: RecordKind::Upsert,
            proto: protocol::TCP,
            state: nlb::FlowState::Established,
            owner: 2,
            client: Ipv4Addr::new(10, 0, 1, 5),
            front: Ipv4Addr::new(10, 0, 1, 50),
            target: Ipv4Addr::new(10, 0, 2, 9),
            source: Ipv4Addr::new(10, 0, 1, 5),
            cport: port,
            fport: 80,
            tport: 8080,
            sport: port,
            syn_seq: 77,
        }
    }

    #[test]
    fn what_is_not_understood_is_an_error() {
        assert_eq!(Message::decode(&[]), Err(WireError::Short));
        assert_eq!(Message::decode(&[9, 1]), Err(WireError::Version(9)));
        assert_eq!(
            Message::decode(&[VERSION, 99, 0, 0, 0, 0, 0]),
            Err(WireError::Kind(99))
        );
        assert_eq!(
            Message::decode(&[VERSION, KIND_JOIN, 0, 0, 0, 0, 200]),
            Err(WireError::Gateway)
        );
        // A record count that promises more than the datagram holds.
        assert_eq!(
            Message::decode(&[VERSION, KIND_REPLICATE, 0, 0, 0, 0, 0, 5]),
            Err(WireError::Short)
        );
    }

    proptest! {
        // Untrusted bytes never panic the decoder.
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&bytes);
        }
    }
}
