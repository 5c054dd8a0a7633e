//! The call's flight recorder ([`TracedCore`]) kept on disk as the call goes, so a call's memory
//! does not grow with its length: about 28 KB per call-second held in memory until the call
//! ended (caller audio, one event per 20 ms frame, a decision per mark), measured at 300 calls
//! with recording on.
//!
//! The call task drains its trace every second of caller audio ([`DRAIN_AUDIO_BYTES`], or
//! [`DRAIN_EVENTS`] events, whichever first) and hands the slice to this call's spool task
//! through a bounded queue ([`QUEUE_SLICES`]); the task appends it, on the process's spool
//! thread ([`super::spool_thread`]), to three files under `<recordings.base_dir>/.traces/`:
//! `call-<id>.events` and `call-<id>.decisions` (JSON lines) and `call-<id>.audio` (raw µ-law).
//! When the call ends the rest of the trace joins what was spooled, off the call path; the whole
//! trace is encoded and stored as before ([`Trace::to_bytes`]) and the files are removed once
//! the trace's row is written (a crash before that leaves them to the next start).
//! Owner-only files (0600): the trace holds the caller's voice.
//!
//! Traces are put back together and compressed one at a time ([`FINISHING`]; the upload and
//! the row that follow are not in turn): calls that end
//! together (a 200-call soak of 10-minute calls ending within 20 s) would otherwise read back,
//! encode and compress their traces at once, taking the cores and the database pool from the
//! calls still live (measured: 27 of 200 calls lost a turn, 885 MiB peak). Waiting traces stay
//! on disk.
//!
//! A spool that falls behind (the queue full: the disk is slower than the calls) or fails
//! costs the call its trace, never the call: the call task stops tracing and the files are
//! removed. A fourth file, `call-<id>.head`, holds what the trace starts with (the call's
//! settings, its organisation), so that a crash leaves a spool that can be finished: the next
//! start stores it as a truncated trace ([`super::trace_recovery`]); [`remove_stale`] deletes
//! whatever is left of spools nobody appends to.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use switchboard_core::call::CallSettings;
use switchboard_core::call::trace::{SpooledSlices, TRACE_FORMAT_VERSION, Trace, TraceSlice};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::recording::{create_private_dir_all, create_private_file};
use super::trace_recovery::SpoolHead;
use crate::state::AppState;
use crate::trace_storage;

/// Folder of the spools, under `recordings.base_dir`.
pub const TRACE_DIR: &str = ".traces";
/// Caller audio after which the call task drains its trace, bytes (1 s of 8 kHz µ-law).
pub const DRAIN_AUDIO_BYTES: usize = 8_000;
/// Events after which the call task drains its trace whatever the audio (a burst of STT or
/// LLM events).
pub const DRAIN_EVENTS: usize = 512;
/// Slices queued for the spool task at most (about this many seconds of the call).
pub const QUEUE_SLICES: usize = 16;
/// Spool files not written for this long belong to no live call (a live one is appended to
/// every second) and are removed at start.
pub const STALE_AFTER: Duration = Duration::from_secs(600);

/// Traces being put back together, encoded and stored at once, per process.
static FINISHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Why a spool could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A spool file could not be created, written, read or removed.
    #[error("call trace spool {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A slice or the whole trace could not be encoded.
    #[error("call trace encoding: {0}")]
    Encode(String),
    /// The spool's blocking write panicked, or its reading back was cancelled.
    #[error("call trace spool task: {0}")]
    Task(String),
}

/// The three files of one call's spool, open for appending. Unbuffered: each batch of slices
/// is serialised in memory and written with one call per file, so a live call holds three file
/// descriptors and no buffers between batches (three 8 KiB `BufWriter`s held for the call's
/// life were a tenth of its memory).
#[derive(Debug)]
struct SpoolFiles {
    paths: [PathBuf; 4],
    events: File,
    decisions: File,
    audio: File,
}

impl SpoolFiles {
    /// Creates the files, the head written whole first.
    fn create(dir: &Path, call_id: i64, head: &[u8]) -> Result<Self, SpoolError> {
        create_private_dir_all(dir).map_err(io_at(dir))?;
        let paths = spool_paths(dir, call_id);
        let open = |p: &PathBuf| create_private_file(p).map_err(io_at(p));
        open(&paths[3])?.write_all(head).map_err(io_at(&paths[3]))?;
        Ok(Self {
            events: open(&paths[0])?,
            decisions: open(&paths[1])?,
            audio: open(&paths[2])?,
            paths,
        })
    }

