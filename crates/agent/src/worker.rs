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
//! The VPC resolvers live in the router (spec 1.4); the queries they
//! forward go from here to the region's upstream resolver over one more
//! UDP socket in the same poll set, and the replies come back through the
//! router to the instance. A query with no upstream, or none that answers
//! in time, gets SERVFAIL.
//!
//! It must not block: no DNS lookups of its own, no HTTP, no `ip`
//! commands on this thread.

use core::net::SocketAddr;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvpc_dataplane::PacketBuf;
use openvpc_dataplane::drop::DropReason;
use openvpc_dataplane::eni::{EniConfig, EniError};
use openvpc_dataplane::resolver::UpstreamQuery;
use openvpc_dataplane::router::{BATCH, EniIndex, Output, Router, RouterConfig, RouterStats};
use openvpc_model::host::{GENEVE_PORT, MappingAnswer, MappingKey};
use openvpc_packet::geneve::GeneveHeader;
use openvpc_packet::gso::{self, VnetHdr};

use crate::batch_io::Mmsg;
use crate::mapping::{MappingCache, MappingStats};
use crate::netns::{self, NetnsError};

/// Largest frame or datagram read: a 64 KiB datagram, or a TAP's TCP
/// super-segment (64 KiB of IP, its Ethernet and `virtio_net_hdr`), fits.
const MAX_FRAME: usize = 65_536 + 128;
/// Most bytes one UDP GSO send may carry (a UDP datagram's limit).
const MAX_GSO_BYTES: usize = 65_507;
/// Most segments one UDP GSO send may carry (the kernel's UDP_MAX_SEGMENTS).
const MAX_GSO_SEGMENTS: usize = 64;
/// The largest TCP super-segment a TAP should take from its instance
/// (the link's `gso_max_size`): one whose segments, encapsulated, fit a
/// single UDP GSO send. At the kernel's 64 KiB default a 1450-byte MTU
/// makes 46 segments, sent as 44 + 2 — two trips through the underlay
/// stack and two datagrams for the receiver per super-segment; sized to
/// one send, TCP in `openvpc bench lab` went from ~5.0 to ~6.9 Gbit/s.
pub fn tap_gso_max_size(mtu: u16) -> u32 {
    let mtu = usize::from(mtu);
    let stride = GeneveHeader::LEN + 14 + mtu;
    let per_send = (MAX_GSO_BYTES / stride).clamp(1, MAX_GSO_SEGMENTS);
    // A segment carries at most MTU − 40 bytes (IPv4 and TCP without
    // options); the kernel rounds its size goal down to whole segments of
    // the real MSS, which is no larger, so the count stays within a send.
    (per_send * mtu.saturating_sub(40)).clamp(mtu, 65_536) as u32
}

/// How often flow logs are collected and negative mappings swept.
const HOUSEKEEPING_MS: u64 = 1_000;
/// Flow-table slots the incremental expiry visits per millisecond: a pass
/// over the default table (1.3 M slots) takes about 3 s.
const SWEEP_SLOTS_PER_MS: u64 = 400;
/// Least time between two expiry steps, and most slots one step visits
/// (about 1.5 MB, a few hundred microseconds cold): the steps stay far
/// below the latency of one round trip.
const SWEEP_EVERY_MS: u64 = 5;
const SWEEP_MAX_SLOTS: u64 = 16_384;
/// How long poll waits with nothing parked: bounds the gap between expiry
/// steps on an idle worker.
const IDLE_POLL_MS: i32 = 100;
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
    /// The CPU the thread pins itself to; `None` lets it float.
    pub cpu: Option<usize>,
    /// How long the thread keeps polling without sleeping after it last
    /// moved a frame; zero sleeps at once. See [`DEFAULT_BUSY_POLL`].
    pub busy_poll: Duration,
    /// Where the flow-log counts go once a second; `None` drops them.
    pub flow_logs: Option<SyncSender<FlowLogHarvest>>,
    /// The region's upstream resolver, which the VPC resolvers forward
    /// names they do not hold to; `None` answers those with SERVFAIL.
    pub dns_upstream: Option<SocketAddr>,
}

/// How long a forwarded query waits for the upstream resolver before its
/// client gets SERVFAIL (a stub resolver retries after 5 s: this answers
/// first).
const UPSTREAM_TIMEOUT_MS: u64 = 3_000;
/// Most queries waiting for the upstream resolver at once; beyond, SERVFAIL.
const UPSTREAM_CAPACITY: usize = 4_096;

/// The flow-log counts the router handed out, with the clock that turns
/// its times into Unix time.
#[derive(Debug)]
pub struct FlowLogHarvest {
    pub records: Vec<openvpc_dataplane::flowlog::FlowLogRecord>,
    /// Add to a record's router time (ms) for Unix milliseconds.
    pub unix_offset_ms: i64,
}

