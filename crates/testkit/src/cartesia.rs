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

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

use crate::latency::LatencyProfile;
use crate::tcp_server::TcpFakeServer;

mod refusal;
mod request;
mod session;
mod voices;

use refusal::Refusal;

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
    /// Plain REST requests (`GET /voices/{id}`), see [`voices`].
    plain: Mutex<Vec<crate::plain_http::PlainRecord>>,
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
            plain: Mutex::new(Vec::new()),
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

    /// The plain REST requests answered so far (`GET /voices/{id}`).
    pub fn plain_received(&self) -> Vec<crate::plain_http::PlainRecord> {
        self.shared
            .plain
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default()
    }

    /// Stop accepting and end every open connection.
    pub fn shutdown(&self) {
        self.server.shutdown();
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
    check_auth(cfg, version, key)
}

/// The version and key checks every request shares (websocket handshake and REST): the
/// version in effect, or the refusal.
fn check_auth(
    cfg: &CartesiaFakeConfig,
    version: Option<&str>,
    key: Option<&str>,
) -> Result<String, Refusal> {
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
async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    if let Some(request) = crate::plain_http::take_plain(&mut stream).await {
        return voices::serve(request, &mut stream, &shared).await;
    }
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
    session::serve(ws, &shared, accepted.index, accepted.version).await;
    shared.record(accepted.index, |c| c.ended = true);
}
