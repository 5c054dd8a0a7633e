//! What operators read and edit across calls, beyond the records themselves (Burki's paths):
//! `GET /api/v1/calls/stats` (totals per status), `GET /api/v1/calls/analytics?period=` (daily
//! series, per assistant, ended reasons, hour of day), `GET /api/v1/calls/export` (CSV or JSON,
//! streamed page by page), `GET /api/v1/calls/{id}/messages` (the conversation as chat
//! messages), `PATCH /api/v1/calls/{id}/metadata` (merge) and
//! `GET /api/v1/calls/{id}/transcripts/export` (txt, json, csv).
//!
//! Literal segments (`stats`, `analytics`, `export`) are routes of their own, so they win over
//! `{call_id}`. Every query is scoped by the caller's organisation.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, body::Bytes};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchboard_store::{CallFilter, CallRow, CallStatus, ms_to_rfc3339, now_ms};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::calls::{
    CallIdPath, CallResponse, ListCallsParams, TranscriptResponse, assistant_names, load_call,
    respond_call,
};
use crate::routes::csv::{CsvRow, attachment};
use crate::state::AppState;

/// Rows read per store query while streaming an export.
const EXPORT_PAGE: i64 = 500;
/// Most calls one analytics answer reads; past it the answer says `truncated`.
const ANALYTICS_MAX_CALLS: i64 = 200_000;
const DAY_MS: i64 = 86_400_000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/calls/stats", get(call_stats))
        .route("/api/v1/calls/analytics", get(call_analytics))
        .route("/api/v1/calls/export", get(export_calls))
        .route("/api/v1/calls/{call_id}/messages", get(call_messages))
        .route("/api/v1/calls/{call_id}/metadata", patch(update_metadata))
        .route(
            "/api/v1/calls/{call_id}/transcripts/export",
            get(export_transcripts),
        )
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        call_stats,
        call_analytics,
        export_calls,
        call_messages,
        update_metadata,
        export_transcripts
    ),
    components(schemas(
        CallStatsResponse,
        CallAnalyticsResponse,
        DailyCalls,
        AssistantCalls,
        ChatMessageResponse,
        UpdateCallMetadataRequest
    ))
)]
pub struct CallReportsApi;

// ---------------------------------------------------------------------------------------------
// Stats and analytics

/// Totals over all of the organisation's calls (Burki's `CallStatsResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallStatsResponse {
    /// Every call.
    pub total_calls: i64,
    /// Calls not over yet (queued, ringing, in progress).
    pub active_calls: i64,
    /// Calls that ended `completed`.
    pub completed_calls: i64,
    /// Calls that ended `failed`, `busy`, `no-answer` or `canceled`.
    pub failed_calls: i64,
    /// Calls per status.
    pub calls_by_status: BTreeMap<String, i64>,
    /// Sum of the known durations, seconds.
    pub total_duration: i64,
    /// Mean known duration, seconds; `null` with none.
    pub average_duration: Option<f64>,
    /// Completed calls as a percentage of ended calls; `null` with none ended.
    pub success_rate: Option<f64>,
    /// Calls started in the last 24 hours.
    pub calls_last_24h: i64,
    /// Calls started in the last 7 days.
    pub calls_last_7d: i64,
}

/// Burki's analysis periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
pub enum Period {
    /// The last day.
    #[serde(rename = "1d")]
    Day,
    /// The last 7 days (default).
    #[serde(rename = "7d")]
    Week,
    /// The last 30 days.
    #[serde(rename = "30d")]
    Month,
    /// The last 90 days.
    #[serde(rename = "90d")]
    Quarter,
}

impl Period {
    fn days(self) -> i64 {
        match self {
            Period::Day => 1,
            Period::Week => 7,
            Period::Month => 30,
            Period::Quarter => 90,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Period::Day => "1d",
            Period::Week => "7d",
            Period::Month => "30d",
            Period::Quarter => "90d",
        }
    }
}

/// Query of `GET /api/v1/calls/analytics`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// `1d`, `7d` (default), `30d` or `90d`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub period: Option<Period>,
}

