//! `/api/v1/calls…`: call records, their transcripts, recordings, latency metrics and webhook
//! deliveries; ending a live call; placing an outbound call. Paths and shapes follow the Burki
//! API (`PaginatedCallsResponse`, `CallResponse`, `TranscriptResponse`, `RecordingResponse`,
//! `WebhookLogResponse`, `InitiateCallRequest`/`InitiateCallResponse`); the metrics endpoint
//! returns Switchboard's own per-turn latency timeline instead of Burki's analytics.
//!
//! Every query is scoped by the caller's organisation: another organisation's call is a 404,
//! exactly like a call that does not exist.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard_assistant::is_e164;
use switchboard_store::{
    AssistantRow, CallFilter, CallRow, CallStatus, NewCall, RecordingRow, TranscriptRow,
    TurnMetricRow, WebhookLogRow, ms_to_rfc3339, opt_ms_to_rfc3339, rfc3339_to_ms,
};
use switchboard_telephony::rest::{CreateCall, RestError};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::Auth;
use crate::call::CallCommand;
use crate::call::resolve::CallOverrides;
use crate::error::{ApiError, ErrorBody, ErrorDetail};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::routes::ApiResponse;
use crate::state::AppState;
use crate::twilio::control;

/// Default page size of `GET /api/v1/calls`.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest page size of `GET /api/v1/calls`.
pub const MAX_LIMIT: i64 = 1000;
/// After a graceful hang-up was handed to a live call, how long, in ms, it has to say goodbye
/// and hang up itself before the API hangs it up through Twilio.
pub const TERMINATE_GRACE_MS: u64 = 10_000;

/// Routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/calls", get(list_calls))
        .route("/api/v1/calls/", get(list_calls))
        .route("/api/v1/calls/count", get(count_calls))
        .route("/api/v1/calls/initiate", post(initiate_call))
        .route("/calls/initiate", post(initiate_call))
        .route("/api/v1/calls/sid/{call_sid}", get(get_call_by_sid))
        .route(
            "/api/v1/calls/sid/{call_sid}/transcripts",
            get(list_transcripts_by_sid),
        )
        .route(
            "/api/v1/calls/sid/{call_sid}/recordings",
            get(list_recordings_by_sid),
        )
        .route("/api/v1/calls/{call_id}", get(get_call))
        .route("/api/v1/calls/{call_id}/transcripts", get(list_transcripts))
        .route("/api/v1/calls/{call_id}/recordings", get(list_recordings))
        .route(
            "/api/v1/calls/{call_id}/metrics",
            get(get_metrics).patch(recalculate_metrics),
        )
        .route(
            "/api/v1/calls/{call_id}/webhook-logs",
            get(list_webhook_logs),
        )
        // `{call_id}` holds the call SID here: the router needs one name per position.
        .route("/api/v1/calls/{call_id}/terminate", post(terminate_call))
}

/// OpenAPI description of this module's paths.
#[derive(OpenApi)]
#[openapi(
    paths(
        list_calls,
        count_calls,
        get_call,
        get_call_by_sid,
        list_transcripts,
        list_transcripts_by_sid,
        list_recordings,
        list_recordings_by_sid,
        get_metrics,
        recalculate_metrics,
        list_webhook_logs,
        terminate_call,
        initiate_call
    ),
    components(schemas(
        CallResponse,
        PaginatedCallsResponse,
        CallCountResponse,
        TranscriptResponse,
        RecordingResponse,
        WebhookLogResponse,
        CallMetricsResponse,
        TurnMetricResponse,
        TurnProviders,
        LatencySummary,
        MetricsSummary,
        InitiateCallRequest,
        InitiateCallResponse
    )),
    tags((name = "calls", description = "Call records, live-call control, outbound calls"))
)]
pub struct CallsApi;

// ---------------------------------------------------------------------------------------------
// Shapes

/// A call record (Burki's `CallResponse`, plus Switchboard's direction, numbers and reason).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallResponse {
    /// Database id.
    pub id: i64,
    /// Twilio call SID (`CA…`).
    pub call_sid: String,
    /// The called number (Twilio's `To`).
    pub to_phone_number: String,
    /// The calling number (Twilio's `From`).
    pub from_phone_number: String,
    /// The customer's number: the caller of an inbound call, the callee of an outbound one.
    pub customer_phone_number: String,
    /// `inbound` or `outbound-api`.
    pub direction: String,
    /// Per-call data (e.g. `overrides` of an outbound call).
    #[schema(value_type = Option<Object>)]
    pub call_meta: Option<Value>,
    /// Assistant that handled the call; `null` for a call to an unrouted number.
    pub assistant_id: Option<i64>,
    /// That assistant's name, when it still exists.
    pub assistant_name: Option<String>,
    /// Burki's flow name; Switchboard has no flows (always `null`).
    pub flow_name: Option<String>,
    /// Latest status (`queued`, `ringing`, `in-progress`, `completed`, `failed`, …).
    pub status: String,
    /// Why the call ended (`caller_hangup`, `assistant_hangup`, `unknown_number`, …).
    pub ended_reason: Option<String>,
    /// Length in seconds, once known.
    pub duration: Option<i64>,
    /// Start time (RFC 3339).
    pub started_at: Option<String>,
    /// End time (RFC 3339).
    pub ended_at: Option<String>,
    /// Cost fields of Burki; not tracked here (always `null`).
    pub total_cost: Option<f64>,
    /// Not tracked (always `null`).
    pub llm_cost: Option<f64>,
    /// Not tracked (always `null`).
    pub tts_cost: Option<f64>,
    /// Not tracked (always `null`).
    pub stt_cost: Option<f64>,
    /// Not tracked (always `null`).
    pub telephony_cost: Option<f64>,
    /// Not tracked (always `null`).
    pub cost_currency: Option<String>,
}

