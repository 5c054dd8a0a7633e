//! Tools in a live call, end to end: the server in-process, the provider fakes, the fake HTTP
//! tool server and the fake Twilio caller. A tool runs off the call task, its result goes back
//! to the LLM as a `tool` message and the reply after it is spoken; a slow tool gets the
//! spoken filler; failing, malformed and hanging endpoints give the LLM an error to talk about;
//! several tools in one reply run concurrently.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_store::CallRow;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::tool_server::ToolServer;
use switchboard_testkit::twilio::{
    CallReport, CallScript, FakeCall, FakeCallConfig, FakeTwilioRest, Utterance, UtteranceKind,
};

const KEY: &str = "sb_tool_calls_test_key_0123456789";
const TWILIO_SID: &str = "AC00000000000000000000000000000t11";
const TWILIO_TOKEN: &str = "twilio-tool-calls-test-token";
const NUMBER: &str = "+15550100002";
const WELCOME: &str = "Hello, Harbor Dental.";
const FILLER: &str = switchboard_core::call::settings::DEFAULT_TOOL_FILLER;

struct Stack {
    server: Server,
    fakes: ProviderFakes,
    tools: ToolServer,
    _twilio: FakeTwilioRest,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

fn latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 40,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 30,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

/// One caller turn ("what are your opening hours"), then the caller hangs up at `hangup_ms`.
fn script(hangup_ms: u64) -> CallScript {
    CallScript::synthetic(
        "tools",
        vec![Utterance {
            text: "What are your opening hours on Monday?".to_owned(),
            start_ms: 1_500,
            end_ms: 3_000,
            kind: UtteranceKind::Turn,
        }],
        hangup_ms,
    )
}

/// Server + fakes + an assistant with `custom_tools` (URLs relative to the tool server as
/// `{tools}`), whose LLM answers `turns` in order.
async fn start(script: &CallScript, custom_tools: Value, turns: Vec<FakeLlmTurn>) -> Stack {
    let fakes = ProviderFakes::start_for_calls(latency(), &[script])
        .await
        .expect("fakes start");
    let tools = ToolServer::start().await.expect("tool server");
    let twilio = FakeTwilioRest::start(TWILIO_SID, TWILIO_TOKEN)
        .await
        .expect("fake twilio rest");
    twilio
        .add_number(TWILIO_SID, NUMBER)
        .expect("account known");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.database.url = format!("sqlite://{}", dir.path().join("sb.db").display());
    settings.secrets.key_file = dir.path().join("secret.key").display().to_string();
    settings.server.rate_limit_per_s = 0;
    settings.twilio.account_sid = Some(TWILIO_SID.to_owned());
    settings.twilio.auth_token = Some(TWILIO_TOKEN.to_owned());
    settings.twilio.api_base = twilio.base_url();
    settings.providers.keys_from_env = false;
    settings.recordings.base_dir = dir.path().display().to_string();
    settings.outbound.allow_hosts = "127.0.0.1,::1".parse().expect("allowlist");
    let server = serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(KEY.to_owned()),
        },
    )
    .await
    .expect("server starts");
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();
    for t in turns {
        fakes.openai.push(t);
    }
    let custom = custom_tools
        .to_string()
        .replace("{tools}", &tools.base_url());
    let mut record = fakes.assistant_record("Harbor Dental", &script.name, WELCOME);
    switchboard_assistant::merge_json(
        &mut record,
        &json!({"tools_settings": {"custom_tools": serde_json::from_str::<Value>(&custom).expect("json")}}),
    );
    let res = http
        .post(format!("{base}/api/v1/assistants"))
        .bearer_auth(KEY)
        .json(&record)
        .send()
        .await
        .expect("create");
    let status = res.status();
    let created: Value = res.json().await.expect("json");
    assert_eq!(status, 201, "create: {created}");
    let id = created["id"].as_i64().expect("assistant id");
    let res = http
        .post(format!(
            "{base}/api/v1/assistants/{id}/phone-numbers/assign-by-number"
        ))
        .bearer_auth(KEY)
        .json(&json!({"phone_number": NUMBER}))
        .send()
        .await
        .expect("assign");
    assert!(res.status().is_success(), "assign: {}", res.status());
    Stack {
        server,
        fakes,
        tools,
        _twilio: twilio,
        http,
        base,
        _dir: dir,
    }
}

async fn call(stack: &Stack, script: CallScript) -> CallReport {
    let mut cfg = FakeCallConfig::new(
        &format!("{}/twilio/voice", stack.base),
        TWILIO_TOKEN,
        stack.http.clone(),
    );
    cfg.to = NUMBER.to_owned();
    cfg.record_timeline = true;
    cfg.max_duration = Duration::from_secs(60);
    FakeCall::new(cfg, Arc::new(script)).run().await
}

