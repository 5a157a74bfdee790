//! The control side of hosts over the in-memory store: registration and
//! placement by zone and load, the compiled state of an ENI (addresses,
//! VNI, network ACL, routes, security groups with references expanded),
//! incremental watch deltas and their resumption, the mapping service with
//! its invalidations, and the agent API's HTTP endpoints and token.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::{call, code, first, get, http, post, serve_agent_api};
use ipnet::IpNet;
use openvpc_control::account::Account;
use openvpc_control::fleet::nodes as edges;
use openvpc_control::fleet::nodes::{self, Role};
use openvpc_control::fleet::registry::{self, hosts};
use openvpc_control::fleet::shards;
use openvpc_control::fleet::{Fleet, agent_token};
use openvpc_control::store::{MemoryStore, Store};
use openvpc_model::edge::{EDGE_TTL_MS, EdgeRegistration};
use openvpc_model::host::{
    HostDelta, HostRegistration, MappingAnswer, MappingKey, RouteTargetState, TOKEN_HEADER, path,
};
use openvpc_model::rule::{RuleAction, TrafficMatch};

const REGION: &str = "us-east-1";

struct World {
    store: Arc<MemoryStore>,
    a: Account,
    vpc: String,
    /// 10.0.1.0/24 in us-east-1a.
    subnet_a: String,
    /// 10.0.2.0/24 in us-east-1b.
    subnet_b: String,
}

impl World {
    fn ok(&self, body: &str) -> String {
        call(self.store.as_ref(), &self.a, body).unwrap()
    }

    fn err(&self, body: &str) -> String {
        code(self.store.as_ref(), &self.a, body)
    }

    fn register(&self, host: &str, zone: &str, underlay: &str) {
        registry::register(
            self.store.as_ref(),
            REGION,
            &HostRegistration {
                host_id: host.into(),
                availability_zone: zone.into(),
                underlay_ip: underlay.parse().unwrap(),
            },
            1,
        )
        .unwrap();
    }

    fn subnet(&self, cidr: &str, zone: &str) -> String {
        first(
            &self.ok(&format!(
                "Action=CreateSubnet&VpcId={}&CidrBlock={}&AvailabilityZone={zone}",
                self.vpc,
                cidr.replace('/', "%2F")
            )),
            "subnetId",
        )
    }

    fn group(&self, name: &str) -> String {
        common::security_group(self.store.as_ref(), &self.a, &self.vpc, name)
    }

    /// Launches one instance; (instance ID, primary ENI ID, private IP).
    fn run(&self, subnet: &str, group: &str) -> (String, String, Ipv4Addr) {
        let xml = self.ok(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet}&SecurityGroupId.1={group}"
        ));
        (
            first(&xml, "instanceId"),
            first(&xml, "networkInterfaceId"),
            first(&xml, "privateIpAddress").parse().unwrap(),
        )
    }

    fn record(&self, segment: &str, id: &str) -> serde_json::Value {
        let key = format!("r/{}/{REGION}/{segment}/{id}", self.a.id);
        let kv = self.store.get(key.as_bytes()).unwrap().unwrap();
        serde_json::from_slice(&kv.value).unwrap()
    }

    fn host_of(&self, segment: &str, id: &str) -> Option<String> {
        self.record(segment, id)["host_id"]
            .as_str()
            .map(str::to_owned)
    }

    fn vni(&self) -> u32 {
        self.record("vpc", &self.vpc)["vni"].as_u64().unwrap() as u32
    }

    fn fleet(&self) -> Arc<Fleet> {
        Fleet::load(Arc::clone(&self.store) as Arc<dyn Store>).unwrap()
    }
}

/// A VPC with a subnet in each of us-east-1a and us-east-1b, and hosts
/// h1 (us-east-1a) and h2 (us-east-1b).
fn world() -> World {
    let w = bare_world();
    w.register("h1", "us-east-1a", "192.0.2.1");
    w.register("h2", "us-east-1b", "192.0.2.2");
    w
}

/// [`world`] without hosts.
fn bare_world() -> World {
    let store = Arc::new(MemoryStore::new());
    let a = common::account();
    let vpc = common::vpc(store.as_ref(), &a);
    let mut w = World {
        store,
        a,
        vpc,
        subnet_a: String::new(),
        subnet_b: String::new(),
    };
    w.subnet_a = w.subnet("10.0.1.0/24", "us-east-1a");
    w.subnet_b = w.subnet("10.0.2.0/24", "us-east-1b");
    w
}

fn eni_ids(delta: &HostDelta) -> Vec<String> {
    delta.upserts.iter().map(|e| e.eni_id.clone()).collect()
}

#[test]
fn instances_go_to_a_host_of_their_subnets_zone() {
    let w = world();
    let sg = w.group("web");
    let (i1, eni1, _) = w.run(&w.subnet_a, &sg);
    let (i2, eni2, _) = w.run(&w.subnet_b, &sg);
    assert_eq!(w.host_of("i", &i1).as_deref(), Some("h1"));
    assert_eq!(w.host_of("eni", &eni1).as_deref(), Some("h1"));
    assert_eq!(w.host_of("i", &i2).as_deref(), Some("h2"));
    assert_eq!(w.host_of("eni", &eni2).as_deref(), Some("h2"));
}

#[test]
fn placement_picks_the_least_loaded_host_ties_by_id() {
    let w = world();
    w.register("h0", "us-east-1a", "192.0.2.10");
    let sg = w.group("web");
    // h0 and h1 are empty: h0 wins the tie, then h1, then h0 again.
    let placed: Vec<String> = (0..3)
        .map(|_| w.host_of("i", &w.run(&w.subnet_a, &sg).0).unwrap())
        .collect();
    assert_eq!(placed, ["h0", "h1", "h0"]);
    // One launch of several counts its own instances too.
    let xml = w.ok(&format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=2&MaxCount=2&SubnetId={}&SecurityGroupId.1={sg}",
        w.subnet_a
    ));
    let hosts: Vec<String> = common::all(&xml, "instanceId")
        .iter()
        .map(|i| w.host_of("i", i).unwrap())
        .collect();
    assert_eq!(hosts, ["h1", "h0"]);
}

#[test]
fn re_registering_a_host_updates_it() {
    let w = world();
    w.register("h1", "us-east-1b", "192.0.2.99");
    let all = hosts(w.store.as_ref(), REGION).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].availability_zone, "us-east-1b");
    assert_eq!(all[0].underlay_ip.to_string(), "192.0.2.99");
}

#[test]
fn a_region_without_hosts_leaves_instances_unplaced() {
    let w = bare_world();
    let sg = w.group("web");
    let (i, eni, _) = w.run(&w.subnet_a, &sg);
    assert_eq!(w.host_of("i", &i), None);
    assert_eq!(w.host_of("eni", &eni), None);
    let fleet = w.fleet();
    assert_eq!(fleet.eni_state(&eni), None);
    // DescribeInstances shows nothing new.
    let xml = w.ok(&format!("Action=DescribeInstances&InstanceId.1={i}"));
    assert!(!xml.contains("host"), "{xml}");
}

#[test]
fn a_zone_without_hosts_has_no_capacity() {
    let w = world();
    let sg = w.group("web");
    let subnet_c = w.subnet("10.0.3.0/24", "us-east-1c");
    assert_eq!(
        w.err(&format!(
            "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&SubnetId={subnet_c}&SecurityGroupId.1={sg}"
        )),
        "InsufficientInstanceCapacity"
    );
    let e = call(
        w.store.as_ref(),
        &w.a,
        &format!("Action=RunInstances&ImageId=ami-12c6146b&SubnetId={subnet_c}"),
    )
    .unwrap_err();
    assert!(e.message.contains("--az us-east-1c"), "{}", e.message);
}

#[test]
fn an_eni_compiles_with_its_addresses_acl_and_routes() {
    let w = world();
    let sg = w.group("web");
    let igw = common::attached_igw(w.store.as_ref(), &w.a, &w.vpc);
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=0.0.0.0%2F0&GatewayId={igw}"
    ));
    let (_, eni, ip) = w.run(&w.subnet_a, &sg);
    let mac = first(
        &w.ok(&format!(
            "Action=DescribeNetworkInterfaces&NetworkInterfaceId.1={eni}"
        )),
        "macAddress",
    );
    let fleet = w.fleet();
    let s = fleet.eni_state(&eni).unwrap();
    assert_eq!(s.ipv4, vec![ip]);
    assert_eq!(s.mac, mac);
    assert_eq!(s.vni, w.vni());
    assert_eq!(s.vpc_id, w.vpc);
    assert_eq!(s.vpc_cidr.to_string(), "10.0.0.0/16");
    assert_eq!(s.subnet.subnet_id, w.subnet_a);
    assert_eq!(s.subnet.cidr.to_string(), "10.0.1.0/24");
    assert_eq!(s.device_index, 0);
    assert!(s.source_dest_check);
    assert_eq!(s.conntrack.tcp_established, 432_000);
    assert_eq!(s.account_id, w.a.id);
    let dashed = ip.to_string().replace('.', "-");
    assert_eq!(s.hostname, Some(format!("ip-{dashed}")));
    assert_eq!(s.domain_name.as_deref(), Some("ec2.internal"));
    // The default ACL: rule 100 allows everything; the `*` rule is implicit.
    let acl = &s.subnet.network_acl;
    assert_eq!(acl.ingress.len(), 1);
    assert_eq!(acl.ingress[0].rule_number, 100);
    assert_eq!(acl.ingress[0].action, RuleAction::Allow);
    assert_eq!(acl.ingress[0].traffic, TrafficMatch::ALL);
    assert_eq!(acl.egress.len(), 1);
    // The main table: local, then the internet gateway.
    let routes = &s.subnet.route_table.routes;
    assert_eq!(s.subnet.route_table.route_table_id, rtb);
    let local = routes
        .iter()
        .find(|r| r.destination.to_string() == "10.0.0.0/16")
        .unwrap();
    assert_eq!(local.target, RouteTargetState::Local);
    let default = routes
        .iter()
        .find(|r| r.destination.to_string() == "0.0.0.0/0")
        .unwrap();
    assert_eq!(
        default.target,
        RouteTargetState::Gateway {
            gateway_id: igw,
            nodes: vec![]
        }
    );
    // The group: no ingress, egress to anywhere.
    assert_eq!(s.security_groups.len(), 1);
    assert_eq!(s.security_groups[0].group_id, sg);
    assert!(s.security_groups[0].ingress.is_empty());
    assert_eq!(
        s.security_groups[0].egress[0].peers,
        vec!["0.0.0.0/0".parse::<IpNet>().unwrap()]
    );
}

