//! Deepgram Aura streaming TTS over the websocket `/v1/speak` (`encoding=mulaw`,
//! `sample_rate=8000`): `Speak` per text chunk, `Flush` to generate what was spoken, `Flushed`
//! marks the end of a flush's audio, `Clear` is barge-in, `Close` ends the socket. One socket
//! per call; contexts are sequential because Aura plays flushes in order (binary audio belongs
//! to the oldest outstanding flush). `Clear` drops everything queued at the server, so
//! cancelling a context also fails any other unfinished context (in practice there is only the
//! current reply).
//!
//! Flushes are batched: Deepgram allows 20 `Flush` per 60 s on a socket. The first text of a
//! quiet socket is flushed at once (first audio fast); text spoken while a flush is being
//! answered is flushed together when its `Flushed` arrives; and no more than
//! [`FLUSHES_PER_WINDOW`] flushes go out in any [`FLUSH_WINDOW`] (a flush over the limit waits
//! for the window). The socket, timeouts and contexts are the generic driver's.
//!
//! Protocol: `docs/providers/deepgram-aura.md`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use super::protocol::{Step, TtsProtocol};
use super::{TtsConfig, TtsSession, driver};
use crate::error::ProviderError;
use crate::ws as wsutil;

/// Provider name used in errors.
const PROVIDER: &str = "deepgram";
/// Deepgram's public websocket host.
const DEFAULT_BASE: &str = "wss://api.deepgram.com";
/// Deepgram's limit of `Flush` messages per [`FLUSH_WINDOW`] on one socket.
pub const FLUSHES_PER_WINDOW: usize = 20;
/// The window of Deepgram's flush limit.
pub const FLUSH_WINDOW: Duration = Duration::from_secs(60);

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
pub async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    let protocol = Aura::new(cfg)?;
    let ws = wsutil::connect(
        PROVIDER,
        &protocol.url,
        &[("authorization", &protocol.auth)],
        Some("dg-error"),
        Duration::from_millis(cfg.connect_timeout_ms.max(1)),
        &cfg.outbound,
    )
    .await?;
    Ok(driver::start(Box::new(protocol), Some(ws), cfg))
}

#[derive(Debug, Default)]
struct Context {
    /// `Flush`es of this context not yet answered.
    outstanding: u32,
    /// Text was spoken since this context's last `Flush`.
    unflushed: bool,
    /// No more text comes.
    ending: bool,
}

/// The protocol of `cfg`, built without I/O: what [`connect`] drives once the socket is open
/// (public for the receive-path bench, `benches/tts_receive.rs`).
pub fn protocol(cfg: &TtsConfig) -> Result<Box<dyn TtsProtocol>, ProviderError> {
    Ok(Box::new(Aura::new(cfg)?))
}

impl Aura {
    fn new(cfg: &TtsConfig) -> Result<Self, ProviderError> {
        Ok(Aura {
            url: speak_url(cfg)?,
            auth: format!("Token {}", cfg.api_key.trim()),
            contexts: HashMap::new(),
            flushes: VecDeque::new(),
            clearing: 0,
            flush_times: VecDeque::new(),
        })
    }
}

/// The Aura protocol state of one socket.
struct Aura {
    url: Url,
    auth: String,
    contexts: HashMap<u64, Context>,
    /// The context of every `Flush` not yet answered by `Flushed`, oldest first.
    flushes: VecDeque<u64>,
    /// `Clear`s not yet answered by `Cleared`: audio and `Flushed` in between are stale.
    clearing: u32,
    /// When the flushes of the last [`FLUSH_WINDOW`] were sent, oldest first.
    flush_times: VecDeque<Instant>,
}

fn send(value: Value) -> Step {
    Step::Send(Message::text(value.to_string()))
}

impl Aura {
    /// When the next flush may go out under the rate limit (`None`: now).
    fn flush_allowed_at(&self, now: Instant) -> Option<Instant> {
        let in_window = self
            .flush_times
            .iter()
            .filter(|t| now.duration_since(**t) < FLUSH_WINDOW)
            .count();
        (in_window >= FLUSHES_PER_WINDOW)
            .then(|| self.flush_times.front().map(|t| *t + FLUSH_WINDOW))
            .flatten()
    }

    /// Flush the context with unflushed text, if no flush is being answered and the rate
    /// limit allows (otherwise `Flushed` or the timer comes back here). A context other than
    /// the oldest waiting one is flushed first so texts never mix.
    fn pump(&mut self, now: Instant) -> Vec<Step> {
        while self
            .flush_times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= FLUSH_WINDOW)
        {
            self.flush_times.pop_front();
        }
        if !self.flushes.is_empty() || self.flush_allowed_at(now).is_some() {
            return Vec::new();
        }
        let mut waiting: Vec<u64> = self
            .contexts
            .iter()
            .filter(|(_, c)| c.unflushed)
            .map(|(id, _)| *id)
            .collect();
        waiting.sort_unstable();
        let Some(&ctx) = waiting.first() else {
            return Vec::new();
        };
        self.flush_now(ctx, now)
    }

    fn flush_now(&mut self, ctx: u64, now: Instant) -> Vec<Step> {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return Vec::new();
        };
        c.unflushed = false;
        c.outstanding += 1;
        self.flushes.push_back(ctx);
        self.flush_times.push_back(now);
        vec![send(json!({"type": "Flush"}))]
    }

    /// `ctx` is complete when it ended and owes nothing.
    fn finish_if_done(&mut self, ctx: u64) -> Option<Step> {
        let done = self
            .contexts
            .get(&ctx)
            .is_some_and(|c| c.ending && c.outstanding == 0 && !c.unflushed);
        if done {
            self.contexts.remove(&ctx);
            return Some(Step::Done { context: ctx });
        }
        None
    }
}

