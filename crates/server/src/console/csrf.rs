//! The anti-forgery check of state-changing console requests.
//!
//! Every console request other than GET/HEAD/OPTIONS must carry the session's CSRF token:
//! either in an `X-CSRF-Token` header (the console's JavaScript) or in a `csrf_token` field of
//! an `application/x-www-form-urlencoded` body (every form has it as a hidden field; see
//! [`crate::console::layout::csrf_field`]). Anything else is refused with 403 before the
//! handler runs; a request without a valid session goes to the sign-in page. The sign-in form
//! (which has no session yet) checks its own double-submit token instead
//! ([`crate::console::session`]).
//!
//! The session read here is handed on to the handler in the request's extensions, so
//! [`ConsoleUser`] costs no second database read. The same rule holds for the JSON API when a
//! browser calls it with the session cookie (see `crate::auth`).

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::console::error::ConsoleError;
use crate::console::session::{ConsoleUser, LOGIN_PATH, session_token, tokens_match};
use crate::state::AppState;

/// Header the console's JavaScript sends its session's CSRF token in.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-csrf-token");
/// Name of the hidden form field holding the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// Methods that change nothing and need no token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Middleware around every console route: refuses a state-changing request without the right
/// token (403), sends one without a session to the sign-in page, and passes the session on.
pub async fn require_csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if is_safe(request.method()) || request.uri().path() == LOGIN_PATH {
        return next.run(request).await;
    }
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

async fn check(state: &AppState, request: Request) -> Result<Request, ConsoleError> {
    let token = session_token(request.headers()).ok_or(ConsoleError::SignedOut)?;
    let session = state
        .store
        .console_session(token)
        .await?
        .ok_or(ConsoleError::SignedOut)?;
    let refused = || {
        ConsoleError::Forbidden(
            "This request did not carry the session's anti-forgery token; reload the page and \
             try again."
                .into(),
        )
    };
    let (mut parts, body) = request.into_parts();
    let header_token = parts
        .headers
        .get(&CSRF_HEADER)
        .and_then(|v| v.to_str().ok());
    let body = match header_token {
        Some(sent) if tokens_match(sent, &session.csrf_token) => body,
        Some(_) => return Err(refused()),
        None => {
            let is_form = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
            if !is_form {
                return Err(refused());
            }
            let limit = state.settings.server.max_body_bytes;
            let bytes = to_bytes(body, limit)
                .await
                .map_err(|_| ConsoleError::BadRequest("the form is too large".into()))?;
            let sent = form_field(&bytes, CSRF_FIELD).ok_or_else(refused)?;
            if !tokens_match(&sent, &session.csrf_token) {
                return Err(refused());
            }
            Body::from(bytes)
        }
    };
    parts.extensions.insert(ConsoleUser { session });
    Ok(Request::from_parts(parts, body))
}

/// The first value of field `name` in a urlencoded form body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::form_field;

    #[test]
    fn finds_the_token_field() {
        assert_eq!(
            form_field(b"a=1&csrf_token=ab%2Bc&b=2", "csrf_token").as_deref(),
            Some("ab+c")
        );
        assert_eq!(form_field(b"a=1", "csrf_token"), None);
    }
}
