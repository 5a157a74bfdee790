//! Site-to-Site VPN objects over the in-memory store, without HTTP: customer
//! gateways, VPN gateways and their attachments, VPN connections with their
//! tunnels and static routes, route propagation, the VPN quotas, and
//! DeleteVpc's dependency on an attached gateway (spec 1.7, 2.7, 10, 13).

#![allow(clippy::unwrap_used)]

mod common;

use common::{account, all, call, code, first, vpc};
use openvpc_control::account::Account;
use openvpc_control::store::{MemoryStore, Store};

fn cgw(store: &dyn Store, a: &Account, ip: &str, asn: u32) -> String {
    first(
        &call(
            store,
            a,
            &format!("Action=CreateCustomerGateway&Type=ipsec.1&IpAddress={ip}&BgpAsn={asn}"),
        )
        .unwrap(),
        "customerGatewayId",
    )
}

fn vgw(store: &dyn Store, a: &Account) -> String {
    first(
        &call(store, a, "Action=CreateVpnGateway&Type=ipsec.1").unwrap(),
        "vpnGatewayId",
    )
}

fn vpn(
    store: &dyn Store,
    a: &Account,
    cgw: &str,
    vgw: &str,
    extra: &str,
) -> Result<String, String> {
    call(
        store,
        a,
        &format!(
            "Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId={cgw}&VpnGatewayId={vgw}{extra}"
        ),
    )
    .map_err(|e| e.code.into_owned())
}

/// Two edges of the region report on every tunnel of `conn` as an edge
/// does (issue 19), IPsec up or down per tunnel; only the edge serving a
/// tunnel is believed.
fn report_tunnels(store: &dyn Store, a: &Account, conn: &str, up: &[bool]) {
    use openvpc_control::fleet::nodes::{self, Role};
    use openvpc_model::edge::VpnTunnelReport;
    use openvpc_model::node::NodeRegistration;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let xml = call(
        store,
        a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={conn}"),
    )
    .unwrap();
    let outside = all(&xml, "outsideIpAddress");
    for (edge, ip) in [("edge-a", "10.254.0.2"), ("edge-b", "10.254.0.3")] {
        let registration = NodeRegistration {
            node_id: edge.into(),
            underlay_ip: ip.parse().unwrap(),
            serving: vec![],
            target_health: vec![],
        };
        // Far in the future: the test's edges never expire.
        nodes::register(
            store,
            Role::Edge,
            "us-east-1",
            &registration,
            now_ms + 3_600_000,
        )
        .unwrap();
        let reports: Vec<VpnTunnelReport> = up
            .iter()
            .zip(&outside)
            .map(|(up, ip)| VpnTunnelReport {
                vpn_connection_id: conn.into(),
                outside_ip: ip.parse().unwrap(),
                edge_id: edge.into(),
                ipsec_up: *up,
                bgp_up: false,
                status_message: String::new(),
                routes: vec![],
                last_change_ms: now_ms,
            })
            .collect();
        openvpc_control::api::actions::vpn_connection::record_reports(
            store,
            &a.id,
            "us-east-1",
            conn,
            edge,
            &reports,
        )
        .unwrap();
    }
}

fn attach(vgw: &str, vpc: &str) -> String {
    format!("Action=AttachVpnGateway&VpnGatewayId={vgw}&VpcId={vpc}")
}

// spec 10.1: a customer gateway has a cgw- ID, type ipsec.1, its address,
// its ASN and tags; Describe filters on them.
#[test]
fn customer_gateway_create_describe_filter() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateCustomerGateway&Type=ipsec.1&PublicIp=205.251.242.54&BgpAsn=65534&DeviceName=edge&TagSpecification.1.ResourceType=customer-gateway&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=office",
    )
    .unwrap();
    let id = first(&xml, "customerGatewayId");
    assert!(id.starts_with("cgw-"));
    assert_eq!(first(&xml, "bgpAsn"), "65534");
    assert_eq!(first(&xml, "ipAddress"), "205.251.242.54");
    assert_eq!(first(&xml, "state"), "available");
    assert_eq!(first(&xml, "deviceName"), "edge");
    let other = cgw(&store, &a, "198.51.100.9", 65000);
    let by = |f: &str, v: &str| {
        all(
            &call(
                &store,
                &a,
                &format!("Action=DescribeCustomerGateways&Filter.1.Name={f}&Filter.1.Value.1={v}"),
            )
            .unwrap(),
            "customerGatewayId",
        )
    };
    assert_eq!(by("bgp-asn", "65534"), [id.as_str()]);
    assert_eq!(by("ip-address", "198.51.100.9"), [other.as_str()]);
    assert_eq!(by("tag:Name", "office"), [id.as_str()]);
    assert_eq!(by("type", "ipsec.1").len(), 2);
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeCustomerGateways&Filter.1.Name=bogus&Filter.1.Value.1=x"
        ),
        "InvalidParameterValue"
    );
}

