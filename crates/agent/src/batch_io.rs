//! Batched underlay I/O: `recvmmsg(2)` straight into the router's
//! [`PacketBuf`]s and `sendmmsg(2)` from them, so a batch of datagrams
//! costs one system call each way and no copy. The message headers and
//! address buffers are allocated once and reused.
//!
//! Only the system calls live here; what the datagrams mean is the router's.

use core::net::SocketAddr;
use std::io;
use std::os::fd::RawFd;

use openvpc_dataplane::PacketBuf;

/// A socket address in the form the kernel takes.
pub fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data for which all-zero is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in; we write one whole value into it.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in>(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast::<libc::sockaddr_in6>(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A `pollfd` asking for input on `fd` (a negative `fd` is skipped).
pub fn readable(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// `poll(2)` over `fds` for up to `timeout_ms`: how many are ready. A
/// signal's interruption counts as none ready; any other failure is the
/// caller's to report (a worker stops on it).
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: libc::c_int) -> io::Result<usize> {
    // SAFETY: `fds` is a live, initialised slice of pollfd and its length
    // is passed with it; poll only writes `revents`.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(e)
    }
}

/// Empties a worker's wake-up socket (the commands wait in a channel).
pub fn drain(wake: &std::os::unix::net::UnixDatagram) {
    let mut b = [0u8; 64];
    while wake.recv(&mut b).is_ok() {}
}

/// The address in `storage` (as the kernel filled it), if it is IPv4 or
/// IPv6.
pub fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; it
            // is larger than and aligned for it.
            let sin = unsafe { &*(&raw const *storage).cast::<libc::sockaddr_in>() };
            let ip = core::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*(&raw const *storage).cast::<libc::sockaddr_in6>() };
            let ip = core::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

/// Reusable state for `recvmmsg` and `sendmmsg` batches of up to `n`.
pub struct Mmsg {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    /// Control buffers for received messages (u64s keep them aligned).
    ctrl: Vec<[u64; 8]>,
    /// For each message of the last `recv`: the segment size of a
    /// coalesced (UDP GRO) datagram, or 0.
    segs: Vec<usize>,
}

// SAFETY: the raw pointers in the headers are set and used only inside one
// `recv` or `send` call, on the calling thread; between calls they are
// stale and never read, so moving the state to another thread is sound.
unsafe impl Send for Mmsg {}

impl std::fmt::Debug for Mmsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mmsg")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

fn empty_hdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is plain data (pointers and integers); all-zero is a
    // valid, empty header.
    unsafe { std::mem::zeroed() }
}

impl Mmsg {
    /// State for batches of up to `n` datagrams.
    pub fn new(n: usize) -> Self {
        Mmsg {
            hdrs: (0..n).map(|_| empty_hdr()).collect(),
            iovs: (0..n)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            // SAFETY: sockaddr_storage is plain data.
            addrs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
            ctrl: vec![[0; 8]; n],
            segs: vec![0; n],
        }
    }

    /// Receives up to `bufs.len()` datagrams of up to `max` bytes each,
    /// without blocking, straight into `bufs`. Returns how many arrived
    /// (0 when none waits).
    pub fn recv(&mut self, fd: RawFd, bufs: &mut [PacketBuf], max: usize) -> usize {
        let n = bufs.len().min(self.hdrs.len());
        for (i, buf) in bufs.iter_mut().enumerate().take(n) {
            let room = buf.spare(max);
            self.iovs[i] = libc::iovec {
                iov_base: room.as_mut_ptr().cast(),
                iov_len: room.len(),
            };
            let mut hdr = empty_hdr();
            // The sender's address comes back here (`source`).
            hdr.msg_hdr.msg_name = (&raw mut self.addrs[i]).cast();
            hdr.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
            hdr.msg_hdr.msg_iov = &raw mut self.iovs[i];
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_hdr.msg_control = self.ctrl[i].as_mut_ptr().cast();
            hdr.msg_hdr.msg_controllen = std::mem::size_of::<[u64; 8]>();
            self.hdrs[i] = hdr;
        }
        // SAFETY: the first `n` headers point at `n` iovecs, each covering
        // a live, writable region of its buffer, and at `n` control
        // buffers; nothing else touches them until the call returns.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc <= 0 {
            return 0;
        }
        let got = rc as usize;
        for (i, (buf, hdr)) in bufs.iter_mut().zip(&self.hdrs).take(got).enumerate() {
            buf.set_len(hdr.msg_len as usize);
            self.segs[i] = gro_segment(&hdr.msg_hdr);
        }
        got
    }

    /// The sender of received message `i` of the last `recv`.
    pub fn source(&self, i: usize) -> Option<SocketAddr> {
        self.addrs.get(i).and_then(from_sockaddr)
    }

    /// The segment size of received message `i` if the kernel coalesced
    /// several datagrams into it (UDP GRO), else 0.
    pub fn segment(&self, i: usize) -> usize {
        self.segs.get(i).copied().unwrap_or(0)
    }

    /// Sends each `(datagram, destination)` in one `sendmmsg` call (more if
    /// the kernel takes only part). Returns (sent, failed).
    pub fn send<'a>(
        &mut self,
        fd: RawFd,
        items: impl Iterator<Item = (&'a [u8], SocketAddr)>,
    ) -> (usize, usize) {
        let mut n = 0;
        for (data, dst) in items.take(self.hdrs.len()) {
            let (storage, len) = sockaddr(dst);
            self.addrs[n] = storage;
            self.iovs[n] = libc::iovec {
                iov_base: data.as_ptr().cast_mut().cast(),
                iov_len: data.len(),
            };
            let mut hdr = empty_hdr();
            hdr.msg_hdr.msg_name = (&raw mut self.addrs[n]).cast();
            hdr.msg_hdr.msg_namelen = len;
            hdr.msg_hdr.msg_iov = &raw mut self.iovs[n];
            hdr.msg_hdr.msg_iovlen = 1;
            self.hdrs[n] = hdr;
            n += 1;
        }
        let (mut done, mut failed) = (0, 0);
        while done < n {
            // SAFETY: headers done..n point at live iovecs over the callers'
            // datagrams (borrowed for this call) and at our address buffers;
            // sendmmsg only reads them.
            let rc = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[done..].as_mut_ptr(),
                    (n - done) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                done += rc as usize;
                continue;
            }
            if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first message failed (full socket buffer, unreachable):
            // count it and go on with the rest.
            failed += 1;
            done += 1;
        }
        (n - failed, failed)
    }
}

