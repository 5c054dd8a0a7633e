//! ElevenLabs streaming TTS over the multi-context websocket
//! (`/v1/text-to-speech/{voice_id}/multi-stream-input`): one socket per call, one context per
//! assistant reply, so barge-in is a `close_context` rather than a reconnect. When the
//! multi-context endpoint is refused at the handshake (4xx other than auth/rate limits), the
//! session falls back to one single-context `stream-input` socket per reply.
//!
//! Per context: the first message carries `voice_settings`/`generation_config`; each text chunk
//! ends with a single space and is sent with `flush: true` (audio at once); `flush(context)`
//! closes the context, which lets the flushed audio finish and then brings `isFinal` → `Done`.
//! Audio of cancelled or unknown contexts is dropped. Protocol: `docs/providers/elevenlabs-tts.md`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use switchboard_netguard::OutboundPolicy;

use crate::error::ProviderError;
use crate::tts::{
    Alignment, EVENT_QUEUE, TtsCommand, TtsConfig, TtsEvent, TtsSession, strip_audio_header,
};
use crate::ws::{self as wsutil, Ws};

/// Provider name used in errors.
pub(crate) const PROVIDER: &str = "elevenlabs";
/// ElevenLabs' public websocket host.
const DEFAULT_BASE: &str = "wss://api.elevenlabs.io";
/// A socket must have lived this long before its end triggers an eager reconnect (no loops
/// against a server that accepts and closes at once).
const MIN_SOCKET_LIFE: Duration = Duration::from_secs(1);

/// The stream URL (`multi`: multi-stream-input, else stream-input) with every query parameter
/// mapped from `cfg`.
pub fn stream_url(cfg: &TtsConfig, multi: bool) -> Result<Url, ProviderError> {
    let voice = cfg.voice_id.trim();
    if voice.is_empty()
        || !voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ProviderError::Config {
            provider: PROVIDER,
            message: "voice_id must be a non-empty ElevenLabs voice id".into(),
        });
    }
    let endpoint = if multi {
        "multi-stream-input"
    } else {
        "stream-input"
    };
    let path = format!("/v1/text-to-speech/{voice}/{endpoint}");
    let mut url = wsutil::ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, &path)?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(model) = cfg.model_id.as_deref().filter(|m| !m.is_empty()) {
            q.append_pair("model_id", model);
        }
        q.append_pair("output_format", &cfg.output_format);
        q.append_pair(
            "sync_alignment",
            if cfg.sync_alignment { "true" } else { "false" },
        );
        q.append_pair(
            "inactivity_timeout",
            &cfg.inactivity_timeout_s.clamp(1, 180).to_string(),
        );
        if cfg.auto_mode {
            q.append_pair("auto_mode", "true");
        }
        if let Some(lang) = cfg.language_code.as_deref().filter(|l| !l.is_empty()) {
            q.append_pair("language_code", lang);
        }
        if let Some(latency) = cfg.latency {
            q.append_pair("optimize_streaming_latency", &latency.min(4).to_string());
        }
    }
    Ok(url)
}

/// `voice_settings` with only the configured fields (the server fills the rest).
fn voice_settings(cfg: &TtsConfig) -> Option<Value> {
    let mut v = serde_json::Map::new();
    if let Some(x) = cfg.stability {
        v.insert("stability".into(), json!(x));
    }
    if let Some(x) = cfg.similarity_boost {
        v.insert("similarity_boost".into(), json!(x));
    }
    if let Some(x) = cfg.style {
        v.insert("style".into(), json!(x));
    }
    if let Some(x) = cfg.use_speaker_boost {
        v.insert("use_speaker_boost".into(), json!(x));
    }
    if let Some(x) = cfg.speed {
        v.insert("speed".into(), json!(x));
    }
    (!v.is_empty()).then_some(Value::Object(v))
}

/// First message of a context (multi) or socket (single).
fn init_message(cfg: &TtsConfig, context_id: Option<&str>) -> Message {
    let mut m = json!({"text": " "});
    if let Some(vs) = voice_settings(cfg) {
        m["voice_settings"] = vs;
    }
    if !cfg.chunk_length_schedule.is_empty() {
        m["generation_config"] = json!({"chunk_length_schedule": cfg.chunk_length_schedule});
    }
    if let Some(id) = context_id {
        m["context_id"] = json!(id);
    }
    Message::text(m.to_string())
}

/// A text chunk ending with exactly one space.
fn text_chunk(text: &str) -> String {
    let mut t = text.trim_end().to_owned();
    t.push(' ');
    t
}

fn context_name(context: u64) -> String {
    format!("ctx-{context}")
}

