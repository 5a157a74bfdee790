//! NLB target health checking (spec 9.4), sans-IO: the health check
//! settings and their validation ([`HealthCheckConfig`], [`Matcher`]), the
//! per-target state machine that turns probe outcomes into the states and
//! reason codes DescribeTargetHealth shows ([`HealthChecker`]), and the
//! parser for a probe's HTTP status line ([`parse_status_line`]).
//!
//! It owns no sockets, threads or clocks: time is an argument, a [`Millis`]
//! count (milliseconds on any monotonic clock the shell chooses). The shell
//! asks [`HealthChecker::due`] which probes to start, performs them from the
//! NLB's addresses and reports only what happened
//! ([`HealthChecker::result`]); deciding that a probe timed out is this
//! module's job, so a target that never answers is counted the same way
//! whatever the shell's timers do.
//!
//! Thresholds as AWS applies them: a new target is `initial` until
//! `healthy_threshold` consecutive successes make it `healthy`;
//! `unhealthy_threshold` consecutive failures make any probed target
//! `unhealthy`, with the reason of the last failure (`Target.Timeout`,
//! `Target.FailedHealthChecks`, `Target.ResponseCodeMismatch`).

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::BTreeMap;

use thiserror::Error;

/// A time or duration in milliseconds; the shell picks the clock's origin.
pub type Millis = u64;

const SECOND: Millis = 1_000;

/// The allowed health check interval in seconds (spec 9.4, botocore's
/// `HealthCheckIntervalSeconds`).
pub const INTERVAL_RANGE: core::ops::RangeInclusive<u32> = 5..=300;
/// The allowed probe timeout in seconds (spec 9.4).
pub const TIMEOUT_RANGE: core::ops::RangeInclusive<u32> = 2..=120;
/// The allowed healthy and unhealthy thresholds (spec 9.4).
pub const THRESHOLD_RANGE: core::ops::RangeInclusive<u32> = 2..=10;
/// The HTTP codes an NLB matcher may name (botocore's `Matcher.HttpCode`).
pub const NLB_MATCHER_CODES: core::ops::RangeInclusive<u16> = 200..=599;
/// The longest health check path (botocore's `Path`).
pub const MAX_PATH_LEN: usize = 1024;
/// The longest status line [`parse_status_line`] waits for before calling
/// the answer malformed, so a target streaming garbage cannot grow a buffer.
pub const MAX_STATUS_LINE: usize = 1024;

/// Bad health check settings, as the ELBv2 API refuses them.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HealthConfigError {
    /// A number outside its documented range.
    #[error("{name} {value} must be between {min} and {max}")]
    OutOfRange {
        name: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
    /// The timeout must leave room for the answer before the next probe.
    #[error("Health check timeout ({timeout}) must be smaller than the interval ({interval})")]
    TimeoutNotBelowInterval { timeout: u32, interval: u32 },
    /// A health check protocol other than TCP, HTTP and HTTPS.
    #[error("Health check protocol '{0}' must be one of [TCP, HTTP, HTTPS]")]
    Protocol(String),
    /// A port that is neither `traffic-port` nor 1–65535.
    #[error("Health check port '{0}' must be 'traffic-port' or a number between 1 and 65535")]
    Port(String),
    /// A path that does not start with `/`, is empty, too long or has
    /// characters that cannot go in a request line.
    #[error(
        "Health check path '{0}' must begin with '/', be at most 1024 characters and contain no spaces or control characters"
    )]
    Path(String),
    /// A path or matcher given for a TCP health check.
    #[error("A health check {0} can be given only with HTTP or HTTPS health checks")]
    HttpOnly(&'static str),
    /// A matcher that is not codes and ranges of codes 200–599.
    #[error(
        "Health check matcher HTTP code '{0}' must be a code, a list of codes such as '200,202' or a range such as '200-299', each between 200 and 599"
    )]
    Matcher(String),
}

impl HealthConfigError {
    /// The ELBv2 error code AWS answers with (all of these are
    /// `ValidationError`, HTTP 400).
    pub fn code(&self) -> &'static str {
        "ValidationError"
    }
}

/// How a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthProtocol {
    /// A TCP connect: the handshake completing is a success.
    Tcp,
    /// An HTTP GET whose status must match the matcher.
    Http,
    /// An HTTP GET over TLS (the target's certificate is not verified, as
    /// on AWS).
    Https,
}

