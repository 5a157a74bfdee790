//! The TCP shell around a [`Session`]: one thread per peer that connects to
//! `peer:179` through a connect function the caller supplies (so the socket
//! can be made inside a network namespace), drives the session with real
//! time over blocking `std::net` I/O with short read timeouts, and
//! reconnects with exponential backoff. A failure is logged once per outage
//! (tracing `warn`), recovery once (`info`); the rest is `debug`.
//!
//! It owns the thread, the socket and the clock; every protocol decision is
//! the session's. It does not listen for peers.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::session::{Config, ConfigError, DownReason, Event, ExportAttrs, Route, Session, State};
use crate::wire::Ipv4Prefix;

/// The BGP port.
pub const BGP_PORT: u16 = 179;

/// How often the thread looks at the handle's requests and the timers while
/// waiting for the peer.
const POLL: Duration = Duration::from_millis(50);

/// How to reach the peer and how hard to retry.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    pub session: Config,
    /// The peer's address, normally port 179.
    pub peer: SocketAddr,
    pub connect_timeout: Duration,
    /// First wait after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl SpeakerConfig {
    /// Connects to `peer_ip:179`; 5 s connect timeout; retries after 1 s,
    /// backing off to 30 s.
    pub fn new(session: Config, peer_ip: Ipv4Addr) -> Self {
        Self {
            session,
            peer: SocketAddr::V4(SocketAddrV4::new(peer_ip, BGP_PORT)),
            connect_timeout: Duration::from_secs(5),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// Why a speaker could not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("could not start the speaker thread: {0}")]
    Thread(#[source] io::Error),
}

/// A snapshot of the session, for status pages and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// When it entered that state.
    pub since: Instant,
    pub prefixes_received: usize,
    /// Why the last session or connection attempt ended.
    pub last_error: Option<String>,
    /// How many times the session reached Established.
    pub established_count: u64,
}

/// What we announce, as the handle last set it.
#[derive(Debug, Clone)]
struct Announce {
    prefixes: Vec<Ipv4Prefix>,
    next_hop: Ipv4Addr,
    attrs: ExportAttrs,
}

#[derive(Debug)]
struct Inner {
    status: Status,
    routes: BTreeMap<Ipv4Prefix, Route>,
    /// A new announcement the thread has not applied yet.
    announce: Option<Announce>,
    stop: bool,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave Inner inconsistent (plain fields).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running speaker for one peer. Dropping it stops it as [`Speaker::stop`]
/// does.
#[derive(Debug)]
pub struct Speaker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Connects the plain way, in the calling thread's network namespace.
pub fn connect_direct(peer: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&peer, timeout)
}

impl Speaker {
    /// Starts the speaker's thread. `connect` makes the TCP connection to
    /// the given address within the timeout; it runs in the speaker's
    /// thread each time a connection is needed.
    pub fn spawn<F>(config: SpeakerConfig, connect: F) -> Result<Speaker, SpawnError>
    where
        F: FnMut(SocketAddr, Duration) -> io::Result<TcpStream> + Send + 'static,
    {
        let session = Session::new(config.session.clone())?;
        let origin = Instant::now();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                status: Status {
                    state: State::Idle,
                    since: origin,
                    prefixes_received: 0,
                    last_error: None,
                    established_count: 0,
                },
                routes: BTreeMap::new(),
                announce: None,
                stop: false,
            }),
            wake: Condvar::new(),
        });
        let mut worker = Worker {
            config,
            session,
            shared: Arc::clone(&shared),
            origin,
            in_outage: false,
        };
        let thread = std::thread::Builder::new()
            .name(format!("bgp {}", worker.config.peer))
            .spawn(move || worker.run(connect))
            .map_err(SpawnError::Thread)?;
        Ok(Speaker {
            shared,
            thread: Some(thread),
        })
    }

    /// Sets what we announce; the difference goes out at once if the
    /// session is up, everything on each new session otherwise.
    pub fn set_announced(&self, prefixes: Vec<Ipv4Prefix>, next_hop: Ipv4Addr, attrs: ExportAttrs) {
        self.shared.lock().announce = Some(Announce {
            prefixes,
            next_hop,
            attrs,
        });
        self.shared.wake.notify_all();
    }

    pub fn status(&self) -> Status {
        self.shared.lock().status.clone()
    }

    /// The routes the peer announced to us (Adj-RIB-In).
    pub fn routes(&self) -> BTreeMap<Ipv4Prefix, Route> {
        self.shared.lock().routes.clone()
    }

    /// Sends Cease if the session is up, closes the connection and waits
    /// for the thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The speaker thread's state.
