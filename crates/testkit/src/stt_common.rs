//! What the strict realtime STT fakes (ElevenLabs Scribe, Speechmatics, Soniox) share: the
//! handshake capture, the per-connection record, an energy-based speech segmenter over decoded
//! audio, and the script of what callers "say". Each provider module only adds its own wire
//! protocol on top, so the three fakes segment the same audio the same way and a fixture call
//! (`fixtures/calls`) hears the same turns whichever provider carries it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::deepgram::mulaw;
use crate::twilio::{CallScript, UtteranceKind};

/// Everything one connection to a strict STT fake did, for assertions.
#[derive(Debug, Clone, Default)]
pub struct SttConnectionRecord {
    /// 0-based connection index.
    pub index: usize,
    /// Request path, e.g. `/v1/speech-to-text/realtime`.
    pub path: String,
    /// Query parameters in order (repeated keys kept).
    pub query: Vec<(String, String)>,
    /// Request headers (lower-case names) as received.
    pub headers: Vec<(String, String)>,
    /// HTTP status of a refused handshake (`None` when upgraded).
    pub rejected_status: Option<u16>,
    /// The session configuration the client sent (Speechmatics `StartRecognition`, Soniox
    /// start request), verbatim; `None` for ElevenLabs (configured by query) or when none came.
    pub config: Option<Value>,
    /// Every text message received, verbatim.
    pub text_messages: Vec<String>,
    /// Decoded audio bytes received (after base64 for ElevenLabs).
    pub audio_bytes: u64,
    /// Audio messages received (binary frames, or `input_audio_chunk` messages).
    pub audio_messages: u64,
    /// Every JSON message the fake sent, in order.
    pub sent: Vec<Value>,
    /// Close code and reason the fake sent (`None` if it never sent one).
    pub close: Option<(u16, String)>,
    /// Whether the connection has ended.
    pub ended: bool,
}

impl SttConnectionRecord {
    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sent messages whose discriminator field `field` equals `value`.
    pub fn sent_where(&self, field: &str, value: &str) -> Vec<&Value> {
        self.sent
            .iter()
            .filter(|m| m.get(field).and_then(Value::as_str) == Some(value))
            .collect()
    }
}

/// Connection records shared between the accept loop and the sessions.
#[derive(Default)]
pub(crate) struct Records {
    connections: Mutex<Vec<SttConnectionRecord>>,
}

impl Records {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SttConnectionRecord>> {
        match self.connections.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A copy of every record so far.
    pub(crate) fn snapshot(&self) -> Vec<SttConnectionRecord> {
        self.lock().clone()
    }

    /// Update the record of connection `index`.
    pub(crate) fn update(&self, index: usize, f: impl FnOnce(&mut SttConnectionRecord)) {
        if let Some(c) = self.lock().get_mut(index) {
            f(c);
        }
    }

