//! Custom tools in a live call, end to end: the server in-process, the provider fakes, the fake
//! HTTP tool server and the fake Twilio caller, which plays the bot's audio on its playback
//! clock. A tool runs off the call task, its result goes back to the LLM (an OpenAI `tool`
//! message, an Anthropic `tool_result` block) and the reply after it is spoken; text streamed
//! before and between tool calls is spoken as it comes; a slow tool gets the spoken filler so
//! the caller never waits in silence longer than the filler delay; failing, malformed and
//! hanging endpoints give the LLM errors to talk about; several tools of one reply run
//! concurrently; the round cap is a spoken apology; the caller's barge-in cancels the tools of
//! the reply and their results are never used.

mod common;

use serde_json::{Value, json};
use switchboard_core::call::settings::{
    DEFAULT_MAX_TOOL_ROUNDS, DEFAULT_TOOL_FILLER, DEFAULT_TOOL_FILLER_DELAY_MS,
    DEFAULT_TOOL_ROUND_CAP_APOLOGY,
};
use switchboard_testkit::anthropic::FakeAnthropic;
use switchboard_testkit::openai::{FakeLlmOptions, FakeLlmTurn, FakeToolCall};
use switchboard_testkit::twilio::EndedBy;

use common::tool_stack::{
    NUMBER, ToolStack, heard_bytes_after, heard_runs, latency, one_question, said_at, script,
    tool_messages,
};

fn tool_call(name: &str, args: Value) -> FakeToolCall {
    FakeToolCall::new(name, &args)
}

/// A custom tool without parameters calling `{tools}/{path}`.
fn plain_tool(name: &str, path: &str, timeout_ms: u64) -> Value {
    json!({"name": name, "description": name,
           "parameters": {"type": "object", "properties": {}},
           "url": format!("{{tools}}/{path}"), "timeout_ms": timeout_ms})
}

/// `custom_tools` of a record patch.
fn custom_tools(tools: Value) -> Value {
    json!({"tools_settings": {"custom_tools": tools}})
}

/// A reply that calls `calls` after saying `text`.
fn calls(text: Option<&str>, calls: Vec<FakeToolCall>) -> FakeLlmTurn {
    FakeLlmTurn::ToolCalls {
        text: text.map(str::to_owned),
        calls,
        interleave: false,
    }
}

