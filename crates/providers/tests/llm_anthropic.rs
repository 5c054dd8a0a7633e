//! The Anthropic Messages adapter against the fake server in switchboard-testkit, over real
//! sockets on 127.0.0.1.

use std::time::Duration;

use serde_json::json;
use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_providers::ProviderError;
use switchboard_providers::anthropic::CALL_STARTED_TEXT;
use switchboard_providers::llm::{
    ChatMessage, FinishReason, LlmConfig, LlmEvent, LlmProvider, LlmRequest, LlmStream, ToolCall,
    ToolSpec, stream_chat,
};
use switchboard_testkit::anthropic::FakeAnthropic;
use switchboard_testkit::openai::{
    FakeLlmOptions, FakeLlmTurn, FakeToolCall, default_reply, split_pieces,
};

/// The fakes listen on 127.0.0.1: the client's outbound policy allows exactly loopback.
fn client() -> GuardedClient {
    let policy = OutboundPolicy::new("127.0.0.1,::1".parse().expect("allowlist"));
    GuardedClient::build(policy, reqwest::Client::builder()).expect("client builds")
}

/// Bound on any single wait so a broken test fails instead of hanging (not a speed assertion).
const GUARD: Duration = Duration::from_secs(20);

async fn collect(mut s: LlmStream) -> Vec<LlmEvent> {
    let mut out = Vec::new();
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, s.recv()).await {
        out.push(ev);
    }
    out
}

fn text_of(events: &[LlmEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn failure(events: &[LlmEvent]) -> Option<&ProviderError> {
    match events.last() {
        Some(LlmEvent::Failed(e)) => Some(e),
        _ => None,
    }
}

const USER: &str = "Can you check my order status";

fn request() -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::system("You are a phone agent."),
            ChatMessage::assistant("Hello, thanks for calling."),
            ChatMessage::user(USER),
        ],
        tools: Vec::new(),
    }
}

fn cfg(fake: &FakeAnthropic) -> LlmConfig {
    LlmConfig::new(LlmProvider::Anthropic, "claude-sonnet-4-5", "ant-key")
        .with_base_url(fake.base_url())
}

#[tokio::test]
async fn maps_headers_body_and_streams_text() {
    let fake = FakeAnthropic::start_with(FakeLlmOptions {
        api_key: Some("ant-key".into()),
        ..Default::default()
    })
    .await
    .expect("fake");
    let mut c = cfg(&fake);
    c.temperature = Some(0.5);
    c.max_tokens = Some(300);
    c.top_p = Some(0.9);
    c.frequency_penalty = Some(0.3);
    c.presence_penalty = Some(0.3);
    c.stop_sequences = vec![
        "END".into(),
        "Caller:".into(),
        "###".into(),
        "a".into(),
        "b".into(),
    ];
    let mut req = request();
    req.tools.push(ToolSpec {
        name: "lookup_order".into(),
        description: "Find an order".into(),
        parameters: json!({"type": "object", "properties": {"order_id": {"type": "string"}}}),
    });
    let events = collect(stream_chat(&c, req, &client())).await;

    let r = fake.last_request().expect("request");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some("ant-key"));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("authorization"), None);
    let b = &r.body;
    assert_eq!(b["model"], "claude-sonnet-4-5");
    assert_eq!(b["max_tokens"], 300);
    assert_eq!(b["stream"], true);
    assert_eq!(b["system"], "You are a phone agent.");
    assert_eq!(b["temperature"], 0.5);
    assert!(b.get("top_p").is_none(), "temperature wins over top_p");
    assert!(b.get("frequency_penalty").is_none() && b.get("presence_penalty").is_none());
    assert_eq!(
        b["stop_sequences"],
        json!(["END", "Caller:", "###", "a", "b"])
    );
    assert_eq!(b["tools"][0]["name"], "lookup_order");
    assert_eq!(
        b["tools"][0]["input_schema"]["properties"]["order_id"]["type"],
        "string"
    );
    assert_eq!(b["tool_choice"], json!({"type": "auto"}));
    assert_eq!(
        b["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": CALL_STARTED_TEXT}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello, thanks for calling."}]},
            {"role": "user", "content": [{"type": "text", "text": USER}]},
        ])
    );

    assert!(matches!(
        events.first(),
        Some(LlmEvent::Provider {
            provider: LlmProvider::Anthropic,
            attempt: 0,
            ..
        })
    ));
    assert_eq!(text_of(&events), default_reply(Some(USER)));
    match events.last() {
        Some(LlmEvent::Done {
            finish_reason: FinishReason::Stop,
            usage: Some(u),
        }) => {
            assert!(u.input_tokens > 0);
            assert_eq!(
                u.output_tokens as usize,
                1 + split_pieces(&default_reply(Some(USER))).len()
            );
        }
        other => panic!("expected Done with usage, got {other:?}"),
    }
}

#[tokio::test]
async fn default_max_tokens_and_top_p_without_temperature() {
    let fake = FakeAnthropic::start().await.expect("fake");
    let mut c = cfg(&fake);
    c.top_p = Some(0.8);
    let events = collect(stream_chat(&c, request(), &client())).await;
    assert!(
        matches!(events.last(), Some(LlmEvent::Done { .. })),
        "{events:?}"
    );
    let b = fake.last_request().expect("request").body;
    assert_eq!(b["max_tokens"], 1024);
    assert_eq!(b["top_p"], 0.8);
    assert!(b.get("temperature").is_none());
}