#[test]
fn explicit_acl_entries_and_eni_routes_resolve() {
    let w = world();
    let sg = w.group("web");
    let (_, appliance, _) = w.run(&w.subnet_b, &sg);
    let acl = first(
        &w.ok(&format!("Action=CreateNetworkAcl&VpcId={}", w.vpc)),
        "networkAclId",
    );
    w.ok(&format!(
        "Action=CreateNetworkAclEntry&NetworkAclId={acl}&RuleNumber=200&Protocol=6&RuleAction=deny&Egress=false&CidrBlock=10.9.0.0%2F16&PortRange.From=22&PortRange.To=22"
    ));
    let assoc = first(
        &w.ok(&format!(
            "Action=DescribeNetworkAcls&Filter.1.Name=association.subnet-id&Filter.1.Value.1={}",
            w.subnet_a
        )),
        "networkAclAssociationId",
    );
    w.ok(&format!(
        "Action=ReplaceNetworkAclAssociation&AssociationId={assoc}&NetworkAclId={acl}"
    ));
    let rtb = first(
        &w.ok(&format!("Action=CreateRouteTable&VpcId={}", w.vpc)),
        "routeTableId",
    );
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=10.8.0.0%2F16&NetworkInterfaceId={appliance}"
    ));
    w.ok(&format!(
        "Action=AssociateRouteTable&RouteTableId={rtb}&SubnetId={}",
        w.subnet_a
    ));
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    let s = fleet.eni_state(&eni).unwrap();
    let acl_state = &s.subnet.network_acl;
    assert_eq!(acl_state.network_acl_id, acl);
    assert_eq!(acl_state.ingress.len(), 1);
    assert_eq!(acl_state.ingress[0].rule_number, 200);
    assert_eq!(acl_state.ingress[0].action, RuleAction::Deny);
    assert_eq!(acl_state.ingress[0].traffic, TrafficMatch::tcp(22, 22));
    assert!(acl_state.egress.is_empty());
    assert_eq!(s.subnet.route_table.route_table_id, rtb);
    let mac = fleet.eni_state(&appliance).unwrap().mac;
    let via = s
        .subnet
        .route_table
        .routes
        .iter()
        .find(|r| r.destination.to_string() == "10.8.0.0/16")
        .unwrap();
    assert_eq!(
        via.target,
        RouteTargetState::Eni {
            eni_id: appliance.clone(),
            host: Some("192.0.2.2".parse().unwrap()),
            mac
        }
    );
    // The appliance's host moves: the route follows.
    let before = fleet.revision();
    w.register("h2", "us-east-1b", "192.0.2.22");
    fleet.catch_up().unwrap();
    let s = fleet.eni_state(&eni).unwrap();
    let via = s
        .subnet
        .route_table
        .routes
        .iter()
        .find(|r| r.destination.to_string() == "10.8.0.0/16")
        .unwrap();
    assert!(
        matches!(&via.target, RouteTargetState::Eni { host: Some(h), .. } if h.to_string() == "192.0.2.22")
    );
    let delta = fleet.delta(REGION, "h1", before);
    assert_eq!(eni_ids(&delta), vec![eni]);
    // The appliance's mapping moved with its host.
    let appliance_ip = fleet.eni_state(&appliance).unwrap().ipv4[0];
    assert_eq!(
        delta.invalidations,
        vec![MappingKey {
            vni: w.vni(),
            ip: IpAddr::V4(appliance_ip)
        }]
    );
    // Registering again unchanged (an agent restart) tells nobody anything.
    let moved = fleet.revision();
    w.register("h2", "us-east-1b", "192.0.2.22");
    fleet.catch_up().unwrap();
    assert!(fleet.revision() > moved);
    let nothing = fleet.delta(REGION, "h1", moved);
    assert!(nothing.upserts.is_empty() && nothing.invalidations.is_empty());
}

/// Web and db groups, db allowing 5432 from web; an instance of each on h1
/// and an unrelated one (group "other") on h1.
struct Tiers {
    w: World,
    web: String,
    db: String,
    other: String,
    web_eni: String,
    web_ip: Ipv4Addr,
    db_eni: String,
    other_eni: String,
}

fn tiers() -> Tiers {
    let w = world();
    let web = w.group("web");
    let db = w.group("db");
    let other = w.group("other");
    w.ok(&format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={db}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&IpPermissions.1.ToPort=5432&IpPermissions.1.UserIdGroupPairs.1.GroupId={web}"
    ));
    let (_, web_eni, web_ip) = w.run(&w.subnet_a, &web);
    let (_, db_eni, _) = w.run(&w.subnet_a, &db);
    let (_, other_eni, _) = w.run(&w.subnet_a, &other);
    Tiers {
        w,
        web,
        db,
        other,
        web_eni,
        web_ip,
        db_eni,
        other_eni,
    }
}

#[test]
fn a_group_reference_expands_to_its_members_addresses() {
    let t = tiers();
    let fleet = t.w.fleet();
    let db = fleet.eni_state(&t.db_eni).unwrap();
    let rule = &db.security_groups[0].ingress[0];
    assert_eq!(rule.traffic, TrafficMatch::tcp(5432, 5432));
    assert_eq!(rule.peers, vec![IpNet::from(IpAddr::V4(t.web_ip))]);
}

#[test]
fn a_rule_change_reaches_exactly_the_enis_carrying_the_group() {
    let t = tiers();
    let fleet = t.w.fleet();
    let before = fleet.revision();
    let compiles = fleet.compiles();
    t.w.ok(&format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=80&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0%2F0",
        t.web
    ));
    fleet.catch_up().unwrap();
    let delta = fleet.delta(REGION, "h1", before);
    assert!(!delta.full);
    // Only web's ENI changed: db's rule names web's members, which did not.
    assert_eq!(eni_ids(&delta), vec![t.web_eni.clone()]);
    assert!(delta.removals.is_empty());
    assert!(delta.invalidations.is_empty());
    // Work: web's ENI only, not the region.
    assert_eq!(fleet.compiles() - compiles, 1);
    assert!(
        fleet.delta(REGION, "h2", before).upserts.is_empty(),
        "h2 runs nothing of web"
    );
    let _ = (&t.db, &t.other, &t.other_eni);
}

#[test]
fn a_new_member_reaches_the_enis_whose_groups_reference_it() {
    let t = tiers();
    let fleet = t.w.fleet();
    let before = fleet.revision();
    let compiles = fleet.compiles();
    let (_, web2, web2_ip) = t.w.run(&t.w.subnet_b, &t.web);
    fleet.catch_up().unwrap();
    // h1: db's ENI (its rule now names two addresses); not web's, not other's.
    let h1 = fleet.delta(REGION, "h1", before);
    assert_eq!(eni_ids(&h1), vec![t.db_eni.clone()]);
    let peers = &h1.upserts[0].security_groups[0].ingress[0].peers;
    assert_eq!(
        peers,
        &vec![
            IpNet::from(IpAddr::V4(t.web_ip)),
            IpNet::from(IpAddr::V4(web2_ip))
        ]
    );
    // h2: the new ENI itself.
    let h2 = fleet.delta(REGION, "h2", before);
    assert_eq!(eni_ids(&h2), vec![web2.clone()]);
    // The new address is announced to mapping caches.
    assert!(h1.invalidations.contains(&MappingKey {
        vni: t.w.vni(),
        ip: IpAddr::V4(web2_ip)
    }));
    // Work: the new ENI and db's, never other's or web's.
    assert_eq!(fleet.compiles() - compiles, 2);
}

#[test]
fn a_launch_compiles_only_its_own_eni() {
    let t = tiers();
    let fleet = t.w.fleet();
    let compiles = fleet.compiles();
    let solo = t.w.group("solo");
    // Same subnet as the others: its address book changes, their state not.
    let (_, eni, _) = t.w.run(&t.w.subnet_a, &solo);
    fleet.catch_up().unwrap();
    assert_eq!(fleet.compiles() - compiles, 1);
    assert!(fleet.eni_state(&eni).is_some());
}

