//! Streaming speech-to-text: one provider-neutral configuration, one event type and one session
//! handle, whatever the vendor.
//!
//! The call runtime owns one [`SttSession`] per call. It pushes caller audio with
//! [`SttSession::send_audio`] (never blocks: a background task owns the websocket) and
//! `select!`s on [`SttSession::events`]. Reconnects after a dropped socket happen inside the
//! session: the handle stays valid, audio sent during the gap is buffered and replayed, and
//! timestamps stay call-relative.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

use switchboard_netguard::OutboundPolicy;

use crate::error::ProviderError;

pub mod deepgram;
pub mod deepgram_flux;
pub mod driver;
pub mod elevenlabs;
pub(crate) mod language;
pub mod protocol;
pub mod soniox;
pub mod speechmatics;
pub mod swap;
pub mod telnyx;

pub use switchboard_assistant::{ElevenLabsSttConfig, SonioxSttConfig, SpeechmaticsSttConfig};

/// Audio encoding of the bytes given to [`SttSession::send_audio`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SttEncoding {
    /// G.711 µ-law, 1 byte per sample (Twilio's format; the default).
    #[default]
    Mulaw,
    /// G.711 A-law, 1 byte per sample.
    Alaw,
    /// Signed 16-bit little-endian PCM, 2 bytes per sample.
    Linear16,
}

impl SttEncoding {
    /// The value of Deepgram's `encoding` query parameter.
    pub fn as_deepgram(self) -> &'static str {
        match self {
            SttEncoding::Mulaw => "mulaw",
            SttEncoding::Alaw => "alaw",
            SttEncoding::Linear16 => "linear16",
        }
    }

    /// Bytes per sample, used to turn byte counts into seconds.
    pub fn bytes_per_sample(self) -> u32 {
        match self {
            SttEncoding::Mulaw | SttEncoding::Alaw => 1,
            SttEncoding::Linear16 => 2,
        }
    }
}

/// One boosted word (`stt_settings.keywords[]`): nova-2 family only.
#[derive(Debug, Clone, PartialEq)]
pub struct SttKeyword {
    /// A single word.
    pub keyword: String,
    /// Boost (may be negative to suppress); `None` sends the word without an intensifier.
    pub intensifier: Option<f32>,
}

/// Deepgram Flux turn detection (`stt_settings.flux_config`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FluxConfig {
    /// Confidence (0.5–1.0) needed for `EndOfTurn`; `None` = Deepgram's default 0.7.
    pub eot_threshold: Option<f32>,
    /// Confidence (0.3–0.9) for `EagerEndOfTurn`; `None` = eager mode off.
    pub eager_eot_threshold: Option<f32>,
    /// Silence (ms) after which `EndOfTurn` is forced; `None` = Deepgram's default 5000.
    pub eot_timeout_ms: Option<u32>,
    /// Language hints for `flux-general-multi` (`language_hint`, repeated).
    pub language_hints: Vec<String>,
    /// Opt out of the Deepgram Model Improvement Program.
    pub mip_opt_out: bool,
}

