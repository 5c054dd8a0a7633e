//! Speechmatics realtime transcription (`wss://<region>.rt.speechmatics.com/v2`) as an
//! [`SttProtocol`]: a `StartRecognition` message configures each (re)connected socket and audio
//! waits for `RecognitionStarted`; audio goes out as binary `AddAudio` frames (counted, so that
//! `EndOfStream` names the last one); `ForceEndOfUtterance` finalises. `AddPartialTranscript`
//! and `AddTranscript` become interim and final [`SttEvent::Transcript`]s and `EndOfUtterance`
//! becomes [`SttEvent::UtteranceEnd`], which ends the user's turn in the call core as Deepgram's
//! `UtteranceEnd` does. `Error` messages and close codes become typed errors: fatal ones end the
//! session, the ones the docs call retryable end in a reconnect.
//!
//! Protocol (and which record settings are mapped): `docs/providers/speechmatics.md`, written
//! from <https://docs.speechmatics.com/api-ref/realtime-transcription-websocket>,
//! <https://docs.speechmatics.com/rt-api-ref> and
//! <https://docs.speechmatics.com/speech-to-text/realtime/turn-detection>.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEncoding, SttEvent, Word};
use crate::ws;

/// Provider name as the record spells it.
pub const PROVIDER: &str = "speechmatics";
/// Shortest `max_delay` (s) the service accepts.
pub const MIN_MAX_DELAY_S: f64 = 0.7;
/// Longest `end_of_utterance_silence_trigger` (s) the service accepts.
pub const MAX_EOU_TRIGGER_S: f64 = 2.0;
/// End-of-utterance silence (s) when the record leaves it unset (the record's default).
pub const DEFAULT_EOU_TRIGGER_S: f64 = 1.0;
/// Fewest / most speakers `speaker_diarization_config.max_speakers` accepts.
pub const MAX_SPEAKERS_RANGE: (u8, u8) = (2, 100);

/// The documented error `type`s of an `Error` message (and the close reasons that carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// 4001: the key is not valid.
    NotAuthorised,
    /// 4002: the account has no credit.
    InsufficientFunds,
    /// 4003: the account may not use this feature.
    NotAllowed,
    /// 4004: the language (model) is not available.
    InvalidModel,
    /// 4005: too many concurrent sessions; retry after 5–10 s.
    QuotaExceeded,
    /// 4006: the session's time limit was reached.
    TimelimitExceeded,
    /// 4013: the session failed on the service side; retry after 5–10 s.
    JobError,
    /// 1011: internal error; retry after 5–10 s.
    InternalError,
    /// 1003: a message or setting the service refused (`protocol_error`, `invalid_message`,
    /// `invalid_config`, `invalid_audio_type`, and any type this adapter does not know).
    Refused,
}

impl ErrorType {
    /// The type named in an `Error` message or a close reason.
    pub fn parse(kind: &str) -> Self {
        match kind {
            "not_authorised" => Self::NotAuthorised,
            "insufficient_funds" => Self::InsufficientFunds,
            "not_allowed" => Self::NotAllowed,
            "invalid_model" => Self::InvalidModel,
            "quota_exceeded" => Self::QuotaExceeded,
            "timelimit_exceeded" => Self::TimelimitExceeded,
            "job_error" => Self::JobError,
            "internal_error" => Self::InternalError,
            _ => Self::Refused,
        }
    }

    /// The type a close code stands for; `None` for codes that are no error (1000, 1001…).
    pub fn from_close_code(code: u16) -> Option<Self> {
        Some(match code {
            4001 => Self::NotAuthorised,
            4002 => Self::InsufficientFunds,
            4003 => Self::NotAllowed,
            4004 => Self::InvalidModel,
            4005 => Self::QuotaExceeded,
            4006 => Self::TimelimitExceeded,
            4013 => Self::JobError,
            1011 => Self::InternalError,
            1003 => Self::Refused,
            _ => return None,
        })
    }

    /// Whether a new session may succeed (the docs recommend retrying only these).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::QuotaExceeded | Self::JobError | Self::InternalError
        )
    }

    /// As a provider error carrying the service's text.
    fn error(self, text: String) -> ProviderError {
        ProviderError::Stream {
            provider: PROVIDER,
            message: text,
            retryable: self.retryable(),
        }
    }
}

/// The Speechmatics protocol of one session.
pub struct Speechmatics {
    url: Url,
    api_key: String,
    /// `StartRecognition`, built once from the configuration, sent on every (re)connect.
    start: String,
    /// `AddAudio` frames sent on the current socket (the service numbers them from 1).
    sent_seq: u64,
    /// Highest `AudioAdded.seq_no` received on the current socket.
    acked_seq: u64,
    /// A `ForceEndOfUtterance` went out and its final has not come back yet.
    finalize_pending: bool,
}

