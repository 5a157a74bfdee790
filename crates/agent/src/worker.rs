//! The dataplane thread: owns the [`Router`], every ENI's TAP queue and the
//! underlay UDP socket, and moves frames between them. One poll(2) covers
//! the TAPs, the socket and a wake socket for commands (ENI changes, mapping
//! answers, status, stop), so the control side never touches the router.
//!
//! Frames whose destination is still being looked up wait in a small
//! bounded queue and are retried when answers arrive; what waits too long
//! is dropped and counted. Time is a monotonic millisecond clock handed to
//! the router.
//!
//! It must not block: no DNS, no HTTP, no `ip` commands on this thread.

use core::net::SocketAddr;
use std::collections::{BTreeSet, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvpc_dataplane::PacketBuf;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::eni::{EniConfig, EniError};
use openvpc_dataplane::router::{BATCH, EniIndex, Output, Router, RouterConfig, RouterStats};
use openvpc_model::host::{GENEVE_PORT, MappingAnswer, MappingKey};

use crate::mapping::{MappingCache, MappingStats};
use crate::netns::{self, NetnsError};

/// Largest frame or datagram read: a 64 KiB datagram fits.
const MAX_FRAME: usize = 65_536;
/// How often flows are expired and negative mappings swept.
const HOUSEKEEPING_MS: u64 = 1_000;
/// Batches one fd may take per wake-up before the others get their turn.
const BATCHES_PER_WAKE: usize = 4;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(
        "could not bind the underlay socket {addr}: {source}; is the address configured (in the underlay namespace, if one is set) and port {GENEVE_PORT} free?"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("could not set up the worker: {0}")]
    Io(#[from] io::Error),
    #[error("the worker thread has stopped")]
    Gone,
}

/// How to run the worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub router: RouterConfig,
    /// The namespace the underlay socket lives in; `None` for ours.
    pub underlay_netns: Option<String>,
    /// The port the underlay socket binds: [`GENEVE_PORT`], or 0 in tests
    /// that cannot own it. Peers are always sent to [`GENEVE_PORT`].
    pub underlay_port: u16,
    /// Most frames waiting for a mapping at once.
    pub pending_capacity: usize,
    /// How long a frame may wait for its mapping.
    pub pending_timeout_ms: u64,
    /// Most mapping cache entries.
    pub mapping_capacity: usize,
}

impl WorkerConfig {
    /// Defaults: our namespace, port 6081, 256 frames waiting at most 1 s.
    pub fn new(router: RouterConfig) -> Self {
        WorkerConfig {
            router,
            underlay_netns: None,
            underlay_port: GENEVE_PORT,
            pending_capacity: 256,
            pending_timeout_ms: 1_000,
            mapping_capacity: crate::mapping::DEFAULT_CAPACITY,
        }
    }
}

/// I/O counters besides the router's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub tap_rx: u64,
    pub tap_tx: u64,
    pub underlay_rx: u64,
    pub underlay_tx: u64,
    pub tap_write_errors: u64,
    pub underlay_send_errors: u64,
    pub pending_queued: u64,
    pub pending_timed_out: u64,
    pub pending_overflow: u64,
    /// Flow-log records drained from the router and discarded: nothing
    /// ships flow logs yet.
    pub flow_log_records: u64,
}

/// A snapshot of the worker for a status query.
#[derive(Debug, Clone, Default)]
pub struct WorkerStatus {
    pub enis: Vec<String>,
    pub flows: usize,
    pub router: RouterStats,
    pub drops: Vec<(DropReason, u64)>,
    pub mapping: MappingStats,
    pub mapping_entries: usize,
    pub pending: usize,
    pub io: IoCounters,
}

enum Command {
    Upsert {
        config: Box<EniConfig>,
        tap: Option<File>,
        reply: Sender<Result<EniIndex, EniError>>,
    },
    Remove {
        eni_id: String,
        reply: Sender<bool>,
    },
    Mappings(Vec<MappingAnswer>),
    Invalidate(Vec<MappingKey>),
    Status(Sender<WorkerStatus>),
    Known(Sender<Vec<MappingAnswer>>),
    /// Ask the server again for every known owner, keeping them meanwhile.
    Refresh,
    Stop,
}

