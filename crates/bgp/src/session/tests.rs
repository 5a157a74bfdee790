//! FSM tests with time as an argument: two sessions joined in memory, or
//! one session fed hand-made messages. Each names the RFC 4271 rule it
//! checks.

use super::*;
use crate::wire::{Capability, Update};
use proptest::prelude::*;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn p(x: &str) -> Ipv4Prefix {
    x.parse().unwrap()
}

fn cfg(local: u32, peer: u32, id: [u8; 4], hold: u16) -> Config {
    Config {
        hold_time: hold,
        ..Config::new(local, peer, Ipv4Addr::from(id))
    }
}

/// Decodes everything a session wrote.
fn sent(sess: &mut Session, four: bool) -> Vec<Message> {
    let bytes = sess.take_output();
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let Some(len) = wire::frame(rest).unwrap() {
        out.push(Message::decode(&rest[..len], four).unwrap());
        rest = &rest[len..];
    }
    assert!(rest.is_empty());
    out
}

fn events(sess: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| sess.poll_event()).collect()
}

/// Moves bytes both ways until neither side has anything to say.
fn pump(a: &mut Session, b: &mut Session, now: Duration) {
    for _ in 0..10 {
        let (x, y) = (a.take_output(), b.take_output());
        if x.is_empty() && y.is_empty() {
            return;
        }
        b.received(&x, now);
        a.received(&y, now);
    }
}

fn pair(hold_a: u16, hold_b: u16) -> (Session, Session) {
    let mut a = Session::new(cfg(65010, 65000, [10, 0, 0, 2], hold_a)).unwrap();
    let mut b = Session::new(cfg(65000, 65010, [10, 0, 0, 1], hold_b)).unwrap();
    a.connect(s(0.0));
    b.listen(s(0.0));
    a.connected(s(0.0));
    b.connected(s(0.0));
    pump(&mut a, &mut b, s(0.0));
    (a, b)
}

fn bytes(m: Message) -> Vec<u8> {
    m.encode(true).unwrap()
}

/// A session in OpenSent, its OPEN consumed.
fn open_sent(config: Config) -> Session {
    let mut sess = Session::new(config).unwrap();
    sess.connect(s(0.0));
    sess.connected(s(0.0));
    let out = sent(&mut sess, true);
    assert!(matches!(out[..], [Message::Open(_)]));
    sess
}

fn established(config: Config, peer_hold: u16) -> Session {
    let peer_as = config.peer_as;
    let mut sess = open_sent(config);
    sess.received(
        &bytes(Message::Open(Open::new(
            peer_as,
            peer_hold,
            Ipv4Addr::new(10, 0, 0, 9),
        ))),
        s(0.0),
    );
    sess.received(&bytes(Message::Keepalive), s(0.0));
    assert_eq!(sess.state(), State::Established);
    sess.take_output();
    events(&mut sess);
    sess
}

fn down_reason(sess: &mut Session) -> DownReason {
    events(sess)
        .into_iter()
        .find_map(|e| match e {
            Event::Down { reason } => Some(reason),
            _ => None,
        })
        .expect("a Down event")
}

