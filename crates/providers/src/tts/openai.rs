//! OpenAI text-to-speech (`POST {base}/audio/speech`, `response_format: "pcm"`), protocol in
//! `docs/providers/openai-tts.md`.
//!
//! There is no input streaming: every [`TtsSession::speak`] chunk of a reply (a sentence or
//! clause from the core's chunker) is one HTTP request whose body streams raw 24 kHz 16-bit
//! mono PCM back. Requests start as soon as their text arrives (up to [`MAX_IN_FLIGHT`] per
//! session, across replies), so the next sentence is being generated while the previous one
//! plays; their audio is delivered strictly in order. The session's own task resamples 24 kHz
//! to 8 kHz and encodes µ-law ([`PcmToMulaw`]: one continuous stream per reply, so sentences
//! join without a seam), never the call task. Cancel (barge-in) aborts the reply's requests:
//! dropping the connection is OpenAI's only way to stop a generation. A request with no audio
//! within `first_byte_timeout_ms`, or that stalls that long between pieces, fails its reply.
//!
//! Sources: <https://developers.openai.com/api/reference/resources/audio/subresources/speech/methods/create>,
//! <https://platform.openai.com/docs/guides/text-to-speech> (formats: "PCM: similar to WAV but
//! containing the raw samples in 24kHz (16-bit signed, low-endian), without the header").

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::Instrument as _;

use switchboard_netguard::{GuardedClient, refusal_of};

use crate::error::ProviderError;
use crate::llm::{error_chain, read_http_error};
use crate::transcode::PcmToMulaw;
use crate::tts::{EVENT_QUEUE, TtsCommand, TtsConfig, TtsEvent, TtsSession};

/// Provider name used in errors.
const PROVIDER: &str = "openai";
/// OpenAI's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used when the record names none (or the record's default `turbo`, which is not
/// an OpenAI model).
pub const DEFAULT_MODEL: &str = "gpt-4o-mini-tts";
/// Sample rate of `response_format: "pcm"`, in Hz.
pub const PCM_RATE_HZ: u32 = 24_000;
/// Longest `input` the API takes, in characters; longer text is split into several requests.
pub const MAX_INPUT_CHARS: usize = 4096;
/// Speed range the API accepts.
pub const SPEED_RANGE: std::ops::RangeInclusive<f32> = 0.25..=4.0;
/// Requests one session runs at once; later sentences wait for a free place.
pub const MAX_IN_FLIGHT: usize = 4;
/// Audio pieces a request may read ahead of the session task.
const PIECE_QUEUE: usize = 64;

/// Models that take neither `instructions` nor custom voices.
fn is_legacy_model(model: &str) -> bool {
    model.starts_with("tts-1")
}

/// The model sent for `cfg`: `model_id`, or [`DEFAULT_MODEL`] when it is empty or `turbo`.
pub fn model(cfg: &TtsConfig) -> &str {
    match cfg.model_id.as_deref().map(str::trim) {
        None | Some("" | "turbo") => DEFAULT_MODEL,
        Some(m) => m,
    }
}

/// The `voice` field: a built-in voice name, or `{"id": …}` for a custom voice (`voice_…`).
pub fn voice(cfg: &TtsConfig) -> Value {
    let v = cfg.voice_id.trim();
    if v.starts_with("voice_") {
        json!({ "id": v })
    } else {
        Value::String(v.to_owned())
    }
}

/// The request URL: `{base}/audio/speech`, `base` being the API root (`…/v1`).
pub fn speech_url(cfg: &TtsConfig) -> String {
    let base = cfg
        .base_url
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .unwrap_or(DEFAULT_BASE_URL);
    format!("{}/audio/speech", base.trim_end_matches('/'))
}

/// The JSON body for one piece of text (exposed so the mapping can be inspected and tested).
pub fn request_body(cfg: &TtsConfig, input: &str) -> Value {
    let mut body = json!({
        "model": model(cfg),
        "input": input,
        "voice": voice(cfg),
        "response_format": "pcm",
    });
    if let Some(speed) = cfg.speed {
        body["speed"] = json!(speed);
    }
    if let Some(instructions) = cfg.instructions.as_deref().filter(|i| !i.trim().is_empty()) {
        body["instructions"] = json!(instructions);
    }
    body
}

