//! Every live call's rows (transcripts, turn metrics, tool executions, end-of-call metrics)
//! written by one task per process, off the call tasks.
//!
//! Why one task for all calls: with a task per call, each turn of each call was a transaction
//! of its own (a pool connection, a commit; on SQLite a trip to its worker thread per
//! statement and a WAL append per commit). A profile of 300 recorded calls
//! (`perf record --call-graph dwarf` on the engine) had 11.5 % of the engine's samples on the
//! SQLite worker thread. One writer takes everything queued since its last write, from all
//! calls, and stores it in one transaction; at rest a row is written at once, and after each
//! write the writer lets [`GATHER`] pass (cut short by a call that waits for its rows) so that
//! under load one write takes every row of that time: transcripts and turn metrics then go in
//! as a few multi-row inserts (`Store::record_call_data`). It also holds one pool connection at
//! a time, leaving the others to the webhooks.
//!
//! Rows of one call stay in order (one queue). A call that ends asks for a [`CallDataSink::flushed`]
//! marker and waits for it, so the end-of-call webhook finds its rows stored. A batch that the
//! database refuses is retried row by row: one bad row does not cost the others.
//!
//! When the database is away (a broken connection, no connection in time, a locked SQLite
//! file: [`StoreError::is_transient`]) nothing is given up: the writer holds the rows, keeps
//! taking new ones, and tries again after a wait that doubles from 250 ms to 5 s; flushes are
//! answered once their rows are in. With a spill folder ([`CallDataOptions::spill_dir`], the
//! default) the rows it holds go to a file there (`call::call_data_spill`) and at most
//! [`MAX_HELD_ROWS`] stay in memory, read back in order as they are stored: an outage costs
//! disk, up to [`CallDataOptions::spill_max_bytes`], and a crash during it loses nothing (the
//! next start adopts the file). Rows beyond the limit (the memory one without a folder, or a
//! file that cannot be created) are dropped and counted (`switchboard_call_data_dropped_rows_total`).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_store::{CallData, CallDataRow, Store, StoreError};
use tokio::sync::{Notify, mpsc, oneshot};

use super::call_data_spill::{self, SpillFile, SpillLine};
use crate::metrics::names;

/// Most rows stored in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer lets rows gather after a write. Rows are read back by the API and
/// reports, never by a live call, and a call that waits for its rows cuts it short.
const GATHER: Duration = Duration::from_millis(100);
/// Rows held in memory at most while the database is away: with rows of a few hundred bytes,
/// tens of MB; at 1000 calls, a minute or two of conversation. With a spill file, the window
/// of its rows kept in memory.
pub const MAX_HELD_ROWS: usize = 100_000;
/// The first wait before trying the database again; it doubles up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between tries while the database is away; also between attempts to create
/// a spill file after one failed.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);
/// Encoded rows kept at most while appending to the spill file fails (a full disk).
const MAX_UNSPILLED_BYTES: usize = 16 << 20;

/// How the writer holds rows while the database is away.
#[derive(Debug, Clone)]
pub struct CallDataOptions {
    /// Rows kept in memory at most (without a spill folder, all it holds).
    pub max_held_rows: usize,
    /// Folder of the spill files; `None` holds rows in memory only.
    pub spill_dir: Option<PathBuf>,
    /// Largest spill file (bytes); rows beyond it are dropped and counted.
    pub spill_max_bytes: u64,
}

impl Default for CallDataOptions {
    fn default() -> Self {
        CallDataOptions {
            max_held_rows: MAX_HELD_ROWS,
            spill_dir: None,
            spill_max_bytes: 1 << 30,
        }
    }
}

enum Queued {
    Row(CallDataRow),
    /// Answered once every row queued before it is written (or given up).
    Flush(oneshot::Sender<()>),
}

/// The process's call-data writer: hands out a [`CallDataSink`] per call.
#[derive(Debug, Clone)]
pub struct CallDataWriter {
    tx: mpsc::UnboundedSender<Queued>,
    hurry: Arc<Notify>,
    dropped: Arc<AtomicU64>,
}