/// Everything needed to open a streaming STT session, named after the assistant record's
/// `stt_settings` so the server maps it field by field.
#[derive(Clone, PartialEq)]
pub struct SttConfig {
    /// `stt_settings.provider`, e.g. `deepgram`.
    pub provider: String,
    /// `stt_settings.model`, e.g. `nova-3`, `nova-2-phonecall`, `flux-general-en`.
    pub model: String,
    /// `stt_settings.language`, e.g. `en-US`; `None` omits it (not sent to Flux).
    pub language: Option<String>,
    /// `stt_settings.punctuate`.
    pub punctuate: bool,
    /// `stt_settings.smart_format`.
    pub smart_format: bool,
    /// `stt_settings.interim_results` (needed for `UtteranceEnd`).
    pub interim_results: bool,
    /// Silence (ms) that ends an utterance (`stt_settings.endpointing.silence_threshold`).
    /// `None` omits the parameter (Deepgram's default, 10 ms); `Some(0)` sends `endpointing=false`.
    pub endpointing_ms: Option<u32>,
    /// `stt_settings.utterance_end_ms`; only sent together with `interim_results`.
    pub utterance_end_ms: Option<u32>,
    /// `stt_settings.keywords`: sent as `keywords=Word:INTENSIFIER` for nova-2/nova/enhanced/base.
    pub keywords: Vec<SttKeyword>,
    /// `stt_settings.keyterms`: sent as repeated `keyterm` for nova-3 and Flux.
    pub keyterms: Vec<String>,
    /// `stt_settings.diarize`.
    pub diarize: bool,
    /// `stt_settings.detect_entities`.
    pub detect_entities: bool,
    /// Ask for `SpeechStarted` events (`vad_events`).
    pub vad_events: bool,
    /// `stt_settings.flux_config`, used when `model` is a `flux-*` model.
    pub flux_config: FluxConfig,
    /// `stt_settings.elevenlabs_config`, used by provider `elevenlabs` (Scribe realtime).
    pub elevenlabs: ElevenLabsSttConfig,
    /// `stt_settings.speechmatics_config`, used by provider `speechmatics`.
    pub speechmatics: SpeechmaticsSttConfig,
    /// `stt_settings.soniox_config`, used by provider `soniox`.
    pub soniox: SonioxSttConfig,
    /// `stt_settings.prefer_flux_for_english` with provider `elevenlabs`: the Flux session the
    /// call moves to once its first utterance is detected as English (see [`swap`]). `None`:
    /// no swap.
    pub english_flux: Option<swap::EnglishFlux>,
    /// `stt_settings.provider_config.transcription_engine`, used by provider `telnyx`
    /// (`Deepgram`, `Telnyx`, `Google`…); `None` is Telnyx's default, `Deepgram`.
    pub telnyx_engine: Option<String>,
    /// Deepgram `tag` (both endpoints; `flux_config.tag` in the record). Fakes use it to pick
    /// a script.
    pub tag: Option<String>,
    /// Encoding of the audio handed to `send_audio` (Twilio: µ-law).
    pub encoding: SttEncoding,
    /// Sample rate (Hz) of that audio (Twilio: 8000).
    pub sample_rate_hz: u32,
    /// `stt_settings.provider_config.base_url`: scheme + host + port (+ optional path prefix)
    /// replacing `wss://api.deepgram.com`; `http` maps to `ws`, `https` to `wss`.
    pub base_url: Option<String>,
    /// Where this session may connect: the server's outbound policy, so a tenant `base_url`
    /// cannot reach inside our network. The default refuses every non-public address.
    pub outbound: OutboundPolicy,
    /// API key. Never logged; redacted in `Debug`.
    pub api_key: String,
    /// Websocket connect + handshake timeout (ms).
    pub connect_timeout_ms: u64,
    /// Send a keep-alive when no audio went out for this long (ms). Deepgram closes after 10 s.
    pub keepalive_interval_ms: u64,
    /// How many times to try reconnecting after a dropped (or stalled) socket before `Failed`.
    /// A reconnect whose socket never answers with a transcription message does not reset the
    /// count, and one that stalls without answering ends the session at once.
    pub reconnect_attempts: u32,
    /// Backoff (ms) before the first reconnect attempt; doubles per attempt, capped at 5 s.
    pub reconnect_backoff_ms: u64,
    /// Audio kept (ms) while reconnecting and replayed on the new socket (oldest dropped first).
    pub reconnect_buffer_ms: u32,
    /// How long `close()` waits (ms) for the provider's final results and close.
    pub close_timeout_ms: u64,
    /// No transcription message (results, even empty ones; Flux turn events) for this long (ms)
    /// while audio is being sent: the socket counts as stalled and is reconnected (once: a
    /// reconnected socket that stalls before answering is `Failed`). At least 1 s.
    pub stall_timeout_ms: u64,
}

impl Default for SttConfig {
    fn default() -> Self {
        Self {
            provider: "deepgram".into(),
            model: "nova-3".into(),
            language: Some("en-US".into()),
            punctuate: true,
            smart_format: true,
            interim_results: true,
            endpointing_ms: Some(300),
            utterance_end_ms: Some(1000),
            keywords: Vec::new(),
            keyterms: Vec::new(),
            diarize: false,
            detect_entities: false,
            vad_events: true,
            flux_config: FluxConfig::default(),
            elevenlabs: ElevenLabsSttConfig::default(),
            speechmatics: SpeechmaticsSttConfig::default(),
            soniox: SonioxSttConfig::default(),
            english_flux: None,
            telnyx_engine: None,
            tag: None,
            encoding: SttEncoding::Mulaw,
            sample_rate_hz: 8000,
            base_url: None,
            outbound: OutboundPolicy::default(),
            api_key: String::new(),
            connect_timeout_ms: 5000,
            keepalive_interval_ms: 4000,
            reconnect_attempts: 5,
            reconnect_backoff_ms: 100,
            reconnect_buffer_ms: 2000,
            close_timeout_ms: 3000,
            stall_timeout_ms: 10_000,
        }
    }
}

