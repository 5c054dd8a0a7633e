//! How the fake says no: the handshake's HTTP error and the websocket error event, each in the
//! shape of the requested `Cartesia-Version` (a structured object from 2026-03-01 on, the older
//! `Title: Message` text before).

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::handshake::server::ErrorResponse;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use super::STRUCTURED_ERRORS_SINCE;

/// Whether errors of `version` are structured objects (2026-03-01 and newer).
pub(super) fn structured(version: Option<&str>) -> bool {
    version.is_some_and(|v| v >= STRUCTURED_ERRORS_SINCE)
}

/// A random UUID-shaped request id.
fn request_id() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Why a request (handshake or message) is refused.
#[derive(Debug, Clone)]
pub(super) struct Refusal {
    pub(super) status: u16,
    code: Option<&'static str>,
    title: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(
        status: u16,
        code: Option<&'static str>,
        title: &'static str,
        message: String,
    ) -> Self {
        Self {
            status,
            code,
            title,
            message,
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            400,
            Some("invalid_request"),
            "Invalid request",
            message.into(),
        )
    }

    /// The handshake's HTTP error: a JSON error object for structured versions, otherwise the
    /// `Title: Message` text.
    pub(super) fn http(&self, version: Option<&str>) -> ErrorResponse {
        let (body, content_type) = self.body(version);
        let mut error = ErrorResponse::new(Some(body));
        *error.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        error
            .headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        error
    }

    /// The HTTP error body and its content type: a JSON error object for structured versions,
    /// otherwise the `Title: Message` text.
    pub(super) fn body(&self, version: Option<&str>) -> (String, &'static str) {
        if structured(version) {
            let body = json!({"error_code": self.code, "title": self.title,
                "message": self.message, "request_id": request_id()});
            (body.to_string(), "application/json")
        } else {
            (
                format!("{}: {}", self.title, self.message),
                "text/plain; charset=utf-8",
            )
        }
    }

    /// The websocket error event for this refusal.
    pub(super) fn event(&self, version: Option<&str>, context_id: Option<&str>) -> Value {
        let mut event = if structured(version) {
            let rid = request_id();
            let request_id = match context_id {
                Some(ctx) => format!("{rid}:{ctx}:{}", request_id()),
                None => rid,
            };
            json!({"type": "error", "done": true, "status_code": self.status,
                "error_code": self.code, "title": self.title, "message": self.message,
                "request_id": request_id})
        } else {
            json!({"type": "error", "done": true, "status_code": self.status,
                "error": format!("{}: {}", self.title, self.message)})
        };
        if let Some(ctx) = context_id {
            event["context_id"] = json!(ctx);
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes_follow_the_version() {
        let r = Refusal::bad_request("x");
        let new = r.event(Some("2026-03-01"), Some("c1"));
        assert_eq!(new["error_code"], "invalid_request");
        assert!(new.get("error").is_none());
        let old = r.event(Some("2024-11-13"), None);
        assert_eq!(old["error"], "Invalid request: x");
        assert!(old.get("context_id").is_none());
    }
}
