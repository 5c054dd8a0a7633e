//! Fake Anthropic Messages server (docs/providers/anthropic.md), written from the protocol reference and
//! independent of the adapter in `switchboard-providers`.
//!
//! `POST /v1/messages` checks `x-api-key` (401 `authentication_error`), `anthropic-version`
//! (400) and the body (`max_tokens` required, non-empty `messages`, `system` not a role), then
//! answers the next scripted [`FakeLlmTurn`] (or the default reply to the last user message):
//! with `stream: true` the full event sequence `message_start`, `content_block_start`, `ping`,
//! `content_block_delta`s (`text_delta`, `input_json_delta`), `content_block_stop`,
//! `message_delta` (stop_reason, cumulative usage), `message_stop`; otherwise a JSON message.
//! Errors use Anthropic's body `{"type":"error","error":{…},"request_id":…}`, including 529
//! `overloaded_error`; a mid-stream failure is an `event: error`. `GET /v1/models/{model_id}`
//! answers the model object for the ids and aliases in [`MODEL_IDS`] (404 `not_found_error`
//! otherwise), after the same key and version checks.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::fault::{FaultKind, garbage_json};
use crate::openai::{
    FakeLlmOptions, FakeLlmServer, FakeLlmTurn, RecordedRequest, Shared, Step, approx_tokens,
    default_reply, last_user_text, split_pieces, sse_response,
};

/// The `anthropic-version` the fake requires (any other value, or none, is a 400).
pub const REQUIRED_VERSION: &str = "2023-06-01";

/// The fake Anthropic server. Derefs to [`FakeLlmServer`] for scripting and assertions.
pub struct FakeAnthropic {
    server: FakeLlmServer,
}

impl std::ops::Deref for FakeAnthropic {
    type Target = FakeLlmServer;
    fn deref(&self) -> &FakeLlmServer {
        &self.server
    }
}

