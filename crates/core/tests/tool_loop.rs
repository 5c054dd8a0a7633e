//! The tool loop: tool calls are actions, results are events, the call lives on in between.
//! A result that arrives before the LLM stream ends still continues the reply; parallel calls
//! continue once all answered; a slow round gets the filler; rounds are capped with a spoken
//! apology; a barge-in cancels the reply's tools; an ending call does not start another round.

mod common;
use common::*;
use switchboard_core::call::settings::{DEFAULT_TOOL_FILLER, DEFAULT_TOOL_ROUND_CAP_APOLOGY};
use switchboard_core::call::{Action, CallSettings, ToolCall};
use switchboard_core::dialog::Role;

fn call(id: &str, name: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: "{}".into(),
    }
}

fn quiet() -> CallSettings {
    CallSettings {
        welcome_message: None,
        ..CallSettings::default()
    }
}

fn run_tool_times(sim: &Sim) -> Vec<u64> {
    sim.actions()
        .filter(|(_, a)| matches!(a, Action::RunTool { .. }))
        .map(|(t, _)| *t)
        .collect()
}

fn spoken(sim: &Sim) -> Vec<String> {
    sim.tts_texts().into_iter().map(|(_, _, t)| t).collect()
}

#[test]
fn a_result_before_the_stream_ends_still_continues_the_reply() {
    let mut sim = Sim::new(quiet());
    sim.llm_script
        .push_back(LlmScript::Tool(call("c1", "weather")));
    sim.llm_script
        .push_back(LlmScript::Reply("It is sunny in Oslo.".into()));
    // The tool answers at once: before the LLM stream's end (the live call's order).
    sim.tool_results
        .push_back((0, "{\"sky\":\"clear\"}".into()));
    sim.say(0, 800, "weather in oslo");
    sim.run_until(10_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2, "the result went back to the LLM");
    assert_eq!(starts[0].1, starts[1].1, "same generation");
    let Some((_, Action::StartLlm { messages, .. })) = sim
        .actions()
        .filter(|(_, a)| matches!(a, Action::StartLlm { .. }))
        .nth(1)
    else {
        panic!("no second round");
    };
    let tool = messages.last().expect("messages");
    assert_eq!(tool.role, Role::Tool);
    assert_eq!(tool.tool_call_id.as_deref(), Some("c1"));
    assert_eq!(tool.content, "{\"sky\":\"clear\"}");
    assert!(spoken(&sim).iter().any(|t| t.contains("sunny")));
    assert_eq!(sim.bot_lines().len(), 1);
    sim.assert_clean();
}

#[test]
fn two_tools_in_one_reply_run_together_and_the_reply_continues_once_both_answered() {
    let mut sim = Sim::new(quiet());
    sim.llm_script.push_back(LlmScript::Tools(vec![
        call("a", "hours"),
        call("b", "address"),
    ]));
    sim.llm_script
        .push_back(LlmScript::Reply("We open at nine on Harbor Street.".into()));
    sim.tool_results.push_back((900, "{\"open\":9}".into()));
    sim.tool_results
        .push_back((300, "{\"street\":\"Harbor\"}".into()));
    sim.say(0, 800, "when and where");
    sim.run_until(10_000);
    let runs = run_tool_times(&sim);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], runs[1], "both tools start at once");
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2);
    assert!(
        starts[1].0 >= runs[0] + 900,
        "the next round waits for the slower tool: {starts:?} {runs:?}"
    );
    let h = sim.core.history().messages();
    let roles: Vec<Role> = h.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(h[2].tool_calls.len(), 2);
    // Results in call order, whatever order they came in.
    assert_eq!(h[3].tool_call_id.as_deref(), Some("a"));
    assert_eq!(h[4].tool_call_id.as_deref(), Some("b"));
    assert!(h.iter().all(|m| m.content != DEFAULT_TOOL_FILLER));
    sim.assert_clean();
}

