//! A small scenario DSL in virtual time for `CallCore`: a fake caller (speech intervals → µ-law
//! frames), a fake Twilio (real-time playback clock, mark echoes, clear), fake LLM and TTS that
//! answer the core's actions, and scheduled STT events. Scenarios say "at t, this happens" and
//! then assert on the actions the core took, the history and the transcript.

#![allow(dead_code, clippy::collapsible_match)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use switchboard_core::audio::vad::VoiceDetector;
use switchboard_core::call::{
    Action, Alignment, CallCore, CallSettings, Event, Generation, Millis, Record, ToolCall,
    Transcript, TranscriptEntry,
};
use switchboard_core::dialog::{Role, Speaker};
use switchboard_core::turn::BargeState;

/// Speech when any sample is loud: the fake caller's speech frames are full-scale.
pub struct LoudVad;

impl VoiceDetector for LoudVad {
    fn is_speech(&mut self, pcm: &[i16]) -> bool {
        pcm.iter().any(|s| s.unsigned_abs() > 8000)
    }
}

/// A loud µ-law frame (speech for [`LoudVad`]).
pub const SPEECH: [u8; 160] = [0x00; 160];
/// A silent µ-law frame.
pub const SILENCE: [u8; 160] = [0xFF; 160];

/// An input scheduled for the core.
#[derive(Debug, Clone)]
pub enum In {
    Started,
    Interim(String, f32),
    Final(String, f32, bool),
    UtteranceEnd,
    EndOfTurn(String),
    EagerEndOfTurn(String),
    TurnResumed,
    SpeechStarted,
    LlmText(Generation, String),
    LlmTool(Generation, ToolCall),
    LlmDone(Generation),
    LlmFail(Generation),
    TtsAudio(Generation, Vec<u8>, Option<Alignment>),
    TtsDone(Generation),
    TtsFail(Generation),
    SttFail,
    Mark(String),
    Dtmf(char),
    PlayDtmf(String),
    ToolResult(String, String),
    HangUpReq(Option<String>),
    Transfer(String, Option<String>),
    CallerHungUp,
    Frame(bool),
    Classified(u64, bool),
}

/// What the fake LLM answers to the next `StartLlm`.
#[derive(Debug, Clone)]
pub enum LlmScript {
    /// Stream this text word by word.
    Reply(String),
    /// Ask for a tool, then (after the result) answer with the next script.
    Tool(ToolCall),
    /// Say this text first, then ask for the tool.
    TextThenTool(String, ToolCall),
    /// Ask for several tools in one stream (parallel calls).
    Tools(Vec<ToolCall>),
    /// Fail before any text.
    Fail,
    /// Never answer.
    Silent,
}

/// The simulated world around one `CallCore`.
pub struct Sim {
    pub core: CallCore,
    pub now: u64,
    /// Every action with the time it was taken.
    pub log: Vec<(u64, Action)>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    inputs: Vec<Option<In>>,
    seq: u64,
    /// Fake Twilio: when the audio sent so far will have played.
    busy_until: u64,
    /// Pending mark echoes (time, name).
    marks: VecDeque<(u64, String)>,
    /// Frames "played" per time (start time of each frame's playback).
    pub played: Vec<(u64, [u8; 160])>,
    /// Largest queued audio at Twilio right after a send, ms.
    pub max_queued_ms: u64,
    /// Caller speech intervals [from, to) in ms.
    caller: Vec<(u64, u64)>,
    frame_cursor: u64,
    pub llm_script: VecDeque<LlmScript>,
    pub llm_latency_ms: u64,
    pub llm_word_ms: u64,
    pub default_reply: String,
    pub tts_latency_ms: u64,
    pub tts_ms_per_char: u64,
    pub tts_alignment: bool,
    pub auto_llm: bool,
    pub auto_tts: bool,
    /// The fake TTS is dead: every generation it is asked for fails (`tts_latency_ms` after its
    /// last flush) without audio.
    pub tts_broken: bool,
    /// The fake Twilio echoes marks.
    pub echo_marks: bool,
    pub tool_results: VecDeque<(u64, String)>,
    tts_cursor: std::collections::HashMap<u64, u64>,
    llm_cancelled: HashSet<u64>,
    tts_cancelled: HashSet<u64>,
    pub violations: Vec<String>,
    pub lead_ms: u64,
    stuck: u32,
    /// A recorded caller (µ-law 8 kHz from t=0), fed in 20 ms frames instead of speech intervals.
    recording: Option<Vec<u8>>,
}