/// The default busy-poll window. A sleeping worker is woken by the sender
/// of each frame, and on a virtual machine that wake-up is an IPI, which
/// costs the sender tens of microseconds (a VM exit) and the receiver as
/// much again: a sleeping worker on each host added ~25 µs per hop. While
/// the worker polls, nobody waits on its sockets, so a sender only queues.
/// The window covers the gap between a request and its reply, so a
/// request/response stream never lets the worker sleep; an idle host
/// sleeps 200 µs after its last frame, and a spinning worker yields its
/// CPU on every empty poll so the instances sharing it lose little.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(200);

/// A `sched_yield` that returns later than this ran another thread: the
/// CPU is shared with work that the spinning would slow down.
const YIELD_TAKEN: Duration = Duration::from_micros(20);

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
            cpu: None,
            busy_poll: DEFAULT_BUSY_POLL,
            flow_logs: None,
            dns_upstream: None,
        }
    }
}

/// I/O counters besides the router's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoCounters {
    pub tap_rx: u64,
    pub tap_tx: u64,
    pub underlay_rx: u64,
    pub underlay_tx: u64,
    pub tap_write_errors: u64,
    /// TAP writes that carried several coalesced segments or datagrams
    /// (each also counts once in `tap_tx`).
    pub tap_coalesced_writes: u64,
    /// TAP frames whose offload header could not be honoured (dropped).
    pub tap_offload_errors: u64,
    pub underlay_send_errors: u64,
    pub pending_queued: u64,
    pub pending_timed_out: u64,
    pub pending_overflow: u64,
    /// Flow-log records handed to the agent's flow-log thread.
    pub flow_log_records: u64,
    /// Flow-log records dropped because that thread was behind (its
    /// queue was full) or absent.
    pub flow_log_dropped: u64,
    /// Queries sent to the upstream resolver, and its replies relayed.
    pub dns_upstream_sent: u64,
    pub dns_upstream_replies: u64,
    /// Forwarded queries answered SERVFAIL: no upstream configured, no
    /// reply in time, the send failed or too many were waiting.
    pub dns_no_upstream: u64,
    pub dns_upstream_timeouts: u64,
    pub dns_upstream_errors: u64,
    /// Datagrams on the upstream socket that answer no waiting query.
    pub dns_upstream_stray: u64,
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
    /// The VPC resolvers' counters, added up.
    pub dns: openvpc_dns::Counters,
}

impl WorkerStatus {
    /// The snapshot as JSON, for operators: drops by reason name, the
    /// rest as named counters.
    pub fn to_json(&self) -> serde_json::Value {
        let drops: serde_json::Map<String, serde_json::Value> = self
            .drops
            .iter()
            .map(|(reason, n)| (reason.name().to_owned(), (*n).into()))
            .collect();
        serde_json::json!({
            "enis": self.enis,
            "flows": self.flows,
            "router": {
                "fast_path": self.router.fast_path,
                "slow_path": self.router.slow_path,
                "gateway_replies": self.router.gateway_replies,
                "pending": self.router.pending,
            },
            "drops": drops,
            "mapping": self.mapping,
            "mapping_entries": self.mapping_entries,
            "pending": self.pending,
            "io": self.io,
            "dns": dns_json(&self.dns),
        })
    }
}

