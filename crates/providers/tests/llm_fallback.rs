//! `llm_fallback_providers`: the next provider takes the turn within the same stream when the
//! previous one fails before its first token; never after a token reached the caller.

use std::time::Duration;

use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_providers::ProviderError;
use switchboard_providers::llm::{
    ChatMessage, FailedAttempt, LlmConfig, LlmEvent, LlmProvider, LlmRequest, LlmStream,
    stream_chat, stream_with_fallback,
};
use switchboard_testkit::anthropic::FakeAnthropic;
use switchboard_testkit::openai::{FakeLlmTurn, FakeOpenAi, split_pieces};

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

fn request() -> LlmRequest {
    LlmRequest {
        messages: vec![ChatMessage::user("What are your opening hours?")],
        tools: Vec::new(),
    }
}

struct Chain {
    primary_fake: FakeOpenAi,
    fallback_fake: FakeAnthropic,
    primary: LlmConfig,
    fallback: LlmConfig,
}

async fn chain() -> Chain {
    let primary_fake = FakeOpenAi::start().await.expect("fake");
    let fallback_fake = FakeAnthropic::start().await.expect("fake");
    let mut primary = LlmConfig::new(LlmProvider::OpenAi, "gpt-4o-mini", "k1")
        .with_base_url(primary_fake.base_url());
    primary.temperature = Some(0.4);
    primary.max_tokens = Some(200);
    let fallback = LlmConfig::new(LlmProvider::Anthropic, "claude-haiku-4-5", "k2")
        .with_base_url(fallback_fake.base_url())
        .with_settings_of(&primary);
    Chain {
        primary_fake,
        fallback_fake,
        primary,
        fallback,
    }
}

fn answered_by_fallback(events: &[LlmEvent], status: u16) {
    match events {
        [
            LlmEvent::AttemptFailed(FailedAttempt {
                provider: LlmProvider::OpenAi,
                model,
                error: ProviderError::Http { status: s, .. },
            }),
            LlmEvent::Provider {
                provider: LlmProvider::Anthropic,
                model: m2,
                attempt: 1,
            },
            ..,
            LlmEvent::Done { .. },
        ] => {
            assert_eq!(model, "gpt-4o-mini");
            assert_eq!(m2, "claude-haiku-4-5");
            assert_eq!(*s, status);
        }
        other => panic!("unexpected events: {other:?}"),
    }
    assert!(!text_of(events).is_empty());
}

#[tokio::test]
async fn primary_503_fallback_answers_in_the_same_stream() {
    let c = chain().await;
    c.primary_fake.push(FakeLlmTurn::server_error(503));
    c.fallback_fake.push(FakeLlmTurn::text(
        "We are open from 9 to 5, Monday to Friday.",
    ));
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    answered_by_fallback(&events, 503);
    assert_eq!(
        text_of(&events),
        "We are open from 9 to 5, Monday to Friday."
    );
    // The fallback inherited llm_settings.
    let body = c
        .fallback_fake
        .last_request()
        .expect("fallback request")
        .body;
    assert_eq!(body["temperature"], 0.4);
    assert_eq!(body["max_tokens"], 200);
    assert_eq!(c.primary_fake.requests().len(), 1);
}