/// The echo of a `/fast/…` endpoint names its path: a result that came from `path`.
fn is_echo_of(result: &Value, path: &str) -> bool {
    result["content"]
        .as_str()
        .is_some_and(|c| c.contains("\"ok\":true") && c.contains(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_tool_result_reaches_the_llm_and_the_reply_after_it_is_spoken() {
    let script = one_question(9_000);
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([{
            "name": "opening_hours",
            "description": "Opening hours of a day",
            "parameters": {"type": "object", "required": ["day"],
                           "properties": {"day": {"type": "string"}}},
            "method": "GET",
            "url": "{tools}/fast/hours/{day}",
            "headers": {"X-Api-Key": "tool-secret-123"}
        }])),
        vec![
            calls(
                Some("Let me check that for you."),
                vec![tool_call(
                    "opening_hours",
                    json!({"day": "Monday", "lang": "en"}),
                )],
            ),
            FakeLlmTurn::text("On Monday we open at nine."),
        ],
    )
    .await;
    let report = stack.call(script.clone()).await;

    // The endpoint got the templated URL, the other arguments as the query, and the header.
    let requests = stack.tools.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/fast/hours/Monday");
    assert_eq!(requests[0].query.as_deref(), Some("lang=en"));
    assert_eq!(requests[0].header("x-api-key"), Some("tool-secret-123"));

    // The result went back to the LLM as a `tool` message answering the call.
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 2, "no second LLM round: {rounds:#?}");
    let second = &rounds[1];
    let asked = second
        .iter()
        .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .expect("the assistant's tool call is in the history");
    let id = asked["tool_calls"][0]["id"].as_str().expect("id");
    let results = tool_messages(second);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["tool_call_id"], id);
    assert!(is_echo_of(results[0], "/fast/hours/Monday"), "{results:?}");

    // The caller heard the text before the tool, then the reply after it.
    let all = stack.spoken().join(" | ");
    let before = said_at(&all, "Let me check", "the text before the tool");
    let after = said_at(&all, "open at nine", "the reply after the tool");
    assert!(before < after, "{all}");
    // "Let me check that for you. On Monday we open at nine." at 60 ms a char, 8 bytes a ms.
    let heard = heard_bytes_after(&report, script.utterances[0].end_ms);
    assert!(
        heard > 20_000,
        "too little heard after the turn: {heard} bytes"
    );
    assert_eq!(report.ended_by, Some(EndedBy::Script));
    let call = stack.calls.finished_call(&report.call_sid).await;
    assert!(call.ended_reason.is_some());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_anthropic_the_result_goes_back_as_a_tool_result_block() {
    let script = one_question(9_000);
    let stack = ToolStack::start_without_assistant(&script).await;
    let anthropic = FakeAnthropic::start_with(FakeLlmOptions {
        api_key: Some("sk-ant-tools-0123456789".to_owned()),
        latency: latency(),
    })
    .await
    .expect("anthropic fake");
    anthropic.push(calls(
        Some("One second."),
        vec![tool_call("opening_hours", json!({"day": "Monday"}))],
    ));
    anthropic.push(FakeLlmTurn::text("On Monday we open at nine."));
    let mut record = stack.record(custom_tools(json!([{
        "name": "opening_hours", "description": "Opening hours of a day",
        "parameters": {"type": "object", "properties": {"day": {"type": "string"}}},
        "method": "POST", "url": "{tools}/fast/hours"
    }])));
    switchboard_assistant::merge_json(
        &mut record,
        &json!({"llm_provider": "anthropic", "llm_provider_config": {
            "api_key": "sk-ant-tools-0123456789", "base_url": anthropic.base_url(),
            "model": "claude-3-5-haiku-latest"}}),
    );
    stack.calls.assistant(&record, NUMBER).await;
    let report = stack.call(script.clone()).await;

    // The POST carried the arguments as JSON.
    let requests = stack.tools.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body: Value = serde_json::from_str(&requests[0].body).expect("json body");
    assert_eq!(body, json!({"day": "Monday"}));

    // The second request answers the `tool_use` block with a `tool_result` block.
    let bodies: Vec<Value> = anthropic.requests().into_iter().map(|r| r.body).collect();
    assert!(bodies.len() >= 2, "no second LLM round: {bodies:#?}");
    let messages = bodies[1]["messages"].as_array().expect("messages");
    let blocks = |role: &str| -> Vec<Value> {
        messages
            .iter()
            .filter(|m| m["role"] == role)
            .filter_map(|m| m["content"].as_array().cloned())
            .flatten()
            .collect()
    };
    let uses: Vec<Value> = blocks("assistant")
        .into_iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{messages:#?}");
    assert_eq!(uses[0]["name"], "opening_hours");
    assert_eq!(uses[0]["input"], json!({"day": "Monday"}));
    let results: Vec<Value> = blocks("user")
        .into_iter()
        .filter(|b| b["type"] == "tool_result")
        .collect();
    assert_eq!(results.len(), 1, "{messages:#?}");
    assert_eq!(results[0]["tool_use_id"], uses[0]["id"]);
    assert!(is_echo_of(&results[0], "/fast/hours"), "{results:?}");
    // No OpenAI request was made: the record's LLM is Anthropic.
    assert!(stack.fakes.openai.requests().is_empty());

    let all = stack.spoken().join(" | ");
    let before = said_at(&all, "One second", "the text before the tool");
    let after = said_at(&all, "open at nine", "the reply after the tool");
    assert!(before < after, "{all}");
    assert!(heard_bytes_after(&report, script.utterances[0].end_ms) > 15_000);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_before_and_between_tool_rounds_is_spoken_in_order() {
    let script = one_question(12_000);
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([
            plain_tool("opening_hours", "fast/hours", 2_000),
            plain_tool("free_slots", "fast/slots", 2_000)
        ])),
        vec![
            calls(
                Some("Let me check the hours."),
                vec![tool_call("opening_hours", json!({}))],
            ),
            calls(
                Some("Now the calendar."),
                vec![tool_call("free_slots", json!({}))],
            ),
            FakeLlmTurn::text("Monday at nine works."),
        ],
    )
    .await;
    let report = stack.call(script.clone()).await;
    let paths: Vec<String> = stack.tools.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/fast/hours", "/fast/slots"]);
    // The third round saw both results, in order.
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 3, "{rounds:#?}");
    let results = tool_messages(&rounds[2]);
    assert_eq!(results.len(), 2, "{:#?}", rounds[2]);
    assert!(is_echo_of(results[0], "/fast/hours"));
    assert!(is_echo_of(results[1], "/fast/slots"));
    let all = stack.spoken().join(" | ");
    let first = said_at(&all, "check the hours", "the text of round 1");
    let second = said_at(&all, "Now the calendar", "the text of round 2");
    let last = said_at(&all, "nine works", "the final reply");
    assert!(first < second && second < last, "{all}");
    // All of it was heard: nothing cleared, about 60 chars at 60 ms a char.
    assert!(report.clears_ms.is_empty(), "{:?}", report.clears_ms);
    assert!(heard_bytes_after(&report, script.utterances[0].end_ms) > 25_000);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tool_gets_the_filler_so_the_caller_never_waits_in_silence() {
    let script = one_question(12_000);
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([plain_tool(
            "check_calendar",
            "slow/calendar",
            8_000
        )])),
        vec![
            calls(
                Some("Let me look."),
                vec![tool_call("check_calendar", json!({}))],
            ),
            FakeLlmTurn::text("We have a slot at ten."),
        ],
    )
    .await;
    stack.tools.set_slow_ms(3_500);
    let report = stack.call(script.clone()).await;
    assert_eq!(stack.tools.requests().len(), 1);
    let all = stack.spoken().join(" | ");
    let look = said_at(&all, "Let me look", "the text before the tool");
    let filler = said_at(&all, DEFAULT_TOOL_FILLER, "the filler");
    let reply = said_at(&all, "slot at ten", "the reply");
    assert!(look < filler && filler < reply, "{all}");
    // The filler is what the caller heard, not something the LLM said.
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 2);
    assert!(
        !rounds[1].iter().any(|m| m["content"]
            .as_str()
            .is_some_and(|c| c.contains(DEFAULT_TOOL_FILLER))),
        "{:#?}",
        rounds[1]
    );

    // From the playback timeline: from the first audio of the reply to the end of the reply
    // after the tool, no silence is longer than the filler delay (the tool alone took 3.5 s).
    let end_of_turn = script.utterances[0].end_ms as f64;
    let runs: Vec<(f64, f64)> = heard_runs(&report)
        .into_iter()
        .filter(|(start, _)| *start > end_of_turn)
        .collect();
    assert!(runs.len() >= 2, "{runs:?}");
    let longest = runs
        .windows(2)
        .map(|w| w[1].0 - w[0].1)
        .fold(0.0_f64, f64::max);
    assert!(
        longest < f64::from(DEFAULT_TOOL_FILLER_DELAY_MS),
        "{longest} ms of silence while the tool ran: {runs:?}"
    );
    assert!(report.clears_ms.is_empty(), "{:?}", report.clears_ms);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_malformed_and_hanging_endpoints_give_the_llm_errors_to_talk_about() {
    let script = one_question(9_000);
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([
            plain_tool("failing", "fail/x", 800),
            plain_tool("malformed", "malformed/x", 800),
            plain_tool("hanging", "hang/x", 800),
            {"name": "strict", "description": "strict",
             "parameters": {"type": "object", "required": ["day"], "properties": {"day": {"type": "string"}}},
             "url": "{tools}/fast/strict"}
        ])),
        vec![
            FakeLlmTurn::ToolCalls {
                text: None,
                calls: vec![
                    tool_call("failing", json!({})),
                    tool_call("malformed", json!({})),
                    tool_call("hanging", json!({})),
                    tool_call("strict", json!({"day": 3})),
                ],
                interleave: true,
            },
            FakeLlmTurn::text("Sorry, our booking system is not answering right now."),
        ],
    )
    .await;
    let report = stack.call(script.clone()).await;
    // The three endpoints were called; the bad arguments never left.
    let paths: Vec<String> = stack.tools.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("strict")));
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 2, "no second round: {rounds:#?}");
    let results: Vec<Value> = tool_messages(&rounds[1])
        .iter()
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap_or("")).expect("json result"))
        .collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results.iter().all(|r| r["ok"] == false), "{results:?}");
    let error = |i: usize| results[i]["error"].as_str().unwrap_or("").to_owned();
    assert!(error(0).contains("500"), "{results:?}");
    assert!(error(1).contains("malformed"), "{results:?}");
    assert!(error(2).contains("800 ms"), "{results:?}");
    assert!(error(3).contains("day"), "{results:?}");
    // Never a stuck call: the LLM's words about it were heard, then the caller hung up.
    let all = stack.spoken().join(" | ");
    said_at(
        &all,
        "not answering right now",
        "the reply about the errors",
    );
    assert!(heard_bytes_after(&report, script.utterances[0].end_ms) > 15_000);
    assert_eq!(report.ended_by, Some(EndedBy::Script));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tool_calls_of_one_reply_run_concurrently() {
    let script = one_question(9_000);
    // `/barrier/…` answers only once both requests are in: run one after the other, the
    // first would time out.
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([
            plain_tool("opening_hours", "barrier/hours", 4_000),
            plain_tool("free_slots", "barrier/slots", 4_000)
        ])),
        vec![
            calls(
                None,
                vec![
                    tool_call("opening_hours", json!({})),
                    tool_call("free_slots", json!({})),
                ],
            ),
            FakeLlmTurn::text("We open at nine and have a slot at ten."),
        ],
    )
    .await;
    stack.tools.set_barrier(2);
    let report = stack.call(script.clone()).await;
    assert_eq!(stack.tools.requests().len(), 2);
    let rounds = stack.llm_messages();
    assert!(rounds.len() >= 2, "{rounds:#?}");
    let results = tool_messages(&rounds[1]);
    assert_eq!(results.len(), 2, "{:#?}", rounds[1]);
    assert!(is_echo_of(results[0], "/barrier/hours"), "{results:?}");
    assert!(is_echo_of(results[1], "/barrier/slots"), "{results:?}");
    let all = stack.spoken().join(" | ");
    said_at(&all, "slot at ten", "the reply after both tools");
    assert!(heard_bytes_after(&report, script.utterances[0].end_ms) > 15_000);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_round_cap_is_a_spoken_apology_and_the_call_goes_on() {
    let script = script(
        &[
            ("What are your opening hours on Monday?", 1_500, 3_000),
            ("Okay, and on Tuesday?", 11_000, 12_500),
        ],
        16_000,
    );
    let mut turns: Vec<FakeLlmTurn> = (0..=DEFAULT_MAX_TOOL_ROUNDS)
        .map(|_| calls(None, vec![tool_call("opening_hours", json!({}))]))
        .collect();
    turns.push(FakeLlmTurn::text("On Tuesday we open at eight."));
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([plain_tool("opening_hours", "fast/hours", 2_000)])),
        turns,
    )
    .await;
    let report = stack.call(script.clone()).await;
    // The allowed rounds ran; the one past the cap did not.
    assert_eq!(
        stack.tools.requests().len(),
        DEFAULT_MAX_TOOL_ROUNDS as usize
    );
    let all = stack.spoken().join(" | ");
    let apology = said_at(&all, DEFAULT_TOOL_ROUND_CAP_APOLOGY, "the apology");
    let next = said_at(&all, "open at eight", "the answer to the next turn");
    assert!(apology < next, "{all}");
    let first_end = script.utterances[0].end_ms;
    let second_start = script.utterances[1].start_ms;
    let apology_heard: usize = report
        .chunks
        .iter()
        .filter(|c| {
            c.received_ms > first_end as f64
                && c.received_ms < second_start as f64
                && c.cleared_at_ms.is_none()
        })
        .map(|c| c.bytes)
        .sum();
    assert!(apology_heard > 20_000, "the apology was not heard");
    assert!(heard_bytes_after(&report, script.utterances[1].end_ms) > 10_000);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_during_a_tool_cancels_it_and_the_new_turn_is_answered() {
    let script = script(
        &[
            ("Can I book a cleaning on Monday?", 1_500, 3_000),
            ("Actually, what is your address?", 5_000, 6_500),
        ],
        14_000,
    );
    let stack = ToolStack::start(
        &script,
        custom_tools(json!([plain_tool("book", "slow/book", 8_000)])),
        vec![
            calls(None, vec![tool_call("book", json!({}))]),
            FakeLlmTurn::text("We are at one Harbor Street."),
            FakeLlmTurn::text("Anything else?"),
        ],
    )
    .await;
    stack.tools.set_slow_ms(6_000);
    let report = stack.call(script.clone()).await;
    assert_eq!(stack.tools.requests().len(), 1, "the tool was called");
    let rounds = stack.llm_messages();
    // The new turn was answered; its history gives the stopped call a "cancelled" result.
    assert_eq!(rounds.len(), 2, "{rounds:#?}");
    let results = tool_messages(&rounds[1]);
    assert_eq!(results.len(), 1, "{:#?}", rounds[1]);
    assert!(
        results[0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("cancelled")),
        "{results:?}"
    );
    assert!(
        rounds[1]
            .last()
            .is_some_and(|m| m["role"] == "user" && m["content"].to_string().contains("address")),
        "{:#?}",
        rounds[1]
    );
    // The tool's own result never reached the LLM.
    assert!(
        !rounds
            .iter()
            .flatten()
            .any(|m| m["content"].to_string().contains("/slow/book")),
        "{rounds:#?}"
    );
    let all = stack.spoken().join(" | ");
    said_at(&all, "one Harbor Street", "the answer to the new turn");
    assert!(heard_bytes_after(&report, script.utterances[1].end_ms) > 10_000);
    assert_eq!(report.ended_by, Some(EndedBy::Script));
    stack.stop().await;
}
