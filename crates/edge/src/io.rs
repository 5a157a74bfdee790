//! The edge node's packet I/O: the Geneve socket on the underlay, the TUN
//! device that is its uplink, and one worker thread that owns the sans-IO
//! [`Edge`] and moves batches between them. Also the routes that send the
//! public pool into the TUN.
//!
//! - Underlay → uplink: datagrams arrive in batches (`recvmmsg`, with UDP
//!   GRO: a run of one host's datagrams comes as one buffer), are
//!   translated outbound, and written to the TUN; the namespace's kernel
//!   forwards them out (its default route). Consecutive TCP segments (and
//!   UDP datagrams) of one flow are coalesced into one super-packet written
//!   with a `virtio_net_hdr` (`IFF_VNET_HDR`, `GSO_TCPV4`), which the
//!   kernel forwards whole and cuts only where it must: one write and one
//!   trip through the stack per 64 KiB instead of per segment, as the
//!   agent does for its TAPs.
//! - Uplink → underlay: packets the kernel routes to the public pool are
//!   read from the TUN until it is empty (a batch at most), translated
//!   inbound, and sent to the hosts in one `sendmmsg`. The TUN offers the
//!   kernel TCP segmentation (`TUN_F_TSO4`), so a run of one flow's
//!   segments comes as one super-packet: it is translated once, cut into
//!   Geneve datagrams of one segment each (only their headers are built),
//!   and handed to the kernel in one `UDP_SEGMENT` send, as the agent does
//!   with what its instances send.
//!
//! Table changes reach the worker over a channel (with a wake-up datagram,
//! so it applies them at once) and are applied between batches. Nothing is
//! allocated per packet: the buffers and message headers are reused.
//!
//! Reuse: namespace entry and the batched UDP calls are the agent's
//! (`openvpc_agent::netns::in_netns`, `openvpc_agent::batch_io::Mmsg`), so
//! that unsafe code lives once. The TUN open is written here: the agent's
//! `open_tap` makes persistent TAPs with virtio headers, and the edge wants
//! a plain layer-3 TUN that vanishes with the process, routes included.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use openvpc_agent::batch_io::Mmsg;
use openvpc_agent::batch_io::{send_segmented, sockaddr};
use openvpc_agent::netns::{self, NetnsError};
use openvpc_dataplane::PacketBuf;
use openvpc_model::host::GENEVE_PORT;
use openvpc_packet::MacAddr;
use openvpc_packet::geneve::GeneveHeader;
use openvpc_packet::gso::{
    Coalescer, F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, VNET_HDR_LEN, VnetHdr, complete_checksum, cut_tcp4,
};

use openvpc_model::edge::{VgwRoute, VpnTunnel, VpnTunnelReport};
use openvpc_model::host::{MappingAnswer, MappingKey};
use openvpc_vpn::ike::responder::Entropy;

use crate::translate::{Edge, EdgeDrop, EdgeOutput, TableUpdate, ipv4_destination};
use crate::vgw::{TunnelStatus, Vgw, VgwDrop, VgwOutput};

/// Packets per batch, each way.
pub const BATCH: usize = 32;
/// Batches read from one fd before the other gets its turn.
const BATCHES_PER_WAKE: usize = 8;
/// The largest packet or datagram read (jumbo underlays included).
const MAX_PACKET: usize = 9_216;
/// The most datagrams one `UDP_SEGMENT` send may carry (the kernel's
/// `UDP_MAX_SEGMENTS` in the oldest kernels we run on); a 64 KiB
/// super-packet at the TUN's MTU is fewer.
const MAX_SEGMENTS: usize = 64;
/// The most bytes one UDP send may carry.
const MAX_GSO_BYTES: usize = 65_507;
/// The largest underlay read: a UDP GRO run of datagrams.
const MAX_GRO: usize = 65_535;
/// What the coalescer reads in front of an IP packet: an Ethernet header
/// (its layout is the agent's frames'); only the EtherType matters.
const FAKE_ETHERNET: [u8; 14] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00];
/// The TUN's MTU: an inbound packet plus its encapsulation (Ethernet,
/// Geneve, UDP, IPv4) fits a 1500-byte underlay, and the kernel answers
/// bigger ones with "fragmentation needed", as PMTU discovery expects.
pub const TUN_MTU: u16 = 1500 - openvpc_packet::geneve::OVERHEAD_V4 as u16;
/// How long the worker sleeps in poll with nothing to do.
const IDLE_POLL_MS: libc::c_int = 500;
/// How often the VPN gateway's timers run while it serves tunnels: the
/// BGP endpoints' TCP wants prompt polls; IKE's timers are seconds.
const VGW_TICK: Duration = Duration::from_millis(20);

/// A failure of the node's I/O.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(
        "binding the Geneve socket to {addr}: {source}; is the address on an interface of the namespace, and no other edge or agent bound to it?"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("opening TUN {ifname}: {op} failed: {source}; are we root?")]
    Tun {
        ifname: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("could not start the edge worker: {0}")]
    Thread(#[source] io::Error),
    #[error("the edge worker has stopped")]
    Stopped,
}

