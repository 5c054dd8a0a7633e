//! ElevenLabs Scribe realtime speech-to-text (`wss://api.elevenlabs.io/v1/speech-to-text/realtime`)
//! as an [`SttProtocol`]: the key in `xi-api-key`, the session configured entirely by query
//! parameters (every `elevenlabs_config` field mapped), audio as base64 µ-law 8 kHz inside JSON
//! `input_audio_chunk` messages, `commit` as finalize.
//!
//! Events for the call core, the equivalent of Deepgram's:
//! - `partial_transcript` → an interim `Transcript` (when `interim_results`);
//! - `committed_transcript` (or, with `include_timestamps`, the `…_with_timestamps` message that
//!   follows it and carries the words) → a final `Transcript` with `speech_final`: a commit ends
//!   the caller's utterance, whether the server's VAD made it or this adapter did;
//! - its `language_code` (with `include_language_detection`) → `LanguageDetected` first.
//!
//! With `commit_strategy = manual` nothing is committed unless the client asks; the adapter
//! measures silence itself, in stream time (bytes of audio sent since the last
//! `partial_transcript` arrived), and sets `commit: true` on the audio chunk once
//! `manual_commit_silence_secs` passed (`manual_commit_short_silence_secs` for ≤ 3 words).
//!
//! Errors are `{"message_type": <type>, "error": <text>}` then a close: `auth_error`,
//! `input_error`, `quota_exceeded`, `unaccepted_terms_error`, `chunk_size_exceeded` end the
//! session; the others (`transcriber_error`, `rate_limited`, `queue_overflow`, …) are drops the
//! driver reconnects after.
//!
//! Sources (also in `docs/providers/elevenlabs-stt.md`):
//! <https://elevenlabs.io/docs/api-reference/speech-to-text/v-1-speech-to-text-realtime>,
//! <https://elevenlabs.io/docs/eleven-api/guides/how-to/speech-to-text/realtime/server-side-streaming>,
//! <https://raw.githubusercontent.com/elevenlabs/skills/main/speech-to-text/references/realtime-events.md>,
//! <https://raw.githubusercontent.com/elevenlabs/skills/main/speech-to-text/references/realtime-commit-strategies.md>.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::language::{bare_word, primary_language};
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEncoding, SttEvent, Word};
use crate::ws::ws_url;

/// Provider name as the record spells it.
const PROVIDER: &str = "elevenlabs";
/// ElevenLabs' public endpoint base.
const DEFAULT_BASE: &str = "wss://api.elevenlabs.io";
/// The websocket path.
const PATH: &str = "/v1/speech-to-text/realtime";
/// PCM rates (Hz) ElevenLabs takes as `pcm_<rate>`.
const PCM_RATES: [u32; 6] = [8000, 16000, 22050, 24000, 44100, 48000];
/// Error types after which no reconnect can succeed.
const FATAL_ERRORS: [&str; 5] = [
    "auth_error",
    "input_error",
    "quota_exceeded",
    "unaccepted_terms_error",
    "chunk_size_exceeded",
];
/// Documented error types after which a new session may work.
const RETRYABLE_ERRORS: [&str; 8] = [
    "error",
    "transcriber_error",
    "rate_limited",
    "queue_overflow",
    "resource_exhausted",
    "session_time_limit_exceeded",
    "commit_throttled",
    "insufficient_audio_activity",
];
/// Utterances of at most this many words commit after the short silence (manual strategy).
const SHORT_UTTERANCE_WORDS: usize = 3;

/// The ElevenLabs Scribe realtime protocol of one call's session.
pub struct ElevenLabs {
    url: Url,
    api_key: String,
    sample_rate_hz: u32,
    bytes_per_second: f64,
    interim_results: bool,
    include_timestamps: bool,
    /// `Some((long, short))` silences (s) with the manual commit strategy.
    manual_commit: Option<(f64, f64)>,
    /// Audio sent on this socket (s of stream time).
    sent_s: f64,
    /// Uncommitted speech: (stream time (s) of the last partial, its word count).
    pending: Option<(f64, usize)>,
    /// `finalize()` requests whose committed transcript has not arrived yet.
    finalizes: u32,
}

/// Build the ElevenLabs protocol for `cfg`; refuses a missing key or an audio format Scribe
/// cannot take before anything is sent.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    Ok(Box::new(ElevenLabs::new(cfg)?))
}

