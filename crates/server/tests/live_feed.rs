//! The live-calls feed (`GET /api/v1/calls/live`) end to end: a recorded call replayed against
//! the provider fakes is seen by its organisation's viewer from `call_started` through its
//! transcript and turns to `call_ended`, in order; another organisation's viewer sees none of
//! it; a viewer that never reads loses events (and is told) while the call runs normally;
//! unauthenticated viewers and viewers beyond the cap are refused; a barge-in comes before the
//! turn it cut off, and a caller's backchannel over the bot is marked as one.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt as _;
use serde_json::Value;
use switchboard_server::live_feed::{LiveEvent, LiveMoment};
use switchboard_store::CallStatus;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallReport, CallScript, FakeCall};
use tower::ServiceExt as _;

use common::KEY_A;
use common::call_stack::{CALLER, CallServer};

const NUMBER: &str = "+15550100002";
const WELCOME: &str = "Hello, thanks for calling Harbor Dental. How can I help you today?";
/// Bound on waiting for one event; only reached when the feed is broken.
const EVENT_WAIT: Duration = Duration::from_secs(30);

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

fn fixture(name: &str) -> CallScript {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
    CallScript::load(&dir, name).expect("fixture")
}

fn script() -> CallScript {
    fixture("booking_3_turns")
}

/// Server (with `adjust` applied to its settings) + fakes + an assistant on [`NUMBER`].
async fn start(
    script: &CallScript,
    adjust: impl FnOnce(&mut switchboard_server::config::Settings),
) -> (CallServer, ProviderFakes) {
    start_with(script, WELCOME, &[], adjust).await
}

/// As [`start`], with this welcome and the LLM answering `replies` in order.
async fn start_with(
    script: &CallScript,
    welcome: &str,
    replies: &[&str],
    adjust: impl FnOnce(&mut switchboard_server::config::Settings),
) -> (CallServer, ProviderFakes) {
    let fakes = ProviderFakes::start_for_calls(quick_latency(), &[script])
        .await
        .expect("fakes start");
    let calls = CallServer::start(&[NUMBER], adjust).await;
    for r in replies {
        fakes.openai.push(FakeLlmTurn::Text((*r).to_owned()));
    }
    let record = fakes.assistant_record("Harbor Dental", &script.name, welcome);
    calls.assistant(&record, NUMBER).await;
    (calls, fakes)
}

async fn call(calls: &CallServer, script: CallScript) -> CallReport {
    FakeCall::new(calls.caller(NUMBER), Arc::new(script))
        .run()
        .await
}

/// Reads server-sent events from a byte stream: `(event name, JSON data)`, comments skipped.
struct SseReader<S> {
    bytes: S,
    buf: String,
}

impl<S, E> SseReader<S>
where
    S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
    E: std::fmt::Debug,
{
    fn new(bytes: S) -> Self {
        SseReader {
            bytes,
            buf: String::new(),
        }
    }

    /// The next event; panics when the stream ends or none comes within [`EVENT_WAIT`].
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return (name, data);
            }
            let chunk = tokio::time::timeout(EVENT_WAIT, self.bytes.next())
                .await
                .expect("an event within the wait")
                .expect("the stream goes on")
                .expect("a chunk");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
}

