//! From the fake calls' timelines (and the engine's per-turn metrics) to the harness's JSON report
//! (issue 6's shape) and its summary table.
//!
//! Definitions (all ms):
//! - **turn latency**: the script's end of a caller turn (`end_ms`) → the first bot audio frame
//!   the caller receives after it (the start of a new playback segment).
//! - **engine overhead**: turn latency minus the time spent inside the providers, from the
//!   engine's per-turn metrics: `max(0, llm_request − stt_final) + max(0, first_audio_sent −
//!   tts_first_byte) + delivery`. Everything from speech end to the STT final (endpointing and
//!   the STT's delay) and from the LLM request to the first TTS byte (time to first token, tokens
//!   until the first speakable chunk, TTS first byte) is provider time; what is left is the
//!   engine's dispatch, framing and pacing plus the socket hop to the caller. The engine's clock
//!   starts when it has accepted `start` (after a database lookup), later than the caller's, so
//!   delivery is measured against the call's fastest turn: `(received − first_audio_sent) −
//!   min over the call's turns of the same`. The report gives the two parts apart too
//!   (`engine_overhead_parts`: in the engine, and delivery).
//! - **frame lateness**: for every bot chunk inside a reply after its first, how long the caller's
//!   playback buffer had been dry when it arrived (0 when on time).
//! - **interruption reaction**, **clear** and **backchannel gap**: see [`crate::interruption`]
//!   (onset → playback silent, onset → `clear`, and the silence a backchannel causes).

use serde::{Deserialize, Serialize};
use switchboard_testkit::twilio::{CallOutcome, CallReport, EndedBy, UtteranceKind};

use crate::procfs::EngineUsage;
use crate::stats::{Pct3, Pct4};

pub use crate::interruption::CLEAR_WINDOW_AFTER_BARGE_IN_MS;

/// A turn followed by less than this much silence (ms) before the caller spoke again or hung up,
/// with no answer in between, is not counted as unanswered: the turns merged, or the script
/// ended (real callers do both).
pub const ANSWER_GRACE_MS: f64 = 3000.0;

/// How much earlier (ms) than the script's speech end an answer's first frame may be stamped on
/// the engine's clock (what is left of the two clocks' offset once the estimate of
/// `engine_clock_behind` is taken out) and still count as sent after the speech.
pub const SPEECH_END_SLACK_MS: f64 = 300.0;

/// Without engine metrics, a run of bot audio shorter than this (ms) and cut by a `clear` is
/// taken for a fragment of an older reply resumed after a false interruption, not an answer.
pub const RESUMED_FRAGMENT_MS: f64 = 300.0;

/// How far (ms) an engine turn's `first_audio_sent_ms` may lie after the caller's receive time
/// and still be matched to it (clock offset between the two sides).
pub const MATCH_SLACK_MS: f64 = 50.0;

/// `calls` of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallCounts {
    /// Calls whose webhook was posted.
    pub started: u64,
    /// Calls that ran to their end without an error.
    pub completed: u64,
    /// Calls with at least one error (see `errors`).
    pub failed: u64,
}

/// One problem, attributed to a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEntry {
    /// The call's `CallSid`.
    pub call: String,
    /// Machine-readable kind (`ws_connect`, `turn_unanswered`, `cut_by_duration_cap`, …).
    pub kind: String,
    /// Details.
    pub message: String,
}

/// The JSON report, exactly the shape issue 6 specifies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Report {
    /// Call counts.
    pub calls: CallCounts,
    /// Caller turns the bot was expected to answer (answered or not).
    pub turns: u64,
    /// Caller speech end → first bot frame received, ms.
    pub turn_latency_ms: Pct4,
    /// Turn latency minus provider time, ms (turns with engine metrics only).
    pub engine_overhead_ms: Pct4,
    /// The engine overhead split into its two parts (absent without engine metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_overhead_parts: Option<OverheadParts>,
    /// Lateness of bot frames against the playback clock within replies, ms.
    pub frame_lateness_ms: Pct3,
    /// Barge-in onset → the caller's playback silent, ms.
    pub interruption_reaction_ms: Pct4,
    /// Barge-in onset → `clear` received, ms (beside the reaction).
    #[serde(default)]
    pub interruption_clear_ms: Pct4,
    /// Longest silence a backchannel caused in the reply it was said over, ms.
    #[serde(default)]
    pub backchannel_gap_ms: Pct4,
    /// Stream start → the first bot audio received (the welcome; the first reply when there
    /// is none), ms: what the engine's call setup costs the caller.
    #[serde(default)]
    pub first_audio_ms: Pct4,
    /// Every error seen.
    pub errors: Vec<ErrorEntry>,
    /// Engine CPU and memory.
    pub engine: EngineUsage,
    /// What the live-calls feed's viewers received (`--viewers N`; absent without).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_viewers: Option<crate::viewers::ViewerCounts>,
    /// The harness's own CPU and timer lag, and whether the run is valid.
    #[serde(default)]
    pub harness: crate::lag::HarnessUsage,
    /// Instances restarted during the run (`--restart-after-s`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restarts: Vec<crate::cluster::RestartReport>,
    /// What HAProxy retried and redispatched, with several instances (`--haproxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<crate::cluster::BalancerCounters>,
    /// The provider fakes were reached over TLS (`--tls`): the engine paid for TLS on every
    /// provider connection, as in production. Written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provider_tls: bool,
    /// The assistants recorded their calls (`--recording`: the record's default). Written only
    /// when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recording: bool,
    /// Every call was made to last this long, s (`--call-seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_seconds: Option<f64>,
}

