//! A fake of OpenAI's speech endpoint (`POST /v1/audio/speech`) on 127.0.0.1, as strict as the
//! documented service: Bearer auth, the request schema (models, voices per model, formats,
//! `input` of 1–4096 characters, `speed` 0.25–4.0, `instructions` and `stream_format: "sse"`
//! only for `gpt-4o-mini-tts`), answered with OpenAI's `{"error": {message, type, param, code}}`
//! bodies; success streams the audio with chunked transfer encoding.
//!
//! Written from OpenAI's documentation and observed error bodies, independently of any adapter:
//! - <https://developers.openai.com/api/reference/resources/audio/subresources/speech/methods/create>
//!   (formerly <https://platform.openai.com/docs/api-reference/audio/createSpeech>): body
//!   parameters, models, voices, formats, ranges, `stream_format`.
//! - <https://platform.openai.com/docs/guides/text-to-speech>: output formats ("PCM: similar to
//!   WAV but containing the raw samples in 24kHz (16-bit signed, low-endian), without the
//!   header"), the smaller voice set of `tts-1`/`tts-1-hd`, streaming.
//! - The `speech.audio.delta` / `speech.audio.done` SSE events: `CreateSpeechResponseStreamEvent`
//!   of OpenAI's OpenAPI description (as generated into `async-openai`'s
//!   `types/audio/stream.rs`).
//! - Observed validation errors (a FastAPI/pydantic list rendered into `error.message`,
//!   `type: invalid_request_error`, `param`/`code` null):
//!   <https://github.com/openai/openai-node/issues/1140>,
//!   <https://github.com/openai/openai-node/issues/1284>; `ballad` refused for `tts-1`:
//!   <https://github.com/anasfik/openai/issues/224>.
//!
//! Audio is the synthetic voice of [`crate::synth`], `ms_per_char` per character divided by
//! `speed`, in `chunk_ms` pieces (first piece after the latency profile's first-byte delay,
//! then paced by it). `pcm` and `wav` carry the voice; `mp3` is valid but silent MPEG frames of
//! the right duration; `opus`, `aac` and `flac` are bytes of a plausible size that do not
//! decode (the fake has no encoder). Every request is recorded. `docs/providers/openai-tts.md`
//! describes the protocol as this fake implements it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::latency::LatencyProfile;
use crate::openai::RecordedRequest;
use crate::synth::{self, RawEncoding};

/// The endpoint's path.
pub const PATH: &str = "/v1/audio/speech";

/// Sample rate (Hz) of every output format.
pub const SAMPLE_RATE_HZ: u32 = 24_000;

/// Longest `input` and `instructions` (characters).
pub const MAX_INPUT_CHARS: usize = 4096;

/// Every built-in voice, in the documented order.
pub const VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];

/// The built-in voices `tts-1` and `tts-1-hd` speak.
pub const TTS1_VOICES: [&str; 9] = [
    "alloy", "ash", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
];

/// Output formats, in the documented order.
pub const FORMATS: [&str; 6] = ["mp3", "opus", "aac", "flac", "wav", "pcm"];

/// What the fake does. `Default` is a well-behaved OpenAI with key `test-openai-key`.
#[derive(Debug, Clone)]
pub struct OpenAiSpeechFakeConfig {
    /// The key expected in `Authorization: Bearer`.
    pub api_key: String,
    /// Models that exist; those starting with `tts-1` take neither `instructions` nor SSE and
    /// speak only [`TTS1_VOICES`].
    pub models: Vec<String>,
    /// Custom voice ids (`{"id": "voice_…"}`) that exist.
    pub custom_voices: Vec<String>,
    /// First-byte delay and generation pace.
    pub latency: LatencyProfile,
    /// Audio per character (ms) at speed 1.0.
    pub ms_per_char: u64,
    /// Audio per streamed piece (ms).
    pub chunk_ms: u64,
}

