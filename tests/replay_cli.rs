//! `switchboard replay` through the built binary: a call's stored trace replays exactly, a
//! what-if prints both timelines, an invalid change names the field, and another organisation
//! cannot read the call.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};
use switchboard_core::call::trace::{Trace, TracedCore};
use switchboard_core::call::{Action, CallSettings, Event, Generation, Millis};
use switchboard_server::recording_storage::RecordingStorage;
use switchboard_server::trace_storage;
use switchboard_store::{CallStatus, NewCall, Store};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

fn switchboard(dir: &Path, db: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("SWITCHBOARD_") || key == "DATABASE_URL" || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .arg("replay")
        .args(args)
        .args(["--database-url", db]);
    cmd.output().expect("binary runs")
}

/// A short call recorded with the flight recorder: the welcome plays (its TTS audio and marks
/// answered at once), the caller stays silent, then hangs up.
fn short_call() -> Trace {
    let settings = CallSettings {
        welcome_message: Some("Hello, you reached the test line.".into()),
        ..CallSettings::default()
    };
    let mut core = TracedCore::new(settings, Millis(0), true);
    core.handle(Event::CallStarted, Millis(0));
    let silence = [0xFFu8; 160];
    let mut marks: Vec<String> = Vec::new();
    let mut to_speak: Vec<Generation> = Vec::new();
    for tick in 1..=150u64 {
        let now = Millis(tick * 20);
        while let Some(a) = core.poll_action() {
            match a {
                Action::TtsFlush {
                    generation,
                    end_of_generation: true,
                } => to_speak.push(generation),
                Action::SendMark(m) => marks.push(m.to_string()),
                _ => {}
            }
        }
        for g in to_speak.drain(..) {
            core.handle(
                Event::TtsAudio {
                    generation: g,
                    audio: &[0xFFu8; 8000],
                    alignment: None,
                },
                now,
            );
            core.handle(Event::TtsDone { generation: g }, now);
        }
        if tick % 5 == 0 {
            for m in marks.drain(..) {
                core.handle(Event::MarkPlayed(&m), now);
            }
        }
        core.handle(Event::CallerAudio(&silence), now);
    }
    core.handle(Event::CallerHungUp, Millis(3020));
    while core.poll_action().is_some() {}
    core.take_trace().expect("trace")
}

#[tokio::test]
async fn replay_prints_the_exact_and_what_if_timelines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("sb.db").display());
    let store = Store::connect(&db).await.expect("store");
    store.migrate().await.expect("migrate");
    let org = store.ensure_organization("acme").await.expect("org").id;
    store.ensure_organization("other").await.expect("org");
    let call = store
        .create_call(&NewCall {
            organization_id: org,
            assistant_id: None,
            call_sid: "CA-replay-cli".into(),
            direction: "inbound".into(),
            from_number: "+15550100001".into(),
            to_number: "+15550100002".into(),
            status: CallStatus::Completed,
            metadata: json!({}),
            stream_deadline_at_ms: None,
        })
        .await
        .expect("call");
    let trace = short_call();
    // Where the binary's default `recordings.base_dir` ("./data", from its working folder)
    // finds it.
    let storage = RecordingStorage::local(dir.path().join("data"));
    trace_storage::save(
        &store,
        &storage,
        org,
        call.id,
        1,
        trace.to_bytes().expect("encode"),
    )
    .await
    .expect("save");
    store.close().await;
    let id = call.id.to_string();

    let out = switchboard(dir.path(), &db, &[&id, "--org", "acme"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("reproduced all"), "{stdout}");
    assert!(stdout.contains("you reached the test line"), "{stdout}");

    let out = switchboard(
        dir.path(),
        &db,
        &[
            &id,
            "--org",
            "acme",
            "--set",
            "interruption_settings.tail_protection_ms=800",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("what if interruption_settings.tail_protection_ms = 800 (was 2000)"),
        "{stdout}"
    );
    assert!(stdout.contains("what-if"), "{stdout}");

    let out = switchboard(dir.path(), &db, &[&id, "--org", "acme", "--json"]);
    let body: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(body["reproduced"], true);
    assert_eq!(body["call_id"], call.id);

    let out = switchboard(
        dir.path(),
        &db,
        &[
            &id,
            "--org",
            "acme",
            "--set",
            "interruption_settings.min_stt_confidence=3",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interruption_settings.min_stt_confidence"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = switchboard(dir.path(), &db, &[&id, "--org", "other"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no flight recording"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