/// The `UDP_GRO` segment size in a received message's control data, or 0.
fn gro_segment(msg: &libc::msghdr) -> usize {
    // SAFETY: `msg` was filled by recvmmsg: its control pointer and length
    // describe a live buffer; the CMSG_* macros stay inside it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_UDP && (*cmsg).cmsg_type == libc::UDP_GRO {
                let size = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                return usize::try_from(size).unwrap_or(0);
            }
            cmsg = libc::CMSG_NXTHDR(msg, cmsg);
        }
    }
    0
}

/// Socket buffer sizes for the underlay: a TCP super-segment arrives as a
/// burst of ~45 datagrams per 64 KiB, and the default 208 KiB receive
/// buffer overflows (a loss, then a TCP retransmit) while the worker is
/// still writing the previous burst to a TAP.
const UNDERLAY_RCVBUF: i32 = 8 << 20;
const UNDERLAY_SNDBUF: i32 = 4 << 20;

/// Grows the underlay socket's buffers past the sysctl limits where we
/// may (root: `SO_*BUFFORCE`), else as far as the limits allow.
pub fn grow_socket_buffers(udp: &std::net::UdpSocket) {
    let set = |opt: libc::c_int, value: i32| {
        // SAFETY: setsockopt reads one c_int from a live local.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(udp),
                libc::SOL_SOCKET,
                opt,
                (&raw const value).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE, UNDERLAY_RCVBUF) != 0 {
        set(libc::SO_RCVBUF, UNDERLAY_RCVBUF);
    }
    if set(libc::SO_SNDBUFFORCE, UNDERLAY_SNDBUF) != 0 {
        set(libc::SO_SNDBUF, UNDERLAY_SNDBUF);
    }
}

/// Asks the kernel to hand over runs of same-sized datagrams of one flow
/// as one coalesced buffer (`UDP_GRO`); see [`Mmsg::segment`].
pub fn enable_gro(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends `parts`, read as one buffer — segments of `stride` bytes back to
/// back, the last maybe shorter — as one `sendmsg` with `UDP_SEGMENT`: the
/// kernel cuts it into datagrams (in hardware or late in the stack), one
/// per segment. A segment may span parts (headers in one, payload in the
/// next), so nothing is copied to join them.
pub fn send_segmented(
    fd: RawFd,
    parts: &[io::IoSlice<'_>],
    stride: usize,
    addr: &libc::sockaddr_storage,
    addr_len: libc::socklen_t,
) -> io::Result<()> {
    // One cmsg with a u16; u64s keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 4];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut msg = empty_hdr().msg_hdr;
    msg.msg_name = (addr as *const libc::sockaddr_storage).cast_mut().cast();
    msg.msg_namelen = addr_len;
    // IoSlice is ABI-compatible with iovec on Unix; sendmsg only reads.
    msg.msg_iov = parts.as_ptr().cast_mut().cast();
    msg.msg_iovlen = parts.len();
    if len > stride {
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as u32) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: msg_control points at `control` (32 aligned bytes, more
        // than CMSG_SPACE(2)); CMSG_FIRSTHDR returns a header inside it and
        // CMSG_DATA its data, which holds the u16 written.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_UDP;
            (*cmsg).cmsg_type = libc::UDP_SEGMENT;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), stride as u16);
        }
    }
    loop {
        // SAFETY: msg points at live name, iovec and control buffers that
        // outlive the call; sendmsg only reads them.
        let rc = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_one_call_each() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = b.local_addr().unwrap();
        let datagrams: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let mut m = Mmsg::new(8);
        let (sent, failed) = m.send(a.as_raw_fd(), datagrams.iter().map(|d| (d.as_slice(), dst)));
        assert_eq!((sent, failed), (5, 0));
        let mut bufs: Vec<PacketBuf> = (0..8).map(|_| PacketBuf::default()).collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let got = m.recv(b.as_raw_fd(), &mut bufs, 2048);
        assert_eq!(got, 5);
        for (buf, d) in bufs.iter().zip(&datagrams) {
            assert_eq!(buf.data(), d.as_slice());
        }
        assert_eq!(m.recv(b.as_raw_fd(), &mut bufs, 2048), 0);
    }

    #[test]
    fn a_segmented_send_arrives_as_separate_datagrams() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let data: Vec<u8> = (0..250u8).collect();
        let (addr, len) = sockaddr(b.local_addr().unwrap());
        send_segmented(a.as_raw_fd(), &[io::IoSlice::new(&data)], 100, &addr, len).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let mut m = Mmsg::new(8);
        let mut bufs: Vec<PacketBuf> = (0..8).map(|_| PacketBuf::default()).collect();
        assert_eq!(m.recv(b.as_raw_fd(), &mut bufs, 2048), 3);
        assert_eq!(bufs[0].data(), &data[..100]);
        assert_eq!(bufs[2].data(), &data[200..]);
    }
}
