//! Records the store reads and writes. Rows (`…Row`, [`Organization`], [`ApiKeyInfo`]) are what
//! the database holds, with timestamps as unix epoch milliseconds (`…_ms`; see
//! [`crate::ms_to_rfc3339`]); `New…` structs are what callers pass in to create one.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

use crate::{CallStatus, EndedReason};

/// A tenant. Every assistant, number, call and API key belongs to exactly one organisation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Organization {
    /// Database id.
    pub id: i64,
    /// Unique name (e.g. `default`), used by the CLI to find or create it.
    pub name: String,
    /// The organisation's owner user, created with the organisation; API keys act as this user.
    pub owner_user_id: Option<i64>,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last change (e.g. telephony credentials), unix ms.
    pub updated_at_ms: i64,
}

/// An API key as listed to operators: everything but the secret (only its SHA-256 is stored).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Database id.
    pub id: i64,
    /// Organisation the key acts for.
    pub organization_id: i64,
    /// User the key acts as.
    pub user_id: i64,
    /// Free-text label given at creation.
    pub label: Option<String>,
    /// The first characters of the key (e.g. `sb_AbCdE`) so operators can tell keys apart.
    pub prefix: String,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last successful authentication, unix ms, updated at most once a minute.
    pub last_used_at_ms: Option<i64>,
    /// Revocation time, unix ms; a revoked key no longer authenticates.
    pub revoked_at_ms: Option<i64>,
    /// What the key may do.
    pub role: KeyRole,
}

/// What an API key may do. Roles are per key (not per user) so that an organisation can hand a
/// least-privileged key to an integration and keep its admin key for itself.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    /// Everything a member can do, plus managing the organisation's API keys, its Twilio
    /// credentials and its provider keys.
    Admin,
    /// Assistants, numbers, calls and reports; not keys or organisation credentials.
    Member,
}

impl KeyRole {
    /// Stable name stored in `api_keys.role` and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    /// Parses a stored or requested role name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// What [`crate::Store::revoke_api_key_keeping_admin`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRevocation {
    /// The key is revoked from now on, on every instance (keys are checked in the database on
    /// every request).
    Revoked,
    /// No such active key in the organisation.
    NotFound,
    /// The key is the organisation's last active admin key; nothing changed.
    LastAdmin,
}

/// Who a request acts as, resolved from a bearer API key by [`crate::Store::authenticate`].
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct AuthContext {
    /// The organisation every query of this request is scoped to.
    pub organization_id: i64,
    /// The key that authenticated.
    pub api_key_id: i64,
    /// The user the key belongs to (recorded as `user_id` on assistants it creates).
    pub user_id: i64,
    /// What the key may do.
    pub role: KeyRole,
}

/// An organisation's Twilio credentials. The auth token is a secret: `Debug` redacts it and the
/// type is deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct OrgTelephony {
    /// Twilio account SID (`AC…`), not secret.
    pub account_sid: String,
    /// Twilio auth token: signs webhooks and authenticates REST calls. Secret.
    pub auth_token: String,
}

impl fmt::Debug for OrgTelephony {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OrgTelephony")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// An assistant: the operator's whole record as one JSON document, with `name` and `is_active`
/// copied into columns for filtering.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AssistantRow {
    /// Database id.
    pub id: i64,
    /// Owning organisation.
    pub organization_id: i64,
    /// User who created it.
    pub user_id: i64,
    /// Display name (also inside `config`).
    pub name: String,
    /// Whether calls are answered by it (also inside `config`).
    pub is_active: bool,
    /// The assistant record as stored (the `switchboard-assistant` wire schema).
    pub config: Value,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms. Strictly increases on every write, so it doubles as a version
    /// for cache invalidation across instances.
    pub updated_at_ms: i64,
}

