//! The deterministic in-process region (issue 6, testing ladder step 2):
//! the same resources as the root lab tests, created through the EC2
//! actions, compiled by the fleet index into per-host state, converted by
//! the agent's installer, and run by production routers over the in-memory
//! fabric. No root, no sockets, no clocks: every API change is followed by
//! the watch delta the agents would get, applied the way they apply it.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::{all, call, first};
use openvpc_agent::install::Converter;
use openvpc_control::account::Account;
use openvpc_control::fleet::Fleet;
use openvpc_control::fleet::registry;
use openvpc_control::store::{MemoryStore, Store};
use openvpc_dataplane::DropReason;
use openvpc_dataplane::fabric::{Delivery, Fabric};
use openvpc_dataplane::router::RouterConfig;
use openvpc_model::host::HostRegistration;
use openvpc_packet::MacAddr;
use openvpc_packet::builder::{IpRepr, L4Repr, PacketBuilder};
use openvpc_packet::ethernet::EthernetRepr;
use openvpc_packet::icmp::IcmpRepr;
use openvpc_packet::ipv4::Ipv4Repr;
use openvpc_packet::tcp::{TcpRepr, flags};
use openvpc_packet::udp::UdpRepr;
use proptest::prelude::*;

const REGION: &str = "us-east-1";

/// Three hosts (h1 and h3 in us-east-1a, h2 in us-east-1b) as the lab makes
/// them, one account, and the routers of the hosts fed from the fleet.
struct Region {
    store: Arc<MemoryStore>,
    account: Account,
    fleet: Arc<Fleet>,
    fabric: Fabric,
    converter: Converter,
    /// Host ID → the fabric's host number, and the revision it has seen.
    hosts: Vec<(String, usize, u64)>,
    /// Instance ID → (ENI ID, MAC, private IP).
    instances: HashMap<String, (String, MacAddr, Ipv4Addr)>,
}

struct Instance {
    id: String,
    ip: Ipv4Addr,
}

impl Region {
    fn new() -> Region {
        let store = Arc::new(MemoryStore::new());
        let account = common::account();
        let mut fabric = Fabric::new();
        let mut hosts = Vec::new();
        for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1a"]
            .iter()
            .enumerate()
        {
            let n = fabric.add_host();
            // The fabric numbers its hosts' underlays 192.0.2.(n+1).
            let underlay = IpAddr::V4(Ipv4Addr::new(192, 0, 2, n as u8 + 1));
            let host_id = format!("h{}", i + 1);
            registry::register(
                store.as_ref(),
                REGION,
                &HostRegistration {
                    host_id: host_id.clone(),
                    availability_zone: (*zone).into(),
                    underlay_ip: underlay,
                },
                1,
            )
            .unwrap();
            hosts.push((host_id, n, 0));
        }
        let fleet = Fleet::load(Arc::clone(&store) as Arc<dyn Store>).unwrap();
        Region {
            store,
            account,
            fleet,
            fabric,
            converter: Converter::new(),
            hosts,
            instances: HashMap::new(),
        }
    }

    fn ok(&self, body: &str) -> String {
        call(self.store.as_ref(), &self.account, body)
            .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message))
    }

    fn vpc(&self, cidr: &str) -> String {
        common::vpc_with(self.store.as_ref(), &self.account, cidr)
    }

    fn subnet(&self, vpc: &str, cidr: &str, zone: &str) -> String {
        first(
            &self.ok(&format!(
                "Action=CreateSubnet&VpcId={vpc}&CidrBlock={}&AvailabilityZone={zone}",
                cidr.replace('/', "%2F")
            )),
            "subnetId",
        )
    }

    fn group(&self, vpc: &str, name: &str) -> String {
        common::security_group(self.store.as_ref(), &self.account, vpc, name)
    }

    /// Allows `proto` to `port` from `cidr` into `group`.
    fn allow(&self, group: &str, proto: &str, port: i32, cidr: &str) {
        self.ok(&format!(
            "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol={proto}\
             &IpPermissions.1.FromPort={port}&IpPermissions.1.ToPort={port}\
             &IpPermissions.1.IpRanges.1.CidrIp={}",
            cidr.replace('/', "%2F")
        ));
    }

    fn run(&mut self, subnet: &str, groups: &[&str], ip: Option<&str>) -> Instance {
        let mut body = format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}"
        );
        for (i, g) in groups.iter().enumerate() {
            body.push_str(&format!("&SecurityGroupId.{}={g}", i + 1));
        }
        if let Some(ip) = ip {
            body.push_str(&format!("&PrivateIpAddress={ip}"));
        }
        let xml = self.ok(&body);
        let id = first(&xml, "instanceId");
        let ip: Ipv4Addr = first(&xml, "privateIpAddress").parse().unwrap();
        let mac: MacAddr = first(&xml, "macAddress").parse().unwrap();
        let eni = first(&xml, "networkInterfaceId");
        self.instances.insert(id.clone(), (eni, mac, ip));
        self.sync();
        Instance { id, ip }
    }

    /// What every agent does on a watch: fetch the delta since its last
    /// revision and install or remove what it names.
    fn sync(&mut self) {
        self.fleet.catch_up().unwrap();
        for (host_id, n, since) in &mut self.hosts {
            let delta = self.fleet.delta(REGION, host_id, *since);
            for state in &delta.upserts {
                let cfg = self.converter.eni_config(state).unwrap();
                if self.fabric.eni_index(&cfg.id).is_some() {
                    self.fabric.update_eni(cfg).unwrap();
                } else {
                    self.fabric.add_eni(*n, cfg).unwrap();
                }
            }
            for eni in &delta.removals {
                self.fabric.remove_eni(eni);
            }
            *since = delta.revision;
        }
    }

    fn frame(
        &self,
        from: &Instance,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        l4: L4Repr,
    ) -> (String, Vec<u8>) {
        let (eni, mac, _) = &self.instances[&from.id];
        let frame = PacketBuilder {
            ethernet: Some(EthernetRepr {
                dst: RouterConfig::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED)).router_mac,
                src: *mac,
                vlan: None,
                ethertype: 0,
            }),
            ip: IpRepr::V4(Ipv4Repr::new(src, dst, 0, 0)),
            l4,
        }
        .build(b"payload")
        .unwrap();
        (eni.clone(), frame)
    }

    fn send(&mut self, from: &Instance, dst: Ipv4Addr, l4: L4Repr) -> Delivery {
        self.send_from(from, from.ip, dst, l4)
    }

    fn send_from(&mut self, from: &Instance, src: Ipv4Addr, dst: Ipv4Addr, l4: L4Repr) -> Delivery {
        let (eni, frame) = self.frame(from, src, dst, l4);
        self.fabric.send(&eni, &frame)
    }

    fn eni_of(&self, instance: &Instance) -> &str {
        &self.instances[&instance.id].0
    }

    fn delivered_to(&self, d: &Delivery, instance: &Instance) -> bool {
        d.delivered_to(self.eni_of(instance)).is_some()
    }
}

fn tcp(sport: u16, dport: u16, tcp_flags: u8) -> L4Repr {
    let mut t = TcpRepr::new(sport, dport, tcp_flags);
    t.seq = 1000;
    L4Repr::Tcp(t)
}

fn syn(sport: u16, dport: u16) -> L4Repr {
    tcp(sport, dport, flags::SYN)
}

fn udp(sport: u16, dport: u16) -> L4Repr {
    L4Repr::Udp(UdpRepr {
        src_port: sport,
        dst_port: dport,
    })
}

fn echo(id: u16) -> L4Repr {
    L4Repr::Icmpv4(IcmpRepr::echo(8, id, 1))
}

