//! The call's flight recorder: what the core was fed and what it decided, for replay.
//!
//! [`TracedCore`] wraps a [`CallCore`]; with a trace on, every [`Event`] it is fed is kept as a
//! [`TracedEvent`] with its call time in **ms** (the core's own [`Millis`], so a replay feeds
//! exactly what the core saw), and every action it returns is kept as a [`Decision`] (media
//! frames only counted). The runtime drives it exactly like a `CallCore`; with the trace off it
//! only forwards.
//!
//! Caller audio is kept in the trace itself (µ-law bytes appended to one buffer; a
//! [`TraceEvent::CallerAudio`] says how many of them it took) rather than referenced in the
//! recording files: those may be missing (`record_user_audio: false`), resampled or MP3, and the
//! VAD must see the very bytes it saw. TTS audio is kept as its length and alignment only (the
//! core never looks at its content; a replay feeds silence of that length).
//!
//! Bounds: the trace stops at [`MAX_TRACE_EVENTS`] events or [`MAX_TRACE_AUDIO_BYTES`] of caller
//! audio (2 h), whichever comes first, and says so ([`Trace::truncated`]); what was recorded up
//! to there still replays. Memory grows in fixed chunks (no copy of what is recorded), so the
//! per-frame cost is a 160-byte copy and an amortised `Vec` push, never an allocation per frame.
//!
//! A long call's trace need not stay in memory: [`TracedCore::drain_trace`] hands over what was
//! recorded since the last drain (a [`TraceSlice`]: events, decisions, caller audio), for the
//! runtime to spool to disk off the call task as JSON lines ([`TraceSlice::write_json_lines`])
//! and raw audio; at the end [`Trace::to_bytes_after`] encodes the spooled slices in front of
//! the rest, byte for byte what [`Trace::to_bytes`] gives for the whole trace, without parsing
//! them back.
//!
//! Encoding ([`Trace::to_bytes`]): the magic `SBTRACE1`, the length of a JSON document (u32,
//! little-endian), the JSON (settings, events, decisions), then the caller audio. The store
//! keeps it compressed.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::settings::CallSettings;
use super::time::Millis;
use super::{Action, CallCore, Event, Message, WarmTransferOutcome};
use crate::dialog::{Alignment, Generation, ToolCall};
use crate::turn::{SttWord, Transcript};

/// Version of the trace format written by this build.
pub const TRACE_FORMAT_VERSION: u32 = 1;
/// Most events one trace keeps (about 2 h of a busy call).
pub const MAX_TRACE_EVENTS: usize = 600_000;
/// Most caller audio one trace keeps, bytes: 2 h of 8 kHz µ-law.
pub const MAX_TRACE_AUDIO_BYTES: usize = 2 * 60 * 60 * 8000;
/// Growth step of the caller audio buffer, bytes (1 s): a trace drained every second keeps one
/// such chunk's allocation between drains, not more.
const AUDIO_CHUNK_BYTES: usize = 8_000;
/// First bytes of an encoded trace.
const MAGIC: &[u8; 8] = b"SBTRACE1";

/// Why an encoded trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// Not a trace, or cut short.
    #[error("not a call trace (bad header or length)")]
    BadHeader,
    /// The JSON part does not parse.
    #[error("call trace document: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by a newer build.
    #[error("call trace format {0} is not supported (this build reads {TRACE_FORMAT_VERSION})")]
    Version(u32),
    /// The events take more caller audio than the trace holds.
    #[error("call trace audio is shorter than its events say")]
    AudioShort,
}

/// A call's recorded inputs and decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// [`TRACE_FORMAT_VERSION`] when written.
    pub version: u32,
    /// The settings the core was created with.
    pub settings: CallSettings,
    /// Every event fed to the core, in order.
    pub events: Vec<TracedEvent>,
    /// Every decision (action) it returned, in order.
    pub decisions: Vec<Decision>,
    /// Media frames sent after the last decision.
    pub trailing_frames: u64,
    /// The trace stopped before the call ended: at its bounds, or (a trace recovered from a
    /// crashed process's spool) where the spool ended.
    pub truncated: bool,
    /// Caller audio (8 kHz µ-law), the bytes of all [`TraceEvent::CallerAudio`] in order.
    #[serde(skip)]
    pub caller_audio: Vec<u8>,
}

