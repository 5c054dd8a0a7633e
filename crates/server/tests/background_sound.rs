//! Background sound (`tts_settings.background_sound`) end to end: the upload endpoint and its
//! refusals, `sound_url` held to the outbound policy, the `[background_sound]` limits, a broken
//! `sound_url` fetched once per retry period, an upload kept in S3 (against the S3-compatible
//! server of `scripts/services.sh`, `S3_ENDPOINT`; skipped without it, except in CI), and a
//! whole call against the fakes whose bot recording, decoded back, carries the sound at its
//! volume in the silences and under the speech, looped far past its length.

mod common;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use reqwest::Method;
use serde_json::json;
use switchboard_assistant::BackgroundSound;
use switchboard_core::audio::mulaw;
use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_server::background_sound::{
    LOOP_CROSSFADE_MS, SoundError, SoundLimits, fetch_url, load_for_call,
};
use switchboard_server::config::Settings;
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallScript, FakeCall};

use common::call_stack::CallServer;
use common::{TestServer, assert_error, json, settings_for};

const NUMBER: &str = "+15550100002";
/// Frequency of the test bed, Hz: bin 50 of a 160-sample window at 8 kHz, away from the fake
/// voice's 180 and 720 Hz.
const BED_HZ: f64 = 2500.0;
/// Amplitude of the uploaded sound.
const BED_AMPLITUDE: f64 = 10000.0;
/// The record's volume.
const VOLUME: f64 = 0.3;

/// A mono 16-bit WAV of `seconds` of a `freq_hz` sine at `amplitude`, at `rate_hz`.
fn wav(rate_hz: u32, seconds: f64, freq_hz: f64, amplitude: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).expect("wav writer");
        let n = (f64::from(rate_hz) * seconds) as usize;
        for i in 0..n {
            let t = i as f64 / f64::from(rate_hz);
            let v = amplitude * (2.0 * std::f64::consts::PI * freq_hz * t).sin();
            w.write_sample(v as i16).expect("sample");
        }
        w.finalize().expect("finalize");
    }
    cur.into_inner()
}

