//! The VGW's BGP endpoint on a tunnel's inside address
//! (`openvpc_vpn::inside`), sans-IO: the customer side is built here too,
//! a second smoltcp interface at the /30's second address whose TCP client
//! drives a second `openvpc_bgp::Session` (as BIRD or FRR would), and the
//! two exchange inner packets in memory on a fake clock. Spec 10.2 (inside
//! /30, keepalive 10 s / hold 30 s, MTU 1399) and 10.3 (at most 100
//! prefixes from the customer).

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use openvpc_bgp::wire::{AsSegment, Notification, code, subcode};
use openvpc_bgp::{
    Config, DownReason, Event, ExportAttrs, Ipv4Prefix, Session, SessionError, State,
};
use openvpc_packet::queue_device::QueueDevice;
use openvpc_vpn::inside::{
    BgpEndpoint, Error, INSIDE_MTU, InsideDrop, MAX_PREFIXES, tunnel_session_config,
};
use proptest::prelude::*;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    HardwareAddress, IpAddress, IpCidr, Ipv4Packet, TcpControl, TcpPacket, TcpRepr,
};

const AMAZON_ASN: u32 = 64512;
const CUSTOMER_ASN: u32 = 65000;
const STEP: Duration = Duration::from_millis(50);

fn inside() -> Ipv4Net {
    "169.254.44.8/30".parse().unwrap()
}
const US: Ipv4Addr = Ipv4Addr::new(169, 254, 44, 9);
const CGW: Ipv4Addr = Ipv4Addr::new(169, 254, 44, 10);

fn p(s: &str) -> Ipv4Prefix {
    s.parse().unwrap()
}

fn instant(d: Duration) -> Instant {
    Instant::from_micros(d.as_micros() as i64)
}

/// The customer's router: a BGP session in connect mode over a smoltcp TCP
/// client from `addr` to our inside address, port 179, reconnecting 1 s
/// after a connection ends.
struct Customer {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    conn: Option<SocketHandle>,
    /// The session was told the connection is up.
    told: bool,
    session: Session,
    next_port: u16,
    retry_at: Option<Duration>,
    events: Vec<Event>,
}

impl Customer {
    fn new(addr: Ipv4Addr, prefix_len: u8, seed: u64) -> Self {
        let mut device = QueueDevice::new(INSIDE_MTU, usize::MAX);
        let mut cfg = IfaceConfig::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut device, instant(Duration::ZERO));
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::Ipv4(addr), prefix_len))
                .unwrap()
        });
        iface.routes_mut().add_default_ipv4_route(addr).unwrap();
        let config = Config {
            hold_time: 30,
            ..Config::new(CUSTOMER_ASN, AMAZON_ASN, addr)
        };
        Self {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            conn: None,
            told: false,
            session: Session::new(config).unwrap(),
            next_port: 40000,
            retry_at: Some(Duration::ZERO),
            events: Vec::new(),
        }
    }

    fn connect(&mut self, now: Duration) {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16384]),
            tcp::SocketBuffer::new(vec![0; 16384]),
        );
        s.set_nagle_enabled(false);
        self.next_port += 1;
        s.connect(
            self.iface.context(),
            (IpAddress::Ipv4(US), 179),
            self.next_port,
        )
        .unwrap();
        self.conn = Some(self.sockets.add(s));
        self.told = false;
        self.session.connect(now);
    }

    /// Forgets its connection without a word, as a router that restarts.
    fn forget_connection(&mut self, now: Duration) {
        if let Some(h) = self.conn.take() {
            self.sockets.remove(h);
        }
        self.session.disconnected(now);
        let _ = self.session.take_output();
        self.retry_at = Some(now);
    }

    fn poll(&mut self, now: Duration) -> Vec<Vec<u8>> {
        if self.conn.is_none() && self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            self.connect(now);
        }
        self.iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        if let Some(h) = self.conn {
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            if !self.told && s.may_send() {
                self.told = true;
                self.session.connected(now);
            }
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.recv_slice(&mut buf) {
                self.session.received(&buf[..n], now);
            }
            let gone = !s.is_open() || (self.told && !s.may_recv());
            if gone {
                self.session.disconnected(now);
            }
            self.session.tick(now);
            let out = self.session.take_output();
            if !out.is_empty() && s.may_send() {
                let n = s.send_slice(&out).unwrap();
                assert_eq!(n, out.len(), "customer send buffer full");
            }
            let idle = !matches!(
                self.session.state(),
                State::Connect | State::OpenSent | State::OpenConfirm | State::Established
            );
            if gone || idle {
                s.close();
                self.conn = None;
                self.retry_at = Some(now + Duration::from_secs(1));
            }
        }
        self.iface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        self.events
            .extend(std::iter::from_fn(|| self.session.poll_event()));
        self.device.tx.drain(..).collect()
    }

    /// The state of its current TCP connection, if any.
    fn tcp_state(&self) -> Option<tcp::State> {
        self.conn
            .map(|h| self.sockets.get::<tcp::Socket>(h).state())
    }
}