impl fmt::Debug for SttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SttConfig")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("language", &self.language)
            .field("punctuate", &self.punctuate)
            .field("smart_format", &self.smart_format)
            .field("interim_results", &self.interim_results)
            .field("endpointing_ms", &self.endpointing_ms)
            .field("utterance_end_ms", &self.utterance_end_ms)
            .field("keywords", &self.keywords)
            .field("keyterms", &self.keyterms)
            .field("diarize", &self.diarize)
            .field("detect_entities", &self.detect_entities)
            .field("vad_events", &self.vad_events)
            .field("flux_config", &self.flux_config)
            .field("elevenlabs", &self.elevenlabs)
            .field("speechmatics", &self.speechmatics)
            .field("soniox", &self.soniox)
            .field("english_flux", &self.english_flux)
            .field("telnyx_engine", &self.telnyx_engine)
            .field("tag", &self.tag)
            .field("encoding", &self.encoding)
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("base_url", &self.base_url)
            .field("outbound", &self.outbound.allow_list().to_string())
            .field("api_key", &redacted(&self.api_key))
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("keepalive_interval_ms", &self.keepalive_interval_ms)
            .field("reconnect_attempts", &self.reconnect_attempts)
            .field("reconnect_backoff_ms", &self.reconnect_backoff_ms)
            .field("reconnect_buffer_ms", &self.reconnect_buffer_ms)
            .field("close_timeout_ms", &self.close_timeout_ms)
            .field("stall_timeout_ms", &self.stall_timeout_ms)
            .finish()
    }
}

/// What a `Debug` impl prints instead of a secret.
pub(crate) fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "<unset>"
    } else {
        "<redacted>"
    }
}

impl SttConfig {
    /// Whether `model` selects Deepgram Flux (`/v2/listen`).
    pub fn is_flux(&self) -> bool {
        self.model.starts_with("flux")
    }

    /// Audio bytes per second of the configured encoding and rate (8000 for Twilio µ-law).
    pub fn bytes_per_second(&self) -> u32 {
        self.sample_rate_hz.max(1) * self.encoding.bytes_per_sample()
    }
}

/// One recognised word. Times are seconds since the start of the call's audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as recognised (lower case, no punctuation).
    pub word: String,
    /// Start (s), call-relative. Flux words without timings get the turn's window start.
    pub start_s: f64,
    /// End (s), call-relative.
    pub end_s: f64,
    /// Confidence 0..1.
    pub confidence: f32,
    /// Punctuated/capitalised form when punctuation or smart formatting is on.
    pub punctuated_word: Option<String>,
    /// Speaker index when diarization is on.
    pub speaker: Option<u32>,
}

/// What an STT session reports, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A transcript of a stretch of audio. Empty interim/final transcripts of silence are not
    /// reported unless they carry `speech_final` or `from_finalize`.
    Transcript {
        /// Transcript text (punctuated if configured).
        text: String,
        /// `false`: interim, will be replaced; `true`: this stretch will not change.
        is_final: bool,
        /// The provider's endpointing saw the end of an utterance (only on finals).
        speech_final: bool,
        /// This final answers a `finalize()`.
        from_finalize: bool,
        /// Confidence 0..1.
        confidence: f32,
        /// Start (s) of the covered audio, call-relative.
        start_s: f64,
        /// Length (s) of the covered audio.
        duration_s: f64,
        /// Words with timings.
        words: Vec<Word>,
    },
    /// The provider's VAD heard speech begin (Deepgram `vad_events`).
    SpeechStarted {
        /// Call-relative time (s).
        at_s: f64,
    },
    /// A gap of `utterance_end_ms` after the last final word (Deepgram live).
    UtteranceEnd {
        /// End (s) of the last word, call-relative.
        last_word_end_s: f64,
    },
    /// Flux: the user started a turn (barge-in signal).
    StartOfTurn,
    /// Flux: the turn is probably over; a reply may be prepared speculatively.
    EagerEndOfTurn {
        /// Transcript so far.
        transcript: String,
        /// End-of-turn confidence 0..1.
        confidence: f32,
    },
    /// Flux: the eager end of turn was wrong; drop the speculative reply.
    TurnResumed,
    /// Flux: the turn is over; the transcript is final for the turn.
    EndOfTurn {
        /// Transcript of the whole turn.
        transcript: String,
        /// End-of-turn confidence 0..1.
        confidence: f32,
        /// Words of the turn.
        words: Vec<Word>,
    },
    /// The provider named the language of the utterance it just finalised (ElevenLabs
    /// `language_code` with `include_language_detection`). Comes right before that final
    /// `Transcript`.
    LanguageDetected {
        /// Language code as the provider reports it (ISO 639-1 or 639-3, e.g. `en`, `eng`).
        language: String,
    },
    /// The session moved the call to another provider mid-call (`prefer_flux_for_english`:
    /// ElevenLabs heard English, Deepgram Flux takes over). Later events come from `to`; the
    /// last `replayed_ms` of audio were sent again to `to`, so nothing said is lost.
    ProviderSwitched {
        /// Provider that transcribed until now, e.g. `elevenlabs`.
        from: String,
        /// Provider (and model) that transcribes from now on, e.g. `deepgram flux-general-en`.
        to: String,
        /// Why: the language detected, e.g. `en`.
        language: String,
        /// Audio (ms) replayed into the new provider.
        replayed_ms: u32,
    },
    /// The socket dropped; reconnect attempt `attempt` (1-based) is about to start.
    Reconnecting {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// A reconnect succeeded; buffered audio has been replayed.
    Reconnected,
    /// The session is dead for good (reconnects exhausted, every new socket stalled or dropped
    /// before answering, or a non-retryable error). Last event.
    Failed(ProviderError),
}

