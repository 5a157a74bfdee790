"""Client tokens as botocore uses them (spec 12.1): it fills `ClientToken` in
by itself on CreateRouteTable, CreateNetworkInterface, RunInstances and other
creates, and resends the same request when a call times out. The retry here
is forced with a `needs-retry` hook that asks botocore to send a request
again after its first answer, as it would after a timeout; the server must
answer with what the first send made and make nothing new.
"""

import botocore.exceptions
import pytest

from conftest import ec2, error_code  # noqa: F401


def resend_once(client, operation):
    """Makes botocore send `operation`'s request a second time, unchanged."""
    sent = []

    def needs_retry(attempts, **_):
        sent.append(attempts)
        return 0 if attempts == 1 else None

    client.meta.events.register(f"needs-retry.ec2.{operation}", needs_retry)
    return sent


def test_botocore_retry_makes_one_resource():
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24")["Subnet"]["SubnetId"]

    sent = resend_once(client, "CreateRouteTable")
    table = client.create_route_table(VpcId=vpc)
    assert sent == [1, 2], "botocore sent the request twice"
    # botocore filled the token in; the answer echoes it.
    assert table["ClientToken"]
    tables = client.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    assert len(tables["RouteTables"]) == 2, "the main table and one custom table"

    resend_once(client, "CreateNetworkInterface")
    eni = client.create_network_interface(SubnetId=subnet)["NetworkInterface"]
    enis = client.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet]}])
    assert [e["NetworkInterfaceId"] for e in enis["NetworkInterfaces"]] == [eni["NetworkInterfaceId"]]

    # The same token with other parameters is refused.
    client.create_network_acl(VpcId=vpc, ClientToken="acl-token-1")
    other = client.create_vpc(CidrBlock="10.41.0.0/16")["Vpc"]["VpcId"]
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.create_network_acl(VpcId=other, ClientToken="acl-token-1")
    assert error_code(e) == "IdempotentParameterMismatch"