#[test]
fn two_sessions_reach_established_and_exchange_routes() {
    // RFC 4271 §8.2.2: OPEN → OpenSent → OPEN received, KEEPALIVE sent →
    // OpenConfirm → KEEPALIVE received → Established.
    let (mut a, mut b) = pair(9, 90);
    assert_eq!(a.state(), State::Established);
    assert_eq!(b.state(), State::Established);
    // The smaller hold time wins on both sides.
    assert_eq!(a.hold_time(), Some(9));
    assert_eq!(b.hold_time(), Some(9));
    assert_eq!(b.peer_id(), Some(Ipv4Addr::new(10, 0, 0, 2)));
    assert!(matches!(
        events(&mut a)[..],
        [Event::Established { hold_time: 9, .. }]
    ));
    events(&mut b);

    let nh = Ipv4Addr::new(10, 0, 0, 2);
    a.set_announced(
        [p("203.0.113.0/24"), p("198.51.100.0/25")],
        nh,
        ExportAttrs {
            med: Some(10),
            ..Default::default()
        },
        s(1.0),
    );
    pump(&mut a, &mut b, s(1.0));
    let r = &b.routes()[&p("203.0.113.0/24")];
    assert_eq!(r.next_hop, nh);
    assert_eq!(r.as_path, vec![AsSegment::sequence(vec![65010])]);
    assert_eq!(r.med, Some(10));
    // External peers get no LOCAL_PREF (RFC 4271 §5.1.5).
    assert_eq!(r.local_pref, None);
    assert_eq!(b.routes().len(), 2);
    assert_eq!(
        events(&mut b),
        vec![Event::RoutesChanged {
            updated: vec![p("198.51.100.0/25"), p("203.0.113.0/24")],
            withdrawn: vec![]
        }]
    );

    // Only the difference is sent: one withdrawal, nothing re-announced.
    a.set_announced(
        [p("203.0.113.0/24")],
        nh,
        ExportAttrs {
            med: Some(10),
            ..Default::default()
        },
        s(2.0),
    );
    let msgs = sent(&mut a, true);
    assert_eq!(
        msgs,
        vec![Message::Update(Update {
            withdrawn: vec![p("198.51.100.0/25")],
            attributes: None,
            nlri: vec![]
        })]
    );
    b.received(&bytes(msgs[0].clone()), s(2.0));
    assert_eq!(
        b.routes().keys().copied().collect::<Vec<_>>(),
        vec![p("203.0.113.0/24")]
    );

    // Unchanged: nothing at all.
    a.set_announced(
        [p("203.0.113.0/24")],
        nh,
        ExportAttrs {
            med: Some(10),
            ..Default::default()
        },
        s(3.0),
    );
    assert!(!a.has_output());
    // A new next hop re-announces.
    a.set_announced(
        [p("203.0.113.0/24")],
        Ipv4Addr::new(10, 0, 0, 3),
        ExportAttrs::default(),
        s(3.0),
    );
    pump(&mut a, &mut b, s(3.0));
    assert_eq!(
        b.routes()[&p("203.0.113.0/24")].next_hop,
        Ipv4Addr::new(10, 0, 0, 3)
    );
}

#[test]
fn announcements_made_before_established_go_out_on_established() {
    let mut a = Session::new(cfg(65010, 65000, [10, 0, 0, 2], 90)).unwrap();
    let mut b = Session::new(cfg(65000, 65010, [10, 0, 0, 1], 90)).unwrap();
    a.set_announced(
        [p("203.0.113.0/24")],
        Ipv4Addr::new(10, 0, 0, 2),
        ExportAttrs::default(),
        s(0.0),
    );
    a.connected(s(0.0));
    b.connected(s(0.0));
    pump(&mut a, &mut b, s(0.0));
    assert_eq!(b.routes().len(), 1);
    // After a reconnect they are sent again.
    a.disconnected(s(5.0));
    b.disconnected(s(5.0));
    assert!(b.routes().is_empty());
    a.connected(s(6.0));
    b.connected(s(6.0));
    pump(&mut a, &mut b, s(6.0));
    assert_eq!(b.routes().len(), 1);
}

#[test]
fn internal_peer_gets_empty_path_and_local_pref() {
    let mut a = Session::new(cfg(65000, 65000, [10, 0, 0, 2], 90)).unwrap();
    let mut b = Session::new(cfg(65000, 65000, [10, 0, 0, 1], 90)).unwrap();
    a.connected(s(0.0));
    b.connected(s(0.0));
    pump(&mut a, &mut b, s(0.0));
    a.set_announced(
        [p("203.0.113.0/24")],
        Ipv4Addr::new(10, 0, 0, 2),
        ExportAttrs::default(),
        s(0.0),
    );
    pump(&mut a, &mut b, s(0.0));
    let r = &b.routes()[&p("203.0.113.0/24")];
    assert!(r.as_path.is_empty());
    assert_eq!(r.local_pref, Some(DEFAULT_LOCAL_PREF));
}

