//! Where finished call traces (the flight recorder) are kept: DEFLATE-compressed, in the
//! recordings' storage (`[recordings] storage`: a local directory or an S3-compatible bucket),
//! under `org-<organisation id>/call-traces/call-<call id>.trace.deflate`; the `call_traces`
//! row holds the location.
//!
//! Why not in the database (where they were until migration 0014): a recorded call's trace is
//! ~100 KB compressed (caller audio and an event per 20 ms frame), which as base64 TEXT every
//! ending call wrote into the database; on SQLite those writes held the single writer that every
//! call's transcripts and status updates wait on. A file costs one sequential write, and with S3
//! the traces sit beside the recordings they belong to. Like a recording kept on local storage, a
//! trace kept on local storage is read by the instance whose disk has it (several instances share
//! a bucket, or a volume).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use futures::TryStreamExt as _;
use switchboard_store::{MAX_TRACE_BYTES, Store, StoreError, StoredTrace};

use crate::call::recording::{create_private_dir_all, create_private_file};
use crate::recording_storage::{RecordingStorage, StorageError};

/// Why a trace could not be stored or read back.
#[derive(Debug, thiserror::Error)]
pub enum TraceStorageError {
    /// The compressed trace could not be written to its local file.
    #[error("call trace file {path:?}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The recordings' storage refused or failed (`NotFound`: the row's file is gone).
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed, or the stored trace does not decompress.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored trace is larger than any trace the engine writes.
    #[error("the stored call trace is {0} bytes, past the read bound")]
    TooLarge(u64),
    /// A blocking task panicked or was cancelled.
    #[error("call trace task: {0}")]
    Task(String),
}

impl TraceStorageError {
    /// The database was away (the trace may be stored later from its spool).
    pub fn is_transient(&self) -> bool {
        matches!(self, TraceStorageError::Store(e) if e.is_transient())
    }
}

/// The storage key of organisation `org_id`'s call `call_id`'s trace.
pub fn key(org_id: i64, call_id: i64) -> String {
    format!("org-{org_id}/call-traces/call-{call_id}.trace.deflate")
}

/// A trace compressed into its local file, not yet stored or recorded ([`publish`]).
#[derive(Debug)]
pub struct Compressed {
    org_id: i64,
    call_id: i64,
    key: String,
    local: PathBuf,
    /// Size of the trace before compression, bytes.
    size_bytes: u64,
}

/// Compresses the encoded trace (`Trace::to_bytes`) of organisation `org_id`'s call `call_id`
/// into its file under the storage's base folder. Blocking (CPU and disk): run it off the async
/// workers. The trace's bytes can be dropped once this returns.
pub fn compress(
    storage: &RecordingStorage,
    org_id: i64,
    call_id: i64,
    encoded: &[u8],
) -> Result<Compressed, TraceStorageError> {
    let key = key(org_id, call_id);
    let local = storage.base_dir().join(&key);
    compress_to(&local, &part_path(storage.base_dir(), call_id), encoded)?;
    Ok(Compressed {
        org_id,
        call_id,
        key,
        local,
        size_bytes: encoded.len() as u64,
    })
}

/// Hands a compressed trace to the storage (kept in place, or uploaded and the local copy
/// removed) and records its location. Separate from [`compress`] so that an upload's wait does
/// not hold up the next trace's compression. While the database is away the row is tried again
/// for up to `patience` (`store_retry`: 500 ms doubling to 10 s; a finished call gives it
/// [`crate::store_retry::END_OF_CALL_PATIENCE`], the start's recovery none, so a start is never
/// held up). When the row cannot be written the stored file is removed again (the spool, when
/// the caller keeps it, is what a later attempt stores).
pub async fn publish(
    store: &Store,
    storage: &RecordingStorage,
    format_version: i64,
    trace: Compressed,
    patience: std::time::Duration,
) -> Result<(), TraceStorageError> {
    let Compressed {
        org_id,
        call_id,
        key,
        local,
        size_bytes,
    } = trace;
    let location = match storage.store(&local, &key).await {
        Ok(location) => location,
        Err(e) => {
            let _ = tokio::fs::remove_file(&local).await;
            return Err(e.into());
        }
    };
    let row = crate::store_retry::while_database_away("call trace row", patience, || {
        store.save_call_trace_location(org_id, call_id, format_version, size_bytes, &location)
    })
    .await;
    if let Err(e) = row {
        if let Err(removed) = storage.delete(&location).await {
            tracing::warn!(call_id, error = %removed, "could not remove an unrecorded call trace");
        }
        return Err(e.into());
    }
    Ok(())
}

