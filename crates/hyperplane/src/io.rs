//! The hyperplane node's packet I/O: one worker thread that owns the
//! node's [`Serve`], its Geneve socket (port 6081: hosts and edges) and its
//! peer socket ([`PEER_PORT`]: the other nodes of its shards), and feeds
//! one to the other. Thin: every decision is [`Serve`]'s; here are the
//! sockets, the clock, and the packets held until the buddy acknowledges
//! their flow's record.
//!
//! The worker publishes its figures (a [`Snapshot`]) a few times a second
//! for the status file and `/metrics`; the control loops hand it the
//! node's assignments through a channel and a wake-up socket.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::HashMap;
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvpc_agent::batch_io::{
    Mmsg, drain, enable_gro, grow_socket_buffers, poll, readable, send_segmented, sockaddr,
};
use openvpc_agent::flow_log::SharedEnis;
use openvpc_agent::netns::{self, NetnsError};
use openvpc_agent::worker::FlowLogHarvest;
use openvpc_dataplane::PacketBuf;
use openvpc_model::host::{GENEVE_PORT, MappingAnswer, MappingKey};
use openvpc_model::hyperplane::{LbAssignment, NatAssignment};
use openvpc_model::node::TargetHealthReport;
use openvpc_packet::geneve::ReturnVia;

use crate::serve::{
    BalancerStats, GatewayStats, Neighbor, NodeCounters, NodeDrop, PeerVerdict, Serve, ServeConfig,
    Verdict,
};
use crate::wire::PEER_PORT;

/// Datagrams read per system call.
const BATCH: usize = 32;
/// Batches per wake-up before the worker looks at its other sockets.
const BATCHES_PER_WAKE: usize = 8;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 9_216;
/// A GRO read: a run of datagrams the kernel coalesced.
const MAX_GRO: usize = 65_535;
/// A `UDP_SEGMENT` write: at most 64 datagrams and what one UDP send
/// carries.
const MAX_SEGMENTS: usize = 64;
const MAX_GSO_BYTES: usize = 65_507;
/// How long a new flow's first packet waits for the buddy's
/// acknowledgement before it leaves anyway (the buddy is dead or slow; the
/// record was sent, and a node that dies in this window loses the flow).
pub const ACK_WAIT: Duration = Duration::from_millis(10);
/// How often the load balancers' health checks run (probe timers, answers).
const HEALTH_EVERY_MS: i32 = 10;
/// How often the worker publishes its figures.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// How often idle flows are swept, and how many slots per gateway a sweep
/// looks at: a 256 Ki-flow table is covered in about 16 s, well inside the
/// 350 s idle timeout.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);
const EXPIRE_BUDGET: usize = 16_384;
/// Packets held per destination while its host is looked up, and in all:
/// a flood towards unknown addresses must not grow without bound.
const HELD_PER_MAPPING: usize = 16;
const HELD_FOR_MAPPINGS: usize = 4_096;
/// Keys asked of the mapping service in one call.
const LOOKUP_BATCH: usize = 256;

/// Asks the mapping service who runs each key (the agent API's
/// `/agent/v1/mappings`): one answer per key, in order.
pub type Resolver =
    Box<dyn FnMut(&[MappingKey]) -> Result<Vec<MappingAnswer>, String> + Send + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("could not bind {addr}: {source} (is another node running on this address?)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("could not start the hyperplane worker: {0}")]
    Thread(#[source] io::Error),
    #[error("the hyperplane worker has stopped")]
    Stopped,
}

/// The worker's socket counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    pub geneve_rx: u64,
    pub geneve_rx_bytes: u64,
    pub geneve_tx: u64,
    pub geneve_tx_bytes: u64,
    pub peer_rx: u64,
    pub peer_tx: u64,
    pub send_errors: u64,
    /// First packets that left without their record's acknowledgement.
    pub ack_timeouts: u64,
    /// Lookups asked of the mapping service, lookups that failed (the
    /// server away), and packets dropped for want of room while held.
    pub lookups: u64,
    pub lookup_errors: u64,
    pub held_overflow: u64,
    /// Acknowledgements received, and how long they took (sum and max, in
    /// microseconds).
    pub acks: u64,
    pub ack_wait_us_sum: u64,
    pub ack_wait_us_max: u64,
    /// Flow-log counts handed out, and those dropped because the flow-log
    /// thread was behind (the worker never waits for it).
    pub flow_log_records: u64,
    pub flow_log_records_dropped: u64,
}

