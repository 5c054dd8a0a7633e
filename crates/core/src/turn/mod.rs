//! Turn-taking: who has the floor, when the caller's turn is over, and when the caller's speech
//! cuts the bot off.
//!
//! Three small state machines, driven by [`crate::call::CallCore`]:
//!
//! - the **user turn** ([`UserTurn`]): `Idle → Speaking → Committing → (commit) → Idle`. Local VAD
//!   onset or STT words start it; VAD speech end moves it to `Committing`, where it waits for the
//!   provider's end-of-turn (Deepgram `speech_final`/`UtteranceEnd`, Flux `EndOfTurn`) or for
//!   `utterance_timeout_seconds` without new words; an utterance that sounds unfinished
//!   ([`incomplete`]) waits `incomplete_extra_wait_ms` longer, once.
//! - the **bot** ([`BotState`]): `Silent`, `Speaking` (audio being released to Twilio or playing
//!   there), `Paused` (a tentative barge-in stopped the release; the bounded lead at Twilio runs
//!   out).
//! - the **barge-in** ([`BargeState`]): caller onset while the bot is audible and no [`Gate`]
//!   applies makes it `Tentative` (pause); enough confident non-backchannel words inside the
//!   confirmation window, or a finished utterance of `interruption_threshold` words, confirm it
//!   (clear, cancel, new turn); otherwise it is dropped and the bot resumes.

pub mod incomplete;
pub mod lexicon;
pub mod similarity;

use crate::call::settings::{InterruptionMode, InterruptionSettings};
use crate::call::time::{Millis, secs_to_ms};
pub use lexicon::Lexicon;

/// One recognised word with the STT provider's confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct SttWord {
    /// The word as recognised (punctuation allowed).
    pub word: String,
    /// 0..=1 confidence of the provider.
    pub confidence: f32,
}

/// A transcript from the STT provider: interim, final segment or whole turn (Flux).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    /// The text of the transcript.
    pub text: String,
    /// Per-word confidences when the provider gives them; empty means "use `confidence` for
    /// every word of `text`".
    pub words: Vec<SttWord>,
    /// 0..=1 transcript-level confidence (used when `words` is empty).
    pub confidence: f32,
}

impl Transcript {
    /// A transcript with the same confidence for every word; handy for tests and providers that
    /// give no per-word data.
    pub fn plain(text: impl Into<String>, confidence: f32) -> Self {
        Self {
            text: text.into(),
            words: Vec::new(),
            confidence,
        }
    }

    /// Number of words with confidence ≥ `min_confidence`.
    pub fn confident_words(&self, min_confidence: f32) -> u32 {
        if self.words.is_empty() {
            if self.confidence >= min_confidence {
                lexicon::word_count(&self.text) as u32
            } else {
                0
            }
        } else {
            self.words
                .iter()
                .filter(|w| w.confidence >= min_confidence && lexicon::word_count(&w.word) > 0)
                .count() as u32
        }
    }
}

/// Where the caller's current turn stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserState {
    /// No caller speech in progress.
    #[default]
    Idle,
    /// The caller is speaking (VAD) or words are arriving.
    Speaking,
    /// Speech ended; waiting for the end-of-turn signal or timeout before committing.
    Committing,
}

/// What the bot is doing, as the caller perceives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BotState {
    /// Nothing playing and nothing being released.
    #[default]
    Silent,
    /// Reply audio is being released to Twilio or still playing there.
    Speaking,
    /// A tentative barge-in stopped releasing audio; resumes where it stopped if unconfirmed.
    Paused,
}

/// State of a barge-in attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BargeState {
    /// No barge-in in progress.
    #[default]
    None,
    /// Caller onset paused the bot; waiting for confirming words until `deadline`.
    Tentative {
        /// When the caller started speaking (VAD onset, lead included).
        onset: Millis,
        /// End of the confirmation window: `confirmation_window_ms` after the later of the onset
        /// and the caller's last voiced frame (capped, see `CallSettings`).
        deadline: Millis,
    },
    /// Caller speech while the bot talks that does not pause it (see [`Gate`]); it becomes the
    /// next turn after the bot finishes (except backchannels, which are dropped, unless they
    /// answer the question the bot's tail asks with a yes: a lexicon `answer` such as "yeah").
    Gated(Gate),
    /// A barge-in was dropped (window passed, backchannel, noise); the bot resumed. Words of the
    /// same utterance can still interrupt through `interruption_threshold`.
    Resumed,
}