// spec 10.1: the default ASN is 65000; BgpAsn is 1–2147483647; an extended
// ASN may not be private; the two are exclusive; Type must be ipsec.1.
#[test]
fn customer_gateway_validation() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateCustomerGateway&Type=ipsec.1&IpAddress=203.0.113.7",
    )
    .unwrap();
    assert_eq!(first(&xml, "bgpAsn"), "65000");
    let xml = call(
        &store,
        &a,
        "Action=CreateCustomerGateway&Type=ipsec.1&IpAddress=203.0.113.8&BgpAsnExtended=3000000000",
    )
    .unwrap();
    assert_eq!(first(&xml, "bgpAsnExtended"), "3000000000");
    let bad = |q: &str| code(&store, &a, &format!("Action=CreateCustomerGateway{q}"));
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=1.2.3.4&BgpAsn=0"),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=1.2.3.4&BgpAsn=2147483648"),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=1.2.3.4&BgpAsnExtended=4200000001"),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=1.2.3.4&BgpAsn=65000&BgpAsnExtended=3000000000"),
        "InvalidParameterCombination"
    );
    assert_eq!(
        bad("&Type=ipsec.2&IpAddress=1.2.3.4"),
        "InvalidParameterValue"
    );
    assert_eq!(bad("&IpAddress=1.2.3.4"), "MissingParameter");
    assert_eq!(bad("&Type=ipsec.1"), "MissingParameter");
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=not-an-ip"),
        "InvalidParameterValue"
    );
    assert_eq!(
        bad("&Type=ipsec.1&IpAddress=1.2.3.4&DryRun=true"),
        "DryRunOperation"
    );
}

// EC2 answers a create that repeats a live gateway with that gateway.
#[test]
fn customer_gateway_create_is_idempotent() {
    let store = MemoryStore::new();
    let a = account();
    let one = cgw(&store, &a, "203.0.113.1", 65001);
    assert_eq!(cgw(&store, &a, "203.0.113.1", 65001), one);
    assert_ne!(cgw(&store, &a, "203.0.113.1", 65002), one);
}

// spec 10.1: Delete leaves the gateway visible as `deleted`; unknown and
// malformed IDs are InvalidCustomerGatewayID.NotFound with EC2's message; a
// gateway in use by a live connection is kept.
#[test]
fn customer_gateway_delete() {
    let store = MemoryStore::new();
    let a = account();
    let id = cgw(&store, &a, "203.0.113.1", 65001);
    let v = vgw(&store, &a);
    let conn = first(&vpn(&store, &a, &id, &v, "").unwrap(), "vpnConnectionId");
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteCustomerGateway&CustomerGatewayId={id}")
        ),
        "IncorrectState"
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={conn}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteCustomerGateway&CustomerGatewayId={id}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeCustomerGateways&CustomerGatewayId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "state"), "deleted");
    let err = call(
        &store,
        &a,
        "Action=DeleteCustomerGateway&CustomerGatewayId=cgw-0123abcd",
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidCustomerGatewayID.NotFound");
    assert_eq!(
        err.message,
        "The customerGateway ID 'cgw-0123abcd' does not exist"
    );
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DescribeCustomerGateways&CustomerGatewayId.1=?"
        ),
        "InvalidCustomerGatewayID.NotFound"
    );
    // A deleted gateway cannot carry a new connection.
    assert_eq!(vpn(&store, &a, &id, &v, "").unwrap_err(), "IncorrectState");
}

// spec 13: 50 customer gateways per region; deleted ones do not count.
#[test]
fn customer_gateway_quota() {
    let store = MemoryStore::new();
    let a = account();
    let ids: Vec<String> = (0..50)
        .map(|i| cgw(&store, &a, "203.0.113.1", 1000 + i))
        .collect();
    assert_eq!(
        code(
            &store,
            &a,
            "Action=CreateCustomerGateway&Type=ipsec.1&IpAddress=203.0.113.1&BgpAsn=9"
        ),
        "CustomerGatewayLimitExceeded"
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteCustomerGateway&CustomerGatewayId={}", ids[0]),
    )
    .unwrap();
    cgw(&store, &a, "203.0.113.1", 9);
}

