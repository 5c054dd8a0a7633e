//! `GET /twilio/stream`: the bidirectional Media Streams websocket.
//!
//! Twilio sends `connected`, then `start` carrying the `<Parameter>`s of our TwiML. The `start`
//! must carry a stream token we issued for this very call SID, unexpired and unforged;
//! otherwise the socket is closed (code 1008, policy violation) with a logged reason and no
//! assistant runs, so no provider is billed (an open stream endpoint would let anyone drive any
//! tenant's assistant). A good `start` claims the call record for this instance
//! (`server.instance_id`, for crash recovery) in one conditional write, so a call runs once
//! across all instances; the socket then goes to the call runtime, which owns it until the call
//! ends; the call record is then finalised with its `ended_reason` and the end-of-call webhooks
//! go out.
//!
//! A database error while reading what the call needs is retried a few times with a short
//! backoff; if it persists the call ends as `engine_error`, never as a fact about the call
//! (`assistant_not_found` is only said when the database answered that it is gone).
//!
//! # Authentication: the stream token, not `X-Twilio-Signature`
//!
//! Twilio's upgrade request also carries `X-Twilio-Signature`, computed over the `wss://` URL
//! with no parameters (docs/providers/twilio.md#connection-and-stream-authentication). We do not check it: at upgrade time we do not know
//! the call, hence neither the organisation nor its auth token, and the signature covers only
//! a fixed URL, so a captured one could be replayed for any stream. The token in `start` is
//! bound to one call SID, assistant and organisation, expires after `twilio.stream_token_ttl_s`
//! and is checked in constant time before anything else happens. Within its lifetime a token
//! opens no second stream: the claim of the call record fails once a stream started (on any
//! instance) or the call ended.
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
use switchboard_store::{CallStatus, EndedReason, StoreError};
use switchboard_telephony::media::{InboundMessage, InboundParser, Start};
use switchboard_telephony::stream_token::{self, TokenError};
use tracing::Instrument as _;

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
    InvalidAssistant,
    StoreUnavailable,
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
            Refusal::InvalidAssistant => "assistant of this call cannot be read",
            Refusal::StoreUnavailable => "the database did not answer",
        }
    }

    /// The `ended_reason` written to the call record when the refused stream is provably the
    /// call's own (its token is genuine and for this call SID); `None` for refusals that say
    /// nothing about the call (a forged `start` cannot end someone else's call record, and a
    /// call already streaming or ended keeps its record).
    fn ended_reason(self) -> Option<EndedReason> {
        match self {
            Refusal::ExpiredToken => Some(EndedReason::StreamTokenExpired),
            Refusal::UnknownAssistant => Some(EndedReason::AssistantNotFound),
            Refusal::InvalidAssistant => Some(EndedReason::AssistantInvalid),
            Refusal::StoreUnavailable => Some(EndedReason::EngineError),
            _ => None,
        }
    }
}

/// A refusal, and the organisation the stream's token genuinely names when it was checked:
/// only then may the refusal end the call record (scoped to that organisation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refused {
    refusal: Refusal,
    proven_org: Option<i64>,
}

impl From<Refusal> for Refused {
    fn from(refusal: Refusal) -> Self {
        Refused {
            refusal,
            proven_org: None,
        }
    }
}

impl Refusal {
    /// This refusal, of a stream whose genuine token names `org_id`.
    fn of_org(self, org_id: i64) -> Refused {
        Refused {
            refusal: self,
            proven_org: Some(org_id),
        }
    }
}

/// How often, and how patiently, a store read at stream start is retried on a database error
/// before the call ends as `engine_error`.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    /// Attempts in all, the first included.
    attempts: u32,
    /// Wait before the first retry (doubled for each further one).
    first_backoff: Duration,
}

/// The policy of stream start: 4 attempts, waiting 50, 100 then 200 ms, so a database that
/// stays down costs the caller about a third of a second before the call ends.
const STORE_RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    first_backoff: Duration::from_millis(50),
};

