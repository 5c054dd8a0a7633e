//! `GET /twilio/stream`: the bidirectional Media Streams websocket.
//!
//! Twilio sends `connected`, then `start` carrying the `<Parameter>`s of our TwiML. The `start`
//! must carry a stream token we issued for this very call SID, unexpired and unforged;
//! otherwise the socket is closed (code 1008, policy violation) with a logged reason and no
//! assistant runs, so no provider is billed (an open stream endpoint would let anyone drive any
//! tenant's assistant). After a good `start` the socket is handed to the call runtime, which
//! owns it until the call ends; the call record is then finalised with its `ended_reason` and
//! the end-of-call webhooks go out.
//!
//! # Authentication: the stream token, not `X-Twilio-Signature`
//!
//! Twilio's upgrade request also carries `X-Twilio-Signature`, computed over the `wss://` URL
//! with no parameters (protocols.md §1.7). We do not check it: at upgrade time we do not know
//! the call, hence neither the organisation nor its auth token, and the signature covers only
//! a fixed URL, so a captured one could be replayed for any stream. The token in `start` is
//! bound to one call SID, assistant and organisation, expires after `twilio.stream_token_ttl_s`
//! and is checked in constant time before anything else happens. Within its lifetime a token
//! opens no second stream while the call is live on this instance, and none once the call
//! record has ended (a replay across instances at the very same moment is not detected).
//!
//! # Bad input
//!
//! Before `start`: `media`, `mark`, `dtmf`, unknown events, malformed JSON and binary frames
//! are counted (`switchboard_bad_media_messages_total`), logged and ignored; more than
//! [`MAX_BAD_BEFORE_START`] of them, a frame over `twilio.max_message_bytes`, a dropped socket
//! or no `start` within [`START_TIMEOUT`] refuse the stream. After `start` the runtime ignores
//! and counts bad messages the same way; a socket error (an oversized frame included) or a
//! dropped socket ends the call, and its record gets an `ended_reason`
//! (`media_socket_error`, `caller_hangup_socket_closed`, …).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use switchboard_assistant::AssistantConfig;
use switchboard_telephony::media::{InboundMessage, InboundParser, Start};
use switchboard_telephony::stream_token::{self, TokenError};

use super::unix_now_s;
use crate::call::resolve::{CallOverrides, CallParty};
use crate::call::{CallSetup, run_call};
use crate::metrics;
use crate::state::AppState;

/// How long we wait for `start` after the upgrade.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Bad messages tolerated before `start`; one more refuses the stream.
pub const MAX_BAD_BEFORE_START: u32 = 50;

/// The websocket upgrade.
pub async fn stream(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.settings.twilio.max_message_bytes;
    // Twilio's messages are ~400 bytes; tungstenite zero-fills its read buffer before every
    // read, so a small one saves that memset per frame (see docs/PERFORMANCE.md).
    ws.read_buffer_size(4 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let tasks = state.tasks.clone();
            tasks.track_future(handle(state, socket))
        })
}

/// Why a stream was refused before any assistant ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NoStart,
    TooManyBadMessages,
    MissingToken,
    BadToken,
    ExpiredToken,
    UnknownCall,
    AlreadyStreaming,
    CallEnded,
    UnknownAssistant,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::NoStart => "stream ended or timed out before start",
            Refusal::TooManyBadMessages => "too many malformed or unexpected messages before start",
            Refusal::MissingToken => "start without a stream token",
            Refusal::BadToken => "stream token invalid or for another call",
            Refusal::ExpiredToken => "stream token expired",
            Refusal::UnknownCall => "no call record for this stream",
            Refusal::AlreadyStreaming => "this call already has a live media stream",
            Refusal::CallEnded => "this call has already ended",
            Refusal::UnknownAssistant => "assistant of this call no longer exists",
        }
    }

    /// The `ended_reason` written to the call record when the refused stream is provably the
    /// call's own (its token is genuine and for this call SID); `None` otherwise, so that a
    /// forged `start` cannot end someone else's call record.
    fn ended_reason(self) -> Option<&'static str> {
        match self {
            Refusal::ExpiredToken => Some("stream_token_expired"),
            Refusal::UnknownAssistant => Some("assistant_not_found"),
            _ => None,
        }
    }
}

