//! The built-in tools of `tools_settings` in a live call, end to end through the fake caller
//! (which plays the bot's audio on its playback clock and echoes marks), the scripted LLM, the
//! TTS fake and the fake Twilio REST API: `end_call` plays its goodbye to the end and only then
//! hangs up, with an `ended_reason` saying the assistant ended the call; a cold `transfer_call`
//! plays its message to the end, then redirects the call to a `<Dial>` of the number;
//! `send_sms` reaches Twilio's Messages API from the right sender with the right text, to the
//! caller or a number the caller gave (never one only the LLM chose), and the reply after it
//! is spoken.

mod common;

use serde_json::{Value, json};
use switchboard_store::{CallStatus, EndedReason};
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::twilio::{CallReport, EndedBy, parse_twiml};

use common::call_stack::CALLER;
use common::tool_stack::{
    NUMBER, ToolStack, heard_bytes_after, one_question, said_at, script, tool_messages,
};

/// A reply that calls the tool `name` with `args` (after saying `text`).
fn calls(text: Option<&str>, name: &str, args: Value) -> FakeLlmTurn {
    FakeLlmTurn::ToolCalls {
        text: text.map(str::to_owned),
        calls: vec![FakeToolCall::new(name, &args)],
        interleave: false,
    }
}

/// The call ended on the engine's REST request (`how`; or the engine closed the socket right
/// after making it, whichever the caller saw first) after every byte the engine sent had
/// played: no chunk cut short, the last mark echoed by playback before the stream ended. Had
/// the request come earlier, the caller's playback would have been cut where it came.
fn assert_played_to_the_end_before(report: &CallReport, how: EndedBy) {
    assert!(
        report.ended_by == Some(how) || report.ended_by == Some(EndedBy::Engine),
        "ended by {:?}",
        report.ended_by
    );
    let cut: Vec<_> = report
        .chunks
        .iter()
        .filter(|c| c.cleared_at_ms.is_some())
        .collect();
    assert!(cut.is_empty(), "audio cut short: {cut:?}");
    assert_eq!(report.bot_bytes_played, report.bot_bytes_received);
    let last = report.marks.last().expect("marks");
    let echoed = last.echoed_ms.expect("the last mark was echoed");
    assert!(!last.on_clear, "{last:?}");
    assert!(echoed <= report.duration_ms, "{last:?} after the end");
    assert!(report.clears_ms.is_empty(), "{:?}", report.clears_ms);
}

