//! The turn-taking corpus (`fixtures/scenarios/`, issue 12): each scenario is a recorded call
//! (a [`CallScript`]: `<name>.json` + `<name>.ulaw`) whose JSON also holds the assistant's
//! `language` and an `expect` block. One call per scenario is placed (see
//! [`crate::cli::scenarios`]); its [`Verdict`] is computed only from what the fake caller heard:
//! the bot audio as played on its playback clock (chunks, attributed to the engine's
//! generations by the marks that follow them), and the `clear`s.
//!
//! Expectations (`"check"`; `utterance` is an index into the script's utterances, times in ms):
//!
//! - `stops {utterance, within_ms}`: a real barge-in. The bot was audible at its onset, the
//!   caller's playback went silent within `within_ms` of the onset, a `clear` came (the engine
//!   took it as an interruption), and the interrupted reply was not heard again. Inconclusive when
//!   nothing played at the onset, or the reply ended by itself (no `clear`).
//! - `answered {utterance, within_ms}`: a new bot reply was first heard within `within_ms` after
//!   the utterance ended.
//! - `talks_through {utterance, max_gap_ms}`: a backchannel or a cough over the bot. No `clear`
//!   from its onset to 1.5 s after its end, and the reply playing at the onset never went silent
//!   for longer than `max_gap_ms` until 3 s after its end. Inconclusive when nothing played at the
//!   onset.
//! - `no_reply {utterance, until}`: no new bot reply was first heard from the utterance's start
//!   until the next utterance starts (`until: "next_start"`, the default) or ends (`"next_end"`:
//!   a mid-sentence pause, whose continuation is the same turn), or the call ends.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use switchboard_testkit::twilio::{CallOutcome, CallReport, CallScript, EndedBy};

/// A `clear` this long (ms) after a barge-in's end still answers it.
pub const CLEAR_WINDOW_MS: f64 = 1500.0;
/// How long (ms) after a backchannel's end the reply it was said over is watched for gaps.
pub const GAP_WINDOW_MS: f64 = 3000.0;
/// Chunks closer than this (ms) play as one run of audio: a shorter gap is a frame that came
/// late (an underrun the report counts as frame lateness, seen on a loaded machine), not the
/// bot going quiet; the engine's shortest deliberate silence, a pause for speech that turns out
/// to be a backchannel, lasts longer.
const CONTIGUOUS_MS: f64 = 100.0;

/// Where a `no_reply` window ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// The next utterance's start (or the end of the call).
    #[default]
    NextStart,
    /// The next utterance's end (a mid-sentence pause: the continuation is the same turn).
    NextEnd,
}

/// One expectation of the `expect` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "check", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// A real barge-in stops the bot within `within_ms` of its onset.
    Stops {
        /// Index of the utterance.
        utterance: usize,
        /// Longest time (ms) from the onset to the caller's playback going silent.
        within_ms: f64,
    },
    /// A new reply is heard within `within_ms` after the utterance ended.
    Answered {
        /// Index of the utterance.
        utterance: usize,
        /// Longest time (ms) from the utterance's end to the reply's first audio.
        within_ms: f64,
    },
    /// The bot talks through the utterance: no `clear`, no gap over `max_gap_ms`.
    TalksThrough {
        /// Index of the utterance.
        utterance: usize,
        /// Longest silence (ms) allowed inside the reply.
        max_gap_ms: f64,
    },
    /// The first new reply heard after the utterance ended played, whole, for `min_ms` to
    /// `max_ms`: the fake TTS speaks a fixed time per character and the fake LLM's reply echoes
    /// what it was asked, so the length tells which caller text was answered (a speculative
    /// reply to a guess the final contradicts is shorter or longer than the right one).
    ReplyLength {
        /// Index of the utterance.
        utterance: usize,
        /// Shortest total playback (ms) of the right reply.
        min_ms: f64,
        /// Longest total playback (ms) of the right reply.
        max_ms: f64,
    },
    /// No new reply is heard from the utterance's start until `until`.
    NoReply {
        /// Index of the utterance.
        utterance: usize,
        /// Where the window ends.
        #[serde(default)]
        until: Until,
    },
}

