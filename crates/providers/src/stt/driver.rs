//! The one STT session driver: a background task per call that owns the websocket and does what
//! every vendor shares, asking the session's [`SttProtocol`] only for bytes to send and for the
//! meaning of what came back. It forwards audio, sends keep-alives while the caller is silent,
//! finalises and closes on request, watches for a stalled socket, and reconnects after a dropped
//! one without the call noticing more than `Reconnecting`/`Reconnected`: audio of the gap is
//! buffered and replayed, and times stay call-relative.
//!
//! A protocol that [`SttProtocol::waits_for_ready`] gets its start messages and its
//! [`Parsed::Ready`] answer before the socket counts as connected (on the first connect and on
//! every reconnect), so audio never reaches it early and a refused configuration fails the
//! connect itself.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument as _;

use switchboard_netguard::OutboundPolicy;

use crate::error::ProviderError;
use crate::stt::protocol::{Parsed, SttProtocol};
use crate::stt::{AUDIO_QUEUE_FRAMES, EVENT_QUEUE, SttConfig, SttControl, SttEvent, SttSession};
use crate::ws::{self, Ws};

/// Longest backoff between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Shortest stall timeout accepted (ms): below it a healthy socket between two results of a
/// silent caller would be taken for a stalled one.
const MIN_STALL_TIMEOUT_MS: u64 = 1_000;

/// What one socket connect needs besides the protocol; cloned into each reconnect attempt.
#[derive(Clone)]
struct Dial {
    outbound: OutboundPolicy,
    timeout: Duration,
}

/// Connect `proto`'s socket, send its start messages and, when it waits for one, read up to its
/// `Ready` answer (events parsed on the way are kept in `early`). Bounded by `dial.timeout` as a
/// whole. Returns the protocol with the result so a reconnect can move it into the future.
async fn dial(
    mut proto: Box<dyn SttProtocol>,
    dial: Dial,
    early: &mut Vec<SttEvent>,
) -> (Box<dyn SttProtocol>, Result<Ws, ProviderError>) {
    let provider = proto.provider();
    let deadline = Instant::now() + dial.timeout;
    let headers = proto.headers();
    let header_refs: Vec<(&'static str, &str)> =
        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let connected = ws::connect(
        provider,
        proto.url(),
        &header_refs,
        proto.error_header(),
        dial.timeout,
        &dial.outbound,
    )
    .await;
    let mut socket = match connected {
        Ok(socket) => socket,
        Err(e) => return (proto, Err(e)),
    };
    for message in proto.start_messages() {
        if let Err(e) = socket.feed(message).await {
            return (proto, Err(dropped(provider, &e.to_string())));
        }
    }
    if let Err(e) = socket.flush().await {
        return (proto, Err(dropped(provider, &e.to_string())));
    }
    if !proto.waits_for_ready() {
        return (proto, Ok(socket));
    }
    let waiting = async {
        loop {
            let parsed = match socket.next().await {
                Some(Ok(Message::Text(text))) => proto.parse_text(text.as_str(), 0.0, early),
                Some(Ok(Message::Binary(data))) => proto.parse_binary(&data, 0.0, early),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Err(proto.close_error(code, &reason).unwrap_or_else(|| {
                        dropped(provider, &format!("close {code} {reason} before ready"))
                    }));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(dropped(provider, &e.to_string())),
                None => return Err(dropped(provider, "connection ended before ready")),
            };
            match parsed {
                Parsed::Ready => return Ok(()),
                Parsed::Fatal(error) => return Err(error),
                _ => {}
            }
        }
    };
    let outcome = match tokio::time::timeout_at(deadline, waiting).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ProviderError::Timeout {
            provider,
            waiting_for: "the provider to accept the stream",
            after: dial.timeout,
        }),
    };
    if outcome.is_err() {
        let _ = socket.close(None).await;
    }
    (proto, outcome.map(|()| socket))
}

/// A dropped socket as a retryable error.
fn dropped(provider: &'static str, message: &str) -> ProviderError {
    ProviderError::Connect {
        provider,
        message: message.to_owned(),
    }
}

