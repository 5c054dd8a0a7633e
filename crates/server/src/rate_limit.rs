//! Request limits in memory: the per-API-key token bucket ([`RateLimiter`]:
//! `rate_limit_per_s` sustained, `rate_limit_burst` at once) and the per-address
//! failed-authentication throttle ([`AuthFailures`]).
//!
//! In process. With several instances both are shared through Redis
//! (`crate::shared_rate_limit`, `crate::shared_auth_failures`), which fall back to these when
//! Redis does not answer.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::edge::client::limit_key;

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

/// Failed API-key (or metrics-token) checks per client address, in fixed windows: once an
/// address has failed `limit` times within `window` of its first failure, every further
/// attempt is refused (429) without the credential being checked, until the window ends. A
/// success neither resets the count nor is let through while the address is blocked, so mixing
/// in a valid key does not buy more guesses. IPv6 clients are counted per /64.
#[derive(Debug)]
pub struct AuthFailures {
    limit: u32,
    window: Duration,
    windows: DashMap<IpAddr, FailureWindow>,
}

#[derive(Debug, Clone, Copy)]
struct FailureWindow {
    started: Instant,
    failures: u32,
}

impl AuthFailures {
    /// `limit` failures per `window_s` seconds per address; `limit == 0` turns it off.
    pub fn new(limit: u32, window_s: u64) -> Self {
        AuthFailures {
            limit,
            window: Duration::from_secs(window_s.max(1)),
            windows: DashMap::new(),
        }
    }

    /// `Err(retry_after_s)` (at least 1) when `ip` is blocked at `now`.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        let Some(window) = self.windows.get(&limit_key(ip)).map(|w| *w) else {
            return Ok(());
        };
        let ends = window.started + self.window;
        if window.failures >= self.limit && now < ends {
            let left = ends.saturating_duration_since(now);
            Err(left.as_secs_f64().ceil().max(1.0) as u64)
        } else {
            Ok(())
        }
    }

    /// Counts a failed check from `ip` at `now`.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        let mut window = self.windows.entry(limit_key(ip)).or_insert(FailureWindow {
            started: now,
            failures: 0,
        });
        if now >= window.started + self.window {
            *window = FailureWindow {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    /// Forgets windows that ended before `now` (keeps memory bounded by recent failures).
    pub fn prune(&self, now: Instant) {
        self.windows.retain(|_, w| now < w.started + self.window);
    }

    /// Addresses with a live failure window (for tests and diagnostics).
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn failed_auth_blocks_an_address_for_the_rest_of_its_window() {
        let throttle = AuthFailures::new(3, 60);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for i in 0..3 {
            assert!(throttle.check(a, t0).is_ok(), "attempt {i}");
            throttle.record_failure(a, t0);
        }
        assert_eq!(throttle.check(a, t0), Err(60));
        assert_eq!(
            throttle.check(a, t0 + Duration::from_millis(59_500)),
            Err(1)
        );
        // Others are unaffected.
        assert!(throttle.check(b, t0).is_ok());
        // The window ends; the count starts again.
        let t1 = t0 + Duration::from_secs(60);
        assert!(throttle.check(a, t1).is_ok());
        throttle.record_failure(a, t1);
        assert!(throttle.check(a, t1).is_ok());
        throttle.prune(t1 + Duration::from_secs(61));
        assert_eq!(throttle.tracked(), 0);
    }

    #[test]
    fn ipv6_failures_count_per_64_and_zero_disables() {
        let throttle = AuthFailures::new(1, 60);
        let t0 = Instant::now();
        throttle.record_failure("2001:db8::1".parse().expect("ip"), t0);
        assert!(
            throttle
                .check("2001:db8::ffff".parse().expect("ip"), t0)
                .is_err()
        );
        let off = AuthFailures::new(0, 60);
        off.record_failure("2001:db8::1".parse().expect("ip"), t0);
        assert!(off.check("2001:db8::1".parse().expect("ip"), t0).is_ok());
        assert_eq!(off.tracked(), 0);
    }
}