impl CallResponse {
    pub(crate) fn new(row: &CallRow, assistant_name: Option<String>) -> CallResponse {
        let outbound = row.direction.starts_with("outbound");
        CallResponse {
            id: row.id,
            call_sid: row.call_sid.clone(),
            to_phone_number: row.to_number.clone(),
            from_phone_number: row.from_number.clone(),
            customer_phone_number: if outbound {
                row.to_number.clone()
            } else {
                row.from_number.clone()
            },
            direction: row.direction.clone(),
            call_meta: Some(row.metadata.clone()),
            assistant_id: row.assistant_id,
            assistant_name,
            flow_name: None,
            status: row.status.as_str().to_owned(),
            ended_reason: row.ended_reason.as_ref().map(|r| r.as_str().to_owned()),
            duration: row.duration_s,
            started_at: Some(ms_to_rfc3339(row.started_at_ms)),
            ended_at: opt_ms_to_rfc3339(row.ended_at_ms),
            total_cost: None,
            llm_cost: None,
            tts_cost: None,
            stt_cost: None,
            telephony_cost: None,
            cost_currency: None,
        }
    }
}

/// A page of calls (Burki's `PaginatedCallsResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaginatedCallsResponse {
    /// The calls of this page, newest first.
    pub items: Vec<CallResponse>,
    /// Calls matching the filters, over all pages.
    pub total: i64,
    /// Calls skipped before this page.
    pub skip: i64,
    /// Page size asked for.
    pub limit: i64,
}

/// Answer of `GET /api/v1/calls/count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallCountResponse {
    /// Calls matching the filters.
    pub count: i64,
}

/// One transcript segment (Burki's `TranscriptResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptResponse {
    /// Database id.
    pub id: i64,
    /// Call it belongs to.
    pub call_id: i64,
    /// What was said (for the assistant: what the caller actually heard).
    pub content: String,
    /// Final (not interim) STT result.
    pub is_final: Option<bool>,
    /// `user` or `assistant`.
    pub speaker: Option<String>,
    /// Start of the segment, seconds since call start.
    pub segment_start: Option<f64>,
    /// End of the segment, seconds since call start.
    pub segment_end: Option<f64>,
    /// STT confidence 0..=1 (user segments).
    pub confidence: Option<f64>,
    /// Whether the assistant was cut off during this segment.
    pub interrupted: bool,
    /// Burki's word timings; not kept (always `null`).
    #[schema(value_type = Option<Object>)]
    pub stt_timestamps: Option<Value>,
    /// When it was stored (RFC 3339).
    pub created_at: Option<String>,
}

impl From<&TranscriptRow> for TranscriptResponse {
    fn from(t: &TranscriptRow) -> Self {
        TranscriptResponse {
            id: t.id,
            call_id: t.call_id,
            content: t.content.clone(),
            is_final: Some(t.is_final),
            speaker: Some(t.role.clone()),
            segment_start: Some(t.start_ms as f64 / 1000.0),
            segment_end: Some(t.end_ms as f64 / 1000.0),
            confidence: t.confidence,
            interrupted: t.interrupted,
            stt_timestamps: None,
            created_at: Some(ms_to_rfc3339(t.created_at_ms)),
        }
    }
}

/// One recording of a call (Burki's `RecordingResponse`). Where the file is stored stays on
/// the server: the recording is reached through the API (`recording_url`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingResponse {
    /// Database id.
    pub id: i64,
    /// Call it belongs to.
    pub call_id: i64,
    /// Twilio recording SID; Switchboard records itself (always `null`).
    pub recording_sid: Option<String>,
    /// Where to fetch the audio through this API:
    /// `/api/v1/calls/{call_id}/recording/{id}/play` (authenticated like every API call).
    pub recording_url: String,
    /// Length in seconds.
    pub duration: Option<f64>,
    /// File format (`wav`, `mp3`).
    pub format: Option<String>,
    /// `mixed`, `user` or `assistant`.
    pub recording_type: Option<String>,
    /// Who recorded it: `switchboard`.
    pub recording_source: Option<String>,
    /// `completed` (a recording is listed once written), or `partial` for one finalised after
    /// a crash (the end of the call is missing).
    pub status: Option<String>,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Sample rate in Hz.
    pub sample_rate: i64,
    /// When it was stored (RFC 3339).
    pub created_at: Option<String>,
}

/// The API path that plays recording `recording_id` of call `call_id` (Burki's URL shape).
pub fn recording_play_path(call_id: i64, recording_id: i64) -> String {
    format!("/api/v1/calls/{call_id}/recording/{recording_id}/play")
}

impl From<&RecordingRow> for RecordingResponse {
    fn from(r: &RecordingRow) -> Self {
        RecordingResponse {
            id: r.id,
            call_id: r.call_id,
            recording_sid: None,
            recording_url: recording_play_path(r.call_id, r.id),
            duration: Some(r.duration_ms as f64 / 1000.0),
            format: Some(r.format.clone()),
            recording_type: Some(r.kind.clone()),
            recording_source: Some("switchboard".to_owned()),
            status: Some(if r.partial { "partial" } else { "completed" }.to_owned()),
            size_bytes: r.size_bytes,
            sample_rate: r.sample_rate,
            created_at: Some(ms_to_rfc3339(r.created_at_ms)),
        }
    }
}

