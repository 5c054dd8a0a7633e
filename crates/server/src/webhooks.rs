//! Webhooks out, to the assistant's `webhook_url`: a `status-update` at each status change and
//! an `end-of-call-report` when a call ends, in the Vapi-style shape Burki uses
//! (`{"message": {"type": …, "call": {…}, …}}`).
//!
//! Each delivery is signed (`X-Switchboard-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>">`, key = `webhooks.secret`), retried with exponential backoff on failure,
//! delivered off the call path (a task the server drains at shutdown), and every attempt is
//! logged in the store (`GET /api/v1/calls/{id}/webhook-logs`): status, timing, attempt,
//! error, and the reply body only when `webhooks.log_response_body` is on. The URL is a
//! tenant's: it is held to the outbound policy (`[outbound]`) on every attempt.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use switchboard_assistant::AssistantConfig;
use switchboard_netguard::{NotAllowed, refusal_of};
use switchboard_store::{CallRow, NewWebhookLog, ms_to_rfc3339, opt_ms_to_rfc3339};
use tracing::Instrument as _;

use crate::metrics;
use crate::state::AppState;

/// Name of the signature header on every delivery.
pub const SIGNATURE_HEADER: &str = "x-switchboard-signature";

/// Name of the header naming the event (`status-update`, `end-of-call-report`).
pub const EVENT_HEADER: &str = "x-switchboard-event";

fn mac_hex(secret: &[u8], t_s: u64, body: &[u8]) -> Option<Vec<u8>> {
    // HMAC takes keys of any length; `None` is unreachable in practice and keeps this total.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).ok()?;
    mac.update(t_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(hex::encode(mac.finalize().into_bytes()).into_bytes())
}

/// The signature header value for `body` sent at `t_s` (unix seconds):
/// `t=<t_s>,v1=<hex HMAC-SHA256 of "<t_s>.<body>">`.
pub fn signature(secret: &[u8], t_s: u64, body: &[u8]) -> String {
    let hex = mac_hex(secret, t_s, body)
        .and_then(|h| String::from_utf8(h).ok())
        .unwrap_or_default();
    format!("t={t_s},v1={hex}")
}

/// Why a received webhook's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix s>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// `t` is further than the tolerance from now (a replay, or a skewed clock).
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// The MAC does not match the body under this secret.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a delivery as a receiver would: `header` is the `X-Switchboard-Signature` value,
/// `now_s` the receiver's clock (unix seconds), `tolerance_s` how far `t` may be from it.
/// The comparison is constant-time.
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<u64>().ok(),
            Some(("v1", v)) => v1 = Some(v),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    if t.abs_diff(now_s) > tolerance_s {
        return Err(SignatureError::Stale);
    }
    let expected = mac_hex(secret, t, body).ok_or(SignatureError::Mismatch)?;
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_slice(),
        v1.as_bytes(),
    )) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn call_json(call: &CallRow) -> Value {
    json!({
        "id": call.id,
        "call_sid": call.call_sid,
        "assistant_id": call.assistant_id,
        "organization_id": call.organization_id,
        "direction": call.direction,
        "from_phone_number": call.from_number,
        "to_phone_number": call.to_number,
        "status": call.status,
        "started_at": ms_to_rfc3339(call.started_at_ms),
        "ended_at": opt_ms_to_rfc3339(call.ended_at_ms),
        "duration": call.duration_s,
        "ended_reason": call.ended_reason,
    })
}

async fn webhook_url(state: &AppState, call: &CallRow) -> Option<String> {
    let assistant_id = call.assistant_id?;
    let row = state
        .store
        .get_assistant(call.organization_id, assistant_id)
        .await
        .ok()
        .flatten()?;
    let config: AssistantConfig = serde_json::from_value(row.config).ok()?;
    config.webhook_url.filter(|u| !u.trim().is_empty())
}

/// Sends `status-update` for `call`'s current status, if its assistant has a webhook.
pub async fn status_update(state: &AppState, call: &CallRow) {
    if let Some(url) = webhook_url(state, call).await {
        send_status_update(state, url, call);
    }
}

/// [`status_update`] from a caller that holds the call's assistant (the voice webhook): its
/// `webhook_url` is used rather than read again, unless the call is another assistant's.
pub async fn status_update_of(
    state: &AppState,
    call: &CallRow,
    assistant_id: i64,
    webhook_url: Option<&str>,
) {
    if call.assistant_id != Some(assistant_id) {
        return status_update(state, call).await;
    }
    if let Some(url) = webhook_url.filter(|u| !u.trim().is_empty()) {
        send_status_update(state, url.to_owned(), call);
    }
}