/// Calls of one UTC day.
#[derive(Debug, Default, Serialize, ToSchema, PartialEq)]
pub struct DailyCalls {
    /// The day, `YYYY-MM-DD` (UTC).
    pub date: String,
    /// Calls started that day.
    pub calls: i64,
    /// Of those, completed.
    pub completed: i64,
    /// Of those, failed, busy, unanswered or canceled.
    pub failed: i64,
    /// Their summed known durations, seconds.
    pub total_duration: i64,
}

/// Calls of one assistant in the period.
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct AssistantCalls {
    /// The assistant; `null` for calls to unrouted numbers.
    pub assistant_id: Option<i64>,
    /// Its name, when it still exists.
    pub assistant_name: Option<String>,
    /// Calls it took.
    pub calls: i64,
    /// Of those, completed.
    pub completed: i64,
    /// Mean known duration, seconds.
    pub average_duration: Option<f64>,
}

/// Trends over a period (Burki's `CallAnalyticsResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallAnalyticsResponse {
    /// The period asked for.
    pub period: String,
    /// Start of the period (RFC 3339).
    pub start_date: String,
    /// End of the period: now (RFC 3339).
    pub end_date: String,
    /// Calls started in the period.
    pub total_calls: i64,
    /// Of those, completed.
    pub completed_calls: i64,
    /// Of those, failed, busy, unanswered or canceled.
    pub failed_calls: i64,
    /// Completed as a percentage of ended; `null` with none ended.
    pub success_rate: Option<f64>,
    /// Mean known duration, seconds.
    pub average_duration: Option<f64>,
    /// Sum of known durations, seconds.
    pub total_duration: i64,
    /// One entry per UTC day of the period, oldest first, days without calls included.
    pub daily: Vec<DailyCalls>,
    /// Per assistant, most calls first.
    pub by_assistant: Vec<AssistantCalls>,
    /// Calls per ended reason.
    pub ended_reasons: BTreeMap<String, i64>,
    /// Calls started per UTC hour of day (24 entries).
    pub hourly_distribution: Vec<i64>,
    /// True when the period held more calls than one answer reads (the newest are left out).
    pub truncated: bool,
}

fn is_failed(status: CallStatus) -> bool {
    status.is_terminal() && status != CallStatus::Completed
}

