//! Fake OpenAI-compatible Chat Completions server (docs/providers/openai.md), written from the
//! protocol reference and independent of the adapter in `switchboard-providers`.
//!
//! Serves, on 127.0.0.1 (port chosen by the OS):
//! - `POST /v1/chat/completions` (OpenAI, Groq, xAI, custom; `Authorization: Bearer`),
//! - `POST /v1beta/openai/chat/completions` (Gemini's compatible layer; Bearer),
//! - `POST /openai/deployments/{deployment}/chat/completions?api-version=…` (Azure; `api-key`
//!   or Bearer; 404 without `api-version`; streams open with a `choices: []` chunk carrying
//!   `prompt_filter_results`, content chunks carry `content_filter_results`),
//! - `POST /openai/v1/chat/completions` (Azure's v1 surface),
//! - `POST /v1/embeddings` (Bearer; see [`crate::openai_embeddings`], recorded apart from the
//!   chat requests).
//! - `GET /v1/models/{model}` (and the Gemini/Azure v1 prefixes): the model object, 401 for a
//!   wrong key, 404 `model_not_found` for a model not in [`OPENAI_MODEL_IDS`].
//!
//! Each request takes the next scripted [`FakeLlmTurn`] (or, with an empty script, a believable
//! reply built from the last user message, see [`default_reply`]) and answers with SSE exactly as
//! §5.1 describes (role chunk with `content: ""`, small content deltas, a finish chunk with an empty
//! delta, a usage chunk with `choices: []` when `stream_options.include_usage`, `data: [DONE]`),
//! or with a plain JSON completion when `stream` is not `true`. Every request is recorded.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::fault::{Fault, FaultKind, FaultState, garbage_json};
use crate::latency::LatencyProfile;
use crate::openai_embeddings::EmbeddingsState;

/// One request as the fake received it, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Raw query string, if any (e.g. `api-version=2024-10-21`).
    pub query: Option<String>,
    /// Headers with lower-case names (last value wins).
    pub headers: BTreeMap<String, String>,
    /// The JSON body (`Value::Null` when it was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// A header value by (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub(crate) fn capture(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        let headers = headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        Self {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
        }
    }
}

/// A tool call the fake should stream.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeToolCall {
    /// Function name.
    pub name: String,
    /// Arguments as JSON text (streamed in fragments, verbatim).
    pub arguments: String,
}

impl FakeToolCall {
    /// A call of `name` with `arguments` serialised to JSON text.
    pub fn new(name: impl Into<String>, arguments: &Value) -> Self {
        Self {
            name: name.into(),
            arguments: arguments.to_string(),
        }
    }
}

/// What the fake does with one request. Shared by the OpenAI and Anthropic fakes; each renders
/// it in its own wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeLlmTurn {
    /// Stream this text as the reply.
    Text(String),
    /// Stream optional text, then these tool calls. `interleave` sends the argument fragments
    /// of parallel calls round-robin (OpenAI only; Anthropic blocks are sequential by design).
    ToolCalls {
        /// Text before the calls.
        text: Option<String>,
        /// The calls, in index order.
        calls: Vec<FakeToolCall>,
        /// Interleave fragments of different indexes.
        interleave: bool,
    },
    /// Answer with an HTTP error and the provider's error body.
    Status {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        error_type: String,
        /// `error.code` (OpenAI only; `None` → `null`).
        code: Option<String>,
        /// `error.message`.
        message: String,
        /// Extra response headers, e.g. `("x-should-retry", "false")`.
        headers: Vec<(String, String)>,
    },
    /// Never send response headers (until the fake shuts down): a connect/first-byte timeout.
    HangBeforeHeaders,
    /// Send `200` headers (and the role chunk / message_start), then nothing.
    HangAfterHeaders,
    /// Stream `text`, and after `after_chunks` content chunks send an in-stream error event
    /// and end the stream.
    ErrorMidStream {
        /// Reply text being streamed.
        text: String,
        /// Content chunks sent before the error.
        after_chunks: usize,
        /// `error.type` (e.g. `server_error`, `overloaded_error`).
        error_type: String,
        /// `error.message`.
        message: String,
    },
    /// Stream `text`, and after `after_chunks` content chunks abort the connection.
    CloseMidStream {
        /// Reply text being streamed.
        text: String,
        /// Content chunks sent before the abort.
        after_chunks: usize,
    },
    /// Send `200` headers, then stream events whose data is not valid JSON, then end the
    /// stream as if it were complete.
    Garbage,
}

