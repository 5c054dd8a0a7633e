//! A fake of the Soniox real-time speech-to-text websocket
//! (`wss://stt-rt.soniox.com/transcribe-websocket`) on 127.0.0.1, as strict as the documented
//! service: a key with the connection (`Authorization: Bearer`, or the `soniox-api-key`
//! subprotocol) or, deprecated, `api_key` in the start request; a JSON start request that must
//! come first and is schema-checked; binary audio; responses carrying tokens with `is_final`,
//! the `<end>` token on an endpoint and `<fin>` after a manual finalize; errors as
//! `{error_code, error_type, error_message}` followed by a close.
//!
//! Written from Soniox' documentation, independently of any adapter:
//! - <https://soniox.com/docs/stt/api-reference/websocket-api> (and
//!   <https://soniox.com/docs/api-reference/stt/websocket-api.mdx>): endpoint, start request
//!   fields (`model`, `audio_format`, `sample_rate`, `num_channels`, `language_hints`,
//!   `language_hints_strict`, `context`, `enable_speaker_diarization`,
//!   `enable_language_identification`, `enable_endpoint_detection`, `max_endpoint_delay_ms`
//!   500–3000, `client_reference_id`, `translation` one_way/two_way), ending the stream with an
//!   empty frame, the `finished` response.
//! - <https://soniox.com/docs/guides/websocket-authentication> and
//!   <https://soniox.com/docs/guides/migrate-websocket-authentication>: the key with the
//!   connection; `api_key` in the start request deprecated, refused from 15 January 2027.
//! - <https://soniox.com/docs/stt/rt/error-handling> and
//!   <https://soniox.com/docs/api-reference/errors>: an error response, then the connection is
//!   closed; `error_code` (HTTP-like), `error_type` (e.g. `unauthenticated`), `error_message`,
//!   `request_id`.
//! - <https://soniox.com/docs/stt/real-time-API/real-time-transcription>,
//!   `…/endpoint-detection`, `…/manual-finalization`: token fields, final vs non-final
//!   tokens, `<end>`, `{"type": "finalize"}` and `<fin>`, `{"type": "keepalive"}`.
//! - <https://soniox.com/docs/stt/SDKs/node-SDK/reference/types>: the raw audio format names.
//!
//! Not documented, so the fake's own choice: the close after an error uses code 1000 with the
//! `error_type` as reason; `error_type` for a 400 is `invalid_request`. Translation is
//! validated but the fake emits no translated tokens. `docs/providers/soniox.md` describes the
//! protocol as this fake implements it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stt_common::{
    Conn, Encoding, Records, ScriptQueue, SegmentEvent, Segmenter, SegmenterConfig,
    SttConnectionRecord, Verdict, first_words, hex_id, interim_word_count, script_for, word_times,
};
use crate::tcp_server::TcpFakeServer;

/// The websocket path.
pub const PATH: &str = "/transcribe-websocket";

/// The subprotocol that carries the key in browsers: `["soniox-api-key", <key>]`.
pub const KEY_SUBPROTOCOL: &str = "soniox-api-key";

/// Close code the fake sends after an error response (not documented by Soniox).
pub const ERROR_CLOSE_CODE: u16 = 1000;

/// Fields the start request may carry.
const START_KEYS: [&str; 14] = [
    "api_key",
    "model",
    "audio_format",
    "sample_rate",
    "num_channels",
    "language_hints",
    "language_hints_strict",
    "context",
    "enable_speaker_diarization",
    "enable_language_identification",
    "enable_endpoint_detection",
    "max_endpoint_delay_ms",
    "client_reference_id",
    "translation",
];

/// Raw formats the fake can segment; other documented formats are accepted by Soniox but
/// refused here (a fake limitation).
const DECODABLE: [(&str, Encoding); 3] = [
    ("mulaw", Encoding::Mulaw),
    ("pcm_s16le", Encoding::PcmS16le),
    ("pcm_f32le", Encoding::PcmF32le),
];

