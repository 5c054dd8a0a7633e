//! The sans-IO call core: timestamped events in, actions and the next deadline out.
//!
//! [`CallCore`] owns all the decisions of one call — turn-taking and interruption
//! ([`crate::turn`]), the history trimmed to what was heard ([`crate::dialog`]), outbound pacing
//! with marks, idle prompts, the call length limit, tools, provider failures — and none of the
//! IO. The runtime (one task per call) drives it like quinn-proto or str0m:
//!
//! ```
//! use switchboard_core::call::{Action, CallCore, CallSettings, Event, Millis};
//! let mut core = CallCore::new(CallSettings::default(), Millis(0));
//! core.handle(Event::CallStarted, Millis(0));
//! let frame = [0xFFu8; 160];
//! core.handle(Event::CallerAudio(&frame), Millis(20));
//! while let Some(action) = core.poll_action() {
//!     match action {
//!         Action::SendMedia(_frame) => { /* base64 → Twilio media */ }
//!         _ => { /* carry out */ }
//!     }
//! }
//! // Sleep until `core.poll_timeout()` (or the next event), then:
//! core.handle(Event::Timeout, Millis(40));
//! ```
//!
//! Time is [`Millis`] since the call started (the runtime converts its clock once per event).
//! Events of older generations (a cancelled LLM stream still delivering, a cleared reply's marks)
//! are recognised by their [`Generation`] and ignored.

mod engine;
pub mod settings;
pub mod time;
pub mod trace;

pub use crate::dialog::{
    Alignment, Generation, MarkName, Message, Role, ToolCall, TranscriptEntry,
};
pub use crate::turn::{SttWord, Transcript};
pub use engine::CallCore;
pub use settings::{
    BotBackchannelSettings, CallSettings, InterruptionMode, InterruptionSettings,
    SpeculativeSettings,
};
pub use time::Millis;

use crate::audio::FRAME_BYTES;

