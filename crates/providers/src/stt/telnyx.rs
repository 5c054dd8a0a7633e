//! Telnyx streaming speech-to-text (`wss://api.telnyx.com/v2/speech-to-text/transcription`) as
//! an [`SttProtocol`]: every setting is a query parameter fixed at connect (the engine from
//! `provider_config.transcription_engine`, Twilio's µ-law sent as is with
//! `input_format=mulaw&sample_rate=8000`), audio goes out as raw binary frames, and the text
//! controls are `Finalize` and `KeepAlive` (Deepgram engine only) and `CloseStream`. Results
//! `{transcript, is_final, speech_final, confidence}` become [`SttEvent::Transcript`]s, the
//! Deepgram engine's `utterance_end` becomes [`SttEvent::UtteranceEnd`], and an
//! `{"errors": [...]}` frame (the service closes right after) ends the session.
//!
//! Results carry no times, so a result is placed at the end of the audio sent so far on its
//! socket. Engines other than Deepgram send no `speech_final` and no utterance end (the docs
//! name none): their finals are segment ends after silence, so they are reported with
//! `speech_final` set, which ends the user's turn as Deepgram's endpointing does.
//!
//! Protocol (and which record settings are mapped): `docs/providers/telnyx-stt.md`, written
//! from <https://developers.telnyx.com/docs/voice/stt/websocket-streaming>,
//! <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/parameters>,
//! <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/parameters/audio-formats>,
//! <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/responses> and
//! <https://developers.telnyx.com/docs/voice/stt/websocket-streaming/errors>.

use bytes::Bytes;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::deepgram::{model_takes_keyterms, model_takes_keywords};
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEvent};
use crate::ws;

/// Provider name as the record spells it.
pub const PROVIDER: &str = "telnyx";
/// Telnyx's public websocket host.
pub const DEFAULT_BASE: &str = "wss://api.telnyx.com";
/// The endpoint's path.
pub const PATH: &str = "/v2/speech-to-text/transcription";
/// The engines `transcription_engine` accepts, as Telnyx spells them.
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
/// The engine when the record names none (the documented default).
pub const DEFAULT_ENGINE: &str = "Deepgram";

/// The Telnyx protocol of one session.
pub struct Telnyx {
    url: Url,
    api_key: String,
    /// The engine is Deepgram: `Finalize`, `KeepAlive`, `speech_final` and `utterance_end`.
    deepgram: bool,
    /// Bytes of audio per second, to turn the bytes sent into stream time.
    bytes_per_s: f64,
    /// Audio bytes sent on the current socket.
    sent_bytes: u64,
    /// Stream time (s) of the last final with words, for `utterance_end`.
    last_final_s: f64,
    /// A `Finalize` went out and its final has not come back yet.
    finalize_pending: bool,
}

/// The engine as Telnyx spells it, matched without regard to case; refuses unknown ones.
pub fn engine(name: Option<&str>) -> Result<&'static str, ProviderError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    let Some(name) = name else {
        return Ok(DEFAULT_ENGINE);
    };
    ENGINES
        .iter()
        .find(|e| e.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| ProviderError::Config {
            provider: PROVIDER,
            message: format!(
                "unknown provider_config.transcription_engine `{name}` (one of {ENGINES:?})"
            ),
        })
}

/// Whether `model` names a Deepgram model (sent only to the Deepgram engine).
fn deepgram_model(model: &str) -> bool {
    ["nova", "flux", "enhanced", "base"]
        .iter()
        .any(|p| model.starts_with(p))
}

/// The endpoint URL with every mapped setting of `cfg` as a query parameter.
pub fn transcription_url(cfg: &SttConfig) -> Result<Url, ProviderError> {
    let engine = engine(cfg.telnyx_engine.as_deref())?;
    let deepgram = engine == DEFAULT_ENGINE;
    let format = cfg.encoding.as_deepgram();
    let mut url = ws::ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, PATH)?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("transcription_engine", engine);
        let model = cfg.model.trim();
        if !model.is_empty() && (deepgram || !deepgram_model(model)) {
            q.append_pair("model", model);
        }
        q.append_pair("input_format", format);
        q.append_pair("sample_rate", &cfg.sample_rate_hz.to_string());
        if let Some(language) = cfg.language.as_deref().filter(|l| !l.is_empty()) {
            q.append_pair("language", language);
        }
        q.append_pair(
            "interim_results",
            if cfg.interim_results { "true" } else { "false" },
        );
        match cfg.endpointing_ms {
            None => {}
            Some(0) => {
                q.append_pair("endpointing", "false");
            }
            Some(ms) => {
                q.append_pair("endpointing", &ms.to_string());
            }
        }
        let terms: Vec<&str> = cfg
            .keyterms
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty() && !t.contains(','))
            .collect();
        if deepgram && model_takes_keyterms(model) && !terms.is_empty() {
            q.append_pair("keyterm", &terms.join(","));
        }
        let words: Vec<String> = cfg
            .keywords
            .iter()
            .filter(|k| !k.keyword.trim().is_empty() && !k.keyword.contains(','))
            .map(|k| match k.intensifier {
                Some(i) => format!("{}:{i}", k.keyword.trim()),
                None => k.keyword.trim().to_owned(),
            })
            .collect();
        if deepgram && model_takes_keywords(model) && !words.is_empty() {
            q.append_pair("keywords", &words.join(","));
        }
    }
    Ok(url)
}

