//! Call records and what hangs off them: transcripts, per-turn metrics, recordings and
//! webhook deliveries; assistant statistics computed from them.

use crate::{
    AssistantStats, CallFilter, CallRow, CallStatus, EndedReason, NewCall, NewRecording,
    NewTranscript, NewTurnMetric, NewWebhookLog, RecordingRow, Store, StoreError, TranscriptRow,
    TurnMetricRow, WebhookLogRow, get_bool, get_json, non_negative, now_ms,
};
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::call_data::{AnyQuery, insert_many, placeholders};
use std::collections::HashMap;
use std::sync::LazyLock;

macro_rules! call_cols {
    () => {
        "id, organization_id, assistant_id, call_sid, direction, from_number, to_number, status, \
         started_at, ended_at, duration_s, ended_reason, metadata, metrics, instance_id, \
         stream_deadline_at, created_at, updated_at"
    };
}

macro_rules! transcript_cols {
    () => {
        "id, call_id, role, content, start_ms, end_ms, confidence, is_final, interrupted, created_at"
    };
}

/// Transcript order: by segment start, then insertion.
macro_rules! transcript_order {
    () => {
        " ORDER BY start_ms, id"
    };
}

macro_rules! metric_cols {
    () => {
        "id, call_id, turn_index, user_speech_end_ms, stt_final_ms, llm_request_ms, \
         llm_first_token_ms, tts_first_byte_ms, first_audio_sent_ms, playback_done_ms, \
         llm_provider, stt_provider, tts_provider, interrupted, extra, created_at"
    };
}

macro_rules! recording_cols {
    () => {
        "id, call_id, kind, format, path_or_url, duration_ms, size_bytes, sample_rate, partial, \
         created_at"
    };
}

macro_rules! webhook_cols {
    () => {
        "id, call_id, event, url, status_code, attempt, success, error, request_body, \
         response_body, duration_ms, created_at"
    };
}

/// The filter of [`Store::list_calls`] and [`Store::count_calls`], binding `$1`..`$10`
/// (`$7`..`$9` are `LIKE` patterns made by [`contains_pattern`]).
macro_rules! call_filter_where {
    () => {
        " WHERE organization_id = $1 \
          AND ($2 IS NULL OR assistant_id = $2) \
          AND ($3 IS NULL OR status = $3) \
          AND ($4 IS NULL OR started_at >= $4) \
          AND ($5 IS NULL OR started_at <= $5) \
          AND ($6 IS NULL OR from_number = $6 OR to_number = $6) \
          AND ($7 IS NULL OR LOWER(call_sid) LIKE $7 ESCAPE '\\') \
          AND ($8 IS NULL OR from_number LIKE $8 ESCAPE '\\' OR to_number LIKE $8 ESCAPE '\\') \
          AND ($9 IS NULL OR assistant_id IN (SELECT id FROM assistants \
               WHERE organization_id = $1 AND LOWER(name) LIKE $9 ESCAPE '\\')) \
          AND ($10 IS NULL OR id < $10)"
    };
}

/// Counts, per assistant, the aggregates behind [`AssistantStats`]. An ended reason is an error
/// when it contains `error` or `fail` (see [`crate::is_error_reason`]).
macro_rules! stats_select {
    () => {
        "SELECT assistant_id, COUNT(*) AS total, \
         CAST(COALESCE(SUM(duration_s), 0) AS BIGINT) AS dur_sum, \
         COUNT(duration_s) AS dur_n, \
         CAST(COALESCE(SUM(CASE WHEN ended_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT) AS ended, \
         CAST(COALESCE(SUM(CASE WHEN ended_at IS NOT NULL AND status = 'completed' \
              AND (ended_reason IS NULL OR (LOWER(ended_reason) NOT LIKE '%error%' \
              AND LOWER(ended_reason) NOT LIKE '%fail%')) THEN 1 ELSE 0 END), 0) AS BIGINT) AS ok \
         FROM calls"
    };
}

