//! A real decoder as the judge: frames built by this crate are written to a
//! pcap and decoded by Wireshark's `tshark`, which must see Geneve (and
//! VXLAN) with the right VNI and the inner 5-tuple, and nothing malformed.
//!
//! `scripts/test` installs tshark and sets `OPENVPC_REQUIRE_TOOLS=1`, so in CI
//! a missing tshark fails the test instead of skipping it.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::geneve::{self, GeneveOptionRepr, GeneveRepr};
use openvpc_packet::icmp::IcmpRepr;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::ipv6::Ipv6Repr;
use openvpc_packet::tcp::{TcpRepr, flags};
use openvpc_packet::udp::UdpRepr;
use openvpc_packet::vxlan::{self, VxlanRepr};
use openvpc_packet::{MacAddr, icmpv4, icmpv6};
use pcap_file::pcap::{PcapPacket, PcapWriter};

fn tshark_available() -> bool {
    let found = Command::new("tshark").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
            "tshark is required but not installed: run scripts/test, which installs it"
        );
        eprintln!("skipping: tshark is not installed (scripts/test installs it)");
    }
    found
}

fn eth(src: u8, dst: u8) -> EthernetRepr {
    EthernetRepr {
        dst: MacAddr([2, 0, 0, 0, 0, dst]),
        src: MacAddr([2, 0, 0, 0, 0, src]),
        vlan: None,
        ethertype: 0,
    }
}

/// One inner packet and the 5-tuple tshark should report for it.
struct Case {
    frame: Vec<u8>,
    src: String,
    dst: String,
    protocol: u8,
    ports: (u16, u16),
}

fn inner_cases() -> Vec<Case> {
    let a4 = Ipv4Addr::new(10, 0, 1, 10);
    let b4 = Ipv4Addr::new(10, 0, 2, 20);
    let a6: Ipv6Addr = "2600:1f18::a".parse().unwrap();
    let b6: Ipv6Addr = "2600:1f18::b".parse().unwrap();
    let v4 = IpRepr::V4(Ipv4Repr::new(a4, b4, 0, 0));
    let v6 = IpRepr::V6(Ipv6Repr::new(a6, b6, 0, 0));
    let build = |ip, l4| {
        PacketBuilder {
            ethernet: Some(eth(1, 2)),
            ip,
            l4,
        }
        .build(b"openvpc!")
        .unwrap()
    };
    vec![
        Case {
            frame: build(v4, L4Repr::Tcp(TcpRepr::new(40001, 80, flags::SYN))),
            src: a4.to_string(),
            dst: b4.to_string(),
            protocol: 6,
            ports: (40001, 80),
        },
        Case {
            frame: build(
                v4,
                L4Repr::Udp(UdpRepr {
                    src_port: 40002,
                    dst_port: 5201,
                }),
            ),
            src: a4.to_string(),
            dst: b4.to_string(),
            protocol: 17,
            ports: (40002, 5201),
        },
        Case {
            frame: build(
                v4,
                L4Repr::Icmpv4(IcmpRepr::echo(icmpv4::types::ECHO_REQUEST, 777, 1)),
            ),
            src: a4.to_string(),
            dst: b4.to_string(),
            protocol: 1,
            ports: (777, 777),
        },
        Case {
            frame: build(
                v6,
                L4Repr::Tcp(TcpRepr::new(40003, 443, flags::SYN | flags::ACK)),
            ),
            src: a6.to_string(),
            dst: b6.to_string(),
            protocol: 6,
            ports: (40003, 443),
        },
        Case {
            frame: build(
                v6,
                L4Repr::Icmpv6(IcmpRepr::echo(icmpv6::types::ECHO_REQUEST, 888, 1)),
            ),
            src: a6.to_string(),
            dst: b6.to_string(),
            protocol: 58,
            ports: (888, 888),
        },
    ]
}

fn outer(dst_port: u16, src_port: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder {
        ethernet: Some(eth(0xa1, 0xa2)),
        ip: IpRepr::V4(Ipv4Repr::new(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(192, 0, 2, 2),
            0,
            0,
        )),
        l4: L4Repr::Udp(UdpRepr { src_port, dst_port }),
    }
    .build(payload)
    .unwrap()
}

fn write_pcap(frames: &[Vec<u8>]) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new().suffix(".pcap").tempfile().unwrap();
    let mut writer = PcapWriter::new(file.reopen().unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
        writer.write_packet(&packet).unwrap();
    }
    drop(writer);
    file
}

