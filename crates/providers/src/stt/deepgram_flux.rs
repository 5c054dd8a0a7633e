//! Deepgram Flux (`/v2/listen`) as an [`SttProtocol`]: conversational STT that detects the end
//! of a turn itself. `TurnInfo` events become [`SttEvent::StartOfTurn`], interim
//! [`SttEvent::Transcript`]s (`Update`), [`SttEvent::EagerEndOfTurn`], [`SttEvent::TurnResumed`]
//! and [`SttEvent::EndOfTurn`]. Flux has no `KeepAlive` message, so the keep-alive is 20 ms of
//! silence, and finalize sends `ForceEndTurn` (the [`Deepgram`] protocol's `Flux` endpoint). The
//! socket is the generic driver's.
//!
//! Protocol: `docs/providers/deepgram-flux.md`.

use bytes::Bytes;
use serde::Deserialize;
use url::Url;

use crate::error::ProviderError;
use crate::stt::deepgram::{DEFAULT_BASE, Deepgram, DgWord, Endpoint, PROVIDER};
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{SttConfig, SttEncoding, SttEvent};
use crate::ws;

/// Build the Flux protocol for `cfg` (URL, key, keep-alive silence); no connection is made.
pub fn protocol(cfg: &SttConfig) -> Result<Box<dyn SttProtocol>, ProviderError> {
    let fill = match cfg.encoding {
        SttEncoding::Mulaw => 0xFF,
        SttEncoding::Alaw => 0xD5,
        SttEncoding::Linear16 => 0x00,
    };
    let len = (cfg.bytes_per_second() / 50).max(1) as usize;
    let silence = Bytes::from(vec![fill; len]);
    Ok(Box::new(Deepgram::new(
        cfg,
        flux_url(cfg)?,
        Endpoint::Flux { silence },
    )))
}

/// The `/v2/listen` URL with every query parameter mapped from `cfg` (§2.2).
pub fn flux_url(cfg: &SttConfig) -> Result<Url, ProviderError> {
    let mut url = ws::ws_url(
        PROVIDER,
        cfg.base_url.as_deref(),
        DEFAULT_BASE,
        "/v2/listen",
    )?;
    let flux = &cfg.flux_config;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("model", &cfg.model);
        q.append_pair("encoding", cfg.encoding.as_deepgram());
        q.append_pair("sample_rate", &cfg.sample_rate_hz.to_string());
        if let Some(v) = flux.eot_threshold {
            q.append_pair("eot_threshold", &v.to_string());
        }
        if let Some(v) = flux.eager_eot_threshold {
            q.append_pair("eager_eot_threshold", &v.to_string());
        }
        if let Some(v) = flux.eot_timeout_ms {
            q.append_pair("eot_timeout_ms", &v.to_string());
        }
        for term in cfg.keyterms.iter().filter(|t| !t.trim().is_empty()) {
            q.append_pair("keyterm", term.trim());
        }
        if cfg.model.contains("multi") {
            for hint in flux.language_hints.iter().filter(|h| !h.is_empty()) {
                q.append_pair("language_hint", hint);
            }
        }
        if let Some(tag) = cfg.tag.as_deref().filter(|t| !t.is_empty()) {
            q.append_pair("tag", tag);
        }
        if flux.mip_opt_out {
            q.append_pair("mip_opt_out", "true");
        }
    }
    Ok(url)
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum FluxMessage {
    TurnInfo(TurnInfo),
    Error {
        #[serde(default)]
        code: String,
        #[serde(default)]
        description: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TurnInfo {
    event: String,
    transcript: String,
    words: Vec<DgWord>,
    end_of_turn_confidence: f32,
    audio_window_start: f64,
    audio_window_end: f64,
}

/// Parse one `/v2/listen` server message into events (times shifted by `offset_s`).
pub(crate) fn parse(text: &str, offset_s: f64, out: &mut Vec<SttEvent>) -> Parsed {
    let message: FluxMessage = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(provider = PROVIDER, error = %e, "unparseable Flux message");
            return Parsed::Unparseable;
        }
    };
    match message {
        FluxMessage::TurnInfo(turn) => {
            let start = turn.audio_window_start;
            match turn.event.as_str() {
                "StartOfTurn" => out.push(SttEvent::StartOfTurn),
                "Update" => {
                    if !turn.transcript.trim().is_empty() {
                        let confidence = mean_confidence(&turn.words);
                        out.push(SttEvent::Transcript {
                            text: turn.transcript,
                            is_final: false,
                            speech_final: false,
                            from_finalize: false,
                            confidence,
                            start_s: offset_s + start,
                            duration_s: (turn.audio_window_end - start).max(0.0),
                            words: turn
                                .words
                                .into_iter()
                                .map(|w| w.into_word(offset_s, start))
                                .collect(),
                        });
                    }
                }
                "EagerEndOfTurn" => out.push(SttEvent::EagerEndOfTurn {
                    transcript: turn.transcript,
                    confidence: turn.end_of_turn_confidence,
                }),
                "TurnResumed" => out.push(SttEvent::TurnResumed),
                "EndOfTurn" => out.push(SttEvent::EndOfTurn {
                    transcript: turn.transcript,
                    confidence: turn.end_of_turn_confidence,
                    words: turn
                        .words
                        .into_iter()
                        .map(|w| w.into_word(offset_s, start))
                        .collect(),
                }),
                other => {
                    tracing::debug!(
                        provider = PROVIDER,
                        event = other,
                        "unknown Flux TurnInfo event"
                    );
                }
            }
        }
        FluxMessage::Error { code, description } => {
            tracing::warn!(provider = PROVIDER, %code, %description, "Flux reported an error");
            return Parsed::Other;
        }
        FluxMessage::Other => return Parsed::Other,
    }
    Parsed::Transcription
}