/// Commands from the handle to the session task.
#[derive(Debug)]
pub(crate) enum SttControl {
    KeepAlive,
    Finalize,
    Close(oneshot::Sender<()>),
}

/// Frames of audio the handle can queue for the socket task (20 ms frames: 2 s).
pub(crate) const AUDIO_QUEUE_FRAMES: usize = 100;
/// Events the session task can queue before it waits for the call task.
pub(crate) const EVENT_QUEUE: usize = 1024;
/// Reused audio buffer capacity (bytes); refilled in place once the socket task is done with
/// it. 1 KiB holds three 40 ms batches of 8 kHz µ-law; a 200 ms quiet piece (1600 B), or a
/// provider fed 16 kHz PCM, grows it once.
/// Every live call holds it (and the batch in flight), so it is kept small: 4 KiB cost ~5 KiB
/// per call (docs/PERFORMANCE.md).
const AUDIO_BUF_BYTES: usize = 1024;

/// Handle to a live STT session. Cheap to use from the call task: nothing here awaits the
/// network except `close()`.
pub struct SttSession {
    audio: mpsc::Sender<Bytes>,
    control: mpsc::UnboundedSender<SttControl>,
    /// Events in arrival order. Ends (`None`) after `close()` or after `Failed`.
    pub events: mpsc::Receiver<SttEvent>,
    buf: BytesMut,
    dropped_frames: u64,
    close_timeout: std::time::Duration,
    /// Frames sent to the socket task together (see [`SttSession::set_audio_batch`]).
    batch_frames: u32,
    /// Frames sent together while the caller is quiet (see [`SttSession::set_quiet`]).
    quiet_batch_frames: u32,
    /// The caller is quiet: audio is held up to `quiet_batch_frames`, across rounds.
    quiet: bool,
    /// Frames in `buf` not yet handed to the socket task.
    held_frames: u32,
}

impl fmt::Debug for SttSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SttSession")
            .field("dropped_frames", &self.dropped_frames)
            .finish_non_exhaustive()
    }
}

impl SttSession {
    pub(crate) fn new(
        audio: mpsc::Sender<Bytes>,
        control: mpsc::UnboundedSender<SttControl>,
        events: mpsc::Receiver<SttEvent>,
        close_timeout: std::time::Duration,
    ) -> Self {
        Self {
            audio,
            control,
            events,
            buf: BytesMut::with_capacity(AUDIO_BUF_BYTES),
            dropped_frames: 0,
            close_timeout,
            batch_frames: 1,
            quiet_batch_frames: 1,
            quiet: false,
            held_frames: 0,
        }
    }

    /// Hand caller audio to the socket task `frames` frames at a time (1, the default, sends
    /// every frame as it comes): fewer wake-ups of the socket task and fewer websocket writes
    /// per call-second, for up to `frames - 1` frames of added STT latency. Audio still held
    /// is sent before `close()`.
    pub fn set_audio_batch(&mut self, frames: u32) {
        self.batch_frames = frames.max(1);
    }

