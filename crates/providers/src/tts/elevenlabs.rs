//! ElevenLabs streaming TTS over the multi-context websocket
//! (`/v1/text-to-speech/{voice_id}/multi-stream-input`): one socket per call, one context per
//! assistant reply, so barge-in is a `close_context` rather than a reconnect. When the
//! multi-context endpoint is refused at the handshake (4xx other than auth/rate limits), the
//! session falls back to one single-context `stream-input` socket per reply.
//!
//! Per context: the first message carries `voice_settings`/`generation_config`; each text chunk
//! ends with a single space and is sent with `flush: true` (audio at once, so a session
//! `flush` has nothing left to send); `end(context)` closes the context, which lets the flushed
//! audio finish and then brings `isFinal` → `Done`. Audio of cancelled or unknown contexts is
//! dropped. The socket, timeouts and contexts are the generic driver's
//! ([`super::driver`]). Protocol: `docs/providers/elevenlabs-tts.md`.

use std::borrow::Cow;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::protocol::{Step, TtsProtocol, context_from_name, context_name, fatal_text, text_chunk};
use super::{Alignment, TtsConfig, TtsSession, driver};
use crate::error::ProviderError;
use crate::ws as wsutil;

/// Provider name used in errors.
pub(crate) const PROVIDER: &str = "elevenlabs";
/// ElevenLabs' public websocket host.
const DEFAULT_BASE: &str = "wss://api.elevenlabs.io";

/// The stream URL (`multi`: multi-stream-input, else stream-input) with every query parameter
/// mapped from `cfg`.
pub fn stream_url(cfg: &TtsConfig, multi: bool) -> Result<Url, ProviderError> {
    let voice = cfg.voice_id.trim();
    if voice.is_empty()
        || !voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ProviderError::Config {
            provider: PROVIDER,
            message: "voice_id must be a non-empty ElevenLabs voice id".into(),
        });
    }
    let endpoint = if multi {
        "multi-stream-input"
    } else {
        "stream-input"
    };
    let path = format!("/v1/text-to-speech/{voice}/{endpoint}");
    let mut url = wsutil::ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, &path)?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(model) = cfg.model_id.as_deref().filter(|m| !m.is_empty()) {
            q.append_pair("model_id", model);
        }
        q.append_pair("output_format", &cfg.output_format);
        q.append_pair(
            "sync_alignment",
            if cfg.sync_alignment { "true" } else { "false" },
        );
        q.append_pair(
            "inactivity_timeout",
            &cfg.inactivity_timeout_s.clamp(1, 180).to_string(),
        );
        if cfg.auto_mode {
            q.append_pair("auto_mode", "true");
        }
        if let Some(lang) = cfg.language_code.as_deref().filter(|l| !l.is_empty()) {
            q.append_pair("language_code", lang);
        }
        if let Some(latency) = cfg.latency {
            q.append_pair("optimize_streaming_latency", &latency.min(4).to_string());
        }
    }
    Ok(url)
}

/// `voice_settings` with only the configured fields (the server fills the rest).
fn voice_settings(cfg: &TtsConfig) -> Option<Value> {
    let mut v = serde_json::Map::new();
    if let Some(x) = cfg.stability {
        v.insert("stability".into(), json!(x));
    }
    if let Some(x) = cfg.similarity_boost {
        v.insert("similarity_boost".into(), json!(x));
    }
    if let Some(x) = cfg.style {
        v.insert("style".into(), json!(x));
    }
    if let Some(x) = cfg.use_speaker_boost {
        v.insert("use_speaker_boost".into(), json!(x));
    }
    if let Some(x) = cfg.speed {
        v.insert("speed".into(), json!(x));
    }
    (!v.is_empty()).then_some(Value::Object(v))
}

/// First message of a context (multi) or socket (single).
fn init_message(cfg: &TtsConfig, context_id: Option<&str>) -> Message {
    let mut m = json!({"text": " "});
    if let Some(vs) = voice_settings(cfg) {
        m["voice_settings"] = vs;
    }
    if !cfg.chunk_length_schedule.is_empty() {
        m["generation_config"] = json!({"chunk_length_schedule": cfg.chunk_length_schedule});
    }
    if let Some(id) = context_id {
        m["context_id"] = json!(id);
    }
    Message::text(m.to_string())
}