impl Default for OpenAiSpeechFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-openai-key".into(),
            models: [
                "tts-1",
                "tts-1-hd",
                "gpt-4o-mini-tts",
                "gpt-4o-mini-tts-2025-12-15",
            ]
            .map(String::from)
            .to_vec(),
            custom_voices: Vec::new(),
            latency: LatencyProfile::instant(),
            ms_per_char: 60,
            chunk_ms: 100,
        }
    }
}

/// A failure the next request gets instead of audio (FIFO, after auth succeeded).
#[derive(Debug, Clone, PartialEq)]
pub enum SpeechFailure {
    /// An HTTP error with OpenAI's error body.
    Status {
        /// HTTP status.
        status: u16,
        /// `error.type`.
        error_type: String,
        /// `error.code`.
        code: Option<String>,
        /// `error.message`.
        message: String,
    },
    /// Send the headers and `after_chunks` audio pieces, then abort the connection.
    AbortMidStream {
        /// Pieces sent before the abort.
        after_chunks: usize,
    },
}

impl SpeechFailure {
    /// OpenAI's retryable 429 (`rate_limit_exceeded`).
    pub fn rate_limited() -> Self {
        Self::Status {
            status: 429,
            error_type: "requests".into(),
            code: Some("rate_limit_exceeded".into()),
            message: "Rate limit reached for requests".into(),
        }
    }

    /// OpenAI's billing 429 (`insufficient_quota`, not retryable).
    pub fn insufficient_quota() -> Self {
        Self::Status {
            status: 429,
            error_type: "insufficient_quota".into(),
            code: Some("insufficient_quota".into()),
            message: "You exceeded your current quota, please check your plan and billing \
                      details."
                .into(),
        }
    }
}

/// One request and what the fake did with it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechRecord {
    /// The request as received.
    pub request: RecordedRequest,
    /// HTTP status answered.
    pub status: u16,
    /// Audio pieces sent (body chunks, or `speech.audio.delta` events).
    pub chunks: u64,
    /// Audio bytes sent (decoded, headers and frames included).
    pub audio_bytes: u64,
    /// Whether the whole stream was sent.
    pub completed: bool,
    /// Whether the client went away before the end.
    pub cancelled: bool,
}

struct Shared {
    config: OpenAiSpeechFakeConfig,
    records: Mutex<Vec<SpeechRecord>>,
    failures: Mutex<VecDeque<SpeechFailure>>,
}

impl Shared {
    fn record(&self, index: usize, f: impl FnOnce(&mut SpeechRecord)) {
        if let Ok(mut records) = self.records.lock()
            && let Some(r) = records.get_mut(index)
        {
            f(r);
        }
    }
}

