//! Sign-in with an API key, the session cookie, and who a console request acts as.
//!
//! Signing in (`POST /console/login`) checks the key like the API does, then creates a
//! server-side session: a random 32-byte token goes to the browser in the `sb_session` cookie
//! (`HttpOnly; SameSite=Strict; Path=/`, `Secure` when `server.public_url` is https) and only
//! its SHA-256 is stored (`console_sessions`). Each request reads the session back joined with
//! its API key, so a revoked key's sessions end at once and the role is always the key's
//! current one. Signing out deletes the session.
//!
//! The sign-in form itself has no session yet: it is protected by a double-submit token (a
//! random value in both an `HttpOnly; SameSite=Strict` cookie scoped to the login path and a
//! hidden field, which must match), so another site cannot sign a browser in to its own key.

use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use switchboard_store::{AuthContext, ConsoleSession, KeyRole};

use crate::auth::{record_failure, refuse_if_throttled};
use crate::console::error::ConsoleError;
use crate::console::layout;
use crate::edge::ClientAddr;
use crate::state::AppState;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sb_session";
/// Name of the sign-in form's double-submit cookie.
pub const LOGIN_CSRF_COOKIE: &str = "sb_login_csrf";
/// The sign-in page and form target.
pub const LOGIN_PATH: &str = "/console/login";
/// The sign-out form target (POST, CSRF-checked like every console form).
pub const LOGOUT_PATH: &str = "/console/logout";
/// How long a session lasts from sign-in, ms (12 hours: a working day; then sign in again).
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
/// How long the sign-in form's double-submit cookie lasts, s.
const LOGIN_CSRF_TTL_S: i64 = 60 * 60;
/// Random bytes in session and anti-forgery tokens (hex-encoded on the wire).
const TOKEN_BYTES: usize = 32;

/// Sign-in, sign-out.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(LOGIN_PATH, get(login_page).post(login))
        .route(LOGOUT_PATH, post(logout))
}

/// The signed-in operator of a console request: the session and the API key context it acts
/// with. As an extractor it reads the `sb_session` cookie (or reuses what the CSRF check already
/// read); a browser without a valid session is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    /// The session row (its CSRF token goes into every form of the page).
    pub session: ConsoleSession,
}

impl ConsoleUser {
    /// The organisation, key and user the session acts as.
    pub fn auth(&self) -> &AuthContext {
        &self.session.auth
    }

    /// Whether the session's key has the admin role (manages keys and credentials).
    pub fn is_admin(&self) -> bool {
        self.session.auth.role == KeyRole::Admin
    }

    /// The session's anti-forgery token, for hidden form fields and `X-CSRF-Token` headers.
    pub fn csrf_token(&self) -> &str {
        &self.session.csrf_token
    }
}

