//! Streaming text-to-speech: one provider-neutral configuration, one event type and one session
//! handle per call.
//!
//! A *context* is one assistant reply (the core's generation id). The call task sends text
//! chunks with [`TtsSession::speak`] (each chunk is synthesised as soon as the vendor allows),
//! may ask for what it gave so far with [`TtsSession::flush`] (e.g. before a tool call; the
//! reply goes on afterwards), ends the reply with [`TtsSession::end`] and receives
//! [`TtsEvent::Audio`] then one [`TtsEvent::Done`]. [`TtsSession::cancel`] is barge-in: audio
//! of a cancelled context never surfaces and it gets no `Done`. The socket stays open across
//! replies. Volume is applied by the core, not here.
//!
//! Layout: [`protocol`] is the vendor trait, [`driver`] the one websocket session driver, and
//! one file per vendor ([`elevenlabs`], [`deepgram_aura`], [`cartesia`]) implements the trait
//! and exposes `connect`.

pub mod cartesia;
pub mod deepgram_aura;
pub(crate) mod driver;
pub mod elevenlabs;
pub mod protocol;

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use switchboard_netguard::OutboundPolicy;

use crate::error::ProviderError;
use crate::stt::redacted;

pub mod openai;

/// Everything needed to open a TTS session, named after the assistant record's `tts_settings`.
#[derive(Clone, PartialEq)]
pub struct TtsConfig {
    /// `tts_settings.provider`: `elevenlabs`, `deepgram` (Aura) or `cartesia`.
    pub provider: String,
    /// `tts_settings.voice_id`: ElevenLabs voice id; for Deepgram the Aura model when
    /// `model_id` is empty (e.g. `aura-2-thalia-en`).
    pub voice_id: String,
    /// `tts_settings.model_id`, e.g. `eleven_flash_v2_5`; for Deepgram the Aura model; for
    /// Cartesia e.g. `sonic-2` (`None`: [`cartesia::DEFAULT_MODEL`]).
    pub model_id: Option<String>,
    /// `tts_settings.stability` (ElevenLabs, 0..1).
    pub stability: Option<f32>,
    /// `tts_settings.similarity_boost` (ElevenLabs, 0..1).
    pub similarity_boost: Option<f32>,
    /// `tts_settings.style` (ElevenLabs, 0..1).
    pub style: Option<f32>,
    /// `tts_settings.use_speaker_boost` (ElevenLabs).
    pub use_speaker_boost: Option<bool>,
    /// `tts_settings.speed` (ElevenLabs 0.7–1.2; Aura `speed`; Cartesia
    /// `generation_config.speed` 0.6–1.5, refused outside).
    pub speed: Option<f32>,
    /// `tts_settings.latency`: ElevenLabs `optimize_streaming_latency` (0–4), sent as a query
    /// parameter when set.
    pub latency: Option<u8>,
    /// Output format; `ulaw_8000` (8 kHz µ-law, Twilio's) is what the call path expects.
    pub output_format: String,
    /// Language of the speech (ISO 639-1): ElevenLabs `language_code` for models that enforce
    /// a language; Cartesia `language`.
    pub language_code: Option<String>,
    /// OpenAI speech `instructions` (tone, accent, pace; `tts_settings.provider_config.instructions`).
    pub instructions: Option<String>,
    /// ElevenLabs `generation_config.chunk_length_schedule` (characters, each 50–500); empty
    /// leaves the server default.
    pub chunk_length_schedule: Vec<u32>,
    /// ElevenLabs `auto_mode`.
    pub auto_mode: bool,
    /// ElevenLabs `sync_alignment`: character timings with every chunk (for "what was heard").
    pub sync_alignment: bool,
    /// ElevenLabs `inactivity_timeout` (s, max 180): how long the socket may sit idle.
    pub inactivity_timeout_s: u32,
    /// `tts_settings.provider_config.base_url`: scheme + host + port (+ optional path prefix)
    /// replacing the vendor's; `http` maps to `ws`, `https` to `wss`.
    pub base_url: Option<String>,
    /// Where this session may connect: the server's outbound policy, so a tenant `base_url`
    /// cannot reach inside our network. The default refuses every non-public address.
    pub outbound: OutboundPolicy,
    /// API key. Never logged; redacted in `Debug`.
    pub api_key: String,
    /// Websocket connect + handshake timeout (ms).
    pub connect_timeout_ms: u64,
    /// No audio within this long (ms) after text was sent, or, once the reply is flushed, no
    /// further audio or end of reply within this long, fails the reply: the socket is taken as
    /// stalled and replaced (its other replies fail too), so the next reply gets a fresh one.
    pub first_byte_timeout_ms: u64,
    /// How long `close()` waits (ms) for the provider to finish.
    pub close_timeout_ms: u64,
}