fn percent(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn mean(sum: i64, n: i64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
}

/// Totals over all of the caller's calls.
#[utoipa::path(
    get,
    path = "/api/v1/calls/stats",
    tag = "calls",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Totals", body = CallStatsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody)
    )
)]
pub async fn call_stats(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<CallStatsResponse>, ApiError> {
    let org = auth.organization_id;
    let totals = state.store.call_status_totals(org, None).await?;
    let now = now_ms();
    let count_since = |from| {
        let f = CallFilter {
            from_ms: Some(from),
            ..CallFilter::default()
        };
        let store = state.store.clone();
        async move { store.count_calls(org, &f).await }
    };
    let last_24h = count_since(now - DAY_MS).await?;
    let last_7d = count_since(now - 7 * DAY_MS).await?;
    let mut r = CallStatsResponse {
        total_calls: 0,
        active_calls: 0,
        completed_calls: 0,
        failed_calls: 0,
        calls_by_status: BTreeMap::new(),
        total_duration: 0,
        average_duration: None,
        success_rate: None,
        calls_last_24h: last_24h,
        calls_last_7d: last_7d,
    };
    let mut dur_n = 0;
    for t in &totals {
        r.total_calls += t.calls;
        *r.calls_by_status
            .entry(t.status.as_str().to_owned())
            .or_default() += t.calls;
        match t.status {
            CallStatus::Completed => r.completed_calls += t.calls,
            s if is_failed(s) => r.failed_calls += t.calls,
            s if !s.is_terminal() && s != CallStatus::Unknown => r.active_calls += t.calls,
            _ => {}
        }
        r.total_duration += t.duration_sum_s;
        dur_n += t.duration_n;
    }
    r.average_duration = mean(r.total_duration, dur_n);
    r.success_rate = percent(r.completed_calls, r.completed_calls + r.failed_calls);
    Ok(Json(r))
}

/// Trends of the caller's calls over a period.
#[utoipa::path(
    get,
    path = "/api/v1/calls/analytics",
    tag = "calls",
    security(("bearer" = [])),
    params(AnalyticsParams),
    responses(
        (status = 200, description = "Trends", body = CallAnalyticsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad period", body = ErrorBody)
    )
)]
pub async fn call_analytics(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<AnalyticsParams>,
) -> Result<Json<CallAnalyticsResponse>, ApiError> {
    let org = auth.organization_id;
    let period = params.period.unwrap_or(Period::Week);
    let now = now_ms();
    // Whole UTC days: today and the `days - 1` before it.
    let first_day = now.div_euclid(DAY_MS) - (period.days() - 1);
    let from = first_day * DAY_MS;
    let rows = state
        .store
        .call_activity(org, from, ANALYTICS_MAX_CALLS + 1)
        .await?;
    let truncated = rows.len() as i64 > ANALYTICS_MAX_CALLS;
    let rows = &rows[..rows.len().min(ANALYTICS_MAX_CALLS as usize)];

    let mut daily: Vec<DailyCalls> = (0..period.days())
        .map(|d| DailyCalls {
            date: ms_to_rfc3339((first_day + d) * DAY_MS)[..10].to_owned(),
            ..DailyCalls::default()
        })
        .collect();
    let mut hourly = vec![0i64; 24];
    let mut reasons = BTreeMap::new();
    // assistant → (calls, completed, duration sum, duration n)
    let mut per_assistant: HashMap<Option<i64>, (i64, i64, i64, i64)> = HashMap::new();
    let (mut completed, mut failed, mut dur_sum, mut dur_n) = (0, 0, 0, 0);
    for c in rows {
        let day = (c.started_at_ms.div_euclid(DAY_MS) - first_day) as usize;
        let hour = (c.started_at_ms.rem_euclid(DAY_MS) / 3_600_000) as usize;
        hourly[hour.min(23)] += 1;
        let done = c.status == CallStatus::Completed;
        let bad = is_failed(c.status);
        completed += i64::from(done);
        failed += i64::from(bad);
        let dur = c.duration_s.unwrap_or(0);
        dur_sum += dur;
        dur_n += i64::from(c.duration_s.is_some());
        if let Some(d) = daily.get_mut(day) {
            d.calls += 1;
            d.completed += i64::from(done);
            d.failed += i64::from(bad);
            d.total_duration += dur;
        }
        if let Some(r) = &c.ended_reason {
            *reasons.entry(r.as_str().to_owned()).or_insert(0) += 1;
        }
        let a = per_assistant.entry(c.assistant_id).or_default();
        a.0 += 1;
        a.1 += i64::from(done);
        a.2 += dur;
        a.3 += i64::from(c.duration_s.is_some());
    }
    let mut by_assistant = Vec::with_capacity(per_assistant.len());
    for (id, (calls, done, sum, n)) in per_assistant {
        let name = match id {
            Some(id) => state.store.get_assistant(org, id).await?.map(|a| a.name),
            None => None,
        };
        by_assistant.push(AssistantCalls {
            assistant_id: id,
            assistant_name: name,
            calls,
            completed: done,
            average_duration: mean(sum, n),
        });
    }
    by_assistant.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then(a.assistant_id.cmp(&b.assistant_id))
    });
    Ok(Json(CallAnalyticsResponse {
        period: period.as_str().to_owned(),
        start_date: ms_to_rfc3339(from),
        end_date: ms_to_rfc3339(now),
        total_calls: rows.len() as i64,
        completed_calls: completed,
        failed_calls: failed,
        success_rate: percent(completed, completed + failed),
        average_duration: mean(dur_sum, dur_n),
        total_duration: dur_sum,
        daily,
        by_assistant,
        ended_reasons: reasons,
        hourly_distribution: hourly,
        truncated,
    }))
}

// ---------------------------------------------------------------------------------------------
// Export

/// `csv` or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values with a header row (the default).
    #[default]
    Csv,
    /// A JSON array of call records.
    Json,
}