/// The resolvers' counters for operators: answers by kind, drops by reason.
fn dns_json(c: &openvpc_dns::Counters) -> serde_json::Value {
    let drops: serde_json::Map<String, serde_json::Value> = c
        .nonzero_drops()
        .map(|(reason, n)| (reason.name().to_owned(), n.into()))
        .collect();
    serde_json::json!({
        "local_answers": c.local_answers,
        "nxdomain": c.nxdomain,
        "cache_hits": c.cache_hits,
        "forwarded": c.forwarded,
        "relayed": c.relayed,
        "errors": c.errors,
        "drops": drops,
    })
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
    // A predecessor that was just killed may still be releasing the port
    // (its threads outlive its leader): wait for it a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let udp = loop {
        let bound = netns::in_netns(cfg.underlay_netns.as_deref(), || Ok(UdpSocket::bind(addr)))?;
        match bound {
            Ok(udp) => break udp,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(source) => return Err(WorkerError::Bind { addr, source }),
        }
    };
    udp.set_nonblocking(true)?;
    crate::batch_io::grow_socket_buffers(&udp);
    if let Err(e) = crate::batch_io::enable_gro(udp.as_raw_fd()) {
        tracing::warn!(error = %e, "UDP GRO is not available; underlay datagrams arrive one by one");
    }
    // The upstream socket lives where the underlay does: the region's
    // resolver is reached over the hosts' network, not the instances'.
    let dns = match cfg.dns_upstream {
        Some(upstream) => {
            let any = match upstream {
                SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
                SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
            };
            let sock = netns::in_netns(cfg.underlay_netns.as_deref(), || Ok(UdpSocket::bind(any)))?
                .map_err(|source| WorkerError::Bind { addr: any, source })?;
            sock.set_nonblocking(true)?;
            Some(sock)
        }
        None => None,
    };
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
        dns,
        upstream: HashMap::new(),
        upstream_order: VecDeque::new(),
        upstream_id: 0,
        wake: wake_rx,
        rx,
        lookups,
        pending: VecDeque::new(),
        pool: Vec::new(),
        bufs: (0..BATCH).map(|_| PacketBuf::default()).collect(),
        outs: vec![Output::Pending; BATCH],
        mmsg_rx: Mmsg::new(BATCH),
        offload: vec![(VnetHdr::default(), 0); BATCH],
        rx_bufs: (0..BATCH)
            .map(|_| PacketBuf::with_capacity(MAX_FRAME))
            .collect(),
        coalescer: gso::Coalescer::new(),
        gso_hdrs: Vec::with_capacity(4096),
        io: IoCounters::default(),
        cfg,
        start,
        last_housekeeping: 0,
        last_sweep: 0,
    };
    let addr = worker.udp.local_addr()?;
    let thread = std::thread::Builder::new()
        .name("openvpc-worker".into())
        .spawn(move || {
            if let Some(cpu) = worker.cfg.cpu {
                pin_to(cpu);
            }
            worker.run()
        })?;
    Ok(WorkerHandle {
        client: WorkerClient {
            tx,
            wake: Arc::new(wake_tx),
        },
        thread: Some(thread),
        underlay: addr,
    })
}

/// Pins the calling thread to one CPU; a failure (no such CPU) is logged
/// and the thread floats.
pub fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET write inside it and
    // sched_setaffinity(0, …) reads it for the calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        tracing::warn!(cpu, error = %io::Error::last_os_error(), "could not pin the thread");
    }
}

struct Tap {
    file: File,
    /// Frames carry a `virtio_net_hdr` (a real TAP; not the tests' sockets).
    vnet: bool,
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
    /// The socket to the region's upstream resolver, if one is configured.
    dns: Option<UdpSocket>,
    /// Forwarded queries waiting for the upstream, by the id they were
    /// sent under, with when they were sent.
    upstream: HashMap<u16, (UpstreamQuery, u64)>,
    /// The waiting queries' ids in the order they were sent, with when:
    /// their deadlines come in this order. An id answered (or answered and
    /// reused) is skipped when its turn comes.
    upstream_order: VecDeque<(u16, u64)>,
    /// The last upstream query id handed out.
    upstream_id: u16,
    wake: UnixDatagram,
    rx: Receiver<Command>,
    lookups: Sender<Vec<MappingKey>>,
    pending: VecDeque<Pending>,
    /// Spare buffers, so the frames parked in `pending` are replaced without
    /// allocating on every miss.
    pool: Vec<PacketBuf>,
    bufs: Vec<PacketBuf>,
    outs: Vec<Output>,
    mmsg_rx: Mmsg,
    /// The `virtio_net_hdr` and pre-processing length of each TAP frame of
    /// the batch in `bufs`.
    offload: Vec<(VnetHdr, usize)>,
    /// The segment headers of the super-segment being cut, reused.
    gso_hdrs: Vec<u8>,
    /// Underlay receive buffers: a GRO datagram holds up to 64 KiB.
    rx_bufs: Vec<PacketBuf>,
    /// TCP segments for one instance waiting to go out as one TAP write.
    coalescer: gso::Coalescer,
    io: IoCounters,
    cfg: WorkerConfig,
    start: Instant,
    last_housekeeping: u64,
    last_sweep: u64,
}

/// What a readable fd in the poll set is.
#[derive(Clone, Copy)]
enum Source {
    Wake,
    Underlay,
    Dns,
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
        Output::Instance(i) => to_tap(taps, io, usize::from(i), &VnetHdr::default(), buf.data()),
        Output::Drop(_) | Output::Pending | Output::Resolver => {}
    }
}

/// Writes a frame to local ENI `index`'s TAP, counting the outcome.
fn to_tap(
    taps: &mut [Option<Tap>],
    io: &mut IoCounters,
    index: usize,
    hdr: &VnetHdr,
    frame: &[u8],
) {
    match taps.get_mut(index).and_then(Option::as_mut) {
        Some(tap) => match write_frame(tap, hdr, frame) {
            Ok(_) => io.tap_tx += 1,
            Err(_) => io.tap_write_errors += 1,
        },
        None => io.tap_write_errors += 1,
    }
}