impl Expectation {
    /// The utterance the expectation is about.
    pub fn utterance(&self) -> usize {
        match self {
            Expectation::Stops { utterance, .. }
            | Expectation::Answered { utterance, .. }
            | Expectation::TalksThrough { utterance, .. }
            | Expectation::ReplyLength { utterance, .. }
            | Expectation::NoReply { utterance, .. } => *utterance,
        }
    }

    /// Short label for reports, e.g. `stops(1, 400 ms)`.
    pub fn label(&self) -> String {
        match self {
            Expectation::Stops {
                utterance,
                within_ms,
            } => format!("stops({utterance}, {within_ms:.0} ms)"),
            Expectation::Answered {
                utterance,
                within_ms,
            } => format!("answered({utterance}, {within_ms:.0} ms)"),
            Expectation::TalksThrough {
                utterance,
                max_gap_ms,
            } => format!("talks_through({utterance}, gap {max_gap_ms:.0} ms)"),
            Expectation::ReplyLength {
                utterance,
                min_ms,
                max_ms,
            } => format!("reply_length({utterance}, {min_ms:.0}-{max_ms:.0} ms)"),
            Expectation::NoReply { utterance, until } => format!(
                "no_reply({utterance}, until {})",
                match until {
                    Until::NextStart => "next start",
                    Until::NextEnd => "next end",
                }
            ),
        }
    }
}

/// What a scenario's JSON holds besides its call script.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ScenarioSpec {
    /// What the scenario is about.
    #[serde(default)]
    pub description: String,
    /// The assistant's `stt_settings.language` (picks the backchannel lexicon).
    #[serde(default = "default_language")]
    pub language: String,
    /// The assistant runs with `stt_settings.speculative_config.enable_speculative_llm` on
    /// (scenarios where a speculative reply would be wrong). Default false.
    #[serde(default)]
    pub speculative: bool,
    /// What must happen.
    pub expect: Vec<Expectation>,
}

fn default_language() -> String {
    "en-US".into()
}

/// A scenario: the call and what must happen in it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The recorded call.
    pub script: Arc<CallScript>,
    /// Its language and expectations.
    pub spec: ScenarioSpec,
}

/// Why the corpus could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A call script is unreadable.
    #[error(transparent)]
    Script(#[from] switchboard_testkit::twilio::ScriptError),
    /// A scenario file is unreadable or has no valid `expect` block.
    #[error("{name}: {message}")]
    Spec {
        /// Scenario name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads every scenario (`<name>.json` + `<name>.ulaw`) of `dir`, sorted by name. Each must have
/// an `expect` block whose utterance indexes exist.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, LoadError> {
    let mut out = Vec::new();
    for script in CallScript::load_dir(dir)? {
        let spec_err = |message: String| LoadError::Spec {
            name: script.name.clone(),
            message,
        };
        let path = dir.join(format!("{}.json", script.name));
        let text = std::fs::read_to_string(&path).map_err(|e| spec_err(e.to_string()))?;
        let spec: ScenarioSpec =
            serde_json::from_str(&text).map_err(|e| spec_err(e.to_string()))?;
        if spec.expect.is_empty() {
            return Err(spec_err("empty expect block".into()));
        }
        if let Some(e) = spec
            .expect
            .iter()
            .find(|e| e.utterance() >= script.utterances.len())
        {
            return Err(spec_err(format!("{} names no utterance", e.label())));
        }
        out.push(Scenario {
            script: Arc::new(script),
            spec,
        });
    }
    Ok(out)
}

/// The outcome of one check, or of a whole scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// It happened as expected (the text says what was measured).
    Pass(String),
    /// It did not; why.
    Fail(String),
    /// The situation did not arise (e.g. the bot had finished before the barge-in); why.
    Inconclusive(String),
}

