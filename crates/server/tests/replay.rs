//! The flight recorder end to end: every fixture call is made through the whole stack (server,
//! provider fakes, fake Twilio caller) with `recording_settings.enabled`, its trace is stored
//! when it ends, and replaying it through the core reproduces every decision the live call made.
//! Then `GET /api/v1/calls/{id}/replay`: exact and what-if, 422s that name the field, and no
//! access from another organisation.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_core::call::trace::Trace;
use switchboard_core::replay::replay;
use switchboard_server::call::trace_spool::{DRAIN_AUDIO_BYTES, TRACE_DIR};
use switchboard_server::config::Settings;
use switchboard_server::serve::{self, Server, StartOptions};
use switchboard_server::trace_storage;
use switchboard_store::{CallRow, StoredTrace};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallScript, FakeCall, FakeCallConfig, FakeTwilioRest};

const KEY: &str = "sb_replay_test_key_0123456789abcd";
const TWILIO_SID: &str = "AC00000000000000000000000000000e12";
const TWILIO_TOKEN: &str = "twilio-replay-test-token";
const WELCOME: &str = "Hi, Harbor Dental.";

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls")
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
}

fn number(i: usize) -> String {
    format!("+1555010{:04}", 300 + i)
}

/// Waits until the engine stored the call's record and its trace (both written after the
/// socket closes, off the call path).
async fn traced_call(server: &Server, call_sid: &str) -> (CallRow, Trace) {
    let store = &server.state().store;
    for _ in 0..300 {
        if let Ok(Some(call)) = store.get_call_by_sid(None, call_sid).await
            && call.ended_reason.is_some()
            && let Ok(Some(bytes)) = trace_storage::load(
                store,
                &server.state().recordings,
                call.organization_id,
                call.id,
            )
            .await
        {
            return (call, Trace::from_bytes(&bytes).expect("trace decodes"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("call {call_sid}: no trace was stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_call_is_recorded_and_replays_to_the_same_decisions() {
    let scripts: Vec<CallScript> = fixture_names()
        .iter()
        .map(|n| CallScript::load(&fixtures_dir(), n).expect("fixture"))
        .collect();
    assert!(scripts.len() >= 10);
    let latency = LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 60,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 40,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    };
    let fakes = ProviderFakes::start_for_calls(latency, &scripts.iter().collect::<Vec<_>>())
        .await
        .expect("fakes");
    let twilio = FakeTwilioRest::start(TWILIO_SID, TWILIO_TOKEN)
        .await
        .expect("twilio");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::defaults().expect("defaults");
    settings.server.addr = "127.0.0.1:0".parse().expect("addr");
    settings.database.url = format!("sqlite://{}", dir.path().join("sb.db").display());
    settings.secrets.key_file = dir.path().join("secret.key").display().to_string();
    settings.server.rate_limit_per_s = 0;
    settings.server.drain_timeout_s = 5;
    settings.twilio.account_sid = Some(TWILIO_SID.to_owned());
    settings.twilio.auth_token = Some(TWILIO_TOKEN.to_owned());
    settings.twilio.api_base = twilio.base_url();
    settings.providers.keys_from_env = false;
    settings.recordings.base_dir = dir.path().display().to_string();
    settings.outbound.allow_hosts = "127.0.0.1,::1".parse().expect("allowlist");
    let server = serve::start(
        settings,
        StartOptions {
            bootstrap_key: Some(KEY.to_owned()),
        },
    )
    .await
    .expect("server");
    let base = format!("http://{}", server.local_addr());
    let http = reqwest::Client::new();

    // One assistant and number per fixture (the STT fake picks the script by the record's tag),
    // all with the flight recorder on.
    for (i, script) in scripts.iter().enumerate() {
        twilio.add_number(TWILIO_SID, &number(i)).expect("account");
        let mut record = fakes.assistant_record("Harbor Dental", &script.name, WELCOME);
        record["recording_settings"] = json!({"enabled": true});
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
            .json(&json!({"phone_number": number(i)}))
            .send()
            .await
            .expect("assign");
        assert!(res.status().is_success(), "assign: {}", res.status());
    }

    // All calls at once.
    let calls = scripts.iter().enumerate().map(|(i, script)| {
        let mut cfg =
            FakeCallConfig::new(&format!("{base}/twilio/voice"), TWILIO_TOKEN, http.clone());
        cfg.to = number(i);
        cfg.max_duration = Duration::from_secs(90);
        FakeCall::new(cfg, Arc::new(script.clone())).run()
    });
    let reports = futures::future::join_all(calls).await;

    let mut barge_in_call = None;
    let mut unchanged_differs = Vec::new();
    for (script, report) in scripts.iter().zip(&reports) {
        assert!(
            report.errors.is_empty(),
            "{}: {:?}",
            script.name,
            report.errors
        );
        let (call, trace) = traced_call(&server, &report.call_sid).await;
        // Kept compressed in the recordings' storage, under the call's organisation; the row
        // holds only where.
        let row = server
            .state()
            .store
            .get_call_trace(call.organization_id, call.id)
            .await
            .expect("row")
            .expect("trace row");
        let key = trace_storage::key(call.organization_id, call.id);
        assert_eq!(
            row.body,
            StoredTrace::Located(server.state().recordings.location_of(&key))
        );
        let stored = std::fs::metadata(server.state().recordings.base_dir().join(&key))
            .expect("trace file")
            .len();
        let encoded = trace.to_bytes().expect("encode").len() as u64;
        assert_eq!(row.size_bytes, encoded);
        assert!(stored < encoded / 2, "{stored} of {encoded} bytes");
        eprintln!(
            "{}: {} events, {} decisions, {} bytes of caller audio, {} bytes encoded, {} stored \
             (DEFLATE)",
            script.name,
            trace.events.len(),
            trace.decisions.len(),
            trace.caller_audio.len(),
            encoded,
            stored
        );
        assert!(!trace.truncated, "{}", script.name);
        // The trace was spooled a second at a time during the call and put back together.
        assert!(
            trace.caller_audio.len() > 2 * DRAIN_AUDIO_BYTES,
            "{}: {} bytes of caller audio",
            script.name,
            trace.caller_audio.len()
        );
        assert!(
            trace.decisions.len() > 10,
            "{}: {} decisions",
            script.name,
            trace.decisions.len()
        );
        let r = replay(&trace, None);
        assert!(
            r.reproduced,
            "{}: the replay diverged: {:?}",
            script.name, r.divergence
        );
        // The what-if model with the recorded settings retells the same call: the same turns
        // committed and the same replies cut (pauses may move by a frame with the modelled
        // mark timing; any difference is printed).
        let same = replay(&trace, Some(&trace.settings));
        let what_if = same.what_if_summary.clone().expect("what-if");
        assert_eq!(
            (what_if.turns_committed, what_if.cut),
            (
                same.original_summary.turns_committed,
                same.original_summary.cut
            ),
            "{}:\n{}",
            script.name,
            same.side_by_side()
        );
        if what_if != same.original_summary {
            unchanged_differs.push(format!("{}:\n{}", script.name, same.side_by_side()));
        }
        if script.name == "barge_in" {
            barge_in_call = Some(call);
        }
    }
    eprintln!(
        "what-if with unchanged settings differs on {} of {} calls:\n{}",
        unchanged_differs.len(),
        scripts.len(),
        unchanged_differs.join("\n")
    );
    let call = barge_in_call.expect("the barge_in fixture");
    // Every trace is stored, so no spool file is left behind.
    let spools: Vec<_> = std::fs::read_dir(dir.path().join(TRACE_DIR))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(spools.is_empty(), "spools left: {spools:?}");

    // The API: the exact replay…
    let url = format!("{base}/api/v1/calls/{}/replay", call.id);
    let res = http.get(&url).bearer_auth(KEY).send().await.expect("get");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["reproduced"], true, "{body:#}");
    assert!(body["what_if"].is_null());
    assert!(
        body["original"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["kind"] == "committed"))
    );

    // …and a what-if: interruptions disabled, nothing is cleared any more.
    let res = http
        .get(format!(
            "{url}?set=interruption_settings.interruption_mode%3Ddisabled&set=interruption_settings.tail_protection_ms=800"
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["changes"][0]["to"], "disabled", "{body:#}");
    assert_eq!(body["changes"][1]["from"], 2000, "{body:#}");
    let what_if = body["what_if"].as_array().expect("what-if timeline");
    assert!(what_if.iter().any(|m| m["kind"] == "spoke"));
    assert!(!what_if.iter().any(|m| m["kind"] == "cleared"), "{body:#}");
    assert!(
        body["side_by_side"]
            .as_str()
            .is_some_and(|t| t.contains("what-if"))
    );

    // Invalid changes are 422s naming the field.
    for (query, field) in [
        (
            "set=interruption_settings.min_stt_confidence=3",
            "interruption_settings.min_stt_confidence",
        ),
        ("set=llm_settings.temperature=1", "llm_settings.temperature"),
        ("set=nonsense", "set"),
        ("speed=2", "speed"),
    ] {
        let res = http
            .get(format!("{url}?{query}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get");
        assert_eq!(res.status(), 422, "{query}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["error"]["field"], field, "{query}: {body:#}");
    }

    // Another organisation sees nothing: 404 like a call that does not exist.
    let store = &server.state().store;
    let other = store.ensure_organization("other").await.expect("org");
    let (_, other_key) = store
        .create_api_key(other.id, Some("t"))
        .await
        .expect("key");
    let res = http
        .get(&url)
        .bearer_auth(&other_key)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);
    assert!(
        store
            .get_call_trace(other.id, call.id)
            .await
            .expect("query")
            .is_none()
    );
    let res = http
        .get(format!("{base}/api/v1/calls/{}/replay", call.id + 10_000))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 404);

    // A trace whose file was removed from the storage: 404 that says so, without the path.
    let recordings = &server.state().recordings;
    let file = recordings
        .base_dir()
        .join(trace_storage::key(call.organization_id, call.id));
    std::fs::remove_file(&file).expect("remove the trace file");
    let res = http.get(&url).bearer_auth(KEY).send().await.expect("get");
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.expect("json");
    let message = body.to_string();
    assert!(
        message.contains("no longer in the recordings' storage"),
        "{body:#}"
    );
    assert!(!message.contains("call-traces"), "{body:#}");

    // In the OpenAPI document.
    let doc: Value = http
        .get(format!("{base}/api/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert!(doc["paths"]["/api/v1/calls/{call_id}/replay"]["get"].is_object());

    drop(fakes);
    server.shutdown().await;
}