    fn push(&self, mut record: SttConnectionRecord) -> usize {
        let mut all = self.lock();
        record.index = all.len();
        all.push(record);
        all.len() - 1
    }
}

/// What the handshake carried, for the provider's accept/refuse decision.
pub(crate) struct Handshake {
    pub(crate) index: usize,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Handshake {
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The provider's handshake verdict.
pub(crate) enum Verdict {
    /// Upgrade; optionally echo this `Sec-WebSocket-Protocol`.
    Accept { subprotocol: Option<String> },
    /// Refuse with this HTTP status, body and content type.
    Refuse {
        status: u16,
        body: String,
        content_type: &'static str,
    },
}

/// Runs the websocket handshake, recording it and applying `decide`. `None` when refused or
/// when the upgrade failed.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
pub(crate) async fn accept(
    stream: TcpStream,
    records: &Arc<Records>,
    decide: impl Fn(&Handshake) -> Verdict + Send + Sync + Unpin + 'static,
) -> Option<(WebSocketStream<TcpStream>, Handshake)> {
    let slot: Arc<Mutex<Option<Handshake>>> = Arc::new(Mutex::new(None));
    let slot_cb = slot.clone();
    let records_cb = records.clone();
    let callback =
        move |request: &Request, mut response: Response| -> Result<Response, ErrorResponse> {
            let path = request.uri().path().to_owned();
            let query: Vec<(String, String)> = request
                .uri()
                .query()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            let headers: Vec<(String, String)> = request
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let index = records_cb.push(SttConnectionRecord {
                path: path.clone(),
                query: query.clone(),
                headers: headers.clone(),
                ..SttConnectionRecord::default()
            });
            let hs = Handshake {
                index,
                path,
                query,
                headers,
            };
            match decide(&hs) {
                Verdict::Accept { subprotocol } => {
                    if let Some(p) = subprotocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
                        response.headers_mut().insert("sec-websocket-protocol", p);
                    }
                    if let Ok(mut s) = slot_cb.lock() {
                        *s = Some(hs);
                    }
                    Ok(response)
                }
                Verdict::Refuse {
                    status,
                    body,
                    content_type,
                } => {
                    records_cb.update(index, |c| {
                        c.rejected_status = Some(status);
                        c.ended = true;
                    });
                    let mut error = ErrorResponse::new(Some(body));
                    *error.status_mut() =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                    error
                        .headers_mut()
                        .insert("content-type", HeaderValue::from_static(content_type));
                    Err(error)
                }
            }
        };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(
            tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .read_buffer_size(crate::SMALL_WS_READ_BUFFER),
        ),
    )
    .await
    .ok()?;
    let hs = slot.lock().ok()?.take()?;
    Some((ws, hs))
}

/// An upgraded connection whose sends are recorded.
pub(crate) struct Conn {
    pub(crate) ws: WebSocketStream<TcpStream>,
    pub(crate) records: Arc<Records>,
    pub(crate) index: usize,
}

impl Conn {
    /// Send a JSON text message and record it. `false` when the socket is gone.
    pub(crate) async fn send_json(&mut self, value: Value) -> bool {
        let ok = self.ws.send(Message::text(value.to_string())).await.is_ok();
        self.records.update(self.index, |c| c.sent.push(value));
        ok
    }

    /// Close with `code` and `reason`, recorded, then wait (bounded) for the client's reply.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        self.records
            .update(self.index, |c| c.close = Some((code, reason.to_owned())));
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// Record a received text message.
    pub(crate) fn got_text(&self, text: &str) {
        let text = text.to_owned();
        self.records
            .update(self.index, |c| c.text_messages.push(text));
    }

    /// Record a received audio message of `bytes` bytes.
    pub(crate) fn got_audio(&self, bytes: usize) {
        self.records.update(self.index, |c| {
            c.audio_bytes += bytes as u64;
            c.audio_messages += 1;
        });
    }
}

/// How raw audio is encoded, so the segmenter can measure its energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// G.711 µ-law, one byte a sample.
    Mulaw,
    /// G.711 A-law, one byte a sample.
    Alaw,
    /// Signed 16-bit little-endian PCM.
    PcmS16le,
    /// 32-bit float little-endian PCM.
    PcmF32le,
}

impl Encoding {
    fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Mulaw | Encoding::Alaw => 1,
            Encoding::PcmS16le => 2,
            Encoding::PcmF32le => 4,
        }
    }

    fn decode(self, b: &[u8]) -> i16 {
        match self {
            Encoding::Mulaw => mulaw::decode(b[0]),
            Encoding::Alaw => crate::synth::alaw_decode(b[0]),
            Encoding::PcmS16le => i16::from_le_bytes([b[0], b[1]]),
            Encoding::PcmF32le => {
                let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (f.clamp(-1.0, 1.0) * 32767.0) as i16
            }
        }
    }
}

/// Tunables of the energy segmenter shared by the strict STT fakes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SegmenterConfig {
    /// Mean absolute linear amplitude above which a 20 ms frame counts as speech.
    pub energy_threshold: f32,
    /// Speech (ms) in a row before a segment starts (filters clicks).
    pub min_speech_ms: u64,
    /// Interim results every this much speech (ms).
    pub interim_every_ms: u64,
}

impl Default for SegmenterConfig {
    fn default() -> Self {
        Self {
            energy_threshold: 400.0,
            min_speech_ms: 60,
            interim_every_ms: 250,
        }
    }
}