/// Opens the feed over HTTP with `key`; panics unless it answers 200 with an event stream.
async fn connect(
    calls: &CallServer,
    key: &str,
) -> SseReader<impl futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin> {
    let res = calls
        .http
        .get(format!("{}/api/v1/calls/live", calls.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let ctype = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    let bytes = futures::stream::unfold(res, |mut res| async move {
        match res.chunk().await {
            Ok(Some(b)) => Some((Ok(b), res)),
            Ok(None) => None,
            Err(e) => Some((Err(e), res)),
        }
    });
    SseReader::new(Box::pin(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_its_organisations_call_from_start_to_end_and_no_other() {
    let script = script();
    let (calls, fakes) = start(&script, |_| {}).await;
    let state = calls.server.state().clone();
    let org_b = state
        .store
        .ensure_organization("org-b")
        .await
        .expect("org b");
    let (_, key_b) = state
        .store
        .create_api_key(org_b.id, Some("test"))
        .await
        .expect("key b");

    // No key, or a wrong one: refused like every API route.
    let url = format!("{}/api/v1/calls/live", calls.base);
    let anonymous = calls.http.get(&url).send().await.expect("request");
    assert_eq!(anonymous.status(), 401);
    let wrong = calls
        .http
        .get(&url)
        .bearer_auth("sb_not_a_key_0000000000000")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);

    // In the OpenAPI document, as an event stream.
    let doc: Value = calls
        .http
        .get(format!("{}/api/openapi.json", calls.base))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let live = &doc["paths"]["/api/v1/calls/live"]["get"];
    assert!(
        live["responses"]["200"]["content"]
            .get("text/event-stream")
            .is_some(),
        "{live}"
    );
    assert!(live["responses"].get("429").is_some(), "{live}");

    let mut a = connect(&calls, KEY_A).await;
    let mut b = connect(&calls, &key_b).await;
    for viewer in [&mut a, &mut b] {
        let (name, data) = viewer.next().await;
        assert_eq!(name, "snapshot");
        assert_eq!(data["calls"], serde_json::json!([]));
    }

    let report = call(&calls, script.clone()).await;
    assert!(report.errors.is_empty(), "caller: {:?}", report.errors);
    let stored = calls.recorded_call(&report.call_sid).await;
    assert_eq!(stored.status, CallStatus::Completed);

    let mut seen = Vec::new();
    loop {
        let (name, data) = a.next().await;
        assert_ne!(name, "lagged", "a reading viewer lost events: {data}");
        assert_eq!(data["call_id"], stored.id, "{name}: {data}");
        let end = name == "call_ended";
        seen.push((name, data));
        if end {
            break;
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    let first = |n: &str| names.iter().position(|x| *x == n);
    let started = &seen[0].1;
    assert_eq!(names[0], "call_started", "{names:?}");
    assert_eq!(started["call_sid"], report.call_sid);
    assert_eq!(started["from"], CALLER);
    assert_eq!(started["to"], NUMBER);
    assert!(started["assistant_id"].as_i64().is_some_and(|id| id > 0));
    assert!(
        started["started_at"]
            .as_str()
            .is_some_and(|s| s.contains('T'))
    );

    let finals = |role: &str| {
        seen.iter()
            .filter(|(n, d)| n == "transcript" && d["role"] == role && d["is_final"] == true)
            .map(|(_, d)| d["text"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    let bot = finals("assistant");
    let user = finals("user");
    assert!(
        bot.iter().any(|t| t.contains("Harbor Dental")),
        "welcome: {bot:?}"
    );
    for u in &script.utterances {
        let words: Vec<&str> = u.text.split_whitespace().take(3).collect();
        let words = words.join(" ");
        assert!(user.iter().any(|t| t.contains(&words)), "{words}: {user:?}");
    }
    let turns: Vec<&Value> = seen
        .iter()
        .filter(|(n, _)| n == "turn")
        .map(|(_, d)| d)
        .collect();
    assert!(turns.len() >= script.utterances.len(), "turns: {turns:?}");
    for t in &turns {
        for field in ["turn_index", "llm_request_ms", "interrupted"] {
            assert!(t.get(field).is_some(), "{field} missing: {t}");
        }
    }
    assert!(
        turns
            .iter()
            .any(|t| t["first_audio_sent_ms"].as_u64().is_some()
                && t["llm_first_token_ms"].as_u64().is_some()
                && t["user_speech_end_ms"].as_u64().is_some()),
        "no answered turn with timings: {turns:?}"
    );
    let (Some(transcript), Some(turn), Some(ended)) =
        (first("transcript"), first("turn"), first("call_ended"))
    else {
        panic!("missing events: {names:?}");
    };
    assert!(
        0 < transcript && transcript < turn && turn < ended,
        "{names:?}"
    );
    assert_eq!(ended, names.len() - 1);
    assert_eq!(seen[ended].1["status"], "completed");
    assert_eq!(
        seen[ended].1["ended_reason"],
        stored
            .ended_reason
            .map(|r| r.as_str().to_owned())
            .expect("reason")
    );

    // Org B's viewer got none of it: an event published to org B after the call is the first
    // thing it reads (the call published everything it did before `call_ended`).
    state.live.publish_with(org_b.id, || {
        LiveEvent::BargeIn(LiveMoment {
            call_id: -1,
            at_ms: 0,
        })
    });
    let (name, data) = b.next().await;
    assert_eq!(
        (name.as_str(), &data["call_id"]),
        ("barge_in", &Value::from(-1))
    );

    // A viewer connecting now sees an empty snapshot: the call is no longer live.
    let mut late = connect(&calls, KEY_A).await;
    assert_eq!(late.next().await.1["calls"], serde_json::json!([]));

    drop(fakes);
    drop((a, b, late));
    calls.server.shutdown().await;
}

/// Opens the feed in process and never polls the body: a viewer that does not read at all.
async fn open_unread(router: &axum::Router, key: &str) -> axum::http::Response<Body> {
    let req = Request::get("/api/v1/calls/live")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .expect("request");
    router.clone().oneshot(req).await.expect("infallible")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_loses_events_and_the_call_goes_on() {
    let script = script();
    let (calls, fakes) = start(&script, |s| {
        s.calls.live_buffer_events = 2;
        s.calls.live_viewers_per_org = 2;
    })
    .await;
    let router = switchboard_server::routes::router(calls.server.state().clone());

    let stalled = open_unread(&router, KEY_A).await;
    assert_eq!(stalled.status(), StatusCode::OK);
    // The cap: a second viewer is let in, a third is refused until one leaves.
    let second = open_unread(&router, KEY_A).await;
    assert_eq!(second.status(), StatusCode::OK);
    let third = open_unread(&router, KEY_A).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(third.headers().contains_key(header::RETRY_AFTER));
    drop(second);
    assert_eq!(
        calls
            .server
            .state()
            .live
            .viewers_of(calls.server.state().default_org_id().await.expect("org")),
        1
    );

    let report = call(&calls, script.clone()).await;
    assert!(report.errors.is_empty(), "caller: {:?}", report.errors);
    let stored = calls.recorded_call(&report.call_sid).await;
    assert_eq!(stored.status, CallStatus::Completed, "{stored:?}");

    // Now it reads: the snapshot it was sent at once, then how much it lost, then the last
    // events the channel still held, ending with the call's end.
    let mut viewer = SseReader::new(stalled.into_body().into_data_stream());
    assert_eq!(viewer.next().await.0, "snapshot");
    let (name, data) = viewer.next().await;
    assert_eq!(name, "lagged", "{data}");
    assert!(data["missed"].as_u64().is_some_and(|n| n > 0), "{data}");
    let mut rest = Vec::new();
    loop {
        let (name, data) = viewer.next().await;
        let end = name == "call_ended";
        rest.push(name);
        if end {
            assert_eq!(data["call_id"], stored.id);
            break;
        }
    }
    assert!(rest.len() <= 2, "more than the channel holds: {rest:?}");

    drop(fakes);
    drop(viewer);
    calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_is_marked_on_the_feed_with_the_interrupted_turn() {
    let script = fixture("barge_in");
    let (calls, fakes) = start_with(
        &script,
        "Hi, Harbor Dental.",
        &[
            "We are open Monday to Friday from eight in the morning until six in the evening, \
             and on Saturdays from nine until one, except on public holidays when we are closed.",
            "Yes, we are open on Sunday mornings from nine until noon.",
            "You're welcome, goodbye!",
        ],
        |_| {},
    )
    .await;
    let mut viewer = connect(&calls, KEY_A).await;
    assert_eq!(viewer.next().await.0, "snapshot");
    let report = call(&calls, script.clone()).await;
    assert!(report.errors.is_empty(), "caller: {:?}", report.errors);

    let mut seen = Vec::new();
    loop {
        let (name, data) = viewer.next().await;
        let end = name == "call_ended";
        seen.push((name, data));
        if end {
            break;
        }
    }
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    let barge = names
        .iter()
        .position(|n| *n == "barge_in")
        .unwrap_or_else(|| panic!("no barge_in: {names:?}"));
    assert!(seen[barge].1["at_ms"].as_u64().is_some_and(|ms| ms > 0));
    // The reply it cut off is recorded as an interrupted turn (in the same action batch), which
    // the feed shows after the barge-in it belongs to, never before.
    let interrupted = seen
        .iter()
        .position(|(n, d)| n == "turn" && d["interrupted"] == true)
        .unwrap_or_else(|| panic!("no interrupted turn: {seen:?}"));
    assert!(
        barge < interrupted,
        "the interrupted turn preceded its barge_in: {names:?}"
    );
    drop(fakes);
    drop(viewer);
    calls.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_backchannel_over_the_bot_is_marked_on_the_feed() {
    let script = fixture("backchannel");
    let (calls, fakes) = start_with(
        &script,
        "Hi, Harbor Dental.",
        &[
            "Please bring a photo ID, your insurance card, a list of the medicines you take, and \
             any dental records or x-rays from your previous dentist, if you have them.",
            "You're welcome. See you soon, goodbye!",
        ],
        |_| {},
    )
    .await;
    let mut viewer = connect(&calls, KEY_A).await;
    assert_eq!(viewer.next().await.0, "snapshot");
    let report = call(&calls, script.clone()).await;
    assert!(report.errors.is_empty(), "caller: {:?}", report.errors);

    let mut seen = Vec::new();
    loop {
        let (name, data) = viewer.next().await;
        let end = name == "call_ended";
        seen.push((name, data));
        if end {
            break;
        }
    }
    let user_finals: Vec<&Value> = seen
        .iter()
        .filter(|(n, d)| n == "transcript" && d["role"] == "user" && d["is_final"] == true)
        .map(|(_, d)| d)
        .collect();
    // "uh-huh" said over the long answer: a final caller line marked as a backchannel.
    let cue = user_finals
        .iter()
        .find(|d| d["text"] == "uh-huh")
        .unwrap_or_else(|| panic!("no uh-huh line: {user_finals:?}"));
    assert_eq!(cue["backchannel"], true, "{cue}");
    // The caller's real turns are not.
    for words in ["What do I need", "Okay, got it"] {
        let turn = user_finals
            .iter()
            .find(|d| d["text"].as_str().is_some_and(|t| t.contains(words)))
            .unwrap_or_else(|| panic!("no line with {words:?}: {user_finals:?}"));
        assert_eq!(turn["backchannel"], false, "{turn}");
    }
    // Partial lines and the bot's lines carry the field, always false.
    assert!(
        seen.iter()
            .filter(
                |(n, d)| n == "transcript" && (d["is_final"] == false || d["role"] == "assistant")
            )
            .all(|(_, d)| d["backchannel"] == false),
        "{seen:?}"
    );
    // It did not cut the bot off.
    assert!(
        !seen.iter().any(|(n, _)| n == "barge_in"),
        "a backchannel was taken for a barge-in: {seen:?}"
    );
    drop(fakes);
    drop(viewer);
    calls.server.shutdown().await;
}
