//! Instances as the network sees them (spec 5, 12): RunInstances,
//! DescribeInstances, TerminateInstances, Stop/StartInstances and
//! Describe/ModifyInstanceAttribute for SourceDestCheck and GroupId.
//!
//! An instance is a record plus its primary ENI (eth0), which holds its
//! private address, groups, source/dest check and public address; the
//! attributes that are really the ENI's are read from and written to it.
//! There is no AMI catalogue: any `ami-` ID is recorded as given.
//!
//! IPv6 addresses (`Ipv6AddressCount`, `Ipv6Address.N`, the subnet's
//! `AssignIpv6AddressOnCreation`) are taken as AWS takes them, with its
//! instance-type rules, but are records only: the dataplane carries no IPv6
//! yet. An instance in an IPv6-only subnet therefore has no working network
//! here; it is launched (AWS launches it) and shows its addresses.

use std::net::Ipv4Addr;

use openvpc_model::ResourceKind;
use openvpc_model::lifecycle::InstanceState;
use openvpc_model::time::timestamp;
use rand::RngExt;

use super::address;
use super::idempotency::{self, ClientToken};
use super::network_interface::{
    self as eni_mod, AddressRequest, EniSpec, GroupRef, Ipv6Request, NetworkInterface,
    conntrack_of, parse_ip, private_dns_name, public_dns_name, resolve_groups, write_common,
    write_groups,
};
use super::resource::{Resource, Tags, Tx, check_id, ok_return, transact, write_tags};
use super::security_group;
use super::subnet::Subnet;
use super::{Ctx, default_vpc, store_error};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
use crate::fleet::registry::{self, Placer, placement_key};
pub use crate::records::instance::Instance;

/// moto's default when `InstanceType` is absent.
pub const DEFAULT_INSTANCE_TYPE: &str = "m1.small";

/// A launch never starts more than this many instances.
pub const MAX_PER_LAUNCH: u32 = 100;

impl Resource for Instance {
    const KIND: ResourceKind = ResourceKind::Instance;
    const NOT_FOUND: &'static str = "InvalidInstanceID.NotFound";
    const NOUN: &'static str = "instance";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    /// The filters that need no ENI; the others are answered by [`View`].
    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let one = |v: String| Some(vec![v]);
        match name {
            "instance-id" => one(self.id.clone()),
            "instance-state-name" => one(self.state.as_str().to_owned()),
            "instance-state-code" => one(self.state.code().to_string()),
            "image-id" => one(self.image_id.clone()),
            "instance-type" => one(self.instance_type.clone()),
            "reservation-id" => one(self.reservation_id.clone()),
            "owner-id" => one(self.owner_id.clone()),
            "subnet-id" => one(self.subnet_id.clone()),
            "vpc-id" => one(self.vpc_id.clone()),
            "availability-zone" => one(self.availability_zone.clone()),
            "key-name" => Some(self.key_name.iter().cloned().collect()),
            "launch-time" => one(self.launch_time.clone()),
            "ami-launch-index" => one(self.ami_launch_index.to_string()),
            "private-ip-address" => Some(self.private_ip.iter().map(ToString::to_string).collect()),
            "private-dns-name" => Some(
                self.private_ip
                    .iter()
                    .map(|ip| private_dns_name(&self.region, *ip))
                    .collect(),
            ),
            "instance-lifecycle" => Some(Vec::new()),
            "architecture" => one("x86_64".into()),
            "root-device-type" => one("ebs".into()),
            "tenancy" => one("default".into()),
            "client-token" => Some(self.client_token.iter().cloned().collect()),
            _ => None,
        }
    }

    fn write(&self, x: &mut Xml) {
        View {
            instance: self.clone(),
            enis: Vec::new(),
        }
        .write(x, self.state);
    }
}

/// The instance family of a type: `t3` of `t3.micro`.
fn family(instance_type: &str) -> &str {
    instance_type.split('.').next().unwrap_or(instance_type)
}

/// AWS: IPv6 works on every current-generation type and on the C3, R3 and
/// I2 previous-generation ones; these older families have none.
const NO_IPV6_FAMILIES: &[&str] = &[
    "m1", "m2", "m3", "c1", "t1", "g2", "cc1", "cc2", "cg1", "cr1", "hi1", "hs1",
];

/// Families that run on the Xen hypervisor rather than the Nitro System
/// (their `.metal` sizes are Nitro). Every other family is Nitro.
const XEN_FAMILIES: &[&str] = &[
    "t1", "t2", "m1", "m2", "m3", "m4", "c1", "c3", "c4", "r3", "r4", "x1", "x1e", "i2", "i3",
    "d2", "g2", "g3", "g3s", "p2", "p3", "f1", "h1", "cc1", "cc2", "cg1", "cr1", "hi1", "hs1",
];

