//! Soniox real-time speech-to-text (`wss://stt-rt.soniox.com/transcribe-websocket`) as an
//! [`SttProtocol`]: the key in `Authorization: Bearer`, a JSON start request built from
//! `stt_settings` + `soniox_config`, raw µ-law audio in binary frames, `keepalive`/`finalize`
//! control messages, an empty frame to end the stream.
//!
//! Soniox streams *tokens* (sub-word pieces; a leading space starts a new word). Final tokens are
//! sent once, non-final ones are re-sent until they become final. They map onto the neutral
//! events the call core already commits turns on, exactly like Deepgram's:
//! - the non-final tokens of a response → an interim `Transcript` (when `interim_results`);
//! - the final tokens of a response → a final `Transcript`; `speech_final` when the same
//!   response carries `<end>` (endpoint detection), `from_finalize` when it carries `<fin>`;
//! - an `<end>` that follows its final tokens in a later response → `UtteranceEnd`.
//!
//! Errors are one response `{error_code, error_type, error_message}` followed by a close:
//! 4xx ends the session ([`Parsed::Fatal`]); 5xx (503 "Cannot continue request") is a drop the
//! driver reconnects after.
//!
//! Sources (also in `docs/providers/soniox.md`):
//! <https://soniox.com/docs/stt/api-reference/websocket-api>,
//! <https://soniox.com/docs/guides/websocket-authentication>,
//! <https://soniox.com/docs/stt/rt/error-handling>,
//! <https://soniox.com/docs/stt/real-time-API/real-time-transcription>,
//! <https://soniox.com/docs/stt/real-time-API/endpoint-detection>,
//! <https://soniox.com/docs/stt/real-time-API/manual-finalization>.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::language::{bare_word, primary_language};
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEncoding, SttEvent, Word};
use crate::ws::ws_url;

/// Provider name as the record spells it.
const PROVIDER: &str = "soniox";
/// Soniox' public endpoint base.
const DEFAULT_BASE: &str = "wss://stt-rt.soniox.com";
/// The websocket path.
const PATH: &str = "/transcribe-websocket";
/// The endpoint marker token (endpoint detection).
const END: &str = "<end>";
/// The marker token that closes the answer to a `finalize`.
const FIN: &str = "<fin>";

/// The Soniox protocol of one call's session.
pub struct Soniox {
    url: Url,
    api_key: String,
    start: String,
    interim_results: bool,
    /// Final words reported since the last endpoint: an `<end>` arriving on its own then
    /// becomes an `UtteranceEnd` (nothing to end otherwise).
    finals_since_end: bool,
    /// End (s, call-relative) of the last final word.
    last_word_end_s: f64,
}

/// Build the Soniox protocol for `cfg`; refuses a missing key or an encoding Soniox cannot take
/// before anything is sent.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    Ok(Box::new(Soniox::new(cfg)?))
}

impl Soniox {
    /// See [`protocol`].
    pub fn new(cfg: &SttConfig) -> Result<Self, ProviderError> {
        if cfg.api_key.trim().is_empty() {
            return Err(ProviderError::MissingKey { provider: PROVIDER });
        }
        if cfg.model.trim().is_empty() {
            return Err(config_error("a model is required (e.g. `stt-rt-v5`)"));
        }
        Ok(Self {
            url: ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, PATH)?,
            api_key: cfg.api_key.clone(),
            start: start_request(cfg)?.to_string(),
            interim_results: cfg.interim_results,
            finals_since_end: false,
            last_word_end_s: 0.0,
        })
    }
}

fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message: message.into(),
    }
}