/// Where the node's I/O lives.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// The underlay address hosts send Geneve to; bound on port 6081.
    pub underlay_ip: IpAddr,
    /// The network namespace of the underlay address and the uplink;
    /// `None` for our own.
    pub netns: Option<String>,
    /// The TUN device's name.
    pub tun_name: String,
    /// The source MAC of inbound inner frames (the VPC router's).
    pub router_mac: MacAddr,
    /// This node's name: the VPN tunnels given to it are its own.
    pub edge_id: String,
}

/// The worker's counters. Bytes are IP packet or UDP payload lengths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// Geneve datagrams read from the underlay.
    pub underlay_rx: u64,
    pub underlay_rx_bytes: u64,
    /// Translated packets written to the uplink.
    pub uplink_tx: u64,
    pub uplink_tx_bytes: u64,
    pub uplink_write_errors: u64,
    /// Packets read from the uplink.
    pub uplink_rx: u64,
    pub uplink_rx_bytes: u64,
    /// Translated datagrams the kernel took for the underlay.
    pub underlay_tx: u64,
    /// Bytes of every translated datagram offered to the underlay.
    pub underlay_tx_bytes: u64,
    pub underlay_send_errors: u64,
    /// Writes to the uplink that carried several coalesced packets.
    pub uplink_coalesced_writes: u64,
    /// Packets read from the uplink that could not be handed on (an
    /// offload the TUN never offered, a partial checksum out of bounds).
    pub uplink_rx_errors: u64,
}

/// What the worker reports: its counters, the core's, and the table size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStatus {
    pub io: IoCounters,
    /// Packets translated, each way (the core's counters).
    pub outbound: u64,
    pub inbound: u64,
    /// Drops per reason, in [`EdgeDrop::ALL`] order.
    pub drops: [u64; EdgeDrop::ALL.len()],
    /// Public addresses held.
    pub table: u64,
    /// VPCs with an internet gateway attached.
    pub attached_vpcs: u64,
}

impl IoStatus {
    /// The drop counter of `reason`.
    pub fn drops(&self, reason: EdgeDrop) -> u64 {
        self.drops[reason as usize]
    }
}

/// The counters as the worker last published them (after every poll
/// round), read by the status writer without asking the worker.
#[derive(Debug, Default)]
struct Published {
    values: [AtomicU64; PUBLISHED_LEN],
}

const PUBLISHED_LEN: usize = HEAD_LEN + EdgeDrop::ALL.len();
/// Counters before the drops in the published array.
const HEAD_LEN: usize = 16;

impl Published {
    fn flatten(s: &IoStatus) -> [u64; PUBLISHED_LEN] {
        let io = &s.io;
        let mut out = [0u64; PUBLISHED_LEN];
        let head = [
            io.underlay_rx,
            io.underlay_rx_bytes,
            io.uplink_tx,
            io.uplink_tx_bytes,
            io.uplink_write_errors,
            io.uplink_rx,
            io.uplink_rx_bytes,
            io.underlay_tx,
            io.underlay_tx_bytes,
            io.underlay_send_errors,
            s.outbound,
            s.inbound,
            s.table,
            s.attached_vpcs,
            io.uplink_coalesced_writes,
            io.uplink_rx_errors,
        ];
        for (o, v) in out.iter_mut().zip(head.iter().chain(s.drops.iter())) {
            *o = *v;
        }
        out
    }

    fn store(&self, s: &IoStatus) {
        for (slot, v) in self.values.iter().zip(Self::flatten(s)) {
            slot.store(v, Ordering::Relaxed);
        }
    }

    fn load(&self) -> IoStatus {
        let at = |i: usize| self.values.get(i).map_or(0, |a| a.load(Ordering::Relaxed));
        let mut drops = [0u64; EdgeDrop::ALL.len()];
        for (i, d) in drops.iter_mut().enumerate() {
            *d = at(HEAD_LEN + i);
        }
        IoStatus {
            io: IoCounters {
                underlay_rx: at(0),
                underlay_rx_bytes: at(1),
                uplink_tx: at(2),
                uplink_tx_bytes: at(3),
                uplink_write_errors: at(4),
                uplink_rx: at(5),
                uplink_rx_bytes: at(6),
                underlay_tx: at(7),
                underlay_tx_bytes: at(8),
                underlay_send_errors: at(9),
                uplink_coalesced_writes: at(14),
                uplink_rx_errors: at(15),
            },
            outbound: at(10),
            inbound: at(11),
            table: at(12),
            attached_vpcs: at(13),
            drops,
        }
    }
}

enum Command {
    /// Apply a table change; answers (addresses held, attached VPCs).
    Apply(Box<TableUpdate>, Sender<(usize, usize)>),
    /// The region's VPN tunnels and gateways' routes, whole.
    Vpn(Box<(Vec<VpnTunnel>, Vec<VgwRoute>)>),
    /// The mapping service's answers to the VPN gateway's questions.
    Mappings(Vec<MappingAnswer>),
    Stop,
}

