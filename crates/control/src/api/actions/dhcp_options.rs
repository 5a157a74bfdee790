//! DHCP options sets (spec 1.4, 1.6; `dopt-`): CreateDhcpOptions,
//! DescribeDhcpOptions, DeleteDhcpOptions and AssociateDhcpOptions, and the
//! account's default set that every new VPC is associated with.
//!
//! The default set: AWS gives each account and region one real `dopt-` set
//! (domain-name `ec2.internal` in us-east-1, else `REGION.compute.internal`;
//! domain-name-servers `AmazonProvidedDNS`) and associates new VPCs with it.
//! Here it is made by the first CreateVpc of the account and region that
//! finds none (a record with `is_default`), inside that CreateVpc's
//! transaction; if the user deletes it, the next CreateVpc makes a new one.
//! moto instead shows new VPCs with `default` (no set); we follow AWS.
//! Associating `default` leaves a VPC with no options set, as in AWS.

use std::net::{IpAddr, Ipv4Addr};

use openvpc_model::ResourceKind;

use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::vpc::Vpc;
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::dhcp_options::DhcpOptions;

/// DHCP options sets per region (AWS's default quota).
pub const DHCP_OPTIONS_QUOTA: usize = 1000;

/// The value of AssociateDhcpOptions' `DhcpOptionsId` that means "no set".
pub const NO_OPTIONS: &str = "default";

/// At most this many servers per server option (AWS and moto agree).
const MAX_SERVERS: usize = 4;

/// The DHCP-options actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateDhcpOptions" => create(ctx, params),
        "DescribeDhcpOptions" => describe(ctx, params),
        "DeleteDhcpOptions" => delete(ctx, params),
        "AssociateDhcpOptions" => associate(ctx, params),
        _ => return None,
    })
}

impl Resource for DhcpOptions {
    const KIND: ResourceKind = ResourceKind::DhcpOptions;
    const NOT_FOUND: &'static str = "InvalidDhcpOptionID.NotFound";
    const NOUN: &'static str = "dhcpOption";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        Some(match name {
            "dhcp-options-id" => vec![self.id.clone()],
            "owner-id" => vec![self.owner_id.clone()],
            "key" => self.configurations.iter().map(|(k, _)| k.clone()).collect(),
            "value" => self
                .configurations
                .iter()
                .flat_map(|(_, v)| v.iter().cloned())
                .collect(),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("dhcpOptionsId", &self.id)
            .elem("ownerId", &self.owner_id)
            .list("dhcpConfigurationSet", &self.configurations, |x, (k, v)| {
                x.elem("key", k).list("valueSet", v, |x, v| {
                    x.elem("value", v);
                });
            });
        write_tags(x, &self.tags);
    }
}

/// spec 1.4: the domain name of the default set.
pub fn default_domain_name(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".into()
    } else {
        format!("{region}.compute.internal")
    }
}

/// spec 1.6: the ID of the account's default set, made now if missing. Called
/// by CreateVpc inside its transaction.
pub fn default_set_id(tx: &mut Tx) -> Result<String, ApiError> {
    if let Some(d) = tx.list::<DhcpOptions>()?.into_iter().find(|d| d.is_default) {
        return Ok(d.id);
    }
    let ctx = tx.ctx();
    let set = DhcpOptions {
        id: new_id(ResourceKind::DhcpOptions),
        owner_id: ctx.account.id.clone(),
        configurations: vec![
            ("domain-name".into(), vec![default_domain_name(ctx.region)]),
            (
                "domain-name-servers".into(),
                vec!["AmazonProvidedDNS".into()],
            ),
        ],
        is_default: true,
        tags: Vec::new(),
    };
    tx.put(&set)?;
    Ok(set.id)
}

fn invalid(key: &str, values: &[String], why: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterValue",
        format!(
            "Value ({}) for parameter {key} is invalid. {why}",
            values.join(",")
        ),
    )
}