    /// Hand caller audio over `frames` frames at a time while the caller is quiet (1, the
    /// default, is no different from speech). Nothing the caller says waits for it: the call
    /// leaves quiet with [`SttSession::set_quiet`] as soon as it hears speech, which sends what
    /// is held at once.
    pub fn set_quiet_batch(&mut self, frames: u32) {
        self.quiet_batch_frames = frames.max(1);
    }

    /// Whether the caller is quiet now (no speech heard for a while): while quiet, audio is
    /// held up to the quiet batch, across reading rounds. Leaving quiet sends what is held at
    /// once, so the speech that ended it (and the lead before it) reaches the provider without
    /// waiting for a batch to fill. Returns false when that send found the queue full.
    pub fn set_quiet(&mut self, quiet: bool) -> bool {
        let was = std::mem::replace(&mut self.quiet, quiet);
        if was && !quiet {
            return self.send_held_audio();
        }
        true
    }

    /// Queue caller audio for the provider. Never blocks and never sends an empty frame. When
    /// the queue is full (about 2 s of audio behind) the frame (with the batch it completes)
    /// is dropped and counted in [`SttSession::dropped_frames`]. Returns whether the frame was
    /// queued or held for its batch.
    pub fn send_audio(&mut self, audio: &[u8]) -> bool {
        if audio.is_empty() {
            return true;
        }
        if self.buf.capacity() - self.buf.len() < audio.len() {
            // Reclaims the old allocation once the socket task dropped its earlier frames.
            self.buf.reserve(AUDIO_BUF_BYTES.max(audio.len()));
        }
        self.buf.extend_from_slice(audio);
        self.held_frames += 1;
        let batch = if self.quiet {
            self.quiet_batch_frames
        } else {
            self.batch_frames
        };
        if self.held_frames < batch {
            return true;
        }
        self.send_held_audio()
    }

    /// The end of a reading round (a caller that reads its audio in rounds sends each round as
    /// one piece): sends what is held, unless the caller is quiet, when audio is held until
    /// its quiet batch fills. False when the queue was full.
    pub fn end_of_round(&mut self) -> bool {
        if self.quiet {
            return true;
        }
        self.send_held_audio()
    }

    /// Hands the audio held for its batch to the socket task now; false when its queue was
    /// full.
    pub fn send_held_audio(&mut self) -> bool {
        if self.held_frames == 0 {
            return true;
        }
        let frames = u64::from(self.held_frames);
        self.held_frames = 0;
        let batch = self.buf.split().freeze();
        match self.audio.try_send(batch) {
            Ok(()) => true,
            Err(_) => {
                self.dropped_frames += frames;
                false
            }
        }
    }

    /// Frames dropped by `send_audio` because the socket task was behind.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    /// Send a keep-alive now (the session also sends them by itself when no audio flows).
    pub fn keepalive(&self) {
        let _ = self.control.send(SttControl::KeepAlive);
    }

    /// Ask the provider to finalise buffered audio now (Deepgram `Finalize`; Flux
    /// `ForceEndTurn`), after the audio held for a batch. The answer is a final `Transcript`
    /// with `from_finalize` (or `EndOfTurn`).
    pub fn finalize(&mut self) {
        self.send_held_audio();
        let _ = self.control.send(SttControl::Finalize);
    }

    /// Close the stream gracefully: the provider sends its last results (still delivered on
    /// `events`), then the socket closes. Waits at most `close_timeout_ms`. Keep draining
    /// `events` afterwards to read the last results; the channel then ends.
    pub async fn close(&mut self) {
        self.send_held_audio();
        let (tx, rx) = oneshot::channel();
        if self.control.send(SttControl::Close(tx)).is_err() {
            return;
        }
        let _ = tokio::time::timeout(self.close_timeout, rx).await;
    }
}

/// The protocol of the provider `cfg` names, built by the factory the registry lists for it
/// (Deepgram: Flux for `flux-*` models, otherwise live `/v1/listen`). Refuses a provider the
/// engine does not run (and whatever the protocol's factory refuses) before any connection is
/// made.
pub fn protocol_for(cfg: &SttConfig) -> Result<Box<dyn protocol::SttProtocol>, ProviderError> {
    crate::registry::stt_protocol(&cfg.provider)?(cfg)
}

/// Open a streaming STT session for `cfg` on the generic driver ([`driver::open`]). Returns once
/// the websocket handshake succeeded (and, for providers that confirm the start of a stream,
/// once they accepted its configuration).
pub async fn connect_stt(cfg: &SttConfig) -> Result<SttSession, ProviderError> {
    let session = driver::open(cfg, protocol_for(cfg)?).await?;
    Ok(swap::with_english_swap(session, cfg))
}

