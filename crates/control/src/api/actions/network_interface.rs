//! Elastic network interfaces (spec 3.2, 3.3, 5.4, 12): CreateNetworkInterface,
//! DeleteNetworkInterface, DescribeNetworkInterfaces, Attach/Detach,
//! Modify/DescribeNetworkInterfaceAttribute, Assign/UnassignPrivateIpAddresses
//! and Assign/UnassignIpv6Addresses.
//!
//! An ENI owns its private addresses and its IPv6 addresses in its subnet's
//! address book ([`Subnet::allocate`], [`Subnet::allocate_ipv6`]), its
//! security groups, its source/destination check
//! and conntrack timeouts, and the public addresses mapped onto its private
//! ones (an auto-assigned public IPv4 or an Elastic IP, see `address.rs`).
//! Instances (`instance.rs`) create, attach and delete ENIs through the
//! helpers here, so every path keeps the address book and the public pool
//! in step.
//!
//! IPv6 addresses are records only: the dataplane carries no IPv6 yet, and
//! the fleet compiler pushes none to hosts.

use std::net::{Ipv4Addr, Ipv6Addr};

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::InstanceState;
use openvpc_model::time::timestamp;
use rand::RngExt;

use super::address::{self, Address};
use super::idempotency::{self, ClientToken};
use super::instance::{self as instance_mod, Instance};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::security_group;
use super::subnet::Subnet;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::network_interface::{
    Attachment, Conntrack, GroupRef, NetworkInterface, PublicMapping, TCP_ESTABLISHED_DEFAULT,
    UDP_DEFAULT, UDP_STREAM_DEFAULT,
};

/// spec 3.3: security groups per ENI (default quota).
pub const GROUPS_PER_INTERFACE: usize = 5;

/// Private IPv4 addresses per ENI, primary included. AWS's limit depends on
/// the instance type (from 2 on a t2.nano to 50 on the largest types); we
/// apply one fixed limit, that of a mid-sized type such as m5.large (10).
pub const PRIVATE_IPS_PER_INTERFACE: usize = 10;

/// IPv6 addresses per ENI. Like the IPv4 limit it depends on the instance
/// type in AWS; we apply that of a mid-sized type such as m5.large (10).
pub const IPV6_ADDRESSES_PER_INTERFACE: usize = 10;

/// `ip-10-0-0-5.ec2.internal` in us-east-1, `ip-….REGION.compute.internal` elsewhere.
pub fn private_dns_name(region: &str, ip: Ipv4Addr) -> String {
    let host = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ip-{host}.ec2.internal")
    } else {
        format!("ip-{host}.{region}.compute.internal")
    }
}

/// `ec2-198-51-100-4.compute-1.amazonaws.com` in us-east-1, `….REGION.compute.amazonaws.com` elsewhere.
pub fn public_dns_name(region: &str, ip: Ipv4Addr) -> String {
    let host = ip.to_string().replace('.', "-");
    if region == "us-east-1" {
        format!("ec2-{host}.compute-1.amazonaws.com")
    } else {
        format!("ec2-{host}.{region}.compute.amazonaws.com")
    }
}

fn write_association(x: &mut Xml, region: &str, p: &PublicMapping) {
    x.node("association", |x| {
        x.elem("publicIp", p.public_ip)
            .elem("publicDnsName", public_dns_name(region, p.public_ip))
            .elem("ipOwnerId", &p.ip_owner_id)
            .opt("allocationId", p.allocation_id.as_deref())
            .opt("associationId", p.association_id.as_deref());
    });
}

pub fn write_groups(x: &mut Xml, groups: &[GroupRef]) {
    x.list("groupSet", groups, |x, g| {
        x.elem("groupId", &g.id).elem("groupName", &g.name);
    });
}

fn write_attachment(x: &mut Xml, a: &Attachment) {
    x.node("attachment", |x| {
        x.elem("attachmentId", &a.id)
            .elem("instanceId", &a.instance_id)
            .elem("instanceOwnerId", &a.instance_owner_id)
            .elem("deviceIndex", a.device_index)
            .elem("networkCardIndex", 0)
            .elem("status", "attached")
            .elem("attachTime", &a.attach_time)
            .elem("deleteOnTermination", a.delete_on_termination);
    });
}

/// The attachment AWS shows on a requester-managed interface: to its
/// service's node (`ela-attach-…`, owner `amazon-aws`, no instance). It is
/// not stored: it follows from the interface, and DetachNetworkInterface
/// refuses it ([`service_attachment_id`]).
fn write_service_attachment(x: &mut Xml, e: &NetworkInterface) {
    x.node("attachment", |x| {
        x.elem("attachmentId", service_attachment_id(e))
            .elem("instanceOwnerId", "amazon-aws")
            .elem("deviceIndex", 1)
            .elem("networkCardIndex", 0)
            .elem("status", "attached")
            .elem("deleteOnTermination", false);
    });
}

/// The ID of a requester-managed interface's service attachment: the
/// prefix AWS uses and the first 8 hex digits of the interface's ID.
fn service_attachment_id(e: &NetworkInterface) -> String {
    let hex = e.id.trim_start_matches("eni-");
    format!("ela-attach-{}", &hex[..hex.len().min(8)])
}