/// The region's realtime host (`speechmatics_config.region`; the record's default is `us`).
fn region_host(region: Option<&str>) -> Result<&'static str, ProviderError> {
    match region
        .map(str::trim)
        .unwrap_or("us")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "us" | "us2" => Ok("wss://us2.rt.speechmatics.com"),
        "us1" => Ok("wss://us1.rt.speechmatics.com"),
        "eu" | "eu2" => Ok("wss://eu2.rt.speechmatics.com"),
        "eu1" => Ok("wss://eu1.rt.speechmatics.com"),
        other => Err(ProviderError::Config {
            provider: PROVIDER,
            message: format!("unknown speechmatics_config.region `{other}` (us or eu)"),
        }),
    }
}

/// The service's language code for a record language: the primary subtag (`en-US` → `en`),
/// Mandarin as `cmn`.
fn language_code(language: Option<&str>) -> String {
    let primary = language
        .and_then(|l| l.split(['-', '_']).next())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .unwrap_or("en")
        .to_ascii_lowercase();
    if primary == "zh" {
        "cmn".to_owned()
    } else {
        primary
    }
}

/// `StartRecognition` for `cfg`, every mapped record setting included.
pub fn start_recognition(cfg: &SttConfig) -> Result<Value, ProviderError> {
    let refuse = |message: String| ProviderError::Config {
        provider: PROVIDER,
        message,
    };
    let encoding = match cfg.encoding {
        SttEncoding::Mulaw => "mulaw",
        SttEncoding::Linear16 => "pcm_s16le",
        SttEncoding::Alaw => return Err(refuse("A-law audio is not accepted".to_owned())),
    };
    let sm = &cfg.speechmatics;
    let mut tc = Map::new();
    tc.insert(
        "language".into(),
        json!(language_code(cfg.language.as_deref())),
    );
    if let Some(locale @ ("en-US" | "en-GB" | "en-AU")) = cfg.language.as_deref() {
        tc.insert("output_locale".into(), json!(locale));
    }
    match cfg.model.trim() {
        "" | "default" => {}
        point @ ("standard" | "enhanced") => {
            tc.insert("operating_point".into(), json!(point));
        }
        other => {
            return Err(refuse(format!(
                "unknown model `{other}` (standard or enhanced)"
            )));
        }
    }
    if let Some(delay) = sm.max_delay {
        tc.insert("max_delay".into(), json!(delay.max(MIN_MAX_DELAY_S)));
    }
    let partials = sm.enable_partials.unwrap_or(cfg.interim_results);
    tc.insert("enable_partials".into(), json!(partials));
    if sm.enable_diarization == Some(true) {
        tc.insert("diarization".into(), json!("speaker"));
        if let Some(max) = sm.speaker_diarization_max_speakers {
            let max = max.clamp(MAX_SPEAKERS_RANGE.0, MAX_SPEAKERS_RANGE.1);
            tc.insert(
                "speaker_diarization_config".into(),
                json!({ "max_speakers": max }),
            );
        }
    } else {
        tc.insert("diarization".into(), json!("none"));
    }
    let vocab: Vec<Value> = sm
        .additional_vocab
        .iter()
        .flatten()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .map(|w| json!({ "content": w }))
        .collect();
    if !vocab.is_empty() {
        tc.insert("additional_vocab".into(), Value::Array(vocab));
    }
    let trigger = sm
        .utterance_silence_timeout
        .unwrap_or(DEFAULT_EOU_TRIGGER_S)
        .clamp(0.0, MAX_EOU_TRIGGER_S);
    tc.insert(
        "conversation_config".into(),
        json!({ "end_of_utterance_silence_trigger": trigger }),
    );
    if let Some(remove) = sm.remove_disfluencies {
        tc.insert(
            "transcript_filtering_config".into(),
            json!({ "remove_disfluencies": remove }),
        );
    }
    if !cfg.punctuate {
        tc.insert(
            "punctuation_overrides".into(),
            json!({ "permitted_marks": [] }),
        );
    }
    tc.insert("enable_entities".into(), json!(cfg.smart_format));
    Ok(json!({
        "message": "StartRecognition",
        "audio_format": {"type": "raw", "encoding": encoding, "sample_rate": cfg.sample_rate_hz},
        "transcription_config": Value::Object(tc),
    }))
}

/// Build the Speechmatics protocol for `cfg`: URL (base URL or region host), key and
/// `StartRecognition`; refuses settings the service cannot take. No connection is made.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    let default_base = region_host(cfg.speechmatics.region.as_deref())?;
    let url = ws::ws_url(PROVIDER, cfg.base_url.as_deref(), default_base, "/v2")?;
    Ok(Box::new(Speechmatics {
        url,
        api_key: cfg.api_key.clone(),
        start: start_recognition(cfg)?.to_string(),
        sent_seq: 0,
        acked_seq: 0,
        finalize_pending: false,
    }))
}

