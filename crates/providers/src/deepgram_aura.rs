//! Deepgram Aura streaming TTS over the websocket `/v1/speak` (`encoding=mulaw`,
//! `sample_rate=8000`): `Speak` + `Flush` per text chunk, `Flushed` marks the end of a chunk's
//! audio, `Clear` is barge-in, `Close` ends the socket. One socket per call; contexts are
//! sequential because Aura plays flushes in order (binary audio belongs to the oldest
//! outstanding flush). `Clear` drops everything queued at the server, so cancelling a context
//! also fails any other unfinished context (in practice there is only the current reply).
//!
//! Protocol: `docs/providers/deepgram-aura.md`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use switchboard_netguard::OutboundPolicy;

use crate::elevenlabs::next_ws_message;
use crate::error::ProviderError;
use crate::tts::{EVENT_QUEUE, TtsCommand, TtsConfig, TtsEvent, TtsSession, strip_audio_header};
use crate::ws::{self as wsutil, Ws};

/// Provider name used in errors.
const PROVIDER: &str = "deepgram";
/// Deepgram's public websocket host.
const DEFAULT_BASE: &str = "wss://api.deepgram.com";

/// The Aura model: `model_id` when set, else `voice_id` (e.g. `aura-2-thalia-en`).
fn model(cfg: &TtsConfig) -> Option<&str> {
    cfg.model_id
        .as_deref()
        .filter(|m| m.starts_with("aura"))
        .or(Some(cfg.voice_id.as_str()))
        .filter(|m| !m.trim().is_empty())
}

/// The `/v1/speak` URL with every query parameter mapped from `cfg`.
pub fn speak_url(cfg: &TtsConfig) -> Result<Url, ProviderError> {
    let Some(model) = model(cfg) else {
        return Err(ProviderError::Config {
            provider: PROVIDER,
            message: "an Aura model (voice_id or model_id, e.g. aura-2-thalia-en) is required"
                .into(),
        });
    };
    let (encoding, rate) = match cfg.output_format.as_str() {
        "ulaw_8000" | "mulaw" | "mulaw_8000" | "" => ("mulaw", 8000),
        "alaw_8000" => ("alaw", 8000),
        other => {
            return Err(ProviderError::Config {
                provider: PROVIDER,
                message: format!("output format `{other}` is not supported on the call path"),
            });
        }
    };
    let mut url = wsutil::ws_url(PROVIDER, cfg.base_url.as_deref(), DEFAULT_BASE, "/v1/speak")?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("model", model.trim());
        q.append_pair("encoding", encoding);
        q.append_pair("sample_rate", &rate.to_string());
        if let Some(speed) = cfg.speed {
            q.append_pair("speed", &speed.to_string());
        }
    }
    Ok(url)
}

/// Open the session.
pub(crate) async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let url = speak_url(cfg)?;
    let auth = format!("Token {}", cfg.api_key.trim());
    let timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
    let ws = wsutil::connect(
        PROVIDER,
        &url,
        &[("authorization", &auth)],
        Some("dg-error"),
        timeout,
        &cfg.outbound,
    )
    .await?;
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let driver = Driver {
        url,
        auth,
        outbound: cfg.outbound.clone(),
        timeout,
        audio_timeout: Duration::from_millis(cfg.first_byte_timeout_ms.max(1)),
        close_timeout: Duration::from_millis(cfg.close_timeout_ms.max(1)),
        ws: Some(ws),
        commands: commands_rx,
        events: events_tx,
        contexts: HashMap::new(),
        dead: HashSet::new(),
        flushes: VecDeque::new(),
        clearing: 0,
        progress_deadline: None,
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
    outstanding: u32,
    ending: bool,
    got_audio: bool,
}

struct Driver {
    url: Url,
    auth: String,
    /// Reconnects are held to the same outbound policy as the first connect.
    outbound: OutboundPolicy,
    timeout: Duration,
    /// The oldest unanswered `Flush` must make progress (audio or `Flushed`) within this long.
    audio_timeout: Duration,
    close_timeout: Duration,
    ws: Option<Ws>,
    commands: mpsc::UnboundedReceiver<TtsCommand>,
    events: mpsc::Sender<TtsEvent>,
    contexts: HashMap<u64, Context>,
    dead: HashSet<u64>,
    /// The context of every `Flush` not yet answered by `Flushed`, oldest first.
    flushes: VecDeque<u64>,
    /// `Clear`s not yet answered by `Cleared`: audio and `Flushed` in between are stale.
    clearing: u32,
    /// While a `Flush` is unanswered: when the server must next show progress (audio or
    /// `Flushed`), or the socket counts as stalled.
    progress_deadline: Option<Instant>,
}

