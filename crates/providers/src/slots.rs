//! Concurrency slot limits per provider key (`stt_limit`, `tts_limit` of the assistant record).
//!
//! A vendor key allows only so many concurrent streams; going over it gets 429s in the middle of
//! calls. Before a call opens an STT or TTS session it takes a *lease* on one slot of that key;
//! the lease is released when the session ends (the [`SlotLease`] is dropped). With one engine
//! instance the counting is in process; with several, the leases live in Redis so that every
//! instance sees the same count. Redis leases expire (`ttl`) and are renewed while held, so a
//! crashed instance cannot hold slots forever.
//!
//! Keys are never stored in clear: a slot pool is named by a short SHA-256 digest of the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// Which kind of session a slot is for; pools of different kinds never share counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// A streaming speech-to-text session.
    Stt,
    /// A streaming text-to-speech session.
    Tts,
}

impl SlotKind {
    fn as_str(self) -> &'static str {
        match self {
            SlotKind::Stt => "stt",
            SlotKind::Tts => "tts",
        }
    }
}

/// Why a slot could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    /// Every slot of the key stayed taken for the whole wait.
    #[error("all {limit} {kind} slots of this key are in use (waited {waited_ms} ms)")]
    Exhausted {
        /// The pool's kind, `stt` or `tts`.
        kind: &'static str,
        /// The configured limit.
        limit: u32,
        /// How long we waited, in ms.
        waited_ms: u64,
    },
    /// The shared backend (Redis) failed.
    #[error("slot backend error: {0}")]
    Backend(String),
}

/// Where leases are counted. Implementations must be atomic across everyone sharing them.
#[async_trait]
pub trait SlotBackend: Send + Sync + std::fmt::Debug {
    /// Takes one slot of `pool` for `lease_id` if fewer than `limit` are held; `ttl` bounds how
    /// long an unrenewed lease lives. Returns whether the slot was taken.
    async fn try_acquire(
        &self,
        pool: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, SlotError>;
    /// Extends a held lease by `ttl`; false if it had already expired (it is then re-taken only
    /// if a slot is free).
    async fn renew(&self, pool: &str, lease_id: &str, ttl: Duration) -> Result<bool, SlotError>;
    /// Gives the slot back.
    async fn release(&self, pool: &str, lease_id: &str) -> Result<(), SlotError>;
    /// How many leases of `pool` are live now.
    async fn in_use(&self, pool: &str) -> Result<u32, SlotError>;
}

/// Counts leases in this process (one engine instance).
#[derive(Debug, Default)]
pub struct LocalSlots {
    pools: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl LocalSlots {
    fn with_pool<T>(&self, pool: &str, f: impl FnOnce(&mut HashMap<String, Instant>) -> T) -> T {
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let leases = pools.entry(pool.to_owned()).or_default();
        let now = Instant::now();
        leases.retain(|_, expires| *expires > now);
        let out = f(leases);
        if leases.is_empty() {
            pools.remove(pool);
        }
        out
    }
}

#[async_trait]
impl SlotBackend for LocalSlots {
    async fn try_acquire(
        &self,
        pool: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, SlotError> {
        Ok(self.with_pool(pool, |leases| {
            if leases.contains_key(lease_id) || leases.len() < limit as usize {
                leases.insert(lease_id.to_owned(), Instant::now() + ttl);
                true
            } else {
                false
            }
        }))
    }

    async fn renew(&self, pool: &str, lease_id: &str, ttl: Duration) -> Result<bool, SlotError> {
        Ok(
            self.with_pool(pool, |leases| match leases.get_mut(lease_id) {
                Some(expires) => {
                    *expires = Instant::now() + ttl;
                    true
                }
                None => false,
            }),
        )
    }

    async fn release(&self, pool: &str, lease_id: &str) -> Result<(), SlotError> {
        self.with_pool(pool, |leases| leases.remove(lease_id));
        Ok(())
    }

    async fn in_use(&self, pool: &str) -> Result<u32, SlotError> {
        Ok(self.with_pool(pool, |leases| leases.len() as u32))
    }
}

/// Counts leases in Redis, shared by every engine instance using the same Redis.
///
/// A pool is a sorted set `switchboard:slots:{pool}` of lease ids scored by their expiry (ms,
/// Redis server time, so instance clocks do not matter). Acquire is one Lua script: drop
/// expired leases, then add ours only if the set is smaller than the limit.
#[derive(Clone)]
pub struct RedisSlots {
    conn: redis::aio::ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSlots")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const ACQUIRE_LUA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
  return 1
end
return 0
"#;

const RENEW_LUA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
"#;

const IN_USE_LUA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"#;

impl RedisSlots {
    /// Connects to `redis_url` (e.g. `redis://127.0.0.1:6379`). `prefix` namespaces the keys
    /// (tests use a random one; deployments the default `switchboard`).
    pub async fn connect(redis_url: &str, prefix: &str) -> Result<Self, SlotError> {
        let client = redis::Client::open(redis_url).map_err(backend)?;
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(backend)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, pool: &str) -> String {
        format!("{}:slots:{pool}", self.prefix)
    }
}

fn backend(e: redis::RedisError) -> SlotError {
    SlotError::Backend(e.to_string())
}

#[async_trait]
impl SlotBackend for RedisSlots {
    async fn try_acquire(
        &self,
        pool: &str,
        lease_id: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, SlotError> {
        let mut conn = self.conn.clone();
        let got: i64 = redis::Script::new(ACQUIRE_LUA)
            .key(self.key(pool))
            .arg(lease_id)
            .arg(limit)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(got == 1)
    }

    async fn renew(&self, pool: &str, lease_id: &str, ttl: Duration) -> Result<bool, SlotError> {
        let mut conn = self.conn.clone();
        let got: i64 = redis::Script::new(RENEW_LUA)
            .key(self.key(pool))
            .arg(lease_id)
            .arg(ttl.as_millis() as u64)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(got == 1)
    }

    async fn release(&self, pool: &str, lease_id: &str) -> Result<(), SlotError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREM")
            .arg(self.key(pool))
            .arg(lease_id)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn in_use(&self, pool: &str) -> Result<u32, SlotError> {
        let mut conn = self.conn.clone();
        let n: i64 = redis::Script::new(IN_USE_LUA)
            .key(self.key(pool))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(n.max(0) as u32)
    }
}

/// Hands out leases on the slots of provider keys.
#[derive(Debug, Clone)]
pub struct SlotLimiter {
    backend: Arc<dyn SlotBackend>,
    /// How long an unrenewed lease lives; renewed every third of it while held.
    ttl: Duration,
}

impl SlotLimiter {
    /// A limiter counting in this process only.
    pub fn local() -> Self {
        Self::new(Arc::new(LocalSlots::default()))
    }

