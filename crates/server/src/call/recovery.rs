//! Closing call records that no process carries any more, so none stays `in-progress` forever.
//!
//! - At start, before this process takes calls: the calls whose media stream ran on a previous
//!   process of this instance (`server.instance_id`, when configured: that process is gone),
//!   and the open calls of any instance older than `calls.stale_after_s` (longer than any call
//!   may last), are closed as `failed` / `engine_restart`. `failed`, not `completed`: the call
//!   did not end the way anyone chose, and the success rate must not count it.
//! - While running, every few seconds: calls whose voice webhook handed out a media stream that
//!   did not start within `twilio.stream_start_timeout_s` are closed as `failed` /
//!   `stream_never_started`. The deadline is in the database, so any instance closes them,
//!   also after the one that answered the webhook died.
//!
//! - At start, after the calls above are closed and before their webhooks: the recording
//!   spools a dead process left (`call::recording::find_leftover_spools`) are finalised as
//!   partial recordings (header fixed, playable up to the last second written), stored like any
//!   recording and given their rows (`partial: true`), so the end-of-call webhook of a closed
//!   call points at its recording. A spool whose call is still open (live on another instance
//!   sharing the folder) is left alone.
//!
//! - Then the call trace spools a dead process left (`call::trace_recovery`): each one whose
//!   call has ended is stored as that call's trace, marked truncated, so the flight recorder of
//!   the call that crashed can be read and replayed; one whose call is still open is left alone.
//!
//! Each closed call gets its `status-update` and `end-of-call-report` webhooks.

use std::path::Path;
use std::time::Duration;

use switchboard_core::call::trace::TRACE_FORMAT_VERSION;
use switchboard_store::CallRow;

use crate::call::recording::{self, LeftoverSpool};
use crate::call::trace_recovery;
use crate::call::trace_spool::SpoolError;
use crate::metrics;
use crate::state::AppState;
use crate::trace_storage::{self, TraceStorageError};

/// Shortest interval of the stream-deadline sweep, ms.
const MIN_SWEEP_INTERVAL_MS: u64 = 250;

/// Longest interval of the stream-deadline sweep, ms: a call is closed at most this long after
/// its deadline.
const MAX_SWEEP_INTERVAL_MS: u64 = 15_000;

/// Closes the calls a previous process left open, then starts the stream-deadline sweep
/// (stopped by `state.shutdown`). Call once at start, before serving.
pub async fn start(state: &AppState) {
    let closed = close_abandoned(state).await;
    recover_recordings(state).await;
    recover_traces(state).await;
    remove_stale_trace_spools(state).await;
    report(state, &closed).await;
    spawn_stream_sweep(state);
}

/// Removes what is left of call trace spools nobody appends to (see `trace_spool`): spools
/// without a head (written before heads were), and parts of a compression a crash cut short.
async fn remove_stale_trace_spools(state: &AppState) {
    let base = state.recordings.base_dir().to_path_buf();
    let removed = tokio::task::spawn_blocking(move || super::trace_spool::remove_stale(&base))
        .await
        .unwrap_or(0);
    if removed > 0 {
        tracing::info!(
            removed,
            "removed call trace spools left by a process that died mid-call"
        );
    }
}

/// Closes, as `engine_restart`, the open calls of a previous process of this instance (when
/// `server.instance_id` is configured; a random id names no earlier process) and the open
/// calls older than `calls.stale_after_s`. Returns how many were closed.
pub async fn close_abandoned_calls(state: &AppState) -> usize {
    let closed = close_abandoned(state).await;
    report(state, &closed).await;
    closed.len()
}

