//! Warm transfer in virtual time: the `transfer_call` tool call stays open while the caller
//! hears the transfer message, then hold audio; the agent's verdict decides. Accepted ends the
//! call with `CompleteWarmTransfer`; declined, busy or the wait timeout make the caller hear the
//! unavailable message and the LLM get a failed tool result, and the conversation goes on; a
//! barge-in or hang-up during the wait cancels the agent's leg.

mod common;
use common::*;
use switchboard_core::call::settings::DEFAULT_TRANSFER_UNAVAILABLE;
use switchboard_core::call::{Action, CallSettings, Event, ToolCall, WarmTransferOutcome};
use switchboard_core::dialog::Role;

const HOLD_MSG: &str = "Please hold while I connect you.";
const AFTER: &str = "Is there anything else I can help you with?";
const AGENT: &str = "+14155550188";

fn settings() -> CallSettings {
    CallSettings {
        welcome_message: None,
        tool_filler_delay_ms: None,
        warm_transfer_timeout_ms: 20_000,
        ..CallSettings::default()
    }
}

/// A call where the caller asks for a human, the LLM calls `transfer_call` and the runtime
/// asks for a warm transfer right after; returns the sim (the hold under way) and the transfer.
fn transferring(unavailable: Option<&str>) -> (Sim, u64) {
    transferring_with(settings(), unavailable)
}

fn transferring_with(settings: CallSettings, unavailable: Option<&str>) -> (Sim, u64) {
    let mut sim = Sim::new(settings);
    sim.llm_script.push_back(LlmScript::Tool(ToolCall {
        id: "t1".into(),
        name: "transfer_call".into(),
        arguments: format!("{{\"to\":\"{AGENT}\"}}"),
    }));
    sim.llm_script.push_back(LlmScript::Reply(AFTER.into()));
    // The tool's own result (it stands only when no transfer starts).
    sim.tool_results
        .push_back((50, "{\"ok\":false,\"error\":\"not started\"}".into()));
    sim.say(0, 800, "put me through to a person please");
    let mut t = 800;
    while sim
        .first_at(|a| matches!(a, Action::RunTool { .. }))
        .is_none()
    {
        t += 10;
        sim.run_until(t);
        assert!(t < 5_000, "no tool call");
    }
    sim.handle_now(Event::WarmTransferRequested {
        tool_call_id: "t1".into(),
        to: AGENT.into(),
        message: Some(HOLD_MSG.into()),
        unavailable_message: unavailable.map(str::to_owned),
    });
    let Some(transfer) = sim.actions().find_map(|(_, a)| match a {
        Action::StartWarmTransfer {
            transfer,
            to,
            messages,
        } => {
            assert_eq!(to, AGENT);
            assert!(messages.iter().any(|m| m.content.contains("a person")));
            Some(*transfer)
        }
        _ => None,
    }) else {
        panic!("no StartWarmTransfer:\n{}", sim.timeline());
    };
    (sim, transfer)
}

fn said(sim: &Sim) -> Vec<String> {
    sim.tts_texts().into_iter().map(|(_, _, t)| t).collect()
}

/// Frames sent in [from, to) that carry sound (not µ-law silence).
fn loud_frames(sim: &Sim, from: u64, to: u64) -> usize {
    sim.actions()
        .filter(|(t, a)| {
            *t >= from
                && *t < to
                && matches!(a, Action::SendMedia(f) if f.iter().any(|b| *b != 0xFF))
        })
        .count()
}

fn tool_results(sim: &Sim) -> Vec<String> {
    sim.core
        .history()
        .messages()
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.clone())
        .collect()
}

#[test]
fn the_caller_hears_the_message_then_hold_audio_while_the_agent_is_dialled() {
    let (mut sim, _) = transferring(None);
    let start = sim.now;
    sim.run_until(start + 10_000);
    assert_eq!(said(&sim), [HOLD_MSG]);
    // The wait is never silent for long: hold frames keep the line alive every second.
    for s in (start + 4_000..start + 10_000).step_by(1_000) {
        assert!(sim.media_between(s, s + 1_000) >= 40, "hold audio at {s}");
    }
    assert!(
        loud_frames(&sim, start + 4_000, start + 10_000) > 0,
        "a soft tone"
    );
    // The tool call is still open: no result, no second LLM round, no idle prompt.
    assert!(tool_results(&sim).is_empty());
    assert_eq!(sim.llm_starts().len(), 1);
    assert!(!sim.core.is_ended());
    sim.assert_clean();
}

#[test]
fn without_the_hold_tone_the_wait_is_silent_and_still_open() {
    let (mut sim, transfer) = transferring_with(
        CallSettings {
            warm_transfer_hold_tone: false,
            ..settings()
        },
        None,
    );
    let start = sim.now;
    sim.run_until(start + 10_000);
    assert_eq!(said(&sim), [HOLD_MSG]);
    // Once the message has played nothing more is sent: no tone, no idle prompt.
    assert_eq!(sim.media_between(start + 5_000, start + 10_000), 0);
    assert!(tool_results(&sim).is_empty());
    assert_eq!(sim.llm_starts().len(), 1);
    sim.handle_now(Event::WarmTransferResult {
        transfer,
        outcome: WarmTransferOutcome::Accepted,
    });
    assert!(sim.core.is_ended());
    sim.assert_clean();
}

