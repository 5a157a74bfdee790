//! A managed prefix list as stored (`pl/{id}`, customer-managed) or built
//! (the region's AWS-managed lists), and its entries.
//! This module owns the stored shape of that record (serde attributes are
//! the stored format) and pure reads of it; it must not know the Query
//! protocol, XML or request parameters, which live in
//! `openvpc_control::api::actions::prefix_list`.

use openvpc_model::lifecycle::PrefixListState;
use serde::{Deserialize, Serialize};

use super::Tags;

/// The owner AWS-managed lists show.
pub const AWS_OWNER: &str = "AWS";
/// The services with an AWS-managed list and a gateway endpoint (spec 11).
pub const GATEWAY_SERVICES: [&str; 2] = ["s3", "dynamodb"];

/// One entry of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub cidr: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A prefix list: stored for customer-managed lists, built for AWS-managed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixList {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// `IPv4` or `IPv6`.
    pub address_family: String,
    pub max_entries: u32,
    /// The entries of every version, oldest first: version N is `versions[N-1]`.
    pub versions: Vec<Vec<Entry>>,
    pub state: PrefixListState,
    /// Why the last change failed (`delete-failed`), as `stateMessage`.
    #[serde(default)]
    pub state_message: Option<String>,
    /// The region, for the ARN.
    pub region: String,
    #[serde(default)]
    pub aws_managed: bool,
    pub tags: Tags,
}

impl PrefixList {
    pub fn version(&self) -> u64 {
        self.versions.len() as u64
    }

    /// The current entries.
    pub fn entries(&self) -> &[Entry] {
        self.versions.last().map(Vec::as_slice).unwrap_or_default()
    }

    pub fn is_ipv6(&self) -> bool {
        self.address_family == "IPv6"
    }

    /// spec 3.1: what a reference to the list costs in a security group's
    /// rule quota: a customer-managed list its max entries, an AWS-managed
    /// one its weight (1 for S3 and DynamoDB).
    pub fn rule_weight(&self) -> usize {
        if self.aws_managed {
            1
        } else {
            self.max_entries as usize
        }
    }
}

/// `com.amazonaws.REGION.SERVICE`, the name of a gateway service and its list.
pub fn service_name(region: &str, service: &str) -> String {
    format!("com.amazonaws.{region}.{service}")
}

/// The fixed ID of an AWS-managed list: in us-east-1 the IDs AWS uses
/// there (clients and scripts hard-code them), elsewhere 8 hex digits (as
/// AWS's own lists have) from an FNV-1a hash of region and service, so it is
/// the same for every account and every run.
fn aws_list_id(region: &str, service: &str) -> String {
    match (region, service) {
        ("us-east-1", "s3") => return "pl-63a5400a".into(),
        ("us-east-1", "dynamodb") => return "pl-02cd2c6b".into(),
        _ => {}
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in region.bytes().chain([b'/']).chain(service.bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("pl-{h:08x}")
}

/// The region's AWS-managed lists (spec 11), sorted by ID.
pub fn aws_lists(region: &str) -> Vec<PrefixList> {
    let mut lists: Vec<PrefixList> = GATEWAY_SERVICES
        .iter()
        .map(|service| {
            let cidrs: &[&str] = if *service == "s3" {
                &["192.0.2.0/25"]
            } else {
                &["192.0.2.128/25"]
            };
            PrefixList {
                id: aws_list_id(region, service),
                owner_id: AWS_OWNER.into(),
                name: service_name(region, service),
                address_family: "IPv4".into(),
                max_entries: 0,
                versions: vec![
                    cidrs
                        .iter()
                        .map(|c| Entry {
                            cidr: (*c).into(),
                            description: None,
                        })
                        .collect(),
                ],
                state: PrefixListState::CreateComplete,
                state_message: None,
                region: region.to_owned(),
                aws_managed: true,
                tags: Vec::new(),
            }
        })
        .collect();
    lists.sort_by(|a, b| a.id.cmp(&b.id));
    lists
}

/// The AWS-managed list of a gateway service (`s3`, `dynamodb`).
pub fn aws_list_for(region: &str, service: &str) -> Option<PrefixList> {
    let name = service_name(region, service);
    aws_lists(region).into_iter().find(|l| l.name == name)
}

impl PrefixList {
    pub fn arn(&self) -> String {
        let owner = if self.aws_managed {
            "aws"
        } else {
            &self.owner_id
        };
        format!(
            "arn:aws:ec2:{}:{owner}:prefix-list/{}",
            self.region, self.id
        )
    }
}