pub fn words(text: &str, conf: f32) -> Transcript {
    Transcript::plain(text, conf)
}

impl Sim {
    /// A sim with `settings` (welcome etc.) and the call started at t=0.
    pub fn new(settings: CallSettings) -> Self {
        let core = CallCore::with_detector(settings, Millis(0), Box::new(LoudVad));
        Self::from_core(core)
    }

    /// A sim around a core built by the test (e.g. with the real WebRTC VAD).
    pub fn from_core(core: CallCore) -> Self {
        let lead_ms = u64::from(core.settings().lead_ms).max(20);
        let mut s = Self {
            core,
            now: 0,
            log: Vec::new(),
            queue: BinaryHeap::new(),
            inputs: Vec::new(),
            seq: 0,
            busy_until: 0,
            marks: VecDeque::new(),
            played: Vec::new(),
            max_queued_ms: 0,
            caller: Vec::new(),
            frame_cursor: 0,
            llm_script: VecDeque::new(),
            llm_latency_ms: 200,
            llm_word_ms: 20,
            default_reply: "Sure, I can help with that. Here is what I found for you today.".into(),
            tts_latency_ms: 100,
            tts_ms_per_char: 60,
            tts_alignment: false,
            auto_llm: true,
            auto_tts: true,
            tts_broken: false,
            echo_marks: true,
            tool_results: VecDeque::new(),
            tts_cursor: Default::default(),
            llm_cancelled: HashSet::new(),
            tts_cancelled: HashSet::new(),
            violations: Vec::new(),
            lead_ms,
            stuck: 0,
            recording: None,
        };
        s.at(0, In::Started);
        s
    }

    /// Default settings with a welcome message.
    pub fn with_welcome(welcome: &str) -> Self {
        let s = CallSettings {
            welcome_message: Some(welcome.into()),
            ..CallSettings::default()
        };
        Self::new(s)
    }

    /// Schedules an input at `t` ms.
    pub fn at(&mut self, t: u64, input: In) {
        self.inputs.push(Some(input));
        self.seq += 1;
        self.queue
            .push(Reverse((t, self.seq, self.inputs.len() - 1)));
    }

    /// The caller speaks (loud frames) over [from, to).
    pub fn speak(&mut self, from: u64, to: u64) {
        self.caller.push((from, to));
    }

    /// The caller says `text` over [from, to): speech frames, an interim halfway, a final with
    /// `speech_final` at `to + 300`.
    pub fn say(&mut self, from: u64, to: u64, text: &str) {
        self.speak(from, to);
        let mid = from + (to - from) / 2 + 150;
        let n = text.split_whitespace().count();
        let half: Vec<&str> = text.split_whitespace().take(n.div_ceil(2)).collect();
        self.at(mid, In::Interim(half.join(" "), 0.9));
        self.at(to + 300, In::Final(text.into(), 0.9, true));
    }

    fn caller_speaking(&self, t: u64) -> bool {
        self.caller.iter().any(|&(a, b)| t >= a && t < b)
    }

    /// The next 20 ms frame time at or after the cursor inside a caller window (speech plus 1 s
    /// of silence after it, so the VAD sees the end). The frame delivered at `f` carries the
    /// audio of [f - 20, f), as Twilio's do.
    fn next_caller_frame(&self) -> Option<u64> {
        if let Some(rec) = &self.recording {
            let f = self.frame_cursor.max(20);
            return ((f as usize / 20) * 160 <= rec.len()).then_some(f);
        }
        self.caller
            .iter()
            .filter_map(|&(a, b)| {
                let start = (a - a % 20 + 20).max(self.frame_cursor);
                (start < b + 1000).then_some(start)
            })
            .min()
    }

