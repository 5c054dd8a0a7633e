//! A fake of ElevenLabs' TTS websockets on 127.0.0.1: the multi-context
//! `/v1/text-to-speech/{voice_id}/multi-stream-input` and the single-context `.../stream-input`,
//! written from `docs/providers/elevenlabs-tts.md`.
//!
//! For every generated text it produces µ-law audio (a voice-like tone, never silence) whose
//! length is proportional to the text (`ms_per_char` at speed 1.0), in several base64 chunks
//! with character alignment, then `isFinal` when the context (or socket) ends. First-byte delay
//! and pacing come from the latency profile. Every connection, context and message is recorded
//! with times, for assertions and for the load harness. An injected fault ([`crate::fault`];
//! units: contexts finished with `isFinal`) strikes a live socket at the next text it gets, or a
//! new connection at once.
//!
//! Like the service it knows only real voice and model ids: a voice id not in
//! [`ElevenLabsFakeConfig::voices`] or a `model_id` not in [`ElevenLabsFakeConfig::models`]
//! accepts the upgrade, then answers the first message with ElevenLabs' websocket error shape
//! (`{"message", "error", "code"}`) and closes with 1008 (policy violation), the code the
//! service uses for refused input. Names such as `rachel` or `turbo` are refused: the service
//! has no voice called "rachel" and no model called "turbo". Error names and texts as the API
//! reports them: `voice_not_found` "A voice with the voice_id … was not found."
//! (<https://elevenlabs.io/docs/api-reference/text-to-speech/convert>, reported in
//! <https://github.com/elevenlabs/elevenlabs-docs/pull/1317>), `model_not_found` "A model with
//! model ID … does not exist" (<https://github.com/C-Nedelcu/talk-to-chatgpt/issues/182>).
//! Voice ids: the premade voices of `GET /v1/voices`
//! (<https://elevenlabs.io/docs/api-reference/voices/search>); models:
//! <https://elevenlabs.io/docs/overview/models>.

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
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::deepgram::mulaw;
use crate::fault::{Fault, FaultKind, FaultState, garbage_json};
use crate::latency::LatencyProfile;
use crate::tcp_server::TcpFakeServer;

mod rest;

/// What the fake does. `Default` is a well-behaved server with key `test-elevenlabs-key`.
#[derive(Debug, Clone)]
pub struct ElevenLabsFakeConfig {
    /// The key expected in the `xi-api-key` header or the first message.
    pub api_key: String,
    /// First-byte delay and generation pace.
    pub latency: LatencyProfile,
    /// Audio per character (ms) at speed 1.0.
    pub ms_per_char: u64,
    /// Characters per audio message.
    pub chunk_chars: usize,
    /// Failure knob: refuse every handshake with this status.
    pub reject_status: Option<u16>,
    /// Failure knob: refuse only `multi-stream-input` handshakes with this status (to exercise a
    /// client's fallback to `stream-input`).
    pub reject_multi_status: Option<u16>,
    /// Failure knob: after this many audio messages on a connection, send an error message and
    /// close with 1011.
    pub error_after_chunks: Option<usize>,
    /// Failure knob: accept text but never produce audio nor `isFinal` (first-byte timeouts).
    pub never_answer: bool,
    /// Put a 44-byte WAV header in front of each context's first audio chunk (the client must
    /// strip it).
    pub add_wav_header: bool,
    /// Voice ids that exist (default: ElevenLabs' premade voices, [`PREMADE_VOICE_IDS`]).
    pub voices: Vec<String>,
    /// Model ids `model_id` may name (default: [`TTS_MODEL_IDS`]).
    pub models: Vec<String>,
}

