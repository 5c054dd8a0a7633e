//! `Authorization: Bearer <api key>` → the caller's organisation, as an extractor.
//!
//! Handlers that take [`Auth`] are authenticated: a missing, malformed or unknown key is a 401
//! (with `WWW-Authenticate: Bearer`) before the handler runs, and a key over its request rate
//! is a 429. Every store query in a handler is then scoped by `auth.organization_id`, which is
//! what keeps organisations apart. The key itself is never logged.

use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use switchboard_store::AuthContext;

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
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("missing Authorization: Bearer <api key> header".into())
        })?;
        let token = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
            ApiError::Unauthorized("Authorization header must be `Bearer <api key>`".into())
        })?;
        let context = state
            .store
            .authenticate(token)
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::Unauthorized("invalid or revoked API key".into()))?;
        state
            .rate_limiter
            .check(context.api_key_id, Instant::now())
            .map_err(|retry_after_s| ApiError::RateLimited { retry_after_s })?;
        Ok(Auth(context))
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
