//! `POST /twilio/voice` (alias `POST /twiml`): Twilio asks what to do with a call.
//!
//! The request must carry a valid `X-Twilio-Signature` made with the auth token of the
//! organisation owning the call; otherwise 403 and nothing else happens. The owner is found
//! with one read each, before anything waits: for an outbound call (`Direction`
//! `outbound-api`, placed by `POST /calls/initiate`) the call record written at initiation if
//! it is there yet; else the owner of our number (`To` inbound, `From` outbound); else
//! organisation `default`. Only a verified webhook then waits (briefly) for an outbound record
//! Twilio outran. Every record it writes is the signing organisation's: a SID another
//! organisation owns is never touched. Then: unknown number or inactive assistant → a short
//! spoken apology and hang-up (never dead air), recorded as `failed` with the reason; a caller
//! from a country the number does not allow (`allowed_country_codes`) → `<Reject/>`; a caller
//! in `bypass_numbers` → `<Dial>` to the first transfer number; otherwise `<Connect><Stream>` to
//! our media websocket with a signed, short-lived stream token that binds call SID, assistant
//! and organisation, and the call record is created or moved to `in-progress` (an outbound
//! record keeps its `overrides`), with a deadline (`twilio.stream_start_timeout_s`) by which
//! the stream must start. A database error is answered with the apology and recorded as
//! nothing (it is no fact about the call). Each status change sends a `status-update` webhook.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchboard_assistant::AssistantConfig;
use switchboard_store::{
    AssistantRow, CallRow, CallStatus, EndedReason, NewCall, PhoneNumberRow, StoreError,
};
use switchboard_telephony::stream_token::{self, StreamClaims};
use switchboard_telephony::twiml::{Dial, Response as Twiml, Say, Stream};
use switchboard_telephony::webhook::{VoiceWebhook, parse_form_pairs};

use super::{TwilioAuth, forbidden, unix_now_s};
use crate::config::DrainVoiceAnswer;
use crate::metrics;
use crate::state::AppState;

/// Said when a number has no active assistant.
pub const UNAVAILABLE_MESSAGE: &str =
    "Sorry, this number is not available right now. Please try again later. Goodbye.";

/// Said when the engine is draining for a restart.
pub const RESTARTING_MESSAGE: &str =
    "Sorry, we can't take your call this very moment. Please call again in a minute. Goodbye.";

