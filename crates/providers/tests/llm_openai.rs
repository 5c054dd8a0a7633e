//! The OpenAI-compatible adapter (openai, groq, xai, gemini, custom, azure) against the fake
//! server in switchboard-testkit, over real sockets on 127.0.0.1.

use std::time::Duration;

use serde_json::json;
use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_providers::ProviderError;
use switchboard_providers::llm::{
    AzureConfig, ChatMessage, FinishReason, LlmConfig, LlmEvent, LlmProvider, LlmRequest,
    LlmStream, ToolSpec, stream_chat,
};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::{
    FakeLlmOptions, FakeLlmTurn, FakeOpenAi, FakeToolCall, default_reply, split_pieces,
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

const USER: &str = "I'd like to book a table for two tomorrow";

fn request() -> LlmRequest {
    LlmRequest {
        messages: vec![
            ChatMessage::system("You are a phone agent."),
            ChatMessage::assistant("Hello, how can I help?"),
            ChatMessage::user(USER),
        ],
        tools: Vec::new(),
    }
}

fn full_settings(mut cfg: LlmConfig) -> LlmConfig {
    cfg.temperature = Some(0.5);
    cfg.max_tokens = Some(150);
    cfg.top_p = Some(0.9);
    cfg.frequency_penalty = Some(0.25);
    cfg.presence_penalty = Some(-0.5);
    cfg.stop_sequences = ["END", "STOP", "###", "Caller:", "fifth"]
        .map(String::from)
        .to_vec();
    cfg
}

#[tokio::test]
async fn openai_maps_every_setting_and_streams_text() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let cfg = full_settings(
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "sk-test")
            .with_base_url(fake.base_url()),
    );
    let mut req = request();
    req.tools.push(ToolSpec {
        name: "get_time".into(),
        description: "Current time in a city".into(),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    });
    let events = collect(stream_chat(&cfg, req, &client())).await;

    let r = fake.last_request().expect("request recorded");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let b = &r.body;
    assert_eq!(b["model"], "gpt-4o-mini");
    assert_eq!(b["stream"], true);
    assert_eq!(b["stream_options"], json!({"include_usage": true}));
    assert_eq!(b["temperature"], 0.5);
    assert_eq!(b["max_tokens"], 150);
    assert!(b.get("max_completion_tokens").is_none());
    assert_eq!(b["top_p"], 0.9);
    assert_eq!(b["frequency_penalty"], 0.25);
    assert_eq!(b["presence_penalty"], -0.5);
    assert_eq!(b["stop"], json!(["END", "STOP", "###", "Caller:"]));
    assert_eq!(b["tool_choice"], "auto");
    assert_eq!(b["tools"][0]["type"], "function");
    assert_eq!(b["tools"][0]["function"]["name"], "get_time");
    assert_eq!(
        b["tools"][0]["function"]["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(
        b["messages"],
        json!([
            {"role": "system", "content": "You are a phone agent."},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": USER},
        ])
    );

    assert_eq!(
        events.first(),
        Some(&LlmEvent::Provider {
            provider: LlmProvider::OpenAi,
            model: "gpt-4o-mini".into(),
            attempt: 0
        })
    );
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, LlmEvent::Text(_)))
            .count()
            > 5,
        "streamed in pieces"
    );
    assert_eq!(text_of(&events), default_reply(Some(USER)));
    match events.last() {
        Some(LlmEvent::Done {
            finish_reason: FinishReason::Stop,
            usage: Some(u),
        }) => {
            assert!(u.input_tokens > 0 && u.output_tokens > 0);
            assert_eq!(u.cached_input_tokens, Some(0));
        }
        other => panic!("expected Done with usage, got {other:?}"),
    }
}

#[tokio::test]
async fn compatible_providers_use_their_paths_and_bearer_auth() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let cases = [
        (
            LlmProvider::Groq,
            format!("{}/v1", fake.endpoint()),
            "/v1/chat/completions",
        ),
        (
            LlmProvider::Xai,
            format!("{}/v1/", fake.endpoint()),
            "/v1/chat/completions",
        ),
        (
            LlmProvider::Gemini,
            format!("{}/v1beta/openai/", fake.endpoint()),
            "/v1beta/openai/chat/completions",
        ),
        (LlmProvider::Custom, fake.endpoint(), "/v1/chat/completions"),
    ];
    for (provider, base, path) in cases {
        fake.push(FakeLlmTurn::text("Your table is booked for 7 pm."));
        let cfg =
            full_settings(LlmConfig::new(provider, "some-model", "key-1").with_base_url(base));
        let events = collect(stream_chat(&cfg, request(), &client())).await;
        assert_eq!(
            text_of(&events),
            "Your table is booked for 7 pm.",
            "{provider}"
        );
        let r = fake.last_request().expect("request");
        assert_eq!(r.path, path, "{provider}");
        assert_eq!(r.header("authorization"), Some("Bearer key-1"));
        assert_eq!(r.body["temperature"], 0.5);
        assert_eq!(
            r.body["max_tokens"], 150,
            "{provider}: non-OpenAI models keep max_tokens"
        );
        assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
    }
}