impl Verdict {
    /// Whether this is a pass.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass(_))
    }

    fn word(&self) -> &'static str {
        match self {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "FAIL",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }

    fn text(&self) -> &str {
        match self {
            Verdict::Pass(t) | Verdict::Fail(t) | Verdict::Inconclusive(t) => t,
        }
    }
}

/// A stretch of bot audio the caller heard, and the engine generation it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Heard {
    /// Playback start, ms from stream start.
    pub start_ms: f64,
    /// Playback end (or the `clear` that cut it), ms.
    pub end_ms: f64,
    /// The generation of the mark that follows it (`g<generation>-<seq>`); `None` when no mark
    /// came after it and none before it.
    pub generation: Option<u64>,
}

fn mark_generation(name: &str) -> Option<u64> {
    name.strip_prefix('g')?.split_once('-')?.0.parse().ok()
}

/// The bot audio as heard, in playback order: each chunk that played (cut at its `clear`),
/// attributed to the generation of the next mark received after it and before the next `clear`
/// (the engine marks what it sent of a generation; a `clear` drops the marks not yet sent),
/// else of the last mark before it. Needs a report made with `record_timeline`.
pub fn heard(r: &CallReport) -> Vec<Heard> {
    let marks: Vec<(f64, u64)> = r
        .marks
        .iter()
        .filter_map(|m| Some((m.received_ms, mark_generation(&m.name)?)))
        .collect();
    let mut out = Vec::with_capacity(r.chunks.len());
    for c in &r.chunks {
        let end = c.cleared_at_ms.map_or(c.end_ms, |x| x.min(c.end_ms));
        if end <= c.start_ms {
            continue; // Cleared before it played.
        }
        let next_clear = r
            .clears_ms
            .iter()
            .copied()
            .find(|&x| x >= c.received_ms)
            .unwrap_or(f64::INFINITY);
        let after = marks
            .iter()
            .find(|&&(at, _)| (c.received_ms..=next_clear).contains(&at));
        let before = marks.iter().rev().find(|&&(at, _)| at < c.received_ms);
        out.push(Heard {
            start_ms: c.start_ms,
            end_ms: end,
            generation: after.or(before).map(|&(_, g)| g),
        });
    }
    out
}

/// The checks of one scenario, and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub name: String,
    /// Fail if any check failed or the call went wrong, else inconclusive if any check was,
    /// else pass.
    pub verdict: Verdict,
    /// Each expectation and its outcome.
    pub checks: Vec<(Expectation, Verdict)>,
}

/// Judges one scenario from its call's report (made with `record_timeline`).
pub fn judge(s: &Scenario, r: &CallReport) -> ScenarioResult {
    let heard = heard(r);
    let checks: Vec<(Expectation, Verdict)> = s
        .spec
        .expect
        .iter()
        .map(|e| (e.clone(), check(e, r, &heard)))
        .collect();
    let call_problem = match (r.outcome, r.ended_by) {
        (CallOutcome::Completed, Some(EndedBy::Engine)) => Some(format!(
            "the engine ended the call at {:.0} ms",
            r.duration_ms
        )),
        (CallOutcome::Completed, Some(EndedBy::MaxDuration)) => {
            Some("the call was cut by the duration cap".to_owned())
        }
        (CallOutcome::Completed, _) => r
            .errors
            .first()
            .map(|e| format!("{}: {}", e.kind, e.message)),
        (other, _) => Some(format!(
            "call {other:?}{}",
            r.errors
                .first()
                .map(|e| format!(": {}", e.message))
                .unwrap_or_default()
        )),
    };
    let verdict = if let Some(p) = call_problem {
        Verdict::Fail(p)
    } else if let Some((e, v)) = checks.iter().find(|(_, v)| matches!(v, Verdict::Fail(_))) {
        Verdict::Fail(format!("{}: {}", e.label(), v.text()))
    } else if let Some((e, v)) = checks
        .iter()
        .find(|(_, v)| matches!(v, Verdict::Inconclusive(_)))
    {
        Verdict::Inconclusive(format!("{}: {}", e.label(), v.text()))
    } else {
        Verdict::Pass(String::new())
    };
    ScenarioResult {
        name: s.script.name.clone(),
        verdict,
        checks,
    }
}