impl HealthProtocol {
    /// Parses the API spelling (`TCP`, `HTTP`, `HTTPS`).
    pub fn parse(s: &str) -> Result<Self, HealthConfigError> {
        match s {
            "TCP" => Ok(Self::Tcp),
            "HTTP" => Ok(Self::Http),
            "HTTPS" => Ok(Self::Https),
            other => Err(HealthConfigError::Protocol(other.to_owned())),
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
        }
    }

    /// Spec 9.4's default timeout in seconds: 6 s for HTTP, 10 s for TCP
    /// and HTTPS.
    pub fn default_timeout_secs(self) -> u32 {
        match self {
            Self::Http => 6,
            Self::Tcp | Self::Https => 10,
        }
    }
}

/// The port probes go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthPort {
    /// The port each target was registered with (`traffic-port`).
    TrafficPort,
    /// One port for every target.
    Port(u16),
}

impl HealthPort {
    /// Parses `traffic-port` or 1–65535.
    pub fn parse(s: &str) -> Result<Self, HealthConfigError> {
        if s == "traffic-port" {
            return Ok(Self::TrafficPort);
        }
        match s.parse::<u16>() {
            Ok(p) if p != 0 => Ok(Self::Port(p)),
            _ => Err(HealthConfigError::Port(s.to_owned())),
        }
    }

    /// The port a probe of a target registered on `traffic` goes to.
    pub fn for_target(self, traffic: u16) -> u16 {
        match self {
            Self::TrafficPort => traffic,
            Self::Port(p) => p,
        }
    }
}

impl fmt::Display for HealthPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TrafficPort => f.write_str("traffic-port"),
            Self::Port(p) => write!(f, "{p}"),
        }
    }
}

/// The HTTP codes that count as a passing check (`Matcher.HttpCode`): a
/// list of codes and inclusive ranges, e.g. `200-399` or `200,202`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    ranges: Vec<(u16, u16)>,
}

impl Matcher {
    /// Parses an NLB matcher: comma-separated codes or `low-high` ranges,
    /// each within 200–599, with `low <= high`.
    pub fn parse(s: &str) -> Result<Self, HealthConfigError> {
        let bad = || HealthConfigError::Matcher(s.to_owned());
        let code = |part: &str| -> Result<u16, HealthConfigError> {
            // Exactly three ASCII digits: "+200" or " 200" are refused.
            if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u16 = part.parse().map_err(|_| bad())?;
            if NLB_MATCHER_CODES.contains(&n) {
                Ok(n)
            } else {
                Err(bad())
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let range = match part.split_once('-') {
                Some((lo, hi)) => {
                    let (lo, hi) = (code(lo)?, code(hi)?);
                    if lo > hi {
                        return Err(bad());
                    }
                    (lo, hi)
                }
                None => {
                    let c = code(part)?;
                    (c, c)
                }
            };
            ranges.push(range);
        }
        Ok(Self { ranges })
    }

    /// Spec 9.4's NLB default, `200-399`.
    pub fn nlb_default() -> Self {
        Self {
            ranges: vec![(200, 399)],
        }
    }

    /// Whether `status` passes.
    pub fn matches(&self, status: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// A target group's health check settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    protocol: HealthProtocol,
    port: HealthPort,
    path: String,
    matcher: Matcher,
    interval_secs: u32,
    timeout_secs: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

/// The settings as the API gives them; `None` takes spec 9.4's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthCheckParams<'a> {
    pub protocol: Option<&'a str>,
    pub port: Option<&'a str>,
    pub path: Option<&'a str>,
    pub matcher: Option<&'a str>,
    pub interval_secs: Option<u32>,
    pub timeout_secs: Option<u32>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
}

fn in_range(
    name: &'static str,
    value: u32,
    range: &core::ops::RangeInclusive<u32>,
) -> Result<u32, HealthConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(HealthConfigError::OutOfRange {
            name,
            value: value.into(),
            min: (*range.start()).into(),
            max: (*range.end()).into(),
        })
    }
}

fn valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path.len() <= MAX_PATH_LEN
        && path.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
}

