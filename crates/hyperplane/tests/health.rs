//! The NLB health checker against spec 9.4: defaults and validation of the
//! settings, thresholds with exact times, reasons per failure kind,
//! timeouts decided by the checker, recovery, draining, `unused`, fail
//! open, and HTTP answers that are garbage.

use core::net::{Ipv4Addr, SocketAddrV4};

use openvpc_hyperplane::health::{
    HealthCheckConfig, HealthCheckParams, HealthChecker, HealthConfigError, HealthPort,
    HealthProtocol, Matcher, Millis, Outcome, ProbeKind, Reason, Recorded, StatusLine, Target,
    TargetHealth, TargetState, parse_status_line,
};
use proptest::prelude::*;

const S: Millis = 1_000;

fn target(n: u8) -> Target {
    Target::new(format!("i-{n}"), Ipv4Addr::new(10, 0, 1, n), 80)
}

fn config(protocol: &str) -> HealthCheckConfig {
    HealthCheckConfig::from_params(&HealthCheckParams {
        protocol: Some(protocol),
        ..Default::default()
    })
    .unwrap()
}

/// Runs one probe round at `now` for every due target, answering each
/// with `outcome`; returns how many probes were started.
fn round(hc: &mut HealthChecker, now: Millis, outcome: Outcome) -> usize {
    let probes = hc.due(now);
    for p in &probes {
        hc.result(&p.target, outcome, now + 5);
    }
    probes.len()
}

fn state(hc: &HealthChecker, t: &Target) -> (TargetState, Option<&'static str>) {
    let h = hc.health(t);
    (h.state, h.reason.map(Reason::code))
}

#[test]
fn defaults_are_spec_9_4s_nlb_defaults() {
    // spec 9.4: TCP, traffic port, interval 30 s, timeout 10 s (6 s for
    // HTTP), healthy 5, unhealthy 2, path /, matcher 200-399.
    let c = HealthCheckConfig::from_params(&HealthCheckParams::default()).unwrap();
    assert_eq!(c.protocol(), HealthProtocol::Tcp);
    assert_eq!(c.port(), HealthPort::TrafficPort);
    assert_eq!(c.interval_secs(), 30);
    assert_eq!(c.timeout_secs(), 10);
    assert_eq!((c.healthy_threshold(), c.unhealthy_threshold()), (5, 2));
    let h = config("HTTP");
    assert_eq!(h.timeout_secs(), 6);
    assert_eq!(h.path(), "/");
    assert_eq!(h.matcher().to_string(), "200-399");
    assert_eq!(config("HTTPS").timeout_secs(), 10);
}

#[test]
fn detection_time_is_interval_times_threshold_plus_timeout() {
    // Issue 17: within interval × unhealthy threshold plus one interval.
    let c = config("TCP");
    assert_eq!(c.worst_case_detection(), 70 * S);
    assert!(c.worst_case_detection() <= c.interval() * 3);
    assert_eq!(c.time_to_healthy(), 120 * S);
    assert_eq!(c.worst_case_recovery(), 160 * S);
}

