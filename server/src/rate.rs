//! Rate-limit quotas (governor's) from the plain numbers settings give: a setting of 0 means
//! the smallest quota there is, one, never "unlimited".

use governor::Quota;
use std::num::NonZeroU32;

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