    /// Appends `slices` in order: their events and decisions as JSON lines, their audio raw.
    fn append(&mut self, slices: &[Box<TraceSlice>]) -> Result<(), SpoolError> {
        let (mut events, mut decisions) = (Vec::new(), Vec::new());
        for slice in slices {
            slice
                .write_json_lines(&mut events, &mut decisions)
                .map_err(|e| SpoolError::Encode(e.to_string()))?;
        }
        self.events
            .write_all(&events)
            .map_err(io_at(&self.paths[0]))?;
        self.decisions
            .write_all(&decisions)
            .map_err(io_at(&self.paths[1]))?;
        // One write per slice: a batch holds one slice unless the disk fell behind.
        for slice in slices {
            self.audio
                .write_all(&slice.caller_audio)
                .map_err(io_at(&self.paths[2]))?;
        }
        Ok(())
    }

    /// `trace` encoded after everything spooled ([`Trace::to_bytes_after`]): the files are
    /// read as they are, not parsed.
    fn encode_with(&self, trace: &Trace) -> Result<Vec<u8>, SpoolError> {
        let [events, decisions, audio, _] = &self.paths;
        let read = |p: &PathBuf| std::fs::read(p).map_err(io_at(p));
        let (events, decisions, caller_audio) = (read(events)?, read(decisions)?, read(audio)?);
        trace
            .to_bytes_after(SpooledSlices {
                events: &events,
                decisions: &decisions,
                caller_audio: &caller_audio,
            })
            .map_err(|e| SpoolError::Encode(e.to_string()))
    }
}

/// Removes a spool's files (those already gone are not an error).
pub(super) fn remove_files(paths: &[PathBuf; 4]) {
    for p in paths {
        if let Err(e) = std::fs::remove_file(p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = ?p, error = %e, "could not remove a call trace spool");
        }
    }
}

/// The spool files of call `call_id` in `dir`: events, decisions, caller audio, head.
pub(super) fn spool_paths(dir: &Path, call_id: i64) -> [PathBuf; 4] {
    ["events", "decisions", "audio", "head"].map(|ext| dir.join(format!("call-{call_id}.{ext}")))
}

pub(super) fn io_at(path: &Path) -> impl Fn(std::io::Error) -> SpoolError + use<> {
    let path = path.to_path_buf();
    move |source| SpoolError::Io {
        path: path.clone(),
        source,
    }
}

/// The call task's end of a call's trace spool.
#[derive(Debug)]
pub struct TraceSpool {
    /// Boxed slices: the queue allocates its slots 32 at a time when the call starts, and a
    /// slot of a pointer rather than of a whole slice keeps that at 256 bytes per call.
    slices: Option<mpsc::Sender<Box<TraceSlice>>>,
    job: JoinHandle<Result<Option<SpoolFiles>, SpoolError>>,
    call_id: i64,
}

impl TraceSpool {
    /// Starts the spool task of organisation `org_id`'s call `call_id`, whose core runs with
    /// `settings` (files are created with the first slice).
    pub fn start(
        state: &AppState,
        org_id: i64,
        call_id: i64,
        settings: &CallSettings,
    ) -> TraceSpool {
        let dir = state.recordings.base_dir().join(TRACE_DIR);
        let (tx, rx) = mpsc::channel(QUEUE_SLICES);
        let head = SpoolHead::encode(org_id, settings);
        let job = state
            .tasks
            .spawn(write_slices(dir, call_id, head, rx).in_current_span());
        TraceSpool {
            slices: Some(tx),
            job,
            call_id,
        }
    }

    /// Hands a drained slice to the spool task; false when it cannot take it (behind, or
    /// failed): the caller then abandons the trace, and the spool is dropped at the end.
    pub fn push(&mut self, slice: TraceSlice) -> bool {
        let Some(tx) = &self.slices else {
            return false;
        };
        if tx.try_send(Box::new(slice)).is_ok() {
            return true;
        }
        tracing::warn!(
            call_id = self.call_id,
            "the call trace's spool fell behind or failed; this call keeps no trace"
        );
        self.slices = None;
        false
    }