#[test]
fn bad_settings_get_elbv2_validation_errors() {
    let bad = |p: HealthCheckParams<'_>| HealthCheckConfig::from_params(&p).unwrap_err();
    let e = bad(HealthCheckParams {
        interval_secs: Some(4),
        ..Default::default()
    });
    assert_eq!(e.code(), "ValidationError");
    assert_eq!(
        e.to_string(),
        "HealthCheckIntervalSeconds 4 must be between 5 and 300"
    );
    assert!(matches!(
        bad(HealthCheckParams {
            timeout_secs: Some(121),
            ..Default::default()
        }),
        HealthConfigError::OutOfRange { .. }
    ));
    for t in [1, 11] {
        assert!(matches!(
            bad(HealthCheckParams {
                healthy_threshold: Some(t),
                ..Default::default()
            }),
            HealthConfigError::OutOfRange { .. }
        ));
        assert!(matches!(
            bad(HealthCheckParams {
                unhealthy_threshold: Some(t),
                ..Default::default()
            }),
            HealthConfigError::OutOfRange { .. }
        ));
    }
    assert_eq!(
        bad(HealthCheckParams {
            interval_secs: Some(10),
            timeout_secs: Some(10),
            ..Default::default()
        }),
        HealthConfigError::TimeoutNotBelowInterval {
            timeout: 10,
            interval: 10
        }
    );
    assert!(matches!(
        bad(HealthCheckParams {
            protocol: Some("UDP"),
            ..Default::default()
        }),
        HealthConfigError::Protocol(_)
    ));
    for port in ["0", "65536", "http", ""] {
        assert!(matches!(
            bad(HealthCheckParams {
                port: Some(port),
                ..Default::default()
            }),
            HealthConfigError::Port(_)
        ));
    }
    assert_eq!(
        bad(HealthCheckParams {
            path: Some("/x"),
            ..Default::default()
        }),
        HealthConfigError::HttpOnly("path")
    );
    assert_eq!(
        bad(HealthCheckParams {
            matcher: Some("200"),
            ..Default::default()
        }),
        HealthConfigError::HttpOnly("matcher")
    );
    for path in ["health", "/a b", "/a\r\nX: y", ""] {
        assert!(matches!(
            bad(HealthCheckParams {
                protocol: Some("HTTP"),
                path: Some(path),
                ..Default::default()
            }),
            HealthConfigError::Path(_)
        ));
    }
    let ok = HealthCheckConfig::from_params(&HealthCheckParams {
        protocol: Some("HTTP"),
        port: Some("8080"),
        path: Some("/healthz"),
        matcher: Some("200,202"),
        interval_secs: Some(10),
        timeout_secs: Some(5),
        healthy_threshold: Some(3),
        unhealthy_threshold: Some(3),
    })
    .unwrap();
    assert_eq!(ok.port(), HealthPort::Port(8080));
    assert_eq!(ok.matcher().to_string(), "200,202");
}

#[test]
fn matchers_parse_codes_lists_and_ranges() {
    let m = Matcher::parse("200-299,404").unwrap();
    assert!(m.matches(200) && m.matches(299) && m.matches(404));
    assert!(!m.matches(300) && !m.matches(199) && !m.matches(405));
    assert!(Matcher::parse("200,202").unwrap().matches(202));
    assert!(!Matcher::parse("200,202").unwrap().matches(201));
    // NLB matchers: 200-599 (botocore's Matcher.HttpCode).
    assert!(Matcher::parse("500-599").is_ok());
    for bad in [
        "",
        "199",
        "600",
        "200-600",
        "399-200",
        "2xx",
        "200,",
        ",200",
        "200 ",
        " 200",
        "+200",
        "200-",
        "-200",
        "200--300",
        "200-300-400",
        "0200",
    ] {
        let e = Matcher::parse(bad).unwrap_err();
        assert_eq!(e, HealthConfigError::Matcher(bad.to_owned()), "{bad:?}");
        assert_eq!(e.code(), "ValidationError");
    }
}

