//! Amazon's DNS names for a VPC (spec 1.4): the private domain, the public
//! compute domain, and the `ip-a-b-c-d` / `ec2-a-b-c-d` host labels.

use std::net::Ipv4Addr;

/// The Amazon private domain of a region (spec 1.4, default DHCP options):
/// `ec2.internal` in us-east-1, `<region>.compute.internal` elsewhere.
pub fn amazon_domain(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".to_owned()
    } else {
        format!("{region}.compute.internal")
    }
}

/// The domain of a region's public instance names (spec 1.4):
/// `compute-1.amazonaws.com` in us-east-1, `<region>.compute.amazonaws.com`
/// elsewhere.
pub fn public_name_suffix(region: &str) -> String {
    if region == "us-east-1" {
        "compute-1.amazonaws.com".to_owned()
    } else {
        format!("{region}.compute.amazonaws.com")
    }
}

/// The address in a host label such as `ip-10-0-1-5` (prefix `ip-`) or
/// `ec2-203-0-113-7` (prefix `ec2-`), matched without regard to case. Only
/// the canonical form counts: four decimal octets without leading zeros,
/// which is how Amazon writes them.
pub(crate) fn parse_host_label(label: &[u8], prefix: &[u8]) -> Option<Ipv4Addr> {
    let (head, rest) = label.split_at_checked(prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut parts = rest.split(|b| *b == b'-');
    for octet in &mut octets {
        *octet = parse_octet(parts.next()?)?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::from(octets))
}

pub(crate) fn parse_octet(s: &[u8]) -> Option<u8> {
    if s.is_empty() || s.len() > 3 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    let mut v: u16 = 0;
    for b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u16::from(b - b'0');
    }
    u8::try_from(v).ok()
}

/// `ip-a-b-c-d`, the label of an address's private name.
pub(crate) fn private_label(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_follow_the_region() {
        assert_eq!(amazon_domain("us-east-1"), "ec2.internal");
        assert_eq!(amazon_domain("eu-west-1"), "eu-west-1.compute.internal");
        assert_eq!(public_name_suffix("us-east-1"), "compute-1.amazonaws.com");
        assert_eq!(
            public_name_suffix("eu-west-1"),
            "eu-west-1.compute.amazonaws.com"
        );
    }

    #[test]
    fn host_labels_parse_only_in_canonical_form() {
        let ip = Some(Ipv4Addr::new(10, 0, 1, 5));
        assert_eq!(parse_host_label(b"ip-10-0-1-5", b"ip-"), ip);
        assert_eq!(parse_host_label(b"IP-10-0-1-5", b"ip-"), ip);
        assert_eq!(parse_host_label(b"ec2-10-0-1-5", b"ec2-"), ip);
        for bad in [
            &b"ip-10-0-1"[..],
            b"ip-10-0-1-5-6",
            b"ip-10-0-01-5",
            b"ip-10-0-256-5",
            b"ip-10-0--5",
            b"ip-",
            b"ip",
            b"ip-1a-0-1-5",
            b"ec2-10-0-1-5",
        ] {
            assert_eq!(parse_host_label(bad, b"ip-"), None, "{bad:?}");
        }
        assert_eq!(private_label(Ipv4Addr::new(10, 0, 1, 5)), "ip-10-0-1-5");
    }
}
