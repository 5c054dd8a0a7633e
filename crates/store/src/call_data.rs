//! Live calls' rows written together. The server's call-data writer hands over everything its
//! calls queued since its last write (the rows of many calls; the end of a call brings its last
//! transcripts, turn metrics, tool executions and metrics at once) and they are stored in one
//! transaction: one pool connection and one commit instead of one of each per row or per call.
//! Transcripts and turn metrics, most of the rows, go in as one multi-row `INSERT` per table (up
//! to [`ROWS_PER_INSERT`] rows each): every statement is a round trip to SQLite's worker thread
//! or to the PostgreSQL server, so a batch of 40 rows costs a few trips instead of 40.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::fmt::Write as _;

use crate::calls::{
    TRANSCRIPT_COLUMNS, TURN_METRIC_COLUMNS, bind_transcript, bind_turn_metric, update_call_metrics,
};
use crate::tool_executions::insert_tool_execution;
use crate::{NewToolExecution, NewTranscript, NewTurnMetric, Store, StoreError};

/// A query of the `Any` driver with its arguments bound.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// One row a live call produces. Payloads are boxed so the value stays two words: a call's
/// channel of them allocates its slots in blocks. (De)serialisable so that the server can spill
/// rows to disk while the database is away.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
        let mut transcripts = Vec::new();
        let mut turns = Vec::new();
        // Metrics and tool executions check the call's organisation: one statement each.
        let mut checked = Vec::new();
        for row in rows {
            let (org_id, call_id) = (row.org_id, row.call_id);
            match &row.data {
                CallData::Transcript(t) => transcripts.push((call_id, &**t)),
                CallData::TurnMetric(m) => turns.push((call_id, &**m)),
                CallData::Metrics(m) => checked.push(update_call_metrics(org_id, call_id, m)?),
                CallData::ToolExecution(e) => {
                    checked.push(insert_tool_execution(org_id, call_id, e)?)
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        for chunk in transcripts.chunks(ROWS_PER_INSERT) {
            // Only our own column names and numbered placeholders are formatted in.
            let sql = insert_many("transcripts", TRANSCRIPT_COLUMNS, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for &(call_id, t) in chunk {
                q = bind_transcript(q, call_id, t);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in turns.chunks(ROWS_PER_INSERT) {
            let sql = insert_many("turn_metrics", TURN_METRIC_COLUMNS, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
            for &(call_id, m) in chunk {
                q = bind_turn_metric(q, call_id, m)?;
            }
            q.execute(&mut *tx).await?;
        }
        let mut skipped = 0;
        for query in checked {
            if query.execute(&mut *tx).await?.rows_affected() == 0 {
                skipped += 1;
            }
        }
        tx.commit().await?;
        Ok(skipped)
    }
}

/// Most rows in one multi-row `INSERT`: 64 turn metrics bind 960 values, far under SQLite's
/// and PostgreSQL's limits on a statement's parameters (32 766 and 65 535).
const ROWS_PER_INSERT: usize = 64;

/// `INSERT INTO <table> (<columns>) VALUES (…), …` for `rows` rows.
pub(crate) fn insert_many(table: &str, columns: &str, rows: usize) -> String {
    format!(
        "INSERT INTO {table} ({columns}) VALUES {}",
        placeholders(rows, columns)
    )
}

/// `($1, …, $n), ($n+1, …), …`: the placeholders of `rows` rows of `columns` (a comma-separated
/// list), numbered as both backends of the `Any` driver take them.
pub(crate) fn placeholders(rows: usize, columns: &str) -> String {
    let per_row = columns.split(',').count();
    let mut out = String::with_capacity(rows * per_row * 6);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..per_row {
            let sep = if c == 0 { "" } else { ", " };
            let _ = write!(out, "{sep}${}", r * per_row + c + 1);
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_every_value_of_every_row() {
        assert_eq!(placeholders(1, "a, b, c"), "($1, $2, $3)");
        assert_eq!(placeholders(2, "a,b"), "($1, $2), ($3, $4)");
        assert_eq!(
            insert_many("t", "a, b", 1),
            "INSERT INTO t (a, b) VALUES ($1, $2)"
        );
    }
}