/// Query of `GET /api/v1/calls/export` (the filters of `GET /api/v1/calls`, with substring
/// matches where Burki has them).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportCallsParams {
    /// `csv` (default) or `json`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: Option<ExportFormat>,
    /// Only calls with this status.
    #[serde(default)]
    pub status: Option<String>,
    /// Only calls of this assistant.
    #[serde(default)]
    pub assistant_id: Option<i64>,
    /// Only calls from or to a number containing this text.
    #[serde(default)]
    pub customer_phone: Option<String>,
    /// Only calls whose SID contains this text.
    #[serde(default)]
    pub call_sid: Option<String>,
    /// Only calls of assistants whose name contains this text.
    #[serde(default)]
    pub assistant_name: Option<String>,
    /// Only calls started at or after this time (RFC 3339).
    #[serde(default)]
    pub date_from: Option<String>,
    /// Only calls started at or before this time (RFC 3339).
    #[serde(default)]
    pub date_to: Option<String>,
}

const CALL_CSV_HEADER: &[&str] = &[
    "id",
    "call_sid",
    "assistant_id",
    "assistant_name",
    "direction",
    "from_phone_number",
    "to_phone_number",
    "customer_phone_number",
    "status",
    "ended_reason",
    "duration",
    "started_at",
    "ended_at",
    "call_meta",
];

fn call_csv_row(c: &CallResponse, out: &mut Vec<u8>) {
    let mut row = CsvRow::new(out);
    row.num(c.id);
    row.text(&c.call_sid);
    row.opt_num(c.assistant_id);
    row.text(c.assistant_name.as_deref().unwrap_or(""));
    row.text(&c.direction);
    row.text(&c.from_phone_number);
    row.text(&c.to_phone_number);
    row.text(&c.customer_phone_number);
    row.text(&c.status);
    row.text(c.ended_reason.as_deref().unwrap_or(""));
    row.opt_num(c.duration);
    row.text(c.started_at.as_deref().unwrap_or(""));
    row.text(c.ended_at.as_deref().unwrap_or(""));
    row.text(
        &c.call_meta
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
    );
    row.end();
}

/// Export the caller's calls, newest first, as CSV or JSON; streamed page by page.
#[utoipa::path(
    get,
    path = "/api/v1/calls/export",
    tag = "calls",
    security(("bearer" = [])),
    params(ExportCallsParams),
    responses(
        (status = 200, description = "The calls as a file (text/csv or application/json)"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody)
    )
)]
pub async fn export_calls(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ExportCallsParams>,
) -> Result<Response, ApiError> {
    let format = params.format.unwrap_or_default();
    let mut filter = ListCallsParams {
        status: params.status.clone(),
        assistant_id: params.assistant_id,
        date_from: params.date_from.clone(),
        date_to: params.date_to.clone(),
        ..ListCallsParams::default()
    }
    .filter()?;
    filter.number_contains = params.customer_phone.clone();
    filter.call_sid_contains = params.call_sid.clone();
    filter.assistant_name_contains = params.assistant_name.clone();
    filter.limit = EXPORT_PAGE;
    filter.skip = 0;
    let org = auth.organization_id;

    // Pages are read by id (newest first, below the last id sent), so calls that start while
    // the export streams neither repeat nor shift rows.
    let stream = futures::stream::unfold(
        (state, filter, false, true),
        move |(state, mut filter, done, first)| async move {
            if done {
                return None;
            }
            let rows = match state.store.list_calls(org, &filter).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "call export aborted by a store error");
                    return Some((
                        Err(std::io::Error::other("store error")),
                        (state, filter, true, false),
                    ));
                }
            };
            let names = assistant_names(&state, org, &rows)
                .await
                .unwrap_or_default();
            let last = rows.len() < EXPORT_PAGE as usize;
            filter.before_id = rows.last().map(|r: &CallRow| r.id);
            let mut out = Vec::with_capacity(rows.len() * 256 + 64);
            if first {
                match format {
                    ExportFormat::Csv => {
                        let mut row = CsvRow::new(&mut out);
                        for h in CALL_CSV_HEADER {
                            row.text(h);
                        }
                        row.end();
                    }
                    ExportFormat::Json => out.push(b'['),
                }
            }
            for (i, r) in rows.iter().enumerate() {
                let c = CallResponse::new(r, r.assistant_id.and_then(|id| names.get(&id).cloned()));
                match format {
                    ExportFormat::Csv => call_csv_row(&c, &mut out),
                    ExportFormat::Json => {
                        if !(first && i == 0) {
                            out.push(b',');
                        }
                        if serde_json::to_writer(&mut out, &c).is_err() {
                            return Some((
                                Err(std::io::Error::other("encoding")),
                                (state, filter, true, false),
                            ));
                        }
                    }
                }
            }
            if last && format == ExportFormat::Json {
                out.push(b']');
            }
            Some((
                Ok::<_, std::io::Error>(Bytes::from(out)),
                (state, filter, last, false),
            ))
        },
    );
    let (content_type, name) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "calls.csv"),
        ExportFormat::Json => ("application/json", "calls.json"),
    };
    Ok(attachment(content_type, name, Body::from_stream(stream)))
}

