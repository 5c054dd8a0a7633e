//! A fake of ElevenLabs Scribe realtime speech-to-text
//! (`wss://api.elevenlabs.io/v1/speech-to-text/realtime`) on 127.0.0.1, as strict as the
//! documented service: the key in `xi-api-key`, the session configured by query parameters
//! whose values are range-checked, JSON `input_audio_chunk` messages with base64 audio, and
//! mistakes answered with the documented error message types.
//!
//! Written from ElevenLabs' documentation, independently of any adapter:
//! - <https://elevenlabs.io/docs/api-reference/speech-to-text/v-1-speech-to-text-realtime>
//!   (AsyncAPI page): path, `xi-api-key` header or `token` query, event flow.
//! - <https://elevenlabs.io/docs/eleven-api/guides/how-to/speech-to-text/realtime/server-side-streaming>
//!   and the official skills repository pages
//!   <https://raw.githubusercontent.com/elevenlabs/skills/main/speech-to-text/references/realtime-events.md>,
//!   `realtime-commit-strategies.md`: `input_audio_chunk` {`audio_base_64`, `commit`,
//!   `sample_rate`, `previous_text`}, `commit`, `session_started`, `partial_transcript`,
//!   `committed_transcript`, `committed_transcript_with_timestamps`, manual vs VAD commits.
//! - Official SDK `elevenlabs/elevenlabs-python` (`realtime/connection.py`, PR 695) and
//!   `@elevenlabs/elevenlabs-js` realtime docs: the query parameters and their ranges
//!   (`vad_silence_threshold_secs` 0.3–3.0, `vad_threshold` 0.1–0.9,
//!   `min_speech_duration_ms`/`min_silence_duration_ms` 50–2000), the `audio_format` values
//!   (`pcm_8000` … `pcm_48000`, `ulaw_8000`), and the error message types (`error`,
//!   `auth_error`, `quota_exceeded`, `commit_throttled`, `transcriber_error`, `input_error`,
//!   `rate_limited`, `queue_overflow`, `resource_exhausted`, `session_time_limit_exceeded`,
//!   `chunk_size_exceeded`, `insufficient_audio_activity`, `unaccepted_terms_error`).
//!
//! Not documented, so the fake's own choice: errors are `{"message_type": <type>, "error":
//! <text>}` followed by a close with code 1008 (policy violation), reason = the type.
//!
//! What is "said" comes from a script (see [`crate::stt_common`]): the received audio is
//! segmented by energy; each speech segment takes the next script line.
//! `docs/providers/elevenlabs-stt.md` describes the protocol as this fake implements it.

use std::sync::Arc;

use base64::Engine;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stt_common::{
    Conn, Encoding, Records, ScriptQueue, SegmentEvent, Segmenter, SegmenterConfig,
    SttConnectionRecord, Verdict, first_words, hex_id, interim_word_count, script_for, word_times,
};
use crate::tcp_server::TcpFakeServer;

/// The websocket path.
pub const PATH: &str = "/v1/speech-to-text/realtime";

/// Documented `audio_format` values with their sample rates (Hz).
pub const AUDIO_FORMATS: [(&str, u32); 7] = [
    ("pcm_8000", 8000),
    ("pcm_16000", 16000),
    ("pcm_22050", 22050),
    ("pcm_24000", 24000),
    ("pcm_44100", 44100),
    ("pcm_48000", 48000),
    ("ulaw_8000", 8000),
];

/// Close code the fake sends after an error message (not documented by ElevenLabs).
pub const ERROR_CLOSE_CODE: u16 = 1008;

/// What the fake does. `Default` is a well-behaved service with key `test-elevenlabs-key`.
#[derive(Debug, Clone)]
pub struct ElevenLabsSttFakeConfig {
    /// The key expected in `xi-api-key`.
    pub api_key: String,
    /// Single-use tokens accepted in the `token` query parameter instead of the header.
    pub accepted_tokens: Vec<String>,
    /// Models `model_id` may name.
    pub models: Vec<String>,
    /// Utterance texts for connections without a script of their own.
    pub default_script: Vec<String>,
    /// Scripts by connection order (the n-th accepted session takes the n-th entry).
    pub connection_scripts: Vec<Vec<String>>,
    /// Text used once a script has run out.
    pub fallback_text: String,
    /// Energy segmentation of the received audio.
    pub segmenter: SegmenterConfig,
    /// Manual commit strategy: silence (ms) that ends a speech segment inside the uncommitted
    /// buffer (the text waits there for the client's commit).
    pub manual_segment_gap_ms: u64,
    /// Failure knob: once this much audio (ms of stream time) has arrived, answer with a
    /// `transcriber_error` and close, as the service does when its transcriber fails.
    pub fail_after_audio_ms: Option<u64>,
    /// With `fail_after_audio_ms`: answer `quota_exceeded` instead, an error after which no
    /// new session can succeed, so the session ends for good mid-call.
    pub fail_for_good: bool,
}