struct Worker {
    config: SpeakerConfig,
    session: Session,
    shared: Arc<Shared>,
    origin: Instant,
    /// A failure was logged and no session has come up since.
    in_outage: bool,
}

impl Worker {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn run<F>(&mut self, mut connect: F)
    where
        F: FnMut(SocketAddr, Duration) -> io::Result<TcpStream>,
    {
        let mut backoff = self.config.retry_min;
        loop {
            if self.take_requests() {
                break;
            }
            let now = self.now();
            self.session.connect(now);
            self.publish();
            let peer = self.config.peer;
            match connect(peer, self.config.connect_timeout) {
                Ok(stream) => {
                    let was_established = self.run_connection(stream);
                    if was_established {
                        backoff = self.config.retry_min;
                    }
                }
                Err(e) => {
                    self.outage(&format!("could not connect to {peer}: {e}"));
                    let now = self.now();
                    self.session.disconnected(now);
                    self.publish();
                }
            }
            if self.sleep(backoff) {
                break;
            }
            backoff = (backoff * 2).min(self.config.retry_max);
        }
        let now = self.now();
        self.session.close(now);
        self.drain_events();
        self.publish();
    }

    /// Applies the handle's requests; true when asked to stop.
    fn take_requests(&mut self) -> bool {
        let (announce, stop) = {
            let mut inner = self.shared.lock();
            (inner.announce.take(), inner.stop)
        };
        if let Some(a) = announce {
            let now = self.now();
            self.session
                .set_announced(a.prefixes, a.next_hop, a.attrs, now);
        }
        stop
    }

    /// Waits `d` or until stopped; true when stopped.
    fn sleep(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut inner = self.shared.lock();
        loop {
            if inner.stop {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = match self.shared.wake.wait_timeout(inner, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn outage(&mut self, what: &str) {
        if self.in_outage {
            tracing::debug!("BGP peer {}: {what}", self.config.peer);
        } else {
            tracing::warn!(
                "BGP peer {}: {what}; retrying with backoff (further failures are not logged until it recovers)",
                self.config.peer
            );
            self.in_outage = true;
        }
        self.shared.lock().status.last_error = Some(what.to_string());
    }

    /// Runs one connection until it ends; true if it reached Established.
    fn run_connection(&mut self, mut stream: TcpStream) -> bool {
        let mut reached = false;
        let setup = stream
            .set_read_timeout(Some(POLL))
            .and_then(|()| stream.set_nodelay(true))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))));
        if let Err(e) = setup {
            self.outage(&format!("socket setup failed: {e}"));
            return false;
        }
        let now = self.now();
        self.session.connected(now);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let stop = self.take_requests();
            let now = self.now();
            if stop {
                self.session.close(now);
            } else {
                match stream.read(&mut buf) {
                    Ok(0) => self.session.disconnected(now),
                    Ok(n) => self.session.received(&buf[..n], now),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                                | io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        self.shared.lock().status.last_error = Some(format!("read: {e}"));
                        self.session.disconnected(now);
                    }
                }
                self.session.tick(self.now());
            }
            let out = self.session.take_output();
            if !out.is_empty()
                && let Err(e) = stream.write_all(&out)
            {
                self.shared.lock().status.last_error = Some(format!("write: {e}"));
                let now = self.now();
                self.session.disconnected(now);
            }
            reached |= self.drain_events();
            self.publish();
            if self.session.state() == State::Idle {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return reached;
            }
        }
    }

    /// Logs events and copies routes out; true if one was Established.
    fn drain_events(&mut self) -> bool {
        let mut established = false;
        while let Some(ev) = self.session.poll_event() {
            match ev {
                Event::Established { peer_id, hold_time } => {
                    established = true;
                    self.in_outage = false;
                    tracing::info!(
                        "BGP peer {} ({peer_id}): established, hold time {hold_time} s",
                        self.config.peer
                    );
                    self.shared.lock().status.established_count += 1;
                }
                Event::Down { reason } => {
                    if reason != DownReason::LocalClose {
                        self.outage(&format!("session down: {reason}"));
                    }
                }
                Event::RoutesChanged { .. } => {
                    let routes = self.session.routes().clone();
                    self.shared.lock().routes = routes;
                }
            }
        }
        established
    }

    fn publish(&self) {
        let mut inner = self.shared.lock();
        let st = &mut inner.status;
        if st.state != self.session.state() {
            st.state = self.session.state();
            st.since = self.origin + self.session.since();
        }
        st.prefixes_received = self.session.routes().len();
    }
}
