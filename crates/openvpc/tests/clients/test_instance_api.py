"""ENIs, Elastic IPs and instances as real clients use them: boto3 and the
aws CLI against an `openvpc server` started by tests/api_clients.rs
(spec 3.2, 3.3, 5.3, 5.4, 12).

Every test cleans up after itself, down to its VPCs, because the other
client test files delete VPCs and security groups but know nothing of
subnets, ENIs, instances or addresses.
"""

import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def network(client, public=False):
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    if public:
        client.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
    return vpc, subnet


def test_network_interfaces():
    client = ec2()
    vpc, subnet = network(client)
    sg = client.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    eni = client.create_network_interface(
        SubnetId=subnet,
        Description="app",
        Groups=[sg],
        PrivateIpAddress="10.0.1.20",
        TagSpecifications=[{"ResourceType": "network-interface", "Tags": [{"Key": "Name", "Value": "app"}]}],
        ConnectionTrackingSpecification={"TcpEstablishedTimeout": 120},
    )["NetworkInterface"]
    eni_id = eni["NetworkInterfaceId"]
    assert eni["PrivateIpAddress"] == "10.0.1.20"
    assert eni["Groups"] == [{"GroupId": sg, "GroupName": "web"}]
    # spec 5.4: on by default.
    assert eni["SourceDestCheck"] is True
    assert eni["Status"] == "available"
    assert eni["MacAddress"].startswith("02:")
    assert eni["TagSet"] == [{"Key": "Name", "Value": "app"}]
    # spec 3.2: the timeout set, the others at their defaults.
    assert eni["ConnectionTrackingConfiguration"] == {
        "TcpEstablishedTimeout": 120,
        "UdpStreamTimeout": 180,
        "UdpTimeout": 30,
    }
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_network_interface(SubnetId=subnet, ConnectionTrackingSpecification={"UdpTimeout": 61})
    assert error_code(e) == "InvalidParameterValue"
    found = client.describe_network_interfaces(
        Filters=[{"Name": "group-id", "Values": [sg]}, {"Name": "tag:Name", "Values": ["a*"]}]
    )["NetworkInterfaces"]
    assert [n["NetworkInterfaceId"] for n in found] == [eni_id]
    client.assign_private_ip_addresses(NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=2)
    eni = client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert [(p["PrivateIpAddress"], p["Primary"]) for p in eni["PrivateIpAddresses"]] == [
        ("10.0.1.20", True),
        ("10.0.1.4", False),
        ("10.0.1.5", False),
    ]
    client.unassign_private_ip_addresses(NetworkInterfaceId=eni_id, PrivateIpAddresses=["10.0.1.4"])
    client.modify_network_interface_attribute(NetworkInterfaceId=eni_id, SourceDestCheck={"Value": False})
    attr = client.describe_network_interface_attribute(NetworkInterfaceId=eni_id, Attribute="sourceDestCheck")
    assert attr["SourceDestCheck"] == {"Value": False}
    # spec 3.3: five groups at most; spec 3.1: an attached group cannot go.
    groups = [client.create_security_group(GroupName=f"g{i}", Description="g", VpcId=vpc)["GroupId"] for i in range(6)]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups)
    assert error_code(e) == "SecurityGroupsPerInterfaceLimitExceeded"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_security_group(GroupId=sg)
    assert error_code(e) == "DependencyViolation"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.delete_subnet(SubnetId=subnet)
    assert error_code(e) == "DependencyViolation"
    client.delete_network_interface(NetworkInterfaceId=eni_id)
    client.delete_security_group(GroupId=sg)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert error_code(e) == "InvalidNetworkInterfaceID.NotFound"