#[test]
fn a_slow_tool_gets_the_filler_and_a_fast_one_does_not() {
    for (delay, filler) in [(300u64, false), (4_000, true)] {
        let mut sim = Sim::new(quiet());
        sim.llm_script
            .push_back(LlmScript::Tool(call("c1", "lookup")));
        sim.llm_script
            .push_back(LlmScript::Reply("Found it.".into()));
        sim.tool_results.push_back((delay, "{}".into()));
        sim.say(0, 800, "look it up");
        sim.run_until(15_000);
        let run = run_tool_times(&sim)[0];
        let said: Vec<(u64, String)> = sim
            .tts_texts()
            .into_iter()
            .map(|(t, _, text)| (t, text))
            .collect();
        let filler_at = said
            .iter()
            .find(|(_, t)| t == DEFAULT_TOOL_FILLER)
            .map(|(t, _)| *t);
        assert_eq!(filler_at.is_some(), filler, "delay {delay}: {said:?}");
        if let Some(at) = filler_at {
            assert_eq!(
                at,
                run + 1200,
                "the filler comes after the configured delay"
            );
            // The caller hears it while the tool runs.
            assert!(sim.media_between(at, run + delay) > 0);
        }
        assert!(said.iter().any(|(_, t)| t.contains("Found it")));
        // The filler is audio, not history.
        assert!(
            sim.core
                .history()
                .messages()
                .iter()
                .all(|m| !m.content.contains("One moment"))
        );
        sim.assert_clean();
    }
}

#[test]
fn no_filler_when_it_is_switched_off() {
    let mut sim = Sim::new(CallSettings {
        tool_filler_delay_ms: None,
        ..quiet()
    });
    sim.llm_script
        .push_back(LlmScript::Tool(call("c1", "lookup")));
    sim.tool_results.push_back((4_000, "{}".into()));
    sim.say(0, 800, "look it up");
    sim.run_until(15_000);
    assert!(!spoken(&sim).iter().any(|t| t == DEFAULT_TOOL_FILLER));
    assert_eq!(sim.llm_starts().len(), 2);
}

#[test]
fn rounds_are_capped_with_a_spoken_apology() {
    let mut sim = Sim::new(CallSettings {
        max_tool_rounds: 2,
        ..quiet()
    });
    for i in 0..5 {
        sim.llm_script
            .push_back(LlmScript::Tool(call(&format!("c{i}"), "again")));
    }
    sim.say(0, 800, "do it");
    sim.run_until(20_000);
    assert_eq!(run_tool_times(&sim).len(), 2, "two rounds ran");
    assert_eq!(sim.llm_starts().len(), 3, "the third round asked for more");
    assert!(sim.count(|a| matches!(a, Action::CancelLlm { .. })) >= 1);
    assert!(
        spoken(&sim)
            .iter()
            .any(|t| t == DEFAULT_TOOL_ROUND_CAP_APOLOGY)
    );
    assert!(sim.media_between(0, 20_000) > 0, "the apology was played");
    let h = sim.core.history();
    assert!(h.check().is_ok());
    assert_eq!(
        h.messages().last().map(|m| m.content.as_str()),
        Some(DEFAULT_TOOL_ROUND_CAP_APOLOGY)
    );
    sim.assert_clean();
}