/// What one 20 ms frame changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum SegmentEvent {
    /// Speech began at `start_s` (stream seconds).
    Started { start_s: f64 },
    /// Speech goes on; `speech_ms` of it so far (time for an interim result).
    Interim { speech_ms: u64 },
    /// Silence reached the end threshold: speech ran from `start_s` to `end_s`.
    Ended { start_s: f64, end_s: f64 },
}

/// Energy segmentation of a decoded stream into speech segments, 20 ms frames.
pub(crate) struct Segmenter {
    cfg: SegmenterConfig,
    encoding: Encoding,
    frame_bytes: usize,
    frame_ms: u64,
    pending: Vec<u8>,
    samples_per_s: f64,
    samples: u64,
    run_ms: u64,
    in_speech: bool,
    seg_start_s: f64,
    last_voice_s: f64,
    silence_ms: u64,
    since_interim_ms: u64,
    speech_ms: u64,
    end_silence_ms: u64,
}

impl Segmenter {
    /// A segmenter for `encoding` at `sample_rate` Hz that ends a segment after
    /// `end_silence_ms` of silence.
    pub(crate) fn new(
        cfg: SegmenterConfig,
        encoding: Encoding,
        sample_rate: u32,
        end_silence_ms: u64,
    ) -> Self {
        let frame_samples = (sample_rate as usize / 50).max(1);
        Self {
            cfg,
            encoding,
            frame_bytes: frame_samples * encoding.bytes_per_sample(),
            frame_ms: 20,
            pending: Vec::new(),
            samples_per_s: f64::from(sample_rate.max(1)),
            samples: 0,
            run_ms: 0,
            in_speech: false,
            seg_start_s: 0.0,
            last_voice_s: 0.0,
            silence_ms: 0,
            since_interim_ms: 0,
            speech_ms: 0,
            end_silence_ms: end_silence_ms.max(20),
        }
    }

    /// Stream time (s) of the audio consumed so far.
    pub(crate) fn now_s(&self) -> f64 {
        self.samples as f64 / self.samples_per_s
    }

    /// Silence (ms) since the last speech frame.
    pub(crate) fn silence_ms(&self) -> u64 {
        self.silence_ms
    }

    /// Feed audio bytes; returns what happened, in order.
    pub(crate) fn push(&mut self, data: &[u8]) -> Vec<SegmentEvent> {
        let mut events = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let take = (self.frame_bytes - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.frame_bytes {
                let bps = self.encoding.bytes_per_sample();
                let n = self.frame_bytes / bps;
                let sum: u64 = self
                    .pending
                    .chunks_exact(bps)
                    .map(|b| u64::from(self.encoding.decode(b).unsigned_abs()))
                    .sum();
                self.pending.clear();
                self.samples += n as u64;
                let voice = sum as f32 / n as f32 > self.cfg.energy_threshold;
                self.frame(voice, &mut events);
            }
        }
        events
    }

    fn frame(&mut self, voice: bool, events: &mut Vec<SegmentEvent>) {
        let t = self.now_s();
        if voice {
            self.silence_ms = 0;
            self.run_ms += self.frame_ms;
            self.last_voice_s = t;
            if !self.in_speech && self.run_ms >= self.cfg.min_speech_ms.max(self.frame_ms) {
                self.in_speech = true;
                self.seg_start_s = (t - self.run_ms as f64 / 1000.0).max(0.0);
                self.since_interim_ms = 0;
                self.speech_ms = self.run_ms;
                events.push(SegmentEvent::Started {
                    start_s: self.seg_start_s,
                });
            } else if self.in_speech {
                self.speech_ms += self.frame_ms;
                self.since_interim_ms += self.frame_ms;
                if self.since_interim_ms >= self.cfg.interim_every_ms.max(self.frame_ms) {
                    self.since_interim_ms = 0;
                    events.push(SegmentEvent::Interim {
                        speech_ms: self.speech_ms,
                    });
                }
            }
            return;
        }
        self.run_ms = 0;
        self.silence_ms += self.frame_ms;
        if self.in_speech && self.silence_ms >= self.end_silence_ms {
            self.in_speech = false;
            events.push(SegmentEvent::Ended {
                start_s: self.seg_start_s,
                end_s: self.last_voice_s,
            });
        }
    }