fn write_conntrack(x: &mut Xml, c: &Conntrack) {
    x.node("connectionTrackingConfiguration", |x| {
        x.elem("tcpEstablishedTimeout", c.tcp_established)
            .elem("udpStreamTimeout", c.udp_stream)
            .elem("udpTimeout", c.udp);
    });
}

/// The members an ENI has both in DescribeNetworkInterfaces and inside an
/// instance's `networkInterfaceSet`.
pub fn write_common(x: &mut Xml, e: &NetworkInterface) {
    x.elem("networkInterfaceId", &e.id)
        .elem("subnetId", &e.subnet_id)
        .elem("vpcId", &e.vpc_id)
        .elem("description", &e.description)
        .elem("ownerId", &e.owner_id)
        .elem("status", e.status())
        .elem("macAddress", &e.mac_address)
        .opt("privateIpAddress", e.primary_ip())
        .opt(
            "privateDnsName",
            e.primary_ip().map(|ip| private_dns_name(&e.region, ip)),
        )
        .elem("sourceDestCheck", e.source_dest_check)
        .elem("interfaceType", &e.interface_type);
    write_groups(x, &e.groups);
    if let Some(p) = e.primary_public() {
        write_association(x, &e.region, p);
    }
    let primary = e.primary_ip();
    x.list("privateIpAddressesSet", &e.private_ips, |x, ip| {
        x.elem("privateIpAddress", ip)
            .elem("privateDnsName", private_dns_name(&e.region, *ip))
            .elem("primary", Some(*ip) == primary);
        if let Some(p) = e.public.iter().find(|p| p.private_ip == *ip) {
            write_association(x, &e.region, p);
        }
    })
    .list("ipv6AddressesSet", &e.ipv6_addresses, |x, ip| {
        // EnablePrimaryIpv6 is not offered, so no address is primary.
        x.elem("ipv6Address", ip).elem("isPrimaryIpv6", false);
    });
    if let Some(c) = &e.conntrack {
        write_conntrack(x, c);
    }
}

/// The service that made a requester-managed interface, as EC2 names it
/// (`requesterId`): `amazon-elb` for a load balancer's.
fn requester_id(e: &NetworkInterface) -> Option<&'static str> {
    match e.interface_type.as_str() {
        "network_load_balancer" => Some("amazon-elb"),
        _ => None,
    }
}

impl Resource for NetworkInterface {
    const KIND: ResourceKind = ResourceKind::NetworkInterface;
    const NOT_FOUND: &'static str = "InvalidNetworkInterfaceID.NotFound";
    const NOUN: &'static str = "networkInterface";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |v: String| Some(vec![v]);
        let ips = || self.private_ips.iter().map(ToString::to_string).collect();
        let att = |f: fn(&Attachment) -> String| self.attachment.iter().map(f).collect();
        match name {
            "network-interface-id" => one(self.id.clone()),
            "subnet-id" => one(self.subnet_id.clone()),
            "vpc-id" => one(self.vpc_id.clone()),
            "private-ip-address" | "addresses.private-ip-address" => Some(ips()),
            "addresses.primary" => Some(
                self.private_ips
                    .iter()
                    .enumerate()
                    .map(|(i, _)| (i == 0).to_string())
                    .collect(),
            ),
            "private-dns-name" => Some(
                self.private_ips
                    .iter()
                    .map(|ip| private_dns_name(&self.region, *ip))
                    .collect(),
            ),
            "association.public-ip" | "addresses.association.public-ip" => Some(
                self.public
                    .iter()
                    .map(|p| p.public_ip.to_string())
                    .collect(),
            ),
            "association.allocation-id" => Some(
                self.public
                    .iter()
                    .filter_map(|p| p.allocation_id.clone())
                    .collect(),
            ),
            "association.association-id" => Some(
                self.public
                    .iter()
                    .filter_map(|p| p.association_id.clone())
                    .collect(),
            ),
            "group-id" => Some(self.groups.iter().map(|g| g.id.clone()).collect()),
            "group-name" => Some(self.groups.iter().map(|g| g.name.clone()).collect()),
            "status" => one(self.status().into()),
            "attachment.instance-id" => Some(att(|a| a.instance_id.clone())),
            "attachment.instance-owner-id" => Some(att(|a| a.instance_owner_id.clone())),
            "attachment.attachment-id" => Some(att(|a| a.id.clone())),
            "attachment.device-index" => Some(att(|a| a.device_index.to_string())),
            "attachment.delete-on-termination" => {
                Some(att(|a| a.delete_on_termination.to_string()))
            }
            "attachment.status" => Some(att(|_| "attached".into())),
            "availability-zone" => one(self.availability_zone.clone()),
            "description" => one(self.description.clone()),
            "mac-address" => one(self.mac_address.clone()),
            "owner-id" => one(self.owner_id.clone()),
            "requester-managed" => one(self.requester_managed.to_string()),
            "source-dest-check" => one(self.source_dest_check.to_string()),
            "interface-type" => one(self.interface_type.clone()),
            "ipv6-addresses.ipv6-address" | "ipv6-address" => Some(
                self.ipv6_addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        write_common(x, self);
        // An interface without IPv4 addresses is IPv6-only.
        x.opt("ipv6Address", self.ipv6_addresses.first())
            .elem("ipv6Native", self.private_ips.is_empty())
            .elem("availabilityZone", &self.availability_zone)
            .elem("availabilityZoneId", &self.availability_zone_id)
            .opt("requesterId", requester_id(self))
            .elem("requesterManaged", self.requester_managed);
        if let Some(a) = &self.attachment {
            write_attachment(x, a);
        } else if self.requester_managed {
            write_service_attachment(x, self);
        }
        write_tags(x, &self.tags);
    }
}

/// The ENI actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateNetworkInterface" => create(ctx, params),
        "DeleteNetworkInterface" => delete(ctx, params),
        "DescribeNetworkInterfaces" => describe(ctx, params),
        "AttachNetworkInterface" => attach(ctx, params),
        "DetachNetworkInterface" => detach(ctx, params),
        "ModifyNetworkInterfaceAttribute" => modify_attribute(ctx, params),
        "DescribeNetworkInterfaceAttribute" => describe_attribute(ctx, params),
        "AssignPrivateIpAddresses" => assign_private_ips(ctx, params),
        "UnassignPrivateIpAddresses" => unassign_private_ips(ctx, params),
        "AssignIpv6Addresses" => assign_ipv6(ctx, params),
        "UnassignIpv6Addresses" => unassign_ipv6(ctx, params),
        _ => return None,
    })
}

