//! OpenTelemetry export against a collector (the `otel` feature, switched on by
//! `logging.otlp_endpoint`): a whole call through the fake caller and the provider fakes, with
//! the process's tracing exported over OTLP/HTTP to the testkit's fake collector, which decodes
//! what it receives. The call is one `call` span carrying its SID and id, and the call's log
//! lines, the providers' included, arrive as that span's events. Built and run only with `--features otel`
//! (`scripts/test.sh` does).

#![cfg(feature = "otel")]

mod common;
mod twilio_harness;

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_server::config::Settings;
use switchboard_testkit::otlp::{AttrValue, FakeCollector};
use twilio_harness::{Harness, OUR_NUMBER, Options};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_span_and_its_log_lines_reach_the_collector() {
    let collector = FakeCollector::start().await.expect("collector");
    // The subscriber is process-wide: this binary holds this one test.
    let mut logging = Settings::defaults().expect("defaults").logging;
    logging.otlp_endpoint = collector.base_url();
    logging.filter = "info,switchboard_providers=debug".to_owned();
    logging.service_name = "switchboard-otel-test".to_owned();
    switchboard_server::telemetry::init_tracing(&logging).expect("tracing with export");

    let h = Harness::start(Options::default()).await;
    h.assistant(
        &h.ts.key_a,
        h.record("front desk", json!({})),
        Some(OUR_NUMBER),
    )
    .await;
    let call_sid = h.short_call(5_000).await;
    let call = h.ended_call(&call_sid).await;

    // A span is exported once it closes: when the call's task and every task it spawned are
    // done, just after the call's record says it ended. Flush until it is there (at most 30 s).
    let ended = Instant::now();
    let mut spans = Vec::new();
    for _ in 0..300 {
        tokio::task::spawn_blocking(switchboard_server::telemetry::force_flush)
            .await
            .expect("flush");
        spans = collector.spans();
        if spans.iter().any(|s| s.name == "call") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "the call span arrived {:?} after the call ended",
        ended.elapsed()
    );
    let calls: Vec<_> = spans.iter().filter(|s| s.name == "call").collect();
    assert_eq!(
        calls.len(),
        1,
        "one span per call: {spans:#?}; answers {:?}",
        collector.answers()
    );
    let span = calls[0];
    assert_eq!(
        span.attributes.get("call_sid"),
        Some(&AttrValue::Str(call_sid.clone()))
    );
    assert_eq!(
        span.attributes.get("call_id"),
        Some(&AttrValue::Int(call.id))
    );
    assert_eq!(span.service_name.as_deref(), Some("switchboard-otel-test"));
    assert_eq!(span.trace_id.len(), 16);
    assert_eq!(span.span_id.len(), 8);
    // The call's log lines are its events, the providers' included (their sessions run on
    // tasks of their own, inside the call's span).
    let names: Vec<&str> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert!(
        names.contains(&"call started") && names.contains(&"call ended"),
        "{names:?}"
    );
    let from_providers = span.events.iter().any(|e| {
        matches!(e.attributes.get("target"),
            Some(AttrValue::Str(t)) if t.starts_with("switchboard_providers"))
    });
    assert!(from_providers, "{:#?}", span.events);
    tokio::task::spawn_blocking(switchboard_server::telemetry::flush)
        .await
        .expect("shutdown");
}