/// Runs tshark over the file; one line per frame, fields separated by `|`.
fn tshark_fields(file: &tempfile::NamedTempFile, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(file.path()).args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

fn assert_not_malformed(file: &tempfile::NamedTempFile) {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-V")
        .arg("-r")
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Malformed"),
        "tshark reports a malformed packet:\n{text}"
    );
    assert!(
        !text.contains("[incorrect"),
        "tshark reports a bad checksum:\n{text}"
    );
}

/// The last value of a repeated field is the inner header's.
fn last(field: &str) -> &str {
    field.rsplit(',').next().unwrap_or("")
}

/// A number as tshark prints it: decimal, or hex for some fields.
fn number(field: &str) -> u32 {
    match field.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
        None => field.parse().unwrap(),
    }
}

fn check_inner(row: &[String], case: &Case) {
    // Fields as in INNER_FIELDS: ip, ipv6, tcp, udp ports, icmp and icmpv6 ids.
    let (src, dst) = if case.src.contains(':') {
        (last(&row[2]), last(&row[3]))
    } else {
        (last(&row[0]), last(&row[1]))
    };
    assert_eq!(src, case.src, "inner source in {row:?}");
    assert_eq!(dst, case.dst, "inner destination in {row:?}");
    let ports = match case.protocol {
        6 => (last(&row[4]), last(&row[5])),
        // The outer UDP header comes first; the inner one is the last occurrence.
        17 => (last(&row[6]), last(&row[7])),
        1 => (last(&row[8]), last(&row[8])),
        _ => (last(&row[9]), last(&row[9])),
    };
    let ports = (number(ports.0), number(ports.1));
    assert_eq!(
        ports,
        (u32::from(case.ports.0), u32::from(case.ports.1)),
        "inner ports in {row:?}"
    );
}

const INNER_FIELDS: [&str; 11] = [
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "icmp.ident",
    "icmpv6.echo.identifier",
    "frame.protocols",
];

#[test]
fn tshark_decodes_geneve() {
    if !tshark_available() {
        return;
    }
    let cases = inner_cases();
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut g = GeneveRepr::ethernet(0x00abcd + i as u32);
            if i == 0 {
                // One frame carries an option with the critical bit.
                g.options.push(GeneveOptionRepr {
                    class: 0x0101,
                    option_type: 1,
                    critical: true,
                    data: vec![1, 2, 3, 4],
                });
            }
            let mut payload = vec![0u8; g.header_len()];
            g.emit(&mut payload).unwrap();
            payload.extend_from_slice(&c.frame);
            outer(geneve::PORT, 49152 + i as u16, &payload)
        })
        .collect();
    let file = write_pcap(&frames);
    let mut fields = vec!["geneve.vni", "geneve.flags.critical"];
    fields.extend(INNER_FIELDS);
    let rows = tshark_fields(&file, &fields);
    assert_eq!(rows.len(), cases.len());
    for (i, (row, case)) in rows.iter().zip(&cases).enumerate() {
        // tshark prints the Geneve VNI in hex.
        assert_eq!(
            number(&row[0]),
            0x00abcd + i as u32,
            "VNI of frame {i}: {row:?}"
        );
        assert_eq!(
            row[1] == "1" || row[1] == "True",
            i == 0,
            "critical flag of frame {i}: {row:?}"
        );
        assert!(
            row[12].contains("geneve:eth"),
            "protocols of frame {i}: {}",
            row[12]
        );
        check_inner(&row[2..], case);
    }
    assert_not_malformed(&file);
}

#[test]
fn tshark_decodes_vxlan() {
    if !tshark_available() {
        return;
    }
    let cases = inner_cases();
    let frames: Vec<Vec<u8>> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut payload = vec![0u8; 8];
            VxlanRepr {
                vni: 100 + i as u32,
            }
            .emit(&mut payload)
            .unwrap();
            payload.extend_from_slice(&c.frame);
            outer(vxlan::PORT, 50000 + i as u16, &payload)
        })
        .collect();
    let file = write_pcap(&frames);
    let mut fields = vec!["vxlan.vni"];
    fields.extend(INNER_FIELDS);
    let rows = tshark_fields(&file, &fields);
    assert_eq!(rows.len(), cases.len());
    for (i, (row, case)) in rows.iter().zip(&cases).enumerate() {
        assert_eq!(number(&row[0]), 100 + i as u32, "VNI of frame {i}: {row:?}");
        assert!(
            row[11].contains("vxlan:eth"),
            "protocols of frame {i}: {}",
            row[11]
        );
        check_inner(&row[1..], case);
    }
    assert_not_malformed(&file);
}