/// What a trace recorded since it was last drained ([`TracedCore::drain_trace`]): the part of a
/// trace that grows with the call's length.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TraceSlice {
    /// Events, in order.
    pub events: Vec<TracedEvent>,
    /// Decisions, in order.
    pub decisions: Vec<Decision>,
    /// The caller audio of those events' [`TraceEvent::CallerAudio`], in order.
    pub caller_audio: Vec<u8>,
}

impl TraceSlice {
    /// Appends this slice's events to `events` and its decisions to `decisions` as JSON lines
    /// (one compact document and a `\n` each): the spool format [`SpooledSlices`] holds.
    pub fn write_json_lines(
        &self,
        events: &mut Vec<u8>,
        decisions: &mut Vec<u8>,
    ) -> Result<(), TraceError> {
        for e in &self.events {
            serde_json::to_writer(&mut *events, e)?;
            events.push(b'\n');
        }
        for d in &self.decisions {
            serde_json::to_writer(&mut *decisions, d)?;
            decisions.push(b'\n');
        }
        Ok(())
    }
}

/// Slices drained from a trace, as the runtime spooled them: the JSON lines of
/// [`TraceSlice::write_json_lines`], in order, and the caller audio, in order.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpooledSlices<'a> {
    /// The events' JSON lines.
    pub events: &'a [u8],
    /// The decisions' JSON lines.
    pub decisions: &'a [u8],
    /// The caller audio.
    pub caller_audio: &'a [u8],
}

/// One input event and when it was fed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TracedEvent {
    /// Call time passed to [`CallCore::handle`], ms.
    #[serde(rename = "t")]
    pub at_ms: u64,
    /// The event.
    #[serde(rename = "e")]
    pub event: TraceEvent,
}

/// An owned, serialisable [`Event`] (same variants; audio by length).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // Each variant is the `Event` of the same name.
pub enum TraceEvent {
    CallStarted,
    /// The next `bytes` bytes of [`Trace::caller_audio`].
    CallerAudio {
        bytes: u32,
    },
    SttSpeechStarted,
    SttInterim(Box<TraceTranscript>),
    SttFinal {
        transcript: Box<TraceTranscript>,
        speech_final: bool,
    },
    SttUtteranceEnd,
    SttEndOfTurn(Box<TraceTranscript>),
    SttEagerEndOfTurn(Box<TraceTranscript>),
    SttTurnResumed,
    LlmText {
        generation: u64,
        delta: String,
    },
    LlmToolCall {
        generation: u64,
        call: Box<TraceToolCall>,
    },
    LlmDone {
        generation: u64,
    },
    LlmFailed {
        generation: u64,
        reason: String,
    },
    /// `bytes` of synthesised audio (replayed as silence: the core never reads its content).
    TtsAudio {
        generation: u64,
        bytes: u32,
        alignment: Option<Box<TraceAlignment>>,
    },
    TtsDone {
        generation: u64,
    },
    TtsFailed {
        generation: u64,
        reason: String,
    },
    SttFailed {
        reason: String,
    },
    MarkPlayed(String),
    Dtmf(char),
    PlayDtmf {
        digits: String,
    },
    ToolResult {
        call_id: String,
        content: String,
    },
    HangUpRequested {
        message: Option<String>,
    },
    TransferRequested {
        to: String,
        message: Option<String>,
    },
    WarmTransferRequested(Box<TraceWarmTransfer>),
    WarmTransferResult {
        transfer: u64,
        outcome: WarmTransferOutcome,
    },
    UtteranceClassified {
        request: u64,
        incomplete: bool,
    },
    CallerHungUp,
    Timeout,
}

/// An [`Event::WarmTransferRequested`], boxed so that the rare transfer keeps every traced
/// event small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceWarmTransfer {
    /// The `transfer_call` tool call.
    pub tool_call_id: String,
    /// The agent's number.
    pub to: String,
    /// Said before the hold audio.
    pub message: Option<String>,
    /// Said when the agent does not take the call.
    pub unavailable_message: Option<String>,
}

/// A [`Transcript`], serialisable: words as `(word, confidence)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceTranscript {
    /// The text.
    pub text: String,
    /// Overall confidence, 0..=1.
    pub confidence: f32,
    /// The words with their confidence.
    pub words: Vec<(String, f32)>,
}

/// A [`ToolCall`], serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceToolCall {
    /// The call's id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments (JSON text).
    pub arguments: String,
}

/// An [`Alignment`], serialisable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceAlignment {
    /// The characters.
    pub chars: Vec<char>,
    /// Start of each, ms from the chunk start.
    pub start_ms: Vec<u32>,
    /// Duration of each, ms.
    pub duration_ms: Vec<u32>,
}