pub(crate) fn twiml(body: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn say_and_hang_up(text: &str) -> Response {
    twiml(Twiml::new().say(Say::new(text)).hangup().to_xml())
}

/// The voice webhook.
pub async fn voice(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = parse_form_pairs(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed form body").into_response();
    };
    answer(state, uri, headers, &body, &params).await
}

/// The voice webhook when the number is configured for `GET`: the fields arrive in the query
/// string, and the signature covers the full URL with no parameters appended.
pub async fn voice_get(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let query = uri.query().unwrap_or("").as_bytes().to_vec();
    answer(state, uri, headers, &query, &[]).await
}

/// Handles a voice webhook whose fields are `form` and whose signature covers the URL plus
/// `signed_params`.
async fn answer(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    form: &[u8],
    signed_params: &[(String, String)],
) -> Response {
    let Ok(hook) = VoiceWebhook::from_form(form) else {
        return (StatusCode::BAD_REQUEST, "missing CallSid, From or To").into_response();
    };
    let outbound = hook
        .direction
        .as_ref()
        .is_some_and(|d| d.as_str().starts_with("outbound"));
    let (org_id, our_number) = match signing_org(&state, &hook, outbound).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(call_sid = %hook.call_sid, error = %e, "voice webhook: database error");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    let auth = TwilioAuth::for_org(&state, org_id).await;
    if let Err(why) = auth.check(&state, &uri, &headers, signed_params) {
        tracing::warn!(call_sid = %hook.call_sid, why, "voice webhook rejected");
        return forbidden(why);
    }
    // Verified: from here on `org_id` is the organisation that signed.
    let Some(org_id) = org_id else {
        return forbidden("no organisation owns this call");
    };
    if state.shutdown.is_cancelled() {
        metrics::count(metrics::names::CALLS_TURNED_AWAY_DRAINING);
        return match state.settings.server.drain_voice_answer {
            DrainVoiceAnswer::Hangup => say_and_hang_up(RESTARTING_MESSAGE),
            DrainVoiceAnswer::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "draining for a restart: another instance takes this call",
            )
                .into_response(),
        };
    }
    let direction = hook
        .direction
        .as_ref()
        .map(|d| d.as_str().to_owned())
        .unwrap_or_else(|| "inbound".to_owned());

    let (assistant, existing) = match find_assistant(&state, org_id, &hook, outbound).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(call_sid = %hook.call_sid, error = %e, "voice webhook: database error");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    let refused = |assistant_id, reason| Refused {
        org_id,
        assistant_id,
        direction: &direction,
        reason,
    };
    let Some(row) = assistant else {
        record_refused(&state, &hook, refused(None, EndedReason::UnknownNumber)).await;
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    };
    let config: AssistantConfig = match serde_json::from_value(row.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(assistant_id = row.id, error = %e, "stored assistant does not parse");
            record_refused(
                &state,
                &hook,
                refused(Some(row.id), EndedReason::AssistantInvalid),
            )
            .await;
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    if !row.is_active {
        record_refused(
            &state,
            &hook,
            refused(Some(row.id), EndedReason::AssistantInactive),
        )
        .await;
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    }
    if !outbound && !country_allowed(our_number.as_ref(), org_id, &hook) {
        record_refused(
            &state,
            &hook,
            refused(Some(row.id), EndedReason::CountryNotAllowed),
        )
        .await;
        return twiml(Twiml::new().reject().to_xml());
    }
    if is_bypass(&config, &hook.from) {
        return bypass(&state, &row, &config, &hook, &direction).await;
    }
    connect_stream(
        &state,
        &row,
        config.webhook_url.as_deref(),
        existing,
        &hook,
        &direction,
    )
    .await
}

/// Whether the caller's country (Twilio's `FromCountry`, ISO 3166-1 alpha-2) may call
/// `number` (the called number as [`signing_org`] read it): yes when it has no
/// `allowed_country_codes` (or an empty list); otherwise only a listed country, so a call
/// without `FromCountry` (SIP, client) is refused too.
fn country_allowed(number: Option<&PhoneNumberRow>, org_id: i64, hook: &VoiceWebhook) -> bool {
    let allowed = number
        .filter(|n| n.organization_id == org_id)
        .and_then(|n| n.allowed_country_codes.as_deref());
    match allowed {
        Some(list) if !list.is_empty() => hook
            .from_country
            .as_deref()
            .is_some_and(|c| list.iter().any(|a| a.eq_ignore_ascii_case(c))),
        _ => true,
    }
}

/// How long the webhook of an outbound call waits for the record `POST /calls/initiate` writes
/// right after Twilio accepted the call (Twilio may answer faster than we write), in ms.
const OUTBOUND_RECORD_WAIT_MS: u64 = 2_000;

/// Interval of that wait, in ms.
const OUTBOUND_RECORD_POLL_MS: u64 = 25;

/// The organisation whose auth token must have signed this webhook, found without waiting so
/// that an unsigned request costs one or two reads: for an outbound call, the owner of its
/// record if written yet; else the owner of our number (`To` inbound, `From` outbound: a call
/// we place comes from one of the organisation's numbers); else organisation `default`. Also
/// returns our number's record when it was read (its `allowed_country_codes` apply inbound).
async fn signing_org(
    state: &AppState,
    hook: &VoiceWebhook,
    outbound: bool,
) -> Result<(Option<i64>, Option<PhoneNumberRow>), StoreError> {
    if outbound && let Some(call) = state.store.get_call_by_sid(None, &hook.call_sid).await? {
        return Ok((Some(call.organization_id), None));
    }
    let ours = if outbound { &hook.from } else { &hook.to };
    match state.store.get_number(ours).await? {
        Some(number) => Ok((Some(number.organization_id), Some(number))),
        None => Ok((state.default_org_id().await, None)),
    }
}

/// The organisation's outbound call record: `POST /calls/initiate` writes it right after
/// Twilio accepted the call, and Twilio may fetch this webhook before that write lands, so a
/// verified webhook waits for it up to [`OUTBOUND_RECORD_WAIT_MS`].
async fn wait_for_outbound_record(
    state: &AppState,
    org_id: i64,
    call_sid: &str,
) -> Result<Option<CallRow>, StoreError> {
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(OUTBOUND_RECORD_WAIT_MS);
    loop {
        if let Some(call) = state.store.get_call_by_sid(Some(org_id), call_sid).await? {
            return Ok(Some(call));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_millis(OUTBOUND_RECORD_POLL_MS)).await;
    }
}

/// The organisation's assistant answering this call, with the call's record when there is one
/// (an outbound call we placed; a retried webhook). Outbound: the assistant of the call record;
/// else (no record, e.g. a call placed outside Switchboard) the one our number (`From`) is
/// routed to. Inbound: the one the called number (`To`) is routed to, read at once with the
/// record. No assistant: `None`.
async fn find_assistant(
    state: &AppState,
    org_id: i64,
    hook: &VoiceWebhook,
    outbound: bool,
) -> Result<(Option<AssistantRow>, Option<CallRow>), StoreError> {
    if outbound {
        let record = wait_for_outbound_record(state, org_id, &hook.call_sid).await?;
        let assistant = match record.as_ref().map(|call| call.assistant_id) {
            Some(Some(id)) => state.store.get_assistant(org_id, id).await?,
            Some(None) => None,
            None => {
                state
                    .store
                    .assistant_by_number_in_org(org_id, &hook.from)
                    .await?
            }
        };
        return Ok((assistant, record));
    }
    let (assistant, record) = tokio::join!(
        state.store.assistant_by_number_in_org(org_id, &hook.to),
        state.store.get_call_by_sid(Some(org_id), &hook.call_sid),
    );
    Ok((assistant?, record?))
}

fn is_bypass(config: &AssistantConfig, from: &str) -> bool {
    config
        .bypass_numbers
        .as_ref()
        .is_some_and(|list| list.iter().any(|n| n == from))
}

async fn bypass(
    state: &AppState,
    row: &AssistantRow,
    config: &AssistantConfig,
    hook: &VoiceWebhook,
    direction: &str,
) -> Response {
    let Some(to) = config.tools_settings.transfer_call.transfer_numbers.first() else {
        let refusal = Refused {
            org_id: row.organization_id,
            assistant_id: Some(row.id),
            direction,
            reason: EndedReason::BypassNoTransferNumber,
        };
        record_refused(state, hook, refusal).await;
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    };
    let new = NewCall {
        organization_id: row.organization_id,
        assistant_id: Some(row.id),
        call_sid: hook.call_sid.clone(),
        direction: direction.to_owned(),
        from_number: hook.from.clone(),
        to_number: hook.to.clone(),
        status: CallStatus::InProgress,
        metadata: json!({"bypass": true, "transferred_to": to}),
        stream_deadline_at_ms: None,
    };
    if let Err(e) = state.store.create_call(&new).await {
        tracing::warn!(call_sid = %hook.call_sid, error = %e, "could not record bypass call");
    }
    finish(
        state,
        row.organization_id,
        &hook.call_sid,
        CallStatus::Completed,
        EndedReason::BypassTransfer,
    )
    .await;
    twiml(
        Twiml::new()
            .dial(Dial::number(to).caller_id(&hook.to))
            .to_xml(),
    )
}

/// A call the webhook turns away: whose record, and why.
struct Refused<'a> {
    org_id: i64,
    assistant_id: Option<i64>,
    direction: &'a str,
    reason: EndedReason,
}