    /// End the open segment now (a client's commit/finalize), if any.
    pub(crate) fn force_end(&mut self) -> Option<SegmentEvent> {
        if !self.in_speech {
            return None;
        }
        self.in_speech = false;
        Some(SegmentEvent::Ended {
            start_s: self.seg_start_s,
            end_s: self.last_voice_s,
        })
    }
}

/// The utterance texts one connection "hears", in order, then a fallback.
pub(crate) struct ScriptQueue {
    lines: VecDeque<String>,
    fallback: String,
}

impl ScriptQueue {
    pub(crate) fn new(lines: &[String], fallback: &str) -> Self {
        Self {
            lines: lines.iter().cloned().collect(),
            fallback: fallback.to_owned(),
        }
    }

    /// The next utterance's text.
    pub(crate) fn next_text(&mut self) -> String {
        self.lines
            .pop_front()
            .unwrap_or_else(|| self.fallback.clone())
    }
}

/// Picks the script of the n-th connection: its own entry, or the default.
pub(crate) fn script_for(
    connection_scripts: &[Vec<String>],
    default_script: &[String],
    n: usize,
    fallback: &str,
) -> ScriptQueue {
    ScriptQueue::new(
        connection_scripts
            .get(n)
            .map_or(default_script, Vec::as_slice),
        fallback,
    )
}

/// The texts a fake STT should "hear" for a fixture call: every utterance that is speech
/// (not `noise`), in time order. Use as a fake's `default_script` or a connection script.
pub fn script_lines(call: &CallScript) -> Vec<String> {
    call.utterances
        .iter()
        .filter(|u| u.kind != UtteranceKind::Noise && !u.text.trim().is_empty())
        .map(|u| u.text.clone())
        .collect()
}

/// The first `count` words of `text` (what an interim result shows).
pub(crate) fn first_words(text: &str, count: usize) -> String {
    text.split_whitespace()
        .take(count.max(1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How many words of an utterance an interim shows after `speech_ms` of speech (about three
/// words a second, never the whole line before the end).
pub(crate) fn interim_word_count(text: &str, speech_ms: u64) -> usize {
    let n = text.split_whitespace().count();
    ((speech_ms / 330) as usize + 1)
        .min(n.saturating_sub(1))
        .max(1)
}

/// Words of `text` spread evenly over `[start_s, end_s]`: (word, start, end).
pub(crate) fn word_times(text: &str, start_s: f64, end_s: f64) -> Vec<(String, f64, f64)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let n = words.len().max(1) as f64;
    let step = (end_s - start_s).max(0.0) / n;
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let s = start_s + step * i as f64;
            ((*w).to_owned(), round3(s), round3(s + step))
        })
        .collect()
}

/// Round to milliseconds.
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A random 32-hex-digit id (session ids and request ids).
pub(crate) fn hex_id() -> String {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_voice_between_silences() {
        let mut seg = Segmenter::new(SegmenterConfig::default(), Encoding::Mulaw, 8000, 300);
        let mut events = seg.push(&[mulaw::SILENCE; 1600]);
        events.extend(seg.push(&mulaw::voice_like(0, 8000)));
        events.extend(seg.push(&[mulaw::SILENCE; 4000]));
        assert!(matches!(events.first(), Some(SegmentEvent::Started { .. })));
        let ended: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, SegmentEvent::Ended { .. }))
            .collect();
        assert_eq!(ended.len(), 1);
        if let Some(SegmentEvent::Ended { start_s, end_s }) = ended.first() {
            assert!((start_s - 0.2).abs() < 0.05, "{start_s}");
            assert!((end_s - 1.2).abs() < 0.05, "{end_s}");
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, SegmentEvent::Interim { .. }))
        );
    }

    #[test]
    fn pcm16_is_decoded() {
        let mut seg = Segmenter::new(SegmenterConfig::default(), Encoding::PcmS16le, 16000, 200);
        let loud: Vec<u8> = (0..16000)
            .flat_map(|i| {
                let s: i16 = if i % 2 == 0 { 6000 } else { -6000 };
                s.to_le_bytes()
            })
            .collect();
        let events = seg.push(&loud);
        assert!(matches!(events.first(), Some(SegmentEvent::Started { .. })));
        assert!((seg.now_s() - 1.0).abs() < 1e-9);
    }
}