    /// The call ended: puts the spooled slices in front of `rest` (what the trace held at
    /// the end; `None` when it was abandoned), stores the whole trace of organisation
    /// `org_id`'s call, and removes the files. Off the call path.
    pub fn finish(self, state: &AppState, org_id: i64, rest: Option<Trace>) {
        let TraceSpool {
            slices,
            job,
            call_id,
        } = self;
        drop(slices);
        let store = state.store.clone();
        let storage = state.recordings.clone();
        let work = async move {
            let files = match job.await {
                Ok(Ok(files)) => files,
                Ok(Err(e)) => {
                    tracing::warn!(call_id, error = %e, "could not spool the call trace");
                    None
                }
                Err(e) => {
                    tracing::warn!(call_id, error = %e, "call trace spool task failed");
                    None
                }
            };
            let Some(trace) = rest else {
                if let Some(f) = files {
                    let _ = tokio::task::spawn_blocking(move || remove_files(&f.paths)).await;
                }
                return;
            };
            // Never closed, so acquiring only waits for the trace before this one. Held while
            // the trace is read back, encoded and compressed (CPU and memory), not while it is
            // uploaded and recorded.
            let turn = FINISHING.acquire().await;
            let blocking = storage.clone();
            let paths = files.as_ref().map(|f| f.paths.clone());
            let compressed = tokio::task::spawn_blocking(move || -> Result<_, String> {
                let encoded = match files {
                    None => trace.to_bytes().map_err(|e| e.to_string()),
                    Some(f) => f.encode_with(&trace).map_err(|e| e.to_string()),
                }?;
                trace_storage::compress(&blocking, org_id, call_id, &encoded)
                    .map_err(|e| e.to_string())
            })
            .await;
            drop(turn);
            // Err((error, the database stayed away)).
            let res = match compressed {
                Ok(Ok(compressed)) => {
                    let version = i64::from(TRACE_FORMAT_VERSION);
                    let patience = crate::store_retry::END_OF_CALL_PATIENCE;
                    trace_storage::publish(&store, &storage, version, compressed, patience)
                        .await
                        .map_err(|e| (e.to_string(), e.is_transient()))
                }
                Ok(Err(e)) => Err((e, false)),
                Err(e) => Err((e.to_string(), false)),
            };
            let database_away = matches!(res, Err((_, true)));
            if let Err((error, _)) = res {
                tracing::warn!(call_id, %error, kept_for_next_start = database_away, "could not store the call trace");
            }
            // Only now: a crash before the row is written, or a database away for longer than
            // `publish` tries, leaves the spool for the next start to store (`trace_recovery`).
            if let Some(paths) = paths.filter(|_| !database_away) {
                let _ = tokio::task::spawn_blocking(move || remove_files(&paths)).await;
            }
        };
        state.tasks.spawn(work.in_current_span());
    }
}

/// Appends each slice the call task sends; the files once the call task is done (`None` when
/// no slice came). On a write error the files are removed and the error returned (the queue
/// closes, so the call task's next push fails and it stops tracing).
async fn write_slices(
    dir: PathBuf,
    call_id: i64,
    mut head: Vec<u8>,
    mut slices: mpsc::Receiver<Box<TraceSlice>>,
) -> Result<Option<SpoolFiles>, SpoolError> {
    let mut files: Option<SpoolFiles> = None;
    let mut batch = Vec::with_capacity(QUEUE_SLICES);
    while slices.recv_many(&mut batch, QUEUE_SLICES).await > 0 {
        let work = std::mem::take(&mut batch);
        let dir = dir.clone();
        let held = files.take();
        // Only the first batch creates the files and needs the head.
        let head = std::mem::take(&mut head);
        let (written, work) = super::spool_thread::run(move || {
            let result = (|| {
                let mut f = match held {
                    Some(f) => f,
                    None => SpoolFiles::create(&dir, call_id, &head)?,
                };
                f.append(&work)?;
                Ok::<_, SpoolError>(f)
            })();
            if result.is_err() {
                remove_files(&spool_paths(&dir, call_id));
            }
            (result, work)
        })
        .await
        .map_err(|e| SpoolError::Task(e.to_string()))?;
        files = Some(written?);
        batch = work;
        batch.clear();
    }
    Ok(files)
}