/// Why caller speech while the bot is audible does not interrupt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The utterance playing cannot be interrupted (recording disclosure, goodbye).
    NotInterruptible,
    /// `interruption_mode` is disabled.
    Disabled,
    /// The bot has been audible less than `min_speaking_time`. It holds only while it lasts:
    /// confirming words that come after it lifted, while the bot is audible, stop the bot.
    MinSpeakingTime,
    /// Less than `interruption_cooldown` since the last interruption; lifts like
    /// [`Gate::MinSpeakingTime`].
    Cooldown,
    /// Less than `tail_protection_ms` of a complete reply is left to play. Unlike the other
    /// gates it yields to a real interruption: enough confident words while the bot is still
    /// audible, or an utterance of `interruption_threshold` words, stop the bot.
    TailProtection,
}

/// What the gates need to know about the bot at the caller's onset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotView {
    /// ms since the first frame of the utterance now playing was sent.
    pub audible_ms: u64,
    /// ms of audio left to play when the reply is complete (LLM and TTS done); `None` while more
    /// may come.
    pub remaining_ms: Option<u64>,
    /// Whether the utterance playing may be interrupted at all.
    pub interruptible: bool,
}

/// The gate that keeps caller speech at `now` from interrupting, if any; gates are checked in
/// the order of [`Gate`]'s variants.
pub fn gate(
    s: &InterruptionSettings,
    bot: &BotView,
    now: Millis,
    last_interruption: Option<Millis>,
) -> Option<Gate> {
    if !bot.interruptible {
        return Some(Gate::NotInterruptible);
    }
    if s.interruption_mode == InterruptionMode::Disabled {
        return Some(Gate::Disabled);
    }
    if bot.audible_ms < secs_to_ms(s.min_speaking_time) {
        return Some(Gate::MinSpeakingTime);
    }
    if let Some(last) = last_interruption
        && now.since(last) < secs_to_ms(s.interruption_cooldown)
    {
        return Some(Gate::Cooldown);
    }
    if let Some(left) = bot.remaining_ms
        && left < u64::from(s.tail_protection_ms)
    {
        return Some(Gate::TailProtection);
    }
    None
}

/// The caller's current utterance: text so far, timings, and the endpointing deadline.
#[derive(Debug, Clone, Default)]
pub struct UserTurn {
    /// Where the turn stands.
    pub state: UserState,
    finals: String,
    interim: String,
    final_confident: u32,
    interim_confident: u32,
    /// When the caller started speaking in this turn (first onset or first words).
    pub started_at: Option<Millis>,
    /// When the caller's speech last ended (VAD).
    pub speech_end_at: Option<Millis>,
    /// When the last interim or final words arrived.
    pub last_words_at: Option<Millis>,
    /// When the last final segment arrived.
    pub last_final_at: Option<Millis>,
    /// Whether the turn started while the bot was audible.
    pub started_during_bot: bool,
    /// Whether the turn already used its extra wait for an incomplete utterance.
    pub extended: bool,
    /// Words the turn had when that wait began: a repeated end-of-utterance signal with no new
    /// words (e.g. Deepgram's `UtteranceEnd` after its `speech_final`) does not cut it short.
    pub extended_words: usize,
    /// When the turn commits unless something new happens.
    pub deadline: Option<Millis>,
}

impl UserTurn {
    /// Whether no words have been recognised yet.
    pub fn is_empty(&self) -> bool {
        self.finals.trim().is_empty() && self.interim.trim().is_empty()
    }

    /// Final text plus the latest interim, space-joined.
    pub fn text(&self) -> String {
        join(&self.finals, &self.interim)
    }

