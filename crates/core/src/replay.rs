//! Replay of a recorded call ([`Trace`]): exactly, to check the core still decides what it
//! decided, and "what if", with other settings, to show an operator what would have changed.
//!
//! **Exact replay** feeds the recorded events at their recorded times to a fresh [`CallCore`]
//! with the recorded settings; its decisions must equal the recorded ones one for one
//! ([`Replay::reproduced`]).
//!
//! **What-if replay** keeps the caller's side as recorded (audio, STT words and signals, DTMF,
//! hang-up, requests from the API) and models the other side from the recording:
//! - an LLM request gets the recorded response of the request it matches (same generation's
//!   next tool round, else the unused request whose last caller message is most similar), each
//!   delta as long after the new request as it came after the original one; a response that was
//!   cut off in the original ends where it was cut;
//! - a TTS generation gets the recorded audio of the generation it matches (the LLM reply's, or
//!   a scripted one with the same first text), each chunk as long after its first text as in the
//!   original; audio the original never received (it was cut) is made up at the call's recorded
//!   bytes per character, after the recorded median first-audio delay;
//! - Twilio plays what it is sent in order, 20 ms a frame, echoes each mark when the audio before
//!   it has played plus the recorded median echo delay, and echoes every pending mark at a
//!   `clear`;
//! - tools answer with their recorded result after their recorded duration; the incomplete-
//!   utterance classifier answers a recorded text with its recorded verdict and delay;
//! - timers fire at the core's own deadlines.
//!
//! Both runs are summarised as a timeline of [`Moment`]s: when the bot spoke (and whether it was
//! cut), paused, cleared, committed a caller turn, and how the call ended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::call::trace::{Decision, Trace, TraceEvent, describe};
use crate::call::{Action, CallCore, CallSettings, Millis, Record, Role};
use crate::dialog::Speaker;
use crate::turn::BotState;
use crate::turn::similarity::similarity;

/// ms a what-if run may go on after the last recorded event (the caller is gone by then).
const WHAT_IF_TAIL_MS: u64 = 60_000;
/// Most events a what-if run handles (a safety bound; a call of hours stays well under it).
const WHAT_IF_MAX_STEPS: usize = 5_000_000;
/// Bytes of µ-law per character spoken when the recording has no complete generation to measure
/// (about 15 characters a second).
const DEFAULT_BYTES_PER_CHAR: f64 = 530.0;
/// First-audio delay of a TTS generation when the recording has none, ms.
const DEFAULT_TTS_FIRST_AUDIO_MS: u64 = 200;
/// ms of one media frame.
const FRAME_MS: u64 = 20;

/// Something that happened in a run, as an operator would draw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Moment {
    /// The bot spoke: what the caller heard, from its first frame to the end of playback (or
    /// the cut).
    Spoke {
        /// Call time, ms.
        from_ms: u64,
        /// Call time, ms.
        to_ms: u64,
        /// What the caller heard.
        text: String,
        /// The caller cut it off (or hung up) before the end.
        cut: bool,
    },
    /// The bot paused for a tentative barge-in (and resumed, or was cut, at `to_ms`).
    Paused {
        /// Call time, ms.
        from_ms: u64,
        /// Call time, ms.
        to_ms: u64,
    },
    /// Twilio was told to drop the audio queued (a barge-in cut the bot).
    Cleared {
        /// Call time, ms.
        at_ms: u64,
    },
    /// A caller turn was committed (the bot answers it).
    Committed {
        /// Call time, ms.
        at_ms: u64,
        /// 1-based turn number.
        turn: u32,
    },
    /// A caller transcript line.
    CallerSaid {
        /// Call time, ms.
        from_ms: u64,
        /// Call time, ms.
        to_ms: u64,
        /// The words.
        text: String,
        /// A backchannel over the bot (not a turn).
        backchannel: bool,
    },
    /// The engine ended the call (hang-up or transfer).
    Ended {
        /// Call time, ms.
        at_ms: u64,
        /// `hang_up:<reason>` or `transfer`.
        how: String,
    },
}

impl Moment {
    /// When it starts, ms.
    pub fn start_ms(&self) -> u64 {
        match self {
            Self::Spoke { from_ms, .. }
            | Self::Paused { from_ms, .. }
            | Self::CallerSaid { from_ms, .. } => *from_ms,
            Self::Cleared { at_ms } | Self::Committed { at_ms, .. } | Self::Ended { at_ms, .. } => {
                *at_ms
            }
        }
    }

