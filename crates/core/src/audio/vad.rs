//! Local voice activity detection on the caller's audio, every frame.
//!
//! Barge-in must not wait for the cloud STT, so the engine runs a VAD on each inbound 20 ms
//! frame. Three layers:
//!
//! - a [`VoiceDetector`] gives a speech / non-speech decision for one 10, 20 or 30 ms frame of
//!   8 kHz PCM: [`WebRtcVad`] (libfvad through `webrtc-vad`) or [`EnergyVad`] (pure Rust);
//! - a [`SpeechSegmenter`] adds hysteresis to those per-frame decisions and reports
//!   [`VadTransition`]s (speech start after `onset_ms`, speech end after `hangover_ms`);
//! - [`FrameVad`] glues µ-law decoding, a detector and a segmenter together for the call
//!   runtime, re-blocking any input length to 20 ms frames with no allocation.
//!
//! # Which detector (measured on `fixtures/calls`, `cargo run -p switchboard-core --example
//! vad_eval --release`)
//!
//! Over 10 calls / 31 utterances with the default hysteresis (onset 100 ms, hangover 400 ms):
//!
//! | detector | onset latency mean / p95 | false onsets (not noise bursts) | split utterances |
//! |----------|--------------------------|-----------------------------|------------------|
//! | WebRTC mode 0, 1 | 91 / 111 ms | 1 (line noise at call start) | 0 |
//! | **WebRTC mode 2** | **102 / 120 ms** | **0** | **0** |
//! | WebRTC mode 3 | 114 / 167 ms | 0 | 2 |
//! | [`EnergyVad`] | 118 / 171 ms | 0 | 5 |
//!
//! So the default is WebRTC mode 2 ([`DEFAULT_VAD_MODE`]) with [`SegmenterConfig::default`].
//! Every detector takes a cough burst for speech: barge-in confirmation needs STT words. The
//! full tables are in `fixtures/README.md`.

use super::{FRAME_BYTES, FRAME_MS, mulaw};
use std::collections::VecDeque;
use std::fmt;

/// A per-frame speech / non-speech classifier for 8 kHz linear PCM.
///
/// One call classifies one frame of 10, 20 or 30 ms (80, 160 or 240 samples). Implementations
/// return `false` for any other length (including empty) rather than panicking, because frames
/// come from the network.
pub trait VoiceDetector: Send {
    /// Whether `pcm_8khz` (one 10/20/30 ms frame) contains speech.
    fn is_speech(&mut self, pcm_8khz: &[i16]) -> bool;

    /// Forgets any adaptive state (noise estimates), e.g. between calls when a detector is reused.
    fn reset(&mut self) {}

    /// Short name for logs and the evaluation report.
    fn name(&self) -> &'static str {
        "vad"
    }
}

/// Valid frame lengths in samples at 8 kHz: 10, 20 and 30 ms.
const VALID_FRAME_SAMPLES: [usize; 3] = [80, 160, 240];

fn is_valid_frame(pcm: &[i16]) -> bool {
    VALID_FRAME_SAMPLES.contains(&pcm.len())
}

/// WebRTC VAD aggressiveness. A higher mode reports speech less often: fewer false onsets on
/// noise, more missed soft speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VadMode {
    /// Aggressiveness 0: reports speech most readily.
    Quality,
    /// Aggressiveness 1.
    LowBitrate,
    /// Aggressiveness 2.
    Aggressive,
    /// Aggressiveness 3: reports speech least readily.
    VeryAggressive,
}

/// The mode the engine uses when the assistant does not choose one: on the fixtures, mode 2
/// has no false onsets, while modes 0/1 report speech on the first frames of a call with line
/// noise, before their noise model adapts (with low-level noise in every call, in all of
/// them); it is ~10 ms slower than mode 0 on average, mode 3 is ~12 ms slower still (47 ms at
/// p95) and splits utterances. See `fixtures/README.md`.
pub const DEFAULT_VAD_MODE: VadMode = VadMode::Aggressive;

