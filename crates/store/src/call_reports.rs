//! What operators read across an organisation's calls (totals per status for `calls/stats`,
//! light per-call rows for `calls/analytics`) and their one edit of a call record (metadata).
//! Every query is scoped by organisation like the rest of the call store.

use serde_json::{Map, Value};
use sqlx::Row;

use crate::calls::json_text;
use crate::{CallRow, CallStatus, EndedReason, Store, StoreError, get_json, now_ms};

/// Calls of one status: how many, and their durations (for averages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusTotal {
    /// The status.
    pub status: CallStatus,
    /// Calls with this status.
    pub calls: i64,
    /// Sum of the known durations, seconds.
    pub duration_sum_s: i64,
    /// Calls whose duration is known.
    pub duration_n: i64,
}

/// One call, reduced to what time-series analytics need.
#[derive(Debug, Clone, PartialEq)]
pub struct CallActivity {
    /// Call start, unix ms.
    pub started_at_ms: i64,
    /// Latest status.
    pub status: CallStatus,
    /// Duration, seconds, when known.
    pub duration_s: Option<i64>,
    /// The assistant that took it.
    pub assistant_id: Option<i64>,
    /// Why it ended.
    pub ended_reason: Option<EndedReason>,
}

/// One turn's latency timeline, reduced to what latency trends need: ms since its call's
/// start (as [`crate::TurnMetricRow`]), `None` for stages the turn did not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TurnTiming {
    /// Its call's start, unix ms (turns are counted in the bucket of their call's start).
    pub call_started_at_ms: i64,
    /// The caller stopped speaking.
    pub user_speech_end_ms: Option<i64>,
    /// The last speech-to-text final of the turn arrived.
    pub stt_final_ms: Option<i64>,
    /// The LLM request was sent.
    pub llm_request_ms: Option<i64>,
    /// The LLM's first token arrived.
    pub llm_first_token_ms: Option<i64>,
    /// The TTS's first audio arrived.
    pub tts_first_byte_ms: Option<i64>,
    /// The reply's first audio frame was sent.
    pub first_audio_sent_ms: Option<i64>,
}

impl Store {
    /// The turn timings of the organisation's calls started in `[from_ms, to_ms)`, oldest
    /// call first, at most `limit` turns (the newest are dropped past it).
    pub async fn turn_timings(
        &self,
        org_id: i64,
        from_ms: i64,
        to_ms: i64,
        limit: i64,
    ) -> Result<Vec<TurnTiming>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.started_at, t.user_speech_end_ms, t.stt_final_ms, t.llm_request_ms, \
             t.llm_first_token_ms, t.tts_first_byte_ms, t.first_audio_sent_ms \
             FROM calls c JOIN turn_metrics t ON t.call_id = c.id \
             WHERE c.organization_id = $1 AND c.started_at >= $2 AND c.started_at < $3 \
             ORDER BY c.started_at, c.id, t.turn_index, t.id LIMIT $4",
        )
        .bind(org_id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TurnTiming {
                    call_started_at_ms: r.try_get("started_at")?,
                    user_speech_end_ms: r.try_get("user_speech_end_ms")?,
                    stt_final_ms: r.try_get("stt_final_ms")?,
                    llm_request_ms: r.try_get("llm_request_ms")?,
                    llm_first_token_ms: r.try_get("llm_first_token_ms")?,
                    tts_first_byte_ms: r.try_get("tts_first_byte_ms")?,
                    first_audio_sent_ms: r.try_get("first_audio_sent_ms")?,
                })
            })
            .collect()
    }

    /// Per status, the organisation's calls started at or after `from_ms` (all calls when
    /// `None`), with their summed durations.
    pub async fn call_status_totals(
        &self,
        org_id: i64,
        from_ms: Option<i64>,
    ) -> Result<Vec<StatusTotal>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n, CAST(COALESCE(SUM(duration_s), 0) AS BIGINT) AS dur_sum, \
             COUNT(duration_s) AS dur_n FROM calls \
             WHERE organization_id = $1 AND ($2 IS NULL OR started_at >= $2) \
             GROUP BY status ORDER BY status",
        )
        .bind(org_id)
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StatusTotal {
                    status: CallStatus::from_stored(&r.try_get::<String, _>("status")?),
                    calls: r.try_get("n")?,
                    duration_sum_s: r.try_get("dur_sum")?,
                    duration_n: r.try_get("dur_n")?,
                })
            })
            .collect()
    }

    /// The organisation's calls started at or after `from_ms`, oldest first, at most `limit`
    /// of them (the newest are dropped past it).
    pub async fn call_activity(
        &self,
        org_id: i64,
        from_ms: i64,
        limit: i64,
    ) -> Result<Vec<CallActivity>, StoreError> {
        let rows = sqlx::query(
            "SELECT started_at, status, duration_s, assistant_id, ended_reason FROM calls \
             WHERE organization_id = $1 AND started_at >= $2 ORDER BY started_at, id LIMIT $3",
        )
        .bind(org_id)
        .bind(from_ms)
        .bind(limit.max(0))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CallActivity {
                    started_at_ms: r.try_get("started_at")?,
                    status: CallStatus::from_stored(&r.try_get::<String, _>("status")?),
                    duration_s: r.try_get("duration_s")?,
                    assistant_id: r.try_get("assistant_id")?,
                    ended_reason: r
                        .try_get::<Option<String>, _>("ended_reason")?
                        .map(|s| EndedReason::from_stored(&s)),
                })
            })
            .collect()
    }

    /// Merges `patch` into the metadata of the organisation's call `call_id`: each key of
    /// `patch` replaces the stored one, a `null` value removes it. Atomic against concurrent
    /// merges (compare-and-swap on the stored text, retried). `NotFound` when the
    /// organisation has no such call.
    pub async fn merge_call_metadata(
        &self,
        org_id: i64,
        call_id: i64,
        patch: &Map<String, Value>,
    ) -> Result<CallRow, StoreError> {
        /// Attempts before giving up on a metadata field that keeps changing under us.
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let row =
                sqlx::query("SELECT metadata FROM calls WHERE id = $1 AND organization_id = $2")
                    .bind(call_id)
                    .bind(org_id)
                    .fetch_optional(&self.pool)
                    .await?
                    .ok_or(StoreError::NotFound)?;
            let stored_text: String = row.try_get("metadata")?;
            let mut merged = match get_json(&row, "metadata")? {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            for (k, v) in patch {
                if v.is_null() {
                    merged.remove(k);
                } else {
                    merged.insert(k.clone(), v.clone());
                }
            }
            let res = sqlx::query(
                "UPDATE calls SET metadata = $1, updated_at = $2 WHERE id = $3 \
                 AND organization_id = $4 AND metadata = $5",
            )
            .bind(json_text(&Value::Object(merged))?)
            .bind(now_ms())
            .bind(call_id)
            .bind(org_id)
            .bind(stored_text)
            .execute(&self.pool)
            .await?;
            if res.rows_affected() == 1 {
                return self
                    .get_call(org_id, call_id)
                    .await?
                    .ok_or(StoreError::NotFound);
            }
        }
        Err(StoreError::Conflict(
            "the call's metadata kept changing; try again".into(),
        ))
    }
}
