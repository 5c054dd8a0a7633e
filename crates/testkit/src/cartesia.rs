//! A fake of Cartesia's TTS websocket (`wss://api.cartesia.ai/tts/websocket`) on 127.0.0.1,
//! as strict as the documented service: the handshake needs a key and a known
//! `Cartesia-Version`; every generation request must carry the required fields with values the
//! service accepts; mistakes are answered with Cartesia's error event, in the shape of the
//! requested API version.
//!
//! Written from Cartesia's documentation and official SDK, independently of any adapter:
//! - <https://docs.cartesia.ai/api-reference/tts/websocket> (and the dated copies
//!   `/2024-11-13/…`, `/2026-03-01/…`): request, cancel and server message examples.
//! - <https://docs.cartesia.ai/use-the-api/api-conventions> and
//!   <https://docs.cartesia.ai/get-started/authenticate-your-client-applications>: `X-API-Key`,
//!   `Authorization: Bearer`, `?api_key=`, `Cartesia-Version` / `?cartesia_version=` (the query
//!   wins).
//! - <https://docs.cartesia.ai/use-the-api/api-errors>: error objects (HTTP and websocket) for
//!   `Cartesia-Version` 2026-03-01 and newer; older versions get `Title: Message` text.
//! - <https://docs.cartesia.ai/use-the-api/tts-websocket/contexts>,
//!   <https://docs.cartesia.ai/use-the-api/tts-websocket/context-flushing-and-flush-i-ds>,
//!   <https://docs.cartesia.ai/use-the-api/tts-websocket/buffering>: `continue`, `flush`,
//!   `flush_done`, `max_buffer_delay_ms`.
//! - <https://docs.cartesia.ai/use-the-api/concurrency-limits-and-timeouts>: idle sockets are
//!   closed after 5 minutes; 429 when over the limit.
//! - <https://docs.cartesia.ai/build-with-cartesia/tts-models/older-models>: model names and
//!   dated snapshots.
//! - Official Python SDK `cartesia-ai/cartesia-python`, `src/cartesia/types/`
//!   (`generation_request_param.py`, `raw_output_format_param.py`, `raw_encoding.py`,
//!   `websocket_response.py`, `generation_config_param.py`, `supported_language.py`).
//! - <https://github.com/cartesia-ai/cartesia-js/issues/101>: the text of the 404 for an unknown
//!   `Cartesia-Version`.
//!
//! Audio is the synthetic voice of [`crate::synth`], `ms_per_char` per character at speed 1, in
//! the requested encoding and sample rate, in `chunk_ms` chunks, first byte and pacing from the
//! latency profile. Every connection, message, context and error is recorded.
//! `docs/providers/cartesia.md` describes the protocol as this fake implements it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::latency::LatencyProfile;
use crate::synth::{self, RawEncoding};
use crate::tcp_server::TcpFakeServer;

/// The websocket path.
pub const PATH: &str = "/tts/websocket";

/// First `Cartesia-Version` whose errors are structured JSON objects.
pub const STRUCTURED_ERRORS_SINCE: &str = "2026-03-01";

/// Sample rates (Hz) of the raw output format.
pub const SAMPLE_RATES_HZ: [u32; 6] = [8000, 16000, 22050, 24000, 44100, 48000];

/// Languages a generation request may name.
pub const LANGUAGES: [&str; 44] = [
    "en", "fr", "de", "es", "pt", "zh", "ja", "hi", "it", "ko", "nl", "pl", "ru", "sv", "tr", "tl",
    "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "hu", "no", "vi", "bn",
    "th", "he", "ka", "id", "te", "gu", "kn", "ml", "mr", "pa", "or", "ur",
];

/// What the fake does. `Default` is a well-behaved Cartesia with key `test-cartesia-key`.
#[derive(Debug, Clone)]
pub struct CartesiaFakeConfig {
    /// The key expected in `X-API-Key`, `Authorization: Bearer` or `?api_key=`.
    pub api_key: String,
    /// `Cartesia-Version` values the fake knows (others get a 404).
    pub api_versions: Vec<String>,
    /// Base model names; `<base>-YYYY-MM-DD` snapshots of them are accepted too.
    pub models: Vec<String>,
    /// Voice ids that exist.
    pub voices: Vec<String>,
    /// First-byte delay and generation pace.
    pub latency: LatencyProfile,
    /// Audio per character (ms) at speed 1.0.
    pub ms_per_char: u64,
    /// Audio per `chunk` message (ms).
    pub chunk_ms: u64,
    /// Close an idle socket (no text message from the client) after this long (ms); Cartesia
    /// documents 5 minutes without a generation.
    pub idle_timeout_ms: u64,
    /// Failure knob: refuse every handshake with this status (429 = the websocket limit).
    pub reject_status: Option<u16>,
    /// Failure knob: after this many `chunk` messages on a connection, send a 500 error event
    /// and close with 1011.
    pub error_after_chunks: Option<usize>,
    /// Failure knob: accept requests but never produce audio nor `done`.
    pub never_answer: bool,
}