/// AWS's refusal of IPv6 addresses on a type without IPv6.
pub fn check_ipv6_supported(instance_type: &str) -> Result<(), ApiError> {
    if NO_IPV6_FAMILIES.contains(&family(instance_type)) {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!("IPv6 addresses are not supported on {instance_type}."),
        ));
    }
    Ok(())
}

/// AWS: only instances built on the Nitro System launch in IPv6-only subnets.
fn check_ipv6_only_supported(instance_type: &str, subnet_id: &str) -> Result<(), ApiError> {
    let xen = XEN_FAMILIES.contains(&family(instance_type)) && !instance_type.ends_with(".metal");
    if xen {
        return Err(ApiError::new(
            "UnsupportedOperation",
            format!(
                "Subnet {subnet_id} is IPv6-only, and only instance types built on the Nitro System launch there; {instance_type} is not one. Choose a Nitro type such as t3.micro or m5.large."
            ),
        ));
    }
    Ok(())
}

/// An instance with its attached ENIs (primary first), as Describe shows it.
#[derive(Debug, Clone)]
pub struct View {
    pub instance: Instance,
    pub enis: Vec<NetworkInterface>,
}

impl View {
    fn load(tx: &mut Tx, instance: Instance) -> Result<View, ApiError> {
        let enis = tx.list::<NetworkInterface>()?;
        Ok(Self::of(instance, &enis))
    }

    fn of(instance: Instance, enis: &[NetworkInterface]) -> View {
        let mut mine: Vec<NetworkInterface> = enis
            .iter()
            .filter(|e| e.attached_to(&instance.id))
            .cloned()
            .collect();
        mine.sort_by_key(|e| e.attachment.as_ref().map(|a| a.device_index));
        View {
            instance,
            enis: mine,
        }
    }

