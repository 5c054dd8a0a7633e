//! Tool executions, end to end: calls through the fake caller whose scripted LLM calls custom
//! tools (the fake tool server's fast, failing and hanging endpoints) and a built-in tool; every
//! execution is listed at `GET /api/v1/calls/{id}/tool-executions` with its status (`ok`,
//! `error`, `timeout`, `cancelled` on barge-in), only to the call's organisation, and is in the
//! end-of-call webhook. Also: `enabled_tools` is derived from the settings and is exactly what
//! the LLM is offered; the OpenAPI document describes the list and the custom tool entry with
//! the limits validation enforces.

mod common;
mod twilio_harness;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchboard_store::CallRow;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{FakeLlmTurn, FakeToolCall};
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::tool_server::ToolServer;
use switchboard_testkit::twilio::{
    CallReport, CallScript, FakeCall, FakeCallConfig, FakeTwilioRest, Utterance, UtteranceKind,
};

use crate::common::{TWILIO_TOKEN_A, TestServer, assert_error, json};

const NUMBER: &str = "+15550100002";
const WELCOME: &str = "Hello, Harbor Dental.";

struct Stack {
    ts: TestServer,
    fakes: ProviderFakes,
    tools: ToolServer,
    _twilio: FakeTwilioRest,
    assistant_id: i64,
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

fn turn(text: &str, start_ms: u64, end_ms: u64) -> Utterance {
    Utterance {
        text: text.to_owned(),
        start_ms,
        end_ms,
        kind: UtteranceKind::Turn,
    }
}

fn tool_call(name: &str, args: Value) -> FakeToolCall {
    FakeToolCall::new(name, &args)
}

/// Server (org A with the fake Twilio, org B) + provider fakes + tool server + an assistant of
/// org A on [`NUMBER`] with `tools_settings` (`{tools}` in it is the tool server's base URL) and
/// `extra` merged into its record, whose LLM answers `turns` in order.
async fn start(
    script: &CallScript,
    tools_settings: Value,
    extra: Value,
    turns: Vec<FakeLlmTurn>,
) -> Stack {
    let fakes = ProviderFakes::start_for_calls(latency(), &[script])
        .await
        .expect("fakes start");
    let tools = ToolServer::start().await.expect("tool server");
    let twilio = common::fake_twilio(&[NUMBER]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = common::settings_for(&dir.path().join("sb.db"));
    common::use_fake_twilio(&mut settings, &twilio);
    settings.providers.keys_from_env = false;
    settings.recordings.base_dir = dir.path().display().to_string();
    settings.webhooks.initial_backoff_ms = 20;
    let ts = TestServer::start_with(settings, String::new()).await;
    for t in turns {
        fakes.openai.push(t);
    }
    let tools_settings: Value = serde_json::from_str(
        &tools_settings
            .to_string()
            .replace("{tools}", &tools.base_url()),
    )
    .expect("json");
    let mut record = fakes.assistant_record("Harbor Dental", &script.name, WELCOME);
    switchboard_assistant::merge_json(&mut record, &json!({"tools_settings": tools_settings}));
    switchboard_assistant::merge_json(&mut record, &extra);
    let (status, created) = json(
        ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
            .json(&record),
    )
    .await;
    assert_eq!(status, 201, "create: {created}");
    let assistant_id = created["id"].as_i64().expect("assistant id");
    let (status, body) = json(
        ts.req(
            Method::POST,
            &format!("/api/v1/assistants/{assistant_id}/phone-numbers/assign-by-number"),
            &ts.key_a,
        )
        .json(&json!({"phone_number": NUMBER})),
    )
    .await;
    assert!((200..300).contains(&status), "assign: {status} {body}");
    Stack {
        ts,
        fakes,
        tools,
        _twilio: twilio,
        assistant_id,
        _dir: dir,
    }
}

async fn call(stack: &Stack, script: CallScript) -> CallReport {
    let mut cfg = FakeCallConfig::new(
        &stack.ts.url("/twilio/voice"),
        TWILIO_TOKEN_A,
        stack.ts.client.clone(),
    );
    cfg.to = NUMBER.to_owned();
    cfg.max_duration = Duration::from_secs(60);
    FakeCall::new(cfg, Arc::new(script)).run().await
}

/// The call record once the engine has finalised it.
async fn finished_call(stack: &Stack, call_sid: &str) -> CallRow {
    let store = &stack.ts.server().state().store;
    for _ in 0..400 {
        if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await
            && call.ended_reason.is_some()
        {
            return call;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("call {call_sid} was never finalised");
}

fn executions_path(call_id: i64) -> String {
    format!("/api/v1/calls/{call_id}/tool-executions")
}

/// The call's executions once `n` are listed (the writes go through the call's recorder task).
async fn listed(stack: &Stack, call_id: i64, n: i64) -> Value {
    let path = executions_path(call_id);
    let mut last = Value::Null;
    for _ in 0..400 {
        let (status, body) = json(stack.ts.req(Method::GET, &path, &stack.ts.key_a)).await;
        assert_eq!(status, 200, "{body}");
        if body["total"].as_i64() >= Some(n) {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} executions listed: {last}");
}

fn by_name<'a>(items: &'a [Value], name: &str) -> &'a Value {
    items
        .iter()
        .find(|e| e["tool_name"] == name)
        .unwrap_or_else(|| panic!("no execution of {name}: {items:#?}"))
}

fn text_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_execution_is_listed_with_its_status_to_its_organisation_and_in_the_webhook() {
    let script = CallScript::synthetic(
        "toolrec",
        vec![turn("What are your opening hours on Monday?", 1_500, 3_000)],
        9_000,
    );
    let hook = twilio_harness::receiver(0).await;
    let tool = |name: &str, path: &str| {
        json!({"name": name, "description": name, "parameters": {"type": "object", "properties": {}},
               "url": format!("{{tools}}/{path}"), "timeout_ms": 500})
    };
    let stack = start(
        &script,
        json!({
            "dtmf_solver": {"enabled": true},
            "custom_tools": [
                {"name": "opening_hours", "description": "Opening hours of a day",
                 "parameters": {"type": "object", "required": ["day"],
                                "properties": {"day": {"type": "string"}}},
                 "method": "GET", "url": "{tools}/fast/hours/{day}"},
                tool("failing", "fail/x"),
                tool("hanging", "hang/x")
            ]
        }),
        json!({"webhook_url": hook.url}),
        vec![
            FakeLlmTurn::ToolCalls {
                text: None,
                calls: vec![
                    tool_call("opening_hours", json!({"day": "Monday"})),
                    tool_call("failing", json!({})),
                    tool_call("hanging", json!({})),
                    tool_call("dtmf_solver", json!({"digits": "12"})),
                ],
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
    let call = finished_call(&stack, &report.call_sid).await;

    // What the record says is enabled is what the LLM was offered.
    let (status, assistant) = json(stack.ts.req(
        Method::GET,
        &format!("/api/v1/assistants/{}", stack.assistant_id),
        &stack.ts.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    let enabled = &assistant["tools_settings"]["enabled_tools"];
    assert_eq!(
        enabled,
        &json!(["dtmf_solver", "opening_hours", "failing", "hanging"])
    );
    let requests = stack.fakes.openai.requests();
    let offered: Vec<Value> = requests[0].body["tools"]
        .as_array()
        .expect("tools offered")
        .iter()
        .map(|t| t["function"]["name"].clone())
        .collect();
    assert_eq!(&Value::Array(offered), enabled);

    // Every execution, with its status.
    let page = listed(&stack, call.id, 4).await;
    assert_eq!(page["total"], 4, "{page}");
    let items = page["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 4);
    let hours = by_name(&items, "opening_hours");
    assert_eq!(hours["status"], "ok");
    assert_eq!(hours["call_id"], call.id);
    assert_eq!(hours["arguments"], json!({"day": "Monday"}));
    assert!(
        text_of(&hours["result"]).contains("/fast/hours/Monday"),
        "{hours}"
    );
    assert_eq!(hours["result_truncated"], false);
    assert!(hours["error"].is_null());
    assert!(
        text_of(&hours["tool_call_id"]).starts_with("call_"),
        "{hours}"
    );
    assert!(text_of(&hours["started_at"]).ends_with('Z'), "{hours}");
    let failing = by_name(&items, "failing");
    assert_eq!(failing["status"], "error");
    assert!(text_of(&failing["error"]).contains("500"), "{failing}");
    let hanging = by_name(&items, "hanging");
    assert_eq!(hanging["status"], "timeout");
    assert!(text_of(&hanging["error"]).contains("500 ms"), "{hanging}");
    assert!(hanging["duration_ms"].as_i64() >= Some(500), "{hanging}");
    let dtmf = by_name(&items, "dtmf_solver");
    assert_eq!(dtmf["status"], "ok");
    assert_eq!(dtmf["arguments"], json!({"digits": "12"}));

    // Pages, and their limits.
    let (status, page) = json(stack.ts.req(
        Method::GET,
        &format!("{}?skip=1&limit=2", executions_path(call.id)),
        &stack.ts.key_a,
    ))
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 4);
    assert_eq!(page["skip"], 1);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["items"][0], items[1]);
    for bad in ["limit=0", "limit=1001", "skip=-1"] {
        let (status, body) = json(stack.ts.req(
            Method::GET,
            &format!("{}?{bad}", executions_path(call.id)),
            &stack.ts.key_a,
        ))
        .await;
        assert_error(status, &body, 422, "validation_failed");
    }

    // Another organisation sees nothing: the call does not exist for it.
    let (status, body) = json(stack.ts.req(
        Method::GET,
        &executions_path(call.id),
        &stack.ts.key_b,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = json(stack.ts.req(
        Method::GET,
        &executions_path(call.id + 1000),
        &stack.ts.key_a,
    ))
    .await;
    assert_error(status, &body, 404, "not_found");

    // The end-of-call report carries them.
    let mut report_body = Value::Null;
    for _ in 0..400 {
        if let Some(b) = hook
            .bodies()
            .into_iter()
            .find(|b| b["message"]["type"] == "end-of-call-report")
        {
            report_body = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let reported = report_body["message"]["toolExecutions"]
        .as_array()
        .unwrap_or_else(|| panic!("no toolExecutions: {report_body}"));
    let mut statuses: Vec<(String, String)> = reported
        .iter()
        .map(|e| {
            (
                text_of(&e["name"]).to_owned(),
                text_of(&e["status"]).to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            ("dtmf_solver".to_owned(), "ok".to_owned()),
            ("failing".to_owned(), "error".to_owned()),
            ("hanging".to_owned(), "timeout".to_owned()),
            ("opening_hours".to_owned(), "ok".to_owned()),
        ]
    );
    let hours = reported
        .iter()
        .find(|e| e["name"] == "opening_hours")
        .expect("opening_hours reported");
    assert_eq!(hours["arguments"], json!({"day": "Monday"}));
    assert!(hours["durationMs"].is_i64());
    assert!(text_of(&hours["toolCallId"]).starts_with("call_"));
    let mut ts = stack.ts;
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_cut_off_by_barge_in_is_recorded_cancelled() {
    // The tool (called at about 3 s) hangs for up to 20 s; the caller speaks again at 6 s,
    // which cancels it; the call goes on until 20 s.
    let script = CallScript::synthetic(
        "toolrec-barge",
        vec![
            turn("Can you check my booking?", 1_500, 3_000),
            turn(
                "Actually, never mind, what time do you close?",
                6_000,
                7_500,
            ),
        ],
        20_000,
    );
    let stack = start(
        &script,
        json!({"custom_tools": [
            {"name": "booking", "description": "Looks up a booking",
             "parameters": {"type": "object", "properties": {}},
             "url": "{tools}/hang/booking", "timeout_ms": 20000}
        ]}),
        json!({}),
        vec![
            FakeLlmTurn::ToolCalls {
                text: None,
                calls: vec![tool_call("booking", json!({"ref": "A1"}))],
                interleave: false,
            },
            FakeLlmTurn::text("We close at six."),
        ],
    )
    .await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    let call = finished_call(&stack, &report.call_sid).await;
    assert_eq!(stack.tools.requests().len(), 1, "the tool was called once");

    // The caller's second turn was answered with the tool's call closed as cancelled.
    let requests = stack.fakes.openai.requests();
    assert!(requests.len() >= 2, "the second turn was not answered");
    let second = requests[1].body["messages"].to_string();
    assert!(second.contains("never mind"), "{second}");

    let page = listed(&stack, call.id, 1).await;
    assert_eq!(page["total"], 1, "{page}");
    let booking = &page["items"][0];
    assert_eq!(booking["tool_name"], "booking");
    assert_eq!(booking["status"], "cancelled", "{booking}");
    assert_eq!(booking["arguments"], json!({"ref": "A1"}));
    assert!(booking["result"].is_null());
    assert!(booking["error"].is_null());
    // It ran until the barge-in (about 3.5 s), not until the end of the call (about 17 s after
    // it started) nor its 20 s timeout.
    let ran = booking["duration_ms"].as_i64().unwrap_or(-1);
    assert!((0..10_000).contains(&ran), "{booking}");
    let mut ts = stack.ts;
    ts.stop().await;
}

#[tokio::test]
async fn enabled_tools_is_derived_from_the_settings_whatever_the_client_sends() {
    let mut ts = TestServer::start().await;
    let record = json!({
        "name": "Derived",
        "tools_settings": {
            "enabled_tools": ["endCall", "bogus"],
            "end_call": {"enabled": true},
            "send_sms": {"enabled": true},
            // Enabled without a number: it cannot run, so it is not offered.
            "transfer_call": {"enabled": true},
            "custom_tools": [
                {},
                {"name": "lookup", "url": "https://tools.example.com/lookup"}
            ]
        }
    });
    let (status, created) = json(
        ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
            .json(&record),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["tools_settings"]["enabled_tools"],
        json!(["end_call", "send_sms", "lookup"])
    );
    let id = created["id"].as_i64().expect("id");
    let path = format!("/api/v1/assistants/{id}");

    // PATCH: a number for the transfer, DTMF on, and a list that says otherwise (ignored).
    let (status, patched) = json(ts.req(Method::PATCH, &path, &ts.key_a).json(&json!({
        "tools_settings": {
            "enabled_tools": [],
            "transfer_call": {"transfer_numbers": ["+14155550199"]},
            "dtmf_solver": {"enabled": true}
        }
    })))
    .await;
    assert_eq!(status, 200, "{patched}");
    let all = json!([
        "end_call",
        "transfer_call",
        "send_sms",
        "dtmf_solver",
        "lookup"
    ]);
    assert_eq!(patched["tools_settings"]["enabled_tools"], all);

    // PUT of the GET body with a stale list: the list follows the settings.
    let (_, mut body) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    assert_eq!(body["tools_settings"]["enabled_tools"], all);
    body["tools_settings"]["end_call"]["enabled"] = json!(false);
    let (status, put) = json(ts.req(Method::PUT, &path, &ts.key_a).json(&body)).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(
        put["tools_settings"]["enabled_tools"],
        json!(["transfer_call", "send_sms", "dtmf_solver", "lookup"])
    );
    let (_, read) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    assert_eq!(
        read["tools_settings"]["enabled_tools"],
        put["tools_settings"]["enabled_tools"]
    );
    ts.stop().await;
}

#[tokio::test]
async fn openapi_describes_the_list_and_the_custom_tool_entry_as_validation_enforces_it() {
    let mut ts = TestServer::start().await;
    let (status, doc) = json(ts.client.get(ts.url("/api/openapi.json"))).await;
    assert_eq!(status, 200);

    let path = &doc["paths"]["/api/v1/calls/{call_id}/tool-executions"]["get"];
    assert!(path.is_object(), "path missing");
    let params: Vec<&str> = path["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(params, ["call_id", "skip", "limit"]);
    assert!(path["responses"]["404"].is_object());
    let schemas = &doc["components"]["schemas"];
    let status_enum = &schemas["ToolExecutionResponse"]["properties"]["status"]["enum"];
    assert_eq!(status_enum, &json!(["ok", "error", "timeout", "cancelled"]));
    for field in ["items", "total", "skip", "limit"] {
        assert!(
            schemas["PaginatedToolExecutionsResponse"]["properties"][field].is_object(),
            "{field}"
        );
    }

    let tools = &schemas["ToolsSettings"]["properties"];
    // Read-only (utoipa marks the items of an array field).
    let enabled = &tools["enabled_tools"];
    assert!(
        enabled["readOnly"] == true || enabled["items"]["readOnly"] == true,
        "{enabled}"
    );
    assert_eq!(
        tools["custom_tools"]["items"]["$ref"],
        "#/components/schemas/CustomTool"
    );
    let entry = &schemas["CustomTool"]["properties"];
    for field in [
        "name",
        "description",
        "parameters",
        "method",
        "url",
        "headers",
        "body",
        "timeout_ms",
    ] {
        assert!(entry[field].is_object(), "{field} undocumented: {entry}");
    }
    assert_eq!(entry["name"]["maxLength"], 64);
    assert_eq!(entry["name"]["minLength"], 1);
    assert_eq!(entry["timeout_ms"]["minimum"], 1);
    assert_eq!(
        entry["timeout_ms"]["maximum"].as_u64(),
        Some(switchboard_assistant::MAX_TOOL_TIMEOUT_MS)
    );
    assert_eq!(entry["url"]["format"], "uri");
    assert_eq!(entry["headers"]["additionalProperties"]["type"], "string");
    let methods = doc.to_string();
    assert!(
        methods.contains(r#"["GET","POST","PUT","PATCH","DELETE"]"#),
        "method enum: {}",
        schemas["CustomToolMethod"]
    );

    // And validation enforces exactly those limits, naming the field.
    let with_tool =
        |tool: Value| json!({"name": "limits", "tools_settings": {"custom_tools": [tool]}});
    let base = json!({"name": "t", "url": "https://tools.example.com/x"});
    let cases = [
        (json!({"timeout_ms": 30000}), None),
        (json!({"timeout_ms": 30001}), Some("timeout_ms")),
        (json!({"timeout_ms": 0}), Some("timeout_ms")),
        (json!({"name": "a".repeat(64)}), None),
        (json!({"name": "a".repeat(65)}), Some("name")),
        (json!({"name": "has space"}), Some("name")),
        (json!({"method": "patch"}), None),
        (json!({"method": "FETCH"}), Some("method")),
        (json!({"headers": {"X-Key": 3}}), Some("headers")),
        (json!({"body": {"not": "a string"}}), Some("body")),
        (json!({"parameters": {"type": "array"}}), Some("parameters")),
        (json!({"url": "ftp://tools.example.com/x"}), Some("url")),
    ];
    for (change, refused) in cases {
        let mut tool = base.clone();
        switchboard_assistant::merge_json(&mut tool, &change);
        let (status, body) = json(
            ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
                .json(&with_tool(tool)),
        )
        .await;
        match refused {
            None => assert_eq!(status, 201, "{change}: {body}"),
            Some(field) => {
                let error = assert_error(status, &body, 422, "validation_failed");
                assert!(
                    error
                        .to_string()
                        .contains(&format!("custom_tools[0].{field}")),
                    "{change}: {error}"
                );
            }
        }
    }
    ts.stop().await;
}