async fn handle(state: AppState, mut socket: WebSocket) {
    // Each phase is boxed so the task, which lives as long as the call, is not as wide as the
    // widest phase plus the call itself (heaptrack showed ~40 KiB per call task before).
    let start = match Box::pin(wait_for_start(&mut socket)).await {
        Ok(start) => start,
        Err(refusal) => return refuse(&mut socket, refusal, None).await,
    };
    let setup = match Box::pin(authorize(&state, &start)).await {
        Ok(setup) => setup,
        Err(refusal) => {
            refuse(&mut socket, refusal, Some(&start.call_sid)).await;
            if let Some(reason) = refusal.ended_reason() {
                Box::pin(finalise_refused(&state, &start.call_sid, reason)).await;
            }
            return;
        }
    };
    tracing::info!(call_sid = %setup.call_sid, assistant_id = setup.assistant_id, "call started");
    metrics::CALLS_STARTED.inc();
    let call_sid = setup.call_sid.clone();
    let call_id = setup.call_id;
    let organization_id = setup.organization_id;
    let outcome = Box::pin(run_call(state.clone(), socket, setup)).await;
    tracing::info!(call_sid = %call_sid, status = outcome.status, reason = %outcome.ended_reason, "call ended");
    if outcome.status == "failed" {
        metrics::CALLS_FAILED.inc();
    }
    if outcome.ended_reason == "media_socket_error" {
        // What an oversized or invalid frame (or a broken connection) produces mid-call.
        metrics::BAD_MEDIA_MESSAGES.inc();
    }
    Box::pin(finalise(
        &state,
        &call_sid,
        organization_id,
        call_id,
        &outcome,
    ))
    .await;
}

/// Writes the ended call's status and reason, then sends its webhooks.
async fn finalise(
    state: &AppState,
    call_sid: &str,
    organization_id: i64,
    call_id: i64,
    outcome: &crate::call::CallOutcome,
) {
    let before = state
        .store
        .get_call(organization_id, call_id)
        .await
        .ok()
        .flatten();
    match state
        .store
        .finish_call(
            call_sid,
            outcome.status,
            Some(&outcome.ended_reason),
            switchboard_store::now_ms(),
        )
        .await
    {
        Ok(Some(row)) => {
            if before.is_none_or(|b| b.status != row.status) {
                crate::webhooks::status_update(state, &row).await;
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(call_sid = %call_sid, error = %e, "could not finalise the call record")
        }
    }
    crate::webhooks::end_of_call(state, organization_id, call_id).await;
}

/// Ends the record of a genuine call whose stream was refused, and reports it.
async fn finalise_refused(state: &AppState, call_sid: &str, reason: &str) {
    metrics::CALLS_FAILED.inc();
    match state
        .store
        .finish_call(
            call_sid,
            "failed",
            Some(reason),
            switchboard_store::now_ms(),
        )
        .await
    {
        Ok(Some(call)) => {
            crate::webhooks::end_of_call(state, call.organization_id, call.id).await;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(call_sid, error = %e, "could not finalise a refused call"),
    }
}

async fn refuse(socket: &mut WebSocket, refusal: Refusal, call_sid: Option<&str>) {
    metrics::STREAMS_REFUSED.inc();
    tracing::warn!(
        call_sid = call_sid.unwrap_or("-"),
        reason = refusal.reason(),
        "media stream refused"
    );
    let _ = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code: 1008,
            reason: refusal.reason().into(),
        })))
        .await;
}

fn bad_before_start(bad: &mut u32, what: &'static str) -> Result<(), Refusal> {
    *bad += 1;
    metrics::BAD_MEDIA_MESSAGES.inc();
    if *bad <= 5 {
        tracing::warn!(what, "media-stream message before start ignored");
    }
    if *bad > MAX_BAD_BEFORE_START {
        Err(Refusal::TooManyBadMessages)
    } else {
        Ok(())
    }
}

