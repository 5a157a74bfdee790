//! The TCP shell over loopback, without root or daemons: a speaker
//! connects to a listener driven by a second, passive [`Session`]; the
//! session comes up, the route arrives, a dropped connection is retried,
//! and `stop` sends Cease.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use openvpc_bgp::speaker::{SpeakerConfig, connect_direct};
use openvpc_bgp::wire::Notification;
use openvpc_bgp::{Config, DownReason, Event, ExportAttrs, Ipv4Prefix, Session, Speaker, State};

/// Drives the passive side of a connection until `until` says stop or
/// the session ends; returns its events.
fn serve(
    stream: &mut TcpStream,
    sess: &mut Session,
    origin: Instant,
    mut until: impl FnMut(&Session) -> bool,
) -> Vec<Event> {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut events = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => sess.disconnected(origin.elapsed()),
            Ok(n) => sess.received(&buf[..n], origin.elapsed()),
            Err(_) => {}
        }
        sess.tick(origin.elapsed());
        let out = sess.take_output();
        if !out.is_empty() {
            let _ = stream.write_all(&out);
        }
        events.extend(std::iter::from_fn(|| sess.poll_event()));
        if sess.state() == State::Idle || until(sess) {
            break;
        }
    }
    events
}

#[test]
fn speaker_over_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let me = Ipv4Addr::new(192, 0, 2, 2);
    let mut cfg = SpeakerConfig::new(
        Config {
            hold_time: 3,
            ..Config::new(65010, 65000, me)
        },
        Ipv4Addr::LOCALHOST,
    );
    cfg.peer = addr;
    cfg.retry_min = Duration::from_millis(100);
    let speaker = Speaker::spawn(cfg, connect_direct).unwrap();
    let pool: Ipv4Prefix = "203.0.113.0/24".parse().unwrap();
    speaker.set_announced(vec![pool], me, ExportAttrs::default());

    let origin = Instant::now();
    let mut peer = Session::new(Config::new(65000, 65010, Ipv4Addr::new(192, 0, 2, 1))).unwrap();
    peer.listen(origin.elapsed());

    // First connection: up, route received; then we drop it.
    let (mut conn, _) = listener.accept().unwrap();
    peer.connected(origin.elapsed());
    serve(&mut conn, &mut peer, origin, |s| {
        s.routes().contains_key(&pool)
    });
    assert_eq!(peer.state(), State::Established);
    assert_eq!(peer.routes()[&pool].next_hop, me);
    drop(conn);
    peer.disconnected(origin.elapsed());

    // The speaker comes back by itself and re-announces.
    let (mut conn, _) = listener.accept().unwrap();
    peer.connected(origin.elapsed());
    serve(&mut conn, &mut peer, origin, |s| {
        s.routes().contains_key(&pool)
    });
    assert_eq!(peer.state(), State::Established);
    // The speaker's own thread may not have read our KEEPALIVE yet (it sent
    // its UPDATE from OpenConfirm's answer): give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = speaker.status();
    while status.state != State::Established && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        status = speaker.status();
    }
    assert_eq!(status.state, State::Established);
    assert_eq!(status.established_count, 2);

    // stop() sends Cease / Administrative Shutdown.
    let stopper = std::thread::spawn(move || speaker.stop());
    let events = serve(&mut conn, &mut peer, origin, |_| false);
    stopper.join().unwrap();
    assert!(
        events.contains(&Event::Down {
            reason: DownReason::PeerNotification(Notification::cease())
        }),
        "{events:?}"
    );
}
