//! One accepted Cartesia websocket: contexts, buffering, generation of chunks and timestamps,
//! `flush_done`, `done`, cancel, the idle timeout and the failure knobs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::refusal::Refusal;
use super::request::{self, Generation};
use super::{CartesiaContextRecord, Shared};
use crate::synth::{self, RawEncoding};

/// Serves one accepted connection until it ends.
pub(super) async fn serve(
    ws: WebSocketStream<TcpStream>,
    shared: &Shared,
    index: usize,
    version: String,
) {
    let mut session = Session {
        ws,
        shared,
        index,
        version,
        contexts: HashMap::new(),
        queue: VecDeque::new(),
        next_at: None,
        chunks_sent: 0,
    };
    session.run().await;
}

/// Where a context is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CtxState {
    /// Takes more input.
    Open,
    /// The last input arrived (`continue: false`) or it was cancelled: no more input.
    Closed,
}

struct Ctx {
    state: CtxState,
    buffer: String,
    encoding: RawEncoding,
    rate_hz: u32,
    speed: f64,
    add_timestamps: bool,
    add_phonemes: bool,
    max_buffer_delay: Duration,
    buffer_deadline: Option<tokio::time::Instant>,
    flush_id: u64,
    sample_pos: u64,
    /// Seconds of audio generated so far (timestamps are relative to the context's start).
    spoken_s: f64,
}

enum Out {
    Chunk {
        ctx: String,
        data: Vec<u8>,
        samples: u64,
        flush_id: u64,
    },
    Words {
        ctx: String,
        words: Vec<(String, f64, f64)>,
        phonemes: bool,
        flush_id: u64,
    },
    FlushDone {
        ctx: String,
        flush_id: u64,
    },
    Done {
        ctx: String,
    },
}

impl Out {
    fn ctx(&self) -> &str {
        match self {
            Out::Chunk { ctx, .. }
            | Out::Words { ctx, .. }
            | Out::FlushDone { ctx, .. }
            | Out::Done { ctx } => ctx,
        }
    }
}

struct Session<'a> {
    ws: WebSocketStream<TcpStream>,
    shared: &'a Shared,
    index: usize,
    version: String,
    contexts: HashMap<String, Ctx>,
    queue: VecDeque<Out>,
    next_at: Option<tokio::time::Instant>,
    chunks_sent: usize,
}

enum Flow {
    Continue,
    Stop,
}

