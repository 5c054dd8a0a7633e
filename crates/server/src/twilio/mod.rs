//! Everything Twilio calls on us: the voice webhook (TwiML), the media-stream websocket, and
//! the status callbacks. Requests are authenticated with `X-Twilio-Signature` (HMAC-SHA1 with
//! the organisation's auth token over the public URL we are reached at); the media stream is
//! authenticated by the signed stream token our TwiML handed out.

pub mod control;
pub mod sms;
pub mod status;
pub mod status_deferred;
mod status_spool;
pub mod stream;
pub mod voice;
pub mod warm_transfer;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use switchboard_telephony::signature;

use crate::state::AppState;

/// The header Twilio signs its requests in.
pub(crate) const SIGNATURE_HEADER: &str = "x-twilio-signature";

/// Routes of the Twilio edge.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/twilio/voice", post(voice::voice).get(voice::voice_get))
        .route("/twiml", post(voice::voice).get(voice::voice_get))
        .route("/twilio/stream", get(stream::stream))
        .route("/twilio/status", post(status::status))
        .route("/twilio/sms", post(sms::sms))
        .route(
            "/twilio/warm-transfer/{token}/answer",
            post(warm_transfer::answer),
        )
        .route(
            "/twilio/warm-transfer/{token}/status",
            post(warm_transfer::status),
        )
}

/// Seconds since the Unix epoch (for stream tokens).
pub(crate) fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A plain 403 for a request that did not prove it comes from Twilio.
pub(crate) fn forbidden(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, why).into_response()
}

/// The auth token a webhook of one organisation must be signed with.
#[derive(Clone)]
pub(crate) struct TwilioAuth {
    token: Option<String>,
}

impl std::fmt::Debug for TwilioAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `(account SID, auth token)` from the config (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`):
/// what organisation `default` signs with when it has none stored. The SID is empty when unset.
pub(crate) fn config_credentials(state: &AppState) -> Option<(String, String)> {
    let twilio = &state.settings.twilio;
    let token = twilio.auth_token.clone().filter(|t| !t.is_empty())?;
    Some((twilio.account_sid.clone().unwrap_or_default(), token))
}

impl TwilioAuth {
    /// The organisation's own token, else (for organisation `default`) `TWILIO_AUTH_TOKEN`.
    pub(crate) async fn for_org(state: &AppState, org_id: Option<i64>) -> TwilioAuth {
        let Some(org_id) = org_id else {
            return TwilioAuth { token: None };
        };
        let read = state.store.get_org_telephony(org_id).await;
        let creds = match &read {
            Ok(Some(t)) if !t.auth_token.is_empty() => {
                Some((t.account_sid.clone(), t.auth_token.clone()))
            }
            _ if state.default_org_id().await == Some(org_id) => config_credentials(state),
            _ => None,
        };
        // While the database is away, what this instance knew stays known.
        if read.is_ok() {
            let known = creds.as_ref().map(|(sid, t)| (sid.as_str(), t.as_str()));
            state.twilio_tokens.remember(org_id, known);
        }
        TwilioAuth {
            token: creds.map(|(_, t)| t),
        }
    }

    /// Checks the signature of a form-encoded webhook reached at `uri`. The URL Twilio signed
    /// is rebuilt as `server.public_url` + the request's path and raw query (never from the
    /// inner request's scheme/host, which a TLS-terminating proxy changes); a signature over
    /// that URL with its port removed or the scheme's default port added is accepted too. A
    /// proxy that adds or strips a path prefix must be mirrored in `server.public_url`.
    pub(crate) fn check(
        &self,
        state: &AppState,
        uri: &Uri,
        headers: &HeaderMap,
        params: &[(String, String)],
    ) -> Result<(), &'static str> {
        let Some(token) = self.token.as_deref() else {
            return Err("no Twilio auth token is configured for this organisation");
        };
        check_signature(state, token, uri, headers, params)
    }
}

/// [`TwilioAuth::check`] against `token`.
pub(crate) fn check_signature(
    state: &AppState,
    token: &str,
    uri: &Uri,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), &'static str> {
    let Some(sig) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err("missing X-Twilio-Signature");
    };
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{}", state.public_base_url, path);
    signature::validate(&url, params, token, sig).map_err(|_| "invalid X-Twilio-Signature")
}