impl CallDataWriter {
    /// Starts the writer task on `store` (call within a tokio runtime), holding rows in memory
    /// only. It runs until every sink and this handle are dropped and what it holds is stored.
    pub fn start(store: Store) -> Self {
        Self::start_with(store, CallDataOptions::default())
    }

    /// [`CallDataWriter::start`] with `options`. With a spill folder, each spill file there
    /// that no live process holds (a crash's) is adopted and its rows stored, by a task of its
    /// own.
    pub fn start_with(store: Store, options: CallDataOptions) -> Self {
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = |spill: Option<SpillFile>| Writer {
            store: store.clone(),
            held: VecDeque::new(),
            max_held: options.max_held_rows.max(1),
            taken: 0,
            settled: 0,
            flushes: VecDeque::new(),
            dropped: dropped.clone(),
            spill,
            spill_dir: None,
            spill_max_bytes: options.spill_max_bytes,
            spill_retry_at: None,
            held_ends: VecDeque::new(),
            unspilled: Vec::new(),
            main: false,
        };
        if let Some(dir) = &options.spill_dir {
            for path in SpillFile::leftovers(dir) {
                match SpillFile::adopt(&path) {
                    Ok(Some(file)) => {
                        tracing::warn!(path = %path.display(), "storing the call data a crash left in a spill file");
                        let (tx, rx) = mpsc::unbounded_channel();
                        drop(tx);
                        tokio::spawn(run(writer(Some(file)), rx, Arc::new(Notify::new())));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "could not adopt a call-data spill file");
                    }
                }
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let hurry = Arc::new(Notify::new());
        let mut main = writer(None);
        main.spill_dir = options.spill_dir;
        main.main = true;
        tokio::spawn(run(main, rx, hurry.clone()));
        CallDataWriter { tx, hurry, dropped }
    }

    /// The sink of the organisation's call `call_id`.
    pub fn for_call(&self, org_id: i64, call_id: i64) -> CallDataSink {
        CallDataSink {
            org_id,
            call_id,
            tx: self.tx.clone(),
            hurry: self.hurry.clone(),
        }
    }

    /// Rows given up since the start (refused by the database, or over the limit held while
    /// it was away); the same count as `switchboard_call_data_dropped_rows_total`.
    pub fn dropped_rows(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where one call's rows go. Cheap to clone (tool tasks hold one).
#[derive(Debug, Clone)]
pub struct CallDataSink {
    org_id: i64,
    call_id: i64,
    tx: mpsc::UnboundedSender<Queued>,
    /// Ends the writer's gathering pause early.
    hurry: Arc<Notify>,
}

impl CallDataSink {
    /// Queues `data` to be stored, without waiting.
    pub fn send(&self, data: CallData) {
        let _ = self.tx.send(Queued::Row(CallDataRow {
            org_id: self.org_id,
            call_id: self.call_id,
            data,
        }));
    }

    /// [`CallDataSink::flushed`], waiting at most `patience`; false when the rows are still
    /// waiting (the database away): they stay held and are stored once it is back.
    pub async fn flushed_within(&self, patience: Duration) -> bool {
        tokio::time::timeout(patience, self.flushed()).await.is_ok()
    }

    /// Waits until every row sent before this call is stored (or given up on).
    pub async fn flushed(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).is_ok() {
            self.hurry.notify_one();
            let _ = written.await;
        }
    }
}

/// The writer task's state: the rows taken and not yet stored, and the flushes waiting on them.
///
/// Rows waiting, in order: `held` (in memory), then with a spill file the lines of the file not
/// yet read back, then `unspilled` (encoded, not yet appended). File I/O is done on the task
/// itself: it happens only while the database is away, and is appends and reads of the page
/// cache, one of each per pass.
struct Writer {
    store: Store,
    held: VecDeque<CallDataRow>,
    max_held: usize,
    /// Rows taken so far: a flush waits until this many are settled.
    taken: u64,
    /// Rows stored or given up so far.
    settled: u64,
    /// Each waiting flush with the number of rows taken before it.
    flushes: VecDeque<(u64, oneshot::Sender<()>)>,
    dropped: Arc<AtomicU64>,
    /// The spill file, while rows wait there.
    spill: Option<SpillFile>,
    /// Where a spill file is created; `None` for memory only (and for an adopted file's task).
    spill_dir: Option<PathBuf>,
    spill_max_bytes: u64,
    /// After a spill file could not be made: not before this instant again.
    spill_retry_at: Option<Instant>,
    /// With a spill file: for each held row, the file offset just after its line.
    held_ends: VecDeque<u64>,
    /// Rows taken while spilling, encoded, not yet appended.
    unspilled: Vec<u8>,
    /// The process's writer (reports the held gauge), not an adopted file's.
    main: bool,
}

impl Writer {
    /// Rows taken and not yet settled (an adopted file's task takes none: its held rows).
    fn waiting(&self) -> u64 {
        self.taken
            .saturating_sub(self.settled)
            .max(self.held.len() as u64)
    }

    fn idle(&self) -> bool {
        self.held.is_empty() && self.flushes.is_empty() && self.spill.is_none()
    }

    fn take(&mut self, entry: Queued) {
        let row = match entry {
            Queued::Flush(done) => return self.flushes.push_back((self.taken, done)),
            Queued::Row(row) => row,
        };
        if self.spill.is_none() && self.held.len() >= self.max_held {
            self.start_spill();
        }
        if let Some(spill) = &self.spill {
            let before = self.unspilled.len();
            call_data_spill::encode(&row, &mut self.unspilled);
            let over = spill.bytes() + self.unspilled.len() as u64 > self.spill_max_bytes;
            if over || self.unspilled.len() > MAX_UNSPILLED_BYTES {
                self.unspilled.truncate(before);
                return self.give_up(1);
            }
        } else if self.held.len() >= self.max_held {
            return self.give_up(1);
        } else {
            self.held.push_back(row);
        }
        self.taken += 1;
    }

    /// Moves every held row to a new spill file (when a folder is set and none is open),
    /// keeping them in memory as the file's first window.
    fn start_spill(&mut self) {
        let Some(dir) = &self.spill_dir else { return };
        let now = Instant::now();
        if self.spill.is_some() || self.spill_retry_at.is_some_and(|at| now < at) {
            return;
        }
        let mut spill = match SpillFile::create(dir) {
            Ok(spill) => spill,
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "could not create a call-data spill file; holding rows in memory");
                self.spill_retry_at = Some(now + MAX_RETRY_WAIT);
                return;
            }
        };
        let mut lines = Vec::new();
        let mut ends = VecDeque::with_capacity(self.held.len());
        for row in &self.held {
            call_data_spill::encode(row, &mut lines);
            ends.push_back(spill.bytes() + lines.len() as u64);
        }
        if let Err(e) = spill.append(&lines) {
            tracing::error!(error = %e, "could not write the call-data spill file; holding rows in memory");
            self.spill_retry_at = Some(now + MAX_RETRY_WAIT);
            let _ = spill.remove();
            return;
        }
        // Every held row is in the file, and in memory as its first window.
        spill.mark_read();
        tracing::warn!(path = %spill.path().display(), rows = self.held.len(), "the call data held goes to a spill file until the database is back");
        self.held_ends = ends;
        self.spill = Some(spill);
    }