// spec 10.1: AmazonSideAsn defaults to 64512; a custom one is private.
#[test]
fn vpn_gateway_create_and_asn() {
    let store = MemoryStore::new();
    let a = account();
    let xml = call(
        &store,
        &a,
        "Action=CreateVpnGateway&Type=ipsec.1&AvailabilityZone=us-east-1a&TagSpecification.1.ResourceType=vpn-gateway&TagSpecification.1.Tag.1.Key=k&TagSpecification.1.Tag.1.Value=v",
    )
    .unwrap();
    assert!(first(&xml, "vpnGatewayId").starts_with("vgw-"));
    assert_eq!(first(&xml, "amazonSideAsn"), "64512");
    assert_eq!(first(&xml, "state"), "available");
    assert_eq!(first(&xml, "availabilityZone"), "us-east-1a");
    assert_eq!(first(&xml, "key"), "k");
    let xml = call(
        &store,
        &a,
        "Action=CreateVpnGateway&Type=ipsec.1&AmazonSideAsn=4200000000",
    )
    .unwrap();
    assert_eq!(first(&xml, "amazonSideAsn"), "4200000000");
    for bad in ["65000000", "7224", "65535", "x"] {
        assert_eq!(
            code(
                &store,
                &a,
                &format!("Action=CreateVpnGateway&Type=ipsec.1&AmazonSideAsn={bad}")
            ),
            "InvalidParameterValue",
            "{bad}"
        );
    }
    assert_eq!(
        code(&store, &a, "Action=CreateVpnGateway"),
        "MissingParameter"
    );
}