/// What can be refused before any request: no key, a speed out of range, a voice or
/// instructions the model cannot take, a base URL the outbound policy refuses.
fn check(cfg: &TtsConfig) -> Result<(), ProviderError> {
    let config = |message: String| ProviderError::Config {
        provider: PROVIDER,
        message,
    };
    if cfg.api_key.trim().is_empty() {
        return Err(ProviderError::MissingKey { provider: PROVIDER });
    }
    if cfg.voice_id.trim().is_empty() {
        return Err(config(
            "a voice (tts_settings.voice_id, e.g. `coral`) is required".into(),
        ));
    }
    if let Some(speed) = cfg.speed
        && !SPEED_RANGE.contains(&speed)
    {
        return Err(config(format!("speed {speed} is outside 0.25–4.0")));
    }
    let model = model(cfg);
    if is_legacy_model(model) {
        if cfg
            .instructions
            .as_deref()
            .is_some_and(|i| !i.trim().is_empty())
        {
            return Err(config(format!("`{model}` does not take instructions")));
        }
        if voice(cfg).is_object() {
            return Err(config(format!("`{model}` does not take custom voices")));
        }
    }
    if !matches!(
        cfg.output_format.as_str(),
        "ulaw_8000" | "mulaw" | "mulaw_8000" | ""
    ) {
        return Err(config(format!(
            "output format `{}` is not supported on the call path",
            cfg.output_format
        )));
    }
    cfg.outbound
        .check_url_str(&speech_url(cfg))
        .map_err(|refused| ProviderError::NotAllowed {
            provider: PROVIDER,
            message: refused.to_string(),
        })?;
    Ok(())
}

