//! The harness against the real engine in-process, at small N: a few short synthetic calls
//! through the provider fakes. Checks that the report accounts for every turn, that marks were
//! echoed, that nothing failed and that the numbers are consistent with each other.

use std::sync::Arc;
use std::time::Duration;

use switchboard_loadgen::api::Api;
use switchboard_loadgen::fakes::Fakes;
use switchboard_loadgen::procfs::Sampler;
use switchboard_loadgen::run::{LoadConfig, Progress, build_report, run_calls};
use switchboard_testkit::twilio::CallScript;

mod common;

use common::{KEY, TOKEN, quick};

const NUMBER: &str = "+15550100002";
const CALLS: usize = 3;

/// Two caller turns; the call lasts long enough for both replies to start.
fn script() -> CallScript {
    common::booking_script("short_two_turns", &[(600, 1800), (5200, 6200)], 9000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_run_accounts_for_every_turn() {
    let script = Arc::new(script());
    let fakes = Fakes::start(quick(), std::slice::from_ref(&script))
        .await
        .expect("fakes start");
    let engine = common::start_engine().await;
    engine
        .twilio
        .add_number(common::TWILIO_SID, NUMBER)
        .expect("account known");
    let (server, base) = (&engine.server, engine.base.clone());
    let http = switchboard_loadgen::cli::http_client().expect("client");
    let api = Api::new(&base, KEY, http.clone());
    let id = api
        .create_assistant(&fakes.assistant_body("loadgen-test", "Hi there.", Some(&script.name)))
        .await
        .expect("assistant created");
    api.assign_number(id, NUMBER)
        .await
        .expect("number assigned");

    // The engine runs in this process: its CPU and memory are ours.
    let sampler = Sampler::start(std::process::id(), Duration::from_millis(100)).expect("sampler");
    let cfg = LoadConfig {
        engine_base: base.clone(),
        public_url: base.clone(),
        voice_path: "/twilio/voice".into(),
        calls: CALLS,
        ramp: Duration::from_millis(600),
        duration: Duration::from_secs(30),
        scripts: vec![script],
        twilio_auth_token: TOKEN.to_owned(),
        twilio_account_sid: Some(common::TWILIO_SID.to_owned()),
        to_number: NUMBER.to_owned(),
        script_numbers: Vec::new(),
        record_timeline: false,
        speech_detector: None,
        progress: false,
        engine_pid: None,
    };
    let progress = Arc::new(Progress::default());
    let reports = run_calls(&cfg, &http, progress.clone()).await;
    let (usage, sampling_error) = sampler.finish(reports.len() as u64);
    assert!(sampling_error.is_none(), "{sampling_error:?}");
    assert_eq!(reports.len(), CALLS);

    // Per-turn metrics, once the recorder has written them: over the API when the engine serves
    // them, else from the store.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = &server.state().store;
    let mut metrics = Vec::new();
    for r in &reports {
        let turns = match api.call_turns(&r.call_sid).await {
            Ok(t) => t,
            Err(_) => switchboard_loadgen::api::store_turns(store, &r.call_sid)
                .await
                .expect("turn metrics in the store"),
        };
        metrics.push(Ok(turns));
    }
    if std::env::var("LOADGEN_TEST_DEBUG").is_ok() {
        for (r, m) in reports.iter().zip(&metrics) {
            eprintln!(
                "{:?}\n{:#?}",
                r.segments
                    .iter()
                    .map(|s| s.first_received_ms)
                    .collect::<Vec<_>>(),
                m
            );
        }
    }
    let (report, extras) = build_report(&reports, Some(&metrics), usage);
    let table = switchboard_loadgen::report::summary_table(&report, &extras, 0.0);
    eprintln!("{table}");

    assert!(
        report.errors.is_empty(),
        "errors: {:#?}\n{table}",
        report.errors
    );
    assert_eq!(report.calls.started, CALLS as u64);
    assert_eq!(report.calls.completed, CALLS as u64, "{table}");
    assert_eq!(report.calls.failed, 0);
    // Every turn accounted: two per call, each answered, each with a latency.
    assert_eq!(report.turns, 2 * CALLS as u64, "{table}");
    assert_eq!(extras.answered, report.turns, "{table}");
    assert_eq!(
        progress.turns.load(std::sync::atomic::Ordering::Relaxed),
        report.turns
    );
    assert_eq!(
        extras.overhead_samples, report.turns,
        "every answered turn has engine metrics\n{table}"
    );
    // Marks: the engine marks its replies and the caller echoed the ones that played.
    assert!(extras.marks_received > 0, "{table}");
    assert!(
        extras.marks_echoed > 0 && extras.marks_echoed <= extras.marks_received,
        "{table}"
    );
    for r in &reports {
        assert!(r.marks_echoed >= 1, "call {} echoed no mark", r.call_sid);
    }
    // Percentiles are ordered and the overhead is a part of the latency.
    let t = report.turn_latency_ms;
    let o = report.engine_overhead_ms;
    for p in [t, o] {
        let (p50, p95, p99, max) = (
            p.p50.expect("p50"),
            p.p95.expect("p95"),
            p.p99.expect("p99"),
            p.max.expect("max"),
        );
        assert!(
            0.0 <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
            "{p:?}"
        );
    }
    assert!(o.max <= t.max, "overhead {o:?} exceeds latency {t:?}");
    // Interruption figures, when the scripts had any: ordered, and (per barge-in, checked by the
    // analysis as `interruption_inconsistent` errors, of which there are none) the playback went
    // silent no later than the `clear`.
    for p in [
        report.interruption_reaction_ms,
        report.interruption_clear_ms,
        report.backchannel_gap_ms,
    ] {
        if let (Some(p50), Some(p95), Some(p99), Some(max)) = (p.p50, p.p95, p.p99, p.max) {
            assert!(
                0.0 <= p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
                "{p:?}\n{table}"
            );
        }
    }
    // The turn latency includes at least the fakes' fixed delays.
    let fixed =
        (quick().stt_final_delay_ms + quick().llm_ttft_ms + quick().tts_first_byte_ms) as f64;
    assert!(
        t.p50.expect("p50") >= fixed,
        "latency {t:?} below the providers' {fixed} ms"
    );
    let f = report.frame_lateness_ms;
    assert!(f.p50.is_some(), "no bot frame measured");
    assert!(f.p50 <= f.p99 && f.p99 <= f.max);
    assert!(extras.frames > 0);
    // Engine figures were sampled.
    assert!(report.engine.cpu_seconds.is_some() && report.engine.rss_peak_mb.is_some());

    engine.server.shutdown().await;
}
