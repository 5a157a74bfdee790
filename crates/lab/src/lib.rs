//! A region of several hosts on one machine, for tests and demos: each host
//! is a network namespace holding only its underlay address, the hosts are
//! joined by a bridge inside one more namespace, and a server and one agent
//! per host run as background processes.
//!
//! Every name, link and process the lab makes is written to `DIR/lab.json`
//! before it is made, so [`down`] can remove all of it, also after `up`
//! crashed half way. No address is ever configured outside the lab's own
//! namespaces: the agents reach the server on loopback and create their
//! underlay sockets inside their host's namespace.
//!
//! This crate plumbs namespaces and processes; it knows nothing of packets
//! or of the API beyond the files the server and agents write.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod netns;

pub use netns::{ip, netns_exists};

/// The most hosts one lab holds: their underlay addresses are 10.254.0.11…
pub const MAX_HOSTS: usize = 200;

/// The most availability zones: `REGIONa` to `REGIONz`.
pub const MAX_AZS: usize = 26;

/// How long `up` waits for the server and each agent to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a lab could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("a lab needs 1 to {MAX_HOSTS} hosts, not {0}")]
    Hosts(usize),
    #[error("a lab needs 1 to {MAX_AZS} availability zones and no more than it has hosts, not {0}")]
    Azs(usize),
    #[error(
        "{0} already holds a lab: run `openvpc lab down --dir {0}` first, or pick another --dir"
    )]
    Exists(PathBuf),
    #[error("{0} holds no lab (no lab.json): nothing to take down")]
    NoLab(PathBuf),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("{what} did not become ready within {secs} s; its log is {log}")]
    NotReady {
        what: String,
        secs: u64,
        log: PathBuf,
    },
    #[error("the lab has no part '{0}': name `server` or a host ID (h1, h2, …)")]
    NoPart(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a lab file this version understands: {source}")]
    BadState {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One simulated host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPlan {
    /// `h1`, `h2`, …: also the agent's `--host-id`.
    pub host_id: String,
    pub netns: String,
    pub availability_zone: String,
    pub underlay_ip: Ipv4Addr,
    /// The veth pair's names while both ends are still in the root
    /// namespace; recorded so `down` can remove a pair `up` left behind.
    pub veth_host: String,
    pub veth_bridge: String,
}

/// Everything a lab is made of, decided before anything is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    /// A short tag, unique per directory, in every name the lab makes.
    pub tag: String,
    pub region: String,
    /// The namespace that holds the underlay bridge.
    pub underlay_netns: String,
    pub hosts: Vec<HostPlan>,
}

/// The name of the underlay interface inside each host namespace.
pub const UNDERLAY_IFACE: &str = "ul0";

/// The underlay's prefix length (10.254.0.0/24).
pub const UNDERLAY_PREFIX: u8 = 24;

impl LabPlan {
    /// Plans `hosts` hosts over `azs` zones of `region`, named after `dir`.
    pub fn new(dir: &Path, hosts: usize, azs: usize, region: &str) -> Result<LabPlan, LabError> {
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(LabError::Hosts(hosts));
        }
        if azs == 0 || azs > MAX_AZS || azs > hosts {
            return Err(LabError::Azs(azs));
        }
        let tag = tag_of(dir);
        let hosts = (1..=hosts)
            .map(|i| {
                let zone = char::from(b'a' + ((i - 1) % azs) as u8);
                HostPlan {
                    host_id: format!("h{i}"),
                    netns: format!("ovl-{tag}-h{i}"),
                    availability_zone: format!("{region}{zone}"),
                    underlay_ip: Ipv4Addr::new(10, 254, 0, 10 + i as u8),
                    veth_host: format!("ovl{tag}h{i}a"),
                    veth_bridge: format!("ovl{tag}h{i}b"),
                }
            })
            .collect();
        Ok(LabPlan {
            underlay_netns: format!("ovl-{tag}-ul"),
            tag,
            region: region.to_owned(),
            hosts,
        })
    }
}

