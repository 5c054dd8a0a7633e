//! [`CallCore`]: the event/action loop of one call.

use super::settings::{CallSettings, InterruptionMode};
use super::time::{Millis, secs_to_ms};
use super::{Action, CallMetrics, Event, HangUpReason, Record, TurnMetrics};
use crate::audio::dtmf::{DtmfTones, GAP_MS, TONE_MS};
use crate::audio::framer::Reframer;
use crate::audio::gain::MulawGain;
use crate::audio::vad::{
    FrameVad, SegmenterConfig, VadMode, VadTransition, VoiceDetector, WebRtcVad,
};
use crate::audio::{FRAME_BYTES, MULAW_SILENCE};
use crate::dialog::{
    Alignment, Generation, History, MarkName, PendingMark, PlayoutLedger, Speaker, SpokenText,
    ToolCall, TranscriptEntry,
};
use crate::speech::{Chunker, ChunkerConfig};
use crate::turn::incomplete::{SHORT_UTTERANCE_WORDS, is_incomplete};
use crate::turn::lexicon::{Lexicon, word_count, words};
use crate::turn::similarity::similarity;
use crate::turn::{BargeState, BotState, BotView, Gate, Transcript, UserState, UserTurn, gate};
use std::collections::VecDeque;
use std::fmt;

mod warm;

/// ms of one outbound frame.
const FRAME_MS: u64 = 20;
/// Frames paced playout releases per wake: two halve the call's wake-ups and writes to Twilio
/// while the bot speaks, for a queue at Twilio that dips to the lead minus 40 ms instead of
/// minus 20 (docs/PERFORMANCE.md).
const PACING_FRAMES_PER_WAKE: u64 = 2;
/// ms after a generation's expected end of playback before the core stops waiting for its last
/// mark (a lost echo must not keep the call in "bot speaking" forever).
const MARK_GRACE_MS: u64 = 2_000;
/// Longest a tentative barge-in may be held open by continuing caller speech without confirming
/// words, beyond `onset + confirmation_window_ms` (ms).
const TENTATIVE_CAP_MS: u64 = 3_000;
/// ms after the call started ending (goodbye) before it hangs up even if the goodbye never played.
const ENDING_CAP_MS: u64 = 30_000;
/// ms after a wordless utterance was dropped during which words without a new onset are still
/// taken as its own (a slow final for a backchannel said over the bot stays a backchannel).
const LATE_WORDS_MS: u64 = 2_000;
/// One frame of µ-law silence, used to pad the end of an utterance to whole frames.
const SILENCE_FRAME: [u8; FRAME_BYTES] = [MULAW_SILENCE; FRAME_BYTES];
/// The tool result the LLM sees for a tool stopped because its reply was cut off.
const TOOL_CANCELLED: &str = "{\"ok\":false,\"error\":\"cancelled: the reply was interrupted\"}";
/// The tool result the LLM sees for a tool whose reply's LLM stream failed.
const TOOL_MODEL_FAILED: &str = "{\"ok\":false,\"error\":\"cancelled: the model failed\"}";

/// What a bot generation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An LLM reply.
    Reply,
    /// The welcome message.
    Welcome,
    /// The recording disclosure.
    Disclosure,
    /// An idle prompt.
    Idle,
    /// The apology after a failed LLM turn.
    Apology,
    /// The goodbye before hanging up or transferring.
    Goodbye,
    /// A listening cue ("mm-hmm") while the caller talks.
    Cue,
    /// DTMF tones sent into the call (the `dtmf_solver` tool); the text is the digits.
    Tones,
}

/// Where the LLM side of a reply stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LlmPhase {
    /// No LLM involved (scripted), or finished.
    Done,
    /// A stream is open.
    Streaming,
    /// The stream ended with tool calls; waiting for their results.
    WaitingTools,
}

/// One live bot generation: production (LLM/TTS), audio in the re-framer, playback.
#[derive(Debug)]
struct Gen {
    id: Generation,
    kind: Kind,
    in_history: bool,
    interruptible: bool,
    spoken: SpokenText,
    llm: LlmPhase,
    /// Tool calls of the current LLM round, in call order, with their results once in.
    round_tools: Vec<(String, Option<String>)>,
    /// Tool rounds this reply has completed.
    tool_rounds: u32,
    /// When the filler is due while this round's tools run (`None`: not armed or said).
    filler_at: Option<Millis>,
    /// A TtsText was sent.
    tts_started: bool,
    /// The end-of-generation flush was sent.
    tts_end_sent: bool,
    /// All audio arrived (or nothing will).
    tts_done: bool,
    /// Speculative and not yet confirmed: audio is held, history not written.
    speculative: bool,
    /// Chunks held back (speculative, not streamed to TTS).
    held_text: Vec<String>,
    /// Bytes pushed to the re-framer (padding included).
    bytes_in: u64,
    /// Frames released to Twilio.
    frames_out: u64,
    first_frame_at: Option<Millis>,
    /// When its first frame was ready and held because the caller was making a sound.
    held_since: Option<Millis>,
    /// Stream position (ms since the last clear) of the first frame.
    stream_start_ms: u64,
    next_mark_seq: u32,
    last_mark_sent: bool,
    /// Expected end of playback when the last mark was sent.
    expected_end: Millis,
    /// Playback position (ms of this generation) confirmed by marks.
    played_ms: u64,
    metrics: TurnMetrics,
}

impl Gen {
    fn new(id: Generation, kind: Kind, now: Millis) -> Self {
        Self {
            id,
            kind,
            in_history: matches!(
                kind,
                Kind::Reply | Kind::Welcome | Kind::Idle | Kind::Apology | Kind::Goodbye
            ),
            interruptible: !matches!(kind, Kind::Disclosure | Kind::Goodbye),
            spoken: SpokenText::default(),
            llm: LlmPhase::Done,
            round_tools: Vec::new(),
            tool_rounds: 0,
            filler_at: None,
            tts_started: false,
            tts_end_sent: false,
            tts_done: false,
            speculative: false,
            held_text: Vec::new(),
            bytes_in: 0,
            frames_out: 0,
            first_frame_at: None,
            held_since: None,
            stream_start_ms: 0,
            next_mark_seq: 0,
            last_mark_sent: false,
            expected_end: now,
            played_ms: 0,
            metrics: TurnMetrics {
                generation: Some(id),
                ..TurnMetrics::default()
            },
        }
    }

    /// Some tool of the current round has no result yet.
    fn tools_running(&self) -> bool {
        self.round_tools.iter().any(|(_, r)| r.is_none())
    }

    /// Ends the current tool round early: every call gets a result in the history (`reason` for
    /// those still running) so it stays valid, and running tools are cancelled.
    fn close_round(&mut self, history: &mut History, actions: &mut VecDeque<Action>, reason: &str) {
        if self.tools_running() {
            actions.push_back(Action::CancelTools {
                generation: self.id,
            });
        }
        self.filler_at = None;
        for (call_id, result) in std::mem::take(&mut self.round_tools) {
            if self.in_history && !self.speculative {
                history.push_tool_result(self.id, &call_id, result.as_deref().unwrap_or(reason));
            }
        }
    }

    fn frames_total(&self) -> u64 {
        self.bytes_in / FRAME_BYTES as u64
    }

    fn all_sent(&self) -> bool {
        self.tts_done && self.frames_out >= self.frames_total()
    }

    /// The reply is complete: no more LLM text and all TTS audio arrived.
    fn complete(&self) -> bool {
        self.llm == LlmPhase::Done && self.tts_done
    }
}

/// A scripted utterance waiting for the TTS.
#[derive(Debug, Clone)]
struct Scripted {
    kind: Kind,
    text: String,
}

/// A running speculative reply.
#[derive(Debug, Clone)]
struct Speculation {
    generation: Generation,
    text: String,
    started_at: Millis,
}

/// A caller turn committed while the bot could not be interrupted; answered when it finishes.
#[derive(Debug, Clone)]
struct Deferred {
    text: String,
    metrics: TurnMetrics,
}

/// A caller utterance that ended before any of its words arrived (see `LATE_WORDS_MS`).
#[derive(Debug, Clone, Copy)]
struct Wordless {
    start: Millis,
    during_bot: bool,
    until: Millis,
}

/// The call is ending: hang up (or transfer) once everything queued has played.
#[derive(Debug, Clone)]
struct Ending {
    reason: HangUpReason,
    transfer_to: Option<String>,
    since: Millis,
    /// What the telephony side must say before hanging up, because our TTS could not.
    spoken_by_telephony: Option<String>,
}

/// The sans-IO core of one call. See the [module docs](super) for how a runtime drives it.
///
/// Invariants (checked by the property tests): no [`super::Action::SendMedia`] while a barge-in
/// is tentative; at most one LLM stream and one TTS generation (listening cues aside) open at a
/// time; never more than `lead_ms` of audio queued at Twilio by the core's own estimate; the
/// history passes [`History::check`] and holds only what the caller heard of cut replies.
pub struct CallCore {
    s: CallSettings,
    lexicon: &'static Lexicon,
    now: Millis,
    actions: VecDeque<super::Action>,
    vad: FrameVad,
    chunker: Chunker,
    gain: MulawGain,
    reframer: Reframer,
    history: History,
    ledger: PlayoutLedger,
    next_gen: u64,
    gens: VecDeque<Gen>,
    queued: VecDeque<Scripted>,
    user: UserTurn,
    barge: BargeState,
    deferred: Option<Deferred>,
    spec: Option<Speculation>,
    spec_deadline: Option<Millis>,
    /// The caller's words when the speculation debounce last restarted: an interim that repeats
    /// them (Deepgram re-sends the same words while the caller is silent) does not restart it.
    spec_words: String,
    last_interruption: Option<Millis>,
    /// Speech gated by tail protection overlaps the end of a question: a backchannel word
    /// ("yes") in it answers the question and is a turn.
    tail_answers_question: bool,
    /// The last caller utterance that ended with no words, while its words may still come.
    wordless: Option<Wordless>,
    /// A tentative barge-in resumed before its window ended (its words are a backchannel):
    /// (onset, deadline). Until the deadline (extended while the caller speaks) confirming words
    /// still stop the bot.
    soft_window: Option<(Millis, Millis)>,
    /// End of the last caller frame the VAD classified as speech.
    last_voiced_at: Option<Millis>,
    playout_end: Millis,
    stream_sent_ms: u64,
    last_activity: Millis,
    idle_count: u32,
    ending: Option<Ending>,
    ended: bool,
    started: bool,
    max_len_deadline: Option<Millis>,
    llm_failures_in_row: u32,
    tts_failures_in_row: u32,
    turn_no: u32,
    cue_no: usize,
    last_cue_at: Option<Millis>,
    metrics: CallMetrics,
    /// A pending LLM verdict on an incomplete utterance: request id, the turn's word count when
    /// asked, and when to stop waiting.
    classifying: Option<(u64, usize, Millis)>,
    next_classify: u64,
    /// The warm transfer under way, if any.
    warm: Option<warm::WarmTransfer>,
    /// Id of the next warm transfer.
    next_transfer: u64,
}