/// What the worker publishes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub io: IoCounters,
    pub node: NodeCounters,
    pub node_drops: [u64; NodeDrop::ALL.len()],
    pub gateways: Vec<GatewayStats>,
    pub balancers: Vec<BalancerStats>,
    /// What the health checks found (what the heartbeat reports).
    pub target_health: Vec<TargetHealthReport>,
    pub neighbors: usize,
    /// The gateways programmed (what the heartbeat reports).
    pub serving: Vec<String>,
    /// Assignments applied.
    pub configured: u64,
}

/// Where the worker hands its gateways' flow-log counts (once a second)
/// and which of their ENIs flow logs cover (on every assignment).
#[derive(Debug)]
pub struct FlowLogSink {
    pub harvests: SyncSender<FlowLogHarvest>,
    pub enis: SharedEnis,
}

/// A node's assignments, whole.
#[derive(Debug, Clone, Default)]
pub struct Assignments {
    pub nat_gateways: Vec<NatAssignment>,
    pub load_balancers: Vec<LbAssignment>,
}

enum Command {
    Configure(Assignments, Sender<()>),
    /// The resolver's answers (`None`: the lookup failed).
    Mapped(Vec<MappingKey>, Option<Vec<MappingAnswer>>),
    Stop,
}

/// Talks to the worker from other threads.
#[derive(Debug, Clone)]
pub struct IoClient {
    tx: Sender<Command>,
    wake: Arc<UnixDatagram>,
    published: Arc<Mutex<Snapshot>>,
}

impl IoClient {
    fn send(&self, cmd: Command) -> Result<(), IoError> {
        self.tx.send(cmd).map_err(|_| IoError::Stopped)?;
        // A full wake socket already holds a wake-up.
        let _ = self.wake.send(&[1]);
        Ok(())
    }

    /// Hands the worker the node's assignments (whole); returns once it
    /// serves with them.
    pub fn configure(&self, assignments: Assignments) -> Result<(), IoError> {
        let (tx, rx) = mpsc::channel();
        self.send(Command::Configure(assignments, tx))?;
        rx.recv().map_err(|_| IoError::Stopped)
    }

