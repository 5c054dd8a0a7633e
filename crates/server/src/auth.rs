//! `Authorization: Bearer <api key>` → the caller's organisation, as an extractor.
//!
//! Handlers that take [`Auth`] are authenticated: a missing, malformed or unknown key is a 401
//! (with `WWW-Authenticate: Bearer`) before the handler runs, and a key over its request rate
//! is a 429 (the limit is shared by every instance through Redis when `redis.url` is set:
//! `crate::shared_rate_limit`). Every store query in a handler is then scoped by
//! `auth.organization_id`, which is what keeps organisations apart. The key itself is never logged.
//!
//! Key guessing is throttled per client address ([`AuthThrottle`], across instances through
//! Redis when `redis.url` is set): a malformed or unknown key
//! counts as a failure, and an address over `server.auth_fail_limit` failures in its window
//! gets 429 with `Retry-After` before its key is even looked at. A missing header is not a
//! guess and is not counted. Keys are looked up in the database on every request (no cache),
//! so a revoked key fails at once.
//!
//! A browser signed in to the web console may call the API with its session cookie instead of
//! a header (see `console_session_auth`): the console's JavaScript uses this for JSON calls,
//! the live event stream and recording playback.
//!
//! [`AuthThrottle`]: crate::shared_auth_failures::AuthThrottle

use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchboard_store::{AuthContext, KeyRole};

use crate::console::csrf::CSRF_HEADER;
use crate::console::session::{session_token, tokens_match};
use crate::edge::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller. Derefs to the store's [`AuthContext`]
/// (`organization_id`, `api_key_id`, `user_id`).
#[derive(Debug, Clone)]
pub struct Auth(pub AuthContext);

impl std::ops::Deref for Auth {
    type Target = AuthContext;

    fn deref(&self) -> &AuthContext {
        &self.0
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header value (scheme matched
/// case-insensitively); `None` for other schemes or an empty token.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let client = parts.extensions.get::<ClientAddr>().copied();
        let now = Instant::now();
        refuse_if_throttled(state, client, now).await?;
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            if let Some(token) = session_token(&parts.headers) {
                return console_session_auth(parts, state, token, now).await;
            }
            return Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <api key> header".into(),
            ));
        };
        let Some(token) = header.to_str().ok().and_then(bearer_token) else {
            record_failure(state, client, now).await;
            return Err(ApiError::Unauthorized(
                "Authorization header must be `Bearer <api key>`".into(),
            ));
        };
        let Some(context) = state
            .store
            .authenticate(token)
            .await
            .map_err(ApiError::internal)?
        else {
            record_failure(state, client, now).await;
            return Err(ApiError::Unauthorized("invalid or revoked API key".into()));
        };
        state
            .rate_limiter
            .check(context.api_key_id, now)
            .await
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
        Ok(Auth(context))
    }
}

/// Authenticates a request by its console session cookie (no `Authorization` header): the
/// session's key, checked against the database like a bearer key (a revoked key's session
/// fails at once). GET and HEAD need nothing more; every other method also needs the session's
/// CSRF token in `X-CSRF-Token` (403 without it), so another site cannot make a signed-in
/// browser change anything. The session cookie is `SameSite=Strict`, so cross-site requests do
/// not carry it at all.
async fn console_session_auth(
    parts: &Parts,
    state: &AppState,
    token: &str,
    now: Instant,
) -> Result<Auth, ApiError> {
    let Some(session) = state
        .store
        .console_session(token)
        .await
        .map_err(ApiError::internal)?
    else {
        return Err(ApiError::Unauthorized(
            "console session expired, signed out or its API key was revoked".into(),
        ));
    };
    if !matches!(parts.method, Method::GET | Method::HEAD) {
        let sent = parts
            .headers
            .get(&CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !tokens_match(sent, &session.csrf_token) {
            return Err(ApiError::Forbidden(
                "a console session needs its X-CSRF-Token header on this method".into(),
            ));
        }
    }
    state
        .rate_limiter
        .check(session.auth.api_key_id, now)
        .await
        .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
    Ok(Auth(session.auth))
}

/// An authenticated caller whose key has the `admin` role: what managing keys and the
/// organisation's credentials takes. A member key gets a 403 naming the role it needs.
#[derive(Debug, Clone)]
pub struct AdminAuth(pub AuthContext);

impl std::ops::Deref for AdminAuth {
    type Target = AuthContext;

    fn deref(&self) -> &AuthContext {
        &self.0
    }
}

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Auth(context) = Auth::from_request_parts(parts, state).await?;
        if context.role != KeyRole::Admin {
            return Err(ApiError::Forbidden(
                "this needs an admin API key; this key's role is member".into(),
            ));
        }
        Ok(AdminAuth(context))
    }
}

/// 429 when the request's client address is over its failed-authentication limit. Requests
/// without a known client (not served by our accept loop) are not throttled.
pub async fn refuse_if_throttled(
    state: &AppState,
    client: Option<ClientAddr>,
    now: Instant,
) -> Result<(), ApiError> {
    match client {
        Some(client) => state
            .auth_failures
            .check(client.ip, now)
            .await
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s }),
        None => Ok(()),
    }
}

/// Counts a failed credential check against the request's client address.
pub async fn record_failure(state: &AppState, client: Option<ClientAddr>, now: Instant) {
    if let Some(client) = client {
        state.auth_failures.record_failure(client.ip, now).await;
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn parses_bearer_tokens() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