// spec 10.1: attach shows `attached`, detach shows `detached`; one gateway
// per VPC and one VPC per gateway; detaching what is not attached is
// InvalidVpnGatewayAttachment.NotFound; Describe filters on attachments.
#[test]
fn vpn_gateway_attach_detach() {
    let store = MemoryStore::new();
    let a = account();
    let v = vgw(&store, &a);
    let v2 = vgw(&store, &a);
    let net = vpc(&store, &a);
    let xml = call(&store, &a, &attach(&v, &net)).unwrap();
    assert_eq!(first(&xml, "state"), "attached");
    assert_eq!(first(&xml, "vpcId"), net);
    assert_eq!(
        code(&store, &a, &attach(&v2, &net)),
        "VpnGatewayAttachmentLimitExceeded"
    );
    let other = common::vpc_with(&store, &a, "10.1.0.0/16");
    assert_eq!(
        code(&store, &a, &attach(&v, &other)),
        "VpnGatewayAttachmentLimitExceeded"
    );
    let by = |f: &str, val: &str| {
        all(
            &call(
                &store,
                &a,
                &format!("Action=DescribeVpnGateways&Filter.1.Name={f}&Filter.1.Value.1={val}"),
            )
            .unwrap(),
            "vpnGatewayId",
        )
    };
    assert_eq!(by("attachment.vpc-id", &net), [v.as_str()]);
    assert_eq!(by("attachment.state", "attached"), [v.as_str()]);
    assert!(by("attachment.state", "detached").is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DetachVpnGateway&VpnGatewayId={v}&VpcId={other}")
        ),
        "InvalidVpnGatewayAttachment.NotFound"
    );
    call(
        &store,
        &a,
        &format!("Action=DetachVpnGateway&VpnGatewayId={v}&VpcId={net}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnGateways&VpnGatewayId.1={v}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "state"), ["available", "detached"]);
    assert_eq!(by("attachment.state", "detached"), [v.as_str()]);
    // Now the other gateway may take the VPC.
    call(&store, &a, &attach(&v2, &net)).unwrap();
}

// EC2 answers unknown and malformed VPN gateway IDs with NotFound and its message.
#[test]
fn vpn_gateway_unknown_ids() {
    let store = MemoryStore::new();
    let a = account();
    let net = vpc(&store, &a);
    for q in [
        attach("?", &net),
        format!("Action=DetachVpnGateway&VpnGatewayId=?&VpcId={net}"),
        "Action=DeleteVpnGateway&VpnGatewayId=?".into(),
        "Action=DescribeVpnGateways&VpnGatewayId.1=vgw-0123abcd".into(),
    ] {
        let err = call(&store, &a, &q).unwrap_err();
        assert_eq!(err.code, "InvalidVpnGatewayID.NotFound", "{q}");
    }
    let err = call(&store, &a, "Action=DeleteVpnGateway&VpnGatewayId=?").unwrap_err();
    assert_eq!(
        err.message,
        "The virtual private gateway ID '?' does not exist"
    );
    let v = vgw(&store, &a);
    assert_eq!(
        code(&store, &a, &attach(&v, "vpc-0123abcd")),
        "InvalidVpcID.NotFound"
    );
}

// spec 10.1, 1.7: an attached gateway cannot be deleted and keeps its VPC;
// a deleted gateway shows `deleted`.
#[test]
fn vpn_gateway_delete_and_vpc_dependency() {
    let store = MemoryStore::new();
    let a = account();
    let v = vgw(&store, &a);
    let net = vpc(&store, &a);
    call(&store, &a, &attach(&v, &net)).unwrap();
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=DeleteVpnGateway&VpnGatewayId={v}")
        ),
        "IncorrectState"
    );
    assert_eq!(
        code(&store, &a, &format!("Action=DeleteVpc&VpcId={net}")),
        "DependencyViolation"
    );
    call(
        &store,
        &a,
        &format!("Action=DetachVpnGateway&VpnGatewayId={v}&VpcId={net}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnGateway&VpnGatewayId={v}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnGateways&VpnGatewayId.1={v}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "state"), "deleted");
    call(&store, &a, &format!("Action=DeleteVpc&VpcId={net}")).unwrap();
    // A deleted gateway cannot be attached again.
    let net = vpc(&store, &a);
    assert_eq!(code(&store, &a, &attach(&v, &net)), "IncorrectState");
}

// spec 13: 5 VPN gateways per region.
#[test]
fn vpn_gateway_quota() {
    let store = MemoryStore::new();
    let a = account();
    for _ in 0..5 {
        vgw(&store, &a);
    }
    assert_eq!(
        code(&store, &a, "Action=CreateVpnGateway&Type=ipsec.1"),
        "VpnGatewayLimitExceeded"
    );
}

// spec 10.1, 10.2: a connection has two tunnels with their own outside
// addresses (in vgwTelemetry too), /30 inside CIDRs from 169.254.0.0/16
// outside the reserved blocks, and valid 32-character keys; the device
// configuration carries them.
#[test]
fn vpn_connection_generated_tunnels() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    let xml = vpn(&store, &a, &c, &v, "&Options.StaticRoutesOnly=true").unwrap();
    let id = first(&xml, "vpnConnectionId");
    assert!(id.starts_with("vpn-"));
    // Issue 19: pending until an edge serves a tunnel; no edge runs here.
    assert_eq!(first(&xml, "state"), "pending");
    assert_eq!(all(&xml, "status"), ["DOWN", "DOWN"]);
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={id}"),
    )
    .unwrap();
    assert_eq!(
        all(&described, "statusMessage"),
        [
            "no edge node serves this tunnel",
            "no edge node serves this tunnel"
        ]
    );
    // The serving edge's first report makes it available; UP follows it.
    report_tunnels(&store, &a, &id, &[true, false]);
    let described = call(
        &store,
        &a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&described, "state"), "available");
    assert_eq!(all(&described, "status"), ["UP", "DOWN"]);
    assert_eq!(first(&xml, "customerGatewayId"), c);
    assert_eq!(first(&xml, "vpnGatewayId"), v);
    assert_eq!(first(&xml, "staticRoutesOnly"), "true");
    let outside = all(&xml, "outsideIpAddress");
    assert_eq!(
        outside.len(),
        4,
        "two in tunnelOptionSet, two in vgwTelemetry"
    );
    assert_ne!(outside[0], outside[1]);
    let inside = all(&xml, "tunnelInsideCidr");
    assert_eq!(inside.len(), 2);
    assert_ne!(inside[0], inside[1]);
    for cidr in &inside {
        assert!(
            cidr.starts_with("169.254.") && cidr.ends_with("/30"),
            "{cidr}"
        );
        let third: u32 = cidr.split('.').nth(2).unwrap().parse().unwrap();
        let fourth = cidr.split('.').nth(3).unwrap();
        assert!(!(third <= 5 && fourth == "0/30"), "{cidr} is reserved");
    }
    for psk in all(&xml, "preSharedKey") {
        assert_eq!(psk.len(), 32);
        assert!(!psk.starts_with('0'));
        assert!(psk.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
    let config = first(&xml, "customerGatewayConfiguration");
    assert!(config.contains(&outside[0]) && config.contains("pre_shared_key"));
}

// spec 10.2: given inside CIDRs and keys are used when valid and refused
// otherwise; inside CIDRs are unique per gateway.
#[test]
fn vpn_connection_tunnel_options() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    let opts = "&Options.TunnelOptions.1.TunnelInsideCidr=169.254.10.0%2F30&Options.TunnelOptions.1.PreSharedKey=abc.def_123&Options.TunnelOptions.2.TunnelInsideCidr=169.254.10.4%2F30";
    let xml = vpn(&store, &a, &c, &v, opts).unwrap();
    assert_eq!(
        all(&xml, "tunnelInsideCidr"),
        ["169.254.10.0/30", "169.254.10.4/30"]
    );
    assert_eq!(first(&xml, "preSharedKey"), "abc.def_123");
    let one =
        |o: &str| vpn(&store, &a, &c, &v, &format!("&Options.TunnelOptions.1.{o}")).unwrap_err();
    assert_eq!(
        one("TunnelInsideCidr=169.254.10.0%2F30"),
        "InvalidParameterValue"
    );
    assert_eq!(
        one("TunnelInsideCidr=169.254.3.0%2F30"),
        "InvalidParameterValue"
    );
    assert_eq!(
        one("TunnelInsideCidr=169.254.169.252%2F30"),
        "InvalidParameterValue"
    );
    assert_eq!(
        one("TunnelInsideCidr=169.254.20.0%2F29"),
        "InvalidParameterValue"
    );
    assert_eq!(
        one("TunnelInsideCidr=10.0.0.0%2F30"),
        "InvalidParameterValue"
    );
    assert_eq!(one("PreSharedKey=0abcdefgh"), "InvalidParameterValue");
    assert_eq!(one("PreSharedKey=abcdefg"), "InvalidParameterValue");
    assert_eq!(one("PreSharedKey=abc-defgh"), "InvalidParameterValue");
    assert_eq!(
        vpn(&store, &a, &c, &v, "&Options.TunnelOptions.1.PreSharedKey=abcdefgh&Options.TunnelOptions.2.PreSharedKey=abcdefgh&Options.TunnelOptions.3.PreSharedKey=abcdefgh").unwrap_err(),
        "InvalidParameterValue"
    );
}

