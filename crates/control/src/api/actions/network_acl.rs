//! Network ACLs (spec 1.6, 4, 12): CreateNetworkAcl, DeleteNetworkAcl,
//! DescribeNetworkAcls, Create/Replace/DeleteNetworkAclEntry and
//! ReplaceNetworkAclAssociation; the default ACL every VPC gets (made and
//! removed inside CreateVpc's and DeleteVpc's transactions) and the one
//! association every subnet has (made and removed inside CreateSubnet's and
//! DeleteSubnet's).
//!
//! An ACL is one record holding its numbered entries and its subnet
//! associations, so moving a subnet or editing a rule is one record write.
//! The final `*` deny rules are never stored: they cannot change, so they are
//! added wherever entries are shown, counted or evaluated ([`NetworkAcl::rules`]).
//! This module validates and stores rules; the dataplane evaluates them.

use openvpc_model::rule::{IpProtocol, L4Match, RuleAction, TrafficMatch, ip_protocol};
use openvpc_model::{Ipv4Cidr, ResourceKind, canonical_ipv6_cidr};

use super::idempotency::{self, ClientToken};
use super::resource::{
    DescribeSpec, Resource, Tags, Tx, check_id, describe as describe_resources, new_id, ok_return,
    transact, write_tags,
};
use super::subnet::Subnet;
use super::vpc::{Vpc, has_dependencies};
use super::{Ctx, tags_for};
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;
pub use crate::records::network_acl::{
    AclRule, Association, Entry, EntryCidr, IPV4_STAR_RULE, IPV6_STAR_RULE, NetworkAcl,
};

/// spec 4.4, 13: network ACLs per VPC (default quota), the default included.
pub const ACLS_PER_VPC: usize = 200;

/// spec 4.4, 13: rules per ACL, per direction and per address family,
/// counting the `*` rule.
pub const RULES_PER_DIRECTION: usize = 20;

/// spec 4.1: the highest rule number a client may use.
pub const MAX_RULE_NUMBER: u16 = 32766;

/// spec 4.2: the default ACL's allow-all rules.
const DEFAULT_IPV4_RULE: u16 = 100;
const DEFAULT_IPV6_RULE: u16 = 101;

