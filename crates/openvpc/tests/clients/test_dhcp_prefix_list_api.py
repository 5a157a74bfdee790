"""DHCP options sets, managed prefix lists and gateway VPC endpoints as real
clients use them: boto3 and the aws CLI against an `openvpc server` started
by tests/api_clients.rs (spec 1.4, 1.6, 1.7, 3.1, 11, 13).

The `clean` fixture of test_vpc_api.py is shared: it deletes endpoints,
VPCs, the account's prefix lists and its DHCP options sets before each test.
"""

import json
import os
import subprocess

import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def fails(code, call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e) == code, e.value.response
    return e.value.response


def main_table(client, vpc_id):
    tables = client.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    return tables[0]["RouteTableId"]


def test_dhcp_options():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # spec 1.4, 1.6: new VPCs get the account's default set.
    default_id = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["DhcpOptionsId"]
    assert default_id.startswith("dopt-")
    default = client.describe_dhcp_options(DhcpOptionsIds=[default_id])["DhcpOptions"][0]
    assert {"Key": "domain-name", "Values": [{"Value": "ec2.internal"}]} in default["DhcpConfigurations"]
    assert {"Key": "domain-name-servers", "Values": [{"Value": "AmazonProvidedDNS"}]} in default["DhcpConfigurations"]
    created = client.create_dhcp_options(
        DhcpConfigurations=[
            {"Key": "domain-name", "Values": ["corp.example"]},
            {"Key": "domain-name-servers", "Values": ["10.0.0.6", "10.0.0.7"]},
        ],
        TagSpecifications=[{"ResourceType": "dhcp-options", "Tags": [{"Key": "Name", "Value": "corp"}]}],
    )["DhcpOptions"]
    dopt = created["DhcpOptionsId"]
    assert created["Tags"] == [{"Key": "Name", "Value": "corp"}]
    assert {"Key": "domain-name-servers", "Values": [{"Value": "10.0.0.6"}, {"Value": "10.0.0.7"}]} in created["DhcpConfigurations"]
    found = client.describe_dhcp_options(Filters=[{"Name": "value", "Values": ["corp.example"]}])["DhcpOptions"]
    assert [d["DhcpOptionsId"] for d in found] == [dopt]
    fails("InvalidParameterValue", client.create_dhcp_options, DhcpConfigurations=[{"Key": "netbios-node-type", "Values": ["3"]}])
    fails("InvalidParameterValue", client.create_dhcp_options, DhcpConfigurations=[{"Key": "ntp-servers", "Values": ["10.0.0.1"] * 5}])
    client.associate_dhcp_options(DhcpOptionsId=dopt, VpcId=vpc_id)
    assert client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["DhcpOptionsId"] == dopt
    fails("DependencyViolation", client.delete_dhcp_options, DhcpOptionsId=dopt)
    client.associate_dhcp_options(DhcpOptionsId="default", VpcId=vpc_id)
    assert client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["DhcpOptionsId"] == "default"
    client.delete_dhcp_options(DhcpOptionsId=dopt)
    fails("InvalidDhcpOptionID.NotFound", client.describe_dhcp_options, DhcpOptionsIds=[dopt])


def test_prefix_lists_in_rules_and_routes():
    client = ec2()
    created = client.create_managed_prefix_list(
        PrefixListName="office",
        MaxEntries=5,
        AddressFamily="IPv4",
        Entries=[{"Cidr": "10.1.0.0/16", "Description": "hq"}],
        TagSpecifications=[{"ResourceType": "prefix-list", "Tags": [{"Key": "team", "Value": "net"}]}],
    )["PrefixList"]
    pl = created["PrefixListId"]
    assert created["Version"] == 1 and created["MaxEntries"] == 5 and created["State"] == "create-complete"
    modified = client.modify_managed_prefix_list(
        PrefixListId=pl, CurrentVersion=1, AddEntries=[{"Cidr": "10.2.0.0/16"}], RemoveEntries=[{"Cidr": "10.1.0.0/16"}]
    )["PrefixList"]
    assert modified["Version"] == 2
    fails("PrefixListVersionMismatch", client.modify_managed_prefix_list, PrefixListId=pl, CurrentVersion=1, AddEntries=[{"Cidr": "10.3.0.0/16"}])
    assert client.get_managed_prefix_list_entries(PrefixListId=pl)["Entries"] == [{"Cidr": "10.2.0.0/16"}]
    assert client.get_managed_prefix_list_entries(PrefixListId=pl, TargetVersion=1)["Entries"] == [{"Cidr": "10.1.0.0/16", "Description": "hq"}]
    # spec 11: the AWS-managed lists.
    aws = client.describe_prefix_lists()["PrefixLists"]
    assert sorted(p["PrefixListName"] for p in aws) == ["com.amazonaws.us-east-1.dynamodb", "com.amazonaws.us-east-1.s3"]
    assert all(p["Cidrs"] for p in aws)
    owners = {p["OwnerId"] for p in client.describe_managed_prefix_lists()["PrefixLists"]}
    assert "AWS" in owners
    # spec 3.1: a prefix list as a rule source.
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    group = client.create_security_group(GroupName="web", Description="d", VpcId=vpc_id)["GroupId"]
    client.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": pl, "Description": "office"}]}],
    )
    perms = client.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    assert perms[0]["PrefixListIds"] == [{"PrefixListId": pl, "Description": "office"}]
    fails(
        "InvalidPrefixListID.NotFound",
        client.authorize_security_group_egress,
        GroupId=group,
        IpPermissions=[{"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": "pl-0123456789abcdef0"}]}],
    )
    # spec 3.1: AWS accepts the delete of a list a rule names, then fails it
    # asynchronously; the list stays, delete-failed.
    assert client.delete_managed_prefix_list(PrefixListId=pl)["PrefixList"]["State"] == "delete-in-progress"
    kept = client.describe_managed_prefix_lists(PrefixListIds=[pl])["PrefixLists"][0]
    assert kept["State"] == "delete-failed" and "security group rule" in kept["StateMessage"]
    client.revoke_security_group_ingress(GroupId=group, IpPermissions=perms)
    client.delete_managed_prefix_list(PrefixListId=pl)
    fails("InvalidPrefixListID.NotFound", client.get_managed_prefix_list_entries, PrefixListId=pl)