/// Something that happened, fed to [`CallCore::handle`] with the time it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// The media stream started (Twilio `start`): the disclosure and the welcome are spoken.
    CallStarted,
    /// Caller audio: µ-law 8 kHz, normally one 160-byte frame (any length is accepted). The
    /// local VAD runs on it; nothing is allocated per frame.
    CallerAudio(&'a [u8]),
    /// The STT provider's own speech-start signal (Deepgram `SpeechStarted`, Flux
    /// `StartOfTurn`): an onset when the local VAD has not seen one.
    SttSpeechStarted,
    /// Interim words of the segment being recognised (replaces the previous interim).
    SttInterim(Transcript),
    /// A final segment; `speech_final` is the provider's end-of-turn (Deepgram endpointing).
    SttFinal {
        /// The segment's text and words.
        transcript: Transcript,
        /// The provider detected the end of the utterance.
        speech_final: bool,
    },
    /// Deepgram `UtteranceEnd`: end of the utterance after `utterance_end_ms` of no words.
    SttUtteranceEnd,
    /// Flux `EndOfTurn`: the turn is over; the transcript is the whole turn.
    SttEndOfTurn(Transcript),
    /// Flux `EagerEndOfTurn`: the turn has probably ended (the transcript is the whole turn so
    /// far). Taken as interim words; with `speculative_config.enable_speculative_llm` the
    /// speculative reply starts at once on it (no debounce, no minimum word count).
    SttEagerEndOfTurn(Transcript),
    /// Flux `TurnResumed`: the caller went on after an `EagerEndOfTurn`; a speculative reply
    /// started on it is cancelled.
    SttTurnResumed,
    /// A text delta of an LLM reply.
    LlmText {
        /// The generation of the [`Action::StartLlm`] that produced it.
        generation: Generation,
        /// The text.
        delta: &'a str,
    },
    /// The LLM asked for a tool call (complete, arguments assembled).
    LlmToolCall {
        /// The generation of the request.
        generation: Generation,
        /// The call; answered with [`Event::ToolResult`].
        call: ToolCall,
    },
    /// The LLM stream ended normally.
    LlmDone {
        /// The generation of the request.
        generation: Generation,
    },
    /// The LLM stream failed (after the runtime's fallbacks).
    LlmFailed {
        /// The generation of the request.
        generation: Generation,
        /// Why (for logs; not spoken).
        reason: &'a str,
    },
    /// Synthesised audio, µ-law 8 kHz (any chunk size), with the TTS provider's character
    /// alignment when it gives one (times relative to this chunk).
    TtsAudio {
        /// The generation of the [`Action::TtsText`] it speaks.
        generation: Generation,
        /// µ-law bytes.
        audio: &'a [u8],
        /// Character timings of this chunk.
        alignment: Option<&'a Alignment>,
    },
    /// All audio of a generation has arrived (after its `TtsFlush { end_of_generation: true }`).
    TtsDone {
        /// The generation.
        generation: Generation,
    },
    /// The TTS failed for a generation (after the runtime's fallbacks).
    TtsFailed {
        /// The generation.
        generation: Generation,
        /// Why (for logs).
        reason: &'a str,
    },
    /// The STT failed for good: its driver's own reconnects gave up, so the caller can no longer
    /// be heard. The core says `stt_failure_message` (the TTS still works) and hangs up with
    /// [`HangUpReason::SttFailed`].
    SttFailed {
        /// Why (for logs; not spoken).
        reason: &'a str,
    },
    /// Twilio echoed a mark: the audio before it has played (or was cleared).
    MarkPlayed(&'a str),
    /// The caller pressed a key (`0-9 * # A-D`); it becomes part of the caller's turn, `#`
    /// ends the turn at once.
    Dtmf(char),
    /// Send `digits` (`0-9 * # A-D`, `,` = 500 ms pause) into the call as in-band DTMF tones
    /// (ITU-T Q.23 frequencies, 100 ms tone + 100 ms pause each), after what is already
    /// queued to say; played out like speech (paced, marked, cleared by a barge-in). Anything
    /// that is not a digit makes it a no-op. The `dtmf_solver` tool uses it.
    PlayDtmf {
        /// The digits.
        digits: &'a str,
    },
    /// Result of an [`Action::RunTool`]; a result for a call the core no longer waits for
    /// (cancelled, unknown) is ignored. When the last tool of a round answers and the LLM
    /// stream of that round has ended, the next LLM round starts with the results.
    ToolResult {
        /// The tool call's id.
        call_id: &'a str,
        /// The result text (usually JSON).
        content: &'a str,
    },
    /// End the call (an `end_call` tool, the API): the bot finishes what it is saying, says
    /// `message` (or `end_call_message` when `None`), then [`Action::HangUp`].
    HangUpRequested {
        /// What to say before hanging up; `None` uses `end_call_message`.
        message: Option<String>,
    },
    /// Transfer the call: the bot finishes what it is saying, says `message`, then
    /// [`Action::Transfer`].
    TransferRequested {
        /// Where to (phone number or SIP URI).
        to: String,
        /// What to say first.
        message: Option<String>,
    },
    /// Warm-transfer the call (the `transfer_call` tool with `transfer_type: warm`): the tool
    /// call `tool_call_id` stays open while the caller hears `message` then hold audio and
    /// [`Action::StartWarmTransfer`] dials and briefs the agent. Its outcome
    /// ([`Event::WarmTransferResult`], or the core's own wait timeout) decides: accepted ends
    /// the call with [`Action::CompleteWarmTransfer`]; anything else says
    /// `unavailable_message` and gives the LLM a failed tool result. The tool's own
    /// [`Event::ToolResult`] for that call is then ignored (it stands only when the transfer
    /// could not start, e.g. the tool call is no longer waiting).
    WarmTransferRequested {
        /// The `transfer_call` tool call this transfer answers.
        tool_call_id: String,
        /// The agent's number (E.164).
        to: String,
        /// Said to the caller before the hold audio (`None`: nothing).
        message: Option<String>,
        /// Said to the caller when the agent does not take the call (`None`:
        /// [`settings::DEFAULT_TRANSFER_UNAVAILABLE`]).
        unavailable_message: Option<String>,
    },
    /// What became of the agent's leg of an [`Action::StartWarmTransfer`]; one for another
    /// (older, cancelled) transfer is ignored.
    WarmTransferResult {
        /// The transfer it answers.
        transfer: u64,
        /// Accepted, declined, busy, …
        outcome: WarmTransferOutcome,
    },
    /// The verdict on an [`Action::ClassifyUtterance`]: whether the caller's words sound
    /// unfinished (the turn then waits `incomplete_extra_wait_ms` for more).
    UtteranceClassified {
        /// The request it answers.
        request: u64,
        /// The utterance sounds unfinished.
        incomplete: bool,
    },
    /// The caller hung up (Twilio `stop`): the core records what was heard and stops.
    CallerHungUp,
    /// The deadline from [`CallCore::poll_timeout`] passed.
    Timeout,
}

/// Something the runtime must do, from [`CallCore::poll_action`], in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send one 20 ms µ-law frame to Twilio (volume already applied).
    SendMedia([u8; FRAME_BYTES]),
    /// Send a mark to Twilio; its echo comes back as [`Event::MarkPlayed`] with
    /// `name.to_string()`.
    SendMark(MarkName),
    /// Send `clear` to Twilio: drop all buffered audio (confirmed barge-in).
    SendClear,
    /// Open an LLM stream for `generation` with these messages; deltas come back as
    /// [`Event::LlmText`]. One generation may get several (after tool results).
    StartLlm {
        /// The bot generation the reply belongs to.
        generation: Generation,
        /// The history to send (system prompt first).
        messages: Vec<Message>,
        /// Started on interim text; may be cancelled when the final text differs.
        speculative: bool,
    },
    /// Abort the LLM stream of `generation`; ignore anything it still delivers.
    CancelLlm {
        /// The generation.
        generation: Generation,
    },
    /// Speak this chunk (TTS input) as part of `generation`; a new generation opens a new TTS
    /// context/session.
    TtsText {
        /// The generation.
        generation: Generation,
        /// A speakable chunk (sentence or clause).
        text: String,
    },
    /// Generate what was given so far now. With `end_of_generation` no more text follows: the
    /// runtime reports [`Event::TtsDone`] once the last audio of the generation has arrived.
    TtsFlush {
        /// The generation.
        generation: Generation,
        /// No more text for this generation.
        end_of_generation: bool,
    },
    /// Abort the TTS of `generation` (ElevenLabs: close the context; Aura: `Clear`).
    TtsCancel {
        /// The generation.
        generation: Generation,
    },
    /// Ask a lightweight LLM whether `text` (a short caller utterance) is an unfinished thought;
    /// answer with [`Event::UtteranceClassified`]. The turn holds until the verdict or
    /// `incomplete_llm_timeout_ms`, whichever comes first; a late verdict is ignored.
    ClassifyUtterance {
        /// Request id, echoed in the verdict.
        request: u64,
        /// What the caller said so far in this turn.
        text: String,
    },
    /// Run a tool off the call task; answer with [`Event::ToolResult`] (an error result the
    /// LLM can talk about when the tool failed). Several may run at once; the call goes on
    /// meanwhile.
    RunTool {
        /// The generation that asked.
        generation: Generation,
        /// The call.
        call: ToolCall,
    },
    /// Stop the tools of `generation` that are still running (the caller cut the reply off, or
    /// the reply was dropped): their results, if any still come, are ignored.
    CancelTools {
        /// The generation whose tools stop.
        generation: Generation,
    },
    /// Hang up the call (Twilio REST); the core is finished.
    HangUp {
        /// Why (the call record's `ended_reason`).
        reason: HangUpReason,
        /// Words the telephony side must speak itself before hanging up (Twilio `<Say>` then
        /// `<Hangup/>`), because our TTS could not: the caller still hears why the call ends.
        /// `None`: whatever was to be said has already played.
        spoken_by_telephony: Option<String>,
    },
    /// Dial the agent of a warm transfer off the call task: brief them with a short summary of
    /// `messages` (the conversation so far), let them accept or decline, report with
    /// [`Event::WarmTransferResult`]. The caller meanwhile hears hold audio from the core.
    StartWarmTransfer {
        /// Id of this transfer in the call (echoed in the result).
        transfer: u64,
        /// The agent's number (E.164).
        to: String,
        /// The history so far, for the briefing.
        messages: Vec<Message>,
    },
    /// Stop warm transfer `transfer`: hang up or cancel the agent's leg (the caller spoke,
    /// hung up, or the wait timed out). A result that still comes is ignored.
    CancelWarmTransfer {
        /// The transfer.
        transfer: u64,
    },
    /// The agent accepted warm transfer `transfer`: join the caller to the agent (Twilio
    /// conference); the core is finished (the call record says `transferred_warm`).
    CompleteWarmTransfer {
        /// The transfer.
        transfer: u64,
    },
    /// Transfer the call (Twilio REST redirect); the core is finished.
    Transfer {
        /// Where to.
        to: String,
    },
    /// Persist something (transcript line, turn metrics, call metrics).
    Record(Record),
}