// EC2's checks on the gateways a connection names, in its order.
#[test]
fn vpn_connection_gateway_errors() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let err = call(
        &store,
        &a,
        "Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId=cgw-0123abcd&VpnGatewayId=vgw-0123abcd&TransitGatewayId=gateway_id",
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidParameterValue");
    assert_eq!(
        err.message,
        "The request must not contain both parameter vpnGatewayId and transitGatewayId"
    );
    let err = call(
        &store,
        &a,
        "Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId=cgw-0123abcd&TransitGatewayId=gateway_id",
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidCustomerGatewayID.NotFound");
    let err = call(
        &store,
        &a,
        &format!("Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId={c}&TransitGatewayId=tgw-abcdefghij0123456"),
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidTransitGatewayID.NotFound");
    assert_eq!(
        err.message,
        "The transitGateway ID 'tgw-abcdefghij0123456' does not exist"
    );
    // AWS checks the VPN gateway exists (moto does not).
    assert_eq!(
        vpn(&store, &a, &c, "vgw-0123abcd", "").unwrap_err(),
        "InvalidVpnGatewayID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=CreateVpnConnection&Type=ipsec.1&CustomerGatewayId={c}")
        ),
        "MissingParameter"
    );
}

// spec 10.1: Delete leaves the connection visible as `deleted` and returns
// its tunnel addresses; unknown or malformed IDs are NotFound.
#[test]
fn vpn_connection_delete_and_describe() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    let id = first(&vpn(&store, &a, &c, &v, "").unwrap(), "vpnConnectionId");
    let id2 = first(&vpn(&store, &a, &c, &v, "").unwrap(), "vpnConnectionId");
    let by = |f: &str, val: &str| {
        all(
            &call(
                &store,
                &a,
                &format!("Action=DescribeVpnConnections&Filter.1.Name={f}&Filter.1.Value.1={val}"),
            )
            .unwrap(),
            "vpnConnectionId",
        )
    };
    assert_eq!(by("vpn-gateway-id", &v).len(), 2);
    assert_eq!(by("customer-gateway-id", &c).len(), 2);
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={id}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "state"), "deleted");
    assert_eq!(by("state", "pending"), [id2]);
    let err = call(
        &store,
        &a,
        "Action=DescribeVpnConnections&VpnConnectionId.1=?",
    )
    .unwrap_err();
    assert_eq!(err.code, "InvalidVpnConnectionID.NotFound");
    assert_eq!(err.message, "The vpnConnection ID '?' does not exist");
    assert_eq!(
        code(
            &store,
            &a,
            "Action=DeleteVpnConnection&VpnConnectionId=vpn-0123abcd"
        ),
        "InvalidVpnConnectionID.NotFound"
    );
}

// spec 10.1, 10.3: static routes are added and removed; duplicates, missing
// routes and deleted connections are refused.
#[test]
fn vpn_connection_static_routes() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    let id = first(
        &vpn(&store, &a, &c, &v, "&Options.StaticRoutesOnly=true").unwrap(),
        "vpnConnectionId",
    );
    let route = |action: &str, cidr: &str| {
        call(
            &store,
            &a,
            &format!(
                "Action={action}&VpnConnectionId={id}&DestinationCidrBlock={}",
                cidr.replace('/', "%2F")
            ),
        )
        .map_err(|e| e.code.into_owned())
    };
    route("CreateVpnConnectionRoute", "192.168.0.0/16").unwrap();
    assert_eq!(
        route("CreateVpnConnectionRoute", "192.168.0.0/16").unwrap_err(),
        "RouteAlreadyExists"
    );
    assert_eq!(
        route("CreateVpnConnectionRoute", "bogus").unwrap_err(),
        "InvalidParameterValue"
    );
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={id}"),
    )
    .unwrap();
    assert_eq!(all(&xml, "destinationCidrBlock"), ["192.168.0.0/16"]);
    assert_eq!(first(&xml, "source"), "Static");
    let filtered = call(
        &store,
        &a,
        "Action=DescribeVpnConnections&Filter.1.Name=route.destination-cidr-block&Filter.1.Value.1=192.168.0.0/16",
    )
    .unwrap();
    assert_eq!(all(&filtered, "vpnConnectionId"), [id.as_str()]);
    route("DeleteVpnConnectionRoute", "192.168.0.0/16").unwrap();
    assert_eq!(
        route("DeleteVpnConnectionRoute", "192.168.0.0/16").unwrap_err(),
        "InvalidRoute.NotFound"
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={id}"),
    )
    .unwrap();
    assert_eq!(
        route("CreateVpnConnectionRoute", "10.9.0.0/16").unwrap_err(),
        "IncorrectState"
    );
}