impl FromRequestParts<AppState> for ConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<ConsoleUser>() {
            return Ok(user.clone());
        }
        let token = session_token(&parts.headers).ok_or(ConsoleError::SignedOut)?;
        let session = state
            .store
            .console_session(token)
            .await?
            .ok_or(ConsoleError::SignedOut)?;
        state
            .rate_limiter
            .check(session.auth.api_key_id, Instant::now())
            .await
            .map_err(|retry_after_s| ConsoleError::RateLimited { retry_after_s })?;
        let user = ConsoleUser { session };
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, if present and non-empty.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The console session token of a request (its `sb_session` cookie), if it sent one.
pub fn session_token(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// Constant-time equality of two tokens (a CSRF check must not leak how much matched).
pub fn tokens_match(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A fresh random token: 32 bytes, lowercase hex.
fn new_token() -> String {
    hex::encode(rand::random::<[u8; TOKEN_BYTES]>())
}

/// `Secure` when the server is reached over https (`server.public_url`).
fn secure_attr(state: &AppState) -> &'static str {
    if state.public_base_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

fn set_cookie(response: &mut Response, value: String) {
    match HeaderValue::from_str(&value) {
        Ok(v) => {
            response.headers_mut().append(SET_COOKIE, v);
        }
        // Tokens are hex and attributes constant: unreachable in practice, and never logged.
        Err(_) => tracing::error!("console cookie could not be encoded"),
    }
}

/// Form fields of the sign-in page.
#[derive(Deserialize)]
pub struct LoginForm {
    /// The API key (never logged, never echoed back).
    #[serde(default)]
    api_key: String,
    /// The double-submit token (must equal the `sb_login_csrf` cookie).
    #[serde(default)]
    csrf_token: String,
}

/// `GET /console/login`: the sign-in form (a signed-in browser goes on to the console).
async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = session_token(&headers)
        && let Ok(Some(_)) = state.store.console_session(token).await
    {
        return Redirect::to("/console").into_response();
    }
    login_form(&state, StatusCode::OK, None)
}

/// Renders the sign-in form with a fresh double-submit token (cookie and hidden field).
fn login_form(state: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let token = new_token();
    let body: Markup = html! {
        main.login {
            h1 { "Switchboard console" }
            form method="post" action=(LOGIN_PATH) {
                input type="hidden" name="csrf_token" value=(token);
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" autocomplete="off" required
                    autofocus placeholder="sb_…";
                @if let Some(error) = error {
                    p.error #login-error role="alert" { (error) }
                }
                button type="submit" { "Sign in" }
            }
            p.hint { "Sign in with one of your organisation's API keys; the console acts with \
                      its role (admin or member)." }
        }
    };
    let mut response = (status, layout::bare_page("Sign in", body)).into_response();
    set_cookie(
        &mut response,
        format!(
            "{LOGIN_CSRF_COOKIE}={token}; HttpOnly; SameSite=Strict; Path={LOGIN_PATH}; \
             Max-Age={LOGIN_CSRF_TTL_S}{}",
            secure_attr(state)
        ),
    );
    response
}

/// `POST /console/login`: checks the double-submit token and the key, then starts a session.
async fn login(
    State(state): State<AppState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !tokens_match(expected, &form.csrf_token) {
        return Err(ConsoleError::Forbidden(
            "The sign-in form expired or did not come from this console; reload it and try \
             again."
                .into(),
        ));
    }
    let client = client.map(|Extension(c)| c);
    let now = Instant::now();
    refuse_if_throttled(&state, client, now)
        .await
        .map_err(|_| ConsoleError::Forbidden("Too many failed sign-ins; wait and retry.".into()))?;
    let key = form.api_key.trim();
    let Some(auth) = state.store.authenticate(key).await? else {
        if !key.is_empty() {
            record_failure(&state, client, now).await;
        }
        return Ok(login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("That API key is not valid, or it was revoked."),
        ));
    };
    let token = new_token();
    state
        .store
        .create_console_session(&token, &auth, &new_token(), SESSION_TTL_MS)
        .await?;
    tracing::info!(
        organization_id = auth.organization_id,
        api_key_id = auth.api_key_id,
        "console sign-in"
    );
    let mut response = Redirect::to("/console").into_response();
    let secure = secure_attr(&state);
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            SESSION_TTL_MS / 1000
        ),
    );
    set_cookie(
        &mut response,
        format!(
            "{LOGIN_CSRF_COOKIE}=; HttpOnly; SameSite=Strict; Path={LOGIN_PATH}; Max-Age=0{secure}"
        ),
    );
    Ok(response)
}

/// `POST /console/logout` (CSRF-checked by the middleware): deletes the session and the cookie.
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if let Some(token) = session_token(&headers) {
        state.store.delete_console_session(token).await?;
    }
    let mut response = Redirect::to(LOGIN_PATH).into_response();
    set_cookie(
        &mut response,
        format!(
            "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
            secure_attr(&state)
        ),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cookies_by_name() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; sb_session=abc ; b=2"),
        );
        headers.append(COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(session_token(&headers), Some("abc"));
        assert_eq!(cookie(&headers, "c"), Some("3"));
        assert_eq!(cookie(&headers, "sb_session_x"), None);
        headers.clear();
        headers.append(COOKIE, HeaderValue::from_static("sb_session="));
        assert_eq!(session_token(&headers), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
        assert_eq!(new_token().len(), 2 * TOKEN_BYTES);
        assert_ne!(new_token(), new_token());
    }
}