impl Default for CartesiaFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-cartesia-key".into(),
            api_versions: ["2024-06-10", "2024-11-13", "2025-04-16", "2026-03-01"]
                .map(String::from)
                .to_vec(),
            models: [
                "sonic",
                "sonic-2",
                "sonic-turbo",
                "sonic-3",
                "sonic-3.5",
                "sonic-latest",
                "sonic-3-latest",
            ]
            .map(String::from)
            .to_vec(),
            voices: [
                "a0e99841-438c-4a64-b679-ae501e7d6091",
                "f786b574-daa5-4673-aa0c-cbe3e8534c02",
                "a5136bf9-224c-4d76-b823-52bd5efcffcc",
                "6ccbfb76-1fc6-48f7-b71d-91ac6298247b",
                "e07c00bc-4134-4eae-9ea4-1a55fb45746b",
            ]
            .map(String::from)
            .to_vec(),
            latency: LatencyProfile::instant(),
            ms_per_char: 60,
            chunk_ms: 100,
            idle_timeout_ms: 300_000,
            reject_status: None,
            error_after_chunks: None,
            never_answer: false,
        }
    }
}

/// One context as the fake saw it.
#[derive(Debug, Clone, Default)]
pub struct CartesiaContextRecord {
    /// `context_id`.
    pub id: String,
    /// `model_id` of the first request.
    pub model_id: String,
    /// Voice id of the first request.
    pub voice_id: String,
    /// `language` of the first request.
    pub language: Option<String>,
    /// `output_format.encoding` of the first request.
    pub encoding: String,
    /// `output_format.sample_rate` (Hz) of the first request.
    pub sample_rate_hz: u32,
    /// `generation_config` of the first request.
    pub generation_config: Option<Value>,
    /// Every accepted request's `transcript`, verbatim (empty ones included).
    pub transcripts: Vec<String>,
    /// Requests with `flush: true`.
    pub flushes: u64,
    /// Whether a request with `continue: false` (or without `continue`) arrived.
    pub input_ended: bool,
    /// Whether the client cancelled the context.
    pub cancelled: bool,
    /// `chunk` messages sent.
    pub chunks: u64,
    /// Audio bytes sent (decoded).
    pub audio_bytes: u64,
    /// Audio samples sent.
    pub audio_samples: u64,
    /// `timestamps` messages sent.
    pub timestamps_sent: u64,
    /// `flush_done` messages sent.
    pub flush_dones_sent: u64,
    /// Whether `done` was sent.
    pub done_sent: bool,
    /// When the first request arrived.
    pub first_request_at: Option<Instant>,
    /// When the first chunk was sent.
    pub first_audio_at: Option<Instant>,
}

/// Everything one connection did.
#[derive(Debug, Clone, Default)]
pub struct CartesiaConnection {
    /// 0-based index.
    pub index: usize,
    /// Request path.
    pub path: String,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// The `X-API-Key` header as received.
    pub api_key_header: Option<String>,
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The `Cartesia-Version` header as received.
    pub version_header: Option<String>,
    /// The version in effect (query first, then header).
    pub version: Option<String>,
    /// Status of a refused handshake.
    pub rejected_status: Option<u16>,
    /// Every client text message, parsed (`Value::String` with the raw text when not JSON).
    pub messages: Vec<Value>,
    /// Binary frames received (Cartesia takes none).
    pub binary_frames: u64,
    /// Every error event sent, in order.
    pub errors: Vec<Value>,
    /// Contexts in order of creation.
    pub contexts: Vec<CartesiaContextRecord>,
    /// Close code the fake sent.
    pub close_code: Option<u16>,
    /// Whether the client sent a close frame.
    pub client_closed: bool,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl CartesiaConnection {
    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record of context `id`.
    pub fn context(&self, id: &str) -> Option<&CartesiaContextRecord> {
        self.contexts.iter().find(|c| c.id == id)
    }
}

struct Shared {
    config: CartesiaFakeConfig,
    connections: Mutex<Vec<CartesiaConnection>>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<CartesiaConnection>) -> R) -> R {
        let mut guard = match self.connections.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    fn record(&self, index: usize, f: impl FnOnce(&mut CartesiaConnection)) {
        self.with(|c| {
            if let Some(c) = c.get_mut(index) {
                f(c);
            }
        });
    }

    fn context(&self, index: usize, id: &str, f: impl FnOnce(&mut CartesiaContextRecord)) {
        self.record(index, |c| {
            if let Some(x) = c.contexts.iter_mut().find(|x| x.id == id) {
                f(x);
            }
        });
    }
}