/// `end_call` with the tool's `custom_message` and the record's `end_call_message`: `expected`
/// is said, played to the end, then the call is hung up through Twilio.
async fn end_call_says(custom: Option<&str>, end_call_message: &str, expected: &str) {
    let script = one_question(20_000);
    let stack = ToolStack::start(
        &script,
        json!({"end_call_message": end_call_message,
               "tools_settings": {"end_call": {"enabled": true, "custom_message": custom,
                                               "scenarios": ["the caller is done"]}}}),
        vec![calls(
            Some("You're welcome."),
            "end_call",
            json!({"reason": "done"}),
        )],
    )
    .await;
    let report = stack.call(script.clone()).await;
    let all = stack.spoken().join(" | ");
    let thanks = said_at(&all, "You're welcome", "the text before the tool");
    let goodbye = said_at(&all, expected, "the goodbye");
    assert!(thanks < goodbye, "{all}");
    // The goodbye was heard whole: about 60 ms a char, 8 bytes a ms.
    let goodbye_bytes = expected.len() * 60 * 8;
    let heard = heard_bytes_after(&report, script.utterances[0].end_ms);
    assert!(heard > goodbye_bytes, "{heard} bytes heard");
    assert_played_to_the_end_before(&report, EndedBy::RestHangUp);
    let updates = stack.calls.rest.call_updates();
    let hang_up: Vec<_> = updates
        .iter()
        .filter(|u| u.call_sid == report.call_sid)
        .collect();
    assert_eq!(hang_up.len(), 1, "{updates:?}");
    assert_eq!(hang_up[0].status.as_deref(), Some("completed"));
    // No LLM round after a tool that ended the call.
    assert_eq!(stack.llm_messages().len(), 1);
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert_eq!(call.ended_reason, Some(EndedReason::AssistantHangup));
    assert_eq!(call.status, CallStatus::Completed);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_plays_its_custom_message_to_the_end_then_hangs_up() {
    end_call_says(
        Some("Thanks for calling Harbor Dental, goodbye."),
        "Bye now.",
        "Thanks for calling Harbor Dental, goodbye.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_call_without_a_custom_message_says_the_end_call_message() {
    end_call_says(
        None,
        "Have a lovely day, goodbye.",
        "Have a lovely day, goodbye.",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_transfer_plays_its_message_then_dials_the_number() {
    const AGENT: &str = "+15550100777";
    const MESSAGE: &str = "Please hold, I am connecting you to our front desk.";
    let script = one_question(20_000);
    let stack = ToolStack::start(
        &script,
        json!({"tools_settings": {"transfer_call": {
            "enabled": true, "transfer_numbers": [AGENT], "custom_message": MESSAGE,
            "scenarios": ["the caller asks for a human"]}}}),
        vec![calls(
            None,
            "transfer_call",
            json!({"reason": "wants a human"}),
        )],
    )
    .await;
    let report = stack.call(script.clone()).await;
    // The tool was offered with its scenario.
    let offered = stack.fakes.openai.requests()[0].body["tools"].to_string();
    assert!(
        offered.contains("transfer_call") && offered.contains("asks for a human"),
        "{offered}"
    );
    said_at(&stack.spoken().join(" | "), MESSAGE, "the transfer message");
    let heard = heard_bytes_after(&report, script.utterances[0].end_ms);
    assert!(heard > MESSAGE.len() * 60 * 8, "{heard} bytes heard");
    assert_played_to_the_end_before(&report, EndedBy::RestRedirect);
    let updates: Vec<_> = stack
        .calls
        .rest
        .call_updates()
        .into_iter()
        .filter(|u| u.call_sid == report.call_sid)
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let twiml = parse_twiml(updates[0].twiml.as_deref().expect("a TwiML redirect")).expect("twiml");
    let dial = twiml.dial.expect("a <Dial>");
    assert_eq!(dial.number, AGENT);
    assert_eq!(dial.caller_id.as_deref(), Some(NUMBER));
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert_eq!(call.ended_reason, Some(EndedReason::Transferred));
    stack.stop().await;
}

/// `send_sms` with `sms` merged into the tool's settings (and `extra` into the record), the
/// caller asking `question`, the LLM calling the tool with `args`: the tool's result as the
/// LLM got it back, and the stack to look further. Whatever the result, the reply after it is
/// heard.
async fn sms_call_with(
    question: &str,
    sms: Value,
    extra: Value,
    args: Value,
) -> (ToolStack, CallReport, String) {
    let script = script(&[(question, 1_500, 3_500)], 12_000);
    let mut patch = json!({"tools_settings": {"send_sms": {"enabled": true}}});
    switchboard_assistant::merge_json(&mut patch, &json!({"tools_settings": {"send_sms": sms}}));
    switchboard_assistant::merge_json(&mut patch, &extra);
    let stack = ToolStack::start(
        &script,
        patch,
        vec![
            calls(Some("Sure."), "send_sms", args),
            FakeLlmTurn::text("Let me know if there is anything else."),
        ],
    )
    .await;
    let report = stack.call(script.clone()).await;
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 2, "{rounds:#?}");
    let results = tool_messages(&rounds[1]);
    assert_eq!(results.len(), 1);
    let result = results[0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let all = stack.spoken().join(" | ");
    said_at(&all, "anything else", "the reply after the SMS tool");
    assert!(heard_bytes_after(&report, script.utterances[0].end_ms) > 15_000);
    assert_eq!(report.ended_by, Some(EndedBy::Script));
    (stack, report, result)
}

/// [`sms_call_with`] on a plain question, the tool succeeding.
async fn sms_call(sms: Value, extra: Value, args: Value) -> (ToolStack, CallReport) {
    let (stack, report, result) =
        sms_call_with("What is your address, please?", sms, extra, args).await;
    assert!(
        result.contains("\"ok\":true") && result.contains("SM"),
        "{result}"
    );
    (stack, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sms_texts_a_number_the_caller_gave() {
    let (stack, _, result) = sms_call_with(
        "Can you text the address to my mobile, 415 555 0199?",
        json!({}),
        json!({}),
        json!({"message": "Harbor Dental, 1 Harbor Street.", "to": "+14155550199"}),
    )
    .await;
    assert!(result.contains("\"ok\":true"), "{result}");
    let sent = stack.calls.rest.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, "+14155550199");
    assert_eq!(sent[0].from.as_deref(), Some(NUMBER));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sms_refuses_a_number_nobody_gave_and_the_call_goes_on() {
    let (stack, _, result) = sms_call_with(
        "What is your address, please?",
        json!({}),
        json!({}),
        json!({"message": "Harbor Dental, 1 Harbor Street.", "to": "+19005550199"}),
    )
    .await;
    assert!(result.contains("\"ok\":false"), "{result}");
    assert!(result.contains("ask the caller for the number"), "{result}");
    assert!(stack.calls.rest.messages().is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sms_texts_the_llm_message_to_the_caller_from_the_number() {
    let (stack, _) = sms_call(
        json!({}),
        json!({}),
        json!({"message": "Harbor Dental, 1 Harbor Street."}),
    )
    .await;
    let sent = stack.calls.rest.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, CALLER);
    assert_eq!(sent[0].from.as_deref(), Some(NUMBER));
    assert_eq!(sent[0].messaging_service_sid, None);
    assert_eq!(sent[0].body, "Harbor Dental, 1 Harbor Street.");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_sms_sends_the_default_message_through_the_messaging_service() {
    const SERVICE: &str = "MG0123456789abcdef0123456789abcdef";
    const DEFAULT: &str = "Harbor Dental: 1 Harbor Street, open 9-5.";
    let (stack, _) = sms_call(
        json!({"default_message": DEFAULT}),
        json!({"messaging_service_sid": SERVICE}),
        json!({}),
    )
    .await;
    // With a default message the LLM need not write one.
    let offered = &stack.fakes.openai.requests()[0].body["tools"];
    let sms = offered
        .as_array()
        .and_then(|t| t.iter().find(|t| t["function"]["name"] == "send_sms"))
        .expect("send_sms offered");
    assert!(
        !sms["function"]["parameters"]["required"]
            .to_string()
            .contains("message"),
        "{sms}"
    );
    let sent = stack.calls.rest.messages();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, CALLER);
    assert_eq!(sent[0].from, None);
    assert_eq!(sent[0].messaging_service_sid.as_deref(), Some(SERVICE));
    assert_eq!(sent[0].body, DEFAULT);
    stack.stop().await;
}