/// Our endpoint and the customer across a tunnel that can be cut.
struct World {
    vgw: BgpEndpoint,
    cgw: Customer,
    now: Duration,
    tunnel_up: bool,
    /// Every packet the customer sent, for the malformed-input tests.
    sent_by_cgw: Vec<Vec<u8>>,
    /// Every packet our endpoint sent.
    sent_by_vgw: Vec<Vec<u8>>,
}

impl World {
    fn new() -> Self {
        let vgw = BgpEndpoint::with_seed(
            inside(),
            tunnel_session_config(US, AMAZON_ASN, CUSTOMER_ASN),
            7,
        )
        .unwrap();
        Self {
            vgw,
            cgw: Customer::new(CGW, 30, 11),
            now: Duration::ZERO,
            tunnel_up: true,
            sent_by_cgw: Vec::new(),
            sent_by_vgw: Vec::new(),
        }
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        let from_vgw = self.vgw.poll(now);
        for pkt in &from_vgw {
            assert!(pkt.len() <= INSIDE_MTU, "a packet over the tunnel MTU");
        }
        self.sent_by_vgw.extend(from_vgw.iter().cloned());
        if self.tunnel_up {
            self.cgw.device.rx.extend(from_vgw);
        }
        let from_cgw = self.cgw.poll(now);
        if self.tunnel_up {
            for pkt in from_cgw {
                self.vgw.receive(&pkt, now).unwrap();
                self.sent_by_cgw.push(pkt);
            }
        }
    }

    /// Steps until `done`, at most `limit` of fake time.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut World) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    fn established(&mut self) -> bool {
        self.run_until(Duration::from_secs(10), |w| {
            w.vgw.state() == State::Established && w.cgw.session.state() == State::Established
        })
    }

    fn customer_announces(&mut self, prefixes: Vec<Ipv4Prefix>) {
        self.cgw
            .session
            .set_announced(prefixes, CGW, ExportAttrs::default(), self.now);
    }
}

fn customer_prefixes() -> Vec<Ipv4Prefix> {
    vec![p("172.16.0.0/16"), p("172.17.0.0/24")]
}

/// A world with the session up and routes exchanged both ways.
fn up_with_routes() -> World {
    let mut w = World::new();
    w.vgw
        .set_announced([p("10.0.0.0/16")], US, ExportAttrs::default(), w.now);
    w.customer_announces(customer_prefixes());
    assert!(w.established(), "session did not come up");
    assert!(w.run_until(Duration::from_secs(5), |w| w.vgw.routes().len() == 2));
    w
}