impl fmt::Debug for CallCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallCore")
            .field("now", &self.now)
            .field("user", &self.user.state)
            .field("barge", &self.barge)
            .field("bot", &self.bot_state())
            .field(
                "generations",
                &self.gens.iter().map(|g| g.id).collect::<Vec<_>>(),
            )
            .field("ended", &self.ended)
            .finish()
    }
}

impl CallCore {
    /// A core for one call with the WebRTC VAD at `settings.vad_aggressiveness`. `now` is the
    /// call's time origin as the runtime sees it (normally `Millis(0)`).
    pub fn new(settings: CallSettings, now: Millis) -> Self {
        let detector = Box::new(WebRtcVad::new(VadMode::from_aggressiveness(
            settings.vad_aggressiveness,
        )));
        Self::with_detector(settings, now, detector)
    }

    /// A core with a caller-chosen voice detector (tests, the energy VAD).
    pub fn with_detector(
        settings: CallSettings,
        now: Millis,
        detector: Box<dyn VoiceDetector>,
    ) -> Self {
        let vad = FrameVad::new(
            detector,
            SegmenterConfig {
                onset_ms: settings.vad_onset_ms,
                hangover_ms: settings.vad_hangover_ms,
            },
        );
        let lexicon = Lexicon::for_language(&settings.language);
        Self {
            lexicon,
            now,
            actions: VecDeque::with_capacity(64),
            vad,
            chunker: Chunker::new(ChunkerConfig::default()),
            gain: MulawGain::new(settings.volume),
            reframer: Reframer::new(),
            history: History::new(&settings.system_prompt),
            ledger: PlayoutLedger::default(),
            next_gen: 1,
            gens: VecDeque::new(),
            queued: VecDeque::new(),
            user: UserTurn::default(),
            barge: BargeState::None,
            deferred: None,
            spec: None,
            spec_deadline: None,
            spec_words: String::new(),
            last_interruption: None,
            tail_answers_question: false,
            wordless: None,
            soft_window: None,
            last_voiced_at: None,
            playout_end: now,
            stream_sent_ms: 0,
            last_activity: now,
            idle_count: 0,
            ending: None,
            ended: false,
            started: false,
            max_len_deadline: None,
            llm_failures_in_row: 0,
            tts_failures_in_row: 0,
            turn_no: 0,
            cue_no: 0,
            last_cue_at: None,
            metrics: CallMetrics::default(),
            classifying: None,
            next_classify: 1,
            warm: None,
            next_transfer: 1,
            s: settings,
        }
    }

    /// Feeds one event that happened at `now` (ms since the call started; a `now` earlier than
    /// the previous one is treated as the previous one). Deadlines that passed are handled first.
    pub fn handle(&mut self, event: Event<'_>, now: Millis) {
        let now = now.max(self.now);
        self.now = now;
        if self.ended {
            return;
        }
        self.run_timers(now);
        if self.ended {
            return;
        }
        match event {
            Event::CallStarted => self.on_call_started(now),
            Event::CallerAudio(bytes) => {
                for chunk in bytes.chunks(FRAME_BYTES) {
                    let t = self.vad.push_mulaw(chunk);
                    if self.vad.last_frame_speech() {
                        self.last_voiced_at = Some(now);
                        self.extend_tentative(now);
                    }
                    if let Some(t) = t {
                        self.on_vad(t, now);
                    }
                }
            }
            Event::SttSpeechStarted => {
                if !self.vad.is_speaking() && self.user.state == UserState::Idle {
                    self.on_onset(now, now);
                }
            }
            Event::SttInterim(t) => self.on_words(&t, false, now),
            Event::SttFinal {
                transcript,
                speech_final,
            } => {
                self.on_words(&transcript, true, now);
                if speech_final {
                    self.endpoint(now);
                }
            }
            Event::SttUtteranceEnd => self.endpoint(now),
            Event::SttEndOfTurn(t) => {
                let was_idle = self.user.state == UserState::Idle;
                self.user
                    .on_turn_transcript(&t, now, self.s.interruption.min_stt_confidence);
                if was_idle && !self.user.is_empty() {
                    self.barge_decision(now, now);
                }
                self.check_confirm(now);
                self.last_activity = now;
                self.endpoint(now);
            }
            Event::SttEagerEndOfTurn(t) => {
                self.on_words(&t, false, now);
                if self.s.speculative.enabled && !self.user.is_empty() {
                    self.spec_deadline = None;
                    self.try_speculate(now, true);
                }
            }
            Event::SttTurnResumed => {
                if let Some(spec) = self.spec.take() {
                    self.drop_gen(spec.generation);
                }
                self.update_speculation(now);
            }
            Event::LlmText { generation, delta } => self.on_llm_text(generation, delta, now),
            Event::LlmToolCall { generation, call } => self.on_tool_call(generation, call, now),
            Event::LlmDone { generation } => self.on_llm_done(generation, now),
            Event::LlmFailed { generation, .. } => self.on_llm_failed(generation, now),
            Event::TtsAudio {
                generation,
                audio,
                alignment,
            } => self.on_tts_audio(generation, audio, alignment, now),
            Event::TtsDone { generation } => self.on_tts_done(generation, now),
            Event::TtsFailed { generation, .. } => self.on_tts_failed(generation, now),
            Event::SttFailed { .. } => self.on_stt_failed(now),
            Event::MarkPlayed(name) => self.on_mark(name, now),
            Event::Dtmf(d) => self.on_dtmf(d, now),
            Event::PlayDtmf { digits } => self.play_dtmf(digits, now),
            Event::ToolResult { call_id, content } => {
                if !self.warm_owns_result(call_id) {
                    self.on_tool_result(call_id, content, now);
                }
            }
            Event::WarmTransferRequested {
                tool_call_id,
                to,
                message,
                unavailable_message,
            } => self.on_warm_requested(tool_call_id, to, message, unavailable_message, now),
            Event::WarmTransferResult { transfer, outcome } => {
                self.on_warm_result(transfer, outcome, now)
            }
            Event::HangUpRequested { message } => {
                let msg = message.or_else(|| self.s.end_call_message.clone());
                self.begin_ending(HangUpReason::Completed, None, msg, false, now);
            }
            Event::TransferRequested { to, message } => {
                self.begin_ending(HangUpReason::Completed, Some(to), message, false, now);
            }
            Event::UtteranceClassified {
                request,
                incomplete,
            } => self.on_classified(request, incomplete, now),
            Event::CallerHungUp => self.on_caller_hung_up(now),
            Event::Timeout => {}
        }
        self.check_warm(now);
        if !self.ended {
            self.maybe_finish_ending(now);
            self.pump(now);
            self.pump_hold(now);
        }
    }

    /// The next action to carry out, in order; `None` when there is nothing to do.
    pub fn poll_action(&mut self) -> Option<super::Action> {
        self.actions.pop_front()
    }

    /// When the core next needs [`Event::Timeout`] (or any event) if nothing else happens;
    /// `None` when it only waits for events.
    pub fn poll_timeout(&self) -> Option<Millis> {
        if self.ended {
            return None;
        }
        let mut t: Option<Millis> = None;
        let mut consider = |d: Option<Millis>| {
            if let Some(d) = d {
                t = Some(t.map_or(d, |x| x.min(d)));
            }
        };
        if let BargeState::Tentative { deadline, .. } = self.barge {
            consider(Some(deadline));
        }
        consider(self.user.deadline);
        consider(self.classifying.map(|(_, _, d)| d));
        consider(self.spec_deadline);
        consider(self.idle_deadline());
        if self.ending.is_none() {
            consider(self.max_len_deadline);
        }
        consider(self.ending.as_ref().map(|e| e.since.plus(ENDING_CAP_MS)));
        for g in &self.gens {
            if g.last_mark_sent {
                consider(Some(g.expected_end.plus(MARK_GRACE_MS)));
            }
            consider(g.filler_at);
        }
        consider(self.pacing_deadline());
        consider(self.warm_deadline());
        // An overdue deadline means "now": the runtime calls `handle(Timeout)` at once.
        t.map(|t| t.max(self.now))
    }

    /// The conversation history as the LLM will see it next.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Counters so far (also emitted as [`Record::Call`] when the call ends).
    pub fn metrics(&self) -> &CallMetrics {
        &self.metrics
    }

    /// The settings the core runs with.
    pub fn settings(&self) -> &CallSettings {
        &self.s
    }

    /// Where the caller's turn stands.
    pub fn user_state(&self) -> UserState {
        self.user.state
    }

    /// The barge-in state.
    pub fn barge_state(&self) -> BargeState {
        self.barge
    }

    /// What the bot is doing as the caller perceives it.
    pub fn bot_state(&self) -> BotState {
        let playing = self
            .gens
            .iter()
            .any(|g| !g.speculative && (g.frames_out > 0 || g.frames_total() > 0));
        if matches!(self.barge, BargeState::Tentative { .. }) && (playing || self.bot_busy()) {
            BotState::Paused
        } else if playing {
            BotState::Speaking
        } else {
            BotState::Silent
        }
    }

    /// Whether the core has finished (hung up, transferred, or the caller hung up).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// ms of audio the core estimates is queued at Twilio at `now` (sent, not yet played).
    pub fn queued_at_twilio_ms(&self, now: Millis) -> u64 {
        self.playout_end.since(now)
    }

    /// Generations whose LLM stream is open (at most one).
    pub fn open_llm_streams(&self) -> usize {
        self.gens
            .iter()
            .filter(|g| g.llm == LlmPhase::Streaming)
            .count()
    }

    /// Generations whose TTS is open, listening cues excluded (at most one).
    pub fn open_tts_generations(&self) -> usize {
        self.gens
            .iter()
            .filter(|g| {
                g.kind != Kind::Cue
                    && !g.tts_done
                    && (g.tts_started || !g.held_text.is_empty() || g.llm != LlmPhase::Done)
            })
            .count()
    }

    // ----------------------------------------------------------------------------------------
    // Timers