impl HealthCheckConfig {
    /// Spec 9.4's NLB defaults for `protocol`: traffic port, path `/`,
    /// matcher `200-399`, interval 30 s, timeout 10 s (6 s for HTTP),
    /// healthy threshold 5, unhealthy threshold 2.
    pub fn nlb_default(protocol: HealthProtocol) -> Self {
        Self {
            protocol,
            port: HealthPort::TrafficPort,
            path: "/".to_owned(),
            matcher: Matcher::nlb_default(),
            interval_secs: 30,
            timeout_secs: protocol.default_timeout_secs(),
            healthy_threshold: 5,
            unhealthy_threshold: 2,
        }
    }

    /// Validates API parameters, filling what is missing with spec 9.4's
    /// defaults; the error is the one ELBv2 answers with.
    pub fn from_params(p: &HealthCheckParams<'_>) -> Result<Self, HealthConfigError> {
        let protocol = match p.protocol {
            Some(s) => HealthProtocol::parse(s)?,
            None => HealthProtocol::Tcp,
        };
        let mut c = Self::nlb_default(protocol);
        if let Some(port) = p.port {
            c.port = HealthPort::parse(port)?;
        }
        if let Some(path) = p.path {
            if protocol == HealthProtocol::Tcp {
                return Err(HealthConfigError::HttpOnly("path"));
            }
            if !valid_path(path) {
                return Err(HealthConfigError::Path(path.to_owned()));
            }
            path.clone_into(&mut c.path);
        }
        if let Some(m) = p.matcher {
            if protocol == HealthProtocol::Tcp {
                return Err(HealthConfigError::HttpOnly("matcher"));
            }
            c.matcher = Matcher::parse(m)?;
        }
        if let Some(v) = p.interval_secs {
            c.interval_secs = in_range("HealthCheckIntervalSeconds", v, &INTERVAL_RANGE)?;
        }
        if let Some(v) = p.timeout_secs {
            c.timeout_secs = in_range("HealthCheckTimeoutSeconds", v, &TIMEOUT_RANGE)?;
        }
        if let Some(v) = p.healthy_threshold {
            c.healthy_threshold = in_range("HealthyThresholdCount", v, &THRESHOLD_RANGE)?;
        }
        if let Some(v) = p.unhealthy_threshold {
            c.unhealthy_threshold = in_range("UnhealthyThresholdCount", v, &THRESHOLD_RANGE)?;
        }
        // A probe must be decided before the next one starts, so at most
        // one is in flight per target.
        if c.timeout_secs >= c.interval_secs {
            return Err(HealthConfigError::TimeoutNotBelowInterval {
                timeout: c.timeout_secs,
                interval: c.interval_secs,
            });
        }
        Ok(c)
    }

    pub fn protocol(&self) -> HealthProtocol {
        self.protocol
    }
    pub fn port(&self) -> HealthPort {
        self.port
    }
    /// The HTTP(S) path (`/` by default; unused for TCP).
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }
    pub fn interval_secs(&self) -> u32 {
        self.interval_secs
    }
    pub fn timeout_secs(&self) -> u32 {
        self.timeout_secs
    }
    pub fn healthy_threshold(&self) -> u32 {
        self.healthy_threshold
    }
    pub fn unhealthy_threshold(&self) -> u32 {
        self.unhealthy_threshold
    }
    /// The interval in milliseconds.
    pub fn interval(&self) -> Millis {
        Millis::from(self.interval_secs) * SECOND
    }
    /// The probe timeout in milliseconds.
    pub fn timeout(&self) -> Millis {
        Millis::from(self.timeout_secs) * SECOND
    }

    /// The worst-case time from a target failing to it being `unhealthy`:
    /// `interval × unhealthy threshold + timeout`.
    ///
    /// The failure can happen just after a probe passed; the next
    /// `unhealthy threshold` probes then start one interval apart, and the
    /// last is decided at the latest when its timeout runs out. Since the
    /// timeout is shorter than the interval, this is within the issue's
    /// bound "interval × unhealthy threshold plus one interval"; a refused
    /// or reset connection is decided at once, in `interval × threshold`.
    /// NLB defaults (TCP): 30 s × 2 + 10 s = 70 s.
    pub fn worst_case_detection(&self) -> Millis {
        self.interval() * Millis::from(self.unhealthy_threshold) + self.timeout()
    }

    /// The worst-case time from a target recovering to it being `healthy`
    /// again: `interval × healthy threshold + timeout` (the same argument
    /// as [`Self::worst_case_detection`]). NLB defaults (TCP): 160 s.
    pub fn worst_case_recovery(&self) -> Millis {
        self.interval() * Millis::from(self.healthy_threshold) + self.timeout()
    }

    /// The time a new target that answers at once takes to become
    /// `healthy`: its first probe starts at registration, so
    /// `interval × (healthy threshold − 1)`. NLB defaults: 120 s.
    pub fn time_to_healthy(&self) -> Millis {
        self.interval() * Millis::from(self.healthy_threshold.saturating_sub(1))
    }
}