/// One webhook delivery attempt (Burki's `WebhookLogResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookLogResponse {
    /// Database id.
    pub id: i64,
    /// Call it was about.
    pub call_id: i64,
    /// The call's assistant.
    pub assistant_id: Option<i64>,
    /// Target URL.
    pub webhook_url: String,
    /// `status-update` or `end-of-call-report`.
    pub webhook_type: String,
    /// The JSON body sent.
    #[schema(value_type = Option<Object>)]
    pub request_payload: Option<Value>,
    /// HTTP status received; `null` when no response arrived.
    pub response_status_code: Option<i64>,
    /// Body received (truncated to 2000 characters); `null` unless the operator turned on
    /// `webhooks.log_response_body`.
    pub response_body: Option<String>,
    /// Time from request to response or failure, ms.
    pub response_time_ms: Option<i64>,
    /// When the attempt was made (RFC 3339).
    pub attempted_at: Option<String>,
    /// The receiver answered 2xx.
    pub success: bool,
    /// Transport or HTTP error text.
    pub error_message: Option<String>,
    /// Retries before this attempt (attempt number − 1).
    pub retry_count: i64,
    /// `{"attempt": n}`.
    #[schema(value_type = Option<Object>)]
    pub webhook_metadata: Option<Value>,
}

impl WebhookLogResponse {
    fn new(l: &WebhookLogRow, call: &CallRow) -> WebhookLogResponse {
        WebhookLogResponse {
            id: l.id,
            call_id: call.id,
            assistant_id: call.assistant_id,
            webhook_url: l.url.clone(),
            webhook_type: l.event.clone(),
            request_payload: Some(l.request_body.clone()),
            response_status_code: l.status_code,
            response_body: l.response_body.clone(),
            response_time_ms: Some(l.duration_ms),
            attempted_at: Some(ms_to_rfc3339(l.created_at_ms)),
            success: l.success,
            error_message: l.error.clone(),
            retry_count: (l.attempt - 1).max(0),
            webhook_metadata: Some(json!({"attempt": l.attempt})),
        }
    }
}

/// Providers that served one turn.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnProviders {
    /// `provider:model` of the LLM.
    pub llm: Option<String>,
    /// `provider:model` of the STT.
    pub stt: Option<String>,
    /// TTS provider.
    pub tts: Option<String>,
}

/// The latency timeline of one turn; every timestamp is ms since call start.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnMetricResponse {
    /// 0-based turn number.
    pub turn_index: i64,
    /// The caller stopped speaking.
    pub user_speech_end_ms: Option<i64>,
    /// The STT final result arrived.
    pub stt_final_ms: Option<i64>,
    /// The LLM request was sent.
    pub llm_request_ms: Option<i64>,
    /// The first LLM token arrived.
    pub llm_first_token_ms: Option<i64>,
    /// The first TTS audio arrived.
    pub tts_first_byte_ms: Option<i64>,
    /// The first reply frame was sent to Twilio.
    pub first_audio_sent_ms: Option<i64>,
    /// Twilio confirmed (mark) the reply finished playing.
    pub playback_done_ms: Option<i64>,
    /// `first_audio_sent_ms − user_speech_end_ms`: how long the caller waited, in ms.
    pub first_audio_latency_ms: Option<i64>,
    /// Who served the turn.
    pub providers: TurnProviders,
    /// The reply was interrupted by the caller.
    pub interrupted: bool,
    /// More of the turn (speech start, commit time, whether it was speculative).
    #[schema(value_type = Object)]
    pub extra: Value,
}

impl From<&TurnMetricRow> for TurnMetricResponse {
    fn from(m: &TurnMetricRow) -> Self {
        TurnMetricResponse {
            turn_index: m.turn_index,
            user_speech_end_ms: m.user_speech_end_ms,
            stt_final_ms: m.stt_final_ms,
            llm_request_ms: m.llm_request_ms,
            llm_first_token_ms: m.llm_first_token_ms,
            tts_first_byte_ms: m.tts_first_byte_ms,
            first_audio_sent_ms: m.first_audio_sent_ms,
            playback_done_ms: m.playback_done_ms,
            first_audio_latency_ms: first_audio_latency_ms(m),
            providers: TurnProviders {
                llm: m.llm_provider.clone(),
                stt: m.stt_provider.clone(),
                tts: m.tts_provider.clone(),
            },
            interrupted: m.interrupted,
            extra: m.extra.clone(),
        }
    }
}

/// The caller's wait of one turn, in ms: first reply audio sent − end of the caller's speech.
/// `None` when the turn has no caller speech (the welcome) or no reply audio, or the clock
/// went backwards (a reply started speculatively before the caller finished).
pub fn first_audio_latency_ms(m: &TurnMetricRow) -> Option<i64> {
    let (end, sent) = (m.user_speech_end_ms?, m.first_audio_sent_ms?);
    (sent >= end).then_some(sent - end)
}

/// Average, median and maximum of a set of latencies, in ms; `null`s when the set is empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct LatencySummary {
    /// How many values.
    pub count: usize,
    /// Mean, ms.
    pub avg_ms: Option<f64>,
    /// Median (nearest rank), ms.
    pub p50_ms: Option<i64>,
    /// Largest, ms.
    pub max_ms: Option<i64>,
}

impl LatencySummary {
    /// Summarises `values` (any order).
    pub fn of(mut values: Vec<i64>) -> LatencySummary {
        if values.is_empty() {
            return LatencySummary::default();
        }
        values.sort_unstable();
        let n = values.len();
        let sum: i64 = values.iter().sum();
        // Nearest rank: the ceil(n/2)-th smallest value.
        let p50 = values.get(n.div_ceil(2).saturating_sub(1)).copied();
        LatencySummary {
            count: n,
            avg_ms: Some(sum as f64 / n as f64),
            p50_ms: p50,
            max_ms: values.last().copied(),
        }
    }
}

/// Summaries computed over the turns of a call.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsSummary {
    /// Turns recorded.
    pub turns: usize,
    /// Turns whose reply the caller interrupted.
    pub interrupted_turns: usize,
    /// First-audio latency (`first_audio_sent_ms − user_speech_end_ms`) over the turns that
    /// have both.
    pub first_audio_latency: LatencySummary,
    /// LLM time to first token (`llm_first_token_ms − llm_request_ms`).
    pub llm_first_token_latency: LatencySummary,
    /// TTS time to first audio (`tts_first_byte_ms − llm_first_token_ms`).
    pub tts_first_audio_latency: LatencySummary,
}

