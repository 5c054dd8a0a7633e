//! What a console page can fail with, rendered as a small HTML page (or, for a signed-out
//! browser, a redirect to the sign-in page).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use crate::console::layout;
use crate::console::session::LOGIN_PATH;

/// A console failure. Each variant maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, an expired one, or its API key was revoked: 303 to the sign-in page.
    #[error("signed out")]
    SignedOut,
    /// 403: a state-changing request without the session's anti-forgery token, or a page the
    /// key's role may not use.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such record in the organisation (existence elsewhere is never revealed).
    #[error("{0}")]
    NotFound(String),
    /// 400: a query or form value the page cannot use.
    #[error("{0}")]
    BadRequest(String),
    /// 429: the key is over its request rate; retry after this many seconds.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_s: u64,
    },
    /// 500: logged with its cause; the page says only that something failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ConsoleError {
    /// A 500 whose `cause` is logged, never shown.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ConsoleError::Internal(cause.to_string())
    }
}

impl From<switchboard_store::StoreError> for ConsoleError {
    fn from(err: switchboard_store::StoreError) -> Self {
        match err {
            switchboard_store::StoreError::NotFound => ConsoleError::NotFound("not found".into()),
            other => ConsoleError::internal(other),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ConsoleError::SignedOut => return Redirect::to(LOGIN_PATH).into_response(),
            ConsoleError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            ConsoleError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            ConsoleError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            ConsoleError::RateLimited { retry_after_s } => {
                let page = layout::bare_page(
                    "Too many requests",
                    html! { p { "Too many requests; try again in " (retry_after_s) " s." } },
                );
                let mut response = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
                if let Ok(v) = retry_after_s.to_string().parse() {
                    response.headers_mut().insert("retry-after", v);
                }
                return response;
            }
            ConsoleError::Internal(cause) => {
                tracing::error!(error = %cause, "console request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong on the server; it has been logged.".to_owned(),
                )
            }
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let page = layout::bare_page(
            title,
            html! {
                h1 { (title) }
                p.error { (message) }
                p { a href="/console" { "Back to the console" } }
            },
        );
        (status, page).into_response()
    }
}