impl VadMode {
    /// Maps an aggressiveness 0..=3 (the assistant setting) to a mode; values above 3 mean 3.
    pub fn from_aggressiveness(level: u8) -> Self {
        match level {
            0 => Self::Quality,
            1 => Self::LowBitrate,
            2 => Self::Aggressive,
            _ => Self::VeryAggressive,
        }
    }

    /// The aggressiveness 0..=3 of this mode.
    pub fn aggressiveness(self) -> u8 {
        match self {
            Self::Quality => 0,
            Self::LowBitrate => 1,
            Self::Aggressive => 2,
            Self::VeryAggressive => 3,
        }
    }

    fn to_webrtc(self) -> webrtc_vad::VadMode {
        match self {
            Self::Quality => webrtc_vad::VadMode::Quality,
            Self::LowBitrate => webrtc_vad::VadMode::LowBitrate,
            Self::Aggressive => webrtc_vad::VadMode::Aggressive,
            Self::VeryAggressive => webrtc_vad::VadMode::VeryAggressive,
        }
    }
}

impl Default for VadMode {
    fn default() -> Self {
        DEFAULT_VAD_MODE
    }
}

/// The WebRTC VAD (libfvad, a GMM over six sub-bands) at 8 kHz.
///
/// Owns the C state. Never hands the library an empty or wrong-length frame (the crate panics on
/// an empty one and errors on others); such frames are "not speech".
pub struct WebRtcVad {
    inner: webrtc_vad::Vad,
    mode: VadMode,
}

// SAFETY: `webrtc_vad::Vad` is `!Send` only because it holds a raw pointer to its `Fvad` state.
// That state is a plain heap allocation made by `fvad_new` and used only through `&mut self`
// (`fvad_process`, `fvad_reset`, `fvad_free`); libfvad keeps no thread-local or global state and
// has no thread affinity, so moving the owner to another thread is sound. `WebRtcVad` is not
// `Sync` and exposes no shared access, so the state is never touched from two threads at once.
unsafe impl Send for WebRtcVad {}

impl WebRtcVad {
    /// A detector at 8 kHz with the given aggressiveness.
    pub fn new(mode: VadMode) -> Self {
        Self {
            inner: webrtc_vad::Vad::new_with_rate_and_mode(
                webrtc_vad::SampleRate::Rate8kHz,
                mode.to_webrtc(),
            ),
            mode,
        }
    }

    /// The aggressiveness this detector runs at.
    pub fn mode(&self) -> VadMode {
        self.mode
    }
}

impl Default for WebRtcVad {
    fn default() -> Self {
        Self::new(DEFAULT_VAD_MODE)
    }
}

impl fmt::Debug for WebRtcVad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRtcVad")
            .field("mode", &self.mode)
            .finish()
    }
}

impl VoiceDetector for WebRtcVad {
    fn is_speech(&mut self, pcm_8khz: &[i16]) -> bool {
        if !is_valid_frame(pcm_8khz) {
            return false;
        }
        self.inner.is_voice_segment(pcm_8khz).unwrap_or(false)
    }

    fn reset(&mut self) {
        // `fvad_reset` also resets mode and rate to their defaults; build a fresh state instead.
        *self = Self::new(self.mode);
    }

    fn name(&self) -> &'static str {
        match self.mode {
            VadMode::Quality => "webrtc-0",
            VadMode::LowBitrate => "webrtc-1",
            VadMode::Aggressive => "webrtc-2",
            VadMode::VeryAggressive => "webrtc-3",
        }
    }
}

/// Tuning of [`EnergyVad`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyVadConfig {
    /// A frame is speech when its level is at least this many dB above the noise floor.
    pub margin_db: f32,
    /// Frames quieter than this absolute level (dBFS) are never speech.
    pub min_dbfs: f32,
    /// Noise floor the detector starts from, in dBFS.
    pub initial_floor_dbfs: f32,
    /// How fast the floor follows a quieter frame (0..=1 of the gap per frame).
    pub floor_fall_rate: f32,
    /// How fast the floor follows a louder non-speech frame (0..=1 of the gap per frame).
    pub floor_rise_rate: f32,
    /// How fast the floor follows a louder speech frame (0..=1 of the gap per frame). Small
    /// but not zero, so that a noise step that looks like speech is learned within seconds
    /// instead of counting as speech for ever.
    pub floor_rise_rate_in_speech: f32,
}