/// An IPv4 address parameter.
pub fn parse_ip(name: &str, text: &str) -> Result<Ipv4Addr, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_value(name, text, "This is not a valid IPv4 address."))
}

/// An IPv6 address parameter.
pub fn parse_ipv6(name: &str, text: &str) -> Result<Ipv6Addr, ApiError> {
    text.parse()
        .map_err(|_| ApiError::invalid_value(name, text, "This is not a valid IPv6 address."))
}

/// The addresses a request lists as `name.N`, each parsed by `parse`.
fn listed<T>(
    params: &Params,
    name: &str,
    parse: fn(&str, &str) -> Result<T, ApiError>,
) -> Result<Vec<T>, ApiError> {
    params.list(name)?.iter().map(|t| parse(name, t)).collect()
}

/// The addresses an Unassign call lists as `name.N`: at least one.
fn to_unassign<T>(
    params: &Params,
    name: &str,
    parse: fn(&str, &str) -> Result<T, ApiError>,
) -> Result<Vec<T>, ApiError> {
    let gone = listed(params, name, parse)?;
    if gone.is_empty() {
        return Err(ApiError::missing_parameter(&format!("{name}.1")));
    }
    Ok(gone)
}

/// AWS's answer to unassigning an address the interface does not have.
fn not_assigned(id: &str, ip: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!("Some of the specified addresses are not assigned to interface {id}: {ip}"),
    )
}

fn too_many_ipv6(n: usize) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!(
            "Number of IPv6 addresses ({n}) exceeds the limit of {IPV6_ADDRESSES_PER_INTERFACE} per network interface."
        ),
    )
}

/// AWS's answer when both forms are given (RunInstances, CreateNetworkInterface,
/// AssignIpv6Addresses alike).
fn both_ipv6_forms() -> ApiError {
    ApiError::new(
        "InvalidParameterCombination",
        "IPv6 addresses and IPv6 address count may not be specified on the same request",
    )
}

/// IPv6 prefix delegation is not offered; a request for it is refused
/// rather than answered without the prefixes.
fn refuse_ipv6_prefixes(params: &Params) -> Result<(), ApiError> {
    if params.names().any(|n| n.starts_with("Ipv6Prefix")) {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "IPv6 prefixes (Ipv6Prefix, Ipv6PrefixCount) are not supported; ask for IPv6 addresses instead.",
        ));
    }
    Ok(())
}

/// What a new ENI's IPv6 addresses should be: the addresses named, a count
/// of random ones, or (neither given) what the subnet's
/// `AssignIpv6AddressOnCreation` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ipv6Request {
    pub addresses: Vec<Ipv6Addr>,
    pub count: Option<usize>,
}

impl Ipv6Request {
    /// `{list_name}.N.Ipv6Address` and `Ipv6AddressCount` (the list is
    /// `Ipv6Addresses` in CreateNetworkInterface and RunInstances'
    /// `NetworkInterface.N`, `Ipv6Address` at RunInstances' top level).
    pub fn from_params(params: &Params, list_name: &str) -> Result<Self, ApiError> {
        refuse_ipv6_prefixes(params)?;
        let mut addresses: Vec<Ipv6Addr> = Vec::new();
        for item in params.structs(list_name)? {
            let ip = parse_ipv6(
                &format!("{list_name}.Ipv6Address"),
                item.required("Ipv6Address")?,
            )?;
            if !addresses.contains(&ip) {
                addresses.push(ip);
            }
        }
        let count = params.number::<usize>("Ipv6AddressCount")?;
        if !addresses.is_empty() && count.is_some() {
            return Err(both_ipv6_forms());
        }
        let n = count.unwrap_or(addresses.len());
        if n > IPV6_ADDRESSES_PER_INTERFACE {
            return Err(too_many_ipv6(n));
        }
        Ok(Ipv6Request { addresses, count })
    }

    /// Whether the request names IPv6 addresses or a count at all.
    pub fn is_given(&self) -> bool {
        !self.addresses.is_empty() || self.count.is_some()
    }
}