#[test]
fn instances_talk_across_hosts_under_their_groups() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let sub_b = r.subnet(&vpc, "10.0.2.0/24", "us-east-1b");
    let web = r.group(&vpc, "web");
    r.allow(&web, "tcp", 8080, "10.0.0.0/16");
    r.allow(&web, "udp", 9000, "10.0.0.0/16");
    r.allow(&web, "icmp", -1, "10.0.0.0/16");
    let client = r.group(&vpc, "client");
    let db = r.group(&vpc, "db");
    r.ok(&format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={db}&IpPermissions.1.IpProtocol=tcp\
         &IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432\
         &IpPermissions.1.Groups.1.GroupId={client}"
    ));
    let a1 = r.run(&sub_a, &[&web], None);
    let b1 = r.run(&sub_b, &[&web, &db], None);
    let a2 = r.run(&sub_a, &[&web, &client], None);
    let a3 = r.run(&sub_a, &[&web], None);

    // Across hosts and subnets, and between two instances of h1.
    let d = r.send(&a1, b1.ip, syn(40000, 8080));
    assert!(r.delivered_to(&d, &b1), "a1 -> b1:8080 {d:?}");
    let d = r.send(&a1, a3.ip, echo(7));
    assert!(r.delivered_to(&d, &a3), "a1 -> a3 ping (same host) {d:?}");
    let d = r.send(&b1, a2.ip, echo(8));
    assert!(r.delivered_to(&d, &a2), "b1 -> a2 ping {d:?}");
    let d = r.send(&a1, b1.ip, udp(40001, 9000));
    assert!(r.delivered_to(&d, &b1), "a1 -> b1 udp/9000 {d:?}");

    // spec 3.2: the reply comes back although no rule of a1 admits it.
    let d = r.send(&b1, a1.ip, tcp(8080, 40000, flags::SYN | flags::ACK));
    assert!(r.delivered_to(&d, &a1), "b1's SYN-ACK back to a1 {d:?}");

    // Only allowed ports; the group reference admits a2, not a1.
    let d = r.send(&a1, b1.ip, syn(40002, 8081));
    assert_eq!(d.drop_reason(), Some(DropReason::SgDeny), "8081 {d:?}");
    let d = r.send(&a2, b1.ip, syn(40003, 5432));
    assert!(r.delivered_to(&d, &b1), "a2 (client) -> 5432 {d:?}");
    let d = r.send(&a1, b1.ip, syn(40004, 5432));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::SgDeny),
        "a1 -> 5432 {d:?}"
    );

    // Revoking 8080 stops new connections at once.
    r.ok(&format!(
        "Action=RevokeSecurityGroupIngress&GroupId={web}&IpPermissions.1.IpProtocol=tcp\
         &IpPermissions.1.FromPort=8080&IpPermissions.1.ToPort=8080\
         &IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0%2F16"
    ));
    r.sync();
    let d = r.send(&a1, b1.ip, syn(40005, 8080));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::SgDeny),
        "after revoke {d:?}"
    );

    // Terminating b1 takes its ENI off h2: its address no longer answers.
    r.ok(&format!("Action=TerminateInstances&InstanceId.1={}", b1.id));
    r.sync();
    let d = r.send(&a1, b1.ip, echo(9));
    assert!(
        !r.delivered_to(&d, &b1),
        "terminated b1 still reached: {d:?}"
    );
}

#[test]
fn acls_source_dest_check_and_overlapping_vpcs() {
    let mut r = Region::new();
    let mut pairs = Vec::new();
    for name in ["blue", "green"] {
        let vpc = r.vpc("10.0.0.0/16");
        let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
        let sub_b = r.subnet(&vpc, "10.0.2.0/24", "us-east-1b");
        let open = r.group(&vpc, name);
        r.allow(&open, "-1", -1, "0.0.0.0/0");
        let client = r.run(&sub_a, &[&open], Some("10.0.1.10"));
        let server = r.run(&sub_b, &[&open], Some("10.0.2.20"));
        pairs.push((vpc, sub_b, client, server));
    }
    // Same addresses in both VPCs: each client reaches its own server only.
    for (_, _, client, server) in &pairs {
        let d = r.send(client, server.ip, syn(41000, 80));
        assert!(
            r.delivered_to(&d, server),
            "{} -> own server {d:?}",
            client.id
        );
    }

    // spec 4.1: on blue's server subnet, deny 90 beats allow 100.
    let (vpc, sub_b, client, server) = &pairs[0];
    let acl = first(
        &r.ok(&format!("Action=CreateNetworkAcl&VpcId={vpc}")),
        "networkAclId",
    );
    let entry =
        |r: &Region, n: u16, egress: bool, proto: &str, ports: Option<(u16, u16)>, action: &str| {
            let mut body = format!(
                "Action=CreateNetworkAclEntry&NetworkAclId={acl}&RuleNumber={n}&Protocol={proto}\
             &RuleAction={action}&Egress={egress}&CidrBlock=0.0.0.0%2F0"
            );
            if let Some((from, to)) = ports {
                body.push_str(&format!("&PortRange.From={from}&PortRange.To={to}"));
            }
            r.ok(&body);
        };
    entry(&r, 90, false, "6", Some((8080, 8080)), "deny");
    entry(&r, 100, false, "-1", None, "allow");
    entry(&r, 100, true, "6", Some((1024, 65535)), "allow");
    let acls = r.ok(&format!(
        "Action=DescribeNetworkAcls&Filter.1.Name=association.subnet-id&Filter.1.Value.1={sub_b}"
    ));
    // The default ACL lists every subnet's association: take sub_b's.
    let assoc = acls
        .split("<item>")
        .find(|item| item.contains(&format!("<subnetId>{sub_b}</subnetId>")))
        .map(|item| first(item, "networkAclAssociationId"))
        .unwrap();
    r.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={acl}"
    ));
    r.sync();
    let d = r.send(client, server.ip, syn(41001, 8080));
    assert_eq!(d.drop_reason(), Some(DropReason::NaclDeny), "deny 90 {d:?}");
    let d = r.send(client, server.ip, syn(41002, 8081));
    assert!(r.delivered_to(&d, server), "8081 passes allow 100 {d:?}");
    // Stateless: the reply to the ephemeral port leaves through egress 100…
    let d = r.send(server, client.ip, tcp(8081, 41002, flags::SYN | flags::ACK));
    assert!(r.delivered_to(&d, client), "reply to 41002 {d:?}");
    // …and a reply to a port below it is denied by the final `*` rule.
    let d = r.send(client, server.ip, syn(1000, 8081));
    assert!(r.delivered_to(&d, server));
    let d = r.send(server, client.ip, tcp(8081, 1000, flags::SYN | flags::ACK));
    assert_eq!(
        d.drop_reason(),
        Some(DropReason::NaclDeny),
        "reply to 1000 {d:?}"
    );

    // Source/destination check: a spoofed source is dropped until it is off.
    let (_, _, green_client, green_server) = &pairs[1];
    let spoofed = Ipv4Addr::new(10, 0, 1, 200);
    let d = r.send_from(green_client, spoofed, green_server.ip, udp(5000, 9000));
    assert_eq!(d.drop_reason(), Some(DropReason::SourceDestCheck), "{d:?}");
    r.ok(&format!(
        "Action=ModifyInstanceAttribute&InstanceId={}&SourceDestCheck.Value=false",
        green_client.id
    ));
    r.sync();
    let d = r.send_from(green_client, spoofed, green_server.ip, udp(5000, 9000));
    assert!(r.delivered_to(&d, green_server), "check off {d:?}");
    // Still only inside green: blue's server never sees green's frames.
    assert!(!r.delivered_to(&d, server));
}

#[test]
fn a_blackhole_route_drops() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let open = r.group(&vpc, "open");
    r.allow(&open, "-1", -1, "0.0.0.0/0");
    let a1 = r.run(&sub_a, &[&open], None);
    let appliance = r.run(&sub_a, &[&open], None);
    // 192.168.0.0/16 through the appliance instance.
    let table = common::main_route_table(r.store.as_ref(), &r.account, &vpc);
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=192.168.0.0%2F16&InstanceId={}",
        appliance.id
    ));
    r.ok(&format!(
        "Action=ModifyInstanceAttribute&InstanceId={}&SourceDestCheck.Value=false",
        appliance.id
    ));
    r.sync();
    let far = Ipv4Addr::new(192, 168, 1, 1);
    let d = r.send(&a1, far, echo(1));
    assert!(r.delivered_to(&d, &appliance), "to the appliance {d:?}");
    // spec 2.5: the target goes away, the route turns blackhole.
    r.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        appliance.id
    ));
    r.sync();
    let d = r.send(&a1, far, echo(2));
    assert_eq!(d.drop_reason(), Some(DropReason::Blackhole), "{d:?}");
}