/// Open a Deepgram Flux session on the generic driver, with no swap of its own: the target of
/// [`swap::with_english_swap`].
pub(crate) async fn connect_flux(cfg: &SttConfig) -> Result<SttSession, ProviderError> {
    driver::open(cfg, deepgram_flux::protocol(cfg)?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A session whose socket task is the test: its audio queue holds `queue` pieces.
    fn session(
        queue: usize,
    ) -> (
        SttSession,
        mpsc::Receiver<Bytes>,
        mpsc::UnboundedReceiver<SttControl>,
    ) {
        let (audio_tx, audio_rx) = mpsc::channel(queue);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (_events_tx, events_rx) = mpsc::channel(1);
        let s = SttSession::new(
            audio_tx,
            control_tx,
            events_rx,
            std::time::Duration::from_millis(1),
        );
        (s, audio_rx, control_rx)
    }

    #[test]
    fn send_audio_never_blocks_and_skips_empty_frames() {
        let (mut s, mut audio_rx, _control_rx) = session(1);
        assert!(s.send_audio(&[]));
        assert!(s.send_audio(&[1, 2, 3]));
        assert!(
            !s.send_audio(&[4, 5]),
            "full queue drops instead of blocking"
        );
        assert_eq!(s.dropped_frames(), 1);
        assert_eq!(audio_rx.try_recv().ok().as_deref(), Some(&[1u8, 2, 3][..]));
        assert!(
            audio_rx.try_recv().is_err(),
            "the empty frame was never queued"
        );
    }

    #[test]
    fn audio_is_handed_over_in_batches_and_the_rest_before_close() {
        let (mut s, mut audio_rx, mut control_rx) = session(8);
        s.set_audio_batch(3);
        for b in 1..=7u8 {
            assert!(s.send_audio(&[b, b]));
        }
        assert_eq!(
            audio_rx.try_recv().ok().as_deref(),
            Some(&[1u8, 1, 2, 2, 3, 3][..])
        );
        assert_eq!(
            audio_rx.try_recv().ok().as_deref(),
            Some(&[4u8, 4, 5, 5, 6, 6][..])
        );
        assert!(audio_rx.try_recv().is_err(), "frame 7 is held");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(s.close());
        assert_eq!(audio_rx.try_recv().ok().as_deref(), Some(&[7u8, 7][..]));
        assert!(matches!(control_rx.try_recv(), Ok(SttControl::Close(_))));
    }

    #[test]
    fn a_quiet_caller_is_sent_in_larger_batches_and_speech_ends_the_wait() {
        let (mut s, mut audio_rx, mut control_rx) = session(8);
        s.set_audio_batch(2);
        s.set_quiet_batch(4);
        assert!(s.set_quiet(true));
        for b in 1..=3u8 {
            assert!(s.send_audio(&[b]));
            assert!(s.end_of_round(), "a quiet round holds its audio");
        }
        assert!(audio_rx.try_recv().is_err(), "three quiet frames are held");
        assert!(s.send_audio(&[4]));
        assert_eq!(
            audio_rx.try_recv().ok().as_deref(),
            Some(&[1u8, 2, 3, 4][..])
        );
        assert!(s.send_audio(&[5]));
        assert!(audio_rx.try_recv().is_err());
        assert!(s.set_quiet(false), "speech sends what is held at once");
        assert_eq!(audio_rx.try_recv().ok().as_deref(), Some(&[5u8][..]));
        assert!(s.send_audio(&[6]));
        assert!(s.end_of_round());
        assert_eq!(
            audio_rx.try_recv().ok().as_deref(),
            Some(&[6u8][..]),
            "out of quiet, each round goes as it ends"
        );
        assert!(s.set_quiet(true));
        assert!(s.send_audio(&[7]));
        s.finalize();
        assert_eq!(
            audio_rx.try_recv().ok().as_deref(),
            Some(&[7u8][..]),
            "a finalize follows the audio held before it"
        );
        assert!(matches!(control_rx.try_recv(), Ok(SttControl::Finalize)));
    }

    #[test]
    fn debug_redacts_key_and_flux_is_detected() {
        let cfg = SttConfig {
            api_key: "dg-secret".into(),
            model: "flux-general-en".into(),
            ..SttConfig::default()
        };
        let s = format!("{cfg:?}");
        assert!(!s.contains("dg-secret") && s.contains("<redacted>"));
        assert!(cfg.is_flux());
        assert_eq!(cfg.bytes_per_second(), 8000);
    }
}