/// `GET /api/v1/calls/{id}/metrics`: the per-turn latency timeline, the call-level counters the
/// runtime recorded, and summaries.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallMetricsResponse {
    /// Call id.
    pub call_id: i64,
    /// Twilio call SID.
    pub call_sid: String,
    /// One entry per turn, in order.
    pub turns: Vec<TurnMetricResponse>,
    /// Call-level counters recorded at the end of the call (`interruptions`,
    /// `interruption_reaction_ms`, `false_interruptions`, `speculative_hits`, …); `{}` before.
    #[schema(value_type = Object)]
    pub call: Value,
    /// Computed over `turns`.
    pub summary: MetricsSummary,
}

fn differences(
    rows: &[TurnMetricRow],
    f: impl Fn(&TurnMetricRow) -> Option<(i64, i64)>,
) -> Vec<i64> {
    rows.iter()
        .filter_map(&f)
        .filter(|(a, b)| b >= a)
        .map(|(a, b)| b - a)
        .collect()
}

impl CallMetricsResponse {
    fn new(call: &CallRow, rows: &[TurnMetricRow]) -> CallMetricsResponse {
        let summary = MetricsSummary {
            turns: rows.len(),
            interrupted_turns: rows.iter().filter(|r| r.interrupted).count(),
            first_audio_latency: LatencySummary::of(
                rows.iter().filter_map(first_audio_latency_ms).collect(),
            ),
            llm_first_token_latency: LatencySummary::of(differences(rows, |r| {
                Some((r.llm_request_ms?, r.llm_first_token_ms?))
            })),
            tts_first_audio_latency: LatencySummary::of(differences(rows, |r| {
                Some((r.llm_first_token_ms?, r.tts_first_byte_ms?))
            })),
        };
        CallMetricsResponse {
            call_id: call.id,
            call_sid: call.call_sid.clone(),
            turns: rows.iter().map(TurnMetricResponse::from).collect(),
            call: call.metrics.clone(),
            summary,
        }
    }
}

/// Body of `POST /calls/initiate` (Burki's `InitiateCallRequest`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InitiateCallRequest {
    /// Number to call, E.164.
    pub to_phone_number: String,
    /// The assistant that talks; when absent, the one `from_phone_number` is routed to.
    #[serde(default)]
    pub assistant_id: Option<i64>,
    /// One of the organisation's numbers (E.164); when absent, the assistant's first number.
    #[serde(default)]
    pub from_phone_number: Option<String>,
    /// Replaces the assistant's welcome message for this call (may use `{{name}}` variables).
    #[serde(default)]
    pub welcome_message: Option<String>,
    /// What this call is for; added to the system prompt.
    #[serde(default)]
    pub agenda: Option<String>,
    /// Values for `{{name}}` template variables; non-string values are used as their JSON text.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub variables: Option<serde_json::Map<String, Value>>,
}

/// Answer of `POST /calls/initiate` (Burki's `InitiateCallResponse`).
#[derive(Debug, Serialize, ToSchema)]
pub struct InitiateCallResponse {
    /// What happened, in words.
    pub message: String,
    /// Twilio's SID of the new call.
    pub call_sid: String,
    /// Our call record id.
    pub call_id: i64,
    /// Always `queued` right after creation.
    pub status: String,
}

/// Query of `GET /api/v1/calls` and `/count`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListCallsParams {
    /// Calls to skip (default 0).
    #[serde(default)]
    pub skip: Option<i64>,
    /// Page size, 1..=1000 (default 100).
    #[serde(default)]
    pub limit: Option<i64>,
    /// Only calls with this status (`queued`, `initiated`, `ringing`, `in-progress`,
    /// `completed`, `busy`, `no-answer`, `failed`, `canceled`).
    #[serde(default)]
    pub status: Option<String>,
    /// Only calls of this assistant.
    #[serde(default)]
    pub assistant_id: Option<i64>,
    /// Only calls from or to this number (exact E.164).
    #[serde(default)]
    pub customer_phone: Option<String>,
    /// Only calls started at or after this time (RFC 3339).
    #[serde(default)]
    pub date_from: Option<String>,
    /// Only calls started at or before this time (RFC 3339).
    #[serde(default)]
    pub date_to: Option<String>,
}

impl ListCallsParams {
    pub(crate) fn filter(&self) -> Result<CallFilter, ApiError> {
        let date = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
            match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                None => Ok(None),
                Some(s) => rfc3339_to_ms(s).map(Some).ok_or_else(|| {
                    ApiError::invalid(
                        field,
                        "must be an RFC 3339 date-time, e.g. 2026-01-31T12:00:00Z",
                    )
                }),
            }
        };
        let skip = self.skip.unwrap_or(0);
        if skip < 0 {
            return Err(ApiError::invalid("skip", "must be at least 0"));
        }
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let status = match self.status.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(CallStatus::parse(s).ok_or_else(|| {
                let known: Vec<&str> = CallStatus::KNOWN.iter().map(|k| k.as_str()).collect();
                ApiError::invalid("status", format!("must be one of {}", known.join(", ")))
            })?),
        };
        Ok(CallFilter {
            assistant_id: self.assistant_id,
            status,
            from_ms: date("date_from", &self.date_from)?,
            to_ms: date("date_to", &self.date_to)?,
            number: self
                .customer_phone
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            skip,
            limit,
            ..CallFilter::default()
        })
    }
}

/// Query of `GET /api/v1/calls/{id}/transcripts`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TranscriptParams {
    /// Only this speaker: `user` or `assistant`.
    #[serde(default)]
    pub speaker: Option<String>,
    /// Include interim (non-final) segments (default false).
    #[serde(default)]
    pub include_interim: Option<bool>,
}