/// spec 4.4: at most 20 rules per direction and family, `*` included.
fn check_rule_quota(acl: &NetworkAcl) -> Result<(), ApiError> {
    for egress in [false, true] {
        for ipv6 in [false, true] {
            let custom = acl
                .entries
                .iter()
                .filter(|e| e.egress == egress && e.cidr.is_ipv6() == ipv6)
                .count();
            if custom + 1 > RULES_PER_DIRECTION {
                return Err(ApiError::new(
                    "NetworkAclEntryLimitExceeded",
                    format!(
                        "The network ACL '{}' already has the maximum of {RULES_PER_DIRECTION} {} {} rules (the '*' rule included).",
                        acl.id,
                        if ipv6 { "IPv6" } else { "IPv4" },
                        if egress { "outbound" } else { "inbound" },
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The protocol as DescribeNetworkAcls shows it: always a number, `-1` for all.
fn protocol_number(p: IpProtocol) -> String {
    match p {
        IpProtocol::All => "-1".into(),
        IpProtocol::Number(n) => n.to_string(),
    }
}

fn action_text(a: RuleAction) -> &'static str {
    match a {
        RuleAction::Allow => "allow",
        RuleAction::Deny => "deny",
    }
}

fn cidr_text(c: &EntryCidr) -> String {
    match c {
        EntryCidr::Ipv4(c) => c.to_string(),
        EntryCidr::Ipv6(c) => c.clone(),
    }
}

fn write_rule(x: &mut Xml, r: &AclRule) {
    x.elem("ruleNumber", r.rule_number)
        .elem("protocol", protocol_number(r.traffic.protocol))
        .elem("ruleAction", action_text(r.action))
        .elem("egress", r.egress);
    match &r.cidr {
        EntryCidr::Ipv4(c) => x.elem("cidrBlock", c),
        EntryCidr::Ipv6(c) => x.elem("ipv6CidrBlock", c),
    };
    match r.traffic.l4 {
        L4Match::Icmp { icmp_type, code } => {
            x.node("icmpTypeCode", |x| {
                x.elem("code", code.map_or(-1, i32::from))
                    .elem("type", icmp_type.map_or(-1, i32::from));
            });
        }
        L4Match::Ports { from, to } => {
            x.node("portRange", |x| {
                x.elem("from", from).elem("to", to);
            });
        }
        L4Match::Any => {}
    }
}

impl Resource for NetworkAcl {
    const KIND: ResourceKind = ResourceKind::NetworkAcl;
    const NOT_FOUND: &'static str = "InvalidNetworkAclID.NotFound";
    const NOUN: &'static str = "network acl";

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> &Tags {
        &self.tags
    }

    fn filter_values(&self, name: &str) -> Option<Vec<String>> {
        let rules = || self.shown();
        let ports = |from: bool| {
            rules()
                .iter()
                .filter_map(|r| match r.traffic.l4 {
                    L4Match::Ports { from: f, to } => Some(if from { f } else { to }.to_string()),
                    _ => None,
                })
                .collect()
        };
        let icmp = |want_type: bool| {
            rules()
                .iter()
                .filter_map(|r| match r.traffic.l4 {
                    L4Match::Icmp { icmp_type, code } => {
                        let v = if want_type { icmp_type } else { code };
                        Some(v.map_or(-1, i32::from).to_string())
                    }
                    _ => None,
                })
                .collect()
        };
        Some(match name {
            // moto also answers `id` (its generic attribute filter).
            "network-acl-id" | "id" => vec![self.id.clone()],
            "vpc-id" => vec![self.vpc_id.clone()],
            "default" => vec![self.is_default.to_string()],
            "owner-id" => vec![self.owner_id.clone()],
            "association.association-id" => {
                self.associations.iter().map(|a| a.id.clone()).collect()
            }
            "association.network-acl-id" => {
                self.associations.iter().map(|_| self.id.clone()).collect()
            }
            "association.subnet-id" => self
                .associations
                .iter()
                .map(|a| a.subnet_id.clone())
                .collect(),
            "entry.cidr" => rules()
                .iter()
                .filter(|r| !r.cidr.is_ipv6())
                .map(|r| cidr_text(&r.cidr))
                .collect(),
            "entry.ipv6-cidr" => rules()
                .iter()
                .filter(|r| r.cidr.is_ipv6())
                .map(|r| cidr_text(&r.cidr))
                .collect(),
            // The number AWS shows, and for the common protocols the name
            // its filter documentation also allows.
            "entry.protocol" => rules()
                .iter()
                .flat_map(|r| {
                    let mut v = vec![protocol_number(r.traffic.protocol)];
                    match r.traffic.protocol {
                        IpProtocol::All => v.push("all".into()),
                        IpProtocol::Number(
                            ip_protocol::TCP | ip_protocol::UDP | ip_protocol::ICMP,
                        ) => v.push(r.traffic.protocol.to_string()),
                        IpProtocol::Number(_) => {}
                    }
                    v
                })
                .collect(),
            "entry.rule-number" => rules().iter().map(|r| r.rule_number.to_string()).collect(),
            "entry.rule-action" => rules()
                .iter()
                .map(|r| action_text(r.action).to_owned())
                .collect(),
            "entry.egress" => rules().iter().map(|r| r.egress.to_string()).collect(),
            "entry.port-range.from" => ports(true),
            "entry.port-range.to" => ports(false),
            "entry.icmp.type" => icmp(true),
            "entry.icmp.code" => icmp(false),
            _ => return None,
        })
    }

    fn write(&self, x: &mut Xml) {
        x.elem("networkAclId", &self.id)
            .elem("vpcId", &self.vpc_id)
            // botocore reads `IsDefault` from `<default>`, not `<isDefault>`.
            .elem("default", self.is_default)
            .list("entrySet", &self.shown(), write_rule)
            .list("associationSet", &self.associations, |x, a| {
                x.elem("networkAclAssociationId", &a.id)
                    .elem("networkAclId", &self.id)
                    .elem("subnetId", &a.subnet_id);
            });
        write_tags(x, &self.tags);
        x.elem("ownerId", &self.owner_id);
    }
}

/// The network-ACL actions this module answers.
pub fn dispatch(ctx: &Ctx, action: &str, params: &Params) -> Option<Result<String, ApiError>> {
    Some(match action {
        "CreateNetworkAcl" => create(ctx, params),
        "DescribeNetworkAcls" => describe(ctx, params),
        "DeleteNetworkAcl" => delete(ctx, params),
        "CreateNetworkAclEntry" => create_entry(ctx, params),
        "ReplaceNetworkAclEntry" => replace_entry(ctx, params),
        "DeleteNetworkAclEntry" => delete_entry(ctx, params),
        "ReplaceNetworkAclAssociation" => replace_association(ctx, params),
        _ => return None,
    })
}

fn all_allowed(rule_number: u16, egress: bool, cidr: EntryCidr) -> Entry {
    Entry {
        rule_number,
        egress,
        action: RuleAction::Allow,
        traffic: TrafficMatch::ALL,
        cidr,
    }
}

fn new_default_acl(ctx: &Ctx, vpc_id: &str) -> NetworkAcl {
    let any = EntryCidr::Ipv4(Ipv4Cidr::any());
    let mut acl = NetworkAcl {
        id: new_id(ResourceKind::NetworkAcl),
        vpc_id: vpc_id.to_owned(),
        owner_id: ctx.account.id.clone(),
        is_default: true,
        // spec 4.2: rule 100 allows all IPv4, in both directions.
        entries: vec![
            all_allowed(DEFAULT_IPV4_RULE, true, any.clone()),
            all_allowed(DEFAULT_IPV4_RULE, false, any),
        ],
        associations: Vec::new(),
        ipv6: false,
        tags: Vec::new(),
    };
    acl.sort_entries();
    acl
}

/// spec 1.6, 4.2: creates the VPC's default ACL, inside CreateVpc's
/// transaction (and CreateDefaultVpc's).
pub fn vpc_created(tx: &mut Tx, vpc: &Vpc) -> Result<NetworkAcl, ApiError> {
    let acl = new_default_acl(tx.ctx(), &vpc.id);
    tx.put(&acl)?;
    Ok(acl)
}

/// spec 4.2: when a VPC gains IPv6, its ACLs get the IPv6 `*` rules, and the
/// default ACL gets rule 101 allowing `::/0` in each direction it still has
/// as created (a direction already customised is left alone).
pub fn vpc_ipv6_added(tx: &mut Tx, vpc_id: &str) -> Result<(), ApiError> {
    for mut acl in acls_of_vpc(tx, vpc_id)? {
        if acl.ipv6 {
            continue;
        }
        acl.ipv6 = true;
        if acl.is_default {
            for egress in [true, false] {
                let untouched =
                    acl.entries
                        .iter()
                        .filter(|e| e.egress == egress)
                        .eq([&all_allowed(
                            DEFAULT_IPV4_RULE,
                            egress,
                            EntryCidr::Ipv4(Ipv4Cidr::any()),
                        )]);
                if untouched {
                    acl.entries.push(all_allowed(
                        DEFAULT_IPV6_RULE,
                        egress,
                        EntryCidr::Ipv6("::/0".into()),
                    ));
                }
            }
            acl.sort_entries();
        }
        tx.put(&acl)?;
    }
    Ok(())
}

/// spec 1.7: inside DeleteVpc's transaction (after its subnets are known to
/// be gone), removes the default ACL, or refuses while custom ACLs remain.
pub fn vpc_deleted(tx: &mut Tx, vpc_id: &str) -> Result<(), ApiError> {
    let acls = acls_of_vpc(tx, vpc_id)?;
    if acls.iter().any(|a| !a.is_default) {
        return Err(has_dependencies(vpc_id));
    }
    for acl in acls {
        tx.delete::<NetworkAcl>(&acl.id);
    }
    Ok(())
}

fn acls_of_vpc(tx: &mut Tx, vpc_id: &str) -> Result<Vec<NetworkAcl>, ApiError> {
    Ok(tx
        .list::<NetworkAcl>()?
        .into_iter()
        .filter(|a| a.vpc_id == vpc_id)
        .collect())
}

/// spec 4.2: associates a new subnet with its VPC's default ACL, inside the
/// transaction that creates the subnet; returns the association ID. A VPC
/// stored before ACLs existed gets its default ACL here.
pub fn subnet_created(tx: &mut Tx, subnet: &Subnet) -> Result<String, ApiError> {
    let found = acls_of_vpc(tx, &subnet.vpc_id)?
        .into_iter()
        .find(|a| a.is_default);
    let mut acl = match found {
        Some(acl) => acl,
        None => new_default_acl(tx.ctx(), &subnet.vpc_id),
    };
    let id = new_id(ResourceKind::NetworkAclAssociation);
    acl.associations.push(Association {
        id: id.clone(),
        subnet_id: subnet.id.clone(),
    });
    tx.put(&acl)?;
    Ok(id)
}

/// Removes a subnet's association, inside DeleteSubnet's transaction.
pub fn subnet_deleted(tx: &mut Tx, subnet_id: &str) -> Result<(), ApiError> {
    if let Some(mut acl) = acl_for_subnet(tx, subnet_id)? {
        acl.associations.retain(|a| a.subnet_id != subnet_id);
        tx.put(&acl)?;
    }
    Ok(())
}

/// The ACL a subnet is associated with (spec 4.2: exactly one).
pub fn acl_for_subnet(tx: &mut Tx, subnet_id: &str) -> Result<Option<NetworkAcl>, ApiError> {
    Ok(tx
        .list::<NetworkAcl>()?
        .into_iter()
        .find(|a| a.associations.iter().any(|s| s.subnet_id == subnet_id)))
}

pub fn create(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let vpc_id = params.required("VpcId")?;
    check_id(ResourceKind::Vpc, vpc_id)?;
    let tags = tags_for(params, "network-acl")?;
    let token = ClientToken::of(params, "CreateNetworkAcl")?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let acl = transact(ctx, |tx| {
        // spec 12.1: a retry with the same token returns the first ACL.
        if let Some(acl) = idempotency::earlier_one::<NetworkAcl>(tx, token.as_ref())? {
            return Ok(acl);
        }
        tx.load::<Vpc>(vpc_id)?;
        let siblings = acls_of_vpc(tx, vpc_id)?;
        if siblings.len() >= ACLS_PER_VPC {
            return Err(ApiError::new(
                "NetworkAclLimitExceeded",
                format!(
                    "The VPC '{vpc_id}' already has the maximum of {ACLS_PER_VPC} network ACLs. Delete a network ACL or ask for a higher quota."
                ),
            ));
        }
        // spec 4.2: a custom ACL has only the `*` rules: it denies everything.
        let acl = NetworkAcl {
            id: new_id(ResourceKind::NetworkAcl),
            vpc_id: vpc_id.to_owned(),
            owner_id: ctx.account.id.clone(),
            is_default: false,
            entries: Vec::new(),
            associations: Vec::new(),
            // An IPv6 VPC's ACLs also get the IPv6 `*` rules; its default
            // ACL records whether it has IPv6.
            ipv6: siblings.iter().any(|a| a.is_default && a.ipv6),
            tags: tags.clone(),
        };
        tx.put(&acl)?;
        idempotency::remember(tx, token.as_ref(), std::slice::from_ref(&acl))?;
        Ok(acl)
    })?;
    Ok(Xml::response("CreateNetworkAcl", ctx.request_id, |x| {
        x.node("networkAcl", |x| acl.write(x));
        x.opt("clientToken", token.as_ref().map(ClientToken::token));
    }))
}

pub fn describe(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    describe_resources::<NetworkAcl>(
        ctx,
        params,
        DescribeSpec {
            action: "DescribeNetworkAcls",
            ids: "NetworkAclId",
            set: "networkAclSet",
        },
    )
}

pub fn delete(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkAclId")?;
    check_id(ResourceKind::NetworkAcl, id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let acl = tx.load::<NetworkAcl>(id)?;
        // spec 4.2: the default ACL goes only with its VPC.
        if acl.is_default {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!("cannot delete default network ACL {id}"),
            ));
        }
        // spec 4.2: nor may an ACL that still serves subnets be deleted.
        if !acl.associations.is_empty() {
            return Err(ApiError::new(
                "DependencyViolation",
                format!("The network ACL '{id}' has dependencies and cannot be deleted."),
            ));
        }
        tx.delete::<NetworkAcl>(id);
        Ok(())
    })?;
    Ok(ok_return(ctx, "DeleteNetworkAcl"))
}

/// spec 4.1: rule numbers are 1 to 32766; the `*` rules' 32767 and 32768
/// are not the client's.
fn rule_number(params: &Params) -> Result<u16, ApiError> {
    let text = params.required("RuleNumber")?;
    match text.parse::<i64>() {
        Ok(n) if (1..=i64::from(MAX_RULE_NUMBER)).contains(&n) => {
            u16::try_from(n).map_err(|e| ApiError::internal(e.to_string()))
        }
        _ => Err(ApiError::invalid_value(
            "RuleNumber",
            text,
            "Rule numbers are from 1 to 32766 (32767 and 32768 are the '*' rules, which cannot change).",
        )),
    }
}

fn egress(params: &Params) -> Result<bool, ApiError> {
    params
        .bool("Egress")?
        .ok_or_else(|| ApiError::missing_parameter("Egress"))
}

/// An entry's fields from CreateNetworkAclEntry or ReplaceNetworkAclEntry.
fn entry_of(params: &Params) -> Result<Entry, ApiError> {
    let rule_number = rule_number(params)?;
    let egress = egress(params)?;
    // The EC2 API takes protocol numbers only (the aws CLI turns `tcp`
    // into `6` before sending).
    let text = params.required("Protocol")?;
    let protocol = if text == "-1" || (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
    {
        text.parse::<IpProtocol>().ok()
    } else {
        None
    }
    .ok_or_else(|| {
        ApiError::new(
            "InvalidParameterValue",
            format!(
                "Invalid value '{text}' for IP protocol. Unknown protocol: use a protocol number from 0 to 255, or -1 for all."
            ),
        )
    })?;
    let action_text = params.required("RuleAction")?;
    let action = match action_text.to_ascii_lowercase().as_str() {
        "allow" => RuleAction::Allow,
        "deny" => RuleAction::Deny,
        _ => {
            return Err(ApiError::invalid_value(
                "RuleAction",
                action_text,
                "Use 'allow' or 'deny'.",
            ));
        }
    };
    let cidr = match (params.get("CidrBlock"), params.get("Ipv6CidrBlock")) {
        (Some(v4), None) => EntryCidr::Ipv4(v4.parse().map_err(|_| {
            ApiError::invalid_value("CidrBlock", v4, "This is not a valid IPv4 CIDR block.")
        })?),
        (None, Some(v6)) => EntryCidr::Ipv6(canonical_ipv6_cidr(v6).map_err(|_| {
            ApiError::invalid_value("Ipv6CidrBlock", v6, "This is not a valid IPv6 CIDR block.")
        })?),
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                "InvalidParameterCombination",
                "Specify either CidrBlock or Ipv6CidrBlock, not both.",
            ));
        }
        (None, None) => return Err(ApiError::missing_parameter("CidrBlock")),
    };
    // spec 4.1: TCP/UDP take `PortRange`, ICMP `Icmp` (type and code).
    let (from, to) = match protocol {
        IpProtocol::Number(ip_protocol::ICMP | ip_protocol::ICMPV6) => {
            (params.number("Icmp.Type")?, params.number("Icmp.Code")?)
        }
        _ => (
            params.number("PortRange.From")?,
            params.number("PortRange.To")?,
        ),
    };
    let traffic = TrafficMatch::from_api(protocol, from, to)
        .map_err(|e| ApiError::new("InvalidParameterValue", e.to_string()))?;
    Ok(Entry {
        rule_number,
        egress,
        action,
        traffic,
        cidr,
    })
}

fn entry_not_found(acl_id: &str, rule_number: u16, egress: bool) -> ApiError {
    ApiError::new(
        "InvalidNetworkAclEntry.NotFound",
        format!(
            "The network acl entry identified by {rule_number} ({}) does not exist in network acl '{acl_id}'.",
            if egress { "egress" } else { "ingress" }
        ),
    )
}

pub fn create_entry(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkAclId")?;
    check_id(ResourceKind::NetworkAcl, id)?;
    let entry = entry_of(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut acl = tx.load::<NetworkAcl>(id)?;
        // spec 4.1: a number is used once per direction.
        if acl.entry_index(entry.rule_number, entry.egress).is_some() {
            return Err(ApiError::new(
                "NetworkAclEntryAlreadyExists",
                format!(
                    "The network acl entry identified by {} already exists.",
                    entry.rule_number
                ),
            ));
        }
        acl.entries.push(entry.clone());
        check_rule_quota(&acl)?;
        acl.sort_entries();
        tx.put(&acl)
    })?;
    Ok(ok_return(ctx, "CreateNetworkAclEntry"))
}