    /// The final text only.
    pub fn final_text(&self) -> &str {
        &self.finals
    }

    /// Confident words so far (finals and latest interim).
    pub fn confident_words(&self) -> u32 {
        self.final_confident + self.interim_confident
    }

    /// All words so far (finals and latest interim).
    pub fn word_count(&self) -> usize {
        lexicon::word_count(&self.finals) + lexicon::word_count(&self.interim)
    }

    /// The caller started speaking at `at` (VAD onset).
    pub fn on_onset(&mut self, at: Millis, bot_audible: bool) {
        if self.state == UserState::Idle {
            self.started_at = Some(at);
            self.started_during_bot = bot_audible;
        }
        self.state = UserState::Speaking;
        self.deadline = None;
    }

    /// The local VAD reported the end of speech at `now` (the speech itself ended at `ended`,
    /// the hangover earlier); arms the utterance timeout from `now`.
    pub fn on_speech_end(&mut self, now: Millis, ended: Millis, utterance_timeout_ms: u64) {
        if self.state == UserState::Speaking {
            self.state = UserState::Committing;
        }
        self.speech_end_at = Some(ended);
        // An end-of-turn signal already holds the turn for an incomplete utterance: that wait
        // stands.
        let holding = self.extended && self.deadline.is_some();
        if self.state == UserState::Committing && !holding {
            self.deadline = Some(now.plus(utterance_timeout_ms));
        }
    }

    /// Interim words replace the previous interim.
    pub fn on_interim(
        &mut self,
        t: &Transcript,
        now: Millis,
        min_conf: f32,
        bot_audible: bool,
        vad_speaking: bool,
        timeout_ms: u64,
    ) {
        self.start_if_idle(now, bot_audible, vad_speaking);
        self.interim.clear();
        self.interim.push_str(t.text.trim());
        self.interim_confident = t.confident_words(min_conf);
        self.words_arrived(now, timeout_ms);
    }

    /// A final segment is appended; the interim it replaces is dropped.
    pub fn on_final(
        &mut self,
        t: &Transcript,
        now: Millis,
        min_conf: f32,
        bot_audible: bool,
        vad_speaking: bool,
        timeout_ms: u64,
    ) {
        if t.text.trim().is_empty() {
            self.interim.clear();
            self.interim_confident = 0;
            return;
        }
        self.start_if_idle(now, bot_audible, vad_speaking);
        self.finals = join(&self.finals, t.text.trim());
        self.final_confident += t.confident_words(min_conf);
        self.interim.clear();
        self.interim_confident = 0;
        self.last_final_at = Some(now);
        self.words_arrived(now, timeout_ms);
    }

    /// A whole-turn transcript (Flux `EndOfTurn`) replaces everything so far.
    pub fn on_turn_transcript(&mut self, t: &Transcript, now: Millis, min_conf: f32) {
        if t.text.trim().is_empty() {
            return;
        }
        if self.state == UserState::Idle {
            self.started_at = Some(now);
            self.state = UserState::Committing;
        }
        self.finals = t.text.trim().to_owned();
        self.final_confident = t.confident_words(min_conf);
        self.interim.clear();
        self.interim_confident = 0;
        self.last_final_at = Some(now);
        self.last_words_at = Some(now);
    }

    /// Appends text that did not come from STT (a DTMF digit) and arms the timeout.
    pub fn push_text(&mut self, text: &str, now: Millis, timeout_ms: u64) {
        if self.state == UserState::Idle {
            self.started_at = Some(now);
        }
        self.state = UserState::Committing;
        self.finals = join(&self.finals, text);
        self.final_confident += lexicon::word_count(text) as u32;
        self.last_words_at = Some(now);
        self.deadline = Some(now.plus(timeout_ms));
    }

    fn start_if_idle(&mut self, now: Millis, bot_audible: bool, vad_speaking: bool) {
        if self.state == UserState::Idle {
            self.started_at = Some(now);
            self.started_during_bot = bot_audible;
            self.state = if vad_speaking {
                UserState::Speaking
            } else {
                UserState::Committing
            };
        }
    }