/// Runs the store read `read` until it succeeds, fails with an error that is not the
/// database's (retrying would not help), or fails `policy.attempts` times. Each failure is
/// logged with `what`.
async fn read_with_retries<T, F, Fut>(
    policy: RetryPolicy,
    what: &'static str,
    mut read: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut backoff = policy.first_backoff;
    let mut attempt = 1;
    loop {
        match read().await {
            Ok(v) => return Ok(v),
            Err(e @ StoreError::Database(_)) if attempt < policy.attempts => {
                tracing::warn!(what, attempt, error = %e, "store read failed at stream start; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(e) => {
                tracing::error!(what, attempt, error = %e, "store read failed at stream start");
                return Err(e);
            }
        }
    }
}

/// What a store answer about the call's assistant means for the stream: the assistant, or
/// the refusal. Only a database that answered "no such row" makes `assistant_not_found`; an
/// error makes `engine_error`.
fn assistant_or_refusal(
    read: Result<Option<switchboard_store::AssistantRow>, StoreError>,
) -> Result<AssistantConfig, Refusal> {
    match read {
        Ok(Some(row)) => serde_json::from_value(row.config).map_err(|_| Refusal::InvalidAssistant),
        Ok(None) => Err(Refusal::UnknownAssistant),
        Err(_) => Err(Refusal::StoreUnavailable),
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
        Err(refused) => {
            refuse(&mut socket, refused.refusal, Some(&start.call_sid)).await;
            if let (Some(reason), Some(org_id)) =
                (refused.refusal.ended_reason(), refused.proven_org)
            {
                Box::pin(finalise_refused(&state, org_id, &start.call_sid, reason)).await;
            }
            return;
        }
    };
    // One span per call: every line the call task, its provider tasks and its finalising log
    // carries the call SID and id (and OpenTelemetry exports it when enabled).
    let span = tracing::info_span!("call", call_sid = %setup.call_sid, call_id = setup.call_id);
    Box::pin(run_and_finalise(state, socket, setup).instrument(span)).await;
}

/// Runs a started call, counts how it ended and finalises its record.
async fn run_and_finalise(state: AppState, socket: WebSocket, setup: Box<CallSetup>) {
    tracing::info!(assistant_id = setup.assistant_id, "call started");
    metrics::count(metrics::names::CALLS_STARTED);
    let call_sid = setup.call_sid.clone();
    let call_id = setup.call_id;
    let organization_id = setup.organization_id;
    let outcome = Box::pin(run_call(state.clone(), socket, setup)).await;
    tracing::info!(status = %outcome.status, reason = %outcome.ended_reason, "call ended");
    metrics::call::call_ended(
        outcome.status,
        Some(&outcome.ended_reason),
        metrics::org_label(&state, organization_id),
    );
    if outcome.ended_reason == EndedReason::MediaSocketError {
        // What an oversized or invalid frame (or a broken connection) produces mid-call.
        metrics::count(metrics::names::BAD_MEDIA_MESSAGES);
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

/// Writes the ended call's status and reason (tried again while the database is away, up to
/// `store_retry::END_OF_CALL_PATIENCE`), then sends its webhooks.
async fn finalise(
    state: &AppState,
    call_sid: &str,
    organization_id: i64,
    call_id: i64,
    outcome: &crate::call::CallOutcome,
) {
    let ended_at_ms = switchboard_store::now_ms();
    let finished = crate::store_retry::while_database_away(
        "the ended call's status",
        crate::store_retry::END_OF_CALL_PATIENCE,
        || {
            state.store.finish_call_noting_change(
                organization_id,
                call_sid,
                outcome.status,
                Some(&outcome.ended_reason),
                ended_at_ms,
            )
        },
    )
    .await;
    match finished {
        Ok(Some((row, changed))) => crate::webhooks::call_finished(state, &row, changed).await,
        Ok(None) => tracing::warn!(call_sid, "the ended call's record is gone"),
        Err(e) => {
            tracing::error!(call_sid, error = %e, "could not finalise the call record");
            // The report still goes out with what the record holds.
            crate::webhooks::end_of_call(state, organization_id, call_id).await;
        }
    }
}

/// Ends the record of a genuine call (of `org_id`) whose stream was refused, and reports it.
async fn finalise_refused(state: &AppState, org_id: i64, call_sid: &str, reason: EndedReason) {
    metrics::call::call_ended(
        CallStatus::Failed,
        Some(&reason),
        metrics::org_label(state, org_id),
    );
    match state
        .store
        .finish_call(
            org_id,
            call_sid,
            CallStatus::Failed,
            Some(&reason),
            switchboard_store::now_ms(),
        )
        .await
    {
        Ok(Some(call)) => crate::webhooks::call_finished(state, &call, false).await,
        Ok(None) => tracing::warn!(call_sid, "the refused call's record is gone"),
        Err(e) => tracing::error!(call_sid, error = %e, "could not finalise a refused call"),
    }
}

async fn refuse(socket: &mut WebSocket, refusal: Refusal, call_sid: Option<&str>) {
    metrics::count(metrics::names::STREAMS_REFUSED);
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
    metrics::count(metrics::names::BAD_MEDIA_MESSAGES);
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
                metrics::count(metrics::names::BAD_MEDIA_MESSAGES);
                tracing::warn!(error = %e, "media socket failed before start");
                return Err(Refusal::NoStart);
            }
        }
    }
}