#[test]
fn a_new_target_is_initial_then_healthy_after_the_healthy_threshold() {
    // spec 9.4: healthy threshold 5 at a 30 s interval; the first probe
    // starts at registration.
    let mut hc = HealthChecker::new(config("TCP"));
    let t = target(1);
    hc.register(t.clone(), 1_000);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Initial, Some("Elb.RegistrationInProgress"))
    );
    let mut healthy_at = None;
    for now in (1_000..=1_000 + 200 * S).step_by(1_000) {
        let probes = hc.due(now);
        for p in &probes {
            assert_eq!(p.kind, ProbeKind::TcpConnect);
            assert_eq!(p.dest, SocketAddrV4::new(t.ip, 80));
            assert_eq!(p.deadline, now + 10 * S);
            if let Recorded::Changed(c) = hc.result(&p.target, Outcome::Connected, now + 1)
                && c.to.state == TargetState::Healthy
            {
                healthy_at.get_or_insert(now + 1);
            }
        }
        if healthy_at.is_none() && hc.health(&t).state == TargetState::Initial && now > 1_000 {
            assert_eq!(
                state(&hc, &t),
                (TargetState::Initial, Some("Elb.InitialHealthChecking"))
            );
        }
    }
    // Probes at 1 s, 31 s, 61 s, 91 s, 121 s: healthy with the fifth.
    assert_eq!(healthy_at, Some(1_000 + 120 * S + 1));
    assert_eq!(
        healthy_at.map(|h| h - 1 - 1_000),
        Some(hc.config().time_to_healthy())
    );
    assert_eq!(
        hc.health(&t),
        TargetHealth {
            state: TargetState::Healthy,
            reason: None
        }
    );
}

/// A checker with `t` healthy at time 0 (probes at 0, 30, .. 120 s).
fn healthy(protocol: &str, t: &Target) -> HealthChecker {
    let mut hc = HealthChecker::new(config(protocol));
    hc.register(t.clone(), 0);
    let ok = if protocol == "TCP" {
        Outcome::Connected
    } else {
        Outcome::HttpStatus(200)
    };
    for i in 0..5 {
        assert_eq!(round(&mut hc, i * 30 * S, ok), 1);
    }
    assert_eq!(hc.health(t).state, TargetState::Healthy);
    hc
}

#[test]
fn a_healthy_target_is_unhealthy_after_the_unhealthy_threshold_with_its_reason() {
    // spec 9.4: unhealthy threshold 2; the reason follows the failure kind
    // (botocore TargetHealthReasonEnum).
    let cases: [(&str, Outcome, &str); 5] = [
        ("TCP", Outcome::Refused, "Target.FailedHealthChecks"),
        ("TCP", Outcome::Reset, "Target.FailedHealthChecks"),
        ("TCP", Outcome::Timeout, "Target.Timeout"),
        (
            "HTTP",
            Outcome::HttpStatus(503),
            "Target.ResponseCodeMismatch",
        ),
        ("HTTP", Outcome::Malformed, "Target.FailedHealthChecks"),
    ];
    for (protocol, outcome, code) in cases {
        let t = target(2);
        let mut hc = healthy(protocol, &t);
        round(&mut hc, 150 * S, outcome);
        assert_eq!(
            hc.health(&t).state,
            TargetState::Healthy,
            "one failure is not enough"
        );
        round(&mut hc, 180 * S, outcome);
        assert_eq!(state(&hc, &t), (TargetState::Unhealthy, Some(code)));
    }
    let t = target(2);
    let mut hc = healthy("HTTP", &t);
    round(&mut hc, 150 * S, Outcome::HttpStatus(404));
    round(&mut hc, 180 * S, Outcome::HttpStatus(404));
    let reason = hc.health(&t).reason.unwrap();
    assert_eq!(
        reason.description(),
        "Health checks failed with these codes: [404]"
    );
}

#[test]
fn a_success_between_failures_resets_the_count() {
    let t = target(3);
    let mut hc = healthy("TCP", &t);
    round(&mut hc, 150 * S, Outcome::Refused);
    round(&mut hc, 180 * S, Outcome::Connected);
    round(&mut hc, 210 * S, Outcome::Refused);
    assert_eq!(hc.health(&t).state, TargetState::Healthy);
    round(&mut hc, 240 * S, Outcome::Refused);
    assert_eq!(hc.health(&t).state, TargetState::Unhealthy);
}