fn call_from_row(row: &AnyRow) -> Result<CallRow, StoreError> {
    Ok(CallRow {
        id: row.try_get("id")?,
        organization_id: row.try_get("organization_id")?,
        assistant_id: row.try_get("assistant_id")?,
        call_sid: row.try_get("call_sid")?,
        direction: row.try_get("direction")?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        status: CallStatus::from_stored(&row.try_get::<String, _>("status")?),
        started_at_ms: row.try_get("started_at")?,
        ended_at_ms: row.try_get("ended_at")?,
        duration_s: row.try_get("duration_s")?,
        ended_reason: row
            .try_get::<Option<String>, _>("ended_reason")?
            .map(|r| EndedReason::from_stored(&r)),
        metadata: get_json(row, "metadata")?,
        metrics: get_json(row, "metrics")?,
        instance_id: row.try_get("instance_id")?,
        stream_deadline_at_ms: row.try_get("stream_deadline_at")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
    })
}

fn transcript_from_row(row: &AnyRow) -> Result<TranscriptRow, StoreError> {
    Ok(TranscriptRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        role: row.try_get("role")?,
        content: row.try_get("content")?,
        start_ms: row.try_get("start_ms")?,
        end_ms: row.try_get("end_ms")?,
        confidence: row.try_get("confidence")?,
        is_final: get_bool(row, "is_final")?,
        interrupted: get_bool(row, "interrupted")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn metric_from_row(row: &AnyRow) -> Result<TurnMetricRow, StoreError> {
    Ok(TurnMetricRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        turn_index: row.try_get("turn_index")?,
        user_speech_end_ms: row.try_get("user_speech_end_ms")?,
        stt_final_ms: row.try_get("stt_final_ms")?,
        llm_request_ms: row.try_get("llm_request_ms")?,
        llm_first_token_ms: row.try_get("llm_first_token_ms")?,
        tts_first_byte_ms: row.try_get("tts_first_byte_ms")?,
        first_audio_sent_ms: row.try_get("first_audio_sent_ms")?,
        playback_done_ms: row.try_get("playback_done_ms")?,
        llm_provider: row.try_get("llm_provider")?,
        stt_provider: row.try_get("stt_provider")?,
        tts_provider: row.try_get("tts_provider")?,
        interrupted: get_bool(row, "interrupted")?,
        extra: get_json(row, "extra")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn recording_from_row(row: &AnyRow) -> Result<RecordingRow, StoreError> {
    Ok(RecordingRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        kind: row.try_get("kind")?,
        format: row.try_get("format")?,
        path_or_url: row.try_get("path_or_url")?,
        duration_ms: row.try_get("duration_ms")?,
        size_bytes: row.try_get("size_bytes")?,
        sample_rate: row.try_get("sample_rate")?,
        partial: get_bool(row, "partial")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookLogRow, StoreError> {
    Ok(WebhookLogRow {
        id: row.try_get("id")?,
        call_id: row.try_get("call_id")?,
        event: row.try_get("event")?,
        url: row.try_get("url")?,
        status_code: row.try_get("status_code")?,
        attempt: row.try_get("attempt")?,
        success: get_bool(row, "success")?,
        error: row.try_get("error")?,
        request_body: get_json(row, "request_body")?,
        response_body: row.try_get("response_body")?,
        duration_ms: row.try_get("duration_ms")?,
        created_at_ms: row.try_get("created_at")?,
    })
}

fn stats_from_row(row: &AnyRow) -> Result<AssistantStats, StoreError> {
    let total: i64 = row.try_get("total")?;
    let dur_sum: i64 = row.try_get("dur_sum")?;
    let dur_n: i64 = row.try_get("dur_n")?;
    let ended: i64 = row.try_get("ended")?;
    let ok: i64 = row.try_get("ok")?;
    Ok(AssistantStats {
        total_calls: total,
        avg_call_duration: (dur_n > 0).then(|| (dur_sum as f64 / dur_n as f64).round() as i64),
        success_rate: (ended > 0).then(|| ok as f64 * 100.0 / ended as f64),
    })
}
/// A lower-case `LIKE … ESCAPE` pattern (backslash escapes) matching values that contain
/// `needle` literally (`%`, `_` and backslashes in it are escaped); `None` for no filter or an
/// empty needle. Compared against `LOWER(column)`, so the match ignores case.
pub(crate) fn contains_pattern(needle: Option<&str>) -> Option<String> {
    let needle = needle.map(str::trim).filter(|n| !n.is_empty())?;
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    Some(p)
}

/// JSON `null` becomes `{}` so JSON columns always hold an object or a real value.
pub(crate) fn json_text(v: &Value) -> Result<String, StoreError> {
    if v.is_null() {
        Ok("{}".into())
    } else {
        Ok(serde_json::to_string(v)?)
    }
}

impl Store {
    /// Records a new call, started now. `Conflict` if the call SID exists already (in any
    /// organisation: SIDs are Twilio's, unique across accounts).
    pub async fn create_call(&self, new: &NewCall) -> Result<CallRow, StoreError> {
        let now = now_ms();
        let row = sqlx::query(concat!(
            "INSERT INTO calls (organization_id, assistant_id, call_sid, direction, from_number, \
             to_number, status, started_at, metadata, stream_deadline_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $8, $8) RETURNING ",
            call_cols!()
        ))
        .bind(new.organization_id)
        .bind(new.assistant_id)
        .bind(&new.call_sid)
        .bind(&new.direction)
        .bind(&new.from_number)
        .bind(&new.to_number)
        .bind(new.status.as_str())
        .bind(now)
        .bind(json_text(&new.metadata)?)
        .bind(new.stream_deadline_at_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| StoreError::from_unique(e, "a call with this SID exists"))?;
        call_from_row(&row)
    }

    /// The organisation's call `id`; `None` if missing or another organisation's.
    pub async fn get_call(&self, org_id: i64, id: i64) -> Result<Option<CallRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls WHERE id = $1 AND organization_id = $2"
        ))
        .bind(id)
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The call with this Twilio SID: scoped to `org_id` when given (API requests), any
    /// organisation when `None` (Twilio callbacks, the call runtime).
    pub async fn get_call_by_sid(
        &self,
        org_id: Option<i64>,
        call_sid: &str,
    ) -> Result<Option<CallRow>, StoreError> {
        let row = match org_id {
            Some(org) => {
                sqlx::query(concat!(
                    "SELECT ",
                    call_cols!(),
                    " FROM calls WHERE call_sid = $1 AND organization_id = $2"
                ))
                .bind(call_sid)
                .bind(org)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    call_cols!(),
                    " FROM calls WHERE call_sid = $1"
                ))
                .bind(call_sid)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.as_ref().map(call_from_row).transpose()
    }

    /// Applies a Twilio status callback to the organisation's call `call_sid` (the organisation
    /// whose auth token signed the callback). `duration_s` (Twilio's `CallDuration`) replaces
    /// the stored one when given. On a terminal status the first `ended_at` is set to now, the
    /// duration is computed from start/end if still unknown, and `ended_reason` is filled if
    /// still empty (a reason the runtime recorded via [`Store::finish_call`] wins). A late
    /// non-terminal status never reopens an ended call. `None` when the organisation has no
    /// call with this SID.
    pub async fn update_call_status(
        &self,
        org_id: i64,
        call_sid: &str,
        status: CallStatus,
        duration_s: Option<i64>,
        ended_reason: Option<&EndedReason>,
    ) -> Result<Option<CallRow>, StoreError> {
        let terminal = i64::from(status.is_terminal());
        let row = sqlx::query(concat!(
            "UPDATE calls SET \
             status = CASE WHEN $5 = 0 AND ended_at IS NOT NULL THEN status ELSE $2 END, \
             duration_s = COALESCE($3, duration_s, \
                 CASE WHEN $5 = 1 THEN (COALESCE(ended_at, $6) - started_at) / 1000 END), \
             ended_reason = COALESCE(ended_reason, $4), \
             ended_at = CASE WHEN $5 = 1 THEN COALESCE(ended_at, $6) ELSE ended_at END, \
             updated_at = $6 \
             WHERE call_sid = $1 AND organization_id = $7 RETURNING ",
            call_cols!()
        ))
        .bind(call_sid)
        .bind(status.as_str())
        .bind(duration_s)
        .bind(ended_reason.map(EndedReason::as_str))
        .bind(terminal)
        .bind(now_ms())
        .bind(org_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// Ends the organisation's call `call_sid` from the engine's side (hang-up, error, stream
    /// closed, call refused): sets the status, the ended reason (replacing a generic one from a
    /// status callback), `ended_at` if not set yet, and the duration from start/end if unknown.
    /// `None` when the organisation has no call with this SID: a webhook signed by one
    /// organisation can never end another's call.
    pub async fn finish_call(
        &self,
        org_id: i64,
        call_sid: &str,
        status: CallStatus,
        ended_reason: Option<&EndedReason>,
        ended_at_ms: i64,
    ) -> Result<Option<CallRow>, StoreError> {
        let end = Ending {
            status,
            ended_reason,
            ended_at_ms,
        };
        self.finish_call_if(org_id, call_sid, &end, false).await
    }

    /// [`Store::finish_call`], also saying whether the status changed (the caller then sends
    /// the status webhook). One statement when it did, the usual case for a call the engine
    /// ends; when it did not, the call is still finished (its reason and end written).
    pub async fn finish_call_noting_change(
        &self,
        org_id: i64,
        call_sid: &str,
        status: CallStatus,
        ended_reason: Option<&EndedReason>,
        ended_at_ms: i64,
    ) -> Result<Option<(CallRow, bool)>, StoreError> {
        let end = Ending {
            status,
            ended_reason,
            ended_at_ms,
        };
        if let Some(row) = self.finish_call_if(org_id, call_sid, &end, true).await? {
            return Ok(Some((row, true)));
        }
        let row = self.finish_call_if(org_id, call_sid, &end, false).await?;
        Ok(row.map(|row| (row, false)))
    }

    /// The update of [`Store::finish_call`]; with `only_if_changed`, only when the call's
    /// status is not `end.status` already.
    async fn finish_call_if(
        &self,
        org_id: i64,
        call_sid: &str,
        end: &Ending<'_>,
        only_if_changed: bool,
    ) -> Result<Option<CallRow>, StoreError> {
        macro_rules! finish_sql {
            ($condition:literal) => {
                concat!(
                    "UPDATE calls SET status = $2, \
                     ended_reason = COALESCE($3, ended_reason), \
                     duration_s = COALESCE(duration_s, (COALESCE(ended_at, $4) - started_at) / 1000), \
                     ended_at = COALESCE(ended_at, $4), \
                     stream_deadline_at = NULL, \
                     updated_at = $5 \
                     WHERE call_sid = $1 AND organization_id = $6",
                    $condition,
                    " RETURNING ",
                    call_cols!()
                )
            };
        }
        let sql = if only_if_changed {
            finish_sql!(" AND status <> $2")
        } else {
            finish_sql!("")
        };
        let row = sqlx::query(sql)
            .bind(call_sid)
            .bind(end.status.as_str())
            .bind(end.ended_reason.map(EndedReason::as_str))
            .bind(end.ended_at_ms)
            .bind(now_ms())
            .bind(org_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The voice webhook handed the organisation's open call `call_id` a media stream, which
    /// must start by `deadline_ms` (unix ms) or [`Store::close_calls_without_stream`] closes
    /// the call. Returns false (nothing changed) when the call ended or its stream started
    /// already.
    pub async fn expect_stream(
        &self,
        org_id: i64,
        call_id: i64,
        deadline_ms: i64,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE calls SET stream_deadline_at = $3, updated_at = $4 \
             WHERE id = $1 AND organization_id = $2 AND ended_at IS NULL AND instance_id IS NULL",
        )
        .bind(call_id)
        .bind(org_id)
        .bind(deadline_ms)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Claims the organisation's open call `call_id` for the media stream starting on engine
    /// instance `instance_id`: records the instance and clears the stream deadline, in one
    /// conditional write. False when the call has ended or another stream claimed it first (on
    /// any instance), so one call never runs twice.
    pub async fn claim_call_stream(
        &self,
        org_id: i64,
        call_id: i64,
        instance_id: &str,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE calls SET instance_id = $3, stream_deadline_at = NULL, updated_at = $4 \
             WHERE id = $1 AND organization_id = $2 AND ended_at IS NULL AND instance_id IS NULL",
        )
        .bind(call_id)
        .bind(org_id)
        .bind(instance_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(res.rows_affected() == 1)
    }

    /// Closes, as `failed` / `stream_never_started`, every open call (of any organisation:
    /// this is the engine's own housekeeping, not a tenant's write) whose media stream was
    /// handed out and did not start by its deadline. Returns the closed calls, for their
    /// webhooks.
    pub async fn close_calls_without_stream(
        &self,
        now_ms: i64,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE calls SET status = $1, ended_reason = $2, ended_at = $3, \
             duration_s = COALESCE(duration_s, ($3 - started_at) / 1000), \
             stream_deadline_at = NULL, updated_at = $3 \
             WHERE ended_at IS NULL AND stream_deadline_at IS NOT NULL \
             AND stream_deadline_at <= $3 RETURNING ",
            call_cols!()
        ))
        .bind(CallStatus::Failed.as_str())
        .bind(EndedReason::StreamNeverStarted.as_str())
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Closes, as `failed` / `engine_restart`, the open calls no live process can be carrying:
    /// those whose stream ran on `instance_id` (this instance's configured id, at start, before
    /// it takes calls; `None` skips this rule) and those of any instance that started before
    /// `started_before_ms` (longer ago than any call may last). Any organisation: engine
    /// housekeeping. Returns the closed calls, for their webhooks.
    pub async fn close_abandoned_calls(
        &self,
        instance_id: Option<&str>,
        started_before_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE calls SET status = $1, ended_reason = $2, ended_at = $3, \
             duration_s = COALESCE(duration_s, ($3 - started_at) / 1000), \
             stream_deadline_at = NULL, updated_at = $3 \
             WHERE ended_at IS NULL AND (instance_id = $4 OR started_at < $5) RETURNING ",
            call_cols!()
        ))
        .bind(CallStatus::Failed.as_str())
        .bind(EndedReason::EngineRestart.as_str())
        .bind(now_ms)
        .bind(instance_id)
        .bind(started_before_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Stores the call-level metrics the runtime computes at the end of the organisation's
    /// call `call_id` (a JSON object; replaces any earlier value). `NotFound` when the
    /// organisation has no such call.
    pub async fn set_call_metrics(
        &self,
        org_id: i64,
        call_id: i64,
        metrics: &Value,
    ) -> Result<(), StoreError> {
        let res = update_call_metrics(org_id, call_id, metrics)?
            .execute(&self.pool)
            .await?;
        if res.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// A page of the organisation's calls matching `filter`, newest first.
    pub async fn list_calls(
        &self,
        org_id: i64,
        filter: &CallFilter,
    ) -> Result<Vec<CallRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            call_cols!(),
            " FROM calls",
            call_filter_where!(),
            " ORDER BY id DESC LIMIT $11 OFFSET $12"
        ))
        .bind(org_id)
        .bind(filter.assistant_id)
        .bind(filter.status.map(CallStatus::as_str))
        .bind(filter.from_ms)
        .bind(filter.to_ms)
        .bind(filter.number.as_deref())
        .bind(contains_pattern(filter.call_sid_contains.as_deref()))
        .bind(contains_pattern(filter.number_contains.as_deref()))
        .bind(contains_pattern(filter.assistant_name_contains.as_deref()))
        .bind(filter.before_id)
        .bind(non_negative(filter.limit))
        .bind(non_negative(filter.skip))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(call_from_row).collect()
    }

    /// Number of the organisation's calls matching `filter` (its `skip`/`limit` are ignored).
    pub async fn count_calls(&self, org_id: i64, filter: &CallFilter) -> Result<i64, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT COUNT(*) AS n FROM calls",
            call_filter_where!()
        ))
        .bind(org_id)
        .bind(filter.assistant_id)
        .bind(filter.status.map(CallStatus::as_str))
        .bind(filter.from_ms)
        .bind(filter.to_ms)
        .bind(filter.number.as_deref())
        .bind(contains_pattern(filter.call_sid_contains.as_deref()))
        .bind(contains_pattern(filter.number_contains.as_deref()))
        .bind(contains_pattern(filter.assistant_name_contains.as_deref()))
        .bind(filter.before_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Appends a transcript segment to a call. Keyed by call id alone: the caller must hold the
    /// id of a call it proved is its own (the runtime: the record its stream token names, read
    /// scoped to the token's organisation). Returns the new id.
    pub async fn add_transcript(&self, call_id: i64, t: &NewTranscript) -> Result<i64, StoreError> {
        let row = insert_transcript(call_id, t).fetch_one(&self.pool).await?;
        Ok(row.try_get("id")?)
    }

    /// A call's transcript segments (final and interim), by start time then insertion. The
    /// API must first check the call is the requester's ([`Store::get_call`]).
    pub async fn list_transcripts(&self, call_id: i64) -> Result<Vec<TranscriptRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            transcript_cols!(),
            " FROM transcripts WHERE call_id = $1",
            transcript_order!()
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transcript_from_row).collect()
    }

    /// Stores one turn's latency timeline. Keyed by call id alone, like
    /// [`Store::add_transcript`] (same rule for the id). Returns the new id.
    pub async fn add_turn_metric(
        &self,
        call_id: i64,
        m: &NewTurnMetric,
    ) -> Result<i64, StoreError> {
        let row = insert_turn_metric(call_id, m)?
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("id")?)
    }

    /// A call's turn metrics by turn index, then insertion.
    pub async fn list_turn_metrics(&self, call_id: i64) -> Result<Vec<TurnMetricRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            metric_cols!(),
            " FROM turn_metrics WHERE call_id = $1 ORDER BY turn_index, id"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(metric_from_row).collect()
    }

    /// Records a recording file of a call. Keyed by call id alone, like
    /// [`Store::add_transcript`] (same rule for the id). `path_or_url` stays internal: the API
    /// shows the recording's id and play URL, never where it is stored. Returns the new id.
    pub async fn add_recording(&self, call_id: i64, r: &NewRecording) -> Result<i64, StoreError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES {} RETURNING id",
                placeholders(1, RECORDING_COLUMNS)
            )
        });
        let q = bind_recording(sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())), call_id, r);
        let row = q.fetch_one(&self.pool).await?;
        Ok(row.try_get("id")?)
    }

    /// [`Store::add_recording`] for every file of a call in one statement (an ending call's
    /// user, assistant and mixed tracks: one round trip instead of three), in order.
    pub async fn add_recordings(
        &self,
        call_id: i64,
        files: &[NewRecording],
    ) -> Result<(), StoreError> {
        if files.is_empty() {
            return Ok(());
        }
        // Only our own column names and numbered placeholders are formatted in.
        let sql = insert_many("recordings", RECORDING_COLUMNS, files.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for r in files {
            q = bind_recording(q, call_id, r);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// A call's recordings in insertion order.
    pub async fn list_recordings(&self, call_id: i64) -> Result<Vec<RecordingRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            recording_cols!(),
            " FROM recordings WHERE call_id = $1 ORDER BY id"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recording_from_row).collect()
    }

    /// Recording `recording_id` of call `call_id`, if it belongs to that call. The caller has
    /// already checked that the call is the organisation's (see [`Store::get_call`]).
    pub async fn get_recording(
        &self,
        call_id: i64,
        recording_id: i64,
    ) -> Result<Option<RecordingRow>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            recording_cols!(),
            " FROM recordings WHERE call_id = $1 AND id = $2"
        ))
        .bind(call_id)
        .bind(recording_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// Logs one webhook delivery attempt (about a call, or `None` for other events). Returns
    /// the new id.
    pub async fn add_webhook_log(
        &self,
        call_id: Option<i64>,
        l: &NewWebhookLog,
    ) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "INSERT INTO webhook_logs (call_id, event, url, status_code, attempt, success, error, \
             request_body, response_body, duration_ms, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(call_id)
        .bind(&l.event)
        .bind(&l.url)
        .bind(l.status_code)
        .bind(l.attempt)
        .bind(l.success)
        .bind(l.error.as_deref())
        .bind(json_text(&l.request_body)?)
        .bind(l.response_body.as_deref())
        .bind(l.duration_ms)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("id")?)
    }

    /// A call's webhook delivery attempts in insertion order.
    pub async fn list_webhook_logs(&self, call_id: i64) -> Result<Vec<WebhookLogRow>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            webhook_cols!(),
            " FROM webhook_logs WHERE call_id = $1 ORDER BY id"
        ))
        .bind(call_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Call statistics of the organisation's assistant (zero calls and `None`s if it has no
    /// calls, or is another organisation's).
    pub async fn assistant_stats(
        &self,
        org_id: i64,
        assistant_id: i64,
    ) -> Result<AssistantStats, StoreError> {
        let row = sqlx::query(concat!(
            stats_select!(),
            " WHERE organization_id = $1 AND assistant_id = $2 GROUP BY assistant_id"
        ))
        .bind(org_id)
        .bind(assistant_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => stats_from_row(&row),
            None => Ok(AssistantStats::default()),
        }
    }

    /// Statistics of every assistant of the organisation that has calls, in one query (for
    /// list pages); assistants without calls are absent (use `AssistantStats::default()`).
    pub async fn assistant_stats_all(
        &self,
        org_id: i64,
    ) -> Result<HashMap<i64, AssistantStats>, StoreError> {
        let rows = sqlx::query(concat!(
            stats_select!(),
            " WHERE organization_id = $1 AND assistant_id IS NOT NULL GROUP BY assistant_id"
        ))
        .bind(org_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>("assistant_id")?, stats_from_row(r)?)))
            .collect()
    }

    /// For conversation continuity: the final transcript segments of the most recent ended
    /// call between this assistant and `caller_number` (as caller or callee) that started at
    /// or after `since_ms`; empty if there is none. Scoped to the organisation.
    pub async fn conversation_history(
        &self,
        org_id: i64,
        assistant_id: i64,
        caller_number: &str,
        since_ms: i64,
    ) -> Result<Vec<TranscriptRow>, StoreError> {
        let last = sqlx::query(
            "SELECT id FROM calls WHERE organization_id = $1 AND assistant_id = $2 \
             AND (from_number = $3 OR to_number = $3) AND started_at >= $4 \
             AND ended_at IS NOT NULL ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .bind(org_id)
        .bind(assistant_id)
        .bind(caller_number)
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?;
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let call_id: i64 = last.try_get("id")?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            transcript_cols!(),
            " FROM transcripts WHERE call_id = $1 AND is_final = $2",
            transcript_order!()
        ))
        .bind(call_id)
        .bind(true)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transcript_from_row).collect()
    }

    /// For `disclosure_mode: first_call_only`: whether this assistant already talked with
    /// `caller_number` (as caller or callee) on a call other than `call_id` whose media stream
    /// started. Scoped to the organisation.
    pub async fn has_earlier_call(
        &self,
        org_id: i64,
        assistant_id: i64,
        caller_number: &str,
        call_id: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM calls WHERE organization_id = $1 AND assistant_id = $2 \
             AND (from_number = $3 OR to_number = $3) AND id <> $4 \
             AND instance_id IS NOT NULL LIMIT 1",
        )
        .bind(org_id)
        .bind(assistant_id)
        .bind(caller_number)
        .bind(call_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }
}