#[test]
fn a_watch_from_zero_is_full_and_from_a_revision_resumes() {
    let t = tiers();
    let fleet = t.w.fleet();
    let full = fleet.delta(REGION, "h1", 0);
    assert!(full.full);
    let mut all = vec![t.web_eni.clone(), t.db_eni.clone(), t.other_eni.clone()];
    all.sort();
    assert_eq!(eni_ids(&full), all);
    assert_eq!(full.revision, t.w.store.revision().unwrap());
    // Nothing happened since: an empty delta at the same revision.
    let empty = fleet.delta(REGION, "h1", full.revision);
    assert!(!empty.full && empty.upserts.is_empty() && empty.removals.is_empty());
    assert_eq!(empty.revision, full.revision);
    // Two changes; resuming from between them sees only the second.
    t.w.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={}&SourceDestCheck.Value=false",
        t.other_eni
    ));
    fleet.catch_up().unwrap();
    let middle = fleet.revision();
    t.w.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={}&SourceDestCheck.Value=false",
        t.web_eni
    ));
    fleet.catch_up().unwrap();
    let both = fleet.delta(REGION, "h1", full.revision);
    let mut two = vec![t.other_eni.clone(), t.web_eni.clone()];
    two.sort();
    assert_eq!(eni_ids(&both), two);
    let second = fleet.delta(REGION, "h1", middle);
    assert_eq!(eni_ids(&second), vec![t.web_eni.clone()]);
    assert!(!second.upserts[0].source_dest_check);
    // A revision from before the index was built gets the full state.
    let old = fleet.delta(REGION, "h1", 1);
    assert!(old.full);
    // A fresh index (another server, or a restart) resumes the same way.
    let other = t.w.fleet();
    assert!(other.delta(REGION, "h1", middle).full);
    assert!(!other.delta(REGION, "h1", other.revision()).full);
}

#[test]
fn termination_removes_the_eni_and_invalidates_its_mapping() {
    let t = tiers();
    let fleet = t.w.fleet();
    let vni = t.w.vni();
    let key = MappingKey {
        vni,
        ip: IpAddr::V4(t.web_ip),
    };
    let unknown = MappingKey {
        vni,
        ip: "10.0.1.250".parse().unwrap(),
    };
    let other_vpc = MappingKey {
        vni: vni + 1000,
        ip: IpAddr::V4(t.web_ip),
    };
    let answers = fleet.lookup(REGION, &[key, unknown, other_vpc]);
    let record = answers[0].record.clone().unwrap();
    assert_eq!(answers[0].key, key);
    assert_eq!(record.eni_id, t.web_eni);
    assert_eq!(record.underlay_ip.to_string(), "192.0.2.1");
    assert_eq!(record.mac, fleet.eni_state(&t.web_eni).unwrap().mac);
    assert_eq!(answers[1].record, None);
    assert_eq!(answers[2].record, None);

    let before = fleet.revision();
    let instance = t.w.record("eni", &t.web_eni)["attachment"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.w.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={instance}"
    ));
    fleet.catch_up().unwrap();
    let delta = fleet.delta(REGION, "h1", before);
    assert_eq!(delta.removals, vec![t.web_eni.clone()]);
    assert!(delta.invalidations.contains(&key));
    // db's rule no longer names web's old address.
    assert_eq!(eni_ids(&delta), vec![t.db_eni.clone()]);
    assert!(
        delta.upserts[0].security_groups[0].ingress[0]
            .peers
            .is_empty()
    );
    assert_eq!(fleet.lookup(REGION, &[key])[0].record, None);
    assert!(
        !fleet
            .delta(REGION, "h1", 0)
            .upserts
            .iter()
            .any(|e| e.eni_id == t.web_eni)
    );
    // The placement marker is gone: h1 counts one fewer instance.
    assert_eq!(t.w.host_of("i", &instance).as_deref(), Some("h1"));
    let marker = format!("placements/{REGION}/h1/{instance}");
    assert!(t.w.store.get(marker.as_bytes()).unwrap().is_none());
}

#[test]
fn prefix_lists_expand_in_rules_and_routes_and_follow_their_changes() {
    let w = world();
    let sg = w.group("web");
    let list = common::prefix_list(
        w.store.as_ref(),
        &w.a,
        5,
        &["192.0.2.0/24", "198.51.100.0/24"],
    );
    w.ok(&format!(
        "Action=AuthorizeSecurityGroupIngress&GroupId={sg}&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=443&IpPermissions.1.ToPort=443&IpPermissions.1.PrefixListIds.1.PrefixListId={list}"
    ));
    let igw = common::attached_igw(w.store.as_ref(), &w.a, &w.vpc);
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationPrefixListId={list}&GatewayId={igw}"
    ));
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    let s = fleet.eni_state(&eni).unwrap();
    let net = |t: &str| t.parse::<IpNet>().unwrap();
    assert_eq!(
        s.security_groups[0].ingress[0].peers,
        vec![net("192.0.2.0/24"), net("198.51.100.0/24")]
    );
    let via_igw: Vec<String> = s
        .subnet
        .route_table
        .routes
        .iter()
        .filter(|r| matches!(r.target, RouteTargetState::Gateway { .. }))
        .map(|r| r.destination.to_string())
        .collect();
    assert_eq!(via_igw, ["192.0.2.0/24", "198.51.100.0/24"]);
    // A new version of the list reaches the ENI.
    let before = fleet.revision();
    w.ok(&format!(
        "Action=ModifyManagedPrefixList&PrefixListId={list}&CurrentVersion=1&AddEntry.1.Cidr=203.0.113.0%2F24"
    ));
    fleet.catch_up().unwrap();
    let delta = fleet.delta(REGION, "h1", before);
    assert_eq!(eni_ids(&delta), vec![eni]);
    assert_eq!(
        delta.upserts[0].security_groups[0].ingress[0].peers.len(),
        3
    );
}

#[test]
fn a_route_to_an_instance_follows_it_and_blackholes_when_it_ends() {
    let w = world();
    let sg = w.group("web");
    let (appliance, appliance_eni, _) = w.run(&w.subnet_b, &sg);
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=172.16.0.0%2F12&InstanceId={appliance}"
    ));
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    let target = |fleet: &Fleet| {
        fleet
            .eni_state(&eni)
            .unwrap()
            .subnet
            .route_table
            .routes
            .into_iter()
            .find(|r| r.destination.to_string() == "172.16.0.0/12")
            .unwrap()
            .target
    };
    assert!(
        matches!(target(&fleet), RouteTargetState::Eni { eni_id, host: Some(h), .. } if eni_id == appliance_eni && h.to_string() == "192.0.2.2")
    );
    w.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={appliance}"
    ));
    fleet.catch_up().unwrap();
    assert_eq!(target(&fleet), RouteTargetState::Blackhole);
}

#[test]
fn a_peering_route_carries_the_peer_vni_once_active() {
    let w = world();
    let sg = w.group("web");
    let peer = common::vpc_with(w.store.as_ref(), &w.a, "10.1.0.0/16");
    let peer_vni = w.record("vpc", &peer)["vni"].as_u64().unwrap() as u32;
    assert_ne!(peer_vni, w.vni());
    let pcx = first(
        &w.ok(&format!(
            "Action=CreateVpcPeeringConnection&VpcId={}&PeerVpcId={peer}",
            w.vpc
        )),
        "vpcPeeringConnectionId",
    );
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=10.1.0.0%2F16&VpcPeeringConnectionId={pcx}"
    ));
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    let target = |fleet: &Fleet| {
        fleet
            .eni_state(&eni)
            .unwrap()
            .subnet
            .route_table
            .routes
            .into_iter()
            .find(|r| r.destination.to_string() == "10.1.0.0/16")
            .unwrap()
            .target
    };
    // spec 2.5: a peering that is not active yet carries nothing.
    assert_eq!(target(&fleet), RouteTargetState::Blackhole);
    w.ok(&format!(
        "Action=AcceptVpcPeeringConnection&VpcPeeringConnectionId={pcx}"
    ));
    fleet.catch_up().unwrap();
    assert_eq!(
        target(&fleet),
        RouteTargetState::Peering {
            peering_id: pcx,
            peer_vni
        }
    );
}

#[test]
fn a_secondary_address_is_mapped_and_announced() {
    let t = tiers();
    let fleet = t.w.fleet();
    let before = fleet.revision();
    let xml = t.w.ok(&format!(
        "Action=AssignPrivateIpAddresses&NetworkInterfaceId={}&SecondaryPrivateIpAddressCount=1",
        t.other_eni
    ));
    assert!(
        xml.contains("<assignedPrivateIpAddressesSet><item>"),
        "{xml}"
    );
    fleet.catch_up().unwrap();
    let state = fleet.eni_state(&t.other_eni).unwrap();
    assert_eq!(state.ipv4.len(), 2);
    let secondary = MappingKey {
        vni: t.w.vni(),
        ip: IpAddr::V4(state.ipv4[1]),
    };
    let answer = &fleet.lookup(REGION, &[secondary])[0];
    assert_eq!(answer.record.as_ref().unwrap().eni_id, t.other_eni);
    let delta = fleet.delta(REGION, "h2", before);
    assert!(delta.upserts.is_empty(), "h2 runs none of it");
    // The region's invalidations reach every host's watch.
    assert_eq!(delta.invalidations, vec![secondary]);
}

#[test]
fn attach_puts_an_eni_on_the_instances_host_and_detach_takes_it_off() {
    let w = world();
    let sg = w.group("web");
    let (instance, _, _) = w.run(&w.subnet_a, &sg);
    let eni = first(
        &w.ok(&format!(
            "Action=CreateNetworkInterface&SubnetId={}&SecurityGroupId.1={sg}",
            w.subnet_a
        )),
        "networkInterfaceId",
    );
    let fleet = w.fleet();
    let before = fleet.revision();
    let attachment = first(
        &w.ok(&format!(
            "Action=AttachNetworkInterface&NetworkInterfaceId={eni}&InstanceId={instance}&DeviceIndex=1"
        )),
        "attachmentId",
    );
    assert_eq!(w.host_of("eni", &eni).as_deref(), Some("h1"));
    fleet.catch_up().unwrap();
    let delta = fleet.delta(REGION, "h1", before);
    assert_eq!(eni_ids(&delta), vec![eni.clone()]);
    assert_eq!(delta.upserts[0].device_index, 1);
    assert_eq!(
        delta.upserts[0].instance_id.as_deref(),
        Some(instance.as_str())
    );
    let attached = fleet.revision();
    w.ok(&format!(
        "Action=DetachNetworkInterface&AttachmentId={attachment}"
    ));
    assert_eq!(w.host_of("eni", &eni), None);
    fleet.catch_up().unwrap();
    let delta = fleet.delta(REGION, "h1", attached);
    assert_eq!(delta.removals, vec![eni.clone()]);
    assert_eq!(fleet.eni_state(&eni), None);
}

