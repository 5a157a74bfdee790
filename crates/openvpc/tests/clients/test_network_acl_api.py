"""Network ACLs as real clients use them: boto3 and the aws CLI against an
`openvpc server` started by tests/api_clients.rs (spec 1.6, 4, 12).

The `clean` fixture of test_vpc_api.py is shared: it deletes subnets, custom
ACLs, groups and VPCs before each test.
"""

import json
import os
import subprocess

import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def new_vpc(client, cidr="10.0.0.0/16"):
    return client.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]


def default_acl(client, vpc_id):
    acls = client.describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default", "Values": ["true"]}]
    )["NetworkAcls"]
    assert len(acls) == 1
    return acls[0]


def acl_of_subnet(client, subnet_id):
    acls = client.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}])[
        "NetworkAcls"
    ]
    # spec 4.2: a subnet has exactly one ACL.
    assert len(acls) == 1
    [assoc] = [a for a in acls[0]["Associations"] if a["SubnetId"] == subnet_id]
    return acls[0]["NetworkAclId"], assoc["NetworkAclAssociationId"]


def aws(*args):
    env = dict(os.environ, AWS_PROFILE="default")
    cmd = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)


def test_default_acl():
    client = ec2()
    vpc_id = new_vpc(client)
    acl = default_acl(client, vpc_id)
    assert acl["IsDefault"] is True and acl["NetworkAclId"].startswith("acl-")
    # spec 4.2: rule 100 allows and the `*` rule (32767) denies, each direction.
    entries = sorted((e["Egress"], e["RuleNumber"], e["RuleAction"], e["Protocol"], e["CidrBlock"]) for e in acl["Entries"])
    assert entries == [
        (False, 100, "allow", "-1", "0.0.0.0/0"),
        (False, 32767, "deny", "-1", "0.0.0.0/0"),
        (True, 100, "allow", "-1", "0.0.0.0/0"),
        (True, 32767, "deny", "-1", "0.0.0.0/0"),
    ]
    # spec 4.2 acceptance: the default ACL cannot be deleted.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_network_acl(NetworkAclId=acl["NetworkAclId"])
    assert error_code(e) == "InvalidParameterValue"
    client.delete_vpc(VpcId=vpc_id)
    assert client.describe_network_acls()["NetworkAcls"] == []


def test_custom_acl_entries():
    client = ec2()
    vpc_id = new_vpc(client)
    acl = client.create_network_acl(
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "network-acl", "Tags": [{"Key": "tier", "Value": "web"}]}],
    )["NetworkAcl"]
    acl_id = acl["NetworkAclId"]
    assert acl["IsDefault"] is False and acl["Tags"] == [{"Key": "tier", "Value": "web"}]
    # spec 4.2: a custom ACL has only the `*` rules.
    assert sorted(e["RuleNumber"] for e in acl["Entries"]) == [32767, 32767]
    assert acl["Associations"] == []

    client.create_network_acl_entry(
        NetworkAclId=acl_id, RuleNumber=100, Protocol="6", RuleAction="allow", Egress=False,
        CidrBlock="10.0.0.18/8", PortRange={"From": 22, "To": 22},
    )
    client.create_network_acl_entry(
        NetworkAclId=acl_id, RuleNumber=110, Protocol="1", RuleAction="allow", Egress=False,
        CidrBlock="0.0.0.0/0", IcmpTypeCode={"Type": 3, "Code": 4},
    )
    client.create_network_acl_entry(
        NetworkAclId=acl_id, RuleNumber=100, Protocol="-1", RuleAction="deny", Egress=True,
        Ipv6CidrBlock="2001:db8::1/64",
    )
    [shown] = client.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
    by_key = {(e["Egress"], e["RuleNumber"]): e for e in shown["Entries"]}
    ssh = by_key[(False, 100)]
    # spec 4.1: the CIDR is canonicalised; ports and ICMP fields come back.
    assert ssh["CidrBlock"] == "10.0.0.0/8" and ssh["PortRange"] == {"From": 22, "To": 22} and ssh["Protocol"] == "6"
    assert by_key[(False, 110)]["IcmpTypeCode"] == {"Type": 3, "Code": 4}
    assert by_key[(True, 100)]["Ipv6CidrBlock"] == "2001:db8::/64"

    # spec 4.4: a rule number is used once per direction.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_network_acl_entry(
            NetworkAclId=acl_id, RuleNumber=100, Protocol="-1", RuleAction="deny", Egress=False, CidrBlock="0.0.0.0/0"
        )
    assert error_code(e) == "NetworkAclEntryAlreadyExists"
    assert e.value.response["Error"]["Message"] == "The network acl entry identified by 100 already exists."
    # spec 4.1 acceptance: 32767 is not the client's.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_network_acl_entry(
            NetworkAclId=acl_id, RuleNumber=32767, Protocol="-1", RuleAction="deny", Egress=False, CidrBlock="0.0.0.0/0"
        )
    assert error_code(e) == "InvalidParameterValue"

    client.replace_network_acl_entry(
        NetworkAclId=acl_id, RuleNumber=100, Protocol="17", RuleAction="deny", Egress=False,
        CidrBlock="0.0.0.0/0", PortRange={"From": 53, "To": 53},
    )
    client.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=110, Egress=False)
    [shown] = client.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"]
    ingress = [(e["RuleNumber"], e["Protocol"], e["RuleAction"]) for e in shown["Entries"] if not e["Egress"]]
    assert sorted(ingress) == [(100, "17", "deny"), (32767, "-1", "deny")]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_network_acl_entry(NetworkAclId=acl_id, RuleNumber=110, Egress=False)
    assert error_code(e) == "InvalidNetworkAclEntry.NotFound"

    # Filters reach into entries.
    found = client.describe_network_acls(Filters=[{"Name": "entry.port-range.from", "Values": ["53"]}])["NetworkAcls"]
    assert [a["NetworkAclId"] for a in found] == [acl_id]
    found = client.describe_network_acls(Filters=[{"Name": "tag:tier", "Values": ["w*"]}])["NetworkAcls"]
    assert [a["NetworkAclId"] for a in found] == [acl_id]

    # spec 1.7: a custom ACL keeps its VPC.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_vpc(VpcId=vpc_id)
    assert error_code(e) == "DependencyViolation"
    client.delete_network_acl(NetworkAclId=acl_id)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_network_acls(NetworkAclIds=[acl_id])
    assert error_code(e) == "InvalidNetworkAclID.NotFound"


