//! Resource IDs as AWS writes them: a prefix, a dash, and 17 lowercase hex
//! digits (spec 12.4). Older 8-digit IDs, and any shorter run of hex
//! digits, are accepted when parsing.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! kinds {
    ($($variant:ident => $prefix:literal, $malformed:literal;)*) => {
        /// The kinds of resource openvpc names, each with its ID prefix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum ResourceKind { $($variant),* }

        impl ResourceKind {
            /// Every kind, for lookups by prefix.
            pub const ALL: &'static [ResourceKind] = &[$(ResourceKind::$variant),*];

            /// The ID prefix, without the dash.
            pub fn prefix(self) -> &'static str {
                match self { $(ResourceKind::$variant => $prefix),* }
            }

            /// The AWS error code for a malformed ID of this kind.
            pub fn malformed_code(self) -> &'static str {
                match self { $(ResourceKind::$variant => $malformed),* }
            }
        }
    };
}

kinds! {
    Vpc => "vpc", "InvalidVpcID.Malformed";
    VpcCidrAssociation => "vpc-cidr-assoc", "InvalidVpcCidrBlockAssociationID.Malformed";
    Subnet => "subnet", "InvalidSubnetID.Malformed";
    SubnetCidrAssociation => "subnet-cidr-assoc", "InvalidSubnetCidrBlockAssociationID.Malformed";
    RouteTable => "rtb", "InvalidRouteTableID.Malformed";
    RouteTableAssociation => "rtbassoc", "InvalidAssociationID.Malformed";
    NetworkAcl => "acl", "InvalidNetworkAclID.Malformed";
    NetworkAclAssociation => "aclassoc", "InvalidAssociationID.Malformed";
    SecurityGroup => "sg", "InvalidGroupId.Malformed";
    SecurityGroupRule => "sgr", "InvalidSecurityGroupRuleId.Malformed";
    InternetGateway => "igw", "InvalidInternetGatewayID.Malformed";
    EgressOnlyInternetGateway => "eigw", "InvalidEgressOnlyInternetGatewayId.Malformed";
    NatGateway => "nat", "InvalidNatGatewayID.Malformed";
    ElasticIpAllocation => "eipalloc", "InvalidAllocationID.Malformed";
    ElasticIpAssociation => "eipassoc", "InvalidAssociationID.Malformed";
    VpcPeeringConnection => "pcx", "InvalidVpcPeeringConnectionId.Malformed";
    FlowLog => "fl", "InvalidFlowLogId.Malformed";
    CustomerGateway => "cgw", "InvalidCustomerGatewayId.Malformed";
    VpnGateway => "vgw", "InvalidVpnGatewayID.Malformed";
    VpnConnection => "vpn", "InvalidVpnConnectionID.Malformed";
    VpcEndpoint => "vpce", "InvalidVpcEndpointId.Malformed";
    PrefixList => "pl", "InvalidPrefixListId.Malformed";
    NetworkInterface => "eni", "InvalidNetworkInterfaceID.Malformed";
    NetworkInterfaceAttachment => "eni-attach", "InvalidAttachmentID.Malformed";
    DhcpOptions => "dopt", "InvalidDhcpOptionsId.Malformed";
    Instance => "i", "InvalidInstanceID.Malformed";
    TransitGateway => "tgw", "InvalidTransitGatewayID.Malformed";
    // Reachability Analyzer. The analysis code is the one AWS's own
    // CloudFormation handler names; the path's follows its spelling [U].
    NetworkInsightsPath => "nip", "InvalidNetworkInsightsPathId.Malformed";
    NetworkInsightsAnalysis => "nia", "InvalidNetworkInsightsAnalysisId.Malformed";
}

/// A syntactically valid resource ID of a known kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourceId {
    kind: ResourceKind,
    text: String,
}

/// Why a string is not a resource ID; `code()` gives the AWS error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("Invalid id: \"{id}\" (expecting \"{prefix}-...\")")]
    WrongPrefix {
        id: String,
        prefix: &'static str,
        kind: ResourceKind,
    },
    #[error("Invalid id: \"{id}\": after \"{prefix}-\" an ID has up to 17 lowercase hex digits")]
    BadDigits {
        id: String,
        prefix: &'static str,
        kind: ResourceKind,
    },
    #[error("Invalid id: \"{0}\": no resource type has this prefix")]
    UnknownPrefix(String),
}