    /// One line of text.
    pub fn label(&self) -> String {
        let s = |ms: u64| format!("{:.2}", ms as f64 / 1000.0);
        match self {
            Self::Spoke {
                from_ms,
                to_ms,
                text,
                cut,
            } => format!(
                "bot {}–{} s{} \"{}\"",
                s(*from_ms),
                s(*to_ms),
                if *cut { " CUT" } else { "" },
                short(text)
            ),
            Self::Paused { from_ms, to_ms } => {
                format!("paused {}–{} s", s(*from_ms), s(*to_ms))
            }
            Self::Cleared { at_ms } => format!("clear at {} s", s(*at_ms)),
            Self::Committed { at_ms, turn } => format!("turn {turn} committed at {} s", s(*at_ms)),
            Self::CallerSaid {
                from_ms,
                to_ms,
                text,
                backchannel,
            } => format!(
                "caller {}–{} s{} \"{}\"",
                s(*from_ms),
                s(*to_ms),
                if *backchannel { " (backchannel)" } else { "" },
                short(text)
            ),
            Self::Ended { at_ms, how } => format!("ended at {} s ({how})", s(*at_ms)),
        }
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX - 1).collect();
        format!("{head}…")
    }
}

/// Counts over a timeline, for a quick comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Bot utterances heard (any part of).
    pub bot_utterances: u32,
    /// Of those, cut off.
    pub cut: u32,
    /// Pauses for tentative barge-ins.
    pub pauses: u32,
    /// Caller turns committed.
    pub turns_committed: u32,
}

impl Summary {
    fn of(moments: &[Moment]) -> Self {
        let mut s = Summary::default();
        for m in moments {
            match m {
                Moment::Spoke { cut, .. } => {
                    s.bot_utterances += 1;
                    s.cut += u32::from(*cut);
                }
                Moment::Paused { .. } => s.pauses += 1,
                Moment::Committed { .. } => s.turns_committed += 1,
                _ => {}
            }
        }
        s
    }
}

/// Where the exact replay first decided differently from the recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Divergence {
    /// Index of the first differing decision.
    pub index: usize,
    /// What the recording holds there (`None`: the replay decided more).
    pub recorded: Option<Decision>,
    /// What the replay decided there (`None`: the replay decided less).
    pub replayed: Option<Decision>,
}

/// The result of replaying a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replay {
    /// The exact replay reproduced every recorded decision (and media frame count).
    pub reproduced: bool,
    /// Decisions recorded.
    pub decisions: usize,
    /// The first difference when not reproduced.
    pub divergence: Option<Divergence>,
    /// The recording stopped before the call ended: at its size bound, or recovered after
    /// its process crashed.
    pub truncated: bool,
    /// The call as it happened (from the exact replay).
    pub original: Vec<Moment>,
    /// Counts of `original`.
    pub original_summary: Summary,
    /// The call under the changed settings, when any were given.
    pub what_if: Option<Vec<Moment>>,
    /// Counts of `what_if`.
    pub what_if_summary: Option<Summary>,
}

/// Replays `trace` exactly, and with `what_if` settings when given.
pub fn replay(trace: &Trace, what_if: Option<&CallSettings>) -> Replay {
    let exact = run_exact(trace);
    let divergence = first_divergence(&trace.decisions, &exact.decisions).or_else(|| {
        (exact.trailing_frames != trace.trailing_frames).then_some(Divergence {
            index: trace.decisions.len(),
            recorded: None,
            replayed: None,
        })
    });
    let what_if_moments = what_if.map(|s| WhatIf::new(trace, &exact, s.clone()).run());
    Replay {
        reproduced: divergence.is_none(),
        decisions: trace.decisions.len(),
        divergence,
        truncated: trace.truncated,
        original_summary: Summary::of(&exact.timeline),
        original: exact.timeline,
        what_if_summary: what_if_moments.as_deref().map(Summary::of),
        what_if: what_if_moments,
    }
}

/// The first index where two decision lists differ.
pub fn first_divergence(recorded: &[Decision], replayed: &[Decision]) -> Option<Divergence> {
    let n = recorded.len().max(replayed.len());
    (0..n)
        .find(|&i| recorded.get(i) != replayed.get(i))
        .map(|index| Divergence {
            index,
            recorded: recorded.get(index).cloned(),
            replayed: replayed.get(index).cloned(),
        })
}