/// The two parts of the engine overhead, so a reader can tell the engine's own time from the
/// socket hop: on a loaded machine the hop (the kernel, and the harness reading late) can be
/// all of a high p99.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OverheadParts {
    /// Measured on the engine's clock ([`engine_part`]: dispatch and framing), ms.
    pub in_engine_ms: Pct4,
    /// First frame sent by the engine → received by the caller, beyond the call's fastest such
    /// delivery, ms.
    pub delivery_ms: Pct4,
    /// Answered turns whose reply the engine held because the caller made a sound after it was
    /// ready and before it started (a cough, say), to learn whether the caller was going on: a
    /// turn-taking wait, not overhead. Taken out of the turn's engine part when the engine says
    /// how long it held (Switchboard); otherwise the turn is left out of the overhead.
    #[serde(default)]
    pub held_for_caller_sound: u64,
}

/// One turn of the engine's per-turn metrics (`GET /api/v1/calls/{id}/metrics`), ms since the
/// engine's call start. Unknown fields are ignored; missing ones are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct EngineTurn {
    /// Caller speech end as the engine's VAD saw it.
    pub user_speech_end_ms: Option<f64>,
    /// Last STT final of the turn.
    pub stt_final_ms: Option<f64>,
    /// LLM request issued.
    pub llm_request_ms: Option<f64>,
    /// First LLM token.
    pub llm_first_token_ms: Option<f64>,
    /// First TTS audio byte.
    pub tts_first_byte_ms: Option<f64>,
    /// First frame sent to the caller.
    pub first_audio_sent_ms: Option<f64>,
    /// Reply fully played (mark echoed).
    pub playback_done_ms: Option<f64>,
    /// How long the engine held the reply's ready first frame because the caller was making a
    /// sound (Switchboard's `extra.held_for_caller_ms`): a turn-taking wait, taken out of the
    /// engine's part. `None` from an engine that does not say; the loadgen then tells such a
    /// hold from the script ([`HELD_AFTER_SOUND_MS`]).
    #[serde(skip)]
    pub held_for_caller_ms: Option<f64>,
}

/// What one call contributed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallAnalysis {
    /// Turns expected to be answered.
    pub turns: u64,
    /// Turns answered.
    pub answered: u64,
    /// Turn latencies, ms.
    pub turn_latency_ms: Vec<f64>,
    /// Engine overheads, ms.
    pub engine_overhead_ms: Vec<f64>,
    /// Their parts measured on the engine's clock, ms (same order).
    pub overhead_in_engine_ms: Vec<f64>,
    /// Their delivery parts, ms (same order).
    pub overhead_delivery_ms: Vec<f64>,
    /// Answered turns whose reply the engine held for a caller's sound (see
    /// [`OverheadParts::held_for_caller_sound`]).
    pub held_for_caller_sound: u64,
    /// Bot chunks on time (lateness 0).
    pub frames_on_time: u64,
    /// Underrun lateness values, ms.
    pub underruns_ms: Vec<f64>,
    /// Interruption reactions (onset → playback silent), ms.
    pub interruption_reaction_ms: Vec<f64>,
    /// Barge-in onset → `clear`, ms.
    pub interruption_clear_ms: Vec<f64>,
    /// Backchannel gaps, ms.
    pub backchannel_gap_ms: Vec<f64>,
    /// Stream start → first bot audio received, ms (none when no audio came).
    pub first_audio_ms: Option<f64>,
    /// Marks received / echoed.
    pub marks: (u64, u64),
    /// Errors (kind, message).
    pub errors: Vec<(String, String)>,
    /// Harness health: worst caller-frame send lag, ms.
    pub caller_send_lag_max_ms: f64,
    /// Turns merged into the next one or hung up on within [`ANSWER_GRACE_MS`] before an answer
    /// came (not counted in `turns`).
    pub hung_up_before_answer: u64,
    /// How long the call lasted as the caller saw it, s (the call-seconds the engine served).
    pub duration_s: f64,
}

