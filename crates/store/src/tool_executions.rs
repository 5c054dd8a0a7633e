//! Tool executions: every tool the LLM ran during a call (built-in or custom), with its
//! arguments, its result (capped at [`MAX_TOOL_RESULT_BYTES`]), how it ended
//! ([`ToolExecutionStatus`]), when it started and how long it ran. Listed by
//! `GET /api/v1/calls/{id}/tool-executions` and in the end-of-call webhook.
//!
//! Every row carries its organisation and every query is keyed by it: an insert for a call of
//! another organisation writes nothing ([`StoreError::NotFound`]), a read returns nothing.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::call_data::AnyQuery;
use crate::{Store, StoreError, get_bool, non_negative, now_ms};

/// Most bytes of a tool's result kept (4 KiB); the rest is dropped on a character boundary and
/// the row says `result_truncated`. The LLM saw the whole result; the record is for reading.
pub const MAX_TOOL_RESULT_BYTES: usize = 4096;

/// How a tool execution ended. Stored and serialised lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolExecutionStatus {
    /// `ok`: the tool ran and gave a result.
    Ok,
    /// `error`: refused, failed, or gave an error result (HTTP error, malformed response, bad
    /// arguments, unknown tool…).
    Error,
    /// `timeout`: no answer within the tool's timeout.
    Timeout,
    /// `cancelled`: stopped before it finished (a barge-in, the reply or the call ended).
    Cancelled,
    /// A status this version does not know, read from the database (never written by it).
    Unknown,
}

impl ToolExecutionStatus {
    /// Every status this version writes.
    pub const KNOWN: [ToolExecutionStatus; 4] = [
        ToolExecutionStatus::Ok,
        ToolExecutionStatus::Error,
        ToolExecutionStatus::Timeout,
        ToolExecutionStatus::Cancelled,
    ];

    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolExecutionStatus::Ok => "ok",
            ToolExecutionStatus::Error => "error",
            ToolExecutionStatus::Timeout => "timeout",
            ToolExecutionStatus::Cancelled => "cancelled",
            ToolExecutionStatus::Unknown => "unknown",
        }
    }

    /// The status read from a stored string; an unknown one is [`ToolExecutionStatus::Unknown`].
    pub fn from_stored(s: &str) -> ToolExecutionStatus {
        ToolExecutionStatus::KNOWN
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(ToolExecutionStatus::Unknown)
    }
}

impl std::fmt::Display for ToolExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ToolExecutionStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ToolExecutionStatus {
    /// Read as stored: an unknown spelling is [`ToolExecutionStatus::Unknown`].
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ToolExecutionStatus::from_stored(&s))
    }
}

/// One tool execution to store (see [`Store::add_tool_execution`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewToolExecution {
    /// The LLM's id of the call (`call_…`), which its `tool` message answers.
    pub tool_call_id: String,
    /// The tool's name as the LLM called it.
    pub tool_name: String,
    /// The arguments: the LLM's JSON, or its raw text as a JSON string when it was not JSON.
    pub arguments: Value,
    /// The result the LLM got, at most [`MAX_TOOL_RESULT_BYTES`]; `None` when there was none
    /// (cancelled).
    pub result: Option<String>,
    /// The result was longer and was cut.
    pub result_truncated: bool,
    /// How it ended.
    pub status: ToolExecutionStatus,
    /// What went wrong, for `error` and `timeout`.
    pub error: Option<String>,
    /// When it started, unix ms.
    pub started_at_ms: i64,
    /// How long it ran, ms.
    pub duration_ms: i64,
}

impl NewToolExecution {
    /// A row for the call `tool_call_id` of `tool_name` with `arguments` as the LLM sent them
    /// (JSON text); `result` is capped here. Set `status`, `error` and the timing after.
    pub fn new(
        tool_call_id: &str,
        tool_name: &str,
        arguments: &str,
        result: Option<&str>,
    ) -> NewToolExecution {
        let arguments =
            serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()));
        let mut row = NewToolExecution {
            tool_call_id: tool_call_id.to_owned(),
            tool_name: tool_name.to_owned(),
            arguments,
            result: None,
            result_truncated: false,
            status: ToolExecutionStatus::Ok,
            error: None,
            started_at_ms: 0,
            duration_ms: 0,
        };
        row.set_result(result);
        row
    }

    /// Replaces the result (capped here), e.g. once a warm transfer the tool started is over.
    pub fn set_result(&mut self, result: Option<&str>) {
        (self.result, self.result_truncated) = match result {
            Some(r) => {
                let (kept, cut) = cap_bytes(r, MAX_TOOL_RESULT_BYTES);
                (Some(kept.to_owned()), cut)
            }
            None => (None, false),
        };
    }
}

/// A stored tool execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolExecutionRow {
    /// Database id.
    pub id: i64,
    /// The organisation of the call.
    pub organization_id: i64,
    /// The call it ran in.
    pub call_id: i64,
    /// The LLM's id of the call.
    pub tool_call_id: String,
    /// The tool's name.
    pub tool_name: String,
    /// The arguments (JSON).
    pub arguments: Value,
    /// The result, capped at [`MAX_TOOL_RESULT_BYTES`].
    pub result: Option<String>,
    /// The result was cut.
    pub result_truncated: bool,
    /// How it ended.
    pub status: ToolExecutionStatus,
    /// What went wrong.
    pub error: Option<String>,
    /// When it started, unix ms.
    pub started_at_ms: i64,
    /// How long it ran, ms.
    pub duration_ms: i64,
    /// When the row was written, unix ms.
    pub created_at_ms: i64,
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary, and
/// whether anything was cut.
fn cap_bytes(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text.get(..end).unwrap_or(""), true)
}