/// Records a refused call as `failed` with its reason, as the signing organisation's.
async fn record_refused(state: &AppState, hook: &VoiceWebhook, refused: Refused<'_>) {
    let new = NewCall {
        organization_id: refused.org_id,
        assistant_id: refused.assistant_id,
        call_sid: hook.call_sid.clone(),
        direction: refused.direction.to_owned(),
        from_number: hook.from.clone(),
        to_number: hook.to.clone(),
        status: CallStatus::Failed,
        metadata: json!({}),
        stream_deadline_at_ms: None,
    };
    // An outbound call (or a retried webhook) already has its record: finish that one.
    if let Err(e) = state.store.create_call(&new).await
        && !matches!(e, StoreError::Conflict(_))
    {
        tracing::warn!(call_sid = %hook.call_sid, error = %e, "could not record a refused call");
        return;
    }
    tracing::info!(call_sid = %hook.call_sid, reason = %refused.reason, "call refused");
    finish(
        state,
        refused.org_id,
        &hook.call_sid,
        CallStatus::Failed,
        refused.reason,
    )
    .await;
}

/// Ends the organisation's call `call_sid` with `status` and `reason`; logs what did not
/// happen (a SID that is not the organisation's is left alone, and said so).
async fn finish(
    state: &AppState,
    org_id: i64,
    call_sid: &str,
    status: CallStatus,
    reason: EndedReason,
) {
    match state
        .store
        .finish_call(
            org_id,
            call_sid,
            status,
            Some(&reason),
            switchboard_store::now_ms(),
        )
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => tracing::warn!(
            call_sid,
            org_id,
            %reason,
            "not ending a call this organisation does not own"
        ),
        Err(e) => tracing::error!(call_sid, %reason, error = %e, "could not end the call record"),
    }
}

