//! What an operator sees of a whole call: every log line of the call (its providers' tasks
//! included) carries the call SID through the call's span, and `/metrics` afterwards serves the
//! call's series, among them every series the Grafana dashboard (`deploy/grafana/
//! switchboard.json`) queries.
//!
//! One test per binary: it installs the process's global log subscriber, writing into memory.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use switchboard_server::metrics::call::{self as call_metrics, CallTally, Stage};
use switchboard_store::CallStatus;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::openai::FakeLlmTurn;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallScript, FakeCall, Utterance, UtteranceKind};

use common::call_stack::CallServer;

const NUMBER: &str = "+15550100071";
const TAG: &str = "observability";
const TOKEN: &str = "metrics-token-observability-0123";
const LINE: &str = "What are your opening hours?";
const REPLY: &str = "We open at nine.";
const HANGUP_MS: u64 = 6_000;

/// Log output kept in memory, shared with the subscriber's writer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("info,switchboard_providers=debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");
    captured
}

/// Sample names of a Prometheus text exposition (`name{labels} value` or `name value`).
fn sample_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The value of the first sample of `name` whose labels contain every one of `labels`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every `switchboard_…` name in the dashboard's queries.
fn dashboard_names() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/switchboard.json"
    );
    let text = std::fs::read_to_string(path).expect("dashboard file");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut names = BTreeSet::new();
    let mut stack = vec![&dashboard];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    let mut rest = expr.as_str();
                    while let Some(at) = rest.find("switchboard_") {
                        let tail = &rest[at..];
                        let end = tail
                            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                            .unwrap_or(tail.len());
                        names.insert(tail[..end].to_owned());
                        rest = &tail[end..];
                    }
                }
                stack.extend(map.values());
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

async fn metrics_body(calls: &CallServer) -> String {
    let response = calls
        .http
        .get(format!("{}/metrics", calls.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_logged_under_its_sid_and_measured_for_the_dashboard() {
    let logs = capture_logs();
    let scripts = HashMap::from([(TAG.to_owned(), vec![LINE.to_owned()])]);
    let fakes = ProviderFakes::start(LatencyProfile::instant(), scripts)
        .await
        .expect("fakes");
    let calls = CallServer::start(&[NUMBER], |s| s.metrics.token = TOKEN.into()).await;
    let record = fakes.assistant_record("Opening hours", TAG, "Hello.");
    calls.assistant(&record, NUMBER).await;
    fakes.openai.push(FakeLlmTurn::text(REPLY));

    let script = CallScript::synthetic(
        TAG,
        vec![Utterance {
            text: LINE.to_owned(),
            start_ms: 1_500,
            end_ms: 2_700,
            kind: UtteranceKind::Turn,
        }],
        HANGUP_MS,
    );
    let mut cfg = calls.caller(NUMBER);
    cfg.max_duration = Duration::from_millis(HANGUP_MS + 10_000);
    let report = FakeCall::new(cfg, Arc::new(script)).run().await;
    assert!(report.errors.is_empty(), "caller: {:?}", report.errors);
    let call = calls.finished_call(&report.call_sid).await;
    assert_eq!(call.status, CallStatus::Completed, "{call:?}");

    // Logs: the provider tasks' lines (spawned by the providers crate) carry the call's SID.
    let sid = format!("call_sid={}", report.call_sid);
    let text = logs.text();
    let provider_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("switchboard_providers"))
        .collect();
    for wanted in ["STT session ended", "TTS session ended"] {
        assert!(
            provider_lines.iter().any(|l| l.contains(wanted)),
            "no {wanted:?} line:\n{text}"
        );
    }
    for line in &provider_lines {
        assert!(line.contains(&sid), "a provider line without {sid}: {line}");
    }
    let ended = text
        .lines()
        .find(|l| l.contains("call ended"))
        .expect("call ended line");
    assert!(ended.contains(&sid), "{ended}");
    assert!(ended.contains(&format!("call_id={}", call.id)), "{ended}");

    // Metrics of the call.
    let body = metrics_body(&calls).await;
    assert!(sample(&body, "switchboard_calls_started_total", &[]).unwrap_or(0.0) >= 1.0);
    assert!(
        sample(
            &body,
            "switchboard_calls_ended_total",
            &["status=\"completed\""]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{body}"
    );
    assert!(sample(&body, "switchboard_turn_latency_seconds_count", &[]).unwrap_or(0.0) >= 1.0);
    assert!(sample(&body, "switchboard_bot_frames_total", &[]).unwrap_or(0.0) > 0.0);
    assert!(
        sample(
            &body,
            "switchboard_provider_connect_seconds_count",
            &["stage=\"stt\"", "provider=\"deepgram\""]
        )
        .is_some(),
        "{body}"
    );
    assert!(
        !body.contains("organization_id"),
        "no organisation label unless enabled"
    );

    // Series only failures produce, recorded the way a call would, then the dashboard's names
    // must all be rendered.
    call_metrics::provider_error(
        Stage::Stt,
        &switchboard_providers::ProviderError::Connect {
            provider: "deepgram",
            message: "refused".into(),
        },
    );
    CallTally::new("deepgram", "elevenlabs", None).finish(&Default::default(), 1);
    switchboard_server::metrics::webhook_delivery("end-of-call-report", "failed");
    let body = metrics_body(&calls).await;
    let rendered = sample_names(&body);
    let wanted = dashboard_names();
    assert!(wanted.len() >= 10, "dashboard queries: {wanted:?}");
    let missing: Vec<&String> = wanted.difference(&rendered).collect();
    assert!(
        missing.is_empty(),
        "dashboard names /metrics does not render: {missing:?}\n{body}"
    );
}
