//! `POST /twilio/voice` (alias `POST /twiml`): Twilio asks what to do with a call.
//!
//! The request must carry a valid `X-Twilio-Signature` made with the auth token of the
//! organisation owning the call; otherwise 403 and nothing else happens. The owner is found
//! from our number: `To` for an inbound call; for an outbound call (`Direction` `outbound-api`,
//! placed by `POST /calls/initiate`) the call record written at initiation, else `From`. Then:
//! unknown number or inactive assistant → a short spoken apology and hang-up (never dead air),
//! recorded as `failed` with the reason; a caller in `bypass_numbers` → `<Dial>` to the first
//! transfer number; otherwise `<Connect><Stream>` to our media websocket with a signed,
//! short-lived stream token that binds call SID, assistant and organisation, and the call
//! record is created or moved to `in-progress` (an outbound record keeps its `overrides`).
//! Each status change sends a `status-update` webhook.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use switchboard_assistant::AssistantConfig;
use switchboard_store::{AssistantRow, NewCall};
use switchboard_telephony::stream_token::{self, StreamClaims};
use switchboard_telephony::twiml::{Dial, Response as Twiml, Say, Stream};
use switchboard_telephony::webhook::{VoiceWebhook, parse_form_pairs};

use super::{TwilioAuth, forbidden, unix_now_s};
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
    let (assistant, org_id) = find_assistant(&state, &hook, outbound).await;
    let auth = TwilioAuth::for_org(&state, org_id).await;
    if let Err(why) = auth.check(&state, &uri, &headers, signed_params) {
        tracing::warn!(call_sid = %hook.call_sid, why, "voice webhook rejected");
        return forbidden(why);
    }
    if state.shutdown.is_cancelled() {
        return say_and_hang_up(RESTARTING_MESSAGE);
    }
    let direction = hook
        .direction
        .as_ref()
        .map(|d| d.as_str().to_owned())
        .unwrap_or_else(|| "inbound".to_owned());

    let Some(row) = assistant else {
        if let Some(org_id) = org_id {
            record_refused(&state, org_id, None, &hook, &direction, "unknown_number").await;
        }
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    };
    let config: AssistantConfig = match serde_json::from_value(row.config.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(assistant_id = row.id, error = %e, "stored assistant does not parse");
            record_refused(
                &state,
                row.organization_id,
                Some(row.id),
                &hook,
                &direction,
                "assistant_invalid",
            )
            .await;
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
    };
    if !row.is_active {
        record_refused(
            &state,
            row.organization_id,
            Some(row.id),
            &hook,
            &direction,
            "assistant_inactive",
        )
        .await;
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    }
    if is_bypass(&config, &hook.from) {
        return bypass(&state, &row, &config, &hook, &direction).await;
    }
    connect_stream(&state, &row, &hook, &direction).await
}

/// How long the webhook of an outbound call waits for the record `POST /calls/initiate` writes
/// right after Twilio accepted the call (Twilio may answer faster than we write), in ms.
const OUTBOUND_RECORD_WAIT_MS: u64 = 2_000;

/// Interval of that wait, in ms.
const OUTBOUND_RECORD_POLL_MS: u64 = 25;

