//! Linux plumbing for instances and the underlay: named network namespaces
//! (the `ip netns` kind, so `ip netns exec NAME` works), running code inside
//! one from a short-lived thread, persistent TAP devices, and the few `ip`
//! and `udhcpc` commands an instance needs.
//!
//! It knows nothing of ENIs or routers. The unsafe here is limited to
//! `setns(2)` and the TUN ioctls.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use openvpc_packet::MacAddr;

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";
/// Where `ip netns exec` finds per-namespace replacements for /etc files.
pub const NETNS_ETC_DIR: &str = "/etc/netns";
/// The DHCP client's hook script (busybox udhcpc).
pub const UDHCPC_SCRIPT: &str = "/etc/udhcpc/default.script";
/// The DHCP client instances run (busybox udhcpc, found on `PATH`).
pub const DHCP_CLIENT: &str = "udhcpc";
/// How long an instance's DHCP client may take to get its address: udhcpc
/// gives up after about 10 s by itself; past this it is killed.
pub const DHCP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A failure of the host's networking commands or syscalls.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "{0:?} is not a usable namespace or interface name: use letters, digits, '-', '_' and '.'"
    )]
    BadName(String),
    #[error("could not run `{cmd}`: {source}; is iproute2 installed?")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error(
        "network namespace {name} could not be entered: {source}; does {NETNS_DIR}/{name} exist and are we root?"
    )]
    Enter {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("TAP {ifname} in {netns}: {op} failed: {source}")]
    Tap {
        netns: String,
        ifname: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("a namespace helper thread panicked")]
    Thread,
}

/// Namespace and interface names go into paths and argument lists: keep
/// them to a harmless alphabet.
pub fn check_name(name: &str) -> Result<(), NetnsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NetnsError::BadName(name.to_string()))
    }
}

/// The file `ip netns` keeps namespace `name` in.
pub fn netns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// True if namespace `name` exists.
pub fn exists(name: &str) -> bool {
    netns_path(name).exists()
}

/// Runs a command, returning its stdout; a non-zero exit is an error
/// carrying stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetnsError> {
    let cmd = || format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn { cmd: cmd(), source })?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd: cmd(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Creates the namespace unless it exists, with `lo` up.
pub fn ensure(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    if !exists(name) {
        run("ip", &["netns", "add", name])?;
    }
    run("ip", &["-n", name, "link", "set", "lo", "up"])?;
    Ok(())
}

/// Kills every process inside the namespace, then deletes it and its /etc
/// overrides. Deleting a namespace that does not exist succeeds.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    check_name(name)?;
    if exists(name) {
        // Processes keep a namespace (and its TAPs) alive after the name is
        // gone, so they go first.
        for _ in 0..50 {
            let pids = run("ip", &["netns", "pids", name])?;
            let pids: Vec<&str> = pids.split_whitespace().collect();
            if pids.is_empty() {
                break;
            }
            let mut args = vec!["-KILL"];
            args.extend(pids.iter().copied());
            // A process may exit between listing and killing: not an error.
            let _ = run("kill", &args);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        run("ip", &["netns", "delete", name])?;
    }
    let etc = Path::new(NETNS_ETC_DIR).join(name);
    if etc.exists() {
        let _ = std::fs::remove_dir_all(etc);
    }
    let health = crate::health::health_file(Path::new(crate::health::INSTANCE_HEALTH_DIR), name);
    let _ = std::fs::remove_file(health);
    Ok(())
}

/// Runs `f` on a fresh thread that has entered namespace `name` (or stays in
/// ours for `None`). Only that thread changes namespace; what `f` opens
/// (sockets, TAPs) stays bound to the namespace after the thread ends.
pub fn in_netns<T: Send>(
    name: Option<&str>,
    f: impl FnOnce() -> Result<T, NetnsError> + Send,
) -> Result<T, NetnsError> {
    let ns = match name {
        Some(n) => {
            check_name(n)?;
            let file = File::open(netns_path(n)).map_err(|source| NetnsError::Enter {
                name: n.to_string(),
                source,
            })?;
            Some((n.to_string(), file))
        }
        None => None,
    };
    std::thread::scope(|s| {
        s.spawn(move || {
            if let Some((n, file)) = ns {
                // SAFETY: `file` is an open namespace file for the life of
                // the call; setns only changes this thread's namespace, and
                // this thread runs nothing but `f` and then ends.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(NetnsError::Enter {
                        name: n,
                        source: io::Error::last_os_error(),
                    });
                }
            }
            f()
        })
        .join()
        .map_err(|_| NetnsError::Thread)?
    })
}

/// `struct ifreq` as TUNSETIFF reads it: a name and the flags.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    // The rest of the 40-byte union, which TUNSETIFF does not read.
    _pad: [u8; 22],
}