impl IdError {
    /// The AWS error code the API returns for this error.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::WrongPrefix { kind, .. } | IdError::BadDigits { kind, .. } => {
                kind.malformed_code()
            }
            IdError::UnknownPrefix(_) => "InvalidParameterValue",
        }
    }
}

impl ResourceId {
    /// A new random ID of `kind`: 17 hex digits from 68 random bits.
    pub fn generate(kind: ResourceKind) -> Self {
        let bits: u128 = rand::random::<u128>() & ((1u128 << 68) - 1);
        ResourceId {
            kind,
            text: format!("{}-{:017x}", kind.prefix(), bits),
        }
    }

    /// Parses `text` as an ID of `kind`.
    pub fn parse(kind: ResourceKind, text: &str) -> Result<Self, IdError> {
        let prefix = kind.prefix();
        let digits = text
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .ok_or_else(|| IdError::WrongPrefix {
                id: text.into(),
                prefix,
                kind,
            })?;
        let hex = digits
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        // AWS writes 17 digits (8 before 2018); shorter ones are well formed
        // but name nothing, so they get `.NotFound` rather than `.Malformed`.
        if !hex || digits.is_empty() || digits.len() > 17 {
            return Err(IdError::BadDigits {
                id: text.into(),
                prefix,
                kind,
            });
        }
        Ok(ResourceId {
            kind,
            text: text.into(),
        })
    }

    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ResourceId {
    type Err = IdError;
    /// Parses an ID of whichever kind its prefix names (the longest match
    /// wins, so `vpc-cidr-assoc-…` is not read as a VPC).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let kind = ResourceKind::ALL
            .iter()
            .filter(|k| {
                s.strip_prefix(k.prefix())
                    .is_some_and(|r| r.starts_with('-'))
            })
            .max_by_key(|k| k.prefix().len())
            .ok_or_else(|| IdError::UnknownPrefix(s.into()))?;
        ResourceId::parse(*kind, s)
    }
}

impl TryFrom<String> for ResourceId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ResourceId> for String {
    fn from(id: ResourceId) -> String {
        id.text
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_aws_form() {
        for kind in ResourceKind::ALL {
            let id = ResourceId::generate(*kind);
            let digits = &id.as_str()[kind.prefix().len() + 1..];
            assert_eq!(digits.len(), 17, "{id}");
            assert!(
                digits
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_eq!(id.as_str().parse::<ResourceId>().unwrap(), id);
        }
        assert_ne!(
            ResourceId::generate(ResourceKind::Vpc),
            ResourceId::generate(ResourceKind::Vpc)
        );
    }

    #[test]
    fn longest_prefix_names_the_kind() {
        let id: ResourceId = "vpc-cidr-assoc-0123456789abcdef0".parse().unwrap();
        assert_eq!(id.kind(), ResourceKind::VpcCidrAssociation);
        let id: ResourceId = "eni-attach-12345678".parse().unwrap();
        assert_eq!(id.kind(), ResourceKind::NetworkInterfaceAttachment);
    }

    // spec 12.3: malformed IDs get the kind's `.Malformed` code.
    #[test]
    fn malformed_ids_get_aws_codes() {
        let e = ResourceId::parse(ResourceKind::Vpc, "vpc-XYZ").unwrap_err();
        assert_eq!(e.code(), "InvalidVpcID.Malformed");
        let e = ResourceId::parse(ResourceKind::Subnet, "vpc-0123456789abcdef0").unwrap_err();
        assert_eq!(e.code(), "InvalidSubnetID.Malformed");
        assert!(e.to_string().contains("subnet-"));
        assert!(ResourceId::parse(ResourceKind::Vpc, "vpc-0123456789ABCDEF0").is_err());
        assert!(ResourceId::parse(ResourceKind::Vpc, "vpc-0123456789abcdef01").is_err());
        assert!(ResourceId::parse(ResourceKind::Vpc, "vpc-").is_err());
        // Well formed, though no such VPC exists: the API answers NotFound.
        assert!(ResourceId::parse(ResourceKind::Vpc, "vpc-12345").is_ok());
        assert_eq!(
            "zzz-1".parse::<ResourceId>().unwrap_err().code(),
            "InvalidParameterValue"
        );
    }
}