/// What the VPN gateway role publishes for the node's control threads:
/// reports for the server, the status file's figures, and the addresses
/// it wants the mapping service to name owners of.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VpnShared {
    pub reports: Vec<VpnTunnelReport>,
    /// Bumped whenever a report changes.
    pub reports_seq: u64,
    pub tunnels: Vec<TunnelStatus>,
    pub wanted: Vec<MappingKey>,
    /// Packets decrypted into VPCs, sealed into tunnels, handed on to the
    /// edge serving their tunnel.
    pub to_vpc: u64,
    pub to_tunnel: u64,
    pub handed_on: u64,
    /// Per [`VgwDrop::ALL`].
    pub drops: Vec<(&'static str, u64)>,
}

/// Hands table changes to a running worker.
#[derive(Debug, Clone)]
pub struct IoClient {
    tx: Sender<Command>,
    wake: Arc<UnixDatagram>,
}

/// How long a table change may wait for the worker (a full table of a
/// million addresses takes well under this).
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

impl IoClient {
    fn send(&self, cmd: Command) -> Result<(), IoError> {
        self.tx.send(cmd).map_err(|_| IoError::Stopped)?;
        // A full wake queue already wakes the worker.
        let _ = self.wake.send(&[1]);
        Ok(())
    }

    /// Applies `update` in the worker, between two batches, and waits
    /// until it has: packets sent after this returns see the new table.
    /// Returns (addresses held, VPCs attached).
    pub fn apply(&self, update: TableUpdate) -> Result<(usize, usize), IoError> {
        let (reply, answer) = mpsc::channel();
        self.send(Command::Apply(Box::new(update), reply))?;
        answer
            .recv_timeout(APPLY_TIMEOUT)
            .map_err(|_| IoError::Stopped)
    }

    /// Hands the region's VPN tunnels and gateways' routes to the worker.
    pub fn vpn(&self, tunnels: Vec<VpnTunnel>, routes: Vec<VgwRoute>) -> Result<(), IoError> {
        self.send(Command::Vpn(Box::new((tunnels, routes))))
    }

    /// Hands the mapping service's answers to the worker.
    pub fn mappings(&self, answers: Vec<MappingAnswer>) -> Result<(), IoError> {
        self.send(Command::Mappings(answers))
    }
}

/// A running worker.
#[derive(Debug)]
pub struct IoHandle {
    client: IoClient,
    published: Arc<Published>,
    vpn: Arc<Mutex<VpnShared>>,
    thread: Option<JoinHandle<()>>,
    underlay: SocketAddr,
}

impl IoHandle {
    pub fn client(&self) -> IoClient {
        self.client.clone()
    }

    /// The counters as of the worker's last poll round.
    pub fn status(&self) -> IoStatus {
        self.published.load()
    }

    /// What the VPN gateway role last published.
    pub fn vpn(&self) -> Arc<Mutex<VpnShared>> {
        Arc::clone(&self.vpn)
    }

    /// The bound underlay address.
    pub fn underlay_addr(&self) -> SocketAddr {
        self.underlay
    }

    /// Stops the worker; its TUN (and the routes into it) go with it.
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

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    // The rest of the 40-byte union, which TUNSETIFF does not read.
    _pad: [u8; 22],
}

/// Opens (creating) layer-3 TUN `ifname` in the calling thread's
/// namespace: IP packets behind a `virtio_net_hdr` each way, no
/// packet-information header, nonblocking. The kernel may hand us TCP/IPv4
/// super-packets and partial checksums (`TUN_F_CSUM | TUN_F_TSO4`), and
/// takes super-packets from us. Not persistent: the device and its routes
/// vanish when the fd closes.
fn open_tun(ifname: &str) -> Result<File, IoError> {
    let err = |op: &'static str| {
        let ifname = ifname.to_string();
        move |source: io::Error| IoError::Tun { ifname, op, source }
    };
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(err("open /dev/net/tun"))?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
        _pad: [0; 22],
    };
    for (dst, src) in req.name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `tun` is an open TUN control fd and `req` a live, properly
    // sized ifreq; the kernel reads the name and flags and writes back the
    // name, all within the struct.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc != 0 {
        return Err(err("TUNSETIFF")(io::Error::last_os_error()));
    }
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let rc = unsafe {
        libc::ioctl(
            tun.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            libc::c_ulong::from(offloads),
        )
    };
    if rc != 0 {
        return Err(err("TUNSETOFFLOAD")(io::Error::last_os_error()));
    }
    Ok(tun)
}

/// Runs `ip` in the node's namespace (`ip -n NS …`) or our own.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<String, NetnsError> {
    let mut all: Vec<&str> = Vec::with_capacity(args.len() + 2);
    if let Some(ns) = netns {
        all.extend(["-n", ns]);
    }
    all.extend_from_slice(args);
    netns::run("ip", &all)
}