/// Open the session (see the module docs).
pub async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let mut protocol = ElevenLabs::new(cfg)?;
    let single_url = stream_url(cfg, false)?;
    let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
    let connected = wsutil::connect(
        PROVIDER,
        &protocol.url,
        &[("xi-api-key", &protocol.key)],
        None,
        timeout,
        &cfg.outbound,
    )
    .await;
    let ws = match connected {
        Ok(ws) => Some(ws),
        Err(ProviderError::Http { status, .. })
            if (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429) =>
        {
            tracing::info!(
                provider = PROVIDER,
                status,
                "multi-context refused; one socket per reply"
            );
            protocol.url = single_url;
            protocol.multi = false;
            None
        }
        Err(e) => return Err(e),
    };
    Ok(driver::start(Box::new(protocol), ws, cfg))
}

/// The multi-context protocol of `cfg`, built without I/O: what [`connect`] drives once the
/// socket is open (public for the receive-path bench, `benches/tts_receive.rs`).
pub fn protocol(cfg: &TtsConfig) -> Result<Box<dyn TtsProtocol>, ProviderError> {
    Ok(Box::new(ElevenLabs::new(cfg)?))
}

impl ElevenLabs {
    fn new(cfg: &TtsConfig) -> Result<Self, ProviderError> {
        Ok(ElevenLabs {
            cfg: cfg.clone(),
            key: cfg.api_key.trim().to_owned(),
            url: stream_url(cfg, true)?,
            multi: true,
        })
    }
}

/// The ElevenLabs protocol: multi-context on one socket, or one stream-input socket per
/// context (`multi: false`).
struct ElevenLabs {
    cfg: TtsConfig,
    key: String,
    url: Url,
    multi: bool,
}

/// A server message. The audio's base64 (several KB per message) and the context name are
/// borrowed from the socket's text when they have no escapes: not copied before use.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerMessage<'a> {
    #[serde(borrow)]
    audio: Option<WireStr<'a>>,
    #[serde(alias = "isFinal")]
    is_final: Option<bool>,
    #[serde(alias = "contextId", borrow)]
    context_id: Option<WireStr<'a>>,
    alignment: Option<WireAlignment>,
    #[serde(rename = "normalizedAlignment")]
    normalized_alignment: Option<WireAlignment>,
    message: Option<String>,
    error: Option<Value>,
}

/// A JSON string borrowed from the input when it has no escapes, else copied. (serde's own
/// `Cow<str>` borrows only as a field's whole type, never inside an `Option`.)
#[derive(Default)]
struct WireStr<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for WireStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str;
        impl<'de> serde::de::Visitor<'de> for Str {
            type Value = WireStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                s: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(WireStr(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(WireStr(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(Str)
    }
}

/// One character of an alignment: ElevenLabs sends each as a JSON string; its first `char` is
/// kept (a space for an empty one) without a `String` per character.
struct WireChar(char);

impl<'de> Deserialize<'de> for WireChar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FirstChar;
        impl serde::de::Visitor<'_> for FirstChar {
            type Value = WireChar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a one-character string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<WireChar, E> {
                Ok(WireChar(s.chars().next().unwrap_or(' ')))
            }
        }
        d.deserialize_str(FirstChar)
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireAlignment {
    chars: Vec<WireChar>,
    #[serde(rename = "charStartTimesMs")]
    char_start_times_ms: Vec<f64>,
    #[serde(rename = "charsDurationsMs", alias = "charDurationsMs")]
    chars_durations_ms: Vec<f64>,
}

impl From<WireAlignment> for Alignment {
    fn from(w: WireAlignment) -> Self {
        let ms = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0).round() as u32).collect();
        Alignment {
            chars: w.chars.into_iter().map(|c| c.0).collect(),
            char_start_ms: ms(w.char_start_times_ms),
            char_dur_ms: ms(w.chars_durations_ms),
        }
    }
}