/// Closes the abandoned calls (see [`close_abandoned_calls`]) without reporting them.
async fn close_abandoned(state: &AppState) -> Vec<CallRow> {
    let configured = state.settings.server.instance_id.trim();
    let previous_self = (!configured.is_empty()).then_some(configured);
    let now = switchboard_store::now_ms();
    let stale_ms =
        i64::try_from(state.settings.calls.stale_after_s.saturating_mul(1000)).unwrap_or(i64::MAX);
    match state
        .store
        .close_abandoned_calls(previous_self, now.saturating_sub(stale_ms), now)
        .await
    {
        Ok(closed) => {
            if !closed.is_empty() {
                tracing::warn!(
                    closed = closed.len(),
                    "closed calls a stopped process left open (engine_restart)"
                );
            }
            closed
        }
        Err(e) => {
            tracing::error!(error = %e, "could not close the calls a stopped process left open");
            Vec::new()
        }
    }
}

/// Finalises, stores and records the recordings a dead process left half-written (see the
/// module doc). Returns how many recordings were stored.
pub async fn recover_recordings(state: &AppState) -> usize {
    let base = state.recordings.base_dir().to_path_buf();
    let found = tokio::task::spawn_blocking(move || recording::find_leftover_spools(&base))
        .await
        .unwrap_or_default();
    let mut stored = 0;
    for spool in found {
        match recover_one(state, spool).await {
            Ok(true) => stored += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not recover an interrupted recording"),
        }
    }
    if stored > 0 {
        tracing::warn!(
            stored,
            "stored the recordings a stopped process left unfinished (partial)"
        );
    }
    stored
}

/// Recovers one spool; `Ok(false)` when it is not ours to finish or holds no audio.
async fn recover_one(state: &AppState, spool: LeftoverSpool) -> Result<bool, RecoverError> {
    let call = state.store.get_call(spool.org_id, spool.call_id).await?;
    let Some(call) = call else {
        tracing::warn!(path = %spool.path.display(), "recording spool of an unknown call left alone");
        return Ok(false);
    };
    if call.ended_at_ms.is_none() {
        // Still live, on an instance sharing this folder.
        return Ok(false);
    }
    let base = state.recordings.base_dir().to_path_buf();
    let file = tokio::task::spawn_blocking(move || recording::recover_spool(&spool, &base))
        .await
        .map_err(|e| recording::RecordingError::Task(e.to_string()))??;
    let Some(file) = file else {
        return Ok(false);
    };
    let location = state.recordings.store(&file.path, &file.key).await?;
    state
        .store
        .add_recording(call.id, &file.to_new_recording(&location))
        .await?;
    Ok(true)
}

/// Stores the call trace spools a dead process left as truncated traces (see the module doc).
/// Returns how many were stored.
pub async fn recover_traces(state: &AppState) -> usize {
    let base = state.recordings.base_dir().to_path_buf();
    let found = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || trace_recovery::find_leftover(&base))
            .await
            .unwrap_or_default()
    };
    let mut stored = 0;
    for call_id in found {
        match recover_trace(state, &base, call_id).await {
            Ok(true) => stored += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(call_id, error = %e, "could not recover an interrupted call trace");
            }
        }
    }
    if stored > 0 {
        tracing::warn!(
            stored,
            "stored the call traces a stopped process left unfinished (truncated)"
        );
    }
    stored
}