/// Six hex digits of FNV-1a over the directory's path: short enough for
/// 15-byte interface names, stable so `down` finds what `up` named.
fn tag_of(dir: &Path) -> String {
    let path = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut hash: u32 = 0x811c_9dc5;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("{:06x}", hash & 0x00ff_ffff)
}

/// One process the lab started, with what it takes to start it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabProcess {
    /// `server`, or the host ID of an agent.
    pub part: String,
    pub pid: u32,
    pub args: Vec<String>,
    pub log: PathBuf,
}

/// What `lab.json` holds: the plan and the processes started so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    pub plan: Option<LabPlan>,
    /// The server and the agents, in start order.
    pub processes: Vec<LabProcess>,
    pub endpoint: Option<String>,
    /// The `openvpc` binary the processes run.
    pub exe: PathBuf,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("lab.json")
}

fn save(dir: &Path, state: &LabState) -> Result<(), LabError> {
    let path = state_path(dir);
    let tmp = dir.join("lab.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|source| LabError::BadState {
        path: path.clone(),
        source,
    })?;
    fs::write(&tmp, text).map_err(io_at(&tmp))?;
    fs::rename(&tmp, &path).map_err(io_at(&path))
}

/// Reads `DIR/lab.json`.
pub fn load(dir: &Path) -> Result<LabState, LabError> {
    let path = state_path(dir);
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(LabError::NoLab(dir.to_owned()));
        }
        Err(e) => return Err(io_at(&path)(e)),
    };
    serde_json::from_slice(&text).map_err(|source| LabError::BadState { path, source })
}

/// How to start the lab's processes: the `openvpc` binary and its arguments.
#[derive(Debug, Clone)]
pub struct Launch {
    pub exe: PathBuf,
    /// Extra `server` arguments.
    pub server_args: Vec<String>,
    /// Extra `agent` arguments for some hosts, by host ID.
    pub agent_args: std::collections::BTreeMap<String, Vec<String>>,
}

/// Where the lab keeps each part's files.
pub fn server_dir(dir: &Path) -> PathBuf {
    dir.join("server")
}

