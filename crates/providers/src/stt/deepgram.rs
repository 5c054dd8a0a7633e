//! Deepgram live transcription (`/v1/listen`, Nova models) as an [`SttProtocol`] (the Flux
//! endpoint, `/v2/listen`, is the same protocol with [`Endpoint::Flux`]): live is configured
//! by the URL's query, audio as binary frames, `KeepAlive`, `Finalize` and `CloseStream` text
//! messages; `Results`, `SpeechStarted` and `UtteranceEnd` become neutral [`SttEvent`]s and the
//! closing `Metadata` summary ends the stream. The socket itself is the generic driver's
//! (`stt/driver.rs`).
//!
//! Protocol: `docs/providers/deepgram-stt.md`.

use bytes::Bytes;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::error::ProviderError;
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEvent, Word};
use crate::ws;

/// Provider name used in errors.
pub(crate) const PROVIDER: &str = "deepgram";
/// Deepgram's public websocket host.
pub(crate) const DEFAULT_BASE: &str = "wss://api.deepgram.com";
/// Which Deepgram endpoint a session talks to: all that differs between live and Flux on the
/// wire besides the URL.
pub(crate) enum Endpoint {
    /// `/v1/listen`: `KeepAlive` and `Finalize` messages, `Results` parsing.
    Live,
    /// `/v2/listen`: no keep-alive message, so 20 ms of silence (shared, never copied);
    /// `ForceEndTurn`; `TurnInfo` parsing.
    Flux {
        /// 20 ms of silence in the session's encoding.
        silence: Bytes,
    },
}

/// The Deepgram protocol of one session (live or Flux).
pub struct Deepgram {
    url: Url,
    api_key: String,
    endpoint: Endpoint,
}

impl Deepgram {
    /// A session on `endpoint` at `url` with `cfg`'s key.
    pub(crate) fn new(cfg: &SttConfig, url: Url, endpoint: Endpoint) -> Self {
        Self {
            url,
            api_key: cfg.api_key.clone(),
            endpoint,
        }
    }
}

/// Build the live protocol for `cfg` (URL and key); no connection is made.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    Ok(Box::new(Deepgram::new(
        cfg,
        listen_url(cfg)?,
        Endpoint::Live,
    )))
}

