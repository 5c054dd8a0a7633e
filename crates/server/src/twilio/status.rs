//! `POST /twilio/status`: Twilio's call status callbacks (and the media stream's own
//! `stream-started` / `stream-stopped` / `stream-error` callbacks, which our TwiML points here
//! too). A call status updates the call record (status, duration, `ended_reason` such as
//! `completed`, `busy`, `no-answer`, `failed`, `canceled`) and sends a `status-update` webhook.
//! The callback must be signed by the organisation owning the call; the update is keyed by that
//! organisation. A status Twilio may add one day (not one we know) is logged and not stored. A
//! callback that arrives while the database is away is answered 204 and applied once it is
//! back (`status_deferred`); any other database error is answered 503 and stores nothing.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use switchboard_store::{CallRow, CallStatus, EndedReason, StoreError};
use switchboard_telephony::webhook::{self, CallStatusCallback, parse_form_pairs};

use super::{TwilioAuth, forbidden, status_deferred};
use crate::state::AppState;
use crate::store_retry::{END_OF_CALL_PATIENCE, while_database_away};

/// How long the handler waits to read the call before taking the database as away: a database
/// that refuses connections is known at once, but one that does not answer (a host down, a
/// network cut) holds the read until the pool's 10 s acquire timeout, and Twilio gives up on a
/// callback after 15 s (<https://www.twilio.com/docs/api/errors/11205>). Past this wait the
/// callback is treated as in an outage (`status_deferred`).
const CALL_READ_WAIT: Duration = Duration::from_secs(2);

