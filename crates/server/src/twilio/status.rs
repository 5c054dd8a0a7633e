//! `POST /twilio/status`: Twilio's call status callbacks (and the media stream's own
//! `stream-started` / `stream-stopped` / `stream-error` callbacks, which our TwiML points here
//! too). A call status updates the call record (status, duration, `ended_reason` such as
//! `completed`, `busy`, `no-answer`, `failed`, `canceled`) and sends a `status-update` webhook.
//! The callback must be signed by the organisation owning the call; the update is keyed by that
//! organisation. A status Twilio may add one day (not one we know) is logged and not stored; a
//! database error is answered 503 and stores nothing.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use switchboard_store::{CallStatus, EndedReason};
use switchboard_telephony::webhook::{self, CallStatusCallback, parse_form_pairs};

use super::{TwilioAuth, forbidden};
use crate::state::AppState;

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
    let call = match state.store.get_call_by_sid(None, &call_sid).await {
        Ok(call) => call,
        Err(e) => {
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
    if let Some((_, event)) = params.iter().find(|(k, _)| k == "StreamEvent") {
        let error = params
            .iter()
            .find(|(k, _)| k == "StreamError")
            .map(|(_, v)| v.as_str());
        tracing::info!(call_sid = %call_sid, event = %event, error = error.unwrap_or(""), "stream status");
        return StatusCode::NO_CONTENT.into_response();
    }
    let Ok(cb) = CallStatusCallback::from_form(&body) else {
        return (StatusCode::BAD_REQUEST, "missing CallSid or CallStatus").into_response();
    };
    let Some(call) = call else {
        tracing::info!(call_sid = %call_sid, "status callback for a call we have no record of");
        return StatusCode::NO_CONTENT.into_response();
    };
    let Some(reported) = stored_status(&cb.call_status) else {
        tracing::info!(call_sid = %call_sid, status = cb.call_status.as_str(), "unknown call status ignored");
        return StatusCode::NO_CONTENT.into_response();
    };
    let terminal = reported.is_terminal();
    // Once the engine ended a call (e.g. failed with a reason), Twilio's `completed` only adds
    // the billed duration.
    let status = if terminal && call.ended_at_ms.is_some() {
        call.status
    } else {
        reported
    };
    // Keep a more precise reason the engine already wrote (e.g. max_call_length).
    let reason =
        (terminal && call.ended_reason.is_none()).then_some(EndedReason::Telephony(status));
    let duration = cb.call_duration.map(|d| d as i64);
    // A call that ends before its media stream ever started (an outbound call that was busy,
    // unanswered, failed or canceled) gets its end-of-call report here; otherwise the stream
    // handler sends it when the call's task ends.
    let never_connected = terminal
        && call.ended_at_ms.is_none()
        && call.status.is_before_answer()
        && !state.calls.contains_key(&call_sid);
    match state
        .store
        .update_call_status(
            call.organization_id,
            &call_sid,
            status,
            duration,
            reason.as_ref(),
        )
        .await
    {
        Ok(Some(row)) => {
            // One status-update per change (Twilio repeats and reorders callbacks).
            let changed = row.status != call.status;
            if never_connected {
                crate::webhooks::call_finished(&state, &row, changed).await;
            } else if changed {
                crate::webhooks::status_update(&state, &row).await;
            }
        }
        Ok(None) => tracing::warn!(call_sid = %call_sid, "the call record is gone"),
        Err(e) => {
            tracing::error!(call_sid = %call_sid, error = %e, "could not update call status");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
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
