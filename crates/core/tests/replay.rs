//! Flight recorder and replay, directly through the core: every recorded fixture call is run
//! against simple fake providers with a [`TracedCore`], its trace encoded and decoded, then
//! replayed — exactly (the same decisions, one for one) and with other settings (the decision
//! moves the expected way).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use serde_json::Value;
use switchboard_core::call::trace::{Trace, TraceEvent, TraceTranscript, TracedCore};
use switchboard_core::call::{Action, CallSettings, InterruptionMode, Millis};
use switchboard_core::replay::{Moment, replay};

/// Bytes of fake TTS audio per character (50 ms a character).
const BYTES_PER_CHAR: u64 = 400;
const REPLY: &str = "Sure. We are open from nine to five on weekdays, and parking is free.";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

enum Item {
    Audio(usize, u32),
    Event(TraceEvent),
}

#[derive(Clone, Copy, PartialEq)]
enum Owner {
    Caller,
    Llm(u64),
    Tts(u64),
    Mark,
}

/// A call against fake providers: the caller streams the fixture and its STT words arrive
/// 250 ms after they were said; the LLM answers `REPLY` word by word after 300 ms; the TTS
/// gives `BYTES_PER_CHAR` per character 150 ms after each text; Twilio plays in order and
/// echoes marks (all of them at a clear).
struct World {
    core: TracedCore,
    audio: Vec<u8>,
    queue: BTreeMap<(u64, u64), (Owner, Item)>,
    seq: u64,
    playout: u64,
    marks: Vec<(u64, u64)>,
    tts_last: BTreeMap<u64, u64>,
}

impl World {
    fn new(name: &str, settings: &CallSettings) -> World {
        let script: Value = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{name}.json"))).expect("script"),
        )
        .expect("json");
        let audio = std::fs::read(fixtures().join(format!("{name}.ulaw"))).expect("audio");
        let mut w = World {
            core: TracedCore::new(settings.clone(), Millis(0), true),
            audio,
            queue: BTreeMap::new(),
            seq: 0,
            playout: 0,
            marks: Vec::new(),
            tts_last: BTreeMap::new(),
        };
        w.at(0, Owner::Caller, Item::Event(TraceEvent::CallStarted));
        let frames = w.audio.len().div_ceil(160);
        for i in 0..frames {
            let len = (w.audio.len() - i * 160).min(160) as u32;
            w.at(
                20 * (i as u64 + 1),
                Owner::Caller,
                Item::Audio(i * 160, len),
            );
        }
        for u in script["utterances"].as_array().expect("utterances") {
            if u["kind"] == "noise" {
                continue;
            }
            let text = u["text"].as_str().expect("text");
            let (start, end) = (
                u["start_ms"].as_u64().expect("start"),
                u["end_ms"].as_u64().expect("end"),
            );
            let words: Vec<&str> = text.split_whitespace().collect();
            for k in 1..words.len() {
                let at = start + 250 + (end - start) * k as u64 / words.len() as u64;
                w.at(
                    at,
                    Owner::Caller,
                    Item::Event(TraceEvent::SttInterim(transcript(&words[..k]))),
                );
            }
            w.at(
                end + 250,
                Owner::Caller,
                Item::Event(TraceEvent::SttFinal {
                    transcript: transcript(&words),
                    speech_final: true,
                }),
            );
        }
        let hangup = script["hangup_at_ms"].as_u64().expect("hangup");
        w.at(hangup, Owner::Caller, Item::Event(TraceEvent::CallerHungUp));
        w
    }

    fn at(&mut self, at: u64, owner: Owner, item: Item) {
        self.seq += 1;
        self.queue.insert((at, self.seq), (owner, item));
    }

    fn run(mut self) -> Trace {
        let mut scratch = Vec::new();
        let mut now = 0;
        while !self.core.core().is_ended() {
            let next = self.queue.keys().next().map(|k| k.0);
            let deadline = self.core.poll_timeout().map(|d| d.0.max(now));
            let timeout_first = match (deadline, next) {
                (Some(d), Some(n)) => d < n,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if let (true, Some(d)) = (timeout_first, deadline) {
                now = d;
                self.core
                    .handle(switchboard_core::call::Event::Timeout, Millis(now));
            } else {
                let ((at, _), (_, item)) = self.queue.pop_first().expect("next");
                now = at.max(now);
                let core = &mut self.core;
                match item {
                    Item::Audio(from, len) => {
                        let a = &self.audio[from..from + len as usize];
                        core.handle(switchboard_core::call::Event::CallerAudio(a), Millis(now));
                    }
                    Item::Event(e) => {
                        e.with_event(&[], &mut scratch, |ev| core.handle(ev, Millis(now)))
                    }
                }
            }
            while let Some(a) = self.core.poll_action() {
                self.react(a, now);
            }
        }
        self.core.take_trace().expect("recording")
    }

    fn react(&mut self, a: Action, now: u64) {
        match a {
            Action::SendMedia(_) => self.playout = self.playout.max(now) + 20,
            Action::SendMark(name) => {
                self.seq += 1;
                let key = (self.playout.max(now), self.seq);
                self.queue.insert(
                    key,
                    (
                        Owner::Mark,
                        Item::Event(TraceEvent::MarkPlayed(name.to_string())),
                    ),
                );
                self.marks.push(key);
            }
            Action::SendClear => {
                self.playout = now;
                for key in std::mem::take(&mut self.marks) {
                    if key.0 > now
                        && let Some(v) = self.queue.remove(&key)
                    {
                        self.seq += 1;
                        self.queue.insert((now, self.seq), v);
                    }
                }
            }
            Action::StartLlm { generation, .. } => {
                let g = generation.0;
                self.queue.retain(|_, (o, _)| !matches!(o, Owner::Llm(_)));
                let mut at = now + 300;
                for word in REPLY.split_inclusive(' ') {
                    self.at(
                        at,
                        Owner::Llm(g),
                        Item::Event(TraceEvent::LlmText {
                            generation: g,
                            delta: word.to_owned(),
                        }),
                    );
                    at += 20;
                }
                self.at(
                    at,
                    Owner::Llm(g),
                    Item::Event(TraceEvent::LlmDone { generation: g }),
                );
            }
            Action::CancelLlm { generation } => self
                .queue
                .retain(|_, (o, _)| *o != Owner::Llm(generation.0)),
            Action::TtsText { generation, text } => {
                let g = generation.0;
                let at = (now + 150).max(self.tts_last.get(&g).copied().unwrap_or(0));
                self.tts_last.insert(g, at);
                self.at(
                    at,
                    Owner::Tts(g),
                    Item::Event(TraceEvent::TtsAudio {
                        generation: g,
                        bytes: (text.chars().count() as u64 * BYTES_PER_CHAR) as u32,
                        alignment: None,
                    }),
                );
            }
            Action::TtsFlush {
                generation,
                end_of_generation: true,
            } => {
                let g = generation.0;
                let at = (now + 150).max(self.tts_last.get(&g).copied().unwrap_or(0));
                self.at(
                    at,
                    Owner::Tts(g),
                    Item::Event(TraceEvent::TtsDone { generation: g }),
                );
            }
            Action::TtsCancel { generation } => self
                .queue
                .retain(|_, (o, _)| *o != Owner::Tts(generation.0)),
            _ => {}
        }
    }
}

