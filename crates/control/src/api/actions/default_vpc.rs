//! The default VPC of each account and region (spec 1.3): made the first
//! time the account uses the region, as AWS has one ready in every new
//! account; CreateDefaultVpc and CreateDefaultSubnet; and what actions that
//! omit a VPC or subnet fall back to.
//!
//! A marker record remembers that the region's default VPC was made, so a
//! deleted default VPC stays deleted (spec 1.3: it cannot be restored except
//! by CreateDefaultVpc).

use openvpc_model::{Ipv4Cidr, ResourceKind};

use super::internet_gateway::InternetGateway;
use super::resource::{Resource, Tx, new_id, transact};
use super::route_table::{Destination, Route, RouteTable, Target, TargetKind};
use super::subnet::{self, Subnet, Zone};
use super::vpc::{NewVpc, Vpc, insert_vpc};
use super::{Ctx, network_acl};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;

/// spec 1.3: the default VPC's block, split into one /20 per zone.
const DEFAULT_CIDR: [u8; 4] = [172, 31, 0, 0];
const DEFAULT_SUBNET_LEN: u8 = 20;

/// The default-VPC actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateDefaultVpc" => create_vpc(ctx, params),
        "CreateDefaultSubnet" => create_subnet(ctx, params),
        _ => return None,
    })
}

fn marker_key(ctx: &Ctx) -> Vec<u8> {
    ctx.key("meta", "default-vpc")
}

/// Makes the region's default VPC the first time an account uses the
/// region. Cheap afterwards: one read.
pub fn ensure(ctx: &Ctx) -> Result<(), ApiError> {
    let marker = marker_key(ctx);
    if ctx
        .store
        .get(&marker)
        .map_err(super::store_error)?
        .is_some()
    {
        return Ok(());
    }
    transact(ctx, |tx| {
        if tx.get_raw(&marker)?.is_some() {
            return Ok(());
        }
        tx.put_raw(marker.clone(), b"made".to_vec());
        // An account that already filled its VPC quota gets no default VPC.
        match make(tx) {
            Ok(_) => Ok(()),
            Err(e) if e.code == "VpcLimitExceeded" => Ok(()),
            Err(e) => Err(e),
        }
    })
}

/// The account's default VPC, if it has one.
pub fn find(tx: &mut Tx) -> Result<Option<Vpc>, ApiError> {
    Ok(tx.list::<Vpc>()?.into_iter().find(|v| v.is_default))
}

/// The default subnet for a launch that names none: the one in `zone`, or
/// the first zone's; `VPCIdNotSpecified` without a default VPC.
pub fn subnet_for_launch(tx: &mut Tx, zone: Option<&str>) -> Result<Subnet, ApiError> {
    let Some(vpc) = find(tx)? else {
        return Err(no_default_vpc());
    };
    let mut subnets: Vec<Subnet> = tx
        .list::<Subnet>()?
        .into_iter()
        .filter(|s| s.vpc_id == vpc.id && s.default_for_az)
        .collect();
    subnets.sort_by(|a, b| a.availability_zone.cmp(&b.availability_zone));
    let found = match zone {
        Some(z) => subnets.into_iter().find(|s| s.availability_zone == z),
        None => subnets.into_iter().next(),
    };
    found.ok_or_else(|| {
        ApiError::new(
            "MissingInput",
            "No default subnet for availability zone: name a SubnetId, or run CreateDefaultSubnet.",
        )
    })
}

pub fn no_default_vpc() -> ApiError {
    ApiError::new(
        "VPCIdNotSpecified",
        "No default VPC for this user. Name a VPC (or subnet), or run CreateDefaultVpc.",
    )
}