    fn primary(&self) -> Option<&NetworkInterface> {
        self.enis
            .iter()
            .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0))
    }

    fn public_ip(&self) -> Option<Ipv4Addr> {
        self.primary()
            .and_then(NetworkInterface::primary_public)
            .map(|p| p.public_ip)
    }

    fn groups(&self) -> &[GroupRef] {
        self.primary().map_or(&self.instance.groups, |e| &e.groups)
    }

    /// The instance's IPv6 address: its primary interface's first.
    fn ipv6_address(&self) -> Option<std::net::Ipv6Addr> {
        self.primary()
            .and_then(|e| e.ipv6_addresses.first().copied())
    }

    fn source_dest_check(&self) -> bool {
        self.primary().is_none_or(|e| e.source_dest_check)
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let from_enis = |f: fn(&NetworkInterface) -> Vec<String>| {
            Some(self.enis.iter().flat_map(f).collect::<Vec<_>>())
        };
        match name {
            "ip-address" => Some(self.public_ip().iter().map(ToString::to_string).collect()),
            "dns-name" => Some(
                self.public_ip()
                    .iter()
                    .map(|ip| public_dns_name(&self.instance.region, *ip))
                    .collect(),
            ),
            "source-dest-check" => Some(vec![self.source_dest_check().to_string()]),
            "ipv6-address" => Some(
                self.ipv6_address()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            "network-interface.ipv6-address" | "network-interface.ipv6-addresses.ipv6-address" => {
                from_enis(|e| e.ipv6_addresses.iter().map(ToString::to_string).collect())
            }
            "group-id" | "instance.group-id" => {
                Some(self.groups().iter().map(|g| g.id.clone()).collect())
            }
            "group-name" | "instance.group-name" => {
                Some(self.groups().iter().map(|g| g.name.clone()).collect())
            }
            "network-interface.network-interface-id" => from_enis(|e| vec![e.id.clone()]),
            "network-interface.subnet-id" => from_enis(|e| vec![e.subnet_id.clone()]),
            "network-interface.vpc-id" => from_enis(|e| vec![e.vpc_id.clone()]),
            "network-interface.mac-address" => from_enis(|e| vec![e.mac_address.clone()]),
            "network-interface.private-dns-name"
            | "network-interface.addresses.private-dns-name" => from_enis(|e| {
                e.private_ips
                    .iter()
                    .map(|ip| private_dns_name(&e.region, *ip))
                    .collect()
            }),
            "network-interface.addresses.private-ip-address"
            | "network-interface.private-ip-address" => {
                from_enis(|e| e.private_ips.iter().map(ToString::to_string).collect())
            }
            "network-interface.source-dest-check" => {
                from_enis(|e| vec![e.source_dest_check.to_string()])
            }
            "network-interface.status" => from_enis(|e| vec![e.status().to_owned()]),
            "network-interface.group-id" => {
                from_enis(|e| e.groups.iter().map(|g| g.id.clone()).collect())
            }
            "network-interface.group-name" => {
                from_enis(|e| e.groups.iter().map(|g| g.name.clone()).collect())
            }
            "network-interface.attachment.attachment-id" => {
                from_enis(|e| e.attachment.iter().map(|a| a.id.clone()).collect())
            }
            "network-interface.attachment.device-index" => from_enis(|e| {
                e.attachment
                    .iter()
                    .map(|a| a.device_index.to_string())
                    .collect()
            }),
            "network-interface.association.public-ip" => {
                from_enis(|e| e.public.iter().map(|p| p.public_ip.to_string()).collect())
            }
            "network-interface.association.allocation-id" => from_enis(|e| {
                e.public
                    .iter()
                    .filter_map(|p| p.allocation_id.clone())
                    .collect()
            }),
            _ => self.instance.filter_values(name),
        }
    }

    fn matches(&self, filters: &[crate::api::filter::Filter]) -> Result<bool, ApiError> {
        for f in filters {
            let values = super::resource::tag_filter_values(&self.instance.tags, &f.name)
                .or_else(|| self.filter_values(&f.name))
                .ok_or_else(|| {
                    ApiError::new(
                        "InvalidParameterValue",
                        format!("The filter '{}' is invalid", f.name),
                    )
                })?;
            if !f.matches(values.iter().map(String::as_str)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One `instancesSet` item, showing `state`.
    fn write(&self, x: &mut Xml, state: InstanceState) {
        let i = &self.instance;
        let public = self.public_ip();
        x.elem("instanceId", &i.id)
            .elem("imageId", &i.image_id)
            .node("instanceState", |x| {
                x.elem("code", state.code()).elem("name", state);
            })
            .elem(
                "privateDnsName",
                i.private_ip
                    .map(|ip| private_dns_name(&i.region, ip))
                    .unwrap_or_default(),
            )
            .elem(
                "dnsName",
                public
                    .map(|ip| public_dns_name(&i.region, ip))
                    .unwrap_or_default(),
            )
            .elem("reason", &i.state_reason)
            .opt("keyName", i.key_name.as_deref())
            .elem("amiLaunchIndex", i.ami_launch_index)
            .list("productCodes", std::iter::empty::<()>(), |_, _| {})
            .elem("instanceType", &i.instance_type)
            .elem("launchTime", &i.launch_time)
            .node("placement", |x| {
                x.elem("availabilityZone", &i.availability_zone)
                    .elem("groupName", "")
                    .elem("tenancy", "default");
            })
            .node("monitoring", |x| {
                x.elem("state", "disabled");
            })
            .elem("subnetId", &i.subnet_id)
            .elem("vpcId", &i.vpc_id)
            .opt("privateIpAddress", i.private_ip)
            .opt("ipAddress", public)
            .opt("ipv6Address", self.ipv6_address())
            .elem("sourceDestCheck", self.source_dest_check());
        write_groups(x, self.groups());
        x.elem("architecture", "x86_64")
            .elem("rootDeviceType", "ebs")
            .elem("rootDeviceName", "/dev/sda1")
            .list("blockDeviceMapping", std::iter::empty::<()>(), |_, _| {})
            .elem("virtualizationType", "hvm")
            .opt("clientToken", i.client_token.as_deref())
            .elem("hypervisor", "xen")
            .list("networkInterfaceSet", &self.enis, |x, e| {
                write_common(x, e);
                if let Some(a) = &e.attachment {
                    x.node("attachment", |x| {
                        x.elem("attachmentId", &a.id)
                            .elem("deviceIndex", a.device_index)
                            .elem("networkCardIndex", 0)
                            .elem("status", "attached")
                            .elem("attachTime", &a.attach_time)
                            .elem("deleteOnTermination", a.delete_on_termination);
                    });
                }
            })
            .elem("ebsOptimized", false)
            .elem("enaSupport", true);
        write_tags(x, &i.tags);
    }
}

/// The instance actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "RunInstances" => run(ctx, params),
        "DescribeInstances" => describe(ctx, params),
        "TerminateInstances" => change_state(ctx, params, Change::Terminate),
        "StopInstances" => change_state(ctx, params, Change::Stop),
        "StartInstances" => change_state(ctx, params, Change::Start),
        "DescribeInstanceAttribute" => describe_attribute(ctx, params),
        "ModifyInstanceAttribute" => modify_attribute(ctx, params),
        _ => return None,
    })
}

/// `r-` + 17 hex digits: reservations have no resource kind of their own.
fn new_reservation_id() -> String {
    let bits: u128 = rand::rng().random::<u128>() & ((1u128 << 68) - 1);
    format!("r-{bits:017x}")
}