/// Ids of ElevenLabs' premade voices (Rachel is `21m00Tcm4TlvDq8ikWAM`).
pub const PREMADE_VOICE_IDS: [&str; 29] = [
    "21m00Tcm4TlvDq8ikWAM",
    "pNInz6obpgDQGcFmaJgB",
    "ErXwobaYiN019PkySvjV",
    "VR6AewLTigWG4xSOukaG",
    "EXAVITQu4vr4xnSDxMaL",
    "AZnzlk1XvdvUeBnXmlld",
    "MF3mGyEYCl7XYWbV9V6O",
    "TxGEqnHWrfWFTfGW9XjX",
    "yoZ06aMxZJJ28mfd3POQ",
    "2EiwWnXFnvU5JabPnv8n",
    "IKne3meq5aSn9XLyUdCD",
    "JBFqnCBsd6RMkjVDRZzb",
    "N2lVS1w4EtoT3dr4eOWO",
    "XB0fDUnXU5powFXDhCwa",
    "Xb7hH8MSUJpSbSDYk0k2",
    "XrExE9yKIg1WjnnlVkGX",
    "nPczCjzI2devNBz1zQrb",
    "onwK4e9ZLuTAKqWW03F9",
    "pFZP5JQG7iQjIQuC4Bku",
    "pqHfZKP75CvOlQylNhV4",
    "iP95p4xoKVk53GoZ742B",
    "cjVigY5qzO86Huf0OWal",
    "cgSgspJ2msm6clMCkdW9",
    "FGY2WhTYpPnrIDTdsKH5",
    "TX3LPaxmHKxFdv7VOQHJ",
    "SAz9YHcvj6GT2YYXdXww",
    "CwhRBWXzGAHq8TQ4Fs17",
    "bIHbv24MWmeRgasZH58o",
    "9BWtsMINqrJLrRacOk9x",
];

/// Text-to-speech model ids that stream over the websocket.
pub const TTS_MODEL_IDS: [&str; 7] = [
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_multilingual_v2",
    "eleven_flash_v2",
    "eleven_turbo_v2",
    "eleven_monolingual_v1",
    "eleven_multilingual_v1",
];

impl Default for ElevenLabsFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-elevenlabs-key".into(),
            latency: LatencyProfile::instant(),
            ms_per_char: 60,
            chunk_chars: 12,
            reject_status: None,
            reject_multi_status: None,
            error_after_chunks: None,
            never_answer: false,
            add_wav_header: false,
            voices: PREMADE_VOICE_IDS.map(str::to_owned).to_vec(),
            models: TTS_MODEL_IDS.map(str::to_owned).to_vec(),
        }
    }
}

/// One context (multi) or the socket's single generation (single: id `""`).
#[derive(Debug, Clone, Default)]
pub struct ContextRecord {
    /// `context_id` as sent by the client.
    pub id: String,
    /// `voice_settings` of the context's first message.
    pub voice_settings: Option<Value>,
    /// `generation_config` of the context's first message.
    pub generation_config: Option<Value>,
    /// Text chunks received (the initial `" "` excluded), verbatim.
    pub texts: Vec<String>,
    /// Flush requests received.
    pub flushes: u64,
    /// Whether the client closed the context (`close_context`) or, single, sent `{"text":""}`.
    pub closed_by_client: bool,
    /// Audio messages sent.
    pub audio_chunks: u64,
    /// µ-law bytes sent.
    pub audio_bytes: u64,
    /// Whether `isFinal` was sent.
    pub final_sent: bool,
    /// When the first text (after the initial space) arrived.
    pub first_text_at: Option<Instant>,
    /// When the first flush arrived.
    pub first_flush_at: Option<Instant>,
    /// When the first audio message was sent.
    pub first_audio_at: Option<Instant>,
}

/// Everything one connection did.
#[derive(Debug, Clone, Default)]
pub struct ElevenLabsConnection {
    /// 0-based index.
    pub index: usize,
    /// Request path.
    pub path: String,
    /// Voice id from the path.
    pub voice_id: String,
    /// Whether it is the multi-context endpoint.
    pub multi: bool,
    /// Query parameters in order.
    pub query: Vec<(String, String)>,
    /// The `xi-api-key` header as received.
    pub api_key_header: Option<String>,
    /// A key found in a first message (`xi_api_key` / `xi-api-key`).
    pub api_key_in_message: Option<String>,
    /// Status of a refused handshake.
    pub rejected_status: Option<u16>,
    /// Every client message, parsed.
    pub messages: Vec<Value>,
    /// Contexts in order of creation.
    pub contexts: Vec<ContextRecord>,
    /// Close code the fake sent.
    pub close_code: Option<u16>,
    /// Whether the client asked to close the socket (`close_socket`).
    pub close_socket: bool,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl ElevenLabsConnection {
    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The record of context `id`.
    pub fn context(&self, id: &str) -> Option<&ContextRecord> {
        self.contexts.iter().find(|c| c.id == id)
    }
}

struct Shared {
    config: ElevenLabsFakeConfig,
    connections: Mutex<Vec<ElevenLabsConnection>>,
    fault: FaultState,
    /// Plain REST requests (`GET /v1/voices/{id}`, `GET /v1/models`), see [`rest`].
    plain: Mutex<Vec<crate::plain_http::PlainRecord>>,
}

impl Shared {
    fn with<R>(&self, f: impl FnOnce(&mut Vec<ElevenLabsConnection>) -> R) -> R {
        let mut guard = match self.connections.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut guard)
    }