/// Refuse what needs no connection to refuse, connect, spawn the driver and return the handle.
/// Returns once the socket is up (and, for protocols that wait for one, accepted).
pub async fn open(
    cfg: &SttConfig,
    proto: Box<dyn SttProtocol>,
) -> Result<SttSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey {
            provider: proto.provider(),
        });
    }
    let dial_cfg = Dial {
        outbound: cfg.outbound.clone(),
        timeout: Duration::from_millis(cfg.connect_timeout_ms.max(1)),
    };
    let mut early = Vec::new();
    let (proto, connected) = dial(proto, dial_cfg.clone(), &mut early).await;
    let socket = connected?;
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE_FRAMES);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    for event in early.drain(..) {
        let _ = events_tx.try_send(event);
    }
    let gap_capacity =
        (u64::from(cfg.reconnect_buffer_ms) * u64::from(cfg.bytes_per_second()) / 1000) as usize;
    let driver = Driver {
        provider: proto.provider(),
        watch_stalls: proto.answers_silence(),
        proto: Some(proto),
        dial: dial_cfg,
        keepalive_interval: Duration::from_millis(cfg.keepalive_interval_ms.max(100)),
        close_timeout: Duration::from_millis(cfg.close_timeout_ms.max(1)),
        reconnect_attempts: cfg.reconnect_attempts,
        reconnect_backoff: Duration::from_millis(cfg.reconnect_backoff_ms),
        stall_timeout: Duration::from_millis(cfg.stall_timeout_ms.max(MIN_STALL_TIMEOUT_MS)),
        attempts_used: 0,
        replayed: false,
        bytes_per_s: f64::from(cfg.bytes_per_second()),
        audio_rx,
        control_rx,
        events_tx,
        audio_open: true,
        gap: VecDeque::new(),
        gap_bytes: 0,
        gap_capacity,
        call_pos: 0,
        offset_s: 0.0,
        close_done: None,
        parsed: early,
    };
    // Boxed: the task keeps its by-value `self` twice otherwise (it lives for the call).
    tokio::spawn(Box::new(driver).run(socket).in_current_span());
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
    /// The provider said the session cannot go on (`Parsed::Fatal`, a fatal close code).
    Failed(ProviderError),
}

/// The background task of one STT session. The protocol holds the key for reconnects; nothing
/// here logs it.
struct Driver {
    provider: &'static str,
    /// `None` only while a reconnect attempt has it.
    proto: Option<Box<dyn SttProtocol>>,
    /// Reconnects are held to the same outbound policy and timeout as the first connect.
    dial: Dial,
    keepalive_interval: Duration,
    close_timeout: Duration,
    reconnect_attempts: u32,
    reconnect_backoff: Duration,
    /// No transcription message for this long while audio is sent: the socket is stalled.
    stall_timeout: Duration,
    /// [`SttProtocol::answers_silence`]: only then can a quiet socket be taken for a stalled one.
    watch_stalls: bool,
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
    close_done: Option<oneshot::Sender<()>>,
    /// Reused event buffer of the parser (no allocation per message once grown).
    parsed: Vec<SttEvent>,
}

impl Driver {
    async fn run(mut self: Box<Self>, mut socket: Ws) {
        self.flush_parsed().await;
        loop {
            let reason = match self.session(&mut socket).await {
                End::Closed => break,
                End::Failed(error) => {
                    tracing::warn!(provider = self.provider, %error, "STT failed for good");
                    self.emit(SttEvent::Failed(error)).await;
                    break;
                }
                End::Stalled if self.attempts_used > 0 => {
                    // The socket of the last reconnect never answered either: the provider is
                    // down, and another reconnect would leave the caller unheard for another
                    // `stall_timeout`.
                    let error = ProviderError::Timeout {
                        provider: self.provider,
                        waiting_for: "transcription results after a reconnect",
                        after: self.stall_timeout,
                    };
                    tracing::warn!(provider = self.provider, %error, "STT stalled again; giving up");
                    self.emit(SttEvent::Failed(error)).await;
                    break;
                }
                End::Stalled => {
                    let reason = format!(
                        "stalled: no results for {} ms while audio flowed",
                        self.stall_timeout.as_millis()
                    );
                    tracing::warn!(provider = self.provider, %reason, "STT socket stalled; reconnecting");
                    reason
                }
                End::Dropped(reason) => {
                    tracing::warn!(provider = self.provider, %reason, "STT socket dropped; reconnecting");
                    reason
                }
            };
            // Boxed: the reconnect state lives on the heap only while reconnecting.
            match Box::pin(self.reconnect(reason)).await {
                Ok(Some(new_socket)) => socket = new_socket,
                Ok(None) => break,
                Err(error) => {
                    self.emit(SttEvent::Failed(error)).await;
                    break;
                }
            }
        }
        tracing::debug!(provider = self.provider, "STT session ended");
        if let Some(done) = self.close_done.take() {
            let _ = done.send(());
        }
    }

