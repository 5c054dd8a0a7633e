//! Background sound (`tts_settings.background_sound`) end to end: the upload endpoint and its
//! refusals, `sound_url` held to the outbound policy, and a whole call against the fakes whose
//! bot recording, decoded back, carries the sound at its volume in the silences and under the
//! speech, looped far past its length.

mod common;

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchboard_core::audio::mulaw;
use switchboard_netguard::{GuardedClient, OutboundPolicy};
use switchboard_server::background_sound::{SoundError, fetch_url};
use switchboard_testkit::latency::LatencyProfile;
use switchboard_testkit::stack::ProviderFakes;
use switchboard_testkit::twilio::{CallScript, FakeCall};

use common::call_stack::CallServer;
use common::{TestServer, assert_error, json};

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
    let refused = fetch_url(&client, "http://127.0.0.1:9/bed.wav").await;
    assert!(matches!(refused, Err(SoundError::Fetch(_))), "{refused:?}");
    let refused = fetch_url(&client, "file:///etc/passwd").await;
    assert!(matches!(refused, Err(SoundError::Fetch(_))), "{refused:?}");
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
    // Half a second of sound at 16 kHz: the call lasts ~26 s, so it loops ~50 times.
    let res = calls
        .http
        .post(format!("{}{}", calls.base, upload_path(id)))
        .bearer_auth(common::KEY_A)
        .body(wav(16000, 0.5, BED_HZ, BED_AMPLITUDE))
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