/// How the agent's leg of a warm transfer ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum WarmTransferOutcome {
    /// The agent took the call (pressed 1 / said yes, or answered when no confirmation is
    /// asked).
    Accepted,
    /// The agent answered and declined (or gave no answer to the prompt, or hung up).
    Declined,
    /// The agent's line was busy.
    Busy,
    /// Nobody answered (Twilio `no-answer`, or the core's wait timeout).
    NoAnswer,
    /// The leg could not be placed (Twilio `failed`, a REST error).
    Failed,
}

impl WarmTransferOutcome {
    /// Stable snake_case name (tool results, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Failed => "failed",
        }
    }
}

/// Why the engine hung up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HangUpReason {
    /// Asked to ([`Event::HangUpRequested`]).
    Completed,
    /// `idle_timeout` passed `max_idle_messages` + 1 times.
    IdleTimeout,
    /// `max_call_length` reached.
    MaxCallLength,
    /// The STT failed for good ([`Event::SttFailed`]): the caller could no longer be heard.
    SttFailed,
    /// The TTS failed `max_consecutive_failures` times in a row: the bot could no longer speak.
    TtsFailed,
    /// The LLM failed `max_consecutive_failures` turns in a row (after its fallbacks).
    LlmFailed,
}

impl HangUpReason {
    /// Stable snake_case name for call records (`ended_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::IdleTimeout => "idle_timeout",
            Self::MaxCallLength => "max_call_length",
            Self::SttFailed => "stt_failed",
            Self::TtsFailed => "tts_failed",
            Self::LlmFailed => "llm_failed",
        }
    }

    /// Whether a provider failure ended the call (the call record's status is then `failed`).
    pub fn is_provider_failure(self) -> bool {
        matches!(self, Self::SttFailed | Self::TtsFailed | Self::LlmFailed)
    }
}