fn transcript(words: &[&str]) -> Box<TraceTranscript> {
    Box::new(TraceTranscript {
        text: words.join(" "),
        confidence: 0.95,
        words: words.iter().map(|w| ((*w).to_owned(), 0.95)).collect(),
    })
}

fn settings() -> CallSettings {
    CallSettings {
        welcome_message: Some("Hi, Harbor Dental.".to_owned()),
        ..CallSettings::default()
    }
}

fn recorded(name: &str, settings: &CallSettings) -> Trace {
    let trace = World::new(name, settings).run();
    // Through the stored encoding, as the replay command reads it.
    Trace::from_bytes(&trace.to_bytes().expect("encode")).expect("decode")
}

/// Barge-ins that cut the bot (a `clear`; a reply cut by the caller's hang-up is not one).
fn cuts(moments: &[Moment]) -> usize {
    moments
        .iter()
        .filter(|m| matches!(m, Moment::Cleared { .. }))
        .count()
}

#[test]
fn every_fixture_call_replays_to_the_same_decisions() {
    let names = fixture_names();
    assert!(names.len() >= 10, "fixtures: {names:?}");
    for name in names {
        let trace = recorded(&name, &settings());
        assert!(!trace.truncated);
        assert!(
            trace.decisions.len() > 10,
            "{name}: {} decisions",
            trace.decisions.len()
        );
        let r = replay(&trace, None);
        assert!(r.reproduced, "{name}: {:?}", r.divergence);
        assert!(
            r.original
                .iter()
                .any(|m| matches!(m, Moment::Committed { .. })),
            "{name}: no turn committed: {:#?}",
            r.original
        );
    }
}