fn config_error(message: impl Into<String>) -> ProviderError {
    ProviderError::Config {
        provider: PROVIDER,
        message: message.into(),
    }
}

impl ElevenLabs {
    /// See [`protocol`].
    pub fn new(cfg: &SttConfig) -> Result<Self, ProviderError> {
        if cfg.api_key.trim().is_empty() {
            return Err(ProviderError::MissingKey { provider: PROVIDER });
        }
        if cfg.model.trim().is_empty() {
            return Err(config_error("a model is required (`scribe_v2_realtime`)"));
        }
        let audio_format = match cfg.encoding {
            SttEncoding::Mulaw if cfg.sample_rate_hz == 8000 => "ulaw_8000".to_owned(),
            SttEncoding::Linear16 if PCM_RATES.contains(&cfg.sample_rate_hz) => {
                format!("pcm_{}", cfg.sample_rate_hz)
            }
            other => {
                return Err(config_error(format!(
                    "Scribe realtime takes µ-law 8 kHz or 16-bit PCM, not {other:?} at {} Hz",
                    cfg.sample_rate_hz
                )));
            }
        };
        let e = &cfg.elevenlabs;
        let mut url = ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, PATH)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("model_id", &cfg.model);
            q.append_pair("audio_format", &audio_format);
            if let Some(lang) = cfg.language.as_deref().and_then(primary_language) {
                q.append_pair("language_code", &lang);
            }
            if let Some(s) = &e.commit_strategy {
                q.append_pair("commit_strategy", s);
            }
            let numbers = [
                ("vad_silence_threshold_secs", e.vad_silence_threshold_secs),
                ("vad_threshold", e.vad_threshold),
                (
                    "min_speech_duration_ms",
                    e.min_speech_duration_ms.map(f64::from),
                ),
                (
                    "min_silence_duration_ms",
                    e.min_silence_duration_ms.map(f64::from),
                ),
            ];
            for (key, value) in numbers {
                if let Some(v) = value {
                    q.append_pair(key, &v.to_string());
                }
            }
            let flags = [
                ("include_timestamps", e.include_timestamps),
                ("include_language_detection", e.include_language_detection),
            ];
            for (key, value) in flags {
                if let Some(v) = value {
                    q.append_pair(key, if v { "true" } else { "false" });
                }
            }
        }
        let manual = e.commit_strategy.as_deref() == Some("manual");
        Ok(Self {
            url,
            api_key: cfg.api_key.clone(),
            sample_rate_hz: cfg.sample_rate_hz,
            bytes_per_second: f64::from(cfg.bytes_per_second()),
            interim_results: cfg.interim_results,
            include_timestamps: e.include_timestamps == Some(true),
            manual_commit: manual.then(|| {
                (
                    e.manual_commit_silence_secs.unwrap_or(1.5),
                    e.manual_commit_short_silence_secs.unwrap_or(0.8),
                )
            }),
            sent_s: 0.0,
            pending: None,
            finalizes: 0,
        })
    }

    /// Manual strategy: whether the silence since the last partial is long enough to commit.
    fn silence_commits(&mut self) -> bool {
        let (Some((long_s, short_s)), Some((at_s, words))) = (self.manual_commit, self.pending)
        else {
            return false;
        };
        let needed = if words <= SHORT_UTTERANCE_WORDS {
            short_s
        } else {
            long_s
        };
        if self.sent_s - at_s >= needed {
            self.pending = None;
            return true;
        }
        false
    }
}

/// One server message (every kind shares this shape).
#[derive(Deserialize)]
struct ServerMessage {
    message_type: String,
    #[serde(default)]
    text: String,
    language_code: Option<String>,
    words: Option<Vec<TimedWord>>,
    error: Option<String>,
}

/// One entry of `committed_transcript_with_timestamps.words`.
#[derive(Deserialize)]
struct TimedWord {
    text: String,
    start: f64,
    end: f64,
    #[serde(rename = "type", default)]
    kind: String,
    logprob: Option<f64>,
}