    fn run_timers(&mut self, now: Millis) {
        if let BargeState::Tentative { deadline, .. } = self.barge
            && now >= deadline
        {
            self.resume_unconfirmed();
        }
        if let Some((request, _, d)) = self.classifying
            && now >= d
        {
            // No verdict in time: take the utterance as complete.
            self.on_classified(request, false, now);
        }
        if let Some(d) = self.user.deadline
            && now >= d
        {
            self.user.deadline = None;
            self.endpoint_timeout(now);
        }
        if let Some(d) = self.spec_deadline
            && now >= d
        {
            self.spec_deadline = None;
            self.try_speculate(now, false);
        }
        let overdue: Vec<Generation> = self
            .gens
            .iter()
            .filter(|g| g.last_mark_sent && now >= g.expected_end.plus(MARK_GRACE_MS))
            .map(|g| g.id)
            .collect();
        for id in overdue {
            self.finish_up_to(id, now);
        }
        let fillers: Vec<usize> = (0..self.gens.len())
            .filter(|&i| self.gens[i].filler_at.is_some_and(|d| now >= d))
            .collect();
        for i in fillers {
            self.say_filler(i);
        }
        if let Some(d) = self.idle_deadline()
            && now >= d
        {
            self.on_idle(now);
        }
        if self.ending.is_none()
            && let Some(d) = self.max_len_deadline
            && now >= d
        {
            let msg = self.s.end_call_message.clone();
            self.begin_ending(HangUpReason::MaxCallLength, None, msg, true, now);
        }
        if let Some(e) = &self.ending
            && now >= e.since.plus(ENDING_CAP_MS)
        {
            self.hang_up(now);
        }
    }

    fn idle_deadline(&self) -> Option<Millis> {
        let secs = self.s.idle_timeout.filter(|s| *s > 0)?;
        if !self.started
            || self.ending.is_some()
            || self.bot_busy()
            || self.user.state != UserState::Idle
            || self.deferred.is_some()
            || self.spec.is_some()
        {
            return None;
        }
        Some(self.last_activity.plus(u64::from(secs) * 1000))
    }

    fn pacing_deadline(&self) -> Option<Millis> {
        if matches!(self.barge, BargeState::Tentative { .. }) {
            return None;
        }
        let g = self
            .gens
            .iter()
            .find(|g| !(g.all_sent() && (g.last_mark_sent || g.frames_out == 0)))?;
        if g.speculative || g.frames_out >= g.frames_total() {
            return None;
        }
        Some(self.pacing_wake())
    }

    /// When paced playout next wakes: once [`PACING_FRAMES_PER_WAKE`] frames fit under the lead
    /// (one when the lead is shorter), so each wake sends them in one write.
    fn pacing_wake(&self) -> Millis {
        let lead = self.lead_ms();
        let room = (PACING_FRAMES_PER_WAKE * FRAME_MS).min(lead);
        self.playout_end.minus(lead - room).max(self.now)
    }

    /// The lead now: `interruptible_lead_ms` while the caller may cut in, else `lead_ms`.
    fn lead_ms(&self) -> u64 {
        let lead = u64::from(self.s.lead_ms).max(FRAME_MS);
        let may_cut_in = matches!(self.barge, BargeState::None | BargeState::Resumed)
            && self.bot_audible()
            && gate(
                &self.s.interruption,
                &self.bot_view(self.now),
                self.now,
                self.last_interruption,
            )
            .is_none();
        if may_cut_in {
            lead.min(u64::from(self.s.interruptible_lead_ms).max(FRAME_MS))
        } else {
            lead
        }
    }

    // ----------------------------------------------------------------------------------------
    // Call start, speech output

    fn on_call_started(&mut self, now: Millis) {
        if self.started {
            return;
        }
        self.started = true;
        self.last_activity = now;
        self.max_len_deadline = self
            .s
            .max_call_length
            .map(|s| now.plus(u64::from(s) * 1000));
        if self.s.disclosure_enabled
            && let Some(d) = self
                .s
                .disclosure_message
                .clone()
                .filter(|d| !d.trim().is_empty())
        {
            self.speak(Kind::Disclosure, d, now);
        }
        if let Some(w) = self
            .s
            .welcome_message
            .clone()
            .filter(|w| !w.trim().is_empty())
        {
            self.speak(Kind::Welcome, w, now);
        }
    }

    fn new_gen_id(&mut self) -> Generation {
        let id = Generation(self.next_gen);
        self.next_gen += 1;
        id
    }

    /// Queues a scripted utterance; it goes to TTS once no other TTS generation is open.
    fn speak(&mut self, kind: Kind, text: String, now: Millis) {
        self.queued.push_back(Scripted { kind, text });
        self.start_queued(now);
    }

    fn tts_busy(&self) -> bool {
        self.gens.iter().any(|g| g.kind != Kind::Cue && !g.tts_done)
    }

    fn start_queued(&mut self, now: Millis) {
        while !self.tts_busy() {
            let Some(item) = self.queued.pop_front() else {
                return;
            };
            if item.kind == Kind::Tones {
                self.start_tones(&item.text, now);
                continue;
            }
            let id = self.new_gen_id();
            let mut g = Gen::new(id, item.kind, now);
            let range = g.spoken.push_text(&item.text);
            if g.in_history {
                self.history.push_scripted(id, &item.text);
            }
            g.tts_started = true;
            g.tts_end_sent = true;
            let text = g.spoken.text().get(range).unwrap_or("").to_owned();
            self.actions.push_back(Action::TtsText {
                generation: id,
                text,
            });
            self.actions.push_back(Action::TtsFlush {
                generation: id,
                end_of_generation: true,
            });
            self.gens.push_back(g);
        }
    }

    fn gen_index(&self, id: Generation) -> Option<usize> {
        self.gens.iter().position(|g| g.id == id)
    }

    /// Any bot generation that counts as "the bot is talking or about to": listening cues and
    /// unconfirmed speculative replies excluded.
    fn bot_busy(&self) -> bool {
        self.gens
            .iter()
            .any(|g| g.kind != Kind::Cue && !g.speculative)
            || !self.queued.is_empty()
    }

    /// A reply waits on tools: it says nothing more (but the filler) until they answer.
    fn waiting_on_tools(&self) -> bool {
        self.gens
            .iter()
            .any(|g| !g.speculative && g.tools_running())
    }

    /// The caller can hear (or is about to hear, within the lead) bot audio.
    fn bot_audible(&self) -> bool {
        self.gens
            .iter()
            .any(|g| g.kind != Kind::Cue && !g.speculative && g.frames_out > 0)
    }

    // ----------------------------------------------------------------------------------------
    // Caller speech

    fn on_vad(&mut self, t: VadTransition, now: Millis) {
        match t {
            VadTransition::SpeechStart { lead_ms } => {
                self.on_onset(now.minus(u64::from(lead_ms)), now);
            }
            VadTransition::SpeechEnd { .. } => self.on_speech_end(now),
        }
    }

    fn utterance_timeout_ms(&self) -> u64 {
        secs_to_ms(self.s.utterance_timeout_seconds).max(1)
    }

    fn on_onset(&mut self, onset: Millis, now: Millis) {
        self.last_activity = now;
        self.cancel_cues();
        let was_idle = self.user.state == UserState::Idle;
        let audible = self.bot_audible();
        self.wordless = None;
        self.user.on_onset(onset, audible);
        self.spec_deadline = None;
        if was_idle || matches!(self.barge, BargeState::None | BargeState::Resumed) {
            self.barge_decision(onset, now);
        }
    }

    /// Decides what caller speech starting at `onset` does to the bot.
    fn barge_decision(&mut self, onset: Millis, now: Millis) {
        if matches!(
            self.barge,
            BargeState::Tentative { .. } | BargeState::Gated(_)
        ) {
            return;
        }
        self.tail_answers_question = false;
        self.soft_window = None;
        if !self.bot_busy() {
            self.barge = BargeState::None;
            return;
        }
        let window = u64::from(self.s.interruption.confirmation_window_ms);
        if self.ending.is_some() {
            self.barge = BargeState::Gated(Gate::NotInterruptible);
            return;
        }
        if !self.bot_audible() {
            // A reply is on its way but nothing was heard yet: the caller may be going on after a
            // premature endpoint. Hold its audio until words decide.
            let front_interruptible = self
                .gens
                .iter()
                .find(|g| g.kind != Kind::Cue)
                .is_none_or(|g| g.interruptible);
            if !front_interruptible {
                self.barge = BargeState::Gated(Gate::NotInterruptible);
            } else if self.s.interruption.interruption_mode == InterruptionMode::Disabled {
                self.barge = BargeState::Gated(Gate::Disabled);
            } else {
                self.barge = BargeState::Tentative {
                    onset,
                    deadline: onset.plus(window).max(now),
                };
            }
            return;
        }
        let view = self.bot_view(now);
        if let Some(g) = gate(&self.s.interruption, &view, now, self.last_interruption) {
            self.barge = BargeState::Gated(g);
            self.tail_answers_question = g == Gate::TailProtection && self.bot_asks_question();
            return;
        }
        match self.s.interruption.interruption_mode {
            InterruptionMode::Immediate => self.confirm_barge(onset, now),
            InterruptionMode::Disabled => self.barge = BargeState::Gated(Gate::Disabled),
            InterruptionMode::Confirmed => {
                self.barge = BargeState::Tentative {
                    onset,
                    deadline: onset.plus(window).max(now),
                };
            }
        }
    }

    /// Whether the last utterance the bot is saying ends with a question: a "yes" over its tail
    /// answers it, so it is a turn, not a backchannel.
    fn bot_asks_question(&self) -> bool {
        self.gens
            .iter()
            .rev()
            .find(|g| g.kind != Kind::Cue && !g.speculative)
            .is_some_and(|g| g.spoken.text().trim_end().ends_with('?'))
    }

    fn bot_view(&self, now: Millis) -> BotView {
        let Some(g) = self
            .gens
            .iter()
            .find(|g| g.kind != Kind::Cue && !g.speculative)
        else {
            return BotView {
                audible_ms: 0,
                remaining_ms: Some(0),
                interruptible: true,
            };
        };
        let audible_ms = g.first_frame_at.map_or(0, |t| now.since(t));
        let last_complete = self
            .gens
            .iter()
            .filter(|g| g.kind != Kind::Cue)
            .all(Gen::complete)
            && self.queued.is_empty();
        let remaining_ms = if last_complete {
            let unsent: u64 = self
                .gens
                .iter()
                .map(|g| g.frames_total().saturating_sub(g.frames_out) * FRAME_MS)
                .sum();
            Some(self.playout_end.since(now) + unsent)
        } else {
            None
        };
        BotView {
            audible_ms,
            remaining_ms,
            interruptible: g.interruptible,
        }
    }