// spec 10.3, 13: 10 connections per VPN gateway (VpnConnectionLimitExceeded).
#[test]
fn vpn_connection_quota_per_gateway() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    for _ in 0..10 {
        vpn(&store, &a, &c, &v, "").unwrap();
    }
    assert_eq!(
        vpn(&store, &a, &c, &v, "").unwrap_err(),
        "VpnConnectionLimitExceeded"
    );
    // Another gateway still takes connections.
    let v2 = vgw(&store, &a);
    vpn(&store, &a, &c, &v2, "").unwrap();
}

// spec 13: 50 connections per region (VpnConnectionLimitExceeded).
#[test]
fn vpn_connection_quota_per_region() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let gateways: Vec<String> = (0..5).map(|_| vgw(&store, &a)).collect();
    for g in &gateways {
        for _ in 0..10 {
            vpn(&store, &a, &c, g, "").unwrap();
        }
    }
    // Every gateway is full too, so free one slot on one gateway: the
    // region quota is what refuses it then.
    let xml = call(
        &store,
        &a,
        &format!(
            "Action=DescribeVpnConnections&Filter.1.Name=vpn-gateway-id&Filter.1.Value.1={}",
            gateways[0]
        ),
    )
    .unwrap();
    let one = first(&xml, "vpnConnectionId");
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={one}"),
    )
    .unwrap();
    vpn(&store, &a, &c, &gateways[0], "").unwrap();
    let c2 = cgw(&store, &a, "203.0.113.6", 65000);
    assert_eq!(
        vpn(&store, &a, &c2, &gateways[0], "").unwrap_err(),
        "VpnConnectionLimitExceeded"
    );
}

// spec 2.7: propagation is recorded on the table (propagatingVgwSet) for a
// gateway attached to the table's VPC, and removed again.
#[test]
fn route_propagation() {
    let store = MemoryStore::new();
    let a = account();
    let net = vpc(&store, &a);
    let table = first(
        &call(&store, &a, &format!("Action=CreateRouteTable&VpcId={net}")).unwrap(),
        "routeTableId",
    );
    let v = vgw(&store, &a);
    let enable = format!("Action=EnableVgwRoutePropagation&RouteTableId={table}&GatewayId={v}");
    let disable = format!("Action=DisableVgwRoutePropagation&RouteTableId={table}&GatewayId={v}");
    assert_eq!(code(&store, &a, &enable), "Gateway.NotAttached");
    call(&store, &a, &attach(&v, &net)).unwrap();
    call(&store, &a, &enable).unwrap();
    call(&store, &a, &enable).unwrap();
    let shown = |store: &dyn Store| {
        let xml = call(
            store,
            &a,
            &format!("Action=DescribeRouteTables&RouteTableId.1={table}"),
        )
        .unwrap();
        let set = xml
            .split("<propagatingVgwSet>")
            .nth(1)
            .unwrap()
            .split("</propagatingVgwSet>")
            .next()
            .unwrap()
            .to_owned();
        all(&set, "gatewayId")
    };
    assert_eq!(shown(&store), [v.as_str()]);
    call(&store, &a, &disable).unwrap();
    assert!(shown(&store).is_empty());
    assert_eq!(
        code(
            &store,
            &a,
            &format!("Action=EnableVgwRoutePropagation&RouteTableId=rtb-0123abcd&GatewayId={v}")
        ),
        "InvalidRouteTableID.NotFound"
    );
    assert_eq!(
        code(
            &store,
            &a,
            &format!(
                "Action=EnableVgwRoutePropagation&RouteTableId={table}&GatewayId=vgw-0123abcd"
            )
        ),
        "InvalidVpnGatewayID.NotFound"
    );
}

// spec 2.5: a route may target a VGW; it goes blackhole once the gateway is deleted.
#[test]
fn routes_to_a_vgw() {
    let store = MemoryStore::new();
    let a = account();
    let net = vpc(&store, &a);
    let table = first(
        &call(&store, &a, &format!("Action=CreateRouteTable&VpcId={net}")).unwrap(),
        "routeTableId",
    );
    let v = vgw(&store, &a);
    call(&store, &a, &attach(&v, &net)).unwrap();
    call(
        &store,
        &a,
        &format!("Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=192.168.0.0%2F16&GatewayId={v}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DetachVpnGateway&VpnGatewayId={v}&VpcId={net}"),
    )
    .unwrap();
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnGateway&VpnGatewayId={v}"),
    )
    .unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeRouteTables&RouteTableId.1={table}"),
    )
    .unwrap();
    assert!(xml.contains("<state>blackhole</state>"), "{xml}");
}