/// Spec 10.2: the customer's router connects to our first host address of
/// the inside /30; the session comes up on both sides, the customer's
/// prefixes arrive with its AS in the path, and the VPC CIDR reaches the
/// customer with ours.
#[test]
fn session_comes_up_and_routes_flow_both_ways() {
    let mut w = up_with_routes();
    assert_eq!(w.vgw.local_addr(), US);
    assert_eq!(w.vgw.peer_addr(), CGW);
    let routes = w.vgw.routes();
    for prefix in customer_prefixes() {
        let r = &routes[&prefix];
        assert_eq!(r.as_path, vec![AsSegment::sequence(vec![CUSTOMER_ASN])]);
        assert_eq!(r.next_hop, CGW);
    }
    // Spec 10.2: our SYN-ACK announces an MSS that fits the tunnel MTU of
    // 1399 (and AWS's MSS limit of 1406).
    let mss = w.sent_by_vgw.iter().find_map(|pkt| {
        let ip = Ipv4Packet::new_checked(&pkt[..]).ok()?;
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        let repr = TcpRepr::parse(
            &tcp,
            &IpAddress::Ipv4(ip.src_addr()),
            &IpAddress::Ipv4(ip.dst_addr()),
            &ChecksumCapabilities::default(),
        )
        .ok()?;
        (repr.control == TcpControl::Syn).then_some(repr.max_seg_size)
    });
    assert_eq!(mss, Some(Some(1359)));
    // Spec 10.2: keepalive 10 s / hold 30 s.
    assert_eq!(w.vgw.session().hold_time(), Some(30));
    assert_eq!(w.vgw.session().peer_id(), Some(CGW));

    assert!(w.run_until(Duration::from_secs(5), |w| {
        !w.cgw.session.routes().is_empty()
    }));
    let learned = &w.cgw.session.routes()[&p("10.0.0.0/16")];
    assert_eq!(learned.as_path, vec![AsSegment::sequence(vec![AMAZON_ASN])]);
    assert_eq!(learned.next_hop, US);

    // Events: Established once, routes changed; the flag is taken once.
    let events: Vec<Event> = std::iter::from_fn(|| w.vgw.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Established { peer_id, hold_time: 30 } if *peer_id == CGW)),
        "{events:?}"
    );
    assert!(w.vgw.take_routes_changed());
    assert!(!w.vgw.take_routes_changed());
    let c = w.vgw.counters();
    assert_eq!(c.sessions_established, 1);
    assert_eq!(c.connections, 1);
    assert_eq!(c.refused_connections, 0);
    assert_eq!(c.dropped_malformed, 0);
    assert!(c.packets_in > 0 && c.packets_out > 0);

    // Keepalives hold the session: a minute later it is still up, and
    // nothing changed.
    w.run_for(Duration::from_secs(60));
    assert_eq!(w.vgw.state(), State::Established);
    assert!(!w.vgw.take_routes_changed());

    // A withdrawal is a change.
    w.customer_announces(vec![p("172.16.0.0/16")]);
    assert!(w.run_until(Duration::from_secs(5), |w| w.vgw.routes().len() == 1));
    assert!(w.vgw.take_routes_changed());
}

/// Spec 10.3: at most 100 prefixes from the customer gateway; the 101st
/// drops the session with Cease / Maximum Number of Prefixes Reached, and
/// the learned routes go with it.
#[test]
fn the_101st_prefix_drops_the_session() {
    let mut w = World::new();
    let hundred: Vec<Ipv4Prefix> = (0..MAX_PREFIXES as u32)
        .map(|i| Ipv4Prefix::new(Ipv4Addr::from(0xac10_0000 + (i << 8)), 24).unwrap())
        .collect();
    w.customer_announces(hundred.clone());
    assert!(w.established());
    assert!(w.run_until(Duration::from_secs(5), |w| w.vgw.routes().len() == 100));
    assert_eq!(w.vgw.state(), State::Established);

    let mut more = hundred;
    more.push(p("192.168.77.0/24"));
    w.customer_announces(more);
    assert!(w.run_until(Duration::from_secs(5), |w| {
        w.cgw.events.iter().any(|e| matches!(e, Event::Down { .. }))
    }));
    assert_ne!(w.vgw.state(), State::Established);
    assert!(w.vgw.routes().is_empty());
    assert!(matches!(
        w.vgw.session().last_down(),
        Some(DownReason::Error(SessionError::MaxPrefixes {
            limit: 100,
            count: 101
        }))
    ));
    // The customer got our NOTIFICATION: Cease, subcode 1 (RFC 4486).
    let got = w.cgw.events.iter().find_map(|e| match e {
        Event::Down {
            reason: DownReason::PeerNotification(n),
        } => Some(n.clone()),
        _ => None,
    });
    let Some(Notification {
        code: c,
        subcode: s,
        ..
    }) = got
    else {
        panic!("no NOTIFICATION at the customer: {:?}", w.cgw.events);
    };
    assert_eq!((c, s), (code::CEASE, subcode::MAXIMUM_PREFIXES_REACHED));
    assert!(w.vgw.take_routes_changed());
}