    fn on_speech_end(&mut self, now: Millis) {
        self.last_activity = now;
        // The speech ended `hangover` ms before the VAD could say so.
        let ended = now.minus(u64::from(self.s.vad_hangover_ms));
        if self.user.state == UserState::Idle {
            // The turn was committed (provider end-of-turn) before the local VAD saw the end:
            // complete the turn's metrics.
            if let Some(d) = &mut self.deferred
                && d.metrics.user_speech_end.is_none()
            {
                d.metrics.user_speech_end = Some(ended);
            } else if let Some(g) = self
                .gens
                .iter_mut()
                .rev()
                .find(|g| g.kind == Kind::Reply && g.metrics.user_speech_end.is_none())
            {
                g.metrics.user_speech_end = Some(ended);
            }
            return;
        }
        let timeout = self.utterance_timeout_ms();
        self.user.on_speech_end(now, ended, timeout);
        self.maybe_cue(now);
    }

    fn on_words(&mut self, t: &Transcript, is_final: bool, now: Millis) {
        if self.user.state == UserState::Idle && t.text.trim().is_empty() {
            return;
        }
        let was_idle = self.user.state == UserState::Idle;
        let audible = self.bot_audible();
        let min_conf = self.s.interruption.min_stt_confidence;
        let vad = self.vad.is_speaking();
        let timeout = self.utterance_timeout_ms();
        if is_final {
            self.user.on_final(t, now, min_conf, audible, vad, timeout);
        } else {
            self.user
                .on_interim(t, now, min_conf, audible, vad, timeout);
        }
        if self.user.is_empty() {
            return;
        }
        if was_idle
            && !vad
            && let Some(w) = self.wordless.take()
            && now < w.until
        {
            self.user.started_at = Some(w.start);
            self.user.started_during_bot = w.during_bot;
        }
        self.last_activity = now;
        if was_idle {
            self.cancel_cues();
            self.barge_decision(now, now);
        }
        self.check_confirm(now);
        self.resume_early();
        self.update_speculation(now);
    }

    /// Whether the gate that held caller speech at its onset (`min_speaking_time`, the cooldown)
    /// has lifted by `now`: the bot has been audible long enough and the cooldown is over.
    fn onset_gate_lifted(&self, now: Millis) -> bool {
        let view = self.bot_view(now);
        !matches!(
            gate(&self.s.interruption, &view, now, self.last_interruption),
            Some(Gate::NotInterruptible | Gate::Disabled | Gate::MinSpeakingTime | Gate::Cooldown)
        )
    }

    /// Confirms a barge-in once enough confident, non-backchannel words arrived: a tentative one
    /// inside its window (or resumed early, inside what was left of it); speech in the protected
    /// tail while the bot is still audible (tail protection keeps the bot talking over what is
    /// not a real interruption, not over one); or speech that began while `min_speaking_time` or
    /// the cooldown held and goes on past it (those gates hold only while they last: a caller who
    /// started a sentence just before the reply was heard still stops it).
    fn check_confirm(&mut self, now: Millis) {
        let onset = match self.barge {
            BargeState::Tentative { onset, deadline } if now <= deadline => onset,
            BargeState::Resumed => match self.soft_window {
                Some((onset, deadline)) if now <= deadline => onset,
                _ => return,
            },
            BargeState::Gated(Gate::TailProtection) if self.bot_audible() => {
                self.user.started_at.unwrap_or(now)
            }
            BargeState::Gated(Gate::MinSpeakingTime | Gate::Cooldown)
                if self.bot_audible() && self.onset_gate_lifted(now) =>
            {
                self.user.started_at.unwrap_or(now)
            }
            _ => return,
        };
        let text = self.user.text();
        if self.s.interruption.backchannel_filter && self.lexicon.is_backchannel(&text) {
            return;
        }
        let need = self.s.interruption.tentative_confirm_words;
        let enough = if need == 0 {
            word_count(&text) >= 1
        } else {
            self.user.confident_words() >= need
        };
        if enough {
            self.confirm_barge(onset, now);
        }
    }

    /// The caller is still speaking: the confirmation window (of a tentative barge-in, or what is
    /// left of one resumed early) runs from their last voiced frame, up to [`TENTATIVE_CAP_MS`]
    /// past the window counted from the onset.
    fn extend_tentative(&mut self, now: Millis) {
        let window = u64::from(self.s.interruption.confirmation_window_ms);
        let extend = |onset: Millis, deadline: Millis| {
            let cap = onset.plus(window + TENTATIVE_CAP_MS);
            now.plus(window).min(cap).max(deadline)
        };
        if let BargeState::Tentative { onset, deadline } = self.barge {
            self.barge = BargeState::Tentative {
                onset,
                deadline: extend(onset, deadline),
            };
        } else if let Some((onset, deadline)) = self.soft_window {
            self.soft_window = Some((onset, extend(onset, deadline)));
        }
    }

    /// Resumes a paused bot as soon as the caller's words are only a backchannel, even while it
    /// is still being said, instead of at the end of the window: a backchannel leaves a gap of
    /// about the time its words take to arrive. Words that still come inside the window ("yeah,
    /// but wait") confirm the barge-in as before (see [`Self::check_confirm`]). Speech with no
    /// words yet waits for them: it may be the first word of a real barge-in.
    fn resume_early(&mut self) {
        let BargeState::Tentative { onset, deadline } = self.barge else {
            return;
        };
        if self.s.interruption.backchannel_filter
            && !self.user.is_empty()
            && self.lexicon.is_backchannel(&self.user.text())
        {
            self.resume_unconfirmed();
            self.soft_window = Some((onset, deadline));
        }
    }

    fn resume_unconfirmed(&mut self) {
        self.barge = BargeState::Resumed;
        self.metrics.false_interruptions += 1;
    }

    /// A confirmed barge-in: clear Twilio, cancel production, keep only what was heard.
    fn confirm_barge(&mut self, onset: Millis, now: Millis) {
        if self.barge == BargeState::Resumed && self.soft_window.is_some() {
            // Resumed early, then confirmed: not a false interruption after all.
            self.metrics.false_interruptions = self.metrics.false_interruptions.saturating_sub(1);
        }
        self.soft_window = None;
        self.barge = BargeState::None;
        let audible = self.bot_audible();
        self.cut_all(now, true);
        if audible {
            self.last_interruption = Some(now);
            self.metrics.interruptions += 1;
            self.metrics.interruption_reaction_ms.push(now.since(onset));
        } else {
            self.metrics.premature_endpoints += 1;
        }
    }

    /// Stops every live generation: `clear` if audio was sent, cancels LLM/TTS, trims the history
    /// to what played, records interrupted transcript lines and turn metrics.
    fn cut_all(&mut self, now: Millis, interrupted: bool) {
        let any_sent = self.gens.iter().any(|g| g.frames_out > 0);
        if any_sent {
            self.actions.push_back(Action::SendClear);
        }
        let gens: Vec<Gen> = self.gens.drain(..).collect();
        let mut max_id = None;
        for mut g in gens {
            max_id = Some(g.id);
            let played = self.played_ms(&g, now);
            if g.llm == LlmPhase::Streaming {
                self.actions
                    .push_back(Action::CancelLlm { generation: g.id });
            }
            if !g.tts_done && (g.tts_started || g.kind == Kind::Cue) {
                self.actions
                    .push_back(Action::TtsCancel { generation: g.id });
            }
            let heard = g.spoken.heard_end(played);
            // Tools of the reply stop. Calls that completed stay in the history (with the
            // others' "cancelled" results) even when nothing was heard; a reply whose tools
            // never finished and that nobody heard leaves no trace.
            let tools_done = g.tool_rounds > 0 || g.round_tools.iter().any(|(_, r)| r.is_some());
            g.close_round(&mut self.history, &mut self.actions, TOOL_CANCELLED);
            if g.in_history && !g.speculative {
                if heard == 0 && tools_done {
                    self.history.keep_tool_work(g.id);
                } else {
                    self.history.keep_heard(g.id, heard);
                }
            }
            if g.kind != Kind::Cue && played > 0 {
                let text = g.spoken.text().get(..heard).unwrap_or("").to_owned();
                self.record_transcript(TranscriptEntry {
                    speaker: Speaker::Assistant,
                    text,
                    start: g.first_frame_at.unwrap_or(now),
                    end: now,
                    interrupted,
                    backchannel: false,
                    generation: Some(g.id),
                });
            }
            if g.kind == Kind::Reply && !g.speculative {
                g.metrics.interrupted = interrupted;
                self.actions
                    .push_back(Action::Record(Record::Turn(g.metrics.clone())));
            }
        }
        if let Some(spec) = self.spec.take() {
            let _ = spec;
        }
        self.spec_deadline = None;
        self.queued.retain(|q| q.kind == Kind::Goodbye);
        self.reframer.clear();
        if let Some(id) = max_id {
            self.ledger.clear(id);
        }
        self.playout_end = now;
        self.chunker.reset();
    }

    /// ms of `g`'s audio the caller has heard at `now`: marks, or the playout clock.
    fn played_ms(&self, g: &Gen, now: Millis) -> u64 {
        if g.first_frame_at.is_none() {
            return g.played_ms;
        }
        let stream_played = self
            .stream_sent_ms
            .saturating_sub(self.playout_end.since(now));
        let by_clock = stream_played
            .saturating_sub(g.stream_start_ms)
            .min(g.frames_out * FRAME_MS);
        by_clock.max(g.played_ms)
    }

    fn endpoint(&mut self, now: Millis) {
        if self.user.is_empty() {
            return;
        }
        if self.user.extended
            && self.user.deadline.is_some_and(|d| now < d)
            && self.user.word_count() == self.user.extended_words
        {
            // Still waiting for the rest of an unfinished sentence; nothing new was said.
            return;
        }
        if let Some((_, words, _)) = self.classifying {
            if words == self.user.word_count() {
                // The LLM is still judging these very words.
                return;
            }
            // The caller said more since: that question is moot.
            self.classifying = None;
        }
        if self.s.incomplete_utterance_detection
            && !self.user.extended
            && !is_incomplete(&self.user.text(), self.lexicon)
            && let Some(timeout) = self.s.incomplete_llm_timeout_ms
            && self.user.word_count() < SHORT_UTTERANCE_WORDS
        {
            let request = self.next_classify;
            self.next_classify += 1;
            let words = self.user.word_count();
            self.classifying = Some((request, words, now.plus(u64::from(timeout))));
            self.user.state = UserState::Committing;
            self.user.deadline = None;
            self.actions.push_back(Action::ClassifyUtterance {
                request,
                text: self.user.text(),
            });
            return;
        }
        if self.s.incomplete_utterance_detection
            && !self.user.extended
            && is_incomplete(&self.user.text(), self.lexicon)
        {
            self.user.extended = true;
            self.user.extended_words = self.user.word_count();
            self.user.state = UserState::Committing;
            self.user.deadline = Some(now.plus(u64::from(self.s.incomplete_extra_wait_ms)));
            return;
        }
        self.commit_user(now);
    }