impl FakeLlmTurn {
    /// A plain text reply.
    pub fn text(t: impl Into<String>) -> Self {
        Self::Text(t.into())
    }

    /// An HTTP error with this status and error type/code.
    pub fn status(status: u16, error_type: &str, code: Option<&str>, message: &str) -> Self {
        Self::Status {
            status,
            error_type: error_type.to_owned(),
            code: code.map(str::to_owned),
            message: message.to_owned(),
            headers: Vec::new(),
        }
    }

    /// OpenAI's retryable 429 (`rate_limit_exceeded`).
    pub fn rate_limited() -> Self {
        Self::status(
            429,
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests",
        )
    }

    /// OpenAI's billing 429 (`insufficient_quota`, not retryable).
    pub fn insufficient_quota() -> Self {
        Self::status(
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            "You exceeded your current quota, please check your plan and billing details.",
        )
    }

    /// A 5xx with OpenAI's `server_error` body.
    pub fn server_error(status: u16) -> Self {
        Self::status(
            status,
            "server_error",
            None,
            "The server had an error while processing your request.",
        )
    }

    /// Anthropic's 529 `overloaded_error`.
    pub fn overloaded() -> Self {
        Self::status(529, "overloaded_error", None, "Overloaded")
    }
}

/// Options of a fake LLM server.
#[derive(Debug, Clone, Default)]
pub struct FakeLlmOptions {
    /// The key that must be presented; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Pacing of streamed replies: `llm_ttft_ms`, `llm_tokens_per_s` and `jitter_ms` are used
    /// (default instant; `LatencyProfile::realistic()` for demos).
    pub latency: LatencyProfile,
}

/// State shared by the handler and the handle.
pub(crate) struct Shared {
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) script: Mutex<VecDeque<FakeLlmTurn>>,
    /// Injected fault; units are requests answered normally.
    pub(crate) fault: FaultState,
    pub(crate) options: Mutex<FakeLlmOptions>,
    pub(crate) cancelled: AtomicUsize,
    pub(crate) completed: AtomicUsize,
    pub(crate) counter: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// The embeddings endpoint's requests and scripted failures.
    pub(crate) embeddings: EmbeddingsState,
}

impl Shared {
    pub(crate) fn next_turn(&self) -> Option<FakeLlmTurn> {
        self.script.lock().ok().and_then(|mut q| q.pop_front())
    }

    /// What this (valid) request gets: the injected fault's turn when it strikes (rendered by
    /// `on_fault` in the provider's own wire format), else the next scripted turn, else
    /// `default`.
    pub(crate) fn turn_for_request(
        &self,
        on_fault: impl FnOnce(FaultKind) -> FakeLlmTurn,
        default: impl FnOnce() -> FakeLlmTurn,
    ) -> FakeLlmTurn {
        if let Some(kind) = self.fault.strike() {
            return on_fault(kind);
        }
        self.fault.served();
        self.next_turn().unwrap_or_else(default)
    }

    pub(crate) fn record(&self, r: RecordedRequest) {
        if let Ok(mut v) = self.requests.lock() {
            v.push(r);
        }
    }

