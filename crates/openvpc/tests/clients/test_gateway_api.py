"""Internet gateways, egress-only internet gateways, tags, VPC attributes and
secondary CIDR blocks as real clients use them: boto3 and the aws CLI against
an `openvpc server` started by tests/api_clients.rs (spec 1.1, 1.4, 1.7, 5.1,
5.2, 12.1, 13).

The `clean` fixture of test_vpc_api.py is shared: it deletes every gateway,
non-default group and VPC before each test.
"""

import json
import os
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def new_vpc(client, cidr="10.0.0.0/16", **kwargs):
    return client.create_vpc(CidrBlock=cidr, **kwargs)["Vpc"]["VpcId"]


def fails(code, call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e) == code, e.value.response
    return e.value.response


def test_internet_gateway_lifecycle():
    client = ec2()
    vpc_id, other_vpc = new_vpc(client), new_vpc(client, "10.1.0.0/16")
    igw = client.create_internet_gateway(
        TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": [{"Key": "Name", "Value": "edge"}]}]
    )["InternetGateway"]
    igw_id = igw["InternetGatewayId"]
    assert igw_id.startswith("igw-") and len(igw_id) == 4 + 17
    assert igw["Attachments"] == [] and igw["Tags"] == [{"Key": "Name", "Value": "edge"}]
    spare = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]

    client.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    [shown] = client.describe_internet_gateways(InternetGatewayIds=[igw_id])["InternetGateways"]
    # spec 5.1: an attached gateway shows State=available.
    assert shown["Attachments"] == [{"State": "available", "VpcId": vpc_id}]
    assert shown["OwnerId"] == client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["OwnerId"]

    def ids(filters):
        return sorted(g["InternetGatewayId"] for g in client.describe_internet_gateways(Filters=filters)["InternetGateways"])

    assert ids([{"Name": "attachment.vpc-id", "Values": [vpc_id]}]) == [igw_id]
    assert ids([{"Name": "attachment.state", "Values": ["available"]}]) == [igw_id]
    assert ids([{"Name": "tag:Name", "Values": ["ed*"]}]) == [igw_id]
    assert ids([{"Name": "internet-gateway-id", "Values": [spare]}]) == [spare]

    # spec 5.1: one VPC per gateway, one gateway per VPC; detaching needs the
    # right VPC; an attached gateway cannot be deleted, nor its VPC.
    fails("Resource.AlreadyAssociated", client.attach_internet_gateway, InternetGatewayId=igw_id, VpcId=other_vpc)
    fails("Resource.AlreadyAssociated", client.attach_internet_gateway, InternetGatewayId=spare, VpcId=vpc_id)
    fails("InvalidVpcID.NotFound", client.attach_internet_gateway, InternetGatewayId=spare, VpcId="vpc-deadbeef")
    fails("Gateway.NotAttached", client.detach_internet_gateway, InternetGatewayId=igw_id, VpcId=other_vpc)
    fails("Gateway.NotAttached", client.detach_internet_gateway, InternetGatewayId=spare, VpcId=vpc_id)
    fails("DependencyViolation", client.delete_internet_gateway, InternetGatewayId=igw_id)
    response = fails("DependencyViolation", client.delete_vpc, VpcId=vpc_id)
    assert response["Error"]["Message"] == f"The vpc '{vpc_id}' has dependencies and cannot be deleted."
    response = fails("DryRunOperation", client.detach_internet_gateway, InternetGatewayId=igw_id, VpcId=vpc_id, DryRun=True)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 412
    fails("InvalidInternetGatewayID.NotFound", client.describe_internet_gateways, InternetGatewayIds=["igw-deadbeef"])

    client.detach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    assert client.describe_internet_gateways(InternetGatewayIds=[igw_id])["InternetGateways"][0]["Attachments"] == []
    client.delete_internet_gateway(InternetGatewayId=igw_id)
    fails("InvalidInternetGatewayID.NotFound", client.delete_internet_gateway, InternetGatewayId=igw_id)
    client.delete_vpc(VpcId=vpc_id)


def test_internet_gateway_quota():
    client = ec2()
    for _ in range(5):
        client.create_internet_gateway()
    # spec 13: internet gateways per region follow the VPC quota of 5.
    fails("InternetGatewayLimitExceeded", client.create_internet_gateway)
    paginator = client.get_paginator("describe_internet_gateways")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 5}))
    assert sum(len(p["InternetGateways"]) for p in pages) == 5