/// A registered target: its id (instance id or IP), address and traffic
/// port. One instance registered on two ports is two targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub id: String,
    pub ip: Ipv4Addr,
    pub port: u16,
}

impl Target {
    pub fn new(id: impl Into<String>, ip: Ipv4Addr, port: u16) -> Self {
        Self {
            id: id.into(),
            ip,
            port,
        }
    }
}

/// DescribeTargetHealth's `State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetState {
    Initial,
    Healthy,
    Unhealthy,
    Unused,
    Draining,
    Unavailable,
}

impl TargetState {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Unused => "unused",
            Self::Draining => "draining",
            Self::Unavailable => "unavailable",
        }
    }
}

/// DescribeTargetHealth's `Reason` (botocore's `TargetHealthReasonEnum`),
/// with what the description needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `initial`, before the first probe is decided.
    RegistrationInProgress,
    /// `initial`, while the first `healthy threshold` probes run.
    InitialHealthChecking,
    /// `unhealthy`: the last HTTP check answered this code.
    ResponseCodeMismatch(u16),
    /// `unhealthy`: the last probe got no answer within the timeout.
    Timeout,
    /// `unhealthy`: the last probe was refused, reset or answered garbage.
    FailedHealthChecks,
    /// `unused`: the target is not registered.
    NotRegistered,
    /// `unused`: no listener uses the group, or the target's AZ is not
    /// enabled on the load balancer.
    NotInUse,
    /// `draining`: the deregistration delay has not ended.
    DeregistrationInProgress,
    /// `unavailable`: health checks are disabled.
    HealthCheckDisabled,
}

impl Reason {
    /// The reason code as DescribeTargetHealth shows it.
    pub fn code(self) -> &'static str {
        match self {
            Self::RegistrationInProgress => "Elb.RegistrationInProgress",
            Self::InitialHealthChecking => "Elb.InitialHealthChecking",
            Self::ResponseCodeMismatch(_) => "Target.ResponseCodeMismatch",
            Self::Timeout => "Target.Timeout",
            Self::FailedHealthChecks => "Target.FailedHealthChecks",
            Self::NotRegistered => "Target.NotRegistered",
            Self::NotInUse => "Target.NotInUse",
            Self::DeregistrationInProgress => "Target.DeregistrationInProgress",
            Self::HealthCheckDisabled => "Target.HealthCheckDisabled",
        }
    }

    /// The `Description` next to the code, worded as AWS words it.
    pub fn description(self) -> String {
        match self {
            Self::RegistrationInProgress => "Target registration is in progress".to_owned(),
            Self::InitialHealthChecking => "Initial health checks in progress".to_owned(),
            Self::ResponseCodeMismatch(code) => {
                format!("Health checks failed with these codes: [{code}]")
            }
            Self::Timeout => "Request timed out".to_owned(),
            Self::FailedHealthChecks => "Health checks failed".to_owned(),
            Self::NotRegistered => "Target is not registered to the target group".to_owned(),
            Self::NotInUse => {
                "Target group is not configured to receive traffic from the load balancer"
                    .to_owned()
            }
            Self::DeregistrationInProgress => "Target deregistration is in progress".to_owned(),
            Self::HealthCheckDisabled => "Health checks are disabled".to_owned(),
        }
    }
}

/// A target's health as DescribeTargetHealth shows it; `healthy` has no
/// reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TargetHealth {
    pub state: TargetState,
    pub reason: Option<Reason>,
}

