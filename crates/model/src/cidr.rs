//! IPv4 CIDR blocks with the rules AWS applies to them: host bits are masked
//! silently (spec 1.1), VPC and subnet blocks are /16 to /28, and a subnet
//! loses five addresses to the network, router, DNS, future use and broadcast.
//! IPv6 blocks in rules are only canonicalised ([`canonical_ipv6_cidr`]).

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A canonical IPv4 CIDR block (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Cidr(Ipv4Net);

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("'{0}' is not a valid CIDR block: expected a.b.c.d/n with n from 0 to 32")]
    Syntax(String),
    #[error("The CIDR '{0}' is invalid: a block must be from /16 to /28")]
    Size(Ipv4Cidr),
}

/// Smallest and largest prefix lengths of VPC and subnet blocks (spec 1.1, 1.2).
pub const BLOCK_PREFIX_RANGE: core::ops::RangeInclusive<u8> = 16..=28;

/// Addresses AWS reserves in every subnet (spec 1.2).
pub const RESERVED_PER_SUBNET: u32 = 5;

impl Ipv4Cidr {
    /// The block containing `addr` with the given prefix length.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        Ipv4Net::new(addr, prefix_len)
            .map(|n| Ipv4Cidr(n.trunc()))
            .map_err(|_| CidrError::Syntax(format!("{addr}/{prefix_len}")))
    }

    /// `0.0.0.0/0`: every IPv4 address.
    pub fn any() -> Self {
        Ipv4Cidr(Ipv4Net::default())
    }

    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }

    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        self.0.broadcast()
    }

    /// Number of addresses in the block.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len()))
    }

    pub fn contains_addr(&self, addr: Ipv4Addr) -> bool {
        self.0.contains(&addr)
    }

    /// True if `other` lies wholly inside this block.
    pub fn contains(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0)
    }

    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }

    /// Checks the /16–/28 rule for VPC and subnet blocks.
    pub fn check_block_size(self) -> Result<Self, CidrError> {
        if BLOCK_PREFIX_RANGE.contains(&self.prefix_len()) {
            Ok(self)
        } else {
            Err(CidrError::Size(self))
        }
    }

    /// The `n`th address of the block (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from_bits(self.network().to_bits() + n))
    }

    /// The subnet router: base + 1 (spec 1.2).
    pub fn router(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network().to_bits().wrapping_add(1))
    }

    /// The Amazon DNS server of a VPC: base of its primary block + 2 (spec 1.4).
    pub fn dns(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.network().to_bits().wrapping_add(2))
    }

    /// True for the five addresses AWS reserves in a subnet: the network,
    /// +1 (router), +2 (DNS), +3 (future use) and the broadcast address.
    pub fn is_reserved_in_subnet(&self, addr: Ipv4Addr) -> bool {
        let offset = addr.to_bits().wrapping_sub(self.network().to_bits());
        self.contains_addr(addr) && (offset <= 3 || addr == self.broadcast())
    }

    /// Usable addresses in a subnet of this size, before any are assigned.
    pub fn usable_in_subnet(&self) -> u64 {
        self.size().saturating_sub(u64::from(RESERVED_PER_SUBNET))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;
    /// Parses `a.b.c.d/n`, masking host bits as AWS does (`10.0.0.18/18`
    /// becomes `10.0.0.0/18`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.into()))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        // Digits only: `u8::from_str` would also take "+8".
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax(s.into()));
        }
        let len: u8 = len.parse().map_err(|_| CidrError::Syntax(s.into()))?;
        Ipv4Cidr::new(addr, len).map_err(|_| CidrError::Syntax(s.into()))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len())
    }
}

impl TryFrom<String> for Ipv4Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Ipv4Cidr> for String {
    fn from(c: Ipv4Cidr) -> String {
        c.to_string()
    }
}

/// An IPv6 CIDR in canonical form (host bits cleared, as AWS shows it), or
/// `CidrError::Syntax`.
pub fn canonical_ipv6_cidr(text: &str) -> Result<String, CidrError> {
    let bad = || CidrError::Syntax(text.into());
    let (addr, len) = text.split_once('/').ok_or_else(bad)?;
    let addr: core::net::Ipv6Addr = addr.parse().map_err(|_| bad())?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > 128 {
        return Err(bad());
    }
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Ok(format!(
        "{}/{len}",
        core::net::Ipv6Addr::from(u128::from(addr) & mask)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    // spec 3.1, 4.1: IPv6 rule CIDRs are canonicalised too.
    #[test]
    fn canonicalises_ipv6() {
        assert_eq!(
            canonical_ipv6_cidr("2001:db8::1/64").unwrap(),
            "2001:db8::/64"
        );
        assert_eq!(canonical_ipv6_cidr("::/0").unwrap(), "::/0");
        for bad in [
            "asdf",
            "2001:db8::/129",
            "2001:db8::",
            "::/+1",
            "10.0.0.0/8",
        ] {
            assert!(canonical_ipv6_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn any_is_the_default_route() {
        assert_eq!(Ipv4Cidr::any().to_string(), "0.0.0.0/0");
    }

    // spec 1.1: host bits are masked silently.
    #[test]
    fn canonicalises() {
        assert_eq!(cidr("100.68.0.18/18").to_string(), "100.68.0.0/18");
        assert_eq!(cidr("10.0.0.255/24"), cidr("10.0.0.0/24"));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/24",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "x/8",
            "10.0.0.0/024",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    // spec 1.1 / 1.2: blocks are /16 to /28.
    #[test]
    fn block_size_rule() {
        assert!(cidr("10.0.0.0/16").check_block_size().is_ok());
        assert!(cidr("10.0.0.0/28").check_block_size().is_ok());
        let err = cidr("10.0.0.0/8").check_block_size().unwrap_err();
        assert_eq!(
            err.to_string(),
            "The CIDR '10.0.0.0/8' is invalid: a block must be from /16 to /28"
        );
        assert!(cidr("10.0.0.0/29").check_block_size().is_err());
    }

    // spec 1.2: five reserved addresses, shown for 10.0.0.0/24.
    #[test]
    fn reserved_addresses() {
        let s = cidr("10.0.0.0/24");
        for reserved in ["10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.255"] {
            assert!(
                s.is_reserved_in_subnet(reserved.parse().unwrap()),
                "{reserved}"
            );
        }
        assert!(!s.is_reserved_in_subnet("10.0.0.4".parse().unwrap()));
        assert!(!s.is_reserved_in_subnet("10.0.1.1".parse().unwrap()));
        assert_eq!(s.usable_in_subnet(), 251);
        assert_eq!(cidr("10.0.0.0/28").usable_in_subnet(), 11);
        assert_eq!(s.router(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(s.dns(), Ipv4Addr::new(10, 0, 0, 2));
    }

    #[test]
    fn containment_and_overlap() {
        let vpc = cidr("10.0.0.0/16");
        assert!(vpc.contains(&cidr("10.0.5.0/24")));
        assert!(!vpc.contains(&cidr("10.1.0.0/24")));
        assert!(vpc.overlaps(&cidr("10.0.0.0/8")));
        assert!(cidr("10.0.0.0/8").overlaps(&vpc));
        assert!(!vpc.overlaps(&cidr("10.1.0.0/16")));
        assert_eq!(vpc.nth(65535), Some(Ipv4Addr::new(10, 0, 255, 255)));
        assert_eq!(vpc.nth(65536), None);
    }
}
