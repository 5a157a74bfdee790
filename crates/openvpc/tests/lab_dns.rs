//! The VPC's DNS resolver (AmazonProvidedDNS) end to end, in a lab (issue
//! 18, spec 1.4): the aws CLI makes a VPC with DNS hostnames on and two
//! instances, one with a public IPv4, in a group that admits nothing and
//! lets nothing out; real resolvers inside the instances (glibc's, through
//! `getent hosts` and the resolv.conf the instance's DHCP client wrote, and
//! busybox `nslookup`) ask the resolver at the VPC's base + 2 and at
//! 169.254.169.253.
//!
//! Checked: the private name of the other instance resolves (also as a
//! short name, through the DHCP domain); its public `ec2-` name resolves to
//! its private address inside the VPC; an upstream name goes through the
//! outside's DNS server (dnsmasq at the region resolver's address); none of
//! it is filtered by the group (spec 1.4); with `enableDnsHostnames` off
//! neither Amazon name resolves to the private address; with
//! `enableDnsSupport` off nothing answers at all, counted in the hosts'
//! status; and a DHCP options set with its own `domain-name-servers`
//! replaces AmazonProvidedDNS in a new instance's resolv.conf.
//!
//! Needs root (namespaces, TAP devices), the aws CLI from scripts/test's
//! venv, BIRD and dnsmasq; without them the test says why and skips (CI
//! runs it as root with every tool).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::lab::{Instance, Lab, eventually, exec};

const VPC_CIDR: &str = "10.70.0.0/16";
const RESOLVER: &str = "10.70.0.2";
const LINK_LOCAL: &str = "169.254.169.253";
/// What the outside's DNS server answers for `www.example.com`
/// (`openvpc_lab::REGION_RESOLVER_NAMES`).
const UPSTREAM_NAME: &str = "www.example.com";
const UPSTREAM_ADDR: &str = "198.51.100.10";