impl Replay {
    /// Both timelines side by side (the original alone when there is no what-if), one moment per
    /// row in time order; a moment the same in both takes one row.
    pub fn side_by_side(&self) -> String {
        let mut out = String::new();
        let status = if self.reproduced {
            format!(
                "exact replay: reproduced all {} recorded decisions",
                self.decisions
            )
        } else {
            format!(
                "exact replay: DIVERGED at decision {} (recorded {:?}, replayed {:?})",
                self.divergence.as_ref().map_or(0, |d| d.index),
                self.divergence
                    .as_ref()
                    .and_then(|d| d.recorded.as_ref())
                    .map(|d| &d.action),
                self.divergence
                    .as_ref()
                    .and_then(|d| d.replayed.as_ref())
                    .map(|d| &d.action),
            )
        };
        let _ = writeln!(out, "{status}");
        if self.truncated {
            let _ = writeln!(
                out,
                "(the recording was truncated: at its size bound, or by its process's crash)"
            );
        }
        let Some(what_if) = &self.what_if else {
            for m in &self.original {
                let _ = writeln!(out, "{}", m.label());
            }
            return out;
        };
        const W: usize = 62;
        let _ = writeln!(out, "{:<W$} | what-if", "original");
        let _ = writeln!(out, "{:-<W$}-+-{:-<W$}", "", "");
        let (a, b) = (&self.original, what_if);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            let row = match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x == y => {
                    i += 1;
                    j += 1;
                    (x.label(), "〃".to_owned())
                }
                (Some(x), Some(y)) if x.start_ms() <= y.start_ms() => {
                    i += 1;
                    (x.label(), String::new())
                }
                (Some(x), None) => {
                    i += 1;
                    (x.label(), String::new())
                }
                (_, Some(y)) => {
                    j += 1;
                    (String::new(), y.label())
                }
                (None, None) => break,
            };
            let _ = writeln!(out, "{:<W$} | {}", row.0, row.1);
        }
        if let (Some(w), o) = (&self.what_if_summary, &self.original_summary) {
            let _ = writeln!(
                out,
                "bot utterances {} → {}, cut {} → {}, pauses {} → {}, turns committed {} → {}",
                o.bot_utterances,
                w.bot_utterances,
                o.cut,
                w.cut,
                o.pauses,
                w.pauses,
                o.turns_committed,
                w.turns_committed
            );
        }
        out
    }
}

/// Collects the moments of a run from its actions and the bot's pause state.
#[derive(Debug, Default)]
struct TimelineBuilder {
    moments: Vec<Moment>,
    paused_since: Option<u64>,
}

impl TimelineBuilder {
    fn action(&mut self, a: &Action, at: u64) {
        match a {
            Action::SendClear => self.moments.push(Moment::Cleared { at_ms: at }),
            Action::Record(Record::Transcript(e)) => self.moments.push(match e.speaker {
                Speaker::Assistant => Moment::Spoke {
                    from_ms: e.start.0,
                    to_ms: e.end.0,
                    text: e.text.clone(),
                    cut: e.interrupted,
                },
                Speaker::User => Moment::CallerSaid {
                    from_ms: e.start.0,
                    to_ms: e.end.0,
                    text: e.text.clone(),
                    backchannel: e.backchannel,
                },
            }),
            Action::Record(Record::Turn(m)) => {
                if let Some(c) = m.committed {
                    self.moments.push(Moment::Committed {
                        at_ms: c.0,
                        turn: m.turn,
                    });
                }
            }
            Action::HangUp { reason, .. } => self.moments.push(Moment::Ended {
                at_ms: at,
                how: format!("hang_up:{}", reason.as_str()),
            }),
            Action::Transfer { .. } => self.moments.push(Moment::Ended {
                at_ms: at,
                how: "transfer".to_owned(),
            }),
            Action::CompleteWarmTransfer { .. } => self.moments.push(Moment::Ended {
                at_ms: at,
                how: "transfer_warm".to_owned(),
            }),
            _ => {}
        }
    }

    fn state(&mut self, paused: bool, at: u64) {
        match (paused, self.paused_since) {
            (true, None) => self.paused_since = Some(at),
            (false, Some(from)) => {
                self.paused_since = None;
                self.moments.push(Moment::Paused {
                    from_ms: from,
                    to_ms: at,
                });
            }
            _ => {}
        }
    }

    fn finish(mut self, end: u64) -> Vec<Moment> {
        self.state(false, end);
        // Stable: moments starting at the same ms keep the order they happened in.
        self.moments.sort_by_key(Moment::start_ms);
        self.moments
    }
}

/// One action of the exact run: the index of the event that produced it, its time, and the
/// action (`None` for a media frame).
#[derive(Debug)]
struct Logged {
    event: usize,
    at: u64,
    action: Option<Action>,
}