/// The start request (first message of every connection), every `soniox_config` field mapped.
fn start_request(cfg: &SttConfig) -> Result<Value, ProviderError> {
    let s = &cfg.soniox;
    let audio_format = match cfg.encoding {
        SttEncoding::Mulaw => "mulaw",
        SttEncoding::Alaw => "alaw",
        SttEncoding::Linear16 => "pcm_s16le",
    };
    let mut o = Map::new();
    o.insert("model".into(), json!(cfg.model));
    o.insert("audio_format".into(), json!(audio_format));
    o.insert("sample_rate".into(), json!(cfg.sample_rate_hz));
    o.insert("num_channels".into(), json!(s.num_channels.unwrap_or(1)));
    let hints = match &s.language_hints {
        Some(h) => h.clone(),
        None => cfg
            .language
            .as_deref()
            .and_then(primary_language)
            .into_iter()
            .collect(),
    };
    if !hints.is_empty() {
        o.insert("language_hints".into(), json!(hints));
    }
    let flags = [
        ("enable_endpoint_detection", s.enable_endpoint_detection),
        ("enable_speaker_diarization", s.enable_speaker_diarization),
        (
            "enable_language_identification",
            s.enable_language_identification,
        ),
    ];
    for (key, value) in flags {
        if let Some(v) = value {
            o.insert(key.into(), json!(v));
        }
    }
    if let Some(d) = s.max_endpoint_delay_ms {
        o.insert("max_endpoint_delay_ms".into(), json!(d));
    }
    let mut context = Map::new();
    if let Some(terms) = s.context_terms.as_ref().filter(|t| !t.is_empty()) {
        context.insert("terms".into(), json!(terms));
    }
    if let Some(text) = s.context_text.as_ref().filter(|t| !t.trim().is_empty()) {
        context.insert("text".into(), json!(text));
    }
    if let Some(general) = s.context_general.as_ref().filter(|g| !g.is_empty()) {
        context.insert("general".into(), json!(general));
    }
    if let Some(terms) = s
        .context_translation_terms
        .as_ref()
        .filter(|t| !t.is_empty())
    {
        context.insert("translation_terms".into(), json!(terms));
    }
    if !context.is_empty() {
        o.insert("context".into(), Value::Object(context));
    }
    if let Some(kind) = s.translation_type.as_deref() {
        let translation = match kind {
            "one_way" => json!({
                "type": "one_way",
                "target_language": s.translation_target_language.as_deref().ok_or_else(
                    || config_error("translation_type one_way needs translation_target_language"),
                )?,
            }),
            "two_way" => match (&s.translation_language_a, &s.translation_language_b) {
                (Some(a), Some(b)) => json!({"type": "two_way", "language_a": a, "language_b": b}),
                _ => {
                    return Err(config_error(
                        "translation_type two_way needs translation_language_a and _b",
                    ));
                }
            },
            other => {
                return Err(config_error(format!(
                    "translation_type `{other}` is not one_way or two_way"
                )));
            }
        };
        o.insert("translation".into(), translation);
    }
    Ok(Value::Object(o))
}

/// One response of the server.
#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    tokens: Vec<Token>,
    #[serde(default)]
    finished: bool,
    error_code: Option<u16>,
    error_type: Option<String>,
    error_message: Option<String>,
}

/// One token (a word or a piece of one; a leading space starts a new word).
#[derive(Deserialize)]
struct Token {
    text: String,
    start_ms: Option<f64>,
    end_ms: Option<f64>,
    #[serde(default = "one")]
    confidence: f32,
    #[serde(default)]
    is_final: bool,
    speaker: Option<String>,
    /// `none`/`original` (spoken) or `translation` (produced by translation).
    translation_status: Option<String>,
}

fn one() -> f32 {
    1.0
}

/// Spoken tokens of one kind (final or not) joined into a transcript with words.
struct Stretch {
    text: String,
    words: Vec<Word>,
}

impl Stretch {
    fn new(tokens: &[&Token], offset_s: f64) -> Self {
        let mut text = String::new();
        let mut words: Vec<Word> = Vec::new();
        for t in tokens {
            text.push_str(&t.text);
            let start_s = offset_s + t.start_ms.unwrap_or(0.0) / 1000.0;
            let end_s = offset_s + t.end_ms.unwrap_or(0.0) / 1000.0;
            let continues = !t.text.starts_with(' ') && !words.is_empty();
            match words.last_mut() {
                Some(w) if continues => {
                    let piece = w.punctuated_word.take().unwrap_or_default() + &t.text;
                    w.word = bare_word(&piece);
                    w.punctuated_word = Some(piece);
                    w.end_s = end_s;
                    w.confidence = w.confidence.min(t.confidence);
                }
                _ => {
                    let piece = t.text.trim().to_owned();
                    if piece.is_empty() {
                        continue;
                    }
                    words.push(Word {
                        word: bare_word(&piece),
                        start_s,
                        end_s,
                        confidence: t.confidence,
                        punctuated_word: Some(piece),
                        speaker: t.speaker.as_deref().and_then(|s| s.parse().ok()),
                    });
                }
            }
        }
        Self {
            text: text.trim().to_owned(),
            words,
        }
    }