def test_gateway_endpoint():
    client = ec2()
    vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    main = main_table(client, vpc_id)
    private = client.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    services = client.describe_vpc_endpoint_services()["ServiceNames"]
    assert "com.amazonaws.us-east-1.s3" in services
    fails("InvalidServiceName", client.create_vpc_endpoint, VpcId=vpc_id, ServiceName="com.amazonaws.us-east-1.nope")
    endpoint = client.create_vpc_endpoint(
        VpcEndpointType="Gateway", VpcId=vpc_id, ServiceName="com.amazonaws.us-east-1.s3", RouteTableIds=[private]
    )["VpcEndpoint"]
    vpce = endpoint["VpcEndpointId"]
    assert endpoint["State"] == "available" and endpoint["RouteTableIds"] == [private]
    s3 = client.describe_prefix_lists(Filters=[{"Name": "prefix-list-name", "Values": ["com.amazonaws.us-east-1.s3"]}])["PrefixLists"][0]["PrefixListId"]
    routes = client.describe_route_tables(RouteTableIds=[private])["RouteTables"][0]["Routes"]
    assert {"DestinationPrefixListId": s3, "GatewayId": vpce, "Origin": "CreateRoute", "State": "active"} in routes
    # spec 11: the endpoint's route is not deleted directly.
    fails("InvalidParameterValue", client.delete_route, RouteTableId=private, DestinationPrefixListId=s3)
    client.modify_vpc_endpoint(VpcEndpointId=vpce, AddRouteTableIds=[main], RemoveRouteTableIds=[private])
    assert client.describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]["RouteTableIds"] == [main]
    assert not any(r.get("DestinationPrefixListId") for r in client.describe_route_tables(RouteTableIds=[private])["RouteTables"][0]["Routes"])
    # spec 1.7: the API does not delete gateway endpoints with the VPC.
    client.delete_route_table(RouteTableId=private)
    fails("DependencyViolation", client.delete_vpc, VpcId=vpc_id)
    gone = client.delete_vpc_endpoints(VpcEndpointIds=[vpce, "vpce-0123456789abcdef0"])["Unsuccessful"]
    assert [u["ResourceId"] for u in gone] == ["vpce-0123456789abcdef0"]
    assert gone[0]["Error"]["Code"] == "InvalidVpcEndpointId.NotFound"
    client.delete_vpc(VpcId=vpc_id)


def test_aws_cli():
    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]

    def run(*args):
        out = subprocess.run(aws + list(args), env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def refused(code, *args):
        out = subprocess.run(aws + list(args), env=env, capture_output=True, text=True)
        assert out.returncode != 0 and code in out.stderr, out.stderr

    dopt = run("create-dhcp-options", "--dhcp-configurations", "Key=domain-name,Values=lab.example", "Key=ntp-servers,Values=10.0.0.1,10.0.0.2")["DhcpOptions"]["DhcpOptionsId"]
    shown = run("describe-dhcp-options", "--filters", "Name=key,Values=ntp-servers")["DhcpOptions"]
    assert [d["DhcpOptionsId"] for d in shown] == [dopt]
    refused("InvalidParameterValue", "create-dhcp-options", "--dhcp-configurations", "Key=netbios-node-type,Values=5")
    pl = run("create-managed-prefix-list", "--prefix-list-name", "cli", "--max-entries", "2", "--address-family", "IPv4", "--entries", "Cidr=10.9.0.0/16,Description=lab")["PrefixList"]["PrefixListId"]
    assert run("get-managed-prefix-list-entries", "--prefix-list-id", pl)["Entries"] == [{"Cidr": "10.9.0.0/16", "Description": "lab"}]
    refused("InvalidParameterValue", "modify-managed-prefix-list", "--prefix-list-id", pl, "--current-version", "1", "--add-entries", "Cidr=10.10.0.0/16", "Cidr=10.11.0.0/16")
    vpc_id = run("create-vpc", "--cidr-block", "10.7.0.0/16")["Vpc"]["VpcId"]
    rtb = run("create-route-table", "--vpc-id", vpc_id)["RouteTable"]["RouteTableId"]
    vpce = run("create-vpc-endpoint", "--vpc-id", vpc_id, "--service-name", "com.amazonaws.us-east-1.dynamodb", "--route-table-ids", rtb)["VpcEndpoint"]["VpcEndpointId"]
    assert [e["VpcEndpointId"] for e in run("describe-vpc-endpoints")["VpcEndpoints"]] == [vpce]
    assert run("delete-vpc-endpoints", "--vpc-endpoint-ids", vpce)["Unsuccessful"] == []
    run("delete-route-table", "--route-table-id", rtb)