/// Query of `GET /api/v1/calls/{id}/recordings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordingParams {
    /// Only recordings of this type (`mixed`, `user`, `assistant`).
    #[serde(default)]
    pub recording_type: Option<String>,
}

/// Query of `GET /api/v1/calls/{id}/webhook-logs`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookLogParams {
    /// Only deliveries of this type (`status-update`, `end-of-call-report`).
    #[serde(default)]
    pub webhook_type: Option<String>,
}

/// Path parameter `{call_id}` (the call SID for `terminate`).
#[derive(Debug, Deserialize)]
pub struct CallIdPath {
    /// Call id.
    pub call_id: i64,
}

/// Path parameter of `terminate`.
#[derive(Debug, Deserialize)]
pub struct CallSidPath {
    /// Twilio call SID (named `call_id` only because the router needs one name per position).
    pub call_id: String,
}

/// Path parameter `{call_sid}`.
#[derive(Debug, Deserialize)]
pub struct SidPath {
    /// Twilio call SID.
    pub call_sid: String,
}

// ---------------------------------------------------------------------------------------------
// Helpers

pub(crate) async fn load_call(state: &AppState, auth: &Auth, id: i64) -> Result<CallRow, ApiError> {
    state
        .store
        .get_call(auth.organization_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("call {id} not found")))
}

async fn load_call_by_sid(state: &AppState, auth: &Auth, sid: &str) -> Result<CallRow, ApiError> {
    state
        .store
        .get_call_by_sid(Some(auth.organization_id), sid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("call {sid} not found")))
}

pub(crate) async fn assistant_names(
    state: &AppState,
    org_id: i64,
    calls: &[CallRow],
) -> Result<HashMap<i64, String>, ApiError> {
    let mut names = HashMap::new();
    for id in calls.iter().filter_map(|c| c.assistant_id) {
        if names.contains_key(&id) {
            continue;
        }
        if let Some(row) = state.store.get_assistant(org_id, id).await? {
            names.insert(id, row.name);
        }
    }
    Ok(names)
}

pub(crate) async fn respond_call(
    state: &AppState,
    row: &CallRow,
) -> Result<CallResponse, ApiError> {
    let names = assistant_names(state, row.organization_id, std::slice::from_ref(row)).await?;
    let name = row.assistant_id.and_then(|id| names.get(&id).cloned());
    Ok(CallResponse::new(row, name))
}

// ---------------------------------------------------------------------------------------------
// Handlers

/// List the caller's calls, newest first, with filters and pagination.
#[utoipa::path(
    get,
    path = "/api/v1/calls",
    tag = "calls",
    security(("bearer" = [])),
    params(ListCallsParams),
    responses(
        (status = 200, description = "A page of calls", body = PaginatedCallsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody)
    )
)]
pub async fn list_calls(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListCallsParams>,
) -> Result<Json<PaginatedCallsResponse>, ApiError> {
    let filter = params.filter()?;
    let org = auth.organization_id;
    let rows = state.store.list_calls(org, &filter).await?;
    let total = state.store.count_calls(org, &filter).await?;
    let names = assistant_names(&state, org, &rows).await?;
    let items = rows
        .iter()
        .map(|r| CallResponse::new(r, r.assistant_id.and_then(|id| names.get(&id).cloned())))
        .collect();
    Ok(Json(PaginatedCallsResponse {
        items,
        total,
        skip: filter.skip,
        limit: filter.limit,
    }))
}

/// Count the caller's calls matching the filters (`skip`/`limit` are ignored).
#[utoipa::path(
    get,
    path = "/api/v1/calls/count",
    tag = "calls",
    security(("bearer" = [])),
    params(ListCallsParams),
    responses(
        (status = 200, description = "The count", body = CallCountResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Bad query parameter", body = ErrorBody)
    )
)]
pub async fn count_calls(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(params): ApiQuery<ListCallsParams>,
) -> Result<Json<CallCountResponse>, ApiError> {
    let filter = params.filter()?;
    let count = state
        .store
        .count_calls(auth.organization_id, &filter)
        .await?;
    Ok(Json(CallCountResponse { count }))
}

/// Read one call.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id")),
    responses(
        (status = 200, description = "The call", body = CallResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn get_call(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
) -> Result<Json<CallResponse>, ApiError> {
    let row = load_call(&state, &auth, path.call_id).await?;
    Ok(Json(respond_call(&state, &row).await?))
}

/// Read one call by its Twilio call SID.
#[utoipa::path(
    get,
    path = "/api/v1/calls/sid/{call_sid}",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_sid" = String, Path, description = "Twilio call SID")),
    responses(
        (status = 200, description = "The call", body = CallResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn get_call_by_sid(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<SidPath>,
) -> Result<Json<CallResponse>, ApiError> {
    let row = load_call_by_sid(&state, &auth, &path.call_sid).await?;
    Ok(Json(respond_call(&state, &row).await?))
}

/// A call's transcript, in time order; final segments only unless `include_interim`.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/transcripts",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), TranscriptParams),
    responses(
        (status = 200, description = "Transcript segments", body = Vec<TranscriptResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad speaker", body = ErrorBody)
    )
)]
pub async fn list_transcripts(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<TranscriptParams>,
) -> Result<Json<Vec<TranscriptResponse>>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    transcripts_of(&state, &call, &params).await.map(Json)
}

/// A call's transcript by Twilio call SID (same filters as by id).
#[utoipa::path(
    get,
    path = "/api/v1/calls/sid/{call_sid}/transcripts",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_sid" = String, Path, description = "Twilio call SID"), TranscriptParams),
    responses(
        (status = 200, description = "Transcript segments", body = Vec<TranscriptResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 422, description = "Bad speaker", body = ErrorBody)
    )
)]
pub async fn list_transcripts_by_sid(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<SidPath>,
    ApiQuery(params): ApiQuery<TranscriptParams>,
) -> Result<Json<Vec<TranscriptResponse>>, ApiError> {
    let call = load_call_by_sid(&state, &auth, &path.call_sid).await?;
    transcripts_of(&state, &call, &params).await.map(Json)
}