/// Reads up to `start`: `connected` and pings pass; anything else is counted and ignored (up to
/// [`MAX_BAD_BEFORE_START`]); a socket error, close or [`START_TIMEOUT`] refuses the stream.
async fn wait_for_start(socket: &mut WebSocket) -> Result<Start, Refusal> {
    let parser = InboundParser::default();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut bad = 0u32;
    loop {
        let msg = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .map_err(|_| Refusal::NoStart)?;
        match msg {
            Some(Ok(WsMessage::Text(text))) => match parser.parse(text.as_str()) {
                Ok(InboundMessage::Connected(_)) => continue,
                Ok(InboundMessage::Start(start)) => return Ok(start),
                Ok(InboundMessage::Media(_)) => bad_before_start(&mut bad, "media before start")?,
                Ok(InboundMessage::Unknown(_)) => bad_before_start(&mut bad, "unknown event")?,
                Ok(_) => bad_before_start(&mut bad, "mark, dtmf or stop before start")?,
                Err(_) => bad_before_start(&mut bad, "malformed message")?,
            },
            Some(Ok(WsMessage::Ping(_))) | Some(Ok(WsMessage::Pong(_))) => continue,
            Some(Ok(WsMessage::Binary(_))) => bad_before_start(&mut bad, "binary frame")?,
            Some(Ok(WsMessage::Close(_))) | None => return Err(Refusal::NoStart),
            Some(Err(e)) => {
                metrics::BAD_MEDIA_MESSAGES.inc();
                tracing::warn!(error = %e, "media socket failed before start");
                return Err(Refusal::NoStart);
            }
        }
    }
}

/// Checks the stream token of `start` and gathers what the call needs.
async fn authorize(state: &AppState, start: &Start) -> Result<Box<CallSetup>, Refusal> {
    let token = start
        .custom_parameters
        .get(stream_token::PARAMETER_NAME)
        .filter(|t| !t.is_empty())
        .ok_or(Refusal::MissingToken)?;
    let secret = state.stream_token_secret.as_bytes();
    let verified = match stream_token::verify(token, secret, unix_now_s(), &start.call_sid) {
        Ok(v) => v,
        Err(TokenError::Expired { .. }) => {
            // Genuine but late: is it this call's own? Checking at time 0 (never expired)
            // answers that after the MAC check, without trusting the claims first.
            return Err(
                if stream_token::verify(token, secret, 0, &start.call_sid).is_ok() {
                    Refusal::ExpiredToken
                } else {
                    Refusal::BadToken
                },
            );
        }
        Err(_) => return Err(Refusal::BadToken),
    };
    let claims = verified.claims;
    let org_id: i64 = claims
        .organization_id
        .parse()
        .map_err(|_| Refusal::BadToken)?;
    let assistant_id: i64 = claims.assistant_id.parse().map_err(|_| Refusal::BadToken)?;
    let call = state
        .store
        .get_call_by_sid(Some(org_id), &start.call_sid)
        .await
        .ok()
        .flatten()
        .ok_or(Refusal::UnknownCall)?;
    if claims.call_id != call.id.to_string() {
        return Err(Refusal::BadToken);
    }
    // A token is good for its whole lifetime: a replay must not start a second assistant on
    // the same call (on this instance), nor revive an ended one.
    if state.calls.contains_key(&start.call_sid) {
        return Err(Refusal::AlreadyStreaming);
    }
    if call.ended_at_ms.is_some() {
        return Err(Refusal::CallEnded);
    }
    // Read fresh: a change made over the API applies to the next call.
    let row = state
        .store
        .get_assistant(org_id, assistant_id)
        .await
        .ok()
        .flatten()
        .ok_or(Refusal::UnknownAssistant)?;
    let assistant: AssistantConfig =
        serde_json::from_value(row.config).map_err(|_| Refusal::UnknownAssistant)?;
    let overrides: CallOverrides = call
        .metadata
        .get("overrides")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let org_keys = state
        .store
        .get_org_provider_keys(org_id)
        .await
        .unwrap_or_default();
    let outbound = call.direction.starts_with("outbound");
    Ok(Box::new(CallSetup {
        call_id: call.id,
        call_sid: start.call_sid.clone(),
        stream_sid: start.stream_sid.clone(),
        organization_id: org_id,
        assistant_id,
        assistant,
        overrides,
        party: CallParty {
            caller_number: if outbound {
                call.to_number.clone()
            } else {
                call.from_number.clone()
            },
            assistant_number: if outbound {
                call.from_number.clone()
            } else {
                call.to_number.clone()
            },
            direction: call.direction.clone(),
            // Filled by the runtime from the store (conversation continuity).
            previous_conversation: Vec::new(),
        },
        org_keys,
    }))
}