#[tokio::test]
async fn tool_use_blocks_are_reassembled_and_sent_back() {
    let fake = FakeAnthropic::start().await.expect("fake");
    let a = json!({"order_id": "A-1042", "include": ["items", "eta"]});
    let b = json!({"customer": {"phone": "+15551234567"}});
    fake.push(FakeLlmTurn::ToolCalls {
        text: Some("Let me check that.".into()),
        calls: vec![
            FakeToolCall::new("lookup_order", &a),
            FakeToolCall::new("lookup_customer", &b),
        ],
        interleave: false,
    });
    let events = collect(stream_chat(&cfg(&fake), request(), &client())).await;
    assert_eq!(text_of(&events), "Let me check that.");
    let calls: Vec<ToolCall> = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::ToolCall(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2, "{events:?}");
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("toolu_fake0", "lookup_order")
    );
    assert_eq!(calls[0].arguments, a);
    assert_eq!(calls[1].arguments, b);
    assert!(matches!(
        events.last(),
        Some(LlmEvent::Done {
            finish_reason: FinishReason::ToolCalls,
            ..
        })
    ));

    let mut req = request();
    req.messages.push(ChatMessage::Assistant {
        content: "Let me check that.".into(),
        tool_calls: calls,
    });
    req.messages
        .push(ChatMessage::tool("toolu_fake0", "shipped"));
    req.messages.push(ChatMessage::tool("toolu_fake1", "found"));
    let events = collect(stream_chat(&cfg(&fake), req, &client())).await;
    assert!(
        matches!(events.last(), Some(LlmEvent::Done { .. })),
        "{events:?}"
    );
    let m = &fake.last_request().expect("request").body["messages"];
    assert_eq!(
        m[3]["content"][1],
        json!({"type": "tool_use", "id": "toolu_fake0", "name": "lookup_order", "input": a})
    );
    assert_eq!(m[4]["role"], "user");
    assert_eq!(
        m[4]["content"],
        json!([
            {"type": "tool_result", "tool_use_id": "toolu_fake0", "content": "shipped"},
            {"type": "tool_result", "tool_use_id": "toolu_fake1", "content": "found"},
        ])
    );
}

#[tokio::test]
async fn http_errors_including_529() {
    let fake = FakeAnthropic::start_with(FakeLlmOptions {
        api_key: Some("ant-key".into()),
        ..Default::default()
    })
    .await
    .expect("fake");
    fake.push(FakeLlmTurn::overloaded());
    let events = collect(stream_chat(&cfg(&fake), request(), &client())).await;
    assert!(
        matches!(failure(&events), Some(ProviderError::Http { status: 529, retryable: true, message, .. }) if message.contains("overloaded_error")),
        "{events:?}"
    );
    fake.push(FakeLlmTurn::status(
        429,
        "rate_limit_error",
        None,
        "Number of requests has exceeded your rate limit",
    ));
    let events = collect(stream_chat(&cfg(&fake), request(), &client())).await;
    assert!(
        matches!(
            failure(&events),
            Some(ProviderError::Http {
                status: 429,
                retryable: true,
                ..
            })
        ),
        "{events:?}"
    );
    fake.push(FakeLlmTurn::status(
        500,
        "api_error",
        None,
        "Internal server error",
    ));
    let events = collect(stream_chat(&cfg(&fake), request(), &client())).await;
    assert!(
        matches!(
            failure(&events),
            Some(ProviderError::Http {
                status: 500,
                retryable: true,
                ..
            })
        ),
        "{events:?}"
    );

    let mut wrong = cfg(&fake);
    wrong.api_key = "nope".into();
    let events = collect(stream_chat(&wrong, request(), &client())).await;
    assert!(
        matches!(failure(&events), Some(ProviderError::Http { status: 401, retryable: false, message, .. }) if message.contains("authentication_error")),
        "{events:?}"
    );
    let mut lost = cfg(&fake);
    lost.base_url = Some(format!("{}/elsewhere/v1", fake.endpoint()));
    let events = collect(stream_chat(&lost, request(), &client())).await;
    assert!(
        matches!(
            failure(&events),
            Some(ProviderError::Http {
                status: 404,
                retryable: false,
                ..
            })
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn mid_stream_overloaded_error_is_retryable_stream_error() {
    let fake = FakeAnthropic::start().await.expect("fake");
    let text = "Sure, I can check on that order for you.";
    fake.push(FakeLlmTurn::ErrorMidStream {
        text: text.into(),
        after_chunks: 3,
        error_type: "overloaded_error".into(),
        message: "Overloaded".into(),
    });
    let events = collect(stream_chat(&cfg(&fake), request(), &client())).await;
    assert_eq!(text_of(&events), split_pieces(text)[..3].concat());
    assert!(
        matches!(failure(&events), Some(ProviderError::Stream { retryable: true, message, .. }) if message.contains("overloaded_error")),
        "{events:?}"
    );
}

#[tokio::test]
async fn bare_host_base_url_gets_v1() {
    let fake = FakeAnthropic::start().await.expect("fake");
    let c = cfg(&fake).with_base_url(fake.endpoint());
    let events = collect(stream_chat(&c, request(), &client())).await;
    assert!(
        matches!(events.last(), Some(LlmEvent::Done { .. })),
        "{events:?}"
    );
    assert_eq!(
        fake.last_request().map(|r| r.path),
        Some("/v1/messages".to_owned())
    );
}