    /// The worker's last published figures.
    pub fn snapshot(&self) -> Snapshot {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The running worker.
#[derive(Debug)]
pub struct IoHandle {
    client: IoClient,
    thread: Option<JoinHandle<()>>,
    underlay: SocketAddr,
}

impl IoHandle {
    pub fn client(&self) -> IoClient {
        self.client.clone()
    }

    /// The bound Geneve address.
    pub fn underlay_addr(&self) -> SocketAddr {
        self.underlay
    }

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

impl Drop for IoHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds `addr` in `netns`, waiting a little for a predecessor that was
/// just killed and still holds it.
fn bind(netns: Option<&str>, addr: SocketAddr) -> Result<UdpSocket, IoError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bound = netns::in_netns(netns, || Ok(UdpSocket::bind(addr)))?;
        match bound {
            Ok(s) => {
                s.set_nonblocking(true).map_err(IoError::Thread)?;
                grow_socket_buffers(&s);
                return Ok(s);
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(source) => return Err(IoError::Bind { addr, source }),
        }
    }
}

/// Opens the sockets on `underlay_ip` (in `netns`) and starts the worker.
pub fn spawn(
    underlay_ip: IpAddr,
    netns: Option<&str>,
    config: ServeConfig,
    resolver: Option<Resolver>,
    flow_logs: Option<FlowLogSink>,
) -> Result<IoHandle, IoError> {
    let geneve = bind(netns, SocketAddr::new(underlay_ip, GENEVE_PORT))?;
    let peer = bind(netns, SocketAddr::new(underlay_ip, PEER_PORT))?;
    let underlay = geneve.local_addr().map_err(IoError::Thread)?;
    if let Err(e) = enable_gro(geneve.as_raw_fd()) {
        tracing::warn!(error = %e, "UDP GRO is not available; underlay datagrams arrive one by one");
    }
    let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(IoError::Thread)?;
    wake_tx.set_nonblocking(true).map_err(IoError::Thread)?;
    wake_rx.set_nonblocking(true).map_err(IoError::Thread)?;
    let (tx, rx) = mpsc::channel();
    let wake_tx = Arc::new(wake_tx);
    let lookups = match resolver {
        Some(r) => Some(spawn_resolver(r, tx.clone(), wake_tx.clone())?),
        None => None,
    };
    let published = Arc::new(Mutex::new(Snapshot::default()));
    let mut worker = Worker {
        serve: Serve::new(config),
        geneve,
        peer,
        wake: wake_rx,
        rx,
        rx_bufs: (0..BATCH)
            .map(|_| PacketBuf::with_capacity(MAX_GRO))
            .collect(),
        work: PacketBuf::with_capacity(MAX_DATAGRAM),
        run: Run {
            bytes: Vec::with_capacity(MAX_GRO),
            ..Run::default()
        },
        peer_buf: vec![0; MAX_DATAGRAM + 512],
        forwarded: PacketBuf::with_capacity(MAX_DATAGRAM),
        encoded: Vec::with_capacity(2048),
        mmsg: Mmsg::new(BATCH),
        held: HashMap::new(),
        probes: Vec::new(),
        lookups,
        awaiting: HashMap::new(),
        awaiting_total: 0,
        io: IoCounters::default(),
        start: Instant::now(),
        configured: 0,
        published: published.clone(),
        flow_logs,
    };
    let thread = std::thread::Builder::new()
        .name("openvpc-hyperplane-io".into())
        .spawn(move || worker.run())
        .map_err(IoError::Thread)?;
    Ok(IoHandle {
        client: IoClient {
            tx,
            wake: wake_tx,
            published,
        },
        thread: Some(thread),
        underlay,
    })
}

/// The thread that asks the mapping service, off the packet path: keys in
/// from the worker, answers back as a command.
fn spawn_resolver(
    mut resolve: Resolver,
    answers: Sender<Command>,
    wake: Arc<UnixDatagram>,
) -> Result<Sender<MappingKey>, IoError> {
    let (tx, rx) = mpsc::channel::<MappingKey>();
    std::thread::Builder::new()
        .name("openvpc-hyperplane-mappings".into())
        .spawn(move || {
            // Ends when the worker (the only sender) is gone.
            while let Ok(first) = rx.recv() {
                let mut keys = vec![first];
                while keys.len() < LOOKUP_BATCH {
                    match rx.try_recv() {
                        Ok(k) => keys.push(k),
                        Err(_) => break,
                    }
                }
                let answer = match resolve(&keys) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(error = %e, "mapping lookup failed; the held packets are dropped");
                        None
                    }
                };
                if answers.send(Command::Mapped(keys, answer)).is_err() {
                    return;
                }
                let _ = wake.send(&[1]);
            }
        })
        .map_err(IoError::Thread)?;
    Ok(tx)
}

/// Datagrams for one destination, of one size but the last, sent as one.
#[derive(Debug, Default)]
struct Run {
    to: Option<SocketAddr>,
    bytes: Vec<u8>,
    stride: usize,
    last: usize,
    count: usize,
}

