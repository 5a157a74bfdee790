//! ESP's anti-replay window (RFC 4303 §3.4.3): which sequence numbers an
//! inbound SA has accepted, over the last [`WINDOW`] below the highest.
//! A number is checked before the packet's integrity is verified (to drop
//! replays cheaply) and marked only after (so a forged packet cannot move
//! the window).

/// AWS's replay window (spec 10.2): 1,024 packets.
pub const WINDOW: u32 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Seen already.
    Duplicate,
    /// Below the window.
    TooOld,
    /// 0 is never sent (RFC 4303 §3.3.3: the first packet is 1).
    Zero,
}

/// The window: the highest number accepted, and a bit per number in the
/// [`WINDOW`] up to it (bit `n % WINDOW` stands for `n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWindow {
    top: u32,
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    /// Whether `seq` may be accepted (nothing changes).
    pub fn check(&self, seq: u32) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::Zero);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(Replay::TooOld);
        }
        if self.bit(seq) {
            return Err(Replay::Duplicate);
        }
        Ok(())
    }

    /// Marks `seq` accepted (after [`ReplayWindow::check`] and the
    /// integrity check), sliding the window when it is the new highest.
    pub fn accept(&mut self, seq: u32) {
        if seq > self.top {
            let advance = seq - self.top;
            if advance >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Clear the bits of the numbers the window slides over.
                for n in self.top + 1..seq {
                    self.set(n, false);
                }
            }
            self.top = seq;
        }
        self.set(seq, true);
    }

    /// The highest number accepted.
    pub fn top(&self) -> u32 {
        self.top
    }

    fn bit(&self, n: u32) -> bool {
        let i = n % WINDOW;
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, n: u32, on: bool) {
        let i = n % WINDOW;
        let word = &mut self.bits[(i / 64) as usize];
        if on {
            *word |= 1 << (i % 64);
        } else {
            *word &= !(1 << (i % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_late_packets_pass_once() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(0), Err(Replay::Zero));
        for seq in [1, 2, 5, 4, 3] {
            assert_eq!(w.check(seq), Ok(()), "{seq}");
            w.accept(seq);
        }
        for seq in 1..=5 {
            assert_eq!(w.check(seq), Err(Replay::Duplicate), "{seq}");
        }
        assert_eq!(w.top(), 5);
    }

    #[test]
    fn the_window_is_1024_wide() {
        let mut w = ReplayWindow::default();
        w.accept(2000);
        assert_eq!(w.check(2000 - 1023), Ok(()), "the window's oldest");
        assert_eq!(w.check(2000 - 1024), Err(Replay::TooOld));
        w.accept(1500);
        // Sliding by less than the window keeps what it knew...
        w.accept(2400);
        assert_eq!(w.check(1500), Err(Replay::Duplicate));
        assert_eq!(w.check(1501), Ok(()));
        // ...and forgets the numbers it slides over.
        assert_eq!(w.check(2399), Ok(()));
        // A jump past the window forgets everything below.
        w.accept(10_000);
        assert_eq!(w.check(9_000), Ok(()));
        assert_eq!(w.check(2400), Err(Replay::TooOld));
    }

    #[test]
    fn a_slide_clears_reused_bits() {
        let mut w = ReplayWindow::default();
        w.accept(10);
        w.accept(1030);
        assert_eq!(w.check(10), Err(Replay::Duplicate), "still inside");
        // 1034 shares 10's bit: sliding over it clears it.
        w.accept(1040);
        assert_eq!(w.check(1034), Ok(()), "cleared by the slide");
        assert_eq!(w.check(10), Err(Replay::TooOld));
    }
}
