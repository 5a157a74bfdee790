"""Route tables as real clients use them: boto3 and the aws CLI against an
`openvpc server` started by tests/api_clients.rs (spec 1.6, 2, 12).

A public and a private subnet, a custom table, routes, associations, the
main table's replacement, filters and the error codes botocore must parse.
Routes to internet gateways run once CreateInternetGateway is served.
"""

import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def aws(*args):
    out = subprocess.run(
        ["aws", "--endpoint-url", ENDPOINT, "--output", "json", "ec2", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def main_table(client, vpc_id):
    tables = client.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    assert len(tables) == 1
    return tables[0]


def test_main_table_public_and_private_subnets():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # spec 1.6: one main table with one local route.
    main = main_table(client, vpc_id)
    assert main["RouteTableId"].startswith("rtb-")
    assert main["VpcId"] == vpc_id
    assert main["Routes"] == [
        {
            "DestinationCidrBlock": "10.0.0.0/16",
            "GatewayId": "local",
            "Origin": "CreateRouteTable",
            "State": "active",
        }
    ]
    main_assoc = main["Associations"][0]
    assert main_assoc["Main"] is True
    assert main_assoc["RouteTableAssociationId"].startswith("rtbassoc-")
    assert main_assoc["AssociationState"]["State"] == "associated"

    public = client.create_subnet(VpcId=vpc_id, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
    private = client.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    table = client.create_route_table(
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "route-table", "Tags": [{"Key": "Name", "Value": "public"}]}],
    )["RouteTable"]
    rtb = table["RouteTableId"]
    assert table["Tags"] == [{"Key": "Name", "Value": "public"}]
    assert table["Associations"] == []
    assert [r["GatewayId"] for r in table["Routes"]] == ["local"]

    assoc = client.associate_route_table(RouteTableId=rtb, SubnetId=public)
    assert assoc["AssociationState"]["State"] == "associated"
    assoc_id = assoc["AssociationId"]
    # The same call again answers with the same association.
    assert client.associate_route_table(RouteTableId=rtb, SubnetId=public)["AssociationId"] == assoc_id
    # spec 2.1: the private subnet stays implicitly on the main table.
    by_subnet = client.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [public]}])
    assert [t["RouteTableId"] for t in by_subnet["RouteTables"]] == [rtb]
    assert client.describe_route_tables(Filters=[{"Name": "association.subnet-id", "Values": [private]}])["RouteTables"] == []
    described = client.describe_route_tables(RouteTableIds=[rtb])["RouteTables"][0]
    assert described["Associations"] == [
        {
            "Main": False,
            "RouteTableAssociationId": assoc_id,
            "RouteTableId": rtb,
            "SubnetId": public,
            "AssociationState": {"State": "associated"},
        }
    ]
    # spec 2.9: associated tables, the main table, and VPCs with tables stay.
    for call in (
        lambda: client.delete_route_table(RouteTableId=rtb),
        lambda: client.delete_route_table(RouteTableId=main["RouteTableId"]),
        lambda: client.delete_vpc(VpcId=vpc_id),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "DependencyViolation"
    # spec 2.1: a subnet is on one table at a time.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.associate_route_table(RouteTableId=main["RouteTableId"], SubnetId=public)
    assert error_code(e) == "Resource.AlreadyAssociated"

    # spec 2.1: disassociating returns the subnet to the main table.
    client.disassociate_route_table(AssociationId=assoc_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.disassociate_route_table(AssociationId=assoc_id)
    assert error_code(e) == "InvalidAssociationID.NotFound"
    client.delete_route_table(RouteTableId=rtb)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_route_tables(RouteTableIds=[rtb])
    assert error_code(e) == "InvalidRouteTableID.NotFound"


def test_replacing_the_main_table():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    old = main_table(client, vpc_id)
    new = client.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    main_assoc = old["Associations"][0]["RouteTableAssociationId"]
    # spec 2.1: the main association moves, it is never just dropped.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.disassociate_route_table(AssociationId=main_assoc)
    assert error_code(e) == "InvalidParameterValue"
    replaced = client.replace_route_table_association(AssociationId=main_assoc, RouteTableId=new)
    assert replaced["AssociationState"]["State"] == "associated"
    now = main_table(client, vpc_id)
    assert now["RouteTableId"] == new
    assert now["Associations"][0]["RouteTableAssociationId"] == replaced["NewAssociationId"]
    assert client.describe_route_tables(RouteTableIds=[old["RouteTableId"]])["RouteTables"][0]["Associations"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.replace_route_table_association(AssociationId="rtbassoc-1234abcd", RouteTableId=new)
    assert error_code(e) == "InvalidAssociationID.NotFound"


def test_route_errors():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    rtb = main_table(client, vpc_id)["RouteTableId"]
    cases = [
        (dict(DestinationCidrBlock="0.0.0.0/0", GatewayId="igw-0123456789abcdef0"), "InvalidGatewayID.NotFound"),
        (dict(DestinationCidrBlock="0.0.0.0/0", NatGatewayId="nat-0123456789abcdef0"), "InvalidNatGatewayID.NotFound"),
        (
            dict(DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId="eni-0123456789abcdef0"),
            "InvalidNetworkInterfaceID.NotFound",
        ),
        (
            dict(DestinationCidrBlock="10.9.0.0/16", VpcPeeringConnectionId="pcx-0123456789abcdef0"),
            "InvalidVpcPeeringConnectionID.NotFound",
        ),
        (dict(DestinationCidrBlock="1000.1.0.0/20", GatewayId="local"), "InvalidParameterValue"),
        # spec 2.3: reserved destinations.
        (dict(DestinationCidrBlock="169.254.169.0/24", GatewayId="local"), "InvalidParameterValue"),
    ]
    for kwargs, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.create_route(RouteTableId=rtb, **kwargs)
        assert error_code(e) == code, kwargs
    # spec 2.2: the local route cannot be deleted; spec 2.9: missing routes.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_route(RouteTableId=rtb, DestinationCidrBlock="10.2.0.0/16")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_route(RouteTableId=rtb, DestinationCidrBlock="8.8.8.0/24")
    assert error_code(e) == "InvalidRoute.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.replace_route(RouteTableId=rtb, DestinationCidrBlock="8.8.8.0/24", GatewayId="local")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_route_table(VpcId=vpc_id, DryRun=True)
    assert error_code(e) == "DryRunOperation"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_internet_route_shows_whether_the_gateway_can_forward():
    """spec 2.5, 5.1 and issue 15: a route to an internet gateway is `active`
    only while the gateway is attached to the table's VPC and an edge node
    serves the region. This server runs no edge node, so its routes show
    `blackhole`, as AWS shows a route whose target cannot forward (the lab
    tests, which run edges, see them `active`)."""
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.3.0.0/16")["Vpc"]["VpcId"]
    igw = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
    try:
        rtb = client.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
        client.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        # spec 2.9: the same destination twice.
        with pytest.raises(botocore.exceptions.ClientError) as e:
            client.create_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        assert error_code(e) == "RouteAlreadyExists"
        routes = client.describe_route_tables(Filters=[{"Name": "route.gateway-id", "Values": [igw]}])["RouteTables"]
        assert [t["RouteTableId"] for t in routes] == [rtb]
        route = [r for r in routes[0]["Routes"] if r.get("GatewayId") == igw][0]
        assert route["State"] == "blackhole" and route["Origin"] == "CreateRoute"
        client.delete_route(RouteTableId=rtb, DestinationCidrBlock="0.0.0.0/0")
    finally:
        client.detach_internet_gateway(InternetGatewayId=igw, VpcId=vpc_id)
        client.delete_internet_gateway(InternetGatewayId=igw)


def test_aws_cli_and_pagination():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.4.0.0/16")["Vpc"]["VpcId"]
    for _ in range(6):
        client.create_route_table(VpcId=vpc_id)
    out = aws("describe-route-tables", "--filters", f"Name=vpc-id,Values={vpc_id}", "--page-size", "5")
    assert len(out["RouteTables"]) == 7
    paginator = client.get_paginator("describe_route_tables")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) == 2
    assert sum(len(p["RouteTables"]) for p in pages) == 7
    created = aws(
        "create-route-table",
        "--vpc-id",
        vpc_id,
        "--tag-specifications",
        "ResourceType=route-table,Tags=[{Key=Name,Value=cli}]",
    )["RouteTable"]
    assert created["Tags"] == [{"Key": "Name", "Value": "cli"}]
    found = aws("describe-route-tables", "--filters", "Name=tag:Name,Values=cl*")["RouteTables"]
    assert [t["RouteTableId"] for t in found] == [created["RouteTableId"]]
    aws("delete-route-table", "--route-table-id", created["RouteTableId"])
    # Another account sees none of these tables.
    assert ec2("bob").describe_route_tables()["RouteTables"] == []
