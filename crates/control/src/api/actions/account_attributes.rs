//! DescribeAccountAttributes: the questions configuration-management modules
//! and infrastructure-as-code providers ask EC2 before anything else (which
//! platforms, which default VPC, how many Elastic IPs and security groups
//! per interface). Read-only: every value is either the region's default
//! VPC or a limit another module enforces, named here by its constant so the
//! answer cannot drift from what a later call is refused at.

use super::address::ADDRESS_QUOTA;
use super::network_interface::GROUPS_PER_INTERFACE;
use super::resource::transact;
use super::{Ctx, default_vpc};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;

/// AWS's legacy `max-instances` value. AWS documents the attribute as no
/// longer reflecting any limit (vCPU quotas replaced it) and still answers
/// 20 for a default account; openvpc has no per-region instance count to
/// report either, so it answers as AWS does.
const LEGACY_MAX_INSTANCES: usize = 20;

/// One account attribute AWS answers, in the order AWS lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attribute {
    VpcMaxSecurityGroupsPerInterface,
    MaxInstances,
    SupportedPlatforms,
    DefaultVpc,
    MaxElasticIps,
    VpcMaxElasticIps,
}

impl Attribute {
    const ALL: [Attribute; 6] = [
        Attribute::VpcMaxSecurityGroupsPerInterface,
        Attribute::MaxInstances,
        Attribute::SupportedPlatforms,
        Attribute::DefaultVpc,
        Attribute::MaxElasticIps,
        Attribute::VpcMaxElasticIps,
    ];

    fn name(self) -> &'static str {
        match self {
            Attribute::VpcMaxSecurityGroupsPerInterface => "vpc-max-security-groups-per-interface",
            Attribute::MaxInstances => "max-instances",
            Attribute::SupportedPlatforms => "supported-platforms",
            Attribute::DefaultVpc => "default-vpc",
            Attribute::MaxElasticIps => "max-elastic-ips",
            Attribute::VpcMaxElasticIps => "vpc-max-elastic-ips",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// The account-attribute actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "DescribeAccountAttributes" => describe(ctx, params),
        _ => return None,
    })
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let mut wanted = Vec::new();
    for name in params.list("AttributeName")? {
        let attribute = Attribute::parse(&name).ok_or_else(|| {
            ApiError::invalid_value(
                "AttributeName",
                &name,
                &format!(
                    "Valid account attribute names are: {}.",
                    Attribute::ALL.map(Attribute::name).join(", ")
                ),
            )
        })?;
        wanted.push(attribute);
    }
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    // No names: every attribute. Names: those, once each, in AWS's order.
    let shown: Vec<Attribute> = Attribute::ALL
        .into_iter()
        .filter(|a| wanted.is_empty() || wanted.contains(a))
        .collect();
    let default_vpc = if shown.contains(&Attribute::DefaultVpc) {
        transact(ctx, default_vpc::find)?.map(|v| v.id)
    } else {
        None
    };
    Ok(Xml::response(
        "DescribeAccountAttributes",
        ctx.request_id,
        |x| {
            x.list("accountAttributeSet", &shown, |x, a| {
                let values: Vec<String> = match a {
                    Attribute::VpcMaxSecurityGroupsPerInterface => {
                        vec![GROUPS_PER_INTERFACE.to_string()]
                    }
                    Attribute::MaxInstances => vec![LEGACY_MAX_INSTANCES.to_string()],
                    // EC2-Classic is retired: every account is VPC-only.
                    Attribute::SupportedPlatforms => vec!["VPC".to_owned()],
                    Attribute::DefaultVpc => {
                        vec![default_vpc.clone().unwrap_or_else(|| "none".to_owned())]
                    }
                    // Elastic IPs have one regional quota, whichever name
                    // (the EC2-Classic one or the VPC one) asks for it.
                    Attribute::MaxElasticIps | Attribute::VpcMaxElasticIps => {
                        vec![ADDRESS_QUOTA.to_string()]
                    }
                };
                x.elem("attributeName", a.name())
                    .list("attributeValueSet", &values, |x, v| {
                        x.elem("attributeValue", v);
                    });
            });
        },
    ))
}
