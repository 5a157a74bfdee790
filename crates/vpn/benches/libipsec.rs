//! TCP through one tunnel between strongSwan's libipsec and ours, on this
//! machine (issue 19's goal: report the ESP throughput per tunnel next to
//! strongSwan's own libipsec; AWS allows 1.25 Gbit/s per tunnel).
//!
//! charon (kernel-libipsec) in the customer's namespace initiates to our
//! tunnel core behind a TUN device in the other namespace, as an edge's
//! uplink carries it; what the tunnel decrypts goes into a second TUN
//! whose far side is an iperf3 server on the VPC side's address, and its
//! answers come back through the tunnel. iperf3 sends from the
//! customer's network for a few seconds, with AES-GCM-128. Each side's
//! CPU time is measured: libipsec encrypts the data and decrypts the
//! acknowledgements, ours the reverse, so CPU seconds per gigabyte
//! carried compare the two ESP engines on the same packets.
//!
//! Needs root, strongSwan and iperf3; says why and stops without them.
//! `cargo bench -p openvpc-vpn --bench libipsec` (release build).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use openvpc_vpn::ike::responder::TunnelConfig;
use openvpc_vpn::tunnel::{Tunnel, TunnelOutput};

use common::{
    CUSTOMER_HOST, Charon, Counter, Net, OURS, PSK, VPC_HOST, sh, tempfile_dir, tun_routing,
};

const SECONDS: u32 = 5;

/// This thread's CPU time, in seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// A process's CPU time (user and system), in seconds.
fn process_cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime
    // are the 12th and 13th of them.
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn main() {
    if let Some(why) = common::skip_reason() {
        eprintln!("libipsec bench skipped: it {why}");
        return;
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        eprintln!("libipsec bench skipped: it needs iperf3");
        return;
    }
    let net = Net::new_routed();
    let dir = tempfile_dir();
    let id = std::process::id() % 100_000;
    let (outside_name, vpc_name) = (format!("vgw{id}"), format!("vpc{id}"));
    let mut outside = tun_routing(&net, &outside_name, &[&format!("{OURS}/32")]);
    let mut vpc = tun_routing(&net, &vpc_name, &["10.99.0.0/16"]);
    sh(&[
        "ip",
        "-n",
        &net.ours,
        "addr",
        "add",
        &format!("{VPC_HOST}/32"),
        "dev",
        "lo",
    ]);
    let mut server = Command::new("ip")
        .args(["netns", "exec", &net.ours, "iperf3", "-s", "-1", "-B"])
        .arg(VPC_HOST.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let charon = Charon::start(&net, &dir);
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let mut outside_w = outside.try_clone().unwrap();
    let mut vpc_w = vpc.try_clone().unwrap();
    let ours = std::thread::spawn(move || {
        let mut t = Tunnel::new(TunnelConfig::new(PSK.as_bytes(), IpAddr::V4(OURS))).unwrap();
        let mut rng = Counter(9);
        let start = Instant::now();
        let cpu0 = thread_cpu();
        let mut buf = vec![0u8; 65_536];
        let mut fds = [
            libc::pollfd {
                fd: outside.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: vpc.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        while !stopped.load(Ordering::Relaxed) {
            // SAFETY: two valid pollfds.
            unsafe { libc::poll(fds.as_mut_ptr(), 2, 20) };
            let now = start.elapsed().as_millis() as u64;
            let mut outputs = t.tick(now, &mut rng);
            if fds[0].revents & libc::POLLIN != 0 {
                let n = outside.read(&mut buf).unwrap();
                outputs.extend(t.from_outside(&buf[..n], now, &mut rng));
            }
            if fds[1].revents & libc::POLLIN != 0 {
                let n = vpc.read(&mut buf).unwrap();
                if let Ok(p) = t.to_outside(&buf[..n]) {
                    outside_w.write_all(&p).unwrap();
                }
            }
            for o in outputs {
                match o {
                    TunnelOutput::Outside(p) => outside_w.write_all(&p).unwrap(),
                    TunnelOutput::Inside(p) => {
                        let _ = vpc_w.write_all(&p);
                    }
                    TunnelOutput::Up | TunnelOutput::Down(_) => {}
                }
            }
        }
        (thread_cpu() - cpu0, t.counters)
    });
    charon.load("bench", "aes128gcm16-prfsha256-ecp256", "aes128gcm16", PSK);
    let out = charon.swanctl(&["--initiate", "--child", "bench", "--timeout", "10"]);
    assert!(out.contains("initiate completed successfully"), "{out}");
    let charon_cpu0 = process_cpu(charon.pid);
    let client = Command::new("ip")
        .args(["netns", "exec", &net.cgw, "iperf3", "-J", "-t"])
        .arg(SECONDS.to_string())
        .args([
            "-B",
            &CUSTOMER_HOST.to_string(),
            "-c",
            &VPC_HOST.to_string(),
        ])
        .output()
        .unwrap();
    let charon_cpu = process_cpu(charon.pid) - charon_cpu0;
    stop.store(true, Ordering::Relaxed);
    let (our_cpu, counters) = ours.join().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&client.stdout).unwrap_or_default();
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3: {}", String::from_utf8_lossy(&client.stdout)));
    let gbytes = bps * f64::from(SECONDS) / 8e9;
    println!(
        "libipsec <-> ours, one tunnel, AES-GCM-128, TCP {SECONDS} s: {:.2} Gbit/s ({} packets in, {} out on our side)",
        bps / 1e9,
        counters.packets_in,
        counters.packets_out
    );
    println!(
        "CPU per GB carried: strongSwan's charon (libipsec, encrypting the data) {:.2} s, ours (decrypting it) {:.2} s",
        charon_cpu / gbytes.max(1e-9),
        our_cpu / gbytes.max(1e-9)
    );
    drop(charon);
}