/// A multipart/form-data body of `(name, file name, content)` parts, with its content type.
fn multipart(parts: &[(&str, Option<&str>, Vec<u8>)]) -> (String, Vec<u8>) {
    const BOUNDARY: &str = "sb-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, file, content) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match file {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

fn upload_path(id: i64) -> String {
    format!("/api/v1/assistants/{id}/background-sound")
}

async fn create_assistant(ts: &TestServer, key: &str) -> i64 {
    let (status, body) = json(
        ts.req(Method::POST, "/api/v1/assistants", key)
            .json(&json!({"name": "with a bed"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().expect("id")
}

#[tokio::test]
async fn uploads_are_decoded_stored_and_refused_clearly() {
    let mut ts = TestServer::start().await;
    let key = ts.key_a.clone();
    let id = create_assistant(&ts, &key).await;

    // A raw WAV body: decoded, stored, set on the record.
    let (status, body) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .header("content-type", "audio/wav")
            .body(wav(44100, 0.5, 440.0, 8000.0)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["format"], "WAV");
    assert_eq!(body["duration_ms"], 500);
    assert_eq!(body["sample_rate_hz"], 44100);
    let first_key = body["storage_key"].as_str().expect("key").to_owned();
    assert!(first_key.starts_with("org-"), "{first_key}");
    let base_dir = PathBuf::from(&ts.server().state().settings.recordings.base_dir);
    assert!(base_dir.join(&first_key).is_file(), "stored under its key");
    let (_, record) = json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), &key)).await;
    assert_eq!(
        record["tts_settings"]["background_sound"]["storage_key"],
        first_key.as_str()
    );

    // A multipart MP3 replaces it; the old file is removed.
    let mp3 = include_bytes!("../../../fixtures/sounds/tone_440hz_1s.mp3").to_vec();
    let (ctype, form) = multipart(&[
        ("name", None, b"bed".to_vec()),
        ("file", Some("tone.mp3"), mp3),
    ]);
    let (status, body) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .header("content-type", ctype)
            .body(form),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["format"], "MP3");
    let second_key = body["storage_key"].as_str().expect("key").to_owned();
    assert_ne!(second_key, first_key);
    assert!(!base_dir.join(&first_key).exists(), "replaced file removed");

    // Refusals: not audio, audio that does not decode, empty, too large, a multipart form
    // without `file`.
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .body(b"%PDF-1.4 not a sound".to_vec()),
    )
    .await;
    let e = assert_error(s, &b, 422, "validation_failed");
    assert!(
        b.to_string().contains("WAV, MP3, OGG/Vorbis or FLAC"),
        "{e}"
    );
    let truncated = wav(8000, 1.0, 440.0, 8000.0)[..40].to_vec();
    let (s, b) = json(ts.req(Method::POST, &upload_path(id), &key).body(truncated)).await;
    assert_error(s, &b, 422, "validation_failed");
    assert!(b.to_string().contains("does not decode"), "{b}");
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .body(b"OggS\0\x02 then garbage".to_vec()),
    )
    .await;
    assert_error(s, &b, 422, "validation_failed");
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .body(Vec::new()),
    )
    .await;
    assert_error(s, &b, 422, "validation_failed");
    let mut big = wav(8000, 0.1, 440.0, 100.0);
    big.resize(10 * 1024 * 1024 + 1, 0);
    let (s, b) = json(ts.req(Method::POST, &upload_path(id), &key).body(big)).await;
    assert_error(s, &b, 413, "payload_too_large");
    let (ctype, form) = multipart(&[("name", None, b"no file".to_vec())]);
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .header("content-type", ctype)
            .body(form),
    )
    .await;
    assert_error(s, &b, 422, "validation_failed");

    // Another organisation sees no such assistant, for upload and delete alike.
    let key_b = ts.key_b.clone();
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key_b)
            .body(wav(8000, 0.1, 440.0, 100.0)),
    )
    .await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = json(ts.req(Method::DELETE, &upload_path(id), &key_b)).await;
    assert_error(s, &b, 404, "not_found");

    // Delete removes the file and the key; a second delete has nothing to remove.
    let (s, b) = json(ts.req(Method::DELETE, &upload_path(id), &key)).await;
    assert_eq!(s, 200, "{b}");
    assert!(!base_dir.join(&second_key).exists());
    let (_, record) = json(ts.req(Method::GET, &format!("/api/v1/assistants/{id}"), &key)).await;
    assert!(record["tts_settings"]["background_sound"]["storage_key"].is_null());
    let (s, b) = json(ts.req(Method::DELETE, &upload_path(id), &key)).await;
    assert_error(s, &b, 404, "not_found");

    // The endpoint is in the OpenAPI document.
    let (_, doc) = json(ts.req(Method::GET, "/api/openapi.json", &key)).await;
    let path = &doc["paths"]["/api/v1/assistants/{assistant_id}/background-sound"];
    assert!(
        path["post"].is_object() && path["delete"].is_object(),
        "{path}"
    );
    ts.stop().await;
}

#[tokio::test]
async fn a_sound_url_to_a_private_address_is_refused() {
    let mut ts = TestServer::start().await;
    let key = ts.key_a.clone();
    for url in [
        "http://10.0.0.7/bed.wav",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/bed.wav",
        "ftp://sounds.example.com/bed.wav",
    ] {
        let (s, b) = json(
            ts.req(Method::POST, "/api/v1/assistants", &key)
                .json(&json!({
                    "name": "bed",
                    "tts_settings": {"background_sound": {"enabled": true, "sound_url": url}}
                })),
        )
        .await;
        let e = assert_error(s, &b, 422, "validation_failed");
        assert!(
            b.to_string()
                .contains("tts_settings.background_sound.sound_url"),
            "{url}: {e}"
        );
    }
    ts.stop().await;

    // And when a call fetches it: the guarded client refuses loopback without an allowlist,
    // before anything is sent.
    let client = GuardedClient::build(OutboundPolicy::default(), reqwest::Client::builder())
        .expect("client");
    let limits = SoundLimits::from(&Settings::defaults().expect("defaults").background_sound);
    let refused = fetch_url(&client, "http://127.0.0.1:9/bed.wav", limits).await;
    assert!(matches!(refused, Err(SoundError::Fetch(_))), "{refused:?}");
    let refused = fetch_url(&client, "file:///etc/passwd", limits).await;
    assert!(matches!(refused, Err(SoundError::Fetch(_))), "{refused:?}");
}