impl Default for ElevenLabsSttFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-elevenlabs-key".into(),
            accepted_tokens: Vec::new(),
            models: vec!["scribe_v2_realtime".into()],
            default_script: Vec::new(),
            connection_scripts: Vec::new(),
            fallback_text: "[unintelligible]".into(),
            segmenter: SegmenterConfig::default(),
            manual_segment_gap_ms: 300,
            fail_after_audio_ms: None,
            fail_for_good: false,
        }
    }
}

struct Shared {
    config: ElevenLabsSttFakeConfig,
    records: Arc<Records>,
    sessions: std::sync::atomic::AtomicUsize,
}

/// A running fake ElevenLabs Scribe realtime server.
pub struct ElevenLabsSttFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl ElevenLabsSttFake {
    /// Bind 127.0.0.1:0 and serve until [`ElevenLabsSttFake::shutdown`] or drop.
    pub async fn start(config: ElevenLabsSttFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            records: Arc::new(Records::default()),
            sessions: std::sync::atomic::AtomicUsize::new(0),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
    }

    /// `ws://127.0.0.1:<port>`: the base the adapter puts in front of [`PATH`].
    pub fn ws_base_url(&self) -> String {
        format!("ws://{}", self.server.addr())
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

/// The session as configured by the query.
#[derive(Debug, Clone)]
struct Params {
    model_id: String,
    audio_format: &'static str,
    sample_rate: u32,
    language_code: Option<String>,
    commit_vad: bool,
    vad_silence_threshold_secs: f64,
    vad_threshold: f64,
    min_speech_duration_ms: u64,
    min_silence_duration_ms: u64,
    include_timestamps: bool,
    include_language_detection: bool,
}

/// Why a session could not start: (message_type, error text).
type Refusal = (&'static str, String);

fn parse_bool(h: &[(String, String)], key: &str) -> Result<bool, Refusal> {
    match get(h, key) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(("input_error", format!("{key} must be a boolean, got '{v}'"))),
    }
}

fn get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn parse_range(
    q: &[(String, String)],
    key: &str,
    default: f64,
    min_exclusive: f64,
    max: f64,
) -> Result<f64, Refusal> {
    let Some(raw) = get(q, key) else {
        return Ok(default);
    };
    match raw.parse::<f64>() {
        Ok(v) if v.is_finite() && v > min_exclusive && v <= max => Ok(v),
        _ => Err((
            "input_error",
            format!(
                "{key} must be a number greater than {min_exclusive} and at most {max}, got '{raw}'"
            ),
        )),
    }
}

fn params(q: &[(String, String)], models: &[String]) -> Result<Params, Refusal> {
    let model_id = match get(q, "model_id") {
        None | Some("") => return Err(("input_error", "model_id is required".into())),
        Some(m) if !models.iter().any(|k| k == m) => {
            return Err(("input_error", format!("Invalid model_id '{m}'")));
        }
        Some(m) => m.to_owned(),
    };
    let format = get(q, "audio_format").unwrap_or("pcm_16000");
    let Some(&(audio_format, sample_rate)) = AUDIO_FORMATS.iter().find(|(f, _)| *f == format)
    else {
        return Err((
            "input_error",
            format!("Unsupported audio_format '{format}'"),
        ));
    };
    let commit_vad = match get(q, "commit_strategy").unwrap_or("manual") {
        "manual" => false,
        "vad" => true,
        other => {
            return Err((
                "input_error",
                format!("commit_strategy must be 'manual' or 'vad', got '{other}'"),
            ));
        }
    };
    Ok(Params {
        model_id,
        audio_format,
        sample_rate,
        language_code: get(q, "language_code").map(str::to_owned),
        commit_vad,
        vad_silence_threshold_secs: parse_range(q, "vad_silence_threshold_secs", 1.5, 0.3, 3.0)?,
        vad_threshold: parse_range(q, "vad_threshold", 0.4, 0.1 - f64::EPSILON, 0.9)?,
        min_speech_duration_ms: parse_range(q, "min_speech_duration_ms", 100.0, 50.0, 2000.0)?
            as u64,
        min_silence_duration_ms: parse_range(q, "min_silence_duration_ms", 100.0, 50.0, 2000.0)?
            as u64,
        include_timestamps: parse_bool(q, "include_timestamps")?,
        include_language_detection: parse_bool(q, "include_language_detection")?,
    })
}

async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let Some((ws, hs)) = crate::stt_common::accept(stream, &shared.records, |hs| {
        if hs.path == PATH {
            Verdict::Accept { subprotocol: None }
        } else {
            Verdict::Refuse {
                status: 404,
                body: r#"{"detail":"Not Found"}"#.into(),
                content_type: "application/json",
            }
        }
    })
    .await
    else {
        return;
    };
    let mut conn = Conn {
        ws,
        records: shared.records.clone(),
        index: hs.index,
    };
    let cfg = &shared.config;
    let authorised = match hs.header("xi-api-key") {
        Some(key) => key == cfg.api_key,
        None => hs
            .param("token")
            .is_some_and(|t| cfg.accepted_tokens.iter().any(|a| a == t)),
    };
    let outcome = if !authorised {
        let text = if hs.header("xi-api-key").is_some() || hs.param("token").is_some() {
            "Invalid API key"
        } else {
            "You must be authenticated to use this endpoint"
        };
        Err(("auth_error", text.to_owned()))
    } else {
        params(&hs.query, &cfg.models)
    };
    match outcome {
        Err((kind, text)) => fail(&mut conn, kind, &text).await,
        Ok(p) => {
            let n = shared
                .sessions
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let script = script_for(
                &cfg.connection_scripts,
                &cfg.default_script,
                n,
                &cfg.fallback_text,
            );
            serve(&mut conn, cfg, p, script).await;
        }
    }
    shared.records.update(hs.index, |c| c.ended = true);
}

async fn fail(conn: &mut Conn, kind: &str, text: &str) {
    conn.send_json(json!({"message_type": kind, "error": text}))
        .await;
    conn.close(ERROR_CLOSE_CODE, kind).await;
}

struct Session {
    p: Params,
    seg: Segmenter,
    script: ScriptQueue,
    /// Text of the open segment.
    current: Option<String>,
    /// Finished segments waiting for a commit (manual strategy): (text, start, end).
    uncommitted: Vec<(String, f64, f64)>,
    fail_after_ms: Option<u64>,
    fail_for_good: bool,
}

async fn serve(conn: &mut Conn, cfg: &ElevenLabsSttFakeConfig, p: Params, script: ScriptQueue) {
    let encoding = if p.audio_format == "ulaw_8000" {
        Encoding::Mulaw
    } else {
        Encoding::PcmS16le
    };
    let end_ms = if p.commit_vad {
        (p.vad_silence_threshold_secs * 1000.0) as u64
    } else {
        cfg.manual_segment_gap_ms
    };
    let mut seg_cfg = cfg.segmenter;
    seg_cfg.min_speech_ms = seg_cfg
        .min_speech_ms
        .max(p.min_speech_duration_ms.min(2000));
    let mut config = json!({
        "sample_rate": p.sample_rate,
        "audio_format": p.audio_format,
        "model_id": p.model_id,
        "commit_strategy": if p.commit_vad { "vad" } else { "manual" },
        "vad_silence_threshold_secs": p.vad_silence_threshold_secs,
        "vad_threshold": p.vad_threshold,
        "min_speech_duration_ms": p.min_speech_duration_ms,
        "min_silence_duration_ms": p.min_silence_duration_ms,
        "include_timestamps": p.include_timestamps,
        "include_language_detection": p.include_language_detection,
    });
    if let Some(lang) = &p.language_code {
        config["language_code"] = json!(lang);
    }
    let started =
        json!({"message_type": "session_started", "session_id": hex_id(), "config": config});
    if !conn.send_json(started).await {
        return;
    }
    let mut s = Session {
        seg: Segmenter::new(seg_cfg, encoding, p.sample_rate, end_ms),
        p,
        script,
        current: None,
        uncommitted: Vec::new(),
        fail_after_ms: cfg.fail_after_audio_ms,
        fail_for_good: cfg.fail_for_good,
    };
    while let Some(message) = conn.ws.next().await {
        let text = match message {
            Ok(Message::Text(t)) => t.as_str().to_owned(),
            Ok(Message::Binary(_)) => {
                fail(
                    conn,
                    "input_error",
                    "Binary frames are not supported; send input_audio_chunk JSON messages",
                )
                .await;
                return;
            }
            Ok(Message::Close(_)) | Err(_) => return,
            Ok(_) => continue,
        };
        conn.got_text(&text);
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            fail(conn, "input_error", "Invalid JSON message").await;
            return;
        };
        match v.get("message_type").and_then(Value::as_str) {
            Some("input_audio_chunk") => {
                if !chunk(conn, &mut s, &v).await {
                    return;
                }
            }
            Some("commit") => {
                if !commit(conn, &mut s).await {
                    return;
                }
            }
            Some(other) => {
                let msg = format!("Unknown message_type '{other}'");
                fail(conn, "input_error", &msg).await;
                return;
            }
            None => {
                fail(conn, "input_error", "message_type is required").await;
                return;
            }
        }
    }
}