    /// The LLM's verdict on a short utterance (or the verdict's timeout, as "complete").
    fn on_classified(&mut self, request: u64, incomplete: bool, now: Millis) {
        let Some((pending, words, _)) = self.classifying else {
            return;
        };
        if pending != request {
            return;
        }
        self.classifying = None;
        if words != self.user.word_count() || self.vad.is_speaking() || self.user.is_empty() {
            // The caller went on meanwhile: their turn is judged again when it ends.
            return;
        }
        if incomplete {
            self.user.extended = true;
            self.user.extended_words = words;
            self.user.state = UserState::Committing;
            self.user.deadline = Some(now.plus(u64::from(self.s.incomplete_extra_wait_ms)));
        } else {
            self.commit_user(now);
        }
    }

    fn endpoint_timeout(&mut self, now: Millis) {
        if self.vad.is_speaking() {
            return;
        }
        if self.user.is_empty() {
            // Speech with no words (noise, a cough): nothing to commit. Words that still come for
            // it (a slow STT) belong to it, not to a new turn.
            self.wordless = self.user.started_at.map(|start| Wordless {
                start,
                during_bot: self.user.started_during_bot,
                until: now.plus(LATE_WORDS_MS),
            });
            self.user = UserTurn::default();
            if matches!(self.barge, BargeState::Gated(_) | BargeState::Resumed) {
                self.barge = BargeState::None;
            }
            return;
        }
        self.endpoint(now);
    }

    /// The caller's utterance is over: decide whether it is a turn, a backchannel, an
    /// interruption, or speech to answer once the bot finishes.
    fn commit_user(&mut self, now: Millis) {
        self.classifying = None;
        // Resumed early and still inside the window: words confirm as in a tentative barge-in.
        let soft = self
            .soft_window
            .is_some_and(|(_, deadline)| now <= deadline);
        let text = self.user.text();
        let words = word_count(&text) as u32;
        let bc = self.s.interruption.backchannel_filter && self.lexicon.is_backchannel(&text);
        // Over the end of a question only a yes ("yeah", "okay") answers it; "mm-hmm" does not.
        let answers = self.tail_answers_question && self.lexicon.has_answer(&text);
        let threshold = self.s.interruption.interruption_threshold.max(1);
        let busy = self.bot_busy();
        match self.barge {
            BargeState::Tentative { onset, .. } if busy => {
                if !bc && (words >= threshold || self.enough_confirm_words(&text)) {
                    self.confirm_barge(onset, now);
                } else {
                    self.barge = BargeState::Resumed;
                    self.metrics.false_interruptions += 1;
                    self.not_a_turn(bc, now);
                    return;
                }
            }
            BargeState::Gated(Gate::TailProtection) if busy && !bc && words >= threshold => {
                // A real interruption in the tail stops the bot like anywhere else.
                let onset = self.user.started_at.unwrap_or(now);
                self.confirm_barge(onset, now);
            }
            BargeState::Gated(Gate::MinSpeakingTime | Gate::Cooldown | Gate::TailProtection)
                if busy && !bc && words >= threshold && self.waiting_on_tools() =>
            {
                // A real turn while the reply waits on its tools: deferred, it would wait for
                // them (up to their timeout) and then hear the answer to the old question.
                let onset = self.user.started_at.unwrap_or(now);
                self.confirm_barge(onset, now);
            }
            BargeState::Gated(_) if busy => {
                if bc && !answers {
                    self.not_a_turn(true, now);
                } else {
                    self.defer_user(now);
                }
                return;
            }
            BargeState::Resumed if busy => {
                if bc || (words < threshold && !(soft && self.enough_confirm_words(&text))) {
                    self.not_a_turn(bc, now);
                    return;
                }
                let onset = self.user.started_at.unwrap_or(now);
                self.confirm_barge(onset, now);
            }
            BargeState::Resumed | BargeState::Gated(_) => {
                if bc && self.user.started_during_bot && !answers {
                    self.not_a_turn(true, now);
                    return;
                }
            }
            BargeState::None if busy => {
                self.defer_user(now);
                return;
            }
            BargeState::None | BargeState::Tentative { .. } => {
                if bc && self.user.started_during_bot {
                    // A backchannel over the bot that ended after it: still not a turn.
                    self.not_a_turn(true, now);
                    return;
                }
            }
        }
        self.barge = BargeState::None;
        self.soft_window = None;
        self.commit_turn(now);
    }

    fn enough_confirm_words(&self, text: &str) -> bool {
        let need = self.s.interruption.tentative_confirm_words;
        if need == 0 {
            word_count(text) >= 1
        } else {
            self.user.confident_words() >= need
        }
    }

    /// Caller speech that is not a turn: kept in the transcript only.
    fn not_a_turn(&mut self, backchannel: bool, now: Millis) {
        self.soft_window = None;
        let start = self.user.started_at.unwrap_or(now);
        let end = self.user_speech_end().unwrap_or(now);
        let text = self.user.take();
        if backchannel {
            self.metrics.backchannels_ignored += 1;
        }
        self.record_transcript(TranscriptEntry {
            speaker: Speaker::User,
            text,
            start,
            end: end.max(start),
            interrupted: false,
            backchannel,
            generation: None,
        });
        if let Some(spec) = self.spec.take() {
            self.drop_gen(spec.generation);
        }
    }

    /// When the caller's current utterance ended: the VAD's speech end, else (the provider
    /// ended the turn first) the last voiced frame of the turn.
    fn user_speech_end(&self) -> Option<Millis> {
        let start = self.user.started_at?;
        self.user
            .speech_end_at
            .filter(|e| *e >= start)
            .or(self.last_voiced_at.filter(|v| *v >= start))
    }

    fn turn_metrics_from_user(&self, now: Millis) -> TurnMetrics {
        TurnMetrics {
            turn: self.turn_no,
            generation: None,
            user_speech_start: self.user.started_at,
            user_speech_end: self.user_speech_end(),
            stt_final: self.user.last_final_at,
            committed: Some(now),
            ..TurnMetrics::default()
        }
    }

    fn take_user_turn(&mut self, now: Millis) -> (String, TurnMetrics) {
        let start = self.user.started_at.unwrap_or(now);
        let end = self.user_speech_end().unwrap_or(now).max(start);
        let mut metrics = self.turn_metrics_from_user(now);
        let text = self.user.take();
        self.record_transcript(TranscriptEntry {
            speaker: Speaker::User,
            text: text.clone(),
            start,
            end,
            interrupted: false,
            backchannel: false,
            generation: None,
        });
        metrics.committed = Some(now);
        (text, metrics)
    }

    fn defer_user(&mut self, now: Millis) {
        let (text, metrics) = self.take_user_turn(now);
        match &mut self.deferred {
            Some(d) => {
                d.text.push(' ');
                d.text.push_str(&text);
            }
            None => self.deferred = Some(Deferred { text, metrics }),
        }
        self.barge = BargeState::None;
        self.spec_deadline = None;
    }

    /// A caller turn is committed: into the history, and a reply starts (or the speculative one
    /// is kept).
    fn commit_turn(&mut self, now: Millis) {
        let (mut text, mut metrics) = self.take_user_turn(now);
        if let Some(d) = self.deferred.take() {
            text = format!("{} {}", d.text, text);
            metrics.user_speech_start = d.metrics.user_speech_start;
        }
        self.finish_commit(text, metrics, now);
    }

    fn finish_commit(&mut self, text: String, mut metrics: TurnMetrics, now: Millis) {
        self.spec_deadline = None;
        self.turn_no += 1;
        metrics.turn = self.turn_no;
        self.metrics.turns += 1;
        self.idle_count = 0;
        self.last_activity = now;
        self.history.push_user(&text);
        if self.ending.is_some() {
            if let Some(spec) = self.spec.take() {
                self.drop_gen(spec.generation);
            }
            return;
        }
        if let Some(spec) = self.spec.take() {
            let sim = similarity(&spec.text, &text);
            if sim >= self.s.speculative.similarity_threshold
                && self.gen_index(spec.generation).is_some()
            {
                self.metrics.speculative_hits += 1;
                self.metrics.speculative_ms_saved += now.since(spec.started_at);
                self.adopt_speculation(spec.generation, metrics, spec.started_at);
                return;
            }
            self.drop_gen(spec.generation);
        }
        self.start_reply(now, metrics, None);
    }

    /// Opens an LLM reply. With `speculative_text` it is a speculative reply on that text.
    fn start_reply(
        &mut self,
        now: Millis,
        mut metrics: TurnMetrics,
        speculative_text: Option<&str>,
    ) -> Generation {
        let id = self.new_gen_id();
        let mut g = Gen::new(id, Kind::Reply, now);
        let mut messages = self.history.snapshot();
        if let Some(t) = speculative_text {
            let mut h = self.history.clone();
            h.push_user(t);
            messages = h.snapshot();
            g.speculative = true;
        }
        metrics.generation = Some(id);
        metrics.llm_request = Some(now);
        g.metrics = metrics;
        g.llm = LlmPhase::Streaming;
        self.chunker.reset();
        self.actions.push_back(Action::StartLlm {
            generation: id,
            messages,
            speculative: g.speculative,
        });
        self.gens.push_back(g);
        id
    }

    fn adopt_speculation(&mut self, id: Generation, metrics: TurnMetrics, started: Millis) {
        let Some(i) = self.gen_index(id) else {
            return;
        };
        let g = &mut self.gens[i];
        g.speculative = false;
        let mut m = metrics;
        m.generation = Some(id);
        m.llm_request = Some(started);
        m.llm_first_token = g.metrics.llm_first_token;
        m.tts_first_audio = g.metrics.tts_first_audio;
        m.speculative = true;
        g.metrics = m;
        let text = g.spoken.text().to_owned();
        if !text.is_empty() {
            self.history.push_assistant_text(id, &text, 0..text.len());
        }
        let held = std::mem::take(&mut self.gens[i].held_text);
        for chunk in held {
            self.gens[i].tts_started = true;
            self.actions.push_back(Action::TtsText {
                generation: id,
                text: chunk,
            });
        }
        if self.gens[i].llm == LlmPhase::Done {
            self.end_tts(i);
        }
    }