/// A phone number (E.164) owned by an organisation and routed to at most one assistant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PhoneNumberRow {
    /// Database id.
    pub id: i64,
    /// Owning organisation; no other organisation can assign this number while it holds it.
    pub organization_id: i64,
    /// Assistant that answers calls to it; `None` once unassigned.
    pub assistant_id: Option<i64>,
    /// The number, E.164 (e.g. `+14155550100`); unique across all organisations.
    pub number: String,
    /// Display name (ours, or Twilio's when synced without one).
    pub friendly_name: Option<String>,
    /// Twilio's IncomingPhoneNumber SID (`PN…`), once known from Twilio.
    pub twilio_sid: Option<String>,
    /// Twilio's capabilities (`{"voice": true, "sms": true, …}`); `{}` until known.
    pub capabilities: Value,
    /// ISO 3166-1 alpha-2 codes of the countries allowed to call the number; `None` (or
    /// empty) lets every country call.
    pub allowed_country_codes: Option<Vec<String>>,
    /// Whether the number is still in the organisation's Twilio account, as last seen.
    pub is_active: bool,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
}

/// Input of [`crate::Store::create_call`]. `started_at` is set to now by the store.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewCall {
    /// Owning organisation.
    pub organization_id: i64,
    /// Assistant handling the call, if any (an unrouted call has none).
    pub assistant_id: Option<i64>,
    /// Twilio call SID (`CA…`); unique.
    pub call_sid: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller number (E.164).
    pub from_number: String,
    /// Called number (E.164).
    pub to_number: String,
    /// Status at creation (`queued` for an outbound call, `in-progress` for an answered one).
    pub status: CallStatus,
    /// Per-call data: agenda, variables, welcome message override, …
    pub metadata: Value,
    /// Unix ms by which the media stream our TwiML handed out must start, else the call is
    /// closed as `stream_never_started`; `None` when no stream was handed out.
    pub stream_deadline_at_ms: Option<i64>,
}

/// A call record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRow {
    /// Database id.
    pub id: i64,
    /// Owning organisation.
    pub organization_id: i64,
    /// Assistant that handled it; `None` if unrouted or the assistant was deleted.
    pub assistant_id: Option<i64>,
    /// Twilio call SID.
    pub call_sid: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Caller number.
    pub from_number: String,
    /// Called number.
    pub to_number: String,
    /// Latest status.
    pub status: CallStatus,
    /// When the record was created (call start), unix ms.
    pub started_at_ms: i64,
    /// When the call ended, unix ms; set on the first terminal status.
    pub ended_at_ms: Option<i64>,
    /// Duration in seconds (Twilio's `CallDuration`, or computed from start/end).
    pub duration_s: Option<i64>,
    /// Why it ended; `None` while it runs.
    pub ended_reason: Option<EndedReason>,
    /// Per-call data given at creation.
    pub metadata: Value,
    /// Call-level counters recorded by the runtime at the end ([`crate::Store::set_call_metrics`]);
    /// `{}` until then.
    pub metrics: Value,
    /// The engine instance (`server.instance_id`) whose media stream carries or carried the
    /// call; `None` until a stream started. A restarted instance closes the open calls it
    /// carried before.
    pub instance_id: Option<String>,
    /// Unix ms by which the handed-out media stream must start; `None` once it started, or when
    /// none was handed out.
    pub stream_deadline_at_ms: Option<i64>,
    /// Creation time, unix ms.
    pub created_at_ms: i64,
    /// Last change, unix ms.
    pub updated_at_ms: i64,
}

/// Filters and page of [`crate::Store::list_calls`] / [`crate::Store::count_calls`]; `None`
/// fields do not filter.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallFilter {
    /// Only calls of this assistant.
    pub assistant_id: Option<i64>,
    /// Only calls with exactly this status.
    pub status: Option<CallStatus>,
    /// Only calls started at or after this time, unix ms.
    pub from_ms: Option<i64>,
    /// Only calls started at or before this time, unix ms.
    pub to_ms: Option<i64>,
    /// Only calls from or to this number.
    pub number: Option<String>,
    /// Only calls whose Twilio SID contains this text (case-insensitive).
    pub call_sid_contains: Option<String>,
    /// Only calls from or to a number containing this text.
    pub number_contains: Option<String>,
    /// Only calls of an assistant whose name contains this text (case-insensitive).
    pub assistant_name_contains: Option<String>,
    /// Only calls with an id below this one (keyset paging of exports: newest first, stable
    /// while new calls arrive).
    pub before_id: Option<i64>,
    /// Rows to skip (negative counts as 0).
    pub skip: i64,
    /// Maximum rows to return (negative counts as 0).
    pub limit: i64,
}