/// One interface a launch asks for: `NetworkInterface.N`, or the
/// top-level SubnetId/PrivateIpAddress/groups as device 0.
#[derive(Debug, Clone)]
struct InterfaceRequest {
    device_index: u32,
    existing: Option<String>,
    subnet_id: Option<String>,
    addresses: AddressRequest,
    group_ids: Vec<String>,
    description: String,
    associate_public: Option<bool>,
    delete_on_termination: bool,
    conntrack: Option<eni_mod::Conntrack>,
    ipv6: Ipv6Request,
}

fn interface_requests(params: &Params) -> Result<Vec<InterfaceRequest>, ApiError> {
    let specs = params.structs("NetworkInterface")?;
    let top_ipv6 = Ipv6Request::from_params(params, "Ipv6Address")?;
    if !specs.is_empty() && top_ipv6.is_given() {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "Network interfaces and an instance-level IPv6 address count or IPv6 addresses may not be specified on the same request",
        ));
    }
    if specs.is_empty() {
        return Ok(vec![InterfaceRequest {
            device_index: 0,
            existing: None,
            subnet_id: params.get("SubnetId").map(str::to_owned),
            addresses: AddressRequest {
                primary: params
                    .get("PrivateIpAddress")
                    .map(|t| parse_ip("PrivateIpAddress", t))
                    .transpose()?,
                ..Default::default()
            },
            group_ids: params.list("SecurityGroupId")?,
            description: String::new(),
            associate_public: None,
            delete_on_termination: true,
            conntrack: None,
            ipv6: top_ipv6,
        }]);
    }
    let mut out: Vec<InterfaceRequest> = specs
        .iter()
        .map(|s| {
            Ok(InterfaceRequest {
                device_index: s
                    .number::<u32>("DeviceIndex")?
                    .ok_or_else(|| ApiError::missing_parameter("NetworkInterface.N.DeviceIndex"))?,
                existing: s.get("NetworkInterfaceId").map(str::to_owned),
                subnet_id: s
                    .get("SubnetId")
                    .or_else(|| params.get("SubnetId"))
                    .map(str::to_owned),
                addresses: AddressRequest::from_params(s, "PrivateIpAddressesSet")?,
                group_ids: {
                    let g = s.list("SecurityGroupId")?;
                    if g.is_empty() {
                        params.list("SecurityGroupId")?
                    } else {
                        g
                    }
                },
                description: s.get("Description").unwrap_or("").to_owned(),
                associate_public: s.bool("AssociatePublicIpAddress")?,
                delete_on_termination: s
                    .bool("DeleteOnTermination")?
                    .unwrap_or(s.get("NetworkInterfaceId").is_none()),
                conntrack: conntrack_of(s, None)?,
                ipv6: Ipv6Request::from_params(s, "Ipv6Addresses")?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    out.sort_by_key(|r| r.device_index);
    if out.first().is_none_or(|r| r.device_index != 0)
        || out
            .windows(2)
            .any(|w| w[0].device_index == w[1].device_index)
    {
        return Err(ApiError::new(
            "InvalidParameterValue",
            "NetworkInterface.N needs one interface at DeviceIndex 0 and distinct device indexes.",
        ));
    }
    Ok(out)
}

fn tags_by_type(params: &Params) -> Result<(Tags, Tags), ApiError> {
    let mut instance = Tags::new();
    let mut interface = Tags::new();
    for (kind, tags) in params.tag_specifications()? {
        let target = match kind.as_str() {
            "instance" => &mut instance,
            "network-interface" => &mut interface,
            // Volumes and the like do not exist here; their tags go nowhere.
            "volume" | "spot-instances-request" | "elastic-gpu" => continue,
            other => {
                return Err(ApiError::new(
                    "InvalidParameterValue",
                    format!("'{other}' is not a valid taggable resource type for this operation."),
                ));
            }
        };
        target.extend(tags.into_iter().map(|t| (t.key, t.value)));
    }
    Ok((instance, interface))
}

pub fn run(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let image_id = params.required("ImageId")?;
    if !image_id.starts_with("ami-") {
        return Err(ApiError::new(
            "InvalidAMIID.Malformed",
            format!("Invalid id: \"{image_id}\" (expecting \"ami-...\")"),
        ));
    }
    let min = params.number::<u32>("MinCount")?.unwrap_or(1);
    let max = params.number::<u32>("MaxCount")?.unwrap_or(min);
    if min == 0 || max < min || max > MAX_PER_LAUNCH {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "MinCount ({min}) and MaxCount ({max}) must satisfy 1 <= MinCount <= MaxCount <= {MAX_PER_LAUNCH}."
            ),
        ));
    }
    let instance_type = params
        .get("InstanceType")
        .unwrap_or(DEFAULT_INSTANCE_TYPE)
        .to_owned();
    let group_names = params.list("SecurityGroup")?;
    let interfaces = interface_requests(params)?;
    if interfaces.iter().any(|r| r.existing.is_some()) && max > 1 {
        return Err(ApiError::new(
            "InvalidParameterCombination",
            "An existing network interface can be attached to one instance only (MaxCount=1).",
        ));
    }
    let (instance_tags, interface_tags) = tags_by_type(params)?;
    crate::api::query::check_tags(
        &instance_tags
            .iter()
            .map(|(k, v)| crate::api::query::Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect::<Vec<_>>(),
    )?;
    let placement_zone = params.get("Placement.AvailabilityZone");
    let key_name = params.get("KeyName").map(str::to_owned);
    let user_data = params.get("UserData").map(str::to_owned);
    let token = ClientToken::of(params, "RunInstances")?;
    let client_token = token.as_ref().map(|t| t.token().to_owned());
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (reservation_id, views, fresh) = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token answers with the first
        // call's reservation, its instances in their state now.
        if let Some(earlier) = idempotency::earlier::<Instance>(tx, token.as_ref())?
            && let Some(first) = earlier.first()
        {
            let reservation_id = first.reservation_id.clone();
            let views = earlier
                .into_iter()
                .map(|i| View::load(tx, i))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((reservation_id, views, false));
        }
        // The primary interface decides the instance's subnet.
        let primary = &interfaces[0];
        let subnet_id = match (&primary.existing, &primary.subnet_id) {
            (Some(eni), _) => tx.load::<NetworkInterface>(eni)?.subnet_id,
            (None, Some(s)) => {
                check_id(ResourceKind::Subnet, s)?;
                s.clone()
            }
            // spec 1.3: a launch without a subnet goes to a default subnet.
            (None, None) => default_vpc::subnet_for_launch(tx, placement_zone)?.id,
        };
        let subnet = tx.load::<Subnet>(&subnet_id)?;
        if let Some(zone) = placement_zone
            && zone != subnet.availability_zone
        {
            return Err(ApiError::invalid_value(
                "availabilityZone",
                zone,
                &format!(
                    "Subnet '{}' is in the availability zone {}.",
                    subnet.id, subnet.availability_zone
                ),
            ));
        }
        let mut name_ids = Vec::new();
        if !group_names.is_empty() {
            let all = security_group::groups_in(tx)?;
            for name in &group_names {
                let g = all
                    .iter()
                    .find(|g| g.vpc_id == subnet.vpc_id && g.name == *name)
                    .ok_or_else(|| {
                        ApiError::new(
                            "InvalidGroup.NotFound",
                            format!(
                                "The security group '{name}' does not exist in VPC '{}'",
                                subnet.vpc_id
                            ),
                        )
                    })?;
                name_ids.push(g.id.clone());
            }
        }
        let mut placer = placer_for_zone(tx, &subnet.availability_zone)?;
        let reservation_id = new_reservation_id();
        let launch_time = timestamp();
        let mut views = Vec::new();
        for index in 0..max {
            let mut instance = Instance {
                id: super::resource::new_id(ResourceKind::Instance),
                reservation_id: reservation_id.clone(),
                owner_id: ctx.account.id.clone(),
                region: ctx.region.to_owned(),
                image_id: image_id.to_owned(),
                instance_type: instance_type.clone(),
                state: InstanceState::Running,
                launch_time: launch_time.clone(),
                subnet_id: subnet.id.clone(),
                vpc_id: subnet.vpc_id.clone(),
                availability_zone: subnet.availability_zone.clone(),
                private_ip: None,
                groups: Vec::new(),
                key_name: key_name.clone(),
                user_data: user_data.clone(),
                ami_launch_index: index,
                client_token: client_token.clone(),
                state_reason: String::new(),
                tags: instance_tags.clone(),
                host_id: placer.as_mut().and_then(Placer::place),
            };
            let launched =
                launch_interfaces(tx, &mut instance, &interfaces, &name_ids, &interface_tags);
            match launched {
                Ok(()) => {}
                // spec: MinCount is what must fit; beyond it, launch what fits.
                Err(e) if index >= min && e.code == "InsufficientFreeAddressesInSubnet" => break,
                Err(e) => return Err(e),
            }
            if let Some(host) = &instance.host_id {
                let marker = placement_key(ctx.region, host, &instance.id);
                tx.put_raw(marker, ctx.account.id.clone().into_bytes());
            }
            tx.put(&instance)?;
            views.push(View::load(tx, instance)?);
        }
        let made: Vec<Instance> = views.iter().map(|v| v.instance.clone()).collect();
        idempotency::remember(tx, token.as_ref(), &made)?;
        Ok((reservation_id, views, true))
    })?;
    // AWS: a retry's answer differs from the first only in the instances'
    // state, which it shows as it is now.
    let state = fresh.then_some(InstanceState::Pending);
    Ok(Xml::response("RunInstances", ctx.request_id, |x| {
        write_reservation(x, ctx, &reservation_id, &views, state);
    }))
}