/// Binds the underlay socket and opens the TUN inside the namespace, brings
/// the TUN up, and starts the worker.
pub fn spawn(cfg: &IoConfig) -> Result<IoHandle, IoError> {
    netns::check_name(&cfg.tun_name)?;
    if cfg.tun_name.len() >= libc::IFNAMSIZ {
        return Err(NetnsError::BadName(cfg.tun_name.clone()).into());
    }
    let addr = SocketAddr::new(cfg.underlay_ip, GENEVE_PORT);
    // A predecessor that was just killed may still hold the port or the
    // TUN (its threads outlive its leader): wait for it a little.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (udp, tun) = loop {
        let opened = netns::in_netns(cfg.netns.as_deref(), || {
            Ok((UdpSocket::bind(addr), open_tun(&cfg.tun_name)))
        })?;
        let busy = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::AddrInUse | io::ErrorKind::ResourceBusy
            ) && Instant::now() < deadline
        };
        match opened {
            (Ok(udp), Ok(tun)) => break (udp, tun),
            (Err(e), _) if busy(&e) => {}
            (_, Err(IoError::Tun { source, .. })) if busy(&source) => {}
            (Err(source), _) => return Err(IoError::Bind { addr, source }),
            (_, Err(e)) => return Err(e),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    udp.set_nonblocking(true).map_err(IoError::Thread)?;
    openvpc_agent::batch_io::grow_socket_buffers(&udp);
    if let Err(e) = openvpc_agent::batch_io::enable_gro(udp.as_raw_fd()) {
        tracing::warn!(error = %e, "UDP GRO is not available; underlay datagrams arrive one by one");
    }
    let ns = cfg.netns.as_deref();
    let tun_name = cfg.tun_name.as_str();
    // No IPv6 link-local on the uplink: its router solicitations would only
    // come back to us as drops. Older iproute2 lacks the option; harmless.
    let _ = ip(ns, &["link", "set", "dev", tun_name, "addrgenmode", "none"]);
    let mtu = TUN_MTU.to_string();
    // gso_max_size stays the kernel's 64 KiB: forwarded super-packets
    // (GRO on the way in) bigger than it would be cut before the TUN, one
    // read per segment; `send_super` splits what one UDP send cannot carry.
    ip(ns, &["link", "set", "dev", tun_name, "mtu", &mtu, "up"])?;

    let (wake_tx, wake_rx) = UnixDatagram::pair().map_err(IoError::Thread)?;
    wake_tx.set_nonblocking(true).map_err(IoError::Thread)?;
    wake_rx.set_nonblocking(true).map_err(IoError::Thread)?;
    let (tx, rx) = mpsc::channel();
    let published = Arc::new(Published::default());
    let vpn = Arc::new(Mutex::new(VpnShared::default()));
    let underlay = udp.local_addr().map_err(IoError::Thread)?;
    let mut worker = Worker {
        edge: Edge::new(cfg.router_mac),
        vgw: Vgw::new(&cfg.edge_id, cfg.router_mac),
        vgw_out: Vec::new(),
        vpn: Arc::clone(&vpn),
        last_tick: Instant::now(),
        udp,
        tun,
        tun_dead: false,
        wake: wake_rx,
        rx,
        bufs: (0..BATCH)
            .map(|_| PacketBuf::with_capacity(MAX_GRO + VNET_HDR_LEN))
            .collect(),
        segment_sizes: vec![0; BATCH],
        headers: Vec::new(),
        rx_bufs: (0..BATCH)
            .map(|_| PacketBuf::with_capacity(MAX_GRO))
            .collect(),
        work: (0..BATCH)
            .map(|_| PacketBuf::with_capacity(MAX_PACKET))
            .collect(),
        outs: vec![EdgeOutput::Drop(EdgeDrop::Malformed); BATCH],
        coalescer: Coalescer::new(),
        dsts: vec![None; BATCH],
        mmsg: Mmsg::new(BATCH),
        io: IoCounters::default(),
        published: published.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("openvpc-edge-io".into())
        .spawn(move || worker.run())
        .map_err(IoError::Thread)?;
    Ok(IoHandle {
        client: IoClient {
            tx,
            wake: Arc::new(wake_tx),
        },
        published,
        vpn,
        thread: Some(thread),
        underlay,
    })
}

struct Worker {
    edge: Edge,
    /// The VPN gateway role: the tunnels this node serves.
    vgw: Vgw,
    /// What the VPN gateway said to send, sent after each batch.
    vgw_out: Vec<VgwOutput>,
    vpn: Arc<Mutex<VpnShared>>,
    last_tick: Instant,
    udp: UdpSocket,
    tun: File,
    /// The TUN failed for good (deleted under us): it leaves the poll set
    /// instead of waking it forever.
    tun_dead: bool,
    wake: UnixDatagram,
    rx: Receiver<Command>,
    /// Packets read from the TUN.
    bufs: Vec<PacketBuf>,
    /// The TCP segment size of each super-packet in `bufs` (0: a packet).
    segment_sizes: Vec<u16>,
    /// The per-datagram headers of a super-packet being sent.
    headers: Vec<u8>,
    /// Underlay reads: each a datagram or a GRO run of them.
    rx_bufs: Vec<PacketBuf>,
    /// Datagrams split from the underlay reads, translated in place a
    /// batch at a time.
    work: Vec<PacketBuf>,
    /// What the core said of each packet of a batch, either way.
    outs: Vec<EdgeOutput>,
    /// Translated packets of one flow waiting to be written as one.
    coalescer: Coalescer,
    /// Where each inbound packet of the batch goes, if anywhere.
    dsts: Vec<Option<SocketAddr>>,
    mmsg: Mmsg,
    io: IoCounters,
    published: Arc<Published>,
}

/// The worker asked to stop.
struct Stopped;

impl Worker {
    fn run(&mut self) {
        self.publish();
        loop {
            use openvpc_agent::batch_io::readable;
            let mut fds = [
                readable(self.wake.as_raw_fd()),
                readable(self.udp.as_raw_fd()),
                // A negative fd is skipped by poll.
                readable(if self.tun_dead {
                    -1
                } else {
                    self.tun.as_raw_fd()
                }),
            ];
            let wait = if self.vgw.is_active() {
                VGW_TICK.as_millis() as libc::c_int
            } else {
                IDLE_POLL_MS
            };
            if let Err(e) = openvpc_agent::batch_io::poll(&mut fds, wait) {
                tracing::error!(error = %e, "poll failed; the edge worker stops");
                return;
            }
            let [wake, udp, tun] = fds;
            // Table changes first, so packets that arrived after a change
            // was acknowledged are translated with it.
            if wake.revents != 0 {
                openvpc_agent::batch_io::drain(&self.wake);
                if self.commands().is_err() {
                    return;
                }
            }
            if udp.revents != 0 {
                self.underlay_to_uplink();
            }
            if tun.revents != 0 {
                self.uplink_to_underlay();
            }
            if self.vgw.is_active() && self.last_tick.elapsed() >= VGW_TICK {
                self.last_tick = Instant::now();
                self.vgw.tick(unix_ms(), &mut OsEntropy, &mut self.vgw_out);
                self.send_vgw();
                self.publish_vpn();
            }
            self.publish();
        }
    }

    /// Sends what the VPN gateway produced: sealed packets and IKE out of
    /// the uplink, decrypted ones to hosts and frames handed on to edges
    /// over the underlay.
    fn send_vgw(&mut self) {
        for o in self.vgw_out.drain(..) {
            match o {
                VgwOutput::Uplink(packet) => {
                    let written = write_tun(&self.tun, &VnetHdr::default(), &packet);
                    match written {
                        Ok(n) if n == packet.len() + VNET_HDR_LEN => {
                            self.io.uplink_tx += 1;
                            self.io.uplink_tx_bytes += packet.len() as u64;
                        }
                        Ok(_) | Err(_) => self.io.uplink_write_errors += 1,
                    }
                }
                VgwOutput::Underlay { dst, datagram } => {
                    self.io.underlay_tx_bytes += datagram.len() as u64;
                    match self
                        .udp
                        .send_to(&datagram, SocketAddr::new(dst, GENEVE_PORT))
                    {
                        Ok(_) => self.io.underlay_tx += 1,
                        Err(_) => self.io.underlay_send_errors += 1,
                    }
                }
            }
        }
    }

    /// Publishes the VPN gateway's reports (when they changed), figures
    /// and mapping questions.
    fn publish_vpn(&mut self) {
        let changed = self.vgw.take_reports_changed();
        let wanted = self.vgw.take_wanted();
        let mut shared = self.vpn.lock().unwrap_or_else(PoisonError::into_inner);
        if changed {
            shared.reports = self.vgw.reports();
            shared.reports_seq += 1;
        }
        shared.tunnels = self.vgw.status();
        shared.wanted.extend(wanted);
        shared.to_vpc = self.vgw.to_vpc;
        shared.to_tunnel = self.vgw.to_tunnel;
        shared.handed_on = self.vgw.handed_on;
        shared.drops = VgwDrop::ALL
            .iter()
            .map(|d| (d.name(), self.vgw.drops(*d)))
            .collect();
    }

    fn commands(&mut self) -> Result<(), Stopped> {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Stop => return Err(Stopped),
                Command::Apply(update, reply) => {
                    self.edge.apply(&update);
                    let _ = reply.send((self.edge.len(), self.edge.attached_len()));
                }
                Command::Vpn(vpn) => {
                    let (tunnels, routes) = *vpn;
                    self.vgw.apply(&tunnels, &routes, unix_ms());
                    self.publish_vpn();
                }
                Command::Mappings(answers) => {
                    self.vgw.answer(&answers, unix_ms(), &mut self.vgw_out);
                    self.send_vgw();
                }
            }
        }
        Ok(())
    }

    fn publish(&self) {
        let mut drops = [0u64; EdgeDrop::ALL.len()];
        for (d, reason) in drops.iter_mut().zip(EdgeDrop::ALL) {
            *d = self.edge.drops(reason);
        }
        self.published.store(&IoStatus {
            io: self.io,
            outbound: self.edge.outbound,
            inbound: self.edge.inbound,
            drops,
            table: self.edge.len() as u64,
            attached_vpcs: self.edge.attached_len() as u64,
        });
    }

    /// Geneve from hosts: translated outbound and written to the uplink,
    /// runs of one flow's packets as one write.
    fn underlay_to_uplink(&mut self) {
        let mut rx = std::mem::take(&mut self.rx_bufs);
        // Datagrams waiting in `work` for their batch.
        let mut held = 0;
        for _ in 0..BATCHES_PER_WAKE {
            let n = self.mmsg.recv(self.udp.as_raw_fd(), &mut rx, MAX_GRO);
            for (i, buf) in rx.iter().enumerate().take(n) {
                let data = buf.data();
                let seg = match self.mmsg.segment(i) {
                    0 => data.len().max(1),
                    s => s,
                };
                let from = self.mmsg.source(i).map(|a| a.ip());
                for datagram in data.chunks(seg) {
                    self.io.underlay_rx += 1;
                    self.io.underlay_rx_bytes += datagram.len() as u64;
                    // A frame to a VPN gateway is the gateway's; the rest
                    // is the internet gateway's translation.
                    if self.vgw.is_active()
                        && let Some(from) = from
                        && self.vgw.from_underlay(datagram, from, &mut self.vgw_out)
                    {
                        continue;
                    }
                    if let Some(work) = self.work.get_mut(held) {
                        work.set(datagram);
                        held += 1;
                    }
                    if held == BATCH {
                        self.outbound_held(held);
                        held = 0;
                    }
                }
            }
            if n < BATCH {
                break;
            }
        }
        self.outbound_held(held);
        self.rx_bufs = rx;
        self.flush_uplink();
        self.send_vgw();
    }

    /// Translates the first `held` datagrams of `work` as one batch and
    /// queues what may leave for the uplink.
    fn outbound_held(&mut self, held: usize) {
        let (Some(work), Some(outs)) = (self.work.get_mut(..held), self.outs.get_mut(..held))
        else {
            return;
        };
        self.edge.outbound_batch(work, outs);
        for i in 0..held {
            if self.outs.get(i) == Some(&EdgeOutput::Uplink) {
                self.queue_for_uplink(i);
            }
        }
    }

    /// Hands the translated packet `work[i]` to the coalescer, writing what
    /// it held first when the packet cannot join it.
    fn queue_for_uplink(&mut self, i: usize) {
        let Some(work) = self.work.get_mut(i) else {
            return;
        };
        if !work.push_front(&FAKE_ETHERNET) {
            self.io.uplink_write_errors += 1;
            return;
        }
        if self.coalescer.push(work.data()) {
            return;
        }
        self.flush_uplink();
        let Some(work) = self.work.get(i) else {
            return;
        };
        if !self.coalescer.push(work.data()) {
            // Neither TCP nor UDP (ICMP): as it is.
            let packet = work.data().get(FAKE_ETHERNET.len()..).unwrap_or_default();
            let written = write_tun(&self.tun, &VnetHdr::default(), packet);
            self.count_write(written, packet.len(), 1);
        }
    }

    /// Writes what the coalescer holds, if anything.
    fn flush_uplink(&mut self) {
        let count = self.coalescer.len();
        if count == 0 {
            return;
        }
        let (mut hdr, frame) = self.coalescer.frame();
        let packet = frame.get(FAKE_ETHERNET.len()..).unwrap_or_default();
        // The coalescer's offsets count the Ethernet header the TUN lacks.
        let eth = FAKE_ETHERNET.len() as u16;
        if hdr.flags & F_NEEDS_CSUM != 0 {
            hdr.csum_start = hdr.csum_start.saturating_sub(eth);
            hdr.hdr_len = hdr.hdr_len.saturating_sub(eth);
        }
        let written = write_tun(&self.tun, &hdr, packet);
        let len = packet.len();
        self.count_write(written, len, count);
    }

    fn count_write(&mut self, written: io::Result<usize>, len: usize, packets: usize) {
        match written {
            Ok(n) if n == len + VNET_HDR_LEN => {
                self.io.uplink_tx += packets as u64;
                self.io.uplink_tx_bytes += len as u64;
                if packets > 1 {
                    self.io.uplink_coalesced_writes += 1;
                }
            }
            Ok(_) | Err(_) => self.io.uplink_write_errors += packets as u64,
        }
    }

    /// Packets to public addresses: translated inbound and sent to hosts.
    fn uplink_to_underlay(&mut self) {
        for _ in 0..BATCHES_PER_WAKE {
            let read = self.read_tun();
            for buf in self.bufs.iter().take(read) {
                self.io.uplink_rx += 1;
                self.io.uplink_rx_bytes += buf.len() as u64;
            }
            let n = self.take_tunnel_packets(read);
            if let (Some(bufs), Some(outs)) = (self.bufs.get_mut(..n), self.outs.get_mut(..n)) {
                self.edge.inbound_batch(bufs, outs);
            }
            // Packets queue for one sendmmsg; a super-packet is sent on its
            // own, after what queued before it, so a flow keeps its order.
            let mut queued = 0;
            for i in 0..n {
                let (Some(buf), Some(dst), Some(out)) =
                    (self.bufs.get(i), self.dsts.get_mut(i), self.outs.get(i))
                else {
                    break;
                };
                *dst = match *out {
                    EdgeOutput::Underlay { dst, .. } => {
                        self.io.underlay_tx_bytes += buf.len() as u64;
                        // The core's entropy port would need a socket per
                        // port; hosts do not read the outer source port.
                        Some(SocketAddr::new(dst, GENEVE_PORT))
                    }
                    _ => None,
                };
                let mss = self.segment_sizes.get(i).copied().unwrap_or(0);
                if mss != 0 && dst.is_some() {
                    self.send_queued(queued, i);
                    queued = i + 1;
                    self.send_super(i, usize::from(mss));
                }
            }
            self.send_queued(queued, n);
            self.send_vgw();
            if read < BATCH {
                break;
            }
        }
    }

    /// Hands the packets of the first `n` read to a VPN tunnel's outside
    /// address to the gateway, and moves the rest to the front, in order;
    /// returns how many are left for translation.
    fn take_tunnel_packets(&mut self, n: usize) -> usize {
        if !self.vgw.is_active() {
            return n;
        }
        let mut kept = 0;
        for i in 0..n {
            let dst = self.bufs.get(i).and_then(|b| ipv4_destination(b.data()));
            if let Some(dst) = dst
                && self.vgw.serves(dst)
            {
                if let Some(buf) = self.bufs.get(i) {
                    self.vgw
                        .from_uplink(buf.data(), unix_ms(), &mut OsEntropy, &mut self.vgw_out);
                }
                continue;
            }
            if i != kept {
                self.bufs.swap(i, kept);
                self.segment_sizes.swap(i, kept);
            }
            kept += 1;
        }
        kept
    }

    /// Sends the translated packets `from..to` of the batch in one sendmmsg.
    fn send_queued(&mut self, from: usize, to: usize) {
        if from >= to {
            return;
        }
        let items = self
            .bufs
            .iter()
            .zip(self.dsts.iter())
            .take(to)
            .skip(from)
            .filter_map(|(b, d)| d.map(|d| (b.data(), d)));
        let (sent, failed) = self.mmsg.send(self.udp.as_raw_fd(), items);
        self.io.underlay_tx += sent as u64;
        self.io.underlay_send_errors += failed as u64;
    }

    /// Cuts translated super-packet `i` (Geneve, Ethernet, TCP/IPv4) into
    /// one datagram per segment of `mss` bytes and sends them in one call.
    fn send_super(&mut self, i: usize, mss: usize) {
        let (Some(buf), Some(Some(dst))) = (self.bufs.get(i), self.dsts.get(i).copied()) else {
            return;
        };
        let pkt = buf.data();
        self.headers.clear();
        let Ok(cut) = cut_tcp4(pkt, GeneveHeader::LEN, mss, &mut self.headers) else {
            self.io.underlay_send_errors += 1;
            return;
        };
        // One send carries at most 64 datagrams and 65,507 bytes; a 64 KiB
        // super-packet, its headers repeated per segment, goes in two.
        let per_send = (MAX_GSO_BYTES / cut.stride().max(1)).clamp(1, MAX_SEGMENTS);
        let (addr, len) = sockaddr(dst);
        let mut first = 0;
        while first < cut.count {
            let count = per_send.min(cut.count - first);
            // On the stack: nothing is allocated per packet.
            let mut parts = [io::IoSlice::new(&[]); 2 * MAX_SEGMENTS];
            let headers = self.headers.chunks(cut.headers).skip(first).take(count);
            for (k, (slot, h)) in parts.chunks_exact_mut(2).zip(headers).enumerate() {
                if let [head, body] = slot {
                    *head = io::IoSlice::new(h);
                    *body = io::IoSlice::new(cut.chunk(pkt, first + k));
                }
            }
            let used = parts.get(..2 * count).unwrap_or_default();
            match send_segmented(self.udp.as_raw_fd(), used, cut.stride(), &addr, len) {
                Ok(()) => self.io.underlay_tx += count as u64,
                Err(e) => {
                    if self.io.underlay_send_errors == 0 {
                        tracing::warn!(error = %e, host = %dst, "sending to a host failed (counted in underlay_send_errors)");
                    }
                    self.io.underlay_send_errors += count as u64;
                }
            }
            first += count;
        }
    }

    /// Reads packets from the TUN until it is empty or a batch is full.
    fn read_tun(&mut self) -> usize {
        let mut n = 0;
        while n < BATCH && !self.tun_dead {
            let Some(buf) = self.bufs.get_mut(n) else {
                break;
            };
            match (&self.tun).read(buf.spare(MAX_GRO + VNET_HDR_LEN)) {
                Ok(len) => {
                    buf.set_len(len);
                    match from_tun(buf) {
                        Some(mss) => {
                            if let Some(slot) = self.segment_sizes.get_mut(n) {
                                *slot = mss;
                            }
                            n += 1;
                        }
                        None => self.io.uplink_rx_errors += 1,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!(error = %e, "the uplink TUN failed; inbound traffic stops");
                    self.tun_dead = true;
                }
            }
        }
        n
    }
}