def test_egress_only_internet_gateway():
    client = ec2()
    vpc_id = new_vpc(client)
    gateway = client.create_egress_only_internet_gateway(VpcId=vpc_id)["EgressOnlyInternetGateway"]
    gateway_id = gateway["EgressOnlyInternetGatewayId"]
    assert gateway_id.startswith("eigw-")
    # spec 5.2: created attached (State=attached), shown the same by Describe.
    assert gateway["Attachments"] == [{"State": "attached", "VpcId": vpc_id}]
    assert gateway["Tags"] == []
    assert client.describe_egress_only_internet_gateways()["EgressOnlyInternetGateways"] == [gateway]
    fails("Resource.AlreadyAssociated", client.create_egress_only_internet_gateway, VpcId=vpc_id)
    fails("InvalidVpcID.NotFound", client.create_egress_only_internet_gateway, VpcId="vpc-deadbeef")
    fails("DependencyViolation", client.delete_vpc, VpcId=vpc_id)
    assert client.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gateway_id)["ReturnCode"] is True
    fails("InvalidGatewayID.NotFound", client.delete_egress_only_internet_gateway, EgressOnlyInternetGatewayId=gateway_id)
    # A gateway that is gone is left out of Describe, not an error.
    assert client.describe_egress_only_internet_gateways(EgressOnlyInternetGatewayIds=[gateway_id])["EgressOnlyInternetGateways"] == []
    client.delete_vpc(VpcId=vpc_id)


