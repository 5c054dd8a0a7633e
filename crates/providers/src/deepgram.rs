//! Deepgram live transcription (`/v1/listen`, Nova models) and the socket driver shared with
//! Flux (`deepgram_flux`): one background task per session owns the websocket, forwards audio,
//! sends keep-alives while the caller is silent, parses results into [`SttEvent`]s and reconnects
//! after a dropped socket without the call noticing more than `Reconnecting`/`Reconnected`.
//!
//! Protocol: `docs/providers/deepgram-stt.md`.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use switchboard_netguard::OutboundPolicy;

use crate::error::ProviderError;
use crate::stt::wsutil::{self, Ws};
use crate::stt::{
    AUDIO_QUEUE_FRAMES, EVENT_QUEUE, SttConfig, SttControl, SttEncoding, SttEvent, SttSession, Word,
};

/// Provider name used in errors.
pub(crate) const PROVIDER: &str = "deepgram";
/// Deepgram's public websocket host.
pub(crate) const DEFAULT_BASE: &str = "wss://api.deepgram.com";
/// Longest backoff between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Shortest stall timeout accepted (ms): below it a healthy socket between two results of a
/// silent caller would be taken for a stalled one.
const MIN_STALL_TIMEOUT_MS: u64 = 1_000;

/// Open a live (`/v1/listen`) session.
pub(crate) async fn connect(cfg: &SttConfig) -> Result<SttSession, ProviderError> {
    let url = listen_url(cfg)?;
    open(cfg, url, Dialect::Live).await
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
    let mut url = wsutil::ws_url(
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

/// What the driver does differently for live and Flux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// `/v1/listen`.
    Live,
    /// `/v2/listen`.
    Flux,
}

/// Outcome of parsing one server text message.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// A transcription message (results, even empty ones; speech start; utterance end; a Flux
    /// turn event): the provider is at work. Only these keep the stall timer from firing.
    Transcription,
    /// Live: the summary `Metadata` (the server closes next).
    Metadata,
    /// A message of the protocol that says nothing about transcription (Flux `Connected`, an
    /// `Error` notice, a type this adapter does not know).
    Other,
    /// Not a message of the protocol (malformed JSON, wrong shape): ignored, and it does not
    /// count as the provider answering.
    Unparseable,
}

/// Open the socket, spawn the driver and return the handle.
pub(crate) async fn open(
    cfg: &SttConfig,
    url: Url,
    dialect: Dialect,
) -> Result<SttSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let auth = format!("Token {}", cfg.api_key.trim());
    let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
    let ws = wsutil::connect(
        PROVIDER,
        &url,
        &[("authorization", &auth)],
        Some("dg-error"),
        connect_timeout,
        &cfg.outbound,
    )
    .await?;
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE_FRAMES);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let bytes_per_s = f64::from(cfg.bytes_per_second());
    let gap_capacity =
        (u64::from(cfg.reconnect_buffer_ms) * u64::from(cfg.bytes_per_second()) / 1000) as usize;
    let silence_fill = match cfg.encoding {
        SttEncoding::Mulaw => 0xFF,
        SttEncoding::Alaw => 0xD5,
        SttEncoding::Linear16 => 0x00,
    };
    let silence_len = (cfg.bytes_per_second() / 50).max(1) as usize;
    let driver = Driver {
        url,
        auth,
        outbound: cfg.outbound.clone(),
        dialect,
        connect_timeout,
        keepalive_interval: Duration::from_millis(cfg.keepalive_interval_ms.max(100)),
        close_timeout: Duration::from_millis(cfg.close_timeout_ms.max(1)),
        reconnect_attempts: cfg.reconnect_attempts,
        reconnect_backoff: Duration::from_millis(cfg.reconnect_backoff_ms),
        stall_timeout: Duration::from_millis(cfg.stall_timeout_ms.max(MIN_STALL_TIMEOUT_MS)),
        attempts_used: 0,
        replayed: false,
        bytes_per_s,
        audio_rx,
        control_rx,
        events_tx,
        audio_open: true,
        gap: VecDeque::new(),
        gap_bytes: 0,
        gap_capacity,
        call_pos: 0,
        offset_s: 0.0,
        silence: Bytes::from(vec![silence_fill; silence_len]),
        close_done: None,
        parsed: Vec::new(),
    };
    // Boxed: the task keeps its by-value `self` twice otherwise (it lives for the call).
    tokio::spawn(Box::new(driver).run(ws));
    Ok(SttSession::new(
        audio_tx,
        control_tx,
        events_rx,
        Duration::from_millis(cfg.close_timeout_ms.max(1)),
    ))
}

