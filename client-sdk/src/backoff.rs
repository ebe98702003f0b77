//! Reconnect delays: exponential backoff with full jitter.
//!
//! The n-th consecutive failed attempt waits a uniformly random time between zero and
//! `min(cap, base * 2^n)`. Full jitter spreads a crowd of clients that lost the same node, so
//! they do not return in lockstep.

use std::time::Duration;

/// The backoff policy and its attempt counter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A policy with the given base and cap (Marquee's defaults are 250 ms and 20 s).
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay (random in `[0, ceiling]`), counting one more failed attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=millis))
    }

    /// Starts over after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(20));
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                let d = b.next_delay();
                assert!(d.as_millis() as u64 <= c);
                c
            })
            .collect();
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 20000, 20000, 20000]
        );
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(250));
    }

    #[test]
    fn delays_are_spread_over_the_whole_range() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_millis(250)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(750)));
    }
}