    /// Appends the rows taken while spilling, and tops the memory window up from the file.
    fn sync_spill(&mut self) {
        let Some(spill) = &mut self.spill else { return };
        if !self.unspilled.is_empty() {
            match spill.append(&self.unspilled) {
                Ok(()) => self.unspilled.clear(),
                // Kept, counted in the file's limit, and tried again on the next pass.
                Err(e) => {
                    tracing::error!(error = %e, "could not append to the call-data spill file")
                }
            }
        }
        if self.held.len() * 2 > self.max_held || !spill.unread() {
            return;
        }
        let lines = match spill.read(self.max_held - self.held.len()) {
            Ok(lines) => lines,
            Err(e) => {
                tracing::error!(error = %e, "could not read the call-data spill file");
                return;
            }
        };
        for line in lines {
            match line {
                SpillLine::Row(row, end) => {
                    self.held.push_back(*row);
                    self.held_ends.push_back(end);
                }
                SpillLine::Unreadable(end) => {
                    tracing::warn!(path = %spill.path().display(), "an unreadable line of a call-data spill file was given up");
                    count_dropped(&self.dropped, 1);
                    self.settled += 1;
                    // Committed past it with the row before it, or at once when there is none.
                    match self.held_ends.back_mut() {
                        Some(last) => *last = end,
                        None => {
                            let _ = spill.commit(end);
                        }
                    }
                }
            }
        }
    }