/// How one socket's life ended.
enum End {
    /// Closed on purpose (close() or the handle was dropped).
    Closed,
    /// Dropped by the network or the server; reconnect.
    Dropped(String),
    /// Open, but no transcription message for `stall_timeout` while audio flowed.
    Stalled,
}

/// The background task of one STT session. Holds the auth header for reconnects; never logs it.
struct Driver {
    url: Url,
    auth: String,
    /// Reconnects are held to the same outbound policy as the first connect.
    outbound: OutboundPolicy,
    dialect: Dialect,
    connect_timeout: Duration,
    keepalive_interval: Duration,
    close_timeout: Duration,
    reconnect_attempts: u32,
    reconnect_backoff: Duration,
    /// No transcription message for this long while audio is sent: the socket is stalled.
    stall_timeout: Duration,
    /// Reconnect attempts made since the provider last answered with a transcription message.
    /// A socket that connects but never answers (dropped at once, garbage, a stall) does not
    /// reset it, so a provider that keeps failing that way ends in `Failed`, not in an endless
    /// reconnect loop; a reconnected socket that stalls without answering ends the session.
    attempts_used: u32,
    /// The new socket got the gap's audio: it owes an answer from the start.
    replayed: bool,
    bytes_per_s: f64,
    audio_rx: mpsc::Receiver<Bytes>,
    control_rx: mpsc::UnboundedReceiver<SttControl>,
    events_tx: mpsc::Sender<SttEvent>,
    audio_open: bool,
    /// Audio received while no socket was up, replayed after a reconnect.
    gap: VecDeque<Bytes>,
    gap_bytes: usize,
    gap_capacity: usize,
    /// Bytes of call audio received from the handle so far (sent, buffered or dropped).
    call_pos: u64,
    /// Call time (s) at which the current socket's stream time 0 lies.
    offset_s: f64,
    /// 20 ms of silence, Flux's keep-alive.
    silence: Bytes,
    close_done: Option<oneshot::Sender<()>>,
    parsed: Vec<SttEvent>,
}

impl Driver {
    async fn run(mut self: Box<Self>, mut ws: Ws) {
        loop {
            match self.session(&mut ws).await {
                End::Closed => break,
                End::Stalled if self.attempts_used > 0 => {
                    // The socket of the last reconnect never answered either: the provider is
                    // down, and another reconnect would leave the caller unheard for another
                    // `stall_timeout`.
                    let error = ProviderError::Timeout {
                        provider: PROVIDER,
                        waiting_for: "transcription results after a reconnect",
                        after: self.stall_timeout,
                    };
                    tracing::warn!(provider = PROVIDER, %error, "STT stalled again; giving up");
                    let _ = self.events_tx.send(SttEvent::Failed(error)).await;
                    break;
                }
                End::Stalled => {
                    let reason = format!(
                        "stalled: no results for {} ms while audio flowed",
                        self.stall_timeout.as_millis()
                    );
                    tracing::warn!(provider = PROVIDER, %reason, "STT socket stalled; reconnecting");
                    match Box::pin(self.reconnect(reason)).await {
                        Ok(Some(new_ws)) => ws = new_ws,
                        Ok(None) => break,
                        Err(error) => {
                            let _ = self.events_tx.send(SttEvent::Failed(error)).await;
                            break;
                        }
                    }
                }
                End::Dropped(reason) => {
                    tracing::warn!(provider = PROVIDER, %reason, "STT socket dropped; reconnecting");
                    // Boxed: the reconnect state lives on the heap only while reconnecting.
                    match Box::pin(self.reconnect(reason)).await {
                        Ok(Some(new_ws)) => ws = new_ws,
                        Ok(None) => break,
                        Err(error) => {
                            let _ = self.events_tx.send(SttEvent::Failed(error)).await;
                            break;
                        }
                    }
                }
            }
        }
        if let Some(done) = self.close_done.take() {
            let _ = done.send(());
        }
    }

    async fn emit(&mut self, event: SttEvent) {
        let _ = self.events_tx.send(event).await;
    }

