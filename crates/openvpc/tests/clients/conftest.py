"""What every client test shares: a clean region before each test.

`wipe` deletes everything the accounts own, in the order dependencies
demand (spec 1.7): load balancers and target groups first (ELBv2,
`wipe_load_balancers`), then instances, addresses and interfaces, then
subnets and what subnets hold, custom tables, ACLs and groups, gateways, and the
VPCs themselves (the default VPC too, which then stays deleted, spec 1.3).
"""

import os

import boto3
import botocore.exceptions
import pytest

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
PROFILES = ("default", "bob")


def ec2(profile="default", **kwargs):
    session = boto3.Session(profile_name=profile, region_name="us-east-1")
    return session.client("ec2", endpoint_url=ENDPOINT, **kwargs)


def elbv2(profile="default", **kwargs):
    session = boto3.Session(profile_name=profile, region_name="us-east-1")
    return session.client("elbv2", endpoint_url=ENDPOINT, **kwargs)


def wipe_load_balancers(client):
    # Load balancers hold their subnets and their listeners hold target
    # groups, so they go before anything of EC2's; deleting a load balancer
    # deletes its listeners.
    for lb in client.describe_load_balancers()["LoadBalancers"]:
        client.modify_load_balancer_attributes(
            LoadBalancerArn=lb["LoadBalancerArn"],
            Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}],
        )
        client.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    for group in client.describe_target_groups()["TargetGroups"]:
        client.delete_target_group(TargetGroupArn=group["TargetGroupArn"])


def wipe(client):
    # Live peerings: pending ones from another account keep the accepter's
    # VPC (spec 7.2), so the accepter rejects them and the requester
    # withdraws its own; active ones are deleted.
    for pcx in client.describe_vpc_peering_connections()["VpcPeeringConnections"]:
        state = pcx["Status"]["Code"]
        if state == "pending-acceptance":
            try:
                client.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx["VpcPeeringConnectionId"])
            except botocore.exceptions.ClientError:
                client.reject_vpc_peering_connection(VpcPeeringConnectionId=pcx["VpcPeeringConnectionId"])
        elif state == "active":
            client.delete_vpc_peering_connection(VpcPeeringConnectionId=pcx["VpcPeeringConnectionId"])
    # NAT gateways hold an ENI in their subnet (spec 6.1) and their EIPs
    # until they are `deleted`: a deleting one drains first (issue 16).
    going = []
    for gateway in client.describe_nat_gateways()["NatGateways"]:
        if gateway["State"] not in ("deleted", "failed"):
            client.delete_nat_gateway(NatGatewayId=gateway["NatGatewayId"])
            going.append(gateway["NatGatewayId"])
    if going:
        client.get_waiter("nat_gateway_deleted").wait(
            NatGatewayIds=going, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    live = client.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]
    )["Reservations"]
    ids = [i["InstanceId"] for r in live for i in r["Instances"]]
    if ids:
        client.terminate_instances(InstanceIds=ids)
    for address in client.describe_addresses()["Addresses"]:
        if address.get("AssociationId"):
            client.disassociate_address(AssociationId=address["AssociationId"])
        client.release_address(AllocationId=address["AllocationId"])
    for eni in client.describe_network_interfaces()["NetworkInterfaces"]:
        attachment = eni.get("Attachment")
        if attachment and attachment["DeviceIndex"] != 0:
            client.detach_network_interface(AttachmentId=attachment["AttachmentId"])
        client.delete_network_interface(NetworkInterfaceId=eni["NetworkInterfaceId"])
    # Tables hold subnets and gateways; subnets hold ACL associations; custom
    # tables and ACLs hold the VPC.
    for table in client.describe_route_tables()["RouteTables"]:
        for assoc in table["Associations"]:
            if not assoc["Main"]:
                client.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
    for table in client.describe_route_tables()["RouteTables"]:
        if not any(a["Main"] for a in table["Associations"]):
            client.delete_route_table(RouteTableId=table["RouteTableId"])
    for subnet in client.describe_subnets()["Subnets"]:
        client.delete_subnet(SubnetId=subnet["SubnetId"])
    for acl in client.describe_network_acls(Filters=[{"Name": "default", "Values": ["false"]}])["NetworkAcls"]:
        client.delete_network_acl(NetworkAclId=acl["NetworkAclId"])
    # Rules that reference other groups block DeleteSecurityGroup: drop them first.
    groups = client.describe_security_groups()["SecurityGroups"]
    for group in groups:
        if group["IpPermissions"]:
            client.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
    for group in groups:
        if group["GroupName"] != "default":
            client.delete_security_group(GroupId=group["GroupId"])
    # Flow logs go with their resources; VPN connections hold their
    # gateways, and an attached VPN gateway blocks DeleteVpc (spec 10.1).
    flow_logs = [f["FlowLogId"] for f in client.describe_flow_logs()["FlowLogs"]]
    if flow_logs:
        client.delete_flow_logs(FlowLogIds=flow_logs)
    for connection in client.describe_vpn_connections()["VpnConnections"]:
        if connection["State"] != "deleted":
            client.delete_vpn_connection(VpnConnectionId=connection["VpnConnectionId"])
    for gateway in client.describe_customer_gateways()["CustomerGateways"]:
        if gateway["State"] != "deleted":
            client.delete_customer_gateway(CustomerGatewayId=gateway["CustomerGatewayId"])
    for gateway in client.describe_vpn_gateways()["VpnGateways"]:
        for attachment in gateway["VpcAttachments"]:
            if attachment["State"] == "attached":
                client.detach_vpn_gateway(VpnGatewayId=gateway["VpnGatewayId"], VpcId=attachment["VpcId"])
        if gateway["State"] != "deleted":
            client.delete_vpn_gateway(VpnGatewayId=gateway["VpnGatewayId"])
    for gateway in client.describe_egress_only_internet_gateways()["EgressOnlyInternetGateways"]:
        client.delete_egress_only_internet_gateway(EgressOnlyInternetGatewayId=gateway["EgressOnlyInternetGatewayId"])
    for gateway in client.describe_internet_gateways()["InternetGateways"]:
        for attachment in gateway["Attachments"]:
            client.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=attachment["VpcId"])
        client.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    # Gateway endpoints block DeleteVpc (spec 1.7); their routes go with them.
    endpoints = [e["VpcEndpointId"] for e in client.describe_vpc_endpoints()["VpcEndpoints"]]
    if endpoints:
        client.delete_vpc_endpoints(VpcEndpointIds=endpoints)
    for vpc in client.describe_vpcs()["Vpcs"]:
        client.delete_vpc(VpcId=vpc["VpcId"])
    # Rules and routes naming prefix lists are gone with their groups and
    # tables; the account's own lists can go now.
    for pl in client.describe_managed_prefix_lists()["PrefixLists"]:
        if pl["OwnerId"] != "AWS":
            client.delete_managed_prefix_list(PrefixListId=pl["PrefixListId"])
    # DHCP options sets outlive VPCs (spec 1.6): delete them last.
    for dopt in client.describe_dhcp_options()["DhcpOptions"]:
        client.delete_dhcp_options(DhcpOptionsId=dopt["DhcpOptionsId"])


@pytest.fixture(autouse=True)
def clean():
    # Before each test only: every test starts from an empty region, and what
    # the last one leaves dies with the server.
    for profile in PROFILES:
        wipe_load_balancers(elbv2(profile))
        wipe(ec2(profile))


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]