impl CallAnalysis {
    /// Whether the call counts as failed.
    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

fn expects_reply(kind: UtteranceKind) -> bool {
    matches!(kind, UtteranceKind::Turn | UtteranceKind::BargeIn)
}

/// Analyses one finished call. `engine_turns` are the engine's per-turn metrics of this call,
/// if they could be read.
pub fn analyze_call(r: &CallReport, engine_turns: Option<&[EngineTurn]>) -> CallAnalysis {
    let mut a = CallAnalysis {
        frames_on_time: r.bot_frames_on_time,
        underruns_ms: r.underruns.iter().map(|u| u.late_ms).collect(),
        marks: (r.marks_received, r.marks_echoed),
        caller_send_lag_max_ms: r.caller_send_lag_max_ms,
        duration_s: r.duration_ms / 1000.0,
        first_audio_ms: r.segments.first().map(|s| s.first_received_ms),
        ..CallAnalysis::default()
    };
    for e in &r.errors {
        a.errors.push((e.kind.to_owned(), e.message.clone()));
    }
    match r.outcome {
        CallOutcome::Completed => {}
        CallOutcome::NoStream => a.errors.push((
            "no_stream".into(),
            "the TwiML did not connect a media stream".into(),
        )),
        CallOutcome::Failed if r.errors.is_empty() => {
            a.errors.push(("call_failed".into(), "call failed".into()))
        }
        CallOutcome::Failed => {}
    }
    if r.outcome != CallOutcome::Completed {
        return a;
    }
    let end_ms = r.duration_ms;
    match r.ended_by {
        Some(EndedBy::MaxDuration) => a.errors.push((
            "cut_by_duration_cap".into(),
            format!("still running at the --duration-seconds cap ({end_ms:.0} ms in)"),
        )),
        Some(EndedBy::Engine) => a.errors.push((
            "engine_hung_up".into(),
            format!("the engine closed the stream at {end_ms:.0} ms, before the script's end"),
        )),
        _ => {}
    }

    // Turns: each reply-expecting utterance is answered by the first playback segment that starts
    // after it ends and before the next reply-expecting utterance ends.
    let expecting: Vec<_> = r
        .utterances
        .iter()
        .filter(|u| expects_reply(u.kind))
        .collect();
    // (the engine turn, the answered utterance's end, the engine part, the delivery)
    let mut matched: Vec<(EngineTurn, f64, f64, f64)> = Vec::new();
    let clock_behind = engine_turns.map_or(0.0, |turns| engine_clock_behind(turns, r));
    for (i, u) in expecting.iter().enumerate() {
        let speech_end = u.end_ms as f64;
        if speech_end >= end_ms {
            continue; // The call ended before this turn was over.
        }
        let window_end = expecting
            .get(i + 1)
            .map_or(f64::INFINITY, |n| n.end_ms as f64);
        a.turns += 1;
        let mut candidates = r
            .segments
            .iter()
            .filter(|s| s.first_received_ms > speech_end && s.first_received_ms <= window_end);
        // With the engine's metrics, the answer is the audio of the engine turn finalised after
        // this utterance began; without them, the first run of audio that is not a fragment of
        // an older reply resumed and then cut by a `clear`.
        let (seg, engine_turn) = match engine_turns {
            Some(turns) => match answering_turn(
                turns,
                u.start_ms as f64 - clock_behind,
                speech_end - clock_behind,
                window_end - clock_behind,
            ) {
                Some(t) => {
                    let sent = t.first_audio_sent_ms.unwrap_or(f64::INFINITY) + clock_behind;
                    (
                        candidates.find(|s| s.first_received_ms + MATCH_SLACK_MS >= sent),
                        Some(t),
                    )
                }
                None => (None, None),
            },
            None => (
                candidates.find(|s| !(s.cleared && s.end_ms - s.start_ms < RESUMED_FRAGMENT_MS)),
                None,
            ),
        };
        let Some(seg) = seg else {
            // The caller spoke again, or hung up, before an answer could come: the turns merge
            // (or the script ended); only a long silence without an answer is an error.
            let silence_end = r
                .utterances
                .iter()
                .map(|n| n.start_ms as f64)
                .find(|&s| s > speech_end)
                .unwrap_or(end_ms)
                .min(end_ms);
            if silence_end - speech_end < ANSWER_GRACE_MS {
                a.turns -= 1;
                a.hung_up_before_answer += 1;
                continue;
            }
            a.errors.push((
                "turn_unanswered".into(),
                format!("no bot audio after the caller turn ending at {speech_end:.0} ms"),
            ));
            continue;
        };
        a.answered += 1;
        let received = seg.first_received_ms;
        a.turn_latency_ms.push(received - speech_end);
        if let Some(t) = engine_turn
            && let (Some(part), Some(sent)) = (engine_part(t), t.first_audio_sent_ms)
        {
            matched.push((*t, speech_end, part, received - sent));
        }
    }
    // Align the two clocks: the engine's starts when it has accepted `start`, a little after the
    // caller's. The call's fastest delivery (caller receive − engine send) is taken as the offset;
    // each turn's delivery beyond it is engine (or socket) delay.
    let offset = matched
        .iter()
        .map(|&(_, _, _, d)| d)
        .fold(f64::INFINITY, f64::min);
    for (t, speech_end, part, d) in matched {
        match t.held_for_caller_ms {
            // Said by the engine, and already out of `part`.
            Some(held) if held > 0.0 => a.held_for_caller_sound += 1,
            Some(_) => {}
            None if caller_sound_held_reply(r, &t, speech_end, offset) => {
                a.held_for_caller_sound += 1;
                continue;
            }
            None => {}
        }
        let delivery = (d - offset).max(0.0);
        a.engine_overhead_ms.push(part + delivery);
        a.overhead_in_engine_ms.push(part);
        a.overhead_delivery_ms.push(delivery);
    }

    // Interruptions and backchannels, from the playback clock.
    let i = crate::interruption::analyze(r);
    a.interruption_reaction_ms = i.reaction_ms;
    a.interruption_clear_ms = i.clear_ms;
    a.backchannel_gap_ms = i.backchannel_gap_ms;
    a.errors.extend(i.errors);
    a
}

/// How far (ms) the engine's call clock runs behind the caller's, estimated before turns are
/// matched: for each engine turn that sent audio, the time from its `first_audio_sent_ms` to the
/// first run of audio the caller received from then on; the median of those (a reply never
/// heard, or one sent soon after another, gives an outlier either way), never below 0, 0 without
/// any. The engine's clock starts once it has set the call up after `start` (it reads the call,
/// the assistant and the provider keys): usually a few ms after the caller's, but seconds after
/// it when the database is slow. Turns are matched with this taken out.
fn engine_clock_behind(turns: &[EngineTurn], r: &CallReport) -> f64 {
    let mut gaps: Vec<f64> = turns
        .iter()
        .filter_map(|t| t.first_audio_sent_ms)
        .filter_map(|sent| {
            r.segments
                .iter()
                .map(|s| s.first_received_ms)
                .find(|&received| received + MATCH_SLACK_MS >= sent)
                .map(|received| received - sent)
        })
        .collect();
    if gaps.is_empty() {
        return 0.0;
    }
    gaps.sort_by(f64::total_cmp);
    gaps[(gaps.len() - 1) / 2].max(0.0)
}

/// The engine turn answering a caller utterance spoken from `speech_start_ms` to
/// `speech_end_ms`: the first (by `first_audio_sent_ms`) of the turns finalised after the
/// utterance began whose audio went out after it ended (within [`SPEECH_END_SLACK_MS`]) and no
/// later than `until_ms`. A reply resumed after a false interruption belongs to an older turn,
/// and a premature reply sent while the caller still talked is not an answer.
pub fn answering_turn(
    turns: &[EngineTurn],
    speech_start_ms: f64,
    speech_end_ms: f64,
    until_ms: f64,
) -> Option<&EngineTurn> {
    turns
        .iter()
        .filter(|t| {
            t.stt_final_ms.is_some_and(|f| f >= speech_start_ms)
                && t.first_audio_sent_ms
                    .is_some_and(|s| s >= speech_end_ms - SPEECH_END_SLACK_MS && s <= until_ms)
        })
        .min_by(|a, b| {
            a.first_audio_sent_ms
                .unwrap_or(0.0)
                .total_cmp(&b.first_audio_sent_ms.unwrap_or(0.0))
        })
}

/// How long after a caller's sound ends Switchboard still holds a reply it made during it
/// (ms): the record's default `interruption_settings.confirmation_window_ms`, which the
/// assistants `--spawn-fakes` creates keep.
pub const HELD_AFTER_SOUND_MS: f64 = 400.0;

/// Whether the caller made a sound (any utterance of the script after the answered one, which
/// ended at `speech_end`: a cough, a word) that had begun before the turn's first frame went out and was still being weighed when the reply
/// was ready (it ended less than [`HELD_AFTER_SOUND_MS`] before): the engine holds a reply
/// nothing of which was heard yet until it knows whether the caller is going on, a
/// turn-taking decision, not engine overhead. `offset` maps the engine's clock onto the
/// caller's (the call's fastest delivery).
fn caller_sound_held_reply(r: &CallReport, t: &EngineTurn, speech_end: f64, offset: f64) -> bool {
    let (Some(ready), Some(sent)) = (reply_ready_ms(t), t.first_audio_sent_ms) else {
        return false;
    };
    let (ready, sent) = (ready + offset, sent + offset);
    r.utterances
        .iter()
        .filter(|u| u.start_ms as f64 >= speech_end)
        .any(|u| (u.start_ms as f64) < sent && u.end_ms as f64 + HELD_AFTER_SOUND_MS > ready)
}

/// The engine-side part of a turn's overhead, all on the engine's clock:
/// `max(0, llm_request − stt_final) + max(0, first_audio_sent − max(tts_first_byte, stt_final)
/// − held_for_caller)`.
/// A speculative LLM request sent before the final costs nothing, and neither does the time its
/// audio (first byte before the final) was held waiting for the final: until then the turn was
/// waiting on the STT, which is provider time. Counting framing from the TTS first byte alone
/// made every early speculative reply's hold look like engine overhead (p99 1.2 s).
pub fn engine_part(t: &EngineTurn) -> Option<f64> {
    let stt_final = t.stt_final_ms?;
    let dispatch = (t.llm_request_ms? - stt_final).max(0.0);
    let held = t.held_for_caller_ms.unwrap_or(0.0);
    let framing = (t.first_audio_sent_ms? - reply_ready_ms(t)? - held).max(0.0);
    Some(dispatch + framing)
}

/// When the turn's reply could first have gone out, on the engine's clock: its first TTS byte,
/// or the STT final if that came later (a speculative reply waits for it).
fn reply_ready_ms(t: &EngineTurn) -> Option<f64> {
    Some(t.tts_first_byte_ms?.max(t.stt_final_ms?))
}

/// Collects call analyses into the report.
#[derive(Debug, Default)]
pub struct Aggregate {
    started: u64,
    completed: u64,
    failed: u64,
    turns: u64,
    answered: u64,
    turn_latency: Vec<f64>,
    overhead: Vec<f64>,
    in_engine: Vec<f64>,
    delivery: Vec<f64>,
    held_for_caller_sound: u64,
    lateness: Vec<f64>,
    reaction: Vec<f64>,
    clear: Vec<f64>,
    backchannel_gap: Vec<f64>,
    first_audio: Vec<f64>,
    /// Seconds of every call, summed.
    call_seconds: f64,
    errors: Vec<ErrorEntry>,
    marks_received: u64,
    marks_echoed: u64,
    caller_lag_max_ms: f64,
    calls_with_metrics: u64,
    hung_up_before_answer: u64,
}

/// Figures of the summary table beyond the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Extras {
    /// Turns answered.
    pub answered: u64,
    /// Turns that had engine metrics.
    pub overhead_samples: u64,
    /// Marks received.
    pub marks_received: u64,
    /// Marks echoed.
    pub marks_echoed: u64,
    /// Worst caller-frame send lag in the harness, ms.
    pub caller_lag_max_ms: f64,
    /// Bot frames measured for lateness.
    pub frames: u64,
    /// Turns merged or hung up on before an answer could come (not in `turns`).
    pub hung_up_before_answer: u64,
}