impl FakeAnthropic {
    /// Starts with default options (any key, no latency).
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeLlmOptions::default()).await
    }

    /// Starts with options.
    pub async fn start_with(options: FakeLlmOptions) -> std::io::Result<Self> {
        let server = FakeLlmServer::start(options, |shared| {
            Router::new().fallback(handle_messages).with_state(shared)
        })
        .await?;
        Ok(Self { server })
    }

    /// The API root: `http://127.0.0.1:{port}/v1` (append `/messages`).
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.endpoint())
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn error(status: u16, kind: &str, message: &str, extra: &[(String, String)]) -> Response {
    let body = json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"});
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == 429 {
        resp.headers_mut()
            .insert("retry-after", header::HeaderValue::from_static("1"));
    }
    for (k, v) in extra {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            header::HeaderValue::from_str(v),
        ) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// The key and version checks of every request: `x-api-key` (401 `authentication_error`) and
/// `anthropic-version` (400).
fn refuse_auth(rec: &RecordedRequest, options: &FakeLlmOptions) -> Option<Response> {
    match (rec.header("x-api-key"), options.api_key.as_deref()) {
        (None, _) => {
            return Some(error(
                401,
                "authentication_error",
                "x-api-key header is required",
                &[],
            ));
        }
        (Some(k), Some(expected)) if k != expected => {
            return Some(error(401, "authentication_error", "invalid x-api-key", &[]));
        }
        (Some(""), None) => {
            return Some(error(401, "authentication_error", "invalid x-api-key", &[]));
        }
        _ => {}
    }
    if rec.header("anthropic-version") != Some(REQUIRED_VERSION) {
        return Some(error(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
            &[],
        ));
    }
    None
}

/// Model ids and aliases `GET /v1/models/{model_id}` knows
/// (<https://docs.anthropic.com/en/docs/about-claude/models>).
pub const MODEL_IDS: [&str; 12] = [
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-6",
    "claude-opus-4-6",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-0",
    "claude-sonnet-4-20250514",
    "claude-3-5-haiku-latest",
    "claude-3-5-haiku-20241022",
];

/// `GET /v1/models/{model_id}` (<https://docs.anthropic.com/en/api/models>): the model object
/// (an alias resolves to its dated id's object), 401 for a wrong key, 404 `not_found_error` for
/// a model the fake does not know.
fn retrieve_model(
    rec: &RecordedRequest,
    options: &FakeLlmOptions,
    method: &Method,
    id: &str,
) -> Response {
    if *method != Method::GET {
        return error(405, "invalid_request_error", "Method not allowed", &[]);
    }
    if let Some(refused) = refuse_auth(rec, options) {
        return refused;
    }
    if !MODEL_IDS.contains(&id) {
        return error(404, "not_found_error", &format!("model: {id}"), &[]);
    }
    let body = json!({"type": "model", "id": id, "display_name": id,
        "created_at": "2025-10-01T00:00:00Z"});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle_messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = RecordedRequest::capture(&method, &uri, &headers, &body);
    shared.record(rec.clone());
    if let Some(id) = rec
        .path
        .strip_prefix("/v1/models/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
    {
        return retrieve_model(&rec, &shared.options(), &method, id);
    }
    if rec.path != "/v1/messages" {
        return error(
            404,
            "not_found_error",
            &format!("Not found: {}", rec.path),
            &[],
        );
    }
    if method != Method::POST {
        return error(405, "invalid_request_error", "Method not allowed", &[]);
    }
    let options = shared.options();
    if let Some(refused) = refuse_auth(&rec, &options) {
        return refused;
    }
    let b = &rec.body;
    if !b.is_object() {
        return error(
            400,
            "invalid_request_error",
            "Request body is not valid JSON",
            &[],
        );
    }
    if !b.get("max_tokens").is_some_and(Value::is_u64) {
        return error(
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            &[],
        );
    }
    let Some(messages) = b
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return error(
            400,
            "invalid_request_error",
            "messages: at least one message is required",
            &[],
        );
    };
    if messages
        .iter()
        .any(|m| m.get("role").and_then(Value::as_str) == Some("system"))
    {
        return error(
            400,
            "invalid_request_error",
            "messages: Unexpected role \"system\". Use the top-level `system` parameter.",
            &[],
        );
    }
    if b.get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| !(0.0..=1.0).contains(&t))
    {
        return error(
            400,
            "invalid_request_error",
            "temperature: must be between 0 and 1",
            &[],
        );
    }
    let turn = shared.turn_for_request(anthropic_fault, || {
        FakeLlmTurn::Text(default_reply(last_user_text(messages).as_deref()))
    });
    let model = b
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("claude-fake")
        .to_owned();
    let stream = b.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let input_tokens = approx_tokens(&b["messages"].to_string());
    match turn {
        FakeLlmTurn::Status {
            status,
            error_type,
            message,
            headers,
            ..
        } => error(status, &error_type, &message, &headers),
        FakeLlmTurn::HangBeforeHeaders => {
            shared.until_shutdown().await;
            error(503, "api_error", "shutting down", &[])
        }
        turn if !stream => non_stream(&turn, &model, input_tokens),
        turn => {
            let n = shared.counter.fetch_add(1, Ordering::SeqCst);
            let id = format!("msg_fake{n}");
            sse_response(Arc::clone(&shared), options.latency, n, move |out| {
                plan(&turn, &id, &model, input_tokens, out)
            })
        }
    }
}