impl Default for EnergyVadConfig {
    fn default() -> Self {
        Self {
            margin_db: 12.0,
            min_dbfs: -48.0,
            initial_floor_dbfs: -60.0,
            floor_fall_rate: 0.3,
            floor_rise_rate: 0.02,
            floor_rise_rate_in_speech: 0.005,
        }
    }
}

/// A pure-Rust detector: frame level (RMS, dBFS) against an adaptive noise floor.
///
/// The floor drops quickly to quieter frames and rises slowly on louder non-speech frames, so a
/// steady hiss raises it and is ignored after a few hundred ms, while speech (much louder than
/// the floor) is detected. It has no spectral model, so it cannot tell a cough from a syllable;
/// see `fixtures/README.md` for how it compares with [`WebRtcVad`].
#[derive(Debug, Clone)]
pub struct EnergyVad {
    cfg: EnergyVadConfig,
    floor_dbfs: f32,
}

impl EnergyVad {
    /// A detector with the default tuning.
    pub fn new() -> Self {
        Self::with_config(EnergyVadConfig::default())
    }

    /// A detector with explicit tuning.
    pub fn with_config(cfg: EnergyVadConfig) -> Self {
        Self {
            floor_dbfs: cfg.initial_floor_dbfs,
            cfg,
        }
    }

    /// The current noise floor estimate in dBFS.
    pub fn noise_floor_dbfs(&self) -> f32 {
        self.floor_dbfs
    }

    /// Level of a frame in dBFS (0 dBFS = a full-scale square wave); -100 for digital silence.
    pub fn level_dbfs(pcm: &[i16]) -> f32 {
        if pcm.is_empty() {
            return -100.0;
        }
        let sum: i64 = pcm.iter().map(|&s| (s as i64) * (s as i64)).sum();
        let mean = sum as f64 / pcm.len() as f64;
        if mean < 1.0 {
            return -100.0;
        }
        (10.0 * (mean / (32768.0 * 32768.0)).log10()) as f32
    }
}

impl Default for EnergyVad {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceDetector for EnergyVad {
    fn is_speech(&mut self, pcm_8khz: &[i16]) -> bool {
        if !is_valid_frame(pcm_8khz) {
            return false;
        }
        let level = Self::level_dbfs(pcm_8khz);
        let speech = level >= self.cfg.min_dbfs && level >= self.floor_dbfs + self.cfg.margin_db;
        if level < self.floor_dbfs {
            self.floor_dbfs += (level - self.floor_dbfs) * self.cfg.floor_fall_rate;
        } else if speech {
            self.floor_dbfs += (level - self.floor_dbfs) * self.cfg.floor_rise_rate_in_speech;
        } else {
            self.floor_dbfs += (level - self.floor_dbfs) * self.cfg.floor_rise_rate;
        }
        speech
    }

    fn reset(&mut self) {
        self.floor_dbfs = self.cfg.initial_floor_dbfs;
    }

    fn name(&self) -> &'static str {
        "energy"
    }
}

/// Hysteresis of a [`SpeechSegmenter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmenterConfig {
    /// Speech starts once this many ms of speech frames fall within a sliding window of
    /// `onset_ms * 3 / 2` ms (so one dropped frame in a syllable does not restart the count).
    /// 0 means the first speech frame starts speech.
    pub onset_ms: u32,
    /// Speech ends after this many ms of consecutive non-speech frames.
    pub hangover_ms: u32,
}

impl Default for SegmenterConfig {
    /// 100 ms onset, 400 ms hangover: on the fixtures no utterance is split or missed and no
    /// false onset occurs outside noise bursts; 300 ms hangover split two utterances, 60 ms onset
    /// added a false onset (see `fixtures/README.md`).
    fn default() -> Self {
        Self {
            onset_ms: 100,
            hangover_ms: 400,
        }
    }
}