fn check_timeout(
    name: &str,
    value: Option<u32>,
    range: std::ops::RangeInclusive<u32>,
) -> Result<Option<u32>, ApiError> {
    match value {
        Some(v) if !range.contains(&v) => Err(ApiError::invalid_value(
            &format!("ConnectionTrackingSpecification.{name}"),
            &v.to_string(),
            &format!("Use {} to {} seconds.", range.start(), range.end()),
        )),
        other => Ok(other),
    }
}

/// spec 3.2: `ConnectionTrackingSpecification.*` over `current` (or the
/// defaults); `None` when the request sets no timeout.
pub fn conntrack_of(
    params: &Params,
    current: Option<Conntrack>,
) -> Result<Option<Conntrack>, ApiError> {
    let p = "ConnectionTrackingSpecification";
    let tcp = check_timeout(
        "TcpEstablishedTimeout",
        params.number(&format!("{p}.TcpEstablishedTimeout"))?,
        60..=TCP_ESTABLISHED_DEFAULT,
    )?;
    let stream = check_timeout(
        "UdpStreamTimeout",
        params.number(&format!("{p}.UdpStreamTimeout"))?,
        60..=180,
    )?;
    let udp = check_timeout(
        "UdpTimeout",
        params.number(&format!("{p}.UdpTimeout"))?,
        30..=60,
    )?;
    if tcp.is_none() && stream.is_none() && udp.is_none() {
        return Ok(current);
    }
    let base = current.unwrap_or(Conntrack {
        tcp_established: TCP_ESTABLISHED_DEFAULT,
        udp_stream: UDP_STREAM_DEFAULT,
        udp: UDP_DEFAULT,
    });
    Ok(Some(Conntrack {
        tcp_established: tcp.unwrap_or(base.tcp_established),
        udp_stream: stream.unwrap_or(base.udp_stream),
        udp: udp.unwrap_or(base.udp),
    }))
}

fn too_many_groups() -> ApiError {
    ApiError::new(
        "SecurityGroupsPerInterfaceLimitExceeded",
        format!(
            "The maximum number of security groups per interface ({GROUPS_PER_INTERFACE}) has been reached."
        ),
    )
}