/// What the exact replay produced.
#[derive(Debug)]
struct ExactRun {
    decisions: Vec<Decision>,
    trailing_frames: u64,
    timeline: Vec<Moment>,
    log: Vec<Logged>,
}

fn run_exact(trace: &Trace) -> ExactRun {
    let mut core = CallCore::new(trace.settings.clone(), Millis(0));
    let mut scratch = Vec::new();
    let mut offset = 0usize;
    let mut decisions = Vec::with_capacity(trace.decisions.len());
    let mut frames = 0u64;
    let mut log = Vec::new();
    let mut timeline = TimelineBuilder::default();
    let mut last = 0;
    for (i, e) in trace.events.iter().enumerate() {
        let audio: &[u8] = match e.event {
            TraceEvent::CallerAudio { bytes } => {
                let end = (offset + bytes as usize).min(trace.caller_audio.len());
                let a = &trace.caller_audio[offset.min(end)..end];
                offset = end;
                a
            }
            _ => &[],
        };
        e.event
            .feed(&mut core, Millis(e.at_ms), audio, &mut scratch);
        last = e.at_ms;
        while let Some(a) = core.poll_action() {
            timeline.action(&a, e.at_ms);
            match describe(&a) {
                None => {
                    frames += 1;
                    log.push(Logged {
                        event: i,
                        at: e.at_ms,
                        action: None,
                    });
                }
                Some(text) => {
                    decisions.push(Decision {
                        at_ms: e.at_ms,
                        frames_before: std::mem::take(&mut frames),
                        action: text,
                    });
                    log.push(Logged {
                        event: i,
                        at: e.at_ms,
                        action: Some(a),
                    });
                }
            }
        }
        timeline.state(core.bot_state() == BotState::Paused, e.at_ms);
    }
    ExactRun {
        decisions,
        trailing_frames: frames,
        timeline: timeline.finish(last),
        log,
    }
}

/// One recorded LLM request and the response events that followed it.
#[derive(Debug)]
struct LlmRound {
    generation: u64,
    at: u64,
    event: usize,
    last_user: String,
    /// (ms after the request, event).
    events: Vec<(u64, TraceEvent)>,
    ends: bool,
}

/// One recorded TTS generation: its text and the audio events after its first text.
#[derive(Debug, Default)]
struct TtsPlan {
    first_text: String,
    first_at: u64,
    /// (ms after the first text, event): audio and failures.
    events: Vec<(u64, TraceEvent)>,
    /// ms after the first text when the provider reported it done.
    done_after: Option<u64>,
}

/// Who a scheduled event belongs to (what cancels it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Caller,
    Llm(u64),
    Tts(u64),
    Tool(u64),
    Mark,
    Classify,
}

/// A scheduled input of the what-if run.
#[derive(Debug)]
struct Scheduled {
    owner: Owner,
    /// Index of a recorded caller-side event, or a synthetic event.
    source: Source,
}

#[derive(Debug)]
enum Source {
    Recorded(usize),
    Synthetic(TraceEvent),
}

/// A what-if generation's TTS state.
#[derive(Debug, Default)]
struct TtsState {
    plan: Option<usize>,
    chars: usize,
    /// Audio bytes scheduled so far and when the last one comes.
    bytes: u64,
    last_at: u64,
    shift_from: u64,
}

/// The what-if run: a fresh core with other settings, the caller's side as recorded, the
/// providers and Twilio modelled from the recording (see the module docs).
struct WhatIf<'a> {
    trace: &'a Trace,
    core: CallCore,
    queue: BTreeMap<(u64, u64), Scheduled>,
    seq: u64,
    audio_offsets: Vec<usize>,
    rounds: Vec<LlmRound>,
    rounds_used: Vec<bool>,
    /// what-if generation → (index of its current round).
    llm_of: HashMap<u64, usize>,
    plans: Vec<TtsPlan>,
    plans_used: Vec<bool>,
    plan_of_gen: HashMap<u64, usize>,
    tts: HashMap<u64, TtsState>,
    tools: HashMap<String, (u64, String)>,
    classify: VecDeque<(String, u64, bool)>,
    bytes_per_char: f64,
    first_audio_ms: u64,
    mark_delay_ms: u64,
    playout_end: u64,
    pending_marks: Vec<(u64, u64)>,
    timeline: TimelineBuilder,
}