/// Columns of a transcript row, in the order [`bind_transcript`] binds them.
pub(crate) const TRANSCRIPT_COLUMNS: &str =
    "call_id, role, content, start_ms, end_ms, confidence, is_final, interrupted, created_at";

/// `INSERT` of one transcript segment, `RETURNING id`.
pub(crate) fn insert_transcript(call_id: i64, t: &NewTranscript) -> AnyQuery<'_> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO transcripts ({TRANSCRIPT_COLUMNS}) VALUES {} RETURNING id",
            placeholders(1, TRANSCRIPT_COLUMNS)
        )
    });
    bind_transcript(sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())), call_id, t)
        // Not cached as a prepared statement: sqlx's Any driver sends a NULL f64 to
        // PostgreSQL typed as float4 and a present one as float8, and a statement prepared
        // with one type rejects the other ("incorrect binary data format").
        .persistent(false)
}

/// Binds one transcript row's [`TRANSCRIPT_COLUMNS`] to `q`.
pub(crate) fn bind_transcript<'q>(
    q: AnyQuery<'q>,
    call_id: i64,
    t: &'q NewTranscript,
) -> AnyQuery<'q> {
    q.bind(call_id)
        .bind(&t.role)
        .bind(&t.content)
        .bind(t.start_ms)
        .bind(t.end_ms)
        .bind(t.confidence)
        .bind(t.is_final)
        .bind(t.interrupted)
        .bind(now_ms())
}