    /// Cancels and forgets a generation that nobody heard (speculation miss, failed reply).
    fn drop_gen(&mut self, id: Generation) {
        let Some(i) = self.gen_index(id) else {
            return;
        };
        let Some(g) = self.gens.remove(i) else {
            return;
        };
        if g.llm == LlmPhase::Streaming {
            self.actions.push_back(Action::CancelLlm { generation: id });
        }
        if !g.tts_done && g.tts_started {
            self.actions.push_back(Action::TtsCancel { generation: id });
        }
        if g.in_history && !g.speculative {
            self.history.remove_generation(id);
        }
        if g.bytes_in > 0
            && g.frames_out == 0
            && self.gens.iter().all(|o| o.frames_out >= o.frames_total())
        {
            // Its audio is the only thing in the re-framer.
            self.reframer.clear();
        }
        self.ledger.forget(id);
        self.chunker.reset();
    }

    // ----------------------------------------------------------------------------------------
    // Speculation

    fn update_speculation(&mut self, now: Millis) {
        if !self.s.speculative.enabled || self.ending.is_some() {
            return;
        }
        let text = self.user.text();
        if let Some(spec) = &self.spec
            && similarity(&spec.text, &text) < self.s.speculative.similarity_threshold
        {
            let id = spec.generation;
            self.spec = None;
            self.drop_gen(id);
        }
        if self.spec.is_none()
            && word_count(&text) as u32 >= self.s.speculative.min_words.max(1)
            && !self.bot_busy()
            && self.barge == BargeState::None
        {
            // The debounce counts from the last new word, not the last interim: interims that
            // repeat the words through the silence before the endpoint must not push the
            // speculation past the final.
            if self.spec_deadline.is_none() || !words(&text).eq(words(&self.spec_words)) {
                self.spec_deadline = Some(now.plus(u64::from(self.s.speculative.debounce_ms)));
                self.spec_words = text;
            }
        } else {
            self.spec_deadline = None;
        }
    }

    /// Starts a speculative reply on the caller's words so far. `eager`: the STT said the turn
    /// probably ended (Flux `EagerEndOfTurn`), so the minimum word count does not apply.
    fn try_speculate(&mut self, now: Millis, eager: bool) {
        if self.spec.is_some()
            || self.bot_busy()
            || self.ending.is_some()
            || self.user.state == UserState::Idle
            || self.barge != BargeState::None
        {
            return;
        }
        let text = self.user.text();
        if !eager && (word_count(&text) as u32) < self.s.speculative.min_words.max(1) {
            return;
        }
        if self.sounds_unfinished(&text) || is_incomplete(&text, self.lexicon) {
            // A mid-sentence pause: no LLM request for the first half alone. Without
            // `incomplete_utterance_detection` too: a guess on words that end mid-sentence
            // ("I want to") would have its audio ready at the endpoint and be heard in the
            // pause, where the reply started at the final is not yet.
            return;
        }
        let metrics = self.turn_metrics_from_user(now);
        let id = self.start_reply(now, metrics, Some(&text));
        self.metrics.speculative_started += 1;
        self.spec = Some(Speculation {
            generation: id,
            text,
            started_at: now,
        });
    }

    /// With `incomplete_utterance_detection`, whether the caller's words so far are (or may be)
    /// the first half of a sentence: flagged by the lexicon, being judged by the LLM, or waiting
    /// for the rest after such a verdict with nothing new said.
    fn sounds_unfinished(&self, text: &str) -> bool {
        self.s.incomplete_utterance_detection
            && (is_incomplete(text, self.lexicon)
                || self.classifying.is_some()
                || (self.user.extended && self.user.word_count() == self.user.extended_words))
    }

    // ----------------------------------------------------------------------------------------
    // LLM

    fn llm_gen(&self, id: Generation) -> Option<usize> {
        self.gen_index(id)
            .filter(|&i| self.gens[i].llm == LlmPhase::Streaming)
    }

    fn on_llm_text(&mut self, id: Generation, delta: &str, now: Millis) {
        let Some(i) = self.llm_gen(id) else {
            return;
        };
        if self.gens[i].metrics.llm_first_token.is_none() {
            self.gens[i].metrics.llm_first_token = Some(now);
        }
        self.chunker.push(delta);
        while let Some(chunk) = self.chunker.pop() {
            self.emit_chunk(i, chunk);
        }
    }

    fn emit_chunk(&mut self, i: usize, chunk: String) {
        let stream = self.s.speculative.stream_to_tts;
        let g = &mut self.gens[i];
        let range = g.spoken.push_text(&chunk);
        if range.is_empty() {
            return;
        }
        let id = g.id;
        if g.speculative && !stream {
            g.held_text.push(chunk);
            return;
        }
        g.tts_started = true;
        if g.in_history && !g.speculative {
            let spoken = g.spoken.text().to_owned();
            self.history.push_assistant_text(id, &spoken, range);
        }
        self.actions.push_back(Action::TtsText {
            generation: id,
            text: chunk,
        });
    }

    fn flush_chunker(&mut self, i: usize) {
        if let Some(rest) = self.chunker.finish() {
            self.emit_chunk(i, rest);
        }
    }

    fn on_tool_call(&mut self, id: Generation, call: ToolCall, now: Millis) {
        let Some(i) = self.llm_gen(id) else {
            return;
        };
        if self.gens[i].speculative {
            // Tools have side effects: never run them on a guess.
            self.spec = None;
            self.drop_gen(id);
            return;
        }
        self.flush_chunker(i);
        if self.gens[i].tool_rounds >= self.s.max_tool_rounds {
            self.tool_round_cap(i);
            return;
        }
        if self.gens[i].tts_started && self.gens[i].round_tools.is_empty() {
            // Text before the tools is spoken now, not after them.
            self.actions.push_back(Action::TtsFlush {
                generation: id,
                end_of_generation: false,
            });
        }
        let spoken_len = self.gens[i].spoken.text().len();
        self.history.push_tool_call(id, call.clone(), spoken_len);
        let g = &mut self.gens[i];
        if g.round_tools.is_empty() {
            g.filler_at = self.s.tool_filler_delay_ms.map(|d| now.plus(u64::from(d)));
        }
        g.round_tools.push((call.id.clone(), None));
        self.actions.push_back(Action::RunTool {
            generation: id,
            call,
        });
    }

    /// The reply asked for more tool rounds than `max_tool_rounds`: its stream stops and the
    /// bot apologises instead of running them.
    fn tool_round_cap(&mut self, i: usize) {
        let id = self.gens[i].id;
        if self.gens[i].llm == LlmPhase::Streaming {
            self.actions.push_back(Action::CancelLlm { generation: id });
        }
        self.gens[i].llm = LlmPhase::Done;
        let apology = self.s.tool_round_cap_message.clone();
        self.emit_chunk(i, apology);
        self.end_tts(i);
    }

    fn on_tool_result(&mut self, call_id: &str, content: &str, now: Millis) {
        let Some(i) = self.gens.iter().position(|g| {
            g.round_tools
                .iter()
                .any(|(c, r)| c == call_id && r.is_none())
        }) else {
            return;
        };
        let g = &mut self.gens[i];
        if let Some(slot) = g.round_tools.iter_mut().find(|(c, _)| c == call_id) {
            slot.1 = Some(content.to_owned());
        }
        if !g.tools_running() {
            g.filler_at = None;
            if g.llm == LlmPhase::WaitingTools {
                self.finish_round(i, now);
            }
        }
    }

    /// Every tool of the round answered and its LLM stream ended: the results go into the
    /// history and the next LLM round starts (or, when the call is ending, the reply ends).
    fn finish_round(&mut self, i: usize, now: Millis) {
        let id = self.gens[i].id;
        let g = &mut self.gens[i];
        g.close_round(&mut self.history, &mut self.actions, TOOL_CANCELLED);
        g.tool_rounds += 1;
        if self.ending.is_some() {
            self.gens[i].llm = LlmPhase::Done;
            self.end_tts(i);
            return;
        }
        self.gens[i].llm = LlmPhase::Streaming;
        self.chunker.reset();
        let _ = now;
        self.actions.push_back(Action::StartLlm {
            generation: id,
            messages: self.history.snapshot(),
            speculative: false,
        });
    }

    /// A slow tool round: say the filler so the caller is not left in silence. It is part of
    /// the reply's audio (and transcript) but not of the LLM history.
    fn say_filler(&mut self, i: usize) {
        let filler = self.s.tool_filler_message.clone();
        let g = &mut self.gens[i];
        g.filler_at = None;
        if filler.trim().is_empty() {
            return;
        }
        let id = g.id;
        if g.spoken.push_text(&filler).is_empty() {
            return;
        }
        g.tts_started = true;
        self.actions.push_back(Action::TtsText {
            generation: id,
            text: filler,
        });
        self.actions.push_back(Action::TtsFlush {
            generation: id,
            end_of_generation: false,
        });
    }

    fn on_llm_done(&mut self, id: Generation, now: Millis) {
        let Some(i) = self.llm_gen(id) else {
            return;
        };
        self.llm_failures_in_row = 0;
        self.flush_chunker(i);
        if !self.gens[i].round_tools.is_empty() {
            if self.gens[i].tts_started {
                self.actions.push_back(Action::TtsFlush {
                    generation: id,
                    end_of_generation: false,
                });
            }
            if self.gens[i].tools_running() {
                self.gens[i].llm = LlmPhase::WaitingTools;
            } else {
                self.finish_round(i, now);
            }
            return;
        }
        self.gens[i].llm = LlmPhase::Done;
        if !self.gens[i].speculative
            || (self.s.speculative.stream_to_tts && self.gens[i].tts_started)
        {
            self.end_tts(i);
        } else if self.gens[i].spoken.text().is_empty() {
            self.gens[i].tts_done = true;
        }
    }

    /// No more text for generation `i`: flush the TTS, or mark it done when it got no text.
    fn end_tts(&mut self, i: usize) {
        let g = &mut self.gens[i];
        if g.tts_end_sent || g.tts_done {
            return;
        }
        if g.tts_started {
            g.tts_end_sent = true;
            let id = g.id;
            self.actions.push_back(Action::TtsFlush {
                generation: id,
                end_of_generation: true,
            });
        } else {
            g.tts_done = true;
        }
    }