impl Driver {
    async fn emit(&self, event: TtsEvent) {
        let _ = self.events.send(event).await;
    }

    async fn fail(&mut self, ctx: u64, error: ProviderError) {
        if self.contexts.remove(&ctx).is_some() {
            self.dead.insert(ctx);
            self.emit(TtsEvent::Failed {
                context: Some(ctx),
                error,
            })
            .await;
        }
    }

    /// The server showed progress on the oldest flush (or it is answered): re-arm the stall
    /// deadline while flushes remain unanswered.
    fn progressed(&mut self) {
        self.progress_deadline =
            (!self.flushes.is_empty()).then(|| Instant::now() + self.audio_timeout);
    }

    async fn drop_socket(&mut self, error: ProviderError) {
        self.ws = None;
        self.flushes.clear();
        self.clearing = 0;
        self.progress_deadline = None;
        let mut ids: Vec<u64> = self.contexts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.fail(id, error.clone()).await;
        }
    }

    async fn send(&mut self, value: Value) -> bool {
        let Some(ws) = self.ws.as_mut() else {
            return false;
        };
        if let Err(e) = ws.send(Message::text(value.to_string())).await {
            self.drop_socket(ProviderError::Connect {
                provider: PROVIDER,
                message: e.to_string(),
            })
            .await;
            return false;
        }
        true
    }

    async fn run(mut self: Box<Self>) {
        let mut close_done: Option<oneshot::Sender<()>> = None;
        loop {
            let far = Instant::now() + Duration::from_secs(86_400);
            let deadline = self.progress_deadline;
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(TtsCommand::Speak(ctx, text)) => self.speak(ctx, &text).await,
                    Some(TtsCommand::Flush(ctx)) => self.flush(ctx).await,
                    Some(TtsCommand::Cancel(ctx)) => self.cancel(ctx, None).await,
                    Some(TtsCommand::Close(done)) => {
                        close_done = Some(done);
                        break;
                    }
                    None => break,
                },
                message = next_ws_message(&mut self.ws) => match message {
                    Some(Ok(Message::Binary(audio))) => self.on_audio(audio).await,
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Close(frame))) => {
                        let message = frame
                            .map(|f| format!("socket closed: {} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "socket closed".into());
                        self.drop_socket(ProviderError::Stream { provider: PROVIDER, message, retryable: true }).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        self.drop_socket(ProviderError::Connect { provider: PROVIDER, message: e.to_string() }).await;
                    }
                    None => {
                        self.drop_socket(ProviderError::Connect { provider: PROVIDER, message: "socket ended".into() }).await;
                    }
                },
                _ = tokio::time::sleep_until(deadline.unwrap_or(far)), if deadline.is_some() => {
                    // The server stopped answering: every context on the socket fails and the
                    // next reply opens a fresh one.
                    let got_audio = self
                        .flushes
                        .front()
                        .and_then(|c| self.contexts.get(c))
                        .is_some_and(|c| c.got_audio);
                    let waiting_for = if got_audio { "the rest of the audio" } else { "first audio byte" };
                    let error = ProviderError::Timeout { provider: PROVIDER, waiting_for, after: self.audio_timeout };
                    tracing::warn!(provider = PROVIDER, %error, "TTS socket stalled; replacing it");
                    if let Some(mut ws) = self.ws.take() {
                        let _ = ws.close(None).await;
                    }
                    self.drop_socket(error).await;
                }
            }
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = ws.send(Message::text(r#"{"type":"Close"}"#)).await;
            let _ = tokio::time::timeout(self.close_timeout, async {
                while let Some(Ok(m)) = ws.next().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        drop(self.events);
        if let Some(done) = close_done {
            let _ = done.send(());
        }
    }

    async fn speak(&mut self, ctx: u64, text: &str) {
        if self.dead.contains(&ctx) {
            return;
        }
        if self.ws.is_none() {
            match wsutil::connect(
                PROVIDER,
                &self.url,
                &[("authorization", &self.auth)],
                Some("dg-error"),
                self.timeout,
                &self.outbound,
            )
            .await
            {
                Ok(ws) => self.ws = Some(ws),
                Err(error) => {
                    self.dead.insert(ctx);
                    self.contexts.remove(&ctx);
                    self.emit(TtsEvent::Failed {
                        context: Some(ctx),
                        error,
                    })
                    .await;
                    return;
                }
            }
        }
        self.contexts.entry(ctx).or_default();
        if !self.send(json!({"type": "Speak", "text": text})).await {
            return;
        }
        if !self.send(json!({"type": "Flush"})).await {
            return;
        }
        self.flushes.push_back(ctx);
        if self.progress_deadline.is_none() {
            self.progressed();
        }
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.outstanding += 1;
        }
    }

    async fn flush(&mut self, ctx: u64) {
        if self.dead.contains(&ctx) {
            return;
        }
        let done = match self.contexts.get_mut(&ctx) {
            None => true,
            Some(c) => {
                c.ending = true;
                c.outstanding == 0
            }
        };
        if done {
            self.contexts.remove(&ctx);
            self.dead.insert(ctx);
            self.emit(TtsEvent::Done { context: ctx }).await;
        }
    }

    /// Cancel `ctx` (barge-in, or a failure when `error` is set) with `Clear`.
    async fn cancel(&mut self, ctx: u64, error: Option<ProviderError>) {
        self.dead.insert(ctx);
        let known = match error {
            Some(error) => {
                let known = self.contexts.contains_key(&ctx);
                self.fail(ctx, error).await;
                known
            }
            None => self.contexts.remove(&ctx).is_some(),
        };
        if !known || self.ws.is_none() {
            return;
        }
        let others: Vec<u64> = self.flushes.iter().copied().filter(|c| *c != ctx).collect();
        self.flushes.clear();
        self.progress_deadline = None;
        if self.send(json!({"type": "Clear"})).await {
            self.clearing += 1;
        }
        for other in others {
            if let Some(c) = self.contexts.get_mut(&other) {
                c.outstanding = 0;
            }
            let message = "cleared together with a cancelled context".to_owned();
            self.fail(
                other,
                ProviderError::Stream {
                    provider: PROVIDER,
                    message,
                    retryable: true,
                },
            )
            .await;
        }
    }

    async fn on_audio(&mut self, audio: Bytes) {
        if self.clearing > 0 || audio.is_empty() {
            return;
        }
        let Some(&ctx) = self.flushes.front() else {
            return;
        };
        self.progressed();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let audio = if c.got_audio {
            audio
        } else {
            strip_audio_header(audio)
        };
        c.got_audio = true;
        self.emit(TtsEvent::Audio {
            context: ctx,
            mulaw: audio,
            alignment: None,
        })
        .await;
    }

    async fn on_text(&mut self, text: &str) {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        match value.get("type").and_then(Value::as_str) {
            Some("Flushed") => {
                if self.clearing > 0 {
                    return;
                }
                let Some(ctx) = self.flushes.pop_front() else {
                    return;
                };
                self.progressed();
                let finished = match self.contexts.get_mut(&ctx) {
                    Some(c) => {
                        c.outstanding = c.outstanding.saturating_sub(1);
                        c.ending && c.outstanding == 0
                    }
                    None => false,
                };
                if finished {
                    self.contexts.remove(&ctx);
                    self.dead.insert(ctx);
                    self.emit(TtsEvent::Done { context: ctx }).await;
                }
            }
            Some("Cleared") => self.clearing = self.clearing.saturating_sub(1),
            Some("Warning") => {
                let description = value
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::warn!(provider = PROVIDER, %description, "Aura warning");
            }
            Some("Error") => {
                let message = value
                    .get("description")
                    .or_else(|| value.get("err_msg"))
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned();
                self.drop_socket(ProviderError::Stream {
                    provider: PROVIDER,
                    message,
                    retryable: true,
                })
                .await;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_maps_model_encoding_and_speed() {
        let cfg = TtsConfig {
            provider: "deepgram".into(),
            voice_id: "aura-2-thalia-en".into(),
            model_id: Some("eleven_flash_v2_5".into()),
            speed: Some(1.1),
            base_url: Some("http://127.0.0.1:7".into()),
            ..TtsConfig::default()
        };
        let url = speak_url(&cfg).map(|u| u.to_string()).unwrap_or_default();
        assert_eq!(
            url,
            "ws://127.0.0.1:7/v1/speak?model=aura-2-thalia-en&encoding=mulaw&sample_rate=8000&speed=1.1"
        );
        let bad = TtsConfig {
            output_format: "mp3_44100_128".into(),
            ..cfg
        };
        assert!(speak_url(&bad).is_err());
    }
}