/// Checks one option against AWS's rules for its key.
fn check_option(key: &str, values: &[String]) -> Result<(), ApiError> {
    if values.is_empty() {
        return Err(invalid(key, values, "Give at least one value."));
    }
    let servers = |allow_amazon: bool, v4_only: bool| -> Result<(), ApiError> {
        if values.len() > MAX_SERVERS {
            return Err(invalid(
                key,
                values,
                &format!("At most {MAX_SERVERS} servers may be given."),
            ));
        }
        for v in values {
            let ok = (allow_amazon && v == "AmazonProvidedDNS")
                || if v4_only {
                    v.parse::<Ipv4Addr>().is_ok()
                } else {
                    v.parse::<IpAddr>().is_ok()
                };
            if !ok {
                return Err(invalid(
                    key,
                    values,
                    &format!("'{v}' is not a valid server address."),
                ));
            }
        }
        Ok(())
    };
    match key {
        "domain-name" => {
            // Several domains go in one value, separated by spaces.
            if values.len() != 1 || values[0].trim().is_empty() {
                return Err(invalid(key, values, "Give exactly one domain name value."));
            }
            Ok(())
        }
        "domain-name-servers" => servers(true, false),
        "ntp-servers" => servers(false, false),
        "netbios-name-servers" => servers(false, true),
        "netbios-node-type" => match values {
            [v] if matches!(v.as_str(), "1" | "2" | "4" | "8") => Ok(()),
            _ => Err(invalid(
                key,
                values,
                "The node type is one of 1, 2, 4 or 8.",
            )),
        },
        "ipv6-address-preferred-lease-time" => match values {
            [v] if v
                .parse::<u32>()
                .is_ok_and(|s| (140..=2_147_483_647).contains(&s)) =>
            {
                Ok(())
            }
            _ => Err(invalid(
                key,
                values,
                "The lease time is a number of seconds from 140 to 2147483647.",
            )),
        },
        _ => Err(ApiError::new(
            "InvalidParameterValue",
            format!(
                "Value ({key}) for parameter key is invalid. Use domain-name, domain-name-servers, ntp-servers, netbios-name-servers, netbios-node-type or ipv6-address-preferred-lease-time."
            ),
        )),
    }
}

/// `DhcpConfiguration.N.Key` with `DhcpConfiguration.N.Value.M`, validated.
fn configurations(params: &Params) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for c in params.structs("DhcpConfiguration")? {
        let key = c
            .required("Key")
            .map_err(|_| ApiError::missing_parameter("DhcpConfiguration.N.Key"))?;
        let values = c.list("Value")?;
        check_option(key, &values)?;
        if out.iter().any(|(k, _)| k == key) {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("The option {key} is given more than once; give each key once."),
            ));
        }
        out.push((key.to_owned(), values));
    }
    if out.is_empty() {
        return Err(ApiError::missing_parameter("DhcpConfiguration"));
    }
    Ok(out)
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let configurations = configurations(params)?;
    let tags: Tags = tags_for(params, "dhcp-options")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let set = transact(ctx, |tx| {
        if tx.list::<DhcpOptions>()?.len() >= DHCP_OPTIONS_QUOTA {
            return Err(ApiError::new(
                "DhcpOptionsLimitExceeded",
                format!(
                    "The maximum number of DHCP options sets has been reached ({DHCP_OPTIONS_QUOTA} per region). Delete an unused set or ask for a higher quota."
                ),
            ));
        }
        let set = DhcpOptions {
            id: new_id(ResourceKind::DhcpOptions),
            owner_id: ctx.account.id.clone(),
            configurations: configurations.clone(),
            is_default: false,
            tags: tags.clone(),
        };
        tx.put(&set)?;
        Ok(set)
    })?;
    Ok(Xml::response("CreateDhcpOptions", ctx.request_id, |x| {
        x.node("dhcpOptions", |x| set.write(x));
    }))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<DhcpOptions>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeDhcpOptions",
            ids: "DhcpOptionsId",
            set: "dhcpOptionsSet",
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("DhcpOptionsId")?;
    check_id(ResourceKind::DhcpOptions, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        tx.load::<DhcpOptions>(id)?;
        // A set in use by a VPC stays until the VPC moves to another one.
        if let Some(vpc) = tx
            .list::<Vpc>()?
            .into_iter()
            .find(|v| v.dhcp_options_id == id)
        {
            return Err(ApiError::new(
                "DependencyViolation",
                format!(
                    "The dhcpOptions '{id}' has dependencies and cannot be deleted: it is associated with {}.",
                    vpc.id
                ),
            ));
        }
        tx.delete::<DhcpOptions>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteDhcpOptions"))
}

pub fn associate(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let options_id = params.required("DhcpOptionsId")?;
    let vpc_id = params.required("VpcId")?;
    if options_id != NO_OPTIONS {
        check_id(ResourceKind::DhcpOptions, options_id)?;
    }
    check_id(ResourceKind::Vpc, vpc_id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        if options_id != NO_OPTIONS {
            tx.load::<DhcpOptions>(options_id)?;
        }
        let mut vpc = tx.load::<Vpc>(vpc_id)?;
        vpc.dhcp_options_id = options_id.to_owned();
        tx.put(&vpc)
    })?;
    Ok(ok_return(ctx, "AssociateDhcpOptions"))
}