    fn on_llm_failed(&mut self, id: Generation, now: Millis) {
        let Some(i) = self.llm_gen(id) else {
            return;
        };
        self.metrics.llm_failures += 1;
        if self.gens[i].speculative {
            // A failed guess costs nothing: the real request follows the final text.
            self.spec = None;
            self.drop_gen(id);
            return;
        }
        self.llm_failures_in_row += 1;
        let has_text = !self.gens[i].spoken.text().is_empty() || self.chunker.has_pending_text();
        if has_text {
            // Speak what arrived; the reply just ends early.
            self.flush_chunker(i);
            self.gens[i].llm = LlmPhase::Done;
            self.gens[i].close_round(&mut self.history, &mut self.actions, TOOL_MODEL_FAILED);
            self.end_tts(i);
            return;
        }
        self.gens[i].llm = LlmPhase::Done;
        self.gens[i].close_round(&mut self.history, &mut self.actions, TOOL_MODEL_FAILED);
        self.drop_gen(id);
        self.after_failure(now);
    }

    /// LLM or TTS failed `max_consecutive_failures` times in a row.
    fn failures_exhausted(&self) -> bool {
        let max = self.s.max_consecutive_failures.max(1);
        self.llm_failures_in_row >= max || self.tts_failures_in_row >= max
    }

    fn after_failure(&mut self, now: Millis) {
        if self.ending.is_some() {
            return;
        }
        if self.failures_exhausted() {
            let msg = Some(self.s.provider_error_message.clone());
            self.begin_ending(HangUpReason::LlmFailed, None, msg, true, now);
        } else {
            let msg = self.s.apology_message.clone();
            self.speak(Kind::Apology, msg, now);
        }
    }

    // ----------------------------------------------------------------------------------------
    // TTS audio and pacing

    fn on_tts_audio(
        &mut self,
        id: Generation,
        audio: &[u8],
        alignment: Option<&Alignment>,
        now: Millis,
    ) {
        let Some(mut i) = self.gen_index(id) else {
            return;
        };
        if self.gens[i].tts_done || audio.is_empty() {
            return;
        }
        if self.gens[i].kind != Kind::Cue && self.gens[i].bytes_in == 0 {
            // A reply's first audio supersedes any listening cue still in the queue.
            let cues: Vec<Generation> = self
                .gens
                .iter()
                .filter(|g| g.kind == Kind::Cue)
                .map(|g| g.id)
                .collect();
            for c in cues {
                self.drop_cue(c);
            }
            match self.gen_index(id) {
                Some(j) => i = j,
                None => return,
            }
        }
        // Audio must enter the re-framer in generation order: earlier generations must be done.
        if self.gens.iter().take(i).any(|g| !g.tts_done) {
            return;
        }
        let g = &mut self.gens[i];
        if g.metrics.tts_first_audio.is_none() {
            g.metrics.tts_first_audio = Some(now);
        }
        let before_ms = g.bytes_in / 8;
        g.bytes_in += audio.len() as u64;
        let ms = g.bytes_in / 8 - before_ms;
        g.spoken.push_audio(ms, alignment);
        self.reframer.push(audio);
    }

    fn on_tts_done(&mut self, id: Generation, now: Millis) {
        let Some(i) = self.gen_index(id) else {
            return;
        };
        if self.gens[i].tts_done {
            return;
        }
        if self.gens[i].llm != LlmPhase::Done {
            // More text will come (tools); a TTS that reports done early is taken at its word
            // only once the LLM is done.
            return;
        }
        self.pad_and_close(i);
        if self.gens[i].kind != Kind::Cue {
            self.tts_failures_in_row = 0;
        }
        self.start_queued(now);
    }

    fn pad_and_close(&mut self, i: usize) {
        let g = &mut self.gens[i];
        let rem = (g.bytes_in % FRAME_BYTES as u64) as usize;
        if rem != 0 {
            let pad = FRAME_BYTES - rem;
            self.reframer.push(&SILENCE_FRAME[..pad]);
            g.bytes_in += pad as u64;
        }
        g.tts_done = true;
    }

    /// The TTS failed for generation `id` (after the provider's own retries). Audio that did
    /// arrive still plays; a reply that produced none is dropped and apologised for. When the
    /// TTS keeps failing, or the goodbye itself cannot be synthesised, speech through our TTS
    /// is given up: the call hangs up at once and the telephony side speaks the goodbye, so
    /// the caller hears why the call ends either way.
    fn on_tts_failed(&mut self, id: Generation, now: Millis) {
        let Some(i) = self.gen_index(id) else {
            return;
        };
        self.metrics.tts_failures += 1;
        let kind = self.gens[i].kind;
        if kind == Kind::Cue || self.gens[i].speculative {
            if self.gens[i].speculative {
                self.spec = None;
            }
            self.drop_gen(id);
            return;
        }
        self.tts_failures_in_row += 1;
        if kind == Kind::Goodbye {
            let goodbye = self.gens[i].spoken.text().to_owned();
            self.hang_up_spoken_by_telephony(HangUpReason::TtsFailed, goodbye, now);
            return;
        }
        if self.gens[i].llm == LlmPhase::Streaming {
            self.actions.push_back(Action::CancelLlm { generation: id });
        }
        self.gens[i].llm = LlmPhase::Done;
        self.gens[i].close_round(&mut self.history, &mut self.actions, TOOL_CANCELLED);
        if self.gens[i].bytes_in == 0 {
            if let Some(g) = self.gens.remove(i)
                && g.in_history
            {
                self.history.remove_generation(g.id);
            }
        } else {
            // Keep what was synthesised; the history keeps what plays.
            let audio_ms = self.gens[i].spoken.audio_ms();
            let heard = self.gens[i].spoken.heard_end(audio_ms);
            if self.gens[i].in_history {
                self.history.keep_heard(id, heard);
            }
            self.pad_and_close(i);
        }
        if self.ending.is_some() {
            // The goodbye (if any) gets its own try; if that fails too, the telephony says it.
            self.start_queued(now);
            return;
        }
        if self.failures_exhausted() {
            let goodbye = self.s.provider_error_message.clone();
            self.hang_up_spoken_by_telephony(HangUpReason::TtsFailed, goodbye, now);
            return;
        }
        self.start_queued(now);
        let msg = self.s.apology_message.clone();
        self.speak(Kind::Apology, msg, now);
    }

    /// Our TTS cannot say `text`: stop everything now and hang up with the telephony side
    /// saying it. An ending already under way keeps its reason (and its transfer).
    fn hang_up_spoken_by_telephony(&mut self, reason: HangUpReason, text: String, now: Millis) {
        self.cut_all(now, false);
        self.queued.clear();
        let ending = self.ending.get_or_insert(Ending {
            reason,
            transfer_to: None,
            since: now,
            spoken_by_telephony: None,
        });
        if ending.transfer_to.is_none() {
            ending.spoken_by_telephony = Some(text).filter(|t| !t.trim().is_empty());
        }
        self.hang_up(now);
    }

    /// The STT is gone for good: the caller can no longer be heard, so nothing they say can be
    /// answered. What is being said finishes, then the bot says `stt_failure_message` and hangs
    /// up. During an ending already under way nothing changes (it needs no ears).
    fn on_stt_failed(&mut self, now: Millis) {
        if self.ending.is_some() {
            return;
        }
        // A turn in progress can never be completed now.
        self.classifying = None;
        let msg = Some(self.s.stt_failure_message.clone());
        self.begin_ending(HangUpReason::SttFailed, None, msg, false, now);
    }

    /// While a caller's sound is weighed, notes when the reply due to play next had its first
    /// frame ready and unheard: that wait is a turn-taking decision, reported in its metrics.
    fn note_held_reply(&mut self, now: Millis) {
        let next = self
            .gens
            .iter_mut()
            .find(|g| !g.tts_done || g.frames_out < g.frames_total());
        if let Some(g) = next
            && !g.speculative
            && g.first_frame_at.is_none()
            && g.frames_total() > 0
        {
            g.held_since.get_or_insert(now);
        }
    }

    /// Releases frames while Twilio's queue is under the lead; marks every
    /// `mark_interval_ms` and after each generation's last frame.
    fn pump(&mut self, now: Millis) {
        if matches!(self.barge, BargeState::Tentative { .. }) {
            self.note_held_reply(now);
            return;
        }
        let lead = self.lead_ms();
        let mark_every = (u64::from(self.s.mark_interval_ms).div_ceil(FRAME_MS)).max(1);
        let mut i = 0;
        while i < self.gens.len() {
            let g = &self.gens[i];
            if g.speculative {
                return;
            }
            if g.frames_out < g.frames_total() {
                let queued = self.playout_end.since(now);
                if queued + FRAME_MS > lead {
                    return;
                }
                let Some(mut frame) = self.reframer.pop_frame() else {
                    return;
                };
                self.gain.apply(&mut frame);
                let g = &mut self.gens[i];
                if g.first_frame_at.is_none() {
                    g.first_frame_at = Some(now);
                    g.stream_start_ms = self.stream_sent_ms;
                    if g.metrics.first_frame_sent.is_none() {
                        g.metrics.first_frame_sent = Some(now);
                        g.metrics.held_for_caller_ms = g.held_since.map_or(0, |t| now.since(t));
                    }
                }
                g.frames_out += 1;
                let frames_out = g.frames_out;
                self.playout_end = self.playout_end.max(now).plus(FRAME_MS);
                self.stream_sent_ms += FRAME_MS;
                self.actions.push_back(Action::SendMedia(frame));
                if frames_out.is_multiple_of(mark_every) {
                    self.send_mark(i, false);
                }
                continue;
            }
            if g.tts_done {
                if g.frames_out == 0 {
                    // Nothing to play (empty reply): done at once.
                    let id = g.id;
                    self.finish_up_to(id, now);
                    continue;
                }
                if !g.last_mark_sent {
                    self.send_mark(i, true);
                    self.gens[i].last_mark_sent = true;
                    self.gens[i].expected_end = self.playout_end.max(now);
                }
                i += 1;
                continue;
            }
            return;
        }
    }

    fn send_mark(&mut self, i: usize, last: bool) {
        let g = &mut self.gens[i];
        g.next_mark_seq += 1;
        let name = MarkName {
            generation: g.id,
            seq: g.next_mark_seq,
        };
        self.ledger.sent(PendingMark {
            name,
            generation_pos_ms: g.frames_out * FRAME_MS,
            stream_pos_ms: self.stream_sent_ms,
            last,
        });
        self.actions.push_back(Action::SendMark(name));
    }

