"""NAT gateways and VPC peering as real clients use them: boto3 and the aws
CLI against an `openvpc server` started by tests/api_clients.rs, with the
profiles `default` and `bob` as two real accounts for cross-account peering
(spec 6, 7, 12, 13).

The `clean` fixture of test_vpc_api.py is shared: it deletes peerings, NAT
gateways, free Elastic IPs, subnets, gateways and VPCs before each test.
"""

import json
import os
import subprocess
import threading
import urllib.request

import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, error_code  # noqa: F401


def fails(code, call, *args, **kwargs):
    with pytest.raises(botocore.exceptions.ClientError) as e:
        call(*args, **kwargs)
    assert error_code(e) == code, e.value.response
    return e.value.response


def aws(*args, profile="default"):
    env = dict(os.environ, AWS_PROFILE=profile)
    out = subprocess.run(
        ["aws", "--endpoint-url", ENDPOINT, "--output", "json", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout) if out.stdout.strip() else None


def agent(path, body=None):
    """A call to the server's agent API with its token, which the server
    wrote next to the credentials file."""
    data_dir = os.path.dirname(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
    with open(os.path.join(data_dir, "agent-token")) as f:
        token = f.read().strip()
    request = urllib.request.Request(
        ENDPOINT + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-openvpc-agent-token": token, "content-type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


@pytest.fixture
def hyperplane_node():
    """Issue 16: this server runs no `openvpc hyperplane`, and a NAT gateway
    is `pending` until a node of its shard serves it. This stand-in follows
    the node protocol: it registers, watches its assignments and reports
    each one programmed in its next heartbeat."""
    me = {"node_id": "hp-client-test", "underlay_ip": "127.0.0.2"}
    stop = threading.Event()

    def run():
        serving = []
        while not stop.is_set():
            agent("/hyperplane/v1/register", dict(me, serving=serving))
            delta = agent(f"/hyperplane/v1/watch?node={me['node_id']}&since=0")
            serving = [a["gateway_id"] for a in delta["assignments"]]
            stop.wait(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    agent("/hyperplane/v1/deregister", me)


def account_id(client):
    # The owner of a fresh VPC is the caller's account.
    vpc = client.create_vpc(CidrBlock="172.31.0.0/24")["Vpc"]
    client.delete_vpc(VpcId=vpc["VpcId"])
    return vpc["OwnerId"]


def test_public_nat_gateway_lifecycle(hyperplane_node):
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    igw = client.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    client.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    alloc = client.allocate_address(Domain="vpc")["AllocationId"]

    # spec 6.1, 12.1: pending first, available after; the ClientToken makes
    # a retry return the same gateway.
    request = dict(
        SubnetId=subnet,
        AllocationId=alloc,
        ClientToken="nat-token-1",
        TagSpecifications=[{"ResourceType": "natgateway", "Tags": [{"Key": "Name", "Value": "egress"}]}],
    )
    created = client.create_nat_gateway(**request)["NatGateway"]
    nat = created["NatGatewayId"]
    assert created["State"] == "pending"
    again = client.create_nat_gateway(**request)
    assert again["NatGateway"]["NatGatewayId"] == nat
    fails("IdempotentParameterMismatch", client.create_nat_gateway, SubnetId=subnet,
          ConnectivityType="private", ClientToken="nat-token-1")

    # issue 16: a route to it is a blackhole while it is pending.
    table = client.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]
    client.create_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat)

    def route_state():
        routes = client.describe_route_tables(RouteTableIds=[table["RouteTableId"]])["RouteTables"][0]["Routes"]
        return [r["State"] for r in routes if r.get("NatGatewayId") == nat]

    if client.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]["State"] == "pending":
        assert route_state() == ["blackhole"]
    # The aws CLI's waiter polls DescribeNatGateways until `available`: the
    # node has reported it programmed; the route is active.
    aws("ec2", "wait", "nat-gateway-available", "--nat-gateway-ids", nat)
    assert route_state() == ["active"]
    described = aws("ec2", "describe-nat-gateways", "--filter", f"Name=subnet-id,Values={subnet}")["NatGateways"]
    assert [g["NatGatewayId"] for g in described] == [nat]
    gateway = described[0]
    assert gateway["State"] == "available" and gateway["VpcId"] == vpc
    assert gateway["Tags"] == [{"Key": "Name", "Value": "egress"}]
    address = gateway["NatGatewayAddresses"][0]
    assert address["AllocationId"] == alloc and address["IsPrimary"] is True
    eni = client.describe_network_interfaces(NetworkInterfaceIds=[address["NetworkInterfaceId"]])["NetworkInterfaces"][0]
    assert eni["InterfaceType"] == "nat_gateway" and eni["RequesterManaged"] is True
    eip = client.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    assert eip["NetworkInterfaceId"] == eni["NetworkInterfaceId"]
    assert eip["PublicIp"] == address["PublicIp"]

    # spec 6.2: the subnet is held by its ENI.
    fails("DependencyViolation", client.delete_subnet, SubnetId=subnet)

    # spec 6.1, 6.2: AWS's errors of the address actions.
    spare = client.allocate_address(Domain="vpc")["AllocationId"]
    fails("Resource.AlreadyAssociated", client.associate_nat_gateway_address, NatGatewayId=nat,
          AllocationIds=[alloc])
    fails("InvalidAllocationID.NotFound", client.associate_nat_gateway_address, NatGatewayId=nat,
          AllocationIds=["eipalloc-0123456789abcdef0"])
    fails("InvalidParameterValue", client.associate_nat_gateway_address, NatGatewayId=nat,
          AllocationIds=[f"eipalloc-{i:017x}" for i in range(1, 9)])
    fails("NatGatewayNotFound", client.associate_nat_gateway_address, NatGatewayId="nat-0123456789abcdef0",
          AllocationIds=[spare])
    added = client.associate_nat_gateway_address(NatGatewayId=nat, AllocationIds=[spare])
    association = added["NatGatewayAddresses"][0]["AssociationId"]
    fails("InvalidParameterValue", client.disassociate_nat_gateway_address, NatGatewayId=nat,
          AssociationIds=[address["AssociationId"]])
    fails("InvalidAssociationID.NotFound", client.disassociate_nat_gateway_address, NatGatewayId=nat,
          AssociationIds=["eipassoc-0123456789abcdef0"])
    client.disassociate_nat_gateway_address(NatGatewayId=nat, AssociationIds=[association])
    client.release_address(AllocationId=spare)

    # spec 6.2, issue 16: deleting drains (`deleting`: the route a
    # blackhole at once, the EIP still held), then the gateway is `deleted`
    # and its EIP disassociated (still allocated).
    assert client.delete_nat_gateway(NatGatewayId=nat)["NatGatewayId"] == nat
    draining = client.describe_nat_gateways(NatGatewayIds=[nat])["NatGateways"][0]
    assert draining["State"] == "deleting"
    assert route_state() == ["blackhole"]
    assert "AssociationId" in client.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    client.get_waiter("nat_gateway_deleted").wait(NatGatewayIds=[nat], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    eip = client.describe_addresses(AllocationIds=[alloc])["Addresses"][0]
    assert "AssociationId" not in eip
    assert route_state() == ["blackhole"]
    client.delete_route(RouteTableId=table["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    client.delete_subnet(SubnetId=subnet)


def test_nat_gateway_failures_and_private(hyperplane_node):
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    alloc = client.allocate_address(Domain="vpc")["AllocationId"]
    # spec 6.1: public without an internet gateway fails.
    failed = client.create_nat_gateway(SubnetId=subnet, AllocationId=alloc)["NatGateway"]
    assert failed["State"] == "failed" and failed["FailureCode"] == "Gateway.NotAttached"
    # spec 6.1: private: no EIP, its own private addresses.
    fails("InvalidParameterCombination", client.create_nat_gateway, SubnetId=subnet,
          ConnectivityType="private", AllocationId=alloc)
    private = client.create_nat_gateway(SubnetId=subnet, ConnectivityType="private",
                                        SecondaryPrivateIpAddressCount=2)["NatGateway"]
    assert private["ConnectivityType"] == "private"
    assert len(private["NatGatewayAddresses"]) == 3
    assert all("PublicIp" not in a for a in private["NatGatewayAddresses"])
    client.get_waiter("nat_gateway_available").wait(
        NatGatewayIds=[private["NatGatewayId"]], WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    # (Gateways of earlier tests stay visible, deleted, for an hour.)
    mine = client.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NatGateways"]
    states = {g["NatGatewayId"]: g["State"] for g in mine}
    assert states == {failed["NatGatewayId"]: "failed", private["NatGatewayId"]: "available"}
    fails("NatGatewayNotFound", client.describe_nat_gateways, NatGatewayIds=["nat-0123456789abcdef0"])


def test_cross_account_peering():
    alice, bob = ec2(), ec2("bob")
    alice_id, bob_id = account_id(alice), account_id(bob)
    assert alice_id != bob_id
    va = alice.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    vb = bob.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]

    # spec 7.1: initiating-request in the answer, then pending-acceptance on
    # both sides with an expiry.
    created = alice.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=bob_id)["VpcPeeringConnection"]
    pcx = created["VpcPeeringConnectionId"]
    assert created["Status"]["Code"] == "initiating-request"
    for client in (alice, bob):
        seen = client.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]
        assert seen["Status"]["Code"] == "pending-acceptance"
        assert "ExpirationTime" in seen
        assert seen["RequesterVpcInfo"]["OwnerId"] == alice_id and seen["RequesterVpcInfo"]["VpcId"] == va
        assert seen["AccepterVpcInfo"]["OwnerId"] == bob_id and seen["AccepterVpcInfo"]["VpcId"] == vb

    # spec 7.2: the requester account cannot accept; a second request for
    # the pair is refused.
    fails("OperationNotPermitted", alice.accept_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    fails("VpcPeeringConnectionAlreadyExists", alice.create_vpc_peering_connection,
          VpcId=va, PeerVpcId=vb, PeerOwnerId=bob_id)

    # A route to it is a blackhole until the peering is active.
    table = alice.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [va]}])["RouteTables"][0]["RouteTableId"]
    alice.create_route(RouteTableId=table, DestinationCidrBlock="10.1.0.0/16", VpcPeeringConnectionId=pcx)

    def route_state():
        routes = alice.describe_route_tables(RouteTableIds=[table])["RouteTables"][0]["Routes"]
        return [r["State"] for r in routes if r.get("VpcPeeringConnectionId") == pcx][0]

    assert route_state() == "blackhole"

    # bob accepts with the aws CLI; both sides see it active.
    accepted = aws("ec2", "accept-vpc-peering-connection", "--vpc-peering-connection-id", pcx, profile="bob")
    assert accepted["VpcPeeringConnection"]["Status"]["Code"] == "active"
    for client in (alice, bob):
        assert client.describe_vpc_peering_connections(
            Filters=[{"Name": "status-code", "Values": ["active"]}])["VpcPeeringConnections"][0]["VpcPeeringConnectionId"] == pcx
    assert route_state() == "active"

    # Options are set per side by that side.
    out = alice.modify_vpc_peering_connection_options(
        VpcPeeringConnectionId=pcx, RequesterPeeringConnectionOptions={"AllowDnsResolutionFromRemoteVpc": True})
    assert out["RequesterPeeringConnectionOptions"]["AllowDnsResolutionFromRemoteVpc"] is True
    fails("OperationNotPermitted", alice.modify_vpc_peering_connection_options,
          VpcPeeringConnectionId=pcx, AccepterPeeringConnectionOptions={"AllowDnsResolutionFromRemoteVpc": True})

    # spec 7.1: either side deletes an active peering.
    bob.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    for client in (alice, bob):
        seen = client.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]
        assert seen["Status"]["Code"] == "deleted"
    assert route_state() == "blackhole"
    alice.delete_route(RouteTableId=table, DestinationCidrBlock="10.1.0.0/16")


