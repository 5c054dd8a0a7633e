//! What the history keeps: replies cut to what was heard (alignment or proportional), unheard
//! replies removed with their tools, marks of cleared generations ignored; tools; transcripts.

mod common;
use common::*;
use switchboard_core::call::{Action, Alignment, CallSettings, Generation, ToolCall};
use switchboard_core::dialog::Role;
use switchboard_core::turn::BotState;

/// The welcome "Hello world again" as 2 s of audio: "Hello" takes 1.5 s, "world" 250 ms,
/// "again" 250 ms.
fn skewed_welcome(aligned: bool) -> Sim {
    let mut sim = Sim::new(CallSettings {
        welcome_message: Some("Hello world again".into()),
        interruption: switchboard_core::call::InterruptionSettings {
            tail_protection_ms: 0,
            ..Default::default()
        },
        // The positions below assume the full 300-ms lead queued when the bot pauses.
        interruptible_lead_ms: 300,
        ..CallSettings::default()
    });
    sim.auto_tts = false;
    let mut a = Alignment::default();
    let mut t = 0u32;
    for (word, per_char) in [("Hello", 300u32), ("world", 50), ("again", 50)] {
        if t > 0 {
            a.chars.push(' ');
            a.char_start_ms.push(t);
            a.char_duration_ms.push(0);
        }
        for c in word.chars() {
            a.chars.push(c);
            a.char_start_ms.push(t);
            a.char_duration_ms.push(per_char);
            t += per_char;
        }
    }
    assert_eq!(t, 2000);
    sim.at(
        50,
        In::TtsAudio(Generation(1), vec![0x20; 16_000], aligned.then_some(a)),
    );
    sim.at(60, In::TtsDone(Generation(1)));
    sim
}

#[test]
fn interrupted_welcome_keeps_what_was_heard_with_alignment() {
    // First frame at 50: playback position p at time 50 + p.
    for (confirm_at, aligned, expected) in [
        (1700u64, true, "Hello"),
        (1820, true, "Hello world"),
        (1700, false, "Hello world"),
        (900, false, "Hello"),
        (900, true, ""),
    ] {
        let mut sim = skewed_welcome(aligned);
        let speech = align(confirm_at - 300);
        sim.speak(speech, speech + 600);
        sim.at(confirm_at, In::Interim("wait a moment".into(), 0.9));
        sim.run_until(confirm_at);
        assert_eq!(sim.clears(), 1, "confirm at {confirm_at}");
        let a = sim.assistant_history();
        if expected.is_empty() {
            assert!(a.is_empty(), "{a:?}");
        } else {
            assert_eq!(a, [expected], "confirm at {confirm_at} aligned {aligned}");
        }
        sim.assert_clean();
    }
}

#[test]
fn unheard_reply_leaves_the_history_with_its_tool_calls() {
    let mut sim = Sim::new(CallSettings::default());
    sim.llm_script.push_back(LlmScript::Tool(ToolCall {
        id: "call-1".into(),
        name: "lookup".into(),
        arguments: "{}".into(),
    }));
    sim.tool_results
        .push_back((3000, "{\"hours\":\"9-6\"}".into()));
    sim.say(0, 800, "when are you open");
    // The caller goes on while the tool runs: no audio has been heard.
    sim.speak(1600, 2600);
    sim.at(1800, In::Interim("on sunday".into(), 0.9));
    sim.at(2900, In::Final("on sunday I mean".into(), 0.9, true));
    sim.run_until(20_000);
    let h = sim.core.history().messages();
    assert!(h.iter().all(|m| m.role != Role::Tool), "{h:?}");
    assert!(h.iter().all(|m| m.tool_calls.is_empty()), "{h:?}");
    assert_eq!(sim.user_history(), ["when are you open on sunday I mean"]);
    assert_eq!(sim.metrics().premature_endpoints, 1);
    sim.assert_clean();
}