/// The groups named by ID for an ENI in `vpc_id`, or the VPC's default
/// group when none is named. spec 3.1/3.3: each must exist in that VPC, and
/// at most five.
pub fn resolve_groups(
    tx: &mut Tx,
    vpc_id: &str,
    ids: &[String],
) -> Result<Vec<GroupRef>, ApiError> {
    let mut wanted: Vec<&String> = Vec::new();
    for id in ids {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    if wanted.len() > GROUPS_PER_INTERFACE {
        return Err(too_many_groups());
    }
    let all = security_group::groups_in(tx)?;
    if wanted.is_empty() {
        return all
            .iter()
            .find(|g| g.is_default && g.vpc_id == vpc_id)
            .map(|g| {
                vec![GroupRef {
                    id: g.id.clone(),
                    name: g.name.clone(),
                }]
            })
            .ok_or_else(|| {
                ApiError::internal(format!("The VPC '{vpc_id}' has no default security group"))
            });
    }
    wanted
        .into_iter()
        .map(|id| {
            check_id(ResourceKind::SecurityGroup, id)?;
            let g = all
                .iter()
                .find(|g| g.id == *id)
                .ok_or_else(|| security_group::not_found(id))?;
            if g.vpc_id != vpc_id {
                return Err(ApiError::new(
                    "InvalidParameter",
                    format!(
                        "Security group {id} and the network interface belong to different networks (VPC {} and {vpc_id})."
                    , g.vpc_id),
                ));
            }
            Ok(GroupRef {
                id: g.id.clone(),
                name: g.name.clone(),
            })
        })
        .collect()
}

fn too_many_ips(n: usize) -> ApiError {
    ApiError::new(
        "PrivateIpAddressLimitExceeded",
        format!(
            "Number of private addresses ({n}) exceeds the limit of {PRIVATE_IPS_PER_INTERFACE} per network interface."
        ),
    )
}

/// What a new ENI's addresses should be.
#[derive(Debug, Clone, Default)]
pub struct AddressRequest {
    pub primary: Option<Ipv4Addr>,
    pub secondaries: Vec<Ipv4Addr>,
    pub secondary_count: usize,
}

impl AddressRequest {
    /// `PrivateIpAddress`, `PrivateIpAddresses.N.{PrivateIpAddress,Primary}`
    /// and `SecondaryPrivateIpAddressCount` (RunInstances' `NetworkInterface.N`
    /// spells the list `PrivateIpAddressesSet`, hence `list_name`).
    pub fn from_params(params: &Params, list_name: &str) -> Result<Self, ApiError> {
        let mut req = AddressRequest {
            primary: params
                .get("PrivateIpAddress")
                .map(|t| parse_ip("PrivateIpAddress", t))
                .transpose()?,
            ..Default::default()
        };
        for item in params.structs(list_name)? {
            let ip = parse_ip(
                "PrivateIpAddresses.PrivateIpAddress",
                item.required("PrivateIpAddress")?,
            )?;
            if item.bool("Primary")?.unwrap_or(false) {
                if req.primary.is_some_and(|p| p != ip) {
                    return Err(ApiError::new(
                        "InvalidParameterValue",
                        "Only one primary private address may be given.",
                    ));
                }
                req.primary = Some(ip);
            } else if req.primary != Some(ip) && !req.secondaries.contains(&ip) {
                req.secondaries.push(ip);
            }
        }
        // With addresses listed but none marked primary, EC2 makes the first
        // the primary rather than picking another one.
        if req.primary.is_none() && !req.secondaries.is_empty() {
            req.primary = Some(req.secondaries.remove(0));
        }
        req.secondary_count = params
            .number::<usize>("SecondaryPrivateIpAddressCount")?
            .unwrap_or(0);
        let total = 1 + req.secondaries.len() + req.secondary_count;
        if total > PRIVATE_IPS_PER_INTERFACE {
            return Err(too_many_ips(total));
        }
        Ok(req)
    }
}

/// A fresh locally administered MAC (`02:…`), unique among the account's ENIs.
fn new_mac(taken: &[NetworkInterface]) -> String {
    let mut rng = rand::rng();
    loop {
        let bytes: [u8; 5] = rng.random();
        let mac = format!(
            "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]
        );
        if !taken.iter().any(|e| e.mac_address == mac) {
            return mac;
        }
    }
}

/// Everything but the subnet and the addresses that a new ENI needs.
#[derive(Debug, Clone)]
pub struct EniSpec {
    pub description: String,
    pub addresses: AddressRequest,
    pub groups: Vec<GroupRef>,
    pub conntrack: Option<Conntrack>,
    pub tags: Tags,
}

/// Creates a managed interface (a NAT gateway's and the like) in
/// `subnet_id`: IPv4 only, whatever the subnet's IPv6 settings.
pub fn create_in(
    tx: &mut Tx,
    subnet_id: &str,
    spec: EniSpec,
) -> Result<NetworkInterface, ApiError> {
    create_with(tx, subnet_id, spec, None)
}

/// Creates an ENI in `subnet_id`, taking its addresses from the subnet's
/// address book; stores both. `ipv6` is `None` for a managed interface
/// (IPv4 only); otherwise the IPv6 addresses asked for, or the subnet's
/// `AssignIpv6AddressOnCreation` when none are. In an IPv6-only subnet the
/// ENI has no IPv4 address at all and at least one IPv6 address.
pub fn create_with(
    tx: &mut Tx,
    subnet_id: &str,
    spec: EniSpec,
    ipv6: Option<&Ipv6Request>,
) -> Result<NetworkInterface, ApiError> {
    let ctx = tx.ctx();
    let mut subnet = tx.load::<Subnet>(subnet_id)?;
    let a = &spec.addresses;
    let mut ips = Vec::new();
    if let Some(p) = a.primary {
        ips.push(subnet.allocate(Some(p))?);
    }
    for ip in &a.secondaries {
        ips.push(subnet.allocate(Some(*ip))?);
    }
    // Every interface of a subnet with an IPv4 block has a primary IPv4
    // address; a managed interface needs one even where there is none.
    if a.primary.is_none() && (subnet.cidr_block.is_some() || ipv6.is_none()) {
        ips.insert(0, subnet.allocate(None)?);
    }
    for _ in 0..a.secondary_count {
        ips.push(subnet.allocate(None)?);
    }
    let mut ipv6_addresses = Vec::new();
    if let Some(req) = ipv6 {
        let auto = subnet.assign_ipv6_address_on_creation && subnet.ipv6_block().is_some();
        let count = req
            .count
            .unwrap_or(usize::from(auto && req.addresses.is_empty()));
        if subnet.ipv6_native && req.addresses.is_empty() && count == 0 {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Subnet '{}' is IPv6-only: a network interface in it needs at least one IPv6 address (Ipv6AddressCount of 1 or more).",
                    subnet.id
                ),
            ));
        }
        for ip in &req.addresses {
            ipv6_addresses.push(subnet.allocate_ipv6(Some(*ip))?);
        }
        for _ in 0..count {
            ipv6_addresses.push(subnet.allocate_ipv6(None)?);
        }
    }
    let existing = tx.list::<NetworkInterface>()?;
    let eni = NetworkInterface {
        id: new_id(ResourceKind::NetworkInterface),
        region: ctx.region.to_owned(),
        subnet_id: subnet.id.clone(),
        vpc_id: subnet.vpc_id.clone(),
        availability_zone: subnet.availability_zone.clone(),
        availability_zone_id: subnet.availability_zone_id.clone(),
        owner_id: ctx.account.id.clone(),
        description: spec.description,
        private_ips: ips,
        groups: spec.groups,
        mac_address: new_mac(&existing),
        // spec 5.4: on by default.
        source_dest_check: true,
        interface_type: "interface".into(),
        requester_managed: false,
        attachment: None,
        public: Vec::new(),
        auto_public: false,
        conntrack: spec.conntrack,
        tags: spec.tags,
        host_id: None,
        ipv6_addresses,
    };
    tx.put(&subnet)?;
    tx.put(&eni)?;
    Ok(eni)
}

