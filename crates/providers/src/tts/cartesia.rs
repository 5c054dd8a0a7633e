//! Cartesia streaming TTS over the websocket `/tts/websocket` (API version pinned to
//! [`API_VERSION`], whose errors are structured): one socket per call, one Cartesia context
//! per reply (`ctx-<n>`). Every text chunk is a full generation request with `continue: true`
//! and `max_buffer_delay_ms: 0` (the core already sends speakable phrases, so each is generated
//! at once); a session `flush` sends an empty transcript with `flush: true`; `end` sends an
//! empty transcript with `continue: false`, answered by `done` → `Done`. Barge-in is
//! `{"context_id", "cancel": true}`. Audio is asked for as raw `pcm_mulaw` at 8000 Hz (what
//! Twilio plays); word timestamps are turned into character timings for "what was heard".
//! The socket, timeouts and contexts are the generic driver's ([`super::driver`]).
//!
//! Protocol and sources: `docs/providers/cartesia.md`
//! (<https://docs.cartesia.ai/api-reference/tts/websocket>,
//! <https://docs.cartesia.ai/use-the-api/tts-websocket/contexts>,
//! <https://docs.cartesia.ai/use-the-api/api-errors>).

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::protocol::{Step, TtsProtocol, context_from_name, context_name, text_chunk};
use super::{Alignment, TtsConfig, TtsSession, driver};
use crate::error::ProviderError;
use crate::ws as wsutil;

/// Provider name used in errors.
pub const PROVIDER: &str = "cartesia";
/// Cartesia's public websocket host.
const DEFAULT_BASE: &str = "wss://api.cartesia.ai";
/// The `Cartesia-Version` sent: the first with structured error objects.
pub const API_VERSION: &str = "2026-03-01";
/// The model used when the record names none (the registry maps other providers' aliases,
/// such as the record default `turbo`, to this too).
pub const DEFAULT_MODEL: &str = "sonic-2";
/// `generation_config.speed` range Cartesia accepts (1.0 = normal).
pub const SPEED_RANGE: (f32, f32) = (0.6, 1.5);
/// Word times beyond this (s) are clamped: no reply is a day long, and the arithmetic stays
/// far from overflow.
const MAX_WORD_TIME_S: f64 = 86_400.0;
/// Output sample rate (Hz): Twilio's.
const SAMPLE_RATE_HZ: u32 = 8000;

/// The websocket URL (`<base>/tts/websocket`).
pub fn websocket_url(cfg: &TtsConfig) -> Result<Url, ProviderError> {
    wsutil::ws_url(
        PROVIDER,
        cfg.base_url.as_deref(),
        DEFAULT_BASE,
        "/tts/websocket",
    )
}

/// The model id sent: the configured one, or [`DEFAULT_MODEL`] when none is set.
pub fn model_id(cfg: &TtsConfig) -> &str {
    cfg.model_id
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(DEFAULT_MODEL)
}

/// The fields every generation request of a context repeats (model, voice, format, language,
/// speed), checked against what Cartesia accepts.
pub fn request_base(cfg: &TtsConfig) -> Result<Map<String, Value>, ProviderError> {
    let config = |message: String| ProviderError::Config {
        provider: PROVIDER,
        message,
    };
    let voice = cfg.voice_id.trim();
    if voice.is_empty() {
        return Err(config("voice_id must be a Cartesia voice id".into()));
    }
    if !matches!(
        cfg.output_format.as_str(),
        "ulaw_8000" | "mulaw" | "mulaw_8000" | ""
    ) {
        return Err(config(format!(
            "output format `{}` is not supported on the call path (8 kHz µ-law only)",
            cfg.output_format
        )));
    }
    let mut m = Map::new();
    m.insert("model_id".into(), json!(model_id(cfg)));
    m.insert("voice".into(), json!({"mode": "id", "id": voice}));
    m.insert(
        "output_format".into(),
        json!({"container": "raw", "encoding": "pcm_mulaw", "sample_rate": SAMPLE_RATE_HZ}),
    );
    if let Some(lang) = cfg
        .language_code
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        // `en-US` → `en`: Cartesia takes ISO 639-1 codes.
        let primary = lang.split(['-', '_']).next().unwrap_or(lang);
        m.insert("language".into(), json!(primary.to_ascii_lowercase()));
    }
    if let Some(speed) = cfg.speed {
        let (lo, hi) = SPEED_RANGE;
        if !(lo..=hi).contains(&speed) {
            return Err(config(format!(
                "speed {speed} is outside Cartesia's range {lo}–{hi}"
            )));
        }
        if (speed - 1.0).abs() > f32::EPSILON {
            m.insert("generation_config".into(), json!({"speed": speed}));
        }
    }
    m.insert("add_timestamps".into(), json!(true));
    m.insert("max_buffer_delay_ms".into(), json!(0));
    Ok(m)
}