/// The status callback.
pub async fn status(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(params) = parse_form_pairs(&body) else {
        return (StatusCode::BAD_REQUEST, "malformed form body").into_response();
    };
    let call_sid = params
        .iter()
        .find(|(k, _)| k == "CallSid")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let read = state.store.get_call_by_sid(None, &call_sid);
    let call = match tokio::time::timeout(CALL_READ_WAIT, read).await {
        Ok(Ok(call)) => call,
        Ok(Err(e)) if e.is_transient() => {
            return status_deferred::accept(&state, &uri, &headers, params, &body, call_sid).await;
        }
        Err(_) => {
            tracing::debug!(call_sid = %call_sid, wait_ms = CALL_READ_WAIT.as_millis() as u64, "status callback: the call could not be read in time");
            return status_deferred::accept(&state, &uri, &headers, params, &body, call_sid).await;
        }
        Ok(Err(e)) => {
            tracing::error!(call_sid = %call_sid, error = %e, "status callback: database error");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let org_id = match &call {
        Some(c) => Some(c.organization_id),
        None => state.default_org_id().await,
    };
    let auth = TwilioAuth::for_org(&state, org_id).await;
    if let Err(why) = auth.check(&state, &uri, &headers, &params) {
        tracing::warn!(call_sid = %call_sid, why, "status callback rejected");
        return forbidden(why);
    }
    if params.iter().any(|(k, _)| k == "StreamEvent") {
        return log_stream_event(&call_sid, &params);
    }
    let Ok(cb) = CallStatusCallback::from_form(&body) else {
        return (StatusCode::BAD_REQUEST, "missing CallSid or CallStatus").into_response();
    };
    let Some(call) = call else {
        tracing::info!(call_sid = %call_sid, "status callback for a call we have no record of");
        return StatusCode::NO_CONTENT.into_response();
    };
    let Some(update) = StatusUpdate::new(&state, &call_sid, &cb) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    match update.apply(&state, &call).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) if e.is_transient() => {
            status_deferred::retry(&state, &uri, &headers, &body, call, update).await
        }
        Err(e) => {
            tracing::error!(call_sid = %call_sid, error = %e, "could not update call status");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// Logs a media stream's own callback (`stream-started` / `stream-stopped` / `stream-error`),
/// which stores nothing, and answers 204.
pub(super) fn log_stream_event(call_sid: &str, params: &[(String, String)]) -> Response {
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    tracing::info!(call_sid = %call_sid, event = field("StreamEvent"), error = field("StreamError"), "stream status");
    StatusCode::NO_CONTENT.into_response()
}

/// A call status Twilio reported, ready to be applied to the call's record.
pub(super) struct StatusUpdate {
    call_sid: String,
    reported: CallStatus,
    /// `CallDuration`, seconds.
    duration_s: Option<i64>,
    /// Whether the call's task was live on this instance when the callback arrived.
    live_here: bool,
}

impl StatusUpdate {
    /// The update a callback asks for; `None` for a status Twilio may add one day (logged).
    pub(super) fn new(
        state: &AppState,
        call_sid: &str,
        cb: &CallStatusCallback,
    ) -> Option<StatusUpdate> {
        let Some(reported) = stored_status(&cb.call_status) else {
            tracing::info!(call_sid = %call_sid, status = cb.call_status.as_str(), "unknown call status ignored");
            return None;
        };
        Some(StatusUpdate {
            call_sid: call_sid.to_owned(),
            reported,
            duration_s: cb.call_duration.map(|d| d as i64),
            live_here: state.calls.contains_key(call_sid),
        })
    }

    /// Writes the update to `call` (as read before) and sends the webhook it calls for.
    pub(super) async fn apply(&self, state: &AppState, call: &CallRow) -> Result<(), StoreError> {
        let terminal = self.reported.is_terminal();
        // Once the engine ended a call (e.g. failed with a reason), Twilio's `completed` only
        // adds the billed duration.
        let status = if terminal && call.ended_at_ms.is_some() {
            call.status
        } else {
            self.reported
        };
        // Keep a more precise reason the engine already wrote (e.g. max_call_length).
        let reason =
            (terminal && call.ended_reason.is_none()).then_some(EndedReason::Telephony(status));
        // A call that ends before its media stream ever started (an outbound call that was
        // busy, unanswered, failed or canceled) gets its end-of-call report here; otherwise the
        // stream handler sends it when the call's task ends.
        let never_connected = terminal
            && call.ended_at_ms.is_none()
            && call.status.is_before_answer()
            && !self.live_here;
        let updated = state
            .store
            .update_call_status(
                call.organization_id,
                &self.call_sid,
                status,
                self.duration_s,
                reason.as_ref(),
            )
            .await?;
        let Some(row) = updated else {
            tracing::warn!(call_sid = %self.call_sid, "the call record is gone");
            return Ok(());
        };
        // One status-update per change (Twilio repeats and reorders callbacks).
        let changed = row.status != call.status;
        if never_connected {
            crate::webhooks::call_finished(state, &row, changed).await;
        } else if changed {
            crate::webhooks::status_update(state, &row).await;
        }
        Ok(())
    }

    /// [`StatusUpdate::apply`], tried again while the database is away.
    /// Whether it is settled: written, or refused for good; `false` when the database stayed
    /// away past the patience (the update may be tried again later).
    pub(super) async fn apply_while_database_away(&self, state: &AppState, call: &CallRow) -> bool {
        let applied = while_database_away("call status", END_OF_CALL_PATIENCE, || {
            self.apply(state, call)
        })
        .await;
        match applied {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(call_sid = %self.call_sid, error = %e, "could not update call status");
                !e.is_transient()
            }
        }
    }
}

/// The stored status for a status Twilio reported; `None` for one this version does not know.
fn stored_status(status: &webhook::CallStatus) -> Option<CallStatus> {
    use webhook::CallStatus as Twilio;
    Some(match status {
        Twilio::Queued => CallStatus::Queued,
        Twilio::Initiated => CallStatus::Initiated,
        Twilio::Ringing => CallStatus::Ringing,
        Twilio::InProgress => CallStatus::InProgress,
        Twilio::Completed => CallStatus::Completed,
        Twilio::Busy => CallStatus::Busy,
        Twilio::Failed => CallStatus::Failed,
        Twilio::NoAnswer => CallStatus::NoAnswer,
        Twilio::Canceled => CallStatus::Canceled,
        Twilio::Other(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_statuses_map_to_the_same_spelling() {
        for s in CallStatus::KNOWN {
            let twilio = webhook::CallStatus::from(s.as_str().to_owned());
            assert_eq!(stored_status(&twilio), Some(s));
        }
        let novel = webhook::CallStatus::from("answered-by-robot".to_owned());
        assert_eq!(stored_status(&novel), None);
    }
}