#[test]
fn the_checker_decides_timeouts_itself() {
    // A target that never answers: the shell reports nothing.
    let t = target(4);
    let mut hc = healthy("TCP", &t);
    let p = hc.due(150 * S);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].deadline, 160 * S);
    // Just before the deadline nothing happens.
    assert!(hc.tick(160 * S - 1).changes.is_empty());
    assert!(hc.due(160 * S - 1).is_empty());
    hc.tick(160 * S);
    assert_eq!(hc.health(&t).state, TargetState::Healthy);
    // The second probe, also unanswered, times out at 190 s: detection
    // within interval × threshold + timeout of the failure.
    assert_eq!(hc.due(180 * S).len(), 1);
    let tick = hc.tick(190 * S);
    assert_eq!(tick.changes.len(), 1);
    assert_eq!(tick.changes[0].to.state, TargetState::Unhealthy);
    assert_eq!(tick.changes[0].to.reason, Some(Reason::Timeout));
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unhealthy, Some("Target.Timeout"))
    );
    assert!(190 * S - 120 * S <= hc.config().worst_case_detection());
    // A late answer is ignored: the checker already counted the probe.
    assert_eq!(
        hc.result(&t, Outcome::Connected, 191 * S),
        Recorded::Ignored
    );
}

#[test]
fn due_also_times_out_probes_and_the_next_tick_reports_it() {
    let t = target(5);
    let mut hc = healthy("TCP", &t);
    hc.due(150 * S);
    // The shell never ticks; the next due counts the timeout first.
    assert_eq!(hc.due(180 * S).len(), 1);
    assert_eq!(hc.due(210 * S).len(), 1);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unhealthy, Some("Target.Timeout"))
    );
    assert_eq!(hc.tick(210 * S).changes.len(), 1);
}

#[test]
fn an_answer_at_the_deadline_counts_as_a_timeout() {
    let t = target(6);
    let mut hc = healthy("TCP", &t);
    hc.due(150 * S);
    hc.result(&t, Outcome::Connected, 160 * S);
    hc.due(180 * S);
    hc.result(&t, Outcome::Connected, 190 * S);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unhealthy, Some("Target.Timeout"))
    );
}

#[test]
fn unhealthy_targets_recover_after_the_healthy_threshold() {
    let t = target(7);
    let mut hc = healthy("HTTP", &t);
    round(&mut hc, 150 * S, Outcome::Refused);
    round(&mut hc, 180 * S, Outcome::Refused);
    assert_eq!(hc.health(&t).state, TargetState::Unhealthy);
    // While unhealthy, the reason follows the latest failure.
    round(&mut hc, 210 * S, Outcome::HttpStatus(500));
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unhealthy, Some("Target.ResponseCodeMismatch"))
    );
    for i in 0..4 {
        round(&mut hc, (240 + i * 30) * S, Outcome::HttpStatus(301));
        assert_eq!(hc.health(&t).state, TargetState::Unhealthy);
    }
    round(&mut hc, 360 * S, Outcome::HttpStatus(204));
    assert_eq!(
        hc.health(&t),
        TargetHealth {
            state: TargetState::Healthy,
            reason: None
        }
    );
}

#[test]
fn an_initial_target_that_fails_goes_unhealthy() {
    let mut hc = HealthChecker::new(config("TCP"));
    let t = target(8);
    hc.register(t.clone(), 0);
    round(&mut hc, 0, Outcome::Refused);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Initial, Some("Elb.InitialHealthChecking"))
    );
    round(&mut hc, 30 * S, Outcome::Refused);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unhealthy, Some("Target.FailedHealthChecks"))
    );
}