/// Unix milliseconds now: the VPN gateway's clock (its reports carry it).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The kernel's randomness, for IKE's nonces, SPIs and Diffie-Hellman
/// secrets.
struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) {
        if let Err(e) = getrandom::fill(buf) {
            // Keys made from anything weaker would be worse than no
            // tunnel: stop rather than serve them.
            tracing::error!(error = %e, "the kernel's random source failed; the edge stops");
            std::process::abort();
        }
    }
}

/// Writes `packet` behind `hdr` to the TUN in one call (a TUN takes a
/// packet whole or not at all); the bytes written, header included.
fn write_tun(tun: &File, hdr: &VnetHdr, packet: &[u8]) -> io::Result<usize> {
    let head = hdr.bytes();
    let iov = [
        libc::iovec {
            iov_base: head.as_ptr().cast_mut().cast(),
            iov_len: head.len(),
        },
        libc::iovec {
            iov_base: packet.as_ptr().cast_mut().cast(),
            iov_len: packet.len(),
        },
    ];
    // SAFETY: both iovecs cover live buffers borrowed for this call, which
    // writev only reads.
    let rc = unsafe { libc::writev(tun.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// Strips the `virtio_net_hdr` of a packet read from the TUN; the TCP
/// segment size of a super-packet (its checksums are rebuilt per segment
/// when it is cut), 0 for a packet, whose partial checksum is completed
/// here; `None` for what cannot be handed on (an offload other than
/// TCP/IPv4, or a header out of bounds).
fn from_tun(buf: &mut PacketBuf) -> Option<u16> {
    let hdr = VnetHdr::parse(buf.data()).ok()?;
    if !buf.pop_front(VNET_HDR_LEN) {
        return None;
    }
    if hdr.is_gso() {
        return (hdr.gso_type & !GSO_ECN == GSO_TCPV4 && hdr.gso_size > 0).then_some(hdr.gso_size);
    }
    if hdr.flags & F_NEEDS_CSUM != 0 {
        complete_checksum(
            buf.data_mut(),
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        )
        .ok()?;
    }
    Some(0)
}

/// The routes that send the public pool into the TUN, kept equal to the
/// pool the control plane announces.
#[derive(Debug)]
pub struct Routes {
    netns: Option<String>,
    tun: String,
    installed: BTreeSet<Ipv4Net>,
}

impl Routes {
    pub fn new(netns: Option<String>, tun: String) -> Self {
        Routes {
            netns,
            tun,
            installed: BTreeSet::new(),
        }
    }

    /// The prefixes routed to the TUN now.
    pub fn installed(&self) -> impl Iterator<Item = &Ipv4Net> {
        self.installed.iter()
    }

    /// Routes every prefix of `pool` to the TUN and removes the routes of
    /// prefixes no longer in it. A route that cannot be added is logged and
    /// tried again at the next sync.
    pub fn sync(&mut self, pool: &[Ipv4Net]) {
        let ns = self.netns.as_deref();
        let wanted: BTreeSet<Ipv4Net> = pool.iter().map(Ipv4Net::trunc).collect();
        let gone: Vec<Ipv4Net> = self.installed.difference(&wanted).copied().collect();
        for net in gone {
            let cidr = net.to_string();
            // Already gone (the TUN restarted) is fine.
            let _ = ip(ns, &["route", "del", &cidr, "dev", &self.tun]);
            self.installed.remove(&net);
            tracing::info!(prefix = %net, "no longer in the public pool: route removed");
        }
        for net in wanted {
            if self.installed.contains(&net) {
                continue;
            }
            let cidr = net.to_string();
            match ip(ns, &["route", "replace", &cidr, "dev", &self.tun]) {
                Ok(_) => {
                    self.installed.insert(net);
                    tracing::info!(prefix = %net, tun = %self.tun, "public pool routed to the uplink");
                }
                Err(e) => {
                    tracing::warn!(prefix = %net, error = %e, "could not route the public pool to the uplink")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_counters_round_trip() {
        let mut s = IoStatus {
            io: IoCounters {
                underlay_rx: 1,
                underlay_rx_bytes: 2,
                uplink_tx: 3,
                uplink_tx_bytes: 4,
                uplink_write_errors: 5,
                uplink_rx: 6,
                uplink_rx_bytes: 7,
                underlay_tx: 8,
                underlay_tx_bytes: 9,
                underlay_send_errors: 10,
                uplink_coalesced_writes: 15,
                uplink_rx_errors: 16,
            },
            outbound: 11,
            inbound: 12,
            table: 13,
            attached_vpcs: 14,
            drops: [0; EdgeDrop::ALL.len()],
        };
        for (i, d) in s.drops.iter_mut().enumerate() {
            *d = 100 + i as u64;
        }
        let p = Published::default();
        p.store(&s);
        assert_eq!(p.load(), s);
        assert_eq!(s.drops(EdgeDrop::UnknownPublicIp), 103);
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }

    #[test]
    fn the_tun_mtu_leaves_room_for_the_encapsulation() {
        assert_eq!(
            usize::from(TUN_MTU) + openvpc_packet::geneve::OVERHEAD_V4,
            1500
        );
    }
}
