//! A fake of the Telnyx streaming speech-to-text websocket
//! (`wss://api.telnyx.com/v2/speech-to-text/transcription`) on 127.0.0.1, as strict as the
//! documented service: `Authorization: Bearer <key>` checked at the upgrade, every setting a
//! query parameter validated after it (an unknown engine, format or a bad sample rate answered
//! with the documented `{"errors": [{code, title, detail, source: {parameter}}]}` frame, then a
//! close), raw binary audio decoded and segmented like the other strict STT fakes
//! (`stt_common.rs`), results `{transcript, is_final, speech_final, confidence}` and the
//! Deepgram engine's `{"transcript": "", "is_final": true, "utterance_end": true}`, and the
//! `Finalize`, `CloseStream` and `KeepAlive` controls.
//!
//! Written from Telnyx's documentation, independently of any adapter:
//! - <https://developers.telnyx.com/docs/voice/stt/websocket-streaming>: endpoint, Bearer
//!   upgrade, configuration fixed at connect, "invalid parameters return a JSON error and the
//!   connection closes".
//! - <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/parameters>:
//!   `transcription_engine` (default `Deepgram`), `model`, `input_format` (default `mp3`),
//!   `sample_rate`, `language`, `interim_results` (default `false`), `endpointing` (ms or
//!   `false`, default 100), `redact`, `keyterm`, `keywords`.
//! - <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/parameters/audio-formats>:
//!   the formats, `sample_rate` required for raw ones.
//! - <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/responses>: binary audio,
//!   the control messages (`Finalize` and `KeepAlive` Deepgram only, unknown text ignored), the
//!   result, utterance-end and error shapes; partials carry `confidence: 0.0`.
//! - <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/errors>: codes 40001–40007.
//! - <https://developers.telnyx.com/docs/voice/tts/websocket-streaming/errors>: the platform's
//!   websocket upgrade answers 401 for a missing or invalid key (the STT pages do not say; the
//!   fake answers the same).
//!
//! Fake limitations (said in `docs/providers/telnyx-stt.md`): only the raw formats `mulaw`,
//! `alaw` and `linear16` are decoded (other documented formats are refused with 40002); models
//! are not checked against the engine; the error frame's close code is not documented, the fake
//! uses 1008; `utterance_end` follows a final after [`TelnyxSttFakeConfig::utterance_end_ms`]
//! of silence.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::stt_common::{
    Conn, Encoding, Records, ScriptQueue, SegmentEvent, Segmenter, SegmenterConfig,
    SttConnectionRecord, Verdict, first_words, interim_word_count, script_for,
};
use crate::tcp_server::TcpFakeServer;

/// The websocket path.
pub const PATH: &str = "/v2/speech-to-text/transcription";

/// The documented `transcription_engine` values.
pub const ENGINES: [&str; 8] = [
    "Deepgram",
    "Telnyx",
    "Google",
    "Azure",
    "xAI",
    "AssemblyAI",
    "Speechmatics",
    "Soniox",
];

/// The documented `input_format` values (error 40001 lists them).
pub const FORMATS: [&str; 16] = [
    "mp3",
    "wav",
    "webm",
    "ogg",
    "flac",
    "ogg_opus",
    "webm_opus",
    "linear16",
    "linear32",
    "mulaw",
    "alaw",
    "opus",
    "amr_nb",
    "amr_wb",
    "g729",
    "speex",
];

/// Close code after an error frame (undocumented; policy violation).
pub const ERROR_CLOSE_CODE: u16 = 1008;

/// What the fake does. `Default` is a well-behaved service with key `test-telnyx-key`.
#[derive(Debug, Clone)]
pub struct TelnyxSttFakeConfig {
    /// The key expected in `Authorization: Bearer <key>`.
    pub api_key: String,
    /// Utterance texts for connections without a script of their own.
    pub default_script: Vec<String>,
    /// Scripts by session order.
    pub connection_scripts: Vec<Vec<String>>,
    /// Text used once a script has run out.
    pub fallback_text: String,
    /// Energy segmentation of the received audio.
    pub segmenter: SegmenterConfig,
    /// Silence (ms) after a final before the Deepgram engine's `utterance_end`.
    pub utterance_end_ms: u64,
    /// Failure knob: once this much audio (ms of stream time) has arrived, send an error frame
    /// (`10007` "Unexpected error", the platform's generic failure) and close, as when the
    /// service fails a session mid-stream.
    pub fail_after_audio_ms: Option<u64>,
}