/// Spec 10.2, hold 30 s: when the tunnel stops carrying packets, the
/// session goes down after the hold time and the learned routes are
/// withdrawn; not before.
#[test]
fn hold_timer_drops_the_session_when_the_tunnel_goes_silent() {
    let mut w = up_with_routes();
    let _ = w.vgw.take_routes_changed();
    w.tunnel_up = false;
    let cut = w.now;
    w.run_for(Duration::from_secs(18));
    assert_eq!(
        w.vgw.state(),
        State::Established,
        "down before the hold time"
    );
    assert_eq!(w.vgw.routes().len(), 2);
    assert!(w.run_until(Duration::from_secs(15), |w| w.vgw.state()
        != State::Established));
    let down_after = w.now - cut;
    assert!(
        down_after > Duration::from_secs(20) && down_after <= Duration::from_secs(31),
        "went down {down_after:?} after the cut"
    );
    assert!(w.vgw.routes().is_empty());
    assert_eq!(
        w.vgw.session().last_down(),
        Some(&DownReason::HoldTimerExpired)
    );
    assert!(w.vgw.take_routes_changed());
    // Waiting for the peer again.
    assert_eq!(w.vgw.state(), State::Active);
    // The connection we closed into the void (its FIN never acknowledged)
    // is cut after the linger; then nothing is left to time.
    w.run_for(Duration::from_secs(25));
    assert_eq!(w.vgw.counters().linger_aborts, 1);
    assert_eq!(w.vgw.next_deadline(w.now), None);
}

/// `tunnel_down` (the IPsec SA was cleared) withdraws at once; when the
/// tunnel is back, the peer's stale connection is reset, it reconnects and
/// the session comes back (spec 10.2's DPD action `clear`).
#[test]
fn tunnel_down_withdraws_at_once_and_the_peer_reconnects() {
    let mut w = up_with_routes();
    let _ = w.vgw.take_routes_changed();
    while w.vgw.poll_event().is_some() {}

    w.tunnel_up = false;
    w.step();
    w.vgw.tunnel_down(w.now);
    assert_eq!(w.vgw.state(), State::Active);
    assert!(w.vgw.routes().is_empty());
    assert!(w.vgw.take_routes_changed());
    let events: Vec<Event> = std::iter::from_fn(|| w.vgw.poll_event()).collect();
    assert!(
        events.contains(&Event::Down {
            reason: DownReason::ConnectionLost
        }),
        "{events:?}"
    );

    // The tunnel comes back within the customer's hold time: its next
    // KEEPALIVE is answered with a RST, and it connects again.
    w.run_for(Duration::from_secs(2));
    w.tunnel_up = true;
    assert!(w.run_until(Duration::from_secs(20), |w| w.vgw.state()
        == State::Established
        && w.vgw.routes().len() == 2));
    assert_eq!(w.vgw.counters().sessions_established, 2);
    assert_eq!(w.vgw.counters().connections, 2);
}

/// After the session drops (here: the customer closes it), the endpoint
/// listens again and the customer's next connection brings it back.
#[test]
fn the_peer_reconnects_after_a_drop() {
    let mut w = up_with_routes();
    let now = w.now;
    w.cgw.session.close(now);
    assert!(w.run_until(Duration::from_secs(2), |w| w.vgw.state()
        != State::Established));
    assert_eq!(
        w.vgw.session().last_down(),
        Some(&DownReason::PeerNotification(Notification::cease()))
    );
    assert!(w.vgw.routes().is_empty());
    assert!(w.run_until(Duration::from_secs(10), |w| w.vgw.state()
        == State::Established
        && w.vgw.routes().len() == 2));
    assert_eq!(w.vgw.counters().sessions_established, 2);
    // Our closed connection finished closing and was let go.
    w.run_for(Duration::from_secs(15));
    assert_eq!(w.vgw.counters().linger_aborts, 0);
}

/// A router that restarts without closing its connection connects again:
/// the new connection replaces the old at once instead of waiting out the
/// hold timer.
#[test]
fn a_new_connection_from_the_peer_replaces_the_old() {
    let mut w = up_with_routes();
    let now = w.now;
    w.cgw.forget_connection(now);
    assert!(w.run_until(
        Duration::from_secs(5),
        |w| w.vgw.counters().connections_replaced == 1
    ));
    assert!(w.run_until(Duration::from_secs(5), |w| w.vgw.state()
        == State::Established
        && w.vgw.routes().len() == 2));
    assert!(w.now - now < Duration::from_secs(5));
    assert_eq!(w.vgw.counters().sessions_established, 2);
}

