//! `prefer_flux_for_english` (Burki's meaning): a call transcribed by ElevenLabs Scribe moves to
//! Deepgram Flux as soon as its first utterance is detected as English, mid-call, without losing
//! audio. One [`SttSession`] wraps both, so the runtime never knows; the decision is an event
//! ([`SttEvent::ProviderSwitched`]) it logs.
//!
//! How:
//! 1. Audio goes to the primary session; the last `keep` of it is kept, stamped with call time.
//! 2. The primary's first non-empty final transcript, with the language it reported just
//!    before (`LanguageDetected`), decides. Not English (or no language at all): nothing
//!    changes for the rest of the call. English: that transcript still goes to the core (it is
//!    the caller's first turn), and Flux is connected in the background.
//! 3. While Flux connects, audio still goes to the primary and is kept; the primary's events are
//!    held back. Once Flux is up, the audio from the end of the first utterance on is replayed
//!    into it, `ProviderSwitched` is reported, the held events are dropped (Flux transcribes
//!    the same audio) and the primary is closed. Flux's times are shifted by the replay's start,
//!    so they stay call-relative. If Flux cannot connect, the held events are released and the
//!    call stays on the primary.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;

use crate::error::ProviderError;
use crate::stt::language::is_english;
use crate::stt::{
    AUDIO_QUEUE_FRAMES, EVENT_QUEUE, FluxConfig, SttConfig, SttControl, SttEvent, SttSession,
};

/// Deepgram Flux model the swap connects to (English).
pub const ENGLISH_FLUX_MODEL: &str = "flux-general-en";
/// Audio kept for the replay (ms) at least: more than the longest commit delay (3 s VAD
/// silence) so the end of the first utterance is still there when its commit arrives.
const KEEP_MS: u32 = 4000;
/// Replayed audio is sent to Flux in pieces of this many milliseconds (few queue slots).
const REPLAY_PIECE_MS: u32 = 200;

/// The Flux side of `prefer_flux_for_english`: `stt_settings.english_flux_config` and where the
/// Deepgram key may go. Everything else (encoding, outbound policy, timeouts) is the call's.
#[derive(Clone, PartialEq, Default)]
pub struct EnglishFlux {
    /// `english_flux_config` (thresholds, timeout, hints, MIP opt-out).
    pub flux_config: FluxConfig,
    /// `english_flux_config.tag`.
    pub tag: Option<String>,
    /// Deepgram key. Never logged; redacted in `Debug`.
    pub api_key: String,
    /// Deepgram endpoint base (`None`: the public one).
    pub base_url: Option<String>,
}

impl fmt::Debug for EnglishFlux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnglishFlux")
            .field("flux_config", &self.flux_config)
            .field("tag", &self.tag)
            .field("api_key", &crate::stt::redacted(&self.api_key))
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl EnglishFlux {
    /// The Flux session's configuration: the call's `cfg` (audio, policy, timeouts) with
    /// provider, model, turn settings, key and endpoint of the swap.
    pub fn session_config(&self, cfg: &SttConfig) -> SttConfig {
        SttConfig {
            provider: "deepgram".into(),
            model: ENGLISH_FLUX_MODEL.into(),
            flux_config: self.flux_config.clone(),
            tag: self.tag.clone(),
            api_key: self.api_key.clone(),
            base_url: self.base_url.clone(),
            english_flux: None,
            ..cfg.clone()
        }
    }
}

/// How long after its last word the primary commits an utterance (s): with no word times, the
/// replay starts this long before the commit arrived. ElevenLabs: the VAD silence, or the manual
/// commit silence.
pub fn commit_silence_s(cfg: &SttConfig) -> f64 {
    let e = &cfg.elevenlabs;
    if e.commit_strategy.as_deref() == Some("manual") {
        e.manual_commit_short_silence_secs.unwrap_or(0.8)
    } else {
        e.vad_silence_threshold_secs.unwrap_or(1.5)
    }
}

/// A pending connection of the Flux session.
pub type ConnectFuture = Pin<Box<dyn Future<Output = Result<SttSession, ProviderError>> + Send>>;

/// What the swap needs besides the primary session.
pub struct SwapPlan {
    /// Provider name of the primary (`elevenlabs`).
    pub from: String,
    /// Label of the target, e.g. `deepgram flux-general-en`.
    pub to: String,
    /// Audio bytes per second (8000 for µ-law 8 kHz): turns byte counts into call time.
    pub bytes_per_second: u32,
    /// Audio kept for the replay (ms): at least the primary's commit delay.
    pub keep_ms: u32,
    /// See [`commit_silence_s`].
    pub commit_silence_s: f64,
    /// Opens the Flux session (called once, when English is detected).
    pub connect: Box<dyn FnOnce() -> ConnectFuture + Send>,
}

