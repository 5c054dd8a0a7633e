//! Recorded calls from `fixtures/calls` through the core with the real WebRTC VAD: a real
//! barge-in, backchannels during a long answer, coughs, speech at the tail, an interruption during
//! the welcome. STT results are scripted from each fixture's JSON (interim 300 ms after the
//! utterance starts, `speech_final` 300 ms after it ends).

mod common;
use common::*;
use serde_json::Value;
use switchboard_core::call::{Action, CallCore, CallSettings, Millis};

/// A bot answer of about 3.8 s.
const SHORT: &str = "Sure, I can help with that. Here is what I found for you today.";

struct Utterance {
    text: String,
    start: u64,
    end: u64,
    kind: String,
}

fn load(name: &str) -> (Vec<u8>, Vec<Utterance>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/calls/");
    let audio = std::fs::read(format!("{dir}{name}.ulaw")).unwrap_or_default();
    let json: Value = std::fs::read_to_string(format!("{dir}{name}.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    let utterances: Vec<Utterance> = json["utterances"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| Utterance {
                    text: u["text"].as_str().unwrap_or("").to_owned(),
                    start: u["start_ms"].as_u64().unwrap_or(0),
                    end: u["end_ms"].as_u64().unwrap_or(0),
                    kind: u["kind"].as_str().unwrap_or("").to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !audio.is_empty() && !utterances.is_empty(),
        "fixture {name} missing"
    );
    (audio, utterances)
}

/// Replays fixture `name`; the bot answers every turn with `reply` (the fixtures assume short
/// answers of a few seconds).
fn replay(name: &str, settings: CallSettings, reply: &str) -> (Sim, Vec<Utterance>) {
    let (audio, utterances) = load(name);
    let core = CallCore::new(settings, Millis(0));
    let mut sim = Sim::from_core(core);
    sim.default_reply = reply.into();
    let end = audio.len() as u64 / 8;
    sim.play_recording(audio);
    for u in &utterances {
        if u.kind == "noise" {
            continue;
        }
        let words: Vec<&str> = u.text.split_whitespace().collect();
        let half = words[..words.len().div_ceil(2)].join(" ");
        sim.at(u.start + 300, In::Interim(half, 0.95));
        sim.at(u.end + 300, In::Final(u.text.clone(), 0.95, true));
    }
    sim.run_until(end + 15_000);
    (sim, utterances)
}

#[test]
fn real_barge_in() {
    let (sim, u) = replay("barge_in", CallSettings::default(), SHORT);
    assert_eq!(sim.clears(), 1);
    let clear = sim
        .first_at(|a| matches!(a, Action::SendClear))
        .unwrap_or(0);
    let barge = &u[1];
    assert!(
        clear > barge.start && clear < barge.start + 500,
        "clear at {clear}"
    );
    let m = sim.metrics();
    assert_eq!(m.interruptions, 1);
    assert!(m.interruption_reaction_ms[0] < 500);
    let a = sim.assistant_history();
    assert!(
        SHORT.starts_with(&a[0]) && a[0].len() < SHORT.len() / 2,
        "{a:?}"
    );
    assert_eq!(sim.user_history()[1], barge.text);
    sim.assert_clean();
}

#[test]
fn real_backchannels_do_not_interrupt() {
    let (sim, u) = replay("backchannel", CallSettings::default(), LONG_REPLY);
    // No clear before the caller's closing turn (which may itself talk over the end of the
    // long answer: the bot paused for each backchannel until it was recognised as one).
    let last = &u[u.len() - 1];
    let clear = sim.first_at(|a| matches!(a, Action::SendClear));
    assert!(
        clear.is_none_or(|c| c >= last.start),
        "a backchannel cut the bot off: clear at {clear:?}"
    );
    assert_eq!(sim.metrics().backchannels_ignored, 2);
    assert_eq!(
        sim.user_history(),
        [
            "What do I need to bring to my first appointment?",
            "Okay, got it. Thanks, goodbye."
        ]
    );
    assert!(LONG_REPLY.starts_with(&sim.assistant_history()[0]));
    assert!(sim.assistant_history()[0].len() > LONG_REPLY.len() / 2);
    sim.assert_clean();
}

#[test]
fn real_coughs_are_not_turns() {
    let (sim, u) = replay("cough_noise", CallSettings::default(), SHORT);
    assert_eq!(sim.clears(), 0);
    let turns: Vec<&str> = u
        .iter()
        .filter(|x| x.kind == "turn")
        .map(|x| x.text.as_str())
        .collect();
    let heard = sim.user_history();
    assert_eq!(heard.join(" "), turns.join(" "));
    sim.assert_clean();
}

#[test]
fn every_fixture_replays_cleanly() {
    for name in [
        "booking_3_turns",
        "fast_talker",
        "hesitant_caller",
        "noisy_quiet_line",
        "pause_mid_sentence",
        "tail_speech",
        "welcome_interrupt",
    ] {
        for welcome in [
            None,
            Some("Hello, thanks for calling the restaurant, how can I help you today?"),
        ] {
            let (sim, u) = replay(
                name,
                CallSettings {
                    welcome_message: welcome.map(str::to_owned),
                    incomplete_utterance_detection: true,
                    ..CallSettings::default()
                },
                SHORT,
            );
            // Every spoken turn reaches the history (merged or not), nothing is lost.
            let all = sim.user_history().join(" ");
            for x in u.iter().filter(|x| x.kind == "turn") {
                assert!(
                    all.contains(&x.text),
                    "{name}: {:?} missing from {all:?}",
                    x.text
                );
            }
            sim.assert_clean();
        }
    }
}
