"""The client half of tests/durability.rs: a stream of writes against
`openvpc server`, and, after the server was killed with SIGKILL and
restarted, the check that every acknowledged write survived whole.

`stream.py write ACKS` loops, until the server goes away: CreateVpc (whose
default security group comes in the same transaction), CreateSecurityGroup
in it, DeleteSecurityGroup, DeleteVpc; after each acknowledged call it
appends a line `created|deleted KIND ID [VPC]` to ACKS and flushes it.

`stream.py check ACKS` asserts: every acknowledged creation not followed by
an acknowledged deletion exists; every acknowledged deletion is gone; every
VPC has exactly one default group and every group's VPC exists (nothing
half-created or half-deleted). It exits non-zero with the reasons. The one
call in flight when a server died may or may not have happened: the stream
writes `start` when it begins, so the last line before each `start` (and
the file's last line) tells which object that call was about.
"""

import os
import sys

import boto3
import botocore.config


def ec2():
    session = boto3.Session(region_name="us-east-1")
    config = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10)
    return session.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=config)


def write(path):
    client = ec2()
    with open(path, "a", encoding="utf-8") as acks:

        def ack(line):
            acks.write(line + "\n")
            acks.flush()
            os.fsync(acks.fileno())

        ack("start")
        i = 0
        while True:
            try:
                vpc = client.create_vpc(CidrBlock=f"10.{i % 250}.0.0/16")["Vpc"]["VpcId"]
                ack(f"created vpc {vpc}")
                sg = client.create_security_group(VpcId=vpc, GroupName=f"g{i}", Description="stream")["GroupId"]
                ack(f"created sg {sg} {vpc}")
                client.delete_security_group(GroupId=sg)
                ack(f"deleted sg {sg} {vpc}")
                client.delete_vpc(VpcId=vpc)
                ack(f"deleted vpc {vpc}")
            except Exception as e:  # the server was killed: the stream ends here
                print(f"stream ended after {i} rounds: {type(e).__name__}", file=sys.stderr)
                return
            i += 1


def check(path):
    client = ec2()
    live = {}
    gone = set()
    lines = [line.split() for line in open(path, encoding="utf-8")]
    # The call after a round's last acknowledgement was in flight when the
    # server died: the group it deleted, or the VPC it deleted, may be gone.
    in_flight = set()
    ends = [lines[i - 1] for i, line in enumerate(lines) if line == ["start"] and i > 0] + lines[-1:]
    for last in ends:
        if last[:2] == ["created", "sg"]:
            in_flight.add(last[2])
        elif last[:2] == ["deleted", "sg"]:
            in_flight.add(last[3])
    for line in lines:
        if line == ["start"]:
            continue
        verb, kind, ident = line[:3]
        if verb == "created":
            live[ident] = kind
        else:
            live.pop(ident, None)
            gone.add(ident)
    vpcs = {v["VpcId"] for v in client.describe_vpcs()["Vpcs"]}
    groups = client.describe_security_groups()["SecurityGroups"]
    group_ids = {g["GroupId"] for g in groups}
    problems = []
    for ident, kind in live.items():
        if ident not in (vpcs if kind == "vpc" else group_ids) and ident not in in_flight:
            problems.append(f"acknowledged {kind} {ident} is missing")
    for ident in gone:
        if ident in vpcs or ident in group_ids:
            problems.append(f"acknowledged deletion of {ident} did not last")
    for vpc in vpcs:
        defaults = [g for g in groups if g["VpcId"] == vpc and g["GroupName"] == "default"]
        if len(defaults) != 1:
            problems.append(f"{vpc} has {len(defaults)} default groups: half-created or half-deleted")
    for g in groups:
        if g["VpcId"] not in vpcs:
            problems.append(f"group {g['GroupId']} outlived its VPC {g['VpcId']}")
    print(f"checked {len(live)} live and {len(gone)} deleted acknowledged objects")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](sys.argv[2])