/// The heard chunk playing at `t`, by index.
fn playing_at(heard: &[Heard], t: f64) -> Option<usize> {
    heard
        .iter()
        .position(|h| (h.start_ms..h.end_ms).contains(&t))
}

/// End of the run of contiguous audio that chunk `i` is part of.
fn run_end(heard: &[Heard], i: usize) -> f64 {
    let mut end = heard[i].end_ms;
    for h in &heard[i + 1..] {
        if h.start_ms > end + CONTIGUOUS_MS {
            break;
        }
        end = end.max(h.end_ms);
    }
    end
}

/// When each generation was first heard, in order of first hearing.
fn first_heard(heard: &[Heard]) -> Vec<(Option<u64>, f64)> {
    let mut out: Vec<(Option<u64>, f64)> = Vec::new();
    for h in heard {
        if !out.iter().any(|(g, _)| *g == h.generation) {
            out.push((h.generation, h.start_ms));
        }
    }
    out
}

fn check(e: &Expectation, r: &CallReport, heard: &[Heard]) -> Verdict {
    let u = &r.utterances[e.utterance()];
    let (onset, end) = (u.start_ms as f64, u.end_ms as f64);
    let clear_in = |from: f64, to: f64| {
        r.clears_ms
            .iter()
            .copied()
            .find(|c| (from..=to).contains(c))
    };
    match *e {
        Expectation::Stops { within_ms, .. } => {
            let Some(i) = playing_at(heard, onset) else {
                return Verdict::Inconclusive(format!(
                    "the bot was silent at the onset ({onset:.0} ms)"
                ));
            };
            let silent = run_end(heard, i);
            let g = heard[i].generation;
            if let Some(h) = heard.iter().find(|h| {
                h.generation == g && h.start_ms > silent && h.start_ms < end + CLEAR_WINDOW_MS
            }) {
                return Verdict::Fail(format!(
                    "the interrupted reply was heard again at {:.0} ms (onset {onset:.0} ms)",
                    h.start_ms
                ));
            }
            let reaction = silent - onset;
            if reaction > within_ms {
                return Verdict::Fail(format!(
                    "the bot went on for {reaction:.0} ms after the onset"
                ));
            }
            match clear_in(onset, end + CLEAR_WINDOW_MS) {
                Some(c) => Verdict::Pass(format!(
                    "silent after {reaction:.0} ms, clear after {:.0} ms",
                    c - onset
                )),
                None => Verdict::Inconclusive(format!(
                    "the reply ended by itself {reaction:.0} ms after the onset"
                )),
            }
        }
        Expectation::Answered { within_ms, .. } => {
            let reply = first_heard(heard).into_iter().find(|&(_, t)| t >= end);
            match reply {
                Some((_, t)) if t - end <= within_ms => {
                    Verdict::Pass(format!("reply after {:.0} ms", t - end))
                }
                Some((_, t)) => Verdict::Fail(format!(
                    "the reply came {:.0} ms after the end, not within {within_ms:.0} ms",
                    t - end
                )),
                None => Verdict::Fail("no reply was heard".into()),
            }
        }
        Expectation::TalksThrough { max_gap_ms, .. } => {
            let Some(i) = playing_at(heard, onset) else {
                return Verdict::Inconclusive(format!(
                    "the bot was silent at the onset ({onset:.0} ms)"
                ));
            };
            if let Some(c) = clear_in(onset, end + CLEAR_WINDOW_MS) {
                return Verdict::Fail(format!(
                    "the bot was cut: clear {:.0} ms after the onset",
                    c - onset
                ));
            }
            let g = heard[i].generation;
            let reply: Vec<&Heard> = heard.iter().filter(|h| h.generation == g).collect();
            let mut gap: f64 = 0.0;
            let mut at = onset;
            for w in reply.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.end_ms >= heard[i].start_ms && a.end_ms <= end + GAP_WINDOW_MS {
                    let g = b.start_ms - a.end_ms;
                    if g > gap {
                        gap = g;
                        at = a.end_ms;
                    }
                }
            }
            if gap > max_gap_ms {
                Verdict::Fail(format!(
                    "the reply went silent for {gap:.0} ms at {at:.0} ms"
                ))
            } else {
                Verdict::Pass(format!("longest silence {gap:.0} ms"))
            }
        }
        Expectation::ReplyLength { min_ms, max_ms, .. } => {
            let Some((g, t)) = first_heard(heard).into_iter().find(|&(_, t)| t >= end) else {
                return Verdict::Fail("no reply was heard".into());
            };
            if let Some(c) = r.clears_ms.iter().find(|&&c| c > t) {
                return Verdict::Inconclusive(format!(
                    "the reply heard at {t:.0} ms was cut by a clear at {c:.0} ms"
                ));
            }
            let played: f64 = heard
                .iter()
                .filter(|h| h.generation == g)
                .map(|h| h.end_ms - h.start_ms)
                .sum();
            if (min_ms..=max_ms).contains(&played) {
                Verdict::Pass(format!("the reply played {played:.0} ms"))
            } else {
                Verdict::Fail(format!(
                    "the reply heard at {t:.0} ms played {played:.0} ms, not {min_ms:.0}-{max_ms:.0}: \
                     it answered other words"
                ))
            }
        }
        Expectation::NoReply { until, .. } => {
            let next = r.utterances.get(e.utterance() + 1);
            let limit = match (until, next) {
                (Until::NextStart, Some(n)) => n.start_ms as f64,
                (Until::NextEnd, Some(n)) => n.end_ms as f64,
                (_, None) => r.duration_ms,
            };
            let reply = first_heard(heard)
                .into_iter()
                .find(|(_, t)| (onset..limit).contains(t));
            match reply {
                Some((_, t)) => Verdict::Fail(format!(
                    "a reply was heard at {t:.0} ms ({:.0} ms after the utterance ended)",
                    t - end
                )),
                None => Verdict::Pass(String::new()),
            }
        }
    }
}

