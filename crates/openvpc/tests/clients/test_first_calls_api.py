"""What real AWS tools ask before anything else (issue 12), from the real aws
CLI and boto3 against an `openvpc server` in production mode: STS
`GetCallerIdentity`, EC2 `DescribeAccountAttributes`, ELBv2 listener
attributes (spec 9.6), deletes that tools repeat, and a request signed for a
service the endpoint does not serve.

Environment as tests/api_clients.rs sets it (AWS_ENDPOINT_URL applies to
every service, so `aws sts` reaches openvpc too).
"""

import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest

from conftest import ENDPOINT, ec2, elbv2, error_code


def aws(*args, profile="default", check=True):
    env = dict(os.environ, AWS_PROFILE=profile)
    out = subprocess.run(
        [os.environ.get("OPENVPC_AWS_CLI", "aws"), "--output", "json", *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if check:
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None
    return out


def test_sts_get_caller_identity_names_each_accounts_root():
    # Issue 12: the account's own keys are its root user; UserId is the
    # account ID, as AWS answers for root credentials.
    ids = {}
    for profile in ("default", "bob"):
        me = aws("sts", "get-caller-identity", profile=profile)
        assert me["UserId"] == me["Account"]
        assert len(me["Account"]) == 12 and me["Account"].isdigit()
        assert me["Arn"] == f"arn:aws:iam::{me['Account']}:root"
        ids[profile] = me["Account"]
    assert ids["default"] != ids["bob"]
    # The same account EC2 says owns what the caller makes.
    vpc = ec2().create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    assert vpc["OwnerId"] == ids["default"]
    session = boto3.Session(profile_name="bob", region_name="us-east-1")
    assert session.client("sts", endpoint_url=ENDPOINT).get_caller_identity()["Account"] == ids["bob"]


def test_sts_refuses_other_actions_and_unknown_keys():
    sts = boto3.Session(profile_name="default", region_name="us-east-1").client("sts", endpoint_url=ENDPOINT)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        sts.get_session_token()
    assert error_code(e) == "InvalidAction"
    assert e.value.response["Error"]["Type"] == "Sender"
    unknown = boto3.client(
        "sts", endpoint_url=ENDPOINT, region_name="us-east-1",
        aws_access_key_id="AKIAUNKNOWNUNKNOWN00", aws_secret_access_key="x" * 40,
    )
    with pytest.raises(botocore.exceptions.ClientError) as e:
        unknown.get_caller_identity()
    assert error_code(e) == "InvalidClientTokenId"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_describe_account_attributes_with_the_cli():
    # conftest's wipe deleted the default VPC (spec 1.3: it stays deleted).
    attrs = aws("ec2", "describe-account-attributes")["AccountAttributes"]
    values = {a["AttributeName"]: [v["AttributeValue"] for v in a["AttributeValues"]] for a in attrs}
    assert values == {
        "vpc-max-security-groups-per-interface": ["5"],
        "max-instances": ["20"],
        "supported-platforms": ["VPC"],
        "default-vpc": ["none"],
        "max-elastic-ips": ["5"],
        "vpc-max-elastic-ips": ["5"],
    }
    default = aws("ec2", "create-default-vpc")["Vpc"]["VpcId"]
    attrs = aws("ec2", "describe-account-attributes", "--attribute-names", "default-vpc", "supported-platforms")[
        "AccountAttributes"
    ]
    assert [a["AttributeName"] for a in attrs] == ["supported-platforms", "default-vpc"]
    assert attrs[1]["AttributeValues"] == [{"AttributeValue": default}]
    bad = aws("ec2", "describe-account-attributes", "--attribute-names", "max-vpcs", check=False)
    assert bad.returncode != 0 and "InvalidParameterValue" in bad.stderr, bad.stderr


def test_listener_idle_timeout_with_the_cli():
    # spec 9.6: 350 s by default, 60-6000 s, TCP listeners only.
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.21.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.21.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    lb_client = elbv2()
    lb = lb_client.create_load_balancer(Name="idle", Type="network", Scheme="internal", Subnets=[subnet])[
        "LoadBalancers"
    ][0]["LoadBalancerArn"]
    tg = lb_client.create_target_group(Name="idle-tg", Protocol="TCP", Port=80, VpcId=vpc)["TargetGroups"][0][
        "TargetGroupArn"
    ]
    listener = lb_client.create_listener(
        LoadBalancerArn=lb, Protocol="TCP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}]
    )["Listeners"][0]["ListenerArn"]
    described = aws("elbv2", "describe-listener-attributes", "--listener-arn", listener)
    assert described["Attributes"] == [{"Key": "tcp.idle_timeout.seconds", "Value": "350"}]
    modified = aws(
        "elbv2", "modify-listener-attributes", "--listener-arn", listener,
        "--attributes", "Key=tcp.idle_timeout.seconds,Value=500",
    )
    assert modified["Attributes"] == [{"Key": "tcp.idle_timeout.seconds", "Value": "500"}]
    assert lb_client.describe_listener_attributes(ListenerArn=listener)["Attributes"] == [
        {"Key": "tcp.idle_timeout.seconds", "Value": "500"}
    ]
    bad = aws(
        "elbv2", "modify-listener-attributes", "--listener-arn", listener,
        "--attributes", "Key=tcp.idle_timeout.seconds,Value=59", check=False,
    )
    assert bad.returncode != 0 and "ValidationError" in bad.stderr, bad.stderr
    gone = listener.rsplit("/", 1)[0] + "/0000000000000000"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        lb_client.describe_listener_attributes(ListenerArn=gone)
    assert error_code(e) == "ListenerNotFound"


def test_repeated_deletes_succeed_as_on_aws():
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.22.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.22.1.0/24")["Subnet"]["SubnetId"]
    nat = client.create_nat_gateway(SubnetId=subnet, ConnectivityType="private")["NatGateway"]["NatGatewayId"]
    assert client.delete_nat_gateway(NatGatewayId=nat)["NatGatewayId"] == nat
    # Still visible (deleting, then deleted): deleting it again is not an error.
    assert client.delete_nat_gateway(NatGatewayId=nat)["NatGatewayId"] == nat
    table = client.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]["RouteTableId"]
    vpce = client.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.us-east-1.s3", RouteTableIds=[table]
    )["VpcEndpoint"]["VpcEndpointId"]
    assert client.delete_vpc_endpoints(VpcEndpointIds=[vpce])["Unsuccessful"] == []
    again = client.delete_vpc_endpoints(VpcEndpointIds=[vpce])["Unsuccessful"]
    assert [(u["ResourceId"], u["Error"]["Code"]) for u in again] == [(vpce, "InvalidVpcEndpointId.NotFound")]


def test_unserved_service_is_refused_with_the_scope_error():
    # Issue 12 (bad input): a request signed for a service the endpoint does
    # not serve is refused as AWS refuses a credential scoped to another
    # service, naming the services that are served.
    session = boto3.Session(profile_name="default", region_name="us-east-1")
    iam = session.client("iam", endpoint_url=ENDPOINT)
    with pytest.raises(botocore.exceptions.ClientError) as e:
        iam.list_users()
    assert error_code(e) == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = e.value.response["Error"]["Message"]
    assert "'iam'" in message and "'ec2'" in message and "'sts'" in message, message
