//! When to try again: exponential backoff with jitter and a cap.
//!
//! Jitter spreads a crowd of clients that lost the same server, so they do
//! not all come back in the same instant; the cap keeps a laptop that was
//! offline for an hour from waiting an hour after the network returns.

use rand::Rng;
use std::time::Duration;

/// Backoff settings and the current attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay.
    pub base: Duration,
    /// Longest delay.
    pub cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
    }
}

impl Backoff {
    /// Backoff from `base`, doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt: `base · 2^n` capped, then a random
    /// point in its upper half.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = exp / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    /// Back to the first delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(
            d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100),
            "{d:?}"
        );
        assert!(
            d[1] >= Duration::from_millis(100) && d[1] <= Duration::from_millis(200),
            "{d:?}"
        );
        for x in &d[4..] {
            assert!(
                *x >= Duration::from_millis(500) && *x <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_varies() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
            seen.insert(b.next_delay());
        }
        assert!(seen.len() > 1);
    }
}