#[test]
fn a_tailer_follows_the_store() {
    let w = world();
    let fleet = w.fleet();
    let _tailer = fleet.spawn_tailer().unwrap();
    let sg = w.group("web");
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fleet.eni_state(&eni).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the tailer never caught up"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_compacted_change_log_rebuilds_the_index() {
    let t = tiers();
    let fleet = t.w.fleet();
    let before = fleet.revision();
    let instance = t.w.record("eni", &t.other_eni)["attachment"]["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.w.ok(&format!(
        "Action=TerminateInstances&InstanceId.1={instance}"
    ));
    t.w.store.compact(t.w.store.revision().unwrap()).unwrap();
    fleet.catch_up().unwrap();
    assert_eq!(fleet.revision(), t.w.store.revision().unwrap());
    assert_eq!(fleet.eni_state(&t.other_eni), None);
    // What happened in between cannot be replayed: the host gets it whole.
    let delta = fleet.delta(REGION, "h1", before);
    assert!(delta.full);
    let mut left = vec![t.web_eni.clone(), t.db_eni.clone()];
    left.sort();
    assert_eq!(eni_ids(&delta), left);
}

#[test]
fn the_token_is_made_once_per_store() {
    let store = MemoryStore::new();
    let token = agent_token(&store).unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(agent_token(&store).unwrap(), token);
    let dir = tempfile::tempdir().unwrap();
    let path = openvpc_control::fleet::token::write_token_file(dir.path(), &token).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

// ---- over HTTP ----

#[test]
fn the_agent_api_refuses_a_missing_or_wrong_token() {
    let w = world();
    let s = serve_agent_api(&w.store);
    let registration =
        r#"{"host_id":"h9","availability_zone":"us-east-1a","underlay_ip":"192.0.2.9"}"#;
    for token in [None, Some("0".repeat(64).as_str()), Some("short")] {
        let (status, body) = post(&s, path::REGISTER, token, registration);
        assert_eq!(status, 401, "{body}");
        let error: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(error["error"].is_string() && error["message"].is_string());
        assert_eq!(
            get(&s, &format!("{}?host=h1&since=0", path::WATCH), token).0,
            401
        );
        assert_eq!(post(&s, path::MAPPINGS, token, "[]").0, 401);
    }
    assert!(
        hosts(w.store.as_ref(), REGION)
            .unwrap()
            .iter()
            .all(|h| h.host_id != "h9")
    );
}

#[test]
fn the_agent_api_registers_watches_and_maps() {
    let w = world();
    let s = serve_agent_api(&w.store);
    let token = Some(s.token.as_str());
    let (status, body) = post(
        &s,
        path::REGISTER,
        token,
        r#"{"host_id":"h3","availability_zone":"us-east-1a","underlay_ip":"192.0.2.3"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let record: openvpc_model::host::HostRecord = serde_json::from_str(&body).unwrap();
    assert_eq!(record.region, REGION);
    assert_eq!(record.availability_zone, "us-east-1a");
    let (status, _) = post(
        &s,
        path::REGISTER,
        token,
        r#"{"host_id":"h4","availability_zone":"eu-west-1a","underlay_ip":"192.0.2.4"}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(post(&s, path::REGISTER, token, "not json").0, 400);

    // h1 and h3 serve us-east-1a: the first launch goes to h1.
    let sg = w.group("web");
    let (_, eni, ip) = w.run(&w.subnet_a, &sg);
    let (status, body) = get(&s, &format!("{}?host=h1&since=0", path::WATCH), token);
    assert_eq!(status, 200, "{body}");
    let full: HostDelta = serde_json::from_str(&body).unwrap();
    assert!(full.full);
    assert_eq!(eni_ids(&full), vec![eni.clone()]);

    // A watch with nothing new waits, then answers empty at the same revision.
    let started = std::time::Instant::now();
    let (_, body) = get(
        &s,
        &format!(
            "{}?host=h1&since={}&wait_ms=200",
            path::WATCH,
            full.revision
        ),
        token,
    );
    let empty: HostDelta = serde_json::from_str(&body).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    assert!(!empty.full && empty.upserts.is_empty());
    assert_eq!(empty.revision, full.revision);

    // A change while a watch waits ends the wait.
    let url = format!(
        "{}{}?host=h1&since={}&wait_ms=20000",
        s.url,
        path::WATCH,
        full.revision
    );
    let header = s.token.clone();
    let waiting = std::thread::spawn(move || {
        let mut r = http().get(url).header(TOKEN_HEADER, header).call().unwrap();
        r.body_mut().read_to_string().unwrap()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    w.ok(&format!(
        "Action=ModifyNetworkInterfaceAttribute&NetworkInterfaceId={eni}&SourceDestCheck.Value=false"
    ));
    let woke: HostDelta = serde_json::from_str(&waiting.join().unwrap()).unwrap();
    assert_eq!(eni_ids(&woke), vec![eni.clone()]);
    assert!(!woke.upserts[0].source_dest_check);

    // Mappings, in order.
    let keys = vec![
        MappingKey {
            vni: w.vni(),
            ip: IpAddr::V4(ip),
        },
        MappingKey {
            vni: w.vni(),
            ip: "10.0.1.99".parse().unwrap(),
        },
    ];
    let (status, body) = post(
        &s,
        path::MAPPINGS,
        token,
        &serde_json::to_string(&keys).unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    let answers: Vec<MappingAnswer> = serde_json::from_str(&body).unwrap();
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].key, keys[0]);
    assert_eq!(answers[0].record.as_ref().unwrap().eni_id, eni);
    assert_eq!(answers[1].record, None);
    let too_many = vec![keys[0]; 1025];
    assert_eq!(
        post(
            &s,
            path::MAPPINGS,
            token,
            &serde_json::to_string(&too_many).unwrap()
        )
        .0,
        400
    );
}

#[test]
fn two_servers_on_one_etcd_share_the_token_and_follow_each_other() {
    use openvpc_store::test_etcd::{self, TestEtcd};
    if !test_etcd::available() {
        return;
    }
    let etcd = TestEtcd::start();
    let one: Arc<dyn Store> = Arc::new(etcd.store());
    let two: Arc<dyn Store> = Arc::new(etcd.store());
    assert_eq!(
        agent_token(one.as_ref()).unwrap(),
        agent_token(two.as_ref()).unwrap()
    );
    // Server two's index follows what server one writes.
    let fleet = Fleet::load(Arc::clone(&two)).unwrap();
    let _tailer = fleet.spawn_tailer().unwrap();
    let a = common::account();
    registry::register(
        one.as_ref(),
        REGION,
        &HostRegistration {
            host_id: "h1".into(),
            availability_zone: "us-east-1a".into(),
            underlay_ip: "192.0.2.1".parse().unwrap(),
        },
        1,
    )
    .unwrap();
    let vpc = common::vpc(one.as_ref(), &a);
    let subnet = common::subnet(one.as_ref(), &a, &vpc, "10.0.1.0/24");
    let sg = common::security_group(one.as_ref(), &a, &vpc, "web");
    let eni = first(
        &call(
            one.as_ref(),
            &a,
            &format!(
                "Action=RunInstances&ImageId=ami-12c6146b&SubnetId={subnet}&SecurityGroupId.1={sg}"
            ),
        )
        .unwrap(),
        "networkInterfaceId",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while fleet.eni_state(&eni).is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "server two never saw the ENI"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let full = fleet.delta(REGION, "h1", 0);
    assert_eq!(eni_ids(&full), vec![eni]);
}

/// The route to `igw` in `eni`'s compiled table, as its host gets it.
fn internet_route(fleet: &Fleet, eni: &str) -> RouteTargetState {
    fleet
        .eni_state(eni)
        .unwrap()
        .subnet
        .route_table
        .routes
        .into_iter()
        .find(|r| r.destination.to_string() == "0.0.0.0/0")
        .unwrap()
        .target
}

fn register_edge(w: &World, id: &str, underlay: &str, now_ms: u64) {
    edges::register(
        w.store.as_ref(),
        Role::Edge,
        REGION,
        &EdgeRegistration {
            node_id: id.into(),
            underlay_ip: underlay.parse().unwrap(),
            serving: Vec::new(),
            target_health: Vec::new(),
        },
        now_ms,
    )
    .unwrap();
}

/// A VPC with an internet gateway and a default route to it; the gateway.
fn internet_world() -> (World, String) {
    let w = world();
    let igw = common::attached_igw(w.store.as_ref(), &w.a, &w.vpc);
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=0.0.0.0%2F0&GatewayId={igw}"
    ));
    (w, igw)
}

// Issue 15: hosts send internet-bound flows to the region's live edge
// nodes; a node that stops its heartbeats is dropped from every route.
#[test]
fn internet_routes_lead_to_the_live_edges_only() {
    let (w, igw) = internet_world();
    let sg = w.group("web");
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    assert_eq!(
        internet_route(&fleet, &eni),
        RouteTargetState::Gateway {
            gateway_id: igw.clone(),
            nodes: vec![]
        },
        "no edge yet: the host names the gateway unserved"
    );
    register_edge(&w, "e2", "10.254.0.3", 1_000);
    register_edge(&w, "e1", "10.254.0.2", 1_000);
    fleet.catch_up().unwrap();
    let both: Vec<IpAddr> = vec!["10.254.0.2".parse().unwrap(), "10.254.0.3".parse().unwrap()];
    assert_eq!(
        internet_route(&fleet, &eni),
        RouteTargetState::Gateway {
            gateway_id: igw.clone(),
            nodes: both
        }
    );
    // A heartbeat recompiles nothing.
    let compiles = fleet.compiles();
    register_edge(&w, "e1", "10.254.0.2", 2_000);
    register_edge(&w, "e2", "10.254.0.3", 2_000 + EDGE_TTL_MS);
    fleet.catch_up().unwrap();
    assert_eq!(fleet.compiles(), compiles);
    // e1 goes quiet.
    let removed = edges::sweep(w.store.as_ref(), 2_001 + EDGE_TTL_MS).unwrap();
    assert_eq!(removed.len(), 1);
    fleet.catch_up().unwrap();
    assert_eq!(
        internet_route(&fleet, &eni),
        RouteTargetState::Gateway {
            gateway_id: igw.clone(),
            nodes: vec!["10.254.0.3".parse().unwrap()]
        }
    );
    // spec 5.1: a detached gateway forwards nothing.
    w.ok(&format!(
        "Action=DetachInternetGateway&InternetGatewayId={igw}&VpcId={}",
        w.vpc
    ));
    fleet.catch_up().unwrap();
    assert_eq!(internet_route(&fleet, &eni), RouteTargetState::Blackhole);
}

// Issue 15: the edges learn every public address with the host, VNI,
// private address and MAC behind it, and follow Elastic IPs as they move.
#[test]
fn edges_follow_public_addresses_and_attachments() {
    let (w, igw) = internet_world();
    let sg = w.group("web");
    let (i1, eni1, ip1) = w.run(&w.subnet_a, &sg);
    let (i2, eni2, ip2) = w.run(&w.subnet_b, &sg);
    let fleet = w.fleet();
    let (delta, news) = fleet.edge_delta(REGION, 0);
    assert!(news && delta.full);
    assert!(delta.upserts.is_empty(), "no public address yet");
    assert_eq!(delta.attached_vnis, vec![w.vni()]);
    assert!(!delta.public_pool.is_empty());
    let rev = delta.revision;

    let alloc = first(&w.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    let public: Ipv4Addr = first(
        &w.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}")),
        "publicIp",
    )
    .parse()
    .unwrap();
    w.ok(&format!(
        "Action=AssociateAddress&AllocationId={alloc}&InstanceId={i1}"
    ));
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.edge_delta(REGION, rev);
    assert!(news && !delta.full);
    assert_eq!(delta.upserts.len(), 1);
    let m = &delta.upserts[0];
    assert_eq!((m.public, m.private, m.vni), (public, ip1, w.vni()));
    assert_eq!(m.host, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(m.eni_id, eni1);
    assert_eq!(
        fleet.eni_state(&eni1).unwrap().public_ipv4[0].public,
        public
    );
    let rev = delta.revision;

    // Nothing new: the watch has nothing to say.
    assert!(!fleet.edge_delta(REGION, rev).1);

    // The address moves to the other instance (on the other host).
    w.ok(&format!(
        "Action=AssociateAddress&AllocationId={alloc}&InstanceId={i2}&AllowReassociation=true"
    ));
    fleet.catch_up().unwrap();
    let (delta, _) = fleet.edge_delta(REGION, rev);
    assert_eq!(delta.upserts.len(), 1);
    let m = &delta.upserts[0];
    assert_eq!((m.public, m.private), (public, ip2));
    assert_eq!(m.host, "192.0.2.2".parse::<IpAddr>().unwrap());
    assert_eq!(m.eni_id, eni2);
    assert!(fleet.eni_state(&eni1).unwrap().public_ipv4.is_empty());
    let rev = delta.revision;

    w.ok(&format!("Action=DisassociateAddress&PublicIp={public}"));
    fleet.catch_up().unwrap();
    let (delta, _) = fleet.edge_delta(REGION, rev);
    assert_eq!(delta.removals, vec![public]);
    let rev = delta.revision;

    // Detaching the gateway is news for the edges: no VPC attached.
    w.ok(&format!(
        "Action=DetachInternetGateway&InternetGatewayId={igw}&VpcId={}",
        w.vpc
    ));
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.edge_delta(REGION, rev);
    assert!(news);
    assert!(delta.attached_vnis.is_empty());
}

// spec 5.1 / issue 15: AssociateAddress refuses a VPC without an internet
// gateway, and stores nothing.
#[test]
fn an_elastic_ip_needs_an_attached_internet_gateway() {
    let w = world();
    let sg = w.group("web");
    let (i1, eni1, _) = w.run(&w.subnet_a, &sg);
    let alloc = first(&w.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    assert_eq!(
        w.err(&format!(
            "Action=AssociateAddress&AllocationId={alloc}&InstanceId={i1}"
        )),
        "Gateway.NotAttached"
    );
    let xml = w.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}"));
    assert!(!xml.contains("associationId"), "{xml}");
    assert!(w.fleet().eni_state(&eni1).unwrap().public_ipv4.is_empty());
}

// Issue 16: a NAT gateway's routes lead to the hyperplane nodes of its
// shuffle shard; a dead node is replaced while the live one stays, and a
// deleted gateway's shard goes.
#[test]
fn nat_routes_lead_to_the_nodes_of_the_gateways_shard() {
    let w = world();
    let sg = w.group("web");
    let nat = first(
        &w.ok(&format!(
            "Action=CreateNatGateway&SubnetId={}&ConnectivityType=private",
            w.subnet_b
        )),
        "natGatewayId",
    );
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=0.0.0.0%2F0&NatGatewayId={nat}"
    ));
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let fleet = w.fleet();
    let route = |fleet: &Fleet| internet_route(fleet, &eni);
    // Issue 16: a route to a NAT gateway is active only while it is
    // available; it is pending until a node of its shard serves it.
    assert_eq!(
        route(&fleet),
        RouteTargetState::Blackhole,
        "no hyperplane node yet: pending"
    );
    let nodes = common::HYPERPLANE_NODES;
    let beat_serving = |now: u64, which: &[(&str, &str)], serving: &[String]| {
        common::beat_hyperplane(w.store.as_ref(), which, serving, &[], now);
    };
    let beat = |now: u64, which: &[(&str, &str)]| beat_serving(now, which, &[]);
    beat(1_000, &nodes);
    common::keep(&fleet);
    assert_eq!(
        route(&fleet),
        RouteTargetState::Blackhole,
        "a shard, but no node has programmed the gateway yet"
    );
    // The nodes report it programmed: the keeper makes it available.
    beat_serving(1_500, &nodes, std::slice::from_ref(&nat));
    common::keep(&fleet);
    let RouteTargetState::Gateway { nodes: served, .. } = route(&fleet) else {
        panic!("not a gateway route");
    };
    assert_eq!(served.len(), 2, "a shard of k = 2: {served:?}");
    // The shard's nodes, and only they, are told to serve the gateway, with
    // what translating for it takes.
    let nat_ip: std::net::Ipv4Addr = first(
        &w.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}")),
        "privateIp",
    )
    .parse()
    .unwrap();
    for (id, ip) in nodes {
        let (delta, news) = fleet.hyperplane_delta(REGION, id, 0);
        assert!(news);
        let serves = served.contains(&ip.parse::<IpAddr>().unwrap());
        assert_eq!(delta.assignments.len(), usize::from(serves), "{id}");
        if let Some(a) = delta.assignments.first() {
            assert_eq!(a.gateway_id, nat);
            assert_eq!(a.vni, w.vni());
            assert_eq!(a.private_ips, vec![nat_ip]);
            assert!(a.public_ips.is_empty(), "a private gateway");
            assert_eq!(
                a.connectivity,
                openvpc_model::hyperplane::NatConnectivity::Private
            );
            let members: Vec<IpAddr> = a.shard.iter().filter_map(|m| m.underlay_ip).collect();
            assert_eq!(members, served);
        }
        let rev = delta.revision;
        assert!(!fleet.hyperplane_delta(REGION, id, rev).1, "no news since");
    }

    // One node of the shard stops beating; the other stays in the shard.
    let (dead, kept) = (served[0], served[1]);
    let alive: Vec<(&str, &str)> = nodes
        .iter()
        .copied()
        .filter(|(_, ip)| ip.parse::<IpAddr>().unwrap() != dead)
        .collect();
    beat(2_000 + EDGE_TTL_MS, &alive);
    nodes::sweep(w.store.as_ref(), 2_001 + EDGE_TTL_MS).unwrap();
    common::keep(&fleet);
    let RouteTargetState::Gateway { nodes: served, .. } = route(&fleet) else {
        panic!("not a gateway route");
    };
    assert_eq!(served.len(), 2, "{served:?}");
    assert!(
        served.contains(&kept) && !served.contains(&dead),
        "{served:?}"
    );

    // Deleted, the gateway's route is a blackhole and its shard goes.
    w.ok(&format!("Action=DeleteNatGateway&NatGatewayId={nat}"));
    common::keep(&fleet);
    assert_eq!(route(&fleet), RouteTargetState::Blackhole);
    assert!(
        fleet
            .region_shards()
            .get(REGION)
            .is_none_or(|r| !r.stored.contains_key(&nat)),
        "the shard of a deleted gateway is removed"
    );
}

// Issue 16: hyperplane nodes register, beat, watch their assignments and
// leave over the agent API's token, as edges do.
#[test]
fn the_hyperplane_api_registers_watches_and_deregisters() {
    let w = world();
    let s = serve_agent_api(&w.store);
    let token = Some(s.token.as_str());
    let hp = openvpc_model::hyperplane::path::REGISTER;
    let (status, body) = post(
        &s,
        hp,
        token,
        r#"{"node_id":"hp1","underlay_ip":"10.254.1.1"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let record: openvpc_model::node::NodeRecord = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (record.node_id.as_str(), record.region.as_str()),
        ("hp1", REGION)
    );
    assert_eq!(post(&s, hp, None, "{}").0, 401, "the token is required");
    assert_eq!(
        post(
            &s,
            hp,
            token,
            r#"{"node_id":"a/b","underlay_ip":"10.0.0.1"}"#
        )
        .0,
        400
    );
    let watch = openvpc_model::hyperplane::path::WATCH;
    let (status, body) = get(&s, &format!("{watch}?node=hp1&since=0"), token);
    assert_eq!(status, 200, "{body}");
    let delta: openvpc_model::hyperplane::HyperplaneDelta = serde_json::from_str(&body).unwrap();
    assert!(delta.assignments.is_empty(), "no NAT gateway yet");
    assert_eq!(get(&s, &format!("{watch}?node=a%2Fb"), token).0, 400);
    // Edges watch the same way, as `?edge=`.
    let edge_watch = openvpc_model::edge::path::WATCH;
    let (status, body) = get(&s, &format!("{edge_watch}?edge=e1&since=0"), token);
    assert_eq!(status, 200, "{body}");
    let delta: openvpc_model::edge::EdgeDelta = serde_json::from_str(&body).unwrap();
    assert!(delta.full);
    assert_eq!(get(&s, &format!("{edge_watch}?since=0"), token).0, 400);
    assert_eq!(
        nodes::nodes(w.store.as_ref(), Role::Hyperplane, REGION)
            .unwrap()
            .len(),
        1
    );
    let (status, _) = post(
        &s,
        openvpc_model::hyperplane::path::DEREGISTER,
        token,
        r#"{"node_id":"hp1","underlay_ip":"10.254.1.1"}"#,
    );
    assert_eq!(status, 200);
    assert!(
        nodes::nodes(w.store.as_ref(), Role::Hyperplane, REGION)
            .unwrap()
            .is_empty()
    );
}

fn beat_nodes(w: &World, now: u64, which: &[(&str, &str)]) {
    common::beat_hyperplane(w.store.as_ref(), which, &[], &[], now);
}

/// The underlay address of each place of `nat`'s stored shard, by
/// `nodes`' (ID, address) (None: the node is dead).
fn places(fleet: &Fleet, nat: &str, nodes: &[(&str, &str)]) -> Vec<Option<IpAddr>> {
    let region = &fleet.region_shards()[REGION];
    region.stored[nat]
        .iter()
        .map(|id| {
            let (_, ip) = nodes.iter().find(|(n, _)| n == id)?;
            region.nodes.contains(id).then(|| ip.parse().unwrap())
        })
        .collect()
}

// Issue 16: a public NAT gateway's nodes are told where its packets leave
// (the region's live edges, while its VPC has an internet gateway) and the
// edges are told where replies to its Elastic IP go: per place of its
// shard, the node serving that port slice (a dead node's buddy), from the
// moment it is pending until it is deleted.
#[test]
fn a_public_nat_gateway_reaches_the_edges_and_its_replies_its_nodes() {
    let (w, igw) = internet_world();
    register_edge(&w, "e2", "10.254.0.3", 1_000);
    register_edge(&w, "e1", "10.254.0.2", 1_000);
    let alloc = first(&w.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    let xml = w.ok(&format!(
        "Action=CreateNatGateway&SubnetId={}&AllocationId={alloc}",
        w.subnet_b
    ));
    let nat = first(&xml, "natGatewayId");
    let described = w.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}"));
    let eip: Ipv4Addr = first(&described, "publicIp").parse().unwrap();
    let private: Ipv4Addr = first(&described, "privateIp").parse().unwrap();
    let nat_eni = first(&described, "networkInterfaceId");
    let nodes = [
        ("hp1", "10.254.1.1"),
        ("hp2", "10.254.1.2"),
        ("hp3", "10.254.1.3"),
    ];
    beat_nodes(&w, 1_000, &nodes);
    let fleet = w.fleet();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    let shard = fleet.region_shards()[REGION].stored[&nat].clone();
    assert_eq!(shard.len(), 2);
    let edges: Vec<IpAddr> = vec!["10.254.0.2".parse().unwrap(), "10.254.0.3".parse().unwrap()];

    // The nodes: their assignment names the edges.
    let (delta, _) = fleet.hyperplane_delta(REGION, &shard[0], 0);
    let a = &delta.assignments[0];
    assert_eq!(a.gateway_id, nat);
    assert_eq!(a.public_ips, vec![eip]);
    assert_eq!(a.edges, edges);
    assert!(
        a.routes.is_empty(),
        "a public gateway's packets leave by the edges"
    );
    let node_rev = delta.revision;

    // The edges: the Elastic IP, to the gateway's private address, its MAC
    // and ENI, replies by place.
    let (delta, _) = fleet.edge_delta(REGION, 0);
    let m = delta.upserts.iter().find(|m| m.public == eip).unwrap();
    let live: Vec<IpAddr> = places(&fleet, &nat, &nodes).into_iter().flatten().collect();
    assert_eq!(live.len(), 2);
    assert_eq!((m.private, m.vni), (private, w.vni()));
    assert_eq!(m.nat_nodes, live);
    assert_eq!(m.host, live[0]);
    assert_eq!(m.eni_id, nat_eni);
    assert_eq!(
        m.mac,
        openvpc_dataplane::route::gateway_mac(&nat).to_string()
    );
    let rev = delta.revision;

    // The node of place 0 dies: until the keeper replaces it, its buddy
    // (place 1) serves its slice; the nodes hear that it is dead.
    let dead = shard[0].clone();
    let alive: Vec<(&str, &str)> = nodes
        .iter()
        .copied()
        .filter(|(id, _)| *id != dead)
        .collect();
    beat_nodes(&w, 2_000 + EDGE_TTL_MS, &alive);
    register_edge(&w, "e1", "10.254.0.2", 2_000 + EDGE_TTL_MS);
    nodes::sweep(w.store.as_ref(), 2_001 + EDGE_TTL_MS).unwrap();
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.edge_delta(REGION, rev);
    assert!(news);
    let m = delta.upserts.iter().find(|m| m.public == eip).unwrap();
    assert_eq!(m.nat_nodes, vec![live[1], live[1]]);
    assert_eq!(m.host, live[1]);
    let rev = delta.revision;
    let (delta, news) = fleet.hyperplane_delta(REGION, &shard[1], node_rev);
    assert!(news, "a shard's node died, an edge left");
    let a = &delta.assignments[0];
    assert_eq!(a.shard[0].node_id, dead);
    assert_eq!(a.shard[0].underlay_ip, None);
    assert_eq!(a.edges, vec![edges[0]], "e2 stopped beating");
    let node_rev = delta.revision;

    // The keeper puts a live node in the dead one's place; the survivor
    // keeps its own (its port slice).
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    let repaired = fleet.region_shards()[REGION].stored[&nat].clone();
    assert_eq!(repaired[1], shard[1]);
    assert_ne!(repaired[0], dead);
    let (delta, _) = fleet.edge_delta(REGION, rev);
    let m = delta.upserts.iter().find(|m| m.public == eip).unwrap();
    let now: Vec<IpAddr> = places(&fleet, &nat, &nodes).into_iter().flatten().collect();
    assert_eq!(m.nat_nodes, now);
    assert_eq!(m.nat_nodes[1], live[1]);
    let rev = delta.revision;
    assert!(fleet.hyperplane_delta(REGION, &repaired[0], node_rev).1);
    let (delta, _) = fleet.hyperplane_delta(REGION, &repaired[1], node_rev);
    let node_rev = delta.revision;

    // The VPC loses its internet gateway (written as a detach would):
    // news for the nodes, and nowhere to send.
    let key = format!("r/{}/{REGION}/igw/{igw}", w.a.id);
    let mut record = w.record("igw", &igw);
    record["vpc_id"] = serde_json::Value::Null;
    w.store
        .put(key.as_bytes(), &serde_json::to_vec(&record).unwrap())
        .unwrap();
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.hyperplane_delta(REGION, &repaired[1], node_rev);
    assert!(news);
    assert!(delta.assignments[0].edges.is_empty());

    // Deleted, its Elastic IP leaves the edges.
    w.ok(&format!("Action=DeleteNatGateway&NatGatewayId={nat}"));
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.edge_delta(REGION, rev);
    assert!(news);
    assert_eq!(delta.removals, vec![eip]);
    assert!(fleet.edge_delta(REGION, 0).0.upserts.is_empty());
}

/// A private NAT gateway in subnet B, served by node `hp1` alone.
fn private_nat_on_hp1(w: &World) -> (String, Arc<Fleet>) {
    let nat = first(
        &w.ok(&format!(
            "Action=CreateNatGateway&SubnetId={}&ConnectivityType=private",
            w.subnet_b
        )),
        "natGatewayId",
    );
    beat_nodes(w, 1_000, &[("hp1", "10.254.1.1")]);
    let fleet = w.fleet();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    (nat, fleet)
}

// Issue 16: a private NAT gateway sends nothing to the edges, and its
// addresses are no edge's business.
#[test]
fn a_private_nat_gateway_has_no_edges() {
    let (w, _) = internet_world();
    register_edge(&w, "e1", "10.254.0.2", 1_000);
    let (nat, fleet) = private_nat_on_hp1(&w);
    let (delta, _) = fleet.hyperplane_delta(REGION, "hp1", 0);
    assert_eq!(delta.assignments[0].gateway_id, nat);
    assert!(delta.assignments[0].edges.is_empty());
    assert!(fleet.edge_delta(REGION, 0).0.upserts.is_empty());
}

// Issue 16: a private NAT gateway translates to its private address and
// forwards by its subnet's route table: its nodes are told the routes that
// stay on the underlay (`local`, active peerings, each with the VNI the
// packet continues in), never an internet gateway's or a blackhole, and are
// told again when a peering changes.
#[test]
fn a_private_nat_gateway_routes_to_its_vpc_and_active_peers() {
    let (w, _) = internet_world();
    let peer = common::vpc_with(w.store.as_ref(), &w.a, "10.1.0.0/16");
    let later = common::vpc_with(w.store.as_ref(), &w.a, "10.2.0.0/16");
    let vni_of = |vpc: &str| w.record("vpc", vpc)["vni"].as_u64().unwrap() as u32;
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    let peering = |to: &str, cidr: &str| {
        let pcx = first(
            &w.ok(&format!(
                "Action=CreateVpcPeeringConnection&VpcId={}&PeerVpcId={to}",
                w.vpc
            )),
            "vpcPeeringConnectionId",
        );
        w.ok(&format!(
            "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock={}&VpcPeeringConnectionId={pcx}",
            cidr.replace('/', "%2F")
        ));
        pcx
    };
    let active = peering(&peer, "10.1.0.0/16");
    w.ok(&format!(
        "Action=AcceptVpcPeeringConnection&VpcPeeringConnectionId={active}"
    ));
    // Not accepted yet: spec 2.5, a blackhole.
    let pending = peering(&later, "10.2.0.0/16");
    let nat = first(
        &w.ok(&format!(
            "Action=CreateNatGateway&SubnetId={}&ConnectivityType=private",
            w.subnet_b
        )),
        "natGatewayId",
    );
    beat_nodes(&w, 1_000, &[("hp1", "10.254.1.1"), ("hp2", "10.254.1.2")]);
    let fleet = w.fleet();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    let shard = fleet.region_shards()[REGION].stored[&nat].clone();
    let routes = |since| {
        let (delta, news) = fleet.hyperplane_delta(REGION, &shard[0], since);
        let mut routes: Vec<(String, u32)> = delta.assignments[0]
            .routes
            .iter()
            .map(|r| (r.destination.to_string(), r.vni))
            .collect();
        routes.sort();
        (routes, news, delta.revision)
    };
    let (got, _, rev) = routes(0);
    assert_eq!(
        got,
        vec![
            ("10.0.0.0/16".to_owned(), w.vni()),
            ("10.1.0.0/16".to_owned(), vni_of(&peer)),
        ],
        "local and the active peering; not 0.0.0.0/0 (an internet gateway) nor the pending peering"
    );
    assert!(!routes(rev).1, "no news since");

    // The second peering becomes active: the nodes are told again.
    w.ok(&format!(
        "Action=AcceptVpcPeeringConnection&VpcPeeringConnectionId={pending}"
    ));
    fleet.catch_up().unwrap();
    let (got, news, rev) = routes(rev);
    assert!(news, "a peering of its table changed");
    assert!(got.contains(&("10.2.0.0/16".to_owned(), vni_of(&later))));

    // Its route goes: told again, and the route with it.
    w.ok(&format!(
        "Action=DeleteRoute&RouteTableId={rtb}&DestinationCidrBlock=10.1.0.0%2F16"
    ));
    fleet.catch_up().unwrap();
    let (got, news, _) = routes(rev);
    assert!(news, "its route table changed");
    assert!(!got.iter().any(|(d, _)| d == "10.1.0.0/16"), "{got:?}");
}

// Issue 16: replies to a private NAT gateway come back to its private
// address: the mapping service names the first live node of its shard (in
// place order, so a dead node's buddy) with the gateway's ENI and MAC, and
// tells watching hosts when that answer changes.
#[test]
fn the_mapping_service_answers_a_private_nat_gateways_address_with_its_nodes() {
    let w = world();
    let nat = first(
        &w.ok(&format!(
            "Action=CreateNatGateway&SubnetId={}&ConnectivityType=private",
            w.subnet_b
        )),
        "natGatewayId",
    );
    let described = w.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}"));
    let private: Ipv4Addr = first(&described, "privateIp").parse().unwrap();
    let nat_eni = first(&described, "networkInterfaceId");
    let key = MappingKey {
        vni: w.vni(),
        ip: IpAddr::V4(private),
    };
    let other_vpc = MappingKey {
        vni: w.vni() + 1000,
        ip: IpAddr::V4(private),
    };
    let fleet = w.fleet();
    let answer = |fleet: &Fleet| fleet.lookup(REGION, &[key])[0].record.clone();
    assert_eq!(answer(&fleet), None, "no shard yet: nothing serves it");

    let nodes = [
        ("hp1", "10.254.1.1"),
        ("hp2", "10.254.1.2"),
        ("hp3", "10.254.1.3"),
    ];
    beat_nodes(&w, 1_000, &nodes);
    fleet.catch_up().unwrap();
    let before = fleet.revision();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    assert!(
        fleet
            .delta(REGION, "h1", before)
            .invalidations
            .contains(&key),
        "its shard was made"
    );
    let shard = fleet.region_shards()[REGION].stored[&nat].clone();
    let live: Vec<IpAddr> = places(&fleet, &nat, &nodes).into_iter().flatten().collect();
    let record = answer(&fleet).unwrap();
    assert_eq!(record.underlay_ip, live[0]);
    assert_eq!(record.eni_id, nat_eni);
    assert_eq!(
        record.mac,
        openvpc_dataplane::route::gateway_mac(&nat).to_string()
    );
    assert_eq!(fleet.lookup(REGION, &[other_vpc])[0].record, None);

    // The node of place 0 dies: its buddy answers, and hosts hear of it.
    let before = fleet.revision();
    let alive: Vec<(&str, &str)> = nodes
        .iter()
        .copied()
        .filter(|(id, _)| *id != shard[0])
        .collect();
    beat_nodes(&w, 2_000 + EDGE_TTL_MS, &alive);
    nodes::sweep(w.store.as_ref(), 2_001 + EDGE_TTL_MS).unwrap();
    fleet.catch_up().unwrap();
    assert_eq!(answer(&fleet).unwrap().underlay_ip, live[1]);
    assert!(
        fleet
            .delta(REGION, "h1", before)
            .invalidations
            .contains(&key)
    );

    // The keeper fills the dead place: its new node answers.
    let before = fleet.revision();
    shards::keep_once(&fleet).unwrap();
    fleet.catch_up().unwrap();
    let now: Vec<IpAddr> = places(&fleet, &nat, &nodes).into_iter().flatten().collect();
    assert_eq!(now.len(), 2);
    assert_ne!(now[0], live[0]);
    assert_eq!(answer(&fleet).unwrap().underlay_ip, now[0]);
    assert!(
        fleet
            .delta(REGION, "h1", before)
            .invalidations
            .contains(&key)
    );

    // Deleted, it drains: nothing answers for its address any more.
    let before = fleet.revision();
    w.ok(&format!("Action=DeleteNatGateway&NatGatewayId={nat}"));
    fleet.catch_up().unwrap();
    assert_eq!(answer(&fleet), None);
    assert!(
        fleet
            .delta(REGION, "h1", before)
            .invalidations
            .contains(&key)
    );
}

