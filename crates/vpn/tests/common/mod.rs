//! The customer gateway's side of the VPN tests and benchmarks: two
//! network namespaces joined by a veth pair, strongSwan's charon (with
//! kernel-libipsec) in the customer's, TUN devices, and small packet
//! helpers. Shared by tests/strongswan.rs and benches/libipsec.rs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openvpc_vpn::ike::responder::Entropy;

pub const CHARON: &str = "/usr/lib/ipsec/charon";
pub const OURS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const CGW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// An address on the VPC side of the tunnel that our loop answers pings
/// for, and the customer network's address the pings come from.
pub const VPC_HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 5);
pub const CUSTOMER_HOST: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const PSK: &str = "abcdefgh.12345678_x";

pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for network namespaces".into());
    }
    if !Path::new(CHARON).exists() || Command::new("swanctl").arg("--version").output().is_err() {
        return Some(format!(
            "needs strongSwan ({CHARON} and swanctl; scripts/test installs them)"
        ));
    }
    None
}

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
}

/// Two namespaces joined by a veth pair, deleted on drop.
pub struct Net {
    pub ours: String,
    pub cgw: String,
}

impl Net {
    pub fn new() -> Net {
        let id = std::process::id();
        let net = Net {
            ours: format!("ovpn-vpn-a{id}"),
            cgw: format!("ovpn-vpn-b{id}"),
        };
        sh(&["ip", "netns", "add", &net.ours]);
        sh(&["ip", "netns", "add", &net.cgw]);
        let (va, vb) = (format!("vpa{id}"), format!("vpb{id}"));
        sh(&[
            "ip", "link", "add", &va, "netns", &net.ours, "type", "veth", "peer", "name", &vb,
            "netns", &net.cgw,
        ]);
        for (ns, dev, addr) in [(&net.ours, &va, OURS), (&net.cgw, &vb, CGW)] {
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                dev,
            ]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "-n",
            &net.cgw,
            "addr",
            "add",
            &format!("{CUSTOMER_HOST}/32"),
            "dev",
            "lo",
        ]);
        net
    }

    /// As [`Net::new`], but our side of the veth has another address and
    /// forwards what is for [`OURS`] to where a route sends it (a TUN),
    /// answering ARP for it.
    pub fn new_routed() -> Net {
        let net = Net::new();
        let dev = format!("vpa{}", std::process::id());
        sh(&[
            "ip",
            "-n",
            &net.ours,
            "addr",
            "del",
            &format!("{OURS}/24"),
            "dev",
            &dev,
        ]);
        sh(&[
            "ip",
            "-n",
            &net.ours,
            "addr",
            "add",
            "192.0.2.254/24",
            "dev",
            &dev,
        ]);
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            (&*format!("net.ipv4.conf.{dev}.proxy_arp"), "1"),
        ] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &net.ours,
                "sysctl",
                "-qw",
                &format!("{key}={value}"),
            ]);
        }
        net
    }

    /// A UDP socket bound in our namespace.
    pub fn bind(&self, port: u16) -> UdpSocket {
        let ns = File::open(format!("/run/netns/{}", self.ours)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: `ns` is an open namespace file; setns changes only
                // this thread, which ends after binding.
                assert_eq!(
                    unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) },
                    0
                );
                UdpSocket::bind(SocketAddr::new(IpAddr::V4(OURS), port)).unwrap()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in [&self.ours, &self.cgw] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// charon in the customer's namespace, killed on drop.
pub struct Charon {
    child: Child,
    dir: PathBuf,
    /// charon's process (`ip netns exec` replaces itself with it).
    pub pid: u32,
    /// Reaped already: its pid may belong to someone else now.
    gone: bool,
}

