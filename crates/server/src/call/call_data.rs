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
//! answered once their rows are in. It holds at most [`MAX_HELD_ROWS`]; rows arriving beyond
//! that are dropped and counted (`switchboard_call_data_dropped_rows_total`), so an outage
//! costs bounded memory. Before, a failed batch went row by row at once, each row waiting out
//! the pool's acquire timeout, and every row of the outage was lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_store::{CallData, CallDataRow, Store, StoreError};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::metrics::names;

/// Most rows stored in one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer lets rows gather after a write. Rows are read back by the API and
/// reports, never by a live call, and a call that waits for its rows cuts it short.
const GATHER: Duration = Duration::from_millis(100);
/// Rows held at most while the database is away: with rows of a few hundred bytes, tens of
/// MB; at 1000 calls, a minute or two of conversation.
pub const MAX_HELD_ROWS: usize = 100_000;
/// The first wait before trying the database again; it doubles up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between tries while the database is away.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

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
    /// Starts the writer task on `store` (call within a tokio runtime), holding at most
    /// [`MAX_HELD_ROWS`] while the database is away. It runs until every sink and this handle
    /// are dropped and what it holds is stored.
    pub fn start(store: Store) -> Self {
        Self::start_holding(store, MAX_HELD_ROWS)
    }

    /// [`CallDataWriter::start`] holding at most `max_held_rows` while the database is away.
    pub fn start_holding(store: Store, max_held_rows: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hurry = Arc::new(Notify::new());
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            store,
            held: VecDeque::new(),
            max_held: max_held_rows,
            taken: 0,
            settled: 0,
            flushes: VecDeque::new(),
            dropped: dropped.clone(),
        };
        tokio::spawn(run(writer, rx, hurry.clone()));
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
}

impl Writer {
    fn idle(&self) -> bool {
        self.held.is_empty() && self.flushes.is_empty()
    }

    fn take(&mut self, entry: Queued) {
        match entry {
            Queued::Row(_) if self.held.len() >= self.max_held => self.give_up(1),
            Queued::Row(row) => {
                self.held.push_back(row);
                self.taken += 1;
            }
            Queued::Flush(done) => self.flushes.push_back((self.taken, done)),
        }
    }

    fn give_up(&self, rows: usize) {
        let rows = rows as u64;
        self.dropped.fetch_add(rows, Ordering::Relaxed);
        ::metrics::counter!(names::CALL_DATA_DROPPED).increment(rows);
    }

    /// The first `rows` held rows are stored or given up.
    fn settle(&mut self, rows: usize) {
        self.held.drain(..rows);
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

    /// Stores every held row, [`MAX_BATCH`] to a transaction, or stops at the first failure
    /// that says the database is away (the rows from there on stay held).
    async fn store_held(&mut self) -> Result<(), StoreError> {
        self.settle(0);
        while !self.held.is_empty() {
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
        Ok(())
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
        let stored = writer.store_held().await;
        ::metrics::gauge!(names::CALL_DATA_HELD).set(writer.held.len() as f64);
        match stored {
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
                        held_rows = writer.held.len(),
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

    #[tokio::test]
    async fn rows_of_several_calls_are_stored_in_order_before_the_flush_answers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.expect("store");
        store.migrate().await.expect("migrate");
        let org = store.ensure_organization("acme").await.expect("org").id;
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