    /// Removes the spill file once every row it held is stored.
    fn end_spill(&mut self) {
        let done = self.spill.as_ref().is_some_and(|s| !s.unread())
            && self.held.is_empty()
            && self.unspilled.is_empty();
        if !done {
            return;
        }
        if let Some(spill) = self.spill.take() {
            let path = spill.path().to_owned();
            match spill.remove() {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "every row of the call-data spill file is stored; removed")
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "could not remove a stored call-data spill file")
                }
            }
        }
        self.held_ends.clear();
    }

    fn give_up(&self, rows: usize) {
        count_dropped(&self.dropped, rows);
    }

    /// The first `rows` held rows are stored or given up.
    fn settle(&mut self, rows: usize) {
        self.held.drain(..rows);
        let end = rows
            .checked_sub(1)
            .and_then(|i| self.held_ends.get(i).copied());
        if let (Some(spill), Some(end)) = (&self.spill, end) {
            if let Err(e) = spill.commit(end) {
                tracing::error!(error = %e, "could not mark call data stored in its spill file");
            }
            self.held_ends.drain(..rows);
        }
        self.settled += rows as u64;
        while self
            .flushes
            .front()
            .is_some_and(|(before, _)| *before <= self.settled)
        {
            if let Some((_, done)) = self.flushes.pop_front() {
                let _ = done.send(());
            }
        }
    }

    /// Stores every row waiting, [`MAX_BATCH`] to a transaction, or stops at the first failure
    /// that says the database is away (the rows from there on stay held, and go to a spill
    /// file if there is a folder for one).
    async fn store_held(&mut self) -> Result<(), StoreError> {
        let stored = self.store_all().await;
        if stored.is_err() {
            self.start_spill();
        }
        self.end_spill();
        if self.main {
            ::metrics::gauge!(names::CALL_DATA_HELD).set(self.waiting() as f64);
        }
        stored
    }

    async fn store_all(&mut self) -> Result<(), StoreError> {
        loop {
            self.sync_spill();
            self.settle(0);
            if self.held.is_empty() {
                return Ok(());
            }
            let n = self.held.len().min(MAX_BATCH);
            let batch = &self.held.make_contiguous()[..n];
            match Box::pin(self.store.record_call_data(batch)).await {
                Ok(skipped) => {
                    if skipped > 0 {
                        tracing::warn!(skipped, "call data for a call not found was skipped");
                        self.give_up(skipped);
                    }
                    self.settle(n);
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    if n > 1 {
                        tracing::warn!(error = %e, rows = n, "batched call data failed; storing row by row");
                    }
                    Box::pin(self.store_one_by_one(n)).await?;
                }
            }
        }
    }

    /// Stores the first `n` held rows one at a time, giving up on each the database refuses.
    async fn store_one_by_one(&mut self, n: usize) -> Result<(), StoreError> {
        for _ in 0..n {
            let Some(row) = self.held.front() else {
                break;
            };
            match Box::pin(self.store.record_call_data(std::slice::from_ref(row))).await {
                Ok(skipped) => self.give_up(skipped),
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(call_id = row.call_id, error = %e, "could not record call data");
                    self.give_up(1);
                }
            }
            self.settle(1);
        }
        Ok(())
    }
}