fn context_from_name(name: &str) -> Option<u64> {
    name.strip_prefix("ctx-").and_then(|n| n.parse().ok())
}

/// Open the session (see the module docs).
pub(crate) async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let multi_url = stream_url(cfg, true)?;
    let single_url = stream_url(cfg, false)?;
    let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
    let key = cfg.api_key.trim().to_owned();
    let (ws, multi) = match wsutil::connect(
        PROVIDER,
        &multi_url,
        &[("xi-api-key", &key)],
        None,
        timeout,
        &cfg.outbound,
    )
    .await
    {
        Ok(ws) => (Some(ws), true),
        Err(ProviderError::Http { status, .. })
            if (400..500).contains(&status) && !matches!(status, 401 | 403 | 408 | 429) =>
        {
            tracing::info!(
                provider = PROVIDER,
                status,
                "multi-context refused; one socket per reply"
            );
            (None, false)
        }
        Err(e) => return Err(e),
    };
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
    let driver = Driver {
        cfg: cfg.clone(),
        key,
        multi_url,
        single_url,
        timeout,
        multi,
        ws,
        commands: commands_rx,
        events: events_tx,
        contexts: HashMap::new(),
        dead: HashSet::new(),
        single: HashMap::new(),
        inbound_tx,
        inbound_rx,
    };
    // Boxed: the task keeps its by-value `self` twice otherwise (it lives for the call).
    tokio::spawn(Box::new(driver).run());
    Ok(TtsSession::new(
        commands_tx,
        events_rx,
        Duration::from_millis(cfg.close_timeout_ms.max(1)),
    ))
}

#[derive(Debug, Default)]
struct Context {
    ending: bool,
    got_audio: bool,
    /// The provider owes this context audio (text was sent and not yet answered) or, once
    /// flushed, the rest of its audio and `isFinal`: by this time, or the socket is stalled.
    audio_deadline: Option<Instant>,
}

/// What a single-context socket task reports.
enum Inbound {
    Text(String),
    Closed(String),
    ConnectFailed(ProviderError),
}

