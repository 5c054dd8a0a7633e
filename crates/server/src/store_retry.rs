//! Trying a database write again while the database is away.
//!
//! Why: a write at the end of a call (its final status, its trace's row) that fails because the
//! database is briefly away (a failover, a restart, a network cut) used to be given up at once,
//! leaving the call open until the stale sweep and dropping its flight recording. Such a write
//! is now tried again with a wait that doubles from [`FIRST_WAIT`] to [`MAX_WAIT`], for up to a
//! patience the caller gives; any other failure (a constraint, a missing row) is returned at
//! once. The live call's rows have their own writer (`call::call_data`).

use std::future::Future;
use std::time::Duration;

use switchboard_store::StoreError;

/// The first wait before trying again.
pub const FIRST_WAIT: Duration = Duration::from_millis(500);
/// The longest wait between tries.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// How long an end-of-call write is tried while the database is away.
pub const END_OF_CALL_PATIENCE: Duration = Duration::from_secs(600);

/// Runs `write` until it succeeds, fails for a reason other than the database being away
/// ([`StoreError::is_transient`]), or the database stays away for `patience`; returns its last
/// result. `what` names the write in the debug log of each retry.
pub async fn while_database_away<T, F, Fut>(
    what: &str,
    patience: Duration,
    mut write: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let give_up_at = tokio::time::Instant::now() + patience;
    let mut wait = FIRST_WAIT;
    loop {
        match write().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + wait < give_up_at => {
                tracing::debug!(what, error = %e, wait_ms = wait.as_millis() as u64, "the database is away; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn away() -> StoreError {
        StoreError::Database(sqlx::Error::PoolTimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_tried_again_until_the_database_is_back() {
        let tries = Cell::new(0);
        let started = tokio::time::Instant::now();
        let result = while_database_away("test", END_OF_CALL_PATIENCE, || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { if n < 4 { Err(away()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result.ok(), Some(4));
        // Waited 500 + 1000 + 2000 ms (virtual time).
        assert_eq!(started.elapsed(), Duration::from_millis(3500));
    }

    #[tokio::test(start_paused = true)]
    async fn other_failures_and_a_long_outage_are_returned() {
        let tries = Cell::new(0);
        let refused = while_database_away("test", END_OF_CALL_PATIENCE, || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(StoreError::NotFound) }
        })
        .await;
        assert!(matches!(refused, Err(StoreError::NotFound)));
        assert_eq!(tries.get(), 1, "not tried again");

        let tries = Cell::new(0);
        let started = tokio::time::Instant::now();
        let away_for_good = while_database_away("test", Duration::from_secs(60), || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(away()) }
        })
        .await;
        assert!(away_for_good.is_err_and(|e| e.is_transient()));
        // 0.5 + 1 + 2 + 4 + 8 + 10 + 10 + 10 + 10 = 55.5 s; the next wait would pass 60 s.
        assert_eq!(tries.get(), 10);
        assert_eq!(started.elapsed(), Duration::from_millis(55_500));
    }
}