/// Open the session: the handshake (key and version) is checked here; model and voice are
/// checked by Cartesia on the first request, so those refusals fail the first reply.
pub async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    let key = cfg.api_key.trim();
    if key.is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let protocol = Cartesia::new(cfg)?;
    let ws = wsutil::connect(
        PROVIDER,
        &protocol.url,
        &[("x-api-key", key), ("cartesia-version", API_VERSION)],
        None,
        Duration::from_millis(cfg.connect_timeout_ms.max(1)),
        &cfg.outbound,
    )
    .await?;
    Ok(driver::start(Box::new(protocol), Some(ws), cfg))
}

/// The protocol of `cfg`, built without I/O: what [`connect`] drives once the socket is open
/// (public for the receive-path bench, `benches/tts_receive.rs`).
pub fn protocol(cfg: &TtsConfig) -> Result<Box<dyn TtsProtocol>, ProviderError> {
    Ok(Box::new(Cartesia::new(cfg)?))
}

impl Cartesia {
    fn new(cfg: &TtsConfig) -> Result<Self, ProviderError> {
        Ok(Cartesia {
            url: websocket_url(cfg)?,
            key: cfg.api_key.trim().to_owned(),
            base: request_base(cfg)?,
            contexts: HashMap::new(),
        })
    }
}

/// Per-context state.
#[derive(Debug, Default)]
struct Context {
    /// Audio delivered so far (ms): word times are relative to the context start.
    audio_ms: u64,
    /// Text was sent since the last flush.
    unflushed: bool,
}

struct Cartesia {
    url: Url,
    key: String,
    base: Map<String, Value>,
    contexts: HashMap<u64, Context>,
}

/// One server message (the fields the adapter reads).
#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerMessage {
    #[serde(rename = "type")]
    kind: String,
    context_id: Option<String>,
    data: Option<String>,
    word_timestamps: Option<WordTimestamps>,
    status_code: Option<u16>,
    error_code: Option<String>,
    title: Option<String>,
    message: Option<String>,
    /// Versions before 2026-03-01: `"Title: Message"`.
    error: Option<String>,
}

/// Word timings (seconds from the start of the context).
#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(default)]
struct WordTimestamps {
    words: Vec<String>,
    start: Vec<f64>,
    end: Vec<f64>,
}

/// Character timings relative to `audio_ms` (the audio delivered so far) from word times
/// relative to the context start: each word's characters share its span evenly, followed by
/// a zero-length space. A word whose audio was already delivered is placed at `audio_ms` (it
/// counts as heard once everything delivered so far has played).
fn words_to_alignment(w: &WordTimestamps, audio_ms: u64) -> Alignment {
    let mut a = Alignment::default();
    let n = w.words.len().min(w.start.len()).min(w.end.len());
    for i in 0..n {
        let start_ms = (w.start[i].clamp(0.0, MAX_WORD_TIME_S) * 1000.0).round() as u64;
        let end_ms = ((w.end[i].clamp(0.0, MAX_WORD_TIME_S) * 1000.0).round() as u64).max(start_ms);
        let rel_start = start_ms.saturating_sub(audio_ms);
        let rel_end = end_ms.saturating_sub(audio_ms);
        let chars: Vec<char> = w.words[i].chars().collect();
        let count = chars.len().max(1) as u64;
        let span = rel_end - rel_start;
        for (j, ch) in chars.iter().enumerate() {
            let j = j as u64;
            let s = rel_start + span * j / count;
            let e = rel_start + span * (j + 1) / count;
            a.chars.push(*ch);
            a.char_start_ms.push(u32::try_from(s).unwrap_or(u32::MAX));
            a.char_dur_ms.push(u32::try_from(e - s).unwrap_or(u32::MAX));
        }
        a.chars.push(' ');
        a.char_start_ms
            .push(u32::try_from(rel_end).unwrap_or(u32::MAX));
        a.char_dur_ms.push(0);
    }
    a
}