/// Checks the stream token of `start`, claims the call for this instance and gathers what the
/// call needs.
async fn authorize(state: &AppState, start: &Start) -> Result<Box<CallSetup>, Refused> {
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
                match stream_token::verify(token, secret, 0, &start.call_sid)
                    .ok()
                    .and_then(|v| v.claims.organization_id.parse::<i64>().ok())
                {
                    Some(org_id) => Refusal::ExpiredToken.of_org(org_id),
                    None => Refusal::BadToken.into(),
                },
            );
        }
        Err(_) => return Err(Refusal::BadToken.into()),
    };
    let claims = verified.claims;
    let org_id: i64 = claims
        .organization_id
        .parse()
        .map_err(|_| Refusal::BadToken)?;
    let assistant_id: i64 = claims.assistant_id.parse().map_err(|_| Refusal::BadToken)?;
    let call_id: i64 = claims.call_id.parse().map_err(|_| Refusal::BadToken)?;
    let refused = |r: Refusal| r.of_org(org_id);
    // A token is good for its whole lifetime: a replay must not start a second assistant on
    // the same call, nor revive an ended one. The local registry answers without a write for
    // this instance; the claim below settles it across instances.
    if state.calls.contains_key(&start.call_sid) {
        return Err(Refusal::AlreadyStreaming.into());
    }
    // The call's record, its claim (which takes only a call not ended and not claimed), the
    // assistant (read fresh: a change made over the API applies to the next call), the
    // organisation and its keys are independent round trips: all at once, so the caller
    // waits for one and not five before the welcome. Their answers are judged in that order.
    let store = &state.store;
    let (call, claimed, assistant, organization, org_keys) = tokio::join!(
        read_with_retries(STORE_RETRY, "call record", || {
            store.get_call_by_sid(Some(org_id), &start.call_sid)
        }),
        store.claim_call_stream(org_id, call_id, &state.instance_id),
        read_with_retries(STORE_RETRY, "assistant", || {
            store.get_assistant(org_id, assistant_id)
        }),
        read_with_retries(STORE_RETRY, "organisation", || {
            store.get_organization(org_id)
        }),
        read_with_retries(STORE_RETRY, "organisation provider keys", || {
            store.get_org_provider_keys(org_id)
        }),
    );
    let call = call
        .map_err(|_| refused(Refusal::StoreUnavailable))?
        .ok_or(Refusal::UnknownCall)?;
    if call.id != call_id {
        return Err(Refusal::BadToken.into());
    }
    if call.ended_at_ms.is_some() {
        return Err(Refusal::CallEnded.into());
    }
    match claimed {
        Ok(true) => {}
        Ok(false) => return Err(Refusal::AlreadyStreaming.into()),
        Err(e) => {
            tracing::error!(call_sid = %start.call_sid, error = %e, "could not claim the call");
            return Err(refused(Refusal::StoreUnavailable));
        }
    }
    let assistant = assistant_or_refusal(assistant).map_err(refused)?;
    let org_name = organization
        .map_err(|_| refused(Refusal::StoreUnavailable))?
        .map(|o| o.name)
        .unwrap_or_default();
    let org_keys = org_keys.map_err(|_| refused(Refusal::StoreUnavailable))?;
    let overrides: CallOverrides = call
        .metadata
        .get("overrides")
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let outbound = call.direction.starts_with("outbound");
    Ok(Box::new(CallSetup {
        call_id: call.id,
        call_sid: start.call_sid.clone(),
        stream_sid: start.stream_sid.clone(),
        organization_id: org_id,
        org_name,
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
        // Resolved by the runtime with the call's keys.
        knowledge: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use switchboard_store::Store;

    const NO_WAIT: RetryPolicy = RetryPolicy {
        attempts: 3,
        first_backoff: Duration::ZERO,
    };

    /// A store whose every query fails with a database error (its pool is closed).
    async fn failing_store() -> Store {
        let store = Store::connect("sqlite::memory:").await.expect("store");
        store.close().await;
        store
    }

    #[tokio::test]
    async fn a_transient_database_error_is_retried() {
        let store = failing_store().await;
        let calls = AtomicU32::new(0);
        let got = read_with_retries(NO_WAIT, "test", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let store = store.clone();
            async move {
                if n < 2 {
                    store.ping().await.map(|()| n)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got.ok(), Some(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_persistent_database_error_gives_up_after_the_attempts() {
        let store = failing_store().await;
        let calls = AtomicU32::new(0);
        let got = read_with_retries(NO_WAIT, "test", || {
            calls.fetch_add(1, Ordering::SeqCst);
            store.get_assistant(1, 1)
        })
        .await;
        assert!(matches!(got, Err(StoreError::Database(_))), "{got:?}");
        assert_eq!(calls.load(Ordering::SeqCst), NO_WAIT.attempts);
        // ... and then means an engine error, not a missing assistant.
        let refusal = assistant_or_refusal(got).err();
        assert_eq!(refusal, Some(Refusal::StoreUnavailable));
        assert_eq!(
            refusal.and_then(Refusal::ended_reason),
            Some(EndedReason::EngineError)
        );
        // A non-database error is not retried.
        let calls = AtomicU32::new(0);
        let got: Result<(), _> = read_with_retries(NO_WAIT, "test", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(StoreError::NotFound) }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn only_a_missing_row_means_assistant_not_found() {
        let refusal = assistant_or_refusal(Ok(None)).err();
        assert_eq!(
            refusal.and_then(Refusal::ended_reason),
            Some(EndedReason::AssistantNotFound)
        );
        let row = switchboard_store::AssistantRow {
            id: 1,
            organization_id: 1,
            user_id: 1,
            name: "x".into(),
            is_active: true,
            config: serde_json::json!({"name": 5}),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let refusal = assistant_or_refusal(Ok(Some(row))).err();
        assert_eq!(
            refusal.and_then(Refusal::ended_reason),
            Some(EndedReason::AssistantInvalid)
        );
        // Refusals that say nothing about the call never end its record.
        for r in [
            Refusal::BadToken,
            Refusal::UnknownCall,
            Refusal::AlreadyStreaming,
            Refusal::CallEnded,
        ] {
            assert_eq!(r.ended_reason(), None, "{r:?}");
        }
    }
}