/// How a call ends ([`Store::finish_call`]'s arguments).
struct Ending<'a> {
    status: CallStatus,
    ended_reason: Option<&'a EndedReason>,
    /// Unix ms.
    ended_at_ms: i64,
}

/// Columns of a recording row, in the order [`bind_recording`] binds them.
const RECORDING_COLUMNS: &str = "call_id, kind, format, path_or_url, duration_ms, size_bytes, \
     sample_rate, partial, created_at";

/// Binds one recording row's [`RECORDING_COLUMNS`] to `q`.
fn bind_recording<'q>(q: AnyQuery<'q>, call_id: i64, r: &'q NewRecording) -> AnyQuery<'q> {
    q.bind(call_id)
        .bind(&r.kind)
        .bind(&r.format)
        .bind(&r.path_or_url)
        .bind(r.duration_ms)
        .bind(r.size_bytes)
        .bind(r.sample_rate)
        .bind(r.partial)
        .bind(now_ms())
}

/// Columns of a turn-metric row, in the order [`bind_turn_metric`] binds them.
pub(crate) const TURN_METRIC_COLUMNS: &str = "call_id, turn_index, user_speech_end_ms, \
     stt_final_ms, llm_request_ms, llm_first_token_ms, tts_first_byte_ms, first_audio_sent_ms, \
     playback_done_ms, llm_provider, stt_provider, tts_provider, interrupted, extra, created_at";