    fn next_time(&self) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut c = |x: u64| t = Some(t.map_or(x, |y: u64| y.min(x)));
        if let Some(Reverse((q, _, _))) = self.queue.peek() {
            c(*q);
        }
        if let Some(d) = self.core.poll_timeout() {
            c(d.0.max(self.now));
        }
        if let Some((m, _)) = self.marks.front() {
            c(*m);
        }
        if let Some(f) = self.next_caller_frame() {
            c(f);
        }
        t
    }

    /// Runs the world until `t` ms (inclusive).
    pub fn run_until(&mut self, t: u64) {
        let mut guard = 0u64;
        while let Some(next) = self.next_time() {
            if next > t {
                break;
            }
            guard += 1;
            assert!(guard < 2_000_000, "sim does not advance at {}", self.now);
            self.now = next;
            // Caller frame.
            if let Some(f) = self.next_caller_frame()
                && f <= self.now
            {
                self.frame_cursor = f + 20;
                if let Some(rec) = &self.recording {
                    let end = (f as usize / 20) * 160;
                    let mut frame = [0xFF; 160];
                    frame.copy_from_slice(&rec[end - 160..end]);
                    self.core
                        .handle(Event::CallerAudio(&frame), Millis(self.now));
                    self.drain();
                } else {
                    let speech = self.caller_speaking(f - 20);
                    self.deliver(In::Frame(speech));
                }
            }
            // Mark echoes.
            while let Some((m, _)) = self.marks.front() {
                if *m > self.now {
                    break;
                }
                if let Some((_, name)) = self.marks.pop_front() {
                    self.deliver(In::Mark(name));
                }
            }
            // Scheduled inputs.
            while let Some(Reverse((q, _, idx))) = self.queue.peek().copied() {
                if q > self.now {
                    break;
                }
                self.queue.pop();
                if let Some(input) = self.inputs.get_mut(idx).and_then(Option::take) {
                    self.deliver(input);
                }
            }
            // Timers.
            if self.core.poll_timeout().is_some_and(|d| d.0 <= self.now) {
                self.deliver_timeout();
            }
        }
        self.now = self.now.max(t);
    }

    fn deliver_timeout(&mut self) {
        self.core.handle(Event::Timeout, Millis(self.now));
        self.drain();
        if self.core.poll_timeout().is_some_and(|d| d.0 <= self.now) {
            self.stuck += 1;
            if self.stuck > 3 {
                self.violations
                    .push(format!("a deadline does not move past {}", self.now));
                self.stuck = 0;
                // Step over it so the run ends.
                self.now += 1;
            }
        } else {
            self.stuck = 0;
        }
    }

    fn deliver(&mut self, input: In) {
        let now = Millis(self.now);
        match input {
            In::Started => self.core.handle(Event::CallStarted, now),
            In::Interim(t, c) => self.core.handle(Event::SttInterim(words(&t, c)), now),
            In::Final(t, c, sf) => self.core.handle(
                Event::SttFinal {
                    transcript: words(&t, c),
                    speech_final: sf,
                },
                now,
            ),
            In::UtteranceEnd => self.core.handle(Event::SttUtteranceEnd, now),
            In::Classified(request, incomplete) => self.core.handle(
                Event::UtteranceClassified {
                    request,
                    incomplete,
                },
                now,
            ),
            In::EndOfTurn(t) => self.core.handle(Event::SttEndOfTurn(words(&t, 0.9)), now),
            In::EagerEndOfTurn(t) => self
                .core
                .handle(Event::SttEagerEndOfTurn(words(&t, 0.9)), now),
            In::TurnResumed => self.core.handle(Event::SttTurnResumed, now),
            In::SpeechStarted => self.core.handle(Event::SttSpeechStarted, now),
            In::LlmText(g, t) => {
                if self.llm_cancelled.contains(&g.0) {
                    return;
                }
                self.core.handle(
                    Event::LlmText {
                        generation: g,
                        delta: &t,
                    },
                    now,
                )
            }
            In::LlmTool(g, call) => {
                if self.llm_cancelled.contains(&g.0) {
                    return;
                }
                self.core.handle(
                    Event::LlmToolCall {
                        generation: g,
                        call,
                    },
                    now,
                )
            }
            In::LlmDone(g) => {
                if self.llm_cancelled.contains(&g.0) {
                    return;
                }
                self.core.handle(Event::LlmDone { generation: g }, now)
            }
            In::LlmFail(g) => self.core.handle(
                Event::LlmFailed {
                    generation: g,
                    reason: "boom",
                },
                now,
            ),
            In::TtsAudio(g, a, al) => {
                if self.tts_cancelled.contains(&g.0) {
                    return;
                }
                self.core.handle(
                    Event::TtsAudio {
                        generation: g,
                        audio: &a,
                        alignment: al.as_ref(),
                    },
                    now,
                )
            }
            In::TtsDone(g) => {
                if self.tts_cancelled.contains(&g.0) {
                    return;
                }
                self.core.handle(Event::TtsDone { generation: g }, now)
            }
            In::TtsFail(g) => self.core.handle(
                Event::TtsFailed {
                    generation: g,
                    reason: "boom",
                },
                now,
            ),
            In::SttFail => self.core.handle(
                Event::SttFailed {
                    reason: "reconnects exhausted",
                },
                now,
            ),
            In::Mark(n) => self.core.handle(Event::MarkPlayed(&n), now),
            In::Dtmf(d) => self.core.handle(Event::Dtmf(d), now),
            In::PlayDtmf(d) => self.core.handle(Event::PlayDtmf { digits: &d }, now),
            In::ToolResult(id, c) => self.core.handle(
                Event::ToolResult {
                    call_id: &id,
                    content: &c,
                },
                now,
            ),
            In::HangUpReq(m) => self.core.handle(Event::HangUpRequested { message: m }, now),
            In::Transfer(to, m) => self
                .core
                .handle(Event::TransferRequested { to, message: m }, now),
            In::CallerHungUp => self.core.handle(Event::CallerHungUp, now),
            In::Frame(speech) => {
                let f = if speech { &SPEECH } else { &SILENCE };
                self.core.handle(Event::CallerAudio(f), now)
            }
        }
        self.drain();
    }

    fn drain(&mut self) {
        let paused = matches!(self.core.barge_state(), BargeState::Tentative { .. });
        let mut sent_media = false;
        while let Some(a) = self.core.poll_action() {
            self.react(&a);
            if matches!(a, Action::SendMedia(_)) {
                sent_media = true;
            }
            self.log.push((self.now, a));
        }
        if paused && sent_media {
            self.violations
                .push(format!("media sent while paused at {}", self.now));
        }
        if self.core.open_llm_streams() > 1 {
            self.violations
                .push(format!("two LLM streams at {}", self.now));
        }
        if self.core.open_tts_generations() > 1 {
            self.violations
                .push(format!("two TTS generations at {}", self.now));
        }
        if let Some(d) = self.core.poll_timeout()
            && d.0 < self.now
        {
            self.violations
                .push(format!("deadline {} in the past at {}", d.0, self.now));
        }
        if let Err(e) = self.core.history().check() {
            self.violations
                .push(format!("history at {}: {e}", self.now));
        }
    }

    fn react(&mut self, a: &Action) {
        let now = self.now;
        match a {
            Action::SendMedia(frame) => {
                let start = self.busy_until.max(now);
                self.busy_until = start + 20;
                self.played.push((start, *frame));
                let queued = self.busy_until - now;
                self.max_queued_ms = self.max_queued_ms.max(queued);
                if queued > self.lead_ms {
                    self.violations
                        .push(format!("queued {queued} ms > lead at {now}"));
                }
            }
            Action::SendMark(name) => {
                if self.echo_marks {
                    let t = self.busy_until.max(now);
                    self.marks.push_back((t, name.to_string()));
                }
            }
            Action::SendClear => {
                // Unplayed audio is dropped; pending marks come back at once.
                self.played.retain(|(t, _)| *t < now);
                self.busy_until = now;
                for m in self.marks.iter_mut() {
                    m.0 = now;
                }
            }
            Action::StartLlm { generation, .. } => {
                if self.auto_llm {
                    self.answer_llm(*generation);
                }
            }
            Action::CancelLlm { generation } => {
                self.llm_cancelled.insert(generation.0);
            }
            Action::TtsCancel { generation } => {
                self.tts_cancelled.insert(generation.0);
            }
            Action::TtsText { generation, text } => {
                if self.auto_tts && !self.tts_broken {
                    self.synthesize(*generation, text);
                }
            }
            Action::TtsFlush {
                generation,
                end_of_generation: true,
            } => {
                if self.tts_broken {
                    self.at(now + self.tts_latency_ms.max(1), In::TtsFail(*generation));
                } else if self.auto_tts {
                    let t = self
                        .tts_cursor
                        .get(&generation.0)
                        .copied()
                        .unwrap_or(now + self.tts_latency_ms)
                        .max(now + 1);
                    self.at(t + 1, In::TtsDone(*generation));
                }
            }
            Action::RunTool { call, .. } => {
                let (delay, content) = self
                    .tool_results
                    .pop_front()
                    .unwrap_or((100, "{\"ok\":true}".into()));
                self.at(now + delay, In::ToolResult(call.id.clone(), content));
            }
            _ => {}
        }
    }

    fn answer_llm(&mut self, g: Generation) {
        let script = self
            .llm_script
            .pop_front()
            .unwrap_or(LlmScript::Reply(self.default_reply.clone()));
        let mut t = self.now + self.llm_latency_ms;
        let stream = |sim: &mut Sim, text: &str, t: &mut u64| {
            for (i, w) in text.split(' ').enumerate() {
                let delta = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                sim.at(*t, In::LlmText(g, delta));
                *t += sim.llm_word_ms;
            }
        };
        match script {
            LlmScript::Reply(text) => {
                stream(self, &text, &mut t);
                self.at(t, In::LlmDone(g));
            }
            LlmScript::Tool(call) => {
                self.at(t, In::LlmTool(g, call));
                self.at(t + 1, In::LlmDone(g));
            }
            LlmScript::TextThenTool(text, call) => {
                stream(self, &text, &mut t);
                self.at(t, In::LlmTool(g, call));
                self.at(t + 1, In::LlmDone(g));
            }
            LlmScript::Tools(calls) => {
                for call in calls {
                    self.at(t, In::LlmTool(g, call));
                }
                self.at(t + 1, In::LlmDone(g));
            }
            LlmScript::Fail => self.at(t, In::LlmFail(g)),
            LlmScript::Silent => {}
        }
    }

    fn synthesize(&mut self, g: Generation, text: &str) {
        let dur = text.chars().count() as u64 * self.tts_ms_per_char;
        let start = self
            .tts_cursor
            .get(&g.0)
            .copied()
            .unwrap_or(0)
            .max(self.now + self.tts_latency_ms);
        let byte = 0x10 + (g.0 % 64) as u8;
        let chars: Vec<char> = text.chars().collect();
        let mut t = start;
        let mut off = 0u64;
        while off < dur {
            let len = (dur - off).min(200);
            let audio = vec![byte; (len * 8) as usize];
            let alignment = if self.tts_alignment {
                // Characters whose start falls in this piece, times relative to it.
                let mut a = Alignment::default();
                for (i, c) in chars.iter().enumerate() {
                    let cs = i as u64 * self.tts_ms_per_char;
                    if cs >= off && cs < off + len {
                        a.chars.push(*c);
                        a.char_start_ms.push((cs - off) as u32);
                        a.char_duration_ms.push(self.tts_ms_per_char as u32);
                    }
                }
                Some(a)
            } else {
                None
            };
            self.at(t, In::TtsAudio(g, audio, alignment));
            t += 10;
            off += len;
        }
        self.tts_cursor.insert(g.0, t);
    }

    // ---------------------------------------------------------------- queries

    pub fn actions(&self) -> impl Iterator<Item = &(u64, Action)> {
        self.log.iter()
    }

    pub fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.log.iter().filter(|(_, a)| f(a)).count()
    }

    /// The `ClassifyUtterance` requests the core made, with their time.
    pub fn classify_requests(&self) -> Vec<(u64, u64, String)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::ClassifyUtterance { request, text } => Some((*t, *request, text.clone())),
                _ => None,
            })
            .collect()
    }

    pub fn first_at(&self, f: impl Fn(&Action) -> bool) -> Option<u64> {
        self.log.iter().find(|(_, a)| f(a)).map(|(t, _)| *t)
    }

    pub fn last_at(&self, f: impl Fn(&Action) -> bool) -> Option<u64> {
        self.log.iter().rev().find(|(_, a)| f(a)).map(|(t, _)| *t)
    }

    pub fn clears(&self) -> usize {
        self.count(|a| matches!(a, Action::SendClear))
    }

    pub fn llm_starts(&self) -> Vec<(u64, Generation, bool)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::StartLlm {
                    generation,
                    speculative,
                    ..
                } => Some((*t, *generation, *speculative)),
                _ => None,
            })
            .collect()
    }

    pub fn media_between(&self, from: u64, to: u64) -> usize {
        self.log
            .iter()
            .filter(|(t, a)| *t >= from && *t < to && matches!(a, Action::SendMedia(_)))
            .count()
    }

    pub fn transcript(&self) -> Vec<TranscriptEntry> {
        self.log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Record(Record::Transcript(e)) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn user_lines(&self) -> Vec<TranscriptEntry> {
        self.transcript()
            .into_iter()
            .filter(|e| e.speaker == Speaker::User)
            .collect()
    }

    pub fn bot_lines(&self) -> Vec<TranscriptEntry> {
        self.transcript()
            .into_iter()
            .filter(|e| e.speaker == Speaker::Assistant)
            .collect()
    }

    /// History as (role, text) without the system prompt.
    pub fn history(&self) -> Vec<(Role, String)> {
        self.core
            .history()
            .messages()
            .iter()
            .filter(|m| m.role != Role::System)
            .map(|m| (m.role, m.content.clone()))
            .collect()
    }

    pub fn user_history(&self) -> Vec<String> {
        self.history()
            .into_iter()
            .filter(|(r, _)| *r == Role::User)
            .map(|(_, t)| t)
            .collect()
    }

    pub fn assistant_history(&self) -> Vec<String> {
        self.history()
            .into_iter()
            .filter(|(r, _)| *r == Role::Assistant)
            .map(|(_, t)| t)
            .collect()
    }

    pub fn hangups(&self) -> Vec<(u64, switchboard_core::call::HangUpReason)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::HangUp { reason, .. } => Some((*t, *reason)),
                _ => None,
            })
            .collect()
    }

    /// What the core asked the telephony side to say itself when it hung up.
    pub fn spoken_by_telephony(&self) -> Option<String> {
        self.log.iter().find_map(|(_, a)| match a {
            Action::HangUp {
                spoken_by_telephony,
                ..
            } => spoken_by_telephony.clone(),
            _ => None,
        })
    }

    pub fn tts_texts(&self) -> Vec<(u64, Generation, String)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::TtsText { generation, text } => Some((*t, *generation, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// The time the last frame sent was (or will be) played out at Twilio.
    pub fn twilio_busy_until(&self) -> u64 {
        self.busy_until
    }

    /// Hands `event` to the core now (between scheduled inputs) and carries out its actions.
    pub fn handle_now(&mut self, event: Event<'_>) {
        self.core.handle(event, Millis(self.now));
        self.drain();
    }

    pub fn assert_clean(&self) {
        assert!(
            self.violations.is_empty(),
            "invariant violations: {:?}",
            self.violations
        );
    }
}

/// A reply long enough to interrupt (about 12 s of audio at 60 ms per character).
pub const LONG_REPLY: &str = "Our opening hours are from nine in the morning until six in the evening on weekdays, and from ten until four on Saturdays. On Sundays we are closed, but you can always leave a message.";

impl Sim {
    /// Plays a recorded caller (µ-law 8 kHz starting at t=0) into the core, 20 ms per frame.
    pub fn play_recording(&mut self, mulaw: Vec<u8>) {
        self.recording = Some(mulaw);
    }
}

/// `t` rounded up to the 20 ms frame grid.
pub fn align(t: u64) -> u64 {
    t.div_ceil(20) * 20
}

impl Sim {
    /// Time of the first frame sent at or after `t`.
    pub fn first_media_after(&self, t: u64) -> Option<u64> {
        self.log
            .iter()
            .find(|(at, a)| *at >= t && matches!(a, Action::SendMedia(_)))
            .map(|(at, _)| *at)
    }

    /// A call with no welcome where the caller asked a question and the bot is answering with
    /// [`LONG_REPLY`]; returns the sim (run until just after the reply's first frame) and the
    /// time of that first frame.
    pub fn answering(settings: CallSettings) -> (Sim, u64) {
        let mut sim = Sim::new(CallSettings {
            welcome_message: None,
            ..settings
        });
        sim.default_reply = LONG_REPLY.into();
        sim.say(0, 800, "what are your opening hours");
        sim.run_until(1000);
        let mut t = 1000;
        loop {
            t += 20;
            sim.run_until(t);
            if let Some(f) = sim.first_media_after(1000) {
                return (sim, f);
            }
            assert!(t < 10_000, "the reply never started");
        }
    }

    /// Reply generations started (non-speculative and speculative).
    pub fn replies(&self) -> usize {
        self.llm_starts().len()
    }

    pub fn metrics(&self) -> switchboard_core::call::CallMetrics {
        self.core.metrics().clone()
    }
}

impl Sim {
    /// The non-media actions with their times, for debugging a scenario.
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        for (t, a) in &self.log {
            match a {
                Action::SendMedia(_) | Action::SendMark(_) => {}
                Action::StartLlm {
                    generation,
                    speculative,
                    ..
                } => out.push_str(&format!(
                    "{t:>6} StartLlm {generation} spec={speculative}\n"
                )),
                other => out.push_str(&format!("{t:>6} {other:?}\n")),
            }
        }
        out
    }
}
