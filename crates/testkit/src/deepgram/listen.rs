//! Live (`/v1/listen`) and Flux (`/v2/listen`) sessions of the fake: energy-based segmentation
//! of the received µ-law, scripted text, protocol messages in the documented order.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{FinalTiming, Script, SentMessage, Shared, deepgram_error, mulaw};
use crate::fault::{FaultKind, FaultState, garbage_json};

/// 20 ms of 8 kHz µ-law.
const FRAME_BYTES: usize = 160;
const FRAME_MS: u64 = 20;
const BYTES_PER_S: f64 = 8000.0;

/// A connection plus its record, so every send is recorded with its time.
pub(super) struct Conn<'a> {
    pub(super) ws: WebSocketStream<TcpStream>,
    pub(super) shared: &'a Shared,
    pub(super) index: usize,
    /// An injected fault this connection suffers from now on: `Stall` swallows every message,
    /// `Garbage` replaces each with malformed JSON.
    pub(super) fault: Option<FaultKind>,
}

impl Conn<'_> {
    /// Send a JSON text message and record it. `false` when the socket is gone.
    pub(super) async fn send_json(&mut self, value: &Value, mut record: SentMessage) -> bool {
        let text = match self.fault {
            Some(FaultKind::Stall) => return true,
            Some(FaultKind::Garbage) => {
                record.kind = format!("garbage:{}", record.kind);
                garbage_json(&value.to_string())
            }
            _ => value.to_string(),
        };
        let ok = self.ws.send(Message::text(text)).await.is_ok();
        record.at = Instant::now();
        self.shared.record(self.index, |c| c.sent.push(record));
        ok
    }

    /// Send a binary audio frame (Aura): swallowed by a stall, malformed JSON text in its place
    /// under `Garbage`. `false` when the socket is gone.
    pub(super) async fn send_audio(&mut self, audio: bytes::Bytes) -> bool {
        let message = match self.fault {
            Some(FaultKind::Stall) => return true,
            Some(FaultKind::Garbage) => {
                Message::text(garbage_json(r#"{"type":"Audio","data":"AAAA"}"#))
            }
            _ => Message::Binary(audio),
        };
        let ok = self.ws.send(message).await.is_ok();
        self.shared
            .record(self.index, |c| c.sent.push(sent("audio", "", 0.0)));
        ok
    }

    /// A new connection while `fault` is due: struck at once (`Drop`: `false`, the caller ends
    /// the connection without a close frame; `Stall`/`Garbage`: from the first message on).
    /// Handshake refusals (`HttpStatus`) happen before, in the accept callback.
    pub(super) fn strike_new(&mut self, fault: &FaultState) -> bool {
        match fault.strike_if(|k| !matches!(k, FaultKind::HttpStatus(_))) {
            Some(FaultKind::Drop) => {
                self.shared.record(self.index, |c| c.dropped_by_fake = true);
                false
            }
            other => {
                self.fault = other;
                true
            }
        }
    }

    /// A live connection is struck by `kind`: `false` when it ends here (`Drop`: no close
    /// frame; `HttpStatus`: the provider's error close).
    pub(super) async fn strike_live(&mut self, kind: FaultKind) -> bool {
        match kind {
            FaultKind::Drop => {
                self.shared.record(self.index, |c| c.dropped_by_fake = true);
                false
            }
            FaultKind::HttpStatus(status) => {
                self.close(1011, deepgram_error(status).0).await;
                false
            }
            FaultKind::Stall | FaultKind::Garbage => {
                self.fault = Some(kind);
                true
            }
        }
    }

    /// Close with `code` and `reason`, recorded.
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let kind = format!("close:{code}:{reason}");
        self.shared.record(self.index, |c| {
            c.close_code = Some(code);
            c.sent.push(sent(&kind, "", 0.0));
        });
        // Let the client's close reply arrive (bounded).
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

pub(super) fn sent(kind: &str, transcript: &str, audio_s: f64) -> SentMessage {
    SentMessage {
        at: Instant::now(),
        kind: kind.to_owned(),
        transcript: transcript.to_owned(),
        is_final: false,
        speech_final: false,
        from_finalize: false,
        audio_s,
    }
}

/// Lower-case word without punctuation (Deepgram's `word`).
fn bare_word(token: &str) -> String {
    token
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '\'' || *c == '[' || *c == ']')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first `count` words of `text`.
fn first_words(text: &str, count: usize) -> String {
    text.split_whitespace()
        .take(count)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words spread evenly over `[start, end]`.
fn words_json(text: &str, start: f64, end: f64, punctuated: bool, with_times: bool) -> Vec<Value> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let n = tokens.len().max(1) as f64;
    let step = ((end - start).max(0.0)) / n;
    tokens
        .iter()
        .enumerate()
        .map(|(i, token)| {
            let mut w = json!({"word": bare_word(token), "confidence": 0.97});
            if with_times {
                w["start"] = json!(round3(start + step * i as f64));
                w["end"] = json!(round3(start + step * (i as f64 + 1.0)));
            }
            if punctuated {
                w["punctuated_word"] = json!(token);
            }
            w
        })
        .collect()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn transcript_of(text: &str, punctuated: bool) -> String {
    if punctuated {
        text.to_owned()
    } else {
        text.split_whitespace()
            .map(bare_word)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A Deepgram live final/interim result.
struct ResultSpec<'a> {
    text: &'a str,
    start: f64,
    end: f64,
    is_final: bool,
    speech_final: bool,
    from_finalize: bool,
}

struct Params {
    endpointing_ms: Option<u64>,
    interim: bool,
    utterance_end_ms: Option<u64>,
    vad_events: bool,
    punctuated: bool,
    eager: Option<f64>,
    eot_threshold: f64,
    eot_timeout_ms: u64,
}

impl Params {
    fn from_query(query: &[(String, String)]) -> Self {
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let truthy = |k: &str| get(k) == Some("true");
        Self {
            endpointing_ms: match get("endpointing") {
                None => Some(10),
                Some("false") => None,
                Some(v) => Some(v.parse().unwrap_or(10)),
            },
            interim: truthy("interim_results"),
            utterance_end_ms: get("utterance_end_ms").and_then(|v| v.parse().ok()),
            vad_events: truthy("vad_events"),
            punctuated: truthy("punctuate") || truthy("smart_format"),
            eager: get("eager_eot_threshold").and_then(|v| v.parse().ok()),
            eot_threshold: get("eot_threshold")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.7),
            eot_timeout_ms: get("eot_timeout_ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(5000),
        }
    }
}

struct PendingFinal {
    due: Instant,
    detected_at: Instant,
    text: String,
    start: f64,
    end: f64,
    speech_final: bool,
}

struct Session<'a> {
    conn: Conn<'a>,
    params: Params,
    flux: bool,
    request_id: String,
    script: Script,
    frame: Vec<u8>,
    bytes: u64,
    // detector
    run_ms: u64,
    run_start_s: f64,
    in_speech: bool,
    silence_ms: u64,
    seg_start_s: f64,
    last_voice_end_s: f64,
    text: Option<String>,
    interims: usize,
    since_interim_ms: u64,
    silence_since_result_ms: u64,
    // live
    pending: Option<PendingFinal>,
    utterance_end_due: Option<(f64, f64)>,
    // flux
    seq: u64,
    turn_open: bool,
    turn_index: u64,
    eager_sent: bool,
}

enum Flow {
    Continue,
    Stop,
}

pub(super) async fn serve(
    ws: WebSocketStream<TcpStream>,
    shared: &Shared,
    index: usize,
    query: &[(String, String)],
    request_id: &str,
    script: Script,
    flux: bool,
) {
    let cfg = shared.config();
    let stt_ordinal = shared.with_state(|s| {
        s.connections
            .iter()
            .take(index)
            .filter(|c| c.path != "/v1/speak" && c.rejected_status.is_none())
            .count()
    });
    let drop_at = cfg
        .drop_after_ms
        .filter(|_| stt_ordinal < cfg.drop_connections)
        .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    let mut s = Session {
        conn: Conn {
            ws,
            shared,
            index,
            fault: None,
        },
        params: Params::from_query(query),
        flux,
        request_id: request_id.to_owned(),
        script,
        frame: Vec::with_capacity(FRAME_BYTES),
        bytes: 0,
        run_ms: 0,
        run_start_s: 0.0,
        in_speech: false,
        silence_ms: 0,
        seg_start_s: 0.0,
        last_voice_end_s: 0.0,
        text: None,
        interims: 0,
        since_interim_ms: 0,
        silence_since_result_ms: 0,
        pending: None,
        utterance_end_due: None,
        seq: 0,
        turn_open: false,
        turn_index: 0,
        eager_sent: false,
    };
    if !s.conn.strike_new(&shared.stt_fault) {
        return;
    }
    if flux {
        let connected = json!({"type": "Connected", "request_id": s.request_id, "sequence_id": 0});
        s.seq = 1;
        if !s
            .conn
            .send_json(&connected, sent("Connected", "", 0.0))
            .await
        {
            return;
        }
    }
    let idle = Duration::from_millis(cfg.idle_timeout_ms.max(1));
    let mut last_activity = tokio::time::Instant::now();
    loop {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
        let pending_due = s
            .pending
            .as_ref()
            .map(|p| tokio::time::Instant::from_std(p.due))
            .unwrap_or(far);
        tokio::select! {
            message = s.conn.ws.next() => {
                let flow = match message {
                    Some(Ok(Message::Binary(data))) => {
                        if data.is_empty() {
                            s.conn.shared.record(index, |c| c.empty_frames += 1);
                            // Deepgram treats an empty frame as end of stream.
                            s.close_stream().await;
                            Flow::Stop
                        } else {
                            last_activity = tokio::time::Instant::now();
                            s.conn.shared.record(index, |c| {
                                c.audio_bytes += data.len() as u64;
                                c.binary_frames += 1;
                                c.largest_binary_frame =
                                    c.largest_binary_frame.max(data.len() as u64);
                            });
                            s.audio(&data).await
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        let text = text.as_str().to_owned();
                        s.conn.shared.record(index, |c| c.text_messages.push(text.clone()));
                        let kind = serde_json::from_str::<Value>(&text)
                            .ok()
                            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                        match kind.as_deref() {
                            Some("KeepAlive") => {
                                last_activity = tokio::time::Instant::now();
                                s.conn.shared.record(index, |c| c.keepalives += 1);
                                Flow::Continue
                            }
                            Some("Finalize") if !flux => {
                                s.conn.shared.record(index, |c| c.finalizes += 1);
                                s.finalize().await
                            }
                            Some("ForceEndTurn") if flux => {
                                s.conn.shared.record(index, |c| c.finalizes += 1);
                                s.force_end_turn().await
                            }
                            Some("CloseStream") => {
                                s.conn.shared.record(index, |c| c.close_streams += 1);
                                s.close_stream().await;
                                Flow::Stop
                            }
                            _ => {
                                let error = json!({"type": "Error", "variant": "SchemaError",
                                    "description": "unknown or malformed message", "message": text});
                                s.conn.send_json(&error, sent("Error", "", 0.0)).await;
                                Flow::Continue
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Flow::Stop,
                    Some(Ok(_)) => Flow::Continue,
                };
                if matches!(flow, Flow::Stop) {
                    return;
                }
            }
            _ = tokio::time::sleep_until(pending_due), if s.pending.is_some() => {
                if !s.send_pending(false).await {
                    return;
                }
            }
            _ = tokio::time::sleep_until(last_activity + idle) => {
                s.conn.close(1011, "NET-0001").await;
                return;
            }
            _ = tokio::time::sleep_until(drop_at.unwrap_or(far)), if drop_at.is_some() => {
                s.conn.shared.record(index, |c| c.dropped_by_fake = true);
                // Drop the TCP connection without a close frame.
                return;
            }
        }
    }
}

impl Session<'_> {
    fn now_s(&self) -> f64 {
        self.bytes as f64 / BYTES_PER_S
    }

    async fn audio(&mut self, data: &[u8]) -> Flow {
        let mut rest = data;
        while !rest.is_empty() {
            let take = (FRAME_BYTES - self.frame.len()).min(rest.len());
            self.frame.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.frame.len() == FRAME_BYTES {
                self.bytes += FRAME_BYTES as u64;
                let voice =
                    mulaw::mean_abs(&self.frame) > self.conn.shared.config().energy_threshold;
                self.frame.clear();
                let ok = if self.flux {
                    self.flux_frame(voice).await
                } else {
                    self.live_frame(voice).await
                };
                if !ok {
                    return Flow::Stop;
                }
            }
        }
        Flow::Continue
    }

    /// Returns true when a segment starts with this voiced frame.
    fn onset(&mut self, voice: bool) -> bool {
        let t = self.now_s();
        if !voice {
            self.run_ms = 0;
            return false;
        }
        if self.run_ms == 0 {
            self.run_start_s = t - FRAME_MS as f64 / 1000.0;
        }
        self.run_ms += FRAME_MS;
        self.run_ms >= self.conn.shared.config().min_speech_ms.max(FRAME_MS)
    }

    fn gap_ms(&self) -> u64 {
        let min_gap = self.conn.shared.config().min_segment_gap_ms;
        self.params
            .endpointing_ms
            .unwrap_or(0)
            .max(min_gap)
            .max(FRAME_MS)
    }

    async fn live_frame(&mut self, voice: bool) -> bool {
        let t = self.now_s();
        let cfg = self.conn.shared.config();
        if voice {
            self.silence_ms = 0;
            self.silence_since_result_ms = 0;
            if self.in_speech {
                self.last_voice_end_s = t;
                return self.tick_interim(t).await;
            } else if self.onset(true) {
                self.in_speech = true;
                self.run_ms = 0;
                self.seg_start_s = self.run_start_s;
                self.last_voice_end_s = t;
                self.utterance_end_due = None;
                self.interims = 0;
                self.since_interim_ms = 0;
                self.text = Some(if self.script.is_timed() {
                    String::new()
                } else {
                    self.conn.shared.next_text(&mut self.script)
                });
                if self.params.vad_events {
                    let msg = json!({"type": "SpeechStarted", "channel": [0, 1],
                        "timestamp": round3(self.seg_start_s)});
                    if !self
                        .conn
                        .send_json(&msg, sent("SpeechStarted", "", self.seg_start_s))
                        .await
                    {
                        return false;
                    }
                }
            }
            return true;
        }
        self.onset(false);
        if self.in_speech {
            self.silence_ms += FRAME_MS;
            if self.silence_ms < self.gap_ms() {
                // Deepgram transcribes the audio as it comes, voiced or not: the interim cadence
                // runs on through the silence before the endpoint, so a word shorter than the
                // cadence still gets its interim before the final.
                return self.tick_interim(t).await;
            }
            self.in_speech = false;
            let end = self.last_voice_end_s;
            if self.script.is_timed() && self.text.is_some() {
                self.text = Some(self.script.words_until(end, true));
            }
            if let Some(text) = self.text.take() {
                let now = Instant::now();
                self.pending = Some(PendingFinal {
                    due: now + cfg.latency.stt_final_delay(),
                    detected_at: now,
                    text,
                    start: self.seg_start_s,
                    end,
                    speech_final: self.params.endpointing_ms.is_some(),
                });
            }
            if self.params.interim
                && let Some(ms) = self.params.utterance_end_ms
            {
                self.utterance_end_due = Some((end + ms as f64 / 1000.0, end));
            }
            self.silence_since_result_ms = 0;
            return true;
        }
        self.silence_since_result_ms += FRAME_MS;
        if !self.maybe_utterance_end().await {
            return false;
        }
        // Deepgram finalises silence too (empty transcripts), with or without interim results.
        if self.pending.is_none()
            && self.silence_since_result_ms >= cfg.empty_result_every_ms.max(FRAME_MS)
        {
            self.silence_since_result_ms = 0;
            let start = t - cfg.empty_result_every_ms as f64 / 1000.0;
            let spec = ResultSpec {
                text: "",
                start,
                end: t,
                is_final: true,
                speech_final: false,
                from_finalize: false,
            };
            if !self.send_result(&spec).await {
                return false;
            }
        }
        true
    }

    /// One more frame of an open segment: the growing interim result every
    /// `interim_every_ms` (with `interim_results`). `false` when the socket is gone.
    async fn tick_interim(&mut self, t: f64) -> bool {
        self.since_interim_ms += FRAME_MS;
        if !self.params.interim
            || self.since_interim_ms < self.conn.shared.config().interim_every_ms
        {
            return true;
        }
        self.since_interim_ms = 0;
        let Some(text) = self.text.clone() else {
            return true;
        };
        let n = text.split_whitespace().count();
        self.interims += 1;
        let shown = if self.script.is_timed() {
            self.script.words_until(t, false)
        } else {
            first_words(&text, self.interims.min(n.saturating_sub(1)).max(1))
        };
        if shown.is_empty() {
            return true;
        }
        let spec = ResultSpec {
            text: &shown,
            start: self.seg_start_s,
            end: t,
            is_final: false,
            speech_final: false,
            from_finalize: false,
        };
        self.send_result(&spec).await
    }

    async fn maybe_utterance_end(&mut self) -> bool {
        if self.pending.is_some() {
            return true;
        }
        if let Some((due, last_word_end)) = self.utterance_end_due
            && self.now_s() >= due
        {
            self.utterance_end_due = None;
            let msg = json!({"type": "UtteranceEnd", "channel": [0, 1],
                "last_word_end": round3(last_word_end)});
            return self
                .conn
                .send_json(&msg, sent("UtteranceEnd", "", last_word_end))
                .await;
        }
        true
    }

    async fn send_result(&mut self, spec: &ResultSpec<'_>) -> bool {
        let punctuated = self.params.punctuated;
        let transcript = transcript_of(spec.text, punctuated);
        let msg = json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round3((spec.end - spec.start).max(0.0)),
            "start": round3(spec.start),
            "is_final": spec.is_final,
            "speech_final": spec.speech_final,
            "from_finalize": spec.from_finalize,
            "channel": {"alternatives": [{
                "transcript": transcript,
                "confidence": if spec.text.is_empty() { 0.0 } else { 0.97 },
                "words": words_json(spec.text, spec.start, spec.end, punctuated, true),
            }]},
            "metadata": {"request_id": self.request_id, "model_uuid": "fake-model",
                "model_info": {"name": "fake-nova", "version": "0", "arch": "fake"}},
        });
        let mut record = sent("Results", &transcript, spec.end);
        record.is_final = spec.is_final;
        record.speech_final = spec.speech_final;
        record.from_finalize = spec.from_finalize;
        self.conn.send_json(&msg, record).await
    }

    /// Send the pending final now (`from_finalize` when forced).
    async fn send_pending(&mut self, from_finalize: bool) -> bool {
        let Some(p) = self.pending.take() else {
            return true;
        };
        if self.flux {
            return self.send_end_of_turn(p).await;
        }
        let spec = ResultSpec {
            text: &p.text,
            start: p.start,
            end: p.end,
            is_final: true,
            speech_final: p.speech_final,
            from_finalize,
        };
        if !self.send_result(&spec).await {
            return false;
        }
        self.conn.shared.push_final(FinalTiming {
            connection: self.conn.index,
            transcript: transcript_of(&p.text, self.params.punctuated),
            speech_end_detected_at: p.detected_at,
            sent_at: Instant::now(),
            speech_end_s: p.end,
        });
        if !self.turn_served().await {
            return false;
        }
        self.maybe_utterance_end().await
    }

    /// A final / end of turn went out: one unit of the STT fault; it may strike right here.
    /// `false` when the connection ends.
    async fn turn_served(&mut self) -> bool {
        let fault = &self.conn.shared.stt_fault;
        fault.served();
        match fault.strike_if(|_| self.conn.fault.is_none()) {
            Some(kind) => self.conn.strike_live(kind).await,
            None => true,
        }
    }

    async fn finalize(&mut self) -> Flow {
        let ok = if self.pending.is_some() {
            self.send_pending(true).await
        } else if let Some(text) = self.text.take().filter(|_| self.in_speech) {
            let spec = ResultSpec {
                text: &text,
                start: self.seg_start_s,
                end: self.now_s(),
                is_final: true,
                speech_final: false,
                from_finalize: true,
            };
            self.send_result(&spec).await
        } else {
            let t = self.now_s();
            let spec = ResultSpec {
                text: "",
                start: t,
                end: t,
                is_final: true,
                speech_final: false,
                from_finalize: true,
            };
            self.send_result(&spec).await
        };
        if ok { Flow::Continue } else { Flow::Stop }
    }

    async fn close_stream(&mut self) {
        if self.flux {
            if self.turn_open
                && let Some(text) = self.text.clone()
            {
                let _ = self.send_turn_info("Update", &text, 0.0, false).await;
            }
            self.conn.close(1000, "").await;
            return;
        }
        if self.pending.is_some() {
            if !self.send_pending(false).await {
                return;
            }
        } else if let Some(text) = self.text.take().filter(|_| self.in_speech) {
            let spec = ResultSpec {
                text: &text,
                start: self.seg_start_s,
                end: self.last_voice_end_s,
                is_final: true,
                speech_final: true,
                from_finalize: false,
            };
            if !self.send_result(&spec).await {
                return;
            }
        }
        let metadata = json!({"type": "Metadata", "transaction_key": "deprecated",
            "request_id": self.request_id, "sha256": "", "created": "1970-01-01T00:00:00.000Z",
            "duration": round3(self.now_s()), "channels": 1, "models": ["fake-model"],
            "model_info": {"fake-model": {"name": "fake-nova", "version": "0", "arch": "fake"}}});
        if self
            .conn
            .send_json(&metadata, sent("Metadata", "", self.now_s()))
            .await
        {
            self.conn.close(1000, "").await;
        }
    }

    // ----- Flux ---------------------------------------------------------------------------

    async fn send_turn_info(
        &mut self,
        event: &str,
        text: &str,
        eot_confidence: f64,
        with_times: bool,
    ) -> bool {
        let end = if self.in_speech {
            self.now_s()
        } else {
            self.last_voice_end_s
        };
        let msg = json!({
            "type": "TurnInfo",
            "request_id": self.request_id,
            "sequence_id": self.seq,
            "event": event,
            "turn_index": self.turn_index,
            "audio_window_start": round3(self.seg_start_s),
            "audio_window_end": round3(end),
            "transcript": text,
            "words": words_json(text, self.seg_start_s, end, false, with_times),
            "end_of_turn_confidence": eot_confidence,
        });
        self.seq += 1;
        self.conn
            .send_json(&msg, sent(&format!("TurnInfo:{event}"), text, end))
            .await
    }

    async fn send_end_of_turn(&mut self, p: PendingFinal) -> bool {
        let confidence = (self.params.eot_threshold + 0.05).min(1.0);
        let ok = self
            .send_turn_info("EndOfTurn", &p.text, confidence, true)
            .await;
        self.conn.shared.push_final(FinalTiming {
            connection: self.conn.index,
            transcript: p.text,
            speech_end_detected_at: p.detected_at,
            sent_at: Instant::now(),
            speech_end_s: p.end,
        });
        self.turn_open = false;
        self.turn_index += 1;
        self.eager_sent = false;
        self.text = None;
        ok && self.turn_served().await
    }

    async fn flux_frame(&mut self, voice: bool) -> bool {
        let t = self.now_s();
        let cfg = self.conn.shared.config();
        if voice {
            self.silence_ms = 0;
            self.silence_since_result_ms = 0;
            if self.in_speech {
                self.last_voice_end_s = t;
                self.since_interim_ms += FRAME_MS;
                if self.since_interim_ms >= cfg.interim_every_ms {
                    self.since_interim_ms = 0;
                    if let Some(text) = self.text.clone() {
                        let n = text.split_whitespace().count();
                        self.interims += 1;
                        let shown = if self.script.is_timed() {
                            self.script.words_until(t, false)
                        } else {
                            first_words(&text, self.interims.min(n.saturating_sub(1)).max(1))
                        };
                        if shown.is_empty() {
                            return true;
                        }
                        if !self.send_turn_info("Update", &shown, 0.1, false).await {
                            return false;
                        }
                    }
                }
            } else if self.onset(true) {
                self.in_speech = true;
                self.run_ms = 0;
                self.last_voice_end_s = t;
                if self.pending.is_some() && !self.send_pending(false).await {
                    return false;
                }
                if self.turn_open {
                    if self.eager_sent {
                        self.eager_sent = false;
                        let text = self.text.clone().unwrap_or_default();
                        if !self.send_turn_info("TurnResumed", &text, 0.1, false).await {
                            return false;
                        }
                    }
                } else {
                    self.turn_open = true;
                    self.seg_start_s = self.run_start_s;
                    self.interims = 0;
                    self.since_interim_ms = 0;
                    self.text = Some(self.conn.shared.next_text(&mut self.script));
                    if !self.send_turn_info("StartOfTurn", "", 0.0, false).await {
                        return false;
                    }
                }
            }
            return true;
        }
        self.onset(false);
        if !self.turn_open {
            // Flux sends `Update`s for transcribed audio whatever it holds; between turns the
            // fake sends an empty one every `empty_result_every_ms` of silence.
            self.silence_since_result_ms += FRAME_MS;
            if self.silence_since_result_ms >= cfg.empty_result_every_ms.max(FRAME_MS) {
                self.silence_since_result_ms = 0;
                return self.send_turn_info("Update", "", 0.0, false).await;
            }
            return true;
        }
        if self.pending.is_some() {
            return true;
        }
        self.silence_ms += FRAME_MS;
        if self.in_speech
            && self.silence_ms
                >= cfg
                    .min_segment_gap_ms
                    .min(cfg.flux_eager_silence_ms)
                    .max(FRAME_MS)
        {
            self.in_speech = false;
        }
        if let Some(eager) = self.params.eager
            && !self.eager_sent
            && self.silence_ms >= cfg.flux_eager_silence_ms
        {
            self.eager_sent = true;
            let text = self.text.clone().unwrap_or_default();
            if !self
                .send_turn_info("EagerEndOfTurn", &text, (eager + 0.05).min(1.0), true)
                .await
            {
                return false;
            }
        }
        let eot_after = cfg.flux_eot_silence_ms.min(self.params.eot_timeout_ms);
        if self.silence_ms >= eot_after {
            self.in_speech = false;
            let now = Instant::now();
            self.pending = Some(PendingFinal {
                due: now + cfg.latency.stt_final_delay(),
                detected_at: now,
                text: self.text.clone().unwrap_or_default(),
                start: self.seg_start_s,
                end: self.last_voice_end_s,
                speech_final: true,
            });
        }
        true
    }

    async fn force_end_turn(&mut self) -> Flow {
        let ok = if self.pending.is_some() {
            self.send_pending(true).await
        } else if self.turn_open {
            let now = Instant::now();
            let p = PendingFinal {
                due: now,
                detected_at: now,
                text: self.text.clone().unwrap_or_default(),
                start: self.seg_start_s,
                end: self.last_voice_end_s,
                speech_final: true,
            };
            self.send_end_of_turn(p).await
        } else {
            true
        };
        if ok { Flow::Continue } else { Flow::Stop }
    }
}