impl<'a> WhatIf<'a> {
    fn new(trace: &'a Trace, exact: &ExactRun, settings: CallSettings) -> Self {
        let mut w = WhatIf {
            trace,
            core: CallCore::new(settings, Millis(0)),
            queue: BTreeMap::new(),
            seq: trace.events.len() as u64,
            audio_offsets: Vec::with_capacity(trace.events.len()),
            rounds: Vec::new(),
            rounds_used: Vec::new(),
            llm_of: HashMap::new(),
            plans: Vec::new(),
            plans_used: Vec::new(),
            plan_of_gen: HashMap::new(),
            tts: HashMap::new(),
            tools: HashMap::new(),
            classify: VecDeque::new(),
            bytes_per_char: DEFAULT_BYTES_PER_CHAR,
            first_audio_ms: DEFAULT_TTS_FIRST_AUDIO_MS,
            mark_delay_ms: 0,
            playout_end: 0,
            pending_marks: Vec::new(),
            timeline: TimelineBuilder::default(),
        };
        w.index(exact);
        w
    }

    /// Reads the recording: the caller's events (scheduled as recorded), the LLM rounds, the TTS
    /// generations, tool and classifier answers, and the measured delays.
    fn index(&mut self, exact: &ExactRun) {
        let t = self.trace;
        let mut offset = 0usize;
        for (i, e) in t.events.iter().enumerate() {
            self.audio_offsets.push(offset);
            if let TraceEvent::CallerAudio { bytes } = e.event {
                offset += bytes as usize;
            }
            if is_caller_side(&e.event) {
                self.queue.insert(
                    (e.at_ms, i as u64),
                    Scheduled {
                        owner: Owner::Caller,
                        source: Source::Recorded(i),
                    },
                );
            }
        }
        // Requests and first texts, from the exact run's actions.
        let mut plan_of: HashMap<u64, usize> = HashMap::new();
        let mut texts: HashMap<u64, usize> = HashMap::new();
        let mut tool_runs: HashMap<String, u64> = HashMap::new();
        let mut classify_asks: HashMap<u64, (String, u64)> = HashMap::new();
        let mut playout = 0u64;
        let mut mark_due: HashMap<String, u64> = HashMap::new();
        for l in &exact.log {
            match &l.action {
                None => playout = playout.max(l.at) + FRAME_MS,
                Some(Action::StartLlm {
                    generation,
                    messages,
                    ..
                }) => self.rounds.push(LlmRound {
                    generation: generation.0,
                    at: l.at,
                    event: l.event,
                    last_user: messages
                        .iter()
                        .rev()
                        .find(|m| m.role == Role::User)
                        .map(|m| m.content.clone())
                        .unwrap_or_default(),
                    events: Vec::new(),
                    ends: false,
                }),
                Some(Action::TtsText { generation, text }) => {
                    *texts.entry(generation.0).or_default() += text.chars().count();
                    plan_of.entry(generation.0).or_insert_with(|| {
                        self.plans.push(TtsPlan {
                            first_text: text.clone(),
                            first_at: l.at,
                            ..TtsPlan::default()
                        });
                        self.plans.len() - 1
                    });
                }
                Some(Action::RunTool { call, .. }) => {
                    tool_runs.insert(call.id.clone(), l.at);
                }
                Some(Action::ClassifyUtterance { request, text }) => {
                    classify_asks.insert(*request, (text.clone(), l.at));
                }
                Some(Action::SendMark(name)) => {
                    mark_due.insert(name.to_string(), playout.max(l.at));
                }
                Some(Action::SendClear) => {
                    playout = l.at;
                    for due in mark_due.values_mut() {
                        *due = (*due).min(l.at);
                    }
                }
                _ => {}
            }
        }
        // Responses, from the recorded events.
        let mut first_audio = Vec::new();
        let mut mark_delays = Vec::new();
        for (i, e) in t.events.iter().enumerate() {
            match &e.event {
                TraceEvent::LlmText { generation, .. }
                | TraceEvent::LlmToolCall { generation, .. }
                | TraceEvent::LlmDone { generation }
                | TraceEvent::LlmFailed { generation, .. } => {
                    if let Some(r) = self
                        .rounds
                        .iter_mut()
                        .rev()
                        .find(|r| r.generation == *generation && r.event < i)
                    {
                        r.ends |= matches!(
                            e.event,
                            TraceEvent::LlmDone { .. } | TraceEvent::LlmFailed { .. }
                        );
                        r.events
                            .push((e.at_ms.saturating_sub(r.at), e.event.clone()));
                    }
                }
                TraceEvent::TtsAudio { generation, .. }
                | TraceEvent::TtsDone { generation }
                | TraceEvent::TtsFailed { generation, .. } => {
                    if let Some(&p) = plan_of.get(generation) {
                        let plan = &mut self.plans[p];
                        let after = e.at_ms.saturating_sub(plan.first_at);
                        if matches!(e.event, TraceEvent::TtsDone { .. }) {
                            plan.done_after = Some(after);
                        } else {
                            if plan.events.is_empty() {
                                first_audio.push(after);
                            }
                            plan.events.push((after, e.event.clone()));
                        }
                    }
                }
                TraceEvent::ToolResult { call_id, content } => {
                    if let Some(at) = tool_runs.get(call_id) {
                        self.tools.insert(
                            call_id.clone(),
                            (e.at_ms.saturating_sub(*at), content.clone()),
                        );
                    }
                }
                TraceEvent::UtteranceClassified {
                    request,
                    incomplete,
                } => {
                    if let Some((text, at)) = classify_asks.get(request) {
                        self.classify.push_back((
                            text.clone(),
                            e.at_ms.saturating_sub(*at),
                            *incomplete,
                        ));
                    }
                }
                TraceEvent::MarkPlayed(name) => {
                    if let Some(due) = mark_due.get(name) {
                        mark_delays.push(e.at_ms.saturating_sub(*due));
                    }
                }
                _ => {}
            }
        }
        let (mut bytes, mut chars) = (0u64, 0usize);
        for (g, &p) in &plan_of {
            if self.plans[p].done_after.is_some() {
                bytes += self.plans[p]
                    .events
                    .iter()
                    .map(|(_, e)| match e {
                        TraceEvent::TtsAudio { bytes, .. } => u64::from(*bytes),
                        _ => 0,
                    })
                    .sum::<u64>();
                chars += texts.get(g).copied().unwrap_or(0);
            }
        }
        if bytes > 0 && chars > 0 {
            self.bytes_per_char = bytes as f64 / chars as f64;
        }
        if let Some(m) = median(&mut first_audio) {
            self.first_audio_ms = m;
        }
        self.mark_delay_ms = median(&mut mark_delays).unwrap_or(0);
        self.rounds_used = vec![false; self.rounds.len()];
        self.plans_used = vec![false; self.plans.len()];
        // Plans of LLM replies are found through their request, not by text.
        for r in &self.rounds {
            if let Some(&p) = plan_of.get(&r.generation) {
                self.plan_of_gen.insert(r.generation, p);
            }
        }
    }