/// Handles one `input_audio_chunk`; `false` when the session is over.
async fn chunk(conn: &mut Conn, s: &mut Session, v: &Value) -> bool {
    let Some(b64) = v.get("audio_base_64").and_then(Value::as_str) else {
        fail(
            conn,
            "input_error",
            "audio_base_64 is required and must be a string",
        )
        .await;
        return false;
    };
    let Some(commit_flag) = v.get("commit").and_then(Value::as_bool) else {
        fail(
            conn,
            "input_error",
            "commit is required and must be a boolean",
        )
        .await;
        return false;
    };
    if let Some(rate) = v.get("sample_rate")
        && rate.as_u64() != Some(u64::from(s.p.sample_rate))
    {
        let msg = format!(
            "sample_rate {rate} does not match audio_format {}",
            s.p.audio_format
        );
        fail(conn, "input_error", &msg).await;
        return false;
    }
    if v.get("previous_text")
        .is_some_and(|t| !t.is_string() && !t.is_null())
    {
        fail(conn, "input_error", "previous_text must be a string").await;
        return false;
    }
    let Ok(audio) = base64::engine::general_purpose::STANDARD.decode(b64) else {
        fail(conn, "input_error", "audio_base_64 is not valid base64").await;
        return false;
    };
    conn.got_audio(audio.len());
    for event in s.seg.push(&audio) {
        if !on_event(conn, s, event).await {
            return false;
        }
    }
    if s.fail_after_ms
        .is_some_and(|ms| s.seg.now_s() * 1000.0 >= ms as f64)
    {
        let (kind, text) = if s.fail_for_good {
            ("quota_exceeded", "Quota exceeded (failure knob)")
        } else {
            ("transcriber_error", "Transcriber failed (failure knob)")
        };
        fail(conn, kind, text).await;
        return false;
    }
    if commit_flag {
        return commit(conn, s).await;
    }
    true
}

