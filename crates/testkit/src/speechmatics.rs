//! A fake of the Speechmatics realtime transcription API (`wss://eu2.rt.speechmatics.com/v2`)
//! on 127.0.0.1, as strict as the documented service: `Authorization: Bearer` checked at the
//! handshake (HTTP 401), a `StartRecognition` that must come first and is schema-checked,
//! binary `AddAudio` acknowledged with `AudioAdded`, transcripts in the documented result
//! shape, and mistakes answered with an `Error {type, reason}` message followed by the
//! documented close code.
//!
//! Written from Speechmatics' documentation, independently of any adapter:
//! - <https://docs.speechmatics.com/api-ref/realtime-transcription-websocket> and
//!   <https://docs.speechmatics.com/rt-api-ref>: handshake (`Authorization: Bearer`, `?jwt=`,
//!   400/401/405), message flow, `StartRecognition`, `RecognitionStarted`, `AddAudio`,
//!   `AudioAdded {seq_no}`, `AddPartialTranscript`, `AddTranscript`, `EndOfStream
//!   {last_seq_no}`, `EndOfTranscript`, `Error`/`Warning`/`Info {type, reason}`, the close codes
//!   (1003 protocol errors, 1011 internal_error, 4001 not_authorised, 4002 insufficient_funds,
//!   4003 not_allowed, 4004 invalid_model, 4005 quota_exceeded, 4006 timelimit_exceeded,
//!   4013 job_error; the close reason carries the type).
//! - <https://docs.speechmatics.com/speech-to-text/realtime/input.md>: `audio_format` `raw`
//!   with `encoding` `pcm_f32le` | `pcm_s16le` | `mulaw` and `sample_rate`, or `file`.
//! - <https://docs.speechmatics.com/speech-to-text/realtime/turn-detection> and
//!   <https://docs.speechmatics.com/features/end-of-turn>:
//!   `conversation_config.end_of_utterance_silence_trigger` (0–2 s, 0 = off), the final
//!   `AddTranscript` followed by `EndOfUtterance`, `ForceEndOfUtterance`.
//! - <https://legacy.docs.speechmatics.com/en/real-time-saas/user-guide/>: final vs partial
//!   transcripts.
//!
//! Fake limitations (said in `docs/providers/speechmatics.md`): `audio_format.type = file` is
//! refused (the fake cannot decode containers); `max_delay` only has its documented minimum
//! (0.7 s) checked; finals are sent when the energy segmenter ends a segment, not on the
//! `max_delay` clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stt_common::{
    Conn, Encoding, Records, ScriptQueue, SegmentEvent, Segmenter, SegmenterConfig,
    SttConnectionRecord, Verdict, first_words, hex_id, interim_word_count, round3, script_for,
    word_times,
};
use crate::tcp_server::TcpFakeServer;

/// The websocket path (`/v2`, also `/v2/` and the legacy `/v2/<language>`).
pub const PATH: &str = "/v2";

/// Raw encodings the service accepts.
pub const ENCODINGS: [&str; 3] = ["pcm_f32le", "pcm_s16le", "mulaw"];

/// Keys `transcription_config` may carry (anything else is `invalid_config`).
const CONFIG_KEYS: [&str; 17] = [
    "language",
    "operating_point",
    "max_delay",
    "max_delay_mode",
    "enable_partials",
    "diarization",
    "speaker_diarization_config",
    "additional_vocab",
    "conversation_config",
    "punctuation_overrides",
    "enable_entities",
    "output_locale",
    "transcript_filtering_config",
    "audio_filtering_config",
    "domain",
    "channel_diarization_labels",
    "speaker_change_sensitivity",
];

/// What the fake does. `Default` is a well-behaved service with key `test-speechmatics-key`.
#[derive(Debug, Clone)]
pub struct SpeechmaticsFakeConfig {
    /// The key expected in `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Temporary keys accepted in the `jwt` query parameter.
    pub accepted_jwts: Vec<String>,
    /// Language codes `transcription_config.language` may name (others are `invalid_model`).
    pub languages: Vec<String>,
    /// Utterance texts for connections without a script of their own.
    pub default_script: Vec<String>,
    /// Scripts by session order.
    pub connection_scripts: Vec<Vec<String>>,
    /// Text used once a script has run out.
    pub fallback_text: String,
    /// Energy segmentation of the received audio.
    pub segmenter: SegmenterConfig,
    /// Silence (ms) that ends a segment and triggers its final `AddTranscript` (capped by the
    /// end-of-utterance trigger when that is shorter).
    pub segment_gap_ms: u64,
    /// Failure knob: once this much audio (ms of stream time) has arrived, send `Error`
    /// `job_error` and close 4013, as the service does when a session fails (retryable).
    pub fail_after_audio_ms: Option<u64>,
    /// With `fail_after_audio_ms`: send `insufficient_funds` (close 4002) instead, after which
    /// no new session can succeed, so the session ends for good mid-call.
    pub fail_for_good: bool,
}