fn mean_confidence(words: &[DgWord]) -> f32 {
    if words.is_empty() {
        return 0.0;
    }
    words.iter().map(|w| w.confidence).sum::<f32>() / words.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_info_maps_to_events() {
        let mut out = Vec::new();
        for msg in [
            r#"{"type":"Connected","request_id":"r","sequence_id":0}"#,
            r#"{"type":"TurnInfo","sequence_id":1,"event":"StartOfTurn","transcript":""}"#,
            r#"{"type":"TurnInfo","sequence_id":2,"event":"Update","transcript":"book a",
               "audio_window_start":1.0,"audio_window_end":1.5,
               "words":[{"word":"book","confidence":0.8},{"word":"a","confidence":0.6}]}"#,
            r#"{"type":"TurnInfo","sequence_id":3,"event":"EagerEndOfTurn","transcript":"book a",
               "end_of_turn_confidence":0.55}"#,
            r#"{"type":"TurnInfo","sequence_id":4,"event":"TurnResumed","transcript":"book a"}"#,
            r#"{"type":"TurnInfo","sequence_id":5,"event":"EndOfTurn","transcript":"book a table",
               "end_of_turn_confidence":0.9,"audio_window_start":1.0,
               "words":[{"word":"book","confidence":0.9,"start":1.1,"end":1.3}]}"#,
        ] {
            parse(msg, 2.0, &mut out);
        }
        assert_eq!(
            parse(r#"{"type":"Connected","sequence_id":0}"#, 0.0, &mut out),
            Parsed::Other
        );
        assert_eq!(
            parse(
                r#"{"type":"TurnInfo","event":"Update","transcript":""}"#,
                0.0,
                &mut out
            ),
            Parsed::Transcription,
            "an empty update still shows the provider at work"
        );
        assert_eq!(parse("{garbage", 0.0, &mut out), Parsed::Unparseable);
        assert_eq!(out.len(), 5);
        assert_eq!(out[0], SttEvent::StartOfTurn);
        match &out[1] {
            SttEvent::Transcript {
                text,
                is_final,
                start_s,
                words,
                ..
            } => {
                assert_eq!(text, "book a");
                assert!(!is_final);
                assert!((start_s - 3.0).abs() < 1e-9);
                assert!((words[0].start_s - 3.0).abs() < 1e-9);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(&out[2], SttEvent::EagerEndOfTurn { confidence, .. } if (*confidence - 0.55).abs() < 1e-6)
        );
        assert_eq!(out[3], SttEvent::TurnResumed);
        match &out[4] {
            SttEvent::EndOfTurn {
                transcript, words, ..
            } => {
                assert_eq!(transcript, "book a table");
                assert!((words[0].start_s - 3.1).abs() < 1e-9);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