/// Records the call (or takes up `existing`, its record as [`find_assistant`] read it) and
/// answers with the TwiML that opens its media stream; `webhook_url` is the assistant's
/// (`row`'s), for the call's `status-update`.
async fn connect_stream(
    state: &AppState,
    row: &AssistantRow,
    webhook_url: Option<&str>,
    existing: Option<CallRow>,
    hook: &VoiceWebhook,
    direction: &str,
) -> Response {
    let (org_id, assistant_id) = (row.organization_id, row.id);
    let timeout_ms = state
        .settings
        .twilio
        .stream_start_timeout_s
        .saturating_mul(1000);
    let deadline_ms =
        switchboard_store::now_ms().saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
    // An outbound call we placed already has its record (with the per-call overrides).
    let call = match existing {
        Some(call) if call.ended_at_ms.is_some() => {
            // A retried webhook, or an outbound call terminated before it was answered.
            tracing::info!(call_sid = %hook.call_sid, "voice webhook for a call that already ended");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
        Some(call) => {
            let updated = state
                .store
                .update_call_status(org_id, &hook.call_sid, CallStatus::InProgress, None, None)
                .await;
            let expected = state
                .store
                .expect_stream(org_id, call.id, deadline_ms)
                .await;
            match (updated, expected) {
                (Ok(Some(row)), Ok(true)) => {
                    if row.status != call.status {
                        crate::webhooks::status_update_of(state, &row, assistant_id, webhook_url)
                            .await;
                    }
                    row
                }
                (Ok(_), Ok(false)) => {
                    // Ended meanwhile, or its stream already started (a retried webhook).
                    tracing::info!(call_sid = %hook.call_sid, "voice webhook for a call that is not waiting for a stream");
                    return say_and_hang_up(UNAVAILABLE_MESSAGE);
                }
                (Ok(None), Ok(true)) => call,
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(call_sid = %hook.call_sid, error = %e, "could not update the call record");
                    return say_and_hang_up(UNAVAILABLE_MESSAGE);
                }
            }
        }
        None => {
            let new = NewCall {
                organization_id: org_id,
                assistant_id: Some(row.id),
                call_sid: hook.call_sid.clone(),
                direction: direction.to_owned(),
                from_number: hook.from.clone(),
                to_number: hook.to.clone(),
                status: CallStatus::InProgress,
                metadata: json!({}),
                stream_deadline_at_ms: Some(deadline_ms),
            };
            match state.store.create_call(&new).await {
                Ok(call) => {
                    crate::webhooks::status_update_of(state, &call, assistant_id, webhook_url)
                        .await;
                    call
                }
                Err(e) => {
                    tracing::error!(call_sid = %hook.call_sid, error = %e, "could not create call record");
                    return say_and_hang_up(UNAVAILABLE_MESSAGE);
                }
            }
        }
    };
    let claims = StreamClaims {
        call_sid: hook.call_sid.clone(),
        assistant_id: row.id.to_string(),
        organization_id: row.organization_id.to_string(),
        call_id: call.id.to_string(),
    };
    let token = match stream_token::issue(
        &claims,
        state.stream_token_secret.as_bytes(),
        unix_now_s(),
        state.settings.twilio.stream_token_ttl_s,
    ) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "could not issue a stream token");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    let ws_url = state.public_ws_url("/twilio/stream");
    let stream = match Stream::new(&ws_url) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, url = %ws_url, "public URL cannot carry a media stream");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    let stream = stream
        .status_callback(&format!("{}/twilio/status", state.public_base_url))
        .parameter("call_id", &call.id.to_string())
        .parameter(stream_token::PARAMETER_NAME, &token);
    twiml(Twiml::new().connect_stream(stream).to_xml())
}
