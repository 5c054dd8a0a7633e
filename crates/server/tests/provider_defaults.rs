//! Defaults that follow the provider, through the API: an assistant saved with
//! `llm_provider: anthropic` and no model (or Burki's OpenAI default `gpt-4o-mini`) is stored,
//! and returned by GET, with Anthropic's default model from the registry; a model named on
//! purpose is kept; OpenAI keeps its default. Create, full update and patch all apply it.

mod common;

use common::{KEY_A, TestServer, json};
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_providers::registry::{self, ProviderKind};

fn claude_default() -> &'static str {
    registry::info(ProviderKind::Llm, "anthropic")
        .and_then(|p| p.default_model)
        .expect("anthropic has a default model")
}

async fn model_of(ts: &TestServer, id: i64) -> Value {
    let (status, body) =
        json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), KEY_A)).await;
    assert_eq!(status, 200, "{body}");
    body["llm_provider_config"]["model"].clone()
}

#[tokio::test]
async fn the_llm_model_follows_the_provider_on_every_save() {
    let mut ts = TestServer::start().await;
    let claude = claude_default();
    assert!(claude.starts_with("claude-"), "{claude}");

    // Create with no model at all: Anthropic's default, not gpt-4o-mini.
    let (status, created) = json(
        ts.req(Method::POST, "/api/v1/assistants", KEY_A)
            .json(&json!({"name": "a", "llm_provider": "anthropic"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    assert_eq!(created["llm_provider_config"]["model"], claude);
    assert_eq!(model_of(&ts, id).await, claude);

    // Create with Burki's default spelled out, and with a chosen model.
    let (_, spelled) = json(
        ts.req(Method::POST, "/api/v1/assistants", KEY_A)
            .json(&json!({"name": "b",
            "llm_provider": "anthropic", "llm_provider_config": {"model": "gpt-4o-mini"}})),
    )
    .await;
    assert_eq!(spelled["llm_provider_config"]["model"], claude);
    let (_, chosen) = json(
        ts.req(Method::POST, "/api/v1/assistants", KEY_A)
            .json(&json!({"name": "c",
            "llm_provider": "anthropic", "llm_provider_config": {"model": "claude-sonnet-4-5"}})),
    )
    .await;
    assert_eq!(chosen["llm_provider_config"]["model"], "claude-sonnet-4-5");

    // OpenAI keeps gpt-4o-mini; a PATCH to Anthropic moves the default along.
    let (_, openai) = json(
        ts.req(Method::POST, "/api/v1/assistants", KEY_A)
            .json(&json!({"name": "d"})),
    )
    .await;
    let openai_id = openai["id"].as_i64().expect("id");
    assert_eq!(openai["llm_provider_config"]["model"], "gpt-4o-mini");
    let (status, patched) = json(
        ts.req(
            Method::PATCH,
            &format!("/api/v1/assistants/{openai_id}"),
            KEY_A,
        )
        .json(&json!({"llm_provider": "anthropic"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(model_of(&ts, openai_id).await, claude);

    // A full update without a model, and one back to OpenAI.
    let (status, put) = json(
        ts.req(Method::PUT, &format!("/api/v1/assistants/{id}"), KEY_A)
            .json(&json!({"name": "a", "llm_provider": "anthropic", "llm_provider_config": {"model": null}})),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(model_of(&ts, id).await, claude);
    let (status, _) = json(
        ts.req(Method::PUT, &format!("/api/v1/assistants/{id}"), KEY_A)
            .json(&json!({"name": "a", "llm_provider": "openai"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(model_of(&ts, id).await, "gpt-4o-mini");
    ts.stop().await;
}
