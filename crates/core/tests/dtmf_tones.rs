//! DTMF tones sent into the call (`Event::PlayDtmf`, the `dtmf_solver` tool): they play through
//! the same paced playout as speech, decode back to the digits sent, and a barge-in clears them.

mod common;

use common::{In, Sim};
use switchboard_core::audio::dtmf::DtmfDetector;
use switchboard_core::call::{Action, CallSettings};

/// Decodes every frame the fake Twilio played, in order.
fn heard_digits(sim: &Sim) -> String {
    let mut det = DtmfDetector::new();
    let mut got = String::new();
    for (_, frame) in &sim.played {
        det.push_mulaw_each(frame, |d| got.push(d));
    }
    got
}

#[test]
fn every_key_round_trips_through_the_playout() {
    let mut sim = Sim::new(CallSettings::default());
    sim.at(100, In::PlayDtmf("0123456789*#ABCD".to_owned()));
    sim.run_until(8_000);
    assert_eq!(heard_digits(&sim), "0123456789*#ABCD");
    // 16 digits of 100 ms tone + 100 ms pause: 160 frames, paced within the lead.
    assert_eq!(sim.count(|a| matches!(a, Action::SendMedia(_))), 160);
    assert!(
        sim.max_queued_ms <= sim.lead_ms,
        "{} ms queued",
        sim.max_queued_ms
    );
    assert!(sim.count(|a| matches!(a, Action::SendMark(_))) > 0);
    assert!(
        sim.history().is_empty(),
        "tones are not part of the conversation"
    );
    sim.assert_clean();
}

#[test]
fn tones_wait_for_the_welcome_and_invalid_digits_send_nothing() {
    let mut sim = Sim::with_welcome("Hello there.");
    sim.at(10, In::PlayDtmf("12x".to_owned()));
    sim.at(20, In::PlayDtmf("9#".to_owned()));
    sim.run_until(10_000);
    assert_eq!(heard_digits(&sim), "9#");
    let texts = sim.tts_texts();
    assert_eq!(texts.len(), 1, "only the welcome is synthesised");
    assert!(texts[0].2.contains("Hello there."));
    // The tones' generation comes after the welcome's: its frames follow the welcome's.
    let last_welcome_mark = sim
        .last_at(|a| matches!(a, Action::SendMark(m) if m.generation == texts[0].1))
        .expect("welcome marks");
    let first_tone_mark = sim
        .first_at(|a| matches!(a, Action::SendMark(m) if m.generation != texts[0].1))
        .expect("tone marks");
    assert!(last_welcome_mark <= first_tone_mark);
    sim.assert_clean();
}

#[test]
fn a_barge_in_clears_the_tones() {
    let mut sim = Sim::new(CallSettings::default());
    sim.at(100, In::PlayDtmf("0123456789*#ABCD".to_owned()));
    sim.say(1_200, 2_000, "stop that please now");
    sim.run_until(12_000);
    assert!(sim.clears() >= 1, "{}", sim.timeline());
    let heard = heard_digits(&sim);
    assert!(
        heard.len() < 16 && "0123456789*#ABCD".starts_with(&heard),
        "heard {heard}"
    );
}