    async fn emit(&mut self, event: SttEvent) {
        let _ = self.events_tx.send(event).await;
    }

    /// Deliver what the parser produced, keeping the buffer for the next message.
    async fn flush_parsed(&mut self) {
        let mut events = std::mem::take(&mut self.parsed);
        for event in events.drain(..) {
            self.emit(event).await;
        }
        self.parsed = events;
    }

    /// The protocol; always there outside a reconnect attempt.
    fn proto(&mut self) -> Result<&mut Box<dyn SttProtocol>, End> {
        self.proto
            .as_mut()
            .ok_or_else(|| End::Dropped("protocol lost".to_owned()))
    }

    /// Parse one server message and deliver its events.
    async fn handle_message(&mut self, message: &Message) -> Parsed {
        let offset_s = self.offset_s;
        let mut events = std::mem::take(&mut self.parsed);
        let parsed = match (self.proto.as_mut(), message) {
            (Some(p), Message::Text(text)) => p.parse_text(text.as_str(), offset_s, &mut events),
            (Some(p), Message::Binary(data)) => p.parse_binary(data, offset_s, &mut events),
            _ => Parsed::Other,
        };
        self.parsed = events;
        self.flush_parsed().await;
        parsed
    }

    /// Send a protocol message the driver asked for; `None` from the protocol sends nothing.
    async fn send_optional(socket: &mut Ws, message: Option<Message>) -> Result<bool, End> {
        match message {
            None => Ok(false),
            Some(m) => socket
                .send(m)
                .await
                .map(|()| true)
                .map_err(|e| End::Dropped(format!("send failed: {e}"))),
        }
    }

    /// Drive one socket until it closes, or until it stalls: audio flowed for `stall_timeout`
    /// without a single transcription message back (treated like a dropped socket).
    async fn session(&mut self, socket: &mut Ws) -> End {
        match self.drive(socket).await {
            Ok(end) | Err(end) => end,
        }
    }

