//! The call core's own settings: what the server resolves from the assistant record (plus
//! per-call overrides) before it creates a [`super::CallCore`].
//!
//! The core depends on nothing else of ours, so it has its own struct; field names follow the
//! assistant record (`interruption_settings.*`, `stt_settings.*`, …) so the mapping is one line per
//! field. `Default` gives the record's documented defaults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How the caller may cut the bot off (`interruption_settings.interruption_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptionMode {
    /// Speech onset while the bot is audible pauses it (tentative barge-in); the barge-in is
    /// confirmed by words (see [`InterruptionSettings`]) or dropped and the bot resumes. The
    /// record's default (the field is `null` there).
    #[default]
    Confirmed,
    /// Speech onset while the bot is audible interrupts at once (subject to the same gates).
    Immediate,
    /// The caller never interrupts; what they say while the bot talks becomes the next turn.
    Disabled,
}

/// A string that is not one of the interruption modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interruption_mode {0:?}: expected confirmed, immediate or disabled")]
pub struct UnknownInterruptionMode(pub String);

impl FromStr for InterruptionMode {
    type Err = UnknownInterruptionMode;

    /// Accepts `confirmed` (also `smart`, `tentative`, `default`), `immediate` (also `instant`)
    /// and `disabled` (also `none`, `off`, `never`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "confirmed" | "smart" | "tentative" | "default" | "" => Ok(Self::Confirmed),
            "immediate" | "instant" => Ok(Self::Immediate),
            "disabled" | "none" | "off" | "never" => Ok(Self::Disabled),
            _ => Err(UnknownInterruptionMode(s.to_owned())),
        }
    }
}

impl fmt::Display for InterruptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Confirmed => "confirmed",
            Self::Immediate => "immediate",
            Self::Disabled => "disabled",
        })
    }
}

/// `interruption_settings` of the assistant record: when the caller's speech cuts the bot off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InterruptionSettings {
    /// Words: a finished caller utterance of at least this many (non-backchannel) words always
    /// interrupts the audible bot, even when the confirmation window passed. Default 3.
    pub interruption_threshold: u32,
    /// Seconds: the bot must have been audible at least this long (since the first frame of the
    /// current reply was sent) before the caller can interrupt it; speech over the first
    /// `min_speaking_time` becomes the next turn after the bot finishes, unless it goes on past
    /// it: confirming words that arrive once the bot has been audible this long stop it as
    /// anywhere else. Default 0.5 s.
    pub min_speaking_time: f32,
    /// Seconds: after a confirmed interruption, no other interruption for this long; speech in
    /// that time becomes the next turn, unless confirming words still arrive after it (as with
    /// `min_speaking_time`). Default 2 s.
    pub interruption_cooldown: f32,
    /// How barge-in works; default [`InterruptionMode::Confirmed`].
    pub interruption_mode: InterruptionMode,
    /// 0..=1: an STT word counts towards confirming a tentative barge-in only with at least this
    /// confidence. Default 0.65.
    pub min_stt_confidence: f32,
    /// ms during which the confirming words may still arrive after the caller's speech onset
    /// *and after the last moment they were heard speaking*: the window is
    /// `max(onset, last voiced frame) + confirmation_window_ms`, so the STT's own latency (its
    /// words come hundreds of ms after the audio) does not let a caller who keeps talking be
    /// talked over, while a cough or an "uh-huh" resumes the bot this long after it stops. A
    /// tentative barge-in lasts at most `confirmation_window_ms` + 3 s without confirmation
    /// (steady noise cannot hold the bot paused). When it passes unconfirmed the bot resumes
    /// where it paused. Default 400 ms.
    pub confirmation_window_ms: u32,
    /// Words (with confidence ≥ `min_stt_confidence`, backchannels excluded when
    /// `backchannel_filter`) that confirm a tentative barge-in. Default 2. 0 confirms on the first
    /// transcript of any content.
    pub tentative_confirm_words: u32,
    /// When true, an utterance made only of backchannels ("uh-huh", "yeah", "right", per
    /// language, see `turn/backchannels.txt`) while the bot talks neither interrupts nor starts a
    /// turn; it is kept in the transcript. Default true.
    pub backchannel_filter: bool,
    /// ms: speech that starts when less than this much of a complete reply's audio is left to play
    /// does not pause the bot ([`crate::turn::Gate::TailProtection`]); it becomes the next turn
    /// after the bot finishes, unless it is a backchannel. A real interruption (enough confident
    /// words, or `interruption_threshold` words at its end) still stops the bot. Default 2000 ms.
    pub tail_protection_ms: u32,
}