#[test]
fn keepalive_every_third_of_hold_time() {
    // RFC 4271 §4.4: KEEPALIVEs at a third of the hold time.
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 3), 90);
    assert_eq!(a.hold_time(), Some(3));
    a.tick(s(0.99));
    assert!(!a.has_output());
    a.tick(s(1.0));
    assert_eq!(sent(&mut a, true), vec![Message::Keepalive]);
    a.tick(s(1.5));
    assert!(!a.has_output());
    a.tick(s(2.0));
    assert_eq!(sent(&mut a, true), vec![Message::Keepalive]);
    assert_eq!(a.next_deadline(), Some(s(3.0)));
}

#[test]
fn hold_timer_expiry_sends_notification_and_goes_down() {
    // RFC 4271 §6.5: no KEEPALIVE or UPDATE within the hold time.
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 3), 3);
    // A keepalive at 2.5 s restarts the hold timer.
    a.received(&bytes(Message::Keepalive), s(2.5));
    a.tick(s(3.0));
    assert_eq!(a.state(), State::Established);
    a.take_output();
    a.tick(s(5.49));
    a.take_output();
    assert_eq!(a.state(), State::Established);
    a.tick(s(5.5));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(4, 0))]
    );
    assert_eq!(a.state(), State::Idle);
    assert_eq!(down_reason(&mut a), DownReason::HoldTimerExpired);
}

#[test]
fn hold_time_zero_means_no_keepalives_and_no_expiry() {
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 0);
    assert_eq!(a.hold_time(), Some(0));
    assert_eq!(a.next_deadline(), None);
    a.tick(s(100_000.0));
    assert!(!a.has_output());
    assert_eq!(a.state(), State::Established);
}

#[test]
fn no_open_within_four_minutes() {
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 3));
    a.tick(s(239.0));
    assert_eq!(a.state(), State::OpenSent);
    a.tick(s(240.0));
    assert_eq!(a.state(), State::Idle);
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(4, 0))]
    );
}

#[test]
fn hold_time_of_one_or_two_refused() {
    // RFC 4271 §6.2: Unacceptable Hold Time.
    for hold in [1u8, 2] {
        let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
        let mut open = bytes(Message::Open(Open::new(
            65000,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
        )));
        open[22] = 0;
        open[23] = hold;
        a.received(&open, s(0.0));
        assert_eq!(
            sent(&mut a, true),
            vec![Message::Notification(Notification::new(2, 6))]
        );
        assert_eq!(a.state(), State::Idle);
    }
    assert_eq!(
        Session::new(cfg(1, 2, [1, 1, 1, 1], 2)).unwrap_err(),
        ConfigError::HoldTime(2)
    );
}

#[test]
fn wrong_peer_as_refused() {
    // RFC 4271 §6.2: Bad Peer AS.
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    a.received(
        &bytes(Message::Open(Open::new(
            65099,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
        ))),
        s(0.0),
    );
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(2, 2))]
    );
    assert_eq!(
        down_reason(&mut a),
        DownReason::Error(SessionError::BadPeerAs {
            expected: 65000,
            got: 65099
        })
    );
}

#[test]
fn four_octet_peer_as_from_capability() {
    // RFC 6793: the real AS is in the capability, AS_TRANS in the field.
    let mut a = open_sent(cfg(65010, 4_200_000_000, [10, 0, 0, 2], 90));
    a.received(
        &bytes(Message::Open(Open::new(
            4_200_000_000,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
        ))),
        s(0.0),
    );
    assert_eq!(a.state(), State::OpenConfirm);
    // Our own 4-octet AS goes out as AS_TRANS plus the capability.
    let mut c = Session::new(cfg(4_200_000_001, 65000, [10, 0, 0, 2], 90)).unwrap();
    c.connected(s(0.0));
    let [Message::Open(o)] = &sent(&mut c, true)[..] else {
        panic!()
    };
    assert_eq!(o.my_as, wire::AS_TRANS);
    assert!(
        o.capabilities
            .contains(&Capability::FourOctetAs(4_200_000_001))
    );
}