impl Charon {
    pub fn start(net: &Net, dir: &Path) -> Charon {
        let conf = dir.join("strongswan.conf");
        std::fs::write(
            &conf,
            format!(
                "charon {{\n  load = random nonce aes sha1 sha2 hmac kdf gmp gcm openssl kernel-libipsec kernel-netlink socket-default vici updown\n  \
                 port = 500\n  port_nat_t = 4500\n  \
                 plugins {{\n    vici {{\n      socket = unix://{dir}/charon.vici\n    }}\n  }}\n  \
                 filelog {{\n    log {{\n      path = {dir}/charon.log\n      default = 1\n      ike = 2\n    }}\n  }}\n}}\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.cgw, CHARON])
            .env("STRONGSWAN_CONF", &conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let charon = Charon {
            pid: child.id(),
            child,
            dir: dir.to_owned(),
            gone: false,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.join("charon.vici").exists() {
            assert!(Instant::now() < deadline, "charon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        charon
    }

    pub fn swanctl(&self, args: &[&str]) -> String {
        let uri = format!("unix://{}/charon.vici", self.dir.display());
        let out = Command::new("swanctl")
            .args(args)
            .args(["--uri", &uri])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Loads a connection named `name` with these proposals and key.
    pub fn load(&self, name: &str, ike: &str, esp: &str, psk: &str) {
        let file = self.dir.join(format!("{name}.conf"));
        std::fs::write(
            &file,
            format!(
                "connections {{\n {name} {{\n  version = 2\n  local_addrs = {CGW}\n  remote_addrs = {OURS}\n  \
                 proposals = {ike}\n  encap = yes\n  \
                 local {{\n   auth = psk\n   id = {CGW}\n  }}\n  remote {{\n   auth = psk\n   id = {OURS}\n  }}\n  \
                 children {{\n   {name} {{\n    local_ts = 10.99.0.0/16\n    remote_ts = 10.0.0.0/16\n    \
                 esp_proposals = {esp}\n    start_action = none\n   }}\n  }}\n }}\n}}\n\
                 secrets {{\n ike-{name} {{\n  id-1 = {OURS}\n  secret = \"{psk}\"\n }}\n}}\n"
            ),
        )
        .unwrap();
        let out = self.swanctl(&["--load-all", "--file", file.to_str().unwrap()]);
        assert!(out.contains("successfully loaded 1 connections"), "{out}");
    }
}

impl Charon {
    /// SIGKILL: charon dies without a word to its peers (no Delete).
    pub fn kill_without_a_word(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.gone = true;
    }
}

impl Drop for Charon {
    /// Stops charon by its pid (`ip netns exec` execs it, so the child is
    /// charon itself): SIGTERM, so it removes its pid file, then SIGKILL
    /// if it has not gone within 3 s.
    fn drop(&mut self) {
        if self.gone {
            return;
        }
        // SAFETY: kill(2) on our own child's pid, not yet reaped.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic source is enough to test; the shell uses the OS's.
pub struct Counter(pub u64);

impl Entropy for Counter {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in bytes.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The echo reply to an IPv4 ICMP echo request to [`VPC_HOST`].
pub fn echo_reply(request: &[u8]) -> Option<Vec<u8>> {
    let ihl = usize::from(request.first()? & 0x0f) * 4;
    if request.get(9) != Some(&1)
        || request.get(ihl) != Some(&8)
        || request[16..20] != VPC_HOST.octets()
    {
        return None;
    }
    let mut reply = request.to_vec();
    reply[12..16].copy_from_slice(&request[16..20]);
    reply[16..20].copy_from_slice(&request[12..16]);
    reply[10..12].copy_from_slice(&[0, 0]);
    let c = checksum(&reply[..ihl]);
    reply[10..12].copy_from_slice(&c.to_be_bytes());
    reply[ihl] = 0;
    reply[ihl + 2..ihl + 4].copy_from_slice(&[0, 0]);
    let c = checksum(&reply[ihl..]);
    reply[ihl + 2..ihl + 4].copy_from_slice(&c.to_be_bytes());
    Some(reply)
}

/// A scratch directory for charon's files, removed on drop (a failed
/// assertion included).
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempfile_dir() -> Scratch {
    let dir = std::env::temp_dir().join(format!("ovpn-strongswan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// `struct ifreq` as TUNSETIFF reads it.
#[repr(C)]
pub struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// A TUN device `name` in our namespace, up, with `routes` (CIDRs) sent
/// into it.
pub fn tun_routing(net: &Net, name: &str, routes: &[&str]) -> File {
    let tun = open_tun(&net.ours, name);
    sh(&["ip", "-n", &net.ours, "link", "set", name, "up"]);
    for r in routes {
        sh(&["ip", "-n", &net.ours, "route", "add", r, "dev", name]);
    }
    tun
}

/// Opens TUN `name` (bare IP packets) in namespace `ns`.
pub fn open_tun(ns: &str, name: &str) -> File {
    let nsf = File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: `nsf` is an open namespace file; setns changes only
            // this thread, which ends after opening the device.
            assert_eq!(
                unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let tun = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .unwrap();
            let mut req = IfReq {
                name: [0; libc::IFNAMSIZ],
                flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
                _pad: [0; 22],
            };
            for (d, b) in req.name.iter_mut().zip(name.bytes()) {
                *d = b as libc::c_char;
            }
            // SAFETY: an open TUN control fd and a live ifreq.
            assert_eq!(
                unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) },
                0
            );
            tun
        })
        .join()
        .unwrap()
    })
}