/// Build the Telnyx protocol for `cfg` (URL and key); refuses an unknown engine and a missing
/// key. No connection is made.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::Config {
            provider: PROVIDER,
            message: "an API key is required".to_owned(),
        });
    }
    let url = transcription_url(cfg)?;
    Ok(Box::new(Telnyx {
        url,
        api_key: cfg.api_key.clone(),
        deepgram: engine(cfg.telnyx_engine.as_deref())? == DEFAULT_ENGINE,
        bytes_per_s: f64::from(cfg.bytes_per_second()),
        sent_bytes: 0,
        last_final_s: 0.0,
        finalize_pending: false,
    }))
}

impl Telnyx {
    /// Stream time (s) of the audio sent so far on this socket.
    fn sent_s(&self) -> f64 {
        self.sent_bytes as f64 / self.bytes_per_s
    }
}

impl SttProtocol for Telnyx {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn answers_silence(&self) -> bool {
        // Results come for speech only (the fake sends none during silence either).
        false
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {}", self.api_key.trim()))]
    }

    fn start_messages(&mut self) -> Vec<Message> {
        // A new socket's stream time starts at 0.
        self.sent_bytes = 0;
        self.last_final_s = 0.0;
        self.finalize_pending = false;
        Vec::new()
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        self.sent_bytes += audio.len() as u64;
        Message::Binary(audio)
    }

    fn keepalive(&mut self) -> Option<Message> {
        Some(if self.deepgram {
            Message::text(r#"{"type":"KeepAlive"}"#)
        } else {
            // Only the Deepgram engine knows KeepAlive; a ping keeps intermediaries open.
            Message::Ping(Bytes::new())
        })
    }

    fn finalize(&mut self) -> Option<Message> {
        if !self.deepgram {
            return None;
        }
        self.finalize_pending = true;
        Some(Message::text(r#"{"type":"Finalize"}"#))
    }

    fn close(&mut self) -> Option<Message> {
        Some(Message::text(r#"{"type":"CloseStream"}"#))
    }

    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
                return Parsed::Unparseable;
            }
        };
        if let Some(errors) = message.errors {
            return Parsed::Fatal(ProviderError::Stream {
                provider: PROVIDER,
                message: describe(&errors),
                retryable: false,
            });
        }
        let Some(transcript) = message.transcript else {
            return Parsed::Other;
        };
        let now_s = offset_s + self.sent_s();
        if message.utterance_end {
            out.push(SttEvent::UtteranceEnd {
                last_word_end_s: offset_s + self.last_final_s,
            });
            return Parsed::Transcription;
        }
        let text = transcript.trim().to_owned();
        let from_finalize = message.is_final && std::mem::take(&mut self.finalize_pending);
        if text.is_empty() && !from_finalize {
            return Parsed::Transcription;
        }
        if message.is_final && !text.is_empty() {
            self.last_final_s = self.sent_s();
        }
        out.push(SttEvent::Transcript {
            text,
            is_final: message.is_final,
            speech_final: message.is_final && (message.speech_final || !self.deepgram),
            from_finalize,
            confidence: message.confidence.unwrap_or(0.0),
            start_s: now_s,
            duration_s: 0.0,
            words: Vec::new(),
        });
        Parsed::Transcription
    }
}

/// One error of an `errors` frame.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ApiError {
    code: String,
    title: String,
    detail: String,
    source: Option<ErrorSource>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorSource {
    parameter: String,
}

/// `40007 Invalid Parameter (transcription_engine): …; …` for the error frame's errors.
fn describe(errors: &[ApiError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let param = e
                .source
                .as_ref()
                .map(|s| format!(" ({})", s.parameter))
                .unwrap_or_default();
            format!("{} {}{param}: {}", e.code, e.title, e.detail)
        })
        .collect();
    if parts.is_empty() {
        "error frame without errors".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Every server frame: a result, an utterance end or an error frame.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerMessage {
    transcript: Option<String>,
    is_final: bool,
    speech_final: bool,
    confidence: Option<f32>,
    utterance_end: bool,
    errors: Option<Vec<ApiError>>,
}

#[cfg(test)]
#[path = "telnyx_tests.rs"]
mod tests;