#[test]
fn heard_part_of_a_tool_reply_keeps_its_tool_calls() {
    let mut sim = Sim::new(CallSettings::default());
    sim.llm_script.push_back(LlmScript::TextThenTool(
        "Let me check that for you.".into(),
        ToolCall {
            id: "call-1".into(),
            name: "lookup".into(),
            arguments: "{}".into(),
        },
    ));
    sim.llm_script
        .push_back(LlmScript::Reply(LONG_REPLY.into()));
    sim.say(0, 800, "when are you open");
    sim.run_until(6000);
    let first = sim.first_media_after(0).unwrap_or(0);
    assert!(first > 0);
    // Interrupt well into the second part.
    let speech = align(first + 6000);
    sim.speak(speech, speech + 800);
    sim.at(speech + 200, In::Interim("thanks bye".into(), 0.9));
    sim.at(speech + 1100, In::Final("thanks bye".into(), 0.9, true));
    sim.run_until(speech + 15_000);
    assert_eq!(sim.clears(), 1);
    let msgs = sim.core.history().messages();
    let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::User,
            Role::Assistant
        ]
    );
    assert_eq!(msgs[2].content, "Let me check that for you.");
    assert_eq!(msgs[2].tool_calls.len(), 1);
    assert!(LONG_REPLY.starts_with(&msgs[4].content) && msgs[4].content.len() < LONG_REPLY.len());
    sim.assert_clean();
}

#[test]
fn tool_round_trip_continues_the_same_generation() {
    let mut sim = Sim::new(CallSettings::default());
    sim.llm_script.push_back(LlmScript::Tool(ToolCall {
        id: "c9".into(),
        name: "weather".into(),
        arguments: "{\"city\":\"Oslo\"}".into(),
    }));
    sim.llm_script
        .push_back(LlmScript::Reply("It is sunny in Oslo.".into()));
    sim.say(0, 800, "weather in oslo");
    sim.run_until(10_000);
    let starts = sim.llm_starts();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0].1, starts[1].1, "same generation");
    assert_eq!(sim.count(|a| matches!(a, Action::RunTool { .. })), 1);
    let msgs = sim.core.history().messages();
    assert_eq!(
        msgs.last().map(|m| m.content.as_str()),
        Some("It is sunny in Oslo.")
    );
    assert_eq!(msgs[msgs.len() - 2].role, Role::Tool);
    sim.assert_clean();
}

#[test]
fn marks_of_a_cleared_generation_are_ignored() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 2000);
    sim.speak(speech, speech + 600);
    sim.at(speech + 200, In::Interim("stop please".into(), 0.9));
    sim.at(speech + 900, In::Final("stop please".into(), 0.9, true));
    sim.run_until(speech + 2000);
    assert_eq!(sim.clears(), 1);
    let old = sim.llm_starts()[0].1;
    // The new reply is playing; late echoes of the old generation's marks change nothing.
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    for seq in 1..40 {
        sim.at(sim.now + 1, In::Mark(format!("g{}-{seq}", old.0)));
    }
    sim.at(sim.now + 2, In::Mark("not-ours".into()));
    sim.run_until(sim.now + 5);
    assert_eq!(sim.core.bot_state(), BotState::Speaking);
    let lines = sim.bot_lines();
    assert_eq!(
        lines.len(),
        1,
        "only the interrupted line so far: {lines:?}"
    );
    sim.run_until(speech + 30_000);
    assert_eq!(sim.bot_lines().len(), 2);
    sim.assert_clean();
}

#[test]
fn transcript_lines_carry_times_and_flags() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    let speech = align(t0 + 2000);
    sim.speak(speech, speech + 600);
    sim.at(speech + 200, In::Interim("stop please".into(), 0.9));
    sim.at(speech + 900, In::Final("stop please".into(), 0.9, true));
    sim.run_until(speech + 30_000);
    let t = sim.transcript();
    let users: Vec<_> = t
        .iter()
        .filter(|e| e.speaker == switchboard_core::dialog::Speaker::User)
        .collect();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0].start.0, 0);
    assert_eq!(users[1].start.0, speech);
    assert_eq!(users[1].end.0, speech + 600);
    let bots = sim.bot_lines();
    assert!(bots[0].interrupted && !bots[1].interrupted);
    assert_eq!(bots[0].start.0, t0);
    assert_eq!(bots[0].end.0, speech + 200);
    sim.assert_clean();
}

#[test]
fn caller_hang_up_mid_reply_records_what_was_heard() {
    let (mut sim, t0) = Sim::answering(CallSettings::default());
    sim.at(t0 + 2000, In::CallerHungUp);
    sim.run_until(t0 + 10_000);
    assert!(sim.core.is_ended());
    let a = sim.assistant_history();
    assert!(
        LONG_REPLY.starts_with(&a[0]) && a[0].len() < LONG_REPLY.len() / 3,
        "{a:?}"
    );
    assert!(sim.bot_lines()[0].interrupted);
    assert_eq!(sim.clears(), 0, "no clear to a line that is gone");
    assert!(
        sim.count(|a| matches!(a, Action::Record(switchboard_core::call::Record::Call(_)))) == 1
    );
    assert!(sim.hangups().is_empty());
    sim.assert_clean();
}