impl TargetHealth {
    const fn new(state: TargetState, reason: Reason) -> Self {
        Self {
            state,
            reason: Some(reason),
        }
    }
    const HEALTHY: Self = Self {
        state: TargetState::Healthy,
        reason: None,
    };

    /// Whether new flows may go to the target while some target is healthy.
    pub fn is_healthy(self) -> bool {
        self.state == TargetState::Healthy
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeKind {
    /// Open a TCP connection; the handshake completing passes.
    TcpConnect,
    /// Connect (over TLS when `tls`), send `request`, read the status line
    /// and hand it to [`parse_status_line`].
    HttpGet { tls: bool, request: Vec<u8> },
}

/// A probe the shell must start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub target: Target,
    /// Where the probe goes: the target's address and the check port.
    pub dest: SocketAddrV4,
    pub kind: ProbeKind,
    /// When the checker will count the probe as `Target.Timeout` if no
    /// result has come; the shell may give up then.
    pub deadline: Millis,
}

/// What happened to a probe, as the shell saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The TCP handshake completed.
    Connected,
    /// The target answered the SYN with a RST (or ICMP unreachable).
    Refused,
    /// The connection was reset or closed before an answer.
    Reset,
    /// The shell gave up waiting (the checker also decides this itself).
    Timeout,
    /// An HTTP(S) check got this status.
    HttpStatus(u16),
    /// An HTTP(S) check got something that is not an HTTP status line, or
    /// the TLS handshake failed.
    Malformed,
}

/// A change of a target's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub target: Target,
    pub from: TargetHealth,
    pub to: TargetHealth,
}

/// What [`HealthChecker::result`] did with an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// No probe of the target was in flight (unknown target, a result after
    /// the checker already counted a timeout, or a duplicate): nothing
    /// changed.
    Ignored,
    /// Counted; the target's state did not change.
    Counted,
    /// Counted, and the target's health changed.
    Changed(Change),
}

/// What [`HealthChecker::tick`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Health changes since the last tick that [`HealthChecker::result`]
    /// did not already return (probes the checker timed out).
    pub changes: Vec<Change>,
    /// Targets whose deregistration delay ended: they are gone.
    pub drained: Vec<Target>,
}

/// One target's probing state.
#[derive(Debug, Clone)]
struct Entry {
    health: TargetHealth,
    /// When set, the target is registered and used; when `None` it is
    /// `unused` or `draining` and not probed.
    next_probe: Option<Millis>,
    /// The start of the probe in flight.
    in_flight: Option<Millis>,
    successes: u32,
    failures: u32,
    /// Set while draining: when the target is gone.
    drain_end: Option<Millis>,
}

impl Entry {
    fn fresh(now: Millis) -> Self {
        Self {
            health: TargetHealth::new(TargetState::Initial, Reason::RegistrationInProgress),
            next_probe: Some(now),
            in_flight: None,
            successes: 0,
            failures: 0,
            drain_end: None,
        }
    }
}

/// The health of one target group's targets, driven by probe outcomes.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    config: HealthCheckConfig,
    targets: BTreeMap<Target, Entry>,
    /// Changes made by timeouts in [`Self::due`], returned by the next
    /// [`Self::tick`].
    pending: Vec<Change>,
}