/// A sound server on 127.0.0.1 counting the requests of each path: `/missing.wav` is a 404,
/// `/noise.wav` a 200 that is not audio, `/bed.wav` a 1 s WAV, `/slow.wav` never answers.
async fn sound_server() -> (String, Arc<[AtomicUsize; 4]>) {
    let hits: Arc<[AtomicUsize; 4]> = Arc::new(Default::default());
    let count = |i: usize| {
        let hits = hits.clone();
        move || hits[i].fetch_add(1, Ordering::SeqCst)
    };
    let (missing, noise, bed, slow) = (count(0), count(1), count(2), count(3));
    let app = Router::new()
        .route(
            "/missing.wav",
            get(move || {
                missing();
                async { StatusCode::NOT_FOUND }
            }),
        )
        .route(
            "/noise.wav",
            get(move || {
                noise();
                async { b"RIFF\0\0\0\0WAVE not really".to_vec() }
            }),
        )
        .route(
            "/bed.wav",
            get(move || {
                bed();
                async { wav(8000, 1.0, 440.0, 8000.0) }
            }),
        )
        .route(
            "/slow.wav",
            get(move || {
                slow();
                std::future::pending::<()>()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, hits)
}

fn from_url(url: String) -> BackgroundSound {
    BackgroundSound {
        enabled: true,
        sound_url: Some(url),
        ..BackgroundSound::default()
    }
}

#[tokio::test]
async fn a_broken_sound_url_is_fetched_once_per_retry_period() {
    let (base, hits) = sound_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ts =
        TestServer::start_with(settings_for(&dir.path().join("db.sqlite")), String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org");

    // Ten calls, five of them at once: one request; the first call is told why, the others
    // that the sound failed recently (and they log it at debug, not as a warning).
    let missing = from_url(format!("{base}/missing.wav"));
    let first = load_for_call(&state, org, &missing).await;
    assert!(
        matches!(&first, Err(SoundError::Fetch(m)) if m.contains("404")),
        "{first:?}"
    );
    let together =
        futures::future::join_all((0..5).map(|_| load_for_call(&state, org, &missing))).await;
    for later in together {
        match later {
            Err(SoundError::RecentFailure {
                reason, retry_in_s, ..
            }) => {
                assert!(reason.contains("404"), "{reason}");
                assert!((59..=60).contains(&retry_in_s), "{retry_in_s}");
            }
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..4 {
        assert!(load_for_call(&state, org, &missing).await.is_err());
    }
    assert_eq!(hits[0].load(Ordering::SeqCst), 1, "fetched once");

    // A file that does not decode is remembered the same way.
    let noise = from_url(format!("{base}/noise.wav"));
    let first = load_for_call(&state, org, &noise).await;
    assert!(
        matches!(first, Err(SoundError::Undecodable { .. })),
        "{first:?}"
    );
    assert!(matches!(
        load_for_call(&state, org, &noise).await,
        Err(SoundError::RecentFailure { .. })
    ));
    assert_eq!(hits[1].load(Ordering::SeqCst), 1);

    // A sound that loads is unaffected, and fetched once too.
    let bed = from_url(format!("{base}/bed.wav"));
    for _ in 0..3 {
        let sound = load_for_call(&state, org, &bed)
            .await
            .expect("loads")
            .expect("a sound");
        assert_eq!(sound.samples.len(), 8000 - LOOP_CROSSFADE_MS * 8, "looped");
    }
    assert_eq!(hits[2].load(Ordering::SeqCst), 1);
    ts.stop().await;
}

#[tokio::test]
async fn the_background_sound_limits_come_from_the_configuration() {
    let (base, hits) = sound_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("db.sqlite"));
    settings.background_sound.max_bytes = 4000;
    settings.background_sound.fetch_timeout_ms = 300;
    settings.background_sound.failure_retry_s = 0;
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org");

    // No failure memory: every call tries again.
    let missing = from_url(format!("{base}/missing.wav"));
    for _ in 0..3 {
        assert!(matches!(
            load_for_call(&state, org, &missing).await,
            Err(SoundError::Fetch(_))
        ));
    }
    assert_eq!(hits[0].load(Ordering::SeqCst), 3);
    // The 1 s WAV is 16 044 bytes: over the limit.
    let bed = from_url(format!("{base}/bed.wav"));
    let too_large = load_for_call(&state, org, &bed).await;
    assert!(
        matches!(too_large, Err(SoundError::TooLarge { limit_bytes: 4000 })),
        "{too_large:?}"
    );
    let slow = from_url(format!("{base}/slow.wav"));
    let timed_out = load_for_call(&state, org, &slow).await;
    assert!(
        matches!(&timed_out, Err(SoundError::Fetch(m)) if m.contains("300 ms")),
        "{timed_out:?}"
    );
    // And an upload past it is a 413 naming the limit.
    let key = ts.key_a.clone();
    let id = create_assistant(&ts, &key).await;
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .body(wav(8000, 0.5, 440.0, 8000.0)),
    )
    .await;
    assert_error(s, &b, 413, "payload_too_large");
    assert!(b.to_string().contains("4000"), "{b}");
    let (s, b) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .body(wav(8000, 0.2, 440.0, 8000.0)),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    ts.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_sound_is_kept_in_s3_and_played_from_there() {
    let Some(endpoint) = common::s3_endpoint("background sound") else {
        return;
    };
    let bucket = common::moto_bucket(&endpoint, "sb-sounds").await;
    let http = reqwest::Client::new();

    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = settings_for(&dir.path().join("switchboard.db"));
    settings.recordings.base_dir = dir.path().join("recordings").display().to_string();
    common::use_moto_s3(&mut settings, &endpoint, &bucket);
    let mut ts = TestServer::start_with(settings, String::new()).await;
    let key = ts.key_a.clone();
    let id = create_assistant(&ts, &key).await;

    let file = wav(16000, 0.5, 440.0, 8000.0);
    let (status, body) = json(
        ts.req(Method::POST, &upload_path(id), &key)
            .header("content-type", "audio/wav")
            .body(file.clone()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let storage_key = body["storage_key"].as_str().expect("key").to_owned();
    // In the bucket under the prefix, byte for byte; nothing left on the local disk.
    let object = format!("{endpoint}/{bucket}/switchboard/{storage_key}");
    let stored = http.get(&object).send().await.expect("get object");
    assert_eq!(stored.status(), 200);
    assert!(stored.bytes().await.expect("object").as_ref() == file.as_slice());
    assert!(
        !dir.path().join("recordings").join(&storage_key).exists(),
        "kept in S3 only"
    );

    // A call reads it back from S3 and decodes it.
    let state = ts.server().state().clone();
    let org = state.default_org_id().await.expect("org");
    let settings = BackgroundSound {
        enabled: true,
        storage_key: Some(storage_key.clone()),
        loop_sound: false,
        ..BackgroundSound::default()
    };
    let sound = load_for_call(&state, org, &settings)
        .await
        .expect("loads from S3")
        .expect("a sound");
    assert_eq!(sound.samples.len(), 4000);

    // Delete removes the object.
    let (s, b) = json(ts.req(Method::DELETE, &upload_path(id), &key)).await;
    assert_eq!(s, 200, "{b}");
    let gone = http.get(&object).send().await.expect("get object");
    assert_eq!(gone.status(), 404);
    ts.stop().await;
}

/// Amplitude of `freq_hz` in `window` (8 kHz), by the Goertzel algorithm.
fn amplitude_at(window: &[i16], freq_hz: f64) -> f64 {
    let n = window.len() as f64;
    let w = 2.0 * std::f64::consts::PI * freq_hz / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in window {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / n
}

fn rms(window: &[i16]) -> f64 {
    let sum: f64 = window.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / window.len() as f64).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_carries_the_sound_under_speech_and_in_the_silences() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/calls");
    let script = CallScript::load(&fixtures, "booking_3_turns").expect("fixture");
    let latency = LatencyProfile {
        stt_final_delay_ms: 50,
        llm_ttft_ms: 60,
        llm_tokens_per_s: 400.0,
        tts_first_byte_ms: 40,
        tts_realtime_factor: 0.1,
        jitter_ms: 0,
    };
    let fakes = ProviderFakes::start_for_calls(latency, &[&script])
        .await
        .expect("fakes start");
    let calls = CallServer::start(&[NUMBER], |_| {}).await;
    let mut record =
        fakes.assistant_record("Harbor Dental", &script.name, "Hello, how can I help?");
    switchboard_assistant::merge_json(
        &mut record,
        &json!({
            "recording_settings": {"enabled": true, "format": "wav"},
            "tts_settings": {"background_sound": {"enabled": true, "volume": VOLUME, "loop": true}}
        }),
    );
    let id = calls.assistant(&record, NUMBER).await;
    // Two seconds of sound at 16 kHz: the call lasts ~26 s, so it loops ~13 times. Each seam
    // (the end crossfaded into the start over 15 ms, not a whole number of the tone's cycles)
    // leaves a window or two off the bed's level; with a half-second sound those ~50 seams
    // took most of the 5 % the share below allows, and a loaded machine's late frames the rest.
    let res = calls
        .http
        .post(format!("{}{}", calls.base, upload_path(id)))
        .bearer_auth(common::KEY_A)
        .body(wav(16000, 2.0, BED_HZ, BED_AMPLITUDE))
        .send()
        .await
        .expect("upload");
    assert_eq!(res.status(), 200);

    let report = FakeCall::new(calls.caller(NUMBER), Arc::new(script.clone()))
        .run()
        .await;
    assert!(
        report.errors.is_empty(),
        "caller errors: {:?}",
        report.errors
    );
    let call = calls.recorded_call(&report.call_sid).await;
    let mut recordings = Vec::new();
    for _ in 0..100 {
        recordings = calls
            .server
            .state()
            .store
            .list_recordings(call.id)
            .await
            .expect("recordings");
        if recordings.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bot = recordings
        .iter()
        .find(|r| r.kind == "assistant")
        .unwrap_or_else(|| panic!("no assistant track: {recordings:#?}"));
    let wav_bytes = std::fs::read(&bot.path_or_url).expect("bot recording");
    // µ-law WAV: 58-byte header, one byte per sample.
    let pcm: Vec<i16> = wav_bytes[58..].iter().map(|&b| mulaw::decode(b)).collect();
    assert!(pcm.len() > 20 * 8000, "recording of {} samples", pcm.len());

    // 20 ms windows from 1 s in to 1 s before the end.
    let expected = BED_AMPLITUDE * VOLUME;
    let (mut silent, mut speech, mut at_level) = (0usize, 0usize, 0usize);
    let windows: Vec<&[i16]> = pcm[8000..pcm.len() - 8000].chunks_exact(160).collect();
    for w in &windows {
        let a = amplitude_at(w, BED_HZ);
        if (a - expected).abs() <= expected * 0.12 {
            at_level += 1;
        }
        // The bed alone is ~2100 RMS; with the fake voice (peak 9000) it is well above.
        if rms(w) > 3500.0 {
            speech += 1;
        } else {
            silent += 1;
        }
    }
    assert!(speech >= 100, "only {speech} windows of speech");
    assert!(silent >= 100, "only {silent} windows of silence");
    // Every frame carries the bed at its volume; a few may straddle a clear (where the
    // bed's phase jumps) or a late wake-up of a loaded test machine.
    let share = at_level as f64 / windows.len() as f64;
    assert!(
        share >= 0.95,
        "{at_level} of {} windows at the bed's level",
        windows.len()
    );
    for (kind, pick) in [("silence", false), ("speech", true)] {
        let mut levels: Vec<f64> = windows
            .iter()
            .filter(|w| (rms(w) > 3500.0) == pick)
            .map(|w| amplitude_at(w, BED_HZ))
            .collect();
        levels.sort_by(f64::total_cmp);
        let median = levels[levels.len() / 2];
        assert!(
            (median - expected).abs() <= expected * 0.05,
            "{kind}: median bed level {median:.0}, expected {expected:.0}"
        );
    }
    drop(fakes);
    calls.server.shutdown().await;
}