    pub(crate) fn options(&self) -> FakeLlmOptions {
        self.options.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Waits until the fake shuts down.
    pub(crate) async fn until_shutdown(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// A running fake server; shared by the OpenAI and Anthropic fakes. Dropping it stops the server.
pub struct FakeLlmServer {
    addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl FakeLlmServer {
    pub(crate) async fn start(
        options: FakeLlmOptions,
        router: impl FnOnce(Arc<Shared>) -> Router,
    ) -> std::io::Result<Self> {
        let (stop, shutdown) = watch::channel(false);
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            fault: FaultState::default(),
            options: Mutex::new(options),
            cancelled: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            counter: AtomicU64::new(0),
            shutdown: shutdown.clone(),
            embeddings: EmbeddingsState::default(),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = router(Arc::clone(&shared));
        let mut down = shutdown;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = down.wait_for(|d| *d).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake llm server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:{port}` (scheme, host and port only).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues what the next request gets (FIFO); when the queue is empty the default reply is used.
    pub fn push(&self, turn: FakeLlmTurn) {
        if let Ok(mut q) = self.shared.script.lock() {
            q.push_back(turn);
        }
    }

    /// Injects `fault` (or clears it with `None`): once `after` requests were answered
    /// normally, the next `times` requests get it instead of their scripted turn (see
    /// [`crate::fault`]).
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.fault.set(fault);
    }

    /// Requests struck by the fault so far.
    pub fn fault_strikes(&self) -> u32 {
        self.shared.fault.strikes()
    }

    /// Changes the pacing of later replies.
    pub fn set_latency(&self, latency: LatencyProfile) {
        if let Ok(mut o) = self.shared.options.lock() {
            o.latency = latency;
        }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    /// The most recent request.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared
            .requests
            .lock()
            .ok()
            .and_then(|v| v.last().cloned())
    }

    /// The embeddings endpoint (`POST /v1/embeddings`): its requests and scripted failures.
    pub fn embeddings(&self) -> &EmbeddingsState {
        &self.shared.embeddings
    }

    /// Streams whose client went away before the stream ended (barge-in cancellation).
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// Streams sent to the end.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Stops the server (hanging requests are released) and waits up to 2 s for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for FakeLlmServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The fake OpenAI-compatible server. Derefs to [`FakeLlmServer`] for scripting and assertions.
pub struct FakeOpenAi {
    server: FakeLlmServer,
}

impl std::ops::Deref for FakeOpenAi {
    type Target = FakeLlmServer;
    fn deref(&self) -> &FakeLlmServer {
        &self.server
    }
}

impl FakeOpenAi {
    /// Starts with default options (any key, no latency).
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeLlmOptions::default()).await
    }

    /// Starts with options.
    pub async fn start_with(options: FakeLlmOptions) -> std::io::Result<Self> {
        let server = FakeLlmServer::start(options, |shared| {
            Router::new().fallback(handle_openai).with_state(shared)
        })
        .await?;
        Ok(Self { server })
    }

    /// The API root in OpenAI convention: `http://127.0.0.1:{port}/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.server.endpoint())
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn openai_error(status: u16, error_type: &str, code: Option<&str>, message: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": error_type, "param": null, "code": code}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Models `GET {root}/models/{model}` knows: the current models of OpenAI and of the
/// OpenAI-compatible vendors this fake stands in for (Gemini, xAI, Groq), as their model pages
/// list them (<https://platform.openai.com/docs/models>, <https://ai.google.dev/gemini-api/docs/models>,
/// <https://docs.x.ai/docs/models>, <https://console.groq.com/docs/models>).
pub const OPENAI_MODEL_IDS: [&str; 12] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "gpt-4.1-nano",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "grok-3-mini",
    "grok-3",
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "gpt-4o-mini-2024-07-18",
];

/// The model id of a retrieve-model path (`/v1/models/{id}`, `/v1beta/openai/models/{id}`,
/// `/openai/v1/models/{id}`).
fn retrieved_model(path: &str) -> Option<&str> {
    [
        "/v1/models/",
        "/v1beta/openai/models/",
        "/openai/v1/models/",
    ]
    .iter()
    .find_map(|prefix| path.strip_prefix(prefix))
    .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// `GET /v1/models/{model}` (<https://platform.openai.com/docs/api-reference/models/retrieve>):
/// the model object, 401 `invalid_api_key` for a wrong key, 404 `model_not_found` for a model
/// the fake does not know.
fn retrieve_model(
    options: &FakeLlmOptions,
    rec: &RecordedRequest,
    method: &Method,
    model: &str,
) -> Response {
    if *method != Method::GET {
        return openai_error(405, "invalid_request_error", None, "Method not allowed.");
    }
    let presented = rec
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let key_ok = match (presented, options.api_key.as_deref()) {
        (Some(p), Some(expected)) => p == expected,
        (Some(p), None) => !p.is_empty(),
        (None, _) => false,
    };
    if !key_ok {
        return openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        );
    }
    if !OPENAI_MODEL_IDS.contains(&model) {
        let body = json!({"error": {"message": format!(
            "The model `{model}` does not exist or you do not have access to it."),
            "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let body =
        json!({"id": model, "object": "model", "created": 1_715_367_049, "owned_by": "system"});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle_openai(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rec = RecordedRequest::capture(&method, &uri, &headers, &body);
    if rec.path == "/v1/embeddings" {
        let key = shared.options().api_key;
        return crate::openai_embeddings::handle(&shared.embeddings, rec, key.as_deref());
    }
    shared.record(rec.clone());
    let path = rec.path.as_str();
    if let Some(model) = retrieved_model(path) {
        return retrieve_model(&shared.options(), &rec, &method, model);
    }
    let azure_deployment =
        path.starts_with("/openai/deployments/") && path.ends_with("/chat/completions");
    let known = matches!(
        path,
        "/v1/chat/completions" | "/openai/v1/chat/completions" | "/v1beta/openai/chat/completions"
    ) || azure_deployment;
    if !known {
        return openai_error(
            404,
            "invalid_request_error",
            Some("unknown_url"),
            &format!("Unknown request URL: POST {path}."),
        );
    }
    if method != Method::POST {
        return openai_error(405, "invalid_request_error", None, "Method not allowed.");
    }
    let azure = path.starts_with("/openai/");
    if azure_deployment && !rec.query.as_deref().unwrap_or("").contains("api-version=") {
        let body = json!({"error": {"code": "404", "message": "Resource not found"}});
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let options = shared.options();
    let bearer = rec
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim);
    let presented = if azure {
        rec.header("api-key").or(bearer)
    } else {
        bearer
    };
    let key_ok = match (presented, options.api_key.as_deref()) {
        (Some(p), Some(expected)) => p == expected,
        (Some(p), None) => !p.is_empty(),
        (None, _) => false,
    };
    if !key_ok {
        return openai_error(
            401,
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        );
    }
    if !rec.body.is_object() {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "We could not parse the JSON body of your request.",
        );
    }
    let Some(messages) = rec
        .body
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
    else {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "[] is too short - 'messages'",
        );
    };
    if rec.body.get("max_tokens").is_some() && rec.body.get("max_completion_tokens").is_some() {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "Use max_tokens or max_completion_tokens, not both.",
        );
    }
    if rec
        .body
        .get("stop")
        .and_then(Value::as_array)
        .is_some_and(|s| s.len() > 4)
    {
        return openai_error(
            400,
            "invalid_request_error",
            None,
            "'stop' has more than 4 items.",
        );
    }
    let turn = shared.turn_for_request(openai_fault, || {
        FakeLlmTurn::Text(default_reply(last_user_text(messages).as_deref()))
    });
    let model = rec
        .body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("gpt-4o-mini")
        .to_owned();
    let stream = rec
        .body
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let include_usage = rec
        .body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let prompt_tokens = approx_tokens(&rec.body["messages"].to_string());
    match turn {
        FakeLlmTurn::Status {
            status,
            error_type,
            code,
            message,
            headers,
        } => {
            let mut resp = openai_error(status, &error_type, code.as_deref(), &message);
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (
                    header::HeaderName::from_bytes(k.as_bytes()),
                    header::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().insert(k, v);
                }
            }
            resp
        }
        FakeLlmTurn::HangBeforeHeaders => {
            shared.until_shutdown().await;
            openai_error(503, "server_error", None, "shutting down")
        }
        turn if !stream => non_stream_completion(&turn, &model, prompt_tokens),
        turn => {
            let n = shared.counter.fetch_add(1, Ordering::SeqCst);
            let plan = OpenAiPlan {
                turn,
                model,
                azure,
                include_usage,
                prompt_tokens,
                id: format!("chatcmpl-fake{n}"),
            };
            sse_response(Arc::clone(&shared), options.latency, n, move |out| {
                plan.events(out)
            })
        }
    }
}

/// An injected fault as OpenAI shows it: the connection aborted before the first token, no
/// token at all, its real 429 / 5xx bodies, or malformed chunks.
fn openai_fault(kind: FaultKind) -> FakeLlmTurn {
    match kind {
        FaultKind::Drop => FakeLlmTurn::CloseMidStream {
            text: String::new(),
            after_chunks: 0,
        },
        FaultKind::Stall => FakeLlmTurn::HangAfterHeaders,
        FaultKind::HttpStatus(429) => FakeLlmTurn::rate_limited(),
        FaultKind::HttpStatus(status) => FakeLlmTurn::server_error(status),
        FaultKind::Garbage => FakeLlmTurn::Garbage,
    }
}

fn non_stream_completion(turn: &FakeLlmTurn, model: &str, prompt_tokens: u32) -> Response {
    let (text, calls) = match turn {
        FakeLlmTurn::Text(t) => (Some(t.clone()), Vec::new()),
        FakeLlmTurn::ToolCalls { text, calls, .. } => (text.clone(), calls.clone()),
        FakeLlmTurn::ErrorMidStream { text, .. } | FakeLlmTurn::CloseMidStream { text, .. } => {
            (Some(text.clone()), Vec::new())
        }
        _ => (Some(String::new()), Vec::new()),
    };
    let mut message = json!({"role": "assistant", "content": text, "refusal": null});
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(
            calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    json!({"id": format!("call_fake{i}"), "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments}})
                })
                .collect(),
        );
    }
    let completion_tokens = approx_tokens(text.as_deref().unwrap_or(""));
    let body = json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_710_000_000, "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// One step of a scripted stream.
pub(crate) enum Step {
    /// Bytes to send right away (framing, role chunk, finish, usage…).
    Send(String),
    /// The first content chunk: waits the time to first token first.
    First(String),
    /// A later content chunk: waits one token interval first.
    Token(String),
    /// Stop sending and keep the connection open until shutdown.
    Hang,
    /// Abort the connection.
    Abort,
}

struct OpenAiPlan {
    turn: FakeLlmTurn,
    model: String,
    azure: bool,
    include_usage: bool,
    prompt_tokens: u32,
    id: String,
}

impl OpenAiPlan {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        let mut choice =
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish});
        if self.azure {
            choice["content_filter_results"] =
                json!({"hate": {"filtered": false, "severity": "safe"}});
        }
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_710_000_000,
            "model": self.model, "system_fingerprint": "fp_fake", "choices": [choice], "usage": null});
        format!("data: {c}\n\n")
    }

    fn events(self, out: &mut Vec<Step>) {
        if self.azure {
            let c = json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]});
            out.push(Step::Send(format!("data: {c}\n\n")));
        }
        let mut first = true;
        let mut content = |out: &mut Vec<Step>, s: String| {
            out.push(if first {
                Step::First(s)
            } else {
                Step::Token(s)
            });
            first = false;
        };
        match &self.turn {
            FakeLlmTurn::HangAfterHeaders => {
                out.push(Step::Send(
                    self.chunk(json!({"role": "assistant", "content": ""}), None),
                ));
                out.push(Step::Hang);
            }
            FakeLlmTurn::ErrorMidStream {
                text,
                after_chunks,
                error_type,
                message,
            } => {
                out.push(Step::Send(self.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                )));
                for p in split_pieces(text).into_iter().take(*after_chunks) {
                    content(out, self.chunk(json!({"content": p}), None));
                }
                let e = json!({"error": {"message": message, "type": error_type, "param": null, "code": null}});
                out.push(Step::Send(format!("event: error\ndata: {e}\n\n")));
            }
            FakeLlmTurn::CloseMidStream { text, after_chunks } => {
                out.push(Step::Send(self.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                )));
                for p in split_pieces(text).into_iter().take(*after_chunks) {
                    content(out, self.chunk(json!({"content": p}), None));
                }
                out.push(Step::Abort);
            }
            FakeLlmTurn::Garbage => {
                let chunk = self.chunk(json!({"role": "assistant", "content": "Sure"}), None);
                let data = chunk.trim_start_matches("data: ").trim_end();
                for _ in 0..2 {
                    content(out, format!("data: {}\n\n", garbage_json(data)));
                }
                out.push(Step::Send("data: [DONE]\n\n".to_owned()));
            }
            FakeLlmTurn::Text(text) => {
                out.push(Step::Send(self.chunk(
                    json!({"role": "assistant", "content": "", "refusal": null}),
                    None,
                )));
                let pieces = split_pieces(text);
                let n = pieces.len() as u32;
                for p in pieces {
                    content(out, self.chunk(json!({"content": p}), None));
                }
                self.finish(out, "stop", n, &mut content);
            }
            FakeLlmTurn::ToolCalls {
                text,
                calls,
                interleave,
            } => {
                let mut n = 0u32;
                let header = |i: usize, c: &FakeToolCall| {
                    json!({"index": i, "id": format!("call_fake{i}"), "type": "function",
                        "function": {"name": c.name, "arguments": ""}})
                };
                match text.as_deref().filter(|t| !t.is_empty()) {
                    Some(t) => {
                        out.push(Step::Send(self.chunk(
                            json!({"role": "assistant", "content": "", "refusal": null}),
                            None,
                        )));
                        for p in split_pieces(t) {
                            n += 1;
                            content(out, self.chunk(json!({"content": p}), None));
                        }
                    }
                    None => {
                        if let Some(c) = calls.first() {
                            n += 1;
                            content(out, self.chunk(json!({"role": "assistant", "content": null, "tool_calls": [header(0, c)]}), None));
                        }
                    }
                }
                let has_text = text.as_deref().is_some_and(|t| !t.is_empty());
                let frags: Vec<Vec<String>> = calls
                    .iter()
                    .map(|c| split_pieces_n(&c.arguments, 7))
                    .collect();
                let emit_header = |out: &mut Vec<Step>, i: usize| {
                    if let Some(c) = calls.get(i).filter(|_| i > 0 || has_text) {
                        out.push(Step::Token(
                            self.chunk(json!({"tool_calls": [header(i, c)]}), None),
                        ));
                    }
                };
                let frag_chunk = |i: usize, a: &str| {
                    self.chunk(
                        json!({"tool_calls": [{"index": i, "function": {"arguments": a}}]}),
                        None,
                    )
                };
                if *interleave {
                    for i in 0..calls.len() {
                        emit_header(out, i);
                    }
                    let longest = frags.iter().map(Vec::len).max().unwrap_or(0);
                    for k in 0..longest {
                        for (i, f) in frags.iter().enumerate() {
                            if let Some(a) = f.get(k) {
                                n += 1;
                                out.push(Step::Token(frag_chunk(i, a)));
                            }
                        }
                    }
                } else {
                    for (i, f) in frags.iter().enumerate() {
                        emit_header(out, i);
                        for a in f {
                            n += 1;
                            out.push(Step::Token(frag_chunk(i, a)));
                        }
                    }
                }
                self.finish(out, "tool_calls", n, &mut content);
            }
            FakeLlmTurn::Status { .. } | FakeLlmTurn::HangBeforeHeaders => {}
        }
    }

    fn finish(
        &self,
        out: &mut Vec<Step>,
        reason: &str,
        completion_tokens: u32,
        content: &mut impl FnMut(&mut Vec<Step>, String),
    ) {
        content(out, self.chunk(json!({}), Some(reason)));
        if self.include_usage {
            let u = json!({"id": self.id, "object": "chat.completion.chunk", "created": 1_710_000_000,
                "model": self.model, "system_fingerprint": "fp_fake", "choices": [],
                "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": self.prompt_tokens + completion_tokens,
                          "prompt_tokens_details": {"cached_tokens": 0},
                          "completion_tokens_details": {"reasoning_tokens": 0}}});
            out.push(Step::Send(format!("data: {u}\n\n")));
        }
        out.push(Step::Send("data: [DONE]\n\n".to_owned()));
    }
}

