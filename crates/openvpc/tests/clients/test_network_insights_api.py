"""Reachability Analyzer paths as real clients make them (issue 14, item 4):
`aws ec2 create-network-insights-path` unchanged (the CLI fills the required
ClientToken in by itself), then describe and delete through the CLI, and
botocore's reading of the answer's shape, against an `openvpc server`
started by tests/api_clients.rs.

The test cleans up after itself, down to its VPC: conftest's wipe knows
nothing of paths (nothing else depends on one, so they never block it).
"""

import json
import os
import subprocess

import botocore.exceptions
import pytest

from conftest import ec2, error_code  # noqa: F401


def test_network_insights_path_through_the_cli():
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.50.1.0/24")["Subnet"]["SubnetId"]
    instances = client.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, SubnetId=subnet)["Instances"]
    src, dst = (i["InstanceId"] for i in instances)

    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]
    out = subprocess.run(
        aws + ["create-network-insights-path", "--source", src, "--destination", dst,
               "--protocol", "tcp", "--destination-port", "80",
               "--tag-specifications", "ResourceType=network-insights-path,Tags=[{Key=Name,Value=web}]"],
        env=env, check=True, capture_output=True, text=True,
    )
    path = json.loads(out.stdout)["NetworkInsightsPath"]
    path_id = path["NetworkInsightsPathId"]
    assert path_id.startswith("nip-")
    assert path["NetworkInsightsPathArn"].endswith(f":network-insights-path/{path_id}")
    assert (path["Source"], path["Destination"], path["Protocol"], path["DestinationPort"]) == (src, dst, "tcp", 80)
    assert path["SourceArn"].endswith(f":instance/{src}")
    assert path["Tags"] == [{"Key": "Name", "Value": "web"}]

    out = subprocess.run(
        aws + ["describe-network-insights-paths", "--network-insights-path-ids", path_id],
        env=env, check=True, capture_output=True, text=True,
    )
    assert [p["NetworkInsightsPathId"] for p in json.loads(out.stdout)["NetworkInsightsPaths"]] == [path_id]

    # botocore parses every member, the filters and the date included.
    described = client.describe_network_insights_paths(
        Filters=[{"Name": "destination", "Values": [dst]}]
    )["NetworkInsightsPaths"]
    assert [p["NetworkInsightsPathId"] for p in described] == [path_id]
    assert isinstance(described[0]["CreatedDate"].year, int)
    by_address = client.create_network_insights_path(
        Source=src, Protocol="udp",
        FilterAtSource={"DestinationAddress": "203.0.113.9", "DestinationPortRange": {"FromPort": 53, "ToPort": 53}},
    )["NetworkInsightsPath"]
    assert "Destination" not in by_address
    assert by_address["FilterAtSource"] == {
        "DestinationAddress": "203.0.113.9",
        "DestinationPortRange": {"FromPort": 53, "ToPort": 53},
    }
    # Another account sees nothing and cannot name this account's instance.
    bob = ec2("bob")
    assert bob.describe_network_insights_paths()["NetworkInsightsPaths"] == []
    with pytest.raises(botocore.exceptions.ClientError) as e:
        bob.create_network_insights_path(Source=src, Destination=dst, Protocol="tcp")
    assert error_code(e) == "InvalidInstanceID.NotFound"

    subprocess.run(
        aws + ["delete-network-insights-path", "--network-insights-path-id", path_id],
        env=env, check=True, capture_output=True,
    )
    bad = subprocess.run(
        aws + ["delete-network-insights-path", "--network-insights-path-id", path_id],
        env=env, capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "InvalidNetworkInsightsPathId.NotFound" in bad.stderr
    client.delete_network_insights_path(NetworkInsightsPathId=by_address["NetworkInsightsPathId"])

    client.terminate_instances(InstanceIds=[src, dst])
    client.delete_subnet(SubnetId=subnet)
    client.delete_vpc(VpcId=vpc)


def test_network_insights_analysis_through_the_cli():
    """`aws ec2 start-network-insights-analysis` unchanged. The server here
    runs no host, so the instances run nowhere: the analysis is stored as
    `failed` with the reason, never as a made-up verdict. The path cannot be
    deleted under its analysis (AnalysisExistsForNetworkInsightsPath)."""
    client = ec2()
    vpc = client.create_vpc(CidrBlock="10.51.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.51.1.0/24")["Subnet"]["SubnetId"]
    instances = client.run_instances(ImageId="ami-12c6146b", MinCount=2, MaxCount=2, SubnetId=subnet)["Instances"]
    src, dst = (i["InstanceId"] for i in instances)
    path_id = client.create_network_insights_path(
        Source=src, Destination=dst, Protocol="tcp", DestinationPort=22
    )["NetworkInsightsPath"]["NetworkInsightsPathId"]

    env = dict(os.environ, AWS_PROFILE="default")
    aws = [os.environ.get("OPENVPC_AWS_CLI", "aws"), "ec2", "--output", "json"]
    out = subprocess.run(
        aws + ["start-network-insights-analysis", "--network-insights-path-id", path_id,
               "--tag-specifications", "ResourceType=network-insights-analysis,Tags=[{Key=Name,Value=ssh}]"],
        env=env, check=True, capture_output=True, text=True,
    )
    analysis = json.loads(out.stdout)["NetworkInsightsAnalysis"]
    analysis_id = analysis["NetworkInsightsAnalysisId"]
    assert analysis_id.startswith("nia-")
    assert analysis["NetworkInsightsPathId"] == path_id
    assert analysis["Status"] == "failed"
    assert "no host" in analysis["StatusMessage"]
    assert "NetworkPathFound" not in analysis
    assert analysis["Tags"] == [{"Key": "Name", "Value": "ssh"}]

    described = client.describe_network_insights_analyses(
        NetworkInsightsPathId=path_id, Filters=[{"Name": "status", "Values": ["failed"]}]
    )["NetworkInsightsAnalyses"]
    assert [a["NetworkInsightsAnalysisId"] for a in described] == [analysis_id]
    assert isinstance(described[0]["StartDate"].year, int)

    bad = subprocess.run(
        aws + ["delete-network-insights-path", "--network-insights-path-id", path_id],
        env=env, capture_output=True, text=True,
    )
    assert bad.returncode != 0 and "AnalysisExistsForNetworkInsightsPath" in bad.stderr
    # Cross-account analysis is refused; another account cannot run this path.
    with pytest.raises(botocore.exceptions.ClientError) as e:
        client.start_network_insights_analysis(NetworkInsightsPathId=path_id, AdditionalAccounts=["222222222222"])
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(botocore.exceptions.ClientError) as e:
        ec2("bob").start_network_insights_analysis(NetworkInsightsPathId=path_id)
    assert error_code(e) == "InvalidNetworkInsightsPathId.NotFound"

    subprocess.run(
        aws + ["delete-network-insights-analysis", "--network-insights-analysis-id", analysis_id],
        env=env, check=True, capture_output=True,
    )
    client.delete_network_insights_path(NetworkInsightsPathId=path_id)
    client.terminate_instances(InstanceIds=[src, dst])
    client.delete_subnet(SubnetId=subnet)
    client.delete_vpc(VpcId=vpc)
