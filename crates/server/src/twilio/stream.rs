//! `GET /twilio/stream`: the bidirectional Media Streams websocket.
//!
//! Twilio sends `connected`, then `start` carrying the `<Parameter>`s of our TwiML. The `start`
//! must carry a stream token we issued for this very call SID, unexpired and unforged;
//! otherwise the socket is closed with a logged reason and no assistant runs, so no provider is
//! billed (an open stream endpoint would let anyone drive any tenant's assistant). After a good
//! `start` the socket is handed to the call runtime, which owns it until the call ends; the call
//! record is then finalised with its `ended_reason` and the end-of-call webhooks go out.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use switchboard_assistant::AssistantConfig;
use switchboard_telephony::media::{InboundMessage, InboundParser, Start};
use switchboard_telephony::stream_token;

use super::unix_now_s;
use crate::call::resolve::{CallOverrides, CallParty};
use crate::call::{CallSetup, run_call};
use crate::metrics;
use crate::state::AppState;

/// How long we wait for `start` after the upgrade.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The websocket upgrade.
pub async fn stream(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    let max = state.settings.twilio.max_message_bytes;
    ws.max_message_size(max)
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
    BadFirstMessages,
    MissingToken,
    BadToken,
    UnknownCall,
    UnknownAssistant,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::NoStart => "stream ended before start",
            Refusal::BadFirstMessages => "malformed or unexpected message before start",
            Refusal::MissingToken => "start without a stream token",
            Refusal::BadToken => "stream token invalid, expired or for another call",
            Refusal::UnknownCall => "no call record for this stream",
            Refusal::UnknownAssistant => "assistant of this call no longer exists",
        }
    }
}

async fn handle(state: AppState, mut socket: WebSocket) {
    let start = match wait_for_start(&mut socket).await {
        Ok(start) => start,
        Err(refusal) => return refuse(&mut socket, refusal, None).await,
    };
    let setup = match authorize(&state, &start).await {
        Ok(setup) => setup,
        Err(refusal) => {
            return refuse(&mut socket, refusal, Some(&start.call_sid)).await;
        }
    };
    tracing::info!(call_sid = %setup.call_sid, assistant_id = setup.assistant_id, "call started");
    metrics::CALLS_STARTED.inc();
    let call_sid = setup.call_sid.clone();
    let call_id = setup.call_id;
    let organization_id = setup.organization_id;
    let outcome = run_call(state.clone(), socket, setup).await;
    tracing::info!(call_sid = %call_sid, status = outcome.status, reason = %outcome.ended_reason, "call ended");
    if outcome.status == "failed" {
        metrics::CALLS_FAILED.inc();
    }
    if let Err(e) = state
        .store
        .finish_call(
            &call_sid,
            outcome.status,
            Some(&outcome.ended_reason),
            switchboard_store::now_ms(),
        )
        .await
    {
        tracing::warn!(call_sid = %call_sid, error = %e, "could not finalise the call record");
    }
    crate::webhooks::end_of_call(&state, organization_id, call_id).await;
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

/// Reads `connected` and `start`; anything else first is a refusal.
async fn wait_for_start(socket: &mut WebSocket) -> Result<Start, Refusal> {
    let parser = InboundParser::default();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .map_err(|_| Refusal::NoStart)?;
        match msg {
            Some(Ok(WsMessage::Text(text))) => match parser.parse(text.as_str()) {
                Ok(InboundMessage::Connected(_)) => continue,
                Ok(InboundMessage::Start(start)) => return Ok(start),
                _ => return Err(Refusal::BadFirstMessages),
            },
            Some(Ok(WsMessage::Ping(_))) | Some(Ok(WsMessage::Pong(_))) => continue,
            Some(Ok(_)) => return Err(Refusal::BadFirstMessages),
            Some(Err(_)) | None => return Err(Refusal::NoStart),
        }
    }
}

/// Checks the stream token of `start` and gathers what the call needs.
async fn authorize(state: &AppState, start: &Start) -> Result<CallSetup, Refusal> {
    let token = start
        .custom_parameters
        .get("token")
        .ok_or(Refusal::MissingToken)?;
    let verified = stream_token::verify(
        token,
        state.stream_token_secret.as_bytes(),
        unix_now_s(),
        &start.call_sid,
    )
    .map_err(|_| Refusal::BadToken)?;
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
    Ok(CallSetup {
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
        },
        org_keys,
    })
}