/// A change of the caller's speaking state, as decided by a [`SpeechSegmenter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadTransition {
    /// The caller started speaking.
    SpeechStart {
        /// ms from the start of the first speech frame counted towards the onset to the end of
        /// the frame that triggered it: the speech started `lead_ms` before "now".
        lead_ms: u32,
    },
    /// The caller stopped speaking (after `hangover_ms` of non-speech).
    SpeechEnd {
        /// ms of the segment from its first speech frame to the end of its last speech frame
        /// (the hangover is not included): the speech ended `hangover_ms` before "now".
        speech_ms: u32,
    },
}

/// Turns per-frame speech decisions into speech start / end transitions with hysteresis.
#[derive(Debug, Clone)]
pub struct SpeechSegmenter {
    cfg: SegmenterConfig,
    window_ms: u32,
    /// Recent frames while not speaking: (is speech, frame ms). Preallocated; bounded by
    /// `window_ms`.
    window: VecDeque<(bool, u32)>,
    window_total_ms: u32,
    window_speech_ms: u32,
    speaking: bool,
    /// While speaking: ms from the segment's first speech frame to the end of its last one.
    segment_speech_ms: u32,
    /// While speaking: ms of non-speech since the last speech frame.
    silence_run_ms: u32,
}

impl SpeechSegmenter {
    /// A segmenter in the "not speaking" state.
    pub fn new(cfg: SegmenterConfig) -> Self {
        let window_ms = (cfg.onset_ms.saturating_mul(3) / 2).max(cfg.onset_ms);
        // Frames are at least 10 ms; two extra slots for the frame being pushed.
        let capacity = (window_ms / 10) as usize + 2;
        Self {
            cfg,
            window_ms,
            window: VecDeque::with_capacity(capacity),
            window_total_ms: 0,
            window_speech_ms: 0,
            speaking: false,
            segment_speech_ms: 0,
            silence_run_ms: 0,
        }
    }

    /// The configuration this segmenter runs with.
    pub fn config(&self) -> SegmenterConfig {
        self.cfg
    }

    /// Feeds one frame's decision (`speech`) covering `frame_ms` ms; returns a transition when
    /// the speaking state changes with this frame.
    pub fn push(&mut self, speech: bool, frame_ms: u32) -> Option<VadTransition> {
        if self.speaking {
            if speech {
                self.segment_speech_ms = self
                    .segment_speech_ms
                    .saturating_add(self.silence_run_ms)
                    .saturating_add(frame_ms);
                self.silence_run_ms = 0;
                None
            } else {
                self.silence_run_ms = self.silence_run_ms.saturating_add(frame_ms);
                if self.silence_run_ms >= self.cfg.hangover_ms {
                    let speech_ms = self.segment_speech_ms;
                    self.speaking = false;
                    self.segment_speech_ms = 0;
                    self.silence_run_ms = 0;
                    Some(VadTransition::SpeechEnd { speech_ms })
                } else {
                    None
                }
            }
        } else {
            self.push_window(speech, frame_ms);
            if speech && self.window_speech_ms >= self.cfg.onset_ms {
                let lead_ms = self.lead_ms();
                self.speaking = true;
                self.segment_speech_ms = lead_ms;
                self.silence_run_ms = 0;
                self.clear_window();
                Some(VadTransition::SpeechStart { lead_ms })
            } else {
                None
            }
        }
    }

    /// Whether the caller is currently considered to be speaking.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Back to "not speaking", forgetting the window.
    pub fn reset(&mut self) {
        self.speaking = false;
        self.segment_speech_ms = 0;
        self.silence_run_ms = 0;
        self.clear_window();
    }

