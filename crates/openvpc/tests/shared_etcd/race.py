"""The client half of tests/shared_etcd.rs: two `openvpc server`s on one etcd.

`race.py ENDPOINT_A ENDPOINT_B` (credentials and region from the
environment): a VPC created through A is visible through B; then threads
through both servers create the same /24 subnets of that VPC at once. Each
CIDR must be created exactly once (the other attempt gets
InvalidSubnet.Conflict), and both servers must then describe the same
subnets, none overlapping. Exits non-zero with the reasons.
"""

import ipaddress
import sys
import threading

import boto3
import botocore.config
import botocore.exceptions


def ec2(endpoint):
    session = boto3.Session(region_name="us-east-1")
    config = botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30)
    return session.client("ec2", endpoint_url=endpoint, config=config)


def main(a_url, b_url):
    a, b = ec2(a_url), ec2(b_url)
    vpc = a.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    seen = b.describe_vpcs(VpcIds=[vpc])["Vpcs"]
    assert [v["VpcId"] for v in seen] == [vpc], f"B does not see A's VPC: {seen}"

    cidrs = [f"10.0.{i}.0/24" for i in range(12)]
    created, refused, errors = [], [], []
    lock = threading.Lock()

    def worker(url, order):
        client = ec2(url)
        for cidr in order:
            # A lost race inside the server is retried there; a 503 asks the
            # caller to retry, which is what a client does.
            for _ in range(20):
                try:
                    subnet = client.create_subnet(VpcId=vpc, CidrBlock=cidr)["Subnet"]["SubnetId"]
                    with lock:
                        created.append((cidr, subnet))
                    break
                except botocore.exceptions.ClientError as e:
                    code = e.response["Error"]["Code"]
                    if code == "RequestLimitExceeded":
                        continue
                    with lock:
                        (refused if code == "InvalidSubnet.Conflict" else errors).append((cidr, code))
                    break

    threads = []
    for i in range(2):
        for url in (a_url, b_url):
            order = cidrs if i == 0 else list(reversed(cidrs))
            threads.append(threading.Thread(target=worker, args=(url, order)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    problems = []
    if errors:
        problems.append(f"unexpected errors: {errors}")
    by_cidr = {}
    for cidr, subnet in created:
        by_cidr.setdefault(cidr, []).append(subnet)
    for cidr in cidrs:
        if len(by_cidr.get(cidr, [])) != 1:
            problems.append(f"{cidr} was created {len(by_cidr.get(cidr, []))} times")
    if len(refused) != 4 * len(cidrs) - len(created):
        problems.append(f"{len(created)} created and {len(refused)} refused of {4 * len(cidrs)} attempts")
    for name, client in (("A", a), ("B", b)):
        subnets = client.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        nets = sorted(ipaddress.ip_network(s["CidrBlock"]) for s in subnets)
        if [str(n) for n in nets] != sorted(cidrs, key=ipaddress.ip_network):
            problems.append(f"{name} describes {[str(n) for n in nets]}")
        for x, y in zip(nets, nets[1:]):
            if x.overlaps(y):
                problems.append(f"{name}: {x} overlaps {y}")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(created)} subnets created, {len(refused)} attempts refused as conflicts")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