    /// A limiter over any backend, with a 30 s lease TTL.
    pub fn new(backend: Arc<dyn SlotBackend>) -> Self {
        Self {
            backend,
            ttl: Duration::from_secs(30),
        }
    }

    /// Sets the lease TTL (renewal happens every third of it).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The pool name for a key: kind plus the first 16 hex digits of SHA-256(key).
    pub fn pool_name(kind: SlotKind, api_key: &str) -> String {
        let digest = Sha256::digest(api_key.as_bytes());
        format!("{}:{}", kind.as_str(), hex::encode(&digest[..8]))
    }

    /// Number of live leases on this key's pool.
    pub async fn in_use(&self, kind: SlotKind, api_key: &str) -> Result<u32, SlotError> {
        self.backend.in_use(&Self::pool_name(kind, api_key)).await
    }

    /// Takes a slot of `api_key`'s pool, waiting up to `max_wait` for one to free up (polling
    /// with a short backoff). The lease is renewed in the background while it is held and
    /// released when dropped.
    pub async fn acquire(
        &self,
        kind: SlotKind,
        api_key: &str,
        limit: u32,
        max_wait: Duration,
    ) -> Result<SlotLease, SlotError> {
        let pool = Self::pool_name(kind, api_key);
        let lease_id = format!("{:032x}", rand::random::<u128>());
        let start = Instant::now();
        let mut pause = Duration::from_millis(20);
        loop {
            if self
                .backend
                .try_acquire(&pool, &lease_id, limit.max(1), self.ttl)
                .await?
            {
                break;
            }
            let waited = start.elapsed();
            if waited >= max_wait {
                return Err(SlotError::Exhausted {
                    kind: kind.as_str(),
                    limit,
                    waited_ms: waited.as_millis() as u64,
                });
            }
            tokio::time::sleep(pause.min(max_wait - waited)).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
        let renewer = {
            let backend = self.backend.clone();
            let (pool, lease_id, ttl) = (pool.clone(), lease_id.clone(), self.ttl);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(ttl / 3);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    match backend.renew(&pool, &lease_id, ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!(pool, "slot lease expired before renewal");
                            let _ = backend.try_acquire(&pool, &lease_id, u32::MAX, ttl).await;
                        }
                        Err(e) => tracing::warn!(pool, error = %e, "slot lease renewal failed"),
                    }
                }
            })
        };
        Ok(SlotLease {
            backend: self.backend.clone(),
            pool,
            lease_id,
            renewer: Some(renewer),
        })
    }
}

/// One held slot; dropping it releases the slot.
#[derive(Debug)]
pub struct SlotLease {
    backend: Arc<dyn SlotBackend>,
    pool: String,
    lease_id: String,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl SlotLease {
    /// Releases the slot now and waits for the backend to confirm.
    pub async fn release(mut self) -> Result<(), SlotError> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let out = self.backend.release(&self.pool, &self.lease_id).await;
        self.lease_id.clear();
        out
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.lease_id.is_empty() {
            return;
        }
        let backend = self.backend.clone();
        let pool = std::mem::take(&mut self.pool);
        let lease_id = std::mem::take(&mut self.lease_id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = backend.release(&pool, &lease_id).await {
                    tracing::warn!(pool, error = %e, "slot release failed; the lease will expire");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exercise(limiter: SlotLimiter, key: &str) {
        let a = limiter
            .acquire(SlotKind::Tts, key, 2, Duration::ZERO)
            .await
            .expect("first slot");
        let b = limiter
            .acquire(SlotKind::Tts, key, 2, Duration::ZERO)
            .await
            .expect("second slot");
        assert_eq!(limiter.in_use(SlotKind::Tts, key).await.unwrap(), 2);
        // Full: a third caller is refused after its (short) wait.
        let err = limiter
            .acquire(SlotKind::Tts, key, 2, Duration::from_millis(30))
            .await
            .unwrap_err();
        assert!(
            matches!(err, SlotError::Exhausted { limit: 2, .. }),
            "{err}"
        );
        // Other kinds and other keys have their own pools.
        let other = limiter
            .acquire(SlotKind::Stt, key, 1, Duration::ZERO)
            .await
            .expect("stt pool is separate");
        drop(other);
        // Releasing one frees one.
        a.release().await.unwrap();
        assert_eq!(limiter.in_use(SlotKind::Tts, key).await.unwrap(), 1);
        let c = limiter
            .acquire(SlotKind::Tts, key, 2, Duration::ZERO)
            .await
            .expect("freed slot");
        // A waiter gets the slot once a holder drops its lease.
        let waiter = {
            let limiter = limiter.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                limiter
                    .acquire(SlotKind::Tts, &key, 2, Duration::from_secs(10))
                    .await
            })
        };
        tokio::task::yield_now().await;
        drop(b);
        let d = waiter.await.unwrap().expect("waiter got the released slot");
        d.release().await.unwrap();
        c.release().await.unwrap();
        assert_eq!(limiter.in_use(SlotKind::Tts, key).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn local_slots_limit_and_release() {
        exercise(SlotLimiter::local(), "sk-local-test-key").await;
    }

    #[tokio::test]
    async fn expired_leases_free_their_slot() {
        let backend = Arc::new(LocalSlots::default());
        assert!(
            backend
                .try_acquire("p", "a", 1, Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            backend
                .try_acquire("p", "b", 1, Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(
            !backend
                .renew("p", "a", Duration::from_secs(5))
                .await
                .unwrap()
        );
    }

    #[test]
    fn pool_names_hide_the_key() {
        let name = SlotLimiter::pool_name(SlotKind::Stt, "sk-secret-value");
        assert!(name.starts_with("stt:"));
        assert!(!name.contains("secret"));
        assert_eq!(name.len(), 4 + 16);
    }

    /// Runs against the real Redis when REDIS_URL is set (CI sets it); two limiters stand for
    /// two engine instances sharing one Redis.
    #[tokio::test]
    async fn redis_slots_are_shared_between_instances() {
        let Ok(url) = std::env::var("REDIS_URL") else {
            eprintln!("REDIS_URL unset: skipping the Redis slot test");
            return;
        };
        let prefix = format!("sbtest{:016x}", rand::random::<u64>());
        let one = SlotLimiter::new(Arc::new(RedisSlots::connect(&url, &prefix).await.unwrap()));
        let two = SlotLimiter::new(Arc::new(RedisSlots::connect(&url, &prefix).await.unwrap()));
        exercise(one.clone(), "sk-redis-test-key").await;
        let held = one
            .acquire(SlotKind::Stt, "k", 1, Duration::ZERO)
            .await
            .unwrap();
        assert!(
            two.acquire(SlotKind::Stt, "k", 1, Duration::ZERO)
                .await
                .is_err(),
            "the second instance must see the first one's lease"
        );
        held.release().await.unwrap();
        two.acquire(SlotKind::Stt, "k", 1, Duration::ZERO)
            .await
            .expect("free again after release")
            .release()
            .await
            .unwrap();
    }
}