/// A running fake Cartesia server.
pub struct CartesiaFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl CartesiaFake {
    /// Bind 127.0.0.1:0 and serve until shutdown or drop.
    pub async fn start(config: CartesiaFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            connections: Mutex::new(Vec::new()),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`: what goes into `tts_settings.provider_config.base_url`; the
    /// client appends [`PATH`].
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// `ws://127.0.0.1:<port>/tts/websocket`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{PATH}", self.server.addr())
    }

    /// Records of every connection so far (accepted or refused), in order.
    pub fn received(&self) -> Vec<CartesiaConnection> {
        self.shared.with(|c| c.clone())
    }

    /// Stop accepting and end every open connection.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}

/// Whether errors of `version` are structured objects (2026-03-01 and newer).
fn structured(version: Option<&str>) -> bool {
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
struct Refusal {
    status: u16,
    code: Option<&'static str>,
    title: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: Option<&'static str>, title: &'static str, message: String) -> Self {
        Self {
            status,
            code,
            title,
            message,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            400,
            Some("invalid_request"),
            "Invalid request",
            message.into(),
        )
    }

    /// The handshake's HTTP error: a JSON error object for structured versions, otherwise the
    /// `Title: Message` text.
    fn http(&self, version: Option<&str>) -> ErrorResponse {
        let (body, content_type) = if structured(version) {
            let body = json!({"error_code": self.code, "title": self.title,
                "message": self.message, "request_id": request_id()});
            (body.to_string(), "application/json")
        } else {
            (
                format!("{}: {}", self.title, self.message),
                "text/plain; charset=utf-8",
            )
        };
        let mut error = ErrorResponse::new(Some(body));
        *error.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        error
            .headers_mut()
            .insert("content-type", HeaderValue::from_static(content_type));
        error
    }

    /// The websocket error event for this refusal.
    fn event(&self, version: Option<&str>, context_id: Option<&str>) -> Value {
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

struct Accepted {
    index: usize,
    version: String,
}

/// The handshake decision: the refusal, or the version in effect.
fn check_handshake(
    cfg: &CartesiaFakeConfig,
    path: &str,
    version: Option<&str>,
    key: Option<&str>,
) -> Result<String, Refusal> {
    if path != PATH {
        return Err(Refusal::new(
            404,
            Some("not_found"),
            "Not found",
            format!("No route for {path}"),
        ));
    }
    let Some(version) = version.filter(|v| !v.is_empty()) else {
        return Err(Refusal::new(
            400,
            Some("invalid_request"),
            "Missing Cartesia-Version",
            "Send the Cartesia-Version header or the cartesia_version query parameter.".into(),
        ));
    };
    if !cfg.api_versions.iter().any(|v| v == version) {
        return Err(Refusal::new(
            404,
            Some("api_version_not_found"),
            "API version not found",
            "No API schema exists for the requested Cartesia-Version.".into(),
        ));
    }
    match key {
        None | Some("") => Err(Refusal::new(
            401,
            Some("missing_api_key"),
            "Unauthorized",
            "No API key provided.".into(),
        )),
        Some(k) if k != cfg.api_key => Err(Refusal::new(
            401,
            Some("invalid_api_key"),
            "Unauthorized",
            "Invalid API key.".into(),
        )),
        Some(_) => match cfg.reject_status {
            Some(429) => Err(Refusal::new(
                429,
                Some("concurrency_limited"),
                "Too many concurrent requests",
                "You have exceeded your plan's concurrency limit.".into(),
            )),
            Some(status) => Err(Refusal::new(
                status,
                None,
                "Rejected",
                "Rejected by the fake (failure knob).".into(),
            )),
            None => Ok(version.to_owned()),
        },
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let decided: Arc<Mutex<Option<Accepted>>> = Arc::new(Mutex::new(None));
    let decided_cb = decided.clone();
    let shared_cb = shared.clone();
    let callback =
        move |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let path = request.uri().path().to_owned();
            let query: Vec<(String, String)> = request
                .uri()
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let param = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let api_key_header = header("x-api-key");
            let authorization = header("authorization");
            let version_header = header("cartesia-version");
            let version = param("cartesia_version").or_else(|| version_header.clone());
            let key = param("api_key")
                .or_else(|| api_key_header.clone())
                .or_else(|| {
                    authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "))
                        .map(|k| k.trim().to_owned())
                });
            let index = shared_cb.with(|c| {
                c.push(CartesiaConnection {
                    index: c.len(),
                    path: path.clone(),
                    query: query.clone(),
                    api_key_header,
                    authorization,
                    version_header,
                    version: version.clone(),
                    ..CartesiaConnection::default()
                });
                c.len() - 1
            });
            match check_handshake(&shared_cb.config, &path, version.as_deref(), key.as_deref()) {
                Ok(version) => {
                    if let Ok(mut slot) = decided_cb.lock() {
                        *slot = Some(Accepted { index, version });
                    }
                    Ok(response)
                }
                Err(refusal) => {
                    let known = version
                        .as_deref()
                        .filter(|v| shared_cb.config.api_versions.iter().any(|k| k == v));
                    shared_cb.record(index, |c| {
                        c.rejected_status = Some(refusal.status);
                        c.ended = true;
                    });
                    Err(refusal.http(known))
                }
            }
        };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(
            tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(crate::SMALL_WS_READ_BUFFER),
        ),
    )
    .await
    else {
        return;
    };
    let accepted = match decided.lock() {
        Ok(mut slot) => slot.take(),
        Err(_) => None,
    };
    let Some(accepted) = accepted else { return };
    let mut session = Session {
        ws,
        shared: &shared,
        index: accepted.index,
        version: accepted.version,
        contexts: HashMap::new(),
        queue: VecDeque::new(),
        next_at: None,
        chunks_sent: 0,
    };
    session.run().await;
    shared.record(accepted.index, |c| c.ended = true);
}

/// Where a context is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CtxState {
    /// Takes more input.
    Open,
    /// The last input arrived (`continue: false`) or it was cancelled: no more input.
    Closed,
}

struct Ctx {
    state: CtxState,
    buffer: String,
    encoding: RawEncoding,
    rate_hz: u32,
    speed: f64,
    add_timestamps: bool,
    add_phonemes: bool,
    max_buffer_delay: Duration,
    buffer_deadline: Option<tokio::time::Instant>,
    flush_id: u64,
    sample_pos: u64,
    /// Seconds of audio generated so far (timestamps are relative to the context's start).
    spoken_s: f64,
}

enum Out {
    Chunk {
        ctx: String,
        data: Vec<u8>,
        samples: u64,
        flush_id: u64,
    },
    Words {
        ctx: String,
        words: Vec<(String, f64, f64)>,
        phonemes: bool,
        flush_id: u64,
    },
    FlushDone {
        ctx: String,
        flush_id: u64,
    },
    Done {
        ctx: String,
    },
}

impl Out {
    fn ctx(&self) -> &str {
        match self {
            Out::Chunk { ctx, .. }
            | Out::Words { ctx, .. }
            | Out::FlushDone { ctx, .. }
            | Out::Done { ctx } => ctx,
        }
    }
}

/// A validated generation request.
struct Generation {
    context_id: String,
    transcript: String,
    continues: bool,
    flush: bool,
}

struct Session<'a> {
    ws: WebSocketStream<TcpStream>,
    shared: &'a Shared,
    index: usize,
    version: String,
    contexts: HashMap<String, Ctx>,
    queue: VecDeque<Out>,
    next_at: Option<tokio::time::Instant>,
    chunks_sent: usize,
}

