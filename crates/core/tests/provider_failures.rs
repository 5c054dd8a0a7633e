//! Provider failures in virtual time: whatever breaks, the caller hears an apology (from our TTS,
//! or from the telephony side when our TTS is what broke) and the call either goes on or ends
//! with a reason naming the provider; never silence until the caller gives up.

mod common;
use common::*;
use switchboard_core::call::{Action, CallSettings, HangUpReason};

fn done_of(sim: &Sim, text: &str) -> u64 {
    sim.bot_lines()
        .iter()
        .find(|l| l.text == text)
        .map(|l| l.end.0)
        .unwrap_or(0)
}

fn said(sim: &Sim, text: &str) -> bool {
    sim.tts_texts().iter().any(|(_, _, t)| t == text)
}

#[test]
fn stt_failure_says_goodbye_through_the_tts_and_hangs_up_with_stt_failed() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.say(1000, 1600, "what time do you open");
    sim.at(6000, In::SttFail);
    sim.run_until(30_000);
    let goodbye = sim.core.settings().stt_failure_message.clone();
    let bye = done_of(&sim, &goodbye);
    assert!(bye > 6000, "the goodbye was not played: {}", sim.timeline());
    assert_eq!(sim.hangups(), vec![(bye, HangUpReason::SttFailed)]);
    assert_eq!(sim.spoken_by_telephony(), None, "our TTS said it");
    assert!(sim.core.is_ended());
    sim.assert_clean();
}

#[test]
fn stt_failure_lets_the_reply_being_spoken_finish_first() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    sim.at(t0 + 1000, In::SttFail);
    sim.run_until(t0 + 60_000);
    let reply_end = done_of(&sim, LONG_REPLY);
    let goodbye = sim.core.settings().stt_failure_message.clone();
    let bye = done_of(&sim, &goodbye);
    assert!(reply_end > t0 && bye > reply_end, "{}", sim.timeline());
    assert_eq!(sim.clears(), 0, "nothing was cut off");
    assert_eq!(sim.hangups(), vec![(bye, HangUpReason::SttFailed)]);
    sim.assert_clean();
}

#[test]
fn stt_failure_during_an_ending_changes_nothing() {
    let mut sim = Sim::new(CallSettings {
        max_call_length: Some(2),
        end_call_message: Some("We are out of time, goodbye.".into()),
        ..CallSettings::default()
    });
    sim.at(2500, In::SttFail);
    sim.run_until(20_000);
    let bye = done_of(&sim, "We are out of time, goodbye.");
    assert!(bye > 0);
    assert_eq!(sim.hangups(), vec![(bye, HangUpReason::MaxCallLength)]);
    assert!(!said(
        &sim,
        &sim.core.settings().stt_failure_message.clone()
    ));
}

#[test]
fn a_dead_tts_hangs_up_with_the_goodbye_spoken_by_the_telephony() {
    // The welcome fails, the apology fails: speech through the TTS is impossible.
    let mut sim = Sim::with_welcome("Hello.");
    sim.tts_broken = true;
    sim.run_until(10_000);
    let h = sim.hangups();
    assert_eq!(h.len(), 1, "{}", sim.timeline());
    assert_eq!(h[0].1, HangUpReason::TtsFailed);
    assert!(
        h[0].0 < 1_000,
        "hung up at once, not after a silence: {h:?}"
    );
    assert_eq!(
        sim.spoken_by_telephony().as_deref(),
        Some(sim.core.settings().provider_error_message.as_str())
    );
    assert_eq!(sim.count(|a| matches!(a, Action::SendMedia(_))), 0);
    assert_eq!(sim.metrics().tts_failures, 2);
    assert!(sim.core.is_ended());
    sim.assert_clean();
}

#[test]
fn one_tts_failure_is_apologised_for_and_the_next_turn_is_answered() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.default_reply = "We open at nine.".into();
    sim.say(1000, 1600, "when do you open");
    // The reply to the first turn fails without audio; the TTS works again for the apology.
    sim.auto_tts = false;
    sim.run_until(2_200);
    let reply = sim
        .llm_starts()
        .first()
        .map(|s| s.1)
        .expect("a reply started");
    sim.at(2_300, In::TtsFail(reply));
    sim.auto_tts = true;
    sim.say(8000, 8600, "and on saturday");
    sim.run_until(30_000);
    let apology = sim.core.settings().apology_message.clone();
    let sorry = done_of(&sim, &apology);
    assert!(sorry > 2_300 && sorry < 8_000, "{}", sim.timeline());
    assert!(
        done_of(&sim, "We open at nine.") > 8600,
        "the next turn was answered: {}",
        sim.timeline()
    );
    assert!(sim.hangups().is_empty());
    sim.assert_clean();
}