impl Region {
    /// `TracePacket` as the server answers it, over this region's fleet.
    fn trace(&self, body: &str) -> Result<String, openvpc_control::ApiError> {
        self.act(&format!("Action=TracePacket&{body}"))
    }
}

/// A delivery in the words of a trace's fate.
fn fate_code(d: &Delivery) -> (String, String) {
    match d {
        Delivery::Delivered { eni, .. } => ("delivered".into(), eni.clone()),
        Delivery::Dropped { reason, .. } => ("dropped".into(), reason.to_string()),
        other => (format!("{other:?}"), String::new()),
    }
}

fn trace_fate(xml: &str) -> (String, String) {
    let code = common::first(xml, "code");
    let detail = if code == "delivered" {
        common::all(xml, "networkInterfaceId")
            .pop()
            .unwrap_or_default()
    } else {
        common::first(xml, "reason")
    };
    (code, detail)
}

// `openvpc trace` explains on the server what the hosts do: for each probe
// the traced fate is the fate of the real packet through the hosts' routers,
// and the steps name the rules behind it, in AWS's order.
#[test]
fn a_trace_tells_what_the_hosts_do() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let sub_b = r.subnet(&vpc, "10.0.2.0/24", "us-east-1b");
    let web = r.group(&vpc, "web");
    r.allow(&web, "tcp", 8080, "10.0.0.0/16");
    r.allow(&web, "icmp", -1, "10.0.0.0/16");
    let a1 = r.run(&sub_a, &[&web], None);
    let b1 = r.run(&sub_b, &[&web], None);
    let b2 = r.run(&sub_b, &[&web], None);
    let cases = [
        (&b1, "Protocol=tcp&DestinationPort=8080", syn(49152, 8080)),
        (&b1, "Protocol=tcp&DestinationPort=22", syn(49152, 22)),
        (&b1, "Protocol=icmp", echo(1)),
        (&b2, "Protocol=udp&DestinationPort=53", udp(49152, 53)),
    ];
    for (to, probe, l4) in cases {
        let xml = r
            .trace(&format!("Source={}&Destination={}&{probe}", a1.id, to.id))
            .unwrap();
        let real = r.send(&a1, to.ip, l4);
        assert_eq!(trace_fate(&xml), fate_code(&real), "{probe}: {xml}");
    }
    let xml = r
        .trace(&format!(
            "Source={}&DestinationIp={}&Protocol=tcp&DestinationPort=8080",
            r.eni_of(&a1),
            b1.ip
        ))
        .unwrap();
    assert_eq!(
        common::all(&xml, "layer"),
        [
            "gateway",
            "security-group",
            "network-acl",
            "routing",
            "gateway",
            "network-acl",
            "security-group"
        ]
    );
    let rules = common::all(&xml, "rule");
    assert!(rules[3].contains("route 10.0.0.0/16 to local"), "{rules:?}");
    assert!(rules[5].contains("rule 100 (allow)"), "{rules:?}");
    assert!(
        rules[6].starts_with(&format!("security group {web}, rule sgr-")),
        "{rules:?}"
    );
    // A denied port names the groups that have no rule for it.
    let xml = r
        .trace(&format!(
            "Source={}&Destination={}&Protocol=tcp&DestinationPort=22",
            a1.id, b1.id
        ))
        .unwrap();
    assert_eq!(
        common::all(&xml, "rule").last().map(String::as_str),
        Some(format!("no rule of {web} allows it").as_str())
    );
    assert_eq!(common::first(&xml, "reason"), "sg_deny");
}

#[test]
fn a_trace_refuses_what_the_caller_does_not_own() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let open = r.group(&vpc, "open");
    let mine = r.run(&sub, &[&open], None);
    let other = Account::generate("other", None);
    let ask = |body: String| r.act_as(&other, &body).err().map(|e| e.code);
    assert_eq!(
        ask(format!(
            "Action=TracePacket&Source={}&DestinationIp=10.0.1.9&Protocol=icmp",
            mine.id
        ))
        .as_deref(),
        Some("InvalidInstanceID.NotFound")
    );
    // Bad input, each with its code.
    for (body, code) in [
        (
            "Source=vpc-1&DestinationIp=10.0.1.9&Protocol=icmp",
            "InvalidParameterValue",
        ),
        (
            &*format!("Source={}&DestinationIp=10.0.1.9&Protocol=sctp", mine.id),
            "InvalidParameterValue",
        ),
        (
            &*format!("Source={}&DestinationIp=10.0.1.9&Protocol=tcp", mine.id),
            "MissingParameter",
        ),
        (
            &*format!("Source={}&Protocol=icmp", mine.id),
            "MissingParameter",
        ),
    ] {
        let e = r.trace(body).err().map(|e| e.code);
        assert_eq!(e.as_deref(), Some(code), "{body}");
    }
    // A server that runs no hosts says it cannot explain.
    let e = common::call(
        r.store.as_ref(),
        &r.account,
        &format!(
            "Action=TracePacket&Source={}&DestinationIp=10.0.1.9&Protocol=icmp",
            mine.id
        ),
    )
    .err()
    .map(|e| e.code);
    assert_eq!(e.as_deref(), Some("UnsupportedOperation"));
}

// --- The Reachability Analyzer's analyses (issue 14, item 4) ---------------

impl Region {
    /// Any action as the server answers it, over this region's fleet.
    fn act(&self, body: &str) -> Result<String, openvpc_control::ApiError> {
        self.act_as(&self.account, body)
    }

    /// Any action asked by `account`, over this region's fleet.
    fn act_as(&self, account: &Account, body: &str) -> Result<String, openvpc_control::ApiError> {
        let ctx = openvpc_control::actions::Ctx {
            store: self.store.as_ref(),
            account,
            region: REGION,
            request_id: "req-test",
            fleet: Some(&self.fleet),
        };
        openvpc_control::actions::dispatch(
            &ctx,
            &openvpc_control::query::Params::parse(body.as_bytes(), ""),
        )
    }

    fn act_ok(&self, body: &str) -> String {
        self.act(body)
            .unwrap_or_else(|e| panic!("{body}: {} {}", e.code, e.message))
    }

    /// A path; its ID.
    fn path(&self, query: &str) -> String {
        first(
            &self.act_ok(&format!("Action=CreateNetworkInsightsPath&{query}")),
            "networkInsightsPathId",
        )
    }

    /// Runs an analysis of `path`; the analysis as StartNetworkInsightsAnalysis
    /// answers it.
    fn analyse(&self, path: &str) -> String {
        self.act_ok(&format!(
            "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"
        ))
    }
}

/// The `<item>`s of the list element `set` in `xml`, each as its own text
/// (one level: the lists of an analysis hold no lists of `<item>`s with
/// the same name).
fn items(xml: &str, set: &str) -> Vec<String> {
    let open = format!("<{set}>");
    let close = format!("</{set}>");
    let Some(start) = xml.find(&open) else {
        return Vec::new();
    };
    let body = &xml[start + open.len()..];
    let body = &body[..body.find(&close).unwrap_or(body.len())];
    // Split on top-level items: count nesting of <item>.
    let mut out = Vec::new();
    let mut depth = 0;
    let mut begin = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with("<item>") {
            if depth == 0 {
                begin = i + "<item>".len();
            }
            depth += 1;
            i += "<item>".len();
        } else if body[i..].starts_with("</item>") {
            depth -= 1;
            if depth == 0 {
                out.push(body[begin..i].to_owned());
            }
            i += "</item>".len();
        } else {
            i += 1;
        }
    }
    out
}

/// A path component's `<component><id>`.
fn component_id(item: &str) -> String {
    first(&item[item.find("<component>").unwrap()..], "id")
}

/// Two subnets of one VPC (so ACLs and routes apply between them), a group
/// open to tcp 8080 inside the VPC, and an instance in each subnet.
fn two_subnets(r: &mut Region) -> (String, String, String, Instance, Instance) {
    let vpc = r.vpc("10.0.0.0/16");
    let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let sub_b = r.subnet(&vpc, "10.0.2.0/24", "us-east-1b");
    let web = r.group(&vpc, "web");
    r.allow(&web, "tcp", 8080, "10.0.0.0/16");
    let a1 = r.run(&sub_a, &[&web], None);
    let b1 = r.run(&sub_b, &[&web], None);
    (vpc, sub_b, web, a1, b1)
}

