"""Site-to-Site VPN objects and VPC flow logs as real clients use them: boto3
and the aws CLI against an `openvpc server` started by tests/api_clients.rs
(spec 2.7, 8, 10, 13).

The `clean` fixture of test_vpc_api.py is shared: it deletes VPN
connections, gateways and flow logs, then the VPCs, before each test.
"""

import json
import re
import subprocess

import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401

ROLE = "arn:aws:iam::111111111111:role/flow-logs"


def aws(*args):
    out = subprocess.run(
        ["aws", "--endpoint-url", ENDPOINT, "--output", "json", "ec2", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def fails(code, call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e) == code, e.value.response
    return e.value.response


def test_vpn_gateway_lifecycle():
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # spec 10.1: AmazonSideAsn defaults to 64512.
    vgw = client.create_vpn_gateway(Type="ipsec.1")["VpnGateway"]
    assert vgw["VpnGatewayId"].startswith("vgw-")
    assert vgw["AmazonSideAsn"] == 64512
    assert vgw["State"] == "available"
    vgw_id = vgw["VpnGatewayId"]
    attachment = client.attach_vpn_gateway(VpnGatewayId=vgw_id, VpcId=vpc)["VpcAttachment"]
    assert attachment == {"VpcId": vpc, "State": "attached"}
    found = client.describe_vpn_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["VpnGateways"]
    assert [g["VpnGatewayId"] for g in found] == [vgw_id]
    # spec 1.7: an attached VGW keeps its VPC; it cannot be deleted attached.
    fails("DependencyViolation", client.delete_vpc, VpcId=vpc)
    fails("IncorrectState", client.delete_vpn_gateway, VpnGatewayId=vgw_id)
    # spec 2.7: propagation is recorded on the route table.
    table = client.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]
    client.enable_vgw_route_propagation(RouteTableId=table["RouteTableId"], GatewayId=vgw_id)
    table = client.describe_route_tables(RouteTableIds=[table["RouteTableId"]])["RouteTables"][0]
    assert table["PropagatingVgws"] == [{"GatewayId": vgw_id}]
    client.disable_vgw_route_propagation(RouteTableId=table["RouteTableId"], GatewayId=vgw_id)
    client.detach_vpn_gateway(VpnGatewayId=vgw_id, VpcId=vpc)
    fails("InvalidVpnGatewayAttachment.NotFound", client.detach_vpn_gateway, VpnGatewayId=vgw_id, VpcId=vpc)
    gateway = client.describe_vpn_gateways(VpnGatewayIds=[vgw_id])["VpnGateways"][0]
    assert gateway["VpcAttachments"] == [{"VpcId": vpc, "State": "detached"}]
    client.delete_vpn_gateway(VpnGatewayId=vgw_id)
    assert client.describe_vpn_gateways(VpnGatewayIds=[vgw_id])["VpnGateways"][0]["State"] == "deleted"


def test_vpn_connection_with_tunnels_and_routes():
    client = ec2()
    cgw = client.create_customer_gateway(Type="ipsec.1", IpAddress="203.0.113.12", BgpAsn=65010)["CustomerGateway"]
    assert cgw["BgpAsn"] == "65010" and cgw["IpAddress"] == "203.0.113.12"
    vgw = client.create_vpn_gateway(Type="ipsec.1")["VpnGateway"]["VpnGatewayId"]
    vpn = client.create_vpn_connection(
        Type="ipsec.1",
        CustomerGatewayId=cgw["CustomerGatewayId"],
        VpnGatewayId=vgw,
        Options={
            "StaticRoutesOnly": True,
            "TunnelOptions": [{"TunnelInsideCidr": "169.254.44.0/30", "PreSharedKey": "my_key.12345"}],
        },
    )["VpnConnection"]
    vpn_id = vpn["VpnConnectionId"]
    assert vpn_id.startswith("vpn-")
    # spec 10.1, 10.2: two tunnels, each with its own outside address; the
    # second tunnel's inside CIDR and key are generated.
    tunnels = vpn["Options"]["TunnelOptions"]
    assert len(tunnels) == 2
    assert tunnels[0]["TunnelInsideCidr"] == "169.254.44.0/30"
    assert tunnels[0]["PreSharedKey"] == "my_key.12345"
    assert re.fullmatch(r"169\.254\.\d+\.\d+/30", tunnels[1]["TunnelInsideCidr"])
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{31}", tunnels[1]["PreSharedKey"])
    telemetry = [t["OutsideIpAddress"] for t in vpn["VgwTelemetry"]]
    assert len(set(telemetry)) == 2
    assert "<vpn_connection" in vpn["CustomerGatewayConfiguration"]
    client.create_vpn_connection_route(VpnConnectionId=vpn_id, DestinationCidrBlock="192.168.10.0/24")
    described = client.describe_vpn_connections(VpnConnectionIds=[vpn_id])["VpnConnections"][0]
    assert described["Routes"] == [{"DestinationCidrBlock": "192.168.10.0/24", "Source": "Static", "State": "available"}]
    assert described["Options"]["StaticRoutesOnly"] is True
    client.delete_vpn_connection_route(VpnConnectionId=vpn_id, DestinationCidrBlock="192.168.10.0/24")
    # spec 10.2: a key starting with 0 is refused.
    fails(
        "InvalidParameterValue",
        client.create_vpn_connection,
        Type="ipsec.1",
        CustomerGatewayId=cgw["CustomerGatewayId"],
        VpnGatewayId=vgw,
        Options={"TunnelOptions": [{"PreSharedKey": "0abcdefgh"}]},
    )
    fails("IncorrectState", client.delete_customer_gateway, CustomerGatewayId=cgw["CustomerGatewayId"])
    client.delete_vpn_connection(VpnConnectionId=vpn_id)
    assert client.describe_vpn_connections(VpnConnectionIds=[vpn_id])["VpnConnections"][0]["State"] == "deleted"
    client.delete_customer_gateway(CustomerGatewayId=cgw["CustomerGatewayId"])
    fails("InvalidVpnConnectionID.NotFound", client.describe_vpn_connections, VpnConnectionIds=["vpn-0123abcd"])


def test_vpn_quota():
    client = ec2()
    for _ in range(5):
        client.create_vpn_gateway(Type="ipsec.1")
    # spec 13: five VGWs per region.
    fails("VpnGatewayLimitExceeded", client.create_vpn_gateway, Type="ipsec.1")


def test_vpn_aws_cli():
    cgw = aws("create-customer-gateway", "--type", "ipsec.1", "--ip-address", "198.51.100.77", "--bgp-asn", "65020")
    cgw_id = cgw["CustomerGateway"]["CustomerGatewayId"]
    vgw = aws("create-vpn-gateway", "--type", "ipsec.1", "--amazon-side-asn", "65001")["VpnGateway"]
    assert vgw["AmazonSideAsn"] == 65001
    vpn = aws(
        "create-vpn-connection",
        "--type", "ipsec.1",
        "--customer-gateway-id", cgw_id,
        "--vpn-gateway-id", vgw["VpnGatewayId"],
        "--options", "StaticRoutesOnly=true",
    )["VpnConnection"]
    listed = aws("describe-vpn-connections", "--filters", f"Name=customer-gateway-id,Values={cgw_id}")
    assert [c["VpnConnectionId"] for c in listed["VpnConnections"]] == [vpn["VpnConnectionId"]]
    cgws = aws("describe-customer-gateways", "--filters", "Name=bgp-asn,Values=65020")["CustomerGateways"]
    assert [c["CustomerGatewayId"] for c in cgws] == [cgw_id]


def test_flow_logs():
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    created = client.create_flow_logs(
        ResourceType="VPC",
        ResourceIds=[vpc, "vpc-0123abcd"],
        TrafficType="ALL",
        LogDestinationType="s3",
        LogDestination="arn:aws:s3:::flow-bucket/vpc",
        DestinationOptions={"FileFormat": "parquet", "HiveCompatiblePartitions": True, "PerHourPartition": True},
        MaxAggregationInterval=60,
        TagSpecifications=[{"ResourceType": "vpc-flow-log", "Tags": [{"Key": "Name", "Value": "fl"}]}],
    )
    # Per-resource failures come back in Unsuccessful.
    assert len(created["FlowLogIds"]) == 1
    assert created["Unsuccessful"][0]["ResourceId"] == "vpc-0123abcd"
    assert created["Unsuccessful"][0]["Error"]["Code"] == "InvalidVpcID.NotFound"
    flow = client.describe_flow_logs(FlowLogIds=created["FlowLogIds"])["FlowLogs"][0]
    assert flow["DestinationOptions"] == {"FileFormat": "parquet", "HiveCompatiblePartitions": True, "PerHourPartition": True}
    assert flow["MaxAggregationInterval"] == 60
    assert flow["Tags"] == [{"Key": "Name", "Value": "fl"}]
    # spec 8.2: the same configuration again is FlowLogAlreadyExists.
    fails(
        "FlowLogAlreadyExists",
        client.create_flow_logs,
        ResourceType="VPC",
        ResourceIds=[vpc],
        TrafficType="ALL",
        LogDestinationType="s3",
        LogDestination="arn:aws:s3:::flow-bucket/vpc",
    )
    # spec 8.1: a custom format with v3 fields; an unknown field is refused.
    custom = client.create_flow_logs(
        ResourceType="Subnet",
        ResourceIds=[subnet],
        TrafficType="REJECT",
        LogGroupName="subnet-logs",
        DeliverLogsPermissionArn=ROLE,
        LogFormat="${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}",
    )["FlowLogIds"]
    fails(
        "InvalidParameter",
        client.create_flow_logs,
        ResourceType="Subnet",
        ResourceIds=[subnet],
        TrafficType="ACCEPT",
        LogGroupName="subnet-logs",
        DeliverLogsPermissionArn=ROLE,
        LogFormat="${version} ${nonsense}",
    )
    by_group = client.describe_flow_logs(Filters=[{"Name": "log-group-name", "Values": ["subnet-logs"]}])["FlowLogs"]
    assert [f["FlowLogId"] for f in by_group] == custom
    assert by_group[0]["LogFormat"] == "${version} ${srcaddr} ${pkt-srcaddr} ${tcp-flags}"
    # The aws CLI reads the same.
    cli = aws("describe-flow-logs", "--filter", "Name=log-destination-type,Values=s3")
    assert [f["FlowLogId"] for f in cli["FlowLogs"]] == created["FlowLogIds"]
    client.delete_flow_logs(FlowLogIds=custom + created["FlowLogIds"])
    assert client.describe_flow_logs()["FlowLogs"] == []
    fails("InvalidFlowLogId.NotFound", client.delete_flow_logs, FlowLogIds=custom)
