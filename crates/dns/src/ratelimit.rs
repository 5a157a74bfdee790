//! The resolver's per-ENI packet limit (spec 1.4: 1024 packets/s per ENI), as
//! a token bucket that is told the time rather than reading a clock.

/// AWS's fixed limit on packets from one ENI to the resolver (spec 1.4).
pub const RESOLVER_PPS_PER_ENI: u32 = 1024;

/// A token bucket holding up to one second's worth of packets, refilled
/// continuously. Tokens are kept in thousandths so that a millisecond clock
/// refills exactly `rate` tokens per second with no rounding drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    milli_tokens: u64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `rate` packets per second, as of `now_ms`.
    pub fn new(rate: u32, now_ms: u64) -> Self {
        let rate = u64::from(rate);
        TokenBucket {
            rate,
            milli_tokens: rate * 1000,
            last_ms: now_ms,
        }
    }

    /// Takes one packet's token at `now_ms`; false when the bucket is empty.
    /// A clock that goes backwards refills nothing.
    #[inline]
    pub fn take(&mut self, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            let cap = self.rate * 1000;
            self.milli_tokens = self
                .milli_tokens
                .saturating_add(elapsed.saturating_mul(self.rate))
                .min(cap);
            self.last_ms = now_ms;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let mut b = TokenBucket::new(RESOLVER_PPS_PER_ENI, 0);
        let passed = (0..2000).filter(|_| b.take(0)).count();
        assert_eq!(passed, 1024);
        // 500 ms later, half a second's worth is back.
        let passed = (0..2000).filter(|_| b.take(500)).count();
        assert_eq!(passed, 512);
        // A backwards clock does not refill.
        assert!(!b.take(100));
    }
}