/// The verdicts with each call's heard timeline, `clear`s and utterances, as JSON (for
/// `--verdicts` and for tuning the corpus).
pub fn verdicts_json(results: &[ScenarioResult], reports: &[CallReport]) -> serde_json::Value {
    results
        .iter()
        .zip(reports)
        .map(|(v, r)| {
            serde_json::json!({"result": v, "heard": heard(r), "clears_ms": r.clears_ms,
                "utterances": r.utterances})
        })
        .collect()
}

/// The verdict table: one line per scenario, then one per check that did not pass, then the
/// pass rate.
pub fn table(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    let width = results
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    for r in results {
        out.push_str(&format!(
            "{:width$}  {:12}  {}\n",
            r.name,
            r.verdict.word(),
            r.verdict.text()
        ));
        for (e, v) in &r.checks {
            out.push_str(&format!(
                "{:width$}    {:10} {}  {}\n",
                "",
                v.word(),
                e.label(),
                v.text()
            ));
        }
    }
    let passed = results.iter().filter(|r| r.verdict.passed()).count();
    out.push_str(&format!(
        "scenarios: {passed}/{} pass ({:.0} %)\n",
        results.len(),
        pass_rate(results) * 100.0
    ));
    out
}

/// Share of scenarios that passed, 0..=1 (0 for none).
pub fn pass_rate(results: &[ScenarioResult]) -> f64 {
    if results.is_empty() {
        return 0.0;
    }
    results.iter().filter(|r| r.verdict.passed()).count() as f64 / results.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_testkit::twilio::{ChunkRecord, MarkRecord, Utterance, UtteranceKind};

    /// Bot audio [start, end) in 100-ms chunks received as they play, then a mark of `g`.
    fn speak(r: &mut CallReport, g: u64, start: f64, end: f64) {
        let mut t = start;
        while t < end {
            r.chunks.push(ChunkRecord {
                received_ms: t,
                start_ms: t,
                end_ms: (t + 100.0).min(end),
                bytes: 800,
                late_ms: None,
                cleared_at_ms: None,
            });
            t += 100.0;
        }
        r.marks.push(MarkRecord {
            name: format!("g{g}-1"),
            received_ms: end - 1.0,
            due_ms: end,
            echoed_ms: Some(end),
            echo_seq: None,
            on_clear: false,
        });
    }

    fn utt(kind: UtteranceKind, start_ms: u64, end_ms: u64) -> Utterance {
        Utterance {
            text: String::new(),
            start_ms,
            end_ms,
            kind,
        }
    }

    fn scenario(expect: Vec<Expectation>) -> Scenario {
        Scenario {
            script: Arc::new(CallScript::synthetic("t", Vec::new(), 10)),
            spec: ScenarioSpec {
                description: String::new(),
                language: default_language(),
                speculative: false,
                expect,
            },
        }
    }

    /// A reply (generation 2) from 1000 ms; the caller speaks [4000, 5000).
    fn report(kind: UtteranceKind) -> CallReport {
        let mut r = crate::report::tests::call();
        r.utterances = vec![utt(UtteranceKind::Turn, 0, 500), utt(kind, 4000, 5000)];
        r.segments.clear();
        r.clears_ms.clear();
        r.duration_ms = 12_000.0;
        r
    }

    #[test]
    fn a_barge_in_that_silences_the_bot_and_is_answered_passes() {
        let mut r = report(UtteranceKind::BargeIn);
        speak(&mut r, 2, 1000.0, 4200.0);
        r.clears_ms.push(4500.0);
        speak(&mut r, 3, 6500.0, 8000.0);
        let s = scenario(vec![
            Expectation::Stops {
                utterance: 1,
                within_ms: 300.0,
            },
            Expectation::Answered {
                utterance: 1,
                within_ms: 2000.0,
            },
        ]);
        let v = judge(&s, &r);
        assert!(v.verdict.passed(), "{v:?}");
        assert_eq!(
            v.checks[0].1,
            Verdict::Pass("silent after 200 ms, clear after 500 ms".into())
        );
    }

    #[test]
    fn a_late_frame_at_the_onset_is_not_a_pause() {
        // A 48 ms underrun 10 ms after the onset (a loaded machine), then the bot goes quiet
        // at 4210.
        let mut r = report(UtteranceKind::BargeIn);
        speak(&mut r, 2, 1000.0, 4010.0);
        speak(&mut r, 2, 4058.0, 4210.0);
        r.clears_ms.push(4500.0);
        let s = scenario(vec![Expectation::Stops {
            utterance: 1,
            within_ms: 300.0,
        }]);
        let v = judge(&s, &r);
        assert_eq!(
            v.checks[0].1,
            Verdict::Pass("silent after 210 ms, clear after 500 ms".into())
        );
    }

    #[test]
    fn a_resumed_reply_fails_and_a_finished_one_is_inconclusive() {
        let stops = vec![Expectation::Stops {
            utterance: 1,
            within_ms: 300.0,
        }];
        // Paused at 4200, heard again at 4600 over the caller, then cleared.
        let mut r = report(UtteranceKind::BargeIn);
        speak(&mut r, 2, 1000.0, 4200.0);
        speak(&mut r, 2, 4600.0, 4800.0);
        r.clears_ms.push(4800.0);
        assert!(matches!(
            judge(&scenario(stops.clone()), &r).verdict,
            Verdict::Fail(_)
        ));
        // The reply ended by itself 100 ms after the onset, no clear.
        let mut r = report(UtteranceKind::BargeIn);
        speak(&mut r, 2, 1000.0, 4100.0);
        assert!(matches!(
            judge(&scenario(stops.clone()), &r).verdict,
            Verdict::Inconclusive(_)
        ));
        // Nothing played at the onset.
        let r = report(UtteranceKind::BargeIn);
        assert!(matches!(
            judge(&scenario(stops), &r).verdict,
            Verdict::Inconclusive(_)
        ));
    }

    #[test]
    fn a_backchannel_gap_and_a_reply_to_it_fail() {
        let expect = vec![
            Expectation::TalksThrough {
                utterance: 1,
                max_gap_ms: 400.0,
            },
            Expectation::NoReply {
                utterance: 1,
                until: Until::NextStart,
            },
        ];
        // Paused 4200..4500 (300 ms), resumed, no reply to it: pass.
        let mut r = report(UtteranceKind::Backchannel);
        speak(&mut r, 2, 1000.0, 4200.0);
        speak(&mut r, 2, 4500.0, 9000.0);
        let v = judge(&scenario(expect.clone()), &r);
        assert!(v.verdict.passed(), "{v:?}");
        // Paused 500 ms, then a new reply (generation 3) after the bot finished.
        let mut r = report(UtteranceKind::Backchannel);
        speak(&mut r, 2, 1000.0, 4200.0);
        speak(&mut r, 2, 4700.0, 9000.0);
        speak(&mut r, 3, 10_500.0, 11_000.0);
        let v = judge(&scenario(expect), &r);
        assert!(matches!(v.checks[0].1, Verdict::Fail(_)), "{v:?}");
        assert!(matches!(v.checks[1].1, Verdict::Fail(_)), "{v:?}");
    }

    #[test]
    fn a_reply_of_the_wrong_length_answered_other_words() {
        let check = |min_ms: f64, max_ms: f64| {
            let e = Expectation::ReplyLength {
                utterance: 1,
                min_ms,
                max_ms,
            };
            let mut r = report(UtteranceKind::Turn);
            speak(&mut r, 2, 1000.0, 3000.0);
            // The reply to utterance 1 (ends at 5000): 3 s of audio in two runs.
            speak(&mut r, 3, 6000.0, 7000.0);
            speak(&mut r, 3, 7200.0, 9200.0);
            judge(&scenario(vec![e]), &r).checks[0].1.clone()
        };
        assert!(check(2900.0, 3100.0).passed());
        assert!(matches!(check(3500.0, 4000.0), Verdict::Fail(_)));
        assert!(matches!(check(1000.0, 2500.0), Verdict::Fail(_)));
    }

    #[test]
    fn audio_cut_by_a_clear_before_its_mark_belongs_to_the_generation_before() {
        let mut r = report(UtteranceKind::BargeIn);
        speak(&mut r, 2, 1000.0, 4000.0);
        // Chunks of generation 2 whose mark never came: the clear dropped it.
        r.chunks.push(ChunkRecord {
            received_ms: 4000.0,
            start_ms: 4000.0,
            end_ms: 4100.0,
            bytes: 800,
            late_ms: None,
            cleared_at_ms: Some(4050.0),
        });
        r.clears_ms.push(4050.0);
        speak(&mut r, 3, 6000.0, 7000.0);
        let h = heard(&r);
        let cut = h.iter().find(|x| x.start_ms == 4000.0).expect("cut chunk");
        assert_eq!(cut.generation, Some(2));
        assert_eq!(cut.end_ms, 4050.0);
        assert_eq!(h.last().map(|x| x.generation), Some(Some(3)));
    }
}
