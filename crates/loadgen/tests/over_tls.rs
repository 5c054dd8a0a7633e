//! The provider fakes over TLS (`--tls`) against the real engine in this process: with the
//! throwaway CA in `[tls] extra_ca_file` every turn is answered through https (LLM) and wss
//! (STT, TTS) with certificates verified; without it the engine refuses the fakes' certificates
//! and no turn is answered. Also: the setting's file is read and checked at load time.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_loadgen::api::Api;
use switchboard_loadgen::fakes::Fakes;
use switchboard_loadgen::report::{Extras, Report};
use switchboard_loadgen::run::{LoadConfig, Progress, build_report, run_calls};
use switchboard_server::config::{EnvSource, Settings, SettingsError};
use switchboard_testkit::twilio::CallScript;

use common::{KEY, TOKEN, quick};

const NUMBER: &str = "+15550100002";

fn script() -> CallScript {
    common::booking_script("tls_one_turn", &[(600, 1800)], 6000)
}

/// One call through `fakes` against an engine that trusts `extra_ca_file`.
async fn one_call(fakes: &Fakes, script: &Arc<CallScript>, ca: Option<String>) -> (Report, Extras) {
    let engine = common::start_engine_with(|s| {
        s.tls.extra_ca_file = ca;
        s.tls.load_roots().expect("CA file loads");
    })
    .await;
    engine
        .twilio
        .add_number(common::TWILIO_SID, NUMBER)
        .expect("account known");
    let http = switchboard_loadgen::cli::http_client().expect("client");
    let api = Api::new(&engine.base, KEY, http.clone());
    let id = api
        .create_assistant(&fakes.assistant_body("tls", "Hi there.", Some(&script.name)))
        .await
        .expect("assistant created");
    api.assign_number(id, NUMBER)
        .await
        .expect("number assigned");
    let cfg = LoadConfig {
        engine_base: engine.base.clone(),
        public_url: engine.base.clone(),
        voice_path: "/twilio/voice".into(),
        calls: 1,
        ramp: Duration::ZERO,
        duration: Duration::from_secs(20),
        scripts: vec![script.clone()],
        twilio_auth_token: TOKEN.to_owned(),
        twilio_account_sid: Some(common::TWILIO_SID.to_owned()),
        to_number: NUMBER.to_owned(),
        script_numbers: Vec::new(),
        record_timeline: false,
        progress: false,
        engine_pid: None,
        speech_detector: None,
    };
    let reports = run_calls(&cfg, &http, Arc::new(Progress::default())).await;
    engine.server.shutdown().await;
    build_report(&reports, None, Default::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reaches_tls_fakes_only_when_it_trusts_their_ca() {
    let script = Arc::new(script());
    let mut fakes = Fakes::start(quick(), std::slice::from_ref(&script))
        .await
        .expect("fakes start");
    fakes.serve_tls().await.expect("TLS fronts");
    let [llm, stt, tts] = fakes.base_urls();
    for url in [&llm, &stt, &tts] {
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    }
    let ca = fakes.ca_file().expect("CA file").display().to_string();

    let (report, extras) = one_call(&fakes, &script, Some(ca)).await;
    let table = switchboard_loadgen::report::summary_table(&report, &extras, 0.0);
    assert_eq!(report.calls.failed, 0, "{table}");
    assert_eq!(report.turns, 1, "{table}");
    assert_eq!(extras.answered, 1, "the turn is answered over TLS\n{table}");
    assert!(
        !fakes.elevenlabs.received().is_empty(),
        "the TTS fake was reached"
    );

    let before = fakes.elevenlabs.received().len();
    let (report, extras) = one_call(&fakes, &script, None).await;
    let table = switchboard_loadgen::report::summary_table(&report, &extras, 0.0);
    assert_eq!(
        extras.answered, 0,
        "the public roots alone refuse the throwaway CA\n{table}"
    );
    assert_eq!(
        fakes.elevenlabs.received().len(),
        before,
        "no TTS connection got past the TLS handshake"
    );
}

#[test]
fn the_ca_file_is_read_when_the_configuration_loads() {
    let load = |path: &str| {
        let env = HashMap::from([("SWITCHBOARD_TLS__EXTRA_CA_FILE".to_owned(), path.to_owned())]);
        Settings::load(None, &EnvSource::Map(env), &[])
    };
    let missing = load("/nonexistent/ca.pem").expect_err("a missing file is refused");
    assert!(matches!(missing, SettingsError::Tls(_)), "{missing}");
    assert!(
        missing.to_string().contains("tls.extra_ca_file"),
        "{missing}"
    );

    let ca = switchboard_testkit::tls::TestCa::generate().expect("ca");
    let file = tempfile::NamedTempFile::new().expect("temp file");
    ca.write_ca_file(file.path()).expect("write");
    let settings = load(&file.path().display().to_string()).expect("loads");
    assert_eq!(settings.tls.roots.extra(), &[ca.ca_der()]);
    let defaults = Settings::defaults().expect("defaults");
    assert!(defaults.tls.extra_ca_file.is_none());
    assert!(defaults.tls.roots.extra().is_empty());
}