/// spec 1.3: 172.31.0.0/16 with a /20 default subnet per zone, an attached
/// internet gateway and `0.0.0.0/0 → igw` in the main table, besides what
/// every VPC gets.
fn make(tx: &mut Tx) -> Result<Vpc, ApiError> {
    let ctx = tx.ctx();
    let cidr =
        Ipv4Cidr::new(DEFAULT_CIDR.into(), 16).map_err(|e| ApiError::internal(e.to_string()))?;
    let vpc = insert_vpc(
        tx,
        NewVpc {
            cidr,
            tenancy: "default",
            is_default: true,
            ipv6: false,
            tags: Vec::new(),
        },
    )?;
    for zone in subnet::zones(ctx.region) {
        add_default_subnet(tx, &vpc, &zone)?;
    }
    let igw = InternetGateway {
        id: new_id(ResourceKind::InternetGateway),
        owner_id: ctx.account.id.clone(),
        vpc_id: Some(vpc.id.clone()),
        tags: Vec::new(),
    };
    tx.put(&igw)?;
    let mut main = tx
        .list::<RouteTable>()?
        .into_iter()
        .find(|t| t.vpc_id == vpc.id && t.is_main())
        .ok_or_else(|| ApiError::internal("the new VPC has no main route table"))?;
    main.routes.push(Route {
        destination: Destination::Ipv4(Ipv4Cidr::any()),
        target: Target {
            kind: TargetKind::Gateway,
            id: igw.id,
        },
        origin: "CreateRoute".into(),
        blackhole: false,
    });
    tx.put(&main)?;
    Ok(vpc)
}

/// A default subnet in `zone`: the next free /20 of the default VPC.
fn add_default_subnet(tx: &mut Tx, vpc: &Vpc, zone: &Zone) -> Result<Subnet, ApiError> {
    let ctx = tx.ctx();
    let taken: Vec<Subnet> = tx
        .list::<Subnet>()?
        .into_iter()
        .filter(|s| s.vpc_id == vpc.id)
        .collect();
    let block =
        Ipv4Cidr::new(DEFAULT_CIDR.into(), 16).map_err(|e| ApiError::internal(e.to_string()))?;
    let step = 1u32 << (32 - DEFAULT_SUBNET_LEN);
    let free = (0..block.size() as u32 / step)
        .filter_map(|i| block.nth(i * step))
        .filter_map(|base| Ipv4Cidr::new(base, DEFAULT_SUBNET_LEN).ok())
        .find(|c| {
            !taken
                .iter()
                .any(|s| s.cidr_block.is_some_and(|b| b.overlaps(c)))
        })
        .ok_or_else(|| {
            ApiError::new(
                "DefaultSubnetAlreadyExistsInAvailabilityZone",
                "No /20 is free in the default VPC for another default subnet.",
            )
        })?;
    let subnet = subnet::new_subnet(ctx, vpc, free, zone, true, Vec::new());
    tx.put(&subnet)?;
    network_acl::subnet_created(tx, &subnet)?;
    Ok(subnet)
}

pub fn create_vpc(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let vpc = transact(ctx, |tx| {
        // spec 1.3: at most one per region.
        if find(tx)?.is_some() {
            return Err(ApiError::new(
                "DefaultVpcAlreadyExists",
                "A Default VPC already exists for this account in this region.",
            ));
        }
        tx.put_raw(marker_key(ctx), b"made".to_vec());
        make(tx)
    })?;
    Ok(Xml::response("CreateDefaultVpc", ctx.request_id, |x| {
        x.node("vpc", |x| vpc.write(x));
    }))
}

pub fn create_subnet(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let zone_name = params.required("AvailabilityZone")?;
    let zone = subnet::zones(ctx.region)
        .into_iter()
        .find(|z| z.name == zone_name)
        .ok_or_else(|| {
            ApiError::invalid_value(
                "AvailabilityZone",
                zone_name,
                "Name one of the region's zones (DescribeAvailabilityZones).",
            )
        })?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let subnet = transact(ctx, |tx| {
        let Some(vpc) = find(tx)? else {
            return Err(ApiError::new(
                "DefaultVpcDoesNotExist",
                "No default VPC exists for this account in this region: run CreateDefaultVpc first.",
            ));
        };
        // spec 1.3: at most one default subnet per zone.
        if let Some(existing) = tx
            .list::<Subnet>()?
            .into_iter()
            .find(|s| s.vpc_id == vpc.id && s.default_for_az && s.availability_zone == zone.name)
        {
            return Err(ApiError::new(
                "DefaultSubnetAlreadyExistsInAvailabilityZone",
                format!(
                    "'{}' is already the default subnet in {}.",
                    existing.id, zone.name
                ),
            ));
        }
        add_default_subnet(tx, &vpc, &zone)
    })?;
    Ok(Xml::response("CreateDefaultSubnet", ctx.request_id, |x| {
        x.node("subnet", |x| subnet.write(x));
    }))
}