#[test]
fn http_probes_send_a_get_with_host_and_path() {
    let c = HealthCheckConfig::from_params(&HealthCheckParams {
        protocol: Some("HTTPS"),
        port: Some("8443"),
        path: Some("/health?x=1"),
        ..Default::default()
    })
    .unwrap();
    let mut hc = HealthChecker::new(c);
    let t = target(9);
    hc.register(t.clone(), 0);
    let p = hc.due(0);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].dest, SocketAddrV4::new(t.ip, 8443));
    let ProbeKind::HttpGet { tls, request } = &p[0].kind else {
        panic!("HTTPS check must be an HTTP GET: {:?}", p[0].kind);
    };
    assert!(tls);
    let text = String::from_utf8(request.clone()).unwrap();
    assert!(text.starts_with("GET /health?x=1 HTTP/1.1\r\n"), "{text}");
    assert!(text.contains("\r\nHost: 10.0.1.9:8443\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"));
    // An HTTP check that connects but gets no status fails.
    hc.result(&t, Outcome::Connected, 1);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Initial, Some("Elb.InitialHealthChecking"))
    );
}

#[test]
fn probes_follow_the_interval_and_one_is_in_flight_at_a_time() {
    let mut hc = HealthChecker::new(config("TCP"));
    let t = target(10);
    hc.register(t.clone(), 0);
    assert_eq!(hc.due(0).len(), 1);
    assert!(hc.due(1).is_empty());
    assert_eq!(hc.next_deadline(), Some(10 * S));
    hc.result(&t, Outcome::Connected, 2);
    // A second result for the same probe is not counted again.
    assert_eq!(hc.result(&t, Outcome::Connected, 3), Recorded::Ignored);
    assert_eq!(hc.next_deadline(), Some(30 * S));
    assert!(hc.due(30 * S - 1).is_empty());
    assert_eq!(hc.due(30 * S).len(), 1);
    // Unknown targets are ignored, never a panic.
    assert_eq!(hc.result(&target(99), Outcome::Reset, 5), Recorded::Ignored);
}

#[test]
fn deregistration_drains_until_the_delay_then_the_target_is_gone() {
    // spec 9.1: deregistration_delay.timeout_seconds, 300 s by default.
    let t = target(11);
    let mut hc = healthy("TCP", &t);
    assert!(hc.deregister(&t, 200 * S, 300 * S));
    assert_eq!(
        state(&hc, &t),
        (
            TargetState::Draining,
            Some("Target.DeregistrationInProgress")
        )
    );
    // A draining target is not probed and takes no new flows.
    assert!(hc.due(210 * S).is_empty());
    assert!(hc.routable().is_empty());
    assert!(hc.tick(500 * S - 1).drained.is_empty());
    let tick = hc.tick(500 * S);
    assert_eq!(tick.drained, vec![t.clone()]);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unused, Some("Target.NotRegistered"))
    );
    assert!(!hc.deregister(&t, 600 * S, 0));
}

#[test]
fn re_registering_a_draining_target_starts_it_over() {
    let t = target(12);
    let mut hc = healthy("TCP", &t);
    hc.deregister(&t, 200 * S, 300 * S);
    hc.register(t.clone(), 250 * S);
    assert_eq!(
        state(&hc, &t),
        (TargetState::Initial, Some("Elb.RegistrationInProgress"))
    );
    assert!(hc.tick(600 * S).drained.is_empty());
}

#[test]
fn a_target_not_in_use_is_unused_and_not_probed() {
    let t = target(13);
    let mut hc = healthy("TCP", &t);
    assert!(hc.set_in_use(&t, false, 130 * S));
    assert_eq!(
        state(&hc, &t),
        (TargetState::Unused, Some("Target.NotInUse"))
    );
    assert!(hc.due(150 * S).is_empty());
    assert!(hc.set_in_use(&t, true, 160 * S));
    assert_eq!(
        state(&hc, &t),
        (TargetState::Initial, Some("Elb.RegistrationInProgress"))
    );
    assert_eq!(hc.due(160 * S).len(), 1);
}