/// Sends commands to a worker; cheap to clone and to share between threads.
#[derive(Debug, Clone)]
pub struct WorkerClient {
    tx: Sender<Command>,
    wake: Arc<UnixDatagram>,
}

/// How long a caller waits for the worker to confirm a command.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl WorkerClient {
    fn send(&self, cmd: Command) -> Result<(), WorkerError> {
        self.tx.send(cmd).map_err(|_| WorkerError::Gone)?;
        // A full wake socket already holds a wake-up: nothing is lost.
        let _ = self.wake.send(&[1]);
        Ok(())
    }

    /// Installs or replaces an ENI. `tap` is its queue when new or
    /// re-created; `None` keeps the queue the worker holds.
    pub fn upsert_eni(
        &self,
        config: EniConfig,
        tap: Option<File>,
    ) -> Result<Result<EniIndex, EniError>, WorkerError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Upsert {
            config: Box::new(config),
            tap,
            reply,
        })?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| WorkerError::Gone)
    }

    /// Removes an ENI and closes its queue; true if it was there.
    pub fn remove_eni(&self, eni_id: &str) -> Result<bool, WorkerError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Remove {
            eni_id: eni_id.to_string(),
            reply,
        })?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| WorkerError::Gone)
    }

    /// Hands the mapping service's answers to the cache.
    pub fn mappings(&self, answers: Vec<MappingAnswer>) -> Result<(), WorkerError> {
        self.send(Command::Mappings(answers))
    }

    /// Drops changed mappings from the cache.
    pub fn invalidate(&self, keys: Vec<MappingKey>) -> Result<(), WorkerError> {
        self.send(Command::Invalidate(keys))
    }

    /// Every mapping the cache knows an owner for.
    pub fn known_mappings(&self) -> Result<Vec<MappingAnswer>, WorkerError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Known(reply))?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| WorkerError::Gone)
    }

    /// Empties the mapping cache: every destination is asked again.
    /// Re-asks the server for every known owner without dropping any: after
    /// a full state, so a stale owner is corrected and flows keep running.
    pub fn refresh_mappings(&self) -> Result<(), WorkerError> {
        self.send(Command::Refresh)
    }

    /// A snapshot of the worker's counters.
    pub fn status(&self) -> Result<WorkerStatus, WorkerError> {
        let (reply, rx) = mpsc::channel();
        self.send(Command::Status(reply))?;
        rx.recv_timeout(REPLY_TIMEOUT)
            .map_err(|_| WorkerError::Gone)
    }
}

/// The running worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    client: WorkerClient,
    thread: Option<JoinHandle<()>>,
    underlay: SocketAddr,
}

impl WorkerHandle {
    /// A sender of commands to this worker.
    pub fn client(&self) -> WorkerClient {
        self.client.clone()
    }

    /// The address the underlay socket is bound to.
    pub fn underlay_addr(&self) -> SocketAddr {
        self.underlay
    }