/// One A query to `server`:53 with a timeout, in the instance's python:
/// prints `rcode N answers N` or `timeout`. glibc's resolver waits 5 s per
/// try, too long to show that nothing answers.
const PROBE: &str = r#"
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack('>HHHHHH', 0x5151, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0'
q += struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
s.sendto(q, (server, 53))
try:
    r, _ = s.recvfrom(4096)
    print('rcode', r[3] & 15, 'answers', struct.unpack('>H', r[6:8])[0])
except socket.timeout:
    print('timeout')
"#;

fn stdout(instance: &Instance, cmd: &[&str]) -> String {
    String::from_utf8_lossy(&exec(&instance.id, cmd).stdout).into_owned()
}

/// The addresses `getent hosts NAME` gives inside `instance`.
fn getent(instance: &Instance, name: &str) -> Vec<String> {
    stdout(instance, &["getent", "hosts", name])
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn probe(instance: &Instance, name: &str, server: &str) -> String {
    stdout(instance, &["python3", "-c", PROBE, name, server])
        .trim()
        .to_owned()
}

/// The hosts' resolver counters (`dns` in each host's status), summed.
fn dns_counter(lab: &Lab, path: &[&str]) -> u64 {
    let status = lab.status();
    status["hosts"]
        .as_object()
        .unwrap()
        .values()
        .map(|h| {
            let mut v = &h["dns"];
            for p in path {
                v = &v[*p];
            }
            v.as_u64().unwrap_or(0)
        })
        .sum()
}

fn set_attribute(lab: &Lab, vpc: &str, attribute: &str, on: bool) {
    let value = format!("{{\"Value\": {on}}}");
    lab.ec2(&["modify-vpc-attribute", "--vpc-id", vpc, attribute, &value]);
}

/// `ip-a-b-c-d`, an address's Amazon host label.
fn label(prefix: &str, ip: &str) -> String {
    format!("{prefix}-{}", ip.replace('.', "-"))
}

#[test]
fn the_vpc_resolver_in_a_lab() {
    let started = Instant::now();
    if !Path::new(openvpc_lab::DNSMASQ).exists() {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "{} is missing: scripts/test installs dnsmasq-base",
            openvpc_lab::DNSMASQ
        );
        eprintln!("skipping: {} is missing", openvpc_lab::DNSMASQ);
        return;
    }
    let Some(lab) = Lab::up(&[]) else {
        return;
    };
    let (vpc, _igw, _table) = lab.internet_vpc(VPC_CIDR);
    let subnet_a = lab.subnet(&vpc, "10.70.1.0/24", "us-east-1a", false);
    let subnet_b = lab.subnet(&vpc, "10.70.2.0/24", "us-east-1b", true);
    // spec 1.4: security groups do not filter the resolver's traffic; this
    // group admits nothing and, without its default egress rule, lets
    // nothing out.
    let closed = lab.group(&vpc, "closed", &[]);
    lab.ec2(&[
        "revoke-security-group-egress",
        "--group-id",
        &closed,
        "--ip-permissions",
        "IpProtocol=-1,IpRanges=[{CidrIp=0.0.0.0/0}]",
    ]);
    set_attribute(&lab, &vpc, "--enable-dns-hostnames", true);
    let a = lab.instance(&subnet_a, &closed, None);
    let b = lab.instance(&subnet_b, &closed, None);
    let b_public = lab.public_ip(&b).expect("b has a public IPv4");
    eprintln!(
        "dns: VPC and instances ready {} ms after the start",
        started.elapsed().as_millis()
    );

    // DHCP gave the resolver and the domain (spec 1.4's default options).
    let resolv = stdout(&a, &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {RESOLVER}")) && resolv.contains("ec2.internal"),
        "a's resolv.conf: {resolv}"
    );

    let private_name = format!("{}.ec2.internal", label("ip", &b.ip));
    let public_name = format!("{}.compute-1.amazonaws.com", label("ec2", &b_public));
    eventually("b's private name to resolve in a", true, || {
        getent(&a, &private_name) == [b.ip.as_str()]
    });
    // The DHCP domain is the search domain: the short name works too.
    assert_eq!(getent(&a, &label("ip", &b.ip)), [b.ip.as_str()]);
    // spec 1.4: inside the VPC the public name gives the private address.
    assert_eq!(getent(&a, &public_name), [b.ip.as_str()]);
    // Anything else goes to the region's resolver, in the outside.
    assert_eq!(getent(&a, UPSTREAM_NAME), [UPSTREAM_ADDR]);
    assert_eq!(getent(&b, UPSTREAM_NAME), [UPSTREAM_ADDR]);
    // The link-local address answers the same (busybox's resolver, asked
    // directly).
    let out = stdout(&b, &["busybox", "nslookup", &private_name, LINK_LOCAL]);
    assert!(out.contains(&b.ip), "nslookup at {LINK_LOCAL}: {out}");
    // A name under the Amazon domain that is no address's does not exist.
    assert_eq!(
        probe(&a, "nothing.ec2.internal", RESOLVER),
        "rcode 3 answers 0"
    );
    // The hosts count what they answered (their status is rewritten
    // every second).
    eventually("the hosts to count local answers and relays", true, || {
        dns_counter(&lab, &["local_answers"]) >= 4 && dns_counter(&lab, &["relayed"]) >= 1
    });

    // spec 1.4: with hostnames off, Amazon's names do not resolve to the
    // private address (the public one is public DNS's to answer, which the
    // lab's has no record of).
    set_attribute(&lab, &vpc, "--enable-dns-hostnames", false);
    eventually("b's private name to stop resolving", true, || {
        getent(&a, &private_name).is_empty()
    });
    assert!(
        !getent(&a, &public_name).contains(&b.ip),
        "the public name gives no private address"
    );
    assert_eq!(getent(&a, UPSTREAM_NAME), [UPSTREAM_ADDR]);

    // spec 1.4: with DNS support off, queries are not answered at all.
    set_attribute(&lab, &vpc, "--enable-dns-support", false);
    eventually("the resolver to go silent", true, || {
        probe(&a, UPSTREAM_NAME, RESOLVER) == "timeout"
    });
    assert_eq!(probe(&a, &private_name, LINK_LOCAL), "timeout");
    assert_eq!(probe(&b, UPSTREAM_NAME, RESOLVER), "timeout");
    eventually("the hosts to count the unanswered queries", true, || {
        dns_counter(&lab, &["drops", "dns_support_disabled"]) >= 3
    });
    set_attribute(&lab, &vpc, "--enable-dns-support", true);
    eventually("the resolver to answer again", true, || {
        probe(&a, UPSTREAM_NAME, RESOLVER) == "rcode 0 answers 1"
    });

    // spec 1.4: a DHCP options set's own domain-name-servers replace
    // AmazonProvidedDNS in what instances get.
    let dopt = lab.ec2(&[
        "create-dhcp-options",
        "--dhcp-configurations",
        &format!("Key=domain-name-servers,Values={UPSTREAM_ADDR}"),
    ])["DhcpOptions"]["DhcpOptionsId"]
        .as_str()
        .unwrap()
        .to_owned();
    lab.ec2(&[
        "associate-dhcp-options",
        "--dhcp-options-id",
        &dopt,
        "--vpc-id",
        &vpc,
    ]);
    let c = lab.instance(&subnet_a, &closed, None);
    let resolv = stdout(&c, &["cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains(&format!("nameserver {UPSTREAM_ADDR}"))
            && !resolv.contains(&format!("nameserver {RESOLVER}")),
        "c's resolv.conf: {resolv}"
    );
    // AmazonProvidedDNS still answers whoever asks it (spec 1.4 ties it to
    // the VPC, not to the options set).
    assert_eq!(probe(&c, UPSTREAM_NAME, RESOLVER), "rcode 0 answers 1");
    eprintln!(
        "dns: the whole test took {} ms",
        started.elapsed().as_millis()
    );
}