impl Aggregate {
    /// Adds one call.
    pub fn add(&mut self, call_sid: &str, a: CallAnalysis, had_metrics: bool) {
        self.started += 1;
        if a.failed() {
            self.failed += 1;
        } else {
            self.completed += 1;
        }
        if had_metrics {
            self.calls_with_metrics += 1;
        }
        self.turns += a.turns;
        self.answered += a.answered;
        self.hung_up_before_answer += a.hung_up_before_answer;
        self.call_seconds += a.duration_s;
        self.turn_latency.extend(a.turn_latency_ms);
        self.overhead.extend(a.engine_overhead_ms);
        self.in_engine.extend(a.overhead_in_engine_ms);
        self.delivery.extend(a.overhead_delivery_ms);
        self.held_for_caller_sound += a.held_for_caller_sound;
        self.lateness
            .extend(std::iter::repeat_n(0.0, a.frames_on_time as usize));
        self.lateness.extend(a.underruns_ms);
        self.reaction.extend(a.interruption_reaction_ms);
        self.clear.extend(a.interruption_clear_ms);
        self.backchannel_gap.extend(a.backchannel_gap_ms);
        self.first_audio.extend(a.first_audio_ms);
        self.marks_received += a.marks.0;
        self.marks_echoed += a.marks.1;
        self.caller_lag_max_ms = self.caller_lag_max_ms.max(a.caller_send_lag_max_ms);
        for (kind, message) in a.errors {
            self.errors.push(ErrorEntry {
                call: call_sid.to_owned(),
                kind,
                message,
            });
        }
    }