    fn on_mark(&mut self, name: &str, now: Millis) {
        let Some(m) = self.ledger.echoed(name) else {
            return;
        };
        let queued = self.stream_sent_ms.saturating_sub(m.stream_pos_ms);
        self.playout_end = now.plus(queued);
        if let Some(i) = self.gen_index(m.name.generation) {
            let g = &mut self.gens[i];
            g.played_ms = g.played_ms.max(m.generation_pos_ms);
            if m.last {
                self.finish_up_to(m.name.generation, now);
            }
        }
    }

    /// Generation `id` (and any before it) finished playing.
    fn finish_up_to(&mut self, id: Generation, now: Millis) {
        while let Some(front) = self.gens.front() {
            if front.id > id {
                break;
            }
            let Some(mut g) = self.gens.pop_front() else {
                break;
            };
            self.ledger.forget(g.id);
            if g.kind == Kind::Cue {
                continue;
            }
            g.metrics.playback_done = Some(now);
            if g.frames_out > 0 {
                self.record_transcript(TranscriptEntry {
                    speaker: Speaker::Assistant,
                    text: g.spoken.text().to_owned(),
                    start: g.first_frame_at.unwrap_or(now),
                    end: now,
                    interrupted: false,
                    backchannel: false,
                    generation: Some(g.id),
                });
            }
            if g.kind == Kind::Reply {
                self.actions
                    .push_back(Action::Record(Record::Turn(g.metrics.clone())));
            }
            self.last_activity = now;
        }
        self.after_bot_done(now);
    }

    fn after_bot_done(&mut self, now: Millis) {
        self.start_queued(now);
        if self.bot_busy() {
            return;
        }
        if self.user.state == UserState::Idle || matches!(self.barge, BargeState::Tentative { .. })
        {
            // Nothing left to interrupt: speech in progress is simply the caller's turn (a
            // backchannel that started over the bot is still recognised at commit).
            self.barge = BargeState::None;
        }
        if self.user.state == UserState::Idle
            && let Some(d) = self.deferred.take()
        {
            self.finish_commit(d.text, d.metrics, now);
        }
        self.maybe_finish_ending(now);
    }

    // ----------------------------------------------------------------------------------------
    // Listening cues

    fn maybe_cue(&mut self, now: Millis) {
        let b = &self.s.backchannel;
        if !b.enabled || self.ending.is_some() || self.bot_busy() || self.spec.is_some() {
            return;
        }
        if self.gens.iter().any(|g| g.kind == Kind::Cue) || self.user.is_empty() {
            return;
        }
        let interval = b.interval_ms();
        let Some(start) = self.user.started_at else {
            return;
        };
        if now.since(start) < interval || self.last_cue_at.is_some_and(|t| now.since(t) < interval)
        {
            return;
        }
        let Some(cue) = self.lexicon.cue(self.cue_no) else {
            return;
        };
        let cue = cue.to_owned();
        self.cue_no += 1;
        self.last_cue_at = Some(now);
        self.metrics.bot_backchannels += 1;
        let id = self.new_gen_id();
        let mut g = Gen::new(id, Kind::Cue, now);
        g.spoken.push_text(&cue);
        g.tts_started = true;
        g.tts_end_sent = true;
        self.actions.push_back(Action::TtsText {
            generation: id,
            text: cue,
        });
        self.actions.push_back(Action::TtsFlush {
            generation: id,
            end_of_generation: true,
        });
        self.gens.push_back(g);
    }

    /// Stops listening cues at once (the caller speaks again, or a reply starts).
    fn cancel_cues(&mut self) {
        let cues: Vec<Generation> = self
            .gens
            .iter()
            .filter(|g| g.kind == Kind::Cue)
            .map(|g| g.id)
            .collect();
        for id in cues {
            if let Some(i) = self.gen_index(id)
                && self.gens[i].frames_out > 0
                && self.played_ms(&self.gens[i], self.now) < self.gens[i].frames_out * FRAME_MS
            {
                self.actions.push_back(Action::SendClear);
                self.playout_end = self.now;
                self.ledger.clear(id);
            }
            self.drop_cue(id);
        }
    }

    fn drop_cue(&mut self, id: Generation) {
        let Some(i) = self.gen_index(id) else {
            return;
        };
        let Some(g) = self.gens.remove(i) else {
            return;
        };
        if !g.tts_done {
            self.actions.push_back(Action::TtsCancel { generation: id });
        }
        let unsent = g.frames_total().saturating_sub(g.frames_out) * FRAME_BYTES as u64
            + (g.bytes_in % FRAME_BYTES as u64);
        if unsent > 0 && i == 0 {
            // The cue's bytes are at the front of the re-framer; drop exactly those.
            let mut left = unsent as usize;
            while left >= FRAME_BYTES {
                let _ = self.reframer.pop_frame();
                left -= FRAME_BYTES;
            }
            if left > 0 && self.gens.is_empty() {
                self.reframer.clear();
            }
        }
        self.ledger.forget(id);
    }

    // ----------------------------------------------------------------------------------------
    // DTMF, idle, ending

    fn on_dtmf(&mut self, digit: char, now: Millis) {
        self.last_activity = now;
        let was_idle = self.user.state == UserState::Idle;
        let timeout = self.utterance_timeout_ms();
        self.user
            .push_text(&format!("[DTMF {digit}]"), now, timeout);
        if was_idle {
            self.barge_decision(now, now);
        }
        if digit == '#' {
            self.commit_user(now);
        }
    }

    /// Queues `digits` as DTMF tones after whatever is queued to say; characters that are not
    /// DTMF digits (or `,` pauses) make the whole request a no-op (the tool checks first).
    fn play_dtmf(&mut self, digits: &str, now: Millis) {
        if digits.is_empty() || DtmfTones::new(digits, TONE_MS, GAP_MS).is_err() {
            return;
        }
        self.last_activity = now;
        self.speak(Kind::Tones, digits.to_owned(), now);
    }

    /// Renders the tones of a queued [`Kind::Tones`] item straight into the re-framer, frame
    /// by frame through the same path as TTS audio, so they are paced, marked and cleared like
    /// speech.
    fn start_tones(&mut self, digits: &str, now: Millis) {
        let Ok(mut tones) = DtmfTones::new(digits, TONE_MS, GAP_MS) else {
            return;
        };
        let id = self.new_gen_id();
        let mut g = Gen::new(id, Kind::Tones, now);
        g.tts_started = true;
        g.tts_end_sent = true;
        self.gens.push_back(g);
        let mut frame = [MULAW_SILENCE; FRAME_BYTES];
        loop {
            let n = tones.fill(&mut frame);
            if n == 0 {
                break;
            }
            self.on_tts_audio(id, &frame[..n], None, now);
        }
        if let Some(i) = self.gen_index(id) {
            self.pad_and_close(i);
        }
    }

    fn on_idle(&mut self, now: Millis) {
        self.last_activity = now;
        let msg = self.s.idle_message.clone().filter(|m| !m.trim().is_empty());
        match msg {
            Some(m) if self.idle_count < self.s.max_idle_messages => {
                self.idle_count += 1;
                self.metrics.idle_messages += 1;
                self.speak(Kind::Idle, m, now);
            }
            _ => {
                let end = self.s.end_call_message.clone();
                self.begin_ending(HangUpReason::IdleTimeout, None, end, false, now);
            }
        }
    }

    /// Starts ending the call: with `cut`, whatever the bot is saying stops now; the goodbye
    /// (if any) is spoken and the hang-up (or transfer) follows its last mark.
    fn begin_ending(
        &mut self,
        reason: HangUpReason,
        transfer_to: Option<String>,
        message: Option<String>,
        cut: bool,
        now: Millis,
    ) {
        if self.ending.is_some() {
            return;
        }
        if cut {
            self.cut_all(now, true);
            self.queued.clear();
        }
        if let Some(spec) = self.spec.take() {
            self.drop_gen(spec.generation);
        }
        self.spec_deadline = None;
        self.ending = Some(Ending {
            reason,
            transfer_to,
            since: now,
            spoken_by_telephony: None,
        });
        if let Some(m) = message.filter(|m| !m.trim().is_empty()) {
            self.speak(Kind::Goodbye, m, now);
        }
        self.maybe_finish_ending(now);
    }

    fn maybe_finish_ending(&mut self, now: Millis) {
        if self.ending.is_some()
            && !self.ended
            && self.gens.iter().all(|g| g.kind == Kind::Cue)
            && self.queued.is_empty()
        {
            self.hang_up(now);
        }
    }

    fn hang_up(&mut self, now: Millis) {
        if self.ended {
            return;
        }
        let Some(e) = self.ending.take() else {
            return;
        };
        self.release_gens();
        let _ = now;
        self.actions
            .push_back(Action::Record(Record::Call(self.metrics.clone())));
        match e.transfer_to {
            Some(to) => self.actions.push_back(Action::Transfer { to }),
            None => self.actions.push_back(Action::HangUp {
                reason: e.reason,
                spoken_by_telephony: e.spoken_by_telephony,
            }),
        }
        self.ended = true;
    }

    /// The call is over for the core: every generation's LLM stream, tools and TTS stop.
    fn release_gens(&mut self) {
        for g in self.gens.drain(..) {
            if g.llm == LlmPhase::Streaming {
                self.actions
                    .push_back(Action::CancelLlm { generation: g.id });
            }
            if g.tools_running() {
                self.actions
                    .push_back(Action::CancelTools { generation: g.id });
            }
            if !g.tts_done && g.tts_started {
                self.actions
                    .push_back(Action::TtsCancel { generation: g.id });
            }
        }
    }

    fn on_caller_hung_up(&mut self, now: Millis) {
        let live = self.gens.iter().any(|g| g.kind != Kind::Cue);
        if live {
            self.cut_all(now, true);
        } else {
            self.cut_all(now, false);
        }
        // The line is gone: a clear would go nowhere.
        if let Some(pos) = self.actions.iter().rposition(|a| *a == Action::SendClear) {
            self.actions.remove(pos);
        }
        if !self.user.is_empty() {
            let (text, _) = (self.user.text(), ());
            let start = self.user.started_at.unwrap_or(now);
            self.user = UserTurn::default();
            self.record_transcript(TranscriptEntry {
                speaker: Speaker::User,
                text,
                start,
                end: now,
                interrupted: false,
                backchannel: false,
                generation: None,
            });
        }
        self.actions
            .push_back(Action::Record(Record::Call(self.metrics.clone())));
        self.ended = true;
    }

    fn record_transcript(&mut self, e: TranscriptEntry) {
        if e.text.trim().is_empty() {
            return;
        }
        self.actions
            .push_back(Action::Record(Record::Transcript(e)));
    }
}