/// A packet waiting for its destination's host, with the return-via option
/// it must carry.
type Awaiting = (Vec<u8>, Option<ReturnVia>);

/// A packet waiting for its flow's record to be acknowledged.
struct Held {
    datagram: Vec<u8>,
    to: SocketAddr,
    since: Instant,
}

struct Worker {
    serve: Serve,
    geneve: UdpSocket,
    peer: UdpSocket,
    wake: UnixDatagram,
    rx: Receiver<Command>,
    /// Underlay reads: each a datagram or a GRO run of them.
    rx_bufs: Vec<PacketBuf>,
    /// The datagram being handled, cut from a read.
    work: PacketBuf,
    /// Translated datagrams waiting to leave as one write.
    run: Run,
    peer_buf: Vec<u8>,
    /// A packet another node forwarded, being handled.
    forwarded: PacketBuf,
    encoded: Vec<u8>,
    mmsg: Mmsg,
    held: HashMap<u32, Held>,
    /// The health checks' packets, between runs (kept for its allocation).
    probes: Vec<(Vec<u8>, Verdict)>,
    /// Asks the resolver thread, if the node has one.
    lookups: Option<Sender<MappingKey>>,
    /// Translated packets of private gateways waiting for their
    /// destination's host, by (VNI, address).
    awaiting: HashMap<(u32, Ipv4Addr), Vec<Awaiting>>,
    awaiting_total: usize,
    io: IoCounters,
    start: Instant,
    configured: u64,
    published: Arc<Mutex<Snapshot>>,
    flow_logs: Option<FlowLogSink>,
}

/// The wall clock in Unix milliseconds: deregistration deadlines come in it.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The worker asked to stop.
struct Stopped;

impl Worker {
    /// Seconds since the worker started: the cores' clock.
    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn run(&mut self) {
        let mut next_publish = Instant::now();
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        self.publish();
        loop {
            let mut fds = [
                readable(self.wake.as_raw_fd()),
                readable(self.geneve.as_raw_fd()),
                readable(self.peer.as_raw_fd()),
            ];
            // Held packets are looked at every millisecond, health checks
            // every few; otherwise the worker sleeps until a socket or the
            // next publish.
            let timeout = if !self.held.is_empty() {
                1
            } else if self.serve.has_balancers() {
                HEALTH_EVERY_MS
            } else {
                100
            };
            if let Err(e) = poll(&mut fds, timeout) {
                tracing::error!(error = %e, "poll failed; the hyperplane worker stops");
                return;
            }
            let [wake, geneve, peer] = fds;
            if wake.revents != 0 {
                drain(&self.wake);
                if self.commands().is_err() {
                    return;
                }
            }
            // Peers first: acknowledgements release held packets.
            if peer.revents != 0 {
                self.read_peers();
            }
            if geneve.revents != 0 {
                self.read_underlay();
            }
            self.release_held(false);
            if self.serve.has_balancers() {
                self.run_health();
            }
            let now = Instant::now();
            if now >= next_expire {
                next_expire = now + EXPIRE_EVERY;
                let t = self.now();
                self.serve.expire(t, EXPIRE_BUDGET);
                self.hand_out_flow_logs();
            }
            if now >= next_publish {
                next_publish = now + PUBLISH_EVERY;
                self.publish();
            }
        }
    }

