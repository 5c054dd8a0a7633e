//! Per-API-key token bucket: `rate_limit_per_s` sustained, `rate_limit_burst` at once.
//!
//! In-process only: with several instances each enforces its own share. That is enough to stop
//! one runaway client from starving the others on an instance; a shared limit would live in
//! Redis with the other cross-instance state.

use std::hash::Hash;
use std::time::Instant;

use dashmap::DashMap;

/// Token buckets keyed by `K` (the API key id). Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RateLimiter<K: Hash + Eq> {
    per_s: f64,
    burst: f64,
    buckets: DashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// A limiter allowing `per_s` requests per second after a burst of `burst`; `per_s == 0`
    /// allows everything.
    pub fn new(per_s: u32, burst: u32) -> Self {
        RateLimiter {
            per_s: f64::from(per_s),
            burst: f64::from(burst.max(1)),
            buckets: DashMap::new(),
        }
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.per_s > 0.0
    }

    /// Takes one token for `key` at time `now`. `Err(retry_after_s)` (at least 1 s) when the
    /// bucket is empty.
    pub fn check(&self, key: K, now: Instant) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let mut bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let elapsed_s = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed_s * self.per_s).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait_s = (1.0 - bucket.tokens) / self.per_s;
            Err(wait_s.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(1u64, t0).is_ok());
        }
        assert_eq!(limiter.check(1, t0), Err(1));
        // Another key has its own bucket.
        assert!(limiter.check(2, t0).is_ok());
        // Half a second at 2/s gives one token back.
        assert!(limiter.check(1, t0 + Duration::from_millis(500)).is_ok());
        assert!(limiter.check(1, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn zero_rate_disables() {
        let limiter = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert!(limiter.check(1u64, t0).is_ok());
        }
    }
}
