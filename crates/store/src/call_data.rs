//! Live calls' rows written together. The server's call-data writer hands over everything its
//! calls queued since its last write (the rows of many calls; the end of a call brings its last
//! transcripts, turn metrics, tool executions and metrics at once) and they are stored in one
//! transaction: one pool connection and one commit instead of one of each per row or per call.

use serde_json::Value;

use crate::calls::{insert_transcript, insert_turn_metric, update_call_metrics};
use crate::tool_executions::insert_tool_execution;
use crate::{NewToolExecution, NewTranscript, NewTurnMetric, Store, StoreError};

/// A query of the `Any` driver with its arguments bound.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// One row a live call produces. Payloads are boxed so the value stays two words: a call's
/// channel of them allocates its slots in blocks.
#[derive(Debug, Clone)]
pub enum CallData {
    /// A final transcript segment ([`Store::add_transcript`]).
    Transcript(Box<NewTranscript>),
    /// One turn's latency timeline ([`Store::add_turn_metric`]).
    TurnMetric(Box<NewTurnMetric>),
    /// The call's end-of-call metrics ([`Store::set_call_metrics`]).
    Metrics(Box<Value>),
    /// One tool execution ([`Store::add_tool_execution`]).
    ToolExecution(Box<NewToolExecution>),
}

/// A [`CallData`] row and the call it belongs to.
#[derive(Debug, Clone)]
pub struct CallDataRow {
    /// The organisation owning the call.
    pub org_id: i64,
    /// The call.
    pub call_id: i64,
    /// The row.
    pub data: CallData,
}

impl Store {
    /// Stores `rows` (of any calls) in one transaction, in order. Rows that name a call that is
    /// not their organisation's (metrics, tool executions) are skipped; returns how many were.
    /// On error nothing of `rows` is stored.
    pub async fn record_call_data(&self, rows: &[CallDataRow]) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut skipped = 0;
        for row in rows {
            let (org_id, call_id) = (row.org_id, row.call_id);
            let query = match &row.data {
                CallData::Transcript(t) => insert_transcript(call_id, t),
                CallData::TurnMetric(m) => insert_turn_metric(call_id, m)?,
                CallData::Metrics(m) => update_call_metrics(org_id, call_id, m)?,
                CallData::ToolExecution(e) => insert_tool_execution(org_id, call_id, e)?,
            };
            if query.execute(&mut *tx).await?.rows_affected() == 0 {
                skipped += 1;
            }
        }
        tx.commit().await?;
        Ok(skipped)
    }
}