/// Deletes an ENI: its private addresses go back to the subnet, an
/// auto-assigned public address to the region's pool, and Elastic IPs on it
/// are disassociated (they stay allocated to the account).
pub fn delete_in(tx: &mut Tx, eni: &NetworkInterface) -> Result<(), ApiError> {
    if let Some(mut subnet) = tx.get::<Subnet>(&eni.subnet_id)? {
        for ip in &eni.private_ips {
            subnet.release(*ip);
        }
        for ip in &eni.ipv6_addresses {
            subnet.release_ipv6(*ip);
        }
        tx.put(&subnet)?;
    }
    for p in &eni.public {
        if p.allocation_id.is_none() {
            address::give_back(tx, p.public_ip)?;
        }
    }
    for mut a in tx.list::<Address>()? {
        if a.association
            .as_ref()
            .is_some_and(|s| s.network_interface_id == eni.id)
        {
            a.association = None;
            tx.put(&a)?;
        }
    }
    tx.delete::<NetworkInterface>(&eni.id);
    Ok(())
}

/// Points the Elastic IPs on `eni` at the instance it is (now) attached to.
pub fn sync_address_instances(tx: &mut Tx, eni: &NetworkInterface) -> Result<(), ApiError> {
    let instance = eni.attachment.as_ref().map(|a| a.instance_id.clone());
    for mut a in tx.list::<Address>()? {
        if let Some(s) = a.association.as_mut()
            && s.network_interface_id == eni.id
            && s.instance_id != instance
        {
            s.instance_id.clone_from(&instance);
            tx.put(&a)?;
        }
    }
    Ok(())
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let subnet_id = params.required("SubnetId")?;
    check_id(ResourceKind::Subnet, subnet_id)?;
    let addresses = AddressRequest::from_params(params, "PrivateIpAddresses")?;
    let ipv6 = Ipv6Request::from_params(params, "Ipv6Addresses")?;
    let group_ids = params.list("SecurityGroupId")?;
    let conntrack = conntrack_of(params, None)?;
    let description = params.get("Description").unwrap_or("").to_owned();
    let tags: Tags = tags_for(params, "network-interface")?;
    let token = ClientToken::of(params, "CreateNetworkInterface")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let eni = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first interface.
        if let Some(eni) = idempotency::earlier_one::<NetworkInterface>(tx, token.as_ref())? {
            return Ok(eni);
        }
        let subnet = tx.load::<Subnet>(subnet_id)?;
        let groups = resolve_groups(tx, &subnet.vpc_id, &group_ids)?;
        let eni = create_with(
            tx,
            subnet_id,
            EniSpec {
                description: description.clone(),
                addresses: addresses.clone(),
                groups,
                conntrack,
                tags: tags.clone(),
            },
            Some(&ipv6),
        )?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&eni))?;
        Ok(eni)
    })?;
    Ok(Xml::response(
        "CreateNetworkInterface",
        ctx.request_id,
        |x| {
            x.node("networkInterface", |x| eni.write(x))
                .opt("clientToken", token.as_ref().map(ClientToken::token));
        },
    ))
}

fn in_use(id: &str) -> ApiError {
    ApiError::new(
        "InvalidNetworkInterface.InUse",
        format!("Network interface '{id}' is currently in use."),
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let eni = tx.load::<NetworkInterface>(id)?;
        if eni.attachment.is_some() {
            return Err(in_use(id));
        }
        // A managed interface (a NAT gateway's, a load balancer's) goes
        // only with its owner. AWS answers as for any interface in use
        // (its `ela-attach` attachment): InvalidParameterValue, "Network
        // interface '…' is currently in use."
        if eni.requester_managed {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Network interface '{id}' is currently in use (it is managed by another resource: {}; delete that resource instead).",
                    eni.description
                ),
            ));
        }
        delete_in(tx, &eni)
    })?;
    Ok(ok_return(ctx, "DeleteNetworkInterface"))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<NetworkInterface>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeNetworkInterfaces",
            ids: "NetworkInterfaceId",
            set: "networkInterfaceSet",
        },
    )
}

/// Attaches `eni` to `instance` at `device_index`, checking what AWS checks.
pub fn attach_in(
    tx: &mut Tx,
    eni: &mut NetworkInterface,
    instance: &Instance,
    device_index: u32,
    delete_on_termination: bool,
) -> Result<String, ApiError> {
    if eni.attachment.is_some() {
        return Err(in_use(&eni.id));
    }
    if !matches!(
        instance.state,
        InstanceState::Running | InstanceState::Stopped | InstanceState::Pending
    ) {
        return Err(ApiError::new(
            "IncorrectInstanceState",
            format!(
                "The instance '{}' is not in a valid state for this operation ({}).",
                instance.id, instance.state
            ),
        ));
    }
    if eni.availability_zone != instance.availability_zone || eni.vpc_id != instance.vpc_id {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "You may not attach a network interface to an instance if they are not in the same availability zone",
        ));
    }
    let taken = tx.list::<NetworkInterface>()?.into_iter().any(|e| {
        e.attachment
            .as_ref()
            .is_some_and(|a| a.instance_id == instance.id && a.device_index == device_index)
    });
    if taken {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Instance '{}' already has an interface attached at device index '{device_index}'.",
                instance.id
            ),
        ));
    }
    let attachment_id = new_id(ResourceKind::NetworkInterfaceAttachment);
    eni.attachment = Some(Attachment {
        id: attachment_id.clone(),
        instance_id: instance.id.clone(),
        instance_owner_id: instance.owner_id.clone(),
        device_index,
        delete_on_termination,
        attach_time: timestamp(),
    });
    // The ENI runs where its instance does.
    eni.host_id.clone_from(&instance.host_id);
    tx.put(eni)?;
    sync_address_instances(tx, eni)?;
    Ok(attachment_id)
}