/// What [`Action::Record`] carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A transcript line, as the call goes.
    Transcript(TranscriptEntry),
    /// Timings of one finished (played, interrupted or dropped) bot reply.
    Turn(TurnMetrics),
    /// Call-level counters, once, when the call ends.
    Call(CallMetrics),
    /// A warm transfer is over: what its `transfer_call` tool call finally gave (the tool's own
    /// result only said the caller holds), for the call's tool-execution record.
    WarmTransferEnded {
        /// The `transfer_call` tool call the transfer answered.
        tool_call_id: String,
        /// The agent's verdict; `None` when the transfer was abandoned (the reply waiting for it
        /// was cut off, or the call ended) before any.
        outcome: Option<WarmTransferOutcome>,
        /// What the LLM got as the tool's result (`None`: nothing, the transfer was accepted or
        /// abandoned).
        result: Option<String>,
    },
}

/// Virtual-time stamps of one caller turn and the reply to it (`None` = did not happen).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnMetrics {
    /// 1-based turn number in the call.
    pub turn: u32,
    /// The reply's generation.
    pub generation: Option<Generation>,
    /// Caller speech onset (VAD).
    pub user_speech_start: Option<Millis>,
    /// Caller speech end (VAD).
    pub user_speech_end: Option<Millis>,
    /// Last STT final of the turn.
    pub stt_final: Option<Millis>,
    /// The turn was committed.
    pub committed: Option<Millis>,
    /// The LLM request was issued (the speculative start when speculation paid off).
    pub llm_request: Option<Millis>,
    /// First LLM text delta.
    pub llm_first_token: Option<Millis>,
    /// First TTS audio byte.
    pub tts_first_audio: Option<Millis>,
    /// First frame sent to Twilio.
    pub first_frame_sent: Option<Millis>,
    /// ms the first frame was ready but held before `first_frame_sent` because the caller was
    /// making a sound (a cough, the start of more words) and nothing of the reply was heard
    /// yet: a turn-taking wait, not engine time. 0 when it went out as soon as it was ready.
    pub held_for_caller_ms: u64,
    /// Last mark echoed (reply fully played).
    pub playback_done: Option<Millis>,
    /// The caller cut the reply off.
    pub interrupted: bool,
    /// The reply came from a speculative LLM request that was kept.
    pub speculative: bool,
}

/// Call-level counters for the load harness and `/api/v1/calls/{id}/metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallMetrics {
    /// Caller turns committed.
    pub turns: u32,
    /// Confirmed barge-ins that cut audible bot audio.
    pub interruptions: u32,
    /// For each interruption, ms from the caller's speech onset to `clear` sent.
    pub interruption_reaction_ms: Vec<u64>,
    /// Tentative barge-ins that were not confirmed (paused, then resumed).
    pub false_interruptions: u32,
    /// Caller backchannels while the bot talked (kept in the transcript, not turns).
    pub backchannels_ignored: u32,
    /// Replies cancelled before they were heard because the caller went on talking.
    pub premature_endpoints: u32,
    /// Speculative LLM requests started.
    pub speculative_started: u32,
    /// Speculative replies kept.
    pub speculative_hits: u32,
    /// ms saved by kept speculative replies (final commit − speculative start).
    pub speculative_ms_saved: u64,
    /// Listening cues the bot spoke.
    pub bot_backchannels: u32,
    /// Idle prompts spoken.
    pub idle_messages: u32,
    /// LLM failures reported.
    pub llm_failures: u32,
    /// TTS failures reported.
    pub tts_failures: u32,
}