// Issue 14 (4): an allowed path is found, and its forward components name
// the security-group rule, the ACL rules (spec 4.1: rule 100 of the default
// ACL) and the route (spec 2.2: the local route) that let it through, in
// the order the packet meets them; the verdict is the real packet's fate.
#[test]
fn an_analysis_finds_an_allowed_path_and_names_its_rules() {
    let mut r = Region::new();
    let (vpc, sub_b, web, a1, b1) = two_subnets(&mut r);
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&DestinationPort=8080",
        a1.id, b1.id
    ));
    let xml = r.analyse(&path);
    assert!(
        xml.contains("<StartNetworkInsightsAnalysisResponse xmlns="),
        "{xml}"
    );
    let id = first(&xml, "networkInsightsAnalysisId");
    assert!(id.starts_with("nia-"), "{id}");
    assert_eq!(
        first(&xml, "networkInsightsAnalysisArn"),
        format!("arn:aws:ec2:us-east-1:111111111111:network-insights-analysis/{id}")
    );
    assert_eq!(first(&xml, "networkInsightsPathId"), path);
    assert_eq!(first(&xml, "status"), "succeeded");
    assert_eq!(first(&xml, "networkPathFound"), "true");
    assert!(items(&xml, "explanationSet").is_empty(), "{xml}");

    let real = r.send(&a1, b1.ip, syn(49152, 8080));
    assert!(r.delivered_to(&real, &b1), "{real:?}");

    let components = items(&xml, "forwardPathComponentSet");
    let ids: Vec<String> = components.iter().map(|c| component_id(c)).collect();
    let (a1_eni, b1_eni) = (r.eni_of(&a1).to_owned(), r.eni_of(&b1).to_owned());
    let acl = ids.iter().find(|i| i.starts_with("acl-")).unwrap().clone();
    let table = common::main_route_table(r.store.as_ref(), &r.account, &vpc);
    assert_eq!(
        ids,
        [
            a1.id.clone(),
            a1_eni.clone(),
            web.clone(),
            acl.clone(),
            table.clone(),
            acl.clone(),
            web.clone(),
            b1_eni.clone(),
            b1.id.clone()
        ],
        "{xml}"
    );
    let numbers: Vec<String> = components
        .iter()
        .map(|c| first(c, "sequenceNumber"))
        .collect();
    assert_eq!(numbers, ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    // The source interface: its subnet, VPC, instance and the packet.
    assert!(components[1].contains(&format!("<attachedTo><id>{}</id>", a1.id)));
    assert!(components[1].contains(&format!("<vpc><id>{vpc}</id>")));
    assert!(
        components[1].contains("<outboundHeader>"),
        "{}",
        components[1]
    );
    assert_eq!(first(&components[1], "protocol"), "tcp");
    // Egress: the group's default allow-all rule; ingress: the 8080 rule.
    assert_eq!(first(&components[2], "direction"), "egress");
    assert_eq!(first(&components[2], "cidr"), "0.0.0.0/0");
    let sg_in = &components[6];
    assert_eq!(first(sg_in, "direction"), "ingress");
    assert_eq!(first(sg_in, "cidr"), "10.0.0.0/16");
    assert_eq!(first(sg_in, "protocol"), "tcp");
    assert!(sg_in.contains("<portRange><from>8080</from><to>8080</to></portRange>"));
    // The default ACL's rule 100 both ways.
    for (c, egress) in [(&components[3], "true"), (&components[5], "false")] {
        assert_eq!(first(c, "ruleNumber"), "100", "{c}");
        assert_eq!(first(c, "ruleAction"), "allow");
        assert_eq!(first(c, "egress"), egress);
        assert_eq!(first(c, "protocol"), "all");
    }
    // The local route.
    let route = &components[4];
    assert_eq!(first(route, "destinationCidr"), "10.0.0.0/16");
    assert_eq!(first(route, "gatewayId"), "local");
    assert_eq!(first(route, "state"), "active");
    assert!(components[7].contains(&format!("<subnet><id>{sub_b}</id>")));
    assert!(components[7].contains("<inboundHeader>"));

    // Describe shows the stored snapshot, by ID, by path, and by filter.
    let described = r.act_ok(&format!(
        "Action=DescribeNetworkInsightsAnalyses&NetworkInsightsAnalysisId.1={id}"
    ));
    assert_eq!(items(&described, "forwardPathComponentSet"), components);
    assert_eq!(first(&described, "networkPathFound"), "true");
    assert_eq!(first(&described, "startDate"), first(&xml, "startDate"));
}

// Issue 14 (4): a port no rule admits is blocked at the destination's
// groups (spec 3.1: groups only allow), with ENI_SG_RULES_MISMATCH naming
// the interface and its groups; the real packet is dropped as sg_deny.
#[test]
fn an_analysis_blocked_by_a_security_group_names_the_groups() {
    let mut r = Region::new();
    let (_, sub_b, web, a1, b1) = two_subnets(&mut r);
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&DestinationPort=22",
        a1.id, b1.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "status"), "succeeded");
    assert_eq!(first(&xml, "networkPathFound"), "false");
    let real = r.send(&a1, b1.ip, syn(49152, 22));
    assert_eq!(real.drop_reason(), Some(DropReason::SgDeny));
    let explanations = items(&xml, "explanationSet");
    assert_eq!(explanations.len(), 1, "{xml}");
    let e = &explanations[0];
    assert_eq!(first(e, "explanationCode"), "ENI_SG_RULES_MISMATCH");
    assert_eq!(first(e, "direction"), "ingress");
    assert!(e.contains(&format!("<networkInterface><id>{}</id>", r.eni_of(&b1))));
    assert!(
        e.contains(&format!("<securityGroupSet><item><id>{web}</id>")),
        "{e}"
    );
    assert!(e.contains(&format!("<subnet><id>{sub_b}</id>")), "{e}");
    // The components the packet passed before it was stopped.
    let ids: Vec<String> = items(&xml, "forwardPathComponentSet")
        .iter()
        .map(|c| component_id(c))
        .collect();
    assert_eq!(ids.first(), Some(&a1.id));
    assert!(!ids.contains(&b1.id), "{ids:?}");

    // Filters: path-found and status, and the path's ID.
    let found = |query: &str| {
        all(
            &r.act_ok(&format!("Action=DescribeNetworkInsightsAnalyses&{query}")),
            "networkInsightsAnalysisId",
        )
    };
    let id = first(&xml, "networkInsightsAnalysisId");
    assert_eq!(
        found("Filter.1.Name=path-found&Filter.1.Value.1=false"),
        [id.as_str()]
    );
    assert!(found("Filter.1.Name=path-found&Filter.1.Value.1=true").is_empty());
    assert_eq!(
        found("Filter.1.Name=status&Filter.1.Value.1=succeeded"),
        [id.as_str()]
    );
    assert_eq!(
        found(&format!("NetworkInsightsPathId={path}")),
        [id.as_str()]
    );
    assert_eq!(
        found("AnalysisStartTime=2000-01-01T00:00:00Z"),
        [id.as_str()]
    );
    assert!(found("AnalysisEndTime=2000-01-01T00:00:00Z").is_empty());
}