pub fn replace_entry(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkAclId")?;
    check_id(ResourceKind::NetworkAcl, id)?;
    let entry = entry_of(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut acl = tx.load::<NetworkAcl>(id)?;
        let index = acl
            .entry_index(entry.rule_number, entry.egress)
            .ok_or_else(|| entry_not_found(id, entry.rule_number, entry.egress))?;
        acl.entries[index] = entry.clone();
        // A replacement may move the rule to the other address family.
        check_rule_quota(&acl)?;
        tx.put(&acl)
    })?;
    Ok(ok_return(ctx, "ReplaceNetworkAclEntry"))
}

pub fn delete_entry(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let id = params.required("NetworkAclId")?;
    check_id(ResourceKind::NetworkAcl, id)?;
    let number = rule_number(params)?;
    let egress = egress(params)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    transact(ctx, |tx| {
        let mut acl = tx.load::<NetworkAcl>(id)?;
        let index = acl
            .entry_index(number, egress)
            .ok_or_else(|| entry_not_found(id, number, egress))?;
        acl.entries.remove(index);
        tx.put(&acl)
    })?;
    Ok(ok_return(ctx, "DeleteNetworkAclEntry"))
}

pub fn replace_association(ctx: &Ctx, params: &Params) -> Result<String, ApiError> {
    let association_id = params.required("AssociationId")?;
    check_id(ResourceKind::NetworkAclAssociation, association_id)?;
    let acl_id = params.required("NetworkAclId")?;
    check_id(ResourceKind::NetworkAcl, acl_id)?;
    if params.dry_run()? {
        return Err(ApiError::dry_run());
    }
    let new_association = transact(ctx, |tx| {
        let mut target = tx.load::<NetworkAcl>(acl_id)?;
        let mut current = tx
            .list::<NetworkAcl>()?
            .into_iter()
            .find(|a| a.associations.iter().any(|s| s.id == association_id))
            .ok_or_else(|| {
                ApiError::new(
                    "InvalidAssociationID.NotFound",
                    format!("The association ID '{association_id}' does not exist"),
                )
            })?;
        if current.vpc_id != target.vpc_id {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "The network ACL '{acl_id}' is in VPC '{}', but the subnet of association '{association_id}' is in VPC '{}'.",
                    target.vpc_id, current.vpc_id
                ),
            ));
        }
        let subnet_id = current
            .associations
            .iter()
            .find(|s| s.id == association_id)
            .map(|s| s.subnet_id.clone())
            .ok_or_else(|| ApiError::internal("An association vanished while it was read"))?;
        // spec 4.2: the subnet moves, under a new association ID (even when
        // it stays with the same ACL, as AWS does).
        let new = Association {
            id: new_id(ResourceKind::NetworkAclAssociation),
            subnet_id,
        };
        if current.id == target.id {
            target.associations.retain(|s| s.id != association_id);
        } else {
            current.associations.retain(|s| s.id != association_id);
            tx.put(&current)?;
        }
        target.associations.push(new.clone());
        tx.put(&target)?;
        Ok(new.id)
    })?;
    Ok(Xml::response(
        "ReplaceNetworkAclAssociation",
        ctx.request_id,
        |x| {
            x.elem("newAssociationId", &new_association);
        },
    ))
}
