//! A low-frequency background task of the edge: forgets expired failed-authentication windows
//! and, once a burst of connections has ended, hands freed heap memory back to the OS.
//!
//! Why the latter: glibc's allocator keeps freed memory in its per-thread arenas. After a
//! burst of thousands of connections (each with its buffers and task) the process's resident
//! size stayed at its peak although the connections were gone. `malloc_trim(0)` returns the
//! free pages; it runs on a blocking thread, only when the open-connection count has fallen by
//! at least [`TRIM_AFTER_DROP`] since the last look.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::limits::ConnectionLimits;
use crate::rate_limit::AuthFailures;

/// How often the task looks.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Fall in open connections (peak since the last look − open now) that triggers a trim.
pub const TRIM_AFTER_DROP: usize = 256;

/// Runs until `shutdown` is cancelled.
pub async fn run(
    limits: Arc<ConnectionLimits>,
    auth_failures: Arc<AuthFailures>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        auth_failures.prune(Instant::now());
        let peak = limits.take_peak();
        let open = limits.open();
        if peak.saturating_sub(open) >= TRIM_AFTER_DROP {
            tracing::debug!(peak, open, "connection burst over: returning free memory");
            // Best effort: a failed spawn only means no trim this time.
            let _ = tokio::task::spawn_blocking(release_free_memory).await;
        }
    }
}

/// Returns free heap pages to the OS where the allocator supports it (glibc).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists under its locks; it
        // has no preconditions and is safe to call from any thread at any time.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
