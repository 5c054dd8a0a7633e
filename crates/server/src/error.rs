//! The one error type every API handler returns, rendered as
//! `{"error": {"code", "message", "field"?, "details"?}}` with the matching status.
//!
//! Internal failures (database down, bugs) are logged with their cause and answered with a
//! generic 500 message: the client never sees SQL, paths or stack traces.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// One failed check in a request: which field (dotted path with indices, e.g.
/// `llm_settings.temperature`, `bypass_numbers[1]`; `body` for the body as a whole) and the
/// rule it broke, in words (`must be between 0 and 2`, `unknown field`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Dotted path of the offending field in the request body, or the parameter name.
    pub field: String,
    /// The rule that failed, in words.
    pub rule: String,
}

impl FieldError {
    /// A failed `rule` at `field` (an empty field means the whole body).
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        let field = field.into();
        FieldError {
            field: if field.is_empty() {
                "body".to_owned()
            } else {
                field
            },
            rule: rule.into(),
        }
    }
}

impl From<switchboard_store::StoreError> for ApiError {
    /// `NotFound` → 404, `Conflict` → 409, `InvalidInput` → 422; anything else is a 500 whose
    /// cause is logged, not returned.
    fn from(err: switchboard_store::StoreError) -> Self {
        use switchboard_store::StoreError;
        match err {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::InvalidInput(message) => ApiError::invalid("body", message),
            other => ApiError::internal(other),
        }
    }
}

impl From<switchboard_assistant::ValidationErrors> for ApiError {
    fn from(errors: switchboard_assistant::ValidationErrors) -> Self {
        let mut list: Vec<FieldError> = errors
            .errors
            .into_iter()
            .map(|e| FieldError::new(e.field, e.rule))
            .collect();
        if list.is_empty() {
            list.push(FieldError::new("body", "is invalid"));
        }
        ApiError::Validation(list)
    }
}

/// An API failure. Each variant maps to one HTTP status and one stable `code` string.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or not the JSON shape expected (syntax level).
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing, malformed or unknown API key.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the key is valid but its role may not do this (e.g. a member key managing keys).
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown id, or a record of another organisation (never 403: existence is private).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with current state (e.g. a number held by someone else).
    #[error("{0}")]
    Conflict(String),
    /// 408: the request body did not arrive within `server.body_read_timeout_ms`.
    #[error("request body not received in time")]
    RequestTimeout,
    /// 413: the body is larger than `server.max_body_bytes`.
    #[error("request body larger than {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The configured limit, in bytes.
        limit_bytes: usize,
    },
    /// 415: a body was sent with a content type other than JSON.
    #[error("request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// 422: the body or a parameter is well-formed but breaks a rule; at least one entry.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 429: the API key sent more requests than its rate allows.
    #[error("too many requests")]
    RateLimited {
        /// Seconds after which a retry will be accepted (sent as `Retry-After`).
        retry_after_s: u64,
    },
    /// 502: a service the request depends on (Twilio) failed or could not be reached; nothing
    /// was changed, and retrying later may succeed.
    #[error("{0}")]
    BadGateway(String),
    /// 503: the server is shutting down and takes no new work.
    #[error("server is shutting down")]
    Unavailable,
    /// 500: anything else; the cause is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 for a single field.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(field, rule)])
    }

    /// A 500 whose cause is logged here and hidden from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError::Internal(cause.to_string())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BadGateway(_) => "bad_gateway",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn body(&self) -> ErrorBody {
        let (message, field, details) = match self {
            ApiError::Validation(errors) => {
                let first = errors.first();
                let message = match first {
                    Some(e) if errors.len() > 1 => {
                        format!("{}: {} (and {} more)", e.field, e.rule, errors.len() - 1)
                    }
                    Some(e) => format!("{}: {}", e.field, e.rule),
                    None => "validation failed".to_owned(),
                };
                (
                    message,
                    first.map(|e| e.field.clone()),
                    Some(errors.clone()),
                )
            }
            ApiError::Internal(_) => ("internal server error".to_owned(), None, None),
            other => (other.to_string(), None, None),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message,
                field,
                details,
            },
        }
    }
}

/// Wire shape of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// `error` object of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`not_found`, `validation_failed`, …).
    pub code: String,
    /// Human-readable sentence.
    pub message: String,
    /// For 422: the path of the first offending field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 422: every failed check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Vec<FieldError>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(%cause, "request failed with an internal error");
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::RateLimited { retry_after_s } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after_s.to_string()) {
                    headers.insert(header::RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_body_names_first_field_and_lists_all() {
        let err = ApiError::Validation(vec![
            FieldError::new("a.b", "must be at most 2"),
            FieldError::new("c", "must be a URL"),
        ]);
        let body = serde_json::to_value(err.body()).expect("json");
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(body["error"]["field"], "a.b");
        assert_eq!(body["error"]["details"][1]["rule"], "must be a URL");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains("1 more")
        );
    }

    #[test]
    fn internal_error_hides_its_cause() {
        let err = ApiError::internal("SELECT * FROM secrets failed at /var/db");
        let body = serde_json::to_value(err.body()).expect("json");
        assert_eq!(body["error"]["message"], "internal server error");
        assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
