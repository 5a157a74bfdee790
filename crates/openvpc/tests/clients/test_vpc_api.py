"""The EC2 VPC API as real clients use it: boto3 and the aws CLI against an
`openvpc server` started by tests/api_clients.rs (spec 1.1, 12).

Environment: AWS_ENDPOINT_URL, AWS_SHARED_CREDENTIALS_FILE, AWS_DEFAULT_REGION
as the server printed them; profiles `default` (admin) and `bob`.
"""

import json
import os
import subprocess

import boto3
import botocore.config
import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def test_create_describe_delete():
    client = ec2()
    vpc = client.create_vpc(
        CidrBlock="10.0.0.18/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": "prod"}]}],
    )["Vpc"]
    vpc_id = vpc["VpcId"]
    assert vpc_id.startswith("vpc-") and len(vpc_id) == 4 + 17
    # spec 1.1: host bits are masked.
    assert vpc["CidrBlock"] == "10.0.0.0/16"
    assert vpc["State"] == "pending"
    assert vpc["CidrBlockAssociationSet"][0]["CidrBlockState"]["State"] == "associated"
    assert vpc["Tags"] == [{"Key": "Name", "Value": "prod"}]
    described = client.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
    assert [v["VpcId"] for v in described] == [vpc_id]
    assert described[0]["State"] == "available"
    assert described[0]["IsDefault"] is False
    client.delete_vpc(VpcId=vpc_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_vpcs(VpcIds=[vpc_id])
    assert error_code(e) == "InvalidVpcID.NotFound"


def test_filters_and_wildcards():
    client = ec2()
    a = client.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    b = client.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    client_tags = {"ResourceType": "vpc", "Tags": [{"Key": "env", "Value": "staging-2"}]}
    c = client.create_vpc(CidrBlock="192.168.0.0/24", TagSpecifications=[client_tags])["Vpc"]["VpcId"]

    def ids(filters):
        return sorted(v["VpcId"] for v in client.describe_vpcs(Filters=filters)["Vpcs"])

    assert ids([{"Name": "cidr", "Values": ["10.1.0.0/16"]}]) == [a]
    assert ids([{"Name": "cidr-block-association.cidr-block", "Values": ["10.*"]}]) == sorted([a, b])
    assert ids([{"Name": "tag:env", "Values": ["staging-?"]}]) == [c]
    assert ids([{"Name": "tag-key", "Values": ["env"]}]) == [c]
    # Values of one filter are ORed; filters are ANDed.
    assert ids([{"Name": "vpc-id", "Values": [a, c]}]) == sorted([a, c])
    assert ids([{"Name": "vpc-id", "Values": [a, c]}, {"Name": "cidr", "Values": ["10.*"]}]) == [a]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_vpcs(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert error_code(e) == "InvalidParameterValue"


def test_errors_have_aws_codes():
    client = ec2()
    unchecked = ec2(config=botocore.config.Config(parameter_validation=False))
    cases = [
        (lambda: client.create_vpc(CidrBlock="10.0.0.0/8"), "InvalidVpc.Range"),
        (lambda: client.create_vpc(CidrBlock="10.0.0.0/29"), "InvalidVpc.Range"),
        (lambda: client.create_vpc(CidrBlock="169.254.0.0/16"), "InvalidVpc.Range"),
        (lambda: client.create_vpc(CidrBlock="10.0.0.0/33"), "InvalidParameterValue"),
        (lambda: client.create_vpc(CidrBlock="10.0.0.0/16", DryRun=True), "DryRunOperation"),
        # Describe answers an ID that cannot exist as one that does not;
        # an action on one refuses it as malformed.
        (lambda: client.describe_vpcs(VpcIds=["vpc-XYZ"]), "InvalidVpcID.NotFound"),
        (lambda: client.delete_vpc(VpcId="vpc-XYZ"), "InvalidVpcID.Malformed"),
        (lambda: client.describe_vpcs(VpcIds=["vpc-0123456789abcdef0"]), "InvalidVpcID.NotFound"),
        (lambda: client.delete_vpc(VpcId="vpc-0123456789abcdef0"), "InvalidVpcID.NotFound"),
        # botocore checks MaxResults itself; skip that so the server's check is tested.
        (lambda: unchecked.describe_vpcs(MaxResults=4), "InvalidParameterValue"),
        (lambda: client.describe_vpcs(NextToken="garbage"), "InvalidNextToken"),
    ]
    for call, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == code, e.value.response
    # DryRun answers with HTTP 412 (spec 12.1).
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_vpc(CidrBlock="10.0.0.0/16", DryRun=True)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert client.describe_vpcs()["Vpcs"] == [], "failed calls created nothing"


def test_quota_and_pagination():
    client = ec2()
    created = [client.create_vpc(CidrBlock=f"10.{i}.0.0/16")["Vpc"]["VpcId"] for i in range(5)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_vpc(CidrBlock="10.9.0.0/16")
    assert error_code(e) == "VpcLimitExceeded"
    page = client.describe_vpcs(MaxResults=5)
    assert len(page["Vpcs"]) == 5 and not page.get("NextToken")
    paginator = client.get_paginator("describe_vpcs")
    seen = [v["VpcId"] for p in paginator.paginate(PaginationConfig={"PageSize": 5}) for v in p["Vpcs"]]
    assert sorted(seen) == sorted(created)


def test_accounts_are_isolated():
    admin, bob = ec2("default"), ec2("bob")
    mine = admin.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    bobs = bob.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    assert [v["VpcId"] for v in admin.describe_vpcs()["Vpcs"]] == [mine]
    assert [v["VpcId"] for v in bob.describe_vpcs()["Vpcs"]] == [bobs]
    for call in (lambda: bob.describe_vpcs(VpcIds=[mine]), lambda: bob.delete_vpc(VpcId=mine)):
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == "InvalidVpcID.NotFound"
    assert admin.describe_vpcs(VpcIds=[mine])["Vpcs"][0]["OwnerId"] != bob.describe_vpcs()["Vpcs"][0]["OwnerId"]


def test_bad_signatures_are_refused():
    session = boto3.Session(profile_name="default", region_name="us-east-1")
    creds = session.get_credentials()
    # Change the last character to one it is not (a fixed "x" would leave
    # one secret in 64 unchanged).
    last = "y" if creds.secret_key.endswith("x") else "x"
    wrong_secret = boto3.client(
        "ec2", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key[:-1] + last,
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong_secret.describe_vpcs()
    assert error_code(e) == "SignatureDoesNotMatch"
    unknown = boto3.client(
        "ec2", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40,
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.describe_vpcs()
    assert error_code(e) == "AuthFailure"
    # An unsigned request touches nothing.
    import urllib.request
    req = urllib.request.Request(ENDPOINT + "/", data=b"Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16", method="POST")
    try:
        urllib.request.urlopen(req)
        raise AssertionError("an unsigned request was accepted")
    except urllib.error.HTTPError as err:
        assert err.code in (400, 401, 403)
        assert b"<Code>" in err.read()
    assert ec2().describe_vpcs()["Vpcs"] == []


def test_aws_cli():
    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]
    out = subprocess.run(aws + ["create-vpc", "--cidr-block", "10.7.0.0/16"], env=env, check=True, capture_output=True, text=True)
    vpc_id = json.loads(out.stdout)["Vpc"]["VpcId"]
    out = subprocess.run(aws + ["describe-vpcs", "--filters", "Name=cidr,Values=10.7.0.0/16"], env=env, check=True, capture_output=True, text=True)
    assert [v["VpcId"] for v in json.loads(out.stdout)["Vpcs"]] == [vpc_id]
    bad = subprocess.run(aws + ["create-vpc", "--cidr-block", "10.0.0.0/8"], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "InvalidVpc.Range" in bad.stderr
    subprocess.run(aws + ["delete-vpc", "--vpc-id", vpc_id], env=env, check=True, capture_output=True)