/// A running fake OpenAI speech server. Dropping it stops the server.
pub struct OpenAiSpeechFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl OpenAiSpeechFake {
    /// Bind 127.0.0.1:0 and serve until shutdown or drop.
    pub async fn start(config: OpenAiSpeechFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            records: Mutex::new(Vec::new()),
            failures: Mutex::new(VecDeque::new()),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (stop, mut down) = watch::channel(false);
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = down.wait_for(|d| *d).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "fake openai speech server stopped");
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            task: Some(task),
        })
    }

    /// The API root in OpenAI's convention, `http://127.0.0.1:<port>/v1`: what goes into
    /// `tts_settings.provider_config.base_url`; the client appends `/audio/speech`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a failure for the next request that passes authentication.
    pub fn push_failure(&self, failure: SpeechFailure) {
        if let Ok(mut q) = self.shared.failures.lock() {
            q.push_back(failure);
        }
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<SpeechRecord> {
        self.shared
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Stop the server and wait up to 2 s for it.
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

impl Drop for OpenAiSpeechFake {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// OpenAI's error response.
fn error(
    status: u16,
    error_type: &str,
    param: Option<&str>,
    code: Option<&str>,
    message: &str,
) -> Response {
    let body =
        json!({"error": {"message": message, "type": error_type, "param": param, "code": code}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A request the validation refuses (always an `invalid_request_error`).
struct ApiError {
    status: u16,
    param: Option<&'static str>,
    code: Option<&'static str>,
    message: String,
}

impl ApiError {
    fn response(&self) -> Response {
        error(
            self.status,
            "invalid_request_error",
            self.param,
            self.code,
            &self.message,
        )
    }
}

/// A Python `repr` of a string, as FastAPI renders it into validation messages.
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A Python `repr` of a JSON value.
fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_str(s),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(py_value).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_str(k), py_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// One pydantic validation error.
struct Invalid {
    kind: &'static str,
    field: &'static str,
    msg: String,
    input: Value,
    ctx: Option<(&'static str, String)>,
}

impl Invalid {
    fn render(&self) -> String {
        let mut s = format!(
            "{{'type': {}, 'loc': ('body', {}), 'msg': {}, 'input': {}",
            py_str(self.kind),
            py_str(self.field),
            py_str(&self.msg),
            py_value(&self.input)
        );
        if let Some((key, value)) = &self.ctx {
            s.push_str(&format!(", 'ctx': {{{}: {value}}}", py_str(key)));
        }
        s.push('}');
        s
    }
}

/// "'a', 'b' or 'c'", pydantic's list of expected literals.
fn expected(values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| py_str(v)).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

fn enum_error(field: &'static str, input: Value, values: &[&str]) -> Invalid {
    let list = expected(values);
    Invalid {
        kind: "enum",
        field,
        msg: format!("Input should be {list}"),
        input,
        ctx: Some(("expected", py_str(&list))),
    }
}

/// A string field of 1 to [`MAX_INPUT_CHARS`] characters; missing counts as empty, as the
/// service reports it.
fn text_field(body: &Map<String, Value>, field: &'static str, errors: &mut Vec<Invalid>) {
    let value = body
        .get(field)
        .cloned()
        .unwrap_or(Value::String(String::new()));
    let Some(text) = value.as_str() else {
        errors.push(Invalid {
            kind: "string_type",
            field,
            msg: "Input should be a valid string".into(),
            input: value.clone(),
            ctx: None,
        });
        return;
    };
    let chars = text.chars().count();
    if chars == 0 {
        errors.push(Invalid {
            kind: "string_too_short",
            field,
            msg: "String should have at least 1 character".into(),
            input: value.clone(),
            ctx: Some(("min_length", "1".into())),
        });
    } else if chars > MAX_INPUT_CHARS {
        errors.push(Invalid {
            kind: "string_too_long",
            field,
            msg: format!("String should have at most {MAX_INPUT_CHARS} characters"),
            input: value.clone(),
            ctx: Some(("max_length", MAX_INPUT_CHARS.to_string())),
        });
    }
}

/// A validated request.
struct Speech {
    chars: usize,
    format: &'static str,
    speed: f64,
    sse: bool,
}

/// Validates the body in the order the service reports: schema errors (all at once), then the
/// model, then what the model supports.
fn validate(cfg: &OpenAiSpeechFakeConfig, body: &Map<String, Value>) -> Result<Speech, ApiError> {
    let mut errors = Vec::new();
    let model = match body.get("model") {
        Some(Value::String(m)) => Some(m.clone()),
        None => {
            errors.push(Invalid {
                kind: "missing",
                field: "model",
                msg: "Field required".into(),
                input: Value::Object(body.clone()),
                ctx: None,
            });
            None
        }
        Some(other) => {
            errors.push(Invalid {
                kind: "string_type",
                field: "model",
                msg: "Input should be a valid string".into(),
                input: other.clone(),
                ctx: None,
            });
            None
        }
    };
    text_field(body, "input", &mut errors);
    if body.get("instructions").is_some_and(|v| !v.is_null()) {
        text_field(body, "instructions", &mut errors);
    }
    let voice = body
        .get("voice")
        .cloned()
        .unwrap_or(Value::String(String::new()));
    match &voice {
        Value::String(v) if VOICES.contains(&v.as_str()) => {}
        Value::Object(o) if o.get("id").and_then(Value::as_str).is_some() => {}
        other => errors.push(enum_error("voice", other.clone(), &VOICES)),
    }
    let format = match body.get("response_format") {
        None | Some(Value::Null) => Some("mp3"),
        Some(v) => match FORMATS.iter().find(|f| v.as_str() == Some(f)) {
            Some(f) => Some(*f),
            None => {
                errors.push(enum_error("response_format", v.clone(), &FORMATS));
                None
            }
        },
    };
    let speed = match body.get("speed") {
        None | Some(Value::Null) => 1.0,
        Some(v) => match v.as_f64() {
            Some(s) if s < 0.25 => {
                errors.push(Invalid {
                    kind: "greater_than_equal",
                    field: "speed",
                    msg: "Input should be greater than or equal to 0.25".into(),
                    input: v.clone(),
                    ctx: Some(("ge", "0.25".into())),
                });
                1.0
            }
            Some(s) if s > 4.0 => {
                errors.push(Invalid {
                    kind: "less_than_equal",
                    field: "speed",
                    msg: "Input should be less than or equal to 4".into(),
                    input: v.clone(),
                    ctx: Some(("le", "4.0".into())),
                });
                1.0
            }
            Some(s) => s,
            None => {
                errors.push(Invalid {
                    kind: "float_parsing",
                    field: "speed",
                    msg: "Input should be a valid number, unable to parse string as a number"
                        .into(),
                    input: v.clone(),
                    ctx: None,
                });
                1.0
            }
        },
    };
    let sse = match body.get("stream_format") {
        None | Some(Value::Null) => false,
        Some(v) if v.as_str() == Some("audio") => false,
        Some(v) if v.as_str() == Some("sse") => true,
        Some(v) => {
            errors.push(enum_error("stream_format", v.clone(), &["sse", "audio"]));
            false
        }
    };
    let (Some(model), Some(format), true) = (model, format, errors.is_empty()) else {
        let list: Vec<String> = errors.iter().map(Invalid::render).collect();
        return Err(ApiError {
            status: 400,
            param: None,
            code: None,
            message: format!("[{}]", list.join(", ")),
        });
    };
    if !cfg.models.contains(&model) {
        return Err(ApiError {
            status: 404,
            param: None,
            code: Some("model_not_found"),
            message: format!("The model `{model}` does not exist or you do not have access to it."),
        });
    }
    let legacy = model.starts_with("tts-1");
    match &voice {
        Value::String(v) if legacy && !TTS1_VOICES.contains(&v.as_str()) => {
            let e = enum_error("voice", voice.clone(), &TTS1_VOICES);
            return Err(ApiError {
                status: 400,
                param: None,
                code: None,
                message: format!("[{}]", e.render()),
            });
        }
        Value::Object(o) => {
            let id = o.get("id").and_then(Value::as_str).unwrap_or_default();
            if legacy || !cfg.custom_voices.iter().any(|v| v == id) {
                return Err(ApiError {
                    status: 400,
                    param: Some("voice"),
                    code: Some("invalid_value"),
                    message: format!("Voice `{id}` is not available for model `{model}`."),
                });
            }
        }
        _ => {}
    }
    if legacy && body.get("instructions").is_some_and(|v| !v.is_null()) {
        return Err(ApiError {
            status: 400,
            param: Some("instructions"),
            code: Some("unsupported_parameter"),
            message: format!("instructions is not supported with model `{model}`."),
        });
    }
    if legacy && sse {
        return Err(ApiError {
            status: 400,
            param: Some("stream_format"),
            code: Some("unsupported_value"),
            message: format!("stream_format `sse` is not supported with model `{model}`."),
        });
    }
    let chars = body
        .get("input")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count());
    Ok(Speech {
        chars,
        format,
        speed,
        sse,
    })
}

/// `GET /v1/models/{model}` (<https://platform.openai.com/docs/api-reference/models/retrieve>):
/// what `switchboard providers check` asks to prove a key and a speech model without generating
/// audio. The model object; 401 for a missing or wrong key, 404 `model_not_found` for a model
/// not in [`OpenAiSpeechFakeConfig::models`].
fn retrieve_model(
    cfg: &OpenAiSpeechFakeConfig,
    request: &RecordedRequest,
    model: &str,
) -> Response {
    let presented = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if presented != Some(cfg.api_key.as_str()) {
        return error(
            401,
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        );
    }
    if !cfg.models.iter().any(|m| m == model) {
        return error(
            404,
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
            &format!("The model `{model}` does not exist or you do not have access to it."),
        );
    }
    let body =
        json!({"id": model, "object": "model", "created": 1_712_361_441, "owned_by": "system"});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest::capture(&method, &uri, &headers, &body);
    let index = match shared.records.lock() {
        Ok(mut r) => {
            r.push(SpeechRecord {
                request: request.clone(),
                status: 0,
                chunks: 0,
                audio_bytes: 0,
                completed: false,
                cancelled: false,
            });
            r.len() - 1
        }
        Err(_) => usize::MAX,
    };
    let response = answer(&shared, index, &request, &method, &body).await;
    let status = response.status().as_u16();
    shared.record(index, |r| r.status = status);
    response
}

async fn answer(
    shared: &Arc<Shared>,
    index: usize,
    request: &RecordedRequest,
    method: &Method,
    body: &[u8],
) -> Response {
    let cfg = &shared.config;
    if let Some(model) = request
        .path
        .strip_prefix("/v1/models/")
        .filter(|m| !m.is_empty() && *method == Method::GET)
    {
        return retrieve_model(cfg, request, model);
    }
    if request.path != PATH || *method != Method::POST {
        return error(
            404,
            "invalid_request_error",
            None,
            None,
            &format!("Invalid URL ({method} {})", request.path),
        );
    }
    let presented = request
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    match presented {
        None => {
            return error(
                401,
                "invalid_request_error",
                None,
                None,
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            );
        }
        Some(key) if key != cfg.api_key => {
            let shown: String = key.chars().take(4).collect();
            return error(
                401,
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
                &format!("Incorrect API key provided: {shown}****."),
            );
        }
        Some(_) => {}
    }
    let failure = shared.failures.lock().ok().and_then(|mut q| q.pop_front());
    if let Some(SpeechFailure::Status {
        status,
        error_type,
        code,
        message,
    }) = &failure
    {
        return error(*status, error_type, None, code.as_deref(), message);
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return error(
            400,
            "invalid_request_error",
            None,
            None,
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON.)",
        );
    };
    let speech = match validate(cfg, &body) {
        Ok(s) => s,
        Err(refused) => return refused.response(),
    };
    let abort_after = match failure {
        Some(SpeechFailure::AbortMidStream { after_chunks }) => Some(after_chunks),
        _ => None,
    };
    stream(Arc::clone(shared), index, speech, abort_after)
}

/// The body pieces of a generation: audio bytes per piece, in the requested format.
fn pieces(cfg: &OpenAiSpeechFakeConfig, speech: &Speech) -> Vec<Vec<u8>> {
    let total_ms = speech.chars as f64 * cfg.ms_per_char as f64 / speech.speed;
    let total_samples = (total_ms * f64::from(SAMPLE_RATE_HZ) / 1000.0).round() as usize;
    let chunk_samples = (cfg.chunk_ms.max(10) as usize * SAMPLE_RATE_HZ as usize / 1000).max(1);
    let mut out = Vec::new();
    match speech.format {
        "pcm" | "wav" => {
            let mut pos = 0usize;
            while pos < total_samples {
                let n = chunk_samples.min(total_samples - pos);
                out.push(synth::voice(
                    RawEncoding::S16Le,
                    SAMPLE_RATE_HZ,
                    pos as u64,
                    n,
                ));
                pos += n;
            }
            if speech.format == "wav" {
                out.insert(
                    0,
                    synth::wav_header_s16_mono(SAMPLE_RATE_HZ, total_samples * 2),
                );
            }
        }
        "mp3" => {
            let frames = total_samples.div_ceil(synth::MP3_FRAME_SAMPLES);
            let per_piece = chunk_samples.div_ceil(synth::MP3_FRAME_SAMPLES).max(1);
            let mut left = frames;
            while left > 0 {
                let n = left.min(per_piece);
                out.push(synth::mp3_silent_frames(n));
                left -= n;
            }
        }
        _ => {
            // opus / aac / flac at 32 kbit/s: the size is plausible, the bytes do not decode.
            let total_bytes = (total_ms * 4.0).round() as usize;
            let per_piece = (cfg.chunk_ms.max(10) as usize * 4).max(1);
            let mut left = total_bytes;
            while left > 0 {
                let n = left.min(per_piece);
                out.push(vec![0u8; n]);
                left -= n;
            }
        }
    }
    out
}

fn content_type(format: &str) -> &'static str {
    match format {
        "mp3" => "audio/mpeg",
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        _ => "audio/pcm",
    }
}

/// Streams the audio (raw body or SSE events) through a channel, paced by the latency profile.
fn stream(
    shared: Arc<Shared>,
    index: usize,
    speech: Speech,
    abort_after: Option<usize>,
) -> Response {
    let cfg = &shared.config;
    let pieces = pieces(cfg, &speech);
    let latency = cfg.latency;
    let piece_duration = Duration::from_millis(cfg.chunk_ms.max(10));
    let input_tokens = (speech.chars as u64).div_ceil(4).max(1);
    let sse = speech.sse;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let task_shared = Arc::clone(&shared);
    tokio::spawn(async move {
        let mut wait = latency.tts_first_byte();
        for (i, piece) in pieces.into_iter().enumerate() {
            if abort_after.is_some_and(|n| i >= n) {
                let _ = tx
                    .send(Err(std::io::Error::other(
                        "fake: connection aborted mid-stream",
                    )))
                    .await;
                return;
            }
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = tx.closed() => {
                        task_shared.record(index, |r| r.cancelled = true);
                        return;
                    }
                }
            }
            wait = latency.tts_generation_time(piece_duration);
            let len = piece.len() as u64;
            let bytes = if sse {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&piece);
                let event = json!({"type": "speech.audio.delta", "audio": b64});
                Bytes::from(format!("data: {event}\n\n"))
            } else {
                Bytes::from(piece)
            };
            if tx.send(Ok(bytes)).await.is_err() {
                task_shared.record(index, |r| r.cancelled = true);
                return;
            }
            task_shared.record(index, |r| {
                r.chunks += 1;
                r.audio_bytes += len;
            });
        }
        if sse {
            let output_tokens = task_shared.records.lock().map_or(0, |r| {
                r.get(index).map_or(0, |r| r.audio_bytes.div_ceil(960))
            });
            let done = json!({"type": "speech.audio.done", "usage": {
                "input_tokens": input_tokens, "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens}});
            if tx
                .send(Ok(Bytes::from(format!("data: {done}\n\n"))))
                .await
                .is_err()
            {
                task_shared.record(index, |r| r.cancelled = true);
                return;
            }
        }
        task_shared.record(index, |r| r.completed = true);
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        content_type(speech.format)
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-request-id", format!("req_fake{index}"))
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_rendering_matches_the_observed_text() {
        let e = enum_error("voice", json!("sage"), &["nova", "shimmer", "alloy"]);
        assert_eq!(
            e.render(),
            "{'type': 'enum', 'loc': ('body', 'voice'), 'msg': \"Input should be 'nova', \
             'shimmer' or 'alloy'\", 'input': 'sage', 'ctx': {'expected': \"'nova', 'shimmer' \
             or 'alloy'\"}}"
        );
        assert_eq!(
            py_value(&json!({"a": [1, null, true]})),
            "{'a': [1, None, True]}"
        );
    }
}