// Issue 18 / spec 1.4: every ENI carries what its VPC's resolver needs
// (the attributes, the VPC's blocks, the public addresses whose ec2- names
// it answers) and the DHCP options set's own name servers, and follows
// their changes.
#[test]
fn an_eni_carries_its_vpcs_resolver_state_and_follows_it() {
    let (w, _igw) = internet_world();
    let sg = w.group("dns");
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    let (i2, _, ip2) = w.run(&w.subnet_b, &sg);
    let fleet = w.fleet();
    let state = fleet.eni_state(&eni).unwrap();
    let dns = state.dns.unwrap();
    assert_eq!(dns.region, REGION);
    assert!(dns.enable_dns_support);
    assert!(!dns.enable_dns_hostnames, "a new VPC's default");
    assert_eq!(dns.cidrs, vec!["10.0.0.0/16".parse().unwrap()]);
    assert!(dns.addresses.is_empty(), "no public address yet");
    assert_eq!(state.dns_servers, None, "AmazonProvidedDNS");

    w.ok(&format!(
        "Action=ModifyVpcAttribute&VpcId={}&EnableDnsHostnames.Value=true",
        w.vpc
    ));
    fleet.catch_up().unwrap();
    assert!(
        fleet
            .eni_state(&eni)
            .unwrap()
            .dns
            .unwrap()
            .enable_dns_hostnames
    );

    // Another instance's Elastic IP reaches this ENI's resolver state.
    let alloc = first(&w.ok("Action=AllocateAddress&Domain=vpc"), "allocationId");
    let public: Ipv4Addr = first(
        &w.ok(&format!("Action=DescribeAddresses&AllocationId.1={alloc}")),
        "publicIp",
    )
    .parse()
    .unwrap();
    w.ok(&format!(
        "Action=AssociateAddress&AllocationId={alloc}&InstanceId={i2}"
    ));
    fleet.catch_up().unwrap();
    let dns = fleet.eni_state(&eni).unwrap().dns.unwrap();
    assert_eq!(
        dns.addresses,
        vec![openvpc_model::host::DnsAddress {
            private: ip2,
            public: Some(public)
        }]
    );

    // spec 1.4: a set's own domain-name-servers replace AmazonProvidedDNS.
    let dopt = first(
        &w.ok("Action=CreateDhcpOptions&DhcpConfiguration.1.Key=domain-name-servers&DhcpConfiguration.1.Value.1=192.0.2.53&DhcpConfiguration.1.Value.2=AmazonProvidedDNS&DhcpConfiguration.2.Key=domain-name&DhcpConfiguration.2.Value.1=corp.example"),
        "dhcpOptionsId",
    );
    w.ok(&format!(
        "Action=AssociateDhcpOptions&DhcpOptionsId={dopt}&VpcId={}",
        w.vpc
    ));
    fleet.catch_up().unwrap();
    let state = fleet.eni_state(&eni).unwrap();
    assert_eq!(
        state.dns_servers,
        Some(vec![
            Ipv4Addr::new(192, 0, 2, 53),
            Ipv4Addr::new(10, 0, 0, 2)
        ])
    );
    assert_eq!(state.domain_name.as_deref(), Some("corp.example"));

    w.ok(&format!(
        "Action=ModifyVpcAttribute&VpcId={}&EnableDnsSupport.Value=false",
        w.vpc
    ));
    fleet.catch_up().unwrap();
    assert!(
        !fleet
            .eni_state(&eni)
            .unwrap()
            .dns
            .unwrap()
            .enable_dns_support
    );
}