/// One action the core returned, at the call time of the event that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Call time of the event whose handling produced it, ms.
    #[serde(rename = "t")]
    pub at_ms: u64,
    /// Media frames sent since the previous decision.
    #[serde(rename = "f", default, skip_serializing_if = "is_zero")]
    pub frames_before: u64,
    /// The action, canonically described ([`describe`]).
    #[serde(rename = "a")]
    pub action: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The canonical text of a decision: its `Debug` form, except an LLM request, described by its
/// generation, speculation, message count and a 64-bit FNV-1a digest of its messages (the whole
/// history per request would make traces quadratic in the call length). `None` for a media
/// frame, which is only counted.
pub fn describe(action: &Action) -> Option<String> {
    match action {
        Action::SendMedia(_) => None,
        Action::StartLlm {
            generation,
            messages,
            speculative,
        } => Some(format!(
            "StartLlm {{ generation: {}, speculative: {speculative}, messages: {}, digest: {:016x} }}",
            generation.0,
            messages.len(),
            messages_digest(messages)
        )),
        other => Some(format!("{other:?}")),
    }
}

/// FNV-1a over the `Debug` form of the messages: stable across runs and builds of one version.
fn messages_digest(messages: &[Message]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{messages:?}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl TraceTranscript {
    fn of(t: &Transcript) -> Box<Self> {
        Box::new(Self {
            text: t.text.clone(),
            confidence: t.confidence,
            words: t
                .words
                .iter()
                .map(|w| (w.word.clone(), w.confidence))
                .collect(),
        })
    }

    /// The core's transcript.
    pub fn to_transcript(&self) -> Transcript {
        Transcript {
            text: self.text.clone(),
            confidence: self.confidence,
            words: self
                .words
                .iter()
                .map(|(word, confidence)| SttWord {
                    word: word.clone(),
                    confidence: *confidence,
                })
                .collect(),
        }
    }
}

impl TraceAlignment {
    fn of(a: &Alignment) -> Box<Self> {
        Box::new(Self {
            chars: a.chars.clone(),
            start_ms: a.char_start_ms.clone(),
            duration_ms: a.char_duration_ms.clone(),
        })
    }

    /// The core's alignment.
    pub fn to_alignment(&self) -> Alignment {
        Alignment {
            chars: self.chars.clone(),
            char_start_ms: self.start_ms.clone(),
            char_duration_ms: self.duration_ms.clone(),
        }
    }
}

impl TraceEvent {
    /// The owned form of `event` (caller audio by its length).
    pub fn of(event: &Event<'_>) -> Self {
        match event {
            Event::CallStarted => Self::CallStarted,
            Event::CallerAudio(b) => Self::CallerAudio {
                bytes: u32::try_from(b.len()).unwrap_or(u32::MAX),
            },
            Event::SttSpeechStarted => Self::SttSpeechStarted,
            Event::SttInterim(t) => Self::SttInterim(TraceTranscript::of(t)),
            Event::SttFinal {
                transcript,
                speech_final,
            } => Self::SttFinal {
                transcript: TraceTranscript::of(transcript),
                speech_final: *speech_final,
            },
            Event::SttUtteranceEnd => Self::SttUtteranceEnd,
            Event::SttEndOfTurn(t) => Self::SttEndOfTurn(TraceTranscript::of(t)),
            Event::SttEagerEndOfTurn(t) => Self::SttEagerEndOfTurn(TraceTranscript::of(t)),
            Event::SttTurnResumed => Self::SttTurnResumed,
            Event::LlmText { generation, delta } => Self::LlmText {
                generation: generation.0,
                delta: (*delta).to_owned(),
            },
            Event::LlmToolCall { generation, call } => Self::LlmToolCall {
                generation: generation.0,
                call: Box::new(TraceToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                }),
            },
            Event::LlmDone { generation } => Self::LlmDone {
                generation: generation.0,
            },
            Event::LlmFailed { generation, reason } => Self::LlmFailed {
                generation: generation.0,
                reason: (*reason).to_owned(),
            },
            Event::TtsAudio {
                generation,
                audio,
                alignment,
            } => Self::TtsAudio {
                generation: generation.0,
                bytes: u32::try_from(audio.len()).unwrap_or(u32::MAX),
                alignment: alignment.map(TraceAlignment::of),
            },
            Event::TtsDone { generation } => Self::TtsDone {
                generation: generation.0,
            },
            Event::TtsFailed { generation, reason } => Self::TtsFailed {
                generation: generation.0,
                reason: (*reason).to_owned(),
            },
            Event::SttFailed { reason } => Self::SttFailed {
                reason: (*reason).to_owned(),
            },
            Event::MarkPlayed(name) => Self::MarkPlayed((*name).to_owned()),
            Event::Dtmf(d) => Self::Dtmf(*d),
            Event::PlayDtmf { digits } => Self::PlayDtmf {
                digits: (*digits).to_owned(),
            },
            Event::ToolResult { call_id, content } => Self::ToolResult {
                call_id: (*call_id).to_owned(),
                content: (*content).to_owned(),
            },
            Event::HangUpRequested { message } => Self::HangUpRequested {
                message: message.clone(),
            },
            Event::TransferRequested { to, message } => Self::TransferRequested {
                to: to.clone(),
                message: message.clone(),
            },
            Event::WarmTransferRequested {
                tool_call_id,
                to,
                message,
                unavailable_message,
            } => Self::WarmTransferRequested(Box::new(TraceWarmTransfer {
                tool_call_id: tool_call_id.clone(),
                to: to.clone(),
                message: message.clone(),
                unavailable_message: unavailable_message.clone(),
            })),
            Event::WarmTransferResult { transfer, outcome } => Self::WarmTransferResult {
                transfer: *transfer,
                outcome: *outcome,
            },
            Event::UtteranceClassified {
                request,
                incomplete,
            } => Self::UtteranceClassified {
                request: *request,
                incomplete: *incomplete,
            },
            Event::CallerHungUp => Self::CallerHungUp,
            Event::Timeout => Self::Timeout,
        }
    }

    /// Feeds this event to `core` at `now`. `audio` is the caller audio of a
    /// [`TraceEvent::CallerAudio`]; `scratch` holds the silence a [`TraceEvent::TtsAudio`]
    /// stands for.
    pub fn feed(&self, core: &mut CallCore, now: Millis, audio: &[u8], scratch: &mut Vec<u8>) {
        self.with_event(audio, scratch, |e| core.handle(e, now));
    }

    /// Calls `f` with the borrowed [`Event`] this stands for (see [`TraceEvent::feed`]).
    pub fn with_event<R>(
        &self,
        audio: &[u8],
        scratch: &mut Vec<u8>,
        f: impl FnOnce(Event<'_>) -> R,
    ) -> R {
        match self {
            Self::CallStarted => f(Event::CallStarted),
            Self::CallerAudio { .. } => f(Event::CallerAudio(audio)),
            Self::SttSpeechStarted => f(Event::SttSpeechStarted),
            Self::SttInterim(t) => f(Event::SttInterim(t.to_transcript())),
            Self::SttFinal {
                transcript,
                speech_final,
            } => f(Event::SttFinal {
                transcript: transcript.to_transcript(),
                speech_final: *speech_final,
            }),
            Self::SttUtteranceEnd => f(Event::SttUtteranceEnd),
            Self::SttEndOfTurn(t) => f(Event::SttEndOfTurn(t.to_transcript())),
            Self::SttEagerEndOfTurn(t) => f(Event::SttEagerEndOfTurn(t.to_transcript())),
            Self::SttTurnResumed => f(Event::SttTurnResumed),
            Self::LlmText { generation, delta } => f(Event::LlmText {
                generation: Generation(*generation),
                delta,
            }),
            Self::LlmToolCall { generation, call } => f(Event::LlmToolCall {
                generation: Generation(*generation),
                call: ToolCall {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                },
            }),
            Self::LlmDone { generation } => f(Event::LlmDone {
                generation: Generation(*generation),
            }),
            Self::LlmFailed { generation, reason } => f(Event::LlmFailed {
                generation: Generation(*generation),
                reason,
            }),
            Self::TtsAudio {
                generation,
                bytes,
                alignment,
            } => {
                scratch.clear();
                scratch.resize(*bytes as usize, crate::audio::MULAW_SILENCE);
                let alignment = alignment.as_ref().map(|a| a.to_alignment());
                f(Event::TtsAudio {
                    generation: Generation(*generation),
                    audio: scratch,
                    alignment: alignment.as_ref(),
                })
            }
            Self::TtsDone { generation } => f(Event::TtsDone {
                generation: Generation(*generation),
            }),
            Self::TtsFailed { generation, reason } => f(Event::TtsFailed {
                generation: Generation(*generation),
                reason,
            }),
            Self::SttFailed { reason } => f(Event::SttFailed { reason }),
            Self::MarkPlayed(name) => f(Event::MarkPlayed(name)),
            Self::Dtmf(d) => f(Event::Dtmf(*d)),
            Self::PlayDtmf { digits } => f(Event::PlayDtmf { digits }),
            Self::ToolResult { call_id, content } => f(Event::ToolResult { call_id, content }),
            Self::HangUpRequested { message } => f(Event::HangUpRequested {
                message: message.clone(),
            }),
            Self::TransferRequested { to, message } => f(Event::TransferRequested {
                to: to.clone(),
                message: message.clone(),
            }),
            Self::WarmTransferRequested(w) => f(Event::WarmTransferRequested {
                tool_call_id: w.tool_call_id.clone(),
                to: w.to.clone(),
                message: w.message.clone(),
                unavailable_message: w.unavailable_message.clone(),
            }),
            Self::WarmTransferResult { transfer, outcome } => f(Event::WarmTransferResult {
                transfer: *transfer,
                outcome: *outcome,
            }),
            Self::UtteranceClassified {
                request,
                incomplete,
            } => f(Event::UtteranceClassified {
                request: *request,
                incomplete: *incomplete,
            }),
            Self::CallerHungUp => f(Event::CallerHungUp),
            Self::Timeout => f(Event::Timeout),
        }
    }
}

impl Trace {
    /// Encodes `earlier` (the slices drained from this trace's recorder, as spooled) followed
    /// by what the trace kept itself: the bytes [`Trace::to_bytes`] gives for the whole trace.
    /// The spooled lines are copied, not parsed (they were written by
    /// [`TraceSlice::write_json_lines`]; damaged ones make a trace that
    /// [`Trace::from_bytes`] refuses).
    pub fn to_bytes_after(&self, earlier: SpooledSlices<'_>) -> Result<Vec<u8>, TraceError> {
        /// `lines` (JSON lines) then `own`, comma-separated.
        fn join<T: Serialize>(
            out: &mut Vec<u8>,
            lines: &[u8],
            own: &[T],
        ) -> Result<(), TraceError> {
            let mut first = true;
            for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                out.extend_from_slice(line);
            }
            for item in own {
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, item)?;
            }
            Ok(())
        }
        // The fields in declaration order, as the derived `Serialize` writes them.
        let mut json = Vec::with_capacity(
            512 + earlier.events.len() + earlier.decisions.len() + 48 * self.events.len(),
        );
        json.extend_from_slice(b"{\"version\":");
        serde_json::to_writer(&mut json, &self.version)?;
        json.extend_from_slice(b",\"settings\":");
        serde_json::to_writer(&mut json, &self.settings)?;
        json.extend_from_slice(b",\"events\":[");
        join(&mut json, earlier.events, &self.events)?;
        json.extend_from_slice(b"],\"decisions\":[");
        join(&mut json, earlier.decisions, &self.decisions)?;
        json.extend_from_slice(b"],\"trailing_frames\":");
        serde_json::to_writer(&mut json, &self.trailing_frames)?;
        json.extend_from_slice(b",\"truncated\":");
        serde_json::to_writer(&mut json, &self.truncated)?;
        json.push(b'}');
        framed(&json, &[earlier.caller_audio, &self.caller_audio])
    }

    /// Encodes the trace (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TraceError> {
        framed(&serde_json::to_vec(self)?, &[&self.caller_audio])
    }

    /// Decodes what [`Trace::to_bytes`] wrote, checking that the audio covers the events.
    pub fn from_bytes(bytes: &[u8]) -> Result<Trace, TraceError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(TraceError::BadHeader)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or(TraceError::BadHeader)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(TraceError::BadHeader);
        }
        let (json, audio) = rest.split_at(len);
        let mut trace: Trace = serde_json::from_slice(json)?;
        if trace.version > TRACE_FORMAT_VERSION {
            return Err(TraceError::Version(trace.version));
        }
        let needed: u64 = trace
            .events
            .iter()
            .map(|e| match e.event {
                TraceEvent::CallerAudio { bytes } => u64::from(bytes),
                _ => 0,
            })
            .sum();
        if (audio.len() as u64) < needed {
            return Err(TraceError::AudioShort);
        }
        trace.caller_audio = audio.to_vec();
        Ok(trace)
    }
}