impl Default for TelnyxSttFakeConfig {
    fn default() -> Self {
        Self {
            api_key: "test-telnyx-key".into(),
            default_script: Vec::new(),
            connection_scripts: Vec::new(),
            fallback_text: "[unintelligible]".into(),
            segmenter: SegmenterConfig::default(),
            utterance_end_ms: 1000,
            fail_after_audio_ms: None,
        }
    }
}

struct Shared {
    config: TelnyxSttFakeConfig,
    records: Arc<Records>,
    sessions: AtomicUsize,
}

/// A running fake Telnyx STT server.
pub struct TelnyxSttFake {
    server: TcpFakeServer,
    shared: Arc<Shared>,
}

impl TelnyxSttFake {
    /// Bind 127.0.0.1:0 and serve until [`TelnyxSttFake::shutdown`] or drop.
    pub async fn start(config: TelnyxSttFakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            records: Arc::new(Records::default()),
            sessions: AtomicUsize::new(0),
        });
        let for_conns = shared.clone();
        let server = TcpFakeServer::start(move |stream| handle(stream, for_conns.clone())).await?;
        Ok(Self { server, shared })
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

/// A documented error: (code, title, detail, parameter).
type Failure = (&'static str, &'static str, String, &'static str);

/// The session settings that change the fake's behaviour.
#[derive(Debug, Clone)]
struct Settings {
    deepgram: bool,
    interim: bool,
    encoding: Encoding,
    rate: u32,
    endpointing_ms: u64,
}

/// Validate the query as the service does after the upgrade.
fn settings(q: &[(String, String)]) -> Result<Settings, Failure> {
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let engine = param("transcription_engine").unwrap_or("Deepgram");
    if !ENGINES.contains(&engine) {
        return Err((
            "40007",
            "Invalid Parameter",
            format!("Unsupported transcription_engine '{engine}'. Supported: {ENGINES:?}"),
            "transcription_engine",
        ));
    }
    let format = param("input_format").unwrap_or("mp3");
    if !FORMATS.contains(&format) {
        return Err((
            "40001",
            "Invalid Parameter",
            format!("Unsupported input_format '{format}'. Supported formats: {FORMATS:?}"),
            "input_format",
        ));
    }
    let encoding = match format {
        "mulaw" => Encoding::Mulaw,
        "alaw" => Encoding::Alaw,
        "linear16" => Encoding::PcmS16le,
        other => {
            return Err((
                "40002",
                "Unsupported format",
                format!("Format '{other}' is not supported by this fake"),
                "input_format",
            ));
        }
    };
    let rate = match param("sample_rate") {
        None => {
            return Err((
                "40003",
                "Missing Parameter",
                format!("sample_rate is required for input_format '{format}'"),
                "sample_rate",
            ));
        }
        Some(r) => r.parse::<u32>().ok().filter(|r| *r > 0).ok_or((
            "40004",
            "Invalid Parameter",
            format!("sample_rate '{r}' is not a valid positive integer"),
            "sample_rate",
        ))?,
    };
    let interim = param("interim_results") == Some("true");
    let endpointing_ms = match param("endpointing") {
        None => 100,
        Some("false") => 10_000,
        Some(ms) => ms.parse().unwrap_or(100),
    };
    Ok(Settings {
        deepgram: engine == "Deepgram",
        interim,
        encoding,
        rate,
        endpointing_ms,
    })
}

async fn handle(stream: TcpStream, shared: Arc<Shared>) {
    let key = shared.config.api_key.clone();
    let Some((ws, hs)) = crate::stt_common::accept(stream, &shared.records, move |hs| {
        if hs.path != PATH {
            Verdict::Refuse {
                status: 404,
                body: "Not Found".into(),
                content_type: "text/plain",
            }
        } else if hs.header("authorization") != Some(format!("Bearer {key}").as_str()) {
            Verdict::Refuse {
                status: 401,
                body: r#"{"errors":[{"code":"10009","title":"Authentication failed","detail":"Could not understand the provided credentials."}]}"#.into(),
                content_type: "application/json",
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
    match settings(&hs.query) {
        Err((code, title, detail, parameter)) => {
            let frame = json!({"errors": [{
                "code": code, "title": title, "detail": detail,
                "source": {"parameter": parameter},
            }]});
            if conn.send_json(frame).await {
                conn.close(ERROR_CLOSE_CODE, title).await;
            }
        }
        Ok(settings) => {
            let n = shared.sessions.fetch_add(1, Ordering::SeqCst);
            let cfg = &shared.config;
            let mut s = Session {
                seg: Segmenter::new(
                    cfg.segmenter,
                    settings.encoding,
                    settings.rate,
                    settings.endpointing_ms,
                ),
                script: script_for(
                    &cfg.connection_scripts,
                    &cfg.default_script,
                    n,
                    &cfg.fallback_text,
                ),
                settings,
                current: None,
                utterance_end_due: false,
                utterance_end_ms: cfg.utterance_end_ms,
                fail_after_ms: cfg.fail_after_audio_ms,
            };
            serve(&mut conn, &mut s).await;
        }
    }
    shared.records.update(hs.index, |c| c.ended = true);
}

struct Session {
    settings: Settings,
    seg: Segmenter,
    script: ScriptQueue,
    current: Option<String>,
    /// A final went out and the Deepgram engine's `utterance_end` is still due.
    utterance_end_due: bool,
    utterance_end_ms: u64,
    fail_after_ms: Option<u64>,
}

async fn serve(conn: &mut Conn, s: &mut Session) {
    while let Some(msg) = conn.ws.next().await {
        let ok = match msg {
            Ok(Message::Binary(audio)) => {
                conn.got_audio(audio.len());
                audio_in(conn, s, &audio).await
            }
            Ok(Message::Text(t)) => {
                conn.got_text(t.as_str());
                let kind = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                match kind.as_deref() {
                    Some("CloseStream") => {
                        if let Some(event) = s.seg.force_end() {
                            let _ = on_event(conn, s, event).await;
                        }
                        conn.close(1000, "").await;
                        false
                    }
                    Some("Finalize") if s.settings.deepgram => finalize(conn, s).await,
                    // KeepAlive only resets the idle timer; unknown text is silently ignored.
                    _ => true,
                }
            }
            Ok(Message::Close(_)) | Err(_) => false,
            Ok(_) => true,
        };
        if !ok {
            return;
        }
    }
}

async fn audio_in(conn: &mut Conn, s: &mut Session, audio: &[u8]) -> bool {
    for event in s.seg.push(audio) {
        if !on_event(conn, s, event).await {
            return false;
        }
    }
    if s.fail_after_ms
        .is_some_and(|ms| s.seg.now_s() * 1000.0 >= ms as f64)
    {
        let frame = json!({"errors": [{"code": "10007", "title": "Unexpected error",
            "detail": "The transcription stopped unexpectedly (failure knob)."}]});
        if conn.send_json(frame).await {
            conn.close(ERROR_CLOSE_CODE, "Unexpected error").await;
        }
        return false;
    }
    if s.utterance_end_due && s.seg.silence_ms() >= s.utterance_end_ms {
        s.utterance_end_due = false;
        return conn
            .send_json(json!({"transcript": "", "is_final": true, "utterance_end": true}))
            .await;
    }
    true
}

async fn on_event(conn: &mut Conn, s: &mut Session, event: SegmentEvent) -> bool {
    match event {
        SegmentEvent::Started { .. } => {
            s.current = Some(s.script.next_text());
            s.utterance_end_due = false;
            true
        }
        SegmentEvent::Interim { speech_ms } => {
            let Some(text) = s.current.as_deref().filter(|_| s.settings.interim) else {
                return true;
            };
            let shown = first_words(text, interim_word_count(text, speech_ms));
            conn.send_json(json!({"transcript": shown, "is_final": false, "confidence": 0.0}))
                .await
        }
        SegmentEvent::Ended { .. } => {
            let text = s.current.take().unwrap_or_default();
            s.utterance_end_due = s.settings.deepgram;
            conn.send_json(final_result(&text, &s.settings)).await
        }
    }
}

/// A final result; `speech_final` only from the Deepgram engine.
fn final_result(text: &str, settings: &Settings) -> Value {
    let mut v = json!({"transcript": text, "is_final": true, "confidence": 0.98});
    if settings.deepgram {
        v["speech_final"] = json!(true);
    }
    v
}

/// `Finalize`: the open segment's final now, or an empty final when nothing is pending.
async fn finalize(conn: &mut Conn, s: &mut Session) -> bool {
    match s.seg.force_end() {
        Some(event) => on_event(conn, s, event).await,
        None => conn.send_json(final_result("", &s.settings)).await,
    }
}