/// The assistant answering this call and the organisation whose auth token must have signed
/// the webhook. Inbound: the assistant the called number (`To`) is routed to; for a number with
/// no assistant, its owner (else organisation `default`). Outbound (`Direction` `outbound-*`,
/// created by `POST /calls/initiate`): the assistant of the call record, found by call SID;
/// else the assistant our number (`From`) is routed to.
async fn find_assistant(
    state: &AppState,
    hook: &VoiceWebhook,
    outbound: bool,
) -> (Option<AssistantRow>, Option<i64>) {
    if outbound {
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(OUTBOUND_RECORD_WAIT_MS);
        loop {
            if let Ok(Some(call)) = state.store.get_call_by_sid(None, &hook.call_sid).await {
                let row = match call.assistant_id {
                    Some(id) => state
                        .store
                        .get_assistant(call.organization_id, id)
                        .await
                        .ok()
                        .flatten(),
                    None => None,
                };
                return (row, Some(call.organization_id));
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(OUTBOUND_RECORD_POLL_MS)).await;
        }
    }
    let ours = if outbound { &hook.from } else { &hook.to };
    if let Ok(Some(row)) = state.store.assistant_by_number(ours).await {
        let org = row.organization_id;
        return (Some(row), Some(org));
    }
    let owner = match state.store.get_number(ours).await {
        Ok(Some(n)) => Some(n.organization_id),
        _ => state.default_org_id().await,
    };
    (None, owner)
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
        record_refused(
            state,
            row.organization_id,
            Some(row.id),
            hook,
            direction,
            "bypass_no_transfer_number",
        )
        .await;
        return say_and_hang_up(UNAVAILABLE_MESSAGE);
    };
    let new = NewCall {
        organization_id: row.organization_id,
        assistant_id: Some(row.id),
        call_sid: hook.call_sid.clone(),
        direction: direction.to_owned(),
        from_number: hook.from.clone(),
        to_number: hook.to.clone(),
        status: "in-progress".to_owned(),
        metadata: json!({"bypass": true, "transferred_to": to}),
    };
    if let Err(e) = state.store.create_call(&new).await {
        tracing::warn!(call_sid = %hook.call_sid, error = %e, "could not record bypass call");
    }
    let _ = state
        .store
        .finish_call(
            &hook.call_sid,
            "completed",
            Some("bypass_transfer"),
            switchboard_store::now_ms(),
        )
        .await;
    twiml(
        Twiml::new()
            .dial(Dial::number(to).caller_id(&hook.to))
            .to_xml(),
    )
}

async fn record_refused(
    state: &AppState,
    org_id: i64,
    assistant_id: Option<i64>,
    hook: &VoiceWebhook,
    direction: &str,
    reason: &str,
) {
    let new = NewCall {
        organization_id: org_id,
        assistant_id,
        call_sid: hook.call_sid.clone(),
        direction: direction.to_owned(),
        from_number: hook.from.clone(),
        to_number: hook.to.clone(),
        status: "failed".to_owned(),
        metadata: json!({}),
    };
    // An outbound call (or a retried webhook) already has its record: finish that one.
    if let Err(e) = state.store.create_call(&new).await
        && !matches!(e, switchboard_store::StoreError::Conflict(_))
    {
        tracing::warn!(call_sid = %hook.call_sid, error = %e, "could not record a refused call");
        return;
    }
    tracing::info!(call_sid = %hook.call_sid, reason, "call refused");
    let _ = state
        .store
        .finish_call(
            &hook.call_sid,
            "failed",
            Some(reason),
            switchboard_store::now_ms(),
        )
        .await;
}

async fn connect_stream(
    state: &AppState,
    row: &AssistantRow,
    hook: &VoiceWebhook,
    direction: &str,
) -> Response {
    // An outbound call we placed already has its record (with the per-call overrides).
    let existing = state
        .store
        .get_call_by_sid(Some(row.organization_id), &hook.call_sid)
        .await
        .ok()
        .flatten();
    let call = match existing {
        Some(call) if call.ended_at_ms.is_some() => {
            // A retried webhook, or an outbound call terminated before it was answered.
            tracing::info!(call_sid = %hook.call_sid, "voice webhook for a call that already ended");
            return say_and_hang_up(UNAVAILABLE_MESSAGE);
        }
        Some(call) => {
            match state
                .store
                .update_call_status(&hook.call_sid, "in-progress", None, None)
                .await
            {
                Ok(Some(row)) => {
                    if row.status != call.status {
                        crate::webhooks::status_update(state, &row).await;
                    }
                    row
                }
                _ => call,
            }
        }
        None => {
            let new = NewCall {
                organization_id: row.organization_id,
                assistant_id: Some(row.id),
                call_sid: hook.call_sid.clone(),
                direction: direction.to_owned(),
                from_number: hook.from.clone(),
                to_number: hook.to.clone(),
                status: "in-progress".to_owned(),
                metadata: json!({}),
            };
            match state.store.create_call(&new).await {
                Ok(call) => {
                    crate::webhooks::status_update(state, &call).await;
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