/// Counts `rows` given up, in `dropped` and the metric.
fn count_dropped(dropped: &AtomicU64, rows: usize) {
    let rows = rows as u64;
    dropped.fetch_add(rows, Ordering::Relaxed);
    ::metrics::counter!(names::CALL_DATA_DROPPED).increment(rows);
}

async fn run(mut writer: Writer, mut rx: mpsc::UnboundedReceiver<Queued>, hurry: Arc<Notify>) {
    let mut queued = Vec::new();
    let mut retry_wait = FIRST_RETRY_WAIT;
    let mut away_since: Option<Instant> = None;
    let mut open = true;
    loop {
        if writer.idle() {
            if !open || rx.recv_many(&mut queued, MAX_BATCH).await == 0 {
                return;
            }
            queued.drain(..).for_each(|e| writer.take(e));
        }
        while let Ok(entry) = rx.try_recv() {
            writer.take(entry);
        }
        match writer.store_held().await {
            Ok(()) => {
                if let Some(since) = away_since.take() {
                    tracing::info!(
                        away_ms = since.elapsed().as_millis() as u64,
                        dropped_rows = writer.dropped.load(Ordering::Relaxed),
                        "the database is back; the call data held meanwhile is stored"
                    );
                }
                retry_wait = FIRST_RETRY_WAIT;
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = hurry.notified() => {}
                }
            }
            Err(e) => {
                if away_since.is_none() {
                    away_since = Some(Instant::now());
                    tracing::error!(
                        error = %e,
                        held_rows = writer.waiting(),
                        "the database is away; holding call data and trying again"
                    );
                }
                // Wait before the next try, taking what calls send meanwhile.
                let wait = tokio::time::sleep(retry_wait);
                tokio::pin!(wait);
                loop {
                    if !open {
                        (&mut wait).await;
                        break;
                    }
                    tokio::select! {
                        () = &mut wait => break,
                        n = rx.recv_many(&mut queued, MAX_BATCH) => {
                            open = n > 0;
                            queued.drain(..).for_each(|e| writer.take(e));
                            writer.sync_spill();
                        }
                    }
                }
                retry_wait = (retry_wait * 2).min(MAX_RETRY_WAIT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_store::{NewCall, NewTranscript};

    fn line(text: &str) -> CallData {
        CallData::Transcript(Box::new(NewTranscript {
            role: "user".into(),
            content: text.into(),
            start_ms: 0,
            end_ms: 500,
            confidence: None,
            is_final: true,
            interrupted: false,
        }))
    }

    async fn texts(store: &Store, call_id: i64) -> Vec<String> {
        let rows = store.list_transcripts(call_id).await.expect("transcripts");
        rows.into_iter().map(|t| t.content).collect()
    }

    /// A migrated SQLite store in `dir` with an organisation; its id.
    async fn sqlite(dir: &std::path::Path) -> (Store, i64) {
        let url = format!("sqlite://{}", dir.join("t.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrate");
        let org = store.ensure_organization("acme").await.expect("org").id;
        (store, org)
    }

    async fn one_call(store: &Store, org: i64) -> i64 {
        let call = NewCall {
            organization_id: org,
            call_sid: "CAone".into(),
            direction: "inbound".into(),
            ..NewCall::default()
        };
        store.create_call(&call).await.expect("call").id
    }

    #[tokio::test]
    async fn rows_beyond_the_memory_window_go_through_a_spill_file_that_goes_once_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, org) = sqlite(dir.path()).await;
        let call = one_call(&store, org).await;
        let spill_dir = dir.path().join("spill");
        let options = CallDataOptions {
            max_held_rows: 1,
            spill_dir: Some(spill_dir.clone()),
            ..CallDataOptions::default()
        };
        let writer = CallDataWriter::start_with(store.clone(), options);
        let sink = writer.for_call(org, call);
        // Queued before the writer runs (one thread): taken in one pass, four beyond memory.
        let sent = ["1", "2", "3", "4", "5"];
        sent.iter().for_each(|t| sink.send(line(t)));
        sink.flushed().await;
        assert_eq!(texts(&store, call).await, sent);
        assert_eq!(writer.dropped_rows(), 0);
        assert!(spill_dir.is_dir(), "the rows went through a file there");
        assert!(
            SpillFile::leftovers(&spill_dir).is_empty(),
            "removed once its rows are stored"
        );
    }

    #[tokio::test]
    async fn rows_beyond_the_spill_files_limit_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, org) = sqlite(dir.path()).await;
        let call = one_call(&store, org).await;
        let mut one_line = Vec::new();
        call_data_spill::encode(
            &CallDataRow {
                org_id: org,
                call_id: call,
                data: line("1"),
            },
            &mut one_line,
        );
        let options = CallDataOptions {
            max_held_rows: 1,
            spill_dir: Some(dir.path().join("spill")),
            // The header and two rows.
            spill_max_bytes: call_data_spill::HEADER_LEN + 2 * one_line.len() as u64,
        };
        let writer = CallDataWriter::start_with(store.clone(), options);
        let sink = writer.for_call(org, call);
        ["1", "2", "3", "4", "5"]
            .iter()
            .for_each(|t| sink.send(line(t)));
        sink.flushed().await;
        assert_eq!(texts(&store, call).await, ["1", "2"]);
        assert_eq!(writer.dropped_rows(), 3);
    }

    #[tokio::test]
    async fn without_a_usable_spill_folder_rows_beyond_memory_are_dropped_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, org) = sqlite(dir.path()).await;
        let call = one_call(&store, org).await;
        let not_a_folder = dir.path().join("file");
        std::fs::write(&not_a_folder, b"x").expect("file");
        let options = CallDataOptions {
            max_held_rows: 1,
            spill_dir: Some(not_a_folder.join("spill")),
            ..CallDataOptions::default()
        };
        let writer = CallDataWriter::start_with(store.clone(), options);
        let sink = writer.for_call(org, call);
        ["1", "2", "3"].iter().for_each(|t| sink.send(line(t)));
        sink.flushed().await;
        assert_eq!(texts(&store, call).await, ["1"]);
        assert_eq!(writer.dropped_rows(), 2);
    }

    #[tokio::test]
    async fn rows_of_several_calls_are_stored_in_order_before_the_flush_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, org) = sqlite(dir.path()).await;
        let call = |sid: &str| NewCall {
            organization_id: org,
            call_sid: sid.into(),
            direction: "inbound".into(),
            ..NewCall::default()
        };
        let a = store.create_call(&call("CAa")).await.expect("call").id;
        let b = store.create_call(&call("CAb")).await.expect("call").id;
        let writer = CallDataWriter::start(store.clone());
        let (sa, sb) = (writer.for_call(org, a), writer.for_call(org, b));
        // Queued before the writer runs (one thread): one batch, with a row that cannot be
        // stored (no such call), so the batch fails and its rows go one by one.
        sa.send(line("a1"));
        sb.send(line("b1"));
        writer.for_call(org, a + b + 100).send(line("nowhere"));
        sa.send(line("a2"));
        sa.flushed().await;
        assert_eq!(texts(&store, a).await, ["a1", "a2"]);
        assert_eq!(texts(&store, b).await, ["b1"]);
        // And a batch that goes through whole.
        sb.send(line("b2"));
        sb.flushed().await;
        assert_eq!(texts(&store, b).await, ["b1", "b2"]);
    }
}