/// Builds a streaming `text/event-stream` response that plays `plan`'s steps with the given
/// pacing; counts cancelled (client gone) and completed streams.
pub(crate) fn sse_response(
    shared: Arc<Shared>,
    latency: LatencyProfile,
    seed: u64,
    plan: impl FnOnce(&mut Vec<Step>),
) -> Response {
    let mut steps = Vec::new();
    plan(&mut steps);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let mut rng = StdRng::seed_from_u64(seed);
        for step in steps {
            let (wait_ms, bytes) = match step {
                Step::Send(s) => (0.0, s),
                Step::First(s) => (latency.llm_ttft_ms as f64, s),
                Step::Token(s) if latency.llm_tokens_per_s > 0.0 => {
                    (1000.0 / latency.llm_tokens_per_s, s)
                }
                Step::Token(s) => (0.0, s),
                Step::Hang => {
                    tokio::select! {
                        _ = shared.until_shutdown() => {}
                        _ = tx.closed() => { shared.cancelled.fetch_add(1, Ordering::SeqCst); }
                    }
                    return;
                }
                Step::Abort => {
                    let _ = tx
                        .send(Err(std::io::Error::other(
                            "fake: connection aborted mid-stream",
                        )))
                        .await;
                    return;
                }
            };
            let jitter = if wait_ms > 0.0 && latency.jitter_ms > 0 {
                rng.random_range(0..=latency.jitter_ms) as f64
            } else {
                0.0
            };
            let wait = Duration::from_secs_f64((wait_ms + jitter) / 1000.0);
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tx.closed() => { shared.cancelled.fetch_add(1, Ordering::SeqCst); return; }
                }
            }
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                shared.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        shared.completed.fetch_add(1, Ordering::SeqCst);
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-request-id", format!("req_fake{seed}"))
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Splits text into small pieces (2–6 chars, on char boundaries), the way providers stream tokens.
pub fn split_pieces(text: &str) -> Vec<String> {
    const SIZES: [usize; 6] = [3, 5, 4, 6, 2, 4];
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut k = 0;
    for ch in text.chars() {
        cur.push(ch);
        if cur.chars().count() >= SIZES[k % SIZES.len()] {
            out.push(std::mem::take(&mut cur));
            k += 1;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn split_pieces_n(text: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// Rough token count (≈ 4 chars per token), for usage numbers.
pub(crate) fn approx_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4).max(1)
}

/// The text of the last user message in an OpenAI- or Anthropic-shaped `messages` array.
pub(crate) fn last_user_text(messages: &[Value]) -> Option<String> {
    let m = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
    match m.get("content")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(blocks) => {
            let t: Vec<&str> = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            (!t.is_empty()).then(|| t.join(" "))
        }
        _ => None,
    }
}

/// A deterministic, believable phone-agent reply to `last_user` (1–3 sentences with commas and a
/// number), e.g. "I'd like to book a table for two" → "Sure, I can help you with booking a
/// table for two. …". Without user text it greets.
pub fn default_reply(last_user: Option<&str>) -> String {
    let Some(said) = last_user.map(str::trim).filter(|s| !s.is_empty()) else {
        return "Hello, thanks for calling. How can I help you today?".to_owned();
    };
    let mut topic = said.trim_end_matches(['.', '!', '?', ' ']).to_owned();
    let lower = topic.to_ascii_lowercase();
    const LEADS: [&str; 14] = [
        "hi, ",
        "hello, ",
        "yes, ",
        "um, ",
        "so, ",
        "i'd like to ",
        "i would like to ",
        "i want to ",
        "i need to ",
        "can you ",
        "could you ",
        "can i ",
        "please ",
        "i'm calling to ",
    ];
    let mut cut = 0;
    loop {
        let rest = &lower[cut..];
        match LEADS.iter().find(|l| rest.starts_with(*l)) {
            Some(l) => cut += l.len(),
            None => break,
        }
    }
    topic = topic[cut..].to_owned();
    let words: Vec<String> = topic
        .split_whitespace()
        .take(12)
        .map(|w| match w.to_ascii_lowercase().as_str() {
            "my" => "your".to_owned(),
            "me" => "you".to_owned(),
            "i" => "you".to_owned(),
            "i'm" => "you're".to_owned(),
            "am" => "are".to_owned(),
            _ => w.to_owned(),
        })
        .collect();
    let mut topic = words.join(" ");
    if let Some(first) = words.first() {
        let gerund = match first.to_ascii_lowercase().as_str() {
            "book" => Some("booking"),
            "cancel" => Some("cancelling"),
            "change" => Some("changing"),
            "check" => Some("checking"),
            "make" => Some("making"),
            "order" => Some("ordering"),
            "schedule" => Some("scheduling"),
            "reschedule" => Some("rescheduling"),
            "pay" => Some("paying"),
            "speak" => Some("speaking"),
            "talk" => Some("talking"),
            "get" => Some("getting"),
            "find" => Some("finding"),
            "update" => Some("updating"),
            _ => None,
        };
        if let Some(g) = gerund {
            topic = std::iter::once(g.to_owned())
                .chain(words.iter().skip(1).cloned())
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
    let hash = said
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    const FOLLOW: [&str; 4] = [
        "Let me pull that up, it should take about 2 minutes.",
        "I have 3 options available, and the first one is tomorrow at 10 in the morning.",
        "That usually takes 5 to 7 business days, but I'll make a note on your account.",
        "I've found 1 matching record, so we can go ahead right away.",
    ];
    let follow = FOLLOW[(hash as usize) % FOLLOW.len()];
    if topic.is_empty() {
        format!("Sure, I can help with that. {follow} Is there anything else I can do for you?")
    } else {
        format!(
            "Sure, I can help you with {topic}. {follow} Is there anything else I can do for you?"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reply_echoes_intent() {
        let r = default_reply(Some("Hi, I'd like to book a table for two tomorrow."));
        assert!(
            r.starts_with("Sure, I can help you with booking a table for two tomorrow."),
            "{r}"
        );
        assert!(r.chars().any(|c| c.is_ascii_digit()));
        assert_eq!(
            r,
            default_reply(Some("Hi, I'd like to book a table for two tomorrow."))
        );
        assert!(default_reply(None).starts_with("Hello"));
    }

    #[tokio::test]
    async fn non_stream_json_and_azure_checks() {
        let fake = FakeOpenAi::start().await.expect("fake");
        let client = reqwest::Client::new();
        let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "I need to change my address"}]});
        let resp = client
            .post(format!("{}/chat/completions", fake.base_url()))
            .bearer_auth("k")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            default_reply(Some("I need to change my address"))
        );
        assert!(v["usage"]["total_tokens"].as_u64().is_some_and(|t| t > 0));

        let azure = format!("{}/openai/deployments/d1/chat/completions", fake.endpoint());
        let resp = client
            .post(&azure)
            .header("api-key", "k")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 404, "api-version is mandatory");
        let resp = client
            .post(format!("{azure}?api-version=2024-10-21"))
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 401, "a key is required");
        assert_eq!(fake.requests().len(), 3);
    }

    #[tokio::test]
    async fn anthropic_requires_version_and_max_tokens() {
        let fake = crate::anthropic::FakeAnthropic::start()
            .await
            .expect("fake");
        let client = reqwest::Client::new();
        let url = format!("{}/messages", fake.base_url());
        let body = json!({"model": "claude", "messages": [{"role": "user", "content": "hi"}]});
        let resp = client
            .post(&url)
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        let mut ok = body.clone();
        ok["max_tokens"] = json!(64);
        let resp = client
            .post(&url)
            .header("x-api-key", "k")
            .json(&ok)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "anthropic-version is required");
        let resp = client
            .post(&url)
            .header("x-api-key", "k")
            .header("anthropic-version", "2023-06-01")
            .json(&ok)
            .send()
            .await
            .expect("send");
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["type"], "message");
        assert_eq!(v["content"][0]["text"], default_reply(Some("hi")));
    }

    #[test]
    fn pieces_rejoin() {
        let t = "Sure, I can help — café 42.";
        assert_eq!(split_pieces(t).concat(), t);
        assert!(split_pieces(t).len() > 3);
    }
}
