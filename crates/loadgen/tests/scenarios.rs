//! The turn-taking corpus end to end (issue 12): every scenario of `fixtures/scenarios/` as one
//! call against the real engine in this process, through the provider fakes with the load
//! run's latency profile; fails unless every scenario's verdict is a pass.
//!
//! `SCENARIO_DIR` runs another directory; `SCENARIO_VERDICTS=path` writes the verdicts and the
//! heard timelines as JSON.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use switchboard_loadgen::api::Api;
use switchboard_loadgen::cli::{RunArgs, route_scripts};
use switchboard_loadgen::fakes::{Fakes, WELCOME};
use switchboard_loadgen::run::{LoadConfig, Progress, run_calls};
use switchboard_loadgen::scenarios::{self, Scenario};

use clap::Parser;

/// First number dialled; scenario k dials this + k.
const FIRST_NUMBER: &str = "+15550200000";

fn corpus_dir() -> PathBuf {
    std::env::var_os("SCENARIO_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/scenarios"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_of_the_corpus_passes() {
    let corpus: Vec<Scenario> = scenarios::load_dir(&corpus_dir()).expect("corpus loads");
    assert!(
        !corpus.is_empty(),
        "no scenarios in {}",
        corpus_dir().display()
    );
    // The load run's default latency profile (the same fakes `switchboard-loadgen scenarios`
    // starts).
    let defaults = switchboard_loadgen::cli::Cli::parse_from(["switchboard-loadgen"]).run;
    let latency = RunArgs::latency(&defaults);
    let scripts: Vec<_> = corpus.iter().map(|s| s.script.clone()).collect();
    let fakes = Fakes::start(latency, &scripts).await.expect("fakes start");
    let engine = common::start_engine().await;
    let http = switchboard_loadgen::cli::http_client().expect("client");
    let api = Api::new(&engine.base, common::KEY, http.clone());
    for k in 0..corpus.len() {
        let number = switchboard_loadgen::cli::nth_number(FIRST_NUMBER, k).expect("number");
        engine
            .twilio
            .add_number(common::TWILIO_SID, &number)
            .expect("account known");
    }
    let numbers = route_scripts(&api, None, &scripts, FIRST_NUMBER, None, |script| {
        let mut body = fakes.assistant_body(&script.name, WELCOME, Some(&script.name));
        if let Some(s) = corpus.iter().find(|s| s.script.name == script.name) {
            body["stt_settings"]["language"] = serde_json::json!(s.spec.language);
            if s.spec.speculative {
                body["stt_settings"]["speculative_config"] =
                    serde_json::json!({ "enable_speculative_llm": true });
            }
        }
        body
    })
    .await
    .expect("assistants routed");

    let cfg = LoadConfig {
        engine_base: engine.base.clone(),
        public_url: engine.base.clone(),
        voice_path: "/twilio/voice".into(),
        calls: corpus.len(),
        ramp: Duration::from_secs(2),
        duration: Duration::from_secs(90),
        scripts: scripts.iter().map(Arc::clone).collect(),
        twilio_auth_token: common::TOKEN.to_owned(),
        twilio_account_sid: Some(common::TWILIO_SID.to_owned()),
        to_number: FIRST_NUMBER.to_owned(),
        script_numbers: numbers,
        record_timeline: true,
        speech_detector: None,
        progress: false,
        engine_pid: None,
    };
    let reports = run_calls(&cfg, &http, Arc::new(Progress::default())).await;
    assert_eq!(reports.len(), corpus.len());
    let results: Vec<_> = corpus
        .iter()
        .zip(&reports)
        .map(|(s, r)| scenarios::judge(s, r))
        .collect();
    let table = scenarios::table(&results);
    eprintln!("{table}");
    if let Some(path) = std::env::var_os("SCENARIO_VERDICTS") {
        let out = scenarios::verdicts_json(&results, &reports);
        std::fs::write(path, serde_json::to_string_pretty(&out).expect("json")).expect("write");
    }
    engine.server.shutdown().await;
    assert!(
        scenarios::pass_rate(&results) >= 1.0,
        "not every scenario passed:\n{table}"
    );
}