#[test]
fn an_accepted_transfer_ends_the_call_with_complete_warm_transfer() {
    let (mut sim, transfer) = transferring(None);
    let start = sim.now;
    sim.run_until(start + 6_000);
    sim.handle_now(Event::WarmTransferResult {
        transfer,
        outcome: WarmTransferOutcome::Accepted,
    });
    assert!(sim.core.is_ended());
    assert_eq!(
        sim.count(|a| matches!(a, Action::CompleteWarmTransfer { transfer: t } if *t == transfer)),
        1
    );
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelWarmTransfer { .. })),
        0
    );
    assert_eq!(sim.count(|a| matches!(a, Action::HangUp { .. })), 0);
    assert_eq!(sim.llm_starts().len(), 1);
    sim.assert_clean();
}

#[test]
fn a_declined_transfer_says_the_unavailable_message_and_the_llm_goes_on() {
    for (outcome, reason) in [
        (WarmTransferOutcome::Declined, "declined"),
        (WarmTransferOutcome::Busy, "busy"),
        (WarmTransferOutcome::NoAnswer, "no_answer"),
        (WarmTransferOutcome::Failed, "failed"),
    ] {
        let (mut sim, transfer) = transferring(Some("Sam is not available, sorry."));
        let start = sim.now;
        sim.run_until(start + 5_000);
        sim.handle_now(Event::WarmTransferResult { transfer, outcome });
        sim.run_until(start + 20_000);
        assert_eq!(
            said(&sim),
            [HOLD_MSG, "Sam is not available, sorry.", AFTER],
            "{outcome:?}"
        );
        let results = tool_results(&sim);
        assert_eq!(results.len(), 1);
        assert!(
            results[0].contains(&format!("\"reason\":\"{reason}\"")),
            "{results:?}"
        );
        assert!(results[0].contains("\"transferred\":false"));
        assert_eq!(sim.llm_starts().len(), 2, "the reply went on");
        // Nothing to cancel: the agent's leg ended by itself.
        assert_eq!(
            sim.count(|a| matches!(a, Action::CancelWarmTransfer { .. })),
            0
        );
        // The hold stopped: nothing but the reply's own audio after it played.
        let last = sim
            .last_at(|a| matches!(a, Action::SendMedia(_)))
            .unwrap_or(0);
        assert!(last < start + 20_000);
        assert!(!sim.core.is_ended());
        // A late verdict on the same transfer changes nothing.
        sim.handle_now(Event::WarmTransferResult {
            transfer,
            outcome: WarmTransferOutcome::Accepted,
        });
        assert!(!sim.core.is_ended());
        sim.assert_clean();
    }
}

#[test]
fn without_an_unavailable_message_the_default_sentence_is_said() {
    let (mut sim, transfer) = transferring(Some("  "));
    sim.handle_now(Event::WarmTransferResult {
        transfer,
        outcome: WarmTransferOutcome::Declined,
    });
    sim.run_until(sim.now + 15_000);
    assert!(said(&sim).iter().any(|t| t == DEFAULT_TRANSFER_UNAVAILABLE));
}

#[test]
fn the_wait_timeout_counts_as_no_answer_and_cancels_the_agent_leg() {
    let (mut sim, transfer) = transferring(None);
    let start = sim.now;
    sim.run_until(start + 40_000);
    let cancel = sim
        .first_at(|a| matches!(a, Action::CancelWarmTransfer { transfer: t } if *t == transfer))
        .expect("cancelled");
    assert!(
        cancel >= start + 20_000 && cancel <= start + 20_020,
        "at the timeout: {cancel} (start {start})"
    );
    let results = tool_results(&sim);
    assert!(
        results[0].contains("\"reason\":\"no_answer\""),
        "{results:?}"
    );
    assert!(said(&sim).iter().any(|t| t == DEFAULT_TRANSFER_UNAVAILABLE));
    assert!(said(&sim).iter().any(|t| t == AFTER));
    sim.assert_clean();
}

#[test]
fn the_caller_speaking_during_the_wait_cancels_the_transfer() {
    let (mut sim, transfer) = transferring(None);
    let start = sim.now;
    sim.run_until(start + 5_000);
    sim.say(
        start + 5_000,
        start + 6_500,
        "actually never mind just tell me your hours",
    );
    sim.run_until(start + 15_000);
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelWarmTransfer { transfer: t } if *t == transfer)),
        1,
        "{}",
        sim.timeline()
    );
    // A verdict that still comes is ignored.
    sim.handle_now(Event::WarmTransferResult {
        transfer,
        outcome: WarmTransferOutcome::Accepted,
    });
    assert!(!sim.core.is_ended());
    assert_eq!(
        sim.count(|a| matches!(a, Action::CompleteWarmTransfer { .. })),
        0
    );
    // The LLM knows the transfer was cut off, and answers the new turn.
    let results = tool_results(&sim);
    assert!(
        results.iter().any(|r| r.contains("cancelled")),
        "{results:?}"
    );
    assert!(sim.llm_starts().len() >= 2);
    sim.assert_clean();
}

#[test]
fn a_caller_hang_up_during_the_wait_cancels_the_transfer() {
    let (mut sim, transfer) = transferring(None);
    sim.run_until(sim.now + 3_000);
    sim.handle_now(Event::CallerHungUp);
    assert_eq!(
        sim.count(|a| matches!(a, Action::CancelWarmTransfer { transfer: t } if *t == transfer)),
        1
    );
}

#[test]
fn a_request_for_a_tool_call_nobody_waits_for_starts_nothing() {
    let mut sim = Sim::new(settings());
    sim.run_until(1_000);
    sim.handle_now(Event::WarmTransferRequested {
        tool_call_id: "nope".into(),
        to: AGENT.into(),
        message: Some(HOLD_MSG.into()),
        unavailable_message: None,
    });
    sim.run_until(5_000);
    assert_eq!(
        sim.count(|a| matches!(a, Action::StartWarmTransfer { .. })),
        0
    );
    assert!(said(&sim).is_empty());
}
