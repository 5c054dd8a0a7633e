//! Deleting recordings and call traces past their retention (`[recordings] retention_days` and
//! `trace_retention_days`): at scale they are most of what the engine keeps (three tracks of
//! ~1 MB a minute per recorded call, a ~100 KB trace), and a disk or bucket that fills up
//! costs every later recording.
//!
//! Every instance sweeps once at start and then every [`SWEEP_EVERY`]: it reads the rows stored
//! before the cutoff, oldest first, [`BATCH`] at a time, deletes each file from the recordings'
//! storage (a local file or an S3 object; one already gone counts as deleted), then the rows of
//! the files that went. A file that cannot be deleted keeps its row, so the next sweep tries it
//! again; a batch in which nothing could be deleted ends the sweep. Instances sweeping at once
//! delete the same files twice at worst, which is harmless.

use std::time::Duration;

use futures::StreamExt as _;
use switchboard_store::{ExpiredFile, Store};

use crate::config::RecordingsSettings;
use crate::recording_storage::RecordingStorage;
use crate::state::AppState;

/// How often each instance sweeps, after one sweep at start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3_600);
/// Rows read per round trip.
const BATCH: usize = 200;
/// Files deleted at once (S3 round trips overlap).
const DELETES_IN_FLIGHT: usize = 16;
/// One day, ms.
const DAY_MS: i64 = 86_400_000;

/// The retention in force: days after which a file goes, 0 for never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days a recording is kept.
    pub recordings_days: u32,
    /// Days a call trace is kept.
    pub traces_days: u32,
}

impl From<&RecordingsSettings> for Retention {
    fn from(s: &RecordingsSettings) -> Self {
        Retention {
            recordings_days: s.retention_days,
            traces_days: s.trace_retention_days,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Recordings deleted (file and row).
    pub recordings: u64,
    /// Call traces deleted (file and row).
    pub traces: u64,
    /// Files that could not be deleted; their rows stay for the next sweep.
    pub failed: u64,
}

/// Starts the sweep (stopped by `state.shutdown`); nothing when neither retention is set.
pub fn spawn(state: &AppState) {
    let retention = Retention::from(&state.settings.recordings);
    if retention.recordings_days == 0 && retention.traces_days == 0 {
        return;
    }
    let (store, storage) = (state.store.clone(), state.recordings.clone());
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let swept = sweep(&store, &storage, retention, switchboard_store::now_ms()).await;
            if swept != Swept::default() {
                tracing::info!(
                    recordings = swept.recordings,
                    traces = swept.traces,
                    failed = swept.failed,
                    "deleted recordings and call traces past their retention"
                );
            }
        }
    });
}

/// Deletes what `retention` says is past keeping at `now_ms` (unix ms).
pub async fn sweep(
    store: &Store,
    storage: &RecordingStorage,
    retention: Retention,
    now_ms: i64,
) -> Swept {
    sweep_in_batches(store, storage, retention, now_ms, BATCH).await
}

async fn sweep_in_batches(
    store: &Store,
    storage: &RecordingStorage,
    retention: Retention,
    now_ms: i64,
    batch: usize,
) -> Swept {
    let mut swept = Swept::default();
    if let Some(cutoff) = cutoff(now_ms, retention.recordings_days) {
        loop {
            let found = match store.recordings_stored_before(cutoff, batch).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: could not read old recordings");
                    break;
                }
            };
            let gone = delete_files(storage, &found, &mut swept.failed).await;
            match store.delete_recordings(&gone).await {
                Ok(n) => swept.recordings += n,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: could not delete recording rows");
                    break;
                }
            }
            if found.len() < batch || gone.is_empty() {
                break;
            }
        }
    }
    if let Some(cutoff) = cutoff(now_ms, retention.traces_days) {
        loop {
            let found = match store.call_traces_stored_before(cutoff, batch).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: could not read old call traces");
                    break;
                }
            };
            let gone = delete_files(storage, &found, &mut swept.failed).await;
            match store.delete_call_traces(&gone, cutoff).await {
                Ok(n) => swept.traces += n,
                Err(e) => {
                    tracing::warn!(error = %e, "retention: could not delete call trace rows");
                    break;
                }
            }
            if found.len() < batch || gone.is_empty() {
                break;
            }
        }
    }
    swept
}

/// The cutoff (unix ms) `days` before `now_ms`; `None` when kept forever.
fn cutoff(now_ms: i64, days: u32) -> Option<i64> {
    (days > 0).then(|| now_ms.saturating_sub(i64::from(days) * DAY_MS))
}