    async fn drive(&mut self, socket: &mut Ws) -> Result<End, End> {
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
                .filter(|_| closing.is_none() && self.watch_stalls)
                .map(|t| t + self.stall_timeout);
            let due = closing.unwrap_or(last_sent + self.keepalive_interval);
            let due = stall_at.map_or(due, |s| s.min(due));
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
            // Biased: queued audio goes out before a finalize or close queued after it, and a
            // wake polls the busy branches first instead of from a random start.
            tokio::select! {
                biased;
                frame = self.audio_rx.recv(), if closing.is_none() && self.audio_open => {
                    match frame {
                        Some(frame) => {
                            self.call_pos += frame.len() as u64;
                            let message = self.proto()?.audio(frame);
                            if let Err(e) = socket.send(message).await {
                                return Ok(End::Dropped(format!("send failed: {e}")));
                            }
                            last_sent = Instant::now();
                            unanswered_since.get_or_insert(last_sent);
                        }
                        None => self.audio_open = false,
                    }
                }
                message = socket.next() => {
                    match message {
                        Some(Ok(Message::Close(frame))) => {
                            if closing.is_some() {
                                return Ok(End::Closed);
                            }
                            let (code, reason) = frame
                                .map(|f| (u16::from(f.code), f.reason.to_string()))
                                .unwrap_or((1005, String::new()));
                            if let Some(error) = self.proto()?.close_error(code, &reason) {
                                return Ok(End::Failed(error));
                            }
                            if code == 1005 {
                                return Ok(End::Dropped("close without status".to_owned()));
                            }
                            return Ok(End::Dropped(format!("close {code} {reason}")));
                        }
                        Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                            match self.handle_message(&message).await {
                                Parsed::Transcription => {
                                    unanswered_since = None;
                                    // The provider answers again: reconnects start afresh.
                                    self.attempts_used = 0;
                                }
                                Parsed::EndOfStream if closing.is_some() => {
                                    let _ = socket.close(None).await;
                                }
                                Parsed::Fatal(error) => {
                                    let _ = socket.close(None).await;
                                    return Ok(End::Failed(error));
                                }
                                Parsed::EndOfStream
                                | Parsed::Ready
                                | Parsed::Other
                                | Parsed::Unparseable => {}
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            if closing.is_some() {
                                return Ok(End::Closed);
                            }
                            return Ok(End::Dropped(e.to_string()));
                        }
                        None => {
                            if closing.is_some() {
                                return Ok(End::Closed);
                            }
                            return Ok(End::Dropped("connection ended".to_owned()));
                        }
                    }
                }
                _ = &mut timer => {
                    if let Some(close_at) = closing {
                        if Instant::now() < close_at {
                            // Armed for a keep-alive before the close message was sent.
                            timer.as_mut().reset(close_at);
                            continue;
                        }
                        let _ = socket.close(None).await;
                        return Ok(End::Closed);
                    }
                    if stall_at.is_some_and(|s| Instant::now() >= s) {
                        let _ = socket.close(None).await;
                        return Ok(End::Stalled);
                    }
                    let keepalive_at = last_sent + self.keepalive_interval;
                    if Instant::now() < keepalive_at {
                        // Audio went out since the timer was set: wait for the new deadline.
                        timer.as_mut().reset(keepalive_at);
                        continue;
                    }
                    let message = self.proto()?.keepalive();
                    Self::send_optional(socket, message).await?;
                    // Protocols without a keep-alive message still re-arm the timer.
                    last_sent = Instant::now();
                    timer.as_mut().reset(last_sent + self.keepalive_interval);
                }
                control = self.control_rx.recv(), if closing.is_none() => {
                    match control {
                        Some(SttControl::KeepAlive) => {
                            let message = self.proto()?.keepalive();
                            if Self::send_optional(socket, message).await? {
                                last_sent = Instant::now();
                            }
                        }
                        Some(SttControl::Finalize) => {
                            let message = self.proto()?.finalize();
                            Self::send_optional(socket, message).await?;
                        }
                        Some(SttControl::Close(done)) => {
                            self.close_done = Some(done);
                            let message = self.proto()?.close();
                            match message {
                                Some(m) => {
                                    if socket.send(m).await.is_err() {
                                        return Ok(End::Closed);
                                    }
                                }
                                None => {
                                    let _ = socket.close(None).await;
                                }
                            }
                            closing = Some(Instant::now() + self.close_timeout);
                        }
                        None => {
                            // The handle was dropped: tell the server, do not wait.
                            if let Some(m) = self.proto()?.close() {
                                let _ = socket.send(m).await;
                            }
                            let _ = socket.close(None).await;
                            return Ok(End::Closed);
                        }
                    }
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
        let provider = self.provider;
        let mut last_error = dropped(provider, &reason);
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
            let Some(proto) = self.proto.take() else {
                return Err(last_error);
            };
            let dial_cfg = self.dial.clone();
            let connecting = async move {
                let mut early = Vec::new();
                let (proto, result) = dial(proto, dial_cfg, &mut early).await;
                (proto, result, early)
            };
            let Some((proto, result, early)) = self.while_buffering(connecting).await else {
                // The attempt (and the protocol it held) is dropped: the session is closing.
                return Ok(None);
            };
            self.proto = Some(proto);
            self.parsed.extend(early);
            self.flush_parsed().await;
            match result {
                Ok(mut socket) => {
                    let start_pos = self.call_pos - self.gap_bytes as u64;
                    self.offset_s = start_pos as f64 / self.bytes_per_s;
                    self.replayed = !self.gap.is_empty();
                    let mut replay_failed = false;
                    while let Some(frame) = self.gap.pop_front() {
                        self.gap_bytes -= frame.len();
                        let Some(proto) = self.proto.as_mut() else {
                            break;
                        };
                        if socket.feed(proto.audio(frame)).await.is_err() {
                            replay_failed = true;
                            break;
                        }
                    }
                    if replay_failed || socket.flush().await.is_err() {
                        last_error = dropped(provider, "socket dropped while replaying audio");
                        continue;
                    }
                    self.gap_bytes = 0;
                    self.emit(SttEvent::Reconnected).await;
                    return Ok(Some(socket));
                }
                Err(error) if !error.is_retryable() => return Err(error),
                Err(error) => {
                    tracing::warn!(provider, attempt, %error, "STT reconnect failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }
}