#[tokio::test]
async fn custom_without_base_url_is_a_config_error() {
    let cfg = LlmConfig::new(LlmProvider::Custom, "m", "k");
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(
        matches!(failure(&events), Some(ProviderError::Config { .. })),
        "{events:?}"
    );
}

#[tokio::test]
async fn azure_deployment_path_api_version_and_api_key() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let mut cfg = full_settings(
        LlmConfig::new(LlmProvider::Azure, "gpt-4o", "az-key").with_base_url(fake.endpoint()),
    );
    cfg.azure = Some(AzureConfig {
        api_version: "2024-10-21".into(),
        deployment: Some("prod-4o".into()),
    });
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    let r = fake.last_request().expect("request");
    assert_eq!(r.path, "/openai/deployments/prod-4o/chat/completions");
    assert_eq!(r.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(r.header("api-key"), Some("az-key"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.body["presence_penalty"], -0.5);
    // The fake opens with a `choices: []` filter chunk and adds content_filter_results.
    assert_eq!(text_of(&events), default_reply(Some(USER)));
    assert!(matches!(
        events.last(),
        Some(LlmEvent::Done { usage: Some(_), .. })
    ));
}

#[tokio::test]
async fn azure_v1_surface() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let mut cfg =
        LlmConfig::new(LlmProvider::Azure, "gpt-4o", "az-key").with_base_url(fake.endpoint());
    cfg.azure = Some(AzureConfig {
        api_version: "preview".into(),
        deployment: None,
    });
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert_eq!(
        fake.last_request().map(|r| r.path),
        Some("/openai/v1/chat/completions".to_owned())
    );
    assert!(
        matches!(events.last(), Some(LlmEvent::Done { .. })),
        "{events:?}"
    );
}