#[test]
fn a_goodbye_the_tts_cannot_say_is_said_by_the_telephony() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.run_until(3_000);
    sim.tts_broken = true;
    sim.at(
        3_000,
        In::HangUpReq(Some("Thanks for calling, goodbye.".into())),
    );
    sim.run_until(10_000);
    let h = sim.hangups();
    assert_eq!(h.len(), 1, "{}", sim.timeline());
    assert_eq!(
        h[0].1,
        HangUpReason::Completed,
        "the ending keeps its reason"
    );
    assert_eq!(
        sim.spoken_by_telephony().as_deref(),
        Some("Thanks for calling, goodbye.")
    );
    sim.assert_clean();
}

#[test]
fn stt_failure_with_a_dead_tts_is_still_heard() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.run_until(3_000);
    sim.tts_broken = true;
    sim.at(3_000, In::SttFail);
    sim.run_until(10_000);
    assert_eq!(sim.hangups().len(), 1);
    assert_eq!(sim.hangups()[0].1, HangUpReason::SttFailed);
    assert_eq!(
        sim.spoken_by_telephony().as_deref(),
        Some(sim.core.settings().stt_failure_message.as_str())
    );
}

#[test]
fn a_tts_failure_mid_reply_keeps_what_was_heard() {
    let mut sim = Sim::new(CallSettings::default());
    sim.default_reply = LONG_REPLY.into();
    sim.say(0, 800, "what are your opening hours");
    // The reply's first sentence is being synthesised when its TTS fails for good.
    sim.run_until(1_750);
    let reply = sim.llm_starts()[0].1;
    sim.at(1_800, In::TtsFail(reply));
    sim.run_until(30_000);
    let apology = sim.core.settings().apology_message.clone();
    let sorry = done_of(&sim, &apology);
    assert!(sorry > 1_800, "{}", sim.timeline());
    assert!(sim.hangups().is_empty());
    // What was synthesised played (before the apology); the history holds only that.
    let line = sim
        .bot_lines()
        .into_iter()
        .find(|l| l.generation == Some(reply))
        .expect("the partial reply played");
    assert!(
        line.text.starts_with("Our opening hours") && !line.text.contains("Saturdays"),
        "{line:?}"
    );
    assert!(line.end.0 <= sorry);
    let said = sim.assistant_history();
    assert!(
        said.iter().all(|t| !t.contains("Saturdays")),
        "unheard words are in the history: {said:?}"
    );
    sim.assert_clean();
}

#[test]
fn an_llm_failure_is_apologised_for_and_the_next_turn_works() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.llm_script.push_back(LlmScript::Fail);
    sim.llm_script
        .push_back(LlmScript::Reply("Yes, on Saturday too.".into()));
    sim.say(1000, 1600, "when do you open");
    sim.say(9000, 9600, "and on saturday");
    sim.run_until(30_000);
    let apology = sim.core.settings().apology_message.clone();
    let sorry = done_of(&sim, &apology);
    assert!(sorry > 1600 && sorry < 9000, "{}", sim.timeline());
    assert!(done_of(&sim, "Yes, on Saturday too.") > 9600);
    assert!(sim.hangups().is_empty());
    assert_eq!(sim.metrics().llm_failures, 1);
    sim.assert_clean();
}

#[test]
fn llm_failures_in_a_row_end_with_llm_failed_after_a_spoken_goodbye() {
    let mut sim = Sim::with_welcome("Hello.");
    sim.llm_script.push_back(LlmScript::Fail);
    sim.llm_script.push_back(LlmScript::Fail);
    sim.say(1000, 1600, "when do you open");
    sim.say(9000, 9600, "hello");
    sim.run_until(40_000);
    let goodbye = sim.core.settings().provider_error_message.clone();
    let bye = done_of(&sim, &goodbye);
    assert!(bye > 9600, "{}", sim.timeline());
    assert_eq!(sim.hangups(), vec![(bye, HangUpReason::LlmFailed)]);
    assert_eq!(sim.spoken_by_telephony(), None);
    sim.assert_clean();
}

#[test]
fn reasons_have_stable_names() {
    assert_eq!(HangUpReason::SttFailed.as_str(), "stt_failed");
    assert_eq!(HangUpReason::TtsFailed.as_str(), "tts_failed");
    assert_eq!(HangUpReason::LlmFailed.as_str(), "llm_failed");
    assert!(HangUpReason::TtsFailed.is_provider_failure());
    assert!(!HangUpReason::IdleTimeout.is_provider_failure());
}