#[test]
fn a_barge_in_during_a_tool_cancels_the_reply_s_tools() {
    let mut sim = Sim::new(quiet());
    sim.llm_script.push_back(LlmScript::TextThenTool(
        "Let me check that for you, it takes a moment to look it up.".into(),
        call("slow", "lookup"),
    ));
    sim.llm_script
        .push_back(LlmScript::Reply("Sure, what else?".into()));
    sim.tool_results
        .push_back((8_000, "{\"late\":true}".into()));
    sim.say(0, 800, "check my booking");
    sim.run_until(2_500);
    let run = run_tool_times(&sim)[0];
    // The caller talks over the bot while the tool runs.
    let t = align(run + 1_500);
    sim.speak(t, t + 900);
    sim.at(t + 300, In::Interim("no wait actually".into(), 0.9));
    sim.at(
        t + 1_100,
        In::Final("no wait actually cancel".into(), 0.9, true),
    );
    sim.run_until(20_000);
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelTools { .. })),
        1,
        "{}",
        sim.timeline()
    );
    let h = sim.core.history();
    assert!(h.check().is_ok());
    let tool = h
        .messages()
        .iter()
        .find(|m| m.role == Role::Tool)
        .expect("the cancelled call has a result");
    assert!(tool.content.contains("cancelled"), "{tool:?}");
    // The late result changes nothing: one reply to the new turn, no extra round.
    assert!(!h.messages().iter().any(|m| m.content.contains("late")));
    assert_eq!(sim.llm_starts().len(), 2);
    sim.assert_clean();
}

#[test]
fn an_ending_call_does_not_start_another_round() {
    let mut sim = Sim::new(quiet());
    sim.llm_script
        .push_back(LlmScript::Tool(call("bye", "end_call")));
    sim.llm_script
        .push_back(LlmScript::Reply("This must not be said.".into()));
    sim.tool_results.push_back((1_000, "{\"ok\":true}".into()));
    sim.say(0, 800, "that is all, bye");
    let mut t = 0;
    while run_tool_times(&sim).is_empty() {
        t += 20;
        sim.run_until(t);
    }
    // The runtime turns `end_call` into a hang-up request before it reports the result.
    sim.at(t + 100, In::HangUpReq(Some("Goodbye!".into())));
    sim.run_until(20_000);
    assert_eq!(sim.llm_starts().len(), 1, "{}", sim.timeline());
    assert!(!spoken(&sim).iter().any(|t| t.contains("must not")));
    assert!(spoken(&sim).iter().any(|t| t == "Goodbye!"));
    assert_eq!(sim.hangups().len(), 1);
    sim.assert_clean();
}

#[test]
fn a_turn_over_the_start_of_the_filler_cancels_the_tools_instead_of_waiting_for_them() {
    let mut sim = Sim::new(quiet());
    sim.llm_script
        .push_back(LlmScript::Tool(call("slow", "lookup")));
    sim.llm_script
        .push_back(LlmScript::Reply("Our address is one Harbor Street.".into()));
    // The tool would answer after 8 s.
    sim.tool_results
        .push_back((8_000, "{\"late\":true}".into()));
    sim.say(0, 800, "book me a cleaning");
    sim.run_until(2_000);
    let run = run_tool_times(&sim)[0];
    sim.run_until(run + 1_300);
    let filler = sim
        .tts_texts()
        .into_iter()
        .find(|(_, _, t)| t == DEFAULT_TOOL_FILLER)
        .map(|(t, _, _)| t)
        .expect("the filler started");
    // The caller starts a new question within `min_speaking_time` of the filler: the gate
    // holds the onset, but the words make a real turn.
    let t = align(filler.max(sim.first_media_after(filler).unwrap_or(filler)) + 100);
    sim.speak(t, t + 1_200);
    sim.at(t + 400, In::Interim("actually what is".into(), 0.9));
    sim.at(
        t + 1_300,
        In::Final("actually what is your address".into(), 0.9, true),
    );
    sim.run_until(run + 6_000);
    // Answered now, not after the tool: its calls were cancelled, the new turn got a reply.
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelTools { .. })),
        1,
        "{}",
        sim.timeline()
    );
    assert_eq!(sim.llm_starts().len(), 2, "{}", sim.timeline());
    sim.run_until(20_000);
    let h = sim.core.history();
    assert!(h.check().is_ok());
    assert!(!h.messages().iter().any(|m| m.content.contains("late")));
    assert!(spoken(&sim).iter().any(|t| t.contains("Harbor Street")));
    sim.assert_clean();
}