impl Default for InterruptionSettings {
    fn default() -> Self {
        Self {
            interruption_threshold: 3,
            min_speaking_time: 0.5,
            interruption_cooldown: 2.0,
            interruption_mode: InterruptionMode::Confirmed,
            min_stt_confidence: 0.65,
            confirmation_window_ms: 400,
            tentative_confirm_words: 2,
            backchannel_filter: true,
            tail_protection_ms: 2000,
        }
    }
}

/// `stt_settings.speculative_config`: start the LLM on interim text before the turn is final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpeculativeSettings {
    /// `enable_speculative_llm`: master switch. Default false.
    pub enabled: bool,
    /// `speculative_stream_to_tts`: when true the speculative reply's text goes to TTS at once
    /// (its audio is still held until the turn is confirmed); when false its text is held and sent
    /// to TTS only once confirmed. Default true.
    pub stream_to_tts: bool,
    /// `speculative_debounce_ms`: ms without a new word in the interims before the speculative
    /// LLM starts (interims repeating the same words do not restart it; record range
    /// 100..=1000). Default 300 ms.
    pub debounce_ms: u32,
    /// `speculative_min_words`: the interim must have at least this many words (1..=10).
    /// Default 3.
    pub min_words: u32,
    /// `speculative_similarity_threshold`: 0..=1 word-level similarity (see
    /// [`crate::turn::similarity`]) between the speculated text and the final text needed to keep
    /// the speculative reply; below it the reply is cancelled and restarted. Default 0.85.
    pub similarity_threshold: f32,
}

impl Default for SpeculativeSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            stream_to_tts: true,
            debounce_ms: 300,
            min_words: 3,
            similarity_threshold: 0.85,
        }
    }
}

/// `backchannel_settings`: short listening cues ("mm-hmm") from the bot while the caller talks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BotBackchannelSettings {
    /// Master switch. Default false.
    pub enabled: bool,
    /// 1 (rare) ..= 5 (aggressive); sets the minimum caller speaking time before a cue and the
    /// minimum gap between cues, see [`BotBackchannelSettings::interval_ms`]. Default 3.
    pub frequency: u8,
}

impl Default for BotBackchannelSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            frequency: 3,
        }
    }
}

impl BotBackchannelSettings {
    /// ms the caller must have been talking in the current turn before a cue, and minimum ms
    /// between two cues: 12 s at frequency 1, 9 s, 6 s, 4.5 s, 3 s at frequency 5 (values outside
    /// 1..=5 are clamped).
    pub fn interval_ms(&self) -> u64 {
        match self.frequency.clamp(1, 5) {
            1 => 12_000,
            2 => 9_000,
            3 => 6_000,
            4 => 4_500,
            _ => 3_000,
        }
    }
}

/// Default `idle_message` of the assistant record.
pub const DEFAULT_IDLE_MESSAGE: &str =
    "Are you still there? I'm here to help if you need anything.";
/// Default `llm_settings.system_prompt` of the assistant record.
pub const DEFAULT_SYSTEM_PROMPT: &str =
    "You are a helpful assistant that can answer questions and help with tasks.";
/// What the bot says when the LLM fails for a turn (fixed text, not configurable in the record).
pub const DEFAULT_APOLOGY: &str =
    "I'm sorry, I'm having trouble right now. Could you say that again?";
/// What the bot says before hanging up when providers keep failing.
pub const DEFAULT_PROVIDER_ERROR_GOODBYE: &str =
    "I'm sorry, I'm having technical difficulties. Please call back later. Goodbye.";