/// An agent's `--state-dir`.
pub fn host_dir(dir: &Path, host_id: &str) -> PathBuf {
    dir.join("hosts").join(host_id)
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

/// The file an agent writes once it has registered; `up` waits for it.
pub const READY_FILE: &str = "ready";

/// Builds the lab: namespaces and links, then the server, then the agents.
/// Reports progress through `progress`. Leaves `DIR/endpoint` and
/// `DIR/credentials` behind for clients.
pub fn up(
    dir: &Path,
    plan: LabPlan,
    launch: &Launch,
    mut progress: impl FnMut(&str),
) -> Result<LabState, LabError> {
    fs::create_dir_all(dir).map_err(io_at(dir))?;
    if state_path(dir).exists() {
        return Err(LabError::Exists(dir.to_owned()));
    }
    let mut state = LabState {
        plan: Some(plan.clone()),
        exe: launch.exe.clone(),
        ..LabState::default()
    };
    save(dir, &state)?;
    progress(&format!(
        "underlay: bridge in namespace {} for {} hosts",
        plan.underlay_netns,
        plan.hosts.len()
    ));
    netns::build(&plan)?;
    fs::create_dir_all(log_dir(dir)).map_err(io_at(dir))?;

    progress("starting the server");
    let server_dir = server_dir(dir);
    fs::create_dir_all(&server_dir).map_err(io_at(&server_dir))?;
    let server_log = log_dir(dir).join("server.log");
    // A fixed port, so a restarted server is where the agents look for it.
    let port = free_port().map_err(io_at(dir))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut args: Vec<String> = vec![
        "server".into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--region".into(),
        plan.region.clone(),
        "--data-dir".into(),
    ];
    args.push(server_dir.display().to_string());
    args.extend(launch.server_args.iter().cloned());
    let pid = spawn(&launch.exe, &args, &server_log)?;
    state.processes.push(LabProcess {
        part: "server".into(),
        pid,
        args,
        log: server_log.clone(),
    });
    state.endpoint = Some(endpoint.clone());
    save(dir, &state)?;
    wait_server(&endpoint, &server_log)?;
    let token = server_dir.join("agent-token");
    wait_for("the server's agent token", &server_log, || {
        token.exists().then_some(())
    })?;

    for host in &plan.hosts {
        progress(&format!(
            "starting the agent of {} ({}, underlay {})",
            host.host_id, host.availability_zone, host.underlay_ip
        ));
        let state_dir = host_dir(dir, &host.host_id);
        fs::create_dir_all(&state_dir).map_err(io_at(&state_dir))?;
        let _ = fs::remove_file(state_dir.join(READY_FILE));
        let mut args = vec![
            "agent".to_owned(),
            "--server".into(),
            endpoint.clone(),
            "--host-id".into(),
            host.host_id.clone(),
            "--az".into(),
            host.availability_zone.clone(),
            "--underlay-ip".into(),
            host.underlay_ip.to_string(),
            "--underlay-netns".into(),
            host.netns.clone(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
            // `lab up` checked (and installed) the instances' tools once;
            // agents installing them in parallel would fight over dpkg's lock.
            "--no-install".into(),
        ];
        args.extend(
            launch
                .agent_args
                .get(&host.host_id)
                .into_iter()
                .flatten()
                .cloned(),
        );
        let log = log_dir(dir).join(format!("agent-{}.log", host.host_id));
        let pid = spawn(&launch.exe, &args, &log)?;
        state.processes.push(LabProcess {
            part: host.host_id.clone(),
            pid,
            args,
            log,
        });
        save(dir, &state)?;
    }
    for host in &plan.hosts {
        wait_agent(dir, &host.host_id)?;
    }
    fs::write(dir.join("endpoint"), format!("{endpoint}\n")).map_err(io_at(dir))?;
    let credentials = server_dir.join("credentials");
    fs::copy(&credentials, dir.join("credentials")).map_err(io_at(&credentials))?;
    Ok(state)
}

fn wait_agent(dir: &Path, host_id: &str) -> Result<(), LabError> {
    let ready = host_dir(dir, host_id).join(READY_FILE);
    let log = log_dir(dir).join(format!("agent-{host_id}.log"));
    wait_for(&format!("the agent of {host_id}"), &log, || {
        ready.exists().then_some(())
    })
}

/// Waits until the server accepts connections.
fn wait_server(endpoint: &str, log: &Path) -> Result<(), LabError> {
    let addr = endpoint.trim_start_matches("http://").to_owned();
    wait_for("the server", log, || {
        std::net::TcpStream::connect(&addr).ok().map(|_| ())
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Stops one part of a running lab (`server` or a host ID) and starts it
/// again with the same arguments, waiting until it is ready: what a test of
/// restarts needs. `kill` stops it with SIGKILL, as a crash would.
pub fn restart(dir: &Path, part: &str, kill: bool) -> Result<(), LabError> {
    let mut state = load(dir)?;
    let Some(process) = state.processes.iter_mut().find(|p| p.part == part) else {
        return Err(LabError::NoPart(part.to_owned()));
    };
    stop_process(process.pid, kill);
    if part != "server" {
        let _ = fs::remove_file(host_dir(dir, part).join(READY_FILE));
    }
    process.pid = spawn(&state.exe, &process.args, &process.log)?;
    let endpoint = state.endpoint.clone().unwrap_or_default();
    let (pid, args, log) = (process.pid, process.args.clone(), process.log.clone());
    save(dir, &state)?;
    let ready = |dir: &Path| {
        if part == "server" {
            wait_server(&endpoint, &log)
        } else {
            wait_agent(dir, part)
        }
    };
    match ready(dir) {
        // It exited on its way up (its log says why): one more start.
        Err(_) if wait_finished(pid as i32, Duration::ZERO) => {
            let pid = spawn(&state.exe, &args, &log)?;
            if let Some(p) = state.processes.iter_mut().find(|p| p.part == part) {
                p.pid = pid;
            }
            save(dir, &state)?;
            ready(dir)
        }
        other => other,
    }
}

/// Starts `exe args` in its own process group (so a Ctrl-C at the shell
/// that ran `lab up` does not reach it), with its output in a file.
fn spawn(exe: &Path, args: &[String], log: &Path) -> Result<u32, LabError> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io_at(log))?;
    let err = out.try_clone().map_err(io_at(log))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(io_at(exe))?;
    Ok(child.id())
}

fn wait_for<T>(
    what: &str,
    log: &Path,
    mut ready: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let start = Instant::now();
    loop {
        if let Some(v) = ready() {
            return Ok(v);
        }
        if start.elapsed() > READY_TIMEOUT {
            return Err(LabError::NotReady {
                what: what.to_owned(),
                secs: READY_TIMEOUT.as_secs(),
                log: log.to_owned(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Takes a lab down: stops its processes, lets `remove_instances` clear
/// each agent's instances, deletes its namespaces and links, and removes
/// `lab.json`. Works on whatever part of the lab exists.
pub fn down(
    dir: &Path,
    mut remove_instances: impl FnMut(&Path),
    mut progress: impl FnMut(&str),
) -> Result<(), LabError> {
    let state = load(dir)?;
    // Agents first, so none recreates an instance while we delete it.
    for process in state.processes.iter().rev() {
        if stop_process(process.pid, false) {
            progress(&format!("stopped {} (pid {})", process.part, process.pid));
        }
    }
    if let Some(plan) = &state.plan {
        for host in &plan.hosts {
            remove_instances(&host_dir(dir, &host.host_id));
        }
        netns::destroy(plan);
        progress(&format!(
            "removed namespaces {} and ovl-{}-h*",
            plan.underlay_netns, plan.tag
        ));
    }
    for file in ["lab.json", "endpoint", "credentials"] {
        let _ = fs::remove_file(dir.join(file));
    }
    Ok(())
}

/// SIGTERM (or SIGKILL at once when `kill`), then SIGKILL after 5 s. Only
/// signals a process whose command line is still an `openvpc`, so a
/// recycled PID is left alone.
fn stop_process(pid: u32, kill: bool) -> bool {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("openvpc") {
        return false;
    }
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with a PID read from our own state file and checked
    // to be an openvpc process; it has no memory-safety preconditions.
    unsafe { libc::kill(pid, if kill { libc::SIGKILL } else { libc::SIGTERM }) };
    if !wait_finished(pid, Duration::from_secs(5)) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_finished(pid, Duration::from_secs(10));
    }
    true
}

/// Waits until `pid` has released everything it held, so a successor can
/// bind its ports. A multi-threaded process's leader turns zombie while
/// its other threads still exit and hold its sockets: only a zombie with
/// no open files is finished.
fn wait_finished(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    loop {
        let open_files = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        if !Path::new(&format!("/proc/{pid}")).exists() || (is_zombie(pid) && open_files == 0) {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_hosts_round_robin_over_zones() {
        let dir = tempfile::tempdir().unwrap();
        let plan = LabPlan::new(dir.path(), 3, 2, "us-east-1").unwrap();
        let zones: Vec<_> = plan
            .hosts
            .iter()
            .map(|h| h.availability_zone.as_str())
            .collect();
        assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1a"]);
        assert_eq!(plan.hosts[2].underlay_ip, Ipv4Addr::new(10, 254, 0, 13));
        for host in &plan.hosts {
            assert!(host.veth_host.len() <= 15, "{} too long", host.veth_host);
        }
        // The same directory always gives the same names: `down` relies on it.
        assert_eq!(plan, LabPlan::new(dir.path(), 3, 2, "us-east-1").unwrap());
    }

    #[test]
    fn refuses_impossible_shapes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            LabPlan::new(dir.path(), 0, 1, "r"),
            Err(LabError::Hosts(0))
        ));
        assert!(matches!(
            LabPlan::new(dir.path(), 2, 3, "r"),
            Err(LabError::Azs(3))
        ));
    }

    #[test]
    fn down_without_a_lab_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = down(dir.path(), |_| {}, |_| {}).unwrap_err();
        assert!(matches!(err, LabError::NoLab(_)));
    }
}