    fn words_arrived(&mut self, now: Millis, timeout_ms: u64) {
        self.last_words_at = Some(now);
        if self.state == UserState::Committing {
            self.deadline = Some(now.plus(timeout_ms));
        }
    }

    /// Takes the final text (falling back to the interim when no final came) and resets the
    /// turn to idle.
    pub fn take(&mut self) -> String {
        let text = if self.finals.trim().is_empty() {
            self.interim.trim().to_owned()
        } else {
            std::mem::take(&mut self.finals)
        };
        *self = UserTurn::default();
        text
    }
}

fn join(a: &str, b: &str) -> String {
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a} {b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(audible_ms: u64, remaining_ms: Option<u64>) -> BotView {
        BotView {
            audible_ms,
            remaining_ms,
            interruptible: true,
        }
    }

    #[test]
    fn gates_in_order() {
        let s = InterruptionSettings::default();
        assert_eq!(
            gate(&s, &bot(499, None), Millis(10_000), None),
            Some(Gate::MinSpeakingTime)
        );
        assert_eq!(gate(&s, &bot(500, None), Millis(10_000), None), None);
        assert_eq!(
            gate(&s, &bot(500, None), Millis(10_000), Some(Millis(8_001))),
            Some(Gate::Cooldown)
        );
        assert_eq!(
            gate(&s, &bot(500, None), Millis(10_000), Some(Millis(8_000))),
            None
        );
        assert_eq!(
            gate(&s, &bot(900, Some(1999)), Millis(10_000), None),
            Some(Gate::TailProtection)
        );
        assert_eq!(gate(&s, &bot(900, Some(2000)), Millis(10_000), None), None);
        let mut off = s.clone();
        off.interruption_mode = InterruptionMode::Disabled;
        assert_eq!(
            gate(&off, &bot(900, None), Millis(10_000), None),
            Some(Gate::Disabled)
        );
        let b = BotView {
            interruptible: false,
            ..bot(900, None)
        };
        assert_eq!(
            gate(&s, &b, Millis(10_000), None),
            Some(Gate::NotInterruptible)
        );
    }

    #[test]
    fn confident_words_use_per_word_or_transcript_confidence() {
        let t = Transcript {
            text: "stop right there".into(),
            words: vec![
                SttWord {
                    word: "stop".into(),
                    confidence: 0.9,
                },
                SttWord {
                    word: "right".into(),
                    confidence: 0.5,
                },
                SttWord {
                    word: "there".into(),
                    confidence: 0.65,
                },
            ],
            confidence: 0.0,
        };
        assert_eq!(t.confident_words(0.65), 2);
        assert_eq!(Transcript::plain("a b c", 0.7).confident_words(0.65), 3);
        assert_eq!(Transcript::plain("a b c", 0.6).confident_words(0.65), 0);
    }

    #[test]
    fn user_turn_accumulates_and_resets() {
        let mut u = UserTurn::default();
        u.on_onset(Millis(100), false);
        assert_eq!(u.state, UserState::Speaking);
        u.on_interim(
            &Transcript::plain("hello", 0.9),
            Millis(300),
            0.65,
            false,
            true,
            1500,
        );
        assert_eq!(u.text(), "hello");
        u.on_final(
            &Transcript::plain("hello there", 0.9),
            Millis(500),
            0.65,
            false,
            true,
            1500,
        );
        u.on_interim(
            &Transcript::plain("how", 0.9),
            Millis(600),
            0.65,
            false,
            true,
            1500,
        );
        assert_eq!(u.text(), "hello there how");
        assert_eq!(u.confident_words(), 3);
        u.on_speech_end(Millis(900), Millis(500), 1500);
        assert_eq!(u.state, UserState::Committing);
        assert_eq!(u.deadline, Some(Millis(2400)));
        assert_eq!(u.take(), "hello there");
        assert_eq!(u.state, UserState::Idle);
        assert!(u.is_empty());
    }
}