    fn record(&self, index: usize, f: impl FnOnce(&mut ElevenLabsConnection)) {
        self.with(|c| {
            if let Some(c) = c.get_mut(index) {
                f(c);
            }
        });
    }

    fn context(&self, index: usize, id: &str, f: impl FnOnce(&mut ContextRecord)) {
        self.record(index, |c| {
            if !c.contexts.iter().any(|x| x.id == id) {
                c.contexts.push(ContextRecord {
                    id: id.to_owned(),
                    ..ContextRecord::default()
                });
            }
            if let Some(x) = c.contexts.iter_mut().find(|x| x.id == id) {
                f(x);
            }
        });
    }
}

/// A running fake ElevenLabs server.
pub struct ElevenLabsFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl ElevenLabsFake {
    /// Bind 127.0.0.1:0 and serve until shutdown or drop.
    pub async fn start(config: ElevenLabsFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            connections: Mutex::new(Vec::new()),
            fault: FaultState::default(),
            plain: Mutex::new(Vec::new()),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
    }

    /// `http://127.0.0.1:<port>`: what goes into `tts_settings.provider_config.base_url`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Records of every connection so far.
    pub fn received(&self) -> Vec<ElevenLabsConnection> {
        self.shared.with(|c| c.clone())
    }

    /// The plain REST requests answered so far (`GET /v1/voices/{id}`, `GET /v1/models`).
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

    /// Injects `fault` (or clears it with `None`); units are contexts finished with `isFinal`,
    /// see [`crate::fault`].
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.fault.set(fault);
    }

    /// Connections or handshakes struck by the fault so far.
    pub fn fault_strikes(&self) -> u32 {
        self.shared.fault.strikes()
    }
}

/// ElevenLabs' error `status` name and message for an HTTP status.
fn elevenlabs_error(status: u16) -> (&'static str, &'static str) {
    match status {
        429 => (
            "too_many_concurrent_requests",
            "Too many concurrent requests for your subscription.",
        ),
        s if s >= 500 => (
            "internal_server_error",
            "An internal server error occurred.",
        ),
        _ => ("rejected", "The request was rejected."),
    }
}

#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    if let Some(request) = crate::plain_http::take_plain(&mut stream).await {
        return rest::serve(request, &mut stream, &shared).await;
    }
    let accepted: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));
    let accepted_cb = accepted.clone();
    let shared_cb = shared.clone();
    let callback = move |request: &Request,
                         response: Response|
          -> Result<Response, ErrorResponse> {
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
        let header = request
            .headers()
            .get("xi-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (voice_id, endpoint) = match segments.as_slice() {
            ["v1", "text-to-speech", voice, endpoint] => {
                ((*voice).to_owned(), (*endpoint).to_owned())
            }
            _ => (String::new(), String::new()),
        };
        let multi = endpoint == "multi-stream-input";
        let cfg = &shared_cb.config;
        let index = shared_cb.with(|c| {
            c.push(ElevenLabsConnection {
                index: c.len(),
                path: path.clone(),
                voice_id,
                multi,
                query: query.clone(),
                api_key_header: header.clone(),
                ..ElevenLabsConnection::default()
            });
            c.len() - 1
        });
        let bad_key = header.as_deref().is_some_and(|h| h != cfg.api_key);
        let refusal = if endpoint != "multi-stream-input" && endpoint != "stream-input" {
            Some((404, "Not found"))
        } else if bad_key {
            Some((401, "Invalid API key"))
        } else if let Some(status) = cfg.reject_status {
            Some((status, "Rejected by the fake (failure knob)"))
        } else if let Some(FaultKind::HttpStatus(status)) = shared_cb
            .fault
            .strike_if(|k| matches!(k, FaultKind::HttpStatus(_)))
        {
            Some((status, elevenlabs_error(status).1))
        } else {
            cfg.reject_multi_status
                .filter(|_| multi)
                .map(|status| (status, "Multi-context is not available (failure knob)"))
        };
        if let Some((status, message)) = refusal {
            shared_cb.record(index, |c| {
                c.rejected_status = Some(status);
                c.ended = true;
            });
            let kind = if status >= 429 {
                elevenlabs_error(status).0
            } else {
                "rejected"
            };
            let body = json!({"detail": {"status": kind, "message": message}}).to_string();
            let mut error = ErrorResponse::new(Some(body));
            *error.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Err(error);
        }
        if let Ok(mut slot) = accepted_cb.lock() {
            *slot = Some(index);
        }
        Ok(response)
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
    let index = match accepted.lock() {
        Ok(mut slot) => slot.take(),
        Err(_) => None,
    };
    let Some(index) = index else { return };
    let (multi, header_ok, inactivity_s, unknown) = shared.with(|c| {
        c.get(index)
            .map(|c| {
                (
                    c.multi,
                    c.api_key_header.is_some(),
                    c.param("inactivity_timeout")
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(20),
                    unknown_id(&shared.config, &c.voice_id, c.param("model_id")),
                )
            })
            .unwrap_or((false, false, 20, None))
    });
    let fault = match shared
        .fault
        .strike_if(|k| !matches!(k, FaultKind::HttpStatus(_)))
    {
        // Struck at once: the connection ends without a close frame.
        Some(FaultKind::Drop) => return,
        other => other,
    };
    let mut session = Session {
        ws,
        shared: &shared,
        index,
        multi,
        fault,
        authed: header_ok,
        unknown,
        contexts: HashMap::new(),
        queue: VecDeque::new(),
        next_at: None,
        chunks_sent: 0,
        sample_pos: 0,
    };
    session
        .run(Duration::from_secs(inactivity_s.clamp(1, 180)))
        .await;
    shared.record(index, |c| c.ended = true);
}

