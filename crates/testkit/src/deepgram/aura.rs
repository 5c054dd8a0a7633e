//! Aura streaming TTS (`/v1/speak`) of the fake: `Metadata` first; `Speak` buffers text; `Flush`
//! synthesises the buffer as several binary µ-law frames (first byte and pacing from the latency
//! profile) then `Flushed{sequence_id}`; `Clear` drops everything pending and answers `Cleared`;
//! `Close` closes with 1000. An injected fault ([`crate::fault`]) strikes at the next `Speak` once
//! due (units: `Flushed` answers), or a new connection at once.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::listen::{Conn, sent};
use super::{Shared, deepgram_error, mulaw};
use crate::fault::FaultKind;

/// Whether `model` has the shape of an Aura voice model, `[modelname]-[voicename]-[language]`
/// (<https://developers.deepgram.com/docs/tts-models>): `aura-2-thalia-en`, `aura-asteria-en`.
/// Anything else (`rachel`, `turbo`) is refused at the handshake with 400 "No such
/// model/version combination found", as Deepgram answers it
/// (<https://github.com/crmitchelmore/justspeaktoit/pull/107>).
pub(super) fn is_voice_model(model: &str) -> bool {
    let Some(rest) = model.strip_prefix("aura-") else {
        return false;
    };
    let rest = rest.strip_prefix("2-").unwrap_or(rest);
    match rest.rsplit_once('-') {
        Some((voice, lang)) => {
            !voice.is_empty()
                && voice.chars().all(|c| c.is_ascii_lowercase())
                && (2..=3).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_lowercase())
        }
        None => false,
    }
}

/// One flush being played out.
struct Emission {
    chunks: VecDeque<Bytes>,
    next_at: Instant,
    sequence_id: u64,
    chunk_gap: Duration,
}

pub(super) async fn serve(
    ws: WebSocketStream<TcpStream>,
    shared: &Shared,
    index: usize,
    query: &[(String, String)],
    request_id: &str,
) {
    let cfg = shared.config();
    let get = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let speed = get("speed")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let model = get("model").unwrap_or_default().to_owned();
    let mut conn = Conn {
        ws,
        shared,
        index,
        fault: None,
    };
    if !conn.strike_new(&shared.tts_fault) {
        return;
    }
    let metadata = json!({"type": "Metadata", "request_id": request_id, "model_name": model,
        "model_version": "fake", "model_uuid": "fake-aura"});
    if !conn.send_json(&metadata, sent("Metadata", "", 0.0)).await {
        return;
    }
    let mut buffer = String::new();
    let mut emissions: VecDeque<Emission> = VecDeque::new();
    let mut next_sequence: u64 = 0;
    let mut sample_pos: u64 = 0;
    loop {
        let far = Instant::now() + Duration::from_secs(86_400);
        let next_at = emissions.front().map(|e| e.next_at).unwrap_or(far);
        tokio::select! {
            message = conn.ws.next() => {
                let text = match message {
                    Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                shared.record(index, |c| c.text_messages.push(text.clone()));
                let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match value.get("type").and_then(Value::as_str) {
                    Some("Speak") => {
                        if conn.fault.is_none() && let Some(kind) = shared.tts_fault.strike() {
                            if let FaultKind::HttpStatus(status) = kind {
                                let (code, description) = deepgram_error(status);
                                let msg = json!({"type": "Error", "err_code": code, "description": description});
                                conn.send_json(&msg, sent("Error", "", 0.0)).await;
                            }
                            if !conn.strike_live(kind).await {
                                return;
                            }
                        }
                        buffer.push_str(value.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some("Flush") => {
                        let chars = buffer.chars().count() as u64;
                        buffer.clear();
                        let total_ms = ((chars * cfg.aura_ms_per_char) as f64 / speed) as u64;
                        let chunk_ms = cfg.aura_chunk_ms.max(20);
                        let mut chunks = VecDeque::new();
                        let mut left = total_ms;
                        while left > 0 {
                            let ms = left.min(chunk_ms);
                            let samples = (ms * 8) as usize;
                            chunks.push_back(Bytes::from(mulaw::voice_like(sample_pos, samples)));
                            sample_pos += samples as u64;
                            left -= ms;
                        }
                        let start = emissions.back().map(|e| e.next_at).unwrap_or_else(Instant::now);
                        emissions.push_back(Emission {
                            chunks,
                            next_at: start.max(Instant::now()) + cfg.latency.tts_first_byte(),
                            sequence_id: next_sequence,
                            chunk_gap: cfg.latency.tts_generation_time(Duration::from_millis(chunk_ms)),
                        });
                        next_sequence += 1;
                    }
                    Some("Clear") => {
                        buffer.clear();
                        emissions.clear();
                        let sequence_id = next_sequence.saturating_sub(1);
                        let msg = json!({"type": "Cleared", "sequence_id": sequence_id});
                        if !conn.send_json(&msg, sent("Cleared", "", 0.0)).await {
                            return;
                        }
                    }
                    Some("Close") => {
                        shared.record(index, |c| c.close_streams += 1);
                        conn.close(1000, "").await;
                        return;
                    }
                    _ => {
                        let msg = json!({"type": "Warning", "description": "unknown message", "code": "UNKNOWN_MESSAGE_TYPE"});
                        if !conn.send_json(&msg, sent("Warning", "", 0.0)).await {
                            return;
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(next_at), if !emissions.is_empty() => {
                let Some(emission) = emissions.front_mut() else { continue };
                match emission.chunks.pop_front() {
                    Some(chunk) => {
                        emission.next_at = Instant::now() + emission.chunk_gap;
                        if !conn.send_audio(chunk).await {
                            return;
                        }
                    }
                    None => {
                        let sequence_id = emission.sequence_id;
                        emissions.pop_front();
                        let msg = json!({"type": "Flushed", "sequence_id": sequence_id});
                        if !conn.send_json(&msg, sent("Flushed", "", 0.0)).await {
                            return;
                        }
                        if conn.fault.is_none() {
                            shared.tts_fault.served();
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn aura_voice_models_have_the_documented_shape() {
        for ok in ["aura-2-thalia-en", "aura-asteria-en", "aura-2-celeste-es"] {
            assert!(super::is_voice_model(ok), "{ok}");
        }
        for bad in [
            "rachel",
            "turbo",
            "aura-2",
            "aura-2-thalia",
            "eleven_flash_v2_5",
            "",
        ] {
            assert!(!super::is_voice_model(bad), "{bad}");
        }
    }
}
