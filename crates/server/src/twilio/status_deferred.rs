//! Status callbacks that arrive while the database is away.
//!
//! Why: Twilio sends a call's status callback once and does not retry it, so answering 503
//! during a database outage (a failover, a restart, a network cut) lost the call's final
//! status and billed duration, and its `status-update` webhook. Such a callback is now
//! checked against the auth tokens this instance last read ([`KnownTokens`]), answered 204
//! and applied once the database is back: the call is read, its own organisation's token is
//! read again and must sign the callback too (a token changed during the outage, or a
//! callback signed by another organisation, is dropped then), and the same update as on the
//! normal path is written. A callback no known token signs, or one beyond
//! [`MAX_PENDING`], is answered 503 as before. Pending callbacks live in memory: a process
//! that stops before the database is back loses them (the call is closed by the stale sweep
//! or the next start's recovery, without Twilio's duration).

use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use switchboard_store::CallRow;
use switchboard_telephony::webhook::CallStatusCallback;
use tracing::Instrument;

use super::status::StatusUpdate;
use super::{TwilioAuth, check_signature};
use crate::state::AppState;
use crate::store_retry::{END_OF_CALL_PATIENCE, while_database_away};

/// The most status callbacks waiting for the database at once; beyond, 503 as before.
pub const MAX_PENDING: usize = 10_000;

/// The Twilio auth token each organisation had when this instance last read it, and how many
/// callbacks wait for the database. Tokens are kept only to tell a signed callback from a
/// forged one while the database is away; nothing is applied on their word alone.
#[derive(Default)]
pub struct KnownTokens {
    tokens: DashMap<i64, String>,
    pending: AtomicUsize,
}

impl std::fmt::Debug for KnownTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnownTokens")
            .field("organisations", &self.tokens.len())
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish()
    }
}

impl KnownTokens {
    /// Records the token organisation `org_id` signs with, as just read (`None`: it has none).
    pub(crate) fn remember(&self, org_id: i64, token: Option<&str>) {
        match token {
            Some(t) if self.tokens.get(&org_id).is_none_or(|known| *known != t) => {
                self.tokens.insert(org_id, t.to_owned());
            }
            Some(_) => {}
            None => {
                self.tokens.remove(&org_id);
            }
        }
    }

    /// Whether a known organisation's token signs this request.
    fn any_signs(
        &self,
        state: &AppState,
        uri: &Uri,
        headers: &HeaderMap,
        params: &[(String, String)],
    ) -> bool {
        self.tokens
            .iter()
            .any(|entry| check_signature(state, entry.value(), uri, headers, params).is_ok())
    }

    /// Takes a pending place (given back by the task's [`PendingSlot`]); `false` when
    /// [`MAX_PENDING`] are taken.
    fn take_slot(&self) -> bool {
        self.pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_PENDING).then_some(n + 1)
            })
            .is_ok()
    }

    /// How many callbacks wait for the database.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }
}

/// A pending callback's place in [`KnownTokens::pending`], given back when dropped.
struct PendingSlot<'a>(&'a AtomicUsize);

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the status handler does when reading the call failed because the database is away:
/// answers 204 and applies the callback later when a known token signs it, 503 otherwise.
pub(super) fn accept(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
    body: &[u8],
    call_sid: String,
) -> Response {
    if !state.twilio_tokens.any_signs(state, uri, headers, &params) {
        tracing::warn!(call_sid = %call_sid, "status callback while the database is away: no known token signs it");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    if params.iter().any(|(k, _)| k == "StreamEvent") {
        // Stream events are only logged: nothing waits for the database.
        return super::status::log_stream_event(&call_sid, &params);
    }
    let Ok(callback) = CallStatusCallback::from_form(body) else {
        return (StatusCode::BAD_REQUEST, "missing CallSid or CallStatus").into_response();
    };
    let Some(update) = StatusUpdate::new(state, &call_sid, &callback) else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let signed = Signed {
        uri: uri.clone(),
        headers: headers.clone(),
        params,
    };
    let sid = call_sid.clone();
    let waiting = spawn_waiting(state, move |state| async move {
        apply_when_back(state, sid, signed, update).await;
    });
    if !waiting {
        tracing::warn!(call_sid = %call_sid, "status callback while the database is away: too many waiting");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    tracing::info!(call_sid = %call_sid, "status callback while the database is away: applied once it is back");
    StatusCode::NO_CONTENT.into_response()
}

/// What the status handler does when writing the update failed because the database is away
/// (the callback was already checked against the call's organisation's token): answers 204
/// and writes it once the database is back; 503 beyond [`MAX_PENDING`].
pub(super) fn retry(state: &AppState, call: CallRow, update: StatusUpdate) -> Response {
    let waiting = spawn_waiting(state, move |state| async move {
        update.apply_while_database_away(&state, &call).await;
    });
    if !waiting {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Runs `work` as a tracked task holding one of the [`MAX_PENDING`] places (taken now, so the
/// bound holds before the task runs; given back when it ends, whatever happens); `false`, and
/// nothing runs, when every place is taken.
fn spawn_waiting<F, Fut>(state: &AppState, work: F) -> bool
where
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if !state.twilio_tokens.take_slot() {
        return false;
    }
    let owned = state.clone();
    let task = async move {
        let _slot = PendingSlot(&owned.twilio_tokens.pending);
        work(owned.clone()).await;
    };
    state.tasks.spawn(task.in_current_span());
    true
}

/// What a callback's signature is checked over.
struct Signed {
    uri: Uri,
    headers: HeaderMap,
    params: Vec<(String, String)>,
}

/// Reads the call once the database is back, checks the callback against the call's own
/// organisation's token as read then, and applies it.
async fn apply_when_back(state: AppState, call_sid: String, signed: Signed, update: StatusUpdate) {
    let read = while_database_away("status callback's call", END_OF_CALL_PATIENCE, || {
        state.store.get_call_by_sid(None, &call_sid)
    })
    .await;
    let call = match read {
        Ok(Some(call)) => call,
        Ok(None) => {
            tracing::info!(call_sid = %call_sid, "status callback for a call we have no record of");
            return;
        }
        Err(e) => {
            tracing::error!(call_sid = %call_sid, error = %e, "status callback given up: the database stayed away");
            return;
        }
    };
    let auth = TwilioAuth::for_org(&state, Some(call.organization_id)).await;
    if let Err(why) = auth.check(&state, &signed.uri, &signed.headers, &signed.params) {
        tracing::warn!(call_sid = %call_sid, why, "status callback rejected once the database was back");
        return;
    }
    update.apply_while_database_away(&state, &call).await;
}