impl TtsProtocol for Aura {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn url(&self) -> &Url {
        &self.url
    }

    fn headers(&self) -> Vec<(&'static str, String)> {
        vec![("authorization", self.auth.clone())]
    }

    fn error_header(&self) -> Option<&'static str> {
        Some("dg-error")
    }

    fn open(&mut self, context: u64) -> Vec<Step> {
        self.contexts.entry(context).or_default();
        Vec::new()
    }

    fn text(&mut self, context: u64, text: &str) -> Vec<Step> {
        let now = Instant::now();
        let mut steps = Vec::new();
        // Text of an earlier context still in the server's buffer must not mix with this one.
        let earlier: Vec<u64> = self
            .contexts
            .iter()
            .filter(|(id, c)| **id != context && c.unflushed)
            .map(|(id, _)| *id)
            .collect();
        for other in earlier {
            steps.extend(self.flush_now(other, now));
        }
        steps.push(send(json!({"type": "Speak", "text": text})));
        self.contexts.entry(context).or_default().unflushed = true;
        steps.extend(self.pump(now));
        steps
    }

    fn flush(&mut self, _context: u64) -> Vec<Step> {
        self.pump(Instant::now())
    }

    fn end(&mut self, context: u64) -> Vec<Step> {
        if let Some(c) = self.contexts.get_mut(&context) {
            c.ending = true;
        }
        let mut steps = self.pump(Instant::now());
        steps.extend(self.finish_if_done(context));
        steps
    }

    fn cancel(&mut self, context: u64) -> Vec<Step> {
        if self.contexts.remove(&context).is_none() {
            return Vec::new();
        }
        let mut steps = vec![send(json!({"type": "Clear"}))];
        self.clearing += 1;
        self.flushes.clear();
        let mut others: Vec<u64> = self.contexts.keys().copied().collect();
        others.sort_unstable();
        for other in others {
            self.contexts.remove(&other);
            steps.push(Step::Failed {
                context: Some(other),
                error: ProviderError::Stream {
                    provider: PROVIDER,
                    message: "cleared together with a cancelled context".into(),
                    retryable: true,
                },
            });
        }
        steps
    }

    fn close(&mut self) -> Option<Message> {
        Some(Message::text(r#"{"type":"Close"}"#))
    }

    fn parse(&mut self, _socket_context: Option<u64>, message: Message) -> Vec<Step> {
        let text = match message {
            Message::Binary(audio) => {
                if self.clearing > 0 || audio.is_empty() {
                    return Vec::new();
                }
                let Some(&ctx) = self.flushes.front() else {
                    return Vec::new();
                };
                return vec![Step::Audio {
                    context: ctx,
                    mulaw: audio,
                    alignment: None,
                }];
            }
            Message::Text(text) => text,
            _ => return Vec::new(),
        };
        let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        match value.get("type").and_then(Value::as_str) {
            Some("Flushed") => {
                if self.clearing > 0 {
                    return Vec::new();
                }
                let Some(ctx) = self.flushes.pop_front() else {
                    return Vec::new();
                };
                if let Some(c) = self.contexts.get_mut(&ctx) {
                    c.outstanding = c.outstanding.saturating_sub(1);
                }
                let mut steps = vec![Step::Progress { context: ctx }];
                steps.extend(self.pump(Instant::now()));
                steps.extend(self.finish_if_done(ctx));
                steps
            }
            Some("Cleared") => {
                self.clearing = self.clearing.saturating_sub(1);
                // Text spoken after the `Clear` may be waiting for the flush it held back.
                self.pump(Instant::now())
            }
            Some("Warning") => {
                let description = value
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::warn!(provider = PROVIDER, %description, "Aura warning");
                Vec::new()
            }
            Some("Error") => {
                let message = value
                    .get("description")
                    .or_else(|| value.get("err_msg"))
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned();
                vec![Step::Broken(ProviderError::Stream {
                    provider: PROVIDER,
                    message,
                    retryable: true,
                })]
            }
            _ => Vec::new(),
        }
    }

    fn socket_lost(&mut self) {
        self.contexts.clear();
        self.flushes.clear();
        self.clearing = 0;
        self.flush_times.clear();
    }

    fn owes_audio(&self, context: u64) -> bool {
        self.contexts
            .get(&context)
            .is_some_and(|c| c.outstanding > 0 || c.unflushed)
    }

    fn wake_at(&self) -> Option<Instant> {
        let waiting = self.flushes.is_empty() && self.contexts.values().any(|c| c.unflushed);
        if !waiting {
            return None;
        }
        self.flush_allowed_at(Instant::now())
    }

    fn wake(&mut self, now: Instant) -> Vec<Step> {
        self.pump(now)
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