impl Session<'_> {
    async fn run(&mut self) {
        let idle = Duration::from_millis(self.shared.config.idle_timeout_ms.max(1));
        let mut last_request = tokio::time::Instant::now();
        loop {
            let far = tokio::time::Instant::now() + Duration::from_secs(86_400);
            let emit_at = self
                .next_at
                .filter(|_| !self.queue.is_empty())
                .unwrap_or(far);
            let buffer_at = self
                .contexts
                .values()
                .filter_map(|c| c.buffer_deadline)
                .min()
                .unwrap_or(far);
            tokio::select! {
                message = self.ws.next() => {
                    match message {
                        Some(Ok(Message::Text(t))) => {
                            last_request = tokio::time::Instant::now();
                            if matches!(self.on_text(t.as_str()).await, Flow::Stop) {
                                return;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.shared.record(self.index, |c| c.binary_frames += 1);
                            let refusal = Refusal::bad_request(
                                "Binary messages are not supported; send JSON text messages.",
                            );
                            if matches!(self.send_error(&refusal, None).await, Flow::Stop) {
                                return;
                            }
                        }
                        Some(Ok(Message::Close(_))) => {
                            self.shared.record(self.index, |c| c.client_closed = true);
                            // tungstenite answers the close frame; drive it out.
                            let _ = self.ws.flush().await;
                            return;
                        }
                        None | Some(Err(_)) => return,
                        Some(Ok(_)) => {}
                    }
                }
                _ = tokio::time::sleep_until(emit_at), if !self.queue.is_empty() => {
                    if matches!(self.emit_next().await, Flow::Stop) {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(buffer_at), if buffer_at < far => {
                    let now = tokio::time::Instant::now();
                    let due: Vec<String> = self
                        .contexts
                        .iter()
                        .filter(|(_, c)| c.buffer_deadline.is_some_and(|d| d <= now))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in due {
                        self.generate(&id);
                    }
                }
                _ = tokio::time::sleep_until(last_request + idle) => {
                    self.close(1000, "idle timeout").await;
                    return;
                }
            }
        }
    }

    async fn send_json(&mut self, value: &Value) -> Flow {
        match self.ws.send(Message::text(value.to_string())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Stop,
        }
    }

    async fn send_error(&mut self, refusal: &Refusal, context_id: Option<&str>) -> Flow {
        let event = refusal.event(Some(&self.version), context_id);
        self.shared
            .record(self.index, |c| c.errors.push(event.clone()));
        self.send_json(&event).await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        self.shared
            .record(self.index, |c| c.close_code = Some(code));
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    async fn on_text(&mut self, text: &str) -> Flow {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
        self.shared
            .record(self.index, |c| c.messages.push(value.clone()));
        let Some(object) = value.as_object() else {
            let refusal = Refusal::bad_request("The message is not a JSON object.");
            return self.send_error(&refusal, None).await;
        };
        let context_id = object
            .get("context_id")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .map(str::to_owned);
        if object.contains_key("cancel") {
            return self.on_cancel(&value, context_id).await;
        }
        let Some(context_id) = context_id else {
            let refusal = Refusal::bad_request("context_id is required and must be a string.");
            return self.send_error(&refusal, None).await;
        };
        match self.accept(&value, &context_id) {
            Ok(generation) => {
                self.on_generation(generation);
                Flow::Continue
            }
            Err(refusal) => self.send_error(&refusal, Some(&context_id)).await,
        }
    }

    async fn on_cancel(&mut self, value: &Value, context_id: Option<String>) -> Flow {
        let Some(id) = context_id else {
            let refusal = Refusal::bad_request("context_id is required to cancel a context.");
            return self.send_error(&refusal, None).await;
        };
        if value.get("cancel") != Some(&Value::Bool(true)) {
            let refusal = Refusal::bad_request("cancel must be true.");
            return self.send_error(&refusal, Some(&id)).await;
        }
        if let Some(ctx) = self.contexts.get_mut(&id) {
            ctx.state = CtxState::Closed;
            ctx.buffer.clear();
            ctx.buffer_deadline = None;
            self.queue.retain(|o| o.ctx() != id);
            self.shared.context(self.index, &id, |c| c.cancelled = true);
        }
        Flow::Continue
    }

    /// Validates a generation request and creates its context when it is new.
    fn accept(&mut self, value: &Value, context_id: &str) -> Result<Generation, Refusal> {
        if let Some(ctx) = self.contexts.get(context_id)
            && ctx.state == CtxState::Closed
        {
            return Err(Refusal::bad_request(format!(
                "Context {context_id} is closed: its last input (continue=false) or a cancel was \
                 already received."
            )));
        }
        let g = request::parse(&self.shared.config, value, context_id)?;
        if !self.contexts.contains_key(context_id) {
            self.contexts.insert(
                context_id.to_owned(),
                Ctx {
                    state: CtxState::Open,
                    buffer: String::new(),
                    encoding: g.encoding,
                    rate_hz: g.rate_hz,
                    speed: g.speed,
                    add_timestamps: g.add_timestamps,
                    add_phonemes: g.add_phonemes,
                    max_buffer_delay: g.max_buffer_delay,
                    buffer_deadline: None,
                    flush_id: 1,
                    sample_pos: 0,
                    spoken_s: 0.0,
                },
            );
            let record = CartesiaContextRecord {
                id: context_id.to_owned(),
                model_id: g.model_id.clone(),
                voice_id: g.voice_id.clone(),
                language: g.language.clone(),
                encoding: g.encoding_name.to_owned(),
                sample_rate_hz: g.rate_hz,
                generation_config: g.generation_config.clone(),
                first_request_at: Some(Instant::now()),
                ..CartesiaContextRecord::default()
            };
            self.shared.record(self.index, |c| c.contexts.push(record));
        }
        Ok(g)
    }

    fn on_generation(&mut self, g: Generation) {
        let id = g.context_id.clone();
        self.shared.context(self.index, &id, |c| {
            c.transcripts.push(g.transcript.clone());
            if g.flush {
                c.flushes += 1;
            }
            if !g.continues {
                c.input_ended = true;
            }
        });
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        ctx.buffer.push_str(&g.transcript);
        let sentence_end = ctx.buffer.trim_end().ends_with(['.', '!', '?', ';', ':']);
        let immediate = ctx.max_buffer_delay.is_zero();
        if g.flush || !g.continues || immediate || sentence_end {
            self.generate(&id);
        } else if ctx.buffer_deadline.is_none() && !ctx.buffer.trim().is_empty() {
            ctx.buffer_deadline = Some(tokio::time::Instant::now() + ctx.max_buffer_delay);
        }
        if g.flush {
            self.push_out(Out::FlushDone {
                ctx: id.clone(),
                flush_id: self.contexts.get(&id).map_or(1, |c| c.flush_id),
            });
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.flush_id += 1;
            }
        }
        if !g.continues {
            if let Some(ctx) = self.contexts.get_mut(&id) {
                ctx.state = CtxState::Closed;
            }
            self.push_out(Out::Done { ctx: id });
        }
    }

    /// Queue one output; the first of an idle queue waits for the first-byte delay.
    fn push_out(&mut self, out: Out) {
        if self.shared.config.never_answer {
            return;
        }
        if self.queue.is_empty() {
            let delay = match out {
                Out::Chunk { .. } => self.shared.config.latency.tts_first_byte(),
                _ => Duration::ZERO,
            };
            self.next_at = Some(tokio::time::Instant::now() + delay);
        }
        self.queue.push_back(out);
    }

    /// Turn the context's buffered text into queued chunks (and timestamps when asked).
    fn generate(&mut self, id: &str) {
        let cfg = &self.shared.config;
        let Some(ctx) = self.contexts.get_mut(id) else {
            return;
        };
        ctx.buffer_deadline = None;
        let text = std::mem::take(&mut ctx.buffer);
        if text.trim().is_empty() {
            return;
        }
        let ms_per_char = cfg.ms_per_char as f64 / ctx.speed;
        let total_ms = text.chars().count() as f64 * ms_per_char;
        let total_samples = (total_ms * f64::from(ctx.rate_hz) / 1000.0).round() as u64;
        let chunk_samples = (cfg.chunk_ms.max(10) * u64::from(ctx.rate_hz) / 1000).max(1);
        let mut outs = Vec::new();
        let mut left = total_samples;
        while left > 0 {
            let n = left.min(chunk_samples);
            outs.push(Out::Chunk {
                ctx: id.to_owned(),
                data: synth::voice(ctx.encoding, ctx.rate_hz, ctx.sample_pos, n as usize),
                samples: n,
                flush_id: ctx.flush_id,
            });
            ctx.sample_pos += n;
            left -= n;
        }
        if ctx.add_timestamps || ctx.add_phonemes {
            let mut words = Vec::new();
            let mut offset = 0usize;
            for word in text.split_whitespace() {
                let at = text[offset..].find(word).map_or(offset, |p| offset + p);
                let start = ctx.spoken_s + text[..at].chars().count() as f64 * ms_per_char / 1000.0;
                let end = start + word.chars().count() as f64 * ms_per_char / 1000.0;
                words.push((word.to_owned(), round_ms(start), round_ms(end)));
                offset = at + word.len();
            }
            if ctx.add_timestamps {
                outs.push(Out::Words {
                    ctx: id.to_owned(),
                    words: words.clone(),
                    phonemes: false,
                    flush_id: ctx.flush_id,
                });
            }
            if ctx.add_phonemes {
                outs.push(Out::Words {
                    ctx: id.to_owned(),
                    words,
                    phonemes: true,
                    flush_id: ctx.flush_id,
                });
            }
        }
        ctx.spoken_s += total_ms / 1000.0;
        for out in outs {
            self.push_out(out);
        }
    }

    async fn emit_next(&mut self) -> Flow {
        let Some(out) = self.queue.pop_front() else {
            return Flow::Continue;
        };
        let latency = self.shared.config.latency;
        let mut gap = Duration::ZERO;
        match out {
            Out::Chunk {
                ctx,
                data,
                samples,
                flush_id,
            } => {
                let rate = self.contexts.get(&ctx).map_or(8000, |c| c.rate_hz);
                let duration = Duration::from_secs_f64(samples as f64 / f64::from(rate));
                let msg = json!({"type": "chunk",
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                    "done": false, "status_code": 206, "step_time": duration.as_secs_f64() * 250.0,
                    "flush_id": flush_id, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                let now = Instant::now();
                self.shared.context(self.index, &ctx, |c| {
                    c.chunks += 1;
                    c.audio_bytes += data.len() as u64;
                    c.audio_samples += samples;
                    c.first_audio_at.get_or_insert(now);
                });
                self.chunks_sent += 1;
                if self
                    .shared
                    .config
                    .error_after_chunks
                    .is_some_and(|n| self.chunks_sent >= n)
                {
                    let refusal = Refusal::new(
                        500,
                        Some("internal_error"),
                        "Internal error",
                        "Internal error (fake failure knob).".into(),
                    );
                    let _ = self.send_error(&refusal, Some(&ctx)).await;
                    self.close(1011, "internal error").await;
                    return Flow::Stop;
                }
                gap = latency.tts_generation_time(duration);
            }
            Out::Words {
                ctx,
                words,
                phonemes,
                flush_id,
            } => {
                let msg = if phonemes {
                    let mut list = Vec::new();
                    let mut starts = Vec::new();
                    let mut ends = Vec::new();
                    for (word, start, end) in &words {
                        let letters: Vec<char> =
                            word.chars().filter(|c| c.is_alphanumeric()).collect();
                        let step = (end - start) / letters.len().max(1) as f64;
                        for (i, l) in letters.iter().enumerate() {
                            list.push(l.to_lowercase().to_string());
                            starts.push(round_ms(start + step * i as f64));
                            ends.push(round_ms(start + step * (i + 1) as f64));
                        }
                    }
                    json!({"type": "phoneme_timestamps", "done": false, "status_code": 206,
                        "flush_id": flush_id, "context_id": ctx,
                        "phoneme_timestamps": {"phonemes": list, "start": starts, "end": ends}})
                } else {
                    let list: Vec<&str> = words.iter().map(|w| w.0.as_str()).collect();
                    let starts: Vec<f64> = words.iter().map(|w| w.1).collect();
                    let ends: Vec<f64> = words.iter().map(|w| w.2).collect();
                    json!({"type": "timestamps", "done": false, "status_code": 206,
                        "flush_id": flush_id, "context_id": ctx,
                        "word_timestamps": {"words": list, "start": starts, "end": ends}})
                };
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                if !phonemes {
                    self.shared
                        .context(self.index, &ctx, |c| c.timestamps_sent += 1);
                }
            }
            Out::FlushDone { ctx, flush_id } => {
                let msg = json!({"type": "flush_done", "done": false, "flush_done": true,
                    "flush_id": flush_id, "status_code": 206, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                self.shared
                    .context(self.index, &ctx, |c| c.flush_dones_sent += 1);
            }
            Out::Done { ctx } => {
                let msg =
                    json!({"type": "done", "done": true, "status_code": 206, "context_id": ctx});
                if matches!(self.send_json(&msg).await, Flow::Stop) {
                    return Flow::Stop;
                }
                self.shared
                    .context(self.index, &ctx, |c| c.done_sent = true);
            }
        }
        self.next_at = Some(tokio::time::Instant::now() + gap);
        Flow::Continue
    }
}

/// Seconds rounded to the millisecond.
fn round_ms(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}
