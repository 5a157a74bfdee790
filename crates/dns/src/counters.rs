//! What the resolver did with each packet: a counter per drop reason and per
//! kind of answer, readable by name for `openvpc` stats.

use core::fmt;

macro_rules! reasons {
    ($($variant:ident => $name:literal, $doc:literal;)*) => {
        /// Why the resolver dropped a packet without answering it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum DropReason { $(#[doc = $doc] $variant),* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant),*];

            /// A stable snake_case name for counters.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name),* }
            }

            /// What the reason means, in a sentence.
            pub fn describe(self) -> &'static str {
                match self { $(DropReason::$variant => $doc),* }
            }
        }
    };
}

reasons! {
    SupportDisabled => "dns_support_disabled", "The VPC's enableDnsSupport is false: queries are not answered (spec 1.4).";
    RateLimited => "dns_rate_limited", "Over 1024 packets/s from one ENI towards the resolver (spec 1.4).";
    TooShort => "dns_too_short", "Shorter than a DNS header (12 bytes).";
    NotAQuery => "dns_not_a_query", "The QR bit is set: a response sent to the resolver.";
    Malformed => "dns_malformed", "The message does not decode as DNS.";
    UpstreamMalformed => "dns_upstream_malformed", "The upstream resolver's reply does not decode as a DNS response.";
    AnswerUnencodable => "dns_answer_unencodable", "The answer could not be encoded.";
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resolver's counters: drops by reason and answers by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    drops: [u64; DropReason::ALL.len()],
    /// Answered from the VPC's own names (private, public, extra, PTR).
    pub local_answers: u64,
    /// NXDOMAIN for a name under the VPC's Amazon domain.
    pub nxdomain: u64,
    /// Answered from the cache of upstream answers.
    pub cache_hits: u64,
    /// Sent to the caller to forward upstream.
    pub forwarded: u64,
    /// Upstream replies relayed back to a client.
    pub relayed: u64,
    /// Answered with an error code (FORMERR, NOTIMP, REFUSED, SERVFAIL).
    pub errors: u64,
}

impl Counters {
    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }

    /// Packets dropped for this reason.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Packets dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Adds `other`'s counts to these (a host's resolvers, one per VPC,
    /// shown as one set).
    pub fn merge(&mut self, other: &Counters) {
        for (mine, theirs) in self.drops.iter_mut().zip(other.drops.iter()) {
            *mine += theirs;
        }
        self.local_answers += other.local_answers;
        self.nxdomain += other.nxdomain;
        self.cache_hits += other.cache_hits;
        self.forwarded += other.forwarded;
        self.relayed += other.relayed;
        self.errors += other.errors;
    }

    /// The non-zero drop counters, by reason.
    pub fn nonzero_drops(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL
            .iter()
            .map(|r| (*r, self.dropped(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::ALL.len());
    }
}