pub fn attach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let eni_id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, eni_id)?;
    let instance_id = params.required("InstanceId")?;
    check_id(ResourceKind::Instance, instance_id)?;
    let device_index = params
        .number::<u32>("DeviceIndex")?
        .ok_or_else(|| ApiError::missing_parameter("DeviceIndex"))?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let attachment_id = transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(eni_id)?;
        let instance = tx.load::<Instance>(instance_id)?;
        attach_in(tx, &mut eni, &instance, device_index, false)
    })?;
    Ok(Xml::response(
        "AttachNetworkInterface",
        ctx.request_id,
        |x| {
            x.elem("attachmentId", &attachment_id)
                .elem("networkCardIndex", 0);
        },
    ))
}

pub fn detach(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let attachment_id = params.required("AttachmentId")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let all = tx.list::<NetworkInterface>()?;
        // AWS: a service's attachment of its requester-managed interface
        // (a load balancer's, a NAT gateway's) is not the caller's to detach.
        if all
            .iter()
            .any(|e| e.requester_managed && service_attachment_id(e) == attachment_id)
        {
            return Err(ApiError::new(
                "OperationNotPermitted",
                "You are not allowed to manage 'ela-attach' attachments.",
            ));
        }
        let mut eni = all
            .into_iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.id == attachment_id))
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidAttachmentID.NotFound",
                    format!("The network interface attachment ID '{attachment_id}' does not exist"),
                )
            })?;
        // An instance's primary interface stays with it for its whole life.
        if eni.attachment.as_ref().is_some_and(|a| a.device_index == 0) {
            return Err(ApiError::new(
                "OperationNotPermitted",
                "The network interface at device index 0 and networkCard index 0 cannot be detached.",
            ));
        }
        eni.attachment = None;
        eni.host_id = None;
        tx.put(&eni)?;
        sync_address_instances(tx, &eni)
    })?;
    Ok(ok_return(ctx, "DetachNetworkInterface"))
}

pub fn modify_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    let source_dest = params.bool("SourceDestCheck.Value")?;
    let description = params.get("Description.Value");
    let group_ids = params.list("SecurityGroupId")?;
    let delete_on_termination = params.bool("Attachment.DeleteOnTermination")?;
    let attachment_id = params.get("Attachment.AttachmentId");
    // Validated before the transaction; applied over the stored value inside.
    conntrack_of(params, None)?;
    let has_conntrack = params
        .names()
        .any(|n| n.starts_with("ConnectionTrackingSpecification."));
    if source_dest.is_none()
        && description.is_none()
        && group_ids.is_empty()
        && delete_on_termination.is_none()
        && !has_conntrack
    {
        return Err(ApiError::new(
            "MissingParameter",
            "Specify an attribute to modify: SourceDestCheck, Description, SecurityGroupId, Attachment or ConnectionTrackingSpecification.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(id)?;
        if let Some(v) = source_dest {
            eni.source_dest_check = v;
        }
        if let Some(d) = description {
            eni.description = d.to_owned();
        }
        if !group_ids.is_empty() {
            let vpc_id = eni.vpc_id.clone();
            eni.groups = resolve_groups(tx, &vpc_id, &group_ids)?;
        }
        if let Some(v) = delete_on_termination {
            match eni.attachment.as_mut() {
                Some(a) if attachment_id.is_none_or(|want| want == a.id) => {
                    a.delete_on_termination = v;
                }
                _ => {
                    return Err(ApiError::new(
                        "InvalidAttachmentID.NotFound",
                        format!(
                            "The network interface attachment ID '{}' does not exist",
                            attachment_id.unwrap_or("")
                        ),
                    ));
                }
            }
        }
        eni.conntrack = conntrack_of(params, eni.conntrack)?;
        tx.put(&eni)
    })?;
    Ok(ok_return(ctx, "ModifyNetworkInterfaceAttribute"))
}

pub fn describe_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    let attribute = params.required("Attribute")?;
    if !matches!(
        attribute,
        "description" | "groupSet" | "sourceDestCheck" | "attachment"
    ) {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!("Value ({attribute}) for parameter attribute is invalid. Unknown attribute."),
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let eni = transact(ctx, |tx| tx.load::<NetworkInterface>(id))?;
    Ok(Xml::response(
        "DescribeNetworkInterfaceAttribute",
        ctx.request_id,
        |x| {
            x.elem("networkInterfaceId", &eni.id);
            match attribute {
                "description" => {
                    x.node("description", |x| {
                        x.elem("value", &eni.description);
                    });
                }
                "groupSet" => write_groups(x, &eni.groups),
                "sourceDestCheck" => {
                    x.node("sourceDestCheck", |x| {
                        x.elem("value", eni.source_dest_check);
                    });
                }
                _ => {
                    if let Some(a) = &eni.attachment {
                        write_attachment(x, a);
                    }
                }
            }
        },
    ))
}