/// What the bot says before hanging up when the speech recognition failed for good.
pub const DEFAULT_STT_FAILURE_GOODBYE: &str = "I'm sorry, I can't hear you anymore because of a \
     technical problem. Please call back later. Goodbye.";

/// ms a reply's tools may run before the bot says a filler (see
/// [`CallSettings::tool_filler_delay_ms`]).
pub const DEFAULT_TOOL_FILLER_DELAY_MS: u32 = 1200;
/// What the bot says while slow tools run.
pub const DEFAULT_TOOL_FILLER: &str = "One moment, please.";
/// Tool rounds one reply may run (see [`CallSettings::max_tool_rounds`]).
pub const DEFAULT_MAX_TOOL_ROUNDS: u32 = 4;
/// What the bot says when a reply wants more tool rounds than allowed.
pub const DEFAULT_TOOL_ROUND_CAP_APOLOGY: &str =
    "I'm sorry, I couldn't finish that. Could you ask me in a different way?";

/// How long a warm transfer waits for the agent to take the call before it counts as no
/// answer (see [`CallSettings::warm_transfer_timeout_ms`]).
pub const DEFAULT_WARM_TRANSFER_TIMEOUT_MS: u64 = 45_000;
/// What the caller hears when a warm transfer's agent does not take the call and the record's
/// `unavailable_message` is empty.
pub const DEFAULT_TRANSFER_UNAVAILABLE: &str =
    "I'm sorry, nobody is available to take your call right now.";

