//! Why a packet was dropped: one named reason per cause, each with a counter.
//! `openvpc trace` prints the same names.

use core::fmt;

macro_rules! reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why the router dropped a packet.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant),* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];

            /// A stable snake_case name for counters and traces.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name),* }
            }

            /// What the reason means, in a sentence.
            pub fn describe(self) -> &'static str {
                match self { $(DropReason::$variant => $doc),* }
            }

            /// The reason a counter name stands for.
            pub fn from_name(name: &str) -> Option<DropReason> {
                DropReason::ALL.iter().copied().find(|r| r.name() == name)
            }
        }
    };
}

reasons! {
    Malformed => "malformed", "The frame failed to parse.";
    UnsupportedEthertype => "unsupported_ethertype", "Neither IPv4, IPv6 nor ARP.";
    Broadcast => "broadcast", "Broadcast or multicast other than ARP and DHCP: a VPC carries neither (spec 1).";
    Fragment => "fragment", "A non-first IP fragment: it has no ports to match a flow.";
    SourceDestCheck => "source_dest_check", "The address is not the ENI's own and its source/destination check is on (spec 5.4).";
    SgDeny => "sg_deny", "No security-group rule allows the flow.";
    NaclDeny => "nacl_deny", "A network-ACL rule, or the final `*` rule, denies the packet.";
    NoRoute => "no_route", "No route covers the destination.";
    Blackhole => "blackhole", "The route's target is gone (spec 2.5).";
    TargetUnserved => "target_unserved", "The route's target exists but nothing forwards for it yet: a gateway no node serves, or an ENI on no host.";
    NoPublicIp => "no_public_ip", "Sent to an internet gateway from an address that holds no public IPv4 or Elastic IP (spec 5.1).";
    NoMapping => "no_mapping", "The mapping service knows no ENI at the destination.";
    UnknownVni => "unknown_vni", "Arrived with a VNI that no local ENI uses.";
    UnknownEni => "unknown_eni", "Arrived for an address that no local ENI of that VNI owns.";
    UnknownSource => "unknown_source", "Sent from an ENI slot that holds no ENI.";
    ConntrackInvalid => "conntrack_invalid", "The packet does not fit its tracked connection.";
    CriticalOption => "geneve_critical_option", "A Geneve option marked critical that this router does not understand (RFC 8926).";
    TableFull => "flow_table_full", "The flow table is full of live flows.";
    NextHopTableFull => "next_hop_table_full", "Too many distinct next hops.";
    TransformTableFull => "transform_table_full", "Too many translated flows at once: no header transform was free.";
    RewriteFailed => "rewrite_failed", "A translation could not be applied to the packet (only IPv4 is translated).";
    GatewayUnanswered => "gateway_unanswered", "ARP or DHCP that needs no answer, or could not be answered.";
    VlanTagged => "vlan_tagged", "A VLAN-tagged frame from an ENI, which carries untagged frames only.";
    SpoofedMac => "spoofed_mac", "The frame, or its ARP sender, claims a MAC that is not the ENI's.";
    DhcpForeignClient => "dhcp_foreign_client", "A DHCP request for another NIC's hardware address: its lease is never handed out.";
    DhcpNotForRouter => "dhcp_not_for_router", "A DHCP message unicast to a server other than the subnet router.";
    DhcpInvalid => "dhcp_invalid", "A DHCP message that breaks RFC 2131's format: truncated, bad options, or not a client's message.";
    GatewayReplyFailed => "gateway_reply_failed", "The gateway could not build its reply (a configured host or domain name too long).";
    ResolverDropped => "resolver_dropped", "A packet to the VPC's resolver that it dropped: DNS support off, over 1024 packets/s from the ENI, or not a DNS query; the resolver's own counters name which (spec 1.4).";
    ResolverAbsent => "resolver_absent", "A query to the VPC's resolver from an ENI whose state carries no resolver configuration (compiled by an older server).";
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A counter per drop reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounters([u64; DropReason::ALL.len()]);

impl DropCounters {
    #[inline]
    pub fn count(&mut self, reason: DropReason) {
        self.0[reason as usize] += 1;
    }

    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The non-zero counters, by name.
    pub fn nonzero(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.get(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_counters_count() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
        let mut c = DropCounters::default();
        c.count(DropReason::SgDeny);
        c.count(DropReason::SgDeny);
        c.count(DropReason::NoRoute);
        assert_eq!(c.get(DropReason::SgDeny), 2);
        assert_eq!(c.total(), 3);
        assert_eq!(c.nonzero().count(), 2);
    }
}