/// Text cut into pieces of at most [`MAX_INPUT_CHARS`] characters, at whitespace when possible.
fn pieces_of(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > MAX_INPUT_CHARS {
        let hard = rest
            .char_indices()
            .nth(MAX_INPUT_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let cut = rest[..hard]
            .rfind(char::is_whitespace)
            .filter(|&i| i > 0)
            .unwrap_or(hard);
        out.push(rest[..cut].to_owned());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

/// Open the session: checks what can be checked without a request and starts the session
/// task. Nothing is sent until the first `speak`, so a bad key, an unknown model or voice
/// surface as [`TtsEvent::Failed`] of the first reply (`ProviderError::Http` 401, 404, 400).
pub async fn connect(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    check(cfg)?;
    let builder =
        reqwest::Client::builder().connect_timeout(Duration::from_millis(cfg.connect_timeout_ms));
    let client = GuardedClient::build(cfg.outbound.clone(), builder).map_err(|e| {
        ProviderError::Connect {
            provider: PROVIDER,
            message: error_chain(&e),
        }
    })?;
    let converter = PcmToMulaw::new(PROVIDER, PCM_RATE_HZ)?;
    let (commands_tx, commands) = mpsc::unbounded_channel();
    let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (pieces_tx, pieces) = mpsc::channel(PIECE_QUEUE);
    let session = Session {
        cfg: cfg.clone(),
        client,
        events,
        pieces_tx,
        replies: VecDeque::new(),
        spare: vec![converter],
        next_request: 0,
        in_flight: 0,
    };
    tokio::spawn(session.run(commands, pieces).in_current_span());
    Ok(TtsSession::new(
        commands_tx,
        events_rx,
        Duration::from_millis(cfg.close_timeout_ms),
    ))
}

/// What a request task reports to the session task.
#[derive(Debug)]
enum Piece {
    Audio(u64, Bytes),
    End(u64),
    Failed(u64, ProviderError),
}

/// One HTTP request: one piece of text of a reply.
struct Request {
    id: u64,
    /// The text, until the request is started.
    text: Option<String>,
    task: Option<AbortHandle>,
    /// Audio that arrived while an earlier request of the reply was still playing.
    held: VecDeque<Bytes>,
    ended: bool,
}

/// One reply (context): its requests in order and its audio stream.
struct Reply {
    context: u64,
    requests: VecDeque<Request>,
    flushed: bool,
    converter: PcmToMulaw,
}

struct Session {
    cfg: TtsConfig,
    client: GuardedClient,
    events: mpsc::Sender<TtsEvent>,
    pieces_tx: mpsc::Sender<Piece>,
    /// Open replies, oldest first.
    replies: VecDeque<Reply>,
    /// Converters of finished replies, reused (building one plans an FFT).
    spare: Vec<PcmToMulaw>,
    next_request: u64,
    in_flight: usize,
}

impl Session {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<TtsCommand>,
        mut pieces: mpsc::Receiver<Piece>,
    ) {
        let mut close_done = None;
        loop {
            let alive = tokio::select! {
                command = commands.recv() => match command {
                    Some(TtsCommand::Speak(context, text)) => self.speak(context, &text),
                    // Every chunk is requested as soon as it is spoken: there is nothing to flush.
                    Some(TtsCommand::Flush(_)) => true,
                    Some(TtsCommand::End(context)) => self.end(context).await,
                    Some(TtsCommand::Cancel(context)) => {
                        self.drop_reply(context);
                        self.start_requests();
                        true
                    }
                    Some(TtsCommand::Close(done)) => {
                        close_done = Some(done);
                        false
                    }
                    None => false,
                },
                Some(piece) = pieces.recv() => self.on_piece(piece).await,
            };
            if !alive {
                break;
            }
        }
        let contexts: Vec<u64> = self.replies.iter().map(|r| r.context).collect();
        for context in contexts {
            self.drop_reply(context);
        }
        if let Some(done) = close_done {
            let _ = done.send(());
        }
    }

    fn reply_mut(&mut self, context: u64) -> Option<&mut Reply> {
        self.replies.iter_mut().find(|r| r.context == context)
    }

    fn speak(&mut self, context: u64, text: &str) -> bool {
        if self.reply_mut(context).is_none() {
            let converter = match self.spare.pop() {
                Some(c) => c,
                None => match PcmToMulaw::new(PROVIDER, PCM_RATE_HZ) {
                    Ok(c) => c,
                    Err(_) => return true,
                },
            };
            self.replies.push_back(Reply {
                context,
                requests: VecDeque::new(),
                flushed: false,
                converter,
            });
        }
        let mut ids = self.next_request..;
        let requests: Vec<Request> = pieces_of(text)
            .into_iter()
            .zip(&mut ids)
            .map(|(text, id)| Request {
                id,
                text: Some(text),
                task: None,
                held: VecDeque::new(),
                ended: false,
            })
            .collect();
        self.next_request = ids.start;
        if let Some(reply) = self.reply_mut(context) {
            reply.requests.extend(requests);
        }
        self.start_requests();
        true
    }

    async fn end(&mut self, context: u64) -> bool {
        match self.reply_mut(context) {
            Some(reply) => reply.flushed = true,
            // Nothing was spoken: an empty reply is done at once.
            None => return self.emit(TtsEvent::Done { context }).await,
        }
        self.advance(context).await
    }

    /// Starts waiting requests, oldest reply first, while places are free.
    fn start_requests(&mut self) {
        for reply in &mut self.replies {
            for request in &mut reply.requests {
                if self.in_flight >= MAX_IN_FLIGHT {
                    return;
                }
                let Some(text) = request.text.take() else {
                    continue;
                };
                let fetch = fetch(
                    self.client.clone(),
                    speech_url(&self.cfg),
                    self.cfg.api_key.trim().to_owned(),
                    request_body(&self.cfg, &text),
                    Duration::from_millis(self.cfg.first_byte_timeout_ms),
                    request.id,
                    self.pieces_tx.clone(),
                );
                request.task = Some(tokio::spawn(fetch.in_current_span()).abort_handle());
                self.in_flight += 1;
            }
        }
    }

    async fn on_piece(&mut self, piece: Piece) -> bool {
        let id = match &piece {
            Piece::Audio(id, _) | Piece::End(id) | Piece::Failed(id, _) => *id,
        };
        let Some(reply) = self
            .replies
            .iter_mut()
            .find(|r| r.requests.iter().any(|q| q.id == id))
        else {
            return true; // A request of a reply already cancelled or failed.
        };
        let context = reply.context;
        let is_head = reply.requests.front().is_some_and(|q| q.id == id);
        match piece {
            Piece::Audio(_, pcm) if is_head => {
                let mulaw = reply.converter.push(&pcm);
                self.audio(context, mulaw).await
            }
            Piece::Audio(_, pcm) => {
                if let Some(q) = reply.requests.iter_mut().find(|q| q.id == id) {
                    q.held.push_back(pcm);
                }
                true
            }
            Piece::End(_) => {
                if let Some(q) = reply.requests.iter_mut().find(|q| q.id == id) {
                    q.ended = true;
                    q.task = None;
                }
                self.in_flight = self.in_flight.saturating_sub(1);
                self.start_requests();
                self.advance(context).await
            }
            Piece::Failed(_, error) => {
                tracing::warn!(context, error = %error, "openai speech request failed");
                self.drop_reply(context);
                self.start_requests();
                self.emit(TtsEvent::Failed {
                    context: Some(context),
                    error,
                })
                .await
            }
        }
    }

    /// Plays what is complete at the head of reply `context`; ends the reply when it is
    /// flushed and nothing is left.
    async fn advance(&mut self, context: u64) -> bool {
        loop {
            let Some(reply) = self.reply_mut(context) else {
                return true;
            };
            if !reply.requests.front().is_some_and(|q| q.ended) {
                break;
            }
            reply.requests.pop_front();
            let Some(next) = reply.requests.front_mut() else {
                break;
            };
            // Audio the next request read ahead while this one played.
            let held: Vec<Bytes> = next.held.drain(..).collect();
            let converted: Vec<Bytes> = held.iter().map(|pcm| reply.converter.push(pcm)).collect();
            for mulaw in converted {
                if !self.audio(context, mulaw).await {
                    return false;
                }
            }
        }
        let Some(i) = self.replies.iter().position(|r| r.context == context) else {
            return true;
        };
        if !(self.replies[i].flushed && self.replies[i].requests.is_empty()) {
            return true;
        }
        let Some(mut reply) = self.replies.remove(i) else {
            return true;
        };
        let tail = reply.converter.finish();
        self.spare.push(reply.converter);
        self.audio(context, tail).await && self.emit(TtsEvent::Done { context }).await
    }

    async fn audio(&self, context: u64, mulaw: Bytes) -> bool {
        if mulaw.is_empty() {
            return true;
        }
        self.emit(TtsEvent::Audio {
            context,
            mulaw,
            alignment: None,
        })
        .await
    }

    /// Sends an event; `false` when the call task is gone.
    async fn emit(&self, event: TtsEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Forgets reply `context`: aborts its requests (closing their connections).
    fn drop_reply(&mut self, context: u64) {
        let Some(i) = self.replies.iter().position(|r| r.context == context) else {
            return;
        };
        let Some(mut reply) = self.replies.remove(i) else {
            return;
        };
        for request in &reply.requests {
            if let Some(task) = &request.task {
                task.abort();
                self.in_flight = self.in_flight.saturating_sub(1);
            }
        }
        reply.converter.reset();
        self.spare.push(reply.converter);
    }
}

/// Runs one request and forwards its audio; the outcome ends with `End` or `Failed`.
async fn fetch(
    client: GuardedClient,
    url: String,
    key: String,
    body: Value,
    timeout: Duration,
    id: u64,
    pieces: mpsc::Sender<Piece>,
) {
    let last = match stream_speech(&client, &url, &key, &body, timeout, id, &pieces).await {
        Ok(()) => Piece::End(id),
        Err(e) => Piece::Failed(id, e),
    };
    let _ = pieces.send(last).await;
}

async fn stream_speech(
    client: &GuardedClient,
    url: &str,
    key: &str,
    body: &Value,
    timeout: Duration,
    id: u64,
    pieces: &mpsc::Sender<Piece>,
) -> Result<(), ProviderError> {
    let not_allowed = |message: String| ProviderError::NotAllowed {
        provider: PROVIDER,
        message,
    };
    let start = Instant::now();
    let first_deadline = start + timeout;
    let request = client
        .post(url)
        .map_err(|refused| not_allowed(refused.to_string()))?
        .bearer_auth(key)
        .json(body);
    let mut response = match tokio::time::timeout_at(first_deadline, request.send()).await {
        Err(_) => {
            return Err(ProviderError::Timeout {
                provider: PROVIDER,
                waiting_for: "response headers",
                after: timeout,
            });
        }
        Ok(Err(e)) => {
            return Err(match refusal_of(&e) {
                Some(refused) => not_allowed(refused.to_string()),
                None => ProviderError::Connect {
                    provider: PROVIDER,
                    message: error_chain(&e.without_url()),
                },
            });
        }
        Ok(Ok(r)) => r,
    };
    if !response.status().is_success() {
        return Err(read_http_error(PROVIDER, response, first_deadline).await);
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        return Err(ProviderError::Protocol {
            provider: PROVIDER,
            message: format!("expected raw PCM audio, got `{content_type}`"),
        });
    }
    let mut got_audio = false;
    loop {
        let (deadline, waiting_for) = if got_audio {
            (Instant::now() + timeout, "next audio")
        } else {
            (first_deadline, "first audio")
        };
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => {
                return Err(ProviderError::Timeout {
                    provider: PROVIDER,
                    waiting_for,
                    after: timeout,
                });
            }
            Ok(Err(e)) => {
                return Err(ProviderError::Stream {
                    provider: PROVIDER,
                    message: format!("connection lost: {}", error_chain(&e.without_url())),
                    retryable: true,
                });
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(bytes))) => {
                got_audio = true;
                if pieces.send(Piece::Audio(id, bytes)).await.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TtsConfig {
        TtsConfig {
            provider: "openai".into(),
            voice_id: "coral".into(),
            api_key: "sk-test".into(),
            ..TtsConfig::default()
        }
    }

    #[test]
    fn the_record_maps_to_the_request() {
        let mut c = cfg();
        // The record's default model `turbo` is not OpenAI's: the default model is used.
        c.model_id = Some("turbo".into());
        c.speed = Some(1.25);
        c.instructions = Some("Speak warmly.".into());
        assert_eq!(
            request_body(&c, "Hi."),
            json!({"model": "gpt-4o-mini-tts", "input": "Hi.", "voice": "coral",
                "response_format": "pcm", "speed": 1.25, "instructions": "Speak warmly."})
        );
        c.model_id = Some("tts-1-hd".into());
        c.voice_id = "voice_123".into();
        c.instructions = None;
        c.speed = None;
        assert_eq!(
            request_body(&c, "Hi."),
            json!({"model": "tts-1-hd", "input": "Hi.", "voice": {"id": "voice_123"},
                "response_format": "pcm"})
        );
        assert_eq!(speech_url(&c), "https://api.openai.com/v1/audio/speech");
        c.base_url = Some("http://127.0.0.1:9/v1/".into());
        assert_eq!(speech_url(&c), "http://127.0.0.1:9/v1/audio/speech");
    }

    #[test]
    fn what_the_api_would_refuse_is_refused_before_a_request() {
        let config = |c: TtsConfig| matches!(check(&c), Err(ProviderError::Config { .. }));
        assert!(config(TtsConfig {
            speed: Some(4.5),
            ..cfg()
        }));
        assert!(config(TtsConfig {
            speed: Some(0.2),
            ..cfg()
        }));
        assert!(config(TtsConfig {
            model_id: Some("tts-1".into()),
            instructions: Some("Whisper.".into()),
            ..cfg()
        }));
        assert!(config(TtsConfig {
            model_id: Some("tts-1".into()),
            voice_id: "voice_abc".into(),
            ..cfg()
        }));
        assert!(config(TtsConfig {
            voice_id: " ".into(),
            ..cfg()
        }));
        assert!(matches!(
            check(&TtsConfig {
                api_key: String::new(),
                ..cfg()
            }),
            Err(ProviderError::MissingKey { .. })
        ));
        // The default policy refuses loopback: nothing is ever sent there.
        assert!(matches!(
            check(&TtsConfig {
                base_url: Some("http://127.0.0.1:9/v1".into()),
                ..cfg()
            }),
            Err(ProviderError::NotAllowed { .. })
        ));
        assert!(check(&cfg()).is_ok());
    }

    #[test]
    fn long_text_is_cut_at_whitespace_within_the_limit() {
        let word = "abcdefghi "; // 10 chars
        let text = word.repeat(900); // 9000 chars
        let pieces = pieces_of(&text);
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.chars().count() <= MAX_INPUT_CHARS));
        assert!(
            pieces
                .iter()
                .all(|p| !p.starts_with(' ') && p.ends_with('i'))
        );
        assert_eq!(pieces.join(" "), text.trim());
        let unbroken = "é".repeat(5000);
        let pieces = pieces_of(&unbroken);
        assert_eq!(
            pieces.iter().map(|p| p.chars().count()).collect::<Vec<_>>(),
            [4096, 904]
        );
        assert_eq!(pieces_of("  Hello.  "), ["Hello."]);
    }
}