pub(crate) async fn transcripts_of(
    state: &AppState,
    call: &CallRow,
    params: &TranscriptParams,
) -> Result<Vec<TranscriptResponse>, ApiError> {
    let speaker = params
        .speaker
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    // Burki's clients say `ai`/`bot` as well as `assistant`.
    let speaker = match speaker {
        None => None,
        Some("user" | "customer" | "caller") => Some("user"),
        Some("assistant" | "ai" | "bot") => Some("assistant"),
        Some(_) => {
            return Err(ApiError::invalid(
                "speaker",
                "must be `user` or `assistant`",
            ));
        }
    };
    let interim = params.include_interim.unwrap_or(false);
    let rows = state.store.list_transcripts(call.id).await?;
    Ok(rows
        .iter()
        .filter(|t| interim || t.is_final)
        .filter(|t| speaker.is_none_or(|s| t.role == s))
        .map(TranscriptResponse::from)
        .collect())
}

/// A call's recordings.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/recordings",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), RecordingParams),
    responses(
        (status = 200, description = "Recordings", body = Vec<RecordingResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn list_recordings(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<RecordingParams>,
) -> Result<Json<Vec<RecordingResponse>>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    recordings_of(&state, &call, &params).await.map(Json)
}

/// A call's recordings by Twilio call SID.
#[utoipa::path(
    get,
    path = "/api/v1/calls/sid/{call_sid}/recordings",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_sid" = String, Path, description = "Twilio call SID"), RecordingParams),
    responses(
        (status = 200, description = "Recordings", body = Vec<RecordingResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn list_recordings_by_sid(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<SidPath>,
    ApiQuery(params): ApiQuery<RecordingParams>,
) -> Result<Json<Vec<RecordingResponse>>, ApiError> {
    let call = load_call_by_sid(&state, &auth, &path.call_sid).await?;
    recordings_of(&state, &call, &params).await.map(Json)
}

async fn recordings_of(
    state: &AppState,
    call: &CallRow,
    params: &RecordingParams,
) -> Result<Vec<RecordingResponse>, ApiError> {
    let wanted = params
        .recording_type
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let rows = state.store.list_recordings(call.id).await?;
    Ok(rows
        .iter()
        .filter(|r| wanted.is_none_or(|w| r.kind == w))
        .map(RecordingResponse::from)
        .collect())
}

/// A call's latency timeline per turn, its call-level counters, and summaries.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/metrics",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id")),
    responses(
        (status = 200, description = "Metrics", body = CallMetricsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn get_metrics(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
) -> Result<Json<CallMetricsResponse>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let rows = state.store.list_turn_metrics(call.id).await?;
    Ok(Json(CallMetricsResponse::new(&call, &rows)))
}

/// Recompute a call's metrics from its stored per-turn timings (Burki's "recalculate"). The
/// summaries are derived on every read, so this returns what `GET` returns, freshly computed;
/// it exists so Burki clients that call it get the metrics instead of a 405.
#[utoipa::path(
    patch,
    path = "/api/v1/calls/{call_id}/metrics",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id")),
    responses(
        (status = 200, description = "Metrics", body = CallMetricsResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn recalculate_metrics(
    state: State<AppState>,
    auth: Auth,
    path: ApiPath<CallIdPath>,
) -> Result<Json<CallMetricsResponse>, ApiError> {
    get_metrics(state, auth, path).await
}

/// Every delivery attempt of the call's webhooks, in order.
#[utoipa::path(
    get,
    path = "/api/v1/calls/{call_id}/webhook-logs",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_id" = i64, Path, description = "Call id"), WebhookLogParams),
    responses(
        (status = 200, description = "Delivery attempts", body = Vec<WebhookLogResponse>),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody)
    )
)]
pub async fn list_webhook_logs(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallIdPath>,
    ApiQuery(params): ApiQuery<WebhookLogParams>,
) -> Result<Json<Vec<WebhookLogResponse>>, ApiError> {
    let call = load_call(&state, &auth, path.call_id).await?;
    let wanted = params
        .webhook_type
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let rows = state.store.list_webhook_logs(call.id).await?;
    Ok(Json(
        rows.iter()
            .filter(|l| wanted.is_none_or(|w| l.event == w))
            .map(|l| WebhookLogResponse::new(l, &call))
            .collect(),
    ))
}

/// End a live call. A call live on this instance is asked to say goodbye and hang up; one held
/// elsewhere is reached over Redis (when configured) and hung up through Twilio. Either way a
/// Twilio hang-up follows, so the call ends even if no instance acts.
#[utoipa::path(
    post,
    path = "/api/v1/calls/{call_sid}/terminate",
    tag = "calls",
    security(("bearer" = [])),
    params(("call_sid" = String, Path, description = "Twilio call SID")),
    responses(
        (status = 200, description = "Hang-up under way", body = ApiResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 404, description = "No such call in your organisation", body = ErrorBody),
        (status = 409, description = "The call has already ended", body = ErrorBody)
    )
)]
pub async fn terminate_call(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(path): ApiPath<CallSidPath>,
) -> Result<Json<ApiResponse>, ApiError> {
    let sid = path.call_id;
    let call = state
        .store
        .get_call_by_sid(Some(auth.organization_id), &sid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("call {sid} not found")))?;
    if call.ended_at_ms.is_some() || call.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "call {sid} has already ended ({})",
            call.status
        )));
    }
    let live_here = control::deliver_local(&state, &sid, CallCommand::HangUp { message: None });
    let mut published = None;
    let twilio = if live_here {
        // The call says goodbye and hangs up itself; Twilio's hang-up is the backstop.
        spawn_backstop_hang_up(&state, call.organization_id, sid.clone());
        "scheduled".to_owned()
    } else {
        published = match control::publish_hang_up(&state, &sid).await {
            Ok(receivers) => Some(receivers),
            Err(control::PublishError::NotConfigured) => None,
            Err(e) => {
                tracing::warn!(call_sid = %sid, error = %e, "could not publish the hang-up");
                None
            }
        };
        twilio_hang_up(&state, call.organization_id, &sid).await
    };
    tracing::info!(call_sid = %sid, live_here, twilio = %twilio, "terminate requested");
    Ok(Json(ApiResponse::ok(
        format!("call {sid} is being terminated"),
        Some(json!({
            "call_sid": sid,
            "live_on_this_instance": live_here,
            "published_to_instances": published,
            "twilio_hang_up": twilio,
        })),
    )))
}