fn send_status_update(state: &AppState, url: String, call: &CallRow) {
    let body = json!({"message": {
        "type": "status-update",
        "status": call.status,
        "call": call_json(call),
        "timestamp": ms_to_rfc3339(switchboard_store::now_ms()),
    }});
    deliver(state.clone(), Some(call.id), "status-update", url, body);
}

/// A call was finished (`call` is its row as written): sends `status-update` when
/// `status_changed`, then `end-of-call-report` (see [`end_of_call`]), reading the assistant's
/// webhook URL once for both.
pub async fn call_finished(state: &AppState, call: &CallRow, status_changed: bool) {
    let Some(url) = webhook_url(state, call).await else {
        return;
    };
    if status_changed {
        send_status_update(state, url.clone(), call);
    }
    send_end_of_call(state, url, call).await;
}

/// Sends `end-of-call-report` for a finished call, if its assistant has a webhook.
///
/// Callers send it only once what the call produced is stored, so the report is complete: the
/// call runtime returns only after its recorder task and recording writer finished (transcripts,
/// tool results, recordings and their rows), and crash recovery stores interrupted recordings
/// before it reports the calls it closed.
pub async fn end_of_call(state: &AppState, org_id: i64, call_id: i64) {
    let Ok(Some(call)) = state.store.get_call(org_id, call_id).await else {
        return;
    };
    if let Some(url) = webhook_url(state, &call).await {
        send_end_of_call(state, url, &call).await;
    }
}

async fn send_end_of_call(state: &AppState, url: String, call: &CallRow) {
    let (org_id, call_id) = (call.organization_id, call.id);
    let transcripts = state
        .store
        .list_transcripts(call_id)
        .await
        .unwrap_or_default();
    let recordings = state
        .store
        .list_recordings(call_id)
        .await
        .unwrap_or_default();
    let transcript: Vec<String> = transcripts
        .iter()
        .map(|t| {
            let who = if t.role == "user" { "User" } else { "AI" };
            format!("{who}: {}", t.content)
        })
        .collect();
    let messages: Vec<Value> = transcripts
        .iter()
        .map(|t| {
            json!({
                "role": if t.role == "user" { "user" } else { "bot" },
                "message": t.content,
                "secondsFromStart": t.start_ms as f64 / 1000.0,
                "endSecondsFromStart": t.end_ms as f64 / 1000.0,
                "interrupted": t.interrupted,
            })
        })
        .collect();
    let body = json!({"message": {
        "type": "end-of-call-report",
        "endedReason": call.ended_reason,
        "call": call_json(call),
        "durationSeconds": call.duration_s,
        "transcript": transcript.join("\n"),
        "messages": messages,
        // The API URL of the recording (never the server's file path): the mixed track, else
        // the first one.
        "recordingUrl": recordings
            .iter()
            .find(|r| r.kind == "mixed")
            .or(recordings.first())
            .map(|r| format!(
                "{}{}",
                state.public_base_url,
                crate::routes::calls::recording_play_path(call.id, r.id)
            )),
        "toolExecutions": tool_executions_json(state, org_id, call_id).await,
        "timestamp": ms_to_rfc3339(switchboard_store::now_ms()),
    }});
    deliver(
        state.clone(),
        Some(call.id),
        "end-of-call-report",
        url,
        body,
    );
}

/// The call's tool executions for the end-of-call report (`toolExecutions`), in the order they
/// started, at most [`crate::routes::calls::MAX_LIMIT`] of them; empty when they cannot be read
/// (the report still goes out).
async fn tool_executions_json(state: &AppState, org_id: i64, call_id: i64) -> Vec<Value> {
    match state
        .store
        .list_tool_executions(org_id, call_id, 0, crate::routes::calls::MAX_LIMIT)
        .await
    {
        Ok(rows) => rows
            .iter()
            .map(crate::routes::tool_executions::execution_json)
            .collect(),
        Err(e) => {
            tracing::warn!(call_id, error = %e, "could not read the call's tool executions");
            Vec::new()
        }
    }
}

/// How one delivery attempt ended.
enum Attempt {
    /// The receiver answered (any status); `body` only when `webhooks.log_response_body`.
    Answered { code: i64, body: Option<String> },
    /// The outbound policy refused the URL or the address it resolved to: never retried.
    Refused(NotAllowed),
    /// No answer (connect error, timeout…): retried.
    Failed(String),
}

