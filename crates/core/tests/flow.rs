//! Basic call flow: welcome → listen → turn → reply → playback → listening.

mod common;
use common::*;
use switchboard_core::call::{Action, CallSettings};
use switchboard_core::dialog::Role;
use switchboard_core::turn::{BotState, UserState};

#[test]
fn welcome_then_turn_then_reply() {
    let mut sim = Sim::with_welcome("Hello, how can I help?");
    sim.run_until(3000);
    // Welcome spoken and fully played.
    let tts = sim.tts_texts();
    assert_eq!(tts[0].2, "Hello, how can I help?");
    assert!(sim.count(|a| matches!(a, Action::SendMedia(_))) > 0);
    assert_eq!(sim.core.bot_state(), BotState::Silent);
    assert_eq!(sim.bot_lines().len(), 1);
    sim.say(3000, 4000, "what time is it");
    sim.run_until(12_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 1);
    assert!(!starts[0].2);
    assert_eq!(sim.user_history(), vec!["what time is it".to_string()]);
    assert_eq!(sim.assistant_history().len(), 2);
    assert_eq!(sim.assistant_history()[1], sim.default_reply);
    assert_eq!(sim.core.user_state(), UserState::Idle);
    assert_eq!(sim.core.bot_state(), BotState::Silent);
    assert_eq!(sim.history()[0].0, Role::Assistant);
    sim.assert_clean();
}

#[test]
fn no_welcome_waits_for_caller() {
    let mut sim = Sim::new(CallSettings::default());
    sim.run_until(2000);
    assert_eq!(sim.count(|a| matches!(a, Action::TtsText { .. })), 0);
    sim.assert_clean();
}