enum Flow {
    Continue,
    Stop,
}

impl Session<'_> {
    async fn run(&mut self) {
        let idle = Duration::from_millis(self.shared.config.idle_timeout_ms.max(1));
        let mut last_request = tokio::time::Instant::now();
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
            let emit_at = self
                .next_at
                .filter(|_| !self.queue.is_empty())
                .unwrap_or(far);
            let buffer_at = self
                .contexts
                .values()
                .filter_map(|c| c.buffer_deadline)
                .min()
                .unwrap_or(far);
            tokio::select! {
                message = self.ws.next() => {
                    match message {
                        Some(Ok(Message::Text(t))) => {
                            last_request = tokio::time::Instant::now();
                            if matches!(self.on_text(t.as_str()).await, Flow::Stop) {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.shared.record(self.index, |c| c.binary_frames += 1);
                            let refusal = Refusal::bad_request(
                                "Binary messages are not supported; send JSON text messages.",
                            );
                            if matches!(self.send_error(&refusal, None).await, Flow::Stop) {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_))) => {
                            self.shared.record(self.index, |c| c.client_closed = true);
                            // tungstenite answers the close frame; drive it out.
                            let _ = self.ws.flush().await;
                            return;
                        }
                        None | Some(Err(_)) => return,
                        Some(Ok(_)) => {}
                    }
                }
                _ = tokio::time::sleep_until(emit_at), if !self.queue.is_empty() => {
                    if matches!(self.emit_next().await, Flow::Stop) {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(buffer_at), if buffer_at < far => {
                    let now = tokio::time::Instant::now();
                    let due: Vec<String> = self
                        .contexts
                        .iter()
                        .filter(|(_, c)| c.buffer_deadline.is_some_and(|d| d <= now))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in due {
                        self.generate(&id);
                    }
                }
                _ = tokio::time::sleep_until(last_request + idle) => {
                    self.close(1000, "idle timeout").await;
                    return;
                }
            }
        }
    }

    async fn send_json(&mut self, value: &Value) -> Flow {
        match self.ws.send(Message::text(value.to_string())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn send_error(&mut self, refusal: &Refusal, context_id: Option<&str>) -> Flow {
        let event = refusal.event(Some(&self.version), context_id);
        self.shared
            .record(self.index, |c| c.errors.push(event.clone()));
        self.send_json(&event).await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        self.shared
            .record(self.index, |c| c.close_code = Some(code));
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
        self.shared
            .record(self.index, |c| c.messages.push(value.clone()));
        let Some(object) = value.as_object() else {
            let refusal = Refusal::bad_request("The message is not a JSON object.");
            return self.send_error(&refusal, None).await;
        };
        let context_id = object
            .get("context_id")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if object.contains_key("cancel") {
            return self.on_cancel(&value, context_id).await;
        }
        let Some(context_id) = context_id else {
            let refusal = Refusal::bad_request("context_id is required and must be a string.");
            return self.send_error(&refusal, None).await;
        };
        match self.accept(&value, &context_id) {
            Ok(generation) => {
                self.on_generation(generation);
                Flow::Continue
            }
            Err(refusal) => self.send_error(&refusal, Some(&context_id)).await,
        }
    }

    async fn on_cancel(&mut self, value: &Value, context_id: Option<String>) -> Flow {
        let Some(id) = context_id else {
            let refusal = Refusal::bad_request("context_id is required to cancel a context.");
            return self.send_error(&refusal, None).await;
        };
        if value.get("cancel") != Some(&Value::Bool(true)) {
            let refusal = Refusal::bad_request("cancel must be true.");
            return self.send_error(&refusal, Some(&id)).await;
        }
        if let Some(ctx) = self.contexts.get_mut(&id) {
            ctx.state = CtxState::Closed;
            ctx.buffer.clear();
            ctx.buffer_deadline = None;
            self.queue.retain(|o| o.ctx() != id);
            self.shared.context(self.index, &id, |c| c.cancelled = true);
        }
        Flow::Continue
    }

    /// Validates a generation request against the schema and the known models and voices, and
    /// creates its context when it is new.
    fn accept(&mut self, value: &Value, context_id: &str) -> Result<Generation, Refusal> {
        let cfg = &self.shared.config;
        if let Some(ctx) = self.contexts.get(context_id)
            && ctx.state == CtxState::Closed
        {
            return Err(Refusal::bad_request(format!(
                "Context {context_id} is closed: its last input (continue=false) or a cancel was \
                 already received."
            )));
        }
        let transcript = match value.get("transcript") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                return Err(Refusal::bad_request(
                    "transcript is required and must be a string.",
                ));
            }
        };
        let model_id = value
            .get("model_id")
            .and_then(Value::as_str)
            .ok_or_else(|| Refusal::bad_request("model_id is required and must be a string."))?;
        if !model_known(&cfg.models, model_id) {
            return Err(Refusal::new(
                400,
                Some("model_not_found"),
                "Invalid model",
                "The model is not valid, make sure it is a valid model ID.".into(),
            ));
        }
        let voice_id = voice_id(value.get("voice"))?;
        if !cfg.voices.iter().any(|v| v == voice_id) {
            return Err(Refusal::new(
                404,
                Some("voice_not_found"),
                "Voice not found",
                format!("Voice {voice_id} was not found."),
            ));
        }
        let (encoding_name, encoding, rate_hz) = output_format(value.get("output_format"))?;
        let language = match value.get("language") {
            None | Some(Value::Null) => None,
            Some(Value::String(l)) if LANGUAGES.contains(&l.as_str()) => Some(l.clone()),
            Some(other) => {
                return Err(Refusal::bad_request(format!(
                    "language {other} is not supported."
                )));
            }
        };
        let flag = |name: &str| -> Result<Option<bool>, Refusal> {
            match value.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(_) => Err(Refusal::bad_request(format!("{name} must be a boolean."))),
            }
        };
        let continues = flag("continue")?.unwrap_or(false);
        let flush = flag("flush")?.unwrap_or(false);
        let add_timestamps = flag("add_timestamps")?.unwrap_or(false);
        let add_phonemes = flag("add_phoneme_timestamps")?.unwrap_or(false);
        flag("use_normalized_timestamps")?;
        let max_buffer_delay_ms = match value.get("max_buffer_delay_ms") {
            None | Some(Value::Null) => 3000,
            Some(v) => v
                .as_u64()
                .filter(|ms| *ms <= 5000)
                .ok_or_else(|| Refusal::bad_request("max_buffer_delay_ms must be 0 to 5000."))?,
        };
        let speed = speed(value)?;
        let now = Instant::now();
        if !self.contexts.contains_key(context_id) {
            self.contexts.insert(
                context_id.to_owned(),
                Ctx {
                    state: CtxState::Open,
                    buffer: String::new(),
                    encoding,
                    rate_hz,
                    speed,
                    add_timestamps,
                    add_phonemes,
                    max_buffer_delay: Duration::from_millis(max_buffer_delay_ms),
                    buffer_deadline: None,
                    flush_id: 1,
                    sample_pos: 0,
                    spoken_s: 0.0,
                },
            );
            let record = CartesiaContextRecord {
                id: context_id.to_owned(),
                model_id: model_id.to_owned(),
                voice_id: voice_id.to_owned(),
                language,
                encoding: encoding_name.to_owned(),
                sample_rate_hz: rate_hz,
                generation_config: value.get("generation_config").cloned(),
                first_request_at: Some(now),
                ..CartesiaContextRecord::default()
            };
            self.shared.record(self.index, |c| c.contexts.push(record));
        }
        Ok(Generation {
            context_id: context_id.to_owned(),
            transcript,
            continues,
            flush,
        })
    }

    fn on_generation(&mut self, g: Generation) {
        let id = g.context_id.clone();
        self.shared.context(self.index, &id, |c| {
            c.transcripts.push(g.transcript.clone());
            if g.flush {
                c.flushes += 1;
            }
            if !g.continues {
                c.input_ended = true;
            }
        });
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        ctx.buffer.push_str(&g.transcript);
        let sentence_end = ctx.buffer.trim_end().ends_with(['.', '!', '?', ';', ':']);
        let immediate = ctx.max_buffer_delay.is_zero();
        if g.flush || !g.continues || immediate || sentence_end {
            self.generate(&id);
        } else if ctx.buffer_deadline.is_none() && !ctx.buffer.trim().is_empty() {
            ctx.buffer_deadline = Some(tokio::time::Instant::now() + ctx.max_buffer_delay);
        }
        if g.flush {
            self.push_out(Out::FlushDone {
                ctx: id.clone(),
                flush_id: self.contexts.get(&id).map_or(1, |c| c.flush_id),
            });
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.flush_id += 1;
            }
        }
        if !g.continues {
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.state = CtxState::Closed;
            }
            self.push_out(Out::Done { ctx: id });
        }
    }

    /// Queue one output; the first of an idle queue waits for the first-byte delay.
    fn push_out(&mut self, out: Out) {
        if self.shared.config.never_answer {
            return;
        }
        if self.queue.is_empty() {
            let delay = match out {
                Out::Chunk { .. } => self.shared.config.latency.tts_first_byte(),
                _ => Duration::ZERO,
            };
            self.next_at = Some(tokio::time::Instant::now() + delay);
        }
        self.queue.push_back(out);
    }

    /// Turn the context's buffered text into queued chunks (and timestamps when asked).
    fn generate(&mut self, id: &str) {
        let cfg = &self.shared.config;
        let Some(ctx) = self.contexts.get_mut(id) else {
            return;
        };
        ctx.buffer_deadline = None;
        let text = std::mem::take(&mut ctx.buffer);
        if text.trim().is_empty() {
            return;
        }
        let ms_per_char = cfg.ms_per_char as f64 / ctx.speed;
        let total_ms = text.chars().count() as f64 * ms_per_char;
        let total_samples = (total_ms * f64::from(ctx.rate_hz) / 1000.0).round() as u64;
        let chunk_samples = (cfg.chunk_ms.max(10) * u64::from(ctx.rate_hz) / 1000).max(1);
        let mut outs = Vec::new();
        let mut left = total_samples;
        while left > 0 {
            let n = left.min(chunk_samples);
            outs.push(Out::Chunk {
                ctx: id.to_owned(),
                data: synth::voice(ctx.encoding, ctx.rate_hz, ctx.sample_pos, n as usize),
                samples: n,
                flush_id: ctx.flush_id,
            });
            ctx.sample_pos += n;
            left -= n;
        }
        if ctx.add_timestamps || ctx.add_phonemes {
            let mut words = Vec::new();
            let mut offset = 0usize;
            for word in text.split_whitespace() {
                let at = text[offset..].find(word).map_or(offset, |p| offset + p);
                let start = ctx.spoken_s + text[..at].chars().count() as f64 * ms_per_char / 1000.0;
                let end = start + word.chars().count() as f64 * ms_per_char / 1000.0;
                words.push((word.to_owned(), round_ms(start), round_ms(end)));
                offset = at + word.len();
            }
            if ctx.add_timestamps {
                outs.push(Out::Words {
                    ctx: id.to_owned(),
                    words: words.clone(),
                    phonemes: false,
                    flush_id: ctx.flush_id,
                });
            }
            if ctx.add_phonemes {
                outs.push(Out::Words {
                    ctx: id.to_owned(),
                    words,
                    phonemes: true,
                    flush_id: ctx.flush_id,
                });
            }
        }
        ctx.spoken_s += total_ms / 1000.0;
        for out in outs {
            self.push_out(out);
        }
    }

    async fn emit_next(&mut self) -> Flow {
        let Some(out) = self.queue.pop_front() else {
            return Flow::Continue;
        };
        let latency = self.shared.config.latency;
        let mut gap = Duration::ZERO;
        match out {
            Out::Chunk {
                ctx,
                data,
                samples,
                flush_id,
            } => {
                let rate = self.contexts.get(&ctx).map_or(8000, |c| c.rate_hz);
                let duration = Duration::from_secs_f64(samples as f64 / f64::from(rate));
                let msg = json!({"type": "chunk",
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                    "done": false, "status_code": 206, "step_time": duration.as_secs_f64() * 250.0,
                    "flush_id": flush_id, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                let now = Instant::now();
                self.shared.context(self.index, &ctx, |c| {
                    c.chunks += 1;
                    c.audio_bytes += data.len() as u64;
                    c.audio_samples += samples;
                    c.first_audio_at.get_or_insert(now);
                });
                self.chunks_sent += 1;
                if self
                    .shared
                    .config
                    .error_after_chunks
                    .is_some_and(|n| self.chunks_sent >= n)
                {
                    let refusal = Refusal::new(
                        500,
                        Some("internal_error"),
                        "Internal error",
                        "Internal error (fake failure knob).".into(),
                    );
                    let _ = self.send_error(&refusal, Some(&ctx)).await;
                    self.close(1011, "internal error").await;
                    return Flow::Stop;
                }
                gap = latency.tts_generation_time(duration);
            }
            Out::Words {
                ctx,
                words,
                phonemes,
                flush_id,
            } => {
                let msg = if phonemes {
                    let mut list = Vec::new();
                    let mut starts = Vec::new();
                    let mut ends = Vec::new();
                    for (word, start, end) in &words {
                        let letters: Vec<char> =
                            word.chars().filter(|c| c.is_alphanumeric()).collect();
                        let step = (end - start) / letters.len().max(1) as f64;
                        for (i, l) in letters.iter().enumerate() {
                            list.push(l.to_lowercase().to_string());
                            starts.push(round_ms(start + step * i as f64));
                            ends.push(round_ms(start + step * (i + 1) as f64));
                        }
                    }
                    json!({"type": "phoneme_timestamps", "done": false, "status_code": 206,
                        "flush_id": flush_id, "context_id": ctx,
                        "phoneme_timestamps": {"phonemes": list, "start": starts, "end": ends}})
                } else {
                    let list: Vec<&str> = words.iter().map(|w| w.0.as_str()).collect();
                    let starts: Vec<f64> = words.iter().map(|w| w.1).collect();
                    let ends: Vec<f64> = words.iter().map(|w| w.2).collect();
                    json!({"type": "timestamps", "done": false, "status_code": 206,
                        "flush_id": flush_id, "context_id": ctx,
                        "word_timestamps": {"words": list, "start": starts, "end": ends}})
                };
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                if !phonemes {
                    self.shared
                        .context(self.index, &ctx, |c| c.timestamps_sent += 1);
                }
            }
            Out::FlushDone { ctx, flush_id } => {
                let msg = json!({"type": "flush_done", "done": false, "flush_done": true,
                    "flush_id": flush_id, "status_code": 206, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                self.shared
                    .context(self.index, &ctx, |c| c.flush_dones_sent += 1);
            }
            Out::Done { ctx } => {
                let msg =
                    json!({"type": "done", "done": true, "status_code": 206, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                self.shared
                    .context(self.index, &ctx, |c| c.done_sent = true);
            }
        }
        self.next_at = Some(tokio::time::Instant::now() + gap);
        Flow::Continue
    }
}

/// Seconds rounded to the millisecond.
fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// Whether `model` is a known base name or a `<base>-YYYY-MM-DD` snapshot of one.
fn model_known(models: &[String], model: &str) -> bool {
    models.iter().any(|base| {
        model == base
            || model
                .strip_prefix(base.as_str())
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|date| {
                    let b = date.as_bytes();
                    b.len() == 10
                        && b[4] == b'-'
                        && b[7] == b'-'
                        && b.iter()
                            .enumerate()
                            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
                })
    })
}

/// The voice id of `voice`: `{"mode": "id", "id": …}`, `{"id": …}` or a bare id string.
fn voice_id(voice: Option<&Value>) -> Result<&str, Refusal> {
    match voice {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        Some(Value::Object(v)) => {
            match v.get("mode") {
                None | Some(Value::Null) => {}
                Some(Value::String(m)) if m == "id" => {}
                Some(other) => {
                    return Err(Refusal::bad_request(format!(
                        "voice.mode {other} is not supported; use \"id\"."
                    )));
                }
            }
            v.get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty())
                .ok_or_else(|| Refusal::bad_request("voice.id is required and must be a string."))
        }
        _ => Err(Refusal::bad_request(
            "voice is required: {\"mode\": \"id\", \"id\": \"<voice id>\"}.",
        )),
    }
}

/// `output_format` of a websocket request: container `raw`, one of the raw encodings and sample
/// rates.
fn output_format(format: Option<&Value>) -> Result<(&str, RawEncoding, u32), Refusal> {
    let Some(format) = format.and_then(Value::as_object) else {
        return Err(Refusal::bad_request(
            "output_format is required: {\"container\": \"raw\", \"encoding\": …, \"sample_rate\": …}.",
        ));
    };
    match format.get("container").and_then(Value::as_str) {
        Some("raw") => {}
        other => {
            return Err(Refusal::bad_request(format!(
                "output_format.container {} is not supported on the websocket; use \"raw\".",
                other.unwrap_or("(missing)")
            )));
        }
    }
    let (name, encoding) = match format.get("encoding").and_then(Value::as_str) {
        Some("pcm_mulaw") => ("pcm_mulaw", RawEncoding::MuLaw),
        Some("pcm_alaw") => ("pcm_alaw", RawEncoding::ALaw),
        Some("pcm_s16le") => ("pcm_s16le", RawEncoding::S16Le),
        Some("pcm_f32le") => ("pcm_f32le", RawEncoding::F32Le),
        other => {
            return Err(Refusal::bad_request(format!(
                "output_format.encoding {} is not supported; use pcm_f32le, pcm_s16le, pcm_mulaw \
                 or pcm_alaw.",
                other.unwrap_or("(missing)")
            )));
        }
    };
    let rate = format
        .get("sample_rate")
        .and_then(Value::as_u64)
        .and_then(|r| u32::try_from(r).ok())
        .filter(|r| SAMPLE_RATES_HZ.contains(r))
        .ok_or_else(|| {
            Refusal::bad_request(
                "output_format.sample_rate must be one of 8000, 16000, 22050, 24000, 44100, 48000.",
            )
        })?;
    Ok((name, encoding, rate))
}

/// Speaking rate multiplier: `generation_config.speed` (0.6–1.5), else the older `speed`
/// (`slow`/`normal`/`fast`, or a number in [-1, 1]).
fn speed(value: &Value) -> Result<f64, Refusal> {
    if let Some(config) = value.get("generation_config").filter(|g| !g.is_null()) {
        let Some(config) = config.as_object() else {
            return Err(Refusal::bad_request("generation_config must be an object."));
        };
        if let Some(volume) = config.get("volume").filter(|v| !v.is_null())
            && !volume.as_f64().is_some_and(|v| (0.5..=2.0).contains(&v))
        {
            return Err(Refusal::bad_request(
                "generation_config.volume must be between 0.5 and 2.0.",
            ));
        }
        if let Some(speed) = config.get("speed").filter(|v| !v.is_null()) {
            return speed
                .as_f64()
                .filter(|s| (0.6..=1.5).contains(s))
                .ok_or_else(|| {
                    Refusal::bad_request("generation_config.speed must be between 0.6 and 1.5.")
                });
        }
    }
    match value.get("speed") {
        None | Some(Value::Null) => Ok(1.0),
        Some(Value::String(s)) => match s.as_str() {
            "slow" => Ok(0.8),
            "normal" => Ok(1.0),
            "fast" => Ok(1.25),
            _ => Err(Refusal::bad_request(
                "speed must be \"slow\", \"normal\" or \"fast\".",
            )),
        },
        Some(v) => v
            .as_f64()
            .filter(|s| (-1.0..=1.0).contains(s))
            .map(|s| 1.0 + s * 0.5)
            .ok_or_else(|| Refusal::bad_request("speed must be between -1.0 and 1.0.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_and_snapshots() {
        let models = CartesiaFakeConfig::default().models;
        assert!(model_known(&models, "sonic-2"));
        assert!(model_known(&models, "sonic-2-2025-03-07"));
        assert!(model_known(&models, "sonic-3.5"));
        assert!(!model_known(&models, "sonic-9"));
        assert!(!model_known(&models, "sonic-2-latest-ish"));
        assert!(!model_known(&models, "sonic-2-2025-3-07"));
    }

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