/// The call's session: `primary` itself, or, when `cfg.english_flux` is set, `primary`
/// wrapped into the swap to Deepgram Flux (connected only once English is heard).
pub fn with_english_swap(primary: SttSession, cfg: &SttConfig) -> SttSession {
    let Some(flux) = &cfg.english_flux else {
        return primary;
    };
    let flux_cfg = flux.session_config(cfg);
    let plan = SwapPlan {
        from: cfg.provider.clone(),
        to: format!("deepgram {ENGLISH_FLUX_MODEL}"),
        bytes_per_second: cfg.bytes_per_second(),
        keep_ms: cfg.reconnect_buffer_ms.max(KEEP_MS),
        commit_silence_s: commit_silence_s(cfg),
        connect: Box::new(move || {
            Box::pin(async move { crate::stt::connect_flux(&flux_cfg).await })
        }),
    };
    english_swap(primary, plan)
}

/// Wrap `primary` into a session that swaps to Flux per `plan`.
pub fn english_swap(primary: SttSession, plan: SwapPlan) -> SttSession {
    let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE_FRAMES);
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let close_timeout = primary.close_timeout;
    let task = Swap {
        current: primary,
        close_timeout,
        events: events_tx,
        from: plan.from,
        to: plan.to,
        bytes_per_second: f64::from(plan.bytes_per_second.max(1)),
        keep_s: f64::from(plan.keep_ms) / 1000.0,
        commit_silence_s: plan.commit_silence_s,
        connect: Some(plan.connect),
        sent_bytes: 0,
        recent: VecDeque::new(),
        phase: Phase::Deciding { language: None },
    };
    tokio::spawn(task.run(audio_rx, control_rx).in_current_span());
    SttSession::new(audio_tx, control_tx, events_rx, close_timeout)
}

enum Phase {
    /// Waiting for the first utterance; `language` is the last one the primary reported.
    Deciding { language: Option<String> },
    /// English heard; Flux connecting. Replay starts at call position `from_byte` (bytes);
    /// the primary's events wait.
    Connecting {
        from_byte: u64,
        language: String,
        held: Vec<SttEvent>,
    },
    /// Flux transcribes; its stream time 0 is call time `offset_s`.
    Flux { offset_s: f64 },
    /// Decided against the swap (or Flux failed): the primary stays.
    Stay,
}

struct Swap {
    current: SttSession,
    close_timeout: Duration,
    events: mpsc::Sender<SttEvent>,
    from: String,
    to: String,
    bytes_per_second: f64,
    keep_s: f64,
    commit_silence_s: f64,
    connect: Option<Box<dyn FnOnce() -> ConnectFuture + Send>>,
    /// Audio received so far (bytes): the call time, counted exactly.
    sent_bytes: u64,
    /// Recent audio frames with the call position (bytes) of their first byte.
    recent: VecDeque<(u64, Bytes)>,
    phase: Phase,
}

impl Swap {
    async fn run(
        mut self,
        mut audio: mpsc::Receiver<Bytes>,
        mut control: mpsc::UnboundedReceiver<SttControl>,
    ) {
        let mut connecting: Option<ConnectFuture> = None;
        let mut inner_open = true;
        loop {
            tokio::select! {
                frame = audio.recv() => match frame {
                    Some(frame) => self.on_audio(frame),
                    None => break,
                },
                command = control.recv() => match command {
                    Some(SttControl::KeepAlive) => self.current.keepalive(),
                    Some(SttControl::Finalize) => self.current.finalize(),
                    Some(SttControl::Close(done)) => return self.close(done).await,
                    None => break,
                },
                event = self.current.events.recv(), if inner_open => match event {
                    Some(event) => {
                        if !self.on_event(event, &mut connecting).await {
                            return;
                        }
                    }
                    None => {
                        inner_open = false;
                        if connecting.is_none() {
                            return;
                        }
                    }
                },
                flux = async {
                    match connecting.as_mut() {
                        Some(pending) => pending.await,
                        None => std::future::pending().await,
                    }
                }, if connecting.is_some() => {
                    connecting = None;
                    match flux {
                        Ok(flux) => {
                            inner_open = true;
                            if !self.switch(flux).await {
                                return;
                            }
                        }
                        Err(error) => {
                            if !self.stay(error).await || !inner_open {
                                return;
                            }
                        }
                    }
                }
            }
        }
        let mut current = self.current;
        current.close().await;
    }

    fn on_audio(&mut self, frame: Bytes) {
        self.current.send_audio(&frame);
        let start = self.sent_bytes;
        self.sent_bytes += frame.len() as u64;
        match &self.phase {
            Phase::Deciding { .. } => {
                self.recent.push_back((start, frame));
                let oldest = self.sent_bytes.saturating_sub(self.bytes_of(self.keep_s));
                while self
                    .recent
                    .front()
                    .is_some_and(|(s, f)| s + f.len() as u64 <= oldest)
                {
                    self.recent.pop_front();
                }
            }
            Phase::Connecting { .. } => self.recent.push_back((start, frame)),
            Phase::Flux { .. } | Phase::Stay => {}
        }
    }