    /// Adds an error not tied to one call's timeline (e.g. a metrics fetch).
    pub fn add_error(&mut self, call: &str, kind: &str, message: String) {
        self.errors.push(ErrorEntry {
            call: call.to_owned(),
            kind: kind.to_owned(),
            message,
        });
    }

    /// The report and the table extras.
    pub fn finish(mut self, mut engine: EngineUsage) -> (Report, Extras) {
        engine.cpu_us_per_call_second = engine
            .cpu_seconds
            .filter(|_| self.call_seconds > 0.0)
            .map(|cpu| (cpu * 1e6 / self.call_seconds).round());
        let extras = Extras {
            answered: self.answered,
            overhead_samples: self.overhead.len() as u64,
            marks_received: self.marks_received,
            marks_echoed: self.marks_echoed,
            caller_lag_max_ms: self.caller_lag_max_ms,
            frames: self.lateness.len() as u64,
            hung_up_before_answer: self.hung_up_before_answer,
        };
        let report = Report {
            calls: CallCounts {
                started: self.started,
                completed: self.completed,
                failed: self.failed,
            },
            turns: self.turns,
            turn_latency_ms: Pct4::of(&mut self.turn_latency),
            engine_overhead_ms: Pct4::of(&mut self.overhead),
            engine_overhead_parts: (!self.overhead.is_empty() || self.held_for_caller_sound > 0)
                .then(|| OverheadParts {
                    in_engine_ms: Pct4::of(&mut self.in_engine),
                    delivery_ms: Pct4::of(&mut self.delivery),
                    held_for_caller_sound: self.held_for_caller_sound,
                }),
            frame_lateness_ms: Pct3::of(&mut self.lateness),
            interruption_reaction_ms: Pct4::of(&mut self.reaction),
            interruption_clear_ms: Pct4::of(&mut self.clear),
            backchannel_gap_ms: Pct4::of(&mut self.backchannel_gap),
            first_audio_ms: Pct4::of(&mut self.first_audio),
            errors: self.errors,
            engine,
            live_viewers: None,
            harness: crate::lag::HarnessUsage::default(),
            restarts: Vec::new(),
            balancer: None,
            provider_tls: false,
            recording: false,
            call_seconds: None,
        };
        (report, extras)
    }
}

fn f(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"))
}