impl Default for SpeechmaticsFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-speechmatics-key".into(),
            accepted_jwts: Vec::new(),
            languages: [
                "en", "es", "fr", "de", "it", "pt", "nl", "ja", "cmn", "ar", "hi", "ko", "ru",
            ]
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
    config: SpeechmaticsFakeConfig,
    records: Arc<Records>,
    sessions: AtomicUsize,
}

/// A running fake Speechmatics realtime server.
pub struct SpeechmaticsFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl SpeechmaticsFake {
    /// Bind 127.0.0.1:0 and serve until [`SpeechmaticsFake::shutdown`] or drop.
    pub async fn start(config: SpeechmaticsFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            records: Arc::new(Records::default()),
            sessions: AtomicUsize::new(0),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
    }

    /// `ws://127.0.0.1:<port>/v2`: the endpoint URL.
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

/// The documented close code for an error `type`.
pub fn close_code(error_type: &str) -> u16 {
    match error_type {
        "not_authorised" => 4001,
        "insufficient_funds" => 4002,
        "not_allowed" => 4003,
        "invalid_model" => 4004,
        "quota_exceeded" => 4005,
        "timelimit_exceeded" => 4006,
        "job_error" => 4013,
        "internal_error" => 1011,
        _ => 1003,
    }
}

/// An error to report: (type, reason).
type Failure = (&'static str, String);

fn bad(kind: &'static str, reason: impl Into<String>) -> Failure {
    (kind, reason.into())
}

/// The session settings that change the fake's behaviour.
#[derive(Debug, Clone)]
struct Settings {
    language: String,
    enable_partials: bool,
    eou_trigger_s: f64,
    diarization: bool,
}

fn audio_format(v: Option<&Value>) -> Result<(Encoding, u32), Failure> {
    let Some(fmt) = v.and_then(Value::as_object) else {
        return Err(bad("invalid_audio_type", "audio_format is required"));
    };
    match fmt.get("type").and_then(Value::as_str) {
        Some("raw") => {}
        Some("file") => {
            return Err(bad(
                "invalid_audio_type",
                "audio_format type 'file' is not supported by this fake",
            ));
        }
        _ => {
            return Err(bad(
                "invalid_audio_type",
                "audio_format.type must be 'raw' or 'file'",
            ));
        }
    }
    let encoding = match fmt.get("encoding").and_then(Value::as_str) {
        Some("mulaw") => Encoding::Mulaw,
        Some("pcm_s16le") => Encoding::PcmS16le,
        Some("pcm_f32le") => Encoding::PcmF32le,
        other => {
            return Err(bad(
                "invalid_audio_type",
                format!("Unsupported encoding {other:?}; expected one of {ENCODINGS:?}"),
            ));
        }
    };
    let rate = fmt
        .get("sample_rate")
        .and_then(Value::as_u64)
        .filter(|r| (8000..=48000).contains(r))
        .ok_or_else(|| {
            bad(
                "invalid_audio_type",
                "audio_format.sample_rate must be an integer in Hz (8000 to 48000)",
            )
        })?;
    Ok((encoding, rate as u32))
}

fn transcription_config(v: Option<&Value>, languages: &[String]) -> Result<Settings, Failure> {
    let Some(tc) = v.and_then(Value::as_object) else {
        return Err(bad("invalid_config", "transcription_config is required"));
    };
    if let Some(k) = tc.keys().find(|k| !CONFIG_KEYS.contains(&k.as_str())) {
        return Err(bad(
            "invalid_config",
            format!("Unknown transcription_config field '{k}'"),
        ));
    }
    let Some(language) = tc.get("language").and_then(Value::as_str) else {
        return Err(bad(
            "invalid_config",
            "transcription_config.language is required",
        ));
    };
    if !languages.iter().any(|l| l == language) {
        return Err(bad(
            "invalid_model",
            format!("lang pack [{language}] is not supported"),
        ));
    }
    let one_of = |key: &str, allowed: &[&str]| -> Result<(), Failure> {
        match tc.get(key) {
            None => Ok(()),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(()),
            Some(other) => Err(bad(
                "invalid_config",
                format!("{key} must be one of {allowed:?}, got {other}"),
            )),
        }
    };
    one_of("operating_point", &["standard", "enhanced"])?;
    one_of("max_delay_mode", &["flexible", "fixed"])?;
    one_of("diarization", &["none", "speaker", "channel"])?;
    if let Some(d) = tc.get("max_delay")
        && !d.as_f64().is_some_and(|d| d >= 0.7)
    {
        return Err(bad(
            "invalid_config",
            format!("max_delay must be a number of at least 0.7 seconds, got {d}"),
        ));
    }
    for key in ["enable_partials", "enable_entities"] {
        if tc.get(key).is_some_and(|b| !b.is_boolean()) {
            return Err(bad("invalid_config", format!("{key} must be a boolean")));
        }
    }
    if let Some(max) = tc
        .get("speaker_diarization_config")
        .and_then(|s| s.get("max_speakers"))
        && !max.as_u64().is_some_and(|m| (2..=100).contains(&m))
    {
        return Err(bad(
            "invalid_config",
            "speaker_diarization_config.max_speakers must be an integer from 2 to 100",
        ));
    }
    if let Some(vocab) = tc.get("additional_vocab") {
        let ok = vocab.as_array().is_some_and(|items| {
            items.iter().all(|item| {
                item.is_string()
                    || item
                        .get("content")
                        .is_some_and(|c| c.as_str().is_some_and(|c| !c.is_empty()))
            })
        });
        if !ok {
            return Err(bad(
                "invalid_config",
                "additional_vocab must be a list of strings or {content, sounds_like} objects",
            ));
        }
    }
    let eou_trigger_s = match tc
        .get("conversation_config")
        .and_then(|c| c.get("end_of_utterance_silence_trigger"))
    {
        None => 0.0,
        Some(t) => t
            .as_f64()
            .filter(|t| (0.0..=2.0).contains(t))
            .ok_or_else(|| {
                bad(
                    "invalid_config",
                    "end_of_utterance_silence_trigger must be between 0 and 2 seconds",
                )
            })?,
    };
    if let Some(rd) = tc
        .get("transcript_filtering_config")
        .and_then(|c| c.get("remove_disfluencies"))
        && !rd.is_boolean()
    {
        return Err(bad(
            "invalid_config",
            "remove_disfluencies must be a boolean",
        ));
    }
    Ok(Settings {
        language: language.to_owned(),
        enable_partials: tc
            .get("enable_partials")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        eou_trigger_s,
        diarization: tc.get("diarization").and_then(Value::as_str) == Some("speaker"),
    })
}

async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let cfg = shared.config.clone();
    let Some((ws, hs)) = crate::stt_common::accept(stream, &shared.records, move |hs| {
        let by_header = hs
            .header("authorization")
            .is_some_and(|a| a == format!("Bearer {}", cfg.api_key));
        let by_jwt = hs
            .param("jwt")
            .is_some_and(|j| cfg.accepted_jwts.iter().any(|a| a == j));
        if hs.path != PATH && !hs.path.starts_with("/v2/") {
            Verdict::Refuse {
                status: 404,
                body: "Not Found".into(),
                content_type: "text/plain",
            }
        } else if !by_header && !by_jwt {
            Verdict::Refuse {
                status: 401,
                body: "Unauthorized".into(),
                content_type: "text/plain",
            }
        } else {
            Verdict::Accept { subprotocol: None }
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
    serve(&mut conn, &shared).await;
    shared.records.update(hs.index, |c| c.ended = true);
}

async fn fail(conn: &mut Conn, (kind, reason): Failure) {
    conn.send_json(json!({"message": "Error", "type": kind, "reason": reason}))
        .await;
    conn.close(close_code(kind), kind).await;
}

struct Session {
    settings: Settings,
    seg: Segmenter,
    script: ScriptQueue,
    current: Option<String>,
    seq_no: u64,
    /// End (stream s) of the last final whose `EndOfUtterance` is still due.
    eou_due: Option<f64>,
    fail_after_ms: Option<u64>,
    fail_for_good: bool,
}

/// Reads one message; `None` when the socket is gone.
enum Incoming {
    Text(String),
    Binary(Vec<u8>),
}

async fn next(conn: &mut Conn) -> Option<Incoming> {
    loop {
        match conn.ws.next().await? {
            Ok(Message::Text(t)) => {
                let t = t.as_str().to_owned();
                conn.got_text(&t);
                return Some(Incoming::Text(t));
            }
            Ok(Message::Binary(b)) => {
                conn.got_audio(b.len());
                return Some(Incoming::Binary(b.to_vec()));
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

fn parse(text: &str) -> Result<(String, Value), Failure> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| bad("invalid_message", format!("Invalid JSON: {e}")))?;
    let name = v
        .get("message")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("invalid_message", "Missing 'message' field"))?
        .to_owned();
    Ok((name, v))
}

async fn serve(conn: &mut Conn, shared: &Shared) {
    let cfg = &shared.config;
    // The first message must be StartRecognition.
    let start = match next(conn).await {
        None => return,
        Some(Incoming::Binary(_)) => {
            fail(
                conn,
                bad(
                    "protocol_error",
                    "AddAudio received before StartRecognition",
                ),
            )
            .await;
            return;
        }
        Some(Incoming::Text(t)) => match parse(&t) {
            Err(f) => return fail(conn, f).await,
            Ok((name, v)) if name == "StartRecognition" => v,
            Ok((name, _)) => {
                let reason = format!("{name} received before StartRecognition");
                return fail(conn, bad("protocol_error", reason)).await;
            }
        },
    };
    shared
        .records
        .update(conn.index, |c| c.config = Some(start.clone()));
    let started = audio_format(start.get("audio_format")).and_then(|fmt| {
        transcription_config(start.get("transcription_config"), &cfg.languages).map(|s| (fmt, s))
    });
    let ((encoding, rate), settings) = match started {
        Ok(x) => x,
        Err(f) => return fail(conn, f).await,
    };
    let n = shared.sessions.fetch_add(1, Ordering::SeqCst);
    let gap = if settings.eou_trigger_s > 0.0 {
        cfg.segment_gap_ms
            .min((settings.eou_trigger_s * 1000.0) as u64)
    } else {
        cfg.segment_gap_ms
    };
    let recognition_started = json!({
        "message": "RecognitionStarted",
        "id": hex_id(),
        "language_pack_info": {
            "adapted": false,
            "itn": true,
            "language_description": settings.language,
            "word_delimiter": " ",
            "writing_direction": "left-to-right"
        }
    });
    if !conn.send_json(recognition_started).await {
        return;
    }
    let mut s = Session {
        seg: Segmenter::new(cfg.segmenter, encoding, rate, gap),
        settings,
        script: script_for(
            &cfg.connection_scripts,
            &cfg.default_script,
            n,
            &cfg.fallback_text,
        ),
        current: None,
        seq_no: 0,
        eou_due: None,
        fail_after_ms: cfg.fail_after_audio_ms,
        fail_for_good: cfg.fail_for_good,
    };
    while let Some(incoming) = next(conn).await {
        let ok = match incoming {
            Incoming::Binary(audio) => add_audio(conn, &mut s, &audio).await,
            Incoming::Text(t) => match parse(&t) {
                Err(f) => {
                    fail(conn, f).await;
                    false
                }
                Ok((name, v)) => match name.as_str() {
                    "EndOfStream" => {
                        end_of_stream(conn, &mut s, &v).await;
                        false
                    }
                    "ForceEndOfUtterance" => force_end(conn, &mut s).await,
                    "SetRecognitionConfig" => {
                        match transcription_config(v.get("transcription_config"), &cfg.languages) {
                            Ok(new) => {
                                s.settings.enable_partials = new.enable_partials;
                                s.settings.eou_trigger_s = new.eou_trigger_s;
                                true
                            }
                            Err(f) => {
                                fail(conn, f).await;
                                false
                            }
                        }
                    }
                    "StartRecognition" => {
                        fail(conn, bad("protocol_error", "StartRecognition sent twice")).await;
                        false
                    }
                    other => {
                        let reason = format!("Unknown message '{other}'");
                        fail(conn, bad("invalid_message", reason)).await;
                        false
                    }
                },
            },
        };
        if !ok {
            return;
        }
    }
}

async fn add_audio(conn: &mut Conn, s: &mut Session, audio: &[u8]) -> bool {
    s.seq_no += 1;
    if !conn
        .send_json(json!({"message": "AudioAdded", "seq_no": s.seq_no}))
        .await
    {
        return false;
    }
    for event in s.seg.push(audio) {
        if !on_event(conn, s, event).await {
            return false;
        }
    }
    if s.fail_after_ms
        .is_some_and(|ms| s.seg.now_s() * 1000.0 >= ms as f64)
    {
        let error = if s.fail_for_good {
            bad("insufficient_funds", "No funds left (failure knob)")
        } else {
            bad("job_error", "Session failed (failure knob)")
        };
        fail(conn, error).await;
        return false;
    }
    if let Some(end_s) = s.eou_due
        && s.seg.silence_ms() as f64 >= s.settings.eou_trigger_s * 1000.0
    {
        s.eou_due = None;
        return send_eou(conn, end_s).await;
    }
    true
}

async fn on_event(conn: &mut Conn, s: &mut Session, event: SegmentEvent) -> bool {
    match event {
        SegmentEvent::Started { .. } => {
            s.current = Some(s.script.next_text());
            s.eou_due = None;
            true
        }
        SegmentEvent::Interim { speech_ms } => {
            if !s.settings.enable_partials {
                return true;
            }
            let Some(text) = s.current.clone() else {
                return true;
            };
            let shown = first_words(&text, interim_word_count(&text, speech_ms));
            let end = s.seg.now_s();
            let start = (end - speech_ms as f64 / 1000.0).max(0.0);
            conn.send_json(transcript(
                "AddPartialTranscript",
                &shown,
                start,
                end,
                &s.settings,
            ))
            .await
        }
        SegmentEvent::Ended { start_s, end_s } => {
            let text = s.current.take().unwrap_or_default();
            if !conn
                .send_json(transcript(
                    "AddTranscript",
                    &text,
                    start_s,
                    end_s,
                    &s.settings,
                ))
                .await
            {
                return false;
            }
            if s.settings.eou_trigger_s > 0.0 {
                s.eou_due = Some(end_s);
            }
            true
        }
    }
}

async fn send_eou(conn: &mut Conn, end_s: f64) -> bool {
    conn.send_json(json!({
        "message": "EndOfUtterance",
        "format": "2.9",
        "metadata": {"start_time": round3(end_s), "end_time": round3(end_s)}
    }))
    .await
}

async fn force_end(conn: &mut Conn, s: &mut Session) -> bool {
    let end = s.seg.force_end();
    if let Some(event) = end
        && !on_event(conn, s, event).await
    {
        return false;
    }
    let end_s = s.eou_due.take().unwrap_or_else(|| s.seg.now_s());
    send_eou(conn, end_s).await
}

async fn end_of_stream(conn: &mut Conn, s: &mut Session, v: &Value) {
    if !v.get("last_seq_no").is_some_and(Value::is_u64) {
        fail(
            conn,
            bad(
                "invalid_message",
                "EndOfStream needs an integer last_seq_no",
            ),
        )
        .await;
        return;
    }
    if let Some(event) = s.seg.force_end()
        && !on_event(conn, s, event).await
    {
        return;
    }
    if conn.send_json(json!({"message": "EndOfTranscript"})).await {
        conn.close(1000, "").await;
    }
}

/// An `AddTranscript`/`AddPartialTranscript` for `text` spoken over `[start, end]`: one
/// `word` result per word, trailing punctuation as its own `punctuation` result.
fn transcript(kind: &str, text: &str, start: f64, end: f64, settings: &Settings) -> Value {
    let mut results = Vec::new();
    for (word, ws, we) in word_times(text, start, end) {
        let bare: String = word
            .trim_end_matches(['.', ',', '?', '!', ';', ':'])
            .to_owned();
        let punct = &word[bare.len()..];
        let mut alt = json!({"content": bare, "confidence": 0.98, "language": settings.language});
        if settings.diarization {
            alt["speaker"] = json!("S1");
        }
        results
            .push(json!({"type": "word", "start_time": ws, "end_time": we, "alternatives": [alt]}));
        if !punct.is_empty() {
            let mut p = json!({"content": punct, "confidence": 1.0, "language": settings.language});
            if settings.diarization {
                p["speaker"] = json!("S1");
            }
            results.push(json!({
                "type": "punctuation",
                "start_time": we,
                "end_time": we,
                "attaches_to": "previous",
                "is_eos": matches!(punct, "." | "?" | "!"),
                "alternatives": [p],
            }));
        }
    }
    json!({
        "message": kind,
        "format": "2.9",
        "metadata": {"start_time": round3(start), "end_time": round3(end), "transcript": text},
        "results": results,
    })
}