    /// One event of the current session; `false` when the handle is gone.
    async fn on_event(&mut self, event: SttEvent, connecting: &mut Option<ConnectFuture>) -> bool {
        match &mut self.phase {
            Phase::Deciding { language } => {
                if let SttEvent::LanguageDetected { language: l } = &event {
                    *language = Some(l.clone());
                }
                let decides = matches!(&event, SttEvent::Transcript { is_final: true, text, .. }
                    if !text.trim().is_empty());
                if decides {
                    let english = language.take().filter(|l| is_english(l));
                    match (english, self.connect.take()) {
                        (Some(language), Some(connect)) => {
                            let from_byte = self.replay_start(&event);
                            *connecting = Some(connect());
                            self.phase = Phase::Connecting {
                                from_byte,
                                language,
                                held: Vec::new(),
                            };
                        }
                        _ => {
                            self.phase = Phase::Stay;
                            self.recent.clear();
                        }
                    }
                }
                self.events.send(event).await.is_ok()
            }
            Phase::Connecting { held, .. } => {
                held.push(event);
                true
            }
            Phase::Flux { offset_s } => self.events.send(shift(event, *offset_s)).await.is_ok(),
            Phase::Stay => self.events.send(event).await.is_ok(),
        }
    }

    /// Whole bytes of audio in `s` seconds (0 for a negative time).
    fn bytes_of(&self, s: f64) -> u64 {
        (s * self.bytes_per_second).round().max(0.0) as u64
    }

    /// Call position (bytes) from which audio is replayed into Flux: the end of the deciding
    /// utterance (its last word, or the commit delay before now), never before what is kept.
    fn replay_start(&self, decided_on: &SttEvent) -> u64 {
        let end = match decided_on {
            SttEvent::Transcript {
                start_s,
                duration_s,
                words,
                ..
            } if !words.is_empty() => self.bytes_of(start_s + duration_s),
            _ => self
                .sent_bytes
                .saturating_sub(self.bytes_of(self.commit_silence_s)),
        };
        let oldest = self.recent.front().map_or(self.sent_bytes, |(s, _)| *s);
        end.clamp(oldest, self.sent_bytes)
    }

    /// Flux is up: replay, report, drop the primary. `false` when the handle is gone.
    async fn switch(&mut self, mut flux: SttSession) -> bool {
        let Phase::Connecting {
            from_byte,
            language,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Stay)
        else {
            return true;
        };
        let piece_bytes = (self.bytes_per_second * f64::from(REPLAY_PIECE_MS) / 1000.0) as usize;
        let mut piece = BytesMut::new();
        let mut offset = None;
        let mut replayed_bytes = 0usize;
        for (start, frame) in self.recent.drain(..) {
            if start + frame.len() as u64 <= from_byte {
                continue;
            }
            offset.get_or_insert(start);
            replayed_bytes += frame.len();
            piece.extend_from_slice(&frame);
            if piece.len() >= piece_bytes {
                flux.send_audio(&piece.split());
            }
        }
        flux.send_audio(&piece);
        let old = std::mem::replace(&mut self.current, flux);
        let work = async move {
            let mut old = old;
            old.close().await;
        };
        tokio::spawn(work.in_current_span());
        self.phase = Phase::Flux {
            offset_s: offset.unwrap_or(self.sent_bytes) as f64 / self.bytes_per_second,
        };
        let switched = SttEvent::ProviderSwitched {
            from: self.from.clone(),
            to: self.to.clone(),
            language,
            replayed_ms: (replayed_bytes as f64 / self.bytes_per_second * 1000.0).round() as u32,
        };
        self.events.send(switched).await.is_ok()
    }

    /// Flux could not connect: release what the primary said meanwhile and keep it.
    async fn stay(&mut self, error: ProviderError) -> bool {
        tracing::warn!(from = %self.from, to = %self.to, %error, "stt swap failed; staying");
        self.recent.clear();
        if let Phase::Connecting { held, .. } = std::mem::replace(&mut self.phase, Phase::Stay) {
            for event in held {
                if self.events.send(event).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    /// Close the current session and pass its last results on.
    async fn close(mut self, done: oneshot::Sender<()>) {
        self.current.close().await;
        let offset_s = match self.phase {
            Phase::Flux { offset_s } => offset_s,
            _ => 0.0,
        };
        let drain = async {
            while let Some(event) = self.current.events.recv().await {
                if self.events.send(shift(event, offset_s)).await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.close_timeout, drain).await;
        let _ = done.send(());
    }
}

/// Move every time of a Flux event from its stream time to call time.
fn shift(mut event: SttEvent, by_s: f64) -> SttEvent {
    if by_s == 0.0 {
        return event;
    }
    let words = match &mut event {
        SttEvent::Transcript { start_s, words, .. } => {
            *start_s += by_s;
            Some(words)
        }
        SttEvent::EndOfTurn { words, .. } => Some(words),
        SttEvent::SpeechStarted { at_s } => {
            *at_s += by_s;
            None
        }
        SttEvent::UtteranceEnd { last_word_end_s } => {
            *last_word_end_s += by_s;
            None
        }
        _ => None,
    };
    for w in words.into_iter().flatten() {
        w.start_s += by_s;
        w.end_s += by_s;
    }
    event
}

#[cfg(test)]
#[path = "swap_tests.rs"]
mod tests;
