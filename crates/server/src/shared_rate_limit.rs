//! The API rate limit (`server.rate_limit_per_s`, `server.rate_limit_burst`) shared by every
//! instance through Redis when `redis.url` is set, so that a key gets its rate once, not once
//! per instance behind the balancer.
//!
//! One token bucket per API key id in a Redis hash (`<prefix>:ratelimit:<key id>`: tokens and
//! the time of the last take), refilled and taken by one Lua script on Redis's own clock, so
//! the instances' clocks do not matter and two instances cannot both take the last token. The
//! hash expires once it would be full again.
//!
//! When Redis does not answer within [`REDIS_TIMEOUT_MS`] (or fails), the request is held to
//! this instance's in-memory bucket instead: the limit degrades to per instance, and the API
//! keeps answering.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::rate_limit::RateLimiter;

/// How long a request waits for Redis's verdict before the local bucket decides, ms.
pub const REDIS_TIMEOUT_MS: u64 = 250;

const TAKE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
end
local ok = 0
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {ok, wait_ms}
"#;

/// What `redis` answered, or `None` (logged as a warning naming `what`) when it failed or
/// took over [`REDIS_TIMEOUT_MS`]; the caller then decides on this instance's own.
pub(crate) async fn within_redis_timeout<T>(
    redis: impl std::future::Future<Output = Result<T, SharedLimitError>>,
    what: &'static str,
) -> Option<T> {
    match tokio::time::timeout(Duration::from_millis(REDIS_TIMEOUT_MS), redis).await {
        Ok(Ok(answer)) => Some(answer),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, what, "redis unavailable; this instance decides");
            None
        }
        Err(_) => {
            tracing::warn!(
                timeout_ms = REDIS_TIMEOUT_MS,
                what,
                "redis did not answer; this instance decides"
            );
            None
        }
    }
}

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedLimitError {
    /// Redis refused, failed or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// A Redis connection (reconnecting) and the prefix that namespaces the keys, shared by the
/// limits kept in Redis.
#[derive(Clone)]
pub struct SharedRedis {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// Connects to `redis_url`; `prefix` namespaces the keys (`switchboard` in deployments, a
    /// random one in tests).
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, SharedLimitError> {
        let client = redis::Client::open(redis_url)?;
        let conn = redis::aio::ConnectionManager::new(client).await?;
        Ok(SharedRedis {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The key `<prefix>:<kind>:<id>`.
    pub(crate) fn key(&self, kind: &str, id: impl std::fmt::Display) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// A handle on the connection for one command.
    pub(crate) fn conn(&self) -> redis::aio::ConnectionManager {
        self.conn.clone()
    }
}

/// Token buckets in Redis, one per API key id.
#[derive(Clone, Debug)]
pub struct RedisRateLimit {
    redis: SharedRedis,
    script: redis::Script,
}

impl RedisRateLimit {
    /// The buckets on `redis`.
    pub fn new(redis: SharedRedis) -> Self {
        RedisRateLimit {
            redis,
            script: redis::Script::new(TAKE_LUA),
        }
    }

    /// Takes one token of `key_id`'s bucket (`per_s` sustained, `burst` at once).
    /// `Ok(Err(retry_after_s))` (at least 1 s) when it is empty.
    pub async fn take(
        &self,
        key_id: i64,
        per_s: u32,
        burst: u32,
    ) -> Result<Result<(), u64>, SharedLimitError> {
        let per_s = per_s.max(1);
        let burst = burst.max(1);
        // Expire once full again (plus a second), so idle keys cost nothing.
        let ttl_ms = u64::from(burst) * 1000 / u64::from(per_s) + 1000;
        let mut conn = self.redis.conn();
        let (ok, wait_ms): (i64, i64) = self
            .script
            .key(self.redis.key("ratelimit", key_id))
            .arg(per_s)
            .arg(burst)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        if ok == 1 {
            Ok(Ok(()))
        } else {
            let wait_s = (wait_ms.max(0) as u64).div_ceil(1000).max(1);
            Ok(Err(wait_s))
        }
    }
}

/// The per-API-key rate limit: in Redis once [`ApiRateLimit::share_through`] attached it,
/// else (and whenever Redis does not answer in time) in this process.
#[derive(Debug)]
pub struct ApiRateLimit {
    per_s: u32,
    burst: u32,
    local: RateLimiter<i64>,
    shared: OnceLock<RedisRateLimit>,
}

impl ApiRateLimit {
    /// `per_s` requests per second after a burst of `burst`; `per_s == 0` allows everything.
    pub fn new(per_s: u32, burst: u32) -> Self {
        ApiRateLimit {
            per_s,
            burst,
            local: RateLimiter::new(per_s, burst),
            shared: OnceLock::new(),
        }
    }

    /// Shares the buckets with the other instances through `redis` from now on (once; a second
    /// call is ignored).
    pub fn share_through(&self, redis: RedisRateLimit) {
        let _ = self.shared.set(redis);
    }

    /// Whether the buckets live in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.get().is_some()
    }

    /// Takes one token for API key `key_id` at `now`. `Err(retry_after_s)` (at least 1 s)
    /// when its bucket is empty.
    pub async fn check(&self, key_id: i64, now: Instant) -> Result<(), u64> {
        if self.per_s == 0 {
            return Ok(());
        }
        if let Some(redis) = self.shared.get() {
            let shared = within_redis_timeout(
                redis.take(key_id, self.per_s, self.burst),
                "shared rate limit",
            );
            if let Some(verdict) = shared.await {
                return verdict;
            }
        }
        self.local.check(key_id, now)
    }
}