    fn commands(&mut self) -> Result<(), Stopped> {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Stop => return Err(Stopped),
                Command::Mapped(keys, answers) => self.mapped(&keys, answers),
                Command::Configure(assignments, reply) => {
                    let now = self.now();
                    self.serve.configure(&assignments.nat_gateways, now);
                    self.serve
                        .configure_balancers(&assignments.load_balancers, now, unix_ms());
                    self.configured += 1;
                    if let Some(sink) = &self.flow_logs {
                        sink.enis.publish(self.serve.logged_enis());
                    }
                    self.flush_outbox();
                    self.publish();
                    let _ = reply.send(());
                }
            }
        }
        Ok(())
    }

    /// Hands the gateways' flow-log counts to the flow-log thread; what
    /// its full queue cannot take is dropped and counted.
    fn hand_out_flow_logs(&mut self) {
        let Some(sink) = &self.flow_logs else {
            return;
        };
        let mut records = Vec::new();
        self.serve.harvest_flow_logs(&mut records);
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        // The cores' clock is whole seconds since `start`.
        let unix_offset_ms = unix_ms() as i64 - self.start.elapsed().as_secs() as i64 * 1000;
        match sink.harvests.try_send(FlowLogHarvest {
            records,
            unix_offset_ms,
        }) {
            Ok(()) => self.io.flow_log_records += n,
            Err(_) => {
                self.io.flow_log_records_dropped += n;
            }
        }
    }

    fn publish(&self) {
        let mut node_drops = [0u64; NodeDrop::ALL.len()];
        for (d, reason) in node_drops.iter_mut().zip(NodeDrop::ALL) {
            *d = self.serve.drops(reason);
        }
        let snapshot = Snapshot {
            io: self.io,
            node: *self.serve.counters(),
            node_drops,
            gateways: self.serve.gateway_stats(),
            balancers: self.serve.balancer_stats(),
            target_health: self.serve.target_health(),
            neighbors: self.serve.neighbors(),
            serving: self.serve.serving(),
            configured: self.configured,
        };
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
    }

    /// Runs the load balancers' health checks and sends their probes.
    fn run_health(&mut self) {
        let now_ms = self.start.elapsed().as_millis() as u64;
        let mut out = std::mem::take(&mut self.probes);
        self.serve.health(now_ms, &mut out);
        for (data, verdict) in out.drain(..) {
            match verdict {
                Verdict::Send { to, .. } => {
                    self.send_datagram(&data, SocketAddr::new(to, GENEVE_PORT));
                }
                Verdict::Resolve { vni, ip, via } => self.await_mapping(vni, ip, data, via),
                Verdict::Done => {}
            }
        }
        self.probes = out;
        self.flush_outbox();
    }

    /// Sends the core's peer messages, in order.
    fn flush_outbox(&mut self) {
        if !self.serve.has_outbox() {
            return;
        }
        for (to, message) in self.serve.take_outbox() {
            message.encode(&mut self.encoded);
            match self
                .peer
                .send_to(&self.encoded, SocketAddr::new(to, PEER_PORT))
            {
                Ok(_) => self.io.peer_tx += 1,
                Err(_) => self.io.send_errors += 1,
            }
        }
    }

    /// Geneve from hosts and edges, a batch at a time: each datagram is
    /// handled in its buffer, the peer messages it caused go first, then
    /// the batch's packets in one `sendmmsg`.
    fn read_underlay(&mut self) {
        let mut rx = std::mem::take(&mut self.rx_bufs);
        for _ in 0..BATCHES_PER_WAKE {
            let n = self.mmsg.recv(self.geneve.as_raw_fd(), &mut rx, MAX_GRO);
            let now = self.now();
            for (i, read) in rx.iter().enumerate().take(n) {
                let Some(from) = self.mmsg.source(i) else {
                    continue;
                };
                // A GRO read holds a run of one sender's datagrams, each
                // `seg` bytes but the last.
                let seg = match self.mmsg.segment(i) {
                    0 => read.len().max(1),
                    s => s,
                };
                for datagram in read.data().chunks(seg) {
                    self.io.geneve_rx += 1;
                    self.io.geneve_rx_bytes += datagram.len() as u64;
                    self.work.set(datagram);
                    let verdict = self.serve.receive(&mut self.work, from.ip(), now);
                    match verdict {
                        Verdict::Resolve { vni, ip, via } => {
                            let data = self.work.data().to_vec();
                            self.await_mapping(vni, ip, data, via);
                        }
                        Verdict::Send { to, after, .. } => {
                            let to = SocketAddr::new(to, GENEVE_PORT);
                            match after {
                                Some(seq) => {
                                    let data = self.work.data().to_vec();
                                    self.hold(seq, data, to);
                                }
                                None => self.queue(to),
                            }
                        }
                        Verdict::Done => {}
                    }
                }
            }
            // Records (and their acknowledgement requests) before packets.
            self.flush_outbox();
            self.flush_run();
            if n < BATCH {
                break;
            }
        }
        self.rx_bufs = rx;
    }

    /// Adds the translated datagram in `work` to the run being built for
    /// `to`, sending the run first when the datagram cannot join it: a run
    /// is one destination's datagrams of one size (the last may be
    /// shorter), sent as one `UDP_SEGMENT` write that the kernel cuts.
    fn queue(&mut self, to: SocketAddr) {
        let len = self.work.len();
        let joins = self.run.to == Some(to)
            && self.run.count < MAX_SEGMENTS
            && self.run.bytes.len() + len <= MAX_GSO_BYTES
            && self.run.last == self.run.stride
            && len <= self.run.stride;
        if !joins {
            self.flush_run();
            self.run.to = Some(to);
            self.run.stride = len;
        }
        self.run.bytes.extend_from_slice(self.work.data());
        self.run.last = len;
        self.run.count += 1;
        // A shorter datagram ends the run.
        if len < self.run.stride {
            self.flush_run();
        }
    }

    /// Sends the run being built, if any.
    fn flush_run(&mut self) {
        let Some(to) = self.run.to.take() else {
            return;
        };
        let (bytes, count) = (self.run.bytes.len(), self.run.count);
        let sent = if count == 1 {
            self.geneve.send_to(&self.run.bytes, to).map(|_| ())
        } else {
            let (addr, addr_len) = sockaddr(to);
            send_segmented(
                self.geneve.as_raw_fd(),
                &[io::IoSlice::new(&self.run.bytes)],
                self.run.stride,
                &addr,
                addr_len,
            )
        };
        match sent {
            Ok(()) => {
                self.io.geneve_tx += count as u64;
                self.io.geneve_tx_bytes += bytes as u64;
            }
            Err(_) => self.io.send_errors += count as u64,
        }
        self.run.bytes.clear();
        self.run.count = 0;
        self.run.stride = 0;
        self.run.last = 0;
    }

    /// Messages from other nodes.
    fn read_peers(&mut self) {
        for _ in 0..BATCH * BATCHES_PER_WAKE {
            let (len, from) = match self.peer.recv_from(&mut self.peer_buf) {
                Ok(r) => r,
                Err(_) => break,
            };
            self.io.peer_rx += 1;
            let now = self.now();
            let bytes = self.peer_buf.get(..len).unwrap_or_default();
            match self.serve.peer(bytes, from.ip(), now, &mut self.forwarded) {
                PeerVerdict::Done => {}
                PeerVerdict::Acked(seq) => {
                    if let Some(h) = self.held.remove(&seq) {
                        let waited = h.since.elapsed().as_micros() as u64;
                        self.io.acks += 1;
                        self.io.ack_wait_us_sum += waited;
                        self.io.ack_wait_us_max = self.io.ack_wait_us_max.max(waited);
                        self.send_datagram(&h.datagram, h.to);
                    }
                }
                PeerVerdict::Packet(Verdict::Send { to, after, .. }) => {
                    let to = SocketAddr::new(to, GENEVE_PORT);
                    let data = self.forwarded.data().to_vec();
                    match after {
                        Some(seq) => self.hold(seq, data, to),
                        None => self.send_datagram(&data, to),
                    }
                }
                PeerVerdict::Packet(Verdict::Resolve { vni, ip, via }) => {
                    let data = self.forwarded.data().to_vec();
                    self.await_mapping(vni, ip, data, via);
                }
                PeerVerdict::Packet(Verdict::Done) => {}
            }
            self.flush_outbox();
        }
    }

    /// Holds a private gateway's translated packet until the mapping
    /// service says where (`vni`, `ip`) runs; the first packet for a key
    /// asks.
    fn await_mapping(&mut self, vni: u32, ip: Ipv4Addr, packet: Vec<u8>, via: Option<ReturnVia>) {
        let Some(lookups) = &self.lookups else {
            self.serve.unresolved();
            return;
        };
        let waiting = self.awaiting.entry((vni, ip)).or_default();
        if waiting.len() >= HELD_PER_MAPPING || self.awaiting_total >= HELD_FOR_MAPPINGS {
            self.io.held_overflow += 1;
            self.serve.unresolved();
            return;
        }
        if waiting.is_empty() {
            self.io.lookups += 1;
            if lookups
                .send(MappingKey {
                    vni,
                    ip: IpAddr::V4(ip),
                })
                .is_err()
            {
                self.serve.unresolved();
                return;
            }
        }
        waiting.push((packet, via));
        self.awaiting_total += 1;
    }

    /// The resolver's answers: each key's held packets leave, or are
    /// dropped (nothing runs there, or the lookup failed).
    fn mapped(&mut self, keys: &[MappingKey], answers: Option<Vec<MappingAnswer>>) {
        let now = self.now();
        if answers.is_none() {
            self.io.lookup_errors += 1;
        }
        for (i, key) in keys.iter().enumerate() {
            let IpAddr::V4(ip) = key.ip else {
                continue;
            };
            let held = self.awaiting.remove(&(key.vni, ip)).unwrap_or_default();
            self.awaiting_total = self.awaiting_total.saturating_sub(held.len());
            let Some(answers) = &answers else {
                for _ in &held {
                    self.serve.unresolved();
                }
                continue;
            };
            let found = answers
                .get(i)
                .filter(|a| a.key == *key)
                .and_then(|a| a.record.as_ref())
                .and_then(|r| {
                    Some(Neighbor {
                        host: r.underlay_ip,
                        mac: r.mac.parse().ok()?,
                    })
                });
            self.serve.mapped(key.vni, ip, found, now);
            for (packet, via) in held {
                match found {
                    Some(n) => {
                        self.forwarded.set(&packet);
                        if let Verdict::Send { to, .. } =
                            self.serve.deliver(&mut self.forwarded, key.vni, n, via)
                        {
                            let data = self.forwarded.data().to_vec();
                            self.send_datagram(&data, SocketAddr::new(to, GENEVE_PORT));
                        }
                    }
                    None => self.serve.unresolved(),
                }
            }
        }
    }

    /// Keeps a new flow's first packet until the buddy acknowledges
    /// message `seq` (or [`ACK_WAIT`] passes).
    fn hold(&mut self, seq: u32, datagram: Vec<u8>, to: SocketAddr) {
        self.held.insert(
            seq,
            Held {
                datagram,
                to,
                since: Instant::now(),
            },
        );
    }

    fn send_datagram(&mut self, data: &[u8], to: SocketAddr) {
        match self.geneve.send_to(data, to) {
            Ok(_) => {
                self.io.geneve_tx += 1;
                self.io.geneve_tx_bytes += data.len() as u64;
            }
            Err(_) => self.io.send_errors += 1,
        }
    }

    /// Sends the held packets whose wait is over (all of them with `all`).
    fn release_held(&mut self, all: bool) {
        if self.held.is_empty() {
            return;
        }
        let late: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| all || h.since.elapsed() >= ACK_WAIT)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in late {
            if let Some(h) = self.held.remove(&seq) {
                self.io.ack_timeouts += 1;
                self.send_datagram(&h.datagram, h.to);
            }
        }
    }
}