async fn on_event(conn: &mut Conn, s: &mut Session, event: SegmentEvent) -> bool {
    match event {
        SegmentEvent::Started { .. } => {
            s.current = Some(s.script.next_text());
            true
        }
        SegmentEvent::Interim { speech_ms } => {
            let Some(text) = &s.current else { return true };
            let shown = first_words(text, interim_word_count(text, speech_ms));
            let mut all: Vec<&str> = s.uncommitted.iter().map(|u| u.0.as_str()).collect();
            all.push(&shown);
            conn.send_json(json!({"message_type": "partial_transcript", "text": all.join(" ")}))
                .await
        }
        SegmentEvent::Ended { start_s, end_s } => {
            if let Some(text) = s.current.take() {
                s.uncommitted.push((text, start_s, end_s));
            }
            if s.p.commit_vad {
                return send_committed(conn, s).await;
            }
            true
        }
    }
}

async fn commit(conn: &mut Conn, s: &mut Session) -> bool {
    if let Some(event) = s.seg.force_end() {
        if !on_event(conn, s, event).await {
            return false;
        }
        if s.p.commit_vad {
            return true;
        }
    }
    send_committed(conn, s).await
}

/// Sends the uncommitted text as `committed_transcript` (and the timestamped variant).
async fn send_committed(conn: &mut Conn, s: &mut Session) -> bool {
    let parts = std::mem::take(&mut s.uncommitted);
    let text = parts
        .iter()
        .map(|p| p.0.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let language = s.p.language_code.clone().unwrap_or_else(|| "en".into());
    let mut committed = json!({"message_type": "committed_transcript", "text": text});
    if s.p.include_language_detection {
        committed["language_code"] = json!(language);
    }
    if !conn.send_json(committed).await {
        return false;
    }
    if !s.p.include_timestamps {
        return true;
    }
    let mut words = Vec::new();
    for (i, (line, start, end)) in parts.iter().enumerate() {
        if i > 0 {
            words.push(json!({"text": " ", "start": start, "end": start, "type": "spacing"}));
        }
        let timed = word_times(line, *start, *end);
        let count = timed.len();
        for (j, (w, ws, we)) in timed.into_iter().enumerate() {
            words
                .push(json!({"text": w, "start": ws, "end": we, "type": "word", "logprob": -0.05}));
            if j + 1 < count {
                words.push(json!({"text": " ", "start": we, "end": we, "type": "spacing"}));
            }
        }
    }
    let mut with_ts = json!({
        "message_type": "committed_transcript_with_timestamps",
        "text": text,
        "words": words,
    });
    if s.p.include_language_detection {
        with_ts["language_code"] = json!(language);
    }
    conn.send_json(with_ts).await
}