impl HealthChecker {
    pub fn new(config: HealthCheckConfig) -> Self {
        Self {
            config,
            targets: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    pub fn config(&self) -> &HealthCheckConfig {
        &self.config
    }

    /// Registers `target` at `now`: `initial` (`Elb.RegistrationInProgress`),
    /// first probe due at once. Registering a registered target changes
    /// nothing; registering a draining one starts it over as new.
    pub fn register(&mut self, target: Target, now: Millis) {
        match self.targets.get_mut(&target) {
            Some(e) if e.health.state == TargetState::Draining => *e = Entry::fresh(now),
            Some(_) => {}
            None => {
                self.targets.insert(target, Entry::fresh(now));
            }
        }
    }

    /// Marks `target` `unused` (`Target.NotInUse`: no listener uses the
    /// group, or its AZ is not enabled) or, with `in_use`, puts it back to
    /// use as a new registration. Unused targets are not probed. Returns
    /// false for an unknown or draining target.
    pub fn set_in_use(&mut self, target: &Target, in_use: bool, now: Millis) -> bool {
        let Some(e) = self.targets.get_mut(target) else {
            return false;
        };
        match (e.health.state, in_use) {
            (TargetState::Draining, _) => false,
            (TargetState::Unused, true) => {
                *e = Entry::fresh(now);
                true
            }
            (TargetState::Unused, false) => true,
            (_, true) => true,
            (_, false) => {
                e.health = TargetHealth::new(TargetState::Unused, Reason::NotInUse);
                e.next_probe = None;
                e.in_flight = None;
                e.successes = 0;
                e.failures = 0;
                true
            }
        }
    }

    /// Starts draining `target` (`Target.DeregistrationInProgress`) until
    /// `now + delay`; it is no longer probed and a later [`Self::tick`]
    /// reports it gone. Returns false for an unknown or already draining
    /// target (the first deadline stands).
    pub fn deregister(&mut self, target: &Target, now: Millis, delay: Millis) -> bool {
        let Some(e) = self.targets.get_mut(target) else {
            return false;
        };
        if e.health.state == TargetState::Draining {
            return false;
        }
        e.health = TargetHealth::new(TargetState::Draining, Reason::DeregistrationInProgress);
        e.next_probe = None;
        e.in_flight = None;
        e.drain_end = Some(now.saturating_add(delay));
        true
    }

    /// The health DescribeTargetHealth shows for `target`;
    /// `unused` (`Target.NotRegistered`) for one not registered.
    pub fn health(&self, target: &Target) -> TargetHealth {
        self.targets.get(target).map_or(
            TargetHealth::new(TargetState::Unused, Reason::NotRegistered),
            |e| e.health,
        )
    }

    /// Every known target (registered or draining) and its health, in
    /// target order.
    pub fn targets(&self) -> impl Iterator<Item = (&Target, TargetHealth)> {
        self.targets.iter().map(|(t, e)| (t, e.health))
    }

    /// The targets new flows may go to: the healthy ones, or, when none is
    /// healthy, every registered target in use that is not draining — the
    /// NLB fails open (spec 9.4).
    pub fn routable(&self) -> Vec<&Target> {
        let healthy: Vec<&Target> = self
            .targets
            .iter()
            .filter(|(_, e)| e.health.is_healthy())
            .map(|(t, _)| t)
            .collect();
        if !healthy.is_empty() {
            return healthy;
        }
        self.targets
            .iter()
            .filter(|(_, e)| e.next_probe.is_some())
            .map(|(t, _)| t)
            .collect()
    }

    /// The probes to start at `now`. First counts every probe whose
    /// timeout has run out as `Target.Timeout` (the changes come with the
    /// next [`Self::tick`]); then each probed target whose interval has
    /// come, with no probe in flight, gets one, and its next probe is due
    /// one interval later.
    pub fn due(&mut self, now: Millis) -> Vec<Probe> {
        self.expire(now);
        let interval = self.config.interval();
        let timeout = self.config.timeout();
        let mut probes = Vec::new();
        for (target, e) in &mut self.targets {
            let Some(next) = e.next_probe else { continue };
            if next > now || e.in_flight.is_some() {
                continue;
            }
            e.in_flight = Some(now);
            // Keep the cadence of the schedule, but never queue up missed
            // probes after a stall of the shell.
            let mut following = next.saturating_add(interval);
            if following <= now {
                following = now.saturating_add(interval);
            }
            e.next_probe = Some(following);
            probes.push(Probe {
                target: target.clone(),
                dest: SocketAddrV4::new(target.ip, self.config.port.for_target(target.port)),
                kind: probe_kind(&self.config, target),
                deadline: now.saturating_add(timeout),
            });
        }
        probes
    }

    /// Records what happened to `target`'s probe in flight at `now`. A
    /// result at or after the probe's deadline counts as `Target.Timeout`,
    /// whatever it says.
    pub fn result(&mut self, target: &Target, outcome: Outcome, now: Millis) -> Recorded {
        let timeout = self.config.timeout();
        let Some(e) = self.targets.get_mut(target) else {
            return Recorded::Ignored;
        };
        let Some(started) = e.in_flight.take() else {
            return Recorded::Ignored;
        };
        let verdict = if now >= started.saturating_add(timeout) {
            Err(Reason::Timeout)
        } else {
            judge(&self.config, outcome)
        };
        let from = e.health;
        apply(&self.config, e, verdict);
        if e.health == from {
            Recorded::Counted
        } else {
            Recorded::Changed(Change {
                target: target.clone(),
                from,
                to: e.health,
            })
        }
    }

    /// Advances time to `now`: times out probes past their deadline and
    /// removes targets whose deregistration delay ended.
    pub fn tick(&mut self, now: Millis) -> Tick {
        self.expire(now);
        let drained: Vec<Target> = self
            .targets
            .iter()
            .filter(|(_, e)| e.drain_end.is_some_and(|end| end <= now))
            .map(|(t, _)| t.clone())
            .collect();
        for t in &drained {
            self.targets.remove(t);
        }
        Tick {
            changes: core::mem::take(&mut self.pending),
            drained,
        }
    }

    /// The earliest time something is due: a probe to start, a probe to
    /// time out or a drain to end; the shell can sleep until then.
    pub fn next_deadline(&self) -> Option<Millis> {
        let timeout = self.config.timeout();
        self.targets
            .values()
            .filter_map(|e| {
                let probe = match e.in_flight {
                    Some(start) => Some(start.saturating_add(timeout)),
                    None => e.next_probe,
                };
                match (probe, e.drain_end) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            })
            .min()
    }

    fn expire(&mut self, now: Millis) {
        let timeout = self.config.timeout();
        for (target, e) in &mut self.targets {
            let Some(started) = e.in_flight else { continue };
            if now < started.saturating_add(timeout) {
                continue;
            }
            e.in_flight = None;
            let from = e.health;
            apply(&self.config, e, Err(Reason::Timeout));
            if e.health != from {
                self.pending.push(Change {
                    target: target.clone(),
                    from,
                    to: e.health,
                });
            }
        }
    }
}

/// What a probe of `target` does under `config`.
fn probe_kind(config: &HealthCheckConfig, target: &Target) -> ProbeKind {
    match config.protocol {
        HealthProtocol::Tcp => ProbeKind::TcpConnect,
        HealthProtocol::Http | HealthProtocol::Https => ProbeKind::HttpGet {
            tls: config.protocol == HealthProtocol::Https,
            request: http_request(&config.path, target.ip, config.port.for_target(target.port)),
        },
    }
}

/// Whether `outcome` passes under `config`; a failure carries its reason.
fn judge(config: &HealthCheckConfig, outcome: Outcome) -> Result<(), Reason> {
    match (config.protocol, outcome) {
        (_, Outcome::Timeout) => Err(Reason::Timeout),
        (_, Outcome::Refused | Outcome::Reset | Outcome::Malformed) => {
            Err(Reason::FailedHealthChecks)
        }
        // A TCP check passes once the handshake completes, whatever follows.
        (HealthProtocol::Tcp, Outcome::Connected | Outcome::HttpStatus(_)) => Ok(()),
        // An HTTP check needs a status: a connection closed without one is
        // a failed check.
        (HealthProtocol::Http | HealthProtocol::Https, Outcome::Connected) => {
            Err(Reason::FailedHealthChecks)
        }
        (HealthProtocol::Http | HealthProtocol::Https, Outcome::HttpStatus(code)) => {
            if config.matcher.matches(code) {
                Ok(())
            } else {
                Err(Reason::ResponseCodeMismatch(code))
            }
        }
    }
}

/// Applies one probe verdict to a probed target's counters and state.
fn apply(config: &HealthCheckConfig, e: &mut Entry, verdict: Result<(), Reason>) {
    match verdict {
        Ok(()) => {
            e.failures = 0;
            e.successes = e.successes.saturating_add(1);
            if e.successes >= config.healthy_threshold {
                e.health = TargetHealth::HEALTHY;
            } else if e.health.state == TargetState::Initial {
                e.health = TargetHealth::new(TargetState::Initial, Reason::InitialHealthChecking);
            }
        }
        Err(reason) => {
            e.successes = 0;
            e.failures = e.failures.saturating_add(1);
            match e.health.state {
                // Once unhealthy, the reason follows the latest failure.
                TargetState::Unhealthy => {
                    e.health = TargetHealth::new(TargetState::Unhealthy, reason);
                }
                _ if e.failures >= config.unhealthy_threshold => {
                    e.health = TargetHealth::new(TargetState::Unhealthy, reason);
                }
                TargetState::Initial => {
                    e.health =
                        TargetHealth::new(TargetState::Initial, Reason::InitialHealthChecking);
                }
                _ => {}
            }
        }
    }
}

/// The bytes of a health check GET for `path` on `ip:port`, as the AWS
/// health checker sends it (HTTP/1.1, `Host`, its user agent, one request
/// per connection).
pub fn http_request(path: &str, ip: Ipv4Addr, port: u16) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: ELB-HealthChecker/2.0\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// What the bytes read so far say about an HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusLine {
    /// A complete status line with this code.
    Status(u16),
    /// No line end yet: read more (at end of stream, the answer is
    /// malformed; see [`StatusLine::outcome_at_eof`]).
    Incomplete,
    /// Not an HTTP/1.x status line.
    Malformed,
}

impl StatusLine {
    /// The probe's outcome once the stream ended with these bytes.
    pub fn outcome_at_eof(self) -> Outcome {
        match self {
            Self::Status(code) => Outcome::HttpStatus(code),
            Self::Incomplete | Self::Malformed => Outcome::Malformed,
        }
    }
}

/// Parses the status line at the start of an HTTP answer:
/// `HTTP/1.<d> <3 digits>[ <reason>]\r\n` (a bare `\n` is accepted). Only
/// the status line is read; never panics, whatever the bytes.
pub fn parse_status_line(bytes: &[u8]) -> StatusLine {
    const PREFIX: &[u8] = b"HTTP/1.";
    // Refuse early what can never become a status line.
    let head = &bytes[..bytes.len().min(PREFIX.len())];
    if !PREFIX.starts_with(head) {
        return StatusLine::Malformed;
    }
    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
        return if bytes.len() > MAX_STATUS_LINE {
            StatusLine::Malformed
        } else {
            StatusLine::Incomplete
        };
    };
    if end > MAX_STATUS_LINE {
        return StatusLine::Malformed;
    }
    let line = &bytes[..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(rest) = line.strip_prefix(PREFIX) else {
        return StatusLine::Malformed;
    };
    // rest = "<d> <ddd>[ <reason>]"
    let [minor, b' ', d0, d1, d2, tail @ ..] = rest else {
        return StatusLine::Malformed;
    };
    if !minor.is_ascii_digit() || tail.first().is_some_and(|&b| b != b' ') {
        return StatusLine::Malformed;
    }
    let digits = [*d0, *d1, *d2];
    if !digits.iter().all(u8::is_ascii_digit) || *d0 == b'0' {
        return StatusLine::Malformed;
    }
    // Reason phrases are text: no control characters but tab.
    if tail.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
        return StatusLine::Malformed;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    StatusLine::Status(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK\r\n"),
            StatusLine::Status(200)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503\r\nX: y\r\n"),
            StatusLine::Status(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), StatusLine::Incomplete);
        assert_eq!(parse_status_line(b"HT"), StatusLine::Incomplete);
        assert_eq!(parse_status_line(b"SSH-2.0-x\r\n"), StatusLine::Malformed);
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2x0 OK\r\n"),
            StatusLine::Malformed
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2000 OK\r\n"),
            StatusLine::Malformed
        );
        assert_eq!(parse_status_line(b""), StatusLine::Incomplete);
    }

    #[test]
    fn matcher_round_trips() {
        for s in ["200-399", "200,202", "200", "200-299,404,500-599"] {
            assert_eq!(Matcher::parse(s).map(|m| m.to_string()).as_deref(), Ok(s));
        }
    }

    #[test]
    fn defaults_follow_spec_9_4() {
        // spec 9.4: TCP 30 s / 10 s, HTTP timeout 6 s, thresholds 5 and 2.
        let tcp = HealthCheckConfig::nlb_default(HealthProtocol::Tcp);
        assert_eq!((tcp.interval_secs(), tcp.timeout_secs()), (30, 10));
        assert_eq!((tcp.healthy_threshold(), tcp.unhealthy_threshold()), (5, 2));
        assert_eq!(
            HealthCheckConfig::nlb_default(HealthProtocol::Http).timeout_secs(),
            6
        );
        assert_eq!(tcp.worst_case_detection(), 70_000);
    }
}