/// Removes the spool files under `base_dir` that nobody has written to for [`STALE_AFTER`]
/// (left by a process that died mid-call; a live call's are appended to every second).
/// Returns how many were removed.
pub fn remove_stale(base_dir: &Path) -> usize {
    let dir = base_dir.join(TRACE_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let stale = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age >= STALE_AFTER))
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        // A head is written once, when the call starts: a live call's is as fresh as the
        // events appended beside it.
        let live_head = path.extension().is_some_and(|e| e == "head")
            && !stale(&path.with_extension("events"))
            && path.with_extension("events").exists();
        if stale(&path) && !live_head && std::fs::remove_file(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::call::trace::{Decision, TraceEvent, TracedEvent};

    fn slice(start_ms: u64, audio: u8) -> TraceSlice {
        TraceSlice {
            events: vec![
                TracedEvent {
                    at_ms: start_ms,
                    event: TraceEvent::CallerAudio { bytes: 160 },
                },
                TracedEvent {
                    at_ms: start_ms + 20,
                    event: TraceEvent::CallerAudio { bytes: 160 },
                },
            ],
            decisions: vec![Decision {
                at_ms: start_ms + 20,
                frames_before: 3,
                action: "SendMark { name: \"m\" }".into(),
            }],
            caller_audio: vec![audio; 320],
        }
    }

    #[tokio::test]
    async fn spooled_slices_encode_with_the_rest_as_the_whole_trace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = mpsc::channel(QUEUE_SLICES);
        let head = SpoolHead::encode(3, &CallSettings::default());
        let job = tokio::spawn(write_slices(dir.path().to_path_buf(), 7, head, rx));
        let (a, b) = (slice(0, 1), slice(40, 2));
        tx.send(Box::new(a.clone())).await.expect("send");
        tx.send(Box::new(b.clone())).await.expect("send");
        drop(tx);
        let files = job.await.expect("task").expect("written").expect("files");
        let paths = files.paths.clone();
        assert!(paths.iter().all(|p| p.starts_with(dir.path())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths[2])
                .expect("audio")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "the caller's voice is the owner's only"
            );
        }
        // The rest of the trace stayed in memory; encoded after the spool, it is the whole.
        let empty = |events, decisions, caller_audio| Trace {
            version: TRACE_FORMAT_VERSION,
            settings: CallSettings::default(),
            events,
            decisions,
            trailing_frames: 0,
            truncated: false,
            caller_audio,
        };
        let c = slice(80, 3);
        let rest = empty(
            c.events.clone(),
            c.decisions.clone(),
            c.caller_audio.clone(),
        );
        let whole = empty(
            [a.events, b.events, c.events].concat(),
            [a.decisions, b.decisions, c.decisions].concat(),
            [a.caller_audio, b.caller_audio, c.caller_audio].concat(),
        );
        let encoded = files.encode_with(&rest).expect("encode");
        assert_eq!(encoded, whole.to_bytes().expect("encode"));
        assert_eq!(Trace::from_bytes(&encoded).expect("decode"), whole);
        remove_files(&paths);
        assert!(paths.iter().all(|p| !p.exists()));
    }

    #[tokio::test]
    async fn a_spool_that_cannot_write_closes_its_queue_and_leaves_no_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where the spool's folder should be: nothing can be created under it.
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, b"x").expect("file");
        let (tx, rx) = mpsc::channel(QUEUE_SLICES);
        let job = tokio::spawn(write_slices(blocked.join(TRACE_DIR), 9, Vec::new(), rx));
        tx.send(Box::new(slice(0, 1))).await.expect("send");
        let err = job.await.expect("task").expect_err("cannot write");
        assert!(matches!(err, SpoolError::Io { .. }), "{err}");
        assert!(
            tx.try_send(Box::new(slice(40, 2))).is_err(),
            "the queue is closed"
        );
    }

    #[test]
    fn only_spools_nobody_writes_to_are_removed_at_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let traces = dir.path().join(TRACE_DIR);
        std::fs::create_dir_all(&traces).expect("dir");
        let old = traces.join("call-1.audio");
        let live = traces.join("call-2.audio");
        // A long call's head, written when it started, beside events it still appends.
        let live_head = traces.join("call-2.head");
        let live_events = traces.join("call-2.events");
        let old_head = traces.join("call-1.head");
        for p in [&old, &live, &live_head, &live_events, &old_head] {
            std::fs::write(p, b"a").expect("file");
        }
        let long_ago = SystemTime::now() - STALE_AFTER - Duration::from_secs(60);
        for p in [&old, &old_head, &live_head] {
            File::options()
                .write(true)
                .open(p)
                .expect("open")
                .set_modified(long_ago)
                .expect("mtime");
        }
        assert_eq!(remove_stale(dir.path()), 2);
        assert!(!old.exists() && !old_head.exists());
        assert!(live.exists(), "a live call's spool stays");
        assert!(live_head.exists(), "with its head");
        assert_eq!(remove_stale(&dir.path().join("nowhere")), 0);
    }
}