/// The service's refusal of a voice id or `model_id` it does not know.
fn unknown_id(
    cfg: &ElevenLabsFakeConfig,
    voice: &str,
    model: Option<&str>,
) -> Option<(&'static str, String)> {
    if !cfg.voices.iter().any(|v| v == voice) {
        return Some((
            "voice_not_found",
            format!("A voice with the voice_id {voice} was not found."),
        ));
    }
    match model {
        Some(m) if !cfg.models.iter().any(|k| k == m) => Some((
            "model_not_found",
            format!("A model with model ID {m} does not exist"),
        )),
        _ => None,
    }
}

#[derive(Default)]
struct Ctx {
    buffer: String,
    speed: f64,
    schedule_first: usize,
    closing: bool,
    sent_audio: bool,
}

enum Out {
    Audio {
        ctx: String,
        audio: Vec<u8>,
        chars: Vec<char>,
        char_ms: f64,
    },
    Final {
        ctx: String,
    },
}

struct Session<'a> {
    ws: WebSocketStream<TcpStream>,
    shared: &'a Shared,
    index: usize,
    multi: bool,
    /// An injected fault this socket suffers from now on: `Stall` swallows every message,
    /// `Garbage` replaces each with malformed JSON.
    fault: Option<FaultKind>,
    authed: bool,
    /// An unknown voice or model (error name, message): refused at the first message.
    unknown: Option<(&'static str, String)>,
    contexts: HashMap<String, Ctx>,
    queue: VecDeque<Out>,
    next_at: Option<tokio::time::Instant>,
    chunks_sent: usize,
    sample_pos: u64,
}

enum Flow {
    Continue,
    Stop,
}