// Issue 14 (4), spec 4.1: deny 90 beats allow 100 on the destination's
// subnet; SUBNET_ACL_RESTRICTION names the ACL and rule 90, as the real
// packet is dropped as nacl_deny.
#[test]
fn an_analysis_blocked_by_an_acl_names_the_rule() {
    let mut r = Region::new();
    let (vpc, sub_b, _, a1, b1) = two_subnets(&mut r);
    let acl = first(
        &r.ok(&format!("Action=CreateNetworkAcl&VpcId={vpc}")),
        "networkAclId",
    );
    for (n, egress, proto, ports, action) in [
        (
            90,
            false,
            "6",
            "&PortRange.From=8080&PortRange.To=8080",
            "deny",
        ),
        (100, false, "-1", "", "allow"),
        (100, true, "-1", "", "allow"),
    ] {
        r.ok(&format!(
            "Action=CreateNetworkAclEntry&NetworkAclId={acl}&RuleNumber={n}&Protocol={proto}\
             &RuleAction={action}&Egress={egress}&CidrBlock=0.0.0.0%2F0{ports}"
        ));
    }
    let acls = r.ok(&format!(
        "Action=DescribeNetworkAcls&Filter.1.Name=association.subnet-id&Filter.1.Value.1={sub_b}"
    ));
    let assoc = acls
        .split("<item>")
        .find(|item| item.contains(&format!("<subnetId>{sub_b}</subnetId>")))
        .map(|item| first(item, "networkAclAssociationId"))
        .unwrap();
    r.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={acl}"
    ));
    r.sync();
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&FilterAtSource.DestinationPortRange.FromPort=8080&FilterAtSource.DestinationPortRange.ToPort=8080",
        a1.id, b1.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "networkPathFound"), "false", "{xml}");
    let real = r.send(&a1, b1.ip, syn(49152, 8080));
    assert_eq!(real.drop_reason(), Some(DropReason::NaclDeny));
    let explanations = items(&xml, "explanationSet");
    assert_eq!(explanations.len(), 1, "{xml}");
    let e = &explanations[0];
    assert_eq!(first(e, "explanationCode"), "SUBNET_ACL_RESTRICTION");
    assert!(e.contains(&format!("<acl><id>{acl}</id>")), "{e}");
    assert_eq!(first(e, "ruleNumber"), "90");
    assert_eq!(first(e, "ruleAction"), "deny");
    assert_eq!(first(e, "egress"), "false");
    assert!(e.contains("<portRange><from>8080</from><to>8080</to></portRange>"));
    assert!(e.contains(&format!("<subnet><id>{sub_b}</id>")), "{e}");
    // Another port passes rule 100, and the analysis says so.
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&DestinationPort=8081",
        a1.id, b1.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "networkPathFound"), "false");
    assert_eq!(first(&xml, "explanationCode"), "ENI_SG_RULES_MISMATCH");
}

// Issue 14 (4) and "Bad input": a route to an internet gateway no node
// serves yet stops the packet as the hosts stop it (target_unserved): not
// found, BAD_STATE on the gateway and a warning that says why; a path from
// the gateway fails rather than inventing an answer; a blackhole route
// (spec 2.5) is BAD_STATE_ROUTE.
#[test]
fn analyses_say_what_openvpc_does_not_serve() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let open = r.group(&vpc, "open");
    r.allow(&open, "-1", -1, "0.0.0.0/0");
    let a1 = r.run(&sub, &[&open], None);
    let igw = common::attached_igw(r.store.as_ref(), &r.account, &vpc);
    let table = common::main_route_table(r.store.as_ref(), &r.account, &vpc);
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=0.0.0.0%2F0&GatewayId={igw}"
    ));
    r.sync();
    let path = r.path(&format!(
        "Source={}&Destination={igw}&Protocol=tcp&DestinationPort=443",
        a1.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "status"), "succeeded");
    assert_eq!(first(&xml, "networkPathFound"), "false");
    let real = r.send(&a1, Ipv4Addr::new(8, 8, 8, 8), syn(49152, 443));
    assert_eq!(real.drop_reason(), Some(DropReason::TargetUnserved));
    let e = &items(&xml, "explanationSet")[0];
    assert_eq!(first(e, "explanationCode"), "BAD_STATE");
    assert!(
        e.contains(&format!("<internetGateway><id>{igw}</id>")),
        "{e}"
    );
    assert_eq!(first(e, "destinationCidr"), "0.0.0.0/0");
    assert_eq!(first(e, "gatewayId"), igw);
    assert!(first(&xml, "warningMessage").contains("issue 15"), "{xml}");

    let from_igw = r.path(&format!(
        "Source={igw}&Destination={}&Protocol=tcp&DestinationPort=22",
        a1.id
    ));
    let xml = r.analyse(&from_igw);
    assert_eq!(first(&xml, "status"), "failed");
    assert!(!xml.contains("<networkPathFound>"), "{xml}");
    assert!(first(&xml, "statusMessage").contains("issue 15"), "{xml}");

    // spec 2.5: the appliance of a route goes away, the route turns blackhole.
    let appliance = r.run(&sub, &[&open], None);
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=192.168.0.0%2F16&InstanceId={}",
        appliance.id
    ));
    r.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        appliance.id
    ));
    r.sync();
    let path = r.path(&format!(
        "Source={}&Protocol=udp&FilterAtSource.DestinationAddress=192.168.1.1&FilterAtSource.DestinationPortRange.FromPort=53&FilterAtSource.DestinationPortRange.ToPort=53",
        a1.id
    ));
    let xml = r.analyse(&path);
    let real = r.send(&a1, Ipv4Addr::new(192, 168, 1, 1), udp(49152, 53));
    assert_eq!(real.drop_reason(), Some(DropReason::Blackhole));
    let e = &items(&xml, "explanationSet")[0];
    assert_eq!(first(e, "explanationCode"), "BAD_STATE_ROUTE", "{xml}");
    assert_eq!(first(e, "instanceId"), appliance.id);
    assert_eq!(first(e, "state"), "blackhole");
    assert_eq!(first(e, "address"), "192.168.1.1");
}

// Issue 14 (4): AWS refuses to delete a path while analyses of it exist
// (AnalysisExistsForNetworkInsightsPath); deleting the analysis first lets
// the path go. Tags and client tokens work on analyses as on paths.
#[test]
fn a_path_outlives_its_analyses_only_once_they_are_deleted() {
    let mut r = Region::new();
    let (_, _, _, a1, b1) = two_subnets(&mut r);
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&DestinationPort=8080",
        a1.id, b1.id
    ));
    let xml = r.act_ok(&format!(
        "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}&ClientToken=tok-1\
         &TagSpecification.1.ResourceType=network-insights-analysis&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web"
    ));
    let id = first(&xml, "networkInsightsAnalysisId");
    assert!(xml.contains("<tagSet><item><key>Name</key><value>web</value></item></tagSet>"));
    // spec 12.1: the same token answers with the first analysis.
    let again = r.act_ok(&format!(
        "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}&ClientToken=tok-1\
         &TagSpecification.1.ResourceType=network-insights-analysis&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web"
    ));
    assert_eq!(first(&again, "networkInsightsAnalysisId"), id);
    r.act_ok(&format!(
        "Action=CreateTags&ResourceId.1={id}&Tag.1.Key=team&Tag.1.Value=net"
    ));
    let tagged = r.act_ok(
        "Action=DescribeNetworkInsightsAnalyses&Filter.1.Name=tag:team&Filter.1.Value.1=net",
    );
    assert_eq!(all(&tagged, "networkInsightsAnalysisId"), [id.as_str()]);

    let e = r
        .act(&format!(
            "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={path}"
        ))
        .unwrap_err();
    assert_eq!(e.code, "AnalysisExistsForNetworkInsightsPath");
    let deleted = r.act_ok(&format!(
        "Action=DeleteNetworkInsightsAnalysis&NetworkInsightsAnalysisId={id}"
    ));
    assert_eq!(first(&deleted, "networkInsightsAnalysisId"), id);
    r.act_ok(&format!(
        "Action=DeleteNetworkInsightsPath&NetworkInsightsPathId={path}"
    ));
    for body in [
        format!("Action=DeleteNetworkInsightsAnalysis&NetworkInsightsAnalysisId={id}"),
        format!("Action=DescribeNetworkInsightsAnalyses&NetworkInsightsAnalysisId.1={id}"),
    ] {
        assert_eq!(
            r.act(&body).unwrap_err().code,
            "InvalidNetworkInsightsAnalysisId.NotFound",
            "{body}"
        );
    }
    assert_eq!(
        r.act(&format!(
            "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"
        ))
        .unwrap_err()
        .code,
        "InvalidNetworkInsightsPathId.NotFound"
    );
}