/// The human summary printed at the end of a run.
pub fn summary_table(r: &Report, x: &Extras, wall_s: f64) -> String {
    let mut s = String::new();
    let c = &r.calls;
    s.push_str(&format!(
        "calls: {} started, {} completed, {} failed   wall {wall_s:.1} s\n",
        c.started, c.completed, c.failed
    ));
    s.push_str(&format!(
        "turns: {} expected, {} answered ({} more merged or hung up on within {:.0} s)   marks echoed {}/{}   bot frames {}\n",
        r.turns,
        x.answered,
        x.hung_up_before_answer,
        ANSWER_GRACE_MS / 1000.0,
        x.marks_echoed,
        x.marks_received,
        x.frames
    ));
    s.push_str(&format!(
        "{:<26}{:>9}{:>9}{:>9}{:>9}\n",
        "ms", "p50", "p95", "p99", "max"
    ));
    let row4 = |name: &str, p: &Pct4| {
        format!(
            "{name:<26}{:>9}{:>9}{:>9}{:>9}\n",
            f(p.p50),
            f(p.p95),
            f(p.p99),
            f(p.max)
        )
    };
    let row3 = |name: &str, p: &Pct3| {
        format!(
            "{name:<26}{:>9}{:>9}{:>9}{:>9}\n",
            f(p.p50),
            "",
            f(p.p99),
            f(p.max)
        )
    };
    s.push_str(&row4("turn latency", &r.turn_latency_ms));
    s.push_str(&row4(
        &format!("engine overhead (n={})", x.overhead_samples),
        &r.engine_overhead_ms,
    ));
    if let Some(parts) = &r.engine_overhead_parts {
        s.push_str(&row4("  in the engine", &parts.in_engine_ms));
        s.push_str(&row4("  delivery", &parts.delivery_ms));
        if parts.held_for_caller_sound > 0 {
            s.push_str(&format!(
                "  ({} turns held while the caller made a sound: that wait is not overhead)\n",
                parts.held_for_caller_sound
            ));
        }
    }
    s.push_str(&row3("frame lateness", &r.frame_lateness_ms));
    s.push_str(&row4("interruption reaction", &r.interruption_reaction_ms));
    s.push_str(&row4("  clear", &r.interruption_clear_ms));
    s.push_str(&row4("backchannel gap", &r.backchannel_gap_ms));
    s.push_str(&row4("first audio", &r.first_audio_ms));
    let e = &r.engine;
    s.push_str(&format!(
        "engine: cpu {} s ({} % avg), {} µs per call-second ({} % of a core per call), rss peak {} MiB, {} KiB/call\n",
        f(e.cpu_seconds),
        f(e.cpu_percent_avg),
        f(e.cpu_us_per_call_second),
        e.cpu_us_per_call_second
            .map_or_else(|| "-".to_owned(), |us| format!("{:.3}", us / 1e4)),
        f(e.rss_peak_mb),
        f(e.rss_per_call_kb)
    ));
    s.push_str(&format!(
        "harness: worst caller-frame send lag {:.1} ms\n",
        x.caller_lag_max_ms
    ));
    if let Some(v) = &r.live_viewers {
        let names: Vec<String> = v.by_event.iter().map(|(k, n)| format!("{k} {n}")).collect();
        s.push_str(&format!(
            "live viewers: {} of {} connected, {} failed; events received {} ({}), dropped {}\n",
            v.connected,
            v.viewers,
            v.failed,
            v.events_received,
            names.join(", "),
            v.events_dropped
        ));
    }
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for err in &r.errors {
        match kinds.iter_mut().find(|(k, _)| *k == err.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((&err.kind, 1)),
        }
    }
    for (k, n) in kinds {
        s.push_str(&format!("error {k}: {n}\n"));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use switchboard_testkit::twilio::{CallError, PlaybackSegment, Underrun, Utterance};

    fn utt(kind: UtteranceKind, start_ms: u64, end_ms: u64) -> Utterance {
        Utterance {
            text: String::new(),
            start_ms,
            end_ms,
            kind,
        }
    }

    fn seg(first_received_ms: f64) -> PlaybackSegment {
        PlaybackSegment {
            first_received_ms,
            start_ms: first_received_ms,
            end_ms: first_received_ms + 1000.0,
            bytes: 8000,
            chunks: 10,
            underruns: 0,
            cleared: false,
        }
    }

    /// A finished call: welcome, three turns (a backchannel and a barge-in among them).
    pub(crate) fn call() -> CallReport {
        CallReport {
            script: "t".into(),
            call_sid: "CA1".into(),
            stream_sid: Some("MZ1".into()),
            outcome: CallOutcome::Completed,
            ended_by: Some(EndedBy::Script),
            webhook_status: Some(200),
            webhook_ms: Some(3.0),
            ws_connect_ms: Some(1.0),
            twiml: None,
            custom_parameters: Vec::new(),
            duration_ms: 10_000.0,
            caller_frames_sent: 500,
            caller_send_lag_max_ms: 2.5,
            caller_frames_late: 0,
            dtmf_sent: Vec::new(),
            utterances: vec![
                utt(UtteranceKind::Turn, 1000, 2000),
                utt(UtteranceKind::Backchannel, 3000, 3300),
                utt(UtteranceKind::BargeIn, 4000, 5000),
                utt(UtteranceKind::Turn, 7000, 8000),
            ],
            // welcome, reply 1, reply 2 (cleared), reply 3 after the barge-in, nothing after turn 3
            segments: vec![seg(100.0), seg(2700.0), seg(5600.0)],
            chunks: Vec::new(),
            bot_frames_on_time: 27,
            underruns: vec![Underrun {
                at_ms: 3000.0,
                late_ms: 12.0,
            }],
            bot_bytes_received: 24_000,
            bot_bytes_played: 20_000,
            marks: Vec::new(),
            marks_received: 3,
            marks_echoed: 3,
            marks_echoed_on_clear: 1,
            clears_ms: vec![4180.0],
            status_callback_status: None,
            errors: Vec::new(),
            bot_audio: Vec::new(),
        }
    }

    #[test]
    fn turns_latencies_interruptions_and_lateness() {
        let mut r = call();
        r.duration_ms = 11_500.0;
        let a = analyze_call(&r, None);
        assert_eq!(a.turns, 3);
        assert_eq!(a.answered, 2);
        assert_eq!(a.turn_latency_ms, vec![700.0, 600.0]);
        assert_eq!(a.interruption_clear_ms, vec![180.0]);
        assert_eq!(a.underruns_ms, vec![12.0]);
        assert_eq!(a.frames_on_time, 27);
        assert_eq!(a.errors.len(), 1);
        assert_eq!(a.errors[0].0, "turn_unanswered");
        assert!(a.failed());
        assert!(a.engine_overhead_ms.is_empty());
        // Hung up 2 s after the last turn: not expected to be answered, not an error.
        let a = analyze_call(&call(), None);
        assert_eq!((a.turns, a.answered, a.hung_up_before_answer), (2, 2, 1));
        assert!(a.errors.is_empty());
    }

    #[test]
    fn engine_overhead_subtracts_provider_time() {
        let turns = [
            EngineTurn {
                stt_final_ms: Some(2300.0),
                llm_request_ms: Some(2302.0),
                tts_first_byte_ms: Some(2695.0),
                first_audio_sent_ms: Some(2697.0),
                ..EngineTurn::default()
            },
            // Speculative: the LLM request went out before the final; no negative overhead.
            EngineTurn {
                stt_final_ms: Some(5300.0),
                llm_request_ms: Some(5200.0),
                tts_first_byte_ms: Some(5596.0),
                first_audio_sent_ms: Some(5598.0),
                ..EngineTurn::default()
            },
        ];
        // Turn 1: dispatch 2 + framing 2, delivery 3 ms; turn 2: 0 + 2, delivery 2 ms.
        let until = f64::INFINITY;
        let part =
            |start, end, until| answering_turn(&turns, start, end, until).and_then(engine_part);
        assert_eq!(part(1000.0, 2000.0, until), Some(4.0));
        assert_eq!(part(4000.0, 5000.0, until), Some(2.0));
        assert_eq!(part(1000.0, 2000.0, 2500.0), None);
        // An utterance that began after every final has no answering turn.
        assert_eq!(part(5400.0, 5500.0, until), None);
        // Audio sent while the caller still talked (a premature reply) is not the answer: the
        // next turn's is.
        assert_eq!(part(1000.0, 4000.0, until), Some(2.0));
        // Clock offset = the fastest delivery (2 ms); turn 1's extra 1 ms counts.
        let a = analyze_call(&call(), Some(&turns));
        assert_eq!(a.engine_overhead_ms, vec![5.0, 2.0]);
        assert_eq!(a.overhead_in_engine_ms, vec![4.0, 2.0]);
        assert_eq!(a.overhead_delivery_ms, vec![1.0, 0.0]);
        // The report gives the parts beside the whole, and the table prints them.
        let mut agg = Aggregate::default();
        agg.add("CA1", a, true);
        let (r, x) = agg.finish(EngineUsage::default());
        let parts = r.engine_overhead_parts.expect("parts with engine metrics");
        assert_eq!(
            (r.engine_overhead_ms.p50, r.engine_overhead_ms.max),
            (Some(2.0), Some(5.0))
        );
        assert_eq!(parts.in_engine_ms.max, Some(4.0));
        assert_eq!(parts.delivery_ms.max, Some(1.0));
        let table = summary_table(&r, &x, 1.0);
        assert!(table.contains("  in the engine"), "{table}");
        assert!(table.contains("  delivery"), "{table}");
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["engine_overhead_parts"]["delivery_ms"]["max"], 1.0);
    }

    /// The engine set the call up for 2 s (its database was slow) before its clock started: its
    /// stamps run 2 s behind the caller's. Every turn is still matched to its reply, with the
    /// same overhead as when the clocks agree.
    #[test]
    fn an_engine_clock_seconds_behind_the_callers_still_matches_every_turn() {
        let at = |final_ms: f64, request: f64, first_byte: f64, sent: f64| EngineTurn {
            stt_final_ms: Some(final_ms - 2000.0),
            llm_request_ms: Some(request - 2000.0),
            tts_first_byte_ms: Some(first_byte - 2000.0),
            first_audio_sent_ms: Some(sent - 2000.0),
            ..EngineTurn::default()
        };
        let turns = [
            at(2300.0, 2302.0, 2695.0, 2697.0),
            at(5300.0, 5200.0, 5596.0, 5598.0),
        ];
        let a = analyze_call(&call(), Some(&turns));
        assert!(a.errors.is_empty(), "{:?}", a.errors);
        assert_eq!((a.turns, a.answered), (2, 2));
        assert_eq!(a.engine_overhead_ms, vec![5.0, 2.0]);
        assert_eq!(a.overhead_delivery_ms, vec![1.0, 0.0]);
    }

    /// Turn 1 answered at once; turn 2's reply ready at 5596 and sent at 6300, with the
    /// engine's own `held` for it (turn 1's is 0 when it is said at all).
    fn held_second_turn(held: Option<f64>) -> [EngineTurn; 2] {
        [
            EngineTurn {
                stt_final_ms: Some(2300.0),
                llm_request_ms: Some(2302.0),
                tts_first_byte_ms: Some(2695.0),
                first_audio_sent_ms: Some(2697.0),
                held_for_caller_ms: held.map(|_| 0.0),
                ..EngineTurn::default()
            },
            EngineTurn {
                stt_final_ms: Some(5300.0),
                llm_request_ms: Some(5301.0),
                tts_first_byte_ms: Some(5596.0),
                first_audio_sent_ms: Some(6300.0),
                held_for_caller_ms: held,
                ..EngineTurn::default()
            },
        ]
    }

    #[test]
    fn a_reply_held_while_the_caller_coughs_is_left_out_of_engine_overhead() {
        // Turn 1 answered at once; turn 2's reply was ready at 5596 but went out at 6300: the
        // caller coughed from 5700 to 6000 (caller clock; the fastest delivery is 3 ms).
        let mut r = call();
        r.utterances
            .insert(3, utt(UtteranceKind::Noise, 5700, 6000));
        r.segments = vec![seg(2700.0), seg(6303.0), seg(8500.0)];
        let turns = held_second_turn(None);
        let a = analyze_call(&r, Some(&turns));
        assert_eq!(a.held_for_caller_sound, 1);
        assert_eq!(a.engine_overhead_ms, vec![4.0]);
        // A cough that ended just before the reply was ready is still being weighed then.
        r.utterances[3] = utt(UtteranceKind::Noise, 5200, 5500);
        assert_eq!(analyze_call(&r, Some(&turns)).held_for_caller_sound, 1);
        // One that ended well before is not: the wait is engine overhead.
        r.utterances[3] = utt(UtteranceKind::Noise, 4700, 5100);
        let a = analyze_call(&r, Some(&turns));
        assert_eq!(a.held_for_caller_sound, 0);
        assert_eq!(a.engine_overhead_ms, vec![4.0, 705.0]);
        // Without the cough the same wait is engine overhead, also when the answered utterance
        // itself ended less than the window before the reply was ready.
        r.utterances.remove(3);
        r.utterances[2] = utt(UtteranceKind::BargeIn, 4000, 5300);
        let a = analyze_call(&r, Some(&turns));
        assert_eq!(a.held_for_caller_sound, 0);
        assert_eq!(a.engine_overhead_ms, vec![4.0, 705.0]);
    }

    #[test]
    fn a_hold_the_engine_reports_is_taken_out_exactly() {
        // Turn 2's first frame went out 704 ms after its audio was ready; the engine says it
        // held it 690 ms for a caller's sound (whatever the script had, and whatever window
        // the assistant has): 14 ms of engine time are left, and the turn is counted.
        let mut r = call();
        r.segments = vec![seg(2700.0), seg(6303.0), seg(8500.0)];
        let turns = held_second_turn(Some(690.0));
        let a = analyze_call(&r, Some(&turns));
        assert_eq!(a.held_for_caller_sound, 1);
        assert_eq!(a.overhead_in_engine_ms, vec![4.0, 15.0]);
        assert_eq!(a.engine_overhead_ms, vec![4.0, 15.0]);
        // A cough in the script does not leave out a turn the engine says was not held.
        r.utterances
            .insert(3, utt(UtteranceKind::Noise, 5700, 6000));
        let mut not_held = turns;
        not_held[1].held_for_caller_ms = Some(0.0);
        let a = analyze_call(&r, Some(&not_held));
        assert_eq!(a.held_for_caller_sound, 0);
        assert_eq!(a.engine_overhead_ms, vec![4.0, 705.0]);
    }

    #[test]
    fn a_speculative_reply_held_for_the_final_is_not_engine_overhead() {
        // The speculative reply's first TTS byte came 900 ms before the final; its audio went
        // out 3 ms after the final: 3 ms of engine time, not 903.
        let held = EngineTurn {
            stt_final_ms: Some(5300.0),
            llm_request_ms: Some(4000.0),
            tts_first_byte_ms: Some(4400.0),
            first_audio_sent_ms: Some(5303.0),
            ..EngineTurn::default()
        };
        assert_eq!(engine_part(&held), Some(3.0));
        // Audio that was not ready at the final still counts from its first byte.
        let late = EngineTurn {
            tts_first_byte_ms: Some(5500.0),
            first_audio_sent_ms: Some(5502.0),
            ..held
        };
        assert_eq!(engine_part(&late), Some(2.0));
    }

    #[test]
    fn failures_and_caps_are_errors() {
        let mut r = call();
        r.outcome = CallOutcome::Failed;
        r.errors.push(CallError {
            kind: "ws_connect",
            message: "refused".into(),
            at_ms: None,
        });
        let a = analyze_call(&r, None);
        assert_eq!(a.turns, 0);
        assert_eq!(
            a.errors,
            vec![("ws_connect".to_owned(), "refused".to_owned())]
        );

        let mut r = call();
        r.ended_by = Some(EndedBy::MaxDuration);
        r.duration_ms = 3000.0;
        let a = analyze_call(&r, None);
        assert_eq!(a.turns, 1, "turns after the cut are not expected");
        assert!(a.errors.iter().any(|(k, _)| k == "cut_by_duration_cap"));
    }

    #[test]
    fn cpu_per_call_second_divides_by_every_calls_seconds() {
        let two_calls = || {
            let mut agg = Aggregate::default();
            let mut ok = call();
            ok.duration_ms = 10_000.0;
            agg.add("CA1", analyze_call(&ok, None), false);
            let mut bad = call();
            bad.duration_ms = 11_500.0;
            agg.add("CA2", analyze_call(&bad, None), false);
            agg
        };
        let engine = EngineUsage {
            cpu_seconds: Some(2.15),
            ..EngineUsage::default()
        };
        let (r, x) = two_calls().finish(engine);
        // 2.15 s of CPU over 21.5 call-seconds: 100 ms per call-second, 10 % of a core per call.
        assert_eq!(r.engine.cpu_us_per_call_second, Some(100_000.0));
        assert!(
            summary_table(&r, &x, 12.0)
                .contains("100000.0 µs per call-second (10.000 % of a core per call)"),
            "{}",
            summary_table(&r, &x, 12.0)
        );
        let (r, _) = two_calls().finish(EngineUsage::default());
        assert_eq!(r.engine.cpu_us_per_call_second, None, "no engine sampled");
    }

    #[test]
    fn report_has_exactly_the_issue_shape() {
        let mut agg = Aggregate::default();
        let mut ok = call();
        ok.segments.push(seg(8500.0));
        agg.add("CA1", analyze_call(&ok, None), false);
        let mut bad = call();
        bad.duration_ms = 11_500.0;
        agg.add("CA2", analyze_call(&bad, None), false);
        let (r, x) = agg.finish(EngineUsage::default());
        assert_eq!(
            r.calls,
            CallCounts {
                started: 2,
                completed: 1,
                failed: 1
            }
        );
        assert_eq!(r.turns, 6);
        assert_eq!(x.answered, 5);
        assert_eq!(x.frames, 2 * 28);
        // Both calls' welcomes came 100 ms after their stream started.
        assert_eq!(
            (r.first_audio_ms.p50, r.first_audio_ms.max),
            (Some(100.0), Some(100.0))
        );
        let silent = analyze_call(
            &CallReport {
                segments: Vec::new(),
                ..call()
            },
            None,
        );
        assert_eq!(silent.first_audio_ms, None, "no audio, no figure");
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].call, "CA2");
        let v = serde_json::to_value(&r).expect("json");
        let keys = |v: &serde_json::Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            [
                "backchannel_gap_ms",
                "calls",
                "engine",
                "engine_overhead_ms",
                "errors",
                "first_audio_ms",
                "frame_lateness_ms",
                "harness",
                "interruption_clear_ms",
                "interruption_reaction_ms",
                "turn_latency_ms",
                "turns"
            ]
        );
        assert_eq!(keys(&v["calls"]), ["completed", "failed", "started"]);
        assert_eq!(keys(&v["turn_latency_ms"]), ["max", "p50", "p95", "p99"]);
        assert_eq!(keys(&v["engine_overhead_ms"]), ["max", "p50", "p95", "p99"]);
        assert_eq!(keys(&v["frame_lateness_ms"]), ["max", "p50", "p99"]);
        assert_eq!(
            keys(&v["interruption_reaction_ms"]),
            ["max", "p50", "p95", "p99"]
        );
        assert_eq!(
            keys(&v["interruption_clear_ms"]),
            ["max", "p50", "p95", "p99"]
        );
        assert_eq!(keys(&v["errors"][0]), ["call", "kind", "message"]);
        assert_eq!(
            keys(&v["engine"]),
            [
                "cpu_percent_avg",
                "cpu_seconds",
                "cpu_us_per_call_second",
                "rss_peak_mb",
                "rss_per_call_kb"
            ]
        );
        assert_eq!(v["frame_lateness_ms"]["max"], 12.0);
        let back: Report = serde_json::from_value(v).expect("reads back");
        assert_eq!(back, r);
        let table = summary_table(&r, &x, 12.0);
        assert!(table.contains("turn_unanswered: 1"), "{table}");
    }
}