// spec 12.1: VPN objects are taggable with CreateTags and found by DescribeTags.
#[test]
fn vpn_objects_take_tags() {
    let store = MemoryStore::new();
    let a = account();
    let c = cgw(&store, &a, "203.0.113.5", 65000);
    let v = vgw(&store, &a);
    let conn = first(&vpn(&store, &a, &c, &v, "").unwrap(), "vpnConnectionId");
    for id in [&c, &v, &conn] {
        call(
            &store,
            &a,
            &format!("Action=CreateTags&ResourceId.1={id}&Tag.1.Key=team&Tag.1.Value=net"),
        )
        .unwrap();
    }
    let xml = call(
        &store,
        &a,
        "Action=DescribeTags&Filter.1.Name=key&Filter.1.Value.1=team",
    )
    .unwrap();
    let mut types = all(&xml, "resourceType");
    types.sort();
    assert_eq!(types, ["customer-gateway", "vpn-connection", "vpn-gateway"]);
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnGateways&VpnGatewayId.1={v}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "value"), "net");
}

// spec 2.7, 10.3: a table propagating an attached VGW shows the static
// routes of the gateway's VPN connections with Origin
// EnableVgwRoutePropagation; a static route to the same prefix wins and is
// shown alone, one prefix from two connections is one route, and the
// routes go when propagation stops or their connections are deleted.
#[test]
fn propagated_routes_from_vpn_static_routes() {
    let store = MemoryStore::new();
    let a = account();
    let net = vpc(&store, &a);
    let table = first(
        &call(&store, &a, &format!("Action=CreateRouteTable&VpcId={net}")).unwrap(),
        "routeTableId",
    );
    let v = vgw(&store, &a);
    call(&store, &a, &attach(&v, &net)).unwrap();
    let c = cgw(&store, &a, "203.0.113.9", 65000);
    let mut conns = Vec::new();
    for _ in 0..2 {
        let xml = vpn(&store, &a, &c, &v, "&Options.StaticRoutesOnly=true").unwrap();
        conns.push(first(&xml, "vpnConnectionId"));
    }
    let vpn_route = |conn: &str, cidr: &str| {
        call(
            &store,
            &a,
            &format!(
                "Action=CreateVpnConnectionRoute&VpnConnectionId={conn}&DestinationCidrBlock={}",
                cidr.replace('/', "%2F")
            ),
        )
        .unwrap();
    };
    vpn_route(&conns[0], "192.168.0.0/16");
    vpn_route(&conns[1], "192.168.0.0/16");
    vpn_route(&conns[0], "172.16.0.0/12");
    call(
        &store,
        &a,
        &format!("Action=CreateRoute&RouteTableId={table}&DestinationCidrBlock=172.16.0.0%2F12&GatewayId={v}"),
    )
    .unwrap();
    // (destination, gateway, origin, state) of each route of the table.
    let routes = || -> Vec<(String, String, String, String)> {
        let xml = call(
            &store,
            &a,
            &format!("Action=DescribeRouteTables&RouteTableId.1={table}"),
        )
        .unwrap();
        let set = xml
            .split("<routeSet>")
            .nth(1)
            .unwrap()
            .split("</routeSet>")
            .next()
            .unwrap()
            .to_owned();
        set.split("<item>")
            .skip(1)
            .map(|r| {
                (
                    first(r, "destinationCidrBlock"),
                    first(r, "gatewayId"),
                    first(r, "origin"),
                    first(r, "state"),
                )
            })
            .collect()
    };
    let propagated = |routes: &[(String, String, String, String)]| -> Vec<String> {
        routes
            .iter()
            .filter(|r| r.2 == "EnableVgwRoutePropagation")
            .map(|r| r.0.clone())
            .collect()
    };
    // Not propagating yet.
    assert!(propagated(&routes()).is_empty());
    let enable = format!("Action=EnableVgwRoutePropagation&RouteTableId={table}&GatewayId={v}");
    call(&store, &a, &enable).unwrap();
    // Issue 19: nothing while no tunnel is up: the routes would be lies.
    assert!(propagated(&routes()).is_empty());
    report_tunnels(&store, &a, &conns[0], &[false, true]);
    report_tunnels(&store, &a, &conns[1], &[true, true]);
    let shown = routes();
    assert_eq!(propagated(&shown), ["172.16.0.0/12", "192.168.0.0/16"]);
    let route = shown.iter().find(|r| r.0 == "192.168.0.0/16").unwrap();
    assert_eq!((route.1.as_str(), route.3.as_str()), (v.as_str(), "active"));
    // spec 2.4 and issue 19: a static route for a propagated prefix is
    // shown beside it (the static one wins; the hosts get only that).
    let both: Vec<&str> = shown
        .iter()
        .filter(|r| r.0 == "172.16.0.0/12")
        .map(|r| r.2.as_str())
        .collect();
    assert_eq!(both, ["CreateRoute", "EnableVgwRoutePropagation"]);
    // The origin filter sees them.
    let xml = call(
        &store,
        &a,
        "Action=DescribeRouteTables&Filter.1.Name=route.origin&Filter.1.Value.1=EnableVgwRoutePropagation",
    )
    .unwrap();
    assert_eq!(all(&xml, "routeTableId").first(), Some(&table));
    // A deleted connection takes its routes along; the other still has one.
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={}", conns[0]),
    )
    .unwrap();
    assert_eq!(propagated(&routes()), ["192.168.0.0/16"]);
    call(
        &store,
        &a,
        &format!("Action=DisableVgwRoutePropagation&RouteTableId={table}&GatewayId={v}"),
    )
    .unwrap();
    assert!(propagated(&routes()).is_empty());
    call(&store, &a, &enable).unwrap();
    assert_eq!(propagated(&routes()), ["192.168.0.0/16"]);
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={}", conns[1]),
    )
    .unwrap();
    assert!(propagated(&routes()).is_empty());
}