// Issue 14 "Bad input" and isolation: another account can neither run an
// analysis of this account's path nor see its analyses, cross-account
// analysis is refused, and a server that runs no hosts says it cannot
// analyse; a source on no host fails with the reason.
#[test]
fn analyses_are_the_callers_own() {
    let mut r = Region::new();
    let (_, _, _, a1, b1) = two_subnets(&mut r);
    let path = r.path(&format!(
        "Source={}&Destination={}&Protocol=tcp&DestinationPort=8080",
        a1.id, b1.id
    ));
    let id = first(&r.analyse(&path), "networkInsightsAnalysisId");
    let other = Account::generate("other", None);
    let ask = |body: String| r.act_as(&other, &body);
    assert_eq!(
        ask(format!(
            "Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"
        ))
        .unwrap_err()
        .code,
        "InvalidNetworkInsightsPathId.NotFound"
    );
    assert_eq!(
        ask(format!(
            "Action=DescribeNetworkInsightsAnalyses&NetworkInsightsAnalysisId.1={id}"
        ))
        .unwrap_err()
        .code,
        "InvalidNetworkInsightsAnalysisId.NotFound"
    );
    let theirs = ask("Action=DescribeNetworkInsightsAnalyses".into()).unwrap();
    assert!(all(&theirs, "networkInsightsAnalysisId").is_empty());
    assert_eq!(
        ask(format!(
            "Action=DeleteNetworkInsightsAnalysis&NetworkInsightsAnalysisId={id}"
        ))
        .unwrap_err()
        .code,
        "InvalidNetworkInsightsAnalysisId.NotFound"
    );
    // Bad input, each with its code.
    for (body, code) in [
        (
            format!("NetworkInsightsPathId={path}&AdditionalAccount.1=222222222222"),
            "InvalidParameterValue",
        ),
        (
            format!(
                "NetworkInsightsPathId={path}&FilterInArn.1=arn:aws:ec2:us-east-1:111111111111:vpc/vpc-12345678"
            ),
            "InvalidParameterValue",
        ),
        (
            "NetworkInsightsPathId=nip-XYZ".to_owned(),
            "InvalidNetworkInsightsPathId.Malformed",
        ),
        (String::new(), "MissingParameter"),
        (
            format!("NetworkInsightsPathId={path}&DryRun=true"),
            "DryRunOperation",
        ),
    ] {
        let e = r
            .act(&format!("Action=StartNetworkInsightsAnalysis&{body}"))
            .unwrap_err();
        assert_eq!(e.code, code, "{body}: {}", e.message);
    }
    // A server that runs no hosts.
    let e = common::call(
        r.store.as_ref(),
        &r.account,
        &format!("Action=StartNetworkInsightsAnalysis&NetworkInsightsPathId={path}"),
    )
    .unwrap_err();
    assert_eq!(e.code, "UnsupportedOperation");
    // A source that runs on no host (an interface attached to nothing):
    // the analysis fails and says why, rather than guessing.
    let (_, sub_b, _, _, _) = two_subnets(&mut r);
    let loose = first(
        &r.ok(&format!("Action=CreateNetworkInterface&SubnetId={sub_b}")),
        "networkInterfaceId",
    );
    let path = r.path(&format!(
        "Source={loose}&Destination={}&Protocol=tcp&DestinationPort=8080",
        b1.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "status"), "failed", "{xml}");
    assert!(!xml.contains("<networkPathFound>"), "{xml}");
    assert!(first(&xml, "statusMessage").contains("no host"), "{xml}");
}

// --- Trace against the real packet, for random regions (issue 14, item 5) --

/// One random region: two VPCs (overlapping, or apart and possibly
/// peered), a group per subnet with random ingress rules (CIDRs and group
/// references), maybe a custom ACL, maybe an appliance route.
#[derive(Debug, Clone)]
struct RandomRegion {
    overlap: bool,
    peered: bool,
    /// Per group: (protocol, port, source): source 0..4 names a CIDR, 4
    /// the other group of its VPC.
    rules: Vec<Vec<(u8, u16, u8)>>,
    /// (rule number, protocol, port, allow) entries of a custom ACL on
    /// each VPC's second subnet, if any.
    acl: Option<Vec<(u16, u8, u16, bool)>>,
    /// An instance with the source/destination check off, and a route to
    /// 192.168.0.0/16 through it.
    appliance: bool,
}

/// A probe: from instance `from` to instance `to` (or 192.168.1.1 when
/// `to` is 8), by protocol and port.
#[derive(Debug, Clone, Copy)]
struct TraceProbe {
    from: usize,
    to: usize,
    protocol: u8,
    port: u16,
}

const PROTOCOLS: [&str; 4] = ["tcp", "udp", "icmp", "-1"];
const PORTS: [u16; 3] = [22, 80, 443];

fn random_region() -> impl Strategy<Value = RandomRegion> {
    let rule = (0u8..4, prop::sample::select(PORTS.to_vec()), 0u8..5);
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(prop::collection::vec(rule, 1..4), 4),
        prop::option::of(prop::collection::vec(
            (
                1u16..200,
                0u8..4,
                prop::sample::select(PORTS.to_vec()),
                any::<bool>(),
            ),
            1..4,
        )),
        any::<bool>(),
    )
        .prop_map(|(overlap, peered, rules, acl, appliance)| RandomRegion {
            overlap,
            peered: peered && !overlap,
            rules,
            acl,
            appliance,
        })
}

fn trace_probe() -> impl Strategy<Value = TraceProbe> {
    (
        0usize..8,
        0usize..9,
        0u8..3,
        prop::sample::select(PORTS.to_vec()),
    )
        .prop_map(|(from, to, protocol, port)| TraceProbe {
            from,
            to,
            protocol,
            port,
        })
}