impl Default for TtsConfig {
    fn default() -> Self {
        Self {
            provider: "elevenlabs".into(),
            voice_id: String::new(),
            model_id: Some("eleven_flash_v2_5".into()),
            stability: None,
            similarity_boost: None,
            style: None,
            use_speaker_boost: None,
            speed: None,
            latency: None,
            output_format: "ulaw_8000".into(),
            language_code: None,
            instructions: None,
            chunk_length_schedule: Vec::new(),
            auto_mode: false,
            sync_alignment: true,
            inactivity_timeout_s: 180,
            base_url: None,
            outbound: OutboundPolicy::default(),
            api_key: String::new(),
            connect_timeout_ms: 5000,
            first_byte_timeout_ms: 3000,
            close_timeout_ms: 3000,
        }
    }
}

impl fmt::Debug for TtsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtsConfig")
            .field("provider", &self.provider)
            .field("voice_id", &self.voice_id)
            .field("model_id", &self.model_id)
            .field("stability", &self.stability)
            .field("similarity_boost", &self.similarity_boost)
            .field("style", &self.style)
            .field("use_speaker_boost", &self.use_speaker_boost)
            .field("speed", &self.speed)
            .field("latency", &self.latency)
            .field("output_format", &self.output_format)
            .field("language_code", &self.language_code)
            .field("instructions", &self.instructions)
            .field("chunk_length_schedule", &self.chunk_length_schedule)
            .field("auto_mode", &self.auto_mode)
            .field("sync_alignment", &self.sync_alignment)
            .field("inactivity_timeout_s", &self.inactivity_timeout_s)
            .field("base_url", &self.base_url)
            .field("outbound", &self.outbound.allow_list().to_string())
            .field("api_key", &redacted(&self.api_key))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("first_byte_timeout_ms", &self.first_byte_timeout_ms)
            .field("close_timeout_ms", &self.close_timeout_ms)
            .finish()
    }
}

/// Character timings of one audio chunk (ElevenLabs `alignment`). Times are ms relative to the
/// start of that chunk's audio.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Alignment {
    /// Characters as spoken, one entry per timing entry.
    pub chars: Vec<char>,
    /// Start of each character (ms from the chunk start).
    pub char_start_ms: Vec<u32>,
    /// Duration of each character (ms).
    pub char_dur_ms: Vec<u32>,
}

/// What a TTS session reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsEvent {
    /// Audio of `context`: raw 8 kHz µ-law (any container header stripped), in order.
    Audio {
        /// The reply this audio belongs to.
        context: u64,
        /// µ-law bytes (not necessarily a multiple of 160).
        mulaw: Bytes,
        /// Character timings of this chunk when the provider gives them. Boxed: every slot
        /// of the session's event queue is as large as the largest event, and the queue
        /// allocates 32 slots when the call starts.
        alignment: Option<Box<Alignment>>,
    },
    /// Every audio chunk of a flushed context has been delivered.
    Done {
        /// The finished reply.
        context: u64,
    },
    /// A context (or, with `context: None`, the whole session) failed: audio timeout (a
    /// stalled socket), dropped socket, provider error. A failed context gets no `Done`. After
    /// a socket-level failure the next new context reconnects.
    Failed {
        /// The reply that failed, or `None` for the session.
        context: Option<u64>,
        /// Why.
        error: ProviderError,
    },
}

/// Commands from the handle to the session task.
#[derive(Debug)]
pub(crate) enum TtsCommand {
    Speak(u64, String),
    Flush(u64),
    End(u64),
    Cancel(u64),
    Close(oneshot::Sender<()>),
}

/// Events the session task can queue before it waits for the call task.
pub(crate) const EVENT_QUEUE: usize = 1024;

/// Handle to a live TTS session. Nothing here awaits the network except `close()`.
pub struct TtsSession {
    commands: mpsc::UnboundedSender<TtsCommand>,
    /// Audio, done and failure events of the session, in order; ends after `close()`. Prefer
    /// [`TtsSession::recv`], which also drops events of contexts already cancelled but still
    /// queued here; readers of this field must ignore such stale events themselves (e.g. by
    /// generation id).
    pub events: mpsc::Receiver<TtsEvent>,
    /// Contexts cancelled through this handle: their queued events are dropped by `recv`.
    cancelled: HashSet<u64>,
    close_timeout: Duration,
}

impl fmt::Debug for TtsSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TtsSession").finish_non_exhaustive()
    }
}

fn session_gone(provider: &'static str) -> ProviderError {
    ProviderError::Protocol {
        provider,
        message: "TTS session has ended".into(),
    }
}

impl TtsSession {
    pub(crate) fn new(
        commands: mpsc::UnboundedSender<TtsCommand>,
        events: mpsc::Receiver<TtsEvent>,
        close_timeout: Duration,
    ) -> Self {
        Self {
            commands,
            events,
            cancelled: HashSet::new(),
            close_timeout,
        }
    }

    /// The next event (cancel-safe, for `select!`). Events of contexts cancelled through this
    /// handle are dropped here, even those already queued when `cancel` was called. `None`
    /// once the session has ended.
    pub async fn recv(&mut self) -> Option<TtsEvent> {
        loop {
            let event = self.events.recv().await?;
            let context = match &event {
                TtsEvent::Audio { context, .. } | TtsEvent::Done { context } => Some(*context),
                TtsEvent::Failed { context, .. } => *context,
            };
            if context.is_some_and(|c| self.cancelled.contains(&c)) {
                continue;
            }
            return Some(event);
        }
    }