/// Input of [`crate::Store::add_transcript`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewTranscript {
    /// `user` or `assistant`.
    pub role: String,
    /// What was said (for the assistant: what the caller heard).
    pub content: String,
    /// Start of the segment, ms since call start.
    pub start_ms: i64,
    /// End of the segment, ms since call start.
    pub end_ms: i64,
    /// STT confidence 0..=1 for user segments.
    pub confidence: Option<f64>,
    /// Final (not interim) STT result.
    pub is_final: bool,
    /// The assistant was cut off during this segment.
    pub interrupted: bool,
}

/// A transcript segment.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TranscriptRow {
    /// Database id.
    pub id: i64,
    /// Call it belongs to.
    pub call_id: i64,
    /// `user` or `assistant`.
    pub role: String,
    /// Text.
    pub content: String,
    /// Start, ms since call start.
    pub start_ms: i64,
    /// End, ms since call start.
    pub end_ms: i64,
    /// STT confidence 0..=1.
    pub confidence: Option<f64>,
    /// Final STT result.
    pub is_final: bool,
    /// The assistant was cut off.
    pub interrupted: bool,
    /// Insertion time, unix ms.
    pub created_at_ms: i64,
}

/// Input of [`crate::Store::add_turn_metric`]: the latency timeline of one turn (issue 4).
/// Every timestamp is ms since call start; `None` when the turn never reached that point.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewTurnMetric {
    /// 0-based turn number within the call.
    pub turn_index: i64,
    /// The caller stopped speaking (VAD).
    pub user_speech_end_ms: Option<i64>,
    /// The STT final result for the turn arrived.
    pub stt_final_ms: Option<i64>,
    /// The LLM request was sent.
    pub llm_request_ms: Option<i64>,
    /// The first LLM token arrived.
    pub llm_first_token_ms: Option<i64>,
    /// The first TTS audio byte arrived.
    pub tts_first_byte_ms: Option<i64>,
    /// The first audio frame was sent to Twilio.
    pub first_audio_sent_ms: Option<i64>,
    /// Twilio confirmed (mark) the reply finished playing.
    pub playback_done_ms: Option<i64>,
    /// LLM provider that served the turn.
    pub llm_provider: Option<String>,
    /// STT provider that served the turn.
    pub stt_provider: Option<String>,
    /// TTS provider that served the turn.
    pub tts_provider: Option<String>,
    /// The reply was interrupted by the caller.
    pub interrupted: bool,
    /// Anything else worth keeping (JSON object; `null` is stored as `{}`).
    pub extra: Value,
}

/// A stored turn metric.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TurnMetricRow {
    /// Database id.
    pub id: i64,
    /// Call it belongs to.
    pub call_id: i64,
    /// 0-based turn number.
    pub turn_index: i64,
    /// See [`NewTurnMetric::user_speech_end_ms`].
    pub user_speech_end_ms: Option<i64>,
    /// See [`NewTurnMetric::stt_final_ms`].
    pub stt_final_ms: Option<i64>,
    /// See [`NewTurnMetric::llm_request_ms`].
    pub llm_request_ms: Option<i64>,
    /// See [`NewTurnMetric::llm_first_token_ms`].
    pub llm_first_token_ms: Option<i64>,
    /// See [`NewTurnMetric::tts_first_byte_ms`].
    pub tts_first_byte_ms: Option<i64>,
    /// See [`NewTurnMetric::first_audio_sent_ms`].
    pub first_audio_sent_ms: Option<i64>,
    /// See [`NewTurnMetric::playback_done_ms`].
    pub playback_done_ms: Option<i64>,
    /// LLM provider.
    pub llm_provider: Option<String>,
    /// STT provider.
    pub stt_provider: Option<String>,
    /// TTS provider.
    pub tts_provider: Option<String>,
    /// The reply was interrupted.
    pub interrupted: bool,
    /// Extra data.
    pub extra: Value,
    /// Insertion time, unix ms.
    pub created_at_ms: i64,
}