/// Builds `spec` through the API; its eight instances, VPC by VPC, subnet
/// by subnet.
fn build_region(r: &mut Region, spec: &RandomRegion) -> Vec<Instance> {
    let cidrs = if spec.overlap {
        ["10.0.0.0/16", "10.0.0.0/16"]
    } else {
        ["10.0.0.0/16", "10.1.0.0/16"]
    };
    let sources = ["10.0.0.0/8", "10.1.0.0/16", "0.0.0.0/0", "10.0.1.0/24"];
    let mut instances = Vec::new();
    let mut vpcs = Vec::new();
    for (v, cidr) in cidrs.iter().enumerate() {
        let vpc = r.vpc(cidr);
        // "10.0." or "10.1.": the VPC's first two octets.
        let base = &cidr[..cidr.len() - 6];
        let subnets = [
            r.subnet(&vpc, &format!("{base}1.0/24"), "us-east-1a"),
            r.subnet(&vpc, &format!("{base}2.0/24"), "us-east-1b"),
        ];
        let groups = [r.group(&vpc, "g0"), r.group(&vpc, "g1")];
        for (g, group) in groups.iter().enumerate() {
            // A rule given twice is AWS's InvalidPermission.Duplicate:
            // each is authorised once (ports do not matter for icmp and -1).
            let rules: std::collections::BTreeSet<(u8, u16, u8)> = spec.rules[v * 2 + g]
                .iter()
                .map(|&(protocol, port, source)| {
                    (protocol, if protocol >= 2 { 0 } else { port }, source)
                })
                .collect();
            for (protocol, port, source) in rules {
                let proto = PROTOCOLS[usize::from(protocol)];
                let (from, to) = match proto {
                    "icmp" | "-1" => (-1, -1),
                    _ => (i32::from(port), i32::from(port)),
                };
                let peer = if source == 4 {
                    format!("Groups.1.GroupId={}", groups[1 - g])
                } else {
                    format!(
                        "IpRanges.1.CidrIp={}",
                        sources[usize::from(source)].replace('/', "%2F")
                    )
                };
                r.ok(&format!(
                    "Action=AuthorizeSecurityGroupIngress&GroupId={group}&IpPermissions.1.IpProtocol={proto}\
                     &IpPermissions.1.FromPort={from}&IpPermissions.1.ToPort={to}&IpPermissions.1.{peer}"
                ));
            }
        }
        if let Some(entries) = &spec.acl {
            let acl = first(
                &r.ok(&format!("Action=CreateNetworkAcl&VpcId={vpc}")),
                "networkAclId",
            );
            // One entry per rule number (a second is NetworkAclEntryAlreadyExists).
            let entries: std::collections::BTreeMap<u16, (u8, u16, bool)> = entries
                .iter()
                .rev()
                .map(|&(number, protocol, port, allow)| (number, (protocol, port, allow)))
                .collect();
            for egress in [false, true] {
                for (&number, &(protocol, port, allow)) in &entries {
                    let proto = match PROTOCOLS[usize::from(protocol)] {
                        "tcp" => "6",
                        "udp" => "17",
                        "icmp" => "1",
                        _ => "-1",
                    };
                    r.ok(&format!(
                        "Action=CreateNetworkAclEntry&NetworkAclId={acl}&RuleNumber={number}&Protocol={proto}\
                         &RuleAction={}&Egress={egress}&CidrBlock=0.0.0.0%2F0&PortRange.From={port}&PortRange.To={port}\
                         &IcmpTypeCode.Type=-1&IcmpTypeCode.Code=-1",
                        if allow { "allow" } else { "deny" }
                    ));
                }
                // Replies and everything else the entries do not name.
                r.ok(&format!(
                    "Action=CreateNetworkAclEntry&NetworkAclId={acl}&RuleNumber=500&Protocol=-1\
                     &RuleAction=allow&Egress={egress}&CidrBlock=0.0.0.0%2F0"
                ));
            }
            let assoc = common::all(
                &r.ok(&format!(
                    "Action=DescribeNetworkAcls&Filter.1.Name=association.subnet-id&Filter.1.Value.1={}",
                    subnets[1]
                )),
                "networkAclAssociationId",
            )
            .into_iter()
            .next()
            .unwrap();
            r.ok(&format!(
                "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={acl}"
            ));
        }
        for (s, subnet) in subnets.iter().enumerate() {
            for g in 0..2 {
                instances.push(r.run(subnet, &[&groups[(s + g) % 2]], None));
            }
        }
        vpcs.push(vpc);
    }
    let tables = [
        common::main_route_table(r.store.as_ref(), &r.account, &vpcs[0]),
        common::main_route_table(r.store.as_ref(), &r.account, &vpcs[1]),
    ];
    if spec.peered {
        let pcx = first(
            &r.ok(&format!(
                "Action=CreateVpcPeeringConnection&VpcId={}&PeerVpcId={}",
                vpcs[0], vpcs[1]
            )),
            "vpcPeeringConnectionId",
        );
        r.ok(&format!(
            "Action=AcceptVpcPeeringConnection&VpcPeeringConnectionId={pcx}"
        ));
        for (table, cidr) in [(&tables[0], cidrs[1]), (&tables[1], cidrs[0])] {
            r.ok(&format!(
                "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock={}&VpcPeeringConnectionId={pcx}",
                cidr.replace('/', "%2F")
            ));
        }
    }
    if spec.appliance {
        let appliance = &instances[1];
        r.ok(&format!(
            "Action=ModifyInstanceAttribute&InstanceId={}&SourceDestCheck.Value=false",
            appliance.id
        ));
        r.ok(&format!(
            "Action=CreateRoute&RouteTableId={}&DestinationCidrBlock=192.168.0.0%2F16&InstanceId={}",
            tables[0], appliance.id
        ));
    }
    r.sync();
    instances
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// The verdict `TracePacket` gives equals the fate of the real packet
    /// through the hosts' routers, for random regions and probes. Each
    /// probe starts with no flow state, as a trace assumes.
    #[test]
    fn a_trace_is_the_real_fate(
        spec in random_region(),
        probes in prop::collection::vec(trace_probe(), 4..16),
    ) {
        let mut r = Region::new();
        let instances = build_region(&mut r, &spec);
        for p in probes {
            let from = &instances[p.from];
            let to_ip = if p.to == 8 {
                Ipv4Addr::new(192, 168, 1, 1)
            } else {
                instances[p.to].ip
            };
            if to_ip == from.ip {
                continue;
            }
            let (protocol, l4) = match p.protocol {
                0 => (format!("Protocol=tcp&DestinationPort={}", p.port), syn(49152, p.port)),
                1 => (format!("Protocol=udp&DestinationPort={}", p.port), udp(49152, p.port)),
                _ => ("Protocol=icmp".to_owned(), echo(1)),
            };
            let xml = r
                .trace(&format!("Source={}&DestinationIp={to_ip}&{protocol}", from.id))
                .unwrap();
            // A trace across a peering names the peer's ENI by ID when the
            // account owns it, as here.
            let real = r.send(from, to_ip, l4);
            prop_assert_eq!(trace_fate(&xml), fate_code(&real), "{:?} {}", p, xml);
            // Start the next probe with no flow state.
            r.fabric.advance(24 * 3600 * 1000);
            let now = r.fabric.now_ms();
            for router in &mut r.fabric.routers {
                router.expire(now);
            }
        }
    }
}

// Issue 15: a packet to the internet leaves its host for a live edge node,
// and the trace follows it through the edge's translation: the public
// address it leaves with, the edge, or why it cannot leave.
#[test]
fn a_trace_follows_a_packet_through_the_edge() {
    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let sub_a = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let open = r.group(&vpc, "open");
    let igw = common::attached_igw(r.store.as_ref(), &r.account, &vpc);
    let table = common::main_route_table(r.store.as_ref(), &r.account, &vpc);
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=0.0.0.0%2F0&GatewayId={igw}"
    ));
    let public = r.run(&sub_a, &[&open], None);
    let private = r.run(&sub_a, &[&open], None);
    let alloc = first(&r.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    r.ok(&format!(
        "Action=AssociateAddress&AllocationId={alloc}&InstanceId={}",
        public.id
    ));
    let eip = first(
        &r.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}")),
        "publicIp",
    );
    let outside = Ipv4Addr::new(8, 8, 8, 8);
    let probe = |from: &Instance| {
        format!(
            "Source={}&DestinationIp={outside}&Protocol=tcp&DestinationPort=443",
            from.id
        )
    };

    // No edge serves the region yet: the gateway is unserved.
    r.sync();
    let d = r.send(&public, outside, syn(40000, 443));
    assert_eq!(d.drop_reason(), Some(DropReason::TargetUnserved), "{d:?}");

    let edge_ip: IpAddr = "10.254.0.2".parse().unwrap();
    openvpc_control::fleet::nodes::register(
        r.store.as_ref(),
        openvpc_control::fleet::nodes::Role::Edge,
        REGION,
        &openvpc_model::edge::EdgeRegistration {
            node_id: "e1".into(),
            underlay_ip: edge_ip,
            serving: Vec::new(),
            target_health: Vec::new(),
        },
        1,
    )
    .unwrap();
    r.sync();
    let d = r.send(&public, outside, syn(40001, 443));
    assert_eq!(d, Delivery::LeftFabric { dst: edge_ip }, "to the edge");
    let xml = r.trace(&probe(&public)).unwrap();
    assert_eq!(common::first(&xml, "code"), "internet", "{xml}");
    assert_eq!(common::first(&xml, "publicSource"), eip);
    assert_eq!(common::first(&xml, "edgeId"), "e1");

    // spec 5.1: no public address, no way out; the host says why.
    let d = r.send(&private, outside, syn(40002, 443));
    assert_eq!(d.drop_reason(), Some(DropReason::NoPublicIp), "{d:?}");
    let xml = r.trace(&probe(&private)).unwrap();
    assert_eq!(
        trace_fate(&xml),
        ("dropped".to_string(), "no_public_ip".to_string())
    );

    // A mapped public address keeps the gateway attached (the error
    // Terraform users know); unmapped, it detaches, and its routes are
    // blackholes.
    let detach = format!("Action=DetachInternetGateway&InternetGatewayId={igw}&VpcId={vpc}");
    let e = r.act(&detach).unwrap_err();
    assert_eq!(e.code, "DependencyViolation", "{}", e.message);
    r.ok(&format!("Action=DisassociateAddress&PublicIp={eip}"));
    r.ok(&detach);
    r.sync();
    let d = r.send(&public, outside, syn(40003, 443));
    assert_eq!(d.drop_reason(), Some(DropReason::Blackhole), "{d:?}");
    let xml = r.trace(&probe(&public)).unwrap();
    assert_eq!(
        trace_fate(&xml),
        ("dropped".to_string(), "blackhole".to_string())
    );
}