/// An injected fault as Anthropic shows it: the connection aborted before the first token, no
/// token at all, its real 429 / 500 / 529 bodies, or malformed events.
fn anthropic_fault(kind: FaultKind) -> FakeLlmTurn {
    match kind {
        FaultKind::Drop => FakeLlmTurn::CloseMidStream {
            text: String::new(),
            after_chunks: 0,
        },
        FaultKind::Stall => FakeLlmTurn::HangAfterHeaders,
        FaultKind::HttpStatus(429) => FakeLlmTurn::status(
            429,
            "rate_limit_error",
            None,
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        FaultKind::HttpStatus(529) => FakeLlmTurn::overloaded(),
        FaultKind::HttpStatus(status) => {
            FakeLlmTurn::status(status, "api_error", None, "Internal server error")
        }
        FaultKind::Garbage => FakeLlmTurn::Garbage,
    }
}

fn non_stream(turn: &FakeLlmTurn, model: &str, input_tokens: u32) -> Response {
    let mut content = Vec::new();
    let mut stop = "end_turn";
    match turn {
        FakeLlmTurn::Text(t)
        | FakeLlmTurn::ErrorMidStream { text: t, .. }
        | FakeLlmTurn::CloseMidStream { text: t, .. } => {
            content.push(json!({"type": "text", "text": t}))
        }
        FakeLlmTurn::ToolCalls { text, calls, .. } => {
            if let Some(t) = text.as_deref().filter(|t| !t.is_empty()) {
                content.push(json!({"type": "text", "text": t}));
            }
            for (i, c) in calls.iter().enumerate() {
                let input: Value = serde_json::from_str(&c.arguments).unwrap_or_else(|_| json!({}));
                content.push(json!({"type": "tool_use", "id": format!("toolu_fake{i}"), "name": c.name, "input": input}));
            }
            stop = "tool_use";
        }
        _ => {}
    }
    let body = json!({"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 12}});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn sse(kind: &str, data: &Value) -> String {
    format!("event: {kind}\ndata: {data}\n\n")
}

fn plan(turn: &FakeLlmTurn, id: &str, model: &str, input_tokens: u32, out: &mut Vec<Step>) {
    let start = json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
        "content": [], "model": model, "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}});
    out.push(Step::Send(sse("message_start", &start)));
    let mut first = true;
    let mut token = |out: &mut Vec<Step>, s: String| {
        out.push(if first {
            Step::First(s)
        } else {
            Step::Token(s)
        });
        first = false;
    };
    let mut output_tokens = 1u32;
    let mut index = 0usize;
    let block_stop = |index: usize| {
        Step::Send(sse(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": index}),
        ))
    };
    let stop_reason = match turn {
        FakeLlmTurn::HangAfterHeaders => {
            out.push(Step::Hang);
            return;
        }
        FakeLlmTurn::ErrorMidStream {
            text,
            after_chunks,
            error_type,
            message,
        } => {
            text_block(out, &mut token, text, 0, Some(*after_chunks));
            out.push(Step::Send(sse(
                "error",
                &json!({"type": "error", "error": {"type": error_type, "message": message}}),
            )));
            return;
        }
        FakeLlmTurn::CloseMidStream { text, after_chunks } => {
            text_block(out, &mut token, text, 0, Some(*after_chunks));
            out.push(Step::Abort);
            return;
        }
        FakeLlmTurn::Garbage => {
            let d = json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Sure"}});
            for _ in 0..2 {
                token(
                    out,
                    format!(
                        "event: content_block_delta\ndata: {}\n\n",
                        garbage_json(&d.to_string())
                    ),
                );
            }
            out.push(Step::Send(sse(
                "message_stop",
                &json!({"type": "message_stop"}),
            )));
            return;
        }
        FakeLlmTurn::Text(text) => {
            output_tokens += text_block(out, &mut token, text, 0, None);
            out.push(block_stop(0));
            "end_turn"
        }
        FakeLlmTurn::ToolCalls { text, calls, .. } => {
            if let Some(t) = text.as_deref().filter(|t| !t.is_empty()) {
                output_tokens += text_block(out, &mut token, t, 0, None);
                out.push(block_stop(0));
                index = 1;
            } else {
                out.push(Step::Send(sse("ping", &json!({"type": "ping"}))));
            }
            for (k, c) in calls.iter().enumerate() {
                let start = json!({"type": "content_block_start", "index": index, "content_block":
                    {"type": "tool_use", "id": format!("toolu_fake{k}"), "name": c.name, "input": {}}});
                token(out, sse("content_block_start", &start));
                let mut pieces = vec![String::new()];
                pieces.extend(split_pieces(&c.arguments));
                for p in pieces {
                    output_tokens += 1;
                    out.push(Step::Token(sse(
                        "content_block_delta",
                        &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": p}}),
                    )));
                }
                out.push(block_stop(index));
                index += 1;
            }
            "tool_use"
        }
        FakeLlmTurn::Status { .. } | FakeLlmTurn::HangBeforeHeaders => return,
    };
    token(
        out,
        sse(
            "message_delta",
            &json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}}),
        ),
    );
    out.push(Step::Send(sse(
        "message_stop",
        &json!({"type": "message_stop"}),
    )));
}

/// Streams one text block (start, a ping after the first, deltas); returns the deltas sent.
fn text_block(
    out: &mut Vec<Step>,
    token: &mut dyn FnMut(&mut Vec<Step>, String),
    text: &str,
    index: usize,
    limit: Option<usize>,
) -> u32 {
    let start = json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}});
    out.push(Step::Send(sse("content_block_start", &start)));
    if index == 0 {
        out.push(Step::Send(sse("ping", &json!({"type": "ping"}))));
    }
    let mut n = 0;
    for p in split_pieces(text)
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
    {
        n += 1;
        let d = json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}});
        token(out, sse("content_block_delta", &d));
    }
    n
}
