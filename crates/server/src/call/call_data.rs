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
//! marker and waits for it, so the end-of-call webhook finds its rows stored. A batch that fails
//! is retried row by row: one bad row does not cost the others.

use std::sync::Arc;
use std::time::Duration;

use switchboard_store::{CallData, CallDataRow, Store};
use tokio::sync::{Notify, mpsc, oneshot};

/// Most queue entries taken into one transaction.
const MAX_BATCH: usize = 256;
/// How long the writer lets rows gather after a write. Rows are read back by the API and
/// reports, never by a live call, and a call that waits for its rows cuts it short.
const GATHER: Duration = Duration::from_millis(100);

enum Queued {
    Row(CallDataRow),
    /// Answered once every row queued before it is written (or failed for good).
    Flush(oneshot::Sender<()>),
}

/// The process's call-data writer: hands out a [`CallDataSink`] per call.
#[derive(Debug, Clone)]
pub struct CallDataWriter {
    tx: mpsc::UnboundedSender<Queued>,
    hurry: Arc<Notify>,
}

impl CallDataWriter {
    /// Starts the writer task on `store` (call within a tokio runtime). It runs until every
    /// sink and this handle are dropped.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let hurry = Arc::new(Notify::new());
        tokio::spawn(run(store, rx, hurry.clone()));
        CallDataWriter { tx, hurry }
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

    /// Waits until every row sent before this call is stored (or given up on).
    pub async fn flushed(&self) {
        let (done, written) = oneshot::channel();
        if self.tx.send(Queued::Flush(done)).is_ok() {
            self.hurry.notify_one();
            let _ = written.await;
        }
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Queued>, hurry: Arc<Notify>) {
    let mut queued = Vec::new();
    let mut rows = Vec::new();
    let mut flushes = Vec::new();
    while rx.recv_many(&mut queued, MAX_BATCH).await > 0 {
        for entry in queued.drain(..) {
            match entry {
                Queued::Row(row) => rows.push(row),
                Queued::Flush(done) => flushes.push(done),
            }
        }
        if !rows.is_empty() {
            write(&store, &rows).await;
            rows.clear();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        tokio::select! {
            () = tokio::time::sleep(GATHER) => {}
            () = hurry.notified() => {}
        }
    }
}

/// Stores `rows` in one transaction, or row by row when that fails.
async fn write(store: &Store, rows: &[CallDataRow]) {
    match Box::pin(store.record_call_data(rows)).await {
        Ok(0) => {}
        Ok(skipped) => {
            tracing::warn!(skipped, "call data for a call not found was skipped")
        }
        Err(e) if rows.len() > 1 => {
            tracing::warn!(error = %e, rows = rows.len(), "batched call data failed; storing row by row");
            for row in rows {
                if let Err(e) = Box::pin(store.record_call_data(std::slice::from_ref(row))).await {
                    tracing::warn!(call_id = row.call_id, error = %e, "could not record call data");
                }
            }
        }
        Err(e) => {
            let call_id = rows.first().map(|r| r.call_id);
            tracing::warn!(?call_id, error = %e, "could not record call data");
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