def test_instances():
    client = ec2()
    vpc, subnet = network(client, public=True)
    sg = client.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    reservation = client.run_instances(
        ImageId="ami-12c6146b",
        MinCount=2,
        MaxCount=2,
        SubnetId=subnet,
        SecurityGroupIds=[sg],
        UserData="echo hi",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"}]},
            {"ResourceType": "network-interface", "Tags": [{"Key": "role", "Value": "eth0"}]},
        ],
    )
    assert reservation["ReservationId"].startswith("r-")
    instances = reservation["Instances"]
    assert [i["State"]["Name"] for i in instances] == ["pending", "pending"]
    first = instances[0]
    assert first["InstanceType"] == "m1.small"
    assert first["PublicIpAddress"].startswith(("198.51.100.", "203.0.113."))
    assert first["PrivateDnsName"] == "ip-%s.ec2.internal" % first["PrivateIpAddress"].replace(".", "-")
    assert first["SecurityGroups"] == [{"GroupId": sg, "GroupName": "web"}]
    assert first["NetworkInterfaces"][0]["Attachment"]["DeviceIndex"] == 0
    assert first["Tags"] == [{"Key": "Name", "Value": "web"}]
    described = client.describe_instances(InstanceIds=[first["InstanceId"]])["Reservations"]
    assert described[0]["Instances"][0]["State"] == {"Code": 16, "Name": "running"}
    assert isinstance(described[0]["Instances"][0]["LaunchTime"].year, int)
    by_tag = client.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web"]}, {"Name": "subnet-id", "Values": [subnet]}])
    assert sorted(i["InstanceId"] for r in by_tag["Reservations"] for i in r["Instances"]) == sorted(i["InstanceId"] for i in instances)
    eni_id = first["NetworkInterfaces"][0]["NetworkInterfaceId"]
    by_eni = client.describe_instances(Filters=[{"Name": "network-interface.network-interface-id", "Values": [eni_id]}])
    assert [i["InstanceId"] for r in by_eni["Reservations"] for i in r["Instances"]] == [first["InstanceId"]]
    eni = client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])["NetworkInterfaces"][0]
    assert eni["TagSet"] == [{"Key": "role", "Value": "eth0"}]
    assert eni["Attachment"]["DeleteOnTermination"] is True
    # spec 5.4 through the instance.
    client.modify_instance_attribute(InstanceId=first["InstanceId"], SourceDestCheck={"Value": False})
    attr = client.describe_instance_attribute(InstanceId=first["InstanceId"], Attribute="sourceDestCheck")
    assert attr["SourceDestCheck"] == {"Value": False}
    stopped = client.stop_instances(InstanceIds=[first["InstanceId"]])["StoppingInstances"][0]
    assert stopped["CurrentState"]["Name"] == "stopping"
    client.start_instances(InstanceIds=[first["InstanceId"]])
    # A paginator walks all instances.
    pages = client.get_paginator("describe_instances").paginate(PaginationConfig={"PageSize": 5})
    assert sum(len(r["Instances"]) for p in pages for r in p["Reservations"]) >= 2
    terminated = client.terminate_instances(InstanceIds=[i["InstanceId"] for i in instances])["TerminatingInstances"]
    assert {t["CurrentState"]["Name"] for t in terminated} == {"shutting-down"}
    after = client.describe_instances(InstanceIds=[first["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert after["State"]["Name"] == "terminated"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.describe_network_interfaces(NetworkInterfaceIds=[eni_id])
    assert error_code(e) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)
    assert error_code(e) == "VPCIdNotSpecified"


def test_elastic_ips():
    client = ec2()
    vpc, subnet = network(client)
    instance = client.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    instance_id = instance["InstanceId"]
    eni = client.create_network_interface(SubnetId=subnet)["NetworkInterface"]["NetworkInterfaceId"]
    eip = client.allocate_address(
        Domain="vpc", TagSpecifications=[{"ResourceType": "elastic-ip", "Tags": [{"Key": "Name", "Value": "front"}]}]
    )
    assert eip["AllocationId"].startswith("eipalloc-")
    # The region-wide pool never gives bob the same address.
    other = ec2("bob").allocate_address(Domain="vpc")
    assert other["PublicIp"] != eip["PublicIp"]
    # spec 5.1: an Elastic IP needs the VPC's internet gateway.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.associate_address(AllocationId=eip["AllocationId"], InstanceId=instance_id)
    assert error_code(e) == "Gateway.NotAttached"
    igw = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    assoc = client.associate_address(AllocationId=eip["AllocationId"], InstanceId=instance_id)["AssociationId"]
    assert assoc.startswith("eipassoc-")
    described = client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert described["PublicIpAddress"] == eip["PublicIp"]
    address = client.describe_addresses(Filters=[{"Name": "instance-id", "Values": [instance_id]}])["Addresses"]
    assert [a["AllocationId"] for a in address] == [eip["AllocationId"]]
    assert address[0]["Tags"] == [{"Key": "Name", "Value": "front"}]
    assert address[0]["PrivateIpAddress"] == instance["PrivateIpAddress"]
    # spec 5.3: one ENI at a time; moving it needs AllowReassociation.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=eni, AllowReassociation=False)
    assert error_code(e) == "Resource.AlreadyAssociated"
    assoc = client.associate_address(AllocationId=eip["AllocationId"], NetworkInterfaceId=eni, AllowReassociation=True)["AssociationId"]
    assert "PublicIpAddress" not in client.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.release_address(AllocationId=eip["AllocationId"])
    assert error_code(e) == "InvalidIPAddress.InUse"

    # The same through the aws CLI.
    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]
    out = subprocess.run(aws + ["describe-addresses", "--filters", f"Name=association-id,Values={assoc}"], env=env, check=True, capture_output=True, text=True)
    assert [a["NetworkInterfaceId"] for a in json.loads(out.stdout)["Addresses"]] == [eni]
    subprocess.run(aws + ["disassociate-address", "--association-id", assoc], env=env, check=True, capture_output=True)
    subprocess.run(aws + ["release-address", "--allocation-id", eip["AllocationId"]], env=env, check=True, capture_output=True)
    bad = subprocess.run(aws + ["release-address", "--allocation-id", eip["AllocationId"]], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "InvalidAllocationID.NotFound" in bad.stderr
    out = subprocess.run(
        aws + ["describe-network-interfaces", "--filters", f"Name=attachment.instance-id,Values={instance_id}"],
        env=env, check=True, capture_output=True, text=True,
    )
    assert [n["Attachment"]["InstanceId"] for n in json.loads(out.stdout)["NetworkInterfaces"]] == [instance_id]
    subprocess.run(aws + ["terminate-instances", "--instance-ids", instance_id], env=env, check=True, capture_output=True)
    # spec 13: five per region.
    for _ in range(5):
        client.allocate_address(Domain="vpc")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.allocate_address(Domain="vpc")
    assert error_code(e) == "AddressLimitExceeded"