/// The placer of a launch into `zone` of the transaction's region: `None`
/// when the region has no hosts at all (an API-only server, whose instances
/// stay unplaced); `InsufficientInstanceCapacity` when it has hosts but none
/// in `zone`. The API reads the hosts and their loads here so that `fleet`
/// places over what it is given and knows nothing of requests.
fn placer_for_zone(tx: &mut Tx, zone: &str) -> Result<Option<Placer>, ApiError> {
    let ctx = tx.ctx();
    let all = registry::hosts(ctx.store, ctx.region)
        .map_err(|e| ApiError::internal(format!("Reading the registered hosts failed: {e}")))?;
    if all.is_empty() {
        return Ok(None);
    }
    let mut load = Vec::new();
    for host in all.iter().filter(|h| h.availability_zone == zone) {
        let placed =
            registry::placed_count(ctx.store, ctx.region, &host.host_id).map_err(store_error)?;
        load.push((host.host_id.clone(), placed));
    }
    match Placer::new(load) {
        Some(placer) => Ok(Some(placer)),
        None => Err(ApiError::new(
            "InsufficientInstanceCapacity",
            format!(
                "We currently do not have sufficient capacity in the Availability Zone you requested ({zone}). No openvpc agent serves that zone: start one with --az {zone}."
            ),
        )),
    }
}