/// Longest reply text kept in the webhook log when `webhooks.log_response_body` is on.
const MAX_LOGGED_BODY_CHARS: usize = 2000;

async fn attempt(state: &AppState, url: &str, event: &'static str, bytes: &[u8]) -> Attempt {
    let cfg = &state.settings.webhooks;
    let request = match state.tenant_http.post(url) {
        Ok(request) => request,
        Err(refused) => return Attempt::Refused(refused),
    };
    let t_s = super::twilio::unix_now_s();
    let res = request
        .timeout(Duration::from_millis(cfg.timeout_ms))
        .header("content-type", "application/json")
        .header(EVENT_HEADER, event)
        .header(
            SIGNATURE_HEADER,
            signature(state.webhook_secret.as_bytes(), t_s, bytes),
        )
        .body(bytes.to_vec())
        .send()
        .await;
    match res {
        Ok(r) => {
            let code = i64::from(r.status().as_u16());
            let body = if cfg.log_response_body {
                let text = r.text().await.unwrap_or_default();
                Some(text.chars().take(MAX_LOGGED_BODY_CHARS).collect())
            } else {
                None
            };
            Attempt::Answered { code, body }
        }
        Err(e) => match refusal_of(&e) {
            Some(refused) => Attempt::Refused(refused.clone()),
            None => Attempt::Failed(e.to_string()),
        },
    }
}

/// Delivers `body` to `url` in the background with retries, logging every attempt. The URL is
/// held to the outbound policy on every attempt (a refusal is logged and not retried); the
/// reply body is logged only when `webhooks.log_response_body` is on.
pub fn deliver(
    state: AppState,
    call_id: Option<i64>,
    event: &'static str,
    url: String,
    body: Value,
) {
    let tasks = state.tasks.clone();
    let work = async move {
        let cfg = &state.settings.webhooks;
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut backoff = Duration::from_millis(cfg.initial_backoff_ms);
        for attempt_no in 1..=cfg.max_attempts.max(1) {
            let started = Instant::now();
            let outcome = attempt(&state, &url, event, &bytes).await;
            let (status_code, success, error, response_body, retry) = match outcome {
                Attempt::Answered { code, body } => {
                    let ok = (200..300).contains(&code);
                    // A 4xx other than 408/429 will not get better by retrying.
                    let hopeless = (400..500).contains(&code) && code != 408 && code != 429;
                    let retry = !ok && !hopeless;
                    (
                        Some(code),
                        ok,
                        (!ok).then(|| format!("HTTP {code}")),
                        body,
                        retry,
                    )
                }
                Attempt::Refused(refused) => (
                    None,
                    false,
                    Some(format!("refused by the outbound policy: {refused}")),
                    None,
                    false,
                ),
                Attempt::Failed(error) => (None, false, Some(error), None, true),
            };
            let log = NewWebhookLog {
                event: event.to_owned(),
                url: url.clone(),
                status_code,
                attempt: i64::from(attempt_no),
                success,
                error,
                request_body: body.clone(),
                response_body,
                duration_ms: started.elapsed().as_millis() as i64,
            };
            if let Err(e) = state.store.add_webhook_log(call_id, &log).await {
                tracing::warn!(error = %e, "could not log a webhook delivery");
            }
            if success {
                metrics::webhook_delivery(event, "delivered");
                return;
            }
            if !retry {
                break;
            }
            if attempt_no < cfg.max_attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
        }
        metrics::count(metrics::names::WEBHOOK_FAILURES);
        metrics::webhook_delivery(event, "failed");
        tracing::warn!(event, "webhook delivery failed after all attempts");
    };
    tasks.spawn(work.in_current_span());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_timestamp_and_body() {
        let sig = signature(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("t=1700000000,v1="));
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, signature(b"other", 1_700_000_000, b"{\"a\":1}"));
        assert_ne!(sig, signature(b"secret", 1_700_000_001, b"{\"a\":1}"));
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_changes() {
        let body = br#"{"message":{"type":"status-update"}}"#;
        let sig = signature(b"k", 1_000, body);
        assert_eq!(verify_signature(b"k", &sig, body, 1_010, 300), Ok(()));
        assert_eq!(
            verify_signature(b"k", &sig, b"{}", 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"other", &sig, body, 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"k", &sig, body, 2_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature(b"k", "v1=abc", body, 1_000, 300),
            Err(SignatureError::Malformed)
        );
    }
}