impl SttProtocol for Speechmatics {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {}", self.api_key.trim()))]
    }

    fn start_messages(&mut self) -> Vec<Message> {
        // A new socket numbers its audio afresh.
        self.sent_seq = 0;
        self.acked_seq = 0;
        self.finalize_pending = false;
        vec![Message::text(self.start.clone())]
    }

    fn waits_for_ready(&self) -> bool {
        true
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        self.sent_seq += 1;
        Message::Binary(audio)
    }

    fn keepalive(&mut self) -> Option<Message> {
        // The docs ask for websocket pings on an idle socket; an empty ping allocates nothing.
        Some(Message::Ping(Bytes::new()))
    }

    fn finalize(&mut self) -> Option<Message> {
        self.finalize_pending = true;
        Some(Message::text(r#"{"message":"ForceEndOfUtterance"}"#))
    }

    fn close(&mut self) -> Option<Message> {
        Some(Message::text(format!(
            r#"{{"message":"EndOfStream","last_seq_no":{}}}"#,
            self.sent_seq
        )))
    }

    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
                return Parsed::Unparseable;
            }
        };
        match message {
            ServerMessage::RecognitionStarted {} => Parsed::Ready,
            ServerMessage::AudioAdded { seq_no } => {
                // The service took the audio: it is at work even while the caller is silent
                // (it sends no transcript for silence).
                self.acked_seq = self.acked_seq.max(seq_no);
                Parsed::Transcription
            }
            ServerMessage::AddPartialTranscript(t) => {
                t.push_to(out, false, false, offset_s);
                Parsed::Transcription
            }
            ServerMessage::AddTranscript(t) => {
                t.push_to(out, true, self.finalize_pending, offset_s);
                Parsed::Transcription
            }
            ServerMessage::EndOfUtterance { metadata } => {
                self.finalize_pending = false;
                out.push(SttEvent::UtteranceEnd {
                    last_word_end_s: offset_s + metadata.end_time,
                });
                Parsed::Transcription
            }
            ServerMessage::EndOfTranscript {} => Parsed::EndOfStream,
            ServerMessage::Error { kind, reason } => {
                let error_type = ErrorType::parse(&kind);
                let error = error_type.error(format!("{kind}: {reason}"));
                if error_type.retryable() {
                    // The close that follows ends this socket; the driver reconnects.
                    tracing::warn!(provider = PROVIDER, %error, "retryable session error");
                    Parsed::Other
                } else {
                    Parsed::Fatal(error)
                }
            }
            ServerMessage::Warning { kind, reason } => {
                tracing::warn!(provider = PROVIDER, %kind, %reason, "service warning");
                Parsed::Other
            }
            ServerMessage::Info {} | ServerMessage::Other => Parsed::Other,
        }
    }

    fn close_error(&self, code: u16, reason: &str) -> Option<ProviderError> {
        let error_type = ErrorType::from_close_code(code)?;
        (!error_type.retryable()).then(|| error_type.error(format!("close {code} {reason}")))
    }
}

// ----- server messages ------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(tag = "message")]
enum ServerMessage {
    RecognitionStarted {},
    AudioAdded {
        #[serde(default)]
        seq_no: u64,
    },
    AddPartialTranscript(TranscriptMessage),
    AddTranscript(TranscriptMessage),
    EndOfUtterance {
        #[serde(default)]
        metadata: Metadata,
    },
    EndOfTranscript {},
    Error {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        reason: String,
    },
    Warning {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        reason: String,
    },
    Info {},
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metadata {
    start_time: f64,
    end_time: f64,
    transcript: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TranscriptMessage {
    metadata: Metadata,
    results: Vec<SmResult>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SmResult {
    #[serde(rename = "type")]
    kind: String,
    start_time: f64,
    end_time: f64,
    alternatives: Vec<SmAlternative>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SmAlternative {
    content: String,
    confidence: f32,
    speaker: Option<String>,
}

/// Speaker label `S3` → 3; `UU` (unknown) and anything else → `None`.
fn speaker_index(label: Option<&str>) -> Option<u32> {
    label?.strip_prefix('S')?.parse().ok()
}

impl TranscriptMessage {
    /// Push the transcript as one event (skipped when it holds no words, unless it answers a
    /// finalize).
    fn push_to(self, out: &mut Vec<SttEvent>, is_final: bool, from_finalize: bool, offset_s: f64) {
        let mut words: Vec<Word> = Vec::with_capacity(self.results.len());
        for r in self.results {
            let Some(alt) = r.alternatives.into_iter().next() else {
                continue;
            };
            if r.kind == "punctuation" {
                if let Some(last) = words.last_mut() {
                    let base = last
                        .punctuated_word
                        .take()
                        .unwrap_or_else(|| last.word.clone());
                    last.punctuated_word = Some(base + &alt.content);
                }
                continue;
            }
            words.push(Word {
                word: alt.content.to_lowercase(),
                start_s: offset_s + r.start_time,
                end_s: offset_s + r.end_time,
                confidence: alt.confidence,
                punctuated_word: Some(alt.content),
                speaker: speaker_index(alt.speaker.as_deref()),
            });
        }
        let text = self.metadata.transcript.trim().to_owned();
        if text.is_empty() && !from_finalize {
            return;
        }
        let confidence = if words.is_empty() {
            0.0
        } else {
            words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
        };
        out.push(SttEvent::Transcript {
            text,
            is_final,
            speech_final: false,
            from_finalize,
            confidence,
            start_s: offset_s + self.metadata.start_time,
            duration_s: (self.metadata.end_time - self.metadata.start_time).max(0.0),
            words,
        });
    }
}

#[cfg(test)]
#[path = "speechmatics_tests.rs"]
mod tests;