#[test]
fn a_changed_decision_is_reported_where_it_diverges() {
    let mut trace = recorded("booking_3_turns", &settings());
    trace.decisions[5].action.push('!');
    let r = replay(&trace, None);
    assert!(!r.reproduced);
    assert_eq!(r.divergence.expect("divergence").index, 5);
}

#[test]
fn what_if_with_unchanged_settings_tells_the_same_story() {
    for name in fixture_names() {
        let trace = recorded(&name, &settings());
        let r = replay(&trace, Some(&trace.settings));
        assert_eq!(
            r.what_if_summary.as_ref(),
            Some(&r.original_summary),
            "{name}:\n{}",
            r.side_by_side()
        );
    }
}

#[test]
fn what_if_interruptions_disabled_the_bot_is_never_cut() {
    let trace = recorded("barge_in", &settings());
    let mut s = trace.settings.clone();
    s.interruption.interruption_mode = InterruptionMode::Disabled;
    let r = replay(&trace, Some(&s));
    assert!(cuts(&r.original) > 0, "{}", r.side_by_side());
    let what_if = r.what_if.as_deref().expect("what-if");
    assert_eq!(cuts(what_if), 0, "{}", r.side_by_side());
    let text = r.side_by_side();
    assert!(
        text.contains("original") && text.contains("what-if"),
        "{text}"
    );
}

#[test]
fn what_if_a_longer_minimum_speaking_time_protects_the_start_of_a_reply() {
    // The barge-in lands early in the answer: with 10 s of minimum speaking time the bot is
    // not interruptible yet, finishes, and answers the caller afterwards.
    let trace = recorded("barge_in", &settings());
    let mut s = trace.settings.clone();
    s.interruption.min_speaking_time = 10.0;
    let r = replay(&trace, Some(&s));
    let what_if = r.what_if.as_deref().expect("what-if");
    assert!(cuts(what_if) < cuts(&r.original), "{}", r.side_by_side());
}

fn pauses(moments: &[Moment]) -> Vec<u64> {
    moments
        .iter()
        .filter_map(|m| match m {
            Moment::Paused { from_ms, .. } => Some(*from_ms),
            _ => None,
        })
        .collect()
}

#[test]
fn without_tail_protection_the_bot_goes_quiet_at_the_onset_of_tail_speech() {
    // "And is there parking?" starts 0.8 s before the end of a 3.3 s answer. Protected (the
    // default 2 s), the bot talks on until the words confirm the barge-in and cuts it then;
    // unprotected, it pauses at the onset, well before that.
    let trace = recorded("tail_speech", &settings());
    let r = replay(&trace, None);
    let cleared = r
        .original
        .iter()
        .find_map(|m| match m {
            Moment::Cleared { at_ms } => Some(*at_ms),
            _ => None,
        })
        .expect("the tail speech cuts the bot in the original");
    assert!(pauses(&r.original).is_empty(), "{}", r.side_by_side());

    let mut unprotected = trace.settings.clone();
    unprotected.interruption.tail_protection_ms = 0;
    let r = replay(&trace, Some(&unprotected));
    let what_if = r.what_if.as_deref().expect("what-if");
    let paused = pauses(what_if);
    assert_eq!(paused.len(), 1, "{}", r.side_by_side());
    assert!(paused[0] + 300 < cleared, "{}", r.side_by_side());
    assert_eq!(cuts(what_if), 1, "{}", r.side_by_side());

    let mut protected = trace.settings.clone();
    protected.interruption.tail_protection_ms = 10_000;
    let r = replay(&trace, Some(&protected));
    assert!(
        pauses(r.what_if.as_deref().expect("what-if")).is_empty(),
        "{}",
        r.side_by_side()
    );
}

#[test]
fn a_trace_keeps_the_queue_order_of_unpolled_actions() {
    // Two events handled before the actions are polled: each decision keeps its own time.
    let s = settings();
    let mut t = TracedCore::new(s, Millis(0), true);
    t.handle(switchboard_core::call::Event::CallStarted, Millis(0));
    t.handle(switchboard_core::call::Event::Timeout, Millis(50));
    let mut polled = VecDeque::new();
    while let Some(a) = t.poll_action() {
        polled.push_back(a);
    }
    let trace = t.take_trace().expect("trace");
    assert!(
        trace
            .decisions
            .iter()
            .all(|d| d.at_ms == 0 || d.at_ms == 50)
    );
    assert!(trace.decisions.first().is_some_and(|d| d.at_ms == 0));
    assert!(!polled.is_empty());
}
