//! Attacks on the outbound-URL policy (issue 16, finding 2): a tenant must not make the engine
//! reach inside our network through any URL it sets. Without an allowlist, loopback, private,
//! link-local/metadata addresses and local names are refused when the assistant is saved (422
//! naming the field), and a name that resolves to loopback is refused when the engine
//! connects; with the address allowlisted the same webhook is delivered. Webhook logs keep the
//! reply body only when the operator turns it on.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_store::NewCall;

use crate::common::{TestServer, assert_error, json, settings_for};

/// URLs of the finding: loopback, metadata, private, local names, mapped and numeric forms.
const BAD_URLS: &[&str] = &[
    "http://127.0.0.1:8080/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://localhost:8080/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::1]:8080/hook",
    "http://2130706433/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00:ec2::254]/",
    "http://api.localhost/",
];

/// What the webhook receiver answers; it must not show up in logs unless asked for.
const REPLY: &str = "receiver-private-reply";

/// A server whose outbound allowlist is `allow` (empty: nothing private is reachable).
async fn server(allow: &str, log_response_body: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("switchboard.db"));
    settings.outbound.allow_hosts = allow.parse().expect("allowlist");
    settings.webhooks.log_response_body = log_response_body;
    settings.webhooks.initial_backoff_ms = 10;
    settings.webhooks.max_attempts = 3;
    (TestServer::start_with(settings, String::new()).await, dir)
}

/// A webhook receiver on 127.0.0.1 that counts requests and answers 200 with [`REPLY`].
async fn receiver() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                REPLY
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