/// Opens (creating if needed) the persistent TAP `ifname` inside namespace
/// `netns`, without packet-information headers but with a `virtio_net_hdr`
/// in front of every frame (checksum and TSO offloads on), and returns its
/// nonblocking queue. An existing persistent TAP is re-attached: its addresses survive.
pub fn open_tap(netns: &str, ifname: &str) -> Result<File, NetnsError> {
    check_name(ifname)?;
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(NetnsError::BadName(ifname.to_string()));
    }
    let err = |op: &'static str| {
        let (netns, ifname) = (netns.to_string(), ifname.to_string());
        move |source: io::Error| NetnsError::Tap {
            netns,
            ifname,
            op,
            source,
        }
    };
    in_netns(Some(netns), || {
        let tun = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(err("open /dev/net/tun"))?;
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short,
            _pad: [0; 22],
        };
        for (dst, src) in req.name.iter_mut().zip(ifname.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `tun` is an open TUN control fd and `req` a live, properly
        // sized ifreq; the kernel reads the name and flags and writes back
        // the name, all within the struct.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        if rc != 0 {
            return Err(err("TUNSETIFF")(io::Error::last_os_error()));
        }
        // SAFETY: TUNSETPERSIST takes its argument by value; `tun` is open
        // and attached.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) };
        if rc != 0 {
            return Err(err("TUNSETPERSIST")(io::Error::last_os_error()));
        }
        // The instance may hand over partial checksums and TCP/IPv4
        // super-segments of up to 64 KiB (the worker completes and cuts
        // them): its TCP then moves 64 KiB per write instead of one MSS.
        let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        let rc = unsafe {
            libc::ioctl(
                tun.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                offloads as libc::c_ulong,
            )
        };
        if rc != 0 {
            return Err(err("TUNSETOFFLOAD")(io::Error::last_os_error()));
        }
        Ok(tun)
    })
}

/// True if `fd` is a TAP queue that exchanges `virtio_net_hdr`s; false for
/// anything else (a socket standing in for a TAP in tests).
pub fn tap_has_vnet_hdr(fd: &impl AsRawFd) -> bool {
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // SAFETY: TUNGETIFF writes a name and flags into a live, properly sized
    // ifreq; on a non-TUN fd it fails without writing.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) };
    rc == 0 && (i32::from(req.flags) & libc::IFF_VNET_HDR) != 0
}

/// Sets a link's MAC, MTU and largest super-segment, and brings it up.
pub fn configure_link(
    netns: &str,
    ifname: &str,
    mac: MacAddr,
    mtu: u16,
    gso_max_size: u32,
) -> Result<(), NetnsError> {
    let (mac, mtu, gso) = (mac.to_string(), mtu.to_string(), gso_max_size.to_string());
    run(
        "ip",
        &[
            "-n",
            netns,
            "link",
            "set",
            "dev",
            ifname,
            "address",
            &mac,
            "mtu",
            &mtu,
            "gso_max_size",
            &gso,
        ],
    )?;
    run("ip", &["-n", netns, "link", "set", "dev", ifname, "up"])?;
    Ok(())
}

/// Deletes a link; a link that is already gone is fine.
pub fn delete_link(netns: &str, ifname: &str) -> Result<(), NetnsError> {
    if !exists(netns) {
        return Ok(());
    }
    match run("ip", &["-n", netns, "link", "del", "dev", ifname]) {
        Err(NetnsError::Command { stderr, .. }) if stderr.contains("Cannot find device") => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The link's IPv4 addresses (CIDR form).
pub fn ipv4_addresses(netns: &str, ifname: &str) -> Result<Vec<String>, NetnsError> {
    let out = run(
        "ip",
        &["-n", netns, "-4", "-o", "addr", "show", "dev", ifname],
    )?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next().map(str::to_string)
        })
        .collect())
}

/// Runs a command for at most `timeout`, killing it then; a non-zero exit
/// or the timeout is an error carrying stderr.
pub fn run_bounded(
    program: &str,
    args: &[&str],
    timeout: std::time::Duration,
) -> Result<(), NetnsError> {
    let cmd = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| NetnsError::Spawn { cmd: cmd(), source })?;
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(NetnsError::Command {
            cmd: cmd(),
            status: s.to_string(),
            stderr: stderr.trim().to_string(),
        }),
        None => Err(NetnsError::Command {
            cmd: cmd(),
            status: format!("killed after {} s", timeout.as_secs()),
            stderr: stderr.trim().to_string(),
        }),
    }
}

/// Asks the dataplane's DHCP server for the link's address with `client`
/// (busybox udhcpc, [`DHCP_CLIENT`] unless a test injects a fault) inside
/// the namespace, and waits for the answer ([`DHCP_TIMEOUT`] at most). The
/// namespace gets its own resolv.conf first, so the hook script writes
/// there and not over the host's.
pub fn run_dhcp(client: &str, netns: &str, ifname: &str) -> Result<(), NetnsError> {
    check_name(netns)?;
    check_name(ifname)?;
    let etc = Path::new(NETNS_ETC_DIR).join(netns);
    let resolv = etc.join("resolv.conf");
    if !resolv.exists() {
        let io_err = |source| NetnsError::Spawn {
            cmd: format!("create {}", resolv.display()),
            source,
        };
        std::fs::create_dir_all(&etc).map_err(io_err)?;
        std::fs::write(&resolv, b"").map_err(io_err)?;
    }
    run_bounded(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            client,
            "-i",
            ifname,
            "-q",
            "-n",
            "-t",
            "10",
            "-T",
            "1",
            "-s",
            UDHCPC_SCRIPT,
        ],
        DHCP_TIMEOUT,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("i-0123456789abcdef0").is_ok());
        assert!(check_name("eth0").is_ok());
        for bad in ["", "..", "a/b", "a b", "x;rm", ".hidden"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
    }
}