/// `INSERT` of one turn's latency timeline, `RETURNING id`.
pub(crate) fn insert_turn_metric(
    call_id: i64,
    m: &NewTurnMetric,
) -> Result<AnyQuery<'_>, StoreError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "INSERT INTO turn_metrics ({TURN_METRIC_COLUMNS}) VALUES {} RETURNING id",
            placeholders(1, TURN_METRIC_COLUMNS)
        )
    });
    bind_turn_metric(sqlx::query(sqlx::AssertSqlSafe(SQL.as_str())), call_id, m)
}

/// Binds one turn-metric row's [`TURN_METRIC_COLUMNS`] to `q`.
pub(crate) fn bind_turn_metric<'q>(
    q: AnyQuery<'q>,
    call_id: i64,
    m: &'q NewTurnMetric,
) -> Result<AnyQuery<'q>, StoreError> {
    Ok(q.bind(call_id)
        .bind(m.turn_index)
        .bind(m.user_speech_end_ms)
        .bind(m.stt_final_ms)
        .bind(m.llm_request_ms)
        .bind(m.llm_first_token_ms)
        .bind(m.tts_first_byte_ms)
        .bind(m.first_audio_sent_ms)
        .bind(m.playback_done_ms)
        .bind(m.llm_provider.as_deref())
        .bind(m.stt_provider.as_deref())
        .bind(m.tts_provider.as_deref())
        .bind(m.interrupted)
        .bind(json_text(&m.extra)?)
        .bind(now_ms()))
}

/// `UPDATE` of the organisation's call's end-of-call metrics (no row: not its call).
pub(crate) fn update_call_metrics(
    org_id: i64,
    call_id: i64,
    metrics: &Value,
) -> Result<AnyQuery<'static>, StoreError> {
    Ok(sqlx::query(
        "UPDATE calls SET metrics = $2, updated_at = $3 WHERE id = $1 AND organization_id = $4",
    )
    .bind(call_id)
    .bind(json_text(metrics)?)
    .bind(now_ms())
    .bind(org_id))
}