/// What the fake does. `Default` is a well-behaved service with key `test-soniox-key`.
#[derive(Debug, Clone)]
pub struct SonioxFakeConfig {
    /// The accepted API key.
    pub api_key: String,
    /// Whether `api_key` in the start request still works (deprecated; Soniox refuses it from
    /// 15 January 2027).
    pub accept_key_in_start_request: bool,
    /// Models `model` may name.
    pub models: Vec<String>,
    /// Utterance texts for connections without a script of their own.
    pub default_script: Vec<String>,
    /// Scripts by session order.
    pub connection_scripts: Vec<Vec<String>>,
    /// Text used once a script has run out.
    pub fallback_text: String,
    /// Energy segmentation of the received audio.
    pub segmenter: SegmenterConfig,
    /// Silence (ms) after which a segment's tokens become final (and `<end>` is sent with
    /// endpoint detection).
    pub segment_gap_ms: u64,
    /// Failure knob: once this much audio (ms of stream time) has arrived, answer with the
    /// documented early-termination error (503 "Cannot continue request") and close.
    pub fail_after_audio_ms: Option<u64>,
    /// With `fail_after_audio_ms`: fail with a 4xx the client must not retry instead (402, the
    /// organisation's balance ran out), so the session ends for good mid-call.
    pub fail_for_good: bool,
}

impl Default for SonioxFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-soniox-key".into(),
            accept_key_in_start_request: true,
            models: ["stt-rt-v5", "stt-rt-v4", "stt-rt-v3", "stt-rt-preview"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            default_script: Vec::new(),
            connection_scripts: Vec::new(),
            fallback_text: "[unintelligible]".into(),
            segmenter: SegmenterConfig::default(),
            segment_gap_ms: 300,
            fail_after_audio_ms: None,
            fail_for_good: false,
        }
    }
}

struct Shared {
    config: SonioxFakeConfig,
    records: Arc<Records>,
    sessions: AtomicUsize,
}

/// A running fake Soniox real-time server.
pub struct SonioxFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl SonioxFake {
    /// Bind 127.0.0.1:0 and serve until [`SonioxFake::shutdown`] or drop.
    pub async fn start(config: SonioxFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            records: Arc::new(Records::default()),
            sessions: AtomicUsize::new(0),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
    }

    /// `ws://127.0.0.1:<port>/transcribe-websocket`: the endpoint URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{PATH}", self.server.addr())
    }

    /// `http://127.0.0.1:<port>` (what goes into `provider_config.base_url`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Records of every connection so far (accepted or refused), in order.
    pub fn received(&self) -> Vec<SttConnectionRecord> {
        self.shared.records.snapshot()
    }

    /// Stop accepting and end every open connection.
    pub fn shutdown(&self) {
        self.server.shutdown();
    }
}

/// An error response: (error_code, error_type, error_message).
type Failure = (u16, &'static str, String);

fn invalid(message: impl Into<String>) -> Failure {
    (400, "invalid_request", message.into())
}

fn unauthenticated(message: &str) -> Failure {
    (401, "unauthenticated", message.to_owned())
}

/// How the key came with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConnectionKey {
    None,
    Valid,
    Invalid,
}

async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let Some((ws, hs)) = crate::stt_common::accept(stream, &shared.records, |hs| {
        if hs.path != PATH {
            return Verdict::Refuse {
                status: 404,
                body: "Not Found".into(),
                content_type: "text/plain",
            };
        }
        let offers_key_protocol = hs
            .header("sec-websocket-protocol")
            .is_some_and(|p| p.split(',').any(|t| t.trim() == KEY_SUBPROTOCOL));
        Verdict::Accept {
            subprotocol: offers_key_protocol.then(|| KEY_SUBPROTOCOL.to_owned()),
        }
    })
    .await
    else {
        return;
    };
    let cfg = &shared.config;
    let protocol_key = hs.header("sec-websocket-protocol").and_then(|p| {
        let tokens: Vec<&str> = p.split(',').map(str::trim).collect();
        let at = tokens.iter().position(|t| *t == KEY_SUBPROTOCOL)?;
        tokens.get(at + 1).map(|k| (*k).to_owned())
    });
    let header_key = hs
        .header("authorization")
        .map(|a| a.strip_prefix("Bearer ").unwrap_or("").to_owned());
    let key = match header_key.or(protocol_key) {
        None => ConnectionKey::None,
        Some(k) if k == cfg.api_key => ConnectionKey::Valid,
        Some(_) => ConnectionKey::Invalid,
    };
    let mut conn = Conn {
        ws,
        records: shared.records.clone(),
        index: hs.index,
    };
    if key == ConnectionKey::Invalid {
        fail(&mut conn, unauthenticated("Invalid API key.")).await;
    } else {
        serve(&mut conn, &shared, key).await;
    }
    shared.records.update(hs.index, |c| c.ended = true);
}

