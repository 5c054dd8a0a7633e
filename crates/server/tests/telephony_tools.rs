//! Telephony tools at the call level, through the fake caller, the provider fakes and the fake
//! Twilio REST API: `dtmf_solver` tones decoded from what the caller heard (invalid digits send
//! none), and the caller's own key presses reaching the LLM as text.

mod common;
mod twilio_harness;

use std::sync::Arc;

use serde_json::{Value, json};
use switchboard_core::audio::dtmf::DtmfDetector;
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::twilio::{CallOutcome, DtmfPress, FakeCall};
use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options, short_script};

/// Every DTMF digit in `ulaw`, in order.
fn decode(ulaw: &[u8]) -> String {
    let mut det = DtmfDetector::new();
    let mut got = String::new();
    det.push_mulaw_each(ulaw, |d| got.push(d));
    got
}

/// The texts of every message of every LLM request with `role`.
fn llm_messages(h: &Harness, role: &str) -> Vec<String> {
    h.providers
        .openai
        .requests()
        .iter()
        .flat_map(|r| r.body["messages"].as_array().cloned().unwrap_or_default())
        .filter(|m| m["role"] == role)
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn dtmf_solver_sends_tones_the_caller_hears() {
    let h = Harness::start(Options::default()).await;
    let record = h.record(
        "ivr walker",
        json!({"tools_settings": {"dtmf_solver": {"enabled": true, "scenarios": ["a phone menu asks for a key"]}}}),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    h.providers.openai.push(FakeLlmTurn::ToolCalls {
        text: None,
        calls: vec![FakeToolCall::new("dtmf_solver", &json!({"digits": "1*9#"}))],
        interleave: false,
    });
    h.providers
        .openai
        .push(FakeLlmTurn::text("I pressed one for sales."));

    let report = FakeCall::new(h.fake_call(CALLER, OUR_NUMBER), short_script(12_000))
        .run()
        .await;
    assert_eq!(report.outcome, CallOutcome::Completed, "{report:?}");
    assert_eq!(decode(&report.heard_audio()), "1*9#");

    // The tool was offered with its scenario, its result went back to the LLM, and the reply
    // after it was asked for.
    let requests = h.providers.openai.requests();
    let offered = requests[0].body["tools"].to_string();
    assert!(
        offered.contains("dtmf_solver") && offered.contains("a phone menu asks for a key"),
        "{offered}"
    );
    let results = llm_messages(&h, "tool");
    assert!(
        results
            .iter()
            .any(|t| t.contains("\"ok\":true") && t.contains("1*9#")),
        "{results:?}"
    );
}

#[tokio::test]
async fn invalid_digits_are_an_error_result_and_send_no_tone() {
    let h = Harness::start(Options::default()).await;
    let record = h.record(
        "ivr walker",
        json!({"tools_settings": {"dtmf_solver": {"enabled": true}}}),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    h.providers.openai.push(FakeLlmTurn::ToolCalls {
        text: None,
        calls: vec![FakeToolCall::new("dtmf_solver", &json!({"digits": "12x"}))],
        interleave: false,
    });
    h.providers
        .openai
        .push(FakeLlmTurn::text("Sorry, that key does not exist."));
    let report = FakeCall::new(h.fake_call(CALLER, OUR_NUMBER), short_script(10_000))
        .run()
        .await;
    assert_eq!(report.outcome, CallOutcome::Completed, "{report:?}");
    assert_eq!(decode(&report.heard_audio()), "");
    let results = llm_messages(&h, "tool");
    assert!(
        results
            .iter()
            .any(|t| t.contains("\"ok\":false") && t.contains("not a DTMF digit")),
        "{results:?}"
    );
}

#[tokio::test]
async fn caller_key_presses_reach_the_llm_as_text() {
    let h = Harness::start(Options::default()).await;
    h.assistant(&h.ts.key_a, h.record("keys", json!({})), Some(OUR_NUMBER))
        .await;
    let mut script = (*short_script(10_000)).clone();
    script.dtmf = vec![
        DtmfPress {
            at_ms: 5_000,
            digit: '4',
        },
        DtmfPress {
            at_ms: 5_200,
            digit: '#',
        },
    ];
    let report = FakeCall::new(h.fake_call(CALLER, OUR_NUMBER), Arc::new(script))
        .run()
        .await;
    assert_eq!(report.outcome, CallOutcome::Completed, "{report:?}");
    assert_eq!(report.dtmf_sent.len(), 2);
    let users = llm_messages(&h, "user");
    assert!(
        users.iter().any(|u| u.contains("[DTMF 4]")),
        "the LLM saw the key press: {users:?}"
    );
}