#[tokio::test]
async fn rate_limit_and_insufficient_quota_both_fall_over() {
    // Documented choice: insufficient_quota is not retryable on the same provider, but the
    // quota is that provider's: another provider (own key) can still answer the caller.
    for (turn, retryable) in [
        (FakeLlmTurn::rate_limited(), true),
        (FakeLlmTurn::insufficient_quota(), false),
    ] {
        let c = chain().await;
        c.primary_fake.push(turn);
        let events = collect(stream_with_fallback(
            &c.primary,
            std::slice::from_ref(&c.fallback),
            request(),
            &client(),
        ))
        .await;
        answered_by_fallback(&events, 429);
        match &events[0] {
            LlmEvent::AttemptFailed(f) => assert_eq!(f.error.is_retryable(), retryable),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn anthropic_529_falls_over_to_openai() {
    let c = chain().await;
    c.fallback_fake.push(FakeLlmTurn::overloaded());
    let openai_second = c.primary.clone();
    let events = collect(stream_with_fallback(
        &c.fallback,
        &[openai_second],
        request(),
        &client(),
    ))
    .await;
    assert!(matches!(
        &events[0],
        LlmEvent::AttemptFailed(FailedAttempt {
            error: ProviderError::Http { status: 529, .. },
            ..
        })
    ));
    assert!(matches!(
        &events[1],
        LlmEvent::Provider {
            provider: LlmProvider::OpenAi,
            attempt: 1,
            ..
        }
    ));
    assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
}

#[tokio::test]
async fn bad_request_does_not_fall_over() {
    let c = chain().await;
    c.primary_fake.push(FakeLlmTurn::status(
        400,
        "invalid_request_error",
        None,
        "bad messages",
    ));
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    assert!(
        matches!(
            &events[..],
            [LlmEvent::Failed(ProviderError::Http { status: 400, .. })]
        ),
        "{events:?}"
    );
    assert!(c.fallback_fake.requests().is_empty());
}

#[tokio::test]
async fn timeout_before_first_token_falls_over() {
    let mut c = chain().await;
    c.primary.first_token_timeout_ms = 300;
    c.primary_fake.push(FakeLlmTurn::HangAfterHeaders);
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    assert!(
        matches!(
            &events[0],
            LlmEvent::AttemptFailed(FailedAttempt {
                error: ProviderError::Timeout {
                    waiting_for: "first token",
                    ..
                },
                ..
            })
        ),
        "{events:?}"
    );
    assert!(matches!(
        &events[1],
        LlmEvent::Provider {
            provider: LlmProvider::Anthropic,
            ..
        }
    ));
    assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
}

#[tokio::test]
async fn unreachable_primary_falls_over() {
    let mut c = chain().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    c.primary.base_url = Some(format!("http://127.0.0.1:{port}/v1"));
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    assert!(
        matches!(
            &events[0],
            LlmEvent::AttemptFailed(FailedAttempt {
                error: ProviderError::Connect { .. },
                ..
            })
        ),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(LlmEvent::Done { .. })));
}

#[tokio::test]
async fn failure_after_first_token_does_not_fall_over() {
    let c = chain().await;
    let text = "We are open from 9 to 5.";
    c.primary_fake.push(FakeLlmTurn::CloseMidStream {
        text: text.into(),
        after_chunks: 2,
    });
    let stream = stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    );
    let events = collect(stream).await;
    assert!(
        matches!(
            &events[0],
            LlmEvent::Provider {
                provider: LlmProvider::OpenAi,
                attempt: 0,
                ..
            }
        ),
        "{events:?}"
    );
    assert_eq!(text_of(&events), split_pieces(text)[..2].concat());
    assert!(
        matches!(
            events.last(),
            Some(LlmEvent::Failed(ProviderError::Stream { .. }))
        ),
        "{events:?}"
    );
    assert!(
        c.fallback_fake.requests().is_empty(),
        "no fallback after a token was streamed"
    );
}

#[tokio::test]
async fn every_provider_failing_ends_with_the_last_error() {
    let c = chain().await;
    c.primary_fake.push(FakeLlmTurn::server_error(502));
    c.fallback_fake.push(FakeLlmTurn::overloaded());
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    assert!(
        matches!(
            &events[..],
            [
                LlmEvent::AttemptFailed(FailedAttempt {
                    error: ProviderError::Http { status: 502, .. },
                    ..
                }),
                LlmEvent::Failed(ProviderError::Http { status: 529, .. }),
            ]
        ),
        "{events:?}"
    );
}

#[tokio::test]
async fn first_token_time_is_reported() {
    let c = chain().await;
    let mut stream = stream_with_fallback(&c.primary, &[], request(), &client());
    // current-thread test runtime: the request task has not run yet
    assert!(stream.first_token_at().is_none());
    let mut got_text = false;
    while let Ok(Some(ev)) = tokio::time::timeout(GUARD, stream.recv()).await {
        if matches!(ev, LlmEvent::Text(_)) {
            got_text = true;
            break;
        }
    }
    assert!(got_text);
    let at = stream.first_token_at().expect("first token time");
    assert!(at <= tokio::time::Instant::now());
}

#[tokio::test]
async fn a_primary_the_outbound_policy_refuses_hands_over_to_the_fallback() {
    let mut c = chain().await;
    c.primary.base_url = Some("http://169.254.169.254/v1".into());
    c.fallback_fake
        .push(FakeLlmTurn::text("We are open from 9 to 5."));
    let events = collect(stream_with_fallback(
        &c.primary,
        std::slice::from_ref(&c.fallback),
        request(),
        &client(),
    ))
    .await;
    match events.first() {
        Some(LlmEvent::AttemptFailed(FailedAttempt {
            error: ProviderError::NotAllowed { message, .. },
            ..
        })) => assert!(message.contains("169.254.169.254"), "{message}"),
        other => panic!("expected a refused first attempt, got {other:?}"),
    }
    assert_eq!(text_of(&events), "We are open from 9 to 5.");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_without_an_allowlist() {
    let c = chain().await;
    let port = c
        .primary
        .base_url
        .as_deref()
        .and_then(|b| url::Url::parse(b).ok())
        .and_then(|u| u.port())
        .expect("fake port");
    let primary = c
        .primary
        .clone()
        .with_base_url(format!("http://localhost:{port}/v1"));
    let strict = GuardedClient::build(OutboundPolicy::default(), reqwest::Client::builder())
        .expect("client builds");
    let events = collect(stream_chat(&primary, request(), &strict)).await;
    match events.as_slice() {
        [LlmEvent::Failed(ProviderError::NotAllowed { message, .. })] => {
            assert!(message.contains("not allowed"), "{message}");
        }
        other => panic!("expected one refusal, got {other:?}"),
    }
    assert!(
        c.primary_fake.requests().is_empty(),
        "nothing reached the fake"
    );
}