    fn event(self, is_final: bool, speech_final: bool, from_finalize: bool) -> SttEvent {
        let start_s = self.words.first().map_or(0.0, |w| w.start_s);
        let end_s = self.words.last().map_or(start_s, |w| w.end_s);
        let confidence = if self.words.is_empty() {
            0.0
        } else {
            self.words.iter().map(|w| w.confidence).sum::<f32>() / self.words.len() as f32
        };
        SttEvent::Transcript {
            text: self.text,
            is_final,
            speech_final,
            from_finalize,
            confidence,
            start_s,
            duration_s: (end_s - start_s).max(0.0),
            words: self.words,
        }
    }
}

impl SttProtocol for Soniox {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn answers_silence(&self) -> bool {
        // Responses come for speech only (the fake sends none during silence either).
        false
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("Authorization", format!("Bearer {}", self.api_key))]
    }

    fn start_messages(&mut self) -> Vec<Message> {
        self.finals_since_end = false;
        vec![Message::text(self.start.clone())]
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        Message::Binary(audio)
    }

    fn keepalive(&mut self) -> Option<Message> {
        Some(Message::text(r#"{"type":"keepalive"}"#))
    }

    fn finalize(&mut self) -> Option<Message> {
        Some(Message::text(r#"{"type":"finalize"}"#))
    }

    fn close(&mut self) -> Option<Message> {
        Some(Message::Binary(Bytes::new()))
    }

    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
        let Ok(r) = serde_json::from_str::<Response>(text) else {
            return Parsed::Unparseable;
        };
        if let Some(code) = r.error_code {
            let kind = r.error_type.unwrap_or_default();
            let message = r.error_message.unwrap_or_default();
            if code >= 500 || code == 408 || code == 429 {
                // The server closes next; the driver reconnects with the buffered audio.
                return Parsed::Other;
            }
            return Parsed::Fatal(ProviderError::Http {
                provider: PROVIDER,
                status: code,
                message: format!("{kind}: {message}"),
                retryable: false,
            });
        }
        let spoken = |t: &&Token| t.translation_status.as_deref() != Some("translation");
        let end = r.tokens.iter().any(|t| t.is_final && t.text == END);
        let fin = r.tokens.iter().any(|t| t.is_final && t.text == FIN);
        let is_marker = |t: &&Token| t.text == END || t.text == FIN;
        let finals: Vec<&Token> = r
            .tokens
            .iter()
            .filter(|t| t.is_final && !is_marker(t))
            .filter(spoken)
            .collect();
        let interims: Vec<&Token> = r
            .tokens
            .iter()
            .filter(|t| !t.is_final)
            .filter(spoken)
            .collect();
        if !finals.is_empty() || fin {
            let stretch = Stretch::new(&finals, offset_s);
            if let Some(w) = stretch.words.last() {
                self.last_word_end_s = w.end_s;
                self.finals_since_end = !end;
            }
            if !stretch.text.is_empty() || fin || end {
                out.push(stretch.event(true, end, fin));
            }
        } else if end && std::mem::take(&mut self.finals_since_end) {
            out.push(SttEvent::UtteranceEnd {
                last_word_end_s: self.last_word_end_s,
            });
        }
        if self.interim_results && !interims.is_empty() {
            let stretch = Stretch::new(&interims, offset_s);
            if !stretch.text.is_empty() {
                out.push(stretch.event(false, false, false));
            }
        }
        if r.finished {
            Parsed::EndOfStream
        } else {
            Parsed::Transcription
        }
    }
}

#[cfg(test)]
#[path = "soniox_tests.rs"]
mod tests;