/// PostgreSQL text cannot hold NUL: a tool endpoint's answer may. Replaced on both backends
/// so they store the same thing.
fn no_nul(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

const COLUMNS: &str = "id, organization_id, call_id, tool_call_id, tool_name, arguments, result, \
     result_truncated, status, error, started_at, duration_ms, created_at";

fn from_row(row: &AnyRow) -> Result<ToolExecutionRow, StoreError> {
    let arguments: String = row.try_get("arguments")?;
    Ok(ToolExecutionRow {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        call_id: row.try_get("call_id")?,
        tool_call_id: row.try_get("tool_call_id")?,
        tool_name: row.try_get("tool_name")?,
        arguments: serde_json::from_str(&arguments)?,
        result: row.try_get("result")?,
        result_truncated: get_bool(row, "result_truncated")?,
        status: ToolExecutionStatus::from_stored(&row.try_get::<String, _>("status")?),
        error: row.try_get("error")?,
        started_at_ms: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores one execution of a tool in the organisation's call `call_id`; returns its id.
    /// [`StoreError::NotFound`] when the call is not the organisation's (nothing is written).
    pub async fn add_tool_execution(
        &self,
        org_id: i64,
        call_id: i64,
        e: &NewToolExecution,
    ) -> Result<i64, StoreError> {
        let row = insert_tool_execution(org_id, call_id, e)?
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(row.try_get("id")?),
            None => Err(StoreError::NotFound),
        }
    }

    /// A page of the tool executions of the organisation's call `call_id`, in the order they
    /// started; empty for another organisation's call.
    pub async fn list_tool_executions(
        &self,
        org_id: i64,
        call_id: i64,
        skip: i64,
        limit: i64,
    ) -> Result<Vec<ToolExecutionRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tool_executions WHERE organization_id = $1 AND call_id = $2 \
             ORDER BY started_at, id LIMIT $3 OFFSET $4"
        )))
        .bind(org_id)
        .bind(call_id)
        .bind(non_negative(limit))
        .bind(non_negative(skip))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// How many tool executions the organisation's call `call_id` has (0 for another
    /// organisation's call).
    pub async fn count_tool_executions(
        &self,
        org_id: i64,
        call_id: i64,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tool_executions WHERE organization_id = $1 AND call_id = $2",
        )
        .bind(org_id)
        .bind(call_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}

/// `INSERT` of one tool execution of the organisation's call, `RETURNING id` (no row: not its
/// call).
pub(crate) fn insert_tool_execution(
    org_id: i64,
    call_id: i64,
    e: &NewToolExecution,
) -> Result<AnyQuery<'static>, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO tool_executions (organization_id, call_id, tool_call_id, tool_name, \
         arguments, result, result_truncated, status, error, started_at, duration_ms, \
         created_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 \
         WHERE EXISTS (SELECT 1 FROM calls WHERE id = $2 AND organization_id = $1) \
         RETURNING id",
    )
    .bind(org_id)
    .bind(call_id)
    .bind(no_nul(&e.tool_call_id).into_owned())
    .bind(no_nul(&e.tool_name).into_owned())
    .bind(serde_json::to_string(&e.arguments)?)
    .bind(e.result.as_deref().map(|r| no_nul(r).into_owned()))
    .bind(e.result_truncated)
    .bind(e.status.as_str())
    .bind(e.error.as_deref().map(|r| no_nul(r).into_owned()))
    .bind(e.started_at_ms)
    .bind(e.duration_ms)
    .bind(now_ms()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_capped_on_a_character_boundary() {
        let long = "é".repeat(MAX_TOOL_RESULT_BYTES); // 2 bytes each
        let e = NewToolExecution::new("c1", "t", "{}", Some(&long));
        let kept = e.result.unwrap_or_default();
        assert!(e.result_truncated);
        assert_eq!(kept.len(), MAX_TOOL_RESULT_BYTES);
        let short = NewToolExecution::new("c1", "t", "{}", Some("fine"));
        assert_eq!(short.result.as_deref(), Some("fine"));
        assert!(!short.result_truncated);
        let odd = "a".to_owned() + &"é".repeat(MAX_TOOL_RESULT_BYTES);
        let (kept, cut) = cap_bytes(&odd, MAX_TOOL_RESULT_BYTES);
        assert!(cut);
        assert_eq!(kept.len(), MAX_TOOL_RESULT_BYTES - 1);
    }

    #[test]
    fn arguments_that_are_not_json_are_kept_as_text() {
        let e = NewToolExecution::new("c1", "t", "{\"day\": \"mon\"}", None);
        assert_eq!(e.arguments, serde_json::json!({"day": "mon"}));
        let bad = NewToolExecution::new("c1", "t", "{day", None);
        assert_eq!(bad.arguments, Value::String("{day".to_owned()));
    }

    #[test]
    fn statuses_round_trip() {
        for s in ToolExecutionStatus::KNOWN {
            assert_eq!(ToolExecutionStatus::from_stored(s.as_str()), s);
        }
        assert_eq!(
            ToolExecutionStatus::from_stored("weird"),
            ToolExecutionStatus::Unknown
        );
    }
}