async fn finished_call(stack: &Stack, call_sid: &str) -> CallRow {
    let store = &stack.server.state().store;
    for _ in 0..200 {
        if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await
            && call.ended_reason.is_some()
        {
            return call;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call {call_sid} was never finalised");
}

/// Everything the TTS was asked to say, per context, in order.
fn spoken(stack: &Stack) -> Vec<String> {
    stack
        .fakes
        .elevenlabs
        .received()
        .iter()
        .flat_map(|c| c.contexts.iter().map(|x| x.texts.concat()))
        .collect()
}

/// The `messages` of every chat request the LLM fake received.
fn llm_messages(stack: &Stack) -> Vec<Vec<Value>> {
    stack
        .fakes
        .openai
        .requests()
        .iter()
        .filter_map(|r| r.body.get("messages")?.as_array().cloned())
        .collect()
}

fn tool_messages(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["role"] == "tool").collect()
}

fn tool_call(name: &str, args: Value) -> FakeToolCall {
    FakeToolCall::new(name, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_tool_result_reaches_the_llm_and_the_reply_after_it_is_spoken() {
    let script = script(9_000);
    let stack = start(
        &script,
        json!([{
            "name": "opening_hours",
            "description": "Opening hours of a day",
            "parameters": {"type": "object", "required": ["day"],
                           "properties": {"day": {"type": "string"}}},
            "method": "GET",
            "url": "{tools}/fast/hours/{day}",
            "headers": {"X-Api-Key": "tool-secret-123"}
        }]),
        vec![
            FakeLlmTurn::ToolCalls {
                text: Some("Let me check that for you.".to_owned()),
                calls: vec![tool_call(
                    "opening_hours",
                    json!({"day": "Monday", "lang": "en"}),
                )],
                interleave: false,
            },
            FakeLlmTurn::text("On Monday we open at nine."),
        ],
    )
    .await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );

    // The endpoint got the templated URL, the other arguments as the query, and the header.
    let requests = stack.tools.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/fast/hours/Monday");
    assert_eq!(requests[0].query.as_deref(), Some("lang=en"));
    assert_eq!(requests[0].header("x-api-key"), Some("tool-secret-123"));

    // The result went back to the LLM as a `tool` message answering the call.
    let rounds = llm_messages(&stack);
    assert!(rounds.len() >= 2, "no second LLM round: {rounds:#?}");
    let second = &rounds[1];
    let calls = second
        .iter()
        .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .expect("the assistant's tool call is in the history");
    let id = calls["tool_calls"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let results = tool_messages(second);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["tool_call_id"], id.as_str());
    assert!(
        results[0]["content"]
            .as_str()
            .is_some_and(|c| c.contains("/fast/hours/Monday")),
        "{results:?}"
    );

    // The caller heard the text before the tool and the reply after it.
    let said = spoken(&stack);
    let all = said.join(" | ");
    let before = all
        .find("Let me check")
        .expect("text before the tool spoken");
    let after = all
        .find("open at nine")
        .expect("the reply after the tool spoken");
    assert!(before < after, "{all}");
    let end_of_turn = f64::from(script.utterances[0].end_ms as u32);
    let heard_after: usize = report
        .chunks
        .iter()
        .filter(|c| c.received_ms > end_of_turn && c.cleared_at_ms.is_none())
        .map(|c| c.bytes)
        .sum();
    // "Let me check that for you. On Monday we open at nine." at the fake's pace.
    assert!(
        heard_after > 8_000,
        "too little heard after the turn: {heard_after} bytes"
    );

    let call = finished_call(&stack, &report.call_sid).await;
    assert!(call.ended_reason.is_some());
    stack.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tool_gets_the_spoken_filler_then_the_reply() {
    let script = script(12_000);
    let stack = start(
        &script,
        json!([{
            "name": "check_calendar",
            "description": "Free slots",
            "parameters": {"type": "object", "properties": {}},
            "url": "{tools}/slow/calendar"
        }]),
        vec![
            FakeLlmTurn::ToolCalls {
                text: None,
                calls: vec![tool_call("check_calendar", json!({}))],
                interleave: false,
            },
            FakeLlmTurn::text("We have a slot at ten."),
        ],
    )
    .await;
    stack.tools.set_slow_ms(3_000);
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    assert_eq!(stack.tools.requests().len(), 1);
    let all = spoken(&stack).join(" | ");
    let filler = all.find(FILLER).expect("the filler was spoken");
    let reply = all.find("slot at ten").expect("the reply was spoken");
    assert!(filler < reply, "{all}");
    // The filler is what the caller heard, not something the LLM said.
    let rounds = llm_messages(&stack);
    assert!(rounds.len() >= 2);
    assert!(
        !rounds[1]
            .iter()
            .any(|m| m["content"].as_str().is_some_and(|c| c.contains(FILLER))),
        "{:#?}",
        rounds[1]
    );
    stack.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_malformed_and_hanging_endpoints_give_the_llm_errors_to_talk_about() {
    let script = script(9_000);
    let tool = |name: &str, path: &str| {
        json!({"name": name, "description": name, "parameters": {"type": "object", "properties": {}},
               "url": format!("{{tools}}/{path}"), "timeout_ms": 800})
    };
    let stack = start(
        &script,
        json!([
            tool("failing", "fail/x"),
            tool("malformed", "malformed/x"),
            tool("hanging", "hang/x"),
            {"name": "strict", "description": "strict",
             "parameters": {"type": "object", "required": ["day"], "properties": {"day": {"type": "string"}}},
             "url": "{tools}/fast/strict"}
        ]),
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
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    // The three endpoints were called concurrently; the bad arguments never left.
    let paths: Vec<String> = stack
        .tools
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("strict")));
    let rounds = llm_messages(&stack);
    assert!(rounds.len() >= 2, "no second round: {rounds:#?}");
    let results: Vec<Value> = tool_messages(&rounds[1])
        .iter()
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap_or("")).expect("json result"))
        .collect();
    assert_eq!(results.len(), 4, "{results:?}");
    assert!(results.iter().all(|r| r["ok"] == false), "{results:?}");
    assert!(
        results[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("500"))
    );
    assert!(
        results[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("malformed"))
    );
    assert!(
        results[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("800 ms"))
    );
    assert!(
        results[3]["error"]
            .as_str()
            .is_some_and(|e| e.contains("day"))
    );
    let all = spoken(&stack).join(" | ");
    assert!(all.contains("not answering right now"), "{all}");
    stack.server.shutdown().await;
}