/// Asserts a 422 whose `field` is `field` and whose message says "not allowed".
fn refused(status: u16, body: &Value, field: &str) {
    let error = assert_error(status, body, 422, "validation_failed");
    assert_eq!(error["field"], field, "{body}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("not allowed"), "{body}");
}

async fn create(ts: &TestServer, body: Value) -> (u16, Value) {
    json(
        ts.req(Method::POST, "/api/v1/assistants", &ts.key_a)
            .json(&body),
    )
    .await
}

async fn create_ok(ts: &TestServer, body: Value) -> i64 {
    let (status, created) = create(ts, body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_i64().expect("id")
}

#[tokio::test]
async fn bad_webhook_urls_are_refused_on_create_put_and_patch() {
    let (ts, _dir) = server("", false).await;
    let id = create_ok(&ts, json!({"name": "hooks"})).await;
    let path = format!("/api/v1/assistants/{id}");
    for url in BAD_URLS {
        let (status, body) = create(&ts, json!({"name": "x", "webhook_url": url})).await;
        refused(status, &body, "webhook_url");

        let (status, body) = json(
            ts.req(Method::PATCH, &path, &ts.key_a)
                .json(&json!({"webhook_url": url})),
        )
        .await;
        refused(status, &body, "webhook_url");

        let (status, body) = json(
            ts.req(Method::PUT, &path, &ts.key_a)
                .json(&json!({"name": "hooks", "webhook_url": url})),
        )
        .await;
        refused(status, &body, "webhook_url");
    }
    let (_, stored) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
    assert_eq!(stored["webhook_url"], Value::Null, "nothing was stored");
    let (_, count) = json(ts.req(Method::GET, "/api/v1/assistants/count", &ts.key_a)).await;
    assert_eq!(count["count"], 1, "no refused assistant was created");
}

#[tokio::test]
async fn custom_tool_and_provider_urls_are_refused_at_save_time() {
    let (ts, _dir) = server("", false).await;
    let cases = [
        (
            json!({"tools_settings": {"custom_tools": [
                {"name": "ok", "url": "https://tools.example.com/ok"},
                {"name": "peek", "url": "http://169.254.169.254/latest/meta-data/"}
            ]}}),
            "tools_settings.custom_tools[1].url",
        ),
        (
            json!({"llm_provider_config": {"base_url": "http://127.0.0.1:11434/v1"}}),
            "llm_provider_config.base_url",
        ),
        (
            json!({"llm_fallback_providers": {"enabled": true, "fallbacks": [
                {"provider": "anthropic", "base_url": "http://10.0.0.1/v1"}
            ]}}),
            "llm_fallback_providers.fallbacks[0].base_url",
        ),
        (
            json!({"stt_settings": {"provider_config": {"base_url": "ws://localhost:9000"}}}),
            "stt_settings.provider_config.base_url",
        ),
        (
            json!({"tts_settings": {"provider_config": {"base_url": "wss://[::ffff:10.1.2.3]"}}}),
            "tts_settings.provider_config.base_url",
        ),
        (
            json!({"tts_settings": {"background_sound": {"sound_url": "http://192.168.0.5/a.mp3"}}}),
            "tts_settings.background_sound.sound_url",
        ),
    ];
    let id = create_ok(&ts, json!({"name": "providers"})).await;
    let path = format!("/api/v1/assistants/{id}");
    for (extra, field) in cases {
        let mut body = json!({"name": "x"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, reply) = create(&ts, body).await;
        refused(status, &reply, field);
        let (status, reply) = json(ts.req(Method::PATCH, &path, &ts.key_a).json(&extra)).await;
        refused(status, &reply, field);
    }
    // Public URLs are fine.
    create_ok(
        &ts,
        json!({
            "name": "public",
            "webhook_url": "https://hooks.example.com/in",
            "llm_provider_config": {"base_url": "https://api.openai.com/v1"},
            "tools_settings": {"custom_tools": [{"name": "t", "url": "https://tools.example.com/t"}]}
        }),
    )
    .await;
}

/// Creates an assistant, then stores `webhook_url` in its record directly (as a record saved
/// before the policy existed, or whose host name was re-pointed since), creates a call for it
/// and sends its `status-update`. Returns the call id.
async fn deliver_status_update(ts: &TestServer, webhook_url: &str) -> i64 {
    let id = create_ok(ts, json!({"name": "hooked"})).await;
    let state = ts.server().state();
    let org = state.default_org_id().await.expect("org");
    let row = state
        .store
        .get_assistant(org, id)
        .await
        .expect("read")
        .expect("assistant");
    let mut config = row.config.clone();
    config["webhook_url"] = json!(webhook_url);
    state
        .store
        .update_assistant(org, id, &row.name, row.is_active, &config)
        .await
        .expect("write")
        .expect("updated");
    let call = state
        .store
        .create_call(&NewCall {
            assistant_id: Some(id),
            ..common::inbound_call(
                org,
                format!("CA{:032x}", rand_id()),
                "+15550001111",
                "+15550002222",
            )
        })
        .await
        .expect("call");
    switchboard_server::webhooks::status_update(state, &call).await;
    call.id
}

fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(1)
}

/// The webhook log of call `id` once every delivery task has finished.
async fn settled_logs(ts: &TestServer, call_id: i64) -> Vec<Value> {
    let state = ts.server().state();
    let path = format!("/api/v1/calls/{call_id}/webhook-logs");
    for _ in 0..200 {
        let (status, logs) = json(ts.req(Method::GET, &path, &ts.key_a)).await;
        assert_eq!(status, 200, "{logs}");
        let logs = logs.as_array().cloned().unwrap_or_default();
        if !logs.is_empty() && state.tasks.is_empty() {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no settled webhook log for call {call_id}");
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_connect_time_and_delivered_once_allowlisted() {
    let (port, hits) = receiver().await;
    let url = format!("http://localhost:{port}/hook");

    let (strict, _dir) = server("", false).await;
    let call_id = deliver_status_update(&strict, &url).await;
    let logs = settled_logs(&strict, call_id).await;
    assert_eq!(logs.len(), 1, "a refusal is not retried: {logs:?}");
    let log = &logs[0];
    assert_eq!(log["success"], false, "{log}");
    assert_eq!(log["response_status_code"], Value::Null, "{log}");
    let error = log["error_message"].as_str().unwrap_or_default();
    assert!(
        error.contains("outbound policy") && error.contains("not allowed"),
        "{log}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "nothing reached the listener"
    );

    let (allowing, _dir2) = server("127.0.0.1", false).await;
    let call_id = deliver_status_update(&allowing, &url).await;
    let logs = settled_logs(&allowing, call_id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["success"], true, "{logs:?}");
    assert_eq!(logs[0]["response_status_code"], 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "delivered once");
}

#[tokio::test]
async fn a_literal_loopback_webhook_is_saved_and_delivered_only_when_allowlisted() {
    let (port, hits) = receiver().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (strict, _dir) = server("", false).await;
    let (status, body) = create(&strict, json!({"name": "x", "webhook_url": url})).await;
    refused(status, &body, "webhook_url");
    // Stored anyway (as before this policy): refused when the engine connects.
    let call_id = deliver_status_update(&strict, &url).await;
    let logs = settled_logs(&strict, call_id).await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(
        logs[0]["error_message"]
            .as_str()
            .is_some_and(|e| e.contains("127.0.0.1") && e.contains("not allowed")),
        "{logs:?}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let (allowing, _dir2) = server("127.0.0.1", false).await;
    create_ok(&allowing, json!({"name": "x", "webhook_url": url})).await;
}

#[tokio::test]
async fn the_webhook_log_keeps_the_reply_body_only_when_turned_on() {
    let (port, _hits) = receiver().await;
    let url = format!("http://127.0.0.1:{port}/hook");
    for (log_bodies, expected) in [(false, Value::Null), (true, json!(REPLY))] {
        let (ts, _dir) = server("127.0.0.1", log_bodies).await;
        let call_id = deliver_status_update(&ts, &url).await;
        let logs = settled_logs(&ts, call_id).await;
        assert_eq!(logs.len(), 1, "{logs:?}");
        let log = &logs[0];
        assert_eq!(log["success"], true, "{log}");
        assert_eq!(log["response_status_code"], 200, "{log}");
        assert!(log["response_time_ms"].is_i64(), "{log}");
        assert_eq!(log["retry_count"], 0, "{log}");
        assert_eq!(
            log["response_body"], expected,
            "log_response_body={log_bodies}"
        );
    }
}