/// Only the customer gateway's inside address may connect: a SYN from any
/// other source is refused with a RST and counted, and the session is
/// not disturbed.
#[test]
fn a_connection_from_another_address_is_refused() {
    let mut w = up_with_routes();
    for (i, stranger) in [Ipv4Addr::new(10, 9, 8, 7), Ipv4Addr::new(169, 254, 99, 2)]
        .into_iter()
        .enumerate()
    {
        let mut other = Customer::new(stranger, 32, 99);
        let mut refused = false;
        for _ in 0..40 {
            w.step();
            let now = w.now;
            for pkt in other.poll(now) {
                w.vgw.receive(&pkt, now).unwrap();
            }
            let answers = w.vgw.poll(now);
            // Our answer to the stranger goes to the stranger.
            for pkt in answers {
                let dst = Ipv4Addr::new(pkt[16], pkt[17], pkt[18], pkt[19]);
                if dst == stranger {
                    other.device.rx.push_back(pkt);
                } else {
                    w.cgw.device.rx.push_back(pkt);
                }
            }
            // The RST closed its connection (it retries a second later).
            if other.conn.is_none() {
                refused = true;
                break;
            }
            assert_ne!(other.tcp_state(), Some(tcp::State::Established));
        }
        assert!(refused, "connection from {stranger} was not refused");
        assert_eq!(w.vgw.counters().refused_connections, i as u64 + 1);
    }
    assert_eq!(w.vgw.state(), State::Established);
    assert_eq!(w.vgw.counters().connections, 1);
    w.run_for(Duration::from_secs(2));
    assert_eq!(w.vgw.state(), State::Established);
}

/// Spec 10.2: the inside CIDR is a /30 from 169.254.0.0/16.
#[test]
fn the_inside_cidr_must_be_a_link_local_slash_30() {
    let cfg = tunnel_session_config(US, AMAZON_ASN, CUSTOMER_ASN);
    let e = BgpEndpoint::new("169.254.44.8/29".parse().unwrap(), cfg.clone()).unwrap_err();
    assert!(matches!(e, Error::NotSlash30(_)), "{e}");
    let e = BgpEndpoint::new("10.0.0.0/30".parse().unwrap(), cfg.clone()).unwrap_err();
    assert!(matches!(e, Error::NotLinkLocal(_)), "{e}");
    // Host bits are ignored: .10/30 is the same tunnel.
    let ep = BgpEndpoint::new("169.254.44.10/30".parse().unwrap(), cfg).unwrap();
    assert_eq!((ep.local_addr(), ep.peer_addr()), (US, CGW));
}

/// Packets not for us are counted, not taken.
#[test]
fn packets_for_another_address_are_counted() {
    let mut w = World::new();
    w.run_until(Duration::from_secs(1), |w| !w.sent_by_cgw.is_empty());
    let mut syn = w.sent_by_cgw[0].clone();
    // Readdress to .10 (the customer's own address) and fix the IP
    // checksum: well formed, not ours.
    syn[16..20].copy_from_slice(&CGW.octets());
    syn[10..12].copy_from_slice(&[0, 0]);
    let sum = ip_checksum(&syn[..20]);
    syn[10..12].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(w.vgw.receive(&syn, w.now), Err(InsideDrop::NotOurs));
    assert_eq!(w.vgw.counters().dropped_not_ours, 1);
}

fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random bytes are counted drops and never panic; the session is not
    /// disturbed by them.
    #[test]
    fn random_packets_are_counted_drops(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
    ) {
        let mut w = up_with_routes();
        let before = w.vgw.counters();
        let mut refused = 0u64;
        for pkt in &packets {
            if w.vgw.receive(pkt, w.now).is_err() {
                refused += 1;
            }
        }
        let _ = w.vgw.poll(w.now);
        let c = w.vgw.counters();
        prop_assert_eq!(
            c.dropped_malformed + c.dropped_not_ours
                - before.dropped_malformed - before.dropped_not_ours,
            refused
        );
        w.run_for(Duration::from_secs(1));
        prop_assert_eq!(w.vgw.state(), State::Established);
    }

    /// The customer's real packets with one byte changed: dropped (a bad
    /// checksum) or handled, never a panic.
    #[test]
    fn corrupted_packets_never_panic(
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..30),
    ) {
        let mut w = up_with_routes();
        let sent = w.sent_by_cgw.clone();
        for (which, at, byte) in picks {
            let mut pkt = which.get(&sent).clone();
            let i = at.index(pkt.len());
            pkt[i] ^= byte | 1;
            let _ = w.vgw.receive(&pkt, w.now);
            let _ = w.vgw.poll(w.now);
        }
        let c = w.vgw.counters();
        prop_assert!(c.dropped_malformed + c.dropped_not_ours + c.packets_in > 0);
    }
}
