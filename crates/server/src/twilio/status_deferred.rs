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
//! `twilio.callbacks_refresh_s`, so any instance behind the balancer vouches for any
//! organisation's callbacks, not only those it served. A callback no known token signs, or one
//! beyond [`MAX_PENDING`], is answered 503 as before. A pending callback (and an update whose
//! write alone failed) is also saved in the spill folder (`status_spool`) until it is settled;
//! at the same interval, from its start, each instance takes up the saved callbacks no process
//! holds: those a stopped process left, and its own after the database stayed away past the
//! patience of a wait.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use switchboard_store::{CallRow, StoreError};
use switchboard_telephony::webhook::{CallStatusCallback, parse_form_pairs};
use tracing::Instrument;

use super::status::StatusUpdate;
use super::status_spool::{HeldFile, SavedCallback};
use super::{SIGNATURE_HEADER, TwilioAuth, check_signature};
use crate::state::AppState;
use crate::store_retry::{END_OF_CALL_PATIENCE, while_database_away};

/// The most status callbacks waiting for the database at once; beyond, 503 as before.
pub const MAX_PENDING: usize = 10_000;

/// The Twilio credentials of every organisation, as this instance last read them (all at its
/// start and every `twilio.callbacks_refresh_s`, one at each of its webhooks), and how many
/// callbacks wait for the database. Tokens are kept only to tell a signed callback from a
/// forged one while the database is away; nothing is applied on their word alone.
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
        if let Some(default) = state.default_org_id().await
            && !keep.contains(&default)
            && let Some((account_sid, token)) = super::config_credentials(state)
        {
            self.remember(default, Some((&account_sid, &token)));
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

    /// Takes a pending place (given back when its [`Place`] drops); `false` when
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

/// One of the [`MAX_PENDING`] places, taken before a callback is answered 204 (so the bound
/// holds before its task runs) and given back when dropped, whatever happens in the task.
struct Place(AppState);

impl Place {
    /// A place, or `None` when every one is taken.
    fn take(state: &AppState) -> Option<Place> {
        state
            .twilio_tokens
            .take_slot()
            .then(|| Place(state.clone()))
    }

    /// Runs `work` as a tracked task (shutdown waits for it) holding this place.
    fn spawn<F, Fut>(self, work: F)
    where
        F: FnOnce(AppState) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let tasks = self.0.tasks.clone();
        let task = async move {
            let state = self.0.clone();
            work(state).await;
            drop(self);
        };
        tasks.spawn(task.in_current_span());
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.twilio_tokens.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What the status handler does when reading the call failed because the database is away:
/// answers 204 and applies the callback later when a known token signs it, 503 otherwise.
pub(super) async fn accept(
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
    tracing::info!(call_sid = %call_sid, "status callback while the database is away: applied once it is back");
    wait_saved(state, uri, headers, body, move |state| {
        apply_when_back(state, call_sid, signed, update)
    })
    .await
}

/// Takes one of the places, saves the request (`status_spool`) and runs `apply` as a tracked
/// task holding both; the file goes once `apply` says the callback is settled. 204, or 503
/// when every place is taken.
async fn wait_saved<F, Fut>(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    apply: F,
) -> Response
where
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let Some(place) = Place::take(state) else {
        tracing::warn!("status callback while the database is away: too many waiting");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let held = save(state, uri, headers, body).await;
    place.spawn(move |state| settle(apply(state), held));
    StatusCode::NO_CONTENT.into_response()
}

/// Keeps the callback on disk while it waits (`status_spool`), when the spill folder is set.
/// Written and flushed off the runtime's threads: an `fsync` can take a while, and live calls
/// share those threads.
async fn save(state: &AppState, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<HeldFile> {
    let dir = spill_dir(state)?;
    let saved = SavedCallback {
        uri: uri.to_string(),
        signature: headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: String::from_utf8_lossy(body).into_owned(),
    };
    tokio::task::spawn_blocking(move || HeldFile::save(&dir, &saved))
        .await
        .map_err(std::io::Error::other)
        .and_then(|saved| saved)
        .inspect_err(|e| {
            tracing::warn!(error = %e, "a status callback waits in memory only: its file could not be written");
        })
        .ok()
}

/// The folder saved callbacks go to: the call-data writer's spill folder.
fn spill_dir(state: &AppState) -> Option<PathBuf> {
    let dir = state.settings.database.call_data_spill_dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Runs `apply`; the callback's file goes once it is settled, and stays for the next look
/// ([`spawn_refresh`]) when the database stayed away past the patience.
async fn settle(apply: impl std::future::Future<Output = bool>, held: Option<HeldFile>) {
    if apply.await
        && let Some(held) = held
    {
        held.done();
    }
}

/// Takes up the saved callbacks no process holds in the spill folder: each is checked and
/// applied as if it had just arrived while the database was away.
fn adopt_left(state: &AppState) {
    let Some(dir) = spill_dir(state) else {
        return;
    };
    for path in HeldFile::leftovers(&dir) {
        match HeldFile::adopt(&path) {
            Ok(Some((held, saved))) => resume(state, held, saved),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "a saved status callback could not be read");
            }
        }
    }
}

/// One saved callback, taken up again: what it needs is rebuilt from the request as saved.
fn resume(state: &AppState, held: HeldFile, saved: SavedCallback) {
    let body = saved.body.as_bytes();
    let (Ok(uri), Ok(signature), Ok(params), Ok(callback)) = (
        saved.uri.parse::<Uri>(),
        HeaderValue::from_str(&saved.signature),
        parse_form_pairs(body),
        CallStatusCallback::from_form(body),
    ) else {
        tracing::warn!("a saved status callback is not one: dropped");
        held.done();
        return;
    };
    let call_sid = callback.call_sid.clone();
    let Some(update) = StatusUpdate::new(state, &call_sid, &callback) else {
        held.done();
        return;
    };
    // Beyond the places, it stays on disk for the next look.
    let Some(place) = Place::take(state) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(SIGNATURE_HEADER, signature);
    let signed = Signed {
        uri,
        headers,
        params,
    };
    tracing::info!(call_sid = %call_sid, "a saved status callback no process held is taken up");
    place.spawn(move |state| settle(apply_when_back(state, call_sid, signed, update), Some(held)));
}

/// What the status handler does when writing the update failed because the database is away
/// (the callback was already checked against the call's organisation's token): answers 204,
/// saves the request and writes the update once the database is back; 503 beyond
/// [`MAX_PENDING`]. Taken up after a stop, the saved request is checked again in full.
pub(super) async fn retry(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    call: CallRow,
    update: StatusUpdate,
) -> Response {
    wait_saved(state, uri, headers, body, move |state| async move {
        update.apply_while_database_away(&state, &call).await
    })
    .await
}

/// From the start and every `twilio.callbacks_refresh_s` until shutdown: reads every
/// organisation's credentials ([`KnownTokens::refresh`]; a read that fails, the database away,
/// keeps what was known) and takes up the saved callbacks no process holds.
pub fn spawn_refresh(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(state.settings.twilio.callbacks_refresh_s.max(1));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {
                    match state.twilio_tokens.refresh(&state).await {
                        Ok(n) => tracing::debug!(organisations = n, "Twilio credentials read"),
                        Err(e) => tracing::info!(error = %e, "Twilio credentials not read again; what was known stays"),
                    }
                    adopt_left(&state);
                }
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
/// organisation's token as read then, and applies it. Whether it is settled (applied or
/// dropped for good), not given up on because the database stayed away.
async fn apply_when_back(
    state: AppState,
    call_sid: String,
    signed: Signed,
    update: StatusUpdate,
) -> bool {
    let read = while_database_away("status callback's call", END_OF_CALL_PATIENCE, || {
        state.store.get_call_by_sid(None, &call_sid)
    })
    .await;
    let call = match read {
        Ok(Some(call)) => call,
        Ok(None) => {
            tracing::info!(call_sid = %call_sid, "status callback for a call we have no record of");
            return true;
        }
        Err(e) => {
            tracing::error!(call_sid = %call_sid, error = %e, "status callback given up: the database stayed away");
            return !e.is_transient();
        }
    };
    let auth = TwilioAuth::for_org(&state, Some(call.organization_id)).await;
    if let Err(why) = auth.check(&state, &signed.uri, &signed.headers, &signed.params) {
        tracing::warn!(call_sid = %call_sid, why, "status callback rejected once the database was back");
        return true;
    }
    update.apply_while_database_away(&state, &call).await
}