// ---------------------------------------------------------------------------------------------
// One call: messages, metadata, transcript export

/// One message of the conversation (Burki's `ChatMessageResponse`).
#[derive(Debug, Serialize, ToSchema, PartialEq)]
pub struct ChatMessageResponse {
    /// The transcript segment it comes from.
    pub id: i64,
    /// The call.
    pub call_id: i64,
    /// `user` (the caller) or `assistant`.
    pub role: String,
    /// What was said (for the assistant: what the caller heard before any interruption).
    pub content: String,
    /// 0-based position in the conversation.
    pub message_index: i64,
    /// When it was said (RFC 3339): the call's start plus the segment's offset.
    pub timestamp: String,
    /// Whether the caller cut the assistant off during it.
    pub interrupted: bool,
}

/// Query of `GET /api/v1/calls/{id}/messages`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesParams {
    /// Only messages of this role (`system`, `user` or `assistant`).
    #[serde(default)]
    pub role: Option<String>,
}

/// The call's conversation as chat messages, in order: the caller's final transcript
/// segments and what the assistant said (as heard).
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/messages",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), MessagesParams),
    responses(
        (status = 200, description = "Messages", body = Vec<ChatMessageResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad role", body = ErrorBody)
    )
)]
pub async fn call_messages(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<MessagesParams>,
) -> Result<Json<Vec<ChatMessageResponse>>, ApiError> {
    let role = match params.role.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r @ ("system" | "user" | "assistant")) => Some(r.to_owned()),
        Some(_) => {
            return Err(ApiError::invalid(
                "role",
                "must be `system`, `user` or `assistant`",
            ));
        }
    };
    let call = load_call(&state, &auth, path.call_id).await?;
    let rows = state.store.list_transcripts(call.id).await?;
    Ok(Json(
        rows.iter()
            .filter(|t| t.is_final && !t.content.trim().is_empty())
            .enumerate()
            .map(|(i, t)| ChatMessageResponse {
                id: t.id,
                call_id: call.id,
                role: t.role.clone(),
                content: t.content.clone(),
                message_index: i as i64,
                timestamp: ms_to_rfc3339(call.started_at_ms + t.start_ms),
                interrupted: t.interrupted,
            })
            .filter(|m| role.as_deref().is_none_or(|r| m.role == r))
            .collect(),
    ))
}

/// Body of `PATCH /api/v1/calls/{id}/metadata`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCallMetadataRequest {
    /// Keys to set on the call's metadata (merged: other keys stay; `null` removes a key).
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// Largest metadata object a call may hold after a merge, in bytes of JSON.
pub const MAX_CALL_METADATA_BYTES: usize = 16 * 1024;

/// Merge custom data into a call's metadata.
#[utoipa::path(
    patch,
    path = "/api/v1/calls/{call_id}/metadata",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id")),
    request_body = UpdateCallMetadataRequest,
    responses(
        (status = 200, description = "The call, with its merged metadata", body = CallResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad body, or metadata too large", body = ErrorBody)
    )
)]
pub async fn update_metadata(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiJson(body): ApiJson<UpdateCallMetadataRequest>,
) -> Result<Json<CallResponse>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let mut merged = match &call.metadata {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in &body.metadata {
        if v.is_null() {
            merged.remove(k);
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    if Value::Object(merged).to_string().len() > MAX_CALL_METADATA_BYTES {
        return Err(ApiError::invalid(
            "metadata",
            format!("the merged metadata would exceed {MAX_CALL_METADATA_BYTES} bytes of JSON"),
        ));
    }
    let row = state
        .store
        .merge_call_metadata(auth.organization_id, call.id, &body.metadata)
        .await?;
    Ok(Json(respond_call(&state, &row).await?))
}

/// `txt`, `json` or `csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptFormat {
    /// One line per segment: `[mm:ss.t] Speaker: text` (the default).
    #[default]
    Txt,
    /// The segments as `GET …/transcripts` returns them.
    Json,
    /// `start_s,end_s,speaker,content,confidence,interrupted` with a header row.
    Csv,
}

/// Query of `GET /api/v1/calls/{id}/transcripts/export`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TranscriptExportParams {
    /// `txt` (default), `json` or `csv`.
    #[serde(default)]
    #[param(value_type = Option<String>)]
    pub format: Option<TranscriptFormat>,
    /// Only this speaker: `user` or `assistant`.
    #[serde(default)]
    pub speaker: Option<String>,
}