    /// Stops the thread and waits for it. TAP queues close; the persistent
    /// TAPs and their instances stay.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.client.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts a worker. Keys the router needs looked up are sent on `lookups`
/// in batches; answers come back through [`WorkerClient::mappings`].
pub fn spawn(
    cfg: WorkerConfig,
    lookups: Sender<Vec<MappingKey>>,
) -> Result<WorkerHandle, WorkerError> {
    let addr = SocketAddr::new(cfg.router.underlay, cfg.underlay_port);
    let udp = netns::in_netns(cfg.underlay_netns.as_deref(), || {
        Ok(UdpSocket::bind(addr).map_err(|source| WorkerError::Bind { addr, source }))
    })??;
    udp.set_nonblocking(true)?;
    let (wake_tx, wake_rx) = UnixDatagram::pair()?;
    wake_tx.set_nonblocking(true)?;
    wake_rx.set_nonblocking(true)?;
    let (tx, rx) = mpsc::channel();
    let mut mapping = MappingCache::new(cfg.mapping_capacity);
    let start = Instant::now();
    // The clock starts at 1 s so that zero never means "now".
    mapping.set_now(1_000);
    let router = Router::new(cfg.router.clone(), mapping);
    let mut worker = Worker {
        router,
        enis: BTreeSet::new(),
        taps: Vec::new(),
        udp,
        wake: wake_rx,
        rx,
        lookups,
        pending: VecDeque::new(),
        pool: Vec::new(),
        bufs: (0..BATCH).map(|_| PacketBuf::default()).collect(),
        outs: vec![Output::Pending; BATCH],
        scratch: vec![0; MAX_FRAME],
        io: IoCounters::default(),
        cfg,
        start,
        last_housekeeping: 0,
    };
    let addr = worker.udp.local_addr()?;
    let thread = std::thread::Builder::new()
        .name("openvpc-worker".into())
        .spawn(move || worker.run())?;
    Ok(WorkerHandle {
        client: WorkerClient {
            tx,
            wake: Arc::new(wake_tx),
        },
        thread: Some(thread),
        underlay: addr,
    })
}

struct Tap {
    file: File,
    /// Set after a read error other than "try again" (the device went away):
    /// the fd leaves the poll set instead of waking it forever.
    dead: bool,
}

struct Pending {
    eni: EniIndex,
    buf: PacketBuf,
    since: u64,
}

struct Worker {
    router: Router<MappingCache>,
    /// The installed ENIs' IDs, for status.
    enis: BTreeSet<String>,
    /// Indexed by the router's ENI index.
    taps: Vec<Option<Tap>>,
    udp: UdpSocket,
    wake: UnixDatagram,
    rx: Receiver<Command>,
    lookups: Sender<Vec<MappingKey>>,
    pending: VecDeque<Pending>,
    /// Spare buffers, so the frames parked in `pending` are replaced without
    /// allocating on every miss.
    pool: Vec<PacketBuf>,
    bufs: Vec<PacketBuf>,
    outs: Vec<Output>,
    scratch: Vec<u8>,
    io: IoCounters,
    cfg: WorkerConfig,
    start: Instant,
    last_housekeeping: u64,
}

/// What a readable fd in the poll set is.
#[derive(Clone, Copy)]
enum Source {
    Wake,
    Underlay,
    Tap(EniIndex),
}

/// Sends an output; free so the caller can keep borrowing its buffers.
fn emit(
    taps: &mut [Option<Tap>],
    udp: &UdpSocket,
    io: &mut IoCounters,
    out: Output,
    buf: &PacketBuf,
) {
    match out {
        Output::Underlay { dst, .. } => {
            // The flow's entropy source port would need one socket per
            // port; the receiving router does not read it.
            match udp.send_to(buf.data(), SocketAddr::new(dst, GENEVE_PORT)) {
                Ok(_) => io.underlay_tx += 1,
                Err(_) => io.underlay_send_errors += 1,
            }
        }
        Output::Instance(i) => match taps.get_mut(usize::from(i)).and_then(Option::as_mut) {
            Some(tap) => match tap.file.write(buf.data()) {
                Ok(_) => io.tap_tx += 1,
                Err(_) => io.tap_write_errors += 1,
            },
            None => io.tap_write_errors += 1,
        },
        Output::Drop(_) | Output::Pending => {}
    }
}

impl Worker {
    fn now(&self) -> u64 {
        1_000 + self.start.elapsed().as_millis() as u64
    }