/// Creates (or takes) and attaches the instance's interfaces; the primary
/// one gives the instance its address and groups, and a public address when
/// its subnet maps them or the request asks.
fn launch_interfaces(
    tx: &mut Tx,
    instance: &mut Instance,
    interfaces: &[InterfaceRequest],
    name_ids: &[String],
    interface_tags: &Tags,
) -> Result<(), ApiError> {
    for req in interfaces {
        let mut eni = match &req.existing {
            Some(id) => tx.load::<NetworkInterface>(id)?,
            None => {
                let subnet_id = req
                    .subnet_id
                    .clone()
                    .unwrap_or_else(|| instance.subnet_id.clone());
                check_id(ResourceKind::Subnet, &subnet_id)?;
                let subnet = tx.load::<Subnet>(&subnet_id)?;
                let mut ids = req.group_ids.clone();
                ids.extend(name_ids.iter().cloned());
                let groups = resolve_groups(tx, &subnet.vpc_id, &ids)?;
                let mut eni = eni_mod::create_with(
                    tx,
                    &subnet_id,
                    EniSpec {
                        description: req.description.clone(),
                        addresses: req.addresses.clone(),
                        groups,
                        conntrack: req.conntrack,
                        tags: interface_tags.clone(),
                    },
                    Some(&req.ipv6),
                )?;
                let wants_public = req.device_index == 0
                    && req
                        .associate_public
                        .unwrap_or(subnet.map_public_ip_on_launch);
                if wants_public && let Some(private_ip) = eni.primary_ip() {
                    address::take_for(tx, &mut eni, private_ip)?;
                    eni.auto_public = true;
                }
                eni
            }
        };
        if !eni.ipv6_addresses.is_empty() {
            check_ipv6_supported(&instance.instance_type)?;
        }
        // An interface without IPv4 is an IPv6-only subnet's.
        if eni.private_ips.is_empty() {
            check_ipv6_only_supported(&instance.instance_type, &eni.subnet_id)?;
        }
        if req.device_index == 0 {
            instance.private_ip = eni.primary_ip();
            instance.groups = eni.groups.clone();
            instance.subnet_id.clone_from(&eni.subnet_id);
        }
        eni_mod::attach_in(
            tx,
            &mut eni,
            instance,
            req.device_index,
            req.delete_on_termination,
        )?;
    }
    Ok(())
}

fn write_reservation(
    x: &mut Xml,
    ctx: &Ctx,
    reservation_id: &str,
    views: &[View],
    state: Option<InstanceState>,
) {
    x.elem("reservationId", reservation_id)
        .elem("ownerId", &ctx.account.id)
        .list("groupSet", std::iter::empty::<()>(), |_, _| {})
        .list("instancesSet", views, |x, v| {
            v.write(x, state.unwrap_or(v.instance.state));
        });
}

/// Pagination tokens name the last instance returned.
fn decode_token(token: &str) -> Result<String, ApiError> {
    token
        .strip_prefix("v1.")
        .filter(|id| check_id(ResourceKind::Instance, id).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::new(
                "InvalidNextToken",
                format!(
                    "The token '{token}' is invalid: pass the nextToken of a previous response"
                ),
            )
        })
}