/// A Cartesia error event as a typed error: key, quota and request refusals are not worth
/// retrying; server errors are.
fn error_of(m: &ServerMessage) -> ProviderError {
    let status = m.status_code.unwrap_or(500);
    let text = match (&m.error_code, &m.title, &m.message, &m.error) {
        (Some(code), title, message, _) => format!(
            "{code}: {}{}",
            title.as_deref().unwrap_or_default(),
            message
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        ),
        (None, _, _, Some(e)) => e.clone(),
        (None, _, Some(message), None) => message.clone(),
        _ => "error".into(),
    };
    ProviderError::Http {
        provider: PROVIDER,
        status,
        message: text,
        retryable: wsutil::status_retryable(status),
    }
}

impl Cartesia {
    fn request(&self, context: u64, transcript: &str, more: bool, flush: bool) -> Step {
        let mut m = self.base.clone();
        m.insert("context_id".into(), json!(context_name(context)));
        m.insert("transcript".into(), json!(transcript));
        m.insert("continue".into(), json!(more));
        if flush {
            m.insert("flush".into(), json!(true));
        }
        Step::Send(Message::text(Value::Object(m).to_string()))
    }
}

impl TtsProtocol for Cartesia {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            ("x-api-key", self.key.clone()),
            ("cartesia-version", API_VERSION.into()),
        ]
    }

    fn open(&mut self, context: u64) -> Vec<Step> {
        self.contexts.insert(context, Context::default());
        Vec::new()
    }

    fn text(&mut self, context: u64, text: &str) -> Vec<Step> {
        self.contexts.entry(context).or_default().unflushed = true;
        vec![self.request(context, &text_chunk(text), true, false)]
    }

    fn flush(&mut self, context: u64) -> Vec<Step> {
        match self.contexts.get_mut(&context) {
            Some(c) if c.unflushed => {
                c.unflushed = false;
                vec![self.request(context, "", true, true)]
            }
            _ => Vec::new(),
        }
    }

    fn end(&mut self, context: u64) -> Vec<Step> {
        vec![self.request(context, "", false, false)]
    }

    fn cancel(&mut self, context: u64) -> Vec<Step> {
        self.contexts.remove(&context);
        let m = json!({"context_id": context_name(context), "cancel": true});
        vec![Step::Send(Message::text(m.to_string()))]
    }

    fn close(&mut self) -> Option<Message> {
        None
    }

    fn parse(&mut self, _socket_context: Option<u64>, message: Message) -> Vec<Step> {
        let Message::Text(text) = message else {
            return Vec::new();
        };
        let m: ServerMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
                return Vec::new();
            }
        };
        let ctx = m.context_id.as_deref().and_then(context_from_name);
        if m.kind == "error" {
            let error = error_of(&m);
            if ctx.is_none() && error.is_retryable() {
                return vec![Step::Broken(error)];
            }
            if let Some(c) = ctx {
                self.contexts.remove(&c);
            }
            return vec![Step::Failed {
                context: ctx,
                error,
            }];
        }
        let Some(ctx) = ctx else {
            return Vec::new();
        };
        match m.kind.as_str() {
            "chunk" => {
                let decoded = m
                    .data
                    .as_deref()
                    .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
                let Some(decoded) = decoded else {
                    tracing::warn!(provider = PROVIDER, "audio is not valid base64");
                    return Vec::new();
                };
                if let Some(c) = self.contexts.get_mut(&ctx) {
                    // µ-law at 8 kHz: 8 bytes per ms.
                    c.audio_ms += decoded.len() as u64 / 8;
                }
                vec![Step::Audio {
                    context: ctx,
                    mulaw: Bytes::from(decoded),
                    alignment: None,
                }]
            }
            "timestamps" => {
                let (Some(words), Some(c)) = (m.word_timestamps, self.contexts.get(&ctx)) else {
                    return Vec::new();
                };
                vec![Step::Audio {
                    context: ctx,
                    mulaw: Bytes::new(),
                    alignment: Some(words_to_alignment(&words, c.audio_ms)),
                }]
            }
            "flush_done" => vec![Step::Progress { context: ctx }],
            "done" => {
                self.contexts.remove(&ctx);
                vec![Step::Done { context: ctx }]
            }
            _ => Vec::new(),
        }
    }

    fn socket_lost(&mut self) {
        self.contexts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TtsConfig {
        TtsConfig {
            provider: "cartesia".into(),
            voice_id: "a0e99841-438c-4a64-b679-ae501e7d6091".into(),
            model_id: None,
            base_url: Some("http://127.0.0.1:9".into()),
            api_key: "k".into(),
            ..TtsConfig::default()
        }
    }

    #[test]
    fn request_maps_model_voice_format_language_and_speed() {
        let c = TtsConfig {
            language_code: Some("fr-FR".into()),
            speed: Some(1.2),
            ..cfg()
        };
        let m = request_base(&c).expect("valid");
        assert_eq!(m["model_id"], DEFAULT_MODEL);
        assert_eq!(m["voice"]["id"], "a0e99841-438c-4a64-b679-ae501e7d6091");
        assert_eq!(m["voice"]["mode"], "id");
        assert_eq!(m["output_format"]["encoding"], "pcm_mulaw");
        assert_eq!(m["output_format"]["sample_rate"], 8000);
        assert_eq!(m["language"], "fr");
        assert!(
            m["generation_config"]["speed"]
                .as_f64()
                .is_some_and(|s| (s - 1.2).abs() < 1e-6)
        );
        let normal = request_base(&TtsConfig {
            speed: Some(1.0),
            model_id: Some("sonic-3".into()),
            ..cfg()
        })
        .expect("valid");
        assert!(normal.get("generation_config").is_none());
        assert_eq!(normal["model_id"], "sonic-3");
        assert_eq!(
            websocket_url(&cfg()).map(|u| u.to_string()).ok().as_deref(),
            Some("ws://127.0.0.1:9/tts/websocket")
        );
    }

    #[test]
    fn settings_cartesia_refuses_are_config_errors() {
        for bad in [
            TtsConfig {
                speed: Some(2.0),
                ..cfg()
            },
            TtsConfig {
                speed: Some(0.5),
                ..cfg()
            },
            TtsConfig {
                voice_id: " ".into(),
                ..cfg()
            },
            TtsConfig {
                output_format: "mp3_44100_128".into(),
                ..cfg()
            },
        ] {
            assert!(
                matches!(request_base(&bad), Err(ProviderError::Config { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn messages_of_a_context() {
        let mut p = Cartesia {
            url: websocket_url(&cfg()).expect("url"),
            key: "k".into(),
            base: request_base(&cfg()).expect("base"),
            contexts: HashMap::new(),
        };
        let json_of = |steps: Vec<Step>| -> Vec<Value> {
            steps
                .into_iter()
                .filter_map(|s| match s {
                    Step::Send(Message::Text(t)) => serde_json::from_str(t.as_str()).ok(),
                    _ => None,
                })
                .collect()
        };
        assert!(p.open(3).is_empty());
        let t = json_of(p.text(3, "Hello there.  "));
        assert_eq!(t[0]["transcript"], "Hello there. ");
        assert_eq!(t[0]["continue"], true);
        assert_eq!(t[0]["context_id"], "ctx-3");
        assert_eq!(t[0]["add_timestamps"], true);
        let f = json_of(p.flush(3));
        assert_eq!(
            (f[0]["flush"].clone(), f[0]["continue"].clone()),
            (json!(true), json!(true))
        );
        assert!(p.flush(3).is_empty(), "nothing new to flush");
        let e = json_of(p.end(3));
        assert_eq!(
            (e[0]["transcript"].clone(), e[0]["continue"].clone()),
            (json!(""), json!(false))
        );
        let c = json_of(p.cancel(3));
        assert_eq!(c[0], json!({"context_id": "ctx-3", "cancel": true}));
    }

    #[test]
    fn server_messages_become_steps() {
        let mut p = Cartesia {
            url: websocket_url(&cfg()).expect("url"),
            key: "k".into(),
            base: request_base(&cfg()).expect("base"),
            contexts: HashMap::new(),
        };
        p.open(1);
        let parse = |p: &mut Cartesia, v: Value| p.parse(None, Message::text(v.to_string()));
        let audio = base64::engine::general_purpose::STANDARD.encode([0xFFu8; 800]);
        let steps = parse(
            &mut p,
            json!({"type": "chunk", "data": audio, "context_id": "ctx-1"}),
        );
        assert!(
            matches!(&steps[..], [Step::Audio { context: 1, mulaw, .. }] if mulaw.len() == 800)
        );
        let steps = parse(
            &mut p,
            json!({"type": "timestamps", "context_id": "ctx-1",
                   "word_timestamps": {"words": ["Hi", "you"], "start": [0.0, 0.15], "end": [0.1, 0.3]}}),
        );
        let Some(Step::Audio {
            alignment: Some(a),
            mulaw,
            ..
        }) = steps.first()
        else {
            panic!("{steps:?}");
        };
        assert!(mulaw.is_empty());
        assert_eq!(a.chars.iter().collect::<String>(), "Hi you ");
        // 100 ms were delivered: "Hi" is behind, "you" 50..200 ms ahead of it.
        assert_eq!(a.char_start_ms, vec![0, 0, 0, 50, 100, 150, 200]);
        assert_eq!(a.char_dur_ms, vec![0, 0, 0, 50, 50, 50, 0]);
        assert!(matches!(
            &parse(
                &mut p,
                json!({"type": "done", "done": true, "context_id": "ctx-1"})
            )[..],
            [Step::Done { context: 1 }]
        ));
        let refused = parse(
            &mut p,
            json!({"type": "error", "done": true, "status_code": 400, "error_code": "model_not_found",
                   "title": "Invalid model", "message": "The model is not valid.", "context_id": "ctx-2"}),
        );
        match &refused[..] {
            [
                Step::Failed {
                    context: Some(2),
                    error:
                        ProviderError::Http {
                            status: 400,
                            retryable: false,
                            message,
                            ..
                        },
                },
            ] => {
                assert!(message.contains("model_not_found"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let old = parse(
            &mut p,
            json!({"type": "error", "status_code": 500, "error": "Internal: boom"}),
        );
        assert!(matches!(
            &old[..],
            [Step::Broken(ProviderError::Http { status: 500, .. })]
        ));
        assert!(
            parse(
                &mut p,
                json!({"type": "chunk", "data": "!!", "context_id": "ctx-1"})
            )
            .is_empty()
        );
    }

    /// Fuzz target (see `docs/security/fuzzing.md`): any server message — generated JSON with
    /// the protocol's keys, or arbitrary text — becomes steps or nothing, without a panic; a
    /// word-timing alignment keeps one start and one duration per character.
    #[test]
    fn fuzz_cartesia_server_messages() {
        use bolero::check;
        use switchboard_fuzzkit::Json;
        check!()
            .with_type::<(Json, Vec<u8>)>()
            .with_iterations(20_000)
            .for_each(|(json, raw)| {
                let mut p = Cartesia {
                    url: websocket_url(&cfg()).expect("url"),
                    key: "k".into(),
                    base: Map::new(),
                    contexts: HashMap::new(),
                };
                p.open(1);
                let generated = json
                    .to_value(
                        &[
                            "type",
                            "context_id",
                            "data",
                            "word_timestamps",
                            "words",
                            "start",
                            "end",
                            "status_code",
                            "error_code",
                            "title",
                            "message",
                            "error",
                        ],
                        &[
                            "chunk",
                            "timestamps",
                            "done",
                            "error",
                            "flush_done",
                            "ctx-1",
                            "AAAA",
                        ],
                    )
                    .to_string();
                for text in [generated, String::from_utf8_lossy(raw).into_owned()] {
                    for step in p.parse(None, Message::text(text)) {
                        if let Step::Audio {
                            alignment: Some(a), ..
                        } = step
                        {
                            assert_eq!(a.chars.len(), a.char_start_ms.len());
                            assert_eq!(a.chars.len(), a.char_dur_ms.len());
                        }
                    }
                }
            });
    }
}
