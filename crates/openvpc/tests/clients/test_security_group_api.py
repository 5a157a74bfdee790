"""Security groups as real clients use them: boto3 and the aws CLI against an
`openvpc server` started by tests/api_clients.rs (spec 1.6, 3.1, 3.3, 12).

The `clean` fixture of test_vpc_api.py is shared: it deletes every
non-default group, then every VPC, before each test.
"""

import json
import os
import subprocess

import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def new_vpc(client, cidr="10.0.0.0/16"):
    return client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]


def default_group(client, vpc_id):
    groups = client.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    return groups[0]


def test_default_group():
    client = ec2()
    vpc_id = new_vpc(client)
    group = default_group(client, vpc_id)
    assert group["Description"] == "default VPC security group"
    # spec 1.6: all traffic from itself in, all traffic to 0.0.0.0/0 out.
    [ingress] = group["IpPermissions"]
    assert ingress["IpProtocol"] == "-1"
    assert [p["GroupId"] for p in ingress["UserIdGroupPairs"]] == [group["GroupId"]]
    [egress] = group["IpPermissionsEgress"]
    assert egress["IpProtocol"] == "-1" and egress["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_security_group(GroupId=group["GroupId"])
    assert error_code(e) == "CannotDelete"
    client.delete_vpc(VpcId=vpc_id)
    assert client.describe_security_groups()["SecurityGroups"] == []


def test_groups_and_rules():
    client = ec2()
    vpc_id = new_vpc(client)
    web = client.create_security_group(
        GroupName="web", Description="web tier", VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": [{"Key": "tier", "Value": "web"}]}],
    )
    assert web["Tags"] == [{"Key": "tier", "Value": "web"}]
    web_id = web["GroupId"]
    db_id = client.create_security_group(GroupName="db", Description="db tier", VpcId=vpc_id)["GroupId"]
    # spec 3.1: a new group has no ingress and one egress rule.
    [db] = client.describe_security_groups(GroupIds=[db_id])["SecurityGroups"]
    assert db["IpPermissions"] == [] and db["VpcId"] == vpc_id
    assert db["IpPermissionsEgress"][0]["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}]

    out = client.authorize_security_group_ingress(
        GroupId=db_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web_id}]},
            {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "203.0.113.0/24", "Description": "office"}],
             "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]},
        ],
    )
    assert out["Return"] is True
    rules = out["SecurityGroupRules"]
    assert len(rules) == 3 and all(r["SecurityGroupRuleId"].startswith("sgr-") for r in rules)
    ref = next(r for r in rules if "ReferencedGroupInfo" in r)
    assert ref["ReferencedGroupInfo"]["GroupId"] == web_id and ref["FromPort"] == 5432 and ref["IsEgress"] is False

    [db] = client.describe_security_groups(GroupIds=[db_id])["SecurityGroups"]
    by_port = {p["FromPort"]: p for p in db["IpPermissions"]}
    assert [g["GroupId"] for g in by_port[5432]["UserIdGroupPairs"]] == [web_id]
    assert by_port[22]["IpRanges"] == [{"CidrIp": "203.0.113.0/24", "Description": "office"}]
    assert by_port[22]["Ipv6Ranges"] == [{"CidrIpv6": "2001:db8::/32"}]

    def ids(filters):
        return sorted(g["GroupId"] for g in client.describe_security_groups(Filters=filters)["SecurityGroups"])

    assert ids([{"Name": "ip-permission.from-port", "Values": ["5432"]}]) == [db_id]
    assert ids([{"Name": "ip-permission.cidr", "Values": ["203.0.113.*"]}]) == [db_id]
    assert ids([{"Name": "tag:tier", "Values": ["w?b"]}]) == [web_id]
    assert ids([{"Name": "group-name", "Values": ["web", "db"]}, {"Name": "vpc-id", "Values": [vpc_id]}]) == sorted([web_id, db_id])
    assert ids([{"Name": "description", "Values": ["db*"]}]) == [db_id]

    listed = client.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [db_id]}])["SecurityGroupRules"]
    assert len(listed) == 4, "three ingress rules and the egress rule"
    egress = [r for r in listed if r["IsEgress"]]
    assert egress[0]["CidrIpv4"] == "0.0.0.0/0" and egress[0]["IpProtocol"] == "-1"
    described = client.describe_security_group_rules(SecurityGroupRuleIds=[ref["SecurityGroupRuleId"]])["SecurityGroupRules"]
    assert described[0]["GroupOwnerId"] == db["OwnerId"]

    # The referenced group cannot go while the reference stands.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_security_group(GroupId=web_id)
    assert error_code(e) == "DependencyViolation"
    # Revoke by rule ID, then by value; a second revoke finds nothing.
    client.revoke_security_group_ingress(GroupId=db_id, SecurityGroupRuleIds=[ref["SecurityGroupRuleId"]])
    ssh = [{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}]
    client.revoke_security_group_ingress(GroupId=db_id, IpPermissions=ssh)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.revoke_security_group_ingress(GroupId=db_id, IpPermissions=ssh)
    assert error_code(e) == "InvalidPermission.NotFound"
    # Egress rules work the same way.
    all_out = [{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    client.revoke_security_group_egress(GroupId=db_id, IpPermissions=all_out)
    [db] = client.describe_security_groups(GroupIds=[db_id])["SecurityGroups"]
    assert db["IpPermissionsEgress"] == []
    assert client.authorize_security_group_egress(GroupId=db_id, IpPermissions=all_out)["Return"] is True

    client.delete_security_group(GroupId=web_id)
    client.delete_security_group(GroupId=db_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_security_groups(GroupIds=[db_id])
    assert error_code(e) == "InvalidGroup.NotFound"
    client.delete_vpc(VpcId=vpc_id)


def test_errors_have_aws_codes():
    client = ec2()
    vpc_id = new_vpc(client)
    gid = client.create_security_group(GroupName="app", Description="app", VpcId=vpc_id)["GroupId"]
    tcp = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80}
    cases = [
        (lambda: client.create_security_group(GroupName="default", Description="d", VpcId=vpc_id), "InvalidGroup.Reserved"),
        (lambda: client.create_security_group(GroupName="app", Description="d", VpcId=vpc_id), "InvalidGroup.Duplicate"),
        (lambda: client.create_security_group(GroupName="x", Description="d", VpcId="vpc-0123456789abcdef0"), "InvalidVpcID.NotFound"),
        (lambda: client.describe_security_groups(GroupIds=["sg-0123456789abcdef0"]), "InvalidGroup.NotFound"),
        (lambda: client.describe_security_groups(GroupIds=["sg-nope"]), "InvalidGroupId.Malformed"),
        (lambda: client.delete_security_group(GroupId="sg-0123456789abcdef0"), "InvalidGroup.NotFound"),
        (lambda: client.authorize_security_group_ingress(
            GroupId=gid, IpPermissions=[dict(tcp, UserIdGroupPairs=[{"GroupId": "sg-0123456789abcdef0"}])]), "InvalidGroup.NotFound"),
        (lambda: client.authorize_security_group_ingress(
            GroupId=gid, IpPermissions=[dict(tcp, IpRanges=[{"CidrIp": "10.0.0.0/33"}])]), "InvalidParameterValue"),
        (lambda: client.authorize_security_group_ingress(
            GroupId=gid, IpPermissions=[dict(tcp, ToPort=79, IpRanges=[{"CidrIp": "10.0.0.0/8"}])]), "InvalidParameterValue"),
        (lambda: client.create_security_group(GroupName="y", Description="d", VpcId=vpc_id, DryRun=True), "DryRunOperation"),
    ]
    for call, code in cases:
        with pytest.raises(botocore.exceptions.ClientError) as e:
            call()
        assert error_code(e) == code, e.value.response
    # spec 1.7: the VPC cannot go while it has a non-default group.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_vpc(VpcId=vpc_id)
    assert error_code(e) == "DependencyViolation"


def test_accounts_are_isolated():
    admin, bob = ec2("default"), ec2("bob")
    gid = admin.create_security_group(GroupName="a", Description="a", VpcId=new_vpc(admin))["GroupId"]
    new_vpc(bob)
    assert gid not in [g["GroupId"] for g in bob.describe_security_groups()["SecurityGroups"]]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.delete_security_group(GroupId=gid)
    assert error_code(e) == "InvalidGroup.NotFound"


def test_aws_cli_duplicate_rule():
    client = ec2()
    gid = client.create_security_group(GroupName="ssh", Description="ssh", VpcId=new_vpc(client))["GroupId"]
    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]
    cmd = aws + ["authorize-security-group-ingress", "--group-id", gid, "--protocol", "tcp", "--port", "22", "--cidr", "203.0.113.1/32"]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout)["Return"] is True
    again = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert again.returncode != 0 and "InvalidPermission.Duplicate" in again.stderr, again.stderr