    fn push_window(&mut self, speech: bool, frame_ms: u32) {
        if self.window.len() == self.window.capacity() {
            self.pop_window_front();
        }
        self.window.push_back((speech, frame_ms));
        self.window_total_ms = self.window_total_ms.saturating_add(frame_ms);
        if speech {
            self.window_speech_ms = self.window_speech_ms.saturating_add(frame_ms);
        }
        // Keep at least the newest frame even if it alone is longer than the window.
        while self.window_total_ms > self.window_ms && self.window.len() > 1 {
            self.pop_window_front();
        }
    }

    fn pop_window_front(&mut self) {
        if let Some((was_speech, ms)) = self.window.pop_front() {
            self.window_total_ms = self.window_total_ms.saturating_sub(ms);
            if was_speech {
                self.window_speech_ms = self.window_speech_ms.saturating_sub(ms);
            }
        }
    }

    fn clear_window(&mut self) {
        self.window.clear();
        self.window_total_ms = 0;
        self.window_speech_ms = 0;
    }

    /// ms from the start of the oldest speech frame in the window to the end of the newest frame.
    fn lead_ms(&self) -> u32 {
        let mut seen_speech = false;
        let mut lead = 0u32;
        for &(speech, ms) in &self.window {
            seen_speech |= speech;
            if seen_speech {
                lead = lead.saturating_add(ms);
            }
        }
        lead
    }
}

/// µ-law in, speech transitions out: decoding, a [`VoiceDetector`] and a [`SpeechSegmenter`]
/// with reusable buffers, for the call runtime's inbound path.
pub struct FrameVad {
    detector: Box<dyn VoiceDetector>,
    segmenter: SpeechSegmenter,
    pending: [u8; FRAME_BYTES],
    pending_len: usize,
    pcm: [i16; FRAME_BYTES],
    last_frame_speech: bool,
    frames: u64,
}

impl fmt::Debug for FrameVad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameVad")
            .field("detector", &self.detector.name())
            .field("segmenter", &self.segmenter)
            .field("pending_len", &self.pending_len)
            .field("frames", &self.frames)
            .finish()
    }
}

impl FrameVad {
    /// A VAD over `detector` with the given hysteresis.
    pub fn new(detector: Box<dyn VoiceDetector>, cfg: SegmenterConfig) -> Self {
        Self {
            detector,
            segmenter: SpeechSegmenter::new(cfg),
            pending: [0; FRAME_BYTES],
            pending_len: 0,
            pcm: [0; FRAME_BYTES],
            last_frame_speech: false,
            frames: 0,
        }
    }

    /// The default VAD: [`WebRtcVad`] at [`DEFAULT_VAD_MODE`] with the default hysteresis.
    pub fn webrtc_default() -> Self {
        Self::new(
            Box::new(WebRtcVad::new(DEFAULT_VAD_MODE)),
            SegmenterConfig::default(),
        )
    }

    /// Feeds µ-law audio of any length; complete 20 ms frames are classified as they fill up
    /// and the remainder waits for the next call. Returns the last transition that happened
    /// during this call (at most one for input of up to 160 bytes); use
    /// [`FrameVad::push_mulaw_each`] to see every transition of a long input.
    pub fn push_mulaw(&mut self, frame: &[u8]) -> Option<VadTransition> {
        let mut last = None;
        self.push_mulaw_each(frame, |t| last = Some(t));
        last
    }

    /// Like [`FrameVad::push_mulaw`], calling `on_transition` for every transition in order.
    pub fn push_mulaw_each(
        &mut self,
        mut input: &[u8],
        mut on_transition: impl FnMut(VadTransition),
    ) {
        while !input.is_empty() {
            if self.pending_len == 0 && input.len() >= FRAME_BYTES {
                let (frame, rest) = input.split_at(FRAME_BYTES);
                mulaw::decode_into(frame, &mut self.pcm);
                input = rest;
            } else {
                let want = FRAME_BYTES - self.pending_len;
                let take = want.min(input.len());
                let (head, rest) = input.split_at(take);
                self.pending[self.pending_len..self.pending_len + take].copy_from_slice(head);
                self.pending_len += take;
                input = rest;
                if self.pending_len < FRAME_BYTES {
                    return;
                }
                mulaw::decode_into(&self.pending, &mut self.pcm);
                self.pending_len = 0;
            }
            if let Some(t) = self.classify_decoded() {
                on_transition(t);
            }
        }
    }