/// Everything the call core needs to run one call: the resolved assistant record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallSettings {
    /// `interruption_settings`.
    pub interruption: InterruptionSettings,
    /// `stt_settings.utterance_timeout_seconds`, seconds: once the caller's speech has ended
    /// (local VAD), commit the turn after this long without new words when no provider
    /// end-of-turn signal came. Record range 0.3..=5; `null` there means 1.5 s (the record's
    /// documented fallback), which is the default here.
    pub utterance_timeout_seconds: f32,
    /// `stt_settings.incomplete_utterance_detection`: when true a short utterance that ends
    /// unfinished ("I want to…", trailing "and", "um") waits `incomplete_extra_wait_ms` longer
    /// before it is committed (rule-based, see [`crate::turn::incomplete`]). Default false.
    pub incomplete_utterance_detection: bool,
    /// ms of extra wait for an utterance classified incomplete (once per turn). Default 1500 ms.
    pub incomplete_extra_wait_ms: u32,
    /// With `incomplete_utterance_detection`: a short utterance (fewer than
    /// [`crate::turn::incomplete::SHORT_UTTERANCE_WORDS`] words) that the rules do not already
    /// find unfinished is also asked of a lightweight LLM ([`super::Action::ClassifyUtterance`]);
    /// its verdict is awaited at most this long (ms), after which the turn commits as complete.
    /// `None` = rules only. Default `None`; the server sets it when the assistant's LLM can
    /// answer.
    pub incomplete_llm_timeout_ms: Option<u32>,
    /// `stt_settings.speculative_config`.
    pub speculative: SpeculativeSettings,
    /// `idle_timeout`, seconds: with neither side speaking this long, the bot says
    /// `idle_message`; `None` or 0 disables idle handling (the record's default is `null`).
    pub idle_timeout: Option<u32>,
    /// `idle_message`: what the bot says on idle; `None` or empty skips straight to ending the
    /// call when the idle timeout passes.
    pub idle_message: Option<String>,
    /// `max_idle_messages`: idle messages in a row (no caller speech between them) before the
    /// call ends with `end_call_message`. The record's `null` maps to 2.
    pub max_idle_messages: u32,
    /// `end_call_message`: said (and fully played) before the engine hangs up on idle, on
    /// `max_call_length` and on request; `None` hangs up without a goodbye.
    pub end_call_message: Option<String>,
    /// `max_call_length`, seconds: at this call age the bot stops what it is doing, says
    /// `end_call_message` and hangs up once it has played. `None` is unlimited (record default).
    pub max_call_length: Option<u32>,
    /// `llm_settings.welcome_message` (or the outbound call's override): said first, part of the
    /// history, interruptible like any reply. `None` or empty: the bot waits for the caller.
    pub welcome_message: Option<String>,
    /// `recording_settings.disclosure_enabled`: say `disclosure_message` before the welcome.
    /// Default false.
    pub disclosure_enabled: bool,
    /// `recording_settings.disclosure_message`: the recording notice; cannot be interrupted
    /// (speech during it becomes the next turn) and is not part of the LLM history.
    pub disclosure_message: Option<String>,
    /// `backchannel_settings`.
    pub backchannel: BotBackchannelSettings,
    /// `llm_settings.system_prompt` (already filled with agenda, variables, caller number): the
    /// first message of the history.
    pub system_prompt: String,
    /// `tts_settings.volume`: linear gain applied to outbound µ-law (1.0 = unchanged).
    pub volume: f32,
    /// ms of outbound audio the engine keeps queued at Twilio at most (the "lead"). Smaller is a
    /// faster pause/clear and a more exact "what was heard", larger tolerates network jitter.
    /// Values under one frame (20 ms) are treated as 20 ms. Default 300 ms.
    pub lead_ms: u32,
    /// ms of outbound audio kept queued at Twilio at most while the caller may cut in (the bot
    /// is audible and no gate would hold a barge-in): what a paused bot still plays after the
    /// onset, so the caller hears it go quiet within about `vad_onset_ms` plus this. Outside
    /// those stretches (`min_speaking_time`, the protected tail, a goodbye) `lead_ms` applies.
    /// Capped by `lead_ms`; values under one frame are 20 ms. Default 120 ms.
    pub interruptible_lead_ms: u32,
    /// ms of audio between two playback marks (rounded up to whole 20 ms frames; the last frame
    /// of every utterance gets a mark too). Default 100 ms.
    pub mark_interval_ms: u32,
    /// `stt_settings.language` (BCP-47, e.g. `en-US`): picks the backchannel lexicon and the
    /// incomplete-utterance rules (by primary subtag; unknown languages use English).
    pub language: String,
    /// WebRTC VAD aggressiveness 0..=3 (3 reports speech least readily). Default 2.
    pub vad_aggressiveness: u8,
    /// ms of speech needed for a VAD onset. Default 100 ms.
    pub vad_onset_ms: u32,
    /// ms of silence needed for a VAD speech end. Default 400 ms.
    pub vad_hangover_ms: u32,
    /// Consecutive LLM (or TTS) failures after which the bot says a goodbye and hangs up with
    /// [`super::HangUpReason::LlmFailed`] (or [`super::HangUpReason::TtsFailed`]); earlier
    /// failures get a spoken apology. Default 2.
    pub max_consecutive_failures: u32,
    /// Spoken after a failed LLM turn (fixed text by default).
    pub apology_message: String,
    /// Spoken before hanging up after `max_consecutive_failures` (by the telephony side when
    /// the TTS is what failed).
    pub provider_error_message: String,
    /// Spoken before hanging up when the STT failed for good ([`super::Event::SttFailed`]).
    pub stt_failure_message: String,
    /// `tool_filler_delay_ms`, ms: when a reply's tools have run this long without a result,
    /// the bot says `tool_filler_message` so the caller does not sit in silence (once per tool
    /// round). `None` never says a filler. Default 1200 ms: no filler for tools faster than
    /// about a second.
    pub tool_filler_delay_ms: Option<u32>,
    /// The short filler said while slow tools run (not part of the LLM history).
    pub tool_filler_message: String,
    /// Tool rounds one reply may run: an LLM stream that asks for tools after this many rounds
    /// is stopped and `tool_round_cap_message` is said instead. Default 4.
    pub max_tool_rounds: u32,
    /// Said when a reply hits `max_tool_rounds` (an apology, never silence).
    pub tool_round_cap_message: String,
    /// ms a warm transfer waits for the agent's verdict before it counts as no answer (the
    /// agent's leg is then cancelled). Default 45 000.
    pub warm_transfer_timeout_ms: u64,
    /// What the caller hears while a warm transfer waits: a soft 425 Hz tone every 3 s (true,
    /// the default), or nothing from the engine (false: silence, or the assistant's background
    /// sound where it has one).
    pub warm_transfer_hold_tone: bool,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            interruption: InterruptionSettings::default(),
            utterance_timeout_seconds: 1.5,
            incomplete_utterance_detection: false,
            incomplete_extra_wait_ms: 1500,
            incomplete_llm_timeout_ms: None,
            speculative: SpeculativeSettings::default(),
            idle_timeout: None,
            idle_message: Some(DEFAULT_IDLE_MESSAGE.to_owned()),
            max_idle_messages: 2,
            end_call_message: None,
            max_call_length: None,
            welcome_message: None,
            disclosure_enabled: false,
            disclosure_message: None,
            backchannel: BotBackchannelSettings::default(),
            system_prompt: DEFAULT_SYSTEM_PROMPT.to_owned(),
            volume: 1.0,
            lead_ms: 300,
            interruptible_lead_ms: 120,
            mark_interval_ms: 100,
            language: "en-US".to_owned(),
            vad_aggressiveness: 2,
            vad_onset_ms: 100,
            vad_hangover_ms: 400,
            max_consecutive_failures: 2,
            apology_message: DEFAULT_APOLOGY.to_owned(),
            provider_error_message: DEFAULT_PROVIDER_ERROR_GOODBYE.to_owned(),
            stt_failure_message: DEFAULT_STT_FAILURE_GOODBYE.to_owned(),
            tool_filler_delay_ms: Some(DEFAULT_TOOL_FILLER_DELAY_MS),
            tool_filler_message: DEFAULT_TOOL_FILLER.to_owned(),
            max_tool_rounds: DEFAULT_MAX_TOOL_ROUNDS,
            tool_round_cap_message: DEFAULT_TOOL_ROUND_CAP_APOLOGY.to_owned(),
            warm_transfer_timeout_ms: DEFAULT_WARM_TRANSFER_TIMEOUT_MS,
            warm_transfer_hold_tone: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_record() {
        let s = CallSettings::default();
        assert_eq!(s.interruption.interruption_threshold, 3);
        assert_eq!(s.interruption.min_speaking_time, 0.5);
        assert_eq!(s.interruption.interruption_cooldown, 2.0);
        assert_eq!(s.interruption.min_stt_confidence, 0.65);
        assert_eq!(s.interruption.confirmation_window_ms, 400);
        assert_eq!(s.interruption.tentative_confirm_words, 2);
        assert!(s.interruption.backchannel_filter);
        assert_eq!(s.interruption.tail_protection_ms, 2000);
        assert_eq!(
            s.interruption.interruption_mode,
            InterruptionMode::Confirmed
        );
        assert!(!s.speculative.enabled);
        assert!(s.speculative.stream_to_tts);
        assert_eq!(s.speculative.debounce_ms, 300);
        assert_eq!(s.speculative.min_words, 3);
        assert_eq!(s.speculative.similarity_threshold, 0.85);
        assert!(!s.incomplete_utterance_detection);
        assert!(!s.backchannel.enabled);
        assert_eq!(s.backchannel.frequency, 3);
        assert_eq!(s.idle_message.as_deref(), Some(DEFAULT_IDLE_MESSAGE));
        assert_eq!(s.system_prompt, DEFAULT_SYSTEM_PROMPT);
        assert_eq!(s.volume, 1.0);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("Immediate".parse(), Ok(InterruptionMode::Immediate));
        assert_eq!("disabled".parse(), Ok(InterruptionMode::Disabled));
        assert_eq!("confirmed".parse(), Ok(InterruptionMode::Confirmed));
        assert!("sometimes".parse::<InterruptionMode>().is_err());
        assert_eq!(InterruptionMode::Immediate.to_string(), "immediate");
    }

    #[test]
    fn backchannel_interval_by_frequency() {
        let mut b = BotBackchannelSettings {
            frequency: 1,
            ..BotBackchannelSettings::default()
        };
        assert_eq!(b.interval_ms(), 12_000);
        b.frequency = 5;
        assert_eq!(b.interval_ms(), 3_000);
        b.frequency = 0;
        assert_eq!(b.interval_ms(), 12_000);
        b.frequency = 9;
        assert_eq!(b.interval_ms(), 3_000);
    }
}