/// Input of [`crate::Store::add_recording`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewRecording {
    /// `mixed`, `user` or `assistant`.
    pub kind: String,
    /// File format, e.g. `wav`, `mp3`.
    pub format: String,
    /// Where the audio is: a local path or a URL.
    pub path_or_url: String,
    /// Length of the audio, ms.
    pub duration_ms: i64,
    /// File size, bytes.
    pub size_bytes: i64,
    /// Sample rate, Hz.
    pub sample_rate: i64,
    /// Finalised after a crash from what was written before it: the end of the call is missing.
    pub partial: bool,
}

/// A stored recording.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingRow {
    /// Database id.
    pub id: i64,
    /// Call it belongs to.
    pub call_id: i64,
    /// `mixed`, `user` or `assistant`.
    pub kind: String,
    /// File format.
    pub format: String,
    /// Local path or URL.
    pub path_or_url: String,
    /// Length, ms.
    pub duration_ms: i64,
    /// Size, bytes.
    pub size_bytes: i64,
    /// Sample rate, Hz.
    pub sample_rate: i64,
    /// Finalised after a crash: the end of the call is missing.
    pub partial: bool,
    /// Insertion time, unix ms.
    pub created_at_ms: i64,
}

/// Input of [`crate::Store::add_webhook_log`]: one delivery attempt of an outgoing webhook.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewWebhookLog {
    /// Event type, e.g. `status-update`, `end-of-call-report`.
    pub event: String,
    /// Target URL.
    pub url: String,
    /// HTTP status received; `None` when no response arrived.
    pub status_code: Option<i64>,
    /// 1-based attempt number.
    pub attempt: i64,
    /// The receiver answered 2xx.
    pub success: bool,
    /// Transport or HTTP error text.
    pub error: Option<String>,
    /// The JSON body sent.
    pub request_body: Value,
    /// The body received (truncated by the caller as it sees fit).
    pub response_body: Option<String>,
    /// Time from request to response or failure, ms.
    pub duration_ms: i64,
}

/// A stored webhook delivery attempt.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WebhookLogRow {
    /// Database id.
    pub id: i64,
    /// Call it was about, if any.
    pub call_id: Option<i64>,
    /// Event type.
    pub event: String,
    /// Target URL.
    pub url: String,
    /// HTTP status received.
    pub status_code: Option<i64>,
    /// 1-based attempt number.
    pub attempt: i64,
    /// 2xx received.
    pub success: bool,
    /// Error text.
    pub error: Option<String>,
    /// JSON body sent.
    pub request_body: Value,
    /// Body received.
    pub response_body: Option<String>,
    /// Request duration, ms.
    pub duration_ms: i64,
    /// When the attempt was logged, unix ms.
    pub created_at_ms: i64,
}

/// Call statistics of one assistant, computed from its call records.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct AssistantStats {
    /// Number of calls.
    pub total_calls: i64,
    /// Mean duration in seconds (rounded) over calls that have a duration; `None` if none do.
    pub avg_call_duration: Option<i64>,
    /// Percentage (0..=100) of ended calls whose status is `completed` and whose ended reason
    /// is not an error (see [`crate::is_error_reason`]); `None` when no call has ended.
    pub success_rate: Option<f64>,
}

/// Whether an ended reason counts as an error for the success rate: it contains `error` or
/// `fail`, case-insensitively (e.g. `error-stt`, `llm_failed`). The SQL of
/// [`crate::Store::assistant_stats`] applies the same rule.
pub fn is_error_reason(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("error") || r.contains("fail")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telephony_debug_redacts_token() {
        let t = OrgTelephony {
            account_sid: "AC123".into(),
            auth_token: "very-secret-token".into(),
        };
        let s = format!("{t:?}");
        assert!(s.contains("AC123"));
        assert!(!s.contains("very-secret-token"));
    }

    #[test]
    fn error_rule() {
        assert!(is_error_reason("error-stt"));
        assert!(is_error_reason("LLM_FAILED"));
        assert!(!is_error_reason("caller-hangup"));
        assert!(!is_error_reason("completed"));
    }
}