async fn fail(conn: &mut Conn, (code, kind, message): Failure) {
    conn.send_json(json!({
        "tokens": [],
        "error_code": code,
        "error_type": kind,
        "error_message": message,
        "request_id": hex_id(),
    }))
    .await;
    conn.close(ERROR_CLOSE_CODE, kind).await;
}

/// What the start request asked for.
struct Settings {
    encoding: Encoding,
    sample_rate: u32,
    channels: u32,
    endpoint_detection: bool,
    diarization: bool,
    language: Option<String>,
}

fn bool_field(o: &Map<String, Value>, key: &str) -> Result<bool, Failure> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(invalid(format!("{key} must be a boolean"))),
    }
}

fn string_list(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, Failure> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()),
        Some(_) => Err(invalid(format!("{key} must be a list of strings"))),
    }
}

fn pairs(v: Option<&Value>, a: &str, b: &str, what: &str) -> Result<(), Failure> {
    let ok = match v {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.iter().all(|i| {
            i.get(a).is_some_and(Value::is_string) && i.get(b).is_some_and(Value::is_string)
        }),
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} must be a list of {{{a}, {b}}} objects"
        )))
    }
}

fn settings(o: &Map<String, Value>, models: &[String]) -> Result<Settings, Failure> {
    if let Some(k) = o.keys().find(|k| !START_KEYS.contains(&k.as_str())) {
        return Err(invalid(format!("Unknown field '{k}' in the start request")));
    }
    match o.get("model").and_then(Value::as_str) {
        None => return Err(invalid("model is required")),
        Some(m) if !models.iter().any(|k| k == m) => {
            return Err(invalid(format!("Invalid model specified: '{m}'")));
        }
        Some(_) => {}
    }
    let Some(format) = o.get("audio_format").and_then(Value::as_str) else {
        return Err(invalid("audio_format is required"));
    };
    let Some(&(_, encoding)) = DECODABLE.iter().find(|(f, _)| *f == format) else {
        return Err(invalid(format!(
            "audio_format '{format}' is not supported by this fake (use mulaw, pcm_s16le or pcm_f32le)"
        )));
    };
    let sample_rate = o
        .get("sample_rate")
        .and_then(Value::as_u64)
        .filter(|r| (1..=192_000).contains(r))
        .ok_or_else(|| invalid("sample_rate is required for raw audio formats"))?;
    let channels = o
        .get("num_channels")
        .and_then(Value::as_u64)
        .filter(|c| (1..=8).contains(c))
        .ok_or_else(|| invalid("num_channels is required for raw audio formats"))?;
    let hints = string_list(o, "language_hints")?;
    bool_field(o, "language_hints_strict")?;
    let diarization = bool_field(o, "enable_speaker_diarization")?;
    let language_id = bool_field(o, "enable_language_identification")?;
    let endpoint_detection = bool_field(o, "enable_endpoint_detection")?;
    if let Some(d) = o.get("max_endpoint_delay_ms")
        && !d.as_u64().is_some_and(|d| (500..=3000).contains(&d))
    {
        return Err(invalid(
            "max_endpoint_delay_ms must be between 500 and 3000",
        ));
    }
    if o.get("client_reference_id").is_some_and(|c| !c.is_string()) {
        return Err(invalid("client_reference_id must be a string"));
    }
    if let Some(context) = o.get("context") {
        let Some(c) = context.as_object() else {
            return Err(invalid("context must be an object"));
        };
        pairs(c.get("general"), "key", "value", "context.general")?;
        pairs(
            c.get("translation_terms"),
            "source",
            "target",
            "context.translation_terms",
        )?;
        string_list(c, "terms")?;
        if c.get("text").is_some_and(|t| !t.is_string()) {
            return Err(invalid("context.text must be a string"));
        }
    }
    if let Some(t) = o.get("translation") {
        let field = |k: &str| {
            t.get(k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        };
        match t.get("type").and_then(Value::as_str) {
            Some("one_way") if field("target_language") => {}
            Some("two_way") if field("language_a") && field("language_b") => {}
            _ => {
                return Err(invalid(
                    "translation needs type one_way with target_language, or two_way with language_a and language_b",
                ));
            }
        }
    }
    Ok(Settings {
        encoding,
        sample_rate: sample_rate as u32,
        channels: channels as u32,
        endpoint_detection,
        diarization,
        language: language_id.then(|| hints.first().cloned().unwrap_or_else(|| "en".into())),
    })
}

struct Session {
    s: Settings,
    seg: Segmenter,
    script: ScriptQueue,
    current: Option<String>,
    /// Whether any final word has been sent (later segments start with a space).
    spoken: bool,
    final_ms: u64,
    fail_after_ms: Option<u64>,
    fail_for_good: bool,
}

async fn serve(conn: &mut Conn, shared: &Shared, key: ConnectionKey) {
    let cfg = &shared.config;
    let first = loop {
        match conn.ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let t = t.as_str().to_owned();
                conn.got_text(&t);
                break t;
            }
            Some(Ok(Message::Binary(b))) => {
                conn.got_audio(b.len());
                if key == ConnectionKey::None {
                    return fail(conn, unauthenticated("Missing API key.")).await;
                }
                return fail(conn, invalid("Start request expected before audio")).await;
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    };
    let Ok(Value::Object(start)) = serde_json::from_str::<Value>(&first) else {
        return fail(conn, invalid("The start request must be a JSON object")).await;
    };
    shared.records.update(conn.index, |c| {
        c.config = Some(Value::Object(start.clone()))
    });
    if key == ConnectionKey::None {
        let in_start = start.get("api_key").and_then(Value::as_str);
        let failure = match in_start {
            None => Some(unauthenticated("Missing API key.")),
            Some(_) if !cfg.accept_key_in_start_request => Some(unauthenticated(
                "api_key in the start request is no longer accepted; send it with the connection.",
            )),
            Some(k) if k != cfg.api_key => Some(unauthenticated("Invalid API key.")),
            Some(_) => None,
        };
        if let Some(f) = failure {
            return fail(conn, f).await;
        }
    }
    let s = match settings(&start, &cfg.models) {
        Ok(s) => s,
        Err(f) => return fail(conn, f).await,
    };
    let n = shared.sessions.fetch_add(1, Ordering::SeqCst);
    let mut session = Session {
        seg: Segmenter::new(
            cfg.segmenter,
            s.encoding,
            s.sample_rate * s.channels,
            cfg.segment_gap_ms,
        ),
        s,
        script: script_for(
            &cfg.connection_scripts,
            &cfg.default_script,
            n,
            &cfg.fallback_text,
        ),
        current: None,
        spoken: false,
        final_ms: 0,
        fail_after_ms: cfg.fail_after_audio_ms,
        fail_for_good: cfg.fail_for_good,
    };
    while let Some(message) = conn.ws.next().await {
        let ok = match message {
            Ok(Message::Binary(audio)) if audio.is_empty() => {
                conn.got_audio(0);
                finish(conn, &mut session).await;
                false
            }
            Ok(Message::Binary(audio)) => {
                conn.got_audio(audio.len());
                audio_frame(conn, &mut session, &audio).await
            }
            Ok(Message::Text(t)) => {
                let t = t.as_str().to_owned();
                conn.got_text(&t);
                control(conn, &mut session, &t).await
            }
            Ok(Message::Close(_)) | Err(_) => false,
            Ok(_) => true,
        };
        if !ok {
            return;
        }
    }
}

/// A text message after the start request; `false` when the session is over.
async fn control(conn: &mut Conn, session: &mut Session, text: &str) -> bool {
    if text.is_empty() {
        finish(conn, session).await;
        return false;
    }
    let kind = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
    match kind.as_deref() {
        Some("keepalive") => true,
        Some("finalize") => {
            let mut tokens = Vec::new();
            if let Some(SegmentEvent::Ended { start_s, end_s }) = session.seg.force_end() {
                tokens = final_tokens(session, start_s, end_s);
            }
            tokens.push(marker("<fin>", session.final_ms));
            send_tokens(conn, session, tokens).await
        }
        _ => {
            fail(conn, invalid("Invalid control message")).await;
            false
        }
    }
}

async fn audio_frame(conn: &mut Conn, session: &mut Session, audio: &[u8]) -> bool {
    for event in session.seg.push(audio) {
        let tokens = match event {
            SegmentEvent::Started { .. } => {
                session.current = Some(session.script.next_text());
                continue;
            }
            SegmentEvent::Interim { speech_ms } => {
                let Some(text) = session.current.clone() else {
                    continue;
                };
                let shown = first_words(&text, interim_word_count(&text, speech_ms));
                let end = session.seg.now_s();
                let start = (end - speech_ms as f64 / 1000.0).max(0.0);
                tokens_for(session, &shown, start, end, false)
            }
            SegmentEvent::Ended { start_s, end_s } => {
                let mut t = final_tokens(session, start_s, end_s);
                if session.s.endpoint_detection {
                    t.push(marker("<end>", session.final_ms));
                }
                t
            }
        };
        if !send_tokens(conn, session, tokens).await {
            return false;
        }
    }
    if session
        .fail_after_ms
        .is_some_and(|ms| session.seg.now_s() * 1000.0 >= ms as f64)
    {
        if session.fail_for_good {
            let message = "Organization balance exhausted. Please add funds.";
            fail(conn, (402, "payment_required", message.to_owned())).await;
            return false;
        }
        let message = "Cannot continue request (code 1). Please restart the request.";
        fail(conn, (503, "service_unavailable", message.to_owned())).await;
        return false;
    }
    true
}

/// Final tokens of the open segment's text over `[start_s, end_s]`.
fn final_tokens(session: &mut Session, start_s: f64, end_s: f64) -> Vec<Value> {
    let text = session.current.take().unwrap_or_default();
    let tokens = tokens_for(session, &text, start_s, end_s, true);
    session.spoken |= !tokens.is_empty();
    session.final_ms = (end_s * 1000.0) as u64;
    tokens
}

fn tokens_for(
    session: &Session,
    text: &str,
    start_s: f64,
    end_s: f64,
    is_final: bool,
) -> Vec<Value> {
    word_times(text, start_s, end_s)
        .into_iter()
        .enumerate()
        .map(|(i, (word, ws, we))| {
            let lead = if i > 0 || session.spoken { " " } else { "" };
            let mut t = json!({
                "text": format!("{lead}{word}"),
                "start_ms": (ws * 1000.0) as u64,
                "end_ms": (we * 1000.0) as u64,
                "confidence": 0.97,
                "is_final": is_final,
            });
            if session.s.diarization {
                t["speaker"] = json!("1");
            }
            if let Some(lang) = &session.s.language {
                t["language"] = json!(lang);
            }
            t
        })
        .collect()
}

fn marker(text: &str, at_ms: u64) -> Value {
    json!({"text": text, "start_ms": at_ms, "end_ms": at_ms, "confidence": 1.0, "is_final": true})
}

async fn send_tokens(conn: &mut Conn, session: &Session, tokens: Vec<Value>) -> bool {
    let total = (session.seg.now_s() * 1000.0) as u64;
    conn.send_json(json!({
        "tokens": tokens,
        "final_audio_proc_ms": session.final_ms,
        "total_audio_proc_ms": total,
    }))
    .await
}

/// End of stream: final tokens for what is left, the `finished` response, a normal close.
async fn finish(conn: &mut Conn, session: &mut Session) {
    if let Some(SegmentEvent::Ended { start_s, end_s }) = session.seg.force_end() {
        let tokens = final_tokens(session, start_s, end_s);
        if !send_tokens(conn, session, tokens).await {
            return;
        }
    }
    let total = (session.seg.now_s() * 1000.0) as u64;
    let finished = json!({
        "tokens": [],
        "final_audio_proc_ms": total,
        "total_audio_proc_ms": total,
        "finished": true,
    });
    if conn.send_json(finished).await {
        conn.close(1000, "").await;
    }
}