fn clock(seconds: f64) -> String {
    let tenths = (seconds.max(0.0) * 10.0).round() as i64;
    format!(
        "{:02}:{:02}.{}",
        tenths / 600,
        (tenths / 10) % 60,
        tenths % 10
    )
}

/// Download a call's final transcript as text, JSON or CSV.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/transcripts/export",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), TranscriptExportParams),
    responses(
        (status = 200, description = "The transcript as a file"),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad format or speaker", body = ErrorBody)
    )
)]
pub async fn export_transcripts(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<TranscriptExportParams>,
) -> Result<Response, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let segments = crate::routes::calls::transcripts_of(
        &state,
        &call,
        &crate::routes::calls::TranscriptParams {
            speaker: params.speaker.clone(),
            include_interim: Some(false),
        },
    )
    .await?;
    let format = params.format.unwrap_or_default();
    let mut out = Vec::with_capacity(segments.len() * 96 + 64);
    let (content_type, ext) = match format {
        TranscriptFormat::Txt => {
            for s in &segments {
                let who = if s.speaker.as_deref() == Some("assistant") {
                    "Assistant"
                } else {
                    "Caller"
                };
                let cut = if s.interrupted { " [interrupted]" } else { "" };
                out.extend_from_slice(
                    format!(
                        "[{}] {who}: {}{cut}\n",
                        clock(s.segment_start.unwrap_or(0.0)),
                        s.content.replace(['\r', '\n'], " ")
                    )
                    .as_bytes(),
                );
            }
            ("text/plain; charset=utf-8", "txt")
        }
        TranscriptFormat::Json => {
            serde_json::to_writer(&mut out, &segments)
                .map_err(|e| ApiError::Internal(format!("encoding the transcript: {e}")))?;
            ("application/json", "json")
        }
        TranscriptFormat::Csv => {
            let mut row = CsvRow::new(&mut out);
            for h in [
                "start_s",
                "end_s",
                "speaker",
                "content",
                "confidence",
                "interrupted",
            ] {
                row.text(h);
            }
            row.end();
            for s in &segments {
                csv_segment(s, &mut out);
            }
            ("text/csv; charset=utf-8", "csv")
        }
    };
    let name = format!("call-{}-transcript.{ext}", call.id);
    let mut resp = attachment(content_type, &name, Body::from(out));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp.into_response())
}

fn csv_segment(s: &TranscriptResponse, out: &mut Vec<u8>) {
    let mut row = CsvRow::new(out);
    row.float(s.segment_start.unwrap_or(0.0));
    row.float(s.segment_end.unwrap_or(0.0));
    row.text(s.speaker.as_deref().unwrap_or(""));
    row.text(&s.content);
    match s.confidence {
        Some(c) => row.float(c),
        None => row.text(""),
    }
    row.text(if s.interrupted { "true" } else { "false" });
    row.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats_minutes_seconds_tenths() {
        assert_eq!(clock(0.0), "00:00.0");
        assert_eq!(clock(61.26), "01:01.3");
        assert_eq!(clock(-3.0), "00:00.0");
    }

    #[test]
    fn failed_means_ended_other_than_completed() {
        assert!(is_failed(CallStatus::Busy));
        assert!(is_failed(CallStatus::Canceled));
        assert!(!is_failed(CallStatus::Completed));
        assert!(!is_failed(CallStatus::InProgress));
        assert_eq!(percent(1, 4), Some(25.0));
        assert_eq!(percent(0, 0), None);
    }
}