    fn run(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut dirty = true;
        loop {
            if dirty {
                fds.clear();
                sources.clear();
                let mut add = |fd: i32, s: Source| {
                    fds.push(libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    sources.push(s);
                };
                add(self.wake.as_raw_fd(), Source::Wake);
                add(self.udp.as_raw_fd(), Source::Underlay);
                for (i, tap) in self.taps.iter().enumerate() {
                    if let Some(tap) = tap.as_ref().filter(|t| !t.dead) {
                        add(tap.file.as_raw_fd(), Source::Tap(i as EniIndex));
                    }
                }
                dirty = false;
            }
            // Parked frames need their deadline checked soon.
            let timeout = if self.pending.is_empty() { 500 } else { 50 };
            // SAFETY: `fds` is a live, initialised slice of pollfd and its
            // length is passed with it; poll only writes `revents`.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "poll failed; worker stops");
                    return;
                }
                continue;
            }
            let now = self.now();
            self.router.mapping_mut().set_now(now);
            for (pfd, source) in fds.iter().zip(sources.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *source {
                    Source::Wake => {
                        let mut b = [0u8; 64];
                        while self.wake.recv(&mut b).is_ok() {}
                        match self.commands(now) {
                            Ok(changed) => dirty |= changed,
                            Err(Stopped) => return,
                        }
                    }
                    Source::Underlay => self.read_underlay(now),
                    Source::Tap(i) => dirty |= self.read_tap(i, now),
                }
            }
            self.expire_pending(now);
            if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
                self.last_housekeeping = now;
                self.router.expire(now);
                self.router.mapping_mut().sweep(now);
                self.io.flow_log_records += self.router.drain_flow_logs().len() as u64;
            }
            let wanted = self.router.mapping_mut().take_wanted();
            if !wanted.is_empty() {
                // The receiver is gone only while the agent stops.
                let _ = self.lookups.send(wanted);
            }
        }
    }

    /// Applies queued commands; true if the poll set changed.
    fn commands(&mut self, now: u64) -> Result<bool, Stopped> {
        let mut changed = false;
        let mut answered = false;
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Stop => return Err(Stopped),
                Command::Upsert { config, tap, reply } => {
                    let id = config.id.clone();
                    let result = self.router.upsert_eni(*config);
                    if result.is_ok() {
                        self.enis.insert(id);
                    }
                    if let (Ok(i), Some(file)) = (&result, tap) {
                        let i = usize::from(*i);
                        if self.taps.len() <= i {
                            self.taps.resize_with(i + 1, || None);
                        }
                        self.taps[i] = Some(Tap { file, dead: false });
                        changed = true;
                    }
                    let _ = reply.send(result);
                }
                Command::Remove { eni_id, reply } => {
                    let index = self.router.eni_index(&eni_id);
                    let removed = self.router.remove_eni(&eni_id);
                    self.enis.remove(&eni_id);
                    if let Some(slot) = index.and_then(|i| self.taps.get_mut(usize::from(i))) {
                        *slot = None;
                        changed = true;
                    }
                    // Frames parked for the slot would otherwise leave
                    // through whatever ENI takes it next.
                    if let Some(i) = index {
                        self.pending.retain(|p| p.eni != i);
                    }
                    let _ = reply.send(removed);
                }
                Command::Mappings(answers) => {
                    if self.router.mapping_mut().answer(&answers) {
                        self.router.mappings_changed();
                    }
                    answered = true;
                }
                Command::Invalidate(keys) => {
                    if self.router.mapping_mut().invalidate(&keys) {
                        self.router.mappings_changed();
                    }
                }
                Command::Status(reply) => {
                    let _ = reply.send(self.status());
                }
                Command::Known(reply) => {
                    let _ = reply.send(self.router.mapping_mut().known());
                }
                Command::Refresh => {
                    let keys = self.router.mapping_mut().known_keys();
                    if !keys.is_empty() {
                        let _ = self.lookups.send(keys);
                    }
                }
            }
        }
        if answered {
            self.retry_pending(now);
        }
        Ok(changed)
    }

    fn status(&mut self) -> WorkerStatus {
        WorkerStatus {
            enis: self.enis.iter().cloned().collect(),
            flows: self.router.flow_count(),
            router: self.router.stats(),
            drops: self.router.drops().nonzero().collect(),
            mapping: self.router.mapping_mut().stats(),
            mapping_entries: self.router.mapping_mut().len(),
            pending: self.pending.len(),
            io: self.io,
        }
    }

    /// Reads datagrams until the socket is empty or the budget is spent.
    fn read_underlay(&mut self, now: u64) {
        for _ in 0..BATCHES_PER_WAKE {
            let mut n = 0;
            while n < BATCH {
                match self.udp.recv_from(&mut self.scratch) {
                    Ok((len, _)) => {
                        self.bufs[n].set(&self.scratch[..len]);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            if n == 0 {
                return;
            }
            self.io.underlay_rx += n as u64;
            self.router
                .from_underlay_batch(&mut self.bufs[..n], &mut self.outs[..n], now);
            for i in 0..n {
                emit(
                    &mut self.taps,
                    &self.udp,
                    &mut self.io,
                    self.outs[i],
                    &self.bufs[i],
                );
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Reads frames from one TAP; true if the TAP died (poll set changes).
    fn read_tap(&mut self, index: EniIndex, now: u64) -> bool {
        for _ in 0..BATCHES_PER_WAKE {
            let mut n = 0;
            let Some(tap) = self
                .taps
                .get_mut(usize::from(index))
                .and_then(Option::as_mut)
            else {
                return false;
            };
            while n < BATCH {
                match tap.file.read(&mut self.scratch) {
                    Ok(0) => break,
                    Ok(len) => {
                        self.bufs[n].set(&self.scratch[..len]);
                        n += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!(eni = index, error = %e, "TAP read failed; ignoring this TAP until the ENI is re-installed");
                        tap.dead = true;
                        break;
                    }
                }
            }
            let dead = tap.dead;
            if n > 0 {
                self.io.tap_rx += n as u64;
                self.router.from_instance_batch(
                    index,
                    &mut self.bufs[..n],
                    &mut self.outs[..n],
                    now,
                );
                for i in 0..n {
                    if self.outs[i] == Output::Pending {
                        let spare = self.pool.pop().unwrap_or_default();
                        let buf = std::mem::replace(&mut self.bufs[i], spare);
                        self.park(index, buf, now);
                    } else {
                        emit(
                            &mut self.taps,
                            &self.udp,
                            &mut self.io,
                            self.outs[i],
                            &self.bufs[i],
                        );
                    }
                }
            }
            if dead {
                return true;
            }
            if n < BATCH {
                return false;
            }
        }
        false
    }

    fn park(&mut self, eni: EniIndex, buf: PacketBuf, since: u64) {
        if self.pending.len() >= self.cfg.pending_capacity {
            self.io.pending_overflow += 1;
            self.pool.push(buf);
            return;
        }
        self.io.pending_queued += 1;
        self.pending.push_back(Pending { eni, buf, since });
    }

    /// Runs parked frames through the router again after answers arrived.
    fn retry_pending(&mut self, now: u64) {
        for _ in 0..self.pending.len() {
            let Some(mut p) = self.pending.pop_front() else {
                break;
            };
            match self.router.from_instance(p.eni, &mut p.buf, now) {
                Output::Pending => self.pending.push_back(p),
                out => {
                    emit(&mut self.taps, &self.udp, &mut self.io, out, &p.buf);
                    self.pool.push(p.buf);
                }
            }
        }
    }

    fn expire_pending(&mut self, now: u64) {
        let timeout = self.cfg.pending_timeout_ms;
        while let Some(p) = self.pending.front() {
            if now.saturating_sub(p.since) < timeout {
                break;
            }
            if let Some(p) = self.pending.pop_front() {
                self.io.pending_timed_out += 1;
                self.pool.push(p.buf);
            }
        }
    }
}

/// A stop command was received.
struct Stopped;

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{IpAddr, Ipv4Addr};
    use std::os::fd::OwnedFd;

    use openvpc_model::host::MappingRecord;
    use openvpc_packet::MacAddr;
    use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
    use openvpc_packet::ethernet::EthernetRepr;
    use openvpc_packet::ipv4::Ipv4Repr;
    use openvpc_packet::udp::UdpRepr;

    use crate::install::Converter;
    use crate::install::tests::eni;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A stand-in for a TAP: a datagram socket pair keeps frame boundaries
    /// as a TAP does. The worker gets one end, the "instance" the other.
    fn fake_tap() -> (File, UnixDatagram) {
        let (agent, instance) = UnixDatagram::pair().unwrap();
        agent.set_nonblocking(true).unwrap();
        instance
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        (File::from(OwnedFd::from(agent)), instance)
    }

    fn udp_frame(
        src_mac: &str,
        dst_mac: &str,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        payload: &[u8],
    ) -> Vec<u8> {
        PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: dst_mac.parse().unwrap(),
                src: src_mac.parse().unwrap(),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
            l4: L4Repr::Udp(UdpRepr {
                src_port: 40000,
                dst_port: 9,
            }),
        }
        .build(payload)
        .unwrap()
    }

    struct Setup {
        worker: WorkerHandle,
        lookups: Receiver<Vec<MappingKey>>,
        a: UnixDatagram,
        b: UnixDatagram,
    }

    /// A worker on loopback (any port) with ENIs A (10.0.1.10) and B
    /// (10.0.1.11) on fake TAPs.
    fn setup(pending_capacity: usize) -> Setup {
        let mut cfg = WorkerConfig::new(RouterConfig::new(LOCAL));
        cfg.underlay_port = 0;
        cfg.pending_capacity = pending_capacity;
        let (tx, lookups) = mpsc::channel();
        let worker = spawn(cfg, tx).unwrap();
        let mut conv = Converter::new();
        let client = worker.client();
        let (ta, a) = fake_tap();
        let (tb, b) = fake_tap();
        for (state, tap) in [
            (
                eni(
                    "eni-a",
                    "i-a",
                    Ipv4Addr::new(10, 0, 1, 10),
                    "02:00:00:00:00:0a",
                ),
                ta,
            ),
            (
                eni(
                    "eni-b",
                    "i-b",
                    Ipv4Addr::new(10, 0, 1, 11),
                    "02:00:00:00:00:0b",
                ),
                tb,
            ),
        ] {
            let cfg = conv.eni_config(&state).unwrap();
            client.upsert_eni(cfg, Some(tap)).unwrap().unwrap();
        }
        Setup {
            worker,
            lookups,
            a,
            b,
        }
    }

    // DESIGN.md "Mapping service": the first packet waits while the lookup runs.
    #[test]
    fn first_packet_waits_for_its_mapping_then_arrives() {
        let s = setup(256);
        let client = s.worker.client();
        let frame = udp_frame(
            "02:00:00:00:00:0a",
            "02:00:00:00:00:0b",
            Ipv4Addr::new(10, 0, 1, 10),
            Ipv4Addr::new(10, 0, 1, 11),
            b"hello over the worker",
        );
        s.a.send(&frame).unwrap();
        let keys = s.lookups.recv_timeout(Duration::from_secs(3)).unwrap();
        let key = MappingKey {
            vni: 77,
            ip: "10.0.1.11".parse().unwrap(),
        };
        assert_eq!(keys, vec![key]);
        let st = client.status().unwrap();
        assert_eq!((st.pending, st.io.pending_queued), (1, 1), "{st:#?}");
        client
            .mappings(vec![MappingAnswer {
                key,
                record: Some(MappingRecord {
                    underlay_ip: LOCAL,
                    eni_id: "eni-b".into(),
                    mac: "02:00:00:00:00:0b".into(),
                }),
            }])
            .unwrap();
        let mut got = [0u8; 2048];
        let n = s.b.recv(&mut got).unwrap();
        assert_eq!(n, frame.len());
        assert!(got[..n].ends_with(b"hello over the worker"));
        // Delivered to B's MAC.
        assert_eq!(got[..6], MacAddr([2, 0, 0, 0, 0, 0x0b]).0);
        let st = client.status().unwrap();
        assert_eq!(
            (st.pending, st.io.tap_tx, st.io.pending_timed_out),
            (0, 1, 0),
            "{st:#?}"
        );
        assert_eq!(st.enis, ["eni-a", "eni-b"]);
        // The next packet of the flow takes the fast path at once.
        s.a.send(&frame).unwrap();
        assert_eq!(s.b.recv(&mut got).unwrap(), frame.len());
        assert!(client.status().unwrap().router.fast_path >= 1);
        // Removing an ENI closes its queue.
        assert!(client.remove_eni("eni-b").unwrap());
        assert!(!client.remove_eni("eni-b").unwrap());
        s.b.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert_eq!(s.b.recv(&mut got).unwrap_or(0), 0);
        s.worker.stop();
    }

    #[test]
    fn unanswered_packets_are_bounded_and_time_out() {
        let s = setup(2);
        let client = s.worker.client();
        let frame = udp_frame(
            "02:00:00:00:00:0a",
            "02:00:00:00:00:0c",
            Ipv4Addr::new(10, 0, 1, 10),
            Ipv4Addr::new(10, 0, 1, 12),
            b"nobody home",
        );
        for _ in 0..3 {
            s.a.send(&frame).unwrap();
        }
        // Asked once, however many frames wait.
        assert_eq!(
            s.lookups
                .recv_timeout(Duration::from_secs(3))
                .unwrap()
                .len(),
            1
        );
        std::thread::sleep(Duration::from_millis(1_300));
        let st = client.status().unwrap();
        assert_eq!(st.pending, 0, "{st:#?}");
        assert_eq!(st.io.pending_queued, 2, "{st:#?}");
        assert_eq!(st.io.pending_overflow, 1, "{st:#?}");
        assert_eq!(st.io.pending_timed_out, 2, "{st:#?}");
        assert!(s.lookups.try_recv().is_err());
        s.worker.stop();
    }

    // An ARP request for a peer not yet looked up waits for the answer
    // instead of costing the instance a 1 s ARP retransmit.
    #[test]
    fn arp_for_an_unknown_peer_waits_for_its_mapping() {
        use openvpc_packet::arp::{ArpOp, ArpRepr};
        let s = setup(256);
        let request = ArpRepr {
            op: ArpOp::Request,
            sender_mac: "02:00:00:00:00:0a".parse().unwrap(),
            sender_ip: Ipv4Addr::new(10, 0, 1, 10),
            target_mac: MacAddr::ZERO,
            target_ip: Ipv4Addr::new(10, 0, 1, 11),
        };
        let mut frame = vec![0u8; 42];
        EthernetRepr {
            dst: MacAddr::BROADCAST,
            src: request.sender_mac,
            vlan: None,
            ethertype: openvpc_packet::ethernet::ethertype::ARP,
        }
        .emit(&mut frame)
        .unwrap();
        request.emit(&mut frame[14..]).unwrap();
        s.a.send(&frame).unwrap();
        let keys = s.lookups.recv_timeout(Duration::from_secs(3)).unwrap();
        s.worker
            .client()
            .mappings(vec![MappingAnswer {
                key: keys[0],
                record: Some(MappingRecord {
                    underlay_ip: LOCAL,
                    eni_id: "eni-b".into(),
                    mac: "02:00:00:00:00:0b".into(),
                }),
            }])
            .unwrap();
        let mut got = [0u8; 2048];
        let n = s.a.recv(&mut got).unwrap();
        let reply = ArpRepr::parse(&got[14..n]).unwrap();
        assert_eq!(reply.op, ArpOp::Reply);
        assert_eq!(reply.sender_mac, MacAddr([2, 0, 0, 0, 0, 0x0b]));
        s.worker.stop();
    }
}