/// Deletes each file of `found` (a row without a file has nothing to delete); returns the ids
/// whose files are gone, counting the others in `failed`.
async fn delete_files(
    storage: &RecordingStorage,
    found: &[ExpiredFile],
    failed: &mut u64,
) -> Vec<i64> {
    let results: Vec<(i64, bool)> = futures::stream::iter(found.iter().cloned())
        .map(|f| {
            let storage = storage.clone();
            async move {
                let Some(location) = f.location else {
                    return (f.id, true);
                };
                match storage.delete(&location).await {
                    Ok(()) => (f.id, true),
                    Err(e) => {
                        tracing::warn!(id = f.id, error = %e, "retention: could not delete a file");
                        (f.id, false)
                    }
                }
            }
        })
        .buffer_unordered(DELETES_IN_FLIGHT)
        .collect()
        .await;
    let mut gone = Vec::with_capacity(results.len());
    for (id, deleted) in results {
        if deleted {
            gone.push(id);
        } else {
            *failed += 1;
        }
    }
    gone
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{NewCall, NewRecording};

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        storage: RecordingStorage,
        org: i64,
        call: i64,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrate");
        let org = store.ensure_organization("acme").await.expect("org").id;
        let call = store
            .create_call(&NewCall {
                organization_id: org,
                call_sid: "CAkeep".into(),
                direction: "inbound".into(),
                ..NewCall::default()
            })
            .await
            .expect("call")
            .id;
        let storage = RecordingStorage::local(dir.path().join("data"));
        Fixture {
            _dir: dir,
            store,
            storage,
            org,
            call,
        }
    }

    /// A recording row of the call whose file is at `path` (written when `bytes` is given).
    async fn recording(f: &Fixture, path: &std::path::Path, bytes: Option<&[u8]>) {
        if let Some(bytes) = bytes {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
            std::fs::write(path, bytes).expect("file");
        }
        let row = NewRecording {
            kind: "mixed".into(),
            format: "wav".into(),
            path_or_url: path.display().to_string(),
            duration_ms: 1_000,
            size_bytes: 4,
            sample_rate: 8_000,
            partial: false,
        };
        f.store.add_recording(f.call, &row).await.expect("row");
    }

    const DAYS: Retention = Retention {
        recordings_days: 7,
        traces_days: 2,
    };

    #[tokio::test]
    async fn files_past_their_retention_go_with_their_rows_and_the_rest_stay() {
        let f = fixture().await;
        let base = f.storage.base_dir().to_path_buf();
        let paths: Vec<_> = (0..5)
            .map(|i| base.join(format!("org-1/recordings/call-{i}-mixed.wav")))
            .collect();
        for p in &paths {
            recording(&f, p, Some(b"RIFF")).await;
        }
        // A row whose file is already gone, and one whose "file" cannot be deleted (a folder).
        recording(&f, &base.join("gone.wav"), None).await;
        let stuck = base.join("stuck.wav");
        std::fs::create_dir_all(stuck.join("inside")).expect("dir");
        recording(&f, &stuck, None).await;
        crate::trace_storage::save(&f.store, &f.storage, f.org, f.call, 1, b"trace".to_vec())
            .await
            .expect("trace");
        let trace_file = base.join(crate::trace_storage::key(f.org, f.call));
        assert!(trace_file.exists());

        let now = switchboard_store::now_ms();
        let sweep = |at: i64, batch| sweep_in_batches(&f.store, &f.storage, DAYS, at, batch);
        // Fresh: nothing goes.
        assert_eq!(sweep(now + DAY_MS, 2).await, Swept::default());
        // Past the traces' two days, not the recordings' seven.
        let swept = sweep(now + 3 * DAY_MS, 2).await;
        assert_eq!(
            swept,
            Swept {
                traces: 1,
                ..Swept::default()
            }
        );
        assert!(!trace_file.exists());
        assert!(
            f.store
                .get_call_trace(f.org, f.call)
                .await
                .expect("read")
                .is_none()
        );
        assert!(paths.iter().all(|p| p.exists()));

        // Past both, two rows per batch: every recording goes but the stuck one.
        let swept = sweep(now + 8 * DAY_MS, 2).await;
        assert_eq!(
            swept,
            Swept {
                recordings: 6,
                traces: 0,
                failed: 1
            }
        );
        assert!(paths.iter().all(|p| !p.exists()));
        let left = f.store.list_recordings(f.call).await.expect("rows");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].path_or_url, stuck.display().to_string());
        // The next sweep tries it again, and ends though nothing can be done.
        assert_eq!(
            sweep(now + 9 * DAY_MS, 2).await,
            Swept {
                failed: 1,
                ..Swept::default()
            }
        );
    }

    #[tokio::test]
    async fn zero_days_keep_files_forever() {
        let f = fixture().await;
        let path = f
            .storage
            .base_dir()
            .join("org-1/recordings/call-1-mixed.wav");
        recording(&f, &path, Some(b"RIFF")).await;
        let forever = Retention {
            recordings_days: 0,
            traces_days: 0,
        };
        let far = switchboard_store::now_ms() + 36_500 * DAY_MS;
        assert_eq!(
            sweep(&f.store, &f.storage, forever, far).await,
            Swept::default()
        );
        assert!(path.exists());
        assert_eq!(
            f.store.list_recordings(f.call).await.expect("rows").len(),
            1
        );
    }
}
