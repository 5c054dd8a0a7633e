//! Recordings you can get back (issue 13): `GET …/recording/{id}/play` with HTTP Range on local
//! and S3 storage, organisation isolation, the end-of-call webhook sent only once the call's
//! transcripts and recordings are stored, a recording a crash interrupted finalised at the next
//! start, and the disclosure modes.
//!
//! The S3 test runs against the S3-compatible server `scripts/services.sh` starts (moto,
//! `S3_ENDPOINT`); without one it is skipped, except in CI (`CI=true`), where it fails.

mod common;
mod twilio_harness;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use switchboard_assistant::RecordingSettings;
use switchboard_core::call::trace::{Trace, TracedCore};
use switchboard_core::call::{CallSettings, Event, Millis};
use switchboard_server::AppState;
use switchboard_server::call::disclosure::DEFAULT_DISCLOSURE_MESSAGE;
use switchboard_server::call::recording::{CallRecorder, RecordingPlan, SpoolWriter};
use switchboard_server::call::trace_spool::{TRACE_DIR, TraceSpool};
use switchboard_server::config::Settings;
use switchboard_server::trace_storage;
use switchboard_store::{CallStatus, NewRecording, Store};
use switchboard_testkit::twilio::new_sid;
use twilio_harness::{CALLER, Harness, OUR_NUMBER, Options};

use crate::common::{TestServer, json, settings_for};

/// Settings of a test server whose recordings live in `dir`.
fn settings_in(dir: &Path) -> Settings {
    let mut settings = settings_for(&dir.join("switchboard.db"));
    settings.recordings.base_dir = dir.join("recordings").display().to_string();
    settings
}

/// An ended call of organisation `org`.
async fn ended_call(store: &Store, org: i64) -> (i64, String) {
    let call_sid = new_sid("CA");
    let call = store
        .create_call(&common::inbound_call(
            org,
            call_sid.clone(),
            CALLER,
            OUR_NUMBER,
        ))
        .await
        .expect("call");
    store
        .finish_call(
            org,
            &call_sid,
            CallStatus::Completed,
            None,
            call.started_at_ms + 1,
        )
        .await
        .expect("finish");
    (call.id, call_sid)
}

async fn add_row(store: &Store, call_id: i64, location: &str, size: usize) -> i64 {
    store
        .add_recording(
            call_id,
            &NewRecording {
                kind: "mixed".into(),
                format: "wav".into(),
                path_or_url: location.into(),
                duration_ms: 1000,
                size_bytes: size as i64,
                sample_rate: 8000,
                partial: false,
            },
        )
        .await
        .expect("row")
}

/// Bytes that differ at every offset a test looks at.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn get(ts: &TestServer, path: &str, key: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = ts.req(Method::GET, path, key);
    if let Some(r) = range {
        req = req.header("range", r);
    }
    req.send().await.expect("request")
}

fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Plays `path` (`total` bytes, `audio`) whole and by ranges, including ranges across
/// `boundary`, and checks 416.
async fn check_ranges(ts: &TestServer, path: &str, audio: &[u8], boundary: usize) {
    let total = audio.len();
    let resp = get(ts, path, &ts.key_a, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), "audio/wav");
    assert_eq!(header(&resp, "accept-ranges"), "bytes");
    assert_eq!(header(&resp, "content-length"), total.to_string());
    assert_eq!(header(&resp, "cache-control"), "private, no-store");
    assert!(resp.bytes().await.expect("body").as_ref() == audio);

    let a = boundary - 10;
    let b = boundary + 9;
    for (range, want, content_range) in [
        (
            "bytes=100-199".to_owned(),
            100..200,
            format!("bytes 100-199/{total}"),
        ),
        (
            format!("bytes={a}-{b}"),
            a..b + 1,
            format!("bytes {a}-{b}/{total}"),
        ),
        (
            "bytes=-10".to_owned(),
            total - 10..total,
            format!("bytes {}-{}/{total}", total - 10, total - 1),
        ),
        (
            format!("bytes={}-", total - 3),
            total - 3..total,
            format!("bytes {}-{}/{total}", total - 3, total - 1),
        ),
    ] {
        let resp = get(ts, path, &ts.key_a, Some(&range)).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&resp, "content-range"), content_range, "{range}");
        assert_eq!(header(&resp, "content-length"), want.len().to_string());
        let body = resp.bytes().await.expect("body");
        assert!(
            body.as_ref() == audio.get(want.clone()).unwrap_or_default(),
            "{range}"
        );
    }
    let resp = get(ts, path, &ts.key_a, Some(&format!("bytes={total}-"))).await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range"), format!("bytes */{total}"));
    // Several ranges: the whole file.
    let resp = get(ts, path, &ts.key_a, Some("bytes=0-1,5-6")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.expect("body").len(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_recording_plays_with_ranges_to_its_own_organisation_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ts = TestServer::start_with(settings_in(dir.path()), String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org a");
    let (call_id, call_sid) = ended_call(&state.store, org).await;
    let folder = dir
        .path()
        .join("recordings")
        .join(format!("org-{org}/recordings"));
    std::fs::create_dir_all(&folder).expect("dir");
    let file = folder.join(format!("call-{call_id}-mixed.wav"));
    let audio = pattern(20_000);
    std::fs::write(&file, &audio).expect("write");
    let rec_id = add_row(&state.store, call_id, &file.to_string_lossy(), audio.len()).await;
    let path = format!("/api/v1/calls/{call_id}/recording/{rec_id}/play");

    // The listing hands out exactly this URL.
    let (status, list) = json(ts.req(
        Method::GET,
        &format!("/api/v1/calls/sid/{call_sid}/recordings"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["recording_url"], path);
    assert_eq!(list[0]["status"], "completed");

    check_ranges(&ts, &path, &audio, 8_000).await;

    // Another organisation, another call, no key: as if it did not exist.
    let resp = get(&ts, &path, &ts.key_b, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let (other_call, _) = ended_call(&state.store, org).await;
    let resp = get(
        &ts,
        &format!("/api/v1/calls/{other_call}/recording/{rec_id}/play"),
        &ts.key_a,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = ts.client.get(ts.url(&path)).send().await.expect("request");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // Documented.
    let (_, doc) = json(ts.client.get(ts.url("/api/openapi.json"))).await;
    assert!(
        doc["paths"]["/api/v1/calls/{call_id}/recording/{recording_id}/play"]["get"].is_object(),
        "the play path is not in the OpenAPI document"
    );
    // The file is gone: 404, not a 500.
    std::fs::remove_file(&file).expect("rm");
    let resp = get(&ts, &path, &ts.key_a, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    ts.stop().await;
}

/// A server whose recordings go to a fresh bucket of the moto S3 server, and an ended call of
/// organisation a; `None` (the test skipped) without S3 outside CI.
struct S3Case {
    _dir: tempfile::TempDir,
    ts: TestServer,
    state: AppState,
    org: i64,
    call_id: i64,
    endpoint: String,
    bucket: String,
}

async fn s3_case(
    what: &str,
    bucket_prefix: &str,
    adjust: impl FnOnce(&mut Settings),
) -> Option<S3Case> {
    let endpoint = common::s3_endpoint(what)?;
    let bucket = common::moto_bucket(&endpoint, bucket_prefix).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_in(dir.path());
    common::use_moto_s3(&mut settings, &endpoint, &bucket);
    adjust(&mut settings);
    let ts = TestServer::start_with(settings, String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org a");
    let (call_id, _) = ended_call(&state.store, org).await;
    Some(S3Case {
        _dir: dir,
        ts,
        state,
        org,
        call_id,
        endpoint,
        bucket,
    })
}

/// Stores 20 000 bytes as organisation `org`'s call `call_id`'s mixed track, in the server's
/// recordings' storage, and adds its row; returns the bytes, the key and the row's id.
async fn stored_mixed(state: &AppState, org: i64, call_id: i64) -> (Vec<u8>, String, i64) {
    let audio = pattern(20_000);
    let key = format!("org-{org}/recordings/call-{call_id}-mixed.wav");
    let location = state
        .recordings
        .store_bytes(&key, &audio)
        .await
        .expect("stored");
    let rec_id = add_row(&state.store, call_id, &location, audio.len()).await;
    (audio, key, rec_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_recording_is_uploaded_in_parts_and_plays_with_ranges() {
    let Some(S3Case {
        _dir,
        mut ts,
        state,
        org,
        call_id,
        endpoint,
        bucket,
    }) = s3_case("recordings", "sb-recordings", |_| {}).await
    else {
        return;
    };

    // Over one 5 MiB part: a multipart upload of two parts.
    let part = switchboard_server::recording_storage::S3_PART_BYTES;
    let audio = pattern(part + 4_321);
    let key = format!("org-{org}/recordings/call-{call_id}-mixed.wav");
    let local = state.recordings.base_dir().join(&key);
    std::fs::create_dir_all(local.parent().expect("parent")).expect("dir");
    std::fs::write(&local, &audio).expect("write");
    let location = state.recordings.store(&local, &key).await.expect("stored");
    assert_eq!(location, format!("s3://{bucket}/switchboard/{key}"));
    assert!(!local.exists(), "the local copy is removed once uploaded");
    // It really is in the bucket, under the prefix.
    let raw = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}/switchboard/{key}"))
        .send()
        .await
        .expect("get object");
    assert!(raw.bytes().await.expect("object").as_ref() == audio.as_slice());

    let rec_id = add_row(&state.store, call_id, &location, audio.len()).await;
    let path = format!("/api/v1/calls/{call_id}/recording/{rec_id}/play");
    check_ranges(&ts, &path, &audio, part).await;
    let resp = get(&ts, &path, &ts.key_b, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // A location in another bucket is not reachable through this one.
    let stray = add_row(
        &state.store,
        call_id,
        &format!("s3://other-bucket/switchboard/{key}"),
        1,
    )
    .await;
    let resp = get(
        &ts,
        &format!("/api/v1/calls/{call_id}/recording/{stray}/play"),
        &ts.key_a,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // The call's flight recording goes to the same bucket, compressed, beside its recordings.
    let trace: Vec<u8> = (0..300_000u32).map(|i| (i % 17) as u8).collect();
    trace_storage::save(
        &state.store,
        &state.recordings,
        org,
        call_id,
        1,
        trace.clone(),
    )
    .await
    .expect("trace stored");
    let key = trace_storage::key(org, call_id);
    assert!(!state.recordings.base_dir().join(&key).exists());
    let object = reqwest::Client::new()
        .get(format!("{endpoint}/{bucket}/switchboard/{key}"))
        .send()
        .await
        .expect("get object")
        .bytes()
        .await
        .expect("object");
    assert!(object.len() < trace.len() / 10, "{} bytes", object.len());
    let loaded = trace_storage::load(&state.store, &state.recordings, org, call_id).await;
    assert_eq!(loaded.expect("load"), Some(trace));
    let other = state
        .store
        .ensure_organization("b")
        .await
        .expect("org b")
        .id;
    let loaded = trace_storage::load(&state.store, &state.recordings, other, call_id).await;
    assert_eq!(loaded.expect("load"), None);
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_recording_past_its_retention_leaves_the_bucket_and_the_api() {
    let Some(S3Case {
        _dir,
        mut ts,
        state,
        org,
        call_id,
        endpoint,
        bucket,
    }) = s3_case("retention", "sb-retention", |_| {}).await
    else {
        return;
    };
    let (_, key, rec_id) = stored_mixed(&state, org, call_id).await;
    let object = format!("{endpoint}/{bucket}/switchboard/{key}");
    let play = format!("{}/api/v1/calls/{call_id}/recording/{rec_id}/play", ts.base);
    let status = |url: String, key: Option<String>| async move {
        let mut req = reqwest::Client::new().get(url);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        req.send().await.expect("get").status()
    };
    assert_eq!(status(object.clone(), None).await, StatusCode::OK);

    let retention = switchboard_server::retention::Retention {
        recordings_days: 30,
        traces_days: 0,
    };
    let day_ms = 86_400_000;
    let at = |days: i64| switchboard_store::now_ms() + days * day_ms;
    let sweep =
        |now| switchboard_server::retention::sweep(&state.store, &state.recordings, retention, now);
    assert_eq!(sweep(at(29)).await.recordings, 0);
    assert_eq!(
        status(play.clone(), Some(ts.key_a.clone())).await,
        StatusCode::OK
    );
    assert_eq!(sweep(at(31)).await.recordings, 1);
    assert_eq!(
        status(object, None).await,
        StatusCode::NOT_FOUND,
        "the object is deleted"
    );
    assert_eq!(
        status(play, Some(ts.key_a.clone())).await,
        StatusCode::NOT_FOUND,
        "and the recording is gone from the API"
    );
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_recording_plays_through_a_short_lived_presigned_redirect() {
    let Some(S3Case {
        _dir,
        mut ts,
        state,
        org,
        call_id,
        endpoint,
        bucket,
    }) = s3_case("recordings", "sb-presigned", |s| {
        s.recordings.s3.presigned_play_ttl_s = 120;
    })
    .await
    else {
        return;
    };
    let (audio, key, rec_id) = stored_mixed(&state, org, call_id).await;
    let path = format!("/api/v1/calls/{call_id}/recording/{rec_id}/play");

    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let resp = no_redirects
        .get(format!("{}{path}", ts.base))
        .bearer_auth(&ts.key_a)
        .send()
        .await
        .expect("play");
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&resp, "cache-control"), "private, no-store");
    let url = header(&resp, "location");
    assert!(
        url.starts_with(&format!("{endpoint}/{bucket}/switchboard/{key}?")),
        "{url}"
    );
    for part in [
        "X-Amz-Signature=",
        "X-Amz-Expires=120",
        "X-Amz-Credential=test%2F",
    ] {
        assert!(url.contains(part), "{part} in {url}");
    }
    assert!(
        !url.contains("test-secret"),
        "the secret never leaves: {url}"
    );
    // The URL downloads the file, by ranges too, without the API key.
    let whole = reqwest::get(&url).await.expect("download");
    assert_eq!(
        whole.bytes().await.expect("bytes").as_ref(),
        audio.as_slice()
    );
    let ranged = reqwest::Client::new()
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .expect("ranged download");
    assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        ranged.bytes().await.expect("bytes").as_ref(),
        &audio[100..200]
    );
    // The organisation check comes first: another organisation gets no URL.
    let resp = no_redirects
        .get(format!("{}{path}", ts.base))
        .bearer_auth(&ts.key_b)
        .send()
        .await
        .expect("play");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(header(&resp, "location"), "");
    // A local recording of the same server still streams from here.
    let local_key = format!("org-{org}/recordings/call-{call_id}-caller.wav");
    let local = state.recordings.base_dir().join(&local_key);
    std::fs::create_dir_all(local.parent().expect("parent")).expect("dir");
    std::fs::write(&local, &audio).expect("write");
    let local_id = add_row(&state.store, call_id, &local.to_string_lossy(), audio.len()).await;
    let resp = get(
        &ts,
        &format!("/api/v1/calls/{call_id}/recording/{local_id}/play"),
        &ts.key_a,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    ts.stop().await;
}

/// What the webhook receiver saw in the store when an end-of-call report arrived.
#[derive(Debug, Clone)]
struct AtReceipt {
    body: Value,
    transcripts: usize,
    recordings: usize,
}

/// A receiver that, on each end-of-call report, reads the call's rows from the store at that
/// moment.
async fn checking_receiver(store: Store) -> (String, Arc<Mutex<Vec<AtReceipt>>>) {
    let seen: Arc<Mutex<Vec<AtReceipt>>> = Arc::default();
    let log = seen.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: Bytes| {
            let (store, log) = (store.clone(), log.clone());
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if body["message"]["type"] == "end-of-call-report" {
                    let call_id = body["message"]["call"]["id"].as_i64().unwrap_or(0);
                    let transcripts = store.list_transcripts(call_id).await.map_or(0, |t| t.len());
                    let recordings = store.list_recordings(call_id).await.map_or(0, |r| r.len());
                    log.lock().expect("lock").push(AtReceipt {
                        body,
                        transcripts,
                        recordings,
                    });
                }
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), seen)
}

/// Waits (bounded) until `seen` holds a report.
async fn first_report(seen: &Arc<Mutex<Vec<AtReceipt>>>) -> AtReceipt {
    for _ in 0..600 {
        if let Some(r) = seen.lock().expect("lock").first().cloned() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no end-of-call report arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_call_report_follows_the_stored_transcripts_and_recordings() {
    let h = Harness::start(Options::default()).await;
    let state = h.ts.server().state().clone();
    let (hook, seen) = checking_receiver(state.store.clone()).await;
    let record = h.record(
        "reported",
        json!({"webhook_url": hook, "recording_settings": {"enabled": true, "format": "wav"}}),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let call_sid = h.short_call(4_000).await;

    let got = first_report(&seen).await;
    // When the receiver got it, the rows were already there.
    assert!(got.transcripts >= 2, "{got:?}");
    assert_eq!(got.recordings, 3, "{got:?}");
    let msg = &got.body["message"];
    let transcript = msg["transcript"].as_str().unwrap_or_default();
    assert!(
        transcript.contains("AI: Hello, thanks for calling"),
        "{msg}"
    );
    assert!(
        transcript.contains("User: I would like to book a cleaning."),
        "{msg}"
    );
    // recordingUrl: the API URL of the mixed track, which plays.
    let call = h.ended_call(&call_sid).await;
    let rows = state.store.list_recordings(call.id).await.expect("rows");
    let mixed = rows.iter().find(|r| r.kind == "mixed").expect("mixed");
    let url = format!(
        "{}/api/v1/calls/{}/recording/{}/play",
        h.public_base, call.id, mixed.id
    );
    assert_eq!(msg["recordingUrl"], url, "{msg}");
    let resp = get(
        &h.ts,
        &format!("/api/v1/calls/{}/recording/{}/play", call.id, mixed.id),
        &h.ts.key_a,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let wav = resp.bytes().await.expect("wav");
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(wav.len() as i64, mixed.size_bytes);
    // Exactly one report.
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

/// `recordings.flight_recorder = false`: a recorded call keeps its audio and no trace; its
/// trace is never even spooled (with it on, the spool's folder appears within the call's first
/// seconds, and `--test replay` finds every trace stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flight_recorder_a_recorded_call_keeps_no_trace() {
    let h = Harness::start(Options {
        adjust: |s| s.recordings.flight_recorder = false,
        ..Options::default()
    })
    .await;
    let state = h.ts.server().state().clone();
    let record = h.record(
        "untraced",
        json!({"recording_settings": {"enabled": true, "format": "wav"}}),
    );
    h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    let call_sid = h.short_call(4_000).await;
    let call = h.ended_call(&call_sid).await;
    let rows = state.store.list_recordings(call.id).await.expect("rows");
    assert_eq!(rows.len(), 3, "the recording is kept: {rows:?}");
    assert!(
        !h.recordings_dir()
            .join(switchboard_server::call::trace_spool::TRACE_DIR)
            .exists(),
        "nothing was spooled"
    );
    let trace = state
        .store
        .get_call_trace(call.organization_id, call.id)
        .await
        .expect("read");
    assert!(trace.is_none());
    let resp = get(
        &h.ts,
        &format!("/api/v1/calls/{}/replay", call.id),
        &h.ts.key_a,
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

/// A process died mid-call: its call is closed as `engine_restart` at the next start and the
/// recording it was streaming is finalised, stored and listed as `partial`, playable, before the
/// end-of-call report goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_interrupted_by_a_crash_is_finalised_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_in(dir.path());
    settings.server.instance_id = "node-crash".into();
    // The first process: it takes a call, streams 2.5 s of its recording, then dies.
    let mut ts = TestServer::start_with(settings.clone(), String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org a");
    let call_sid = new_sid("CA");
    let call = state
        .store
        .create_call(&common::inbound_call(
            org,
            call_sid.clone(),
            CALLER,
            OUR_NUMBER,
        ))
        .await
        .expect("call");
    assert!(
        state
            .store
            .claim_call_stream(org, call.id, "node-crash")
            .await
            .expect("claim")
    );
    let rec_settings = RecordingSettings {
        format: Some(switchboard_assistant::RecordingFormat::Wav),
        ..RecordingSettings::default()
    };
    let plan = RecordingPlan::new(&rec_settings, org, call.id)
        .expect("safe")
        .expect("enabled");
    let (mut rec, mut blocks) = CallRecorder::new(&plan, 64);
    let mut writer = SpoolWriter::new(plan, state.recordings.base_dir());
    for _ in 0..125 {
        rec.push_bot(&[0x20; 160]);
        rec.push_caller(&[0xB0; 160]);
    }
    while let Ok(block) = blocks.try_recv() {
        writer.write(&block).expect("write");
    }
    // Its flight recorder too: a second of caller audio drained and spooled.
    let (spool, slice) = spool_one_second(&state, org, call.id).await;
    // The crash: nothing is finished. (The trace spool is dropped rather than forgotten so
    // that its task ends and this process can stop: its files stay, as a crash leaves them.)
    drop(spool);
    std::mem::forget(writer);
    std::mem::forget(rec);
    ts.stop().await;

    let mut ts = TestServer::start_with(settings, ts.key_b.clone()).await;
    let (status, closed) = json(ts.req(
        Method::GET,
        &format!("/api/v1/calls/sid/{call_sid}"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["ended_reason"], "engine_restart", "{closed}");
    let (status, list) = json(ts.req(
        Method::GET,
        &format!("/api/v1/calls/sid/{call_sid}/recordings"),
        &ts.key_a,
    ))
    .await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().expect("list").clone();
    assert_eq!(list.len(), 3, "{list:?}");
    for r in &list {
        assert_eq!(r["status"], "partial", "{r}");
        // The two whole seconds written before the crash.
        assert_eq!(r["duration"], 2.0, "{r}");
        let url = r["recording_url"].as_str().expect("url");
        let resp = get(&ts, url, &ts.key_a, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let wav = resp.bytes().await.expect("wav");
        // A playable µ-law WAV: sizes fixed from what was written.
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize,
            wav.len() - 8
        );
        assert_eq!(u16::from_le_bytes([wav[20], wav[21]]), 7);
        assert_eq!(
            u32::from_le_bytes([wav[54], wav[55], wav[56], wav[57]]),
            16_000
        );
        assert_eq!(wav.len(), 58 + 16_000);
    }
    // The trace is stored as far as it was spooled, marked truncated.
    let state = ts.server().state().clone();
    let stored = trace_storage::load(&state.store, &state.recordings, org, call.id)
        .await
        .expect("load")
        .expect("the crashed call keeps its trace");
    let trace = Trace::from_bytes(&stored).expect("decode");
    assert!(trace.truncated);
    assert_eq!(trace.events, slice.events);
    assert_eq!(trace.decisions, slice.decisions);
    assert_eq!(trace.caller_audio, slice.caller_audio);
    assert!(
        switchboard_server::call::trace_recovery::find_leftover(state.recordings.base_dir())
            .is_empty(),
        "its spool is gone"
    );
    // No spool is left behind, and a third start finds nothing more to recover.
    let recovered = switchboard_server::call::recording::find_leftover_spools(Path::new(
        &dir.path().join("recordings"),
    ));
    assert!(recovered.is_empty(), "{recovered:?}");
    ts.stop().await;
}

/// A call's first second of caller audio traced by a core, drained and appended to the call's
/// trace spool (returned with the slice, its task still running).
async fn spool_one_second(
    state: &AppState,
    org: i64,
    call_id: i64,
) -> (TraceSpool, switchboard_core::call::trace::TraceSlice) {
    let mut core = TracedCore::new(CallSettings::default(), Millis(0), true);
    core.handle(Event::CallStarted, Millis(0));
    for i in 0..50 {
        core.handle(Event::CallerAudio(&[0xFF; 160]), Millis(20 * i));
        while core.poll_action().is_some() {}
    }
    let slice = core.drain_trace(0, 0).expect("a slice");
    let mut spool = TraceSpool::start(state, org, call_id, core.core().settings());
    assert!(spool.push(slice.clone()));
    let spooled_audio = state
        .recordings
        .base_dir()
        .join(TRACE_DIR)
        .join(format!("call-{call_id}.audio"));
    let wanted = slice.caller_audio.len() as u64;
    let appended = tokio::time::timeout(Duration::from_secs(30), async {
        while std::fs::metadata(&spooled_audio).map_or(0, |m| m.len()) < wanted {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(appended.is_ok(), "the slice reaches the spool");
    (spool, slice)
}

/// A process that stopped after a call's trace was stored but before its spool was removed
/// (the spool goes only once the trace's row is written): the next start removes the spool
/// and leaves the stored trace as it was, rather than storing it again as truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_trace_is_not_stored_again_from_its_leftover_spool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = settings_in(dir.path());
    let mut ts = TestServer::start_with(settings.clone(), String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org a");
    let (call_id, _) = ended_call(&state.store, org).await;
    let (spool, _) = spool_one_second(&state, org, call_id).await;
    // The whole trace, stored as the call's end stores it.
    let mut core = TracedCore::new(CallSettings::default(), Millis(0), true);
    core.handle(Event::CallStarted, Millis(0));
    for i in 0..75 {
        core.handle(Event::CallerAudio(&[0x7F; 160]), Millis(20 * i));
        while core.poll_action().is_some() {}
    }
    let whole = core
        .take_trace()
        .expect("trace")
        .to_bytes()
        .expect("encode");
    trace_storage::save(
        &state.store,
        &state.recordings,
        org,
        call_id,
        1,
        whole.clone(),
    )
    .await
    .expect("stored");
    drop(spool);
    ts.stop().await;

    let mut ts = TestServer::start_with(settings, ts.key_b.clone()).await;
    let state = ts.server().state().clone();
    assert!(
        switchboard_server::call::trace_recovery::find_leftover(state.recordings.base_dir())
            .is_empty(),
        "the spool is removed"
    );
    let stored = trace_storage::load(&state.store, &state.recordings, org, call_id)
        .await
        .expect("load")
        .expect("the trace is still there");
    assert_eq!(stored, whole, "the stored trace is unchanged");
    assert!(!Trace::from_bytes(&stored).expect("decode").truncated);
    ts.stop().await;
}

/// `disclosure_mode: first_call_only`: the caller hears the (default) disclosure on their first
/// call to the assistant, not on the next; `every_call` says it each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosure_modes_decide_which_calls_hear_it() {
    let h = Harness::start(Options::default()).await;
    let record = h.record(
        "disclosing",
        json!({"recording_settings": {
            "enabled": true, "format": "wav",
            "disclosure_enabled": true, "disclosure_mode": "first_call_only"
        }}),
    );
    let id = h.assistant(&h.ts.key_a, record, Some(OUR_NUMBER)).await;
    // Times the disclosure was sent to TTS so far, over every call's TTS sockets.
    let disclosures = |h: &Harness| -> usize {
        let text: String = h
            .providers
            .elevenlabs
            .received()
            .iter()
            .flat_map(|s| s.contexts.iter())
            .map(|c| c.texts.concat())
            .collect::<Vec<_>>()
            .join("\n");
        text.matches(DEFAULT_DISCLOSURE_MESSAGE).count()
    };
    let mut said = Vec::new();
    for n in 0..3 {
        if n == 2 {
            let (status, body) = json(
                h.ts.req(
                    Method::PATCH,
                    &format!("/api/v1/assistants/{id}"),
                    &h.ts.key_a,
                )
                .json(&json!({"recording_settings": {"disclosure_mode": "every_call"}})),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
        let call_sid = h.short_call(4_000).await;
        h.ended_call(&call_sid).await;
        said.push(disclosures(&h));
    }
    // First call: said; second (same caller): not; third, every_call: said again.
    assert_eq!(said, [1, 1, 2]);

    // A mode Burki does not have is refused, naming the field.
    let (status, body) = json(
        h.ts.req(
            Method::PATCH,
            &format!("/api/v1/assistants/{id}"),
            &h.ts.key_a,
        )
        .json(&json!({"recording_settings": {"disclosure_mode": "sometimes"}})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("recording_settings.disclosure_mode"),
        "{body}"
    );
}