/// Recovers one trace spool; `Ok(false)` when it is not ours to finish. A spool that cannot
/// be read or whose call does not exist is removed; one that cannot be stored is removed too
/// (a trace is a debugging aid: it is not worth a retry at every start).
async fn recover_trace(state: &AppState, base: &Path, call_id: i64) -> Result<bool, RecoverError> {
    let owned_base = base.to_path_buf();
    let head = tokio::task::spawn_blocking(move || trace_recovery::read_head(&owned_base, call_id))
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?;
    let call = match &head {
        Ok(head) => state.store.get_call(head.org_id, call_id).await?,
        Err(_) => None,
    };
    let (head, call) = match (head, call) {
        (Ok(head), Some(call)) => (head, call),
        (Err(e), _) => {
            trace_recovery::remove(base, call_id);
            return Err(e.into());
        }
        (Ok(_), None) => {
            trace_recovery::remove(base, call_id);
            return Err(RecoverError::UnknownCall(call_id));
        }
    };
    if call.ended_at_ms.is_none() {
        // Still live, on an instance sharing this folder.
        return Ok(false);
    }
    let org_id = head.org_id;
    if state.store.has_call_trace(org_id, call_id).await? {
        // The process stopped after the trace was stored, before its spool was removed.
        trace_recovery::remove(base, call_id);
        return Ok(false);
    }
    let (owned_base, storage) = (base.to_path_buf(), state.recordings.clone());
    let compressed = tokio::task::spawn_blocking(move || {
        let encoded = trace_recovery::encode_leftover(&owned_base, call_id, head)?;
        Ok::<_, RecoverError>(trace_storage::compress(
            &storage, org_id, call_id, &encoded,
        )?)
    })
    .await
    .map_err(|e| SpoolError::Task(e.to_string()));
    let version = i64::from(TRACE_FORMAT_VERSION);
    let stored: Result<(), RecoverError> = async {
        // One try: a start is not held up by a database that went away again.
        let (store, storage) = (&state.store, &state.recordings);
        trace_storage::publish(store, storage, version, compressed??, Duration::ZERO).await?;
        Ok(())
    }
    .await;
    // After the row (a crash before it leaves the spool for the next start), and whatever
    // the outcome: a spool that cannot be stored is not retried.
    trace_recovery::remove(base, call_id);
    stored.map(|()| true)
}

/// Why one interrupted recording or call trace could not be recovered.
#[derive(Debug, thiserror::Error)]
enum RecoverError {
    #[error(transparent)]
    Store(#[from] switchboard_store::StoreError),
    #[error(transparent)]
    Recording(#[from] recording::RecordingError),
    #[error(transparent)]
    Storage(#[from] crate::recording_storage::StorageError),
    #[error(transparent)]
    TraceSpool(#[from] SpoolError),
    #[error(transparent)]
    TraceStorage(#[from] TraceStorageError),
    /// A trace spool names a call its organisation does not have.
    #[error("the trace spool's call {0} does not exist")]
    UnknownCall(i64),
}

/// Closes, as `stream_never_started`, the calls whose media stream missed its deadline.
/// Returns how many were closed.
pub async fn close_calls_without_stream(state: &AppState) -> usize {
    match state
        .store
        .close_calls_without_stream(switchboard_store::now_ms())
        .await
    {
        Ok(closed) => {
            for call in &closed {
                tracing::warn!(call_sid = %call.call_sid, "the call's media stream never started");
            }
            report(state, &closed).await;
            closed.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not close calls whose stream never started");
            0
        }
    }
}

/// The sweep interval for a stream start timeout: half of it, within
/// [`MIN_SWEEP_INTERVAL_MS`]..=[`MAX_SWEEP_INTERVAL_MS`].
fn sweep_interval(stream_start_timeout_s: u64) -> Duration {
    let half_ms = stream_start_timeout_s.saturating_mul(500);
    Duration::from_millis(half_ms.clamp(MIN_SWEEP_INTERVAL_MS, MAX_SWEEP_INTERVAL_MS))
}

fn spawn_stream_sweep(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval(sweep_interval(state.settings.twilio.stream_start_timeout_s));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    close_calls_without_stream(&state).await;
                }
            }
        }
    });
}

/// Counts the closed calls as failed and sends their webhooks.
async fn report(state: &AppState, closed: &[CallRow]) {
    for call in closed {
        metrics::call::call_ended(
            call.status,
            call.ended_reason.as_ref(),
            metrics::org_label(state, call.organization_id),
        );
        crate::webhooks::call_finished(state, call, true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_at_half_the_timeout_within_bounds() {
        assert_eq!(sweep_interval(30), Duration::from_secs(15));
        assert_eq!(sweep_interval(1), Duration::from_millis(500));
        assert_eq!(sweep_interval(0), Duration::from_millis(250));
        assert_eq!(sweep_interval(3600), Duration::from_secs(15));
        assert_eq!(sweep_interval(u64::MAX), Duration::from_secs(15));
    }
}