/// The encoding's frame: the magic, the JSON document's length and the document, then the
/// caller audio (its pieces in order).
fn framed(json: &[u8], audio: &[&[u8]]) -> Result<Vec<u8>, TraceError> {
    let len = u32::try_from(json.len()).map_err(|_| TraceError::BadHeader)?;
    let audio_len: usize = audio.iter().map(|a| a.len()).sum();
    let mut out = Vec::with_capacity(12 + json.len() + audio_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(json);
    for piece in audio {
        out.extend_from_slice(piece);
    }
    Ok(out)
}

/// The recording side of a [`TracedCore`].
#[derive(Debug)]
struct Recorder {
    settings: CallSettings,
    events: Vec<TracedEvent>,
    decisions: Vec<Decision>,
    frames: u64,
    audio: Vec<Vec<u8>>,
    /// Caller audio recorded in all (drained or not), bytes: the bound applies to the call.
    audio_len: usize,
    /// Caller audio held in `audio` (not drained yet), bytes.
    audio_held: usize,
    /// Events recorded in all (drained or not).
    events_len: usize,
    truncated: bool,
}

impl Recorder {
    fn new(settings: CallSettings) -> Self {
        Self {
            settings,
            events: Vec::with_capacity(1024),
            decisions: Vec::with_capacity(256),
            frames: 0,
            audio: Vec::new(),
            audio_len: 0,
            audio_held: 0,
            events_len: 0,
            truncated: false,
        }
    }

    /// Records `event`; false once the trace is full (it is then marked truncated).
    fn event(&mut self, event: &Event<'_>, now: Millis) -> bool {
        if self.truncated {
            return false;
        }
        let audio = match event {
            Event::CallerAudio(b) => b.len(),
            _ => 0,
        };
        if self.events_len >= MAX_TRACE_EVENTS || self.audio_len + audio > MAX_TRACE_AUDIO_BYTES {
            self.truncated = true;
            return false;
        }
        if let Event::CallerAudio(b) = event {
            let mut b: &[u8] = b;
            while !b.is_empty() {
                if self
                    .audio
                    .last()
                    .is_none_or(|c| c.len() == AUDIO_CHUNK_BYTES)
                {
                    self.audio.push(Vec::with_capacity(AUDIO_CHUNK_BYTES));
                }
                let Some(chunk) = self.audio.last_mut() else {
                    break;
                };
                let n = b.len().min(AUDIO_CHUNK_BYTES - chunk.len());
                chunk.extend_from_slice(&b[..n]);
                b = &b[n..];
            }
            self.audio_len += audio;
            self.audio_held += audio;
        }
        self.events_len += 1;
        self.events.push(TracedEvent {
            at_ms: now.0,
            event: TraceEvent::of(event),
        });
        true
    }

    fn action(&mut self, action: &Action, now: Millis) {
        match describe(action) {
            None => self.frames += 1,
            Some(text) => self.decisions.push(Decision {
                at_ms: now.0,
                frames_before: std::mem::take(&mut self.frames),
                action: text,
            }),
        }
    }

    /// The caller audio not drained yet, in one buffer.
    fn held_audio(&self) -> Vec<u8> {
        let mut audio = Vec::with_capacity(self.audio_held);
        for c in &self.audio {
            audio.extend_from_slice(c);
        }
        audio
    }

    /// Hands over what was recorded since the last drain. The event and decision buffers start
    /// again at the size they had (one allocation per drain, none per event), and the audio
    /// keeps one chunk's allocation.
    fn drain(&mut self) -> TraceSlice {
        let caller_audio = self.held_audio();
        let kept = self.audio.pop();
        self.audio.clear();
        if let Some(mut chunk) = kept {
            chunk.clear();
            self.audio.push(chunk);
        }
        self.audio_held = 0;
        let (n_events, n_decisions) = (self.events.len(), self.decisions.len());
        let events = std::mem::replace(&mut self.events, Vec::with_capacity(n_events));
        let decisions = std::mem::replace(&mut self.decisions, Vec::with_capacity(n_decisions));
        TraceSlice {
            events,
            decisions,
            caller_audio,
        }
    }

    fn finish(self) -> Trace {
        let caller_audio = self.held_audio();
        Trace {
            version: TRACE_FORMAT_VERSION,
            settings: self.settings,
            events: self.events,
            decisions: self.decisions,
            trailing_frames: self.frames,
            truncated: self.truncated,
            caller_audio,
        }
    }
}

/// A [`CallCore`] with an optional flight recorder; driven exactly like the core.
#[derive(Debug)]
pub struct TracedCore {
    core: CallCore,
    recorder: Option<Box<Recorder>>,
    /// Actions taken from the core right after the event that produced them (so each decision
    /// is stamped with its event's time), waiting for [`TracedCore::poll_action`].
    pending: VecDeque<Action>,
}

impl TracedCore {
    /// A core ([`CallCore::new`]); with `record` every event and decision is kept.
    pub fn new(settings: CallSettings, now: Millis, record: bool) -> Self {
        Self {
            recorder: record.then(|| Box::new(Recorder::new(settings.clone()))),
            core: CallCore::new(settings, now),
            pending: VecDeque::new(),
        }
    }

    /// [`CallCore::handle`], recording the event and the actions it produced.
    pub fn handle(&mut self, event: Event<'_>, now: Millis) {
        let recorded = self
            .recorder
            .as_mut()
            .is_some_and(|rec| rec.event(&event, now));
        self.core.handle(event, now);
        if !recorded {
            // No trace, or it is full: the actions go out as they are.
            return;
        }
        while let Some(a) = self.core.poll_action() {
            if let Some(rec) = self.recorder.as_mut() {
                rec.action(&a, now);
            }
            self.pending.push_back(a);
        }
    }

    /// [`CallCore::poll_action`].
    pub fn poll_action(&mut self) -> Option<Action> {
        self.pending.pop_front().or_else(|| self.core.poll_action())
    }

    /// [`CallCore::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.core.poll_timeout()
    }

    /// The core itself (read-only views).
    pub fn core(&self) -> &CallCore {
        &self.core
    }

    /// Whether a trace is being recorded.
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// Ends the recording and returns the trace (`None` when none was kept): what was
    /// recorded since the last [`TracedCore::drain_trace`] (everything, if it was never
    /// drained), to encode after the drained slices ([`Trace::to_bytes_after`]).
    pub fn take_trace(&mut self) -> Option<Trace> {
        self.recorder.take().map(|r| r.finish())
    }

    /// What the trace recorded since the last drain, once it holds at least
    /// `min_caller_audio_bytes` of caller audio or `min_events` events (`None` before, and
    /// without a trace). Two comparisons when it is not time yet: call it on every frame.
    pub fn drain_trace(
        &mut self,
        min_caller_audio_bytes: usize,
        min_events: usize,
    ) -> Option<TraceSlice> {
        let rec = self.recorder.as_mut()?;
        (rec.audio_held >= min_caller_audio_bytes || rec.events.len() >= min_events)
            .then(|| rec.drain())
    }

    /// Stops recording and forgets the trace (its spool could not keep up): the call goes on
    /// untraced.
    pub fn abandon_trace(&mut self) {
        self.recorder = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(w: &str) -> SttWord {
        SttWord {
            word: w.to_owned(),
            confidence: 0.9,
        }
    }

    #[test]
    fn a_traced_core_records_events_and_decisions_and_round_trips() {
        let settings = CallSettings {
            welcome_message: Some("Hello there.".into()),
            ..CallSettings::default()
        };
        let mut t = TracedCore::new(settings, Millis(0), true);
        t.handle(Event::CallStarted, Millis(0));
        let frame = [0xFFu8; 160];
        t.handle(Event::CallerAudio(&frame), Millis(20));
        t.handle(
            Event::SttInterim(Transcript {
                text: "hi".into(),
                confidence: 0.8,
                words: vec![word("hi")],
            }),
            Millis(30),
        );
        let mut actions = 0;
        while t.poll_action().is_some() {
            actions += 1;
        }
        let trace = t.take_trace().expect("trace");
        assert_eq!(trace.events.len(), 3);
        assert_eq!(trace.caller_audio.len(), 160);
        assert!(
            trace
                .decisions
                .iter()
                .any(|d| d.action.starts_with("TtsText"))
        );
        assert_eq!(
            trace.decisions.len() as u64
                + trace.decisions.iter().map(|d| d.frames_before).sum::<u64>()
                + trace.trailing_frames,
            actions
        );
        let back = Trace::from_bytes(&trace.to_bytes().expect("encode")).expect("decode");
        assert_eq!(back, trace);
        assert!(Trace::from_bytes(b"nonsense").is_err());
    }

    /// Feeds the same ~3 s call (caller frames, interims, a final) to `t`; calls `each_frame`
    /// after every caller frame.
    fn feed_call(t: &mut TracedCore, mut each_frame: impl FnMut(&mut TracedCore)) {
        t.handle(Event::CallStarted, Millis(0));
        for i in 1..=150u64 {
            let frame = [(i % 200) as u8; 160];
            t.handle(Event::CallerAudio(&frame), Millis(20 * i));
            if i % 25 == 0 {
                t.handle(
                    Event::SttInterim(Transcript {
                        text: "hello there".into(),
                        confidence: 0.9,
                        words: vec![word("hello"), word("there")],
                    }),
                    Millis(20 * i + 5),
                );
            }
            while t.poll_action().is_some() {}
            each_frame(t);
        }
    }

    #[test]
    fn a_trace_drained_as_it_goes_and_put_back_together_is_the_whole_trace() {
        let settings = CallSettings {
            welcome_message: Some("Hello there.".into()),
            ..CallSettings::default()
        };
        let mut whole = TracedCore::new(settings.clone(), Millis(0), true);
        feed_call(&mut whole, |_| {});
        let whole = whole.take_trace().expect("trace");

        let mut drained = TracedCore::new(settings, Millis(0), true);
        let (mut events, mut decisions, mut audio) = (Vec::new(), Vec::new(), Vec::new());
        let mut drains = 0;
        feed_call(&mut drained, |t| {
            // One second of caller audio at a time, spooled as the runtime spools it.
            if let Some(slice) = t.drain_trace(8_000, usize::MAX) {
                assert!(slice.caller_audio.len() >= 8_000);
                drains += 1;
                slice
                    .write_json_lines(&mut events, &mut decisions)
                    .expect("lines");
                audio.extend_from_slice(&slice.caller_audio);
            }
        });
        assert_eq!(drains, 3, "150 frames of 160 bytes make three full seconds");
        let tail = drained.take_trace().expect("trace");
        assert!(
            tail.caller_audio.len() < 8_000,
            "only the rest stayed in memory"
        );
        let spooled = SpooledSlices {
            events: &events,
            decisions: &decisions,
            caller_audio: &audio,
        };
        let encoded = tail.to_bytes_after(spooled).expect("encode");
        assert_eq!(
            encoded,
            whole.to_bytes().expect("encode"),
            "the same bytes as the whole trace encoded at once"
        );
        assert_eq!(Trace::from_bytes(&encoded).expect("decode"), whole);
        // Nothing spooled: the same as `to_bytes`.
        assert_eq!(
            whole
                .to_bytes_after(SpooledSlices::default())
                .expect("encode"),
            whole.to_bytes().expect("encode")
        );
    }

    #[test]
    fn nothing_is_drained_before_a_threshold_nor_without_a_trace() {
        let mut t = TracedCore::new(CallSettings::default(), Millis(0), true);
        t.handle(Event::CallStarted, Millis(0));
        t.handle(Event::CallerAudio(&[0xFF; 160]), Millis(20));
        assert!(t.drain_trace(8_000, 3).is_none());
        let slice = t
            .drain_trace(160, usize::MAX)
            .expect("one frame is enough here");
        assert_eq!(slice.events.len(), 2);
        assert_eq!(slice.caller_audio.len(), 160);
        t.abandon_trace();
        assert!(!t.is_recording());
        assert!(t.drain_trace(0, 0).is_none());
        assert!(t.take_trace().is_none());
        let mut off = TracedCore::new(CallSettings::default(), Millis(0), false);
        assert!(off.drain_trace(0, 0).is_none());
    }

    #[test]
    fn a_traced_event_stays_small() {
        // 50 caller frames a second each take one: keep the per-event cost to a few words.
        assert!(std::mem::size_of::<TracedEvent>() <= 64);
    }

    #[test]
    fn without_a_trace_the_wrapper_only_forwards() {
        let settings = CallSettings::default();
        let mut t = TracedCore::new(settings, Millis(0), false);
        t.handle(Event::CallStarted, Millis(0));
        assert!(!t.is_recording());
        assert!(t.take_trace().is_none());
    }

    #[test]
    fn llm_requests_are_described_by_digest() {
        let a = Action::StartLlm {
            generation: Generation(3),
            messages: Vec::new(),
            speculative: false,
        };
        let d = describe(&a).expect("described");
        assert!(d.starts_with("StartLlm { generation: 3, speculative: false, messages: 0"));
        assert_eq!(describe(&Action::SendMedia([0; 160])), None);
    }
}