// spec 10.2: a connection's local and remote IPv4 network CIDRs default to
// 0.0.0.0/0, can be set at creation and changed with
// ModifyVpnConnectionOptions; the IPv6 ones do not apply to IPv4 tunnels.
#[test]
fn modify_vpn_connection_options() {
    let store = MemoryStore::new();
    let a = account();
    let v = vgw(&store, &a);
    let c = cgw(&store, &a, "203.0.113.10", 65000);
    let xml = vpn(&store, &a, &c, &v, "").unwrap();
    let id = first(&xml, "vpnConnectionId");
    assert_eq!(first(&xml, "localIpv4NetworkCidr"), "0.0.0.0/0");
    assert_eq!(first(&xml, "remoteIpv4NetworkCidr"), "0.0.0.0/0");
    let xml = vpn(
        &store,
        &a,
        &c,
        &v,
        "&Options.LocalIpv4NetworkCidr=192.168.0.0%2F16",
    )
    .unwrap();
    assert_eq!(first(&xml, "localIpv4NetworkCidr"), "192.168.0.0/16");

    let modify = |q: &str| format!("Action=ModifyVpnConnectionOptions&VpnConnectionId={id}{q}");
    let xml = call(
        &store,
        &a,
        &modify("&LocalIpv4NetworkCidr=172.16.0.0%2F12&RemoteIpv4NetworkCidr=10.0.0.0%2F16"),
    )
    .unwrap();
    assert_eq!(first(&xml, "vpnConnectionId"), id);
    assert_eq!(first(&xml, "localIpv4NetworkCidr"), "172.16.0.0/12");
    assert_eq!(first(&xml, "remoteIpv4NetworkCidr"), "10.0.0.0/16");
    call(&store, &a, &modify("&RemoteIpv4NetworkCidr=10.1.0.0%2F16")).unwrap();
    let xml = call(
        &store,
        &a,
        &format!("Action=DescribeVpnConnections&VpnConnectionId.1={id}"),
    )
    .unwrap();
    assert_eq!(first(&xml, "localIpv4NetworkCidr"), "172.16.0.0/12");
    assert_eq!(first(&xml, "remoteIpv4NetworkCidr"), "10.1.0.0/16");
    for (q, want) in [
        ("", "MissingParameter"),
        ("&LocalIpv4NetworkCidr=bogus", "InvalidParameterValue"),
        ("&LocalIpv6NetworkCidr=%3A%3A%2F0", "InvalidParameterValue"),
        (
            "&LocalIpv4NetworkCidr=10.0.0.0%2F8&DryRun=true",
            "DryRunOperation",
        ),
    ] {
        assert_eq!(code(&store, &a, &modify(q)), want, "{q}");
    }
    assert_eq!(
        code(
            &store,
            &a,
            "Action=ModifyVpnConnectionOptions&VpnConnectionId=vpn-0123abcd&LocalIpv4NetworkCidr=10.0.0.0%2F8"
        ),
        "InvalidVpnConnectionID.NotFound"
    );
    call(
        &store,
        &a,
        &format!("Action=DeleteVpnConnection&VpnConnectionId={id}"),
    )
    .unwrap();
    assert_eq!(
        code(&store, &a, &modify("&LocalIpv4NetworkCidr=10.0.0.0%2F8")),
        "IncorrectState"
    );
}

// spec 10.1: BGP runs between two ASNs: a dynamic connection whose
// customer gateway has the gateway's Amazon-side ASN is refused; a
// static-routes connection has no BGP and is made.
#[test]
fn a_dynamic_connection_needs_two_asns() {
    let store = MemoryStore::new();
    let a = account();
    let same = cgw(&store, &a, "203.0.113.31", 64512);
    let v = vgw(&store, &a);
    assert_eq!(
        vpn(&store, &a, &same, &v, "").unwrap_err(),
        "InvalidParameterValue"
    );
    assert!(vpn(&store, &a, &same, &v, "&Options.StaticRoutesOnly=true").is_ok());
    let other = cgw(&store, &a, "203.0.113.32", 65000);
    assert!(vpn(&store, &a, &other, &v, "").is_ok());
}
