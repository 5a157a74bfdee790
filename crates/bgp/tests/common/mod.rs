//! Plumbing shared by the tests against real BGP daemons: network
//! namespaces joined by veths (removed on drop), child processes (killed by
//! pid on drop), a connect function that makes its socket inside a
//! namespace (a short-lived thread that setns()s, as the edge does), and
//! the child-process speaker the crash tests freeze and kill.
//!
//! Every address used lives in namespaces these tests create.

#![allow(dead_code)]

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openvpc_bgp::speaker::SpeakerConfig;
use openvpc_bgp::{Config, ExportAttrs, Ipv4Prefix, Speaker};

/// True when the test can run: root and the tools present. Otherwise it
/// says why and the test returns, unless OPENVPC_REQUIRE_TOOLS=1, where it
/// fails.
pub fn ready(tools: &[&str]) -> bool {
    let require = std::env::var("OPENVPC_REQUIRE_TOOLS").is_ok_and(|v| v == "1");
    let mut why = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        why.push("needs root (network namespaces)".to_string());
    }
    for t in tools {
        if !Path::new(t).exists() {
            why.push(format!("{t} is not installed"));
        }
    }
    if why.is_empty() {
        return true;
    }
    let why = why.join("; ");
    assert!(!require, "OPENVPC_REQUIRE_TOOLS=1 but {why}");
    eprintln!("skipping: {why}");
    false
}

/// Namespaces and processes a test made; all removed on drop, by name and
/// pid, also when the test fails.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, returning stdout whatever its exit status.
pub fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s
        })
        .unwrap_or_default()
}

impl Lab {
    /// `test` keeps names apart between tests; the pid between runs.
    pub fn new(test: &str) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix(&format!("openvpc-bgp-{test}-"))
            .tempdir()
            .unwrap();
        Lab {
            prefix: format!("obgp-{}-{test}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
        }
    }

    /// Creates namespace `<prefix>-<short>` with lo up; returns its name.
    pub fn ns(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        run("ip", &["netns", "add", &name]);
        self.namespaces.push(name.clone());
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// A veth between two namespaces, each end with an address (CIDR).
    pub fn link(&self, a: &str, a_if: &str, a_addr: &str, b: &str, b_if: &str, b_addr: &str) {
        run(
            "ip",
            &[
                "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
            ],
        );
        for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", ifname]);
            run("ip", &["-n", ns, "link", "set", ifname, "up"]);
        }
    }

    /// Starts `program args` inside `ns` (through `ip netns exec`, which
    /// execs, so the child's pid is the program's). It is killed if this
    /// thread ends first.
    pub fn spawn(&mut self, ns: &str, program: &str, args: &[&str], log: &str) -> u32 {
        let log = File::create(self.dir.path().join(log)).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts this test binary again as a speaker process in `ns` (see
    /// [`child_speaker_main`]).
    pub fn spawn_speaker(&mut self, test_name: &str, ns: &str, args: &ChildArgs) -> u32 {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, args.encode(ns))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Kills and reaps the child with this pid.
    pub fn kill(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|c| c.id() == pid) {
            let mut c = self.children.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// The contents of a log file the lab wrote, for failure messages.
    pub fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(file)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.drain(..) {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The child gets SIGKILL if the thread that started it ends (the test
/// thread, on a panic that skips Drop or an abort).
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches
    // only the calling (child) process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends a signal to a process we started.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) with a pid we own.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill {pid}: {}", io::Error::last_os_error());
}

/// A connect function that makes the socket in namespace `ns`: a thread
/// enters it and connects; the socket stays in that namespace.
pub fn connect_in(
    ns: &str,
) -> impl FnMut(SocketAddr, Duration) -> io::Result<TcpStream> + Send + 'static {
    let path = format!("/var/run/netns/{ns}");
    move |addr, timeout| {
        let path = path.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let f = File::open(&path)?;
                // SAFETY: `f` is an open namespace file; setns changes only
                // this short-lived thread's namespace.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpStream::connect_timeout(&addr, timeout)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("connect thread panicked")))
        })
    }
}

/// Polls `f` every 50 ms until it is true or `timeout` passes; returns the
/// time it took.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A speaker for the tests: hold `hold` s, fast retries.
pub fn speaker(
    ns: &str,
    local_as: u32,
    peer_as: u32,
    me: Ipv4Addr,
    peer: Ipv4Addr,
    hold: u16,
) -> Speaker {
    let mut cfg = SpeakerConfig::new(
        Config {
            hold_time: hold,
            ..Config::new(local_as, peer_as, me)
        },
        peer,
    );
    cfg.retry_min = Duration::from_millis(200);
    cfg.retry_max = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(2);
    Speaker::spawn(cfg, connect_in(ns)).unwrap()
}

const CHILD_ENV: &str = "OPENVPC_BGP_TEST_CHILD";

/// What the child speaker process runs with.
pub struct ChildArgs {
    pub local_as: u32,
    pub peer_as: u32,
    pub me: Ipv4Addr,
    pub peer: Ipv4Addr,
    pub hold: u16,
    pub prefix: Ipv4Prefix,
}

impl ChildArgs {
    fn encode(&self, ns: &str) -> String {
        format!(
            "{ns} {} {} {} {} {} {}",
            self.local_as, self.peer_as, self.me, self.peer, self.hold, self.prefix
        )
    }
}

/// The body of the `child_speaker` pseudo-test: does nothing in a normal
/// run; when started by [`Lab::spawn_speaker`] it runs a speaker that
/// announces one prefix with itself as next hop, until killed.
pub fn child_speaker_main() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f: Vec<&str> = args.split(' ').collect();
    let [ns, local_as, peer_as, me, peer, hold, prefix] = f[..] else {
        panic!("bad {CHILD_ENV}: {args}")
    };
    let me: Ipv4Addr = me.parse().unwrap();
    let sp = speaker(
        ns,
        local_as.parse().unwrap(),
        peer_as.parse().unwrap(),
        me,
        peer.parse().unwrap(),
        hold.parse().unwrap(),
    );
    sp.set_announced(vec![prefix.parse().unwrap()], me, ExportAttrs::default());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
