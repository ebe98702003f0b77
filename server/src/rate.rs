//! Rate-limit quotas (governor's) from the plain numbers settings give: a setting of 0 means
//! the smallest quota there is, one, never "unlimited".

use governor::clock::DefaultClock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::LazyLock;

/// One clock for every limiter made per connection: making one reads the CPU's features and
/// calibrates (`quanta`), a few per cent of a node's CPU while thousands connect a second.
static CLOCK: LazyLock<DefaultClock> = LazyLock::new(DefaultClock::default);

/// A limiter of `quota` on the shared clock.
pub(crate) fn direct(quota: Quota) -> DefaultDirectRateLimiter {
    RateLimiter::direct_with_clock(quota, CLOCK.clone())
}

/// `n`, or 1 when `n` is 0.
pub(crate) fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("max(1) is non-zero")
}

/// `rate` a second, in bursts of up to `burst`.
pub fn per_second(rate: u32, burst: u32) -> Quota {
    Quota::per_second(nonzero(rate)).allow_burst(nonzero(burst))
}

/// `n` a minute.
pub(crate) fn per_minute(n: u32) -> Quota {
    Quota::per_minute(nonzero(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_one_not_unlimited() {
        assert_eq!(nonzero(0).get(), 1);
        assert_eq!(nonzero(7).get(), 7);
        assert_eq!(per_second(0, 0).burst_size().get(), 1);
    }
}