fn stream_error(message: &str) -> ProviderError {
    ProviderError::Stream {
        provider: PROVIDER,
        message: message.to_owned(),
        retryable: !fatal_text(message),
    }
}

impl ElevenLabs {
    fn close_context(&self, context: u64) -> Vec<Step> {
        if !self.multi {
            // The driver drops the context's own socket.
            return Vec::new();
        }
        let m = json!({"context_id": context_name(context), "close_context": true});
        vec![Step::Send(Message::text(m.to_string()))]
    }
}

impl TtsProtocol for ElevenLabs {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("xi-api-key", self.key.clone())]
    }

    fn socket_per_context(&self) -> bool {
        !self.multi
    }

    fn open(&mut self, context: u64) -> Vec<Step> {
        let name = self.multi.then(|| context_name(context));
        vec![Step::Send(init_message(&self.cfg, name.as_deref()))]
    }

    fn text(&mut self, context: u64, text: &str) -> Vec<Step> {
        let mut m = json!({"text": text_chunk(text), "flush": true});
        if self.multi {
            m["context_id"] = json!(context_name(context));
        }
        vec![Step::Send(Message::text(m.to_string()))]
    }

    fn flush(&mut self, _context: u64) -> Vec<Step> {
        // Every chunk was sent with `flush: true`: nothing is buffered at the server.
        Vec::new()
    }

    fn end(&mut self, context: u64) -> Vec<Step> {
        if self.multi {
            self.close_context(context)
        } else {
            vec![Step::Send(Message::text(r#"{"text":""}"#))]
        }
    }

    fn cancel(&mut self, context: u64) -> Vec<Step> {
        self.close_context(context)
    }

    fn close(&mut self) -> Option<Message> {
        self.multi
            .then(|| Message::text(r#"{"close_socket":true}"#))
    }

    fn parse(&mut self, socket_context: Option<u64>, message: Message) -> Vec<Step> {
        let Message::Text(text) = message else {
            return Vec::new();
        };
        let message: ServerMessage = match serde_json::from_str(text.as_str()) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
                return Vec::new();
            }
        };
        let ctx = socket_context.or_else(|| {
            message
                .context_id
                .as_ref()
                .and_then(|c| context_from_name(&c.0))
        });
        let has_audio = message.audio.as_ref().is_some_and(|a| !a.0.is_empty());
        if !has_audio
            && message.is_final != Some(true)
            && (message.message.is_some() || message.error.is_some())
        {
            let text = message
                .message
                .or_else(|| {
                    message.error.as_ref().map(|e| {
                        e.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| e.to_string())
                    })
                })
                .unwrap_or_default();
            return vec![Step::Failed {
                context: ctx,
                error: stream_error(&text),
            }];
        }
        let Some(ctx) = ctx else {
            return Vec::new();
        };
        let mut steps = Vec::new();
        if has_audio {
            let decoded = message
                .audio
                .as_ref()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(&*a.0).ok());
            let Some(decoded) = decoded else {
                tracing::warn!(provider = PROVIDER, "audio is not valid base64");
                return Vec::new();
            };
            let alignment = message
                .alignment
                .or(message.normalized_alignment)
                .map(Alignment::from);
            steps.push(Step::Audio {
                context: ctx,
                mulaw: Bytes::from(decoded),
                alignment,
            });
        }
        if message.is_final == Some(true) {
            steps.push(Step::Done { context: ctx });
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_messages() {
        let cfg = TtsConfig {
            voice_id: "rachel".into(),
            model_id: Some("eleven_turbo_v2_5".into()),
            language_code: Some("en".into()),
            latency: Some(3),
            auto_mode: true,
            base_url: Some("http://127.0.0.1:1".into()),
            api_key: "k".into(),
            stability: Some(0.4),
            chunk_length_schedule: vec![50, 90],
            ..TtsConfig::default()
        };
        let url = stream_url(&cfg, true)
            .map(|u| u.to_string())
            .unwrap_or_default();
        assert!(
            url.starts_with("ws://127.0.0.1:1/v1/text-to-speech/rachel/multi-stream-input?"),
            "{url}"
        );
        for part in [
            "model_id=eleven_turbo_v2_5",
            "output_format=ulaw_8000",
            "sync_alignment=true",
            "inactivity_timeout=180",
            "auto_mode=true",
            "language_code=en",
            "optimize_streaming_latency=3",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(
            stream_url(
                &TtsConfig {
                    voice_id: "a/b".into(),
                    ..cfg.clone()
                },
                true
            )
            .is_err()
        );
        let init = init_message(&cfg, Some("ctx-1"))
            .into_text()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&init).unwrap_or_default();
        assert_eq!(v["text"], " ");
        assert_eq!(v["context_id"], "ctx-1");
        assert!(
            v["voice_settings"]["stability"]
                .as_f64()
                .is_some_and(|s| (s - 0.4).abs() < 1e-6)
        );
        assert!(v["voice_settings"].get("speed").is_none());
        assert_eq!(
            v["generation_config"]["chunk_length_schedule"],
            json!([50, 90])
        );
        assert_eq!(text_chunk("Hello there.  "), "Hello there. ");
        assert_eq!(context_from_name(&context_name(42)), Some(42));
    }

    #[test]
    fn escaped_audio_and_alignment_characters_parse_to_one_char_each() {
        let mut p = ElevenLabs {
            cfg: TtsConfig::default(),
            key: String::new(),
            url: Url::parse("ws://127.0.0.1:1/").expect("url"),
            multi: true,
        };
        // `\/` in the base64 (a JSON encoder may escape `/`), an escaped quote, an empty
        // string and a character of several code points among the characters.
        let text = r#"{"audio":"//8A\/w==","contextId":"ctx-7","alignment":{
            "chars":["\"","","\u0041","👍🏽"],
            "charStartTimesMs":[0,10,20,30],"charsDurationsMs":[10,10,10,10]}}"#;
        let steps = p.parse(None, Message::Text(text.into()));
        let [
            Step::Audio {
                context,
                mulaw,
                alignment: Some(a),
            },
        ] = steps.as_slice()
        else {
            panic!("one audio step with its alignment: {steps:?}");
        };
        assert_eq!(*context, 7);
        assert_eq!(mulaw.as_ref(), [0xFF, 0xFF, 0x00, 0xFF]);
        assert_eq!(a.chars, ['"', ' ', 'A', '👍']);
        assert_eq!(a.char_start_ms, [0, 10, 20, 30]);
    }

    /// Fuzz target (see `docs/security/fuzzing.md`): any server message — generated JSON with
    /// the protocol's keys, or arbitrary text — parses or is dropped without a panic; an
    /// alignment keeps one timing per entry; context names round trip.
    #[test]
    fn fuzz_elevenlabs_server_messages() {
        use bolero::check;
        use switchboard_fuzzkit::Json;
        check!()
            .with_type::<(Json, u64, Vec<u8>)>()
            .with_iterations(20_000)
            .for_each(|(json, context, raw)| {
                assert_eq!(context_from_name(&context_name(*context)), Some(*context));
                let generated = json
                    .to_value(
                        &[
                            "audio",
                            "isFinal",
                            "contextId",
                            "alignment",
                            "normalizedAlignment",
                            "chars",
                            "charStartTimesMs",
                            "charsDurationsMs",
                            "message",
                            "error",
                        ],
                        &["ctx-1", "ctx-18446744073709551615", "ctx-", "AAAA"],
                    )
                    .to_string();
                for text in [generated, String::from_utf8_lossy(raw).into_owned()] {
                    let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                        continue;
                    };
                    if let Some(name) = &message.context_id {
                        let _ = context_from_name(&name.0);
                    }
                    for wire in [message.alignment, message.normalized_alignment]
                        .into_iter()
                        .flatten()
                    {
                        let (starts, durations) = (
                            wire.char_start_times_ms.len(),
                            wire.chars_durations_ms.len(),
                        );
                        let a = Alignment::from(wire);
                        assert_eq!(a.char_start_ms.len(), starts);
                        assert_eq!(a.char_dur_ms.len(), durations);
                    }
                }
            });
    }
}