/// [`compress`] (off the async workers) then [`publish`] (one try): stores the encoded trace of
/// organisation `org_id`'s call `call_id`.
pub async fn save(
    store: &Store,
    storage: &RecordingStorage,
    org_id: i64,
    call_id: i64,
    format_version: i64,
    encoded: Vec<u8>,
) -> Result<(), TraceStorageError> {
    let blocking = storage.clone();
    let compressed =
        tokio::task::spawn_blocking(move || compress(&blocking, org_id, call_id, &encoded))
            .await
            .map_err(|e| TraceStorageError::Task(e.to_string()))??;
    publish(
        store,
        storage,
        format_version,
        compressed,
        std::time::Duration::ZERO,
    )
    .await
}

/// The encoded trace of organisation `org_id`'s call `call_id`; `None` when it has none (or
/// no such call). A row whose file is gone is `Storage(NotFound)`.
pub async fn load(
    store: &Store,
    storage: &RecordingStorage,
    org_id: i64,
    call_id: i64,
) -> Result<Option<Vec<u8>>, TraceStorageError> {
    let Some(row) = store.get_call_trace(org_id, call_id).await? else {
        return Ok(None);
    };
    let location = match row.body {
        StoredTrace::Inline(bytes) => return Ok(Some(bytes)),
        StoredTrace::Located(location) => location,
    };
    let opened = storage.open(&location, None).await?;
    // Compressed, a trace is smaller than its inflated bound.
    if opened.total_bytes > MAX_TRACE_BYTES {
        return Err(TraceStorageError::TooLarge(opened.total_bytes));
    }
    let capacity = usize::try_from(opened.total_bytes).unwrap_or(0);
    let compressed = opened
        .body
        .try_fold(Vec::with_capacity(capacity), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .map_err(|source| TraceStorageError::Io {
            path: PathBuf::from(&key(org_id, call_id)),
            source,
        })?;
    let size = row.size_bytes;
    let bytes =
        tokio::task::spawn_blocking(move || switchboard_store::inflate_trace(&compressed, size))
            .await
            .map_err(|e| TraceStorageError::Task(e.to_string()))??;
    Ok(Some(bytes))
}

/// Where call `call_id`'s trace is compressed before it is renamed into place: in the spool
/// folder (`<base>/.traces/`), whose files nobody has written to for ten minutes are removed at
/// start, so a crash mid-compression leaves nothing that is never collected. Call ids are unique
/// across organisations; the folder is on the same file system as the final name.
fn part_path(base_dir: &Path, call_id: i64) -> PathBuf {
    base_dir
        .join(crate::call::trace_spool::TRACE_DIR)
        .join(format!("call-{call_id}.trace.deflate.part"))
}

/// Compresses `encoded` into `path` (owner-only, parents created): written as `part` and
/// renamed, so a crash never leaves a truncated trace under the final name.
fn compress_to(path: &Path, part: &Path, encoded: &[u8]) -> Result<(), TraceStorageError> {
    let io = |source| TraceStorageError::Io {
        path: path.to_path_buf(),
        source,
    };
    for dir in [path.parent(), part.parent()].into_iter().flatten() {
        create_private_dir_all(dir).map_err(io)?;
    }
    let written = (|| {
        let file = create_private_file(part)?;
        // The encoder buffers its output (32 KiB), so the file needs no buffer of its own.
        let mut enc = switchboard_store::deflate_trace_writer(file);
        enc.write_all(encoded)?;
        enc.finish()?;
        std::fs::rename(part, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(part);
    }
    written.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compressed_trace_file_inflates_to_what_was_written_and_leaves_no_part() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join(key(3, 9));
        let part = part_path(dir.path(), 9);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        compress_to(&path, &part, &data).expect("written");
        assert!(!part.exists());
        let compressed = std::fs::read(&path).expect("read");
        assert!(compressed.len() < data.len() / 10, "{}", compressed.len());
        assert_eq!(
            switchboard_store::inflate_trace(&compressed, 0).expect("inflate"),
            data
        );
        let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("call-9.trace.deflate")]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_compression_cut_short_by_a_crash_is_swept_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tmp");
        let part = part_path(dir.path(), 11);
        create_private_dir_all(part.parent().expect("dir")).expect("spool dir");
        let file = create_private_file(&part).expect("part");
        let long_ago = std::time::SystemTime::now()
            - crate::call::trace_spool::STALE_AFTER
            - std::time::Duration::from_secs(60);
        file.set_modified(long_ago).expect("mtime");
        drop(file);
        assert_eq!(crate::call::trace_spool::remove_stale(dir.path()), 1);
        assert!(!part.exists());
    }

    #[test]
    fn keys_are_under_the_organisation() {
        assert_eq!(key(7, 42), "org-7/call-traces/call-42.trace.deflate");
    }
}