def test_reject_and_overlap():
    alice, bob = ec2(), ec2("bob")
    bob_id = account_id(bob)
    va = alice.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    vb = bob.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
    overlapping = bob.create_vpc(CidrBlock="10.0.128.0/17")["Vpc"]["VpcId"]

    pcx = alice.create_vpc_peering_connection(VpcId=va, PeerVpcId=vb, PeerOwnerId=bob_id)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    # spec 7.2: the accepter's VPC is kept by the pending request.
    fails("DependencyViolation", bob.delete_vpc, VpcId=vb)
    bob.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx)
    fails("InvalidStateTransition", bob.accept_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    fails("InvalidStateTransition", alice.delete_vpc_peering_connection, VpcPeeringConnectionId=pcx)
    assert alice.describe_vpc_peering_connections(VpcPeeringConnectionIds=[pcx])["VpcPeeringConnections"][0]["Status"]["Code"] == "rejected"

    # spec 7.2: overlapping CIDRs fail; the accepter never sees it.
    failed = alice.create_vpc_peering_connection(VpcId=va, PeerVpcId=overlapping, PeerOwnerId=bob_id)["VpcPeeringConnection"]["VpcPeeringConnectionId"]
    assert alice.describe_vpc_peering_connections(VpcPeeringConnectionIds=[failed])["VpcPeeringConnections"][0]["Status"]["Code"] == "failed"
    fails("InvalidVpcPeeringConnectionID.NotFound", bob.describe_vpc_peering_connections, VpcPeeringConnectionIds=[failed])