// Issue 16 (8): a private subnet routed to an available public NAT gateway.
// The host sends the packet to a hyperplane node of the gateway's shard,
// and the trace follows it through that node's gateway core (the source
// becomes the gateway's private address, at a port the node would
// allocate) and then through the edge, which maps that address to the
// gateway's Elastic IP. The analysis finds the path, with the NAT gateway's
// and the internet gateway's components. A node that cannot send on (no
// edge) says why; a shard with no live node leaves the route unserved, as
// the hosts see it.
#[test]
fn a_trace_follows_a_packet_through_a_nat_gateway() {
    use openvpc_control::fleet::nodes::{self, Role};
    use openvpc_control::fleet::shards;
    use openvpc_model::node::NodeRegistration;

    let mut r = Region::new();
    let vpc = r.vpc("10.0.0.0/16");
    let public_sub = r.subnet(&vpc, "10.0.1.0/24", "us-east-1a");
    let private_sub = r.subnet(&vpc, "10.0.2.0/24", "us-east-1a");
    let open = r.group(&vpc, "open");
    let igw = common::attached_igw(r.store.as_ref(), &r.account, &vpc);
    let main = common::main_route_table(r.store.as_ref(), &r.account, &vpc);
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={main}&DestinationCidrBlock=0.0.0.0%2F0&GatewayId={igw}"
    ));
    let alloc = first(&r.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    let nat = first(
        &r.ok(&format!(
            "Action=CreateNatGateway&SubnetId={public_sub}&AllocationId={alloc}"
        )),
        "natGatewayId",
    );
    let described = r.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}"));
    let eip = first(&described, "publicIp");
    let nat_private = first(&described, "privateIp");
    let private_rtb = first(
        &r.ok(&format!("Action=CreateRouteTable&VpcId={vpc}")),
        "routeTableId",
    );
    r.ok(&format!(
        "Action=AssociateRouteTable&RouteTableId={private_rtb}&SubnetId={private_sub}"
    ));
    r.ok(&format!(
        "Action=CreateRoute&RouteTableId={private_rtb}&DestinationCidrBlock=0.0.0.0%2F0&NatGatewayId={nat}"
    ));
    let inside = r.run(&private_sub, &[&open], None);
    let outside = Ipv4Addr::new(8, 8, 8, 8);
    let probe = format!(
        "Source={}&DestinationIp={outside}&Protocol=tcp&DestinationPort=443",
        inside.id
    );

    // An edge, and two hyperplane nodes that program the gateway: the
    // keeper makes it available (a shard of k = 2).
    let edge_ip: IpAddr = "10.254.0.2".parse().unwrap();
    nodes::register(
        r.store.as_ref(),
        Role::Edge,
        REGION,
        &NodeRegistration {
            node_id: "e1".into(),
            underlay_ip: edge_ip,
            serving: Vec::new(),
            target_health: Vec::new(),
        },
        1,
    )
    .unwrap();
    let hyperplane = [("hp1", "10.254.1.1"), ("hp2", "10.254.1.2")];
    let beat = |serving: Vec<String>| {
        for (id, ip) in hyperplane {
            nodes::register(
                r.store.as_ref(),
                Role::Hyperplane,
                REGION,
                &NodeRegistration {
                    node_id: id.into(),
                    underlay_ip: ip.parse().unwrap(),
                    serving: serving.clone(),
                    target_health: Vec::new(),
                },
                1,
            )
            .unwrap();
        }
    };
    beat(Vec::new());
    r.fleet.catch_up().unwrap();
    shards::keep_once(&r.fleet).unwrap();
    beat(vec![nat.clone()]);
    r.fleet.catch_up().unwrap();
    shards::keep_once(&r.fleet).unwrap();
    r.sync();
    assert_eq!(
        first(
            &r.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}")),
            "state"
        ),
        "available"
    );

    // The real packet of the probe's flow (its source port) leaves its
    // host for a node of the shard, the one its flow hash picks.
    let probe_port = openvpc_dataplane::explain::PROBE_SOURCE_PORT;
    let d = r.send(&inside, outside, syn(probe_port, 443));
    let Delivery::LeftFabric { dst: node_ip } = d else {
        panic!("not sent to a hyperplane node: {d:?}");
    };
    let (node_id, _) = hyperplane
        .iter()
        .find(|(_, ip)| ip.parse::<IpAddr>().unwrap() == node_ip)
        .expect("a node of the shard");
    // The trace: the same node, the gateway's private address as source,
    // then the edge and the Elastic IP (spec 6: source NAT to the
    // gateway's address; spec 5.1: the edge maps it to its Elastic IP).
    let xml = r.trace(&probe).unwrap();
    assert_eq!(first(&xml, "code"), "internet", "{xml}");
    assert_eq!(first(&xml, "natGatewayId"), nat, "{xml}");
    assert_eq!(first(&xml, "natNodeId"), *node_id, "{xml}");
    assert_eq!(first(&xml, "natNodeUnderlay"), node_ip.to_string());
    assert_eq!(first(&xml, "natSource"), nat_private, "{xml}");
    let port: u16 = first(&xml, "natSourcePort").parse().unwrap();
    assert!(port >= 1024, "a translated port: {port}");
    assert_eq!(first(&xml, "edgeId"), "e1");
    assert_eq!(first(&xml, "underlay"), edge_ip.to_string());
    assert_eq!(first(&xml, "publicSource"), eip, "{xml}");

    // The analysis finds the path to the internet: the NAT gateway's
    // component shows the source translated to its private address, the
    // internet gateway's the Elastic IP it leaves with.
    let path = r.path(&format!(
        "Source={}&Protocol=tcp&FilterAtSource.DestinationAddress={outside}&FilterAtSource.DestinationPortRange.FromPort=443&FilterAtSource.DestinationPortRange.ToPort=443",
        inside.id
    ));
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "status"), "succeeded", "{xml}");
    assert_eq!(first(&xml, "networkPathFound"), "true", "{xml}");
    let components = items(&xml, "forwardPathComponentSet");
    let ids: Vec<String> = components.iter().map(|c| component_id(c)).collect();
    let at_nat = ids
        .iter()
        .position(|id| *id == nat)
        .expect("the NAT gateway");
    let at_igw = ids
        .iter()
        .position(|id| *id == igw)
        .expect("the internet gateway");
    assert!(at_nat < at_igw, "{ids:?}");
    let source_out = |c: &str| {
        let out = &c[c.find("<outboundHeader>").unwrap()..];
        first(out, "sourceAddressSet")
            .replace("<item>", "")
            .replace("</item>", "")
    };
    assert_eq!(source_out(&components[at_nat]), nat_private);
    assert!(components[at_nat].contains(&format!("<subnet><id>{public_sub}</id>")));
    assert_eq!(source_out(&components[at_igw]), eip);
    // The same path to the internet gateway itself.
    let to_igw = r.path(&format!(
        "Source={}&Destination={igw}&Protocol=tcp&DestinationPort=443",
        inside.id
    ));
    let xml = r.analyse(&to_igw);
    assert_eq!(first(&xml, "networkPathFound"), "true", "{xml}");

    // The edge stops: the node has nowhere to send, and says so.
    nodes::deregister(r.store.as_ref(), Role::Edge, REGION, "e1").unwrap();
    r.sync();
    let xml = r.trace(&probe).unwrap();
    assert_eq!(
        trace_fate(&xml),
        ("dropped".to_string(), "nat:no_edge".to_string()),
        "{xml}"
    );
    assert_eq!(first(&xml, "natGatewayId"), nat);
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "status"), "failed", "{xml}");
    assert!(first(&xml, "statusMessage").contains("no_edge"), "{xml}");

    // No live node in the shard: the route is unserved on the host, and
    // the trace and the analysis say what the host does.
    for (id, _) in hyperplane {
        nodes::deregister(r.store.as_ref(), Role::Hyperplane, REGION, id).unwrap();
    }
    r.sync();
    let d = r.send(&inside, outside, syn(40001, 443));
    assert_eq!(d.drop_reason(), Some(DropReason::TargetUnserved), "{d:?}");
    let xml = r.trace(&probe).unwrap();
    assert_eq!(
        trace_fate(&xml),
        ("dropped".to_string(), "target_unserved".to_string())
    );
    let xml = r.analyse(&path);
    assert_eq!(first(&xml, "networkPathFound"), "false", "{xml}");
    let e = &items(&xml, "explanationSet")[0];
    assert_eq!(first(e, "explanationCode"), "BAD_STATE");
    assert!(e.contains(&format!("<natGateway><id>{nat}</id>")), "{e}");
    assert_eq!(first(e, "natGatewayId"), nat);
    assert!(
        first(&xml, "warningMessage").contains("hyperplane"),
        "{xml}"
    );
}
