//! The one websocket session driver every streaming TTS protocol runs on. It owns what vendors
//! share: the connect (bounded, held to the outbound policy), contexts (several replies in
//! flight, cancel on barge-in, commands for finished contexts ignored), the audio deadline (no
//! audio within `first_byte_timeout_ms` of text, or of the last audio once a reply ended,
//! means the socket is stalled: it is replaced and its replies fail), an eager reconnect after
//! the vendor closed an idle socket, and the close handshake. What is vendor-specific is a
//! [`TtsProtocol`].

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tracing::Instrument as _;

use switchboard_netguard::OutboundPolicy;

use super::protocol::{Step, TtsProtocol};
use super::{EVENT_QUEUE, TtsCommand, TtsConfig, TtsEvent, TtsSession, strip_audio_header};
use crate::error::ProviderError;
use crate::ws::{self as wsutil, Ws};

/// A socket must have lived this long before its end triggers an eager reconnect (no loops
/// against a server that accepts and closes at once).
const MIN_SOCKET_LIFE: Duration = Duration::from_secs(1);

/// Connect the protocol's socket (bounded by `timeout`, held to `outbound`).
async fn open_socket(
    protocol: &dyn TtsProtocol,
    timeout: Duration,
    outbound: &OutboundPolicy,
) -> Result<Ws, ProviderError> {
    let headers = protocol.headers();
    let headers: Vec<(&'static str, &str)> =
        headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    wsutil::connect(
        protocol.provider(),
        protocol.url(),
        &headers,
        protocol.error_header(),
        timeout,
        outbound,
    )
    .await
}

/// Start a session on `protocol`. `ws` is the socket the adapter already opened (so a bad key
/// fails in `connect`); `None` in per-context mode.
pub(crate) fn start(protocol: Box<dyn TtsProtocol>, ws: Option<Ws>, cfg: &TtsConfig) -> TtsSession {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let driver = Driver {
        protocol,
        outbound: cfg.outbound.clone(),
        connect_timeout: Duration::from_millis(cfg.connect_timeout_ms.max(1)),
        audio_timeout: Duration::from_millis(cfg.first_byte_timeout_ms.max(1)),
        close_timeout: Duration::from_millis(cfg.close_timeout_ms.max(1)),
        ws,
        commands: commands_rx,
        events: events_tx,
        contexts: HashMap::new(),
        dead: HashSet::new(),
        sockets: HashMap::new(),
        inbound: None,
    };
    // Boxed: the task keeps its by-value `self` twice otherwise (it lives for the call).
    tokio::spawn(Box::new(driver).run().in_current_span());
    TtsSession::new(
        commands_tx,
        events_rx,
        Duration::from_millis(cfg.close_timeout_ms.max(1)),
    )
}

#[derive(Debug, Default)]
struct Context {
    ending: bool,
    got_audio: bool,
    /// The provider owes this context audio (text was sent and not yet answered) or, once
    /// ended, the rest of its audio and its end: by this time, or the socket is stalled.
    audio_deadline: Option<Instant>,
}

/// What a per-context socket task reports.
enum Inbound {
    Message(Message),
    Closed(ProviderError),
}

struct Driver {
    protocol: Box<dyn TtsProtocol>,
    outbound: OutboundPolicy,
    connect_timeout: Duration,
    audio_timeout: Duration,
    close_timeout: Duration,
    ws: Option<Ws>,
    commands: mpsc::UnboundedReceiver<TtsCommand>,
    events: mpsc::Sender<TtsEvent>,
    contexts: HashMap<u64, Context>,
    /// Contexts that finished, failed or were cancelled: later commands for them are ignored.
    dead: HashSet<u64>,
    /// Per-context mode: the outgoing queue of each context's socket task.
    sockets: HashMap<u64, mpsc::UnboundedSender<Message>>,
    /// Per-context mode: what the context sockets' tasks read, made with the first of them (a
    /// tokio queue allocates 32 slots when it is made, and most sessions share one socket).
    inbound: Option<InboundQueue>,
}

/// Messages and closes of the per-context sockets, each tagged with its context.
type InboundQueue = (
    mpsc::UnboundedSender<(u64, Inbound)>,
    mpsc::UnboundedReceiver<(u64, Inbound)>,
);

/// The next message of the per-context sockets; pends forever before the first one opens.
async fn next_inbound(inbound: &mut Option<InboundQueue>) -> Option<(u64, Inbound)> {
    match inbound.as_mut() {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next message of an optional socket; pends forever without one.
async fn next_ws_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn provider(&self) -> &'static str {
        self.protocol.provider()
    }

    async fn emit(&self, event: TtsEvent) {
        let _ = self.events.send(event).await;
    }

    async fn fail(&mut self, context: u64, error: ProviderError) {
        if self.contexts.remove(&context).is_some() {
            self.dead.insert(context);
            self.sockets.remove(&context);
            self.emit(TtsEvent::Failed {
                context: Some(context),
                error,
            })
            .await;
        }
    }

    async fn fail_all(&mut self, error: ProviderError) {
        let mut ids: Vec<u64> = self.contexts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.fail(id, error.clone()).await;
        }
    }

    /// Drop the shared socket (closing it when `close`), fail its contexts.
    async fn drop_socket(&mut self, error: ProviderError, close: bool) {
        if let Some(mut ws) = self.ws.take()
            && close
        {
            let _ = ws.close(None).await;
        }
        self.protocol.socket_lost();
        self.fail_all(error).await;
    }

    fn connect_error(&self, message: String) -> ProviderError {
        ProviderError::Connect {
            provider: self.provider(),
            message,
        }
    }

    async fn run(mut self: Box<Self>) {
        let mut close_done: Option<oneshot::Sender<()>> = None;
        let mut connected_at = Instant::now();
        let shared = !self.protocol.socket_per_context();
        // One timer each for the stall deadline and the protocol's wake-up, moved when their
        // instant moves: a fresh sleep per loop turn registered and removed a timer-wheel entry
        // for every audio message while a reply streamed.
        let far = Instant::now() + Duration::from_secs(86_400);
        let stall_timer = tokio::time::sleep_until(far);
        tokio::pin!(stall_timer);
        let wake_timer = tokio::time::sleep_until(far);
        tokio::pin!(wake_timer);
        loop {
            if shared && self.ws.is_none() && connected_at.elapsed() >= MIN_SOCKET_LIFE {
                // The socket ended (idle timeout, network): get a fresh one now so the next
                // reply does not pay for the handshake. One attempt; `speak` retries lazily.
                connected_at = Instant::now();
                match open_socket(&*self.protocol, self.connect_timeout, &self.outbound).await {
                    Ok(ws) => self.ws = Some(ws),
                    Err(error) => tracing::warn!(
                        provider = self.provider(),
                        %error,
                        "TTS reconnect failed; will retry on the next reply"
                    ),
                }
            }
            let deadline = self
                .contexts
                .iter()
                .filter_map(|(id, c)| c.audio_deadline.map(|d| (d, *id)))
                .min();
            let wake = self.protocol.wake_at();
            let stall_at = deadline.map_or(far, |d| d.0);
            if stall_timer.deadline() != stall_at {
                stall_timer.as_mut().reset(stall_at);
            }
            let wake_at = wake.unwrap_or(far);
            if wake_timer.deadline() != wake_at {
                wake_timer.as_mut().reset(wake_at);
            }
            // Biased: commands (a cancel above all) before more audio, then in order of traffic.
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(TtsCommand::Speak(ctx, text)) => self.speak(ctx, &text).await,
                    Some(TtsCommand::Flush(ctx)) => self.flush(ctx).await,
                    Some(TtsCommand::End(ctx)) => self.end(ctx).await,
                    Some(TtsCommand::Cancel(ctx)) => self.cancel(ctx).await,
                    Some(TtsCommand::Close(done)) => {
                        close_done = Some(done);
                        break;
                    }
                    None => break,
                },
                message = next_ws_message(&mut self.ws) => match message {
                    Some(Ok(Message::Close(frame))) => {
                        let message = frame
                            .map(|f| format!("socket closed: {} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "socket closed".into());
                        let provider = self.provider();
                        self.drop_socket(ProviderError::Stream { provider, message, retryable: true }, false).await;
                    }
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        let steps = self.protocol.parse(None, m);
                        self.apply(None, steps).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        let error = self.connect_error(e.to_string());
                        self.drop_socket(error, false).await;
                    }
                    None => {
                        let error = self.connect_error("socket ended".into());
                        self.drop_socket(error, false).await;
                    }
                },
                inbound = next_inbound(&mut self.inbound) => {
                    if let Some((ctx, inbound)) = inbound {
                        match inbound {
                            Inbound::Message(m) => {
                                let steps = self.protocol.parse(Some(ctx), m);
                                self.apply(Some(ctx), steps).await;
                            }
                            Inbound::Closed(error) => self.fail(ctx, error).await,
                        }
                    }
                }
                _ = &mut stall_timer, if deadline.is_some() => {
                    if let Some((_, ctx)) = deadline {
                        self.stalled(ctx).await;
                    }
                }
                _ = &mut wake_timer, if wake.is_some() => {
                    let steps = self.protocol.wake(Instant::now());
                    self.apply(None, steps).await;
                }
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let polite = self.protocol.close();
            let sent = match polite {
                Some(m) => ws.send(m).await,
                None => ws.close(None).await,
            };
            if sent.is_ok() {
                let _ = tokio::time::timeout(self.close_timeout, async {
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
            }
            let _ = ws.close(None).await;
        }
        self.sockets.clear();
        tracing::debug!(provider = self.provider(), "TTS session ended");
        drop(self.events);
        if let Some(done) = close_done {
            let _ = done.send(());
        }
    }

    /// Carry out a protocol's steps; `target` is the context whose socket `Send` uses in
    /// per-context mode.
    async fn apply(&mut self, target: Option<u64>, steps: Vec<Step>) {
        for step in steps {
            match step {
                Step::Send(message) => self.send(target, message).await,
                Step::Audio {
                    context,
                    mulaw,
                    alignment,
                } => self.on_audio(context, mulaw, alignment).await,
                Step::Progress { context } => self.progressed(context),
                Step::Done { context } => {
                    if self.contexts.remove(&context).is_some() {
                        self.dead.insert(context);
                        self.sockets.remove(&context);
                        self.emit(TtsEvent::Done { context }).await;
                    }
                }
                Step::Failed {
                    context: Some(context),
                    error,
                } => self.fail(context, error).await,
                Step::Failed {
                    context: None,
                    error,
                } => self.fail_all(error).await,
                Step::Broken(error) => {
                    tracing::warn!(provider = self.provider(), %error, "TTS socket broken; dropping it");
                    self.drop_socket(error, true).await;
                }
            }
        }
    }

    async fn send(&mut self, target: Option<u64>, message: Message) {
        if self.protocol.socket_per_context() {
            if let Some(tx) = target.and_then(|c| self.sockets.get(&c)) {
                let _ = tx.send(message);
            }
            return;
        }
        let Some(ws) = self.ws.as_mut() else {
            return;
        };
        if let Err(e) = ws.send(message).await {
            let error = self.connect_error(e.to_string());
            self.drop_socket(error, false).await;
        }
    }

    /// Re-arm `context`'s deadline after audio or progress: audio is still owed once it ended
    /// or while the vendor holds unanswered text; otherwise the next text arms it.
    fn progressed(&mut self, context: u64) {
        let owes = self.protocol.owes_audio(context);
        let timeout = self.audio_timeout;
        if let Some(c) = self.contexts.get_mut(&context) {
            c.audio_deadline = (c.ending || owes).then(|| Instant::now() + timeout);
        }
    }

    async fn on_audio(
        &mut self,
        context: u64,
        mulaw: bytes::Bytes,
        alignment: Option<super::Alignment>,
    ) {
        let Some(c) = self.contexts.get_mut(&context) else {
            return;
        };
        let mut audio = mulaw;
        if !audio.is_empty() {
            if !c.got_audio {
                audio = strip_audio_header(audio);
            }
            c.got_audio = true;
            self.progressed(context);
        }
        if !audio.is_empty() || alignment.is_some() {
            self.emit(TtsEvent::Audio {
                context,
                mulaw: audio,
                alignment: alignment.map(Box::new),
            })
            .await;
        }
    }

    /// Make sure `ctx` is live: connect if needed, open it at the vendor.
    async fn open_context(&mut self, ctx: u64) -> bool {
        if self.protocol.socket_per_context() {
            let (tx, rx) = mpsc::unbounded_channel();
            self.sockets.insert(ctx, tx);
            let inbound = self
                .inbound
                .get_or_insert_with(mpsc::unbounded_channel)
                .0
                .clone();
            let provider = self.provider();
            // The socket task owns what the connect needs (it must not borrow the protocol).
            let headers = self.protocol.headers();
            let url = self.protocol.url().clone();
            let error_header = self.protocol.error_header();
            let (timeout, outbound) = (self.connect_timeout, self.outbound.clone());
            let work = async move {
                let headers: Vec<(&'static str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let ws =
                    wsutil::connect(provider, &url, &headers, error_header, timeout, &outbound)
                        .await;
                context_socket(provider, ctx, ws, rx, inbound).await;
            };
            tokio::spawn(work.in_current_span());
        } else if self.ws.is_none() {
            match open_socket(&*self.protocol, self.connect_timeout, &self.outbound).await {
                Ok(ws) => self.ws = Some(ws),
                Err(error) => {
                    self.dead.insert(ctx);
                    self.emit(TtsEvent::Failed {
                        context: Some(ctx),
                        error,
                    })
                    .await;
                    return false;
                }
            }
        }
        self.contexts.insert(ctx, Context::default());
        let steps = self.protocol.open(ctx);
        self.apply(Some(ctx), steps).await;
        self.contexts.contains_key(&ctx)
    }

    async fn speak(&mut self, ctx: u64, text: &str) {
        if self.dead.contains(&ctx) {
            return;
        }
        if !self.contexts.contains_key(&ctx) && !self.open_context(ctx).await {
            return;
        }
        let steps = self.protocol.text(ctx, text);
        self.apply(Some(ctx), steps).await;
        let timeout = self.audio_timeout;
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.audio_deadline.get_or_insert(Instant::now() + timeout);
        }
    }

    async fn flush(&mut self, ctx: u64) {
        if self.dead.contains(&ctx) || !self.contexts.contains_key(&ctx) {
            return;
        }
        let steps = self.protocol.flush(ctx);
        self.apply(Some(ctx), steps).await;
    }

    async fn end(&mut self, ctx: u64) {
        if self.dead.contains(&ctx) {
            return;
        }
        let Some(c) = self.contexts.get_mut(&ctx) else {
            // Nothing was ever spoken: the reply is trivially complete.
            self.dead.insert(ctx);
            self.emit(TtsEvent::Done { context: ctx }).await;
            return;
        };
        if c.ending {
            return;
        }
        c.ending = true;
        // The rest of the audio and the end are owed now.
        c.audio_deadline = Some(Instant::now() + self.audio_timeout);
        let steps = self.protocol.end(ctx);
        self.apply(Some(ctx), steps).await;
    }

    async fn cancel(&mut self, ctx: u64) {
        self.dead.insert(ctx);
        if self.contexts.remove(&ctx).is_some() {
            let steps = self.protocol.cancel(ctx);
            self.apply(Some(ctx), steps).await;
            // Per-context mode: dropping the sender closes that socket.
            self.sockets.remove(&ctx);
        }
    }

    /// Context `ctx` waited too long for audio: the provider is stalled. It fails and so does
    /// its socket (with every other context on it), so the next reply opens a fresh one.
    async fn stalled(&mut self, ctx: u64) {
        let waiting_for = if self.contexts.get(&ctx).is_some_and(|c| c.got_audio) {
            "the rest of the audio"
        } else {
            "first audio byte"
        };
        let error = ProviderError::Timeout {
            provider: self.provider(),
            waiting_for,
            after: self.audio_timeout,
        };
        if self.protocol.socket_per_context() {
            let steps = self.protocol.cancel(ctx);
            self.apply(Some(ctx), steps).await;
            self.fail(ctx, error).await;
        } else {
            tracing::warn!(provider = self.provider(), %error, "TTS socket stalled; replacing it");
            self.drop_socket(error, true).await;
        }
    }
}

/// One context's own socket (per-context mode): forwards outgoing messages, reports incoming;
/// ends (closing the socket) when the driver drops its sender.
async fn context_socket(
    provider: &'static str,
    ctx: u64,
    ws: Result<Ws, ProviderError>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    inbound: mpsc::UnboundedSender<(u64, Inbound)>,
) {
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            let _ = inbound.send((ctx, Inbound::Closed(e)));
            return;
        }
    };
    let closed = |message: String| {
        Inbound::Closed(ProviderError::Stream {
            provider,
            retryable: !super::protocol::fatal_text(&message),
            message,
        })
    };
    loop {
        tokio::select! {
            message = outgoing.recv() => match message {
                Some(m) => {
                    if let Err(e) = ws.send(m).await {
                        let _ = inbound.send((ctx, closed(e.to_string())));
                        return;
                    }
                }
                None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if inbound.send((ctx, Inbound::Message(m))).is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    let _ = inbound.send((ctx, closed("socket closed".into())));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = inbound.send((ctx, closed(e.to_string())));
                    return;
                }
            }
        }
    }
}