    /// Synthesise `text` as part of reply `context` (opened on first use). Text is sent at
    /// once and generated without waiting for more; give it speakable chunks (sentences or
    /// clauses). Empty text is ignored.
    pub fn speak(&self, context: u64, text: &str) -> Result<(), ProviderError> {
        if text.trim().is_empty() {
            return Ok(());
        }
        self.commands
            .send(TtsCommand::Speak(context, text.to_owned()))
            .map_err(|_| session_gone("tts"))
    }

    /// Generate everything `context` was given so far now, without ending it: more text may
    /// follow (a reply that speaks, runs a tool, then speaks again). No `Done` comes of it.
    pub fn flush(&self, context: u64) -> Result<(), ProviderError> {
        self.commands
            .send(TtsCommand::Flush(context))
            .map_err(|_| session_gone("tts"))
    }

    /// End reply `context`: no more text; everything spoken is generated, then
    /// `Done { context }` (at once when nothing was spoken).
    pub fn end(&self, context: u64) -> Result<(), ProviderError> {
        self.commands
            .send(TtsCommand::End(context))
            .map_err(|_| session_gone("tts"))
    }

    /// Barge-in: drop everything of `context` at once; none of its audio surfaces afterwards.
    pub fn cancel(&mut self, context: u64) -> Result<(), ProviderError> {
        self.cancelled.insert(context);
        self.commands
            .send(TtsCommand::Cancel(context))
            .map_err(|_| session_gone("tts"))
    }

    /// Close the socket (waits at most `close_timeout_ms`); `recv` then returns `None`.
    pub async fn close(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(TtsCommand::Close(tx)).is_err() {
            return;
        }
        let _ = tokio::time::timeout(self.close_timeout, rx).await;
    }
}

/// Open a TTS session with the connect function the registry lists for `cfg.provider`
/// (ElevenLabs multi-context websocket, falling back to one stream-input socket per context
/// when the multi-context endpoint is refused; Deepgram Aura; Cartesia; OpenAI speech). Returns once the first websocket
/// handshake succeeded, so a bad key fails here; a provider the engine does not run is a
/// `Config` error.
pub async fn connect_tts(cfg: &TtsConfig) -> Result<TtsSession, ProviderError> {
    crate::registry::tts_connector(&cfg.provider)?(cfg).await
}

/// Strip a RIFF/WAVE or Sun `.snd` header if a provider ever puts one in front of raw audio.
pub(crate) fn strip_audio_header(audio: Bytes) -> Bytes {
    if audio.len() >= 12 && &audio[..4] == b"RIFF" && &audio[8..12] == b"WAVE" {
        // Walk the chunks to `data`.
        let mut pos = 12usize;
        // `checked_add`: chunk sizes come from the server; on 32-bit targets `pos` can saturate.
        while pos.checked_add(8).is_some_and(|end| end <= audio.len()) {
            let id = &audio[pos..pos + 4];
            let size = u32::from_le_bytes([
                audio[pos + 4],
                audio[pos + 5],
                audio[pos + 6],
                audio[pos + 7],
            ]) as usize;
            if id == b"data" {
                return audio.slice((pos + 8).min(audio.len())..);
            }
            pos = pos.saturating_add(8).saturating_add(size);
        }
        return Bytes::new();
    }
    if audio.len() >= 8 && &audio[..4] == b".snd" {
        let offset = u32::from_be_bytes([audio[4], audio[5], audio[6], audio[7]]) as usize;
        return audio.slice(offset.min(audio.len())..);
    }
    audio
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_stripped() {
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF\x00\x00\x00\x00WAVEfmt ");
        wav.extend_from_slice(&4u32.to_le_bytes());
        wav.extend_from_slice(&[1, 2, 3, 4]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&3u32.to_le_bytes());
        wav.extend_from_slice(&[0xAA, 0xBB, 0xCC]);
        assert_eq!(
            &strip_audio_header(Bytes::from(wav))[..],
            &[0xAA, 0xBB, 0xCC]
        );
        let mut snd = b".snd".to_vec();
        snd.extend_from_slice(&24u32.to_be_bytes());
        snd.extend_from_slice(&[0u8; 16]);
        snd.extend_from_slice(&[0x11, 0x22]);
        assert_eq!(&strip_audio_header(Bytes::from(snd))[..], &[0x11, 0x22]);
        assert_eq!(
            &strip_audio_header(Bytes::from_static(&[0xFF, 0x7F]))[..],
            &[0xFF, 0x7F]
        );
    }

    #[test]
    fn debug_redacts_key() {
        let cfg = TtsConfig {
            api_key: "xi-secret".into(),
            ..TtsConfig::default()
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("xi-secret") && s.contains("<redacted>"));
    }
}