/// Hangs `call_sid` up through Twilio; says how it went (`ok`, `no_credentials`, `error: …`).
async fn twilio_hang_up(state: &AppState, org_id: i64, call_sid: &str) -> String {
    let Some(client) = crate::call::tools::twilio_client(state, org_id).await else {
        return "no_credentials".to_owned();
    };
    match client.hang_up(call_sid).await {
        Ok(_) => "ok".to_owned(),
        Err(e) => {
            tracing::warn!(call_sid, error = %e, "hang-up through Twilio failed");
            format!("error: {e}")
        }
    }
}

fn spawn_backstop_hang_up(state: &AppState, org_id: i64, call_sid: String) {
    let state2 = state.clone();
    state.tasks.spawn(async move {
        let stop = state2.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(TERMINATE_GRACE_MS)) => {}
            () = stop.cancelled() => {}
        }
        // When the record cannot be read, hang up anyway: Twilio treats an ended call's
        // hang-up as done, and a live one must not outlast its terminate.
        let ended = match state2.store.get_call_by_sid(Some(org_id), &call_sid).await {
            Ok(call) => call.is_none_or(|c| c.ended_at_ms.is_some()),
            Err(e) => {
                tracing::warn!(call_sid = %call_sid, error = %e, "could not read the call before the backstop hang-up");
                false
            }
        };
        if !ended {
            let how = twilio_hang_up(&state2, org_id, &call_sid).await;
            tracing::info!(call_sid = %call_sid, twilio = %how, "backstop hang-up after terminate");
        }
    });
}

/// Why an outbound call could not be placed: an API error, or Twilio failing (502).
#[derive(Debug)]
pub enum InitiateError {
    /// Our own validation or lookup failed.
    Api(ApiError),
    /// Twilio refused for a reason that is not the request's fault, or could not be reached.
    Upstream(String),
}

impl From<ApiError> for InitiateError {
    fn from(e: ApiError) -> Self {
        InitiateError::Api(e)
    }
}

impl From<switchboard_store::StoreError> for InitiateError {
    fn from(e: switchboard_store::StoreError) -> Self {
        InitiateError::Api(e.into())
    }
}

impl IntoResponse for InitiateError {
    fn into_response(self) -> Response {
        match self {
            InitiateError::Api(e) => e.into_response(),
            InitiateError::Upstream(message) => {
                tracing::warn!(%message, "outbound call failed at Twilio");
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: "bad_gateway".to_owned(),
                        message,
                        field: None,
                        details: None,
                    },
                };
                (StatusCode::BAD_GATEWAY, Json(body)).into_response()
            }
        }
    }
}

/// Twilio error codes that mean "this number is wrong": the request's fault (422).
const INVALID_NUMBER_CODES: [(u32, &str); 7] = [
    (21201, "to_phone_number"),
    (21211, "to_phone_number"),
    (21214, "to_phone_number"),
    (21215, "to_phone_number"),
    (21217, "to_phone_number"),
    (21210, "from_phone_number"),
    (21212, "from_phone_number"),
];

fn twilio_error(e: RestError) -> InitiateError {
    if let RestError::Api {
        code: Some(code),
        message,
        ..
    } = &e
    {
        if let Some((_, field)) = INVALID_NUMBER_CODES.iter().find(|(c, _)| c == code) {
            return InitiateError::Api(ApiError::invalid(
                *field,
                format!("rejected by Twilio ({code}): {message}"),
            ));
        }
        if *code == 21213 {
            return InitiateError::Api(ApiError::invalid(
                "from_phone_number",
                format!("rejected by Twilio ({code}): {message}"),
            ));
        }
    }
    InitiateError::Upstream(format!("Twilio could not place the call: {e}"))
}

fn variables_as_strings(vars: Option<serde_json::Map<String, Value>>) -> BTreeMap<String, String> {
    vars.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k, text)
        })
        .collect()
}

async fn pick_assistant(
    state: &AppState,
    org: i64,
    req: &InitiateCallRequest,
) -> Result<(AssistantRow, String), ApiError> {
    let from = match req.from_phone_number.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            if !is_e164(f) {
                return Err(ApiError::invalid(
                    "from_phone_number",
                    "must be an E.164 number like +14155550100",
                ));
            }
            let owned = state
                .store
                .get_number(f)
                .await?
                .is_some_and(|n| n.organization_id == org);
            if !owned {
                return Err(ApiError::invalid(
                    "from_phone_number",
                    "is not one of your organisation's numbers",
                ));
            }
            Some(f.to_owned())
        }
        _ => None,
    };
    let assistant = match (req.assistant_id, &from) {
        (Some(id), _) => state
            .store
            .get_assistant(org, id)
            .await?
            .ok_or_else(|| ApiError::invalid("assistant_id", "no such assistant"))?,
        (None, Some(f)) => state
            .store
            .assistant_by_number_in_org(org, f)
            .await?
            .ok_or_else(|| {
                ApiError::invalid("from_phone_number", "is not routed to an assistant")
            })?,
        (None, None) => {
            return Err(ApiError::invalid(
                "assistant_id",
                "give assistant_id or from_phone_number",
            ));
        }
    };
    if !assistant.is_active {
        return Err(ApiError::invalid(
            "assistant_id",
            "the assistant is inactive",
        ));
    }
    let from = match from {
        Some(f) => f,
        None => state
            .store
            .list_numbers(org, assistant.id)
            .await?
            .into_iter()
            .next()
            .map(|n| n.number)
            .ok_or_else(|| {
                ApiError::invalid(
                    "from_phone_number",
                    "the assistant has no phone number; give from_phone_number",
                )
            })?,
    };
    Ok((assistant, from))
}