// Issue 18 (spec 8.2): a flow log on a NAT gateway's subnet reaches the
// gateway's nodes with its ENI's context (no instance, its primary
// address) and its subnet's routes for `traffic-path`; deleting it tells
// them again, and the gateway is no longer logged.
#[test]
fn a_flow_log_on_a_nat_gateways_subnet_reaches_its_nodes() {
    use openvpc_model::flow_log::TrafficPath;
    let (w, _) = internet_world();
    let (nat, fleet) = private_nat_on_hp1(&w);
    let (delta, _) = fleet.hyperplane_delta(REGION, "hp1", 0);
    assert_eq!(delta.assignments[0].gateway_id, nat);
    assert_eq!(delta.assignments[0].flow_log, None, "no flow log yet");
    let rev = delta.revision;

    let created = w.ok(&format!(
        "Action=CreateFlowLogs&ResourceType=Subnet&ResourceId.1={}&TrafficType=ALL\
         &LogDestinationType=s3&LogDestination=arn%3Aaws%3As3%3A%3A%3Abucket",
        w.subnet_b
    ));
    let flow_log_id = first(&created, "item");
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.hyperplane_delta(REGION, "hp1", rev);
    assert!(news, "a flow log now covers the gateway");
    let logged = delta.assignments[0].flow_log.clone().expect("logged");
    let described = w.ok(&format!("Action=DescribeNatGateways&NatGatewayId.1={nat}"));
    let eni = first(&described, "networkInterfaceId");
    let private_ip = first(&described, "privateIp");
    assert_eq!(logged.log.context.eni_id, eni);
    assert_eq!(logged.log.context.instance_id, None, "requester-managed");
    assert_eq!(logged.log.context.primary_ip.to_string(), private_ip);
    assert_eq!(logged.log.context.subnet_id, w.subnet_b);
    assert_eq!(logged.log.specs.len(), 1);
    assert_eq!(logged.log.specs[0].flow_log_id, flow_log_id);
    assert_eq!(
        logged.path_to("198.51.100.7".parse().unwrap()),
        Some(TrafficPath::InternetGateway),
        "its subnet's table sends 0.0.0.0/0 to the internet gateway"
    );
    assert_eq!(
        logged.path_to("10.0.1.9".parse().unwrap()),
        Some(TrafficPath::SameVpc)
    );

    w.ok(&format!("Action=DeleteFlowLogs&FlowLogId.1={flow_log_id}"));
    fleet.catch_up().unwrap();
    let (delta, news) = fleet.hyperplane_delta(REGION, "hp1", delta.revision);
    assert!(news, "the flow log is gone");
    assert_eq!(delta.assignments[0].flow_log, None);
}