/// One UDP GSO send of `count` equal-`stride` datagrams to `dst`, counted.
fn send_run(
    udp: &UdpSocket,
    io: &mut IoCounters,
    parts: &[io::IoSlice<'_>],
    stride: usize,
    count: u64,
    dst: SocketAddr,
) {
    let (addr, addr_len) = crate::batch_io::sockaddr(dst);
    match crate::batch_io::send_segmented(udp.as_raw_fd(), parts, stride, &addr, addr_len) {
        Ok(()) => io.underlay_tx += count,
        Err(_) => io.underlay_send_errors += count,
    }
}

/// Strips the `virtio_net_hdr` from a frame read from a TAP and completes
/// a partial checksum. What stays to do is returned: the header of a TCP
/// super-segment (cut later, after the policy decision), or a default one.
fn take_vnet_hdr(buf: &mut PacketBuf) -> Result<VnetHdr, ()> {
    let hdr = VnetHdr::parse(buf.data()).map_err(|_| ())?;
    buf.pop_front(gso::VNET_HDR_LEN);
    if hdr.is_gso() {
        // Only TCP/IPv4 is offered (TUN_F_TSO4); its checksums are
        // computed per segment.
        return if hdr.gso_type & !gso::GSO_ECN == gso::GSO_TCPV4 && hdr.gso_size > 0 {
            Ok(hdr)
        } else {
            Err(())
        };
    }
    if hdr.flags & gso::F_NEEDS_CSUM != 0 {
        gso::complete_checksum(
            buf.data_mut(),
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        )
        .map_err(|_| ())?;
    }
    Ok(VnetHdr::default())
}

/// Writes one frame to a TAP, behind `hdr` when the TAP takes
/// `virtio_net_hdr`s (one `writev`, no copy).
fn write_frame(tap: &mut Tap, hdr: &VnetHdr, frame: &[u8]) -> io::Result<usize> {
    if !tap.vnet {
        if hdr.is_gso() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        return tap.file.write(frame);
    }
    let head = hdr.bytes();
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: frame.as_ptr().cast_mut().cast(),
            iov_len: frame.len(),
        },
    ];
    // SAFETY: two iovecs over live buffers that outlive the call; writev
    // only reads them.
    let rc = unsafe { libc::writev(tap.file.as_raw_fd(), iov.as_ptr(), 2) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Cuts an encapsulated TCP super-segment (`buf`: Geneve header, then the
/// inner frame of `inner_len` bytes) into `mss`-sized segments and sends
/// them with UDP GSO: one `sendmsg` per 64 KiB, the kernel cuts at the
/// stride. Only the segments' headers are built (in `hdrs`); the payload
/// goes to the kernel straight from `buf`.
fn send_gso(
    udp: &UdpSocket,
    io: &mut IoCounters,
    hdrs: &mut Vec<u8>,
    buf: &[u8],
    inner_len: usize,
    mss: u16,
    dst: SocketAddr,
) {
    let prefix = buf.len().saturating_sub(inner_len);
    hdrs.clear();
    let Ok(cut) = gso::cut_tcp4(buf, prefix, usize::from(mss), hdrs) else {
        io.underlay_send_errors += 1;
        return;
    };
    let stride = cut.stride();
    let per_send = (MAX_GSO_BYTES / stride).clamp(1, MAX_GSO_SEGMENTS);
    let mut parts = [io::IoSlice::new(&[]); 2 * MAX_GSO_SEGMENTS];
    for first in (0..cut.count).step_by(per_send) {
        let last = (first + per_send).min(cut.count);
        for (j, k) in (first..last).enumerate() {
            parts[2 * j] = io::IoSlice::new(&hdrs[k * cut.headers..(k + 1) * cut.headers]);
            parts[2 * j + 1] = io::IoSlice::new(cut.chunk(buf, k));
        }
        let n = last - first;
        send_run(udp, io, &parts[..2 * n], stride, n as u64, dst);
    }
}

/// Sends the outputs of a processed batch: the underlay datagrams as UDP
/// GSO runs (one `sendmsg` per run of one size to one host), the frames
/// for local instances one write each (a TAP takes one frame per write). Parked (pending) entries must already be gone.
/// `offload[i]` is the `virtio_net_hdr` `bufs[i]` came with (default for
/// none) and its frame's length before processing: super-segments are cut
/// for the underlay and handed whole to a local TAP.
fn emit_batch(
    taps: &mut [Option<Tap>],
    udp: &UdpSocket,
    hdrs: &mut Vec<u8>,
    io: &mut IoCounters,
    outs: &[Output],
    bufs: &[PacketBuf],
    offload: &[(VnetHdr, usize)],
) {
    let mut underlay = 0;
    for (i, (out, buf)) in outs.iter().zip(bufs).enumerate() {
        let (hdr, inner_len) = offload.get(i).copied().unwrap_or_default();
        match *out {
            Output::Underlay { dst, .. } if hdr.is_gso() => send_gso(
                udp,
                io,
                hdrs,
                buf.data(),
                inner_len,
                hdr.gso_size,
                SocketAddr::new(dst, GENEVE_PORT),
            ),
            Output::Underlay { .. } => underlay += 1,
            Output::Instance(t) => to_tap(taps, io, usize::from(t), &hdr, buf.data()),
            Output::Drop(_) | Output::Pending | Output::Resolver => {}
        }
    }
    if underlay == 0 {
        return;
    }
    // Runs of datagrams to one host, all of one size but the last, go out
    // as one UDP GSO send, straight from their buffers: the underlay stack
    // (routing, veth, bridge, the receiver's socket, which takes them whole
    // with UDP GRO) is crossed once per run instead of once per datagram.
    let mut parts = [io::IoSlice::new(&[]); MAX_GSO_SEGMENTS];
    let (mut count, mut bytes) = (0, 0);
    let mut run: Option<(SocketAddr, usize)> = None; // (dst, stride)
    let mut send = |parts: &[io::IoSlice<'_>], (dst, stride): (SocketAddr, usize)| {
        send_run(udp, io, parts, stride, parts.len() as u64, dst);
    };
    for (i, (out, buf)) in outs.iter().zip(bufs).enumerate() {
        let Output::Underlay { dst, .. } = *out else {
            continue;
        };
        if offload.get(i).is_some_and(|(h, _)| h.is_gso()) {
            continue;
        }
        let dst = SocketAddr::new(dst, GENEVE_PORT);
        let len = buf.len();
        let joins = run.is_some_and(|(d, stride)| {
            d == dst
                && len <= stride
                && bytes == count * stride
                && count < MAX_GSO_SEGMENTS
                && bytes + len <= MAX_GSO_BYTES
        });
        if !joins {
            if let Some(r) = run {
                send(&parts[..count], r);
            }
            run = Some((dst, len.max(1)));
            (count, bytes) = (0, 0);
        }
        parts[count] = io::IoSlice::new(buf.data());
        count += 1;
        bytes += len;
    }
    if let Some(r) = run {
        send(&parts[..count], r);
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
        let mut spin_until = Instant::now();
        // The last yield let another thread run for a while.
        let mut yield_was_taken = false;
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
                if let Some(dns) = &self.dns {
                    add(dns.as_raw_fd(), Source::Dns);
                }
                for (i, tap) in self.taps.iter().enumerate() {
                    if let Some(tap) = tap.as_ref().filter(|t| !t.dead) {
                        add(tap.file.as_raw_fd(), Source::Tap(i as EniIndex));
                    }
                }
                dirty = false;
            }
            let spinning = Instant::now() < spin_until;
            // Parked frames need their deadline checked soon.
            let timeout = if spinning {
                0
            } else if self.pending.is_empty() && self.upstream.is_empty() {
                IDLE_POLL_MS
            } else {
                50
            };
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
            if rc > 0 {
                spin_until = Instant::now() + self.cfg.busy_poll;
                yield_was_taken = false;
            } else if spinning && yield_was_taken {
                // Another thread wants this CPU and nothing came while it
                // ran: spinning would only slow it down, so sleep.
                spin_until = Instant::now();
                yield_was_taken = false;
            } else if spinning {
                // Whoever shares this CPU (an instance, most likely the
                // one about to answer) runs before the next poll.
                let before = Instant::now();
                // SAFETY: sched_yield takes no arguments and cannot fail.
                unsafe { libc::sched_yield() };
                yield_was_taken = before.elapsed() > YIELD_TAKEN;
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
                    Source::Dns => self.read_upstream(now),
                    Source::Tap(i) => dirty |= self.read_tap(i, now),
                }
            }
            self.send_upstream(now);
            self.expire_pending(now);
            self.expire_upstream(now);
            let since_sweep = now.saturating_sub(self.last_sweep);
            if since_sweep >= SWEEP_EVERY_MS {
                self.last_sweep = now;
                let budget = (since_sweep * SWEEP_SLOTS_PER_MS).min(SWEEP_MAX_SLOTS);
                self.router.expire_step(now, budget as usize);
            }
            if now.saturating_sub(self.last_housekeeping) >= HOUSEKEEPING_MS {
                self.last_housekeeping = now;
                self.router.mapping_mut().sweep(now);
                self.ship_flow_logs(now);
            }
            let wanted = self.router.mapping_mut().take_wanted();
            if !wanted.is_empty() {
                // The receiver is gone only while the agent stops.
                let _ = self.lookups.send(wanted);
            }
        }
    }

    /// Hands the router's flow-log counts to the flow-log thread; never
    /// waits for it (a full queue drops the counts, counted).
    fn ship_flow_logs(&mut self, now: u64) {
        let records = self.router.take_flow_logs();
        if records.is_empty() {
            return;
        }
        let n = records.len() as u64;
        let Some(tx) = &self.cfg.flow_logs else {
            self.io.flow_log_dropped += n;
            return;
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let harvest = FlowLogHarvest {
            records,
            unix_offset_ms: unix_ms - now as i64,
        };
        match tx.try_send(harvest) {
            Ok(()) => self.io.flow_log_records += n,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.io.flow_log_dropped += n;
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
                        let vnet = netns::tap_has_vnet_hdr(&file);
                        self.taps[i] = Some(Tap {
                            file,
                            dead: false,
                            vnet,
                        });
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
            dns: self.router.dns_counters(),
        }
    }

    /// Sends the queries the resolvers forwarded to the upstream resolver,
    /// each under an id of ours (clients of several ENIs may pick the same
    /// one); what cannot be sent is answered SERVFAIL at once.
    fn send_upstream(&mut self, now: u64) {
        let queries = self.router.take_upstream_queries();
        for q in queries {
            let (Some(sock), Some(upstream)) = (&self.dns, self.cfg.dns_upstream) else {
                self.io.dns_no_upstream += 1;
                self.answer_servfail(&q);
                continue;
            };
            if self.upstream.len() >= UPSTREAM_CAPACITY {
                self.io.dns_upstream_errors += 1;
                self.answer_servfail(&q);
                continue;
            }
            let mut id = self.upstream_id;
            loop {
                id = id.wrapping_add(1);
                if !self.upstream.contains_key(&id) {
                    break;
                }
            }
            self.upstream_id = id;
            let mut msg = q.query.clone();
            openvpc_dns::set_message_id(&mut msg, id);
            match sock.send_to(&msg, upstream) {
                Ok(_) => {
                    self.io.dns_upstream_sent += 1;
                    self.upstream.insert(id, (q, now));
                    self.upstream_order.push_back((id, now));
                }
                Err(_) => {
                    self.io.dns_upstream_errors += 1;
                    self.answer_servfail(&q);
                }
            }
        }
    }

    /// Relays the upstream resolver's replies to the clients that wait.
    fn read_upstream(&mut self, now: u64) {
        let mut buf = [0u8; 65_535];
        for _ in 0..BATCH * BATCHES_PER_WAKE {
            let Some(sock) = &self.dns else {
                return;
            };
            let (len, from) = match sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let reply = &buf[..len];
            let id = match reply.get(..2) {
                Some(&[a, b]) => u16::from_be_bytes([a, b]),
                _ => {
                    self.io.dns_upstream_stray += 1;
                    continue;
                }
            };
            // Only the configured upstream's replies count: anyone else on
            // the underlay could otherwise answer for it.
            if Some(from) != self.cfg.dns_upstream {
                self.io.dns_upstream_stray += 1;
                continue;
            }
            let Some((q, _)) = self.upstream.remove(&id) else {
                self.io.dns_upstream_stray += 1;
                continue;
            };
            self.io.dns_upstream_replies += 1;
            let answer = self.router.relay_upstream(&q, reply, now);
            self.resolver_answer(answer);
        }
    }

    /// Answers SERVFAIL to the queries the upstream left unanswered.
    fn expire_upstream(&mut self, now: u64) {
        while let Some(&(id, sent)) = self.upstream_order.front() {
            if now.saturating_sub(sent) < UPSTREAM_TIMEOUT_MS {
                break;
            }
            self.upstream_order.pop_front();
            if self.upstream.get(&id).is_some_and(|(_, s)| *s == sent)
                && let Some((q, _)) = self.upstream.remove(&id)
            {
                self.io.dns_upstream_timeouts += 1;
                self.answer_servfail(&q);
            }
        }
    }

    fn answer_servfail(&mut self, q: &UpstreamQuery) {
        let answer = self.router.fail_upstream(q);
        self.resolver_answer(answer);
    }

    /// Writes the resolver's answer to the instance that asked.
    fn resolver_answer(&mut self, answer: Option<(EniIndex, Vec<u8>)>) {
        if let Some((eni, frame)) = answer {
            to_tap(
                &mut self.taps,
                &mut self.io,
                usize::from(eni),
                &VnetHdr::default(),
                &frame,
            );
        }
    }

    /// Reads datagrams until the socket is empty or the budget is spent.
    /// A coalesced (GRO) datagram is cut back into its Geneve datagrams;
    /// in-order TCP segments for one instance are coalesced again into one
    /// TAP write.
    fn read_underlay(&mut self, now: u64) {
        let mut rx = std::mem::take(&mut self.rx_bufs);
        for _ in 0..BATCHES_PER_WAKE {
            let m = self.mmsg_rx.recv(self.udp.as_raw_fd(), &mut rx, MAX_FRAME);
            if m == 0 {
                break;
            }
            let mut n = 0;
            for (j, buf) in rx.iter().enumerate().take(m) {
                let data = buf.data();
                let seg = match self.mmsg_rx.segment(j) {
                    0 => data.len().max(1),
                    s => s,
                };
                for datagram in data.chunks(seg) {
                    self.bufs[n].set(datagram);
                    n += 1;
                    if n == BATCH {
                        self.underlay_batch(n, now);
                        n = 0;
                    }
                }
            }
            if n > 0 {
                self.underlay_batch(n, now);
            }
            if m < BATCH {
                break;
            }
        }
        self.rx_bufs = rx;
        self.flush_coalesced();
    }

    /// Runs `n` underlay datagrams in `bufs` through the router and sends
    /// what comes out, holding TCP segments back for coalescing.
    fn underlay_batch(&mut self, n: usize, now: u64) {
        self.io.underlay_rx += n as u64;
        self.router
            .from_underlay_batch(&mut self.bufs[..n], &mut self.outs[..n], now);
        for i in 0..n {
            if let Output::Instance(t) = self.outs[i] {
                let t = usize::from(t);
                let vnet = self
                    .taps
                    .get(t)
                    .and_then(Option::as_ref)
                    .is_some_and(|tap| tap.vnet);
                if vnet {
                    if self.coalescer.target == t && self.coalescer.push(self.bufs[i].data()) {
                        self.outs[i] = Output::Pending;
                        continue;
                    }
                    self.flush_coalesced();
                    self.coalescer.target = t;
                    if !self.coalescer.push(self.bufs[i].data()) {
                        // Written now, so it keeps its place among the
                        // coalesced frames written in this loop.
                        emit(
                            &mut self.taps,
                            &self.udp,
                            &mut self.io,
                            self.outs[i],
                            &self.bufs[i],
                        );
                    }
                    self.outs[i] = Output::Pending;
                }
            }
        }
        self.emit_outputs(n, false);
    }

    /// [`emit_batch`] for the first `n` outputs, with the TAP offload
    /// headers the frames came with if `offloaded`.
    fn emit_outputs(&mut self, n: usize, offloaded: bool) {
        let offload = if offloaded { &self.offload[..n] } else { &[] };
        emit_batch(
            &mut self.taps,
            &self.udp,
            &mut self.gso_hdrs,
            &mut self.io,
            &self.outs[..n],
            &self.bufs[..n],
            offload,
        );
    }

    /// Writes the coalesced frame held, if any.
    fn flush_coalesced(&mut self) {
        if self.coalescer.is_empty() {
            return;
        }
        let target = self.coalescer.target;
        let (hdr, frame) = self.coalescer.frame();
        if hdr.is_gso() {
            self.io.tap_coalesced_writes += 1;
        }
        to_tap(&mut self.taps, &mut self.io, target, &hdr, frame);
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
                match tap.file.read(self.bufs[n].spare(MAX_FRAME)) {
                    Ok(0) => break,
                    Ok(len) => {
                        let buf = &mut self.bufs[n];
                        buf.set_len(len);
                        let hdr = if tap.vnet {
                            take_vnet_hdr(buf)
                        } else {
                            Ok(VnetHdr::default())
                        };
                        match hdr {
                            Ok(hdr) => {
                                self.offload[n] = (hdr, buf.len());
                                n += 1;
                            }
                            Err(()) => self.io.tap_offload_errors += 1,
                        }
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
                    }
                }
                self.emit_outputs(n, true);
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
    use crate::install::fixtures::eni;

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
    fn a_super_segment_fits_one_underlay_send() {
        for mtu in [576u16, 1280, 1450, 1500, 9000] {
            let max = tap_gso_max_size(mtu) as usize;
            let stride = GeneveHeader::LEN + 14 + usize::from(mtu);
            let per_send = (MAX_GSO_BYTES / stride).clamp(1, MAX_GSO_SEGMENTS);
            // The most segments the kernel cuts a `max`-byte super-segment
            // into: its payload is below `max`, each segment full.
            let mss = usize::from(mtu) - 40;
            assert!(max / mss <= per_send, "mtu {mtu}: {max} bytes");
            assert!(max <= 65_536);
        }
        // 1450: 44 segments of 1410 bytes per send.
        assert_eq!(tap_gso_max_size(1450), 44 * 1410);
    }

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

    /// A DNS query for `www.example.com` A with recursion desired.
    fn dns_query(id: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["www", "example", "com"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        q
    }

    fn dns_frame(src_port: u16, payload: &[u8]) -> Vec<u8> {
        PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: "02:6f:76:70:63:01".parse().unwrap(),
                src: "02:00:00:00:00:0a".parse().unwrap(),
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(
                Ipv4Addr::new(10, 0, 1, 10),
                Ipv4Addr::new(10, 0, 0, 2),
                0,
                0,
            )),
            l4: L4Repr::Udp(UdpRepr {
                src_port,
                dst_port: 53,
            }),
        }
        .build(payload)
        .unwrap()
    }

    /// The DNS message of a frame the worker wrote to an instance.
    fn dns_payload(frame: &[u8]) -> Vec<u8> {
        let pf = openvpc_packet::flow::parse_ethernet(frame).unwrap();
        assert_eq!(pf.key.src_port, 53);
        frame[pf.l4_offset + 8..pf.l3_offset + pf.ip_len].to_vec()
    }

    fn dns_worker(upstream: Option<SocketAddr>) -> (WorkerHandle, UnixDatagram) {
        let mut cfg = WorkerConfig::new(RouterConfig::new(LOCAL));
        cfg.underlay_port = 0;
        cfg.dns_upstream = upstream;
        let (tx, _lookups) = mpsc::channel();
        let worker = spawn(cfg, tx).unwrap();
        let mut state = eni(
            "eni-a",
            "i-a",
            Ipv4Addr::new(10, 0, 1, 10),
            "02:00:00:00:00:0a",
        );
        state.dns = Some(openvpc_model::host::VpcDnsState {
            region: "us-east-1".into(),
            enable_dns_support: true,
            enable_dns_hostnames: true,
            cidrs: vec!["10.0.0.0/16".parse().unwrap()],
            addresses: vec![],
            names: vec![],
        });
        let (tap, instance) = fake_tap();
        let cfg = Converter::new().eni_config(&state).unwrap();
        worker.client().upsert_eni(cfg, Some(tap)).unwrap().unwrap();
        (worker, instance)
    }

    // spec 1.4: names the VPC does not hold go to the region's resolver;
    // its answer comes back to the instance under the instance's id.
    #[test]
    fn forwarded_dns_queries_go_upstream_and_back() {
        let upstream = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        upstream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let (worker, instance) = dns_worker(Some(upstream.local_addr().unwrap()));
        instance
            .send(&dns_frame(40000, &dns_query(0x1234)))
            .unwrap();

        let mut buf = [0u8; 2048];
        let (n, from) = upstream.recv_from(&mut buf).unwrap();
        let mut reply = buf[..n].to_vec();
        assert_eq!(reply[2..], dns_query(0)[2..], "the query goes up as asked");
        // A response with one A record, under the id it was asked with.
        reply[2] = 0x81;
        reply[3] = 0x80;
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 44, 0, 4, 198, 51, 100, 10]);
        upstream.send_to(&reply, from).unwrap();

        let n = instance.recv(&mut buf).unwrap();
        let answer = dns_payload(&buf[..n]);
        assert_eq!(answer[..2], [0x12, 0x34], "the client's id is back");
        assert!(answer.ends_with(&[198, 51, 100, 10]));
        let io = worker.client().status().unwrap().io;
        assert_eq!((io.dns_upstream_sent, io.dns_upstream_replies), (1, 1));

        // Cached now: answered without the upstream.
        instance
            .send(&dns_frame(40001, &dns_query(0x4321)))
            .unwrap();
        let n = instance.recv(&mut buf).unwrap();
        let answer = dns_payload(&buf[..n]);
        assert_eq!(answer[..2], [0x43, 0x21]);
        assert!(answer.ends_with(&[198, 51, 100, 10]));
        let status = worker.client().status().unwrap();
        assert_eq!(status.io.dns_upstream_sent, 1);
        assert_eq!(status.dns.cache_hits, 1);
    }

    #[test]
    fn an_upstream_that_does_not_answer_gives_servfail_in_time() {
        let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let (worker, instance) = dns_worker(Some(silent.local_addr().unwrap()));
        instance
            .set_read_timeout(Some(Duration::from_millis(UPSTREAM_TIMEOUT_MS + 2_000)))
            .unwrap();
        let start = Instant::now();
        instance
            .send(&dns_frame(40000, &dns_query(0x0909)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = instance.recv(&mut buf).unwrap();
        let answer = dns_payload(&buf[..n]);
        assert_eq!(answer[..2], [0x09, 0x09]);
        assert_eq!(answer[3] & 0x0f, 2, "RCODE SERVFAIL");
        assert!(start.elapsed() >= Duration::from_millis(UPSTREAM_TIMEOUT_MS - 100));
        let io = worker.client().status().unwrap().io;
        assert_eq!((io.dns_upstream_sent, io.dns_upstream_timeouts), (1, 1));
    }

    #[test]
    fn without_an_upstream_outside_names_get_servfail() {
        let (worker, instance) = dns_worker(None);
        instance
            .send(&dns_frame(40000, &dns_query(0x0707)))
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = instance.recv(&mut buf).unwrap();
        let answer = dns_payload(&buf[..n]);
        assert_eq!(answer[..2], [0x07, 0x07]);
        assert_eq!(answer[3] & 0x0f, 2, "RCODE SERVFAIL");
        assert_eq!(worker.client().status().unwrap().io.dns_no_upstream, 1);
    }
}