fn words_of(timed: &[TimedWord], offset_s: f64) -> Vec<Word> {
    timed
        .iter()
        .filter(|w| w.kind != "spacing" && !w.text.trim().is_empty())
        .map(|w| Word {
            word: bare_word(&w.text),
            start_s: offset_s + w.start,
            end_s: offset_s + w.end,
            confidence: w.logprob.map_or(1.0, |lp| lp.exp().clamp(0.0, 1.0) as f32),
            punctuated_word: Some(w.text.trim().to_owned()),
            speaker: None,
        })
        .collect()
}

impl SttProtocol for ElevenLabs {
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
        vec![("xi-api-key", self.api_key.clone())]
    }

    fn start_messages(&mut self) -> Vec<Message> {
        // A new socket: its stream time starts at 0 and nothing is pending on it.
        self.sent_s = 0.0;
        self.pending = None;
        self.finalizes = 0;
        Vec::new()
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        self.sent_s += audio.len() as f64 / self.bytes_per_second.max(1.0);
        let commit = self.silence_commits();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&audio);
        Message::text(
            json!({
                "message_type": "input_audio_chunk",
                "audio_base_64": b64,
                "commit": commit,
                "sample_rate": self.sample_rate_hz,
            })
            .to_string(),
        )
    }

    fn keepalive(&mut self) -> Option<Message> {
        // No keep-alive message is documented: websocket pings keep the socket open.
        None
    }

    fn finalize(&mut self) -> Option<Message> {
        self.finalizes += 1;
        self.pending = None;
        Some(Message::text(r#"{"message_type":"commit"}"#))
    }

    fn close(&mut self) -> Option<Message> {
        // The client ends a session by closing the websocket.
        None
    }

    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
        let Ok(m) = serde_json::from_str::<ServerMessage>(text) else {
            return Parsed::Unparseable;
        };
        let kind = m.message_type.as_str();
        match kind {
            "session_started" => Parsed::Ready,
            "partial_transcript" => {
                let text = m.text.trim();
                if !text.is_empty() {
                    self.pending = Some((self.sent_s, text.split_whitespace().count()));
                    if self.interim_results {
                        out.push(transcript(text, false, false, Vec::new(), offset_s));
                    }
                }
                Parsed::Transcription
            }
            "committed_transcript" if self.include_timestamps => Parsed::Transcription,
            "committed_transcript" | "committed_transcript_with_timestamps" => {
                self.pending = None;
                let from_finalize = self.finalizes > 0;
                self.finalizes = self.finalizes.saturating_sub(1);
                if let Some(language) = m.language_code.filter(|l| !l.is_empty()) {
                    out.push(SttEvent::LanguageDetected { language });
                }
                let words = words_of(m.words.as_deref().unwrap_or_default(), offset_s);
                out.push(transcript(
                    m.text.trim(),
                    true,
                    from_finalize,
                    words,
                    offset_s,
                ));
                Parsed::Transcription
            }
            _ if FATAL_ERRORS.contains(&kind) => Parsed::Fatal(ProviderError::Stream {
                provider: PROVIDER,
                message: format!("{kind}: {}", m.error.unwrap_or_default()),
                retryable: false,
            }),
            // A retryable error (the server closes next; the driver reconnects with the buffered
            // audio), or a message this adapter does not know.
            _ => {
                debug_assert!(!FATAL_ERRORS.iter().any(|f| RETRYABLE_ERRORS.contains(f)));
                Parsed::Other
            }
        }
    }

    fn close_error(&self, _code: u16, reason: &str) -> Option<ProviderError> {
        FATAL_ERRORS
            .contains(&reason)
            .then(|| ProviderError::Stream {
                provider: PROVIDER,
                message: format!("closed: {reason}"),
                retryable: false,
            })
    }
}

/// A transcript event; a committed one is always the end of the caller's utterance.
fn transcript(
    text: &str,
    committed: bool,
    from_finalize: bool,
    words: Vec<Word>,
    offset_s: f64,
) -> SttEvent {
    let start_s = words.first().map_or(offset_s, |w| w.start_s);
    let end_s = words.last().map_or(start_s, |w| w.end_s);
    let confidence = if words.is_empty() {
        1.0
    } else {
        words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
    };
    SttEvent::Transcript {
        text: text.to_owned(),
        is_final: committed,
        speech_final: committed,
        from_finalize,
        confidence,
        start_s,
        duration_s: (end_s - start_s).max(0.0),
        words,
    }
}

#[cfg(test)]
#[path = "elevenlabs_tests.rs"]
mod tests;
