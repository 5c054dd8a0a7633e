//! End to end: the server in-process, the provider fakes, and the fake Twilio caller replaying a
//! recorded call. The caller must hear the welcome, each utterance must be answered, transcripts
//! and per-turn metrics must be stored, and the call must end and be recorded correctly — also
//! when the caller hangs up in the middle of an answer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_store::CallRow;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallReport, CallScript, FakeCall, FakeCallConfig};

const KEY: &str = "sb_live_call_test_key_0123456789";
const TWILIO_TOKEN: &str = "twilio-live-call-test-token";
const NUMBER: &str = "+15550100002";
const WELCOME: &str = "Hello, thanks for calling Harbor Dental. How can I help you today?";

struct Stack {
    server: Server,
    fakes: ProviderFakes,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls")
}

fn quick_latency() -> LatencyProfile {
    LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 60,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 40,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    }
}

async fn start(script: &CallScript) -> Stack {
    let texts: Vec<String> = script
        .utterances
        .iter()
        .filter(|u| !u.text.is_empty())
        .map(|u| u.text.clone())
        .collect();
    let fakes = ProviderFakes::start(
        quick_latency(),
        HashMap::from([(script.name.clone(), texts)]),
    )
    .await
    .expect("fakes start");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.database.url = format!("sqlite://{}", dir.path().join("sb.db").display());
    settings.server.rate_limit_per_s = 0;
    settings.server.drain_timeout_s = 5;
    settings.twilio.auth_token = Some(TWILIO_TOKEN.to_owned());
    settings.providers.keys_from_env = false;
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
    let record = fakes.assistant_record("Harbor Dental", &script.name, WELCOME);
    let created: Value = http
        .post(format!("{base}/api/v1/assistants"))
        .bearer_auth(KEY)
        .json(&record)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_i64().expect("assistant id");
    let res = http
        .post(format!(
            "{base}/api/v1/assistants/{id}/phone-numbers/assign-by-number"
        ))
        .bearer_auth(KEY)
        .json(&serde_json::json!({"phone_number": NUMBER}))
        .send()
        .await
        .expect("assign");
    assert!(res.status().is_success(), "assign: {}", res.status());
    Stack {
        server,
        fakes,
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
    cfg.max_duration = Duration::from_secs(60);
    FakeCall::new(cfg, Arc::new(script)).run().await
}

/// Waits until the engine has finalised the call record (the runtime writes it after the
/// socket closes).
async fn finished_call(stack: &Stack, call_sid: &str) -> CallRow {
    let store = &stack.server.state().store;
    for _ in 0..100 {
        if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await {
            if call.ended_reason.is_some() {
                return call;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {call_sid} was never finalised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_answered_turn_after_turn() {
    let script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    let first_utterance_ms = script.utterances[0].start_ms as f64;
    let stack = start(&script).await;
    let report = call(&stack, script.clone()).await;

    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    assert!(!report.chunks.is_empty(), "the caller heard nothing at all");
    // The welcome is heard before the caller speaks.
    assert!(
        report
            .chunks
            .iter()
            .any(|c| c.received_ms < first_utterance_ms),
        "no bot audio before the caller's first utterance"
    );
    // Every utterance gets an answer: some bot audio starts after it ends.
    for u in &script.utterances {
        assert!(
            report
                .chunks
                .iter()
                .any(|c| c.received_ms > u.end_ms as f64),
            "no answer after utterance ending at {} ms",
            u.end_ms
        );
    }
    assert!(report.marks_echoed > 0, "no mark was echoed");

    let call = finished_call(&stack, &report.call_sid).await;
    assert_eq!(call.status, "completed", "call: {call:?}");
    let store = &stack.server.state().store;
    // The recorder writes off the call path: give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = store.list_transcripts(call.id).await.expect("transcripts");
    let user: Vec<&str> = lines
        .iter()
        .filter(|t| t.role == "user")
        .map(|t| t.content.as_str())
        .collect();
    let bot: Vec<&str> = lines
        .iter()
        .filter(|t| t.role == "assistant")
        .map(|t| t.content.as_str())
        .collect();
    assert!(
        bot.iter().any(|b| b.contains("Harbor Dental")),
        "welcome not in transcript: {bot:?}"
    );
    for u in &script.utterances {
        let first_words: String = u
            .text
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            user.iter().any(|t| t.contains(&first_words)),
            "caller line {:?} not transcribed: {user:?}",
            u.text
        );
    }
    assert!(
        bot.len() > script.utterances.len(),
        "not every turn was answered: {bot:?}"
    );

    let turns = store.list_turn_metrics(call.id).await.expect("metrics");
    let answered = turns
        .iter()
        .filter(|t| t.first_audio_sent_ms.is_some() && t.llm_first_token_ms.is_some())
        .count();
    assert!(
        answered >= script.utterances.len(),
        "turns without timings: {turns:#?}"
    );
    assert!(
        turns.iter().all(|t| t
            .llm_provider
            .as_deref()
            .is_some_and(|p| p.contains("openai"))),
        "provider not recorded per turn: {turns:#?}"
    );
    drop(stack.fakes);
    stack.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hanging_up_mid_answer_ends_the_call_cleanly() {
    let mut script = CallScript::load(&fixtures_dir(), "booking_3_turns").expect("fixture");
    // Hang up 1.2 s after the first utterance ends: the answer is being played.
    let cut = script.utterances[0].end_ms + 1_200;
    script.hangup_at_ms = Some(cut);
    script.utterances.truncate(1);
    let stack = start(&script).await;
    let report = call(&stack, script.clone()).await;
    assert!(
        report.errors.is_empty(),
        "caller saw errors: {:?}",
        report.errors
    );
    let call = finished_call(&stack, &report.call_sid).await;
    assert_eq!(call.status, "completed", "call: {call:?}");
    assert!(
        call.ended_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("caller_hangup")),
        "ended_reason: {call:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = stack
        .server
        .state()
        .store
        .list_transcripts(call.id)
        .await
        .expect("transcripts");
    assert!(
        lines
            .iter()
            .any(|t| t.role == "user" && t.content.contains("appointment")),
        "the caller's words were lost: {lines:#?}"
    );
    drop(stack.fakes);
    stack.server.shutdown().await;
}