    fn schedule(&mut self, at: u64, owner: Owner, event: TraceEvent) {
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Scheduled {
                owner,
                source: Source::Synthetic(event),
            },
        );
    }

    fn cancel(&mut self, owner: Owner) {
        self.queue.retain(|_, s| s.owner != owner);
    }

    fn run(mut self) -> Vec<Moment> {
        let end_limit = self
            .trace
            .events
            .last()
            .map_or(0, |e| e.at_ms)
            .saturating_add(WHAT_IF_TAIL_MS);
        let mut scratch = Vec::new();
        let mut now = 0u64;
        for _ in 0..WHAT_IF_MAX_STEPS {
            if self.core.is_ended() {
                break;
            }
            let next = self.queue.keys().next().map(|k| k.0);
            let deadline = self.core.poll_timeout().map(|d| d.0.max(now));
            let timeout_first = match (deadline, next) {
                (Some(d), Some(n)) => d < n,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if timeout_first {
                now = deadline.unwrap_or(now);
                if now > end_limit {
                    break;
                }
                self.core.handle(crate::call::Event::Timeout, Millis(now));
            } else {
                let Some(((at, _), s)) = self.queue.pop_first() else {
                    break;
                };
                now = now.max(at);
                if now > end_limit {
                    break;
                }
                match &s.source {
                    Source::Recorded(i) => {
                        let e = &self.trace.events[*i];
                        let audio = match e.event {
                            TraceEvent::CallerAudio { bytes } => {
                                let from = self.audio_offsets[*i];
                                let to = (from + bytes as usize).min(self.trace.caller_audio.len());
                                &self.trace.caller_audio[from.min(to)..to]
                            }
                            _ => &[],
                        };
                        e.event
                            .feed(&mut self.core, Millis(now), audio, &mut scratch);
                    }
                    Source::Synthetic(ev) => {
                        ev.feed(&mut self.core, Millis(now), &[], &mut scratch)
                    }
                }
            }
            while let Some(a) = self.core.poll_action() {
                self.timeline.action(&a, now);
                self.react(a, now);
            }
            let paused = self.core.bot_state() == BotState::Paused;
            self.timeline.state(paused, now);
        }
        self.timeline.finish(now)
    }

    /// Models the providers' and Twilio's answer to one action.
    fn react(&mut self, a: Action, now: u64) {
        match a {
            Action::SendMedia(_) => self.playout_end = self.playout_end.max(now) + FRAME_MS,
            Action::SendMark(name) => {
                let due = self.playout_end.max(now);
                self.seq += 1;
                let key = (due + self.mark_delay_ms, self.seq);
                self.queue.insert(
                    key,
                    Scheduled {
                        owner: Owner::Mark,
                        source: Source::Synthetic(TraceEvent::MarkPlayed(name.to_string())),
                    },
                );
                self.pending_marks.push(key);
            }
            Action::SendClear => {
                // Twilio drops the queued audio and echoes every mark still pending.
                self.playout_end = now;
                let at = now + self.mark_delay_ms;
                for key in std::mem::take(&mut self.pending_marks) {
                    if key.0 > at
                        && let Some(s) = self.queue.remove(&key)
                    {
                        self.seq += 1;
                        self.queue.insert((at, self.seq), s);
                    }
                }
            }
            Action::StartLlm {
                generation,
                messages,
                ..
            } => {
                // One stream at a time: a new request ends the previous one.
                self.queue.retain(|_, s| !matches!(s.owner, Owner::Llm(_)));
                let g = generation.0;
                let last_user = messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.as_str())
                    .unwrap_or_default();
                let round = self.pick_round(g, last_user);
                self.llm_of.insert(g, round.unwrap_or(usize::MAX));
                let Some(r) = round else {
                    self.schedule(now, Owner::Llm(g), TraceEvent::LlmDone { generation: g });
                    return;
                };
                self.rounds_used[r] = true;
                if let Some(&p) = self.plan_of_gen.get(&self.rounds[r].generation) {
                    self.tts.entry(g).or_default().plan = Some(p);
                }
                let events: Vec<(u64, TraceEvent)> = self.rounds[r]
                    .events
                    .iter()
                    .map(|(after, e)| (now + after, with_generation(e, g)))
                    .collect();
                let last = events.last().map_or(now, |e| e.0);
                for (at, e) in events {
                    self.schedule(at, Owner::Llm(g), e);
                }
                if !self.rounds[r].ends {
                    // Cut in the original: the reply ends where the recording of it ends.
                    self.schedule(last, Owner::Llm(g), TraceEvent::LlmDone { generation: g });
                }
            }
            Action::CancelLlm { generation } => self.cancel(Owner::Llm(generation.0)),
            Action::TtsText { generation, text } => self.tts_text(generation.0, &text, now),
            Action::TtsFlush {
                generation,
                end_of_generation: true,
            } => self.tts_end(generation.0, now),
            Action::TtsCancel { generation } => self.cancel(Owner::Tts(generation.0)),
            Action::RunTool { generation, call } => {
                let (after, content) = self.tools.get(&call.id).cloned().unwrap_or_else(|| {
                    (
                        0,
                        "{\"ok\":false,\"error\":\"not in the recording\"}".to_owned(),
                    )
                });
                self.schedule(
                    now + after,
                    Owner::Tool(generation.0),
                    TraceEvent::ToolResult {
                        call_id: call.id,
                        content,
                    },
                );
            }
            Action::CancelTools { generation } => self.cancel(Owner::Tool(generation.0)),
            Action::ClassifyUtterance { request, text } => {
                if let Some(i) = self.classify.iter().position(|(t, _, _)| *t == text)
                    && let Some((_, after, incomplete)) = self.classify.remove(i)
                {
                    self.schedule(
                        now + after,
                        Owner::Classify,
                        TraceEvent::UtteranceClassified {
                            request,
                            incomplete,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// The recorded round answering what-if generation `g`'s request.
    fn pick_round(&self, g: u64, last_user: &str) -> Option<usize> {
        if let Some(&prev) = self.llm_of.get(&g) {
            // A further tool round of the same reply: the original's next round.
            let orig = self.rounds.get(prev)?.generation;
            return (prev + 1..self.rounds.len()).find(|&i| self.rounds[i].generation == orig);
        }
        let first_rounds = (0..self.rounds.len()).filter(|&i| {
            let gen_ = self.rounds[i].generation;
            self.rounds[..i].iter().all(|r| r.generation != gen_)
        });
        let mut best: Option<(bool, f32, usize)> = None;
        for i in first_rounds {
            let score = (
                !self.rounds_used[i],
                similarity(&self.rounds[i].last_user, last_user),
                i,
            );
            let better = match best {
                None => true,
                Some(b) => (score.0, score.1) > (b.0, b.1),
            };
            if better {
                best = Some(score);
            }
        }
        best.map(|b| b.2)
    }

    fn tts_text(&mut self, g: u64, text: &str, now: u64) {
        let fresh = self.tts.get(&g).is_none_or(|s| s.chars == 0);
        let state = self.tts.entry(g).or_default();
        state.chars += text.chars().count();
        if !fresh {
            return;
        }
        let plan = state.plan.or_else(|| {
            // A scripted utterance (welcome, idle prompt, goodbye…): the same text, unused first.
            let same: Vec<usize> = (0..self.plans.len())
                .filter(|&p| self.plans[p].first_text == text)
                .collect();
            same.iter()
                .copied()
                .find(|&p| !self.plans_used[p])
                .or(same.first().copied())
        });
        let Some(p) = plan else {
            if let Some(s) = self.tts.get_mut(&g) {
                s.shift_from = now;
                s.last_at = now;
            }
            return;
        };
        self.plans_used[p] = true;
        let events: Vec<(u64, TraceEvent)> = self.plans[p]
            .events
            .iter()
            .map(|(after, e)| (now + after, with_generation(e, g)))
            .collect();
        let mut bytes = 0;
        let mut last = now;
        for (at, e) in events {
            if let TraceEvent::TtsAudio { bytes: b, .. } = e {
                bytes += u64::from(b);
            }
            last = at;
            self.schedule(at, Owner::Tts(g), e);
        }
        if let Some(s) = self.tts.get_mut(&g) {
            s.plan = Some(p);
            s.bytes = bytes;
            s.last_at = last;
            s.shift_from = now;
        }
    }

    fn tts_end(&mut self, g: u64, now: u64) {
        let Some(s) = self.tts.get(&g) else {
            self.schedule(now, Owner::Tts(g), TraceEvent::TtsDone { generation: g });
            return;
        };
        let done = s
            .plan
            .and_then(|p| self.plans[p].done_after)
            .map(|after| (s.shift_from + after).max(now));
        let wanted = (s.chars as f64 * self.bytes_per_char) as u64;
        let (bytes, last_at, plan) = (s.bytes, s.last_at, s.plan);
        match done {
            Some(at) => self.schedule(at, Owner::Tts(g), TraceEvent::TtsDone { generation: g }),
            None => {
                // The original never got all of it (cut, or no such utterance): make up the
                // rest at the recorded rate.
                let at = if plan.is_some() {
                    last_at.max(now)
                } else {
                    now + self.first_audio_ms
                };
                let missing = wanted.saturating_sub(bytes);
                if missing > 0 {
                    self.schedule(
                        at,
                        Owner::Tts(g),
                        TraceEvent::TtsAudio {
                            generation: g,
                            bytes: u32::try_from(missing).unwrap_or(u32::MAX),
                            alignment: None,
                        },
                    );
                }
                self.schedule(at, Owner::Tts(g), TraceEvent::TtsDone { generation: g });
            }
        }
    }
}

/// Whether the caller's side (or the operator, or a transfer's agent) produced this event:
/// replayed as recorded.
fn is_caller_side(e: &TraceEvent) -> bool {
    matches!(
        e,
        TraceEvent::CallStarted
            | TraceEvent::CallerAudio { .. }
            | TraceEvent::SttSpeechStarted
            | TraceEvent::SttInterim(_)
            | TraceEvent::SttFinal { .. }
            | TraceEvent::SttUtteranceEnd
            | TraceEvent::SttEndOfTurn(_)
            | TraceEvent::SttEagerEndOfTurn(_)
            | TraceEvent::SttTurnResumed
            | TraceEvent::SttFailed { .. }
            | TraceEvent::Dtmf(_)
            | TraceEvent::PlayDtmf { .. }
            | TraceEvent::HangUpRequested { .. }
            | TraceEvent::TransferRequested { .. }
            | TraceEvent::WarmTransferRequested(_)
            | TraceEvent::WarmTransferResult { .. }
            | TraceEvent::CallerHungUp
    )
}

/// `e` with its generation replaced by `g` (provider events follow the what-if generation).
fn with_generation(e: &TraceEvent, g: u64) -> TraceEvent {
    let mut e = e.clone();
    match &mut e {
        TraceEvent::LlmText { generation, .. }
        | TraceEvent::LlmToolCall { generation, .. }
        | TraceEvent::LlmDone { generation }
        | TraceEvent::LlmFailed { generation, .. }
        | TraceEvent::TtsAudio { generation, .. }
        | TraceEvent::TtsDone { generation }
        | TraceEvent::TtsFailed { generation, .. } => *generation = g,
        _ => {}
    }
    e
}

fn median(v: &mut [u64]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    Some(v[v.len() / 2])
}
