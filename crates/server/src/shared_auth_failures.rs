//! The failed-authentication throttle (`server.auth_fail_limit` per `auth_fail_window_s`)
//! shared by every instance through Redis when `redis.url` is set, so that an address gets
//! its guesses once, not once per instance behind the balancer.
//!
//! One counter per client address (IPv6 per /64) in Redis (`<prefix>:authfail:<address>`),
//! incremented by a failed check and expiring `auth_fail_window_s` after the address's first
//! failure (a fixed window, as in [`AuthFailures`]); an address whose counter reached the limit
//! is refused on any instance until the key expires. Redis's own clock times the window.
//!
//! Every failure is also counted in this instance's memory, which blocks on its own when Redis
//! does not answer within [`REDIS_TIMEOUT_MS`]: the throttle then degrades to per instance.
//!
//! [`AuthFailures`]: crate::rate_limit::AuthFailures
//! [`REDIS_TIMEOUT_MS`]: crate::shared_rate_limit::REDIS_TIMEOUT_MS

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::edge::client::limit_key;
use crate::rate_limit::AuthFailures;
use crate::shared_rate_limit::{SharedLimitError, SharedRedis, within_redis_timeout};

/// Counts one failure; the first of a window starts the window's expiry.
const FAIL_LUA: &str = r#"
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"#;

/// The address's failures in the current window and the window's time left, ms.
const LOOK_LUA: &str = r#"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
return {n, redis.call('PTTL', KEYS[1])}
"#;

/// Failure counters in Redis, one per client address.
#[derive(Clone, Debug)]
pub struct RedisAuthFailures {
    redis: SharedRedis,
    fail: redis::Script,
    look: redis::Script,
}

impl RedisAuthFailures {
    /// The counters on `redis`.
    pub fn new(redis: SharedRedis) -> Self {
        RedisAuthFailures {
            redis,
            fail: redis::Script::new(FAIL_LUA),
            look: redis::Script::new(LOOK_LUA),
        }
    }

    fn key(&self, ip: IpAddr) -> String {
        self.redis.key("authfail", limit_key(ip))
    }

    /// Counts a failure of `ip` in a window of `window_ms`.
    pub async fn record(&self, ip: IpAddr, window_ms: u64) -> Result<(), SharedLimitError> {
        let mut conn = self.redis.conn();
        let _: i64 = self
            .fail
            .key(self.key(ip))
            .arg(window_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// `ip`'s failures in its current window and the window's time left, ms (0 when none).
    pub async fn look(&self, ip: IpAddr) -> Result<(u64, u64), SharedLimitError> {
        let mut conn = self.redis.conn();
        let (count, ttl_ms): (u64, i64) =
            self.look.key(self.key(ip)).invoke_async(&mut conn).await?;
        Ok((count, ttl_ms.max(0) as u64))
    }
}

/// The failed-authentication throttle: this instance's windows, and Redis's once
/// [`AuthThrottle::share_through`] attached it.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window_ms: u64,
    local: Arc<AuthFailures>,
    shared: OnceLock<RedisAuthFailures>,
}

impl AuthThrottle {
    /// `limit` failures per `window_s` seconds per address; `limit == 0` turns it off.
    pub fn new(limit: u32, window_s: u64) -> Self {
        AuthThrottle {
            limit,
            window_ms: window_s.max(1) * 1000,
            local: Arc::new(AuthFailures::new(limit, window_s)),
            shared: OnceLock::new(),
        }
    }

    /// Shares the counters with the other instances through `redis` from now on (once; a
    /// second call is ignored).
    pub fn share_through(&self, redis: RedisAuthFailures) {
        let _ = self.shared.set(redis);
    }

    /// Whether the counters live in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// This instance's windows (the housekeeping task prunes them).
    pub fn local(&self) -> &Arc<AuthFailures> {
        &self.local
    }

    /// `Err(retry_after_s)` (at least 1) when `ip` is blocked at `now`, here or, when shared,
    /// on any instance.
    pub async fn check(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.limit == 0 {
            return Ok(());
        }
        self.local.check(ip, now)?;
        let Some(redis) = self.shared.get() else {
            return Ok(());
        };
        match within_redis_timeout(redis.look(ip), "failed-authentication throttle").await {
            Some((count, ttl_ms)) if count >= u64::from(self.limit) && ttl_ms > 0 => {
                Err(ttl_ms.div_ceil(1000).max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed credential check from `ip` at `now`, here and, when shared, in Redis.
    pub async fn record_failure(&self, ip: IpAddr, now: Instant) {
        if self.limit == 0 {
            return;
        }
        self.local.record_failure(ip, now);
        if let Some(redis) = self.shared.get() {
            // On a timeout the failure counts on this instance only (already done above).
            let _ = within_redis_timeout(
                redis.record(ip, self.window_ms),
                "failed-authentication throttle",
            )
            .await;
        }
    }
}