/// The route to `destination` in `eni`'s compiled table, if any.
fn route_to(fleet: &Fleet, eni: &str, destination: &str) -> Option<RouteTargetState> {
    fleet
        .eni_state(eni)
        .unwrap()
        .subnet
        .route_table
        .routes
        .into_iter()
        .find(|r| r.destination.to_string() == destination)
        .map(|r| r.target)
}

// Issue 19, spec 2.7 and 10.3: a VPN connection's tunnels are placed on
// two edges, which the edges are told with the VPC behind them; what the
// serving edge reports learned over BGP reaches the hosts of a
// propagating table (to that edge) and the edges' gateway table; a static
// route for the same prefix wins; a session that drops takes its routes.
#[test]
fn a_vpn_gateways_learned_routes_reach_the_hosts_and_the_edges() {
    use openvpc_control::api::actions::vpn_connection::record_reports;
    use openvpc_model::edge::{LearnedRoute, VpnTunnelReport};
    let w = world();
    let sg = w.group("app");
    let (_, eni, _) = w.run(&w.subnet_a, &sg);
    register_edge(&w, "e1", "10.254.0.2", u64::MAX / 2);
    register_edge(&w, "e2", "10.254.0.3", u64::MAX / 2);
    let cgw = first(
        &w.ok("Action=CreateCustomerGateway&Type=ipsec.1&IpAddress=198.51.100.20&BgpAsn=65000"),
        "customerGatewayId",
    );
    let vgw = first(
        &w.ok("Action=CreateVpnGateway&Type=ipsec.1"),
        "vpnGatewayId",
    );
    w.ok(&format!(
        "Action=AttachVpnGateway&VpnGatewayId={vgw}&VpcId={}",
        w.vpc
    ));
    let rtb = common::main_route_table(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=EnableVgwRoutePropagation&RouteTableId={rtb}&GatewayId={vgw}"
    ));
    let xml = w.ok(&format!(
        "Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId={cgw}&VpnGatewayId={vgw}"
    ));
    let vpn = first(&xml, "vpnConnectionId");
    let fleet = w.fleet();

    let (delta, _) = fleet.edge_delta(REGION, 0);
    let tunnels = &delta.vpn_tunnels;
    assert_eq!(tunnels.len(), 2);
    assert_ne!(
        tunnels[0].edge_id, tunnels[1].edge_id,
        "one tunnel per edge"
    );
    assert_eq!(tunnels[0].vni, Some(w.vni()));
    assert_eq!(tunnels[0].vpc_cidrs, vec!["10.0.0.0/16".parse().unwrap()]);
    assert_eq!(
        (tunnels[0].amazon_asn, tunnels[0].customer_asn),
        (64512, 65000)
    );
    assert!(delta.vgw_routes.is_empty(), "no tunnel is up");
    assert_eq!(route_to(&fleet, &eni, "172.16.0.0/16"), None);

    let report = |t: usize, bgp_up: bool| {
        let tunnel = &tunnels[t];
        let r = VpnTunnelReport {
            vpn_connection_id: vpn.clone(),
            outside_ip: tunnel.outside_ip,
            edge_id: tunnel.edge_id.clone(),
            ipsec_up: true,
            bgp_up,
            status_message: String::new(),
            routes: vec![LearnedRoute {
                prefix: "172.16.0.0/16".parse().unwrap(),
                as_path_len: 1,
                med: 0,
            }],
            last_change_ms: 1,
        };
        record_reports(
            w.store.as_ref(),
            &w.a.id,
            REGION,
            &vpn,
            &tunnel.edge_id,
            &[r],
        )
        .unwrap();
        fleet.catch_up().unwrap();
    };
    report(1, true);
    assert_eq!(
        route_to(&fleet, &eni, "172.16.0.0/16"),
        Some(RouteTargetState::Gateway {
            gateway_id: vgw.clone(),
            nodes: vec![tunnels[1].edge_underlay],
        }),
        "to the edge serving the tunnel whose session learned it"
    );
    let (delta, _) = fleet.edge_delta(REGION, 0);
    assert_eq!(delta.vgw_routes.len(), 1);
    assert_eq!(delta.vgw_routes[0].outside_ip, tunnels[1].outside_ip);
    assert_eq!(delta.vgw_routes[0].vni, w.vni());
    // With both sessions up, the first tunnel is the primary egress.
    report(0, true);
    let (delta, _) = fleet.edge_delta(REGION, 0);
    assert_eq!(delta.vgw_routes.len(), 1);
    assert_eq!(delta.vgw_routes[0].outside_ip, tunnels[0].outside_ip);
    // spec 2.4: a static route for the same prefix wins.
    let igw = common::attached_igw(w.store.as_ref(), &w.a, &w.vpc);
    w.ok(&format!(
        "Action=CreateRoute&RouteTableId={rtb}&DestinationCidrBlock=172.16.0.0%2F16&GatewayId={igw}"
    ));
    fleet.catch_up().unwrap();
    assert!(matches!(
        route_to(&fleet, &eni, "172.16.0.0/16"),
        Some(RouteTargetState::Gateway { gateway_id, .. }) if gateway_id == igw
    ));
    w.ok(&format!(
        "Action=DeleteRoute&RouteTableId={rtb}&DestinationCidrBlock=172.16.0.0%2F16"
    ));
    // Both sessions drop: the route goes.
    report(0, false);
    report(1, false);
    assert_eq!(route_to(&fleet, &eni, "172.16.0.0/16"), None);
    assert!(fleet.edge_delta(REGION, 0).0.vgw_routes.is_empty());
}