impl SttProtocol for Deepgram {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Token {}", self.api_key.trim()))]
    }

    fn error_header(&self) -> Option<&'static str> {
        Some("dg-error")
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        Message::Binary(audio)
    }

    fn keepalive(&mut self) -> Option<Message> {
        Some(match &self.endpoint {
            Endpoint::Live => Message::text(r#"{"type":"KeepAlive"}"#),
            Endpoint::Flux { silence } => Message::Binary(silence.clone()),
        })
    }

    fn finalize(&mut self) -> Option<Message> {
        Some(match self.endpoint {
            Endpoint::Live => Message::text(r#"{"type":"Finalize"}"#),
            Endpoint::Flux { .. } => Message::text(r#"{"type":"ForceEndTurn"}"#),
        })
    }

    fn close(&mut self) -> Option<Message> {
        Some(Message::text(r#"{"type":"CloseStream"}"#))
    }

    fn parse_text(&mut self, text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
        match self.endpoint {
            Endpoint::Live => parse_live(text, offset_s, out),
            Endpoint::Flux { .. } => crate::stt::deepgram_flux::parse(text, offset_s, out),
        }
    }
}

/// Whether `model` takes `keywords=Word:INTENSIFIER` (nova-2, nova(-1), enhanced, base).
pub fn model_takes_keywords(model: &str) -> bool {
    !model.starts_with("nova-3")
        && (model.starts_with("nova") || model.starts_with("enhanced") || model.starts_with("base"))
}

/// Whether `model` takes repeated `keyterm` (nova-3; Flux handles its own).
pub fn model_takes_keyterms(model: &str) -> bool {
    model.starts_with("nova-3")
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Format an intensifier without a trailing `.0` for whole numbers (`Telnyx:2`).
fn intensifier_str(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e6 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// The `/v1/listen` URL with every query parameter mapped from `cfg` (§2.1).
pub fn listen_url(cfg: &SttConfig) -> Result<Url, ProviderError> {
    let mut url = ws::ws_url(
        PROVIDER,
        cfg.base_url.as_deref(),
        DEFAULT_BASE,
        "/v1/listen",
    )?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("model", &cfg.model);
        if let Some(language) = cfg.language.as_deref().filter(|l| !l.is_empty()) {
            q.append_pair("language", language);
        }
        q.append_pair("encoding", cfg.encoding.as_deepgram());
        q.append_pair("sample_rate", &cfg.sample_rate_hz.to_string());
        q.append_pair("channels", "1");
        q.append_pair("punctuate", bool_str(cfg.punctuate));
        q.append_pair("smart_format", bool_str(cfg.smart_format));
        q.append_pair("interim_results", bool_str(cfg.interim_results));
        match cfg.endpointing_ms {
            None => {}
            Some(0) => {
                q.append_pair("endpointing", "false");
            }
            Some(ms) => {
                q.append_pair("endpointing", &ms.to_string());
            }
        }
        if let Some(ms) = cfg
            .utterance_end_ms
            .filter(|ms| *ms > 0 && cfg.interim_results)
        {
            q.append_pair("utterance_end_ms", &ms.to_string());
        }
        q.append_pair("vad_events", bool_str(cfg.vad_events));
        q.append_pair("diarize", bool_str(cfg.diarize));
        q.append_pair("detect_entities", bool_str(cfg.detect_entities));
        if model_takes_keywords(&cfg.model) {
            for k in cfg.keywords.iter().filter(|k| !k.keyword.trim().is_empty()) {
                let value = match k.intensifier {
                    Some(i) => format!("{}:{}", k.keyword.trim(), intensifier_str(i)),
                    None => k.keyword.trim().to_owned(),
                };
                q.append_pair("keywords", &value);
            }
        } else if !cfg.keywords.is_empty() {
            tracing::debug!(model = %cfg.model, "keywords ignored: model does not take them");
        }
        if model_takes_keyterms(&cfg.model) {
            for term in cfg.keyterms.iter().filter(|t| !t.trim().is_empty()) {
                q.append_pair("keyterm", term.trim());
            }
        } else if !cfg.keyterms.is_empty() {
            tracing::debug!(model = %cfg.model, "keyterms ignored: model does not take them");
        }
        if let Some(tag) = cfg.tag.as_deref().filter(|t| !t.is_empty()) {
            q.append_pair("tag", tag);
        }
        if cfg.flux_config.mip_opt_out {
            q.append_pair("mip_opt_out", "true");
        }
    }
    Ok(url)
}

// ----- live message parsing -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(tag = "type")]
enum LiveMessage {
    Results(ResultsMessage),
    UtteranceEnd {
        #[serde(default)]
        last_word_end: f64,
    },
    SpeechStarted {
        #[serde(default)]
        timestamp: f64,
    },
    Metadata {},
    Error {
        #[serde(default)]
        variant: String,
        #[serde(default)]
        description: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultsMessage {
    start: f64,
    duration: f64,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
    channel: ResultsChannel,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResultsChannel {
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alternative {
    transcript: String,
    confidence: f32,
    words: Vec<DgWord>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct DgWord {
    pub(crate) word: String,
    pub(crate) start: Option<f64>,
    pub(crate) end: Option<f64>,
    pub(crate) confidence: f32,
    pub(crate) punctuated_word: Option<String>,
    pub(crate) speaker: Option<u32>,
}

impl DgWord {
    /// Into a call-relative [`Word`]; missing times become `fallback_s`.
    pub(crate) fn into_word(self, offset_s: f64, fallback_s: f64) -> Word {
        Word {
            word: self.word,
            start_s: offset_s + self.start.unwrap_or(fallback_s),
            end_s: offset_s + self.end.unwrap_or(fallback_s),
            confidence: self.confidence,
            punctuated_word: self.punctuated_word,
            speaker: self.speaker,
        }
    }
}

/// Parse one `/v1/listen` server message into events (times shifted by `offset_s`).
pub(crate) fn parse_live(text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
    let message: LiveMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
            return Parsed::Unparseable;
        }
    };
    match message {
        LiveMessage::Results(r) => {
            let alternative = r
                .channel
                .alternatives
                .into_iter()
                .next()
                .unwrap_or_default();
            if alternative.transcript.trim().is_empty() && !r.speech_final && !r.from_finalize {
                return Parsed::Transcription;
            }
            let words = alternative
                .words
                .into_iter()
                .map(|w| w.into_word(offset_s, r.start))
                .collect();
            out.push(SttEvent::Transcript {
                text: alternative.transcript,
                is_final: r.is_final,
                speech_final: r.speech_final,
                from_finalize: r.from_finalize,
                confidence: alternative.confidence,
                start_s: offset_s + r.start,
                duration_s: r.duration,
                words,
            });
        }
        LiveMessage::UtteranceEnd { last_word_end } => {
            out.push(SttEvent::UtteranceEnd {
                last_word_end_s: offset_s + last_word_end,
            });
        }
        LiveMessage::SpeechStarted { timestamp } => {
            out.push(SttEvent::SpeechStarted {
                at_s: offset_s + timestamp,
            });
        }
        LiveMessage::Metadata {} => return Parsed::EndOfStream,
        LiveMessage::Error {
            variant,
            description,
        } => {
            tracing::warn!(provider = PROVIDER, %variant, %description, "server rejected a message");
            return Parsed::Other;
        }
        LiveMessage::Other => return Parsed::Other,
    }
    Parsed::Transcription
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_parsed_and_offset() {
        let mut out = Vec::new();
        let text = r#"{"type":"Results","start":1.0,"duration":0.5,"is_final":true,
            "speech_final":true,"from_finalize":false,"channel":{"alternatives":[{"transcript":
            "yes please","confidence":0.9,"words":[{"word":"yes","start":1.0,"end":1.2,
            "confidence":0.95,"punctuated_word":"Yes"}]}]}}"#;
        assert_eq!(parse_live(text, 10.0, &mut out), Parsed::Transcription);
        match out.first() {
            Some(SttEvent::Transcript {
                text,
                start_s,
                words,
                speech_final,
                ..
            }) => {
                assert_eq!(text, "yes please");
                assert!((start_s - 11.0).abs() < 1e-9);
                assert!(*speech_final);
                assert_eq!(words.len(), 1);
                assert!((words[0].end_s - 11.2).abs() < 1e-9);
                assert_eq!(words[0].punctuated_word.as_deref(), Some("Yes"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn empty_interims_are_skipped_and_metadata_detected() {
        let mut out = Vec::new();
        let empty =
            r#"{"type":"Results","is_final":false,"channel":{"alternatives":[{"transcript":""}]}}"#;
        assert_eq!(parse_live(empty, 0.0, &mut out), Parsed::Transcription);
        assert!(out.is_empty());
        assert_eq!(
            parse_live(r#"{"type":"Metadata","request_id":"x"}"#, 0.0, &mut out),
            Parsed::EndOfStream
        );
        assert_eq!(
            parse_live(r#"{"type":"Whatever"}"#, 0.0, &mut out),
            Parsed::Other
        );
        assert_eq!(parse_live("not json", 0.0, &mut out), Parsed::Unparseable);
        assert_eq!(
            parse_live(r#"{"type":"Results","channel":7}"#, 0.0, &mut out),
            Parsed::Unparseable
        );
        parse_live(
            r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.5}"#,
            1.0,
            &mut out,
        );
        assert_eq!(
            out,
            vec![SttEvent::UtteranceEnd {
                last_word_end_s: 3.5
            }]
        );
    }

    #[test]
    fn keyword_families() {
        assert!(model_takes_keywords("nova-2-phonecall"));
        assert!(model_takes_keywords("nova"));
        assert!(!model_takes_keywords("nova-3"));
        assert!(model_takes_keyterms("nova-3-medical"));
        assert_eq!(intensifier_str(2.0), "2");
        assert_eq!(intensifier_str(-1.5), "-1.5");
    }
}