#[tokio::test]
async fn reasoning_models_get_max_completion_tokens() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let cfg = full_settings(
        LlmConfig::new(LlmProvider::OpenAi, "o4-mini", "k").with_base_url(fake.base_url()),
    );
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
    let b = fake.last_request().expect("request").body;
    assert_eq!(b["max_completion_tokens"], 150);
    for absent in [
        "max_tokens",
        "temperature",
        "top_p",
        "frequency_penalty",
        "presence_penalty",
    ] {
        assert!(
            b.get(absent).is_none(),
            "{absent} must not be sent to a reasoning model"
        );
    }
    assert_eq!(b["stop"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn parallel_interleaved_tool_calls_are_reassembled() {
    let fake = FakeOpenAi::start().await.expect("fake");
    let time_args = json!({"city": "Paris", "format": "24h"});
    let weather_args = json!({"city": "Lyon", "days": 3, "units": {"temp": "celsius"}});
    fake.push(FakeLlmTurn::ToolCalls {
        text: Some("One moment, let me check.".into()),
        calls: vec![
            FakeToolCall::new("get_time", &time_args),
            FakeToolCall::new("get_weather", &weather_args),
        ],
        interleave: true,
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert_eq!(text_of(&events), "One moment, let me check.");
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::ToolCall(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2, "{events:?}");
    assert_eq!(
        (calls[0].id.as_str(), calls[0].name.as_str()),
        ("call_fake0", "get_time")
    );
    assert_eq!(calls[0].arguments, time_args);
    assert_eq!(
        (calls[1].id.as_str(), calls[1].name.as_str()),
        ("call_fake1", "get_weather")
    );
    assert_eq!(calls[1].arguments, weather_args);
    assert!(matches!(
        events.last(),
        Some(LlmEvent::Done {
            finish_reason: FinishReason::ToolCalls,
            usage: Some(_)
        })
    ));
}

#[tokio::test]
async fn tool_call_without_text_and_history_round_trip() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.push(FakeLlmTurn::ToolCalls {
        text: None,
        calls: vec![FakeToolCall::new("end_call", &json!({}))],
        interleave: false,
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    let call = events.iter().find_map(|e| match e {
        LlmEvent::ToolCall(c) => Some(c.clone()),
        _ => None,
    });
    let call = call.expect("a tool call");
    assert_eq!(call.arguments, json!({}));
    assert!(text_of(&events).is_empty());

    // The call and its result go back in the next request in OpenAI's shape.
    let mut req = request();
    req.messages.push(ChatMessage::Assistant {
        content: String::new(),
        tool_calls: vec![call],
    });
    req.messages
        .push(ChatMessage::tool("call_fake0", "{\"ok\":true}"));
    let events = collect(stream_chat(&cfg, req, &client())).await;
    assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
    let m = &fake.last_request().expect("request").body["messages"];
    assert_eq!(m[3]["tool_calls"][0]["function"]["arguments"], "{}");
    assert_eq!(
        m[4],
        json!({"role": "tool", "tool_call_id": "call_fake0", "content": "{\"ok\":true}"})
    );
}

#[tokio::test]
async fn in_stream_error_after_text_fails_the_turn() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.push(FakeLlmTurn::ErrorMidStream {
        text: "Sure, let me look that up for you.".into(),
        after_chunks: 2,
        error_type: "server_error".into(),
        message: "The server had an error".into(),
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert_eq!(
        text_of(&events),
        split_pieces("Sure, let me look that up for you.")[..2].concat()
    );
    match failure(&events) {
        Some(ProviderError::Stream {
            retryable: true,
            message,
            ..
        }) => assert!(message.contains("server_error")),
        other => panic!("expected a retryable stream error, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_closed_mid_stream_fails_the_turn() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.push(FakeLlmTurn::CloseMidStream {
        text: "Sure, let me look that up.".into(),
        after_chunks: 3,
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert_eq!(
        text_of(&events),
        split_pieces("Sure, let me look that up.")[..3].concat()
    );
    assert!(
        matches!(failure(&events), Some(ProviderError::Stream { .. })),
        "{events:?}"
    );
}

/// A server (base URLs are tenant settings) that answers 200 and then streams one `data:` line
/// that never ends: the turn fails with a protocol error once the line passes the parser's
/// bound, instead of the engine buffering it without end.
#[tokio::test]
async fn an_endless_event_fails_the_turn_instead_of_growing_memory() {
    use switchboard_providers::sse::MAX_EVENT_BYTES;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await;
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ";
        socket.write_all(head.as_bytes()).await.expect("head");
        // Four times the bound, without a line end; the client gives up before the end.
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..(4 * MAX_EVENT_BYTES / block.len()) {
            if socket.write_all(&block).await.is_err() {
                return;
            }
        }
        let _ = socket.write_all(b"\n\n").await;
    });
    let cfg =
        LlmConfig::new(LlmProvider::Custom, "m", "k").with_base_url(format!("http://{addr}/v1"));
    let events = tokio::time::timeout(GUARD, collect(stream_chat(&cfg, request(), &client())))
        .await
        .expect("the turn ends");
    match failure(&events) {
        Some(ProviderError::Protocol { message, .. }) => {
            assert!(message.contains("limit"), "{message}")
        }
        other => panic!("expected a protocol error, got {other:?} in {events:?}"),
    }
    server.abort();
}

async fn http_failure(turn: Option<FakeLlmTurn>, key: &str, base_suffix: &str) -> ProviderError {
    let fake = FakeOpenAi::start_with(FakeLlmOptions {
        api_key: Some("right".into()),
        ..Default::default()
    })
    .await
    .expect("fake");
    if let Some(t) = turn {
        fake.push(t);
    }
    let cfg = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", key)
        .with_base_url(format!("{}{base_suffix}", fake.endpoint()));
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert_eq!(events.len(), 1, "only Failed: {events:?}");
    failure(&events).cloned().expect("a failure")
}

#[tokio::test]
async fn http_errors_map_status_and_retryability() {
    let e = http_failure(None, "wrong", "/v1").await;
    assert!(
        matches!(&e, ProviderError::Http { status: 401, retryable: false, message, .. } if message.contains("invalid_api_key")),
        "{e:?}"
    );
    let e = http_failure(None, "right", "/nowhere/v1").await;
    assert!(
        matches!(
            e,
            ProviderError::Http {
                status: 404,
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
    let e = http_failure(Some(FakeLlmTurn::rate_limited()), "right", "/v1").await;
    assert!(
        matches!(
            e,
            ProviderError::Http {
                status: 429,
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    let e = http_failure(Some(FakeLlmTurn::insufficient_quota()), "right", "/v1").await;
    assert!(
        matches!(&e, ProviderError::Http { status: 429, retryable: false, message, .. } if message.starts_with("insufficient_quota")),
        "{e:?}"
    );
    let e = http_failure(Some(FakeLlmTurn::server_error(500)), "right", "/v1").await;
    assert!(
        matches!(
            e,
            ProviderError::Http {
                status: 500,
                retryable: true,
                ..
            }
        ),
        "{e:?}"
    );
    let mut no_retry = FakeLlmTurn::server_error(503);
    if let FakeLlmTurn::Status { headers, .. } = &mut no_retry {
        headers.push(("x-should-retry".into(), "false".into()));
    }
    let e = http_failure(Some(no_retry), "right", "/v1").await;
    assert!(
        matches!(
            e,
            ProviderError::Http {
                status: 503,
                retryable: false,
                ..
            }
        ),
        "x-should-retry honoured: {e:?}"
    );
    let e = http_failure(
        Some(FakeLlmTurn::status(
            400,
            "invalid_request_error",
            Some("context_length_exceeded"),
            "too long",
        )),
        "right",
        "/v1",
    )
    .await;
    assert!(
        matches!(
            e,
            ProviderError::Http {
                status: 400,
                retryable: false,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn missing_key_and_unreachable_server() {
    let cfg = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "")
        .with_base_url("http://127.0.0.1:9/v1");
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(matches!(
        failure(&events),
        Some(ProviderError::MissingKey { provider: "openai" })
    ));

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k")
        .with_base_url(format!("http://127.0.0.1:{port}/v1"));
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(
        matches!(failure(&events), Some(ProviderError::Connect { .. })),
        "{events:?}"
    );
}

#[tokio::test]
async fn first_token_and_header_timeouts() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.push(FakeLlmTurn::HangAfterHeaders);
    let mut cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    cfg.first_token_timeout_ms = 300;
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(
        matches!(failure(&events), Some(ProviderError::Timeout { waiting_for: "first token", after, .. }) if *after == Duration::from_millis(300)),
        "{events:?}"
    );

    fake.push(FakeLlmTurn::HangBeforeHeaders);
    cfg.connect_timeout_ms = 200;
    let events = collect(stream_chat(&cfg, request(), &client())).await;
    assert!(
        matches!(
            failure(&events),
            Some(ProviderError::Timeout {
                waiting_for: "response headers",
                ..
            })
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn cancel_aborts_the_request() {
    let fake = FakeOpenAi::start().await.expect("fake");
    // Slow tokens so the stream is still running when we cancel (pacing only, nothing timed).
    fake.set_latency(LatencyProfile {
        llm_tokens_per_s: 20.0,
        ..LatencyProfile::instant()
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let mut stream = stream_chat(&cfg, request(), &client());
    let mut saw_text = false;
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, stream.recv()).await {
        if matches!(ev, LlmEvent::Text(_)) {
            saw_text = true;
            break;
        }
    }
    assert!(saw_text);
    assert!(stream.first_token_at().is_some());
    stream.cancel();
    let deadline = tokio::time::Instant::now() + GUARD;
    while fake.cancelled_streams() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.cancelled_streams(),
        1,
        "the fake saw the connection close"
    );
    assert_eq!(fake.completed_streams(), 0);
    // Drained: nothing more after the queued events.
    while let Some(ev) = stream.recv().await {
        assert!(matches!(ev, LlmEvent::Text(_)), "{ev:?}");
    }
}

#[tokio::test]
async fn dropping_the_stream_aborts_the_request() {
    let fake = FakeOpenAi::start().await.expect("fake");
    fake.set_latency(LatencyProfile {
        llm_tokens_per_s: 20.0,
        ..LatencyProfile::instant()
    });
    let cfg =
        LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k").with_base_url(fake.base_url());
    let mut stream = stream_chat(&cfg, request(), &client());
    let _ = tokio::time::timeout(GUARD, stream.recv()).await;
    drop(stream);
    let deadline = tokio::time::Instant::now() + GUARD;
    while fake.cancelled_streams() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.cancelled_streams(), 1);
}