def test_rule_quota():
    client = ec2()
    acl_id = client.create_network_acl(VpcId=new_vpc(client))["NetworkAcl"]["NetworkAclId"]
    # spec 4.4 acceptance: 19 custom inbound IPv4 rules plus `*` fit; the next does not.
    for n in range(1, 20):
        client.create_network_acl_entry(
            NetworkAclId=acl_id, RuleNumber=n, Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0"
        )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_network_acl_entry(
            NetworkAclId=acl_id, RuleNumber=20, Protocol="-1", RuleAction="allow", Egress=False, CidrBlock="0.0.0.0/0"
        )
    assert error_code(e) == "NetworkAclEntryLimitExceeded"


def test_subnet_associations():
    client = ec2()
    vpc_id = new_vpc(client)
    default_id = default_acl(client, vpc_id)["NetworkAclId"]
    subnet_id = client.create_subnet(VpcId=vpc_id, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    other_id = client.create_subnet(VpcId=vpc_id, CidrBlock="10.0.2.0/24")["Subnet"]["SubnetId"]
    # spec 4.2: a new subnet uses the default ACL.
    acl_id, assoc = acl_of_subnet(client, subnet_id)
    assert acl_id == default_id and assoc.startswith("aclassoc-")

    custom_id = client.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"]
    # spec 4.2 acceptance: the move shows a new aclassoc-.
    new_assoc = client.replace_network_acl_association(AssociationId=assoc, NetworkAclId=custom_id)["NewAssociationId"]
    assert new_assoc.startswith("aclassoc-") and new_assoc != assoc
    assert acl_of_subnet(client, subnet_id) == (custom_id, new_assoc)
    assert acl_of_subnet(client, other_id)[0] == default_id
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.replace_network_acl_association(AssociationId=assoc, NetworkAclId=custom_id)
    assert error_code(e) == "InvalidAssociationID.NotFound"

    # spec 4.2: an ACL that serves a subnet cannot be deleted.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_network_acl(NetworkAclId=custom_id)
    assert error_code(e) == "DependencyViolation"

    # DeleteSubnet drops the association, freeing the ACL.
    client.delete_subnet(SubnetId=subnet_id)
    [shown] = client.describe_network_acls(NetworkAclIds=[custom_id])["NetworkAcls"]
    assert shown["Associations"] == []
    client.delete_network_acl(NetworkAclId=custom_id)


def test_paginator():
    client = ec2()
    vpc_id = new_vpc(client)
    made = {default_acl(client, vpc_id)["NetworkAclId"]}
    for _ in range(6):
        made.add(client.create_network_acl(VpcId=vpc_id)["NetworkAcl"]["NetworkAclId"])
    pages = client.get_paginator("describe_network_acls").paginate(PaginationConfig={"PageSize": 5})
    seen = [a["NetworkAclId"] for page in pages for a in page["NetworkAcls"]]
    assert sorted(seen) == sorted(made)


def test_aws_cli_entries():
    client = ec2()
    acl_id = client.create_network_acl(VpcId=new_vpc(client))["NetworkAcl"]["NetworkAclId"]
    # The CLI turns `--protocol tcp` into 6 before sending (spec 4.1: numbers).
    out = aws("create-network-acl-entry", "--network-acl-id", acl_id, "--ingress", "--rule-number", "100",
              "--protocol", "tcp", "--port-range", "From=80,To=80", "--cidr-block", "0.0.0.0/0", "--rule-action", "allow")
    assert out.returncode == 0, out.stderr
    again = aws("create-network-acl-entry", "--network-acl-id", acl_id, "--ingress", "--rule-number", "100",
                "--protocol", "all", "--cidr-block", "0.0.0.0/0", "--rule-action", "deny")
    assert again.returncode != 0 and "NetworkAclEntryAlreadyExists" in again.stderr, again.stderr
    out = aws("describe-network-acls", "--network-acl-ids", acl_id)
    assert out.returncode == 0, out.stderr
    [acl] = json.loads(out.stdout)["NetworkAcls"]
    [rule] = [e for e in acl["Entries"] if e["RuleNumber"] == 100]
    assert rule["Protocol"] == "6" and rule["PortRange"] == {"From": 80, "To": 80} and rule["Egress"] is False


def test_accounts_are_isolated():
    admin, bob = ec2("default"), ec2("bob")
    acl_id = admin.create_network_acl(VpcId=new_vpc(admin))["NetworkAcl"]["NetworkAclId"]
    new_vpc(bob)
    assert acl_id not in [a["NetworkAclId"] for a in bob.describe_network_acls()["NetworkAcls"]]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.delete_network_acl(NetworkAclId=acl_id)
    assert error_code(e) == "InvalidNetworkAclID.NotFound"