#[test]
fn with_no_healthy_target_the_nlb_fails_open() {
    // spec 9.4: all targets unhealthy → send to all.
    let (a, b) = (target(14), target(15));
    let mut hc = HealthChecker::new(config("TCP"));
    hc.register(a.clone(), 0);
    hc.register(b.clone(), 0);
    for i in 0..5 {
        let now = i * 30 * S;
        for p in hc.due(now) {
            let o = if p.target == a {
                Outcome::Connected
            } else {
                Outcome::Refused
            };
            hc.result(&p.target, o, now + 1);
        }
    }
    assert_eq!(hc.routable(), vec![&a]);
    round(&mut hc, 150 * S, Outcome::Reset);
    round(&mut hc, 180 * S, Outcome::Reset);
    assert_eq!(hc.health(&a).state, TargetState::Unhealthy);
    assert_eq!(hc.routable(), vec![&a, &b]);
}

#[test]
fn garbage_http_answers_are_malformed_never_a_panic() {
    assert_eq!(
        parse_status_line(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        StatusLine::Status(200)
    );
    assert_eq!(
        parse_status_line(b"HTTP/1.1 204\n"),
        StatusLine::Status(204)
    );
    for bad in [
        &b"\x16\x03\x01\x00"[..],
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/2 200\r\n",
        b"HTTP/1.1  200 OK\r\n",
        b"HTTP/1.1 099 x\r\n",
        b"HTTP/1.1 20\r\n",
        b"HTTP/1.1 200OK\r\n",
        b"HTTP/1.1 200 O\x00K\r\n",
        b"\r\n",
    ] {
        assert_eq!(parse_status_line(bad), StatusLine::Malformed, "{bad:?}");
    }
    assert_eq!(parse_status_line(b"HTTP/1.1 2"), StatusLine::Incomplete);
    assert_eq!(
        parse_status_line(b"HTTP/1.1 2").outcome_at_eof(),
        Outcome::Malformed
    );
    // A target streaming an endless line is cut off.
    let mut long = b"HTTP/1.1 200 ".to_vec();
    long.resize(4096, b'a');
    assert_eq!(parse_status_line(&long), StatusLine::Malformed);
}

proptest! {
    #[test]
    fn the_status_parser_never_panics(
        http in any::<bool>(),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        // Half the inputs start like a status line, so the parser gets past
        // its first check.
        let mut bytes = if http { b"HTTP/1.".to_vec() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        let _ = parse_status_line(&bytes);
    }

    #[test]
    fn valid_status_lines_parse(code in 100u16..=599, minor in 0u8..=9, reason in "[ -~]{0,20}") {
        let line = if reason.is_empty() {
            format!("HTTP/1.{minor} {code}\r\n")
        } else {
            format!("HTTP/1.{minor} {code} {reason}\r\n")
        };
        prop_assert_eq!(parse_status_line(line.as_bytes()), StatusLine::Status(code));
        // Every prefix is incomplete, never malformed.
        for cut in 0..line.len() - 2 {
            prop_assert_eq!(parse_status_line(&line.as_bytes()[..cut]), StatusLine::Incomplete);
        }
    }

    #[test]
    fn matcher_parsing_never_panics(s in "[0-9,\\- ]{0,16}") {
        let _ = Matcher::parse(&s);
    }

    #[test]
    fn any_outcome_sequence_keeps_a_valid_state(outcomes in proptest::collection::vec(0u8..6, 1..40)) {
        let mut hc = HealthChecker::new(config("HTTP"));
        let t = target(20);
        hc.register(t.clone(), 0);
        for (i, o) in outcomes.iter().enumerate() {
            let now = i as Millis * 30 * S;
            let outcome = match o {
                0 => Outcome::Connected,
                1 => Outcome::Refused,
                2 => Outcome::Reset,
                3 => Outcome::Timeout,
                4 => Outcome::HttpStatus(200),
                _ => Outcome::Malformed,
            };
            hc.due(now);
            if outcome != Outcome::Timeout {
                hc.result(&t, outcome, now + 1);
            }
            let h = hc.health(&t);
            prop_assert!(matches!(h.state, TargetState::Initial | TargetState::Healthy | TargetState::Unhealthy));
            prop_assert_eq!(h.state == TargetState::Healthy, h.reason.is_none());
        }
    }
}