/// Place an outbound call: Twilio dials `to_phone_number` from one of the organisation's numbers
/// and, once answered, fetches our voice webhook; the per-call overrides (welcome message,
/// agenda, variables) reach the call when its media stream starts.
#[utoipa::path(
    post,
    path = "/api/v1/calls/initiate",
    tag = "calls",
    security(("bearer" = [])),
    request_body = InitiateCallRequest,
    responses(
        (status = 200, description = "Call queued at Twilio", body = InitiateCallResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key", body = ErrorBody),
        (status = 422, description = "Invalid request, or Twilio rejected a number", body = ErrorBody),
        (status = 502, description = "Twilio failed or could not be reached", body = ErrorBody),
        (status = 503, description = "Server shutting down", body = ErrorBody)
    )
)]
pub async fn initiate_call(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(req): ApiJson<InitiateCallRequest>,
) -> Result<Json<InitiateCallResponse>, InitiateError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable.into());
    }
    let org = auth.organization_id;
    let to = req.to_phone_number.trim().to_owned();
    if !is_e164(&to) {
        return Err(ApiError::invalid(
            "to_phone_number",
            "must be an E.164 number like +14155550100",
        )
        .into());
    }
    let (assistant, from) = pick_assistant(&state, org, &req).await?;
    let client = crate::call::tools::twilio_client(&state, org)
        .await
        .ok_or_else(|| {
            ApiError::invalid(
                "telephony",
                "no Twilio credentials for this organisation (PUT /api/v1/organization/telephony)",
            )
        })?;
    let base = &state.public_base_url;
    let create = CreateCall {
        to: to.clone(),
        from: from.clone(),
        url: Some(format!("{base}/twilio/voice")),
        method: Some("POST".to_owned()),
        status_callback: Some(format!("{base}/twilio/status")),
        status_callback_events: ["initiated", "ringing", "answered", "completed"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        status_callback_method: Some("POST".to_owned()),
        ..CreateCall::default()
    };
    let overrides = CallOverrides {
        welcome_message: req.welcome_message.clone().filter(|s| !s.trim().is_empty()),
        agenda: req.agenda.clone().filter(|s| !s.trim().is_empty()),
        variables: variables_as_strings(req.variables),
    };
    let created = client.create_call(&create).await.map_err(twilio_error)?;
    let new = NewCall {
        organization_id: org,
        assistant_id: Some(assistant.id),
        call_sid: created.sid.clone(),
        direction: "outbound-api".to_owned(),
        from_number: from,
        to_number: to,
        status: CallStatus::Queued,
        metadata: json!({ "overrides": overrides }),
        // The voice webhook sets it when Twilio answers: ringing may take long.
        stream_deadline_at_ms: None,
    };
    let call = match state.store.create_call(&new).await {
        Ok(call) => call,
        Err(e) => {
            // The call is already ringing; without its record it would start without overrides.
            tracing::error!(call_sid = %created.sid, error = %e, "could not record an outbound call; hanging it up");
            if let Err(hang_up) = client.hang_up(&created.sid).await {
                tracing::error!(call_sid = %created.sid, error = %hang_up, "could not hang up the unrecorded outbound call");
            }
            return Err(ApiError::from(e).into());
        }
    };
    tracing::info!(call_sid = %call.call_sid, assistant_id = assistant.id, "outbound call queued");
    Ok(Json(InitiateCallResponse {
        message: "Call initiated".to_owned(),
        call_sid: call.call_sid,
        call_id: call.id,
        status: call.status.as_str().to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_uses_nearest_rank_median() {
        assert_eq!(LatencySummary::of(vec![]), LatencySummary::default());
        let s = LatencySummary::of(vec![300, 100, 200, 400]);
        assert_eq!(s.count, 4);
        assert_eq!(s.p50_ms, Some(200));
        assert_eq!(s.max_ms, Some(400));
        assert_eq!(s.avg_ms, Some(250.0));
        assert_eq!(LatencySummary::of(vec![7]).p50_ms, Some(7));
        assert_eq!(LatencySummary::of(vec![5, 1, 9]).p50_ms, Some(5));
    }

    #[test]
    fn twilio_number_errors_are_422_others_502() {
        let bad_to = RestError::Api {
            status: 400,
            code: Some(21211),
            message: "Invalid 'To' Phone Number".into(),
            more_info: None,
        };
        match twilio_error(bad_to) {
            InitiateError::Api(ApiError::Validation(v)) => {
                assert_eq!(v[0].field, "to_phone_number")
            }
            other => panic!("expected 422, got {other:?}"),
        }
        let down = RestError::Api {
            status: 500,
            code: Some(20500),
            message: "Internal".into(),
            more_info: None,
        };
        assert!(matches!(twilio_error(down), InitiateError::Upstream(_)));
        assert!(matches!(
            twilio_error(RestError::Timeout),
            InitiateError::Upstream(_)
        ));
    }

    #[test]
    fn variables_become_strings() {
        let mut m = serde_json::Map::new();
        m.insert("name".into(), json!("Ada"));
        m.insert("n".into(), json!(3));
        m.insert("none".into(), Value::Null);
        let v = variables_as_strings(Some(m));
        assert_eq!(v["name"], "Ada");
        assert_eq!(v["n"], "3");
        assert_eq!(v["none"], "");
    }
}