    fn classify_decoded(&mut self) -> Option<VadTransition> {
        let speech = self.detector.is_speech(&self.pcm);
        self.last_frame_speech = speech;
        self.frames += 1;
        self.segmenter.push(speech, FRAME_MS)
    }

    /// Whether the caller is currently considered to be speaking (after hysteresis).
    pub fn is_speaking(&self) -> bool {
        self.segmenter.is_speaking()
    }

    /// The raw detector decision of the last complete frame (before hysteresis).
    pub fn last_frame_speech(&self) -> bool {
        self.last_frame_speech
    }

    /// Number of complete 20 ms frames classified so far.
    pub fn frames_processed(&self) -> u64 {
        self.frames
    }

    /// Bytes waiting for a frame to fill up (0..160).
    pub fn pending_bytes(&self) -> usize {
        self.pending_len
    }

    /// Forgets all state: partial frame, detector adaptation, hysteresis.
    pub fn reset(&mut self) {
        self.pending_len = 0;
        self.last_frame_speech = false;
        self.frames = 0;
        self.detector.reset();
        self.segmenter.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(samples: usize, freq_hz: f32, amplitude: f32) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (amplitude * (2.0 * std::f32::consts::PI * freq_hz * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn webrtc_never_panics_on_odd_frames() {
        for mode in 0..=3 {
            let mut vad = WebRtcVad::new(VadMode::from_aggressiveness(mode));
            for len in [0usize, 1, 79, 81, 159, 161, 239, 241, 320, 480, 1000] {
                let frame = vec![1000i16; len];
                assert!(
                    !vad.is_speech(&frame),
                    "len {len} must be rejected as non-speech"
                );
            }
            for len in [80usize, 160, 240] {
                // Valid lengths are processed (silence is not speech).
                assert!(!vad.is_speech(&vec![0i16; len]));
            }
        }
    }

    #[test]
    fn energy_never_panics_on_odd_frames() {
        let mut vad = EnergyVad::new();
        for len in [0usize, 1, 79, 161, 1000] {
            assert!(!vad.is_speech(&vec![20000i16; len]));
        }
    }

    #[test]
    fn webrtc_is_send_and_detects_a_voiced_signal() {
        fn assert_send<T: Send>(_: &T) {}
        let mut vad = WebRtcVad::new(VadMode::Quality);
        assert_send(&vad);
        // A harmonic-rich "vowel": 150 Hz fundamental with harmonics, loud.
        let frame: Vec<i16> = (0..160)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let mut v = 0.0f32;
                for h in 1..12 {
                    v += (2.0 * std::f32::consts::PI * 150.0 * h as f32 * t).sin() / h as f32;
                }
                (v * 6000.0) as i16
            })
            .collect();
        let mut any = false;
        for _ in 0..20 {
            any |= vad.is_speech(&frame);
        }
        assert!(any);
        // Moving the detector to another thread and using it there works; after its internal
        // hangover, silence is not speech.
        let handle = std::thread::spawn(move || {
            let mut last = true;
            for _ in 0..100 {
                last = vad.is_speech(&[0i16; 160]);
            }
            last
        });
        assert_eq!(handle.join().ok(), Some(false));
    }

    #[test]
    fn energy_vad_adapts_to_steady_noise() {
        let mut vad = EnergyVad::new();
        let quiet_hiss: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 300 } else { -300 })
            .collect();
        // Initially a jump above the floor counts, but the floor catches up with steady noise.
        for _ in 0..300 {
            vad.is_speech(&quiet_hiss);
        }
        assert!(!vad.is_speech(&quiet_hiss));
        let loud = tone(160, 440.0, 12000.0);
        assert!(vad.is_speech(&loud));
        assert!(!vad.is_speech(&[0i16; 160]));
    }

    #[test]
    fn level_dbfs_is_sane() {
        assert_eq!(EnergyVad::level_dbfs(&[0; 160]), -100.0);
        let full = vec![32767i16; 160];
        assert!(EnergyVad::level_dbfs(&full).abs() < 0.01);
        let sine = tone(160, 1000.0, 32767.0);
        assert!((EnergyVad::level_dbfs(&sine) + 3.01).abs() < 0.1);
    }

    #[test]
    fn mode_mapping_round_trips() {
        for level in 0..=3u8 {
            assert_eq!(VadMode::from_aggressiveness(level).aggressiveness(), level);
        }
        assert_eq!(VadMode::from_aggressiveness(9), VadMode::VeryAggressive);
    }

    fn seg(onset_ms: u32, hangover_ms: u32) -> SpeechSegmenter {
        SpeechSegmenter::new(SegmenterConfig {
            onset_ms,
            hangover_ms,
        })
    }

    #[test]
    fn onset_fires_exactly_when_enough_speech_accumulates() {
        let mut s = seg(60, 200);
        assert_eq!(s.push(true, 20), None);
        assert_eq!(s.push(true, 20), None);
        assert!(!s.is_speaking());
        assert_eq!(
            s.push(true, 20),
            Some(VadTransition::SpeechStart { lead_ms: 60 })
        );
        assert!(s.is_speaking());
        // No second start while speaking.
        assert_eq!(s.push(true, 20), None);
    }

    #[test]
    fn onset_tolerates_one_gap_within_the_window() {
        // window = 90 ms; speech 20 + gap 20 + speech 20 + speech 20 = 60 ms of speech in 80 ms.
        let mut s = seg(60, 200);
        assert_eq!(s.push(true, 20), None);
        assert_eq!(s.push(false, 20), None);
        assert_eq!(s.push(true, 20), None);
        assert_eq!(
            s.push(true, 20),
            Some(VadTransition::SpeechStart { lead_ms: 80 })
        );
    }

    #[test]
    fn isolated_speech_frames_never_start_speech() {
        let mut s = seg(60, 200);
        for _ in 0..100 {
            assert_eq!(s.push(true, 20), None);
            assert_eq!(s.push(false, 20), None);
            assert_eq!(s.push(false, 20), None);
        }
        assert!(!s.is_speaking());
    }

    #[test]
    fn offset_fires_after_exact_hangover_and_reports_speech_length() {
        let mut s = seg(40, 100);
        s.push(true, 20);
        assert!(matches!(
            s.push(true, 20),
            Some(VadTransition::SpeechStart { lead_ms: 40 })
        ));
        for _ in 0..8 {
            assert_eq!(s.push(true, 20), None);
        }
        // 200 ms of speech so far. A short gap shorter than the hangover is bridged.
        assert_eq!(s.push(false, 20), None);
        assert_eq!(s.push(false, 20), None);
        assert_eq!(s.push(true, 20), None); // 260 ms
        for _ in 0..4 {
            assert_eq!(s.push(false, 20), None);
        }
        assert!(s.is_speaking());
        assert_eq!(
            s.push(false, 20),
            Some(VadTransition::SpeechEnd { speech_ms: 260 })
        );
        assert!(!s.is_speaking());
        // And can start again afterwards.
        s.push(true, 20);
        assert!(matches!(
            s.push(true, 20),
            Some(VadTransition::SpeechStart { .. })
        ));
    }

    #[test]
    fn zero_onset_starts_on_first_speech_frame_and_zero_hangover_ends_on_first_silence() {
        let mut s = seg(0, 0);
        assert_eq!(s.push(false, 20), None);
        assert_eq!(
            s.push(true, 10),
            Some(VadTransition::SpeechStart { lead_ms: 10 })
        );
        assert_eq!(
            s.push(false, 10),
            Some(VadTransition::SpeechEnd { speech_ms: 10 })
        );
    }

    #[test]
    fn reset_forgets_speaking_state() {
        let mut s = seg(20, 100);
        s.push(true, 20);
        assert!(s.is_speaking());
        s.reset();
        assert!(!s.is_speaking());
        assert_eq!(s.push(false, 20), None);
    }

    #[test]
    fn frame_vad_reblocks_any_input_length() {
        struct Counting(usize, Vec<usize>);
        impl VoiceDetector for Counting {
            fn is_speech(&mut self, pcm: &[i16]) -> bool {
                self.1.push(pcm.len());
                self.0 += 1;
                true
            }
        }
        let mut vad = FrameVad::new(
            Box::new(Counting(0, Vec::new())),
            SegmenterConfig {
                onset_ms: 40,
                hangover_ms: 100,
            },
        );
        assert_eq!(vad.push_mulaw(&[0xFF; 100]), None);
        assert_eq!(vad.pending_bytes(), 100);
        assert_eq!(vad.push_mulaw(&[0xFF; 100]), None); // frame 1, 40 pending
        assert_eq!(vad.frames_processed(), 1);
        assert_eq!(
            vad.push_mulaw(&[0xFF; 120]),
            Some(VadTransition::SpeechStart { lead_ms: 40 })
        );
        assert_eq!(vad.pending_bytes(), 0);
        assert!(vad.is_speaking());
        assert!(vad.last_frame_speech());
        let mut seen = 0;
        vad.push_mulaw_each(&[0xFF; 1600], |_| seen += 1);
        assert_eq!(vad.frames_processed(), 12);
        assert_eq!(seen, 0);
        assert_eq!(vad.push_mulaw(&[]), None);
    }

    #[test]
    fn frame_vad_reports_every_transition_of_a_long_input() {
        let mut vad = FrameVad::new(
            Box::new(EnergyVad::new()),
            SegmenterConfig {
                onset_ms: 40,
                hangover_ms: 60,
            },
        );
        let mut audio = vec![0xFFu8; 160 * 10];
        let loud = tone(160 * 10, 300.0, 10000.0);
        audio.extend(loud.iter().map(|&s| mulaw::encode(s)));
        audio.extend(std::iter::repeat_n(0xFFu8, 160 * 10));
        let mut transitions = Vec::new();
        vad.push_mulaw_each(&audio, |t| transitions.push(t));
        assert_eq!(
            transitions,
            vec![
                VadTransition::SpeechStart { lead_ms: 40 },
                VadTransition::SpeechEnd { speech_ms: 200 }
            ]
        );
        assert!(!vad.is_speaking());
    }

    /// The default VAD on a committed fixture: one onset per scripted utterance, each within
    /// 150 ms of the scripted start (recomputed with `lead_ms`), and no onset elsewhere.
    #[test]
    fn default_vad_finds_every_utterance_of_a_fixture_call() {
        let audio: &[u8] = include_bytes!("../../../../fixtures/calls/booking_3_turns.ulaw");
        let script: serde_json::Value = serde_json::from_str(include_str!(
            "../../../../fixtures/calls/booking_3_turns.json"
        ))
        .unwrap_or(serde_json::Value::Null);
        let starts: Vec<i64> = script["utterances"]
            .as_array()
            .map(|a| a.iter().filter_map(|u| u["start_ms"].as_i64()).collect())
            .unwrap_or_default();
        assert_eq!(starts.len(), 3);
        assert_eq!(
            script["hangup_at_ms"].as_i64(),
            Some(audio.len() as i64 / 8)
        );
        let mut vad = FrameVad::webrtc_default();
        let mut onsets = Vec::new();
        for (i, frame) in audio.chunks(FRAME_BYTES).enumerate() {
            let now_ms = (i as i64 + 1) * FRAME_MS as i64;
            if let Some(VadTransition::SpeechStart { lead_ms }) = vad.push_mulaw(frame) {
                onsets.push(now_ms - lead_ms as i64);
            }
        }
        assert_eq!(
            onsets.len(),
            starts.len(),
            "onsets {onsets:?} vs script {starts:?}"
        );
        for (got, want) in onsets.iter().zip(&starts) {
            assert!(
                (got - want).abs() <= 150,
                "onset {got} ms vs scripted {want} ms"
            );
        }
    }
}