#[test]
fn two_octet_peer_gets_two_octet_paths() {
    // A peer without the 4-octet capability: AS_PATH in 2-octet numbers.
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    let mut open = Open::new(65000, 90, Ipv4Addr::new(10, 0, 0, 1));
    open.capabilities.clear();
    a.received(&bytes(Message::Open(open)), s(0.0));
    a.received(&bytes(Message::Keepalive), s(0.0));
    a.take_output();
    a.set_announced(
        [p("203.0.113.0/24")],
        Ipv4Addr::new(10, 0, 0, 2),
        ExportAttrs::default(),
        s(0.0),
    );
    let msgs = sent(&mut a, false);
    let Message::Update(u) = &msgs[0] else {
        panic!()
    };
    assert_eq!(
        u.attributes.as_ref().unwrap().as_path,
        vec![AsSegment::sequence(vec![65010])]
    );
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    // RFC 6608 subcodes: KEEPALIVE in OpenSent, UPDATE in OpenConfirm, OPEN
    // in Established.
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    a.received(&bytes(Message::Keepalive), s(0.0));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(5, 1))]
    );

    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    a.received(
        &bytes(Message::Open(Open::new(
            65000,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
        ))),
        s(0.0),
    );
    a.take_output();
    a.received(&bytes(Message::Update(Update::default())), s(0.0));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(5, 2))]
    );

    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 90);
    a.received(
        &bytes(Message::Open(Open::new(
            65000,
            90,
            Ipv4Addr::new(10, 0, 0, 1),
        ))),
        s(0.0),
    );
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(5, 3))]
    );
}

#[test]
fn peer_notification_ends_session_without_reply() {
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 90);
    a.received(&bytes(Message::Notification(Notification::cease())), s(1.0));
    assert!(!a.has_output());
    assert_eq!(a.state(), State::Idle);
    assert_eq!(
        down_reason(&mut a),
        DownReason::PeerNotification(Notification::cease())
    );
}

#[test]
fn close_sends_cease() {
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 90);
    a.close(s(1.0));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(6, 2))]
    );
    assert_eq!(down_reason(&mut a), DownReason::LocalClose);
}

#[test]
fn malformed_update_answered_with_its_notification() {
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 90);
    // An UPDATE whose NLRI has a 33-bit prefix.
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&[0, 24, 2, 0, 0, 0, 0, 33]);
    a.received(&m, s(0.0));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::new(3, 10))]
    );
    assert_eq!(a.state(), State::Idle);
}

#[test]
fn partial_and_multiple_messages_in_one_read() {
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    let mut stream = bytes(Message::Open(Open::new(
        65000,
        90,
        Ipv4Addr::new(10, 0, 0, 1),
    )));
    stream.extend(bytes(Message::Keepalive));
    stream.extend(bytes(Message::Keepalive));
    // One byte at a time.
    for b in &stream {
        a.received(std::slice::from_ref(b), s(0.0));
    }
    assert_eq!(a.state(), State::Established);
    // All in one read.
    let mut a = open_sent(cfg(65010, 65000, [10, 0, 0, 2], 90));
    a.received(&stream, s(0.0));
    assert_eq!(a.state(), State::Established);
}

fn route_update(prefixes: &[Ipv4Prefix], path: Vec<u32>) -> Vec<u8> {
    bytes(Message::Update(Update {
        withdrawn: vec![],
        attributes: Some(PathAttributes {
            origin: Origin::Igp,
            as_path: vec![AsSegment::sequence(path)],
            next_hop: Ipv4Addr::new(10, 0, 0, 9),
            med: Some(5),
            local_pref: None,
            other: vec![],
        }),
        nlri: prefixes.to_vec(),
    }))
}

