//! Status callbacks that arrive while the database is away.
//!
//! Why: Twilio sends a call's status callback once and does not retry it, so answering 503
//! during a database outage (a failover, a restart, a network cut) lost the call's final
//! status and billed duration, and its `status-update` webhook. Such a callback is now
//! checked against the auth tokens this instance last read ([`KnownTokens`]), answered 204
//! and applied once the database is back: the call is read, its own organisation's token is
//! read again and must sign the callback too (a token changed during the outage, or a
//! callback signed by another organisation, is dropped then), and the same update as on the
//! normal path is written. Every organisation's credentials are read at the start and every
//! [`REFRESH_EVERY`], so any instance behind the balancer vouches for any organisation's
//! callbacks, not only those it served. A callback no known token signs, or one beyond
//! [`MAX_PENDING`], is answered 503 as before. Pending callbacks live in memory: a process
//! that stops before the database is back loses them (the call is closed by the stale sweep
//! or the next start's recovery, without Twilio's duration).

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use switchboard_store::{CallRow, StoreError};
use switchboard_telephony::webhook::CallStatusCallback;
use tracing::Instrument;

use super::status::StatusUpdate;
use super::{TwilioAuth, check_signature};
use crate::state::AppState;
use crate::store_retry::{END_OF_CALL_PATIENCE, while_database_away};

/// The most status callbacks waiting for the database at once; beyond, 503 as before.
pub const MAX_PENDING: usize = 10_000;

/// How often every organisation's credentials are read again into [`KnownTokens`] (new
/// organisations, rotated tokens), besides each read of one organisation's.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);

/// The Twilio credentials of every organisation, as this instance last read them (all at its
/// start and every [`REFRESH_EVERY`], one at each of its webhooks), and how many callbacks
/// wait for the database. Tokens are kept only to tell a signed callback from a forged one
/// while the database is away; nothing is applied on their word alone.
#[derive(Default)]
pub struct KnownTokens {
    tokens: DashMap<i64, Known>,
    pending: AtomicUsize,
}

/// An organisation's credentials as last read: the account its callbacks name (`AccountSid`;
/// empty when unknown, for a token from the config without an account) and the token that
/// signs them.
struct Known {
    account_sid: String,
    token: String,
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
    /// Records the credentials organisation `org_id` signs with, as just read (`None`: it has
    /// none): `(account SID, auth token)`.
    pub(crate) fn remember(&self, org_id: i64, creds: Option<(&str, &str)>) {
        match creds {
            Some((account_sid, token))
                if self.tokens.get(&org_id).is_none_or(|known| {
                    known.account_sid != account_sid || known.token != token
                }) =>
            {
                let known = Known {
                    account_sid: account_sid.to_owned(),
                    token: token.to_owned(),
                };
                self.tokens.insert(org_id, known);
            }
            Some(_) => {}
            None => {
                self.tokens.remove(&org_id);
            }
        }
    }

    /// Reads every organisation's credentials at once, so that this instance vouches during an
    /// outage for the callbacks of organisations none of its webhooks has served yet (a new
    /// instance behind the balancer, a restart). Organisations without credentials any more
    /// are forgotten. The number of organisations known, or the store's error (what was known
    /// stays).
    pub async fn refresh(&self, state: &AppState) -> Result<usize, StoreError> {
        let listed = state.store.list_org_telephony().await?;
        let mut keep: HashSet<i64> = HashSet::with_capacity(listed.len() + 1);
        for (org_id, creds) in &listed {
            if !creds.auth_token.is_empty() {
                self.remember(*org_id, Some((&creds.account_sid, &creds.auth_token)));
                keep.insert(*org_id);
            }
        }
        // The default organisation signs with the config's token when it has none stored.
        let twilio = &state.settings.twilio;
        if let (Some(default), Some(token)) = (state.default_org_id().await, &twilio.auth_token)
            && !token.is_empty()
            && !keep.contains(&default)
        {
            let account_sid = twilio.account_sid.as_deref().unwrap_or_default();
            self.remember(default, Some((account_sid, token)));
            keep.insert(default);
        }
        self.tokens.retain(|org_id, _| keep.contains(org_id));
        Ok(self.tokens.len())
    }

    /// How many organisations' credentials are known.
    pub fn organisations(&self) -> usize {
        self.tokens.len()
    }

    /// Whether a known organisation's token signs this request; only the organisations whose
    /// account the callback names are tried (one HMAC, not one per organisation).
    fn any_signs(
        &self,
        state: &AppState,
        uri: &Uri,
        headers: &HeaderMap,
        params: &[(String, String)],
    ) -> bool {
        let account = params
            .iter()
            .find(|(k, _)| k == "AccountSid")
            .map_or("", |(_, v)| v.as_str());
        self.tokens.iter().any(|entry| {
            let known = entry.value();
            (known.account_sid.is_empty() || known.account_sid == account)
                && check_signature(state, &known.token, uri, headers, params).is_ok()
        })
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

/// Reads every organisation's credentials now and every [`REFRESH_EVERY`] until shutdown
/// ([`KnownTokens::refresh`]); a read that fails (the database away) keeps what was known.
pub fn spawn_refresh(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => match state.twilio_tokens.refresh(&state).await {
                    Ok(n) => tracing::debug!(organisations = n, "Twilio credentials read"),
                    Err(e) => tracing::info!(error = %e, "Twilio credentials not read again; what was known stays"),
                },
            }
        }
    });
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