/// The instances a request lists as `InstanceId.N`, each a well-formed ID.
pub(crate) fn listed_ids(params: &Params) -> Result<Vec<String>, ApiError> {
    let ids = params.list("InstanceId")?;
    for id in &ids {
        check_id(ResourceKind::Instance, id)?;
    }
    Ok(ids)
}

/// `InvalidInstanceID.NotFound` for the first of `ids` that is not among
/// `instances` (the caller's): a describe call naming one fails whole, and
/// the waiters retry on that.
pub(crate) fn check_all_found(ids: &[String], instances: &[Instance]) -> Result<(), ApiError> {
    match ids
        .iter()
        .find(|id| !instances.iter().any(|i| i.id == **id))
    {
        Some(missing) => Err(ApiError::new(
            "InvalidInstanceID.NotFound",
            format!("The instance ID '{missing}' does not exist"),
        )),
        None => Ok(()),
    }
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let ids = listed_ids(params)?;
    let filters = params.filters()?;
    let max = params.max_results(5..=1000)?;
    let after = params.get("NextToken").map(decode_token).transpose()?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let (instances, enis) = transact(ctx, |tx| {
        Ok((tx.list::<Instance>()?, tx.list::<NetworkInterface>()?))
    })?;
    check_all_found(&ids, &instances)?;
    let mut shown = Vec::new();
    for i in instances {
        if (!ids.is_empty() && !ids.contains(&i.id))
            || after.as_deref().is_some_and(|a| i.id.as_str() <= a)
        {
            continue;
        }
        let view = View::of(i, &enis);
        if view.matches(&filters)? {
            shown.push(view);
        }
    }
    let next = match max {
        Some(max) if shown.len() > max as usize => {
            shown.truncate(max as usize);
            shown.last().map(|v| format!("v1.{}", v.instance.id))
        }
        _ => None,
    };
    // Group by reservation, in the order reservations first appear.
    let mut reservations: Vec<(String, Vec<View>)> = Vec::new();
    for v in shown {
        match reservations
            .iter_mut()
            .find(|(r, _)| *r == v.instance.reservation_id)
        {
            Some((_, list)) => list.push(v),
            None => reservations.push((v.instance.reservation_id.clone(), vec![v])),
        }
    }
    Ok(Xml::response("DescribeInstances", ctx.request_id, |x| {
        x.list("reservationSet", &reservations, |x, (r, views)| {
            write_reservation(x, ctx, r, views, None);
        })
        .opt("nextToken", next);
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Terminate,
    Stop,
    Start,
}

/// Terminates `instance`: interfaces marked delete-on-termination go (with
/// their addresses and Elastic IP associations), the others are detached.
fn terminate_in(tx: &mut Tx, instance: &mut Instance) -> Result<(), ApiError> {
    for mut eni in tx.list::<NetworkInterface>()? {
        let Some(a) = eni.attachment.clone() else {
            continue;
        };
        if a.instance_id != instance.id {
            continue;
        }
        if a.delete_on_termination {
            eni_mod::delete_in(tx, &eni)?;
        } else {
            eni.attachment = None;
            eni.host_id = None;
            tx.put(&eni)?;
            eni_mod::sync_address_instances(tx, &eni)?;
        }
    }
    if let Some(host) = &instance.host_id {
        tx.delete_raw(placement_key(&instance.region, host, &instance.id));
    }
    instance.state = InstanceState::Terminated;
    instance.private_ip = None;
    instance.state_reason = "Client.UserInitiatedShutdown: User initiated shutdown".into();
    tx.put(&*instance)
}

fn change_state(ctx: &Ctx, params: &Params, change: Change) -> Result<String, ApiError> {
    let ids = listed_ids(params)?;
    if ids.is_empty() {
        return Err(ApiError::missing_parameter("InstanceId.1"));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let changes = transact(ctx, |tx| {
        let mut out = Vec::new();
        for id in &ids {
            let mut instance = tx.load::<Instance>(id)?;
            let previous = instance.state;
            // The transitional state each call answers with; the stored
            // state is already the one it leads to.
            let current = match (change, previous) {
                (_, InstanceState::Terminated) if change != Change::Terminate => {
                    return Err(ApiError::new(
                        "IncorrectInstanceState",
                        format!(
                            "The instance '{id}' is not in a state from which it can be {}.",
                            if change == Change::Stop {
                                "stopped"
                            } else {
                                "started"
                            }
                        ),
                    ));
                }
                (Change::Terminate, InstanceState::Terminated) => InstanceState::Terminated,
                (Change::Terminate, _) => {
                    terminate_in(tx, &mut instance)?;
                    InstanceState::ShuttingDown
                }
                (Change::Stop, InstanceState::Stopped) => InstanceState::Stopped,
                (Change::Stop, _) => {
                    instance.state = InstanceState::Stopped;
                    instance.state_reason = "User initiated".into();
                    tx.put(&instance)?;
                    InstanceState::Stopping
                }
                (Change::Start, InstanceState::Running) => InstanceState::Running,
                (Change::Start, _) => {
                    instance.state = InstanceState::Running;
                    instance.state_reason = String::new();
                    tx.put(&instance)?;
                    InstanceState::Pending
                }
            };
            out.push((id.clone(), previous, current));
        }
        Ok(out)
    })?;
    let action = match change {
        Change::Terminate => "TerminateInstances",
        Change::Stop => "StopInstances",
        Change::Start => "StartInstances",
    };
    Ok(Xml::response(action, ctx.request_id, |x| {
        x.list("instancesSet", &changes, |x, (id, previous, current)| {
            x.elem("instanceId", id)
                .node("currentState", |x| {
                    x.elem("code", current.code()).elem("name", current);
                })
                .node("previousState", |x| {
                    x.elem("code", previous.code()).elem("name", previous);
                });
        });
    }))
}

pub(crate) fn primary_eni(
    tx: &mut Tx,
    instance: &Instance,
) -> Result<Option<NetworkInterface>, ApiError> {
    Ok(View::load(tx, instance.clone())?.primary().cloned())
}

pub fn describe_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("InstanceId")?;
    check_id(ResourceKind::Instance, id)?;
    let attribute = params.required("Attribute")?;
    if !matches!(
        attribute,
        "sourceDestCheck"
            | "groupSet"
            | "instanceType"
            | "userData"
            | "disableApiTermination"
            | "disableApiStop"
    ) {
        return Err(ApiError::new(
            "InvalidParameterValue",
            format!("Value ({attribute}) for parameter attribute is invalid. Unknown attribute."),
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let view = transact(ctx, |tx| {
        let instance = tx.load::<Instance>(id)?;
        View::load(tx, instance)
    })?;
    Ok(Xml::response(
        "DescribeInstanceAttribute",
        ctx.request_id,
        |x| {
            x.elem("instanceId", &view.instance.id);
            let value_node = |x: &mut Xml, name: &str, v: &str| {
                x.node(name, |x| {
                    x.elem("value", v);
                });
            };
            match attribute {
                "sourceDestCheck" => {
                    value_node(x, "sourceDestCheck", &view.source_dest_check().to_string())
                }
                "groupSet" => write_groups(x, view.groups()),
                "instanceType" => value_node(x, "instanceType", &view.instance.instance_type),
                "userData" => {
                    if let Some(u) = &view.instance.user_data {
                        value_node(x, "userData", u);
                    }
                }
                other => value_node(x, other, "false"),
            }
        },
    ))
}

pub fn modify_attribute(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("InstanceId")?;
    check_id(ResourceKind::Instance, id)?;
    let mut source_dest = params.bool("SourceDestCheck.Value")?;
    let mut group_ids = params.list("GroupId")?;
    // The older form: Attribute=sourceDestCheck|groupSet with Value=….
    match (params.get("Attribute"), params.get("Value")) {
        (Some("sourceDestCheck"), Some(v)) => {
            source_dest = Some(match v {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ApiError::invalid_value(
                        "Value",
                        v,
                        "Expected true or false.",
                    ));
                }
            });
        }
        (Some("groupSet"), Some(v)) => group_ids.push(v.to_owned()),
        (Some(other), _) if other != "sourceDestCheck" && other != "groupSet" => {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Value ({other}) for parameter attribute is invalid. Only sourceDestCheck and groupSet can be modified here."
                ),
            ));
        }
        _ => {}
    }
    if source_dest.is_none() && group_ids.is_empty() {
        return Err(ApiError::new(
            "MissingParameter",
            "Specify SourceDestCheck.Value or GroupId.N.",
        ));
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut instance = tx.load::<Instance>(id)?;
        let mut eni = primary_eni(tx, &instance)?.ok_or_else(|| {
            ApiError::new(
                "IncorrectInstanceState",
                format!("The instance '{id}' has no network interface (it is terminated)."),
            )
        })?;
        if let Some(v) = source_dest {
            eni.source_dest_check = v;
        }
        if !group_ids.is_empty() {
            let vpc_id = eni.vpc_id.clone();
            eni.groups = resolve_groups(tx, &vpc_id, &group_ids)?;
            instance.groups = eni.groups.clone();
            tx.put(&instance)?;
        }
        tx.put(&eni)
    })?;
    Ok(ok_return(ctx, "ModifyInstanceAttribute"))
}