struct Driver {
    cfg: TtsConfig,
    key: String,
    multi_url: Url,
    single_url: Url,
    timeout: Duration,
    multi: bool,
    ws: Option<Ws>,
    commands: mpsc::UnboundedReceiver<TtsCommand>,
    events: mpsc::Sender<TtsEvent>,
    contexts: HashMap<u64, Context>,
    /// Contexts that finished, failed or were cancelled: later commands for them are ignored.
    dead: HashSet<u64>,
    single: HashMap<u64, mpsc::UnboundedSender<Message>>,
    inbound_tx: mpsc::UnboundedSender<(u64, Inbound)>,
    inbound_rx: mpsc::UnboundedReceiver<(u64, Inbound)>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServerMessage {
    audio: Option<String>,
    #[serde(alias = "isFinal")]
    is_final: Option<bool>,
    #[serde(alias = "contextId")]
    context_id: Option<String>,
    alignment: Option<WireAlignment>,
    #[serde(rename = "normalizedAlignment")]
    normalized_alignment: Option<WireAlignment>,
    message: Option<String>,
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireAlignment {
    chars: Vec<String>,
    #[serde(rename = "charStartTimesMs")]
    char_start_times_ms: Vec<f64>,
    #[serde(rename = "charsDurationsMs", alias = "charDurationsMs")]
    chars_durations_ms: Vec<f64>,
}

impl From<WireAlignment> for Alignment {
    fn from(w: WireAlignment) -> Self {
        let ms = |v: Vec<f64>| v.into_iter().map(|x| x.max(0.0).round() as u32).collect();
        Alignment {
            chars: w.chars,
            char_start_ms: ms(w.char_start_times_ms),
            char_dur_ms: ms(w.chars_durations_ms),
        }
    }
}

fn stream_error(message: &str) -> ProviderError {
    let lower = message.to_ascii_lowercase();
    let fatal = [
        "quota",
        "unauthorized",
        "invalid api key",
        "auth",
        "permission",
    ]
    .iter()
    .any(|w| lower.contains(w));
    ProviderError::Stream {
        provider: PROVIDER,
        message: message.to_owned(),
        retryable: !fatal,
    }
}

impl Driver {
    async fn emit(&self, event: TtsEvent) {
        let _ = self.events.send(event).await;
    }

    async fn fail(&mut self, context: u64, error: ProviderError) {
        if self.contexts.remove(&context).is_some() {
            self.dead.insert(context);
            self.single.remove(&context);
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

    async fn run(mut self: Box<Self>) {
        let mut close_done: Option<oneshot::Sender<()>> = None;
        let mut connected_at = Instant::now();
        loop {
            if self.multi && self.ws.is_none() && connected_at.elapsed() >= MIN_SOCKET_LIFE {
                // The socket ended (idle timeout, network): get a fresh one now so the next
                // reply does not pay for the handshake. One attempt; `speak` retries lazily.
                connected_at = Instant::now();
                match wsutil::connect(
                    PROVIDER,
                    &self.multi_url,
                    &[("xi-api-key", &self.key)],
                    None,
                    self.timeout,
                    &self.cfg.outbound,
                )
                .await
                {
                    Ok(ws) => self.ws = Some(ws),
                    Err(error) => {
                        tracing::warn!(provider = PROVIDER, %error, "TTS reconnect failed; will retry on the next reply")
                    }
                }
            }
            let far = Instant::now() + Duration::from_secs(86_400);
            let deadline = self
                .contexts
                .iter()
                .filter_map(|(id, c)| c.audio_deadline.map(|d| (d, *id)))
                .min();
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(TtsCommand::Speak(ctx, text)) => self.speak(ctx, &text).await,
                    Some(TtsCommand::Flush(ctx)) => self.flush(ctx).await,
                    Some(TtsCommand::Cancel(ctx)) => self.cancel(ctx).await,
                    Some(TtsCommand::Close(done)) => {
                        close_done = Some(done);
                        break;
                    }
                    None => break,
                },
                message = next_ws_message(&mut self.ws) => match message {
                    Some(Ok(Message::Text(text))) => self.on_text(None, text.as_str()).await,
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame
                            .map(|f| format!("socket closed: {} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "socket closed".into());
                        self.ws = None;
                        self.fail_all(stream_error(&reason)).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.ws = None;
                        self.fail_all(ProviderError::Connect { provider: PROVIDER, message: e.to_string() }).await;
                    }
                    None => {
                        self.ws = None;
                        self.fail_all(ProviderError::Connect { provider: PROVIDER, message: "socket ended".into() }).await;
                    }
                },
                inbound = self.inbound_rx.recv() => {
                    if let Some((ctx, inbound)) = inbound {
                        match inbound {
                            Inbound::Text(text) => self.on_text(Some(ctx), &text).await,
                            Inbound::Closed(reason) => self.fail(ctx, stream_error(&reason)).await,
                            Inbound::ConnectFailed(error) => self.fail(ctx, error).await,
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.map(|d| d.0).unwrap_or(far)), if deadline.is_some() => {
                    if let Some((_, ctx)) = deadline {
                        self.stalled(ctx).await;
                    }
                }
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.send(Message::text(r#"{"close_socket":true}"#)).await;
            let _ = tokio::time::timeout(
                Duration::from_millis(self.cfg.close_timeout_ms.max(1)),
                async {
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                },
            )
            .await;
            let _ = ws.close(None).await;
        }
        self.single.clear();
        drop(self.events);
        if let Some(done) = close_done {
            let _ = done.send(());
        }
    }

    /// Send on the multi socket; a failed send drops the socket and fails the live contexts.
    async fn send_multi(&mut self, message: Message) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        if let Err(e) = ws.send(message).await {
            self.ws = None;
            self.fail_all(ProviderError::Connect {
                provider: PROVIDER,
                message: e.to_string(),
            })
            .await;
            return false;
        }
        true
    }

    async fn open_context(&mut self, ctx: u64) -> bool {
        if self.multi {
            if self.ws.is_none() {
                match wsutil::connect(
                    PROVIDER,
                    &self.multi_url,
                    &[("xi-api-key", &self.key)],
                    None,
                    self.timeout,
                    &self.cfg.outbound,
                )
                .await
                {
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
            let name = context_name(ctx);
            return self.send_multi(init_message(&self.cfg, Some(&name))).await;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(init_message(&self.cfg, None));
        self.single.insert(ctx, tx);
        self.contexts.insert(ctx, Context::default());
        tokio::spawn(single_context(
            self.single_url.clone(),
            self.key.clone(),
            self.timeout,
            self.cfg.outbound.clone(),
            ctx,
            rx,
            self.inbound_tx.clone(),
        ));
        true
    }

    async fn speak(&mut self, ctx: u64, text: &str) {
        if self.dead.contains(&ctx) {
            return;
        }
        if !self.contexts.contains_key(&ctx) && !self.open_context(ctx).await {
            return;
        }
        let chunk = text_chunk(text);
        let sent = if self.multi {
            let m = json!({"text": chunk, "context_id": context_name(ctx), "flush": true});
            self.send_multi(Message::text(m.to_string())).await
        } else {
            let m = json!({"text": chunk, "flush": true});
            self.single
                .get(&ctx)
                .is_some_and(|tx| tx.send(Message::text(m.to_string())).is_ok())
        };
        let timeout = self.audio_timeout();
        if sent && let Some(c) = self.contexts.get_mut(&ctx) {
            c.audio_deadline.get_or_insert(Instant::now() + timeout);
        }
    }

    async fn flush(&mut self, ctx: u64) {
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
        // The rest of the audio and `isFinal` are owed now.
        c.audio_deadline =
            Some(Instant::now() + Duration::from_millis(self.cfg.first_byte_timeout_ms.max(1)));
        if self.multi {
            let m = json!({"context_id": context_name(ctx), "close_context": true});
            self.send_multi(Message::text(m.to_string())).await;
        } else if let Some(tx) = self.single.get(&ctx) {
            let _ = tx.send(Message::text(r#"{"text":""}"#));
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
            provider: PROVIDER,
            waiting_for,
            after: self.audio_timeout(),
        };
        if self.multi {
            tracing::warn!(provider = PROVIDER, %error, "TTS socket stalled; replacing it");
            if let Some(mut ws) = self.ws.take() {
                let _ = ws.close(None).await;
            }
            self.fail_all(error).await;
        } else {
            self.close_context_at_provider(ctx).await;
            self.fail(ctx, error).await;
        }
    }

    fn audio_timeout(&self) -> Duration {
        Duration::from_millis(self.cfg.first_byte_timeout_ms.max(1))
    }

    async fn close_context_at_provider(&mut self, ctx: u64) {
        if self.multi {
            let m = json!({"context_id": context_name(ctx), "close_context": true});
            self.send_multi(Message::text(m.to_string())).await;
        } else {
            // Dropping the sender ends the socket task, which closes the socket.
            self.single.remove(&ctx);
        }
    }

    async fn cancel(&mut self, ctx: u64) {
        self.dead.insert(ctx);
        if self.contexts.remove(&ctx).is_some() {
            self.close_context_at_provider(ctx).await;
        }
    }

    async fn on_text(&mut self, single_ctx: Option<u64>, text: &str) {
        let message: ServerMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(provider = PROVIDER, error = %e, "unparseable server message");
                return;
            }
        };
        let ctx = single_ctx.or_else(|| message.context_id.as_deref().and_then(context_from_name));
        let has_audio = message.audio.as_deref().is_some_and(|a| !a.is_empty());
        if !has_audio
            && message.is_final != Some(true)
            && (message.message.is_some() || message.error.is_some())
        {
            let text = message
                .message
                .clone()
                .or_else(|| {
                    message.error.as_ref().map(|e| {
                        e.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| e.to_string())
                    })
                })
                .unwrap_or_default();
            let error = stream_error(&text);
            match ctx {
                Some(ctx) if self.contexts.contains_key(&ctx) => self.fail(ctx, error).await,
                _ => self.fail_all(error).await,
            }
            return;
        }
        let Some(ctx) = ctx else { return };
        if has_audio {
            let decoded = message
                .audio
                .as_deref()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok());
            let Some(decoded) = decoded else {
                tracing::warn!(provider = PROVIDER, "audio is not valid base64");
                return;
            };
            let Some(c) = self.contexts.get_mut(&ctx) else {
                return;
            };
            let mut audio = Bytes::from(decoded);
            if !c.got_audio {
                audio = strip_audio_header(audio);
            }
            c.got_audio = true;
            // Audio keeps coming while the reply is flushed; before that, the text sent so
            // far may be all answered and the next text (re)arms the deadline.
            c.audio_deadline = c.ending.then(|| {
                Instant::now() + Duration::from_millis(self.cfg.first_byte_timeout_ms.max(1))
            });
            let alignment = message
                .alignment
                .or(message.normalized_alignment)
                .map(Alignment::from);
            if !audio.is_empty() {
                self.emit(TtsEvent::Audio {
                    context: ctx,
                    mulaw: audio,
                    alignment,
                })
                .await;
            }
        }
        if message.is_final == Some(true) && self.contexts.remove(&ctx).is_some() {
            self.dead.insert(ctx);
            self.single.remove(&ctx);
            self.emit(TtsEvent::Done { context: ctx }).await;
        }
    }
}

/// The next message of an optional socket; pends forever without one.
pub(crate) async fn next_ws_message(
    ws: &mut Option<Ws>,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// One single-context socket (fallback mode): forwards outgoing messages, reports incoming.
async fn single_context(
    url: Url,
    key: String,
    timeout: Duration,
    outbound: OutboundPolicy,
    ctx: u64,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    inbound: mpsc::UnboundedSender<(u64, Inbound)>,
) {
    let headers = [("xi-api-key", key.as_str())];
    let connecting = wsutil::connect(PROVIDER, &url, &headers, None, timeout, &outbound);
    let mut ws = match connecting.await {
        Ok(ws) => ws,
        Err(e) => {
            let _ = inbound.send((ctx, Inbound::ConnectFailed(e)));
            return;
        }
    };
    loop {
        tokio::select! {
            message = outgoing.recv() => match message {
                Some(m) => {
                    if let Err(e) = ws.send(m).await {
                        let _ = inbound.send((ctx, Inbound::Closed(e.to_string())));
                        return;
                    }
                }
                None => {
                    let _ = ws.close(None).await;
                    return;
                }
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    if inbound.send((ctx, Inbound::Text(t.as_str().to_owned()))).is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    let _ = inbound.send((ctx, Inbound::Closed("socket closed".into())));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = inbound.send((ctx, Inbound::Closed(e.to_string())));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_messages() {
        let cfg = TtsConfig {
            voice_id: "rachel".into(),
            model_id: Some("eleven_turbo_v2_5".into()),
            language_code: Some("en".into()),
            latency: Some(3),
            auto_mode: true,
            base_url: Some("http://127.0.0.1:1".into()),
            api_key: "k".into(),
            stability: Some(0.4),
            chunk_length_schedule: vec![50, 90],
            ..TtsConfig::default()
        };
        let url = stream_url(&cfg, true)
            .map(|u| u.to_string())
            .unwrap_or_default();
        assert!(
            url.starts_with("ws://127.0.0.1:1/v1/text-to-speech/rachel/multi-stream-input?"),
            "{url}"
        );
        for part in [
            "model_id=eleven_turbo_v2_5",
            "output_format=ulaw_8000",
            "sync_alignment=true",
            "inactivity_timeout=180",
            "auto_mode=true",
            "language_code=en",
            "optimize_streaming_latency=3",
        ] {
            assert!(url.contains(part), "{url} lacks {part}");
        }
        assert!(
            stream_url(
                &TtsConfig {
                    voice_id: "a/b".into(),
                    ..cfg.clone()
                },
                true
            )
            .is_err()
        );
        let init = init_message(&cfg, Some("ctx-1"))
            .into_text()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let v: Value = serde_json::from_str(&init).unwrap_or_default();
        assert_eq!(v["text"], " ");
        assert_eq!(v["context_id"], "ctx-1");
        assert!(
            v["voice_settings"]["stability"]
                .as_f64()
                .is_some_and(|s| (s - 0.4).abs() < 1e-6)
        );
        assert!(v["voice_settings"].get("speed").is_none());
        assert_eq!(
            v["generation_config"]["chunk_length_schedule"],
            json!([50, 90])
        );
        assert_eq!(text_chunk("Hello there.  "), "Hello there. ");
        assert_eq!(context_from_name(&context_name(42)), Some(42));
    }

    /// Fuzz target (see `docs/security/fuzzing.md`): any server message — generated JSON with
    /// the protocol's keys, or arbitrary text — parses or is dropped without a panic; an
    /// alignment keeps one timing per entry; context names round trip.
    #[test]
    fn fuzz_elevenlabs_server_messages() {
        use bolero::check;
        use switchboard_fuzzkit::Json;
        check!()
            .with_type::<(Json, u64, Vec<u8>)>()
            .with_iterations(20_000)
            .for_each(|(json, context, raw)| {
                assert_eq!(context_from_name(&context_name(*context)), Some(*context));
                let generated = json
                    .to_value(
                        &[
                            "audio",
                            "isFinal",
                            "contextId",
                            "alignment",
                            "normalizedAlignment",
                            "chars",
                            "charStartTimesMs",
                            "charsDurationsMs",
                            "message",
                            "error",
                        ],
                        &["ctx-1", "ctx-18446744073709551615", "ctx-", "AAAA"],
                    )
                    .to_string();
                for text in [generated, String::from_utf8_lossy(raw).into_owned()] {
                    let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                        continue;
                    };
                    if let Some(name) = &message.context_id {
                        let _ = context_from_name(name);
                    }
                    for wire in [message.alignment, message.normalized_alignment]
                        .into_iter()
                        .flatten()
                    {
                        let (starts, durations) = (
                            wire.char_start_times_ms.len(),
                            wire.chars_durations_ms.len(),
                        );
                        let a = Alignment::from(wire);
                        assert_eq!(a.char_start_ms.len(), starts);
                        assert_eq!(a.char_dur_ms.len(), durations);
                    }
                }
            });
    }
}