#[test]
fn learned_routes_and_withdrawals() {
    let mut a = established(cfg(65010, 65000, [10, 0, 0, 2], 90), 90);
    a.received(
        &route_update(&[p("10.1.0.0/16"), p("10.2.0.0/16")], vec![65000, 7]),
        s(1.0),
    );
    let r = &a.routes()[&p("10.1.0.0/16")];
    assert_eq!(r.as_path, vec![AsSegment::sequence(vec![65000, 7])]);
    assert_eq!(
        (r.next_hop, r.med, r.origin),
        (Ipv4Addr::new(10, 0, 0, 9), Some(5), Origin::Igp)
    );
    let withdraw = bytes(Message::Update(Update {
        withdrawn: vec![p("10.1.0.0/16")],
        ..Default::default()
    }));
    a.received(&withdraw, s(2.0));
    assert_eq!(
        a.routes().keys().copied().collect::<Vec<_>>(),
        vec![p("10.2.0.0/16")]
    );
    let ev = events(&mut a);
    assert_eq!(ev.len(), 2);
    assert_eq!(
        ev[1],
        Event::RoutesChanged {
            updated: vec![],
            withdrawn: vec![p("10.1.0.0/16")]
        }
    );
    // A path through our own AS is a loop: not kept.
    a.received(
        &route_update(&[p("10.3.0.0/16")], vec![65000, 65010]),
        s(3.0),
    );
    assert!(!a.routes().contains_key(&p("10.3.0.0/16")));
    // Going down empties the Adj-RIB-In and says so.
    a.disconnected(s(4.0));
    assert!(a.routes().is_empty());
    assert!(events(&mut a).contains(&Event::RoutesChanged {
        updated: vec![],
        withdrawn: vec![p("10.2.0.0/16")]
    }));
}

#[test]
fn max_prefixes_exceeded_drops_session_with_cease() {
    // RFC 4486: Cease / Maximum Number of Prefixes Reached, data AFI, SAFI,
    // limit. AWS drops a VPN BGP session past 100 prefixes.
    let mut c = cfg(65010, 65000, [10, 0, 0, 2], 90);
    c.max_prefixes = Some(100);
    let mut a = established(c, 90);
    let hundred: Vec<Ipv4Prefix> = (0..100u32)
        .map(|i| Ipv4Prefix::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        .collect();
    a.received(&route_update(&hundred, vec![65000]), s(1.0));
    assert_eq!(a.state(), State::Established);
    assert_eq!(a.routes().len(), 100);
    // Re-announcing a known prefix does not count twice.
    a.received(&route_update(&hundred[..1], vec![65000]), s(1.5));
    assert_eq!(a.state(), State::Established);
    a.received(&route_update(&[p("192.0.2.0/24")], vec![65000]), s(2.0));
    assert_eq!(
        sent(&mut a, true),
        vec![Message::Notification(Notification::with_data(
            6,
            1,
            vec![0, 1, 1, 0, 0, 0, 100]
        ))]
    );
    assert_eq!(a.state(), State::Idle);
    assert!(a.routes().is_empty());
    assert_eq!(
        down_reason(&mut a),
        DownReason::Error(SessionError::MaxPrefixes {
            limit: 100,
            count: 101
        })
    );
}

proptest! {
    #[test]
    fn feeding_arbitrary_bytes_never_panics(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8),
        established_first: bool,
    ) {
        let mut a = if established_first {
            established(cfg(65010, 65000, [10, 0, 0, 2], 3), 3)
        } else {
            open_sent(cfg(65010, 65000, [10, 0, 0, 2], 3))
        };
        let mut t = 0.0;
        for c in &chunks {
            // A valid marker first so the bytes reach the message decoders.
            let mut m = vec![0xff; 16];
            m.extend_from_slice(c);
            a.received(&m, s(t));
            a.tick(s(t));
            t += 0.7;
        }
        let _ = a.take_output();
        let _ = events(&mut a);
    }
}