    fn keepalive_message(&self) -> Message {
        match self.dialect {
            Dialect::Live => Message::text(r#"{"type":"KeepAlive"}"#),
            Dialect::Flux => Message::Binary(self.silence.clone()),
        }
    }

    fn finalize_message(&self) -> Message {
        match self.dialect {
            Dialect::Live => Message::text(r#"{"type":"Finalize"}"#),
            Dialect::Flux => Message::text(r#"{"type":"ForceEndTurn"}"#),
        }
    }

    async fn handle_text(&mut self, text: &str) -> Parsed {
        let mut events = std::mem::take(&mut self.parsed);
        let parsed = match self.dialect {
            Dialect::Live => parse_live(text, self.offset_s, &mut events),
            Dialect::Flux => crate::deepgram_flux::parse(text, self.offset_s, &mut events),
        };
        for event in events.drain(..) {
            self.emit(event).await;
        }
        self.parsed = events;
        parsed
    }

    /// Drive one socket until it closes, or until it stalls: audio flowed for `stall_timeout`
    /// without a single transcription message back (treated like a dropped socket).
    async fn session(&mut self, ws: &mut Ws) -> End {
        let mut last_sent = Instant::now();
        let mut closing: Option<Instant> = None;
        // When audio first went out after the provider's last transcription message; `None`
        // while every sent frame has been answered (or none was sent). Replayed gap audio
        // counts.
        let mut unanswered_since = std::mem::take(&mut self.replayed).then(Instant::now);
        // One timer for the whole session, moved only when it must fire earlier: audio goes out
        // every 20 ms, and a fresh `sleep_until` per frame registered and removed a timer-wheel
        // entry each time. A keep-alive timer that fires after newer audio is simply re-armed.
        let timer = tokio::time::sleep_until(last_sent + self.keepalive_interval);
        tokio::pin!(timer);
        loop {
            let stall_at = unanswered_since
                .filter(|_| closing.is_none())
                .map(|t| t + self.stall_timeout);
            let due = closing.unwrap_or(last_sent + self.keepalive_interval);
            let due = stall_at.map_or(due, |s| s.min(due));
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
            tokio::select! {
                frame = self.audio_rx.recv(), if closing.is_none() && self.audio_open => {
                    match frame {
                        Some(frame) => {
                            self.call_pos += frame.len() as u64;
                            if let Err(e) = ws.send(Message::Binary(frame)).await {
                                return End::Dropped(format!("send failed: {e}"));
                            }
                            last_sent = Instant::now();
                            unanswered_since.get_or_insert(last_sent);
                        }
                        None => self.audio_open = false,
                    }
                }
                control = self.control_rx.recv(), if closing.is_none() => {
                    match control {
                        Some(SttControl::KeepAlive) => {
                            if let Err(e) = ws.send(self.keepalive_message()).await {
                                return End::Dropped(format!("send failed: {e}"));
                            }
                            last_sent = Instant::now();
                        }
                        Some(SttControl::Finalize) => {
                            if let Err(e) = ws.send(self.finalize_message()).await {
                                return End::Dropped(format!("send failed: {e}"));
                            }
                        }
                        Some(SttControl::Close(done)) => {
                            self.close_done = Some(done);
                            if ws.send(Message::text(r#"{"type":"CloseStream"}"#)).await.is_err() {
                                return End::Closed;
                            }
                            closing = Some(Instant::now() + self.close_timeout);
                        }
                        None => {
                            // The handle was dropped: tell the server, do not wait.
                            let _ = ws.send(Message::text(r#"{"type":"CloseStream"}"#)).await;
                            let _ = ws.close(None).await;
                            return End::Closed;
                        }
                    }
                }
                message = ws.next() => {
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            match self.handle_text(text.as_str()).await {
                                Parsed::Transcription => {
                                    unanswered_since = None;
                                    // The provider answers again: reconnects start afresh.
                                    self.attempts_used = 0;
                                }
                                Parsed::Metadata if closing.is_some() => {
                                    let _ = ws.close(None).await;
                                }
                                Parsed::Metadata | Parsed::Other | Parsed::Unparseable => {}
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            if closing.is_some() {
                                return End::Closed;
                            }
                            let reason = frame
                                .map(|f| format!("close {} {}", u16::from(f.code), f.reason))
                                .unwrap_or_else(|| "close without status".to_owned());
                            return End::Dropped(reason);
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            if closing.is_some() {
                                return End::Closed;
                            }
                            return End::Dropped(e.to_string());
                        }
                        None => {
                            if closing.is_some() {
                                return End::Closed;
                            }
                            return End::Dropped("connection ended".to_owned());
                        }
                    }
                }
                _ = &mut timer => {
                    if let Some(close_at) = closing {
                        if Instant::now() < close_at {
                            // Armed for a keep-alive before `CloseStream` was sent.
                            timer.as_mut().reset(close_at);
                            continue;
                        }
                        let _ = ws.close(None).await;
                        return End::Closed;
                    }
                    if stall_at.is_some_and(|s| Instant::now() >= s) {
                        let _ = ws.close(None).await;
                        return End::Stalled;
                    }
                    let keepalive_at = last_sent + self.keepalive_interval;
                    if Instant::now() < keepalive_at {
                        // Audio went out since the timer was set: wait for the new deadline.
                        timer.as_mut().reset(keepalive_at);
                        continue;
                    }
                    if let Err(e) = ws.send(self.keepalive_message()).await {
                        return End::Dropped(format!("send failed: {e}"));
                    }
                    last_sent = Instant::now();
                    timer.as_mut().reset(last_sent + self.keepalive_interval);
                }
            }
        }
    }

    fn buffer_gap(&mut self, frame: Bytes) {
        self.call_pos += frame.len() as u64;
        self.gap_bytes += frame.len();
        self.gap.push_back(frame);
        while self.gap_bytes > self.gap_capacity {
            match self.gap.pop_front() {
                Some(old) => self.gap_bytes -= old.len(),
                None => {
                    self.gap_bytes = 0;
                    break;
                }
            }
        }
    }

    /// Wait for `fut` while buffering audio and watching for close. `None` = closed by the user.
    async fn while_buffering<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return Some(out),
                frame = self.audio_rx.recv(), if self.audio_open => {
                    match frame {
                        Some(frame) => self.buffer_gap(frame),
                        None => self.audio_open = false,
                    }
                }
                control = self.control_rx.recv() => {
                    match control {
                        Some(SttControl::Close(done)) => {
                            self.close_done = Some(done);
                            return None;
                        }
                        Some(SttControl::KeepAlive | SttControl::Finalize) => {}
                        None => return None,
                    }
                }
            }
        }
    }

    /// Reconnect with backoff; replay the gap. `Ok(None)` when the user closed meanwhile.
    /// Attempts count on from earlier reconnects whose socket never answered (see
    /// `attempts_used`); `reason` is why the last socket ended, reported if none is left.
    async fn reconnect(&mut self, reason: String) -> Result<Option<Ws>, ProviderError> {
        let mut last_error = ProviderError::Connect {
            provider: PROVIDER,
            message: reason,
        };
        while self.attempts_used < self.reconnect_attempts {
            self.attempts_used += 1;
            let attempt = self.attempts_used;
            self.emit(SttEvent::Reconnecting { attempt }).await;
            let backoff = self
                .reconnect_backoff
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(MAX_BACKOFF);
            if self
                .while_buffering(tokio::time::sleep(backoff))
                .await
                .is_none()
            {
                return Ok(None);
            }
            let url = self.url.clone();
            let auth = self.auth.clone();
            let timeout = self.connect_timeout;
            let outbound = self.outbound.clone();
            let connecting = async move {
                wsutil::connect(
                    PROVIDER,
                    &url,
                    &[("authorization", &auth)],
                    Some("dg-error"),
                    timeout,
                    &outbound,
                )
                .await
            };
            let Some(result) = self.while_buffering(connecting).await else {
                return Ok(None);
            };
            match result {
                Ok(mut ws) => {
                    let start_pos = self.call_pos - self.gap_bytes as u64;
                    self.offset_s = start_pos as f64 / self.bytes_per_s;
                    self.replayed = !self.gap.is_empty();
                    let mut replay_failed = false;
                    while let Some(frame) = self.gap.pop_front() {
                        self.gap_bytes -= frame.len();
                        if ws.feed(Message::Binary(frame)).await.is_err() {
                            replay_failed = true;
                            break;
                        }
                    }
                    if replay_failed || ws.flush().await.is_err() {
                        last_error = ProviderError::Connect {
                            provider: PROVIDER,
                            message: "socket dropped while replaying audio".to_owned(),
                        };
                        continue;
                    }
                    self.gap_bytes = 0;
                    self.emit(SttEvent::Reconnected).await;
                    return Ok(Some(ws));
                }
                Err(error) if !error.is_retryable() => return Err(error),
                Err(error) => {
                    tracing::warn!(provider = PROVIDER, attempt, %error, "STT reconnect failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }
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
        LiveMessage::Metadata {} => return Parsed::Metadata,
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
            Parsed::Metadata
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