impl Session<'_> {
    async fn run(&mut self, inactivity: Duration) {
        let mut last_input = tokio::time::Instant::now();
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
            let next_at = self
                .next_at
                .filter(|_| !self.queue.is_empty())
                .unwrap_or(far);
            tokio::select! {
                message = self.ws.next() => {
                    let text = match message {
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => continue,
                    };
                    last_input = tokio::time::Instant::now();
                    if matches!(self.on_message(&text).await, Flow::Stop) {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next_at), if !self.queue.is_empty() => {
                    if matches!(self.emit_next().await, Flow::Stop) {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(last_input + inactivity) => {
                    self.error_and_close("input_timeout_exceeded", "Have not received new text for the inactivity timeout", 1008).await;
                    return;
                }
            }
        }
    }

    async fn error_and_close(&mut self, error: &str, message: &str, code: u16) {
        let msg = json!({"message": message, "error": error, "code": code});
        let _ = self.ws.send(Message::text(msg.to_string())).await;
        self.close(code).await;
    }

    async fn close(&mut self, code: u16) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        self.shared
            .record(self.index, |c| c.close_code = Some(code));
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    async fn on_message(&mut self, text: &str) -> Flow {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        self.shared
            .record(self.index, |c| c.messages.push(value.clone()));
        let cfg = &self.shared.config;
        if !self.authed {
            let key = value
                .get("xi_api_key")
                .or_else(|| value.get("xi-api-key"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            self.shared
                .record(self.index, |c| c.api_key_in_message = key.clone());
            if key.as_deref() != Some(cfg.api_key.as_str()) {
                self.error_and_close("invalid_api_key", "Invalid API key", 1008)
                    .await;
                return Flow::Stop;
            }
            self.authed = true;
        }
        if let Some((error, message)) = self.unknown.take() {
            self.error_and_close(error, &message, 1008).await;
            return Flow::Stop;
        }
        if self.multi && value.get("close_socket").and_then(Value::as_bool) == Some(true) {
            self.shared.record(self.index, |c| c.close_socket = true);
            self.close(1000).await;
            return Flow::Stop;
        }
        let id = if self.multi {
            value
                .get("context_id")
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_owned()
        } else {
            String::new()
        };
        let is_new = !self.contexts.contains_key(&id);
        if is_new {
            let settings = value.get("voice_settings").cloned();
            let speed = settings
                .as_ref()
                .and_then(|s| s.get("speed"))
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            let generation = value.get("generation_config").cloned();
            let schedule_first = generation
                .as_ref()
                .and_then(|g| g.get("chunk_length_schedule"))
                .and_then(|s| s.get(0))
                .and_then(Value::as_f64)
                .unwrap_or(120.0) as usize;
            self.contexts.insert(
                id.clone(),
                Ctx {
                    speed: speed.clamp(0.5, 2.0),
                    schedule_first,
                    ..Ctx::default()
                },
            );
            self.shared.context(self.index, &id, |c| {
                c.voice_settings = settings;
                c.generation_config = generation;
            });
        }
        if self.multi && value.get("close_context").and_then(Value::as_bool) == Some(true) {
            self.shared
                .context(self.index, &id, |c| c.closed_by_client = true);
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.closing = true;
            }
            self.finish_context(&id);
            return Flow::Continue;
        }
        let text = value
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let flush = value.get("flush").and_then(Value::as_bool) == Some(true);
        if !text.is_empty() && text != " " {
            if self.fault.is_none()
                && let Some(kind) = self.shared.fault.strike()
            {
                match kind {
                    FaultKind::Drop => return Flow::Stop,
                    FaultKind::HttpStatus(status) => {
                        let (error, message) = elevenlabs_error(status);
                        let code = if status == 429 { 1008 } else { 1011 };
                        self.error_and_close(error, message, code).await;
                        return Flow::Stop;
                    }
                    FaultKind::Stall | FaultKind::Garbage => self.fault = Some(kind),
                }
            }
            let now = Instant::now();
            self.shared.context(self.index, &id, |c| {
                c.texts.push(text.clone());
                c.first_text_at.get_or_insert(now);
            });
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.buffer.push_str(&text);
            }
        }
        if flush {
            let now = Instant::now();
            self.shared.context(self.index, &id, |c| {
                c.flushes += 1;
                c.first_flush_at.get_or_insert(now);
            });
            self.generate(&id);
        } else if text.is_empty() && !self.multi {
            // Single context: end of input.
            self.shared
                .context(self.index, &id, |c| c.closed_by_client = true);
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.closing = true;
            }
            self.generate(&id);
            self.finish_context(&id);
        } else if self
            .contexts
            .get(&id)
            .is_some_and(|c| c.buffer.chars().count() >= c.schedule_first)
        {
            self.generate(&id);
        }
        Flow::Continue
    }

    /// Turn the context's buffered text into queued audio chunks.
    fn generate(&mut self, id: &str) {
        let cfg = &self.shared.config;
        let was_empty = self.queue.is_empty();
        let Some(ctx) = self.contexts.get_mut(id) else {
            return;
        };
        let text = std::mem::take(&mut ctx.buffer);
        if cfg.never_answer || text.trim().is_empty() {
            return;
        }
        let char_ms = cfg.ms_per_char as f64 / ctx.speed;
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(cfg.chunk_chars.max(1)) {
            let samples = (piece.len() as f64 * char_ms * 8.0) as usize;
            let audio = mulaw::voice_like(self.sample_pos, samples);
            self.sample_pos += samples as u64;
            self.queue.push_back(Out::Audio {
                ctx: id.to_owned(),
                audio,
                chars: piece.to_vec(),
                char_ms,
            });
        }
        if was_empty {
            self.next_at = Some(tokio::time::Instant::now() + cfg.latency.tts_first_byte());
        }
    }

    /// Queue the context's `isFinal` after its audio (at once when none is queued).
    fn finish_context(&mut self, id: &str) {
        if self.shared.config.never_answer {
            return;
        }
        let was_empty = self.queue.is_empty();
        self.queue.push_back(Out::Final { ctx: id.to_owned() });
        if was_empty {
            self.next_at = Some(tokio::time::Instant::now());
        }
    }

    /// Sends a server message, as the injected fault (if any) lets it out: `false` when the
    /// socket is gone.
    async fn send_message(&mut self, msg: &Value) -> bool {
        let text = match self.fault {
            Some(FaultKind::Stall) => return true,
            Some(FaultKind::Garbage) => garbage_json(&msg.to_string()),
            _ => msg.to_string(),
        };
        self.ws.send(Message::text(text)).await.is_ok()
    }

    async fn emit_next(&mut self) -> Flow {
        let cfg = self.shared.config.clone();
        let Some(out) = self.queue.pop_front() else {
            return Flow::Continue;
        };
        match out {
            Out::Audio {
                ctx,
                mut audio,
                chars,
                char_ms,
            } => {
                let duration = Duration::from_secs_f64(audio.len() as f64 / 8000.0);
                let first = self.contexts.get(&ctx).is_some_and(|c| !c.sent_audio);
                if let Some(c) = self.contexts.get_mut(&ctx) {
                    c.sent_audio = true;
                }
                let bytes = audio.len() as u64;
                if first && cfg.add_wav_header {
                    let mut with_header = wav_header(audio.len());
                    with_header.append(&mut audio);
                    audio = with_header;
                }
                let starts: Vec<u64> = (0..chars.len())
                    .map(|i| (i as f64 * char_ms).round() as u64)
                    .collect();
                let durations: Vec<u64> = vec![char_ms.round() as u64; chars.len()];
                let char_strings: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
                let alignment = json!({"chars": char_strings, "charStartTimesMs": starts, "charsDurationsMs": durations});
                let mut msg = json!({
                    "audio": base64::engine::general_purpose::STANDARD.encode(&audio),
                    "isFinal": null,
                    "alignment": alignment,
                    "normalizedAlignment": alignment,
                });
                if self.multi {
                    msg["contextId"] = json!(ctx);
                }
                if !self.send_message(&msg).await {
                    return Flow::Stop;
                }
                let now = Instant::now();
                let faulty = self.fault.is_some();
                self.shared.context(self.index, &ctx, |c| {
                    if faulty {
                        return;
                    }
                    c.audio_chunks += 1;
                    c.audio_bytes += bytes;
                    c.first_audio_at.get_or_insert(now);
                });
                self.chunks_sent += 1;
                if cfg
                    .error_after_chunks
                    .is_some_and(|n| self.chunks_sent >= n)
                {
                    self.error_and_close(
                        "internal_error",
                        "Internal error (fake failure knob)",
                        1011,
                    )
                    .await;
                    return Flow::Stop;
                }
                self.next_at =
                    Some(tokio::time::Instant::now() + cfg.latency.tts_generation_time(duration));
            }
            Out::Final { ctx } => {
                self.contexts.remove(&ctx);
                let msg = if self.multi {
                    json!({"isFinal": true, "contextId": ctx})
                } else {
                    json!({"isFinal": true})
                };
                if !self.send_message(&msg).await {
                    return Flow::Stop;
                }
                if self.fault.is_none() {
                    self.shared.fault.served();
                    self.shared
                        .context(self.index, &ctx, |c| c.final_sent = true);
                }
                if !self.multi {
                    self.close(1000).await;
                    return Flow::Stop;
                }
            }
        }
        Flow::Continue
    }
}

/// A 44-byte WAV header for 8 kHz mono µ-law.
fn wav_header(data_len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&7u16.to_le_bytes()); // µ-law
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&8u16.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&(data_len as u32).to_le_bytes());
    h
}