def test_tags():
    client = ec2()
    vpc_id = new_vpc(client)
    igw_id = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    group_id = client.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"][0]["GroupId"]
    client.create_tags(Resources=[vpc_id, igw_id, group_id], Tags=[{"Key": "env", "Value": "prod"}, {"Key": "blank", "Value": ""}])
    client.create_tags(Resources=[vpc_id], Tags=[{"Key": "env", "Value": "staging"}])
    assert {t["Key"]: t["Value"] for t in client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Tags"]} == {"env": "staging", "blank": ""}

    def tags(filters):
        return sorted((t["ResourceId"], t["ResourceType"], t["Key"], t["Value"]) for t in client.describe_tags(Filters=filters)["Tags"])

    assert tags([{"Name": "key", "Values": ["env"]}]) == sorted([
        (vpc_id, "vpc", "env", "staging"),
        (igw_id, "internet-gateway", "env", "prod"),
        (group_id, "security-group", "env", "prod"),
    ])
    assert tags([{"Name": "resource-type", "Values": ["security-group"]}, {"Name": "value", "Values": [""]}]) == [
        (group_id, "security-group", "blank", ""),
    ]
    assert [t[0] for t in tags([{"Name": "resource-id", "Values": [igw_id]}])] == [igw_id, igw_id]
    # The CLI and boto3 paginate DescribeTags with NextToken.
    paginator = client.get_paginator("describe_tags")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 5}))
    assert len(pages) == 2 and sum(len(p["Tags"]) for p in pages) == 6

    # DeleteTags: by key, by key and value (only if it matches), everything.
    client.delete_tags(Resources=[vpc_id], Tags=[{"Key": "env", "Value": "prod"}])
    assert len(tags([{"Name": "resource-id", "Values": [vpc_id]}])) == 2
    client.delete_tags(Resources=[vpc_id], Tags=[{"Key": "env"}])
    assert tags([{"Name": "resource-id", "Values": [vpc_id]}]) == [(vpc_id, "vpc", "blank", "")]
    client.delete_tags(Resources=[igw_id, group_id])
    assert tags([]) == [(vpc_id, "vpc", "blank", "")]

    # spec 12.1 and 13: 50 tags per resource; errors name the resource kind.
    client.create_tags(Resources=[vpc_id], Tags=[{"Key": f"k{i}", "Value": ""} for i in range(49)])
    fails("TagLimitExceeded", client.create_tags, Resources=[vpc_id], Tags=[{"Key": "one-too-many", "Value": ""}])
    fails("InvalidVpcID.NotFound", client.create_tags, Resources=["vpc-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])
    fails("InvalidSubnetID.NotFound", client.create_tags, Resources=["subnet-0123456789abcdef0"], Tags=[{"Key": "a", "Value": "b"}])
    fails("InvalidID", client.create_tags, Resources=["nonsense"], Tags=[{"Key": "a", "Value": "b"}])
    fails("DryRunOperation", client.create_tags, Resources=[vpc_id], Tags=[{"Key": "a", "Value": "b"}], DryRun=True)
    fails("InvalidParameterValue", client.describe_tags, Filters=[{"Name": "colour", "Values": ["x"]}])
    # Another account sees none of it.
    assert ec2("bob").describe_tags()["Tags"] == []
    fails("InvalidVpcID.NotFound", ec2("bob").create_tags, Resources=[vpc_id], Tags=[{"Key": "a", "Value": "b"}])
    # boto3's resource layer uses the same calls.
    client.delete_tags(Resources=[vpc_id])
    vpc = boto3.Session(profile_name="default", region_name="us-east-1").resource("ec2", endpoint_url=ENDPOINT).Vpc(vpc_id)
    vpc.create_tags(Tags=[{"Key": "Name", "Value": "via-resource"}])
    vpc.reload()
    assert vpc.tags == [{"Key": "Name", "Value": "via-resource"}]
    assert vpc.describe_attribute(Attribute="enableDnsSupport")["EnableDnsSupport"] == {"Value": True}


def test_vpc_attributes():
    client = ec2()
    vpc_id = new_vpc(client)

    def attribute(name):
        response = client.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)
        assert response["VpcId"] == vpc_id
        return response[name[0].upper() + name[1:]]["Value"]

    # spec 1.4: DNS support on, hostnames off by default.
    assert attribute("enableDnsSupport") is True
    assert attribute("enableDnsHostnames") is False
    assert attribute("enableNetworkAddressUsageMetrics") is False
    client.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    assert attribute("enableDnsHostnames") is True
    # spec 1.4: one attribute per call.
    fails("InvalidParameterCombination", client.modify_vpc_attribute, VpcId=vpc_id,
          EnableDnsSupport={"Value": True}, EnableDnsHostnames={"Value": True})
    client.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": False})
    client.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": False})
    assert attribute("enableDnsSupport") is False
    # spec 1.4: hostnames only while DNS support is on.
    fails("InvalidParameterCombination", client.modify_vpc_attribute, VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    client.modify_vpc_attribute(VpcId=vpc_id, EnableNetworkAddressUsageMetrics={"Value": True})
    assert attribute("enableNetworkAddressUsageMetrics") is True
    fails("InvalidVpcID.NotFound", client.describe_vpc_attribute, VpcId="vpc-0123456789abcdef0", Attribute="enableDnsSupport")
    unchecked = ec2(config=botocore.config.Config(parameter_validation=False))
    fails("InvalidParameterValue", unchecked.describe_vpc_attribute, VpcId=vpc_id, Attribute="enableMagic")


def test_cidr_blocks():
    client = ec2()
    vpc_id = new_vpc(client, "10.10.42.0/24")
    added = []
    for i in range(43, 47):
        association = client.associate_vpc_cidr_block(VpcId=vpc_id, CidrBlock=f"10.10.{i}.0/24")["CidrBlockAssociation"]
        assert association["CidrBlockState"]["State"] == "associating"
        assert association["AssociationId"].startswith("vpc-cidr-assoc-")
        added.append(association["AssociationId"])
    blocks = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlockAssociationSet"]
    assert [b["CidrBlock"] for b in blocks] == [f"10.10.{i}.0/24" for i in range(42, 47)]
    assert {b["CidrBlockState"]["State"] for b in blocks} == {"associated"}
    # spec 1.1 and 13: five IPv4 blocks per VPC.
    response = fails("CidrLimitExceeded", client.associate_vpc_cidr_block, VpcId=vpc_id, CidrBlock="10.10.50.0/24")
    assert response["Error"]["Message"] == f"This network {vpc_id} has met its maximum number of allowed CIDRs: 5"
    removed = client.disassociate_vpc_cidr_block(AssociationId=added[0])["CidrBlockAssociation"]
    assert removed["CidrBlockState"]["State"] == "disassociating" and removed["CidrBlock"] == "10.10.43.0/24"
    # spec 1.1: overlap, size, restricted ranges and link-local are refused.
    for cidr in ("10.10.44.128/25", "10.11.0.0/15", "10.11.0.0/29", "192.168.0.0/16", "172.16.0.0/16", "169.254.0.0/16"):
        fails("InvalidVpc.Range", client.associate_vpc_cidr_block, VpcId=vpc_id, CidrBlock=cidr)
    client.associate_vpc_cidr_block(VpcId=vpc_id, CidrBlock="100.64.0.0/16")
    primary = blocks[0]["AssociationId"]
    fails("OperationNotPermitted", client.disassociate_vpc_cidr_block, AssociationId=primary)
    fails("InvalidVpcCidrBlockAssociationID.NotFound", client.disassociate_vpc_cidr_block, AssociationId=added[0])

    # spec 1.1: Amazon-provided IPv6 /56 blocks.
    v6 = client.create_vpc(CidrBlock="10.20.0.0/16", AmazonProvidedIpv6CidrBlock=True)["Vpc"]
    [block] = v6["Ipv6CidrBlockAssociationSet"]
    assert block["Ipv6CidrBlock"].endswith("::/56") and block["Ipv6CidrBlockState"]["State"] == "associated"
    extra = client.associate_vpc_cidr_block(VpcId=vpc_id, AmazonProvidedIpv6CidrBlock=True)["Ipv6CidrBlockAssociation"]
    assert extra["Ipv6CidrBlock"] != block["Ipv6CidrBlock"]
    found = client.describe_vpcs(Filters=[{"Name": "ipv6-cidr-block-association.ipv6-cidr-block", "Values": [extra["Ipv6CidrBlock"]]}])["Vpcs"]
    assert [v["VpcId"] for v in found] == [vpc_id]
    gone = client.disassociate_vpc_cidr_block(AssociationId=extra["AssociationId"])["Ipv6CidrBlockAssociation"]
    assert gone["Ipv6CidrBlockState"]["State"] == "disassociating"
    assert client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["Ipv6CidrBlockAssociationSet"] == []


def test_aws_cli():
    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]

    def run(*args):
        out = subprocess.run(aws + list(args), env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout) if out.stdout.strip() else None

    def refused(code, *args):
        out = subprocess.run(aws + list(args), env=env, capture_output=True, text=True)
        assert out.returncode != 0 and code in out.stderr, out.stderr

    vpc_id = run("create-vpc", "--cidr-block", "10.7.0.0/16")["Vpc"]["VpcId"]
    igw_id = run("create-internet-gateway")["InternetGateway"]["InternetGatewayId"]
    run("attach-internet-gateway", "--internet-gateway-id", igw_id, "--vpc-id", vpc_id)
    shown = run("describe-internet-gateways", "--filters", f"Name=attachment.vpc-id,Values={vpc_id}")["InternetGateways"]
    assert [g["InternetGatewayId"] for g in shown] == [igw_id]
    refused("DependencyViolation", "delete-internet-gateway", "--internet-gateway-id", igw_id)
    run("create-tags", "--resources", vpc_id, igw_id, "--tags", "Key=team,Value=net", "Key=empty")
    described = run("describe-tags", "--filters", "Name=key,Values=team")["Tags"]
    assert sorted(t["ResourceId"] for t in described) == sorted([vpc_id, igw_id])
    run("delete-tags", "--resources", igw_id, "--tags", "Key=team")
    assert [t["ResourceId"] for t in run("describe-tags", "--filters", "Name=key,Values=team")["Tags"]] == [vpc_id]
    run("modify-vpc-attribute", "--vpc-id", vpc_id, "--enable-dns-hostnames", '{"Value": true}')
    hostnames = run("describe-vpc-attribute", "--vpc-id", vpc_id, "--attribute", "enableDnsHostnames")
    assert hostnames["EnableDnsHostnames"] == {"Value": True}
    refused("InvalidParameterCombination", "modify-vpc-attribute", "--vpc-id", vpc_id,
            "--enable-dns-support", '{"Value": true}', "--enable-dns-hostnames", '{"Value": true}')
    association = run("associate-vpc-cidr-block", "--vpc-id", vpc_id, "--cidr-block", "10.8.0.0/16")["CidrBlockAssociation"]
    refused("InvalidVpc.Range", "associate-vpc-cidr-block", "--vpc-id", vpc_id, "--cidr-block", "192.168.0.0/16")
    run("disassociate-vpc-cidr-block", "--association-id", association["AssociationId"])
    run("detach-internet-gateway", "--internet-gateway-id", igw_id, "--vpc-id", vpc_id)
    run("delete-internet-gateway", "--internet-gateway-id", igw_id)
    run("delete-vpc", "--vpc-id", vpc_id)