pub fn assign_private_ips(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    let wanted = listed(params, "PrivateIpAddress", parse_ip)?;
    let count = params
        .number::<usize>("SecondaryPrivateIpAddressCount")?
        .unwrap_or(0);
    if wanted.is_empty() && count == 0 {
        return Err(ApiError::new(
            "MissingParameter",
            "Specify PrivateIpAddress.N or SecondaryPrivateIpAddressCount.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (eni, added) = transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(id)?;
        let total = eni.private_ips.len() + wanted.len() + count;
        if total > PRIVATE_IPS_PER_INTERFACE {
            return Err(too_many_ips(total));
        }
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        let mut added = Vec::new();
        for ip in &wanted {
            added.push(subnet.allocate(Some(*ip))?);
        }
        for _ in 0..count {
            added.push(subnet.allocate(None)?);
        }
        eni.private_ips.extend(&added);
        tx.put(&subnet)?;
        tx.put(&eni)?;
        Ok((eni, added))
    })?;
    Ok(Xml::response(
        "AssignPrivateIpAddresses",
        ctx.request_id,
        |x| {
            x.elem("networkInterfaceId", &eni.id)
                .list("assignedPrivateIpAddressesSet", &added, |x, ip| {
                    x.elem("privateIpAddress", ip);
                })
                .list("assignedIpv4PrefixSet", std::iter::empty::<()>(), |_, _| {});
        },
    ))
}

pub fn unassign_private_ips(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    let gone = to_unassign(params, "PrivateIpAddress", parse_ip)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(id)?;
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        for ip in &gone {
            if eni.primary_ip() == Some(*ip) {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!(
                        "The primary address {ip} of network interface '{id}' cannot be unassigned."
                    ),
                ));
            }
            if !eni.private_ips.contains(ip) {
                return Err(not_assigned(id, ip));
            }
            if eni.public.iter().any(|p| p.private_ip == *ip) {
                return Err(ApiError::new(
                    "InvalidIPAddress.InUse",
                    format!(
                        "The address {ip} has an Elastic IP associated; disassociate it first."
                    ),
                ));
            }
            eni.private_ips.retain(|a| a != ip);
            subnet.release(*ip);
        }
        tx.put(&subnet)?;
        tx.put(&eni)
    })?;
    Ok(ok_return(ctx, "UnassignPrivateIpAddresses"))
}

pub fn assign_ipv6(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    refuse_ipv6_prefixes(params)?;
    let wanted = listed(params, "Ipv6Addresses", parse_ipv6)?;
    let count = params.number::<usize>("Ipv6AddressCount")?;
    if !wanted.is_empty() && count.is_some() {
        return Err(both_ipv6_forms());
    }
    if wanted.is_empty() && count.unwrap_or(0) == 0 {
        return Err(ApiError::new(
            "MissingParameter",
            "Specify Ipv6Addresses.N or an Ipv6AddressCount of 1 or more.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let added = transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(id)?;
        let total = eni.ipv6_addresses.len() + wanted.len() + count.unwrap_or(0);
        if total > IPV6_ADDRESSES_PER_INTERFACE {
            return Err(too_many_ipv6(total));
        }
        if let Some(a) = &eni.attachment {
            let instance = tx.load::<Instance>(&a.instance_id)?;
            instance_mod::check_ipv6_supported(&instance.instance_type)?;
        }
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        let mut added = Vec::new();
        for ip in &wanted {
            added.push(subnet.allocate_ipv6(Some(*ip))?);
        }
        for _ in 0..count.unwrap_or(0) {
            added.push(subnet.allocate_ipv6(None)?);
        }
        eni.ipv6_addresses.extend(&added);
        tx.put(&subnet)?;
        tx.put(&eni)?;
        Ok(added)
    })?;
    // Only the addresses this call assigned, as the API reference says.
    Ok(Xml::response("AssignIpv6Addresses", ctx.request_id, |x| {
        x.elem("networkInterfaceId", id)
            .list("assignedIpv6Addresses", &added, |x, ip| {
                x.text(ip);
            })
            .list("assignedIpv6PrefixSet", std::iter::empty::<()>(), |_, _| {});
    }))
}

pub fn unassign_ipv6(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkInterfaceId")?;
    check_id(ResourceKind::NetworkInterface, id)?;
    refuse_ipv6_prefixes(params)?;
    let gone = to_unassign(params, "Ipv6Addresses", parse_ipv6)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut eni = tx.load::<NetworkInterface>(id)?;
        let mut subnet = tx.load::<Subnet>(&eni.subnet_id)?;
        for ip in &gone {
            if !eni.ipv6_addresses.contains(ip) {
                return Err(not_assigned(id, ip));
            }
            eni.ipv6_addresses.retain(|a| a != ip);
            subnet.release_ipv6(*ip);
        }
        // An IPv6-only interface keeps at least one address.
        if eni.private_ips.is_empty() && eni.ipv6_addresses.is_empty() {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Network interface {id} is IPv6-only: its last IPv6 address cannot be unassigned."
                ),
            ));
        }
        tx.put(&subnet)?;
        tx.put(&eni)
    })?;
    Ok(Xml::response(
        "UnassignIpv6Addresses",
        ctx.request_id,
        |x| {
            x.elem("networkInterfaceId", id)
                .list("unassignedIpv6Addresses", &gone, |x, ip| {
                    x.text(ip);
                })
                .list(
                    "unassignedIpv6PrefixSet",
                    std::iter::empty::<()>(),
                    |_, _| {},
                );
        },
    ))
}
